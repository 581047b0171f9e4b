//! A printer's answers: HTTP framing and IPP attributes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = printmesh_formats::ipp::parse_http(data);
    if let Ok(r) = printmesh_formats::ipp::Response::parse(data) {
        let _ = r.groups(printmesh_formats::ipp::tag::JOB);
        let _ = r.get("job-id").and_then(|v| v.as_int());
    }
});
