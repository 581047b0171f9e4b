//! DPOF 1.10 print orders written for a minilab (`MISC/AUTPRINT.MRK`): one job per
//! print with its paper size (`PRT PSL = NML -PSIZE "W,H"`, millimetres) and back-print
//! text (`CFG DSC = "…" -ATR BAK`), and the same file read back as a minilab controller
//! reads it (outside bytes: fuzzed by the `dpof` target).

use std::fmt::Write as _;
use std::path::PathBuf;

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
