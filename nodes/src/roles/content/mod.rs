//! The content company (patent 104, [0021], [0032]): publishes a catalogue of items a
//! customer can buy at a kiosk and have written onto their own card (music, images,
//! game data), signed by its node key, and serves the items' bytes.
//!
//! `printmesh content --config F publish CATALOGUE.toml` reads the catalogue file, puts
//! every item's file (and cover) into the node's blob store, and signs the whole
//! catalogue at the next version: an item added, changed or left out (withdrawn) shows
//! in the answer. Kiosks and intermediaries ask for catalogues newer than theirs
//! (`/printmesh/content/1`) and fetch items' bytes (`/printmesh/fetch/1`); intermediaries
//! pass catalogues on to kiosks that cannot reach the company. Every holder checks the
//! signature and (in an enrolled network) that the signer is an enrolled content
//! company before using one.

pub mod config;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use printmesh_protocol::content::{
    sign_catalogue, verify_catalogue, Catalogue, Item, ItemKind, Names, SignedCatalogue,
    MAX_COVER_BYTES,
};
use printmesh_protocol::messages::{proto, BatchId, Role, SettleLine};
use printmesh_protocol::money::{Currency, Money};
use printmesh_protocol::wire::content::{ContentRequest, ContentResponse};
use printmesh_protocol::OrderId;
use serde::Deserialize;

pub use self::config::ContentConfig;
use crate::net::{ContentProto, Inbound, SettleProto};
use crate::node::{now_ms, AdminResponse, Node, NodeError, RoleCommand};
use crate::report::{money_text, sum, Report, Table};
use crate::store::{StoreError, Tree};
use printmesh_runtime::role::{RoleEvent, Stopping};

/// A catalogue file as a content company writes it (TOML).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueFile {
    /// ISO 4217 code of every price (default JPY).
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default, rename = "item")]
    pub items: Vec<ItemEntry>,
}

/// One `[[item]]` of a catalogue file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemEntry {
    pub id: String,
    pub kind: String,
    pub title_ja: String,
    pub title_en: String,
    #[serde(default)]
    pub title_kana: String,
    #[serde(default)]
    pub artist_ja: String,
    #[serde(default)]
    pub artist_en: String,
    #[serde(default)]
    pub artist_kana: String,
    /// The price in minor units (yen).
    pub price_minor: i64,
    pub rights_holder: String,
    /// The item's bytes (relative to the catalogue file).
    pub file: PathBuf,
    #[serde(default)]
    pub cover: Option<PathBuf>,
    /// On sale from this day (UTC; default: now) until this one (default: ten years).
    #[serde(default)]
    pub valid_from: Option<NaiveDate>,
    #[serde(default)]
    pub valid_until: Option<NaiveDate>,
    /// Where on the card: a folder (`MUSIC/PRINTMSH`) and a file name.
    pub folder: String,
    pub file_name: String,
}

fn day_ms(day: NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

/// What changed between two catalogues, in words.
fn changes(old: Option<&Catalogue>, new: &Catalogue) -> String {
    let mut added = vec![];
    let mut changed = vec![];
    for item in &new.items {
        match old.and_then(|o| o.item(&item.id)) {
            None => added.push(item.id.to_string()),
            Some(before) if before != item => changed.push(item.id.to_string()),
            Some(_) => {}
        }
    }
    let withdrawn: Vec<String> = old
        .map(|o| {
            o.items
                .iter()
                .filter(|i| new.item(&i.id).is_none())
                .map(|i| i.id.to_string())
                .collect()
        })
        .unwrap_or_default();
    let list = |what: &str, ids: &[String]| {
        if ids.is_empty() {
            String::new()
        } else {
            format!("; {what}: {}", ids.join(", "))
        }
    };
    format!(
        "{} items{}{}{}",
        new.items.len(),
        list("added", &added),
        list("changed", &changed),
        list("withdrawn", &withdrawn)
    )
}

/// What the company was paid for one order (its prices less the intermediary's
/// commission), once.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payout {
    pub order_id: OrderId,
    pub batch: BatchId,
    pub amount: Money,
    /// The intermediary that paid (PeerId bytes).
    pub payer: Vec<u8>,
    pub at_ms: i64,
}

pub struct Content {
    node: Node,
    config: ContentConfig,
    /// `current` → the catalogue as published (signed).
    catalogue: Tree<SignedCatalogue>,
    /// order id → what was paid for it.
    payouts: Tree<Payout>,
    /// An item file's absolute path → (its length, modification time in ns, its blob)
    /// when it was last put in the store: publishing the same files again (every start,
    /// with `[content] catalogue`) does not read every byte again.
    imported: Tree<(u64, u128, printmesh_protocol::BlobId)>,
    lock: tokio::sync::Mutex<()>,
}

impl Content {
    /// The catalogue published last, checked.
    pub fn current(&self) -> Result<Option<Catalogue>, String> {
        let Some(signed) = self.catalogue.get(b"current").map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        verify_catalogue(&signed)
            .map(|v| Some(v.catalogue))
            .map_err(|e| format!("the stored catalogue does not check: {e}"))
    }

    /// An item's file into the blob store, unless the same file (length and
    /// modification time) is there already from an earlier publication.
    async fn import(&self, source: &Path) -> Result<(printmesh_protocol::BlobId, u64), String> {
        let meta = std::fs::metadata(source).map_err(|e| e.to_string())?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = source.to_string_lossy().as_bytes().to_vec();
        if let Some((len, at, blob)) = self.imported.get(&key).map_err(|e| e.to_string())? {
            if len == meta.len() && at == mtime && self.node.blobs.len_of(&blob) == Some(len) {
                return Ok((blob, len));
            }
        }
        let (blob, len) = self
            .node
            .blobs
            .import_large(source)
            .await
            .map_err(|e| e.to_string())?;
        self.imported
            .insert(&key, &(len, mtime, blob))
            .map_err(|e| e.to_string())?;
        Ok((blob, len))
    }

    /// Reads a catalogue file, stores every item's bytes, and publishes the result at
    /// the next version (nothing new if nothing changed). Returns what changed.
    pub async fn publish(&self, path: &Path) -> Result<String, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: CatalogueFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let currency: Currency = file
            .currency
            .as_deref()
            .unwrap_or("JPY")
            .parse()
            .map_err(|e| format!("{}: currency: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let now = now_ms();
        let mut items = Vec::with_capacity(file.items.len());
        for entry in file.items {
            let at = |p: &Path| {
                if p.is_relative() {
                    base.join(p)
                } else {
                    p.to_path_buf()
                }
            };
            let bad = |what: String| format!("{}: item {}: {what}", path.display(), entry.id);
            let source = at(&entry.file);
            let (blob, size) = self
                .import(&source)
                .await
                .map_err(|e| bad(format!("{}: {e}", source.display())))?;
            let cover = match &entry.cover {
                Some(c) => {
                    let c = at(c);
                    let len = std::fs::metadata(&c)
                        .map_err(|e| bad(format!("{}: {e}", c.display())))?
                        .len();
                    if len > MAX_COVER_BYTES {
                        return Err(bad(format!(
                            "the cover is {len} bytes, over {MAX_COVER_BYTES}"
                        )));
                    }
                    let bytes = std::fs::read(&c).map_err(|e| bad(e.to_string()))?;
                    image::load_from_memory(&bytes)
                        .map_err(|e| bad(format!("the cover {}: {e}", c.display())))?;
                    Some(
                        self.node
                            .blobs
                            .import_bytes(&bytes)
                            .await
                            .map_err(|e| bad(e.to_string()))?,
                    )
                }
                None => None,
            };
            items.push(Item {
                id: entry.id.parse().map_err(bad)?,
                kind: entry.kind.parse::<ItemKind>().map_err(bad)?,
                title: Names {
                    ja: entry.title_ja,
                    en: entry.title_en,
                    kana: entry.title_kana,
                },
                artist: Names {
                    ja: entry.artist_ja,
                    en: entry.artist_en,
                    kana: entry.artist_kana,
                },
                blob,
                size,
                price: Money::new(entry.price_minor, currency),
                rights_holder: entry.rights_holder,
                cover,
                valid_from_ms: entry.valid_from.map_or(now - 60_000, day_ms),
                valid_until_ms: entry
                    .valid_until
                    .map_or(now + 10 * 365 * 86_400_000, day_ms),
                folder: entry.folder,
                file_name: entry.file_name,
            });
        }
        let _guard = self.lock.lock().await;
        let old = self.current()?;
        let catalogue = Catalogue {
            network: self.node.config.network.clone(),
            company: self.node.config.name.clone(),
            version: old.as_ref().map_or(1, |o| o.version + 1),
            published_ms: now,
            items,
        };
        if let Some(old) = &old {
            // Validity left to default moves with the clock: compare without it.
            let same = old.items.len() == catalogue.items.len()
                && old.items.iter().zip(&catalogue.items).all(|(a, b)| {
                    let mut b = b.clone();
                    b.valid_from_ms = a.valid_from_ms;
                    b.valid_until_ms = a.valid_until_ms;
                    *a == b
                });
            if same {
                return Ok(format!(
                    "catalogue version {} unchanged ({} items)",
                    old.version,
                    old.items.len()
                ));
            }
        }
        catalogue
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let certificate = self.node.gate.as_ref().map(|g| g.own.clone());
        let signed = sign_catalogue(&self.node.keypair, &catalogue, certificate)
            .map_err(|e| e.to_string())?;
        self.catalogue
            .insert(b"current", &signed)
            .map_err(|e| e.to_string())?;
        self.node.db.flush().await.map_err(|e| e.to_string())?;
        // Announced at once (peers that miss it ask for it).
        match printmesh_protocol::codec::encode_frame(
            &signed,
            printmesh_protocol::content::CATALOGUE_MAX_BYTES + 4096,
        ) {
            Ok(frame) => {
                if let Err(e) = self.node.client.publish_catalogue(frame).await {
                    tracing::debug!("catalogue not gossiped now ({e}); peers ask for it");
                }
            }
            Err(e) => tracing::error!("the catalogue cannot be gossiped: {e}"),
        }
        let said = format!(
            "catalogue version {} published: {}",
            catalogue.version,
            changes(old.as_ref(), &catalogue)
        );
        tracing::info!("{said}");
        Ok(said)
    }

    async fn on_content(&self, inbound: Inbound<ContentProto>) {
        let (_, request, responder) = inbound.into_parts();
        let ContentRequest::Catalogues { known } = request;
        let signed = match self.catalogue.get(b"current") {
            Ok(signed) => signed,
            Err(e) => {
                tracing::error!("cannot read the catalogue: {e}");
                responder.respond(ContentResponse::Refused {
                    reason: "the catalogue cannot be read now".into(),
                });
                return;
            }
        };
        let me = self.node.peer_id().to_bytes();
        let out = match (signed, self.current()) {
            (Some(signed), Ok(Some(c))) => {
                let held = known.iter().find(|(who, _)| *who == me).map(|(_, v)| *v);
                if held.is_some_and(|v| v >= c.version) {
                    vec![]
                } else {
                    vec![signed]
                }
            }
            _ => vec![],
        };
        responder.respond(ContentResponse::Catalogues(out));
    }

    /// An intermediary pays the company its prices, less its commission.
    async fn on_settle(&self, inbound: Inbound<SettleProto>) {
        let payee = crate::roles::Payee {
            the: "the content company",
            a: "a content company",
            paid: "download sales",
        };
        crate::roles::answer_payment(
            &self.node.client,
            inbound,
            payee,
            |peer, batch, lines, total| async move {
                let _guard = self.lock.lock().await;
                self.record_payment(peer.to_bytes(), batch, &lines, total)
                    .await
            },
        )
        .await
    }

    /// Records what a payment pays, each order once (a payment sent again is counted as
    /// before and changes nothing); returns the total it pays.
    async fn record_payment(
        &self,
        payer: Vec<u8>,
        batch: BatchId,
        lines: &[SettleLine],
        total: Money,
    ) -> Result<Money, StoreError> {
        let mut received = Money::new(0, total.currency());
        let mut writes = sled::Batch::default();
        let mut seen = std::collections::BTreeSet::new();
        for line in lines.iter().take(proto::MAX_SETTLE_LINES) {
            let order_id = line.order_id;
            if !seen.insert(order_id) {
                continue;
            }
            if line.amount.amount_minor() <= 0 || line.amount.currency() != total.currency() {
                tracing::warn!(%order_id, %batch, amount = %line.amount, "a line that is not a payment: ignored");
                continue;
            }
            let paid = match self.payouts.get(order_id.to_bytes())? {
                Some(p) if p.batch != batch => {
                    tracing::warn!(%order_id, %batch, "already paid in {}", p.batch);
                    continue;
                }
                Some(p) => p.amount,
                None => {
                    let p = Payout {
                        order_id,
                        batch,
                        amount: line.amount,
                        payer: payer.clone(),
                        at_ms: now_ms(),
                    };
                    writes.insert(&order_id.to_bytes(), self.payouts.encode(&p)?);
                    line.amount
                }
            };
            received = received.checked_add(paid).unwrap_or(received);
        }
        self.payouts.raw().apply_batch(writes)?;
        self.node.db.flush().await?;
        Ok(received)
    }

    fn catalogue_text(&self) -> Result<String, String> {
        let Some(c) = self.current()? else {
            return Ok("no catalogue published yet".into());
        };
        serde_json::to_string_pretty(&catalogue_json(&c)).map_err(|e| e.to_string())
    }
}

fn catalogue_json(c: &Catalogue) -> serde_json::Value {
    serde_json::json!({
        "company": c.company,
        "version": c.version,
        "items": c.items.iter().map(|i| serde_json::json!({
            "id": i.id.to_string(),
            "kind": i.kind.to_string(),
            "title": i.title.en,
            "title_ja": i.title.ja,
            "artist": i.artist.en,
            "size": i.size,
            "price_minor": i.price.amount_minor(),
            "blob": i.blob.to_hex(),
            "card_path": i.card_path(),
        })).collect::<Vec<_>>(),
    })
}

printmesh_runtime::requests! {
    /// What a content company answers: requests for its catalogue.
    pub enum ContentRoleRequest {
        Content(ContentProto),
        Settle(SettleProto),
    }
}

impl printmesh_runtime::role::Role for Content {
    const KIND: Role = Role::Content;
    type Config = ContentConfig;
    type Command = ContentCommand;
    type Request = ContentRoleRequest;

    fn open(node: Node, config: ContentConfig) -> Result<Arc<Content>, NodeError> {
        Ok(Arc::new(Content {
            catalogue: node.db.tree("catalogue")?,
            payouts: node.db.tree("payouts")?,
            imported: node.db.tree("imported")?,
            node,
            config,
            lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// Serves its items' bytes; publishes the configured catalogue if it changed.
    fn start(self: &Arc<Self>, _stopping: Stopping) {
        tokio::spawn(printmesh_runtime::fetch::serve_fetch(
            self.node.client.clone(),
            self.node.blobs.clone(),
            Role::Content,
        ));
        if let Some(path) = self.config.catalogue.clone() {
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.publish(&path).await {
                    tracing::error!("the configured catalogue was not published: {e}");
                }
            });
        }
    }

    async fn handle(self: Arc<Self>, event: RoleEvent<Self>) {
        match event {
            RoleEvent::Request(ContentRoleRequest::Content(inbound)) => {
                self.on_content(inbound).await
            }
            RoleEvent::Request(ContentRoleRequest::Settle(inbound)) => {
                self.on_settle(inbound).await
            }
            RoleEvent::Admin(command, reply) => {
                let response = match command {
                    ContentCommand::Publish { path } => {
                        AdminResponse::from_result(self.publish(&path).await)
                    }
                    ContentCommand::Catalogue => AdminResponse::from_result(self.catalogue_text()),
                    ContentCommand::Report { date, csv } => AdminResponse::from_result(
                        report(&self.node.db, date)
                            .map(|r| r.render(csv))
                            .map_err(|e| e.to_string()),
                    ),
                };
                let _ = reply.send(response);
            }
            // Its work comes by request and command.
            RoleEvent::Event(_) | RoleEvent::PeerReady(_) | RoleEvent::PeerGone(_) => {}
        }
    }
}

/// A content company's admin commands (`printmesh content publish|catalogue`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContentCommand {
    /// Publishes a catalogue file (an absolute path on the node's machine).
    Publish { path: PathBuf },
    /// The catalogue published last (JSON).
    Catalogue,
    /// The sales paid in a day's settlement.
    Report { date: NaiveDate, csv: bool },
}

impl RoleCommand for ContentCommand {
    const ROLE: Role = Role::Content;
}

/// What `printmesh inspect` shows of a content company: its catalogue.
pub fn inspect(db: &crate::store::Db) -> Result<serde_json::Value, StoreError> {
    let tree: Tree<SignedCatalogue> = db.tree("catalogue")?;
    let catalogue = tree
        .get(b"current")?
        .and_then(|s| verify_catalogue(&s).ok())
        .map(|v| catalogue_json(&v.catalogue));
    Ok(serde_json::json!({ "role": "content", "catalogue": catalogue }))
}

/// A day's report: the sales each intermediary paid in that day's batches.
pub fn report(db: &crate::store::Db, date: NaiveDate) -> Result<Report, StoreError> {
    let payouts: Tree<Payout> = db.tree("payouts")?;
    let mut rows = Vec::new();
    let mut currency = Currency::Jpy;
    let mut amounts = Vec::new();
    let mut list: Vec<Payout> = payouts
        .entries()
        .filter_map(Result::ok)
        .map(|(_, p)| p)
        .filter(|p| p.batch.date == date)
        .collect();
    list.sort_by_key(|p| (p.batch, p.order_id));
    for p in list {
        currency = p.amount.currency();
        amounts.push(p.amount);
        rows.push(vec![
            p.batch.to_string(),
            p.order_id.to_string(),
            money_text(p.amount),
        ]);
    }
    Ok(Report {
        party: "content company".into(),
        date,
        tables: vec![Table {
            title: "Download sales paid by the intermediary (prices less its commission)".into(),
            columns: vec!["batch", "order", "paid"],
            rows,
        }],
        totals: vec![("download sales received".into(), sum(amounts, currency))],
    })
}
