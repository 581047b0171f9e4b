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
use printmesh_nodes::net::{AuthProto, OrderProto};
use printmesh_nodes::node::{start, start_role, Node};
use printmesh_protocol::card::{CardData, Expiry};
use printmesh_protocol::codec::encode_frame;
use printmesh_protocol::messages::{
    proto, AuthRequest, AuthResponse, Authorise, DeclineCode, OrderLine, OrderRequest,
    OrderResponse, PaymentMethod, Role, SubmitOrder,
};
use printmesh_protocol::money::{Currency, Money};
use printmesh_protocol::pricing::PrintSize;
use printmesh_protocol::{BlobId, OrderId};
use rand::RngCore;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn config(dir: &Path, role: Role, network: &str, peers: Vec<String>) -> NodeConfig {
    let fx = fixtures();
    NodeConfig {
        role,
        name: format!("test {role}"),
        network: network.into(),
        data_dir: dir.join(role.name()),
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        peers,
        mdns: false,
        kiosk: (role == Role::Kiosk).then(|| KioskConfig {
            media_dir: Some(fx.join("memory-card")),
            cards: Some(fx.join("cards.toml")),
            pin_key: Some(fx.join("demo/pin.key")),
            ..KioskConfig::new(
                "store-test".parse().unwrap(),
                "Test",
                fx.join("demo/prices.toml"),
            )
        }),
        intermediary: (role == Role::Intermediary).then(|| IntermediaryConfig {
            prices: fx.join("demo/prices.toml"),
        }),
        acquirer: (role == Role::Acquirer).then(|| AcquirerConfig {
            cards: fx.join("cards.toml"),
            pin_key: Some(fx.join("demo/pin.key")),
        }),
        lab: None,
    }
}

async fn addr(node: &Node) -> String {
    node.addresses().await[0].to_string()
}

/// A bare node (no role running) announcing `role`, connected to `peer_addr`, used as a
/// test client.
async fn client_node(dir: &Path, network: &str, role: Role, peer_addr: String) -> Node {
    let (node, mut rx) = start(config(dir, role, network, vec![peer_addr]))
        .await
        .unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    node
}

async fn two_nodes(dir: &Path) -> (Node, Node) {
    let network = format!("net-{}", rand::random::<u32>());
    let receiver = start_role(config(&dir.join("r"), Role::Acquirer, &network, vec![]))
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
        .wait_for_role(Role::Acquirer, Duration::from_secs(10))
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
async fn a_blob_arrives_verified_and_is_not_sent_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path()).await;
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
    let (sender, receiver) = two_nodes(dir.path()).await;
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
    let (sender, receiver) = two_nodes(dir.path()).await;
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

fn authorise(order_id: OrderId, amount: i64) -> AuthRequest {
    AuthRequest::Authorise(Authorise {
        order_id,
        amount: Money::new(amount, Currency::Jpy),
        method: PaymentMethod::Credit,
        card: CardData {
            pan: "4111111111111111".parse().unwrap(),
            expiry: Expiry::new(2030, 12).unwrap(),
        },
        store: "store-test".parse().unwrap(),
    })
}

#[tokio::test]
async fn hostile_frames_get_errors_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path()).await;
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
    let mut frame = encode_frame(
        &authorise(OrderId::from_parts(1, 1), 10),
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
        .request::<AuthProto>(receiver.peer_id(), authorise(id, 100))
        .await
        .unwrap();
    assert!(
        matches!(answer, AuthResponse::Approved { order_id, .. } if order_id == id),
        "{answer:?}"
    );
    let held: printmesh_nodes::store::Tree<printmesh_nodes::roles::acquirer::AuthRecord> =
        receiver.db.tree("auths").unwrap();
    assert_eq!(held.len(), 1);
}

#[tokio::test]
async fn replayed_authorisations_return_the_first_answer_and_hold_once() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path()).await;
    let id = OrderId::from_parts(3, 3);
    let peer = receiver.peer_id();
    let (a, b) = tokio::join!(
        sender.client.request::<AuthProto>(peer, authorise(id, 700)),
        sender.client.request::<AuthProto>(peer, authorise(id, 700)),
    );
    assert_eq!(a.unwrap(), b.unwrap());
    let c = sender
        .client
        .request::<AuthProto>(peer, authorise(id, 700))
        .await
        .unwrap();
    assert!(matches!(c, AuthResponse::Approved { .. }));
    let accounts: printmesh_nodes::store::Tree<printmesh_nodes::roles::acquirer::Account> =
        receiver.db.tree("accounts").unwrap();
    let visa = accounts
        .entries()
        .map(|e| e.unwrap().1)
        .find(|a| a.last4 == "1111")
        .unwrap();
    assert_eq!(visa.held_minor, 700);
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
    let visa = accounts
        .entries()
        .map(|e| e.unwrap().1)
        .find(|a| a.last4 == "1111")
        .unwrap();
    assert_eq!(visa.held_minor, 0);
}

#[tokio::test]
async fn an_order_naming_a_blob_that_never_arrived_is_answered_with_the_missing_blob() {
    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let intermediary = start_role(config(
        &dir.path().join("i"),
        Role::Intermediary,
        &network,
        vec![],
    ))
    .await
    .unwrap();
    let kiosk = client_node(
        &dir.path().join("k"),
        &network,
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
    let never_sent = BlobId::of(b"never uploaded");
    let id = OrderId::from_parts(4, 4);
    let submit = SubmitOrder {
        order_id: id,
        store: "store-test".parse().unwrap(),
        placed_at_ms: 0,
        lines: vec![OrderLine {
            blob: never_sent,
            blob_len: 14,
            file_name: "PMSH0001.JPG".into(),
            size: PrintSize::L,
            quantity: 1,
        }],
        total: Money::new(30, Currency::Jpy),
        method: PaymentMethod::Credit,
        card: CardData {
            pan: "4111111111111111".parse().unwrap(),
            expiry: Expiry::new(2030, 12).unwrap(),
        },
    };
    let answer = kiosk
        .client
        .request::<OrderProto>(peer, OrderRequest::Submit(submit.clone()))
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
    let mut wrong = submit;
    wrong.order_id = OrderId::from_parts(5, 5);
    wrong.total = Money::new(1, Currency::Jpy);
    let answer = kiosk
        .client
        .request::<OrderProto>(peer, OrderRequest::Submit(wrong))
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
            authorise(OrderId::from_parts(6, 6), 100),
        )
        .await;
    assert!(
        answer.is_err(),
        "a kiosk must not get an authorisation answered: {answer:?}"
    );
    let held: printmesh_nodes::store::Tree<printmesh_nodes::roles::acquirer::AuthRecord> =
        acquirer.db.tree("auths").unwrap();
    assert_eq!(held.len(), 0);
}

#[tokio::test]
async fn a_complete_but_unverified_partial_is_verified_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path()).await;
    let mut control = sender.client.stream_control();

    // Every byte arrived before a crash, but was never committed.
    let good = random_bytes(300_000);
    let blob = sender.blobs.import_bytes(&good).await.unwrap();
    std::fs::write(
        dir.path()
            .join("r/acquirer/blobs/partial")
            .join(blob.to_hex()),
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
        dir.path()
            .join("r/acquirer/blobs/partial")
            .join(blob.to_hex()),
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

fn pin_block(pin: &str, pan: &str) -> printmesh_protocol::pinblock::EncryptedPinBlock {
    let key = printmesh_nodes::config::load_pin_key(&fixtures().join("demo/pin.key")).unwrap();
    let pin = printmesh_protocol::pinblock::Pin::new(pin.as_bytes()).unwrap();
    let pan = pan.parse().unwrap();
    printmesh_protocol::pinblock::EncryptedPinBlock(
        printmesh_protocol::pinblock::format4(&pin, &pan, &key, rand::random()).unwrap(),
    )
}

#[tokio::test]
async fn the_acquirer_verifies_pins_and_keeps_no_pin_block() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, receiver) = two_nodes(dir.path()).await;
    let peer = receiver.peer_id();
    let sent = std::sync::Mutex::new(Vec::new());
    let with_pin = |n: u64, method: PaymentMethod, pin: Option<&str>| {
        let AuthRequest::Authorise(mut auth) = authorise(OrderId::from_parts(n, n as u128), 100)
        else {
            unreachable!()
        };
        auth.method = method;
        match pin {
            Some(pin) => {
                let block = pin_block(pin, "4111111111111111");
                sent.lock().unwrap().push(block.0);
                AuthRequest::AuthoriseWithPin {
                    auth,
                    pin_block: block,
                }
            }
            None => AuthRequest::Authorise(auth),
        }
    };
    let ask = |req| sender.client.request::<AuthProto>(peer, req);
    // visa-ok's PIN in fixtures/cards.toml is 1234.
    let right = ask(with_pin(10, PaymentMethod::Debit, Some("1234")))
        .await
        .unwrap();
    assert!(matches!(right, AuthResponse::Approved { .. }), "{right:?}");
    let wrong = ask(with_pin(11, PaymentMethod::Debit, Some("1235")))
        .await
        .unwrap();
    assert!(
        matches!(
            wrong,
            AuthResponse::Declined {
                code: DeclineCode::IncorrectPin,
                ..
            }
        ),
        "{wrong:?}"
    );
    // Debit without a PIN is declined; credit without one is not.
    let none = ask(with_pin(12, PaymentMethod::Debit, None)).await.unwrap();
    assert!(matches!(
        none,
        AuthResponse::Declined {
            code: DeclineCode::IncorrectPin,
            ..
        }
    ));
    let credit = ask(with_pin(13, PaymentMethod::Credit, None))
        .await
        .unwrap();
    assert!(
        matches!(credit, AuthResponse::Approved { .. }),
        "{credit:?}"
    );
    // A block made for another card does not open for this one.
    let AuthRequest::Authorise(auth) = authorise(OrderId::from_parts(14, 14), 100) else {
        unreachable!()
    };
    let other = ask(AuthRequest::AuthoriseWithPin {
        auth,
        pin_block: pin_block("1234", "3530111333300000"),
    })
    .await
    .unwrap();
    assert!(matches!(
        other,
        AuthResponse::Declined {
            code: DeclineCode::IncorrectPin,
            ..
        }
    ));

    // None of the PIN blocks it was sent is in the acquirer's files.
    assert_eq!(sent.lock().unwrap().len(), 2);
    receiver.shutdown().await;
    let db_dir = dir.path().join("r").join("acquirer");
    for entry in walk(&db_dir) {
        let bytes = std::fs::read(&entry).unwrap();
        for block in sent.lock().unwrap().iter() {
            assert!(
                !bytes.windows(16).any(|w| w == block),
                "{}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
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
    use printmesh_nodes::kiosk::pinpad::PinPad;
    use printmesh_nodes::roles::kiosk::draft_from_card;
    use printmesh_protocol::messages::{EventKind, OrderEvent};
    use printmesh_protocol::order::OrderState;

    let dir = tempfile::tempdir().unwrap();
    let network = format!("net-{}", rand::random::<u32>());
    let (node, kiosk) =
        printmesh_nodes::node::start_kiosk(config(dir.path(), Role::Kiosk, &network, vec![]))
            .await
            .unwrap();
    let card = CardData {
        pan: "4111111111111111".parse().unwrap(),
        expiry: Expiry::new(2030, 12).unwrap(),
    };
    let mut ids = Vec::new();
    let mut blocks = Vec::new();
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
        let block = kiosk.encrypt_pin(&mut pad, &card.pan).unwrap();
        blocks.push(block.0);
        draft.pin_block = Some(block);
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
    // The PIN blocks of the orders waiting in the outbox were never written to disk.
    for file in walk(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        for block in &blocks {
            assert!(
                !bytes.windows(16).any(|w| w == block),
                "a PIN block in {}",
                file.display()
            );
        }
    }
}
