//! Test helpers for the parts of `raft/` (compiled for tests only): a node
//! on a Raft in a temporary directory, and a fake peer tracker that answers
//! over real TLS links on 127.0.0.1. No process is started. Every node and
//! fake peer holds the same [`cluster_key`].

use super::network::{Dialer, PeerReply, PeerRequest};
use super::{Cluster, ClusterOptions, NodeId, SNAPSHOT_EVERY_ENTRIES};
use p2p_link::{ClusterKey, Endpoint, Link};
use proto::frame::{read_frame, write_json};
use proto::raft::{PeerHello, MAX_PEER_FRAME_BYTES};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a helper waits for a node to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster key of every test node (made once per test process).
pub fn cluster_key() -> Arc<ClusterKey> {
    static KEY: OnceLock<Arc<ClusterKey>> = OnceLock::new();
    Arc::clone(KEY.get_or_init(|| Arc::new(ClusterKey::generate().expect("a random key"))))
}

/// The test cluster's identity, ready for links.
pub fn endpoint() -> Endpoint {
    Endpoint::new(&cluster_key().identity())
}

/// Links out of node `from` of the test cluster.
pub fn dialer(from: NodeId) -> Dialer {
    Dialer {
        from,
        endpoint: endpoint(),
        codecs: Default::default(),
        pool: Default::default(),
    }
}

/// Accepts a TLS link as a tracker of the test cluster would.
async fn accept(socket: TcpStream) -> Option<Link> {
    endpoint().accept(socket).await.ok().map(|s| s.link)
}

/// A started node and the token that stops its background tasks.
pub struct Node {
    pub cluster: Arc<Cluster>,
    stop: CancellationToken,
}

impl Node {
    pub async fn stop(self) {
        self.stop.cancel();
        self.cluster.raft.shutdown().await.expect("raft stops");
    }
}

/// Node `node` of `trackers`, its store in `dir`.
pub async fn start(dir: &Path, node: NodeId, trackers: Vec<SocketAddr>) -> Node {
    let stop = CancellationToken::new();
    let options = ClusterOptions {
        node,
        trackers,
        snapshot_every: SNAPSHOT_EVERY_ENTRIES,
        cluster_key: cluster_key(),
    };
    let cluster = Cluster::start(options, dir, stop.clone())
        .await
        .expect("the node starts");
    Node { cluster, stop }
}

/// A single-tracker cluster in `dir`, once it leads.
pub async fn one_node(dir: &Path) -> Node {
    let node = start(dir, 1, vec![unused_addr().await]).await;
    wait_until("the single node leads", || node.cluster.leader() == Some(1)).await;
    node
}

/// Polls `done` every 10 ms; panics naming `what` after [`SETTLE_TIMEOUT`].
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An address nothing listens on (bound, then released).
/// Serves the first peer connection `listener` accepts with the real
/// serving side (`serve::serve_peer`) of `cluster`, until `cancel`.
pub fn serve_one_peer(
    cluster: Arc<Cluster>,
    listener: TcpListener,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let link = accept(socket).await.expect("a TLS link");
        let (mut reader, writer) = p2p_link::tls::split(link);
        let hello = read_frame(&mut reader, MAX_PEER_FRAME_BYTES)
            .await
            .unwrap()
            .unwrap();
        let hello = super::serve::is_peer_hello(&hello).expect("a peer hello");
        super::serve::serve_peer(cluster, hello, reader, writer, cancel).await;
    })
}

pub async fn unused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr")
}

type Answer = dyn Fn(&PeerRequest) -> PeerReply + Send + Sync;

/// A peer tracker that answers every request with `answer` and remembers
/// the requests it was sent. Stops when dropped. It speaks JSON only, as
/// trackers from before the binary encoding did: it panics on a binary
/// request, which it must never be sent.
pub struct FakePeer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<PeerRequest>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl FakePeer {
    pub async fn start(
        answer: impl Fn(&PeerRequest) -> PeerReply + Send + Sync + 'static,
    ) -> FakePeer {
        FakePeer::start_with(answer, false).await
    }

    /// A fake that closes each connection after its first reply, as a
    /// tracker that restarted leaves its links.
    pub async fn start_closing(
        answer: impl Fn(&PeerRequest) -> PeerReply + Send + Sync + 'static,
    ) -> FakePeer {
        FakePeer::start_with(answer, true).await
    }

    async fn start_with(
        answer: impl Fn(&PeerRequest) -> PeerReply + Send + Sync + 'static,
        close_after_reply: bool,
    ) -> FakePeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let answer: Arc<Answer> = Arc::new(answer);
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            let connections = Arc::clone(&connections);
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (answer, seen) = (Arc::clone(&answer), Arc::clone(&seen));
                    tokio::spawn(serve(socket, answer, seen, close_after_reply));
                }
            }
        });
        FakePeer {
            addr,
            seen,
            connections,
            task,
        }
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> MutexGuard<'_, Vec<PeerRequest>> {
        self.seen.lock().expect("fake peer lock")
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    socket: TcpStream,
    answer: Arc<Answer>,
    seen: Arc<Mutex<Vec<PeerRequest>>>,
    close_after_reply: bool,
) {
    let Some(mut socket) = accept(socket).await else {
        return;
    };
    let Ok(Some(hello)) = read_frame(&mut socket, MAX_PEER_FRAME_BYTES).await else {
        return;
    };
    assert!(
        serde_json::from_slice::<PeerHello>(&hello).is_ok(),
        "a peer connection starts with a PeerHello"
    );
    while let Ok(Some(frame)) = read_frame(&mut socket, MAX_PEER_FRAME_BYTES).await {
        let request: PeerRequest = serde_json::from_slice(&frame).expect("a typed request");
        let reply = answer(&request);
        seen.lock().expect("fake peer lock").push(request);
        if write_json(&mut socket, &reply, MAX_PEER_FRAME_BYTES)
            .await
            .is_err()
            || close_after_reply
        {
            return;
        }
    }
}
