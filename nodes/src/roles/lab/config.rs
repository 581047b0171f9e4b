//! The lab's `[lab]` section: capacity, opening hours, holidays, printers and the
//! courier's routes to each store.

use std::path::PathBuf;

use chrono::Weekday;
use printmesh_protocol::capacity::CapacityModel;
use printmesh_protocol::StoreId;
use serde::{Deserialize, Serialize};

fn default_pickup_hour() -> u8 {
    9
}

fn default_opening_hours() -> [u8; 2] {
    [0, 24]
}

fn every_day() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| d.to_string())
        .collect()
}

fn default_review_secs() -> u64 {
    30
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    /// Prints a day, for a lab without configured printers (prints made and marked by
    /// hand). With printers, a day's capacity is their prints per hour times the
    /// opening hours.
    pub prints_per_day: Option<u32>,
    /// Jobs accepted at or after this local hour print the next day.
    pub cutoff_hour: u8,
    /// The courier's collection days for stores without their own route:
    /// `["mon", "wed", "fri"]`.
    pub courier_days: Vec<String>,
    /// Days from collection to the store, for stores without their own route.
    #[serde(default)]
    pub transit_days: u32,
    /// Local hour the courier collects (for stores without their own route).
    #[serde(default = "default_pickup_hour")]
    pub pickup_hour: u8,
    /// The lab's local time zone as an offset from UTC.
    #[serde(default)]
    pub utc_offset_hours: i8,
    /// `[open, close)` local hours the printers run.
    #[serde(default = "default_opening_hours")]
    pub opening_hours: [u8; 2],
    /// Days the lab prints.
    #[serde(default = "every_day")]
    pub open_days: Vec<String>,
    /// Dates the lab is closed: `["2026-12-31", "2027-01-01"]`.
    #[serde(default)]
    pub holidays: Vec<chrono::NaiveDate>,
    /// The printers jobs go to.
    #[serde(default)]
    pub printers: Vec<LabPrinterConfig>,
    /// Per-store courier timetables.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// How often promised dates are checked against the queue.
    #[serde(default = "default_review_secs")]
    pub review_secs: u64,
    /// A job is shipped only while its payment hold has at least this long to run (the
    /// intermediary captures when it hears of the shipment).
    #[serde(default = "default_ship_margin_secs")]
    pub ship_margin_secs: u64,
}

fn default_ship_margin_secs() -> u64 {
    3600
}

/// One printer of the lab: a minilab's hot folder or an IPP printer (a CUPS queue).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabPrinterConfig {
    pub name: String,
    pub prints_per_hour: u32,
    /// The folder the minilab controller reads orders from.
    pub hot_folder: Option<PathBuf>,
    /// `ipp://host:631/printers/NAME` (or `http://…`).
    pub ipp: Option<String>,
}

/// Where a printer's output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrinterOutput {
    HotFolder(PathBuf),
    Ipp(String),
}

impl LabPrinterConfig {
    pub fn output(&self) -> Result<PrinterOutput, String> {
        match (&self.hot_folder, &self.ipp) {
            (Some(dir), None) => Ok(PrinterOutput::HotFolder(dir.clone())),
            (None, Some(uri)) => {
                crate::roles::lab::ipp::PrinterUri::parse(uri)
                    .map_err(|e| format!("printer {:?}: {e}", self.name))?;
                Ok(PrinterOutput::Ipp(uri.clone()))
            }
            _ => Err(format!(
                "printer {:?}: give exactly one of hot_folder and ipp",
                self.name
            )),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub store: StoreId,
    pub days: Vec<String>,
    #[serde(default = "default_pickup_hour")]
    pub pickup_hour: u8,
    #[serde(default)]
    pub transit_days: u32,
}

fn weekdays(what: &str, days: &[String]) -> Result<Vec<Weekday>, String> {
    days.iter()
        .map(|d| {
            d.parse()
                .map_err(|_| format!("{what}: {d:?} is not a day of the week"))
        })
        .collect()
}

impl LabConfig {
    pub fn capacity(&self) -> Result<CapacityModel, String> {
        use printmesh_protocol::capacity::Route;
        if self.cutoff_hour > 24 {
            return Err(format!(
                "lab.cutoff_hour {} is not an hour",
                self.cutoff_hour
            ));
        }
        if !(-12..=14).contains(&self.utc_offset_hours) {
            return Err(format!(
                "lab.utc_offset_hours {} is not a time zone",
                self.utc_offset_hours
            ));
        }
        let [open_hour, close_hour] = self.opening_hours;
        if open_hour >= close_hour || close_hour > 24 {
            return Err(format!(
                "lab.opening_hours {open_hour}..{close_hour}: give [open, close] hours, open before close, close at most 24"
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut per_hour: u32 = 0;
        for p in &self.printers {
            p.output()?;
            if !names.insert(p.name.as_str()) {
                return Err(format!("two printers are called {:?}", p.name));
            }
            per_hour = per_hour.saturating_add(p.prints_per_hour);
        }
        let prints_per_day = match (self.prints_per_day, self.printers.is_empty()) {
            (Some(n), true) => n,
            (None, false) => per_hour.saturating_mul(u32::from(close_hour - open_hour)),
            (Some(_), false) => {
                return Err(
                    "lab.prints_per_day is for a lab without printers; with printers the capacity comes from their prints_per_hour".into(),
                )
            }
            (None, true) => {
                return Err("lab: give printers, or prints_per_day for a lab that prints by hand".into())
            }
        };
        let hour = |what: &str, h: u8| {
            if h > 24 {
                Err(format!("{what} {h} is not an hour"))
            } else {
                Ok(h)
            }
        };
        let mut routes = std::collections::BTreeMap::new();
        for r in &self.routes {
            let route = Route {
                days: weekdays(&format!("lab.routes {}", r.store), &r.days)?,
                pickup_hour: hour("pickup_hour", r.pickup_hour)?,
                transit_days: r.transit_days,
            };
            if routes.insert(r.store.clone(), route).is_some() {
                return Err(format!("two routes for store {}", r.store));
            }
        }
        Ok(CapacityModel {
            prints_per_day,
            open_hour,
            close_hour,
            open_days: weekdays("lab.open_days", &self.open_days)?,
            holidays: self.holidays.iter().copied().collect(),
            cutoff_hour: self.cutoff_hour,
            default_route: Route {
                days: weekdays("lab.courier_days", &self.courier_days)?,
                pickup_hour: hour("lab.pickup_hour", self.pickup_hour)?,
                transit_days: self.transit_days,
            },
            routes,
        })
    }
}
