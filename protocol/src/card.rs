//! Card data: a Luhn-checked [`Pan`] that masks itself, an [`Expiry`], the card data a
//! kiosk reads from a magnetic stripe (ISO/IEC 7813 tracks 1 and 2).
//!
//! Nothing here keeps track data: the parsers return a [`CardData`] and drop the rest
//! (service code, discretionary data, CVV-bearing fields).

use crate::secret::Secret;
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CardError {
    #[error("card number must be 12 to 19 digits, got {0} characters")]
    PanLength(usize),
    #[error("card number contains a character that is not a digit")]
    PanNotDigits,
    #[error("card number fails the Luhn check")]
    PanLuhn,
    #[error("expiry must be YYMM with a month 01-12")]
    Expiry,
    #[error("track {track} is malformed: {why}")]
    Track { track: u8, why: &'static str },
}

/// A primary account number. Only built through [`FromStr`]/[`TryFrom`], which check
/// its length and Luhn digit. `Debug` and `Display` show only the last four digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pan(Secret<String>);

/// Serialised as its digits, borrowed: no copy of the card number is made on the way.
impl Serialize for Pan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.expose())
    }
}

impl<'de> Deserialize<'de> for Pan {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let digits = String::deserialize(deserializer)?;
        // The string moves into the Pan (or is wiped with the error).
        Pan::try_from(digits).map_err(serde::de::Error::custom)
    }
}

fn luhn_ok(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

impl TryFrom<String> for Pan {
    type Error = CardError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let check = if !s.bytes().all(|b| b.is_ascii_digit()) {
            Err(CardError::PanNotDigits)
        } else if !(12..=19).contains(&s.len()) {
            Err(CardError::PanLength(s.len()))
        } else if !luhn_ok(&s) {
            Err(CardError::PanLuhn)
        } else {
            Ok(())
        };
        match check {
            Ok(()) => Ok(Pan(Secret::new(s))),
            Err(e) => {
                wipe(s);
                Err(e)
            }
        }
    }
}

impl FromStr for Pan {
    type Err = CardError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: String = s.chars().filter(|c| *c != ' ' && *c != '-').collect();
        Pan::try_from(compact)
    }
}

impl Pan {
    /// The last four digits, the most any screen, receipt or log may show.
    pub fn last4(&self) -> &str {
        let digits = self.0.expose();
        digits.get(digits.len().saturating_sub(4)..).unwrap_or("")
    }

    /// `•••• 1111`.
    pub fn masked(&self) -> String {
        format!("•••• {}", self.last4())
    }

    /// The full digits. Only the acquirer's authorisation path and the keyed-hash
    /// tokeniser call this; never format it into a log line.
    pub fn expose_digits(&self) -> &str {
        self.0.expose()
    }

    pub fn brand(&self) -> CardBrand {
        CardBrand::of(self.0.expose())
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Card scheme, from the PAN's issuer identification number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CardBrand {
    Visa,
    Mastercard,
    Jcb,
    Amex,
    Other,
}

impl CardBrand {
    fn of(digits: &str) -> Self {
        let prefix = |n: usize| digits.get(..n).and_then(|p| p.parse::<u32>().ok());
        match (prefix(1), prefix(2), prefix(4)) {
            (Some(4), _, _) => CardBrand::Visa,
            (_, Some(34 | 37), _) => CardBrand::Amex,
            (_, Some(51..=55), _) => CardBrand::Mastercard,
            (_, _, Some(2221..=2720)) => CardBrand::Mastercard,
            (_, _, Some(3528..=3589)) => CardBrand::Jcb,
            _ => CardBrand::Other,
        }
    }
}

impl fmt::Display for CardBrand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CardBrand::Visa => "VISA",
            CardBrand::Mastercard => "Mastercard",
            CardBrand::Jcb => "JCB",
            CardBrand::Amex => "AMEX",
            CardBrand::Other => "card",
        })
    }
}

/// A card's expiry month. A card is valid through the last day of that month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Expiry {
    year: u16,
    month: u8,
}

impl Expiry {
    pub fn new(year: u16, month: u8) -> Result<Self, CardError> {
        if (1..=12).contains(&month) && (2000..=2099).contains(&year) {
            Ok(Expiry { year, month })
        } else {
            Err(CardError::Expiry)
        }
    }

    /// Parses the `YYMM` form used on tracks and in ISO 8583 field 14.
    pub fn from_yymm(s: &str) -> Result<Self, CardError> {
        if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError::Expiry);
        }
        let yy: u16 = s
            .get(..2)
            .and_then(|v| v.parse().ok())
            .ok_or(CardError::Expiry)?;
        let mm: u8 = s
            .get(2..)
            .and_then(|v| v.parse().ok())
            .ok_or(CardError::Expiry)?;
        Expiry::new(2000 + yy, mm)
    }

    pub fn year(&self) -> u16 {
        self.year
    }

    pub fn month(&self) -> u8 {
        self.month
    }

    /// True when `today` is after the last day of the expiry month.
    pub fn is_expired_on(&self, today: NaiveDate) -> bool {
        let today_ym = (today.year(), today.month());
        (i32::from(self.year), u32::from(self.month)) < today_ym
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}/{:02}", self.month, self.year % 100)
    }
}

/// What the acquirer needs to authorise a card payment. Built from a track read or a
/// chip read at the kiosk; never stored past authorisation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardData {
    pub pan: Pan,
    pub expiry: Expiry,
}

impl fmt::Debug for CardData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardData({} exp {})", self.pan.masked(), self.expiry)
    }
}

/// Longest track the parsers accept (track 1 is at most 79 characters, track 2 at most
/// 40, plus sentinels and LRC).
pub const MAX_TRACK_LEN: usize = 82;

/// The ISO/IEC 7813 longitudinal redundancy check of a track, from its start sentinel
/// through its end sentinel: the XOR of every character's data bits (6 bits on track 1,
/// 4 on track 2), written back as a character of the track's set.
pub fn lrc(track: u8, sentinel_to_end: &str) -> char {
    let (base, mask) = if track == 1 {
        (0x20u8, 0x3fu8)
    } else {
        (0x30u8, 0x0fu8)
    };
    let x = sentinel_to_end
        .bytes()
        .fold(0u8, |acc, c| acc ^ (c.wrapping_sub(base) & mask));
    char::from(base + x)
}

/// The characters between a track's start sentinel and its end sentinel `?`. An LRC
/// character after the end sentinel is checked when the reader sends one. `E` alone is
/// the reader's way of saying the track could not be read.
fn track_body(track: u8, text: &str, start: char) -> Result<&str, CardError> {
    let bad = |why| CardError::Track { track, why };
    if text.len() > MAX_TRACK_LEN {
        return Err(bad("too long"));
    }
    let body = text.strip_prefix(start).ok_or(bad("no start sentinel"))?;
    let end = body.find('?').ok_or(bad("no end sentinel '?'"))?;
    let after = body.get(end + 1..).unwrap_or_default();
    let mut after_chars = after.chars();
    match (after_chars.next(), after_chars.next()) {
        (None, _) => {}
        (Some(got), None) => {
            let framed = text.get(..start.len_utf8() + end + 1).unwrap_or_default();
            if got != lrc(track, framed) {
                return Err(bad("the LRC check failed: the swipe was misread"));
            }
        }
        (Some(_), Some(_)) => return Err(bad("characters after the end sentinel")),
    }
    let body = body.get(..end).ok_or(bad("no end sentinel '?'"))?;
    if body == "E" {
        return Err(bad("the reader reported a read error (E)"));
    }
    Ok(body)
}

/// The PAN field and the `YYMM…` field that follows it.
fn pan_and_expiry(track: u8, pan: &str, rest: &str) -> Result<CardData, CardError> {
    let bad = |why| CardError::Track { track, why };
    let pan: Pan = pan.parse().map_err(|_| bad("card number is invalid"))?;
    let yymm = rest.get(..4).ok_or(bad("no expiry date"))?;
    let expiry = Expiry::from_yymm(yymm).map_err(|_| bad("expiry date is invalid"))?;
    Ok(CardData { pan, expiry })
}

/// Parses ISO/IEC 7813 track 2: `;PAN=YYMMSSS<discretionary>?`. Returns only the PAN
/// and expiry.
pub fn parse_track2(track: &str) -> Result<CardData, CardError> {
    let body = track_body(2, track, ';')?;
    let (pan, rest) = body.split_once('=').ok_or(CardError::Track {
        track: 2,
        why: "no field separator '='",
    })?;
    pan_and_expiry(2, pan, rest)
}

/// Parses ISO/IEC 7813 track 1 (format B): `%B<PAN>^<NAME>^YYMMSSS<discretionary>?`.
/// The cardholder name is dropped: the network never needs it.
pub fn parse_track1(track: &str) -> Result<CardData, CardError> {
    let bad = |why| CardError::Track { track: 1, why };
    let body = track_body(1, track, '%')?;
    let body = body
        .strip_prefix('B')
        .ok_or(bad("format code is not 'B'"))?;
    let mut fields = body.splitn(3, '^');
    let pan = fields.next().ok_or(bad("no card number"))?;
    let _name = fields.next().ok_or(bad("no name field"))?;
    let rest = fields.next().ok_or(bad("no expiry field"))?;
    pan_and_expiry(1, pan, rest)
}

/// Overwrites a string's bytes before its memory is released (for copies of card
/// data that are only needed for a moment).
pub fn wipe(s: String) {
    crate::secret::wipe_string(s);
}

/// Parses an EMV "track 2 equivalent" (tag 57) as a chip reader reports it, in hex
/// nibbles: `PAN D YYMM SSS discretionary [F]`.
pub fn parse_track2_equivalent(hex_digits: &str) -> Result<CardData, CardError> {
    let bad = |why| CardError::Track { track: 2, why };
    if hex_digits.len() > 2 * 19 + 2 {
        return Err(bad("too long"));
    }
    let upper = hex_digits.trim_end_matches(['F', 'f']).to_ascii_uppercase();
    let result = match upper.split_once('D') {
        Some((pan, rest)) => pan_and_expiry(2, pan, rest),
        None => Err(bad("no field separator 'D'")),
    };
    wipe(upper);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_checks_test_pans() {
        assert!("4111111111111111".parse::<Pan>().is_ok());
        assert!("3530111333300000".parse::<Pan>().is_ok());
        assert!("5555 5555 5555 4444".parse::<Pan>().is_ok());
        assert_eq!("4111111111111112".parse::<Pan>(), Err(CardError::PanLuhn));
        assert_eq!("41111".parse::<Pan>(), Err(CardError::PanLength(5)));
        assert_eq!("4111x".parse::<Pan>(), Err(CardError::PanNotDigits));
    }

    #[test]
    fn pan_masks_itself() {
        let pan: Pan = "4111111111111111".parse().unwrap();
        assert_eq!(format!("{pan}"), "•••• 1111");
        assert_eq!(format!("{pan:?}"), "Pan(•••• 1111)");
        assert!(!format!("{pan:?}").contains("411111"));
        let card = CardData {
            pan,
            expiry: Expiry::new(2030, 12).unwrap(),
        };
        assert_eq!(format!("{card:?}"), "CardData(•••• 1111 exp 12/30)");
    }

    #[test]
    fn brands() {
        let brand = |s: &str| s.parse::<Pan>().unwrap().brand();
        assert_eq!(brand("4111111111111111"), CardBrand::Visa);
        assert_eq!(brand("3530111333300000"), CardBrand::Jcb);
        assert_eq!(brand("5555555555554444"), CardBrand::Mastercard);
        assert_eq!(brand("378282246310005"), CardBrand::Amex);
    }

    #[test]
    fn pan_deserialisation_validates() {
        let bad: Result<Pan, _> = Pan::try_from("4111111111111112".to_string());
        assert!(bad.is_err());
    }

    #[test]
    fn expiry_is_valid_through_end_of_month() {
        let e = Expiry::from_yymm("2611").unwrap();
        assert!(!e.is_expired_on(NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()));
        assert!(e.is_expired_on(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()));
        assert!(Expiry::from_yymm("2613").is_err());
        assert!(Expiry::from_yymm("26").is_err());
    }

    #[test]
    fn parses_track2() {
        let card = parse_track2(";4111111111111111=30121015432112345678?").unwrap();
        assert_eq!(card.pan.last4(), "1111");
        assert_eq!(card.expiry, Expiry::new(2030, 12).unwrap());
        assert!(parse_track2("4111111111111111=3012?").is_err());
        assert!(parse_track2(";4111111111111111=3012").is_err());
        assert!(parse_track2(";E?").is_err());
        assert!(parse_track2(";4111111111111112=3012101?").is_err());
        assert!(parse_track2(&";1".repeat(100)).is_err());
    }

    #[test]
    fn lrc_matches_published_examples_and_is_checked() {
        // MagTek manual examples.
        assert_eq!(lrc(2, ";0?"), '4');
        assert_eq!(lrc(1, "%AT3?"), '<');
        let t2 = ";4111111111111111=30121010000000000000?";
        let with_lrc = format!("{t2}{}", lrc(2, t2));
        assert!(parse_track2(&with_lrc).is_ok());
        let wrong = format!("{t2}{}", if lrc(2, t2) == '0' { '1' } else { '0' });
        assert_eq!(
            parse_track2(&wrong),
            Err(CardError::Track {
                track: 2,
                why: "the LRC check failed: the swipe was misread"
            })
        );
        let t1 = "%B4111111111111111^DOE/JOHN^2512101000000000000?";
        assert_eq!(lrc(1, t1), '+');
        assert!(parse_track1(&format!("{t1}+")).is_ok());
        assert!(parse_track1(&format!("{t1}-")).is_err());
        assert!(parse_track1(&format!("{t1}++")).is_err());
    }

    #[test]
    fn parses_chip_track2_equivalent() {
        let card = parse_track2_equivalent("4111111111111111D30121010000000000000F").unwrap();
        assert_eq!(card.pan.last4(), "1111");
        assert_eq!(card.expiry, Expiry::new(2030, 12).unwrap());
        assert!(parse_track2_equivalent("4111111111111111=3012").is_err());
        assert!(parse_track2_equivalent("").is_err());
    }

    #[test]
    fn parses_track1() {
        let card = parse_track1("%B3530111333300000^YAMADA/TARO^28071010000000000000?").unwrap();
        assert_eq!(card.pan.last4(), "0000");
        assert_eq!(card.expiry, Expiry::new(2028, 7).unwrap());
        assert!(parse_track1("%A3530111333300000^X^2807?").is_err());
        assert!(parse_track1("%B3530111333300000^X?").is_err());
    }
}
