//! The control socket's frames (`CtlHello` in, `CtlReply` out), decoded as
//! p2pd and p2pctl decode them: no panic; what decodes round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::ctl::{CtlHello, CtlReply};

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = serde_json::from_slice::<CtlHello>(data) {
        let again = serde_json::to_vec(&hello).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<CtlHello>(&again).expect("re-decodes"),
            hello
        );
    }
    if let Ok(reply) = serde_json::from_slice::<CtlReply>(data) {
        let again = serde_json::to_vec(&reply).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<CtlReply>(&again).expect("re-decodes"),
            reply
        );
    }
});
