//! Work that must not compete with the write path for CPU: run on a thread
//! of its own at the lowest scheduling priority (nice 19), its result
//! awaited like a task's.
//!
//! A thread per job rather than tokio's blocking pool: a thread's nice
//! value cannot be raised back without privileges, so a pooled thread once
//! lowered would stay slow for whatever blocking work it runs next. The
//! jobs are rare (a snapshot every few thousand entries).

use tokio::sync::oneshot;

/// The job could not be run, or it panicked.
#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    #[error("cannot start a background thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the background job {0} panicked")]
    Panicked(&'static str),
}

/// Runs `job` on a new thread named `name` at nice 19 and waits for it.
///
/// # Errors
/// The thread cannot be started, or `job` panicked.
pub async fn run_low_priority<T, F>(name: &'static str, job: F) -> Result<T, BackgroundError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower_own_priority();
            let _ = tx.send(job());
        })
        .map_err(BackgroundError::Spawn)?;
    rx.await.map_err(|_| BackgroundError::Panicked(name))
}

/// Lowers the calling thread's priority to the least. On Linux the nice
/// value belongs to the thread, and `setpriority(PRIO_PROCESS, 0, ..)`
/// names the calling one; elsewhere it would lower the whole process, so
/// it is not done. Failing is harmless: the job just runs at normal
/// priority.
fn lower_own_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, 19) {
        tracing::debug!(error = %e, "cannot lower a background thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_the_job_at_the_lowest_priority_and_leaves_the_caller_alone() {
        let before = rustix::process::getpriority_process(None).unwrap();
        let seen = run_low_priority("test-job", || {
            rustix::process::getpriority_process(None).unwrap()
        })
        .await
        .unwrap();
        #[cfg(target_os = "linux")]
        assert_eq!(seen, 19);
        let _ = seen;
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), before);
        let err = run_low_priority("test-panic", || -> u8 { panic!("boom") })
            .await
            .unwrap_err();
        assert!(matches!(err, BackgroundError::Panicked("test-panic")));
    }
}
