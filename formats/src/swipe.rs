//! A keyboard-wedge magnetic-stripe reader types a swipe into the key stream:
//! `%B…^…^…?` (track 1) then `;…=…?` (track 2), each possibly followed by its LRC
//! character, then Enter. [`SwipeAssembler`] recognises that in the keys the card
//! screen receives and turns it into [`CardData`]; the raw tracks are wiped as soon as
//! they are parsed.

use printmesh_protocol::card::{parse_track1, parse_track2, CardData, CardError};
use printmesh_protocol::secret::Secret;

/// Longest key sequence a swipe can be (two tracks, sentinels, LRCs).
pub const MAX_SWIPE_CHARS: usize = 200;

/// What a finished swipe gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Swipe {
    Card(CardData),
    /// The reader sent something that is not a readable card. The reason is safe to
    /// show: it never contains track data.
    Unreadable(String),
}

/// Collects wedge keystrokes. Its buffer is allocated once at full size, so it never
/// moves (leaving copies of track data behind) and is wiped in place.
pub struct SwipeAssembler {
    buffer: Secret<String>,
    active: bool,
    overflowed: bool,
}

impl Default for SwipeAssembler {
    fn default() -> Self {
        SwipeAssembler {
            buffer: Secret::new(String::with_capacity(MAX_SWIPE_CHARS * 4)),
            active: false,
            overflowed: false,
        }
    }
}

impl SwipeAssembler {
    /// True while a swipe is being typed (the screen should not treat keys as input).
    pub fn is_active(&self) -> bool {
        self.active
    }

    fn wipe(&mut self) {
        // Overwritten in place (the buffer is kept for the next swipe; `Secret` wipes
        // it again when the assembler is dropped).
        self.buffer.wipe();
        self.active = false;
        self.overflowed = false;
    }

    /// Feeds one typed character. Returns `true` if it belonged to a swipe.
    pub fn push(&mut self, c: char) -> bool {
        if !self.active {
            if c == '%' || c == ';' {
                self.active = true;
            } else {
                return false;
            }
        }
        if self.buffer.expose().len() + c.len_utf8() <= MAX_SWIPE_CHARS {
            self.buffer.expose_mut().push(c);
        } else {
            // Keep consuming until Enter, but remember it overflowed.
            self.overflowed = true;
        }
        true
    }

    /// Enter: the swipe is complete. `None` when no swipe was in progress.
    pub fn finish(&mut self) -> Option<Swipe> {
        if !self.active {
            return None;
        }
        let result = if self.overflowed {
            Swipe::Unreadable("the swipe was garbled; please swipe again".into())
        } else {
            parse_swipe(self.buffer.expose())
        };
        self.wipe();
        Some(result)
    }

    /// Esc or a timeout: drop whatever was collected.
    pub fn cancel(&mut self) {
        self.wipe();
    }
}

fn describe(e: &CardError) -> String {
    match e {
        CardError::Track { why, .. } => format!("the card could not be read ({why})"),
        CardError::PanLuhn | CardError::PanLength(_) | CardError::PanNotDigits => {
            "the card number is not valid".into()
        }
        CardError::Expiry => "the card's expiry date is not valid".into(),
    }
}

/// Splits a swipe into its tracks and reads the card: track 2 first (it is what
/// acquirers authorise on), track 1 when track 2 is missing or bad.
pub fn parse_swipe(keys: &str) -> Swipe {
    if keys.len() > MAX_SWIPE_CHARS || keys.contains('\0') {
        return Swipe::Unreadable("the swipe was garbled; please swipe again".into());
    }
    let (track1, track2) = split_tracks(keys);
    if track1.is_none() && track2.is_none() {
        return Swipe::Unreadable("no card track was read; please swipe again".into());
    }
    let t2 = track2.map(parse_track2);
    if let Some(Ok(card)) = t2 {
        return Swipe::Card(card);
    }
    let t1 = track1.map(parse_track1);
    if let Some(Ok(card)) = t1 {
        return Swipe::Card(card);
    }
    let err = t2.and_then(Result::err).or(t1.and_then(Result::err));
    Swipe::Unreadable(
        err.map(|e| describe(&e))
            .unwrap_or_else(|| "the card could not be read".into()),
    )
}

/// `(track 1, track 2)` as typed, each including its sentinels and LRC if sent.
fn split_tracks(keys: &str) -> (Option<&str>, Option<&str>) {
    let mut track1 = None;
    let mut rest = keys;
    if keys.starts_with('%') {
        match keys.find('?') {
            Some(end) => {
                let after = keys.get(end + 1..).unwrap_or_default();
                // The character after '?' is track 1's LRC when it is the last one
                // or when track 2's ';' follows it (an LRC may itself be ';').
                let mut chars = after.chars();
                let lrc_len = match (chars.next(), chars.as_str()) {
                    (Some(c), rest) if rest.is_empty() || rest.starts_with(';') => c.len_utf8(),
                    _ => 0,
                };
                let end1 = end + 1 + lrc_len;
                track1 = keys.get(..end1);
                rest = keys.get(end1..).unwrap_or_default();
            }
            None => return (Some(keys), None),
        }
    }
    let track2 = rest.starts_with(';').then_some(rest);
    (track1, track2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use printmesh_protocol::card::lrc;

    fn typed(a: &mut SwipeAssembler, s: &str) -> Option<Swipe> {
        for c in s.chars() {
            assert!(a.push(c));
        }
        a.finish()
    }

    #[test]
    fn reads_both_tracks_with_and_without_lrc() {
        let t1 = "%B4111111111111111^PRINTMESH/TEST^30121010000000000000?";
        let t2 = ";4111111111111111=30121010000000000000?";
        let mut a = SwipeAssembler::default();
        for keys in [
            format!("{t1}{t2}"),
            format!("{t1}{}{t2}{}", lrc(1, t1), lrc(2, t2)),
            t2.to_string(),
            t1.to_string(),
        ] {
            match typed(&mut a, &keys) {
                Some(Swipe::Card(card)) => assert_eq!(card.pan.last4(), "1111", "{keys}"),
                other => panic!("{keys}: {other:?}"),
            }
            assert!(!a.is_active());
        }
    }

    #[test]
    fn a_track1_lrc_that_is_a_semicolon_is_not_taken_for_track2() {
        let t2 = ";4111111111111111=30121010000000000000?";
        let keys = format!("%B4111111111111111^X^3012?;{t2}");
        let (t1, t2_got) = split_tracks(&keys);
        assert_eq!(t1, Some("%B4111111111111111^X^3012?;"));
        assert_eq!(t2_got, Some(t2));
        let keys = format!("%B4111111111111111^X^3012?{t2}");
        let (t1, t2_got) = split_tracks(&keys);
        assert_eq!(t1, Some("%B4111111111111111^X^3012?"));
        assert_eq!(t2_got, Some(t2));
    }

    #[test]
    fn a_bad_track2_falls_back_to_track1() {
        let mut a = SwipeAssembler::default();
        let swipe = typed(&mut a, "%B3530111333300000^TEST^28071010000000000000?;E?");
        assert!(matches!(swipe, Some(Swipe::Card(c)) if c.pan.last4() == "0000"));
    }

    #[test]
    fn bad_swipes_are_explained_without_track_data() {
        let mut a = SwipeAssembler::default();
        for keys in [
            ";E?",
            "%E?;E?",
            ";4111111111111112=3012?",
            ";4111111111111111=3012?0",
            "%%%%",
        ] {
            match typed(&mut a, keys) {
                Some(Swipe::Unreadable(why)) => {
                    assert!(!why.contains("4111"), "{why}");
                    assert!(!why.is_empty());
                }
                other => panic!("{keys}: {other:?}"),
            }
        }
        let long = format!(";{}?", "1".repeat(400));
        assert!(matches!(typed(&mut a, &long), Some(Swipe::Unreadable(_))));
    }

    #[test]
    fn ordinary_keys_are_not_a_swipe() {
        let mut a = SwipeAssembler::default();
        assert!(!a.push('1'));
        assert!(!a.push('x'));
        assert_eq!(a.finish(), None);
    }
}
