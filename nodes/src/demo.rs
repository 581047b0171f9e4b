//! The whole network in one process: an acquirer, a courier, two labs, two
//! intermediaries and a kiosk in each of two stores, each its own swarm on 127.0.0.1
//! with its own sled directory, configured from `fixtures/demo/*.toml` with the ports,
//! names and data directories swapped for fresh ones. Each kiosk knows both
//! intermediaries (orders spread over them), each intermediary both labs (a store's
//! jobs go to its own lab first).
//!
//! Two people the demo has no hardware for are played by tasks: the minilab's
//! controller (it takes each order out of the lab's hot folder a few seconds after it
//! appears, as a controller does once it has printed it) and the lab's operator (every
//! few seconds it hands whatever is printed to the courier). The courier's van drives
//! itself (`auto_in_transit_secs`, `auto_deliver_secs`). So an order placed at the
//! kiosk is printed, shipped, captured and delivered within a minute, and the counter
//! (F9, staff PIN 2468) can hand it over.
//!
//! A content company ("printmesh Tunes") publishes a catalogue the project makes itself
//! ([`crate::demo_catalogue`]: a synthesised tune, two pictures, a game's levels). Where
//! dosfstools, fusefat and mtools are installed, the first kiosk's memory card is a
//! FAT32 image with the fixture photos on it, mounted through fusefat, so downloads
//! are written onto a real filesystem (F5 ejects it and puts it back); without them the
//! card is a folder and the kiosk sells prints only.

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
    /// Shibuya Photo Lab, then Kamakura Photo Lab.
    pub labs: Vec<Node>,
    pub courier: Node,
    /// Print Network North, then Print Network South.
    pub intermediaries: Vec<Node>,
    /// The first store's kiosk (the one with the screen).
    pub kiosk_node: Node,
    pub kiosk: Arc<Kiosk>,
    /// Every store's kiosk: the first store's, then the second's.
    pub kiosks: Vec<(Node, Arc<Kiosk>)>,
    pub cards: Vec<TestCard>,
    pub media_dir: PathBuf,
    /// The content company.
    pub content: Node,
    /// The first kiosk's memory card, a FAT32 image, when the FAT tools are here.
    pub card: Option<Arc<std::sync::Mutex<crate::fatcard::FatCard>>>,
}

/// The demo content company's name.
pub const CONTENT_COMPANY: &str = "printmesh Tunes";

/// The first kiosk's memory card as a FAT32 image with the fixture card's files on
/// it, mounted at `slot` (made once; a demo directory used again mounts it again).
fn fat_card(
    data_dir: &Path,
    fixtures: &Path,
    slot: &Path,
) -> Result<crate::fatcard::FatCard, String> {
    let image = data_dir.join("card.img");
    let mut card = if image.exists() {
        crate::fatcard::FatCard::create_from_existing(&image, slot)
    } else {
        let source = fixtures.join("memory-card");
        let mut files = Vec::new();
        let mut dirs = vec![source.clone()];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir)
                .map_err(|e| e.to_string())?
                .flatten()
            {
                let path = e.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(rel) = path.strip_prefix(&source) {
                    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
                    files.push((rel.to_string_lossy().replace('\\', "/"), bytes));
                }
            }
        }
        files.sort();
        let files: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
        crate::fatcard::FatCard::create(&image, slot, 128, 0x2026_1205, "PRINTMESH", &files)?
    };
    card.mount(true)?;
    Ok(card)
}

/// The demo's second lab, intermediary and store.
const SECOND_LAB: &str = "Kamakura Photo Lab";
const INTERMEDIARIES: [&str; 2] = ["Print Network North", "Print Network South"];
const SECOND_STORE: (&str, &str, &str) = (
    "store-kamakura",
    "printmesh Kamakura",
    "Kiosk 1, Kamakura Store",
);

/// A demo node's config: the test network's (its role's fixture, on 127.0.0.1),
/// enrolled.
fn demo_config(net: &TestNet, role: Role, peers: Vec<String>) -> Result<NodeConfig, NodeError> {
    let mut config = net.config(role, peers)?;
    enrol(&net.dir, &mut config)?;
    Ok(config)
}

/// [`demo_config`] for a node named `name` with its data in `DATA_DIR/<folder>`.
fn demo_config_named(
    net: &TestNet,
    role: Role,
    name: &str,
    folder: &str,
    peers: Vec<String>,
) -> Result<NodeConfig, NodeError> {
    let mut config = net.config(role, peers)?;
    config.name = name.to_string();
    config.data_dir = net.dir.join(folder);
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

/// Leaves the node's effective config as `DATA_DIR/<file>.toml`, for the operators'
/// commands (`printmesh lab --config DATA_DIR/lab.toml console`, …).
fn leave_config(net: &TestNet, config: &NodeConfig, file: &str) {
    let written = net.write(config).and_then(|path| {
        let to = net.dir.join(format!("{file}.toml"));
        if path != to {
            std::fs::rename(&path, &to).map_err(|source| NodeError::DataDir {
                path: to.display().to_string(),
                source,
            })?;
        }
        Ok(())
    });
    if let Err(e) = written {
        tracing::warn!("cannot leave the {} config: {e}", config.role);
    }
}

impl DemoNetwork {
    /// Starts an acquirer, a courier, two labs, two intermediaries (each knowing both
    /// labs and the acquirer, each store's jobs routed to its own lab first) and a
    /// kiosk in each of two stores (each knowing both intermediaries), and waits until
    /// every kiosk sees an intermediary that sees the acquirer and both labs.
    pub async fn start(
        data_dir: &Path,
        fixtures: &Path,
        mode: DemoMode,
    ) -> Result<DemoNetwork, NodeError> {
        let net = TestNet::named(data_dir, &format!("printmesh-demo-{}", std::process::id()))
            .with_fixtures(fixtures);
        let acquirer_config = demo_config(&net, Role::Acquirer, vec![])?;
        leave_config(&net, &acquirer_config, "acquirer");
        let acquirer = start_role(acquirer_config).await?;
        let courier_config = demo_config(&net, Role::Courier, vec![])?;
        leave_config(&net, &courier_config, "courier");
        let courier = start_role(courier_config).await?;
        let courier_addr = addr_of(&courier).await?;

        let mut labs = Vec::new();
        for (i, folder) in ["lab", "lab-2"].into_iter().enumerate() {
            let mut config = demo_config(&net, Role::Lab, vec![courier_addr.clone()])?;
            if i > 0 {
                config = demo_config_named(
                    &net,
                    Role::Lab,
                    SECOND_LAB,
                    folder,
                    vec![courier_addr.clone()],
                )?;
            }
            let hot_folder = data_dir.join(format!("{folder}-hotfolder"));
            if let Some(l) = config.lab.as_mut() {
                for p in &mut l.printers {
                    p.hot_folder = Some(hot_folder.clone());
                }
            }
            leave_config(&net, &config, folder);
            labs.push(start_role(config).await?);
            let printed = if i == 0 {
                "minilab-printed".to_string()
            } else {
                format!("{folder}-minilab-printed")
            };
            tokio::spawn(minilab_controller(hot_folder, data_dir.join(printed)));
            tokio::spawn(lab_operator(data_dir.join(folder)));
        }
        let lab_names: Vec<String> = labs.iter().map(|l| l.config.name.clone()).collect();

        // The content company, publishing the demo catalogue as it starts.
        let catalogue = crate::demo_catalogue::write(&data_dir.join("content-files"))
            .map_err(NodeError::Role)?;
        let mut content_config = net.bare(Role::Content, CONTENT_COMPANY, "content", vec![]);
        content_config.content = Some(crate::config::ContentConfig {
            catalogue: Some(catalogue),
        });
        enrol(&net.dir, &mut content_config)?;
        leave_config(&net, &content_config, "content");
        let content = start_role(content_config).await?;
        let content_addr = addr_of(&content).await?;

        let mut peers = vec![addr_of(&acquirer).await?, content_addr.clone()];
        for lab in &labs {
            peers.push(addr_of(lab).await?);
        }
        let first_store = {
            let file = fixtures.join("demo").join("kiosk.toml");
            NodeConfig::load(&file)?
                .kiosk
                .map(|k| k.store.to_string())
                .unwrap_or_default()
        };
        let mut intermediaries = Vec::new();
        for (i, name) in INTERMEDIARIES.into_iter().enumerate() {
            let folder = if i == 0 {
                "intermediary".to_string()
            } else {
                format!("intermediary-{}", i + 1)
            };
            let mut config =
                demo_config_named(&net, Role::Intermediary, name, &folder, peers.clone())?;
            if let (Some(im), [first, second]) =
                (config.intermediary.as_mut(), lab_names.as_slice())
            {
                // Each store's jobs go to its own lab first, the other lab after.
                let (first, second) = (first.clone(), second.clone());
                im.routes = vec![
                    crate::roles::intermediary::config::LabRoute {
                        store: first_store.clone(),
                        labs: vec![first.clone(), second.clone()],
                    },
                    crate::roles::intermediary::config::LabRoute {
                        store: SECOND_STORE.0.to_string(),
                        labs: vec![second, first],
                    },
                ];
            }
            leave_config(&net, &config, &folder);
            intermediaries.push(start_role(config).await?);
        }
        let mut kiosk_peers = Vec::new();
        for im in &intermediaries {
            kiosk_peers.push(addr_of(im).await?);
        }
        // Kiosks fetch downloads' bytes from the company.
        kiosk_peers.push(content_addr.clone());
        let mut card = None;

        let mut kiosks = Vec::new();
        let mut first_section = None;
        for i in 0..2 {
            let mut config = if i == 0 {
                demo_config(&net, Role::Kiosk, kiosk_peers.clone())?
            } else {
                let mut c = net.config(Role::Kiosk, kiosk_peers.clone())?;
                c.name = SECOND_STORE.2.to_string();
                c.data_dir = data_dir.join("kiosk-2");
                if let Some(k) = c.kiosk.as_mut() {
                    k.store = SECOND_STORE
                        .0
                        .parse()
                        .map_err(|e| NodeError::Role(format!("the demo's second store id: {e}")))?;
                    k.store_name = SECOND_STORE.1.to_string();
                }
                enrol(&net.dir, &mut c)?;
                c
            };
            if let Some(k) = config.kiosk.as_mut() {
                // Card data is sealed to this acquirer's key.
                k.acquirer_key_file = Some(crate::roles::acquirer::seal_pub_path(
                    &data_dir.join("acquirer"),
                ));
            }
            if i == 0 {
                // A real FAT32 card when the tools are here; else (the screen's) a
                // folder, and no downloads.
                let fat_slot = data_dir.join("card");
                match fat_card(data_dir, fixtures, &fat_slot) {
                    Ok(fat) => {
                        if let Some(k) = config.kiosk.as_mut() {
                            k.media_dir = Some(fat_slot.clone());
                            k.media_device = Some(fat.image.clone());
                        }
                        card = Some(Arc::new(std::sync::Mutex::new(fat)));
                    }
                    Err(e) => tracing::warn!(
                        "no FAT card for the demo ({e}): the kiosk sells prints only"
                    ),
                }
            }
            if mode == DemoMode::Screen && i == 0 {
                let io = |path: &Path| {
                    let path = path.display().to_string();
                    move |source| NodeError::DataDir { path, source }
                };
                let slot = data_dir.join("slot");
                if card.is_none() && !slot.join("DCIM").is_dir() {
                    copy_dir(&fixtures.join("memory-card"), &slot).map_err(io(&slot))?;
                }
                if let Some(k) = config.kiosk.as_mut() {
                    if card.is_none() {
                        k.media_dir = Some(slot);
                    }
                    k.chip_slot = Some(data_dir.join("chip"));
                    k.receipt_printer = Some(crate::roles::kiosk::receipt::PrinterConfig::File {
                        dir: data_dir.join("printer"),
                    });
                }
            }
            if i == 0 {
                first_section = config.kiosk.clone();
            }
            leave_config(&net, &config, if i == 0 { "kiosk" } else { "kiosk-2" });
            kiosks.push(crate::node::start_kiosk(config).await?);
        }
        let kiosk_section = first_section
            .ok_or_else(|| NodeError::Role("kiosk config has no [kiosk] section".into()))?;
        let wait = Duration::from_secs(20);
        let net_err = |e: crate::net::NetError| NodeError::Role(e.to_string());
        for im in &intermediaries {
            im.client
                .wait_for_role(Role::Acquirer, wait)
                .await
                .map_err(net_err)?;
            im.client
                .wait_for_peers(Role::Lab, labs.len(), wait)
                .await
                .map_err(net_err)?;
        }
        for (node, _) in &kiosks {
            node.client
                .wait_for_peers(Role::Intermediary, intermediaries.len(), wait)
                .await
                .map_err(net_err)?;
        }
        let cards_path = kiosk_section
            .cards
            .unwrap_or_else(|| fixtures.join("cards.toml"));
        let media_dir = kiosk_section
            .media_dir
            .unwrap_or_else(|| fixtures.join("memory-card"));
        let (kiosk_node, kiosk) = kiosks
            .first()
            .cloned()
            .ok_or_else(|| NodeError::Role("no kiosk".into()))?;
        Ok(DemoNetwork {
            data_dir: data_dir.to_path_buf(),
            acquirer,
            labs,
            courier,
            intermediaries,
            kiosk_node,
            kiosk,
            kiosks,
            cards: load_cards(&cards_path)?,
            media_dir,
            content,
            card,
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
            card: self.card.clone(),
        }
    }

    pub async fn shutdown(&self) {
        for (node, _) in &self.kiosks {
            node.shutdown().await;
        }
        for node in &self.intermediaries {
            node.shutdown().await;
        }
        for node in &self.labs {
            node.shutdown().await;
        }
        self.courier.shutdown().await;
        self.acquirer.shutdown().await;
        self.content.shutdown().await;
        if let Some(card) = &self.card {
            if let Ok(mut c) = card.lock() {
                c.eject();
            }
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

/// Follows the approved orders until the courier has delivered them to their store,
/// printing each step as the store's kiosk hears of it. `ids` are each order with the
/// index of its store's kiosk. Returns how many arrived.
pub async fn follow_orders(
    net: &DemoNetwork,
    ids: &[(printmesh_protocol::OrderId, usize)],
    timeout: Duration,
) -> usize {
    use printmesh_protocol::order::OrderState;
    let mut last: std::collections::HashMap<printmesh_protocol::OrderId, OrderState> =
        std::collections::HashMap::new();
    let until = tokio::time::Instant::now() + timeout;
    loop {
        for (id, k) in ids {
            let Some((node, _)) = net.kiosks.get(*k) else {
                continue;
            };
            let state = node.events.state_of(*id).unwrap_or(OrderState::Draft);
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

/// Where an order went: its store, the intermediary that answered and the lab that
/// prints it.
pub fn route_line(o: &KioskOrder, intermediary: Option<String>) -> String {
    let lab = match &o.answer {
        OrderResponse::Accepted(a) => a.lab.clone(),
        _ => "no lab".into(),
    };
    format!(
        "      store {}  via {}  printed by {lab}",
        o.store,
        intermediary.unwrap_or_else(|| "?".into())
    )
}

/// Places `orders` orders from the fixture memory card, the stores' kiosks in turn,
/// cycling through the test cards and print sizes; prints one line per answer and
/// where the order went. Returns the orders answered and those approved (with their
/// kiosk's index).
pub async fn run_orders(
    net: &DemoNetwork,
    orders: usize,
) -> Result<(usize, Vec<(printmesh_protocol::OrderId, usize)>), NodeError> {
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
        let k = i % net.kiosks.len().max(1);
        let Some((_, kiosk)) = net.kiosks.get(k) else {
            return Err(NodeError::Role("no kiosk".into()));
        };
        let id = kiosk
            .place_order(draft)
            .await
            .map_err(|e| NodeError::Role(e.to_string()))?;
        placed.push((id, k));
    }
    let mut answered = 0;
    let mut approved = Vec::new();
    for (id, k) in placed {
        let Some((_, kiosk)) = net.kiosks.get(k) else {
            continue;
        };
        match kiosk.wait_for_answer(id, ANSWER_TIMEOUT).await {
            Ok(order) => {
                answered += 1;
                if matches!(order.answer, OrderResponse::Accepted(_)) {
                    approved.push((id, k));
                }
                println!("{}", order_line(&order));
                println!("{}", route_line(&order, kiosk.served_by(id)));
            }
            Err(e) => println!("order {id}  no answer: {e}"),
        }
    }
    Ok((answered, approved))
}

/// Buys two of the content company's items onto the first kiosk's FAT card with the
/// first credit test card, as a customer at the screen would; returns what to print.
pub async fn run_download(net: &DemoNetwork) -> Result<String, NodeError> {
    use crate::roles::kiosk::downloads::{DownloadDraft, DownloadOutcome, DownloadStage};
    if net.card.is_none() {
        return Ok("downloads: no FAT card here (dosfstools, fusefat and mtools make one)".into());
    }
    let items: Vec<printmesh_protocol::content::ItemId> = ["dawn", "fuji"]
        .iter()
        .filter_map(|i| i.parse().ok())
        .collect();
    let Some(company) = net
        .kiosk
        .wait_for_items(&items, Duration::from_secs(30))
        .await
    else {
        return Ok("downloads: the catalogue did not reach the kiosk".into());
    };
    let Some(card) = net.cards.iter().find(|c| c.kind == "credit") else {
        return Err(NodeError::Role("no credit test card".into()));
    };
    let draft = DownloadDraft {
        company,
        items,
        method: card.method(),
        card: card.read().map_err(NodeError::Role)?,
        entry: printmesh_protocol::seal::EntryMode::Swipe,
        pin: None,
        shown_total: None,
    };
    let outcome = net
        .kiosk
        .buy_downloads(draft, &|_| {})
        .await
        .map_err(|e| NodeError::Role(e.to_string()))?;
    Ok(match outcome {
        DownloadOutcome::Done(d) => {
            let written = match &d.stage {
                DownloadStage::Done { written, .. } | DownloadStage::Written { written, .. } => {
                    written.clone()
                }
                _ => Vec::new(),
            };
            let titles: Vec<String> = d.items.iter().map(|i| i.title.en.clone()).collect();
            let codes: Vec<String> = written
                .iter()
                .map(|w| format!("{} ({})", w.card_path, w.code))
                .collect();
            format!(
                "download {}  {}  {}  written to card {:04X}-{:04X}: {}",
                d.order_id,
                titles.join(", "),
                d.total,
                d.card_serial >> 16,
                d.card_serial & 0xFFFF,
                codes.join(", ")
            )
        }
        DownloadOutcome::Declined(id, code) => {
            format!("download {id}  declined ({})", code.iso8583())
        }
        DownloadOutcome::Rejected(id, why) => format!("download {id}  not sold: {why}"),
        DownloadOutcome::WriteFailed(id, e) => format!(
            "download {}  not written: {e}",
            id.map(|i| i.to_string()).unwrap_or_default()
        ),
    })
}
