//! Images from outside: the EXIF facts and thumbnail the kiosk reads from a memory card
//! (and the thumbnail's decode, within its own small limits), and the lab's decode
//! (within its dimension and allocation limits) and back-print.
#![no_main]

use libfuzzer_sys::fuzz_target;
use printmesh_formats::thumbs::{make_thumb, Source};

fuzz_target!(|data: &[u8]| {
    let orientation = printmesh_formats::media::exif_facts_of(data).map_or(1, |(o, _, _)| o);
    // An EXIF thumbnail is a JPEG of its own: the input stands for one, turned as its
    // EXIF (if any) says.
    if let Ok(thumb) = make_thumb(Source::Exif(data), orientation, (64, 32)) {
        assert!(thumb.width <= 64 && thumb.height <= 32);
        assert_eq!(thumb.rgb.len(), (thumb.width * thumb.height * 3) as usize);
    }
    let _ = printmesh_formats::photo::check_image(data);
    let _ = printmesh_formats::photo::comment(data);
    if let Ok(img) = printmesh_formats::photo::decode_upright(data) {
        assert!(img.width() <= printmesh_formats::photo::MAX_SIDE);
    }
});
