//! Downloads written onto a real FAT32 filesystem: a card image made by `mkfs.vfat`
//! (dosfstools), mounted through FUSE (`fusefat`; loop-mounted vfat needs privileges
//! CI machines lack), and checked afterwards by readers that are not ours: `fsck.fat -n`
//! and mtools' `mdir`/`mcopy`. `.ci/run` installs dosfstools, fusefat and mtools.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use printmesh_nodes::fatcard::FatCard;
use printmesh_nodes::roles::kiosk::cardwrite::{
    card_info, remove_leftovers, write_item, WriteError, WriteJob,
};
use printmesh_protocol::BlobId;

const PHOTO: &[u8] = b"\xFF\xD8 a camera's photo \xFF\xD9";

/// A fresh card of `mb` MiB with serial 1234-ABCD and a camera's photo on it, mounted.
struct Card {
    _dir: tempfile::TempDir,
    card: FatCard,
}

impl std::ops::Deref for Card {
    type Target = FatCard;
    fn deref(&self) -> &FatCard {
        &self.card
    }
}

impl std::ops::DerefMut for Card {
    fn deref_mut(&mut self) -> &mut FatCard {
        &mut self.card
    }
}

impl Card {
    fn new(mb: u64) -> Card {
        let dir = tempfile::tempdir().unwrap();
        let mut card = FatCard::create(
            &dir.path().join("card.img"),
            &dir.path().join("mnt"),
            mb,
            0x1234_ABCD,
            "PMCARD",
            &[("DCIM/PMSH0001.JPG", PHOTO.to_vec())],
        )
        .unwrap();
        card.mount(true).unwrap();
        Card { _dir: dir, card }
    }
}

/// A download in the kiosk's cache: `len` bytes of a repeating pattern.
fn download(dir: &Path, len: usize) -> (PathBuf, BlobId) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.join("item.bin");
    std::fs::write(&path, &bytes).unwrap();
    (path, BlobId::of(&bytes))
}

fn job<'a>(card: &'a Card, source: &'a Path, blob: BlobId, size: u64) -> WriteJob<'a> {
    WriteJob {
        media_dir: &card.mnt,
        folder: "MUSIC/PRINTMSH",
        file_name: "DAWN.WAV",
        source,
        blob,
        size,
        licence: Some("PMLIC1-ABCDEFG"),
    }
}

#[test]
fn a_download_is_written_whole_onto_fat32_and_an_independent_reader_agrees() {
    let mut card = Card::new(64);
    let info = card_info(&card.mnt, &card.image).unwrap();
    assert_eq!(info.serial_text(), "1234-ABCD");
    assert_eq!(info.label, "PMCARD");
    // fusefat says nothing of free space; the FAT is counted instead. mdir agrees.
    let free_before = info.free_bytes;
    let listed = card.list("");
    let mdir_free: u64 = listed
        .lines()
        .find(|l| l.contains("bytes free"))
        .map(|l| l.chars().filter(char::is_ascii_digit).collect::<String>())
        .and_then(|d| d.parse().ok())
        .expect("mdir prints the free bytes");
    card.eject();
    card.mount(true).unwrap();
    assert_eq!(free_before, mdir_free, "{listed}");
    let tmp = tempfile::tempdir().unwrap();
    let len = 5 * 1024 * 1024 + 123;
    let (source, blob) = download(tmp.path(), len);
    let mut last = (0, 0);
    let written = write_item(&job(&card, &source, blob, len as u64), &mut |d, t| {
        last = (d, t)
    })
    .unwrap();
    assert_eq!(written.card_path, "MUSIC/PRINTMSH/DAWN.WAV");
    assert_eq!(last, (2 * len as u64, 2 * len as u64));
    let after = card_info(&card.mnt, &card.image).unwrap().free_bytes;
    assert!(free_before - after >= len as u64, "{free_before} → {after}");
    card.eject();

    card.fsck().expect("fsck.fat -n finds the card clean");
    let bytes = card
        .read("MUSIC/PRINTMSH/DAWN.WAV")
        .expect("mcopy reads it");
    assert_eq!(BlobId::of(&bytes), blob);
    assert_eq!(
        card.read("MUSIC/PRINTMSH/DAWN.WAV.pmlicence").as_deref(),
        Some(&b"PMLIC1-ABCDEFG"[..])
    );
    assert_eq!(
        card.read("DCIM/PMSH0001.JPG").as_deref(),
        Some(PHOTO),
        "the camera's photo is untouched"
    );
    let listing = card.list("MUSIC/PRINTMSH");
    assert!(
        !listing.contains(".pm-"),
        "no temporary file left: {listing}"
    );
}

#[test]
fn a_card_pulled_mid_write_holds_no_partial_file_and_is_clean_once_seen_again() {
    let mut card = Card::new(64);
    let tmp = tempfile::tempdir().unwrap();
    let len = 30 * 1024 * 1024;
    let (source, blob) = download(tmp.path(), len);
    let fuse_pid = card.driver_pid().unwrap();
    let mut pulled = false;
    let e = write_item(&job(&card, &source, blob, len as u64), &mut |done, _| {
        if !pulled && done >= 10 * 1024 * 1024 {
            // The customer pulls the card: the driver dies between two writes.
            let _ = Command::new("kill")
                .arg("-9")
                .arg(fuse_pid.to_string())
                .status();
            pulled = true;
        }
    })
    .unwrap_err();
    assert!(pulled);
    assert_eq!(e, WriteError::CardGone, "{e}");
    card.pull();
    assert!(
        card.read("MUSIC/PRINTMSH/DAWN.WAV").is_none(),
        "nothing under the item's name: {}",
        card.list("MUSIC/PRINTMSH")
    );
    // Seen again by a kiosk: its own leftover goes, nothing else is touched.
    card.mount(true).unwrap();
    assert_eq!(remove_leftovers(&card.mnt, ["MUSIC/PRINTMSH"]), 1);
    card.eject();
    card.fsck().expect("fsck.fat -n finds the card clean");
    let listing = card.list("MUSIC/PRINTMSH");
    assert!(
        !listing.contains("DAWN") && !listing.contains(".pm-"),
        "{listing}"
    );
    assert!(card.read("DCIM/PMSH0001.JPG").is_some());
}

#[test]
fn a_write_protected_card_and_a_full_card_are_refused_in_plain_words() {
    let mut card = Card::new(40);
    let tmp = tempfile::tempdir().unwrap();
    // Write-protected: mounted read-only.
    card.eject();
    card.mount(false).unwrap();
    let (source, blob) = download(tmp.path(), 4096);
    let e = write_item(&job(&card, &source, blob, 4096), &mut |_, _| {}).unwrap_err();
    assert_eq!(e, WriteError::WriteProtected, "{e}");
    assert!(e.to_string().contains("write-protected"));
    card.eject();
    assert!(card.read("MUSIC/PRINTMSH/DAWN.WAV").is_none());

    // Too full: the space check says so before anything is written, and a write that
    // runs out of room anyway leaves nothing behind.
    card.mount(true).unwrap();
    let info = card_info(&card.mnt, &card.image).unwrap();
    let len = info.free_bytes as usize + 4096;
    let big = tmp.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let (source, blob) = download(&big, len);
    assert!(!info.fits(&[len as u64]));
    let e = write_item(&job(&card, &source, blob, len as u64), &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, WriteError::Full { .. }), "{e}");
    card.eject();
    card.fsck().expect("fsck.fat -n finds the card clean");
    let listing = card.list("MUSIC/PRINTMSH");
    assert!(
        !listing.contains("DAWN") && !listing.contains(".pm-"),
        "{listing}"
    );
}
