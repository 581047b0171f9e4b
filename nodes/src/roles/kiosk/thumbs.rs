//! Thumbnails for the photo grid and the preview, made off the UI task.
//!
//! The camera's EXIF thumbnail (about 160×120) is used whenever there is one: it decodes
//! in a fraction of a millisecond. Only a photo without one is decoded whole, one at a
//! time, under explicit size and allocation limits, so a hostile file cannot take the
//! kiosk's memory. Every thumbnail is turned upright by its EXIF orientation.
//!
//! [`ThumbLoader`] runs a few worker threads. The photos on screen come first, then the
//! preview the customer is looking at, then the rest of the card in order; the grid
//! keeps only small thumbnails ([`GRID_THUMB_MAX`]), so a card of thousands of photos
//! stays within a few megabytes.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::widgets::Widget;

use crate::media::{read_info_and_thumbnail, ImageInfo, MediaImage, ThumbnailSource};
pub use printmesh_formats::thumbs::*;

/// One photo's facts and grid thumbnail.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub index: usize,
    pub info: ImageInfo,
    pub thumb: Option<Thumb>,
}

/// What the loader reports.
#[derive(Clone, Debug)]
pub enum LoaderEvent {
    Loaded {
        generation: u64,
        item: Loaded,
    },
    Preview {
        generation: u64,
        index: usize,
        thumb: Option<Thumb>,
    },
}

#[derive(Default)]
struct Queue {
    generation: u64,
    images: Arc<Vec<MediaImage>>,
    claimed: Vec<bool>,
    next: usize,
    window: Range<usize>,
    preview: Option<usize>,
    stop: bool,
    /// Cards older than this have left the slot.
    floor: u64,
}

enum Job {
    Grid(u64, usize, MediaImage),
    Preview(u64, usize, MediaImage),
}

impl Queue {
    fn take(&mut self) -> Option<Job> {
        let generation = self.generation;
        if let Some(i) = self.preview.take() {
            if let Some(img) = self.images.get(i) {
                return Some(Job::Preview(generation, i, img.clone()));
            }
        }
        let window = self.window.clone();
        let in_window = window
            .clone()
            .find(|i| self.claimed.get(*i) == Some(&false));
        let index = match in_window {
            Some(i) => Some(i),
            None => {
                while self.claimed.get(self.next) == Some(&true) {
                    self.next += 1;
                }
                (self.next < self.claimed.len()).then_some(self.next)
            }
        }?;
        if let Some(c) = self.claimed.get_mut(index) {
            *c = true;
        }
        self.images
            .get(index)
            .map(|img| Job::Grid(generation, index, img.clone()))
    }
}

type Sink = Arc<dyn Fn(LoaderEvent) + Send + Sync>;

/// Background thumbnail workers for one media slot.
pub struct ThumbLoader {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    workers: Vec<JoinHandle<()>>,
}

impl ThumbLoader {
    /// Starts `workers` threads that report through `sink`.
    pub fn new(workers: usize, sink: impl Fn(LoaderEvent) + Send + Sync + 'static) -> ThumbLoader {
        let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let sink: Sink = Arc::new(sink);
        // At most one whole-photo decode at a time: a 12 MP decode alone is 36 MB.
        let decode_gate = Arc::new(Mutex::new(()));
        let workers = (0..workers.max(1))
            .map(|n| {
                let shared = shared.clone();
                let sink = sink.clone();
                let gate = decode_gate.clone();
                std::thread::Builder::new()
                    .name(format!("thumbs-{n}"))
                    .spawn(move || worker(shared, sink, gate))
            })
            .filter_map(Result::ok)
            .collect();
        ThumbLoader { shared, workers }
    }

    fn with_queue(&self, f: impl FnOnce(&mut Queue)) {
        let (lock, cvar) = &*self.shared;
        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut q);
        cvar.notify_all();
    }

    /// A new card: forget the old one and load this one's photos. A card older than
    /// the newest one seen (a slow scan finishing late) is ignored.
    pub fn load_card(&self, generation: u64, images: Vec<MediaImage>) {
        self.with_queue(|q| {
            if generation < q.generation || generation < q.floor {
                return;
            }
            q.generation = generation;
            q.claimed = vec![false; images.len()];
            q.images = Arc::new(images);
            q.next = 0;
            q.window = 0..0;
            q.preview = None;
        });
    }

    /// The card of `generation` (and every older one) left the slot.
    pub fn forget(&self, generation: u64) {
        self.with_queue(|q| {
            q.floor = q.floor.max(generation + 1);
            if q.generation <= generation {
                q.claimed.clear();
                q.images = Arc::new(Vec::new());
                q.next = 0;
                q.window = 0..0;
                q.preview = None;
            }
        });
    }

    /// The photos now on screen: load these first.
    pub fn focus(&self, generation: u64, window: Range<usize>) {
        self.with_queue(|q| {
            if q.generation == generation {
                q.window = window;
            }
        });
    }

    /// The photo the customer is looking at: make its preview next.
    pub fn want_preview(&self, generation: u64, index: usize) {
        self.with_queue(|q| {
            if q.generation == generation {
                q.preview = Some(index);
            }
        });
    }
}

impl Drop for ThumbLoader {
    fn drop(&mut self) {
        self.with_queue(|q| q.stop = true);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(shared: Arc<(Mutex<Queue>, Condvar)>, sink: Sink, gate: Arc<Mutex<()>>) {
    let (lock, cvar) = &*shared;
    loop {
        let job = {
            let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if q.stop {
                    return;
                }
                if let Some(job) = q.take() {
                    break job;
                }
                q = cvar.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        match job {
            Job::Grid(generation, index, image) => {
                let item = load_grid(index, &image, &gate);
                sink(LoaderEvent::Loaded { generation, item });
            }
            Job::Preview(generation, index, image) => {
                let thumb = load_preview(&image, &gate);
                sink(LoaderEvent::Preview {
                    generation,
                    index,
                    thumb,
                });
            }
        }
    }
}

/// One photo's facts and grid thumbnail (what a loader worker does for each photo).
/// `gate` keeps whole-photo decodes one at a time.
pub fn load_grid(index: usize, image: &MediaImage, gate: &Mutex<()>) -> Loaded {
    let (info, exif) = read_info_and_thumbnail(image);
    let thumb = thumb_for(&info, exif.as_deref(), &image.path, GRID_THUMB_MAX, gate);
    Loaded { index, info, thumb }
}

/// One photo's preview image.
pub fn load_preview(image: &MediaImage, gate: &Mutex<()>) -> Option<Thumb> {
    let (info, exif) = read_info_and_thumbnail(image);
    thumb_for(&info, exif.as_deref(), &image.path, PREVIEW_MAX, gate)
}

fn thumb_for(
    info: &ImageInfo,
    exif: Option<&[u8]>,
    path: &Path,
    max: (u32, u32),
    gate: &Mutex<()>,
) -> Option<Thumb> {
    if info.error.is_some() {
        return None;
    }
    let from_exif =
        exif.and_then(|bytes| make_thumb(Source::Exif(bytes), info.orientation, max).ok());
    if from_exif.is_some() || info.thumbnail == ThumbnailSource::None {
        return from_exif;
    }
    let _one_at_a_time = gate.lock().unwrap_or_else(|e| e.into_inner());
    match make_thumb(Source::File(path), info.orientation, max) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(file = %info.dcf_name, "cannot decode photo: {e}");
            None
        }
    }
}

/// Draws a thumbnail with half blocks (`▀`: the top pixel in the foreground colour, the
/// bottom one in the background colour), fitted and centred in the area. Works in any
/// terminal with colours.
pub struct HalfBlocks<'a> {
    pub thumb: &'a Thumb,
}

impl Widget for HalfBlocks<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.thumb;
        if area.width == 0 || area.height == 0 || t.width == 0 || t.height == 0 {
            return;
        }
        // Pixels available: one per column, two per row. Fit, keeping the aspect ratio.
        let (aw, ah) = (u32::from(area.width), u32::from(area.height) * 2);
        let (w, h) = if t.width * ah > t.height * aw {
            (aw, (t.height * aw / t.width).max(1))
        } else {
            ((t.width * ah / t.height).max(1), ah)
        };
        let x_off = (aw - w) / 2;
        let y_off = ((ah - h) / 2) & !1;
        let sample = |px: u32, py: u32| -> Option<Color> {
            if px < x_off || px >= x_off + w || py < y_off || py >= y_off + h {
                return None;
            }
            let (dx, dy) = (px - x_off, py - y_off);
            let x0 = dx * t.width / w;
            let x1 = (dx + 1) * t.width / w;
            let y0 = dy * t.height / h;
            let y1 = (dy + 1) * t.height / h;
            let (r, g, b) = t.average(x0, x1, y0, y1);
            Some(Color::Rgb(r, g, b))
        };
        for row in 0..area.height {
            for col in 0..area.width {
                let top = sample(u32::from(col), u32::from(row) * 2);
                let bottom = sample(u32::from(col), u32::from(row) * 2 + 1);
                if top.is_none() && bottom.is_none() {
                    continue;
                }
                if let Some(cell) = buf.cell_mut((area.x + col, area.y + row)) {
                    cell.set_symbol("▀");
                    cell.set_fg(top.unwrap_or(Color::Reset));
                    cell.set_bg(bottom.unwrap_or(Color::Reset));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::scan;
    use image::DynamicImage;
    use std::time::Duration;

    use crate::testnet::fixtures_dir as fixtures;

    #[test]
    fn every_fixture_photo_comes_out_upright() {
        // The fixture photos carry coloured corner markers in their stored pixels
        // (red top-left, green top-right, blue bottom-left, yellow bottom-right; see
        // fixtures/make_memory_card.py). Turned upright, the displayed top-left corner
        // shows the marker the EXIF orientation moves there.
        let red = (255, 0, 0);
        let green = (0, 255, 0);
        let blue = (0, 0, 255);
        let yellow = (255, 255, 0);
        let expected_top_left = |orientation: u8| match orientation {
            1 => red,
            2 => green,
            3 => yellow,
            6 => blue,
            8 => green,
            o => panic!("fixture orientation {o}"),
        };
        let images = scan(&fixtures().join("memory-card")).unwrap();
        for image in &images {
            let (info, exif) = read_info_and_thumbnail(image);
            let full =
                make_thumb(Source::File(&image.path), info.orientation, (1000, 1000)).unwrap();
            let (r, g, b) = full.average(16, 24, 16, 24);
            let (er, eg, eb) = expected_top_left(info.orientation);
            let near = |a: u8, b: u8| a.abs_diff(b) < 40;
            assert!(
                near(r, er) && near(g, eg) && near(b, eb),
                "{} (orientation {}): top-left is ({r},{g},{b})",
                image.dcf_name,
                info.orientation
            );
            // Photos stored sideways (orientation 5-8) come out portrait; the grid and
            // preview thumbnails turn the same way as the photo.
            let (w, h) = (info.width.unwrap(), info.height.unwrap());
            let portrait = if info.orientation >= 5 { w > h } else { h > w };
            assert_eq!(full.height > full.width, portrait, "{}", image.dcf_name);
            let gate = Mutex::new(());
            for max in [GRID_THUMB_MAX, PREVIEW_MAX] {
                let t = thumb_for(&info, exif.as_deref(), &image.path, max, &gate).unwrap();
                assert!(t.width <= max.0 && t.height <= max.1, "{t:?}");
                if info.thumbnail == ThumbnailSource::Decode {
                    assert_eq!(t.height > t.width, portrait, "{}", image.dcf_name);
                }
            }
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        // A small JPEG whose frame header is patched to claim 60,000 × 60,000 pixels.
        let mut jpeg = Vec::new();
        DynamicImage::new_rgb8(8, 8)
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xea, 0x60, 0xea, 0x60]);
        let png = jpeg;
        let err = make_thumb(Source::Exif(&png), 1, GRID_THUMB_MAX).unwrap_err();
        assert!(err.to_lowercase().contains("limit"), "{err}");
    }

    #[test]
    fn the_loader_does_the_visible_photos_first_and_then_the_rest() {
        let mut images = scan(&fixtures().join("memory-card")).unwrap();
        images.extend(scan(&fixtures().join("bad-media")).unwrap());
        let n = images.len();
        let (tx, rx) = std::sync::mpsc::channel();
        let loader = ThumbLoader::new(1, move |e| {
            let _ = tx.send(e);
        });
        // Hold the only worker's attention on the window before it starts.
        loader.load_card(7, Vec::new());
        {
            let (lock, _) = &*loader.shared;
            let mut q = lock.lock().unwrap();
            q.generation = 7;
            q.claimed = vec![false; n];
            q.images = Arc::new(images);
            q.window = 4..6;
        }
        loader.shared.1.notify_all();
        let mut order = Vec::new();
        while order.len() < n {
            match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
                LoaderEvent::Loaded { generation, item } => {
                    assert_eq!(generation, 7);
                    if item.index >= 6 {
                        // The two corrupt files: facts with an error, no thumbnail.
                        assert!(item.info.error.is_some() && item.thumb.is_none());
                    } else {
                        let t = item.thumb.unwrap();
                        assert!(t.width <= GRID_THUMB_MAX.0 && t.height <= GRID_THUMB_MAX.1);
                    }
                    order.push(item.index);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(&order[..2], &[4, 5], "the visible window first: {order:?}");
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "each photo once");
        loader.want_preview(7, 2);
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            LoaderEvent::Preview { index, thumb, .. } => {
                assert_eq!(index, 2);
                assert!(thumb.unwrap().width > GRID_THUMB_MAX.0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn half_blocks_fit_and_centre_the_image() {
        let thumb = Thumb {
            width: 4,
            height: 2,
            rgb: [255, 0, 0].repeat(8),
        };
        let area = Rect::new(0, 0, 8, 4);
        let mut buf = Buffer::empty(area);
        HalfBlocks { thumb: &thumb }.render(area, &mut buf);
        // 8×8 pixels available; a 2:1 image becomes 8×4, rows 2-5 → cells rows 1-2.
        let painted: Vec<u16> = (0..4)
            .filter(|y| buf.cell((0, *y)).unwrap().symbol() == "▀")
            .collect();
        assert_eq!(painted, vec![1, 2]);
        assert_eq!(buf.cell((3, 1)).unwrap().fg, Color::Rgb(255, 0, 0));
    }
}
