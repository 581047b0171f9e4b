//! The receipt (patent S509): one [`Receipt`], three forms. The same text is shown on
//! screen and saved under `<data_dir>/receipts/<order id>.txt`; the printer gets ESC/POS
//! bytes (Shift_JIS kanji mode for Japanese) with a QR code of the order id that the
//! counter's scanner reads back.
//!
//! Printers are configured as a file directory (one `.escpos` file per receipt), a
//! device path (`/dev/usb/lp0`) or a network printer (raw TCP, port 9100).
//!
//! A receipt shows the card as its brand and last four digits, nothing more.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use printmesh_protocol::card::CardBrand;
use printmesh_protocol::messages::PaymentMethod;
use printmesh_protocol::money::Money;
use printmesh_protocol::pricing::PrintSize;
use printmesh_protocol::{AuthCode, OrderId};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use unicode_width::UnicodeWidthStr;

use super::i18n::Lang;

/// Characters per line (an 80 mm printer's font A).
pub const WIDTH: usize = 42;
/// How long a network printer may take to accept a connection or the bytes.
pub const PRINTER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum ReceiptError {
    #[error("receipt printer {target}: {source}")]
    Io {
        target: String,
        source: std::io::Error,
    },
    #[error("receipt printer address {0:?} does not resolve")]
    Address(String),
}

/// Where receipts are printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum PrinterConfig {
    /// Each receipt's ESC/POS bytes as `<dir>/<order id>.escpos`.
    File { dir: PathBuf },
    /// A printer device file, written to per receipt.
    Device { path: PathBuf },
    /// A network printer's raw port (`host:9100`).
    Tcp { address: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptLine {
    pub file_name: String,
    pub size: PrintSize,
    pub quantity: u16,
    pub unit: Money,
    pub amount: Money,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Paid; the lab promised a date.
    Approved {
        auth_code: AuthCode,
        delivery_date: NaiveDate,
    },
    /// Taken while the network was away: the date comes later.
    Pending,
    /// Downloads only: paid and on the card.
    Downloaded { auth_code: AuthCode },
}

/// One download on the receipt: its title, price, licence code, and the licence
/// itself (printed as a QR code: any kiosk writes the item again from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptDownload {
    pub title: String,
    pub amount: Money,
    pub code: String,
    pub licence: String,
    pub card_path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub lang: Lang,
    pub store_name: String,
    pub kiosk_name: String,
    /// Local time at the store.
    pub at: NaiveDateTime,
    pub order_id: OrderId,
    pub lines: Vec<ReceiptLine>,
    /// Downloads written onto the customer's card, paid with the same card.
    pub downloads: Vec<ReceiptDownload>,
    pub total: Money,
    pub method: PaymentMethod,
    pub card_brand: CardBrand,
    /// Only ever the last four digits.
    pub card_last4: String,
    pub outcome: Outcome,
}

fn pad_between(left: &str, right: &str, width: usize) -> String {
    let used = left.width() + right.width();
    if used >= width {
        format!("{left} {right}")
    } else {
        format!("{left}{}{right}", " ".repeat(width - used))
    }
}

fn centre(text: &str, width: usize) -> String {
    let w = text.width();
    if w >= width {
        text.to_string()
    } else {
        format!("{}{text}", " ".repeat((width - w) / 2))
    }
}

/// Breaks `text` into lines of at most `width` columns: at spaces where it can, inside
/// words (and between any two CJK characters) where it must.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_inclusive(' ') {
        if line.width() + word.trim_end().width() > width && !line.is_empty() {
            lines.push(line.trim_end().to_string());
            line.clear();
        }
        for c in word.chars() {
            let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
            if line.width() + cw > width && c != ' ' {
                lines.push(line.trim_end().to_string());
                line.clear();
            }
            line.push(c);
        }
    }
    if !line.trim_end().is_empty() || lines.is_empty() {
        lines.push(line.trim_end().to_string());
    }
    lines
}

/// A piece of the receipt, as the printer needs it.
enum Part {
    Rule,
    Centre(String),
    Big(String),
    Text(String),
    Qr(String),
}

impl Receipt {
    /// `VISA **** 1111`.
    pub fn card_text(&self) -> String {
        format!("{} **** {}", self.card_brand, self.card_last4)
    }

    fn parts(&self) -> Vec<Part> {
        let l = self.lang;
        let mut p = vec![
            Part::Big(self.store_name.clone()),
            Part::Centre(self.kiosk_name.clone()),
            Part::Centre(self.at.format("%Y-%m-%d %H:%M").to_string()),
            Part::Rule,
            Part::Text(format!("{} {}", l.order_number(), self.order_id)),
            Part::Rule,
        ];
        for line in &self.lines {
            p.push(Part::Text(line.file_name.clone()));
            let each = format!("{} × {}", line.quantity, l.money(line.unit));
            let left = format!("  {}", line.size.code());
            let middle = pad_between(&left, &each, 28);
            p.push(Part::Text(pad_between(
                &middle,
                &l.money(line.amount),
                WIDTH,
            )));
        }
        for d in &self.downloads {
            p.push(Part::Text(d.title.clone()));
            p.push(Part::Text(pad_between(
                &format!("  {}", l.download_label()),
                &l.money(d.amount),
                WIDTH,
            )));
        }
        p.push(Part::Rule);
        p.push(Part::Text(pad_between(
            l.total_label(),
            &l.money(self.total),
            WIDTH,
        )));
        p.push(Part::Text(pad_between(
            l.method_name(self.method),
            &self.card_text(),
            WIDTH,
        )));
        match &self.outcome {
            Outcome::Approved {
                auth_code,
                delivery_date,
            } => {
                p.push(Part::Text(pad_between(
                    l.auth_code(),
                    auth_code.as_str(),
                    WIDTH,
                )));
                p.push(Part::Rule);
                p.push(Part::Text(l.ready_on().to_string()));
                p.push(Part::Big(l.date(*delivery_date)));
            }
            Outcome::Pending => {
                p.push(Part::Rule);
                p.push(Part::Text(l.date_to_be_confirmed().to_string()));
            }
            Outcome::Downloaded { auth_code } => {
                p.push(Part::Text(pad_between(
                    l.auth_code(),
                    auth_code.as_str(),
                    WIDTH,
                )));
            }
        }
        if !self.lines.is_empty() {
            p.push(Part::Text(format!(
                "{}: {}",
                l.pickup_at(),
                self.store_name
            )));
            p.push(Part::Qr(self.order_id.to_string()));
            p.push(Part::Centre(match l {
                Lang::Ja => "このレシートを受け取りの際にお持ちください".into(),
                Lang::En => "Bring this receipt to collect your prints".into(),
            }));
        }
        // Each download's licence: its code, where it is on the card, and the licence
        // as a QR code that any kiosk of the network honours.
        for d in &self.downloads {
            p.push(Part::Rule);
            p.push(Part::Text(d.title.clone()));
            p.push(Part::Text(format!("{} {}", l.licence_code(), d.code)));
            p.push(Part::Text(d.card_path.clone()));
            p.push(Part::Qr(d.licence.clone()));
        }
        if !self.downloads.is_empty() {
            p.push(Part::Centre(l.licence_note().into()));
        }
        p
    }

    /// The receipt as plain text (what the screen shows, and the saved copy), with the
    /// QR code drawn in block characters.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for part in self.parts() {
            let lines = match part {
                Part::Rule => vec!["-".repeat(WIDTH)],
                Part::Centre(t) | Part::Big(t) => {
                    wrap(&t, WIDTH).iter().map(|l| centre(l, WIDTH)).collect()
                }
                Part::Text(t) => wrap(&t, WIDTH),
                Part::Qr(data) => vec![qr_text(&data)],
            };
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }

    /// The receipt as ESC/POS bytes.
    pub fn escpos(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&[0x1b, b'@']); // initialise
        match self.lang {
            // Kanji mode on, Shift_JIS.
            Lang::Ja => out.extend_from_slice(&[0x1c, b'C', 1, 0x1c, b'&']),
            // Kanji mode off: single-byte characters, with the Japanese international
            // set (ESC R 8), where 0x5C prints as the yen sign.
            Lang::En => out.extend_from_slice(&[0x1c, b'.', 0x1b, b'R', 8]),
        }
        for part in self.parts() {
            match part {
                Part::Rule => {
                    out.extend_from_slice(&[0x1b, b'a', 0]);
                    out.extend_from_slice("-".repeat(WIDTH).as_bytes());
                }
                Part::Centre(t) => {
                    out.extend_from_slice(&[0x1b, b'a', 1]);
                    out.extend(self.encode_wrapped(&t, WIDTH));
                }
                Part::Big(t) => {
                    out.extend_from_slice(&[0x1b, b'a', 1, 0x1b, b'E', 1, 0x1d, b'!', 0x11]);
                    // Double width: half as many characters per line.
                    out.extend(self.encode_wrapped(&t, WIDTH / 2));
                    out.extend_from_slice(&[0x1d, b'!', 0, 0x1b, b'E', 0]);
                }
                Part::Text(t) => {
                    out.extend_from_slice(&[0x1b, b'a', 0]);
                    out.extend(self.encode_wrapped(&t, WIDTH));
                }
                Part::Qr(data) => {
                    out.extend_from_slice(&[0x1b, b'a', 1]);
                    out.extend(escpos_qr(data.as_bytes()));
                }
            }
            out.push(b'\n');
        }
        out.extend_from_slice(&[0x1b, b'd', 3]); // feed three lines
        out.extend_from_slice(&[0x1d, b'V', 66, 0]); // feed and partial cut
        out
    }

    fn encode_wrapped(&self, text: &str, width: usize) -> Vec<u8> {
        self.encode(&wrap(text, width).join("\n"))
    }

    fn encode(&self, text: &str) -> Vec<u8> {
        match self.lang {
            Lang::Ja => encoding_rs::SHIFT_JIS.encode(text).0.into_owned(),
            // Single-byte printers: anything outside ASCII becomes '?', except the
            // characters the receipt itself uses.
            Lang::En => text
                .chars()
                .flat_map(|c| match c {
                    '×' => vec![b'x'],
                    '¥' => vec![0x5c],
                    '€' => b"EUR ".to_vec(),
                    '£' => b"GBP ".to_vec(),
                    c if c.is_ascii() => vec![c as u8],
                    _ => vec![b'?'],
                })
                .collect(),
        }
    }
}

/// GS ( k: QR model 2, module size 6, error correction M, store the data, print it.
fn escpos_qr(data: &[u8]) -> Vec<u8> {
    let mut out = vec![
        0x1d, b'(', b'k', 4, 0, 49, 65, 50, 0, // model 2
        0x1d, b'(', b'k', 3, 0, 49, 67, 6, // module size
        0x1d, b'(', b'k', 3, 0, 49, 69, 49, // error correction M
    ];
    let len = data.len() + 3;
    out.extend_from_slice(&[
        0x1d,
        b'(',
        b'k',
        (len & 0xff) as u8,
        (len >> 8) as u8,
        49,
        80,
        48,
    ]);
    out.extend_from_slice(data);
    out.extend_from_slice(&[0x1d, b'(', b'k', 3, 0, 49, 81, 48]); // print
    out
}

/// The QR code's modules, `true` for dark, row by row, with a quiet zone of four.
pub fn qr_modules(data: &str) -> Option<(usize, Vec<bool>)> {
    let code = qrcode::QrCode::with_error_correction_level(data, qrcode::EcLevel::M).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let quiet = 4;
    let full = width + 2 * quiet;
    let mut out = vec![false; full * full];
    for y in 0..width {
        for x in 0..width {
            if colors.get(y * width + x) == Some(&qrcode::Color::Dark) {
                if let Some(m) = out.get_mut((y + quiet) * full + x + quiet) {
                    *m = true;
                }
            }
        }
    }
    Some((full, out))
}

/// The QR code in half-block characters (two module rows per text line).
pub fn qr_text(data: &str) -> String {
    let Some((n, modules)) = qr_modules(data) else {
        return String::new();
    };
    let dark = |x: usize, y: usize| modules.get(y * n + x).copied().unwrap_or(false);
    let mut out = String::new();
    for y in (0..n).step_by(2) {
        let mut line = String::new();
        for x in 0..n {
            line.push(match (dark(x, y), y + 1 < n && dark(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push_str(&centre(line.trim_end(), WIDTH));
        out.push('\n');
    }
    out.trim_end_matches('\n').to_string()
}

/// Where a printed receipt went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Printed {
    pub text_file: PathBuf,
    /// The printer, when one is configured.
    pub printer: Option<String>,
}

/// Saves the text copy under `receipts_dir` (always) and sends the ESC/POS bytes to the
/// printer (when configured). The text copy is written first, so a printer fault
/// never loses the receipt.
pub fn print(
    receipt: &Receipt,
    receipts_dir: &Path,
    printer: Option<&PrinterConfig>,
) -> Result<Printed, ReceiptError> {
    let io = |target: &Path| {
        let target = target.display().to_string();
        move |source| ReceiptError::Io { target, source }
    };
    std::fs::create_dir_all(receipts_dir).map_err(io(receipts_dir))?;
    let text_file = receipts_dir.join(format!("{}.txt", receipt.order_id));
    write_atomically(&text_file, receipt.text().as_bytes()).map_err(io(&text_file))?;
    let bytes = receipt.escpos();
    let printer = match printer {
        None => None,
        Some(PrinterConfig::File { dir }) => {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let path = dir.join(format!("{}.escpos", receipt.order_id));
            write_atomically(&path, &bytes).map_err(io(&path))?;
            Some(path.display().to_string())
        }
        Some(PrinterConfig::Device { path }) => {
            let mut dev = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(io(path))?;
            dev.write_all(&bytes).map_err(io(path))?;
            dev.flush().map_err(io(path))?;
            Some(path.display().to_string())
        }
        Some(PrinterConfig::Tcp { address }) => {
            send_tcp(address, &bytes)?;
            Some(address.clone())
        }
    };
    Ok(Printed { text_file, printer })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn send_tcp(address: &str, bytes: &[u8]) -> Result<(), ReceiptError> {
    let err = |source| ReceiptError::Io {
        target: address.to_string(),
        source,
    };
    let addr = address
        .to_socket_addrs()
        .map_err(err)?
        .next()
        .ok_or_else(|| ReceiptError::Address(address.to_string()))?;
    let mut stream = TcpStream::connect_timeout(&addr, PRINTER_TIMEOUT).map_err(err)?;
    stream
        .set_write_timeout(Some(PRINTER_TIMEOUT))
        .map_err(err)?;
    stream.write_all(bytes).map_err(err)?;
    stream.flush().map_err(err)?;
    stream.shutdown(std::net::Shutdown::Write).map_err(err)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use printmesh_protocol::money::Currency;

    pub(crate) fn sample(lang: Lang, outcome: Outcome) -> Receipt {
        let yen = |n| Money::new(n, Currency::Jpy);
        Receipt {
            lang,
            store_name: "printmesh Shibuya".into(),
            kiosk_name: "Kiosk 1".into(),
            at: NaiveDate::from_ymd_opt(2026, 11, 25)
                .unwrap()
                .and_hms_opt(14, 3, 0)
                .unwrap(),
            order_id: "01KAZ3Q7M1X5V8T2B6N4C9D0EF".parse().unwrap(),
            downloads: Vec::new(),
            lines: vec![
                ReceiptLine {
                    file_name: "PMSH0001.JPG".into(),
                    size: PrintSize::L,
                    quantity: 2,
                    unit: yen(30),
                    amount: yen(60),
                },
                ReceiptLine {
                    file_name: "PMSH0003.JPG".into(),
                    size: PrintSize::TwoL,
                    quantity: 1,
                    unit: yen(80),
                    amount: yen(80),
                },
            ],
            total: yen(140),
            method: PaymentMethod::Credit,
            card_brand: CardBrand::Visa,
            card_last4: "1111".into(),
            outcome,
        }
    }

    pub(crate) fn approved() -> Outcome {
        Outcome::Approved {
            auth_code: AuthCode::try_from("7UCEPP".to_string()).unwrap(),
            delivery_date: NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
        }
    }

    /// What a printer would do with the bytes: text runs per line, the QR payload, and
    /// whether the paper was cut.
    struct Parsed {
        lines: Vec<Vec<u8>>,
        qr: Option<Vec<u8>>,
        cut: bool,
    }

    fn parse_escpos(bytes: &[u8]) -> Parsed {
        let mut p = Parsed {
            lines: vec![Vec::new()],
            qr: None,
            cut: false,
        };
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                0x1b => {
                    i += match bytes[i + 1] {
                        b'@' => 2,
                        b'a' | b'E' | b'd' | b'R' => 3,
                        other => panic!("unexpected ESC {other:#x}"),
                    }
                }
                0x1c => {
                    i += match bytes[i + 1] {
                        b'&' | b'.' => 2,
                        b'C' => 3,
                        other => panic!("unexpected FS {other:#x}"),
                    }
                }
                0x1d => match bytes[i + 1] {
                    b'!' => i += 3,
                    b'V' => {
                        p.cut = true;
                        i += 4;
                    }
                    b'(' => {
                        assert_eq!(bytes[i + 2], b'k');
                        let len = bytes[i + 3] as usize | (bytes[i + 4] as usize) << 8;
                        let body = &bytes[i + 5..i + 5 + len];
                        if body[..3] == [49, 80, 48] {
                            p.qr = Some(body[3..].to_vec());
                        }
                        i += 5 + len;
                    }
                    other => panic!("unexpected GS {other:#x}"),
                },
                b'\n' => {
                    p.lines.push(Vec::new());
                    i += 1;
                }
                b => {
                    p.lines.last_mut().unwrap().push(b);
                    i += 1;
                }
            }
        }
        p
    }

    #[test]
    fn escpos_carries_the_order_as_a_qr_code_and_is_cut() {
        let r = sample(Lang::En, approved());
        let p = parse_escpos(&r.escpos());
        assert_eq!(p.qr.as_deref(), Some(&b"01KAZ3Q7M1X5V8T2B6N4C9D0EF"[..]));
        assert!(p.cut);
        let text: Vec<String> = p
            .lines
            .iter()
            .map(|l| String::from_utf8(l.clone()).unwrap().replace('\\', "¥"))
            .collect();
        let all = text.join("\n");
        for want in [
            "printmesh Shibuya",
            "2026-11-25 14:03",
            "Order number 01KAZ3Q7M1X5V8T2B6N4C9D0EF",
            "PMSH0003.JPG",
            "VISA **** 1111",
            "7UCEPP",
            "Saturday 28 November",
            "¥140",
        ] {
            assert!(all.contains(want), "{want:?} missing from:\n{all}");
        }
        assert!(text.iter().all(|l| l.chars().count() <= WIDTH), "{all}");
    }

    #[test]
    fn japanese_receipts_are_shift_jis_in_kanji_mode() {
        let r = sample(Lang::Ja, approved());
        let bytes = r.escpos();
        assert!(bytes.windows(2).any(|w| w == [0x1c, b'&']));
        let p = parse_escpos(&bytes);
        let all: Vec<String> = p
            .lines
            .iter()
            .map(|l| encoding_rs::SHIFT_JIS.decode(l).0.into_owned())
            .collect();
        let all = all.join("\n");
        assert!(all.contains("2026年11月28日（土）"), "{all}");
        assert!(all.contains("合計（税込）"), "{all}");
        assert!(all.contains("140円"), "{all}");
    }

    #[test]
    fn the_text_receipt_lines_up_and_shows_only_the_last_four() {
        let text = sample(Lang::En, approved()).text();
        for line in text.lines() {
            assert!(line.width() <= WIDTH, "{line:?} is wider than {WIDTH}");
        }
        assert!(text.contains("VISA **** 1111"));
        assert!(text.contains("█"), "the QR code is drawn");
        let pending = sample(Lang::Ja, Outcome::Pending).text();
        assert!(pending.contains("確定後"), "{pending}");
        assert!(!pending.contains("承認番号"));
        for line in pending.lines() {
            assert!(line.width() <= WIDTH, "{line:?}");
        }
    }

    #[test]
    fn the_qr_code_decodes_to_the_order_id() {
        let (n, modules) = qr_modules("01KAZ3Q7M1X5V8T2B6N4C9D0EF").unwrap();
        // Version 2 (25 modules) plus the quiet zone, finder patterns in three corners.
        assert_eq!(n, 25 + 8);
        let at = |x: usize, y: usize| modules[y * n + x];
        for (cx, cy) in [(4, 4), (n - 11, 4), (4, n - 11)] {
            assert!((0..7).all(|d| at(cx + d, cy) && at(cx, cy + d)));
        }
        assert!(!at(0, 0));
    }

    #[test]
    fn receipts_go_to_a_file_a_device_and_a_network_printer() {
        let dir = tempfile::tempdir().unwrap();
        let r = sample(Lang::En, approved());
        let receipts = dir.path().join("receipts");

        let out = print(
            &r,
            &receipts,
            Some(&PrinterConfig::File {
                dir: dir.path().join("spool"),
            }),
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out.text_file).unwrap(), r.text());
        let spooled = dir.path().join("spool/01KAZ3Q7M1X5V8T2B6N4C9D0EF.escpos");
        assert_eq!(std::fs::read(&spooled).unwrap(), r.escpos());

        let device = dir.path().join("lp0");
        std::fs::write(&device, b"").unwrap();
        print(
            &r,
            &receipts,
            Some(&PrinterConfig::Device {
                path: device.clone(),
            }),
        )
        .unwrap();
        assert_eq!(std::fs::read(&device).unwrap(), r.escpos());
        let missing = PrinterConfig::Device {
            path: dir.path().join("no-such-lp"),
        };
        let err = print(&r, &receipts, Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no-such-lp"), "{err}");
        // The text copy was kept although the printer failed.
        assert!(out.text_file.exists());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut s, &mut got).unwrap();
            got
        });
        print(&r, &receipts, Some(&PrinterConfig::Tcp { address })).unwrap();
        assert_eq!(server.join().unwrap(), r.escpos());
    }

    #[test]
    fn wrapping_keeps_words_and_splits_cjk_anywhere() {
        assert_eq!(wrap("one two three", 8), vec!["one two", "three"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("あいうえお", 4), vec!["あい", "うえ", "お"]);
        assert_eq!(wrap("", 4), vec![""]);
    }

    #[test]
    fn printer_config_is_tagged_and_strict() {
        #[derive(Deserialize)]
        struct W {
            p: PrinterConfig,
        }
        let w: W = toml::from_str("p = { kind = \"tcp\", address = \"10.0.0.5:9100\" }").unwrap();
        assert_eq!(
            w.p,
            PrinterConfig::Tcp {
                address: "10.0.0.5:9100".into()
            }
        );
        assert!(toml::from_str::<W>("p = { kind = \"tcp\", adress = \"x\" }").is_err());
        assert!(toml::from_str::<W>("p = { kind = \"fax\" }").is_err());
    }
}
