//! Downloads at the kiosk: the catalogues it sells from, the bytes it keeps, a
//! purchase from payment to "you can remove your card", and licences re-written.
//!
//! A purchase, in order, each step on disk before the next (tree `downloads`):
//! 1. before any payment: the card is there and has room ([`cardwrite::card_info`]),
//!    and every item's bytes are here (fetched from a content company and checked
//!    against the catalogue's BLAKE3 if not);
//! 2. `Buying`: the card sealed to the acquirer; `Buy` to an intermediary (each retry
//!    through the next) until an answer;
//! 3. `Authorised`: each item written to the card under a temporary name, synced, read
//!    back, hashed and renamed, with its licence beside it;
//! 4. `Written`: the intermediary told; it captures (`Done` once it says so). A write
//!    that failed instead → `Releasing`: the intermediary told to release the hold
//!    (`Released`): the customer pays nothing.
//!
//! A kiosk restarted mid-way finishes what its record says: a purchase authorised but
//! not written (the customer has gone) is released; one written is captured.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use printmesh_protocol::card::{CardBrand, CardData};
use printmesh_protocol::content::{
    sign_licence, verify_licence, Item, ItemId, Licence, SignedLicence, VerifiedLicence,
    LICENCE_SUFFIX,
};
use printmesh_protocol::messages::{DeclineCode, PaymentMethod, Role};
use printmesh_protocol::money::Money;
use printmesh_protocol::pinblock::Pin;
use printmesh_protocol::seal::{seal_card, Binding, EntryMode, KeyId};
use printmesh_protocol::wire::download::{
    DownloadLine, DownloadRequest, DownloadResponse, SealedDownload, MAX_ITEMS,
};
use printmesh_protocol::{AuthCode, BlobId, OrderId, StoreId};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::cardwrite::{self, CardInfo, WriteError, WriteJob};
use super::{Kiosk, KioskError};
use crate::net::DownloadProto;
use crate::node::now_ms;
use printmesh_runtime::blobs::{BlobError, BlobStore};
use printmesh_runtime::catalogues::Catalogues;

/// Where a purchase stands at the kiosk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownloadStage {
    /// `Buy` sent; no answer kept yet.
    Buying,
    /// The amount is held: write the items.
    Authorised {
        auth_code: AuthCode,
    },
    /// On the card and verified; the intermediary is to capture.
    Written {
        auth_code: AuthCode,
        written: Vec<WrittenItem>,
    },
    /// Captured: the sale is complete.
    Done {
        auth_code: AuthCode,
        written: Vec<WrittenItem>,
    },
    /// The write failed: the hold is to be released.
    Releasing {
        reason: String,
    },
    /// Released: the customer pays nothing.
    Released {
        reason: String,
    },
    Declined {
        code: DeclineCode,
    },
    Rejected {
        reason: String,
    },
}

/// One item as it went onto the card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenItem {
    pub item: ItemId,
    pub card_path: String,
    /// The licence's text form (on the card beside the item, and in the receipt's QR).
    pub licence: String,
    /// Its short code, for the receipt.
    pub code: String,
    /// The same bytes were on the card already (nothing was written; nothing to take
    /// off again).
    pub already_there: bool,
}

/// A purchase as the kiosk keeps it. No card data beyond the last four digits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KioskDownload {
    pub order_id: OrderId,
    pub store: StoreId,
    pub placed_at_ms: i64,
    pub company: Vec<u8>,
    pub company_name: String,
    pub items: Vec<Item>,
    pub total: Money,
    pub method: PaymentMethod,
    pub card_last4: String,
    pub card_brand: CardBrand,
    /// The acquirer key the card was sealed to (a release names it).
    pub key: KeyId,
    pub card_serial: u32,
    /// The intermediary that authorised (its PeerId bytes): `Written` and `Failed`
    /// go to it first, since it has the order.
    pub via: Option<Vec<u8>>,
    pub stage: DownloadStage,
    pub updated_at_ms: i64,
}

/// What a customer chose to buy, with the card that pays.
#[derive(Debug)]
pub struct DownloadDraft {
    pub company: Vec<u8>,
    pub items: Vec<ItemId>,
    pub method: PaymentMethod,
    pub card: CardData,
    pub entry: EntryMode,
    pub pin: Option<Pin>,
    /// The total the customer was shown: if the catalogue changed since (a new price),
    /// nothing is charged and the customer chooses again.
    pub shown_total: Option<Money>,
}

/// What the customer is told at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadOutcome {
    /// On the card, paid.
    Done(Box<KioskDownload>),
    Declined(OrderId, DeclineCode),
    /// Not sold (the catalogue changed, …): nothing charged.
    Rejected(OrderId, String),
    /// The write failed, or could not start (`None`: refused before any payment, a
    /// card too full); any hold is released (or being released): nothing charged.
    WriteFailed(Option<OrderId>, WriteError),
}

/// Progress of a purchase, for the screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadProgress {
    /// Fetching bytes not yet at the kiosk.
    Fetching { done: u64, total: u64 },
    /// Waiting for the authorisation.
    Paying,
    /// Writing and verifying (both count: 2 × the bytes).
    Writing { done: u64, total: u64 },
    /// Telling the network it is done.
    Finishing,
}

/// What a licence found on a card came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// The item was missing or damaged and is written again (no charge).
    Rewritten { item: ItemId, card_path: String },
    /// The item is there, whole.
    Intact { item: ItemId, card_path: String },
    /// Not honoured, and why.
    Refused { file: String, reason: String },
}

impl Kiosk {
    /// The catalogues this kiosk sells from.
    pub fn catalogues(&self) -> &Catalogues {
        &self.catalogues
    }

    /// The bytes of downloads kept here.
    pub fn download_cache(&self) -> &Arc<BlobStore> {
        &self.download_cache
    }

    /// Asks the intermediaries and content companies connected for newer catalogues.
    pub async fn sync_catalogues(&self) -> usize {
        let mut peers: Vec<libp2p::PeerId> = Vec::new();
        for role in [Role::Content, Role::Intermediary] {
            peers.extend(
                self.node
                    .client
                    .peers_with_role(role)
                    .await
                    .into_iter()
                    .map(|p| p.peer),
            );
        }
        self.catalogues.sync_from(&self.node.client, &peers).await
    }

    /// The inserted card: its identity and free space (blocking IO off the runtime).
    pub async fn card_info(&self) -> Result<CardInfo, WriteError> {
        let (Some(media), Some(device)) = (
            self.config.media_dir.clone(),
            self.config.media_device.clone(),
        ) else {
            return Err(WriteError::Io(
                "this kiosk names no card device (kiosk.media_device): it sells no downloads"
                    .into(),
            ));
        };
        tokio::task::spawn_blocking(move || {
            if !cardwrite::card_present(&media) {
                return Err(WriteError::CardGone);
            }
            cardwrite::card_info(&media, &device)
        })
        .await
        .map_err(|e| WriteError::Io(e.to_string()))?
    }

    /// Removes the kiosk's own leftover temporary files (a card pulled during a write)
    /// from the folders the catalogues write to; nothing else is touched.
    pub async fn clean_card(&self) -> usize {
        let Some(media) = self.config.media_dir.clone() else {
            return 0;
        };
        let mut folders: Vec<String> = self
            .catalogues
            .all()
            .iter()
            .flat_map(|c| c.catalogue.items.iter().map(|i| i.folder.clone()))
            .collect();
        folders.sort();
        folders.dedup();
        let removed = tokio::task::spawn_blocking(move || {
            cardwrite::remove_leftovers(&media, folders.iter().map(String::as_str))
        })
        .await
        .unwrap_or(0);
        if removed > 0 {
            tracing::info!(
                removed,
                "a half-written download left by a pulled card was removed"
            );
        }
        removed
    }

    /// Makes sure an item's bytes are here: fetched from a content company (or an
    /// intermediary that holds them) if not, checked against the catalogue's hash.
    pub async fn ensure_cached(
        &self,
        item: &Item,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<(), KioskError> {
        self.ensure_blob(item.blob, item.size, progress)
            .await
            .map_err(|e| KioskError::Order(format!("{} cannot be had now: {e}", item.title.en)))
    }

    /// [`Kiosk::ensure_cached`] of a blob known by its hash and length (a licence's).
    pub async fn ensure_blob(
        &self,
        blob: BlobId,
        len: u64,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<(), String> {
        if !self.download_cache.has(&blob) {
            // Just started, or a link just dropped: a company may be a moment away.
            self.wait_for_sources(std::time::Duration::from_secs(5))
                .await;
        }
        self.fetch_to_cache(blob, Some(len), len, progress).await
    }

    /// Makes sure an item's cover is here (at most
    /// [`MAX_COVER_BYTES`](printmesh_protocol::content::MAX_COVER_BYTES), its length
    /// not in the catalogue, checked against its hash). Whether it is.
    pub async fn ensure_cover(&self, blob: BlobId) -> bool {
        let max = printmesh_protocol::content::MAX_COVER_BYTES;
        self.fetch_to_cache(blob, None, max, &mut |_, _| {})
            .await
            .is_ok()
    }

    /// A blob into the download cache (kept there as just used), from the content
    /// companies connected, then the intermediaries: `len` bytes when known, at most
    /// `max`. What stopped it: bytes that do not match say most, a peer that serves no
    /// fetches least.
    async fn fetch_to_cache(
        &self,
        blob: BlobId,
        len: Option<u64>,
        max: u64,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<(), String> {
        if self.download_cache.has(&blob) {
            let have = self.download_cache.len_of(&blob).unwrap_or(0);
            progress(have, have);
            self.touch(&blob);
            return Ok(());
        }
        let mut sources = self.node.client.peers_with_role(Role::Content).await;
        sources.extend(self.node.client.peers_with_role(Role::Intermediary).await);
        let (mut mismatch, mut other) = (None, None);
        let mut control = self.node.client.stream_control();
        for peer in sources {
            let fetched = printmesh_runtime::fetch::fetch_blob_within(
                &mut control,
                &self.download_cache,
                peer.peer,
                blob,
                len,
                max,
                progress,
            )
            .await;
            match fetched {
                Ok(bytes) => {
                    tracing::info!(blob = %blob.short(), bytes, from = %peer.hello.name, "download fetched");
                    return Ok(());
                }
                Err(BlobError::NotFound(_)) => {}
                Err(e @ BlobError::HashMismatch(_)) => {
                    tracing::error!(blob = %blob.short(), from = %peer.hello.name, "{e}");
                    mismatch = Some(format!(
                        "the bytes from {} do not match the catalogue",
                        peer.hello.name
                    ));
                }
                Err(e @ BlobError::Open { .. }) => {
                    other.get_or_insert(e.to_string());
                }
                Err(e) => other = Some(e.to_string()),
            }
        }
        Err(mismatch
            .or(other)
            .unwrap_or_else(|| "no content company is reachable".into()))
    }

    /// Marks a cached blob as just used (the cache drops the least recently used).
    fn touch(&self, blob: &BlobId) {
        let path = self.download_cache.path(blob);
        if let Ok(f) = std::fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Keeps the cache within `download_cache_mb`: the least recently used blobs go,
    /// never those in `keep`.
    pub fn trim_cache(&self, keep: &[BlobId]) {
        let limit = self.config.download_cache_mb.saturating_mul(1024 * 1024);
        let mut blobs: Vec<(std::time::SystemTime, u64, BlobId)> = self
            .download_cache
            .list()
            .into_iter()
            .filter_map(|b| {
                let meta = std::fs::metadata(self.download_cache.path(&b)).ok()?;
                Some((meta.modified().ok()?, meta.len(), b))
            })
            .collect();
        let mut total: u64 = blobs.iter().map(|(_, len, _)| len).sum();
        blobs.sort();
        for (_, len, blob) in blobs {
            if total <= limit {
                break;
            }
            if keep.contains(&blob) {
                continue;
            }
            if std::fs::remove_file(self.download_cache.path(&blob)).is_ok() {
                total = total.saturating_sub(len);
                tracing::info!(blob = %blob.short(), "download cache: dropped the least recently used");
            }
        }
    }

    /// Stores a purchase, and whether it still has a step to finish (the index
    /// [`Kiosk::resume_downloads`] reads), in one transaction.
    fn save_download(&self, d: &mut KioskDownload) -> Result<(), KioskError> {
        use sled::Transactional as _;
        d.updated_at_ms = now_ms();
        let key = d.order_id.to_bytes();
        let bytes = self.downloads.encode(d)?;
        let pending = is_pending(&d.stage);
        (self.downloads.raw(), self.downloads_due.raw())
            .transaction(|(records, due)| {
                records.insert(&key, bytes.clone())?;
                if pending {
                    due.insert(&key, &[][..])?;
                } else {
                    due.remove(&key)?;
                }
                Ok(())
            })
            .map_err(crate::store::transaction_error)?;
        Ok(())
    }

    async fn save_download_durably(&self, d: &mut KioskDownload) -> Result<(), KioskError> {
        self.save_download(d)?;
        self.node.db.flush().await?;
        Ok(())
    }

    pub fn download(&self, id: OrderId) -> Result<Option<KioskDownload>, KioskError> {
        Ok(self.downloads.get(id.to_bytes())?)
    }

    /// Sends one download request to an intermediary (each retry through the next)
    /// until a final answer or `deadline`.
    async fn ask_download(
        &self,
        request: DownloadRequest,
        deadline: tokio::time::Instant,
        prefer: Option<&[u8]>,
    ) -> Result<(DownloadResponse, Vec<u8>), KioskError> {
        let order_id = request.order_id();
        let mut tries = 0u32;
        loop {
            let mut peers = self.node.client.peers_with_role(Role::Intermediary).await;
            peers.sort_by_key(|p| {
                // The intermediary that has the order first, then the rest in a spread
                // of their own.
                let preferred = prefer.is_some_and(|b| b == p.peer.to_bytes().as_slice());
                (
                    !preferred,
                    *blake3::hash(&[&order_id.to_bytes()[..], &p.peer.to_bytes()].concat())
                        .as_bytes(),
                )
            });
            let last = if peers.is_empty() {
                "no intermediary is reachable".to_string()
            } else {
                let peer = peers.swap_remove(tries as usize % peers.len());
                match self
                    .node
                    .client
                    .request::<DownloadProto>(peer.peer, request.clone())
                    .await
                {
                    Ok(answer) if answer_order(&answer) != order_id => {
                        format!("{} answered about another order", peer.hello.name)
                    }
                    Ok(DownloadResponse::Unavailable { reason, .. }) => reason,
                    Ok(answer) => return Ok((answer, peer.peer.to_bytes())),
                    Err(e) => e.to_string(),
                }
            };
            tries += 1;
            if tokio::time::Instant::now() >= deadline {
                return Err(KioskError::Order(format!(
                    "no answer for download order {order_id}: {last}"
                )));
            }
            tracing::info!(%order_id, "download request not answered yet: {last}");
            tokio::time::sleep(std::time::Duration::from_millis(
                (200 * u64::from(tries.min(10))).max(200),
            ))
            .await;
        }
    }

    /// A whole purchase, from the checks before payment to "you can remove your card"
    /// (see the module's doc). Nothing is charged unless every item is on the card,
    /// verified.
    pub async fn buy_downloads(
        &self,
        draft: DownloadDraft,
        progress: &(dyn Fn(DownloadProgress) + Send + Sync),
    ) -> Result<DownloadOutcome, KioskError> {
        if draft.items.is_empty() || draft.items.len() > MAX_ITEMS {
            return Err(KioskError::Order(format!(
                "choose 1 to {MAX_ITEMS} downloads"
            )));
        }
        let media = self
            .config
            .media_dir
            .clone()
            .ok_or_else(|| KioskError::Order("this kiosk has no card slot".into()))?;
        let catalogue = self.catalogues.of(&draft.company).ok_or_else(|| {
            KioskError::Order("the content company's catalogue is not here yet".into())
        })?;
        let now = now_ms();
        let mut items = Vec::with_capacity(draft.items.len());
        for id in &draft.items {
            let item = catalogue
                .catalogue
                .item(id)
                .filter(|i| i.on_sale(now))
                .ok_or_else(|| KioskError::Order(format!("{id} is not on sale")))?;
            items.push(item.clone());
        }
        // 1. Before any payment: room on the card, and the bytes here.
        self.clean_card().await;
        let info = self
            .card_info()
            .await
            .map_err(|e| KioskError::Order(e.to_string()))?;
        let sizes: Vec<u64> = items.iter().map(|i| i.size).collect();
        if !info.fits(&sizes) {
            let need = info.room_for(&sizes);
            return Ok(DownloadOutcome::WriteFailed(
                None,
                WriteError::Full { need },
            ));
        }
        let probe = media.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || cardwrite::probe_writable(&probe))
            .await
            .map_err(|e| WriteError::Io(e.to_string()))
            .and_then(|r| r)
        {
            return Ok(DownloadOutcome::WriteFailed(None, e));
        }
        let fetch_total: u64 = items
            .iter()
            .filter(|i| !self.download_cache.has(&i.blob))
            .map(|i| i.size)
            .sum();
        let mut fetched_before = 0u64;
        for item in &items {
            if self.download_cache.has(&item.blob) {
                self.touch(&item.blob);
                continue;
            }
            let base = fetched_before;
            self.ensure_cached(item, &mut |have, _| {
                progress(DownloadProgress::Fetching {
                    done: base + have,
                    total: fetch_total,
                })
            })
            .await?;
            fetched_before += item.size;
        }
        // Within the cache's bound, never dropping what this purchase needs.
        let basket: Vec<BlobId> = items.iter().map(|i| i.blob).collect();
        self.trim_cache(&basket);
        let mut total: Option<Money> = None;
        for item in &items {
            total = Some(match total {
                None => item.price,
                Some(t) => t
                    .checked_add(item.price)
                    .map_err(|e| KioskError::Order(e.to_string()))?,
            });
        }
        let total = total.ok_or_else(|| KioskError::Order("no items".into()))?;
        if draft.shown_total.is_some_and(|shown| shown != total) {
            return Ok(DownloadOutcome::Rejected(
                OrderId::from_bytes([0; 16]),
                "the catalogue has changed since you chose: please choose again".into(),
            ));
        }

        // 2. Pay.
        progress(DownloadProgress::Paying);
        let order_id = OrderId::from_parts(now_ms().max(0) as u64, rand::thread_rng().gen());
        let key = self.acquirer_key()?;
        let binding = Binding {
            order_id,
            amount: total,
            store: self.config.store.clone(),
            method: draft.method,
        };
        let card = seal_card(
            &key,
            &binding,
            &draft.card,
            draft.entry,
            draft.pin.as_ref(),
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| KioskError::Order(e.to_string()))?;
        let DownloadDraft {
            card: data, pin, ..
        } = draft;
        drop(pin);
        drop(data);
        let mut record = KioskDownload {
            order_id,
            store: self.config.store.clone(),
            placed_at_ms: now_ms(),
            company: catalogue.signer.clone(),
            company_name: catalogue.catalogue.company.clone(),
            items: items.clone(),
            total,
            method: binding.method,
            card_last4: card.summary.last4.clone(),
            card_brand: card.summary.brand,
            key: card.key_id,
            card_serial: info.serial,
            via: None,
            stage: DownloadStage::Buying,
            updated_at_ms: now_ms(),
        };
        let _active = Active::new(self, order_id);
        self.save_download_durably(&mut record).await?;
        let buy = DownloadRequest::Buy(SealedDownload {
            order_id,
            store: self.config.store.clone(),
            placed_at_ms: record.placed_at_ms,
            company: catalogue.signer.clone(),
            lines: items
                .iter()
                .map(|i| DownloadLine {
                    item: i.id.clone(),
                    blob: i.blob,
                    size: i.size,
                    price: i.price,
                })
                .collect(),
            total,
            method: record.method,
            card,
        });
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_secs(self.config.answer_timeout_secs);
        let answer = match self.ask_download(buy, deadline, None).await {
            Ok((answer, via)) => {
                record.via = Some(via);
                answer
            }
            Err(e) => {
                // No answer: the customer leaves with nothing; whatever was held is
                // released (the release is sent until an intermediary confirms it).
                record.stage = DownloadStage::Releasing {
                    reason: "no authorisation in time".into(),
                };
                self.save_download_durably(&mut record).await?;
                self.release(&mut record).await;
                return Err(e);
            }
        };
        let auth_code = match answer {
            DownloadResponse::Authorised { auth_code, .. } => auth_code,
            DownloadResponse::Declined { code, .. } => {
                record.stage = DownloadStage::Declined { code };
                self.save_download_durably(&mut record).await?;
                return Ok(DownloadOutcome::Declined(order_id, code));
            }
            DownloadResponse::Rejected { reason, .. } => {
                // An earlier try may have been authorised elsewhere with its answer
                // lost: a release is sent anyway (it changes nothing if none was).
                record.stage = DownloadStage::Releasing {
                    reason: reason.clone(),
                };
                self.save_download_durably(&mut record).await?;
                self.release(&mut record).await;
                return Ok(DownloadOutcome::Rejected(order_id, reason));
            }
            other => {
                let reason = format!("unexpected answer {other:?}");
                record.stage = DownloadStage::Releasing {
                    reason: reason.clone(),
                };
                self.save_download_durably(&mut record).await?;
                self.release(&mut record).await;
                return Ok(DownloadOutcome::Rejected(order_id, reason));
            }
        };
        record.stage = DownloadStage::Authorised {
            auth_code: auth_code.clone(),
        };
        self.save_download_durably(&mut record).await?;

        // 3. Write (the licences only once the payment is captured).
        let (written, failed) = self
            .write_all(&record, &media, &mut |done, total| {
                progress(DownloadProgress::Writing { done, total })
            })
            .await;
        if let Some(e) = failed {
            tracing::warn!(%order_id, "download write failed: {e}; the hold is released");
            // What was written of this unpaid purchase comes off the card again.
            self.take_off(&media, &written).await;
            record.stage = DownloadStage::Releasing {
                reason: e.to_string(),
            };
            self.save_download_durably(&mut record).await?;
            self.release(&mut record).await;
            return Ok(DownloadOutcome::WriteFailed(Some(order_id), e));
        }
        record.stage = DownloadStage::Written {
            auth_code: auth_code.clone(),
            written: written.clone(),
        };
        self.save_download_durably(&mut record).await?;

        // 4. Capture, then each licence beside its item.
        progress(DownloadProgress::Finishing);
        self.finish(&mut record).await;
        match &record.stage {
            DownloadStage::Done { written, .. } => {
                for w in written {
                    let (media, path, text) =
                        (media.clone(), w.card_path.clone(), w.licence.clone());
                    let put = tokio::task::spawn_blocking(move || {
                        cardwrite::write_licence(&media, &path, &text)
                    })
                    .await;
                    if !matches!(put, Ok(Ok(_))) {
                        // Paid and on the card; the receipt carries the licence.
                        tracing::warn!(%order_id, item = %w.item, "the licence file was not written: {put:?}");
                    }
                }
            }
            DownloadStage::Rejected { reason } => {
                let reason = reason.clone();
                self.take_off(&media, &written).await;
                return Ok(DownloadOutcome::Rejected(order_id, reason));
            }
            _ => {}
        }
        Ok(DownloadOutcome::Done(Box::new(record)))
    }

    /// Takes the items this purchase wrote off the card (best effort).
    async fn take_off(&self, media: &Path, written: &[WrittenItem]) {
        for w in written.iter().filter(|w| !w.already_there) {
            let (media, path) = (media.to_path_buf(), w.card_path.clone());
            let _ =
                tokio::task::spawn_blocking(move || cardwrite::remove_written(&media, &path)).await;
        }
    }

    /// Writes every item of a purchase onto the card (blocking IO off the runtime).
    /// Returns what was written, and what stopped it if something did.
    async fn write_all(
        &self,
        record: &KioskDownload,
        media: &Path,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> (Vec<WrittenItem>, Option<WriteError>) {
        let mut out = Vec::with_capacity(record.items.len());
        let failed = self
            .write_each(record, media, progress, &mut out)
            .await
            .err();
        (out, failed)
    }

    async fn write_each(
        &self,
        record: &KioskDownload,
        media: &Path,
        progress: &mut (dyn FnMut(u64, u64) + Send),
        out: &mut Vec<WrittenItem>,
    ) -> Result<(), WriteError> {
        let total: u64 = record.items.iter().map(|i| i.size.saturating_mul(2)).sum();
        let mut base = 0u64;
        for item in &record.items {
            // The card the licences name, still: one swapped in meanwhile is refused.
            if let Some(device) = self.config.media_device.clone() {
                let serial = tokio::task::spawn_blocking(move || cardwrite::serial_now(&device))
                    .await
                    .map_err(|e| WriteError::Io(e.to_string()))??;
                if serial != record.card_serial {
                    return Err(WriteError::CardGone);
                }
            }
            let licence = self
                .licence_for(record, item)
                .map_err(|e| WriteError::Io(e.to_string()))?;
            let text = licence
                .to_text()
                .map_err(|e| WriteError::Io(e.to_string()))?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            let media = media.to_path_buf();
            let source = self.download_cache.path(&item.blob);
            let job_item = item.clone();
            let task = tokio::task::spawn_blocking(move || {
                cardwrite::write_item(
                    &WriteJob {
                        media_dir: &media,
                        folder: &job_item.folder,
                        file_name: &job_item.file_name,
                        source: &source,
                        blob: job_item.blob,
                        size: job_item.size,
                        licence: None,
                    },
                    &mut |done, _| {
                        let _ = tx.send(done);
                    },
                )
            });
            tokio::pin!(task);
            let result = loop {
                tokio::select! {
                    done = rx.recv() => if let Some(done) = done {
                        progress(base + done, total);
                    },
                    r = &mut task => break r,
                }
            };
            let written = result.map_err(|e| WriteError::Io(e.to_string()))??;
            base += item.size.saturating_mul(2);
            out.push(WrittenItem {
                item: item.id.clone(),
                card_path: written.card_path,
                code: licence.code(),
                licence: text,
                already_there: written.already_there,
            });
        }
        Ok(())
    }

    /// The licence of one item of a purchase, signed by this kiosk.
    fn licence_for(
        &self,
        record: &KioskDownload,
        item: &Item,
    ) -> Result<SignedLicence, KioskError> {
        let licence = Licence {
            network: self.node.config.network.clone(),
            company: record.company.clone(),
            item: item.id.clone(),
            blob: item.blob,
            size: item.size,
            order: record.order_id,
            store: record.store.clone(),
            price: item.price,
            issued_ms: record.placed_at_ms,
            card_serial: record.card_serial,
            folder: item.folder.clone(),
            file_name: item.file_name.clone(),
        };
        let certificate = self.node.gate.as_ref().map(|g| g.own.clone());
        sign_licence(&self.node.keypair, &licence, certificate)
            .map_err(|e| KioskError::Order(e.to_string()))
    }

    /// Tells the intermediary the items are written: `Done` once it has the capture.
    /// Without an answer the record stays `Written` and the next start sends it again.
    async fn finish(&self, record: &mut KioskDownload) {
        let order_id = record.order_id;
        let request = DownloadRequest::Written {
            order_id,
            store: record.store.clone(),
            card_serial: record.card_serial,
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        match self
            .ask_download(request, deadline, record.via.as_deref())
            .await
        {
            Ok((DownloadResponse::Captured { .. }, _)) => {
                if let DownloadStage::Written { auth_code, written } = &record.stage {
                    record.stage = DownloadStage::Done {
                        auth_code: auth_code.clone(),
                        written: written.clone(),
                    };
                }
                if let Err(e) = self.save_download_durably(record).await {
                    tracing::error!(%order_id, "cannot record the capture: {e}");
                }
                tracing::info!(%order_id, total = %record.total, "download sold");
            }
            Ok((other, _)) => {
                // Final and not captured (the hold lapsed or was released): the
                // purchase ends unpaid; what it wrote comes off the card (the caller).
                tracing::error!(%order_id, "the intermediary did not capture a written download: {other:?}");
                record.stage = DownloadStage::Rejected {
                    reason: format!("the payment could not be completed: {other:?}"),
                };
                if let Err(e) = self.save_download_durably(record).await {
                    tracing::error!(%order_id, "cannot record it: {e}");
                }
            }
            Err(e) => tracing::warn!(%order_id, "capture not confirmed yet: {e}"),
        }
    }

    /// Asks for the hold to be released: `Released` once an intermediary confirms.
    async fn release(&self, record: &mut KioskDownload) {
        let order_id = record.order_id;
        let DownloadStage::Releasing { reason } = record.stage.clone() else {
            return;
        };
        let request = DownloadRequest::Failed {
            order_id,
            store: record.store.clone(),
            key: record.key,
            reason: reason.clone(),
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        match self
            .ask_download(request, deadline, record.via.as_deref())
            .await
        {
            Ok((DownloadResponse::Released { .. }, _)) => {
                record.stage = DownloadStage::Released { reason };
                if let Err(e) = self.save_download_durably(record).await {
                    tracing::error!(%order_id, "cannot record the release: {e}");
                }
                tracing::info!(%order_id, "download hold released: nothing charged");
            }
            Ok((DownloadResponse::Declined { code, .. }, _)) => {
                record.stage = DownloadStage::Declined { code };
                let _ = self.save_download_durably(record).await;
            }
            Ok((other, _)) => {
                tracing::error!(%order_id, "the release was answered {other:?}")
            }
            Err(e) => tracing::warn!(%order_id, "release not confirmed yet: {e}"),
        }
    }

    /// Finishes what a restart interrupted: written purchases are captured, the
    /// others released (the customer has gone). Returns how many were looked at.
    pub async fn resume_downloads(&self) -> usize {
        let pending: Vec<KioskDownload> = self
            .downloads_due
            .entries()
            .filter_map(Result::ok)
            .filter_map(|(k, ())| self.downloads.get(k).ok().flatten())
            .filter(|d| is_pending(&d.stage))
            // A purchase this process is carrying out is its session's own.
            .filter(|d| {
                !self
                    .active_downloads
                    .lock()
                    .map(|a| a.contains(&d.order_id))
                    .unwrap_or(true)
            })
            .collect();
        let n = pending.len();
        for mut d in pending {
            match &d.stage {
                DownloadStage::Written { .. } => self.finish(&mut d).await,
                DownloadStage::Releasing { .. } => self.release(&mut d).await,
                _ => {
                    d.stage = DownloadStage::Releasing {
                        reason: "the kiosk stopped before the download was written".into(),
                    };
                    if self.save_download_durably(&mut d).await.is_ok() {
                        self.release(&mut d).await;
                    }
                }
            }
        }
        n
    }

    /// Checks a licence as any kiosk of the network would: its signature, this network,
    /// a kiosk of the network signed it (enrolled networks), it names this card.
    pub fn check_licence(
        &self,
        signed: &SignedLicence,
        card_serial: u32,
    ) -> Result<VerifiedLicence, String> {
        let v = verify_licence(signed).map_err(|e| format!("the licence: {e}"))?;
        if v.licence.network != self.node.config.network {
            return Err("a licence of another network".into());
        }
        if let Some(gate) = &self.node.gate {
            gate.admit_signer(&v.signer, v.certificate.as_deref(), Role::Kiosk)
                .map_err(|e| {
                    format!("the licence was not signed by a kiosk of this network: {e}")
                })?;
        }
        // Revoked: the purchase was refunded (the acquirer's `Refunded`, gossiped and
        // synced like every event, kept by every kiosk).
        let refunded = self
            .node
            .events
            .events_for(v.licence.order)
            .map_err(|e| e.to_string())?
            .iter()
            .any(|e| e.kind == printmesh_protocol::messages::EventKind::Refunded);
        if refunded {
            return Err(format!(
                "the licence was revoked: order {} was refunded",
                v.licence.order
            ));
        }
        if v.licence.card_serial != card_serial {
            return Err(format!(
                "the licence is for card {:04X}-{:04X}, not this one",
                v.licence.card_serial >> 16,
                v.licence.card_serial & 0xFFFF
            ));
        }
        Ok(v)
    }

    /// Writes again, without charging, every item whose licence is on the inserted
    /// card and whose file is missing or damaged (offline too, if the bytes are here).
    pub async fn rewrite_licensed(&self) -> Result<Vec<Rewrite>, KioskError> {
        let media = self
            .config
            .media_dir
            .clone()
            .ok_or_else(|| KioskError::Order("this kiosk has no card slot".into()))?;
        let info = self
            .card_info()
            .await
            .map_err(|e| KioskError::Order(e.to_string()))?;
        self.clean_card().await;
        let found = tokio::task::spawn_blocking({
            let media = media.clone();
            move || find_licences(&media)
        })
        .await
        .map_err(|e| KioskError::Order(e.to_string()))?;
        let mut out = Vec::new();
        for (file, text) in found {
            out.push(self.rewrite_one(&media, &info, &file, &text).await);
        }
        Ok(out)
    }

    /// Honours one licence (from the card, or read from a receipt's QR code).
    pub async fn rewrite_one(
        &self,
        media: &Path,
        info: &CardInfo,
        file: &str,
        text: &str,
    ) -> Rewrite {
        let refused = |reason: String| Rewrite::Refused {
            file: file.to_string(),
            reason,
        };
        let v = match SignedLicence::from_text(text)
            .map_err(|e| e.to_string())
            .and_then(|s| self.check_licence(&s, info.serial))
        {
            Ok(v) => v,
            Err(e) => return refused(e),
        };
        let l = &v.licence;
        if let Err(e) = self.ensure_blob(l.blob, l.size, &mut |_, _| {}).await {
            return refused(format!("{} cannot be had now: {e}", l.item));
        }
        let media = media.to_path_buf();
        let source = self.download_cache.path(&l.blob);
        let text = text.to_string();
        let (folder, file_name, blob, size) =
            (l.folder.clone(), l.file_name.clone(), l.blob, l.size);
        let written = tokio::task::spawn_blocking(move || {
            cardwrite::write_item(
                &WriteJob {
                    media_dir: &media,
                    folder: &folder,
                    file_name: &file_name,
                    source: &source,
                    blob,
                    size,
                    licence: Some(&text),
                },
                &mut |_, _| {},
            )
        })
        .await;
        match written {
            Ok(Ok(w)) if w.already_there => Rewrite::Intact {
                item: l.item.clone(),
                card_path: w.card_path,
            },
            Ok(Ok(w)) => {
                tracing::info!(item = %l.item, order = %l.order, code = %v.code, "licensed download written again, no charge");
                Rewrite::Rewritten {
                    item: l.item.clone(),
                    card_path: w.card_path,
                }
            }
            Ok(Err(e)) => refused(e.to_string()),
            Err(e) => refused(e.to_string()),
        }
    }
}

/// A purchase this process is carrying out (not [`Kiosk::resume_downloads`]'s),
/// until dropped.
struct Active<'a> {
    kiosk: &'a Kiosk,
    order_id: OrderId,
}

impl<'a> Active<'a> {
    fn new(kiosk: &'a Kiosk, order_id: OrderId) -> Active<'a> {
        if let Ok(mut a) = kiosk.active_downloads.lock() {
            a.insert(order_id);
        }
        Active { kiosk, order_id }
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if let Ok(mut a) = self.kiosk.active_downloads.lock() {
            a.remove(&self.order_id);
        }
    }
}

/// Whether a purchase in this stage has a step left to take.
fn is_pending(stage: &DownloadStage) -> bool {
    matches!(
        stage,
        DownloadStage::Buying
            | DownloadStage::Authorised { .. }
            | DownloadStage::Written { .. }
            | DownloadStage::Releasing { .. }
    )
}

impl Kiosk {
    /// Waits (asking for catalogues each second) until one company's catalogue holds
    /// every item named; returns that company (its PeerId bytes).
    pub async fn wait_for_items(
        &self,
        items: &[ItemId],
        timeout: std::time::Duration,
    ) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = self
                .catalogues
                .all()
                .into_iter()
                .find(|c| items.iter().all(|id| c.catalogue.item(id).is_some()));
            if let Some(c) = found {
                return Some(c.signer);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            self.sync_catalogues().await;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Gives a kiosk just started time to hear what the network knows (refunds that
    /// revoke licences among it): until the first catch-up with its peers is over,
    /// that is, no event has arrived for a second (at most `timeout`).
    pub async fn settle_events(&self, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = self.node.events.durable_arrival().unwrap_or(0);
        let mut quiet_since = tokio::time::Instant::now();
        // The first round with each peer starts within half a second of its hello.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        while tokio::time::Instant::now() < deadline {
            let now = self.node.events.durable_arrival().unwrap_or(0);
            if now != last {
                last = now;
                quiet_since = tokio::time::Instant::now();
            } else if quiet_since.elapsed() >= std::time::Duration::from_secs(1) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Waits until a content company (or an intermediary) is connected, at most
    /// `timeout`.
    pub async fn wait_for_sources(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if !self
                .node
                .client
                .peers_with_role(Role::Content)
                .await
                .is_empty()
            {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    }
}

/// A purchase's outcome as JSON (`printmesh kiosk download`).
pub fn outcome_json(outcome: &DownloadOutcome) -> serde_json::Value {
    match outcome {
        DownloadOutcome::Done(d) => {
            let (auth_code, written) = match &d.stage {
                DownloadStage::Done { auth_code, written }
                | DownloadStage::Written { auth_code, written } => {
                    (auth_code.to_string(), written.clone())
                }
                _ => (String::new(), vec![]),
            };
            serde_json::json!({
                "order_id": d.order_id.to_string(),
                "outcome": if matches!(d.stage, DownloadStage::Done { .. }) { "done" } else { "written" },
                "total_minor": d.total.amount_minor(),
                "auth_code": auth_code,
                "card": format!("{:04X}-{:04X}", d.card_serial >> 16, d.card_serial & 0xFFFF),
                "items": written.iter().map(|w| serde_json::json!({
                    "item": w.item.to_string(),
                    "card_path": w.card_path,
                    "code": w.code,
                    "licence": w.licence,
                })).collect::<Vec<_>>(),
            })
        }
        DownloadOutcome::Declined(order_id, code) => serde_json::json!({
            "order_id": order_id.to_string(),
            "outcome": "declined",
            "code": code.iso8583(),
        }),
        DownloadOutcome::Rejected(order_id, reason) => serde_json::json!({
            "order_id": order_id.to_string(),
            "outcome": "rejected",
            "reason": reason,
        }),
        DownloadOutcome::WriteFailed(order_id, e) => serde_json::json!({
            "order_id": order_id.map(|o| o.to_string()),
            "outcome": "write_failed",
            "reason": e.to_string(),
        }),
    }
}

/// What re-writing from licences came to, as JSON (`printmesh kiosk rewrite`).
pub fn rewrites_json(list: &[Rewrite]) -> serde_json::Value {
    serde_json::Value::Array(
        list.iter()
            .map(|r| match r {
                Rewrite::Rewritten { item, card_path } => serde_json::json!({
                    "item": item.to_string(), "card_path": card_path, "outcome": "rewritten"
                }),
                Rewrite::Intact { item, card_path } => serde_json::json!({
                    "item": item.to_string(), "card_path": card_path, "outcome": "intact"
                }),
                Rewrite::Refused { file, reason } => serde_json::json!({
                    "file": file, "outcome": "refused", "reason": reason
                }),
            })
            .collect(),
    )
}

fn answer_order(answer: &DownloadResponse) -> OrderId {
    match answer {
        DownloadResponse::Authorised { order_id, .. }
        | DownloadResponse::Declined { order_id, .. }
        | DownloadResponse::Rejected { order_id, .. }
        | DownloadResponse::Unavailable { order_id, .. }
        | DownloadResponse::Captured { order_id }
        | DownloadResponse::Released { order_id } => *order_id,
    }
}

/// The licence files on a card (`*.pmlicence`, up to four folders deep), with their
/// text: (path on the card, text). Unreadable ones are skipped.
pub fn find_licences(media: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs: Vec<(PathBuf, usize)> = vec![(media.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() && depth < 4 {
                if e.file_name() != "DCIM" {
                    dirs.push((path, depth + 1));
                }
            } else if kind.is_file()
                && e.file_name()
                    .to_string_lossy()
                    .to_ascii_lowercase()
                    .ends_with(LICENCE_SUFFIX)
                && e.metadata().is_ok_and(|m| m.len() <= 16 * 1024)
            {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let rel = path
                        .strip_prefix(media)
                        .map(|p| p.to_string_lossy().to_string())
                        .unwrap_or_default();
                    out.push((rel, text));
                }
            }
        }
    }
    out.sort();
    out
}
