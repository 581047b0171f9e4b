//! The whole network in one process: an acquirer, a lab, an intermediary and a kiosk,
//! each its own swarm on 127.0.0.1 with its own sled directory, configured from
//! `fixtures/demo/*.toml` with the ports and data directories swapped for fresh ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use printmesh_protocol::messages::OrderResponse;
use printmesh_protocol::pricing::PrintSize;

use crate::cards::{load_cards, TestCard};
use crate::config::NodeConfig;
use crate::node::{start_role, Node, NodeError};
use crate::roles::kiosk::{draft_from_card, Kiosk, KioskOrder};

/// How long the demo waits for the answer to one order.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The source tree's fixtures directory.
pub fn default_fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
}

/// With the kiosk screen, or headless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoMode {
    /// The kiosk's media slot, chip reader and receipt printer are folders of the
    /// demo's own, with the fixture memory card copied into the slot.
    Screen,
    Headless,
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

pub struct DemoNetwork {
    pub data_dir: PathBuf,
    pub acquirer: Node,
    pub lab: Node,
    pub intermediary: Node,
    pub kiosk_node: Node,
    pub kiosk: Arc<Kiosk>,
    pub cards: Vec<TestCard>,
    pub media_dir: PathBuf,
}

fn demo_config(
    fixtures: &Path,
    role: &str,
    data_dir: &Path,
    peers: Vec<String>,
) -> Result<NodeConfig, NodeError> {
    let mut config = NodeConfig::load(&fixtures.join("demo").join(format!("{role}.toml")))?;
    config.data_dir = data_dir.join(role);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    config.peers = peers;
    config.mdns = false;
    config.network = format!("printmesh-demo-{}", std::process::id());
    Ok(config)
}

async fn addr_of(node: &Node) -> Result<String, NodeError> {
    node.addresses()
        .await
        .into_iter()
        .next()
        .map(|a| a.to_string())
        .ok_or_else(|| NodeError::Role("node has no listen address".into()))
}

impl DemoNetwork {
    /// Starts the four roles and waits until the kiosk sees an intermediary that sees
    /// an acquirer and a lab.
    pub async fn start(
        data_dir: &Path,
        fixtures: &Path,
        mode: DemoMode,
    ) -> Result<DemoNetwork, NodeError> {
        let acquirer = start_role(demo_config(fixtures, "acquirer", data_dir, vec![])?).await?;
        let lab = start_role(demo_config(fixtures, "lab", data_dir, vec![])?).await?;
        let peers = vec![addr_of(&acquirer).await?, addr_of(&lab).await?];
        let intermediary =
            start_role(demo_config(fixtures, "intermediary", data_dir, peers)?).await?;
        let mut kiosk_config = demo_config(
            fixtures,
            "kiosk",
            data_dir,
            vec![addr_of(&intermediary).await?],
        )?;
        if let Some(k) = kiosk_config.kiosk.as_mut() {
            // Card data is sealed to this acquirer's key.
            k.acquirer_key_file = Some(crate::roles::acquirer::seal_pub_path(
                &data_dir.join("acquirer"),
            ));
        }
        if mode == DemoMode::Screen {
            let io = |path: &Path| {
                let path = path.display().to_string();
                move |source| NodeError::DataDir { path, source }
            };
            let slot = data_dir.join("slot");
            if !slot.join("DCIM").is_dir() {
                copy_dir(&fixtures.join("memory-card"), &slot).map_err(io(&slot))?;
            }
            if let Some(k) = kiosk_config.kiosk.as_mut() {
                k.media_dir = Some(slot);
                k.chip_slot = Some(data_dir.join("chip"));
                k.receipt_printer = Some(crate::kiosk::receipt::PrinterConfig::File {
                    dir: data_dir.join("printer"),
                });
            }
        }
        let kiosk_section = kiosk_config
            .kiosk
            .clone()
            .ok_or_else(|| NodeError::Role("kiosk config has no [kiosk] section".into()))?;
        let (kiosk_node, kiosk) = crate::node::start_kiosk(kiosk_config).await?;
        let wait = Duration::from_secs(20);
        let net_err = |e: crate::net::NetError| NodeError::Role(e.to_string());
        use printmesh_protocol::messages::Role;
        intermediary
            .client
            .wait_for_role(Role::Acquirer, wait)
            .await
            .map_err(net_err)?;
        intermediary
            .client
            .wait_for_role(Role::Lab, wait)
            .await
            .map_err(net_err)?;
        kiosk_node
            .client
            .wait_for_role(Role::Intermediary, wait)
            .await
            .map_err(net_err)?;
        let cards_path = kiosk_section
            .cards
            .unwrap_or_else(|| fixtures.join("cards.toml"));
        let media_dir = kiosk_section
            .media_dir
            .unwrap_or_else(|| fixtures.join("memory-card"));
        Ok(DemoNetwork {
            data_dir: data_dir.to_path_buf(),
            acquirer,
            lab,
            intermediary,
            kiosk_node,
            kiosk,
            cards: load_cards(&cards_path)?,
            media_dir,
        })
    }

    /// What the kiosk screen shows and does in the demo: the test cards to "swipe"
    /// and a shelf for the memory card when F5 takes it out.
    pub fn screen_demo(&self) -> crate::kiosk::run::Demo {
        crate::kiosk::run::Demo {
            cards: self
                .cards
                .iter()
                .map(crate::kiosk::app::DemoCard::from_test_card)
                .collect(),
            card_shelf: self.data_dir.join("shelf"),
        }
    }

    pub async fn shutdown(&self) {
        for node in [
            &self.kiosk_node,
            &self.intermediary,
            &self.lab,
            &self.acquirer,
        ] {
            node.shutdown().await;
        }
    }
}

/// One line per order, as the headless demo prints it.
pub fn order_line(o: &KioskOrder) -> String {
    let card = format!("{} {}", o.card_brand, o.card_last4);
    match &o.answer {
        OrderResponse::Accepted(a) => format!(
            "order {}  approved  auth {}  delivery {}  ({card}, {})",
            o.order_id, a.auth_code, a.delivery_date, o.total
        ),
        OrderResponse::Declined { code, .. } => format!(
            "order {}  declined  {} {}  ({card}, {})",
            o.order_id,
            code.iso8583(),
            code.describe(),
            o.total
        ),
        other => format!(
            "order {}  {}  ({card}, {})",
            o.order_id,
            crate::roles::intermediary::summary(other),
            o.total
        ),
    }
}

/// Places `orders` orders from the fixture memory card, cycling through the test cards
/// and print sizes; prints one line per answer. Returns how many were answered.
pub async fn run_orders(net: &DemoNetwork, orders: usize) -> Result<usize, NodeError> {
    let sizes = [PrintSize::L, PrintSize::TwoL, PrintSize::Kg];
    let mut placed = Vec::with_capacity(orders);
    for i in 0..orders {
        let Some(card) = net.cards.get(i % net.cards.len().max(1)) else {
            return Err(NodeError::Role("no test cards".into()));
        };
        let data = card.read().map_err(NodeError::Role)?;
        let size = sizes.get(i % sizes.len()).copied().unwrap_or(PrintSize::L);
        let mut draft = draft_from_card(&net.media_dir, size, card.method(), data)
            .map_err(|e| NodeError::Role(e.to_string()))?;
        // The test card's own PIN where its kind needs one; IC cards are inserted.
        if matches!(card.kind.as_str(), "debit" | "ic") {
            draft.pin = Some(
                printmesh_protocol::pinblock::Pin::new(card.pin.as_bytes())
                    .map_err(|e| NodeError::Role(e.to_string()))?,
            );
        }
        if card.kind == "ic" {
            draft.entry = printmesh_protocol::seal::EntryMode::Chip;
        }
        let id = net
            .kiosk
            .place_order(draft)
            .await
            .map_err(|e| NodeError::Role(e.to_string()))?;
        placed.push(id);
    }
    let mut answered = 0;
    for id in placed {
        match net.kiosk.wait_for_answer(id, ANSWER_TIMEOUT).await {
            Ok(order) => {
                answered += 1;
                println!("{}", order_line(&order));
            }
            Err(e) => println!("order {id}  no answer: {e}"),
        }
    }
    Ok(answered)
}
