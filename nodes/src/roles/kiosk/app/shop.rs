//! Downloads in the customer session: the first screen's choice (prints or downloads),
//! the shop (browse by kind, search by title or artist in kana or romaji, an item's
//! page with its cover, size, price and the room left on the card), a basket that is
//! paid with the prints, the write ("do not remove your card"), and what the receipt
//! says of each item. Pure, like the rest of [`super::App`].

use printmesh_protocol::card::CardData;
use printmesh_protocol::content::{Item, ItemId, ItemKind};
use printmesh_protocol::messages::{DeclineCode, PaymentMethod};
use printmesh_protocol::money::Money;
use printmesh_protocol::seal::EntryMode;
use printmesh_protocol::{AuthCode, OrderId};

use super::{App, Effect, Focus, Key, Notice, OrderPlan, PinPad, Problem, Screen, Thumb};
use crate::roles::kiosk::receipt::{Outcome, ReceiptDownload};

/// The tabs of the shop: every item, then one per kind.
pub const TABS: [Option<ItemKind>; 4] = [
    None,
    Some(ItemKind::Music),
    Some(ItemKind::Image),
    Some(ItemKind::Game),
];
/// Longest search text.
pub const MAX_QUERY: usize = 40;
/// Items in one basket (the protocol's cap).
pub const MAX_BASKET: usize = printmesh_protocol::wire::download::MAX_ITEMS;

/// One item on sale here, as the screen shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ShopItem {
    /// The company's PeerId bytes, and its name.
    pub company: Vec<u8>,
    pub company_name: String,
    pub item: Item,
    /// The cover, decoded for the screen (as photo previews are).
    pub cover: Option<Thumb>,
}

/// The inserted card's room, as the runtime read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardRoom {
    pub free_bytes: u64,
    pub serial: u32,
}

/// Where a purchase's write is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writing {
    Starting,
    Fetching { done: u64, total: u64 },
    Paying,
    Writing { done: u64, total: u64 },
    Finishing,
}

/// Why a write could not be done, in the customer's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteFailure {
    CardGone,
    WriteProtected,
    Full { need: u64 },
    Other(String),
}

/// One item written, as the receipt shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenItem {
    pub title_ja: String,
    pub title_en: String,
    pub price: Money,
    pub code: String,
    pub licence: String,
    pub card_path: String,
}

/// A purchase written and paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadDone {
    pub order_id: OrderId,
    pub auth_code: AuthCode,
    pub total: Money,
    pub items: Vec<WrittenItem>,
}

/// How a purchase ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadResult {
    Done(DownloadDone),
    Declined(DeclineCode),
    Rejected(String),
    /// Nothing charged: any hold was released.
    WriteFailed(WriteFailure),
    Failed(String),
}

/// What the runtime buys: the basket, the card that pays, and the prints order to
/// place once the downloads are on the card (a basket of both).
#[derive(Debug)]
pub struct DownloadPlan {
    pub company: Vec<u8>,
    pub items: Vec<ItemId>,
    pub method: PaymentMethod,
    pub card: CardData,
    pub entry: EntryMode,
    pub pin: Option<PinPad>,
    pub then_prints: Option<Box<OrderPlan>>,
    /// The downloads' total as the customer saw it (a catalogue changed since is not
    /// charged).
    pub shown_total: Money,
}

impl App {
    /// Whether this kiosk sells downloads now: something on sale, and a card whose
    /// room it could read.
    pub fn downloads_available(&self) -> bool {
        !self.shop.is_empty() && self.card_room.is_some()
    }

    /// The items of the shop's current tab matching the search, as indexes.
    pub fn shop_view(&self) -> Vec<usize> {
        let kind = TABS.get(self.session.shop_tab).copied().flatten();
        let q = self.session.query.trim();
        self.shop
            .iter()
            .enumerate()
            .filter(|(_, s)| kind.is_none_or(|k| s.item.kind == k))
            .filter(|(_, s)| q.is_empty() || s.item.matches(q))
            .map(|(i, _)| i)
            .collect()
    }

    /// The item under the cursor.
    pub fn shop_current(&self) -> Option<&ShopItem> {
        let view = self.shop_view();
        view.get(self.session.shop_cursor)
            .and_then(|i| self.shop.get(*i))
    }

    /// The basket's items, in the order they were added.
    pub fn basket_items(&self) -> Vec<&ShopItem> {
        self.session
            .basket
            .iter()
            .filter_map(|(company, id)| {
                self.shop
                    .iter()
                    .find(|s| s.company == *company && s.item.id == *id)
            })
            .collect()
    }

    pub fn in_basket(&self, s: &ShopItem) -> bool {
        self.session
            .basket
            .iter()
            .any(|(c, id)| *c == s.company && *id == s.item.id)
    }

    /// What the basket costs.
    pub fn basket_total(&self) -> Money {
        self.basket_items()
            .iter()
            .fold(Money::new(0, self.cfg.prices.currency), |acc, s| {
                acc.checked_add(s.item.price).unwrap_or(acc)
            })
    }

    /// The basket's bytes.
    pub fn basket_bytes(&self) -> u64 {
        self.basket_items().iter().map(|s| s.item.size).sum()
    }

    /// The room left on the card once the basket is written.
    pub fn room_after_basket(&self) -> Option<u64> {
        self.card_room
            .map(|r| r.free_bytes.saturating_sub(self.basket_bytes()))
    }

    /// S501 with a card in: prints or downloads.
    pub(super) fn start_choice(&mut self) -> Vec<Effect> {
        self.end_session();
        self.notice = None;
        self.go(Screen::Start);
        self.session.focus = Focus::Button(if self.has_photos() { 0 } else { 1 });
        Vec::new()
    }

    pub(super) fn has_photos(&self) -> bool {
        self.card_view().is_some_and(|c| !c.images.is_empty())
    }

    pub(super) fn key_start(&mut self, key: Key) -> Vec<Effect> {
        let chosen = match (self.session.focus, key) {
            (_, Key::Left) => {
                self.session.focus = Focus::Button(0);
                None
            }
            (_, Key::Right) => {
                self.session.focus = Focus::Button(1);
                None
            }
            (_, Key::Char('1')) => Some(0),
            (_, Key::Char('2')) => Some(1),
            (Focus::Button(b), Key::Enter) => Some(b),
            (Focus::Body, Key::Enter) => Some(0),
            _ => None,
        };
        match chosen {
            Some(0) if self.has_photos() => self.start_browsing(),
            Some(0) => {
                self.notice = Some(Notice::NoPhotos);
                Vec::new()
            }
            Some(_) => self.open_shop(),
            None => Vec::new(),
        }
    }

    /// Into the shop (the basket and the picks stay).
    pub(super) fn open_shop(&mut self) -> Vec<Effect> {
        self.go(Screen::Shop);
        self.session.in_shop = true;
        vec![Effect::ReadCardRoom]
    }

    pub(super) fn key_shop(&mut self, key: Key) -> Vec<Effect> {
        let n = self.shop_view().len();
        if let Focus::Button(b) = self.session.focus {
            return match key {
                Key::Left => {
                    self.session.focus = Focus::Button(b.saturating_sub(1));
                    Vec::new()
                }
                Key::Right => {
                    self.session.focus = Focus::Button((b + 1).min(2));
                    Vec::new()
                }
                Key::Up | Key::Esc => {
                    self.session.focus = Focus::Body;
                    Vec::new()
                }
                Key::Enter => match b {
                    0 => self.leave_shop(),
                    1 if self.has_photos() => {
                        // To the photos (the camera's picks made), the basket kept:
                        // both are paid together.
                        self.start_browsing()
                    }
                    1 => {
                        self.notice = Some(Notice::NoPhotos);
                        Vec::new()
                    }
                    _ => self.shop_pay(),
                },
                _ => Vec::new(),
            };
        }
        if self.session.searching {
            match key {
                Key::Char(c) if !c.is_control() => {
                    if self.session.query.chars().count() < MAX_QUERY {
                        self.session.query.push(c);
                    }
                    self.session.shop_cursor = 0;
                    return Vec::new();
                }
                Key::Backspace => {
                    self.session.query.pop();
                    self.session.shop_cursor = 0;
                    return Vec::new();
                }
                Key::Enter | Key::Esc => {
                    self.session.searching = false;
                    return Vec::new();
                }
                _ => {}
            }
        }
        match key {
            Key::Char('/') => {
                self.session.searching = true;
                Vec::new()
            }
            Key::Char(c) if c.is_alphanumeric() && !c.is_ascii_digit() => {
                // Typing searches.
                self.session.searching = true;
                self.session.query.push(c);
                self.session.shop_cursor = 0;
                Vec::new()
            }
            Key::Backspace if !self.session.query.is_empty() => {
                self.session.query.clear();
                self.session.shop_cursor = 0;
                Vec::new()
            }
            Key::Left | Key::Right => {
                let t = self.session.shop_tab;
                self.session.shop_tab = if key == Key::Left {
                    t.checked_sub(1).unwrap_or(TABS.len() - 1)
                } else {
                    (t + 1) % TABS.len()
                };
                self.session.shop_cursor = 0;
                Vec::new()
            }
            Key::Up => {
                self.session.shop_cursor = self.session.shop_cursor.saturating_sub(1);
                Vec::new()
            }
            Key::Down if self.session.shop_cursor + 1 >= n => {
                self.session.focus = Focus::Button(2);
                Vec::new()
            }
            Key::Down => {
                self.session.shop_cursor += 1;
                Vec::new()
            }
            Key::Enter => {
                self.toggle_current();
                Vec::new()
            }
            Key::Esc => self.leave_shop(),
            _ => Vec::new(),
        }
    }

    fn leave_shop(&mut self) -> Vec<Effect> {
        self.session.in_shop = false;
        if self.card_view().is_some() {
            self.go(Screen::Start);
            self.session.focus = Focus::Button(1);
            Vec::new()
        } else {
            self.reset_to_insert(None)
        }
    }

    /// Puts the item under the cursor in the basket, or takes it out.
    fn toggle_current(&mut self) {
        let Some(s) = self.shop_current().cloned() else {
            return;
        };
        if self.in_basket(&s) {
            self.session
                .basket
                .retain(|(c, id)| !(*c == s.company && *id == s.item.id));
            return;
        }
        if self
            .session
            .basket
            .first()
            .is_some_and(|(c, _)| *c != s.company)
        {
            self.notice = Some(Notice::OneCompanyAtATime);
            return;
        }
        if self.session.basket.len() >= MAX_BASKET {
            self.notice = Some(Notice::BasketFull(MAX_BASKET));
            return;
        }
        let room = self.room_after_basket().unwrap_or(0);
        if s.item
            .size
            .saturating_add(crate::roles::kiosk::cardwrite::HEADROOM_BYTES)
            > room
        {
            self.notice = Some(Notice::NoRoomOnCard(s.item.size));
            return;
        }
        self.session.basket.push((s.company, s.item.id));
    }

    fn shop_pay(&mut self) -> Vec<Effect> {
        if self.session.basket.is_empty() && self.prints() == 0 {
            self.notice = Some(Notice::PickOneFirst);
            return Vec::new();
        }
        self.session.method_cursor = 0;
        self.go(Screen::Method);
        Vec::new()
    }

    /// The payment for a basket (with the prints picked, if any): the downloads are
    /// bought and written first; the prints order follows once they are on the card.
    pub(super) fn buy_downloads(
        &mut self,
        card: CardData,
        method: PaymentMethod,
        pin: Option<PinPad>,
        then_prints: Option<Box<OrderPlan>>,
    ) -> Vec<Effect> {
        let company = self
            .session
            .basket
            .first()
            .map(|(c, _)| c.clone())
            .unwrap_or_default();
        let items = self
            .session
            .basket
            .iter()
            .map(|(_, id)| id.clone())
            .collect();
        let entry = if method == PaymentMethod::IcCard {
            EntryMode::Chip
        } else {
            EntryMode::Swipe
        };
        let shown_total = self.basket_total();
        self.session.writing = Some(Writing::Starting);
        self.session.prints_follow = then_prints.is_some();
        self.go(Screen::Writing);
        vec![Effect::BuyDownloads(Box::new(DownloadPlan {
            company,
            items,
            method,
            card,
            entry,
            pin,
            then_prints,
            shown_total,
        }))]
    }

    pub(super) fn on_download_finished(&mut self, result: DownloadResult) -> Vec<Effect> {
        if self.screen != Screen::Writing {
            return Vec::new();
        }
        self.session.writing = None;
        match result {
            DownloadResult::Done(done) => {
                self.session.downloaded = Some(done.clone());
                if self.session.prints_follow {
                    // The runtime places the prints order now; its answer ends the
                    // visit as for prints alone.
                    self.session.sending = Some(super::Sending::Saving);
                    self.session.order_id = None;
                    self.go(Screen::Sending);
                    return Vec::new();
                }
                self.finish_order(
                    done.order_id,
                    Outcome::Downloaded {
                        auth_code: done.auth_code.clone(),
                    },
                )
            }
            DownloadResult::Declined(code) => {
                self.session.card = None;
                self.go(Screen::Problem(Problem::Declined(code)));
                Vec::new()
            }
            DownloadResult::Rejected(why) | DownloadResult::Failed(why) => {
                self.session.card = None;
                self.go(Screen::Problem(Problem::Rejected(why)));
                Vec::new()
            }
            DownloadResult::WriteFailed(f) => {
                self.session.card = None;
                self.go(Screen::Problem(Problem::WriteFailed(f)));
                Vec::new()
            }
        }
    }

    /// The receipt's lines for what was written.
    pub(super) fn receipt_downloads(&self) -> Vec<ReceiptDownload> {
        self.session
            .downloaded
            .iter()
            .flat_map(|d| d.items.iter())
            .map(|w| ReceiptDownload {
                title: match self.lang {
                    super::Lang::Ja => w.title_ja.clone(),
                    super::Lang::En => w.title_en.clone(),
                },
                amount: w.price,
                code: w.code.clone(),
                licence: w.licence.clone(),
                card_path: w.card_path.clone(),
            })
            .collect()
    }
}
