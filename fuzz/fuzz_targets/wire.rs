//! Every wire decoder: the first byte picks the message type, the rest is the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use printmesh_protocol::codec::{decode_frame, MAX_FRAME_BYTES};
use printmesh_protocol::messages::*;

fuzz_target!(|data: &[u8]| {
    let Some((which, frame)) = data.split_first() else {
        return;
    };
    let max = MAX_FRAME_BYTES;
    match which % 19 {
        0 => drop(decode_frame::<Hello>(frame, max)),
        1 => drop(decode_frame::<OrderRequest>(frame, max)),
        2 => drop(decode_frame::<OrderResponse>(frame, max)),
        3 => drop(decode_frame::<AuthRequest>(frame, max)),
        4 => drop(decode_frame::<AuthResponse>(frame, max)),
        5 => drop(decode_frame::<PrintRequest>(frame, max)),
        6 => drop(decode_frame::<PrintResponse>(frame, max)),
        7 => drop(decode_frame::<SettleRequest>(frame, max)),
        8 => drop(decode_frame::<SettleResponse>(frame, max)),
        9 => drop(decode_frame::<ShipRequest>(frame, max)),
        10 => drop(decode_frame::<ShipResponse>(frame, max)),
        11 => drop(decode_frame::<BlobOffer>(frame, max)),
        12 => drop(decode_frame::<BlobReply>(frame, max)),
        13 => drop(decode_frame::<BlobVerdict>(frame, max)),
        14 => drop(decode_frame::<OrderEvent>(frame, max)),
        15 => drop(decode_frame::<SignedEvent>(frame, max)),
        16 => drop(printmesh_protocol::signed::verify_event(frame)),
        17 => drop(decode_frame::<SyncRequest>(frame, max)),
        _ => {
            // A sync answer, and each frame in it judged as the syncer does.
            if let Ok(SyncResponse::Events { frames, .. }) = decode_frame::<SyncResponse>(frame, max) {
                for f in frames.iter().take(proto::SYNC_MAX_EVENTS) {
                    drop(printmesh_protocol::signed::verify_event(f));
                }
            }
        }
    }
});
