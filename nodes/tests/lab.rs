//! The lab between real nodes in one process (real TCP on 127.0.0.1, real sled, real
//! JPEG decoding): a job goes from intake through the renderer to a minilab's hot
//! folder, is printed, printed again, handed to the courier and delivered; a job
//! whose image does not decode is rejected after intake; a promise the courier left
//! without is moved and the store told.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use printmesh_nodes::blobs::send_blob;
use printmesh_nodes::config::{CourierConfig, LabConfig, NodeConfig};
use printmesh_nodes::net::{NodeEvent, PrintProto};
use printmesh_nodes::node::RoleCommand;
use printmesh_nodes::node::{admin_call, start, start_role, AdminRequest, Node};
use printmesh_nodes::roles::courier::CourierCommand;
use printmesh_nodes::roles::lab::hotfolder::parse_autprint;
use printmesh_nodes::roles::lab::{Lab, LabCommand, LabStatus};
use printmesh_nodes::testnet::TestNet;
use printmesh_protocol::messages::{
    EventKind, OrderLine, PrintJob, PrintRequest, PrintResponse, Role,
};
use printmesh_protocol::pricing::{Fit, PrintSize};
use printmesh_protocol::OrderId;

fn photo(n: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/memory-card/DCIM/100PMESH")
        .join(format!("PMSH{n:04}.JPG"))
}

fn lab_config(dir: &Path, network: &str, lab_toml: &str) -> NodeConfig {
    let mut c = TestNet::named(dir, network).bare(Role::Lab, "Test Lab", "lab", vec![]);
    c.lab = Some(toml::from_str::<LabConfig>(lab_toml).unwrap());
    c.resolve_paths(dir);
    c.validate().unwrap();
    c
}

async fn addr(node: &Node) -> String {
    node.addresses().await[0].to_string()
}

/// A bare node announcing `role` that records the events it hears (as every role
/// does) and answers nothing.
async fn listener(dir: &Path, network: &str, role: Role, peer: String) -> Node {
    let (node, mut rx) = start(TestNet::named(dir, network).bare(
        role,
        &format!("test {role}"),
        role.name(),
        vec![peer],
    ))
    .await
    .unwrap();
    let events = node.events.clone();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if let NodeEvent::Incoming(e) = e {
                let _ = events.record_signed(&e.event, &e.frame);
            }
        }
    });
    node
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if tokio::time::Instant::now() > until {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn status(lab: &Node) -> LabStatus {
    let r = admin_call(
        &lab.config.data_dir,
        &AdminRequest::role(&LabCommand::LabStatus),
    )
    .unwrap()
    .unwrap();
    assert!(r.ok, "{}", r.text);
    serde_json::from_str(&r.text).unwrap()
}

fn admin<C: RoleCommand>(node: &Node, command: C) -> (bool, String) {
    let r = admin_call(&node.config.data_dir, &AdminRequest::role(&command))
        .unwrap()
        .unwrap();
    (r.ok, r.text)
}

/// Sends the files to the lab as an intermediary would and submits the job.
async fn submit(
    intermediary: &Node,
    lab: &Node,
    order_id: OrderId,
    lines: &[(Vec<u8>, PrintSize, u16, Fit)],
) -> PrintResponse {
    let peer = lab.peer_id();
    let mut control = intermediary.client.stream_control();
    let mut order_lines = Vec::new();
    for (i, (bytes, size, quantity, fit)) in lines.iter().enumerate() {
        let blob = intermediary.blobs.import_bytes(bytes).await.unwrap();
        send_blob(&mut control, &intermediary.blobs, peer, blob)
            .await
            .unwrap();
        order_lines.push(OrderLine {
            blob,
            blob_len: bytes.len() as u64,
            file_name: format!("PMSH{:04}.JPG", i + 1),
            size: *size,
            quantity: *quantity,
            fit: *fit,
        });
    }
    intermediary
        .client
        .request::<PrintProto>(
            peer,
            PrintRequest::Job(PrintJob {
                order_id,
                store: "store-test".parse().unwrap(),
                lines: order_lines,
                submitted_at_ms: 0,
            }),
        )
        .await
        .unwrap()
}

/// Whether `node` has heard an event of `kind` about `id`. (The test's nodes hear only
/// the lab's and courier's events, not the order's first ones, so its state does not
/// fold past Draft; the events themselves are what is checked.)
fn heard(node: &Node, id: OrderId, kind: &EventKind) -> bool {
    node.events
        .events_for(id)
        .map(|events| {
            events
                .iter()
                .any(|e| std::mem::discriminant(&e.kind) == std::mem::discriminant(kind))
        })
        .unwrap_or(false)
}

fn job_status(lab: &Node, id: OrderId) -> Option<String> {
    status(lab)
        .jobs
        .into_iter()
        .find(|j| j.order_id == id.to_string())
        .map(|j| j.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_goes_through_the_hot_folder_is_reprinted_and_the_courier_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let hot = dir.path().join("hot");
    let lab = start_role(lab_config(
        dir.path(),
        &network,
        r#"
cutoff_hour = 24
courier_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
transit_days = 1
[[printers]]
name = "minilab-1"
prints_per_hour = 1800
hot_folder = "hot"
"#,
    ))
    .await
    .unwrap();
    let mut courier_cfg = TestNet::named(dir.path(), &network).bare(
        Role::Courier,
        "Test Courier",
        "courier",
        vec![addr(&lab).await],
    );
    courier_cfg.courier = Some(CourierConfig {
        auto_in_transit_secs: None,
        auto_deliver_secs: None,
    });
    let courier = start_role(courier_cfg).await.unwrap();
    let intermediary = listener(dir.path(), &network, Role::Intermediary, addr(&lab).await).await;
    intermediary
        .client
        .wait_for_role(Role::Lab, Duration::from_secs(10))
        .await
        .unwrap();
    lab.client
        .wait_for_role(Role::Courier, Duration::from_secs(10))
        .await
        .unwrap();

    let id = OrderId::from_parts(1_764_000_000_000, 1);
    let a = std::fs::read(photo(1)).unwrap();
    let b = std::fs::read(photo(2)).unwrap();
    let answer = submit(
        &intermediary,
        &lab,
        id,
        &[
            (a, PrintSize::Kg, 2, Fit::Crop),
            (b, PrintSize::L, 1, Fit::Border),
        ],
    )
    .await;
    assert!(
        matches!(answer, PrintResponse::Accepted { .. }),
        "{answer:?}"
    );

    // The order appears in the hot folder whole: two prints and the index print.
    let folder = hot.join(id.to_string());
    let mrk = folder.join("MISC").join("AUTPRINT.MRK");
    wait_for("the order in the hot folder", 60, || {
        mrk.exists().then_some(())
    })
    .await;
    let jobs = parse_autprint(&std::fs::read_to_string(&mrk).unwrap()).unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!((jobs[0].kind.as_str(), jobs[0].quantity), ("SIZ", 2));
    assert_eq!(jobs[0].paper_mm, Some((102.0, 152.0)));
    assert_eq!(jobs[1].paper_mm, Some((89.0, 127.0)));
    assert_eq!(jobs[2].kind, "IDX");
    assert_eq!(
        jobs[0].back_print.as_deref(),
        Some(format!("{id} #1").as_str())
    );
    let first = image::open(folder.join("IMAGE").join("0001.JPG")).unwrap();
    let (w, h) = (first.width(), first.height());
    assert_eq!((w.min(h), w.max(h)), (1205, 1795), "KG at 300 DPI");
    assert!(!hot.join(".incoming").read_dir().unwrap().any(|_| true));
    assert_eq!(job_status(&lab, id).as_deref(), Some("printing"));
    let s = status(&lab);
    assert_eq!(s.printers[0].job.as_deref(), Some(id.to_string().as_str()));

    // Not printed yet: the courier cannot have it.
    let (ok, text) = admin(&lab, LabCommand::Ship { order_id: id });
    assert!(!ok && text.contains("not printed"), "{text}");

    // The operator sends it again before the minilab took it: the first folder is
    // taken back (its disappearing is not "printed"), and the job comes out anew.
    let (ok, text) = admin(&lab, LabCommand::Reprint { order_id: id });
    assert!(ok, "{text}");
    let first_reprint = hot.join(format!("{id}-R1"));
    wait_for("the order again in the hot folder", 60, || {
        first_reprint
            .join("MISC")
            .join("AUTPRINT.MRK")
            .exists()
            .then_some(())
    })
    .await;
    assert!(!folder.exists(), "the first folder was taken back");
    assert_eq!(job_status(&lab, id).as_deref(), Some("printing"));
    assert_eq!(status(&lab).made_today, 0);

    // The minilab controller takes the order away when it has printed it.
    std::fs::remove_dir_all(&first_reprint).unwrap();
    wait_for("printed", 30, || {
        (job_status(&lab, id).as_deref() == Some("printed")).then_some(())
    })
    .await;
    assert_eq!(status(&lab).made_today, 3);
    wait_for("the Printed event", 10, || {
        heard(&intermediary, id, &EventKind::Printed).then_some(())
    })
    .await;

    // A bad print: again, into its own folder.
    let (ok, text) = admin(&lab, LabCommand::Reprint { order_id: id });
    assert!(ok, "{text}");
    let again = hot.join(format!("{id}-R2"));
    wait_for("the reprint in the hot folder", 60, || {
        again
            .join("MISC")
            .join("AUTPRINT.MRK")
            .exists()
            .then_some(())
    })
    .await;
    std::fs::remove_dir_all(&again).unwrap();
    wait_for("printed again", 30, || {
        (job_status(&lab, id).as_deref() == Some("printed")).then_some(())
    })
    .await;
    assert_eq!(status(&lab).made_today, 6);

    // Handed to the courier: picked up, shipped (capture), on the manifest.
    let (ok, text) = admin(&lab, LabCommand::ShipAllPrinted);
    assert!(ok, "{text}");
    assert!(text.contains("courier"), "{text}");
    assert_eq!(job_status(&lab, id), None, "a shipped job leaves the queue");
    let (ok, manifest) = admin(&courier, CourierCommand::Manifest);
    assert!(ok);
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest[0]["order_id"], id.to_string());
    assert_eq!(manifest[0]["store"], "store-test");
    assert_eq!(manifest[0]["prints"], 3);
    assert_eq!(manifest[0]["stage"], "PickedUp");
    wait_for("Shipped", 10, || {
        heard(&intermediary, id, &EventKind::Shipped).then_some(())
    })
    .await;

    let (ok, text) = admin(&courier, CourierCommand::Depart { order_id: None });
    assert!(ok && text.contains("in transit"), "{text}");
    let (ok, text) = admin(
        &courier,
        CourierCommand::Deliver {
            order_id: None,
            store: Some("store-other".parse().unwrap()),
        },
    );
    assert!(ok && text.contains("no parcels"), "{text}");
    let (ok, text) = admin(
        &courier,
        CourierCommand::Deliver {
            order_id: Some(id),
            store: None,
        },
    );
    assert!(ok && text.contains("delivered"), "{text}");
    wait_for("Delivered", 10, || {
        heard(&intermediary, id, &EventKind::Delivered).then_some(())
    })
    .await;
    let kinds: Vec<EventKind> = intermediary
        .events
        .events_for(id)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.iter().any(|k| matches!(
        k,
        EventKind::Tracking {
            stage: printmesh_protocol::messages::TrackingStage::InTransit,
            ..
        }
    )));
    // Delivering again announces it again (a store may have missed the event).
    let (ok, text) = admin(
        &courier,
        CourierCommand::Deliver {
            order_id: Some(id),
            store: None,
        },
    );
    assert!(ok && text.contains("announced again"), "{text}");
    let (ok, _) = admin(
        &courier,
        CourierCommand::Deliver {
            order_id: Some(OrderId::from_parts(9, 9)),
            store: None,
        },
    );
    assert!(!ok, "an order not on the manifest");
    lab.shutdown().await;
    courier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_does_not_decode_is_rejected_after_intake_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let lab = start_role(lab_config(
        dir.path(),
        &network,
        r#"
cutoff_hour = 24
courier_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[[printers]]
name = "minilab-1"
prints_per_hour = 1800
hot_folder = "hot"
"#,
    ))
    .await
    .unwrap();
    let intermediary = listener(dir.path(), &network, Role::Intermediary, addr(&lab).await).await;
    intermediary
        .client
        .wait_for_role(Role::Lab, Duration::from_secs(10))
        .await
        .unwrap();
    // The header (all intake reads) is whole; the picture data is cut off.
    let good = std::fs::read(photo(3)).unwrap();
    let cut = good[..good.len() / 2].to_vec();
    let id = OrderId::from_parts(1_764_000_000_000, 2);
    let answer = submit(
        &intermediary,
        &lab,
        id,
        &[(cut, PrintSize::L, 1, Fit::Crop)],
    )
    .await;
    assert!(
        matches!(answer, PrintResponse::Accepted { .. }),
        "{answer:?}"
    );
    let reason = wait_for("the rejection", 30, || {
        intermediary
            .events
            .events_for(id)
            .ok()?
            .into_iter()
            .find_map(|e| match e.kind {
                EventKind::Rejected { reason } => Some(reason),
                _ => None,
            })
    })
    .await;
    assert!(
        reason.contains("PMSH0001.JPG cannot be printed"),
        "{reason}"
    );
    assert_eq!(job_status(&lab, id), None);
    assert!(!dir.path().join("hot").join(id.to_string()).exists());
    // Asking again gets the same answer: rejected, with the reason.
    let answer = submit(
        &intermediary,
        &lab,
        id,
        &[(good, PrintSize::L, 1, Fit::Crop)],
    )
    .await;
    assert!(
        matches!(&answer, PrintResponse::Rejected { reason: r, .. } if *r == reason),
        "{answer:?}"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promise_at_risk_is_shown_and_once_it_slips_the_store_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    // The only printer is not there: nothing prints.
    let config = lab_config(
        dir.path(),
        &network,
        r#"
cutoff_hour = 24
courier_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
transit_days = 1
review_secs = 3600
[[printers]]
name = "gone"
prints_per_hour = 100
ipp = "ipp://127.0.0.1:9/printers/none"
"#,
    );
    let section = config.lab.clone().unwrap();
    let (node, lab) = printmesh_nodes::role::run::<Lab>(config, section)
        .await
        .unwrap();
    let kiosk = listener(dir.path(), &network, Role::Kiosk, addr(&node).await).await;
    let intermediary = listener(dir.path(), &network, Role::Intermediary, addr(&node).await).await;
    intermediary
        .client
        .wait_for_role(Role::Lab, Duration::from_secs(10))
        .await
        .unwrap();
    kiosk
        .client
        .wait_for_role(Role::Lab, Duration::from_secs(10))
        .await
        .unwrap();
    let id = OrderId::from_parts(1_764_000_000_000, 3);
    let a = std::fs::read(photo(1)).unwrap();
    let PrintResponse::Accepted { delivery_date, .. } =
        submit(&intermediary, &node, id, &[(a, PrintSize::L, 1, Fit::Crop)]).await
    else {
        panic!("not accepted")
    };
    // The printer answers nothing: the job is at risk, and the console says why.
    let s = wait_for("the printer seen down", 30, || {
        let s = status(&node);
        (!s.printers[0].state.is_empty() && s.printers[0].state.starts_with("unreachable"))
            .then_some(s)
    })
    .await;
    assert!(!s.printers[0].working);
    let job = s
        .jobs
        .iter()
        .find(|j| j.order_id == id.to_string())
        .unwrap();
    assert_eq!(job.status, "queued");
    assert_eq!(job.at_risk.as_deref(), Some("no printer is working"));

    // Nothing moves before the courier has gone…
    assert!(lab.review(lab.now_local()).await.is_empty());
    // …and once it has, the promise moves and the store hears of it.
    let later = lab.now_local() + chrono::TimeDelta::days(3);
    let moved = lab.review(later).await;
    assert_eq!(moved.len(), 1);
    let (_, new_date) = moved[0];
    assert!(new_date > delivery_date, "{new_date} after {delivery_date}");
    let told = wait_for("the store told", 10, || {
        kiosk
            .events
            .events_for(id)
            .ok()?
            .into_iter()
            .find_map(|e| match e.kind {
                EventKind::Rescheduled {
                    delivery_date,
                    reason,
                } => Some((delivery_date, reason)),
                _ => None,
            })
    })
    .await;
    assert_eq!(told.0, new_date);
    assert!(told.1.contains("missed the courier"), "{}", told.1);
    assert_eq!(
        printmesh_nodes::roles::kiosk::current_delivery_date(&kiosk.events.events_for(id).unwrap()),
        Some(new_date)
    );
    let job = status(&node)
        .jobs
        .into_iter()
        .find(|j| j.order_id == id.to_string())
        .unwrap();
    assert_eq!(
        job.slipped_from,
        Some(delivery_date.format("%m-%d").to_string())
    );
    // A manual mark-printed and hand-over still work without the printer.
    let (ok, text) = admin(&node, LabCommand::MarkPrinted { order_id: id });
    assert!(ok, "{text}");
    let (ok, text) = admin(&node, LabCommand::Ship { order_id: id });
    assert!(ok && text.contains("no courier"), "{text}");
    node.shutdown().await;
}
