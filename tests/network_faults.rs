//! A network, not a line: the two failures measured on separate processes before
//! version 2 of the auth and print protocols, as fixed scenarios.
//!
//! 1. An order goes through intermediary I1, lab L1 accepts the job, and I1 dies before
//!    the answer reaches it (a crash point) and its disk is lost for good. The kiosk
//!    retries through I2, whose own route prefers L2: the order still prints once, at
//!    L1, the receipt names L1, and after shipping the payment is captured once (by
//!    I2), billed once and L1 is paid its fee.
//! 2. Holds that live shorter than the wait for printing: the intermediary keeps the
//!    hold alive until the lab ships, a lab whose promise is past the last day a hold
//!    can reach refuses the job (another takes it), and a lab whose hold is about to
//!    lapse does not ship.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{fixtures, inspect, run, NodeProc};
use printmesh_nodes::testnet::TestNet;
use printmesh_protocol::messages::Role;
use serde_json::Value;

/// One test's network: every node in a folder of its own under `dir`.
struct Net {
    dir: PathBuf,
    network: String,
}

impl Net {
    fn new(dir: &Path, tag: &str) -> Net {
        Net {
            dir: dir.to_path_buf(),
            network: format!("{tag}-{}", std::process::id()),
        }
    }

    /// Writes the config of node `folder` (named `name`) and returns its path.
    fn config(
        &self,
        folder: &str,
        role: Role,
        name: &str,
        peers: &[&str],
        section: &str,
    ) -> PathBuf {
        let net = TestNet::named(&self.dir.join(folder), &self.network);
        let peers = peers.iter().map(|p| p.to_string()).collect();
        let config = net.bare(role, name, role.name(), peers);
        net.write_with_section(&config, section).unwrap()
    }

    fn start(&self, folder: &str, role: Role, config: &Path, env: &[(&str, &str)]) -> NodeProc {
        NodeProc::start_with(None, role.name(), config, &self.dir.join(folder), env)
    }

    fn acquirer(&self, ttl_secs: u64, max_secs: u64) -> PathBuf {
        let section = format!(
            "[acquirer]\ncards = \"{}\"\nhold_ttl_secs = {ttl_secs}\nhold_max_secs = {max_secs}",
            fixtures().join("cards.toml").display()
        );
        self.config("a", Role::Acquirer, "Acquirer", &[], &section)
    }

    /// A lab that prints by hand, `holidays` closed, shipping every day.
    fn lab(&self, folder: &str, name: &str, holidays: &str) -> PathBuf {
        let section = format!(
            "[lab]\nprints_per_day = 100\ncutoff_hour = 24\ncourier_days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\ntransit_days = 1\nutc_offset_hours = 9\nship_margin_secs = 2\nholidays = [{holidays}]"
        );
        self.config(folder, Role::Lab, name, &[], &section)
    }

    fn intermediary(&self, folder: &str, name: &str, peers: &[&str], route: &[&str]) -> PathBuf {
        let labs: Vec<String> = route.iter().map(|l| format!("\"{l}\"")).collect();
        let section = format!(
            "[intermediary]\nprices = \"{}\"\n[[intermediary.routes]]\nstore = \"store-test\"\nlabs = [{}]",
            fixtures().join("demo/prices.toml").display(),
            labs.join(", ")
        );
        self.config(folder, Role::Intermediary, name, peers, &section)
    }

    fn kiosk(&self, peers: &[&str]) -> PathBuf {
        let fx = fixtures();
        let section = format!(
            "[kiosk]\nstore = \"store-test\"\nstore_name = \"Test Store\"\nprices = \"{}\"\nmedia_dir = \"{}\"\ncards = \"{}\"\nacquirer_key_file = \"{}\"",
            fx.join("demo/prices.toml").display(),
            fx.join("memory-card").display(),
            fx.join("cards.toml").display(),
            self.dir.join("a/acquirer/seal.pub").display()
        );
        self.config("k", Role::Kiosk, "Kiosk", peers, &section)
    }

    /// Every node's log, for a failure message.
    fn logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            for log in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if log.path().extension().is_some_and(|e| e == "log") {
                    let body = std::fs::read_to_string(log.path()).unwrap_or_default();
                    text.push_str(&format!("--- {}\n{body}", log.path().display()));
                }
            }
        }
        text
    }

    fn eventually<T>(&self, what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > deadline {
                panic!("gave up waiting for {what}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn cfg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `printmesh kiosk order` (one shot) as JSON.
fn order(kiosk: &Path, order_id: Option<&str>, timeout_secs: u64) -> Value {
    let timeout = timeout_secs.to_string();
    let mut args = vec![
        "kiosk",
        "--config",
        cfg(kiosk),
        "order",
        "--card",
        "visa-ok",
        "--timeout-secs",
        &timeout,
    ];
    if let Some(id) = order_id {
        args.extend(["--order-id", id]);
    }
    let (_, text) = run(&args);
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from kiosk order: {text}"));
    serde_json::from_str(line).unwrap()
}

fn lab_jobs(lab: &Path) -> Vec<Value> {
    let (ok, text) = run(&["lab", "--config", cfg(lab), "status"]);
    assert!(ok, "{text}");
    let status: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    status["jobs"].as_array().cloned().unwrap_or_default()
}

fn auth_of<'a>(acquirer: &'a Value, id: &str) -> &'a Value {
    acquirer["authorisations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["order_id"] == id)
        .unwrap_or_else(|| panic!("no authorisation for {id}: {acquirer:#}"))
}

#[test]
fn an_intermediary_lost_after_the_lab_accepted_leaves_one_print_one_capture_and_a_paid_lab() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new(dir.path(), "lost-im");
    let acq_cfg = net.acquirer(3600, 30 * 24 * 3600);
    let acquirer = net.start("a", Role::Acquirer, &acq_cfg, &[]);
    let l1_cfg = net.lab("l1", "Lab One", "");
    let l1 = net.start("l1", Role::Lab, &l1_cfg, &[]);
    let l2_cfg = net.lab("l2", "Lab Two", "");
    let l2 = net.start("l2", Role::Lab, &l2_cfg, &[]);
    let (a, l1a, l2a) = (&acquirer.addrs[0], &l1.addrs[0], &l2.addrs[0]);
    // I1 knows L1 only; I2 prefers L2 and knows both.
    let i1_cfg = net.intermediary("i1", "Intermediary One", &[a, l1a], &["Lab One"]);
    let crash = [("PRINTMESH_CRASH_AT", "intermediary.lab-accepted")];
    let mut i1 = net.start("i1", Role::Intermediary, &i1_cfg, &crash);
    let i2_cfg = net.intermediary(
        "i2",
        "Intermediary Two",
        &[a, l1a, l2a],
        &["Lab Two", "Lab One"],
    );
    let i2 = net.start("i2", Role::Intermediary, &i2_cfg, &[]);
    let i1a = i1.addrs[0].clone();

    // The kiosk reaches I1 only: L1 accepts, I1 dies before it can answer.
    let kiosk_cfg = net.kiosk(&[&i1a]);
    let first = order(&kiosk_cfg, None, 10);
    assert_eq!(first["outcome"], "pending", "{first}");
    let id = first["order_id"].as_str().unwrap().to_string();
    let status = net.eventually("I1 to crash", 10, || i1.child.try_wait().unwrap());
    assert!(!status.success());
    assert_eq!(lab_jobs(&l1_cfg).len(), 1, "L1 has the job");
    // Its disk is lost for good.
    std::fs::remove_dir_all(dir.path().join("i1/intermediary")).unwrap();

    // The kiosk retries through I2.
    let kiosk_cfg = net.kiosk(&[&i2.addrs[0]]);
    let answer = order(&kiosk_cfg, Some(&id), 60);
    assert_eq!(answer["outcome"], "approved", "{answer}\n{}", net.logs());
    assert_eq!(
        answer["lab"], "Lab One",
        "the receipt names the lab that prints it"
    );
    assert!(lab_jobs(&l2_cfg).is_empty(), "L2 never had the job");

    // I1 comes back with an empty disk; L1 ships; the payment is captured once.
    let i1 = net.start("i1", Role::Intermediary, &i1_cfg, &[]);
    let (ok, text) = run(&["lab", "--config", cfg(&l1_cfg), "ship", &id]);
    assert!(ok, "{text}");
    let settled = net.eventually("a settlement with the captured order", 60, || {
        let (ok, text) = run(&["acquirer", "--config", cfg(&acq_cfg), "settle"]);
        (ok && !text.contains("nothing to settle")).then_some(text)
    });
    assert!(settled.contains("paid"), "{settled}");
    net.eventually("L1 paid its print fee", 60, || {
        let (ok, text) = run(&["lab", "--config", cfg(&l1_cfg), "report"]);
        (ok && text.contains(&id)).then_some(())
    });

    for node in [i1, i2, l1, l2, acquirer] {
        node.stop();
    }
    let acq = inspect(&acq_cfg);
    let auth = auth_of(&acq, &id);
    assert_eq!(auth["hold"], "captured", "{auth}");
    assert!(auth["settled"].is_string(), "{auth}");
    assert_eq!(auth["lab"], "Lab One", "{auth}");
    assert_eq!(acq["ledger_balanced"], true);
    let i2_state = inspect(&i2_cfg);
    let routed = i2_state["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["order_id"] == id.as_str())
        .unwrap();
    assert_eq!(routed["lab_paid"], true, "{routed}");
    assert_eq!(routed["lab"], "Lab One", "{routed}");
    let i1_state = inspect(&i1_cfg);
    let i1_billed = i1_state["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["settled"].is_string())
        .count();
    assert_eq!(i1_billed, 0, "billed once, by I2: {i1_state:#}");
    let l1_state = inspect(&l1_cfg);
    let job = &l1_state["jobs"][0];
    assert_eq!(job["status"], "shipped");
    assert!(job["paid"].is_object(), "{job}");
    assert!(inspect(&l2_cfg)["jobs"].as_array().unwrap().is_empty());
}

#[test]
fn holds_shorter_than_the_wait_are_kept_alive_and_a_lab_that_would_ship_too_late_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new(dir.path(), "holds");
    // A hold lives 6 s unless extended, and at most three days.
    let acq_cfg = net.acquirer(6, 3 * 24 * 3600);
    let acquirer = net.start("a", Role::Acquirer, &acq_cfg, &[]);
    // Lab Far is closed for the next ten days: it would ship after the payment lapses.
    let today = chrono::Utc::now().date_naive();
    let closed: Vec<String> = (0..10)
        .map(|d| format!("\"{}\"", today + chrono::Days::new(d)))
        .collect();
    let far_cfg = net.lab("far", "Lab Far", &closed.join(", "));
    let far = net.start("far", Role::Lab, &far_cfg, &[]);
    let near_cfg = net.lab("near", "Lab Near", "");
    let near = net.start("near", Role::Lab, &near_cfg, &[]);
    let peers = [
        acquirer.addrs[0].as_str(),
        far.addrs[0].as_str(),
        near.addrs[0].as_str(),
    ];
    let im_cfg = net.intermediary("i", "Intermediary", &peers, &["Lab Far", "Lab Near"]);
    let im = net.start("i", Role::Intermediary, &im_cfg, &[]);
    let kiosk_cfg = net.kiosk(&[&im.addrs[0]]);

    let answer = order(&kiosk_cfg, None, 60);
    assert_eq!(answer["outcome"], "approved", "{answer}\n{}", net.logs());
    assert_eq!(answer["lab"], "Lab Near", "Lab Far refused: {answer}");
    let id = answer["order_id"].as_str().unwrap().to_string();
    assert!(lab_jobs(&far_cfg).is_empty());

    // Three hold periods pass before the prints are ready: the hold is kept alive.
    std::thread::sleep(Duration::from_secs(18));
    let (ok, text) = run(&["lab", "--config", cfg(&near_cfg), "ship", &id]);
    assert!(ok, "{text}\n{}", net.logs());
    net.eventually("the captured order settled", 60, || {
        let (ok, text) = run(&["acquirer", "--config", cfg(&acq_cfg), "settle"]);
        (ok && !text.contains("nothing to settle")).then_some(())
    });

    // A second order, and its intermediary stopped (SIGSTOP) so nobody extends the hold:
    // the lab does not ship it, and says why.
    let second = order(&kiosk_cfg, None, 60);
    assert_eq!(second["outcome"], "approved", "{second}");
    let second_id = second["order_id"].as_str().unwrap().to_string();
    let pid = im.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_secs(8));
    let (ok, text) = run(&["lab", "--config", cfg(&near_cfg), "ship", &second_id]);
    assert!(!ok, "shipped with a lapsed hold: {text}");
    assert!(text.contains("payment hold ends"), "{text}");
    let (_, status) = run(&["lab", "--config", cfg(&near_cfg), "status"]);
    assert!(status.contains("not shipped until extended"), "{status}");
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();

    for node in [im, far, near, acquirer] {
        node.stop();
    }
    let acq = inspect(&acq_cfg);
    let first = auth_of(&acq, &id);
    assert_eq!(first["hold"], "captured", "{first}");
    assert!(first["settled"].is_string(), "{first}");
    assert_eq!(first["labs_refused"], 1, "{first}");
    let second = auth_of(&acq, &second_id);
    assert_eq!(second["hold"], "expired", "{second}");
    assert_eq!(acq["ledger_balanced"], true);
    let near_state = inspect(&near_cfg);
    let shipped: Vec<&Value> = near_state["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["shipped"] == true)
        .collect();
    assert_eq!(shipped.len(), 1, "{near_state:#}");
}

#[test]
fn a_lab_killed_between_recording_a_shipment_and_announcing_it_announces_it_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new(dir.path(), "resend");
    let acq_cfg = net.acquirer(3600, 30 * 24 * 3600);
    let acquirer = net.start("a", Role::Acquirer, &acq_cfg, &[]);
    let lab_cfg = net.lab("l", "Lab", "");
    let crash = [("PRINTMESH_CRASH_AT", "lab.shipped-before-event")];
    let mut lab = net.start("l", Role::Lab, &lab_cfg, &crash);
    let lab_addr = lab.addrs[0].clone();
    let peers = [acquirer.addrs[0].as_str(), lab_addr.as_str()];
    let im_cfg = net.intermediary("i", "Intermediary", &peers, &["Lab"]);
    let im = net.start("i", Role::Intermediary, &im_cfg, &[]);
    let kiosk_cfg = net.kiosk(&[&im.addrs[0]]);
    let answer = order(&kiosk_cfg, None, 60);
    assert_eq!(answer["outcome"], "approved", "{answer}\n{}", net.logs());
    let id = answer["order_id"].as_str().unwrap().to_string();

    // The shipment is on the lab's disk; the lab dies before the `Shipped` event.
    let (ok, text) = run(&["lab", "--config", cfg(&lab_cfg), "ship", &id]);
    assert!(!ok, "{text}");
    let status = net.eventually("the lab to crash", 10, || lab.child.try_wait().unwrap());
    assert!(!status.success());
    let (ok, text) = run(&["acquirer", "--config", cfg(&acq_cfg), "settle"]);
    assert!(ok && text.contains("nothing to settle"), "{text}");

    // On restart (same address: the intermediary redials it) the event goes out, the
    // intermediary captures, and the order is settled.
    let lab_cfg_text = std::fs::read_to_string(&lab_cfg).unwrap();
    let port = lab_addr.split('/').nth(4).unwrap().to_string();
    std::fs::write(
        &lab_cfg,
        lab_cfg_text.replace(
            "/ip4/127.0.0.1/tcp/0",
            &format!("/ip4/127.0.0.1/tcp/{port}"),
        ),
    )
    .unwrap();
    let lab = net.start("l", Role::Lab, &lab_cfg, &[]);
    net.eventually("the order captured and settled", 60, || {
        let (ok, text) = run(&["acquirer", "--config", cfg(&acq_cfg), "settle"]);
        (ok && !text.contains("nothing to settle")).then_some(())
    });
    for node in [im, lab, acquirer] {
        node.stop();
    }
    let acq = inspect(&acq_cfg);
    assert_eq!(auth_of(&acq, &id)["hold"], "captured");
}

/// Makes a node's config listen on the port it got, so it comes back at the same
/// address after a restart.
fn keep_port(config: &Path, addr: &str) {
    let port = addr.split('/').nth(4).unwrap();
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        config,
        text.replace(
            "/ip4/127.0.0.1/tcp/0",
            &format!("/ip4/127.0.0.1/tcp/{port}"),
        ),
    )
    .unwrap();
}

#[test]
fn an_authorisation_is_kept_while_the_acquirer_is_down_and_a_cancel_beats_one_that_never_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new(dir.path(), "forward");
    let acq_cfg = net.acquirer(3600, 30 * 24 * 3600);
    let mut acquirer = net.start("a", Role::Acquirer, &acq_cfg, &[]);
    let acq_addr = acquirer.addrs[0].clone();
    keep_port(&acq_cfg, &acq_addr);
    let lab_cfg = net.lab("l", "Lab", "");
    let lab = net.start("l", Role::Lab, &lab_cfg, &[]);
    let peers = [acq_addr.as_str(), lab.addrs[0].as_str()];
    let im_cfg = net.intermediary("i", "Intermediary", &peers, &["Lab"]);
    let im = net.start("i", Role::Intermediary, &im_cfg, &[]);
    let kiosk_cfg = net.kiosk(&[&im.addrs[0]]);

    // The acquirer is down: the order waits (kept at the intermediary, and in the
    // kiosk's outbox); the kiosk is gone by the time the acquirer is back, and the
    // intermediary forwards the authorisation itself.
    acquirer.child.kill().unwrap();
    acquirer.child.wait().unwrap();
    let first = order(&kiosk_cfg, None, 5);
    assert_eq!(first["outcome"], "pending", "{first}");
    let first_id = first["order_id"].as_str().unwrap().to_string();
    let mut acquirer = net.start("a", Role::Acquirer, &acq_cfg, &[]);
    net.eventually(
        "the kept authorisation forwarded and the job placed",
        60,
        || {
            lab_jobs(&lab_cfg)
                .iter()
                .any(|j| j["order_id"] == first_id.as_str())
                .then_some(())
        },
    );

    // Down again: a second order waits; the store cancels it before the acquirer ever
    // sees it. The cancel is forwarded until it lands, and the authorisation never
    // will be approved.
    acquirer.child.kill().unwrap();
    acquirer.child.wait().unwrap();
    let second = order(&kiosk_cfg, None, 5);
    assert_eq!(second["outcome"], "pending", "{second}");
    let second_id = second["order_id"].as_str().unwrap().to_string();
    let kiosk = net.start("k", Role::Kiosk, &kiosk_cfg, &[]);
    let text = net.eventually("the cancel requested", 30, || {
        let (ok, text) = run(&["kiosk", "--config", cfg(&kiosk_cfg), "cancel", &second_id]);
        ok.then_some(text)
    });
    assert!(text.contains("nothing is charged"), "{text}");
    // The cancel has reached the intermediary (which no longer forwards the order)
    // before the acquirer is back.
    net.eventually("the cancel at the intermediary", 60, || {
        let log =
            std::fs::read_to_string(dir.path().join("i/intermediary.log")).unwrap_or_default();
        log.lines()
            .any(|l| l.contains(&second_id) && l.contains("release the hold"))
            .then_some(())
    });
    let acquirer2 = net.start("a", Role::Acquirer, &acq_cfg, &[]);
    net.eventually("the cancel confirmed", 60, || {
        let log = std::fs::read_to_string(dir.path().join("k/kiosk.log")).unwrap_or_default();
        log.contains("cancel confirmed").then_some(())
    });
    drop(acquirer);
    for node in [kiosk, im, lab, acquirer2] {
        node.stop();
    }
    let acq = inspect(&acq_cfg);
    assert_eq!(auth_of(&acq, &first_id)["hold"], "held");
    assert_eq!(auth_of(&acq, &second_id)["hold"], "voided");
    let jobs = inspect(&lab_cfg)["jobs"].as_array().cloned().unwrap();
    assert!(
        jobs.iter().all(|j| j["order_id"] != second_id.as_str()),
        "a job for the cancelled order: {jobs:?}"
    );
    let k = inspect(&kiosk_cfg);
    assert!(k["outbox"].as_array().unwrap().is_empty(), "{k:#}");
    let answered = |id: &str| {
        k["orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["order_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(answered(&first_id)["outcome"], "approved");
    let cancelled = answered(&second_id);
    assert_eq!(cancelled["outcome"], "rejected", "{cancelled}");
    assert!(
        cancelled["reason"].as_str().unwrap().contains("cancelled"),
        "{cancelled}"
    );
}

#[test]
fn a_cancel_for_an_order_a_lab_already_has_is_refused_and_the_order_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new(dir.path(), "late-cancel");
    let acq_cfg = net.acquirer(3600, 30 * 24 * 3600);
    let acquirer = net.start("a", Role::Acquirer, &acq_cfg, &[]);
    let lab_cfg = net.lab("l", "Lab", "");
    let lab = net.start("l", Role::Lab, &lab_cfg, &[]);
    let peers = [acquirer.addrs[0].as_str(), lab.addrs[0].as_str()];
    let im_cfg = net.intermediary("i", "Intermediary", &peers, &["Lab"]);
    // The lab takes the job; the intermediary dies before it can answer.
    let crash = [("PRINTMESH_CRASH_AT", "intermediary.lab-accepted")];
    let mut im = net.start("i", Role::Intermediary, &im_cfg, &crash);
    let im_addr = im.addrs[0].clone();
    keep_port(&im_cfg, &im_addr);
    let kiosk_cfg = net.kiosk(&[&im_addr]);
    let first = order(&kiosk_cfg, None, 8);
    assert_eq!(first["outcome"], "pending", "{first}");
    let id = first["order_id"].as_str().unwrap().to_string();
    net.eventually("the intermediary to crash", 10, || {
        im.child.try_wait().unwrap()
    });
    assert_eq!(lab_jobs(&lab_cfg).len(), 1);

    // The store cancels it while the intermediary is down; when it is back, the
    // cancel is refused (the lab has the job: the hold is not released) and the
    // order goes on to its acceptance.
    let kiosk = net.start("k", Role::Kiosk, &kiosk_cfg, &[]);
    // (Asked again if the kiosk is sending it that very moment.)
    net.eventually("the cancel requested", 30, || {
        let (ok, _) = run(&["kiosk", "--config", cfg(&kiosk_cfg), "cancel", &id]);
        ok.then_some(())
    });
    let im = net.start("i", Role::Intermediary, &im_cfg, &[]);
    net.eventually("the cancel refused and the order answered", 60, || {
        let log = std::fs::read_to_string(dir.path().join("k/kiosk.log")).unwrap_or_default();
        (log.contains("the cancel was refused") && log.contains("answered")).then_some(())
    });
    for node in [kiosk, im, lab, acquirer] {
        node.stop();
    }
    let acq = inspect(&acq_cfg);
    assert_eq!(
        auth_of(&acq, &id)["hold"],
        "held",
        "never released: a lab has it"
    );
    let k = inspect(&kiosk_cfg);
    assert!(k["outbox"].as_array().unwrap().is_empty(), "{k:#}");
    let answered = k["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["order_id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(answered["outcome"], "approved", "{answered}");
    assert_eq!(answered["lab"], "Lab");
}
