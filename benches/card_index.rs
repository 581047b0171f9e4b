//! Indexing a memory card of 1,000 camera-size photos (issue 3's benchmark).
//!
//! The card is generated here: 12 MP JPEGs (4000×3000) with an EXIF block carrying the
//! orientation, the date taken and a 160×120 thumbnail, as cameras write them. It is
//! kept under `target/bench-card/` so later runs skip generating it.
//!
//! Measured in the same run:
//! 1. the kiosk's path: DCF scan, then the kiosk's thumbnail loader (2 workers, EXIF
//!    thumbnails, the visible page first): time to the first screen of thumbnails (the
//!    6 photos an 80×24 screen shows) and to the whole card;
//! 2. the baseline: every file decoded whole and resized (`image::open` + `resize`),
//!    on the same 2 threads;
//! 3. the real kiosk binary's peak RSS (VmHWM) while a customer browses every photo
//!    of that card in an 80×24 tmux pane.
//!
//! Run: `cargo bench --bench card_index` (add `-- --photos N` for a smaller card).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exif::experimental::Writer;
use exif::{Field, In, Tag, Value};
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, RgbImage};
use printmesh_nodes::media::scan;
use printmesh_nodes::roles::kiosk::thumbs::{LoaderEvent, ThumbLoader, GRID_THUMB_MAX};

const WIDTH: u32 = 4000;
const HEIGHT: u32 = 3000;
const BASES: usize = 4;
/// Photos on one 80×24 screen (3 × 2).
const FIRST_SCREEN: usize = 6;
const WORKERS: usize = 2;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// One base photo: a camera-like picture (gradients, texture, some noise) so the
/// JPEG is camera-sized, and its 160×120 thumbnail.
fn base_photo(seed: u32) -> Res<(Vec<u8>, Vec<u8>)> {
    let img = RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let h = (x.wrapping_mul(73_856_093)
            ^ y.wrapping_mul(19_349_663)
            ^ seed.wrapping_mul(83_492_791))
        .wrapping_mul(2_654_435_761)
            >> 27;
        let wave = (((x / 7 + y / 11 + seed * 13) % 64) as i32 - 32).unsigned_abs();
        let r = (x * 255 / WIDTH) as i32 + h as i32 - 16;
        let g = (y * 255 / HEIGHT) as i32 + wave as i32 - 16;
        let b = ((x + y + seed * 400) % 256) as i32 / 2 + h as i32;
        image::Rgb([
            r.clamp(0, 255) as u8,
            g.clamp(0, 255) as u8,
            b.clamp(0, 255) as u8,
        ])
    });
    let mut full = Vec::new();
    JpegEncoder::new_with_quality(&mut full, 85).encode_image(&img)?;
    let thumb = DynamicImage::ImageRgb8(img).thumbnail(160, 120);
    let mut small = Vec::new();
    JpegEncoder::new_with_quality(&mut small, 80).encode_image(&thumb)?;
    Ok((full, small))
}

/// A camera file: SOI, an EXIF APP1 segment (orientation, date taken, thumbnail), then
/// the base photo's segments.
fn camera_file(n: usize, base: &[u8], thumb: &[u8]) -> Res<Vec<u8>> {
    let orientation = Field {
        tag: Tag::Orientation,
        ifd_num: In::PRIMARY,
        value: Value::Short(vec![if n % 5 == 0 { 6 } else { 1 }]),
    };
    let taken = format!(
        "2026:{:02}:{:02} {:02}:{:02}:{:02}",
        1 + n % 12,
        1 + n % 28,
        n % 24,
        n % 60,
        (n * 7) % 60
    );
    let taken = Field {
        tag: Tag::DateTimeOriginal,
        ifd_num: In::PRIMARY,
        value: Value::Ascii(vec![taken.into_bytes()]),
    };
    let thumb_tag = Field {
        tag: Tag::Compression,
        ifd_num: In::THUMBNAIL,
        value: Value::Short(vec![6]),
    };
    let mut writer = Writer::new();
    writer.push_field(&orientation);
    writer.push_field(&taken);
    writer.push_field(&thumb_tag);
    writer.set_jpeg(thumb, In::THUMBNAIL);
    let mut tiff = std::io::Cursor::new(Vec::new());
    writer.write(&mut tiff, false)?;
    let tiff = tiff.into_inner();
    let len = u16::try_from(2 + 6 + tiff.len())?;
    let mut out = Vec::with_capacity(base.len() + tiff.len() + 16);
    out.extend_from_slice(&[0xff, 0xd8, 0xff, 0xe1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(&tiff);
    out.extend_from_slice(base.get(2..).ok_or("short JPEG")?);
    Ok(out)
}

/// The card, generated once and kept.
fn card(photos: usize) -> Res<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("bench-card-{photos}"));
    let dir = root.join("DCIM").join("100BENCH");
    let complete = root.join(".complete");
    if complete.exists() {
        return Ok(root);
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "generating {photos} photos of {WIDTH}×{HEIGHT} in {} …",
        root.display()
    );
    let started = Instant::now();
    let mut bases = Vec::new();
    for seed in 0..BASES {
        bases.push(base_photo(seed as u32)?);
    }
    let mut bytes = 0u64;
    for n in 0..photos {
        let (base, thumb) = bases.get(n % BASES).ok_or("no base")?;
        let file = camera_file(n, base, thumb)?;
        bytes += file.len() as u64;
        let name = dir.join(format!("BNCH{:04}.JPG", (n % 9999) + 1));
        std::fs::File::create(name)?.write_all(&file)?;
    }
    std::fs::write(&complete, b"")?;
    eprintln!(
        "  {:.1} GB in {:.0} s ({:.1} MB a photo)",
        bytes as f64 / 1e9,
        started.elapsed().as_secs_f64(),
        bytes as f64 / photos as f64 / 1e6
    );
    Ok(root)
}

struct Timing {
    first_screen: Duration,
    whole_card: Duration,
}

/// The kiosk's own path: the scan, then the thumbnail loader.
fn kiosk_index(root: &Path) -> Res<Timing> {
    let started = Instant::now();
    let images = scan(root)?;
    let n = images.len();
    let (tx, rx) = std::sync::mpsc::channel();
    let loader = ThumbLoader::new(WORKERS, move |e| {
        let _ = tx.send(e);
    });
    loader.load_card(1, images);
    loader.focus(1, 0..FIRST_SCREEN);
    let mut first_screen = None;
    let mut visible = 0;
    let mut loaded = 0;
    while loaded < n {
        match rx.recv_timeout(Duration::from_secs(60))? {
            LoaderEvent::Loaded { item, .. } => {
                if item.thumb.is_none() {
                    return Err(format!(
                        "photo {} has no thumbnail: {:?}",
                        item.index, item.info.error
                    )
                    .into());
                }
                loaded += 1;
                if item.index < FIRST_SCREEN {
                    visible += 1;
                    if visible == FIRST_SCREEN.min(n) {
                        first_screen = Some(started.elapsed());
                    }
                }
            }
            LoaderEvent::Preview { .. } => {}
        }
    }
    Ok(Timing {
        first_screen: first_screen.ok_or("first screen never loaded")?,
        whole_card: started.elapsed(),
    })
}

/// The baseline: decode every photo whole and resize it, in card order, on the same
/// number of threads.
fn full_decode(root: &Path) -> Res<Timing> {
    let started = Instant::now();
    let images = Arc::new(scan(root)?);
    let next = Arc::new(AtomicUsize::new(0));
    let first_done = Arc::new(Mutex::new((0usize, None::<Duration>)));
    let mut threads = Vec::new();
    for _ in 0..WORKERS {
        let (images, next, first_done) = (images.clone(), next.clone(), first_done.clone());
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(image) = images.get(i) else {
                    return Ok(());
                };
                let img = image::open(&image.path).map_err(|e| e.to_string())?;
                let small = img.resize(
                    GRID_THUMB_MAX.0,
                    GRID_THUMB_MAX.1,
                    image::imageops::FilterType::Triangle,
                );
                std::hint::black_box(small);
                if i < FIRST_SCREEN {
                    let mut f = first_done.lock().map_err(|e| e.to_string())?;
                    f.0 += 1;
                    if f.0 == FIRST_SCREEN {
                        f.1 = Some(started.elapsed());
                    }
                }
            }
        }));
    }
    for t in threads {
        t.join().map_err(|_| "decode thread panicked")??;
    }
    let whole_card = started.elapsed();
    let first_screen = first_done
        .lock()
        .map_err(|e| e.to_string())?
        .1
        .ok_or("first screen never decoded")?;
    Ok(Timing {
        first_screen,
        whole_card,
    })
}

/// The real kiosk binary in an 80×24 tmux pane, browsing every photo; its VmHWM.
fn kiosk_peak_rss(root: &Path, photos: usize) -> Res<u64> {
    let dir = tempfile::tempdir()?;
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let config = dir.path().join("kiosk.toml");
    std::fs::write(
        &config,
        format!(
            "role = \"kiosk\"\nname = \"Bench kiosk\"\nnetwork = \"bench\"\ndata_dir = \"{}\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n\n[kiosk]\nstore = \"store-bench\"\nstore_name = \"Bench Store\"\nprices = \"{}\"\nmedia_dir = \"{}\"\nlanguage = \"en\"\nidle_timeout_secs = 3600\n",
            dir.path().join("data").display(),
            fx.join("demo/prices.toml").display(),
            root.display()
        ),
    )?;
    let socket = format!("printmesh-bench-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
    };
    let command = format!(
        "exec {} kiosk --config {}",
        env!("CARGO_BIN_EXE_printmesh"),
        config.display()
    );
    tmux(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        "k",
        "-x",
        "80",
        "-y",
        "24",
        &command,
    ])?;
    let result = (|| -> Res<u64> {
        let screen = || -> Res<String> {
            Ok(
                String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "k"])?.stdout)
                    .into_owned(),
            )
        };
        let wait_for = |text: &str| -> Res<()> {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !screen()?.contains(text) {
                if Instant::now() > deadline {
                    return Err(format!("the kiosk never showed {text:?}:\n{}", screen()?).into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        };
        wait_for(&format!("Photo 1 of {photos}"))?;
        // Photo by photo through the whole card, as fast as a customer could wish.
        let mut sent = 1;
        while sent < photos {
            let batch = (photos - sent).min(50);
            let mut args = vec!["send-keys", "-t", "k"];
            args.extend(std::iter::repeat_n("Right", batch));
            tmux(&args)?;
            sent += batch;
            wait_for(&format!("Photo {sent} of {photos}"))?;
        }
        // And back to the start, a page at a time.
        for _ in 0..photos.div_ceil(3) {
            tmux(&["send-keys", "-t", "k", "Up"])?;
        }
        wait_for(&format!("Photo {} of {photos}", 1 + (photos - 1) % 3))?;
        let pid =
            String::from_utf8_lossy(&tmux(&["list-panes", "-t", "k", "-F", "#{pane_pid}"])?.stdout)
                .trim()
                .to_string();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .ok_or("no VmHWM")?
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse::<u64>()?;
        Ok(hwm * 1024)
    })();
    let _ = tmux(&["kill-server"]);
    result
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let photos = args
        .iter()
        .position(|a| a == "--photos")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000usize);
    let root = card(photos)?;
    // Warm the page cache for both contenders alike.
    for e in std::fs::read_dir(root.join("DCIM/100BENCH"))?.flatten() {
        std::hint::black_box(std::fs::read(e.path())?.len());
    }
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(kiosk_index(&root)?);
    }
    runs.sort_by_key(|t| t.whole_card);
    let kiosk = runs.swap_remove(1);
    eprintln!("baseline: decoding {photos} photos whole …");
    let baseline = full_decode(&root)?;
    eprintln!("browsing the card in the real kiosk …");
    let rss = kiosk_peak_rss(&root, photos)?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("memory card of {photos} photos, {WIDTH}×{HEIGHT} JPEG with EXIF thumbnails, {WORKERS} threads each");
    println!();
    println!("| path | first screen (6 photos) | whole card | per photo |");
    println!("|---|---|---|---|");
    println!(
        "| kiosk: DCF scan + EXIF thumbnails (median of 3) | {:.1} ms | {:.1} ms | {:.3} ms |",
        ms(kiosk.first_screen),
        ms(kiosk.whole_card),
        ms(kiosk.whole_card) / photos as f64
    );
    println!(
        "| baseline: image::open + resize | {:.1} ms | {:.1} ms | {:.3} ms |",
        ms(baseline.first_screen),
        ms(baseline.whole_card),
        ms(baseline.whole_card) / photos as f64
    );
    println!();
    println!(
        "ratio: first screen {:.0}× faster, whole card {:.0}× faster (target ≥ 50×)",
        ms(baseline.first_screen) / ms(kiosk.first_screen),
        ms(baseline.whole_card) / ms(kiosk.whole_card)
    );
    println!(
        "kiosk peak RSS browsing all {photos} photos: {:.1} MB (target ≤ 64 MB)",
        rss as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
