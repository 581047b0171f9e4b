//! The kiosk's `[kiosk]` section: its store, prices, media slot, devices, timeouts,
//! stand-in limit and staff PIN.

use std::path::PathBuf;

use printmesh_protocol::StoreId;
use serde::{Deserialize, Serialize};

use super::app::CreditPin;
use super::i18n::Lang;
use super::reader::CardReaderConfig;
use super::receipt::PrinterConfig;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskConfig {
    pub store: StoreId,
    pub store_name: String,
    /// The price list (TOML, see [`PriceFile`]).
    pub prices: PathBuf,
    /// The media slot: a directory or mount point where a memory card appears.
    pub media_dir: Option<PathBuf>,
    /// Test cards the demo can "swipe" (fixtures/cards.toml).
    pub cards: Option<PathBuf>,
    /// The acquirer's public sealing key (hex), as it writes it to `seal.pub` in its
    /// data directory. Card data and PINs are sealed to it; without it the kiosk can
    /// take no card payment.
    pub acquirer_key_file: Option<PathBuf>,
    /// The screen's language until the customer presses F2: `ja` or `en`.
    #[serde(default)]
    pub language: Lang,
    /// A session with no key pressed for this long is cleared.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// How long the thank-you screen stays.
    #[serde(default = "default_thanks_timeout_secs")]
    pub thanks_timeout_secs: u64,
    /// How long the customer waits for the network's answer before the order is
    /// left in the outbox and the receipt says the date will be confirmed.
    #[serde(default = "default_answer_timeout_secs")]
    pub answer_timeout_secs: u64,
    /// PIN on credit cards: `required`, `optional` or `never`.
    #[serde(default)]
    pub credit_pin: CreditPin,
    /// Offline (no authorisation can be had: no intermediary, or none reaches an
    /// acquirer), credit orders without a PIN up to this amount are still taken, to be
    /// authorised later (0: none). Never debit or IC cards.
    #[serde(default)]
    pub offline_floor_limit_minor: i64,
    /// The most the store takes offline in all, waiting for authorisation (default:
    /// ten times the floor limit).
    #[serde(default)]
    pub offline_store_limit_minor: Option<i64>,
    /// An order not authorised this long after it was taken is given up: its hold is
    /// reversed wherever it is and the store sees it cancelled.
    #[serde(default = "default_offline_max_hours")]
    pub offline_max_hours: u64,
    /// Digits that open counter mode (F9). Without it there is no counter mode.
    pub staff_pin: Option<String>,
    /// The store's time zone, for receipts.
    #[serde(default)]
    pub utc_offset_hours: i8,
    /// How the magnetic-stripe reader is attached.
    #[serde(default)]
    pub card_reader: CardReaderConfig,
    /// The IC card reader's slot (the file-backed reader: a directory where
    /// `card.toml` appears when a card is inserted).
    pub chip_slot: Option<PathBuf>,
    /// Where receipts are printed. They are always saved as text in the data
    /// directory too.
    pub receipt_printer: Option<PrinterConfig>,
    /// The memory card's block device (or image) behind `media_dir`: its boot sector
    /// names the card (a licence's card identity) and, when the mount does not say,
    /// its FAT gives the free space. Without it the kiosk sells no downloads.
    #[serde(default)]
    pub media_device: Option<PathBuf>,
    /// Room for downloads' bytes kept at the kiosk (least recently used go first).
    #[serde(default = "default_download_cache_mb")]
    pub download_cache_mb: u64,
}

fn default_download_cache_mb() -> u64 {
    2048
}

fn default_idle_timeout_secs() -> u64 {
    120
}

fn default_thanks_timeout_secs() -> u64 {
    12
}

fn default_offline_max_hours() -> u64 {
    72
}

impl KioskConfig {
    /// The store-wide offline limit in minor units.
    pub fn offline_store_limit(&self) -> i64 {
        self.offline_store_limit_minor
            .unwrap_or(self.offline_floor_limit_minor.saturating_mul(10))
    }
}

fn default_answer_timeout_secs() -> u64 {
    60
}

impl KioskConfig {
    /// A kiosk with every optional setting at its default.
    pub fn new(store: StoreId, store_name: &str, prices: PathBuf) -> KioskConfig {
        KioskConfig {
            store,
            store_name: store_name.to_string(),
            prices,
            media_dir: None,
            cards: None,
            acquirer_key_file: None,
            language: Lang::default(),
            idle_timeout_secs: default_idle_timeout_secs(),
            thanks_timeout_secs: default_thanks_timeout_secs(),
            answer_timeout_secs: default_answer_timeout_secs(),
            credit_pin: CreditPin::default(),
            offline_floor_limit_minor: 0,
            offline_store_limit_minor: None,
            offline_max_hours: default_offline_max_hours(),
            staff_pin: None,
            utc_offset_hours: 0,
            card_reader: CardReaderConfig::default(),
            chip_slot: None,
            receipt_printer: None,
            media_device: None,
            download_cache_mb: default_download_cache_mb(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(pin) = &self.staff_pin {
            if !(4..=12).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
                return Err("kiosk.staff_pin must be 4 to 12 digits".into());
            }
        }
        for (name, secs) in [
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("thanks_timeout_secs", self.thanks_timeout_secs),
            ("answer_timeout_secs", self.answer_timeout_secs),
        ] {
            if !(1..=86_400).contains(&secs) {
                return Err(format!("kiosk.{name} must be 1 to 86400 seconds"));
            }
        }
        if self.offline_floor_limit_minor < 0 || self.offline_store_limit() < 0 {
            return Err(
                "kiosk.offline_floor_limit_minor and offline_store_limit_minor cannot be negative"
                    .into(),
            );
        }
        if self.offline_max_hours == 0 {
            return Err("kiosk.offline_max_hours must be at least 1".into());
        }
        if !(-12..=14).contains(&self.utc_offset_hours) {
            return Err(format!(
                "kiosk.utc_offset_hours {} is not a time zone",
                self.utc_offset_hours
            ));
        }
        Ok(())
    }
}
