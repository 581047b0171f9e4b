//! The kiosk's screens, driven through the pure state machine exactly as the runtime
//! drives it (keys, the media slot, the chip reader, the network's answers), drawn on a
//! ratatui `TestBackend` of 80×24 and pinned by insta snapshots, in both languages.
//! Behaviour tests check what the customer would see and what leaves the kiosk.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::NaiveDate;
use printmesh_nodes::cards::load_cards;
use printmesh_nodes::config::load_prices;
use printmesh_nodes::media::scan;
use printmesh_nodes::roles::kiosk::app::{
    Action, App, AppConfig, CardRoom, CounterRow, CreditPin, DemoCard, DownloadDone, DownloadPlan,
    DownloadResult, Effect, Focus, Key, Notice, Problem, Redacted, Screen, ShopItem, WriteFailure,
    Writing, WrittenItem,
};
use printmesh_nodes::roles::kiosk::chip::ChipRead;
use printmesh_nodes::roles::kiosk::i18n::Lang;
use printmesh_nodes::roles::kiosk::thumbs::{load_grid, load_preview, Thumb};
use printmesh_nodes::roles::kiosk::{KioskOrder, UploadProgress};
use printmesh_protocol::card::CardBrand;
use printmesh_protocol::content::ItemKind;
use printmesh_protocol::messages::{
    DeclineCode, OrderAccepted, OrderLine, OrderResponse, PaymentMethod,
};
use printmesh_protocol::money::{Currency, Money};
use printmesh_protocol::order::OrderState;
use printmesh_protocol::pricing::Fit;
use printmesh_protocol::{AuthCode, OrderId};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// 2026-11-25 05:03:00 UTC (14:03 in Tokyo).
const T0: i64 = 1_795_582_980_000;
const VISA_SWIPE: &str = "%B4111111111111111^PRINTMESH/TEST VISA^30121010000000000000?;4111111111111111=30121010000000000000?";

use printmesh_nodes::testnet::fixtures_dir as fixtures;

fn config(lang: Lang) -> AppConfig {
    let cards = load_cards(&fixtures().join("cards.toml")).unwrap();
    AppConfig {
        store_name: "printmesh Shibuya".into(),
        kiosk_name: "Kiosk 1".into(),
        prices: load_prices(&fixtures().join("demo/prices.toml")).unwrap(),
        lang,
        credit_pin: CreditPin::Optional,
        pin_pad: true,
        idle_timeout_ms: 120_000,
        thanks_timeout_ms: 10_000,
        offline_floor_limit_minor: 0,
        offline_store_limit_minor: 100_000,
        staff_pin: Some(Redacted("2468".into())),
        demo_cards: cards.iter().map(DemoCard::from_test_card).collect(),
        utc_offset_hours: 9,
        downloads: false,
    }
}

fn order_id() -> OrderId {
    "01KAZ3Q7M1X5V8T2B6N4C9D0EF".parse().unwrap()
}

/// Runs effects the way the runtime would, synchronously, for what the screens need.
struct Kiosk {
    app: App,
    card: PathBuf,
    placed: Vec<printmesh_nodes::roles::kiosk::app::OrderPlan>,
    printed: usize,
    /// What the card slot's device says of the card (downloads).
    room: Option<CardRoom>,
    bought: Vec<DownloadPlan>,
    chip_inserts: Vec<String>,
}

impl Kiosk {
    fn new(lang: Lang) -> Kiosk {
        let mut app = App::new(config(lang), T0);
        app.update(Action::Network { online: true });
        Kiosk {
            app,
            card: fixtures().join("memory-card"),
            placed: Vec::new(),
            printed: 0,
            room: None,
            bought: Vec::new(),
            chip_inserts: Vec::new(),
        }
    }

    fn act(&mut self, action: Action) {
        let effects = self.app.update(action);
        self.run(effects);
    }

    fn run(&mut self, effects: Vec<Effect>) {
        let gate = Mutex::new(());
        for e in effects {
            match e {
                Effect::ScanMedia { generation } => {
                    let result = scan(&self.card).map_err(|e| e.to_string());
                    let images = result.clone().unwrap_or_default();
                    self.act(Action::MediaScanned { generation, result });
                    for (index, image) in images.iter().enumerate() {
                        let item = load_grid(index, image, &gate);
                        self.act(Action::Loaded { generation, item });
                    }
                }
                Effect::WantPreview { generation, index } => {
                    let images = scan(&self.card).unwrap();
                    let thumb = images.get(index).and_then(|i| load_preview(i, &gate));
                    self.act(Action::Preview {
                        generation,
                        index,
                        thumb,
                    });
                }
                Effect::PlaceOrder(plan) => self.placed.push(*plan),
                Effect::PrintReceipt(_) => self.printed += 1,
                Effect::ReadCardRoom => self.act(Action::CardRoom(self.room)),
                Effect::BuyDownloads(plan) => self.bought.push(*plan),
                Effect::DemoInsertChip { track2_equivalent } => {
                    self.chip_inserts.push(track2_equivalent.0)
                }
                _ => {}
            }
        }
    }

    fn key(&mut self, key: Key) {
        self.act(Action::Key(key));
    }

    fn keys(&mut self, keys: &[Key]) {
        for k in keys {
            self.key(*k);
        }
    }

    fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.key(Key::Char(c));
        }
    }

    fn at(&mut self, ms_after_t0: i64) {
        self.act(Action::Tick {
            now_ms: T0 + ms_after_t0,
        });
    }

    fn screen(&self) -> String {
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        terminal
            .draw(|f| f.render_widget(&self.app, f.area()))
            .unwrap();
        terminal.backend().to_string()
    }

    /// Insert the fixture card and go through S502-S504 to the payment screens.
    fn go_to_method(&mut self) {
        self.act(Action::MediaPresent(true));
        // To the Next button and on: sizes, then total, then pay.
        self.keys(&[Key::Down, Key::Down, Key::Enter]);
        assert_eq!(self.app.screen, Screen::Sizes);
        self.keys(&[Key::Down, Key::Down, Key::Down, Key::Enter]);
        assert_eq!(self.app.screen, Screen::Total);
        self.key(Key::Enter);
        assert_eq!(self.app.screen, Screen::Method);
    }

    fn answer(&mut self, answer: OrderResponse) {
        let id = order_id();
        self.act(Action::OrderSaved(id));
        let order = KioskOrder {
            order_id: id,
            store: "store-shibuya".parse().unwrap(),
            placed_at_ms: T0,
            lines: Vec::<OrderLine>::new(),
            total: Money::new(90, Currency::Jpy),
            method: PaymentMethod::Credit,
            card_last4: "1111".into(),
            card_brand: CardBrand::Visa,
            answer,
            answered_at_ms: T0,
        };
        self.act(Action::OrderAnswered(Box::new(order)));
    }
}

fn accepted() -> OrderResponse {
    OrderResponse::Accepted(OrderAccepted {
        order_id: order_id(),
        auth_code: AuthCode::try_from("7UCEPP".to_string()).unwrap(),
        amount: Money::new(90, Currency::Jpy),
        delivery_date: NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
        lab: "Shibuya Photo Lab".into(),
    })
}

fn snap(name: &str, lang: Lang, k: &Kiosk) {
    insta::assert_snapshot!(format!("{name}_{}", lang.code()), k.screen());
}

#[test]
fn every_screen_in_both_languages() {
    for lang in [Lang::Ja, Lang::En] {
        let mut k = Kiosk::new(lang);
        snap("s501_insert", lang, &k);
        k.act(Action::MediaPresent(true));
        assert_eq!(k.app.screen, Screen::Select);
        snap("s502_select", lang, &k);
        k.keys(&[Key::Right, Key::Char('3')]);
        snap("s502_select_second_photo", lang, &k);
        k.keys(&[Key::Down, Key::Down, Key::Enter]);
        k.keys(&[Key::Down, Key::Right, Key::Char('b')]);
        snap("s503_sizes", lang, &k);
        k.keys(&[Key::Down, Key::Down, Key::Down, Key::Down, Key::Enter]);
        snap("s504_total", lang, &k);
        k.key(Key::Enter);
        snap("s505_method", lang, &k);
        k.key(Key::Enter);
        snap("s506_card", lang, &k);
        k.type_text(VISA_SWIPE);
        k.key(Key::Enter);
        assert_eq!(k.app.screen, Screen::Pin);
        k.type_text("12");
        snap("s507_pin", lang, &k);
        k.type_text("34");
        k.key(Key::Enter);
        assert_eq!(k.app.screen, Screen::Sending);
        let id = order_id();
        k.act(Action::OrderSaved(id));
        k.act(Action::Progress(
            id,
            UploadProgress {
                photos: 3,
                photos_sent: 1,
                bytes: 90_000,
                bytes_sent: 30_000,
                submitted: false,
            },
        ));
        snap("sending", lang, &k);
        k.answer(accepted());
        assert_eq!(k.app.screen, Screen::Done);
        snap("s508_done", lang, &k);
        k.key(Key::Enter);
        k.act(Action::ReceiptPrinted(order_id(), Ok("spool".into())));
        snap("s509_receipt", lang, &k);
        k.key(Key::Enter);
        snap("s510_thanks", lang, &k);

        // A declined card, in plain words.
        let mut k = Kiosk::new(lang);
        k.go_to_method();
        k.key(Key::Enter);
        k.type_text(VISA_SWIPE);
        k.keys(&[Key::Enter, Key::Enter]);
        k.answer(OrderResponse::Declined {
            order_id: order_id(),
            code: DeclineCode::InsufficientFunds,
        });
        snap("declined", lang, &k);

        // Counter mode.
        let mut k = Kiosk::new(lang);
        k.key(Key::F(9));
        k.type_text("24");
        snap("staff_pin", lang, &k);
        k.type_text("68");
        k.key(Key::Enter);
        k.act(Action::CounterRows(counter_rows()));
        snap("counter", lang, &k);
    }
}

fn counter_rows() -> Vec<CounterRow> {
    let row = |n: u128, state, date: Option<u32>| CounterRow {
        order_id: OrderId::from_parts(1_764_000_000_000 + n as u64, n),
        placed_at_ms: T0,
        prints: 3,
        total: Money::new(90, Currency::Jpy),
        card_brand: CardBrand::Visa,
        card_last4: "1111".into(),
        delivery_date: date.map(|d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap()),
        state,
        offline: false,
    };
    vec![
        row(3, OrderState::Delivered, Some(27)),
        row(2, OrderState::Accepted, Some(28)),
        row(1, OrderState::Declined, None),
    ]
}

#[test]
fn the_counter_shows_which_orders_were_taken_offline() {
    for lang in [Lang::Ja, Lang::En] {
        let mut k = Kiosk::new(lang);
        k.key(Key::F(9));
        k.type_text("2468");
        k.key(Key::Enter);
        let mut rows = counter_rows();
        // Taken offline, authorised after the fact; and one declined later.
        rows[1].offline = true;
        rows[2].offline = true;
        k.act(Action::CounterRows(rows));
        // The two unfocused rows carry the mark; the focused one's hint explains it.
        let screen = k.screen();
        assert_eq!(screen.matches('◇').count(), 2, "{screen}");
        k.key(Key::Down);
        let screen = k.screen();
        let words = if lang == Lang::Ja {
            "オフライン受付"
        } else {
            "taken offline"
        };
        assert!(screen.contains(words), "{screen}");
    }
}

#[test]
fn the_cameras_dpof_order_comes_preselected() {
    let mut k = Kiosk::new(Lang::En);
    k.act(Action::MediaPresent(true));
    let picks: Vec<(usize, u16)> = k
        .app
        .session
        .picks
        .iter()
        .map(|(i, p)| (*i, p.quantity))
        .collect();
    assert_eq!(picks, vec![(0, 2), (2, 1)]);
    assert!(k
        .screen()
        .contains("Photos marked in the camera are already picked"));
    assert_eq!(k.app.total(), Some(Money::new(90, Currency::Jpy)));
}

#[test]
fn two_digits_in_a_row_make_one_quantity_and_zero_unpicks() {
    let mut k = Kiosk::new(Lang::En);
    k.act(Action::MediaPresent(true));
    k.key(Key::Right);
    k.type_text("12");
    assert_eq!(k.app.session.picks[&1].quantity, 12);
    // A pause: the next digit starts again.
    k.at(5_000);
    k.key(Key::Char('4'));
    assert_eq!(k.app.session.picks[&1].quantity, 4);
    k.at(10_000);
    k.key(Key::Char('0'));
    assert!(!k.app.session.picks.contains_key(&1));
    // Enter toggles.
    k.key(Key::Enter);
    assert_eq!(k.app.session.picks[&1].quantity, 1);
    k.key(Key::Enter);
    assert!(!k.app.session.picks.contains_key(&1));
}

#[test]
fn the_swipe_and_pin_reach_the_order_and_nothing_else() {
    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    k.key(Key::Char('2')); // debit
    assert_eq!(k.app.screen, Screen::Card);
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    assert_eq!(k.app.screen, Screen::Pin);
    k.type_text("1234");
    let screen = k.screen();
    assert!(screen.contains("● ● ● ●"), "{screen}");
    assert!(!screen.contains("1234"), "the PIN is never shown: {screen}");
    assert!(!screen.contains("4111111111111111"));
    assert!(screen.contains("•••• 1111"));
    k.key(Key::Enter);
    let plan = k.placed.pop().unwrap();
    assert_eq!(plan.method, PaymentMethod::Debit);
    assert_eq!(plan.card.pan.last4(), "1111");
    assert_eq!(plan.pin.as_ref().map(|p| p.len()), Some(4));
    assert_eq!(plan.lines.len(), 2);
    assert_eq!(
        plan.lines.iter().map(|l| l.quantity).collect::<Vec<_>>(),
        vec![2, 1]
    );
    // The session no longer holds the digits.
    assert!(k.app.session.pin.is_empty());
}

#[test]
fn a_debit_card_needs_a_pin_and_a_credit_card_may_skip_it() {
    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    k.key(Key::Char('2'));
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    k.key(Key::Enter); // no digits
    assert_eq!(k.app.screen, Screen::Pin);
    assert_eq!(k.app.notice, Some(Notice::PinTooShort));
    assert!(k.placed.is_empty());

    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    k.key(Key::Char('1'));
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    assert!(k
        .screen()
        .contains("To go on without a PIN, just press Enter"));
    k.key(Key::Enter);
    assert_eq!(k.app.screen, Screen::Sending);
    assert!(k.placed.pop().unwrap().pin.is_none());
}

#[test]
fn three_wrong_pins_end_the_payment_and_forget_the_card() {
    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    k.key(Key::Char('2'));
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    for attempt in 1..=3u8 {
        assert_eq!(k.app.screen, Screen::Pin, "attempt {attempt}");
        k.type_text("9999");
        k.key(Key::Enter);
        k.answer(OrderResponse::Declined {
            order_id: order_id(),
            code: DeclineCode::IncorrectPin,
        });
        if attempt < 3 {
            assert_eq!(k.app.notice, Some(Notice::PinWrong(3 - attempt)));
            let screen = k.screen();
            assert!(
                screen.contains(&format!("You can try {} more time", 3 - attempt)),
                "{screen}"
            );
        }
    }
    assert_eq!(k.app.screen, Screen::Problem(Problem::PinLocked));
    assert!(k.app.session.card.is_none());
    snap("pin_locked", Lang::En, &k);
    k.key(Key::Enter);
    assert_eq!(k.app.screen, Screen::Thanks);
    assert_eq!(k.placed.len(), 3);
}

#[test]
fn a_declined_card_can_be_replaced_by_another() {
    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    k.key(Key::Enter);
    k.type_text(VISA_SWIPE);
    k.keys(&[Key::Enter, Key::Enter]);
    k.answer(OrderResponse::Declined {
        order_id: order_id(),
        code: DeclineCode::ExpiredCard,
    });
    assert!(k.screen().contains("This card has expired"));
    assert!(k.app.session.card.is_none());
    k.key(Key::Enter); // "Pay with another card"
    assert_eq!(k.app.screen, Screen::Method);
    assert_eq!(k.app.session.picks.len(), 2, "the photos are still picked");
}

#[test]
fn a_swipe_outside_the_card_screen_is_dropped() {
    let mut k = Kiosk::new(Lang::En);
    k.act(Action::MediaPresent(true));
    let before = k.app.session.picks.clone();
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    assert_eq!(k.app.notice, Some(Notice::SwipeElsewhere));
    assert_eq!(
        k.app.session.picks, before,
        "no digit of the swipe became a quantity"
    );
    assert!(k.app.session.card.is_none());
    // A garbled swipe on the card screen is explained, not taken.
    k.keys(&[Key::Down, Key::Down, Key::Enter]);
    k.keys(&[
        Key::Down,
        Key::Down,
        Key::Down,
        Key::Enter,
        Key::Enter,
        Key::Enter,
    ]);
    assert_eq!(k.app.screen, Screen::Card);
    k.type_text(";4111111111111112=3012?");
    k.key(Key::Enter);
    assert!(matches!(k.app.notice, Some(Notice::CardReadError(_))));
    assert_eq!(k.app.screen, Screen::Card);
}

#[test]
fn an_idle_session_is_cleared_with_its_card_data() {
    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    k.key(Key::Char('2'));
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    k.type_text("12");
    assert!(k.app.session.card.is_some());
    k.at(119_000);
    assert_eq!(k.app.screen, Screen::Pin);
    k.at(121_000);
    assert_eq!(k.app.screen, Screen::Insert);
    assert_eq!(k.app.notice, Some(Notice::TimedOut));
    assert!(k.app.session.card.is_none() && k.app.session.pin.is_empty());
    assert!(k.app.session.picks.is_empty());
    // The card is still in the slot: Enter starts again.
    assert!(k.screen().contains("A card is in the slot"));
    k.key(Key::Enter);
    assert_eq!(k.app.screen, Screen::Select);
}

#[test]
fn pulling_the_memory_card_ends_the_session_and_the_thanks_screen_times_out() {
    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    k.act(Action::MediaPresent(false));
    assert_eq!(k.app.screen, Screen::Insert);
    assert_eq!(k.app.notice, Some(Notice::MediaRemoved));

    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    k.key(Key::Enter);
    k.type_text(VISA_SWIPE);
    k.keys(&[Key::Enter, Key::Enter]);
    k.answer(accepted());
    assert_eq!(
        k.printed, 1,
        "the receipt prints as soon as the order is approved"
    );
    // The customer walks away from S508: the kiosk moves on by itself.
    k.at(130_000);
    assert_eq!(k.app.screen, Screen::Thanks);
    k.at(141_000);
    assert_eq!(k.app.screen, Screen::Insert);
    assert!(k.app.session.receipt.is_none());
}

#[test]
fn offline_only_small_credit_orders_are_taken_and_the_date_comes_later() {
    let mut cfg = config(Lang::En);
    cfg.offline_floor_limit_minor = 100;
    let mut k = Kiosk::new(Lang::En);
    k.app = App::new(cfg, T0);
    k.act(Action::Network { online: false });
    k.go_to_method();
    k.key(Key::Char('2')); // debit: never offline
    assert!(matches!(k.app.notice, Some(Notice::OfflineOnlyCredit(_))));
    assert_eq!(k.app.screen, Screen::Method);
    k.key(Key::Char('1'));
    assert_eq!(k.app.screen, Screen::Card);
    k.type_text(VISA_SWIPE);
    k.keys(&[Key::Enter, Key::Enter]);
    k.act(Action::OrderSaved(order_id()));
    assert_eq!(k.app.screen, Screen::Done);
    let screen = k.screen();
    assert!(
        screen.contains("The date will be confirmed later"),
        "{screen}"
    );
    snap("s508_pending", Lang::En, &k);
}

#[test]
fn ic_cards_are_read_by_the_chip_reader_and_removing_one_stops_the_payment() {
    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    k.key(Key::Char('4'));
    assert_eq!(k.app.screen, Screen::Card);
    // A swipe is not how an IC payment is made.
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    assert_eq!(k.app.screen, Screen::Card);
    // The demo panel's first card goes into the simulated chip reader.
    k.key(Key::Char('1'));
    assert_eq!(
        k.chip_inserts,
        vec!["4111111111111111D30121010000000000000F"]
    );
    let card = printmesh_protocol::card::parse_track2_equivalent(&k.chip_inserts[0]).unwrap();
    k.act(Action::Chip(ChipRead::Card(card)));
    assert_eq!(k.app.screen, Screen::Pin);
    k.type_text("12");
    k.act(Action::Chip(ChipRead::Empty));
    assert_eq!(k.app.screen, Screen::Method);
    assert_eq!(k.app.notice, Some(Notice::IcRemoved));
    assert!(k.app.session.card.is_none() && k.app.session.pin.is_empty());
}

#[test]
fn the_language_key_switches_every_text() {
    let mut k = Kiosk::new(Lang::Ja);
    assert!(k.screen().contains("メモリーカードを差し込んでください"));
    k.key(Key::F(2));
    assert!(k
        .screen()
        .contains("Please insert your camera's memory card"));
    k.key(Key::F(2));
    assert!(k.screen().contains("メモリーカード"));
}

#[test]
fn counter_mode_needs_the_staff_pin_and_hands_over_only_delivered_orders() {
    let mut k = Kiosk::new(Lang::En);
    for _ in 0..3 {
        k.key(Key::F(9));
        k.type_text("1111");
        k.key(Key::Enter);
    }
    assert_eq!(
        k.app.screen,
        Screen::Insert,
        "three wrong staff PINs: back out"
    );
    k.at(61_000);
    k.key(Key::F(9));
    k.type_text("2468");
    let fx = k.app.update(Action::Key(Key::Enter));
    assert!(matches!(fx.as_slice(), [Effect::CounterRefresh]));
    assert_eq!(k.app.screen, Screen::Counter);
    k.act(Action::CounterRows(counter_rows()));
    // Not delivered yet: refused with a reason.
    k.key(Key::Down);
    let fx = k.app.update(Action::Key(Key::Enter));
    assert!(fx.is_empty());
    assert_eq!(k.app.notice, Some(Notice::CounterNotReady));
    // Search by the end of the id, as typed from the receipt.
    let delivered = counter_rows()[0].order_id.to_string();
    k.type_text(&delivered[20..].to_lowercase());
    assert_eq!(k.app.counter.matching().len(), 1);
    let fx = k.app.update(Action::Key(Key::Enter));
    assert!(
        matches!(fx.as_slice(), [Effect::MarkCollected(id)] if id.to_string() == delivered),
        "{fx:?}"
    );
}

#[test]
fn a_customer_arriving_at_an_idle_kiosk_is_not_timed_out() {
    let mut k = Kiosk::new(Lang::En);
    // Nobody for ten minutes, then a memory card.
    k.at(600_000);
    k.act(Action::MediaPresent(true));
    assert_eq!(k.app.screen, Screen::Select);
    k.at(600_250);
    assert_eq!(
        k.app.screen,
        Screen::Select,
        "the new session has its own idle time"
    );
    // A long wait for the network does not skip the delivery date either.
    k.go_to_method();
    k.key(Key::Enter);
    k.type_text(VISA_SWIPE);
    k.keys(&[Key::Enter, Key::Enter]);
    k.at(600_000 + 200_000);
    k.answer(accepted());
    k.at(600_000 + 200_250);
    assert_eq!(k.app.screen, Screen::Done);
}

#[test]
fn going_back_does_not_give_fresh_pin_tries() {
    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    k.key(Key::Char('2'));
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    for _ in 0..2 {
        k.type_text("9999");
        k.key(Key::Enter);
        k.answer(OrderResponse::Declined {
            order_id: order_id(),
            code: DeclineCode::IncorrectPin,
        });
    }
    // Back to the payment methods and in again: still only one try left.
    k.keys(&[Key::Esc, Key::Esc]);
    assert_eq!(k.app.screen, Screen::Method);
    k.key(Key::Char('2'));
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    k.type_text("9999");
    k.key(Key::Enter);
    k.answer(OrderResponse::Declined {
        order_id: order_id(),
        code: DeclineCode::IncorrectPin,
    });
    assert_eq!(k.app.screen, Screen::Problem(Problem::PinLocked));
}

#[test]
fn b_prints_a_photo_whole_with_a_border_and_the_order_carries_it() {
    let mut k = Kiosk::new(Lang::En);
    k.act(Action::MediaPresent(true));
    k.keys(&[Key::Down, Key::Down, Key::Enter]);
    assert_eq!(k.app.screen, Screen::Sizes);
    // Row 0 is every photo: all get a border; then the second goes back to crop.
    k.key(Key::Char('b'));
    assert!(k.app.session.picks.values().all(|p| p.fit == Fit::Border));
    k.keys(&[Key::Down, Key::Down, Key::Char('B')]);
    assert_eq!(k.app.session.picks[&2].fit, Fit::Crop);
    assert_eq!(k.app.session.picks[&0].fit, Fit::Border);
    let screen = k.screen();
    assert_eq!(screen.matches("border").count(), 2, "{screen}");
    k.keys(&[Key::Down, Key::Enter]); // Next
    assert_eq!(k.app.screen, Screen::Total);
    k.key(Key::Enter);
    k.key(Key::Char('1')); // credit
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    if k.app.screen == Screen::Pin {
        k.key(Key::Enter);
    }
    let plan = k.placed.pop().unwrap();
    assert_eq!(
        plan.lines.iter().map(|l| l.fit).collect::<Vec<_>>(),
        vec![Fit::Border, Fit::Crop]
    );
}

#[test]
fn two_digit_quantities_on_the_sizes_screen() {
    let mut k = Kiosk::new(Lang::En);
    k.act(Action::MediaPresent(true));
    k.keys(&[Key::Down, Key::Down, Key::Enter]);
    assert_eq!(k.app.screen, Screen::Sizes);
    // Row 2 is the second picked photo (card index 2).
    k.keys(&[Key::Down, Key::Down]);
    k.type_text("12");
    assert_eq!(k.app.session.picks[&2].quantity, 12);
    assert_eq!(
        k.app.session.picks[&0].quantity, 2,
        "the other photo is untouched"
    );
    k.key(Key::Backspace);
    assert_eq!(k.app.session.picks[&2].quantity, 1);
}

#[test]
fn an_ic_card_already_in_the_reader_is_read_when_ic_is_chosen() {
    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    let card =
        printmesh_protocol::card::parse_track2_equivalent("4111111111111111D3012101").unwrap();
    k.act(Action::Chip(ChipRead::Card(card)));
    assert_eq!(k.app.screen, Screen::Method, "not asked for yet");
    let fx = k.app.update(Action::Key(Key::Char('4')));
    assert!(matches!(fx.as_slice(), [Effect::RereadChip]), "{fx:?}");
}

#[test]
fn no_payment_is_taken_if_the_network_drops_after_the_method_was_chosen() {
    let mut k = Kiosk::new(Lang::En);
    k.go_to_method();
    k.key(Key::Char('2'));
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    k.act(Action::Network { online: false });
    k.type_text("1234");
    k.key(Key::Enter);
    assert!(k.placed.is_empty());
    assert_eq!(k.app.screen, Screen::Method);
    assert_eq!(k.app.notice, Some(Notice::OfflineNoPayments));
    assert!(k.app.session.card.is_none());
}

#[test]
fn offline_credit_is_taken_without_a_pin() {
    let mut cfg = config(Lang::En);
    cfg.offline_floor_limit_minor = 1000;
    let mut k = Kiosk::new(Lang::En);
    k.app = App::new(cfg, T0);
    k.go_to_method();
    k.key(Key::Char('1'));
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    assert_eq!(k.app.screen, Screen::Sending, "no PIN screen offline");
    assert!(k.placed.pop().unwrap().pin.is_none());
}

#[test]
fn offline_the_store_takes_no_more_than_its_limit_in_all() {
    let mut cfg = config(Lang::En);
    cfg.offline_floor_limit_minor = 1000;
    cfg.offline_store_limit_minor = 1000;
    let mut k = Kiosk::new(Lang::En);
    k.app = App::new(cfg, T0);
    // Earlier offline orders still wait for their authorisation: this one would
    // take the store past its limit.
    k.act(Action::StandingIn(950));
    k.go_to_method();
    k.key(Key::Char('1'));
    assert_eq!(k.app.screen, Screen::Method, "refused");
    assert!(matches!(k.app.notice, Some(Notice::OfflineOnlyCredit(_))));
    // Once they are authorised, it is taken.
    k.act(Action::StandingIn(0));
    k.key(Key::Char('1'));
    assert_eq!(k.app.screen, Screen::Card);
    k.type_text(VISA_SWIPE);
    k.key(Key::Enter);
    assert_eq!(k.app.screen, Screen::Sending);
    assert!(k.placed.pop().unwrap().offline, "marked as taken offline");
}

#[test]
fn counter_mode_locks_after_three_wrong_staff_pins() {
    let mut k = Kiosk::new(Lang::En);
    for _ in 0..3 {
        k.key(Key::F(9));
        k.type_text("1111");
        k.key(Key::Enter);
    }
    k.key(Key::F(9));
    assert_eq!(k.app.screen, Screen::Insert, "locked for a while");
    k.at(61_000);
    k.key(Key::F(9));
    assert_eq!(k.app.screen, Screen::StaffPin);
}

#[test]
fn corrupt_photos_show_as_such_and_cannot_be_picked() {
    // The fixture card plus a folder of two broken files (a truncated JPEG and a text
    // file named .JPG).
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    };
    copy(
        &fixtures().join("memory-card/DCIM/100PMESH"),
        &dir.path().join("DCIM/100PMESH"),
    );
    copy(
        &fixtures().join("memory-card/MISC"),
        &dir.path().join("MISC"),
    );
    copy(
        &fixtures().join("bad-media/DCIM/100BAD__"),
        &dir.path().join("DCIM/101BAD__"),
    );
    let mut k = Kiosk::new(Lang::En);
    k.card = dir.path().to_path_buf();
    k.act(Action::MediaPresent(true));
    assert_eq!(k.app.card_view().unwrap().images.len(), 8);
    // Two rows down: the third page row holds the broken files.
    k.keys(&[Key::Down, Key::Down]);
    assert_eq!(k.app.session.cursor, 6);
    let screen = k.screen();
    assert!(screen.contains("× unreadable"), "{screen}");
    assert!(screen.contains("Photo 7 of 8"), "{screen}");
    snap("s502_unreadable", Lang::En, &k);
    let before = k.app.session.picks.clone();
    k.keys(&[Key::Enter, Key::Char('3')]);
    assert_eq!(
        k.app.session.picks, before,
        "a broken photo cannot be picked"
    );
    // The rest of the card works as usual.
    k.keys(&[Key::Up, Key::Enter]);
    assert!(k.app.session.picks.contains_key(&3));
}

// ---------------------------------------------------------------------- downloads

fn shop_item(id: &str, kind: ItemKind, ja: &str, en: &str, kana: &str, price: i64) -> ShopItem {
    use printmesh_protocol::content::{Item, Names};
    let cover = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([
            (x * 8) as u8,
            (y * 8) as u8,
            if kind == ItemKind::Music { 200 } else { 60 },
        ])
    });
    ShopItem {
        company: vec![1, 2, 3],
        company_name: "printmesh tunes".into(),
        item: Item {
            id: id.parse().unwrap(),
            kind,
            title: Names {
                ja: ja.into(),
                en: en.into(),
                kana: kana.into(),
            },
            artist: Names {
                ja: "東京シンセ".into(),
                en: "Tokyo Synth".into(),
                kana: "とうきょうしんせ".into(),
            },
            blob: printmesh_protocol::BlobId::of(id.as_bytes()),
            size: 3_400_000,
            price: Money::new(price, Currency::Jpy),
            rights_holder: "printmesh".into(),
            cover: None,
            valid_from_ms: 0,
            valid_until_ms: i64::MAX,
            folder: "MUSIC/PRINTMSH".into(),
            file_name: format!("{}.WAV", id.to_uppercase()),
        },
        cover: Some(Thumb::from_image(&image::DynamicImage::ImageRgb8(cover))),
    }
}

fn catalogue() -> Vec<ShopItem> {
    vec![
        shop_item(
            "dawn",
            ItemKind::Music,
            "夜明けの歌",
            "Song of Dawn",
            "よあけのうた",
            300,
        ),
        shop_item(
            "rain",
            ItemKind::Music,
            "雨のワルツ",
            "Rain Waltz",
            "あめのわるつ",
            250,
        ),
        shop_item(
            "sky",
            ItemKind::Image,
            "青い空",
            "Blue Sky",
            "あおいそら",
            100,
        ),
        shop_item(
            "maze",
            ItemKind::Game,
            "迷路ゲーム",
            "Maze Game",
            "めいろげーむ",
            800,
        ),
    ]
}

impl Kiosk {
    /// A kiosk that sells downloads, a card with room in its slot.
    fn selling(lang: Lang) -> Kiosk {
        let mut config = config(lang);
        config.downloads = true;
        let mut app = App::new(config, T0);
        app.update(Action::Network { online: true });
        app.update(Action::Catalogue(catalogue()));
        let mut k = Kiosk {
            app,
            card: fixtures().join("memory-card"),
            placed: Vec::new(),
            printed: 0,
            room: Some(CardRoom {
                free_bytes: 60_000_000,
                serial: 0x1234_ABCD,
            }),
            bought: Vec::new(),
            chip_inserts: Vec::new(),
        };
        k.act(Action::MediaPresent(true));
        k
    }

    /// Down to the shop's buttons, then the one at `index` (0 back, 1 photos, 2 pay).
    fn shop_button(&mut self, index: usize) {
        for _ in 0..20 {
            if matches!(self.app.session.focus, Focus::Button(_)) {
                break;
            }
            self.key(Key::Down);
        }
        self.keys(&[Key::Left, Key::Left]);
        for _ in 0..index {
            self.key(Key::Right);
        }
        self.key(Key::Enter);
    }

    fn pay_by_visa(&mut self) {
        assert_eq!(
            self.app.screen,
            Screen::Method,
            "{:?} {:?} {}",
            self.app.notice,
            self.app.session.focus,
            self.screen()
        );
        self.key(Key::Enter);
        self.type_text(VISA_SWIPE);
        self.keys(&[Key::Enter, Key::Enter]);
    }
}

fn written() -> DownloadDone {
    DownloadDone {
        order_id: "01KAZ3Q7M1X5V8T2B6N4C9D0FG".parse().unwrap(),
        auth_code: AuthCode::try_from("K7Q2ZD".to_string()).unwrap(),
        total: Money::new(300, Currency::Jpy),
        items: vec![WrittenItem {
            title_ja: "夜明けの歌".into(),
            title_en: "Song of Dawn".into(),
            price: Money::new(300, Currency::Jpy),
            code: "ABCD-EFGH-JKLM".into(),
            licence: "PMLIC1-AEBAGBAFAYDQQCIKBMGA4DQPCAIREEYUCULBOGAZDINRYHI6D4QCAQSBIQ".into(),
            card_path: "MUSIC/PRINTMSH/DAWN.WAV".into(),
        }],
    }
}

#[test]
fn the_download_screens_in_both_languages() {
    for lang in [Lang::Ja, Lang::En] {
        let mut k = Kiosk::selling(lang);
        assert_eq!(k.app.screen, Screen::Start);
        snap("dl_start", lang, &k);
        k.keys(&[Key::Right, Key::Enter]);
        assert_eq!(k.app.screen, Screen::Shop);
        snap("dl_shop", lang, &k);
        k.key(Key::Enter);
        snap("dl_shop_in_basket", lang, &k);
        k.type_text("yoake");
        snap("dl_shop_search", lang, &k);
        k.key(Key::Enter);
        k.shop_button(2);
        assert_eq!(k.app.screen, Screen::Method);
        k.pay_by_visa();
        assert_eq!(k.app.screen, Screen::Writing);
        k.act(Action::DownloadProgress(Writing::Writing {
            done: 2_000_000,
            total: 6_800_000,
        }));
        snap("dl_writing", lang, &k);
        k.act(Action::DownloadFinished(DownloadResult::Done(written())));
        assert_eq!(k.app.screen, Screen::Done);
        snap("dl_done", lang, &k);
        k.key(Key::Enter);
        snap("dl_receipt", lang, &k);

        // Pulled in the middle: nothing charged, in plain words.
        let mut k = Kiosk::selling(lang);
        k.keys(&[Key::Right, Key::Enter, Key::Enter]);
        k.shop_button(2);
        k.pay_by_visa();
        k.act(Action::MediaPresent(false));
        assert_eq!(
            k.app.screen,
            Screen::Writing,
            "the write's own end says what happened"
        );
        k.act(Action::DownloadFinished(DownloadResult::WriteFailed(
            WriteFailure::CardGone,
        )));
        snap("dl_card_pulled", lang, &k);
    }
}

#[test]
fn a_basket_of_downloads_and_prints_is_paid_with_one_card() {
    let mut k = Kiosk::selling(Lang::En);
    // Downloads first: the tune, then to the photos for prints.
    k.keys(&[Key::Right, Key::Enter, Key::Enter]);
    k.keys(&[
        Key::Down,
        Key::Down,
        Key::Down,
        Key::Down,
        Key::Left,
        Key::Enter,
    ]);
    assert_eq!(k.app.screen, Screen::Select);
    // The camera's DPOF picks are there; on through sizes and the total.
    k.keys(&[Key::Down, Key::Down, Key::Enter]);
    k.keys(&[Key::Down, Key::Down, Key::Down, Key::Enter]);
    assert_eq!(k.app.screen, Screen::Total);
    let total = k.app.total().unwrap();
    assert_eq!(
        total.amount_minor(),
        k.app.prints_total().unwrap().amount_minor() + 300,
        "one total for both"
    );
    k.key(Key::Enter);
    k.pay_by_visa();
    assert_eq!(k.app.screen, Screen::Writing);
    let plan = k.bought.pop().expect("the downloads are bought");
    assert_eq!(plan.items, vec!["dawn".parse().unwrap()]);
    let prints = plan.then_prints.expect("then the prints");
    assert!(!prints.lines.is_empty());
    assert!(k.placed.is_empty(), "the prints wait for the downloads");
    k.act(Action::DownloadFinished(DownloadResult::Done(written())));
    assert_eq!(k.app.screen, Screen::Sending);
    k.answer(accepted());
    assert_eq!(k.app.screen, Screen::Done);
    let receipt = k.app.session.receipt.clone().unwrap();
    assert_eq!(receipt.downloads.len(), 1);
    assert!(!receipt.lines.is_empty());
    let text = receipt.text();
    assert!(text.contains("Licence ABCD-EFGH-JKLM"), "{text}");
    assert!(text.contains("Song of Dawn"), "{text}");
}

#[test]
fn the_shop_keeps_to_the_cards_room_one_company_and_the_network() {
    let mut k = Kiosk::selling(Lang::En);
    k.room = Some(CardRoom {
        free_bytes: 4_000_000,
        serial: 1,
    });
    k.keys(&[Key::Right, Key::Enter]);
    // The first item fits; a second no longer does.
    k.key(Key::Enter);
    assert_eq!(k.app.session.basket.len(), 1);
    k.keys(&[Key::Down, Key::Enter]);
    assert_eq!(k.app.session.basket.len(), 1);
    assert!(matches!(k.app.notice, Some(Notice::NoRoomOnCard(_))));
    // Taken out again, nothing is in the basket.
    k.keys(&[Key::Up, Key::Enter]);
    assert!(k.app.session.basket.is_empty());
    // Searching by romaji of the kana, and by the kana itself.
    k.type_text("warutsu");
    assert_eq!(k.app.shop_view().len(), 1);
    assert_eq!(k.app.shop_current().unwrap().item.id.as_str(), "rain");
    k.key(Key::Enter);
    k.key(Key::Backspace);
    k.type_text("そら");
    assert_eq!(k.app.shop_current().unwrap().item.id.as_str(), "sky");
    // Offline, downloads are not sold.
    k.key(Key::Enter);
    k.key(Key::Enter);
    k.shop_button(2);
    assert_eq!(k.app.screen, Screen::Method);
    k.act(Action::Network { online: false });
    k.key(Key::Enter);
    assert_eq!(k.app.screen, Screen::Method);
    assert_eq!(k.app.notice, Some(Notice::OfflineNoPayments));
    assert!(k.bought.is_empty());
}

#[test]
fn a_card_with_no_photos_can_still_take_downloads() {
    let mut config = config(Lang::En);
    config.downloads = true;
    let mut app = App::new(config, T0);
    app.update(Action::Network { online: true });
    app.update(Action::Catalogue(catalogue()));
    let empty = tempfile::tempdir().unwrap();
    let mut k = Kiosk {
        app,
        card: empty.path().to_path_buf(),
        placed: Vec::new(),
        printed: 0,
        room: Some(CardRoom {
            free_bytes: 60_000_000,
            serial: 7,
        }),
        bought: Vec::new(),
        chip_inserts: Vec::new(),
    };
    k.act(Action::MediaPresent(true));
    assert_eq!(k.app.screen, Screen::Start);
    k.keys(&[Key::Left, Key::Enter]);
    assert_eq!(k.app.notice, Some(Notice::NoPhotos));
    k.keys(&[Key::Right, Key::Enter]);
    assert_eq!(k.app.screen, Screen::Shop);
}
