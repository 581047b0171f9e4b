//! Order events: signed by the node that emits them, numbered per origin, gossiped, and
//! kept in every node's sled so each can fold an order's state.

use std::sync::Mutex;

use libp2p::identity::Keypair;
use libp2p::PeerId;
use printmesh_protocol::codec::encode_frame;
use printmesh_protocol::messages::{proto, EventKind, OrderEvent};
use printmesh_protocol::order::{fold, OrderState};
use printmesh_protocol::signed::{self, SignatureError};
use printmesh_protocol::OrderId;
use thiserror::Error;

use crate::net::Client;
use crate::store::{Db, StoreError, Tree};

#[derive(Debug, Error)]
pub enum EventError {
    #[error("event frame: {0}")]
    Codec(#[from] printmesh_protocol::codec::CodecError),
    /// Signing or checking a signed event (`printmesh_protocol::signed`).
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Signing and checking order events is the protocol's (no IO): a frame decodes within
/// its cap, its signature verifies, and the origin named inside is the signer.
pub use signed::{peek_event, sign_event, verify_event, verify_event_with_certificate};

/// Whether a gossiped or synced frame may be taken: its signature is its origin's, and
/// in an enrolled network (`gate`) the origin is a member whose role emits this kind.
/// The swarm loop judges gossip with it, the sync task what peers send it.
pub fn judge_frame(
    gate: Option<&crate::membership::Gate>,
    frame: &[u8],
) -> Result<OrderEvent, String> {
    let (event, cert) = verify_event_with_certificate(frame).map_err(|e| e.to_string())?;
    if let Some(gate) = gate {
        gate.admit_event(&event, cert.as_deref())
            .map_err(|e| format!("from {}: {e}", crate::net::peer_name(&event.origin)))?;
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

/// An event as this node stored it for its peers: the signed frame it came in (or
/// went out) as, so a peer that asks for it later can check it as it checks gossip.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredFrame {
    pub order_id: OrderId,
    /// An encoded [`SignedEvent`].
    pub frame: Vec<u8>,
}

/// A page of the log for a peer that asks ([`EventLog::page`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub frames: Vec<Vec<u8>>,
    /// The last arrival number looked at (ask after it next time).
    pub next: u64,
    /// Whether the log had more after `next` (up to the page's bound) than the page
    /// could take.
    pub more: bool,
}

/// The node's copy of every order event it has seen, and its own sequence counter.
///
/// Every event stored with its signed frame also gets an *arrival number* (1, 2, …
/// in the order this node stored them; `event_frames`), which is what peers page
/// through when they ask what they missed (`sync`). `log_id` names this numbering.
pub struct EventLog {
    keypair: Keypair,
    origin: Vec<u8>,
    events: Tree<OrderEvent>,
    meta: Tree<u64>,
    /// Arrival number (u64 big-endian) → the event's signed frame.
    frames: Tree<StoredFrame>,
    /// Drawn when the database is new; a peer's cursor into another log is not used.
    log_id: u64,
    /// The last arrival number; taken under the lock, with the event and its frame
    /// stored in one transaction, so arrivals are stored in their order.
    arrival: Mutex<u64>,
    /// Arrivals up to this one are on disk (flushed): only they are shown to peers,
    /// so a crash cannot lose an arrival a peer has read past and number another
    /// event with it.
    durable: std::sync::atomic::AtomicU64,
    /// Whether an unreadable stored frame was reported (once).
    unreadable_logged: std::sync::atomic::AtomicBool,
    /// Our last sequence number; taken and stored under the lock, so two emits can
    /// never store them out of order.
    seq: Mutex<u64>,
    /// Our membership certificate, carried by each event we sign (enrolled networks).
    certificate: Mutex<Option<Vec<u8>>>,
}

/// How far back a role looks, on start, for events its records imply but that never
/// went out (a crash between storing a change and emitting its event).
pub const RESEND_WINDOW_MS: i64 = 31 * 24 * 3600 * 1000;

/// Two events of the same kind: the same variant (a tracking event's stage counts).
fn same_kind(a: &EventKind, b: &EventKind) -> bool {
    match (a, b) {
        (EventKind::Tracking { stage: x, .. }, EventKind::Tracking { stage: y, .. }) => x == y,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

impl EventLog {
    pub fn open(db: &Db, keypair: Keypair) -> Result<EventLog, StoreError> {
        let events = db.tree("events")?;
        let meta: Tree<u64> = db.tree("event_meta")?;
        let frames: Tree<StoredFrame> = db.tree("event_frames")?;
        let seq = meta.get(b"seq")?.unwrap_or(0);
        let log_id = match meta.get(b"log_id")? {
            Some(id) => id,
            None => {
                // Never 0: a peer that knows no log asks about log 0.
                let id = rand::random::<u64>().max(1);
                meta.insert(b"log_id", &id)?;
                id
            }
        };
        let arrival = match frames.raw().last()? {
            Some((key, _)) => arrival_of(&key),
            None => 0,
        };
        Ok(EventLog {
            origin: PeerId::from(keypair.public()).to_bytes(),
            keypair,
            events,
            meta,
            frames,
            log_id,
            arrival: Mutex::new(arrival),
            // What was there at open is on disk.
            durable: std::sync::atomic::AtomicU64::new(arrival),
            unreadable_logged: Default::default(),
            seq: Mutex::new(seq),
            certificate: Mutex::new(None),
        })
    }

    /// The certificate our events carry from now on.
    pub fn set_certificate(&self, certificate: Vec<u8>) {
        *self.certificate.lock().unwrap_or_else(|e| e.into_inner()) = Some(certificate);
    }

    /// Records, signs and gossips a new event of ours. The event (and its number) is
    /// on disk before it goes out: a crash after gossiping it can neither lose it nor
    /// give its number to another event. Gossip failure (no peers yet) is logged, not
    /// fatal: peers ask for what they missed (`sync`).
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
        let mut signed = sign_event(&self.keypair, &event)?;
        signed.certificate = self
            .certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let frame = encode_frame(&signed, proto::EVENT_MAX_BYTES)?;
        self.record_signed(&event, &frame)?;
        // An I/O error stops the node in `StoreError::from`.
        self.frames
            .raw()
            .flush_async()
            .await
            .map_err(crate::store::StoreError::from)?;
        // With no peer to gossip to now, the event waits in the log: peers ask for
        // what they missed when they connect (`sync`).
        if let Err(e) = client.publish_event(frame).await {
            tracing::debug!(%order_id, "event not gossiped now: {e}");
        }
        Ok(())
    }

    /// Whether we emitted an event of this kind (its variant, whatever its details)
    /// for the order.
    pub fn emitted(&self, order_id: OrderId, kind: &EventKind) -> Result<bool, EventError> {
        Ok(self
            .events_for(order_id)?
            .iter()
            .any(|e| e.origin == self.origin && same_kind(&e.kind, kind)))
    }

    /// Whether this node has the event (same order, origin and number) already.
    pub fn has(&self, event: &OrderEvent) -> bool {
        matches!(self.events.contains(event_key(event)), Ok(true))
    }

    /// Keeps an event if it is new; returns whether it was. Without its signed frame
    /// the event cannot be passed on to a peer that asks for it later: nodes record
    /// with [`EventLog::record_signed`].
    pub fn record(&self, event: &OrderEvent) -> Result<bool, EventError> {
        Ok(self.events.insert_new(event_key(event), event)?)
    }

    /// Keeps an event with the signed frame it came as, under the next arrival
    /// number, in one transaction; returns whether it was new.
    pub fn record_signed(&self, event: &OrderEvent, frame: &[u8]) -> Result<bool, EventError> {
        use sled::transaction::ConflictableTransactionError as Conflict;
        use sled::Transactional;
        let key = event_key(event);
        let value = self.events.encode(event)?;
        let mut last = self.arrival.lock().unwrap_or_else(|e| e.into_inner());
        let next = *last + 1;
        let stored = self.frames.encode(&StoredFrame {
            order_id: event.order_id,
            frame: frame.to_vec(),
        })?;
        let new = (self.events.raw(), self.frames.raw())
            .transaction(|(events, frames)| {
                if events.get(&key)?.is_some() {
                    return Ok(false);
                }
                events.insert(key.as_slice(), value.as_slice())?;
                frames.insert(&next.to_be_bytes(), stored.as_slice())?;
                Ok::<bool, Conflict<()>>(true)
            })
            .map_err(crate::store::transaction_error)?;
        if new {
            *last = next;
        }
        Ok(new)
    }

    /// Names this log's arrival numbering (see [`SyncRequest`](printmesh_protocol::messages::SyncRequest)).
    pub fn log_id(&self) -> u64 {
        self.log_id
    }

    /// The last arrival number that is on disk, flushing first if there are newer
    /// ones: what peers may be shown.
    pub fn durable_arrival(&self) -> Result<u64, EventError> {
        use std::sync::atomic::Ordering;
        let last = *self.arrival.lock().unwrap_or_else(|e| e.into_inner());
        if last > self.durable.load(Ordering::Acquire) {
            // Every arrival up to `last` is stored (in memory) by now.
            self.frames
                .raw()
                .flush()
                .map_err(crate::store::StoreError::from)?;
            self.durable.fetch_max(last, Ordering::AcqRel);
        }
        Ok(self.durable.load(Ordering::Acquire))
    }

    /// The frames stored after arrival `after` up to `until` that `sees` lets
    /// through, oldest first: at most `max_events` of them in `max_bytes`, looking
    /// through at most `max_scan` stored events. A stored frame that cannot be read
    /// is passed over (and reported once).
    #[allow(clippy::too_many_arguments)]
    pub fn page(
        &self,
        after: u64,
        until: u64,
        max_events: usize,
        max_bytes: usize,
        max_scan: usize,
        mut sees: impl FnMut(OrderId, &[u8]) -> bool,
    ) -> Result<Page, EventError> {
        let mut page = Page {
            next: after,
            ..Page::default()
        };
        let mut bytes = 0usize;
        if after >= until {
            return Ok(page);
        }
        let range = after.saturating_add(1).to_be_bytes()..=until.to_be_bytes();
        for (scanned, entry) in self.frames.raw().range(range).enumerate() {
            let (key, value) = entry.map_err(crate::store::StoreError::from)?;
            if scanned >= max_scan || page.frames.len() >= max_events {
                page.more = true;
                break;
            }
            let stored = match self.frames.decode(&value) {
                Ok(stored) => stored,
                Err(e) => {
                    use std::sync::atomic::Ordering;
                    if !self.unreadable_logged.swap(true, Ordering::Relaxed) {
                        tracing::error!("a stored event frame cannot be read (passed over): {e}");
                    }
                    page.next = arrival_of(&key);
                    continue;
                }
            };
            if sees(stored.order_id, &stored.frame) {
                // Room for the frame and its length prefix.
                let needs = stored.frame.len() + 10;
                if bytes + needs > max_bytes {
                    page.more = true;
                    break;
                }
                bytes += needs;
                page.frames.push(stored.frame);
            }
            page.next = arrival_of(&key);
        }
        Ok(page)
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

/// An arrival number from its key (big-endian u64; 0 for a key that is not one).
fn arrival_of(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(0)
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
            Err(SignatureError::BadSignature)
        ));

        // Signed by one key, claiming another origin.
        let other = Keypair::generate_ed25519();
        let signed = sign_event(&key, &event(&other)).unwrap();
        let frame = encode_frame(&signed, proto::EVENT_MAX_BYTES).unwrap();
        assert!(matches!(
            verify_event(&frame),
            Err(SignatureError::OriginMismatch)
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

    /// An event of `key`'s numbered `seq` for `order`, and its signed frame.
    fn signed(key: &Keypair, seq: u64, order: OrderId) -> (OrderEvent, Vec<u8>) {
        let event = OrderEvent {
            seq,
            order_id: order,
            ..event(key)
        };
        let frame =
            encode_frame(&sign_event(key, &event).unwrap(), proto::EVENT_MAX_BYTES).unwrap();
        (event, frame)
    }

    #[test]
    fn signed_events_are_numbered_as_they_arrive_and_paged_for_peers() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::generate_ed25519();
        let (a, b) = (OrderId::from_parts(1, 1), OrderId::from_parts(2, 2));
        let log_id = {
            let db = Db::open(dir.path()).unwrap();
            let log = EventLog::open(&db, key.clone()).unwrap();
            for seq in 1..=5 {
                let (e, f) = signed(&key, seq, if seq % 2 == 0 { b } else { a });
                assert!(log.record_signed(&e, &f).unwrap());
                // The same event again is no new arrival.
                assert!(!log.record_signed(&e, &f).unwrap());
            }
            let all = log
                .page(0, u64::MAX, 100, 1 << 20, 100, |_, _| true)
                .unwrap();
            assert_eq!((all.frames.len(), all.next, all.more), (5, 5, false));
            // Each frame is the event as signed.
            assert_eq!(verify_event(&all.frames[1]).unwrap(), signed(&key, 2, b).0);
            // Pages: by count, by scan (a viewer that sees only order b), by bytes.
            let two = log.page(0, u64::MAX, 2, 1 << 20, 100, |_, _| true).unwrap();
            assert_eq!((two.frames.len(), two.next, two.more), (2, 2, true));
            let rest = log
                .page(two.next, u64::MAX, 100, 1 << 20, 100, |_, _| true)
                .unwrap();
            assert_eq!((rest.frames.len(), rest.next, rest.more), (3, 5, false));
            let only_b = log
                .page(0, u64::MAX, 100, 1 << 20, 3, |o, _| o == b)
                .unwrap();
            assert_eq!(
                (only_b.frames.len(), only_b.next, only_b.more),
                (1, 3, true)
            );
            let tight = log
                .page(0, u64::MAX, 100, all.frames[0].len() + 10, 100, |_, _| true)
                .unwrap();
            assert_eq!((tight.frames.len(), tight.next, tight.more), (1, 1, true));
            // Up to a point (what is on disk): the rest waits.
            let durable = log.durable_arrival().unwrap();
            assert_eq!(durable, 5);
            let upto = log.page(0, 3, 100, 1 << 20, 100, |_, _| true).unwrap();
            assert_eq!((upto.frames.len(), upto.next, upto.more), (3, 3, false));
            let none = log
                .page(5, u64::MAX, 100, 1 << 20, 100, |_, _| true)
                .unwrap();
            assert_eq!(
                none,
                Page {
                    frames: vec![],
                    next: 5,
                    more: false
                }
            );
            log.log_id()
        };
        // Reopened: the same log, numbering on from where it was.
        let db = Db::open(dir.path()).unwrap();
        let log = EventLog::open(&db, key.clone()).unwrap();
        assert_eq!(log.log_id(), log_id);
        let (e, f) = signed(&key, 6, a);
        assert!(log.record_signed(&e, &f).unwrap());
        let page = log
            .page(5, u64::MAX, 100, 1 << 20, 100, |_, _| true)
            .unwrap();
        assert_eq!((page.frames.len(), page.next), (1, 6));
        // Another database is another log.
        let other = tempfile::tempdir().unwrap();
        let db = Db::open(other.path()).unwrap();
        assert_ne!(EventLog::open(&db, key).unwrap().log_id(), log_id);
    }
}
