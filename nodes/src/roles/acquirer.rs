//! The settlement institution (patent 103/403), first version: card accounts seeded
//! from the test-card file, authorisation holds with Luhn, expiry and available-credit
//! checks, capture and void. Replays of any request return the first result.
//!
//! Stored PANs are a keyed hash (token) plus the last four digits; nothing else of the
//! card is kept. PINs are verified against a keyed-hash verification value (never the
//! PIN itself); the PIN block is opened in memory and dropped with the request.

use std::sync::Arc;

use printmesh_protocol::card::{CardBrand, CardData, Expiry};
use printmesh_protocol::messages::{
    AuthRequest, AuthResponse, Authorise, DeclineCode, EventKind, PaymentMethod,
};
use printmesh_protocol::money::{Currency, Money};
use printmesh_protocol::pinblock::{open_format4, pin_verification_value, EncryptedPinBlock, Pin};
use printmesh_protocol::{AuthCode, OrderId};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::cards::load_cards;
use crate::config::load_pin_key;
use crate::net::{AuthProto, Inbound, NodeEvent};
use crate::node::{now_ms, Node, NodeError, RoleHandler};
use crate::store::{StoreError, Tree};

/// A card account. Keyed by the PAN token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub last4: String,
    pub brand: CardBrand,
    pub expiry: Expiry,
    pub currency: Currency,
    pub limit_minor: i64,
    /// Sum of open holds.
    pub held_minor: i64,
    /// Sum of captured amounts.
    pub posted_minor: i64,
}

impl Account {
    pub fn available_minor(&self) -> i64 {
        self.limit_minor - self.held_minor - self.posted_minor
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldState {
    /// Declined: no hold was placed.
    None,
    Held,
    Captured,
    Voided,
}

/// The acquirer's record of one order's authorisation. Keyed by order id: the
/// authorisation transfer id is `<order id>:auth`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRecord {
    pub order_id: OrderId,
    pub token: Option<[u8; 32]>,
    pub last4: String,
    pub amount: Money,
    pub response: AuthResponse,
    pub hold: HoldState,
    pub at_ms: i64,
}

pub struct Acquirer {
    node: Node,
    accounts: Tree<Account>,
    auths: Tree<AuthRecord>,
    /// PAN token → PIN verification value.
    pins: Tree<[u8; 32]>,
    token_key: [u8; 32],
    /// The PIN encryption key shared with the kiosks' PIN pads.
    pin_key: Option<Vec<u8>>,
    /// Authorisations are serialised: one account's available credit is checked and
    /// changed as one step.
    lock: tokio::sync::Mutex<()>,
}

/// The tokenisation key: random, per acquirer, kept in its data directory.
fn load_token_key(node: &Node) -> Result<[u8; 32], NodeError> {
    let path = node.config.data_dir.join("token.key");
    let err = |why: String| NodeError::Role(format!("{}: {why}", path.display()));
    match std::fs::read(&path) {
        Ok(bytes) => {
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| err("not a 32-byte key".into()))
        }
        // Only a missing key is made anew: any other error must not replace the key
        // that every stored token depends on.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::thread_rng().gen();
            crate::node::write_secret_file(&path, &key).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

impl Acquirer {
    pub fn open(node: Node) -> Result<Acquirer, NodeError> {
        let config = node
            .config
            .acquirer
            .clone()
            .ok_or_else(|| NodeError::Role("no [acquirer] section".into()))?;
        let pin_key = match &config.pin_key {
            Some(path) => Some(load_pin_key(path)?),
            None => None,
        };
        let acquirer = Acquirer {
            accounts: node.db.tree("accounts")?,
            auths: node.db.tree("auths")?,
            pins: node.db.tree("pins")?,
            token_key: load_token_key(&node)?,
            pin_key,
            node,
            lock: tokio::sync::Mutex::new(()),
        };
        for card in load_cards(&config.cards)? {
            let data = card.read().map_err(NodeError::Role)?;
            let token = acquirer.token(&data);
            let account = Account {
                last4: data.pan.last4().to_string(),
                brand: data.pan.brand(),
                expiry: data.expiry,
                currency: card.currency().map_err(NodeError::Role)?,
                limit_minor: card.limit_minor,
                held_minor: 0,
                posted_minor: 0,
            };
            // Seeding never overwrites an account that already has history.
            acquirer.accounts.insert_new(token, &account)?;
            let pin = Pin::new(card.pin.as_bytes())
                .map_err(|e| NodeError::Role(format!("card {}: {e}", card.name)))?;
            let pvv = pin_verification_value(&acquirer.token_key, &data.pan, &pin);
            acquirer.pins.insert_new(token, &pvv)?;
        }
        Ok(acquirer)
    }

    /// The keyed hash that stands for a PAN in storage.
    pub fn token(&self, card: &CardData) -> [u8; 32] {
        *blake3::keyed_hash(&self.token_key, card.pan.expose_digits().as_bytes()).as_bytes()
    }

    /// Checks the cardholder's PIN. Debit and IC cards must carry one; a credit card is
    /// checked when the cardholder chose to enter it.
    fn verify_pin(
        &self,
        req: &Authorise,
        token: &[u8; 32],
        pin_block: Option<&EncryptedPinBlock>,
    ) -> Result<(), DeclineCode> {
        let order_id = req.order_id;
        let Some(block) = pin_block else {
            return match req.method {
                PaymentMethod::Debit | PaymentMethod::IcCard => Err(DeclineCode::IncorrectPin),
                PaymentMethod::Credit | PaymentMethod::PointCard => Ok(()),
            };
        };
        let Some(key) = &self.pin_key else {
            tracing::error!(%order_id, "a PIN arrived but this acquirer has no PIN key (acquirer.pin_key)");
            return Err(DeclineCode::NotPermitted);
        };
        let Some(expected) = self.pins.get(token).ok().flatten() else {
            return Err(DeclineCode::NotPermitted);
        };
        // A block that does not open under our key for this PAN is a wrong PIN as far
        // as the cardholder can tell; it is logged for the operator without its bytes.
        let pin = open_format4(&block.0, &req.card.pan, key).map_err(|e| {
            tracing::warn!(%order_id, "PIN block does not open: {e}");
            DeclineCode::IncorrectPin
        })?;
        let got = blake3::Hash::from(pin_verification_value(&self.token_key, &req.card.pan, &pin));
        // blake3::Hash compares in constant time.
        if got == blake3::Hash::from(expected) {
            Ok(())
        } else {
            Err(DeclineCode::IncorrectPin)
        }
    }

    fn decide(
        &self,
        req: &Authorise,
        token: &[u8; 32],
        account: Option<&Account>,
        pin_block: Option<&EncryptedPinBlock>,
    ) -> Result<(), DeclineCode> {
        let today = chrono::Utc::now().date_naive();
        if req.card.expiry.is_expired_on(today) {
            return Err(DeclineCode::ExpiredCard);
        }
        let account = account.ok_or(DeclineCode::InvalidCardNumber)?;
        if account.expiry != req.card.expiry {
            return Err(DeclineCode::ExpiredCard);
        }
        self.verify_pin(req, token, pin_block)?;
        if account.currency != req.amount.currency() || req.amount.amount_minor() <= 0 {
            return Err(DeclineCode::InvalidAmount);
        }
        if req.amount.amount_minor() > account.available_minor() {
            return Err(DeclineCode::InsufficientFunds);
        }
        Ok(())
    }

    /// Places a hold, or declines. A replay returns the first answer.
    pub async fn authorise(
        &self,
        req: Authorise,
        pin_block: Option<EncryptedPinBlock>,
    ) -> Result<AuthResponse, StoreError> {
        let order_id = req.order_id;
        let guard = self.lock.lock().await;
        if let Some(record) = self.auths.get(order_id.to_bytes())? {
            tracing::info!(%order_id, "authorisation replayed: returning the first answer");
            return Ok(record.response);
        }
        let token = self.token(&req.card);
        let mut account = self.accounts.get(token)?;
        let (response, hold) = match self.decide(&req, &token, account.as_ref(), pin_block.as_ref())
        {
            Ok(()) => {
                let code = AuthCode::from_random(rand::thread_rng().gen());
                if let Some(a) = account.as_mut() {
                    a.held_minor += req.amount.amount_minor();
                }
                (
                    AuthResponse::Approved {
                        order_id,
                        auth_code: code,
                        amount: req.amount,
                    },
                    HoldState::Held,
                )
            }
            Err(code) => (AuthResponse::Declined { order_id, code }, HoldState::None),
        };
        let record = AuthRecord {
            order_id,
            token: account.as_ref().map(|_| token),
            last4: req.card.pan.last4().to_string(),
            amount: req.amount,
            response: response.clone(),
            hold,
            at_ms: now_ms(),
        };
        self.write(order_id, &record, account.as_ref().map(|a| (token, a)))?;
        self.node.db.flush().await?;
        drop(guard);
        match &response {
            AuthResponse::Approved { auth_code, .. } => {
                tracing::info!(%order_id, card = %req.card.pan, amount = %req.amount, "approved");
                self.emit(
                    order_id,
                    EventKind::Authorised {
                        auth_code: auth_code.clone(),
                    },
                )
                .await;
            }
            AuthResponse::Declined { code, .. } => {
                tracing::info!(%order_id, card = %req.card.pan, amount = %req.amount, code = code.iso8583(), "declined");
                self.emit(order_id, EventKind::Declined { code: *code })
                    .await;
            }
            _ => {}
        }
        Ok(response)
    }

    /// Writes the auth record and the account in one transaction.
    fn write(
        &self,
        order_id: OrderId,
        record: &AuthRecord,
        account: Option<([u8; 32], &Account)>,
    ) -> Result<(), StoreError> {
        let record_bytes = self.auths.encode(record)?;
        let account_bytes = match account {
            Some((token, a)) => Some((token, self.accounts.encode(a)?)),
            None => None,
        };
        (self.auths.raw(), self.accounts.raw())
            .transaction(|(auths, accounts)| {
                auths.insert(&order_id.to_bytes(), record_bytes.clone())?;
                if let Some((token, bytes)) = &account_bytes {
                    accounts.insert(&token[..], bytes.clone())?;
                }
                Ok(())
            })
            .map_err(crate::store::transaction_error)
    }

    /// Moves a hold to `to` (captured or voided), adjusting the account.
    async fn resolve(&self, order_id: OrderId, to: HoldState) -> Result<AuthResponse, StoreError> {
        let guard = self.lock.lock().await;
        let done = match to {
            HoldState::Captured => AuthResponse::Captured { order_id },
            _ => AuthResponse::Voided { order_id },
        };
        let refuse = |reason: &str| AuthResponse::Refused {
            order_id,
            reason: reason.to_string(),
        };
        let Some(mut record) = self.auths.get(order_id.to_bytes())? else {
            return Ok(refuse("no authorisation for this order"));
        };
        match (record.hold, to) {
            (from, to) if from == to => return Ok(done),
            (HoldState::Held, _) => {}
            (HoldState::None, _) => return Ok(refuse("the authorisation was declined")),
            (HoldState::Captured, _) => return Ok(refuse("already captured")),
            (HoldState::Voided, _) => return Ok(refuse("already voided")),
        }
        let Some(token) = record.token else {
            return Ok(refuse("no account"));
        };
        let Some(mut account) = self.accounts.get(token)? else {
            return Ok(refuse("no account"));
        };
        let amount = record.amount.amount_minor();
        account.held_minor -= amount;
        if to == HoldState::Captured {
            account.posted_minor += amount;
        }
        if account.held_minor < 0 {
            tracing::error!(%order_id, "invariant broken: hold larger than the account's held total");
            return Ok(refuse(
                "the account's holds do not add up; refer to the acquirer",
            ));
        }
        record.hold = to;
        self.write(order_id, &record, Some((token, &account)))?;
        self.node.db.flush().await?;
        drop(guard);
        if to == HoldState::Voided {
            self.emit(order_id, EventKind::Voided).await;
        }
        Ok(done)
    }

    async fn emit(&self, order_id: OrderId, kind: EventKind) {
        self.node.emit(order_id, kind).await;
    }

    async fn on_auth(&self, inbound: Inbound<AuthProto>) {
        let (peer, request, responder) = inbound.into_parts();
        let order_id = match &request {
            AuthRequest::Authorise(a) | AuthRequest::AuthoriseWithPin { auth: a, .. } => a.order_id,
            AuthRequest::Capture { order_id } | AuthRequest::Void { order_id } => *order_id,
        };
        let result = match request {
            AuthRequest::Authorise(a) => self.authorise(a, None).await,
            AuthRequest::AuthoriseWithPin { auth, pin_block } => {
                self.authorise(auth, Some(pin_block)).await
            }
            AuthRequest::Capture { order_id } => self.resolve(order_id, HoldState::Captured).await,
            AuthRequest::Void { order_id } => self.resolve(order_id, HoldState::Voided).await,
        };
        match result {
            Ok(response) => responder.respond(response),
            Err(e) => {
                tracing::error!(%peer, %order_id, "authorisation failed: {e}");
                responder.respond(AuthResponse::Refused {
                    order_id,
                    reason: "the acquirer could not record the request; try again".into(),
                });
            }
        }
    }
}

impl RoleHandler for Acquirer {
    async fn handle(self: Arc<Self>, event: NodeEvent) {
        if let NodeEvent::Auth(inbound) = event {
            self.on_auth(inbound).await;
        }
    }
}

/// What `printmesh inspect` shows of an acquirer: accounts (last four only) and every
/// authorisation with its hold state.
pub fn inspect(db: &crate::store::Db) -> Result<serde_json::Value, StoreError> {
    let accounts: Tree<Account> = db.tree("accounts")?;
    let auths: Tree<AuthRecord> = db.tree("auths")?;
    let mut acc = Vec::new();
    for entry in accounts.entries() {
        let (_, a) = entry?;
        acc.push(serde_json::json!({
            "last4": a.last4, "brand": a.brand.to_string(), "limit_minor": a.limit_minor,
            "held_minor": a.held_minor, "posted_minor": a.posted_minor, "currency": a.currency.code(),
        }));
    }
    let mut holds = Vec::new();
    for entry in auths.entries() {
        let (_, r) = entry?;
        let (outcome, code) = match &r.response {
            AuthResponse::Approved { auth_code, .. } => ("approved", auth_code.to_string()),
            AuthResponse::Declined { code, .. } => ("declined", code.iso8583().to_string()),
            _ => ("other", String::new()),
        };
        holds.push(serde_json::json!({
            "order_id": r.order_id.to_string(), "transfer_id": format!("{}:auth", r.order_id),
            "last4": r.last4, "amount_minor": r.amount.amount_minor(), "currency": r.amount.currency().code(),
            "outcome": outcome, "code": code, "hold": format!("{:?}", r.hold).to_lowercase(),
        }));
    }
    Ok(serde_json::json!({ "role": "acquirer", "accounts": acc, "authorisations": holds }))
}
