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
    /// The labs each store's jobs go to first, by lab name, in order; a lab not named
    /// is tried after them (all labs, for a store without a route).
    #[serde(default)]
    pub routes: Vec<LabRoute>,
}

/// `[[intermediary.routes]] store = "store-1" labs = ["Lab North", "Lab South"]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabRoute {
    pub store: String,
    pub labs: Vec<String>,
}

fn default_commission_bps() -> u32 {
    2000
}
