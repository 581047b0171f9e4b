//! Downloads at the intermediary (`/printmesh/download/1`, `/printmesh/content/1`).
//!
//! The intermediary keeps the content companies' catalogues (asked of every content
//! company it is connected to, every `printmesh_runtime::catalogues::SYNC_EVERY`; each checked) and
//! passes them on to kiosks. A purchase is an order like a print order, with the
//! content company where a print order has its lab: checked line by line against the
//! company's catalogue held here, authorised at the acquirer of the card's key (never
//! kept for forwarding: nothing is written before an approval), captured when the
//! kiosk says the items are on the card and verified, released when it says they could
//! not be written, billed to the acquirer like prints, and paid to the company at
//! settlement less the commission (`pay_lab`, whose payee is the order's `lab`).

use printmesh_protocol::wire::content::{ContentRequest, ContentResponse};
use printmesh_protocol::wire::download::{
    DownloadLine, DownloadRequest, DownloadResponse, SealedDownload, MAX_ITEMS,
};

use super::*;

/// What the intermediary keeps of a download order beside its [`RoutedOrder`] (whose
/// `lab` is the content company, paid its prices less the commission).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRecord {
    pub company: Vec<u8>,
    pub company_name: String,
    pub lines: Vec<DownloadLine>,
    /// The card's volume serial, once written.
    pub card_serial: Option<u32>,
    pub written_at_ms: Option<i64>,
}

impl Intermediary {
    /// Asks every connected content company for catalogues newer than those held.
    pub(super) async fn sync_catalogues(&self) {
        let peers: Vec<PeerId> = self
            .node
            .client
            .peers_with_role(Role::Content)
            .await
            .into_iter()
            .map(|p| p.peer)
            .collect();
        if !peers.is_empty() {
            self.catalogues.sync_from(&self.node.client, &peers).await;
        }
    }

    /// A kiosk asks for the catalogues newer than its own.
    pub(super) async fn on_content(&self, inbound: Inbound<ContentProto>) {
        let (_, request, responder) = inbound.into_parts();
        let ContentRequest::Catalogues { known } = request;
        responder.respond(ContentResponse::Catalogues(
            self.catalogues.newer_than(&known),
        ));
    }

    pub(super) async fn on_download(&self, inbound: Inbound<DownloadProto>) {
        let kiosk_store = inbound.store.clone();
        let (peer, request, responder) = inbound.into_parts();
        let order_id = request.order_id();
        let answer = match request {
            DownloadRequest::Buy(b) => self.buy(b, kiosk_store).await,
            DownloadRequest::Written {
                order_id,
                store,
                card_serial,
            } => {
                self.written(order_id, store, card_serial, kiosk_store)
                    .await
            }
            DownloadRequest::Failed {
                order_id,
                store,
                key,
                reason,
            } => {
                if kiosk_store.as_ref().is_some_and(|s| *s != store) {
                    Ok(rejected(order_id, "another store's order"))
                } else {
                    self.cancel(order_id, store, key, reason)
                        .await
                        .map(|answer| match answer {
                            OrderResponse::Cancelled { .. } => {
                                DownloadResponse::Released { order_id }
                            }
                            OrderResponse::Unavailable { reason, .. } => {
                                DownloadResponse::Unavailable { order_id, reason }
                            }
                            OrderResponse::Rejected { reason, .. } => {
                                DownloadResponse::Rejected { order_id, reason }
                            }
                            other => rejected(order_id, &format!("{other:?}")),
                        })
                }
            }
        };
        match answer {
            Ok(r) => responder.respond(r),
            Err(e) => {
                tracing::error!(%peer, %order_id, "download failed: {e}");
                responder.respond(DownloadResponse::Unavailable {
                    order_id,
                    reason: "the intermediary could not record the order; try again".into(),
                });
            }
        }
    }

    /// Why a purchase cannot be sold as asked, if it cannot: every line must be the
    /// company's catalogue's item as held here (on sale, the same bytes and price),
    /// and the total their sum.
    fn download_refusal(&self, b: &SealedDownload) -> Option<String> {
        let last4 = &b.card.summary.last4;
        if last4.len() != 4 || !last4.bytes().all(|c| c.is_ascii_digit()) {
            return Some(MALFORMED_SUMMARY.into());
        }
        if b.lines.is_empty() || b.lines.len() > MAX_ITEMS {
            return Some(format!("a download order has 1 to {MAX_ITEMS} items"));
        }
        let Some(catalogue) = self.catalogues.of(&b.company) else {
            return Some("the content company's catalogue is not known here".into());
        };
        let now = now_ms();
        let mut total: Option<Money> = None;
        for line in &b.lines {
            let Some(item) = catalogue.catalogue.item(&line.item) else {
                return Some(format!("item {} is no longer sold", line.item));
            };
            if !item.on_sale(now) {
                return Some(format!("item {} is not on sale now", line.item));
            }
            if item.blob != line.blob || item.size != line.size || item.price != line.price {
                return Some(format!(
                    "item {} has changed in the catalogue; please choose it again",
                    line.item
                ));
            }
            total = match total {
                None => Some(item.price),
                Some(t) => match t.checked_add(item.price) {
                    Ok(sum) => Some(sum),
                    Err(e) => return Some(format!("the total cannot be added up: {e}")),
                },
            };
        }
        match total {
            Some(t) if t == b.total => None,
            Some(t) => Some(format!(
                "the total shown ({}) does not match the catalogue ({t})",
                b.total
            )),
            None => Some("no items".into()),
        }
    }

    /// The answer a download order's record gives (a repeated request's).
    fn download_answer(&self, o: &RoutedOrder) -> Option<DownloadResponse> {
        let order_id = o.order_id;
        Some(match (&o.stage, &o.capture) {
            (Stage::Received, _) => return None,
            (_, Capture::Due { .. } | Capture::Captured { .. }) => {
                DownloadResponse::Captured { order_id }
            }
            (Stage::Answered(OrderResponse::Declined { code, .. }), _) => {
                DownloadResponse::Declined {
                    order_id,
                    code: *code,
                }
            }
            (_, Capture::Refused { reason, .. }) if reason.starts_with("cancelled") => {
                DownloadResponse::Released { order_id }
            }
            (Stage::Answered(OrderResponse::Rejected { reason, .. }), _) => {
                DownloadResponse::Rejected {
                    order_id,
                    reason: reason.clone(),
                }
            }
            (Stage::Authorised { auth_code, .. }, Capture::NotShipped) => {
                DownloadResponse::Authorised {
                    order_id,
                    auth_code: auth_code.clone(),
                    amount: o.total,
                }
            }
            (_, Capture::Refused { reason, .. } | Capture::VoidDue { reason, .. }) => {
                DownloadResponse::Rejected {
                    order_id,
                    reason: format!("the payment was released: {reason}"),
                }
            }
            (Stage::Answered(other), _) => DownloadResponse::Rejected {
                order_id,
                reason: format!("{other:?}"),
            },
        })
    }

    /// A purchase: checked, recorded (`Submitted`), authorised, answered. Idempotent:
    /// a repeat gets the first answer, or continues an authorisation that had no
    /// answer.
    async fn buy(
        &self,
        b: SealedDownload,
        kiosk_store: Option<StoreId>,
    ) -> Result<DownloadResponse, StoreError> {
        let order_id = b.order_id;
        if let Some(store) = kiosk_store.filter(|s| *s != b.store) {
            tracing::warn!(%order_id, kiosk_store = %store, "a kiosk bought for another store: refused");
            return Ok(rejected(order_id, "this kiosk belongs to another store"));
        }
        let _guard = self.locks.lock(order_id).await;
        let existing = self.orders.get(order_id.to_bytes())?;
        let mut order = match existing {
            Some(o) if o.store != b.store => {
                return Ok(rejected(order_id, "this order id belongs to another store"))
            }
            Some(_) if !self.downloads.contains(order_id.to_bytes())? => {
                return Ok(rejected(order_id, "this order id is a print order's"))
            }
            Some(o) => match self.download_answer(&o) {
                Some(answer) => {
                    tracing::info!(%order_id, "download asked again: its first answer");
                    return Ok(answer);
                }
                None => o,
            },
            None => {
                // A catalogue newer than the one held (or none held yet) is asked for
                // before a purchase is refused for it.
                let mut refusal = self.download_refusal(&b);
                if refusal.is_some() {
                    self.sync_catalogues().await;
                    refusal = self.download_refusal(&b);
                }
                let company_name = self
                    .catalogues
                    .of(&b.company)
                    .map(|c| c.catalogue.company)
                    .unwrap_or_default();
                let summary = &b.card.summary;
                let mut order = RoutedOrder {
                    order_id,
                    store: b.store.clone(),
                    lines: vec![],
                    total: b.total,
                    method: b.method,
                    card_last4: summary.last4.clone(),
                    card_brand: summary.brand,
                    entry: summary.entry,
                    token: None,
                    stage: Stage::Received,
                    acquirer: None,
                    lab: Some(b.company.clone()),
                    lab_name: Some(company_name.clone()),
                    capture: Capture::NotShipped,
                    settlement: None,
                    received_at_ms: now_ms(),
                    updated_at_ms: now_ms(),
                };
                self.downloads.insert(
                    order_id.to_bytes(),
                    &DownloadRecord {
                        company: b.company.clone(),
                        company_name,
                        lines: b.lines.clone(),
                        card_serial: None,
                        written_at_ms: None,
                    },
                )?;
                if let Some(reason) = refusal {
                    if reason == MALFORMED_SUMMARY {
                        order.card_last4 = "????".into();
                    }
                    tracing::info!(%order_id, "download refused: {reason}");
                    let answer = OrderResponse::Rejected { order_id, reason };
                    self.answer(&mut order, answer.clone()).await?;
                    return Ok(self
                        .download_answer(&order)
                        .unwrap_or_else(|| rejected(order_id, "refused")));
                }
                self.save_lazily(&mut order)?;
                self.emit(
                    order_id,
                    EventKind::Submitted {
                        store: order.store.clone(),
                        total: order.total,
                    },
                )
                .await;
                order
            }
        };
        let submit = SealedOrder {
            order_id,
            store: b.store,
            placed_at_ms: b.placed_at_ms,
            lines: vec![],
            total: b.total,
            method: b.method,
            card: b.card,
        };
        match self.authorise(&mut order, &submit, false).await? {
            Some(OrderResponse::Unavailable { reason, .. }) => {
                Ok(DownloadResponse::Unavailable { order_id, reason })
            }
            Some(_) => Ok(self
                .download_answer(&order)
                .unwrap_or_else(|| rejected(order_id, "not authorised"))),
            None => {
                // The kiosk writes on this answer: on disk before it is given.
                self.save(&mut order).await?;
                tracing::info!(%order_id, amount = %order.total, "download authorised");
                Ok(self
                    .download_answer(&order)
                    .unwrap_or_else(|| rejected(order_id, "not authorised")))
            }
        }
    }

    /// The kiosk wrote and verified the items: the capture is due (on disk), then tried
    /// at once (and by the retry task until the acquirer confirms).
    async fn written(
        &self,
        order_id: OrderId,
        store: StoreId,
        card_serial: u32,
        kiosk_store: Option<StoreId>,
    ) -> Result<DownloadResponse, StoreError> {
        if kiosk_store.as_ref().is_some_and(|s| *s != store) {
            return Ok(rejected(order_id, "another store's order"));
        }
        {
            let _guard = self.locks.lock(order_id).await;
            let Some(mut order) = self.orders.get(order_id.to_bytes())? else {
                // Another intermediary may have it: not final, the kiosk asks on.
                return Ok(DownloadResponse::Unavailable {
                    order_id,
                    reason: "no such download order here".into(),
                });
            };
            let Some(mut record) = self.downloads.get(order_id.to_bytes())? else {
                return Ok(rejected(order_id, "this order id is a print order's"));
            };
            if order.store != store {
                return Ok(rejected(order_id, "this order id belongs to another store"));
            }
            match (&order.stage, &order.capture) {
                (Stage::Authorised { .. }, Capture::NotShipped) => {
                    record.card_serial = Some(card_serial);
                    record.written_at_ms = Some(now_ms());
                    self.downloads.insert(order_id.to_bytes(), &record)?;
                    order.capture = Capture::Due { since_ms: now_ms() };
                    self.save(&mut order).await?;
                    tracing::info!(%order_id, card = format!("{:04X}-{:04X}", card_serial >> 16, card_serial & 0xFFFF), "download written; capture due");
                }
                _ => {
                    return Ok(self
                        .download_answer(&order)
                        .unwrap_or_else(|| rejected(order_id, "not authorised")))
                }
            }
        }
        self.capture(order_id).await;
        // Captured, or due (tried again until confirmed); or, if the acquirer will
        // not capture it, said so.
        let order = self.orders.get(order_id.to_bytes())?;
        Ok(order
            .and_then(|o| self.download_answer(&o))
            .unwrap_or(DownloadResponse::Captured { order_id }))
    }
}

fn rejected(order_id: OrderId, reason: &str) -> DownloadResponse {
    DownloadResponse::Rejected {
        order_id,
        reason: reason.to_string(),
    }
}
