//! One wrapper for every card, PIN and key value: [`Secret<T>`] wipes its value when
//! dropped (volatile writes that the compiler may not remove, through `zeroize`),
//! never shows it in `Debug` or `Display`, and hands it out only through an explicit
//! [`Secret::expose`], so a reader of the code can find every place a secret is read.
//!
//! A `Secret` moves without copying its heap buffer; a clone is a second secret, wiped
//! in its turn. What is wiped is the value's own memory (a `String`'s or `Vec`'s whole
//! buffer, spare capacity included); a copy made through `expose` is the caller's to
//! wrap in a `Secret` of its own.

use std::fmt;

use zeroize::Zeroize;

pub use zeroize::Zeroize as Wipe;

/// A value wiped on drop and never printed.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value itself. Call it where the secret is used (sealing, verifying,
    /// hashing), never to format it into a log line, a screen or a receipt.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The value, to change in place (a buffer that is typed into).
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }

    /// Wipes the value now, keeping the secret (and its buffer) for reuse.
    pub fn wipe(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Secret<T> {
        Secret(value)
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Wipes a string that held card data for a moment (the digits of a field being
/// parsed, a rejected number) before its memory is released.
pub fn wipe_string(s: String) {
    drop(Secret::new(s));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_printed_and_is_read_only_by_expose() {
        let s = Secret::new(String::from("4111111111111111"));
        assert_eq!(format!("{s:?}"), "Secret(<hidden>)");
        assert_eq!(format!("{s}"), "<hidden>");
        assert!(!format!("{s:?} {s}").contains("4111"));
        assert_eq!(s.expose(), "4111111111111111");
    }

    #[test]
    fn wipe_clears_the_value_and_keeps_its_buffer() {
        let mut s = Secret::new(Vec::with_capacity(12));
        s.expose_mut().extend_from_slice(b"1234");
        let before = s.expose().as_ptr();
        s.wipe();
        assert!(s.expose().is_empty());
        s.expose_mut().push(b'5');
        assert_eq!(
            s.expose().as_ptr(),
            before,
            "the buffer is reused, not moved"
        );
        let mut key = Secret::new([7u8; 32]);
        key.wipe();
        assert_eq!(key.expose(), &[0u8; 32]);
    }
}
