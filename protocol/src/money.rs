//! Money in integer minor units with an ISO 4217 currency. No floats anywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The currencies a printmesh network can price and settle in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Currency {
    Jpy,
    Usd,
    Eur,
    Gbp,
}

impl Currency {
    /// Digits after the decimal point (ISO 4217 minor unit).
    pub fn decimals(self) -> u32 {
        match self {
            Currency::Jpy => 0,
            Currency::Usd | Currency::Eur | Currency::Gbp => 2,
        }
    }

    /// The ISO 4217 alphabetic code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Jpy => "JPY",
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Gbp => "GBP",
        }
    }

    /// ISO 4217 numeric code (ISO 8583 field 49).
    pub fn numeric(self) -> u16 {
        match self {
            Currency::Jpy => 392,
            Currency::Usd => 840,
            Currency::Eur => 978,
            Currency::Gbp => 826,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown currency {0:?} (known: JPY, USD, EUR, GBP)")]
pub struct UnknownCurrency(String);

impl FromStr for Currency {
    type Err = UnknownCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "JPY" => Ok(Currency::Jpy),
            "USD" => Ok(Currency::Usd),
            "EUR" => Ok(Currency::Eur),
            "GBP" => Ok(Currency::Gbp),
            _ => Err(UnknownCurrency(s.chars().take(10).collect())),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("currency mismatch: {left} and {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("amount overflow")]
    Overflow,
    #[error("negative amount where a non-negative one is required: {0}")]
    Negative(i64),
}

/// An amount of money: integer minor units (yen, cents) and a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    pub const fn new(amount_minor: i64, currency: Currency) -> Self {
        Money {
            amount_minor,
            currency,
        }
    }

    pub const fn zero(currency: Currency) -> Self {
        Money::new(0, currency)
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_negative(&self) -> bool {
        self.amount_minor < 0
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        let amount = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        let amount = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    pub fn checked_mul(self, factor: u32) -> Result<Money, MoneyError> {
        let amount = self
            .amount_minor
            .checked_mul(i64::from(factor))
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Compares two amounts of the same currency.
    pub fn checked_cmp(&self, other: &Money) -> Result<std::cmp::Ordering, MoneyError> {
        self.same_currency(other)?;
        Ok(self.amount_minor.cmp(&other.amount_minor))
    }
}

impl fmt::Display for Money {
    /// `JPY 1,200`, `USD 12.34`, `EUR -0.05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decimals = self.currency.decimals();
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        let scale = 10u64.pow(decimals);
        let major = abs / scale;
        let minor = abs % scale;
        let digits = major.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if decimals == 0 {
            write!(f, "{} {sign}{grouped}", self.currency)
        } else {
            write!(
                f,
                "{} {sign}{grouped}.{minor:0width$}",
                self.currency,
                width = decimals as usize
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yen_has_no_decimals() {
        assert_eq!(Money::new(1200, Currency::Jpy).to_string(), "JPY 1,200");
        assert_eq!(Money::new(0, Currency::Jpy).to_string(), "JPY 0");
        assert_eq!(
            Money::new(1_234_567, Currency::Jpy).to_string(),
            "JPY 1,234,567"
        );
    }

    #[test]
    fn cents_are_shown_with_two_digits() {
        assert_eq!(Money::new(1234, Currency::Usd).to_string(), "USD 12.34");
        assert_eq!(Money::new(-5, Currency::Eur).to_string(), "EUR -0.05");
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Money::new(100, Currency::Jpy);
        assert_eq!(a.checked_add(a).unwrap().amount_minor(), 200);
        assert_eq!(a.checked_mul(3).unwrap().amount_minor(), 300);
        assert_eq!(
            a.checked_add(Money::new(1, Currency::Usd)),
            Err(MoneyError::CurrencyMismatch {
                left: Currency::Jpy,
                right: Currency::Usd
            })
        );
        assert_eq!(
            Money::new(i64::MAX, Currency::Jpy).checked_add(a),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::new(i64::MAX, Currency::Jpy).checked_mul(2),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn currency_codes_parse() {
        assert_eq!("jpy".parse::<Currency>().unwrap(), Currency::Jpy);
        assert!("XXX".parse::<Currency>().is_err());
        assert_eq!(Currency::Jpy.numeric(), 392);
    }
}
