//! Tracker ↔ tracker transport: openraft's `RaftNetwork` over TCP, forwarded
//! writes, presence batches, and the serving side of all of them.
//!
//! A peer connection starts with a [`PeerHello`] frame on the target's
//! ordinary address; then one [`PeerRequest`] and one [`PeerReply`]
//! alternate (framing from `proto::frame`, max [`MAX_PEER_FRAME_BYTES`]).
//!
//! - Raft RPCs: each openraft client (one per target and purpose) keeps one
//!   connection and reconnects on the next RPC after any error.
//! - Forwarded writes and presence: a fresh connection per request, so a
//!   failure to connect means "not sent" (safe to retry elsewhere), while a
//!   failure after sending means "outcome unknown" (never retried, never
//!   reported as success).

use super::{Cluster, NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use proto::frame::{read_frame, read_json, write_json};
use proto::raft::{PeerHello, PeerHelloBody, PeerReply, PeerRequest, MAX_PEER_FRAME_BYTES};
use proto::{ErrorCode, WireError, PROTOCOL_VERSION};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Connecting to a peer tracker gives up after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Nothing was sent: the peer is down or unreachable.
    #[error("cannot connect to tracker at {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// The request may or may not have been received.
    #[error("tracker at {addr} did not answer: {reason}")]
    Lost { addr: SocketAddr, reason: String },
}

/// Connects to `addr` and introduces this tracker as node `from`.
async fn connect(addr: SocketAddr, from: NodeId) -> Result<TcpStream, PeerError> {
    let fail = |reason: String| PeerError::Connect { addr, reason };
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let hello = PeerHello {
        peer: PeerHelloBody {
            version: PROTOCOL_VERSION,
            from,
        },
    };
    write_json(&mut stream, &hello, MAX_PEER_FRAME_BYTES)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(stream)
}

/// One request, one reply, under `ttl`.
async fn exchange(
    stream: &mut TcpStream,
    addr: SocketAddr,
    request: &PeerRequest,
    ttl: Duration,
) -> Result<PeerReply, PeerError> {
    let lost = |reason: String| PeerError::Lost { addr, reason };
    let io = async {
        write_json(stream, request, MAX_PEER_FRAME_BYTES)
            .await
            .map_err(|e| lost(e.to_string()))?;
        read_json::<PeerReply, _>(stream, MAX_PEER_FRAME_BYTES)
            .await
            .map_err(|e| lost(e.to_string()))?
            .ok_or_else(|| lost("closed the connection".into()))
    };
    tokio::time::timeout(ttl, io)
        .await
        .map_err(|_| lost(format!("no reply within {ttl:?}")))?
}

/// Sends `request` to `addr` on a fresh connection.
///
/// # Errors
/// [`PeerError::Connect`] if nothing was sent, [`PeerError::Lost`] if the
/// outcome is unknown.
pub async fn send_once(
    addr: SocketAddr,
    from: NodeId,
    request: &PeerRequest,
    ttl: Duration,
) -> Result<PeerReply, PeerError> {
    let mut stream = connect(addr, from).await?;
    exchange(&mut stream, addr, request, ttl).await
}

/// Builds openraft clients from the addresses of tracker_info.txt.
#[derive(Clone)]
pub struct NetworkFactory {
    pub from: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            from: self.from,
            target,
            addr: node.addr.parse().ok(),
            stream: None,
        }
    }
}

/// One openraft client: a lazily (re)opened connection to one target.
pub struct PeerClient {
    from: NodeId,
    target: NodeId,
    addr: Option<SocketAddr>,
    stream: Option<TcpStream>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call<T, E>(&mut self, request: PeerRequest, ttl: Duration) -> RpcResult<T, E>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(addr) = self.addr else {
            let e = std::io::Error::other(format!("node {} has no valid address", self.target));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => connect(addr, self.from)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?,
        };
        let reply = exchange(&mut stream, addr, &request, ttl)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.stream = Some(stream);
        let bad = |what: String| {
            let e = std::io::Error::other(what);
            RPCError::Network(NetworkError::new(&e))
        };
        match reply {
            PeerReply::Raft { result } => {
                let result: Result<T, RaftError<NodeId, E>> =
                    serde_json::from_value(result).map_err(|e| bad(format!("bad reply: {e}")))?;
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            PeerReply::Failed { error } => Err(bad(error.message)),
            other => Err(bad(format!("unexpected reply {other:?}"))),
        }
    }
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let req = PeerRequest::AppendEntries {
            rpc: to_value(&rpc),
        };
        self.call(req, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let req = PeerRequest::InstallSnapshot {
            rpc: to_value(&rpc),
        };
        self.call(req, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let req = PeerRequest::Vote {
            rpc: to_value(&rpc),
        };
        self.call(req, option.hard_ttl()).await
    }
}

// ---------------------------------------------------------------- serving

/// Serves one peer tracker's connection (its hello already read) until it
/// closes or `cancel` fires. Requests are handled one at a time, in order.
pub async fn serve_peer(
    cluster: Arc<Cluster>,
    from: NodeId,
    reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut reader = BufReader::new(reader);
    loop {
        let frame = tokio::select! {
            () = cancel.cancelled() => break,
            f = read_frame(&mut reader, MAX_PEER_FRAME_BYTES) => f,
        };
        let bytes = match frame {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(peer = from, error = %e, "peer connection ended");
                break;
            }
        };
        let reply = match serde_json::from_slice::<PeerRequest>(&bytes) {
            Ok(req) => handle(&cluster, req).await,
            Err(e) => PeerReply::Failed {
                error: WireError::new(ErrorCode::InvalidArgument, format!("bad request: {e}")),
            },
        };
        if let Err(e) = write_json(&mut writer, &reply, MAX_PEER_FRAME_BYTES).await {
            tracing::debug!(peer = from, error = %e, "cannot answer peer");
            break;
        }
    }
    let _ = writer.shutdown().await;
}

fn decode<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, PeerReply> {
    serde_json::from_value(v).map_err(|e| PeerReply::Failed {
        error: WireError::new(ErrorCode::InvalidArgument, format!("bad payload: {e}")),
    })
}

async fn handle(cluster: &Cluster, req: PeerRequest) -> PeerReply {
    let raft = &cluster.raft;
    let answer = |v: serde_json::Value| PeerReply::Raft { result: v };
    match req {
        PeerRequest::AppendEntries { rpc } => match decode(rpc) {
            Ok(rpc) => answer(to_value(&raft.append_entries(rpc).await)),
            Err(r) => r,
        },
        PeerRequest::Vote { rpc } => match decode(rpc) {
            Ok(rpc) => answer(to_value(&raft.vote(rpc).await)),
            Err(r) => r,
        },
        PeerRequest::InstallSnapshot { rpc } => match decode(rpc) {
            Ok(rpc) => answer(to_value(&raft.install_snapshot(rpc).await)),
            Err(r) => r,
        },
        PeerRequest::Write { command } => match decode(command) {
            Ok(cmd) => cluster.write_as_leader(cmd).await,
            Err(r) => r,
        },
        PeerRequest::CheckSession { token } => PeerReply::Session {
            live: cluster.state().user_of(&token).is_ok(),
        },
        PeerRequest::Probe => PeerReply::Probed {
            pristine: !cluster.raft.is_initialized().await.unwrap_or(true),
        },
        PeerRequest::Presence { seen } => {
            cluster.note_presence(seen);
            PeerReply::Noted
        }
    }
}

/// Refusal for a frame that is neither a daemon's hello nor a peer's.
pub fn is_peer_hello(bytes: &[u8]) -> Option<PeerHelloBody> {
    serde_json::from_slice::<PeerHello>(bytes)
        .ok()
        .map(|h| h.peer)
}
