//! The lab's renderer: turns a customer's photo into the file a printer prints.
//!
//! Each print is decoded (within size and allocation limits), turned upright by its
//! EXIF orientation, cropped to fill the paper's aspect or fitted inside it with a
//! white border, resized to 300 DPI for its paper size, and written as a baseline
//! JPEG (JFIF, 300 DPI) with its back-print text (order id and frame number) in a
//! comment segment. The paper turns with the photo: a landscape photo prints on
//! landscape paper.
//!
//! Resizing is done by `fast_image_resize` (SIMD convolution); the image crate's own
//! resize is kept as [`Resampler::ImageCrate`] for the benchmark's baseline.

use fast_image_resize as fir;
use image::RgbImage;
use printmesh_protocol::pricing::PrintSize;

pub use printmesh_formats::photo::{
    be16, comment, decode_upright, RenderError, MAX_DECODE_BYTES, MAX_SIDE,
};

/// Printing resolution.
pub const DPI: u32 = 300;
/// JPEG quality of a rendered print.
pub const QUALITY: u8 = 92;

pub use printmesh_protocol::pricing::Fit;

/// Which resize implementation (the benchmark compares them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resampler {
    /// `fast_image_resize`, Lanczos3: what the lab uses.
    Fast,
    /// The image crate's `imageops::resize`, Lanczos3: the baseline.
    ImageCrate,
}

/// One print to render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrintSpec {
    pub size: PrintSize,
    pub fit: Fit,
    /// Printed on the back of the print (and kept in the file's comment).
    pub back_print: String,
}

/// A rendered print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The paper's size in pixels at [`DPI`], short side first (rounded to the nearest).
pub fn paper_pixels(size: PrintSize) -> (u32, u32) {
    let (short, long) = size.paper_mm10();
    let px = |mm10: u32| (mm10 * DPI + 127) / 254;
    (px(short), px(long))
}

/// The paper's pixels turned the way the photo is: landscape for a landscape photo.
pub fn target_pixels(size: PrintSize, photo: (u32, u32)) -> (u32, u32) {
    let (short, long) = paper_pixels(size);
    if photo.0 > photo.1 {
        (long, short)
    } else {
        (short, long)
    }
}

/// The part of a `src` image that fills a `dst` frame of another aspect: the largest
/// centred box of `dst`'s aspect, as `(left, top, width, height)`.
pub fn crop_box(src: (u32, u32), dst: (u32, u32)) -> (f64, f64, f64, f64) {
    let (sw, sh) = (f64::from(src.0), f64::from(src.1));
    let (dw, dh) = (f64::from(dst.0), f64::from(dst.1));
    if sw * dh > dw * sh {
        // Wider than the paper: cut the sides.
        let w = sh * dw / dh;
        ((sw - w) / 2.0, 0.0, w, sh)
    } else {
        let h = sw * dh / dw;
        (0.0, (sh - h) / 2.0, sw, h)
    }
}

/// The size of `src` scaled to fit inside `dst` without cutting, at least 1×1.
pub fn fit_size(src: (u32, u32), dst: (u32, u32)) -> (u32, u32) {
    let scale = (f64::from(dst.0) / f64::from(src.0)).min(f64::from(dst.1) / f64::from(src.1));
    let w = (f64::from(src.0) * scale)
        .round()
        .clamp(1.0, f64::from(dst.0)) as u32;
    let h = (f64::from(src.1) * scale)
        .round()
        .clamp(1.0, f64::from(dst.1)) as u32;
    (w, h)
}

/// Renders one print.
pub fn render(bytes: &[u8], spec: &PrintSpec) -> Result<Rendered, RenderError> {
    render_with(bytes, spec, Resampler::Fast)
}

/// Renders one print with the chosen resampler.
pub fn render_with(
    bytes: &[u8],
    spec: &PrintSpec,
    resampler: Resampler,
) -> Result<Rendered, RenderError> {
    let photo = decode_upright(bytes)?;
    let canvas = compose(&photo, spec, resampler)?;
    let jpeg = encode(&canvas, &spec.back_print)?;
    Ok(Rendered {
        jpeg,
        width: canvas.width(),
        height: canvas.height(),
    })
}

/// The print's pixels: the upright photo cropped or fitted onto the paper.
pub fn compose(
    photo: &RgbImage,
    spec: &PrintSpec,
    resampler: Resampler,
) -> Result<RgbImage, RenderError> {
    let src = photo.dimensions();
    let target = target_pixels(spec.size, src);
    match spec.fit {
        Fit::Crop => resize(photo, crop_box(src, target), target, resampler),
        Fit::Border => {
            let inner = fit_size(src, target);
            let whole = (0.0, 0.0, f64::from(src.0), f64::from(src.1));
            let scaled = resize(photo, whole, inner, resampler)?;
            let mut canvas = RgbImage::from_pixel(target.0, target.1, image::Rgb([255; 3]));
            let x = (target.0 - inner.0) / 2;
            let y = (target.1 - inner.1) / 2;
            image::imageops::replace(&mut canvas, &scaled, i64::from(x), i64::from(y));
            Ok(canvas)
        }
    }
}

fn resize(
    photo: &RgbImage,
    (left, top, width, height): (f64, f64, f64, f64),
    to: (u32, u32),
    resampler: Resampler,
) -> Result<RgbImage, RenderError> {
    match resampler {
        Resampler::Fast => {
            let (w, h) = photo.dimensions();
            let src = fir::images::ImageRef::new(w, h, photo.as_raw(), fir::PixelType::U8x3)
                .map_err(|e| RenderError::Resize(e.to_string()))?;
            let mut dst = fir::images::Image::new(to.0, to.1, fir::PixelType::U8x3);
            let options = fir::ResizeOptions::new()
                .crop(left, top, width, height)
                .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3));
            fir::Resizer::new()
                .resize(&src, &mut dst, &options)
                .map_err(|e| RenderError::Resize(e.to_string()))?;
            RgbImage::from_raw(to.0, to.1, dst.into_vec())
                .ok_or_else(|| RenderError::Resize("buffer size".into()))
        }
        Resampler::ImageCrate => {
            // The image crate crops on whole pixels.
            let x = left.round() as u32;
            let y = top.round() as u32;
            let w = (width.round() as u32).clamp(1, photo.width() - x.min(photo.width() - 1));
            let h = (height.round() as u32).clamp(1, photo.height() - y.min(photo.height() - 1));
            let view = image::imageops::crop_imm(photo, x, y, w, h);
            Ok(image::imageops::resize(
                &*view,
                to.0,
                to.1,
                image::imageops::FilterType::Lanczos3,
            ))
        }
    }
}

/// Most photos an index print shows (more would be too small to tell apart).
pub const INDEX_MAX: usize = 120;

/// 3×5 digits for the frame numbers under an index print's thumbnails.
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b001, 0b001, 0b001],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// Draws `n` in dark grey, `scale` pixels per dot, centred on `cx`, from `top`.
fn draw_number(canvas: &mut RgbImage, cx: u32, top: u32, n: usize, scale: u32) {
    let text = n.to_string();
    let advance = 4 * scale;
    let width = advance * text.len() as u32 - scale;
    let left = cx.saturating_sub(width / 2);
    for (i, ch) in text.bytes().enumerate() {
        let Some(glyph) = DIGITS.get(usize::from(ch.wrapping_sub(b'0'))) else {
            continue;
        };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3u32 {
                if bits & (0b100 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = left + i as u32 * advance + col * scale + dx;
                        let y = top + row as u32 * scale + dy;
                        if x < canvas.width() && y < canvas.height() {
                            canvas.put_pixel(x, y, image::Rgb([40, 40, 40]));
                        }
                    }
                }
            }
        }
    }
}

/// The order's index print (contact sheet) on L paper, landscape: every photo
/// upright and whole in a grid, its frame number (1, 2, …) under it.
pub fn index_print(photos: &[RgbImage]) -> Result<RgbImage, RenderError> {
    let (short, long) = paper_pixels(PrintSize::L);
    let (w, h) = (long, short);
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([255; 3]));
    let photos = photos
        .get(..photos.len().min(INDEX_MAX))
        .unwrap_or_default();
    let n = photos.len().max(1) as u32;
    // Columns for cells about as wide as the page's aspect.
    let mut cols = 1;
    while cols * cols * h < n * w * 2 / 3 {
        cols += 1;
    }
    let rows = n.div_ceil(cols);
    let margin = 30;
    let cell_w = (w - 2 * margin) / cols;
    let cell_h = (h - 2 * margin) / rows;
    let scale = (cell_h / 40).clamp(1, 4);
    let label_h = 5 * scale + 2 * scale;
    let pad = (cell_w.min(cell_h) / 20).max(2);
    for (i, photo) in photos.iter().enumerate() {
        let (col, row) = (i as u32 % cols, i as u32 / cols);
        let (x0, y0) = (margin + col * cell_w, margin + row * cell_h);
        let room = (
            cell_w.saturating_sub(2 * pad).max(1),
            cell_h.saturating_sub(2 * pad + label_h).max(1),
        );
        let size = fit_size(photo.dimensions(), room);
        let whole = (
            0.0,
            0.0,
            f64::from(photo.width()),
            f64::from(photo.height()),
        );
        let thumb = resize(photo, whole, size, Resampler::Fast)?;
        let x = x0 + pad + (room.0 - size.0) / 2;
        let y = y0 + pad + (room.1 - size.1) / 2;
        image::imageops::replace(&mut canvas, &thumb, i64::from(x), i64::from(y));
        draw_number(
            &mut canvas,
            x0 + cell_w / 2,
            y0 + pad + room.1 + scale,
            i + 1,
            scale,
        );
    }
    Ok(canvas)
}

/// Writes a print as a baseline JPEG at 300 DPI with its back-print text in a comment.
pub fn encode(canvas: &RgbImage, back_print: &str) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::with_capacity(canvas.as_raw().len() / 8);
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY);
    encoder.set_pixel_density(image::codecs::jpeg::PixelDensity::dpi(DPI as u16));
    encoder
        .encode_image(canvas)
        .map_err(|e| RenderError::Encode(e.to_string()))?;
    Ok(insert_after_jfif(
        with_comment(out, back_print),
        &exif_segment(),
    ))
}

/// A minimal Exif 2.3 APP1 segment for a print: upright (Orientation 1), 300 DPI, and
/// ColorSpace sRGB — what a minilab reading `IMG FMT = EXIF2 -J` from the DPOF file
/// expects to find.
pub fn exif_segment() -> Vec<u8> {
    // Big-endian TIFF: IFD0 at 8 (5 entries), the Exif IFD at 74 (2 entries), the two
    // resolutions (RATIONAL) at 104 and 112.
    fn entry(out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: u32) {
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    const RATIONAL: u16 = 5;
    const UNDEFINED: u16 = 7;
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&5u16.to_be_bytes());
    entry(&mut tiff, 0x0112, SHORT, 1, 1 << 16); // Orientation: upright
    entry(&mut tiff, 0x011A, RATIONAL, 1, 104); // XResolution
    entry(&mut tiff, 0x011B, RATIONAL, 1, 112); // YResolution
    entry(&mut tiff, 0x0128, SHORT, 1, 2 << 16); // ResolutionUnit: inch
    entry(&mut tiff, 0x8769, LONG, 1, 74); // the Exif IFD
    tiff.extend_from_slice(&0u32.to_be_bytes());
    tiff.extend_from_slice(&2u16.to_be_bytes());
    entry(
        &mut tiff,
        0x9000,
        UNDEFINED,
        4,
        u32::from_be_bytes(*b"0230"),
    ); // ExifVersion
    entry(&mut tiff, 0xA001, SHORT, 1, 1 << 16); // ColorSpace: sRGB
    tiff.extend_from_slice(&0u32.to_be_bytes());
    for _ in 0..2 {
        tiff.extend_from_slice(&DPI.to_be_bytes());
        tiff.extend_from_slice(&1u32.to_be_bytes());
    }
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
    seg.extend_from_slice(b"Exif\x00\x00");
    seg.extend_from_slice(&tiff);
    seg
}

/// Inserts a whole segment after the JFIF header (or after SOI if there is none).
fn insert_after_jfif(jpeg: Vec<u8>, segment: &[u8]) -> Vec<u8> {
    if jpeg.get(..2) != Some(&[0xFF, 0xD8]) {
        return jpeg;
    }
    let at = match (jpeg.get(2..4), be16(&jpeg, 4)) {
        (Some([0xFF, 0xE0]), Some(len)) => 4 + len,
        _ => 2,
    };
    let (Some(head), Some(tail)) = (jpeg.get(..at), jpeg.get(at..)) else {
        return jpeg;
    };
    let mut out = Vec::with_capacity(jpeg.len() + segment.len());
    out.extend_from_slice(head);
    out.extend_from_slice(segment);
    out.extend_from_slice(tail);
    out
}

/// Inserts a COM segment with `text` (ASCII, at most 4,000 bytes) after the JFIF
/// header.
fn with_comment(jpeg: Vec<u8>, text: &str) -> Vec<u8> {
    let text: Vec<u8> = text
        .bytes()
        .filter(|b| b.is_ascii() && *b != 0)
        .take(4000)
        .collect();
    if text.is_empty() {
        return jpeg;
    }
    let mut segment = vec![0xFF, 0xFE];
    segment.extend_from_slice(&((text.len() + 2) as u16).to_be_bytes());
    segment.extend_from_slice(&text);
    insert_after_jfif(jpeg, &segment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::DynamicImage;
    use image::Rgb;
    use std::io::Cursor;

    const RED: Rgb<u8> = Rgb([255, 0, 0]);
    const GREEN: Rgb<u8> = Rgb([0, 255, 0]);
    const BLUE: Rgb<u8> = Rgb([0, 0, 255]);
    const YELLOW: Rgb<u8> = Rgb([255, 255, 0]);

    /// A photo as it should look: landscape, grey, with a colour in each quarter
    /// (red top-left, green top-right, blue bottom-left, yellow bottom-right).
    fn upright(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| match (x < w / 2, y < h / 2) {
            (true, true) => RED,
            (false, true) => GREEN,
            (true, false) => BLUE,
            (false, false) => YELLOW,
        })
    }

    /// A minimal EXIF APP1 segment carrying only an orientation.
    fn exif_app1(orientation: u16) -> Vec<u8> {
        let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut body = b"Exif\x00\x00".to_vec();
        body.extend_from_slice(&tiff);
        let mut seg = vec![0xFF, 0xE1];
        seg.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        seg.extend_from_slice(&body);
        seg
    }

    /// A camera file: the upright photo stored turned so that EXIF `orientation`
    /// turns it back.
    fn camera_jpeg(photo: &RgbImage, orientation: u8) -> Vec<u8> {
        // The stored pixels are the upright ones under the inverse transform.
        let inverse = [1, 2, 3, 4, 5, 8, 7, 6][usize::from(orientation - 1)];
        let mut stored = DynamicImage::ImageRgb8(photo.clone());
        stored.apply_orientation(image::metadata::Orientation::from_exif(inverse).unwrap());
        let mut plain = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 95)
            .encode_image(&stored.into_rgb8())
            .unwrap();
        let mut out = plain[..2].to_vec();
        out.extend_from_slice(&exif_app1(u16::from(orientation)));
        out.extend_from_slice(&plain[2..]);
        out
    }

    fn average(img: &RgbImage, x: u32, y: u32, w: u32, h: u32) -> [u8; 3] {
        let mut sum = [0u64; 3];
        for yy in y..y + h {
            for xx in x..x + w {
                let p = img.get_pixel(xx, yy);
                for c in 0..3 {
                    sum[c] += u64::from(p[c]);
                }
            }
        }
        let n = u64::from(w * h);
        sum.map(|s| (s / n) as u8)
    }

    fn near(a: [u8; 3], b: Rgb<u8>) -> bool {
        a.iter().zip(b.0).all(|(x, y)| x.abs_diff(y) < 40)
    }

    #[test]
    fn paper_sizes_at_300_dpi() {
        assert_eq!(paper_pixels(PrintSize::L), (1051, 1500));
        assert_eq!(paper_pixels(PrintSize::TwoL), (1500, 2102));
        assert_eq!(paper_pixels(PrintSize::Kg), (1205, 1795));
        assert_eq!(paper_pixels(PrintSize::EightByTen), (2400, 3000));
        assert_eq!(paper_pixels(PrintSize::A4), (2480, 3508));
        assert_eq!(target_pixels(PrintSize::L, (400, 300)), (1500, 1051));
        assert_eq!(target_pixels(PrintSize::L, (300, 400)), (1051, 1500));
    }

    #[test]
    fn crop_geometry_is_centred_and_keeps_the_paper_aspect() {
        // 4:3 onto 3:2 landscape paper: cut top and bottom.
        let (l, t, w, h) = crop_box((4000, 3000), (1500, 1000));
        assert_eq!((l, w), (0.0, 4000.0));
        assert!((h - 4000.0 * 1000.0 / 1500.0).abs() < 1e-9);
        assert!((t - (3000.0 - h) / 2.0).abs() < 1e-9);
        // 16:9 onto the same: cut the sides.
        let (l, t, w, h) = crop_box((1920, 1080), (1500, 1000));
        assert_eq!((t, h), (0.0, 1080.0));
        assert!((w - 1620.0).abs() < 1e-9);
        assert!((l - 150.0).abs() < 1e-9);
        // The same aspect: everything.
        assert_eq!(crop_box((300, 200), (1500, 1000)), (0.0, 0.0, 300.0, 200.0));
        assert_eq!(fit_size((4000, 3000), (1500, 1051)), (1401, 1051));
        assert_eq!(fit_size((1920, 1080), (1500, 1051)), (1500, 844));
    }

    #[test]
    fn every_orientation_comes_out_upright_at_the_exact_size() {
        let photo = upright(320, 240);
        for orientation in 1..=8u8 {
            let file = camera_jpeg(&photo, orientation);
            let spec = PrintSpec {
                size: PrintSize::L,
                fit: Fit::Crop,
                back_print: format!("01TESTORDER #{orientation}"),
            };
            let out = render(&file, &spec).unwrap();
            assert_eq!(
                (out.width, out.height),
                (1500, 1051),
                "orientation {orientation}"
            );
            let img = image::load_from_memory(&out.jpeg).unwrap().into_rgb8();
            assert_eq!(img.dimensions(), (1500, 1051));
            let (w, h) = (img.width(), img.height());
            let probe = |x: u32, y: u32| average(&img, x, y, 50, 50);
            for (x, y, colour, name) in [
                (100, 100, RED, "top-left"),
                (w - 150, 100, GREEN, "top-right"),
                (100, h - 150, BLUE, "bottom-left"),
                (w - 150, h - 150, YELLOW, "bottom-right"),
            ] {
                let got = probe(x, y);
                assert!(
                    near(got, colour),
                    "orientation {orientation}: {name} is {got:?}"
                );
            }
            assert_eq!(
                comment(&out.jpeg).unwrap(),
                format!("01TESTORDER #{orientation}")
            );
        }
    }

    #[test]
    fn a_print_is_an_upright_srgb_exif_jpeg_at_300_dpi() {
        let spec = PrintSpec {
            size: PrintSize::L,
            fit: Fit::Crop,
            back_print: "01TESTORDER #1".into(),
        };
        let out = render(&camera_jpeg(&upright(300, 200), 6), &spec).unwrap();
        let exif = exif::Reader::new()
            .read_from_container(&mut Cursor::new(&out.jpeg))
            .unwrap();
        let field = |tag| {
            exif.get_field(tag, exif::In::PRIMARY)
                .unwrap_or_else(|| panic!("{tag} missing"))
                .value
                .clone()
        };
        assert_eq!(field(exif::Tag::Orientation).get_uint(0), Some(1));
        assert_eq!(field(exif::Tag::ColorSpace).get_uint(0), Some(1), "sRGB");
        assert_eq!(field(exif::Tag::ResolutionUnit).get_uint(0), Some(2));
        match field(exif::Tag::XResolution) {
            exif::Value::Rational(r) => assert_eq!((r[0].num, r[0].denom), (300, 1)),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(field(exif::Tag::ExifVersion), exif::Value::Undefined(ref v, _) if v == b"0230")
        );
        // Still decodes upright, and the back-print is still found.
        assert_eq!(
            decode_upright(&out.jpeg).unwrap().dimensions(),
            (1500, 1051)
        );
        assert_eq!(comment(&out.jpeg).as_deref(), Some("01TESTORDER #1"));
    }

    #[test]
    fn a_bordered_print_keeps_the_whole_photo_on_white() {
        // 16:9 on 3:2 paper: white bands above and below.
        let photo = upright(1600, 900);
        let spec = PrintSpec {
            size: PrintSize::Kg,
            fit: Fit::Border,
            back_print: String::new(),
        };
        let canvas = compose(&photo, &spec, Resampler::Fast).unwrap();
        assert_eq!(canvas.dimensions(), (1795, 1205));
        let inner = fit_size((1600, 900), (1795, 1205));
        assert_eq!(inner, (1795, 1010));
        let band = (1205 - 1010) / 2;
        assert!(near(average(&canvas, 800, 0, 100, band - 2), Rgb([255; 3])));
        assert!(near(
            average(&canvas, 800, 1205 - band + 2, 100, band - 3),
            Rgb([255; 3])
        ));
        assert!(near(average(&canvas, 10, band + 10, 50, 50), RED));
        assert!(near(
            average(&canvas, 1795 - 60, 1205 - band - 60, 50, 50),
            YELLOW
        ));
        // Cropped instead, the photo reaches every edge.
        let spec = PrintSpec {
            fit: Fit::Crop,
            ..spec
        };
        let canvas = compose(&photo, &spec, Resampler::Fast).unwrap();
        assert!(near(average(&canvas, 10, 2, 50, 5), RED));
    }

    #[test]
    fn both_resamplers_agree() {
        let photo = upright(640, 480);
        let spec = PrintSpec {
            size: PrintSize::L,
            fit: Fit::Crop,
            back_print: String::new(),
        };
        let a = compose(&photo, &spec, Resampler::Fast).unwrap();
        let b = compose(&photo, &spec, Resampler::ImageCrate).unwrap();
        assert_eq!(a.dimensions(), b.dimensions());
        for (x, y) in [(100, 100), (1300, 100), (100, 900), (1300, 900)] {
            let (pa, pb) = (average(&a, x, y, 40, 40), average(&b, x, y, 40, 40));
            assert!(
                pa.iter().zip(pb).all(|(p, q)| p.abs_diff(q) < 8),
                "{pa:?} {pb:?}"
            );
        }
    }

    #[test]
    fn a_camera_file_cut_in_half_does_not_decode() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/memory-card/DCIM/100PMESH/PMSH0003.JPG");
        let good = std::fs::read(path).unwrap();
        let cut = &good[..good.len() / 2];
        let r = decode_upright(cut);
        assert!(
            matches!(&r, Err(RenderError::Decode(e)) if e.contains("truncated")),
            "{:?}",
            r.map(|i| i.dimensions())
        );
        // Zeros after the end marker are padding, not damage.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 64]);
        assert!(decode_upright(&padded).is_ok());
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let spec = PrintSpec {
            size: PrintSize::L,
            fit: Fit::Crop,
            back_print: String::new(),
        };
        assert_eq!(render(b"not an image", &spec), Err(RenderError::NotJpeg));
        let mut png = Vec::new();
        upright(8, 8)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(render(&png, &spec), Err(RenderError::NotJpeg));
        let good = camera_jpeg(&upright(64, 48), 1);
        let cut = &good[..good.len() / 2];
        assert!(matches!(render(cut, &spec), Err(RenderError::Decode(_))));
        // A header that claims a huge frame is refused before decoding.
        let mut huge = good.clone();
        let sof = huge.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        huge[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
        assert!(matches!(render(&huge, &spec), Err(RenderError::Size(..))));
    }

    #[test]
    fn the_index_print_shows_every_photo_upright_with_its_number() {
        let colours = [RED, GREEN, BLUE, YELLOW, Rgb([0, 255, 255])];
        let photos: Vec<RgbImage> = colours
            .iter()
            .map(|c| RgbImage::from_pixel(400, 300, *c))
            .collect();
        let sheet = index_print(&photos).unwrap();
        assert_eq!(sheet.dimensions(), (1500, 1051));
        // Five photos on landscape L paper: three columns, two rows.
        let (cell_w, cell_h) = ((1500 - 60) / 3, (1051 - 60) / 2);
        for (i, colour) in colours.iter().enumerate() {
            let (col, row) = (i as u32 % 3, i as u32 / 3);
            let cx = 30 + col * cell_w + cell_w / 2;
            let cy = 30 + row * cell_h + cell_h / 2 - 20;
            assert!(
                near(average(&sheet, cx - 10, cy - 10, 20, 20), *colour),
                "photo {i}"
            );
            // Its number is drawn (dark dots) in the strip under it.
            let strip_top = 30 + (row + 1) * cell_h - 40;
            let dark = (strip_top..30 + (row + 1) * cell_h)
                .flat_map(|y| (cx - 30..cx + 30).map(move |x| (x, y)))
                .filter(|&(x, y)| sheet.get_pixel(x, y).0 == [40, 40, 40])
                .count();
            assert!(dark > 10, "no number under photo {i}");
        }
        // Empty cells stay white.
        assert!(near(
            average(&sheet, 30 + 2 * cell_w + 100, 30 + cell_h + 100, 50, 50),
            Rgb([255; 3])
        ));
        assert!(index_print(&[]).is_ok());
    }
}
