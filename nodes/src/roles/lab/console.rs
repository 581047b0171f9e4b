//! `printmesh lab --config F console`: the operator's screen. It talks to the running
//! lab through its admin socket (the same one `lab ship` uses): every second it asks
//! for the status, and each key is one command.
//!
//! Keys: ↑/↓ choose an order; `p` mark printed; `r` print again (asks `y`); `s` hand
//! the chosen order to the courier; `a` hand every printed order over; `q` quits.

use std::path::Path;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind};
use printmesh_protocol::OrderId;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use serde::{Deserialize, Serialize};

use super::LabCommand;
use super::{JobStatus, LabJob};
use crate::node::{admin_call, AdminRequest};

/// One printer as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrinterView {
    pub name: String,
    /// `hot folder` or `IPP`.
    pub kind: String,
    /// The folder or the printer's address.
    pub target: String,
    pub prints_per_hour: u32,
    /// What the printer last said of itself.
    pub state: String,
    /// Can take a job now.
    pub working: bool,
    pub job: Option<String>,
}

/// One job as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    pub order_id: String,
    pub store: String,
    pub prints: u32,
    pub status: String,
    /// The printer that has it, or why it failed.
    pub detail: String,
    pub ship_date: String,
    pub delivery_date: String,
    /// Why the promised date is at risk, if it is.
    pub at_risk: Option<String>,
    /// The first promise, when the date slipped.
    pub slipped_from: Option<String>,
    pub reprints: u32,
}

impl JobView {
    pub fn of(job: &LabJob, at_risk: Option<String>) -> JobView {
        let detail = match &job.status {
            JobStatus::Printing {
                printer, output, ..
            } => match output {
                None => format!("{printer}: rendering"),
                Some(_) => printer.clone(),
            },
            JobStatus::Failed { printer, reason } => format!("{printer}: {reason}"),
            JobStatus::Rejected { reason } => reason.clone(),
            _ => String::new(),
        };
        JobView {
            order_id: job.order_id.to_string(),
            store: job.store.to_string(),
            prints: job.prints(),
            status: job.status.label().to_string(),
            detail,
            ship_date: job.promise.ship_date.format("%m-%d").to_string(),
            delivery_date: job.promise.delivery_date.format("%m-%d").to_string(),
            at_risk,
            slipped_from: job.slipped_from.map(|d| d.format("%m-%d").to_string()),
            reprints: job.reprints,
        }
    }
}

/// Everything the console shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabStatus {
    pub lab: String,
    pub now_local: String,
    pub printers: Vec<PrinterView>,
    /// Jobs not yet shipped, in queue order.
    pub jobs: Vec<JobView>,
    pub made_today: u32,
    pub made_this_hour: u32,
    pub capacity_today: u32,
}

/// The console's own state: the last status, the cursor, the last answer.
#[derive(Default)]
pub struct Console {
    pub status: Option<LabStatus>,
    pub selected: usize,
    pub message: String,
    /// `r` was pressed on this order: `y` confirms.
    pub confirm_reprint: Option<OrderId>,
    pub quit: bool,
}

impl Console {
    fn selected_order(&self) -> Option<OrderId> {
        self.status
            .as_ref()?
            .jobs
            .get(self.selected)?
            .order_id
            .parse()
            .ok()
    }

    pub fn set_status(&mut self, status: LabStatus) {
        self.selected = self.selected.min(status.jobs.len().saturating_sub(1));
        self.status = Some(status);
    }

    /// A key: moves the cursor or returns the command to send.
    pub fn key(&mut self, code: KeyCode) -> Option<LabCommand> {
        if let Some(order_id) = self.confirm_reprint.take() {
            if matches!(code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                return Some(LabCommand::Reprint { order_id });
            }
            self.message = "not printed again".into();
            return None;
        }
        let jobs = self.status.as_ref().map(|s| s.jobs.len()).unwrap_or(0);
        match code {
            KeyCode::Char('q') | KeyCode::Esc => {
                self.quit = true;
                None
            }
            KeyCode::Up => {
                self.selected = self.selected.saturating_sub(1);
                None
            }
            KeyCode::Down => {
                self.selected = (self.selected + 1).min(jobs.saturating_sub(1));
                None
            }
            KeyCode::Char('p') => self
                .selected_order()
                .map(|order_id| LabCommand::MarkPrinted { order_id }),
            KeyCode::Char('s') => self
                .selected_order()
                .map(|order_id| LabCommand::Ship { order_id }),
            KeyCode::Char('a') => Some(LabCommand::ShipAllPrinted),
            KeyCode::Char('r') => {
                if let Some(id) = self.selected_order() {
                    self.confirm_reprint = Some(id);
                    self.message = format!("print {id} again? y / n");
                }
                None
            }
            _ => None,
        }
    }
}

/// Draws the console.
pub fn draw(frame: &mut Frame<'_>, console: &Console) {
    let area = frame.area();
    let Some(status) = &console.status else {
        frame.render_widget(
            Paragraph::new(console.message.as_str()).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" printmesh lab "),
            ),
            area,
        );
        return;
    };
    let printers_h = u16::try_from(status.printers.len().max(1)).unwrap_or(1) + 2;
    let [head, printers, jobs, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(printers_h),
        Constraint::Min(4),
        Constraint::Length(2),
    ])
    .areas(area);
    let risky = status.jobs.iter().filter(|j| j.at_risk.is_some()).count();
    let count = |s: &str| status.jobs.iter().filter(|j| j.status == s).count();
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                format!(" {} ", status.lab),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                " {}  queued {}  printing {}  ready {}  made today {}/{} ({} this hour)  ",
                status.now_local,
                count("queued"),
                count("printing"),
                count("printed"),
                status.made_today,
                status.capacity_today,
                status.made_this_hour
            )),
            Span::styled(
                format!("at risk {risky}"),
                if risky > 0 {
                    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
                } else {
                    Style::default()
                },
            ),
        ])),
        head,
    );
    let printer_rows: Vec<Row<'_>> = if status.printers.is_empty() {
        vec![Row::new(vec![Cell::from(
            "no printers: prints are made by hand (p marks them printed)",
        )])]
    } else {
        status
            .printers
            .iter()
            .map(|p| {
                let style = if p.working {
                    Style::default()
                } else {
                    Style::default().fg(Color::Red)
                };
                Row::new(vec![
                    Cell::from(p.name.clone()),
                    Cell::from(format!("{} {}", p.kind, p.target)),
                    Cell::from(format!("{}/h", p.prints_per_hour)),
                    Cell::from(p.state.clone()),
                ])
                .style(style)
            })
            .collect()
    };
    frame.render_widget(
        Table::new(
            printer_rows,
            [
                Constraint::Length(12),
                Constraint::Percentage(40),
                Constraint::Length(7),
                Constraint::Fill(1),
            ],
        )
        .block(Block::default().borders(Borders::ALL).title(" printers ")),
        printers,
    );
    let rows: Vec<Row<'_>> = status
        .jobs
        .iter()
        .enumerate()
        .map(|(i, j)| {
            let mut style = match j.status.as_str() {
                "failed" => Style::default().fg(Color::Red),
                "printed" => Style::default().fg(Color::Green),
                _ => Style::default(),
            };
            if j.at_risk.is_some() {
                style = style.fg(Color::Red).add_modifier(Modifier::BOLD);
            }
            if i == console.selected {
                style = style.add_modifier(Modifier::REVERSED);
            }
            let mut due = format!("{} → {}", j.ship_date, j.delivery_date);
            if let Some(was) = &j.slipped_from {
                due.push_str(&format!(" (was {was})"));
            }
            let note = match (&j.at_risk, j.detail.is_empty()) {
                (Some(why), _) => format!("AT RISK: {why}"),
                (None, false) => j.detail.clone(),
                (None, true) if j.reprints > 0 => format!("reprint {}", j.reprints),
                _ => String::new(),
            };
            Row::new(vec![
                Cell::from(j.order_id.clone()),
                Cell::from(j.store.clone()),
                Cell::from(j.prints.to_string()),
                Cell::from(j.status.clone()),
                Cell::from(due),
                Cell::from(note),
            ])
            .style(style)
        })
        .collect();
    let empty = rows.is_empty();
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(26),
                Constraint::Length(18),
                Constraint::Length(6),
                Constraint::Length(9),
                Constraint::Length(22),
                Constraint::Fill(1),
            ],
        )
        .header(
            Row::new(vec![
                "order",
                "store",
                "prints",
                "status",
                "ship → store",
                "",
            ])
            .style(Style::default().add_modifier(Modifier::UNDERLINED)),
        )
        .block(Block::default().borders(Borders::ALL).title(if empty {
            " queue: empty "
        } else {
            " queue "
        })),
        jobs,
    );
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(console.message.as_str()),
            Line::from(
                "↑↓ choose  p printed  r print again  s to courier  a all printed to courier  q quit",
            )
            .style(Style::default().fg(Color::DarkGray)),
        ]),
        foot,
    );
}

/// Runs the console against the lab whose data directory is `data_dir`.
pub fn run(data_dir: &Path) -> std::io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = run_in(&mut terminal, data_dir);
    ratatui::try_restore()?;
    result
}

fn ask(data_dir: &Path, command: &LabCommand) -> Result<String, String> {
    match admin_call(data_dir, &AdminRequest::role(command)) {
        Ok(Some(r)) if r.ok => Ok(r.text),
        Ok(Some(r)) => Err(r.text),
        Ok(None) => Err("the lab is not running (no admin socket)".into()),
        Err(e) => Err(format!("cannot reach the lab: {e}")),
    }
}

fn run_in(terminal: &mut ratatui::DefaultTerminal, data_dir: &Path) -> std::io::Result<()> {
    let mut console = Console {
        message: "connecting to the lab…".into(),
        ..Console::default()
    };
    let mut last = None::<Instant>;
    while !console.quit {
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            match ask(data_dir, &LabCommand::LabStatus)
                .and_then(|t| serde_json::from_str::<LabStatus>(&t).map_err(|e| e.to_string()))
            {
                Ok(s) => {
                    if console.status.is_none() {
                        console.message.clear();
                    }
                    console.set_status(s);
                }
                Err(e) => {
                    console.status = None;
                    console.message = e;
                }
            }
            last = Some(Instant::now());
        }
        terminal.draw(|f| draw(f, &console))?;
        if event::poll(Duration::from_millis(200))? {
            if let Event::Key(k) = event::read()? {
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                if let Some(request) = console.key(k.code) {
                    console.message = match ask(data_dir, &request) {
                        Ok(text) => text.lines().last().unwrap_or("done").to_string(),
                        Err(e) => format!("not done: {e}"),
                    };
                    last = None;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn status() -> LabStatus {
        let job = |id: u64, status: &str, risk: Option<&str>| JobView {
            order_id: OrderId::from_parts(1_764_000_000_000 + id, 1).to_string(),
            store: "store-1".into(),
            prints: 3,
            status: status.into(),
            detail: if status == "failed" {
                "minilab-1: paper jam".into()
            } else {
                String::new()
            },
            ship_date: "11-27".into(),
            delivery_date: "11-28".into(),
            at_risk: risk.map(str::to_string),
            slipped_from: None,
            reprints: 0,
        };
        LabStatus {
            lab: "Lab One".into(),
            now_local: "2026-11-25 10:00".into(),
            printers: vec![PrinterView {
                name: "minilab-1".into(),
                kind: "IPP".into(),
                target: "ipp://127.0.0.1:631/printers/PDF".into(),
                prints_per_hour: 1800,
                state: "stopped (media-empty)".into(),
                working: false,
                job: None,
            }],
            jobs: vec![
                job(1, "printing", None),
                job(2, "failed", Some("print failed: paper jam")),
                job(3, "printed", None),
            ],
            made_today: 42,
            made_this_hour: 6,
            capacity_today: 16_200,
        }
    }

    fn screen(console: &Console) -> String {
        let mut t = Terminal::new(TestBackend::new(120, 20)).unwrap();
        t.draw(|f| draw(f, console)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn shows_queue_printers_throughput_and_what_is_at_risk() {
        let mut c = Console::default();
        c.set_status(status());
        let s = screen(&c);
        assert!(s.contains("Lab One"), "{s}");
        assert!(s.contains("made today 42/16200 (6 this hour)"), "{s}");
        assert!(s.contains("at risk 1"), "{s}");
        assert!(s.contains("stopped (media-empty)"), "{s}");
        assert!(s.contains("AT RISK: print failed: paper jam"), "{s}");
        assert!(s.contains("printed"), "{s}");
        assert!(s.contains("11-27 → 11-28"), "{s}");
    }

    #[test]
    fn keys_become_commands_on_the_chosen_order() {
        let mut c = Console::default();
        c.set_status(status());
        let ids: Vec<OrderId> = status()
            .jobs
            .iter()
            .map(|j| j.order_id.parse().unwrap())
            .collect();
        assert_eq!(
            c.key(KeyCode::Char('p')),
            Some(LabCommand::MarkPrinted { order_id: ids[0] })
        );
        c.key(KeyCode::Down);
        c.key(KeyCode::Down);
        c.key(KeyCode::Down); // stays on the last
        assert_eq!(
            c.key(KeyCode::Char('s')),
            Some(LabCommand::Ship { order_id: ids[2] })
        );
        c.key(KeyCode::Up);
        assert_eq!(c.key(KeyCode::Char('r')), None);
        assert!(c.message.contains("again? y / n"));
        assert_eq!(
            c.key(KeyCode::Char('y')),
            Some(LabCommand::Reprint { order_id: ids[1] })
        );
        assert_eq!(c.key(KeyCode::Char('r')), None);
        assert_eq!(c.key(KeyCode::Char('n')), None);
        assert_eq!(c.message, "not printed again");
        assert_eq!(c.key(KeyCode::Char('a')), Some(LabCommand::ShipAllPrinted));
        c.key(KeyCode::Char('q'));
        assert!(c.quit);
        // Fewer jobs than the cursor: it moves up to the last.
        let mut shorter = status();
        shorter.jobs.truncate(1);
        c.selected = 2;
        c.set_status(shorter);
        assert_eq!(c.selected, 0);
    }
}
