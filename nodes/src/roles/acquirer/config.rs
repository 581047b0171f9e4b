//! The acquirer's `[acquirer]` section: its card accounts, hold lifetime, points and
//! group commit.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquirerConfig {
    /// Card accounts to seed on first start (fixtures/cards.toml).
    pub cards: PathBuf,
    /// An authorisation hold not captured within this long is released.
    #[serde(default = "default_hold_ttl_secs")]
    pub hold_ttl_secs: u64,
    /// However often it is extended, a hold lives at most this long from its
    /// authorisation: prints must ship (and be captured) before then.
    #[serde(default = "default_hold_max_secs")]
    pub hold_max_secs: u64,
    /// What one point pays, in minor units of money (point cards).
    #[serde(default = "default_minor_per_point")]
    pub minor_per_point: i64,
    /// Decide waiting requests together and flush once (true), or flush after each.
    #[serde(default = "default_true")]
    pub group_commit: bool,
}

fn default_hold_ttl_secs() -> u64 {
    7 * 24 * 3600
}

fn default_hold_max_secs() -> u64 {
    30 * 24 * 3600
}

fn default_minor_per_point() -> i64 {
    1
}

fn default_true() -> bool {
    true
}
