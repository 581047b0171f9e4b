//! The kiosk screen in a real terminal: crossterm input, the devices, the node, and the
//! [`App`] state machine between them.
//!
//! Every source of events runs in its own task or thread and sends [`Action`]s into one
//! bounded channel: the keyboard (and a keyboard-wedge card reader typing into it),
//! a clock tick, the media-slot watcher, the chip reader, a serial or input-event card
//! reader, the network's state, the thumbnail workers, and the tasks that carry out
//! effects (placing an order, printing a receipt). The loop applies each action,
//! carries out the effects it returns, and redraws. Nothing slow runs on the loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures::StreamExt;
use printmesh_protocol::messages::{OrderRequest, OrderResponse, Role};
use ratatui::layout::Size;
use tokio::sync::mpsc;

use super::app::{Action, App, AppConfig, DemoCard, Effect, Key, OrderPlan, Screen};
use super::chip::{ChipReader, FileChipReader};
use super::receipt;
use super::thumbs::{LoaderEvent, ThumbLoader};
use super::ui::{preview_area, Ui};
use crate::media::scan;
use crate::node::{now_ms, Node};
use crate::roles::kiosk::{Draft, Kiosk};

/// How often the media slot is looked at.
pub const SLOT_POLL: Duration = Duration::from_millis(400);
/// How often the chip reader is polled.
pub const CHIP_POLL: Duration = Duration::from_millis(300);
/// The screen's clock.
pub const TICK: Duration = Duration::from_millis(250);
/// Most actions waiting for the loop.
pub const ACTION_QUEUE: usize = 4096;
/// Thumbnail worker threads.
pub const THUMB_WORKERS: usize = 2;

/// What the demo adds to the kiosk screen.
pub struct Demo {
    pub cards: Vec<DemoCard>,
    /// F5 takes the memory card out of the slot (into this directory) and puts it
    /// back.
    pub card_shelf: PathBuf,
    /// The card, when it is a FAT image: F5 ejects it and mounts it again.
    pub card: Option<Arc<std::sync::Mutex<crate::fatcard::FatCard>>>,
}

enum Msg {
    App(Action),
    Quit,
    DemoToggleMedia,
}

/// The richer-protocol preview: rebuilt when the photo or the area changes.
struct RichPreview {
    picker: ratatui_image::picker::Picker,
    built_for: Option<(u64, usize, ratatui::layout::Rect)>,
    protocol: Option<ratatui_image::protocol::Protocol>,
}

fn app_config(node: &Node, kiosk: &Kiosk, demo: Option<&Demo>) -> AppConfig {
    let k = kiosk.config();
    AppConfig {
        store_name: k.store_name.clone(),
        kiosk_name: node.config.name.clone(),
        prices: kiosk.prices().clone(),
        lang: k.language,
        credit_pin: k.credit_pin,
        pin_pad: kiosk.takes_pins(),
        idle_timeout_ms: (k.idle_timeout_secs * 1000) as i64,
        thanks_timeout_ms: (k.thanks_timeout_secs * 1000) as i64,
        offline_floor_limit_minor: k.offline_floor_limit_minor,
        offline_store_limit_minor: k.offline_store_limit(),
        staff_pin: k.staff_pin.clone().map(super::app::Redacted),
        demo_cards: demo.map(|d| d.cards.clone()).unwrap_or_default(),
        utc_offset_hours: k.utc_offset_hours,
        downloads: k.media_device.is_some(),
    }
}

fn map_key(ev: KeyEvent) -> Option<Result<Key, ()>> {
    if ev.kind != KeyEventKind::Press {
        return None;
    }
    if ev.modifiers.contains(KeyModifiers::CONTROL) && ev.code == KeyCode::Char('c') {
        return Some(Err(()));
    }
    Some(Ok(match ev.code {
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::F(n) => Key::F(n),
        _ => return None,
    }))
}

/// Whether to ask the terminal which graphics protocol it speaks. The query's reader
/// thread keeps reading stdin until the terminal answers, so a terminal that never
/// answers would lose the customer's first key: ask only terminals that announce a
/// graphics protocol (kitty, WezTerm, iTerm2, Ghostty, foot, mlterm, Konsole), or when
/// `PRINTMESH_GRAPHICS=query`. `PRINTMESH_GRAPHICS=halfblocks` never asks.
fn wants_graphics_query() -> bool {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    match var("PRINTMESH_GRAPHICS").as_str() {
        "query" => return true,
        "halfblocks" => return false,
        _ => {}
    }
    let term = var("TERM");
    let program = var("TERM_PROGRAM");
    !var("KITTY_WINDOW_ID").is_empty()
        || !var("KONSOLE_VERSION").is_empty()
        || ["kitty", "foot", "mlterm", "ghostty", "wezterm"]
            .iter()
            .any(|t| term.contains(t))
        || ["WezTerm", "iTerm.app", "ghostty"].contains(&program.as_str())
}

/// A card is in the slot: it holds a camera's `DCIM`, or (a card with no photos that
/// can take downloads) something is mounted there.
fn media_present(dir: &Path) -> bool {
    super::cardwrite::card_present(dir)
}

/// Runs the kiosk screen until Ctrl-C (or SIGTERM). The terminal is restored on the
/// way out, also after a panic.
pub async fn run(node: Node, kiosk: Arc<Kiosk>, demo: Option<Demo>) -> std::io::Result<()> {
    let cfg = kiosk.config().clone();
    let mut app = App::new(app_config(&node, &kiosk, demo.as_ref()), now_ms());
    let (tx, mut rx) = mpsc::channel::<Msg>(ACTION_QUEUE);

    let mut terminal = ratatui::try_init()?;
    // The terminal is given back on every way out, errors included.
    let _restore = RestoreTerminal;
    let picker = if wants_graphics_query() {
        ratatui_image::picker::Picker::from_query_stdio()
            .ok()
            .filter(|p| p.protocol_type() != ratatui_image::picker::ProtocolType::Halfblocks)
    } else {
        None
    };
    let mut rich = picker.map(|picker| RichPreview {
        picker,
        built_for: None,
        protocol: None,
    });
    let size = terminal.size().unwrap_or(Size::new(80, 24));
    app.update(Action::Resize {
        width: size.width,
        height: size.height,
    });

    // What is on sale is known before the first card is looked at.
    if cfg.media_device.is_some() {
        app.update(Action::Catalogue(shop_items(&kiosk, &Default::default())));
    }
    spawn_keys(tx.clone(), demo.is_some());
    spawn_clock(tx.clone());
    if let Some(dir) = cfg.media_dir.clone() {
        spawn_media_slot(tx.clone(), dir);
    }
    let reread = Arc::new(tokio::sync::Notify::new());
    if let Some(slot) = cfg.chip_slot.clone() {
        spawn_chip_reader(tx.clone(), slot, reread.clone());
    }
    // A serial or input-event card reader.
    let reader_tx = tx.clone();
    let _reader = super::reader::spawn(&cfg.card_reader, move |swipe| {
        let _ = reader_tx.blocking_send(Msg::App(Action::Swipe(swipe)));
    });

    spawn_network_watch(tx.clone(), node.client.clone(), kiosk.clone());
    if cfg.media_device.is_some() {
        spawn_catalogue_feed(tx.clone(), kiosk.clone());
    }
    let loader = thumb_loader(tx.clone());

    let mut runtime = Runtime {
        node: node.clone(),
        kiosk: kiosk.clone(),
        tx: tx.clone(),
        loader: Arc::new(loader),
        demo,
        reread,
    };
    let mut term = Box::pin(crate::node::shutdown_signal());
    draw(&mut terminal, &app, &mut rich)?;
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            _ = &mut term => Some(Msg::Quit),
        };
        let Some(first) = msg else { break };
        // Apply everything that is waiting, then draw once.
        let mut next = Some(first);
        let mut quit = false;
        let mut handled = 0;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Quit => quit = true,
                Msg::DemoToggleMedia => runtime.demo_toggle_media(),
                Msg::App(action) => {
                    for effect in app.update(action) {
                        runtime.carry_out(effect);
                    }
                }
            }
            handled += 1;
            if handled < 256 {
                next = rx.try_recv().ok();
            }
        }
        if quit {
            break;
        }
        draw(&mut terminal, &app, &mut rich)?;
    }
    // Stop the producers before the loader's workers are joined: a worker waiting on a
    // full queue must see the queue gone, not wait for the loop.
    drop(rx);
    if let (Some(_), Some(slot)) = (&runtime.demo, &cfg.chip_slot) {
        // The demo's simulated chip card does not outlive the demo.
        let _ = std::fs::remove_file(slot.join("card.toml"));
    }
    drop(runtime);
    Ok(())
}

/// The keyboard, and a keyboard-wedge reader typing into it.
fn spawn_keys(keys_tx: mpsc::Sender<Msg>, demo_mode: bool) {
    tokio::spawn(async move {
        let mut events = EventStream::new();
        let mut errors = 0u32;
        loop {
            let event = match events.next().await {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    // A read error is logged and survived; a terminal that keeps
                    // failing ends the kiosk rather than leaving it deaf to keys.
                    tracing::warn!("terminal input: {e}");
                    errors += 1;
                    if errors > 100 {
                        let _ = keys_tx.send(Msg::Quit).await;
                        break;
                    }
                    continue;
                }
                None => {
                    let _ = keys_tx.send(Msg::Quit).await;
                    break;
                }
            };
            let msg = match event {
                Event::Key(k) if demo_mode && k.code == KeyCode::F(5) => {
                    (k.kind == KeyEventKind::Press).then_some(Msg::DemoToggleMedia)
                }
                Event::Key(k) => match map_key(k) {
                    Some(Ok(key)) => Some(Msg::App(Action::Key(key))),
                    Some(Err(())) => Some(Msg::Quit),
                    None => None,
                },
                Event::Resize(width, height) => Some(Msg::App(Action::Resize { width, height })),
                _ => None,
            };
            if let Some(msg) = msg {
                if keys_tx.send(msg).await.is_err() {
                    break;
                }
            }
        }
    });
}

/// The clock.
fn spawn_clock(tick_tx: mpsc::Sender<Msg>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        loop {
            every.tick().await;
            let tick = Msg::App(Action::Tick { now_ms: now_ms() });
            if tick_tx.send(tick).await.is_err() {
                break;
            }
        }
    });
}

/// The media slot: whether a card is in it, when that changes.
fn spawn_media_slot(slot_tx: mpsc::Sender<Msg>, dir: PathBuf) {
    tokio::spawn(async move {
        let mut last = None;
        let mut every = tokio::time::interval(SLOT_POLL);
        loop {
            every.tick().await;
            let d = dir.clone();
            let present = tokio::task::spawn_blocking(move || media_present(&d))
                .await
                .unwrap_or(false);
            if last != Some(present) {
                last = Some(present);
                if slot_tx
                    .send(Msg::App(Action::MediaPresent(present)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    });
}

/// The IC card reader: it reports changes (and, when `reread`, what is in the slot);
/// it keeps no card data between polls.
fn spawn_chip_reader(chip_tx: mpsc::Sender<Msg>, slot: PathBuf, reread: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        let mut reader = FileChipReader::new(&slot);
        let mut every = tokio::time::interval(CHIP_POLL);
        loop {
            let force = tokio::select! {
                _ = every.tick() => false,
                _ = reread.notified() => true,
            };
            if let Some(read) = reader.changed(force) {
                if chip_tx.send(Msg::App(Action::Chip(read))).await.is_err() {
                    break;
                }
            }
        }
    });
}

/// The network: can an authorisation be had? Offline is "no": no intermediary is
/// connected, or none reaches an acquirer (asked with `Status`). And what the store
/// has taken offline, for the stand-in limits.
fn spawn_network_watch(net_tx: mpsc::Sender<Msg>, client: crate::net::Client, kiosk: Arc<Kiosk>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        let mut turn = 0usize;
        loop {
            every.tick().await;
            let peers = client.peers_with_role(Role::Intermediary).await;
            let mut online = false;
            // One intermediary a second, in turn; the first that can authorise will do.
            for i in 0..peers.len() {
                let Some(p) = peers.get((turn + i) % peers.len()) else {
                    continue;
                };
                let asked = client
                    .request::<crate::net::OrderProto>(p.peer, OrderRequest::Status)
                    .await;
                if let Ok(OrderResponse::Status {
                    can_authorise: true,
                }) = asked
                {
                    online = true;
                    turn = (turn + i) % peers.len().max(1);
                    break;
                }
            }
            let standing_in = kiosk.standing_in_minor();
            if net_tx
                .send(Msg::App(Action::Network { online }))
                .await
                .is_err()
                || net_tx
                    .send(Msg::App(Action::StandingIn(standing_in)))
                    .await
                    .is_err()
            {
                break;
            }
        }
    });
}

/// The items on sale in the catalogues the kiosk holds, with the covers drawn so far.
fn shop_items(
    kiosk: &Kiosk,
    covers: &std::collections::HashMap<printmesh_protocol::BlobId, super::thumbs::Thumb>,
) -> Vec<super::app::ShopItem> {
    let now = now_ms();
    let mut items = Vec::new();
    for c in kiosk.catalogues().all() {
        for item in c.catalogue.items.iter().filter(|i| i.on_sale(now)) {
            items.push(super::app::ShopItem {
                company: c.signer.clone(),
                company_name: c.catalogue.company.clone(),
                cover: item.cover.and_then(|b| covers.get(&b).cloned()),
                item: item.clone(),
            });
        }
    }
    items
}

/// What is on sale, from the catalogues the kiosk holds, with each cover fetched and
/// drawn as photo previews are; sent when it changes.
fn spawn_catalogue_feed(feed_tx: mpsc::Sender<Msg>, kiosk: Arc<Kiosk>) {
    use printmesh_formats::thumbs::{make_thumb, Source};
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3));
        let mut sent: Option<Vec<(Vec<u8>, u64, usize)>> = None;
        let mut covers = std::collections::HashMap::new();
        loop {
            every.tick().await;
            let key = |covers: usize| -> Vec<(Vec<u8>, u64, usize)> {
                kiosk
                    .catalogues()
                    .all()
                    .iter()
                    .map(|c| (c.signer.clone(), c.catalogue.version, covers))
                    .collect()
            };
            // The items first (their covers as far as drawn), then the covers.
            if sent.as_ref() != Some(&key(covers.len())) {
                sent = Some(key(covers.len()));
                let items = shop_items(&kiosk, &covers);
                if feed_tx
                    .send(Msg::App(Action::Catalogue(items)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let wanted: Vec<printmesh_protocol::BlobId> = kiosk
                .catalogues()
                .all()
                .iter()
                .flat_map(|c| c.catalogue.items.iter().filter_map(|i| i.cover))
                .filter(|b| !covers.contains_key(b))
                .collect();
            for blob in wanted {
                if !kiosk.ensure_cover(blob).await {
                    continue;
                }
                let path = kiosk.download_cache().path(&blob);
                let thumb = tokio::task::spawn_blocking(move || {
                    make_thumb(Source::File(&path), 1, (96, 96)).ok()
                })
                .await
                .ok()
                .flatten();
                if let Some(t) = thumb {
                    covers.insert(blob, t);
                }
            }
        }
    });
}

/// The thumbnail workers, reporting to the loop.
fn thumb_loader(thumb_tx: mpsc::Sender<Msg>) -> ThumbLoader {
    ThumbLoader::new(THUMB_WORKERS, move |event| {
        let action = match event {
            LoaderEvent::Loaded { generation, item } => Action::Loaded { generation, item },
            LoaderEvent::Preview {
                generation,
                index,
                thumb,
            } => Action::Preview {
                generation,
                index,
                thumb,
            },
        };
        let _ = thumb_tx.blocking_send(Msg::App(action));
    })
}

/// Gives the terminal back (raw mode off, main screen) when dropped.
struct RestoreTerminal;

impl Drop for RestoreTerminal {
    fn drop(&mut self) {
        if let Err(e) = ratatui::try_restore() {
            eprintln!("cannot restore the terminal: {e}");
        }
    }
}

fn draw(
    terminal: &mut ratatui::DefaultTerminal,
    app: &App,
    rich: &mut Option<RichPreview>,
) -> std::io::Result<()> {
    if let Some(r) = rich.as_mut() {
        r.update(app);
    }
    let preview = rich.as_ref().and_then(|r| r.protocol.as_ref());
    terminal.draw(|f| f.render_widget(Ui { app, preview }, f.area()))?;
    Ok(())
}

impl RichPreview {
    fn update(&mut self, app: &App) {
        let Some(card) = app.card_view().filter(|_| app.screen == Screen::Select) else {
            self.protocol = None;
            self.built_for = None;
            return;
        };
        let area = preview_area(app.size.0, app.size.1);
        let Some((index, Some(thumb))) = &card.preview else {
            return;
        };
        let key = (card.generation, *index, area);
        if self.built_for == Some(key) {
            return;
        }
        self.built_for = Some(key);
        self.protocol = thumb.to_image().and_then(|img| {
            self.picker
                .new_protocol(
                    img,
                    ratatui::layout::Rect::new(0, 0, area.width, area.height).into(),
                    ratatui_image::Resize::Fit(None),
                )
                .ok()
        });
    }
}

struct Runtime {
    node: Node,
    kiosk: Arc<Kiosk>,
    tx: mpsc::Sender<Msg>,
    loader: Arc<ThumbLoader>,
    demo: Option<Demo>,
    reread: Arc<tokio::sync::Notify>,
}

impl Runtime {
    fn carry_out(&mut self, effect: Effect) {
        let kiosk = self.kiosk.clone();
        let cfg = kiosk.config();
        match effect {
            Effect::ScanMedia { generation } => {
                let Some(dir) = cfg.media_dir.clone() else {
                    return;
                };
                let tx = self.tx.clone();
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                tokio::task::spawn_blocking(move || {
                    let _ = done_tx.send(scan(&dir).map_err(|e| e.to_string()));
                });
                let loader = self.loader.clone();
                tokio::spawn(async move {
                    let result = done_rx
                        .await
                        .unwrap_or_else(|_| Err("the card could not be read".into()));
                    // The loader has the photos before the screen does, so the first
                    // thumbnails are on their way when the grid first draws.
                    if let Ok(images) = &result {
                        loader.load_card(generation, images.clone());
                    }
                    let _ = tx
                        .send(Msg::App(Action::MediaScanned { generation, result }))
                        .await;
                });
            }
            Effect::ForgetMedia { generation } => self.loader.forget(generation),
            Effect::RereadChip => self.reread.notify_one(),
            Effect::FocusThumbs { generation, window } => self.loader.focus(generation, window),
            Effect::WantPreview { generation, index } => {
                self.loader.want_preview(generation, index)
            }
            Effect::PlaceOrder(plan) => self.place_order(*plan, cfg.answer_timeout_secs),
            Effect::ReadCardRoom => {
                let kiosk = self.kiosk.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let room = kiosk.card_info().await.ok().map(|i| super::app::CardRoom {
                        free_bytes: i.free_bytes,
                        serial: i.serial,
                    });
                    let _ = tx.send(Msg::App(Action::CardRoom(room))).await;
                });
            }
            Effect::BuyDownloads(plan) => self.buy_downloads(*plan, cfg.answer_timeout_secs),
            Effect::PrintReceipt(r) => {
                let dir = self.node.config.data_dir.join("receipts");
                let printer = cfg.receipt_printer.clone();
                let tx = self.tx.clone();
                let id = r.order_id;
                tokio::spawn(async move {
                    let result = tokio::task::spawn_blocking(move || {
                        receipt::print(&r, &dir, printer.as_ref())
                    })
                    .await;
                    let outcome = match result {
                        Ok(Ok(p)) => {
                            tracing::info!(file = %p.text_file.display(), printer = ?p.printer, "receipt printed");
                            Ok(p.printer
                                .unwrap_or_else(|| p.text_file.display().to_string()))
                        }
                        Ok(Err(e)) => {
                            tracing::error!("receipt: {e}");
                            Err(e.to_string())
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send(Msg::App(Action::ReceiptPrinted(id, outcome))).await;
                });
            }
            Effect::CounterRefresh => {
                let kiosk = self.kiosk.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    match tokio::task::spawn_blocking(move || kiosk.counter_rows()).await {
                        Ok(Ok(rows)) => {
                            let _ = tx.send(Msg::App(Action::CounterRows(rows))).await;
                        }
                        Ok(Err(e)) => tracing::error!("counter: {e}"),
                        Err(e) => tracing::error!("counter: {e}"),
                    }
                });
            }
            Effect::MarkCollected(id) => {
                let kiosk = self.kiosk.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = kiosk
                        .mark_collected(id)
                        .await
                        .map(|()| id)
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Msg::App(Action::CounterCollected(result))).await;
                });
            }
            Effect::DemoInsertChip { track2_equivalent } => {
                if let Some(slot) = &cfg.chip_slot {
                    let text = format!("track2_equivalent = \"{}\"\n", track2_equivalent.0);
                    let tmp = slot.join("card.toml.tmp");
                    let _ = std::fs::create_dir_all(slot)
                        .and_then(|()| std::fs::write(&tmp, text))
                        .and_then(|()| std::fs::rename(&tmp, slot.join("card.toml")));
                }
            }
            Effect::DemoRemoveChip => {
                if let Some(slot) = &cfg.chip_slot {
                    let _ = std::fs::remove_file(slot.join("card.toml"));
                }
            }
        }
    }

    fn place_order(&self, plan: OrderPlan, answer_timeout_secs: u64) {
        place_order(
            self.kiosk.clone(),
            self.tx.clone(),
            plan,
            answer_timeout_secs,
        )
    }

    /// A basket: the downloads bought and written (progress to the screen), then the
    /// prints order, if the basket has one, placed as any other.
    fn buy_downloads(&self, plan: super::app::DownloadPlan, answer_timeout_secs: u64) {
        use super::app::{DownloadDone, DownloadResult, WriteFailure, Writing, WrittenItem};
        use super::cardwrite::WriteError;
        use super::downloads::{DownloadDraft, DownloadOutcome, DownloadProgress, DownloadStage};
        let kiosk = self.kiosk.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let super::app::DownloadPlan {
                company,
                items,
                method,
                card,
                entry,
                pin,
                then_prints,
                shown_total,
            } = plan;
            let pin = match pin {
                Some(mut pad) => match pad.take_pin() {
                    Ok(pin) => Some(pin),
                    Err(e) => {
                        let _ = tx
                            .send(Msg::App(Action::DownloadFinished(DownloadResult::Failed(
                                e.to_string(),
                            ))))
                            .await;
                        return;
                    }
                },
                None => None,
            };
            let draft = DownloadDraft {
                company,
                items,
                method,
                card,
                entry,
                pin,
                shown_total: Some(shown_total),
            };
            let progress_tx = tx.clone();
            let progress = move |p: DownloadProgress| {
                let w = match p {
                    DownloadProgress::Fetching { done, total } => Writing::Fetching { done, total },
                    DownloadProgress::Paying => Writing::Paying,
                    DownloadProgress::Writing { done, total } => Writing::Writing { done, total },
                    DownloadProgress::Finishing => Writing::Finishing,
                };
                let _ = progress_tx.try_send(Msg::App(Action::DownloadProgress(w)));
            };
            // In a task of its own: whatever becomes of it (a panic too), the screen
            // hears how it ended.
            let buyer = kiosk.clone();
            let outcome = match tokio::spawn(
                async move { buyer.buy_downloads(draft, &progress).await },
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(e) => Err(crate::roles::kiosk::KioskError::Order(format!(
                    "the purchase stopped: {e}"
                ))),
            };
            let failure = |e: WriteError| match e {
                WriteError::CardGone => WriteFailure::CardGone,
                WriteError::WriteProtected => WriteFailure::WriteProtected,
                WriteError::Full { need } => WriteFailure::Full { need },
                other => WriteFailure::Other(other.to_string()),
            };
            let (result, done) = match outcome {
                Ok(DownloadOutcome::Done(record)) => {
                    let (auth_code, written) = match &record.stage {
                        DownloadStage::Done { auth_code, written }
                        | DownloadStage::Written { auth_code, written } => {
                            (auth_code.clone(), written.clone())
                        }
                        other => {
                            let why = format!("the purchase ended {other:?}");
                            let _ = tx
                                .send(Msg::App(Action::DownloadFinished(DownloadResult::Failed(
                                    why,
                                ))))
                                .await;
                            return;
                        }
                    };
                    let items = written
                        .iter()
                        .filter_map(|w| {
                            let item = record.items.iter().find(|i| i.id == w.item)?;
                            Some(WrittenItem {
                                title_ja: item.title.ja.clone(),
                                title_en: item.title.en.clone(),
                                price: item.price,
                                code: w.code.clone(),
                                licence: w.licence.clone(),
                                card_path: w.card_path.clone(),
                            })
                        })
                        .collect();
                    (
                        DownloadResult::Done(DownloadDone {
                            order_id: record.order_id,
                            auth_code,
                            total: record.total,
                            items,
                        }),
                        true,
                    )
                }
                Ok(DownloadOutcome::Declined(_, code)) => (DownloadResult::Declined(code), false),
                Ok(DownloadOutcome::Rejected(_, why)) => (DownloadResult::Rejected(why), false),
                Ok(DownloadOutcome::WriteFailed(_, e)) => {
                    (DownloadResult::WriteFailed(failure(e)), false)
                }
                Err(e) => (DownloadResult::Failed(e.to_string()), false),
            };
            let _ = tx.send(Msg::App(Action::DownloadFinished(result))).await;
            if let (true, Some(prints)) = (done, then_prints) {
                place_order(kiosk, tx, *prints, answer_timeout_secs);
            }
        });
    }

    /// Demo only: F5 takes the memory card out of the slot, or puts it back.
    fn demo_toggle_media(&self) {
        let (Some(demo), Some(slot)) = (&self.demo, &self.kiosk.config().media_dir) else {
            return;
        };
        if let Some(card) = &demo.card {
            if let Ok(mut card) = card.lock() {
                if card.is_mounted() {
                    card.eject();
                } else if let Err(e) = card.mount(true) {
                    tracing::warn!("the demo card: {e}");
                }
            }
            return;
        }
        let (from, to) = if media_present(slot) {
            (slot.join("DCIM"), demo.card_shelf.join("DCIM"))
        } else {
            (demo.card_shelf.join("DCIM"), slot.join("DCIM"))
        };
        let misc = |root: &Path| root.join("MISC");
        let (misc_from, misc_to) = if media_present(slot) {
            (misc(slot), misc(&demo.card_shelf))
        } else {
            (misc(&demo.card_shelf), misc(slot))
        };
        let _ = std::fs::create_dir_all(&demo.card_shelf);
        // MISC first, so the card "arrives" with its DPOF order when DCIM appears.
        if !media_present(slot) {
            let _ = std::fs::rename(&misc_from, &misc_to);
            let _ = std::fs::rename(&from, &to);
        } else {
            let _ = std::fs::rename(&from, &to);
            let _ = std::fs::rename(&misc_from, &misc_to);
        }
    }
}

/// Places a prints order and reports its progress and answer to the loop.
fn place_order(
    kiosk: Arc<Kiosk>,
    tx: mpsc::Sender<Msg>,
    plan: OrderPlan,
    answer_timeout_secs: u64,
) {
    tokio::spawn(async move {
        let send = |a: Action| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Msg::App(a)).await;
            }
        };
        let OrderPlan {
            lines,
            method,
            card,
            entry,
            pin,
            offline,
        } = plan;
        // The PIN pad's digits become a PIN that is sealed with the card at once.
        let pin = match pin {
            Some(mut pad) => match pad.take_pin() {
                Ok(pin) => Some(pin),
                Err(e) => return send(Action::OrderFailed(e.to_string())).await,
            },
            None => None,
        };
        let draft = Draft {
            order_id: None,
            lines,
            method,
            card,
            entry,
            pin,
        };
        let id = match kiosk.place_order(draft).await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!("order not saved: {e}");
                return send(Action::OrderFailed(e.to_string())).await;
            }
        };
        if offline {
            let total = kiosk.order_total(id);
            if let Some(total) = total {
                if let Err(e) = kiosk.mark_stand_in(id, total).await {
                    tracing::error!(order_id = %id, "cannot record the offline order: {e}");
                }
            }
        }
        send(Action::OrderSaved(id)).await;
        let answer = kiosk.wait_for_answer(id, Duration::from_secs(answer_timeout_secs));
        tokio::pin!(answer);
        let mut every = tokio::time::interval(Duration::from_millis(150));
        loop {
            tokio::select! {
                result = &mut answer => {
                    match result {
                        Ok(order) => send(Action::OrderAnswered(Box::new(order))).await,
                        Err(_) => send(Action::OrderPending(id)).await,
                    }
                    break;
                }
                _ = every.tick() => {
                    if let Some(p) = kiosk.progress(id) {
                        send(Action::Progress(id, p)).await;
                    }
                }
            }
        }
    });
}
