//! The TCP listener other daemons connect to for pieces.
//!
//! Owns the accept loop on `--listen`; its bound port is part of the
//! advertised address. The piece protocol itself belongs to the swarm
//! engine: [`serve_peer`] is the seam where it plugs in.

use crate::daemon::Daemon;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Accept peer connections until `shutdown`; one task per connection.
pub async fn run(listener: TcpListener, daemon: Arc<Daemon>, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accepting a peer connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let daemon = daemon.clone();
        let shutdown = shutdown.clone();
        daemon.clone().tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = serve_peer(stream, daemon) => {}
            }
            tracing::debug!(%peer, "peer connection closed");
        });
    }
}

/// Serve one peer connection (see [`crate::swarm::seeder`]), at most
/// [`crate::downloads::MAX_PEER_CONNECTIONS`] at a time.
pub async fn serve_peer(stream: TcpStream, daemon: Arc<Daemon>) {
    let peer = stream.peer_addr().ok();
    let Ok(_permit) = daemon.downloads.peer_slots.clone().try_acquire_owned() else {
        tracing::warn!(?peer, "too many peer connections; refusing one");
        return;
    };
    if let Err(e) = crate::swarm::seeder::serve(stream, daemon).await {
        tracing::debug!(?peer, "peer connection: {e}");
    }
}
