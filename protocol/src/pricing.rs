//! Print sizes and the price list the intermediary publishes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::money::{Currency, Money, MoneyError};

/// How a photo meets the paper (chosen per order line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fit {
    /// Fill the paper; what does not fit the paper's aspect is cut off, evenly.
    #[default]
    Crop,
    /// The whole photo, centred, with white where it does not reach.
    Border,
}

/// Print sizes a lab offers (Japanese photo-print names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PrintSize {
    /// L: 89 × 127 mm.
    L,
    /// 2L: 127 × 178 mm.
    TwoL,
    /// KG (postcard): 102 × 152 mm.
    Kg,
    /// 8 × 10 in (203 × 254 mm).
    EightByTen,
    /// A4: 210 × 297 mm.
    A4,
}

impl PrintSize {
    pub const ALL: [PrintSize; 5] = [
        PrintSize::L,
        PrintSize::TwoL,
        PrintSize::Kg,
        PrintSize::EightByTen,
        PrintSize::A4,
    ];

    /// Paper size in tenths of a millimetre, short side first.
    pub fn paper_mm10(self) -> (u32, u32) {
        match self {
            PrintSize::L => (890, 1270),
            PrintSize::TwoL => (1270, 1780),
            PrintSize::Kg => (1020, 1520),
            PrintSize::EightByTen => (2032, 2540),
            PrintSize::A4 => (2100, 2970),
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            PrintSize::L => "L",
            PrintSize::TwoL => "2L",
            PrintSize::Kg => "KG",
            PrintSize::EightByTen => "8x10",
            PrintSize::A4 => "A4",
        }
    }
}

impl fmt::Display for PrintSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown print size {0:?} (known: L, 2L, KG, 8x10, A4)")]
pub struct UnknownPrintSize(String);

impl FromStr for PrintSize {
    type Err = UnknownPrintSize;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PrintSize::ALL
            .into_iter()
            .find(|p| p.code().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPrintSize(s.chars().take(10).collect()))
    }
}

/// Most prints of one photo in one order line.
pub const MAX_QUANTITY: u16 = 99;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PriceError {
    #[error("size {0} is not on the price list")]
    NotOffered(PrintSize),
    #[error("quantity {0} is out of range 1-{MAX_QUANTITY}")]
    Quantity(u16),
    #[error("price list is in {list}, but {asked} was asked for")]
    Currency { list: Currency, asked: Currency },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// One row of the price list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceEntry {
    pub size: PrintSize,
    pub unit_price_minor: i64,
}

/// The intermediary's price list. Kiosks show it; the intermediary recomputes every
/// order's total from its own copy and refuses an order whose total differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceList {
    pub currency: Currency,
    pub entries: Vec<PriceEntry>,
}

impl PriceList {
    pub fn unit_price(&self, size: PrintSize) -> Result<Money, PriceError> {
        self.entries
            .iter()
            .find(|e| e.size == size)
            .map(|e| Money::new(e.unit_price_minor, self.currency))
            .ok_or(PriceError::NotOffered(size))
    }

    pub fn line_price(&self, size: PrintSize, quantity: u16) -> Result<Money, PriceError> {
        if quantity == 0 || quantity > MAX_QUANTITY {
            return Err(PriceError::Quantity(quantity));
        }
        Ok(self.unit_price(size)?.checked_mul(u32::from(quantity))?)
    }

    /// The total of `(size, quantity)` lines.
    pub fn total(
        &self,
        lines: impl IntoIterator<Item = (PrintSize, u16)>,
    ) -> Result<Money, PriceError> {
        let mut total = Money::zero(self.currency);
        for (size, quantity) in lines {
            total = total.checked_add(self.line_price(size, quantity)?)?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> PriceList {
        PriceList {
            currency: Currency::Jpy,
            entries: vec![
                PriceEntry {
                    size: PrintSize::L,
                    unit_price_minor: 30,
                },
                PriceEntry {
                    size: PrintSize::TwoL,
                    unit_price_minor: 80,
                },
            ],
        }
    }

    #[test]
    fn totals_lines() {
        let total = list()
            .total([(PrintSize::L, 2), (PrintSize::TwoL, 1)])
            .unwrap();
        assert_eq!(total, Money::new(140, Currency::Jpy));
    }

    #[test]
    fn refuses_unknown_sizes_and_quantities() {
        assert_eq!(
            list().total([(PrintSize::A4, 1)]),
            Err(PriceError::NotOffered(PrintSize::A4))
        );
        assert_eq!(
            list().total([(PrintSize::L, 0)]),
            Err(PriceError::Quantity(0))
        );
        assert_eq!(
            list().total([(PrintSize::L, 100)]),
            Err(PriceError::Quantity(100))
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!("2l".parse::<PrintSize>().unwrap(), PrintSize::TwoL);
        assert!("XL".parse::<PrintSize>().is_err());
    }
}
