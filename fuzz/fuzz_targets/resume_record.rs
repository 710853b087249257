//! A download's resume record (`p2pd::swarm::resume::decode`), as a
//! restarted daemon reads it from its home: no panic; a record that
//! validates encodes back to one that decodes equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2pd::swarm::resume::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = decode(data) {
        assert_eq!(decode(&encode(&rec)).expect("re-decodes"), rec);
    }
});
