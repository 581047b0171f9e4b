//! A node's configuration file (TOML). Unknown keys are errors, so a typo is reported
//! with its line instead of being silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use printmesh_protocol::messages::Role;
use printmesh_protocol::money::Currency;
use printmesh_protocol::pricing::{PriceEntry, PriceList, PrintSize};
use serde::{Deserialize, Serialize};

use crate::roles::kiosk::reader::CardReaderConfig;
use crate::roles::kiosk::receipt::PrinterConfig;

pub use crate::roles::acquirer::config::AcquirerConfig;
pub use crate::roles::content::config::ContentConfig;
pub use crate::roles::courier::config::CourierConfig;
pub use crate::roles::intermediary::config::IntermediaryConfig;
pub use crate::roles::kiosk::config::KioskConfig;
pub use crate::roles::lab::config::{LabConfig, LabPrinterConfig, PrinterOutput, RouteConfig};

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
    #[serde(default)]
    pub content: Option<ContentConfig>,
    /// In a network that enrols its nodes: the root's key and this node's certificate.
    /// Without it the node talks to any peer of its network (development only).
    pub membership: Option<MembershipConfig>,
    /// How many requests a peer may send this node (`[limits]`; defaults suit a store).
    #[serde(default)]
    pub limits: LimitsConfig,
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
            content: None,
            membership: None,
            limits: LimitsConfig::default(),
        }
    }

    /// Reads, parses and checks a config file; relative paths in it are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = read(path)?;
        let mut config: NodeConfig = parse(path, &text)?;
        if let Some(other) = config.foreign_section() {
            let line = section_line(&text, other.name())
                .map(|n| format!("line {n}: "))
                .unwrap_or_default();
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!("{line}{}", foreign_section_message(config.role, other)),
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// The roles whose sections the file has.
    fn sections(&self) -> Vec<Role> {
        [
            (Role::Kiosk, self.kiosk.is_some()),
            (Role::Intermediary, self.intermediary.is_some()),
            (Role::Acquirer, self.acquirer.is_some()),
            (Role::Lab, self.lab.is_some()),
            (Role::Courier, self.courier.is_some()),
            (Role::Content, self.content.is_some()),
        ]
        .into_iter()
        .filter_map(|(role, there)| there.then_some(role))
        .collect()
    }

    /// A section of another role than the node's (the file is for one role only).
    fn foreign_section(&self) -> Option<Role> {
        self.sections().into_iter().find(|r| *r != self.role)
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
        if let Some(c) = self.content.as_mut().and_then(|c| c.catalogue.as_mut()) {
            fix(c);
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
            if let Some(c) = &mut k.media_device {
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
        if let Some(other) = self.foreign_section() {
            return Err(foreign_section_message(self.role, other));
        }
        if !self.sections().contains(&self.role) {
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
}

fn foreign_section_message(role: Role, other: Role) -> String {
    format!(
        "a [{other}] section in {}'s config: it reads only [{role}] (one role to a node; \
         give {} a config of its own)",
        role.with_article(),
        other.with_article()
    )
}

/// The line (from 1) where `[name]` or a `[name.…]`/`[[name.…]]` table starts.
fn section_line(text: &str, name: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let t = line.trim_start().trim_start_matches('[');
            t.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(']') || rest.starts_with('.'))
                && line.trim_start().starts_with('[')
        })
        .map(|i| i + 1)
}

impl From<NodeConfig> for printmesh_runtime::config::NodeConfig {
    fn from(config: NodeConfig) -> Self {
        config.common()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use printmesh_protocol::StoreId;

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
    fn another_roles_section_is_refused_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "kiosk.toml",
            "role = \"kiosk\"\nname = \"k\"\ndata_dir = \"d\"\n\n[kiosk]\nstore = \"s1\"\nstore_name = \"S\"\nprices = \"p.toml\"\n\n[courier]\nauto_deliver_secs = 5\n",
        );
        let err = NodeConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("line 10"), "{err}");
        assert!(
            err.contains("a [courier] section in a kiosk's config"),
            "{err}"
        );
        let mut both = NodeConfig::load(&write(
            dir.path(),
            "ok.toml",
            "role = \"kiosk\"\nname = \"k\"\ndata_dir = \"d\"\n[kiosk]\nstore = \"s1\"\nstore_name = \"S\"\nprices = \"p.toml\"\n",
        ))
        .unwrap();
        both.courier = Some(CourierConfig {
            auto_in_transit_secs: None,
            auto_deliver_secs: None,
        });
        assert!(both.validate().unwrap_err().contains("[courier] section"));
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
