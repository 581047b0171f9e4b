//! Golden bytes and round-trip properties for every wire type. A golden test failing
//! means the wire format changed: that needs a new protocol version, not a new golden.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chrono::NaiveDate;
use printmesh_protocol::card::{CardData, Expiry, Pan};
use printmesh_protocol::codec::{decode_frame, encode_frame, MAX_FRAME_BYTES};
use printmesh_protocol::ids::{AuthCode, BlobId, OrderId, StoreId};
use printmesh_protocol::messages::*;
use printmesh_protocol::money::{Currency, Money};
use printmesh_protocol::pinblock::EncryptedPinBlock;
use printmesh_protocol::pricing::{Fit, PrintSize};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

fn order_id() -> OrderId {
    OrderId::from_parts(1_764_000_000_000, 42)
}
fn store() -> StoreId {
    "store-001".parse().unwrap()
}
fn card() -> CardData {
    CardData {
        pan: "4111111111111111".parse().unwrap(),
        expiry: Expiry::new(2030, 12).unwrap(),
    }
}
fn yen(n: i64) -> Money {
    Money::new(n, Currency::Jpy)
}
fn line() -> OrderLine {
    OrderLine {
        blob: BlobId::of(b"photo"),
        blob_len: 26_852,
        file_name: "PMSH0001.JPG".into(),
        size: PrintSize::L,
        quantity: 2,
        fit: Fit::Border,
    }
}
fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
}
fn code() -> AuthCode {
    AuthCode::try_from("A1B2C3".to_string()).unwrap()
}

fn golden<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T, expected_hex: &str) {
    let frame = encode_frame(&value, MAX_FRAME_BYTES).unwrap();
    assert_eq!(hex::encode(&frame), expected_hex, "wire bytes of {value:?}");
    let back: T = decode_frame(&frame, MAX_FRAME_BYTES).unwrap();
    assert_eq!(back, value);
}

#[test]
fn golden_hello() {
    golden(
        Hello {
            network: "demo".into(),
            role: Role::Intermediary,
            name: "Hub".into(),
            store: Some(store()),
            certificate: None,
            revocations: vec![],
        },
        "01170000000464656d6f0103487562010973746f72652d3030310000",
    );
}

#[test]
fn golden_order_request() {
    golden(
        OrderRequest::Submit(SubmitOrder {
            order_id: order_id(),
            store: store(),
            placed_at_ms: 1_764_000_000_000,
            lines: vec![line()],
            total: yen(60),
            method: PaymentMethod::Credit,
            card: card(),
        }),
        "017000000000019ab697e8000000000000000000002a0973746f72652d303031fd00d02f6d35030000015e8bbae7e88e4ae1d5e34720d270c86b3d584c0334cdc6d71539322026828913fbe4680c504d5348303030312e4a50470002017800001034313131313131313131313131313131fbee070c",
    );
}

#[test]
fn golden_order_request_with_pin() {
    golden(
        OrderRequest::SubmitWithPin {
            order: SubmitOrder {
                order_id: order_id(),
                store: store(),
                placed_at_ms: 1_764_000_000_000,
                lines: vec![line()],
                total: yen(60),
                method: PaymentMethod::Debit,
                card: card(),
            },
            pin_block: EncryptedPinBlock([0xa5; 16]),
        },
        "018000000001019ab697e8000000000000000000002a0973746f72652d303031fd00d02f6d35030000015e8bbae7e88e4ae1d5e34720d270c86b3d584c0334cdc6d71539322026828913fbe4680c504d5348303030312e4a50470002017800011034313131313131313131313131313131fbee070ca5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5",
    );
    golden(
        AuthRequest::AuthoriseWithPin {
            auth: Authorise {
                order_id: order_id(),
                amount: yen(60),
                method: PaymentMethod::IcCard,
                card: card(),
                store: store(),
            },
            pin_block: EncryptedPinBlock([0x5a; 16]),
        },
        "014300000003019ab697e8000000000000000000002a7800031034313131313131313131313131313131fbee070c0973746f72652d3030315a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
    );
    golden(
        OrderResponse::Declined {
            order_id: order_id(),
            code: DeclineCode::IncorrectPin,
        },
        "011200000001019ab697e8000000000000000000002a07",
    );
}

#[test]
fn golden_order_responses() {
    golden(
        OrderResponse::Accepted(OrderAccepted {
            order_id: order_id(),
            auth_code: code(),
            amount: yen(60),
            delivery_date: date(),
            lab: "Lab".into(),
        }),
        "012900000000019ab697e8000000000000000000002a0641314232433378000a323032362d31312d3238034c6162",
    );
    golden(
        OrderResponse::Declined {
            order_id: order_id(),
            code: DeclineCode::InsufficientFunds,
        },
        "011200000001019ab697e8000000000000000000002a03",
    );
    golden(
        OrderResponse::MissingBlobs {
            order_id: order_id(),
            blobs: vec![BlobId::of(b"photo")],
        },
        "013200000003019ab697e8000000000000000000002a015e8bbae7e88e4ae1d5e34720d270c86b3d584c0334cdc6d71539322026828913",
    );
}

#[test]
fn golden_auth() {
    golden(
        AuthRequest::Authorise(Authorise {
            order_id: order_id(),
            amount: yen(60),
            method: PaymentMethod::Credit,
            card: card(),
            store: store(),
        }),
        "013300000000019ab697e8000000000000000000002a7800001034313131313131313131313131313131fbee070c0973746f72652d303031",
    );
    golden(
        AuthRequest::Void {
            order_id: order_id(),
        },
        "011100000002019ab697e8000000000000000000002a",
    );
    golden(
        AuthResponse::Approved {
            order_id: order_id(),
            auth_code: code(),
            amount: yen(60),
        },
        "011a00000000019ab697e8000000000000000000002a064131423243337800",
    );
    golden(
        AuthResponse::Declined {
            order_id: order_id(),
            code: DeclineCode::ExpiredCard,
        },
        "011200000001019ab697e8000000000000000000002a04",
    );
}

#[test]
fn golden_print() {
    golden(
        PrintRequest::Job(PrintJob {
            order_id: order_id(),
            store: store(),
            lines: vec![line()],
            submitted_at_ms: 1_764_000_000_000,
        }),
        "015800000000019ab697e8000000000000000000002a0973746f72652d303031015e8bbae7e88e4ae1d5e34720d270c86b3d584c0334cdc6d71539322026828913fbe4680c504d5348303030312e4a5047000201fd00d02f6d35030000",
    );
    golden(
        PrintResponse::Accepted {
            order_id: order_id(),
            delivery_date: date(),
            lab: "Lab".into(),
        },
        "012000000000019ab697e8000000000000000000002a0a323032362d31312d3238034c6162",
    );
}

#[test]
fn golden_blob_control() {
    golden(
        BlobOffer {
            blob: BlobId::of(b"photo"),
            len: 20_000_000,
        },
        "01250000005e8bbae7e88e4ae1d5e34720d270c86b3d584c0334cdc6d71539322026828913fc002d3101",
    );
    golden(BlobReply::SendFrom { offset: 4096 }, "010400000000fb0010");
    golden(BlobVerdict::HashMismatch, "010100000001");
}

#[test]
fn golden_event() {
    golden(
        OrderEvent {
            origin: vec![1, 2, 3],
            seq: 7,
            order_id: order_id(),
            at_ms: 1_764_000_000_000,
            kind: EventKind::Accepted {
                delivery_date: date(),
                lab: "Lab".into(),
            },
        },
        "012e0000000301020307019ab697e8000000000000000000002afd00d02f6d35030000030a323032362d31312d3238034c6162",
    );
    golden(
        SignedEvent {
            event: vec![9, 9],
            public_key: vec![1],
            signature: vec![2, 2],
            certificate: None,
        },
        "0109000000020909010102020200",
    );
}

#[test]
fn golden_sync() {
    golden(
        SyncRequest::Since { log: 5, after: 300 },
        "01050000000005fb2c01",
    );
    golden(
        SyncResponse::Events {
            log: 5,
            frames: vec![vec![9, 9]],
            next: 7,
            more: true,
        },
        "01080000000005010209090701",
    );
    golden(
        SyncResponse::Unavailable { reason: "x".into() },
        "0103000000010178",
    );
}

#[test]
fn an_invalid_pan_on_the_wire_is_refused() {
    let mut frame = encode_frame(
        &AuthRequest::Authorise(Authorise {
            order_id: order_id(),
            amount: yen(60),
            method: PaymentMethod::Credit,
            card: card(),
            store: store(),
        }),
        MAX_FRAME_BYTES,
    )
    .unwrap();
    // Flip the last digit of the PAN: the Luhn check must reject it on decode.
    let at = frame
        .windows(16)
        .position(|w| w == b"4111111111111111")
        .unwrap();
    frame[at + 15] = b'2';
    assert!(decode_frame::<AuthRequest>(&frame, MAX_FRAME_BYTES).is_err());
}

// ------------------------------------------------------------------ property tests

fn arb_money() -> impl Strategy<Value = Money> {
    (
        any::<i64>(),
        prop_oneof![
            Just(Currency::Jpy),
            Just(Currency::Usd),
            Just(Currency::Eur),
            Just(Currency::Gbp)
        ],
    )
        .prop_map(|(a, c)| Money::new(a, c))
}
fn arb_order_id() -> impl Strategy<Value = OrderId> {
    (0u64..(1 << 48), any::<u128>()).prop_map(|(t, r)| OrderId::from_parts(t, r))
}
fn arb_blob() -> impl Strategy<Value = BlobId> {
    any::<[u8; 32]>().prop_map(BlobId)
}
fn arb_store() -> impl Strategy<Value = StoreId> {
    "[a-z0-9_-]{1,64}".prop_map(|s| s.parse().unwrap())
}
fn arb_pan() -> impl Strategy<Value = Pan> {
    proptest::collection::vec(0u8..10, 11..=18).prop_map(|digits| {
        // Append the Luhn check digit.
        let body: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        (0..10)
            .map(|c| format!("{body}{c}"))
            .find_map(|s| s.parse::<Pan>().ok())
            .unwrap()
    })
}
fn arb_card() -> impl Strategy<Value = CardData> {
    (arb_pan(), 2000u16..2100, 1u8..=12).prop_map(|(pan, y, m)| CardData {
        pan,
        expiry: Expiry::new(y, m).unwrap(),
    })
}
fn arb_size() -> impl Strategy<Value = PrintSize> {
    proptest::sample::select(PrintSize::ALL.to_vec())
}
fn arb_line() -> impl Strategy<Value = OrderLine> {
    (
        arb_blob(),
        any::<u64>(),
        ".{0,40}",
        arb_size(),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(
            |(blob, blob_len, file_name, size, quantity, border)| OrderLine {
                blob,
                blob_len,
                file_name,
                size,
                quantity,
                fit: if border { Fit::Border } else { Fit::Crop },
            },
        )
}
fn arb_method() -> impl Strategy<Value = PaymentMethod> {
    prop_oneof![
        Just(PaymentMethod::Credit),
        Just(PaymentMethod::Debit),
        Just(PaymentMethod::PointCard),
        Just(PaymentMethod::IcCard)
    ]
}
fn arb_code() -> impl Strategy<Value = AuthCode> {
    any::<u32>().prop_map(AuthCode::from_random)
}
fn arb_date() -> impl Strategy<Value = NaiveDate> {
    (2000i32..2100, 1u32..=12, 1u32..=28)
        .prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap())
}
fn arb_decline() -> impl Strategy<Value = DeclineCode> {
    prop_oneof![
        Just(DeclineCode::DoNotHonour),
        Just(DeclineCode::InvalidAmount),
        Just(DeclineCode::InvalidCardNumber),
        Just(DeclineCode::InsufficientFunds),
        Just(DeclineCode::ExpiredCard),
        Just(DeclineCode::NotPermitted),
        Just(DeclineCode::RestrictedCard),
        Just(DeclineCode::IncorrectPin)
    ]
}
fn arb_submit() -> impl Strategy<Value = SubmitOrder> {
    (
        arb_order_id(),
        arb_store(),
        any::<i64>(),
        proptest::collection::vec(arb_line(), 0..8),
        arb_money(),
        arb_method(),
        arb_card(),
    )
        .prop_map(
            |(order_id, store, placed_at_ms, lines, total, method, card)| SubmitOrder {
                order_id,
                store,
                placed_at_ms,
                lines,
                total,
                method,
                card,
            },
        )
}
fn arb_event_kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        (arb_store(), arb_money()).prop_map(|(store, total)| EventKind::Submitted { store, total }),
        arb_code().prop_map(|auth_code| EventKind::Authorised { auth_code }),
        arb_decline().prop_map(|code| EventKind::Declined { code }),
        (arb_date(), ".{0,20}")
            .prop_map(|(delivery_date, lab)| EventKind::Accepted { delivery_date, lab }),
        ".{0,40}".prop_map(|reason| EventKind::Rejected { reason }),
        Just(EventKind::Printed),
        Just(EventKind::Shipped),
        Just(EventKind::Delivered),
        Just(EventKind::Collected),
        (arb_date(), ".{0,40}").prop_map(|(delivery_date, reason)| EventKind::Rescheduled {
            delivery_date,
            reason
        }),
        ".{0,20}".prop_map(|courier| EventKind::Tracking {
            stage: TrackingStage::InTransit,
            courier
        }),
        Just(EventKind::Voided),
        Just(EventKind::Expired),
    ]
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let frame = encode_frame(value, MAX_FRAME_BYTES).unwrap();
    let back: T = decode_frame(&frame, MAX_FRAME_BYTES).unwrap();
    assert_eq!(&back, value);
}

proptest! {
    #[test]
    fn hello_round_trips(network in ".{0,30}", name in ".{0,30}", store in proptest::option::of(arb_store()),
        role in proptest::sample::select(vec![Role::Kiosk, Role::Intermediary, Role::Acquirer, Role::Lab, Role::Courier, Role::Content])) {
        round_trip(&Hello { network, role, name, store, certificate: None, revocations: vec![] });
    }

    #[test]
    fn order_requests_round_trip(submit in arb_submit(), pin in any::<[u8; 16]>()) {
        round_trip(&OrderRequest::Submit(submit.clone()));
        round_trip(&OrderRequest::SubmitWithPin { order: submit, pin_block: EncryptedPinBlock(pin) });
    }

    #[test]
    fn order_responses_round_trip(id in arb_order_id(), code in arb_code(), amount in arb_money(), date in arb_date(),
        lab in ".{0,20}", decline in arb_decline(), blobs in proptest::collection::vec(arb_blob(), 0..5), reason in ".{0,40}") {
        round_trip(&OrderResponse::Accepted(OrderAccepted { order_id: id, auth_code: code, amount, delivery_date: date, lab }));
        round_trip(&OrderResponse::Declined { order_id: id, code: decline });
        round_trip(&OrderResponse::Rejected { order_id: id, reason: reason.clone() });
        round_trip(&OrderResponse::MissingBlobs { order_id: id, blobs });
        round_trip(&OrderResponse::Unavailable { order_id: id, reason });
    }

    #[test]
    fn auth_messages_round_trip(id in arb_order_id(), amount in arb_money(), method in arb_method(), card in arb_card(),
        store in arb_store(), code in arb_code(), decline in arb_decline(), reason in ".{0,40}") {
        let auth = Authorise { order_id: id, amount, method, card, store };
        round_trip(&AuthRequest::Authorise(auth.clone()));
        round_trip(&AuthRequest::AuthoriseWithPin { auth, pin_block: EncryptedPinBlock([7; 16]) });
        round_trip(&AuthRequest::Capture { order_id: id });
        round_trip(&AuthRequest::Void { order_id: id });
        round_trip(&AuthResponse::Approved { order_id: id, auth_code: code, amount });
        round_trip(&AuthResponse::Declined { order_id: id, code: decline });
        round_trip(&AuthResponse::Captured { order_id: id });
        round_trip(&AuthResponse::Voided { order_id: id });
        round_trip(&AuthResponse::Refused { order_id: id, reason });
    }

    #[test]
    fn print_messages_round_trip(id in arb_order_id(), store in arb_store(), lines in proptest::collection::vec(arb_line(), 0..8),
        at in any::<i64>(), date in arb_date(), lab in ".{0,20}", blobs in proptest::collection::vec(arb_blob(), 0..5)) {
        round_trip(&PrintRequest::Job(PrintJob { order_id: id, store, lines, submitted_at_ms: at }));
        round_trip(&PrintResponse::Accepted { order_id: id, delivery_date: date, lab: lab.clone() });
        round_trip(&PrintResponse::Rejected { order_id: id, reason: lab });
        round_trip(&PrintResponse::MissingBlobs { order_id: id, blobs });
    }

    #[test]
    fn blob_frames_round_trip(blob in arb_blob(), len in any::<u64>(), reason in ".{0,40}") {
        round_trip(&BlobOffer { blob, len });
        round_trip(&BlobReply::SendFrom { offset: len });
        round_trip(&BlobReply::Busy);
        round_trip(&BlobReply::Refused { reason: reason.clone() });
        round_trip(&BlobVerdict::Stored);
        round_trip(&BlobVerdict::HashMismatch);
        round_trip(&BlobVerdict::Failed { reason });
    }

    #[test]
    fn events_round_trip(origin in proptest::collection::vec(any::<u8>(), 0..40), seq in any::<u64>(), id in arb_order_id(),
        at in any::<i64>(), kind in arb_event_kind(), sig in proptest::collection::vec(any::<u8>(), 0..64)) {
        let event = OrderEvent { origin: origin.clone(), seq, order_id: id, at_ms: at, kind };
        round_trip(&event);
        round_trip(&SignedEvent { event: encode_frame(&event, MAX_FRAME_BYTES).unwrap(), public_key: origin, signature: sig, certificate: None });
    }

    #[test]
    fn sync_messages_round_trip(log in any::<u64>(), after in any::<u64>(), more in any::<bool>(),
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8), reason in ".{0,40}") {
        round_trip(&SyncRequest::Since { log, after });
        round_trip(&SyncResponse::Events { log, frames, next: after, more });
        round_trip(&SyncResponse::Unavailable { reason });
    }

    /// Random bytes never panic a decoder; they decode or they error.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame::<OrderRequest>(&bytes, MAX_FRAME_BYTES);
        let _ = decode_frame::<AuthRequest>(&bytes, MAX_FRAME_BYTES);
        let _ = decode_frame::<PrintRequest>(&bytes, MAX_FRAME_BYTES);
        let _ = decode_frame::<SignedEvent>(&bytes, MAX_FRAME_BYTES);
        let _ = decode_frame::<BlobOffer>(&bytes, MAX_FRAME_BYTES);
        let _ = decode_frame::<SyncResponse>(&bytes, MAX_FRAME_BYTES);
        let mut framed = vec![1u8];
        framed.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        framed.extend_from_slice(&bytes);
        let _ = decode_frame::<OrderRequest>(&framed, MAX_FRAME_BYTES);
        let _ = decode_frame::<OrderEvent>(&framed, MAX_FRAME_BYTES);
        let _ = decode_frame::<SyncResponse>(&framed, MAX_FRAME_BYTES);
    }
}
