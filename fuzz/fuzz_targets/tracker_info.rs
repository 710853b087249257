//! `tracker_info.txt` (`proto::tracker_info::parse`): any text gives a
//! list of trackers or an error naming the line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(info) = proto::tracker_info::parse(text) {
        assert!(!info.trackers.is_empty(), "a parsed file lists a tracker");
        for n in [0, 1, 2, u32::MAX] {
            let _ = proto::tracker_info::nth(&info.trackers, n);
        }
    }
});
