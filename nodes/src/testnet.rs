//! One way to lay out a network of nodes on this machine, for the demo, the benches
//! and the tests alike: each node's config starts from its role's file in
//! `fixtures/demo/` (its section resolved against the fixtures), then lives on
//! 127.0.0.1 at any port with its data under the network's directory. A node runs in
//! this process ([`TestNet::start`]) or as a separate process from the TOML file
//! [`TestNet::write`] leaves.

use std::path::{Path, PathBuf};

use printmesh_protocol::messages::Role;

use crate::config::NodeConfig;
use crate::node::{start_role, Node, NodeError};

/// The source tree's fixtures: the memory card, the test cards, the demo network's
/// configs and price list. The one place they are found.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
}

/// Nodes under one directory, in one network.
#[derive(Clone, Debug)]
pub struct TestNet {
    pub dir: PathBuf,
    pub network: String,
    pub fixtures: PathBuf,
}

impl TestNet {
    /// A network of its own (a random name), its nodes' data under `dir`.
    pub fn new(dir: &Path) -> TestNet {
        TestNet::named(dir, &format!("net-{:08x}", rand::random::<u32>()))
    }

    pub fn named(dir: &Path, network: &str) -> TestNet {
        TestNet {
            dir: dir.to_path_buf(),
            network: network.to_string(),
            fixtures: fixtures_dir(),
        }
    }

    /// The same, with the fixtures from elsewhere (`printmesh demo --fixtures DIR`).
    pub fn with_fixtures(mut self, fixtures: &Path) -> TestNet {
        self.fixtures = fixtures.to_path_buf();
        self
    }

    /// A node in `role` dialling `peers`: its role's section as in
    /// `fixtures/demo/<role>.toml`, its data in `<dir>/<role>`, listening on
    /// 127.0.0.1 at any port, no mDNS.
    pub fn config(&self, role: Role, peers: Vec<String>) -> Result<NodeConfig, NodeError> {
        let file = self.fixtures.join("demo").join(format!("{role}.toml"));
        let mut config = NodeConfig::load(&file)?;
        config.data_dir = self.dir.join(role.name());
        config.network = self.network.clone();
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
        config.peers = peers;
        config.mdns = false;
        Ok(config)
    }

    /// A node in `role` named `name` with no role section yet (the caller gives it
    /// one, or handles the node's events itself): its data in `<dir>/<folder>`, on
    /// 127.0.0.1 at any port.
    pub fn bare(&self, role: Role, name: &str, folder: &str, peers: Vec<String>) -> NodeConfig {
        NodeConfig::bare(role, name, &self.network, self.dir.join(folder), peers)
    }

    /// Writes a config for a separate process from a bare node and TOML text with its
    /// role's section (`[lab] …`, tables under it included) and any common key the
    /// caller sets otherwise (`mdns = true`): the rest is this network's. Returns the
    /// file's path.
    pub fn write_with_section(
        &self,
        config: &NodeConfig,
        section: &str,
    ) -> Result<PathBuf, NodeError> {
        let bad = |e: String| NodeError::Role(format!("a test config: {e}"));
        let mut table = toml::Table::try_from(config).map_err(|e| bad(e.to_string()))?;
        let extra: toml::Table = toml::from_str(section).map_err(|e| bad(e.to_string()))?;
        table.extend(extra);
        let full: NodeConfig = table.try_into().map_err(|e| bad(e.to_string()))?;
        full.validate().map_err(bad)?;
        self.write(&full)
    }

    /// Starts a node in this process, its role serving.
    pub async fn start(&self, config: NodeConfig) -> Result<Node, NodeError> {
        start_role(config).await
    }

    /// Writes a node's config as `<dir>/<role>.toml` (for `printmesh <role> --config`,
    /// or an operator's commands) and returns its path.
    pub fn write(&self, config: &NodeConfig) -> Result<PathBuf, NodeError> {
        let path = self.dir.join(format!("{}.toml", config.role));
        let io = |source| NodeError::DataDir {
            path: path.display().to_string(),
            source,
        };
        let text = toml::to_string(config).map_err(|e| NodeError::Role(e.to_string()))?;
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        std::fs::write(&path, text).map_err(io)?;
        Ok(path)
    }
}

/// The first address a node listens on, dialable (`…/p2p/<id>`).
pub async fn addr_of(node: &Node) -> Result<String, NodeError> {
    node.addresses()
        .await
        .into_iter()
        .next()
        .map(|a| a.to_string())
        .ok_or_else(|| NodeError::Role("node has no listen address".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_has_a_config_that_loads_back_from_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let net = TestNet::new(dir.path());
        for role in [
            Role::Kiosk,
            Role::Intermediary,
            Role::Acquirer,
            Role::Lab,
            Role::Courier,
        ] {
            let config = net.config(role, vec![]).unwrap();
            assert_eq!(config.role, role);
            assert_eq!(config.data_dir, dir.path().join(role.name()));
            let path = net.write(&config).unwrap();
            let back = NodeConfig::load(&path).unwrap();
            assert_eq!(back.role, role);
            assert_eq!(back.network, net.network);
            assert_eq!(back.listen, vec!["/ip4/127.0.0.1/tcp/0".to_string()]);
        }
    }
}
