//! A memory card's volume as cameras format it (FAT12/16/32, exFAT): its boot sector
//! (the volume serial a licence names, the cluster geometry) and, for FAT, the free
//! space counted from the FAT itself.
//!
//! The kiosk reads these from the card's block device (or image): FUSE drivers such as
//! `fusefat` answer `statfs` with zeros, and a licence must name the card whatever
//! driver mounted it. Every number is checked before it is used; a boot sector that is
//! not a FAT or exFAT one is an error, never a panic.

use std::io::{self, Read, Seek, SeekFrom};

use thiserror::Error;

/// The boot sector's size as read (the larger sectors of some cards begin the same).
pub const BOOT_SECTOR_BYTES: usize = 512;
/// Most bytes of FAT read to count free clusters (FAT32 with 2^28 clusters is 1 GiB of
/// FAT; a 2 TB card with 32 KiB clusters has 256 MiB).
pub const MAX_FAT_BYTES: u64 = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatKind {
    Fat12,
    Fat16,
    Fat32,
    ExFat,
}

impl std::fmt::Display for FatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FatKind::Fat12 => "FAT12",
            FatKind::Fat16 => "FAT16",
            FatKind::Fat32 => "FAT32",
            FatKind::ExFat => "exFAT",
        })
    }
}

/// What the boot sector says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub kind: FatKind,
    /// The volume serial number (`1234-ABCD` as `mdir` prints it): the card's identity
    /// on a licence.
    pub serial: u32,
    /// The volume label, trimmed (`NO NAME` when none was given).
    pub label: String,
    pub bytes_per_sector: u32,
    pub cluster_bytes: u32,
    /// Data clusters (numbered from 2).
    pub clusters: u32,
    /// Where the first FAT starts, in bytes from the start of the volume.
    pub fat_offset: u64,
    /// Where the first data cluster starts.
    pub data_offset: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FatError {
    #[error("the card's first sector is too short ({0} bytes)")]
    Short(usize),
    #[error("the card is not formatted FAT or exFAT (no boot signature)")]
    NoSignature,
    #[error("the card's boot sector is not a FAT or exFAT one: {0}")]
    Bad(&'static str),
    #[error("the card's FAT is too large to count ({0} bytes)")]
    FatTooLarge(u64),
    #[error("reading the card: {0}")]
    Io(String),
}

impl From<io::Error> for FatError {
    fn from(e: io::Error) -> Self {
        FatError::Io(e.to_string())
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn label_at(b: &[u8], at: usize) -> String {
    let raw = b.get(at..at + 11).unwrap_or_default();
    raw.iter()
        .map(|&c| if c.is_ascii_graphic() { c as char } else { ' ' })
        .collect::<String>()
        .trim()
        .to_string()
}

impl Volume {
    /// Parses a boot sector (the first 512 bytes of the volume).
    pub fn parse(boot: &[u8]) -> Result<Volume, FatError> {
        if boot.len() < BOOT_SECTOR_BYTES {
            return Err(FatError::Short(boot.len()));
        }
        if boot.get(510..512) != Some(&[0x55, 0xAA][..]) {
            return Err(FatError::NoSignature);
        }
        if boot.get(3..11) == Some(&b"EXFAT   "[..]) {
            return Self::parse_exfat(boot);
        }
        let bytes_per_sector = u32::from(u16_at(boot, 11));
        if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) {
            return Err(FatError::Bad("bytes per sector"));
        }
        let sectors_per_cluster = u32::from(*boot.get(13).unwrap_or(&0));
        if sectors_per_cluster == 0 || !sectors_per_cluster.is_power_of_two() {
            return Err(FatError::Bad("sectors per cluster"));
        }
        let reserved = u32::from(u16_at(boot, 14));
        let fats = u32::from(*boot.get(16).unwrap_or(&0));
        if reserved == 0 || fats == 0 {
            return Err(FatError::Bad("reserved sectors or FAT count"));
        }
        let root_entries = u32::from(u16_at(boot, 17));
        let total16 = u32::from(u16_at(boot, 19));
        let fat16_size = u32::from(u16_at(boot, 22));
        let total = if total16 != 0 {
            total16
        } else {
            u32_at(boot, 32)
        };
        let fat_size = if fat16_size != 0 {
            fat16_size
        } else {
            u32_at(boot, 36)
        };
        if fat_size == 0 || total == 0 {
            return Err(FatError::Bad("FAT size or total sectors"));
        }
        let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
        let meta =
            u64::from(reserved) + u64::from(fats) * u64::from(fat_size) + u64::from(root_sectors);
        let data_sectors = u64::from(total)
            .checked_sub(meta)
            .ok_or(FatError::Bad("the FATs are larger than the volume"))?;
        let clusters = u32::try_from(data_sectors / u64::from(sectors_per_cluster))
            .map_err(|_| FatError::Bad("cluster count"))?;
        // The count of clusters alone decides the FAT type (Microsoft's FAT spec).
        let kind = if clusters < 4085 {
            FatKind::Fat12
        } else if clusters < 65525 {
            FatKind::Fat16
        } else {
            FatKind::Fat32
        };
        let (serial, label) = if kind == FatKind::Fat32 {
            (u32_at(boot, 0x43), label_at(boot, 0x47))
        } else {
            (u32_at(boot, 0x27), label_at(boot, 0x2B))
        };
        Ok(Volume {
            kind,
            serial,
            label,
            bytes_per_sector,
            cluster_bytes: bytes_per_sector * sectors_per_cluster,
            clusters,
            fat_offset: u64::from(reserved) * u64::from(bytes_per_sector),
            data_offset: meta * u64::from(bytes_per_sector),
        })
    }

    fn parse_exfat(boot: &[u8]) -> Result<Volume, FatError> {
        let sector_shift = u32::from(*boot.get(108).unwrap_or(&0));
        let cluster_shift = u32::from(*boot.get(109).unwrap_or(&0));
        if !(9..=12).contains(&sector_shift) || sector_shift + cluster_shift > 25 {
            return Err(FatError::Bad("exFAT sector or cluster shift"));
        }
        let bytes_per_sector = 1u32 << sector_shift;
        let fat_offset = u64::from(u32_at(boot, 80)) * u64::from(bytes_per_sector);
        let data_offset = u64::from(u32_at(boot, 88)) * u64::from(bytes_per_sector);
        let clusters = u32_at(boot, 92);
        if clusters == 0 || u64_at(boot, 72) == 0 {
            return Err(FatError::Bad("exFAT volume length or cluster count"));
        }
        Ok(Volume {
            kind: FatKind::ExFat,
            serial: u32_at(boot, 100),
            // exFAT keeps its label in the root directory, not the boot sector.
            label: String::new(),
            bytes_per_sector,
            cluster_bytes: bytes_per_sector << cluster_shift,
            clusters,
            fat_offset,
            data_offset,
        })
    }

    /// Reads and parses the boot sector of a device or image.
    pub fn read(device: &mut (impl Read + Seek)) -> Result<Volume, FatError> {
        device.seek(SeekFrom::Start(0))?;
        let mut boot = vec![0u8; BOOT_SECTOR_BYTES];
        let mut got = 0;
        while got < boot.len() {
            match device.read(boot.get_mut(got..).unwrap_or_default())? {
                0 => break,
                n => got += n,
            }
        }
        boot.truncate(got);
        Volume::parse(&boot)
    }

    /// The serial as `mdir` and Windows print it: `1234-ABCD`.
    pub fn serial_text(&self) -> String {
        format!("{:04X}-{:04X}", self.serial >> 16, self.serial & 0xFFFF)
    }

    /// Free bytes, counted from the first FAT (FAT12/16/32; `None` for exFAT, whose
    /// free space is in its allocation bitmap: ask the mounted filesystem instead).
    pub fn free_bytes(&self, device: &mut (impl Read + Seek)) -> Result<Option<u64>, FatError> {
        let entries = u64::from(self.clusters) + 2;
        let fat_bytes = match self.kind {
            FatKind::ExFat => return Ok(None),
            FatKind::Fat12 => (entries * 3).div_ceil(2),
            FatKind::Fat16 => entries * 2,
            FatKind::Fat32 => entries * 4,
        };
        if fat_bytes > MAX_FAT_BYTES {
            return Err(FatError::FatTooLarge(fat_bytes));
        }
        device.seek(SeekFrom::Start(self.fat_offset))?;
        let mut free = 0u64;
        let mut index = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = fat_bytes;
        // FAT12 entries straddle bytes; read it whole (at most 6 KiB).
        if self.kind == FatKind::Fat12 {
            let mut fat = vec![0u8; fat_bytes as usize];
            device.read_exact(&mut fat)?;
            for n in 2..entries {
                let at = (n * 3 / 2) as usize;
                let pair = u16_at(&fat, at);
                let v = if n % 2 == 0 { pair & 0xFFF } else { pair >> 4 };
                free += u64::from(v == 0);
            }
            return Ok(Some(free * u64::from(self.cluster_bytes)));
        }
        let width = if self.kind == FatKind::Fat16 { 2 } else { 4 };
        while left > 0 {
            let take = left.min(buf.len() as u64) as usize;
            let chunk = buf.get_mut(..take).unwrap_or_default();
            device.read_exact(chunk)?;
            for entry in chunk.chunks_exact(width) {
                if index >= 2 {
                    let v = if width == 2 {
                        u32::from(u16_at(entry, 0))
                    } else {
                        u32_at(entry, 0) & 0x0FFF_FFFF
                    };
                    free += u64::from(v == 0);
                }
                index += 1;
            }
            left -= take as u64;
        }
        Ok(Some(free * u64::from(self.cluster_bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FAT32 boot sector as `mkfs.vfat -F 32 -i 1234ABCD -n PMCARD` writes for 64 MiB.
    fn fat32_boot() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[3..11].copy_from_slice(b"mkfs.fat");
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 1;
        b[14..16].copy_from_slice(&32u16.to_le_bytes());
        b[16] = 2;
        b[32..36].copy_from_slice(&131072u32.to_le_bytes());
        b[36..40].copy_from_slice(&1008u32.to_le_bytes());
        b[0x43..0x47].copy_from_slice(&0x1234ABCDu32.to_le_bytes());
        b[0x47..0x52].copy_from_slice(b"PMCARD     ");
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn a_fat32_boot_sector_gives_its_serial_label_and_geometry() {
        let v = Volume::parse(&fat32_boot()).unwrap();
        assert_eq!(v.kind, FatKind::Fat32);
        assert_eq!(v.serial_text(), "1234-ABCD");
        assert_eq!(v.label, "PMCARD");
        assert_eq!(v.cluster_bytes, 512);
        assert_eq!(v.fat_offset, 32 * 512);
        assert_eq!(v.clusters, 131072 - 32 - 2 * 1008);
    }

    #[test]
    fn free_clusters_are_counted_from_the_fat() {
        let v = Volume::parse(&fat32_boot()).unwrap();
        let mut image = vec![0u8; (v.fat_offset + u64::from(v.clusters + 2) * 4) as usize];
        // Clusters 2..=9 in use (the root directory and a file), the rest free.
        for n in 0..10u64 {
            let at = (v.fat_offset + n * 4) as usize;
            image[at..at + 4].copy_from_slice(&0x0FFF_FFFFu32.to_le_bytes());
        }
        let free = v.free_bytes(&mut io::Cursor::new(image)).unwrap();
        assert_eq!(free, Some(u64::from(v.clusters - 8) * 512));
    }

    #[test]
    fn what_is_not_a_fat_boot_sector_is_an_error() {
        assert_eq!(Volume::parse(&[0u8; 10]), Err(FatError::Short(10)));
        assert_eq!(Volume::parse(&[0u8; 512]), Err(FatError::NoSignature));
        let mut b = fat32_boot();
        b[13] = 3;
        assert!(matches!(Volume::parse(&b), Err(FatError::Bad(_))));
        let mut b = fat32_boot();
        b[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Volume::parse(&b), Err(FatError::Bad(_))));
        // Short FAT on a truncated image: an error, not a panic.
        let v = Volume::parse(&fat32_boot()).unwrap();
        assert!(v.free_bytes(&mut io::Cursor::new(vec![0u8; 600])).is_err());
    }
}
