//! The print lab (patent 105/404): accepts print jobs whose images it holds and can
//! decode, books them into its capacity calendar and promises a delivery date from
//! the courier's timetable for the store; queues them in sled; its printers
//! ([`printing`]) render each job and send it to a minilab's hot folder or to an IPP
//! printer; the operator follows the queue on `printmesh lab console` ([`console`]),
//! marks prints made, has them printed again, and hands them to the courier, which
//! picks them up and reports them delivered. A promise the queue can no longer keep
//! is shown at risk, and once it slips the store is told the new date.

pub mod config;
pub mod console;
pub mod hotfolder;
pub mod ipp;
pub mod pdf;
pub mod printing;
pub mod render;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{FixedOffset, NaiveDate, NaiveDateTime};
use libp2p::PeerId;
use printmesh_protocol::capacity::{CapacityModel, Promise};
use printmesh_protocol::messages::{
    proto, BatchId, EventKind, HoldTerms, OrderLine, Parcel, PrintJob, PrintRequest, PrintResponse,
    Role, SettleLine, ShipRequest, ShipResponse,
};
use printmesh_protocol::money::Money;
use printmesh_protocol::{OrderId, StoreId};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::config::LabConfig;
use crate::net::{Inbound, PrintProto, SettleProto, ShipProto};
use crate::node::{now_ms, AdminResponse, Node, NodeError, RoleCommand};
use crate::report::{money_text, sum, Report, Table};
use crate::store::{StoreError, Tree};
use printmesh_protocol::money::Currency;
use printmesh_runtime::role::{RoleEvent, Stopping};

pub use console::{JobView, LabStatus, PrinterView};
use printing::Printer;

/// How much of an image file intake reads to check its header (the EXIF segment is
/// at most 64 KiB; the frame header follows it).
pub const IMAGE_HEADER_BYTES: usize = 1024 * 1024;
/// Largest image the lab agrees to decode, per side.
pub use printmesh_formats::photo::{check_image, MAX_SIDE as MAX_IMAGE_SIDE};

/// Where a job is in the lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    /// Waiting for a printer.
    Queued,
    /// A printer has it: rendering, or sent and not yet done.
    Printing {
        printer: String,
        since_ms: i64,
        output: Option<printing::Output>,
    },
    /// The printer failed it; the operator decides (reprint or mark printed).
    Failed { printer: String, reason: String },
    /// The prints are made, waiting for the courier.
    Printed { at_ms: i64 },
    /// Handed to the courier (or delivered by the lab itself without one).
    Shipped {
        at_ms: i64,
        shipment: Option<String>,
    },
    /// The lab cannot print it after all (an image it cannot decode): the hold is
    /// released by the intermediary when it sees the `Rejected` event.
    Rejected { reason: String },
}

impl JobStatus {
    /// Still the lab's to finish: in the active index and on the console.
    pub fn is_active(&self) -> bool {
        !matches!(self, JobStatus::Shipped { .. } | JobStatus::Rejected { .. })
    }

    /// The prints do not exist yet: counts against the promised date.
    pub fn is_unprinted(&self) -> bool {
        matches!(
            self,
            JobStatus::Queued | JobStatus::Printing { .. } | JobStatus::Failed { .. }
        )
    }

    pub fn label(&self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Printing { .. } => "printing",
            JobStatus::Failed { .. } => "failed",
            JobStatus::Printed { .. } => "printed",
            JobStatus::Shipped { .. } => "shipped",
            JobStatus::Rejected { .. } => "rejected",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabJob {
    pub order_id: OrderId,
    pub store: StoreId,
    pub lines: Vec<OrderLine>,
    /// The promise as it stands (moved when it slipped; see `slipped_from`).
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
    pub status: JobStatus,
    /// Times the operator had it printed again.
    pub reprints: u32,
    /// The first promised delivery date, when a slip moved it.
    pub slipped_from: Option<NaiveDate>,
}

impl LabJob {
    pub fn prints(&self) -> u32 {
        self.lines.iter().map(|l| u32::from(l.quantity)).sum()
    }
}

pub struct Lab {
    node: Node,
    capacity: CapacityModel,
    offset: FixedOffset,
    jobs: Tree<LabJob>,
    /// `YYYY-MM-DD` → prints booked that day.
    calendar: Tree<u32>,
    /// Jobs waiting for a printer, in the order they print: key
    /// `ship date (YYYY-MM-DD) ‖ received_at_ms (8 bytes BE) ‖ order id` → order id.
    queue: Tree<OrderId>,
    /// Jobs not yet shipped or rejected: order id → ().
    active: Tree<()>,
    /// `YYYY-MM-DDTHH` (lab local time) → prints made in that hour.
    made: Tree<u32>,
    printers: Vec<Arc<Printer>>,
    /// Wakes idle printers when a job is queued.
    work: tokio::sync::Notify,
    /// How often the promises are reviewed (`review_secs`).
    review_secs: u64,
    lock: tokio::sync::Mutex<()>,
    /// Held for a whole hand-over to the courier.
    shipping: tokio::sync::Mutex<()>,
    /// Jobs this lab refused at intake (order id → why): the same job sent again, by
    /// any intermediary, is refused again, so the order can move to another lab.
    refused: Tree<String>,
    /// The payment terms of each job that came with them (order id → terms).
    terms: Tree<HoldTerms>,
    /// `ship_margin_secs` in milliseconds.
    ship_margin_ms: i64,
}

fn day_key(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn queue_key(job: &LabJob) -> Vec<u8> {
    let mut k = day_key(job.promise.ship_date).into_bytes();
    k.extend_from_slice(&job.received_at_ms.to_be_bytes());
    k.extend_from_slice(&job.order_id.to_bytes());
    k
}

impl Lab {
    fn name(&self) -> String {
        self.node.config.name.clone()
    }

    pub fn now_local(&self) -> NaiveDateTime {
        chrono::Utc::now().with_timezone(&self.offset).naive_local()
    }

    /// A lab-local time as milliseconds since the epoch.
    fn ms_of_local(&self, t: NaiveDateTime) -> i64 {
        t.and_local_timezone(self.offset)
            .single()
            .map(|t| t.timestamp_millis())
            .unwrap_or(i64::MAX)
    }

    /// When a job's payment must be captured by, if it came with terms.
    pub fn terms_of(&self, order_id: OrderId) -> Option<HoldTerms> {
        self.terms.get(order_id.to_bytes()).ok().flatten()
    }

    fn local(&self, ms: i64) -> Option<NaiveDateTime> {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.with_timezone(&self.offset).naive_local())
    }

    pub fn job(&self, order_id: OrderId) -> Result<Option<LabJob>, StoreError> {
        self.jobs.get(order_id.to_bytes())
    }

    /// Jobs not yet shipped or rejected, in queue order (ship date, then arrival).
    pub fn active_jobs(&self) -> Result<Vec<LabJob>, StoreError> {
        let mut out = Vec::new();
        for entry in self.active.raw().iter() {
            let (k, _) = entry?;
            let Ok(bytes) = <[u8; 16]>::try_from(k.as_ref()) else {
                continue;
            };
            let id = OrderId::from_bytes(bytes);
            if let Some(job) = self.jobs.get(id.to_bytes())? {
                out.push(job);
            }
        }
        out.sort_by_key(|j| (j.promise.ship_date, j.received_at_ms, j.order_id));
        Ok(out)
    }

    /// Stores a job with its status change, keeping the queue and active index in the
    /// same transaction. The caller holds the lab's lock.
    fn save(&self, before: Option<&LabJob>, job: &LabJob) -> Result<(), StoreError> {
        let id = job.order_id.to_bytes();
        let bytes = self.jobs.encode(job)?;
        let old_queue = before
            .filter(|b| b.status == JobStatus::Queued)
            .map(queue_key);
        let new_queue = (job.status == JobStatus::Queued).then(|| queue_key(job));
        let active = job.status.is_active();
        let id_bytes = self.queue.encode(&job.order_id)?;
        (self.jobs.raw(), self.queue.raw(), self.active.raw())
            .transaction(|(jobs, queue, act)| {
                jobs.insert(&id, bytes.clone())?;
                if let Some(k) = &old_queue {
                    queue.remove(k.as_slice())?;
                }
                if let Some(k) = &new_queue {
                    queue.insert(k.as_slice(), id_bytes.clone())?;
                }
                if active {
                    act.insert(&id, &[][..])?;
                } else {
                    act.remove(&id)?;
                }
                Ok(())
            })
            .map_err(crate::store::transaction_error)
    }

    /// Changes one job under the lab's lock and stores it durably. `change` returns
    /// `Err(text)` to refuse (nothing is stored).
    pub async fn update(
        &self,
        order_id: OrderId,
        change: impl FnOnce(&mut LabJob) -> Result<(), String>,
    ) -> Result<LabJob, String> {
        let _guard = self.lock.lock().await;
        let before = self
            .jobs
            .get(order_id.to_bytes())
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("this lab has no job {order_id}"))?;
        let mut job = before.clone();
        change(&mut job)?;
        if job != before {
            self.save(Some(&before), &job).map_err(|e| e.to_string())?;
            self.node.db.flush().await.map_err(|e| e.to_string())?;
        }
        Ok(job)
    }

    /// Takes a job from the intermediary `from`, or says why not. Idempotent per
    /// order id.
    pub async fn intake(
        &self,
        job: PrintJob,
        from: PeerId,
        terms: Option<HoldTerms>,
    ) -> Result<PrintResponse, StoreError> {
        let order_id = job.order_id;
        if let Some(existing) = self.jobs.get(order_id.to_bytes())? {
            return Ok(self.accepted(order_id, &existing));
        }
        if let Some(reason) = self.refused.get(order_id.to_bytes())? {
            return Ok(PrintResponse::Rejected { order_id, reason });
        }
        match self.take_in(job, from, terms).await? {
            PrintResponse::Rejected { order_id, reason } => {
                // Kept, so the job refused here is refused here whoever sends it again;
                // under the lab's lock, and never beside a job taken meanwhile (the
                // same job from another intermediary).
                let _guard = self.lock.lock().await;
                if let Some(existing) = self.jobs.get(order_id.to_bytes())? {
                    return Ok(self.accepted(order_id, &existing));
                }
                self.refused.insert(order_id.to_bytes(), &reason)?;
                self.node.db.flush().await?;
                tracing::warn!(%order_id, "job rejected: {reason}");
                Ok(PrintResponse::Rejected { order_id, reason })
            }
            other => Ok(other),
        }
    }

    async fn take_in(
        &self,
        job: PrintJob,
        from: PeerId,
        terms: Option<HoldTerms>,
    ) -> Result<PrintResponse, StoreError> {
        let order_id = job.order_id;
        let reject = |reason: String| Ok(PrintResponse::Rejected { order_id, reason });
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
                Err(e) => {
                    // Not kept: the same job may be taken when it is sent again.
                    let reason = format!("{}: {e}", line.file_name);
                    tracing::warn!(%order_id, "job not taken now: {reason}");
                    return Ok(PrintResponse::NotNow { order_id, reason });
                }
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
        let calendar = &self.calendar;
        let promise = match self
            .capacity
            .promise(self.now_local(), &job.store, prints, |d| {
                calendar.get(day_key(d)).ok().flatten().unwrap_or(0)
            }) {
            Ok(p) => p,
            Err(e) => return reject(e.to_string()),
        };
        if let Some(terms) = terms {
            let route = self.capacity.route(&job.store);
            let leaves = self.ms_of_local(self.capacity.deadline(route, promise.ship_date));
            if leaves > terms.pay_by_ms.saturating_sub(self.ship_margin_ms) {
                let lapses = self
                    .local(terms.pay_by_ms)
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                return reject(format!(
                    "this lab ships it on {}, after the payment can be held (until {lapses})",
                    promise.ship_date
                ));
            }
        }
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
            status: JobStatus::Queued,
            reprints: 0,
            slipped_from: None,
        };
        let job_bytes = self.jobs.encode(&record)?;
        let mut bookings = Vec::new();
        for (day, n) in &promise.bookings {
            let already = calendar.get(day_key(*day))?.unwrap_or(0);
            bookings.push((day_key(*day), calendar.encode(&(already + n))?));
        }
        let qkey = queue_key(&record);
        let qval = self.queue.encode(&order_id)?;
        let terms_bytes = terms.map(|t| self.terms.encode(&t)).transpose()?;
        (
            self.jobs.raw(),
            self.calendar.raw(),
            self.queue.raw(),
            self.active.raw(),
            self.terms.raw(),
        )
            .transaction(|(jobs, cal, queue, active, terms)| {
                jobs.insert(&order_id.to_bytes(), job_bytes.clone())?;
                if let Some(t) = &terms_bytes {
                    terms.insert(&order_id.to_bytes(), t.clone())?;
                }
                for (k, v) in &bookings {
                    cal.insert(k.as_bytes(), v.clone())?;
                }
                queue.insert(qkey.as_slice(), qval.clone())?;
                active.insert(&order_id.to_bytes(), &[][..])?;
                Ok(())
            })
            .map_err(crate::store::transaction_error)?;
        self.node.db.flush().await?;
        drop(guard);
        printmesh_runtime::failpoint::crash_point("lab.accepted-before-answer");
        tracing::info!(%order_id, prints, delivery = %promise.delivery_date, "job accepted");
        let kind = EventKind::Accepted {
            delivery_date: promise.delivery_date,
            lab: self.name(),
        };
        self.node.emit(order_id, kind).await;
        self.work.notify_waiters();
        Ok(PrintResponse::Accepted {
            order_id,
            delivery_date: promise.delivery_date,
            lab: self.name(),
        })
    }

    fn accepted(&self, order_id: OrderId, job: &LabJob) -> PrintResponse {
        match &job.status {
            JobStatus::Rejected { reason } => PrintResponse::Rejected {
                order_id,
                reason: reason.clone(),
            },
            _ => PrintResponse::Accepted {
                order_id,
                // The date first promised: the intermediary records one answer.
                delivery_date: job.slipped_from.unwrap_or(job.promise.delivery_date),
                lab: self.name(),
            },
        }
    }

    /// Takes the next queued job for `printer`: it leaves the queue as `Printing`.
    async fn take_next(&self, printer: &str) -> Result<Option<LabJob>, StoreError> {
        let _guard = self.lock.lock().await;
        let Some(first) = self.queue.raw().first()? else {
            return Ok(None);
        };
        let id: OrderId = self.queue.decode(&first.1)?;
        let Some(before) = self.jobs.get(id.to_bytes())? else {
            self.queue.raw().remove(first.0)?;
            return Ok(None);
        };
        let mut job = before.clone();
        job.status = JobStatus::Printing {
            printer: printer.to_string(),
            since_ms: now_ms(),
            output: None,
        };
        if before.status != JobStatus::Queued {
            // A stale queue entry: drop it.
            self.queue.raw().remove(first.0)?;
            return Ok(None);
        }
        self.save(Some(&before), &job)?;
        self.node.db.flush().await?;
        Ok(Some(job))
    }

    /// The operator says the prints are made.
    pub async fn mark_printed(&self, order_id: OrderId, by: &str) -> Result<String, String> {
        self.printed_if(order_id, by, |_| true).await
    }

    /// A printer's job is done: it counts only if the job is still that printer's,
    /// with that output (the operator may have moved it meanwhile).
    async fn printer_done(&self, order_id: OrderId, printer: &str, out: &printing::Output) {
        let r = self
            .printed_if(order_id, printer, |s| {
                matches!(s, JobStatus::Printing { printer: p, output: Some(o), .. } if p == printer && o == out)
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(%order_id, printer, "printer finished a job that moved on: {e}");
        }
    }

    /// Marks the prints made if the job has not been printed yet and `still` holds.
    async fn printed_if(
        &self,
        order_id: OrderId,
        by: &str,
        still: impl Fn(&JobStatus) -> bool,
    ) -> Result<String, String> {
        let at = now_ms();
        let mut counted = 0;
        let hour = self.local(at).map(|t| t.format("%Y-%m-%dT%H").to_string());
        let job = self
            .update(order_id, |job| match job.status {
                JobStatus::Queued | JobStatus::Printing { .. } | JobStatus::Failed { .. }
                    if !still(&job.status) =>
                {
                    Err(format!(
                        "order {order_id} is {} elsewhere now",
                        job.status.label()
                    ))
                }
                JobStatus::Queued | JobStatus::Printing { .. } | JobStatus::Failed { .. } => {
                    counted = job.prints();
                    job.status = JobStatus::Printed { at_ms: at };
                    // Counted under the same lock, flushed with the job.
                    if let Some(key) = &hour {
                        let n = self.made.get(key).ok().flatten().unwrap_or(0);
                        if let Err(e) = self.made.insert(key, &(n + counted)) {
                            tracing::warn!("cannot count prints made: {e}");
                        }
                    }
                    Ok(())
                }
                JobStatus::Printed { .. } => Ok(()),
                ref other => Err(format!("order {order_id} is {}", other.label())),
            })
            .await?;
        if counted > 0 {
            tracing::info!(%order_id, prints = counted, by, "printed");
            self.node.emit(order_id, EventKind::Printed).await;
        }
        Ok(format!(
            "order {order_id} printed ({} prints); ready for the courier",
            job.prints()
        ))
    }

    /// The operator wants the job printed again (a bad print, a jam): back to the
    /// queue, ahead of nothing it was not ahead of before.
    pub async fn reprint(&self, order_id: OrderId) -> Result<String, String> {
        let mut cancel = None;
        self.update(order_id, |job| match &job.status {
            JobStatus::Printing { .. } | JobStatus::Failed { .. } | JobStatus::Printed { .. } => {
                if let JobStatus::Printing {
                    printer,
                    output: Some(out),
                    ..
                } = &job.status
                {
                    cancel = Some((printer.clone(), out.clone()));
                }
                job.status = JobStatus::Queued;
                job.reprints += 1;
                Ok(())
            }
            other => Err(format!(
                "order {order_id} is {}: nothing to print again",
                other.label()
            )),
        })
        .await?;
        if let Some((name, out)) = cancel {
            if let Some(p) = self.printers.iter().find(|p| p.name == name) {
                p.cancel(&out).await;
            }
        }
        self.work.notify_waiters();
        tracing::info!(%order_id, "queued to print again");
        Ok(format!("order {order_id} queued to print again"))
    }

    /// Records where a printer sent the job, if it is still that printer's and not
    /// recorded yet. False if the job moved on meanwhile.
    async fn record_output(
        &self,
        order_id: OrderId,
        printer: &str,
        out: &printing::Output,
    ) -> bool {
        self.update(order_id, |j| match &mut j.status {
            JobStatus::Printing {
                printer: p,
                output: o @ None,
                ..
            } if p == printer => {
                *o = Some(out.clone());
                Ok(())
            }
            other => Err(format!("the job is now {}", other.label())),
        })
        .await
        .is_ok()
    }

    /// A printer could not finish the job; the operator decides what next.
    async fn fail(&self, order_id: OrderId, printer: &str, reason: String) {
        tracing::error!(%order_id, printer, "print failed: {reason}");
        let r = self
            .update(order_id, |job| {
                if matches!(&job.status, JobStatus::Printing { printer: p, .. } if p == printer) {
                    job.status = JobStatus::Failed {
                        printer: printer.to_string(),
                        reason: reason.clone(),
                    };
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::error!(%order_id, "cannot record the failure: {e}");
        }
    }

    /// Puts a job a printer could not start (its output failed: a full disk, the
    /// printer gone) back at its place in the queue. Nothing is lost.
    async fn requeue(&self, order_id: OrderId, printer: &str) {
        let r = self
            .update(order_id, |job| {
                if matches!(&job.status, JobStatus::Printing { printer: p, .. } if p == printer) {
                    job.status = JobStatus::Queued;
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::error!(%order_id, "cannot put the job back in the queue: {e}");
        }
    }

    /// The lab cannot print this job after all: it says so with a reason, and the
    /// intermediary, seeing the `Rejected` event, releases the customer's hold.
    async fn reject_after_intake(&self, order_id: OrderId, printer: &str, reason: String) {
        tracing::error!(%order_id, "job cannot be printed: {reason}");
        let mut release = Vec::new();
        let r = self
            .update(order_id, |job| match &job.status {
                // Only the printer that is rendering it, before anything was printed:
                // a rejection never follows a `Printed`.
                JobStatus::Printing {
                    printer: p,
                    output: None,
                    ..
                } if p == printer => {
                    job.status = JobStatus::Rejected {
                        reason: reason.clone(),
                    };
                    release = job.promise.bookings.clone();
                    Ok(())
                }
                other => Err(format!("the job is {} now", other.label())),
            })
            .await;
        if r.is_ok() {
            self.move_bookings(&release, &[]).await;
        }
        match r {
            Ok(_) => {
                self.node
                    .emit(order_id, EventKind::Rejected { reason })
                    .await
            }
            Err(e) => tracing::error!(%order_id, "cannot record the rejection: {e}"),
        }
    }

    /// Moves prints in the calendar, under the lab's lock: `from` is given back (a
    /// job that will not print, or a promise that moved), `to` is booked.
    async fn move_bookings(&self, from: &[(NaiveDate, u32)], to: &[(NaiveDate, u32)]) {
        let _guard = self.lock.lock().await;
        let changes = from
            .iter()
            .map(|(d, n)| (*d, -i64::from(*n)))
            .chain(to.iter().map(|(d, n)| (*d, i64::from(*n))));
        for (day, delta) in changes {
            let key = day_key(day);
            let was = i64::from(self.calendar.get(&key).ok().flatten().unwrap_or(0));
            let now = u32::try_from((was + delta).max(0)).unwrap_or(u32::MAX);
            if let Err(e) = self.calendar.insert(&key, &now) {
                tracing::warn!("cannot book {delta} prints on {key}: {e}");
            }
        }
    }

    /// Hands printed orders to the courier: one manifest, and once the courier has
    /// them, `Shipped` for each (the intermediary captures the payment on it). With
    /// no courier on the network the lab delivers them itself. A lab without printers
    /// (prints made by hand) ships a queued job as printed now.
    pub async fn ship(&self, order_ids: &[OrderId]) -> Result<String, String> {
        if order_ids.is_empty() {
            return Err("nothing to ship".into());
        }
        // One hand-over at a time (the console's `s` and `a` could overlap).
        let _shipping = self.shipping.lock().await;
        let manual = self.printers.is_empty();
        let mut parcels = Vec::new();
        let mut again = Vec::new();
        for &order_id in order_ids {
            let job = self
                .job(order_id)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("this lab has no job {order_id}"))?;
            match &job.status {
                JobStatus::Printed { .. } | JobStatus::Queued if !self.payment_holds(order_id) => {
                    let until = self
                        .terms_of(order_id)
                        .and_then(|t| self.local(t.expires_at_ms))
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_default();
                    return Err(format!(
                        "order {order_id}: its payment hold ends {until}, too soon to ship; it ships once the hold is extended"
                    ));
                }
                JobStatus::Printed { .. } => {}
                JobStatus::Queued if manual => {
                    self.mark_printed(order_id, "operator").await?;
                }
                JobStatus::Shipped { .. } => {
                    again.push(order_id);
                    continue;
                }
                other => {
                    return Err(format!(
                        "order {order_id} is {}, not printed: it cannot go to the courier yet",
                        other.label()
                    ))
                }
            }
            parcels.push(Parcel {
                order_id,
                store: job.store.clone(),
                prints: job.prints(),
                delivery_date: job.promise.delivery_date,
            });
        }
        let mut lines = Vec::new();
        // Shipping again re-announces it: the events are how the intermediary learns
        // to capture, and one may have been missed.
        for order_id in again {
            self.node.emit(order_id, EventKind::Shipped).await;
            lines.push(format!(
                "order {order_id} was shipped already; announced again"
            ));
        }
        if parcels.is_empty() {
            return Ok(lines.join("\n"));
        }
        let shipment = format!(
            "{}-{}",
            self.now_local().format("%Y%m%d-%H%M%S"),
            parcels
                .first()
                .map(|p| p.order_id.to_string())
                .unwrap_or_default()
        );
        // Couriers in an order of the shipment's own (so shipments spread over them);
        // one that refuses it passes it to the next.
        let mut couriers = self.node.client.peers_with_role(Role::Courier).await;
        couriers.sort_by_key(|c| {
            *blake3::hash(&[shipment.as_bytes(), &c.peer.to_bytes()].concat()).as_bytes()
        });
        let via = if couriers.is_empty() {
            tracing::warn!("no courier on the network: the lab delivers {shipment} itself");
            None
        } else {
            let mut last = String::new();
            let mut taken = None;
            for c in &couriers {
                let request = ShipRequest::Manifest {
                    shipment: shipment.clone(),
                    lab: self.name(),
                    parcels: parcels.clone(),
                };
                match self.node.client.request::<ShipProto>(c.peer, request).await {
                    Ok(ShipResponse::PickedUp { .. }) => {
                        taken = Some(shipment.clone());
                        break;
                    }
                    Ok(ShipResponse::Refused { reason, .. }) => {
                        last = format!("{} refused the shipment: {reason}", c.hello.name)
                    }
                    // It may have taken it and its answer was lost: not offered to
                    // another courier (the operator ships again; the same courier takes
                    // a shipment once).
                    Err(e) => {
                        return Err(format!("{} did not answer: {e}", c.hello.name));
                    }
                }
                tracing::warn!(%shipment, "{last}; trying another courier");
            }
            match taken {
                Some(s) => Some(s),
                None => return Err(format!("no courier took the shipment (the last: {last})")),
            }
        };
        let at = now_ms();
        for p in &parcels {
            let r = self
                .update(p.order_id, |job| match job.status {
                    JobStatus::Printed { .. } => {
                        job.status = JobStatus::Shipped {
                            at_ms: at,
                            shipment: via.clone(),
                        };
                        job.shipped_at_ms = Some(at);
                        Ok(())
                    }
                    // Sent back to print (or rejected) while the courier was asked.
                    ref other => Err(format!(
                        "it became {} during the hand-over; the courier has a parcel to give back",
                        other.label()
                    )),
                })
                .await;
            if let Err(e) = r {
                tracing::error!(order_id = %p.order_id, "cannot record the shipment: {e}");
                continue;
            }
            printmesh_runtime::failpoint::crash_point("lab.shipped-before-event");
            self.node.emit(p.order_id, EventKind::Shipped).await;
            tracing::info!(order_id = %p.order_id, shipment = %shipment, "handed to the courier");
            lines.push(match &via {
                Some(s) => format!("order {} printed and shipped (courier, {s})", p.order_id),
                None => format!(
                    "order {} printed and shipped (no courier: by the lab)",
                    p.order_id
                ),
            });
        }
        Ok(lines.join("\n"))
    }

    /// Sends every event the jobs imply that a crash kept from going out (a job's
    /// state is stored before its event is): `Accepted`, `Printed`, `Shipped` — the
    /// one the intermediary captures on — and `Rejected`. Jobs shipped longer ago than
    /// the runtime's resend window are left alone.
    pub async fn resend_events(&self) -> usize {
        let horizon = now_ms().saturating_sub(printmesh_runtime::events::RESEND_WINDOW_MS);
        let mut sent = 0;
        for (_, job) in self.jobs.entries().filter_map(Result::ok) {
            if job.shipped_at_ms.is_some_and(|t| t < horizon) {
                continue;
            }
            let id = job.order_id;
            let mut kinds = vec![EventKind::Accepted {
                delivery_date: job.slipped_from.unwrap_or(job.promise.delivery_date),
                lab: self.name(),
            }];
            match &job.status {
                JobStatus::Printed { .. } => kinds.push(EventKind::Printed),
                JobStatus::Shipped { .. } => kinds.extend([EventKind::Printed, EventKind::Shipped]),
                JobStatus::Rejected { reason } => kinds.push(EventKind::Rejected {
                    reason: reason.clone(),
                }),
                _ => {}
            }
            for kind in kinds {
                if self.node.ensure_emitted(id, kind).await {
                    sent += 1;
                }
            }
        }
        sent
    }

    /// Whether the acquirer released the order's payment (its `Voided` or `Expired`
    /// event is in this lab's log), and how.
    fn payment_gone(&self, order_id: OrderId) -> Option<&'static str> {
        let events = self.node.events.events_for(order_id).ok()?;
        events.iter().find_map(|e| match e.kind {
            EventKind::Expired => Some("hold lapsed"),
            EventKind::Voided => Some("hold was released"),
            _ => None,
        })
    }

    /// Jobs whose payment the acquirer released while this lab was not listening (a
    /// crash between storing the event and acting on it): stopped now.
    async fn stop_unpaid_jobs(&self) {
        let Ok(jobs) = self.active_jobs() else { return };
        for job in jobs {
            if let Some(why) = self.payment_gone(job.order_id) {
                self.on_payment_gone(job.order_id, why).await;
            }
        }
    }

    /// Whether the job's payment can still be captured when the shipment is heard of
    /// (no terms: a job of the first protocol, always).
    pub fn payment_holds(&self, order_id: OrderId) -> bool {
        if self.payment_gone(order_id).is_some() {
            return false;
        }
        self.terms_of(order_id)
            .is_none_or(|t| t.expires_at_ms > now_ms().saturating_add(self.ship_margin_ms))
    }

    /// Every printed job, handed over together.
    pub async fn ship_all_printed(&self) -> Result<String, String> {
        let ids: Vec<OrderId> = self
            .active_jobs()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|j| matches!(j.status, JobStatus::Printed { .. }))
            .filter(|j| self.payment_holds(j.order_id))
            .map(|j| j.order_id)
            .collect();
        if ids.is_empty() {
            return Err("no printed orders are waiting for the courier".into());
        }
        self.ship(&ids).await
    }

    /// Prints per hour of every printer (or of a lab that prints by hand).
    fn configured_rate(&self) -> u32 {
        if self.printers.is_empty() {
            return self.working_rate();
        }
        self.printers.iter().map(|p| p.prints_per_hour).sum()
    }

    /// Prints per hour of the printers that can print now.
    fn working_rate(&self) -> u32 {
        if self.printers.is_empty() {
            let hours = u32::from(
                self.capacity
                    .close_hour
                    .saturating_sub(self.capacity.open_hour),
            )
            .max(1);
            return self.capacity.prints_per_day / hours;
        }
        self.printers
            .iter()
            .filter(|p| p.is_working())
            .map(|p| p.prints_per_hour)
            .sum()
    }

    /// Which unprinted jobs will miss the courier: `order id → why`. The queue is
    /// worked in order at the working printers' rate within opening hours.
    pub fn at_risk(&self, jobs: &[LabJob], now_local: NaiveDateTime) -> BTreeMap<OrderId, String> {
        let rate = self.working_rate();
        let mut ahead: u32 = 0;
        let mut out = BTreeMap::new();
        for job in jobs.iter().filter(|j| j.status.is_unprinted()) {
            ahead = ahead.saturating_add(job.prints());
            let route = self.capacity.route(&job.store);
            let deadline = self.capacity.deadline(route, job.promise.ship_date);
            let why = if let JobStatus::Failed { reason, .. } = &job.status {
                Some(format!("print failed: {reason}"))
            } else if rate == 0 {
                Some("no printer is working".to_string())
            } else {
                match self.capacity.finish_time(now_local, ahead, rate) {
                    Some(t) if t <= deadline => None,
                    Some(t) => Some(format!(
                        "done {} but the courier leaves {}",
                        t.format("%m-%d %H:%M"),
                        deadline.format("%m-%d %H:%M")
                    )),
                    None => Some("no room in the calendar".to_string()),
                }
            };
            if let Some(why) = why {
                out.insert(job.order_id, why);
            }
        }
        // Payment: a job must leave while its hold can still be captured.
        for job in jobs.iter().filter(|j| j.status.is_active()) {
            let Some(terms) = self.terms_of(job.order_id) else {
                continue;
            };
            let route = self.capacity.route(&job.store);
            let leaves = self.ms_of_local(self.capacity.deadline(route, job.promise.ship_date));
            let at = |ms| {
                self.local(ms)
                    .map(|t| t.format("%m-%d %H:%M").to_string())
                    .unwrap_or_default()
            };
            let why = if leaves > terms.pay_by_ms.saturating_sub(self.ship_margin_ms) {
                Some(format!(
                    "payment can be held only until {}",
                    at(terms.pay_by_ms)
                ))
            } else if !self.payment_holds(job.order_id) {
                Some(format!(
                    "payment hold ends {}: not shipped until extended",
                    at(terms.expires_at_ms)
                ))
            } else {
                None
            };
            if let Some(why) = why {
                out.entry(job.order_id)
                    .and_modify(|w| *w = format!("{w}; {why}"))
                    .or_insert(why);
            }
        }
        out
    }

    /// Moves the promise of every unprinted job whose courier has left without it,
    /// and tells the store (a `Rescheduled` event). Returns the jobs moved.
    pub async fn review(&self, now_local: NaiveDateTime) -> Vec<(OrderId, NaiveDate)> {
        let jobs = match self.active_jobs() {
            Ok(j) => j,
            Err(e) => {
                tracing::error!("cannot review promises: {e}");
                return Vec::new();
            }
        };
        // What the printers make when they work: a printer down for a moment must not
        // move every promise weeks ahead.
        let rate = match self.configured_rate() {
            0 => return Vec::new(),
            r => r,
        };
        let mut ahead: u32 = 0;
        let mut moved = Vec::new();
        for job in jobs.iter().filter(|j| j.status.is_unprinted()) {
            ahead = ahead.saturating_add(job.prints());
            let route = self.capacity.route(&job.store);
            if self.capacity.deadline(route, job.promise.ship_date) > now_local {
                continue;
            }
            // The courier has gone: the earliest it can be printed, then the next
            // collection after that.
            let Some(done) = self.capacity.finish_time(now_local, ahead, rate) else {
                continue;
            };
            let Some(mut ship) = self.capacity.ship_date(route, done.date()) else {
                continue;
            };
            if self.capacity.deadline(route, ship) < done {
                ship = match ship
                    .succ_opt()
                    .and_then(|d| self.capacity.ship_date(route, d))
                {
                    Some(d) => d,
                    None => continue,
                };
            }
            let Some(delivery) =
                ship.checked_add_days(chrono::Days::new(u64::from(route.transit_days)))
            else {
                continue;
            };
            let order_id = job.order_id;
            if let Some(terms) = self.terms_of(order_id) {
                let leaves = self.ms_of_local(self.capacity.deadline(route, ship));
                if leaves > terms.pay_by_ms.saturating_sub(self.ship_margin_ms) {
                    // Refuse the new promise rather than ship what cannot be paid.
                    self.on_payment_gone(order_id, "cannot be held until the prints ship")
                        .await;
                    continue;
                }
            }
            let was = job.promise.delivery_date;
            let print_day = done.date();
            let mut old_bookings = Vec::new();
            let r = self
                .update(order_id, |j| {
                    if !j.status.is_unprinted() {
                        return Err(format!("it is {} now", j.status.label()));
                    }
                    if j.slipped_from.is_none() {
                        j.slipped_from = Some(j.promise.delivery_date);
                    }
                    old_bookings = std::mem::take(&mut j.promise.bookings);
                    j.promise.bookings = vec![(print_day, j.prints())];
                    j.promise.ship_date = ship;
                    j.promise.delivery_date = delivery;
                    Ok(())
                })
                .await;
            if let Err(e) = r {
                tracing::info!(%order_id, "promise not moved: {e}");
                continue;
            }
            // The calendar follows: the prints leave the days they missed and take
            // room on the day they are now expected.
            self.move_bookings(&old_bookings, &[(print_day, job.prints())])
                .await;
            let reason = format!("missed the courier on {}", job.promise.ship_date);
            tracing::warn!(%order_id, %was, now = %delivery, "promise slipped: {reason}");
            self.node
                .emit(
                    order_id,
                    EventKind::Rescheduled {
                        delivery_date: delivery,
                        reason,
                    },
                )
                .await;
            moved.push((order_id, delivery));
        }
        moved
    }

    /// What the console shows.
    pub async fn status(&self) -> Result<LabStatus, String> {
        let now = self.now_local();
        let jobs = self.active_jobs().map_err(|e| e.to_string())?;
        let risk = self.at_risk(&jobs, now);
        let today = now.format("%Y-%m-%d").to_string();
        let hour = now.format("%Y-%m-%dT%H").to_string();
        let mut made_today = 0;
        let mut made_this_hour = 0;
        for entry in self.made.scan_prefix(today.as_bytes()) {
            let (k, n) = entry.map_err(|e| e.to_string())?;
            made_today += n;
            if k == hour.as_bytes() {
                made_this_hour += n;
            }
        }
        let mut printers = Vec::new();
        for p in &self.printers {
            printers.push(p.view());
        }
        Ok(LabStatus {
            lab: self.name(),
            now_local: now.format("%Y-%m-%d %H:%M").to_string(),
            printers,
            jobs: jobs
                .iter()
                .map(|j| JobView::of(j, risk.get(&j.order_id).cloned()))
                .collect(),
            made_today,
            made_this_hour,
            capacity_today: self.capacity.capacity_on(now.date()),
        })
    }

    /// The intermediary pays print fees.
    async fn on_settle(&self, inbound: Inbound<SettleProto>) {
        let payee = crate::roles::Payee {
            the: "the lab",
            a: "a lab",
            paid: "print fees",
        };
        crate::roles::answer_payment(
            &self.node.client,
            inbound,
            payee,
            |peer, batch, lines, total| async move {
                let _guard = self.lock.lock().await;
                self.lab_payment(peer, batch, &lines, total).await
            },
        )
        .await
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
                // The acquirer pays the intermediary that captured it, which need not be
                // the one that sent the job; it pays each order once.
                tracing::info!(%order_id, %batch, "paid by another intermediary than the one that sent the job");
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
        let (peer, request, responder) = inbound.into_parts();
        let order_id = request.order_id();
        let answer = match request {
            PrintRequest::Job(job) => self.intake(job, peer, None).await,
            PrintRequest::JobWithTerms { job, terms } => self.intake(job, peer, Some(terms)).await,
            PrintRequest::Terms { order_id, terms } => self.note_terms(order_id, terms).await,
        };
        match answer {
            Ok(r) => responder.respond(r),
            Err(e) => {
                tracing::error!(%peer, %order_id, "cannot take job: {e}");
                // No answer: the intermediary's request fails and it retries later.
            }
        }
    }

    /// The order's hold was extended: the lab may ship it until the new expiry.
    async fn note_terms(
        &self,
        order_id: OrderId,
        terms: HoldTerms,
    ) -> Result<PrintResponse, StoreError> {
        let _guard = self.lock.lock().await;
        if self.jobs.get(order_id.to_bytes())?.is_none() {
            return Ok(PrintResponse::Rejected {
                order_id,
                reason: "this lab has no such job".into(),
            });
        }
        let newer = match self.terms.get(order_id.to_bytes())? {
            Some(t) => t.expires_at_ms < terms.expires_at_ms,
            None => true,
        };
        if newer {
            self.terms.insert(order_id.to_bytes(), &terms)?;
            self.node.db.flush().await?;
            tracing::info!(%order_id, expires_at_ms = terms.expires_at_ms, "payment hold extended");
        }
        Ok(PrintResponse::TermsNoted { order_id })
    }

    /// The payment of an unshipped job was released or lapsed at the acquirer: its
    /// prints must not leave. It is taken off the queue and the store is told.
    async fn on_payment_gone(&self, order_id: OrderId, why: &str) {
        let mut release = Vec::new();
        let reason = format!("the payment {why}: not shipped");
        let r = self
            .update(order_id, |job| match &job.status {
                JobStatus::Shipped { .. } | JobStatus::Rejected { .. } => {
                    Err(format!("it is {}", job.status.label()))
                }
                _ => {
                    job.status = JobStatus::Rejected {
                        reason: reason.clone(),
                    };
                    release = job.promise.bookings.clone();
                    Ok(())
                }
            })
            .await;
        if r.is_ok() {
            self.move_bookings(&release, &[]).await;
            tracing::error!(%order_id, "{reason}");
            self.node
                .emit(order_id, EventKind::Rejected { reason })
                .await;
        }
    }

    async fn on_event(&self, event: printmesh_protocol::messages::OrderEvent) {
        let why = match event.kind {
            EventKind::Expired => "hold lapsed",
            EventKind::Voided => "hold was released",
            _ => return,
        };
        if matches!(self.jobs.get(event.order_id.to_bytes()), Ok(Some(_))) {
            self.on_payment_gone(event.order_id, why).await;
        }
    }

    async fn on_admin(&self, command: LabCommand) -> AdminResponse {
        match command {
            LabCommand::Ship { order_id } => {
                AdminResponse::from_result(self.ship(&[order_id]).await)
            }
            LabCommand::ShipAllPrinted => AdminResponse::from_result(self.ship_all_printed().await),
            LabCommand::MarkPrinted { order_id } => {
                AdminResponse::from_result(self.mark_printed(order_id, "operator").await)
            }
            LabCommand::Reprint { order_id } => {
                AdminResponse::from_result(self.reprint(order_id).await)
            }
            LabCommand::LabStatus => AdminResponse::from_result(
                self.status()
                    .await
                    .and_then(|s| serde_json::to_string(&s).map_err(|e| e.to_string())),
            ),
            LabCommand::Report { date, csv } => {
                AdminResponse::from_result(report(&self.node.db, date).map(|r| r.render(csv)))
            }
        }
    }
}

/// A lab's admin commands (`printmesh lab ship|mark-printed|reprint|status|report`, the
/// lab console).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LabCommand {
    /// The order's prints are handed to the courier.
    Ship { order_id: OrderId },
    /// Every printed order is handed to the courier.
    ShipAllPrinted,
    /// The operator says the prints are made.
    MarkPrinted { order_id: OrderId },
    /// Print the order again.
    Reprint { order_id: OrderId },
    /// The queue, the printers, the promises at risk (JSON, for the console).
    LabStatus,
    /// The reconciliation report of a day.
    Report { date: chrono::NaiveDate, csv: bool },
}

impl RoleCommand for LabCommand {
    const ROLE: Role = Role::Lab;
}

printmesh_runtime::requests! {
    /// What a lab answers: an intermediary's print job and its payment.
    pub enum LabRequest {
        Print(PrintProto),
        Settle(SettleProto),
    }
}

impl printmesh_runtime::role::Role for Lab {
    const KIND: Role = Role::Lab;
    type Config = LabConfig;
    type Command = LabCommand;
    type Request = LabRequest;

    fn open(node: Node, config: LabConfig) -> Result<Arc<Lab>, NodeError> {
        let capacity = config.capacity().map_err(NodeError::Role)?;
        let offset = FixedOffset::east_opt(i32::from(config.utc_offset_hours) * 3600)
            .ok_or_else(|| NodeError::Role("bad utc_offset_hours".into()))?;
        let mut printers = Vec::new();
        for p in &config.printers {
            printers.push(Arc::new(
                Printer::new(p, &node.config.name).map_err(NodeError::Role)?,
            ));
        }
        Ok(Arc::new(Lab {
            jobs: node.db.tree("jobs")?,
            refused: node.db.tree("refused")?,
            terms: node.db.tree("hold_terms")?,
            calendar: node.db.tree("calendar")?,
            queue: node.db.tree("queue")?,
            active: node.db.tree("active")?,
            made: node.db.tree("made")?,
            node,
            capacity,
            offset,
            printers,
            review_secs: config.review_secs.max(1),
            work: tokio::sync::Notify::new(),
            lock: tokio::sync::Mutex::new(()),
            shipping: tokio::sync::Mutex::new(()),
            ship_margin_ms: (config.ship_margin_secs as i64).saturating_mul(1000),
        }))
    }

    /// Starts the printers and the promise review, and sends the events a crash kept
    /// from going out.
    fn start(self: &Arc<Self>, stopping: Stopping) {
        let lab = self.clone();
        tokio::spawn(async move {
            lab.resend_events().await;
            lab.stop_unpaid_jobs().await;
        });
        // Renders left half-done by a stop: their jobs are requeued and render again.
        let _ = std::fs::remove_dir_all(self.node.config.data_dir.join("spool"));
        for (i, _) in self.printers.iter().enumerate() {
            tokio::spawn(printing::run(self.clone(), i, stopping.clone()));
        }
        let secs = self.review_secs;
        let lab = self.clone();
        let mut stopping = stopping;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(secs));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        lab.review(lab.now_local()).await;
                    }
                    _ = stopping.wait() => break,
                }
            }
        });
    }

    async fn handle(self: Arc<Self>, event: RoleEvent<Self>) {
        match event {
            RoleEvent::Request(LabRequest::Print(inbound)) => self.on_print(inbound).await,
            RoleEvent::Request(LabRequest::Settle(inbound)) => self.on_settle(inbound).await,
            RoleEvent::Admin(command, reply) => {
                let _ = reply.send(self.on_admin(command).await);
            }
            // A payment released or lapsed stops its prints.
            RoleEvent::Event(event) => self.on_event(event).await,
            // Its work comes by request, command and its own printers.
            RoleEvent::PeerReady(_) | RoleEvent::PeerGone(_) => {}
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
            "slipped_from": j.slipped_from.map(|d| d.to_string()),
            "prints": j.prints(),
            "status": j.status.label(),
            "reprints": j.reprints,
            "shipped": j.shipped_at_ms.is_some(),
            "paid": j.paid.map(|(b, m)| serde_json::json!({ "batch": b.to_string(), "fee_minor": m.amount_minor() })),
            "lines": j.lines.iter().zip(&j.dimensions).map(|(l, d)| serde_json::json!({
                "file_name": l.file_name, "blob": l.blob.to_hex(), "size": l.size.code(), "quantity": l.quantity,
                "fit": format!("{:?}", l.fit),
                "width": d.0, "height": d.1,
                "blob_path": blobs.path(&l.blob).display().to_string(),
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(
        serde_json::json!({ "role": "lab", "jobs": out, "blobs": blobs.list().iter().map(|b| b.to_hex()).collect::<Vec<_>>() }),
    )
}

// ---------------------------------------------------------------------- the day's report

/// A lab: the print fees the intermediary paid it that day.
pub fn report(db: &crate::store::Db, date: chrono::NaiveDate) -> Result<Report, StoreError> {
    let jobs: Tree<LabJob> = db.tree("jobs")?;
    let mut rows = Vec::new();
    let mut currency = Currency::Jpy;
    let mut fees = Vec::new();
    for (_, j) in jobs.entries().filter_map(Result::ok) {
        let Some((batch, fee)) = j.paid else { continue };
        if batch.date != date {
            continue;
        }
        currency = fee.currency();
        fees.push(fee);
        let prints: u32 = j.lines.iter().map(|l| u32::from(l.quantity)).sum();
        rows.push(vec![
            batch.to_string(),
            j.order_id.to_string(),
            j.store.to_string(),
            prints.to_string(),
            money_text(fee),
        ]);
    }
    Ok(Report {
        party: "lab".into(),
        date,
        tables: vec![Table {
            title: "Print fees received from the intermediary".into(),
            columns: vec!["batch", "order", "store", "prints", "fee"],
            rows,
        }],
        totals: vec![("print fees received".into(), sum(fees, currency))],
    })
}
