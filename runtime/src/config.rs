//! The part of a node's config the runtime reads (`role`, `name`, `network`,
//! `data_dir`, `listen`, `peers`, `mdns`, `psk_file`, `[membership]`, `[limits]`), and
//! the helpers every config file uses. A role's own section is its own type, in its
//! own folder.

use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use printmesh_protocol::messages::{BudgetClass, Role};
use printmesh_protocol::StoreId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

pub fn default_network() -> String {
    "printmesh".to_string()
}

pub fn default_listen() -> Vec<String> {
    vec!["/ip4/0.0.0.0/tcp/0".to_string()]
}

/// What the runtime needs of a node's config: its role, where its state lives, how it
/// finds its peers, who may talk to it. The config file adds the role's own section
/// (`printmesh_nodes::config`); the runtime never reads it.
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
    /// In a network that enrols its nodes: the root's key and this node's certificate.
    /// Without it the node talks to any peer of its network (development only).
    pub membership: Option<MembershipConfig>,
    /// How many requests a peer may send this node (`[limits]`; defaults suit a store).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The store a node of a role that belongs to one serves (from its role's
    /// section): said in its hello and checked against its certificate.
    #[serde(skip)]
    pub store: Option<StoreId>,
}

/// `[limits]`: requests a second a peer may send this node, sustained and in a burst,
/// by the role it proved; the same budget holds for the events a node of that role
/// gossips. Over its budget a peer's requests (or events) are dropped, and a peer
/// that keeps on is cut off for a minute (see `net::CUT_OFF_FOR`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// A kiosk (or courier) sends an order every few seconds.
    pub kiosk_requests_per_sec: f64,
    pub kiosk_request_burst: f64,
    /// An intermediary sends its acquirer thousands of authorisations a second at a
    /// busy hour; labs and acquirers answer each other's settlements.
    pub service_requests_per_sec: f64,
    pub service_request_burst: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            kiosk_requests_per_sec: 20.0,
            kiosk_request_burst: 100.0,
            service_requests_per_sec: 20_000.0,
            service_request_burst: 40_000.0,
        }
    }
}

impl LimitsConfig {
    fn validate(&self) -> Result<(), String> {
        for (name, rate, burst) in [
            (
                "kiosk",
                self.kiosk_requests_per_sec,
                self.kiosk_request_burst,
            ),
            (
                "service",
                self.service_requests_per_sec,
                self.service_request_burst,
            ),
        ] {
            if !(rate.is_finite() && rate > 0.0 && burst.is_finite() && burst >= 1.0) {
                return Err(format!(
                    "limits.{name}_requests_per_sec must be above 0 and limits.{name}_request_burst at least 1"
                ));
            }
        }
        Ok(())
    }

    /// (per second, burst) of the events an origin in `role` gossips
    /// ([`Role::event_budget`]).
    pub fn events(&self, role: Role) -> (f64, f64) {
        self.budget(role.event_budget())
    }

    /// (per second, burst) for a peer in `role` ([`Role::request_budget`]).
    pub fn requests(&self, role: Role) -> (f64, f64) {
        self.budget(role.request_budget())
    }

    fn budget(&self, class: BudgetClass) -> (f64, f64) {
        match class {
            BudgetClass::Store => (self.kiosk_requests_per_sec, self.kiosk_request_burst),
            BudgetClass::Service => (self.service_requests_per_sec, self.service_request_burst),
        }
    }
}

/// `[membership]`: what `printmesh network init|enroll` made for this node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipConfig {
    /// The network's root public key (hex, as `network init` prints it).
    pub root_public_key: String,
    /// This node's certificate file (`issued/<serial>.cert`).
    pub certificate: PathBuf,
    /// A folder of revocation files (`*.rev`) the node loads at start.
    pub revocations: Option<PathBuf>,
}

pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

impl NodeConfig {
    /// A node on 127.0.0.1 (any port): tests, benches and the demo start from it.
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
            membership: None,
            limits: LimitsConfig::default(),
            store: None,
        }
    }

    /// Makes every relative path the runtime reads absolute against `base`.
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
        if let Some(m) = &mut self.membership {
            fix(&mut m.certificate);
            if let Some(r) = &mut m.revocations {
                fix(r);
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name is empty".into());
        }
        self.limits.validate()?;
        for addr in self.listen.iter().chain(&self.peers) {
            let parsed = addr
                .parse::<Multiaddr>()
                .map_err(|e| format!("{addr:?} is not a multiaddr: {e}"))?;
            use libp2p::multiaddr::Protocol;
            let mut parts = parsed.iter();
            let ip = matches!(parts.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_)));
            let tcp = matches!(parts.next(), Some(Protocol::Tcp(_)));
            let rest_ok = parts.all(|p| matches!(p, Protocol::P2p(_)));
            if !(ip && tcp && rest_ok) {
                return Err(format!(
                    "{addr:?}: printmesh nodes speak TCP; use /ip4/ADDR/tcp/PORT (optionally /p2p/PEER_ID)"
                ));
            }
        }
        Ok(())
    }

    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen.iter().filter_map(|a| a.parse().ok()).collect()
    }

    pub fn peer_addrs(&self) -> Vec<Multiaddr> {
        self.peers.iter().filter_map(|a| a.parse().ok()).collect()
    }
}
