//! The test-card file (`fixtures/cards.toml`): what the demo and the tests "swipe", and
//! what the acquirer seeds its card accounts from. The PAN and expiry are read from the
//! track strings, exactly as a kiosk reads them from a swipe.

use std::path::Path;

use printmesh_protocol::card::{parse_track1, parse_track2, CardData};
use printmesh_protocol::messages::PaymentMethod;
use printmesh_protocol::money::Currency;
use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCard {
    /// Short name used on the command line (`--card visa-ok`).
    pub name: String,
    /// What the card demonstrates, for people.
    pub label: String,
    /// credit, debit, point, ic.
    pub kind: String,
    pub track1: String,
    pub track2: String,
    /// The PIN a customer would type (the PIN pad arrives with the kiosk issue).
    pub pin: String,
    /// Credit limit (or balance) in minor units of `currency`.
    pub limit_minor: i64,
    pub currency: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardsFile {
    card: Vec<TestCard>,
}

impl TestCard {
    /// Reads the card as a kiosk would: from track 2, falling back to track 1.
    pub fn read(&self) -> Result<CardData, String> {
        parse_track2(&self.track2)
            .or_else(|_| parse_track1(&self.track1))
            .map_err(|e| format!("card {}: {e}", self.name))
    }

    pub fn method(&self) -> PaymentMethod {
        parse_method(&self.kind).unwrap_or(PaymentMethod::Credit)
    }

    pub fn currency(&self) -> Result<Currency, String> {
        self.currency
            .parse()
            .map_err(|e| format!("card {}: {e}", self.name))
    }
}

/// `credit`, `debit`, `point`, `ic`.
pub fn parse_method(name: &str) -> Option<PaymentMethod> {
    match name {
        "credit" => Some(PaymentMethod::Credit),
        "debit" => Some(PaymentMethod::Debit),
        "point" => Some(PaymentMethod::PointCard),
        "ic" => Some(PaymentMethod::IcCard),
        _ => None,
    }
}

/// Loads and checks every card in the file.
pub fn load_cards(path: &Path) -> Result<Vec<TestCard>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: CardsFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    for card in &file.card {
        card.read()
            .and_then(|_| card.currency().map(|_| ()))
            .map_err(|message| ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
    }
    Ok(file.card)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_cards_load() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/cards.toml");
        let cards = load_cards(&path).unwrap();
        assert!(cards.len() >= 4);
        let visa = cards.iter().find(|c| c.name == "visa-ok").unwrap();
        assert_eq!(visa.read().unwrap().pan.last4(), "1111");
        let jcb = cards.iter().find(|c| c.name == "jcb-ok").unwrap();
        assert_eq!(jcb.read().unwrap().pan.expose_digits(), "3530111333300000");
    }
}
