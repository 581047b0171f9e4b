//! The settlement institution (patent 103/403).
//!
//! - **Card data** arrives sealed by the kiosk to this acquirer's key (HPKE, see
//!   `protocol::seal`), bound to the order's id, amount, store and payment method. It is
//!   opened in memory only, per request, before the request reaches the books: what the
//!   books see is the card's token (a keyed hash, `token.key`), expiry, entry mode and,
//!   if a PIN was entered, its verification value under a separate key (`pvv.key`).
//! - **Card types**: credit (a credit line), debit (a balance; PIN required), point
//!   cards (a points balance in the card's currency, paid at `minor_per_point`), IC
//!   cards (the chip's track-2 equivalent; PIN required; the EMV cryptogram is not
//!   verified — out of scope).
//! - **PINs** are checked against a keyed verification value, never stored; three wrong
//!   PINs in a row block the card (75).
//! - **The ledger** (`protocol::ledger`): an authorisation is a hold on the card's
//!   account (`<order>:hold`), posted when the lab ships (capture), voided when the job
//!   is rejected, expired after `hold_ttl_secs` (an index by expiry time finds them).
//!   A replay returns the first result; the same order id with other details is refused.
//! - **Group commit**: every change goes through one writer task, which takes whatever
//!   requests are waiting (up to [`MAX_BATCH`]), decides them in order against the books
//!   as the batch leaves them, stores them in one sled transaction, flushes once, and
//!   only then answers. With `group_commit = false` it flushes after each request (the
//!   benchmark's baseline). A record that cannot be read fails the whole batch rather
//!   than being taken for absent.
//! - **Settlement** (patent [0064]-[0065]): `printmesh acquirer settle` closes a batch per
//!   intermediary: it reserves a batch id, asks for the intermediary's bill, pays the
//!   captured orders that match, and sends the payment advice. Reports and card
//!   statements come from the same records.

pub mod config;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use printmesh_protocol::card::{CardBrand, Expiry};
use printmesh_protocol::ledger::{
    self, Account, AccountId, Books, Change, Limit, MemBooks, Op, Transfer, TransferId, Unit,
};
use printmesh_protocol::messages::{
    AuthRequest, AuthResponse, BatchId, CardToken, DeclineCode, EventKind, HoldTerms,
    PaymentMethod, SealedAuthorise, SettleLine, SettleRequest, SettleResponse,
};
use printmesh_protocol::money::{Currency, Money};
use printmesh_protocol::pinblock::{pin_verification_value, Pin};
use printmesh_protocol::seal::{
    open_card, Binding, CardSummary, EntryMode, PinEntry, SealError, SealKey, SealSecret,
};
use printmesh_protocol::{AuthCode, OrderId, StoreId};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::cards::load_cards;
use crate::config::AcquirerConfig;
use crate::net::{AuthProto, Inbound, SettleProto};
use crate::node::{now_ms, AdminResponse, Node, NodeError, RoleCommand};
use crate::report::{money_text, sum, Report, Table};
use crate::store::{StoreError, Tree, WriteSet};
use printmesh_protocol::messages::Role;
use printmesh_protocol::secret::Secret;
use printmesh_protocol::wire::auth::{CAPTURED_ELSEWHERE, LAB_HAS_IT};
use printmesh_runtime::role::{RoleEvent, Stopping};

/// Most requests decided and stored in one group commit.
pub const MAX_BATCH: usize = 512;
/// Wrong PINs in a row before a card is blocked.
pub const MAX_WRONG_PINS: u8 = 3;
/// Most holds released in one sweep.
pub const MAX_EXPIRED_PER_SWEEP: usize = 1000;

/// What kind of card an account is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CardKind {
    Credit,
    Debit,
    Point,
    Ic,
}

impl CardKind {
    pub fn parse(kind: &str) -> Option<CardKind> {
        match kind {
            "credit" => Some(CardKind::Credit),
            "debit" => Some(CardKind::Debit),
            "point" => Some(CardKind::Point),
            "ic" => Some(CardKind::Ic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CardKind::Credit => "credit",
            CardKind::Debit => "debit",
            CardKind::Point => "point",
            CardKind::Ic => "ic",
        }
    }

    /// Whether a payment by `method`, read by `entry`, may use a card of this kind.
    fn allows(self, method: PaymentMethod, entry: EntryMode) -> bool {
        match (method, self) {
            (PaymentMethod::Credit, CardKind::Credit | CardKind::Ic) => true,
            (PaymentMethod::Debit, CardKind::Debit) => true,
            (PaymentMethod::PointCard, CardKind::Point) => true,
            (PaymentMethod::IcCard, CardKind::Ic) => entry == EntryMode::Chip,
            _ => false,
        }
    }

    fn needs_pin(self) -> bool {
        matches!(self, CardKind::Debit | CardKind::Ic)
    }
}

/// A card this acquirer issued, keyed by its token. No card number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRecord {
    pub last4: String,
    pub brand: CardBrand,
    pub kind: CardKind,
    pub expiry: Expiry,
    /// What the card's account counts: money, or points for a point card.
    pub unit: Unit,
    /// The currency the card pays in (a point card's points are worth this currency).
    pub currency: Currency,
    /// The credit line, opening balance or opening points, as seeded.
    pub limit: i64,
    pub wrong_pins: u8,
    pub blocked: bool,
    /// The PIN verification value (a keyed hash of PAN and PIN, `pvv.key`).
    pub pvv: [u8; 32],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldState {
    /// Declined: no hold was placed.
    None,
    Held,
    Captured,
    Voided,
    Expired,
    /// Captured, then given back (a refund or chargeback before settlement): never
    /// settled; a download's licences are revoked (`Refunded` event).
    Refunded,
}

/// The acquirer's record of one order's authorisation. Keyed by order id; its hold is
/// the ledger transfer `<order id>:hold`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRecord {
    pub order_id: OrderId,
    pub token: Option<[u8; 32]>,
    pub last4: String,
    pub brand: CardBrand,
    pub kind: Option<CardKind>,
    pub method: PaymentMethod,
    pub store: StoreId,
    /// The order's amount in money.
    pub amount: Money,
    /// What the hold is in the card's own unit (points for a point card).
    pub held: i64,
    /// A digest of what was asked (amount, store, method, card token): a replay must
    /// ask the same.
    pub digest: [u8; 32],
    pub response: AuthResponse,
    pub hold: HoldState,
    /// When the hold expires (while it is held).
    pub expires_at_ms: i64,
    /// The intermediary that asked (its peer id): only it captures or voids, and it is
    /// the one paid at settlement.
    pub via: Vec<u8>,
    pub at_ms: i64,
    pub captured_at_ms: Option<i64>,
    pub settled: Option<BatchId>,
}

/// The lab an order's job goes to, bound once at the acquirer that holds the order's
/// payment, so that whichever intermediary sends the job sends it to the same lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabBinding {
    pub lab: Vec<u8>,
    pub lab_name: String,
    /// The intermediary that bound it.
    pub by: Vec<u8>,
    pub at_ms: i64,
    /// Labs that refused the job before (their peer ids), newest last.
    pub refused_by: Vec<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchStatus {
    /// Reserved: the bill has been asked for.
    Open,
    /// Paid.
    Closed,
}

/// A settlement batch with one intermediary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: BatchId,
    pub intermediary: Vec<u8>,
    pub status: BatchStatus,
    pub lines: Vec<SettleLine>,
    pub total: Money,
    /// Lines of the intermediary's bill this acquirer has no capture for.
    pub unknown: Vec<SettleLine>,
    pub closed_at_ms: i64,
    pub advice_delivered: bool,
    /// The total the intermediary said it received (it should be `total`).
    pub confirmed: Option<Money>,
}

/// Settings from the `[acquirer]` config section.
#[derive(Clone, Debug)]
pub struct Settings {
    pub hold_ttl_ms: i64,
    pub hold_max_ms: i64,
    pub minor_per_point: i64,
    pub group_commit: bool,
}

pub fn card_account(token: &[u8; 32]) -> AccountId {
    AccountId(format!(
        "card:{}",
        hex::encode(token.get(..16).unwrap_or_default())
    ))
}

fn due_account(c: Currency) -> AccountId {
    AccountId(format!("acquirer:due-to-merchants:{}", c.code()))
}

fn cash_account(c: Currency) -> AccountId {
    AccountId(format!("acquirer:cash:{}", c.code()))
}

fn deposits_account(c: Currency) -> AccountId {
    AccountId(format!("bank:deposits:{}", c.code()))
}

fn programme_account(c: Currency) -> AccountId {
    AccountId(format!("points:programme:{}", c.code()))
}

fn points_issued() -> AccountId {
    AccountId("points:issued".into())
}

fn points_redeemed() -> AccountId {
    AccountId("points:redeemed".into())
}

fn short_token(token: &[u8; 32]) -> CardToken {
    let mut t = [0u8; 16];
    t.copy_from_slice(token.get(..16).unwrap_or(&[0; 16]));
    CardToken(t)
}

/// The PIN as the books see it: its verification value, never the PIN.
enum PinCheck {
    None,
    Value([u8; 32]),
    Unreadable,
}

/// What the books need of an opened envelope. No card number, no PIN.
struct CardFacts {
    token: [u8; 32],
    expiry: Expiry,
    entry: EntryMode,
    pin: PinCheck,
}

/// An authorisation on its way to the writer.
struct AuthJob {
    order_id: OrderId,
    amount: Money,
    store: StoreId,
    method: PaymentMethod,
    summary: CardSummary,
    digest: [u8; 32],
    via: Vec<u8>,
    /// `Err` when the envelope does not open (tampered or malformed).
    card: Result<CardFacts, SealError>,
}

/// One request for the writer, with where its answer goes.
enum Job {
    Authorise(Box<AuthJob>, oneshot::Sender<AuthResponse>),
    Resolve {
        order_id: OrderId,
        to: HoldState,
        /// The asking intermediary; `None` for the acquirer's own (expiry).
        via: Option<Vec<u8>>,
        /// For a void: the bound lab that refused the job (else no lab may be bound).
        refused_lab: Option<Vec<u8>>,
        reply: oneshot::Sender<AuthResponse>,
    },
    ExpireDue(oneshot::Sender<usize>),
    Bind {
        order_id: OrderId,
        lab: Vec<u8>,
        lab_name: String,
        replacing: Option<Vec<u8>>,
        via: Vec<u8>,
        reply: oneshot::Sender<AuthResponse>,
    },
    Extend {
        order_id: OrderId,
        reply: oneshot::Sender<AuthResponse>,
    },
    Adopt {
        order_id: OrderId,
        via: Vec<u8>,
        shipped_by: Vec<u8>,
        reply: oneshot::Sender<AuthResponse>,
    },
    OpenBatch(Vec<u8>, oneshot::Sender<Result<BatchId, String>>),
    Refund {
        order_id: OrderId,
        reason: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Pay(Box<PayJob>, oneshot::Sender<Result<Batch, String>>),
    MarkAdvised(BatchId, Money, oneshot::Sender<()>),
}

struct PayJob {
    batch: BatchId,
    intermediary: Vec<u8>,
    bill: Vec<SettleLine>,
}

/// An answer decided in a batch, sent once the batch is on disk.
enum Reply {
    Auth(oneshot::Sender<AuthResponse>, AuthResponse),
    Count(oneshot::Sender<usize>, usize),
    Batch(
        oneshot::Sender<Result<BatchId, String>>,
        Result<BatchId, String>,
    ),
    Paid(
        oneshot::Sender<Result<Batch, String>>,
        Result<Batch, String>,
    ),
    Done(oneshot::Sender<()>),
    Text(
        oneshot::Sender<Result<String, String>>,
        Result<String, String>,
    ),
}

impl Reply {
    fn send(self) {
        match self {
            Reply::Auth(tx, r) => drop(tx.send(r)),
            Reply::Count(tx, n) => drop(tx.send(n)),
            Reply::Batch(tx, r) => drop(tx.send(r)),
            Reply::Paid(tx, r) => drop(tx.send(r)),
            Reply::Done(tx) => drop(tx.send(())),
            Reply::Text(tx, r) => drop(tx.send(r)),
        }
    }

    /// The batch could not be stored: nothing decided in it stands.
    fn fail(self, why: &str) {
        match self {
            Reply::Auth(tx, r) => drop(tx.send(refused(r.order_id(), why))),
            Reply::Count(tx, _) => drop(tx.send(0)),
            Reply::Batch(tx, _) => drop(tx.send(Err(why.to_string()))),
            Reply::Paid(tx, _) => drop(tx.send(Err(why.to_string()))),
            Reply::Done(tx) => drop(tx.send(())),
            Reply::Text(tx, _) => drop(tx.send(Err(why.to_string()))),
        }
    }
}

const CARDS: usize = 0;
const AUTHS: usize = 1;
const ACCOUNTS: usize = 2;
const TRANSFERS: usize = 3;
const BATCHES: usize = 4;
const EXPIRY: usize = 5;
const BINDINGS: usize = 6;

pub struct Acquirer {
    node: Node,
    settings: Settings,
    cards: Tree<CardRecord>,
    auths: Tree<AuthRecord>,
    accounts: Tree<Account>,
    transfers: Tree<Transfer>,
    batches: Tree<Batch>,
    /// `expires_at_ms (BE) ‖ order id` of every hold still held.
    expiry: Tree<u8>,
    /// The lab each order's job is bound to (order id → binding): one per order, for
    /// every intermediary.
    bindings: Tree<LabBinding>,
    token_key: Secret<[u8; 32]>,
    pvv_key: Secret<[u8; 32]>,
    seal: SealSecret,
    seal_key: SealKey,
    jobs: mpsc::Sender<Job>,
    jobs_rx: std::sync::Mutex<Option<mpsc::Receiver<Job>>>,
    events_tx: mpsc::Sender<(OrderId, EventKind)>,
    events_rx: std::sync::Mutex<Option<mpsc::Receiver<(OrderId, EventKind)>>>,
    /// One settlement at a time.
    settling: tokio::sync::Mutex<()>,
}

/// A secret key file in the data directory: read, or made on first start. Only a
/// missing file is made anew: any other error must not replace a key that stored data
/// depends on.
fn load_or_create_key(
    node: &Node,
    name: &str,
    make: impl FnOnce() -> [u8; 32],
) -> Result<Secret<[u8; 32]>, NodeError> {
    let path = node.config.data_dir.join(name);
    let err = |why: String| NodeError::Role(format!("{}: {why}", path.display()));
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes = Secret::new(bytes);
            let key = <[u8; 32]>::try_from(bytes.expose().as_slice());
            key.map(Secret::new)
                .map_err(|_| err("not a 32-byte key".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Secret::new(make());
            crate::node::write_secret_file(&path, key.expose()).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Where an acquirer publishes its sealing key for kiosks: `<data_dir>/seal.pub`, hex.
pub fn seal_pub_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("seal.pub")
}

fn expiry_key(expires_at_ms: i64, order_id: OrderId) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(&(expires_at_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&order_id.to_bytes());
    k
}

/// What was asked, so a replay can be told from a reuse of the order id. It covers the
/// card (its token), not the envelope's bytes: a kiosk that restarts reseals the same
/// card for the same order, and that is a replay.
fn request_digest(req: &SealedAuthorise, card: &Result<CardFacts, SealError>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"printmesh authorisation v1\0");
    h.update(&req.amount.amount_minor().to_le_bytes());
    h.update(req.amount.currency().code().as_bytes());
    h.update(req.store.as_str().as_bytes());
    h.update(&[req.method as u8]);
    match card {
        Ok(facts) => h.update(&facts.token),
        Err(_) => h.update(b"unopened"),
    };
    *h.finalize().as_bytes()
}

impl Acquirer {
    pub fn seal_key(&self) -> SealKey {
        self.seal_key
    }

    /// The keyed hash that stands for a PAN in storage.
    pub fn token(&self, pan: &printmesh_protocol::Pan) -> [u8; 32] {
        *blake3::keyed_hash(self.token_key.expose(), pan.expose_digits().as_bytes()).as_bytes()
    }

    /// Card accounts and the acquirer's own accounts, from the test-card file. Seeding
    /// never overwrites a card or an account that already has history.
    fn seed(&self, cards_file: &std::path::Path) -> Result<(), NodeError> {
        let mut books = MemBooks::default();
        let mut writes = WriteSet::default();
        let mut system = BTreeSet::new();
        for card in load_cards(cards_file)? {
            let data = card.read().map_err(NodeError::Role)?;
            let kind = CardKind::parse(&card.kind).ok_or_else(|| {
                NodeError::Role(format!("card {}: unknown kind {:?}", card.name, card.kind))
            })?;
            let currency = card.currency().map_err(NodeError::Role)?;
            let unit = if kind == CardKind::Point {
                Unit::Points
            } else {
                Unit::Money(currency)
            };
            let token = self.token(&data.pan);
            if self.cards.contains(token)? {
                continue;
            }
            let pin = Pin::new(card.pin.as_bytes())
                .map_err(|e| NodeError::Role(format!("card {}: {e}", card.name)))?;
            let record = CardRecord {
                last4: data.pan.last4().to_string(),
                brand: data.pan.brand(),
                kind,
                expiry: data.expiry,
                unit,
                currency,
                limit: card.limit_minor,
                wrong_pins: 0,
                blocked: false,
                pvv: pin_verification_value(self.pvv_key.expose(), &data.pan, &pin),
            };
            writes.put(CARDS, token, self.cards.encode(&record)?);
            let limit = match kind {
                CardKind::Credit | CardKind::Ic => Limit::CreditLine(card.limit_minor),
                CardKind::Debit | CardKind::Point => Limit::DebitsWithinCredits,
            };
            let account = card_account(&token);
            books
                .accounts
                .insert(account.clone(), Account::new(unit, limit));
            for id in [
                due_account(currency),
                cash_account(currency),
                deposits_account(currency),
                programme_account(currency),
            ] {
                system.insert((id, Unit::Money(currency)));
            }
            system.insert((points_issued(), Unit::Points));
            system.insert((points_redeemed(), Unit::Points));
            for (id, unit) in &system {
                if !books.accounts.contains_key(id) {
                    let a = self
                        .accounts
                        .get(id.0.as_bytes())?
                        .unwrap_or_else(|| Account::new(*unit, Limit::None));
                    books.accounts.insert(id.clone(), a);
                }
            }
            // A debit card's balance and a point card's points are opened with a
            // transfer from the bank's deposits / the points issued.
            let opening = match kind {
                CardKind::Debit => Some(deposits_account(currency)),
                CardKind::Point => Some(points_issued()),
                _ => None,
            };
            if let (Some(from), true) = (opening, card.limit_minor > 0) {
                let op = Op::Transfer {
                    id: TransferId(format!(
                        "open:{}",
                        hex::encode(token.get(..16).unwrap_or_default())
                    )),
                    debit: from,
                    credit: account.clone(),
                    amount: card.limit_minor,
                };
                let change = ledger::apply(&books, &op, now_ms())
                    .map_err(|e| NodeError::Role(format!("card {}: {e}", card.name)))?;
                books.commit(change);
            }
        }
        for (id, a) in &books.accounts {
            writes.put(ACCOUNTS, id.0.as_bytes(), self.accounts.encode(a)?);
        }
        for (id, t) in &books.transfers {
            writes.put(TRANSFERS, id.0.as_bytes(), self.transfers.encode(t)?);
        }
        writes.commit(&self.trees())?;
        Ok(())
    }

    fn trees(&self) -> [&sled::Tree; 7] {
        [
            self.cards.raw(),
            self.auths.raw(),
            self.accounts.raw(),
            self.transfers.raw(),
            self.batches.raw(),
            self.expiry.raw(),
            self.bindings.raw(),
        ]
    }

    // ------------------------------------------------------------------ the API

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Job) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// [`Self::ask`] for an answer about `order_id`; refused while shutting down.
    async fn answer(
        &self,
        order_id: OrderId,
        make: impl FnOnce(oneshot::Sender<AuthResponse>) -> Job,
    ) -> AuthResponse {
        self.ask(make)
            .await
            .unwrap_or_else(|| refused(order_id, "the acquirer is shutting down"))
    }

    /// Authorises a sealed card payment, or declines it. A replay returns the first
    /// answer. `via` is the asking intermediary's peer id.
    ///
    /// The envelope is opened here, concurrently with other requests; the writer sees
    /// only the card's token, expiry, entry mode and PIN verification value.
    pub async fn authorise(&self, req: SealedAuthorise, via: Vec<u8>) -> AuthResponse {
        let order_id = req.order_id;
        let binding = Binding {
            order_id,
            amount: req.amount,
            store: req.store.clone(),
            method: req.method,
        };
        let card = match open_card(&self.seal, &binding, &req.card) {
            Ok(opened) => {
                let pin = match &opened.pin {
                    PinEntry::None => PinCheck::None,
                    PinEntry::Unreadable => PinCheck::Unreadable,
                    PinEntry::Entered(pin) => PinCheck::Value(pin_verification_value(
                        self.pvv_key.expose(),
                        &opened.card.pan,
                        pin,
                    )),
                };
                Ok(CardFacts {
                    token: self.token(&opened.card.pan),
                    expiry: opened.card.expiry,
                    entry: opened.entry,
                    pin,
                })
            }
            // Sealed to another acquirer: not ours to record.
            Err(SealError::WrongKey) => return AuthResponse::NotMine { order_id },
            Err(e) => Err(e),
        };
        let job = AuthJob {
            order_id,
            amount: req.amount,
            store: req.store.clone(),
            method: req.method,
            summary: req.card.summary.clone(),
            digest: request_digest(&req, &card),
            via,
            card,
        };
        self.answer(order_id, |tx| Job::Authorise(Box::new(job), tx))
            .await
    }

    /// Binds the order's job to a lab (first binding wins; see [`AuthRequest::BindLab`]).
    pub async fn bind_lab(
        &self,
        order_id: OrderId,
        lab: Vec<u8>,
        lab_name: String,
        replacing: Option<Vec<u8>>,
        via: Vec<u8>,
    ) -> AuthResponse {
        self.answer(order_id, |reply| Job::Bind {
            order_id,
            lab,
            lab_name,
            replacing,
            via,
            reply,
        })
        .await
    }

    /// Keeps a hold alive for another period, up to its last day.
    pub async fn extend(&self, order_id: OrderId) -> AuthResponse {
        self.answer(order_id, |reply| Job::Extend { order_id, reply })
            .await
    }

    /// Captures a shipped order for an intermediary that has no record of it.
    pub async fn adopt(
        &self,
        order_id: OrderId,
        via: Vec<u8>,
        shipped_by: Vec<u8>,
    ) -> AuthResponse {
        self.answer(order_id, |reply| Job::Adopt {
            order_id,
            via,
            shipped_by,
            reply,
        })
        .await
    }

    /// Captures a hold for the asking intermediary, which then bills it; once
    /// captured, a capture by another intermediary is refused (it is not billed twice).
    pub async fn capture(&self, order_id: OrderId, via: Vec<u8>) -> AuthResponse {
        self.answer(order_id, |reply| Job::Resolve {
            order_id,
            to: HoldState::Captured,
            via: Some(via),
            refused_lab: None,
            reply,
        })
        .await
    }

    /// Releases a hold, for any intermediary: while no lab is bound to the order, or,
    /// with `refused_lab`, because that bound lab refused the job.
    pub async fn void(
        &self,
        order_id: OrderId,
        via: Vec<u8>,
        refused_lab: Option<Vec<u8>>,
    ) -> AuthResponse {
        self.answer(order_id, |reply| Job::Resolve {
            order_id,
            to: HoldState::Voided,
            via: Some(via),
            refused_lab,
            reply,
        })
        .await
    }

    /// Sends every event the authorisations imply that a crash kept from going out
    /// (the books are stored before their events are): `Authorised` or `Declined`,
    /// then `Voided`, `Expired` or `Refunded` — the lab stops a job whose payment is
    /// gone on them; kiosks stop honouring a refunded order's licences.
    pub async fn resend_events(&self) -> usize {
        let horizon = now_ms().saturating_sub(printmesh_runtime::events::RESEND_WINDOW_MS);
        let mut sent = 0;
        for (_, r) in self.auths.entries().filter_map(Result::ok) {
            if r.at_ms < horizon {
                continue;
            }
            let mut kinds = Vec::new();
            match &r.response {
                AuthResponse::ApprovedCard { auth_code, .. }
                | AuthResponse::Approved { auth_code, .. } => kinds.push(EventKind::Authorised {
                    auth_code: auth_code.clone(),
                }),
                AuthResponse::DeclinedCard { code, .. } | AuthResponse::Declined { code, .. } => {
                    kinds.push(EventKind::Declined { code: *code })
                }
                _ => {}
            }
            match r.hold {
                HoldState::Voided => kinds.push(EventKind::Voided),
                HoldState::Expired => kinds.push(EventKind::Expired),
                // A refund revokes licences and takes the order off a bill: it must
                // reach the network even if the acquirer stopped before it went out.
                HoldState::Refunded => kinds.push(EventKind::Refunded),
                _ => {}
            }
            for kind in kinds {
                if self.node.ensure_emitted(r.order_id, kind).await {
                    sent += 1;
                }
            }
        }
        sent
    }

    /// Releases every hold whose time is up; returns how many.
    pub async fn expire_due(&self) -> usize {
        self.ask(Job::ExpireDue).await.unwrap_or(0)
    }

    // ------------------------------------------------------------------ the writer

    async fn run_writer(self: Arc<Self>, mut rx: mpsc::Receiver<Job>) {
        let max = if self.settings.group_commit {
            MAX_BATCH
        } else {
            1
        };
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(batch).await;
        }
    }

    async fn run_batch(&self, batch: Vec<Job>) {
        let now = now_ms();
        let mut view = View::new(self);
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            replies.push(match job {
                Job::Authorise(job, tx) => Reply::Auth(tx, self.decide(&mut view, *job, now)),
                Job::Resolve {
                    order_id,
                    to,
                    via,
                    refused_lab,
                    reply,
                } => {
                    // A lab has the order: only its refusal releases the hold.
                    let bound = view.binding(order_id);
                    let blocked = to == HoldState::Voided
                        && bound.is_some_and(|b| Some(&b.lab) != refused_lab.as_ref());
                    let answer = if blocked {
                        closed(order_id, LAB_HAS_IT)
                    } else {
                        self.resolve(&mut view, order_id, to, via.as_deref(), now)
                    };
                    Reply::Auth(reply, answer)
                }
                Job::ExpireDue(tx) => Reply::Count(tx, self.expire(&mut view, now)),
                Job::Bind {
                    order_id,
                    lab,
                    lab_name,
                    replacing,
                    via,
                    reply,
                } => Reply::Auth(
                    reply,
                    self.bind(&mut view, order_id, (lab, lab_name), replacing, via, now),
                ),
                Job::Extend { order_id, reply } => {
                    Reply::Auth(reply, self.extend_hold(&mut view, order_id, now))
                }
                Job::Adopt {
                    order_id,
                    via,
                    shipped_by,
                    reply,
                } => {
                    // Only the lab bound to the order ships it.
                    let answer = match view.binding(order_id) {
                        Some(b) if b.lab != shipped_by => {
                            closed(order_id, "shipped by a lab the order is not bound to")
                        }
                        _ => self.adopt_hold(&mut view, order_id, via, now),
                    };
                    Reply::Auth(reply, answer)
                }
                Job::OpenBatch(intermediary, tx) => {
                    Reply::Batch(tx, self.open_batch(&mut view, intermediary, now))
                }
                Job::Pay(job, tx) => Reply::Paid(tx, self.pay(&mut view, *job, now)),
                Job::Refund {
                    order_id,
                    reason,
                    reply,
                } => Reply::Text(reply, self.refund(&mut view, order_id, &reason)),
                Job::MarkAdvised(id, confirmed, tx) => {
                    if let Some(mut b) = view.batch(&id) {
                        b.advice_delivered = true;
                        b.confirmed = Some(confirmed);
                        view.put_batch(b);
                    }
                    Reply::Done(tx)
                }
            });
        }
        if view.poisoned.get() {
            tracing::error!("a stored record could not be read: the batch is not stored");
            for r in replies {
                r.fail("the acquirer's records could not be read; try again");
            }
            return;
        }
        let events = std::mem::take(&mut view.events);
        let stored = match view.store() {
            Ok(()) => self.node.db.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            // Nothing is acknowledged that is not on disk.
            tracing::error!("cannot store the batch: {e}");
            for r in replies {
                r.fail("the acquirer could not record the request; try again");
            }
            return;
        }
        if replies.iter().any(|r| matches!(r, Reply::Auth(..))) {
            printmesh_runtime::failpoint::crash_point("acquirer.stored-before-reply");
        }
        for reply in replies {
            reply.send();
        }
        // Events are signed and gossiped by their own task, in order, off the
        // writer's path.
        for event in events {
            if self.events_tx.send(event).await.is_err() {
                break;
            }
        }
    }

    fn decide(&self, view: &mut View<'_>, job: AuthJob, now: i64) -> AuthResponse {
        let order_id = job.order_id;
        if let Some(answer) = replayed(view, order_id, &job.digest) {
            return answer;
        }
        let summary = job.summary.clone();
        let facts = match job.card {
            Ok(f) => f,
            // Not recorded: an envelope that does not open proves nothing about who
            // sent it, and must not take the order id.
            Err(e) => {
                tracing::warn!(%order_id, card = %summary.masked(), "sealed card data refused: {e}");
                return AuthResponse::DeclinedCard {
                    order_id,
                    code: DeclineCode::FormatError,
                    token: None,
                };
            }
        };
        let token = facts.token;
        let mut record = AuthRecord {
            order_id,
            token: Some(token),
            last4: summary.last4.clone(),
            brand: summary.brand,
            kind: None,
            method: job.method,
            store: job.store.clone(),
            amount: job.amount,
            held: 0,
            digest: job.digest,
            response: refused(order_id, ""),
            hold: HoldState::None,
            expires_at_ms: 0,
            via: job.via,
            at_ms: now,
            captured_at_ms: None,
            settled: None,
        };
        let Some(mut card) = view.card(&token) else {
            record.token = None;
            return view.decline(record, DeclineCode::InvalidCardNumber, None);
        };
        record.kind = Some(card.kind);
        let short = Some(short_token(&token));
        let today = chrono::DateTime::from_timestamp_millis(now)
            .unwrap_or_default()
            .date_naive();
        let checked = check_card(
            view, &mut card, &facts, job.method, today, &summary, order_id,
        );
        if let Err(code) = checked {
            return view.decline(record, code, short);
        }
        self.hold(view, record, &card, job.amount, token, now)
    }

    /// Holds the amount on a card that passed its checks, in the card's own unit and
    /// currency, and approves; or declines.
    fn hold(
        &self,
        view: &mut View<'_>,
        mut record: AuthRecord,
        card: &CardRecord,
        amount: Money,
        token: [u8; 32],
        now: i64,
    ) -> AuthResponse {
        let order_id = record.order_id;
        let short = Some(short_token(&token));
        let job_amount = amount;
        let currency = job_amount.currency();
        if job_amount.amount_minor() <= 0 || card.currency != currency {
            return view.decline(record, DeclineCode::InvalidAmount, short);
        }
        let (held, credit) = match card.unit {
            Unit::Points => (
                job_amount
                    .amount_minor()
                    .saturating_add(self.settings.minor_per_point - 1)
                    / self.settings.minor_per_point,
                points_redeemed(),
            ),
            Unit::Money(_) => (job_amount.amount_minor(), due_account(currency)),
        };
        let expires_at_ms = now.saturating_add(self.settings.hold_ttl_ms);
        let op = Op::Hold {
            id: TransferId::of(order_id, "hold"),
            debit: card_account(&token),
            credit,
            amount: held,
            expires_at_ms,
        };
        match view.ledger(&op, now) {
            Ok(_) => {}
            Err(ledger::LedgerError::ExceedsLimit { .. }) => {
                return view.decline(record, DeclineCode::InsufficientFunds, short)
            }
            Err(e) => {
                tracing::error!(%order_id, "hold refused by the ledger: {e}");
                return view.decline(record, DeclineCode::DoNotHonour, short);
            }
        }
        let auth_code = AuthCode::from_random(rand::thread_rng().gen());
        let response = AuthResponse::ApprovedCard {
            order_id,
            auth_code: auth_code.clone(),
            amount: job_amount,
            token: short_token(&token),
        };
        record.response = response.clone();
        record.hold = HoldState::Held;
        record.held = held;
        record.expires_at_ms = expires_at_ms;
        tracing::info!(%order_id, card = %format!("{} •••• {}", record.brand, record.last4), amount = %job_amount, kind = card.kind.name(), "approved");
        view.put_expiry(expires_at_ms, order_id);
        view.put_auth(record);
        view.events
            .push((order_id, EventKind::Authorised { auth_code }));
        response
    }

    /// Moves a hold to captured, voided or expired.
    fn resolve(
        &self,
        view: &mut View<'_>,
        order_id: OrderId,
        to: HoldState,
        via: Option<&[u8]>,
        now: i64,
    ) -> AuthResponse {
        let done = match to {
            HoldState::Captured => AuthResponse::Captured { order_id },
            _ => AuthResponse::Voided { order_id },
        };
        let Some(mut record) = view.auth(order_id) else {
            if to == HoldState::Voided && via.is_some() {
                // A reversal that overtook its authorisation: kept, so the
                // authorisation is declined when it arrives.
                tracing::info!(%order_id, "reversed before its authorisation arrived");
                view.put_auth(AuthRecord {
                    order_id,
                    token: None,
                    last4: String::new(),
                    brand: CardBrand::Other,
                    kind: None,
                    method: PaymentMethod::Credit,
                    store: StoreId::unknown(),
                    amount: Money::new(0, Currency::Jpy),
                    held: 0,
                    digest: [0; 32],
                    response: closed(order_id, "reversed before it arrived"),
                    hold: HoldState::Voided,
                    expires_at_ms: 0,
                    via: via.map(<[u8]>::to_vec).unwrap_or_default(),
                    at_ms: now,
                    captured_at_ms: None,
                    settled: None,
                });
                return done;
            }
            return closed(order_id, "no authorisation for this order");
        };
        match (record.hold, to) {
            // Captured once, billed by the intermediary that captured it.
            (HoldState::Captured, HoldState::Captured)
                if via.is_some_and(|v| v != record.via.as_slice()) =>
            {
                return closed(order_id, CAPTURED_ELSEWHERE)
            }
            (from, to) if from == to => return done,
            (HoldState::Held, _) => {}
            (HoldState::None, _) => return closed(order_id, "the authorisation was declined"),
            (HoldState::Captured, _) => return closed(order_id, "already captured"),
            (HoldState::Voided, _) => return closed(order_id, "already voided"),
            (HoldState::Expired, _) => return closed(order_id, "the hold has expired"),
            (HoldState::Refunded, _) => return closed(order_id, "captured, then refunded"),
        }
        let hold = TransferId::of(order_id, "hold");
        let op = match to {
            HoldState::Captured => Op::Post { id: hold },
            HoldState::Expired => Op::Expire { id: hold },
            _ => Op::Void { id: hold },
        };
        // Both legs of a point card's capture, or neither.
        let saved = view.snapshot();
        if let Err(e) = view.ledger(&op, now) {
            tracing::error!(%order_id, "ledger refused {to:?}: {e}");
            return refused(order_id, &e.to_string());
        }
        // Points paid for the order: the programme pays the merchant in money.
        if to == HoldState::Captured && record.kind == Some(CardKind::Point) {
            let c = record.amount.currency();
            let op = Op::Transfer {
                id: TransferId::of(order_id, "points"),
                debit: programme_account(c),
                credit: due_account(c),
                amount: record.amount.amount_minor(),
            };
            if let Err(e) = view.ledger(&op, now) {
                tracing::error!(%order_id, "points settlement refused: {e}");
                view.restore(saved);
                return refused(order_id, "the points could not be settled");
            }
        }
        view.remove_expiry(record.expires_at_ms, order_id);
        record.hold = to;
        match to {
            HoldState::Captured => {
                record.captured_at_ms = Some(now);
                // The intermediary that captures is the one paid (and pays the lab).
                if let Some(v) = via {
                    record.via = v.to_vec();
                }
            }
            HoldState::Expired => view.events.push((order_id, EventKind::Expired)),
            _ => view.events.push((order_id, EventKind::Voided)),
        }
        view.put_auth(record);
        done
    }

    /// Gives a captured, not yet settled payment back to the card (a refund, or a
    /// chargeback the issuer raised before settlement): the ledger moves the amount
    /// from what is due to merchants back to the card, the order is never settled, and
    /// `Refunded` goes out (the intermediary takes it off its bill; kiosks stop
    /// honouring the order's download licences). Asked again, the same answer.
    fn refund(
        &self,
        view: &mut View<'_>,
        order_id: OrderId,
        reason: &str,
    ) -> Result<String, String> {
        let Some(mut record) = view.auth(order_id) else {
            return Err(format!("no authorisation for order {order_id}"));
        };
        match (record.hold, record.settled) {
            (HoldState::Refunded, _) => return Ok(format!("order {order_id} was refunded already")),
            (HoldState::Captured, None) => {}
            (HoldState::Captured, Some(batch)) => {
                return Err(format!(
                    "order {order_id} was settled in batch {batch}: a refund after settlement is taken from the next batch, which this acquirer does not do yet"
                ))
            }
            (other, _) => {
                return Err(format!(
                    "order {order_id} is {other:?}, not captured: a hold is voided, not refunded"
                ))
            }
        }
        if record.kind == Some(CardKind::Point) {
            return Err("point-card payments are not refunded here".into());
        }
        let Some(token) = record.token else {
            return Err(format!("order {order_id} has no card on record"));
        };
        let op = Op::Transfer {
            id: TransferId::of(order_id, "refund"),
            debit: due_account(record.amount.currency()),
            credit: card_account(&token),
            amount: record.held,
        };
        if let Err(e) = view.ledger(&op, now_ms()) {
            return Err(format!("the ledger refused the refund: {e}"));
        }
        record.hold = HoldState::Refunded;
        let said = format!(
            "order {order_id} refunded: {} back to {} {} ({reason}); its licences are revoked",
            record.amount, record.brand, record.last4
        );
        view.put_auth(record);
        view.events.push((order_id, EventKind::Refunded));
        tracing::warn!("{said}");
        Ok(said)
    }

    /// The hold's terms: when it lapses, and the last moment extensions can reach.
    fn terms(&self, record: &AuthRecord) -> HoldTerms {
        HoldTerms {
            expires_at_ms: record.expires_at_ms,
            pay_by_ms: record.at_ms.saturating_add(self.settings.hold_max_ms),
        }
    }

    fn bind(
        &self,
        view: &mut View<'_>,
        order_id: OrderId,
        (lab, lab_name): (Vec<u8>, String),
        replacing: Option<Vec<u8>>,
        via: Vec<u8>,
        now: i64,
    ) -> AuthResponse {
        let Some(record) = view.auth(order_id) else {
            return closed(order_id, "no authorisation for this order");
        };
        if record.hold != HoldState::Held {
            // The lab bound before stays the answer (a retry after the capture
            // finds the lab that has the job); no new binding for a closed hold.
            if let Some(b) = view.binding(order_id) {
                return AuthResponse::LabBound {
                    order_id,
                    lab: b.lab,
                    lab_name: b.lab_name,
                    terms: self.terms(&record),
                };
            }
            return closed(order_id, hold_state_reason(record.hold));
        }
        let bound = match view.binding(order_id) {
            Some(mut b) if replacing.as_ref() == Some(&b.lab) && b.lab != lab => {
                if b.refused_by.contains(&lab) {
                    // Never back to a lab that refused it.
                    b
                } else {
                    tracing::info!(%order_id, from = %b.lab_name, to = %lab_name, "the lab refused the job: bound to another");
                    let refused = std::mem::take(&mut b.refused_by);
                    let mut refused_by = refused;
                    if refused_by.len() < 64 {
                        refused_by.push(b.lab.clone());
                    }
                    let b = LabBinding {
                        lab,
                        lab_name,
                        by: via,
                        at_ms: now,
                        refused_by,
                    };
                    view.put_binding(order_id, b.clone());
                    b
                }
            }
            Some(b) => b,
            None => {
                let b = LabBinding {
                    lab,
                    lab_name,
                    by: via,
                    at_ms: now,
                    refused_by: Vec::new(),
                };
                view.put_binding(order_id, b.clone());
                b
            }
        };
        AuthResponse::LabBound {
            order_id,
            lab: bound.lab,
            lab_name: bound.lab_name,
            terms: self.terms(&record),
        }
    }

    fn extend_hold(&self, view: &mut View<'_>, order_id: OrderId, now: i64) -> AuthResponse {
        let Some(mut record) = view.auth(order_id) else {
            return closed(order_id, "no authorisation for this order");
        };
        if record.hold != HoldState::Held {
            return closed(order_id, hold_state_reason(record.hold));
        }
        let terms = self.terms(&record);
        let until = now
            .saturating_add(self.settings.hold_ttl_ms)
            .min(terms.pay_by_ms);
        if until > record.expires_at_ms {
            view.remove_expiry(record.expires_at_ms, order_id);
            view.put_expiry(until, order_id);
            record.expires_at_ms = until;
            tracing::info!(%order_id, until_ms = until, "hold extended");
            view.put_auth(record.clone());
        }
        AuthResponse::Extended {
            order_id,
            terms: self.terms(&record),
        }
    }

    fn adopt_hold(
        &self,
        view: &mut View<'_>,
        order_id: OrderId,
        via: Vec<u8>,
        now: i64,
    ) -> AuthResponse {
        let answer = self.resolve(view, order_id, HoldState::Captured, Some(&via), now);
        match answer {
            AuthResponse::Captured { .. } => {
                let Some(record) = view.auth(order_id) else {
                    return closed(order_id, "no authorisation for this order");
                };
                tracing::info!(%order_id, "a shipped order adopted by an intermediary without its record");
                AuthResponse::Adopted {
                    order_id,
                    amount: record.amount,
                    store: record.store,
                    lab: view.binding(order_id).map(|b| (b.lab, b.lab_name)),
                }
            }
            other => other,
        }
    }

    fn expire(&self, view: &mut View<'_>, now: i64) -> usize {
        let upto = expiry_key(now, OrderId::from_bytes([0xff; 16]));
        let due: Vec<OrderId> = self
            .expiry
            .raw()
            .range(..=upto)
            .keys()
            .take(MAX_EXPIRED_PER_SWEEP)
            .filter_map(|k| match k {
                Ok(k) => k.get(8..24).and_then(|b| <[u8; 16]>::try_from(b).ok()),
                Err(e) => {
                    tracing::error!("hold expiry index: {e}");
                    view.poisoned.set(true);
                    None
                }
            })
            .map(OrderId::from_bytes)
            .collect();
        let mut n = 0;
        for order_id in due {
            let response = self.resolve(view, order_id, HoldState::Expired, None, now);
            if response == (AuthResponse::Voided { order_id }) {
                n += 1;
            }
        }
        n
    }

    // ------------------------------------------------------------------ settlement

    /// Reserves the next batch id of the day for one intermediary.
    fn open_batch(
        &self,
        view: &mut View<'_>,
        intermediary: Vec<u8>,
        now: i64,
    ) -> Result<BatchId, String> {
        let date = chrono::DateTime::from_timestamp_millis(now)
            .unwrap_or_default()
            .date_naive();
        let prefix = format!("{date}-");
        let mut seq = 0u32;
        for k in self.batches.raw().scan_prefix(prefix.as_bytes()).keys() {
            let k = k.map_err(|e| e.to_string())?;
            let n = std::str::from_utf8(&k)
                .ok()
                .and_then(|s| s.strip_prefix(&prefix))
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0);
            seq = seq.max(n);
        }
        for id in view.batches.keys() {
            if id.date == date {
                seq = seq.max(id.seq);
            }
        }
        let id = BatchId { date, seq: seq + 1 };
        view.put_batch(Batch {
            id,
            intermediary,
            status: BatchStatus::Open,
            lines: Vec::new(),
            total: Money::new(0, Currency::Jpy),
            unknown: Vec::new(),
            closed_at_ms: now,
            advice_delivered: false,
            confirmed: None,
        });
        Ok(id)
    }

    /// Pays the bill's lines that match a capture of ours through this intermediary:
    /// the money owed to merchants becomes cash paid out, order by order.
    fn pay(&self, view: &mut View<'_>, job: PayJob, now: i64) -> Result<Batch, String> {
        let Some(mut batch) = view.batch(&job.batch) else {
            return Err(format!("batch {} was never opened", job.batch));
        };
        if batch.intermediary != job.intermediary {
            return Err(format!("batch {} is another intermediary's", job.batch));
        }
        if batch.status == BatchStatus::Closed {
            return Ok(batch);
        }
        let mut lines = Vec::new();
        let mut unknown = Vec::new();
        let mut currency = None;
        for line in job
            .bill
            .iter()
            .take(printmesh_protocol::messages::proto::MAX_SETTLE_LINES)
        {
            let ok = view.auth(line.order_id).filter(|r| {
                r.hold == HoldState::Captured
                    && r.settled.is_none()
                    && r.via == job.intermediary
                    && r.amount == line.amount
            });
            let Some(mut record) = ok else {
                unknown.push(line.clone());
                continue;
            };
            let c = record.amount.currency();
            if *currency.get_or_insert(c) != c {
                unknown.push(line.clone());
                continue;
            }
            let op = Op::Transfer {
                id: TransferId::of(line.order_id, "settle"),
                debit: due_account(c),
                credit: cash_account(c),
                amount: record.amount.amount_minor(),
            };
            if let Err(e) = view.ledger(&op, now) {
                tracing::error!(order_id = %line.order_id, "settlement transfer refused: {e}");
                unknown.push(line.clone());
                continue;
            }
            record.settled = Some(job.batch);
            view.put_auth(record);
            lines.push(line.clone());
        }
        let currency = currency.unwrap_or(Currency::Jpy);
        let mut total = Money::new(0, currency);
        for l in &lines {
            total = total.checked_add(l.amount).map_err(|e| e.to_string())?;
        }
        batch.status = BatchStatus::Closed;
        batch.lines = lines;
        batch.total = total;
        batch.unknown = unknown;
        batch.closed_at_ms = now;
        view.put_batch(batch.clone());
        Ok(batch)
    }

    /// `printmesh acquirer settle`: one batch per intermediary with captured, unpaid
    /// orders; an advice not delivered before is sent again. One settlement at a time.
    pub async fn settle(&self) -> Result<String, String> {
        let _one_at_a_time = self.settling.lock().await;
        let mut out = Vec::new();
        // Advices that did not reach their intermediary before.
        for (_, b) in self.batches.entries().filter_map(Result::ok) {
            if b.status == BatchStatus::Closed && !b.advice_delivered {
                out.push(self.advise(&b).await);
            }
        }
        let mut by_intermediary: BTreeMap<Vec<u8>, BTreeSet<OrderId>> = BTreeMap::new();
        for (_, r) in self.auths.entries().filter_map(Result::ok) {
            if r.hold == HoldState::Captured && r.settled.is_none() {
                by_intermediary
                    .entry(r.via.clone())
                    .or_default()
                    .insert(r.order_id);
            }
        }
        if by_intermediary.is_empty() && out.is_empty() {
            return Ok("nothing to settle: no captured orders are unpaid".into());
        }
        for (via, captured) in by_intermediary {
            let Ok(peer) = PeerId::from_bytes(&via) else {
                continue;
            };
            let batch = self
                .ask(|tx| Job::OpenBatch(via.clone(), tx))
                .await
                .unwrap_or_else(|| Err("the acquirer is shutting down".into()))?;
            let bill = match self
                .node
                .client
                .request::<SettleProto>(peer, SettleRequest::BillPlease { batch })
                .await
            {
                Ok(SettleResponse::Bill { lines, .. }) => lines,
                Ok(other) => {
                    out.push(format!(
                        "batch {batch}: the intermediary answered {other:?}"
                    ));
                    Vec::new()
                }
                Err(e) => {
                    out.push(format!(
                        "batch {batch}: the intermediary is not reachable: {e}"
                    ));
                    Vec::new()
                }
            };
            let job = PayJob {
                batch,
                intermediary: via.clone(),
                bill,
            };
            let paid = self
                .ask(|tx| Job::Pay(Box::new(job), tx))
                .await
                .unwrap_or_else(|| Err("the acquirer is shutting down".into()))?;
            let paid_ids: BTreeSet<OrderId> = paid.lines.iter().map(|l| l.order_id).collect();
            let unbilled = captured.difference(&paid_ids).count();
            let mut text = self.advise(&paid).await;
            if unbilled > 0 {
                text.push_str(&format!("; {unbilled} captured orders were not billed"));
            }
            out.push(text);
        }
        Ok(out.join("\n"))
    }

    async fn advise(&self, b: &Batch) -> String {
        let Ok(peer) = PeerId::from_bytes(&b.intermediary) else {
            return format!("batch {}: bad intermediary id", b.id);
        };
        let advice = SettleRequest::Payment {
            batch: b.id,
            lines: b.lines.clone(),
            total: b.total,
        };
        let n = b.lines.len();
        let mut text = format!(
            "batch {}: paid {} for {n} order{}{}",
            b.id,
            b.total,
            if n == 1 { "" } else { "s" },
            if b.unknown.is_empty() {
                String::new()
            } else {
                format!("; {} billed lines are not ours to pay", b.unknown.len())
            },
        );
        match self.node.client.request::<SettleProto>(peer, advice).await {
            Ok(SettleResponse::Received { total, .. }) => {
                let _ = self.ask(|tx| Job::MarkAdvised(b.id, total, tx)).await;
                if total == b.total {
                    text.push_str("; the intermediary confirmed");
                } else {
                    tracing::error!(batch = %b.id, paid = %b.total, confirmed = %total, "the intermediary confirmed another total");
                    text.push_str(&format!(
                        "; THE INTERMEDIARY CONFIRMED {total}, NOT {}: reconcile by hand",
                        b.total
                    ));
                }
            }
            Ok(other) => text.push_str(&format!(
                "; the intermediary answered {other:?} (will resend)"
            )),
            Err(e) => text.push_str(&format!("; advice not delivered: {e} (will resend)")),
        }
        text
    }

    // ------------------------------------------------------------------ serving

    async fn on_auth(&self, inbound: Inbound<AuthProto>) {
        let (peer, request, responder) = inbound.into_parts();
        let response = match request {
            AuthRequest::AuthoriseSealed(a) => self.authorise(a, peer.to_bytes()).await,
            AuthRequest::Capture { order_id } => self.capture(order_id, peer.to_bytes()).await,
            AuthRequest::Void { order_id } => self.void(order_id, peer.to_bytes(), None).await,
            AuthRequest::VoidRefused { order_id, lab } => {
                self.void(order_id, peer.to_bytes(), Some(lab)).await
            }
            AuthRequest::VoidFor { order_id, key } if key != self.seal_key.id() => {
                AuthResponse::NotMine { order_id }
            }
            AuthRequest::VoidFor { order_id, .. } => {
                self.void(order_id, peer.to_bytes(), None).await
            }
            AuthRequest::BindLab {
                order_id,
                lab,
                lab_name,
                replacing,
            } => {
                self.bind_lab(order_id, lab, lab_name, replacing, peer.to_bytes())
                    .await
            }
            AuthRequest::Extend { order_id } => self.extend(order_id).await,
            AuthRequest::Adopt {
                order_id,
                shipped_by,
            } => self.adopt(order_id, peer.to_bytes(), shipped_by).await,
            AuthRequest::Authorise(a) | AuthRequest::AuthoriseWithPin { auth: a, .. } => {
                tracing::warn!(%peer, order_id = %a.order_id, "unsealed card data refused");
                refused(a.order_id, "card data must be sealed to the acquirer")
            }
        };
        responder.respond(response);
    }

    async fn on_admin(&self, command: AcquirerCommand) -> AdminResponse {
        match command {
            AcquirerCommand::Settle => AdminResponse::from_result(self.settle().await),
            AcquirerCommand::Refund { order_id, reason } => AdminResponse::from_result(
                self.ask(|reply| Job::Refund {
                    order_id,
                    reason,
                    reply,
                })
                .await
                .unwrap_or_else(|| Err("the acquirer is shutting down".into())),
            ),
            AcquirerCommand::Report { date, csv } => {
                AdminResponse::from_result(report(&self.node.db, date).map(|r| r.render(csv)))
            }
        }
    }
}

/// An acquirer's admin commands (`printmesh acquirer settle|report`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AcquirerCommand {
    /// Close a settlement batch with each intermediary.
    Settle,
    /// Give a captured payment back before settlement (a refund or chargeback); a
    /// download's licences are revoked with it.
    Refund { order_id: OrderId, reason: String },
    /// The reconciliation report of a day.
    Report { date: chrono::NaiveDate, csv: bool },
}

impl RoleCommand for AcquirerCommand {
    const ROLE: Role = Role::Acquirer;
}

/// The first answer to an order id this acquirer has seen, if it has: the same
/// request gets it again; other details under the same id are refused; an approval
/// whose hold has since been released does not stand again.
fn replayed(view: &View<'_>, order_id: OrderId, digest: &[u8; 32]) -> Option<AuthResponse> {
    let record = view.auth(order_id)?;
    // Released (or reversed before it came): declined, whatever it asks.
    if matches!(record.hold, HoldState::Voided | HoldState::Expired) {
        return Some(AuthResponse::DeclinedCard {
            order_id,
            code: DeclineCode::DoNotHonour,
            token: record.token.as_ref().map(short_token),
        });
    }
    if record.digest != *digest {
        tracing::warn!(%order_id, "order id reused with other details: refused");
        return Some(refused(
            order_id,
            "this order id was authorised with other details",
        ));
    }
    tracing::info!(%order_id, "authorisation replayed: returning the first answer");
    Some(record.response)
}

/// The card's own checks: expiry, blocked, what its kind allows, and the PIN
/// (required on debit and IC cards, checked whenever one was entered; a wrong one
/// counts, the third blocks the card, a right one clears the count).
fn check_card(
    view: &mut View<'_>,
    card: &mut CardRecord,
    facts: &CardFacts,
    method: PaymentMethod,
    today: chrono::NaiveDate,
    summary: &CardSummary,
    order_id: OrderId,
) -> Result<(), DeclineCode> {
    if facts.expiry.is_expired_on(today) || card.expiry != facts.expiry {
        return Err(DeclineCode::ExpiredCard);
    }
    if card.blocked {
        return Err(DeclineCode::PinTriesExceeded);
    }
    if !card.kind.allows(method, facts.entry) {
        return Err(DeclineCode::NotPermitted);
    }
    match facts.pin {
        PinCheck::None if card.kind.needs_pin() => Err(DeclineCode::IncorrectPin),
        PinCheck::None => Ok(()),
        PinCheck::Unreadable => Err(DeclineCode::FormatError),
        PinCheck::Value(got) => {
            // blake3::Hash compares in constant time.
            if blake3::Hash::from(got) != blake3::Hash::from(card.pvv) {
                card.wrong_pins = card.wrong_pins.saturating_add(1);
                let code = if card.wrong_pins >= MAX_WRONG_PINS {
                    card.blocked = true;
                    tracing::warn!(%order_id, card = %summary.masked(), "third wrong PIN: card blocked");
                    DeclineCode::PinTriesExceeded
                } else {
                    DeclineCode::IncorrectPin
                };
                view.put_card(facts.token, card.clone());
                return Err(code);
            }
            if card.wrong_pins > 0 {
                card.wrong_pins = 0;
                view.put_card(facts.token, card.clone());
            }
            Ok(())
        }
    }
}

/// Why a hold that is not held cannot be bound, extended or captured.
fn hold_state_reason(hold: HoldState) -> &'static str {
    match hold {
        HoldState::None => "the authorisation was declined",
        HoldState::Held => "the hold is held",
        HoldState::Captured => "already captured",
        HoldState::Voided => "already voided",
        HoldState::Expired => "the hold has expired",
        HoldState::Refunded => "captured, then refunded",
    }
}

/// A capture or void that can never pass.
fn closed(order_id: OrderId, reason: &str) -> AuthResponse {
    AuthResponse::HoldClosed {
        order_id,
        reason: reason.to_string(),
    }
}

fn refused(order_id: OrderId, reason: &str) -> AuthResponse {
    AuthResponse::Refused {
        order_id,
        reason: reason.to_string(),
    }
}

printmesh_runtime::requests! {
    /// What an acquirer answers: an intermediary's authorise, capture or void. (It
    /// sends settlements; it is never billed or paid, so it does not answer them.)
    pub enum AcquirerRequest {
        Auth(AuthProto),
    }
}

impl printmesh_runtime::role::Role for Acquirer {
    const KIND: Role = Role::Acquirer;
    type Config = AcquirerConfig;
    type Command = AcquirerCommand;
    type Request = AcquirerRequest;

    fn open(node: Node, config: AcquirerConfig) -> Result<Arc<Acquirer>, NodeError> {
        let token_key = load_or_create_key(&node, "token.key", || rand::thread_rng().gen())?;
        let pvv_key = load_or_create_key(&node, "pvv.key", || rand::thread_rng().gen())?;
        let seal_bytes = load_or_create_key(&node, "seal.key", || {
            let (secret, _) = SealSecret::generate(&mut rand::rngs::OsRng);
            secret.to_bytes()
        })?;
        let seal = SealSecret::from_bytes(*seal_bytes.expose());
        let seal = seal.map_err(|e| NodeError::Role(format!("seal.key: {e}")))?;
        let seal_key = seal
            .public()
            .map_err(|e| NodeError::Role(format!("seal.key: {e}")))?;
        let pub_path = seal_pub_path(&node.config.data_dir);
        std::fs::write(&pub_path, format!("{}\n", seal_key.to_hex())).map_err(|source| {
            NodeError::DataDir {
                path: pub_path.display().to_string(),
                source,
            }
        })?;
        let (jobs, jobs_rx) = mpsc::channel(4 * MAX_BATCH);
        let (events_tx, events_rx) = mpsc::channel(16 * MAX_BATCH);
        let acquirer = Acquirer {
            settings: Settings {
                hold_ttl_ms: (config.hold_ttl_secs.max(1) as i64).saturating_mul(1000),
                hold_max_ms: (config.hold_max_secs.max(config.hold_ttl_secs).max(1) as i64)
                    .saturating_mul(1000),
                minor_per_point: config.minor_per_point.max(1),
                group_commit: config.group_commit,
            },
            cards: node.db.tree("cards")?,
            auths: node.db.tree("auths")?,
            accounts: node.db.tree("ledger_accounts")?,
            transfers: node.db.tree("ledger_transfers")?,
            batches: node.db.tree("batches")?,
            expiry: node.db.tree("hold_expiry")?,
            bindings: node.db.tree("lab_bindings")?,
            token_key,
            pvv_key,
            seal,
            seal_key,
            jobs,
            jobs_rx: std::sync::Mutex::new(Some(jobs_rx)),
            events_tx,
            events_rx: std::sync::Mutex::new(Some(events_rx)),
            settling: tokio::sync::Mutex::new(()),
            node,
        };
        acquirer.seed(&config.cards)?;
        Ok(Arc::new(acquirer))
    }

    /// Starts the ledger's writer, the event emitter and the sweeper of lapsed holds
    /// (until the node stops).
    fn start(self: &Arc<Self>, mut stopping: Stopping) {
        if let Some(rx) = self.jobs_rx.lock().ok().and_then(|mut r| r.take()) {
            tokio::spawn(self.clone().run_writer(rx));
        }
        if let Some(mut rx) = self.events_rx.lock().ok().and_then(|mut r| r.take()) {
            let node = self.node.clone();
            tokio::spawn(async move {
                while let Some((order_id, kind)) = rx.recv().await {
                    node.emit(order_id, kind).await;
                }
            });
        }
        let me = self.clone();
        tokio::spawn(async move { me.resend_events().await });
        let me = self.clone();
        tokio::spawn(async move {
            let every =
                Duration::from_millis((me.settings.hold_ttl_ms / 4).clamp(250, 60_000) as u64);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopping.wait() => break,
                }
                let (tx, rx) = oneshot::channel();
                if me.jobs.send(Job::ExpireDue(tx)).await.is_err() {
                    break;
                }
                if let Ok(n) = rx.await {
                    if n > 0 {
                        tracing::info!(holds = n, "expired holds released");
                    }
                }
            }
        });
    }

    async fn handle(self: Arc<Self>, event: RoleEvent<Self>) {
        match event {
            RoleEvent::Request(AcquirerRequest::Auth(inbound)) => self.on_auth(inbound).await,
            RoleEvent::Admin(command, reply) => {
                let _ = reply.send(self.on_admin(command).await);
            }
            // Its work comes by request and command; events and peers are not its.
            RoleEvent::Event(_) | RoleEvent::PeerReady(_) | RoleEvent::PeerGone(_) => {}
        }
    }
}

// ---------------------------------------------------------------------- a batch's view

/// The books as one batch of requests leaves them: reads go through what the batch
/// changed, then the stored trees; [`View::store`] writes all of it in one transaction.
/// A stored value that cannot be read poisons the batch: it is never taken for absent.
struct View<'a> {
    a: &'a Acquirer,
    books: HashMap<AccountId, Account>,
    transfers: HashMap<TransferId, Transfer>,
    cards: HashMap<[u8; 32], CardRecord>,
    auths: HashMap<OrderId, AuthRecord>,
    batches: HashMap<BatchId, Batch>,
    bindings: HashMap<OrderId, LabBinding>,
    /// Expiry index entries: `Some` to insert, `None` to remove.
    expiry: BTreeMap<Vec<u8>, Option<()>>,
    events: Vec<(OrderId, EventKind)>,
    poisoned: Cell<bool>,
}

/// What a view held before a step, to go back to if the step fails half-way.
struct Snapshot {
    books: HashMap<AccountId, Account>,
    transfers: HashMap<TransferId, Transfer>,
    events: usize,
}

fn batch_key(id: &BatchId) -> Vec<u8> {
    id.to_string().into_bytes()
}

impl<'a> View<'a> {
    fn new(a: &'a Acquirer) -> View<'a> {
        View {
            a,
            books: HashMap::new(),
            transfers: HashMap::new(),
            cards: HashMap::new(),
            auths: HashMap::new(),
            batches: HashMap::new(),
            bindings: HashMap::new(),
            expiry: BTreeMap::new(),
            events: Vec::new(),
            poisoned: Cell::new(false),
        }
    }

    /// A stored value, or `None` when there is none; a read error poisons the batch.
    fn read<V>(&self, r: Result<Option<V>, StoreError>) -> Option<V> {
        match r {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("{e}");
                self.poisoned.set(true);
                None
            }
        }
    }

    fn auth(&self, id: OrderId) -> Option<AuthRecord> {
        match self.auths.get(&id) {
            Some(r) => Some(r.clone()),
            None => self.read(self.a.auths.get(id.to_bytes())),
        }
    }

    fn put_auth(&mut self, r: AuthRecord) {
        self.auths.insert(r.order_id, r);
    }

    fn card(&self, token: &[u8; 32]) -> Option<CardRecord> {
        match self.cards.get(token) {
            Some(c) => Some(c.clone()),
            None => self.read(self.a.cards.get(token)),
        }
    }

    fn put_card(&mut self, token: [u8; 32], c: CardRecord) {
        self.cards.insert(token, c);
    }

    fn batch(&self, id: &BatchId) -> Option<Batch> {
        match self.batches.get(id) {
            Some(b) => Some(b.clone()),
            None => self.read(self.a.batches.get(batch_key(id))),
        }
    }

    fn put_batch(&mut self, b: Batch) {
        self.batches.insert(b.id, b);
    }

    fn binding(&self, id: OrderId) -> Option<LabBinding> {
        match self.bindings.get(&id) {
            Some(b) => Some(b.clone()),
            None => self.read(self.a.bindings.get(id.to_bytes())),
        }
    }

    fn put_binding(&mut self, id: OrderId, b: LabBinding) {
        self.bindings.insert(id, b);
    }

    fn put_expiry(&mut self, at_ms: i64, order_id: OrderId) {
        self.expiry.insert(expiry_key(at_ms, order_id), Some(()));
    }

    fn remove_expiry(&mut self, at_ms: i64, order_id: OrderId) {
        self.expiry.insert(expiry_key(at_ms, order_id), None);
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            books: self.books.clone(),
            transfers: self.transfers.clone(),
            events: self.events.len(),
        }
    }

    fn restore(&mut self, s: Snapshot) {
        self.books = s.books;
        self.transfers = s.transfers;
        self.events.truncate(s.events);
    }

    fn decline(
        &mut self,
        mut record: AuthRecord,
        code: DeclineCode,
        token: Option<CardToken>,
    ) -> AuthResponse {
        let order_id = record.order_id;
        let response = AuthResponse::DeclinedCard {
            order_id,
            code,
            token,
        };
        tracing::info!(%order_id, card = %format!("{} •••• {}", record.brand, record.last4), code = code.iso8583(), "declined");
        record.response = response.clone();
        record.hold = HoldState::None;
        self.put_auth(record);
        self.events.push((order_id, EventKind::Declined { code }));
        response
    }

    /// Applies a ledger operation to the batch's books.
    fn ledger(&mut self, op: &Op, now: i64) -> Result<Change, ledger::LedgerError> {
        let change = ledger::apply(&*self, op, now)?;
        if !change.replay {
            for (id, a) in &change.accounts {
                self.books.insert(id.clone(), a.clone());
            }
            self.transfers
                .insert(change.transfer.id.clone(), change.transfer.clone());
        }
        Ok(change)
    }

    fn store(&self) -> Result<(), StoreError> {
        let a = self.a;
        let mut w = WriteSet::default();
        for (id, v) in &self.books {
            w.put(ACCOUNTS, id.0.as_bytes(), a.accounts.encode(v)?);
        }
        for (id, v) in &self.transfers {
            w.put(TRANSFERS, id.0.as_bytes(), a.transfers.encode(v)?);
        }
        for (t, v) in &self.cards {
            w.put(CARDS, t, a.cards.encode(v)?);
        }
        for (id, v) in &self.auths {
            w.put(AUTHS, id.to_bytes(), a.auths.encode(v)?);
        }
        for (id, v) in &self.batches {
            w.put(BATCHES, batch_key(id), a.batches.encode(v)?);
        }
        for (id, v) in &self.bindings {
            w.put(BINDINGS, id.to_bytes(), a.bindings.encode(v)?);
        }
        for (k, v) in &self.expiry {
            match v {
                Some(()) => w.put(EXPIRY, k, a.expiry.encode(&0)?),
                None => w.remove(EXPIRY, k),
            }
        }
        w.commit(&a.trees())
    }
}

impl Books for View<'_> {
    fn account(&self, id: &AccountId) -> Option<Account> {
        match self.books.get(id) {
            Some(a) => Some(a.clone()),
            None => self.read(self.a.accounts.get(id.0.as_bytes())),
        }
    }

    fn transfer(&self, id: &TransferId) -> Option<Transfer> {
        match self.transfers.get(id) {
            Some(t) => Some(t.clone()),
            None => self.read(self.a.transfers.get(id.0.as_bytes())),
        }
    }
}

// ---------------------------------------------------------------------- inspect

/// What `printmesh inspect` shows of an acquirer: cards (last four only) with their
/// ledger balances, every authorisation with its hold, the batches, and whether the
/// books balance.
pub fn inspect(db: &crate::store::Db) -> Result<serde_json::Value, StoreError> {
    let cards: Tree<CardRecord> = db.tree("cards")?;
    let auths: Tree<AuthRecord> = db.tree("auths")?;
    let accounts: Tree<Account> = db.tree("ledger_accounts")?;
    let batches: Tree<Batch> = db.tree("batches")?;
    let mut acc = Vec::new();
    for entry in cards.entries() {
        let (token, c) = entry?;
        let token: [u8; 32] = token.try_into().unwrap_or([0; 32]);
        let ledger = accounts.get(card_account(&token).0.as_bytes())?;
        let (held, posted, available) = ledger
            .map(|a| {
                (
                    a.debits_pending,
                    a.debits_posted,
                    a.available().unwrap_or(0),
                )
            })
            .unwrap_or_default();
        acc.push(serde_json::json!({
            "last4": c.last4, "brand": c.brand.to_string(), "kind": c.kind.name(), "unit": c.unit.to_string(),
            "limit_minor": c.limit, "held_minor": held, "posted_minor": posted, "available_minor": available,
            "wrong_pins": c.wrong_pins, "blocked": c.blocked,
        }));
    }
    let bindings: Tree<LabBinding> = db.tree("lab_bindings")?;
    let mut holds = Vec::new();
    for entry in auths.entries() {
        let (_, r) = entry?;
        let bound = bindings.get(r.order_id.to_bytes())?;
        let (outcome, code) = match &r.response {
            AuthResponse::ApprovedCard { auth_code, .. }
            | AuthResponse::Approved { auth_code, .. } => ("approved", auth_code.to_string()),
            AuthResponse::DeclinedCard { code, .. } | AuthResponse::Declined { code, .. } => {
                ("declined", code.iso8583().to_string())
            }
            _ => ("other", String::new()),
        };
        holds.push(serde_json::json!({
            "order_id": r.order_id.to_string(), "transfer_id": TransferId::of(r.order_id, "hold").0,
            "last4": r.last4, "amount_minor": r.amount.amount_minor(), "currency": r.amount.currency().code(),
            "held": r.held, "outcome": outcome, "code": code, "hold": format!("{:?}", r.hold).to_lowercase(),
            "settled": r.settled.map(|b| b.to_string()),
            "lab": bound.as_ref().map(|b| b.lab_name.clone()),
            "labs_refused": bound.map(|b| b.refused_by.len()).unwrap_or(0),
            "intermediary": libp2p::PeerId::from_bytes(&r.via).map(|p| p.to_string()).unwrap_or_default(),
        }));
    }
    let all: Vec<(AccountId, Account)> = accounts
        .entries()
        .filter_map(Result::ok)
        .map(|(k, a)| (AccountId(String::from_utf8_lossy(&k).into_owned()), a))
        .collect();
    let balanced = ledger::audit(all.iter().map(|(k, a)| (k, a)));
    let mut out_batches = Vec::new();
    for entry in batches.entries() {
        let (_, b) = entry?;
        out_batches.push(serde_json::json!({
            "batch": b.id.to_string(), "orders": b.lines.len(), "total_minor": b.total.amount_minor(),
            "unknown": b.unknown.len(), "status": format!("{:?}", b.status).to_lowercase(),
            "advice_delivered": b.advice_delivered,
            "confirmed_minor": b.confirmed.map(|m| m.amount_minor()),
        }));
    }
    Ok(serde_json::json!({
        "role": "acquirer", "accounts": acc, "authorisations": holds, "batches": out_batches,
        "ledger_balanced": balanced.is_ok(),
        "ledger": all.iter().map(|(k, a)| serde_json::json!({
            "account": k.0, "unit": a.unit.to_string(), "debits_pending": a.debits_pending, "debits_posted": a.debits_posted,
            "credits_pending": a.credits_pending, "credits_posted": a.credits_posted,
        })).collect::<Vec<_>>(),
    }))
}

// ---------------------------------------------------------------------- the day's report

/// The acquirer: what it paid each intermediary that day, and each card's statement of
/// the charges settled.
pub fn report(db: &crate::store::Db, date: chrono::NaiveDate) -> Result<Report, StoreError> {
    let batches: Tree<Batch> = db.tree("batches")?;
    let auths: Tree<AuthRecord> = db.tree("auths")?;
    let cards: Tree<CardRecord> = db.tree("cards")?;
    let mut paid = Vec::new();
    let mut statements: std::collections::BTreeMap<String, Vec<Vec<String>>> = Default::default();
    let mut currency = Currency::Jpy;
    let mut payments = Vec::new();
    for (_, b) in batches.entries().filter_map(Result::ok) {
        if b.id.date != date {
            continue;
        }
        currency = b.total.currency();
        payments.push(b.total);
        for line in &b.lines {
            let Some(r) = auths.get(line.order_id.to_bytes())? else {
                continue;
            };
            let kind = r.kind.map(|k| k.name()).unwrap_or("-");
            let card = format!("{} **** {}", r.brand, r.last4);
            paid.push(vec![
                b.id.to_string(),
                line.order_id.to_string(),
                card.clone(),
                kind.to_string(),
                money_text(line.amount),
            ]);
            let unit = match r.token.and_then(|t| cards.get(t).ok().flatten()) {
                Some(c) if c.unit == printmesh_protocol::ledger::Unit::Points => {
                    format!("{} PTS", r.held)
                }
                _ => money_text(r.amount),
            };
            let captured = r
                .captured_at_ms
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            statements.entry(card).or_default().push(vec![
                line.order_id.to_string(),
                captured,
                r.store.to_string(),
                unit,
            ]);
        }
    }
    let mut statement_rows = Vec::new();
    for (card, rows) in statements {
        for mut row in rows {
            row.insert(0, card.clone());
            statement_rows.push(row);
        }
    }
    // Holds still open, for the operator's eye.
    let open = auths
        .entries()
        .filter_map(Result::ok)
        .filter(|(_, r)| r.hold == HoldState::Held)
        .count();
    let captured_unpaid: Vec<Money> = auths
        .entries()
        .filter_map(Result::ok)
        .filter(|(_, r)| r.hold == HoldState::Captured && r.settled.is_none())
        .map(|(_, r)| r.amount)
        .collect();
    Ok(Report {
        party: "acquirer".into(),
        date,
        tables: vec![
            Table {
                title: "Paid to intermediaries".into(),
                columns: vec!["batch", "order", "card", "kind", "amount"],
                rows: paid,
            },
            Table {
                title: format!("Card statements (charges settled; holds still open: {open})"),
                columns: vec!["card", "order", "captured", "store", "charged"],
                rows: statement_rows,
            },
        ],
        totals: vec![
            ("paid to intermediaries".into(), sum(payments, currency)),
            (
                "captured not yet settled".into(),
                sum(captured_unpaid, currency),
            ),
        ],
    })
}
