//! Membership: who belongs to a store network, and in which role.
//!
//! The network's operator holds a root key (ed25519). Enrolling a node issues it a
//! [`Certificate`] — its PeerId, role, name, validity and a serial — signed by the root
//! key. Nodes show their certificates to each other on connect; a certificate counts
//! only if the root signed it, it has not expired, it is not revoked, and it names the
//! very PeerId whose key the connection proved (noise). A [`Revocation`] is signed by the
//! root too, so any node can pass it on.
//!
//! This module is the pure part: the forms and their checks. Signing and verifying
//! with the root key happen in the node crate (libp2p's ed25519).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::{decode_frame, encode_frame, CodecError};
use crate::messages::Role;

/// Largest encoded certificate or revocation.
pub const MAX_CERT_BYTES: usize = 4 * 1024;
/// Longest node name on a certificate.
pub const MAX_NAME_LEN: usize = 80;

/// What the root key vouches for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The network it is valid in (`network` of the node configs).
    pub network: String,
    /// The node's PeerId (bytes).
    pub peer_id: Vec<u8>,
    pub role: Role,
    pub name: String,
    /// A kiosk's store: the intermediary serves it that store's orders only.
    pub store: Option<crate::StoreId>,
    pub serial: u64,
    pub issued_ms: i64,
    pub expires_ms: i64,
}

/// A certificate as issued: its encoding and the root's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCertificate {
    /// The codec's frame of the [`Certificate`].
    pub certificate: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The root's word that a certificate no longer counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub network: String,
    pub serial: u64,
    /// The PeerId the revoked certificate named.
    pub peer_id: Vec<u8>,
    pub revoked_ms: i64,
}

/// A revocation as issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRevocation {
    pub revocation: Vec<u8>,
    pub signature: Vec<u8>,
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CertError {
    #[error("the certificate does not decode: {0}")]
    Malformed(String),
    #[error("the certificate is not signed by this network's root key")]
    BadSignature,
    #[error("the certificate is for network {0:?}")]
    OtherNetwork(String),
    #[error("the certificate names another peer")]
    OtherPeer,
    #[error("the certificate expired")]
    Expired,
    #[error("the certificate is not valid yet")]
    NotYetValid,
    #[error("certificate {0} is revoked")]
    Revoked(u64),
    #[error("the certificate's name is empty or too long")]
    BadName,
    #[error("no certificate")]
    Missing,
    /// A valid certificate that does not cover what the peer says or does.
    #[error("{0}")]
    NotAllowed(String),
}

impl From<CodecError> for CertError {
    fn from(e: CodecError) -> Self {
        CertError::Malformed(e.to_string())
    }
}

/// How far a peer's clock may run ahead of ours when it issues.
pub const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

impl Certificate {
    pub fn encode(&self) -> Result<Vec<u8>, CertError> {
        Ok(encode_frame(self, MAX_CERT_BYTES)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Certificate, CertError> {
        let c: Certificate = decode_frame(bytes, MAX_CERT_BYTES)?;
        if c.name.is_empty() || c.name.chars().count() > MAX_NAME_LEN {
            return Err(CertError::BadName);
        }
        Ok(c)
    }

    /// Everything but the signature: the network, the peer the connection proved,
    /// the time, and the revocation list (`revoked(serial, peer_id)`).
    pub fn check(
        &self,
        network: &str,
        peer_id: &[u8],
        now_ms: i64,
        revoked: impl Fn(u64, &[u8]) -> bool,
    ) -> Result<(), CertError> {
        if self.network != network {
            return Err(CertError::OtherNetwork(
                self.network.chars().take(64).collect(),
            ));
        }
        if self.peer_id != peer_id {
            return Err(CertError::OtherPeer);
        }
        if now_ms >= self.expires_ms {
            return Err(CertError::Expired);
        }
        if self.issued_ms > now_ms.saturating_add(CLOCK_SKEW_MS) {
            return Err(CertError::NotYetValid);
        }
        if revoked(self.serial, &self.peer_id) {
            return Err(CertError::Revoked(self.serial));
        }
        Ok(())
    }
}

/// `encode` and `decode` in the codec's frame, within [`MAX_CERT_BYTES`].
macro_rules! cert_frame {
    ($($t:ident),*) => {$(
        impl $t {
            pub fn encode(&self) -> Result<Vec<u8>, CertError> {
                Ok(encode_frame(self, MAX_CERT_BYTES)?)
            }

            pub fn decode(bytes: &[u8]) -> Result<$t, CertError> {
                Ok(decode_frame(bytes, MAX_CERT_BYTES)?)
            }
        }
    )*};
}

cert_frame!(SignedCertificate, Revocation, SignedRevocation);

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> Certificate {
        Certificate {
            network: "shops".into(),
            peer_id: vec![1, 2, 3],
            role: Role::Lab,
            name: "Lab One".into(),
            store: None,
            serial: 7,
            issued_ms: 1_000,
            expires_ms: 10_000,
        }
    }

    #[test]
    fn a_certificate_round_trips_and_every_check_has_its_error() {
        let c = cert();
        assert_eq!(Certificate::decode(&c.encode().unwrap()).unwrap(), c);
        let none = |_: u64, _: &[u8]| false;
        assert_eq!(c.check("shops", &[1, 2, 3], 5_000, none), Ok(()));
        assert_eq!(
            c.check("other", &[1, 2, 3], 5_000, none),
            Err(CertError::OtherNetwork("shops".into()))
        );
        assert_eq!(
            c.check("shops", &[9], 5_000, none),
            Err(CertError::OtherPeer)
        );
        assert_eq!(
            c.check("shops", &[1, 2, 3], 10_000, none),
            Err(CertError::Expired)
        );
        let mut future = c.clone();
        future.issued_ms = 5_000 + CLOCK_SKEW_MS + 1;
        future.expires_ms = i64::MAX;
        assert_eq!(
            future.check("shops", &[1, 2, 3], 5_000, none),
            Err(CertError::NotYetValid)
        );
        assert_eq!(
            c.check("shops", &[1, 2, 3], 5_000, |s, _| s == 7),
            Err(CertError::Revoked(7))
        );
    }

    #[test]
    fn hostile_bytes_are_errors() {
        let bytes = cert().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(Certificate::decode(&bytes[..n]).is_err());
        }
        assert!(Certificate::decode(&[0xFF; 64]).is_err());
        let mut nameless = cert();
        nameless.name.clear();
        assert_eq!(
            Certificate::decode(&nameless.encode().unwrap()),
            Err(CertError::BadName)
        );
        assert!(SignedCertificate::decode(b"junk").is_err());
        assert!(SignedRevocation::decode(&[1, 255, 255, 255, 255]).is_err());
    }
}
