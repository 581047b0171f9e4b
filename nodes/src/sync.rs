//! Anti-entropy: a node asks its peers for the order events it missed.
//!
//! Gossip reaches the peers connected at the moment an event is published; a node
//! that was down, a store whose uplink was cut, an event emitted when no peer was
//! there, a message gossipsub lost — each leaves a hole that gossip never fills again.
//! So every node numbers the events it stores (its *arrivals*, with their signed
//! frames: [`EventLog::page`]) and every node asks each peer, when it connects and
//! then every [`SYNC_INTERVAL`], for the events that peer stored after the point it
//! read up to last time (`/printmesh/sync/1`; the point is kept in sled per peer, so
//! a restart goes on from there). What comes back is judged as gossip is (signature,
//! origin, and in an enrolled network the origin's certificate and role), recorded,
//! and handed to the role as any new event: an intermediary that was down when the
//! lab shipped captures the payment once it is back; a store's counter learns its
//! prints were delivered while its uplink was down.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::PeerId;
use printmesh_protocol::messages::{proto, EventKind, Role, SyncRequest, SyncResponse};
use printmesh_protocol::{OrderId, StoreId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::events::{judge_frame, peek_event, EventLog};
use crate::membership::Gate;
use crate::net::{Client, IncomingEvent, NodeEvent, SyncProto};
use crate::store::Tree;

/// How often a node asks every peer what it missed (and at once when a peer connects).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// How often the task looks for newly connected peers.
const TICK: Duration = Duration::from_secs(1);
/// Between two pages from one peer: at most ten a second, half a kiosk's request
/// budget, so catching up never looks like a flood.
const PAGE_PAUSE: Duration = Duration::from_millis(100);
/// Pages read from one peer in one round; a longer backlog goes on next round.
const MAX_PAGES_PER_ROUND: usize = 64;
/// Peers asked at once.
const MAX_PARALLEL: usize = 8;
/// How long one page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Peers whose cursors are kept; past this the longest unused go.
const MAX_CURSORS: usize = 4096;

/// Where this node has read a peer's log up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCursor {
    pub log: u64,
    pub after: u64,
    /// When it was last moved (ms since the epoch), to forget the longest unused.
    pub at_ms: i64,
}

/// What a peer that asks is shown of this node's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// Every event (services: intermediaries, acquirers, labs, couriers).
    All,
    /// The events of one store's orders (a kiosk: its hello's store, which its
    /// certificate names in an enrolled network).
    Store(StoreId),
    /// Nothing (a kiosk that names no store).
    Nothing,
}

impl Viewer {
    pub fn of(role: Role, store: Option<StoreId>) -> Viewer {
        match (role, store) {
            (Role::Kiosk, Some(store)) => Viewer::Store(store),
            (Role::Kiosk, None) => Viewer::Nothing,
            _ => Viewer::All,
        }
    }
}

/// The answer to a peer's [`SyncRequest`]: a page of this node's log after the point
/// it asks from (from the start if it asks about another log than this one).
pub fn answer(log: &EventLog, request: &SyncRequest, viewer: &Viewer) -> SyncResponse {
    let SyncRequest::Since { log: asked, after } = request;
    let after = if *asked == log.log_id() { *after } else { 0 };
    // A store's order is the store's if its intermediary said so (`Submitted`).
    let mut stores: HashMap<OrderId, bool> = HashMap::new();
    let mut sees = |order: OrderId| match viewer {
        Viewer::All => true,
        Viewer::Nothing => false,
        Viewer::Store(store) => *stores.entry(order).or_insert_with(|| {
            log.events_for(order).is_ok_and(|events| {
                events
                    .iter()
                    .any(|e| matches!(&e.kind, EventKind::Submitted { store: s, .. } if s == store))
            })
        }),
    };
    match log.page(
        after,
        proto::SYNC_MAX_EVENTS,
        // Room for the response's own fields.
        proto::SYNC_MAX_RESPONSE_BYTES - 64,
        proto::SYNC_MAX_SCAN,
        &mut sees,
    ) {
        Ok(page) => SyncResponse::Events {
            log: log.log_id(),
            frames: page.frames,
            next: page.next,
            more: page.more,
        },
        Err(e) => {
            tracing::error!("cannot read the event log for a peer: {e}");
            SyncResponse::Unavailable {
                reason: "this node cannot read its event log now".into(),
            }
        }
    }
}

/// The node's side of asking: runs until the swarm loop stops.
pub struct Syncer {
    client: Client,
    log: Arc<EventLog>,
    /// Into the role's queue (`node::serve` records what comes in).
    events: mpsc::Sender<NodeEvent>,
    cursors: Tree<SyncCursor>,
    gate: Option<Gate>,
    /// What was logged, once per peer and reason (bounded).
    logged: std::sync::Mutex<HashSet<String>>,
}

/// Most distinct (peer, reason) lines the syncer remembers having logged.
const MAX_LOGGED: usize = 1024;

/// What one round with one peer brought.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Events new to this node, recorded and handed to the role.
    pub taken: usize,
    /// Frames that did not pass (bad signature, an origin that may not emit them…).
    pub rejected: usize,
}

impl Syncer {
    /// `events` is the role's queue (`EventLoop::event_sender`), `cursors` the tree
    /// where this node keeps how far it has read each peer's log, `gate` what it
    /// judges events against in an enrolled network (the swarm loop's own).
    pub fn new(
        client: Client,
        log: Arc<EventLog>,
        events: mpsc::Sender<NodeEvent>,
        cursors: Tree<SyncCursor>,
        gate: Option<Gate>,
    ) -> Syncer {
        Syncer {
            client,
            log,
            events,
            cursors,
            gate,
            logged: Default::default(),
        }
    }

    /// Whether `line` is news (not logged before); bounded.
    fn first_time(&self, line: String) -> bool {
        let mut seen = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        seen.len() < MAX_LOGGED && seen.insert(line)
    }

    /// Asks each peer when it connects, and every peer every [`SYNC_INTERVAL`].
    pub async fn run(self) {
        let this = Arc::new(self);
        let mut asked: HashSet<PeerId> = HashSet::new();
        let mut last_round = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if this.client.is_closed() {
                break;
            }
            let peers: HashSet<PeerId> = this
                .client
                .peers()
                .await
                .into_iter()
                .map(|p| p.peer)
                .collect();
            asked.retain(|p| peers.contains(p));
            let everyone = last_round.elapsed() >= SYNC_INTERVAL;
            if everyone {
                last_round = Instant::now();
            }
            let due: Vec<PeerId> = peers
                .iter()
                .filter(|p| everyone || !asked.contains(p))
                .copied()
                .collect();
            futures::stream::iter(due.iter().copied())
                .for_each_concurrent(MAX_PARALLEL, |peer| {
                    let this = this.clone();
                    async move {
                        match this.round(peer).await {
                            Ok(round) if round.taken > 0 => {
                                tracing::info!(%peer, taken = round.taken, "caught up on missed events");
                            }
                            Ok(_) => {}
                            Err(e) => {
                                if this.first_time(format!("{peer} {e}")) {
                                    tracing::debug!(%peer, "sync: {e}");
                                }
                            }
                        }
                    }
                })
                .await;
            asked.extend(due);
        }
    }

    /// Reads a peer's log from where this node left it, page by page (at most
    /// [`MAX_PAGES_PER_ROUND`]), judging and recording what is new.
    pub async fn round(&self, peer: PeerId) -> Result<Round, String> {
        let key = peer.to_bytes();
        let mut cursor = self
            .cursors
            .get(&key)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let mut round = Round::default();
        for page in 0..MAX_PAGES_PER_ROUND {
            if page > 0 {
                tokio::time::sleep(PAGE_PAUSE).await;
            }
            let request = SyncRequest::Since {
                log: cursor.log,
                after: cursor.after,
            };
            let response = tokio::time::timeout(
                PAGE_TIMEOUT,
                self.client.request::<SyncProto>(peer, request),
            )
            .await
            .map_err(|_| "no answer in time".to_string())?
            .map_err(|e| e.to_string())?;
            let (log, frames, next, more) = match response {
                SyncResponse::Events {
                    log,
                    frames,
                    next,
                    more,
                } => (log, frames, next, more),
                SyncResponse::Unavailable { reason } => return Err(reason),
            };
            self.take(peer, frames, &mut round).await?;
            cursor = SyncCursor {
                log,
                after: next,
                at_ms: crate::node::now_ms(),
            };
            self.keep_cursor(&key, &cursor)?;
            if !more {
                break;
            }
        }
        Ok(round)
    }

    /// Judges a page's frames off the runtime (signatures), hands the new ones to the
    /// node's queue and waits until each is recorded.
    async fn take(
        &self,
        peer: PeerId,
        frames: Vec<Vec<u8>>,
        round: &mut Round,
    ) -> Result<(), String> {
        let log = self.log.clone();
        let gate = self.gate.clone();
        let judged = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut rejected = Vec::new();
            for frame in frames.into_iter().take(proto::SYNC_MAX_EVENTS) {
                // Most of a page is usually known already (it came by gossip).
                if peek_event(&frame).is_some_and(|e| log.has(&e)) {
                    continue;
                }
                match judge_frame(gate.as_ref(), &frame) {
                    Ok(event) => out.push((event, frame)),
                    Err(e) => rejected.push(e),
                }
            }
            (out, rejected)
        })
        .await
        .map_err(|e| e.to_string())?;
        let (accepted, rejected) = judged;
        for reason in &rejected {
            // Not a strike: an honest peer may hold an event whose origin has been
            // revoked since; the page is passed over either way, and this node asks,
            // so a hostile peer cannot make it judge more than it asks for.
            if self.first_time(format!("{peer} refused {reason}")) {
                tracing::warn!(%peer, "a synced event refused: {reason}");
            }
        }
        round.rejected += rejected.len();
        let mut recorded = Vec::with_capacity(accepted.len());
        for (event, frame) in accepted {
            let (done, recorded_rx) = oneshot::channel();
            let incoming = IncomingEvent {
                event,
                frame,
                done: Some(done),
            };
            self.events
                .send(NodeEvent::Incoming(incoming))
                .await
                .map_err(|_| "the node is shutting down".to_string())?;
            recorded.push(recorded_rx);
        }
        for r in recorded {
            // A node without a role (a test's) drops the event: nothing to wait for.
            if r.await == Ok(true) {
                round.taken += 1;
            }
        }
        Ok(())
    }

    /// Stores a peer's cursor; past [`MAX_CURSORS`] peers the longest unused is
    /// forgotten (it reads that peer from the start if it ever comes back).
    fn keep_cursor(&self, key: &[u8], cursor: &SyncCursor) -> Result<(), String> {
        let known = self.cursors.contains(key).map_err(|e| e.to_string())?;
        if !known && self.cursors.len() >= MAX_CURSORS {
            let oldest = self
                .cursors
                .entries()
                .filter_map(Result::ok)
                .min_by_key(|(_, c)| c.at_ms)
                .map(|(k, _)| k);
            if let Some(k) = oldest {
                self.cursors.remove(k).map_err(|e| e.to_string())?;
            }
        }
        self.cursors.insert(key, cursor).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::sign_event;
    use crate::store::Db;
    use libp2p::identity::Keypair;
    use printmesh_protocol::codec::encode_frame;
    use printmesh_protocol::messages::OrderEvent;
    use printmesh_protocol::money::{Currency, Money};

    fn record(log: &EventLog, key: &Keypair, seq: u64, order: OrderId, kind: EventKind) {
        let event = OrderEvent {
            origin: key.public().to_peer_id().to_bytes(),
            seq,
            order_id: order,
            at_ms: 1,
            kind,
        };
        let frame =
            encode_frame(&sign_event(key, &event).unwrap(), proto::EVENT_MAX_BYTES).unwrap();
        assert!(log.record_signed(&event, &frame).unwrap());
    }

    fn submitted(store: &str) -> EventKind {
        EventKind::Submitted {
            store: store.parse().unwrap(),
            total: Money::new(90, Currency::Jpy),
        }
    }

    fn frames(r: &SyncResponse) -> Vec<OrderEvent> {
        match r {
            SyncResponse::Events { frames, .. } => frames
                .iter()
                .map(|f| crate::events::verify_event(f).unwrap())
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_kiosk_is_shown_its_own_stores_orders_and_services_everything() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let key = Keypair::generate_ed25519();
        let log = EventLog::open(&db, key.clone()).unwrap();
        let (ours, theirs, unknown) = (
            OrderId::from_parts(1, 1),
            OrderId::from_parts(2, 2),
            OrderId::from_parts(3, 3),
        );
        record(&log, &key, 1, ours, submitted("store-a"));
        record(&log, &key, 2, theirs, submitted("store-b"));
        record(&log, &key, 3, ours, EventKind::Delivered);
        record(&log, &key, 4, theirs, EventKind::Delivered);
        record(&log, &key, 5, unknown, EventKind::Printed);
        let since = |after| SyncRequest::Since {
            log: log.log_id(),
            after,
        };
        let kiosk = Viewer::of(Role::Kiosk, Some("store-a".parse().unwrap()));
        let seen = frames(&answer(&log, &since(0), &kiosk));
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|e| e.order_id == ours));
        assert_eq!(frames(&answer(&log, &since(0), &Viewer::All)).len(), 5);
        assert!(frames(&answer(&log, &since(0), &Viewer::of(Role::Kiosk, None))).is_empty());
        // From a point on; a cursor into another log starts from the beginning.
        assert_eq!(frames(&answer(&log, &since(3), &Viewer::All)).len(), 2);
        let elsewhere = SyncRequest::Since { log: 77, after: 3 };
        match answer(&log, &elsewhere, &Viewer::All) {
            SyncResponse::Events {
                log: id,
                frames,
                next,
                more,
            } => {
                assert_eq!((id, frames.len(), next, more), (log.log_id(), 5, 5, false));
            }
            other => panic!("{other:?}"),
        }
    }
}
