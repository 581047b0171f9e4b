//! An order's whole life across separate processes, from the kiosk to the customer's
//! hands: paid at the kiosk → authorised (acquirer) → accepted by the lab with a
//! delivery date → rendered and printed over IPP on a real CUPS (cups-pdf) → handed
//! to the courier (the intermediary captures the payment) → in transit → delivered to
//! the store → collected at the counter. Beside it, an order whose photo is cut short
//! is accepted on its header, found unprintable at render, rejected with the reason,
//! and its hold released.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    acquirer_config, acquirer_key_file, bin, fixtures, inspect, intermediary_config, kiosk_config,
    run, write_config, NodeProc, Tmux,
};
use serde_json::Value;

const QUEUE: &str = "ipp://127.0.0.1:631/printers/PDF";
const OUT: &str = "/var/spool/cups-pdf/out";

fn cfg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Polls `check` until it gives a value (or fails the test after `secs`, with logs).
fn eventually<T>(what: &str, logs: &Path, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            let mut text = String::new();
            for role in ["acquirer", "intermediary", "lab", "courier", "kiosk"] {
                let log =
                    std::fs::read_to_string(logs.join(format!("{role}.log"))).unwrap_or_default();
                text.push_str(&format!("--- {role}\n{log}"));
            }
            panic!("gave up waiting for {what}\n{text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// CUPS with the cups-pdf queue, by the project's setup script (idempotent).
fn cups() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/cups-setup");
    let out = Command::new(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed (it needs root and Debian's packages): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A memory card whose only photo is cut off halfway (its header whole).
fn damaged_card(dir: &Path) -> PathBuf {
    let card = dir.join("damaged-card");
    let folder = card.join("DCIM").join("100PMESH");
    std::fs::create_dir_all(&folder).unwrap();
    let good = std::fs::read(fixtures().join("memory-card/DCIM/100PMESH/PMSH0002.JPG")).unwrap();
    std::fs::write(folder.join("PMSH0001.JPG"), &good[..good.len() / 2]).unwrap();
    card
}

fn lab_status(lab: &Path) -> Value {
    let (ok, text) = run(&["lab", "--config", cfg(lab), "status"]);
    assert!(ok, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn job<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["order_id"] == id)
}

#[test]
fn an_order_from_the_kiosk_to_the_customers_hands() {
    cups();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let network = format!("life-{}", std::process::id());

    let acquirer_cfg = acquirer_config(d, &network);
    let acquirer = NodeProc::start("acquirer", &acquirer_cfg, d);
    let lab_cfg = write_config(
        d,
        "lab",
        &network,
        &[],
        &format!(
            r#"[lab]
cutoff_hour = 24
courier_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
transit_days = 1
utc_offset_hours = 9
review_secs = 2
[[lab.printers]]
name = "office-pdf"
prints_per_hour = 600
ipp = "{QUEUE}"
[[lab.routes]]
store = "store-test"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
pickup_hour = 17
transit_days = 2
"#
        ),
    );
    let lab = NodeProc::start("lab", &lab_cfg, d);
    let courier_cfg = write_config(d, "courier", &network, &[lab.addrs[0].clone()], "[courier]");
    let courier = NodeProc::start("courier", &courier_cfg, d);
    let peers = [acquirer.addrs[0].clone(), lab.addrs[0].clone()];
    let intermediary_cfg = intermediary_config(d, &network, "/ip4/127.0.0.1/tcp/0", &peers);
    let intermediary = NodeProc::start("intermediary", &intermediary_cfg, d);
    let kiosk_cfg = kiosk_config(d, &network, &intermediary.addrs[0]);

    // A customer pays at the kiosk: three prints (the card's DPOF picks), L, visa.
    let (ok, text) = run(&[
        "kiosk",
        "--config",
        cfg(&kiosk_cfg),
        "order",
        "--card",
        "visa-ok",
    ]);
    assert!(ok, "{text}");
    let order: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(order["outcome"], "approved", "{order}");
    let id = order["order_id"].as_str().unwrap().to_string();
    let total = order["total_minor"].as_i64().unwrap();
    // The store's own route: two days in transit.
    let promised: chrono::NaiveDate = order["delivery_date"].as_str().unwrap().parse().unwrap();
    assert!(promised >= chrono::Utc::now().date_naive() + chrono::Days::new(2));

    // A second customer's photo is damaged past its header.
    let damaged_kiosk = d.join("damaged");
    std::fs::create_dir_all(&damaged_kiosk).unwrap();
    let damaged_cfg = kiosk_config(&damaged_kiosk, &network, &intermediary.addrs[0]);
    let text = std::fs::read_to_string(&damaged_cfg)
        .unwrap()
        .replace(
            &fixtures().join("memory-card").display().to_string(),
            &damaged_card(d).display().to_string(),
        )
        .replace(
            &acquirer_key_file(&damaged_kiosk).display().to_string(),
            &acquirer_key_file(d).display().to_string(),
        );
    std::fs::write(&damaged_cfg, text).unwrap();
    let (ok, text) = run(&[
        "kiosk",
        "--config",
        cfg(&damaged_cfg),
        "order",
        "--card",
        "jcb-ok",
    ]);
    assert!(ok, "{text}");
    let damaged: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(damaged["outcome"], "approved", "{damaged}");
    let damaged_id = damaged["order_id"].as_str().unwrap().to_string();

    // The store's kiosk keeps running to hear what happens to its order.
    let kiosk = NodeProc::start("kiosk", &kiosk_cfg, d);

    // The lab renders and prints it on CUPS; the job's state says when it is done.
    eventually("the order printed on CUPS", d, 90, || {
        let s = lab_status(&lab_cfg);
        let j = job(&s, &id)?;
        assert_ne!(j["status"], "failed", "{j}");
        (j["status"] == "printed").then_some(())
    });
    let pdf = std::fs::read_dir(OUT)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains(&id))
        .expect("the order's PDF from cups-pdf");
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF"));
    // The damaged one is rejected with its reason and leaves the queue.
    eventually("the damaged order rejected", d, 60, || {
        job(&lab_status(&lab_cfg), &damaged_id)
            .is_none()
            .then_some(())
    });

    // The operator, on the lab console in a real terminal, sees the order printed and
    // hands it to the courier.
    let console = Tmux::start(
        &format!("{} lab --config {} console", bin(), cfg(&lab_cfg)),
        120,
        30,
    );
    let screen = console.wait_for("ready 1");
    assert!(screen.contains(&id), "{screen}");
    assert!(screen.contains("office-pdf"), "{screen}");
    assert!(screen.contains("at risk 0"), "{screen}");
    console.keys(&["a"]);
    console.wait_for("(courier,");
    console.keys(&["q"]);
    let (ok, text) = run(&["courier", "--config", cfg(&courier_cfg), "manifest"]);
    assert!(ok, "{text}");
    let manifest: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 1, "{manifest}");
    assert_eq!(manifest[0]["order_id"], id);
    assert_eq!(manifest[0]["store"], "store-test");
    assert_eq!(manifest[0]["prints"], 3);

    // Not delivered yet: the counter cannot hand it over.
    let (ok, text) = run(&["kiosk", "--config", cfg(&kiosk_cfg), "collect", &id]);
    assert!(!ok && text.contains("not delivered"), "{text}");

    let (ok, text) = run(&["courier", "--config", cfg(&courier_cfg), "depart"]);
    assert!(ok && text.contains("in transit"), "{text}");
    let (ok, text) = run(&[
        "courier",
        "--config",
        cfg(&courier_cfg),
        "deliver",
        "--store",
        "store-test",
    ]);
    assert!(ok && text.contains("delivered"), "{text}");

    // The store sees it delivered; the customer collects it. (Gossip has no resync of
    // missed events yet: should the store miss the delivery, the courier announces it
    // again, as its driver would.)
    let mut tries = 0;
    eventually("collected at the counter", d, 60, || {
        let (ok, text) = run(&["kiosk", "--config", cfg(&kiosk_cfg), "collect", &id]);
        tries += 1;
        if !ok && tries % 10 == 0 {
            run(&["courier", "--config", cfg(&courier_cfg), "deliver", &id]);
        }
        (ok && text.contains("collected")).then_some(())
    });

    // The payment was captured when the courier took the prints.
    let date = chrono::Utc::now().date_naive().to_string();
    let mut tries = 0;
    eventually("the capture", d, 60, || {
        tries += 1;
        if tries % 10 == 0 {
            // The lab announces the shipment again, as `lab ship` does for a shipped
            // order, should the intermediary have missed it.
            run(&["lab", "--config", cfg(&lab_cfg), "ship", &id]);
        }
        let (ok, text) = run(&[
            "acquirer",
            "--config",
            cfg(&acquirer_cfg),
            "report",
            "--date",
            &date,
            "--csv",
        ]);
        assert!(ok, "{text}");
        text.lines()
            .any(|l| l == format!("captured not yet settled,JPY,{total}"))
            .then_some(())
    });

    kiosk.stop();
    intermediary.stop();
    courier.stop();
    lab.stop();
    acquirer.stop();

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
    assert_eq!(holds[&id], "captured");
    assert_eq!(
        holds[&damaged_id], "voided",
        "the unprintable order's hold is released"
    );

    let lab_state = inspect(&lab_cfg);
    let jobs: BTreeMap<String, Value> = lab_state["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["order_id"].as_str().unwrap().to_string(), j.clone()))
        .collect();
    assert_eq!(jobs[&id]["status"], "shipped");
    assert_eq!(jobs[&damaged_id]["status"], "rejected");
    let courier_state = inspect(&courier_cfg);
    assert_eq!(courier_state["manifest"][0]["stage"], "Delivered");
    // The kiosk heard the whole afterlife: its order's events end in Collected.
    let kiosk_state = inspect(&kiosk_cfg);
    assert!(
        kiosk_state["events"].as_u64().unwrap() >= 7,
        "{kiosk_state:#}"
    );
}

#[test]
fn a_job_the_lab_has_no_room_for_is_rejected_with_its_reason_and_the_hold_released() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let network = format!("full-{}", std::process::id());
    let acquirer_cfg = acquirer_config(d, &network);
    let acquirer = NodeProc::start("acquirer", &acquirer_cfg, d);
    // The lab is closed for the season: every day it looks ahead is a holiday.
    let today = chrono::Utc::now().date_naive();
    let holidays: Vec<String> = (0..125)
        .map(|n| format!("\"{}\"", today + chrono::Days::new(n)))
        .collect();
    let lab_cfg = write_config(
        d,
        "lab",
        &network,
        &[],
        &format!(
            "[lab]\nprints_per_day = 100\ncutoff_hour = 24\ncourier_days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\nholidays = [{}]",
            holidays.join(", ")
        ),
    );
    let lab = NodeProc::start("lab", &lab_cfg, d);
    let peers = [acquirer.addrs[0].clone(), lab.addrs[0].clone()];
    let intermediary_cfg = intermediary_config(d, &network, "/ip4/127.0.0.1/tcp/0", &peers);
    let intermediary = NodeProc::start("intermediary", &intermediary_cfg, d);
    let kiosk_cfg = kiosk_config(d, &network, &intermediary.addrs[0]);

    let (ok, text) = run(&[
        "kiosk",
        "--config",
        cfg(&kiosk_cfg),
        "order",
        "--card",
        "visa-ok",
    ]);
    assert!(ok, "{text}");
    let order: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(order["outcome"], "rejected", "{order}");
    let reason = order["reason"].as_str().unwrap();
    assert!(reason.contains("no room for 3 prints"), "{reason}");
    let id = order["order_id"].as_str().unwrap().to_string();

    intermediary.stop();
    lab.stop();
    acquirer.stop();
    let state = inspect(&acquirer_cfg);
    assert_eq!(state["ledger_balanced"], true, "{state:#}");
    let hold = state["authorisations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["order_id"] == id.as_str())
        .map(|a| a["hold"].as_str().unwrap().to_string());
    assert_eq!(hold.as_deref(), Some("voided"), "{state:#}");
    assert_eq!(inspect(&lab_cfg)["jobs"].as_array().unwrap().len(), 0);
}
