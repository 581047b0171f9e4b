//! The PIN pad: digits typed on the PIN screen are held only until Enter, then become
//! a [`Pin`] that the kiosk seals at once into the card's envelope as an ISO 9564
//! format 4 block (`protocol::seal`), and are wiped. The screen sees only how many
//! digits were typed.

use printmesh_protocol::pinblock::{Pin, PinError};
use printmesh_protocol::secret::{Secret, Wipe as _};

/// Most digits a PIN may have.
pub const MAX_PIN_DIGITS: usize = 12;

/// Digits being typed. The buffer is allocated once at full size and wiped in place.
pub struct PinPad {
    digits: Secret<Vec<u8>>,
}

impl Default for PinPad {
    fn default() -> Self {
        PinPad {
            digits: Secret::new(Vec::with_capacity(MAX_PIN_DIGITS)),
        }
    }
}

impl std::fmt::Debug for PinPad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PinPad({} digits)", self.digits.expose().len())
    }
}

impl PinPad {
    /// Compares the typed digits with `want` (the staff PIN; customer PINs are only
    /// ever checked by the acquirer), looking at every digit whatever the outcome.
    pub fn matches(&self, want: &str) -> bool {
        let want = want.as_bytes();
        let mut diff = u8::from(want.len() != self.digits.expose().len());
        for (i, d) in self.digits.expose().iter().enumerate() {
            diff |= d ^ want.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }

    pub fn push(&mut self, digit: char) -> bool {
        if digit.is_ascii_digit() && self.digits.expose().len() < MAX_PIN_DIGITS {
            self.digits.expose_mut().push(digit as u8);
            true
        } else {
            false
        }
    }

    pub fn backspace(&mut self) {
        let digits = self.digits.expose_mut();
        if let Some(d) = digits.last_mut() {
            d.zeroize();
        }
        digits.pop();
    }

    /// How many digits are typed (the screen shows this many dots).
    pub fn len(&self) -> usize {
        self.digits.expose().len()
    }

    pub fn is_empty(&self) -> bool {
        self.digits.expose().is_empty()
    }

    pub fn clear(&mut self) {
        self.digits.wipe();
    }

    /// A second pad with the same digits, for a basket paid as two orders (downloads,
    /// then prints), each sealing the PIN with its own card envelope. Wiped on drop
    /// like the first.
    pub fn duplicate(&self) -> PinPad {
        let mut copy = PinPad::default();
        for &d in self.digits.expose() {
            copy.push(char::from(d));
        }
        copy
    }

    /// Enter: the digits become a [`Pin`] (which the kiosk seals into the card's
    /// envelope as a format 4 block at once) and the pad is wiped, whatever the
    /// outcome.
    pub fn take_pin(&mut self) -> Result<Pin, PinError> {
        let result = Pin::new(self.digits.expose());
        self.clear();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_become_a_pin_and_are_wiped() {
        let mut pad = PinPad::default();
        for c in "12a34".chars() {
            pad.push(c);
        }
        assert_eq!(pad.len(), 4);
        pad.backspace();
        pad.push('9');
        let pin = pad.take_pin().unwrap();
        assert!(pad.is_empty());
        assert!(pin.matches(b"1239"));
        assert_eq!(format!("{pad:?}"), "PinPad(0 digits)");
    }

    #[test]
    fn a_short_pin_is_refused_and_still_wiped() {
        let mut pad = PinPad::default();
        pad.push('1');
        assert_eq!(pad.take_pin().err(), Some(PinError::Length));
        assert!(pad.is_empty());
        for _ in 0..20 {
            pad.push('1');
        }
        assert_eq!(pad.len(), MAX_PIN_DIGITS);
    }
}
