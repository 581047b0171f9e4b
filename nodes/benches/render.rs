//! Renders per second of a 12 MP camera photo to a KG print at 300 DPI: the lab's
//! renderer (fast_image_resize) against the same pipeline with the image crate's own
//! resize, in the same run; and whether the renderer stays 10× ahead of a minilab
//! printing 1,800 prints an hour (0.5 a second) on this machine's cores.
//!
//! `cargo bench -p printmesh-nodes --bench render`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use image::{Rgb, RgbImage};
use printmesh_nodes::roles::lab::render::{
    compose, decode_upright, render_with, Fit, PrintSpec, Resampler,
};
use printmesh_protocol::pricing::PrintSize;

const PRINTER_PER_SECOND: f64 = 1800.0 / 3600.0;

/// A 4000×3000 photo-like JPEG (smooth gradients and fine texture), as a camera
/// writes it.
fn camera_photo() -> Vec<u8> {
    let (w, h) = (4000u32, 3000u32);
    let img = RgbImage::from_fn(w, h, |x, y| {
        let t = ((x * 7 + y * 13) % 23) as u8;
        Rgb([
            ((x * 255 / w) as u8).wrapping_add(t),
            ((y * 255 / h) as u8).wrapping_add(t / 2),
            (((x + y) * 255 / (w + h)) as u8) ^ t,
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

fn rate(photo: &[u8], resampler: Resampler, n: usize, threads: usize) -> f64 {
    let spec = PrintSpec {
        size: PrintSize::Kg,
        fit: Fit::Crop,
        back_print: "01BENCHORDER0000000000000 #1".into(),
    };
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..n {
                    let r = render_with(photo, &spec, resampler).unwrap();
                    assert_eq!((r.width, r.height), (1795, 1205));
                }
            });
        }
    });
    (n * threads) as f64 / start.elapsed().as_secs_f64()
}

/// The resize step alone (crop and resize of the decoded photo), per second.
fn resize_rate(photo: &RgbImage, resampler: Resampler, n: usize) -> f64 {
    let spec = PrintSpec {
        size: PrintSize::Kg,
        fit: Fit::Crop,
        back_print: String::new(),
    };
    let start = Instant::now();
    for _ in 0..n {
        compose(photo, &spec, resampler).unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let photo = camera_photo();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "renders of a 12 MP photo ({} KB JPEG) to KG at 300 DPI (1795×1205), crop to fill, JPEG q92\n",
        photo.len() / 1024
    );
    // Warm up both.
    rate(&photo, Resampler::Fast, 1, 1);
    rate(&photo, Resampler::ImageCrate, 1, 1);
    let fast_1 = rate(&photo, Resampler::Fast, 12, 1);
    let base_1 = rate(&photo, Resampler::ImageCrate, 4, 1);
    let fast_n = rate(&photo, Resampler::Fast, 12, cores);
    let base_n = rate(&photo, Resampler::ImageCrate, 4, cores);
    println!("| threads | fast_image_resize | image crate resize (baseline) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| 1 | {fast_1:.2}/s | {base_1:.2}/s | {:.1}× |",
        fast_1 / base_1
    );
    println!(
        "| {cores} | {fast_n:.2}/s | {base_n:.2}/s | {:.1}× |",
        fast_n / base_n
    );
    let decoded = decode_upright(&photo).unwrap();
    let fast_r = resize_rate(&decoded, Resampler::Fast, 20);
    let base_r = resize_rate(&decoded, Resampler::ImageCrate, 5);
    println!(
        "| 1, the resize step alone | {fast_r:.2}/s | {base_r:.2}/s | {:.1}× |",
        fast_r / base_r
    );
    println!(
        "\nagainst one minilab printer (1,800 prints an hour = {PRINTER_PER_SECOND:.2}/s): {:.1}× ahead on {cores} cores (target ≥ 10×)",
        fast_n / PRINTER_PER_SECOND
    );
}
