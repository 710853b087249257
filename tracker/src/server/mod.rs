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
use connection::Connection;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// This tracker's number (1-based line of tracker_info.txt), sent in
    /// `Welcome`.
    pub node: u32,
    /// How long a graceful stop may take before [`run`] gives up.
    pub shutdown_deadline: Duration,
    /// The limits new writes are held to.
    pub caps: Caps,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            node: 1,
            shutdown_deadline: Duration::from_secs(5),
            caps: Caps::default(),
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
    });
    // Stops the accept loop and, through child tokens, every reader.
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    passwords::warm_up();

    let accepting = proto::service::accept_loop(
        "tracker",
        &stop,
        &tasks,
        || listener.accept(),
        |(socket, peer)| {
            let conn =
                Connection::new(Arc::clone(&shared), peer, stop.child_token(), tasks.clone());
            conn.serve(socket)
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
