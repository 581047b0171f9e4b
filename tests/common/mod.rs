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
use std::time::{Duration, Instant};

use printmesh_nodes::testnet::TestNet;
use printmesh_protocol::messages::Role;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_printmesh")
}

/// The source tree's fixtures (found in one place: `printmesh_nodes::testnet`).
pub use printmesh_nodes::testnet::fixtures_dir as fixtures;

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
        NodeProc::start_in(None, role, config, dir)
    }

    /// [`NodeProc::start`] inside a network namespace (`ip netns exec NAME …`).
    pub fn start_in(netns: Option<&str>, role: &str, config: &Path, dir: &Path) -> NodeProc {
        NodeProc::start_with(netns, role, config, dir, &[])
    }

    /// [`NodeProc::start_in`] with more environment (`PRINTMESH_CRASH_AT`, …).
    pub fn start_with(
        netns: Option<&str>,
        role: &str,
        config: &Path,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> NodeProc {
        let log = dir.join(format!("{role}.log"));
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin()]);
                c
            }
            None => Command::new(bin()),
        };
        command.args([role, "--config", config.to_str().unwrap()]);
        if role == "kiosk" {
            // The node only: the screen has its own test (tests/kiosk_tmux.rs).
            command.arg("--headless");
        }
        command.envs(env.iter().copied());
        let mut child = command
            .env(
                "RUST_LOG",
                std::env::var("PM_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
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

/// Runs `printmesh ARGS…` to the end: whether it succeeded, and stdout then stderr.
pub fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Writes a node config into `dir` and returns its path: the test network's common part
/// (`printmesh_nodes::testnet`) with the role's `section` as TOML text.
pub fn write_config(
    dir: &Path,
    role: &str,
    network: &str,
    peers: &[String],
    section: &str,
) -> PathBuf {
    write_config_listening(dir, role, network, "/ip4/127.0.0.1/tcp/0", peers, section)
}

/// [`write_config`] with a given listen address.
pub fn write_config_listening(
    dir: &Path,
    role: &str,
    network: &str,
    listen: &str,
    peers: &[String],
    section: &str,
) -> PathBuf {
    let net = TestNet::named(dir, network);
    let kind = Role::ALL
        .into_iter()
        .find(|r| r.name() == role)
        .unwrap_or_else(|| panic!("no role {role}"));
    let mut config = net.bare(kind, &format!("Test {role}"), role, peers.to_vec());
    config.listen = vec![listen.to_string()];
    net.write_with_section(&config, section).unwrap()
}

/// Where the acquirer of a test network under `dir` publishes its sealing key.
pub fn acquirer_key_file(dir: &Path) -> PathBuf {
    dir.join("acquirer").join("seal.pub")
}

/// Every regular file below `dir`.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out
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

/// The acquirer's config, seeded from the fixture test cards.
pub fn acquirer_config(dir: &Path, network: &str) -> PathBuf {
    let cards = fixtures().join("cards.toml");
    write_config(
        dir,
        "acquirer",
        network,
        &[],
        &format!("[acquirer]\ncards = \"{}\"", cards.display()),
    )
}

/// A lab that prints today whatever the hour, with the courier on `courier_days`.
pub fn lab_config(dir: &Path, network: &str, courier_days: &str) -> PathBuf {
    let section = format!(
        "[lab]\nprints_per_day = 100\ncutoff_hour = 24\ncourier_days = {courier_days}\ntransit_days = 1\nutc_offset_hours = 9"
    );
    write_config(dir, "lab", network, &[], &section)
}

pub fn intermediary_config(dir: &Path, network: &str, listen: &str, peers: &[String]) -> PathBuf {
    let prices = fixtures().join("demo/prices.toml");
    let section = format!("[intermediary]\nprices = \"{}\"", prices.display());
    write_config_listening(dir, "intermediary", network, listen, peers, &section)
}

/// A kiosk with the fixture memory card in its slot and the test cards to swipe.
pub fn kiosk_config(dir: &Path, network: &str, intermediary: &str) -> PathBuf {
    let fx = fixtures();
    let section = format!(
        "[kiosk]\nstore = \"store-test\"\nstore_name = \"Test Store\"\nprices = \"{}\"\nmedia_dir = \"{}\"\ncards = \"{}\"\nacquirer_key_file = \"{}\"",
        fx.join("demo/prices.toml").display(),
        fx.join("memory-card").display(),
        fx.join("cards.toml").display(),
        acquirer_key_file(dir).display()
    );
    write_config(dir, "kiosk", network, &[intermediary.to_string()], &section)
}

/// A tmux server of the test's own (its own socket), killed when dropped.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(command: &str, width: u16, height: u16) -> Tmux {
        let socket = format!("printmesh-test-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "kiosk",
            ])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux is needed to test the kiosk in a real terminal (apt-get install tmux)");
        assert!(status.success(), "tmux did not start");
        Tmux { socket }
    }

    pub fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap()
    }

    /// Keys by tmux name (`Down`, `Enter`, `F2`, `1`).
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", "-t", "kiosk", k]);
            std::thread::sleep(Duration::from_millis(120));
        }
    }

    /// Characters exactly as typed (what a keyboard-wedge card reader does).
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "kiosk", "-l", text]);
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "kiosk"]).stdout)
            .into_owned()
    }

    /// Waits until the screen shows `text`; returns the screen.
    pub fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the screen never showed {text:?}; it is:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The `# totals` section of a CSV report: name → minor units.
pub fn totals(csv: &str) -> std::collections::BTreeMap<String, i64> {
    let mut out = std::collections::BTreeMap::new();
    let mut in_totals = false;
    for line in csv.lines() {
        if line == "# totals" {
            in_totals = true;
            continue;
        }
        if in_totals && !line.starts_with("total,") {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() == 3 {
                out.insert(f[0].to_string(), f[2].parse().unwrap());
            }
        }
    }
    out
}

/// `printmesh ROLE --config FILE report --date DATE --csv`, which must succeed.
pub fn report_csv(role: &str, config: &Path, date: &str) -> String {
    let (ok, text) = run(&[
        role,
        "--config",
        config.to_str().unwrap(),
        "report",
        "--date",
        date,
        "--csv",
    ]);
    assert!(ok, "{role} report: {text}");
    text
}

/// Polls `check` until it holds, or fails the test after 30 s with the logs of the
/// nodes started in `logs` (`NodeProc` writes `<role>.log` there).
pub fn eventually(what: &str, logs: &Path, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        if Instant::now() > deadline {
            let mut text = String::new();
            for role in ["acquirer", "intermediary", "lab", "content"] {
                if let Ok(log) = std::fs::read_to_string(logs.join(format!("{role}.log"))) {
                    text.push_str(&format!("--- {role}\n{log}"));
                }
            }
            panic!("gave up waiting for {what}\n{text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
