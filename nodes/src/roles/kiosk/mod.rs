//! The kiosk (patent terminal 101, store 401), headless first version: an order API
//! that writes every order to the sled outbox before anything else, then uploads its
//! images to an intermediary, submits it, and retries until a final answer arrives.
//! The customer screens arrive with the kiosk issue and call this same API.
//!
//! Its customer-facing side lives here too: devices (card reader, chip reader, PIN
//! pad, receipt printer) and, on top of them, the screens S501–S510. Hardware sits
//! behind small traits with fakes that read the same bytes the real devices send: a
//! keyboard-wedge reader types its tracks into the key stream, a chip reader reports
//! the EMV track-2 equivalent, a receipt printer takes ESC/POS.

pub mod app;
pub mod cardwrite;
pub mod chip;
pub mod config;
pub mod downloads;
pub mod i18n;
pub mod pinpad;
pub mod reader;
pub mod receipt;
pub mod run;
pub mod thumbs;
pub mod ui;

/// Card swipes (parsed in `printmesh-formats`).
pub use printmesh_formats::swipe;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use printmesh_protocol::card::{CardBrand, CardData};
use printmesh_protocol::codec::encode_frame;
use printmesh_protocol::messages::{
    proto, EventKind, OrderLine, OrderRequest, OrderResponse, PaymentMethod, Role, SealedOrder,
};
use printmesh_protocol::money::Money;
use printmesh_protocol::pinblock::Pin;
use printmesh_protocol::pricing::{PriceList, PrintSize};
use printmesh_protocol::seal::{seal_card, Binding, EntryMode, SealKey};
use printmesh_protocol::{OrderId, StoreId};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use thiserror::Error;
use tokio::sync::Notify;

use crate::blobs::{send_blob, BlobError};
use crate::config::{load_prices, KioskConfig};
use crate::media::{scan, MediaError};
use crate::net::OrderProto;
use crate::node::{now_ms, AdminResponse, Node, NodeError, RoleCommand};
use crate::store::{StoreError, Tree};
use printmesh_runtime::role::{RoleEvent, Stopping};

/// Longest pause between two delivery attempts of one order.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The outbox's pace (per second, burst) of order attempts, so a backlog stays
/// within the intermediary's request budget for a kiosk (20 a second, burst 100 by
/// default: an attempt is one or two requests).
const OUTBOX_PACE: (f64, f64) = (8.0, 20.0);

/// How often the outbox is looked at when nothing wakes it.
pub const OUTBOX_TICK: Duration = Duration::from_millis(500);
/// Rounds of "missing blobs → upload → submit" within one attempt.
pub const MAX_UPLOAD_ROUNDS: usize = 3;

#[derive(Debug, Error)]
pub enum KioskError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("{0}")]
    Order(String),
    #[error("no answer for order {0} yet; it stays in the outbox and will be sent when the network allows")]
    NoAnswerYet(OrderId),
}

/// How far the delivery of one order has come (for the kiosk's progress bar).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadProgress {
    pub photos: usize,
    pub photos_sent: usize,
    pub bytes: u64,
    pub bytes_sent: u64,
    /// Every photo is at the intermediary and the order has been submitted.
    pub submitted: bool,
}

/// One photo the customer picked.
#[derive(Clone, Debug)]
pub struct DraftLine {
    pub path: PathBuf,
    pub file_name: String,
    pub size: PrintSize,
    pub quantity: u16,
    /// Crop to fill, or the whole photo with a white border.
    pub fit: printmesh_protocol::pricing::Fit,
}

/// An order as the customer composed it at the kiosk.
#[derive(Debug)]
pub struct Draft {
    /// Given only when the same order is submitted again.
    pub order_id: Option<OrderId>,
    pub lines: Vec<DraftLine>,
    pub method: PaymentMethod,
    pub card: CardData,
    /// How the card was read.
    pub entry: EntryMode,
    /// The PIN the cardholder entered: sealed with the card at once, then wiped.
    pub pin: Option<Pin>,
}

/// A finished order as the kiosk keeps it: what the receipt and the counter need. No
/// card data beyond the last four digits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KioskOrder {
    pub order_id: OrderId,
    pub store: StoreId,
    pub placed_at_ms: i64,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub method: PaymentMethod,
    pub card_last4: String,
    pub card_brand: CardBrand,
    pub answer: OrderResponse,
    pub answered_at_ms: i64,
}

impl KioskOrder {
    /// The record of a submitted order with its answer (now).
    fn answered(submit: &SealedOrder, answer: OrderResponse) -> KioskOrder {
        KioskOrder {
            order_id: submit.order_id,
            store: submit.store.clone(),
            placed_at_ms: submit.placed_at_ms,
            lines: submit.lines.clone(),
            total: submit.total,
            method: submit.method,
            card_last4: submit.card.summary.last4.clone(),
            card_brand: submit.card.summary.brand,
            answer,
            answered_at_ms: now_ms(),
        }
    }
}

pub struct Kiosk {
    node: Node,
    config: KioskConfig,
    /// The intermediary (by name) that gave each order's final answer, while this
    /// process runs (for the demo's summary and the log).
    served_by: Mutex<HashMap<OrderId, String>>,
    /// The acquirer's sealing key, once read.
    acquirer_key: Mutex<Option<SealKey>>,
    prices: PriceList,
    /// Order id → the exact request to send, until a final answer arrives.
    outbox: Tree<OrderRequest>,
    orders: Tree<KioskOrder>,
    wake: Notify,
    answered: Notify,
    in_flight: Mutex<HashSet<OrderId>>,
    backoff: Mutex<HashMap<OrderId, (u32, tokio::time::Instant)>>,
    progress: Mutex<HashMap<OrderId, UploadProgress>>,
    /// The sealed requests that carry a PIN, for orders waiting for their answer: in
    /// memory only (see [`Kiosk::place_order`]).
    pins: Mutex<HashMap<OrderId, OrderRequest>>,
    /// Orders taken offline under the stand-in rules: order id → (when, amount in
    /// minor units). Their total, while unanswered, is held to the store's limit.
    stand_in: Tree<(i64, i64)>,
    /// Orders whose cancel is on its way: order id → the order as it was sent, put
    /// back in the outbox if the cancel is refused.
    cancelling: Tree<OrderRequest>,
    /// The content companies' catalogues this kiosk sells from, checked: the node's.
    catalogues: Arc<printmesh_runtime::catalogues::Catalogues>,
    /// Downloads' bytes kept here (`<data_dir>/downloads`, within `download_cache_mb`).
    download_cache: Arc<crate::blobs::BlobStore>,
    /// Download purchases (order id → where each stands).
    downloads: Tree<downloads::KioskDownload>,
    /// Purchases with a step left (order id → ()).
    downloads_due: Tree<()>,
    /// Purchases this process is carrying out now.
    active_downloads: Mutex<HashSet<OrderId>>,
}

/// Builds a draft from the memory card in `media_dir`: the photos the camera's DPOF
/// order selected, with its quantities, or the first photo when there is none.
pub fn draft_from_card(
    media_dir: &Path,
    size: PrintSize,
    method: PaymentMethod,
    card: CardData,
) -> Result<Draft, KioskError> {
    let images = scan(media_dir)?;
    let mut lines: Vec<DraftLine> = images
        .iter()
        .filter_map(|i| {
            i.dpof_quantity
                .filter(|q| *q > 0)
                .map(|quantity| DraftLine {
                    path: i.path.clone(),
                    file_name: i.file_name.clone(),
                    size,
                    quantity,
                    fit: Default::default(),
                })
        })
        .collect();
    if lines.is_empty() {
        let first = images.first().ok_or_else(|| {
            KioskError::Order(format!("no photos on the card in {}", media_dir.display()))
        })?;
        lines.push(DraftLine {
            path: first.path.clone(),
            file_name: first.file_name.clone(),
            size,
            quantity: 1,
            fit: Default::default(),
        });
    }
    Ok(Draft {
        order_id: None,
        lines,
        method,
        card,
        entry: EntryMode::Swipe,
        pin: None,
    })
}

impl Kiosk {
    pub fn config(&self) -> &KioskConfig {
        &self.config
    }

    pub fn prices(&self) -> &PriceList {
        &self.prices
    }

    /// Whether this kiosk's PIN pad can take PINs: it knows the acquirer's key to seal
    /// them to.
    pub fn takes_pins(&self) -> bool {
        self.config.acquirer_key_file.is_some()
    }

    /// The acquirer's sealing key, read from `acquirer_key_file` (the acquirer writes
    /// it as `seal.pub` in its data directory) the first time it is needed.
    pub fn acquirer_key(&self) -> Result<SealKey, KioskError> {
        if let Some(k) = self.acquirer_key.lock().ok().and_then(|k| *k) {
            return Ok(k);
        }
        let path = self.config.acquirer_key_file.as_ref().ok_or_else(|| {
            KioskError::Order("this kiosk names no acquirer key (kiosk.acquirer_key_file)".into())
        })?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            KioskError::Order(format!("the acquirer's key {}: {e}", path.display()))
        })?;
        let key = SealKey::from_hex(&text).map_err(|e| {
            KioskError::Order(format!("the acquirer's key {}: {e}", path.display()))
        })?;
        if let Ok(mut k) = self.acquirer_key.lock() {
            *k = Some(key);
        }
        Ok(key)
    }

    /// Takes the customer's order: images into the blob store, the order into the
    /// outbox, flushed to disk, before this returns. Delivery happens in the
    /// background ([`Kiosk::run_outbox`]).
    pub async fn place_order(&self, draft: Draft) -> Result<OrderId, KioskError> {
        if draft.lines.is_empty() {
            return Err(KioskError::Order("pick at least one photo".into()));
        }
        if draft.lines.len() > proto::MAX_ORDER_LINES {
            return Err(KioskError::Order(format!(
                "an order can hold at most {} photos",
                proto::MAX_ORDER_LINES
            )));
        }
        let order_id = draft.order_id.unwrap_or_else(|| {
            OrderId::from_parts(now_ms().max(0) as u64, rand::thread_rng().gen())
        });
        let mut lines = Vec::with_capacity(draft.lines.len());
        for line in &draft.lines {
            let (blob, blob_len) = self.node.blobs.import_file(&line.path).await?;
            lines.push(OrderLine {
                blob,
                blob_len,
                file_name: line.file_name.clone(),
                size: line.size,
                quantity: line.quantity,
                fit: line.fit,
            });
        }
        let total = self
            .prices
            .total(lines.iter().map(|l| (l.size, l.quantity)))
            .map_err(|e| KioskError::Order(e.to_string()))?;
        // The card is sealed to the acquirer at once, bound to this order and amount.
        let key = self.acquirer_key()?;
        let binding = Binding {
            order_id,
            amount: total,
            store: self.config.store.clone(),
            method: draft.method,
        };
        let seal = |pin: Option<&Pin>| {
            seal_card(
                &key,
                &binding,
                &draft.card,
                draft.entry,
                pin,
                &mut rand::rngs::OsRng,
            )
            .map_err(|e| KioskError::Order(e.to_string()))
        };
        let sealed = seal(None)?;
        let with_pin = match &draft.pin {
            Some(pin) => Some(seal(Some(pin))?),
            None => None,
        };
        let Draft { card, pin, .. } = draft;
        drop(pin);
        drop(card);
        let order = |card| SealedOrder {
            order_id,
            store: self.config.store.clone(),
            placed_at_ms: now_ms(),
            lines: lines.clone(),
            total,
            method: draft.method,
            card,
        };
        let stored = OrderRequest::SubmitSealed(order(sealed));
        // An order the network would refuse to carry never enters the outbox.
        if let Err(e) = encode_frame(&stored, proto::ORDER_MAX_REQUEST_BYTES) {
            return Err(KioskError::Order(format!(
                "the order is too large to send: {e}"
            )));
        }
        // The envelope with the PIN stays in memory only, until the answer: a sled log
        // keeps the bytes of removed entries, and no PIN block may outlive its
        // authorisation. The outbox keeps the card sealed without it; a kiosk restarted
        // before the answer sends that (a debit card is then declined, never charged).
        if let Some(sealed) = with_pin {
            if let Ok(mut pins) = self.pins.lock() {
                pins.insert(order_id, OrderRequest::SubmitSealed(order(sealed)));
            }
        }
        self.outbox.insert(order_id.to_bytes(), &stored)?;
        self.node.db.flush().await?;
        tracing::info!(%order_id, %total, "order in outbox, card sealed to the acquirer");
        self.wake.notify_one();
        Ok(order_id)
    }

    pub fn order(&self, id: OrderId) -> Result<Option<KioskOrder>, StoreError> {
        self.orders.get(id.to_bytes())
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Every order this kiosk took, newest first, with its state as the order events
    /// this node has seen tell it: what counter mode lists.
    pub fn counter_rows(&self) -> Result<Vec<crate::roles::kiosk::app::CounterRow>, KioskError> {
        use printmesh_protocol::order::OrderState;
        let mut rows = Vec::new();
        let state_of = |id: OrderId, fallback: OrderState| -> OrderState {
            match self.node.events.state_of(id) {
                Ok(OrderState::Draft) | Err(_) => fallback,
                Ok(state) => state,
            }
        };
        for entry in self.orders.entries() {
            let (_, o) = entry?;
            let moved = self
                .node
                .events
                .events_for(o.order_id)
                .ok()
                .and_then(|e| current_delivery_date(&e));
            let (fallback, delivery_date) = match &o.answer {
                OrderResponse::Accepted(a) => {
                    (OrderState::Accepted, Some(moved.unwrap_or(a.delivery_date)))
                }
                OrderResponse::Declined { .. } => (OrderState::Declined, None),
                OrderResponse::Rejected { .. } => (OrderState::Rejected, None),
                _ => (OrderState::Submitted, None),
            };
            rows.push(crate::roles::kiosk::app::CounterRow {
                order_id: o.order_id,
                placed_at_ms: o.placed_at_ms,
                prints: o.lines.iter().map(|l| u32::from(l.quantity)).sum(),
                total: o.total,
                card_brand: o.card_brand,
                card_last4: o.card_last4.clone(),
                delivery_date,
                state: state_of(o.order_id, fallback),
                offline: self.taken_offline(o.order_id),
            });
        }
        for entry in self.outbox.entries() {
            let (_, request) = entry?;
            let OrderRequest::SubmitSealed(s) = request else {
                continue;
            };
            rows.push(crate::roles::kiosk::app::CounterRow {
                order_id: s.order_id,
                placed_at_ms: s.placed_at_ms,
                prints: s.lines.iter().map(|l| u32::from(l.quantity)).sum(),
                total: s.total,
                card_brand: s.card.summary.brand,
                card_last4: s.card.summary.last4.clone(),
                delivery_date: None,
                state: state_of(s.order_id, OrderState::Draft),
                offline: self.taken_offline(s.order_id),
            });
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.order_id));
        Ok(rows)
    }

    /// Counter mode: the customer has their prints. Only an order the courier
    /// delivered to this store can be handed over; the hand-over is an order event.
    pub async fn mark_collected(&self, id: OrderId) -> Result<(), KioskError> {
        use printmesh_protocol::order::OrderState;
        let state = self
            .node
            .events
            .state_of(id)
            .map_err(|e| KioskError::Order(e.to_string()))?;
        if state != OrderState::Delivered {
            return Err(KioskError::Order(format!(
                "order {id} is {state:?}, not delivered to the store"
            )));
        }
        self.node
            .emit(id, printmesh_protocol::messages::EventKind::Collected)
            .await;
        tracing::info!(order_id = %id, "collected at the counter");
        Ok(())
    }

    /// Records that an order was taken offline (within the stand-in limits): it counts
    /// against the store's offline total until it is answered.
    pub async fn mark_stand_in(&self, id: OrderId, total: Money) -> Result<(), KioskError> {
        self.stand_in
            .insert(id.to_bytes(), &(now_ms(), total.amount_minor()))?;
        self.node.db.flush().await?;
        tracing::info!(order_id = %id, %total, "taken offline: to be authorised when the network allows");
        Ok(())
    }

    /// What the store has taken offline and is still waiting to have authorised.
    pub fn standing_in_minor(&self) -> i64 {
        self.stand_in
            .entries()
            .filter_map(Result::ok)
            .filter(|(k, _)| matches!(self.outbox.contains(k), Ok(true)))
            .map(|(_, (_, minor))| minor)
            .sum()
    }

    /// The total of an order in the outbox.
    pub fn order_total(&self, id: OrderId) -> Option<Money> {
        match self.outbox.get(id.to_bytes()).ok()?? {
            OrderRequest::SubmitSealed(s) => Some(s.total),
            _ => None,
        }
    }

    /// Whether an order was taken offline.
    pub fn taken_offline(&self, id: OrderId) -> bool {
        matches!(self.stand_in.contains(id.to_bytes()), Ok(true))
    }

    /// Asks to give an order up: a cancel goes out in its place (sent until an
    /// intermediary answers). Confirmed (`Cancelled`: the hold released wherever it
    /// was, never to be charged), the store sees it cancelled with `reason`; refused
    /// (a lab has it already), the order goes on as it was and its own answer comes.
    /// Not while it is being sent this moment.
    pub async fn cancel(&self, id: OrderId, reason: &str) -> Result<(), KioskError> {
        if self.is_in_flight(id) {
            return Err(KioskError::Order(format!(
                "order {id} is being sent this moment; ask again in a few seconds"
            )));
        }
        let Some(OrderRequest::SubmitSealed(submit)) = self.outbox.get(id.to_bytes())? else {
            return Err(KioskError::Order(format!(
                "order {id} is not waiting to be sent"
            )));
        };
        let cancel = OrderRequest::Cancel {
            order_id: id,
            store: submit.store.clone(),
            key: submit.card.key_id,
            reason: reason.to_string(),
        };
        let kept = self.outbox.encode(&OrderRequest::SubmitSealed(submit))?;
        let cancel_bytes = self.outbox.encode(&cancel)?;
        let key = id.to_bytes();
        (self.outbox.raw(), self.cancelling.raw())
            .transaction(|(outbox, cancelling)| {
                outbox.insert(&key, cancel_bytes.clone())?;
                cancelling.insert(&key, kept.clone())?;
                Ok(())
            })
            .map_err(crate::store::transaction_error)?;
        self.node.db.flush().await?;
        if let Ok(mut map) = self.pins.lock() {
            map.remove(&id);
        }
        tracing::warn!(order_id = %id, "cancel requested ({reason}): nothing is charged once it is confirmed");
        self.wake.notify_one();
        Ok(())
    }

    /// Whether an attempt for the order is under way (or the set cannot be read).
    fn is_in_flight(&self, id: OrderId) -> bool {
        self.in_flight
            .lock()
            .map(|s| s.contains(&id))
            .unwrap_or(true)
    }

    /// Orders waiting longer than `offline_max_hours` for their authorisation are
    /// given up.
    async fn cancel_overdue(&self) {
        let max_ms = (self.config.offline_max_hours as i64).saturating_mul(3_600_000);
        let overdue: Vec<OrderId> = self
            .outbox
            .entries()
            .filter_map(Result::ok)
            .filter_map(|(_, r)| match r {
                OrderRequest::SubmitSealed(s)
                    if now_ms().saturating_sub(s.placed_at_ms) > max_ms =>
                {
                    Some(s.order_id)
                }
                _ => None,
            })
            .collect();
        for id in overdue {
            if self.is_in_flight(id) {
                continue;
            }
            let reason = format!(
                "not authorised within {} hours",
                self.config.offline_max_hours
            );
            if let Err(e) = self.cancel(id, &reason).await {
                tracing::error!(order_id = %id, "cannot cancel an overdue order: {e}");
            }
        }
    }

    /// Sends a cancel (from the outbox) until an intermediary answers it: confirmed,
    /// the order is recorded cancelled; refused, the order goes back in the outbox as
    /// it was (its own answer comes as for any order).
    async fn send_cancel(&self, request: OrderRequest) {
        let order_id = request.order_id();
        let Some(peer) = self.intermediary_for(order_id).await else {
            self.back_off(order_id, "no intermediary is reachable for the cancel");
            return;
        };
        let answer = match self
            .node
            .client
            .request::<OrderProto>(peer.peer, request.clone())
            .await
        {
            Ok(answer) => answer,
            Err(e) => return self.back_off(order_id, &e.to_string()),
        };
        let key = order_id.to_bytes();
        let kept = match self.cancelling.get(key) {
            Ok(Some(OrderRequest::SubmitSealed(s))) => s,
            other => {
                tracing::error!(%order_id, "the cancelled order's record is missing ({other:?}): the cancel is dropped");
                let _ = self.outbox.remove(key);
                return;
            }
        };
        let outcome = match answer {
            OrderResponse::Cancelled { .. } => {
                let reason = match &request {
                    OrderRequest::Cancel { reason, .. } => reason.clone(),
                    _ => String::new(),
                };
                let order = KioskOrder::answered(
                    &kept,
                    OrderResponse::Rejected {
                        order_id,
                        reason: format!("cancelled: {reason}"),
                    },
                );
                self.orders.encode(&order).map(|bytes| (Some(bytes), None))
            }
            answer if answer.is_final() => {
                tracing::warn!(%order_id, answer = %answer.summary(), "the cancel was refused: the order goes on");
                self.outbox
                    .encode(&OrderRequest::SubmitSealed(kept))
                    .map(|bytes| (None, Some(bytes)))
            }
            other => return self.back_off(order_id, &other.summary()),
        };
        let (record, restore) = match outcome {
            Ok(o) => o,
            Err(e) => return tracing::error!(%order_id, "cannot record the cancel: {e}"),
        };
        let done = (self.orders.raw(), self.outbox.raw(), self.cancelling.raw())
            .transaction(|(orders, outbox, cancelling)| {
                match (&record, &restore) {
                    (Some(r), _) => {
                        orders.insert(&key, r.clone())?;
                        outbox.remove(&key)?;
                    }
                    (None, Some(submit)) => {
                        outbox.insert(&key, submit.clone())?;
                    }
                    (None, None) => {}
                }
                cancelling.remove(&key)?;
                Ok(())
            })
            .map_err(crate::store::transaction_error);
        if let Err(e) = done {
            return tracing::error!(%order_id, "cannot record the cancel: {e}");
        }
        let _ = self.node.db.flush().await;
        if let Ok(mut map) = self.backoff.lock() {
            map.remove(&order_id);
        }
        if record.is_some() {
            tracing::info!(%order_id, "cancel confirmed: nothing is charged");
            self.answered.notify_waiters();
        } else {
            self.wake.notify_one();
        }
    }

    /// The intermediary that answered the order, if it was answered while this
    /// process ran.
    pub fn served_by(&self, id: OrderId) -> Option<String> {
        self.served_by.lock().ok()?.get(&id).cloned()
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// How far an order in the outbox has come, while it is being delivered.
    pub fn progress(&self, id: OrderId) -> Option<UploadProgress> {
        self.progress.lock().ok()?.get(&id).copied()
    }

    fn set_progress(&self, id: OrderId, f: impl FnOnce(&mut UploadProgress)) {
        if let Ok(mut map) = self.progress.lock() {
            f(map.entry(id).or_default());
        }
    }

    /// Waits for the final answer to an order, at most `timeout`.
    pub async fn wait_for_answer(
        &self,
        id: OrderId,
        timeout: Duration,
    ) -> Result<KioskOrder, KioskError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.answered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.outbox.contains(id.to_bytes())? {
                if let Some(order) = self.order(id)? {
                    return Ok(order);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(KioskError::NoAnswerYet(id));
            }
        }
    }

    /// Drains the outbox until the node stops (what is left there stays for the next
    /// start: the outbox is on disk).
    pub async fn run_outbox(self: Arc<Self>, mut stopping: Stopping) {
        let mut pace = crate::net::Bucket::new();
        let mut overdue_checked = tokio::time::Instant::now() - Duration::from_secs(3600);
        while !stopping.is_set() {
            if overdue_checked.elapsed() >= Duration::from_secs(60) {
                overdue_checked = tokio::time::Instant::now();
                self.cancel_overdue().await;
            }
            let mut due: Vec<OrderRequest> = self
                .outbox
                .entries()
                .filter_map(|r| match r {
                    Ok((_, s)) => Some(s),
                    Err(e) => {
                        tracing::error!("unreadable outbox entry: {e}");
                        None
                    }
                })
                .filter(|s| self.is_due(s.order_id()))
                .collect();
            // Orders not tried yet (a customer at the screen) before older ones.
            due.sort_by_key(|s| self.tried(s.order_id()));
            let mut woken = false;
            for request in due {
                let id = request.order_id();
                if self.is_in_flight(id) {
                    continue;
                }
                // A new order came in while a backlog drains: it goes first.
                if self.wake.notified().now_or_never().is_some() {
                    woken = true;
                    break;
                }
                // A backlog (after the network was away) goes out at a pace its
                // intermediary's budget for a kiosk takes; then, is it still due?
                while !pace.take(OUTBOX_PACE) {
                    tokio::time::sleep(Duration::from_secs_f64(1.0 / OUTBOX_PACE.0)).await;
                }
                if !matches!(self.outbox.contains(id.to_bytes()), Ok(true)) || !self.is_due(id) {
                    continue;
                }
                let claimed = self
                    .in_flight
                    .lock()
                    .map(|mut set| set.insert(id))
                    .unwrap_or(false);
                if claimed {
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.attempt(request).await;
                        if let Ok(mut set) = me.in_flight.lock() {
                            set.remove(&id);
                        }
                    });
                }
            }
            if woken {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(OUTBOX_TICK) => {}
                _ = stopping.wait() => {}
            }
        }
    }

    /// Whether an order's backoff (if any) has run out.
    fn is_due(&self, id: OrderId) -> bool {
        let now = tokio::time::Instant::now();
        let backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        backoff.get(&id).is_none_or(|(_, at)| *at <= now)
    }

    /// Whether an order was tried before (it has a backoff record).
    fn tried(&self, id: OrderId) -> bool {
        let backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        backoff.contains_key(&id)
    }

    fn back_off(&self, id: OrderId, reason: &str) {
        let mut map = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let tries = map.get(&id).map(|(n, _)| n + 1).unwrap_or(1);
        let delay =
            (Duration::from_millis(250) * 2u32.saturating_pow(tries.min(8))).min(MAX_BACKOFF);
        tracing::info!(order_id = %id, attempt = tries, retry_in_ms = delay.as_millis() as u64, "not delivered yet: {reason}");
        map.insert(id, (tries, tokio::time::Instant::now() + delay));
    }

    /// The intermediary for an order's next attempt: orders are spread over the
    /// intermediaries by id, and each retry (after an intermediary was unavailable or
    /// did not answer) goes to the next one. Intermediaries answer a repeated order id
    /// with the network's first answer, so trying another is safe.
    async fn intermediary_for(&self, order_id: OrderId) -> Option<crate::net::PeerInfo> {
        let mut peers = self.node.client.peers_with_role(Role::Intermediary).await;
        if peers.is_empty() {
            return None;
        }
        peers.sort_by_key(|p| {
            *blake3::hash(&[&order_id.to_bytes()[..], &p.peer.to_bytes()].concat()).as_bytes()
        });
        let tries = {
            let backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
            backoff.get(&order_id).map(|(n, _)| *n).unwrap_or(0)
        };
        let i = (tries as usize) % peers.len();
        Some(peers.swap_remove(i))
    }

    /// One delivery attempt: upload, submit, record a final answer.
    async fn attempt(&self, stored: OrderRequest) {
        let order_id = stored.order_id();
        // The envelope with the PIN, while this process has it; else the stored one.
        let request = self
            .pins
            .lock()
            .ok()
            .and_then(|p| p.get(&order_id).cloned())
            .unwrap_or(stored);
        if matches!(request, OrderRequest::Cancel { .. }) {
            self.send_cancel(request).await;
            return;
        }
        let OrderRequest::SubmitSealed(submit) = &request else {
            tracing::error!(%order_id, "an unsealed order in the outbox cannot be sent");
            self.back_off(order_id, "unsealed");
            return;
        };
        let Some(peer) = self.intermediary_for(order_id).await else {
            self.back_off(order_id, "no intermediary is reachable");
            return;
        };
        let mut control = self.node.client.stream_control();
        let mut to_send: Vec<_> = submit.lines.iter().map(|l| l.blob).collect();
        let bytes: u64 = submit.lines.iter().map(|l| l.blob_len).sum();
        self.set_progress(order_id, |p| {
            *p = UploadProgress {
                photos: to_send.len(),
                bytes,
                ..UploadProgress::default()
            }
        });
        for _ in 0..MAX_UPLOAD_ROUNDS {
            for blob in &to_send {
                match send_blob(&mut control, &self.node.blobs, peer.peer, *blob).await {
                    Ok(outcome) => {
                        tracing::debug!(blob = %blob.short(), ?outcome, "uploaded");
                        let len = self.node.blobs.len_of(blob).unwrap_or(0);
                        self.set_progress(order_id, |p| {
                            p.photos_sent = (p.photos_sent + 1).min(p.photos);
                            p.bytes_sent = (p.bytes_sent + len).min(p.bytes);
                        });
                    }
                    Err(e) => {
                        self.back_off(order_id, &format!("upload failed: {e}"));
                        return;
                    }
                }
            }
            self.set_progress(order_id, |p| p.submitted = true);
            let response = match self
                .node
                .client
                .request::<OrderProto>(peer.peer, request.clone())
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    self.back_off(order_id, &e.to_string());
                    return;
                }
            };
            match response {
                OrderResponse::MissingBlobs { blobs, .. } => to_send = blobs,
                OrderResponse::Unavailable { reason, .. } => {
                    self.back_off(order_id, &reason);
                    return;
                }
                OrderResponse::Status { .. } => {
                    self.back_off(order_id, "the intermediary answered out of turn");
                    return;
                }
                final_answer => {
                    if let Ok(mut m) = self.served_by.lock() {
                        m.insert(order_id, peer.hello.name.clone());
                    }
                    if let Err(e) = self.record_answer(submit, final_answer).await {
                        tracing::error!(%order_id, "cannot record the answer: {e}");
                        self.back_off(order_id, "local store failed");
                    }
                    return;
                }
            }
        }
        self.back_off(order_id, "images still missing after uploading them");
    }

    async fn record_answer(
        &self,
        submit: &SealedOrder,
        answer: OrderResponse,
    ) -> Result<(), StoreError> {
        let order_id = submit.order_id;
        // The first answer stands: a different second answer is reported, not kept.
        let answer = match self.orders.get(order_id.to_bytes())? {
            Some(previous) if previous.answer != answer => {
                tracing::error!(%order_id, "the network answered this order differently the second time; keeping the first answer");
                previous.answer
            }
            _ => answer,
        };
        let order = KioskOrder::answered(submit, answer);
        let bytes = self.orders.encode(&order)?;
        let key = order_id.to_bytes();
        // The answer and the end of the card data in the outbox land together.
        (self.orders.raw(), self.outbox.raw())
            .transaction(|(orders, outbox)| {
                orders.insert(&key, bytes.clone())?;
                outbox.remove(&key)?;
                Ok(())
            })
            .map_err(crate::store::transaction_error)?;
        self.node.db.flush().await?;
        if let Ok(mut map) = self.backoff.lock() {
            map.remove(&order_id);
        }
        if let Ok(mut map) = self.progress.lock() {
            map.remove(&order_id);
        }
        if let Ok(mut map) = self.pins.lock() {
            map.remove(&order_id);
        }
        tracing::info!(%order_id, answer = %order.answer.summary(), "answered");
        self.answered.notify_waiters();
        Ok(())
    }
}

printmesh_runtime::requests! {
    /// What a kiosk answers: nothing (it asks; the network answers).
    pub enum KioskRequest {}
}

impl printmesh_runtime::role::Role for Kiosk {
    const KIND: Role = Role::Kiosk;
    type Config = KioskConfig;
    type Command = KioskCommand;
    type Request = KioskRequest;

    fn open(node: Node, config: KioskConfig) -> Result<Arc<Kiosk>, NodeError> {
        Ok(Arc::new(Kiosk {
            prices: load_prices(&config.prices)?,
            outbox: node.db.tree("outbox")?,
            orders: node.db.tree("orders")?,
            stand_in: node.db.tree("stand_in")?,
            cancelling: node.db.tree("cancelling")?,
            catalogues: node.catalogues.clone(),
            download_cache: crate::blobs::BlobStore::open(&node.config.data_dir.join("downloads"))
                .map_err(|source| NodeError::DataDir {
                    path: node.config.data_dir.display().to_string(),
                    source,
                })?,
            downloads: node.db.tree("downloads")?,
            downloads_due: node.db.tree("downloads_due")?,
            active_downloads: Mutex::new(HashSet::new()),
            node,
            config,
            wake: Notify::new(),
            answered: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            backoff: Mutex::new(HashMap::new()),
            served_by: Mutex::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
            pins: Mutex::new(HashMap::new()),
            acquirer_key: Mutex::new(None),
        }))
    }

    /// Starts draining the outbox.
    fn start(self: &Arc<Self>, stopping: Stopping) {
        tokio::spawn(self.clone().run_outbox(stopping.clone()));
        // Purchases a restart interrupted; then the catalogues, kept fresh.
        let me = self.clone();
        let mut stopping = stopping;
        tokio::spawn(async move {
            loop {
                me.sync_catalogues().await;
                me.resume_downloads().await;
                tokio::select! {
                    _ = tokio::time::sleep(printmesh_runtime::catalogues::SYNC_EVERY) => {}
                    _ = stopping.wait() => break,
                }
            }
        });
    }

    /// A kiosk sees only its own store's orders: events for orders it did not place
    /// (not in its outbox, not answered) are not kept.
    fn keeps(&self, event: &printmesh_protocol::messages::OrderEvent) -> bool {
        // A refund, whatever the store: it revokes the order's download licences,
        // which any kiosk may be shown.
        if event.kind == EventKind::Refunded {
            return true;
        }
        let key = event.order_id.to_bytes();
        matches!(self.orders.contains(key), Ok(true))
            || matches!(self.outbox.contains(key), Ok(true))
    }

    async fn handle(self: Arc<Self>, event: RoleEvent<Self>) {
        match event {
            RoleEvent::PeerReady(info) => {
                self.wake.notify_one();
                if matches!(info.hello.role, Role::Content | Role::Intermediary) {
                    self.sync_catalogues().await;
                }
            }
            RoleEvent::Event(e) => {
                // The store hears about its own orders' afterlife.
                let ours = matches!(self.orders.contains(e.order_id.to_bytes()), Ok(true));
                match &e.kind {
                    EventKind::Rescheduled {
                        delivery_date,
                        reason,
                    } if ours => {
                        tracing::warn!(order_id = %e.order_id, %delivery_date, "the lab moved the delivery date: {reason}")
                    }
                    EventKind::Delivered if ours => {
                        tracing::info!(order_id = %e.order_id, "delivered to the store: ready at the counter")
                    }
                    _ => {}
                }
            }
            RoleEvent::Admin(command, reply) => {
                let response = match command {
                    KioskCommand::Collect { order_id } => AdminResponse::from_result(
                        self.mark_collected(order_id)
                            .await
                            .map(|()| format!("order {order_id} collected")),
                    ),
                    KioskCommand::Cancel { order_id } => AdminResponse::from_result(
                        self.cancel(order_id, "by the store's staff")
                            .await
                            .map(|()| format!("order {order_id}: cancel requested; nothing is charged once the network confirms it (a lab that has it already keeps it)")),
                    ),
                };
                let _ = reply.send(response);
            }
            RoleEvent::Request(request) => match request {},
            // A peer gone changes nothing until an order needs one.
            RoleEvent::PeerGone(_) => {}
        }
    }
}

/// A kiosk's admin commands (`printmesh kiosk collect`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KioskCommand {
    /// The customer has their prints (counter mode without the screen).
    Collect { order_id: OrderId },
    /// Staff give up an order still waiting for its authorisation: nothing is charged.
    Cancel { order_id: OrderId },
}

impl RoleCommand for KioskCommand {
    const ROLE: Role = Role::Kiosk;
}

/// The delivery date as the order's events last set it: a lab's `Rescheduled` moves
/// the one it promised.
pub fn current_delivery_date(
    events: &[printmesh_protocol::messages::OrderEvent],
) -> Option<chrono::NaiveDate> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Accepted { delivery_date, .. } => Some((0, e.at_ms, *delivery_date)),
            EventKind::Rescheduled { delivery_date, .. } => Some((1, e.at_ms, *delivery_date)),
            _ => None,
        })
        .max()
        .map(|(_, _, d)| d)
}

/// JSON for one finished order (as `kiosk order` prints it and `inspect` lists it).
pub fn order_json(o: &KioskOrder) -> serde_json::Value {
    let mut v = serde_json::json!({
        "order_id": o.order_id.to_string(), "store": o.store.to_string(),
        "total_minor": o.total.amount_minor(), "currency": o.total.currency().code(),
        "card": format!("{} {}", o.card_brand, o.card_last4),
        "lines": o.lines.iter().map(|l| serde_json::json!({
            "file_name": l.file_name, "blob": l.blob.to_hex(), "size": l.size.code(), "quantity": l.quantity,
        })).collect::<Vec<_>>(),
    });
    let extra = match &o.answer {
        OrderResponse::Accepted(a) => serde_json::json!({
            "outcome": "approved", "auth_code": a.auth_code.to_string(),
            "delivery_date": a.delivery_date.to_string(), "lab": a.lab,
        }),
        OrderResponse::Declined { code, .. } => serde_json::json!({
            "outcome": "declined", "code": code.iso8583(), "reason": code.describe(),
        }),
        OrderResponse::Rejected { reason, .. } => {
            serde_json::json!({ "outcome": "rejected", "reason": reason })
        }
        other => {
            serde_json::json!({ "outcome": "pending", "reason": other.summary() })
        }
    };
    if let (Some(map), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
        map.extend(more);
    }
    v
}

/// What `printmesh inspect` shows of a kiosk: finished orders and the outbox size.
pub fn inspect(db: &crate::store::Db) -> Result<serde_json::Value, StoreError> {
    let orders: Tree<KioskOrder> = db.tree("orders")?;
    let outbox: Tree<OrderRequest> = db.tree("outbox")?;
    let mut out = Vec::new();
    for entry in orders.entries() {
        out.push(order_json(&entry?.1));
    }
    let waiting: Vec<String> = outbox
        .entries()
        .filter_map(|r| r.ok())
        .map(|(_, s)| s.order_id().to_string())
        .collect();
    Ok(serde_json::json!({ "role": "kiosk", "orders": out, "outbox": waiting }))
}
