//! Protocol behaviour between real nodes (in one process, real TCP on 127.0.0.1):
//! blob transfer, resumption and verification; hostile frames; idempotency.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::AsyncWriteExt;
use libp2p::StreamProtocol;
use printmesh_nodes::blobs::{send_blob, send_blob_cut, BlobError};
use printmesh_nodes::config::{AcquirerConfig, IntermediaryConfig, KioskConfig, NodeConfig};
use printmesh_nodes::net::{AuthProto, NetError, OrderProto, SettleProto, ShipProto};
use printmesh_nodes::node::{start, start_role, Node};
use printmesh_nodes::testnet::TestNet;
use printmesh_protocol::card::{CardData, Expiry};
use printmesh_protocol::codec::encode_frame;
use printmesh_protocol::messages::{
    proto, AuthRequest, AuthResponse, Authorise, DeclineCode, OrderLine, OrderRequest,
    OrderResponse, PaymentMethod, Role, SealedAuthorise, SealedOrder, SettleRequest,
    SettleResponse, ShipRequest,
};
use printmesh_protocol::money::{Currency, Money};
use printmesh_protocol::pinblock::Pin;
use printmesh_protocol::pricing::PrintSize;
use printmesh_protocol::seal::{
    open_card, seal_card, Binding, EntryMode, PinEntry, SealKey, SealSecret,
};
use printmesh_protocol::{BlobId, OrderId};
use rand::RngCore;

use printmesh_nodes::testnet::fixtures_dir as fixtures;

fn config(dir: &Path, role: Role, network: &str, peers: Vec<String>) -> NodeConfig {
    let fx = fixtures();
    let mut c =
        TestNet::named(dir, network).bare(role, &format!("test {role}"), role.name(), peers);
    c.kiosk = (role == Role::Kiosk).then(|| KioskConfig {
        media_dir: Some(fx.join("memory-card")),
        cards: Some(fx.join("cards.toml")),
        acquirer_key_file: Some(dir.join("acquirer").join("seal.pub")),
        ..KioskConfig::new(
            "store-test".parse().unwrap(),
            "Test",
            fx.join("demo/prices.toml"),
        )
    });
    c.intermediary = (role == Role::Intermediary).then(|| IntermediaryConfig {
        prices: fx.join("demo/prices.toml"),
        commission_bps: 2000,
        routes: Vec::new(),
    });
    c.lab = (role == Role::Lab).then(|| {
        toml::from_str("prints_per_day = 100\ncutoff_hour = 24\ncourier_days = [\"mon\"]").unwrap()
    });
    c.acquirer = (role == Role::Acquirer).then(|| AcquirerConfig {
        cards: fx.join("cards.toml"),
        hold_ttl_secs: 3600,
        hold_max_secs: 30 * 24 * 3600,
        minor_per_point: 1,
        group_commit: true,
    });
    c
}

async fn addr(node: &Node) -> String {
    node.addresses().await[0].to_string()
}

/// A bare node (no role running) announcing `role`, connected to `peer_addr`, used as a
/// test client.
async fn client_node(dir: &Path, network: &str, role: Role, peer_addr: String) -> Node {
    let (node, mut rx) = start(config(dir, role, network, vec![peer_addr]).common())
        .await
        .unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    node
}

/// An intermediary, and a node of store-test's kiosk connected to it (which answers
/// nothing: the test speaks for it); with the intermediary's id.
async fn intermediary_and_kiosk(dir: &Path, network: &str) -> (Node, Node, libp2p::PeerId) {
    let intermediary = start_role(config(&dir.join("i"), Role::Intermediary, network, vec![]))
        .await
        .unwrap();
    let kiosk = client_node(
        &dir.join("k"),
        network,
        Role::Kiosk,
        addr(&intermediary).await,
    )
    .await;
    let peer = kiosk
        .client
        .wait_for_role(Role::Intermediary, Duration::from_secs(10))
        .await
        .unwrap()
        .peer;
    (intermediary, kiosk, peer)
}

/// An intermediary connected to a node in `role` (a lab for photos, an acquirer for
/// authorisations).
async fn two_nodes(dir: &Path, role: Role) -> (Node, Node) {
    let network = format!("net-{}", rand::random::<u32>());
    let receiver = start_role(config(&dir.join("r"), role, &network, vec![]))
        .await
        .unwrap();
    let sender = client_node(
        &dir.join("s"),
        &network,
        Role::Intermediary,
        addr(&receiver).await,
    )
    .await;
    sender
        .client
        .wait_for_role(role, Duration::from_secs(10))
        .await
        .unwrap();
    (sender, receiver)
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

#[tokio::test]
async fn a_request_to_a_role_that_does_not_answer_it_fails_at_once() {
    // A lab answers print jobs and payments; an intermediary (its test stand-in here)
    // asks a lab to ship, which only a courier answers. The lab's node does not speak
    // the ship protocol inbound: the request is refused at negotiation, the role never
    // hears of it, and the asker knows at once instead of waiting out its timeout.
    let dir = tempfile::tempdir().unwrap();
    let (sender, lab) = two_nodes(dir.path(), Role::Lab).await;
    let asked = std::time::Instant::now();
    let answer = sender
        .client
        .request::<ShipProto>(
            lab.peer_id(),
            ShipRequest::Manifest {
                shipment: "s-1".into(),
                lab: "nobody".into(),
                parcels: vec![],
            },
        )
        .await;
    match answer {
        Err(NetError::Request { reason, .. }) => {
            assert!(
                reason.contains("none of the requested protocols"),
                "{reason}"
            )
        }
        other => panic!("a lab answered a shipment: {other:?}"),
    }
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    // The protocols it does answer still work: a settlement it is not owed is refused
    // in words, by the role.
    let batch = printmesh_protocol::messages::BatchId {
        date: chrono::NaiveDate::from_ymd_opt(2026, 12, 4).unwrap(),
        seq: 1,
    };
    let answer = sender
        .client
        .request::<SettleProto>(lab.peer_id(), SettleRequest::BillPlease { batch })
        .await;
    assert!(
        matches!(answer, Ok(SettleResponse::Refused { .. })),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_blob_arrives_verified_and_is_not_sent_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path(), Role::Lab).await;
    let bytes = random_bytes(1_500_000);
    let blob = sender.blobs.import_bytes(&bytes).await.unwrap();
    let mut control = sender.client.stream_control();

    let first = send_blob(&mut control, &sender.blobs, receiver.peer_id(), blob)
        .await
        .unwrap();
    assert!(!first.already_had);
    assert_eq!(first.bytes_sent, bytes.len() as u64);
    assert_eq!(receiver.blobs.read(&blob).await.unwrap(), bytes);

    let second = send_blob(&mut control, &sender.blobs, receiver.peer_id(), blob)
        .await
        .unwrap();
    assert!(second.already_had);
    assert_eq!(second.bytes_sent, 0);
}

#[tokio::test]
async fn a_cut_transfer_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path(), Role::Lab).await;
    let bytes = random_bytes(3_000_000);
    let blob = sender.blobs.import_bytes(&bytes).await.unwrap();
    let mut control = sender.client.stream_control();

    let cut = send_blob_cut(
        &mut control,
        &sender.blobs,
        receiver.peer_id(),
        blob,
        Some(1_000_000),
    )
    .await;
    assert!(cut.is_err(), "the cut transfer must not report success");
    assert!(!receiver.blobs.has(&blob));
    // The receiver keeps what arrived.
    for _ in 0..100 {
        if receiver.blobs.partial_len(&blob) >= 1_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.blobs.partial_len(&blob), 1_000_000);

    let resumed = send_blob(&mut control, &sender.blobs, receiver.peer_id(), blob)
        .await
        .unwrap();
    assert_eq!(resumed.resumed_from, 1_000_000);
    assert_eq!(resumed.bytes_sent, 2_000_000);
    assert_eq!(receiver.blobs.read(&blob).await.unwrap(), bytes);
    assert_eq!(receiver.blobs.partial_len(&blob), 0);
}

#[tokio::test]
async fn bytes_that_do_not_match_their_hash_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path(), Role::Lab).await;
    // The sender claims blob `claimed` but holds other bytes under its name.
    let claimed = BlobId::of(b"the real photo");
    let path = sender.blobs.path(&claimed);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"a forged photo").unwrap();
    let mut control = sender.client.stream_control();
    let err = send_blob(&mut control, &sender.blobs, receiver.peer_id(), claimed)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BlobError::HashMismatch(b) if b == claimed),
        "{err}"
    );
    assert!(!receiver.blobs.has(&claimed));
    assert!(receiver.blobs.list().is_empty());
}

/// The acquirer's sealing key, as it published it in its data directory.
fn acquirer_key(node: &Node) -> SealKey {
    let path = printmesh_nodes::roles::acquirer::seal_pub_path(&node.config.data_dir);
    SealKey::from_hex(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A test card: PAN and expiry (fixtures/cards.toml).
struct Card(&'static str, u16, u8);
const VISA_CREDIT: Card = Card("4111111111111111", 2030, 12);
const VISA_DEBIT: Card = Card("4000056655665556", 2031, 6);
const POINTS: Card = Card("6035310000000009", 2031, 12);
const JCB_IC: Card = Card("3566002020360505", 2030, 8);

fn card_data(card: &Card) -> CardData {
    CardData {
        pan: card.0.parse().unwrap(),
        expiry: Expiry::new(card.1, card.2).unwrap(),
    }
}

/// An authorisation with the card sealed to `key`, as a kiosk and an intermediary
/// would send it.
fn sealed(
    key: &SealKey,
    order_id: OrderId,
    amount: i64,
    method: PaymentMethod,
    card: &Card,
    entry: EntryMode,
    pin: Option<&str>,
) -> AuthRequest {
    let amount = Money::new(amount, Currency::Jpy);
    let store: printmesh_protocol::StoreId = "store-test".parse().unwrap();
    let binding = Binding {
        order_id,
        amount,
        store: store.clone(),
        method,
    };
    let pin = pin.map(|p| Pin::new(p.as_bytes()).unwrap());
    let sealed = seal_card(
        key,
        &binding,
        &card_data(card),
        entry,
        pin.as_ref(),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    AuthRequest::AuthoriseSealed(SealedAuthorise {
        order_id,
        amount,
        method,
        store,
        card: sealed,
    })
}

fn authorise(key: &SealKey, order_id: OrderId, amount: i64) -> AuthRequest {
    sealed(
        key,
        order_id,
        amount,
        PaymentMethod::Credit,
        &VISA_CREDIT,
        EntryMode::Swipe,
        None,
    )
}

/// One card's line of the acquirer's `inspect`.
fn card_state(node: &Node, last4: &str) -> serde_json::Value {
    let all = printmesh_nodes::roles::acquirer::inspect(&node.db).unwrap();
    all["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["last4"] == last4)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn hostile_frames_get_errors_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path(), Role::Acquirer).await;
    let mut control = sender.client.stream_control();
    let auth = StreamProtocol::new(proto::AUTH);

    // A frame header announcing 2 GiB: refused before anything is allocated.
    let mut s = control
        .open_stream(receiver.peer_id(), auth.clone())
        .await
        .unwrap();
    s.write_all(&[1, 0xff, 0xff, 0xff, 0x7f]).await.unwrap();
    s.write_all(&[0u8; 64]).await.unwrap();
    let _ = s.close().await;

    // A frame of an unknown version.
    let key = acquirer_key(&receiver);
    let mut frame = encode_frame(
        &authorise(&key, OrderId::from_parts(1, 1), 10),
        proto::AUTH_MAX_BYTES,
    )
    .unwrap();
    frame[0] = 7;
    let mut s = control
        .open_stream(receiver.peer_id(), auth.clone())
        .await
        .unwrap();
    s.write_all(&frame).await.unwrap();
    let _ = s.close().await;

    // Garbage inside a well-formed frame.
    let mut s = control.open_stream(receiver.peer_id(), auth).await.unwrap();
    s.write_all(&[1, 8, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9])
        .await
        .unwrap();
    let _ = s.close().await;

    tokio::time::sleep(Duration::from_millis(200)).await;

    // Still serving, and nothing stored from the hostile frames.
    let id = OrderId::from_parts(2, 2);
    let answer = sender
        .client
        .request::<AuthProto>(receiver.peer_id(), authorise(&key, id, 100))
        .await
        .unwrap();
    assert!(
        matches!(answer, AuthResponse::ApprovedCard { order_id, .. } if order_id == id),
        "{answer:?}"
    );
    let held: printmesh_nodes::store::Tree<printmesh_nodes::roles::acquirer::AuthRecord> =
        receiver.db.tree("auths").unwrap();
    assert_eq!(held.len(), 1);
}

#[tokio::test]
async fn replayed_authorisations_return_the_first_answer_and_hold_once() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path(), Role::Acquirer).await;
    let id = OrderId::from_parts(3, 3);
    let peer = receiver.peer_id();
    let key = acquirer_key(&receiver);
    let (a, b) = tokio::join!(
        sender
            .client
            .request::<AuthProto>(peer, authorise(&key, id, 700)),
        sender
            .client
            .request::<AuthProto>(peer, authorise(&key, id, 700)),
    );
    assert_eq!(a.unwrap(), b.unwrap());
    let c = sender
        .client
        .request::<AuthProto>(peer, authorise(&key, id, 700))
        .await
        .unwrap();
    assert!(matches!(c, AuthResponse::ApprovedCard { .. }));
    assert_eq!(card_state(&receiver, "1111")["held_minor"], 700);
    // The same order id asking for another amount is not a replay.
    let other = sender
        .client
        .request::<AuthProto>(peer, authorise(&key, id, 7_000))
        .await
        .unwrap();
    assert!(
        matches!(other, AuthResponse::Refused { ref reason, .. } if reason.contains("other details")),
        "{other:?}"
    );
    assert_eq!(card_state(&receiver, "1111")["held_minor"], 700);
    // Void releases it; a second void is a no-op.
    let v = sender
        .client
        .request::<AuthProto>(peer, AuthRequest::Void { order_id: id })
        .await
        .unwrap();
    assert_eq!(v, AuthResponse::Voided { order_id: id });
    let v2 = sender
        .client
        .request::<AuthProto>(peer, AuthRequest::Void { order_id: id })
        .await
        .unwrap();
    assert_eq!(v2, AuthResponse::Voided { order_id: id });
    assert_eq!(card_state(&receiver, "1111")["held_minor"], 0);
    // Replaying the approval after the void does not stand again.
    let again = sender
        .client
        .request::<AuthProto>(peer, authorise(&key, id, 700))
        .await
        .unwrap();
    assert!(
        matches!(
            again,
            AuthResponse::DeclinedCard {
                code: DeclineCode::DoNotHonour,
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(card_state(&receiver, "1111")["held_minor"], 0);
    // A voided hold cannot be captured; the books still balance.
    let cap = sender
        .client
        .request::<AuthProto>(peer, AuthRequest::Capture { order_id: id })
        .await
        .unwrap();
    assert!(matches!(cap, AuthResponse::HoldClosed { .. }), "{cap:?}");
    let all = printmesh_nodes::roles::acquirer::inspect(&receiver.db).unwrap();
    assert_eq!(all["ledger_balanced"], true);
}

#[tokio::test]
async fn an_order_naming_a_blob_that_never_arrived_is_answered_with_the_missing_blob() {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let (_intermediary, kiosk, peer) = intermediary_and_kiosk(dir.path(), &network).await;
    let never_sent = BlobId::of(b"never uploaded");
    let id = OrderId::from_parts(4, 4);
    let (_, some_acquirer) = SealSecret::generate(&mut rand::rngs::OsRng);
    let submit = sealed_order(&some_acquirer, id, never_sent, 14, &VISA_CREDIT);
    let answer = kiosk
        .client
        .request::<OrderProto>(peer, OrderRequest::SubmitSealed(submit.clone()))
        .await
        .unwrap();
    assert_eq!(
        answer,
        OrderResponse::MissingBlobs {
            order_id: id,
            blobs: vec![never_sent]
        }
    );

    // A total that does not match the price list is a final rejection naming both.
    let mut wrong = sealed_order(
        &some_acquirer,
        OrderId::from_parts(5, 5),
        never_sent,
        14,
        &VISA_CREDIT,
    );
    wrong.total = Money::new(1, Currency::Jpy);
    let answer = kiosk
        .client
        .request::<OrderProto>(peer, OrderRequest::SubmitSealed(wrong))
        .await
        .unwrap();
    match answer {
        OrderResponse::Rejected { reason, .. } => assert!(
            reason.contains("JPY 1") && reason.contains("JPY 30"),
            "{reason}"
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_request_from_a_role_that_may_not_send_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let acquirer = start_role(config(
        &dir.path().join("a"),
        Role::Acquirer,
        &network,
        vec![],
    ))
    .await
    .unwrap();
    let kiosk = client_node(
        &dir.path().join("k"),
        &network,
        Role::Kiosk,
        addr(&acquirer).await,
    )
    .await;
    kiosk
        .client
        .wait_for_role(Role::Acquirer, Duration::from_secs(10))
        .await
        .unwrap();
    let answer = kiosk
        .client
        .request::<AuthProto>(
            acquirer.peer_id(),
            authorise(&acquirer_key(&acquirer), OrderId::from_parts(6, 6), 100),
        )
        .await;
    assert!(
        answer.is_err(),
        "a kiosk must not get an authorisation answered: {answer:?}"
    );
    let held: printmesh_nodes::store::Tree<printmesh_nodes::roles::acquirer::AuthRecord> =
        acquirer.db.tree("auths").unwrap();
    assert_eq!(held.len(), 0);
    // Nor does an acquirer take photos from a kiosk (only its intermediary does).
    let blob = kiosk.blobs.import_bytes(&random_bytes(1000)).await.unwrap();
    let mut control = kiosk.client.stream_control();
    let pushed = send_blob(&mut control, &kiosk.blobs, acquirer.peer_id(), blob).await;
    assert!(pushed.is_err(), "a blob pushed to an acquirer: {pushed:?}");
    assert!(acquirer.blobs.list().is_empty());
}

#[tokio::test]
async fn a_complete_but_unverified_partial_is_verified_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path(), Role::Lab).await;
    let mut control = sender.client.stream_control();

    // Every byte arrived before a crash, but was never committed.
    let good = random_bytes(300_000);
    let blob = sender.blobs.import_bytes(&good).await.unwrap();
    std::fs::write(
        dir.path().join("r/lab/blobs/partial").join(blob.to_hex()),
        &good,
    )
    .unwrap();
    let outcome = send_blob(&mut control, &sender.blobs, receiver.peer_id(), blob)
        .await
        .unwrap();
    assert!(outcome.already_had);
    assert_eq!(receiver.blobs.read(&blob).await.unwrap(), good);

    // A full-length partial with the wrong bytes is thrown away and sent again.
    let other = random_bytes(300_000);
    let blob = sender.blobs.import_bytes(&other).await.unwrap();
    std::fs::write(
        dir.path().join("r/lab/blobs/partial").join(blob.to_hex()),
        random_bytes(300_000),
    )
    .unwrap();
    let outcome = send_blob(&mut control, &sender.blobs, receiver.peer_id(), blob)
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.already_had,
            outcome.resumed_from,
            outcome.bytes_sent
        ),
        (false, 0, 300_000)
    );
    assert_eq!(receiver.blobs.read(&blob).await.unwrap(), other);
}

fn decline_code(r: &AuthResponse) -> String {
    match r {
        AuthResponse::DeclinedCard { code, .. } => code.iso8583().to_string(),
        AuthResponse::ApprovedCard { .. } => "approved".into(),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn the_acquirer_checks_card_types_pins_and_blocks_after_three_wrong() {
    use EntryMode::{Chip, Swipe};
    use PaymentMethod::{Credit, Debit, IcCard, PointCard};
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path(), Role::Acquirer).await;
    let peer = receiver.peer_id();
    let key = acquirer_key(&receiver);
    let n = std::sync::atomic::AtomicU64::new(100);
    let ask = |method, card: &Card, entry, pin: Option<&str>, amount| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let req = sealed(
            &key,
            OrderId::from_parts(i, u128::from(i)),
            amount,
            method,
            card,
            entry,
            pin,
        );
        let client = sender.client.clone();
        async move { decline_code(&client.request::<AuthProto>(peer, req).await.unwrap()) }
    };
    // Debit: the PIN is required and checked; the balance (20,000) is the limit.
    assert_eq!(
        ask(Debit, &VISA_DEBIT, Swipe, Some("5678"), 1000).await,
        "approved"
    );
    assert_eq!(ask(Debit, &VISA_DEBIT, Swipe, None, 1000).await, "55");
    assert_eq!(
        ask(Debit, &VISA_DEBIT, Swipe, Some("5678"), 19_001).await,
        "51"
    );
    // A card paid with the wrong method.
    assert_eq!(
        ask(Debit, &VISA_CREDIT, Swipe, Some("1234"), 100).await,
        "57"
    );
    assert_eq!(ask(Credit, &VISA_DEBIT, Swipe, None, 100).await, "57");
    // Credit: a PIN is optional, and checked when given.
    assert_eq!(
        ask(Credit, &VISA_CREDIT, Swipe, None, 100).await,
        "approved"
    );
    assert_eq!(
        ask(Credit, &VISA_CREDIT, Swipe, Some("1234"), 100).await,
        "approved"
    );
    // IC cards: inserted, with their PIN; a swiped IC payment is refused.
    assert_eq!(
        ask(IcCard, &JCB_IC, Chip, Some("2468"), 500).await,
        "approved"
    );
    assert_eq!(ask(IcCard, &JCB_IC, Swipe, Some("2468"), 500).await, "57");
    // Point cards pay in points (1 point = 1 yen here): 5,000 points.
    assert_eq!(
        ask(PointCard, &POINTS, Swipe, None, 4_000).await,
        "approved"
    );
    assert_eq!(ask(PointCard, &POINTS, Swipe, None, 1_001).await, "51");
    assert_eq!(card_state(&receiver, "0009")["held_minor"], 4_000);
    // A right PIN clears a wrong one; three wrong in a row block the card, even for
    // the right PIN afterwards.
    assert_eq!(
        ask(Debit, &VISA_DEBIT, Swipe, Some("1111"), 100).await,
        "55"
    );
    assert_eq!(
        ask(Debit, &VISA_DEBIT, Swipe, Some("5678"), 100).await,
        "approved"
    );
    for expected in ["55", "55", "75", "75"] {
        assert_eq!(
            ask(Debit, &VISA_DEBIT, Swipe, Some("0000"), 100).await,
            expected
        );
    }
    assert_eq!(
        ask(Debit, &VISA_DEBIT, Swipe, Some("5678"), 100).await,
        "75"
    );
    let debit = card_state(&receiver, "5556");
    assert_eq!(
        (debit["blocked"].as_bool(), debit["wrong_pins"].as_u64()),
        (Some(true), Some(3))
    );

    // Nothing of the cards is in the acquirer's files.
    receiver.shutdown().await;
    for file in walk(&dir.path().join("r")) {
        let bytes = std::fs::read(&file).unwrap();
        for secret in [VISA_CREDIT.0, VISA_DEBIT.0, POINTS.0, JCB_IC.0] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a PAN in {}",
                file.display()
            );
        }
    }
}

#[tokio::test]
async fn tampered_or_foreign_envelopes_and_unsealed_cards_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path(), Role::Acquirer).await;
    let peer = receiver.peer_id();
    let key = acquirer_key(&receiver);
    let ask = |req| sender.client.request::<AuthProto>(peer, req);
    // Sealed to another acquirer: not ours, nothing recorded.
    let (_, other) = SealSecret::generate(&mut rand::rngs::OsRng);
    let id = OrderId::from_parts(200, 1);
    let r = ask(authorise(&other, id, 100)).await.unwrap();
    assert_eq!(r, AuthResponse::NotMine { order_id: id });
    // The amount changed on the way: the envelope no longer opens (30).
    let AuthRequest::AuthoriseSealed(mut a) = authorise(&key, OrderId::from_parts(201, 1), 100)
    else {
        unreachable!()
    };
    a.amount = Money::new(100_000, Currency::Jpy);
    let r = ask(AuthRequest::AuthoriseSealed(a)).await.unwrap();
    assert!(
        matches!(
            r,
            AuthResponse::DeclinedCard {
                code: DeclineCode::FormatError,
                ..
            }
        ),
        "{r:?}"
    );
    // Unsealed card data is refused outright.
    let plain = AuthRequest::Authorise(Authorise {
        order_id: OrderId::from_parts(202, 1),
        amount: Money::new(100, Currency::Jpy),
        method: PaymentMethod::Credit,
        card: card_data(&VISA_CREDIT),
        store: "store-test".parse().unwrap(),
    });
    assert!(matches!(
        ask(plain).await.unwrap(),
        AuthResponse::Refused { .. }
    ));
    let auths: printmesh_nodes::store::Tree<printmesh_nodes::roles::acquirer::AuthRecord> =
        receiver.db.tree("auths").unwrap();
    assert_eq!(
        auths.len(),
        0,
        "an envelope that does not open leaves no record"
    );
}

#[tokio::test]
async fn holds_expire_and_a_capture_after_expiry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let mut cfg = config(&dir.path().join("r"), Role::Acquirer, &network, vec![]);
    if let Some(a) = cfg.acquirer.as_mut() {
        a.hold_ttl_secs = 1;
    }
    let receiver = start_role(cfg).await.unwrap();
    let sender = client_node(
        &dir.path().join("s"),
        &network,
        Role::Intermediary,
        addr(&receiver).await,
    )
    .await;
    sender
        .client
        .wait_for_role(Role::Acquirer, Duration::from_secs(10))
        .await
        .unwrap();
    let key = acquirer_key(&receiver);
    let peer = receiver.peer_id();
    let (held, captured) = (OrderId::from_parts(300, 1), OrderId::from_parts(301, 1));
    for id in [held, captured] {
        let r = sender
            .client
            .request::<AuthProto>(peer, authorise(&key, id, 250))
            .await
            .unwrap();
        assert!(matches!(r, AuthResponse::ApprovedCard { .. }));
    }
    let r = sender
        .client
        .request::<AuthProto>(peer, AuthRequest::Capture { order_id: captured })
        .await
        .unwrap();
    assert_eq!(r, AuthResponse::Captured { order_id: captured });
    assert_eq!(card_state(&receiver, "1111")["held_minor"], 250);
    // The sweeper releases the uncaptured hold after its second.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while card_state(&receiver, "1111")["held_minor"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hold never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(card_state(&receiver, "1111")["posted_minor"], 250);
    let r = sender
        .client
        .request::<AuthProto>(peer, AuthRequest::Capture { order_id: held })
        .await
        .unwrap();
    assert!(
        matches!(r, AuthResponse::HoldClosed { ref reason, .. } if reason.contains("expired")),
        "{r:?}"
    );
    let all = printmesh_nodes::roles::acquirer::inspect(&receiver.db).unwrap();
    assert_eq!(all["ledger_balanced"], true);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.is_file() {
            // Files only: the admin socket is not one.
            out.push(p);
        }
    }
    out
}

/// Counter mode on a real kiosk node: its orders with their state from the order
/// events it holds; only a delivered order can be handed over, and the hand-over is a
/// signed event of the kiosk's own.
#[tokio::test]
async fn the_counter_hands_over_only_delivered_orders() {
    use printmesh_nodes::roles::kiosk::draft_from_card;
    use printmesh_nodes::roles::kiosk::pinpad::PinPad;
    use printmesh_protocol::messages::{EventKind, OrderEvent};
    use printmesh_protocol::order::OrderState;

    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    // The acquirer's published key (no acquirer runs: the orders wait in the outbox).
    let (secret, key) = SealSecret::generate(&mut rand::rngs::OsRng);
    std::fs::create_dir_all(dir.path().join("acquirer")).unwrap();
    std::fs::write(dir.path().join("acquirer/seal.pub"), key.to_hex()).unwrap();
    let (node, kiosk) =
        printmesh_nodes::node::start_kiosk(config(dir.path(), Role::Kiosk, &network, vec![]))
            .await
            .unwrap();
    let card = CardData {
        pan: "4111111111111111".parse().unwrap(),
        expiry: Expiry::new(2030, 12).unwrap(),
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut draft = draft_from_card(
            &fixtures().join("memory-card"),
            PrintSize::L,
            PaymentMethod::Debit,
            card.clone(),
        )
        .unwrap();
        let mut pad = PinPad::default();
        "1234".chars().for_each(|c| {
            pad.push(c);
        });
        draft.pin = Some(pad.take_pin().unwrap());
        ids.push(kiosk.place_order(draft).await.unwrap());
    }
    // No intermediary: both wait in the outbox, and the counter lists them.
    let rows = kiosk.counter_rows().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.prints == 3 && r.card_last4 == "1111"));

    // The first order's afterlife arrives as events from the network.
    let origin = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
        .to_bytes();
    let kinds = [
        EventKind::Submitted {
            store: "store-test".parse().unwrap(),
            total: Money::new(90, Currency::Jpy),
        },
        EventKind::Authorised {
            auth_code: "7UCEPP".to_string().try_into().unwrap(),
        },
        EventKind::Accepted {
            delivery_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
            lab: "Lab".into(),
        },
        EventKind::Printed,
        EventKind::Shipped,
        EventKind::Delivered,
    ];
    for (seq, kind) in kinds.into_iter().enumerate() {
        node.events
            .record(&OrderEvent {
                origin: origin.clone(),
                seq: seq as u64 + 1,
                order_id: ids[0],
                at_ms: 1_000 + seq as i64,
                kind,
            })
            .unwrap();
    }
    let rows = kiosk.counter_rows().unwrap();
    let state = |id| rows.iter().find(|r| r.order_id == id).unwrap().state;
    assert_eq!(state(ids[0]), OrderState::Delivered);

    let refused = kiosk.mark_collected(ids[1]).await.unwrap_err().to_string();
    assert!(refused.contains("not delivered"), "{refused}");
    kiosk.mark_collected(ids[0]).await.unwrap();
    assert_eq!(node.events.state_of(ids[0]).unwrap(), OrderState::Collected);
    let mine = node
        .events
        .events_for(ids[0])
        .unwrap()
        .into_iter()
        .find(|e| e.kind == EventKind::Collected)
        .unwrap();
    assert_eq!(mine.origin, node.peer_id().to_bytes());
    node.shutdown().await;
    // The outbox holds the cards sealed, without their PINs: every stored envelope
    // opens for the acquirer, and none carries a PIN.
    let outbox: printmesh_nodes::store::Tree<OrderRequest> = node.db.tree("outbox").unwrap();
    assert_eq!(outbox.len(), 2);
    for (_, request) in outbox.entries().map(Result::unwrap) {
        let OrderRequest::SubmitSealed(order) = request else {
            panic!("an unsealed order in the outbox")
        };
        let binding = Binding {
            order_id: order.order_id,
            amount: order.total,
            store: order.store.clone(),
            method: order.method,
        };
        let opened = open_card(&secret, &binding, &order.card).unwrap();
        assert!(matches!(opened.pin, PinEntry::None), "a PIN was stored");
    }
    for file in walk(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(16).any(|w| w == b"4111111111111111"),
            "a PAN in {}",
            file.display()
        );
    }
}

/// [`sealed_order`], submitted.
fn order_of(
    key: &SealKey,
    order_id: OrderId,
    blob: BlobId,
    blob_len: u64,
    card: &Card,
) -> OrderRequest {
    OrderRequest::SubmitSealed(sealed_order(key, order_id, blob, blob_len, card))
}

/// A sealed order for `order_id` of one L print of `blob` (JPY 30), with `card`
/// sealed to `key`, as a kiosk of "store-test" sends it.
fn sealed_order(
    key: &SealKey,
    order_id: OrderId,
    blob: BlobId,
    blob_len: u64,
    card: &Card,
) -> SealedOrder {
    let total = Money::new(30, Currency::Jpy);
    let store: printmesh_protocol::StoreId = "store-test".parse().unwrap();
    let binding = Binding {
        order_id,
        amount: total,
        store: store.clone(),
        method: PaymentMethod::Credit,
    };
    let card = seal_card(
        key,
        &binding,
        &card_data(card),
        EntryMode::Swipe,
        None,
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    SealedOrder {
        order_id,
        store,
        placed_at_ms: 0,
        lines: vec![OrderLine {
            blob,
            blob_len,
            file_name: "PMSH0001.JPG".into(),
            size: PrintSize::L,
            quantity: 1,
            fit: Default::default(),
        }],
        total,
        method: PaymentMethod::Credit,
        card,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_that_floods_is_cut_off_and_every_honest_order_completes() {
    use futures::StreamExt;

    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let acquirer = start_role(config(
        &dir.path().join("a"),
        Role::Acquirer,
        &network,
        vec![],
    ))
    .await
    .unwrap();
    let lab = start_role(config(&dir.path().join("l"), Role::Lab, &network, vec![]))
        .await
        .unwrap();
    let intermediary = start_role(config(
        &dir.path().join("i"),
        Role::Intermediary,
        &network,
        vec![addr(&acquirer).await, addr(&lab).await],
    ))
    .await
    .unwrap();
    for role in [Role::Acquirer, Role::Lab] {
        intermediary
            .client
            .wait_for_role(role, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let im_addr = addr(&intermediary).await;
    let honest = client_node(
        &dir.path().join("k"),
        &network,
        Role::Kiosk,
        im_addr.clone(),
    )
    .await;
    let flooder = client_node(&dir.path().join("f"), &network, Role::Kiosk, im_addr).await;
    let im = honest
        .client
        .wait_for_role(Role::Intermediary, Duration::from_secs(10))
        .await
        .unwrap()
        .peer;
    flooder
        .client
        .wait_for_role(Role::Intermediary, Duration::from_secs(10))
        .await
        .unwrap();
    let key = acquirer_key(&acquirer);
    let photo = std::fs::read(fixtures().join("memory-card/DCIM/100PMESH/PMSH0001.JPG")).unwrap();
    let blob = honest.blobs.import_bytes(&photo).await.unwrap();
    let mut control = honest.client.stream_control();
    send_blob(&mut control, &honest.blobs, im, blob)
        .await
        .unwrap();

    // The flood: thousands of orders, 64 in flight at a time, naming a photo the
    // intermediary never got (each is real work for it: a lookup and an answer).
    let flood = {
        let client = flooder.client.clone();

        tokio::spawn(async move {
            let never_sent = BlobId::of(b"never sent");
            let answers: Vec<bool> = futures::stream::iter(0..3_000u64)
                .map(|i| {
                    let client = client.clone();
                    let request = order_of(
                        &key,
                        OrderId::from_parts(9, u128::from(i)),
                        never_sent,
                        10,
                        &VISA_CREDIT,
                    );
                    async move { client.request::<OrderProto>(im, request).await.is_ok() }
                })
                .buffer_unordered(64)
                .collect()
                .await;
            answers.iter().filter(|ok| **ok).count()
        })
    };
    // Meanwhile the honest kiosk's customers pay and get a delivery date.
    for i in 0..5u64 {
        let order_id = OrderId::from_parts(1_000 + i, u128::from(i));
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            honest.client.request::<OrderProto>(
                im,
                order_of(&key, order_id, blob, photo.len() as u64, &VISA_CREDIT),
            ),
        )
        .await
        .expect("an honest order is answered in time")
        .unwrap();
        assert!(
            matches!(answer, OrderResponse::Accepted(_)),
            "honest order {i}: {answer:?}"
        );
    }
    let answered = flood.await.unwrap();
    assert!(
        answered < 1_000,
        "the flooder had {answered} of 3000 requests answered"
    );
    // Cut off: disconnected, and not let back in while its time runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        intermediary.client.connections_to(flooder.peer_id()).await,
        0,
        "the flooder is disconnected"
    );
    let again = flooder
        .client
        .request::<OrderProto>(
            im,
            order_of(&key, OrderId::from_parts(9, 9_999), blob, 10, &VISA_CREDIT),
        )
        .await;
    assert!(again.is_err(), "the flooder is refused: {again:?}");
    // And the honest kiosk is still served.
    let answer = honest
        .client
        .request::<OrderProto>(
            im,
            order_of(
                &key,
                OrderId::from_parts(2_000, 1),
                blob,
                photo.len() as u64,
                &VISA_CREDIT,
            ),
        )
        .await
        .unwrap();
    assert!(matches!(answer, OrderResponse::Accepted(_)), "{answer:?}");
}

#[tokio::test]
async fn a_kiosk_submits_its_own_stores_orders_only() {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let (intermediary, ours, im) = intermediary_and_kiosk(dir.path(), &network).await;
    let mut cfg = config(
        &dir.path().join("o"),
        Role::Kiosk,
        &network,
        vec![addr(&intermediary).await],
    );
    if let Some(k) = cfg.kiosk.as_mut() {
        k.store = "store-other".parse().unwrap();
    }
    let (theirs, mut rx) = start(cfg.common()).await.unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    theirs
        .client
        .wait_for_role(Role::Intermediary, Duration::from_secs(10))
        .await
        .unwrap();
    let (_, some_acquirer) = SealSecret::generate(&mut rand::rngs::OsRng);
    let blob = BlobId::of(b"photo");
    let reason = |answer: OrderResponse| match answer {
        OrderResponse::Rejected { reason, .. } => reason,
        other => panic!("expected a rejection, got {other:?}"),
    };

    // store-test's order, with a total off the price list: answered and kept.
    let order_id = OrderId::from_parts(7, 7);
    let mut order = sealed_order(&some_acquirer, order_id, blob, 10, &VISA_CREDIT);
    order.total = Money::new(1, Currency::Jpy);
    let first = ours
        .client
        .request::<OrderProto>(im, OrderRequest::SubmitSealed(order.clone()))
        .await
        .unwrap();
    assert!(reason(first).contains("price list"));

    // Another store's kiosk may not submit it as store-test's...
    let answer = theirs
        .client
        .request::<OrderProto>(im, OrderRequest::SubmitSealed(order.clone()))
        .await
        .unwrap();
    assert!(
        reason(answer.clone()).contains("belongs to store store-other"),
        "{answer:?}"
    );
    // ...nor, under its own store, hear the answer store-test's order got.
    order.store = "store-other".parse().unwrap();
    let answer = theirs
        .client
        .request::<OrderProto>(im, OrderRequest::SubmitSealed(order))
        .await
        .unwrap();
    assert!(
        reason(answer.clone()).contains("another store"),
        "{answer:?}"
    );
    let state = printmesh_nodes::roles::intermediary::inspect(&intermediary.db).unwrap();
    assert!(
        !state.to_string().contains("store-other"),
        "nothing of the other store's attempts is kept: {state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_keeps_the_events_of_its_own_orders_only() {
    use printmesh_nodes::roles::kiosk::draft_from_card;
    use printmesh_protocol::messages::EventKind;

    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let (_, key) = SealSecret::generate(&mut rand::rngs::OsRng);
    std::fs::create_dir_all(dir.path().join("acquirer")).unwrap();
    std::fs::write(dir.path().join("acquirer/seal.pub"), key.to_hex()).unwrap();
    // A lab's node, whose events the kiosk hears by gossip.
    let (lab, mut rx) = start(config(&dir.path().join("l"), Role::Lab, &network, vec![]).common())
        .await
        .unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (node, kiosk) = printmesh_nodes::node::start_kiosk(config(
        dir.path(),
        Role::Kiosk,
        &network,
        vec![addr(&lab).await],
    ))
    .await
    .unwrap();
    node.client
        .wait_for_role(Role::Lab, Duration::from_secs(10))
        .await
        .unwrap();
    let card = CardData {
        pan: "4111111111111111".parse().unwrap(),
        expiry: Expiry::new(2030, 12).unwrap(),
    };
    let draft = draft_from_card(
        &fixtures().join("memory-card"),
        PrintSize::L,
        PaymentMethod::Credit,
        card,
    )
    .unwrap();
    let ours = kiosk.place_order(draft).await.unwrap();
    // Let gossipsub take the kiosk into the lab's mesh.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let theirs = OrderId::from_parts(8, 8);
    lab.emit(theirs, EventKind::Printed).await;
    lab.emit(ours, EventKind::Printed).await;
    let mut arrived = false;
    for _ in 0..50 {
        if !node.events.events_for(ours).unwrap().is_empty() {
            arrived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(arrived, "the kiosk keeps its own order's event");
    assert!(
        node.events.events_for(theirs).unwrap().is_empty(),
        "another store's order's event is not kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_with_a_morning_of_orders_in_its_outbox_is_not_taken_for_a_flood() {
    use printmesh_nodes::roles::kiosk::draft_from_card;

    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let acquirer = start_role(config(dir.path(), Role::Acquirer, &network, vec![]))
        .await
        .unwrap();
    // A tight budget for kiosks (the kiosk's pace must fit any sane one).
    let mut c = config(
        dir.path(),
        Role::Intermediary,
        &network,
        vec![addr(&acquirer).await],
    );
    c.limits.kiosk_requests_per_sec = 10.0;
    c.limits.kiosk_request_burst = 30.0;
    let intermediary = start_role(c).await.unwrap();
    intermediary
        .client
        .wait_for_role(Role::Acquirer, Duration::from_secs(10))
        .await
        .unwrap();
    // The kiosk sells while its uplink is down: 150 orders wait in its outbox, each
    // on a card over its limit (the acquirer's decline is a final answer).
    let (node, kiosk) =
        printmesh_nodes::node::start_kiosk(config(dir.path(), Role::Kiosk, &network, vec![]))
            .await
            .unwrap();
    let card = CardData {
        pan: "5555555555554444".parse().unwrap(),
        expiry: Expiry::new(2029, 12).unwrap(),
    };
    for _ in 0..150 {
        let draft = draft_from_card(
            &fixtures().join("memory-card"),
            PrintSize::L,
            PaymentMethod::Credit,
            card.clone(),
        )
        .unwrap();
        kiosk.place_order(draft).await.unwrap();
    }
    assert_eq!(kiosk.outbox_len(), 150);
    // The uplink comes back: the backlog drains at the kiosk's pace, every order is
    // answered, and the intermediary never takes the kiosk for a flooder.
    node.client
        .dial(addr(&intermediary).await.parse().unwrap())
        .await
        .unwrap();
    let mut drained = false;
    for _ in 0..120 {
        if kiosk.outbox_len() == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(drained, "{} orders still in the outbox", kiosk.outbox_len());
    assert!(
        intermediary
            .client
            .peers()
            .await
            .iter()
            .any(|p| p.peer == node.peer_id()),
        "the kiosk is still served"
    );
}

/// Polls `check` every 100 ms for up to `secs` seconds; whether it came true.
async fn within(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_away_catches_up_on_the_events_it_missed() {
    use printmesh_nodes::sync::SyncCursor;
    use printmesh_protocol::messages::EventKind;

    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    // A lab's node works while nobody is there to hear it: 300 events, more than one
    // page of a sync answer, gossiped to no one.
    let (lab, mut rx) = start(config(&dir.path().join("l"), Role::Lab, &network, vec![]).common())
        .await
        .unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let orders: Vec<OrderId> = (0..300u128).map(|i| OrderId::from_parts(9, i)).collect();
    for order in &orders {
        lab.emit(*order, EventKind::Printed).await;
    }
    // The intermediary comes up afterwards: it asks the lab what it missed.
    let intermediary = start_role(config(
        dir.path(),
        Role::Intermediary,
        &network,
        vec![addr(&lab).await],
    ))
    .await
    .unwrap();
    let caught_up = within(20, || {
        orders
            .iter()
            .all(|o| !intermediary.events.events_for(*o).unwrap().is_empty())
    })
    .await;
    assert!(
        caught_up,
        "{} of 300 events reached the intermediary",
        intermediary.events.len()
    );
    // Each exactly once, with the lab's signature (stored to be passed on in turn).
    assert_eq!(intermediary.events.len(), 300);
    let page = intermediary
        .events
        .page(0, u64::MAX, 1000, 1 << 24, 1000, |_, _| true)
        .unwrap();
    assert_eq!(page.frames.len(), 300);
    let origin = lab.peer_id().to_bytes();
    for frame in &page.frames {
        assert_eq!(
            printmesh_nodes::events::verify_event(frame).unwrap().origin,
            origin
        );
    }
    // Where it has read the lab's log up to is kept, for the next time.
    let cursors: printmesh_nodes::store::Tree<SyncCursor> =
        intermediary.db.tree("sync_cursors").unwrap();
    let cursor = cursors.get(lab.peer_id().to_bytes()).unwrap().unwrap();
    assert_eq!((cursor.log, cursor.after), (lab.events.log_id(), 300));
    intermediary.shutdown().await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_catches_up_on_its_own_stores_orders_only() {
    use printmesh_nodes::net::SyncProto;
    use printmesh_nodes::roles::kiosk::draft_from_card;
    use printmesh_protocol::messages::{EventKind, SyncRequest, SyncResponse};
    use printmesh_protocol::order::OrderState;

    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let (_, key) = SealSecret::generate(&mut rand::rngs::OsRng);
    std::fs::create_dir_all(dir.path().join("acquirer")).unwrap();
    std::fs::write(dir.path().join("acquirer/seal.pub"), key.to_hex()).unwrap();
    // The store sells while its uplink is down.
    let (node, kiosk) =
        printmesh_nodes::node::start_kiosk(config(dir.path(), Role::Kiosk, &network, vec![]))
            .await
            .unwrap();
    let card = CardData {
        pan: "4111111111111111".parse().unwrap(),
        expiry: Expiry::new(2030, 12).unwrap(),
    };
    let draft = draft_from_card(
        &fixtures().join("memory-card"),
        PrintSize::L,
        PaymentMethod::Credit,
        card,
    )
    .unwrap();
    let ours = kiosk.place_order(draft).await.unwrap();
    // Meanwhile the network goes on: a node that heard it all (it stands for the
    // intermediary, the lab and the courier) has this order delivered, and another
    // store's.
    let (hub, mut rx) = start(config(
        &dir.path().join("hub"),
        Role::Intermediary,
        &network,
        vec![],
    ))
    .await
    .unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let theirs = OrderId::from_parts(7, 7);
    for (order, store) in [(ours, "store-test"), (theirs, "store-other")] {
        hub.emit(
            order,
            EventKind::Submitted {
                store: store.parse().unwrap(),
                total: Money::new(90, Currency::Jpy),
            },
        )
        .await;
        for kind in [
            EventKind::Authorised {
                auth_code: "7UCEPP".to_string().try_into().unwrap(),
            },
            EventKind::Accepted {
                delivery_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
                lab: "Lab".into(),
            },
            EventKind::Printed,
            EventKind::Shipped,
            EventKind::Delivered,
        ] {
            hub.emit(order, kind).await;
        }
    }
    // The uplink is back: the counter knows the prints are in the store.
    node.client
        .dial(addr(&hub).await.parse().unwrap())
        .await
        .unwrap();
    let delivered = within(20, || {
        kiosk
            .counter_rows()
            .unwrap()
            .iter()
            .any(|r| r.order_id == ours && r.state == OrderState::Delivered)
    })
    .await;
    assert!(delivered, "the counter sees the order delivered");
    assert_eq!(node.events.events_for(ours).unwrap().len(), 6);
    assert!(
        node.events.events_for(theirs).unwrap().is_empty(),
        "another store's order is not the kiosk's business"
    );

    // On the wire: a kiosk is shown its store's orders' events, a lab all of them.
    let kiosk_peer = client_node(
        &dir.path().join("k2"),
        &network,
        Role::Kiosk,
        addr(&hub).await,
    )
    .await;
    let lab_peer = client_node(
        &dir.path().join("l2"),
        &network,
        Role::Lab,
        addr(&hub).await,
    )
    .await;
    for (asker, role, expected) in [(&kiosk_peer, Role::Kiosk, 6), (&lab_peer, Role::Lab, 12)] {
        asker
            .client
            .wait_for_role(Role::Intermediary, Duration::from_secs(10))
            .await
            .unwrap();
        let answer = asker
            .client
            .request::<SyncProto>(hub.peer_id(), SyncRequest::Since { log: 0, after: 0 })
            .await
            .unwrap();
        let SyncResponse::Events { frames, .. } = answer else {
            panic!("{answer:?}")
        };
        let orders: Vec<OrderId> = frames
            .iter()
            .map(|f| printmesh_nodes::events::verify_event(f).unwrap().order_id)
            .collect();
        assert_eq!(orders.len(), expected, "{role}");
        if role == Role::Kiosk {
            assert!(orders.iter().all(|o| *o == ours));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_events_a_peer_passes_on_in_a_sync_are_refused() {
    use printmesh_nodes::events::sign_event;
    use printmesh_protocol::messages::{EventKind, OrderEvent};

    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let (lab, mut rx) = start(config(&dir.path().join("l"), Role::Lab, &network, vec![]).common())
        .await
        .unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let lab_key = printmesh_nodes::node::identity(&dir.path().join("l").join("lab")).unwrap();
    let order = OrderId::from_parts(4, 4);
    let event = |seq, kind| OrderEvent {
        origin: lab.peer_id().to_bytes(),
        seq,
        order_id: order,
        at_ms: 1,
        kind,
    };
    // A good one; one whose signature is broken; one signed by somebody else in the
    // lab's name. The lab's log holds all three as if it had heard them.
    let good = event(1, EventKind::Printed);
    let frame = |e: &OrderEvent, key: &libp2p::identity::Keypair| {
        encode_frame(&sign_event(key, e).unwrap(), proto::EVENT_MAX_BYTES).unwrap()
    };
    lab.events
        .record_signed(&good, &frame(&good, &lab_key))
        .unwrap();
    let broken = event(2, EventKind::Shipped);
    let mut signed = sign_event(&lab_key, &broken).unwrap();
    signed.signature[0] ^= 1;
    lab.events
        .record_signed(
            &broken,
            &encode_frame(&signed, proto::EVENT_MAX_BYTES).unwrap(),
        )
        .unwrap();
    let impostor = event(3, EventKind::Shipped);
    let other = libp2p::identity::Keypair::generate_ed25519();
    lab.events
        .record_signed(&impostor, &frame(&impostor, &other))
        .unwrap();

    let intermediary = start_role(config(
        dir.path(),
        Role::Intermediary,
        &network,
        vec![addr(&lab).await],
    ))
    .await
    .unwrap();
    assert!(
        within(20, || !intermediary
            .events
            .events_for(order)
            .unwrap()
            .is_empty())
        .await,
        "the good event arrives"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        intermediary.events.events_for(order).unwrap(),
        vec![good],
        "only the event whose signature is its origin's is kept"
    );
    // The lab is still a peer: it asked nothing, it was asked.
    assert!(intermediary
        .client
        .peers()
        .await
        .iter()
        .any(|p| p.peer == lab.peer_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosks_backlog_comes_by_sync_at_its_budgets_pace_and_whole() {
    use printmesh_nodes::events::sign_event;
    use printmesh_protocol::messages::{EventKind, OrderEvent};

    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    // A lab's node holds 300 of one kiosk's events (its customers collecting): more
    // than a kiosk may send at once (burst 100, then 20 a second).
    let (lab, mut rx) = start(config(&dir.path().join("l"), Role::Lab, &network, vec![]).common())
        .await
        .unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let kiosk = libp2p::identity::Keypair::generate_ed25519();
    for seq in 1..=300u64 {
        let event = OrderEvent {
            origin: kiosk.public().to_peer_id().to_bytes(),
            seq,
            order_id: OrderId::from_parts(3, u128::from(seq)),
            at_ms: 1,
            kind: EventKind::Collected,
        };
        let frame =
            encode_frame(&sign_event(&kiosk, &event).unwrap(), proto::EVENT_MAX_BYTES).unwrap();
        lab.events.record_signed(&event, &frame).unwrap();
    }
    let started = std::time::Instant::now();
    let intermediary = start_role(config(
        dir.path(),
        Role::Intermediary,
        &network,
        vec![addr(&lab).await],
    ))
    .await
    .unwrap();
    assert!(within(10, || intermediary.events.len() >= 100).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // However slow this machine: a burst of 100, then 20 a second since the start.
    let early = intermediary.events.len();
    let allowed = 100.0 + 20.0 * started.elapsed().as_secs_f64() + 5.0;
    assert!(
        (early as f64) <= allowed,
        "{early} of the kiosk's 300 events taken within {allowed:.0}: over its budget"
    );
    assert!(
        within(30, || intermediary.events.len() == 300).await,
        "{} of 300: a backlog is paced, not dropped",
        intermediary.events.len()
    );
}

/// The order's anchor at the acquirer (auth/2): one lab binding per order, moved only
/// from the lab that refused it and never back; a capture by a second intermediary is
/// refused (it would bill twice); a hold is extended no further than its last day; a
/// reversal that overtakes its authorisation makes the authorisation decline.
#[tokio::test]
async fn the_acquirer_binds_one_lab_captures_once_extends_within_bounds_and_keeps_reversals() {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let mut cfg = config(&dir.path().join("a"), Role::Acquirer, &network, vec![]);
    if let Some(a) = cfg.acquirer.as_mut() {
        a.hold_ttl_secs = 60;
        a.hold_max_secs = 90;
    }
    let acquirer = start_role(cfg).await.unwrap();
    let mut ims = Vec::new();
    for name in ["i1", "i2"] {
        let im = client_node(
            &dir.path().join(name),
            &network,
            Role::Intermediary,
            addr(&acquirer).await,
        )
        .await;
        im.client
            .wait_for_role(Role::Acquirer, Duration::from_secs(10))
            .await
            .unwrap();
        ims.push(im);
    }
    let (i1, i2) = (&ims[0].client, &ims[1].client);
    let key = acquirer_key(&acquirer);
    let peer = acquirer.peer_id();
    let id = OrderId::from_parts(700, 1);
    let r = i1
        .request::<AuthProto>(peer, authorise(&key, id, 250))
        .await
        .unwrap();
    assert!(matches!(r, AuthResponse::ApprovedCard { .. }), "{r:?}");
    let bind = |lab: &[u8], replacing: Option<&[u8]>| AuthRequest::BindLab {
        order_id: id,
        lab: lab.to_vec(),
        lab_name: format!("lab {}", lab[0]),
        replacing: replacing.map(<[u8]>::to_vec),
    };
    let bound = |r: AuthResponse| match r {
        AuthResponse::LabBound { lab, terms, .. } => (lab, terms),
        other => panic!("{other:?}"),
    };
    let (l1, l2, l3) = ([1u8], [2u8], [3u8]);
    let (lab, terms) = bound(
        i1.request::<AuthProto>(peer, bind(&l1, None))
            .await
            .unwrap(),
    );
    assert_eq!(lab, l1);
    assert!(
        terms.pay_by_ms - terms.expires_at_ms <= 30_000 + 1000,
        "{terms:?}"
    );
    // Another intermediary asking for another lab hears the first binding.
    let (lab, _) = bound(
        i2.request::<AuthProto>(peer, bind(&l2, None))
            .await
            .unwrap(),
    );
    assert_eq!(lab, l1);
    // Replacing a lab that is not the bound one changes nothing.
    let (lab, _) = bound(
        i2.request::<AuthProto>(peer, bind(&l2, Some(&l3)))
            .await
            .unwrap(),
    );
    assert_eq!(lab, l1);
    // L1 refused it: it moves to L2, and never back to L1.
    let (lab, _) = bound(
        i2.request::<AuthProto>(peer, bind(&l2, Some(&l1)))
            .await
            .unwrap(),
    );
    assert_eq!(lab, l2);
    let (lab, _) = bound(
        i1.request::<AuthProto>(peer, bind(&l1, Some(&l2)))
            .await
            .unwrap(),
    );
    assert_eq!(lab, l2, "never back to a lab that refused it");
    // Extended, but not past the hold's last day.
    let r = i1
        .request::<AuthProto>(peer, AuthRequest::Extend { order_id: id })
        .await
        .unwrap();
    let AuthResponse::Extended {
        terms: extended, ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert!(extended.expires_at_ms >= terms.expires_at_ms);
    assert!(extended.expires_at_ms <= extended.pay_by_ms);
    // Captured by I2 (it bills it); I1's capture is refused, not counted twice.
    let r = i2
        .request::<AuthProto>(peer, AuthRequest::Capture { order_id: id })
        .await
        .unwrap();
    assert_eq!(r, AuthResponse::Captured { order_id: id });
    let r = i1
        .request::<AuthProto>(peer, AuthRequest::Capture { order_id: id })
        .await
        .unwrap();
    assert!(
        matches!(&r, AuthResponse::HoldClosed { reason, .. } if reason == printmesh_protocol::wire::auth::CAPTURED_ELSEWHERE),
        "{r:?}"
    );
    let r = i2
        .request::<AuthProto>(peer, AuthRequest::Capture { order_id: id })
        .await
        .unwrap();
    assert_eq!(
        r,
        AuthResponse::Captured { order_id: id },
        "the capturer's retry"
    );

    // A reversal before its authorisation: the authorisation, when it comes, declines.
    let late = OrderId::from_parts(701, 1);
    let r = i1
        .request::<AuthProto>(peer, AuthRequest::Void { order_id: late })
        .await
        .unwrap();
    assert_eq!(r, AuthResponse::Voided { order_id: late });
    let r = i2
        .request::<AuthProto>(peer, authorise(&key, late, 250))
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            AuthResponse::DeclinedCard {
                code: DeclineCode::DoNotHonour,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(card_state(&acquirer, "1111")["held_minor"], 0);
    // A keyed reversal: another key's acquirer keeps nothing (NotMine); this one's
    // keeps the tombstone.
    let keyed = OrderId::from_parts(702, 1);
    let other_key = printmesh_protocol::seal::KeyId([9; 8]);
    let r = i1
        .request::<AuthProto>(
            peer,
            AuthRequest::VoidFor {
                order_id: keyed,
                key: other_key,
            },
        )
        .await
        .unwrap();
    assert_eq!(r, AuthResponse::NotMine { order_id: keyed });
    let r = i2
        .request::<AuthProto>(peer, authorise(&key, keyed, 250))
        .await
        .unwrap();
    assert!(
        matches!(r, AuthResponse::ApprovedCard { .. }),
        "no tombstone: {r:?}"
    );
    let r = i1
        .request::<AuthProto>(
            peer,
            AuthRequest::VoidFor {
                order_id: keyed,
                key: key.id(),
            },
        )
        .await
        .unwrap();
    assert_eq!(r, AuthResponse::Voided { order_id: keyed });
    // Once a lab is bound, a cancel does not release the hold; the lab's refusal does.
    let bound = OrderId::from_parts(703, 1);
    let r = i1
        .request::<AuthProto>(peer, authorise(&key, bound, 250))
        .await
        .unwrap();
    assert!(matches!(r, AuthResponse::ApprovedCard { .. }), "{r:?}");
    let lab = vec![4u8];
    let r = i1
        .request::<AuthProto>(
            peer,
            AuthRequest::BindLab {
                order_id: bound,
                lab: lab.clone(),
                lab_name: "lab 4".into(),
                replacing: None,
            },
        )
        .await
        .unwrap();
    assert!(matches!(r, AuthResponse::LabBound { .. }), "{r:?}");
    let r = i2
        .request::<AuthProto>(peer, AuthRequest::Void { order_id: bound })
        .await
        .unwrap();
    assert!(
        matches!(&r, AuthResponse::HoldClosed { reason, .. } if reason == printmesh_protocol::wire::auth::LAB_HAS_IT),
        "{r:?}"
    );
    let r = i2
        .request::<AuthProto>(
            peer,
            AuthRequest::VoidRefused {
                order_id: bound,
                lab,
            },
        )
        .await
        .unwrap();
    assert_eq!(r, AuthResponse::Voided { order_id: bound });
    let all = printmesh_nodes::roles::acquirer::inspect(&acquirer.db).unwrap();
    assert_eq!(all["ledger_balanced"], true);
}

/// `Status`: the kiosk counts as offline when its intermediary cannot reach an acquirer.
#[tokio::test]
async fn an_intermediary_says_whether_it_can_have_a_card_authorised() {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let (_intermediary, kiosk, im) = intermediary_and_kiosk(dir.path(), &network).await;
    let r = kiosk
        .client
        .request::<OrderProto>(im, OrderRequest::Status)
        .await
        .unwrap();
    assert_eq!(
        r,
        OrderResponse::Status {
            can_authorise: false
        }
    );
}
