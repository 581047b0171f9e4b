//! One order path across four separate OS processes of the real binary, on 127.0.0.1
//! with OS-chosen ports: approved orders, a decline over the limit, a decline for an
//! expired card, and a resubmitted order. Afterwards every party's sled state is read
//! back with `printmesh inspect` and checked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{
    acquirer_config, bin, files_below, fixtures, inspect, intermediary_config, kiosk_config,
    lab_config, NodeProc,
};
use serde_json::Value;

fn kiosk_order(config: &Path, card: &str, size: &str, order_id: Option<&str>) -> Value {
    let extra: Vec<&str> = match order_id {
        Some(id) => vec!["--order-id", id],
        None => vec![],
    };
    kiosk_order_with(config, card, size, &extra)
}

fn kiosk_order_with(config: &Path, card: &str, size: &str, extra: &[&str]) -> Value {
    let mut cmd = Command::new(bin());
    cmd.args([
        "kiosk",
        "--config",
        config.to_str().unwrap(),
        "order",
        "--card",
        card,
        "--size",
        size,
    ]);
    cmd.args(extra);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "kiosk order with {card} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn file_hash(path: &Path) -> blake3::Hash {
    blake3::hash(&std::fs::read(path).unwrap())
}

#[test]
fn orders_travel_kiosk_intermediary_acquirer_lab_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fx = fixtures();
    let network = format!("e2e-{}", std::process::id());

    let acquirer_cfg = acquirer_config(d, &network);
    let lab_cfg = lab_config(d, &network, r#"["mon", "wed", "fri"]"#);
    let acquirer = NodeProc::start("acquirer", &acquirer_cfg, d);
    let lab = NodeProc::start("lab", &lab_cfg, d);
    let peers = [acquirer.addrs[0].clone(), lab.addrs[0].clone()];
    let intermediary_cfg = intermediary_config(d, &network, "/ip4/127.0.0.1/tcp/0", &peers);
    let intermediary = NodeProc::start("intermediary", &intermediary_cfg, d);
    let kiosk_cfg = kiosk_config(d, &network, &intermediary.addrs[0]);

    // The fixture card's DPOF order: PMSH0001 ×2 and PMSH0003 ×1. L is 30 yen a print.
    let approved = kiosk_order(&kiosk_cfg, "visa-ok", "L", None);
    assert_eq!(approved["outcome"], "approved", "{approved}");
    assert_eq!(approved["total_minor"], 90);
    assert_eq!(approved["card"], "VISA 1111");
    assert_eq!(approved["auth_code"].as_str().unwrap().len(), 6);
    assert!(approved["delivery_date"]
        .as_str()
        .unwrap()
        .starts_with("20"));

    let over_limit = kiosk_order(&kiosk_cfg, "mc-over-limit", "L", None);
    assert_eq!(over_limit["outcome"], "declined", "{over_limit}");
    assert_eq!(over_limit["code"], "51");

    let expired = kiosk_order(&kiosk_cfg, "visa-expired", "2L", None);
    assert_eq!(expired["outcome"], "declined", "{expired}");
    assert_eq!(expired["code"], "54");

    // A customer's retry of the same order (same id): the first answer, not a second hold.
    let first = kiosk_order(&kiosk_cfg, "jcb-ok", "KG", None);
    assert_eq!(first["outcome"], "approved", "{first}");
    let id = first["order_id"].as_str().unwrap();
    let again = kiosk_order(&kiosk_cfg, "jcb-ok", "KG", Some(id));
    assert_eq!(again["order_id"], first["order_id"]);
    assert_eq!(again["auth_code"], first["auth_code"]);
    assert_eq!(again["delivery_date"], first["delivery_date"]);

    intermediary.stop();
    lab.stop();
    acquirer.stop();

    // The acquirer: one authorisation per order id, holds only for approved ones.
    let acq = inspect(&acquirer_cfg);
    let auths = acq["authorisations"].as_array().unwrap();
    assert_eq!(auths.len(), 4, "{acq:#}");
    let auth_of = |order: &Value| {
        auths
            .iter()
            .find(|a| a["order_id"] == order["order_id"])
            .unwrap()
            .clone()
    };
    let a = auth_of(&approved);
    assert_eq!(
        (
            a["outcome"].as_str(),
            a["hold"].as_str(),
            a["amount_minor"].as_i64()
        ),
        (Some("approved"), Some("held"), Some(90))
    );
    assert_eq!(a["code"], approved["auth_code"]);
    assert_eq!(auth_of(&over_limit)["hold"], "none");
    assert_eq!(auth_of(&over_limit)["code"], "51");
    assert_eq!(auth_of(&expired)["code"], "54");
    assert_eq!(
        auths
            .iter()
            .filter(|a| a["order_id"] == first["order_id"])
            .count(),
        1
    );
    let jcb = acq["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["last4"] == "0000")
        .unwrap();
    assert_eq!(
        jcb["held_minor"], 150,
        "exactly one hold of 3 × KG (50) for the resubmitted order"
    );
    let visa = acq["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["last4"] == "1111")
        .unwrap();
    assert_eq!(visa["held_minor"], 90);
    let acq_text = acq.to_string();
    for pan in [
        "4111111111111111",
        "3530111333300000",
        "5555555555554444",
        "4012888888881881",
    ] {
        assert!(
            !acq_text.contains(pan),
            "a full PAN leaked into the acquirer's state"
        );
    }

    // The lab: a job per approved order; the image bytes are the memory card's.
    let lab_state = inspect(&lab_cfg);
    let jobs = lab_state["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{lab_state:#}");
    let card_dir = fx.join("memory-card/DCIM/100PMESH");
    for job in jobs {
        let lines = job["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 2);
        for line in lines {
            let original = card_dir.join(line["file_name"].as_str().unwrap());
            let held = Path::new(line["blob_path"].as_str().unwrap());
            assert_eq!(
                file_hash(held),
                file_hash(&original),
                "{} differs at the lab",
                line["file_name"]
            );
            assert_eq!(
                line["blob"].as_str().unwrap(),
                file_hash(&original).to_hex().as_str()
            );
        }
        let delivered = jobs
            .iter()
            .map(|j| j["delivery_date"].as_str().unwrap())
            .collect::<Vec<_>>();
        assert!(delivered.contains(&approved["delivery_date"].as_str().unwrap()));
    }

    // The kiosk: the answers it printed are the answers it kept; nothing left to send.
    let kiosk = inspect(&kiosk_cfg);
    assert_eq!(kiosk["outbox"].as_array().unwrap().len(), 0);
    let kept = kiosk["orders"].as_array().unwrap();
    assert_eq!(kept.len(), 4);
    for printed in [&approved, &over_limit, &expired, &first] {
        let k = kept
            .iter()
            .find(|o| o["order_id"] == printed["order_id"])
            .unwrap();
        assert_eq!(k["outcome"], printed["outcome"]);
        assert_eq!(k["auth_code"], printed["auth_code"]);
        assert_eq!(k["delivery_date"], printed["delivery_date"]);
    }

    // PCI DSS 3.3-3.5: no full card number, no track data, no cardholder name, no PIN
    // block in any node's files (the kiosk's included: its outbox holds the card
    // sealed) or logs. A format 4 block is encrypted under a one-time key and cannot be
    // recognised, but a format 0 block of a test card's PIN (what a careless kiosk
    // would keep) can: it is deterministic.
    let cards = std::fs::read_to_string(fx.join("cards.toml")).unwrap();
    let mut secrets: Vec<String> = Vec::new();
    let mut pin_blocks: Vec<[u8; 8]> = Vec::new();
    let mut pan = String::new();
    for line in cards.lines() {
        if let Some(t) = line.strip_prefix("track1 = \"") {
            let t = t.trim_end_matches('"');
            let name = t.split('^').nth(1).unwrap().to_string();
            pan = t
                .trim_start_matches("%B")
                .split('^')
                .next()
                .unwrap()
                .to_string();
            secrets.extend([pan.clone(), name, t.to_string()]);
        }
        if let Some(p) = line.strip_prefix("pin = \"") {
            let pin =
                printmesh_protocol::pinblock::Pin::new(p.trim_end_matches('"').as_bytes()).unwrap();
            pin_blocks.push(printmesh_protocol::pinblock::format0_digits(&pin, &pan).unwrap());
        }
        if let Some(t) = line.strip_prefix("track2 = \"") {
            let t = t.trim_end_matches('"');
            // The "=YYMM..." part after the PAN (expiry, service code, discretionary).
            secrets.push(
                t.split('=')
                    .nth(1)
                    .unwrap()
                    .trim_end_matches('?')
                    .to_string(),
            );
        }
    }
    assert!(secrets.len() >= 21 && pin_blocks.len() >= 7, "{secrets:?}");
    let mut scanned = 0;
    for entry in files_below(d) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "card data ({}…) found in {}",
                &secret[..4],
                entry.display()
            );
        }
        for block in &pin_blocks {
            assert!(
                !bytes.windows(8).any(|w| w == block),
                "a PIN block in {}",
                entry.display()
            );
        }
        scanned += 1;
    }
    assert!(scanned > 10, "scanned only {scanned} files");

    // The intermediary routed four orders and answered each once.
    let im = inspect(&intermediary_cfg);
    assert_eq!(im["orders"].as_array().unwrap().len(), 4, "{im:#}");
    assert!(im["orders"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["stage"].as_str().unwrap().starts_with("answered")));
    // Events were gossiped: the intermediary saw the acquirer's and the lab's too.
    assert!(im["events"].as_u64().unwrap() >= 4 + 4 + 2, "{im:#}");
}

/// Debit needs the cardholder's PIN: the kiosk's PIN pad encrypts it (format 4), the
/// intermediary passes the block on, the acquirer verifies it against its verification
/// value. The PIN and its blocks appear in no log and no node's files.
#[test]
fn debit_orders_are_verified_by_pin_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let network = format!("e2e-pin-{}", std::process::id());
    let acquirer_cfg = acquirer_config(d, &network);
    let lab_cfg = lab_config(d, &network, r#"["mon", "tue", "wed", "thu", "fri"]"#);
    let acquirer = NodeProc::start("acquirer", &acquirer_cfg, d);
    let lab = NodeProc::start("lab", &lab_cfg, d);
    let peers = [acquirer.addrs[0].clone(), lab.addrs[0].clone()];
    let intermediary_cfg = intermediary_config(d, &network, "/ip4/127.0.0.1/tcp/0", &peers);
    let intermediary = NodeProc::start("intermediary", &intermediary_cfg, d);
    let kiosk_cfg = kiosk_config(d, &network, &intermediary.addrs[0]);

    // visa-debit's PIN is 5678, jcb-ok's 4321 (fixtures/cards.toml).
    let debit = ["--method", "debit"];
    fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["--method", "debit"][..], extra].concat()
    }
    let right = kiosk_order_with(&kiosk_cfg, "visa-debit", "L", &with(&["--pin", "5678"]));
    assert_eq!(right["outcome"], "approved", "{right}");
    let wrong = kiosk_order_with(&kiosk_cfg, "visa-debit", "L", &with(&["--pin", "5679"]));
    assert_eq!(
        (wrong["outcome"].as_str(), wrong["code"].as_str()),
        (Some("declined"), Some("55")),
        "{wrong}"
    );
    assert_eq!(wrong["reason"], "the PIN was not correct");
    let none = kiosk_order_with(&kiosk_cfg, "visa-debit", "L", &debit);
    assert_eq!(none["code"], "55", "{none}");
    // A credit card is not a debit card.
    let as_debit = kiosk_order_with(&kiosk_cfg, "jcb-ok", "L", &with(&["--pin", "4321"]));
    assert_eq!(as_debit["code"], "57", "{as_debit}");
    // Credit with the PIN the customer chose to enter is checked too.
    let credit = kiosk_order_with(&kiosk_cfg, "jcb-ok", "L", &["--pin", "4321"]);
    assert_eq!(credit["outcome"], "approved", "{credit}");
    // An IC card, inserted, with its PIN; a point card.
    let ic = kiosk_order_with(
        &kiosk_cfg,
        "jcb-ic",
        "L",
        &["--method", "ic", "--pin", "2468"],
    );
    assert_eq!(ic["outcome"], "approved", "{ic}");
    let points = kiosk_order_with(&kiosk_cfg, "point-card", "L", &["--method", "point"]);
    assert_eq!(points["outcome"], "approved", "{points}");

    intermediary.stop();
    lab.stop();
    acquirer.stop();
    let acq = inspect(&acquirer_cfg);
    let held = |last4: &str| {
        acq["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["last4"] == last4)
            .unwrap()["held_minor"]
            .clone()
    };
    // One L order of the fixture card's DPOF picks is 3 prints, 90 yen (or points).
    assert_eq!(held("5556"), 90, "{acq:#}");
    assert_eq!(held("0000"), 90, "{acq:#}");
    assert_eq!(held("0505"), 90, "{acq:#}");
    assert_eq!(held("0009"), 90, "{acq:#}");
    assert_eq!(acq["ledger_balanced"], true, "{acq:#}");
    for entry in files_below(d) {
        if entry.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&entry).unwrap();
            for pin in ["5678", "5679", "4321", "2468"] {
                assert!(
                    !text.contains(&format!(" {pin}")),
                    "a PIN in {}",
                    entry.display()
                );
            }
        }
    }
}

#[test]
fn a_config_typo_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lab.toml");
    std::fs::write(
        &cfg,
        "role = \"lab\"\nname = \"L\"\ndata_dir = \"d\"\n[lab]\nprints_per_dya = 5\ncutoff_hour = 15\ncourier_days = [\"mon\"]\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["lab", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("prints_per_dya") && err.contains("line 5"),
        "{err}"
    );
}

/// The uplink is down: the kiosk still takes the order into its outbox and says it is
/// pending; when an intermediary appears, a restarted kiosk delivers it.
#[test]
fn an_order_taken_offline_is_delivered_when_the_intermediary_appears() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let network = format!("offline-{}", std::process::id());
    let acquirer_cfg = acquirer_config(d, &network);
    let lab_cfg = lab_config(d, &network, r#"["tue"]"#);
    let acquirer = NodeProc::start("acquirer", &acquirer_cfg, d);
    let lab = NodeProc::start("lab", &lab_cfg, d);
    // The intermediary's port is chosen now; nothing listens there yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let im_addr = format!("/ip4/127.0.0.1/tcp/{port}");
    let kiosk_cfg = kiosk_config(d, &network, &im_addr);

    let out = Command::new(bin())
        .args([
            "kiosk",
            "--config",
            kiosk_cfg.to_str().unwrap(),
            "order",
            "--card",
            "visa-ok",
            "--timeout-secs",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pending: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pending["outcome"], "pending");
    let outbox = inspect(&kiosk_cfg);
    assert_eq!(outbox["outbox"], serde_json::json!([pending["order_id"]]));

    // The intermediary comes up on the port the kiosk knows.
    let peers = [acquirer.addrs[0].clone(), lab.addrs[0].clone()];
    let im_cfg = intermediary_config(d, &network, &im_addr, &peers);
    let intermediary = NodeProc::start("intermediary", &im_cfg, d);

    // The kiosk node restarts and drains its outbox.
    let kiosk = NodeProc::start("kiosk", &kiosk_cfg, d);
    let mut delivered = false;
    for _ in 0..300 {
        let log = std::fs::read_to_string(&kiosk.log).unwrap_or_default();
        if log.contains("answered") {
            delivered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    kiosk.stop();
    assert!(delivered, "the outbox was not drained");
    let state = inspect(&kiosk_cfg);
    assert_eq!(state["outbox"].as_array().unwrap().len(), 0);
    let order = &state["orders"][0];
    assert_eq!(order["order_id"], pending["order_id"]);
    assert_eq!(order["outcome"], "approved", "{state:#}");
    intermediary.stop();
    lab.stop();
    acquirer.stop();
}
