//! The attack suite (issue 11): each test does what an attacker on the
//! network would do against real `tracker` and `p2pd` processes on
//! 127.0.0.1, and asserts the attack fails and the state is unchanged.
//!
//! The attacker's side is in-test Rust: plain TCP, or TLS 1.3 links made
//! with the product's own `p2p-link` crate and a key of the attacker's
//! (any key completes a handshake; what a key may do is the other end's
//! decision), frames built by hand as JSON, recording proxies and a
//! recording impostor tracker on tokio.
//!
//! Where it is cheap, a test also runs a *positive control*: the same bytes
//! sent by someone who does hold the cluster key do take effect. That shows
//! the forgery is well-formed, so the refusal is due to the missing key and
//! not to a typo in a hand-built frame.

use blackbox::raw::{endpoint, runtime};
use blackbox::{
    bin, frame, free_port, json, keygen, random_file, sha1_file, wait_until, Daemon, Net, Tracker,
    Trackers, START_TIMEOUT,
};
use p2p_link::{ClusterKey, Endpoint};
use serde_json::Value;
use std::collections::HashSet;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long an election may take (as in raft.rs).
const ELECTION_WAIT: Duration = Duration::from_secs(15);
/// How long an attacker waits for an answer before calling it silence.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// A write through a daemon during an attack must still succeed within
/// this: the daemon's own retry budget for a write (SPEC: a daemon retries
/// one write for at most 10 s; "legitimate commands keep answering within
/// seconds").
const WRITE_BOUND: Duration = Duration::from_secs(10);
/// A term no real cluster of a test reaches.
const HIGH_TERM: u64 = 1_000_000;

// ------------------------------------------------------------ attacker kit

/// The real cluster identity, from the key file the harness made for a
/// replicated net: what a legitimate tracker presents.
fn cluster_endpoint(net: &Net) -> Endpoint {
    let key = ClusterKey::load(&net.dir().join("cluster.key")).expect("the net's cluster key");
    Endpoint::new(&key.identity())
}

/// argon2id of `password` with a salt of the attacker's choosing: what a
/// tracker would store for it.
fn argon2_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"attacker's salt!").expect("a valid salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2")
        .to_string()
}

fn frame_of(v: &Value) -> Vec<u8> {
    frame(&serde_json::to_vec(v).expect("encode"))
}

/// A tracker's first frame on a tracker-to-tracker connection.
fn peer_hello(from: u64) -> Vec<u8> {
    frame_of(&json!({"peer": {"version": proto::PROTOCOL_VERSION, "from": from}}))
}

/// A write forwarded by a follower to the leader.
fn forwarded_write(command: Value) -> Vec<u8> {
    frame_of(&json!({"op": "write", "body": {"command": command}}))
}

fn create_user_cmd(user: &str, password_hash: &str) -> Value {
    json!({"cmd": "create_user", "user": user, "password_hash": password_hash})
}

fn start_session_cmd(user: &str, token: &str) -> Value {
    json!({"cmd": "start_session", "user": user, "token": token})
}

/// openraft's ids as the trackers encode them.
fn leader_id(term: u64, node: u64) -> Value {
    json!({"term": term, "node_id": node})
}

fn raft_rpc(rpc: Value) -> Vec<u8> {
    frame_of(&json!({"op": "raft", "body": {"rpc": rpc}}))
}

/// A candidate `from` asking for votes at `term`, with a log far ahead.
fn fake_vote(term: u64, from: u64) -> Vec<u8> {
    raft_rpc(json!({"vote": {
        "vote": {"leader_id": leader_id(term, from), "committed": false},
        "last_log_id": {"leader_id": leader_id(term, from), "index": 1_000_000},
    }}))
}

/// A "leader" `from` of `term`: a heartbeat (no entries), or one entry that
/// rewrites index 1 of the log, committed at once.
fn fake_append(term: u64, from: u64, entry: Option<Value>) -> Vec<u8> {
    let vote = json!({"leader_id": leader_id(term, from), "committed": true});
    let rpc = match entry {
        None => json!({"append_entries": {
            "vote": vote, "prev_log_id": null, "entries": [], "leader_commit": null,
        }}),
        Some(cmd) => {
            let log_id = json!({"leader_id": leader_id(term, from), "index": 1});
            json!({"append_entries": {
                "vote": vote,
                "prev_log_id": null,
                "entries": [{"log_id": log_id, "payload": {"Normal": cmd}}],
                "leader_commit": log_id,
            }})
        }
    };
    raft_rpc(rpc)
}

/// How the attacker reaches a tracker.
#[derive(Clone)]
enum Via {
    /// Plain TCP: the protocol as it was before TLS.
    Plain,
    /// A TLS link presenting this endpoint's key.
    Tls(Endpoint),
}

/// What one attacker conversation got back.
#[derive(Debug, Default)]
struct Talk {
    /// The TLS handshake completed (always false for plain TCP).
    handshake: bool,
    /// Every byte received (decrypted, on TLS).
    received: Vec<u8>,
    /// The other end ended the connection (EOF or reset) within the wait.
    closed: bool,
}

impl Talk {
    /// The JSON frames within `received` (an answer of any kind).
    fn frames(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut rest = &self.received[..];
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if rest.len() < 4 + len {
                break;
            }
            if let Ok(v) = serde_json::from_slice(&rest[4..4 + len]) {
                out.push(v);
            }
            rest = &rest[4 + len..];
        }
        out
    }

    /// Whether anything that looks like a tracker's reply came back.
    fn any_reply(&self) -> bool {
        !self.frames().is_empty()
            || self.received.windows(7).any(|w| w == b"\"reply\"")
            || self.received.windows(8).any(|w| w == b"\"result\"")
    }
}

/// Connects to `addr` over `via`, writes `bytes` (without closing its
/// writing side, so a close is the other end's), then reads until the
/// other end closes, `want_frames` frames have come, or `wait` passes.
async fn talk(
    addr: SocketAddr,
    via: &Via,
    bytes: &[u8],
    want_frames: usize,
    wait: Duration,
) -> Talk {
    let mut t = Talk::default();
    let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
    else {
        t.closed = true;
        return t;
    };
    let _ = tcp.set_nodelay(true);
    match via {
        Via::Plain => exchange(tcp, bytes, want_frames, wait, &mut t).await,
        Via::Tls(endpoint) => match endpoint.connect(tcp).await {
            Ok(secured) => {
                t.handshake = true;
                exchange(secured.link, bytes, want_frames, wait, &mut t).await;
            }
            Err(_) => t.closed = true,
        },
    }
    t
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    bytes: &[u8],
    want_frames: usize,
    wait: Duration,
    t: &mut Talk,
) {
    let deadline = tokio::time::Instant::now() + wait;
    // A refusal may close the connection under the write: that is fine.
    let _ = tokio::time::timeout(wait, async {
        s.write_all(bytes).await?;
        s.flush().await
    })
    .await;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if want_frames > 0 && t.frames().len() >= want_frames {
            return;
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return,
            Ok(Ok(0) | Err(_)) => {
                t.closed = true;
                return;
            }
            Ok(Ok(n)) => t.received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Plays a daemon over TLS with the attacker's key: `hello`, then each
/// request of `requests`; returns each answer's `result`.
async fn daemon_calls(addr: SocketAddr, requests: &[Value]) -> Vec<Value> {
    let mut bytes =
        frame_of(&json!({"id": 0, "request": {"op": "hello", "version": proto::PROTOCOL_VERSION}}));
    for (i, r) in requests.iter().enumerate() {
        bytes.extend(frame_of(&json!({"id": i + 1, "request": r})));
    }
    let t = talk(
        addr,
        &Via::Tls(endpoint()),
        &bytes,
        requests.len() + 1,
        ANSWER_WAIT,
    )
    .await;
    let mut answers: Vec<Value> = t.frames();
    answers.sort_by_key(|a| a["id"].as_u64());
    answers
        .into_iter()
        .filter(|a| a["id"] != 0)
        .map(|a| a["result"].clone())
        .collect()
}

/// The error code of an answer's `result` (`{"Err": {"code": ..}}`), or
/// "ok".
fn answer_code(result: &Value) -> String {
    match result.get("Err") {
        Some(e) => e["code"].as_str().unwrap_or("?").to_owned(),
        None if result.get("Ok").is_some() => "ok".to_owned(),
        None => format!("no answer ({result})"),
    }
}

// ------------------------------------------------------------ recorders

/// Both directions of one proxied connection.
#[derive(Debug, Default, Clone)]
struct Conn {
    /// Client to server.
    up: Vec<u8>,
    /// Server to client.
    down: Vec<u8>,
    ended: bool,
}

/// Every connection a proxy carried.
#[derive(Debug, Default)]
struct Recording {
    conns: Mutex<Vec<Arc<Mutex<Conn>>>>,
}

impl Recording {
    fn snapshot(&self) -> Vec<Conn> {
        lock(&self.conns).iter().map(|c| lock(c).clone()).collect()
    }

    /// Every byte seen, both directions, all connections.
    fn all_bytes(&self) -> Vec<Vec<u8>> {
        self.snapshot()
            .into_iter()
            .flat_map(|c| [c.up, c.down])
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A TCP proxy on 127.0.0.1 that forwards every connection to `target`
/// (set once known) and records both directions. Returns its address.
fn start_proxy(
    rt: &tokio::runtime::Runtime,
    target: Arc<Mutex<Option<SocketAddr>>>,
    rec: Arc<Recording>,
) -> SocketAddr {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    rt.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Some(to) = *lock(&target) else {
                continue; // not ready: drop the connection
            };
            let conn = Arc::new(Mutex::new(Conn::default()));
            lock(&rec.conns).push(Arc::clone(&conn));
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(to).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = pump(cr, sw, Arc::clone(&conn), true);
                let down = pump(sr, cw, Arc::clone(&conn), false);
                tokio::join!(up, down);
                lock(&conn).ended = true;
            });
        }
    });
    addr
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    conn: Arc<Mutex<Conn>>,
    up: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut c = lock(&conn);
            let side = if up { &mut c.up } else { &mut c.down };
            side.extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// An impostor tracker: a TLS server with its own random key that records
/// every decrypted byte it receives.
struct Impostor {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
}

fn start_impostor(rt: &tokio::runtime::Runtime) -> Impostor {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind the impostor");
    let addr = listener.local_addr().expect("impostor address");
    let handshakes = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(Mutex::new(Vec::new()));
    let endpoint = endpoint();
    let (h, r) = (Arc::clone(&handshakes), Arc::clone(&received));
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (endpoint, h, r) = (endpoint.clone(), Arc::clone(&h), Arc::clone(&r));
            tokio::spawn(async move {
                let Ok(mut secured) = endpoint.accept(tcp).await else {
                    return;
                };
                h.fetch_add(1, Ordering::SeqCst);
                let mut buf = vec![0u8; 16 * 1024];
                // Bounded: the test's runtime ends with the test anyway.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while let Ok(Ok(n)) =
                    tokio::time::timeout_at(deadline, secured.link.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                    lock(&r).extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    Impostor {
        addr,
        handshakes,
        received,
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where a stream of `streams` holds a 64-byte run of `file` in clear, as
/// (stream, offset). Every 64-byte run of the file contains a whole
/// 32-byte-aligned block of it, so it is enough (and cheap) to look for
/// those blocks anywhere in the streams; 32 random bytes do not match by
/// chance.
fn find_file_run(streams: &[Vec<u8>], file: &[u8]) -> Option<(usize, usize)> {
    let blocks: HashSet<&[u8]> = file.chunks_exact(32).collect();
    assert!(blocks.len() > 1000, "the file is too small to be a probe");
    streams.iter().enumerate().find_map(|(i, s)| {
        s.windows(32)
            .position(|w| blocks.contains(w))
            .map(|at| (i, at))
    })
}

/// The session token in a daemon's `HOME/session.json`.
fn session_token(d: &Daemon) -> String {
    let path = d.home.join("session.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("session.json is JSON");
    let token = v["token"].as_str().expect("a token").to_owned();
    assert!(token.len() >= 16, "a real token: {token:?}");
    token
}

// ------------------------------------------------------------ processes

/// Runs `tracker ARGS` that is expected to end by itself; kills it by PID
/// after `START_TIMEOUT`. Returns (exit code, stdout, stderr); code -1 if
/// it had to be killed.
fn run_tracker(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(bin("tracker"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn tracker");
    let mut status = None;
    wait_until(START_TIMEOUT, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let code = match status {
        Some(st) => st.code().unwrap_or(-1),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            -1
        }
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (code, read(&out), read(&err))
}

fn os(s: impl AsRef<std::ffi::OsStr>) -> OsString {
    s.as_ref().to_os_string()
}

/// `tracker fingerprint --data-dir DIR`.
fn fingerprint_of_data_dir(dir: &Path) -> String {
    let (code, out, err) = run_tracker(&[
        os("fingerprint").as_os_str(),
        os("--data-dir").as_os_str(),
        dir.as_os_str(),
    ]);
    assert_eq!(code, 0, "tracker fingerprint --data-dir failed: {err}");
    out.trim().to_owned()
}

/// `create_user` through `d`, asserting it succeeds within [`WRITE_BOUND`];
/// its duration.
fn timed_create_user(d: &Daemon, user: &str) -> Duration {
    let t0 = Instant::now();
    let out = d.ctl(&["create_user", user, "pw-of-a-bystander"]);
    let took = t0.elapsed();
    assert_eq!(
        out.status, 0,
        "create_user {user} during the attack: {out:?}"
    );
    assert!(took < WRITE_BOUND, "create_user {user} took {took:?}");
    took
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

// ------------------------------------------------------------ 1. forged tracker traffic

/// Issue 11: a client that said `PeerHello` (node 2) could forward any
/// write: create a user with a chosen password hash, start a session for
/// alice with a token of its choosing. Now neither plain TCP nor TLS with
/// a key other than the cluster's gets a single frame to Raft.
#[test]
fn forged_peer_hello_and_forwarded_writes_are_refused() {
    let mut net = Net::start_with(Trackers(3));
    let rt = runtime();
    let d = net.daemon("d");
    d.signup("alice", "pw-alice");
    let leader = net.wait_leader(ELECTION_WAIT).expect("a leader");
    let forged_token = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";
    let chosen = "mallorys-chosen-password";
    let node_of = |i: usize| (i % 3 + 1) as u64; // another tracker's id
    let forgery = |claim: u64| {
        let mut b = peer_hello(claim);
        b.extend(forwarded_write(create_user_cmd(
            "mallory",
            &argon2_hash(chosen),
        )));
        b.extend(forwarded_write(start_session_cmd("alice", forged_token)));
        b
    };

    // Every tracker, the leader first: plain TCP, then TLS with a key of
    // the attacker's.
    let mut order: Vec<usize> = vec![leader];
    order.extend((0..3).filter(|&i| i != leader));
    for &i in &order {
        let addr = net.trackers[i].addr;
        let bytes = forgery(node_of(i + 1));
        let plain = rt.block_on(talk(addr, &Via::Plain, &bytes, 1, ANSWER_WAIT));
        assert!(
            plain.closed,
            "tracker {}: plain TCP forgery left open: {plain:?}",
            i + 1
        );
        assert!(
            !plain.any_reply(),
            "tracker {}: plain TCP forgery answered: {plain:?}",
            i + 1
        );
        let tls = rt.block_on(talk(addr, &Via::Tls(endpoint()), &bytes, 1, ANSWER_WAIT));
        assert!(
            tls.handshake,
            "tracker {}: TLS accepts any key at the handshake; refusing it is the tracker's job",
            i + 1
        );
        assert!(
            tls.closed,
            "tracker {}: forged peer over TLS left open",
            i + 1
        );
        assert!(
            tls.received.is_empty(),
            "tracker {}: forged peer over TLS got {} bytes back: {:?}",
            i + 1,
            tls.received.len(),
            String::from_utf8_lossy(&tls.received)
        );
    }

    // Nothing was written: mallory does not exist on any tracker, the
    // forged token is no session, alice's own session is intact.
    for i in 0..3 {
        let v = net.daemon_on(&format!("v{i}"), i);
        v.err(&["login", "mallory", chosen], "bad_credentials");
        let answers = rt.block_on(daemon_calls(
            net.trackers[i].addr,
            &[json!({"op": "list_groups", "token": forged_token})],
        ));
        assert_eq!(
            answers.len(),
            1,
            "tracker {}: one answer: {answers:?}",
            i + 1
        );
        assert_eq!(
            answer_code(&answers[0]),
            "not_logged_in",
            "tracker {}",
            i + 1
        );
    }
    assert_eq!(d.status()["user"], "alice");
    d.json(&["list_groups"]);

    // Control: the very same bytes from a holder of the cluster key are a
    // working forwarded write (so the refusal above was the key's doing).
    let control = cluster_endpoint(&net);
    let mut written = false;
    for &i in &order {
        let t = rt.block_on(talk(
            net.trackers[i].addr,
            &Via::Tls(control.clone()),
            &forgery(node_of(i + 1)),
            2,
            ANSWER_WAIT,
        ));
        let frames = t.frames();
        if frames.len() == 2 && frames.iter().all(|f| f["reply"] == "written") {
            written = true;
            break;
        }
    }
    assert!(
        written,
        "control: the cluster key's holder could not forward the write"
    );
    let v = net.daemon("control");
    v.wait_success(
        &["login", "mallory", chosen],
        "control: the forged user exists",
    );
}

/// Issue 11: a fake Vote / AppendEntries with a high term made the leader
/// step down, a stream of them stopped every write of a 3-tracker cluster
/// for 20 s, and one AppendEntries made a follower diverge. Now a storm of
/// them, over plain TCP and over TLS with the attacker's key, to the leader
/// and to a follower, changes no term, no leader and no write.
#[test]
fn fake_votes_and_append_entries_change_no_leader_and_stop_no_write() {
    let mut net = Net::start_with(Trackers(3));
    let rt = runtime();
    let d = net.daemon("d");
    d.signup("alice", "pw-before");
    let leader = net.wait_leader(ELECTION_WAIT).expect("a leader");
    let before = net.reported_leader().expect("a reported leader");
    let follower = (leader + 1) % 3;
    let targets = [
        (net.trackers[leader].addr, (follower + 1) as u64),
        (net.trackers[follower].addr, (leader + 1) as u64),
    ];
    let evil = create_user_cmd("alice", &argon2_hash("evil"));
    let storm_bytes: Vec<Vec<u8>> = targets
        .iter()
        .map(|&(_, claim)| {
            let mut b = peer_hello(claim);
            b.extend(fake_vote(HIGH_TERM, claim));
            b.extend(fake_append(HIGH_TERM, claim, None));
            b.extend(fake_append(HIGH_TERM + 1, claim, Some(evil.clone())));
            b
        })
        .collect();

    // The storm: connection after connection, for a few seconds.
    const STORM: Duration = Duration::from_secs(6);
    let answered = Arc::new(AtomicUsize::new(0));
    let attempts = Arc::new(AtomicUsize::new(0));
    let storm = {
        let (answered, attempts) = (Arc::clone(&answered), Arc::clone(&attempts));
        let storm_bytes = storm_bytes.clone();
        rt.spawn(async move {
            let end = tokio::time::Instant::now() + STORM;
            while tokio::time::Instant::now() < end {
                for (&(addr, _), bytes) in targets.iter().zip(&storm_bytes) {
                    for via in [Via::Plain, Via::Tls(endpoint())] {
                        let t = talk(addr, &via, bytes, 1, Duration::from_millis(300)).await;
                        attempts.fetch_add(1, Ordering::SeqCst);
                        if t.any_reply() || (t.handshake && !t.received.is_empty()) {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
        })
    };
    // Writes go on during the storm, each within the bound.
    let t0 = Instant::now();
    let mut during = 0;
    while t0.elapsed() < STORM {
        timed_create_user(&d, &format!("during{during}"));
        during += 1;
    }
    rt.block_on(storm).expect("the storm task");
    let attempts = attempts.load(Ordering::SeqCst);
    assert!(attempts >= 8, "the storm made only {attempts} attempts");
    assert_eq!(
        answered.load(Ordering::SeqCst),
        0,
        "a forged Raft RPC got an answer ({attempts} attempts)"
    );
    assert!(during >= 2, "only {during} writes during the storm");
    timed_create_user(&d, "after");

    // No step-down, no new term: the same leader, as every tracker says.
    let after = net.reported_leader().expect("a reported leader");
    assert_eq!(after, before, "(term, leader) before and after the storm");
    assert_eq!(net.wait_leader(ELECTION_WAIT), Some(leader));
    // No replica diverged: the real password works on every tracker, the
    // attacker's does not.
    for i in 0..3 {
        let v = net.daemon_on(&format!("v{i}"), i);
        v.err(&["login", "alice", "evil"], "bad_credentials");
        v.wait_success(
            &["login", "alice", "pw-before"],
            "alice's password on every tracker",
        );
        v.ok(&["logout"]);
        v.wait_success(
            &["login", "after", "pw-of-a-bystander"],
            "the last write on every tracker",
        );
    }

    // Control: one heartbeat of the same shape from a holder of the
    // cluster key does move the cluster to the high term.
    let control = cluster_endpoint(&net);
    let claim = targets[0].1;
    let mut b = peer_hello(claim);
    b.extend(fake_append(HIGH_TERM, claim, None));
    let t = rt.block_on(talk(targets[0].0, &Via::Tls(control), &b, 1, ANSWER_WAIT));
    assert!(
        t.frames().first().is_some_and(|f| f["reply"] == "raft"),
        "control: the leader answers a key holder's AppendEntries: {:?}",
        String::from_utf8_lossy(&t.received)
    );
    let moved = wait_until(ELECTION_WAIT, || {
        net.reported_leader()
            .is_some_and(|(term, _)| term >= HIGH_TERM)
    });
    assert!(
        moved,
        "control: a key holder's high term should reach the cluster"
    );
}

// ------------------------------------------------------------ 2. impostor trackers

/// An impostor tracker started with its own key and a tracker_info.txt
/// naming the real cluster cannot join it, stop its writes or learn its
/// state. Two impostors at once: one lists the real three and itself as a
/// fourth line (so it believes it is node 4); one puts itself on line 1 in
/// place of the real tracker 1 (so it believes it founds the cluster and
/// probes/campaigns towards the real 2 and 3).
#[test]
fn impostor_trackers_with_their_own_key_cannot_join_stop_or_read_the_cluster() {
    let mut net = Net::start_with(Trackers(3));
    let d = net.daemon("d");
    d.signup("alice", "pw-alice");
    let marker = format!("marker{}", rand::random::<u64>());
    d.ok(&["create_group", &marker]);
    let leader = net.wait_leader(ELECTION_WAIT).expect("a leader");
    let before = net.reported_leader().expect("a reported leader");

    let dir = net.mkdir("impostors");
    let key = dir.join("impostor.key");
    let impostor_fp = keygen(&key);
    let real = net.tracker_addrs();
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
        format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
    );
    let info_a = dir.join("info-a.txt");
    std::fs::write(
        &info_a,
        format!("{}\n{}\n{}\n{a_addr}\n", real[0], real[1], real[2]),
    )
    .expect("write info");
    let info_b = dir.join("info-b.txt");
    std::fs::write(&info_b, format!("{b_addr}\n{}\n{}\n", real[1], real[2])).expect("write info");
    let args = [os("--cluster-key"), os(&key)];
    let imp_a = Tracker::spawn_standalone(
        &info_a,
        4,
        a_addr,
        &dir.join("a"),
        &dir.join("a.log"),
        &args,
    );
    let imp_b = Tracker::spawn_standalone(
        &info_b,
        1,
        b_addr,
        &dir.join("b"),
        &dir.join("b.log"),
        &args,
    );

    // While they run, the real cluster keeps its leader and its writes.
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_secs(5) {
        timed_create_user(&d, &format!("while{n}"));
        n += 1;
    }
    d.ok(&["create_group", "after-impostors"]);
    assert_eq!(
        net.reported_leader(),
        Some(before),
        "the real cluster's (term, leader)"
    );
    assert_eq!(net.wait_leader(ELECTION_WAIT), Some(leader));

    // They never learn the state: a daemon that trusts an impostor on
    // first use cannot log in as alice, and the impostors' stores hold
    // nothing of the cluster's (the real stores do: the probe works).
    for (name, imp) in [("ua", &imp_a), ("ub", &imp_b)] {
        let info = net.dir().join(format!("{name}.txt"));
        std::fs::write(&info, format!("{}\n", imp.addr)).expect("write info");
        let u = net.daemon_via(name, &[], info);
        let out = u.ctl(&["login", "alice", "pw-alice"]);
        assert_ne!(
            out.status, 0,
            "login as alice through impostor {name}: {out:?}"
        );
        let code = out.code();
        assert!(
            code == "bad_credentials" || code == "tracker_unavailable",
            "login through impostor {name}: {out:?}"
        );
        assert!(u.status()["user"].is_null());
        let known = std::fs::read_to_string(u.home.join("known_cluster")).unwrap_or_default();
        assert_eq!(
            known.trim(),
            impostor_fp,
            "{name} did meet the impostor itself"
        );
    }
    let holds_marker = |dir: &Path| -> bool {
        walk(dir)
            .iter()
            .any(|f| std::fs::read(f).is_ok_and(|bytes| contains(&bytes, marker.as_bytes())))
    };
    assert!(
        holds_marker(&net.trackers[leader].data_dir),
        "probe: the real store holds the marker"
    );
    for imp in [&imp_a, &imp_b] {
        assert!(
            !holds_marker(&imp.data_dir),
            "impostor {} learnt the cluster's state; log:\n{}",
            imp.addr,
            blackbox::log_tail(&imp.log)
        );
    }
    drop((imp_a, imp_b));
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

// ------------------------------------------------------------ 3. daemon pointed at an impostor

/// tracker_info.txt names the real cluster's fingerprint, but the address
/// is an impostor's: the daemon refuses it with `untrusted_tracker` before
/// it sends anything, so the impostor never sees the password.
#[test]
fn a_pinned_daemon_refuses_an_impostor_and_sends_it_nothing() {
    let net = Net::start_with(Trackers(1));
    let rt = runtime();
    let fp = fingerprint_of_data_dir(&net.trackers[0].data_dir);
    let impostor = start_impostor(&rt);
    let password = "pw-never-leaves-3a";

    // Probe: the same pinning with the real address works.
    let good = net.dir().join("pinned-real.txt");
    std::fs::write(&good, format!("{} {fp}\n", net.trackers[0].addr)).expect("write info");
    let real = net.daemon_via("real", &[], good);
    real.ok(&["create_user", "alice", password]);
    real.ok(&["login", "alice", password]);

    let bad = net.dir().join("pinned-impostor.txt");
    std::fs::write(&bad, format!("{} {fp}\n", impostor.addr)).expect("write info");
    let d = net.daemon_unconnected("d", bad);
    let out = d.err(&["login", "alice", password], "untrusted_tracker");
    let msg = out
        .json
        .as_ref()
        .and_then(|j| j["error"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("tracker_info.txt") && msg.contains(&fp),
        "the message names the trusted identity and how to accept a new one: {msg}"
    );
    assert!(
        wait_until(START_TIMEOUT, || impostor.handshakes.load(Ordering::SeqCst)
            >= 1),
        "the daemon should have reached the impostor (else this test proves nothing)"
    );
    let got = lock(&impostor.received).clone();
    assert!(
        got.is_empty(),
        "the impostor received {} bytes: {:?}",
        got.len(),
        String::from_utf8_lossy(&got)
    );
    assert!(!contains(&got, password.as_bytes()));
    assert!(d.status()["user"].is_null());
    assert!(
        !d.home.join("known_cluster").exists(),
        "a pinned daemon remembers nothing"
    );
}

/// Trust on first use: a daemon that met the real cluster (and is logged
/// in) is later pointed at an impostor and restarted: it refuses it with
/// `untrusted_tracker` and sends it neither its session token nor a new
/// password.
#[test]
fn a_daemon_that_met_the_cluster_refuses_an_impostor_later() {
    let net = Net::start_with(Trackers(1));
    let rt = runtime();
    let impostor = start_impostor(&rt);
    let fp = fingerprint_of_data_dir(&net.trackers[0].data_dir);
    let info = net.dir().join("d-info.txt");
    std::fs::write(&info, format!("{}\n", net.trackers[0].addr)).expect("write info");
    let mut d = net.daemon_via("d", &[], info);
    d.signup("alice", "pw-alice-3b");
    let known = std::fs::read_to_string(d.home.join("known_cluster")).expect("known_cluster");
    assert_eq!(known.trim(), fp, "trusted on first use");
    let token = session_token(&d);

    std::fs::write(d.info_path(), format!("{}\n", impostor.addr)).expect("rewrite info");
    d.restart();
    // Still logged in (session.json): a call that needs the tracker is
    // refused, its token kept home.
    let out = d.err(&["list_groups"], "untrusted_tracker");
    let msg = out
        .json
        .as_ref()
        .and_then(|j| j["error"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("known_cluster"),
        "the message says how to accept a new cluster: {msg}"
    );
    // A daemon that met the cluster and logged out there: its next login
    // (a password this time) is refused the same way.
    let info_e = net.dir().join("e-info.txt");
    std::fs::write(&info_e, format!("{}\n", net.trackers[0].addr)).expect("write info");
    let mut e = net.daemon_via("e", &[], info_e);
    e.signup("bob", "pw-bob-3b");
    e.ok(&["logout"]);
    std::fs::write(e.info_path(), format!("{}\n", impostor.addr)).expect("rewrite info");
    e.restart();
    e.err(&["login", "bob", "pw-bob-3b"], "untrusted_tracker");
    assert!(
        wait_until(START_TIMEOUT, || impostor.handshakes.load(Ordering::SeqCst)
            >= 2),
        "the daemons should have reached the impostor (else this proves nothing)"
    );
    let got = lock(&impostor.received).clone();
    assert!(got.is_empty(), "the impostor received {} bytes", got.len());
    assert!(!contains(&got, token.as_bytes()) && !contains(&got, b"pw-bob-3b"));
    // Still the real cluster's identity on file.
    let known = std::fs::read_to_string(d.home.join("known_cluster")).expect("known_cluster");
    assert_eq!(known.trim(), fp);
}

// ------------------------------------------------------------ 4. recording proxies

/// A recording proxy between daemons and the tracker, and one between two
/// peers, carry a whole session (accounts, login, group, a 3 MiB upload
/// and its download) and see neither a password, a session token, a
/// protocol word, nor any 64-byte run of the file.
#[test]
fn recording_proxies_see_no_password_token_or_file_byte() {
    let net = Net::start();
    let rt = runtime();
    let to_tracker = Arc::new(Mutex::new(Some(net.trackers[0].addr)));
    let tracker_rec = Arc::new(Recording::default());
    let tracker_proxy = start_proxy(&rt, to_tracker, Arc::clone(&tracker_rec));
    let to_seeder = Arc::new(Mutex::new(None));
    let peer_rec = Arc::new(Recording::default());
    let peer_proxy = start_proxy(&rt, Arc::clone(&to_seeder), Arc::clone(&peer_rec));

    let info = net.dir().join("via-proxy.txt");
    std::fs::write(&info, format!("{tracker_proxy}\n")).expect("write info");
    // The seeder listens on a port of ours and advertises the proxy's.
    let seeder_listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    *lock(&to_seeder) = Some(seeder_listen);
    let (advertise, listen) = (peer_proxy.to_string(), seeder_listen.to_string());
    let a = net.daemon_via(
        "a",
        &["--listen", &listen, "--advertise", &advertise],
        info.clone(),
    );
    let b = net.daemon_via("b", &[], info);
    assert_eq!(
        a.status()["listen"],
        advertise,
        "the seeder advertises the proxy"
    );

    let (pw_a, pw_b) = ("alice-Secret-Pw-4a9z", "bob-Secret-Pw-7q2x");
    a.ok(&["create_user", "alice", pw_a]);
    a.ok(&["create_user", "bob", pw_b]);
    a.ok(&["login", "alice", pw_a]);
    b.ok(&["login", "bob", pw_b]);
    a.ok(&["create_group", "g"]);
    b.ok(&["join_group", "g"]);
    a.ok(&["accept_request", "g", "bob"]);
    let src = net.mkdir("src").join("secret.bin");
    let sha = random_file(&src, 3 * 1024 * 1024);
    a.ok(&["upload_file", p(&src), "g"]);
    b.wait_online("g", "secret.bin", 1, "the seeder is online");
    let dest = net.mkdir("dl");
    b.ok(&["download_file", "g", "secret.bin", p(&dest)]);
    assert_eq!(
        sha1_file(&dest.join("secret.bin")),
        sha,
        "the download is the file"
    );

    // The proxies really carried the traffic.
    assert_eq!(a.status()["tracker"], tracker_proxy.to_string());
    assert_eq!(b.status()["tracker"], tracker_proxy.to_string());
    let peer_bytes: usize = peer_rec.snapshot().iter().map(|c| c.down.len()).sum();
    assert!(
        peer_bytes >= 3 * 1024 * 1024,
        "the file went through the peer proxy ({peer_bytes} bytes seen)"
    );

    let tokens = [session_token(&a), session_token(&b)];
    let file = std::fs::read(&src).expect("read the file");
    // The check itself finds the file, whole or cut at an odd offset.
    let cut = file[1000..1000 + 64].to_vec();
    assert_eq!(
        find_file_run(std::slice::from_ref(&file), &file),
        Some((0, 0))
    );
    assert!(find_file_run(&[vec![7u8; 100], cut], &file).is_some());
    for (what, rec) in [("daemon-tracker", &tracker_rec), ("peer-peer", &peer_rec)] {
        let streams = rec.all_bytes();
        assert!(!streams.is_empty(), "{what}: nothing recorded");
        for s in &streams {
            for secret in [
                pw_a.as_bytes(),
                pw_b.as_bytes(),
                tokens[0].as_bytes(),
                tokens[1].as_bytes(),
            ] {
                assert!(
                    !contains(s, secret),
                    "{what}: {:?} crossed the network in clear",
                    String::from_utf8_lossy(secret)
                );
            }
            for word in [
                &b"\"op\""[..],
                b"\"request\"",
                b"login",
                b"secret.bin",
                b"alice",
            ] {
                assert!(
                    !contains(s, word),
                    "{what}: protocol text {:?} readable on the wire",
                    String::from_utf8_lossy(word)
                );
            }
        }
        if let Some((i, at)) = find_file_run(&streams, &file) {
            panic!("{what}: stream {i} carries file bytes in clear at offset {at}");
        }
    }
}

// ------------------------------------------------------------ 5. replay

/// A recorded daemon-tracker connection (hello, create_user, login,
/// create_group) replayed later on a fresh connection achieves nothing: the
/// TLS 1.3 handshake fails (fresh server randoms and ephemeral keys make
/// the recorded client Finished invalid), the tracker closes promptly, and
/// no state changes — the replayed login does not take over alice's
/// session, the deleted group is not recreated.
#[test]
fn a_recorded_tracker_connection_replayed_later_changes_nothing() {
    let net = Net::start();
    let rt = runtime();
    let tracker = net.trackers[0].addr;
    let rec = Arc::new(Recording::default());
    let proxy = start_proxy(&rt, Arc::new(Mutex::new(Some(tracker))), Arc::clone(&rec));
    let info = net.dir().join("d-info.txt");
    std::fs::write(&info, format!("{proxy}\n")).expect("write info");
    let mut d = net.daemon_via("d", &[], info);
    d.ok(&["create_user", "alice", "pw-replay"]);
    d.ok(&["login", "alice", "pw-replay"]);
    d.ok(&["create_group", "gx"]);
    d.stop();
    assert!(
        wait_until(START_TIMEOUT, || rec.snapshot().iter().all(|c| c.ended)),
        "the recorded connections end with the daemon"
    );
    let recorded: Vec<Conn> = rec
        .snapshot()
        .into_iter()
        .filter(|c| !c.up.is_empty())
        .collect();
    assert!(!recorded.is_empty(), "a connection was recorded");

    // The same daemon, straight to the tracker now: same session; the
    // group goes away (its only member leaves).
    std::fs::write(d.info_path(), format!("{tracker}\n")).expect("rewrite info");
    d.restart();
    d.wait_success(&["list_groups"], "the session resumes");
    d.ok(&["leave_group", "gx"]);
    assert_eq!(d.json(&["list_groups"]), json!([]));

    for (i, c) in recorded.iter().enumerate() {
        let t0 = Instant::now();
        let t = rt.block_on(talk(
            tracker,
            &Via::Plain,
            &c.up,
            0,
            Duration::from_secs(15),
        ));
        let took = t0.elapsed();
        assert!(
            t.closed,
            "replay {i}: the tracker kept the connection open for {took:?}"
        );
        assert!(
            took < Duration::from_secs(11),
            "replay {i}: closed only after {took:?}"
        );
        let n = t.received.len().min(c.down.len()).min(200);
        assert!(
            n == 0 || t.received[..n] != c.down[..n],
            "replay {i}: the tracker answered exactly as recorded"
        );
        assert!(
            t.received.len() < c.down.len(),
            "replay {i}: the tracker sent as much as in the real session ({} >= {} bytes)",
            t.received.len(),
            c.down.len()
        );
    }

    // Nothing changed: alice's session is still this daemon's, gx is gone.
    assert_eq!(d.status()["user"], "alice");
    assert_eq!(d.json(&["list_groups"]), json!([]));
    d.ok(&["create_group", "gy"]);
}

// ------------------------------------------------------------ 6. keys at the command line

/// `tracker keygen`, `tracker fingerprint`, and the refusals at start: a
/// cluster without a key, a key that is not the one tracker_info.txt names.
#[test]
fn cluster_keys_are_made_once_kept_secret_and_checked_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("p2pk")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let key = dir.path().join("cluster.key");
    let fp = keygen(&key);
    assert!(
        fp.starts_with("sha256:") && fp.len() == 7 + 64,
        "keygen prints the fingerprint: {fp:?}"
    );
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the key file's mode");
    let original = std::fs::read(&key).expect("read key");
    let (code, _, err) = run_tracker(&[os("keygen").as_os_str(), key.as_os_str()]);
    assert_ne!(code, 0, "keygen over an existing file must fail");
    assert!(code != -1, "keygen should not hang");
    assert!(!err.trim().is_empty(), "and say why");
    assert_eq!(
        std::fs::read(&key).expect("read key"),
        original,
        "the key is unchanged"
    );
    let (code, out, err) = run_tracker(&[
        os("fingerprint").as_os_str(),
        os("--cluster-key").as_os_str(),
        key.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), fp);

    // Three trackers and no key: refused, saying how to make one.
    let info3 = dir.path().join("info3.txt");
    std::fs::write(
        &info3,
        format!(
            "127.0.0.1:{}\n127.0.0.1:{}\n127.0.0.1:{}\n",
            free_port(),
            free_port(),
            free_port()
        ),
    )
    .expect("write info");
    let data = dir.path().join("t1");
    let (code, _, err) = run_tracker(&[
        info3.as_os_str(),
        os("1").as_os_str(),
        os("--data-dir").as_os_str(),
        data.as_os_str(),
    ]);
    assert!(
        code > 0,
        "a cluster without a key must not start (exit {code}): {err}"
    );
    assert!(
        err.contains("tracker keygen"),
        "the refusal says how to make a key: {err}"
    );

    // A key whose fingerprint is not the one tracker_info.txt names.
    let other = dir.path().join("other.key");
    let other_fp = keygen(&other);
    assert_ne!(other_fp, fp);
    let info1 = dir.path().join("info1.txt");
    let port = free_port();
    std::fs::write(&info1, format!("127.0.0.1:{port} {fp}\n")).expect("write info");
    let data = dir.path().join("t-other");
    let (code, _, err) = run_tracker(&[
        info1.as_os_str(),
        os("1").as_os_str(),
        os("--data-dir").as_os_str(),
        data.as_os_str(),
        os("--cluster-key").as_os_str(),
        other.as_os_str(),
    ]);
    assert!(
        code > 0,
        "a tracker with the wrong key must not start (exit {code}): {err}"
    );
    assert!(
        err.contains(&fp) || err.contains(&other_fp),
        "the refusal names the fingerprints: {err}"
    );

    // The right key with that file does start (so the refusal was the
    // key's), and a single tracker's own key is what `fingerprint
    // --data-dir` and a daemon on first use both see.
    let data = dir.path().join("t-right");
    let right = Tracker::spawn_standalone(
        &info1,
        1,
        format!("127.0.0.1:{port}").parse().expect("addr"),
        &data,
        &dir.path().join("right.log"),
        &[os("--cluster-key"), os(&key)],
    );
    drop(right);
    let net = Net::start_with(Trackers(1));
    let own = fingerprint_of_data_dir(&net.trackers[0].data_dir);
    assert!(own.starts_with("sha256:") && own != fp, "{own}");
    let d = net.daemon("d");
    d.signup("alice", "pw");
    let known = std::fs::read_to_string(d.home.join("known_cluster")).expect("known_cluster");
    assert_eq!(
        known.trim(),
        own,
        "the daemon trusted the tracker's own key"
    );
}
