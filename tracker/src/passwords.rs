//! Passwords: the limits a password must meet, and argon2id hashing and
//! verification on a few dedicated threads.
//!
//! Why dedicated threads: each hash takes ~19 MiB and tens of ms of CPU; on
//! tokio's blocking pool (up to 512 threads) a burst of logins ran many at
//! once, and the allocator kept a 19 MiB block in each thread's arena
//! afterwards (hundreds of MiB of RSS). `hash_threads()` threads bound both
//! the memory and the CPU a login burst can take; logins queue.
//!
//! Invariant: a password never reaches the replicated state; only its PHC
//! string does, computed here *before* the command is built.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use proto::{ErrorCode, WireError};
use rand::rngs::OsRng;
use std::sync::{Arc, OnceLock};

/// Longest password accepted, in bytes: enough for any passphrase, small
/// enough that hashing it cannot be used to burn CPU.
pub const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// No argon2 thread could be started, or it stopped.
    #[error("no argon2 thread is running")]
    NoThread,
    /// Every argon2 thread is busy and the queue is full.
    #[error("the argon2 queue is full")]
    Busy,
    #[error("argon2 failed: {0}")]
    Argon2(argon2::password_hash::Error),
}

/// Refuses an empty password and one over [`MAX_PASSWORD_BYTES`].
///
/// # Errors
/// `invalid_argument`, with a sentence for the user.
pub fn check_password(password: &str) -> Result<(), WireError> {
    if password.is_empty() {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            "the password must not be empty",
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "the password is {} bytes long; at most {MAX_PASSWORD_BYTES} are allowed",
                password.len()
            ),
        ));
    }
    Ok(())
}

/// argon2id with a fresh random salt, on an argon2 thread; the PHC string.
///
/// # Errors
/// [`PasswordError`]: no argon2 thread runs, or argon2 failed.
pub async fn hash_password(password: String) -> Result<String, PasswordError> {
    on_hash_thread(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await?
    .map_err(PasswordError::Argon2)
}

/// Checks `password` against `stored`. An unknown user is checked against a
/// dummy hash, so the answer takes as long as for a wrong password and does
/// not reveal which accounts exist.
///
/// # Errors
/// [`PasswordError::NoThread`].
pub async fn verify_password(
    password: String,
    stored: Option<String>,
) -> Result<bool, PasswordError> {
    on_hash_thread(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&phc) else {
            tracing::error!("a stored password hash is unreadable");
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await
}

/// Computes the dummy hash now, in the background, so the first login of an
/// unknown user is not slower than a wrong password (and does not reveal
/// itself). Call once at start, from within a tokio runtime.
pub fn warm_up() {
    drop(tokio::spawn(on_hash_thread(dummy_hash)));
}

/// The hash unknown users are checked against; computed once.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"no such user", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// How many argon2 threads run (see the module header).
fn hash_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

/// How long a hash may wait for room in the queue before it is refused.
pub const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How many hashes may wait for a thread: two per thread and a little
/// slack, so a burst of honest logins queues (each ~tens of ms) while a
/// flood is refused instead of piling up.
fn queue_bound() -> usize {
    2 * hash_threads() + 4
}

type HashJob = Box<dyn FnOnce() + Send>;

/// A few threads taking jobs from one bounded queue.
struct HashPool {
    jobs: std::sync::mpsc::SyncSender<HashJob>,
    /// One permit per place: running or queued. A job holds its permit
    /// until it has run, so `jobs` never refuses a job that has one.
    room: Arc<tokio::sync::Semaphore>,
    /// How long a job may wait for a permit.
    wait: std::time::Duration,
}

impl HashPool {
    /// Starts `threads` threads behind a queue of `bound`; they stop when
    /// the pool is dropped.
    fn start(threads: usize, bound: usize, wait: std::time::Duration) -> HashPool {
        // Room for every permit: a job gives its permit back just before
        // its thread takes the next job, so running ones count too.
        let (jobs, rx) = std::sync::mpsc::sync_channel::<HashJob>(threads + bound);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut started = 0;
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "cannot start an argon2 thread"),
            }
        }
        HashPool {
            jobs,
            room: Arc::new(tokio::sync::Semaphore::new(started + bound)),
            wait,
        }
    }

    /// Runs `f` on a pool thread.
    ///
    /// # Errors
    /// [`PasswordError::Busy`] when no room was free within the pool's
    /// wait; [`PasswordError::NoThread`].
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = tokio::time::timeout(self.wait, Arc::clone(&self.room).acquire_owned())
            .await
            .map_err(|_| PasswordError::Busy)?
            .map_err(|_| PasswordError::NoThread)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let _ = tx.send(f());
            drop(permit);
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            // Cannot happen while permits match places; refuse, never block.
            Err(std::sync::mpsc::TrySendError::Full(_)) => return Err(PasswordError::Busy),
            // No thread runs: the job is dropped and `rx` reports it.
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {}
        }
        rx.await.map_err(|_| PasswordError::NoThread)
    }
}

/// Runs `f` on one of the [`hash_threads`] argon2 threads, started on first
/// use, behind a queue of [`queue_bound`].
///
/// # Errors
/// See [`HashPool::run`].
async fn on_hash_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PasswordError> {
    static POOL: OnceLock<HashPool> = OnceLock::new();
    POOL.get_or_init(|| HashPool::start(hash_threads(), queue_bound(), QUEUE_WAIT))
        .run(f)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_bounded() {
        assert_eq!(
            check_password("").unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert!(check_password(&"x".repeat(MAX_PASSWORD_BYTES)).is_ok());
        let err = check_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
    }

    #[tokio::test]
    async fn hashing_and_verifying() {
        let hash = hash_password("s3cret".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("s3cret".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!verify_password("wrong".into(), Some(hash)).await.unwrap());
        assert!(!verify_password("s3cret".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn an_unreadable_stored_hash_never_matches() {
        assert!(
            !verify_password("x".into(), Some("not a phc string".into()))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_full_pool_refuses_after_a_short_wait() {
        let wait = std::time::Duration::from_millis(100);
        let pool = Arc::new(HashPool::start(1, 2, wait));
        // Hold the one thread until told, then fill the queue.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let busy = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    let _ = held.recv();
                })
                .await
            }
        });
        started.await.unwrap();
        let queued: Vec<_> = (0..2)
            .map(|i| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.run(move || i).await })
            })
            .collect();
        // Single-threaded runtime: one yield lets both spawned tasks take
        // their places.
        tokio::task::yield_now().await;
        let t0 = std::time::Instant::now();
        assert!(matches!(pool.run(|| ()).await, Err(PasswordError::Busy)));
        assert!(t0.elapsed() >= wait, "it waited for room first");
        // Room that frees up within the wait is taken.
        let waiting = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.run(|| 7).await }
        });
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        for (i, q) in queued.into_iter().enumerate() {
            assert_eq!(q.await.unwrap().unwrap(), i);
        }
        assert_eq!(waiting.await.unwrap().unwrap(), 7);
    }
}
