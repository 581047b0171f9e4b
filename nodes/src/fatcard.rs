//! A memory card as a file: a FAT32 image made by `mkfs.vfat` (dosfstools), mounted
//! through FUSE (`fusefat`: no privileges needed, where loop-mounting vfat is not
//! allowed), read by mtools (`mdir`, `mcopy`) and checked by `fsck.fat -n` — readers
//! that are not ours. For tests, benchmarks and the demo's card slot.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A card image, and its mount while `fusefat` runs. Ejected when dropped.
pub struct FatCard {
    pub image: PathBuf,
    pub mnt: PathBuf,
    fuse: Option<Child>,
}

fn sbin(tool: &str) -> PathBuf {
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(tool))
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Whether the tools are here (`.ci/run` installs them).
pub fn tools_missing() -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in ["fusefat", "mdir", "mcopy", "fusermount"] {
        if !std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
            return Some(format!(
                "{tool} is missing: a FAT card image needs dosfstools, fusefat and mtools"
            ));
        }
    }
    if !sbin("mkfs.vfat").exists() {
        return Some("mkfs.vfat is missing (dosfstools)".into());
    }
    None
}

impl FatCard {
    /// A fresh FAT32 image of `mb` MiB (at least 33) with this serial and label, and
    /// `files` (card path → bytes) copied on by mtools; not mounted.
    pub fn create(
        image: &Path,
        mnt: &Path,
        mb: u64,
        serial: u32,
        label: &str,
        files: &[(&str, Vec<u8>)],
    ) -> Result<FatCard, String> {
        if let Some(missing) = tools_missing() {
            return Err(missing);
        }
        let f = std::fs::File::create(image).map_err(|e| e.to_string())?;
        f.set_len(mb * 1024 * 1024).map_err(|e| e.to_string())?;
        drop(f);
        run(Command::new(sbin("mkfs.vfat"))
            .args(["-F", "32", "-n", label, "-i", &format!("{serial:08X}")])
            .arg(image))?;
        let staging = tempfile::tempdir().map_err(|e| e.to_string())?;
        for (card_path, bytes) in files {
            let mut dir = String::new();
            let parts: Vec<&str> = card_path.split('/').collect();
            for part in parts.iter().take(parts.len().saturating_sub(1)) {
                dir = format!("{dir}/{part}");
                let _ = run(Command::new("mmd")
                    .arg("-D")
                    .arg("s")
                    .arg("-i")
                    .arg(image)
                    .arg(format!("::{dir}")));
            }
            let local = staging.path().join("f");
            std::fs::write(&local, bytes).map_err(|e| e.to_string())?;
            run(Command::new("mcopy")
                .arg("-o")
                .arg("-i")
                .arg(image)
                .arg(&local)
                .arg(format!("::/{card_path}")))?;
        }
        std::fs::create_dir_all(mnt).map_err(|e| e.to_string())?;
        Ok(FatCard {
            image: image.to_path_buf(),
            mnt: mnt.to_path_buf(),
            fuse: None,
        })
    }

    /// A card image made before (not mounted).
    pub fn create_from_existing(image: &Path, mnt: &Path) -> FatCard {
        let _ = std::fs::create_dir_all(mnt);
        FatCard {
            image: image.to_path_buf(),
            mnt: mnt.to_path_buf(),
            fuse: None,
        }
    }

    /// Whether it is mounted now.
    pub fn is_mounted(&self) -> bool {
        self.fuse.is_some()
    }

    /// Mounts the card, read-write or read-only (a write-protected card), and waits
    /// until its root answers.
    pub fn mount(&mut self, rw: bool) -> Result<(), String> {
        self.eject();
        let child = Command::new("fusefat")
            .arg("-f")
            .args(["-o", if rw { "rw+" } else { "ro" }])
            .arg(&self.image)
            .arg(&self.mnt)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("fusefat: {e}"))?;
        self.fuse = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_mount(&self.mnt) {
            if Instant::now() > deadline {
                return Err("fusefat did not mount the card".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The driver's process id while mounted (a test pulls the card by killing it).
    pub fn driver_pid(&self) -> Option<u32> {
        self.fuse.as_ref().map(Child::id)
    }

    /// A clean eject: unmounted, the driver gone.
    pub fn eject(&mut self) {
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

    /// The card pulled: the driver dies at once; nothing more reaches the image.
    pub fn pull(&mut self) {
        if let Some(mut child) = self.fuse.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("fusermount")
            .arg("-uz")
            .arg(&self.mnt)
            .status();
    }

    /// `fsck.fat -n` (unmounted): Ok with what it said if the filesystem is clean.
    pub fn fsck(&self) -> Result<String, String> {
        run(Command::new(sbin("fsck.fat")).arg("-n").arg(&self.image))
    }

    /// `fsck.fat -n`, allowing only what a card pulled mid-write may leave behind
    /// whatever wrote it: the dirty flag and a stale free-cluster count in the FSInfo
    /// sector (a hint the FAT specification says readers must not trust, and every
    /// check corrects). Anything else — a file's chain, a directory, a FAT — is an
    /// error. Ok with what fsck said.
    pub fn fsck_but_hints(&self) -> Result<String, String> {
        let said = match self.fsck() {
            Ok(said) => return Ok(said),
            Err(said) => said,
        };
        let allowed = [
            "fsck.fat ",
            "Free cluster summary wrong",
            "Auto-correcting.",
            "Dirty bit is set",
            "Automatically removing dirty bit.",
            "Leaving filesystem unchanged.",
            "files,",
        ];
        let other: Vec<&str> = said
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !allowed.iter().any(|a| l.contains(a)))
            .collect();
        if other.is_empty() {
            Ok(said)
        } else {
            Err(said)
        }
    }

    /// A file's bytes as mtools reads them (not through the mount).
    pub fn read(&self, card_path: &str) -> Option<Vec<u8>> {
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

    /// `mdir -a` of a folder.
    pub fn list(&self, folder: &str) -> String {
        match run(Command::new("mdir")
            .arg("-a")
            .arg("-i")
            .arg(&self.image)
            .arg(format!("::/{folder}")))
        {
            Ok(t) | Err(t) => t,
        }
    }

    /// Removes a file with mtools (unmounted): the customer deleted it at home.
    pub fn delete(&self, card_path: &str) -> Result<(), String> {
        run(Command::new("mdel")
            .arg("-i")
            .arg(&self.image)
            .arg(format!("::/{card_path}")))
        .map(|_| ())
    }
}

/// Whether something is mounted at `dir` (another device than its parent's).
pub fn is_mount(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let (Ok(me), Some(Ok(parent))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata))
    else {
        return false;
    };
    me.dev() != parent.dev()
}

impl Drop for FatCard {
    fn drop(&mut self) {
        self.eject();
    }
}
