//! Content downloads (patent [0021], [0032]: the content company's server 104): the
//! catalogue a content company signs, the items in it, and the licence a customer
//! carries on their card and on the receipt.
//!
//! Pure: signing and checking take libp2p identity keys, but nothing here touches a
//! network or a disk. A catalogue and a licence are each a codec frame signed by a node
//! key, with that node's membership certificate beside it, so any kiosk checks them
//! offline: the signature here, the certificate against the network's root key by the
//! node's gate.

use std::fmt;
use std::str::FromStr;

use libp2p_identity::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::{decode_frame, encode_frame, CodecError};
use crate::ids::{BlobId, OrderId, StoreId};
use crate::money::Money;

/// Most items in one catalogue.
pub const MAX_ITEMS: usize = 1000;
/// Largest signed catalogue.
pub const CATALOGUE_MAX_BYTES: usize = 1024 * 1024;
/// Largest item: a FAT32 file is at most 4 GiB − 1 bytes.
pub const MAX_ITEM_BYTES: u64 = u32::MAX as u64;
/// Largest cover picture (a JPEG or PNG).
pub const MAX_COVER_BYTES: u64 = 2 * 1024 * 1024;
/// Largest signed licence (it must fit a QR code).
pub const LICENCE_MAX_BYTES: usize = 2048;
/// Longest text field (a title, an artist, a rights holder).
pub const MAX_TEXT_CHARS: usize = 120;
/// Longest folder or file name component on the card.
pub const MAX_NAME_CHARS: usize = 64;
/// Deepest folder an item may name.
pub const MAX_FOLDER_DEPTH: usize = 4;
/// What a licence's text form begins with.
pub const LICENCE_PREFIX: &str = "PMLIC1-";
/// Where a licence lies on the card: beside its item, `<file name>` + this.
pub const LICENCE_SUFFIX: &str = ".pmlicence";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ContentError {
    #[error("frame: {0}")]
    Codec(String),
    #[error("the signer's key is not a valid public key")]
    BadKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("cannot sign: {0}")]
    Sign(String),
    #[error("item {item}: {problem}")]
    BadItem { item: String, problem: String },
    #[error("the catalogue: {0}")]
    BadCatalogue(String),
    #[error("not a licence: {0}")]
    BadLicenceText(String),
}

impl From<CodecError> for ContentError {
    fn from(e: CodecError) -> Self {
        ContentError::Codec(e.to_string())
    }
}

/// What an item is; the kiosk browses by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ItemKind {
    Music,
    Image,
    Game,
}

impl ItemKind {
    pub const ALL: [ItemKind; 3] = [ItemKind::Music, ItemKind::Image, ItemKind::Game];
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ItemKind::Music => "music",
            ItemKind::Image => "image",
            ItemKind::Game => "game",
        })
    }
}

impl FromStr for ItemKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "music" => Ok(ItemKind::Music),
            "image" => Ok(ItemKind::Image),
            "game" => Ok(ItemKind::Game),
            other => Err(format!("kind {other:?}: music, image or game")),
        }
    }
}

/// An item's id in its company's catalogue: 1 to 40 of `a-z 0-9 - _`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemId(String);

impl ItemId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ItemId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty()
            || s.len() > 40
            || !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(format!("item id {s:?}: 1 to 40 of a-z, 0-9, '-' and '_'"));
        }
        Ok(ItemId(s.to_string()))
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A title or name in both languages, with its reading in kana (searched as kana and
/// as romaji, see [`romaji`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub ja: String,
    pub en: String,
    /// The Japanese name's reading, in hiragana or katakana.
    pub kana: String,
}

/// One thing a customer can buy and have written onto their card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: ItemId,
    pub kind: ItemKind,
    pub title: Names,
    pub artist: Names,
    /// The item's bytes: their BLAKE3 and length.
    pub blob: BlobId,
    pub size: u64,
    pub price: Money,
    pub rights_holder: String,
    /// A picture shown on the item's page (JPEG or PNG), if any.
    pub cover: Option<BlobId>,
    /// On sale from this instant (ms since the epoch) until `valid_until_ms`.
    pub valid_from_ms: i64,
    pub valid_until_ms: i64,
    /// Where on the card it goes: a folder (`MUSIC/PRINTMSH`, `/`-separated) and a file
    /// name. Never inside `DCIM` (the camera's).
    pub folder: String,
    pub file_name: String,
}

/// A content company's whole catalogue at one version; a newer version replaces it
/// (an item left out is withdrawn).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalogue {
    pub network: String,
    /// The company's name, as its certificate names it.
    pub company: String,
    /// Grows with every publication.
    pub version: u64,
    pub published_ms: i64,
    pub items: Vec<Item>,
}

/// A catalogue encoded and signed by the content company's node key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCatalogue {
    /// The codec's encoding of the [`Catalogue`].
    pub catalogue: Vec<u8>,
    /// The signer's public key (libp2p protobuf encoding).
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
    /// In an enrolled network, the signer's certificate (role content).
    pub certificate: Option<Vec<u8>>,
}

/// A checked catalogue and who signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCatalogue {
    pub catalogue: Catalogue,
    /// The signer's PeerId bytes.
    pub signer: Vec<u8>,
    pub certificate: Option<Vec<u8>>,
}

fn check_text(item: &str, what: &str, text: &str, required: bool) -> Result<(), ContentError> {
    let bad = |problem: String| ContentError::BadItem {
        item: item.to_string(),
        problem,
    };
    if required && text.trim().is_empty() {
        return Err(bad(format!("{what} is empty")));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(bad(format!("{what} is over {MAX_TEXT_CHARS} characters")));
    }
    if text.chars().any(char::is_control) {
        return Err(bad(format!("{what} has control characters")));
    }
    Ok(())
}

/// Whether `name` is a folder or file name a FAT card takes and a kiosk may write:
/// not empty, not `.` or `..`, no characters FAT forbids, no control characters, no
/// trailing dot or space.
pub fn valid_card_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name != "."
        && name != ".."
        && !name.ends_with('.')
        && !name.ends_with(' ')
        && !name.starts_with(".pm-")
        && !name
            .chars()
            .any(|c| c.is_control() || "\"*/:<>?\\|".contains(c))
}

impl Item {
    /// Checks every field an outside publisher could get wrong.
    pub fn validate(&self) -> Result<(), ContentError> {
        let id = self.id.as_str();
        let bad = |problem: String| ContentError::BadItem {
            item: id.to_string(),
            problem,
        };
        check_text(id, "the Japanese title", &self.title.ja, true)?;
        check_text(id, "the English title", &self.title.en, true)?;
        check_text(id, "the title's reading", &self.title.kana, false)?;
        check_text(id, "the Japanese artist", &self.artist.ja, false)?;
        check_text(id, "the English artist", &self.artist.en, false)?;
        check_text(id, "the artist's reading", &self.artist.kana, false)?;
        check_text(id, "the rights holder", &self.rights_holder, true)?;
        if self.size == 0 || self.size > MAX_ITEM_BYTES {
            return Err(bad(format!(
                "size {} is not between 1 byte and {MAX_ITEM_BYTES} bytes (a FAT32 file)",
                self.size
            )));
        }
        if self.price.amount_minor() < 0 {
            return Err(bad("the price is negative".into()));
        }
        if self.valid_until_ms <= self.valid_from_ms {
            return Err(bad("it is valid until before it is valid from".into()));
        }
        let parts: Vec<&str> = self.folder.split('/').collect();
        if parts.len() > MAX_FOLDER_DEPTH || !parts.iter().all(|p| valid_card_name(p)) {
            return Err(bad(format!(
                "folder {:?}: up to {MAX_FOLDER_DEPTH} names joined by '/', each a FAT name",
                self.folder
            )));
        }
        if parts
            .first()
            .is_some_and(|p| p.eq_ignore_ascii_case("DCIM"))
        {
            return Err(bad("the folder DCIM is the camera's".into()));
        }
        if !valid_card_name(&self.file_name)
            || self
                .file_name
                .to_ascii_lowercase()
                .ends_with(LICENCE_SUFFIX)
        {
            return Err(bad(format!(
                "file name {:?} is not one a card takes",
                self.file_name
            )));
        }
        Ok(())
    }

    /// On sale at `now_ms`.
    pub fn on_sale(&self, now_ms: i64) -> bool {
        (self.valid_from_ms..self.valid_until_ms).contains(&now_ms)
    }

    /// Its path on the card, `/`-separated: `MUSIC/PRINTMSH/TUNE.WAV`.
    pub fn card_path(&self) -> String {
        format!("{}/{}", self.folder, self.file_name)
    }

    /// Whether a customer's search matches it: every word of `query` is found in the
    /// title or artist, in either language, in its kana reading, or in that reading's
    /// romaji. Case, kana script and long vowels do not matter.
    pub fn matches(&self, query: &str) -> bool {
        let haystack = [
            &self.title.ja,
            &self.title.en,
            &self.artist.ja,
            &self.artist.en,
        ]
        .iter()
        .map(|s| fold(s))
        .chain([&self.title.kana, &self.artist.kana].iter().flat_map(|k| {
            let r = romaji(k);
            [fold(k), plain_vowels(&r), r]
        }))
        .collect::<Vec<_>>()
        .join("\u{1}");
        let words: Vec<String> = query.split_whitespace().map(fold).collect();
        !words.is_empty()
            && words.iter().all(|w| {
                haystack.contains(w.as_str())
                    || haystack.contains(romaji(w).as_str())
                    || haystack.contains(&plain_vowels(w))
            })
    }
}

/// Lower case, katakana as hiragana, full-width ASCII as ASCII.
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ァ'..='ヶ' => char::from_u32(c as u32 - 0x60).unwrap_or(c),
            '！'..='～' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Romaji with long vowels written once (`toukyou`, `tōkyō` → `tokyo`), so a customer
/// typing either finds it.
fn plain_vowels(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| match c {
            'ā' => 'a',
            'ī' => 'i',
            'ū' => 'u',
            'ē' => 'e',
            'ō' => 'o',
            _ => c,
        })
        .collect();
    s.replace("ou", "o").replace("uu", "u")
}

/// Hepburn romaji of a kana reading (hiragana or katakana; anything else is kept as
/// it is, lower case). `ー` lengthens the vowel before it by repeating it; `っ`
/// doubles the next consonant; `ん` is `n`.
pub fn romaji(kana: &str) -> String {
    const BASE: &[(&str, &str)] = &[
        ("きゃ", "kya"),
        ("きゅ", "kyu"),
        ("きょ", "kyo"),
        ("しゃ", "sha"),
        ("しゅ", "shu"),
        ("しょ", "sho"),
        ("ちゃ", "cha"),
        ("ちゅ", "chu"),
        ("ちょ", "cho"),
        ("にゃ", "nya"),
        ("にゅ", "nyu"),
        ("にょ", "nyo"),
        ("ひゃ", "hya"),
        ("ひゅ", "hyu"),
        ("ひょ", "hyo"),
        ("みゃ", "mya"),
        ("みゅ", "myu"),
        ("みょ", "myo"),
        ("りゃ", "rya"),
        ("りゅ", "ryu"),
        ("りょ", "ryo"),
        ("ぎゃ", "gya"),
        ("ぎゅ", "gyu"),
        ("ぎょ", "gyo"),
        ("じゃ", "ja"),
        ("じゅ", "ju"),
        ("じょ", "jo"),
        ("びゃ", "bya"),
        ("びゅ", "byu"),
        ("びょ", "byo"),
        ("ぴゃ", "pya"),
        ("ぴゅ", "pyu"),
        ("ぴょ", "pyo"),
        ("ふぁ", "fa"),
        ("ふぃ", "fi"),
        ("ふぇ", "fe"),
        ("ふぉ", "fo"),
        ("てぃ", "ti"),
        ("でぃ", "di"),
        ("しぇ", "she"),
        ("じぇ", "je"),
        ("ちぇ", "che"),
        ("ゔ", "vu"),
        ("あ", "a"),
        ("い", "i"),
        ("う", "u"),
        ("え", "e"),
        ("お", "o"),
        ("か", "ka"),
        ("き", "ki"),
        ("く", "ku"),
        ("け", "ke"),
        ("こ", "ko"),
        ("さ", "sa"),
        ("し", "shi"),
        ("す", "su"),
        ("せ", "se"),
        ("そ", "so"),
        ("た", "ta"),
        ("ち", "chi"),
        ("つ", "tsu"),
        ("て", "te"),
        ("と", "to"),
        ("な", "na"),
        ("に", "ni"),
        ("ぬ", "nu"),
        ("ね", "ne"),
        ("の", "no"),
        ("は", "ha"),
        ("ひ", "hi"),
        ("ふ", "fu"),
        ("へ", "he"),
        ("ほ", "ho"),
        ("ま", "ma"),
        ("み", "mi"),
        ("む", "mu"),
        ("め", "me"),
        ("も", "mo"),
        ("や", "ya"),
        ("ゆ", "yu"),
        ("よ", "yo"),
        ("ら", "ra"),
        ("り", "ri"),
        ("る", "ru"),
        ("れ", "re"),
        ("ろ", "ro"),
        ("わ", "wa"),
        ("を", "o"),
        ("ん", "n"),
        ("が", "ga"),
        ("ぎ", "gi"),
        ("ぐ", "gu"),
        ("げ", "ge"),
        ("ご", "go"),
        ("ざ", "za"),
        ("じ", "ji"),
        ("ず", "zu"),
        ("ぜ", "ze"),
        ("ぞ", "zo"),
        ("だ", "da"),
        ("ぢ", "ji"),
        ("づ", "zu"),
        ("で", "de"),
        ("ど", "do"),
        ("ば", "ba"),
        ("び", "bi"),
        ("ぶ", "bu"),
        ("べ", "be"),
        ("ぼ", "bo"),
        ("ぱ", "pa"),
        ("ぴ", "pi"),
        ("ぷ", "pu"),
        ("ぺ", "pe"),
        ("ぽ", "po"),
        ("ぁ", "a"),
        ("ぃ", "i"),
        ("ぅ", "u"),
        ("ぇ", "e"),
        ("ぉ", "o"),
        ("ゃ", "ya"),
        ("ゅ", "yu"),
        ("ょ", "yo"),
    ];
    let folded = fold(kana);
    let mut out = String::new();
    let mut rest = folded.as_str();
    let mut double = false;
    while let Some(c) = rest.chars().next() {
        if c == 'っ' {
            double = true;
            rest = rest.get(c.len_utf8()..).unwrap_or_default();
            continue;
        }
        if c == 'ー' {
            if let Some(v) = out.chars().last().filter(|v| "aiueo".contains(*v)) {
                out.push(v);
            }
            rest = rest.get(c.len_utf8()..).unwrap_or_default();
            continue;
        }
        let hit = BASE
            .iter()
            .filter(|(k, _)| rest.starts_with(k))
            .max_by_key(|(k, _)| k.len());
        match hit {
            Some((k, r)) => {
                if double {
                    let first = if r.starts_with("ch") {
                        't'
                    } else {
                        r.chars().next().unwrap_or('t')
                    };
                    out.push(first);
                }
                out.push_str(r);
                rest = rest.get(k.len()..).unwrap_or_default();
            }
            None => {
                out.push(c);
                rest = rest.get(c.len_utf8()..).unwrap_or_default();
            }
        }
        double = false;
    }
    out
}

impl Catalogue {
    /// Checks the catalogue as a whole: within its caps, ids unique, every item valid.
    pub fn validate(&self) -> Result<(), ContentError> {
        if self.items.len() > MAX_ITEMS {
            return Err(ContentError::BadCatalogue(format!(
                "{} items, over {MAX_ITEMS}",
                self.items.len()
            )));
        }
        if self.company.trim().is_empty() || self.company.chars().count() > MAX_TEXT_CHARS {
            return Err(ContentError::BadCatalogue("the company's name".into()));
        }
        let mut ids = std::collections::HashSet::new();
        for item in &self.items {
            item.validate()?;
            if !ids.insert(&item.id) {
                return Err(ContentError::BadCatalogue(format!(
                    "item {} appears twice",
                    item.id
                )));
            }
        }
        Ok(())
    }

    pub fn item(&self, id: &ItemId) -> Option<&Item> {
        self.items.iter().find(|i| &i.id == id)
    }
}

/// Signs a catalogue (after checking it) with the content company's node key.
pub fn sign_catalogue(
    keypair: &Keypair,
    catalogue: &Catalogue,
    certificate: Option<Vec<u8>>,
) -> Result<SignedCatalogue, ContentError> {
    catalogue.validate()?;
    let bytes = encode_frame(catalogue, CATALOGUE_MAX_BYTES)?;
    let signature = keypair
        .sign(&bytes)
        .map_err(|e| ContentError::Sign(e.to_string()))?;
    Ok(SignedCatalogue {
        catalogue: bytes,
        public_key: keypair.public().encode_protobuf(),
        signature,
        certificate,
    })
}

/// Checks a signed catalogue: the signature verifies and what it signs is a valid
/// catalogue. Whether the signer is an enrolled content company is the gate's to say.
pub fn verify_catalogue(signed: &SignedCatalogue) -> Result<VerifiedCatalogue, ContentError> {
    let key =
        PublicKey::try_decode_protobuf(&signed.public_key).map_err(|_| ContentError::BadKey)?;
    if !key.verify(&signed.catalogue, &signed.signature) {
        return Err(ContentError::BadSignature);
    }
    let catalogue: Catalogue = decode_frame(&signed.catalogue, CATALOGUE_MAX_BYTES)?;
    catalogue.validate()?;
    Ok(VerifiedCatalogue {
        catalogue,
        signer: key.to_peer_id().to_bytes(),
        certificate: signed.certificate.clone(),
    })
}

/// A proof of purchase the customer carries: which bytes, bought in which order, for
/// how much, when, and onto which card (its FAT volume serial). Signed by the kiosk
/// that sold it once the bytes on the card were verified and the payment captured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    pub network: String,
    /// The content company (its signer's PeerId bytes) and the item.
    pub company: Vec<u8>,
    pub item: ItemId,
    pub blob: BlobId,
    pub size: u64,
    pub order: OrderId,
    pub store: StoreId,
    pub price: Money,
    pub issued_ms: i64,
    /// The card's volume serial (`1234-ABCD` is 0x1234ABCD).
    pub card_serial: u32,
    /// Where it was written: folder and file name, as the catalogue said.
    pub folder: String,
    pub file_name: String,
}

/// A licence encoded and signed by the selling kiosk's node key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedLicence {
    pub licence: Vec<u8>,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
    /// In an enrolled network, the kiosk's certificate.
    pub certificate: Option<Vec<u8>>,
}

/// A checked licence and the kiosk that signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedLicence {
    pub licence: Licence,
    pub signer: Vec<u8>,
    pub certificate: Option<Vec<u8>>,
    /// Its short code (see [`SignedLicence::code`]).
    pub code: String,
}

pub fn sign_licence(
    keypair: &Keypair,
    licence: &Licence,
    certificate: Option<Vec<u8>>,
) -> Result<SignedLicence, ContentError> {
    let bytes = encode_frame(licence, LICENCE_MAX_BYTES)?;
    let signature = keypair
        .sign(&bytes)
        .map_err(|e| ContentError::Sign(e.to_string()))?;
    let signed = SignedLicence {
        licence: bytes,
        public_key: keypair.public().encode_protobuf(),
        signature,
        certificate,
    };
    // Its text form must fit the caps a reader applies.
    if signed.to_text()?.len() > LICENCE_MAX_BYTES * 2 {
        return Err(ContentError::BadLicenceText("too long".into()));
    }
    Ok(signed)
}

pub fn verify_licence(signed: &SignedLicence) -> Result<VerifiedLicence, ContentError> {
    let key =
        PublicKey::try_decode_protobuf(&signed.public_key).map_err(|_| ContentError::BadKey)?;
    if !key.verify(&signed.licence, &signed.signature) {
        return Err(ContentError::BadSignature);
    }
    let licence: Licence = decode_frame(&signed.licence, LICENCE_MAX_BYTES)?;
    Ok(VerifiedLicence {
        licence,
        signer: key.to_peer_id().to_bytes(),
        certificate: signed.certificate.clone(),
        code: signed.code(),
    })
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The base32 digit of the low five bits of `v`.
fn digit32(v: u32) -> char {
    char::from(*BASE32.get((v & 31) as usize).unwrap_or(&b'A'))
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(digit32(acc >> bits));
        }
    }
    if bits > 0 {
        out.push(digit32(acc << (5 - bits)));
    }
    out
}

fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = BASE32.iter().position(|&b| b == c.to_ascii_uppercase())? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

impl SignedLicence {
    /// Its text form, for the card's licence file and the receipt's QR code: the
    /// prefix and the signed frame in base32 (QR's alphanumeric mode takes it whole).
    pub fn to_text(&self) -> Result<String, ContentError> {
        let frame = encode_frame(self, LICENCE_MAX_BYTES * 2)?;
        Ok(format!("{LICENCE_PREFIX}{}", base32(&frame)))
    }

    pub fn from_text(text: &str) -> Result<SignedLicence, ContentError> {
        let text = text.trim();
        if text.len() > LICENCE_MAX_BYTES * 4 {
            return Err(ContentError::BadLicenceText("too long".into()));
        }
        let body = text.strip_prefix(LICENCE_PREFIX).ok_or_else(|| {
            ContentError::BadLicenceText(format!("it does not begin {LICENCE_PREFIX}"))
        })?;
        let frame = unbase32(body)
            .ok_or_else(|| ContentError::BadLicenceText("a character outside base32".into()))?;
        Ok(decode_frame(&frame, LICENCE_MAX_BYTES * 2)?)
    }

    /// A short code a person can read out: 12 base32 characters of the BLAKE3 of the
    /// signed licence, in groups of four (`ABCD-EFGH-IJKL`).
    pub fn code(&self) -> String {
        let hash = blake3::hash(&[&self.licence[..], &self.signature[..]].concat());
        let text = base32(hash.as_bytes());
        let text = text.get(..12).unwrap_or_default();
        format!(
            "{}-{}-{}",
            text.get(..4).unwrap_or_default(),
            text.get(4..8).unwrap_or_default(),
            text.get(8..12).unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn item(id: &str) -> Item {
        Item {
            id: id.parse().unwrap(),
            kind: ItemKind::Music,
            title: Names {
                ja: "夜明けの歌".into(),
                en: "Song of Dawn".into(),
                kana: "よあけのうた".into(),
            },
            artist: Names {
                ja: "東京シンセ".into(),
                en: "Tokyo Synth".into(),
                kana: "とうきょうシンセ".into(),
            },
            blob: BlobId::of(b"tune"),
            size: 4,
            price: Money::new(300, Currency::Jpy),
            rights_holder: "printmesh".into(),
            cover: None,
            valid_from_ms: 0,
            valid_until_ms: i64::MAX,
            folder: "MUSIC/PRINTMSH".into(),
            file_name: "DAWN.WAV".into(),
        }
    }

    fn key(n: u8) -> Keypair {
        Keypair::ed25519_from_bytes([n; 32]).unwrap()
    }

    fn catalogue() -> Catalogue {
        Catalogue {
            network: "test".into(),
            company: "Tunes".into(),
            version: 1,
            published_ms: 1,
            items: vec![item("dawn")],
        }
    }

    #[test]
    fn a_signed_catalogue_verifies_and_a_changed_one_does_not() {
        let key = self::tests::key(1);
        let signed = sign_catalogue(&key, &catalogue(), None).unwrap();
        let v = verify_catalogue(&signed).unwrap();
        assert_eq!(v.catalogue, catalogue());
        assert_eq!(v.signer, key.public().to_peer_id().to_bytes());
        let mut forged = signed.clone();
        let mut c = catalogue();
        c.items[0].price = Money::new(1, Currency::Jpy);
        forged.catalogue = encode_frame(&c, CATALOGUE_MAX_BYTES).unwrap();
        assert_eq!(verify_catalogue(&forged), Err(ContentError::BadSignature));
        let mut other = signed;
        other.public_key = self::tests::key(2).public().encode_protobuf();
        assert_eq!(verify_catalogue(&other), Err(ContentError::BadSignature));
    }

    #[test]
    fn items_a_card_cannot_take_are_refused() {
        for (folder, name) in [
            ("DCIM", "A.WAV"),
            ("MUSIC/../X", "A.WAV"),
            ("MUSIC", "A:B.WAV"),
            ("", "A.WAV"),
            ("A/B/C/D/E", "A.WAV"),
            ("MUSIC", ".pm-tmp"),
            ("MUSIC", "A.WAV.pmlicence"),
        ] {
            let mut i = item("x");
            i.folder = folder.into();
            i.file_name = name.into();
            assert!(i.validate().is_err(), "{folder}/{name}");
        }
        let mut c = catalogue();
        c.items.push(item("dawn"));
        assert!(matches!(c.validate(), Err(ContentError::BadCatalogue(_))));
        assert!("Bad Id".parse::<ItemId>().is_err());
    }

    #[test]
    fn search_finds_titles_and_artists_by_kana_and_romaji() {
        assert_eq!(romaji("とうきょう"), "toukyou");
        assert_eq!(romaji("がっこう"), "gakkou");
        assert_eq!(romaji("マッチ"), "matchi");
        assert_eq!(romaji("シンセ"), "shinse");
        assert_eq!(romaji("ラーメン"), "raamen");
        let i = item("dawn");
        for q in [
            "yoake",
            "YOAKE no uta",
            "よあけ",
            "ヨアケ",
            "夜明け",
            "dawn",
            "tokyo",
            "toukyou",
            "とうきょう",
            "synth",
            "shinse",
        ] {
            assert!(i.matches(q), "{q}");
        }
        for q in ["", "   ", "yoru", "osaka"] {
            assert!(!i.matches(q), "{q}");
        }
    }

    #[test]
    fn a_licence_goes_through_its_text_form_and_a_forged_one_fails() {
        let key = self::tests::key(1);
        let licence = Licence {
            network: "test".into(),
            company: key.public().to_peer_id().to_bytes(),
            item: "dawn".parse().unwrap(),
            blob: BlobId::of(b"tune"),
            size: 4,
            order: OrderId::from_bytes([7; 16]),
            store: "store-1".parse().unwrap(),
            price: Money::new(300, Currency::Jpy),
            issued_ms: 5,
            card_serial: 0x1234_ABCD,
            folder: "MUSIC".into(),
            file_name: "DAWN.WAV".into(),
        };
        let signed = sign_licence(&key, &licence, None).unwrap();
        let text = signed.to_text().unwrap();
        assert!(text.starts_with(LICENCE_PREFIX));
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'));
        let back = SignedLicence::from_text(&text).unwrap();
        let v = verify_licence(&back).unwrap();
        assert_eq!(v.licence, licence);
        assert_eq!(v.code.len(), 14);
        let mut forged = back;
        let mut l = licence;
        l.price = Money::new(0, Currency::Jpy);
        forged.licence = encode_frame(&l, LICENCE_MAX_BYTES).unwrap();
        assert_eq!(verify_licence(&forged), Err(ContentError::BadSignature));
        assert!(SignedLicence::from_text("PMLIC1-!!").is_err());
        assert!(SignedLicence::from_text("hello").is_err());
        assert!(SignedLicence::from_text("PMLIC1-AAAA").is_err());
    }
}
