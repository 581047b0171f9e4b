//! The content company's node: publishing a catalogue (added, changed, withdrawn),
//! answering for catalogues newer than the asker's, and serving items' bytes by fetch
//! (resumed after a cut, refused to roles that fetch nothing).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Duration;

use printmesh_nodes::config::ContentConfig;
use printmesh_nodes::net::ContentProto;
use printmesh_nodes::node::{admin_call, AdminRequest, Node};
use printmesh_nodes::roles::content::ContentCommand;
use printmesh_nodes::testnet::{addr_of, TestNet};
use printmesh_protocol::content::verify_catalogue;
use printmesh_protocol::messages::Role;
use printmesh_protocol::wire::content::{ContentRequest, ContentResponse};
use printmesh_protocol::BlobId;
use printmesh_runtime::blobs::{BlobError, BlobStore};
use printmesh_runtime::fetch::fetch_blob;

fn tune(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}

/// A catalogue file with a tune (and, unless `withdrawn`, a picture).
fn write_catalogue(dir: &Path, price: i64, withdrawn: bool) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("items")).unwrap();
    std::fs::write(dir.join("items/dawn.wav"), tune(3 * 1024 * 1024 + 17)).unwrap();
    let cover = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 90]));
    cover.save(dir.join("items/dawn.png")).unwrap();
    std::fs::write(dir.join("items/sky.jpg"), b"not really a jpeg, but bytes").unwrap();
    let mut text = format!(
        r#"
[[item]]
id = "dawn"
kind = "music"
title_ja = "夜明けの歌"
title_en = "Song of Dawn"
title_kana = "よあけのうた"
artist_en = "Tokyo Synth"
price_minor = {price}
rights_holder = "printmesh"
file = "items/dawn.wav"
cover = "items/dawn.png"
folder = "MUSIC/PRINTMSH"
file_name = "DAWN.WAV"
"#
    );
    if !withdrawn {
        text.push_str(
            r#"
[[item]]
id = "sky"
kind = "image"
title_ja = "空"
title_en = "Sky"
price_minor = 100
rights_holder = "printmesh"
file = "items/sky.jpg"
folder = "PICTURES"
file_name = "SKY.JPG"
"#,
        );
    }
    let path = dir.join("catalogue.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn publish(node: &Node, path: &Path) -> (bool, String) {
    let r = admin_call(
        &node.config.data_dir,
        &AdminRequest::role(&ContentCommand::Publish {
            path: path.to_path_buf(),
        }),
    )
    .unwrap()
    .unwrap();
    (r.ok, r.text)
}

async fn ready(node: &Node, peer: libp2p::PeerId) {
    for _ in 0..100 {
        if node.client.peers().await.iter().any(|p| p.peer == peer) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the peers never greeted each other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_is_published_answered_and_its_items_fetched_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(dir.path());
    let mut c = net.bare(Role::Content, "Tunes", "content", vec![]);
    c.content = Some(ContentConfig::default());
    let content = net.start(c).await.unwrap();
    let files = dir.path().join("files");

    let (ok, said) = publish(&content, &write_catalogue(&files, 300, false));
    assert!(ok, "{said}");
    assert!(
        said.contains("version 1 published: 2 items; added: dawn, sky"),
        "{said}"
    );
    let (ok, said) = publish(&content, &write_catalogue(&files, 300, false));
    assert!(ok && said.contains("version 1 unchanged"), "{said}");
    let (ok, said) = publish(&content, &write_catalogue(&files, 350, true));
    assert!(ok, "{said}");
    assert!(
        said.contains("version 2 published: 1 items; changed: dawn; withdrawn: sky"),
        "{said}"
    );
    // A broken file is refused naming the item, and nothing changes.
    std::fs::write(files.join("bad.toml"), "[[item]]\nid = \"Bad Id\"\n").unwrap();
    let (ok, said) = publish(&content, &files.join("bad.toml"));
    assert!(!ok, "{said}");

    // An intermediary asks for what it lacks.
    let addr = addr_of(&content).await.unwrap();
    let mut i = net.config(Role::Intermediary, vec![addr]).unwrap();
    i.data_dir = dir.path().join("intermediary");
    let intermediary = net.start(i).await.unwrap();
    ready(&intermediary, content.peer_id()).await;
    let answer = intermediary
        .client
        .request::<ContentProto>(
            content.peer_id(),
            ContentRequest::Catalogues { known: vec![] },
        )
        .await
        .unwrap();
    let ContentResponse::Catalogues(list) = answer else {
        panic!("{answer:?}");
    };
    assert_eq!(list.len(), 1);
    let v = verify_catalogue(&list[0]).unwrap();
    assert_eq!(v.signer, content.peer_id().to_bytes());
    assert_eq!(v.catalogue.version, 2);
    assert_eq!(v.catalogue.company, "Tunes");
    let dawn = v.catalogue.items[0].clone();
    assert_eq!(dawn.price.amount_minor(), 350);
    assert_eq!(dawn.blob, BlobId::of(&tune(3 * 1024 * 1024 + 17)));
    let again = intermediary
        .client
        .request::<ContentProto>(
            content.peer_id(),
            ContentRequest::Catalogues {
                known: vec![(v.signer.clone(), 2)],
            },
        )
        .await
        .unwrap();
    assert_eq!(again, ContentResponse::Catalogues(vec![]));

    // Fetch into a store of its own, resuming a kept first megabyte.
    let cache = BlobStore::open(&dir.path().join("cache")).unwrap();
    let bytes = tune(3 * 1024 * 1024 + 17);
    std::fs::write(
        dir.path().join("cache/partial").join(dawn.blob.to_hex()),
        &bytes[..1024 * 1024],
    )
    .unwrap();
    let mut control = intermediary.client.stream_control();
    let mut seen = 0;
    let fetched = fetch_blob(
        &mut control,
        &cache,
        content.peer_id(),
        dawn.blob,
        dawn.size,
        &mut |have, _| seen = have,
    )
    .await
    .unwrap();
    assert_eq!(
        fetched,
        dawn.size - 1024 * 1024,
        "resumed after the kept part"
    );
    assert_eq!(seen, dawn.size);
    assert_eq!(cache.read(&dawn.blob).await.unwrap(), bytes);

    // A kept part that is wrong: the hash fails, nothing is stored, the next fetch
    // starts again from nothing.
    let cover = dawn.cover.unwrap();
    let cover_len = std::fs::metadata(content.blobs.path(&cover)).unwrap().len();
    std::fs::write(
        dir.path().join("cache/partial").join(cover.to_hex()),
        vec![0u8; 10],
    )
    .unwrap();
    let e = fetch_blob(
        &mut control,
        &cache,
        content.peer_id(),
        cover,
        cover_len,
        &mut |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(e, BlobError::HashMismatch(_)), "{e}");
    assert!(!cache.has(&cover));
    fetch_blob(
        &mut control,
        &cache,
        content.peer_id(),
        cover,
        cover_len,
        &mut |_, _| {},
    )
    .await
    .unwrap();
    assert!(cache.has(&cover));
    // What the catalogue does not say is refused: the wrong length, an unknown blob.
    let e = fetch_blob(
        &mut control,
        &cache.clone(),
        content.peer_id(),
        BlobId([9; 32]),
        5,
        &mut |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(e, BlobError::NotFound(_)), "{e}");

    intermediary.shutdown().await;
    content.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_fetches_nothing_and_asks_for_no_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(dir.path());
    let mut c = net.bare(Role::Content, "Tunes", "content", vec![]);
    c.content = Some(ContentConfig::default());
    let content = net.start(c).await.unwrap();
    let (ok, said) = publish(
        &content,
        &write_catalogue(&dir.path().join("files"), 300, false),
    );
    assert!(ok, "{said}");
    let addr = addr_of(&content).await.unwrap();
    let mut l = net.config(Role::Lab, vec![addr]).unwrap();
    l.data_dir = dir.path().join("lab");
    let lab = net.start(l).await.unwrap();
    ready(&lab, content.peer_id()).await;
    let cache = BlobStore::open(&dir.path().join("cache")).unwrap();
    let blob = BlobId::of(&tune(3 * 1024 * 1024 + 17));
    let e = fetch_blob(
        &mut lab.client.stream_control(),
        &cache,
        content.peer_id(),
        blob,
        3 * 1024 * 1024 + 17,
        &mut |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("a lab fetches nothing"), "{e}");
    let asked = lab
        .client
        .request::<ContentProto>(
            content.peer_id(),
            ContentRequest::Catalogues { known: vec![] },
        )
        .await;
    assert!(asked.is_err(), "{asked:?}");
    lab.shutdown().await;
    content.shutdown().await;
}

/// In an enrolled network a catalogue counts only if an enrolled content company
/// signed it (with its certificate, valid and unrevoked); whoever else signs one — an
/// intermediary, an unknown key — is refused, naming why.
#[test]
fn only_an_enrolled_content_companys_catalogue_is_kept() {
    use printmesh_nodes::membership;
    use printmesh_protocol::content::{sign_catalogue, Catalogue};
    use printmesh_runtime::catalogues::Catalogues;
    use printmesh_runtime::config::MembershipConfig;

    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    membership::init(&net, "enrolled").unwrap();
    let enrol = |role: Role, name: &str| {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let (path, cert) =
            membership::enroll(&net, role, key.public().to_peer_id(), name, None, 30).unwrap();
        (key, path, cert.serial)
    };
    let (company, company_cert, company_serial) = enrol(Role::Content, "Tunes");
    let company_cert = std::fs::read(company_cert).unwrap();
    let (hub, hub_cert, _) = enrol(Role::Intermediary, "Hub");
    let hub_cert = std::fs::read(hub_cert).unwrap();
    // The holder: an intermediary of this network, with its gate.
    let (holder, holder_cert, _) = enrol(Role::Intermediary, "Holder");
    let gate = membership::Gate::load(
        &MembershipConfig {
            root_public_key: membership::load(&net).unwrap().root_public_key,
            certificate: holder_cert,
            revocations: None,
        },
        "enrolled",
        holder.public().to_peer_id(),
        Role::Intermediary,
        "Holder",
        None,
        None,
    )
    .unwrap();
    let db = printmesh_nodes::store::Db::open(&dir.path().join("db")).unwrap();
    let held = Catalogues::open(&db, "enrolled", Some(gate.clone())).unwrap();
    let catalogue = |company: &str, version: u64| Catalogue {
        network: "enrolled".into(),
        company: company.into(),
        version,
        published_ms: 1,
        items: vec![],
    };

    // Signed by the enrolled company, with its certificate: kept.
    let good = sign_catalogue(&company, &catalogue("Tunes", 1), Some(company_cert.clone()));
    assert_eq!(held.offer(good.unwrap()), Ok(Some(1)));
    // Signed by an intermediary, with its own (valid) certificate: refused.
    let e = held
        .offer(sign_catalogue(&hub, &catalogue("Hub", 1), Some(hub_cert)).unwrap())
        .unwrap_err();
    assert!(
        e.contains("not signed by an enrolled content company"),
        "{e}"
    );
    assert!(e.contains("signed by an intermediary"), "{e}");
    // An unknown key, with the company's certificate beside it: refused.
    let stranger = libp2p::identity::Keypair::generate_ed25519();
    let forged = sign_catalogue(
        &stranger,
        &catalogue("Tunes", 2),
        Some(company_cert.clone()),
    );
    let e = held.offer(forged.unwrap()).unwrap_err();
    assert!(
        e.contains("not signed by an enrolled content company"),
        "{e}"
    );
    // No certificate at all: refused.
    let bare = sign_catalogue(&company, &catalogue("Tunes", 2), None);
    let e = held.offer(bare.unwrap()).unwrap_err();
    assert!(
        e.contains("not signed by an enrolled content company"),
        "{e}"
    );
    // A company name other than its certificate's: refused.
    let renamed = sign_catalogue(&company, &catalogue("Other Tunes", 2), Some(company_cert));
    let e = held.offer(renamed.unwrap()).unwrap_err();
    assert!(e.contains("its certificate"), "{e}");
    assert_eq!(
        held.version_of(&company.public().to_peer_id().to_bytes()),
        Some(1)
    );

    // Once the company's certificate is revoked, its catalogue is no longer used.
    assert_eq!(held.all().len(), 1);
    let (revocation, _) = membership::revoke(&net, company_serial).unwrap();
    let revocation = printmesh_protocol::membership::SignedRevocation::decode(
        &std::fs::read(revocation).unwrap(),
    )
    .unwrap();
    gate.accept_revocation(&revocation).unwrap();
    assert!(
        held.all().is_empty(),
        "a revoked company's catalogue is not used"
    );
}

/// A catalogue published while peers are connected reaches them by gossip at once,
/// long before their next request for catalogues, and through a relay too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_catalogue_is_gossiped_through_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(dir.path());
    let mut c = net.bare(Role::Content, "Tunes", "content", vec![]);
    c.content = Some(ContentConfig::default());
    let content = net.start(c).await.unwrap();
    let files = dir.path().join("files");
    let (ok, said) = publish(&content, &write_catalogue(&files, 300, false));
    assert!(ok, "{said}");
    let addr = addr_of(&content).await.unwrap();
    let mut i = net.config(Role::Intermediary, vec![addr]).unwrap();
    i.data_dir = dir.path().join("intermediary");
    let intermediary = net.start(i).await.unwrap();
    ready(&intermediary, content.peer_id()).await;
    // A lab connected to the intermediary only: it hears by relay.
    let mut l = net
        .config(Role::Lab, vec![addr_of(&intermediary).await.unwrap()])
        .unwrap();
    l.data_dir = dir.path().join("lab");
    let lab = net.start(l).await.unwrap();
    ready(&lab, intermediary.peer_id()).await;
    let company = content.peer_id().to_bytes();
    // Let the gossip mesh form (heartbeats of a second), then publish a new version.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, said) = publish(&content, &write_catalogue(&files, 350, false));
    assert!(ok && said.contains("version 2"), "{said}");
    let started = std::time::Instant::now();
    while intermediary.catalogues.version_of(&company) != Some(2)
        || lab.catalogues.version_of(&company) != Some(2)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not gossiped: the intermediary has {:?}, the lab {:?}",
            intermediary.catalogues.version_of(&company),
            lab.catalogues.version_of(&company)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Well before the next request for catalogues (every 20 s).
    assert!(started.elapsed() < printmesh_runtime::catalogues::SYNC_EVERY / 2);
    lab.shutdown().await;
    intermediary.shutdown().await;
    content.shutdown().await;
}

/// Publishing the same files again (every start, with `[content] catalogue`) does not
/// read them again: a file of the same length and modification time is taken to be
/// the one stored (as make and rsync do); a file that changed is read and published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_file_is_not_read_again_and_a_changed_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(dir.path());
    let mut c = net.bare(Role::Content, "Tunes", "content", vec![]);
    c.content = Some(ContentConfig::default());
    let content = net.start(c).await.unwrap();
    let files = dir.path().join("files");
    let catalogue = write_catalogue(&files, 300, false);
    let (ok, said) = publish(&content, &catalogue);
    assert!(ok && said.contains("version 1"), "{said}");
    // Other bytes of the same length, the file's time put back: taken as unchanged.
    let tune = files.join("items/dawn.wav");
    let when = std::fs::metadata(&tune).unwrap().modified().unwrap();
    let mut other = tune_bytes();
    other[0] ^= 0xFF;
    std::fs::write(&tune, &other).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tune)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let (ok, said) = publish(&content, &catalogue);
    assert!(ok && said.contains("unchanged"), "{said}");
    // Touched: read again, and published as changed.
    std::fs::File::options()
        .write(true)
        .open(&tune)
        .unwrap()
        .set_modified(when + Duration::from_secs(1))
        .unwrap();
    let (ok, said) = publish(&content, &catalogue);
    assert!(
        ok && said.contains("version 2") && said.contains("changed: dawn"),
        "{said}"
    );
    content.shutdown().await;
}

fn tune_bytes() -> Vec<u8> {
    tune(3 * 1024 * 1024 + 17)
}
