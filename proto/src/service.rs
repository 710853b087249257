//! What the two long-running programs (`tracker`, `p2pd`) share beyond the
//! wire: logging set-up, the two-stage stop on signals, the accept loop,
//! and durable state-file writes. Behind the `service` feature, so p2pctl
//! does not link any of it.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Pause after a failed `accept` (usually out of file descriptors), so the
/// loop backs off instead of spinning while the connections it has go on.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The crates of this workspace (as tracing targets): they log at the level
/// asked for; everything else (openraft, redb, rustls, ...) only at `warn`,
/// since their `info` is internals (openraft logged 17 lines of up to
/// 1,652 characters at each tracker start).
const OUR_CRATES: &[&str] = &["tracker", "p2pd", "p2pctl", "proto", "p2p_link", "p2p_sha1"];

/// The filter used when `RUST_LOG` is unset: `warn` for dependencies and
/// `ours` (e.g. `info`) for [`OUR_CRATES`].
pub fn default_filter(ours: &str) -> String {
    // openraft's replication logs every failed retry to a lost peer (8
    // lines a second, warn and error); the tracker's network layer says it
    // once per outage instead (tracker::raft::network).
    let mut filter = String::from(
        "warn,openraft::replication=off,openraft::engine::handler::replication_handler=off",
    );
    for c in OUR_CRATES {
        filter.push_str(&format!(",{c}={ours}"));
    }
    filter
}

/// Logs to stderr, filtered by `RUST_LOG` or else [`default_filter`]`(ours)`.
/// Under journald (see [`stderr_is_journal`]) each line starts with its
/// syslog priority (`<4>` for a warning, sd-daemon(3)) so `journalctl -p
/// warning` filters, and has no timestamp (the journal adds its own) and
/// no colour. Elsewhere: the usual format, coloured only on a terminal.
pub fn init_logging(ours: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter(ours)));
    let journal = stderr_is_journal();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if journal {
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_ansi(false)
            .with_level(false);
        builder
            .with_ansi(false)
            .event_format(PriorityPrefix(format))
            .init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM` to
/// `DEV:INODE` of the stream it connects; stderr redirected elsewhere by a
/// child's own shell (`2>log`) no longer matches (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    journal_stream_matches(&var.to_string_lossy(), stat.st_dev, stat.st_ino)
}

/// `JOURNAL_STREAM` (`DEV:INODE`, decimal) names this device and inode.
fn journal_stream_matches(var: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

/// The syslog priority journald reads from a `<N>` line prefix.
fn syslog_priority(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

/// Writes `<N>` before what the inner format writes.
struct PriorityPrefix<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for PriorityPrefix<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Tells systemd (`Type=notify`) the service is ready: its sockets are
/// bound. Without `NOTIFY_SOCKET` (not under systemd) it does nothing.
pub fn notify_ready() {
    notify(sd_notify::NotifyState::Ready);
}

/// Tells systemd a graceful stop has begun; nothing outside systemd.
pub fn notify_stopping() {
    notify(sd_notify::NotifyState::Stopping);
}

fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!("cannot notify systemd through $NOTIFY_SOCKET: {e}");
    }
}

/// The first SIGTERM or SIGINT cancels `stop` (a graceful stop, announced
/// to systemd); a second one exits at once with status 130. SIGHUP, which
/// would kill the process by default (a closed terminal, `systemctl
/// reload`), is logged and ignored: there is nothing to reload.
///
/// # Errors
/// A handler cannot be installed.
pub fn stop_on_signals(stop: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP ignored: nothing to reload; restart to apply a changed config");
        }
    });
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("signal received; stopping (send another to exit at once)");
        notify_stopping();
        stop.cancel();
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::error!("second signal; exiting without a clean stop");
        std::process::exit(130);
    });
    Ok(())
}

/// Accepts connections until `shutdown` is cancelled and runs `serve(conn)`
/// for each as its own task on `tasks`. `serve`'s future owns the
/// connection and decides how it reacts to the stop. A failed accept
/// (usually out of file descriptors) is retried after a short pause and
/// logged, naming `what`, at most once per [`crate::admission::LOG_EVERY`]
/// with a count: a flood must not fill the log.
pub async fn accept_loop<C, A, AF, S, SF>(
    what: &'static str,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
    mut accept: A,
    mut serve: S,
) where
    A: FnMut() -> AF,
    AF: Future<Output = std::io::Result<C>>,
    S: FnMut(C) -> SF,
    SF: Future<Output = ()> + Send + 'static,
{
    let failures = crate::admission::Throttled::new(crate::admission::LOG_EVERY);
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = accept() => r,
        };
        match conn {
            Ok(c) => {
                tasks.spawn(serve(c));
            }
            Err(e) => {
                if let Some(count) = failures.note() {
                    tracing::warn!("accepting a {what} connection failed ({count} time(s) since the last report): {e}");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the
/// new content, never a torn file: a tmp file `NAME.tmp` beside it (with
/// exactly `mode`), fsync, rename, fsync of the directory (which makes the
/// rename itself durable).
///
/// Never writes through a symlink and never changes the mode of a file it
/// did not create: the tmp file is created exclusively (`O_CREAT|O_EXCL`,
/// plus `O_NOFOLLOW`). Whatever already sits at the tmp path (a tmp left by
/// a crash, or a symlink planted there) is unlinked (which removes a link
/// itself, not its target) and the exclusive create is tried once more.
/// `rename` replaces a symlink at `path` itself too. Writers in this process
/// take turns, so one never unlinks the tmp file of another.
///
/// # Errors
/// Any I/O failure, `AlreadyExists` if the tmp path is taken again between
/// the unlink and the retry; the tmp file is removed then.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_with(path, mode, |f| f.write_all(bytes))
}

/// [`write_atomic`] of what `body` writes, so that a large content can be
/// streamed into the file rather than built in memory first.
///
/// # Errors
/// As [`write_atomic`], and `body`'s.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    body: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    static WRITERS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = WRITERS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut f = match create_exclusive(&tmp, mode) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp)?;
            create_exclusive(&tmp, mode)?
        }
        other => other?,
    };
    let res = (|| {
        // The umask may have taken bits off `mode`; this is our own new
        // file (fchmod on the descriptor, no path lookup).
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        body(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Creates `path` with `mode`, failing if anything (a symlink included)
/// already exists there.
fn create_exclusive(path: &Path, mode: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(path)
}

/// Removes a state file durably (the directory is synced); absent is fine.
///
/// # Errors
/// Any I/O failure other than the file being absent.
pub fn remove_durably(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn dependencies_log_warnings_only_by_default() {
        let f = default_filter("info");
        assert!(f.starts_with("warn,"), "{f}");
        assert!(f.contains("openraft::replication=off"), "{f}");
        for c in ["tracker=info", "p2pd=info", "proto=info", "p2p_link=info"] {
            assert!(f.split(',').any(|d| d == c), "{c} in {f}");
        }
        tracing_subscriber::EnvFilter::try_new(&f).unwrap();
    }

    #[test]
    fn journal_stream_is_matched_by_device_and_inode() {
        assert!(journal_stream_matches("8:1234", 8, 1234));
        assert!(!journal_stream_matches("8:1235", 8, 1234));
        assert!(!journal_stream_matches("9:1234", 8, 1234));
        assert!(!journal_stream_matches("", 8, 1234));
        assert!(!journal_stream_matches("garbage", 8, 1234));
    }

    #[test]
    fn priorities_are_syslogs() {
        assert_eq!(syslog_priority(&tracing::Level::ERROR), 3);
        assert_eq!(syslog_priority(&tracing::Level::WARN), 4);
        assert_eq!(syslog_priority(&tracing::Level::INFO), 6);
        assert_eq!(syslog_priority(&tracing::Level::DEBUG), 7);
        assert_eq!(syslog_priority(&tracing::Level::TRACE), 7);
    }

    #[test]
    fn atomic_write_replaces_content_with_mode() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!t.path().join("s.json.tmp").exists());
        remove_durably(&p).unwrap();
        remove_durably(&p).unwrap();
        assert!(!p.exists());
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn atomic_write_never_follows_a_symlink_planted_at_the_tmp_path() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = t.path().join("s.json");
        std::os::unix::fs::symlink(&victim, t.path().join("s.json.tmp")).unwrap();
        write_atomic(&p, b"state", 0o600).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(mode_of(&victim), 0o644, "the victim's mode is untouched");
        assert_eq!(std::fs::read(&p).unwrap(), b"state");
        assert!(!std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(mode_of(&p), 0o600);
        assert!(std::fs::symlink_metadata(t.path().join("s.json.tmp")).is_err());

        // A dangling link (to a file it would create) is not followed either.
        let absent = t.path().join("absent");
        std::os::unix::fs::symlink(&absent, t.path().join("s.json.tmp")).unwrap();
        write_atomic(&p, b"again", 0o600).unwrap();
        assert!(!absent.exists());
        assert_eq!(std::fs::read(&p).unwrap(), b"again");
    }

    #[test]
    fn atomic_write_replaces_a_symlink_at_the_path_itself() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let p = t.path().join("s.json");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_atomic(&p, b"state", 0o600).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&p).unwrap(), b"state");
    }

    #[test]
    fn atomic_write_replaces_a_stale_tmp_with_the_requested_mode() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.json");
        let tmp = t.path().join("s.json.tmp");
        std::fs::write(&tmp, b"half a write from before a crash, and longer").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(mode_of(&p), 0o600, "not the stale file's 0666");
        assert!(!tmp.exists());
        // The mode is the one asked for, whatever the umask took off.
        let q = t.path().join("public.txt");
        write_atomic(&q, b"x", 0o644).unwrap();
        assert_eq!(mode_of(&q), 0o644);
    }

    #[test]
    fn atomic_write_leaves_a_directory_at_the_tmp_path_alone() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.json");
        std::fs::create_dir(t.path().join("s.json.tmp")).unwrap();
        std::fs::write(t.path().join("s.json.tmp").join("inside"), b"kept").unwrap();
        assert!(write_atomic(&p, b"x", 0o600).is_err());
        assert!(!p.exists());
        assert_eq!(
            std::fs::read(t.path().join("s.json.tmp").join("inside")).unwrap(),
            b"kept"
        );
    }

    #[tokio::test]
    async fn accept_loop_serves_each_connection_and_stops() {
        let listener = Arc::new(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        let looping = {
            let (stop, tasks, served) = (stop.clone(), tasks.clone(), served.clone());
            tokio::spawn(async move {
                accept_loop(
                    "test",
                    &stop,
                    &tasks,
                    || {
                        let l = listener.clone();
                        async move { l.accept().await }
                    },
                    |_conn| {
                        let served = served.clone();
                        async move {
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                    },
                )
                .await
            })
        };
        for _ in 0..3 {
            let _c = tokio::net::TcpStream::connect(addr).await.unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while served.load(Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "not served");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), looping)
            .await
            .unwrap()
            .unwrap();
        tasks.close();
        tasks.wait().await;
    }
}
