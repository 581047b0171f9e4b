//! The content company's `[content]` section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A content company (patent 104): the catalogue it publishes at start, if any. Its
/// name is the node's `name` (the one its certificate carries).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentConfig {
    /// A catalogue file (see `printmesh content publish`) published when the node
    /// starts, if it differs from the one published last.
    #[serde(default)]
    pub catalogue: Option<PathBuf>,
}
