//! Downloads benchmark: from "pay" to "you can remove your card" for a 100 MB item,
//! against `cp` of the same file onto the same card plus `sync`, measured in the same
//! run on the same FAT32 card image (mounted through fusefat).
//!
//! - baseline: `cp ITEM CARD/BENCH/COPY.BIN && sync`;
//! - cached: the item already at the kiosk: the whole purchase (card checks, the
//!   authorisation through an intermediary and the acquirer, the write under a
//!   temporary name synced every 8 MiB, the read-back and hash, the rename, the
//!   licence, the capture);
//! - fetched: the same with the kiosk's cache emptied first, so the 100 MB come from the
//!   content company over libp2p before the payment.
//!
//! `cargo bench -p printmesh-nodes --bench downloads` (needs dosfstools, fusefat and
//! mtools, as the tests do).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use printmesh_nodes::cards::load_cards;
use printmesh_nodes::config::ContentConfig;
use printmesh_nodes::fatcard::FatCard;
use printmesh_nodes::node::start_role;
use printmesh_nodes::roles::kiosk::downloads::{DownloadDraft, DownloadOutcome};
use printmesh_nodes::roles::kiosk::Kiosk;
use printmesh_nodes::testnet::{addr_of, fixtures_dir, TestNet};
use printmesh_protocol::messages::Role;

const ITEM_BYTES: usize = 100 * 1024 * 1024;
const RUNS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn sync() {
    Command::new("sync").status().unwrap();
}

/// Takes what a run wrote off the card again (through the mount; the folders stay),
/// synced.
fn clear_card(card: &Path) {
    for dir in ["BENCH", "GAMES/PRINTMSH"] {
        for e in std::fs::read_dir(card.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    sync();
}

async fn buy(kiosk: &Arc<Kiosk>, company: &[u8]) -> Duration {
    let cards = load_cards(&fixtures_dir().join("cards.toml")).unwrap();
    let visa = cards.iter().find(|c| c.name == "visa-ok").unwrap();
    let draft = DownloadDraft {
        company: company.to_vec(),
        items: vec!["big".parse().unwrap()],
        method: visa.method(),
        card: visa.read().unwrap(),
        entry: printmesh_protocol::seal::EntryMode::Swipe,
        pin: None,
        shown_total: None,
    };
    let started = Instant::now();
    let outcome = kiosk.buy_downloads(draft, &|_| {}).await.unwrap();
    let took = started.elapsed();
    assert!(
        matches!(outcome, DownloadOutcome::Done(_)),
        "the purchase: {outcome:?}"
    );
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Some(missing) = printmesh_nodes::fatcard::tools_missing() {
        panic!("{missing}");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = TestNet::new(d);

    // The item and its catalogue.
    let files = d.join("company");
    std::fs::create_dir_all(files.join("items")).unwrap();
    let bytes: Vec<u8> = (0..ITEM_BYTES)
        .map(|i| ((i * 2654435761usize) >> 13) as u8)
        .collect();
    std::fs::write(files.join("items/big.bin"), &bytes).unwrap();
    drop(bytes);
    std::fs::write(
        files.join("catalogue.toml"),
        "[[item]]\nid = \"big\"\nkind = \"game\"\ntitle_ja = \"大きなゲーム\"\ntitle_en = \"Big Game\"\nprice_minor = 1500\nrights_holder = \"printmesh\"\nfile = \"items/big.bin\"\nfolder = \"GAMES/PRINTMSH\"\nfile_name = \"BIG.BIN\"\n",
    )
    .unwrap();

    let acquirer = start_role(net.config(Role::Acquirer, vec![]).unwrap())
        .await
        .unwrap();
    let mut c = net.bare(Role::Content, "Bench Content", "content", vec![]);
    c.content = Some(ContentConfig {
        catalogue: Some(files.join("catalogue.toml")),
    });
    let content = start_role(c).await.unwrap();
    let content_addr = addr_of(&content).await.unwrap();
    let intermediary = start_role(
        net.config(
            Role::Intermediary,
            vec![addr_of(&acquirer).await.unwrap(), content_addr.clone()],
        )
        .unwrap(),
    )
    .await
    .unwrap();

    let mut card = FatCard::create(
        &d.join("card.img"),
        &d.join("slot"),
        512,
        0xBE7C_0001,
        "PMCARD",
        &[],
    )
    .unwrap();
    card.mount(true).unwrap();
    let mut k = net
        .config(
            Role::Kiosk,
            vec![addr_of(&intermediary).await.unwrap(), content_addr],
        )
        .unwrap();
    if let Some(s) = k.kiosk.as_mut() {
        s.media_dir = Some(card.mnt.clone());
        s.media_device = Some(card.image.clone());
        s.acquirer_key_file = Some(d.join("acquirer").join("seal.pub"));
        s.answer_timeout_secs = 60;
    }
    let (kiosk_node, kiosk) = printmesh_nodes::node::start_kiosk(k).await.unwrap();
    let company = kiosk
        .wait_for_items(&["big".parse().unwrap()], Duration::from_secs(60))
        .await
        .expect("the catalogue reaches the kiosk");
    intermediary
        .client
        .wait_for_role(Role::Acquirer, Duration::from_secs(20))
        .await
        .unwrap();

    // Baseline: cp + sync of the same bytes onto the same card.
    let source = files.join("items/big.bin");
    let mut baseline = Vec::new();
    for _ in 0..RUNS {
        clear_card(&card.mnt);
        if !card.mnt.join("BENCH").is_dir() {
            std::fs::create_dir(card.mnt.join("BENCH")).unwrap();
        }
        let started = Instant::now();
        let ok = Command::new("cp")
            .arg(&source)
            .arg(card.mnt.join("BENCH/COPY.BIN"))
            .status()
            .unwrap()
            .success();
        sync();
        baseline.push(started.elapsed());
        assert!(ok);
    }
    clear_card(&card.mnt);

    // The first purchase fetches the item over libp2p; the cache is emptied before
    // each fetched run.
    let cache = kiosk.download_cache().clone();
    let blob = printmesh_protocol::BlobId::of(&std::fs::read(&source).unwrap());
    let mut fetched = Vec::new();
    for _ in 0..RUNS.min(2) {
        clear_card(&card.mnt);
        let _ = std::fs::remove_file(cache.path(&blob));
        fetched.push(buy(&kiosk, &company).await);
    }
    let mut cached = Vec::new();
    for _ in 0..RUNS {
        clear_card(&card.mnt);
        assert!(cache.has(&blob));
        cached.push(buy(&kiosk, &company).await);
    }
    clear_card(&card.mnt);

    let (b, c, f) = (
        median(baseline.clone()),
        median(cached.clone()),
        median(fetched.clone()),
    );
    println!(
        "downloads: a {} MB item onto a FAT32 card image through fusefat",
        ITEM_BYTES / (1024 * 1024)
    );
    println!(
        "  cp + sync (baseline)            {:>6.2} s  (runs: {:?})",
        secs(b),
        baseline
            .iter()
            .map(|d| format!("{:.2}", secs(*d)))
            .collect::<Vec<_>>()
    );
    println!(
        "  pay → remove your card, cached  {:>6.2} s  (runs: {:?})",
        secs(c),
        cached
            .iter()
            .map(|d| format!("{:.2}", secs(*d)))
            .collect::<Vec<_>>()
    );
    println!(
        "  pay → remove your card, fetched {:>6.2} s  (runs: {:?})",
        secs(f),
        fetched
            .iter()
            .map(|d| format!("{:.2}", secs(*d)))
            .collect::<Vec<_>>()
    );
    println!(
        "  ratio cached / baseline   {:.2}x  (target ≤ 1.5x)",
        secs(c) / secs(b)
    );
    println!("  ratio fetched / baseline  {:.2}x", secs(f) / secs(b));

    kiosk_node.shutdown().await;
    intermediary.shutdown().await;
    content.shutdown().await;
    acquirer.shutdown().await;
    card.eject();
}
