//! Peer messages (`proto::peer::decode`), as a serving or downloading
//! daemon reads them off a link: no panic, and whatever decodes encodes
//! back to a payload that decodes to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::peer::{decode, encode_payload, Bitfield};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode(data) else { return };
    let mut again = Vec::new();
    if encode_payload(&msg, &mut again).is_ok() {
        assert_eq!(decode(&again).expect("re-decodes"), msg);
    }
    if let proto::peer::Message::Bitfield(bits) = msg {
        // A bitfield is checked against the file's piece count.
        for pieces in [0, 1, 7, 8, 9, 4096] {
            let _ = Bitfield::from_bytes(bits, pieces);
        }
    }
});
