//! Card reader input: ISO 7813 tracks 1 and 2, the chip's track-2 equivalent, and what
//! a keyboard-wedge reader types.
#![no_main]

use libfuzzer_sys::fuzz_target;
use printmesh_protocol::card::{parse_track1, parse_track2, parse_track2_equivalent};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_track1(&text);
    let _ = parse_track2(&text);
    let _ = parse_track2_equivalent(&text);
    let _ = printmesh_formats::swipe::parse_swipe(&text);
});
