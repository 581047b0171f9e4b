//! Reconciliation reports: what each party of a settlement recorded for one day (the
//! acquirer's batch date), as a terminal table or as CSV. The three reports of a day
//! agree to the yen: what the acquirer paid is what the intermediary received, which is
//! its commission plus the print fees it paid the labs, which is what the labs received.
//!
//! Here is the shape every report shares; each settling role builds its own (`report`
//! in its folder).

use chrono::NaiveDate;
use printmesh_protocol::money::{Currency, Money};
use unicode_width::UnicodeWidthStr;

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

pub fn money_text(m: Money) -> String {
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

pub fn sum(items: impl IntoIterator<Item = Money>, currency: Currency) -> Money {
    items.into_iter().fold(Money::new(0, currency), |acc, m| {
        acc.checked_add(m).unwrap_or(acc)
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
