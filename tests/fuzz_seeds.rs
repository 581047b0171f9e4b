//! The fuzz targets' seed inputs, `fuzz/seeds/<target>/`: real frames, certificates,
//! card swipes, a DPOF file, a photo and a printer's answer, so that the short run of
//! each target in CI starts from inputs that get past the first checks instead of
//! from nothing. `.ci/run` hands each target its seeds.
//!
//! `PRINTMESH_WRITE_SEEDS=1 cargo test --test fuzz_seeds` writes them anew. Without
//! it this test checks that every stored seed is still what its target's decoder
//! takes: a wire change that breaks them fails here, and the seeds are written again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use printmesh_nodes::events::sign_event;
use printmesh_nodes::membership;
use printmesh_nodes::node::load_or_create_identity;
use printmesh_nodes::roles::lab::ipp::{self, op, tag, Value};
use printmesh_protocol::codec::{decode_frame, encode_frame, MAX_FRAME_BYTES};
use printmesh_protocol::membership::{
    Certificate, Revocation, SignedCertificate, SignedRevocation,
};
use printmesh_protocol::messages::{
    BlobOffer, EventKind, Hello, OrderEvent, OrderLine, OrderResponse, PrintJob, PrintRequest,
    Role, SignedEvent, SyncRequest, SyncResponse,
};
use printmesh_protocol::pricing::PrintSize;
use printmesh_protocol::{BlobId, OrderId};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn seeds(target: &str) -> PathBuf {
    root().join("fuzz").join("seeds").join(target)
}

/// The wire target's first byte picks the message type (see fuzz_targets/wire.rs).
const HELLO: u8 = 0;
const ORDER_RESPONSE: u8 = 2;
const PRINT_REQUEST: u8 = 5;
const BLOB_OFFER: u8 = 11;
const SIGNED_EVENT: u8 = 15;
const VERIFY_EVENT: u8 = 16;
const SYNC_REQUEST: u8 = 17;
const SYNC_RESPONSE: u8 = 18;

/// A seed for the wire target: the type's byte, then the frame.
fn framed(which: u8, frame: Vec<u8>) -> Vec<u8> {
    let mut bytes = vec![which];
    bytes.extend(frame);
    bytes
}

/// A value's frame, as peers send it.
macro_rules! frame {
    ($value:expr) => {
        encode_frame($value, MAX_FRAME_BYTES).unwrap()
    };
}

/// Every seed, by target and file name.
fn make() -> Vec<(&'static str, String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    membership::init(&net, "shops").unwrap();
    let key = load_or_create_identity(&dir.path().join("identity.key")).unwrap();
    let peer = key.public().to_peer_id();
    let (cert_path, _) = membership::enroll(
        &net,
        Role::Kiosk,
        peer,
        "Kiosk 1",
        Some("store-001".parse().unwrap()),
        30,
    )
    .unwrap();
    let cert = std::fs::read(cert_path).unwrap();
    let (rev_path, _) = membership::revoke(&net, 1).unwrap();
    let revocation = std::fs::read(rev_path).unwrap();

    let mut out: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let hello = Hello {
        network: "shops".into(),
        role: Role::Kiosk,
        name: "Kiosk 1".into(),
        store: Some("store-001".parse().unwrap()),
        certificate: Some(cert.clone()),
        revocations: vec![revocation.clone()],
    };
    out.push(("wire", "hello".into(), framed(HELLO, frame!(&hello))));
    let blob = BlobId::of(b"photo");
    let order_id = OrderId::from_parts(1_764_000_000_000, 42);
    out.push((
        "wire",
        "missing-blobs".into(),
        framed(
            ORDER_RESPONSE,
            frame!(&OrderResponse::MissingBlobs {
                order_id,
                blobs: vec![blob],
            }),
        ),
    ));
    let job = PrintRequest::Job(PrintJob {
        order_id,
        store: "store-001".parse().unwrap(),
        lines: vec![OrderLine {
            blob,
            blob_len: 26_857,
            file_name: "PMSH0001.JPG".into(),
            size: PrintSize::L,
            quantity: 2,
            fit: Default::default(),
        }],
        submitted_at_ms: 1_764_000_000_000,
    });
    out.push((
        "wire",
        "print-job".into(),
        framed(PRINT_REQUEST, frame!(&job)),
    ));
    let offer = BlobOffer { blob, len: 26_857 };
    out.push((
        "wire",
        "blob-offer".into(),
        framed(BLOB_OFFER, frame!(&offer)),
    ));
    let event = OrderEvent {
        origin: peer.to_bytes(),
        seq: 7,
        order_id,
        at_ms: 1_764_000_000_000,
        kind: EventKind::Collected,
    };
    let mut signed = sign_event(&key, &event).unwrap();
    signed.certificate = Some(cert.clone());
    out.push((
        "wire",
        "signed-event".into(),
        framed(SIGNED_EVENT, frame!(&signed)),
    ));
    out.push((
        "wire",
        "verify-event".into(),
        framed(VERIFY_EVENT, frame!(&signed)),
    ));
    out.push((
        "wire",
        "sync-request".into(),
        framed(
            SYNC_REQUEST,
            frame!(&SyncRequest::Since {
                log: 0x5eed,
                after: 300
            }),
        ),
    ));
    out.push((
        "wire",
        "sync-response".into(),
        framed(
            SYNC_RESPONSE,
            frame!(&SyncResponse::Events {
                log: 0x5eed,
                frames: vec![frame!(&signed)],
                next: 301,
                more: false,
            }),
        ),
    ));

    out.push(("membership", "certificate".into(), cert));
    out.push(("membership", "revocation".into(), revocation));
    let (catalogue, licence) = content_seeds(&key);
    out.push(("membership", "catalogue".into(), catalogue));
    out.push(("membership", "licence".into(), licence));

    for (name, swipe) in [
        ("track1", "%B4111111111111111^DOE/JANE^30121010000000000000?"),
        ("track2", ";4111111111111111=30121010000000000000?"),
        (
            "swipe",
            "%B4111111111111111^DOE/JANE^30121010000000000000?;4111111111111111=30121010000000000000?\n",
        ),
        ("track2-equivalent", "4111111111111111D30121010000000000000F"),
    ] {
        out.push(("tracks", name.into(), swipe.as_bytes().to_vec()));
    }

    let card = root().join("fixtures").join("memory-card");
    out.push((
        "dpof",
        "autprint".into(),
        std::fs::read(card.join("MISC/AUTPRINT.MRK")).unwrap(),
    ));
    out.push((
        "images",
        "camera-jpeg".into(),
        std::fs::read(card.join("DCIM/100PMESH/PMSH0005.JPG")).unwrap(),
    ));

    // A printer's answer to Get-Job-Attributes (the IPP encoding is the same both ways;
    // the status code stands where a request has its operation).
    let mut answer = ipp::Request::new(
        op::GET_JOB_ATTRIBUTES,
        1,
        "ipp://127.0.0.1:631/printers/PDF",
    );
    answer
        .attr(tag::JOB, "job-id", vec![Value::int(tag::INTEGER, 146)])
        .attr(tag::JOB, "job-state", vec![Value::int(tag::ENUM, 9)])
        .attr(
            tag::JOB,
            "job-name",
            vec![Value::text(tag::NAME, "printmesh 01M89X")],
        );
    let body = answer.encode();
    let mut http = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    http.extend_from_slice(&body);
    out.push(("ipp", "job-attributes".into(), body));
    out.push(("ipp", "job-attributes-http".into(), http));
    out
}

/// A content company's signed catalogue (a frame) and a licence's text.
fn content_seeds(key: &printmesh_nodes::node::Keypair) -> (Vec<u8>, Vec<u8>) {
    use printmesh_protocol::content::{
        sign_catalogue, sign_licence, Catalogue, Item, ItemKind, Licence, Names,
        CATALOGUE_MAX_BYTES,
    };
    use printmesh_protocol::money::{Currency, Money};
    let item = Item {
        id: "dawn".parse().unwrap(),
        kind: ItemKind::Music,
        title: Names {
            ja: "夜明けの歌".into(),
            en: "Song of Dawn".into(),
            kana: "よあけのうた".into(),
        },
        artist: Names {
            ja: String::new(),
            en: "printmesh".into(),
            kana: String::new(),
        },
        blob: BlobId::of(b"tune"),
        size: 4,
        price: Money::new(300, Currency::Jpy),
        rights_holder: "printmesh".into(),
        cover: None,
        valid_from_ms: 0,
        valid_until_ms: i64::MAX,
        folder: "MUSIC/PRINTMSH".into(),
        file_name: "DAWN.WAV".into(),
    };
    let catalogue = Catalogue {
        network: "shops".into(),
        company: "Tunes".into(),
        version: 3,
        published_ms: 1,
        items: vec![item],
    };
    let signed = sign_catalogue(key, &catalogue, None).unwrap();
    let licence = Licence {
        network: "shops".into(),
        company: key.public().to_peer_id().to_bytes(),
        item: "dawn".parse().unwrap(),
        blob: BlobId::of(b"tune"),
        size: 4,
        order: OrderId::from_bytes([7; 16]),
        store: "store-1".parse().unwrap(),
        price: Money::new(300, Currency::Jpy),
        issued_ms: 1,
        card_serial: 0x1234_ABCD,
        folder: "MUSIC/PRINTMSH".into(),
        file_name: "DAWN.WAV".into(),
    };
    let text = sign_licence(key, &licence, None)
        .unwrap()
        .to_text()
        .unwrap();
    (
        encode_frame(&signed, CATALOGUE_MAX_BYTES + 4096).unwrap(),
        text.into_bytes(),
    )
}

/// Whether a stored seed still gets past its target's decoder.
fn check(target: &str, name: &str, bytes: &[u8]) {
    let ok = match target {
        "wire" => {
            let (which, frame) = bytes.split_first().unwrap();
            match *which {
                HELLO => decode_frame::<Hello>(frame, MAX_FRAME_BYTES).is_ok(),
                ORDER_RESPONSE => decode_frame::<OrderResponse>(frame, MAX_FRAME_BYTES).is_ok(),
                PRINT_REQUEST => decode_frame::<PrintRequest>(frame, MAX_FRAME_BYTES).is_ok(),
                BLOB_OFFER => decode_frame::<BlobOffer>(frame, MAX_FRAME_BYTES).is_ok(),
                SIGNED_EVENT => decode_frame::<SignedEvent>(frame, MAX_FRAME_BYTES).is_ok(),
                VERIFY_EVENT => printmesh_nodes::events::verify_event(frame).is_ok(),
                SYNC_REQUEST => decode_frame::<SyncRequest>(frame, MAX_FRAME_BYTES).is_ok(),
                SYNC_RESPONSE => match decode_frame::<SyncResponse>(frame, MAX_FRAME_BYTES) {
                    Ok(SyncResponse::Events { frames, .. }) => frames
                        .iter()
                        .all(|f| printmesh_nodes::events::verify_event(f).is_ok()),
                    _ => false,
                },
                other => panic!("no seed type {other}"),
            }
        }
        "membership" => match name {
            "certificate" => SignedCertificate::decode(bytes)
                .and_then(|s| Certificate::decode(&s.certificate))
                .is_ok(),
            "catalogue" => decode_frame::<printmesh_protocol::content::SignedCatalogue>(
                bytes,
                printmesh_protocol::content::CATALOGUE_MAX_BYTES + 4096,
            )
            .is_ok_and(|s| printmesh_protocol::content::verify_catalogue(&s).is_ok()),
            "licence" => std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| printmesh_protocol::content::SignedLicence::from_text(t).ok())
                .is_some_and(|s| printmesh_protocol::content::verify_licence(&s).is_ok()),
            _ => SignedRevocation::decode(bytes)
                .and_then(|s| Revocation::decode(&s.revocation))
                .is_ok(),
        },
        "tracks" => {
            let text = String::from_utf8_lossy(bytes);
            printmesh_protocol::card::parse_track1(&text).is_ok()
                || printmesh_protocol::card::parse_track2(&text).is_ok()
                || printmesh_protocol::card::parse_track2_equivalent(&text).is_ok()
                || matches!(
                    printmesh_nodes::roles::kiosk::swipe::parse_swipe(&text),
                    printmesh_nodes::roles::kiosk::swipe::Swipe::Card(_)
                )
        }
        "dpof" => printmesh_nodes::media::parse_dpof(&String::from_utf8_lossy(bytes))
            .is_ok_and(|picks| !picks.is_empty()),
        "images" => printmesh_nodes::roles::lab::render::decode_upright(bytes).is_ok(),
        "ipp" => {
            let body = match printmesh_nodes::roles::lab::ipp::parse_http(bytes) {
                Ok((_, body)) => body,
                Err(_) => bytes.to_vec(),
            };
            ipp::Response::parse(&body)
                .ok()
                .and_then(|r| r.get("job-id").and_then(|v| v.as_int()))
                == Some(146)
        }
        other => panic!("no fuzz target {other}"),
    };
    assert!(
        ok,
        "seed {target}/{name} no longer decodes: write the seeds again"
    );
}

#[test]
fn every_fuzz_target_has_seeds_its_decoder_takes() {
    if std::env::var_os("PRINTMESH_WRITE_SEEDS").is_some() {
        let _ = std::fs::remove_dir_all(root().join("fuzz").join("seeds"));
        for (target, name, bytes) in make() {
            std::fs::create_dir_all(seeds(target)).unwrap();
            std::fs::write(seeds(target).join(name), bytes).unwrap();
        }
    }
    let targets = std::fs::read_dir(root().join("fuzz").join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect::<Vec<_>>();
    assert!(!targets.is_empty());
    for target in targets {
        let files: Vec<PathBuf> = std::fs::read_dir(seeds(&target))
            .unwrap_or_else(|e| panic!("fuzz/seeds/{target}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!files.is_empty(), "no seeds for {target}");
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            check(&target, &name, &std::fs::read(&file).unwrap());
        }
    }
}
