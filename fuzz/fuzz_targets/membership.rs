//! Certificates and revocations as peers present them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use printmesh_protocol::membership::{
    Certificate, Revocation, SignedCertificate, SignedRevocation,
};

fuzz_target!(|data: &[u8]| {
    let _ = Certificate::decode(data);
    let _ = Revocation::decode(data);
    if let Ok(signed) = SignedCertificate::decode(data) {
        let _ = Certificate::decode(&signed.certificate);
    }
    if let Ok(signed) = SignedRevocation::decode(data) {
        let _ = Revocation::decode(&signed.revocation);
    }
});
