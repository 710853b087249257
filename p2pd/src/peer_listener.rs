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

/// Serve one peer connection.
// TODO(swarm): the piece protocol (proto::peer) replaces this; for now the
// connection is closed at once.
pub async fn serve_peer(stream: TcpStream, _daemon: Arc<Daemon>) {
    drop(stream);
}
