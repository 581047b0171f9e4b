//! Helpers for tests that run the real `printmesh` binary as separate processes.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_printmesh")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A node process; killed when dropped.
pub struct NodeProc {
    pub name: String,
    pub child: Child,
    pub addrs: Vec<String>,
    pub log: PathBuf,
}

impl NodeProc {
    /// Starts `printmesh <role> --config <config>` and waits for its `ready` line.
    pub fn start(role: &str, config: &Path, dir: &Path) -> NodeProc {
        let log = dir.join(format!("{role}.log"));
        let mut child = Command::new(bin())
            .args([role, "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addrs = Vec::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| {
                    panic!(
                        "{role} did not start; log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                });
            if let Some(a) = line.strip_prefix("listening ") {
                addrs.push(a.to_string());
            }
            if line.starts_with("ready ") {
                break;
            }
        }
        NodeProc {
            name: role.to_string(),
            child,
            addrs,
            log,
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not stop on SIGTERM", self.name);
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a node config into `dir` and returns its path.
pub fn write_config(
    dir: &Path,
    role: &str,
    network: &str,
    peers: &[String],
    section: &str,
) -> PathBuf {
    let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    let text = format!(
        "role = \"{role}\"\nname = \"Test {role}\"\nnetwork = \"{network}\"\ndata_dir = \"{}\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\npeers = [{}]\n\n{section}\n",
        dir.join(role).display(),
        peers.join(", "),
    );
    let path = dir.join(format!("{role}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `printmesh inspect --config FILE` as JSON.
pub fn inspect(config: &Path) -> serde_json::Value {
    let out = Command::new(bin())
        .args(["inspect", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
