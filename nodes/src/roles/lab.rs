//! The print lab (patent 105/404), first version: accepts print jobs whose images it
//! holds and can decode, books them into a capacity calendar and promises a delivery
//! date. Rendering and printer output arrive with the lab issue.

use std::io::Cursor;
use std::sync::Arc;

use chrono::{FixedOffset, NaiveDate};
use libp2p::PeerId;
use printmesh_protocol::capacity::{CapacityModel, Promise};
use printmesh_protocol::messages::{
    proto, BatchId, EventKind, OrderLine, PrintJob, PrintRequest, PrintResponse, Role, SettleLine,
    SettleRequest, SettleResponse,
};
use printmesh_protocol::money::Money;
use printmesh_protocol::{OrderId, StoreId};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::net::{Inbound, NodeEvent, PrintProto, SettleProto};
use crate::node::{now_ms, AdminRequest, AdminResponse, Node, NodeError, RoleHandler};
use crate::store::{StoreError, Tree};

/// How much of an image file intake reads to check its header (the EXIF segment is
/// at most 64 KiB; the frame header follows it).
pub const IMAGE_HEADER_BYTES: usize = 1024 * 1024;
/// Largest image the lab agrees to decode, per side.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabJob {
    pub order_id: OrderId,
    pub store: StoreId,
    pub lines: Vec<OrderLine>,
    pub promise: Promise,
    pub received_at_ms: i64,
    /// `(width, height)` of each line's image as decoded at intake.
    pub dimensions: Vec<(u32, u32)>,
    /// When the prints were handed to the courier.
    pub shipped_at_ms: Option<i64>,
    /// The print fee the intermediary paid, and in which settlement batch.
    pub paid: Option<(BatchId, Money)>,
    /// The intermediary that sent the job (its peer id): the one that pays for it.
    pub from: Vec<u8>,
}

pub struct Lab {
    node: Node,
    capacity: CapacityModel,
    offset: FixedOffset,
    jobs: Tree<LabJob>,
    /// `YYYY-MM-DD` → prints booked that day.
    calendar: Tree<u32>,
    lock: tokio::sync::Mutex<()>,
}

fn day_key(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Reads a JPEG's header and checks it is a sane, decodable size.
pub fn check_image(bytes: &[u8]) -> Result<(u32, u32), String> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format() != Some(image::ImageFormat::Jpeg) {
        return Err("not a JPEG".into());
    }
    let (w, h) = reader.into_dimensions().map_err(|e| e.to_string())?;
    if w == 0 || h == 0 || w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(format!("{w}×{h} is outside the sizes the lab prints"));
    }
    Ok((w, h))
}

impl Lab {
    pub fn open(node: Node) -> Result<Lab, NodeError> {
        let config = node
            .config
            .lab
            .clone()
            .ok_or_else(|| NodeError::Role("no [lab] section".into()))?;
        let capacity = config.capacity().map_err(NodeError::Role)?;
        let offset = FixedOffset::east_opt(i32::from(config.utc_offset_hours) * 3600)
            .ok_or_else(|| NodeError::Role("bad utc_offset_hours".into()))?;
        Ok(Lab {
            jobs: node.db.tree("jobs")?,
            calendar: node.db.tree("calendar")?,
            node,
            capacity,
            offset,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    fn name(&self) -> String {
        self.node.config.name.clone()
    }

    /// Takes a job from the intermediary `from`, or says why not. Idempotent per
    /// order id.
    pub async fn intake(&self, job: PrintJob, from: PeerId) -> Result<PrintResponse, StoreError> {
        let order_id = job.order_id;
        let reject = |reason: String| {
            tracing::warn!(%order_id, "job rejected: {reason}");
            Ok(PrintResponse::Rejected { order_id, reason })
        };
        if let Some(existing) = self.jobs.get(order_id.to_bytes())? {
            return Ok(self.accepted(order_id, &existing));
        }
        if job.lines.is_empty() || job.lines.len() > proto::MAX_ORDER_LINES {
            return reject(format!("a job needs 1 to {} lines", proto::MAX_ORDER_LINES));
        }
        let missing = self.node.blobs.missing(job.lines.iter().map(|l| l.blob));
        if !missing.is_empty() {
            return Ok(PrintResponse::MissingBlobs {
                order_id,
                blobs: missing,
            });
        }
        // Check the images before taking the lock: this reads files.
        let mut dimensions = Vec::with_capacity(job.lines.len());
        for line in &job.lines {
            let head = match self
                .node
                .blobs
                .read_prefix(&line.blob, IMAGE_HEADER_BYTES)
                .await
            {
                Ok(b) => b,
                Err(e) => return reject(format!("{}: {e}", line.file_name)),
            };
            match check_image(&head) {
                Ok(d) => dimensions.push(d),
                Err(e) => return reject(format!("{} cannot be printed: {e}", line.file_name)),
            }
        }
        let guard = self.lock.lock().await;
        if let Some(existing) = self.jobs.get(order_id.to_bytes())? {
            return Ok(self.accepted(order_id, &existing));
        }
        let prints: u32 = job.lines.iter().map(|l| u32::from(l.quantity)).sum();
        let now_local = chrono::Utc::now().with_timezone(&self.offset).naive_local();
        let calendar = &self.calendar;
        let promise = match self.capacity.promise(now_local, prints, |d| {
            calendar.get(day_key(d)).ok().flatten().unwrap_or(0)
        }) {
            Ok(p) => p,
            Err(e) => return reject(e.to_string()),
        };
        let record = LabJob {
            order_id,
            store: job.store,
            lines: job.lines,
            promise: promise.clone(),
            received_at_ms: now_ms(),
            dimensions,
            shipped_at_ms: None,
            paid: None,
            from: from.to_bytes(),
        };
        let job_bytes = self.jobs.encode(&record)?;
        let mut bookings = Vec::new();
        for (day, n) in &promise.bookings {
            let already = calendar.get(day_key(*day))?.unwrap_or(0);
            bookings.push((day_key(*day), calendar.encode(&(already + n))?));
        }
        (self.jobs.raw(), self.calendar.raw())
            .transaction(|(jobs, cal)| {
                jobs.insert(&order_id.to_bytes(), job_bytes.clone())?;
                for (k, v) in &bookings {
                    cal.insert(k.as_bytes(), v.clone())?;
                }
                Ok(())
            })
            .map_err(crate::store::transaction_error)?;
        self.node.db.flush().await?;
        drop(guard);
        tracing::info!(%order_id, prints, delivery = %promise.delivery_date, "job accepted");
        let kind = EventKind::Accepted {
            delivery_date: promise.delivery_date,
            lab: self.name(),
        };
        self.node.emit(order_id, kind).await;
        Ok(PrintResponse::Accepted {
            order_id,
            delivery_date: promise.delivery_date,
            lab: self.name(),
        })
    }

    fn accepted(&self, order_id: OrderId, job: &LabJob) -> PrintResponse {
        PrintResponse::Accepted {
            order_id,
            delivery_date: job.promise.delivery_date,
            lab: self.name(),
        }
    }

    /// The order's prints are made and handed to the courier: `Printed` and `Shipped`
    /// go out as order events (the intermediary captures the payment on `Shipped`).
    /// Rendering, printers and the courier arrive with the lab issue; this is the
    /// hand-over they end in.
    pub async fn ship(&self, order_id: OrderId) -> Result<String, String> {
        let _guard = self.lock.lock().await;
        let mut job = self
            .jobs
            .get(order_id.to_bytes())
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("this lab has no job {order_id}"))?;
        // Shipping again re-announces it: the events are how the intermediary learns
        // to capture, and one may have been missed.
        let text = match job.shipped_at_ms {
            Some(at) => {
                let at = chrono::DateTime::from_timestamp_millis(at)
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_else(|| at.to_string());
                format!("order {order_id} was shipped already ({at}); announced again")
            }
            None => {
                job.shipped_at_ms = Some(now_ms());
                self.jobs
                    .insert(order_id.to_bytes(), &job)
                    .map_err(|e| e.to_string())?;
                self.node.db.flush().await.map_err(|e| e.to_string())?;
                tracing::info!(%order_id, "printed and handed to the courier");
                format!("order {order_id} printed and shipped")
            }
        };
        drop(_guard);
        self.node.emit(order_id, EventKind::Printed).await;
        self.node.emit(order_id, EventKind::Shipped).await;
        Ok(text)
    }

    /// The intermediary pays print fees.
    async fn on_settle(&self, inbound: Inbound<SettleProto>) {
        let (peer, request, responder) = inbound.into_parts();
        let from_intermediary = self
            .node
            .client
            .peers_with_role(Role::Intermediary)
            .await
            .iter()
            .any(|p| p.peer == peer);
        let response = match request {
            SettleRequest::LabPayment {
                batch,
                lines,
                total,
            } if from_intermediary => {
                let _guard = self.lock.lock().await;
                match self.lab_payment(peer, batch, &lines, total).await {
                    Ok(received) => {
                        tracing::info!(%batch, %total, %received, "print fees received");
                        SettleResponse::Received {
                            batch,
                            total: received,
                        }
                    }
                    Err(e) => {
                        tracing::error!(%batch, "cannot record the payment: {e}");
                        SettleResponse::Refused {
                            batch,
                            reason: "the lab could not record the payment; send it again".into(),
                        }
                    }
                }
            }
            SettleRequest::BillPlease { batch }
            | SettleRequest::Payment { batch, .. }
            | SettleRequest::LabPayment { batch, .. } => SettleResponse::Refused {
                batch,
                reason: "a lab is paid its print fees by an intermediary, nothing else".into(),
            },
        };
        responder.respond(response);
    }

    /// Records print fees paid by `payer`, for its own jobs only, in one write. A
    /// payment sent again is counted as before and changes nothing. The caller holds
    /// the lab's lock.
    async fn lab_payment(
        &self,
        payer: PeerId,
        batch: BatchId,
        lines: &[SettleLine],
        total: Money,
    ) -> Result<Money, StoreError> {
        let payer = payer.to_bytes();
        let mut received = Money::new(0, total.currency());
        let mut writes = sled::Batch::default();
        let mut seen = std::collections::BTreeSet::new();
        for line in lines.iter().take(proto::MAX_SETTLE_LINES) {
            let order_id = line.order_id;
            if !seen.insert(order_id) {
                continue;
            }
            let Some(mut job) = self.jobs.get(order_id.to_bytes())? else {
                tracing::warn!(%order_id, %batch, "paid for a job this lab does not have");
                continue;
            };
            if job.from != payer {
                tracing::warn!(%order_id, %batch, "paid by an intermediary that did not send the job: ignored");
                continue;
            }
            if line.amount.amount_minor() <= 0 || line.amount.currency() != total.currency() {
                tracing::warn!(%order_id, %batch, amount = %line.amount, "a print fee that is not a payment: ignored");
                continue;
            }
            match job.paid {
                Some((b, _)) if b != batch => {
                    tracing::warn!(%order_id, %batch, "already paid in {b}");
                    continue;
                }
                Some(_) => {}
                None => {
                    job.paid = Some((batch, line.amount));
                    writes.insert(&order_id.to_bytes(), self.jobs.encode(&job)?);
                }
            }
            let fee = job.paid.map(|(_, m)| m).unwrap_or(line.amount);
            received = received.checked_add(fee).unwrap_or(received);
        }
        self.jobs.raw().apply_batch(writes)?;
        self.node.db.flush().await?;
        Ok(received)
    }

    async fn on_print(&self, inbound: Inbound<PrintProto>) {
        let (peer, PrintRequest::Job(job), responder) = inbound.into_parts();
        let order_id = job.order_id;
        match self.intake(job, peer).await {
            Ok(r) => responder.respond(r),
            Err(e) => {
                tracing::error!(%peer, %order_id, "cannot take job: {e}");
                // No answer: the intermediary's request fails and it retries later.
            }
        }
    }
}

impl RoleHandler for Lab {
    async fn handle(self: Arc<Self>, event: NodeEvent) {
        match event {
            NodeEvent::Print(inbound) => self.on_print(inbound).await,
            NodeEvent::Settle(inbound) => self.on_settle(inbound).await,
            NodeEvent::Admin(admin) => {
                let (request, reply) = admin.into_parts();
                let response = match request {
                    AdminRequest::Ship { order_id } => {
                        AdminResponse::from_result(self.ship(order_id).await)
                    }
                    AdminRequest::Report { date, csv } => AdminResponse::from_result(
                        crate::report::lab(&self.node.db, date).map(|r| r.render(csv)),
                    ),
                    other => AdminResponse::unsupported("a lab", &other),
                };
                let _ = reply.send(response);
            }
            _ => {}
        }
    }
}

/// What `printmesh inspect` shows of a lab: its jobs with their promised dates and the
/// blobs it holds.
pub fn inspect(
    db: &crate::store::Db,
    blobs: &crate::blobs::BlobStore,
) -> Result<serde_json::Value, StoreError> {
    let jobs: Tree<LabJob> = db.tree("jobs")?;
    let mut out = Vec::new();
    for entry in jobs.entries() {
        let (_, j) = entry?;
        out.push(serde_json::json!({
            "order_id": j.order_id.to_string(), "store": j.store.to_string(),
            "delivery_date": j.promise.delivery_date.to_string(), "ship_date": j.promise.ship_date.to_string(),
            "prints": j.lines.iter().map(|l| u32::from(l.quantity)).sum::<u32>(),
            "shipped": j.shipped_at_ms.is_some(),
            "paid": j.paid.map(|(b, m)| serde_json::json!({ "batch": b.to_string(), "fee_minor": m.amount_minor() })),
            "lines": j.lines.iter().zip(&j.dimensions).map(|(l, d)| serde_json::json!({
                "file_name": l.file_name, "blob": l.blob.to_hex(), "size": l.size.code(), "quantity": l.quantity,
                "width": d.0, "height": d.1,
                "blob_path": blobs.path(&l.blob).display().to_string(),
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(
        serde_json::json!({ "role": "lab", "jobs": out, "blobs": blobs.list().iter().map(|b| b.to_hex()).collect::<Vec<_>>() }),
    )
}
