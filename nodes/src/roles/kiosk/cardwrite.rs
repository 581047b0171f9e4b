//! Writing a download onto the customer's own memory card, mounted at `media_dir`
//! (FAT32 or exFAT, as cameras format them; by the kernel or through FUSE).
//!
//! An item goes into the folder its catalogue entry names, under a temporary name
//! (`.pm-<hash>.tmp`), is synced, read back and hashed, and only then renamed: a card
//! pulled at any moment holds the whole file or none of it under its real name. The
//! kiosk removes its own leftover temporary files the next time it sees the card.
//! Nothing that was on the card before is opened for writing, renamed or removed: a
//! different file already under the item's name keeps it, and the item takes the next
//! free name (`TUNE (2).WAV`).
//!
//! The item is synced every [`SYNC_EVERY_BYTES`]: a card pulled between two syncs
//! leaves a consistent filesystem with a shorter temporary file; one pulled inside a
//! stretch may leave that stretch's clusters lost (what any FAT writer risks, and what
//! `fsck.fat` or a camera's "repair" frees), never a file under its real name.
//!
//! Free space comes from the mounted filesystem, or, when the driver does not say
//! (`fusefat` answers `statfs` with zeros), from the FAT on the card's device; the
//! card's identity (its volume serial) from the device's boot sector.
//!
//! Blocking IO: run these off the runtime (`spawn_blocking`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use printmesh_formats::fat::{FatKind, Volume};
use printmesh_protocol::content::{valid_card_name, LICENCE_SUFFIX};
use printmesh_protocol::BlobId;
use thiserror::Error;

/// Bytes per read and write.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// The item is synced to the card every this many bytes, and progress reported then:
/// a card pulled between two syncs loses at most the clusters of the last stretch
/// (lost clusters that `fsck` frees), never the filesystem's consistency up to it.
pub const SYNC_EVERY_BYTES: u64 = 8 * 1024 * 1024;
/// Room kept free beyond an item's own size: its directory entries, the licence file
/// and a cluster's rounding.
pub const HEADROOM_BYTES: u64 = 256 * 1024;
/// What the kiosk's temporary files begin and end with.
pub const TMP_PREFIX: &str = ".pm-";
pub const TMP_SUFFIX: &str = ".tmp";

/// Why a write failed, in words a customer reads.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WriteError {
    #[error("the card was removed before the download was finished")]
    CardGone,
    #[error("the card is write-protected (slide its lock switch up and try again)")]
    WriteProtected,
    #[error("the card is full (the download needs {} MB)", mb(*need))]
    Full { need: u64 },
    #[error("the card could not be written: {0}")]
    Io(String),
    #[error("what was read back from the card does not match the download")]
    Mismatch,
    #[error("the download in the kiosk is damaged (it does not match its hash)")]
    SourceDamaged,
    #[error("the catalogue's place on the card is not one a card takes: {0}")]
    BadPlace(String),
}

/// Bytes as megabytes with one decimal, for a customer.
pub fn mb(bytes: u64) -> String {
    format!("{}.{}", bytes / 1_000_000, bytes % 1_000_000 / 100_000)
}

/// What the kiosk knows of an inserted card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardInfo {
    /// The volume serial (0x1234ABCD prints as `1234-ABCD`).
    pub serial: u32,
    pub kind: FatKind,
    pub label: String,
    /// Bytes free for files.
    pub free_bytes: u64,
    /// The allocation unit: every file takes whole clusters.
    pub cluster_bytes: u64,
}

impl CardInfo {
    pub fn serial_text(&self) -> String {
        format!("{:04X}-{:04X}", self.serial >> 16, self.serial & 0xFFFF)
    }

    /// What files of these sizes take on the card: each rounded up to whole clusters,
    /// with a cluster for each one's licence file, and the headroom.
    pub fn room_for(&self, sizes: &[u64]) -> u64 {
        let cluster = self.cluster_bytes.max(512);
        sizes
            .iter()
            .map(|s| {
                s.div_ceil(cluster)
                    .saturating_add(1)
                    .saturating_mul(cluster)
            })
            .fold(HEADROOM_BYTES, u64::saturating_add)
    }

    /// Whether files of these sizes (and their licences) fit.
    pub fn fits(&self, sizes: &[u64]) -> bool {
        self.room_for(sizes) <= self.free_bytes
    }
}

/// Reads the card's identity from its device's boot sector and its free space from the
/// mounted filesystem, or from the FAT when the driver does not tell.
pub fn card_info(media_dir: &Path, device: &Path) -> Result<CardInfo, WriteError> {
    let mut dev = File::open(device).map_err(|e| classify(e, media_dir))?;
    let volume = Volume::read(&mut dev).map_err(|e| WriteError::Io(e.to_string()))?;
    let mounted = fs2::total_space(media_dir)
        .ok()
        .filter(|&total| total > 0)
        .and_then(|_| fs2::available_space(media_dir).ok());
    let free_bytes = match mounted {
        Some(free) => free,
        None => volume
            .free_bytes(&mut dev)
            .map_err(|e| WriteError::Io(e.to_string()))?
            .ok_or_else(|| {
                WriteError::Io(format!(
                    "the {} card's free space cannot be read through this mount",
                    volume.kind
                ))
            })?,
    };
    Ok(CardInfo {
        serial: volume.serial,
        kind: volume.kind,
        label: volume.label,
        free_bytes,
        cluster_bytes: u64::from(volume.cluster_bytes),
    })
}

/// The serial of the card in the device now (a card swapped mid-purchase shows here).
pub fn serial_now(device: &Path) -> Result<u32, WriteError> {
    let mut dev = File::open(device).map_err(|_| WriteError::CardGone)?;
    Volume::read(&mut dev)
        .map(|v| v.serial)
        .map_err(|_| WriteError::CardGone)
}

/// Takes a file this kiosk wrote off the card again (an item of a purchase that was
/// not paid after all), synced. Best effort: a card that is gone keeps it.
pub fn remove_written(media_dir: &Path, card_path: &str) -> bool {
    let path = card_path
        .split('/')
        .filter(|p| valid_card_name(p))
        .fold(media_dir.to_path_buf(), |p, part| p.join(part));
    if path == media_dir || !card_present(media_dir) {
        return false;
    }
    let removed = fs::remove_file(&path).is_ok();
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    removed
}

/// Writes an item's licence beside it: `NAME.pmlicence`, or (another licence there
/// already, an earlier purchase's) `NAME (2).pmlicence` …; the same licence again
/// finds its own file. Returns the licence's path on the card.
pub fn write_licence(
    media_dir: &Path,
    item_card_path: &str,
    text: &str,
) -> Result<String, WriteError> {
    let mut item = media_dir.to_path_buf();
    for part in item_card_path.split('/') {
        if !valid_card_name(part) {
            return Err(WriteError::BadPlace(item_card_path.to_string()));
        }
        item.push(part);
    }
    let dir = item.parent().unwrap_or(media_dir).to_path_buf();
    let name = item
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    for n in 1..100u32 {
        let file = if n == 1 {
            format!("{name}{LICENCE_SUFFIX}")
        } else {
            format!("{name} ({n}){LICENCE_SUFFIX}")
        };
        let path = dir.join(&file);
        match fs::read(&path) {
            Ok(bytes) if bytes == text.as_bytes() => return Ok(rel(media_dir, &path)),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_small(&path, text.as_bytes(), media_dir)?;
                return Ok(rel(media_dir, &path));
            }
            Err(e) => return Err(classify(e, media_dir)),
        }
    }
    Err(WriteError::Io(format!("99 other licences beside {name}")))
}

fn rel(media_dir: &Path, path: &Path) -> String {
    path.strip_prefix(media_dir)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default()
}

/// Sorts an IO error into what the customer is told. A card that is gone shows as
/// its mount no longer answering.
fn classify(e: io::Error, media_dir: &Path) -> WriteError {
    const EPERM: i32 = 1;
    const EIO: i32 = 5;
    const ENXIO: i32 = 6;
    const EACCES: i32 = 13;
    const ENODEV: i32 = 19;
    const EFBIG: i32 = 27;
    const ENOSPC: i32 = 28;
    const EROFS: i32 = 30;
    const ENOTCONN: i32 = 107;
    const ESHUTDOWN: i32 = 108;
    const ENOMEDIUM: i32 = 123;
    let gone = fs::metadata(media_dir).is_err() || fs::read_dir(media_dir).is_err();
    match e.raw_os_error() {
        Some(ENOTCONN | ENODEV | ENXIO | ESHUTDOWN | ENOMEDIUM) => WriteError::CardGone,
        Some(EROFS | EACCES | EPERM) if !gone => WriteError::WriteProtected,
        Some(ENOSPC | EFBIG) if !gone => WriteError::Full { need: 0 },
        Some(EIO) | None if gone => WriteError::CardGone,
        _ if gone => WriteError::CardGone,
        _ => WriteError::Io(e.to_string()),
    }
}

/// Whether a card is at `media_dir`: something is mounted there (another device than
/// its parent's), or it holds a camera's `DCIM` folder (how the media slot is watched).
pub fn card_present(media_dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = fs::metadata(media_dir) else {
        return false;
    };
    let mounted = media_dir
        .parent()
        .and_then(|p| fs::metadata(p).ok())
        .is_some_and(|parent| parent.dev() != meta.dev());
    mounted || media_dir.join("DCIM").is_dir()
}

/// Whether the card takes writes (its lock switch is off, its filesystem is not read
/// only): a probe file of the kiosk's own made at its root, synced and removed.
pub fn probe_writable(media_dir: &Path) -> Result<(), WriteError> {
    if !card_present(media_dir) {
        return Err(WriteError::CardGone);
    }
    let probe = media_dir.join(format!("{TMP_PREFIX}probe{TMP_SUFFIX}"));
    let made = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .and_then(|f| f.sync_all());
    let _ = fs::remove_file(&probe);
    made.map_err(|e| classify(e, media_dir))
}

/// A download to write.
pub struct WriteJob<'a> {
    /// Where the card is mounted.
    pub media_dir: &'a Path,
    /// The catalogue's folder (`MUSIC/PRINTMSH`) and file name.
    pub folder: &'a str,
    pub file_name: &'a str,
    /// The bytes, in the kiosk's blob cache, and what they must hash to.
    pub source: &'a Path,
    pub blob: BlobId,
    pub size: u64,
    /// The licence's text form, written beside the item (`<name>.pmlicence`).
    pub licence: Option<&'a str>,
}

/// What a write left on the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The item's path on the card, relative to its root (`MUSIC/PRINTMSH/TUNE.WAV`).
    pub card_path: String,
    /// The same bytes were already there under that name (a licence re-written).
    pub already_there: bool,
}

fn folder_path(media_dir: &Path, folder: &str) -> Result<PathBuf, WriteError> {
    let mut dir = media_dir.to_path_buf();
    for part in folder.split('/') {
        if !valid_card_name(part) {
            return Err(WriteError::BadPlace(folder.to_string()));
        }
        dir.push(part);
    }
    Ok(dir)
}

/// The BLAKE3 and length of a file, read in chunks.
fn hash_file(path: &Path) -> io::Result<(BlobId, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        len += n as u64;
    }
    Ok((hasher.finalize().into(), len))
}

/// `TUNE.WAV`, then `TUNE (2).WAV` … : the first name under which nothing is, or under
/// which these very bytes already are.
fn free_name(
    dir: &Path,
    file_name: &str,
    blob: &BlobId,
    media_dir: &Path,
) -> Result<(PathBuf, bool), WriteError> {
    let (stem, ext) = match file_name.rfind('.') {
        Some(dot) if dot > 0 => file_name.split_at(dot),
        _ => (file_name, ""),
    };
    for n in 1..100u32 {
        let name = if n == 1 {
            file_name.to_string()
        } else {
            format!("{stem} ({n}){ext}")
        };
        let path = dir.join(&name);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((path, false)),
            Err(e) => return Err(classify(e, media_dir)),
            Ok(meta) if meta.is_file() => {
                let (hash, _) = hash_file(&path).map_err(|e| classify(e, media_dir))?;
                if hash == *blob {
                    return Ok((path, true));
                }
            }
            Ok(_) => {}
        }
    }
    Err(WriteError::Io(format!(
        "99 other files already named like {file_name}"
    )))
}

fn sync_dir(dir: &Path) {
    // FUSE drivers and some filesystems do not sync directories: the rename is still
    // on the card once the filesystem is unmounted or synced as a whole.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` through a temporary name in the same folder, synced.
fn write_small(path: &Path, bytes: &[u8], media_dir: &Path) -> Result<(), WriteError> {
    let dir = path.parent().unwrap_or(media_dir);
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{}{TMP_SUFFIX}",
        BlobId::of(bytes).short()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        classify(e, media_dir)
    })?;
    sync_dir(dir);
    Ok(())
}

/// Writes one download onto the card (see the module's doc). `progress(done, total)`
/// is called after every chunk written and every chunk read back.
pub fn write_item(
    job: &WriteJob<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Written, WriteError> {
    let media = job.media_dir;
    let dir = folder_path(media, job.folder)?;
    if !valid_card_name(job.file_name) {
        return Err(WriteError::BadPlace(job.file_name.to_string()));
    }
    // The card must still be there: a folder created on the kiosk's own disk where the
    // card was mounted would be a silent loss.
    if !card_present(media) {
        return Err(WriteError::CardGone);
    }
    fs::create_dir_all(&dir).map_err(|e| classify(e, media))?;
    let (target, already_there) = free_name(&dir, job.file_name, &job.blob, media)?;
    // Progress counts the write and the read-back: 2 × size.
    let total = job.size.saturating_mul(2);
    if !already_there {
        let tmp = dir.join(format!("{TMP_PREFIX}{}{TMP_SUFFIX}", job.blob.short()));
        let result = copy_verified(job, &tmp, total, progress);
        if let Err(e) = result {
            // Best effort: a card that is gone keeps the temporary file, removed the
            // next time the card is seen.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &target).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            classify(e, media)
        })?;
        sync_dir(&dir);
    }
    progress(total, total);
    let card_path = rel(media, &target);
    if let Some(licence) = job.licence {
        write_licence(media, &card_path, licence)?;
    }
    Ok(Written {
        card_path,
        already_there,
    })
}

/// Copies the source to `tmp` (hashing what it reads), syncs, reads `tmp` back and
/// checks both hashes.
fn copy_verified(
    job: &WriteJob<'_>,
    tmp: &Path,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), WriteError> {
    let media = job.media_dir;
    let mut src = File::open(job.source).map_err(|_| WriteError::SourceDamaged)?;
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(|e| classify(e, media))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut done = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(|_| WriteError::SourceDamaged)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        // Once the file is open, a refused write is a full card (fusefat answers a
        // full card with EPERM; a write-protected one refuses the open already).
        out.write_all(chunk).map_err(|e| match classify(e, media) {
            WriteError::Full { .. } | WriteError::WriteProtected => {
                WriteError::Full { need: job.size }
            }
            other => other,
        })?;
        done += n as u64;
        if done % SYNC_EVERY_BYTES < n as u64 {
            out.sync_data().map_err(|e| classify(e, media))?;
            progress(done.min(total), total);
        }
    }
    if BlobId::from(hasher.finalize()) != job.blob || done != job.size {
        return Err(WriteError::SourceDamaged);
    }
    out.sync_all().map_err(|e| classify(e, media))?;
    drop(out);
    // Read back through the filesystem.
    let mut back = File::open(tmp).map_err(|e| classify(e, media))?;
    let mut hasher = blake3::Hasher::new();
    let mut read = 0u64;
    loop {
        let n = back.read(&mut buf).map_err(|e| classify(e, media))?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        read += n as u64;
        progress((job.size + read).min(total), total);
    }
    if BlobId::from(hasher.finalize()) != job.blob || read != job.size {
        return Err(WriteError::Mismatch);
    }
    Ok(())
}

/// Removes the kiosk's own temporary files (`.pm-*.tmp`) left in `folders` by a card
/// pulled during a write. Nothing else is touched. Returns how many were removed.
pub fn remove_leftovers<'a>(media_dir: &Path, folders: impl IntoIterator<Item = &'a str>) -> usize {
    let mut removed = 0;
    for folder in folders {
        let Ok(dir) = folder_path(media_dir, folder) else {
            continue;
        };
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(TMP_PREFIX)
                && name.ends_with(TMP_SUFFIX)
                && entry.file_type().is_ok_and(|t| t.is_file())
                && fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        sync_dir(&dir);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job<'a>(media: &'a Path, source: &'a Path, bytes: &[u8]) -> WriteJob<'a> {
        WriteJob {
            media_dir: media,
            folder: "MUSIC/PRINTMSH",
            file_name: "TUNE.WAV",
            source,
            blob: BlobId::of(bytes),
            size: bytes.len() as u64,
            licence: Some("PMLIC1-TEST"),
        }
    }

    #[test]
    fn an_item_lands_whole_beside_its_licence_and_other_files_keep_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("card");
        fs::create_dir_all(media.join("MUSIC/PRINTMSH")).unwrap();
        fs::create_dir_all(media.join("DCIM")).unwrap();
        fs::write(media.join("MUSIC/PRINTMSH/TUNE.WAV"), b"the customer's own").unwrap();
        let source = dir.path().join("blob");
        fs::write(&source, b"our tune").unwrap();
        let mut seen = vec![];
        let w = write_item(&job(&media, &source, b"our tune"), &mut |d, t| {
            seen.push((d, t))
        })
        .unwrap();
        assert_eq!(w.card_path, "MUSIC/PRINTMSH/TUNE (2).WAV");
        assert!(!w.already_there);
        assert_eq!(
            fs::read(media.join("MUSIC/PRINTMSH/TUNE.WAV")).unwrap(),
            b"the customer's own"
        );
        assert_eq!(fs::read(media.join(&w.card_path)).unwrap(), b"our tune");
        assert_eq!(
            fs::read_to_string(media.join("MUSIC/PRINTMSH/TUNE (2).WAV.pmlicence")).unwrap(),
            "PMLIC1-TEST"
        );
        assert_eq!(seen.last(), Some(&(16, 16)));
        // Again (a licence re-written): the same file is found, nothing new.
        let again = write_item(&job(&media, &source, b"our tune"), &mut |_, _| {}).unwrap();
        assert_eq!(again.card_path, w.card_path);
        assert!(again.already_there);
        let names: Vec<_> = fs::read_dir(media.join("MUSIC/PRINTMSH"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn a_damaged_source_writes_nothing_and_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("card");
        fs::create_dir_all(media.join("DCIM")).unwrap();
        let source = dir.path().join("blob");
        fs::write(&source, b"rotten").unwrap();
        let e = write_item(&job(&media, &source, b"our tune"), &mut |_, _| {}).unwrap_err();
        assert_eq!(e, WriteError::SourceDamaged);
        assert!(!media.join("MUSIC/PRINTMSH/TUNE.WAV").exists());
        fs::write(media.join("MUSIC/PRINTMSH/.pm-abc.tmp"), b"half").unwrap();
        fs::write(media.join("MUSIC/PRINTMSH/.keep"), b"theirs").unwrap();
        assert_eq!(remove_leftovers(&media, ["MUSIC/PRINTMSH"]), 1);
        assert!(media.join("MUSIC/PRINTMSH/.keep").exists());
        // No card mounted (an empty mount point): nothing is made there.
        let gone = dir.path().join("no-card");
        fs::create_dir_all(&gone).unwrap();
        let e = write_item(&job(&gone, &source, b"rotten"), &mut |_, _| {}).unwrap_err();
        assert_eq!(e, WriteError::CardGone);
        assert_eq!(fs::read_dir(&gone).unwrap().count(), 0);
    }
}
