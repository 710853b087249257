//! Recycled frame buffers for received blocks.
//!
//! Every block arrives in its own 128 KiB frame buffer, which travels to
//! the piece verifier and is dropped once the piece is written. Allocating
//! a fresh one per block made the allocator hand memory back to the kernel
//! and fault it in again (a fifth of the download task's CPU went to page
//! faults and zeroing pages); a pool of buffers that come back after use
//! costs none of that. The pool is bounded: beyond [`MAX_POOLED`] buffers,
//! returned ones are freed.

use std::sync::Mutex;

/// Buffers kept for reuse (128 KiB each: 4 MiB at most); a download has
/// at most `picker::DOWNLOAD_DEPTH_BLOCKS` (48) blocks outstanding.
pub const MAX_POOLED: usize = 32;

/// Buffers smaller than this are not worth keeping.
const MIN_KEPT_CAPACITY: usize = 64 * 1024;

#[derive(Default)]
pub struct BufPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufPool {
    /// An empty buffer, recycled if one is free.
    pub fn get(&self) -> Vec<u8> {
        self.lock().pop().unwrap_or_default()
    }

    /// Gives a buffer back for reuse (freed if the pool is full or the
    /// buffer is small).
    pub fn put(&self, mut buf: Vec<u8>) {
        if buf.capacity() < MIN_KEPT_CAPACITY {
            return;
        }
        buf.clear();
        let mut free = self.lock();
        if free.len() < MAX_POOLED {
            free.push(buf);
        }
    }

    /// Buffers waiting for reuse.
    pub fn pooled(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // A panic while holding the lock cannot leave the list inconsistent.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_cleared_and_the_pool_is_bounded() {
        let pool = BufPool::default();
        assert!(pool.get().is_empty());
        let mut b = Vec::with_capacity(200 * 1024);
        b.extend_from_slice(b"data");
        let ptr = b.as_ptr();
        pool.put(b);
        let again = pool.get();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the same allocation is reused");
        pool.put(vec![0u8; 10]); // too small to keep
        assert_eq!(pool.pooled(), 0);
        for _ in 0..MAX_POOLED + 5 {
            pool.put(Vec::with_capacity(MIN_KEPT_CAPACITY));
        }
        assert_eq!(pool.pooled(), MAX_POOLED);
    }
}
