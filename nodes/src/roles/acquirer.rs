//! The settlement institution (patent 103/403).
//!
//! - **Card data** arrives sealed by the kiosk to this acquirer's key (HPKE, see
//!   `protocol::seal`) and is opened in memory only, per request. Stored cards are a
//!   keyed-hash token (`token.key`) and the last four digits.
//! - **Card types**: credit (a credit line), debit (a balance; PIN required), point
//!   cards (a points balance, paid at `minor_per_point`), IC cards (the chip's track-2
//!   equivalent; PIN required; the EMV cryptogram is not verified — out of scope).
//! - **PINs** are checked against a keyed verification value, never stored; three
//!   wrong PINs block the card (75).
//! - **The ledger** (`protocol::ledger`): an authorisation is a hold on the card's
//!   account (`<order>:hold`), posted when the lab ships (capture), voided when the job
//!   is rejected, expired after `hold_ttl_secs`. Every replay returns the first result.
//! - **Group commit**: every change goes through one writer task, which takes whatever
//!   requests are waiting (up to [`MAX_BATCH`]), decides them in order against the books
//!   as the batch leaves them, stores them in one sled transaction, flushes once, and
//!   only then answers. With `group_commit = false` it flushes after each request (the
//!   benchmark's baseline).
//! - **Settlement** (patent [0064]-[0065]): `printmesh acquirer settle` closes a batch per
//!   intermediary: it asks for the intermediary's bill, pays the captured orders that
//!   match, and sends the payment advice. Reports and card statements come from the
//!   same records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use printmesh_protocol::card::{CardBrand, Expiry};
use printmesh_protocol::ledger::{
    self, Account, AccountId, Books, Change, Limit, MemBooks, Op, Transfer, TransferId,
    TransferState, Unit,
};
use printmesh_protocol::messages::{
    AuthRequest, AuthResponse, BatchId, CardToken, DeclineCode, EventKind, PaymentMethod,
    SealedAuthorise, SettleLine, SettleRequest, SettleResponse,
};
use printmesh_protocol::money::{Currency, Money};
use printmesh_protocol::pinblock::{pin_verification_value, Pin};
use printmesh_protocol::seal::{
    open_card, Binding, EntryMode, PinEntry, SealError, SealKey, SealSecret,
};
use printmesh_protocol::{AuthCode, OrderId, StoreId};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::cards::load_cards;
use crate::net::{AuthProto, Inbound, NodeEvent, SettleProto};
use crate::node::{now_ms, AdminRequest, AdminResponse, Node, NodeError, RoleHandler};
use crate::store::{StoreError, Tree, WriteSet};

/// Most requests decided and stored in one group commit.
pub const MAX_BATCH: usize = 512;
/// Wrong PINs before a card is blocked.
pub const MAX_WRONG_PINS: u8 = 3;

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
    pub unit: Unit,
    /// The credit line, opening balance or opening points, as seeded.
    pub limit: i64,
    pub wrong_pins: u8,
    pub blocked: bool,
    /// The PIN verification value (a keyed hash of PAN and PIN).
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
    pub response: AuthResponse,
    pub hold: HoldState,
    /// The intermediary that asked (its peer id), who is paid at settlement.
    pub via: Vec<u8>,
    pub at_ms: i64,
    pub captured_at_ms: Option<i64>,
    pub settled: Option<BatchId>,
}

/// A closed settlement batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: BatchId,
    pub intermediary: Vec<u8>,
    pub lines: Vec<SettleLine>,
    pub total: Money,
    /// Lines of the intermediary's bill this acquirer has no capture for.
    pub unknown: Vec<SettleLine>,
    /// Captured orders the bill did not name.
    pub unbilled: Vec<OrderId>,
    pub closed_at_ms: i64,
    pub advice_delivered: bool,
}

/// Settings from the `[acquirer]` config section.
#[derive(Clone, Debug)]
pub struct Settings {
    pub hold_ttl_ms: i64,
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

/// One request for the writer, with where its answer goes.
enum Job {
    Authorise(Box<SealedAuthorise>, Vec<u8>, oneshot::Sender<AuthResponse>),
    Capture(OrderId, oneshot::Sender<AuthResponse>),
    Void(OrderId, oneshot::Sender<AuthResponse>),
    ExpireDue(oneshot::Sender<usize>),
    Pay(Box<PayJob>, oneshot::Sender<Result<Batch, String>>),
    MarkAdvised(BatchId, oneshot::Sender<()>),
}

struct PayJob {
    batch: BatchId,
    intermediary: Vec<u8>,
    bill: Vec<SettleLine>,
}

const CARDS: usize = 0;
const AUTHS: usize = 1;
const ACCOUNTS: usize = 2;
const TRANSFERS: usize = 3;
const BATCHES: usize = 4;

pub struct Acquirer {
    node: Node,
    settings: Settings,
    cards: Tree<CardRecord>,
    auths: Tree<AuthRecord>,
    accounts: Tree<Account>,
    transfers: Tree<Transfer>,
    batches: Tree<Batch>,
    token_key: [u8; 32],
    seal: SealSecret,
    seal_key: SealKey,
    jobs: mpsc::Sender<Job>,
    jobs_rx: std::sync::Mutex<Option<mpsc::Receiver<Job>>>,
    events_tx: mpsc::Sender<(OrderId, EventKind)>,
    events_rx: std::sync::Mutex<Option<mpsc::Receiver<(OrderId, EventKind)>>>,
}

/// A secret key file in the data directory: read, or made on first start. Only a
/// missing file is made anew: any other error must not replace a key that stored data
/// depends on.
fn load_or_create_key(
    node: &Node,
    name: &str,
    make: impl FnOnce() -> [u8; 32],
) -> Result<[u8; 32], NodeError> {
    let path = node.config.data_dir.join(name);
    let err = |why: String| NodeError::Role(format!("{}: {why}", path.display()));
    match std::fs::read(&path) {
        Ok(bytes) => {
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| err("not a 32-byte key".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = make();
            crate::node::write_secret_file(&path, &key).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Where an acquirer publishes its sealing key for kiosks: `<data_dir>/seal.pub`, hex.
pub fn seal_pub_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("seal.pub")
}

impl Acquirer {
    pub fn open(node: Node) -> Result<Arc<Acquirer>, NodeError> {
        let config = node
            .config
            .acquirer
            .clone()
            .ok_or_else(|| NodeError::Role("no [acquirer] section".into()))?;
        let token_key = load_or_create_key(&node, "token.key", || rand::thread_rng().gen())?;
        let seal_bytes = load_or_create_key(&node, "seal.key", || {
            let (secret, _) = SealSecret::generate(&mut rand::rngs::OsRng);
            secret.to_bytes()
        })?;
        let seal = SealSecret::from_bytes(seal_bytes)
            .map_err(|e| NodeError::Role(format!("seal.key: {e}")))?;
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
                minor_per_point: config.minor_per_point.max(1),
                group_commit: config.group_commit,
            },
            cards: node.db.tree("cards")?,
            auths: node.db.tree("auths")?,
            accounts: node.db.tree("ledger_accounts")?,
            transfers: node.db.tree("ledger_transfers")?,
            batches: node.db.tree("batches")?,
            token_key,
            seal,
            seal_key,
            jobs,
            jobs_rx: std::sync::Mutex::new(Some(jobs_rx)),
            events_tx,
            events_rx: std::sync::Mutex::new(Some(events_rx)),
            node,
        };
        acquirer.seed(&config.cards)?;
        Ok(Arc::new(acquirer))
    }

    pub fn seal_key(&self) -> SealKey {
        self.seal_key
    }

    /// Starts the writer and the hold-expiry sweeper.
    pub fn start(self: &Arc<Self>) {
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
        tokio::spawn(async move {
            let every =
                Duration::from_millis((me.settings.hold_ttl_ms / 4).clamp(250, 60_000) as u64);
            loop {
                tokio::time::sleep(every).await;
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

    /// The keyed hash that stands for a PAN in storage.
    pub fn token(&self, pan: &printmesh_protocol::Pan) -> [u8; 32] {
        *blake3::keyed_hash(&self.token_key, pan.expose_digits().as_bytes()).as_bytes()
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
                limit: card.limit_minor,
                wrong_pins: 0,
                blocked: false,
                pvv: pin_verification_value(&self.token_key, &data.pan, &pin),
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

    fn trees(&self) -> [&sled::Tree; 5] {
        [
            self.cards.raw(),
            self.auths.raw(),
            self.accounts.raw(),
            self.transfers.raw(),
            self.batches.raw(),
        ]
    }

    // ------------------------------------------------------------------ the API

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Job) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Authorises a sealed card payment, or declines it. A replay returns the first
    /// answer. `via` is the asking intermediary's peer id.
    pub async fn authorise(&self, req: SealedAuthorise, via: Vec<u8>) -> AuthResponse {
        let order_id = req.order_id;
        self.ask(|tx| Job::Authorise(Box::new(req), via, tx))
            .await
            .unwrap_or_else(|| refused(order_id, "the acquirer is shutting down"))
    }

    pub async fn capture(&self, order_id: OrderId) -> AuthResponse {
        self.ask(|tx| Job::Capture(order_id, tx))
            .await
            .unwrap_or_else(|| refused(order_id, "the acquirer is shutting down"))
    }

    pub async fn void(&self, order_id: OrderId) -> AuthResponse {
        self.ask(|tx| Job::Void(order_id, tx))
            .await
            .unwrap_or_else(|| refused(order_id, "the acquirer is shutting down"))
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
        let mut replies: Vec<Box<dyn FnOnce() + Send>> = Vec::with_capacity(batch.len());
        for job in batch {
            match job {
                Job::Authorise(req, via, tx) => {
                    let r = self.decide(&mut view, *req, via, now);
                    replies.push(Box::new(move || {
                        let _ = tx.send(r);
                    }));
                }
                Job::Capture(id, tx) => {
                    let r = self.resolve(&mut view, id, HoldState::Captured, now);
                    replies.push(Box::new(move || {
                        let _ = tx.send(r);
                    }));
                }
                Job::Void(id, tx) => {
                    let r = self.resolve(&mut view, id, HoldState::Voided, now);
                    replies.push(Box::new(move || {
                        let _ = tx.send(r);
                    }));
                }
                Job::ExpireDue(tx) => {
                    let n = self.expire(&mut view, now);
                    replies.push(Box::new(move || {
                        let _ = tx.send(n);
                    }));
                }
                Job::Pay(job, tx) => {
                    let r = self.pay(&mut view, *job, now);
                    replies.push(Box::new(move || {
                        let _ = tx.send(r);
                    }));
                }
                Job::MarkAdvised(id, tx) => {
                    if let Some(mut b) = view.batch(&id) {
                        b.advice_delivered = true;
                        view.put_batch(b);
                    }
                    replies.push(Box::new(move || {
                        let _ = tx.send(());
                    }));
                }
            }
        }
        let events = std::mem::take(&mut view.events);
        let stored = view.store();
        let flushed = match stored {
            Ok(()) => self.node.db.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            // Nothing is acknowledged that is not on disk: the requests fail and are
            // retried by their senders; their replays then find nothing and decide
            // again.
            tracing::error!("cannot store the batch: {e}");
            return;
        }
        for reply in replies {
            reply();
        }
        // Events are signed and gossiped by their own task, in order, off the
        // writer's path.
        for event in events {
            if self.events_tx.send(event).await.is_err() {
                break;
            }
        }
    }

    fn decide(
        &self,
        view: &mut View<'_>,
        req: SealedAuthorise,
        via: Vec<u8>,
        now: i64,
    ) -> AuthResponse {
        let order_id = req.order_id;
        if let Some(record) = view.auth(order_id) {
            tracing::info!(%order_id, "authorisation replayed: returning the first answer");
            return record.response;
        }
        let binding = Binding {
            order_id,
            amount: req.amount,
            store: req.store.clone(),
        };
        let summary = req.card.summary.clone();
        let mut record = AuthRecord {
            order_id,
            token: None,
            last4: summary.last4.clone(),
            brand: summary.brand,
            kind: None,
            method: req.method,
            store: req.store.clone(),
            amount: req.amount,
            held: 0,
            response: refused(order_id, ""),
            hold: HoldState::None,
            via,
            at_ms: now,
            captured_at_ms: None,
            settled: None,
        };
        let opened = match open_card(&self.seal, &binding, &req.card) {
            Ok(o) => o,
            Err(SealError::WrongKey) => return AuthResponse::NotMine { order_id },
            Err(e) => {
                tracing::warn!(%order_id, card = %summary.masked(), "sealed card data refused: {e}");
                return view.decline(record, DeclineCode::FormatError, None);
            }
        };
        let token = self.token(&opened.card.pan);
        record.token = Some(token);
        let Some(mut card) = view.card(&token) else {
            return view.decline(record, DeclineCode::InvalidCardNumber, None);
        };
        record.kind = Some(card.kind);
        let short = Some(short_token(&token));
        let today = chrono::DateTime::from_timestamp_millis(now)
            .unwrap_or_default()
            .date_naive();
        if opened.card.expiry.is_expired_on(today) || card.expiry != opened.card.expiry {
            return view.decline(record, DeclineCode::ExpiredCard, short);
        }
        if card.blocked {
            return view.decline(record, DeclineCode::PinTriesExceeded, short);
        }
        if !card.kind.allows(req.method, opened.entry) {
            return view.decline(record, DeclineCode::NotPermitted, short);
        }
        // The PIN: required on debit and IC cards, checked whenever one was entered.
        let pin_ok = match &opened.pin {
            PinEntry::None if card.kind.needs_pin() => Some(false),
            PinEntry::None => None,
            PinEntry::Unreadable => {
                return view.decline(record, DeclineCode::FormatError, short);
            }
            PinEntry::Entered(pin) => {
                let got = blake3::Hash::from(pin_verification_value(
                    &self.token_key,
                    &opened.card.pan,
                    pin,
                ));
                // blake3::Hash compares in constant time.
                Some(got == blake3::Hash::from(card.pvv))
            }
        };
        match pin_ok {
            Some(false) if !matches!(opened.pin, PinEntry::None) => {
                card.wrong_pins = card.wrong_pins.saturating_add(1);
                let code = if card.wrong_pins >= MAX_WRONG_PINS {
                    card.blocked = true;
                    tracing::warn!(%order_id, card = %summary.masked(), "third wrong PIN: card blocked");
                    DeclineCode::PinTriesExceeded
                } else {
                    DeclineCode::IncorrectPin
                };
                view.put_card(token, card);
                return view.decline(record, code, short);
            }
            Some(false) => return view.decline(record, DeclineCode::IncorrectPin, short),
            Some(true) if card.wrong_pins > 0 => {
                card.wrong_pins = 0;
                view.put_card(token, card.clone());
            }
            _ => {}
        }
        // The amount, in the card's own unit.
        if req.amount.amount_minor() <= 0 {
            return view.decline(record, DeclineCode::InvalidAmount, short);
        }
        let currency = req.amount.currency();
        let (held, credit) = match card.unit {
            Unit::Money(c) if c == currency => (req.amount.amount_minor(), due_account(currency)),
            Unit::Points => (
                req.amount
                    .amount_minor()
                    .saturating_add(self.settings.minor_per_point - 1)
                    / self.settings.minor_per_point,
                points_redeemed(),
            ),
            Unit::Money(_) => return view.decline(record, DeclineCode::InvalidAmount, short),
        };
        let op = Op::Hold {
            id: TransferId::of(order_id, "hold"),
            debit: card_account(&token),
            credit,
            amount: held,
            expires_at_ms: now.saturating_add(self.settings.hold_ttl_ms),
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
            amount: req.amount,
            token: short_token(&token),
        };
        record.response = response.clone();
        record.hold = HoldState::Held;
        record.held = held;
        tracing::info!(%order_id, card = %summary.masked(), amount = %req.amount, kind = card.kind.name(), "approved");
        view.put_auth(record);
        view.events
            .push((order_id, EventKind::Authorised { auth_code }));
        response
    }

    /// Moves a hold to captured or voided.
    fn resolve(
        &self,
        view: &mut View<'_>,
        order_id: OrderId,
        to: HoldState,
        now: i64,
    ) -> AuthResponse {
        let done = match to {
            HoldState::Captured => AuthResponse::Captured { order_id },
            _ => AuthResponse::Voided { order_id },
        };
        let Some(mut record) = view.auth(order_id) else {
            return refused(order_id, "no authorisation for this order");
        };
        match (record.hold, to) {
            (from, to) if from == to => return done,
            (HoldState::Held, _) => {}
            (HoldState::None, _) => return refused(order_id, "the authorisation was declined"),
            (HoldState::Captured, _) => return refused(order_id, "already captured"),
            (HoldState::Voided, _) => return refused(order_id, "already voided"),
            (HoldState::Expired, _) => return refused(order_id, "the hold has expired"),
        }
        let hold = TransferId::of(order_id, "hold");
        let op = match to {
            HoldState::Captured => Op::Post { id: hold },
            _ => Op::Void { id: hold },
        };
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
            }
        }
        record.hold = to;
        if to == HoldState::Captured {
            record.captured_at_ms = Some(now);
        } else {
            view.events.push((order_id, EventKind::Voided));
        }
        view.put_auth(record);
        done
    }

    fn expire(&self, view: &mut View<'_>, now: i64) -> usize {
        let due: Vec<OrderId> = self
            .auths
            .entries()
            .filter_map(Result::ok)
            .map(|(_, r)| r)
            .filter(|r| r.hold == HoldState::Held)
            .filter(|r| {
                matches!(
                    view.transfer(&TransferId::of(r.order_id, "hold")).map(|t| t.state),
                    Some(TransferState::Pending { expires_at_ms }) if expires_at_ms <= now
                )
            })
            .map(|r| r.order_id)
            .collect();
        let mut n = 0;
        for order_id in due {
            let Some(mut record) = view.auth(order_id) else {
                continue;
            };
            if record.hold != HoldState::Held {
                continue;
            }
            if view
                .ledger(
                    &Op::Expire {
                        id: TransferId::of(order_id, "hold"),
                    },
                    now,
                )
                .is_ok()
            {
                record.hold = HoldState::Expired;
                view.put_auth(record);
                view.events.push((order_id, EventKind::Expired));
                n += 1;
            }
        }
        n
    }

    // ------------------------------------------------------------------ settlement

    /// Pays the bill's lines that match a capture of ours through this intermediary:
    /// the money owed to merchants becomes cash paid out, order by order.
    fn pay(&self, view: &mut View<'_>, job: PayJob, now: i64) -> Result<Batch, String> {
        if let Some(existing) = view.batch(&job.batch) {
            return Ok(existing);
        }
        let mut lines = Vec::new();
        let mut unknown = Vec::new();
        let mut billed = BTreeSet::new();
        let mut currency = None;
        for line in job
            .bill
            .iter()
            .take(printmesh_protocol::messages::proto::MAX_SETTLE_LINES)
        {
            billed.insert(line.order_id);
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
        let unbilled: Vec<OrderId> = self
            .auths
            .entries()
            .filter_map(Result::ok)
            .map(|(_, r)| r)
            .filter(|r| {
                r.hold == HoldState::Captured && r.settled.is_none() && r.via == job.intermediary
            })
            .map(|r| r.order_id)
            .filter(|id| !billed.contains(id))
            .collect();
        let currency = currency.unwrap_or(Currency::Jpy);
        let mut total = Money::new(0, currency);
        for l in &lines {
            total = total.checked_add(l.amount).map_err(|e| e.to_string())?;
        }
        let batch = Batch {
            id: job.batch,
            intermediary: job.intermediary,
            lines,
            total,
            unknown,
            unbilled,
            closed_at_ms: now,
            advice_delivered: false,
        };
        view.put_batch(batch.clone());
        Ok(batch)
    }

    /// `printmesh acquirer settle`: one batch per intermediary with captured, unpaid
    /// orders; an advice not delivered before is sent again.
    pub async fn settle(&self) -> Result<String, String> {
        let mut out = Vec::new();
        // Advices that did not reach their intermediary before.
        for (_, b) in self.batches.entries().filter_map(Result::ok) {
            if !b.advice_delivered {
                out.push(self.advise(&b).await);
            }
        }
        let mut by_intermediary: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for (_, r) in self.auths.entries().filter_map(Result::ok) {
            if r.hold == HoldState::Captured && r.settled.is_none() {
                *by_intermediary.entry(r.via.clone()).or_default() += 1;
            }
        }
        if by_intermediary.is_empty() && out.is_empty() {
            return Ok("nothing to settle: no captured orders are unpaid".into());
        }
        let today = chrono::Utc::now().date_naive();
        for (via, _) in by_intermediary {
            let Ok(peer) = PeerId::from_bytes(&via) else {
                continue;
            };
            let seq = self
                .batches
                .entries()
                .filter_map(Result::ok)
                .filter(|(_, b)| b.id.date == today)
                .count() as u32
                + 1;
            let batch = BatchId { date: today, seq };
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
                    continue;
                }
                Err(e) => {
                    out.push(format!(
                        "batch {batch}: the intermediary is not reachable: {e}"
                    ));
                    continue;
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
            out.push(self.advise(&paid).await);
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
        let mut text = format!(
            "batch {}: paid {} for {} order{}{}{}",
            b.id,
            b.total,
            b.lines.len(),
            if b.lines.len() == 1 { "" } else { "s" },
            if b.unknown.is_empty() {
                String::new()
            } else {
                format!("; {} billed lines not ours", b.unknown.len())
            },
            if b.unbilled.is_empty() {
                String::new()
            } else {
                format!("; {} captured orders not billed", b.unbilled.len())
            },
        );
        match self.node.client.request::<SettleProto>(peer, advice).await {
            Ok(SettleResponse::Received { .. }) => {
                let _ = self.ask(|tx| Job::MarkAdvised(b.id, tx)).await;
                text.push_str("; the intermediary confirmed");
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
            AuthRequest::Capture { order_id } => self.capture(order_id).await,
            AuthRequest::Void { order_id } => self.void(order_id).await,
            AuthRequest::Authorise(a) | AuthRequest::AuthoriseWithPin { auth: a, .. } => {
                tracing::warn!(%peer, order_id = %a.order_id, "unsealed card data refused");
                refused(a.order_id, "card data must be sealed to the acquirer")
            }
        };
        responder.respond(response);
    }

    async fn on_admin(&self, request: AdminRequest) -> AdminResponse {
        match request {
            AdminRequest::Settle => match self.settle().await {
                Ok(text) => AdminResponse { ok: true, text },
                Err(text) => AdminResponse { ok: false, text },
            },
            AdminRequest::Report { date, csv } => {
                match crate::report::acquirer(&self.node.db, date) {
                    Ok(r) => AdminResponse {
                        ok: true,
                        text: r.render(csv),
                    },
                    Err(e) => AdminResponse {
                        ok: false,
                        text: e.to_string(),
                    },
                }
            }
            other => AdminResponse {
                ok: false,
                text: format!("an acquirer does not do {other:?}"),
            },
        }
    }
}

fn refused(order_id: OrderId, reason: &str) -> AuthResponse {
    AuthResponse::Refused {
        order_id,
        reason: reason.to_string(),
    }
}

impl RoleHandler for Acquirer {
    async fn handle(self: Arc<Self>, event: NodeEvent) {
        match event {
            NodeEvent::Auth(inbound) => self.on_auth(inbound).await,
            NodeEvent::Admin(admin) => {
                let (request, reply) = admin.into_parts();
                let response = self.on_admin(request).await;
                let _ = reply.send(response);
            }
            NodeEvent::Settle(inbound) => {
                let (_, request, responder) = inbound.into_parts();
                let batch = match request {
                    SettleRequest::BillPlease { batch }
                    | SettleRequest::Payment { batch, .. }
                    | SettleRequest::LabPayment { batch, .. } => batch,
                };
                responder.respond(SettleResponse::Refused {
                    batch,
                    reason: "an acquirer is not billed or paid".into(),
                });
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------- a batch's view

/// The books as one batch of requests leaves them: reads go through what the batch
/// changed, then the stored trees; [`View::store`] writes all of it in one transaction.
struct View<'a> {
    a: &'a Acquirer,
    books: HashMap<AccountId, Account>,
    transfers: HashMap<TransferId, Transfer>,
    cards: HashMap<[u8; 32], CardRecord>,
    auths: HashMap<OrderId, AuthRecord>,
    batches: HashMap<BatchId, Batch>,
    dirty_accounts: BTreeSet<AccountId>,
    dirty_transfers: BTreeSet<TransferId>,
    dirty_cards: BTreeSet<[u8; 32]>,
    dirty_auths: BTreeSet<OrderId>,
    dirty_batches: BTreeSet<BatchId>,
    events: Vec<(OrderId, EventKind)>,
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
            dirty_accounts: BTreeSet::new(),
            dirty_transfers: BTreeSet::new(),
            dirty_cards: BTreeSet::new(),
            dirty_auths: BTreeSet::new(),
            dirty_batches: BTreeSet::new(),
            events: Vec::new(),
        }
    }

    fn auth(&self, id: OrderId) -> Option<AuthRecord> {
        match self.auths.get(&id) {
            Some(r) => Some(r.clone()),
            None => self.a.auths.get(id.to_bytes()).ok().flatten(),
        }
    }

    fn put_auth(&mut self, r: AuthRecord) {
        self.dirty_auths.insert(r.order_id);
        self.auths.insert(r.order_id, r);
    }

    fn card(&self, token: &[u8; 32]) -> Option<CardRecord> {
        match self.cards.get(token) {
            Some(c) => Some(c.clone()),
            None => self.a.cards.get(token).ok().flatten(),
        }
    }

    fn put_card(&mut self, token: [u8; 32], c: CardRecord) {
        self.dirty_cards.insert(token);
        self.cards.insert(token, c);
    }

    fn batch(&self, id: &BatchId) -> Option<Batch> {
        match self.batches.get(id) {
            Some(b) => Some(b.clone()),
            None => self.a.batches.get(batch_key(id)).ok().flatten(),
        }
    }

    fn put_batch(&mut self, b: Batch) {
        self.dirty_batches.insert(b.id);
        self.batches.insert(b.id, b);
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
                self.dirty_accounts.insert(id.clone());
                self.books.insert(id.clone(), a.clone());
            }
            self.dirty_transfers.insert(change.transfer.id.clone());
            self.transfers
                .insert(change.transfer.id.clone(), change.transfer.clone());
        }
        Ok(change)
    }

    fn store(&self) -> Result<(), StoreError> {
        let a = self.a;
        let mut w = WriteSet::default();
        for id in &self.dirty_accounts {
            if let Some(v) = self.books.get(id) {
                w.put(ACCOUNTS, id.0.as_bytes(), a.accounts.encode(v)?);
            }
        }
        for id in &self.dirty_transfers {
            if let Some(v) = self.transfers.get(id) {
                w.put(TRANSFERS, id.0.as_bytes(), a.transfers.encode(v)?);
            }
        }
        for t in &self.dirty_cards {
            if let Some(v) = self.cards.get(t) {
                w.put(CARDS, t, a.cards.encode(v)?);
            }
        }
        for id in &self.dirty_auths {
            if let Some(v) = self.auths.get(id) {
                w.put(AUTHS, id.to_bytes(), a.auths.encode(v)?);
            }
        }
        for id in &self.dirty_batches {
            if let Some(v) = self.batches.get(id) {
                w.put(BATCHES, batch_key(id), a.batches.encode(v)?);
            }
        }
        w.commit(&a.trees())
    }
}

impl Books for View<'_> {
    fn account(&self, id: &AccountId) -> Option<Account> {
        match self.books.get(id) {
            Some(a) => Some(a.clone()),
            None => self.a.accounts.get(id.0.as_bytes()).ok().flatten(),
        }
    }

    fn transfer(&self, id: &TransferId) -> Option<Transfer> {
        match self.transfers.get(id) {
            Some(t) => Some(t.clone()),
            None => self.a.transfers.get(id.0.as_bytes()).ok().flatten(),
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
    let mut holds = Vec::new();
    for entry in auths.entries() {
        let (_, r) = entry?;
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
            "unknown": b.unknown.len(), "unbilled": b.unbilled.len(), "advice_delivered": b.advice_delivered,
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
