//! A customer's photo as the lab reads it: a JPEG decoded within size and allocation
//! limits and turned upright by its EXIF orientation, its header checked at intake, and
//! the back-print comment of a rendered print read back. Outside bytes: the fuzz target
//! `images` runs these on anything.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, RgbImage};

/// Largest photo the lab decodes, per side.
pub const MAX_SIDE: u32 = 16_384;
/// Most memory one decode may take.
pub const MAX_DECODE_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("not a JPEG")]
    NotJpeg,
    #[error("the image cannot be decoded: {0}")]
    Decode(String),
    #[error("{0}×{1} is outside the sizes the lab prints")]
    Size(u32, u32),
    #[error("resizing failed: {0}")]
    Resize(String),
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// Reads a JPEG's header and checks it is a sane, decodable size.
pub fn check_image(bytes: &[u8]) -> Result<(u32, u32), String> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format() != Some(image::ImageFormat::Jpeg) {
        return Err("not a JPEG".into());
    }
    let (w, h) = reader.into_dimensions().map_err(|e| e.to_string())?;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!("{w}×{h} is outside the sizes the lab prints"));
    }
    Ok((w, h))
}

/// Decodes a JPEG within the lab's limits and turns it upright.
pub fn decode_upright(bytes: &[u8]) -> Result<RgbImage, RenderError> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    if reader.format() != Some(image::ImageFormat::Jpeg) {
        return Err(RenderError::NotJpeg);
    }
    // The decoder fills a picture cut short with grey rather than failing; a lab must
    // not print that. A whole JPEG ends with its EOI marker (some cameras pad after it
    // with zeros).
    let end = bytes
        .iter()
        .rposition(|b| *b != 0)
        .map(|i| i + 1)
        .unwrap_or(0);
    if !bytes
        .get(..end)
        .unwrap_or_default()
        .ends_with(&[0xFF, 0xD9])
    {
        return Err(RenderError::Decode(
            "the file ends before its picture does (truncated)".into(),
        ));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(RenderError::Size(w, h));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    decoder
        .set_limits(limits)
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| RenderError::Decode(e.to_string()))?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// The big-endian u16 at `at`.
pub fn be16(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at + 2)?;
    Some(usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?])))
}

/// The comment (back-print text) of a JPEG, if it has one before its image data.
pub fn comment(jpeg: &[u8]) -> Option<String> {
    let mut i = 2;
    loop {
        if jpeg.get(i) != Some(&0xFF) {
            return None;
        }
        let marker = *jpeg.get(i + 1)?;
        let len = be16(jpeg, i + 2)?;
        if marker == 0xFE {
            let body = jpeg.get(i + 4..i + 2 + len)?;
            return Some(String::from_utf8_lossy(body).into_owned());
        }
        if marker == 0xDA || len < 2 {
            return None;
        }
        i += 2 + len;
    }
}
