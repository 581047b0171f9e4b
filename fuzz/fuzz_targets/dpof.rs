//! DPOF: the camera's AUTPRINT.MRK the kiosk reads, and the one the lab writes for a
//! minilab (read back).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = printmesh_formats::media::parse_dpof(&text);
    let _ = printmesh_formats::autprint::parse_autprint(&text);
});
