//! Crash points for the fault tests: with `PRINTMESH_CRASH_AT=name[,name…]` in its
//! environment a node aborts the moment it reaches a named point, as `kill -9` would
//! stop it there (nothing more flushed, no goodbye to its peers). Without the variable
//! a point costs one read of a value set once.

use std::sync::OnceLock;

/// The environment variable naming the points to crash at.
pub const CRASH_AT: &str = "PRINTMESH_CRASH_AT";

static POINTS: OnceLock<Vec<String>> = OnceLock::new();

/// Aborts the process if `name` is one of the points in [`CRASH_AT`].
pub fn crash_point(name: &str) {
    let points = POINTS.get_or_init(|| {
        std::env::var(CRASH_AT)
            .map(|v| v.split(',').map(|p| p.trim().to_string()).collect())
            .unwrap_or_default()
    });
    if points.iter().any(|p| p == name) {
        tracing::error!("crash point {name}: aborting");
        eprintln!("crash point {name}: aborting");
        std::process::abort();
    }
}
