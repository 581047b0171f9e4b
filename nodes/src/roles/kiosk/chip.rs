//! IC (chip) cards are read through [`ChipReader`]. [`FileChipReader`] is the fake the
//! demo and the tests use: a directory standing for the reader's slot, where a file
//! `card.toml` appearing means a card was inserted. Its `track2_equivalent` is what a
//! real reader returns for EMV tag 57. Cryptogram verification is out of scope.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use printmesh_protocol::card::{parse_track2_equivalent, wipe, CardData};
use serde::Deserialize;

/// Largest chip file read.
pub const MAX_CHIP_FILE_BYTES: u64 = 4096;

/// What the slot holds.
#[derive(Debug, PartialEq, Eq)]
pub enum ChipRead {
    Empty,
    Card(CardData),
    /// A card is in the slot but cannot be read; the reason is safe to show.
    Unreadable(String),
}

pub trait ChipReader: Send {
    /// Looks at the slot now.
    fn poll(&mut self) -> ChipRead;

    /// What is in the slot if it changed since the last call (or if `force`); `None`
    /// when nothing changed. The reader keeps no card data between calls.
    fn changed(&mut self, force: bool) -> Option<ChipRead>;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChipFile {
    track2_equivalent: String,
}

/// A chip reader simulated by a directory.
pub struct FileChipReader {
    slot: PathBuf,
    /// The card file's length and modification time when last read: enough to tell a
    /// change, without keeping anything of the card.
    seen: Option<Option<(u64, Option<SystemTime>)>>,
}

impl FileChipReader {
    pub fn new(slot: &Path) -> FileChipReader {
        FileChipReader {
            slot: slot.to_path_buf(),
            seen: None,
        }
    }

    pub fn card_file(&self) -> PathBuf {
        self.slot.join("card.toml")
    }

    fn stamp(&self) -> Option<(u64, Option<SystemTime>)> {
        let meta = std::fs::metadata(self.card_file()).ok()?;
        Some((meta.len(), meta.modified().ok()))
    }
}

impl ChipReader for FileChipReader {
    fn poll(&mut self) -> ChipRead {
        let path = self.card_file();
        let Ok(meta) = std::fs::metadata(&path) else {
            return ChipRead::Empty;
        };
        if meta.len() > MAX_CHIP_FILE_BYTES {
            return ChipRead::Unreadable("the chip did not answer correctly".into());
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            return ChipRead::Unreadable(
                "the chip could not be read; please remove the card and try again".into(),
            );
        };
        let parsed = toml::from_str::<ChipFile>(&text).ok().map(|f| {
            let card = parse_track2_equivalent(&f.track2_equivalent);
            wipe(f.track2_equivalent);
            card
        });
        wipe(text);
        match parsed {
            Some(Ok(card)) => ChipRead::Card(card),
            _ => ChipRead::Unreadable(
                "the chip could not be read; please remove the card and try again".into(),
            ),
        }
    }

    fn changed(&mut self, force: bool) -> Option<ChipRead> {
        let stamp = self.stamp();
        if !force && self.seen == Some(stamp) {
            return None;
        }
        self.seen = Some(stamp);
        Some(self.poll())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_appears_and_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let mut reader = FileChipReader::new(dir.path());
        assert_eq!(reader.poll(), ChipRead::Empty);
        assert_eq!(reader.changed(false), Some(ChipRead::Empty));
        assert_eq!(reader.changed(false), None);
        std::fs::write(
            reader.card_file(),
            "track2_equivalent = \"3530111333300000D28071010000000000000F\"\n",
        )
        .unwrap();
        assert!(
            matches!(reader.changed(false), Some(ChipRead::Card(c)) if c.pan.last4() == "0000")
        );
        assert_eq!(reader.changed(false), None, "nothing changed, nothing read");
        assert!(
            matches!(reader.changed(true), Some(ChipRead::Card(_))),
            "asked again"
        );
        std::fs::write(reader.card_file(), "garbage").unwrap();
        assert!(matches!(
            reader.changed(false),
            Some(ChipRead::Unreadable(_))
        ));
        std::fs::remove_file(reader.card_file()).unwrap();
        assert_eq!(reader.changed(false), Some(ChipRead::Empty));
    }
}
