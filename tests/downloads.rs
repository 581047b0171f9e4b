//! Downloads across separate processes of the binary (content company, intermediary,
//! acquirer, kiosks), written onto real FAT32 card images mounted through fusefat and
//! checked by readers that are not ours (`fsck.fat -n`, mtools): a purchase end to end,
//! a licence honoured at another kiosk without a second charge, a card too full, a
//! write-protected card, a card pulled mid-write, a blob whose bytes do not match, and
//! the settlement of four parties agreeing to the yen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    acquirer_config, acquirer_key_file, eventually, fixtures, run, totals, write_config, NodeProc,
};
use printmesh_nodes::fatcard::FatCard;
use serde_json::Value;

/// The fixture memory card's files (photos and the camera's DPOF order), as a card
/// image takes them.
fn fixture_card_files() -> Vec<(String, Vec<u8>)> {
    let root = fixtures().join("memory-card");
    let mut out = Vec::new();
    for sub in ["DCIM/100PMESH", "MISC"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap().flatten() {
            let name = format!("{sub}/{}", e.file_name().to_string_lossy());
            out.push((name, std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 131 + usize::from(seed) * 7) % 251) as u8)
        .collect()
}

/// The company's files and catalogue: a tune, a picture (a real JPEG) and a large
/// game-data file.
fn catalogue(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("items")).unwrap();
    std::fs::write(dir.join("items/dawn.wav"), pattern(2 * 1024 * 1024 + 7, 1)).unwrap();
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 120]));
    img.save(dir.join("items/sky.jpg")).unwrap();
    std::fs::write(dir.join("items/big.bin"), pattern(40 * 1024 * 1024, 3)).unwrap();
    std::fs::write(dir.join("items/rain.wav"), pattern(300_000, 5)).unwrap();
    let text = r#"
[[item]]
id = "dawn"
kind = "music"
title_ja = "夜明けの歌"
title_en = "Song of Dawn"
title_kana = "よあけのうた"
artist_en = "printmesh"
price_minor = 300
rights_holder = "printmesh"
file = "items/dawn.wav"
folder = "MUSIC/PRINTMSH"
file_name = "DAWN.WAV"

[[item]]
id = "sky"
kind = "image"
title_ja = "空"
title_en = "Sky"
price_minor = 200
rights_holder = "printmesh"
file = "items/sky.jpg"
folder = "PICTURES/PRINTMSH"
file_name = "SKY.JPG"

[[item]]
id = "rain"
kind = "music"
title_ja = "雨のワルツ"
title_en = "Rain Waltz"
title_kana = "あめのわるつ"
price_minor = 250
rights_holder = "printmesh"
file = "items/rain.wav"
folder = "MUSIC/PRINTMSH"
file_name = "RAIN.WAV"

[[item]]
id = "big"
kind = "game"
title_ja = "大きなゲーム"
title_en = "Big Game"
price_minor = 1500
rights_holder = "printmesh"
file = "items/big.bin"
folder = "GAMES/PRINTMSH"
file_name = "BIG.BIN"
"#;
    let path = dir.join("catalogue.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn kiosk_config(
    dir: &Path,
    network: &str,
    folder: &str,
    store: &str,
    card: &FatCard,
    peers: &[String],
) -> PathBuf {
    let fx = fixtures();
    let section = format!(
        "[kiosk]\nstore = \"{store}\"\nstore_name = \"Test Store\"\nprices = \"{}\"\nmedia_dir = \"{}\"\nmedia_device = \"{}\"\ncards = \"{}\"\nacquirer_key_file = \"{}\"\nanswer_timeout_secs = 20",
        fx.join("demo/prices.toml").display(),
        card.mnt.display(),
        card.image.display(),
        fx.join("cards.toml").display(),
        acquirer_key_file(dir).display()
    );
    let sub = dir.join(folder);
    std::fs::create_dir_all(&sub).unwrap();
    // Each kiosk keeps its own data, under its folder.
    write_config(&sub, "kiosk", network, peers, &section)
}

fn download(kiosk: &Path, items: &[&str]) -> (bool, Value, String) {
    let mut args = vec![
        "kiosk",
        "--config",
        kiosk.to_str().unwrap(),
        "download",
        "--card",
        "visa-ok",
    ];
    for i in items {
        args.extend(["--item", i]);
    }
    let (ok, text) = run(&args);
    let json = text
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (ok, json, text)
}

/// A role's report of today, its totals.
fn report(role: &str, config: &Path) -> BTreeMap<String, i64> {
    let date = chrono::Utc::now().date_naive().to_string();
    totals(&common::report_csv(role, config, &date))
}

#[test]
fn downloads_are_written_honoured_refused_and_settled_across_four_parties() {
    if let Some(missing) = printmesh_nodes::fatcard::tools_missing() {
        panic!("{missing} (.ci/run installs dosfstools, fusefat and mtools)");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let network = format!("downloads-{}", std::process::id());
    let catalogue_file = catalogue(&d.join("company"));
    let acquirer_cfg = acquirer_config(d, &network);
    let acquirer = NodeProc::start("acquirer", &acquirer_cfg, d);
    let content_cfg = write_config(
        d,
        "content",
        &network,
        &[],
        &format!("[content]\ncatalogue = \"{}\"", catalogue_file.display()),
    );
    let content = NodeProc::start("content", &content_cfg, d);
    let lab_cfg = common::lab_config(
        d,
        &network,
        r#"["mon", "tue", "wed", "thu", "fri", "sat", "sun"]"#,
    );
    let lab = NodeProc::start("lab", &lab_cfg, d);
    let peers = [
        acquirer.addrs[0].clone(),
        content.addrs[0].clone(),
        lab.addrs[0].clone(),
    ];
    let intermediary_cfg = common::intermediary_config(d, &network, "/ip4/127.0.0.1/tcp/0", &peers);
    let intermediary = NodeProc::start("intermediary", &intermediary_cfg, d);
    let kiosk_peers = [intermediary.addrs[0].clone(), content.addrs[0].clone()];

    let mut card = FatCard::create(
        &d.join("card.img"),
        &d.join("slot"),
        64,
        0xA1B2_C3D4,
        "PMCARD",
        &fixture_card_files()
            .iter()
            .map(|(p, b)| (p.as_str(), b.clone()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    card.mount(true).unwrap();
    let kiosk_a = kiosk_config(d, &network, "store-a", "store-a", &card, &kiosk_peers);

    // 1. A purchase, end to end: two items on the card, each with its licence.
    let (ok, bought, text) = download(&kiosk_a, &["dawn", "sky"]);
    assert!(ok, "{text}");
    assert_eq!(bought["outcome"], "done", "{bought}");
    assert_eq!(bought["total_minor"], 500);
    assert_eq!(bought["card"], "A1B2-C3D4");
    let items = bought["items"].as_array().unwrap();
    assert_eq!(items[0]["card_path"], "MUSIC/PRINTMSH/DAWN.WAV");
    assert_eq!(items[1]["card_path"], "PICTURES/PRINTMSH/SKY.JPG");
    assert_eq!(items[0]["code"].as_str().unwrap().len(), 14);
    card.eject();
    card.fsck()
        .expect("fsck.fat -n: the card is clean after the purchase");
    let dawn = std::fs::read(d.join("company/items/dawn.wav")).unwrap();
    assert_eq!(
        blake3::hash(&card.read("MUSIC/PRINTMSH/DAWN.WAV").unwrap()),
        blake3::hash(&dawn)
    );
    let sky = std::fs::read(d.join("company/items/sky.jpg")).unwrap();
    assert_eq!(card.read("PICTURES/PRINTMSH/SKY.JPG").unwrap(), sky);
    let licence = card.read("MUSIC/PRINTMSH/DAWN.WAV.pmlicence").unwrap();
    assert_eq!(
        String::from_utf8(licence).unwrap(),
        items[0]["licence"].as_str().unwrap()
    );
    for (path, bytes) in fixture_card_files() {
        assert_eq!(
            card.read(&path).unwrap(),
            bytes,
            "the camera's {path} is untouched"
        );
    }
    eventually("the capture", d, || {
        report("acquirer", &acquirer_cfg).get("captured not yet settled") == Some(&500)
    });

    // 1b. A second purchase, refunded by the acquirer before settlement: its licence
    //     is revoked (the `Refunded` event reaches every kiosk).
    card.mount(true).unwrap();
    let (ok, rain, text) = download(&kiosk_a, &["rain"]);
    assert!(ok, "{text}");
    let rain_order = rain["order_id"].as_str().unwrap().to_string();
    let (ok, text) = run(&[
        "acquirer",
        "--config",
        acquirer_cfg.to_str().unwrap(),
        "refund",
        &rain_order,
        "--reason",
        "the customer asked",
    ]);
    assert!(ok && text.contains("licences are revoked"), "{text}");
    card.eject();
    eventually("the refund off the books", d, || {
        report("acquirer", &acquirer_cfg).get("captured not yet settled") == Some(&500)
    });

    // 2. The customer deleted the tunes at home; another kiosk (another store, nothing
    //    cached) writes the paid one again from the licence on the card, without a
    //    charge, and refuses the refunded one.
    card.delete("MUSIC/PRINTMSH/DAWN.WAV").unwrap();
    card.delete("MUSIC/PRINTMSH/RAIN.WAV").unwrap();
    card.mount(true).unwrap();
    let kiosk_b = kiosk_config(d, &network, "store-b", "store-b", &card, &kiosk_peers);
    let (ok, text) = run(&["kiosk", "--config", kiosk_b.to_str().unwrap(), "rewrite"]);
    assert!(!ok, "a refused licence is reported: {text}");
    let list: Value =
        serde_json::from_str(text.lines().find(|l| l.starts_with('[')).unwrap()).unwrap();
    let outcome = |item: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["item"] == item)
            .map(|r| r["outcome"].clone())
    };
    assert_eq!(outcome("dawn"), Some("rewritten".into()), "{list}");
    assert_eq!(outcome("sky"), Some("intact".into()), "{list}");
    let revoked = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["file"].as_str().is_some_and(|f| f.contains("RAIN")))
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(revoked["outcome"], "refused", "{list}");
    assert!(
        revoked["reason"].as_str().unwrap().contains("revoked"),
        "{list}"
    );
    card.eject();
    card.fsck().expect("clean after the rewrite");
    assert!(
        card.read("MUSIC/PRINTMSH/RAIN.WAV").is_none(),
        "a revoked item is not written"
    );
    assert_eq!(
        blake3::hash(&card.read("MUSIC/PRINTMSH/DAWN.WAV").unwrap()),
        blake3::hash(&dawn)
    );
    assert_eq!(
        report("acquirer", &acquirer_cfg).get("captured not yet settled"),
        Some(&500),
        "no second charge"
    );

    // 3. A write-protected card: refused before any payment.
    card.mount(false).unwrap();
    let (ok, refused, text) = download(&kiosk_a, &["big"]);
    assert!(!ok, "{text}");
    assert_eq!(refused["outcome"], "write_failed", "{text}");
    assert!(refused["reason"]
        .as_str()
        .unwrap()
        .contains("write-protected"));
    assert!(
        refused["order_id"].is_null(),
        "nothing was authorised: {refused}"
    );
    card.eject();

    // 4. A card too full: refused before any payment.
    let mut small = FatCard::create(
        &d.join("small.img"),
        &d.join("slot-small"),
        34,
        0x0BAD_F00D,
        "SMALL",
        &[("DATA/FILLER.BIN", pattern(20 * 1024 * 1024, 9))],
    )
    .unwrap();
    small.mount(true).unwrap();
    let kiosk_c = kiosk_config(d, &network, "store-c", "store-c", &small, &kiosk_peers);
    let (ok, refused, text) = download(&kiosk_c, &["big"]);
    assert!(!ok, "{text}");
    assert_eq!(refused["outcome"], "write_failed", "{text}");
    assert!(
        refused["reason"].as_str().unwrap().contains("full"),
        "{refused}"
    );
    assert!(refused["order_id"].is_null());
    small.eject();
    small.fsck().expect("the full card is untouched and clean");
    assert_eq!(
        small.read("DATA/FILLER.BIN").unwrap(),
        pattern(20 * 1024 * 1024, 9)
    );

    // 5. The card pulled in the middle of a write: the hold is released, no partial
    //    file under the item's name, and the card is clean once a kiosk sees it again.
    card.mount(true).unwrap();
    let pid = card.driver_pid().unwrap();
    let mut child = Command::new(common::bin())
        .args([
            "kiosk",
            "--config",
            kiosk_a.to_str().unwrap(),
            "download",
            "--card",
            "visa-ok",
            "--item",
            "big",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tmp_dir = card.mnt.join("GAMES/PRINTMSH");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let growing = std::fs::read_dir(&tmp_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name().to_string_lossy().starts_with(".pm-")
                    && e.metadata().is_ok_and(|m| m.len() > 9 * 1024 * 1024)
            });
        if growing {
            break;
        }
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the write never started: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    let pulled: Value =
        serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(pulled["outcome"], "write_failed", "{text}");
    assert!(
        pulled["reason"].as_str().unwrap().contains("removed"),
        "{pulled}"
    );
    assert!(
        pulled["order_id"].is_string(),
        "it was authorised first: {pulled}"
    );
    card.pull();
    assert!(
        card.read("GAMES/PRINTMSH/BIG.BIN").is_none(),
        "{}",
        card.list("GAMES/PRINTMSH")
    );
    // What the pull left is the kiosk's temporary file's alone (its chain may be
    // longer than its length): no other file is damaged.
    if let Err(said) = card.fsck_but_hints() {
        for line in said
            .lines()
            .filter(|l| l.starts_with('/') && !l.contains(" files, "))
        {
            assert!(
                line.contains("/GAMES/PRINTMSH/.pm-"),
                "fsck.fat -n after the pull: {said}"
            );
        }
    }
    card.mount(true).unwrap();
    let (_, text) = run(&["kiosk", "--config", kiosk_a.to_str().unwrap(), "rewrite"]);
    // (Only the refunded tune's licence is refused.)
    assert_eq!(text.matches("\"refused\"").count(), 1, "{text}");
    card.eject();
    // Seen again, the leftover is gone and the filesystem is whole; the free-cluster
    // hint a pull can leave stale (whatever wrote the card) is all fsck may mention.
    card.fsck_but_hints().expect("clean once seen again");
    let listing = card.list("GAMES/PRINTMSH");
    assert!(
        !listing.contains("BIG") && !listing.contains(".pm-"),
        "{listing}"
    );
    // Only the purchase that was written is charged.
    assert_eq!(
        report("acquirer", &acquirer_cfg).get("captured not yet settled"),
        Some(&500)
    );

    // 6. Bytes that do not match the catalogue's hash: the kiosk that must fetch them
    //    refuses before any payment.
    let (ok, catalogue_json) = run(&[
        "content",
        "--config",
        content_cfg.to_str().unwrap(),
        "catalogue",
    ]);
    assert!(ok, "{catalogue_json}");
    let c: Value = serde_json::from_str(&catalogue_json).unwrap();
    let sky_blob = c["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "sky")
        .unwrap()["blob"]
        .as_str()
        .unwrap()
        .to_string();
    let stored = d.join("content/blobs").join(&sky_blob[..2]).join(&sky_blob);
    let mut bad = std::fs::read(&stored).unwrap();
    bad[100] ^= 0xFF;
    std::fs::write(&stored, bad).unwrap();
    small.mount(true).unwrap();
    let (ok, _, text) = download(&kiosk_c, &["sky"]);
    assert!(!ok && text.contains("do not match"), "{text}");
    small.eject();

    // 7. Prints from the same card's photos (the camera's DPOF picks: 3 L prints,
    //    90 yen), printed and shipped by the lab, which captures them.
    card.mount(true).unwrap();
    let (ok, text) = run(&[
        "kiosk",
        "--config",
        kiosk_a.to_str().unwrap(),
        "order",
        "--card",
        "jcb-ok",
        "--size",
        "L",
    ]);
    card.eject();
    assert!(ok, "{text}");
    let prints: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(prints["outcome"], "approved", "{prints}");
    let (ok, text) = run(&[
        "lab",
        "--config",
        lab_cfg.to_str().unwrap(),
        "ship",
        prints["order_id"].as_str().unwrap(),
    ]);
    assert!(ok && text.contains("shipped"), "{text}");
    eventually("the prints' capture", d, || {
        report("acquirer", &acquirer_cfg).get("captured not yet settled") == Some(&590)
    });

    // 8. Settlement across four kinds of party: the acquirer pays the intermediary,
    //    which keeps its commission (20 %) and pays the lab its print fees and the
    //    company its sales; the four reports agree to the yen.
    let (ok, text) = run(&[
        "acquirer",
        "--config",
        acquirer_cfg.to_str().unwrap(),
        "settle",
    ]);
    assert!(ok, "{text}");
    eventually("the company's and the lab's payments", d, || {
        report("content", &content_cfg).get("download sales received") == Some(&400)
            && report("lab", &lab_cfg).get("print fees received") == Some(&72)
    });
    let acq = report("acquirer", &acquirer_cfg);
    let im = report("intermediary", &intermediary_cfg);
    let co = report("content", &content_cfg);
    let lb = report("lab", &lab_cfg);
    assert_eq!(acq["paid to intermediaries"], 590, "{acq:?}");
    assert_eq!(im["received from the acquirer"], 590, "{im:?}");
    assert_eq!(im["commission kept"], 118);
    assert_eq!(im["print fees to labs"], 72);
    assert_eq!(lb["print fees received"], im["print fees to labs"]);
    assert_eq!(
        im["commission kept"]
            + im["download sales to content companies"]
            + im["print fees to labs"],
        im["received from the acquirer"]
    );
    assert_eq!(
        co["download sales received"],
        im["download sales to content companies"]
    );
    assert_eq!(im["download sales not yet paid"], 0);
    assert_eq!(acq["captured not yet settled"], 0);
    assert_eq!(im["print fees not yet paid"], 0);
    drop(intermediary);
    drop(lab);
    drop(content);
    drop(acquirer);
}
