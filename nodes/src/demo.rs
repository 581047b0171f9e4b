//! The whole network in one process: an acquirer, a lab, a courier, an intermediary and
//! a kiosk, each its own swarm on 127.0.0.1 with its own sled directory, configured
//! from `fixtures/demo/*.toml` with the ports and data directories swapped for fresh
//! ones.
//!
//! Two people the demo has no hardware for are played by tasks: the minilab's
//! controller (it takes each order out of the lab's hot folder a few seconds after it
//! appears, as a controller does once it has printed it) and the lab's operator (every
//! few seconds it hands whatever is printed to the courier). The courier's van drives
//! itself (`auto_in_transit_secs`, `auto_deliver_secs`). So an order placed at the
//! kiosk is printed, shipped, captured and delivered within a minute, and the counter
//! (F9, staff PIN 2468) can hand it over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use printmesh_protocol::messages::OrderResponse;
use printmesh_protocol::pricing::PrintSize;

use crate::cards::{load_cards, TestCard};
use crate::config::NodeConfig;
use crate::node::{start_role, Node, NodeError};
use crate::roles::kiosk::{draft_from_card, Kiosk, KioskOrder};
use crate::testnet::{addr_of, TestNet};
use printmesh_protocol::messages::Role;

/// How long the demo waits for the answer to one order.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The source tree's fixtures directory.
pub use crate::testnet::fixtures_dir as default_fixtures_dir;

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
    pub courier: Node,
    pub intermediary: Node,
    pub kiosk_node: Node,
    pub kiosk: Arc<Kiosk>,
    pub cards: Vec<TestCard>,
    pub media_dir: PathBuf,
}

/// A demo node's config: the test network's (its role's fixture, on 127.0.0.1),
/// enrolled.
fn demo_config(net: &TestNet, role: Role, peers: Vec<String>) -> Result<NodeConfig, NodeError> {
    let mut config = net.config(role, peers)?;
    enrol(&net.dir, &mut config)?;
    Ok(config)
}

/// The demo is an enrolled private network, as a store network is: the operator's
/// folder is `DATA_DIR/netadmin` (root key, `swarm.key`, issued certificates), and
/// each node gets a certificate for its role, name (and, a kiosk, its store), so
/// `printmesh network revoke --dir DATA_DIR/netadmin …` works on it.
fn enrol(data_dir: &Path, config: &mut NodeConfig) -> Result<(), NodeError> {
    use crate::membership;
    let net = data_dir.join("netadmin");
    let role = |e: membership::MembershipError| NodeError::Role(e.to_string());
    // A demo directory used again keeps its network (and its name).
    let file = if net.join("network.toml").exists() {
        membership::load(&net).map_err(role)?
    } else {
        membership::init(&net, &config.network).map_err(role)?
    };
    config.network = file.name.clone();
    let key = crate::node::identity(&config.data_dir)?;
    let store = config.kiosk.as_ref().map(|k| k.store.clone());
    let (certificate, _) = membership::enroll(
        &net,
        config.role,
        key.public().to_peer_id(),
        &config.name,
        store,
        365,
    )
    .map_err(role)?;
    config.membership = Some(crate::config::MembershipConfig {
        root_public_key: file.root_public_key,
        certificate,
        revocations: Some(net.join("revoked")),
    });
    config.psk_file = Some(net.join("swarm.key"));
    Ok(())
}

/// Leaves the node's effective config as `DATA_DIR/<role>.toml`, for the operators'
/// commands (`printmesh lab --config DATA_DIR/lab.toml console`, …).
fn leave_config(net: &TestNet, config: &NodeConfig) {
    if let Err(e) = net.write(config) {
        tracing::warn!("cannot leave the {} config: {e}", config.role);
    }
}

impl DemoNetwork {
    /// Starts the four roles and waits until the kiosk sees an intermediary that sees
    /// an acquirer and a lab.
    pub async fn start(
        data_dir: &Path,
        fixtures: &Path,
        mode: DemoMode,
    ) -> Result<DemoNetwork, NodeError> {
        let net = TestNet::named(data_dir, &format!("printmesh-demo-{}", std::process::id()))
            .with_fixtures(fixtures);
        let acquirer_config = demo_config(&net, Role::Acquirer, vec![])?;
        leave_config(&net, &acquirer_config);
        let acquirer = start_role(acquirer_config).await?;
        let courier_config = demo_config(&net, Role::Courier, vec![])?;
        leave_config(&net, &courier_config);
        let courier = start_role(courier_config).await?;
        let mut lab_config = demo_config(&net, Role::Lab, vec![addr_of(&courier).await?])?;
        let hot_folder = data_dir.join("lab-hotfolder");
        if let Some(l) = lab_config.lab.as_mut() {
            for p in &mut l.printers {
                p.hot_folder = Some(hot_folder.clone());
            }
        }
        leave_config(&net, &lab_config);
        let lab = start_role(lab_config).await?;
        tokio::spawn(minilab_controller(
            hot_folder,
            data_dir.join("minilab-printed"),
        ));
        tokio::spawn(lab_operator(data_dir.join("lab")));
        let peers = vec![addr_of(&acquirer).await?, addr_of(&lab).await?];
        let intermediary_config = demo_config(&net, Role::Intermediary, peers)?;
        leave_config(&net, &intermediary_config);
        let intermediary = start_role(intermediary_config).await?;
        let mut kiosk_config = demo_config(&net, Role::Kiosk, vec![addr_of(&intermediary).await?])?;
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
                k.receipt_printer = Some(crate::roles::kiosk::receipt::PrinterConfig::File {
                    dir: data_dir.join("printer"),
                });
            }
        }
        let kiosk_section = kiosk_config
            .kiosk
            .clone()
            .ok_or_else(|| NodeError::Role("kiosk config has no [kiosk] section".into()))?;
        leave_config(&net, &kiosk_config);
        let (kiosk_node, kiosk) = crate::node::start_kiosk(kiosk_config).await?;
        let wait = Duration::from_secs(20);
        let net_err = |e: crate::net::NetError| NodeError::Role(e.to_string());
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
            courier,
            intermediary,
            kiosk_node,
            kiosk,
            cards: load_cards(&cards_path)?,
            media_dir,
        })
    }

    /// What the kiosk screen shows and does in the demo: the test cards to "swipe"
    /// and a shelf for the memory card when F5 takes it out.
    pub fn screen_demo(&self) -> crate::roles::kiosk::run::Demo {
        crate::roles::kiosk::run::Demo {
            cards: self
                .cards
                .iter()
                .map(crate::roles::kiosk::app::DemoCard::from_test_card)
                .collect(),
            card_shelf: self.data_dir.join("shelf"),
        }
    }

    pub async fn shutdown(&self) {
        for node in [
            &self.kiosk_node,
            &self.intermediary,
            &self.lab,
            &self.courier,
            &self.acquirer,
        ] {
            node.shutdown().await;
        }
    }
}

/// The demo's stand-in for a minilab controller: an order folder in the hot folder is
/// "printed" a few seconds after it appears, and moved out to `done` (a controller's
/// archive), which is how the lab learns it is printed.
async fn minilab_controller(hot_folder: PathBuf, done: PathBuf) {
    const PRINT_TIME: Duration = Duration::from_secs(4);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(entries) = std::fs::read_dir(&hot_folder) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let old_enough = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= PRINT_TIME);
            if old_enough {
                let _ = std::fs::create_dir_all(&done);
                if let Err(err) = std::fs::rename(e.path(), done.join(&name)) {
                    tracing::warn!("demo minilab: {err}");
                }
            }
        }
    }
}

/// The demo's stand-in for the lab's operator: every few seconds, whatever is printed
/// goes to the courier (what `a` on the lab console does).
async fn lab_operator(lab_data_dir: PathBuf) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let dir = lab_data_dir.clone();
        let _ = tokio::task::spawn_blocking(move || {
            crate::node::admin_call(
                &dir,
                &crate::node::AdminRequest::role(&crate::roles::lab::LabCommand::ShipAllPrinted),
            )
        })
        .await;
    }
}

/// Follows the approved orders until the courier has delivered them to the store,
/// printing each step as the kiosk hears of it. Returns how many arrived.
pub async fn follow_orders(
    net: &DemoNetwork,
    ids: &[printmesh_protocol::OrderId],
    timeout: Duration,
) -> usize {
    use printmesh_protocol::order::OrderState;
    let mut last: std::collections::HashMap<printmesh_protocol::OrderId, OrderState> =
        std::collections::HashMap::new();
    let until = tokio::time::Instant::now() + timeout;
    loop {
        for id in ids {
            let state = net
                .kiosk_node
                .events
                .state_of(*id)
                .unwrap_or(OrderState::Draft);
            if last.get(id) != Some(&state) {
                if matches!(
                    state,
                    OrderState::Printed
                        | OrderState::Shipped
                        | OrderState::Delivered
                        | OrderState::Rejected
                ) {
                    println!("order {id}  {}", format!("{state:?}").to_lowercase());
                }
                last.insert(*id, state);
            }
        }
        let delivered = last
            .values()
            .filter(|s| **s == OrderState::Delivered)
            .count();
        if delivered == ids.len() || tokio::time::Instant::now() > until {
            return delivered;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
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
            other.summary(),
            o.total
        ),
    }
}

/// Places `orders` orders from the fixture memory card, cycling through the test cards
/// and print sizes; prints one line per answer. Returns the orders answered and the
/// ids of those approved.
pub async fn run_orders(
    net: &DemoNetwork,
    orders: usize,
) -> Result<(usize, Vec<printmesh_protocol::OrderId>), NodeError> {
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
    let mut approved = Vec::new();
    for id in placed {
        match net.kiosk.wait_for_answer(id, ANSWER_TIMEOUT).await {
            Ok(order) => {
                answered += 1;
                if matches!(order.answer, OrderResponse::Accepted(_)) {
                    approved.push(id);
                }
                println!("{}", order_line(&order));
            }
            Err(e) => println!("order {id}  no answer: {e}"),
        }
    }
    Ok((answered, approved))
}
