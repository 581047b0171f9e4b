//! Order events: signed by the node that emits them, numbered per origin, gossiped, and
//! kept in every node's sled so each can fold an order's state.

use std::sync::Mutex;

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use printmesh_protocol::codec::{decode_frame, encode_frame};
use printmesh_protocol::messages::{proto, EventKind, OrderEvent, SignedEvent};
use printmesh_protocol::order::{fold, OrderState};
use printmesh_protocol::OrderId;
use thiserror::Error;

use crate::net::Client;
use crate::store::{Db, StoreError, Tree};

#[derive(Debug, Error)]
pub enum EventError {
    #[error("event frame: {0}")]
    Codec(#[from] printmesh_protocol::codec::CodecError),
    #[error("event signer key is not a valid public key")]
    BadKey,
    #[error("event signature does not verify")]
    BadSignature,
    #[error("event origin does not match its signer")]
    OriginMismatch,
    #[error("cannot sign event: {0}")]
    Sign(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Signs an event with the node's identity key.
pub fn sign_event(keypair: &Keypair, event: &OrderEvent) -> Result<SignedEvent, EventError> {
    let bytes = encode_frame(event, proto::EVENT_MAX_BYTES)?;
    let signature = keypair
        .sign(&bytes)
        .map_err(|e| EventError::Sign(e.to_string()))?;
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
) -> Result<(OrderEvent, Option<Vec<u8>>), EventError> {
    let signed: SignedEvent = decode_frame(frame, proto::EVENT_MAX_BYTES)?;
    let certificate = signed.certificate.clone();
    verify_signed(signed).map(|e| (e, certificate))
}

/// The event a frame claims to carry, unchecked: enough to see whether this node has
/// it already (then nothing else about it matters).
pub fn peek_event(frame: &[u8]) -> Option<OrderEvent> {
    let signed: SignedEvent = decode_frame(frame, proto::EVENT_MAX_BYTES).ok()?;
    decode_frame(&signed.event, proto::EVENT_MAX_BYTES).ok()
}

/// [`verify_event_with_certificate`] without the certificate.
pub fn verify_event(frame: &[u8]) -> Result<OrderEvent, EventError> {
    verify_event_with_certificate(frame).map(|(e, _)| e)
}

fn verify_signed(signed: SignedEvent) -> Result<OrderEvent, EventError> {
    let key = PublicKey::try_decode_protobuf(&signed.public_key).map_err(|_| EventError::BadKey)?;
    if !key.verify(&signed.event, &signed.signature) {
        return Err(EventError::BadSignature);
    }
    let event: OrderEvent = decode_frame(&signed.event, proto::EVENT_MAX_BYTES)?;
    if event.origin != key.to_peer_id().to_bytes() {
        return Err(EventError::OriginMismatch);
    }
    Ok(event)
}

fn event_key(event: &OrderEvent) -> Vec<u8> {
    let origin = blake3::hash(&event.origin);
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(&event.order_id.to_bytes());
    key.extend_from_slice(origin.as_bytes().get(..8).unwrap_or_default());
    key.extend_from_slice(&event.seq.to_be_bytes());
    key
}

/// The node's copy of every order event it has seen, and its own sequence counter.
pub struct EventLog {
    keypair: Keypair,
    origin: Vec<u8>,
    events: Tree<OrderEvent>,
    meta: Tree<u64>,
    /// Our last sequence number; taken and stored under the lock, so two emits can
    /// never store them out of order.
    seq: Mutex<u64>,
    /// Our membership certificate, carried by each event we sign (enrolled networks).
    certificate: Mutex<Option<Vec<u8>>>,
}

impl EventLog {
    pub fn open(db: &Db, keypair: Keypair) -> Result<EventLog, StoreError> {
        let events = db.tree("events")?;
        let meta: Tree<u64> = db.tree("event_meta")?;
        let seq = meta.get(b"seq")?.unwrap_or(0);
        Ok(EventLog {
            origin: PeerId::from(keypair.public()).to_bytes(),
            keypair,
            events,
            meta,
            seq: Mutex::new(seq),
            certificate: Mutex::new(None),
        })
    }

    /// The certificate our events carry from now on.
    pub fn set_certificate(&self, certificate: Vec<u8>) {
        *self.certificate.lock().unwrap_or_else(|e| e.into_inner()) = Some(certificate);
    }

    /// Records, signs and gossips a new event of ours. Gossip failure (no peers yet)
    /// is logged, not fatal: the event is in our log either way.
    pub async fn emit(
        &self,
        client: &Client,
        order_id: OrderId,
        kind: EventKind,
        at_ms: i64,
    ) -> Result<(), EventError> {
        let seq = {
            let mut last = self.seq.lock().unwrap_or_else(|e| e.into_inner());
            let next = *last + 1;
            self.meta.insert(b"seq", &next)?;
            *last = next;
            next
        };
        let event = OrderEvent {
            origin: self.origin.clone(),
            seq,
            order_id,
            at_ms,
            kind,
        };
        self.record(&event)?;
        let mut signed = sign_event(&self.keypair, &event)?;
        signed.certificate = self
            .certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let frame = encode_frame(&signed, proto::EVENT_MAX_BYTES)?;
        if let Err(e) = client.publish_event(frame).await {
            tracing::debug!(%order_id, "event not gossiped now: {e}");
        }
        Ok(())
    }

    /// Whether this node has the event (same order, origin and number) already.
    pub fn has(&self, event: &OrderEvent) -> bool {
        matches!(self.events.contains(event_key(event)), Ok(true))
    }

    /// Keeps an event if it is new; returns whether it was.
    pub fn record(&self, event: &OrderEvent) -> Result<bool, EventError> {
        Ok(self.events.insert_new(event_key(event), event)?)
    }

    pub fn events_for(&self, order_id: OrderId) -> Result<Vec<OrderEvent>, EventError> {
        let mut out = Vec::new();
        for entry in self.events.scan_prefix(order_id.to_bytes()) {
            out.push(entry?.1);
        }
        Ok(out)
    }

    /// The order's state as this node's events say.
    pub fn state_of(&self, order_id: OrderId) -> Result<OrderState, EventError> {
        Ok(fold(&self.events_for(order_id)?))
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(origin: &Keypair) -> OrderEvent {
        OrderEvent {
            origin: PeerId::from(origin.public()).to_bytes(),
            seq: 1,
            order_id: OrderId::from_parts(5, 5),
            at_ms: 5,
            kind: EventKind::Printed,
        }
    }

    #[test]
    fn signed_events_verify() {
        let key = Keypair::generate_ed25519();
        let signed = sign_event(&key, &event(&key)).unwrap();
        let frame = encode_frame(&signed, proto::EVENT_MAX_BYTES).unwrap();
        assert_eq!(verify_event(&frame).unwrap(), event(&key));
    }

    #[test]
    fn tampered_or_misattributed_events_are_refused() {
        let key = Keypair::generate_ed25519();
        let mut signed = sign_event(&key, &event(&key)).unwrap();
        let last = signed.event.len() - 1;
        signed.event[last] ^= 1;
        let frame = encode_frame(&signed, proto::EVENT_MAX_BYTES).unwrap();
        assert!(matches!(
            verify_event(&frame),
            Err(EventError::BadSignature)
        ));

        // Signed by one key, claiming another origin.
        let other = Keypair::generate_ed25519();
        let signed = sign_event(&key, &event(&other)).unwrap();
        let frame = encode_frame(&signed, proto::EVENT_MAX_BYTES).unwrap();
        assert!(matches!(
            verify_event(&frame),
            Err(EventError::OriginMismatch)
        ));

        assert!(verify_event(b"garbage").is_err());
    }

    #[test]
    fn the_log_keeps_each_event_once_and_folds_state() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let key = Keypair::generate_ed25519();
        let log = EventLog::open(&db, key.clone()).unwrap();
        let e = event(&key);
        assert!(log.record(&e).unwrap());
        assert!(!log.record(&e).unwrap());
        assert_eq!(log.events_for(e.order_id).unwrap().len(), 1);
        // A lone "printed" event does not apply to a draft.
        assert_eq!(log.state_of(e.order_id).unwrap(), OrderState::Draft);
    }
}
