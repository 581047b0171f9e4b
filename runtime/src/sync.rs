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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use printmesh_protocol::messages::{proto, EventKind, OrderEvent, Role, SyncRequest, SyncResponse};
use printmesh_protocol::{OrderId, StoreId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::config::LimitsConfig;
use crate::events::{judge_frame, peek_event, EventLog};
use crate::membership::Gate;
use crate::net::{bounded_entry, Bucket, Client, IncomingEvent, NodeEvent, Recorded, SyncProto};
use crate::store::Tree;

/// How often a node asks every peer what it missed (and at once when a peer connects).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// A round that failed (the peer had not taken our hello yet, was busy…) is tried
/// again this much later.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// How often the task looks for newly connected peers.
const TICK: Duration = Duration::from_millis(500);
/// Between two pages from one peer: at most ten a second, half its sync budget at
/// the peer (`net::admission::SYNC_BUDGET`).
const PAGE_PAUSE: Duration = Duration::from_millis(100);
/// Pages read from one peer in one round; a longer backlog goes on next round.
const MAX_PAGES_PER_ROUND: usize = 64;
/// The longest one round with one peer may take (the rest goes on next round).
const ROUND_DEADLINE: Duration = Duration::from_secs(120);
/// Peers asked at once.
const MAX_PARALLEL: usize = 8;
/// How long one page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Synced events in the role's queue at once (it has `net::CHANNEL_CAPACITY` slots,
/// which live requests and gossip need too).
const MAX_IN_FLIGHT: usize = 32;
/// How long to wait for an origin's budget to refill.
const BUDGET_WAIT: Duration = Duration::from_millis(50);
/// Peers whose cursors are kept; past this the longest unused go.
const MAX_CURSORS: usize = 4096;
/// Most distinct lines the syncer remembers having logged (then it forgets them all).
const MAX_LOGGED: usize = 1024;

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
        match (role.belongs_to_store(), store) {
            (true, Some(store)) => Viewer::Store(store),
            (true, None) => Viewer::Nothing,
            (false, _) => Viewer::All,
        }
    }
}

/// The answer to a peer's [`SyncRequest`]: a page of this node's log after the point
/// it asks from, up to what is on disk. A cursor into another log than this one, or
/// past this log's end (arrivals this node lost, or never had), reads from the start.
pub fn answer(log: &EventLog, request: &SyncRequest, viewer: &Viewer) -> SyncResponse {
    let SyncRequest::Since { log: asked, after } = request;
    let until = match log.durable_arrival() {
        Ok(until) => until,
        Err(e) => return unreadable(e),
    };
    let after = if *asked == log.log_id() && *after <= until {
        *after
    } else {
        0
    };
    // A store's order is the store's if its intermediary said so (`Submitted`).
    let mut stores: HashMap<OrderId, bool> = HashMap::new();
    let mut sees = |order: OrderId, frame: &[u8]| match viewer {
        Viewer::All => true,
        Viewer::Nothing => false,
        // A refund is every kiosk's business: it revokes download licences any kiosk
        // may be shown.
        Viewer::Store(_)
            if crate::events::peek_event(frame).is_some_and(|e| e.kind == EventKind::Refunded) =>
        {
            true
        }
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
        until,
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
        Err(e) => unreadable(e),
    }
}

fn unreadable(e: crate::events::EventError) -> SyncResponse {
    tracing::error!("cannot read the event log for a peer: {e}");
    SyncResponse::Unavailable {
        reason: "this node cannot read its event log now".into(),
    }
}

/// The node's side of asking: runs until the swarm loop stops.
pub struct Syncer {
    client: Client,
    log: Arc<EventLog>,
    /// Into the role's queue (`role::serve` records what comes in).
    events: mpsc::Sender<NodeEvent>,
    cursors: Tree<SyncCursor>,
    gate: Option<Gate>,
    limits: LimitsConfig,
    /// Each origin's budget of synced events (the same as for its gossip: a member
    /// that made up a flood of valid events gets no further by sync).
    budgets: Mutex<HashMap<Vec<u8>, Bucket>>,
    /// Synced events in the role's queue ([`MAX_IN_FLIGHT`]).
    in_flight: Arc<Semaphore>,
    /// What was logged, once per peer and reason (bounded).
    logged: Mutex<HashSet<String>>,
}

/// What one round with one peer brought.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Events new to this node, recorded and handed to the role.
    pub taken: usize,
    /// Frames that did not pass (bad signature, an origin that may not emit them…).
    pub rejected: usize,
    /// Whether the peer has more than the round read (the next one comes soon).
    pub more: bool,
}

/// When a peer is asked next, and whether a round with it is under way.
#[derive(Clone, Copy)]
struct Due {
    at: Instant,
    running: bool,
}

impl Syncer {
    /// `events` is the role's queue (`EventLoop::event_sender`), `cursors` the tree
    /// where this node keeps how far it has read each peer's log, `gate` what it
    /// judges events against in an enrolled network (the swarm loop's own), `limits`
    /// the node's budgets.
    pub fn new(
        client: Client,
        log: Arc<EventLog>,
        events: mpsc::Sender<NodeEvent>,
        cursors: Tree<SyncCursor>,
        gate: Option<Gate>,
        limits: LimitsConfig,
    ) -> Syncer {
        Syncer {
            client,
            log,
            events,
            cursors,
            gate,
            limits,
            budgets: Default::default(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            logged: Default::default(),
        }
    }

    /// Whether `line` is news (not logged before); bounded.
    fn first_time(&self, line: String) -> bool {
        let mut seen = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_LOGGED {
            seen.clear();
        }
        seen.insert(line)
    }

    /// Asks each peer when it connects and every [`SYNC_INTERVAL`] after, each in a
    /// round of its own (at most [`MAX_PARALLEL`] at once), so a slow peer delays
    /// nobody else.
    pub async fn run(self) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(MAX_PARALLEL));
        let dues: Arc<Mutex<HashMap<PeerId, Due>>> = Default::default();
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
            let now = Instant::now();
            let start: Vec<PeerId> = {
                let mut dues = dues.lock().unwrap_or_else(|e| e.into_inner());
                // A peer that left is asked at once when it is back.
                dues.retain(|p, d| d.running || peers.contains(p));
                peers
                    .iter()
                    .filter(|p| {
                        let due = dues.entry(**p).or_insert(Due {
                            at: now,
                            running: false,
                        });
                        let go = !due.running && due.at <= now;
                        if go {
                            due.running = true;
                        }
                        go
                    })
                    .copied()
                    .collect()
            };
            for peer in start {
                let (this, slots, dues) = (this.clone(), slots.clone(), dues.clone());
                tokio::spawn(async move {
                    let outcome = match slots.acquire_owned().await {
                        Ok(_slot) => {
                            // In a task of its own: whatever becomes of the round, the
                            // peer is due again below.
                            let mut round = tokio::spawn({
                                let this = this.clone();
                                async move { this.round(peer).await }
                            });
                            match tokio::time::timeout(ROUND_DEADLINE, &mut round).await {
                                Ok(Ok(outcome)) => outcome,
                                Ok(Err(e)) => Err(format!("the round failed: {e}")),
                                Err(_) => {
                                    // Dropping the handle would leave it running beside
                                    // the next round with this peer, and out of its slot.
                                    round.abort();
                                    Err("the round took too long".into())
                                }
                            }
                        }
                        Err(_) => Err("shutting down".into()),
                    };
                    let next = match outcome {
                        Ok(round) => {
                            if round.taken > 0 {
                                tracing::info!(%peer, taken = round.taken, "caught up on missed events");
                            }
                            if round.more {
                                RETRY_AFTER
                            } else {
                                SYNC_INTERVAL
                            }
                        }
                        Err(e) => {
                            let e: String = e.chars().take(160).collect();
                            if this.first_time(format!("{peer} {e}")) {
                                tracing::debug!(%peer, "sync: {e}");
                            }
                            RETRY_AFTER
                        }
                    };
                    let mut dues = dues.lock().unwrap_or_else(|e| e.into_inner());
                    dues.insert(
                        peer,
                        Due {
                            at: Instant::now() + next,
                            running: false,
                        },
                    );
                });
            }
        }
    }

    /// Reads a peer's log from where this node left it, page by page (at most
    /// [`MAX_PAGES_PER_ROUND`]), judging and recording what is new. The cursor moves
    /// past a page only once every event of it is recorded.
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
            round.more = more;
            if !more {
                break;
            }
        }
        Ok(round)
    }

    /// Judges a page's frames off the runtime (signatures), hands the new ones to the
    /// node's queue within their origins' budgets, a few at a time, and waits until
    /// each is recorded.
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
            let reason: String = reason.chars().take(160).collect();
            if self.first_time(format!("{peer} refused {reason}")) {
                tracing::warn!(%peer, "a synced event refused: {reason}");
            }
        }
        round.rejected += rejected.len();
        let mut recorded = Vec::with_capacity(accepted.len());
        for (event, frame) in accepted {
            // Another round (another peer with the same backlog) may have brought it
            // meanwhile: no budget spent on it twice.
            if self.log.has(&event) {
                continue;
            }
            self.within_budget(&event).await;
            let permit = self
                .in_flight
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| "shutting down".to_string())?;
            let (done, outcome) = oneshot::channel();
            let incoming = IncomingEvent {
                event,
                frame,
                done: Some(done),
            };
            self.events
                .send(NodeEvent::Incoming(incoming))
                .await
                .map_err(|_| "the node is shutting down".to_string())?;
            recorded.push(tokio::spawn(async move {
                let outcome = outcome.await;
                drop(permit);
                // A node without a role (a test's) drops the event: nothing to wait for.
                outcome.unwrap_or(Recorded::Known)
            }));
        }
        let mut failed = false;
        for r in recorded {
            match r.await {
                Ok(Recorded::New) => round.taken += 1,
                Ok(Recorded::Known) => {}
                Ok(Recorded::Failed) | Err(_) => failed = true,
            }
        }
        if failed {
            return Err("an event could not be recorded: the page is read again".into());
        }
        Ok(())
    }

    /// Waits until the event's origin is within its budget of events (that of the
    /// role that emits the kind, as for gossip).
    async fn within_budget(&self, event: &OrderEvent) {
        let budget = self.limits.events(event.kind.emitted_by());
        loop {
            let allowed = {
                let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
                bounded_entry(
                    &mut budgets,
                    event.origin.clone(),
                    |_, b| b.idle(),
                    Bucket::new,
                )
                .take(budget)
            };
            if allowed {
                return;
            }
            tokio::time::sleep(BUDGET_WAIT).await;
        }
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
        // Past the log's end (arrivals this node lost): from the start as well.
        let past = SyncRequest::Since {
            log: log.log_id(),
            after: 99,
        };
        assert_eq!(frames(&answer(&log, &past, &Viewer::All)).len(), 5);
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
