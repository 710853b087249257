//! The TCP listener other daemons connect to for pieces.
//!
//! Owns the accept loop on `--listen` (its bound port is part of the
//! advertised address) and the caps on who holds a connection: at most
//! [`MAX_OPENING`] connections (and [`MAX_OPENING_PER_SOURCE`] from one
//! address) may be securing the link and showing a handshake, each for at
//! most [`seeder::OPENING_DEADLINE`]. One more from an address at its cap
//! is closed as soon as it is accepted; one more beyond the total takes
//! the place of the oldest, so strangers holding handshakes open cannot
//! keep a downloader out. Only a peer whose ticket checked out takes one of the
//! [`MAX_PEER_CONNECTIONS`] serving places, so idle or handshaking
//! strangers cannot keep the daemon from serving its group. The piece
//! protocol itself is the swarm engine's ([`crate::swarm::seeder`]).

use crate::swarm::context::SwarmContext;
use crate::swarm::seeder;
use proto::admission::Admission;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Peers served at once (admitted: their ticket checked out); one more is
/// refused as unavailable.
pub const MAX_PEER_CONNECTIONS: usize = 64;
/// Connections at once that have not been admitted yet.
pub const MAX_OPENING: usize = 32;
/// Of those, from one address.
pub const MAX_OPENING_PER_SOURCE: usize = 8;

/// Accepts peer connections until `shutdown`; one task per connection.
pub async fn run(listener: TcpListener, ctx: Arc<SwarmContext>, shutdown: CancellationToken) {
    let listener = Arc::new(listener);
    let slots = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
    let opening = Admission::evicting_oldest(
        "peer (not yet admitted)",
        MAX_OPENING,
        MAX_OPENING_PER_SOURCE,
    );
    let tasks = ctx.tasks.clone();
    proto::service::accept_loop(
        "peer",
        &shutdown,
        &tasks,
        || {
            let l = listener.clone();
            async move { l.accept().await }
        },
        |(stream, peer): (TcpStream, SocketAddr)| {
            // Over a cap, the stream is dropped (closed) right here.
            let place = opening.admit(peer.ip());
            let (ctx, slots, stop) = (ctx.clone(), slots.clone(), shutdown.clone());
            async move {
                let Ok(place) = place else { return };
                let evicted = place.eviction();
                let take_slot = || slots.try_acquire_owned().ok();
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = evicted.cancelled() => {
                        tracing::debug!(%peer, "a newer connection took this one's place in the handshake");
                    }
                    r = seeder::serve(stream, ctx, place, take_slot) => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, "peer connection: {e}");
                        }
                    }
                }
                tracing::debug!(%peer, "peer connection closed");
            }
        },
    )
    .await;
}
