//! Peers find each other by mDNS on a LAN. The LAN is two network namespaces this test
//! makes itself, joined by a veth pair (mDNS ignores loopback); nothing leaves them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{fixtures, write_config_listening, NodeProc};

/// Two namespaces and the veth between them; removed on drop.
struct Lan {
    names: [String; 2],
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("run ip (iproute2)");
    assert!(status.success(), "ip {} failed", args.join(" "));
}

impl Lan {
    fn new() -> Lan {
        let id = std::process::id() % 100_000;
        let names = [format!("pm{id}a"), format!("pm{id}b")];
        let (a, b) = (&names[0], &names[1]);
        let lan = Lan {
            names: names.clone(),
        };
        ip(&["netns", "add", a]);
        ip(&["netns", "add", b]);
        ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        ip(&["link", "set", a, "netns", a]);
        ip(&["link", "set", b, "netns", b]);
        ip(&["-n", a, "addr", "add", "10.77.0.1/24", "dev", a]);
        ip(&["-n", b, "addr", "add", "10.77.0.2/24", "dev", b]);
        for n in [a, b] {
            ip(&["-n", n, "link", "set", n, "up"]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

#[test]
fn an_intermediary_finds_an_acquirer_by_mdns_without_configured_peers() {
    let lan = Lan::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let network = format!("mdns-{}", std::process::id());
    let listen = "/ip4/0.0.0.0/tcp/0";
    let cards = fixtures().join("cards.toml");
    let prices = fixtures().join("demo/prices.toml");
    let acquirer_cfg = write_config_listening(
        d,
        "acquirer",
        &network,
        listen,
        &[],
        &format!("mdns = true\n[acquirer]\ncards = \"{}\"", cards.display()),
    );
    let im_cfg = write_config_listening(
        d,
        "intermediary",
        &network,
        listen,
        &[],
        &format!(
            "mdns = true\n[intermediary]\nprices = \"{}\"",
            prices.display()
        ),
    );
    // `mdns` must come before the tables: move it up.
    for cfg in [&acquirer_cfg, &im_cfg] {
        let text = std::fs::read_to_string(cfg)
            .unwrap()
            .replace("\nmdns = true\n", "\n");
        std::fs::write(cfg, format!("mdns = true\n{text}")).unwrap();
    }
    let acquirer = NodeProc::start_in(Some(&lan.names[0]), "acquirer", &acquirer_cfg, d);
    let intermediary = NodeProc::start_in(Some(&lan.names[1]), "intermediary", &im_cfg, d);
    let mut found = false;
    for _ in 0..200 {
        let log = std::fs::read_to_string(&intermediary.log).unwrap_or_default();
        if log
            .lines()
            .any(|l| l.contains("peer ready") && l.contains("role=acquirer"))
        {
            found = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = format!(
        "--- intermediary\n{}\n--- acquirer\n{}",
        std::fs::read_to_string(&intermediary.log).unwrap_or_default(),
        std::fs::read_to_string(&acquirer.log).unwrap_or_default()
    );
    intermediary.stop();
    acquirer.stop();
    assert!(
        found,
        "the intermediary did not find the acquirer by mDNS\n{logs}"
    );
}
