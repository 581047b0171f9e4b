//! Thumbnails of a memory card's photos: the camera's EXIF thumbnail, or the photo
//! itself decoded under explicit size and allocation limits, turned upright and fitted
//! to a box. Outside bytes: the fuzz target `images` runs [`make_thumb`] on anything.

use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageReader, Limits};

/// Grid thumbnails fit in this many pixels (a grid cell shows 16×14 half-block pixels).
pub const GRID_THUMB_MAX: (u32, u32) = (48, 36);
/// Preview images fit in this many pixels.
pub const PREVIEW_MAX: (u32, u32) = (320, 240);
/// Largest photo dimension the kiosk decodes (a 100 MP camera is 12,000 wide).
pub const MAX_DECODE_DIMENSION: u32 = 16_384;
/// Most memory one decode may allocate.
pub const MAX_DECODE_ALLOC_BYTES: u64 = 256 * 1024 * 1024;
/// Largest EXIF thumbnail dimension decoded (cameras embed 160×120).
pub const MAX_THUMBNAIL_DIMENSION: u32 = 1024;
/// Most memory an EXIF thumbnail decode may allocate.
pub const MAX_THUMBNAIL_ALLOC_BYTES: u64 = 8 * 1024 * 1024;

/// A small RGB image.
#[derive(Clone, PartialEq, Eq)]
pub struct Thumb {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, row by row.
    pub rgb: Vec<u8>,
}

impl std::fmt::Debug for Thumb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Thumb({}×{})", self.width, self.height)
    }
}

impl Thumb {
    pub fn from_image(img: &DynamicImage) -> Thumb {
        let rgb = img.to_rgb8();
        Thumb {
            width: rgb.width(),
            height: rgb.height(),
            rgb: rgb.into_raw(),
        }
    }

    pub fn to_image(&self) -> Option<DynamicImage> {
        image::RgbImage::from_raw(self.width, self.height, self.rgb.clone())
            .map(DynamicImage::ImageRgb8)
    }

    fn pixel(&self, x: u32, y: u32) -> (u8, u8, u8) {
        let i = ((y * self.width + x) * 3) as usize;
        match self.rgb.get(i..i + 3) {
            Some([r, g, b]) => (*r, *g, *b),
            _ => (0, 0, 0),
        }
    }

    /// The average colour of the source rectangle `[x0, x1) × [y0, y1)`.
    pub fn average(&self, x0: u32, x1: u32, y0: u32, y1: u32) -> (u8, u8, u8) {
        let (mut r, mut g, mut b, mut n) = (0u32, 0u32, 0u32, 0u32);
        for y in y0..y1.max(y0 + 1).min(self.height) {
            for x in x0..x1.max(x0 + 1).min(self.width) {
                let (pr, pg, pb) = self.pixel(x, y);
                r += u32::from(pr);
                g += u32::from(pg);
                b += u32::from(pb);
                n += 1;
            }
        }
        let n = n.max(1);
        ((r / n) as u8, (g / n) as u8, (b / n) as u8)
    }
}

/// Decoding limits for any image from a memory card.
pub fn decode_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DECODE_DIMENSION);
    limits.max_image_height = Some(MAX_DECODE_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_ALLOC_BYTES);
    limits
}

/// Decoding limits for an EXIF thumbnail: small, so the thumbnails decoded in
/// parallel (outside the one-at-a-time gate) stay small whatever a file claims.
fn thumbnail_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_THUMBNAIL_DIMENSION);
    limits.max_image_height = Some(MAX_THUMBNAIL_DIMENSION);
    limits.max_alloc = Some(MAX_THUMBNAIL_ALLOC_BYTES);
    limits
}

fn decode_bytes(bytes: &[u8]) -> Result<DynamicImage, String> {
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    reader.limits(thumbnail_limits());
    reader.decode().map_err(|e| e.to_string())
}

fn decode_file(path: &Path) -> Result<DynamicImage, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut reader = ImageReader::new(std::io::BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    reader.limits(decode_limits());
    reader.decode().map_err(|e| e.to_string())
}

/// Scales to fit `max` (never up), then turns upright.
fn finish(mut img: DynamicImage, orientation: u8, max: (u32, u32)) -> Thumb {
    if let Some(o) = Orientation::from_exif(orientation) {
        img.apply_orientation(o);
    }
    let (w, h) = (img.width(), img.height());
    if w > max.0 || h > max.1 {
        img = img.thumbnail(max.0, max.1);
    }
    Thumb::from_image(&img)
}

/// Where the pixels of one thumbnail come from.
pub enum Source<'a> {
    /// The EXIF thumbnail's JPEG bytes.
    Exif(&'a [u8]),
    /// The photo itself.
    File(&'a Path),
}

/// Makes an upright thumbnail that fits `max`.
pub fn make_thumb(source: Source<'_>, orientation: u8, max: (u32, u32)) -> Result<Thumb, String> {
    let img = match source {
        Source::Exif(bytes) => decode_bytes(bytes)?,
        Source::File(path) => decode_file(path)?,
    };
    Ok(finish(img, orientation, max))
}
