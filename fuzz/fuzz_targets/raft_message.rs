//! Tracker-to-tracker requests (Raft RPCs and forwarded writes), decoded as
//! `tracker::raft::serve` decodes them once a peer tracker proved the
//! cluster key: no panic, and what decodes encodes again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tracker::raft::network::PeerRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<PeerRequest>(data) {
        let again = serde_json::to_vec(&req).expect("encodes");
        serde_json::from_slice::<PeerRequest>(&again).expect("re-decodes");
    }
});
