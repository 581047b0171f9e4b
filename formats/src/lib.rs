//! Parsers of outside bytes, in a crate of their own so the fuzz build is small: it
//! pulls in no libp2p, sled, tokio or ratatui. Every parser here has size limits and
//! returns an error instead of panicking; `fuzz/` runs each on anything.
//!
//! - [`media`]: a memory card's DCF files, the camera's DPOF order, EXIF facts.
//! - [`thumbs`]: thumbnails made within decode limits (the kiosk's grid and preview).
//! - [`swipe`]: what a keyboard-wedge card reader types (tracks 1 and 2).
//! - [`photo`]: a customer's photo as the lab decodes it, and a print's back-print.
//! - [`autprint`]: the DPOF order the lab writes for a minilab, and read back.
//! - [`ipp`]: IPP/1.1 messages and the HTTP answers a printer sends.
//! - [`fat`]: a memory card's FAT or exFAT boot sector (its serial) and FAT free space.
//!
//! Wire frames, signed events and certificates are parsed in `printmesh-protocol`.

pub mod autprint;
pub mod fat;
pub mod ipp;
pub mod media;
pub mod photo;
pub mod swipe;
pub mod thumbs;
