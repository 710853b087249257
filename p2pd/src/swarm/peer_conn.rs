//! One outgoing connection of a download: we connect, we download.
//!
//! The task owns its link: TLS over TCP, our link key on our side (the
//! seeder checks our ticket names it), and on the other side the key the
//! tracker vouches for: a peer that proves another key is not sent our
//! handshake (nor its ticket), and the connection ends. After the handshake it runs a reader future
//! (frames → [`PeerEvent`]s on the download's channel, the download rate
//! limit applied per block) and a writer future (the download's [`Out`]
//! messages → frames, batched; keep-alives when idle) under `select!`;
//! whichever ends first ends the connection. Its last event is always
//! [`PeerEvent::Closed`], unless the download itself has gone away.

use super::pieces::PeerId;
use super::pool::BufPool;
use super::rate::RateLimiter;
use super::wire::{
    read_payload, read_payload_into, with_timeout, write_bytes, write_msg, ConnError,
    CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, KEEPALIVE_INTERVAL,
};
use p2p_link::{Endpoint, LinkReader, LinkWriter, PublicKey};
use proto::peer::{decode, encode_frame, BlockRef, Handshake, Message, PIECE_DATA_START};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the download tells a connection to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Request(BlockRef),
    Cancel(BlockRef),
    /// A fresh ticket, so the seeder goes on serving.
    Ticket(Arc<str>),
    /// We verified this piece (a steering seeder shows us another).
    Have(u32),
}

/// What a connection reports to its download.
#[derive(Debug)]
pub enum PeerEvent {
    /// Handshake accepted; the peer's bitfield bytes (not yet validated).
    Ready(Vec<u8>),
    Have(u32),
    /// A `Piece` message: the whole payload, data at
    /// [`PIECE_DATA_START`] (moved, never copied).
    Block {
        piece: u32,
        offset: u32,
        payload: Vec<u8>,
    },
    Reject(BlockRef),
    /// The others fetching the same file from this peer.
    Fetchers(Vec<proto::UserId>),
    Closed(ConnError),
}

/// An event tagged with who sent it. `conn` tells a stale connection's
/// late events from the current one's.
#[derive(Debug)]
pub struct PeerMsg {
    pub peer: PeerId,
    pub conn: u64,
    pub event: PeerEvent,
}

/// Everything one connection needs.
pub struct Dial {
    pub addr: SocketAddr,
    /// The link key the tracker says the peer proved to it.
    pub key: PublicKey,
    /// Our link key, presented to the seeder.
    pub endpoint: Endpoint,
    pub handshake: Handshake,
    pub peer: PeerId,
    pub conn: u64,
    pub events: mpsc::Sender<PeerMsg>,
    pub out: mpsc::UnboundedReceiver<Out>,
    pub limiter: RateLimiter,
    pub stop: CancellationToken,
    /// Where block buffers come from (and go back to, after the piece is
    /// written).
    pub pool: Arc<BufPool>,
}

/// Run one connection to its end; reports [`PeerEvent::Closed`] last.
pub async fn run(dial: Dial) {
    let Dial {
        addr,
        key,
        endpoint,
        handshake,
        peer,
        conn,
        events,
        out,
        limiter,
        stop,
        pool,
    } = dial;
    let end = tokio::select! {
        _ = stop.cancelled() => return,
        r = session((addr, key, &endpoint), handshake, peer, conn, &events, out, Intake { limiter: &limiter, pool: &pool }) => match r {
            Ok(()) => return, // the download dropped our channel: it is done with us
            Err(e) => e,
        },
    };
    tracing::debug!(%addr, "peer connection ended: {end}");
    let _ = events
        .send(PeerMsg {
            peer,
            conn,
            event: PeerEvent::Closed(end),
        })
        .await;
}

/// How received blocks come in: through the download rate limit, into
/// recycled buffers.
struct Intake<'a> {
    limiter: &'a RateLimiter,
    pool: &'a BufPool,
}

async fn session(
    to: (SocketAddr, PublicKey, &Endpoint),
    handshake: Handshake,
    peer: PeerId,
    conn: u64,
    events: &mpsc::Sender<PeerMsg>,
    out: mpsc::UnboundedReceiver<Out>,
    intake: Intake<'_>,
) -> Result<(), ConnError> {
    let (mut rd, mut wr, bits) = open(to, handshake).await?;
    let tx = Events { peer, conn, events };
    if tx.send(PeerEvent::Ready(bits)).await.is_err() {
        return Ok(());
    }
    tokio::select! {
        r = read_messages(&mut rd, &tx, intake) => r,
        r = write_messages(&mut wr, out) => r,
    }
}

/// Connects, checks the peer's key, sends the handshake, and reads its
/// answer and the peer's bitfield (bytes not validated yet).
async fn open(
    (addr, key, endpoint): (SocketAddr, PublicKey, &Endpoint),
    handshake: Handshake,
) -> Result<(LinkReader, LinkWriter, Vec<u8>), ConnError> {
    let stream = with_timeout("connecting", CONNECT_TIMEOUT, async {
        TcpStream::connect(addr)
            .await
            .map_err(|source| ConnError::Io {
                step: "connecting",
                source,
            })
    })
    .await?;
    let _ = stream.set_nodelay(true);
    let secured = endpoint
        .connect(stream)
        .await
        .map_err(|e| ConnError::Protocol(format!("securing the link: {e}")))?;
    if secured.peer != key {
        return Err(ConnError::Protocol(format!(
            "the peer at {addr} proved link key {}, not the one the tracker vouches for",
            secured.peer
        )));
    }
    let (mut rd, mut wr) = p2p_link::tls::split(secured.link);
    let mut buf = Vec::with_capacity(256);
    let hello = Message::Handshake(handshake);
    write_msg(&mut wr, &hello, &mut buf, "sending the handshake").await?;
    let step = "reading the handshake answer";
    let p = read_payload(&mut rd, step, HANDSHAKE_TIMEOUT).await?;
    match decode(&p).map_err(|source| ConnError::Decode { step, source })? {
        Message::HandshakeOk => {}
        Message::HandshakeReject(e) => return Err(ConnError::Rejected(e)),
        _ => return Err(ConnError::Unexpected(step)),
    }
    let step = "reading the bitfield";
    let p = read_payload(&mut rd, step, HANDSHAKE_TIMEOUT).await?;
    match decode(&p).map_err(|source| ConnError::Decode { step, source })? {
        Message::Bitfield(b) => Ok((rd, wr, b.to_vec())),
        _ => Err(ConnError::Unexpected(step)),
    }
}

/// Where a connection's events go, tagged with who sent them.
struct Events<'a> {
    peer: PeerId,
    conn: u64,
    events: &'a mpsc::Sender<PeerMsg>,
}

impl Events<'_> {
    /// `Err` once the download is gone.
    async fn send(&self, event: PeerEvent) -> Result<(), ()> {
        let msg = PeerMsg {
            peer: self.peer,
            conn: self.conn,
            event,
        };
        self.events.send(msg).await.map_err(|_| ())
    }
}

/// Frames from the peer → events for the download; blocks through the
/// download rate limit, into recycled buffers. `Ok` once the download is
/// gone.
async fn read_messages(
    rd: &mut LinkReader,
    tx: &Events<'_>,
    intake: Intake<'_>,
) -> Result<(), ConnError> {
    let Intake { limiter, pool } = intake;
    let step = "reading from the peer";
    loop {
        let mut p = pool.get();
        read_payload_into(rd, &mut p, step, IDLE_TIMEOUT).await?;
        let event = match decode(&p).map_err(|source| ConnError::Decode { step, source })? {
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                let len = data.len() as u64;
                limiter.acquire(len).await;
                debug_assert_eq!(p.len() - PIECE_DATA_START, len as usize);
                PeerEvent::Block {
                    piece,
                    offset,
                    payload: p,
                }
            }
            Message::Have(i) => {
                pool.put(p);
                PeerEvent::Have(i)
            }
            Message::Reject(b) => {
                pool.put(p);
                PeerEvent::Reject(b)
            }
            Message::Fetchers(users) => {
                pool.put(p);
                PeerEvent::Fetchers(users)
            }
            Message::KeepAlive => {
                pool.put(p);
                continue;
            }
            _ => return Err(ConnError::Unexpected(step)),
        };
        if tx.send(event).await.is_err() {
            return Ok(());
        }
    }
}

/// The download's messages → frames, what is queued batched into one
/// write; keep-alives when idle. `Ok` once the download is done with us.
async fn write_messages(
    wr: &mut LinkWriter,
    mut out: mpsc::UnboundedReceiver<Out>,
) -> Result<(), ConnError> {
    let step = "writing to the peer";
    let mut buf = Vec::with_capacity(256);
    let mut batch = Vec::with_capacity(1024);
    loop {
        let first = tokio::select! {
            m = out.recv() => m,
            _ = tokio::time::sleep(KEEPALIVE_INTERVAL) => {
                write_msg(wr, &Message::KeepAlive, &mut buf, step).await?;
                continue;
            }
        };
        let Some(first) = first else {
            return Ok(());
        };
        batch.clear();
        let mut next = Some(first);
        while let Some(m) = next {
            let msg = match &m {
                Out::Request(b) => Message::Request(*b),
                Out::Cancel(b) => Message::Cancel(*b),
                Out::Ticket(t) => Message::Ticket(t),
                Out::Have(p) => Message::Have(*p),
            };
            encode_frame(&msg, &mut batch).map_err(|source| ConnError::Decode { step, source })?;
            next = if batch.len() < 64 * 1024 {
                out.try_recv().ok()
            } else {
                None
            };
        }
        write_bytes(wr, &batch, step).await?;
    }
}
