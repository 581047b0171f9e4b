//! Everything the customer reads, in Japanese and English. One key (F2) switches; the
//! default comes from the kiosk's config. Screens never hold literal text: they ask
//! [`Lang`] for it, so a screen cannot show a sentence in one language only.

use chrono::{Datelike, NaiveDate, Weekday};
use printmesh_protocol::messages::{DeclineCode, PaymentMethod};
use printmesh_protocol::money::{Currency, Money};
use printmesh_protocol::order::OrderState;
use printmesh_protocol::pricing::PrintSize;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Ja,
    En,
}

impl Lang {
    pub fn other(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    fn pick(self, ja: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }

    /// The language toggle as shown in the header: the language it switches *to*.
    pub fn switch_label(self) -> &'static str {
        self.pick("F2 English", "F2 日本語")
    }

    pub fn app_title(self) -> &'static str {
        self.pick("写真プリント", "Photo prints")
    }

    /// The five steps shown at the top of every customer screen.
    pub fn steps(self) -> [&'static str; 5] {
        match self {
            Lang::Ja => ["写真", "サイズ", "確認", "お支払い", "完了"],
            Lang::En => ["Photos", "Sizes", "Check", "Pay", "Done"],
        }
    }

    // ------------------------------------------------------------------ S501

    pub fn insert_title(self) -> &'static str {
        self.pick(
            "メモリーカードを差し込んでください",
            "Please insert your camera's memory card",
        )
    }

    pub fn insert_hint(self) -> &'static str {
        self.pick(
            "SD カードやメモリースティックを、画面の下のスロットへ",
            "SD card or memory stick, into the slot below the screen",
        )
    }

    pub fn insert_card_present(self) -> &'static str {
        self.pick(
            "カードが入っています。Enter で写真を表示します",
            "A card is in the slot. Press Enter to see its photos",
        )
    }

    pub fn demo_media_hint(self) -> &'static str {
        self.pick(
            "デモ：F5 でメモリーカードを入れる／抜く",
            "Demo: F5 puts the memory card in or takes it out",
        )
    }

    pub fn reading_card(self) -> &'static str {
        self.pick("カードを読み込んでいます…", "Reading the card…")
    }

    pub fn no_photos(self) -> &'static str {
        self.pick(
            "このカードにはプリントできる写真がありません",
            "There are no photos on this card that can be printed",
        )
    }

    pub fn card_unreadable(self) -> &'static str {
        self.pick(
            "このカードは読み取れませんでした",
            "This card could not be read",
        )
    }

    pub fn media_removed(self) -> &'static str {
        self.pick(
            "メモリーカードが抜かれたため、最初に戻りました",
            "The memory card was removed, so we started again",
        )
    }

    pub fn session_timed_out(self) -> &'static str {
        self.pick(
            "しばらく操作がなかったため、最初に戻りました",
            "Nothing happened for a while, so we started again",
        )
    }

    // ------------------------------------------------------------------ S502

    pub fn select_title(self) -> &'static str {
        self.pick(
            "プリントする写真を選んでください",
            "Choose the photos to print",
        )
    }

    pub fn select_keys(self) -> &'static str {
        self.pick(
            "矢印で移動  Enter 選ぶ/外す  数字 枚数",
            "Arrows move  Enter pick/unpick  digits copies",
        )
    }

    pub fn loading(self) -> &'static str {
        self.pick("読込中", "loading")
    }

    pub fn unreadable_photo(self) -> &'static str {
        self.pick("読めません", "unreadable")
    }

    pub fn photo_of(self, n: usize, total: usize) -> String {
        match self {
            Lang::Ja => format!("{n} / {total} 枚目"),
            Lang::En => format!("Photo {n} of {total}"),
        }
    }

    pub fn picked_count(self, photos: usize, prints: u32) -> String {
        match self {
            Lang::Ja => format!("{photos} 枚の写真・{prints} 枚のプリント"),
            Lang::En => format!(
                "{photos} photo{} · {prints} print{}",
                plural(photos as u32),
                plural(prints)
            ),
        }
    }

    pub fn camera_marked(self) -> &'static str {
        self.pick(
            "カメラで指定された写真を選んであります",
            "Photos marked in the camera are already picked",
        )
    }

    pub fn taken_on(self) -> &'static str {
        self.pick("撮影日", "Taken")
    }

    pub fn pick_one_first(self) -> &'static str {
        self.pick(
            "写真を 1 枚以上選んでください",
            "Please pick at least one photo",
        )
    }

    // ------------------------------------------------------------------ S503

    pub fn sizes_title(self) -> &'static str {
        self.pick(
            "サイズと枚数を選んでください",
            "Choose the size and number of prints",
        )
    }

    pub fn sizes_keys(self) -> &'static str {
        self.pick(
            "↑↓ 写真  ←→ サイズ  数字 枚数  B ふちあり",
            "↑↓ photo  ←→ size  digits copies  B border",
        )
    }

    /// After a line printed whole with a white border (not cropped to fill).
    pub fn border_mark(self) -> &'static str {
        self.pick("ふちあり", "border")
    }

    pub fn all_photos(self) -> &'static str {
        self.pick("すべての写真", "All photos")
    }

    pub fn size_name(self, size: PrintSize) -> String {
        let (w, h) = size.paper_mm10();
        let mm = format!("{}×{} mm", w / 10, h / 10);
        match (self, size) {
            (Lang::Ja, PrintSize::L) => format!("L判 {mm}"),
            (Lang::Ja, PrintSize::TwoL) => format!("2L判 {mm}"),
            (Lang::Ja, PrintSize::Kg) => format!("KG判 {mm}"),
            (Lang::Ja, PrintSize::EightByTen) => "六切 8×10 in".into(),
            (Lang::Ja, PrintSize::A4) => format!("A4 {mm}"),
            (Lang::En, PrintSize::EightByTen) => "8×10 in".into(),
            (Lang::En, s) => format!("{} {mm}", s.code()),
        }
    }

    pub fn copies(self, n: u16) -> String {
        match self {
            Lang::Ja => format!("{n} 枚"),
            Lang::En => format!("{n} ×"),
        }
    }

    // ------------------------------------------------------------------ S504

    pub fn total_title(self) -> &'static str {
        self.pick("ご注文内容をご確認ください", "Please check your order")
    }

    pub fn total_label(self) -> &'static str {
        self.pick("合計（税込）", "Total (tax included)")
    }

    pub fn column_photo(self) -> &'static str {
        self.pick("写真", "Photo")
    }

    pub fn column_size(self) -> &'static str {
        self.pick("サイズ", "Size")
    }

    pub fn column_qty(self) -> &'static str {
        self.pick("枚数", "Qty")
    }

    pub fn column_unit(self) -> &'static str {
        self.pick("単価", "Each")
    }

    pub fn column_amount(self) -> &'static str {
        self.pick("金額", "Amount")
    }

    // ------------------------------------------------------------------ S505

    pub fn method_title(self) -> &'static str {
        self.pick("お支払い方法を選んでください", "How would you like to pay?")
    }

    pub fn method_name(self, m: PaymentMethod) -> &'static str {
        match m {
            PaymentMethod::Credit => self.pick("クレジットカード", "Credit card"),
            PaymentMethod::Debit => self.pick("デビットカード", "Debit card"),
            PaymentMethod::PointCard => self.pick("ポイントカード", "Point card"),
            PaymentMethod::IcCard => self.pick("IC カード", "IC card"),
        }
    }

    pub fn method_unavailable(self) -> &'static str {
        self.pick(
            "この端末ではご利用になれません",
            "not available at this kiosk",
        )
    }

    pub fn offline_only_credit(self, limit: &str) -> String {
        match self {
            Lang::Ja => format!(
                "ただいま通信ができません。{limit} までのクレジットカード払いのみご利用になれます"
            ),
            Lang::En => {
                format!("We are offline right now: only credit cards, up to {limit}, can be used")
            }
        }
    }

    pub fn offline_no_payments(self) -> &'static str {
        self.pick(
            "ただいま通信ができないため、カードでのお支払いができません。しばらくしてからお試しください",
            "We cannot take card payments right now because the network is down. Please try again later",
        )
    }

    // ------------------------------------------------------------------ S506

    pub fn swipe_title(self) -> &'static str {
        self.pick(
            "カードを読み取り機に通してください",
            "Please swipe your card through the reader",
        )
    }

    pub fn insert_ic_title(self) -> &'static str {
        self.pick(
            "IC カードを差し込んでください",
            "Please insert your IC card into the card slot",
        )
    }

    pub fn ic_keep_in(self) -> &'static str {
        self.pick(
            "お支払いが終わるまで、カードを抜かないでください",
            "Please leave it in until the payment is finished",
        )
    }

    pub fn amount_to_pay(self) -> &'static str {
        self.pick("お支払い金額", "Amount to pay")
    }

    pub fn card_read_error(self) -> &'static str {
        self.pick(
            "カードを読み取れませんでした。もう一度お試しください",
            "The card could not be read. Please try again",
        )
    }

    pub fn ic_removed(self) -> &'static str {
        self.pick(
            "IC カードが抜かれました。お支払い方法からやり直してください",
            "The IC card was removed. Please choose how to pay again",
        )
    }

    pub fn swipe_elsewhere(self) -> &'static str {
        self.pick(
            "カードはお支払いの画面で通してください",
            "Please swipe your card on the payment screen",
        )
    }

    pub fn demo_panel_title(self) -> &'static str {
        self.pick("デモ用テストカード", "Demo test cards")
    }

    pub fn demo_panel_hint_ic(self) -> &'static str {
        self.pick("数字キーで差し込みます", "press its digit to insert it")
    }

    pub fn demo_panel_hint(self) -> &'static str {
        self.pick("数字キーで通します", "press its digit to swipe")
    }

    // ------------------------------------------------------------------ S507

    pub fn pin_title(self) -> &'static str {
        self.pick(
            "暗証番号を入力し、Enter を押してください",
            "Please enter your PIN, then press Enter",
        )
    }

    pub fn pin_optional(self) -> &'static str {
        self.pick(
            "暗証番号なしで進む場合は、そのまま Enter を押してください",
            "To go on without a PIN, just press Enter",
        )
    }

    pub fn pin_hidden(self) -> &'static str {
        self.pick(
            "周りの人に見られないよう、手で隠して入力してください",
            "Shield the keypad with your hand while you type",
        )
    }

    pub fn pin_wrong(self, tries_left: u8) -> String {
        match self {
            Lang::Ja => format!("暗証番号が違います。あと {tries_left} 回入力できます"),
            Lang::En => format!(
                "That PIN was not correct. You can try {tries_left} more time{}",
                plural(u32::from(tries_left))
            ),
        }
    }

    pub fn pin_too_short(self) -> &'static str {
        self.pick("暗証番号は 4 桁以上です", "A PIN has at least 4 digits")
    }

    pub fn pin_locked(self) -> &'static str {
        self.pick(
            "暗証番号が 3 回違っていたため、お取引を終了しました",
            "The PIN was wrong three times, so this payment has been stopped",
        )
    }

    // ------------------------------------------------------------------ sending

    pub fn sending_title(self) -> &'static str {
        self.pick(
            "ご注文を送信しています",
            "Sending your photos and your order",
        )
    }

    pub fn sending_saved(self) -> &'static str {
        self.pick("ご注文を保存しました", "Your order is saved")
    }

    pub fn sending_upload(self, done: usize, total: usize) -> String {
        match self {
            Lang::Ja => format!("写真を送っています（{done} / {total}）"),
            Lang::En => format!("Sending photos ({done} of {total})"),
        }
    }

    pub fn sending_authorising(self) -> &'static str {
        self.pick(
            "カード会社に確認しています",
            "Asking your card issuer to approve the payment",
        )
    }

    pub fn please_wait(self) -> &'static str {
        self.pick(
            "そのままお待ちください。カードは抜かないでください",
            "Please wait, and leave your card where it is",
        )
    }

    // ------------------------------------------------------------------ declined

    pub fn declined_title(self) -> &'static str {
        self.pick(
            "このカードはご利用になれませんでした",
            "This card could not be used",
        )
    }

    pub fn rejected_title(self) -> &'static str {
        self.pick(
            "このご注文はお受けできませんでした",
            "We could not take this order",
        )
    }

    pub fn failed_title(self) -> &'static str {
        self.pick(
            "ご注文を保存できませんでした",
            "Your order could not be saved",
        )
    }

    pub fn not_charged(self) -> &'static str {
        self.pick("お支払いは行われていません", "Nothing has been charged")
    }

    pub fn try_another_card(self) -> &'static str {
        self.pick("別のカードで支払う", "Pay with another card")
    }

    pub fn cancel_order(self) -> &'static str {
        self.pick("注文をやめる", "Cancel the order")
    }

    /// A decline reason in plain words.
    pub fn decline_reason(self, code: DeclineCode) -> &'static str {
        match code {
            DeclineCode::DoNotHonour => self.pick(
                "カード会社がお取引をお断りしました",
                "Your card issuer declined the payment",
            ),
            DeclineCode::InvalidAmount => self.pick(
                "この金額はこのカードでお支払いできません",
                "This amount cannot be paid with this card",
            ),
            DeclineCode::InvalidCardNumber => self.pick(
                "このカードの番号は使えません",
                "This card number is not recognised",
            ),
            DeclineCode::InsufficientFunds => self.pick(
                "ご利用可能額を超えています",
                "The amount is more than the card's available limit",
            ),
            DeclineCode::ExpiredCard => {
                self.pick("カードの有効期限が切れています", "This card has expired")
            }
            DeclineCode::NotPermitted => self.pick(
                "このカードはこのお支払いに使えません",
                "This card cannot be used for this payment",
            ),
            DeclineCode::RestrictedCard => self.pick(
                "このカードは利用が止められています",
                "This card has been blocked",
            ),
            DeclineCode::IncorrectPin => self.pick("暗証番号が違います", "The PIN was not correct"),
            DeclineCode::PinTriesExceeded => self.pick(
                "暗証番号の誤りが続いたため、このカードは利用できなくなっています。カード会社にお問い合わせください",
                "The PIN was wrong too many times and the card is now blocked; please contact your card issuer",
            ),
            DeclineCode::FormatError => self.pick(
                "カードの情報をカード会社が読み取れませんでした。もう一度お試しください",
                "Your card issuer could not read the card data; please try again",
            ),
        }
    }

    // ------------------------------------------------------------------ S508-S510

    pub fn approved_title(self) -> &'static str {
        self.pick(
            "お支払いが完了しました",
            "Thank you, your payment is approved",
        )
    }

    pub fn pending_title(self) -> &'static str {
        self.pick("ご注文をお預かりしました", "We have your order")
    }

    pub fn ready_on(self) -> &'static str {
        self.pick("お渡し予定日", "Your prints will be ready on")
    }

    pub fn pickup_at(self) -> &'static str {
        self.pick("お受け取り店舗", "Collect them at")
    }

    pub fn date_to_be_confirmed(self) -> &'static str {
        self.pick(
            "お渡し日は確定後にお知らせします（店頭でご確認ください）",
            "The date will be confirmed later; please ask at the counter",
        )
    }

    pub fn auth_code(self) -> &'static str {
        self.pick("承認番号", "Approval code")
    }

    pub fn order_number(self) -> &'static str {
        self.pick("ご注文番号", "Order number")
    }

    pub fn continue_to_receipt(self) -> &'static str {
        self.pick("レシートを受け取る", "Take your receipt")
    }

    pub fn receipt_title(self) -> &'static str {
        self.pick("レシートをお受け取りください", "Please take your receipt")
    }

    pub fn receipt_keys(self) -> &'static str {
        self.pick("↑↓ スクロール  Enter 終了", "↑↓ scroll  Enter finish")
    }

    pub fn receipt_printing(self) -> &'static str {
        self.pick("レシートを印刷しています…", "Printing your receipt…")
    }

    pub fn receipt_printed(self) -> &'static str {
        self.pick("レシートを印刷しました", "Your receipt has been printed")
    }

    pub fn receipt_failed(self) -> &'static str {
        self.pick(
            "レシートを印刷できませんでした。店員にお申し付けください（画面の内容は保存されています）",
            "The receipt could not be printed; please ask a member of staff (it has been saved)",
        )
    }

    pub fn thanks_title(self) -> &'static str {
        self.pick("ご利用ありがとうございました", "Thank you for your order")
    }

    pub fn take_your_cards(self) -> &'static str {
        self.pick(
            "メモリーカードとお支払いのカードをお忘れなくお取りください",
            "Please take your memory card and your payment card",
        )
    }

    // ------------------------------------------------------------------ buttons, footer

    pub fn back(self) -> &'static str {
        self.pick("◀ 戻る", "◀ Back")
    }

    pub fn next(self) -> &'static str {
        self.pick("次へ ▶", "Next ▶")
    }

    pub fn pay(self) -> &'static str {
        self.pick("支払う ▶", "Pay ▶")
    }

    pub fn done(self) -> &'static str {
        self.pick("終了 ▶", "Finish ▶")
    }

    pub fn footer_keys(self) -> &'static str {
        self.pick("Esc 戻る", "Esc back")
    }

    pub fn online(self) -> &'static str {
        self.pick("● 接続中", "● online")
    }

    pub fn offline(self) -> &'static str {
        self.pick("○ オフライン", "○ offline")
    }

    // ------------------------------------------------------------------ counter mode

    pub fn staff_pin_title(self) -> &'static str {
        self.pick(
            "店員モード：スタッフ暗証番号を入力してください",
            "Counter mode: enter the staff PIN",
        )
    }

    pub fn staff_pin_wrong(self) -> &'static str {
        self.pick("スタッフ暗証番号が違います", "Wrong staff PIN")
    }

    pub fn counter_title(self) -> &'static str {
        self.pick("店頭受け渡し", "Counter: orders for this store")
    }

    pub fn counter_search(self) -> &'static str {
        self.pick(
            "注文番号（レシートの QR を読み取るか、末尾の数文字を入力）",
            "Order number (scan the receipt's QR code or type its last characters)",
        )
    }

    pub fn counter_keys(self) -> &'static str {
        self.pick(
            "↑↓ 選択  Enter 検索/受け渡し  Esc 終了",
            "↑↓ select  Enter search/hand over  Esc leave",
        )
    }

    pub fn counter_none(self) -> &'static str {
        self.pick("該当する注文はありません", "No order matches")
    }

    pub fn counter_mark_collected(self) -> &'static str {
        self.pick(
            "Enter でお渡し済みにします",
            "Press Enter to mark it collected",
        )
    }

    pub fn counter_already_collected(self) -> &'static str {
        self.pick("この注文はお渡し済みです", "Already handed over")
    }

    pub fn counter_not_ready(self) -> &'static str {
        self.pick("まだ店舗に届いていません", "Not delivered to the store yet")
    }

    pub fn counter_collected(self) -> &'static str {
        self.pick("お渡し済み", "Collected")
    }

    /// Beside a counter row taken offline (stand-in).
    pub fn taken_offline(self) -> &'static str {
        self.pick("オフライン受付", "taken offline")
    }

    pub fn state_name(self, state: OrderState) -> &'static str {
        match state {
            OrderState::Draft => self.pick("作成中", "draft"),
            OrderState::Submitted => self.pick("受付", "submitted"),
            OrderState::Authorised => self.pick("承認済", "authorised"),
            OrderState::Declined => self.pick("カード不可", "declined"),
            OrderState::Accepted => self.pick("プリント待ち", "accepted"),
            OrderState::Rejected => self.pick("お断り", "rejected"),
            OrderState::Printed => self.pick("プリント済", "printed"),
            OrderState::Shipped => self.pick("配送中", "shipped"),
            OrderState::Delivered => self.pick("店舗に到着", "at the store"),
            OrderState::Collected => self.pick("お渡し済", "collected"),
            OrderState::Voided => self.pick("取消", "voided"),
            OrderState::Expired => self.pick("期限切れ", "expired"),
        }
    }

    // ------------------------------------------------------------------ formats

    /// `2026年11月28日（土）` / `Saturday 28 November 2026`.
    pub fn date(self, d: NaiveDate) -> String {
        match self {
            Lang::Ja => {
                let wd = match d.weekday() {
                    Weekday::Mon => "月",
                    Weekday::Tue => "火",
                    Weekday::Wed => "水",
                    Weekday::Thu => "木",
                    Weekday::Fri => "金",
                    Weekday::Sat => "土",
                    Weekday::Sun => "日",
                };
                format!("{}年{}月{}日（{wd}）", d.year(), d.month(), d.day())
            }
            Lang::En => d.format("%A %-d %B %Y").to_string(),
        }
    }

    /// Money as a customer reads it: `1,234円` / `¥1,234`, `$12.34`.
    pub fn money(self, m: Money) -> String {
        let minor = m.amount_minor();
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        let decimals = m.currency().decimals();
        let unit = 10u64.pow(decimals);
        let whole = group_thousands(abs / unit);
        let amount = if decimals == 0 {
            whole
        } else {
            format!("{whole}.{:0width$}", abs % unit, width = decimals as usize)
        };
        match (self, m.currency()) {
            (Lang::Ja, Currency::Jpy) => format!("{sign}{amount}円"),
            (_, Currency::Jpy) => format!("{sign}¥{amount}"),
            (_, Currency::Usd) => format!("{sign}${amount}"),
            (_, Currency::Eur) => format!("{sign}€{amount}"),
            (_, Currency::Gbp) => format!("{sign}£{amount}"),
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Downloads: the first screen's choice, the shop, the write, the receipt.
impl Lang {
    pub fn start_title(self) -> &'static str {
        self.pick(
            "ご利用のサービスを選んでください",
            "What would you like today?",
        )
    }

    pub fn start_prints(self) -> &'static str {
        self.pick("1  写真プリント", "1  Photo prints")
    }

    pub fn start_downloads(self) -> &'static str {
        self.pick("2  ダウンロード", "2  Downloads")
    }

    pub fn start_hint(self) -> &'static str {
        self.pick(
            "音楽・画像・ゲームデータを、お持ちのカードに書き込みます",
            "Music, pictures and game data, written onto your own card",
        )
    }

    pub fn shop_title(self) -> &'static str {
        self.pick("ダウンロード", "Downloads")
    }

    pub fn kind_tab(self, kind: Option<printmesh_protocol::content::ItemKind>) -> &'static str {
        use printmesh_protocol::content::ItemKind;
        match kind {
            None => self.pick("すべて", "All"),
            Some(ItemKind::Music) => self.pick("音楽", "Music"),
            Some(ItemKind::Image) => self.pick("画像", "Pictures"),
            Some(ItemKind::Game) => self.pick("ゲーム", "Games"),
        }
    }

    pub fn search_label(self) -> &'static str {
        self.pick("検索", "Search")
    }

    pub fn search_hint(self) -> &'static str {
        self.pick(
            "文字を打つと、曲名・アーティスト名（かな・ローマ字）で探せます",
            "Type to search titles and artists (kana or romaji)",
        )
    }

    pub fn shop_empty(self) -> &'static str {
        self.pick("見つかりません", "Nothing found")
    }

    pub fn artist_label(self) -> &'static str {
        self.pick("アーティスト", "Artist")
    }

    pub fn size_label(self) -> &'static str {
        self.pick("サイズ", "Size")
    }

    pub fn price_label(self) -> &'static str {
        self.pick("価格", "Price")
    }

    pub fn free_on_card(self) -> &'static str {
        self.pick("カードの空き", "Free on your card")
    }

    pub fn in_basket(self) -> &'static str {
        self.pick(
            "✓ カートに入っています（Enter で外す）",
            "✓ In your basket (Enter takes it out)",
        )
    }

    pub fn add_to_basket(self) -> &'static str {
        self.pick("Enter でカートに入れる", "Enter puts it in your basket")
    }

    pub fn basket_summary(self, items: usize, total: &str) -> String {
        match self {
            Lang::Ja => format!("カート: {items} 点  {total}"),
            Lang::En => format!(
                "Basket: {items} item{}  {total}",
                if items == 1 { "" } else { "s" }
            ),
        }
    }

    pub fn shop_buttons(self) -> [&'static str; 3] {
        match self {
            Lang::Ja => ["戻る", "写真も選ぶ", "お支払いへ"],
            Lang::En => ["Back", "Add photos", "Pay"],
        }
    }

    pub fn download_label(self) -> &'static str {
        self.pick("ダウンロード", "download")
    }

    pub fn licence_code(self) -> &'static str {
        self.pick("ライセンス", "Licence")
    }

    pub fn licence_note(self) -> &'static str {
        self.pick(
            "このQRコードで、どの店舗でも無料で書き込み直せます",
            "Any printmesh kiosk writes it again from this QR code, free",
        )
    }

    pub fn writing_title(self) -> &'static str {
        self.pick("カードに書き込んでいます", "Writing onto your card")
    }

    pub fn do_not_remove(self) -> &'static str {
        self.pick("カードを抜かないでください", "Do not remove your card")
    }

    pub fn writing_stage(self, w: &crate::roles::kiosk::app::Writing) -> String {
        use crate::roles::kiosk::app::Writing;
        use crate::roles::kiosk::cardwrite::mb;
        match (self, w) {
            (Lang::Ja, Writing::Starting) => "準備しています".into(),
            (Lang::En, Writing::Starting) => "Getting ready".into(),
            (Lang::Ja, Writing::Fetching { done, total }) => {
                format!(
                    "データを受け取っています（{} / {} MB）",
                    mb(*done),
                    mb(*total)
                )
            }
            (Lang::En, Writing::Fetching { done, total }) => {
                format!("Fetching the data ({} of {} MB)", mb(*done), mb(*total))
            }
            (Lang::Ja, Writing::Paying) => "カード会社に確認しています".into(),
            (Lang::En, Writing::Paying) => "Asking your card issuer to approve the payment".into(),
            (Lang::Ja, Writing::Writing { done, total }) => {
                format!(
                    "書き込んで確認しています（{} / {} MB）",
                    mb(*done / 2),
                    mb(*total / 2)
                )
            }
            (Lang::En, Writing::Writing { done, total }) => {
                format!(
                    "Writing and checking ({} of {} MB)",
                    mb(*done / 2),
                    mb(*total / 2)
                )
            }
            (Lang::Ja, Writing::Finishing) => "お支払いを確定しています".into(),
            (Lang::En, Writing::Finishing) => "Completing the payment".into(),
        }
    }

    pub fn downloaded_title(self) -> &'static str {
        self.pick(
            "書き込みが完了しました。カードを抜いてかまいません",
            "Done: you can remove your card",
        )
    }

    pub fn on_your_card(self) -> &'static str {
        self.pick("カードに書き込んだもの", "Now on your card")
    }

    pub fn write_failed_title(self) -> &'static str {
        self.pick("書き込めませんでした", "The download could not be written")
    }

    pub fn write_failure(self, f: &crate::roles::kiosk::app::WriteFailure) -> String {
        use crate::roles::kiosk::app::WriteFailure;
        use crate::roles::kiosk::cardwrite::mb;
        match (self, f) {
            (Lang::Ja, WriteFailure::CardGone) => {
                "書き込みの途中でカードが抜かれました。書きかけのファイルは残りません".into()
            }
            (Lang::En, WriteFailure::CardGone) => {
                "The card was removed before the download was finished. No half-written file is left on it".into()
            }
            (Lang::Ja, WriteFailure::WriteProtected) => {
                "カードが書き込み禁止になっています。カード側面のロックを外してください".into()
            }
            (Lang::En, WriteFailure::WriteProtected) => {
                "The card is write-protected: slide its lock switch up and try again".into()
            }
            (Lang::Ja, WriteFailure::Full { need }) => {
                format!("カードの空きが足りません（{} MB 必要です）", mb(*need))
            }
            (Lang::En, WriteFailure::Full { need }) => {
                format!("The card is full (the download needs {} MB)", mb(*need))
            }
            (Lang::Ja, WriteFailure::Other(why)) => format!("カードに書き込めませんでした: {why}"),
            (Lang::En, WriteFailure::Other(why)) => format!("The card could not be written: {why}"),
        }
    }

    pub fn one_company_at_a_time(self) -> &'static str {
        self.pick(
            "一度にお買い求めいただけるのは、同じ会社の商品だけです",
            "One company's items per purchase: pay for these first",
        )
    }

    pub fn basket_full(self, n: usize) -> String {
        match self {
            Lang::Ja => format!("一度に {n} 点までです"),
            Lang::En => format!("At most {n} items at a time"),
        }
    }

    pub fn no_room_on_card(self, bytes: u64) -> String {
        let mb = crate::roles::kiosk::cardwrite::mb(bytes);
        match self {
            Lang::Ja => format!("カードの空きが足りません（{mb} MB 必要です）"),
            Lang::En => format!("Not enough room on your card ({mb} MB needed)"),
        }
    }

    pub fn prints_not_paid(self, why: &str) -> String {
        match self {
            Lang::Ja => format!(
                "ダウンロードは完了しましたが、写真プリントはお支払いできませんでした: {why}"
            ),
            Lang::En => format!("Your downloads are done, but the prints could not be paid: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_dates_read_naturally() {
        let yen = Money::new(12_345, Currency::Jpy);
        assert_eq!(Lang::Ja.money(yen), "12,345円");
        assert_eq!(Lang::En.money(yen), "¥12,345");
        assert_eq!(
            Lang::En.money(Money::new(123_456, Currency::Usd)),
            "$1,234.56"
        );
        assert_eq!(Lang::En.money(Money::new(5, Currency::Eur)), "€0.05");
        assert_eq!(Lang::Ja.money(Money::new(-1000, Currency::Jpy)), "-1,000円");
        let d = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        assert_eq!(Lang::Ja.date(d), "2026年11月28日（土）");
        assert_eq!(Lang::En.date(d), "Saturday 28 November 2026");
    }

    #[test]
    fn every_decline_code_has_words_in_both_languages() {
        for code in [
            DeclineCode::DoNotHonour,
            DeclineCode::InvalidAmount,
            DeclineCode::InvalidCardNumber,
            DeclineCode::InsufficientFunds,
            DeclineCode::ExpiredCard,
            DeclineCode::NotPermitted,
            DeclineCode::RestrictedCard,
            DeclineCode::IncorrectPin,
            DeclineCode::PinTriesExceeded,
            DeclineCode::FormatError,
        ] {
            assert_ne!(Lang::Ja.decline_reason(code), Lang::En.decline_reason(code));
        }
        assert_eq!(
            Lang::En.pin_wrong(1),
            "That PIN was not correct. You can try 1 more time"
        );
        assert_eq!(Lang::En.picked_count(1, 3), "1 photo · 3 prints");
    }
}
