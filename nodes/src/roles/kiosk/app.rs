//! The kiosk's customer session as a pure state machine (patent FIG. 5, S501–S510).
//!
//! Everything that happens reaches [`App::update`] as an [`Action`]: keys (including
//! the characters a keyboard-wedge card reader types), the media slot, the chip
//! reader, the network, the answers to orders. `update` is the only thing that changes
//! the state, and it does no IO: what must be done outside (scan a card, place an
//! order, print a receipt) comes back as [`Effect`]s for the runtime to carry out,
//! whose results arrive as actions again. Drawing is a pure function of the state
//! ([`super::ui`]). The clock is an action too, so tests drive timeouts exactly.
//!
//! Card data lives only in the [`Session`], which is dropped (and the PAN wiped) when
//! the session ends: at the end of an order, on Esc back past the card screen, when
//! the memory card is pulled, or after the idle timeout.

use std::collections::BTreeMap;
use std::ops::Range;

use printmesh_protocol::card::{CardBrand, CardData};
use printmesh_protocol::messages::{DeclineCode, OrderResponse, PaymentMethod};
use printmesh_protocol::money::Money;
use printmesh_protocol::order::OrderState;
use printmesh_protocol::pricing::{Fit, PriceList, PrintSize, MAX_QUANTITY};
use printmesh_protocol::seal::EntryMode;
use printmesh_protocol::OrderId;
use serde::{Deserialize, Serialize};

use super::chip::ChipRead;
use super::i18n::Lang;
use super::pinpad::PinPad;
use super::receipt::{Outcome, Receipt, ReceiptLine};
use super::swipe::{Swipe, SwipeAssembler};
use super::thumbs::{Loaded, Thumb};
use crate::media::{ImageInfo, MediaImage};
use crate::roles::kiosk::{DraftLine, KioskOrder, UploadProgress};

mod shop;
pub use shop::{
    CardRoom, DownloadDone, DownloadPlan, DownloadResult, ShopItem, WriteFailure, Writing,
    WrittenItem, TABS,
};

/// A swipe that has not ended with Enter after this long is dropped.
pub const SWIPE_TIMEOUT_MS: i64 = 2_000;
/// Two digits typed within this long make one two-digit quantity.
pub const DIGIT_COMBINE_MS: i64 = 1_500;
/// Wrong PINs before the payment is stopped.
pub const MAX_WRONG_PINS: u8 = 3;
/// Wrong staff PINs before counter mode is refused.
pub const MAX_WRONG_STAFF_PINS: u8 = 3;
/// Photos on one order (the protocol's cap).
pub const MAX_PICKS: usize = printmesh_protocol::messages::proto::MAX_ORDER_LINES;
/// How long counter mode stays locked after too many wrong staff PINs.
pub const STAFF_LOCKOUT_MS: i64 = 60_000;
/// How often counter mode refreshes its list.
pub const COUNTER_REFRESH_MS: i64 = 2_000;

/// A key, as the kiosk's keypad (and a keyboard-wedge reader) sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    Left,
    Right,
    Enter,
    Esc,
    Backspace,
    Char(char),
    F(u8),
}

/// When the customer is asked for a PIN on a credit card.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreditPin {
    /// Credit cards always need a PIN.
    Required,
    /// The customer may type one or just press Enter.
    #[default]
    Optional,
    /// Credit cards are never asked for a PIN (signature on the receipt).
    Never,
}

/// A test card the demo panel can "swipe" or "insert".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoCard {
    pub label: String,
    pub kind: PaymentMethod,
    pub track1: String,
    pub track2: String,
    pub pin: String,
}

impl DemoCard {
    pub fn from_test_card(card: &crate::cards::TestCard) -> DemoCard {
        DemoCard {
            label: card.label.clone(),
            kind: card.method(),
            track1: card.track1.clone(),
            track2: card.track2.clone(),
            pin: card.pin.clone(),
        }
    }

    /// What a chip reader reports for this card (EMV tag 57), from its track 2.
    pub fn track2_equivalent(&self) -> String {
        let body = self
            .track2
            .trim_start_matches(';')
            .split('?')
            .next()
            .unwrap_or_default()
            .replace('=', "D");
        if body.len() % 2 == 1 {
            format!("{body}F")
        } else {
            body
        }
    }
}

/// A value that `Debug` never shows (a staff PIN, a card's chip data).
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the kiosk screen needs from the config.
#[derive(Clone, Debug)]
pub struct AppConfig {
    pub store_name: String,
    pub kiosk_name: String,
    pub prices: PriceList,
    pub lang: Lang,
    pub credit_pin: CreditPin,
    /// The PIN pad has a key: debit and IC cards can be taken.
    pub pin_pad: bool,
    pub idle_timeout_ms: i64,
    pub thanks_timeout_ms: i64,
    /// Offline, credit orders up to this amount are taken (0: none).
    pub offline_floor_limit_minor: i64,
    /// Offline, the store takes at most this much in all, waiting for authorisation.
    pub offline_store_limit_minor: i64,
    pub staff_pin: Option<Redacted<String>>,
    pub demo_cards: Vec<DemoCard>,
    /// Hours from UTC, for the receipt's local time.
    pub utc_offset_hours: i8,
    /// The card slot's device is known: downloads can be written onto cards.
    pub downloads: bool,
}

/// One photo picked for printing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub size: PrintSize,
    pub quantity: u16,
    /// Crop to fill the paper (the default) or the whole photo with a white border.
    pub fit: Fit,
}

/// One line of the order with its prices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedLine {
    pub index: usize,
    pub file_name: String,
    pub pick: Pick,
    pub unit: Option<Money>,
    pub amount: Option<Money>,
}

/// The memory card in the slot.
#[derive(Debug, Default)]
pub enum Media {
    #[default]
    Empty,
    Scanning {
        generation: u64,
    },
    Failed(String),
    Ready(Box<CardView>),
}

/// The photos on the card and what is known of each so far.
#[derive(Debug)]
pub struct CardView {
    pub generation: u64,
    pub images: Vec<MediaImage>,
    pub infos: Vec<Option<ImageInfo>>,
    pub thumbs: Vec<Option<Thumb>>,
    pub loaded: usize,
    pub preview: Option<(usize, Option<Thumb>)>,
}

impl CardView {
    pub fn is_unreadable(&self, index: usize) -> bool {
        self.infos
            .get(index)
            .and_then(Option::as_ref)
            .is_some_and(|i| i.error.is_some())
    }
}

/// Which button of a screen's button row has the focus, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Focus {
    #[default]
    Body,
    Button(usize),
}

/// Where an order being sent is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sending {
    Saving,
    Saved(OrderId),
    Progress(OrderId, UploadProgress),
}

/// What went wrong, on the problem screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    Declined(DeclineCode),
    Rejected(String),
    Failed(String),
    PinLocked,
    /// A download could not be written; nothing was charged.
    WriteFailed(WriteFailure),
}

/// How the receipt printing went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Printing {
    #[default]
    NotYet,
    Printing,
    Printed,
    Failed(String),
}

/// Everything of one customer's visit. Dropped whole when the visit ends.
#[derive(Debug, Default)]
pub struct Session {
    pub cursor: usize,
    pub top_row: usize,
    pub focus: Focus,
    pub picks: BTreeMap<usize, Pick>,
    pub camera_marked: bool,
    /// S503: 0 is "all photos", then one row per pick.
    pub size_row: usize,
    pub size_top: usize,
    pub method_cursor: usize,
    pub method: Option<PaymentMethod>,
    pub card: Option<CardData>,
    pub pin: PinPad,
    pub wrong_pins: u8,
    pub offline: bool,
    pub sending: Option<Sending>,
    pub order_id: Option<OrderId>,
    pub receipt: Option<Receipt>,
    pub printing: Printing,
    /// S509: how far the on-screen receipt is scrolled.
    pub receipt_scroll: u16,
    last_digit: Option<(usize, i64)>,
    /// The shop: its tab, the highlighted item, the search.
    pub shop_tab: usize,
    pub shop_cursor: usize,
    pub query: String,
    pub searching: bool,
    /// Downloads chosen: (company, item), in the order they were added.
    pub basket: Vec<(Vec<u8>, printmesh_protocol::content::ItemId)>,
    /// The customer came through the shop (Esc from the payment goes back there).
    pub in_shop: bool,
    pub writing: Option<Writing>,
    /// A prints order follows the downloads.
    pub prints_follow: bool,
    pub downloaded: Option<DownloadDone>,
}

/// One order as the counter sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterRow {
    pub order_id: OrderId,
    pub placed_at_ms: i64,
    pub prints: u32,
    pub total: Money,
    pub card_brand: CardBrand,
    pub card_last4: String,
    pub delivery_date: Option<chrono::NaiveDate>,
    pub state: OrderState,
    /// Taken offline (stand-in): the store sees whether it was authorised after the
    /// fact (its state moves on) or declined or cancelled later.
    pub offline: bool,
}

#[derive(Debug, Default)]
pub struct Counter {
    pub query: String,
    pub rows: Vec<CounterRow>,
    pub cursor: usize,
    pub refreshed_ms: i64,
}

impl Counter {
    /// Rows matching the query (any part of the order id, case-insensitive).
    pub fn matching(&self) -> Vec<&CounterRow> {
        let q = self.query.to_ascii_uppercase();
        self.rows
            .iter()
            .filter(|r| q.is_empty() || r.order_id.to_string().contains(&q))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Screen {
    /// S501
    Insert,
    /// S501 with a card in, when downloads are sold: prints or downloads.
    Start,
    /// Downloads: browse, search, the item's page, the basket.
    Shop,
    /// Downloads being fetched, paid and written ("do not remove your card").
    Writing,
    /// S502
    Select,
    /// S503
    Sizes,
    /// S504
    Total,
    /// S505
    Method,
    /// S506
    Card,
    /// S507
    Pin,
    /// The images and the order going out.
    Sending,
    Problem(Problem),
    /// S508
    Done,
    /// S509
    Receipt,
    /// S510
    Thanks,
    StaffPin,
    Counter,
}

/// A message shown under the screen until the next key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    MediaRemoved,
    TimedOut,
    NoPhotos,
    CardUnreadable(String),
    PickOneFirst,
    MethodUnavailable,
    OfflineOnlyCredit(Money),
    OfflineNoPayments,
    CardReadError(String),
    SwipeElsewhere,
    IcRemoved,
    PinWrong(u8),
    PinTooShort,
    StaffPinWrong,
    CounterNotReady,
    CounterNone,
    CounterCollected(OrderId),
    CounterFailed(String),
    /// A basket holds one content company's items at a time.
    OneCompanyAtATime,
    BasketFull(usize),
    /// The card has no room for an item of this many bytes.
    NoRoomOnCard(u64),
    /// The prints of a basket could not be paid (the downloads were).
    PrintsNotPaid(String),
}

#[derive(Debug)]
pub enum Action {
    Key(Key),
    Tick {
        now_ms: i64,
    },
    Resize {
        width: u16,
        height: u16,
    },
    /// The slot watcher: a memory card is (or is no longer) in the slot.
    MediaPresent(bool),
    MediaScanned {
        generation: u64,
        result: Result<Vec<MediaImage>, String>,
    },
    Loaded {
        generation: u64,
        item: Loaded,
    },
    Preview {
        generation: u64,
        index: usize,
        thumb: Option<Thumb>,
    },
    /// The chip reader's slot changed.
    Chip(ChipRead),
    /// A card reader that is not a keyboard wedge finished a swipe.
    Swipe(Swipe),
    Network {
        online: bool,
    },
    /// What the store has taken offline and still waits to have authorised.
    StandingIn(i64),
    OrderSaved(OrderId),
    Progress(OrderId, UploadProgress),
    OrderAnswered(Box<KioskOrder>),
    /// No final answer within the kiosk's patience: the order stays in the outbox.
    OrderPending(OrderId),
    OrderFailed(String),
    ReceiptPrinted(OrderId, Result<String, String>),
    CounterRows(Vec<CounterRow>),
    CounterCollected(Result<OrderId, String>),
    /// What is on sale here (from the catalogues this kiosk holds).
    Catalogue(Vec<ShopItem>),
    /// The inserted card's room (none: unreadable, or no card).
    CardRoom(Option<CardRoom>),
    DownloadProgress(Writing),
    DownloadFinished(DownloadResult),
}

/// The order the customer asked for, for the runtime to place.
#[derive(Debug)]
pub struct OrderPlan {
    pub lines: Vec<DraftLine>,
    pub method: PaymentMethod,
    pub card: CardData,
    /// Read from the chip (IC payments) or swiped.
    pub entry: EntryMode,
    /// The digits typed on the PIN pad; the runtime seals them with the card at once.
    pub pin: Option<PinPad>,
    /// Taken offline under the stand-in rules.
    pub offline: bool,
}

#[derive(Debug)]
pub enum Effect {
    /// Scan the card in the slot and start loading its thumbnails.
    ScanMedia {
        generation: u64,
    },
    /// The card of this generation (and every older one) has left the slot.
    ForgetMedia {
        generation: u64,
    },
    /// Ask the chip reader for what is in its slot now (the customer chose to pay by
    /// IC card, perhaps with the card already inserted).
    RereadChip,
    FocusThumbs {
        generation: u64,
        window: Range<usize>,
    },
    WantPreview {
        generation: u64,
        index: usize,
    },
    PlaceOrder(Box<OrderPlan>),
    /// Read the inserted card's identity and free space.
    ReadCardRoom,
    BuyDownloads(Box<DownloadPlan>),
    PrintReceipt(Box<Receipt>),
    CounterRefresh,
    MarkCollected(OrderId),
    /// The demo panel puts a test IC card into the (simulated) chip reader.
    DemoInsertChip {
        track2_equivalent: Redacted<String>,
    },
    DemoRemoveChip,
}

/// Geometry of the photo grid for a terminal size (shared with the drawing code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridGeometry {
    pub cols: usize,
    pub rows: usize,
}

/// Width and height of one grid cell, borders included.
pub const CELL: (u16, u16) = (18, 9);
/// Columns kept for the preview panel beside the grid.
pub const PREVIEW_PANEL_WIDTH: u16 = 26;

impl GridGeometry {
    pub fn for_size(width: u16, height: u16) -> GridGeometry {
        // Header, title, buttons, notice and footer take 5 rows.
        let grid_w = width.saturating_sub(PREVIEW_PANEL_WIDTH);
        let grid_h = height.saturating_sub(5);
        GridGeometry {
            cols: usize::from((grid_w / CELL.0).max(1)),
            rows: usize::from((grid_h / CELL.1).max(1)),
        }
    }

    pub fn page(&self) -> usize {
        self.cols * self.rows
    }
}

pub struct App {
    pub cfg: AppConfig,
    pub lang: Lang,
    pub screen: Screen,
    pub now_ms: i64,
    pub last_input_ms: i64,
    pub screen_since_ms: i64,
    pub online: bool,
    /// What the store has taken offline, not yet authorised (minor units).
    pub standing_in_minor: i64,
    pub media_present: bool,
    pub media: Media,
    generation: u64,
    pub session: Session,
    pub notice: Option<Notice>,
    pub counter: Counter,
    staff_pin: PinPad,
    wrong_staff_pins: u8,
    staff_locked_until_ms: i64,
    swipe: SwipeAssembler,
    swipe_at_ms: i64,
    pub size: (u16, u16),
    /// A card is in the chip reader (its data goes to the session, not here).
    pub chip_in: bool,
    /// What is on sale (empty: no downloads here).
    pub shop: Vec<ShopItem>,
    /// The inserted card's room, once read.
    pub card_room: Option<CardRoom>,
}

impl App {
    pub fn new(cfg: AppConfig, now_ms: i64) -> App {
        App {
            lang: cfg.lang,
            cfg,
            screen: Screen::Insert,
            now_ms,
            last_input_ms: now_ms,
            screen_since_ms: now_ms,
            online: false,
            standing_in_minor: 0,
            media_present: false,
            media: Media::Empty,
            generation: 0,
            session: Session::default(),
            notice: None,
            counter: Counter::default(),
            staff_pin: PinPad::default(),
            wrong_staff_pins: 0,
            staff_locked_until_ms: 0,
            swipe: SwipeAssembler::default(),
            swipe_at_ms: now_ms,
            size: (80, 24),
            chip_in: false,
            shop: Vec::new(),
            card_room: None,
        }
    }

    pub fn grid(&self) -> GridGeometry {
        GridGeometry::for_size(self.size.0, self.size.1)
    }

    pub fn card_view(&self) -> Option<&CardView> {
        match &self.media {
            Media::Ready(c) => Some(c),
            _ => None,
        }
    }

    fn card_view_mut(&mut self) -> Option<&mut CardView> {
        match &mut self.media {
            Media::Ready(c) => Some(c),
            _ => None,
        }
    }

    /// How many digits of the staff PIN are typed (the screen shows dots).
    pub fn staff_pin_len(&self) -> usize {
        self.staff_pin.len()
    }

    /// Whether the swipe assembler is collecting a swipe right now.
    pub fn swipe_in_progress(&self) -> bool {
        self.swipe.is_active()
    }

    fn go(&mut self, screen: Screen) {
        self.screen = screen;
        self.screen_since_ms = self.now_ms;
        // A new screen is something happening: its idle time starts now.
        self.last_input_ms = self.now_ms;
        self.session.focus = Focus::Body;
    }

    /// Ends the visit: every card datum and typed digit goes with the session.
    fn end_session(&mut self) {
        self.session = Session::default();
        self.swipe.cancel();
        self.staff_pin.clear();
    }

    fn reset_to_insert(&mut self, notice: Option<Notice>) -> Vec<Effect> {
        self.end_session();
        self.lang = self.cfg.lang;
        self.go(Screen::Insert);
        self.notice = notice;
        let mut fx = Vec::new();
        if self.chip_in && !self.cfg.demo_cards.is_empty() {
            fx.push(Effect::DemoRemoveChip);
        }
        fx
    }

    // ------------------------------------------------------------------ the one entry

    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Key(key) => {
                self.last_input_ms = self.now_ms;
                self.on_key(key)
            }
            Action::Tick { now_ms } => {
                self.now_ms = now_ms;
                self.on_tick()
            }
            Action::Resize { width, height } => {
                self.size = (width, height);
                self.scroll_grid();
                self.thumb_effects()
            }
            Action::MediaPresent(present) => self.on_media_present(present),
            Action::MediaScanned { generation, result } => self.on_scanned(generation, result),
            Action::Loaded { generation, item } => {
                if let Some(card) = self.card_view_mut().filter(|c| c.generation == generation) {
                    let i = item.index;
                    if let (Some(info), Some(thumb)) =
                        (card.infos.get_mut(i), card.thumbs.get_mut(i))
                    {
                        if info.is_none() {
                            card.loaded += 1;
                        }
                        *info = Some(item.info);
                        *thumb = item.thumb;
                    }
                }
                Vec::new()
            }
            Action::Preview {
                generation,
                index,
                thumb,
            } => {
                if let Some(card) = self.card_view_mut().filter(|c| c.generation == generation) {
                    card.preview = Some((index, thumb));
                }
                Vec::new()
            }
            Action::Chip(read) => self.on_chip(read),
            Action::Swipe(swipe) => self.on_swipe(swipe),
            Action::Network { online } => {
                self.online = online;
                Vec::new()
            }
            Action::StandingIn(minor) => {
                self.standing_in_minor = minor;
                Vec::new()
            }
            Action::OrderSaved(id) => self.on_order_saved(id),
            Action::Progress(id, p) => {
                if self.session.order_id == Some(id) && self.screen == Screen::Sending {
                    self.session.sending = Some(Sending::Progress(id, p));
                }
                Vec::new()
            }
            Action::OrderAnswered(order) => self.on_answer(*order),
            Action::OrderPending(id) => self.on_pending(id),
            Action::OrderFailed(why) if self.screen == Screen::Sending => {
                // The basket's downloads are on the card and paid: their receipt, and
                // the prints' failure said.
                if let Some(done) = self.session.downloaded.clone() {
                    self.session.picks.clear();
                    let fx = self.finish_order(
                        done.order_id,
                        Outcome::Downloaded {
                            auth_code: done.auth_code,
                        },
                    );
                    self.notice = Some(Notice::PrintsNotPaid(why));
                    return fx;
                }
                self.session.sending = None;
                self.session.card = None;
                self.go(Screen::Problem(Problem::Failed(why)));
                Vec::new()
            }
            Action::OrderFailed(_) => Vec::new(),
            Action::ReceiptPrinted(id, result) => {
                if self.session.receipt.as_ref().map(|r| r.order_id) == Some(id) {
                    self.session.printing = match result {
                        Ok(_) => Printing::Printed,
                        Err(e) => Printing::Failed(e),
                    };
                }
                Vec::new()
            }
            Action::CounterRows(rows) => {
                self.counter.rows = rows;
                let n = self.counter.matching().len();
                self.counter.cursor = self.counter.cursor.min(n.saturating_sub(1));
                Vec::new()
            }
            Action::Catalogue(items) => {
                self.shop = items;
                let n = self.shop_view().len();
                self.session.shop_cursor = self.session.shop_cursor.min(n.saturating_sub(1));
                Vec::new()
            }
            Action::CardRoom(room) => {
                self.card_room = room;
                Vec::new()
            }
            Action::DownloadProgress(w) => {
                if self.screen == Screen::Writing {
                    self.session.writing = Some(w);
                }
                Vec::new()
            }
            Action::DownloadFinished(result) => self.on_download_finished(result),
            Action::CounterCollected(_) if self.screen != Screen::Counter => Vec::new(),
            Action::CounterCollected(result) => {
                self.notice = Some(match result {
                    Ok(id) => Notice::CounterCollected(id),
                    Err(e) => Notice::CounterFailed(e),
                });
                vec![Effect::CounterRefresh]
            }
        }
    }

    // ------------------------------------------------------------------ clock

    fn on_tick(&mut self) -> Vec<Effect> {
        let now = self.now_ms;
        if self.swipe.is_active() && now - self.swipe_at_ms > SWIPE_TIMEOUT_MS {
            self.swipe.cancel();
        }
        let idle = now - self.last_input_ms >= self.cfg.idle_timeout_ms;
        match &self.screen {
            Screen::Insert | Screen::Sending | Screen::Writing => Vec::new(),
            Screen::Thanks => {
                if now - self.screen_since_ms >= self.cfg.thanks_timeout_ms {
                    self.reset_to_insert(None)
                } else {
                    Vec::new()
                }
            }
            // The order is placed and the receipt printed: an idle customer has left.
            Screen::Done | Screen::Receipt if idle => self.thanks(),
            Screen::Counter if !idle => {
                if now - self.counter.refreshed_ms >= COUNTER_REFRESH_MS {
                    self.counter.refreshed_ms = now;
                    vec![Effect::CounterRefresh]
                } else {
                    Vec::new()
                }
            }
            _ if idle => self.reset_to_insert(Some(Notice::TimedOut)),
            _ => Vec::new(),
        }
    }

    // ------------------------------------------------------------------ media slot

    fn on_media_present(&mut self, present: bool) -> Vec<Effect> {
        if present == self.media_present {
            return Vec::new();
        }
        self.media_present = present;
        if present {
            self.generation += 1;
            self.media = Media::Scanning {
                generation: self.generation,
            };
            if self.screen == Screen::Insert {
                self.notice = None;
            }
            let mut fx = vec![Effect::ScanMedia {
                generation: self.generation,
            }];
            if self.cfg.downloads {
                fx.push(Effect::ReadCardRoom);
            }
            return fx;
        }
        self.media = Media::Empty;
        self.card_room = None;
        let mut fx = vec![Effect::ForgetMedia {
            generation: self.generation,
        }];
        match self.screen {
            Screen::Select
            | Screen::Sizes
            | Screen::Total
            | Screen::Method
            | Screen::Card
            | Screen::Pin
            | Screen::Start
            | Screen::Shop
            | Screen::Problem(_) => fx.extend(self.reset_to_insert(Some(Notice::MediaRemoved))),
            Screen::Thanks => fx.extend(self.reset_to_insert(None)),
            _ => {}
        }
        fx
    }

    fn on_scanned(
        &mut self,
        generation: u64,
        result: Result<Vec<MediaImage>, String>,
    ) -> Vec<Effect> {
        if !matches!(self.media, Media::Scanning { generation: g } if g == generation) {
            return Vec::new();
        }
        match result {
            Err(_) if self.sells_downloads() => self.on_scanned(generation, Ok(Vec::new())),
            Ok(images) if images.is_empty() && self.sells_downloads() => {
                // No photos, but downloads: the card can still take them.
                self.media = Media::Ready(Box::new(CardView {
                    generation,
                    infos: Vec::new(),
                    thumbs: Vec::new(),
                    loaded: 0,
                    preview: None,
                    images,
                }));
                if self.screen == Screen::Insert {
                    self.start_choice()
                } else {
                    Vec::new()
                }
            }
            Ok(images) if images.is_empty() => {
                self.media = Media::Failed(String::new());
                self.notice = Some(Notice::NoPhotos);
                Vec::new()
            }
            Ok(images) => {
                let n = images.len();
                self.media = Media::Ready(Box::new(CardView {
                    generation,
                    infos: vec![None; n],
                    thumbs: vec![None; n],
                    loaded: 0,
                    preview: None,
                    images,
                }));
                if self.screen == Screen::Insert && self.sells_downloads() {
                    self.start_choice()
                } else if self.screen == Screen::Insert {
                    self.start_browsing()
                } else {
                    Vec::new()
                }
            }
            Err(why) => {
                self.media = Media::Failed(why.clone());
                self.notice = Some(Notice::CardUnreadable(why));
                Vec::new()
            }
        }
    }

    /// Whether the first screen offers downloads: something on sale, and a card slot
    /// whose cards can be written.
    pub fn sells_downloads(&self) -> bool {
        self.cfg.downloads && !self.shop.is_empty()
    }

    /// S501 → S502: a fresh session on the card in the slot, with the camera's DPOF
    /// order picked (a basket chosen in the shop stays).
    fn start_browsing(&mut self) -> Vec<Effect> {
        let basket = std::mem::take(&mut self.session.basket);
        let in_shop = self.session.in_shop;
        self.end_session();
        self.session.basket = basket;
        self.session.in_shop = in_shop;
        let size = self.default_size();
        let mut picks = BTreeMap::new();
        if let Some(card) = self.card_view() {
            for (i, img) in card.images.iter().enumerate().take(MAX_PICKS) {
                if let Some(q) = img.dpof_quantity.filter(|q| *q > 0) {
                    picks.insert(
                        i,
                        Pick {
                            size,
                            quantity: q.min(MAX_QUANTITY),
                            fit: Fit::Crop,
                        },
                    );
                }
            }
        }
        self.session.camera_marked = !picks.is_empty();
        self.session.picks = picks;
        self.notice = None;
        self.go(Screen::Select);
        self.thumb_effects()
    }

    fn default_size(&self) -> PrintSize {
        self.cfg
            .prices
            .entries
            .first()
            .map(|e| e.size)
            .unwrap_or(PrintSize::L)
    }

    fn sizes(&self) -> Vec<PrintSize> {
        self.cfg.prices.entries.iter().map(|e| e.size).collect()
    }

    /// Keeps the highlighted photo on screen.
    fn scroll_grid(&mut self) {
        let g = self.grid();
        let row = self.session.cursor / g.cols;
        if row < self.session.top_row {
            self.session.top_row = row;
        } else if row >= self.session.top_row + g.rows {
            self.session.top_row = row + 1 - g.rows;
        }
    }

    /// The photos on screen, for the thumbnail loader.
    pub fn visible(&self) -> Range<usize> {
        let g = self.grid();
        let n = self.card_view().map(|c| c.images.len()).unwrap_or(0);
        let first = (self.session.top_row * g.cols).min(n);
        first..(first + g.page()).min(n)
    }

    fn thumb_effects(&self) -> Vec<Effect> {
        let Some(card) = self.card_view() else {
            return Vec::new();
        };
        if self.screen != Screen::Select {
            return Vec::new();
        }
        let generation = card.generation;
        let mut fx = vec![Effect::FocusThumbs {
            generation,
            window: self.visible(),
        }];
        let cursor = self.session.cursor;
        if card.preview.as_ref().map(|(i, _)| *i) != Some(cursor) {
            fx.push(Effect::WantPreview {
                generation,
                index: cursor,
            });
        }
        fx
    }

    // ------------------------------------------------------------------ card readers

    fn on_chip(&mut self, read: ChipRead) -> Vec<Effect> {
        let was_in = self.chip_in;
        self.chip_in = read != ChipRead::Empty;
        self.last_input_ms = self.now_ms;
        let ic = self.session.method == Some(PaymentMethod::IcCard);
        match read {
            ChipRead::Card(card) if ic && self.screen == Screen::Card => self.card_read(card),
            ChipRead::Unreadable(why) if ic && self.screen == Screen::Card => {
                self.notice = Some(Notice::CardReadError(why));
                Vec::new()
            }
            ChipRead::Empty
                if was_in && ic && matches!(self.screen, Screen::Pin | Screen::Card) =>
            {
                self.session.card = None;
                self.session.pin.clear();
                self.notice = Some(Notice::IcRemoved);
                self.go(Screen::Method);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn on_swipe(&mut self, swipe: Swipe) -> Vec<Effect> {
        self.last_input_ms = self.now_ms;
        let takes_swipe = self.screen == Screen::Card
            && self.session.method.is_some()
            && self.session.method != Some(PaymentMethod::IcCard);
        match swipe {
            Swipe::Card(card) if takes_swipe => self.card_read(card),
            Swipe::Unreadable(why) if takes_swipe => {
                self.notice = Some(Notice::CardReadError(why));
                Vec::new()
            }
            // A swipe anywhere else is dropped at once, card data and all.
            _ => {
                self.notice = Some(Notice::SwipeElsewhere);
                Vec::new()
            }
        }
    }

    fn needs_pin(&self) -> bool {
        // Offline, a PIN could not be checked until later, when the customer is gone:
        // offline sales are credit without a PIN.
        if self.session.offline {
            return false;
        }
        match self.session.method {
            Some(PaymentMethod::Debit | PaymentMethod::IcCard) => true,
            Some(PaymentMethod::Credit) => {
                self.cfg.pin_pad && self.cfg.credit_pin != CreditPin::Never
            }
            _ => false,
        }
    }

    fn card_read(&mut self, card: CardData) -> Vec<Effect> {
        self.session.card = Some(card);
        self.notice = None;
        if self.needs_pin() {
            self.session.pin.clear();
            self.go(Screen::Pin);
            Vec::new()
        } else {
            self.place_order(None)
        }
    }

    // ------------------------------------------------------------------ keys

    fn on_key(&mut self, key: Key) -> Vec<Effect> {
        // A keyboard-wedge reader types its swipe into the key stream.
        if let Key::Char(c) = key {
            if self.swipe.push(c) {
                self.swipe_at_ms = self.now_ms;
                return Vec::new();
            }
        }
        if self.swipe.is_active() {
            match key {
                Key::Enter => {
                    if let Some(swipe) = self.swipe.finish() {
                        return self.on_swipe(swipe);
                    }
                }
                _ => self.swipe.cancel(),
            }
            return Vec::new();
        }
        if key == Key::F(2) {
            self.lang = self.lang.other();
            return Vec::new();
        }
        self.notice = None;
        match self.screen.clone() {
            Screen::Insert => self.key_insert(key),
            Screen::Start => self.key_start(key),
            Screen::Shop => self.key_shop(key),
            Screen::Writing => Vec::new(),
            Screen::Select => self.key_select(key),
            Screen::Sizes => self.key_sizes(key),
            Screen::Total => self.key_total(key),
            Screen::Method => self.key_method(key),
            Screen::Card => self.key_card(key),
            Screen::Pin => self.key_pin(key),
            Screen::Sending => Vec::new(),
            Screen::Problem(p) => self.key_problem(key, &p),
            Screen::Done => match key {
                Key::Enter => {
                    self.go(Screen::Receipt);
                    Vec::new()
                }
                _ => Vec::new(),
            },
            Screen::Receipt => match key {
                Key::Enter => self.thanks(),
                Key::Down => {
                    self.session.receipt_scroll = (self.session.receipt_scroll + 1).min(60);
                    Vec::new()
                }
                Key::Up => {
                    self.session.receipt_scroll = self.session.receipt_scroll.saturating_sub(1);
                    Vec::new()
                }
                _ => Vec::new(),
            },
            Screen::Thanks => match key {
                Key::Enter => self.reset_to_insert(None),
                _ => Vec::new(),
            },
            Screen::StaffPin => self.key_staff_pin(key),
            Screen::Counter => self.key_counter(key),
        }
    }

    fn key_insert(&mut self, key: Key) -> Vec<Effect> {
        match key {
            Key::Enter if self.card_view().is_some() && self.sells_downloads() => {
                self.start_choice()
            }
            Key::Enter if self.card_view().is_some() => self.start_browsing(),
            Key::F(9)
                if self.cfg.staff_pin.is_some() && self.now_ms >= self.staff_locked_until_ms =>
            {
                self.staff_pin.clear();
                self.go(Screen::StaffPin);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Left/Right over a two-button row; Up leaves it. Returns true if the key was
    /// used.
    fn buttons(&mut self, key: Key, count: usize) -> bool {
        match (self.session.focus, key) {
            (Focus::Button(b), Key::Left) => {
                self.session.focus = Focus::Button(b.saturating_sub(1));
                true
            }
            (Focus::Button(b), Key::Right) => {
                self.session.focus = Focus::Button((b + 1).min(count - 1));
                true
            }
            (Focus::Button(_), Key::Up) => {
                self.session.focus = Focus::Body;
                true
            }
            _ => false,
        }
    }

    fn key_select(&mut self, key: Key) -> Vec<Effect> {
        let n = self.card_view().map(|c| c.images.len()).unwrap_or(0);
        if self.buttons(key, 2) {
            return self.thumb_effects();
        }
        let cols = self.grid().cols;
        let cursor = self.session.cursor;
        match (self.session.focus, key) {
            (Focus::Button(0), Key::Enter) | (_, Key::Esc) => {
                self.end_session();
                self.go(Screen::Insert);
                Vec::new()
            }
            (Focus::Button(_), Key::Enter) => {
                if self.session.picks.is_empty() {
                    self.notice = Some(Notice::PickOneFirst);
                } else {
                    self.session.size_row = 0;
                    self.session.size_top = 0;
                    self.go(Screen::Sizes);
                }
                Vec::new()
            }
            (Focus::Body, Key::Left) => self.move_cursor(cursor.saturating_sub(1)),
            (Focus::Body, Key::Right) => self.move_cursor((cursor + 1).min(n.saturating_sub(1))),
            (Focus::Body, Key::Up) => self.move_cursor(cursor.saturating_sub(cols)),
            (Focus::Body, Key::Down) => {
                if cursor + cols < n {
                    self.move_cursor(cursor + cols)
                } else if cursor / cols < n.saturating_sub(1) / cols {
                    // The last row is short: go to its last photo.
                    self.move_cursor(n.saturating_sub(1))
                } else {
                    self.session.focus = Focus::Button(1);
                    Vec::new()
                }
            }
            (Focus::Body, Key::Enter) => {
                let unreadable = self.card_view().is_some_and(|c| c.is_unreadable(cursor));
                if self.session.picks.remove(&cursor).is_none()
                    && !unreadable
                    && cursor < n
                    && self.session.picks.len() < MAX_PICKS
                {
                    {
                        let size = self.default_size();
                        self.session.picks.insert(
                            cursor,
                            Pick {
                                size,
                                quantity: 1,
                                fit: Fit::Crop,
                            },
                        );
                    }
                }
                Vec::new()
            }
            (Focus::Body, Key::Char(c)) if c.is_ascii_digit() => {
                let unreadable = self.card_view().is_some_and(|c| c.is_unreadable(cursor));
                if cursor < n && !unreadable {
                    let digit = c as u16 - u16::from(b'0');
                    let quantity = self.combine_digit(cursor, digit);
                    self.set_quantity(cursor, quantity);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A digit typed for the photo `index`: appended to the previous one if it came
    /// just before, for the same photo.
    fn combine_digit(&mut self, index: usize, digit: u16) -> u16 {
        let prev = self.session.last_digit;
        let combined = match prev {
            Some((i, at)) if i == index && self.now_ms - at <= DIGIT_COMBINE_MS => {
                let current = self
                    .session
                    .picks
                    .get(&index)
                    .map(|p| p.quantity)
                    .unwrap_or(0);
                let q = current * 10 + digit;
                if q <= MAX_QUANTITY && current > 0 {
                    q
                } else {
                    digit
                }
            }
            _ => digit,
        };
        self.session.last_digit = Some((index, self.now_ms));
        combined
    }

    fn set_quantity(&mut self, index: usize, quantity: u16) {
        if quantity == 0 {
            self.session.picks.remove(&index);
            return;
        }
        let size = self.default_size();
        if let Some(p) = self.session.picks.get_mut(&index) {
            p.quantity = quantity;
        } else if self.session.picks.len() < MAX_PICKS {
            self.session.picks.insert(
                index,
                Pick {
                    size,
                    quantity,
                    fit: Fit::Crop,
                },
            );
        }
    }

    fn move_cursor(&mut self, to: usize) -> Vec<Effect> {
        self.session.cursor = to;
        self.session.last_digit = None;
        self.scroll_grid();
        self.thumb_effects()
    }

    fn key_sizes(&mut self, key: Key) -> Vec<Effect> {
        if self.buttons(key, 2) {
            return Vec::new();
        }
        let rows = self.session.picks.len() + 1;
        // Lines may have gone (quantity 0) since the row was last set.
        self.session.size_row = self.session.size_row.min(rows - 1);
        let row = self.session.size_row;
        let picked: Vec<usize> = self.session.picks.keys().copied().collect();
        match (self.session.focus, key) {
            (Focus::Button(0), Key::Enter) | (_, Key::Esc) => {
                self.session.picks.retain(|_, p| p.quantity > 0);
                self.go(Screen::Select);
                self.thumb_effects()
            }
            (Focus::Button(_), Key::Enter) => {
                self.session.picks.retain(|_, p| p.quantity > 0);
                if self.session.picks.is_empty() {
                    self.notice = Some(Notice::PickOneFirst);
                    self.session.size_row = 0;
                    self.session.focus = Focus::Body;
                } else {
                    self.go(Screen::Total);
                    self.session.focus = Focus::Button(1);
                }
                Vec::new()
            }
            (Focus::Body, Key::Up) => {
                self.session.size_row = row.saturating_sub(1);
                self.session.last_digit = None;
                Vec::new()
            }
            (Focus::Body, Key::Down) => {
                if row + 1 < rows {
                    self.session.size_row = row + 1;
                } else {
                    self.session.focus = Focus::Button(1);
                }
                self.session.last_digit = None;
                Vec::new()
            }
            (Focus::Body, Key::Left | Key::Right) => {
                let sizes = self.sizes();
                let step = |s: PrintSize| {
                    let i = sizes.iter().position(|x| *x == s).unwrap_or(0);
                    let j = if key == Key::Left {
                        (i + sizes.len() - 1) % sizes.len().max(1)
                    } else {
                        (i + 1) % sizes.len().max(1)
                    };
                    sizes.get(j).copied().unwrap_or(s)
                };
                if row == 0 {
                    let first = picked
                        .first()
                        .and_then(|i| self.session.picks.get(i))
                        .map(|p| p.size)
                        .unwrap_or_else(|| self.default_size());
                    let next = step(first);
                    for p in self.session.picks.values_mut() {
                        p.size = next;
                    }
                } else if let Some(p) = picked
                    .get(row - 1)
                    .and_then(|i| self.session.picks.get_mut(i))
                {
                    p.size = step(p.size);
                }
                Vec::new()
            }
            // B: the whole photo with a white border, or back to crop-to-fill; on the
            // first row, for every photo.
            (Focus::Body, Key::Char('b' | 'B')) => {
                let flip = |f: Fit| match f {
                    Fit::Crop => Fit::Border,
                    Fit::Border => Fit::Crop,
                };
                if row == 0 {
                    let next = flip(
                        picked
                            .first()
                            .and_then(|i| self.session.picks.get(i))
                            .map(|p| p.fit)
                            .unwrap_or(Fit::Crop),
                    );
                    for p in self.session.picks.values_mut() {
                        p.fit = next;
                    }
                } else if let Some(p) = picked
                    .get(row - 1)
                    .and_then(|i| self.session.picks.get_mut(i))
                {
                    p.fit = flip(p.fit);
                }
                Vec::new()
            }
            (Focus::Body, Key::Char(c)) if c.is_ascii_digit() && row > 0 => {
                if let Some(index) = picked.get(row - 1).copied() {
                    let digit = c as u16 - u16::from(b'0');
                    let q = self.combine_digit(index, digit);
                    // Zero stays on screen as 0 until the customer moves on.
                    if let Some(p) = self.session.picks.get_mut(&index) {
                        p.quantity = q;
                    }
                }
                Vec::new()
            }
            (Focus::Body, Key::Backspace) if row > 0 => {
                if let Some(p) = picked
                    .get(row - 1)
                    .and_then(|i| self.session.picks.get_mut(i))
                {
                    p.quantity /= 10;
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn key_total(&mut self, key: Key) -> Vec<Effect> {
        if self.buttons(key, 2) {
            return Vec::new();
        }
        match (self.session.focus, key) {
            (Focus::Button(0), Key::Enter) | (_, Key::Esc) => {
                self.go(Screen::Sizes);
                Vec::new()
            }
            (Focus::Button(_), Key::Enter) => {
                self.session.method_cursor = 0;
                self.go(Screen::Method);
                Vec::new()
            }
            (Focus::Body, Key::Down | Key::Enter) => {
                self.session.focus = Focus::Button(1);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    pub const METHODS: [PaymentMethod; 4] = [
        PaymentMethod::Credit,
        PaymentMethod::Debit,
        PaymentMethod::PointCard,
        PaymentMethod::IcCard,
    ];

    /// Whether this kiosk can take `method` at all.
    pub fn method_available(&self, method: PaymentMethod) -> bool {
        match method {
            PaymentMethod::Debit | PaymentMethod::IcCard => self.cfg.pin_pad,
            PaymentMethod::Credit | PaymentMethod::PointCard => true,
        }
    }

    fn key_method(&mut self, key: Key) -> Vec<Effect> {
        let cursor = self.session.method_cursor;
        let chosen = match key {
            Key::Up => {
                self.session.method_cursor = cursor.saturating_sub(1);
                None
            }
            Key::Down => {
                self.session.method_cursor = (cursor + 1).min(Self::METHODS.len() - 1);
                None
            }
            Key::Char(c @ '1'..='4') => {
                let i = usize::from(c as u8 - b'1');
                self.session.method_cursor = i;
                Self::METHODS.get(i).copied()
            }
            Key::Enter => Self::METHODS.get(cursor).copied(),
            Key::Esc if self.session.in_shop && self.prints() == 0 => {
                self.go(Screen::Shop);
                None
            }
            Key::Esc => {
                self.go(Screen::Total);
                self.session.focus = Focus::Button(1);
                None
            }
            _ => None,
        };
        let Some(method) = chosen else {
            return Vec::new();
        };
        // Downloads are written only after an authorisation: never offline.
        if !self.online && !self.session.basket.is_empty() {
            self.notice = Some(Notice::OfflineNoPayments);
            return Vec::new();
        }
        if !self.method_available(method) {
            self.notice = Some(Notice::MethodUnavailable);
            return Vec::new();
        }
        self.session.offline = !self.online;
        if self.session.offline {
            let total = self.total();
            // Per order, and for the store in all while earlier ones wait.
            let within = total.is_some_and(|t| {
                t.amount_minor() <= self.cfg.offline_floor_limit_minor
                    && self.standing_in_minor.saturating_add(t.amount_minor())
                        <= self.cfg.offline_store_limit_minor
            });
            let pin_required = self.cfg.pin_pad && self.cfg.credit_pin == CreditPin::Required;
            if method != PaymentMethod::Credit || !within || pin_required {
                self.notice = Some(if self.cfg.offline_floor_limit_minor > 0 {
                    Notice::OfflineOnlyCredit(Money::new(
                        self.cfg.offline_floor_limit_minor,
                        self.cfg.prices.currency,
                    ))
                } else {
                    Notice::OfflineNoPayments
                });
                return Vec::new();
            }
        }
        self.session.method = Some(method);
        self.session.card = None;
        self.go(Screen::Card);
        if method == PaymentMethod::IcCard && self.chip_in {
            return vec![Effect::RereadChip];
        }
        Vec::new()
    }

    fn key_card(&mut self, key: Key) -> Vec<Effect> {
        match key {
            Key::Esc => {
                self.session.card = None;
                self.go(Screen::Method);
                if self.session.method == Some(PaymentMethod::IcCard)
                    && !self.cfg.demo_cards.is_empty()
                {
                    return vec![Effect::DemoRemoveChip];
                }
                Vec::new()
            }
            Key::Char(c) if c.is_ascii_digit() && !self.cfg.demo_cards.is_empty() => {
                let Some(card) = usize::from(c as u8 - b'0')
                    .checked_sub(1)
                    .and_then(|i| self.cfg.demo_cards.get(i))
                    .cloned()
                else {
                    return Vec::new();
                };
                if self.session.method == Some(PaymentMethod::IcCard) {
                    return vec![Effect::DemoInsertChip {
                        track2_equivalent: Redacted(card.track2_equivalent()),
                    }];
                }
                // The demo panel types exactly what a keyboard-wedge reader would.
                let mut fx = Vec::new();
                for ch in card.track1.chars().chain(card.track2.chars()) {
                    fx.extend(self.on_key(Key::Char(ch)));
                }
                fx.extend(self.on_key(Key::Enter));
                fx
            }
            _ => Vec::new(),
        }
    }

    fn key_pin(&mut self, key: Key) -> Vec<Effect> {
        match key {
            Key::Char(c) if c.is_ascii_digit() => {
                self.session.pin.push(c);
                Vec::new()
            }
            Key::Backspace => {
                self.session.pin.backspace();
                Vec::new()
            }
            Key::Esc => {
                self.session.pin.clear();
                self.session.card = None;
                self.go(Screen::Card);
                if self.session.method == Some(PaymentMethod::IcCard) && self.chip_in {
                    return vec![Effect::RereadChip];
                }
                Vec::new()
            }
            Key::Enter => {
                let optional = self.session.method == Some(PaymentMethod::Credit)
                    && self.cfg.credit_pin == CreditPin::Optional;
                if self.session.pin.is_empty() && optional {
                    return self.place_order(None);
                }
                if self.session.pin.len() < 4 {
                    self.session.pin.clear();
                    self.notice = Some(Notice::PinTooShort);
                    return Vec::new();
                }
                let pin = std::mem::take(&mut self.session.pin);
                self.place_order(Some(pin))
            }
            _ => Vec::new(),
        }
    }

    fn key_problem(&mut self, key: Key, problem: &Problem) -> Vec<Effect> {
        let single = matches!(problem, Problem::PinLocked | Problem::WriteFailed(_));
        if !single && self.buttons(key, 2) {
            return Vec::new();
        }
        match (self.session.focus, key) {
            _ if single && key == Key::Enter => self.thanks(),
            (Focus::Body, Key::Down) if !single => {
                self.session.focus = Focus::Button(0);
                Vec::new()
            }
            (Focus::Body | Focus::Button(0), Key::Enter) | (_, Key::Esc) if !single => {
                self.session.card = None;
                self.session.method_cursor = 0;
                self.go(Screen::Method);
                Vec::new()
            }
            (Focus::Button(_), Key::Enter) => self.thanks(),
            _ => Vec::new(),
        }
    }

    fn key_staff_pin(&mut self, key: Key) -> Vec<Effect> {
        match key {
            Key::Char(c) if c.is_ascii_digit() => {
                self.staff_pin.push(c);
                Vec::new()
            }
            Key::Backspace => {
                self.staff_pin.backspace();
                Vec::new()
            }
            Key::Esc => self.reset_to_insert(None),
            Key::Enter => {
                let ok = self
                    .cfg
                    .staff_pin
                    .as_ref()
                    .is_some_and(|want| self.staff_pin.matches(&want.0));
                self.staff_pin.clear();
                if ok {
                    self.wrong_staff_pins = 0;
                    self.counter = Counter {
                        refreshed_ms: self.now_ms,
                        ..Counter::default()
                    };
                    self.go(Screen::Counter);
                    vec![Effect::CounterRefresh]
                } else {
                    self.wrong_staff_pins += 1;
                    if self.wrong_staff_pins >= MAX_WRONG_STAFF_PINS {
                        self.wrong_staff_pins = 0;
                        self.staff_locked_until_ms = self.now_ms + STAFF_LOCKOUT_MS;
                        return self.reset_to_insert(Some(Notice::StaffPinWrong));
                    }
                    self.notice = Some(Notice::StaffPinWrong);
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
    }

    fn key_counter(&mut self, key: Key) -> Vec<Effect> {
        let n = self.counter.matching().len();
        match key {
            Key::Esc if !self.counter.query.is_empty() => {
                self.counter.query.clear();
                Vec::new()
            }
            Key::Esc => self.reset_to_insert(None),
            Key::Up => {
                self.counter.cursor = self.counter.cursor.saturating_sub(1);
                Vec::new()
            }
            Key::Down => {
                self.counter.cursor = (self.counter.cursor + 1).min(n.saturating_sub(1));
                Vec::new()
            }
            Key::Backspace => {
                self.counter.query.pop();
                self.counter.cursor = 0;
                Vec::new()
            }
            Key::Char(c) if c.is_ascii_alphanumeric() && self.counter.query.len() < 26 => {
                self.counter.query.push(c.to_ascii_uppercase());
                self.counter.cursor = 0;
                Vec::new()
            }
            Key::Enter => {
                let rows = self.counter.matching();
                match rows.get(self.counter.cursor) {
                    None => {
                        self.notice = Some(Notice::CounterNone);
                        Vec::new()
                    }
                    Some(row) if row.state == OrderState::Delivered => {
                        vec![Effect::MarkCollected(row.order_id)]
                    }
                    Some(_) => {
                        self.notice = Some(Notice::CounterNotReady);
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        }
    }

    // ------------------------------------------------------------------ the order

    /// The order's lines with their prices, in the order of the card.
    pub fn priced_lines(&self) -> Vec<PricedLine> {
        let card = self.card_view();
        self.session
            .picks
            .iter()
            .map(|(i, p)| {
                let name = card
                    .and_then(|c| c.images.get(*i))
                    .map(|m| m.file_name.clone())
                    .unwrap_or_default();
                PricedLine {
                    index: *i,
                    file_name: name,
                    pick: *p,
                    unit: self.cfg.prices.unit_price(p.size).ok(),
                    amount: self.cfg.prices.line_price(p.size, p.quantity).ok(),
                }
            })
            .collect()
    }

    /// What the customer pays: the prints and the basket.
    pub fn total(&self) -> Option<Money> {
        let prints = self.prints_total()?;
        prints.checked_add(self.basket_total()).ok()
    }

    /// The prints' part of the total.
    pub fn prints_total(&self) -> Option<Money> {
        if self.prints() == 0 {
            return Some(Money::new(0, self.cfg.prices.currency));
        }
        self.cfg
            .prices
            .total(
                self.session
                    .picks
                    .values()
                    .filter(|p| p.quantity > 0)
                    .map(|p| (p.size, p.quantity)),
            )
            .ok()
    }

    pub fn prints(&self) -> u32 {
        self.session
            .picks
            .values()
            .map(|p| u32::from(p.quantity))
            .sum()
    }

    fn place_order(&mut self, pin: Option<PinPad>) -> Vec<Effect> {
        let (Some(card), Some(method)) = (self.session.card.clone(), self.session.method) else {
            return Vec::new();
        };
        // The network went away after the payment method was chosen online: the
        // offline rules were not applied, so nothing is taken now.
        if !self.online && !self.session.offline {
            self.session.card = None;
            self.notice = Some(Notice::OfflineNoPayments);
            self.go(Screen::Method);
            return Vec::new();
        }
        let Some(view) = self.card_view() else {
            return self.reset_to_insert(Some(Notice::MediaRemoved));
        };
        let lines: Vec<DraftLine> = self
            .session
            .picks
            .iter()
            .filter(|(_, p)| p.quantity > 0)
            .filter_map(|(i, p)| {
                view.images.get(*i).map(|m| DraftLine {
                    path: m.path.clone(),
                    file_name: m.file_name.clone(),
                    size: p.size,
                    quantity: p.quantity,
                    fit: p.fit,
                })
            })
            .collect();
        let entry = if method == PaymentMethod::IcCard {
            EntryMode::Chip
        } else {
            EntryMode::Swipe
        };
        if !self.session.basket.is_empty() {
            let prints = (!lines.is_empty()).then(|| {
                Box::new(OrderPlan {
                    lines,
                    method,
                    card: card.clone(),
                    entry,
                    pin: pin.as_ref().map(PinPad::duplicate),
                    offline: false,
                })
            });
            return self.buy_downloads(card, method, pin, prints);
        }
        self.session.sending = Some(Sending::Saving);
        self.session.order_id = None;
        self.go(Screen::Sending);
        vec![Effect::PlaceOrder(Box::new(OrderPlan {
            lines,
            method,
            card,
            entry,
            pin,
            offline: self.session.offline,
        }))]
    }

    fn on_order_saved(&mut self, id: OrderId) -> Vec<Effect> {
        if self.screen != Screen::Sending || self.session.sending != Some(Sending::Saving) {
            return Vec::new();
        }
        self.session.order_id = Some(id);
        self.session.sending = Some(Sending::Saved(id));
        if self.session.offline {
            // Taken offline within the floor limit: the date comes later.
            return self.finish_order(id, Outcome::Pending);
        }
        Vec::new()
    }

    fn on_pending(&mut self, id: OrderId) -> Vec<Effect> {
        if self.screen != Screen::Sending || self.session.order_id != Some(id) {
            return Vec::new();
        }
        self.finish_order(id, Outcome::Pending)
    }

    fn on_answer(&mut self, order: KioskOrder) -> Vec<Effect> {
        if self.screen != Screen::Sending || self.session.order_id != Some(order.order_id) {
            return Vec::new();
        }
        self.session.sending = None;
        // The downloads of the basket are on the card and paid: a prints order that
        // fails after them leaves their receipt, and says so.
        if let (Some(done), OrderResponse::Declined { .. } | OrderResponse::Rejected { .. }) =
            (self.session.downloaded.clone(), &order.answer)
        {
            let why = match &order.answer {
                OrderResponse::Declined { code, .. } => self.lang.decline_reason(*code).to_string(),
                OrderResponse::Rejected { reason, .. } => reason.clone(),
                _ => String::new(),
            };
            self.session.picks.clear();
            let fx = self.finish_order(
                done.order_id,
                Outcome::Downloaded {
                    auth_code: done.auth_code,
                },
            );
            self.notice = Some(Notice::PrintsNotPaid(why));
            return fx;
        }
        match order.answer {
            OrderResponse::Accepted(a) => self.finish_order(
                order.order_id,
                Outcome::Approved {
                    auth_code: a.auth_code,
                    delivery_date: a.delivery_date,
                },
            ),
            OrderResponse::Declined {
                code: DeclineCode::IncorrectPin,
                ..
            } => {
                self.session.wrong_pins += 1;
                if self.session.wrong_pins >= MAX_WRONG_PINS {
                    self.session.card = None;
                    self.go(Screen::Problem(Problem::PinLocked));
                } else {
                    self.notice = Some(Notice::PinWrong(MAX_WRONG_PINS - self.session.wrong_pins));
                    self.go(Screen::Pin);
                }
                Vec::new()
            }
            OrderResponse::Declined { code, .. } => {
                self.session.card = None;
                self.go(Screen::Problem(Problem::Declined(code)));
                Vec::new()
            }
            OrderResponse::Rejected { reason, .. } => {
                self.session.card = None;
                self.go(Screen::Problem(Problem::Rejected(reason)));
                Vec::new()
            }
            // Not final: the outbox keeps trying; treat as pending.
            _ => self.finish_order(order.order_id, Outcome::Pending),
        }
    }

    /// S508: the order is placed. The card data is no longer needed; the receipt
    /// prints at once.
    fn finish_order(&mut self, id: OrderId, outcome: Outcome) -> Vec<Effect> {
        let (brand, last4) = match &self.session.card {
            Some(c) => (c.pan.brand(), c.pan.last4().to_string()),
            None => (CardBrand::Other, String::new()),
        };
        let lines = self
            .priced_lines()
            .into_iter()
            .filter(|line| line.pick.quantity > 0)
            .filter_map(|line| {
                Some(ReceiptLine {
                    file_name: line.file_name,
                    size: line.pick.size,
                    quantity: line.pick.quantity,
                    unit: line.unit?,
                    amount: line.amount?,
                })
            })
            .collect();
        let at = chrono::DateTime::from_timestamp_millis(self.now_ms)
            .unwrap_or_default()
            .naive_utc()
            + chrono::Duration::hours(i64::from(self.cfg.utc_offset_hours));
        let receipt = Receipt {
            lang: self.lang,
            store_name: self.cfg.store_name.clone(),
            kiosk_name: self.cfg.kiosk_name.clone(),
            at,
            order_id: id,
            lines,
            downloads: self.receipt_downloads(),
            total: self
                .total()
                .unwrap_or(Money::new(0, self.cfg.prices.currency)),
            method: self.session.method.unwrap_or(PaymentMethod::Credit),
            card_brand: brand,
            card_last4: last4,
            outcome,
        };
        self.session.card = None;
        self.session.pin.clear();
        self.session.sending = None;
        self.session.receipt = Some(receipt.clone());
        self.session.printing = Printing::Printing;
        self.go(Screen::Done);
        vec![Effect::PrintReceipt(Box::new(receipt))]
    }

    fn thanks(&mut self) -> Vec<Effect> {
        // The receipt stays for the thank-you screen; everything else goes.
        let receipt = self.session.receipt.take();
        self.end_session();
        self.session.receipt = receipt;
        self.go(Screen::Thanks);
        let mut fx = Vec::new();
        if self.chip_in && !self.cfg.demo_cards.is_empty() {
            fx.push(Effect::DemoRemoveChip);
        }
        fx
    }
}
