//! The memory card in the media slot: DCF image files and the camera's DPOF print
//! order (`MISC/AUTPRINT.MRK`). The kiosk issue adds EXIF and thumbnails on top.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Most images a card scan lists (DCF allows 9,999 per folder × 900 folders; a kiosk
/// session never needs more than this).
pub const MAX_IMAGES: usize = 10_000;
/// Largest DPOF file read.
pub const MAX_DPOF_BYTES: u64 = 256 * 1024;

#[derive(Debug, Error)]
pub enum MediaError {
    #[error("no DCIM folder in {0}")]
    NoDcim(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("DPOF file {path}: {why}")]
    Dpof { path: PathBuf, why: String },
}

/// One image on the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaImage {
    pub path: PathBuf,
    /// `100PMESH/PMSH0001.JPG`
    pub dcf_name: String,
    pub file_name: String,
    /// Prints the camera's DPOF order asks for.
    pub dpof_quantity: Option<u16>,
}

/// DCF directory names: three digits 100-999 then five characters.
fn is_dcf_dir(name: &str) -> bool {
    name.len() == 8
        && name
            .get(..3)
            .and_then(|n| n.parse::<u16>().ok())
            .is_some_and(|n| (100..=999).contains(&n))
        && name
            .bytes()
            .skip(3)
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// DCF file names: four characters, four digits 0001-9999, `.JPG`.
fn is_dcf_jpeg(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.len() == 12
        && upper.ends_with(".JPG")
        && upper
            .bytes()
            .take(4)
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && upper
            .get(4..8)
            .and_then(|n| n.parse::<u16>().ok())
            .is_some_and(|n| n >= 1)
}

/// Lists the card's DCF JPEGs in folder and file order, with DPOF quantities.
pub fn scan(root: &Path) -> Result<Vec<MediaImage>, MediaError> {
    let dcim = root.join("DCIM");
    if !dcim.is_dir() {
        return Err(MediaError::NoDcim(root.to_path_buf()));
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MediaError::Io { path, source }
    };
    let mut dirs: Vec<(String, PathBuf)> = std::fs::read_dir(&dcim)
        .map_err(io_err(&dcim))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            (is_dcf_dir(&name) && e.path().is_dir()).then(|| (name, e.path()))
        })
        .collect();
    dirs.sort();
    let dpof = read_dpof(root)?;
    let mut images = Vec::new();
    for (dir_name, dir) in dirs {
        let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                (is_dcf_jpeg(&name) && e.path().is_file()).then(|| (name, e.path()))
            })
            .collect();
        files.sort();
        for (file_name, path) in files {
            if images.len() >= MAX_IMAGES {
                return Ok(images);
            }
            let dcf_name = format!("{dir_name}/{file_name}");
            let dpof_quantity = dpof.get(&dcf_name.to_ascii_uppercase()).copied();
            images.push(MediaImage {
                path,
                dcf_name,
                file_name,
                dpof_quantity,
            });
        }
    }
    Ok(images)
}

/// Reads `MISC/AUTPRINT.MRK` if present: `DCF name → quantity` for standard prints.
pub fn read_dpof(root: &Path) -> Result<HashMap<String, u16>, MediaError> {
    let path = root.join("MISC").join("AUTPRINT.MRK");
    let Ok(meta) = std::fs::metadata(&path) else {
        return Ok(HashMap::new());
    };
    if meta.len() > MAX_DPOF_BYTES {
        return Err(MediaError::Dpof {
            path,
            why: format!(
                "{} bytes is over the {MAX_DPOF_BYTES}-byte limit",
                meta.len()
            ),
        });
    }
    let bytes = std::fs::read(&path).map_err(|source| MediaError::Io {
        path: path.clone(),
        source,
    })?;
    parse_dpof(&String::from_utf8_lossy(&bytes)).map_err(|why| MediaError::Dpof { path, why })
}

/// Parses DPOF job sections: each `[JOB]` with `PRT QTY` and `<IMG SRC = "...">`.
pub fn parse_dpof(text: &str) -> Result<HashMap<String, u16>, String> {
    let mut out = HashMap::new();
    let mut in_job = false;
    let mut qty: Option<u16> = None;
    let mut src: Option<String> = None;
    let mut flush = |qty: &mut Option<u16>, src: &mut Option<String>| {
        if let (Some(q), Some(s)) = (qty.take(), src.take()) {
            let total: &mut u16 = out.entry(s).or_insert(0);
            *total = total.saturating_add(q).min(99);
        }
    };
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            flush(&mut qty, &mut src);
            in_job = line.eq_ignore_ascii_case("[JOB]");
            continue;
        }
        if !in_job {
            continue;
        }
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if let Some(v) = compact.strip_prefix("PRTQTY=") {
            let q: u16 = v
                .parse()
                .map_err(|_| format!("line {}: bad quantity {v:?}", n + 1))?;
            qty = Some(q.min(99));
        } else if let Some(v) = compact.strip_prefix("<IMGSRC=") {
            let v = v.trim_end_matches('>').trim_matches('"');
            let name = v.trim_start_matches("../").trim_start_matches("DCIM/");
            src = Some(name.to_ascii_uppercase());
        }
    }
    flush(&mut qty, &mut src);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/memory-card")
    }

    #[test]
    fn scans_the_fixture_card_with_its_dpof_order() {
        let images = scan(&fixture()).unwrap();
        assert_eq!(images.len(), 6);
        assert_eq!(images[0].dcf_name, "100PMESH/PMSH0001.JPG");
        assert_eq!(images[0].dpof_quantity, Some(2));
        assert_eq!(images[1].dpof_quantity, None);
        assert_eq!(images[2].dpof_quantity, Some(1));
    }

    #[test]
    fn dpof_parser_handles_bad_input() {
        assert!(parse_dpof("[JOB]\r\nPRT QTY = abc\r\n").is_err());
        assert!(parse_dpof("").unwrap().is_empty());
        let m = parse_dpof("[JOB]\nPRT QTY = 003\n<IMG SRC = \"../DCIM/100ABCDE/ABCD0001.JPG\">\n")
            .unwrap();
        assert_eq!(m.get("100ABCDE/ABCD0001.JPG"), Some(&3));
    }

    #[test]
    fn dpof_quantities_are_capped_not_overflowed() {
        let job = "[JOB]\nPRT QTY = 099\n<IMG SRC = \"../DCIM/100ABCDE/ABCD0001.JPG\">\n";
        let m = parse_dpof(&job.repeat(1000)).unwrap();
        assert_eq!(m.get("100ABCDE/ABCD0001.JPG"), Some(&99));
    }

    #[test]
    fn a_card_without_dcim_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(scan(dir.path()), Err(MediaError::NoDcim(_))));
    }

    #[test]
    fn dcf_names() {
        assert!(is_dcf_dir("100PMESH"));
        assert!(!is_dcf_dir("099PMESH"));
        assert!(is_dcf_jpeg("PMSH0001.JPG"));
        assert!(!is_dcf_jpeg("PMSH0000.JPG"));
        assert!(!is_dcf_jpeg("notes.txt"));
    }
}
