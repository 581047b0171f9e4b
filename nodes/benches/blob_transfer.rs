//! Blob transfer benchmark: a 20 MB image pushed between two nodes over libp2p on
//! loopback (TCP + noise + yamux + libp2p-stream, receiver hashing, fsync and rename),
//! against raw TCP copies of the same bytes measured in the same run.
//!
//! `cargo bench -p printmesh-nodes --bench blob_transfer`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::{Duration, Instant};

use printmesh_nodes::blobs::send_blob;
use printmesh_nodes::config::NodeConfig;
use printmesh_nodes::node::{start, Node};
use printmesh_nodes::testnet::TestNet;
use printmesh_protocol::messages::Role;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BLOB_BYTES: usize = 20 * 1024 * 1024;
const RUNS: usize = 7;

fn config(dir: &Path, name: &str, peers: Vec<String>) -> NodeConfig {
    // A kiosk pushes photos to its intermediary.
    let role = if name == "receiver" {
        Role::Intermediary
    } else {
        Role::Kiosk
    };
    TestNet::named(dir, "bench").bare(role, name, name, peers)
}

async fn bare(dir: &Path, name: &str, peers: Vec<String>) -> Node {
    let (node, mut rx) = start(config(dir, name, peers)).await.unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    node
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mb_per_s(d: Duration) -> f64 {
    BLOB_BYTES as f64 / 1e6 / d.as_secs_f64()
}

/// Raw TCP: the sender writes the bytes, the receiver reads them into memory.
async fn raw_tcp(bytes: &[u8], to_file: Option<&Path>) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let file = to_file.map(|p| p.to_path_buf());
    let receiver = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut out = match &file {
            Some(p) => Some(tokio::fs::File::create(p).await.unwrap()),
            None => None,
        };
        let mut total = 0;
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            if let Some(f) = out.as_mut() {
                f.write_all(&buf[..n]).await.unwrap();
            }
            total += n;
        }
        if let Some(f) = out.as_mut() {
            f.sync_all().await.unwrap();
        }
        sock.write_all(b"k").await.unwrap();
        total
    });
    let start = Instant::now();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.set_nodelay(true).unwrap();
    sock.write_all(bytes).await.unwrap();
    sock.shutdown().await.unwrap();
    let mut ack = [0u8; 1];
    sock.read_exact(&mut ack).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(receiver.await.unwrap(), bytes.len());
    elapsed
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = bare(dir.path(), "receiver", vec![]).await;
    let addr = receiver.addresses().await[0].to_string();
    let sender = bare(dir.path(), "sender", vec![addr]).await;
    sender
        .client
        .wait_for_role(Role::Intermediary, Duration::from_secs(10))
        .await
        .unwrap();
    let mut control = sender.client.stream_control();

    let mut bytes = vec![0u8; BLOB_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);

    let mut libp2p_times = Vec::new();
    let mut tcp_times = Vec::new();
    let mut tcp_file_times = Vec::new();
    // One warm-up round of each, then RUNS measured rounds, interleaved.
    for run in 0..=RUNS {
        bytes[..8].copy_from_slice(&(run as u64).to_le_bytes());
        let blob = sender.blobs.import_bytes(&bytes).await.unwrap();

        let t = Instant::now();
        let outcome = send_blob(&mut control, &sender.blobs, receiver.peer_id(), blob)
            .await
            .unwrap();
        let libp2p = t.elapsed();
        assert_eq!(outcome.bytes_sent, BLOB_BYTES as u64);
        assert!(receiver.blobs.has(&blob));

        let tcp = raw_tcp(&bytes, None).await;
        let tcp_file = raw_tcp(&bytes, Some(&dir.path().join("tcp-copy"))).await;
        if run > 0 {
            libp2p_times.push(libp2p);
            tcp_times.push(tcp);
            tcp_file_times.push(tcp_file);
        }
    }
    let libp2p = median(libp2p_times);
    let tcp = median(tcp_times);
    let tcp_file = median(tcp_file_times);
    println!("blob transfer, 20 MiB on 127.0.0.1, median of {RUNS} runs");
    println!(
        "  libp2p blob push (noise+yamux, BLAKE3 verify, fsync): {:8.1} MB/s  ({:.1} ms)",
        mb_per_s(libp2p),
        libp2p.as_secs_f64() * 1e3
    );
    println!(
        "  raw TCP copy, memory to memory (baseline):            {:8.1} MB/s  ({:.1} ms)",
        mb_per_s(tcp),
        tcp.as_secs_f64() * 1e3
    );
    println!(
        "  raw TCP copy into a file + fsync:                     {:8.1} MB/s  ({:.1} ms)",
        mb_per_s(tcp_file),
        tcp_file.as_secs_f64() * 1e3
    );
    println!(
        "  ratio libp2p / raw TCP: {:.2} of baseline throughput ({:.1}x slower); vs TCP+file: {:.2}",
        mb_per_s(libp2p) / mb_per_s(tcp),
        libp2p.as_secs_f64() / tcp.as_secs_f64(),
        mb_per_s(libp2p) / mb_per_s(tcp_file)
    );
    sender.shutdown().await;
    receiver.shutdown().await;
}
