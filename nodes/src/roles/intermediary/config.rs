//! The intermediary's `[intermediary]` section: its price list and commission.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntermediaryConfig {
    pub prices: PathBuf,
    /// The intermediary's commission on each order, in basis points (2000 = 20%); the
    /// rest is the lab's print fee.
    #[serde(default = "default_commission_bps")]
    pub commission_bps: u32,
}

fn default_commission_bps() -> u32 {
    2000
}
