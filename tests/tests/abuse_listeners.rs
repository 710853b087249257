//! Hostile load on the listeners (issue 12): floods of idle connections to
//! the tracker and to a daemon's peer port, a sender trickling a byte a
//! second, and connections announcing huge frames. Users keep being
//! served within seconds, idle and slow connections are closed, memory
//! stays bounded.
//!
//! The attackers connect from 127.0.0.2 and up (Linux routes all of
//! 127/8 to loopback), so the per-address caps are exercised the way a
//! flood from many hosts would meet them; the legitimate daemons stay on
//! 127.0.0.1.

use blackbox::raw::{endpoint, runtime};
use blackbox::{frame, free_port, random_file, wait_until, Daemon, Net, Trackers};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The tracker's idle timeout in these tests (`--idle-timeout`; the
/// default of 60 s would only make them slower).
const IDLE_TIMEOUT_SECS: u64 = 20;
/// How long every idle connection may stay open, from the flood's start.
const CLOSED_WITHIN: Duration = Duration::from_secs(60);
/// "Within seconds": the bound on one legitimate command during a flood.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
const MIB: usize = 1024 * 1024;
/// Tracker RSS must stay under this while huge frames are announced.
const RSS_LIMIT_KIB: u64 = 100 * 1024;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Raises this process's soft open-files limit to its hard limit; false
/// (with the reason printed) if that leaves fewer than `want`.
fn enough_files(want: u64) -> bool {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    if let Err(e) = setrlimit(Resource::Nofile, limit) {
        println!("SKIPPED: cannot raise the open-files limit: {e}");
        return false;
    }
    match getrlimit(Resource::Nofile).current {
        Some(n) if n < want => {
            println!("SKIPPED: the hard open-files limit is {n}; this test needs {want}");
            false
        }
        _ => true,
    }
}

/// A TCP connection to `to` from 127.0.0.`host`.
async fn connect_from(host: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0)))?;
    tokio::time::timeout(Duration::from_secs(5), socket.connect(to))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// Whether the other end closes `s` (EOF or an error) within `limit`;
/// whatever it sends before is read and dropped.
async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn hello() -> Vec<u8> {
    frame(br#"{"id": 1, "request": {"op": "hello", "version": 1}}"#)
}

/// A TLS link to the tracker at `to` from 127.0.0.`host`, past its hello.
async fn greeted(host: u8, to: SocketAddr) -> std::io::Result<p2p_link::tls::Link> {
    let tcp = connect_from(host, to).await?;
    let mut link = endpoint()
        .connect(tcp)
        .await
        .map_err(std::io::Error::other)?
        .link;
    link.write_all(&hello()).await?;
    link.flush().await?;
    Ok(link)
}

/// Runs `args` on `d` and checks it succeeded within [`ANSWER_WITHIN`].
fn quick(d: &Daemon, args: &[&str]) {
    let t = Instant::now();
    let out = d.ctl(args);
    assert_eq!(out.status, 0, "{args:?} during a flood: {}", out.stderr);
    let took = t.elapsed();
    println!("{args:?} answered in {took:?} during the flood");
    assert!(
        took < ANSWER_WITHIN,
        "{args:?} took {took:?} during a flood"
    );
}

fn tracker_addr(net: &Net) -> SocketAddr {
    net.tracker_addrs()[0].parse().expect("a tracker address")
}

/// Alice (on `a`, serving `file.bin` in group `g` on `port`) and Bob (on
/// `b`, a member of `g`).
fn two_users(net: &Net, port: u16) -> (Daemon, Daemon, String) {
    let a = net.daemon_with("a", &["--listen", &format!("127.0.0.1:{port}")]);
    let b = net.daemon("b");
    a.ok(&["create_user", "alice", "pw-a"]);
    a.ok(&["create_user", "bob", "pw-b"]);
    a.ok(&["login", "alice", "pw-a"]);
    b.ok(&["login", "bob", "pw-b"]);
    a.ok(&["create_group", "g"]);
    b.ok(&["join_group", "g"]);
    a.ok(&["accept_request", "g", "bob"]);
    let f = net.mkdir("src").join("file.bin");
    let sha = random_file(&f, 4 * MIB);
    a.ok(&["upload_file", p(&f), "g"]);
    (a, b, sha)
}

#[test]
fn idle_floods_neither_lock_users_out_nor_stay_open() {
    if !enough_files(4000) {
        return;
    }
    let idle = IDLE_TIMEOUT_SECS.to_string();
    let net = Net::start_with_tracker_args(Trackers(1), &["--idle-timeout", &idle]);
    let port = free_port();
    let (_a, b, sha) = two_users(&net, port);
    let tracker = tracker_addr(&net);
    let peer_port = SocketAddr::from(([127, 0, 0, 1], port));
    let rt = runtime();

    let started = Instant::now();
    let (mut plain, mut hellos, mut over_cap, mut peers) = rt.block_on(async {
        // 1,400 that never start TLS, 50 from each of 28 addresses.
        let mut plain = Vec::new();
        for host in 2..30u8 {
            for _ in 0..50 {
                plain.push(connect_from(host, tracker).await.expect("connect"));
            }
        }
        // 100 that say hello and then nothing.
        let mut hellos = Vec::new();
        for host in 30..32u8 {
            for _ in 0..50 {
                hellos.push(greeted(host, tracker).await.expect("hello"));
            }
        }
        // 80 from one address: more than it may hold.
        let mut over_cap = Vec::new();
        for _ in 0..80 {
            over_cap.push(connect_from(40, tracker).await.expect("connect"));
        }
        // 300 on the daemon's peer port, 8 from each address.
        let mut peers = Vec::new();
        for i in 0..300usize {
            let host = 50 + u8::try_from(i / 8).expect("few hosts");
            peers.push(connect_from(host, peer_port).await.expect("connect"));
        }
        (plain, hellos, over_cap, peers)
    });
    println!(
        "opened {} idle connections to the tracker and {} to the peer port in {:?}",
        plain.len() + hellos.len() + over_cap.len(),
        peers.len(),
        started.elapsed()
    );

    // One address gets no more than its share, at once.
    let refused = rt.block_on(async {
        let mut refused = 0;
        for s in &mut over_cap {
            if closed_within(s, Duration::from_millis(50)).await {
                refused += 1;
            }
        }
        refused
    });
    assert!(
        refused >= 80 - 64,
        "only {refused} of 80 connections from one address were closed at once"
    );

    // Users are served meanwhile, and a download completes.
    quick(&b, &["list_groups"]);
    quick(&b, &["list_files", "g"]);
    let dest = net.mkdir("dl");
    let t = Instant::now();
    b.ok(&["download_file", "g", "file.bin", p(&dest)]);
    let took = t.elapsed();
    println!("download during the flood took {took:?}");
    assert!(
        took < ANSWER_WITHIN,
        "the download took {took:?} during a flood"
    );
    assert_eq!(blackbox::sha1_file(&dest.join("file.bin")), sha);

    // Every idle connection is closed by the other end.
    let left = CLOSED_WITHIN.saturating_sub(started.elapsed());
    let open = rt.block_on(async {
        let mut waits = tokio::task::JoinSet::new();
        for mut s in plain
            .drain(..)
            .chain(peers.drain(..))
            .chain(over_cap.drain(..))
        {
            waits.spawn(async move { closed_within(&mut s, left).await });
        }
        for mut s in hellos.drain(..) {
            waits.spawn(async move { closed_within(&mut s, left).await });
        }
        let mut open = 0;
        while let Some(closed) = waits.join_next().await {
            if !closed.expect("a wait") {
                open += 1;
            }
        }
        open
    });
    println!("all closed {:?} after the flood began", started.elapsed());
    assert_eq!(
        open, 0,
        "{open} idle connections still open after {CLOSED_WITHIN:?}"
    );
    quick(&b, &["list_groups"]);
}

#[test]
fn a_slow_trickle_sender_is_closed() {
    let net = Net::start_with_tracker_args(Trackers(1), &[]);
    let d = net.daemon("a");
    let tracker = tracker_addr(&net);
    let rt = runtime();
    let started = Instant::now();
    let closed = rt.block_on(async {
        let link = greeted(2, tracker).await.expect("hello");
        let (mut rd, mut wr) = tokio::io::split(link);
        // A frame of 1,000 bytes, a byte a second: whole in 17 minutes.
        let trickle = tokio::spawn(async move {
            let _ = wr.write_all(&1000u32.to_be_bytes()).await;
            for _ in 0..1000 {
                if wr.write_all(b" ").await.is_err() || wr.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let closed = closed_within(&mut rd, Duration::from_secs(50)).await;
        trickle.abort();
        closed
    });
    println!("trickle closed: {closed} after {:?}", started.elapsed());
    assert!(
        closed,
        "a sender of a byte a second was not closed within 50 s"
    );
    d.ok(&["create_user", "alice", "pw"]);
}

/// VmRSS of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// Sends a frame header announcing `announced` bytes, then all of them but
/// the last 64 KiB, so the frame never completes.
async fn announce_and_hold<W: AsyncWrite + Unpin>(
    link: &mut W,
    announced: u32,
) -> std::io::Result<usize> {
    link.write_all(&announced.to_be_bytes()).await?;
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0usize;
    while sent < announced as usize - chunk.len() {
        link.write_all(&chunk).await?;
        sent += chunk.len();
    }
    Ok(sent)
}

/// The highest RSS (KiB) of `pid`, sampled every 50 ms, while the floods
/// `start` puts in the set run (at most `deadline`, then 0.5 s more).
fn peak_rss_during(
    pid: u32,
    deadline: Duration,
    start: impl FnOnce(&mut tokio::task::JoinSet<std::io::Result<usize>>),
) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    let max = std::sync::Arc::new(AtomicU64::new(rss_kib(pid)));
    runtime().block_on(async {
        let sampler = {
            let max = max.clone();
            tokio::spawn(async move {
                loop {
                    max.fetch_max(rss_kib(pid), Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let mut floods = tokio::task::JoinSet::new();
        start(&mut floods);
        let _ = tokio::time::timeout(deadline, async {
            while let Some(r) = floods.join_next().await {
                println!("a flood ended: {:?}", r.expect("a flood task"));
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        sampler.abort();
    });
    max.load(Ordering::SeqCst)
}

#[test]
fn huge_frames_do_not_grow_the_tracker() {
    let net = Net::start_with_tracker_args(Trackers(1), &[]);
    let d = net.daemon("a");
    d.ok(&["create_user", "alice", "pw"]);
    let pid = net.trackers[0].pid().expect("tracker running");
    let tracker = tracker_addr(&net);
    let before = rss_kib(pid);
    let peak = peak_rss_during(pid, Duration::from_secs(60), |floods| {
        for i in 0..16u8 {
            floods.spawn(async move {
                let host = 2 + i;
                let tcp = connect_from(host, tracker).await?;
                let mut link = endpoint()
                    .connect(tcp)
                    .await
                    .map_err(std::io::Error::other)?
                    .link;
                // 8 after a daemon's hello (63 MiB: under the 64 MiB limit
                // of a logged-in daemon), 8 as a would-be peer tracker
                // (the Raft link's 512 MiB limit).
                let announced: u32 = if i < 8 {
                    link.write_all(&hello()).await?;
                    63 * 1024 * 1024
                } else {
                    512 * 1024 * 1024
                };
                announce_and_hold(&mut link, announced).await
            });
        }
    });
    println!("tracker RSS: {before} KiB before, {peak} KiB at most during the floods");
    assert!(
        peak < RSS_LIMIT_KIB,
        "tracker RSS reached {peak} KiB (limit {RSS_LIMIT_KIB} KiB)"
    );
    d.ok(&["login", "alice", "pw"]);
}

/// How much the tracker's RSS may grow while logged-in connections send
/// huge frames: they share one 64 MiB budget, so about one maximal frame
/// at a time (measured: 100 to 120 MiB; without the budget, 490 MiB).
const LOGGED_IN_GROWTH_LIMIT_KIB: u64 = 192 * 1024;

#[test]
fn huge_frames_of_logged_in_connections_share_one_budget() {
    let net = Net::start_with_tracker_args(Trackers(1), &[]);
    let d = net.daemon("a");
    d.ok(&["create_user", "alice", "pw"]);
    let pid = net.trackers[0].pid().expect("tracker running");
    let tracker = tracker_addr(&net);
    let before = rss_kib(pid);
    let peak = peak_rss_during(pid, Duration::from_secs(90), |floods| {
        for i in 0..8u8 {
            floods.spawn(async move {
                let mut link = greeted(2 + i, tracker).await?;
                // Anyone may make an account: a session proves little.
                let login = frame(
                    br#"{"id": 2, "request": {"op": "login", "user": "alice", "password": "pw"}}"#,
                );
                link.write_all(&login).await?;
                announce_and_hold(&mut link, 63 * 1024 * 1024).await
            });
        }
    });
    println!("tracker RSS: {before} KiB before, {peak} KiB at most during the floods");
    assert!(
        peak - before < LOGGED_IN_GROWTH_LIMIT_KIB,
        "tracker RSS grew by {} KiB (limit {LOGGED_IN_GROWTH_LIMIT_KIB} KiB)",
        peak - before
    );
    d.ok(&["login", "alice", "pw"]);
}

#[test]
fn idle_control_connections_neither_lock_the_user_out_nor_stay_open() {
    let net = Net::start_with_tracker_args(Trackers(1), &[]);
    let d = net.daemon("a");
    let started = Instant::now();
    // More silent clients than may wait for their request at once.
    let mut idle: Vec<std::os::unix::net::UnixStream> = (0..100)
        .map(|_| std::os::unix::net::UnixStream::connect(d.sock()).expect("connect"))
        .collect();
    quick(&d, &["status"]);
    quick(&d, &["create_user", "alice", "pw"]);
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("a read timeout");
        let mut buf = [0u8; 4096];
        let closed = loop {
            match std::io::Read::read(s, &mut buf) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break false,
                Err(_) => break true,
            }
        };
        assert!(
            closed,
            "a silent control connection is still open after {:?}",
            started.elapsed()
        );
    }
    println!(
        "all silent control connections closed after {:?}",
        started.elapsed()
    );
    quick(&d, &["status"]);
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The original measurement: under a 1,024-file limit, 1,100 idle
/// connections made a legitimate client time out and filled the log with
/// `accept failed: Too many open files`. Here they come from 20 addresses
/// (under the per-address cap), keep coming as fast as one connection at a
/// time goes, and the attacker never closes one.
#[test]
fn a_many_address_flood_under_a_1024_file_limit_keeps_no_daemon_out() {
    const LIMIT: u64 = 1024;
    const HELD: usize = 1100;
    const MAX_OPENED: usize = 8000;
    const SIGNUP_WITHIN: Duration = Duration::from_secs(4);
    if !enough_files(9000) {
        return;
    }
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: no prlimit(1) to start the tracker under a {LIMIT}-file limit");
        return;
    }
    let mut net = Net::start_with(Trackers(1));
    let nofile = format!("--nofile={LIMIT}:{LIMIT}");
    net.trackers[0].launcher = vec!["prlimit".into(), nofile.into(), "--".into()];
    net.trackers[0].restart();
    let tracker_log = net.trackers[0].log.clone();
    let read_log = || std::fs::read_to_string(&tracker_log).unwrap_or_default();
    let budget = wait_until(Duration::from_secs(10), || {
        read_log().contains("at most 768 connections")
    });
    assert!(budget, "1,024 files less a reserve of 256: {}", read_log());
    let pid = net.trackers[0].pid().expect("the tracker runs");
    let port = free_port();
    let (_a, b, sha) = two_users(&net, port);
    let tracker = tracker_addr(&net);
    let rt = runtime();

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let opened = std::sync::Arc::new(AtomicUsize::new(0));
    let flood_started = Instant::now();
    let flood = {
        let (stop, opened) = (stop.clone(), opened.clone());
        rt.spawn(async move {
            // Never closed on this side: only the tracker frees places.
            let mut held = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) && n < MAX_OPENED {
                let host = 2 + u8::try_from(n % 20).expect("20 hosts");
                if let Ok(s) = connect_from(host, tracker).await {
                    held.push(s);
                    n += 1;
                    opened.store(n, Ordering::Relaxed);
                }
                if n >= HELD {
                    // Then as fast as one connection at a time goes, so
                    // every place the tracker frees is taken again.
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // Past the burst: every place is taken (without the unproven half, all
    // 768), and the first of them are still seconds from their 10 s hello
    // deadline.
    let burst = wait_until(Duration::from_secs(30), || {
        opened.load(Ordering::Relaxed) >= HELD || flood.is_finished()
    });
    assert!(burst, "the flood did not get going");
    let mut most_fds = open_fds(pid);

    // Users already in are served; a daemon that connects now gets in,
    // creates an account and logs in; a download completes.
    quick(&b, &["list_groups"]);
    let since_flood = flood_started.elapsed();
    let t = Instant::now();
    let c = net.daemon("c");
    c.ok(&["create_user", "carol", "pw-c"]);
    c.ok(&["login", "carol", "pw-c"]);
    println!(
        "a new daemon started and signed up in {:?}, {since_flood:?} into the flood ({} opened)",
        t.elapsed(),
        opened.load(Ordering::Relaxed)
    );
    // Measured without the unproven half: refused until the flood's first
    // connections reach their hello deadline, 7 s and more.
    assert!(
        t.elapsed() < SIGNUP_WITHIN,
        "signing up took {:?}",
        t.elapsed()
    );
    quick(&c, &["list_groups"]);
    most_fds = most_fds.max(open_fds(pid));
    let dest = net.mkdir("dl");
    let t = Instant::now();
    b.ok(&["download_file", "g", "file.bin", p(&dest)]);
    assert!(
        t.elapsed() < ANSWER_WITHIN,
        "the download took {:?}",
        t.elapsed()
    );
    assert_eq!(blackbox::sha1_file(&dest.join("file.bin")), sha);
    most_fds = most_fds.max(open_fds(pid));

    stop.store(true, Ordering::Relaxed);
    rt.block_on(flood).expect("the flood task");
    let opened = opened.load(Ordering::Relaxed);
    println!("the flood opened {opened} connections; the tracker held at most {most_fds} files");
    assert!(opened > HELD, "the flood was not sustained ({opened})");
    assert!(most_fds < 1000, "the tracker held {most_fds} files");
    let log = read_log();
    for line in log.lines().filter(|l| l.contains("refused")) {
        println!("tracker: {line}");
    }
    assert!(!log.contains("Too many open files"), "{log}");
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"));
    let warnings = warnings.count();
    assert!(
        warnings < 30,
        "the flood filled the log: {warnings} warnings\n{log}"
    );
    quick(&b, &["list_groups"]);
}
