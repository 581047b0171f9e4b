//! Magnetic-stripe readers that are not keyboard wedges, named in the kiosk's config:
//!
//! - `serial`: a reader on a serial port (or anything that reads like one). Each swipe
//!   arrives as the track characters followed by CR or LF, possibly framed by STX/ETX.
//!   The port's speed is set outside the kiosk (udev rule or `stty`).
//! - `input-event`: a reader that is a USB HID keyboard of its own, read from its Linux
//!   input device (`/dev/input/eventN`) as `struct input_event` records, key codes
//!   mapped through the US layout the readers use, with Shift. The kiosk does not grab
//!   the device (that takes an ioctl this crate's `forbid(unsafe_code)` rules out), so
//!   keep such a reader away from the kiosk's own console with a udev rule, or its
//!   swipes would also arrive as keys (the screen drops swipes it did not ask for).
//!
//! Both feed the same [`SwipeAssembler`] as a keyboard-wedge swipe, so a swipe reads the
//! same whichever way it arrived, and both wipe what they collected as soon as it is
//! parsed.

use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::swipe::{Swipe, SwipeAssembler, MAX_SWIPE_CHARS};

/// How the kiosk's card reader is attached.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CardReaderConfig {
    /// The reader types into the terminal like a keyboard (the default).
    #[default]
    Keyboard,
    Serial {
        path: PathBuf,
    },
    InputEvent {
        path: PathBuf,
    },
}

/// Reads swipes from a serial byte stream until it ends.
pub fn read_serial(mut input: impl Read, mut on_swipe: impl FnMut(Swipe)) -> std::io::Result<()> {
    let mut assembler = SwipeAssembler::default();
    let mut garbled = false;
    let mut buf = [0u8; 256];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in buf.iter().take(n) {
            match b {
                0x02 | 0x03 => {}
                b'\r' | b'\n' => {
                    if garbled {
                        assembler.cancel();
                        on_swipe(Swipe::Unreadable(
                            "the swipe was garbled; please swipe again".into(),
                        ));
                    } else if let Some(swipe) = assembler.finish() {
                        on_swipe(swipe);
                    }
                    garbled = false;
                }
                b if b.is_ascii_graphic() || b == b' ' => {
                    if !assembler.push(char::from(b)) && !assembler.is_active() {
                        // Noise between swipes.
                    }
                }
                _ => garbled = assembler.is_active(),
            }
        }
        // The bytes were track data: wipe them before the next read.
        printmesh_protocol::secret::Wipe::zeroize(&mut buf[..]);
    }
}

/// Size of one `struct input_event` on 64-bit Linux: a 16-byte timeval, type, code,
/// value.
pub const INPUT_EVENT_BYTES: usize = 24;
const EV_KEY: u16 = 1;
const KEY_LEFTSHIFT: u16 = 42;
const KEY_RIGHTSHIFT: u16 = 54;
const KEY_ENTER: u16 = 28;
const KEY_KPENTER: u16 = 96;

/// The US-layout character of a key code, without and with Shift.
fn key_char(code: u16, shift: bool) -> Option<char> {
    const DIGITS: &[u8; 10] = b"1234567890";
    const SHIFTED_DIGITS: &[u8; 10] = b"!@#$%^&*()";
    let pick = |plain: u8, shifted: u8| Some(char::from(if shift { shifted } else { plain }));
    let letter = |row: &[u8], i: u16| {
        row.get(usize::from(i)).map(|c| {
            let c = char::from(*c);
            if shift {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
    };
    match code {
        2..=11 => {
            let i = usize::from(code - 2);
            let set = if shift { SHIFTED_DIGITS } else { DIGITS };
            set.get(i).map(|c| char::from(*c))
        }
        12 => pick(b'-', b'_'),
        13 => pick(b'=', b'+'),
        16..=25 => letter(b"qwertyuiop", code - 16),
        30..=38 => letter(b"asdfghjkl", code - 30),
        39 => pick(b';', b':'),
        40 => pick(b'\'', b'"'),
        41 => pick(b'`', b'~'),
        43 => pick(b'\\', b'|'),
        44..=50 => letter(b"zxcvbnm", code - 44),
        51 => pick(b',', b'<'),
        52 => pick(b'.', b'>'),
        53 => pick(b'/', b'?'),
        57 => Some(' '),
        _ => None,
    }
}

/// Reads swipes from a Linux input device's event stream until it ends.
pub fn read_input_events(
    mut input: impl Read,
    mut on_swipe: impl FnMut(Swipe),
) -> std::io::Result<()> {
    let mut assembler = SwipeAssembler::default();
    let mut shift = false;
    let mut typed = 0usize;
    let mut record = [0u8; INPUT_EVENT_BYTES];
    loop {
        match input.read_exact(&mut record) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let field = |at: usize| {
            [
                record.get(at).copied().unwrap_or(0),
                record.get(at + 1).copied().unwrap_or(0),
            ]
        };
        let kind = u16::from_ne_bytes(field(16));
        let code = u16::from_ne_bytes(field(18));
        let value = i32::from_ne_bytes([
            record.get(20).copied().unwrap_or(0),
            record.get(21).copied().unwrap_or(0),
            record.get(22).copied().unwrap_or(0),
            record.get(23).copied().unwrap_or(0),
        ]);
        if kind != EV_KEY {
            continue;
        }
        match (code, value) {
            (KEY_LEFTSHIFT | KEY_RIGHTSHIFT, v) => shift = v != 0,
            (KEY_ENTER | KEY_KPENTER, 1) => {
                if let Some(swipe) = assembler.finish() {
                    on_swipe(swipe);
                }
                typed = 0;
            }
            (code, 1) => {
                if let Some(c) = key_char(code, shift) {
                    typed += 1;
                    if typed <= MAX_SWIPE_CHARS * 2 {
                        assembler.push(c);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Starts a reader thread for a configured serial or input-event reader. Returns
/// `None` for the keyboard wedge, which needs no thread.
pub fn spawn(
    config: &CardReaderConfig,
    on_swipe: impl FnMut(Swipe) + Send + 'static,
) -> Option<std::thread::JoinHandle<()>> {
    let (path, events) = match config {
        CardReaderConfig::Keyboard => return None,
        CardReaderConfig::Serial { path } => (path.clone(), false),
        CardReaderConfig::InputEvent { path } => (path.clone(), true),
    };
    std::thread::Builder::new()
        .name("card-reader".into())
        .spawn(move || {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(path = %path.display(), "cannot open the card reader: {e}");
                    return;
                }
            };
            let result = if events {
                read_input_events(file, on_swipe)
            } else {
                // Unbuffered: the only copy of the bytes is the reader's own buffer,
                // which it wipes.
                read_serial(file, on_swipe)
            };
            match result {
                Ok(()) => tracing::warn!(path = %path.display(), "the card reader went away"),
                Err(e) => tracing::error!(path = %path.display(), "card reader: {e}"),
            }
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "%B4111111111111111^PRINTMESH/TEST VISA^30121010000000000000?";
    const T2: &str = ";4111111111111111=30121010000000000000?";

    fn swipes_from_serial(bytes: &[u8]) -> Vec<Swipe> {
        let mut out = Vec::new();
        read_serial(bytes, |s| out.push(s)).unwrap();
        out
    }

    #[test]
    fn a_serial_reader_sends_lines_of_tracks() {
        let mut bytes = Vec::new();
        bytes.push(0x02);
        bytes.extend_from_slice(T1.as_bytes());
        bytes.extend_from_slice(T2.as_bytes());
        bytes.push(0x03);
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(b";E?\r");
        bytes.extend_from_slice(b";4111\xff111111111111=3012?\n");
        let swipes = swipes_from_serial(&bytes);
        assert_eq!(swipes.len(), 3, "{swipes:?}");
        assert!(matches!(&swipes[0], Swipe::Card(c) if c.pan.last4() == "1111"));
        assert!(matches!(&swipes[1], Swipe::Unreadable(_)));
        assert!(matches!(&swipes[2], Swipe::Unreadable(why) if why.contains("garbled")));
    }

    /// Key events as the kernel reports them: press and release, Shift around the
    /// characters that need it.
    fn events_for(text: &str) -> Vec<u8> {
        let code_of = |c: char| -> (u16, bool) {
            for code in 0..120u16 {
                for shift in [false, true] {
                    if key_char(code, shift) == Some(c) {
                        return (code, shift);
                    }
                }
            }
            panic!("no key for {c:?}");
        };
        let mut out = Vec::new();
        let mut event = |kind: u16, code: u16, value: i32| {
            out.extend_from_slice(&[0u8; 16]);
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(&code.to_ne_bytes());
            out.extend_from_slice(&value.to_ne_bytes());
            // A SYN_REPORT after each key, as the kernel sends.
            out.extend_from_slice(&[0u8; 24]);
        };
        for c in text.chars() {
            if c == '\n' {
                event(EV_KEY, KEY_ENTER, 1);
                event(EV_KEY, KEY_ENTER, 0);
                continue;
            }
            let (code, shift) = code_of(c);
            if shift {
                event(EV_KEY, KEY_LEFTSHIFT, 1);
            }
            event(EV_KEY, code, 1);
            event(EV_KEY, code, 0);
            if shift {
                event(EV_KEY, KEY_LEFTSHIFT, 0);
            }
        }
        out
    }

    #[test]
    fn an_input_event_reader_types_its_tracks() {
        let bytes = events_for(&format!("{T1}{T2}\n;4111111111111112=3012?\n"));
        let mut out = Vec::new();
        read_input_events(bytes.as_slice(), |s| out.push(s)).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(&out[0], Swipe::Card(c) if c.pan.last4() == "1111"));
        assert!(
            matches!(&out[1], Swipe::Unreadable(why) if why.contains("invalid")),
            "{out:?}"
        );
    }

    #[test]
    fn a_short_or_hostile_event_stream_ends_cleanly() {
        let mut out = Vec::new();
        read_input_events(&[1u8, 2, 3][..], |s| out.push(s)).unwrap();
        read_input_events(&vec![0xffu8; 24 * 50][..], |s| out.push(s)).unwrap();
        assert!(out.is_empty());
        let flood = events_for(&";".repeat(2000));
        read_input_events(flood.as_slice(), |s| out.push(s)).unwrap();
        assert!(out.is_empty(), "no Enter, no swipe");
    }

    #[test]
    fn reader_config_is_tagged() {
        #[derive(Deserialize)]
        struct W {
            r: CardReaderConfig,
        }
        let w: W =
            toml::from_str("r = { kind = \"input-event\", path = \"/dev/input/event3\" }").unwrap();
        assert_eq!(
            w.r,
            CardReaderConfig::InputEvent {
                path: "/dev/input/event3".into()
            }
        );
        let w: W = toml::from_str("r = { kind = \"keyboard\" }").unwrap();
        assert_eq!(w.r, CardReaderConfig::Keyboard);
    }
}
