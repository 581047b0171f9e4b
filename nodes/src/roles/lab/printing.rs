//! The lab's printers. Each runs one loop: check the printer, follow the job it has,
//! or take the next job from the queue, render it (EXIF upright, crop or border,
//! 300 DPI, back-print; plus the order's index print) and send it out:
//!
//! - **hot folder**: the order appears whole (by rename) as `<folder>/<order id>/`
//!   with `IMAGE/` and DPOF `MISC/AUTPRINT.MRK`; the minilab controller takes it away
//!   when it has printed it, and that is how the lab knows it is done;
//! - **IPP**: one PDF per order (a page per print, each the paper's size) sent with
//!   Print-Job; the job's state says when it is done or that it failed.
//!
//! A job the renderer cannot print (an image that does not decode) is rejected with
//! the reason and the customer's hold is released. A job whose output fails (a full
//! disk, a printer that is not there) goes back to its place in the queue: nothing is
//! lost, and the printer shows the error until it works again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use printmesh_protocol::OrderId;
use serde::{Deserialize, Serialize};

use super::{JobStatus, Lab, LabJob, PrinterView};
use crate::config::{LabPrinterConfig, PrinterOutput};
use crate::hotfolder::{FolderPrint, PrintKind};
use crate::ipp;
use crate::render::{self, PrintSpec, Resampler};

/// How often a printer looks at its job and its health when there is nothing new.
pub const POLL: Duration = Duration::from_millis(500);
/// Longest side of the thumbnails kept for the index print.
const INDEX_THUMB: u32 = 480;

/// Where a job went, so its printer can follow it (and find it again after a restart).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// The order's folder in the hot folder.
    Folder(PathBuf),
    /// The job id at the IPP printer.
    IppJob(i32),
}

enum Kind {
    HotFolder(PathBuf),
    Ipp(ipp::Client),
}

pub struct Printer {
    pub name: String,
    pub prints_per_hour: u32,
    kind: Kind,
    view: Mutex<PrinterView>,
}

impl Printer {
    pub fn new(config: &LabPrinterConfig, lab_name: &str) -> Result<Printer, String> {
        let (kind, label, target) = match config.output()? {
            PrinterOutput::HotFolder(dir) => {
                let t = dir.display().to_string();
                (Kind::HotFolder(dir), "hot folder", t)
            }
            PrinterOutput::Ipp(uri) => {
                let user: String = lab_name
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                let client =
                    ipp::Client::new(&uri, if user.is_empty() { "printmesh" } else { &user })
                        .map_err(|e| e.to_string())?;
                (Kind::Ipp(client), "IPP", uri)
            }
        };
        Ok(Printer {
            name: config.name.clone(),
            prints_per_hour: config.prints_per_hour,
            kind,
            view: Mutex::new(PrinterView {
                name: config.name.clone(),
                kind: label.to_string(),
                target,
                prints_per_hour: config.prints_per_hour,
                state: "starting".into(),
                working: false,
                job: None,
            }),
        })
    }

    pub fn view(&self) -> PrinterView {
        self.view
            .lock()
            .map(|v| v.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub fn is_working(&self) -> bool {
        self.view().working
    }

    fn set(&self, working: bool, state: String, job: Option<OrderId>) {
        if let Ok(mut v) = self.view.lock() {
            if v.state != state {
                if working {
                    tracing::info!(printer = %self.name, "{state}");
                } else {
                    tracing::warn!(printer = %self.name, "{state}");
                }
            }
            v.working = working;
            v.state = state;
            v.job = job.map(|j| j.to_string());
        }
    }

    /// Asks the printer how it is.
    async fn check(&self, job: Option<OrderId>) {
        let (working, state) = match &self.kind {
            Kind::HotFolder(dir) => match std::fs::create_dir_all(dir) {
                Ok(()) => (true, "ready".to_string()),
                Err(e) => (false, format!("hot folder unavailable: {e}")),
            },
            Kind::Ipp(client) => match client.printer_status().await {
                Ok(s) => (s.state != 5 && s.accepting, s.describe()),
                Err(e) => (false, format!("unreachable: {e}")),
            },
        };
        let state = match (job, &self.kind) {
            (Some(id), Kind::HotFolder(_)) => format!("{state}; {id} waits for the minilab"),
            (Some(id), Kind::Ipp(_)) => format!("{state}; has {id}"),
            (None, _) => state,
        };
        self.set(working, state, job);
    }

    /// Withdraws a job the operator wants printed again.
    pub async fn cancel(&self, output: &Output) {
        match (&self.kind, output) {
            (Kind::Ipp(client), Output::IppJob(id)) => {
                if let Err(e) = client.cancel_job(*id).await {
                    tracing::info!(printer = %self.name, job = id, "cancel: {e}");
                }
            }
            (Kind::HotFolder(_), Output::Folder(dir)) => {
                // Not yet taken by the controller: take it back.
                let _ = std::fs::remove_dir_all(dir);
            }
            _ => {}
        }
    }
}

/// One printer's loop.
pub async fn run(lab: Arc<Lab>, index: usize) {
    let Some(printer) = lab.printers.get(index).cloned() else {
        return;
    };
    loop {
        let current = current_job(&lab, &printer.name);
        printer.check(current.as_ref().map(|j| j.order_id)).await;
        match current {
            Some(job) => follow(&lab, &printer, job).await,
            None if printer.is_working() => match lab.take_next(&printer.name).await {
                Ok(Some(job)) => {
                    produce(&lab, &printer, job).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(printer = %printer.name, "cannot read the queue: {e}"),
            },
            None => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = lab.work.notified() => {}
        }
    }
}

fn current_job(lab: &Lab, printer: &str) -> Option<LabJob> {
    let jobs = lab.active_jobs().ok()?;
    jobs.into_iter()
        .find(|j| matches!(&j.status, JobStatus::Printing { printer: p, .. } if p == printer))
}

/// Checks on a job the printer has.
async fn follow(lab: &Lab, printer: &Printer, job: LabJob) {
    let order_id = job.order_id;
    let JobStatus::Printing { output, .. } = &job.status else {
        return;
    };
    match (output, &printer.kind) {
        // Taken but never sent (the lab stopped while rendering): start it again.
        (None, _) => lab.requeue(order_id, &printer.name).await,
        (Some(Output::Folder(dir)), _) => {
            if !dir.exists() {
                if let Err(e) = lab.mark_printed(order_id, &printer.name).await {
                    tracing::error!(%order_id, "cannot record the prints: {e}");
                }
            }
        }
        (Some(Output::IppJob(id)), Kind::Ipp(client)) => match client.job_state(*id).await {
            Ok((ipp::JobState::Completed, _)) => {
                if let Err(e) = lab.mark_printed(order_id, &printer.name).await {
                    tracing::error!(%order_id, "cannot record the prints: {e}");
                }
            }
            Ok((state, reasons)) if state.is_final() || state == ipp::JobState::Stopped => {
                // CUPS stops a job its filters failed on (and keeps it): take it off
                // the printer, the operator decides.
                if state == ipp::JobState::Stopped {
                    let _ = client.cancel_job(*id).await;
                }
                lab.fail(
                    order_id,
                    &printer.name,
                    format!(
                        "the printer ended job {id} {state:?} ({})",
                        reasons.join(", ")
                    ),
                )
                .await
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%order_id, printer = %printer.name, "job {id}: {e}"),
        },
        (Some(Output::IppJob(_)), Kind::HotFolder(_)) => {
            lab.fail(
                order_id,
                &printer.name,
                "the printer was reconfigured".into(),
            )
            .await
        }
    }
}

/// Renders a job and sends it to the printer.
async fn produce(lab: &Lab, printer: &Printer, job: LabJob) {
    let order_id = job.order_id;
    printer.set(true, format!("rendering {order_id}"), Some(order_id));
    let prints = match render_job(lab, &job).await {
        Ok(p) => p,
        Err(reason) => {
            lab.reject_after_intake(order_id, reason).await;
            return;
        }
    };
    let sent = match &printer.kind {
        Kind::HotFolder(root) => {
            let root = root.clone();
            let name = if job.reprints == 0 {
                order_id.to_string()
            } else {
                format!("{order_id}-R{}", job.reprints)
            };
            let created = lab.now_local();
            tokio::task::spawn_blocking(move || {
                crate::hotfolder::deliver(&root, &name, &prints, created)
                    .map(Output::Folder)
                    .map_err(|e| format!("cannot write to the hot folder: {e}"))
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        }
        Kind::Ipp(client) => match job_pdf(&prints) {
            Ok(pdf) => client
                .print_job(&order_id.to_string(), "application/pdf", &pdf)
                .await
                .map(Output::IppJob)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        },
    };
    match sent {
        Ok(output) => {
            tracing::info!(%order_id, printer = %printer.name, ?output, "sent to the printer");
            let r = lab
                .update(order_id, |j| {
                    if let JobStatus::Printing {
                        printer: p,
                        output: o,
                        ..
                    } = &mut j.status
                    {
                        if *p == printer.name {
                            *o = Some(output.clone());
                        }
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = r {
                tracing::error!(%order_id, "cannot record where the job went: {e}");
            }
            printer.set(true, format!("printing {order_id}"), Some(order_id));
        }
        Err(e) => {
            printer.set(false, e, None);
            lab.requeue(order_id, &printer.name).await;
        }
    }
}

/// Every print of a job, rendered, with the index print last. `Err` is a reason the
/// job cannot be printed at all.
async fn render_job(lab: &Lab, job: &LabJob) -> Result<Vec<FolderPrint>, String> {
    let mut prints = Vec::with_capacity(job.lines.len() + 1);
    let mut thumbs = Vec::with_capacity(job.lines.len());
    for (i, line) in job.lines.iter().enumerate() {
        let bytes = lab
            .node
            .blobs
            .read(&line.blob)
            .await
            .map_err(|e| format!("{}: the image is gone from the lab: {e}", line.file_name))?;
        let spec = PrintSpec {
            size: line.size,
            fit: line.fit,
            back_print: format!("{} #{}", job.order_id, i + 1),
        };
        let file = line.file_name.clone();
        let (print, thumb) = tokio::task::spawn_blocking(move || {
            let photo = render::decode_upright(&bytes)?;
            let canvas = render::compose(&photo, &spec, Resampler::Fast)?;
            let jpeg = render::encode(&canvas, &spec.back_print)?;
            let thumb = image::imageops::thumbnail(
                &photo,
                INDEX_THUMB.min(photo.width()),
                (u64::from(photo.height()) * u64::from(INDEX_THUMB.min(photo.width()))
                    / u64::from(photo.width().max(1)))
                .max(1) as u32,
            );
            Ok::<_, render::RenderError>((
                FolderPrint {
                    kind: PrintKind::Sized(spec.size),
                    quantity: 0,
                    back_print: spec.back_print,
                    jpeg,
                },
                thumb,
            ))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{file} cannot be printed: {e}"))?;
        prints.push(FolderPrint {
            quantity: line.quantity,
            ..print
        });
        thumbs.push(thumb);
    }
    let back_print = job.order_id.to_string();
    let index = tokio::task::spawn_blocking(move || {
        render::index_print(&thumbs).and_then(|sheet| render::encode(&sheet, &back_print))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("index print: {e}"))?;
    prints.push(FolderPrint {
        kind: PrintKind::Index,
        quantity: 1,
        back_print: job.order_id.to_string(),
        jpeg: index,
    });
    Ok(prints)
}

/// The job as one PDF: each print as many times as ordered, then the index print.
pub fn job_pdf(prints: &[FolderPrint]) -> Result<Vec<u8>, String> {
    use crate::pdf::{PdfImage, PdfPage};
    let mut images = Vec::with_capacity(prints.len());
    let mut pages = Vec::new();
    for (i, p) in prints.iter().enumerate() {
        let (w, h) = jpeg_size(&p.jpeg)?;
        images.push(PdfImage {
            jpeg: &p.jpeg,
            width: w,
            height: h,
        });
        let size = match p.kind {
            PrintKind::Sized(s) => s,
            PrintKind::Index => printmesh_protocol::pricing::PrintSize::L,
        };
        let (short, long) = size.paper_mm10();
        let (short, long) = (f64::from(short) / 10.0, f64::from(long) / 10.0);
        let (width_mm, height_mm) = if w > h { (long, short) } else { (short, long) };
        for _ in 0..p.quantity.max(1) {
            pages.push(PdfPage {
                image: i,
                width_mm,
                height_mm,
            });
        }
    }
    crate::pdf::write(&images, &pages)
}

fn jpeg_size(jpeg: &[u8]) -> Result<(u32, u32), String> {
    image::ImageReader::with_format(std::io::Cursor::new(jpeg), image::ImageFormat::Jpeg)
        .into_dimensions()
        .map_err(|e| format!("a rendered print does not read back: {e}"))
}
