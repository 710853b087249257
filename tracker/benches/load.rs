//! Tracker load generator: many simulated daemons against real tracker
//! processes, speaking the real tracker protocol (`proto::tracker`).
//!
//! ```text
//! cargo bench -p tracker --bench load                  # one tracker: reads
//! cargo bench -p tracker --bench load -- --trackers 3   # Raft cluster: reads, then writes
//! cargo bench -p tracker --bench load -- --help         # every option
//! ```
//!
//! (`cargo bench` builds the `tracker` binary with the release settings and
//! hands its path to this program; `--tracker-bin PATH` overrides it.)
//!
//! What it does, in order; every wait is bounded:
//! 1. Starts the tracker (one, or with `--trackers 3` a three-node Raft
//!    cluster sharing a generated tracker_info file) on free ports of
//!    127.0.0.1 with data in a temporary directory.
//! 2. Set-up, not measured: opens one connection per simulated daemon
//!    (`--daemons`, 2,000; spread over the trackers), creates each user and
//!    logs it in (argon2id on the tracker, so this runs with bounded
//!    concurrency), then heartbeats every daemon at the real
//!    `HEARTBEAT_INTERVAL` until the end. Forms `--groups` groups (daemon
//!    `i` is a member of group `i % groups`; the first daemons own them) and
//!    registers `--files` files spread over the groups, each by `--holders`
//!    members, exactly as `upload_file` does (`RegisterFile`, stamped with a
//!    request id, 1..64 MiB so 2..128 piece hashes).
//! 3. Reads, measured for `--secs`: `--clients` daemons (each on its own
//!    connection) alternate `ListFiles` of their group and `Locate` of a
//!    random file of it (what a download starts with). `--rate 0` (the
//!    default) is a closed loop: each client sends its next call when the
//!    previous one is answered, so this measures capacity. `--rate N` is an
//!    open loop of N calls/s in total: calls go out on schedule whether or
//!    not earlier ones were answered, and latency counts from the scheduled
//!    time (no coordinated omission).
//! 4. Writes, measured for `--write-secs` (default on with `--trackers 3`,
//!    `--write-secs 0` skips them): `--write-clients` daemons register new
//!    files, in a closed loop or, with `--write-rate N`, an open loop of N
//!    writes/s in total.
//! 5. Prints ops/s, p50/p99/max latency and errors per kind, and for each
//!    tracker its peak RSS (VmHWM, reset at the start of each measured phase
//!    through /proc/PID/clear_refs, plus the peak over its whole life) and
//!    CPU seconds (utime + stime) used during each phase. Then stops the
//!    trackers with SIGTERM by PID (SIGKILL if they do not stop in 10 s).

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use proto::frame::{read_frame, write_frame, MAX_TRACKER_FRAME_BYTES};
use proto::geometry::{piece_count, PIECE_SIZE_BYTES};
use proto::tracker::{
    FileMeta, RequestId, SessionToken, TrackerAnswer, TrackerCall, TrackerReply, TrackerRequest,
    HEARTBEAT_INTERVAL,
};
use proto::{ErrorCode, FileName, GroupId, UserId, WireError, PROTOCOL_VERSION};
use rand::{Rng, SeedableRng};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Load generator for the p2pshare tracker (see the top of load.rs).
#[derive(Debug, Parser, Clone)]
struct Args {
    /// Trackers to start: 1, or 3 for a Raft cluster.
    #[arg(long, default_value_t = 1)]
    trackers: usize,
    /// Simulated daemons (users), each with its own connection.
    #[arg(long, default_value_t = 2000)]
    daemons: usize,
    /// Groups; daemon i is a member of group i % groups.
    #[arg(long, default_value_t = 50)]
    groups: usize,
    /// Files registered during set-up, spread over the groups.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Members registering (holding) each set-up file.
    #[arg(long, default_value_t = 2)]
    holders: usize,
    /// Concurrent query clients in the read phase.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Length of the read phase, seconds.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Total read calls per second (open loop); 0: closed loop.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Total writes per second in the write phase (open loop, latency from
    /// the scheduled time); 0: closed loop.
    #[arg(long, default_value_t = 0)]
    write_rate: u64,
    /// Concurrent writers in the write phase.
    #[arg(long, default_value_t = 200)]
    write_clients: usize,
    /// Length of the write phase, seconds [default: 20 with --trackers 3,
    /// else 0 (skipped)].
    #[arg(long)]
    write_secs: Option<u64>,
    /// Logins and user creations in flight during set-up (argon2id costs
    /// ~19 MiB and tens of ms of CPU each on the tracker).
    #[arg(long, default_value_t = 4)]
    login_concurrency: usize,
    /// Other set-up calls in flight.
    #[arg(long, default_value_t = 128)]
    setup_concurrency: usize,
    /// The tracker binary [default: the one cargo built with this bench].
    #[arg(long)]
    tracker_bin: Option<PathBuf>,
    /// Keep the temporary directory (data and tracker logs).
    #[arg(long)]
    keep: bool,
    /// The trackers' log filter (their RUST_LOG), e.g.
    /// `info,tracker::raft::write=debug` for each write batch's timing
    /// (with --keep to read the logs).
    #[arg(long, default_value = "info")]
    tracker_log: String,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A call that takes longer than this counts as an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the trackers get to come up (and elect a leader).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a tracker gets to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const PASSWORD: &str = "load-generator-password";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.trackers == 0 || args.daemons == 0 || args.groups == 0 {
        bail!("--trackers, --daemons and --groups must be positive");
    }
    if args.groups > args.daemons
        || args.clients > args.daemons
        || args.write_clients > args.daemons
    {
        bail!("--groups, --clients and --write-clients must not exceed --daemons");
    }
    if args.holders == 0 || args.holders > args.daemons / args.groups {
        bail!("--holders must be between 1 and the members per group");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::Builder::new().prefix("tracker-load-").tempdir()?;
    let mut cluster = Trackers::start(&args, dir.path())?;
    let outcome = rt.block_on(run(&args, &cluster));
    let stopped = cluster.stop();
    if outcome.is_err() || args.keep {
        let kept = dir.keep();
        eprintln!("data and tracker logs kept in {}", kept.display());
    }
    outcome?;
    stopped
}

// ------------------------------------------------------------ processes

struct Trackers {
    children: Vec<Child>,
    addrs: Vec<SocketAddr>,
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let l = StdListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

impl Trackers {
    fn start(args: &Args, dir: &Path) -> anyhow::Result<Trackers> {
        let bin = match &args.tracker_bin {
            Some(b) => b.clone(),
            None => PathBuf::from(env!("CARGO_BIN_EXE_tracker")),
        };
        let addrs = (0..args.trackers)
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let info = dir.join("tracker_info.txt");
        let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
        std::fs::write(&info, text)?;
        // Every tracker of a cluster holds the same key.
        let key = dir.join("cluster.key");
        p2p_link::ClusterKey::generate()?.save_new(&key)?;
        let mut trackers = Trackers {
            children: Vec::new(),
            addrs: addrs.clone(),
        };
        for n in 1..=args.trackers {
            let log = std::fs::File::create(dir.join(format!("tracker-{n}.log")))?;
            let child = Command::new(&bin)
                .arg(&info)
                .arg(n.to_string())
                .arg("--data-dir")
                .arg(dir.join(format!("data-{n}")))
                .arg("--cluster-key")
                .arg(&key)
                // Every simulated daemon connects from 127.0.0.1.
                .args(["--max-connections-per-ip", "1000000"])
                .env("RUST_LOG", &args.tracker_log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            trackers.children.push(child);
        }
        println!(
            "started {} tracker(s) from {} (pids {:?}) at {:?}",
            args.trackers,
            bin.display(),
            trackers.pids(),
            addrs
        );
        Ok(trackers)
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// SIGTERM each tracker by PID, wait up to [`STOP_TIMEOUT`], then SIGKILL.
    fn stop(&mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(Some(_))) {
                continue;
            }
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            result = Err(anyhow!("tracker {} exited with {status}", child.id()));
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        result = Err(anyhow!("tracker {} did not stop; killed", child.id()));
                        break;
                    }
                }
            }
        }
        self.children.clear();
        result
    }
}

impl Drop for Trackers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Peak and current resident memory and CPU time of one process.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStats {
    hwm_kib: u64,
    rss_kib: u64,
    cpu_ticks: u64,
}

fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unreadable /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0) };
    Ok(ProcStats {
        hwm_kib: kib("VmHWM:"),
        rss_kib: kib("VmRSS:"),
        cpu_ticks: ticks(11) + ticks(12),
    })
}

/// Resets the process's peak RSS (VmHWM) to its current RSS.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ------------------------------------------------------------ connection

/// What the reader needs of an answer to route it and to count errors;
/// the reply body is skipped without being built.
#[derive(Deserialize)]
struct LightAnswer {
    id: u64,
    result: Result<IgnoredAny, WireError>,
}

/// An answer: the raw frame when it is a success (for callers that look
/// inside), or the tracker's refusal.
type Raw = Result<Vec<u8>, WireError>;

/// One daemon's connection: calls multiplexed by id, like p2pd's link.
struct Conn {
    outgoing: mpsc::Sender<Vec<u8>>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Raw>>>>,
    next_id: AtomicU64,
    /// Names this daemon's writes (request ids), as p2pd does.
    client: u64,
    next_seq: AtomicU64,
}

fn lost(what: &str) -> WireError {
    WireError::new(ErrorCode::TrackerUnavailable, what)
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Arc<Conn>> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect to {addr} timed out"))??;
        stream.set_nodelay(true)?;
        // Each simulated daemon has its own link key, as p2pd does; the
        // tracker's identity is not checked (it is the one just started).
        let me = p2p_link::Endpoint::new(&p2p_link::KeyPairDoc::generate()?);
        let link = me.connect(stream).await?.link;
        let (rd, mut wr) = p2p_link::tls::split(link);
        let (outgoing, mut queue) = mpsc::channel::<Vec<u8>>(256);
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Raw>>>> = Arc::default();
        tokio::spawn(async move {
            while let Some(frame) = queue.recv().await {
                if write_frame(&mut wr, &frame, MAX_TRACKER_FRAME_BYTES)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let routes = Arc::clone(&pending);
        tokio::spawn(async move {
            let mut rd = BufReader::new(rd);
            while let Ok(Some(frame)) = read_frame(&mut rd, MAX_TRACKER_FRAME_BYTES).await {
                let Ok(light) = serde_json::from_slice::<LightAnswer>(&frame) else {
                    break;
                };
                let waiter = routes.lock().expect("pending lock").remove(&light.id);
                if let Some(tx) = waiter {
                    let _ = tx.send(light.result.map(|_| frame));
                }
            }
            // Dropping the senders fails every call still waiting.
            routes.lock().expect("pending lock").clear();
        });
        let conn = Arc::new(Conn {
            outgoing,
            pending,
            next_id: AtomicU64::new(1),
            client: rand::random(),
            next_seq: AtomicU64::new(1),
        });
        conn.call(TrackerRequest::Hello {
            version: PROTOCOL_VERSION,
        })
        .await
        .map_err(|e| anyhow!("hello to {addr}: {e}"))?;
        Ok(conn)
    }

    /// Sends one call (stamped with a request id if it is a write, as p2pd
    /// does) and waits for its answer, at most [`CALL_TIMEOUT`].
    async fn call(&self, request: TrackerRequest) -> Raw {
        use TrackerRequest as R;
        let write = matches!(
            request,
            R::CreateUser { .. }
                | R::CreateGroup { .. }
                | R::JoinGroup { .. }
                | R::AcceptRequest { .. }
                | R::RegisterFile { .. }
        );
        let dedup = write.then(|| RequestId {
            client: self.client,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = serde_json::to_vec(&TrackerCall { id, request, dedup })
            .map_err(|e| lost(&format!("cannot encode: {e}")))?;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        if self.outgoing.send(frame).await.is_err() {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err(lost("connection closed"));
        }
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(lost("connection closed before the answer")),
            Err(_) => {
                self.pending.lock().expect("pending lock").remove(&id);
                Err(lost("no answer in time"))
            }
        }
    }
}

/// Decodes a successful answer fully.
fn reply(raw: &[u8]) -> anyhow::Result<TrackerReply> {
    let answer: TrackerAnswer = serde_json::from_slice(raw)?;
    answer.result.map_err(|e| anyhow!("{e}"))
}

// ------------------------------------------------------------ workload

struct Daemon {
    user: UserId,
    conn: Arc<Conn>,
    token: SessionToken,
    group: GroupId,
    peer_addr: SocketAddr,
}

fn user(i: usize) -> UserId {
    format!("u{i}").parse().expect("valid user id")
}
fn group(j: usize) -> GroupId {
    format!("g{j}").parse().expect("valid group id")
}
fn file_name(k: usize) -> FileName {
    format!("f{k}.bin").parse().expect("valid file name")
}

/// A realistic registration: 1..64 MiB (2..128 pieces), deterministic per
/// `seed`, with distinct piece hashes.
fn file_meta(name: FileName, seed: u64) -> FileMeta {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let size = rng.gen_range(PIECE_SIZE_BYTES * 2..=PIECE_SIZE_BYTES * 128);
    let pieces = (0..piece_count(size))
        .map(|p| p2p_sha1::of(format!("{seed}/{p}").as_bytes()))
        .collect();
    FileMeta {
        sha1: p2p_sha1::of(format!("{seed}").as_bytes()),
        name,
        size,
        piece_size: PIECE_SIZE_BYTES,
        pieces,
    }
}

/// Runs `jobs` with at most `limit` at once; fails on the first error.
async fn bounded<T, F, Fut>(what: &str, limit: usize, jobs: Vec<T>, f: F) -> anyhow::Result<()>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let started = Instant::now();
    let total = jobs.len();
    let permits = Arc::new(Semaphore::new(limit.max(1)));
    let f = Arc::new(f);
    let mut handles = Vec::with_capacity(total);
    for job in jobs {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let f = Arc::clone(&f);
        handles.push(tokio::spawn(async move {
            let r = f(job).await;
            drop(permit);
            r
        }));
    }
    for h in handles {
        h.await??;
    }
    println!(
        "  {what}: {total} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn expect_ok(what: String, raw: Raw) -> anyhow::Result<Vec<u8>> {
    raw.map_err(|e| anyhow!("{what}: {e}"))
}

/// Waits until a write goes through (a leader is elected), bounded.
async fn wait_ready(addrs: &[SocketAddr]) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut all = true;
        for &a in addrs {
            match Conn::open(a).await {
                Ok(c) => {
                    // A read that needs no session: answered by any replica;
                    // then a write to see a leader commit.
                    let probe = c
                        .call(TrackerRequest::Login {
                            user: "nobody".parse()?,
                            password: "x".into(),
                        })
                        .await;
                    match probe {
                        Err(e) if e.code == ErrorCode::BadCredentials => {}
                        other => {
                            last = format!("{a}: {other:?}");
                            all = false;
                        }
                    }
                }
                Err(e) => {
                    last = e.to_string();
                    all = false;
                }
            }
        }
        if all {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("trackers not ready within {START_TIMEOUT:?}: {last}")
}

async fn setup(args: &Args, addrs: &[SocketAddr]) -> anyhow::Result<Vec<Arc<Daemon>>> {
    let started = Instant::now();
    println!("set-up (not measured):");
    wait_ready(addrs).await?;
    // The first write of a new cluster waits for a leader; retry until then.
    let first = Conn::open(addrs[0]).await?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let r = first
            .call(TrackerRequest::CreateUser {
                user: user(0),
                password: PASSWORD.into(),
            })
            .await;
        match r {
            Ok(_) => break,
            Err(e) if e.code == ErrorCode::TrackerUnavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => bail!("first write: {e}"),
        }
    }
    drop(first);

    // Connections (daemon i uses tracker i % trackers).
    let conns: Arc<Mutex<Vec<Option<Arc<Conn>>>>> = Arc::new(Mutex::new(vec![None; args.daemons]));
    {
        let conns = Arc::clone(&conns);
        let addrs = addrs.to_vec();
        bounded(
            "connections",
            args.setup_concurrency,
            (0..args.daemons).collect(),
            move |i| {
                let conns = Arc::clone(&conns);
                let addr = addrs[i % addrs.len()];
                async move {
                    let c = Conn::open(addr).await?;
                    conns.lock().expect("conns")[i] = Some(c);
                    Ok(())
                }
            },
        )
        .await?;
    }
    let conns: Vec<Arc<Conn>> = conns
        .lock()
        .expect("conns")
        .iter()
        .map(|c| c.clone().expect("every connection opened"))
        .collect();
    let conns = Arc::new(conns);

    // Users (argon2id hashing on the tracker: bounded concurrency).
    {
        let conns = Arc::clone(&conns);
        bounded(
            "create users",
            args.login_concurrency,
            (1..args.daemons).collect(),
            move |i| {
                let conns = Arc::clone(&conns);
                async move {
                    let r = conns[i]
                        .call(TrackerRequest::CreateUser {
                            user: user(i),
                            password: PASSWORD.into(),
                        })
                        .await;
                    expect_ok(format!("create user {i}"), r).await.map(drop)
                }
            },
        )
        .await?;
    }
    let tokens: Arc<Mutex<Vec<Option<SessionToken>>>> =
        Arc::new(Mutex::new(vec![None; args.daemons]));
    {
        let conns = Arc::clone(&conns);
        let tokens = Arc::clone(&tokens);
        bounded(
            "logins",
            args.login_concurrency,
            (0..args.daemons).collect(),
            move |i| {
                let conns = Arc::clone(&conns);
                let tokens = Arc::clone(&tokens);
                async move {
                    let r = conns[i]
                        .call(TrackerRequest::Login {
                            user: user(i),
                            password: PASSWORD.into(),
                        })
                        .await;
                    let raw = expect_ok(format!("login {i}"), r).await?;
                    match reply(&raw)? {
                        TrackerReply::LoggedIn { token } => {
                            tokens.lock().expect("tokens")[i] = Some(token);
                            Ok(())
                        }
                        other => bail!("login {i}: unexpected {other:?}"),
                    }
                }
            },
        )
        .await?;
    }
    let daemons: Vec<Arc<Daemon>> = tokens
        .lock()
        .expect("tokens")
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Arc::new(Daemon {
                user: user(i),
                conn: Arc::clone(&conns[i]),
                token: t.clone().expect("every daemon logged in"),
                group: group(i % args.groups),
                peer_addr: SocketAddr::from(([127, 0, 0, 1], 20_000 + (i % 40_000) as u16)),
            })
        })
        .collect();
    let daemons = Arc::new(daemons);

    // First heartbeat of each (commits its presence), then every
    // HEARTBEAT_INTERVAL in the background until the process ends.
    {
        let ds = Arc::clone(&daemons);
        bounded(
            "first heartbeats",
            args.setup_concurrency,
            (0..args.daemons).collect(),
            move |i| {
                let d = Arc::clone(&ds[i]);
                async move {
                    let r = d
                        .conn
                        .call(TrackerRequest::Heartbeat {
                            token: d.token.clone(),
                            peer_addr: d.peer_addr,
                        })
                        .await;
                    expect_ok(format!("heartbeat {}", d.user), r)
                        .await
                        .map(drop)
                }
            },
        )
        .await?;
    }
    for (i, d) in daemons.iter().enumerate() {
        let d = Arc::clone(d);
        let offset = HEARTBEAT_INTERVAL.mul_f64(i as f64 / args.daemons as f64);
        tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
            loop {
                tick.tick().await;
                let r = d
                    .conn
                    .call(TrackerRequest::Heartbeat {
                        token: d.token.clone(),
                        peer_addr: d.peer_addr,
                    })
                    .await;
                if let Err(e) = r {
                    HEARTBEAT_ERRORS.fetch_add(1, Ordering::Relaxed);
                    if !HEARTBEAT_WARNED.swap(true, Ordering::Relaxed) {
                        eprintln!("heartbeat of {} failed: {e}", d.user);
                    }
                }
            }
        });
    }

    // Groups: daemon j < groups creates group j; the others ask to join
    // theirs and its owner accepts.
    {
        let ds = Arc::clone(&daemons);
        bounded(
            "groups",
            args.setup_concurrency,
            (0..args.groups).collect(),
            move |j| {
                let d = Arc::clone(&ds[j]);
                async move {
                    let r = d
                        .conn
                        .call(TrackerRequest::CreateGroup {
                            token: d.token.clone(),
                            group: d.group.clone(),
                        })
                        .await;
                    expect_ok(format!("create group {}", d.group), r)
                        .await
                        .map(drop)
                }
            },
        )
        .await?;
    }
    {
        let ds = Arc::clone(&daemons);
        let groups = args.groups;
        bounded(
            "joins (request + accept)",
            args.setup_concurrency,
            (groups..args.daemons).collect(),
            move |i| {
                let d = Arc::clone(&ds[i]);
                let owner = Arc::clone(&ds[i % groups]);
                async move {
                    let r = d
                        .conn
                        .call(TrackerRequest::JoinGroup {
                            token: d.token.clone(),
                            group: d.group.clone(),
                        })
                        .await;
                    expect_ok(format!("join {} by {}", d.group, d.user), r).await?;
                    let r = owner
                        .conn
                        .call(TrackerRequest::AcceptRequest {
                            token: owner.token.clone(),
                            group: d.group.clone(),
                            user: d.user.clone(),
                        })
                        .await;
                    expect_ok(format!("accept {} into {}", d.user, d.group), r)
                        .await
                        .map(drop)
                }
            },
        )
        .await?;
    }

    // Files: file k lives in group k % groups and is registered by
    // `holders` members of it.
    {
        let ds = Arc::clone(&daemons);
        let (groups, holders) = (args.groups, args.holders);
        let per_group = args.daemons / groups;
        let jobs: Vec<(usize, usize)> = (0..args.files)
            .flat_map(|k| (0..holders).map(move |h| (k, h)))
            .collect();
        bounded(
            "file registrations",
            args.setup_concurrency,
            jobs,
            move |(k, h)| {
                let member = (k / groups + h) % per_group;
                let d = Arc::clone(&ds[k % groups + member * groups]);
                async move {
                    let meta = file_meta(file_name(k), k as u64);
                    let r = d
                        .conn
                        .call(TrackerRequest::RegisterFile {
                            token: d.token.clone(),
                            group: d.group.clone(),
                            meta,
                        })
                        .await;
                    expect_ok(format!("register f{k} by {}", d.user), r)
                        .await
                        .map(drop)
                }
            },
        )
        .await?;
    }
    println!(
        "set-up done in {:.1} s: {} daemons online, {} groups, {} files ({} registrations)",
        started.elapsed().as_secs_f64(),
        args.daemons,
        args.groups,
        args.files,
        args.files * args.holders
    );
    Ok(Arc::try_unwrap(daemons).unwrap_or_else(|d| (*d).clone()))
}

static HEARTBEAT_ERRORS: AtomicU64 = AtomicU64::new(0);
static HEARTBEAT_WARNED: AtomicBool = AtomicBool::new(false);

// ------------------------------------------------------------ measuring

/// Latencies (µs) and errors of one kind of call.
#[derive(Default)]
struct Samples {
    micros: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Samples {
    fn record(&mut self, started: Instant, ok: Result<(), String>) {
        let us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.micros.push(us);
        if let Err(e) = ok {
            self.errors += 1;
            self.first_error.get_or_insert(e);
        }
    }

    fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn print(&mut self, kind: &str, secs: f64) {
        self.micros.sort_unstable();
        let n = self.micros.len();
        let pick = |q: f64| -> f64 {
            if n == 0 {
                return 0.0;
            }
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            f64::from(self.micros[i]) / 1000.0
        };
        println!(
            "  {kind:<14} {n:>9} ops {:>10.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>8.2} ms   errors {}",
            n as f64 / secs,
            pick(0.50),
            pick(0.99),
            self.micros.last().map_or(0.0, |&m| f64::from(m) / 1000.0),
            self.errors,
        );
        if let Some(e) = &self.first_error {
            println!("    first error: {e}");
        }
    }
}

fn check_reply(raw: Raw, want: fn(&TrackerReply) -> bool) -> Result<(), String> {
    let raw = raw.map_err(|e| e.to_string())?;
    // Decode fully now and then, as a daemon would, to be sure the answer
    // is what it should be; otherwise the router's check suffices.
    if rand::thread_rng().gen_ratio(1, 64) {
        let r = reply(&raw).map_err(|e| e.to_string())?;
        if !want(&r) {
            return Err(format!("unexpected answer {r:?}"));
        }
    }
    Ok(())
}

struct Phase {
    pids: Vec<u32>,
    before: Vec<ProcStats>,
    me_before: ProcStats,
    started: Instant,
    reset: bool,
}

impl Phase {
    fn begin(pids: &[u32]) -> Phase {
        let reset = pids.iter().all(|&p| reset_peak(p));
        Phase {
            pids: pids.to_vec(),
            before: pids
                .iter()
                .map(|&p| proc_stats(p).unwrap_or_default())
                .collect(),
            me_before: proc_stats(std::process::id()).unwrap_or_default(),
            started: Instant::now(),
            reset,
        }
    }

    fn end(self) {
        let secs = self.started.elapsed().as_secs_f64();
        let tck = clock_ticks();
        for (i, (&pid, before)) in self.pids.iter().zip(&self.before).enumerate() {
            let after = proc_stats(pid).unwrap_or_default();
            let cpu = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / tck;
            println!(
                "  tracker {} (pid {pid}): peak RSS {} {:.1} MiB, RSS now {:.1} MiB, CPU {:.1} s ({:.0}% of one core)",
                i + 1,
                if self.reset { "in this phase" } else { "(whole life)" },
                after.hwm_kib as f64 / 1024.0,
                after.rss_kib as f64 / 1024.0,
                cpu,
                100.0 * cpu / secs,
            );
        }
        let me = proc_stats(std::process::id()).unwrap_or_default();
        let cpu = me.cpu_ticks.saturating_sub(self.me_before.cpu_ticks) as f64 / tck;
        println!(
            "  load generator (same machine): CPU {cpu:.1} s ({:.0}% of one core)",
            100.0 * cpu / secs
        );
    }
}

async fn read_phase(args: &Args, daemons: &[Arc<Daemon>], pids: &[u32]) -> anyhow::Result<()> {
    let files_per_group = args.files / args.groups;
    let mode = if args.rate == 0 {
        "closed loop".to_owned()
    } else {
        format!("open loop, {} calls/s in total", args.rate)
    };
    println!(
        "reads: {} clients, {} s, {mode}, ListFiles ({} files per group) and Locate alternating",
        args.clients, args.secs, files_per_group
    );
    let phase = Phase::begin(pids);
    let until = Instant::now() + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for (c, d) in daemons.iter().take(args.clients).enumerate() {
        let d = Arc::clone(d);
        let groups = args.groups;
        let interval = (args.rate > 0)
            .then(|| Duration::from_secs_f64(args.clients as f64 / args.rate as f64));
        tasks.push(tokio::spawn(async move {
            let list = Arc::new(Mutex::new(Samples::default()));
            let locate = Arc::new(Mutex::new(Samples::default()));
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
            let g = c % groups;
            let mut next =
                Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(rng.gen()));
            let mut inflight = Vec::new();
            let mut n = 0u64;
            while Instant::now() < until {
                let k = g + groups * rng.gen_range(0..files_per_group.max(1));
                let is_list = n.is_multiple_of(2);
                n += 1;
                let request = if is_list {
                    TrackerRequest::ListFiles {
                        token: d.token.clone(),
                        group: d.group.clone(),
                    }
                } else {
                    TrackerRequest::Locate {
                        token: d.token.clone(),
                        group: d.group.clone(),
                        name: file_name(k),
                    }
                };
                let samples = Arc::clone(if is_list { &list } else { &locate });
                let want: fn(&TrackerReply) -> bool = if is_list {
                    |r| matches!(r, TrackerReply::Files { files } if !files.is_empty())
                } else {
                    |r| matches!(r, TrackerReply::Located { meta, .. } if !meta.pieces.is_empty())
                };
                match interval {
                    None => {
                        let started = Instant::now();
                        let raw = d.conn.call(request).await;
                        samples
                            .lock()
                            .expect("samples")
                            .record(started, check_reply(raw, want));
                    }
                    Some(every) => {
                        let now = Instant::now();
                        if next > now {
                            tokio::time::sleep(next - now).await;
                        }
                        let scheduled = next;
                        next += every;
                        let d = Arc::clone(&d);
                        inflight.push(tokio::spawn(async move {
                            let raw = d.conn.call(request).await;
                            samples
                                .lock()
                                .expect("samples")
                                .record(scheduled, check_reply(raw, want));
                        }));
                    }
                }
            }
            for t in inflight {
                let _ = t.await;
            }
            let take = |s: Arc<Mutex<Samples>>| std::mem::take(&mut *s.lock().expect("samples"));
            (take(list), take(locate))
        }));
    }
    let mut list = Samples::default();
    let mut locate = Samples::default();
    for t in tasks {
        let (l, o) = t.await?;
        list.merge(l);
        locate.merge(o);
    }
    let secs = args.secs as f64;
    list.print("list_files", secs);
    locate.print("locate", secs);
    phase.end();
    Ok(())
}

async fn write_phase(
    args: &Args,
    secs: u64,
    daemons: &[Arc<Daemon>],
    pids: &[u32],
) -> anyhow::Result<()> {
    let mode = if args.write_rate == 0 {
        "closed loop".to_owned()
    } else {
        format!("open loop, {} writes/s in total", args.write_rate)
    };
    println!(
        "writes: {} clients registering new files (RegisterFile, 2..128 piece hashes), {secs} s, {mode}",
        args.write_clients
    );
    let phase = Phase::begin(pids);
    let until = Instant::now() + Duration::from_secs(secs);
    let interval = (args.write_rate > 0)
        .then(|| Duration::from_secs_f64(args.write_clients as f64 / args.write_rate as f64));
    let mut tasks = Vec::new();
    // Writers are taken from the end, so they are not the read clients.
    for (c, d) in daemons.iter().rev().take(args.write_clients).enumerate() {
        let d = Arc::clone(d);
        tasks.push(tokio::spawn(async move {
            let samples = Arc::new(Mutex::new(Samples::default()));
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
            let mut next =
                Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(rng.gen()));
            let mut inflight = Vec::new();
            let mut seq = 0u64;
            while Instant::now() < until {
                let name: FileName = format!("w{c}-{seq}.bin").parse().expect("valid name");
                let meta = file_meta(name, 1_000_000_000 + (c as u64) * 1_000_000 + seq);
                seq += 1;
                let request = TrackerRequest::RegisterFile {
                    token: d.token.clone(),
                    group: d.group.clone(),
                    meta,
                };
                match interval {
                    None => {
                        let started = Instant::now();
                        let raw = d.conn.call(request).await;
                        samples
                            .lock()
                            .expect("samples")
                            .record(started, raw.map(drop).map_err(|e| e.to_string()));
                    }
                    Some(every) => {
                        let now = Instant::now();
                        if next > now {
                            tokio::time::sleep(next - now).await;
                        }
                        let scheduled = next;
                        next += every;
                        let d = Arc::clone(&d);
                        let samples = Arc::clone(&samples);
                        inflight.push(tokio::spawn(async move {
                            let raw = d.conn.call(request).await;
                            samples
                                .lock()
                                .expect("samples")
                                .record(scheduled, raw.map(drop).map_err(|e| e.to_string()));
                        }));
                    }
                }
            }
            for t in inflight {
                let _ = t.await;
            }
            let s = std::mem::take(&mut *samples.lock().expect("samples"));
            s
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        all.merge(t.await?);
    }
    all.print("register_file", secs as f64);
    phase.end();
    Ok(())
}

async fn run(args: &Args, trackers: &Trackers) -> anyhow::Result<()> {
    let pids = trackers.pids();
    let daemons = setup(args, &trackers.addrs).await?;
    for (i, &pid) in pids.iter().enumerate() {
        let s = proc_stats(pid)?;
        println!(
            "  tracker {} after set-up: RSS {:.1} MiB (peak so far {:.1} MiB)",
            i + 1,
            s.rss_kib as f64 / 1024.0,
            s.hwm_kib as f64 / 1024.0
        );
    }
    read_phase(args, &daemons, &pids).await?;
    let write_secs = args
        .write_secs
        .unwrap_or(if args.trackers >= 3 { 20 } else { 0 });
    if write_secs > 0 {
        write_phase(args, write_secs, &daemons, &pids).await?;
    }
    let hb = HEARTBEAT_ERRORS.load(Ordering::Relaxed);
    println!("heartbeat errors during the whole run: {hb}");
    for (i, &pid) in pids.iter().enumerate() {
        let s = proc_stats(pid)?;
        println!(
            "tracker {}: RSS at the end {:.1} MiB",
            i + 1,
            s.rss_kib as f64 / 1024.0
        );
    }
    Ok(())
}

impl Clone for Daemon {
    fn clone(&self) -> Self {
        Daemon {
            user: self.user.clone(),
            conn: Arc::clone(&self.conn),
            token: self.token.clone(),
            group: self.group.clone(),
            peer_addr: self.peer_addr,
        }
    }
}
