//! The tracker's network side for daemons (and the door for peer
//! trackers): the accept loop, one task per connection, one task per call.
//!
//! - `connection`: one connection: its reader (decodes calls, spawns one
//!   task per call) and its writer (answers in whatever order they finish);
//!   a peer tracker's connection is handed to the Raft side.
//! - `handler`: one call: a request becomes a read of the local replica or
//!   a [`Command`](crate::state::Command) submitted to the cluster.
//! - `throttle`: failed logins per (user, address) and per address, and
//!   each address's share of the argon2 threads.
//!
//! Passwords ([`crate::passwords`]), tokens ([`crate::tokens`]) and the
//! clock ([`crate::clock`]) live in files of their own.
//!
//! Limits (see `ARCHITECTURE.md`, "Hostile load"): at most
//! [`ServerOptions::max_connections`] connections, and
//! [`ServerOptions::max_connections_per_source`] from one address; more
//! are accepted and closed at once. Of those, at most half may be
//! *unproven* (no call has proved a session yet, no peer tracker has proved
//! the cluster key); a newcomer beyond that takes the oldest unproven
//! connection's place. So strangers from any number of addresses hold at
//! most half the places, and cannot keep out a daemon, which proves its
//! session within moments of connecting. A connection has 10 s for TLS and its
//! first frame; then a daemon's connection is closed after
//! [`ServerOptions::idle_timeout`] without a frame, and any frame must be
//! whole within 30 s (plus a second per 64 KiB) of its first byte.
//!
//! Shutdown: the trigger stops the accept loop and every reader; calls
//! already read run to completion (a write is answered once durable),
//! writers flush, and [`run`] waits for all of it up to
//! [`ServerOptions::shutdown_deadline`].

mod connection;
mod handler;
mod throttle;

use crate::passwords;
use crate::raft::Cluster;
use crate::state::Caps;
use connection::{Connection, Proof};
use proto::admission::{Admission, Throttled, LOG_EVERY};
use proto::frame::Pace;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A daemon heartbeats every 3 s, so a minute of silence is no daemon.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections from one address: a daemon holds one, so this leaves room
/// for many users behind one NAT, and none for one host's flood.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 64;
/// Connections in total when the open-files limit does not say less.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// This tracker's number (1-based line of tracker_info.txt), sent in
    /// `Welcome`.
    pub node: u32,
    /// How long a graceful stop may take before [`run`] gives up.
    pub shutdown_deadline: Duration,
    /// The limits new writes are held to.
    pub caps: Caps,
    /// A daemon's connection with no frame for this long is closed.
    pub idle_timeout: Duration,
    /// Connections held at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Connections held at once from one source address.
    pub max_connections_per_source: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            node: 1,
            shutdown_deadline: Duration::from_secs(5),
            caps: Caps::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("connections still busy {0:?} after the stop was requested")]
    ShutdownTimeout(Duration),
}

/// What every connection shares.
struct Shared {
    cluster: Arc<Cluster>,
    node: u32,
    /// This tracker's own login throttle (never replicated).
    throttle: std::sync::Mutex<throttle::LoginThrottle>,
    /// Signalled whenever a call gives back an address's hashing slot.
    slot_freed: tokio::sync::Notify,
    caps: Caps,
    /// How fast a daemon's frames must come.
    pace: Pace,
    /// Bytes of large frames being read (see
    /// [`connection::LARGE_FRAME_BUDGET_BYTES`]).
    large_frames: Arc<Semaphore>,
    /// Log lines about connections closed for a protocol violation.
    refusals: Throttled,
}

/// Serves tracker connections on `listener` until `shutdown` completes, then
/// stops gracefully.
///
/// # Errors
/// [`ServerError::ShutdownTimeout`] if connections are still busy after the
/// deadline (the caller should exit non-zero).
pub async fn run(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let shared = Arc::new(Shared {
        cluster,
        node: options.node,
        throttle: std::sync::Mutex::default(),
        slot_freed: tokio::sync::Notify::new(),
        caps: options.caps,
        pace: connection::pace(options.idle_timeout),
        large_frames: Arc::new(Semaphore::new(
            connection::LARGE_FRAME_BUDGET_BYTES as usize,
        )),
        refusals: Throttled::new(LOG_EVERY),
    });
    let admission = Admission::new(
        "tracker",
        options.max_connections,
        options.max_connections_per_source,
    );
    let unproven = Admission::evicting_oldest(
        "tracker (unproven)",
        (options.max_connections / 2).max(1),
        options.max_connections_per_source,
    );
    // Stops the accept loop and, through child tokens, every reader.
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    passwords::warm_up();

    let accepting = proto::service::accept_loop(
        "tracker",
        &stop,
        &tasks,
        || listener.accept(),
        |(socket, peer): (TcpStream, SocketAddr)| {
            // Over a cap, the socket is dropped (closed) right here.
            let place = admission.admit(peer.ip());
            let unproven = place.as_ref().ok().map(|_| unproven.admit(peer.ip()));
            let conn =
                Connection::new(Arc::clone(&shared), peer, stop.child_token(), tasks.clone());
            async move {
                let (Ok(_place), Some(Ok(unproven))) = (place, unproven) else {
                    return;
                };
                // Cancelled only while unproven: a proof gives the place back.
                let evicted = unproven.eviction();
                tokio::select! {
                    () = conn.serve(socket, Proof::new(unproven)) => {}
                    () = evicted.cancelled() => {
                        tracing::debug!(%peer, "closed an unproven connection to make room");
                    }
                }
            }
        },
    );
    tokio::join!(accepting, async {
        shutdown.await;
        stop.cancel();
    });

    tracing::info!("stopping: no new connections; finishing calls in flight");
    drop(listener);
    tasks.close();
    drop(shared);
    tokio::time::timeout(options.shutdown_deadline, tasks.wait())
        .await
        .map_err(|_| ServerError::ShutdownTimeout(options.shutdown_deadline))
}
