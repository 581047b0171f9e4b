//! A print job as a PDF: one page per print, each page the paper's size with the
//! rendered JPEG over the whole of it. The JPEG bytes go in as they are (DCTDecode):
//! no re-encoding, and an image printed several times is stored once.

use std::fmt::Write as _;

/// One rendered photo, as the renderer wrote it (baseline sRGB JPEG, 3 components).
pub struct PdfImage<'a> {
    pub jpeg: &'a [u8],
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

/// Writes the document. Pages naming an image that does not exist are an error.
pub fn write(images: &[PdfImage<'_>], pages: &[PdfPage]) -> Result<Vec<u8>, String> {
    if pages.is_empty() {
        return Err("a document needs at least one page".into());
    }
    if let Some(p) = pages.iter().find(|p| p.image >= images.len()) {
        return Err(format!("page names image {} of {}", p.image, images.len()));
    }
    let mut out: Vec<u8> = Vec::new();
    let mut offsets: Vec<usize> = Vec::new();
    out.extend_from_slice(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n");
    // Object numbers: 1 catalog, 2 page tree, then each image, then each page and its
    // content stream.
    let first_image = 3;
    let first_page = first_image + images.len();
    let page_obj = |i: usize| first_page + 2 * i;
    let object = |out: &mut Vec<u8>, offsets: &mut Vec<usize>, body: &[u8]| {
        offsets.push(out.len());
        let n = offsets.len();
        out.extend_from_slice(format!("{n} 0 obj\n").as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    };
    object(&mut out, &mut offsets, b"<< /Type /Catalog /Pages 2 0 R >>");
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
    );
    for img in images {
        let mut body = format!(
            "<< /Type /XObject /Subtype /Image /Width {} /Height {} /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode /Length {} >>\nstream\n",
            img.width,
            img.height,
            img.jpeg.len()
        )
        .into_bytes();
        body.extend_from_slice(img.jpeg);
        body.extend_from_slice(b"\nendstream");
        object(&mut out, &mut offsets, &body);
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
        );
        let content = format!("q {w:.2} 0 0 {h:.2} 0 0 cm /Im{} Do Q", page.image);
        object(
            &mut out,
            &mut offsets,
            format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            )
            .as_bytes(),
        );
    }
    let xref = out.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1);
    for o in &offsets {
        let _ = writeln!(table, "{o:010} 00000 n ");
    }
    let _ = write!(
        table,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        offsets.len() + 1
    );
    out.extend_from_slice(table.as_bytes());
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
                jpeg: &a,
                width: 60,
                height: 40,
            },
            PdfImage {
                jpeg: &b,
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
