//! Signed order events: an [`OrderEvent`] encoded, signed by its origin's ed25519 node
//! key, and checked by every node that receives it (gossiped or synced). Pure: the
//! keys are libp2p identity keys, but nothing here touches a network or a disk, so the
//! fuzz build checks these frames without the node runtime.

use libp2p_identity::{Keypair, PublicKey};
use thiserror::Error;

use crate::codec::{decode_frame, encode_frame, CodecError};
use crate::messages::{proto, OrderEvent, SignedEvent};

#[derive(Debug, Error)]
pub enum SignatureError {
    #[error("event frame: {0}")]
    Codec(#[from] CodecError),
    #[error("event signer key is not a valid public key")]
    BadKey,
    #[error("event signature does not verify")]
    BadSignature,
    #[error("event origin does not match its signer")]
    OriginMismatch,
    #[error("cannot sign event: {0}")]
    Sign(String),
}

/// Signs an event with the node's identity key.
pub fn sign_event(keypair: &Keypair, event: &OrderEvent) -> Result<SignedEvent, SignatureError> {
    let bytes = encode_frame(event, proto::EVENT_MAX_BYTES)?;
    let signature = keypair
        .sign(&bytes)
        .map_err(|e| SignatureError::Sign(e.to_string()))?;
    Ok(SignedEvent {
        event: bytes,
        public_key: keypair.public().encode_protobuf(),
        signature,
        certificate: None,
    })
}

/// Checks a gossiped frame: it decodes within its cap, the signature verifies, and the
/// origin named inside is the signer. Returns the event with the origin's certificate
/// (if it carries one) for the membership check.
pub fn verify_event_with_certificate(
    frame: &[u8],
) -> Result<(OrderEvent, Option<Vec<u8>>), SignatureError> {
    let signed: SignedEvent = decode_frame(frame, proto::EVENT_MAX_BYTES)?;
    let certificate = signed.certificate.clone();
    verify_signed(signed).map(|e| (e, certificate))
}

/// The event a frame claims to carry, unchecked: enough to see whether a node has it
/// already (then nothing else about it matters).
pub fn peek_event(frame: &[u8]) -> Option<OrderEvent> {
    let signed: SignedEvent = decode_frame(frame, proto::EVENT_MAX_BYTES).ok()?;
    decode_frame(&signed.event, proto::EVENT_MAX_BYTES).ok()
}

/// [`verify_event_with_certificate`] without the certificate.
pub fn verify_event(frame: &[u8]) -> Result<OrderEvent, SignatureError> {
    verify_event_with_certificate(frame).map(|(e, _)| e)
}

fn verify_signed(signed: SignedEvent) -> Result<OrderEvent, SignatureError> {
    let key =
        PublicKey::try_decode_protobuf(&signed.public_key).map_err(|_| SignatureError::BadKey)?;
    if !key.verify(&signed.event, &signed.signature) {
        return Err(SignatureError::BadSignature);
    }
    let event: OrderEvent = decode_frame(&signed.event, proto::EVENT_MAX_BYTES)?;
    if event.origin != key.to_peer_id().to_bytes() {
        return Err(SignatureError::OriginMismatch);
    }
    Ok(event)
}
