//! The hot folder a minilab controller reads: one folder per order,
//! `<root>/<order id>/IMAGE/NNNN.JPG` and `<root>/<order id>/MISC/AUTPRINT.MRK`, a DPOF
//! 1.10 order with each print's paper size (`PRT PSL = NML -PSIZE "W,H"`, millimetres)
//! and back-print text (`CFG DSC = "…" -ATR BAK`).
//!
//! An order folder appears whole or not at all: it is written under
//! `<root>/.incoming/` (a dot folder, which controllers skip), every file synced, and
//! then renamed into place. Writing an order that is already there changes nothing.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use printmesh_protocol::pricing::PrintSize;

/// What a print job in the folder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrintKind {
    /// A print of one photo at its paper size.
    Sized(PrintSize),
    /// The order's index print (contact sheet).
    Index,
}

/// A rendered JPEG: in memory, or spooled to a file (the lab renders a big order to
/// disk, one print at a time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Jpeg {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl Jpeg {
    /// The bytes (read from the spool file if need be).
    pub fn read(&self) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
        match self {
            Jpeg::Bytes(b) => Ok(std::borrow::Cow::Borrowed(b)),
            Jpeg::File(p) => std::fs::read(p).map(std::borrow::Cow::Owned),
        }
    }

    pub fn len(&self) -> std::io::Result<u64> {
        match self {
            Jpeg::Bytes(b) => Ok(b.len() as u64),
            Jpeg::File(p) => std::fs::metadata(p).map(|m| m.len()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len().map(|n| n == 0).unwrap_or(true)
    }
}

/// One file of an order.
#[derive(Clone, Debug)]
pub struct FolderPrint {
    pub kind: PrintKind,
    pub quantity: u16,
    pub back_print: String,
    pub jpeg: Jpeg,
}

/// A job read back from an `AUTPRINT.MRK`.
#[derive(Clone, Debug, PartialEq)]
pub struct DpofJob {
    pub pid: u32,
    pub kind: String,
    pub quantity: u16,
    /// Paper size in millimetres, short side first.
    pub paper_mm: Option<(f64, f64)>,
    pub source: String,
    pub back_print: Option<String>,
}

/// DPOF text is ASCII inside double quotes: anything else becomes `?`.
fn dpof_text(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The `AUTPRINT.MRK` for these prints (files `IMAGE/0001.JPG`, … in order).
pub fn autprint(prints: &[FolderPrint], created: chrono::NaiveDateTime) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "[HDR]\r\nGEN REV = 01.10\r\nGEN CRT = \"printmesh\" -{}\r\nGEN DTM = {}\r\n",
        env!("CARGO_PKG_VERSION"),
        created.format("%Y:%m:%d:%H:%M:%S")
    );
    for (i, p) in prints.iter().enumerate() {
        let pid = i + 1;
        let _ = write!(out, "\r\n[JOB]\r\nPRT PID = {pid:03}\r\n");
        match p.kind {
            PrintKind::Sized(size) => {
                let (short, long) = size.paper_mm10();
                let _ = write!(
                    out,
                    "PRT TYP = SIZ\r\nPRT QTY = {:03}\r\nPRT PSL = NML -PSIZE \"{:.1},{:.1}\"\r\n",
                    p.quantity.clamp(1, 999),
                    f64::from(short) / 10.0,
                    f64::from(long) / 10.0
                );
            }
            PrintKind::Index => {
                let _ = write!(out, "PRT TYP = IDX\r\nPRT QTY = 001\r\n");
            }
        }
        let _ = write!(
            out,
            "IMG FMT = EXIF2 -J\r\n<IMG SRC = \"../IMAGE/{pid:04}.JPG\">\r\n"
        );
        if !p.back_print.is_empty() {
            let _ = write!(
                out,
                "CFG DSC = \"{}\" -ATR BAK\r\n",
                dpof_text(&p.back_print)
            );
        }
    }
    out
}

/// Reads an `AUTPRINT.MRK` back (what a minilab controller would see).
pub fn parse_autprint(text: &str) -> Result<Vec<DpofJob>, String> {
    let mut jobs: Vec<DpofJob> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let bad = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
        if line.eq_ignore_ascii_case("[JOB]") {
            jobs.push(DpofJob {
                pid: 0,
                kind: String::new(),
                quantity: 0,
                paper_mm: None,
                source: String::new(),
                back_print: None,
            });
            continue;
        }
        let Some(job) = jobs.last_mut() else { continue };
        let (key, value) = match line.trim_start_matches('<').split_once('=') {
            Some((k, v)) => (k.trim(), v.trim().trim_end_matches('>').trim()),
            None => continue,
        };
        let quoted = |v: &str| -> Option<String> {
            let rest = v.strip_prefix('"')?;
            Some(rest.get(..rest.find('"')?)?.to_string())
        };
        match key {
            "PRT PID" => job.pid = value.parse().map_err(|_| bad("bad PID"))?,
            "PRT TYP" => job.kind = value.to_string(),
            "PRT QTY" => job.quantity = value.parse().map_err(|_| bad("bad quantity"))?,
            "PRT PSL" => {
                let size = value
                    .split_once("-PSIZE")
                    .and_then(|(_, s)| quoted(s.trim()))
                    .ok_or_else(|| bad("no -PSIZE"))?;
                let (w, h) = size.split_once(',').ok_or_else(|| bad("bad size"))?;
                let w: f64 = w.trim().parse().map_err(|_| bad("bad width"))?;
                let h: f64 = h.trim().parse().map_err(|_| bad("bad height"))?;
                job.paper_mm = Some((w, h));
            }
            "IMG SRC" => job.source = quoted(value).ok_or_else(|| bad("unquoted source"))?,
            "CFG DSC" if value.ends_with("-ATR BAK") => job.back_print = quoted(value),
            _ => {}
        }
    }
    Ok(jobs)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn write_jpeg_synced(path: &Path, jpeg: &Jpeg) -> std::io::Result<()> {
    match jpeg {
        Jpeg::Bytes(b) => write_synced(path, b),
        Jpeg::File(from) => {
            std::fs::copy(from, path)?;
            std::fs::File::open(path)?.sync_all()
        }
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Puts an order into the hot folder, whole, as `<root>/<name>` (the order id, or
/// the order id with a reprint's number). Returns its folder.
pub fn deliver(
    root: &Path,
    name: &str,
    prints: &[FolderPrint],
    created: chrono::NaiveDateTime,
) -> std::io::Result<PathBuf> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} is not a folder name for an order"),
        ));
    }
    let done = root.join(name);
    if done.exists() {
        return Ok(done);
    }
    let incoming = root.join(".incoming");
    std::fs::create_dir_all(&incoming)?;
    let staging = incoming.join(format!("{name}-{:08x}", rand::random::<u32>()));
    let written = (|| {
        std::fs::create_dir_all(staging.join("IMAGE"))?;
        std::fs::create_dir_all(staging.join("MISC"))?;
        for (i, p) in prints.iter().enumerate() {
            write_jpeg_synced(
                &staging.join("IMAGE").join(format!("{:04}.JPG", i + 1)),
                &p.jpeg,
            )?;
        }
        write_synced(
            &staging.join("MISC").join("AUTPRINT.MRK"),
            autprint(prints, created).as_bytes(),
        )?;
        sync_dir(&staging.join("IMAGE"))?;
        sync_dir(&staging.join("MISC"))?;
        sync_dir(&staging)?;
        std::fs::rename(&staging, &done)?;
        sync_dir(root)
    })();
    if let Err(e) = written {
        // Nothing half-written is left behind; a full disk loses no order (the job
        // stays queued and is written again).
        let _ = std::fs::remove_dir_all(&staging);
        if done.exists() {
            return Ok(done);
        }
        return Err(e);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use printmesh_protocol::OrderId;

    fn prints() -> Vec<FolderPrint> {
        vec![
            FolderPrint {
                kind: PrintKind::Sized(PrintSize::L),
                quantity: 2,
                back_print: "01M89DY39V0YDVBNKRT9KT7ZWE #1".into(),
                jpeg: Jpeg::Bytes(b"\xFF\xD8one".to_vec()),
            },
            FolderPrint {
                kind: PrintKind::Sized(PrintSize::Kg),
                quantity: 1,
                back_print: "01M89DY39V0YDVBNKRT9KT7ZWE #2 \"quoted\"".into(),
                jpeg: Jpeg::Bytes(b"\xFF\xD8two".to_vec()),
            },
            FolderPrint {
                kind: PrintKind::Index,
                quantity: 1,
                back_print: "01M89DY39V0YDVBNKRT9KT7ZWE index".into(),
                jpeg: Jpeg::Bytes(b"\xFF\xD8idx".to_vec()),
            },
        ]
    }

    fn when() -> chrono::NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
            .and_then(|d| d.and_hms_opt(13, 40, 5))
            .unwrap()
    }

    #[test]
    fn the_dpof_order_reads_back_with_sizes_and_back_prints() {
        let text = autprint(&prints(), when());
        assert!(text.contains("GEN DTM = 2026:11:25:13:40:05"), "{text}");
        let jobs = parse_autprint(&text).unwrap();
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[0].kind, "SIZ");
        assert_eq!(jobs[0].quantity, 2);
        assert_eq!(jobs[0].paper_mm, Some((89.0, 127.0)));
        assert_eq!(jobs[0].source, "../IMAGE/0001.JPG");
        assert_eq!(
            jobs[0].back_print.as_deref(),
            Some("01M89DY39V0YDVBNKRT9KT7ZWE #1")
        );
        assert_eq!(jobs[1].paper_mm, Some((102.0, 152.0)));
        assert_eq!(
            jobs[1].back_print.as_deref(),
            Some("01M89DY39V0YDVBNKRT9KT7ZWE #2 ?quoted?")
        );
        assert_eq!(jobs[2].kind, "IDX");
        assert_eq!(jobs[2].pid, 3);
        // The kiosk's own DPOF reader sees the same quantities.
        let seen = crate::media::parse_dpof(&text).unwrap();
        assert_eq!(seen.get("IMAGE/0001.JPG").copied(), Some(2));
        assert_eq!(seen.values().sum::<u16>(), 4);
        assert!(parse_autprint("[JOB]\nPRT QTY = many\n").is_err());
        assert!(parse_autprint("[JOB]\nPRT PSL = NML -PSIZE \"89.0\"\n").is_err());
    }

    #[test]
    fn an_order_appears_whole_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = OrderId::from_parts(1, 7);
        let folder = deliver(dir.path(), &id.to_string(), &prints(), when()).unwrap();
        assert_eq!(folder, dir.path().join(id.to_string()));
        for (i, p) in prints().iter().enumerate() {
            let f = folder.join("IMAGE").join(format!("{:04}.JPG", i + 1));
            assert_eq!(std::fs::read(f).unwrap(), *p.jpeg.read().unwrap());
        }
        let mrk = std::fs::read_to_string(folder.join("MISC/AUTPRINT.MRK")).unwrap();
        assert_eq!(parse_autprint(&mrk).unwrap().len(), 3);
        // Nothing left in staging; the visible folders are whole orders only.
        let staging: Vec<_> = std::fs::read_dir(dir.path().join(".incoming"))
            .unwrap()
            .collect();
        assert!(staging.is_empty());
        // Delivering again changes nothing.
        let other = vec![prints().remove(0)];
        deliver(dir.path(), &id.to_string(), &other, when()).unwrap();
        let again = std::fs::read_to_string(folder.join("MISC/AUTPRINT.MRK")).unwrap();
        assert_eq!(again, mrk);
    }

    #[test]
    fn a_failed_write_leaves_no_folder() {
        let dir = tempfile::tempdir().unwrap();
        // The root is a file: nothing can be written under it.
        let root = dir.path().join("not-a-dir");
        std::fs::write(&root, b"x").unwrap();
        let id = OrderId::from_parts(2, 8);
        assert!(deliver(&root, &id.to_string(), &prints(), when()).is_err());
        assert!(!root.join(id.to_string()).exists());
    }
}
