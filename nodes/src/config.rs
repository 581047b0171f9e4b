//! A node's configuration file (TOML). Unknown keys are errors, so a typo is reported
//! with its line instead of being silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Weekday;
use libp2p::Multiaddr;
use printmesh_protocol::capacity::CapacityModel;
use printmesh_protocol::messages::Role;
use printmesh_protocol::money::Currency;
use printmesh_protocol::pricing::{PriceEntry, PriceList, PrintSize};
use printmesh_protocol::StoreId;
use serde::{Deserialize, Serialize};

use crate::kiosk::app::CreditPin;
use crate::kiosk::i18n::Lang;
use crate::kiosk::reader::CardReaderConfig;
use crate::kiosk::receipt::PrinterConfig;

pub use printmesh_runtime::config::{
    default_listen, default_network, parse, read, ConfigError, LimitsConfig, MembershipConfig,
};

/// One node: its role, where its state lives, how it finds its peers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub role: Role,
    /// Shown to peers and on receipts.
    pub name: String,
    /// Nodes only talk to nodes of the same network.
    #[serde(default = "default_network")]
    pub network: String,
    /// Identity key and sled state. Relative paths are relative to the config file.
    pub data_dir: PathBuf,
    /// Multiaddrs to listen on.
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Multiaddrs of peers to dial at start and whenever the connection drops.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Find peers on the LAN by mDNS as well.
    #[serde(default)]
    pub mdns: bool,
    /// A private network's pre-shared key file (`/key/swarm/psk/1.0.0/`, as
    /// `printmesh network init` writes `swarm.key`): the outer fence, before noise.
    #[serde(default)]
    pub psk_file: Option<PathBuf>,
    pub kiosk: Option<KioskConfig>,
    pub intermediary: Option<IntermediaryConfig>,
    pub acquirer: Option<AcquirerConfig>,
    pub lab: Option<LabConfig>,
    pub courier: Option<CourierConfig>,
    /// In a network that enrols its nodes: the root's key and this node's certificate.
    /// Without it the node talks to any peer of its network (development only).
    pub membership: Option<MembershipConfig>,
    /// How many requests a peer may send this node (`[limits]`; defaults suit a store).
    #[serde(default)]
    pub limits: LimitsConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskConfig {
    pub store: StoreId,
    pub store_name: String,
    /// The price list (TOML, see [`PriceFile`]).
    pub prices: PathBuf,
    /// The media slot: a directory or mount point where a memory card appears.
    pub media_dir: Option<PathBuf>,
    /// Test cards the demo can "swipe" (fixtures/cards.toml).
    pub cards: Option<PathBuf>,
    /// The acquirer's public sealing key (hex), as it writes it to `seal.pub` in its
    /// data directory. Card data and PINs are sealed to it; without it the kiosk can
    /// take no card payment.
    pub acquirer_key_file: Option<PathBuf>,
    /// The screen's language until the customer presses F2: `ja` or `en`.
    #[serde(default)]
    pub language: Lang,
    /// A session with no key pressed for this long is cleared.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// How long the thank-you screen stays.
    #[serde(default = "default_thanks_timeout_secs")]
    pub thanks_timeout_secs: u64,
    /// How long the customer waits for the network's answer before the order is
    /// left in the outbox and the receipt says the date will be confirmed.
    #[serde(default = "default_answer_timeout_secs")]
    pub answer_timeout_secs: u64,
    /// PIN on credit cards: `required`, `optional` or `never`.
    #[serde(default)]
    pub credit_pin: CreditPin,
    /// Offline, credit orders up to this amount are still taken (0: none).
    #[serde(default)]
    pub offline_floor_limit_minor: i64,
    /// Digits that open counter mode (F9). Without it there is no counter mode.
    pub staff_pin: Option<String>,
    /// The store's time zone, for receipts.
    #[serde(default)]
    pub utc_offset_hours: i8,
    /// How the magnetic-stripe reader is attached.
    #[serde(default)]
    pub card_reader: CardReaderConfig,
    /// The IC card reader's slot (the file-backed reader: a directory where
    /// `card.toml` appears when a card is inserted).
    pub chip_slot: Option<PathBuf>,
    /// Where receipts are printed. They are always saved as text in the data
    /// directory too.
    pub receipt_printer: Option<PrinterConfig>,
}

fn default_idle_timeout_secs() -> u64 {
    120
}

fn default_thanks_timeout_secs() -> u64 {
    12
}

fn default_answer_timeout_secs() -> u64 {
    60
}

impl KioskConfig {
    /// A kiosk with every optional setting at its default.
    pub fn new(store: StoreId, store_name: &str, prices: PathBuf) -> KioskConfig {
        KioskConfig {
            store,
            store_name: store_name.to_string(),
            prices,
            media_dir: None,
            cards: None,
            acquirer_key_file: None,
            language: Lang::default(),
            idle_timeout_secs: default_idle_timeout_secs(),
            thanks_timeout_secs: default_thanks_timeout_secs(),
            answer_timeout_secs: default_answer_timeout_secs(),
            credit_pin: CreditPin::default(),
            offline_floor_limit_minor: 0,
            staff_pin: None,
            utc_offset_hours: 0,
            card_reader: CardReaderConfig::default(),
            chip_slot: None,
            receipt_printer: None,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(pin) = &self.staff_pin {
            if !(4..=12).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
                return Err("kiosk.staff_pin must be 4 to 12 digits".into());
            }
        }
        for (name, secs) in [
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("thanks_timeout_secs", self.thanks_timeout_secs),
            ("answer_timeout_secs", self.answer_timeout_secs),
        ] {
            if !(1..=86_400).contains(&secs) {
                return Err(format!("kiosk.{name} must be 1 to 86400 seconds"));
            }
        }
        if self.offline_floor_limit_minor < 0 {
            return Err("kiosk.offline_floor_limit_minor cannot be negative".into());
        }
        if !(-12..=14).contains(&self.utc_offset_hours) {
            return Err(format!(
                "kiosk.utc_offset_hours {} is not a time zone",
                self.utc_offset_hours
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntermediaryConfig {
    pub prices: PathBuf,
    /// The intermediary's commission on each order, in basis points (2000 = 20%); the
    /// rest is the lab's print fee.
    #[serde(default = "default_commission_bps")]
    pub commission_bps: u32,
}

fn default_commission_bps() -> u32 {
    2000
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquirerConfig {
    /// Card accounts to seed on first start (fixtures/cards.toml).
    pub cards: PathBuf,
    /// An authorisation hold not captured within this long is released.
    #[serde(default = "default_hold_ttl_secs")]
    pub hold_ttl_secs: u64,
    /// What one point pays, in minor units of money (point cards).
    #[serde(default = "default_minor_per_point")]
    pub minor_per_point: i64,
    /// Decide waiting requests together and flush once (true), or flush after each.
    #[serde(default = "default_true")]
    pub group_commit: bool,
}

fn default_hold_ttl_secs() -> u64 {
    7 * 24 * 3600
}

fn default_minor_per_point() -> i64 {
    1
}

fn default_true() -> bool {
    true
}

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
                crate::ipp::PrinterUri::parse(uri)
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

/// The courier: who it is and, for a demo, how fast its van goes by itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourierConfig {
    /// Seconds after pick-up a parcel is reported in transit by itself (none: only
    /// when the driver says so with `courier depart`).
    #[serde(default)]
    pub auto_in_transit_secs: Option<u64>,
    /// Seconds after pick-up a parcel is delivered by itself (none: only with
    /// `courier deliver`).
    #[serde(default)]
    pub auto_deliver_secs: Option<u64>,
}

/// The price list file: `currency = "JPY"` and a `[prices]` table of size → unit price
/// in minor units.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceFile {
    pub currency: String,
    pub prices: BTreeMap<String, i64>,
}

/// Loads a price list file.
pub fn load_prices(path: &Path) -> Result<PriceList, ConfigError> {
    let file: PriceFile = parse(path, &read(path)?)?;
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let currency: Currency = file.currency.parse().map_err(|e| invalid(format!("{e}")))?;
    let mut entries = Vec::new();
    for (size, price) in file.prices {
        let size: PrintSize = size.parse().map_err(|e| invalid(format!("{e}")))?;
        if price < 0 {
            return Err(invalid(format!("price of {size} is negative")));
        }
        entries.push(PriceEntry {
            size,
            unit_price_minor: price,
        });
    }
    if entries.is_empty() {
        return Err(invalid("the price list has no prices".into()));
    }
    // Smallest paper first, whatever order the file lists them in.
    entries.sort_by_key(|e| e.size);
    Ok(PriceList { currency, entries })
}

impl NodeConfig {
    /// A node on 127.0.0.1 (any port) with no role section yet: tests, benches and the
    /// demo fill in the one its role needs.
    pub fn bare(
        role: Role,
        name: &str,
        network: &str,
        data_dir: PathBuf,
        peers: Vec<String>,
    ) -> NodeConfig {
        NodeConfig {
            role,
            name: name.to_string(),
            network: network.to_string(),
            data_dir,
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            peers,
            mdns: false,
            psk_file: None,
            kiosk: None,
            intermediary: None,
            acquirer: None,
            lab: None,
            courier: None,
            membership: None,
            limits: LimitsConfig::default(),
        }
    }

    /// Reads, parses and checks a config file; relative paths in it are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let mut config: NodeConfig = parse(path, &read(path)?)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// Makes every relative path absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        if let Some(p) = &mut self.psk_file {
            fix(p);
        }
        if let Some(k) = &mut self.kiosk {
            fix(&mut k.prices);
            if let Some(m) = &mut k.media_dir {
                fix(m);
            }
            if let Some(c) = &mut k.cards {
                fix(c);
            }
            if let Some(c) = &mut k.acquirer_key_file {
                fix(c);
            }
            if let Some(c) = &mut k.chip_slot {
                fix(c);
            }
            match &mut k.card_reader {
                CardReaderConfig::Keyboard => {}
                CardReaderConfig::Serial { path } | CardReaderConfig::InputEvent { path } => {
                    fix(path)
                }
            }
            match &mut k.receipt_printer {
                Some(PrinterConfig::File { dir: p }) | Some(PrinterConfig::Device { path: p }) => {
                    fix(p)
                }
                _ => {}
            }
        }
        if let Some(i) = &mut self.intermediary {
            fix(&mut i.prices);
        }
        if let Some(a) = &mut self.acquirer {
            fix(&mut a.cards);
        }
        if let Some(m) = &mut self.membership {
            fix(&mut m.certificate);
            if let Some(r) = &mut m.revocations {
                fix(r);
            }
        }
        if let Some(l) = &mut self.lab {
            for p in &mut l.printers {
                if let Some(dir) = &mut p.hot_folder {
                    fix(dir);
                }
            }
        }
    }

    /// The part the runtime reads, with the store of a role that belongs to one.
    pub fn common(&self) -> printmesh_runtime::config::NodeConfig {
        printmesh_runtime::config::NodeConfig {
            role: self.role,
            name: self.name.clone(),
            network: self.network.clone(),
            data_dir: self.data_dir.clone(),
            listen: self.listen.clone(),
            peers: self.peers.clone(),
            mdns: self.mdns,
            psk_file: self.psk_file.clone(),
            membership: self.membership.clone(),
            limits: self.limits,
            store: self.kiosk.as_ref().map(|k| k.store.clone()),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.common().validate()?;
        let section = match self.role {
            Role::Kiosk => self.kiosk.is_some(),
            Role::Intermediary => self.intermediary.is_some(),
            Role::Acquirer => self.acquirer.is_some(),
            Role::Lab => self.lab.is_some(),
            Role::Courier => self.courier.is_some(),
            Role::Content => return Err(format!("role {} is not available yet", self.role)),
        };
        if !section {
            return Err(format!(
                "role is {} but the [{}] section is missing",
                self.role, self.role
            ));
        }
        if let Some(lab) = &self.lab {
            lab.capacity()?;
        }
        if let Some(kiosk) = &self.kiosk {
            kiosk.validate()?;
        }
        if let Some(i) = &self.intermediary {
            if i.commission_bps > 10_000 {
                return Err(format!(
                    "intermediary.commission_bps {} is more than the whole order (10000 = 100%)",
                    i.commission_bps
                ));
            }
        }
        Ok(())
    }

    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.common().listen_addrs()
    }

    pub fn peer_addrs(&self) -> Vec<Multiaddr> {
        self.common().peer_addrs()
    }
}

impl From<NodeConfig> for printmesh_runtime::config::NodeConfig {
    fn from(config: NodeConfig) -> Self {
        config.common()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn loads_a_lab_config_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "lab.toml",
            r#"
role = "lab"
name = "Lab One"
data_dir = "data/lab"
[lab]
prints_per_day = 500
cutoff_hour = 15
courier_days = ["mon", "wed", "fri"]
transit_days = 1
utc_offset_hours = 9
"#,
        );
        let c = NodeConfig::load(&p).unwrap();
        assert_eq!(c.role, Role::Lab);
        assert_eq!(c.data_dir, dir.path().join("data/lab"));
        assert_eq!(
            c.lab.unwrap().capacity().unwrap().default_route.days.len(),
            3
        );
    }

    #[test]
    fn a_lab_with_printers_opening_hours_holidays_and_routes() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "lab.toml",
            r#"
role = "lab"
name = "Lab One"
data_dir = "data/lab"
[lab]
cutoff_hour = 15
courier_days = ["mon", "wed", "fri"]
opening_hours = [9, 18]
open_days = ["mon", "tue", "wed", "thu", "fri", "sat"]
holidays = ["2026-12-31", "2027-01-01"]
[[lab.printers]]
name = "minilab-1"
prints_per_hour = 1800
hot_folder = "hot"
[[lab.printers]]
name = "office"
prints_per_hour = 200
ipp = "ipp://127.0.0.1:631/printers/PDF"
[[lab.routes]]
store = "store-far"
days = ["tue"]
pickup_hour = 19
transit_days = 2
"#,
        );
        let c = NodeConfig::load(&p).unwrap();
        let lab = c.lab.unwrap();
        assert_eq!(
            lab.printers[0].output().unwrap(),
            PrinterOutput::HotFolder(dir.path().join("hot"))
        );
        let m = lab.capacity().unwrap();
        // 2,000 prints an hour for 9 hours.
        assert_eq!(m.prints_per_day, 18_000);
        assert_eq!(m.holidays.len(), 2);
        assert_eq!(m.open_days.len(), 6);
        let far: StoreId = "store-far".parse().unwrap();
        assert_eq!(m.route(&far).transit_days, 2);
        assert_eq!(m.route(&"store-1".parse().unwrap()).days.len(), 3);

        let bad = |extra: &str, expect: &str| {
            let p = write(
                dir.path(),
                "bad.toml",
                &format!("role = \"lab\"\nname = \"L\"\ndata_dir = \"d\"\n[lab]\ncutoff_hour = 15\ncourier_days = [\"mon\"]\n{extra}"),
            );
            let err = NodeConfig::load(&p).unwrap_err().to_string();
            assert!(err.contains(expect), "{extra}: {err}");
        };
        bad("", "give printers, or prints_per_day");
        bad(
            "opening_hours = [18, 9]\nprints_per_day = 5\n",
            "open before close",
        );
        bad(
            "[[lab.printers]]\nname = \"p\"\nprints_per_hour = 1\n",
            "exactly one of hot_folder and ipp",
        );
        bad(
            "[[lab.printers]]\nname = \"p\"\nprints_per_hour = 1\nipp = \"lpd://x/y\"\n",
            "ipp://HOST",
        );
        bad(
            "prints_per_day = 5\n[[lab.printers]]\nname = \"p\"\nprints_per_hour = 1\nhot_folder = \"h\"\n",
            "prints_per_day is for a lab without printers",
        );
    }

    #[test]
    fn membership_and_the_pre_shared_key_resolve_against_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "courier.toml",
            r#"
role = "courier"
name = "Van"
data_dir = "data/courier"
psk_file = "netadmin/swarm.key"
[courier]
[membership]
root_public_key = "0801"
certificate = "netadmin/issued/3.cert"
revocations = "netadmin/revoked"
"#,
        );
        let c = NodeConfig::load(&p).unwrap();
        assert_eq!(c.psk_file, Some(dir.path().join("netadmin/swarm.key")));
        let m = c.membership.unwrap();
        assert_eq!(m.certificate, dir.path().join("netadmin/issued/3.cert"));
        assert_eq!(m.revocations, Some(dir.path().join("netadmin/revoked")));
    }

    #[test]
    fn a_typo_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "lab.toml",
            "role = \"lab\"\nname = \"L\"\ndata_dir = \"d\"\n[lab]\nprints_per_dya = 5\ncutoff_hour = 15\ncourier_days = [\"mon\"]\n",
        );
        let err = NodeConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("prints_per_dya"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn a_missing_role_section_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "a.toml",
            "role = \"lab\"\nname = \"L\"\ndata_dir = \"d\"\n",
        );
        let err = NodeConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("[lab] section is missing"), "{err}");
        let p = write(
            dir.path(),
            "b.toml",
            "role = \"lab\"\nname = \"L\"\ndata_dir = \"d\"\n[lab]\nprints_per_day = 5\ncutoff_hour = 15\ncourier_days = [\"someday\"]\n",
        );
        let err = NodeConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("someday"), "{err}");
        let p = write(
            dir.path(),
            "c.toml",
            "role = \"acquirer\"\nname = \"A\"\ndata_dir = \"d\"\npeers = [\"not an address\"]\n[acquirer]\ncards = \"c.toml\"\n",
        );
        let err = NodeConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("not a multiaddr"), "{err}");
        let p = write(
            dir.path(),
            "d.toml",
            "role = \"acquirer\"\nname = \"A\"\ndata_dir = \"d\"\npeers = [\"/dns4/lab.example/tcp/1\"]\n[acquirer]\ncards = \"c.toml\"\n",
        );
        let err = NodeConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("speak TCP"), "{err}");
        let p = write(
            dir.path(),
            "e.toml",
            "role = \"intermediary\"\nname = \"I\"\ndata_dir = \"d\"\n[intermediary]\nprices = \"p.toml\"\ncommission_bps = 12000\n",
        );
        let err = NodeConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("commission_bps 12000"), "{err}");
    }

    #[test]
    fn limits_have_store_defaults_and_refuse_a_budget_nobody_could_keep() {
        let dir = tempfile::tempdir().unwrap();
        let base =
            "role = \"acquirer\"\nname = \"A\"\ndata_dir = \"d\"\n[acquirer]\ncards = \"c.toml\"\n";
        let p = write(dir.path(), "a.toml", base);
        let c = NodeConfig::load(&p).unwrap();
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(c.limits.requests(Role::Kiosk), (20.0, 100.0));
        assert_eq!(c.limits.requests(Role::Courier), (20.0, 100.0));
        assert_eq!(c.limits.requests(Role::Intermediary), (20_000.0, 40_000.0));
        // A courier reports a whole round's parcels at once: a service's event budget.
        assert_eq!(c.limits.events(Role::Courier), (20_000.0, 40_000.0));
        assert_eq!(c.limits.events(Role::Kiosk), (20.0, 100.0));
        let p = write(
            dir.path(),
            "b.toml",
            &format!("{base}[limits]\nkiosk_requests_per_sec = 5.0\n"),
        );
        assert_eq!(
            NodeConfig::load(&p).unwrap().limits.requests(Role::Kiosk),
            (5.0, 100.0)
        );
        for bad in [
            "kiosk_requests_per_sec = 0.0",
            "kiosk_request_burst = 0.5",
            "service_requests_per_sec = -1.0",
        ] {
            let p = write(dir.path(), "c.toml", &format!("{base}[limits]\n{bad}\n"));
            let err = NodeConfig::load(&p).unwrap_err().to_string();
            assert!(err.contains("limits."), "{bad}: {err}");
        }
    }

    #[test]
    fn loads_prices() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "prices.toml",
            "currency = \"JPY\"\n[prices]\nL = 30\n2L = 80\n",
        );
        let list = load_prices(&p).unwrap();
        assert_eq!(list.unit_price(PrintSize::TwoL).unwrap().amount_minor(), 80);
        let p = write(
            dir.path(),
            "bad.toml",
            "currency = \"JPY\"\n[prices]\nXL = 30\n",
        );
        assert!(load_prices(&p).unwrap_err().to_string().contains("XL"));
    }
}
