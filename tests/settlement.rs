//! Settlement across separate processes (patent [0064]-[0065]): orders are paid at the
//! kiosk, the lab ships two of them (the intermediary captures their holds), the
//! acquirer closes a batch (it asks the intermediary for its bill and pays it; the
//! intermediary keeps its commission and pays the lab its print fees), and the three
//! reports of the day agree to the yen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{
    acquirer_config, eventually, files_below, inspect, intermediary_config, kiosk_config,
    lab_config, run, totals, NodeProc,
};
use serde_json::Value;

fn order(kiosk: &Path, card: &str, size: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "kiosk",
        "--config",
        kiosk.to_str().unwrap(),
        "order",
        "--card",
        card,
        "--size",
        size,
    ];
    args.extend_from_slice(extra);
    let (ok, text) = run(&args);
    assert!(ok, "{text}");
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

use common::report_csv as report;

#[test]
fn three_parties_settle_and_their_reports_agree() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let network = format!("settle-{}", std::process::id());
    let acquirer_cfg = acquirer_config(d, &network);
    let lab_cfg = lab_config(
        d,
        &network,
        r#"["mon", "tue", "wed", "thu", "fri", "sat", "sun"]"#,
    );
    let acquirer = NodeProc::start("acquirer", &acquirer_cfg, d);
    let lab = NodeProc::start("lab", &lab_cfg, d);
    let peers = [acquirer.addrs[0].clone(), lab.addrs[0].clone()];
    let intermediary_cfg = intermediary_config(d, &network, "/ip4/127.0.0.1/tcp/0", &peers);
    let intermediary = NodeProc::start("intermediary", &intermediary_cfg, d);
    let kiosk_cfg = kiosk_config(d, &network, &intermediary.addrs[0]);

    // The fixture card's DPOF picks are 3 prints: L 90 yen, 2L 240, KG 150.
    let visa = order(&kiosk_cfg, "visa-ok", "L", &[]);
    let jcb = order(&kiosk_cfg, "jcb-ok", "2L", &[]);
    let points = order(&kiosk_cfg, "point-card", "KG", &["--method", "point"]);
    let declined = order(&kiosk_cfg, "mc-over-limit", "L", &[]);
    for o in [&visa, &jcb, &points] {
        assert_eq!(o["outcome"], "approved", "{o}");
    }
    assert_eq!(declined["outcome"], "declined");
    let id = |o: &Value| o["order_id"].as_str().unwrap().to_string();

    // The lab ships two of them; the third stays held, the declined one has nothing.
    for o in [&visa, &points] {
        let (ok, text) = run(&["lab", "--config", lab_cfg.to_str().unwrap(), "ship", &id(o)]);
        assert!(ok && text.contains("shipped"), "{text}");
    }
    let (ok, text) = run(&[
        "lab",
        "--config",
        lab_cfg.to_str().unwrap(),
        "ship",
        &id(&declined),
    ]);
    assert!(!ok && text.contains("no job"), "{text}");
    // Shipping again only announces it again (an event may have been missed).
    let (ok, text) = run(&[
        "lab",
        "--config",
        lab_cfg.to_str().unwrap(),
        "ship",
        &id(&visa),
    ]);
    assert!(ok && text.contains("announced again"), "{text}");

    let date = chrono::Utc::now().date_naive().to_string();
    // The intermediary captures both on the lab's Shipped events.
    eventually("the captures", d, || {
        totals(&report("acquirer", &acquirer_cfg, &date)).get("captured not yet settled")
            == Some(&(90 + 150))
    });

    // Settlement: bill, payment, print fees.
    let (ok, text) = run(&[
        "acquirer",
        "--config",
        acquirer_cfg.to_str().unwrap(),
        "settle",
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("paid JPY 240 for 2 orders") && text.contains("the intermediary confirmed"),
        "{text}"
    );
    eventually("the lab's payment", d, || {
        totals(&report("lab", &lab_cfg, &date)).get("print fees received") == Some(&(240 - 48))
    });
    // Nothing more to settle: a second run pays nothing twice.
    let (ok, text) = run(&[
        "acquirer",
        "--config",
        acquirer_cfg.to_str().unwrap(),
        "settle",
    ]);
    assert!(ok && text.contains("nothing to settle"), "{text}");

    // The three reports agree to the yen (commission 20%: 18 + 30 = 48).
    let acq = totals(&report("acquirer", &acquirer_cfg, &date));
    let im = totals(&report("intermediary", &intermediary_cfg, &date));
    let lb = totals(&report("lab", &lab_cfg, &date));
    assert_eq!(acq["paid to intermediaries"], 240, "{acq:?}");
    assert_eq!(
        im["received from the acquirer"],
        acq["paid to intermediaries"]
    );
    assert_eq!(im["commission kept"], 48);
    assert_eq!(
        im["commission kept"] + im["print fees to labs"],
        im["received from the acquirer"]
    );
    assert_eq!(lb["print fees received"], im["print fees to labs"]);
    assert_eq!(im["print fees not yet paid"], 0);
    assert_eq!(acq["captured not yet settled"], 0);

    // The card statements: each charge on its card, the points in points.
    let acq_text = report("acquirer", &acquirer_cfg, &date);
    let statement = |card: &str| {
        acq_text
            .lines()
            .filter(|l| l.starts_with(card))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let v = statement("VISA **** 1111");
    assert_eq!(v.len(), 1, "{acq_text}");
    assert!(
        v[0].contains(&id(&visa)) && v[0].ends_with(",90"),
        "{}",
        v[0]
    );
    let p = statement("card **** 0009");
    assert!(p.len() == 1 && p[0].ends_with("150 PTS"), "{acq_text}");
    assert!(
        statement("JCB **** 0000").is_empty(),
        "not shipped, not charged"
    );

    // The terminal table for people.
    let (ok, table) = run(&[
        "intermediary",
        "--config",
        intermediary_cfg.to_str().unwrap(),
        "report",
        "--date",
        &date,
    ]);
    assert!(
        ok && table.contains("received from the acquirer: JPY 240"),
        "{table}"
    );

    intermediary.stop();
    lab.stop();
    acquirer.stop();

    // The same reports from the stopped nodes' databases; the books balance.
    assert_eq!(
        totals(&report("lab", &lab_cfg, &date))["print fees received"],
        192
    );
    let state = inspect(&acquirer_cfg);
    assert_eq!(state["ledger_balanced"], true, "{state:#}");
    let holds: BTreeMap<String, String> = state["authorisations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["order_id"].as_str().unwrap().to_string(),
                a["hold"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(holds[&id(&visa)], "captured");
    assert_eq!(holds[&id(&points)], "captured");
    assert_eq!(holds[&id(&jcb)], "held");
    assert_eq!(holds[&id(&declined)], "none");
    let batches = state["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(
        (
            batches[0]["orders"].as_u64(),
            batches[0]["advice_delivered"].as_bool()
        ),
        (Some(2), Some(true))
    );

    // No card number anywhere behind the kiosk, nor in any log.
    for file in files_below(d) {
        let name = file.to_string_lossy().into_owned();
        let behind = ["acquirer", "intermediary", "lab"]
            .iter()
            .any(|r| file.starts_with(d.join(r)));
        if behind || name.ends_with(".log") {
            let bytes = std::fs::read(&file).unwrap();
            for pan in [
                "4111111111111111",
                "3530111333300000",
                "6035310000000009",
                "5555555555554444",
            ] {
                assert!(
                    !bytes.windows(16).any(|w| w == pan.as_bytes()),
                    "a PAN in {name}"
                );
            }
        }
    }
}

/// The lab ships while the intermediary is down, so its `Shipped` event reaches
/// nobody; the intermediary, once back, asks the lab what it missed and captures.
#[test]
fn an_intermediary_that_was_down_when_the_lab_shipped_captures_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let network = format!("away-{}", std::process::id());
    let acquirer_cfg = acquirer_config(d, &network);
    let lab_cfg = lab_config(
        d,
        &network,
        r#"["mon", "tue", "wed", "thu", "fri", "sat", "sun"]"#,
    );
    let acquirer = NodeProc::start("acquirer", &acquirer_cfg, d);
    let lab = NodeProc::start("lab", &lab_cfg, d);
    let peers = [acquirer.addrs[0].clone(), lab.addrs[0].clone()];
    let intermediary_cfg = intermediary_config(d, &network, "/ip4/127.0.0.1/tcp/0", &peers);
    let intermediary = NodeProc::start("intermediary", &intermediary_cfg, d);
    let kiosk_cfg = kiosk_config(d, &network, &intermediary.addrs[0]);
    let visa = order(&kiosk_cfg, "visa-ok", "L", &[]);
    assert_eq!(visa["outcome"], "approved", "{visa}");
    let id = visa["order_id"].as_str().unwrap().to_string();

    intermediary.stop();
    let (ok, text) = run(&["lab", "--config", lab_cfg.to_str().unwrap(), "ship", &id]);
    assert!(ok && text.contains("shipped"), "{text}");
    let date = chrono::Utc::now().date_naive().to_string();
    let captured = || {
        totals(&report("acquirer", &acquirer_cfg, &date))
            .get("captured not yet settled")
            .copied()
    };
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        captured(),
        Some(0),
        "nobody captured it: the intermediary was down"
    );

    // Back on the same database: it catches up from the lab and captures.
    let intermediary = NodeProc::start("intermediary", &intermediary_cfg, d);
    eventually("the capture once the intermediary is back", d, || {
        captured() == Some(90)
    });
    eventually("the intermediary to say it caught up", d, || {
        std::fs::read_to_string(&intermediary.log)
            .unwrap_or_default()
            .contains("caught up on missed events")
    });
}
