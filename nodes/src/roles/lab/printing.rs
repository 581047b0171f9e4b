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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use printmesh_protocol::OrderId;
use serde::{Deserialize, Serialize};

use super::{JobStatus, Lab, LabJob, PrinterView};
use crate::config::{LabPrinterConfig, PrinterOutput};
use crate::roles::lab::hotfolder::{FolderPrint, Jpeg, PrintKind};
use crate::roles::lab::ipp;
use crate::roles::lab::render::{self, PrintSpec, Resampler};
use printmesh_runtime::role::Stopping;

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
                // Created once, at start; afterwards a missing folder is an error.
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    tracing::warn!("hot folder {}: {e}", dir.display());
                }
                let t = dir.display().to_string();
                (Kind::HotFolder(dir), "hot folder", t)
            }
            PrinterOutput::Ipp(uri) => {
                // Jobs go in as the system user the lab runs as, as `lp`'s do (see
                // `ipp::system_user_name`); the lab's name if there is none.
                let user: String = ipp::system_user_name().unwrap_or_else(|| {
                    lab_name
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                        .collect()
                });
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
            // Never created here: an unmounted share must not become an empty local
            // folder that looks like a working printer.
            Kind::HotFolder(dir) => match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => (true, "ready".to_string()),
                Ok(_) => (false, "the hot folder is not a folder".to_string()),
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

    /// The printer's name as a file-name part.
    fn name_for_files(&self) -> String {
        self.name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect()
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

/// One printer's loop, until the node stops (a print being made is finished first:
/// the job it belongs to is followed again after a restart).
pub async fn run(lab: Arc<Lab>, index: usize, mut stopping: Stopping) {
    let Some(printer) = lab.printers.get(index).cloned() else {
        return;
    };
    while !stopping.is_set() {
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
            _ = stopping.wait() => {}
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
        // Taken but not recorded as sent: the lab stopped while rendering or sending.
        // If the printer has it after all, follow that (no second print); otherwise
        // start it again.
        (None, Kind::HotFolder(root)) => match root.join(output_name(&job)).try_exists() {
            Ok(true) => {
                let out = Output::Folder(root.join(output_name(&job)));
                lab.record_output(order_id, &printer.name, &out).await;
            }
            Ok(false) => lab.requeue(order_id, &printer.name).await,
            Err(_) => {}
        },
        (None, Kind::Ipp(client)) => match client.find_jobs(&output_name(&job)).await {
            Ok(jobs) => {
                let sent = jobs
                    .iter()
                    .filter(|(_, s)| !matches!(s, ipp::JobState::Canceled | ipp::JobState::Aborted))
                    .map(|(id, _)| *id)
                    .max();
                match sent {
                    Some(id) => {
                        tracing::info!(%order_id, job = id, "the printer had it already");
                        lab.record_output(order_id, &printer.name, &Output::IppJob(id))
                            .await;
                    }
                    None => lab.requeue(order_id, &printer.name).await,
                }
            }
            Err(e) => {
                tracing::warn!(%order_id, printer = %printer.name, "cannot list its jobs: {e}")
            }
        },
        (Some(out @ Output::Folder(dir)), _) => match dir.try_exists() {
            // The controller took the order away: it has printed it.
            Ok(false) => lab.printer_done(order_id, &printer.name, out).await,
            Ok(true) => {}
            // An unmounted share or a permission error says nothing about the prints.
            Err(e) => printer.set(
                false,
                format!("cannot see the hot folder: {e}"),
                Some(order_id),
            ),
        },
        (Some(out @ Output::IppJob(id)), Kind::Ipp(client)) => match client.job_state(*id).await {
            Ok((ipp::JobState::Completed, _)) => {
                lab.printer_done(order_id, &printer.name, out).await
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
            // The printer no longer knows the job (its history purged, or another
            // printer at that address): nobody can say it printed.
            Err(ipp::IppError::Status { code, .. }) if code == ipp::NOT_FOUND => {
                lab.fail(
                    order_id,
                    &printer.name,
                    format!("the printer no longer knows job {id}"),
                )
                .await
            }
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
    let spool = lab.node.config.data_dir.join("spool").join(format!(
        "{order_id}-{}-{}",
        job.reprints,
        printer.name_for_files()
    ));
    let sent = send(lab, printer, &job, &spool).await;
    // The printer or the hot folder has its own copy now (or nothing was sent).
    if let Err(e) = std::fs::remove_dir_all(&spool) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("spool {}: {e}", spool.display());
        }
    }
    let sent = match sent {
        Ok(out) => Ok(out),
        Err(RenderFailure::Unprintable(reason)) => {
            lab.reject_after_intake(order_id, &printer.name, reason)
                .await;
            return;
        }
        Err(RenderFailure::Trouble(reason)) => {
            lab.fail(order_id, &printer.name, reason).await;
            return;
        }
        Err(RenderFailure::Output(e)) => Err(e),
    };
    match sent {
        Ok(output) => {
            tracing::info!(%order_id, printer = %printer.name, ?output, "sent to the printer");
            if lab.record_output(order_id, &printer.name, &output).await {
                printer.set(true, format!("printing {order_id}"), Some(order_id));
            } else {
                // The operator moved it meanwhile (reprint, marked printed).
                tracing::warn!(%order_id, "taking the output back");
                printer.cancel(&output).await;
            }
        }
        Err(e) => {
            printer.set(false, e, None);
            lab.requeue(order_id, &printer.name).await;
        }
    }
}

/// What the job is called at the printer: its folder in the hot folder, its job name
/// at an IPP printer. A reprint has its own.
fn output_name(job: &LabJob) -> String {
    if job.reprints == 0 {
        job.order_id.to_string()
    } else {
        format!("{}-R{}", job.order_id, job.reprints)
    }
}

/// Renders the job into the spool and sends it to the printer.
async fn send(
    lab: &Lab,
    printer: &Printer,
    job: &LabJob,
    spool: &Path,
) -> Result<Output, RenderFailure> {
    let prints = render_job(lab, job, spool).await?;
    match &printer.kind {
        Kind::HotFolder(root) => {
            let root = root.clone();
            let name = output_name(job);
            let created = lab.now_local();
            tokio::task::spawn_blocking(move || {
                crate::roles::lab::hotfolder::deliver(&root, &name, &prints, created)
                    .map(Output::Folder)
                    .map_err(|e| format!("cannot write to the hot folder: {e}"))
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
            .map_err(RenderFailure::Output)
        }
        Kind::Ipp(client) => {
            let pdf = spool.join("job.pdf");
            let written = std::fs::File::create(&pdf)
                .map_err(|e| e.to_string())
                .and_then(|f| write_job_pdf(&prints, std::io::BufWriter::new(f)));
            written.map_err(|e| RenderFailure::Trouble(format!("the job's PDF: {e}")))?;
            client
                .print_file(&output_name(job), "application/pdf", &pdf)
                .await
                .map(Output::IppJob)
                .map_err(|e| RenderFailure::Output(e.to_string()))
        }
    }
}

/// Why a job did not render.
enum RenderFailure {
    /// A photo does not decode: the job can never be printed.
    Unprintable(String),
    /// The lab's own trouble (an image file it cannot read, a worker that died): the
    /// operator looks.
    Trouble(String),
    /// The printer or its folder did not take it: back in the queue.
    Output(String),
}

/// Every print of a job, rendered one at a time into `spool` (so an order of hundreds
/// of prints never sits in memory whole), with the index print last.
async fn render_job(
    lab: &Lab,
    job: &LabJob,
    spool: &Path,
) -> Result<Vec<FolderPrint>, RenderFailure> {
    let trouble = |e: String| RenderFailure::Trouble(e);
    std::fs::create_dir_all(spool)
        .map_err(|e| trouble(format!("spool {}: {e}", spool.display())))?;
    let mut prints = Vec::with_capacity(job.lines.len() + 1);
    let mut thumbs = Vec::new();
    // The index print shows at most INDEX_MAX photos, each in a cell about this wide.
    let shown = job.lines.len().min(render::INDEX_MAX);
    let cells_across = (shown as f64).sqrt().ceil().max(1.0) as u32;
    let thumb_side = (1500 / cells_across).clamp(96, INDEX_THUMB);
    for (i, line) in job.lines.iter().enumerate() {
        let bytes = lab
            .node
            .blobs
            .read(&line.blob)
            .await
            .map_err(|e| trouble(format!("{}: cannot read the image: {e}", line.file_name)))?;
        let spec = PrintSpec {
            size: line.size,
            fit: line.fit,
            back_print: format!("{} #{}", job.order_id, i + 1),
        };
        let file = line.file_name.clone();
        let path = spool.join(format!("{:04}.JPG", i + 1));
        let out = path.clone();
        let want_thumb = i < shown;
        let (written, thumb) = tokio::task::spawn_blocking(move || {
            let photo = render::decode_upright(&bytes)?;
            drop(bytes);
            let canvas = render::compose(&photo, &spec, Resampler::Fast)?;
            let jpeg = render::encode(&canvas, &spec.back_print)?;
            let thumb = want_thumb.then(|| {
                let (w, h) =
                    render::fit_size((photo.width(), photo.height()), (thumb_side, thumb_side));
                image::imageops::thumbnail(&photo, w.max(1), h.max(1))
            });
            Ok::<_, render::RenderError>((std::fs::write(&out, &jpeg), thumb))
        })
        .await
        .map_err(|e| trouble(e.to_string()))?
        .map_err(|e| RenderFailure::Unprintable(format!("{file} cannot be printed: {e}")))?;
        written.map_err(|e| trouble(format!("spool {}: {e}", path.display())))?;
        prints.push(FolderPrint {
            kind: PrintKind::Sized(line.size),
            quantity: line.quantity,
            back_print: spec_back_print(job, i),
            jpeg: Jpeg::File(path),
        });
        if let Some(t) = thumb {
            thumbs.push(t);
        }
    }
    let back_print = job.order_id.to_string();
    let index = tokio::task::spawn_blocking(move || {
        render::index_print(&thumbs).and_then(|sheet| render::encode(&sheet, &back_print))
    })
    .await
    .map_err(|e| trouble(e.to_string()))?
    .map_err(|e| trouble(format!("index print: {e}")))?;
    prints.push(FolderPrint {
        kind: PrintKind::Index,
        quantity: 1,
        back_print: job.order_id.to_string(),
        jpeg: Jpeg::Bytes(index),
    });
    Ok(prints)
}

fn spec_back_print(job: &LabJob, line: usize) -> String {
    format!("{} #{}", job.order_id, line + 1)
}

/// The job as one PDF written to `out`: each print as many times as ordered, then the
/// index print. Spooled prints are streamed from their files.
pub fn write_job_pdf(prints: &[FolderPrint], out: impl std::io::Write) -> Result<(), String> {
    use crate::roles::lab::pdf::{ImageData, PdfImage, PdfPage};
    let mut images = Vec::with_capacity(prints.len());
    let mut pages = Vec::new();
    for (i, p) in prints.iter().enumerate() {
        let (w, h, data) = match &p.jpeg {
            Jpeg::Bytes(b) => {
                let (w, h) = jpeg_size(std::io::Cursor::new(b))?;
                (w, h, ImageData::Bytes(b))
            }
            Jpeg::File(path) => {
                let f =
                    std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let (w, h) = jpeg_size(std::io::BufReader::new(f))?;
                (w, h, ImageData::File(path))
            }
        };
        images.push(PdfImage {
            data,
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
    crate::roles::lab::pdf::write_to(out, &images, &pages).map_err(|e| e.to_string())
}

/// The job as one PDF in memory (small jobs and tests).
pub fn job_pdf(prints: &[FolderPrint]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    write_job_pdf(prints, &mut out)?;
    Ok(out)
}

fn jpeg_size(jpeg: impl std::io::BufRead + std::io::Seek) -> Result<(u32, u32), String> {
    image::ImageReader::with_format(jpeg, image::ImageFormat::Jpeg)
        .into_dimensions()
        .map_err(|e| format!("a rendered print does not read back: {e}"))
}
