//! The acquirer's benchmarks (issue 4), each against a baseline measured in the same run.
//!
//! 1. Authorisations per second through one acquirer over libp2p on loopback: sealed
//!    cards opened, PINs-free credit holds placed in the ledger, every hold durable
//!    before its answer. Group commit (the writer takes what is waiting and flushes
//!    once) against one flush per authorisation.
//! 2. Latency of kiosk → intermediary → acquirer → back: a kiosk node submits sealed
//!    orders to an intermediary, which has the acquirer authorise them (a card over its
//!    limit, so the answer comes back from the acquirer without a lab), against a raw
//!    TCP two-hop echo (client → relay → server → relay → client) of a message of the
//!    same size on persistent connections. p50 and p99 of sequential round trips.
//!
//! `cargo bench -p printmesh-nodes --bench acquirer`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use printmesh_nodes::config::{AcquirerConfig, IntermediaryConfig, NodeConfig};
use printmesh_nodes::net::{AuthProto, OrderProto};
use printmesh_nodes::node::{start, start_role, Node};
use printmesh_nodes::role::Role as _;
use printmesh_protocol::card::{CardData, Expiry};
use printmesh_protocol::messages::{
    AuthRequest, AuthResponse, OrderLine, OrderRequest, OrderResponse, PaymentMethod, Role,
    SealedAuthorise, SealedOrder,
};
use printmesh_protocol::money::{Currency, Money};
use printmesh_protocol::pricing::PrintSize;
use printmesh_protocol::seal::{seal_card, Binding, EntryMode, SealKey};
use printmesh_protocol::OrderId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AUTHS: usize = 3000;
const CONCURRENCY: usize = 64;
const ROUND_TRIPS: usize = 600;

use printmesh_nodes::testnet::{fixtures_dir as fixtures, TestNet};

fn config(
    dir: &Path,
    role: Role,
    network: &str,
    peers: Vec<String>,
    group_commit: bool,
) -> NodeConfig {
    let fx = fixtures();
    let mut c =
        TestNet::named(dir, network).bare(role, &format!("bench {role}"), role.name(), peers);
    c.intermediary = (role == Role::Intermediary).then(|| IntermediaryConfig {
        prices: fx.join("demo/prices.toml"),
        commission_bps: 2000,
        routes: Vec::new(),
    });
    // One bench kiosk sends hundreds of orders a second: far over a store's budget.
    c.limits.kiosk_requests_per_sec = 1e6;
    c.limits.kiosk_request_burst = 1e6;
    c.acquirer = (role == Role::Acquirer).then(|| AcquirerConfig {
        cards: fx.join("cards.toml"),
        hold_ttl_secs: 3600,
        hold_max_secs: 30 * 24 * 3600,
        minor_per_point: 1,
        group_commit,
    });
    c
}

async fn addr(node: &Node) -> String {
    node.addresses().await[0].to_string()
}

/// A node that only sends requests, announcing `role`.
async fn client(dir: &Path, role: Role, network: &str, peer: String) -> Node {
    let mut cfg = config(dir, role, network, vec![peer], true);
    cfg.intermediary = None;
    cfg.acquirer = None;
    let (node, mut rx) = start(cfg).await.unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    node
}

fn seal_key(node: &Node) -> SealKey {
    let path = printmesh_nodes::roles::acquirer::seal_pub_path(&node.config.data_dir);
    SealKey::from_hex(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn card(pan: &str, y: u16, m: u8) -> CardData {
    CardData {
        pan: pan.parse().unwrap(),
        expiry: Expiry::new(y, m).unwrap(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Sealed credit authorisations for `n` orders, as an intermediary passes them on.
fn sealed_requests(key: &SealKey, n: usize, first: u64) -> Vec<SealedAuthorise> {
    let store: printmesh_protocol::StoreId = "store-bench".parse().unwrap();
    (0..n)
        .map(|i| {
            let order_id = OrderId::from_parts(first + i as u64, i as u128);
            let amount = Money::new(1, Currency::Jpy);
            let binding = Binding {
                order_id,
                amount,
                store: store.clone(),
                method: PaymentMethod::Credit,
            };
            let sealed = seal_card(
                key,
                &binding,
                &card("3530111333300000", 2028, 7),
                EntryMode::Swipe,
                None,
                &mut rand::rngs::OsRng,
            )
            .unwrap();
            SealedAuthorise {
                order_id,
                amount,
                method: PaymentMethod::Credit,
                store: store.clone(),
                card: sealed,
            }
        })
        .collect()
}

/// Authorisations per second handed straight to one acquirer's authorisation path
/// (what its role handler calls for each request), `CONCURRENCY` at a time.
async fn in_process(group_commit: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("bench-{}", rand::random::<u32>());
    let config = config(dir.path(), Role::Acquirer, &network, vec![], group_commit);
    let section = config.acquirer.clone().unwrap();
    let (node, mut rx) = start(config).await.unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let acquirer = printmesh_nodes::roles::acquirer::Acquirer::open(node.clone(), section).unwrap();
    acquirer.start(node.stopping());
    let key = seal_key(&node);
    let queue = Arc::new(std::sync::Mutex::new(sealed_requests(&key, AUTHS, 1_000)));
    let via = node.peer_id().to_bytes();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (queue, acquirer, via) = (queue.clone(), acquirer.clone(), via.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(req) = queue.lock().unwrap().pop() else {
                    return;
                };
                match acquirer.authorise(req, via.clone()).await {
                    AuthResponse::ApprovedCard { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    node.shutdown().await;
    AUTHS as f64 / elapsed.as_secs_f64()
}

/// Authorisations per second from an intermediary node over libp2p, `CONCURRENCY` in
/// flight.
async fn throughput(group_commit: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("bench-{}", rand::random::<u32>());
    let acquirer = start_role(config(
        &dir.path().join("a"),
        Role::Acquirer,
        &network,
        vec![],
        group_commit,
    ))
    .await
    .unwrap();
    let sender = client(
        &dir.path().join("s"),
        Role::Intermediary,
        &network,
        addr(&acquirer).await,
    )
    .await;
    sender
        .client
        .wait_for_role(Role::Acquirer, Duration::from_secs(10))
        .await
        .unwrap();
    let key = seal_key(&acquirer);
    // Sealing is the kiosk's work: done before the clock starts.
    let requests: Vec<AuthRequest> = sealed_requests(&key, AUTHS, 1_000)
        .into_iter()
        .map(AuthRequest::AuthoriseSealed)
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(requests));
    let peer = acquirer.peer_id();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let queue = queue.clone();
        let client = sender.client.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let Some(req) = queue.lock().unwrap().pop() else {
                    return;
                };
                match client.request::<AuthProto>(peer, req).await.unwrap() {
                    AuthResponse::ApprovedCard { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    acquirer.shutdown().await;
    sender.shutdown().await;
    AUTHS as f64 / elapsed.as_secs_f64()
}

/// Sequential kiosk → intermediary → acquirer → back round trips. With
/// `wrong_total`, every order's total is off, so the intermediary answers at once
/// without the acquirer: one hop.
async fn order_latency_with(wrong_total: bool) -> (Vec<Duration>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("bench-{}", rand::random::<u32>());
    let acquirer = start_role(config(
        &dir.path().join("a"),
        Role::Acquirer,
        &network,
        vec![],
        true,
    ))
    .await
    .unwrap();
    let intermediary = start_role(config(
        &dir.path().join("i"),
        Role::Intermediary,
        &network,
        vec![addr(&acquirer).await],
        true,
    ))
    .await
    .unwrap();
    intermediary
        .client
        .wait_for_role(Role::Acquirer, Duration::from_secs(10))
        .await
        .unwrap();
    let kiosk = client(
        &dir.path().join("k"),
        Role::Kiosk,
        &network,
        addr(&intermediary).await,
    )
    .await;
    let im = kiosk
        .client
        .wait_for_role(Role::Intermediary, Duration::from_secs(10))
        .await
        .unwrap()
        .peer;
    // One small image, uploaded once; every order names it.
    let blob = kiosk.blobs.import_bytes(&[7u8; 4096]).await.unwrap();
    let mut control = kiosk.client.stream_control();
    printmesh_nodes::blobs::send_blob(&mut control, &kiosk.blobs, im, blob)
        .await
        .unwrap();
    let key = seal_key(&acquirer);
    let store: printmesh_protocol::StoreId = "store-bench".parse().unwrap();
    let over_limit = card("5555555555554444", 2029, 12);
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    let mut size = 0;
    for i in 0..ROUND_TRIPS + 20 {
        let order_id = OrderId::from_parts(5_000 + i as u64, i as u128);
        let total = Money::new(if wrong_total { 91 } else { 90 }, Currency::Jpy);
        let binding = Binding {
            order_id,
            amount: total,
            store: store.clone(),
            method: PaymentMethod::Credit,
        };
        let sealed = seal_card(
            &key,
            &binding,
            &over_limit,
            EntryMode::Swipe,
            None,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let request = OrderRequest::SubmitSealed(SealedOrder {
            order_id,
            store: store.clone(),
            placed_at_ms: 0,
            lines: vec![OrderLine {
                blob,
                blob_len: 4096,
                file_name: "BNCH0001.JPG".into(),
                size: PrintSize::L,
                quantity: 3,
                fit: Default::default(),
            }],
            total,
            method: PaymentMethod::Credit,
            card: sealed,
        });
        size = printmesh_protocol::codec::encode_frame(&request, 1 << 20)
            .unwrap()
            .len();
        let started = Instant::now();
        let answer = kiosk
            .client
            .request::<OrderProto>(im, request)
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(
            matches!(
                answer,
                OrderResponse::Declined { .. } | OrderResponse::Rejected { .. }
            ),
            "{answer:?}"
        );
        if i >= 20 {
            times.push(took);
        }
    }
    times.sort();
    (times, size)
}

async fn order_latency() -> (Vec<Duration>, usize) {
    order_latency_with(false).await
}

/// client → relay → server → relay → client, `size`-byte messages, persistent
/// connections.
async fn raw_two_hop(size: usize) -> Vec<Duration> {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = server.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; size];
        while s.read_exact(&mut buf).await.is_ok() {
            s.write_all(&buf).await.unwrap();
        }
    });
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut down, _) = relay.accept().await.unwrap();
        down.set_nodelay(true).unwrap();
        let mut up = tokio::net::TcpStream::connect(server_addr).await.unwrap();
        up.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; size];
        while down.read_exact(&mut buf).await.is_ok() {
            up.write_all(&buf).await.unwrap();
            up.read_exact(&mut buf).await.unwrap();
            down.write_all(&buf).await.unwrap();
        }
    });
    let mut c = tokio::net::TcpStream::connect(relay_addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let msg = vec![5u8; size];
    let mut back = vec![0u8; size];
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + 20 {
        let started = Instant::now();
        c.write_all(&msg).await.unwrap();
        c.read_exact(&mut back).await.unwrap();
        if i >= 20 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    times
}

/// Sequential calls of the acquirer's authorisation path: its own latency.
async fn acquirer_latency() -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("bench-{}", rand::random::<u32>());
    let config = config(dir.path(), Role::Acquirer, &network, vec![], true);
    let section = config.acquirer.clone().unwrap();
    let (node, mut rx) = start(config).await.unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let acquirer = printmesh_nodes::roles::acquirer::Acquirer::open(node.clone(), section).unwrap();
    acquirer.start(node.stopping());
    let key = seal_key(&node);
    let via = node.peer_id().to_bytes();
    let mut times = Vec::new();
    for req in sealed_requests(&key, 300, 50_000) {
        let started = Instant::now();
        acquirer.authorise(req, via.clone()).await;
        times.push(started.elapsed());
    }
    times.sort();
    times
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let local_flush = in_process(false).await;
        let local_group = in_process(true).await;
        let net_flush = throughput(false).await;
        let net_group = throughput(true).await;
        println!("authorisations through one acquirer, {AUTHS} sealed credit holds, {CONCURRENCY} at a time, every hold durable before its answer");
        println!();
        println!("| path | group commit | one flush per authorisation (baseline) | ratio |");
        println!("|---|---|---|---|");
        println!(
            "| the acquirer's authorisation path | {local_group:.0}/s | {local_flush:.0}/s | {:.1}× |",
            local_group / local_flush
        );
        println!(
            "| from an intermediary node over libp2p | {net_group:.0}/s | {net_flush:.0}/s | {:.1}× |",
            net_group / net_flush
        );
        println!();
        println!("target ≥ 10×");
        println!();

        let (ours, size) = order_latency().await;
        let (one_hop, _) = order_latency_with(true).await;
        let alone = acquirer_latency().await;
        let raw = raw_two_hop(size).await;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("kiosk → intermediary → acquirer → back, {ROUND_TRIPS} sequential orders of {size} bytes");
        println!();
        println!("| path | p50 | p99 |");
        println!("|---|---|---|");
        println!(
            "| printmesh: kiosk → intermediary → acquirer → back | {:.3} ms | {:.3} ms |",
            ms(percentile(&ours, 0.5)),
            ms(percentile(&ours, 0.99))
        );
        println!(
            "| … of which: kiosk → intermediary alone (a priced-wrong order, answered at once) | {:.3} ms | {:.3} ms |",
            ms(percentile(&one_hop, 0.5)),
            ms(percentile(&one_hop, 0.99))
        );
        println!(
            "| … of which: the acquirer alone (open the card, decide, store, flush) | {:.3} ms | {:.3} ms |",
            ms(percentile(&alone, 0.5)),
            ms(percentile(&alone, 0.99))
        );
        println!(
            "| raw TCP two-hop echo (baseline) | {:.3} ms | {:.3} ms |",
            ms(percentile(&raw, 0.5)),
            ms(percentile(&raw, 0.99))
        );
        println!();
        println!(
            "ratio at p99: {:.1}× (target ≤ 2×)",
            ms(percentile(&ours, 0.99)) / ms(percentile(&raw, 0.99))
        );
    });
}
