//! Identifiers: orders (ULID, sortable by creation time), blobs (BLAKE3), stores,
//! authorisation codes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use ulid::Ulid;

/// An order id. Sortable by creation time; also the idempotency key of every request
/// made on the order's behalf, so a retry through any path can never charge twice.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(Ulid);

impl OrderId {
    /// Builds an id from a millisecond timestamp and 80 bits of randomness supplied by
    /// the caller (the protocol crate owns no clock and no RNG).
    pub fn from_parts(unix_ms: u64, random: u128) -> Self {
        OrderId(Ulid::from_parts(unix_ms, random))
    }

    /// The 16 bytes of the id, big-endian, so byte order equals time order. Used as a
    /// sled key prefix.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0 .0.to_be_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        OrderId(Ulid(u128::from_be_bytes(bytes)))
    }

    /// Milliseconds since the Unix epoch at which the id was made.
    pub fn timestamp_ms(self) -> u64 {
        self.0.timestamp_ms()
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrderId({})", self.0)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("not an order id (expected 26 Crockford base32 characters): {0:?}")]
pub struct ParseOrderIdError(String);

impl FromStr for OrderId {
    type Err = ParseOrderIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ulid::from_string(s)
            .map(OrderId)
            .map_err(|_| ParseOrderIdError(s.chars().take(40).collect()))
    }
}

impl Serialize for OrderId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_bytes().serialize(s)
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[u8; 16]>::deserialize(d).map(OrderId::from_bytes)
    }
}

/// A content address: the BLAKE3 hash of a blob's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// Hashes `bytes` (pure computation).
    pub fn of(bytes: &[u8]) -> Self {
        BlobId(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for logs and screens.
    pub fn short(&self) -> String {
        hex::encode(self.0.get(..6).unwrap_or_default())
    }
}

impl From<blake3::Hash> for BlobId {
    fn from(h: blake3::Hash) -> Self {
        BlobId(*h.as_bytes())
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.short())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("not a blob id (expected 64 hex digits)")]
pub struct ParseBlobIdError;

impl FromStr for BlobId {
    type Err = ParseBlobIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseBlobIdError)?;
        Ok(BlobId(out))
    }
}

/// Maximum length of a store id.
pub const MAX_STORE_ID_LEN: usize = 64;

/// A store (the place prints are collected from), e.g. `store-shibuya`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StoreId(String);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid store id {0:?}: use 1-64 characters from a-z, 0-9, '-' and '_'")]
pub struct InvalidStoreId(String);

impl TryFrom<String> for StoreId {
    type Error = InvalidStoreId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let ok = !s.is_empty()
            && s.len() <= MAX_STORE_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(StoreId(s))
        } else {
            Err(InvalidStoreId(s.chars().take(80).collect()))
        }
    }
}

impl FromStr for StoreId {
    type Err = InvalidStoreId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreId::try_from(s.to_string())
    }
}

impl From<StoreId> for String {
    fn from(s: StoreId) -> String {
        s.0
    }
}

impl StoreId {
    /// Stands for a store not known (a record made before its order arrived, such as
    /// a reversal that overtook its authorisation).
    pub fn unknown() -> StoreId {
        StoreId("unknown".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreId({})", self.0)
    }
}

/// An authorisation code as issued by the acquirer: six characters, digits and
/// upper-case letters (ISO 8583 field 38).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AuthCode(String);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid authorisation code {0:?}: expected 6 characters 0-9 or A-Z")]
pub struct InvalidAuthCode(String);

impl TryFrom<String> for AuthCode {
    type Error = InvalidAuthCode;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.len() == 6
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        {
            Ok(AuthCode(s))
        } else {
            Err(InvalidAuthCode(s.chars().take(20).collect()))
        }
    }
}

impl From<AuthCode> for String {
    fn from(a: AuthCode) -> String {
        a.0
    }
}

impl AuthCode {
    /// Makes a code from 30 bits of the caller's randomness.
    pub fn from_random(random: u32) -> Self {
        const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut n = random;
        let mut s = String::with_capacity(6);
        for _ in 0..6 {
            let idx = (n % 36) as usize;
            s.push(char::from(*ALPHABET.get(idx).unwrap_or(&b'0')));
            n /= 36;
        }
        AuthCode(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthCode({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_id_round_trips_through_text_and_bytes() {
        let id = OrderId::from_parts(1_764_000_000_000, 0xdead_beef);
        let text = id.to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(text.parse::<OrderId>().unwrap(), id);
        assert_eq!(OrderId::from_bytes(id.to_bytes()), id);
        assert_eq!(id.timestamp_ms(), 1_764_000_000_000);
    }

    #[test]
    fn order_ids_sort_by_time() {
        let a = OrderId::from_parts(1000, u128::MAX >> 48);
        let b = OrderId::from_parts(1001, 0);
        assert!(a < b);
        assert!(a.to_bytes() < b.to_bytes());
    }

    #[test]
    fn bad_order_id_is_an_error() {
        assert!("not-an-id".parse::<OrderId>().is_err());
    }

    #[test]
    fn blob_id_is_blake3() {
        let id = BlobId::of(b"hello");
        assert_eq!(
            id.to_hex(),
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        assert_eq!(id.to_hex().parse::<BlobId>().unwrap(), id);
        assert!("xyz".parse::<BlobId>().is_err());
    }

    #[test]
    fn store_ids_are_validated() {
        assert!("store-001".parse::<StoreId>().is_ok());
        assert!("Store 1".parse::<StoreId>().is_err());
        assert!("".parse::<StoreId>().is_err());
        assert!("a".repeat(65).parse::<StoreId>().is_err());
    }

    #[test]
    fn auth_codes_are_six_characters() {
        let code = AuthCode::from_random(123_456_789);
        assert_eq!(code.as_str().len(), 6);
        assert!(AuthCode::try_from(code.to_string()).is_ok());
        assert!(AuthCode::try_from("abc".to_string()).is_err());
    }
}
