//! A print job as a PDF: one page per print, each page the paper's size with the
//! rendered JPEG over the whole of it. The JPEG bytes go in as they are (DCTDecode):
//! no re-encoding, and an image printed several times is stored once.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

/// Where an image's JPEG bytes are.
#[derive(Clone, Copy, Debug)]
pub enum ImageData<'a> {
    Bytes(&'a [u8]),
    /// Streamed from the file while the document is written (one at a time).
    File(&'a Path),
}

/// One rendered photo, as the renderer wrote it (baseline sRGB JPEG, 3 components).
pub struct PdfImage<'a> {
    pub data: ImageData<'a>,
    pub width: u32,
    pub height: u32,
}

/// One page: which image, on paper of this size in millimetres.
pub struct PdfPage {
    pub image: usize,
    pub width_mm: f64,
    pub height_mm: f64,
}

fn points(mm: f64) -> f64 {
    mm / 25.4 * 72.0
}

/// Counts what goes through, for the cross-reference table's offsets.
struct Counting<W> {
    inner: W,
    at: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.at += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn invalid(e: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
}

/// Writes the document to `out`. Pages naming an image that does not exist are an
/// error.
pub fn write_to<W: Write>(
    out: W,
    images: &[PdfImage<'_>],
    pages: &[PdfPage],
) -> std::io::Result<()> {
    if pages.is_empty() {
        return Err(invalid("a document needs at least one page".into()));
    }
    if let Some(p) = pages.iter().find(|p| p.image >= images.len()) {
        return Err(invalid(format!(
            "page names image {} of {}",
            p.image,
            images.len()
        )));
    }
    let mut out = Counting { inner: out, at: 0 };
    let mut offsets: Vec<u64> = Vec::new();
    out.write_all(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")?;
    // Object numbers: 1 catalog, 2 page tree, then each image, then each page and its
    // content stream.
    let first_image = 3;
    let first_page = first_image + images.len();
    let page_obj = |i: usize| first_page + 2 * i;
    fn open<W: Write>(out: &mut Counting<W>, offsets: &mut Vec<u64>) -> std::io::Result<()> {
        offsets.push(out.at);
        let n = offsets.len();
        out.write_all(format!("{n} 0 obj\n").as_bytes())
    }
    fn object<W: Write>(
        out: &mut Counting<W>,
        offsets: &mut Vec<u64>,
        body: &[u8],
    ) -> std::io::Result<()> {
        open(out, offsets)?;
        out.write_all(body)?;
        out.write_all(b"\nendobj\n")
    }
    object(&mut out, &mut offsets, b"<< /Type /Catalog /Pages 2 0 R >>")?;
    let mut kids = String::new();
    for i in 0..pages.len() {
        let _ = write!(kids, "{} 0 R ", page_obj(i));
    }
    object(
        &mut out,
        &mut offsets,
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.trim_end(),
            pages.len()
        )
        .as_bytes(),
    )?;
    for img in images {
        let len = match img.data {
            ImageData::Bytes(b) => b.len() as u64,
            ImageData::File(p) => std::fs::metadata(p)?.len(),
        };
        open(&mut out, &mut offsets)?;
        out.write_all(
            format!(
                "<< /Type /XObject /Subtype /Image /Width {} /Height {} /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode /Length {len} >>\nstream\n",
                img.width, img.height
            )
            .as_bytes(),
        )?;
        match img.data {
            ImageData::Bytes(b) => out.write_all(b)?,
            ImageData::File(p) => {
                let copied = std::io::copy(&mut std::fs::File::open(p)?, &mut out)?;
                if copied != len {
                    return Err(invalid(format!("{} changed while read", p.display())));
                }
            }
        }
        out.write_all(b"\nendstream\nendobj\n")?;
    }
    for (i, page) in pages.iter().enumerate() {
        let (w, h) = (points(page.width_mm), points(page.height_mm));
        object(
            &mut out,
            &mut offsets,
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w:.2} {h:.2}] /Resources << /XObject << /Im{} {} 0 R >> >> /Contents {} 0 R >>",
                page.image,
                first_image + page.image,
                page_obj(i) + 1
            )
            .as_bytes(),
        )?;
        let content = format!("q {w:.2} 0 0 {h:.2} 0 0 cm /Im{} Do Q", page.image);
        object(
            &mut out,
            &mut offsets,
            format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            )
            .as_bytes(),
        )?;
    }
    let xref = out.at;
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1);
    for o in &offsets {
        let _ = writeln!(table, "{o:010} 00000 n ");
    }
    let _ = write!(
        table,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        offsets.len() + 1
    );
    out.write_all(table.as_bytes())?;
    out.flush()
}

/// The document in memory.
pub fn write(images: &[PdfImage<'_>], pages: &[PdfPage]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    write_to(&mut out, images, pages).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 30, 30]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn pages_share_images_and_the_xref_points_at_each_object() {
        let a = jpeg(60, 40);
        let b = jpeg(30, 45);
        let images = [
            PdfImage {
                data: ImageData::Bytes(&a),
                width: 60,
                height: 40,
            },
            PdfImage {
                data: ImageData::Bytes(&b),
                width: 30,
                height: 45,
            },
        ];
        let pages = [
            PdfPage {
                image: 0,
                width_mm: 127.0,
                height_mm: 89.0,
            },
            PdfPage {
                image: 0,
                width_mm: 127.0,
                height_mm: 89.0,
            },
            PdfPage {
                image: 1,
                width_mm: 89.0,
                height_mm: 127.0,
            },
        ];
        let pdf = write(&images, &pages).unwrap();
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.starts_with("%PDF-1.4"));
        assert!(text.contains("/Count 3"));
        // L paper: 89 × 127 mm = 252.28 × 360.00 pt.
        assert!(text.contains("/MediaBox [0 0 360.00 252.28]"), "{text}");
        // Each JPEG is embedded once.
        assert_eq!(
            pdf.windows(a.len()).filter(|w| *w == a.as_slice()).count(),
            1
        );
        // Every xref entry names the offset where its object starts.
        let start = text.find("xref\n").unwrap();
        let entries: Vec<usize> = text[start..]
            .lines()
            .skip(3)
            .take_while(|l| l.ends_with(" n "))
            .map(|l| l[..10].parse().unwrap())
            .collect();
        assert_eq!(entries.len(), 2 + 2 + 2 * 3);
        for (i, off) in entries.iter().enumerate() {
            let head = format!("{} 0 obj", i + 1);
            assert_eq!(&pdf[*off..*off + head.len()], head.as_bytes());
        }
        let startxref: usize = text
            .lines()
            .skip_while(|l| *l != "startxref")
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        // In bytes (the lossy text's offsets differ after binary JPEG data).
        let xref_at = pdf.windows(5).position(|w| w == b"xref\n").unwrap();
        assert_eq!(startxref, xref_at);
    }

    #[test]
    fn an_image_streamed_from_its_file_gives_the_same_document() {
        let a = jpeg(50, 30);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jpg");
        std::fs::write(&path, &a).unwrap();
        let page = || PdfPage {
            image: 0,
            width_mm: 127.0,
            height_mm: 89.0,
        };
        let from_memory = write(
            &[PdfImage {
                data: ImageData::Bytes(&a),
                width: 50,
                height: 30,
            }],
            &[page()],
        )
        .unwrap();
        let from_file = write(
            &[PdfImage {
                data: ImageData::File(&path),
                width: 50,
                height: 30,
            }],
            &[page()],
        )
        .unwrap();
        assert_eq!(from_memory, from_file);
        std::fs::remove_file(&path).unwrap();
        assert!(write(
            &[PdfImage {
                data: ImageData::File(&path),
                width: 50,
                height: 30,
            }],
            &[page()],
        )
        .is_err());
    }

    #[test]
    fn a_page_without_its_image_is_an_error() {
        assert!(write(&[], &[]).is_err());
        let pages = [PdfPage {
            image: 0,
            width_mm: 10.0,
            height_mm: 10.0,
        }];
        assert!(write(&[], &pages).unwrap_err().contains("image 0"));
    }
}
