//! The courier's `[courier]` section.

use serde::{Deserialize, Serialize};

/// The courier: who it is and, for a demo, how fast its van goes by itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourierConfig {
    /// Seconds after pick-up a parcel is reported in transit by itself (none: only
    /// when the driver says so with `courier depart`).
    #[serde(default)]
    pub auto_in_transit_secs: Option<u64>,
    /// Seconds after pick-up a parcel is delivered by itself (none: only with
    /// `courier deliver`).
    #[serde(default)]
    pub auto_deliver_secs: Option<u64>,
}
