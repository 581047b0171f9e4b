//! What peers present signed: certificates and revocations, content companies'
//! catalogues (a frame) and customers' licences (a frame, or the text of a card's
//! licence file or a receipt's QR code).
#![no_main]

use libfuzzer_sys::fuzz_target;
use printmesh_protocol::codec::decode_frame;
use printmesh_protocol::content::{
    verify_catalogue, verify_licence, SignedCatalogue, SignedLicence, CATALOGUE_MAX_BYTES,
    LICENCE_MAX_BYTES,
};
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
    if let Ok(signed) = decode_frame::<SignedCatalogue>(data, CATALOGUE_MAX_BYTES + 4096) {
        let _ = verify_catalogue(&signed);
    }
    if let Ok(signed) = decode_frame::<SignedLicence>(data, LICENCE_MAX_BYTES * 2) {
        let _ = verify_licence(&signed);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(signed) = SignedLicence::from_text(text) {
            let _ = verify_licence(&signed);
        }
    }
});
