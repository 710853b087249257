//! The TCP listener other daemons connect to for pieces.
//!
//! Owns the accept loop on `--listen` (its bound port is part of the
//! advertised address) and the cap on connections served at once; the
//! piece protocol itself is the swarm engine's ([`crate::swarm::seeder`]).

use crate::swarm::context::SwarmContext;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Incoming peer connections served at once; more are closed at once.
pub const MAX_PEER_CONNECTIONS: usize = 64;

/// Accepts peer connections until `shutdown`; one task per connection.
pub async fn run(listener: TcpListener, ctx: Arc<SwarmContext>, shutdown: CancellationToken) {
    let listener = Arc::new(listener);
    let slots = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
    let tasks = ctx.tasks.clone();
    proto::service::accept_loop(
        "peer",
        &shutdown,
        &tasks,
        || {
            let l = listener.clone();
            async move { l.accept().await }
        },
        |(stream, peer)| {
            let (ctx, slots, stop) = (ctx.clone(), slots.clone(), shutdown.clone());
            async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = serve_peer(stream, ctx, &slots) => {}
                }
                tracing::debug!(%peer, "peer connection closed");
            }
        },
    )
    .await;
}

/// Serves one peer connection, if a slot is free.
async fn serve_peer(stream: TcpStream, ctx: Arc<SwarmContext>, slots: &Arc<Semaphore>) {
    let peer = stream.peer_addr().ok();
    let Ok(_permit) = slots.clone().try_acquire_owned() else {
        tracing::warn!(?peer, "too many peer connections; refusing one");
        return;
    };
    if let Err(e) = crate::swarm::seeder::serve(stream, ctx).await {
        tracing::debug!(?peer, "peer connection: {e}");
    }
}
