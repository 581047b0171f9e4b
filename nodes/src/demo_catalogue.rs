//! The demo content company's catalogue, made by the project itself: a short
//! synthesised tune (a WAV file), two pictures (JPEG), a small game's level data, each
//! with a cover, and the catalogue file that lists them (`printmesh content publish`
//! reads it).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The tune: notes (Hz, eighths) of a short phrase, at 22.05 kHz, 16-bit mono.
const RATE: u32 = 22_050;
const TUNE: &[(f32, u32)] = &[
    (523.25, 2),
    (659.25, 2),
    (783.99, 2),
    (1046.5, 4),
    (987.77, 2),
    (783.99, 2),
    (880.0, 4),
    (698.46, 2),
    (659.25, 2),
    (587.33, 2),
    (523.25, 6),
];

/// A WAV file (RIFF, PCM) of the tune: each note a sine with its octave, shaped so it
/// does not click.
pub fn tune_wav() -> Vec<u8> {
    let eighth = RATE as usize / 4;
    let mut samples: Vec<i16> = Vec::new();
    for &(freq, eighths) in TUNE {
        let n = eighth * eighths as usize;
        for i in 0..n {
            let t = i as f32 / RATE as f32;
            let attack = (i as f32 / 400.0).min(1.0);
            let release = ((n - i) as f32 / 1200.0).min(1.0);
            let env = attack * release * 0.35;
            let v = (t * freq * std::f32::consts::TAU).sin() * 0.8
                + (t * freq * 2.0 * std::f32::consts::TAU).sin() * 0.2;
            samples.push((v * env * f32::from(i16::MAX)) as i16);
        }
    }
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Mount Fuji at dawn, or a sunset over the sea: a picture of `w`×`h`.
fn picture(fuji: bool, w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let sky = if fuji {
            [
                (90.0 + 150.0 * fy) as u8,
                (120.0 + 90.0 * fy) as u8,
                (200.0 - 40.0 * fy) as u8,
            ]
        } else {
            [
                (250.0 - 30.0 * fy) as u8,
                (150.0 - 80.0 * fy) as u8,
                (80.0 + 60.0 * fy) as u8,
            ]
        };
        if fuji {
            // The mountain, snow on its top.
            let peak = 0.35;
            let slope = (fx - 0.5).abs() * 1.3;
            if fy > peak + slope {
                return if fy < peak + slope + 0.08 && fy < 0.5 {
                    image::Rgb([245, 245, 250])
                } else {
                    image::Rgb([60, 70, (110.0 + 40.0 * fy) as u8])
                };
            }
            image::Rgb(sky)
        } else {
            // The sun, and the sea below it.
            let (dx, dy) = (fx - 0.5, (fy - 0.55) * h as f32 / w as f32);
            if fy > 0.62 {
                let wave = ((fx * 40.0 + fy * 90.0).sin() * 12.0) as i16;
                return image::Rgb([
                    (40 + wave.max(0)) as u8,
                    (60 + wave.max(0)) as u8,
                    (120 + wave) as u8,
                ]);
            }
            if dx * dx + dy * dy < 0.012 {
                return image::Rgb([255, 220, 120]);
            }
            image::Rgb(sky)
        }
    })
}

fn jpeg(img: &image::RgbImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(img)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn png(img: &image::RgbImage) -> Result<Vec<u8>, String> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// A maze game's levels: a header, then 8 levels of 32×32 cells (a wall is 1), made by
/// a fixed-seed walk so every demo ships the same bytes.
pub fn maze_levels() -> Vec<u8> {
    let mut out = b"PMMAZE01".to_vec();
    let mut state: u32 = 0x1234_5678;
    for _ in 0..8 {
        let mut cells = [[1u8; 32]; 32];
        let (mut x, mut y) = (1usize, 1usize);
        for _ in 0..600 {
            if let Some(row) = cells.get_mut(y) {
                if let Some(c) = row.get_mut(x) {
                    *c = 0;
                }
            }
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            match state % 4 {
                0 if x < 30 => x += 1,
                1 if x > 1 => x -= 1,
                2 if y < 30 => y += 1,
                _ if y > 1 => y -= 1,
                _ => {}
            }
        }
        for row in cells {
            out.extend_from_slice(&row);
        }
    }
    out
}

/// A cover: a small picture with a band of colour for its kind.
fn cover(base: [u8; 3]) -> image::RgbImage {
    image::RgbImage::from_fn(96, 96, |x, y| {
        let ring = ((x as i32 - 48).pow(2) + (y as i32 - 48).pow(2)) as f32;
        let k = (1.0 - ring / 4608.0).clamp(0.2, 1.0);
        image::Rgb([
            (f32::from(base[0]) * k) as u8,
            (f32::from(base[1]) * k) as u8,
            (f32::from(base[2]) * k) as u8,
        ])
    })
}

/// Writes the items, their covers and `catalogue.toml` into `dir`; returns the
/// catalogue file's path.
pub fn write(dir: &Path) -> Result<PathBuf, String> {
    let items = dir.join("items");
    std::fs::create_dir_all(&items).map_err(|e| format!("{}: {e}", items.display()))?;
    let put = |name: &str, bytes: &[u8]| -> Result<(), String> {
        let path = items.join(name);
        let mut f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(bytes)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    put("dawn.wav", &tune_wav())?;
    put("fuji.jpg", &jpeg(&picture(true, 1280, 960))?)?;
    put("sunset.jpg", &jpeg(&picture(false, 1280, 960))?)?;
    put("maze.dat", &maze_levels())?;
    put("dawn-cover.png", &png(&cover([230, 160, 80]))?)?;
    put("fuji-cover.png", &png(&picture(true, 96, 96))?)?;
    put("sunset-cover.png", &png(&picture(false, 96, 96))?)?;
    put("maze-cover.png", &png(&cover([90, 180, 120]))?)?;
    let catalogue = r#"# The demo content company's catalogue (printmesh content publish reads it).
currency = "JPY"

[[item]]
id = "dawn"
kind = "music"
title_ja = "夜明けの歌"
title_en = "Song of Dawn"
title_kana = "よあけのうた"
artist_ja = "プリントメッシュ楽団"
artist_en = "printmesh Ensemble"
artist_kana = "ぷりんとめっしゅがくだん"
price_minor = 300
rights_holder = "printmesh"
file = "items/dawn.wav"
cover = "items/dawn-cover.png"
folder = "MUSIC/PRINTMSH"
file_name = "DAWN.WAV"

[[item]]
id = "fuji"
kind = "image"
title_ja = "朝の富士山"
title_en = "Mount Fuji at Dawn"
title_kana = "あさのふじさん"
artist_ja = "プリントメッシュ写真部"
artist_en = "printmesh Camera Club"
artist_kana = "ぷりんとめっしゅしゃしんぶ"
price_minor = 150
rights_holder = "printmesh"
file = "items/fuji.jpg"
cover = "items/fuji-cover.png"
folder = "PICTURES/PRINTMSH"
file_name = "FUJI.JPG"

[[item]]
id = "sunset"
kind = "image"
title_ja = "海の夕焼け"
title_en = "Sunset over the Sea"
title_kana = "うみのゆうやけ"
artist_ja = "プリントメッシュ写真部"
artist_en = "printmesh Camera Club"
artist_kana = "ぷりんとめっしゅしゃしんぶ"
price_minor = 150
rights_holder = "printmesh"
file = "items/sunset.jpg"
cover = "items/sunset-cover.png"
folder = "PICTURES/PRINTMSH"
file_name = "SUNSET.JPG"

[[item]]
id = "maze"
kind = "game"
title_ja = "めいろ 8 ステージ"
title_en = "Maze: 8 Levels"
title_kana = "めいろはちすてーじ"
artist_ja = "プリントメッシュ"
artist_en = "printmesh"
artist_kana = "ぷりんとめっしゅ"
price_minor = 500
rights_holder = "printmesh"
file = "items/maze.dat"
cover = "items/maze-cover.png"
folder = "GAMES/PMMAZE"
file_name = "LEVELS.DAT"
"#;
    let path = dir.join("catalogue.toml");
    std::fs::write(&path, catalogue).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_catalogue_is_made_the_same_every_time_and_reads() {
        let wav = tune_wav();
        assert_eq!(wav.get(..4), Some(&b"RIFF"[..]));
        assert_eq!(wav, tune_wav());
        assert_eq!(maze_levels(), maze_levels());
        assert_eq!(maze_levels().len(), 8 + 8 * 32 * 32);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path()).unwrap();
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let file: crate::roles::content::CatalogueFile = toml::from_str(&text).unwrap();
        assert_eq!(file.items.len(), 4);
        for item in &file.items {
            assert!(dir.path().join(&item.file).is_file(), "{}", item.id);
        }
    }
}
