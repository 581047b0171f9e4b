//! A printer's answers: HTTP framing and IPP attributes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = printmesh_nodes::ipp::parse_http(data);
    if let Ok(r) = printmesh_nodes::ipp::Response::parse(data) {
        let _ = r.groups(printmesh_nodes::ipp::tag::JOB);
        let _ = r.get("job-id").and_then(|v| v.as_int());
    }
});
