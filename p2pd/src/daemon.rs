//! The shared state of a running daemon and its start-up/shut-down sequence.
//!
//! [`Daemon`] is held as `Arc<Daemon>` by every task. Its std mutexes guard
//! small maps and are never held across `.await`.
//!
//! Start: open and lock HOME → load session and shares → bind the peer
//! listener (its port is advertised) → start the tracker link → bind the
//! control socket → serve until the shutdown token is cancelled → stop
//! every task within [`SHUTDOWN_DEADLINE`].

use crate::home::{Home, HomeError, SocketGuard};
use crate::options::Options;
use crate::session::{Session, SessionStore};
use crate::shares::{ShareSet, SharesError};
use crate::tracker_link::TrackerLink;
use proto::tracker::SessionToken;
use proto::{ErrorCode, WireError};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a graceful stop may take before the process gives up on it.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Shares(#[from] SharesError),
    #[error("cannot bind the peer listener on {addr}: {source}")]
    BindPeer {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create the control socket {path}: {source}")]
    BindControl {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("some tasks were still running {0:?} after the stop began")]
    StopTimedOut(Duration),
}

/// Everything the daemon's tasks share.
pub struct Daemon {
    pub options: Options,
    pub home: Home,
    pub tracker: TrackerLink,
    pub session: SessionStore,
    pub shares: ShareSet,
    /// Piece bytes served to peers since start; the seeder adds to it.
    pub uploaded: Arc<AtomicU64>,
    /// The peer listener's bound address.
    pub peer_local: SocketAddr,
    /// Cancelled when the daemon stops; subsystems take child tokens.
    pub shutdown: CancellationToken,
    /// Every background task, so the stop can wait for them.
    pub tasks: TaskTracker,
    /// Serialises login and logout, so "already logged in" is decided
    /// against a settled state.
    pub(crate) login_gate: tokio::sync::Mutex<()>,
    /// Serialises session resumes (see `session::resume`).
    pub(crate) resume_gate: tokio::sync::Mutex<()>,
    resumed: Mutex<Option<(u64, SessionToken)>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("home", &self.home.dir())
            .field("peer_local", &self.peer_local)
            .finish()
    }
}

impl Daemon {
    /// The address announced to the tracker: `--advertise`, else the local
    /// IP of the tracker connection with the listener's port. `None` when
    /// neither is known (not connected).
    pub fn advertised_addr(&self) -> Option<SocketAddr> {
        self.options.advertise.or_else(|| {
            self.tracker
                .local_ip()
                .map(|ip| SocketAddr::new(ip, self.peer_local.port()))
        })
    }

    /// The current session, or the `not_logged_in` refusal.
    ///
    /// # Errors
    /// `not_logged_in` when nobody is logged in on this daemon.
    pub fn require_session(&self) -> Result<Session, WireError> {
        self.session.current().ok_or_else(|| {
            WireError::new(
                ErrorCode::NotLoggedIn,
                "not logged in; run p2pctl login USER",
            )
        })
    }

    pub(crate) fn resumed_key(&self) -> Option<(u64, SessionToken)> {
        self.resumed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_resumed_key(&self, key: Option<(u64, SessionToken)>) {
        *self.resumed.lock().unwrap_or_else(|p| p.into_inner()) = key;
    }
}

/// Run the daemon until `shutdown` is cancelled.
///
/// # Errors
/// Start-up failures (home locked or unusable, a port or socket that cannot
/// be bound), or a stop that overran [`SHUTDOWN_DEADLINE`].
pub async fn run(options: Options, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let home = Home::open(&options.home)?;
    tracing::info!(home = %home.dir().display(), "home locked");
    let tasks = TaskTracker::new();

    let peer_listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| DaemonError::BindPeer {
            addr: options.listen,
            source,
        })?;
    let peer_local = peer_listener
        .local_addr()
        .map_err(|source| DaemonError::BindPeer {
            addr: options.listen,
            source,
        })?;
    tracing::info!(addr = %peer_local, "peer listener bound");

    let tracker = TrackerLink::start(options.trackers.clone(), &tasks, shutdown.child_token());
    let session = SessionStore::load(home.session_path());
    let shares = ShareSet::load(home.shares_path(), session.subscribe(), tracker.clone())?;

    let socket_path = home.socket_path();
    let ctl_listener =
        crate::ipc::bind(&socket_path).map_err(|source| DaemonError::BindControl {
            path: socket_path.clone(),
            source,
        })?;
    // Removes the socket file however this function ends from here on.
    let _socket_guard = SocketGuard(socket_path.clone());
    tracing::info!(socket = %socket_path.display(), "control socket ready");

    let daemon = Arc::new(Daemon {
        options,
        home,
        tracker,
        session,
        shares,
        uploaded: Arc::new(AtomicU64::new(0)),
        peer_local,
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
        login_gate: tokio::sync::Mutex::new(()),
        resume_gate: tokio::sync::Mutex::new(()),
        resumed: Mutex::new(None),
    });

    tasks.spawn(crate::session::run_heartbeat(daemon.clone()));
    tasks.spawn(crate::peer_listener::run(
        peer_listener,
        daemon.clone(),
        shutdown.child_token(),
    ));
    tasks.spawn(crate::ipc::run(
        ctl_listener,
        daemon.clone(),
        shutdown.child_token(),
    ));

    shutdown.cancelled().await;
    tracing::info!("stopping");
    tasks.close();
    let stopped = tokio::time::timeout(SHUTDOWN_DEADLINE, tasks.wait()).await;
    drop(daemon);
    match stopped {
        Ok(()) => {
            tracing::info!("stopped");
            Ok(())
        }
        Err(_) => Err(DaemonError::StopTimedOut(SHUTDOWN_DEADLINE)),
    }
}
