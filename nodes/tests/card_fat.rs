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
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use printmesh_nodes::roles::kiosk::cardwrite::{
    card_info, remove_leftovers, write_item, WriteError, WriteJob,
};
use printmesh_protocol::BlobId;

/// A FAT32 card image, mounted at `mnt` while `fuse` runs.
struct Card {
    _dir: tempfile::TempDir,
    image: PathBuf,
    mnt: PathBuf,
    fuse: Option<Child>,
}

fn need(tool: &str) {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(tool).is_file());
    assert!(
        found,
        "{tool} is missing: these tests need dosfstools, fusefat and mtools (.ci/run installs them)"
    );
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn mkfs() -> Command {
    let path = ["/usr/sbin/mkfs.vfat", "/sbin/mkfs.vfat"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mkfs.vfat");
    Command::new(path)
}

fn fsck() -> Command {
    let path = ["/usr/sbin/fsck.fat", "/sbin/fsck.fat"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("fsck.fat");
    Command::new(path)
}

impl Card {
    /// A fresh card of `mb` MiB with serial 1234-ABCD and a camera's photo on it.
    fn new(mb: u64) -> Card {
        need("fusefat");
        need("mdir");
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("card.img");
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(mb * 1024 * 1024).unwrap();
        drop(f);
        let (ok, out) = run(mkfs()
            .args(["-F", "32", "-n", "PMCARD", "-i", "1234ABCD"])
            .arg(&image));
        assert!(ok, "mkfs.vfat: {out}");
        // The camera's own files, which must come out untouched.
        let photo = dir.path().join("PMSH0001.JPG");
        std::fs::write(&photo, b"\xFF\xD8 a camera's photo \xFF\xD9").unwrap();
        let (ok, out) = run(Command::new("mmd").arg("-i").arg(&image).arg("::/DCIM"));
        assert!(ok, "mmd: {out}");
        let (ok, out) = run(Command::new("mcopy")
            .arg("-i")
            .arg(&image)
            .arg(&photo)
            .arg("::/DCIM/PMSH0001.JPG"));
        assert!(ok, "mcopy: {out}");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let mut card = Card {
            _dir: dir,
            image,
            mnt,
            fuse: None,
        };
        card.mount(true);
        card
    }

    /// Mounts the card through fusefat in the foreground (so the test can pull it by
    /// killing the driver), read-write or read-only (a write-protected card).
    fn mount(&mut self, rw: bool) {
        let child = Command::new("fusefat")
            .arg("-f")
            .args(["-o", if rw { "rw+" } else { "ro" }])
            .arg(&self.image)
            .arg(&self.mnt)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fusefat starts");
        self.fuse = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.mnt.join("DCIM").is_dir() {
            assert!(Instant::now() < deadline, "fusefat did not mount the card");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A clean eject: unmounted, the driver gone.
    fn eject(&mut self) {
        if let Some(mut child) = self.fuse.take() {
            let _ = Command::new("fusermount").arg("-u").arg(&self.mnt).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The card pulled: the driver dies at once, nothing more reaches the image.
    fn pull(&mut self) {
        if let Some(mut child) = self.fuse.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = Command::new("fusermount")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
        }
    }

    /// `fsck.fat -n`: whether the filesystem is clean, and what it said.
    fn fsck(&self) -> (bool, String) {
        run(fsck().arg("-n").arg(&self.image))
    }

    /// A file's bytes read by mtools (not through our mount).
    fn mcopy_out(&self, card_path: &str) -> Option<Vec<u8>> {
        let out = Command::new("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(&self.image)
            .arg(format!("::/{card_path}"))
            .arg("-")
            .output()
            .ok()?;
        out.status.success().then_some(out.stdout)
    }

    fn mdir(&self, folder: &str) -> String {
        run(Command::new("mdir")
            .arg("-a")
            .arg("-i")
            .arg(&self.image)
            .arg(format!("::/{folder}")))
        .1
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        self.eject();
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
    let listed = card.mdir("");
    let mdir_free: u64 = listed
        .lines()
        .find(|l| l.contains("bytes free"))
        .map(|l| l.chars().filter(char::is_ascii_digit).collect::<String>())
        .and_then(|d| d.parse().ok())
        .expect("mdir prints the free bytes");
    card.eject();
    card.mount(true);
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

    let (clean, said) = card.fsck();
    assert!(clean, "fsck.fat -n: {said}");
    let bytes = card
        .mcopy_out("MUSIC/PRINTMSH/DAWN.WAV")
        .expect("mcopy reads it");
    assert_eq!(BlobId::of(&bytes), blob);
    assert_eq!(
        card.mcopy_out("MUSIC/PRINTMSH/DAWN.WAV.pmlicence")
            .as_deref(),
        Some(&b"PMLIC1-ABCDEFG"[..])
    );
    assert_eq!(
        card.mcopy_out("DCIM/PMSH0001.JPG").as_deref(),
        Some(&b"\xFF\xD8 a camera's photo \xFF\xD9"[..]),
        "the camera's photo is untouched"
    );
    let listing = card.mdir("MUSIC/PRINTMSH");
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
    let fuse_pid = card.fuse.as_ref().map(Child::id).unwrap();
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
        card.mcopy_out("MUSIC/PRINTMSH/DAWN.WAV").is_none(),
        "nothing under the item's name: {}",
        card.mdir("MUSIC/PRINTMSH")
    );
    // Seen again by a kiosk: its own leftover goes, nothing else is touched.
    card.mount(true);
    assert_eq!(remove_leftovers(&card.mnt, ["MUSIC/PRINTMSH"]), 1);
    card.eject();
    let (clean, said) = card.fsck();
    assert!(clean, "fsck.fat -n: {said}");
    let listing = card.mdir("MUSIC/PRINTMSH");
    assert!(
        !listing.contains("DAWN") && !listing.contains(".pm-"),
        "{listing}"
    );
    assert!(card.mcopy_out("DCIM/PMSH0001.JPG").is_some());
}

#[test]
fn a_write_protected_card_and_a_full_card_are_refused_in_plain_words() {
    let mut card = Card::new(40);
    let tmp = tempfile::tempdir().unwrap();
    // Write-protected: mounted read-only.
    card.eject();
    card.mount(false);
    let (source, blob) = download(tmp.path(), 4096);
    let e = write_item(&job(&card, &source, blob, 4096), &mut |_, _| {}).unwrap_err();
    assert_eq!(e, WriteError::WriteProtected, "{e}");
    assert!(e.to_string().contains("write-protected"));
    card.eject();
    assert!(card.mcopy_out("MUSIC/PRINTMSH/DAWN.WAV").is_none());

    // Too full: the space check says so before anything is written, and a write that
    // runs out of room anyway leaves nothing behind.
    card.mount(true);
    let info = card_info(&card.mnt, &card.image).unwrap();
    let len = info.free_bytes as usize + 4096;
    let big = tmp.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let (source, blob) = download(&big, len);
    assert!(!info.fits(len as u64));
    let e = write_item(&job(&card, &source, blob, len as u64), &mut |_, _| {}).unwrap_err();
    assert!(matches!(e, WriteError::Full { .. }), "{e}");
    card.eject();
    let (clean, said) = card.fsck();
    assert!(clean, "fsck.fat -n: {said}");
    let listing = card.mdir("MUSIC/PRINTMSH");
    assert!(
        !listing.contains("DAWN") && !listing.contains(".pm-"),
        "{listing}"
    );
}
