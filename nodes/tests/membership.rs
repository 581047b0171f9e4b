//! Membership on real connections (one process, real TCP on 127.0.0.1): a node of an
//! enrolled network serves only peers whose hello carries a certificate the root
//! signed, for that network, that PeerId and that role, unexpired and unrevoked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::PeerId;
use printmesh_nodes::config::{LabConfig, MembershipConfig, NodeConfig};
use printmesh_nodes::membership::{self, sign};
use printmesh_nodes::net::{self, NetConfig, PrintProto};
use printmesh_nodes::node::{load_or_create_identity, now_ms, start_role, Node};
use printmesh_nodes::testnet::TestNet;
use printmesh_protocol::membership::{Certificate, SignedCertificate};
use printmesh_protocol::messages::{Hello, PrintJob, PrintRequest, Role};
use printmesh_protocol::OrderId;

const NETWORK: &str = "shops";

/// Everything the nodes of this test binary log at warn and above.
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How many logged lines have all of `words`.
fn logged(words: &[&str]) -> usize {
    let log = log();
    let text = String::from_utf8_lossy(&log.lock().unwrap()).to_string();
    text.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

/// The order a test peer's print job names: its own, so what it left behind shows.
fn order_of(peer: PeerId) -> OrderId {
    let bytes = peer.to_bytes();
    let tail: [u8; 16] = bytes[bytes.len() - 16..].try_into().unwrap();
    OrderId::from_parts(1, u128::from_be_bytes(tail))
}

/// A lab enrolled in a fresh network; returns it with the network's folder.
async fn enrolled_lab(dir: &Path) -> Node {
    membership::init(&dir.join("net"), NETWORK).unwrap();
    let data = dir.join("lab");
    std::fs::create_dir_all(&data).unwrap();
    let key = load_or_create_identity(&data.join("identity.key")).unwrap();
    let (cert, _) = membership::enroll(
        &dir.join("net"),
        Role::Lab,
        key.public().to_peer_id(),
        "Lab One",
        None,
        30,
    )
    .unwrap();
    let mut c = TestNet::named(dir, NETWORK).bare(Role::Lab, "Lab One", "lab", vec![]);
    assert_eq!(c.data_dir, data);
    c.lab = Some(
        toml::from_str::<LabConfig>(
            "prints_per_day = 100\ncutoff_hour = 24\ncourier_days = [\"mon\"]",
        )
        .unwrap(),
    );
    c.membership = Some(MembershipConfig {
        root_public_key: membership::load(&dir.join("net")).unwrap().root_public_key,
        certificate: cert,
        revocations: Some(dir.join("net").join("revoked")),
    });
    start_role(c).await.unwrap()
}

/// A raw peer that says `hello` (any certificate, or none) to `target`.
async fn peer_saying(key: Keypair, hello: Hello, target: String) -> net::Client {
    let (client, mut rx, event_loop) = net::build(
        key,
        NetConfig {
            hello,
            gate: None,
            psk: None,
            limits: Default::default(),
            known_events: None,
            catalogues: None,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            peers: vec![target.parse().unwrap()],
            mdns: false,
            serves: net::Serves::All,
        },
    )
    .unwrap();
    tokio::spawn(event_loop.run());
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    client
}

/// A hello in `role`, with the name and store its certificate (if it has a readable
/// one) was issued for.
fn hello(role: Role, certificate: Option<Vec<u8>>) -> Hello {
    let issued = certificate
        .as_deref()
        .and_then(|b| SignedCertificate::decode(b).ok())
        .and_then(|s| Certificate::decode(&s.certificate).ok());
    Hello {
        network: NETWORK.into(),
        role,
        name: issued
            .as_ref()
            .map_or_else(|| "someone".into(), |c| c.name.clone()),
        store: issued.and_then(|c| c.store),
        certificate,
        revocations: vec![],
    }
}

fn cert_for(peer: PeerId, role: Role, expires_ms: i64, serial: u64) -> Certificate {
    Certificate {
        network: NETWORK.into(),
        peer_id: peer.to_bytes(),
        role,
        name: "someone".into(),
        store: None,
        serial,
        issued_ms: now_ms() - 1000,
        expires_ms,
    }
}

fn root(dir: &Path) -> Keypair {
    Keypair::from_protobuf_encoding(&std::fs::read(dir.join("net").join("root.key")).unwrap())
        .unwrap()
}

/// Whether `node` lists `peer` as a peer (its hello accepted).
async fn lists(node: &Node, peer: PeerId) -> bool {
    node.client.peers().await.iter().any(|p| p.peer == peer)
}

/// Asks `check` every 100 ms for up to `secs` seconds; whether it came true.
async fn eventually<F: std::future::Future<Output = bool>>(
    secs: u64,
    mut check: impl FnMut() -> F,
) -> bool {
    for _ in 0..secs * 10 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check().await
}

/// Whether the lab serves `client`: it lists it as a peer, and a print job from it
/// gets an answer.
async fn served(lab: &Node, client: &net::Client) -> bool {
    let me = client.local_peer_id();
    let listed = eventually(3, || lists(lab, me)).await;
    let job = PrintRequest::Job(PrintJob {
        order_id: order_of(me),
        store: "store-1".parse().unwrap(),
        lines: vec![],
        submitted_at_ms: 0,
    });
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        client.request::<PrintProto>(lab.peer_id(), job),
    )
    .await
    .map(|r| r.is_ok())
    .unwrap_or(false);
    listed && answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_enrolled_peers_in_their_own_role_are_served() {
    log();
    let dir = tempfile::tempdir().unwrap();
    let lab = enrolled_lab(dir.path()).await;
    let target = lab.addresses().await[0].to_string();
    let root = root(dir.path());
    let far = now_ms() + 86_400_000;

    // Enrolled as an intermediary, saying so: served.
    let key = Keypair::generate_ed25519();
    let good = sign(
        &root,
        &cert_for(key.public().to_peer_id(), Role::Intermediary, far, 100),
    )
    .unwrap()
    .encode()
    .unwrap();
    let honest = peer_saying(key, hello(Role::Intermediary, Some(good)), target.clone()).await;
    assert!(
        served(&lab, &honest).await,
        "an enrolled intermediary is served"
    );

    // Refused, each: no certificate; expired; another peer's; enrolled as a kiosk but
    // saying intermediary; signed by the peer itself; revoked.
    let mut refused = Vec::new();
    let key = Keypair::generate_ed25519();
    refused.push((
        "no certificate",
        key.clone(),
        hello(Role::Intermediary, None),
    ));
    let key = Keypair::generate_ed25519();
    let expired = sign(
        &root,
        &cert_for(
            key.public().to_peer_id(),
            Role::Intermediary,
            now_ms() - 1,
            101,
        ),
    )
    .unwrap();
    refused.push((
        "expired",
        key,
        hello(Role::Intermediary, Some(expired.encode().unwrap())),
    ));
    let key = Keypair::generate_ed25519();
    let someone_else = Keypair::generate_ed25519().public().to_peer_id();
    let theirs = sign(&root, &cert_for(someone_else, Role::Intermediary, far, 102)).unwrap();
    refused.push((
        "another peer's",
        key,
        hello(Role::Intermediary, Some(theirs.encode().unwrap())),
    ));
    let key = Keypair::generate_ed25519();
    let kiosk = sign(
        &root,
        &cert_for(key.public().to_peer_id(), Role::Kiosk, far, 103),
    )
    .unwrap();
    refused.push((
        "a kiosk saying intermediary",
        key,
        hello(Role::Intermediary, Some(kiosk.encode().unwrap())),
    ));
    let key = Keypair::generate_ed25519();
    let own = sign(
        &key,
        &cert_for(key.public().to_peer_id(), Role::Intermediary, far, 104),
    )
    .unwrap();
    refused.push((
        "self-signed",
        key,
        hello(Role::Intermediary, Some(own.encode().unwrap())),
    ));
    let mut clients = Vec::new();
    for (what, key, hello) in refused {
        let client = peer_saying(key, hello, target.clone()).await;
        assert!(!served(&lab, &client).await, "{what}: must not be served");
        clients.push((what, client));
    }
    // The honest one is still served after all that.
    assert!(served(&lab, &honest).await);
    // Each refused peer keeps redialling (every 2 s): it is refused each time, logged
    // once, and nothing it sent is kept.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let state = printmesh_nodes::roles::lab::inspect(&lab.db, &lab.blobs)
        .unwrap()
        .to_string();
    for (what, client) in &clients {
        let peer = client.local_peer_id();
        assert_eq!(
            logged(&["refused:", &peer.to_string()]),
            1,
            "{what}: logged once"
        );
        let order = order_of(peer);
        assert!(!state.contains(&order.to_string()), "{what}: nothing kept");
        assert!(lab.events.events_for(order).unwrap().is_empty());
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_and_a_node_will_not_start_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    // Enrol an intermediary through the operator's commands, then revoke it.
    membership::init(&dir.path().join("net"), NETWORK).unwrap();
    let key = Keypair::generate_ed25519();
    let (path, cert) = membership::enroll(
        &dir.path().join("net"),
        Role::Intermediary,
        key.public().to_peer_id(),
        "Hub",
        None,
        30,
    )
    .unwrap();
    membership::revoke(&dir.path().join("net"), cert.serial).unwrap();
    // (enrolled_lab makes its own network; use this one's root for the lab instead.)
    let data = dir.path().join("lab");
    std::fs::create_dir_all(&data).unwrap();
    let lab_key = load_or_create_identity(&data.join("identity.key")).unwrap();
    let (lab_cert, _) = membership::enroll(
        &dir.path().join("net"),
        Role::Lab,
        lab_key.public().to_peer_id(),
        "Lab",
        None,
        30,
    )
    .unwrap();
    let root_hex = membership::load(&dir.path().join("net"))
        .unwrap()
        .root_public_key;
    let mut c = TestNet::named(dir.path(), NETWORK).bare(Role::Lab, "Lab", "lab", vec![]);
    c.lab = Some(
        toml::from_str::<LabConfig>(
            "prints_per_day = 1\ncutoff_hour = 24\ncourier_days = [\"mon\"]",
        )
        .unwrap(),
    );
    c.membership = Some(MembershipConfig {
        root_public_key: root_hex.clone(),
        certificate: lab_cert.clone(),
        revocations: Some(dir.path().join("net").join("revoked")),
    });
    let lab = start_role(c.clone()).await.unwrap();
    let target = lab.addresses().await[0].to_string();
    let revoked = peer_saying(
        key.clone(),
        hello(Role::Intermediary, Some(std::fs::read(&path).unwrap())),
        target.clone(),
    )
    .await;
    assert!(
        !served(&lab, &revoked).await,
        "a revoked certificate is refused"
    );
    // It keeps dialling (each time greeted and refused): those closes are the lab's
    // refusals, not hellos it failed, so they do not cut its PeerId off.
    for _ in 0..=printmesh_nodes::net::MAX_FAILED_HELLOS {
        let job = PrintRequest::Job(PrintJob {
            order_id: order_of(revoked.local_peer_id()),
            store: "store-1".parse().unwrap(),
            lines: vec![],
            submitted_at_ms: 0,
        });
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            revoked.request::<PrintProto>(lab.peer_id(), job),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    revoked.shutdown().await;
    drop(revoked);
    // Renewed under a new serial, the same node (same key) is welcome again.
    let (renewed, _) = membership::enroll(
        &dir.path().join("net"),
        Role::Intermediary,
        key.public().to_peer_id(),
        "Hub",
        None,
        30,
    )
    .unwrap();
    let renewed = peer_saying(
        key,
        hello(Role::Intermediary, Some(std::fs::read(&renewed).unwrap())),
        target,
    )
    .await;
    assert!(
        served(&lab, &renewed).await,
        "a renewed certificate is served"
    );
    lab.shutdown().await;
    drop(lab);

    // A node whose own certificate is another role's, or missing, does not start.
    let mut wrong = c.clone();
    wrong.role = Role::Lab;
    wrong.membership = Some(MembershipConfig {
        root_public_key: root_hex.clone(),
        certificate: path.clone(), // the intermediary's, for another PeerId
        revocations: None,
    });
    wrong.data_dir = dir.path().join("lab2");
    let e = start_role(wrong).await.err().expect("refused").to_string();
    assert!(e.contains("this node's certificate"), "{e}");
    // Nor one whose config names it otherwise than its certificate (every peer would
    // refuse it, and only they would say why).
    let mut renamed = c.clone();
    renamed.name = "Lab Two".into();
    renamed.data_dir = dir.path().join("lab4");
    std::fs::create_dir_all(&renamed.data_dir).unwrap();
    std::fs::copy(
        dir.path().join("lab/identity.key"),
        renamed.data_dir.join("identity.key"),
    )
    .unwrap();
    let e = start_role(renamed)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("its config names it \"Lab Two\""), "{e}");
    let mut missing = c;
    missing.data_dir = dir.path().join("lab3");
    missing.membership = Some(MembershipConfig {
        root_public_key: root_hex,
        certificate: dir.path().join("nope.cert"),
        revocations: None,
    });
    let e = start_role(missing)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("nope.cert"), "{e}");
}

/// A node of `role` enrolled in the network under `dir/net` (made if missing).
fn enrolled_config(dir: &Path, role: Role, name: &str, peers: Vec<String>) -> NodeConfig {
    let net = dir.join("net");
    if !net.join("network.toml").exists() {
        membership::init(&net, NETWORK).unwrap();
    }
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let key = load_or_create_identity(&data.join("identity.key")).unwrap();
    let (cert, _) = membership::enroll(
        &net,
        role,
        key.public().to_peer_id(),
        name,
        (role == Role::Kiosk).then(|| "store-1".parse().unwrap()),
        30,
    )
    .unwrap();
    let mut c = TestNet::named(dir, NETWORK).bare(role, name, name, peers);
    assert_eq!(c.data_dir, data);
    c.membership = Some(MembershipConfig {
        root_public_key: membership::load(&net).unwrap().root_public_key,
        certificate: cert,
        revocations: None,
    });
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_node_and_cuts_the_peer_off() {
    log();
    let dir = tempfile::tempdir().unwrap();
    let mut lab_cfg = enrolled_config(dir.path(), Role::Lab, "lab", vec![]);
    lab_cfg.lab = Some(
        toml::from_str::<LabConfig>(
            "prints_per_day = 1\ncutoff_hour = 24\ncourier_days = [\"mon\"]",
        )
        .unwrap(),
    );
    let lab = start_role(lab_cfg).await.unwrap();
    let lab_addr = lab.addresses().await[0].to_string();
    let mut courier_cfg =
        enrolled_config(dir.path(), Role::Courier, "courier", vec![lab_addr.clone()]);
    courier_cfg.courier = Some(printmesh_nodes::config::CourierConfig {
        auto_in_transit_secs: None,
        auto_deliver_secs: None,
    });
    let courier = start_role(courier_cfg).await.unwrap();
    let courier_addr = courier.addresses().await[0].to_string();
    courier
        .client
        .wait_for_role(Role::Lab, Duration::from_secs(10))
        .await
        .unwrap();

    // An enrolled intermediary, connected to both.
    let key = Keypair::generate_ed25519();
    let (cert_path, cert) = membership::enroll(
        &dir.path().join("net"),
        Role::Intermediary,
        key.public().to_peer_id(),
        "Hub",
        None,
        30,
    )
    .unwrap();
    let hub = peer_saying(
        key,
        hello(Role::Intermediary, Some(std::fs::read(&cert_path).unwrap())),
        lab_addr.clone(),
    )
    .await;
    hub.dial(courier_addr.parse().unwrap()).await.unwrap();
    let me = hub.local_peer_id();
    for node in [&lab, &courier] {
        assert!(
            eventually(5, || lists(node, me)).await,
            "the hub is a peer of every node before"
        );
    }

    // The operator revokes it and hands the revocation to the lab only.
    let (rev, _) = membership::revoke(&dir.path().join("net"), cert.serial).unwrap();
    let dir_lab = lab.config.data_dir.clone();
    let revocation = std::fs::read(&rev).unwrap();
    let answer = std::thread::spawn(move || {
        printmesh_nodes::node::admin_call(
            &dir_lab,
            &printmesh_nodes::node::AdminRequest::Revoke { revocation },
        )
    })
    .join()
    .unwrap()
    .unwrap()
    .unwrap();
    assert!(
        answer.ok && answer.text.contains("revoked"),
        "{}",
        answer.text
    );

    // Within seconds the courier has it too, and neither serves the hub.
    let started = std::time::Instant::now();
    for node in [&lab, &courier] {
        assert!(
            eventually(10, || async { !lists(node, me).await }).await,
            "revoked everywhere"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(courier
        .config
        .data_dir
        .join("revocations")
        .join(format!("{}.rev", cert.serial))
        .exists());
    // It dials again (and keeps redialling the lab every 2 s): refused each time,
    // logged once.
    hub.dial(lab_addr.parse().unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!lists(&lab, me).await);
    let refusals = logged(&["refused:", "is revoked", &me.to_string()]);
    assert!(refusals >= 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!lists(&lab, me).await);
    assert_eq!(
        logged(&["refused:", "is revoked", &me.to_string()]),
        refusals,
        "logged once"
    );

    // A node that was away when it was gossiped (and has no operator folder) learns
    // it from the first peer it greets, and refuses the hub too.
    let mut late_cfg = enrolled_config(dir.path(), Role::Courier, "late", vec![lab_addr.clone()]);
    late_cfg.courier = Some(printmesh_nodes::config::CourierConfig {
        auto_in_transit_secs: None,
        auto_deliver_secs: None,
    });
    let late = start_role(late_cfg).await.unwrap();
    late.client
        .wait_for_role(Role::Lab, Duration::from_secs(10))
        .await
        .unwrap();
    let kept = late
        .config
        .data_dir
        .join("revocations")
        .join(format!("{}.rev", cert.serial));
    assert!(
        eventually(5, || async { kept.exists() }).await,
        "learned from the lab's hello"
    );
    hub.dial(late.addresses().await[0].clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!lists(&late, me).await);
    late.shutdown().await;
    // A forged revocation (signed by someone else) is refused by the node.
    let dir_lab = lab.config.data_dir.clone();
    let forged = {
        let r = printmesh_protocol::membership::Revocation {
            network: NETWORK.into(),
            serial: 1,
            peer_id: courier.peer_id().to_bytes(),
            revoked_ms: now_ms(),
        };
        let bytes = r.encode().unwrap();
        let other = Keypair::generate_ed25519();
        printmesh_protocol::membership::SignedRevocation {
            signature: other.sign(&bytes).unwrap(),
            revocation: bytes,
        }
        .encode()
        .unwrap()
    };
    let answer = std::thread::spawn(move || {
        printmesh_nodes::node::admin_call(
            &dir_lab,
            &printmesh_nodes::node::AdminRequest::Revoke { revocation: forged },
        )
    })
    .join()
    .unwrap()
    .unwrap()
    .unwrap();
    assert!(
        !answer.ok && answer.text.contains("not signed"),
        "{}",
        answer.text
    );
    assert!(lab
        .client
        .peers()
        .await
        .iter()
        .any(|p| p.peer == courier.peer_id()));
    lab.shutdown().await;
    courier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_networks_pre_shared_key_there_is_no_connection_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let psk = dir.path().join("swarm.key");
    std::fs::write(&psk, membership::new_psk()).unwrap();
    let other_psk = dir.path().join("other.key");
    std::fs::write(&other_psk, membership::new_psk()).unwrap();
    let node = |name: &str, key: Option<&Path>, peers: Vec<String>| {
        let mut c = TestNet::named(dir.path(), NETWORK).bare(Role::Courier, name, name, peers);
        c.courier = Some(printmesh_nodes::config::CourierConfig {
            auto_in_transit_secs: None,
            auto_deliver_secs: None,
        });
        c.psk_file = key.map(Path::to_path_buf);
        c
    };
    let a = start_role(node("a", Some(&psk), vec![])).await.unwrap();
    let addr = a.addresses().await[0].to_string();
    let b = start_role(node("b", Some(&psk), vec![addr.clone()]))
        .await
        .unwrap();
    b.client
        .wait_for_role(Role::Courier, Duration::from_secs(10))
        .await
        .expect("the same key: connected");
    let c = start_role(node("c", Some(&other_psk), vec![addr.clone()]))
        .await
        .unwrap();
    let d = start_role(node("d", None, vec![addr])).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for outsider in [&c, &d] {
        assert!(outsider.client.peers().await.is_empty());
        assert!(!a
            .client
            .peers()
            .await
            .iter()
            .any(|p| p.peer == outsider.peer_id()));
    }
    // A key file that is not one is a clear error at start.
    std::fs::write(dir.path().join("bad.key"), "not a key").unwrap();
    let e = start_role(node("e", Some(&dir.path().join("bad.key")), vec![]))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("not a pre-shared key"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossiped_events_count_only_from_the_role_that_emits_them() {
    log();
    use printmesh_nodes::events::sign_event;
    use printmesh_protocol::codec::encode_frame;
    use printmesh_protocol::messages::{proto, EventKind, OrderEvent};

    let dir = tempfile::tempdir().unwrap();
    let mut lab_cfg = enrolled_config(dir.path(), Role::Lab, "lab", vec![]);
    lab_cfg.lab = Some(
        toml::from_str::<LabConfig>(
            "prints_per_day = 1\ncutoff_hour = 24\ncourier_days = [\"mon\"]",
        )
        .unwrap(),
    );
    let lab_cert = std::fs::read(&lab_cfg.membership.as_ref().unwrap().certificate).unwrap();
    let lab = start_role(lab_cfg).await.unwrap();
    let lab_addr = lab.addresses().await[0].to_string();
    let mut courier_cfg =
        enrolled_config(dir.path(), Role::Courier, "courier", vec![lab_addr.clone()]);
    courier_cfg.courier = Some(printmesh_nodes::config::CourierConfig {
        auto_in_transit_secs: None,
        auto_deliver_secs: None,
    });
    let courier = start_role(courier_cfg).await.unwrap();
    courier
        .client
        .wait_for_role(Role::Lab, Duration::from_secs(10))
        .await
        .unwrap();

    // An enrolled kiosk (so the lab serves it) that tries to pass off a lab's event.
    let key = Keypair::generate_ed25519();
    let (cert_path, _) = membership::enroll(
        &dir.path().join("net"),
        Role::Kiosk,
        key.public().to_peer_id(),
        "Kiosk",
        Some("store-1".parse().unwrap()),
        30,
    )
    .unwrap();
    let cert = std::fs::read(&cert_path).unwrap();
    let kiosk = peer_saying(
        key.clone(),
        hello(Role::Kiosk, Some(cert.clone())),
        lab_addr,
    )
    .await;
    let me = kiosk.local_peer_id();
    assert!(eventually(5, || lists(&lab, me)).await);
    // Let gossipsub take the new peer into its mesh.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let forged_order = OrderId::from_parts(5, 5);
    let publish = |kind: EventKind, with_cert: bool| {
        let event = OrderEvent {
            origin: key.public().to_peer_id().to_bytes(),
            seq: 1,
            order_id: forged_order,
            at_ms: now_ms(),
            kind,
        };
        let mut signed = sign_event(&key, &event).unwrap();
        signed.certificate = with_cert.then(|| cert.clone());
        encode_frame(&signed, proto::EVENT_MAX_BYTES).unwrap()
    };
    // Both really go out (the lab subscribes to the topic): the lab must refuse them.
    kiosk
        .publish_event(publish(EventKind::Shipped, true))
        .await
        .expect("published");
    kiosk
        .publish_event(publish(EventKind::Printed, false))
        .await
        .expect("published");
    // An acquirer's word (a void releases the customer's money) from a kiosk.
    kiosk
        .publish_event(publish(EventKind::Voided, true))
        .await
        .expect("published");

    // The lab's own event, from a lab, reaches the courier.
    let real_order = OrderId::from_parts(6, 6);
    lab.emit(real_order, EventKind::Printed).await;
    assert!(
        eventually(5, || async {
            !courier.events.events_for(real_order).unwrap().is_empty()
        })
        .await,
        "a lab's event from the lab is taken"
    );

    // A replay: the lab's event again under its number, changed (re-signed with the
    // lab's own key and certificate, so it passes every other check), twice.
    let stored = courier.events.events_for(real_order).unwrap();
    let lab_key = load_or_create_identity(&dir.path().join("lab").join("identity.key")).unwrap();
    for at_ms in [1, 2] {
        let mut replay = stored[0].clone();
        replay.at_ms = at_ms;
        replay.kind = EventKind::Shipped;
        let mut signed = sign_event(&lab_key, &replay).unwrap();
        signed.certificate = Some(lab_cert.clone());
        kiosk
            .publish_event(encode_frame(&signed, proto::EVENT_MAX_BYTES).unwrap())
            .await
            .expect("published");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for node in [&lab, &courier] {
        assert_eq!(
            node.events.events_for(real_order).unwrap(),
            stored,
            "a replayed event is not kept"
        );
    }
    // Only the lab saw them (it passed neither on), and said so once.
    assert_eq!(logged(&["replayed", &lab.peer_id().to_string()]), 1);
    // The kiosk's forgeries: each reason logged once.
    let kiosk_id = key.public().to_peer_id().to_string();
    let text = String::from_utf8_lossy(&log().lock().unwrap()).to_string();
    let about_kiosk: Vec<&str> = text.lines().filter(|l| l.contains(&kiosk_id)).collect();
    assert_eq!(
        logged(&["may not emit Ship", &kiosk_id]),
        1,
        "{about_kiosk:#?}"
    );
    assert_eq!(
        logged(&["may not emit Void", &kiosk_id]),
        1,
        "{about_kiosk:#?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in [&lab, &courier] {
        assert!(
            node.events.events_for(forged_order).unwrap().is_empty(),
            "a kiosk's 'Shipped' and an uncertified event are not stored, nor passed on"
        );
    }
    // A member that floods valid events of its own kind (a kiosk's "collected"):
    // the lab keeps no more than its budget, and cuts the kiosk off.
    let before = lab.events.len();
    for i in 0..400u64 {
        let event = OrderEvent {
            origin: key.public().to_peer_id().to_bytes(),
            seq: 100 + i,
            order_id: OrderId::from_parts(77, u128::from(i)),
            at_ms: now_ms(),
            kind: EventKind::Collected,
        };
        let mut signed = sign_event(&key, &event).unwrap();
        signed.certificate = Some(cert.clone());
        let _ = kiosk
            .publish_event(encode_frame(&signed, proto::EVENT_MAX_BYTES).unwrap())
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = lab.events.len() - before;
    assert!(
        (1..=150).contains(&kept),
        "{kept} of 400 flooded events kept"
    );
    assert_eq!(
        lab.client.connections_to(me).await,
        0,
        "the kiosk is cut off"
    );
    lab.shutdown().await;
    courier.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_passed_on_in_a_sync_is_judged_as_gossip_is() {
    log();
    use printmesh_protocol::messages::EventKind;

    let dir = tempfile::tempdir().unwrap();
    let mut lab_cfg = enrolled_config(dir.path(), Role::Lab, "lab", vec![]);
    lab_cfg.lab = Some(
        toml::from_str::<LabConfig>(
            "prints_per_day = 100\ncutoff_hour = 24\ncourier_days = [\"mon\"]",
        )
        .unwrap(),
    );
    let lab = start_role(lab_cfg).await.unwrap();
    // An enrolled kiosk's node whose log holds a kiosk's word (collected) and a lab's
    // word it signed itself (shipped), made while it was offline: what a broken or
    // hostile kiosk would pass on when asked.
    let mut kiosk_cfg = enrolled_config(dir.path(), Role::Kiosk, "kiosk", vec![]);
    kiosk_cfg.kiosk = Some(printmesh_nodes::config::KioskConfig::new(
        "store-1".parse().unwrap(),
        "Store",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/demo/prices.toml"),
    ));
    let (kiosk, mut rx) = printmesh_nodes::node::start(kiosk_cfg.common())
        .await
        .unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (collected, shipped) = (OrderId::from_parts(31, 1), OrderId::from_parts(31, 2));
    kiosk.emit(collected, EventKind::Collected).await;
    kiosk.emit(shipped, EventKind::Shipped).await;
    kiosk
        .client
        .dial(lab.addresses().await[0].clone())
        .await
        .unwrap();
    // The lab asks the kiosk what it missed: it takes the kiosk's own word only.
    assert!(
        eventually(20, || async {
            !lab.events.events_for(collected).unwrap().is_empty()
        })
        .await,
        "a kiosk's collected, synced, is taken"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        lab.events.events_for(shipped).unwrap().is_empty(),
        "a kiosk's shipped, synced, is not"
    );
    let kiosk_id = kiosk.peer_id().to_string();
    assert_eq!(
        logged(&["a synced event refused", "may not emit Ship", &kiosk_id]),
        1
    );
    lab.shutdown().await;
    kiosk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_dialling_over_and_over_holds_a_few_connections_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = TestNet::named(dir.path(), NETWORK).bare(Role::Courier, "a", "a", vec![]);
    c.courier = Some(printmesh_nodes::config::CourierConfig {
        auto_in_transit_secs: None,
        auto_deliver_secs: None,
    });
    let node = start_role(c).await.unwrap();
    let addr = node.addresses().await[0].to_string();
    let flooder = peer_saying(
        Keypair::generate_ed25519(),
        hello(Role::Lab, None),
        addr.clone(),
    )
    .await;
    for _ in 0..20 {
        let _ = flooder.dial(addr.parse().unwrap()).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = node.client.connections_to(flooder.local_peer_id()).await;
    assert!(
        (1..=net::MAX_CONNECTIONS_PER_PEER).contains(&held),
        "{held} connections from one peer"
    );
    // Someone else still gets in and is served.
    let other = peer_saying(Keypair::generate_ed25519(), hello(Role::Lab, None), addr).await;
    let me = other.local_peer_id();
    assert!(eventually(5, || lists(&node, me)).await);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_expires_while_connected_is_cut_off_then() {
    log();
    let dir = tempfile::tempdir().unwrap();
    let lab = enrolled_lab(dir.path()).await;
    let target = lab.addresses().await[0].to_string();
    let key = Keypair::generate_ed25519();
    let soon = sign(
        &root(dir.path()),
        &cert_for(
            key.public().to_peer_id(),
            Role::Intermediary,
            now_ms() + 3_000,
            200,
        ),
    )
    .unwrap()
    .encode()
    .unwrap();
    let hub = peer_saying(key, hello(Role::Intermediary, Some(soon)), target).await;
    assert!(
        served(&lab, &hub).await,
        "served while its certificate is valid"
    );
    let me = hub.local_peer_id();
    assert!(
        eventually(8, || async { !lists(&lab, me).await }).await,
        "cut off within seconds of its certificate's expiry"
    );
    // It keeps redialling: refused each time, logged once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!lists(&lab, me).await);
    assert_eq!(logged(&["refused:", "expired", &me.to_string()]), 1);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_connects_and_never_greets_is_dropped_after_the_deadline() {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;

    let dir = tempfile::tempdir().unwrap();
    let lab = enrolled_lab(dir.path()).await;
    // A peer that takes the lab's hello stream and never answers, nor greets.
    let mut silent = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    let me = *silent.local_peer_id();
    let mut hellos = silent
        .behaviour()
        .new_control()
        .accept(libp2p::StreamProtocol::new(
            printmesh_protocol::messages::proto::HELLO,
        ))
        .unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((_, stream)) = hellos.next().await {
            held.push(stream);
        }
    });
    silent.dial(lab.addresses().await[0].clone()).unwrap();
    let (tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::ConnectionClosed { .. } = silent.select_next_some().await {
                let _ = tx.send(std::time::Instant::now());
            }
        }
    });
    assert!(
        eventually(5, || async { lab.client.connections_to(me).await > 0 }).await,
        "the silent peer got a connection"
    );
    let since = std::time::Instant::now();
    assert!(!lists(&lab, me).await);
    let dropped = tokio::time::timeout(Duration::from_secs(20), closed.recv())
        .await
        .expect("dropped within the deadline and a tick")
        .unwrap();
    let after = dropped.duration_since(since);
    assert!(
        after >= net::ADMISSION_DEADLINE - Duration::from_secs(1),
        "not before the deadline: {after:?}"
    );
    // The lab's side of the close may be handled a moment after the peer sees it.
    assert!(
        eventually(2, || async { lab.client.connections_to(me).await == 0 }).await,
        "the lab still counts a connection to the silent peer"
    );
    lab.shutdown().await;
}

/// A foreign libp2p peer that speaks no hello and redials in a loop costs one log
/// line, then is cut off: its redials are refused, not served a hello each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_redialling_without_a_hello_is_logged_once_and_cut_off() {
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;

    log();
    let dir = tempfile::tempdir().unwrap();
    let lab = enrolled_lab(dir.path()).await;
    let mut foreign = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    let me = *foreign.local_peer_id();
    // It takes the lab's hello stream and drops it unanswered: each counted.
    let hellos = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut incoming = foreign
        .behaviour()
        .new_control()
        .accept(libp2p::StreamProtocol::new(
            printmesh_protocol::messages::proto::HELLO,
        ))
        .unwrap();
    let counted = hellos.clone();
    tokio::spawn(async move {
        while let Some((_, stream)) = incoming.next().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let target = lab.addresses().await[0].clone();
    let mut refused = 0;
    let mut connected = 0;
    for _ in 0..12 {
        foreign.dial(target.clone()).unwrap();
        // Until this dial ends: closed by the lab (no hello), or refused.
        loop {
            match tokio::time::timeout(Duration::from_secs(10), foreign.select_next_some()).await {
                Ok(SwarmEvent::ConnectionEstablished { .. }) => connected += 1,
                Ok(SwarmEvent::ConnectionClosed { .. }) => break,
                Ok(SwarmEvent::OutgoingConnectionError { .. }) => {
                    refused += 1;
                    break;
                }
                Ok(_) => {}
                Err(_) => panic!("a dial neither closed nor refused"),
            }
        }
    }
    // Greeted until it had failed its hello more than MAX_FAILED_HELLOS times; after
    // that its connections are refused before anything is sent.
    let greeted = hellos.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        greeted,
        printmesh_nodes::net::MAX_FAILED_HELLOS as usize + 1,
        "{connected} connections, {refused} refused"
    );
    assert_eq!(
        logged(&["connects again and again without a hello", &me.to_string()]),
        1
    );
    assert!(!lists(&lab, me).await);
    let _ = refused;
    lab.shutdown().await;
}
