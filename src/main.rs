//! `printmesh`: one binary, one role per node, plus the demo and operator tools. This
//! file only parses the command line and calls into the crates.

mod chaos;

use printmesh_nodes::roles::acquirer::AcquirerCommand;
use printmesh_nodes::roles::content::ContentCommand;
use printmesh_nodes::roles::courier::CourierCommand;
use printmesh_nodes::roles::kiosk::KioskCommand;
use printmesh_nodes::roles::lab::LabCommand;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use printmesh_nodes::cards::load_cards;
use printmesh_nodes::config::NodeConfig;
use printmesh_nodes::demo::{
    default_fixtures_dir, follow_orders, run_orders, DemoMode, DemoNetwork,
};
use printmesh_nodes::node::{admin_call, AdminRequest};
use printmesh_nodes::roles::kiosk::{draft_from_card, order_json};
use printmesh_protocol::messages::Role;
use printmesh_protocol::pricing::PrintSize;
use printmesh_protocol::OrderId;

#[derive(Parser)]
#[command(
    name = "printmesh",
    version,
    about = "Photo-print ordering and card-payment network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a kiosk: the customer screen in this terminal (or, with --headless, only
    /// the node that delivers its outbox; with `order`, place one order and exit).
    Kiosk {
        #[arg(long)]
        config: PathBuf,
        /// No screen: run the kiosk node and deliver its outbox.
        #[arg(long)]
        headless: bool,
        #[command(subcommand)]
        action: Option<KioskAction>,
    },
    /// Run an intermediary node (or, with `report`, print a day's settlement).
    Intermediary {
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<ReportAction>,
    },
    /// Run an acquirer (settlement institution) node, or settle, report, show its key.
    Acquirer {
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<AcquirerAction>,
    },
    /// Run a print-lab node, or its operator's console, or report, or act on an order.
    Lab {
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<LabAction>,
    },
    /// Run a courier node, or show its manifest, or report parcels moving.
    Courier {
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<CourierAction>,
    },
    /// Run a content company's node, or publish its catalogue, or show it.
    Content {
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<ContentAction>,
    },
    /// The whole network on this machine, with the kiosk screen in this terminal.
    Demo {
        /// Run without the kiosk screen: place orders and print one line per order.
        #[arg(long)]
        headless: bool,
        /// Orders to place.
        #[arg(long, default_value_t = 4)]
        orders: usize,
        /// Headless: then follow the approved orders through the lab and the courier
        /// until they are at the store (about half a minute).
        #[arg(long)]
        follow: bool,
        /// Where the nodes keep their state (a fresh temporary directory if not given).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The fixtures directory (memory card, test cards, demo configs).
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
    /// A seeded fault run: a network of separate processes (2 acquirers, 3
    /// intermediaries, 3 labs, 2 couriers, kiosks in 3 stores), orders placed while
    /// nodes are killed, paused, crashed at chosen points and lose their disk; then
    /// every invariant checked from each node's records.
    Chaos {
        /// Run this seed only (what a failing run prints to reproduce it).
        #[arg(long)]
        seed: Option<u64>,
        /// How many seeds to run (from a random first one).
        #[arg(long, default_value_t = 1)]
        seeds: usize,
        /// Orders each of the three kiosks places.
        #[arg(long, default_value_t = 4)]
        orders: usize,
        /// Keep each seed's nodes, configs and logs under DIR/seed-N.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Benchmark: the seed's orders back to back with no faults, then with its
        /// faults; orders per second and latency of both, and the ratio.
        #[arg(long)]
        bench: bool,
        /// Only these kinds of fault: kill, pause, crash, lose-disk, partition, slow,
        /// clock, disk-full (comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Memory-card tools for operators.
    Media {
        #[command(subcommand)]
        action: MediaAction,
    },
    /// Print what a stopped node holds, as JSON.
    Inspect {
        #[arg(long)]
        config: PathBuf,
    },
    /// The store network's membership: its root key, certificates and revocations.
    Network {
        #[command(subcommand)]
        action: NetworkAction,
    },
    /// Print a node's PeerId (making its identity key on first use): what
    /// `network enroll --peer-id` needs.
    PeerId {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum NetworkAction {
    /// Create the network's root key and `network.toml` in DIR (keep DIR off the nodes).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The network's name (the nodes' `network` setting).
        #[arg(long)]
        name: String,
    },
    /// Issue a certificate to a node: its PeerId, role and name, signed by the root.
    Enroll {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        role: String,
        #[arg(long)]
        peer_id: String,
        #[arg(long)]
        name: String,
        /// A kiosk's store (required for a kiosk; its intermediary serves it that
        /// store's orders only).
        #[arg(long)]
        store: Option<String>,
        /// Days it is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Revoke a certificate by serial, or every one issued to a PeerId.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        id: String,
    },
    /// Hand a revocation file to a running node of the network, which applies it and
    /// gossips it: the revoked peer is cut off everywhere within seconds.
    Publish {
        /// Any running node's config.
        #[arg(long)]
        config: PathBuf,
        /// The `revoked/<serial>.rev` file.
        file: PathBuf,
    },
    /// Check a certificate file against the network's root key and print it.
    Show {
        #[arg(long)]
        dir: PathBuf,
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum AcquirerAction {
    /// Close a settlement batch with each intermediary (the acquirer must be running).
    Settle,
    /// The reconciliation of a day's settlement, and the card statements.
    Report {
        /// The settlement date (default: today, UTC).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        /// CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Print the acquirer's public sealing key (kiosks seal card data to it).
    Key,
    /// Give a captured payment back before settlement (a refund, or a chargeback the
    /// issuer raised): its download licences are revoked everywhere.
    Refund {
        order_id: String,
        #[arg(long, default_value = "refunded at the customer's request")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum ReportAction {
    /// The reconciliation of a day's settlement.
    Report {
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Subcommand)]
enum LabAction {
    /// The print fees received for a day's settlement.
    Report {
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        #[arg(long)]
        csv: bool,
    },
    /// Hand printed orders to the courier (the lab must be running).
    Ship {
        /// The order id (or --all).
        order_id: Option<String>,
        /// Every printed order.
        #[arg(long)]
        all: bool,
    },
    /// The operator's screen: queue, printers, throughput, promises at risk.
    Console,
    /// The prints of an order are made (by hand, or seen at the printer).
    MarkPrinted { order_id: String },
    /// Print an order again.
    Reprint { order_id: String },
    /// The queue, printers and promises at risk, as JSON.
    Status,
}

#[derive(Subcommand)]
enum ContentAction {
    /// Publish a catalogue file: every item's file goes into the node's store and the
    /// catalogue is signed at its next version (items left out are withdrawn).
    Publish { catalogue: PathBuf },
    /// The catalogue published last (JSON).
    Catalogue,
    /// The download sales paid in a day's settlement.
    Report {
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Subcommand)]
enum CourierAction {
    /// The manifest: every parcel, its store and where it is (JSON).
    Manifest,
    /// Parcels leave the depot (one order, or every picked-up one).
    Depart { order_id: Option<String> },
    /// Parcels reach their store (one order, every one for --store, or all).
    Deliver {
        order_id: Option<String>,
        #[arg(long)]
        store: Option<String>,
    },
}

#[derive(Subcommand)]
enum MediaAction {
    /// List a memory card's photos (DCF) with their EXIF facts and DPOF quantities.
    Scan {
        /// The card's root (the folder holding DCIM/).
        dir: PathBuf,
        /// One JSON object per image instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KioskAction {
    /// Counter mode without the screen: the customer has collected a delivered order
    /// (the kiosk must be running).
    Collect { order_id: String },
    /// Give up an order still waiting for its authorisation (the kiosk must be
    /// running): its hold is released wherever it is, and nothing is charged.
    Cancel { order_id: String },
    /// Place one order from the memory card in the media slot, wait for the answer,
    /// print it as JSON, and exit.
    Order {
        /// Test card to "swipe" (a name from the kiosk's cards file).
        #[arg(long)]
        card: String,
        /// Print size for every photo (L, 2L, KG, 8x10, A4).
        #[arg(long, default_value = "L")]
        size: String,
        /// Submit under this order id (a customer retrying the same order).
        #[arg(long)]
        order_id: Option<String>,
        /// The PIN to "type" on the PIN pad (test cards only); it is turned into an
        /// encrypted PIN block at once, as the kiosk screen does.
        #[arg(long)]
        pin: Option<String>,
        /// How to pay: credit, debit, point or ic (default: the test card's kind).
        #[arg(long)]
        method: Option<String>,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Buy downloads onto the memory card in the media slot (kiosk.media_dir, its
    /// device kiosk.media_device), paid with a test card; print the outcome as JSON.
    Download {
        #[arg(long)]
        card: String,
        /// An item id from a content company's catalogue (again for more).
        #[arg(long = "item", required = true)]
        items: Vec<String>,
        #[arg(long)]
        pin: Option<String>,
        #[arg(long)]
        method: Option<String>,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Write again, without charge, every item whose licence is on the inserted card
    /// and whose file is missing or damaged; print what was done as JSON.
    Rewrite {
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
}

/// Logs go to stderr, or to a file while the kiosk screen owns the terminal.
fn init_logging(default: &str, file: Option<&std::path::Path>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let opened = file.and_then(|path| {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    if file.is_some() && opened.is_none() {
        // The screen owns the terminal: no log rather than a log across the screen.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::sink)
            .init();
        return;
    }
    match opened {
        Some(f) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::sync::Mutex::new(f))
            .with_ansi(false)
            .init(),
        None => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Sends a command to the running node's admin socket and prints its answer.
fn admin(config: &NodeConfig, request: &AdminRequest, what: &str) -> Result<bool> {
    match admin_call(&config.data_dir, request)? {
        Some(r) => {
            println!("{}", r.text);
            Ok(r.ok)
        }
        None => bail!(
            "the {} is not running (no admin socket in {}); start it to {what}",
            config.role,
            config.data_dir.display()
        ),
    }
}

fn network(action: NetworkAction) -> Result<bool> {
    use printmesh_nodes::membership as m;
    match action {
        NetworkAction::Init { dir, name } => {
            let file = m::init(&dir, &name)?;
            println!(
                "network {} in {}\nroot public key (each node's [membership] names it):\n{}\npre-shared key (each node's psk_file, optional): {}",
                file.name,
                dir.display(),
                file.root_public_key,
                dir.join("swarm.key").display()
            );
        }
        NetworkAction::Enroll {
            dir,
            role,
            peer_id,
            name,
            store,
            days,
        } => {
            let role: Role = serde_json::from_value(serde_json::Value::String(role.clone()))
                .with_context(|| format!("{role:?} is not a role"))?;
            let peer: m::PeerId = peer_id
                .parse()
                .with_context(|| format!("{peer_id:?} is not a PeerId"))?;
            let store = store
                .map(|s| {
                    s.parse()
                        .with_context(|| format!("{s:?} is not a store id"))
                })
                .transpose()?;
            let (path, cert) = m::enroll(&dir, role, peer, &name, store, days)?;
            println!("{}", m::describe(&cert));
            println!("certificate: {}", path.display());
        }
        NetworkAction::Revoke { dir, id } => {
            for (path, r) in m::revoke_id(&dir, &id)? {
                println!("revoked certificate {}: {}", r.serial, path.display());
            }
        }
        NetworkAction::Publish { config, file } => {
            let config = NodeConfig::load(&config)?;
            let revocation = std::fs::read(&file).with_context(|| file.display().to_string())?;
            return admin(&config, &AdminRequest::Revoke { revocation }, "publish it");
        }
        NetworkAction::Show { dir, file } => {
            let root = m::load(&dir)?.root().map_err(anyhow::Error::msg)?;
            let bytes = std::fs::read(&file).with_context(|| file.display().to_string())?;
            let signed = printmesh_protocol::membership::SignedCertificate::decode(&bytes)?;
            let cert = m::verify(&signed, &root)?;
            println!("{}", m::describe(&cert));
        }
    }
    Ok(true)
}

/// A day's settlement report: from the running node, or from its database when it is
/// stopped.
fn report(config: &NodeConfig, date: Option<chrono::NaiveDate>, csv: bool) -> Result<bool> {
    let date = date.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let role = config.role;
    let Some(request) = printmesh_nodes::roles::report_request(role, date, csv) else {
        bail!("{} has no settlement report", role.with_article());
    };
    if let Some(r) = admin_call(&config.data_dir, &request)? {
        print!("{}", r.text);
        return Ok(r.ok);
    }
    let db = printmesh_nodes::store::Db::open(&config.data_dir.join("db"))?;
    let Some(report) = printmesh_nodes::roles::report_from_db(role, &db, date)? else {
        bail!("{} has no settlement report", role.with_article());
    };
    print!("{}", report.render(csv));
    Ok(true)
}

fn load(config: &std::path::Path, role: Role) -> Result<NodeConfig> {
    let config = NodeConfig::load(config)?;
    if config.role != role {
        bail!("the config is for a {}, not a {role}", config.role);
    }
    Ok(config)
}

struct OrderArgs {
    card: String,
    size: String,
    order_id: Option<String>,
    pin: Option<String>,
    method: Option<String>,
    timeout_secs: u64,
}

/// A test card by name, from the kiosk config's test-card file.
fn test_card(config: &NodeConfig, name: &str) -> Result<printmesh_nodes::cards::TestCard> {
    let cards_path = config
        .kiosk
        .as_ref()
        .context("no [kiosk] section")?
        .cards
        .clone()
        .context("the kiosk config names no test-card file (kiosk.cards)")?;
    load_cards(&cards_path)?
        .into_iter()
        .find(|c| c.name == name)
        .with_context(|| format!("no test card named {name:?} in {}", cards_path.display()))
}

async fn kiosk_order(config: NodeConfig, args: OrderArgs) -> Result<bool> {
    let OrderArgs {
        card,
        size,
        order_id,
        pin,
        method,
        timeout_secs,
    } = args;
    let kiosk_cfg = config.kiosk.clone().context("no [kiosk] section")?;
    let card = test_card(&config, &card)?;
    let media = kiosk_cfg
        .media_dir
        .context("the kiosk config names no media slot (kiosk.media_dir)")?;
    let size: PrintSize = size.parse()?;
    let method = match method.as_deref() {
        None => card.method(),
        Some(m) => printmesh_nodes::cards::parse_method(m)
            .with_context(|| format!("--method {m:?}: use credit, debit, point or ic"))?,
    };
    let data = card.read().map_err(anyhow::Error::msg)?;
    let mut draft = draft_from_card(&media, size, method, data)?;
    if let Some(id) = order_id {
        draft.order_id = Some(id.parse::<OrderId>()?);
    }
    if method == printmesh_protocol::messages::PaymentMethod::IcCard {
        draft.entry = printmesh_protocol::seal::EntryMode::Chip;
    }
    if let Some(pin) = pin {
        // As the PIN pad does: the digits become a PIN, sealed with the card at once.
        let mut pad = printmesh_nodes::roles::kiosk::pinpad::PinPad::default();
        for c in pin.chars() {
            pad.push(c);
        }
        draft.pin = Some(pad.take_pin()?);
    }
    let (node, kiosk) = printmesh_nodes::node::start_kiosk(config).await?;
    let id = kiosk.place_order(draft).await?;
    let result = kiosk
        .wait_for_answer(id, Duration::from_secs(timeout_secs))
        .await;
    node.shutdown().await;
    match result {
        Ok(order) => {
            println!("{}", order_json(&order));
            Ok(true)
        }
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({ "order_id": id.to_string(), "outcome": "pending", "reason": e.to_string() })
            );
            Ok(false)
        }
    }
}

async fn kiosk_download(
    config: NodeConfig,
    card: String,
    items: Vec<String>,
    pin: Option<String>,
    method: Option<String>,
    timeout_secs: u64,
) -> Result<bool> {
    use printmesh_nodes::roles::kiosk::downloads::{outcome_json, DownloadDraft};
    let card = test_card(&config, &card)?;
    let method = match method.as_deref() {
        None => card.method(),
        Some(m) => printmesh_nodes::cards::parse_method(m)
            .with_context(|| format!("--method {m:?}: use credit, debit, point or ic"))?,
    };
    let items = items
        .iter()
        .map(|i| i.parse().map_err(anyhow::Error::msg))
        .collect::<Result<Vec<printmesh_protocol::content::ItemId>>>()?;
    let data = card.read().map_err(anyhow::Error::msg)?;
    let pin = match pin {
        Some(pin) => {
            let mut pad = printmesh_nodes::roles::kiosk::pinpad::PinPad::default();
            for c in pin.chars() {
                pad.push(c);
            }
            Some(pad.take_pin()?)
        }
        None => None,
    };
    let entry = if method == printmesh_protocol::messages::PaymentMethod::IcCard {
        printmesh_protocol::seal::EntryMode::Chip
    } else {
        printmesh_protocol::seal::EntryMode::Swipe
    };
    let (node, kiosk) = printmesh_nodes::node::start_kiosk(config).await?;
    let timeout = Duration::from_secs(timeout_secs);
    let Some(company) = kiosk.wait_for_items(&items, timeout).await else {
        node.shutdown().await;
        bail!("no catalogue here sells every item asked for");
    };
    let draft = DownloadDraft {
        company,
        items,
        method,
        card: data,
        entry,
        pin,
        shown_total: None,
    };
    let progress = |p: printmesh_nodes::roles::kiosk::downloads::DownloadProgress| {
        tracing::debug!("{p:?}");
    };
    let result = kiosk.buy_downloads(draft, &progress).await;
    node.shutdown().await;
    let outcome = result?;
    println!("{}", outcome_json(&outcome));
    Ok(matches!(
        outcome,
        printmesh_nodes::roles::kiosk::downloads::DownloadOutcome::Done(_)
    ))
}

async fn demo(
    headless: bool,
    orders: usize,
    follow: bool,
    data_dir: PathBuf,
    fixtures: Option<PathBuf>,
) -> Result<bool> {
    let fixtures = fixtures.unwrap_or_else(default_fixtures_dir);
    if !headless {
        if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            bail!("the kiosk screen needs a terminal; use --headless to run the demo without it");
        }
        let net = DemoNetwork::start(&data_dir, &fixtures, DemoMode::Screen).await?;
        // The first customer finds the downloads on sale.
        if net.card.is_some() {
            net.kiosk.wait_for_items(&[], Duration::from_secs(15)).await;
        }
        let demo = net.screen_demo();
        let result = printmesh_nodes::roles::kiosk::run::run(
            net.kiosk_node.clone(),
            net.kiosk.clone(),
            Some(demo),
        )
        .await;
        net.shutdown().await;
        result?;
        println!(
            "printmesh demo ended. Receipts: {}; log: {}",
            data_dir.join("kiosk").join("receipts").display(),
            data_dir.join("demo.log").display()
        );
        return Ok(true);
    }
    println!(
        "printmesh demo: an acquirer, a courier, two labs, two intermediaries, a content company and kiosks in two stores on 127.0.0.1; state in {}",
        data_dir.display()
    );
    let net = DemoNetwork::start(&data_dir, &fixtures, DemoMode::Headless).await?;
    let (answered, approved) = run_orders(&net, orders).await?;
    println!("{answered} of {orders} orders answered");
    println!("{}", printmesh_nodes::demo::run_download(&net).await?);
    let mut arrived = approved.len();
    if follow {
        arrived = follow_orders(&net, &approved, Duration::from_secs(120)).await;
        println!(
            "{arrived} of {} approved orders delivered to their store",
            approved.len()
        );
    }
    net.shutdown().await;
    Ok(answered == orders && arrived == approved.len())
}

async fn run(cli: Cli, demo_dir: Option<PathBuf>) -> Result<bool> {
    match cli.command {
        Command::Kiosk {
            config,
            headless,
            action,
        } => {
            let config = load(&config, Role::Kiosk)?;
            match action {
                None if headless => printmesh_nodes::node::run_until_signal(config).await?,
                None => {
                    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                        bail!("the kiosk screen needs a terminal; use --headless to run only the node");
                    }
                    let (node, kiosk) = printmesh_nodes::node::start_kiosk(config).await?;
                    let result =
                        printmesh_nodes::roles::kiosk::run::run(node.clone(), kiosk, None).await;
                    node.shutdown().await;
                    result?;
                }
                Some(KioskAction::Cancel { order_id }) => {
                    let order_id: OrderId = order_id.parse()?;
                    return admin(
                        &config,
                        &AdminRequest::role(&KioskCommand::Cancel { order_id }),
                        "cancel it",
                    );
                }
                Some(KioskAction::Collect { order_id }) => {
                    let order_id: OrderId = order_id.parse()?;
                    return admin(
                        &config,
                        &AdminRequest::role(&KioskCommand::Collect { order_id }),
                        "hand it over",
                    );
                }
                Some(KioskAction::Order {
                    card,
                    size,
                    order_id,
                    pin,
                    method,
                    timeout_secs,
                }) => {
                    let args = OrderArgs {
                        card,
                        size,
                        order_id,
                        pin,
                        method,
                        timeout_secs,
                    };
                    return kiosk_order(config, args).await;
                }
                Some(KioskAction::Download {
                    card,
                    items,
                    pin,
                    method,
                    timeout_secs,
                }) => {
                    return kiosk_download(config, card, items, pin, method, timeout_secs).await;
                }
                Some(KioskAction::Rewrite { timeout_secs }) => {
                    let (node, kiosk) = printmesh_nodes::node::start_kiosk(config).await?;
                    if kiosk
                        .wait_for_sources(Duration::from_secs(timeout_secs.min(10)))
                        .await
                    {
                        kiosk.sync_catalogues().await;
                        // Refunds revoke licences: hear them before honouring any.
                        kiosk.settle_events(Duration::from_secs(10)).await;
                    }
                    let result = kiosk.rewrite_licensed().await;
                    node.shutdown().await;
                    let list = result?;
                    println!(
                        "{}",
                        printmesh_nodes::roles::kiosk::downloads::rewrites_json(&list)
                    );
                    return Ok(list.iter().all(|r| {
                        !matches!(
                            r,
                            printmesh_nodes::roles::kiosk::downloads::Rewrite::Refused { .. }
                        )
                    }));
                }
            }
        }
        Command::Intermediary { config, action } => {
            let config = load(&config, Role::Intermediary)?;
            match action {
                None => printmesh_nodes::node::run_until_signal(config).await?,
                Some(ReportAction::Report { date, csv }) => return report(&config, date, csv),
            }
        }
        Command::Acquirer { config, action } => {
            let config = load(&config, Role::Acquirer)?;
            match action {
                None => printmesh_nodes::node::run_until_signal(config).await?,
                Some(AcquirerAction::Report { date, csv }) => return report(&config, date, csv),
                Some(AcquirerAction::Refund { order_id, reason }) => {
                    let order_id: OrderId = order_id.parse()?;
                    return admin(
                        &config,
                        &AdminRequest::role(&AcquirerCommand::Refund { order_id, reason }),
                        "refund it",
                    );
                }
                Some(AcquirerAction::Settle) => {
                    return admin(
                        &config,
                        &AdminRequest::role(&AcquirerCommand::Settle),
                        "settle",
                    );
                }
                Some(AcquirerAction::Key) => {
                    let path = printmesh_nodes::roles::acquirer::seal_pub_path(&config.data_dir);
                    let key = std::fs::read_to_string(&path).with_context(|| {
                        format!(
                            "{}: start the acquirer once to make its sealing key",
                            path.display()
                        )
                    })?;
                    println!("{}", key.trim());
                }
            }
        }
        Command::Lab { config, action } => {
            let config = load(&config, Role::Lab)?;
            match action {
                None => printmesh_nodes::node::run_until_signal(config).await?,
                Some(LabAction::Report { date, csv }) => return report(&config, date, csv),
                Some(LabAction::Ship { order_id, all }) => {
                    let request = match (order_id, all) {
                        (Some(id), false) => LabCommand::Ship {
                            order_id: id.parse()?,
                        },
                        (None, true) => LabCommand::ShipAllPrinted,
                        _ => bail!("give an order id or --all"),
                    };
                    return admin(&config, &AdminRequest::role(&request), "ship");
                }
                Some(LabAction::Console) => {
                    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                        bail!("the lab console needs a terminal; `lab status` prints the same as JSON");
                    }
                    printmesh_nodes::roles::lab::console::run(&config.data_dir)?;
                }
                Some(LabAction::MarkPrinted { order_id }) => {
                    let order_id: OrderId = order_id.parse()?;
                    return admin(
                        &config,
                        &AdminRequest::role(&LabCommand::MarkPrinted { order_id }),
                        "mark it printed",
                    );
                }
                Some(LabAction::Reprint { order_id }) => {
                    let order_id: OrderId = order_id.parse()?;
                    return admin(
                        &config,
                        &AdminRequest::role(&LabCommand::Reprint { order_id }),
                        "print it again",
                    );
                }
                Some(LabAction::Status) => {
                    return admin(
                        &config,
                        &AdminRequest::role(&LabCommand::LabStatus),
                        "see its status",
                    );
                }
            }
        }
        Command::Courier { config, action } => {
            let config = load(&config, Role::Courier)?;
            let id = |s: Option<String>| s.map(|s| s.parse::<OrderId>()).transpose();
            match action {
                None => printmesh_nodes::node::run_until_signal(config).await?,
                Some(CourierAction::Manifest) => {
                    return admin(
                        &config,
                        &AdminRequest::role(&CourierCommand::Manifest),
                        "show its manifest",
                    )
                }
                Some(CourierAction::Depart { order_id }) => {
                    let order_id = id(order_id)?;
                    return admin(
                        &config,
                        &AdminRequest::role(&CourierCommand::Depart { order_id }),
                        "report it",
                    );
                }
                Some(CourierAction::Deliver { order_id, store }) => {
                    let order_id = id(order_id)?;
                    let store = store.map(|s| s.parse()).transpose()?;
                    return admin(
                        &config,
                        &AdminRequest::role(&CourierCommand::Deliver { order_id, store }),
                        "report it",
                    );
                }
            }
        }
        Command::Content { config, action } => {
            let config = load(&config, Role::Content)?;
            match action {
                None => printmesh_nodes::node::run_until_signal(config).await?,
                Some(ContentAction::Publish { catalogue }) => {
                    let path = std::path::absolute(&catalogue)
                        .with_context(|| format!("{}", catalogue.display()))?;
                    return admin(
                        &config,
                        &AdminRequest::role(&ContentCommand::Publish { path }),
                        "publish the catalogue",
                    );
                }
                Some(ContentAction::Report { date, csv }) => return report(&config, date, csv),
                Some(ContentAction::Catalogue) => {
                    return admin(
                        &config,
                        &AdminRequest::role(&ContentCommand::Catalogue),
                        "show its catalogue",
                    )
                }
            }
        }
        Command::Demo {
            headless,
            orders,
            fixtures,
            follow,
            ..
        } => {
            let data_dir = demo_dir.context("no data directory for the demo")?;
            return demo(headless, orders, follow, data_dir, fixtures).await;
        }
        Command::Media {
            action: MediaAction::Scan { dir, json },
        } => {
            let infos = printmesh_nodes::media::scan_info(&dir)?;
            for i in &infos {
                if json {
                    println!("{}", serde_json::to_string(i)?);
                } else {
                    let size = match (i.width, i.height) {
                        (Some(w), Some(h)) => format!("{w}x{h}"),
                        _ => "-".into(),
                    };
                    let thumb = serde_json::to_value(i.thumbnail)?;
                    println!(
                        "{:<24} {:>11}  orient {}  {:<19}  thumb {:<6}  dpof {:<2}  {}",
                        i.dcf_name,
                        size,
                        i.orientation,
                        i.taken_at.as_deref().unwrap_or("-"),
                        thumb.as_str().unwrap_or("-"),
                        i.dpof_quantity
                            .map(|q| q.to_string())
                            .unwrap_or_else(|| "-".into()),
                        i.error.as_deref().unwrap_or("")
                    );
                }
            }
        }
        Command::Network { action } => return network(action),
        Command::PeerId { config } => {
            let config = NodeConfig::load(&config)?;
            let key = printmesh_nodes::node::identity(&config.data_dir)?;
            println!("{}", key.public().to_peer_id());
        }
        Command::Chaos {
            seed,
            seeds,
            orders,
            keep,
            bench,
            only,
        } => {
            return tokio::task::spawn_blocking(move || {
                if bench {
                    chaos::bench(seed, orders)
                } else {
                    chaos::run(seed, seeds, orders, keep, only)
                }
            })
            .await?;
        }
        Command::Inspect { config } => {
            let config = NodeConfig::load(&config)?;
            let value = printmesh_nodes::roles::inspect(&config)?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
    }
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match &cli.command {
        Command::Demo { headless: true, .. }
        | Command::Chaos { .. }
        | Command::Inspect { .. }
        | Command::Kiosk {
            action: Some(_), ..
        } => "warn",
        _ => "info",
    };
    // The demo's state: the directory given, or a fresh one removed at the end.
    let mut _demo_tmp = None;
    let demo_dir = match &cli.command {
        Command::Demo {
            data_dir: Some(d), ..
        } => Some(d.clone()),
        Command::Demo { data_dir: None, .. } => match tempfile::tempdir() {
            Ok(t) => {
                let path = t.path().to_path_buf();
                _demo_tmp = Some(t);
                Some(path)
            }
            Err(e) => {
                eprintln!("error: cannot make a directory for the demo: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    // While a kiosk screen owns the terminal, logs go to a file.
    let log_file = match &cli.command {
        Command::Kiosk {
            config,
            headless: false,
            action: None,
        } => NodeConfig::load(config)
            .ok()
            .map(|c| c.data_dir.join("kiosk.log")),
        Command::Demo {
            headless: false, ..
        } => demo_dir.as_ref().map(|d| d.join("demo.log")),
        _ => None,
    };
    init_logging(default_log, log_file.as_deref());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, demo_dir)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
