//! The hot folder a minilab controller reads: one folder per order,
//! `<root>/<order id>/IMAGE/NNNN.JPG` and `<root>/<order id>/MISC/AUTPRINT.MRK`, a DPOF
//! 1.10 order with each print's paper size (`PRT PSL = NML -PSIZE "W,H"`, millimetres)
//! and back-print text (`CFG DSC = "…" -ATR BAK`).
//!
//! An order folder appears whole or not at all: it is written under
//! `<root>/.incoming/` (a dot folder, which controllers skip), every file synced, and
//! then renamed into place. Writing an order that is already there changes nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};

pub use printmesh_formats::autprint::*;

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
    use printmesh_protocol::pricing::PrintSize;
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
