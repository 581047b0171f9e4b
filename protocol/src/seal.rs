//! Card data sealed at the kiosk to the acquirer's public key (point-to-point
//! encryption): HPKE (RFC 9180) in base mode with DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256 and ChaCha20-Poly1305.
//!
//! - The envelope's associated data binds it to one order: its id, amount and store.
//!   An intermediary that changes the amount, or moves the card to another order, gets
//!   an envelope that no longer opens.
//! - The PIN travels inside the envelope as an ISO 9564 format 4 block (AES-128) under
//!   a one-time key exported from the HPKE context, so every transaction has its own
//!   PIN key and only the holder of the acquirer's secret key can derive it.
//! - Outside the envelope ride only what the intermediary may see: the card's brand,
//!   its last four digits and how it was read.
//!
//! Randomness is passed in; nothing here does IO.

use zeroize::Zeroize;

use crate::secret::Secret;
use std::fmt;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as KemTrait, OpModeR, OpModeS, Serializable};
use rand_core06::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::card::{CardBrand, CardData, Pan};
use crate::codec::{decode_frame, encode_frame};
use crate::ids::{OrderId, StoreId};
use crate::messages::PaymentMethod;
use crate::money::Money;
use crate::pinblock::{format4, open_format4, Pin};

type Kem = X25519HkdfSha256;
type Kdf = HkdfSha256;
type Aead = ChaCha20Poly1305;

/// HPKE `info`: which protocol and version the envelope belongs to.
const INFO: &[u8] = b"printmesh sealed card v1";
/// Exporter context for the PIN block's one-time key.
const PIN_KEY_CONTEXT: &[u8] = b"printmesh pin block key v1";
/// Largest sealed plaintext (a PAN, an expiry, a PIN block and framing).
pub const MAX_SECRETS_BYTES: usize = 256;
/// Largest ciphertext accepted (the plaintext plus the AEAD tag).
pub const MAX_CIPHERTEXT_BYTES: usize = MAX_SECRETS_BYTES + 16;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the sealing key is not a valid X25519 public key")]
    BadKey,
    #[error("the card data is sealed to another acquirer's key")]
    WrongKey,
    #[error("the sealed card data does not open: it was altered, or belongs to another order")]
    Tampered,
    #[error("the sealed card data is malformed")]
    Malformed,
    #[error("the card data could not be sealed")]
    Seal,
    #[error("the PIN could not be encrypted: {0}")]
    Pin(String),
}

/// How the card was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryMode {
    /// Magnetic stripe, swiped.
    Swipe,
    /// IC chip, inserted (the EMV track-2 equivalent; the cryptogram is not checked).
    Chip,
}

/// The acquirer's public sealing key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SealKey(pub [u8; 32]);

/// Eight bytes naming a sealing key, so a receiver can tell an envelope is not for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", hex::encode(self.0))
    }
}

impl SealKey {
    pub fn id(&self) -> KeyId {
        let h = blake3::hash(&self.0);
        let mut id = [0u8; 8];
        id.copy_from_slice(h.as_bytes().get(..8).unwrap_or(&[0; 8]));
        KeyId(id)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<SealKey, SealError> {
        let bytes = hex::decode(text.trim()).map_err(|_| SealError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        <Kem as KemTrait>::PublicKey::from_bytes(&key).map_err(|_| SealError::BadKey)?;
        Ok(SealKey(key))
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealKey({})", self.to_hex())
    }
}

/// The acquirer's secret opening key. Wiped on drop; never printed.
pub struct SealSecret {
    secret: Secret<[u8; 32]>,
    /// Its public key, worked out once (a scalar multiplication saved per open).
    public: SealKey,
}

fn public_of(secret: &[u8; 32]) -> Result<SealKey, SealError> {
    let sk = <Kem as KemTrait>::PrivateKey::from_bytes(secret).map_err(|_| SealError::BadKey)?;
    let pk = Kem::sk_to_pk(&sk);
    let mut public = [0u8; 32];
    public.copy_from_slice(&pk.to_bytes());
    Ok(SealKey(public))
}

impl SealSecret {
    /// A new key pair from `rng`.
    pub fn generate(rng: &mut (impl CryptoRng + RngCore)) -> (SealSecret, SealKey) {
        let (sk, pk) = Kem::gen_keypair(rng);
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&sk.to_bytes());
        let mut public = [0u8; 32];
        public.copy_from_slice(&pk.to_bytes());
        let public = SealKey(public);
        let sealed = SealSecret {
            secret: Secret::new(secret),
            public,
        };
        secret.zeroize();
        (sealed, public)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Result<SealSecret, SealError> {
        let public = public_of(&bytes)?;
        Ok(SealSecret {
            secret: Secret::new(bytes),
            public,
        })
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        *self.secret.expose()
    }

    pub fn public(&self) -> Result<SealKey, SealError> {
        Ok(self.public)
    }
}

impl fmt::Debug for SealSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealSecret(<secret>)")
    }
}

/// What an envelope is bound to: the order it pays for, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub order_id: OrderId,
    pub amount: Money,
    pub store: StoreId,
    pub method: PaymentMethod,
}

impl Binding {
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"printmesh order v1\0");
        aad.extend_from_slice(&self.order_id.to_bytes());
        aad.extend_from_slice(&self.amount.amount_minor().to_le_bytes());
        aad.extend_from_slice(&self.amount.currency().numeric().to_le_bytes());
        aad.push(match self.method {
            PaymentMethod::Credit => 1,
            PaymentMethod::Debit => 2,
            PaymentMethod::PointCard => 3,
            PaymentMethod::IcCard => 4,
        });
        aad.extend_from_slice(self.store.as_str().as_bytes());
        aad
    }
}

/// What the intermediary may see of a card.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CardSummary {
    pub brand: CardBrand,
    /// The last four digits, nothing more.
    pub last4: String,
    pub entry: EntryMode,
}

impl CardSummary {
    pub fn of(card: &CardData, entry: EntryMode) -> CardSummary {
        CardSummary {
            brand: card.pan.brand(),
            last4: card.pan.last4().to_string(),
            entry,
        }
    }

    /// `VISA •••• 1111`.
    pub fn masked(&self) -> String {
        format!("{} •••• {}", self.brand, self.last4)
    }
}

/// Card data sealed to one acquirer, bound to one order.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedCard {
    pub key_id: KeyId,
    /// The HPKE encapsulated key.
    pub enc: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub summary: CardSummary,
}

impl fmt::Debug for SealedCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedCard({} for {:?}, {} bytes)",
            self.summary.masked(),
            self.key_id,
            self.ciphertext.len()
        )
    }
}

/// The plaintext inside the envelope. Never stored, never printed.
#[derive(Serialize, Deserialize)]
struct Secrets {
    pan: Pan,
    expiry: crate::card::Expiry,
    entry: EntryMode,
    pin_block: Option<[u8; 16]>,
}

fn wipe(bytes: Vec<u8>) {
    drop(Secret::new(bytes));
}

/// Seals `card` (and the cardholder's PIN, if one was entered) to `key` for the order
/// `binding` names.
pub fn seal_card(
    key: &SealKey,
    binding: &Binding,
    card: &CardData,
    entry: EntryMode,
    pin: Option<&Pin>,
    rng: &mut (impl CryptoRng + RngCore),
) -> Result<SealedCard, SealError> {
    let pk = <Kem as KemTrait>::PublicKey::from_bytes(&key.0).map_err(|_| SealError::BadKey)?;
    let (enc, mut ctx) = hpke::setup_sender::<Aead, Kdf, Kem, _>(&OpModeS::Base, &pk, INFO, rng)
        .map_err(|_| SealError::Seal)?;
    let pin_block = match pin {
        Some(pin) => {
            let mut pin_key = [0u8; 16];
            ctx.export(PIN_KEY_CONTEXT, &mut pin_key)
                .map_err(|_| SealError::Seal)?;
            let mut fill = [0u8; 8];
            rng.fill_bytes(&mut fill);
            let block =
                format4(pin, &card.pan, &pin_key, fill).map_err(|e| SealError::Pin(e.to_string()));
            pin_key.zeroize();
            Some(block?)
        }
        None => None,
    };
    let secrets = Secrets {
        pan: card.pan.clone(),
        expiry: card.expiry,
        entry,
        pin_block,
    };
    let plaintext = encode_frame(&secrets, MAX_SECRETS_BYTES).map_err(|_| SealError::Seal)?;
    drop(secrets);
    let sealed = ctx.seal(&plaintext, &binding.aad());
    wipe(plaintext);
    Ok(SealedCard {
        key_id: key.id(),
        enc: enc.to_bytes().to_vec(),
        ciphertext: sealed.map_err(|_| SealError::Seal)?,
        summary: CardSummary::of(card, entry),
    })
}

/// The PIN found in an envelope.
pub enum PinEntry {
    /// The cardholder entered none.
    None,
    Entered(Pin),
    /// A PIN block is there but does not decode to a PIN.
    Unreadable,
}

/// What the acquirer finds inside an envelope, in memory only.
pub struct Opened {
    pub card: CardData,
    pub entry: EntryMode,
    pub pin: PinEntry,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pin = match self.pin {
            PinEntry::None => "none",
            PinEntry::Entered(_) => "entered",
            PinEntry::Unreadable => "unreadable",
        };
        write!(f, "Opened({:?}, {:?}, pin {pin})", self.card, self.entry)
    }
}

/// Opens an envelope sealed to `secret` for the order `binding` names. The summary
/// outside must agree with the card inside.
pub fn open_card(
    secret: &SealSecret,
    binding: &Binding,
    sealed: &SealedCard,
) -> Result<Opened, SealError> {
    let public = secret.public()?;
    if sealed.key_id != public.id() {
        return Err(SealError::WrongKey);
    }
    if sealed.ciphertext.len() > MAX_CIPHERTEXT_BYTES {
        return Err(SealError::Malformed);
    }
    let sk = <Kem as KemTrait>::PrivateKey::from_bytes(secret.secret.expose())
        .map_err(|_| SealError::BadKey)?;
    let enc = <Kem as KemTrait>::EncappedKey::from_bytes(&sealed.enc)
        .map_err(|_| SealError::Malformed)?;
    let mut ctx = hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &sk, &enc, INFO)
        .map_err(|_| SealError::Tampered)?;
    let plaintext = ctx
        .open(&sealed.ciphertext, &binding.aad())
        .map_err(|_| SealError::Tampered)?;
    let secrets: Result<Secrets, _> = decode_frame(&plaintext, MAX_SECRETS_BYTES);
    wipe(plaintext);
    let secrets = secrets.map_err(|_| SealError::Malformed)?;
    let card = CardData {
        pan: secrets.pan.clone(),
        expiry: secrets.expiry,
    };
    if CardSummary::of(&card, secrets.entry) != sealed.summary {
        return Err(SealError::Tampered);
    }
    let pin = match secrets.pin_block {
        Some(block) => {
            let mut pin_key = [0u8; 16];
            ctx.export(PIN_KEY_CONTEXT, &mut pin_key)
                .map_err(|_| SealError::Malformed)?;
            let pin = open_format4(&block, &card.pan, &pin_key);
            pin_key.zeroize();
            match pin {
                Ok(pin) => PinEntry::Entered(pin),
                Err(_) => PinEntry::Unreadable,
            }
        }
        None => PinEntry::None,
    };
    Ok(Opened {
        card,
        entry: secrets.entry,
        pin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::Expiry;
    use crate::money::Currency;
    use rand_core06::SeedableRng;

    fn rng() -> TestRng {
        TestRng::seed_from_u64(7)
    }

    /// A deterministic RNG for tests (a counter hashed with BLAKE3).
    pub struct TestRng(u64, u64);

    impl SeedableRng for TestRng {
        type Seed = [u8; 8];
        fn from_seed(seed: [u8; 8]) -> Self {
            TestRng(u64::from_le_bytes(seed), 0)
        }
    }

    impl RngCore for TestRng {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            let mut b = [0u8; 8];
            self.fill_bytes(&mut b);
            u64::from_le_bytes(b)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for chunk in dest.chunks_mut(32) {
                self.1 += 1;
                let mut input = [0u8; 16];
                input[..8].copy_from_slice(&self.0.to_le_bytes());
                input[8..].copy_from_slice(&self.1.to_le_bytes());
                let h = blake3::hash(&input);
                chunk.copy_from_slice(&h.as_bytes()[..chunk.len()]);
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core06::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl CryptoRng for TestRng {}

    fn card() -> CardData {
        CardData {
            pan: "4111111111111111".parse().unwrap(),
            expiry: Expiry::new(2030, 12).unwrap(),
        }
    }

    fn binding() -> Binding {
        Binding {
            order_id: OrderId::from_parts(1_764_000_000_000, 42),
            amount: Money::new(480, Currency::Jpy),
            store: "store-001".parse().unwrap(),
            method: PaymentMethod::Credit,
        }
    }

    #[test]
    fn sealed_card_data_round_trips_with_its_pin() {
        let mut rng = rng();
        let (secret, key) = SealSecret::generate(&mut rng);
        let pin = Pin::new(b"1234").unwrap();
        let sealed = seal_card(
            &key,
            &binding(),
            &card(),
            EntryMode::Chip,
            Some(&pin),
            &mut rng,
        )
        .unwrap();
        assert_eq!(sealed.summary.last4, "1111");
        assert_eq!(sealed.summary.entry, EntryMode::Chip);
        // Nothing of the card is readable in the envelope.
        let bytes = encode_frame(&sealed, 4096).unwrap();
        assert!(!bytes.windows(16).any(|w| w == b"4111111111111111"));
        assert!(!format!("{sealed:?}").contains("41111111"));
        let opened = open_card(&secret, &binding(), &sealed).unwrap();
        assert_eq!(opened.card, card());
        assert_eq!(opened.entry, EntryMode::Chip);
        assert!(matches!(opened.pin, PinEntry::Entered(p) if p.matches(b"1234")));
        let no_pin =
            seal_card(&key, &binding(), &card(), EntryMode::Swipe, None, &mut rng).unwrap();
        assert!(matches!(
            open_card(&secret, &binding(), &no_pin).unwrap().pin,
            PinEntry::None
        ));
    }

    #[test]
    fn tampering_another_order_or_another_key_is_refused() {
        let mut rng = rng();
        let (secret, key) = SealSecret::generate(&mut rng);
        let sealed =
            seal_card(&key, &binding(), &card(), EntryMode::Swipe, None, &mut rng).unwrap();

        let mut flipped = sealed.clone();
        flipped.ciphertext[3] ^= 1;
        assert_eq!(
            open_card(&secret, &binding(), &flipped).unwrap_err(),
            SealError::Tampered
        );

        let mut more = binding();
        more.amount = Money::new(4800, Currency::Jpy);
        assert_eq!(
            open_card(&secret, &more, &sealed).unwrap_err(),
            SealError::Tampered
        );
        let mut other = binding();
        other.order_id = OrderId::from_parts(1, 1);
        assert_eq!(
            open_card(&secret, &other, &sealed).unwrap_err(),
            SealError::Tampered
        );
        let mut debit = binding();
        debit.method = PaymentMethod::Debit;
        let other = debit;
        assert_eq!(
            open_card(&secret, &other, &sealed).unwrap_err(),
            SealError::Tampered
        );

        let mut relabelled = sealed.clone();
        relabelled.summary.last4 = "0000".into();
        assert_eq!(
            open_card(&secret, &binding(), &relabelled).unwrap_err(),
            SealError::Tampered
        );

        let (other_secret, _) = SealSecret::generate(&mut rng);
        assert_eq!(
            open_card(&other_secret, &binding(), &sealed).unwrap_err(),
            SealError::WrongKey
        );

        let mut short = sealed.clone();
        short.enc.truncate(5);
        assert_eq!(
            open_card(&secret, &binding(), &short).unwrap_err(),
            SealError::Malformed
        );
        let mut huge = sealed;
        huge.ciphertext = vec![0; 10_000];
        assert_eq!(
            open_card(&secret, &binding(), &huge).unwrap_err(),
            SealError::Malformed
        );
    }

    #[test]
    fn keys_round_trip_as_hex_and_secrets_never_print() {
        let mut rng = rng();
        let (secret, key) = SealSecret::generate(&mut rng);
        assert_eq!(SealKey::from_hex(&key.to_hex()).unwrap(), key);
        assert_eq!(secret.public().unwrap(), key);
        assert_eq!(
            SealSecret::from_bytes(secret.to_bytes())
                .unwrap()
                .public()
                .unwrap(),
            key
        );
        assert!(SealKey::from_hex("abcd").is_err());
        assert_eq!(format!("{secret:?}"), "SealSecret(<secret>)");
    }
}
