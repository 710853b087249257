//! The serving side of a peer tracker's connection: after its
//! [`PeerHello`], one [`PeerRequest`] at a time, each answered with one
//! [`PeerReply`], dispatched to the part of the node that owns it (Raft
//! itself, the write path, presence, formation).
//!
//! A request that cannot be decoded is answered `Failed`
//! (`invalid_argument`); a reply that cannot be encoded is logged and
//! answered `Failed` (`io`) instead, never as an empty or `null` payload.
//! Requests come in either encoding (decoded by their first byte); replies
//! go in the binary one when the hello said the peer reads it.

use super::formation;
use super::network::{PeerReply, PeerRequest, RaftRpc, RaftRpcReply};
use super::{Cluster, NodeId, Raft};
use p2p_link::{LinkReader, LinkWriter};
use proto::frame::{read_frame, write_frame};
use proto::raft::{PeerHello, PeerHelloBody, MAX_PEER_FRAME_BYTES};
use proto::{ErrorCode, WireError};
use serde::Serialize;
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// Serves one peer tracker's connection (its hello already read) until it
/// closes or `cancel` fires. Requests are handled one at a time, in order.
pub async fn serve_peer(
    cluster: Arc<Cluster>,
    hello: PeerHelloBody,
    reader: LinkReader,
    mut writer: LinkWriter,
    cancel: CancellationToken,
) {
    let from: NodeId = hello.from;
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
        let reply = match proto::codec::decode::<PeerRequest>(&bytes) {
            Ok(req) => handle(&cluster, req).await,
            Err(e) => PeerReply::Failed {
                error: WireError::new(ErrorCode::InvalidArgument, format!("bad request: {e}")),
            },
        };
        let Some(reply) = encode_reply(&reply, hello.binary) else {
            break;
        };
        if let Err(e) = write_frame(&mut writer, &reply, MAX_PEER_FRAME_BYTES).await {
            tracing::debug!(peer = from, error = %e, "cannot answer peer");
            break;
        }
    }
    let _ = writer.shutdown().await;
}

/// `reply` as a frame's payload, `binary` or JSON; one that cannot be
/// encoded is logged and replaced by a [`PeerReply::Failed`] saying so.
/// `None`: not even that (the connection is closed).
fn encode_reply<Rpc: Serialize, R: Serialize>(
    reply: &proto::raft::PeerReply<Rpc, R>,
    binary: bool,
) -> Option<Vec<u8>> {
    let encode = |r: &proto::raft::PeerReply<Rpc, R>| match binary {
        true => proto::codec::encode(r),
        false => proto::codec::encode_json(r),
    };
    let e = match encode(reply) {
        Ok(bytes) => return Some(bytes),
        Err(e) => e,
    };
    tracing::error!(error = %e, "cannot encode a reply to a peer tracker; answering that it failed");
    let failed = proto::raft::PeerReply::<Rpc, R>::Failed {
        error: WireError::new(
            ErrorCode::Io,
            format!("the tracker could not encode its reply: {e}"),
        ),
    };
    match encode(&failed) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a failure either; closing");
            None
        }
    }
}

async fn handle(cluster: &Cluster, req: PeerRequest) -> PeerReply {
    match req {
        PeerRequest::Raft { rpc } => PeerReply::Raft {
            result: answer_rpc(&cluster.raft, rpc).await,
        },
        PeerRequest::Write { command } => cluster.write_as_leader(command).await,
        PeerRequest::CheckSession { token } => PeerReply::Session {
            live: cluster.state().user_of(&token).is_ok(),
        },
        PeerRequest::Probe => PeerReply::Probed {
            pristine: formation::is_pristine(&cluster.raft).await,
        },
        PeerRequest::Presence { seen } => {
            cluster.note_presence(seen);
            PeerReply::Noted
        }
    }
}

async fn answer_rpc(raft: &Raft, rpc: RaftRpc) -> RaftRpcReply {
    match rpc {
        RaftRpc::AppendEntries(rpc) => RaftRpcReply::AppendEntries(raft.append_entries(rpc).await),
        RaftRpc::Vote(rpc) => RaftRpcReply::Vote(raft.vote(rpc).await),
        RaftRpc::InstallSnapshot(rpc) => {
            RaftRpcReply::InstallSnapshot(raft.install_snapshot(rpc).await)
        }
    }
}

/// The peer tracker's hello, if the first frame of a connection is one
/// (and not a daemon's `Hello` call).
pub fn is_peer_hello(bytes: &[u8]) -> Option<PeerHelloBody> {
    serde_json::from_slice::<PeerHello>(bytes)
        .ok()
        .map(|h| h.peer)
}

#[cfg(test)]
mod tests {
    use super::super::network::{self, PeerError};
    use super::super::testing;
    use super::*;
    use proto::raft::SeenPeer;
    use proto::tracker::SessionToken;
    use std::collections::BTreeMap;
    use std::time::Duration;
    use tokio::net::TcpListener;

    #[test]
    fn an_unencodable_reply_is_answered_as_a_failure() {
        /// JSON object keys must be strings: a map keyed by a pair fails.
        type Unencodable = BTreeMap<(u8, u8), u8>;
        let reply = proto::raft::PeerReply::<Unencodable, ()>::Raft {
            result: BTreeMap::from([((1, 2), 3)]),
        };
        let bytes = encode_reply(&reply, false).expect("a failure can be encoded");
        let back: proto::raft::PeerReply<Unencodable, ()> = serde_json::from_slice(&bytes).unwrap();
        assert!(
            matches!(back, proto::raft::PeerReply::Failed { error } if error.code == ErrorCode::Io)
        );
        let fine = proto::raft::PeerReply::<Unencodable, ()>::Noted;
        assert_eq!(
            encode_reply(&fine, false).unwrap(),
            serde_json::to_vec(&fine).unwrap()
        );
        let binary = encode_reply(&fine, true).unwrap();
        assert!(proto::codec::is_binary(&binary));
    }

    #[test]
    fn a_peer_hello_is_told_from_a_daemon_hello() {
        let peer = br#"{"peer":{"version":1,"from":3}}"#;
        assert_eq!(is_peer_hello(peer).map(|h| h.from), Some(3));
        let daemon = br#"{"id":0,"request":{"op":"hello","version":1}}"#;
        assert!(is_peer_hello(daemon).is_none());
    }

    /// The serving side over real TCP, fed by the real client side.
    #[tokio::test]
    async fn requests_are_dispatched_to_their_owners() {
        let dir = tempfile::tempdir().unwrap();
        let node = testing::one_node(dir.path()).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = testing::serve_one_peer(
            Arc::clone(&node.cluster),
            listener,
            CancellationToken::new(),
        );
        // A one-shot request opens its own connection: the one served.
        let ttl = Duration::from_secs(2);
        let reply = network::send_once(&testing::dialer(2), addr, &PeerRequest::Probe, ttl)
            .await
            .unwrap();
        assert!(matches!(reply, PeerReply::Probed { pristine: false }));
        serving.await.unwrap();
        // Everything else goes through the dispatcher directly.
        let token = SessionToken("x".into());
        let reply = handle(&node.cluster, PeerRequest::CheckSession { token }).await;
        assert!(matches!(reply, PeerReply::Session { live: false }));
        let seen = vec![SeenPeer {
            user: "a".parse().unwrap(),
            token: SessionToken("t".into()),
            addr: "127.0.0.1:9".parse().unwrap(),
            at_ms: 1,
            key: None,
        }];
        let reply = handle(&node.cluster, PeerRequest::Presence { seen }).await;
        assert!(matches!(reply, PeerReply::Noted));
        assert_eq!(
            node.cluster.presence.take().len(),
            1,
            "presence was collected"
        );
        let write = crate::state::Command::SetTicketSecret { secret: "x".into() };
        assert!(matches!(
            handle(&node.cluster, PeerRequest::Write { command: write }).await,
            PeerReply::Written { index, .. } if index > 0
        ));
        let nobody = testing::unused_addr().await;
        let out = network::send_once(&testing::dialer(2), nobody, &PeerRequest::Probe, ttl).await;
        assert!(matches!(out, Err(PeerError::Connect { .. })));
        node.stop().await;
    }
}
