//! Tracker → tracker requests: openraft's `RaftNetwork` over TLS, and
//! one-shot requests (forwarded writes, presence batches, probes, session
//! checks). The serving side is in `serve.rs`.
//!
//! A peer connection is a TLS link on the target's ordinary address in
//! which both ends present the cluster identity (derived from the cluster
//! key): the [`Dialer`] goes on only if the target proved it holds it. Then
//! a [`PeerHello`] frame, and one [`PeerRequest`] and one [`PeerReply`]
//! alternate (framing from `proto::frame`, max [`MAX_PEER_FRAME_BYTES`]).
//!
//! - Raft RPCs: each openraft client (one per target and purpose) keeps one
//!   connection and reconnects on the next RPC after any error.
//! - Forwarded writes, presence, probes: one request per exchange, on an
//!   idle link kept from an earlier one ([`LinkPool`]) or a fresh one. A
//!   failure to connect, or to write the request whole, means "not sent"
//!   (safe to retry elsewhere); a failure after sending means "outcome
//!   unknown" (never retried, never reported as success).
//!
//! The messages are `proto::raft`'s, with this tracker's payloads:
//! [`RaftRpc`] / [`RaftRpcReply`] and [`Command`] / [`Response`]. A request
//! is encoded before anything is sent, so one that cannot be encoded is
//! [`PeerError::Encode`] (certainly not sent); a reply that cannot be
//! encoded is logged and answered as [`PeerReply::Failed`].
//!
//! Encoding: `proto::codec`'s binary one between trackers that both have
//! it, JSON otherwise, so a cluster can be upgraded one tracker at a time.
//! The hello says the dialer reads binary replies; a tracker that has the
//! binary encoding then answers in it, and the dialer sends its requests
//! to that address in binary from then on ([`PeerCodecs`]). Every frame is
//! decoded by its first byte, whichever it is.

use super::link_pool::LinkPool;
use super::{NodeId, Response, TypeConfig};
use crate::state::Command;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use p2p_link::{Endpoint, Link};
use proto::frame::{read_frame, write_frame, write_json};
use proto::raft::{PeerHello, PeerHelloBody, MAX_PEER_FRAME_BYTES};
use proto::PROTOCOL_VERSION;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// Connecting to a peer tracker gives up after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// openraft's RPCs between trackers, each in its own type.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaftRpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The outcome of each [`RaftRpc`], in the same variant.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaftRpcReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
}

/// A request between trackers, with this tracker's payloads.
pub type PeerRequest = proto::raft::PeerRequest<RaftRpc, Command>;
/// The same, as sent: a forwarded write is encoded from a borrow.
pub type OutgoingRequest<'a> = proto::raft::PeerRequest<RaftRpc, &'a Command>;
/// A reply between trackers, with this tracker's payloads.
pub type PeerReply = proto::raft::PeerReply<RaftRpcReply, Response>;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Nothing was sent: the request cannot be encoded (a bug; logged).
    #[error("cannot encode a request for tracker at {addr}: {reason}")]
    Encode { addr: SocketAddr, reason: String },
    /// Nothing was sent: the peer is down or unreachable.
    #[error("cannot connect to tracker at {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// The request may or may not have been received.
    #[error("tracker at {addr} did not answer: {reason}")]
    Lost { addr: SocketAddr, reason: String },
}

/// How this tracker opens links to its peers: as node `from`, presenting
/// the cluster identity.
#[derive(Clone, Debug)]
pub struct Dialer {
    pub from: NodeId,
    pub endpoint: Endpoint,
    pub codecs: PeerCodecs,
    /// Idle links for [`send_once`].
    pub pool: LinkPool,
}

/// The peer addresses known to read the binary encoding: their last reply
/// was binary. Unknown ones (never answered yet, or a tracker from before
/// the binary encoding) are sent JSON.
#[derive(Clone, Debug, Default)]
pub struct PeerCodecs(Arc<Mutex<BTreeSet<SocketAddr>>>);

impl PeerCodecs {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<SocketAddr>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether requests to `addr` go in the binary encoding.
    pub fn binary(&self, addr: SocketAddr) -> bool {
        self.lock().contains(&addr)
    }

    /// Records the encoding of `addr`'s latest reply.
    fn replied(&self, addr: SocketAddr, binary: bool) {
        let mut known = self.lock();
        let changed = match binary {
            true => known.insert(addr),
            false => known.remove(&addr),
        };
        if changed {
            let codec = if binary { "binary" } else { "JSON" };
            tracing::debug!(%addr, "tracker answers in {codec}; sending it {codec} from now on");
        }
    }
}

impl Dialer {
    /// Connects to `addr`, checks it holds the cluster key, and introduces
    /// this tracker as node `from`.
    async fn connect(&self, addr: SocketAddr) -> Result<Link, PeerError> {
        let fail = |reason: String| PeerError::Connect { addr, reason };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| fail("timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let secured = self
            .endpoint
            .connect(tcp)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if secured.peer != self.endpoint.key() {
            tracing::warn!(%addr, "a tracker address answered without the cluster key; not sending");
            return Err(fail("it does not hold the cluster key".into()));
        }
        let mut stream = secured.link;
        let hello = PeerHello {
            peer: PeerHelloBody {
                version: PROTOCOL_VERSION,
                from: self.from,
                binary: true,
            },
        };
        write_json(&mut stream, &hello, MAX_PEER_FRAME_BYTES)
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(stream)
    }
}

/// `request` as one frame's payload for `addr` (binary if it reads it),
/// before anything is sent.
fn encode<W: Serialize>(
    dialer: &Dialer,
    addr: SocketAddr,
    request: &proto::raft::PeerRequest<RaftRpc, W>,
) -> Result<Vec<u8>, PeerError> {
    let encoded = match dialer.codecs.binary(addr) {
        true => proto::codec::encode(request),
        false => proto::codec::encode_json(request),
    };
    encoded.map_err(|e| {
        tracing::error!(%addr, error = %e, "cannot encode a request to a peer tracker");
        PeerError::Encode {
            addr,
            reason: e.to_string(),
        }
    })
}

/// One request (already encoded), one reply, under `ttl`; notes the
/// reply's encoding in `codecs`.
async fn exchange(
    stream: &mut Link,
    codecs: &PeerCodecs,
    addr: SocketAddr,
    request: &[u8],
    ttl: Duration,
) -> Result<PeerReply, PeerError> {
    let deadline = tokio::time::Instant::now() + ttl;
    let lost = |reason: String| PeerError::Lost { addr, reason };
    send_request(stream, request, deadline)
        .await
        .map_err(lost)?;
    read_reply(stream, codecs, addr, deadline).await
}

/// Writes one request frame by `deadline`. An error means the frame did
/// not go out whole, so the peer cannot have acted on it.
async fn send_request(
    stream: &mut Link,
    request: &[u8],
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    match tokio::time::timeout_at(deadline, write_frame(stream, request, MAX_PEER_FRAME_BYTES))
        .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("could not send the request in time".into()),
    }
}

/// Reads the reply to the request just sent, by `deadline`.
async fn read_reply(
    stream: &mut Link,
    codecs: &PeerCodecs,
    addr: SocketAddr,
    deadline: tokio::time::Instant,
) -> Result<PeerReply, PeerError> {
    let lost = |reason: String| PeerError::Lost { addr, reason };
    let io = async {
        let reply = read_frame(stream, MAX_PEER_FRAME_BYTES)
            .await
            .map_err(|e| lost(e.to_string()))?
            .ok_or_else(|| lost("closed the connection".into()))?;
        let decoded = proto::codec::decode::<PeerReply>(&reply).map_err(|e| lost(e.to_string()))?;
        codecs.replied(addr, proto::codec::is_binary(&reply));
        Ok(decoded)
    };
    tokio::time::timeout_at(deadline, io)
        .await
        .map_err(|_| lost("no reply in time".into()))?
}

/// Sends `request` to `addr` on an idle link from the pool, or a fresh
/// one, and keeps the link for the next request once answered.
///
/// # Errors
/// [`PeerError::Encode`] or [`PeerError::Connect`] if nothing was sent,
/// [`PeerError::Lost`] if the outcome is unknown.
pub async fn send_once<W: Serialize>(
    dialer: &Dialer,
    addr: SocketAddr,
    request: &proto::raft::PeerRequest<RaftRpc, W>,
    ttl: Duration,
) -> Result<PeerReply, PeerError> {
    let request = encode(dialer, addr, request)?;
    let mut sent = None;
    if let Some(mut link) = dialer.pool.take(addr) {
        let deadline = tokio::time::Instant::now() + ttl;
        match send_request(&mut link, &request, deadline).await {
            Ok(()) => sent = Some((link, deadline)),
            // Not sent whole: try once more on a fresh link.
            Err(e) => tracing::debug!(%addr, error = %e, "an idle peer link broke; reconnecting"),
        }
    }
    let (mut link, deadline) = match sent {
        Some(sent) => sent,
        None => {
            // The connection has its own timeouts; `ttl` is for the exchange.
            let mut link = dialer.connect(addr).await?;
            let deadline = tokio::time::Instant::now() + ttl;
            send_request(&mut link, &request, deadline)
                .await
                .map_err(|reason| PeerError::Lost { addr, reason })?;
            (link, deadline)
        }
    };
    let reply = read_reply(&mut link, &dialer.codecs, addr, deadline).await?;
    dialer.pool.put(addr, link);
    Ok(reply)
}

/// Builds openraft clients from the addresses of tracker_info.txt.
#[derive(Clone)]
pub struct NetworkFactory {
    pub dialer: Dialer,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            dialer: self.dialer.clone(),
            target,
            addr: node.addr.parse().ok(),
            stream: None,
        }
    }
}

/// One openraft client: a lazily (re)opened connection to one target.
pub struct PeerClient {
    dialer: Dialer,
    target: NodeId,
    addr: Option<SocketAddr>,
    stream: Option<Link>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;
/// Takes one RPC's outcome out of a [`RaftRpcReply`]; `None`: a reply to
/// another RPC.
type Pick<T, E> = fn(RaftRpcReply) -> Option<Result<T, RaftError<NodeId, E>>>;

fn network_error(what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(what.to_string())
}

/// Peers (as `(this node, peer address)`) reported unreachable and not
/// back yet. openraft retries a lost peer several times a second and logs
/// each failure (its replication targets are filtered out of the default
/// log for that reason); this says it once per outage instead.
static UNREACHABLE: std::sync::Mutex<BTreeSet<(NodeId, SocketAddr)>> =
    std::sync::Mutex::new(BTreeSet::new());

/// Logs the first failure of an outage at `warn` and the first success
/// after it at `info`.
fn note_reachability(from: NodeId, target: NodeId, addr: SocketAddr, failure: Option<String>) {
    let mut down = UNREACHABLE.lock().unwrap_or_else(|p| p.into_inner());
    match failure {
        Some(e) => {
            if down.insert((from, addr)) {
                tracing::warn!("cannot reach tracker {target} at {addr} ({e}); retrying quietly");
            }
        }
        None => {
            if down.remove(&(from, addr)) {
                tracing::info!("tracker {target} at {addr} answers again");
            }
        }
    }
}

impl PeerClient {
    /// Sends `rpc` and takes its outcome out of the reply with `pick`.
    async fn call<T, E>(&mut self, rpc: RaftRpc, ttl: Duration, pick: Pick<T, E>) -> RpcResult<T, E>
    where
        E: std::error::Error,
    {
        let result = self.call_once(rpc, ttl, pick).await;
        if let Some(addr) = self.addr {
            let failure = match &result {
                Err(RPCError::Unreachable(e)) => Some(e.to_string()),
                Err(RPCError::Network(e)) => Some(e.to_string()),
                _ => None,
            };
            note_reachability(self.dialer.from, self.target, addr, failure);
        }
        result
    }

    async fn call_once<T, E>(
        &mut self,
        rpc: RaftRpc,
        ttl: Duration,
        pick: Pick<T, E>,
    ) -> RpcResult<T, E>
    where
        E: std::error::Error,
    {
        let Some(addr) = self.addr else {
            let e = network_error(format!("node {} has no valid address", self.target));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        let request = encode(&self.dialer, addr, &PeerRequest::Raft { rpc })
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => self
                .dialer
                .connect(addr)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?,
        };
        let reply = exchange(&mut stream, &self.dialer.codecs, addr, &request, ttl)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.stream = Some(stream);
        let bad = |what: String| RPCError::Network(NetworkError::new(&network_error(what)));
        match reply {
            PeerReply::Raft { result } => match pick(result) {
                Some(result) => {
                    result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
                }
                None => Err(bad("a reply to another RPC".into())),
            },
            PeerReply::Failed { error } => Err(bad(error.message)),
            other => Err(bad(format!("unexpected reply {other:?}"))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let rpc = RaftRpc::AppendEntries(rpc);
        self.call(rpc, option.hard_ttl(), |reply| match reply {
            RaftRpcReply::AppendEntries(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let rpc = RaftRpc::InstallSnapshot(rpc);
        self.call(rpc, option.hard_ttl(), |reply| match reply {
            RaftRpcReply::InstallSnapshot(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let rpc = RaftRpc::Vote(rpc);
        self.call(rpc, option.hard_ttl(), |reply| match reply {
            RaftRpcReply::Vote(r) => Some(r),
            _ => None,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, FakePeer};
    use super::*;
    use openraft::Vote;
    use std::sync::Arc;
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    fn client(addr: SocketAddr) -> PeerClient {
        PeerClient {
            dialer: testing::dialer(2),
            target: 1,
            addr: Some(addr),
            stream: None,
        }
    }

    fn option() -> RPCOption {
        RPCOption::new(Duration::from_secs(2))
    }

    /// openraft's RPCs, typed end to end: a client here, the serving side
    /// of a one-node cluster there, over TCP on 127.0.0.1.
    #[tokio::test]
    async fn raft_rpcs_round_trip_typed() {
        let dir = tempfile::tempdir().unwrap();
        let node = testing::one_node(dir.path()).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let serving = testing::serve_one_peer(Arc::clone(&node.cluster), listener, cancel.clone());
        let mut c = client(addr);
        // A stale candidate: answered (not granted) with the node's newer vote.
        let vote = c
            .vote(VoteRequest::new(Vote::new(0, 2), None), option())
            .await
            .expect("a typed vote response");
        assert!(!vote.vote_granted);
        assert!(vote.vote.leader_id().term >= 1);
        // It answered in binary, so the next request goes in binary.
        assert!(c.dialer.codecs.binary(addr));
        // The same connection carries the next RPC.
        let stale = AppendEntriesRequest {
            vote: Vote::new_committed(0, 2),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        };
        let appended = c.append_entries(stale, option()).await;
        assert!(
            matches!(appended, Ok(AppendEntriesResponse::HigherVote(_))),
            "{appended:?}"
        );
        cancel.cancel();
        serving.await.unwrap();
        node.stop().await;
    }

    /// A tracker from before the binary encoding (the fake peer: JSON
    /// only, it panics on a binary frame) is sent JSON, request after
    /// request, and its JSON replies are read.
    #[tokio::test]
    async fn a_tracker_answering_in_json_is_sent_json() {
        let old = FakePeer::start(|_| PeerReply::Probed { pristine: true }).await;
        let dialer = testing::dialer(2);
        let ttl = Duration::from_secs(2);
        for _ in 0..3 {
            let reply = send_once(&dialer, old.addr, &PeerRequest::Probe, ttl).await;
            assert!(
                matches!(reply, Ok(PeerReply::Probed { pristine: true })),
                "{reply:?}"
            );
            assert!(!dialer.codecs.binary(old.addr));
        }
        let mut c = client(old.addr);
        c.dialer = dialer;
        let out = c
            .vote(VoteRequest::new(Vote::new(1, 2), None), option())
            .await;
        assert!(matches!(out, Err(RPCError::Network(_))), "{out:?}");
        assert_eq!(old.requests().len(), 4, "every request was read (as JSON)");
    }

    #[tokio::test]
    async fn a_reply_to_another_rpc_or_a_failure_is_a_network_error() {
        let confused = FakePeer::start(|_| PeerReply::Raft {
            result: RaftRpcReply::Vote(Ok(VoteResponse::new(Vote::new(1, 1), None, false))),
        })
        .await;
        let rpc = AppendEntriesRequest {
            vote: Vote::new_committed(1, 2),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        };
        let out = client(confused.addr).append_entries(rpc, option()).await;
        assert!(matches!(out, Err(RPCError::Network(_))), "{out:?}");
        let failing = FakePeer::start(|_| PeerReply::Failed {
            error: proto::WireError::new(proto::ErrorCode::Io, "nope"),
        })
        .await;
        let req = VoteRequest::new(Vote::new(1, 2), None);
        let out = client(failing.addr).vote(req, option()).await;
        assert!(matches!(out, Err(RPCError::Network(_))), "{out:?}");
        let nobody = testing::unused_addr().await;
        let req = VoteRequest::new(Vote::new(1, 2), None);
        let out = client(nobody).vote(req, option()).await;
        assert!(matches!(out, Err(RPCError::Unreachable(_))), "{out:?}");
    }
}
