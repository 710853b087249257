//! The daemon's one long-lived connection to a tracker.
//!
//! Owns: connecting (trying every tracker of the info file in order), the
//! TLS handshake and the check of the tracker's identity against
//! [`Trust`] (before anything of ours is sent), the `Hello` handshake,
//! reconnecting in the background with backoff (200 ms doubling to 2 s),
//! and multiplexing calls. Each connection is a
//! reader task routing [`TrackerAnswer`]s to the waiting caller by `id` and a
//! writer task fed by an mpsc channel; whichever ends first ends the
//! connection, and every call still waiting on it fails with
//! `tracker_unavailable` (its pending sender is dropped).
//!
//! The current connection is published in a `watch` channel: `None` while
//! disconnected. Its `generation` grows with each new connection, which is
//! how the session code knows to heartbeat and re-announce after a reconnect.

use crate::trust::Trust;
use p2p_link::{Endpoint, Link, PublicKey};
use proto::frame::{read_json, write_json, MAX_TRACKER_FRAME_BYTES};
use proto::tracker::{RequestId, Retry, TrackerAnswer, TrackerCall, TrackerReply, TrackerRequest};
use proto::{ErrorCode, WireError, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// How long a call waits for a connection to be up.
pub const CONNECT_WAIT: Duration = Duration::from_secs(3);
/// How long a call waits for its answer once sent. With [`CONNECT_WAIT`]
/// this stays under SPEC's 10 s for `tracker_unavailable`.
pub const ANSWER_WAIT: Duration = Duration::from_secs(6);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HELLO_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Total time one call may take, retries included (SPEC: a command that
/// needs the tracker fails within 10 s; p2pctl adds its own second).
pub const CALL_BUDGET: Duration = Duration::from_secs(8);
/// Pause before retrying a call the tracker answered `tracker_unavailable`.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Calls queued for the writer before callers wait.
const OUTGOING_QUEUE: usize = 256;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<TrackerReply, WireError>>>>>;

/// One live connection, as published to callers.
#[derive(Debug)]
pub struct Connection {
    generation: u64,
    tracker: SocketAddr,
    local_ip: IpAddr,
    outgoing: mpsc::Sender<TrackerCall>,
    pending: Pending,
}

impl Connection {
    /// Grows by one with every new connection.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Whom the link talks to, and how identities are proven and checked.
#[derive(Debug, Clone)]
pub struct Setup {
    /// In the order they are tried.
    pub trackers: Vec<SocketAddr>,
    /// This daemon's link key.
    pub endpoint: Endpoint,
    pub trust: Trust,
}

struct Inner {
    trackers: Vec<SocketAddr>,
    endpoint: Endpoint,
    trust: Trust,
    /// The refusal of the last tracker met whose identity is not trusted,
    /// until a trusted one answers: what callers are told instead of
    /// `tracker_unavailable`.
    untrusted: Mutex<Option<WireError>>,
    /// The key the cluster signs tickets with, from the last `Welcome` of
    /// a trusted tracker.
    ticket_key: Mutex<Option<PublicKey>>,
    next_id: AtomicU64,
    /// Random per process: with `next_seq`, names each write (its
    /// [`RequestId`]) so the trackers apply a retried write only once.
    client: u64,
    next_seq: AtomicU64,
    current: watch::Sender<Option<Arc<Connection>>>,
}

/// A cheap handle to the tracker connection; clone it freely.
#[derive(Clone)]
pub struct TrackerLink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TrackerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerLink")
            .field("trackers", &self.inner.trackers)
            .field("current", &self.current_tracker())
            .finish()
    }
}

impl TrackerLink {
    /// Create the link and start its background connection task on
    /// `tasks`; it stops when `shutdown` is cancelled.
    pub fn start(
        setup: Setup,
        tasks: &tokio_util::task::TaskTracker,
        shutdown: CancellationToken,
    ) -> TrackerLink {
        let (current, _) = watch::channel(None);
        let link = TrackerLink {
            inner: Arc::new(Inner {
                trackers: setup.trackers,
                endpoint: setup.endpoint,
                trust: setup.trust,
                untrusted: Mutex::new(None),
                ticket_key: Mutex::new(None),
                next_id: AtomicU64::new(1),
                client: rand::random(),
                next_seq: AtomicU64::new(1),
                current,
            }),
        };
        let bg = link.clone();
        tasks.spawn(async move { bg.maintain(shutdown).await });
        link
    }

    /// Send one request and wait for its answer.
    ///
    /// Reads, and writes stamped with a request id (see [`TrackerRequest::retry`]),
    /// are retried while [`CALL_BUDGET`] lasts when the connection breaks
    /// under them or the tracker answers `tracker_unavailable`: the link
    /// reconnects to the next live tracker, and a repeated write gets the
    /// outcome of its first application instead of being applied twice.
    ///
    /// # Errors
    /// The tracker's refusal, or `tracker_unavailable` if no connection is
    /// up within [`CONNECT_WAIT`] or no answer comes within the budget.
    pub async fn call(&self, request: TrackerRequest) -> Result<TrackerReply, WireError> {
        let deadline = tokio::time::Instant::now() + CALL_BUDGET;
        let dedup = match request.retry() {
            Retry::Write => Some(RequestId {
                client: self.inner.client,
                seq: self.inner.next_seq.fetch_add(1, Ordering::Relaxed),
            }),
            Retry::Read | Retry::Never => None,
        };
        let retry = request.retry() != Retry::Never;
        let mut first = true;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let connect_wait = if first { CONNECT_WAIT } else { left };
            match self
                .attempt(request.clone(), dedup, connect_wait, left)
                .await
            {
                Attempt::Answered(Err(e)) if e.code == ErrorCode::TrackerUnavailable => {
                    if !retry || tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Attempt::Answered(result) => return result,
                Attempt::NoConnection => return Err(self.unavailable()),
                Attempt::Lost => {
                    if !retry || tokio::time::Instant::now() >= deadline {
                        return Err(self.unavailable());
                    }
                }
            }
            first = false;
        }
    }

    /// One try on the current connection.
    async fn attempt(
        &self,
        request: TrackerRequest,
        dedup: Option<RequestId>,
        connect_wait: Duration,
        answer_wait: Duration,
    ) -> Attempt {
        let mut rx = self.inner.current.subscribe();
        let conn = match tokio::time::timeout(connect_wait, rx.wait_for(|c| c.is_some())).await {
            Ok(Ok(c)) => c.clone().expect("wait_for returned a connection"),
            _ => return Attempt::NoConnection,
        };
        let answer_wait = answer_wait.min(ANSWER_WAIT);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, answer) = oneshot::channel();
        lock(&conn.pending).insert(id, tx);
        let call = TrackerCall { id, request, dedup };
        let sent = tokio::time::timeout(answer_wait, conn.outgoing.send(call)).await;
        if !matches!(sent, Ok(Ok(()))) {
            lock(&conn.pending).remove(&id);
            return Attempt::Lost;
        }
        match tokio::time::timeout(answer_wait, answer).await {
            Ok(Ok(result)) => Attempt::Answered(result),
            // Sender dropped: the connection ended before answering.
            Ok(Err(_)) => {
                // Do not pick the dead connection again: wait until the link
                // has noticed (it publishes `None`, then the next one).
                let _ = tokio::time::timeout(
                    RETRY_PAUSE,
                    rx.wait_for(|c| c.as_ref().map(|c| c.generation) != Some(conn.generation)),
                )
                .await;
                Attempt::Lost
            }
            Err(_) => {
                lock(&conn.pending).remove(&id);
                Attempt::Lost
            }
        }
    }

    /// The tracker in use, when connected.
    pub fn current_tracker(&self) -> Option<SocketAddr> {
        self.inner.current.borrow().as_ref().map(|c| c.tracker)
    }

    /// Local IP of the current connection, when connected.
    pub fn local_ip(&self) -> Option<IpAddr> {
        self.inner.current.borrow().as_ref().map(|c| c.local_ip)
    }

    /// The key tickets are signed with, once a trusted tracker said it.
    pub fn ticket_key(&self) -> Option<PublicKey> {
        *lock(&self.inner.ticket_key)
    }

    /// Follow the connection: `None` while disconnected.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Connection>>> {
        self.inner.current.subscribe()
    }

    fn unavailable(&self) -> WireError {
        if let Some(refusal) = lock(&self.inner.untrusted).clone() {
            return refusal;
        }
        let addrs = self
            .inner
            .trackers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        WireError::new(
            ErrorCode::TrackerUnavailable,
            format!("no tracker answers at {addrs}; is it running?"),
        )
    }

    /// Connect, serve the connection until it breaks, repeat; until shutdown.
    async fn maintain(self, shutdown: CancellationToken) {
        let mut backoff = BACKOFF_START;
        let mut generation = 0u64;
        let mut outage = Outage::default();
        loop {
            let mut connected = false;
            for &addr in &self.inner.trackers {
                let attempt = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = connect(&self.inner, addr) => r,
                };
                let (stream, local_ip, ticket_key) = match attempt {
                    Ok(s) => s,
                    Err(ConnectError::Untrusted(refusal)) => {
                        // Once per refusal, not at every reconnect attempt.
                        let mut last = lock(&self.inner.untrusted);
                        if last.as_ref() != Some(&refusal) {
                            tracing::error!(tracker = %addr, "{}", refusal.message);
                        }
                        *last = Some(refusal);
                        continue;
                    }
                    Err(ConnectError::Failed(e)) => {
                        tracing::debug!(tracker = %addr, "cannot connect: {e}");
                        outage.last_error = Some(e.to_string());
                        continue;
                    }
                };
                *lock(&self.inner.untrusted) = None;
                *lock(&self.inner.ticket_key) = Some(ticket_key);
                connected = true;
                backoff = BACKOFF_START;
                generation += 1;
                outage.connected(addr);
                self.serve(stream, addr, local_ip, generation, &shutdown)
                    .await;
                self.inner.current.send_replace(None);
                if shutdown.is_cancelled() {
                    return;
                }
                tracing::warn!(tracker = %addr, "lost the tracker connection; reconnecting");
                // Try the same list again from the top, after a short pause.
                break;
            }
            if !connected {
                outage.none_answered(&self.inner.trackers);
            }
            let pause = if connected { BACKOFF_START } else { backoff };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            if !connected {
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Run one connection's reader and writer until either ends.
    async fn serve(
        &self,
        stream: Link,
        tracker: SocketAddr,
        local_ip: IpAddr,
        generation: u64,
        shutdown: &CancellationToken,
    ) {
        let (rd, wr) = p2p_link::tls::split(stream);
        let (outgoing, mut queue) = mpsc::channel::<TrackerCall>(OUTGOING_QUEUE);
        let pending: Pending = Arc::default();
        self.inner.current.send_replace(Some(Arc::new(Connection {
            generation,
            tracker,
            local_ip,
            outgoing,
            pending: pending.clone(),
        })));

        let writer = async move {
            let mut wr = BufWriter::new(wr);
            while let Some(call) = queue.recv().await {
                if let Err(e) = write_json(&mut wr, &call, MAX_TRACKER_FRAME_BYTES).await {
                    tracing::warn!(tracker = %tracker, "writing to tracker: {e}");
                    return;
                }
            }
        };
        let reader_pending = pending.clone();
        let reader = async move {
            let mut rd = BufReader::new(rd);
            loop {
                match read_json::<TrackerAnswer, _>(&mut rd, MAX_TRACKER_FRAME_BYTES).await {
                    Ok(Some(ans)) => match lock(&reader_pending).remove(&ans.id) {
                        // The caller may have given up; nothing to do then.
                        Some(tx) => {
                            let _ = tx.send(ans.result);
                        }
                        None => tracing::debug!(id = ans.id, "answer to no waiting call"),
                    },
                    Ok(None) => {
                        tracing::debug!(tracker = %tracker, "tracker closed the connection");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(tracker = %tracker, "reading from tracker: {e}");
                        return;
                    }
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = writer => {}
            _ = reader => {}
        }
        // Dropping the senders fails every call still waiting on this
        // connection with tracker_unavailable.
        lock(&pending).clear();
    }
}

/// How one try of a call ended.
enum Attempt {
    Answered(Result<TrackerReply, WireError>),
    /// No connection came up in time: retrying would only wait longer.
    NoConnection,
    /// The connection broke (or stalled) before the answer came.
    Lost,
}

/// Why a tracker could not be used.
enum ConnectError {
    /// Its identity is not the trusted one: nothing was sent to it.
    Untrusted(WireError),
    Failed(String),
}

impl From<String> for ConnectError {
    fn from(e: String) -> Self {
        ConnectError::Failed(e)
    }
}

/// TCP connect, the TLS handshake, the identity check, then the `Hello`
/// exchange, each under a timeout.
async fn connect(
    inner: &Inner,
    addr: SocketAddr,
) -> Result<(Link, IpAddr, PublicKey), ConnectError> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let local_ip = tcp.local_addr().map_err(|e| e.to_string())?.ip();
    let secured = inner
        .endpoint
        .connect(tcp)
        .await
        .map_err(|e| e.to_string())?;
    inner
        .trust
        .check(addr, &secured.peer)
        .map_err(ConnectError::Untrusted)?;
    let mut stream = secured.link;
    let hello = TrackerCall {
        dedup: None,
        id: 0,
        request: TrackerRequest::Hello {
            version: PROTOCOL_VERSION,
        },
    };
    let exchange = async {
        write_json(&mut stream, &hello, MAX_TRACKER_FRAME_BYTES)
            .await
            .map_err(|e| format!("sending hello: {e}"))?;
        read_json::<TrackerAnswer, _>(&mut stream, MAX_TRACKER_FRAME_BYTES)
            .await
            .map_err(|e| format!("reading welcome: {e}"))?
            .ok_or_else(|| "closed before welcome".to_string())
    };
    let answer = tokio::time::timeout(HELLO_TIMEOUT, exchange)
        .await
        .map_err(|_| "no welcome in time".to_string())??;
    match answer.result {
        Ok(TrackerReply::Welcome { ticket_key, .. }) => {
            let key = ticket_key
                .parse()
                .map_err(|_| format!("the tracker's ticket key {ticket_key:?} is not a key"))?;
            Ok((stream, local_ip, key))
        }
        Ok(other) => Err(format!("unexpected answer to hello: {other:?}").into()),
        Err(e) => {
            // A version mismatch is worth more than a debug line.
            tracing::error!(tracker = %addr, "tracker refused hello: {}", e.message);
            Err(e.message.into())
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map only means a panic elsewhere; its content is still valid.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the log says about reaching the trackers: an outage (no tracker of
/// the list answers) once at `warn` when it begins and once at `info` when
/// it ends, not at every retry; a switch to another tracker (failover) as
/// one line.
#[derive(Debug, Default)]
struct Outage {
    /// The tracker of the last connection.
    last: Option<SocketAddr>,
    /// An outage was reported and has not ended.
    reported: bool,
    /// Why the last attempt failed, for the report.
    last_error: Option<String>,
}

impl Outage {
    fn none_answered(&mut self, trackers: &[SocketAddr]) {
        if self.reported {
            return;
        }
        self.reported = true;
        let addrs = trackers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        tracing::warn!(
            "no tracker answers at {addrs} ({}); retrying quietly until one does",
            self.last_error.as_deref().unwrap_or("no answer")
        );
    }

    fn connected(&mut self, addr: SocketAddr) {
        match self.last {
            Some(prev) if prev != addr => {
                tracing::info!("tracker failover: now connected to {addr} (was {prev})")
            }
            _ if self.reported => tracing::info!("tracker {addr} answers again"),
            _ => tracing::info!(tracker = %addr, "connected to tracker"),
        }
        self.last = Some(addr);
        self.reported = false;
        self.last_error = None;
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A tiny in-test tracker speaking proto::tracker frames, answering with
    //! a caller-supplied function.

    use super::*;
    use p2p_link::{ClusterKey, KeyPairDoc};
    use std::sync::OnceLock;
    use tokio::net::TcpListener;

    /// The fake cluster's key (one per test process).
    fn cluster_key() -> &'static ClusterKey {
        static KEY: OnceLock<ClusterKey> = OnceLock::new();
        KEY.get_or_init(|| ClusterKey::generate().unwrap())
    }

    /// A link set-up for `trackers` that trusts the fake cluster.
    pub fn setup(trackers: Vec<SocketAddr>) -> Setup {
        Setup {
            trackers,
            endpoint: Endpoint::new(&KeyPairDoc::generate().unwrap()),
            trust: Trust::new(
                Some(cluster_key().fingerprint()),
                std::path::PathBuf::from("/nonexistent/known_cluster"),
            ),
        }
    }

    pub type Answerer =
        Arc<dyn Fn(&TrackerRequest) -> Result<TrackerReply, WireError> + Send + Sync>;

    /// Serve on 127.0.0.1 until `stop` is cancelled (which also closes
    /// every connection, like a killed tracker).
    pub async fn spawn(answer: Answerer, stop: CancellationToken) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        serve(listener, answer, stop);
        addr
    }

    pub fn serve(listener: TcpListener, answer: Answerer, stop: CancellationToken) {
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => return },
                };
                let answer = answer.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let identity = Endpoint::new(&cluster_key().identity());
                    let Ok(secured) = identity.accept(s).await else {
                        return;
                    };
                    let (mut rd, wr) = p2p_link::tls::split(secured.link);
                    let wr = Arc::new(tokio::sync::Mutex::new(wr));
                    loop {
                        let call = tokio::select! {
                            _ = stop.cancelled() => return,
                            r = read_json::<TrackerCall, _>(&mut rd, MAX_TRACKER_FRAME_BYTES) => match r {
                                Ok(Some(c)) => c,
                                _ => return,
                            },
                        };
                        let result = match &call.request {
                            TrackerRequest::Hello { version } => Ok(TrackerReply::Welcome {
                                version: *version,
                                node: 1,
                                ticket_key: cluster_key().ticket_key().public().to_string(),
                            }),
                            other => answer(other),
                        };
                        let wr = wr.clone();
                        // Answer out of order on purpose: calls run concurrently.
                        tokio::spawn(async move {
                            let ans = TrackerAnswer {
                                id: call.id,
                                result,
                            };
                            let _ =
                                write_json(&mut *wr.lock().await, &ans, MAX_TRACKER_FRAME_BYTES)
                                    .await;
                        });
                    }
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::tracker::SessionToken;
    use tokio_util::task::TaskTracker;

    fn done(msg: &str) -> Result<TrackerReply, WireError> {
        Ok(TrackerReply::Done {
            message: msg.into(),
        })
    }

    #[tokio::test]
    async fn calls_are_answered_and_multiplexed() {
        let addr = fake::spawn(
            Arc::new(|req| match req {
                TrackerRequest::CreateUser { user, .. } => done(user.as_str()),
                TrackerRequest::Logout { .. } => {
                    Err(WireError::new(ErrorCode::NotLoggedIn, "nope"))
                }
                _ => done("other"),
            }),
            CancellationToken::new(),
        )
        .await;
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let link = TrackerLink::start(
            crate::tracker_link::fake::setup(vec![addr]),
            &tasks,
            stop.clone(),
        );
        let mut calls = Vec::new();
        for i in 0..20 {
            let link = link.clone();
            calls.push(tokio::spawn(async move {
                let user = format!("u{i}").parse().unwrap();
                link.call(TrackerRequest::CreateUser {
                    user,
                    password: "p".into(),
                })
                .await
            }));
        }
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap(), done(&format!("u{i}")));
        }
        let err = link
            .call(TrackerRequest::Logout {
                token: SessionToken("t".into()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NotLoggedIn);
        assert_eq!(link.current_tracker(), Some(addr));
        assert_eq!(link.local_ip(), Some("127.0.0.1".parse().unwrap()));
        stop.cancel();
        tasks.close();
        tokio::time::timeout(Duration::from_secs(2), tasks.wait())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn no_tracker_is_unavailable_quickly_then_failover_connects() {
        // First address refuses connections; nothing listens on it.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let link = TrackerLink::start(
            crate::tracker_link::fake::setup(vec![dead]),
            &tasks,
            stop.clone(),
        );
        let t0 = std::time::Instant::now();
        let err = link
            .call(TrackerRequest::ListGroups {
                token: SessionToken("t".into()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::TrackerUnavailable);
        assert!(err.message.contains(&dead.to_string()), "{}", err.message);
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(link.current_tracker(), None);
        stop.cancel();

        let live = fake::spawn(Arc::new(|_| done("ok")), CancellationToken::new()).await;
        let stop = CancellationToken::new();
        let link = TrackerLink::start(
            crate::tracker_link::fake::setup(vec![dead, live]),
            &tasks,
            stop.clone(),
        );
        assert_eq!(
            link.call(TrackerRequest::ListGroups {
                token: SessionToken("t".into()),
            })
            .await,
            done("ok")
        );
        assert_eq!(link.current_tracker(), Some(live));
        stop.cancel();
    }

    #[tokio::test]
    async fn reconnects_after_the_tracker_restarts() {
        let first = CancellationToken::new();
        let addr = fake::spawn(Arc::new(|_| done("one")), first.clone()).await;
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let link = TrackerLink::start(
            crate::tracker_link::fake::setup(vec![addr]),
            &tasks,
            stop.clone(),
        );
        let mut conn = link.subscribe();
        let req = || TrackerRequest::ListGroups {
            token: SessionToken("t".into()),
        };
        assert_eq!(link.call(req()).await, done("one"));
        let gen1 = conn.borrow_and_update().as_ref().unwrap().generation();
        first.cancel();
        // Restart on the same port.
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        fake::serve(listener, Arc::new(|_| done("two")), stop.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = link.call(req()).await {
                assert_eq!(Ok(r), done("two"));
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no reconnect");
        }
        let gen2 = conn.borrow_and_update().as_ref().unwrap().generation();
        assert!(gen2 > gen1);
        stop.cancel();
    }
}
