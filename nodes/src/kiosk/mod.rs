//! The kiosk's customer-facing side: devices (card reader, chip reader, PIN pad,
//! receipt printer) and, on top of them, the screens S501–S510.
//!
//! Hardware sits behind small traits with fakes that read the same bytes the real
//! devices send: a keyboard-wedge reader types its tracks into the key stream, a chip
//! reader reports the EMV track-2 equivalent, a receipt printer takes ESC/POS.

pub mod app;
pub mod chip;
pub mod i18n;
pub mod pinpad;
pub mod reader;
pub mod receipt;
pub mod run;
pub mod thumbs;
pub mod ui;

/// Card swipes (parsed in `printmesh-formats`).
pub use printmesh_formats::swipe;
