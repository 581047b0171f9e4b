//! The one codec: bincode 2 (serde), configured here and nowhere else.
//!
//! A network frame is `[version: u8][payload length: u32 little-endian][payload]`. The
//! reader parses the five-byte header with [`parse_header`], which checks the version
//! and the length against the protocol's cap *before* the caller allocates anything,
//! then hands the payload to [`decode_payload`]. Inside the payload bincode's own limit
//! bounds every length prefix, so a hostile `Vec` length cannot allocate either.
//!
//! Values stored in sled use [`encode_stored`]/[`decode_stored`]: a format-version byte
//! and the same bincode payload, so a later release can still read what an earlier one
//! wrote.

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// Version byte at the start of every network frame.
pub const WIRE_VERSION: u8 = 1;
/// Version byte at the start of every value stored in sled.
pub const STORE_FORMAT_VERSION: u8 = 1;
/// Length of a frame header: version byte and u32 length.
pub const FRAME_HEADER_LEN: usize = 5;
/// Hard ceiling on any single frame or stored value, whatever a protocol allows.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME_BYTES>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>()
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    FrameTooLarge { len: usize, max: usize },
    #[error("unsupported message version {got} (this node speaks version {supported})")]
    UnsupportedVersion { got: u8, supported: u8 },
    #[error("frame is truncated: expected {expected} bytes, got {got}")]
    Truncated { expected: usize, got: usize },
    #[error("frame has {0} bytes after the message")]
    TrailingBytes(usize),
    #[error("cannot decode message: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Encodes `value` as a complete frame (header and payload), refusing to produce one
/// larger than `max_payload` bytes.
pub fn encode_frame<T: Serialize>(value: &T, max_payload: usize) -> Result<Vec<u8>, CodecError> {
    let payload = bincode::serde::encode_to_vec(value, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    let max = max_payload.min(MAX_FRAME_BYTES);
    if payload.len() > max {
        return Err(CodecError::FrameTooLarge {
            len: payload.len(),
            max,
        });
    }
    let len = u32::try_from(payload.len()).map_err(|_| CodecError::FrameTooLarge {
        len: payload.len(),
        max,
    })?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.push(WIRE_VERSION);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Checks a frame header and returns the payload length the caller may now read.
pub fn parse_header(
    header: [u8; FRAME_HEADER_LEN],
    max_payload: usize,
) -> Result<usize, CodecError> {
    let [version, a, b, c, d] = header;
    if version != WIRE_VERSION {
        return Err(CodecError::UnsupportedVersion {
            got: version,
            supported: WIRE_VERSION,
        });
    }
    let len = u32::from_le_bytes([a, b, c, d]) as usize;
    let max = max_payload.min(MAX_FRAME_BYTES);
    if len > max {
        return Err(CodecError::FrameTooLarge { len, max });
    }
    Ok(len)
}

/// Decodes a payload whose header [`parse_header`] accepted. Every byte must be used.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (value, used): (T, usize) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::TrailingBytes(payload.len() - used));
    }
    Ok(value)
}

/// Decodes a whole frame held in memory (gossip messages, tests).
pub fn decode_frame<T: DeserializeOwned>(
    frame: &[u8],
    max_payload: usize,
) -> Result<T, CodecError> {
    let header: [u8; FRAME_HEADER_LEN] = frame
        .get(..FRAME_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(CodecError::Truncated {
            expected: FRAME_HEADER_LEN,
            got: frame.len(),
        })?;
    let len = parse_header(header, max_payload)?;
    let payload = frame.get(FRAME_HEADER_LEN..).unwrap_or_default();
    if payload.len() < len {
        return Err(CodecError::Truncated {
            expected: len,
            got: payload.len(),
        });
    }
    if payload.len() > len {
        return Err(CodecError::TrailingBytes(payload.len() - len));
    }
    decode_payload(payload)
}

/// Encodes a value for storage: format-version byte, then the bincode payload.
pub fn encode_stored<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![STORE_FORMAT_VERSION];
    let payload = bincode::serde::encode_to_vec(value, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if payload.len() > MAX_FRAME_BYTES {
        return Err(CodecError::FrameTooLarge {
            len: payload.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes a stored value, checking its format version.
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        Some((&STORE_FORMAT_VERSION, payload)) => decode_payload(payload),
        Some((&other, _)) => Err(CodecError::UnsupportedVersion {
            got: other,
            supported: STORE_FORMAT_VERSION,
        }),
        None => Err(CodecError::Truncated {
            expected: 1,
            got: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Hello, Role};

    fn hello() -> Hello {
        Hello {
            network: "demo".into(),
            role: Role::Lab,
            name: "Lab".into(),
            store: None,
            certificate: None,
            revocations: vec![],
        }
    }

    #[test]
    fn frame_round_trip() {
        let frame = encode_frame(&hello(), 1024).unwrap();
        assert_eq!(frame.first(), Some(&WIRE_VERSION));
        let back: Hello = decode_frame(&frame, 1024).unwrap();
        assert_eq!(back, hello());
    }

    #[test]
    fn oversized_frames_are_refused_before_reading() {
        let header = [WIRE_VERSION, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(
            parse_header(header, 4096),
            Err(CodecError::FrameTooLarge {
                len: 0x7fff_ffff,
                max: 4096
            })
        );
        assert!(matches!(
            encode_frame(&vec![0u8; 5000], 4096),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn unknown_versions_are_named() {
        let mut frame = encode_frame(&hello(), 1024).unwrap();
        frame[0] = 9;
        assert_eq!(
            decode_frame::<Hello>(&frame, 1024),
            Err(CodecError::UnsupportedVersion {
                got: 9,
                supported: 1
            })
        );
    }

    #[test]
    fn truncated_and_trailing_bytes_are_errors() {
        let frame = encode_frame(&hello(), 1024).unwrap();
        assert!(matches!(
            decode_frame::<Hello>(&frame[..frame.len() - 1], 1024),
            Err(CodecError::Truncated { .. })
        ));
        let mut longer = frame.clone();
        longer.push(0);
        assert_eq!(
            decode_frame::<Hello>(&longer, 1024),
            Err(CodecError::TrailingBytes(1))
        );
        assert!(matches!(
            decode_frame::<Hello>(&frame[..3], 1024),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn garbage_payload_is_a_decode_error() {
        let mut frame = vec![WIRE_VERSION, 4, 0, 0, 0];
        frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            decode_frame::<Hello>(&frame, 1024),
            Err(CodecError::Decode(_))
        ));
    }

    #[test]
    fn hostile_length_prefix_does_not_allocate() {
        // A Vec<u8> claiming u64::MAX elements inside a small frame.
        let mut payload = vec![0xffu8];
        payload.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_payload::<Vec<u8>>(&payload).is_err());
    }

    #[test]
    fn stored_values_carry_a_format_version() {
        let bytes = encode_stored(&hello()).unwrap();
        assert_eq!(bytes[0], STORE_FORMAT_VERSION);
        assert_eq!(decode_stored::<Hello>(&bytes).unwrap(), hello());
        let mut future = bytes.clone();
        future[0] = 2;
        assert!(matches!(
            decode_stored::<Hello>(&future),
            Err(CodecError::UnsupportedVersion { got: 2, .. })
        ));
        assert!(decode_stored::<Hello>(&[]).is_err());
    }
}
