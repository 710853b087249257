//! Length-prefixed framing (`proto::frame`): any byte stream gives frames
//! within the limit, a clean end, or an error; never a panic, never a
//! frame over the limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::frame::read_frame;

const LIMIT: u32 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = data;
        // At most as many frames as bytes: every frame eats its prefix.
        for _ in 0..=data.len() {
            match read_frame(&mut r, LIMIT).await {
                Ok(Some(f)) => assert!(f.len() <= LIMIT as usize),
                Ok(None) | Err(_) => break,
            }
        }
    });
});
