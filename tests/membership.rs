//! The operator's membership commands, as a user runs them: a network's root key, a
//! node's PeerId, its certificate, a revocation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{lab_config, run};

#[test]
fn init_enroll_show_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("network");
    let net_s = net.to_str().unwrap();
    let (ok, text) = run(&["network", "init", "--dir", net_s, "--name", "shops"]);
    assert!(ok, "{text}");
    assert!(text.contains("root public key"), "{text}");
    // The private network's pre-shared key, for each node's `psk_file`.
    let psk = std::fs::read_to_string(net.join("swarm.key")).unwrap();
    assert!(
        psk.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"),
        "{psk}"
    );
    let (ok, text) = run(&["network", "init", "--dir", net_s, "--name", "shops"]);
    assert!(!ok && text.contains("already holds a network"), "{text}");

    // The lab's PeerId, from its identity key (made on first use, the same after).
    let lab = lab_config(dir.path(), "shops", r#"["mon"]"#);
    let (ok, peer) = run(&["peer-id", "--config", lab.to_str().unwrap()]);
    assert!(ok, "{peer}");
    let peer = peer.trim().to_string();
    let (_, again) = run(&["peer-id", "--config", lab.to_str().unwrap()]);
    assert_eq!(again.trim(), peer);

    // `network enroll --dir NET --role ROLE --peer-id ID --name NAME` and `more`.
    let enroll = |role: &str, peer_id: &str, name: &str, more: &[&str]| {
        let mut args = vec![
            "network",
            "enroll",
            "--dir",
            net_s,
            "--role",
            role,
            "--peer-id",
            peer_id,
            "--name",
            name,
        ];
        args.extend_from_slice(more);
        run(&args)
    };
    let (ok, text) = enroll("lab", &peer, "Lab One", &["--days", "30"]);
    assert!(ok, "{text}");
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["serial"], 1);
    assert_eq!(first["role"], "lab");
    assert_eq!(first["peer_id"], peer.as_str());
    let cert = net.join("issued").join("1.cert");
    let (ok, text) = run(&["network", "show", "--dir", net_s, cert.to_str().unwrap()]);
    assert!(ok && text.contains("Lab One"), "{text}");

    // Bad input is named, and nothing is issued for it.
    let (ok, text) = enroll("wizard", &peer, "X", &[]);
    assert!(!ok && text.contains("not a role"), "{text}");
    let (ok, text) = enroll("lab", "nope", "X", &[]);
    assert!(!ok && text.contains("not a PeerId"), "{text}");
    // A kiosk is enrolled for its store, and only a kiosk has one.
    let (ok, text) = enroll("kiosk", &peer, "Kiosk 1", &[]);
    assert!(!ok && text.contains("--store"), "{text}");
    let (ok, text) = enroll("lab", &peer, "X", &["--store", "store-001"]);
    assert!(!ok && text.contains("only a kiosk"), "{text}");
    assert!(!net.join("issued").join("2.cert").exists());
    let (ok, text) = enroll("kiosk", &peer, "Kiosk 1", &["--store", "store-001"]);
    assert!(ok, "{text}");
    let kiosk: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(kiosk["store"], "store-001");

    // A certificate of another network does not verify against this root.
    let other = dir.path().join("other");
    run(&[
        "network",
        "init",
        "--dir",
        other.to_str().unwrap(),
        "--name",
        "other",
    ]);
    let (ok, text) = run(&[
        "network",
        "show",
        "--dir",
        other.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]);
    assert!(
        !ok && text.contains("not signed by this network's root key"),
        "{text}"
    );

    let (ok, text) = run(&["network", "revoke", "--dir", net_s, &peer]);
    assert!(ok && text.contains("revoked certificate 1"), "{text}");
    assert!(net.join("revoked").join("1.rev").exists());
}
