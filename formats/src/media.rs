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

/// Largest image file the kiosk reads.
pub const MAX_IMAGE_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest EXIF thumbnail the kiosk accepts.
pub const MAX_THUMBNAIL_BYTES: usize = 256 * 1024;

/// Where the grid's thumbnail of an image comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThumbnailSource {
    /// The JPEG thumbnail the camera embedded in the EXIF data (fast).
    Exif,
    /// No embedded thumbnail: the image itself is decoded and scaled, off the UI task.
    Decode,
    /// The file cannot be read as an image.
    None,
}

/// What the kiosk knows of one image without decoding it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    pub path: String,
    pub dcf_name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// EXIF orientation 1-8 (1 when absent).
    pub orientation: u8,
    /// `YYYY-MM-DDTHH:MM:SS` from DateTimeOriginal, camera local time.
    pub taken_at: Option<String>,
    pub thumbnail: ThumbnailSource,
    pub dpof_quantity: Option<u16>,
    /// Why the file cannot be used, if it cannot.
    pub error: Option<String>,
}

/// The EXIF facts the kiosk uses, and where the embedded thumbnail sits.
struct ExifFacts {
    orientation: u8,
    taken_at: Option<String>,
    thumbnail: Option<Vec<u8>>,
}

/// The EXIF facts of a file's bytes, as the kiosk reads them from a memory card:
/// orientation, when it was taken, and the embedded thumbnail's size (for the fuzzer
/// and tests; the kiosk reads files).
pub fn exif_facts_of(bytes: &[u8]) -> Option<(u8, Option<String>, Option<usize>)> {
    let facts = read_exif(&mut std::io::Cursor::new(bytes))?;
    Some((
        facts.orientation,
        facts.taken_at,
        facts.thumbnail.map(|t| t.len()),
    ))
}

fn read_exif(reader: &mut (impl std::io::BufRead + std::io::Seek)) -> Option<ExifFacts> {
    use exif::{In, Tag, Value};
    let exif = exif::Reader::new().read_from_container(reader).ok()?;
    let orientation = exif
        .get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
        .unwrap_or(1) as u8;
    let taken_at = exif
        .get_field(Tag::DateTimeOriginal, In::PRIMARY)
        .and_then(|f| match &f.value {
            Value::Ascii(v) => v
                .first()
                .and_then(|s| exif::DateTime::from_ascii(s).ok())
                .and_then(|d| {
                    let ok = (1..=12).contains(&d.month)
                        && (1..=31).contains(&d.day)
                        && d.hour < 24
                        && d.minute < 60
                        && d.second < 61;
                    ok.then(|| {
                        format!(
                            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                            d.year, d.month, d.day, d.hour, d.minute, d.second
                        )
                    })
                }),
            _ => None,
        });
    let offset = exif
        .get_field(Tag::JPEGInterchangeFormat, In::THUMBNAIL)
        .and_then(|f| f.value.get_uint(0));
    let len = exif
        .get_field(Tag::JPEGInterchangeFormatLength, In::THUMBNAIL)
        .and_then(|f| f.value.get_uint(0));
    let thumbnail = match (offset, len) {
        (Some(o), Some(l)) if (l as usize) <= MAX_THUMBNAIL_BYTES => {
            let start = o as usize;
            start
                .checked_add(l as usize)
                .and_then(|end| exif.buf().get(start..end))
                .filter(|t| t.starts_with(&[0xff, 0xd8]))
                .map(<[u8]>::to_vec)
        }
        _ => None,
    };
    Some(ExifFacts {
        orientation,
        taken_at,
        thumbnail,
    })
}

/// Reads an image's header and EXIF: size, orientation, date taken, thumbnail source.
/// Never decodes the image; a bad file yields an `error`, never a panic.
pub fn read_info(image: &MediaImage) -> ImageInfo {
    read_info_and_thumbnail(image).0
}

/// [`read_info`], plus the EXIF thumbnail's JPEG bytes when the camera embedded one,
/// from one read of the EXIF segment.
pub fn read_info_and_thumbnail(image: &MediaImage) -> (ImageInfo, Option<Vec<u8>>) {
    let mut info = ImageInfo {
        path: image.path.display().to_string(),
        dcf_name: image.dcf_name.clone(),
        width: None,
        height: None,
        orientation: 1,
        taken_at: None,
        thumbnail: ThumbnailSource::None,
        dpof_quantity: image.dpof_quantity,
        error: None,
    };
    let fail = |mut info: ImageInfo, why: String| {
        info.error = Some(why.trim_end().to_string());
        (info, None)
    };
    let len = match std::fs::metadata(&image.path) {
        Ok(m) => m.len(),
        Err(e) => return fail(info, format!("cannot read the file: {e}")),
    };
    if len > MAX_IMAGE_FILE_BYTES {
        return fail(info, format!("{len} bytes is larger than a photo can be"));
    }
    let open = || std::fs::File::open(&image.path).map(std::io::BufReader::new);
    let dims = open()
        .map_err(|e| e.to_string())
        .and_then(|r| {
            image::ImageReader::new(r)
                .with_guessed_format()
                .map_err(|e| e.to_string())
        })
        .and_then(|r| {
            if r.format() != Some(image::ImageFormat::Jpeg) {
                return Err("not a JPEG image".to_string());
            }
            r.into_dimensions().map_err(|e| e.to_string())
        });
    let (w, h) = match dims {
        Ok(d) => d,
        Err(e) => return fail(info, format!("unreadable image: {e}")),
    };
    info.width = Some(w);
    info.height = Some(h);
    info.thumbnail = ThumbnailSource::Decode;
    let mut thumbnail = None;
    if let Some(facts) = open().ok().and_then(|mut r| read_exif(&mut r)) {
        info.orientation = facts.orientation;
        info.taken_at = facts.taken_at;
        if facts.thumbnail.is_some() {
            info.thumbnail = ThumbnailSource::Exif;
        }
        thumbnail = facts.thumbnail;
    }
    (info, thumbnail)
}

/// The EXIF thumbnail's JPEG bytes, if the camera embedded one.
pub fn exif_thumbnail(path: &Path) -> Option<Vec<u8>> {
    let mut r = std::io::BufReader::new(std::fs::File::open(path).ok()?);
    read_exif(&mut r)?.thumbnail
}

/// Scans a card and reads every image's info: `printmesh media scan DIR --json`.
pub fn scan_info(root: &Path) -> Result<Vec<ImageInfo>, MediaError> {
    Ok(scan(root)?.iter().map(read_info).collect())
}

#[cfg(test)]
mod info_tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
    }

    #[test]
    fn reads_orientation_date_size_and_thumbnail_source() {
        let infos = scan_info(&fixtures().join("memory-card")).unwrap();
        let orientations: Vec<u8> = infos.iter().map(|i| i.orientation).collect();
        assert_eq!(orientations, vec![1, 3, 6, 8, 1, 2]);
        assert_eq!(infos[0].taken_at.as_deref(), Some("2026-01-17T09:12:05"));
        assert_eq!((infos[0].width, infos[0].height), (Some(480), Some(320)));
        assert_eq!((infos[4].width, infos[4].height), (Some(320), Some(480)));
        let sources: Vec<ThumbnailSource> = infos.iter().map(|i| i.thumbnail).collect();
        use ThumbnailSource::{Decode, Exif};
        assert_eq!(sources, vec![Exif, Exif, Exif, Exif, Decode, Exif]);
        assert!(infos.iter().all(|i| i.error.is_none()));
        let thumb = exif_thumbnail(Path::new(&infos[0].path)).unwrap();
        let decoded = image::load_from_memory(&thumb).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (160, 120));
        assert!(exif_thumbnail(Path::new(&infos[4].path)).is_none());
    }

    #[test]
    fn corrupt_files_are_reported_and_do_not_stop_the_scan() {
        let infos = scan_info(&fixtures().join("bad-media")).unwrap();
        assert_eq!(infos.len(), 2);
        for i in &infos {
            assert!(i.error.is_some(), "{i:?}");
            assert_eq!(i.thumbnail, ThumbnailSource::None);
        }
        assert!(
            infos[1].error.as_deref().unwrap().contains("not a JPEG"),
            "{:?}",
            infos[1]
        );
    }
}
