//! ISO 9564 PIN blocks. The clear PIN lives only in a [`Pin`], which wipes itself when
//! dropped and never prints its digits; it is turned into a block at once.
//!
//! - Format 0 (ANSI X9.8): 8 bytes, PIN field XOR PAN field. Used for legacy TDES
//!   paths and as the reference construction.
//! - Format 4: 16 bytes, AES: `block = E_K(E_K(pin field) XOR pan field)`.

use zeroize::Zeroize;

use crate::secret::Secret;
use std::fmt;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::card::Pan;

/// A format 4 PIN block as it travels: already encrypted under the PIN encryption key
/// shared by the kiosk's PIN pad and the acquirer. `Debug` never shows its bytes, and
/// no node stores it past authorisation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedPinBlock(pub [u8; 16]);

impl fmt::Debug for EncryptedPinBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptedPinBlock(<encrypted>)")
    }
}

/// The PIN verification value the acquirer keeps instead of a PIN: a keyed hash of the
/// PAN and the PIN under the acquirer's own secret key. It cannot be turned back into
/// a PIN without that key, and comparing two of them reveals nothing else.
pub fn pin_verification_value(key: &[u8; 32], pan: &Pan, pin: &Pin) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(b"printmesh pin verification v1\0");
    hasher.update(pan.expose_digits().as_bytes());
    hasher.update(&[0]);
    hasher.update(pin.digits.expose());
    *hasher.finalize().as_bytes()
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PinError {
    #[error("a PIN has 4 to 12 digits")]
    Length,
    #[error("a PIN has only digits")]
    NotDigits,
    #[error("the PAN must have at least 12 digits")]
    Pan,
    #[error("the PIN block does not decode to a valid PIN")]
    BadBlock,
    #[error("an AES key is 16, 24 or 32 bytes")]
    Key,
}

/// A clear PIN, 4-12 digits. Never printed; wiped on drop.
pub struct Pin {
    digits: Secret<Vec<u8>>,
}

impl Pin {
    /// From the digits typed on the PIN pad.
    pub fn new(digits: &[u8]) -> Result<Pin, PinError> {
        if !(4..=12).contains(&digits.len()) {
            return Err(PinError::Length);
        }
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(PinError::NotDigits);
        }
        Ok(Pin {
            digits: Secret::new(digits.iter().map(|d| d - b'0').collect()),
        })
    }

    pub fn len(&self) -> usize {
        self.digits.expose().len()
    }

    pub fn is_empty(&self) -> bool {
        self.digits.expose().is_empty()
    }

    /// Compares with typed digits (for verification data checks in tests and fakes).
    pub fn matches(&self, digits: &[u8]) -> bool {
        digits.len() == self.digits.expose().len()
            && digits
                .iter()
                .zip(self.digits.expose())
                .all(|(a, b)| a.wrapping_sub(b'0') == *b)
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin({})", "*".repeat(self.digits.expose().len()))
    }
}

/// Overwrites PIN or PAN material before its memory is released.
fn wipe(bytes: &mut [u8]) {
    bytes.zeroize();
}

/// A buffer of PIN or PAN digits, wiped when dropped.
type Scratch = Secret<Vec<u8>>;

fn nibbles_to_bytes<const N: usize>(nibbles: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        let hi = nibbles.get(2 * i).copied().unwrap_or(0);
        let lo = nibbles.get(2 * i + 1).copied().unwrap_or(0);
        *byte = (hi << 4) | (lo & 0x0f);
    }
    out
}

fn pan_digits(pan: &str) -> Result<Vec<u8>, PinError> {
    if pan.len() < 12 || !pan.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PinError::Pan);
    }
    Ok(pan.bytes().map(|b| b - b'0').collect())
}

/// Format 0 from raw PAN digits (the vectors use PANs without a valid Luhn digit).
pub fn format0_digits(pin: &Pin, pan: &str) -> Result<[u8; 8], PinError> {
    let pan = Scratch::new(pan_digits(pan)?);
    let mut pin_field = Scratch::new(Vec::with_capacity(16));
    pin_field
        .expose_mut()
        .extend_from_slice(&[0u8, pin.digits.expose().len() as u8]);
    pin_field
        .expose_mut()
        .extend_from_slice(pin.digits.expose());
    pin_field.expose_mut().resize(16, 0xf);
    // 0000 + the 12 rightmost digits excluding the check digit.
    let end = pan.expose().len() - 1;
    let mut pan_field = Scratch::new(Vec::with_capacity(16));
    pan_field.expose_mut().extend_from_slice(&[0u8; 4]);
    pan_field.expose_mut().extend_from_slice(
        pan.expose()
            .get(end.saturating_sub(12)..end)
            .unwrap_or_default(),
    );
    let mut a: [u8; 8] = nibbles_to_bytes(pin_field.expose());
    let mut b: [u8; 8] = nibbles_to_bytes(pan_field.expose());
    let mut block = [0u8; 8];
    for (o, (x, y)) in block.iter_mut().zip(a.iter().zip(&b)) {
        *o = x ^ y;
    }
    wipe(&mut a);
    wipe(&mut b);
    Ok(block)
}

/// ISO 9564 format 0 PIN block for a card.
pub fn format0(pin: &Pin, pan: &Pan) -> Result<[u8; 8], PinError> {
    format0_digits(pin, pan.expose_digits())
}

fn format4_pan_field(pan: &[u8]) -> [u8; 16] {
    let m = pan.len().saturating_sub(12) as u8;
    let mut nibbles = Scratch::new(Vec::with_capacity(32));
    nibbles.expose_mut().push(m);
    nibbles
        .expose_mut()
        .extend(std::iter::repeat_n(0u8, 12usize.saturating_sub(pan.len())));
    nibbles.expose_mut().extend_from_slice(pan);
    nibbles.expose_mut().resize(32, 0);
    nibbles_to_bytes(nibbles.expose())
}

enum Aes {
    A128(aes::Aes128),
    A192(aes::Aes192),
    A256(aes::Aes256),
}

impl Aes {
    fn new(key: &[u8]) -> Result<Aes, PinError> {
        Ok(match key.len() {
            16 => Aes::A128(aes::Aes128::new(GenericArray::from_slice(key))),
            24 => Aes::A192(aes::Aes192::new(GenericArray::from_slice(key))),
            32 => Aes::A256(aes::Aes256::new(GenericArray::from_slice(key))),
            _ => return Err(PinError::Key),
        })
    }

    fn encrypt(&self, block: &mut [u8; 16]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Aes::A128(c) => c.encrypt_block(b),
            Aes::A192(c) => c.encrypt_block(b),
            Aes::A256(c) => c.encrypt_block(b),
        }
    }

    fn decrypt(&self, block: &mut [u8; 16]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Aes::A128(c) => c.decrypt_block(b),
            Aes::A192(c) => c.decrypt_block(b),
            Aes::A256(c) => c.decrypt_block(b),
        }
    }
}

fn xor16(a: &mut [u8; 16], b: &[u8; 16]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// Format 4 from raw PAN digits, with the caller's 8 random fill bytes.
pub fn format4_digits(
    pin: &Pin,
    pan: &str,
    key: &[u8],
    random: [u8; 8],
) -> Result<[u8; 16], PinError> {
    let pan = Scratch::new(pan_digits(pan)?);
    let aes = Aes::new(key)?;
    let mut nibbles = Scratch::new(Vec::with_capacity(16));
    nibbles
        .expose_mut()
        .extend_from_slice(&[4u8, pin.digits.expose().len() as u8]);
    nibbles.expose_mut().extend_from_slice(pin.digits.expose());
    nibbles.expose_mut().resize(16, 0xa);
    let mut head: [u8; 8] = nibbles_to_bytes(nibbles.expose());
    let mut block = [0u8; 16];
    for (slot, byte) in block.iter_mut().zip(head.iter().chain(random.iter())) {
        *slot = *byte;
    }
    wipe(&mut head);
    aes.encrypt(&mut block);
    let mut pan_field = format4_pan_field(pan.expose());
    xor16(&mut block, &pan_field);
    wipe(&mut pan_field);
    aes.encrypt(&mut block);
    Ok(block)
}

/// ISO 9564 format 4 PIN block for a card under an AES key.
pub fn format4(pin: &Pin, pan: &Pan, key: &[u8], random: [u8; 8]) -> Result<[u8; 16], PinError> {
    format4_digits(pin, pan.expose_digits(), key, random)
}

/// Recovers the PIN from a format 4 block (the acquirer side).
pub fn open_format4_digits(block: &[u8; 16], pan: &str, key: &[u8]) -> Result<Pin, PinError> {
    let pan = Scratch::new(pan_digits(pan)?);
    let aes = Aes::new(key)?;
    let mut b = *block;
    aes.decrypt(&mut b);
    let mut pan_field = format4_pan_field(pan.expose());
    xor16(&mut b, &pan_field);
    wipe(&mut pan_field);
    aes.decrypt(&mut b);
    let mut nibbles = Scratch::new(Vec::with_capacity(16));
    for byte in b.iter().take(8) {
        nibbles.expose_mut().push(byte >> 4);
        nibbles.expose_mut().push(byte & 0x0f);
    }
    wipe(&mut b);
    let nibbles = nibbles.expose();
    let (Some(4), Some(&len)) = (nibbles.first().copied(), nibbles.get(1)) else {
        return Err(PinError::BadBlock);
    };
    let len = usize::from(len);
    let digits = nibbles.get(2..2 + len).ok_or(PinError::BadBlock)?;
    if !(4..=12).contains(&len)
        || digits.iter().any(|d| *d > 9)
        || nibbles
            .get(2 + len..)
            .is_none_or(|fill| fill.iter().any(|n| *n != 0xa))
    {
        return Err(PinError::BadBlock);
    }
    let ascii = Scratch::new(digits.iter().map(|d| d + b'0').collect());
    Pin::new(ascii.expose())
}

pub fn open_format4(block: &[u8; 16], pan: &Pan, key: &[u8]) -> Result<Pin, PinError> {
    open_format4_digits(block, pan.expose_digits(), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02X}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn format0_vectors() {
        // ID TECH knowledge base; psec pinblock.py.
        let pin = Pin::new(b"1234").unwrap();
        assert_eq!(
            hex(&format0_digits(&pin, "43219876543210987").unwrap()),
            "0412AC89ABCDEF67"
        );
        assert_eq!(
            hex(&format0_digits(&pin, "5544332211009966").unwrap()),
            "041277CDDEEFF669"
        );
        let pin = Pin::new(b"92389").unwrap();
        assert_eq!(
            hex(&format0_digits(&pin, "4000001234562").unwrap()),
            "0592789FFFEDCBA9"
        );
    }

    #[test]
    fn format4_vectors() {
        // psec tests / paysec: K, PIN 1234, PAN 1234567890123456789, random fill FF×8.
        let key = unhex("00112233445566778899AABBCCDDEEFF");
        let pin = Pin::new(b"1234").unwrap();
        let block = format4_digits(&pin, "1234567890123456789", &key, [0xff; 8]).unwrap();
        assert_eq!(hex(&block), "28B41FDDD29B743E93124BD8E32D921E");
        let back = open_format4_digits(&block, "1234567890123456789", &key).unwrap();
        assert!(back.matches(b"1234"));
        let block: [u8; 16] = unhex("52DB178C6EDCE52E3A70F7FBC8E9C758")
            .try_into()
            .unwrap();
        assert!(open_format4_digits(&block, "1234567890123456", &key)
            .unwrap()
            .matches(b"1234"));
    }

    #[test]
    fn format4_round_trips_and_refuses_the_wrong_pan_or_key() {
        let key = [7u8; 32];
        let pan: Pan = "4111111111111111".parse().unwrap();
        let pin = Pin::new(b"987654").unwrap();
        let block = format4(&pin, &pan, &key, [1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert!(open_format4(&block, &pan, &key).unwrap().matches(b"987654"));
        let other: Pan = "3530111333300000".parse().unwrap();
        assert!(open_format4(&block, &other, &key).is_err());
        assert!(open_format4(&block, &pan, &[8u8; 32]).is_err());
        assert_eq!(format4(&pin, &pan, &[0u8; 5], [0; 8]), Err(PinError::Key));
    }

    #[test]
    fn verification_values_depend_on_pin_pan_and_key() {
        let pan: Pan = "4111111111111111".parse().unwrap();
        let other: Pan = "3530111333300000".parse().unwrap();
        let key = [9u8; 32];
        let pvv =
            |k: &[u8; 32], p: &Pan, d: &[u8]| pin_verification_value(k, p, &Pin::new(d).unwrap());
        assert_eq!(pvv(&key, &pan, b"1234"), pvv(&key, &pan, b"1234"));
        assert_ne!(pvv(&key, &pan, b"1234"), pvv(&key, &pan, b"1235"));
        assert_ne!(pvv(&key, &pan, b"1234"), pvv(&key, &other, b"1234"));
        assert_ne!(pvv(&key, &pan, b"1234"), pvv(&[8u8; 32], &pan, b"1234"));
        // "12340" is not "1234" followed by padding.
        assert_ne!(pvv(&key, &pan, b"1234"), pvv(&key, &pan, b"12340"));
        let block = EncryptedPinBlock([0xab; 16]);
        assert_eq!(format!("{block:?}"), "EncryptedPinBlock(<encrypted>)");
    }

    #[test]
    fn pins_are_validated_and_never_printed() {
        assert_eq!(Pin::new(b"123").err(), Some(PinError::Length));
        assert_eq!(Pin::new(b"12a4").err(), Some(PinError::NotDigits));
        let pin = Pin::new(b"1234").unwrap();
        assert_eq!(format!("{pin:?}"), "Pin(****)");
    }
}
