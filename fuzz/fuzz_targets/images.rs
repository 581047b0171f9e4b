//! Images from outside: the EXIF facts and thumbnail the kiosk reads from a memory card,
//! and the lab's decode (within its dimension and allocation limits) and back-print.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = printmesh_nodes::media::exif_facts_of(data);
    let _ = printmesh_nodes::roles::lab::check_image(data);
    let _ = printmesh_nodes::render::comment(data);
    if let Ok(img) = printmesh_nodes::render::decode_upright(data) {
        assert!(img.width() <= printmesh_nodes::render::MAX_SIDE);
    }
});
