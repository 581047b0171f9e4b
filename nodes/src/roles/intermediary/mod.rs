//! The intermediary (patent 102/402): takes orders from kiosks, checks them against
//! its price list, has an acquirer authorise the card, sends the job and its images to
//! a lab, and answers the kiosk with the lab's delivery date and the authorisation
//! code. It routes the card data sealed: it sees the card's brand, last four digits
//! and entry mode, and afterwards the acquirer's token for the card — never the card.
//!
//! Afterwards (FIG. 4): when the lab ships an order (a `Shipped` event from that lab),
//! the intermediary captures the hold at the acquirer, and the order joins its bill.
//! At settlement the acquirer asks for the bill and pays it; the intermediary keeps
//! its commission (`commission_bps`) and pays each lab its print fee.
//!
//! Idempotent per order id: progress is recorded in sled after each step, so a
//! resubmitted order continues where the first stopped and, once answered, gets the
//! first answer, never a second hold.

pub mod config;
pub mod downloads;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::PeerId;
use printmesh_protocol::card::CardBrand;
use printmesh_protocol::messages::{
    proto, AuthRequest, AuthResponse, BatchId, CardToken, EventKind, HoldTerms, OrderAccepted,
    OrderEvent, OrderLine, OrderRequest, OrderResponse, PaymentMethod, PrintJob, PrintRequest,
    PrintResponse, Role, SealedAuthorise, SealedOrder, SettleLine, SettleRequest, SettleResponse,
};
use printmesh_protocol::money::Money;
use printmesh_protocol::pricing::PriceList;
use printmesh_protocol::seal::{EntryMode, KeyId};
use printmesh_protocol::{AuthCode, OrderId, StoreId};
use serde::{Deserialize, Serialize};

use crate::blobs::send_blob;
use crate::config::load_prices;
use crate::config::IntermediaryConfig;
use crate::net::{
    AuthProto, ContentProto, DownloadProto, Inbound, OrderProto, PeerInfo, PrintProto, SettleProto,
};
use crate::node::{now_ms, AdminResponse, Node, NodeError, RoleCommand};
use crate::report::{money_text, sum, Report, Table};
use crate::roles::OrderLocks;
use crate::store::{StoreError, Tree, WriteSet};
use config::LabRoute;
use printmesh_protocol::money::Currency;
use printmesh_runtime::role::{RoleEvent, Stopping};

/// How often captures and lab payments that did not go through are tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(3);

/// Where an order stands at the intermediary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    Received,
    /// Held at `acquirer`. `lab` is the lab chosen for the job, recorded before the
    /// job is sent, so a retry goes to the same lab and the order is printed once.
    Authorised {
        auth_code: AuthCode,
        acquirer: Vec<u8>,
        lab: Option<Vec<u8>>,
    },
    Answered(OrderResponse),
}

/// The hold's capture, once the lab ships.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Capture {
    NotShipped,
    /// Shipped; the capture has not been confirmed yet.
    Due {
        since_ms: i64,
    },
    Captured {
        at_ms: i64,
    },
    /// The acquirer will never capture it (the hold expired or was released): nothing
    /// to bill, and nothing to try again.
    Refused {
        at_ms: i64,
        reason: String,
    },
    /// The lab cannot print it after all: the hold is to be released (tried again
    /// until the acquirer confirms), then `Refused`.
    VoidDue {
        since_ms: i64,
        reason: String,
    },
}

/// What the intermediary received for an order and passed on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    pub batch: BatchId,
    pub received: Money,
    pub commission: Money,
    pub lab_fee: Money,
    pub lab_paid: bool,
}

/// The intermediary's record of an order. No card data beyond the last four digits
/// and the acquirer's token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedOrder {
    pub order_id: OrderId,
    pub store: StoreId,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub method: PaymentMethod,
    pub card_last4: String,
    pub card_brand: CardBrand,
    pub entry: EntryMode,
    pub token: Option<CardToken>,
    pub stage: Stage,
    /// Who holds the money and who makes the prints, kept after the answer.
    pub acquirer: Option<Vec<u8>>,
    pub lab: Option<Vec<u8>>,
    pub lab_name: Option<String>,
    pub capture: Capture,
    pub settlement: Option<Settled>,
    pub received_at_ms: i64,
    pub updated_at_ms: i64,
}

pub struct Intermediary {
    node: Node,
    prices: PriceList,
    commission_bps: u32,
    orders: Tree<RoutedOrder>,
    /// What is left to do, indexed so neither the retry task nor a bill reads every
    /// order ever routed: captures due, orders to bill (per acquirer) and print fees
    /// to pay (per lab). Kept in the same transaction as the order; rebuilt at start.
    work: Tree<OrderId>,
    locks: OrderLocks,
    /// Each held order's payment terms as last heard (order id → watch).
    holds: Tree<HoldWatch>,
    /// When each held order's hold is next looked at: `at_ms (BE) ‖ order id` → ().
    hold_due: Tree<()>,
    /// Shipped orders this intermediary has no record of (order id → the lab that
    /// shipped, when heard): adopted from the acquirer after [`ADOPT_AFTER`].
    orphans: Tree<(Vec<u8>, i64)>,
    /// Authorisations kept while no acquirer answered (order id → the sealed order,
    /// since when), forwarded when one does.
    forward: Tree<(SealedOrder, i64)>,
    routes: Vec<LabRoute>,
    /// Which acquirer opens which sealing key (learned from their answers).
    acquirer_of_key: std::sync::Mutex<std::collections::HashMap<KeyId, PeerId>>,
    /// Labs that failed to answer lately: failures in a row, passed over until.
    lab_health:
        std::sync::Mutex<std::collections::HashMap<PeerId, (u32, Option<std::time::Instant>)>>,
    /// The content companies' catalogues, checked (downloads are priced from them):
    /// the node's.
    catalogues: Arc<printmesh_runtime::catalogues::Catalogues>,
    /// Download orders: what was bought, from which company (order id → record).
    downloads: Tree<downloads::DownloadRecord>,
}

/// How long a shipped order nobody here knows waits for the intermediary that has
/// it to capture, before this one adopts it.
pub const ADOPT_AFTER: Duration = Duration::from_secs(10);
/// How long an authorisation is kept for forwarding before the order is given up (the
/// payment industry keeps offline payments 24–72 hours).
pub const FORWARD_FOR: Duration = Duration::from_secs(72 * 3600);
/// How often a hold is looked at when its lab has not had its new terms.
const TELL_LAB_AGAIN_MS: i64 = 5_000;

fn due_key(at_ms: i64, order_id: OrderId) -> Vec<u8> {
    let mut k = at_ms.max(0).to_be_bytes().to_vec();
    k.extend_from_slice(&order_id.to_bytes());
    k
}

const CAPTURE_DUE: u8 = b'c';
/// Marks a work index built from the orders (no prefix above starts with 0).
const WORK_BUILT: &[u8] = b"\0built";
const BILLABLE: u8 = b'b';
const LAB_UNPAID: u8 = b'l';
const VOID_DUE: u8 = b'v';

/// `kind`, then a peer id with its length, so one peer's keys are one prefix.
fn peer_prefix(kind: u8, peer: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + peer.len());
    k.push(kind);
    k.push(peer.len().min(255) as u8);
    k.extend_from_slice(peer);
    k
}

/// The work index entries an order in this state belongs under.
fn work_keys(o: &RoutedOrder) -> Vec<Vec<u8>> {
    let id = o.order_id.to_bytes();
    let mut keys = Vec::new();
    if matches!(o.capture, Capture::Due { .. }) {
        keys.push([&[CAPTURE_DUE][..], &id].concat());
    }
    if matches!(o.capture, Capture::VoidDue { .. }) {
        keys.push([&[VOID_DUE][..], &id].concat());
    }
    if let (Capture::Captured { .. }, None, Some(acquirer)) =
        (&o.capture, &o.settlement, &o.acquirer)
    {
        keys.push([peer_prefix(BILLABLE, acquirer).as_slice(), &id].concat());
    }
    if let (Some(s), Some(lab)) = (&o.settlement, &o.lab) {
        if !s.lab_paid {
            keys.push([peer_prefix(LAB_UNPAID, lab).as_slice(), &id].concat());
        }
    }
    keys
}

impl Intermediary {
    /// Builds the work index from the orders when this database has none yet (one
    /// written before the index existed). Afterwards every write keeps it, in the
    /// same transaction as the order, so start-up does not read every order again.
    fn rebuild_work(&self) -> Result<(), StoreError> {
        if self.work.raw().contains_key(WORK_BUILT)? {
            return Ok(());
        }
        let mut keys = BTreeMap::new();
        for entry in self.orders.entries() {
            let (_, o) = entry?;
            for k in work_keys(&o) {
                keys.insert(k, o.order_id);
            }
        }
        let stale: Vec<Vec<u8>> = self
            .work
            .entries()
            .filter_map(Result::ok)
            .map(|(k, _)| k)
            .filter(|k| !keys.contains_key(k))
            .collect();
        for k in stale {
            self.work.remove(k)?;
        }
        for (k, id) in keys {
            self.work.insert(k, &id)?;
        }
        self.work.raw().insert(WORK_BUILT, &[1u8][..])?;
        Ok(())
    }

    /// The work index entries of the order as stored now.
    fn stored_work_keys(&self, order_id: OrderId) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .orders
            .get(order_id.to_bytes())?
            .map(|o| work_keys(&o))
            .unwrap_or_default())
    }

    /// Adds an order and its work index changes to `writes` (trees: 0 orders, 1 work).
    /// The caller holds the order's lock.
    fn stage(&self, writes: &mut WriteSet, order: &mut RoutedOrder) -> Result<(), StoreError> {
        let before = self.stored_work_keys(order.order_id)?;
        self.stage_from(writes, order, &before)
    }

    /// [`Self::stage`] when the stored order's work keys are already known.
    fn stage_from(
        &self,
        writes: &mut WriteSet,
        order: &mut RoutedOrder,
        before: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        order.updated_at_ms = now_ms();
        let key = order.order_id.to_bytes();
        let after = work_keys(order);
        writes.put(0, key, self.orders.encode(order)?);
        for k in before.iter().filter(|k| !after.contains(k)) {
            writes.remove(1, k);
        }
        for k in &after {
            writes.put(1, k, self.work.encode(&order.order_id)?);
        }
        Ok(())
    }

    fn commit(&self, writes: &WriteSet) -> Result<(), StoreError> {
        writes.commit(&[self.orders.raw(), self.work.raw()])
    }

    /// The orders under one work index prefix.
    fn work_under(&self, prefix: &[u8]) -> Vec<OrderId> {
        self.work
            .scan_prefix(prefix)
            .filter_map(Result::ok)
            .map(|(_, id)| id)
            .collect()
    }

    /// Stores and flushes: for what must survive a crash before the next step (the
    /// lab chosen for a job, captures, settlements).
    async fn save(&self, order: &mut RoutedOrder) -> Result<(), StoreError> {
        self.save_lazily(order)?;
        self.node.db.flush().await
    }

    /// Stores without waiting for the disk: for what a retry can rebuild exactly (the
    /// acquirer and the lab answer a repeated order id with their first answer), so
    /// the kiosk is not kept waiting on a flush that changes nothing.
    fn save_lazily(&self, order: &mut RoutedOrder) -> Result<(), StoreError> {
        let before = self.stored_work_keys(order.order_id)?;
        if before == work_keys(order) {
            // The index does not change (most steps of an order): no transaction.
            order.updated_at_ms = now_ms();
            return self.orders.insert(order.order_id.to_bytes(), order);
        }
        let mut writes = WriteSet::default();
        self.stage_from(&mut writes, order, &before)?;
        self.commit(&writes)
    }

    async fn answer(
        &self,
        order: &mut RoutedOrder,
        response: OrderResponse,
    ) -> Result<OrderResponse, StoreError> {
        order.stage = Stage::Answered(response.clone());
        self.save_lazily(order)?;
        Ok(response)
    }

    /// Records the answer on disk before it is given: for answers the kiosk acts on
    /// and that a retry could not rebuild the same way (a job accepted by a lab; a
    /// job refused whose hold is then released).
    async fn answer_durably(
        &self,
        order: &mut RoutedOrder,
        response: OrderResponse,
    ) -> Result<OrderResponse, StoreError> {
        order.stage = Stage::Answered(response.clone());
        self.save(order).await?;
        Ok(response)
    }

    /// Signs and gossips an event in the background, off the kiosk's wait.
    async fn emit(&self, order_id: OrderId, kind: EventKind) {
        let node = self.node.clone();
        tokio::spawn(async move { node.emit(order_id, kind).await });
    }

    /// The commission and the lab's fee of an order's total.
    pub fn split(&self, total: Money) -> (Money, Money) {
        let commission = total
            .amount_minor()
            .saturating_mul(i64::from(self.commission_bps))
            / 10_000;
        let fee = total.amount_minor().saturating_sub(commission);
        (
            Money::new(commission, total.currency()),
            Money::new(fee, total.currency()),
        )
    }

    /// Handles one submission end to end, from a kiosk of `kiosk_store` (when known):
    /// a kiosk submits, and hears answers about, its own store's orders only. One
    /// function per stage: admit, take in, authorise, choose the lab, send the job.
    pub async fn submit(
        &self,
        request: OrderRequest,
        kiosk_store: Option<StoreId>,
    ) -> Result<OrderResponse, StoreError> {
        let submit = match admit(request, kiosk_store) {
            Ok(submit) => submit,
            Err(answer) => return Ok(answer),
        };
        let order_id = submit.order_id;
        let _guard = self.locks.lock(order_id).await;
        let existing = self.orders.get(order_id.to_bytes())?;
        if existing.as_ref().is_some_and(|o| o.store != submit.store) {
            tracing::warn!(%order_id, store = %submit.store, "an order id of another store: refused");
            return Ok(OrderResponse::Rejected {
                order_id,
                reason: "this order id belongs to another store".into(),
            });
        }
        let mut order = match existing {
            Some(RoutedOrder {
                stage: Stage::Answered(answer),
                ..
            }) => {
                tracing::info!(%order_id, "resubmitted order: returning the first answer");
                return Ok(answer);
            }
            Some(order) => order,
            None => match self.take_in(&submit).await? {
                Step::Next(order) => order,
                Step::Answer(answer) => return Ok(answer),
            },
        };
        if order.stage == Stage::Received {
            if let Some(answer) = self.authorise(&mut order, &submit, true).await? {
                return Ok(answer);
            }
        }
        self.place_job(&mut order).await
    }

    /// A new order: checked (card summary, lines, total against the price list, every
    /// photo here), recorded and announced (`Submitted`), or answered at once.
    async fn take_in(&self, submit: &SealedOrder) -> Result<Step<RoutedOrder>, StoreError> {
        let order_id = submit.order_id;
        let summary = &submit.card.summary;
        let mut order = RoutedOrder {
            order_id,
            store: submit.store.clone(),
            lines: submit.lines.clone(),
            total: submit.total,
            method: submit.method,
            card_last4: summary.last4.clone(),
            card_brand: summary.brand,
            entry: summary.entry,
            token: None,
            stage: Stage::Received,
            acquirer: None,
            lab: None,
            lab_name: None,
            capture: Capture::NotShipped,
            settlement: None,
            received_at_ms: now_ms(),
            updated_at_ms: now_ms(),
        };
        if let Some(reason) = self.refusal_of(submit) {
            if reason == MALFORMED_SUMMARY {
                order.card_last4 = "????".into();
            }
            let answer = OrderResponse::Rejected { order_id, reason };
            return Ok(Step::Answer(self.answer(&mut order, answer).await?));
        }
        let missing = self.node.blobs.missing(submit.lines.iter().map(|l| l.blob));
        if !missing.is_empty() {
            return Ok(Step::Answer(OrderResponse::MissingBlobs {
                order_id,
                blobs: missing,
            }));
        }
        self.save_lazily(&mut order)?;
        let submitted = EventKind::Submitted {
            store: order.store.clone(),
            total: order.total,
        };
        self.emit(order_id, submitted).await;
        Ok(Step::Next(order))
    }

    /// Why a new order is refused, if it is.
    fn refusal_of(&self, submit: &SealedOrder) -> Option<String> {
        let last4 = &submit.card.summary.last4;
        if last4.len() != 4 || !last4.bytes().all(|b| b.is_ascii_digit()) {
            return Some(MALFORMED_SUMMARY.into());
        }
        if submit.lines.is_empty() || submit.lines.len() > proto::MAX_ORDER_LINES {
            return Some(format!(
                "an order needs 1 to {} photos",
                proto::MAX_ORDER_LINES
            ));
        }
        match self
            .prices
            .total(submit.lines.iter().map(|l| (l.size, l.quantity)))
        {
            Ok(total) if total == submit.total => None,
            Ok(total) => Some(format!(
                "the total shown ({}) does not match the price list ({total})",
                submit.total
            )),
            Err(e) => Some(format!("the order cannot be priced: {e}")),
        }
    }

    /// Asks the acquirer the card was sealed to: the one known for the card's key, else
    /// every acquirer at once (the others answer `NotMine` straight away, and a hung
    /// one delays no card sealed to another). `None`: authorised (the order moves on);
    /// else the answer (declined, refused, or unavailable for now).
    /// `keep`: whether an authorisation no acquirer answers is kept for forwarding
    /// (prints; never a download, which is written only after an approval).
    async fn authorise(
        &self,
        order: &mut RoutedOrder,
        submit: &SealedOrder,
        keep: bool,
    ) -> Result<Option<OrderResponse>, StoreError> {
        let order_id = order.order_id;
        let request = AuthRequest::AuthoriseSealed(SealedAuthorise {
            order_id,
            amount: order.total,
            method: order.method,
            store: order.store.clone(),
            card: submit.card.clone(),
        });
        let (acquirer, answer) = match self.ask_acquirer(submit.card.key_id, request).await {
            Ok(found) => found,
            Err(reason) => {
                // Kept on disk and forwarded when an acquirer can be reached.
                if keep && !self.forward.contains(order_id.to_bytes())? {
                    self.forward
                        .insert(order_id.to_bytes(), &(submit.clone(), now_ms()))?;
                    self.node.db.flush().await?;
                    tracing::info!(%order_id, "no acquirer answers: the authorisation is kept and will be forwarded");
                }
                return Ok(Some(unavailable(order_id, reason)));
            }
        };
        match answer {
            AuthResponse::ApprovedCard { amount, .. } if amount != order.total => {
                tracing::error!(%order_id, %amount, total = %order.total, "the acquirer approved another amount: released");
                let reason = "the payment could not be authorised for this total".to_string();
                order.acquirer = Some(acquirer.to_bytes());
                Ok(Some(self.reject_and_release(order, reason).await?))
            }
            AuthResponse::ApprovedCard {
                auth_code, token, ..
            } => {
                printmesh_runtime::failpoint::crash_point("intermediary.authorised");
                order.token = Some(token);
                order.acquirer = Some(acquirer.to_bytes());
                order.stage = Stage::Authorised {
                    auth_code,
                    acquirer: acquirer.to_bytes(),
                    lab: None,
                };
                // Rebuildable (the acquirer replays its approval, and the lab bound to
                // the order is kept there).
                self.save_lazily(order)?;
                Ok(None)
            }
            AuthResponse::DeclinedCard { code, token, .. } => {
                tracing::info!(%order_id, code = code.iso8583(), "declined");
                order.token = token;
                let answer = OrderResponse::Declined { order_id, code };
                Ok(Some(self.answer(order, answer).await?))
            }
            other => Ok(Some(unavailable(
                order_id,
                format!("the acquirer answered {other:?}"),
            ))),
        }
    }

    /// The kiosk gives an order up. It is cancelled only while no lab has it: its hold
    /// is released at the acquirer of the card's sealing key (a tombstone if the
    /// authorisation has not arrived there, so it never will be approved, whichever
    /// intermediary forwards it), and the order here, if known, is answered "rejected"
    /// and never captured; answered `Cancelled` once that acquirer has the release. An order a lab has (accepted, bound, shipped or captured) is not
    /// cancelled: the answer is its own (or a refusal), and the kiosk goes on with it.
    async fn cancel(
        &self,
        order_id: OrderId,
        store: StoreId,
        key: KeyId,
        reason: String,
    ) -> Result<OrderResponse, StoreError> {
        let _guard = self.locks.lock(order_id).await;
        let existing = self.orders.get(order_id.to_bytes())?;
        let refuse = |why: &str| {
            tracing::warn!(%order_id, "a cancel refused: {why}");
            Ok(OrderResponse::Rejected {
                order_id,
                reason: format!("not cancelled: {why}"),
            })
        };
        if let Some(o) = &existing {
            if o.store != store {
                return refuse("this order id belongs to another store");
            }
            match (&o.stage, &o.capture) {
                (Stage::Answered(OrderResponse::Declined { .. }), _) => {
                    return Ok(OrderResponse::Cancelled { order_id })
                }
                (Stage::Answered(answer @ OrderResponse::Accepted(_)), _) => {
                    tracing::info!(%order_id, "a cancel for an order a lab has accepted: answered with its acceptance");
                    return Ok(answer.clone());
                }
                (_, Capture::Due { .. } | Capture::Captured { .. }) => {
                    return refuse("the order has shipped")
                }
                _ => {}
            }
        }
        // Not forwarded any more: the kiosk is giving it up.
        if self.forward.contains(order_id.to_bytes())? {
            self.forward.remove(order_id.to_bytes())?;
            self.node.db.flush().await?;
        }
        // The acquirer of the card's key: the order's, or the one that owns the key
        // (the others answer NotMine and keep nothing). A tombstone there is where
        // the authorisation would land, whoever forwards it later.
        let answer = match existing.as_ref().and_then(|o| o.acquirer.as_deref()) {
            Some(a) => match PeerId::from_bytes(a) {
                Ok(peer) => self
                    .ask_auth_of(peer, AuthRequest::Void { order_id })
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            None => self
                .ask_acquirer(key, AuthRequest::VoidFor { order_id, key })
                .await
                .map(|(_, answer)| answer),
        };
        match answer {
            Ok(AuthResponse::Voided { .. }) => {}
            Ok(AuthResponse::HoldClosed { reason: why, .. })
                if why.contains("captured")
                    || why == printmesh_protocol::wire::auth::LAB_HAS_IT =>
            {
                return refuse(&why);
            }
            Ok(AuthResponse::HoldClosed { .. }) => {}
            Ok(other) => {
                tracing::warn!(%order_id, "cancel: the acquirer answered {other:?}");
                return Ok(unavailable(
                    order_id,
                    "the acquirer did not release the hold".into(),
                ));
            }
            Err(e) => {
                return Ok(unavailable(
                    order_id,
                    format!("the order's acquirer cannot be reached to release the hold: {e}"),
                ));
            }
        }
        if let Some(mut o) = existing {
            o.stage = Stage::Answered(OrderResponse::Rejected {
                order_id,
                reason: format!("cancelled: {reason}"),
            });
            o.capture = Capture::Refused {
                at_ms: now_ms(),
                reason: format!("cancelled at the kiosk: {reason}"),
            };
            self.save(&mut o).await?;
        }
        tracing::info!(%order_id, "cancelled at the kiosk ({reason}): the hold is released");
        Ok(OrderResponse::Cancelled { order_id })
    }

    /// Authorisations kept while no acquirer could be reached, sent on now that one
    /// can be (the kiosk may have gone offline meanwhile); the order then continues
    /// as if it had just arrived. Dropped once answered, or cancelled when kept longer
    /// than [`FORWARD_FOR`].
    async fn forward_kept(&self) {
        if self.forward.is_empty()
            || self
                .node
                .client
                .peers_with_role(Role::Acquirer)
                .await
                .is_empty()
        {
            return;
        }
        let kept: Vec<(Vec<u8>, (SealedOrder, i64))> =
            self.forward.entries().filter_map(Result::ok).collect();
        for (key, (order, since)) in kept {
            let order_id = order.order_id;
            if now_ms().saturating_sub(since) > FORWARD_FOR.as_millis() as i64 {
                let reason = "not authorised in time".to_string();
                let key_id = order.card.key_id;
                if let Ok(OrderResponse::Cancelled { .. }) = self
                    .cancel(order_id, order.store.clone(), key_id, reason)
                    .await
                {
                    let _ = self.forward.remove(&key);
                }
                continue;
            }
            match self.submit(OrderRequest::SubmitSealed(order), None).await {
                Ok(answer) if answer.is_final() => {
                    tracing::info!(%order_id, answer = %answer.summary(), "a kept authorisation was forwarded");
                    let _ = self.forward.remove(&key);
                }
                Ok(_) => {}
                Err(e) => tracing::error!(%order_id, "forwarding a kept authorisation: {e}"),
            }
        }
    }

    /// Sends an authorisation to the acquirer holding the key `key`; the first answer
    /// that is not `NotMine`, with who gave it. The acquirer found is remembered.
    async fn ask_acquirer(
        &self,
        key: KeyId,
        request: AuthRequest,
    ) -> Result<(PeerId, AuthResponse), String> {
        let acquirers = self.node.client.peers_with_role(Role::Acquirer).await;
        if acquirers.is_empty() {
            return Err("no acquirer is reachable".into());
        }
        let known = self
            .acquirer_of_key
            .lock()
            .ok()
            .and_then(|m| m.get(&key).copied());
        let targets: Vec<PeerId> = match known.filter(|k| acquirers.iter().any(|a| a.peer == *k)) {
            Some(peer) => vec![peer],
            None => acquirers.iter().map(|a| a.peer).collect(),
        };
        let mut asks: futures::stream::FuturesUnordered<_> = targets
            .into_iter()
            .map(|peer| {
                let client = self.node.client.clone();
                let request = request.clone();
                async move { (peer, ask_auth(&client, peer, request).await) }
            })
            .collect();
        let mut failure = None;
        while let Some((peer, answer)) = asks.next().await {
            match answer {
                Ok(AuthResponse::NotMine { .. }) => {
                    if let Ok(mut m) = self.acquirer_of_key.lock() {
                        if m.get(&key) == Some(&peer) {
                            m.remove(&key);
                        }
                    }
                }
                Ok(answer) => {
                    if let Ok(mut m) = self.acquirer_of_key.lock() {
                        m.insert(key, peer);
                    }
                    return Ok((peer, answer));
                }
                Err(e) => failure = Some(format!("the acquirer did not answer: {e}")),
            }
        }
        Err(failure.unwrap_or_else(|| {
            "no reachable acquirer holds the key this card was sealed to".into()
        }))
    }

    /// The labs to offer an order's job to, best first: the store's route (by lab
    /// name), then labs that have not failed lately, then a spread by order id (so
    /// orders do not all go to one lab). Labs in `except` are left out.
    async fn rank_labs(
        &self,
        order_id: OrderId,
        store: &StoreId,
        except: &[Vec<u8>],
    ) -> Vec<PeerInfo> {
        let route: Vec<String> = self
            .routes
            .iter()
            .filter(|r| r.store == store.to_string())
            .flat_map(|r| r.labs.clone())
            .collect();
        let now = std::time::Instant::now();
        let health = self
            .lab_health
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default();
        let mut labs: Vec<(usize, bool, u32, [u8; 32], PeerInfo)> = self
            .node
            .client
            .peers_with_role(Role::Lab)
            .await
            .into_iter()
            .filter(|l| !except.contains(&l.peer.to_bytes()))
            .map(|l| {
                let place = route
                    .iter()
                    .position(|n| *n == l.hello.name)
                    .unwrap_or(usize::MAX);
                let (failures, avoid) = health.get(&l.peer).copied().unwrap_or((0, None));
                let resting = avoid.is_some_and(|until| until > now);
                let spread =
                    *blake3::hash(&[&order_id.to_bytes()[..], &l.peer.to_bytes()].concat())
                        .as_bytes();
                (place, resting, failures, spread, l)
            })
            .collect();
        labs.sort_by_key(|l| (l.0, l.1, l.2, l.3));
        labs.into_iter().map(|(.., l)| l).collect()
    }

    /// A lab answered (or not): how it is ranked for the next orders.
    fn lab_answered(&self, lab: PeerId, ok: bool) {
        if let Ok(mut h) = self.lab_health.lock() {
            if ok {
                h.remove(&lab);
            } else {
                let e = h.entry(lab).or_insert((0, None));
                e.0 = e.0.saturating_add(1);
                let rest = LAB_REST.saturating_mul(e.0.min(10));
                e.1 = Some(std::time::Instant::now() + rest);
            }
        }
    }

    /// Binds the order to a lab at the acquirer (which keeps the first binding any
    /// intermediary made) and records the lab bound and the hold's terms on disk before
    /// any job goes out.
    async fn bind_lab(
        &self,
        order: &mut RoutedOrder,
        candidate: &PeerInfo,
        replacing: Option<Vec<u8>>,
    ) -> Result<Step<(Vec<u8>, String, HoldTerms)>, StoreError> {
        let order_id = order.order_id;
        let Some(acquirer) = order.acquirer.clone() else {
            let reason = "order is in an unexpected stage".into();
            return Ok(Step::Answer(unavailable(order_id, reason)));
        };
        let Ok(peer) = PeerId::from_bytes(&acquirer) else {
            let reason = "the order's acquirer is unknown".into();
            return Ok(Step::Answer(unavailable(order_id, reason)));
        };
        let request = AuthRequest::BindLab {
            order_id,
            lab: candidate.peer.to_bytes(),
            lab_name: candidate.hello.name.clone(),
            replacing,
        };
        match ask_auth(&self.node.client, peer, request).await {
            Ok(AuthResponse::LabBound {
                lab,
                lab_name,
                terms,
                ..
            }) => {
                if let Stage::Authorised { lab: chosen, .. } = &mut order.stage {
                    *chosen = Some(lab.clone());
                }
                order.lab = Some(lab.clone());
                order.lab_name = Some(lab_name.clone());
                self.holds.insert(
                    order_id.to_bytes(),
                    &HoldWatch {
                        terms,
                        noted_at_ms: now_ms(),
                        lab_told: true,
                    },
                )?;
                self.save(order).await?;
                self.schedule_hold(order_id, &terms, now_ms())?;
                Ok(Step::Next((lab, lab_name, terms)))
            }
            Ok(AuthResponse::HoldClosed { reason, .. }) => {
                // The hold is gone: captured (the order shipped, so a lab has it) or
                // released. The network may know the lab's answer.
                if let Some(answer) = self.known_acceptance(order, None) {
                    return Ok(Step::Answer(self.answer_durably(order, answer).await?));
                }
                tracing::warn!(%order_id, "the hold is closed before a lab took the job: {reason}");
                let answer = OrderResponse::Rejected {
                    order_id,
                    reason: format!("the payment can no longer be taken: {reason}"),
                };
                Ok(Step::Answer(self.answer_durably(order, answer).await?))
            }
            Ok(other) => Ok(Step::Answer(unavailable(
                order_id,
                format!("the acquirer answered {other:?}"),
            ))),
            Err(e) => Ok(Step::Answer(unavailable(order_id, e.to_string()))),
        }
    }

    /// The answer the network already has for this order from a lab (its signed
    /// `Accepted` event), if the order's lab (or, with `lab`, that lab) accepted it.
    fn known_acceptance(&self, order: &RoutedOrder, lab: Option<&[u8]>) -> Option<OrderResponse> {
        let Stage::Authorised { auth_code, .. } = &order.stage else {
            return None;
        };
        let lab = lab.or(order.lab.as_deref())?;
        let events = self.node.events.events_for(order.order_id).ok()?;
        events.into_iter().find_map(|e| match e.kind {
            EventKind::Accepted {
                delivery_date,
                lab: name,
            } if e.origin == lab => Some(OrderResponse::Accepted(OrderAccepted {
                order_id: order.order_id,
                auth_code: auth_code.clone(),
                amount: order.total,
                delivery_date,
                lab: name,
            })),
            _ => None,
        })
    }

    /// Finds the order's job a lab: the one bound to it at the acquirer (by whichever
    /// intermediary bound it first), else the best-ranked lab. A lab that refuses the
    /// job passes it to the next (the binding moves only from the lab that refused);
    /// a lab that does not answer is never replaced (it may have the job).
    async fn place_job(&self, order: &mut RoutedOrder) -> Result<OrderResponse, StoreError> {
        let order_id = order.order_id;
        let Stage::Authorised {
            auth_code,
            acquirer: _,
            lab: chosen,
        } = order.stage.clone()
        else {
            return Ok(unavailable(
                order_id,
                "order is in an unexpected stage".into(),
            ));
        };
        let mut refused: Vec<Vec<u8>> = Vec::new();
        let mut replacing = None;
        let mut bound: Option<(Vec<u8>, HoldTerms)> = match (&chosen, self.hold_watch(order_id)) {
            (Some(lab), Some(w)) => Some((lab.clone(), w.terms)),
            _ => None,
        };
        let mut last_refusal = String::new();
        for _ in 0..MAX_LAB_TRIES {
            let (lab, terms) = match bound.take() {
                Some(b) => b,
                None => {
                    let ranked = self.rank_labs(order_id, &order.store, &refused).await;
                    let Some(candidate) = ranked.into_iter().next() else {
                        if let Some(answer) = self.known_acceptance(order, None) {
                            return self.answer_durably(order, answer).await;
                        }
                        if replacing.is_some() {
                            break;
                        }
                        return Ok(unavailable(order_id, "no lab is reachable".into()));
                    };
                    let was = replacing.take();
                    match self.bind_lab(order, &candidate, was.clone()).await? {
                        // The acquirer kept the refusing lab: the candidate refused this
                        // order before (for another intermediary). Next candidate.
                        Step::Next((lab, _, _)) if was.as_ref() == Some(&lab) => {
                            refused.push(candidate.peer.to_bytes());
                            replacing = was;
                            continue;
                        }
                        Step::Next((lab, _, terms)) => (lab, terms),
                        Step::Answer(answer) => return Ok(answer),
                    }
                }
            };
            if let Some(answer) = self.known_acceptance(order, Some(&lab)) {
                tracing::info!(%order_id, "the lab accepted it through another intermediary: answering with its answer");
                return self.answer_durably(order, answer).await;
            }
            let labs = self.node.client.peers_with_role(Role::Lab).await;
            let Some(info) = labs.into_iter().find(|l| l.peer.to_bytes() == lab) else {
                let name = order.lab_name.clone().unwrap_or_default();
                let reason = format!("the lab that has this job ({name}) is not reachable");
                return Ok(unavailable(order_id, reason));
            };
            match self.send_job(order, &info, terms).await {
                JobOutcome::Accepted {
                    delivery_date,
                    lab: lab_name,
                } => {
                    printmesh_runtime::failpoint::crash_point("intermediary.lab-accepted");
                    self.lab_answered(info.peer, true);
                    let accepted = OrderAccepted {
                        order_id,
                        auth_code: auth_code.clone(),
                        amount: order.total,
                        delivery_date,
                        lab: lab_name,
                    };
                    return self
                        .answer_durably(order, OrderResponse::Accepted(accepted))
                        .await;
                }
                JobOutcome::Refused(reason) => {
                    tracing::info!(%order_id, lab = %info.hello.name, "the lab refused the job: {reason}");
                    last_refusal = reason;
                    refused.push(lab.clone());
                    replacing = Some(lab);
                }
                JobOutcome::Later(reason) => {
                    self.lab_answered(info.peer, false);
                    return Ok(unavailable(order_id, reason));
                }
            }
        }
        // Every lab refused it: the answer is recorded first, so a retry can never send
        // the job again after its hold is released.
        let reason = if refused.len() > 1 {
            format!(
                "no lab can take it ({} asked; the last: {last_refusal})",
                refused.len()
            )
        } else {
            last_refusal
        };
        self.reject_and_release(order, reason).await
    }

    /// Answers an order rejected after its authorisation and releases its hold: the
    /// answer and the release still due (`VoidDue`, retried by the retry task until
    /// the acquirer confirms) are recorded first, so a retry can never send the job
    /// again after the hold is released, and a lost release answer is asked again.
    /// The caller holds the order's lock.
    async fn reject_and_release(
        &self,
        order: &mut RoutedOrder,
        reason: String,
    ) -> Result<OrderResponse, StoreError> {
        let order_id = order.order_id;
        order.capture = Capture::VoidDue {
            since_ms: now_ms(),
            reason: reason.clone(),
        };
        let answer = self
            .answer_durably(order, OrderResponse::Rejected { order_id, reason })
            .await?;
        // With a lab bound, the release is that lab's refusal (the last one asked).
        if let Some(acquirer) = order.acquirer.clone() {
            if self.void(order_id, &acquirer, order.lab.clone()).await {
                if let Capture::VoidDue { reason, .. } = order.capture.clone() {
                    order.capture = Capture::Refused {
                        at_ms: now_ms(),
                        reason,
                    };
                    self.save(order).await?;
                }
            }
        }
        Ok(answer)
    }

    /// Sends the photos and the job to a lab.
    async fn send_job(&self, order: &RoutedOrder, lab: &PeerInfo, terms: HoldTerms) -> JobOutcome {
        let order_id = order.order_id;
        let mut control = self.node.client.stream_control();
        for line in &order.lines {
            if let Err(e) = send_blob(&mut control, &self.node.blobs, lab.peer, line.blob).await {
                return JobOutcome::Later(format!("sending {} to the lab: {e}", line.file_name));
            }
        }
        let job = PrintRequest::JobWithTerms {
            job: PrintJob {
                order_id,
                store: order.store.clone(),
                lines: order.lines.clone(),
                submitted_at_ms: now_ms(),
            },
            terms,
        };
        match self.node.client.request::<PrintProto>(lab.peer, job).await {
            Ok(PrintResponse::Accepted {
                order_id: answered,
                delivery_date,
                lab,
            }) if answered == order_id => JobOutcome::Accepted { delivery_date, lab },
            Ok(PrintResponse::NotNow {
                order_id: answered,
                reason,
            }) if answered == order_id => JobOutcome::Later(format!("the lab: {reason}")),
            Ok(PrintResponse::Rejected {
                order_id: answered,
                reason,
            }) if answered == order_id => JobOutcome::Refused(reason),
            Ok(PrintResponse::MissingBlobs { .. }) => {
                JobOutcome::Later("the lab lost the images; will resend".into())
            }
            Ok(other) => {
                tracing::error!(%order_id, "the lab answered about another order or out of turn: {other:?}");
                JobOutcome::Later("the lab's answer did not match the job".into())
            }
            Err(e) => JobOutcome::Later(e.to_string()),
        }
    }

    /// Releases the hold of a job no lab could take. True once the acquirer says the
    /// hold is released (or can never be captured).
    async fn void(&self, order_id: OrderId, acquirer: &[u8], refused_lab: Option<Vec<u8>>) -> bool {
        let Ok(peer) = PeerId::from_bytes(acquirer) else {
            return false;
        };
        let request = match refused_lab {
            Some(lab) => AuthRequest::VoidRefused { order_id, lab },
            None => AuthRequest::Void { order_id },
        };
        match self.ask_auth_of(peer, request).await {
            Ok(AuthResponse::Voided { .. }) => {
                tracing::info!(%order_id, "hold voided");
                true
            }
            Ok(AuthResponse::HoldClosed { reason, .. })
                if reason.contains("captured")
                    || reason == printmesh_protocol::wire::auth::LAB_HAS_IT =>
            {
                tracing::warn!(%order_id, "the hold was not released: {reason}");
                false
            }
            Ok(AuthResponse::HoldClosed { reason, .. }) => {
                tracing::info!(%order_id, "no hold to void: {reason}");
                true
            }
            Ok(other) => {
                tracing::warn!(%order_id, "void answered {other:?}");
                false
            }
            Err(e) => {
                tracing::warn!(%order_id, "void not delivered: {e}");
                false
            }
        }
    }

    // ------------------------------------------------------------------ capture

    /// A gossiped event. `Shipped` from the lab that has the job triggers the capture:
    /// of an accepted order, or of one whose job went to that lab but whose answer
    /// was never recorded (the prints exist, so the customer pays for them).
    async fn on_event(&self, event: OrderEvent) {
        if let EventKind::Rejected { reason } = &event.kind {
            self.on_lab_rejected(&event, reason).await;
            return;
        }
        if event.kind == EventKind::Refunded {
            self.on_refunded(&event).await;
            return;
        }
        if event.kind != EventKind::Shipped {
            return;
        }
        let order_id = event.order_id;
        let _guard = self.locks.lock(order_id).await;
        let mut order = match self.orders.get(order_id.to_bytes()) {
            Ok(Some(order)) => order,
            Ok(None) => {
                // Maybe another intermediary's order; maybe ours from before a lost
                // disk. Whoever has it captures; if nobody does, this one adopts it.
                // (An I/O error stops the node; any other read error skips the mark.)
                if !self.orphans.contains(order_id.to_bytes()).unwrap_or(true) {
                    let _ = self
                        .orphans
                        .insert(order_id.to_bytes(), &(event.origin.clone(), now_ms()));
                    let _ = self.node.db.flush().await;
                }
                return;
            }
            Err(e) => {
                tracing::error!(%order_id, "cannot read the order: {e}");
                return;
            }
        };
        if order.lab.as_deref() != Some(event.origin.as_slice()) {
            tracing::warn!(%order_id, "a shipment event from a lab that does not have the job: ignored");
            return;
        }
        let printing = match &order.stage {
            Stage::Answered(OrderResponse::Accepted(_)) => true,
            Stage::Authorised { lab: Some(lab), .. } => *lab == event.origin,
            _ => false,
        };
        if !printing {
            return;
        }
        if order.capture == Capture::NotShipped {
            order.capture = Capture::Due { since_ms: now_ms() };
            if let Err(e) = self.save(&mut order).await {
                tracing::error!(%order_id, "cannot record the shipment: {e}");
                return;
            }
        }
        drop(_guard);
        self.capture(order_id).await;
    }

    /// The lab that accepted a job found it cannot print it after all (an image that
    /// does not decode): the customer pays nothing, so the hold is released. Only the
    /// lab that has the job can say so, and only before it shipped.
    /// The order's acquirer gave the payment back before settlement: the order leaves
    /// the bill (the acquirer will not pay it), and nothing is paid on for it.
    async fn on_refunded(&self, event: &OrderEvent) {
        let order_id = event.order_id;
        let _guard = self.locks.lock(order_id).await;
        let Ok(Some(mut order)) = self.orders.get(order_id.to_bytes()) else {
            return;
        };
        if order.acquirer.as_deref() != Some(event.origin.as_slice()) {
            tracing::warn!(%order_id, "a refund from another acquirer than the order's: ignored");
            return;
        }
        if order.settlement.is_some() || !matches!(order.capture, Capture::Captured { .. }) {
            return;
        }
        order.capture = Capture::Refused {
            at_ms: now_ms(),
            reason: "refunded by the acquirer".into(),
        };
        match self.save(&mut order).await {
            Ok(()) => tracing::info!(%order_id, "refunded: off the bill"),
            Err(e) => tracing::error!(%order_id, "cannot record the refund: {e}"),
        }
    }

    async fn on_lab_rejected(&self, event: &OrderEvent, reason: &str) {
        let order_id = event.order_id;
        let _guard = self.locks.lock(order_id).await;
        let Ok(Some(mut order)) = self.orders.get(order_id.to_bytes()) else {
            return;
        };
        if order.lab.as_deref() != Some(event.origin.as_slice())
            || order.capture != Capture::NotShipped
        {
            return;
        }
        if order.acquirer.is_none() {
            return;
        }
        order.capture = Capture::VoidDue {
            since_ms: now_ms(),
            reason: format!("the lab could not print it: {reason}"),
        };
        if let Err(e) = self.save(&mut order).await {
            tracing::error!(%order_id, "cannot record the lab's rejection: {e}");
            return;
        }
        drop(_guard);
        tracing::warn!(%order_id, "the lab cannot print it ({reason}): releasing the hold");
        self.release_hold(order_id).await;
    }

    /// Voids the hold of an order marked `VoidDue`; once the acquirer confirms, the
    /// order is `Refused` (nothing to capture or bill). Retried until then.
    async fn release_hold(&self, order_id: OrderId) {
        let _guard = self.locks.lock(order_id).await;
        let Ok(Some(mut order)) = self.orders.get(order_id.to_bytes()) else {
            return;
        };
        let (Capture::VoidDue { reason, .. }, Some(acquirer)) =
            (order.capture.clone(), order.acquirer.clone())
        else {
            return;
        };
        if !self.void(order_id, &acquirer, order.lab.clone()).await {
            return;
        }
        order.capture = Capture::Refused {
            at_ms: now_ms(),
            reason,
        };
        if let Err(e) = self.save(&mut order).await {
            tracing::error!(%order_id, "cannot record the released hold: {e}");
        }
    }

    /// Captures an order's hold (idempotent at the acquirer).
    async fn capture(&self, order_id: OrderId) {
        let _guard = self.locks.lock(order_id).await;
        let Ok(Some(mut order)) = self.orders.get(order_id.to_bytes()) else {
            return;
        };
        if !matches!(order.capture, Capture::Due { .. }) {
            return;
        }
        let Some(peer) = order
            .acquirer
            .as_deref()
            .and_then(|b| PeerId::from_bytes(b).ok())
        else {
            return;
        };
        let outcome = match self
            .ask_auth_of(peer, AuthRequest::Capture { order_id })
            .await
        {
            Ok(AuthResponse::Captured { .. }) => {
                printmesh_runtime::failpoint::crash_point("intermediary.captured");
                Capture::Captured { at_ms: now_ms() }
            }
            Ok(AuthResponse::HoldClosed { reason, .. }) => {
                if reason == printmesh_protocol::wire::auth::CAPTURED_ELSEWHERE {
                    tracing::info!(%order_id, "captured by another intermediary, which bills it");
                } else {
                    tracing::error!(%order_id, amount = %order.total, "the acquirer will not capture: {reason}");
                }
                Capture::Refused {
                    at_ms: now_ms(),
                    reason,
                }
            }
            Ok(other) => {
                tracing::warn!(%order_id, "capture answered {other:?}; will try again");
                return;
            }
            Err(e) => {
                tracing::info!(%order_id, "capture not delivered yet: {e}");
                return;
            }
        };
        let captured = matches!(outcome, Capture::Captured { .. });
        order.capture = outcome;
        match self.save(&mut order).await {
            Ok(()) if captured => {
                tracing::info!(%order_id, amount = %order.total, "captured; on the bill")
            }
            Ok(()) => {}
            Err(e) => tracing::error!(%order_id, "cannot record the capture: {e}"),
        }
    }

    async fn ask_auth_of(
        &self,
        peer: PeerId,
        request: AuthRequest,
    ) -> Result<AuthResponse, crate::net::NetError> {
        ask_auth(&self.node.client, peer, request).await
    }

    fn hold_watch(&self, order_id: OrderId) -> Option<HoldWatch> {
        self.holds.get(order_id.to_bytes()).ok().flatten()
    }

    /// Looks at the hold again half-way to its expiry (extensions reach no further
    /// than `pay_by`).
    fn schedule_hold(
        &self,
        order_id: OrderId,
        terms: &HoldTerms,
        now: i64,
    ) -> Result<(), StoreError> {
        let at = if terms.expires_at_ms >= terms.pay_by_ms {
            terms.expires_at_ms
        } else {
            now.saturating_add(terms.expires_at_ms.saturating_sub(now) / 2)
        };
        self.hold_due.insert(due_key(at, order_id), &())
    }

    /// Keeps the holds of orders a lab is printing alive until they ship: each is
    /// extended half-way to its expiry, and the lab is told the new terms (a lab ships
    /// nothing whose hold is about to lapse).
    async fn keep_holds(&self) {
        let now = now_ms();
        let due: Vec<(sled::IVec, OrderId)> = self
            .hold_due
            .raw()
            .range(..due_key(now, OrderId::from_bytes([0xff; 16])))
            .keys()
            .filter_map(Result::ok)
            .filter_map(|k| {
                let id = <[u8; 16]>::try_from(k.get(8..24)?).ok()?;
                Some((k.clone(), OrderId::from_bytes(id)))
            })
            .take(1000)
            .collect();
        for (key, order_id) in due {
            let _ = self.hold_due.raw().remove(&key);
            if let Err(e) = self.keep_hold(order_id, now).await {
                tracing::error!(%order_id, "cannot keep the hold: {e}");
            }
        }
    }

    async fn keep_hold(&self, order_id: OrderId, now: i64) -> Result<(), StoreError> {
        let Some(order) = self.orders.get(order_id.to_bytes())? else {
            return Ok(());
        };
        let printing = matches!(
            order.stage,
            Stage::Answered(OrderResponse::Accepted(_)) | Stage::Authorised { lab: Some(_), .. }
        );
        if !printing || order.capture != Capture::NotShipped {
            return Ok(());
        }
        let (Some(mut watch), Some(acquirer), Some(lab)) = (
            self.hold_watch(order_id),
            order
                .acquirer
                .as_deref()
                .and_then(|b| PeerId::from_bytes(b).ok()),
            order
                .lab
                .as_deref()
                .and_then(|b| PeerId::from_bytes(b).ok()),
        ) else {
            return Ok(());
        };
        let half_way = watch.noted_at_ms + (watch.terms.expires_at_ms - watch.noted_at_ms) / 2;
        if now >= half_way && watch.terms.expires_at_ms < watch.terms.pay_by_ms {
            let request = AuthRequest::Extend { order_id };
            match self.ask_auth_of(acquirer, request).await {
                Ok(AuthResponse::Extended { terms, .. }) => {
                    watch = HoldWatch {
                        lab_told: terms == watch.terms && watch.lab_told,
                        terms,
                        noted_at_ms: now,
                    };
                    self.holds.insert(order_id.to_bytes(), &watch)?;
                }
                Ok(AuthResponse::HoldClosed { reason, .. }) => {
                    tracing::error!(%order_id, "the hold cannot be extended: {reason}; the lab will not ship it");
                    return Ok(());
                }
                Ok(other) => tracing::warn!(%order_id, "extend answered {other:?}"),
                Err(e) => tracing::info!(%order_id, "extension not delivered yet: {e}"),
            }
        }
        if !watch.lab_told {
            let request = PrintRequest::Terms {
                order_id,
                terms: watch.terms,
            };
            match self.node.client.request::<PrintProto>(lab, request).await {
                Ok(PrintResponse::TermsNoted { .. }) => {
                    watch.lab_told = true;
                    self.holds.insert(order_id.to_bytes(), &watch)?;
                }
                Ok(other) => {
                    tracing::warn!(%order_id, "the lab answered the new terms with {other:?}")
                }
                Err(e) => tracing::info!(%order_id, "new terms not delivered to the lab yet: {e}"),
            }
        }
        let next = if watch.lab_told {
            None
        } else {
            Some(now + TELL_LAB_AGAIN_MS)
        };
        match next {
            Some(at) => self.hold_due.insert(due_key(at, order_id), &())?,
            None if watch.terms.expires_at_ms >= watch.terms.pay_by_ms => {}
            None => self.schedule_hold(order_id, &watch.terms, now)?,
        }
        self.node.db.flush().await
    }

    /// A shipped order nobody here has a record of: after [`ADOPT_AFTER`] (the
    /// intermediary that has it captures first), this one captures it at the acquirer
    /// that holds it, bills it and pays the lab. The acquirer captures once: a second
    /// adopter hears it was captured elsewhere.
    async fn adopt_orphans(&self) {
        let now = now_ms();
        let orphans: Vec<(OrderId, Vec<u8>)> = self
            .orphans
            .entries()
            .filter_map(Result::ok)
            .filter(|(_, (_, since))| now.saturating_sub(*since) >= ADOPT_AFTER.as_millis() as i64)
            .filter_map(|(k, (lab, _))| {
                Some((
                    OrderId::from_bytes(<[u8; 16]>::try_from(k.as_slice()).ok()?),
                    lab,
                ))
            })
            .collect();
        if orphans.is_empty() {
            return;
        }
        let acquirers = self.node.client.peers_with_role(Role::Acquirer).await;
        for (order_id, shipped_by) in orphans {
            let _guard = self.locks.lock(order_id).await;
            if matches!(self.orders.get(order_id.to_bytes()), Ok(Some(_))) {
                let _ = self.orphans.remove(order_id.to_bytes());
                continue;
            }
            let mut settled = true;
            for acquirer in &acquirers {
                let request = AuthRequest::Adopt {
                    order_id,
                    shipped_by: shipped_by.clone(),
                };
                match self.ask_auth_of(acquirer.peer, request).await {
                    Ok(AuthResponse::Adopted {
                        amount, store, lab, ..
                    }) => {
                        let (lab, lab_name) = match lab {
                            Some((lab, name)) => (lab, Some(name)),
                            None => (shipped_by.clone(), None),
                        };
                        let mut order = RoutedOrder {
                            order_id,
                            store,
                            lines: Vec::new(),
                            total: amount,
                            method: PaymentMethod::Credit,
                            card_last4: "????".into(),
                            card_brand: CardBrand::Other,
                            entry: EntryMode::Swipe,
                            token: None,
                            stage: Stage::Received,
                            acquirer: Some(acquirer.peer.to_bytes()),
                            lab: Some(lab),
                            lab_name,
                            capture: Capture::Captured { at_ms: now },
                            settlement: None,
                            received_at_ms: now,
                            updated_at_ms: now,
                        };
                        if let Err(e) = self.save(&mut order).await {
                            tracing::error!(%order_id, "cannot record the adopted order: {e}");
                            settled = false;
                            break;
                        }
                        tracing::info!(%order_id, amount = %amount, "adopted a shipped order nobody else captured: on the bill");
                        break;
                    }
                    Ok(AuthResponse::HoldClosed { .. }) | Ok(AuthResponse::NotMine { .. }) => {}
                    Ok(other) => {
                        tracing::warn!(%order_id, "adopt answered {other:?}");
                        settled = false;
                    }
                    Err(e) => {
                        tracing::info!(%order_id, "adoption not delivered yet: {e}");
                        settled = false;
                    }
                }
            }
            if settled && !acquirers.is_empty() {
                let _ = self.orphans.remove(order_id.to_bytes());
            }
        }
    }

    async fn retry(self: &Arc<Self>) {
        self.forward_kept().await;
        self.keep_holds().await;
        self.adopt_orphans().await;
        for order_id in self.work_under(&[CAPTURE_DUE]) {
            self.capture(order_id).await;
        }
        for order_id in self.work_under(&[VOID_DUE]) {
            self.release_hold(order_id).await;
        }
        // Lab fees received but not yet paid on, by lab and batch.
        let mut due: BTreeMap<(Vec<u8>, BatchId), Vec<SettleLine>> = BTreeMap::new();
        for order_id in self.work_under(&[LAB_UNPAID]) {
            let Ok(Some(o)) = self.orders.get(order_id.to_bytes()) else {
                continue;
            };
            if let (Some(s), Some(lab)) = (&o.settlement, &o.lab) {
                if !s.lab_paid {
                    due.entry((lab.clone(), s.batch))
                        .or_default()
                        .push(SettleLine {
                            order_id: o.order_id,
                            amount: s.lab_fee,
                        });
                }
            }
        }
        for ((lab, batch), lines) in due {
            self.pay_lab(&lab, batch, lines).await;
        }
    }

    // ------------------------------------------------------------------ settlement

    async fn on_settle(self: &Arc<Self>, inbound: Inbound<SettleProto>) {
        let (peer, request, responder) = inbound.into_parts();
        let from_acquirer = self
            .node
            .client
            .peers_with_role(Role::Acquirer)
            .await
            .iter()
            .any(|p| p.peer == peer);
        let response = match request {
            SettleRequest::BillPlease { batch } | SettleRequest::Payment { batch, .. }
                if !from_acquirer =>
            {
                SettleResponse::Refused {
                    batch,
                    reason: "only an acquirer settles with an intermediary".into(),
                }
            }
            SettleRequest::BillPlease { batch } => self.bill(batch, &peer.to_bytes()),
            SettleRequest::Payment {
                batch,
                lines,
                total,
            } => self.payment(batch, &peer.to_bytes(), lines, total).await,
            SettleRequest::LabPayment { batch, .. } => SettleResponse::Refused {
                batch,
                reason: "an intermediary pays labs, it is not paid as one".into(),
            },
        };
        responder.respond(response);
    }

    /// The bill: every captured order held at this acquirer and not yet paid.
    fn bill(&self, batch: BatchId, acquirer: &[u8]) -> SettleResponse {
        let mut lines = Vec::new();
        let mut total: Option<Money> = None;
        for order_id in self.work_under(&peer_prefix(BILLABLE, acquirer)) {
            if lines.len() >= proto::MAX_SETTLE_LINES {
                break;
            }
            let Ok(Some(o)) = self.orders.get(order_id.to_bytes()) else {
                continue;
            };
            if !matches!(o.capture, Capture::Captured { .. })
                || o.settlement.is_some()
                || o.acquirer.as_deref() != Some(acquirer)
            {
                continue;
            }
            total = Some(match total {
                Some(t) => t.checked_add(o.total).unwrap_or(t),
                None => o.total,
            });
            lines.push(SettleLine {
                order_id: o.order_id,
                amount: o.total,
            });
        }
        let total = total.unwrap_or(Money::new(0, self.prices.currency));
        tracing::info!(%batch, orders = lines.len(), %total, "bill sent to the acquirer");
        SettleResponse::Bill {
            batch,
            lines,
            total,
        }
    }

    /// The acquirer paid these orders: record what we received and what we owe each
    /// lab, all in one transaction on disk, answer, then pay the labs. A payment sent
    /// again is answered with the same total and changes nothing.
    async fn payment(
        self: &Arc<Self>,
        batch: BatchId,
        acquirer: &[u8],
        lines: Vec<SettleLine>,
        total: Money,
    ) -> SettleResponse {
        let lines: Vec<SettleLine> = lines.into_iter().take(proto::MAX_SETTLE_LINES).collect();
        let ids: BTreeSet<OrderId> = lines.iter().map(|l| l.order_id).collect();
        // In order id order, so two payments never wait on each other.
        let mut guards = Vec::with_capacity(ids.len());
        for id in &ids {
            guards.push(self.locks.lock(*id).await);
        }
        let refused = |why: String| {
            tracing::error!(%batch, "cannot record the payment: {why}");
            SettleResponse::Refused {
                batch,
                reason: "the intermediary could not record the payment; send it again".into(),
            }
        };
        let mut writes = WriteSet::default();
        let mut labs: BTreeMap<Vec<u8>, Vec<SettleLine>> = BTreeMap::new();
        let mut received: Option<Money> = None;
        let mut seen = BTreeSet::new();
        for line in &lines {
            if !seen.insert(line.order_id) {
                tracing::warn!(order_id = %line.order_id, %batch, "paid twice in one payment: once counted");
                continue;
            }
            let mut o = match self.orders.get(line.order_id.to_bytes()) {
                Ok(Some(o)) => o,
                Ok(None) => {
                    tracing::warn!(order_id = %line.order_id, %batch, "paid for an order we do not know");
                    continue;
                }
                Err(e) => return refused(e.to_string()),
            };
            if o.acquirer.as_deref() != Some(acquirer)
                || o.total != line.amount
                || !matches!(o.capture, Capture::Captured { .. })
            {
                tracing::warn!(order_id = %line.order_id, %batch, "payment does not match a captured order");
                continue;
            }
            if let Some(s) = &o.settlement {
                if s.batch == batch {
                    // This payment, sent again: counted as before.
                    received = Some(match received {
                        Some(r) => r.checked_add(o.total).unwrap_or(r),
                        None => o.total,
                    });
                } else {
                    tracing::warn!(order_id = %line.order_id, %batch, "already settled in {}", s.batch);
                }
                continue;
            }
            let (commission, lab_fee) = self.split(o.total);
            o.settlement = Some(Settled {
                batch,
                received: o.total,
                commission,
                lab_fee,
                lab_paid: false,
            });
            if let Err(e) = self.stage(&mut writes, &mut o) {
                return refused(e.to_string());
            }
            received = Some(match received {
                Some(r) => r.checked_add(o.total).unwrap_or(r),
                None => o.total,
            });
            if let Some(lab) = &o.lab {
                labs.entry(lab.clone()).or_default().push(SettleLine {
                    order_id: o.order_id,
                    amount: lab_fee,
                });
            }
        }
        if let Err(e) = self.commit(&writes) {
            return refused(e.to_string());
        }
        if let Err(e) = self.node.db.flush().await {
            return refused(e.to_string());
        }
        drop(guards);
        let received = received.unwrap_or(Money::new(0, total.currency()));
        tracing::info!(%batch, %total, %received, "payment received from the acquirer");
        for (lab, lines) in labs {
            let me = self.clone();
            tokio::spawn(async move { me.pay_lab(&lab, batch, lines).await });
        }
        SettleResponse::Received {
            batch,
            total: received,
        }
    }

    async fn pay_lab(&self, lab: &[u8], batch: BatchId, lines: Vec<SettleLine>) {
        let Ok(peer) = PeerId::from_bytes(lab) else {
            return;
        };
        let Some(first) = lines.first() else { return };
        let total = lines.iter().skip(1).fold(first.amount, |acc, l| {
            acc.checked_add(l.amount).unwrap_or(acc)
        });
        let request = SettleRequest::LabPayment {
            batch,
            lines: lines.clone(),
            total,
        };
        match self.node.client.request::<SettleProto>(peer, request).await {
            Ok(SettleResponse::Received { .. }) => {
                let ids: BTreeSet<OrderId> = lines.iter().map(|l| l.order_id).collect();
                let mut guards = Vec::with_capacity(ids.len());
                for id in &ids {
                    guards.push(self.locks.lock(*id).await);
                }
                let mut writes = WriteSet::default();
                for id in &ids {
                    if let Ok(Some(mut o)) = self.orders.get(id.to_bytes()) {
                        match o.settlement.as_mut() {
                            Some(s) if !s.lab_paid => s.lab_paid = true,
                            _ => continue,
                        }
                        if let Err(e) = self.stage(&mut writes, &mut o) {
                            tracing::error!(order_id = %id, "cannot record the lab payment: {e}");
                        }
                    }
                }
                let stored = match self.commit(&writes) {
                    Ok(()) => self.node.db.flush().await,
                    Err(e) => Err(e),
                };
                match stored {
                    Ok(()) => {
                        tracing::info!(%batch, %total, orders = lines.len(), "print fees paid to the lab")
                    }
                    // The lab answers a repeated payment with its first answer; the
                    // retry task sends it again.
                    Err(e) => tracing::error!(%batch, "cannot record the lab payment: {e}"),
                }
            }
            Ok(other) => tracing::warn!(%batch, "the lab answered {other:?}"),
            Err(e) => tracing::info!(%batch, "lab payment not delivered yet: {e}"),
        }
    }

    async fn on_order(&self, inbound: Inbound<OrderProto>) {
        let store = inbound.store.clone();
        let (peer, request, responder) = inbound.into_parts();
        let order_id = request.order_id();
        let answer = match request {
            OrderRequest::Status => {
                let can_authorise = !self
                    .node
                    .client
                    .peers_with_role(Role::Acquirer)
                    .await
                    .is_empty();
                Ok(OrderResponse::Status { can_authorise })
            }
            OrderRequest::Cancel {
                order_id,
                store: order_store,
                key,
                reason,
            } => {
                if store.as_ref().is_some_and(|s| *s != order_store) {
                    Ok(OrderResponse::Rejected {
                        order_id,
                        reason: "another store's order".into(),
                    })
                } else {
                    self.cancel(order_id, order_store, key, reason).await
                }
            }
            request => self.submit(request, store).await,
        };
        match answer {
            Ok(r) => responder.respond(r),
            Err(e) => {
                tracing::error!(%peer, %order_id, "order failed: {e}");
                responder.respond(OrderResponse::Unavailable {
                    order_id,
                    reason: "the intermediary could not record the order; try again".into(),
                });
            }
        }
    }
}

/// Asks an acquirer, and takes its answer only if it is about the order asked about
/// (a peer that answers with another order's data is an error, not an answer).
async fn ask_auth(
    client: &crate::net::Client,
    peer: PeerId,
    request: AuthRequest,
) -> Result<AuthResponse, crate::net::NetError> {
    let order_id = request.order_id();
    let answer = client.request::<AuthProto>(peer, request).await?;
    if answer.order_id() != order_id {
        tracing::error!(%order_id, %peer, answered = %answer.order_id(), "the acquirer answered about another order: not taken");
        return Err(crate::net::NetError::Request {
            peer,
            reason: format!(
                "it answered about order {} when asked about {order_id}",
                answer.order_id()
            ),
        });
    }
    Ok(answer)
}

/// What a lab made of a job.
enum JobOutcome {
    Accepted {
        delivery_date: chrono::NaiveDate,
        lab: String,
    },
    /// Refused (it keeps its refusal): another lab may take it.
    Refused(String),
    /// No answer, or not yet: the order waits (the lab may have it).
    Later(String),
}

/// Labs a job is offered to, at most, before the order is refused.
const MAX_LAB_TRIES: usize = 8;
/// How long a lab that did not answer is passed over (times its failures in a row).
const LAB_REST: Duration = Duration::from_secs(15);

/// An order's payment hold as this intermediary keeps it alive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldWatch {
    pub terms: HoldTerms,
    /// When these terms were heard.
    pub noted_at_ms: i64,
    /// Whether the lab has the terms.
    pub lab_told: bool,
}

/// What one stage of a submission leads to: the next stage, or the answer now.
enum Step<T> {
    Next(T),
    Answer(OrderResponse),
}

const MALFORMED_SUMMARY: &str = "the card summary is malformed";

/// "Try again later": the order stays where it is; the kiosk retries (here or through
/// another intermediary).
fn unavailable(order_id: OrderId, reason: String) -> OrderResponse {
    tracing::warn!(%order_id, "cannot complete now: {reason}");
    OrderResponse::Unavailable { order_id, reason }
}

/// The sealed order, if this kiosk may submit it: the card sealed to the acquirer,
/// and the order of the kiosk's own store.
fn admit(
    request: OrderRequest,
    kiosk_store: Option<StoreId>,
) -> Result<SealedOrder, OrderResponse> {
    let submit = match request {
        OrderRequest::SubmitSealed(order) => order,
        OrderRequest::Status | OrderRequest::Cancel { .. } => {
            let order_id = request.order_id();
            return Err(OrderResponse::Rejected {
                order_id,
                reason: "not a submission".into(),
            });
        }
        OrderRequest::Submit(o) | OrderRequest::SubmitWithPin { order: o, .. } => {
            tracing::warn!(order_id = %o.order_id, "unsealed card data refused");
            return Err(OrderResponse::Rejected {
                order_id: o.order_id,
                reason: "card data must be sealed to the acquirer; this kiosk needs an update"
                    .into(),
            });
        }
    };
    if let Some(store) = kiosk_store.filter(|s| *s != submit.store) {
        let order_id = submit.order_id;
        tracing::warn!(%order_id, kiosk_store = %store, order_store = %submit.store, "a kiosk submitted another store's order: refused");
        return Err(OrderResponse::Rejected {
            order_id,
            reason: format!("this kiosk belongs to store {store}, not {}", submit.store),
        });
    }
    Ok(submit)
}

printmesh_runtime::requests! {
    /// What an intermediary answers: a kiosk's order, an acquirer's settlement.
    pub enum IntermediaryRequest {
        Order(OrderProto),
        Settle(SettleProto),
        Content(ContentProto),
        Download(DownloadProto),
    }
}

impl printmesh_runtime::role::Role for Intermediary {
    const KIND: Role = Role::Intermediary;
    type Config = IntermediaryConfig;
    type Command = IntermediaryCommand;
    type Request = IntermediaryRequest;

    fn open(node: Node, config: IntermediaryConfig) -> Result<Arc<Intermediary>, NodeError> {
        let me = Intermediary {
            prices: load_prices(&config.prices)?,
            commission_bps: config.commission_bps,
            orders: node.db.tree("orders")?,
            work: node.db.tree("work")?,
            holds: node.db.tree("holds")?,
            hold_due: node.db.tree("hold_due")?,
            orphans: node.db.tree("orphans")?,
            forward: node.db.tree("forward")?,
            routes: config.routes.clone(),
            acquirer_of_key: Default::default(),
            lab_health: Default::default(),
            catalogues: node.catalogues.clone(),
            downloads: node.db.tree("downloads")?,
            node,
            locks: OrderLocks::default(),
        };
        me.rebuild_work()?;
        // A look at every hold kept alive, whatever a crash left of the schedule.
        let now = now_ms();
        for (k, watch) in me.holds.entries().filter_map(Result::ok) {
            if let Ok(id) = <[u8; 16]>::try_from(k.as_slice()) {
                me.schedule_hold(OrderId::from_bytes(id), &watch.terms, now)?;
            }
        }
        Ok(Arc::new(me))
    }

    /// Starts the task that retries captures and lab payments (until the node stops).
    fn start(self: &Arc<Self>, mut stopping: Stopping) {
        let me = self.clone();
        let mut stop_sync = stopping.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_EVERY) => me.retry().await,
                    _ = stopping.wait() => break,
                }
            }
        });
        // The content companies' catalogues, kept fresh.
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.sync_catalogues().await;
                tokio::select! {
                    _ = tokio::time::sleep(printmesh_runtime::catalogues::SYNC_EVERY) => {}
                    _ = stop_sync.wait() => break,
                }
            }
        });
    }

    async fn handle(self: Arc<Self>, event: RoleEvent<Self>) {
        match event {
            RoleEvent::Request(IntermediaryRequest::Order(inbound)) => self.on_order(inbound).await,
            RoleEvent::Request(IntermediaryRequest::Settle(inbound)) => {
                self.on_settle(inbound).await
            }
            RoleEvent::Request(IntermediaryRequest::Content(inbound)) => {
                self.on_content(inbound).await
            }
            RoleEvent::Request(IntermediaryRequest::Download(inbound)) => {
                self.on_download(inbound).await
            }
            // A content company that appears is asked for its catalogue at once.
            RoleEvent::PeerReady(info) if info.hello.role == Role::Content => {
                self.sync_catalogues().await
            }
            RoleEvent::Event(event) => self.on_event(event).await,
            RoleEvent::Admin(command, reply) => {
                let response = match command {
                    IntermediaryCommand::Report { date, csv } => AdminResponse::from_result(
                        report(&self.node.db, date).map(|r| r.render(csv)),
                    ),
                };
                let _ = reply.send(response);
            }
            // Peers are found when an order needs one.
            RoleEvent::PeerReady(_) | RoleEvent::PeerGone(_) => {}
        }
    }
}

/// An intermediary's admin commands (`printmesh intermediary report`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum IntermediaryCommand {
    /// The reconciliation report of a day.
    Report { date: chrono::NaiveDate, csv: bool },
}

impl RoleCommand for IntermediaryCommand {
    const ROLE: Role = Role::Intermediary;
}

/// What `printmesh inspect` shows of an intermediary.
pub fn inspect(db: &crate::store::Db) -> Result<serde_json::Value, StoreError> {
    let orders: Tree<RoutedOrder> = db.tree("orders")?;
    let mut out = Vec::new();
    for entry in orders.entries() {
        let (_, o) = entry?;
        let stage = match &o.stage {
            Stage::Received => "received".to_string(),
            Stage::Authorised { .. } => "authorised".to_string(),
            Stage::Answered(r) => format!("answered: {}", r.summary()),
        };
        out.push(serde_json::json!({
            "order_id": o.order_id.to_string(), "store": o.store.to_string(), "total_minor": o.total.amount_minor(),
            "card_last4": o.card_last4, "card": format!("{} {}", o.card_brand, o.card_last4),
            "token": o.token.map(|t| t.to_string()), "stage": stage,
            "capture": format!("{:?}", o.capture), "settled": o.settlement.as_ref().map(|s| s.batch.to_string()),
            "lab": o.lab_name, "lab_paid": o.settlement.as_ref().map(|s| s.lab_paid),
            "lab_fee_minor": o.settlement.as_ref().map(|s| s.lab_fee.amount_minor()),
        }));
    }
    Ok(serde_json::json!({ "role": "intermediary", "orders": out }))
}

// ---------------------------------------------------------------------- the day's report

/// The intermediary: what the acquirer paid it that day, its commission, the print
/// fees it paid each lab and the download sales it paid each content company (their
/// prices less the commission).
pub fn report(db: &crate::store::Db, date: chrono::NaiveDate) -> Result<Report, StoreError> {
    let orders: Tree<RoutedOrder> = db.tree("orders")?;
    let downloads: Tree<downloads::DownloadRecord> = db.tree("downloads")?;
    let mut rows = Vec::new();
    let mut currency = Currency::Jpy;
    let (mut received, mut commission, mut fees, mut unpaid_fees) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut sales, mut unpaid_sales) = (Vec::new(), Vec::new());
    for (_, o) in orders.entries().filter_map(Result::ok) {
        let Some(s) = &o.settlement else { continue };
        if s.batch.date != date {
            continue;
        }
        let download = downloads.contains(o.order_id.to_bytes())?;
        currency = s.received.currency();
        received.push(s.received);
        commission.push(s.commission);
        let (paid, unpaid) = if download {
            (&mut sales, &mut unpaid_sales)
        } else {
            (&mut fees, &mut unpaid_fees)
        };
        paid.push(s.lab_fee);
        if !s.lab_paid {
            unpaid.push(s.lab_fee);
        }
        rows.push(vec![
            s.batch.to_string(),
            o.order_id.to_string(),
            o.store.to_string(),
            if download { "download" } else { "prints" }.into(),
            o.lab_name.clone().unwrap_or_default(),
            if s.lab_paid {
                "paid".into()
            } else {
                "due".into()
            },
            money_text(s.commission),
            money_text(s.lab_fee),
            money_text(s.received),
        ]);
    }
    Ok(Report {
        party: "intermediary".into(),
        date,
        tables: vec![Table {
            title: "Received from the acquirer, kept, and paid to labs and content companies"
                .into(),
            columns: vec![
                "batch",
                "order",
                "store",
                "kind",
                "paid to",
                "paid?",
                "commission",
                "fee or sales",
                "received",
            ],
            rows,
        }],
        totals: vec![
            ("received from the acquirer".into(), sum(received, currency)),
            ("commission kept".into(), sum(commission, currency)),
            ("print fees to labs".into(), sum(fees, currency)),
            ("print fees not yet paid".into(), sum(unpaid_fees, currency)),
            (
                "download sales to content companies".into(),
                sum(sales, currency),
            ),
            (
                "download sales not yet paid".into(),
                sum(unpaid_sales, currency),
            ),
        ],
    })
}
