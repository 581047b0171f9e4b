//! The lab's IPP output against a real CUPS server with Debian's cups-pdf printer:
//! `.ci/cups-setup` installs and starts it when it is not answering (as `.ci/run`
//! does first), with the queue `PDF` writing to /var/spool/cups-pdf/out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use printmesh_nodes::blobs::send_blob;
use printmesh_nodes::config::LabConfig;
use printmesh_nodes::net::PrintProto;
use printmesh_nodes::node::{admin_call, start, start_role, AdminRequest, Node};
use printmesh_nodes::roles::lab::hotfolder::{FolderPrint, Jpeg, PrintKind};
use printmesh_nodes::roles::lab::ipp::{Client, JobState};
use printmesh_nodes::roles::lab::printing::job_pdf;
use printmesh_nodes::roles::lab::render::{self, PrintSpec};
use printmesh_nodes::roles::lab::{LabCommand, LabStatus};
use printmesh_nodes::testnet::TestNet;
use printmesh_protocol::messages::{OrderLine, PrintJob, PrintRequest, PrintResponse, Role};
use printmesh_protocol::pricing::{Fit, PrintSize};
use printmesh_protocol::OrderId;

const QUEUE: &str = "ipp://127.0.0.1:631/printers/PDF";
const OUT: &str = "/var/spool/cups-pdf/out";

/// CUPS with the PDF queue, set up by the project's script if it is not there.
async fn cups() -> Client {
    // As the system user the test runs as, as the lab does.
    let user =
        printmesh_nodes::roles::lab::ipp::system_user_name().unwrap_or_else(|| "root".into());
    let client = Client::new(QUEUE, &user).unwrap();
    if client.printer_status().await.is_ok() {
        return client;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/cups-setup");
    let out = std::process::Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (it needs root and Debian's packages): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    client
        .printer_status()
        .await
        .expect("CUPS answers after setup");
    client
}

fn photo(n: u32) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/memory-card/DCIM/100PMESH")
            .join(format!("PMSH{n:04}.JPG")),
    )
    .unwrap()
}

/// The PDF cups-pdf wrote for `job`.
async fn output_of(job: i32) -> PathBuf {
    let prefix = format!("job_{job}-");
    for _ in 0..300 {
        if let Ok(dir) = std::fs::read_dir(OUT) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) && name.ends_with(".pdf") {
                    return e.path();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no PDF for job {job} in {OUT}");
}

async fn wait_job(client: &Client, job: i32) -> JobState {
    for _ in 0..600 {
        let (state, _) = client.job_state(job).await.unwrap();
        if state.is_final() || state == JobState::Stopped {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {job} never ended");
}

fn pages(pdf: &Path) -> u32 {
    let out = std::process::Command::new("pdfinfo")
        .arg(pdf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .unwrap_or_else(|| panic!("pdfinfo: {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_pdf_prints_on_cups_page_for_page_and_a_broken_one_stops() {
    let client = cups().await;
    let status = client.printer_status().await.unwrap();
    assert!(status.accepting, "{status:?}");
    let spec = |size, back: &str| PrintSpec {
        size,
        fit: Fit::Crop,
        back_print: back.into(),
    };
    let a = render::render(&photo(1), &spec(PrintSize::Kg, "T #1")).unwrap();
    let b = render::render(&photo(2), &spec(PrintSize::L, "T #2")).unwrap();
    let prints = vec![
        FolderPrint {
            kind: PrintKind::Sized(PrintSize::Kg),
            quantity: 2,
            back_print: "T #1".into(),
            jpeg: Jpeg::Bytes(a.jpeg),
        },
        FolderPrint {
            kind: PrintKind::Sized(PrintSize::L),
            quantity: 1,
            back_print: "T #2".into(),
            jpeg: Jpeg::Bytes(b.jpeg),
        },
    ];
    let pdf = job_pdf(&prints).unwrap();
    let job = client
        .print_job("printmesh-cups-test", "application/pdf", &pdf)
        .await
        .unwrap();
    assert_eq!(wait_job(&client, job).await, JobState::Completed);
    let out = output_of(job).await;
    assert_eq!(pages(&out), 3, "two KG and one L");
    // The printer finds it again by name (what a restarted lab asks).
    let found = client.find_jobs("printmesh-cups-test").await.unwrap();
    assert!(
        found.contains(&(job, JobState::Completed)),
        "{found:?} has job {job}"
    );
    assert!(client
        .find_jobs("no-such-job-name")
        .await
        .unwrap()
        .is_empty());

    // A document CUPS's filters cannot read: the job does not complete.
    let job = client
        .print_job(
            "printmesh-broken",
            "application/pdf",
            b"%PDF-1.4\nnot really",
        )
        .await
        .unwrap();
    let state = wait_job(&client, job).await;
    assert_ne!(state, JobState::Completed);
    let _ = client.cancel_job(job).await;

    // Bad addresses are clear errors.
    let nowhere = Client::new("ipp://127.0.0.1:9/printers/PDF", "t").unwrap();
    let e = nowhere.printer_status().await.unwrap_err().to_string();
    assert!(e.contains("cannot reach the printer"), "{e}");
    let missing = Client::new("ipp://127.0.0.1:631/printers/NoSuchQueue", "t").unwrap();
    assert!(missing.printer_status().await.is_err());
}

fn lab_status(lab: &Node) -> LabStatus {
    let dir = lab.config.data_dir.clone();
    let r =
        std::thread::spawn(move || admin_call(&dir, &AdminRequest::role(&LabCommand::LabStatus)))
            .join()
            .unwrap()
            .unwrap()
            .unwrap();
    assert!(r.ok, "{}", r.text);
    serde_json::from_str(&r.text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_prints_an_order_over_ipp_and_sees_it_done() {
    cups().await;
    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let mut config =
        TestNet::named(dir.path(), &network).bare(Role::Lab, "CUPS Lab", "lab", vec![]);
    config.lab = Some(
        toml::from_str::<LabConfig>(&format!(
            "cutoff_hour = 24\ncourier_days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n[[printers]]\nname = \"office\"\nprints_per_hour = 120\nipp = \"{QUEUE}\"\n"
        ))
        .unwrap(),
    );
    config.validate().unwrap();
    let lab = start_role(config).await.unwrap();
    let (intermediary, mut rx) = start(TestNet::named(dir.path(), &network).bare(
        Role::Intermediary,
        "I",
        "i",
        vec![lab.addresses().await[0].to_string()],
    ))
    .await
    .unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let peer = intermediary
        .client
        .wait_for_role(Role::Lab, Duration::from_secs(10))
        .await
        .unwrap()
        .peer;
    let bytes = photo(4);
    let blob = intermediary.blobs.import_bytes(&bytes).await.unwrap();
    send_blob(
        &mut intermediary.client.stream_control(),
        &intermediary.blobs,
        peer,
        blob,
    )
    .await
    .unwrap();
    let id = OrderId::from_parts(1_764_000_000_000, u128::from(rand::random::<u64>()));
    let answer = intermediary
        .client
        .request::<PrintProto>(
            peer,
            PrintRequest::Job(PrintJob {
                order_id: id,
                store: "store-test".parse().unwrap(),
                lines: vec![OrderLine {
                    blob,
                    blob_len: bytes.len() as u64,
                    file_name: "PMSH0004.JPG".into(),
                    size: PrintSize::TwoL,
                    quantity: 2,
                    fit: Fit::Border,
                }],
                submitted_at_ms: 0,
            }),
        )
        .await
        .unwrap();
    assert!(
        matches!(answer, PrintResponse::Accepted { .. }),
        "{answer:?}"
    );
    let mut printed = false;
    for _ in 0..600 {
        let s = lab_status(&lab);
        match s.jobs.iter().find(|j| j.order_id == id.to_string()) {
            Some(j) if j.status == "printed" => {
                printed = true;
                break;
            }
            Some(j) => assert_ne!(j.status, "failed", "{j:?}"),
            None => panic!("the job left the queue: {s:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(printed, "the printer never finished the job");
    // The PDF is there, named after the order: two 2L prints and the index print.
    let name = id.to_string();
    let pdf = std::fs::read_dir(OUT)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains(&name))
        .expect("the order's PDF");
    assert_eq!(pages(&pdf), 3);
    assert_eq!(lab_status(&lab).made_today, 2);
    lab.shutdown().await;
}
