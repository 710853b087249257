//! Daemon <-> tracker frames (`TrackerCall` in, `TrackerAnswer` out), as
//! the tracker and p2pd decode them: no panic; what decodes round-trips,
//! and a call's metadata (token, retry kind) can be read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::tracker::{TrackerAnswer, TrackerCall};

fuzz_target!(|data: &[u8]| {
    if let Ok(call) = serde_json::from_slice::<TrackerCall>(data) {
        let _ = (call.request.token(), call.request.retry());
        let again = serde_json::to_vec(&call).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<TrackerCall>(&again).expect("re-decodes"),
            call
        );
    }
    if let Ok(answer) = serde_json::from_slice::<TrackerAnswer>(data) {
        let again = serde_json::to_vec(&answer).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<TrackerAnswer>(&again).expect("re-decodes"),
            answer
        );
    }
});
