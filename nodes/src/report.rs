//! Reconciliation reports: what each party of a settlement recorded for one day (the
//! acquirer's batch date), as a terminal table or as CSV. The three reports of a day
//! agree to the yen: what the acquirer paid is what the intermediary received, which is
//! its commission plus the print fees it paid the labs, which is what the labs received.

use chrono::NaiveDate;
use printmesh_protocol::money::{Currency, Money};
use unicode_width::UnicodeWidthStr;

use crate::roles::acquirer::{AuthRecord, Batch, CardRecord, HoldState};
use crate::roles::intermediary::RoutedOrder;
use crate::roles::lab::LabJob;
use crate::store::{Db, StoreError, Tree};

/// One table of a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub title: String,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// A party's report for one day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub party: String,
    pub date: NaiveDate,
    pub tables: Vec<Table>,
    /// Named totals in minor units.
    pub totals: Vec<(String, Money)>,
}

fn money_text(m: Money) -> String {
    let d = m.currency().decimals();
    let minor = m.amount_minor();
    if d == 0 {
        return format!("{minor}");
    }
    let unit = 10u64.pow(d);
    let abs = minor.unsigned_abs();
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}.{:0w$}", abs / unit, abs % unit, w = d as usize)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Report {
    pub fn total(&self, name: &str) -> Option<Money> {
        self.totals.iter().find(|(n, _)| n == name).map(|(_, m)| *m)
    }

    pub fn render(&self, csv: bool) -> String {
        if csv {
            return self.csv();
        }
        let mut out = format!("{} — settlement of {}\n", self.party, self.date);
        for t in &self.tables {
            out.push('\n');
            out.push_str(&format!("{}\n", t.title));
            let mut widths: Vec<usize> = t.columns.iter().map(|c| c.width()).collect();
            for row in &t.rows {
                for (i, cell) in row.iter().enumerate() {
                    if let Some(w) = widths.get_mut(i) {
                        *w = (*w).max(cell.width());
                    }
                }
            }
            let line = |cells: Vec<&str>| {
                let mut l = String::new();
                for (i, c) in cells.iter().enumerate() {
                    let w = widths.get(i).copied().unwrap_or(0);
                    let pad = " ".repeat(w.saturating_sub(c.width()));
                    // Amounts (the last column) align right.
                    if i + 1 == cells.len() {
                        l.push_str(&format!("{pad}{c}"));
                    } else {
                        l.push_str(&format!("{c}{pad}  "));
                    }
                }
                l.trim_end().to_string()
            };
            out.push_str(&line(t.columns.clone()));
            out.push('\n');
            let total_w: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
            out.push_str(&"-".repeat(total_w));
            out.push('\n');
            for row in &t.rows {
                out.push_str(&line(row.iter().map(String::as_str).collect()));
                out.push('\n');
            }
            if t.rows.is_empty() {
                out.push_str("(none)\n");
            }
        }
        out.push('\n');
        for (name, m) in &self.totals {
            out.push_str(&format!(
                "{name}: {} {}\n",
                m.currency().code(),
                money_text(*m)
            ));
        }
        out
    }

    fn csv(&self) -> String {
        let mut out = String::new();
        for t in &self.tables {
            out.push_str(&format!("# {}\n", t.title));
            out.push_str(
                &t.columns
                    .iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
            for row in &t.rows {
                out.push_str(
                    &row.iter()
                        .map(|c| csv_field(c))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                out.push('\n');
            }
            out.push('\n');
        }
        out.push_str("# totals\ntotal,currency,amount_minor\n");
        for (name, m) in &self.totals {
            out.push_str(&format!(
                "{},{},{}\n",
                csv_field(name),
                m.currency().code(),
                m.amount_minor()
            ));
        }
        out
    }
}

fn sum(items: impl IntoIterator<Item = Money>, currency: Currency) -> Money {
    items.into_iter().fold(Money::new(0, currency), |acc, m| {
        acc.checked_add(m).unwrap_or(acc)
    })
}

/// The acquirer: what it paid each intermediary that day, and each card's statement of
/// the charges settled.
pub fn acquirer(db: &Db, date: NaiveDate) -> Result<Report, StoreError> {
    let batches: Tree<Batch> = db.tree("batches")?;
    let auths: Tree<AuthRecord> = db.tree("auths")?;
    let cards: Tree<CardRecord> = db.tree("cards")?;
    let mut paid = Vec::new();
    let mut statements: std::collections::BTreeMap<String, Vec<Vec<String>>> = Default::default();
    let mut currency = Currency::Jpy;
    let mut payments = Vec::new();
    for (_, b) in batches.entries().filter_map(Result::ok) {
        if b.id.date != date {
            continue;
        }
        currency = b.total.currency();
        payments.push(b.total);
        for line in &b.lines {
            let Some(r) = auths.get(line.order_id.to_bytes())? else {
                continue;
            };
            let kind = r.kind.map(|k| k.name()).unwrap_or("-");
            let card = format!("{} **** {}", r.brand, r.last4);
            paid.push(vec![
                b.id.to_string(),
                line.order_id.to_string(),
                card.clone(),
                kind.to_string(),
                money_text(line.amount),
            ]);
            let unit = match r.token.and_then(|t| cards.get(t).ok().flatten()) {
                Some(c) if c.unit == printmesh_protocol::ledger::Unit::Points => {
                    format!("{} PTS", r.held)
                }
                _ => money_text(r.amount),
            };
            let captured = r
                .captured_at_ms
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            statements.entry(card).or_default().push(vec![
                line.order_id.to_string(),
                captured,
                r.store.to_string(),
                unit,
            ]);
        }
    }
    let mut statement_rows = Vec::new();
    for (card, rows) in statements {
        for mut row in rows {
            row.insert(0, card.clone());
            statement_rows.push(row);
        }
    }
    // Holds still open, for the operator's eye.
    let open = auths
        .entries()
        .filter_map(Result::ok)
        .filter(|(_, r)| r.hold == HoldState::Held)
        .count();
    let captured_unpaid: Vec<Money> = auths
        .entries()
        .filter_map(Result::ok)
        .filter(|(_, r)| r.hold == HoldState::Captured && r.settled.is_none())
        .map(|(_, r)| r.amount)
        .collect();
    Ok(Report {
        party: "acquirer".into(),
        date,
        tables: vec![
            Table {
                title: "Paid to intermediaries".into(),
                columns: vec!["batch", "order", "card", "kind", "amount"],
                rows: paid,
            },
            Table {
                title: format!("Card statements (charges settled; holds still open: {open})"),
                columns: vec!["card", "order", "captured", "store", "charged"],
                rows: statement_rows,
            },
        ],
        totals: vec![
            ("paid to intermediaries".into(), sum(payments, currency)),
            (
                "captured not yet settled".into(),
                sum(captured_unpaid, currency),
            ),
        ],
    })
}

/// The intermediary: what the acquirer paid it that day, its commission, and the
/// print fees it paid each lab.
pub fn intermediary(db: &Db, date: NaiveDate) -> Result<Report, StoreError> {
    let orders: Tree<RoutedOrder> = db.tree("orders")?;
    let mut rows = Vec::new();
    let mut currency = Currency::Jpy;
    let (mut received, mut commission, mut fees, mut unpaid_fees) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (_, o) in orders.entries().filter_map(Result::ok) {
        let Some(s) = &o.settlement else { continue };
        if s.batch.date != date {
            continue;
        }
        currency = s.received.currency();
        received.push(s.received);
        commission.push(s.commission);
        fees.push(s.lab_fee);
        if !s.lab_paid {
            unpaid_fees.push(s.lab_fee);
        }
        rows.push(vec![
            s.batch.to_string(),
            o.order_id.to_string(),
            o.store.to_string(),
            o.lab_name.clone().unwrap_or_default(),
            if s.lab_paid {
                "paid".into()
            } else {
                "due".into()
            },
            money_text(s.commission),
            money_text(s.lab_fee),
            money_text(s.received),
        ]);
    }
    Ok(Report {
        party: "intermediary".into(),
        date,
        tables: vec![Table {
            title: "Received from the acquirer, kept, and paid to labs".into(),
            columns: vec![
                "batch",
                "order",
                "store",
                "lab",
                "fee paid?",
                "commission",
                "print fee",
                "received",
            ],
            rows,
        }],
        totals: vec![
            ("received from the acquirer".into(), sum(received, currency)),
            ("commission kept".into(), sum(commission, currency)),
            ("print fees to labs".into(), sum(fees, currency)),
            ("print fees not yet paid".into(), sum(unpaid_fees, currency)),
        ],
    })
}

/// A lab: the print fees the intermediary paid it that day.
pub fn lab(db: &Db, date: NaiveDate) -> Result<Report, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_csv_quotes() {
        let r = Report {
            party: "lab".into(),
            date: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
            tables: vec![Table {
                title: "Fees".into(),
                columns: vec!["order", "fee"],
                rows: vec![
                    vec!["A".into(), "90".into()],
                    vec!["B,\"x\"".into(), "1200".into()],
                ],
            }],
            totals: vec![("fees".into(), Money::new(1290, Currency::Jpy))],
        };
        let text = r.render(false);
        assert!(text.contains("order   fee\n"), "{text}");
        assert!(text.contains("A        90\nB,\"x\"  1200\n"), "{text}");
        assert!(text.contains("fees: JPY 1290"), "{text}");
        let csv = r.render(true);
        assert!(csv.contains("\"B,\"\"x\"\"\",1200"), "{csv}");
        assert!(csv.contains("fees,JPY,1290"), "{csv}");
        assert_eq!(money_text(Money::new(-1234, Currency::Usd)), "-12.34");
        assert_eq!(money_text(Money::new(-5, Currency::Usd)), "-0.05");
    }
}
