//! Harness for the black-box tests in `tests/tests/`: real `tracker` and
//! `p2pd` processes on 127.0.0.1, driven only through `p2pctl --json` (and,
//! for hostile input, raw frames written to their sockets).
//!
//! Invariants the tests rely on:
//! - every process started here is killed by its PID (SIGKILL, then reaped)
//!   when its handle drops; nothing is ever stopped by name;
//! - every wait is a bounded poll ([`wait_until`]); no fixed sleep is used to
//!   synchronise;
//! - each [`Net`] owns one short temp dir under `/tmp` (Unix socket paths are
//!   limited to ~107 bytes), so tests running in parallel share no home, data
//!   dir or port;
//! - when a test panics, the tails of the logs of its processes are printed.
//!
//! The number of trackers a [`Net`] starts comes from `P2P_TEST_TRACKERS`
//! (default 1), so the same tests can run against a replicated cluster.

pub mod raw;

use serde_json::Value;
use sha1::{Digest, Sha1};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use serde_json::json;

/// How long a process may take to open its socket.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// A p2pctl call still running after this is killed and the test fails.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(30);
/// SPEC: a vanished or logged-out peer is shown offline within this, and the
/// same bound is used for anything that happens "by itself" (reconnection,
/// re-announcement, the end of a session replaced elsewhere).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a process gets to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const POLL_INTERVAL: Duration = Duration::from_millis(100);
const LOG_TAIL_BYTES: u64 = 4000;

// ---------------------------------------------------------------- binaries

/// Path of a workspace binary (`tracker`, `p2pd` or `p2pctl`) in the profile
/// the tests were built with.
///
/// # Panics
/// If it has not been built, naming the command that builds it.
pub fn bin(name: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace")
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        }
        None => workspace.join("target"),
    };
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let path = target.join(profile).join(name);
    if !path.is_file() {
        panic!(
            "binaries missing: run `cargo build --workspace --bins` (add --release for release tests); \
             looked for {}",
            path.display()
        );
    }
    path
}

fn check_binaries() {
    for name in ["tracker", "p2pd", "p2pctl"] {
        bin(name);
    }
}

// ---------------------------------------------------------------- waiting

/// Poll `cond` every 100 ms until it holds or `timeout` has passed; true if
/// it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

// ---------------------------------------------------------------- files

/// Write `size` random bytes to `path`; returns their SHA-1 (hex).
pub fn random_file(path: &Path, size: usize) -> String {
    use rand::RngCore;
    let mut rng = rand::thread_rng();
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut left = size;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write random file");
        left -= n;
    }
    f.sync_all().expect("fsync random file");
    drop(f);
    sha1_file(path)
}

/// SHA-1 (hex) of a file, streamed.
pub fn sha1_file(path: &Path) -> String {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).expect("read file to hash");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// SHA-1 of the empty string.
pub const EMPTY_SHA1: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";

// ---------------------------------------------------------------- processes

/// A child process with its log file; SIGKILLed and reaped on drop.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(program: &Path, args: &[OsString], log: &Path) -> Proc {
        Proc::spawn_env(program, args, &[], log)
    }

    fn spawn_env(
        program: &Path,
        args: &[OsString],
        env: &[(OsString, OsString)],
        log: &Path,
    ) -> Proc {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open log {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        // A developer's own ~/.config/p2pshare/config.toml must never
        // reach a test: point the config directory at one nothing writes
        // (a test sets its own in `env`, which comes later and wins).
        let no_config = log.with_file_name("no-xdg-config");
        let child = Command::new(program)
            .args(args)
            .env_remove("P2P_HOME")
            .env("XDG_CONFIG_HOME", &no_config)
            // Plain logs for failure reports.
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Proc { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Exit status if the process has ended.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn kill9(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait at most [`STOP_TIMEOUT`]; SIGKILL if still alive.
    /// Returns the exit status if the process ended by itself.
    fn terminate(&mut self) -> Option<ExitStatus> {
        if let Some(st) = self.exited() {
            return Some(st);
        }
        send_sigterm(self.pid());
        let mut status = None;
        wait_until(STOP_TIMEOUT, || {
            status = self.exited();
            status.is_some()
        });
        if status.is_none() {
            self.kill9();
        }
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// SIGTERM to one process we started, by PID.
pub fn send_sigterm(pid: u32) {
    send_signal(pid, libc::SIGTERM);
}

/// Send `sig` (e.g. `libc::SIGINT`) to one process we started, by PID.
#[allow(unsafe_code)]
pub fn send_signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the
    // pid is that of a child we have not reaped yet, so it cannot be reused.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The last few KB of a log file, for failure reports.
pub fn log_tail(path: &Path) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let skip = len.saturating_sub(LOG_TAIL_BYTES);
    let mut buf = Vec::new();
    use std::io::Seek;
    let _ = f.seek(std::io::SeekFrom::Start(skip));
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn print_log_on_panic(what: &str, log: &Path) {
    if std::thread::panicking() {
        eprintln!(
            "----- {what}: tail of {} -----\n{}\n----- end of {what} -----",
            log.display(),
            log_tail(log)
        );
    }
}

/// A port of 127.0.0.1 that nothing listens on now, for a process to bind.
///
/// Picked below Linux's ephemeral range (32768 and up), which a port bound
/// to 0 would come from: between this pick and the process binding it, any
/// outgoing connection on the host (trackers dialling each other, daemons,
/// floods in other tests) may be given an ephemeral port, and one landed on
/// a tracker's chosen port once ("Address already in use").
///
/// A port is never handed out twice by one test process: tests run in
/// parallel threads, and two of them picking the same port before either
/// tracker binds it collided once too (the bind check passes for both).
pub fn free_port() -> u16 {
    use rand::Rng;
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut rng = rand::thread_rng();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port between 20000 and 32000 after 1000 tries")
}

// ---------------------------------------------------------------- trackers

/// How many trackers a [`Net`] runs.
#[derive(Debug, Clone, Copy)]
pub struct Trackers(pub usize);

impl Trackers {
    /// `P2P_TEST_TRACKERS`, default 1.
    pub fn from_env() -> Trackers {
        let n = std::env::var("P2P_TEST_TRACKERS")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|&n: &usize| n >= 1)
            .unwrap_or(1);
        Trackers(n)
    }
}

/// One `tracker INFO k --data-dir DIR` process.
pub struct Tracker {
    /// 1-based line of the info file.
    pub k: usize,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Further command-line flags, used from the next (re)start on.
    pub extra_args: Vec<OsString>,
    /// A command that runs the tracker (e.g. `prlimit --nofile=1024 --`),
    /// used from the next (re)start on; empty: run it directly.
    pub launcher: Vec<OsString>,
    info: PathBuf,
    proc: Option<Proc>,
}

impl Tracker {
    fn launch(&mut self) {
        let mut args: Vec<OsString> = vec![
            self.info.clone().into(),
            self.k.to_string().into(),
            "--data-dir".into(),
            self.data_dir.clone().into(),
        ];
        args.extend(self.extra_args.iter().cloned());
        let tracker = bin("tracker");
        self.proc = Some(match self.launcher.split_first() {
            None => Proc::spawn(&tracker, &args, &self.log),
            Some((program, prefix)) => {
                let mut all = prefix.to_vec();
                all.push(tracker.into());
                all.extend(args);
                Proc::spawn(Path::new(program), &all, &self.log)
            }
        });
    }

    /// Wait until it accepts TCP connections.
    fn wait_ready(&mut self) {
        let addr = self.addr;
        let mut exited = None;
        let up = wait_until(START_TIMEOUT, || {
            if let Some(p) = self.proc.as_mut() {
                exited = p.exited();
            }
            exited.is_some()
                || TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
        });
        if let Some(st) = exited {
            panic!(
                "tracker {} exited ({st}) before listening on {addr}; log:\n{}",
                self.k,
                log_tail(&self.log)
            );
        }
        if !up {
            panic!(
                "tracker {} not listening on {addr} after {START_TIMEOUT:?}; log:\n{}",
                self.k,
                log_tail(&self.log)
            );
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.exited().is_none())
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// `kill -9`, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// SIGTERM; the exit status if it stopped within [`STOP_TIMEOUT`].
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.proc.take().and_then(|mut p| p.terminate())
    }

    /// `kill -9`, then delete its data directory (a disk lost for good).
    pub fn wipe(&mut self) {
        self.kill9();
        if self.data_dir.exists() {
            std::fs::remove_dir_all(&self.data_dir).expect("remove the tracker's data dir");
        }
    }

    /// The newest `node K is leader (term T)` line of its log, as (T, K).
    pub fn reported_leader(&self) -> Option<(u64, usize)> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter_map(|line| {
                let rest = &line[line.find("node ")? + 5..];
                let (k, rest) = rest.split_once(" is leader (term ")?;
                let t = rest.split(')').next()?;
                Some((t.parse().ok()?, k.parse().ok()?))
            })
            .max()
    }

    /// A tracker outside any [`Net`] (an impostor, a second cluster):
    /// `tracker INFO k --data-dir DATA_DIR ARGS`, logging to `log`; waits
    /// until it accepts TCP connections on `addr` (panics if it exits
    /// first). Killed by its PID when dropped.
    pub fn spawn_standalone(
        info: &Path,
        k: usize,
        addr: SocketAddr,
        data_dir: &Path,
        log: &Path,
        args: &[OsString],
    ) -> Tracker {
        let mut t = Tracker {
            k,
            addr,
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
            extra_args: args.to_vec(),
            launcher: Vec::new(),
            info: info.to_path_buf(),
            proc: None,
        };
        t.launch();
        t.wait_ready();
        t
    }

    /// Start it again: same info file, line, port and data dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
        self.wait_ready();
    }
}

// ---------------------------------------------------------------- net

/// A tracker cluster plus a temp dir for daemon homes and files.
pub struct Net {
    pub trackers: Vec<Tracker>,
    /// The `tracker_info.txt` every process is given.
    pub info: PathBuf,
    dir: Arc<tempfile::TempDir>,
}

/// `tracker keygen PATH`: a new cluster key; its fingerprint.
pub fn keygen(path: &Path) -> String {
    let out = Command::new(bin("tracker"))
        .arg("keygen")
        .arg(path)
        .output()
        .expect("run tracker keygen");
    assert!(out.status.success(), "tracker keygen failed: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8 fingerprint")
        .trim()
        .to_string()
}

impl Net {
    /// Start as many trackers as `P2P_TEST_TRACKERS` says (default 1).
    pub fn start() -> Net {
        Net::start_with(Trackers::from_env())
    }

    /// Start `n` trackers from one `tracker_info.txt` on free 127.0.0.1 ports.
    pub fn start_with(trackers: Trackers) -> Net {
        Net::start_with_info(trackers, |addrs| {
            addrs.iter().map(|a| format!("{a}\n")).collect()
        })
    }

    /// Like [`Net::start_with`], each tracker started with `args` too.
    pub fn start_with_tracker_args(trackers: Trackers, args: &[&str]) -> Net {
        Net::start_full(trackers, args, |addrs| {
            addrs.iter().map(|a| format!("{a}\n")).collect()
        })
    }

    /// Like [`Net::start_with`], writing `tracker_info.txt` with `render`
    /// (to try comments, blank lines, the `IP PORT` form).
    pub fn start_with_info(trackers: Trackers, render: fn(&[SocketAddr]) -> String) -> Net {
        Net::start_full(trackers, &[], render)
    }

    fn start_full(
        Trackers(n): Trackers,
        tracker_args: &[&str],
        render: fn(&[SocketAddr]) -> String,
    ) -> Net {
        check_binaries();
        let dir = tempfile::Builder::new()
            .prefix("p2p")
            .tempdir_in("/tmp")
            .expect("make a temp dir in /tmp");
        let root = dir.path().to_path_buf();
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
            .collect();
        let info = root.join("tracker_info.txt");
        std::fs::write(&info, render(&addrs)).expect("write tracker_info.txt");
        let mut tracker_args: Vec<OsString> = tracker_args.iter().map(OsString::from).collect();
        // A cluster needs its key (a single tracker makes its own).
        if n > 1 {
            let key = root.join("cluster.key");
            keygen(&key);
            tracker_args.extend([OsString::from("--cluster-key"), key.into_os_string()]);
        }
        let mut trackers: Vec<Tracker> = addrs
            .iter()
            .enumerate()
            .map(|(i, &addr)| Tracker {
                k: i + 1,
                addr,
                data_dir: root.join(format!("t{}", i + 1)),
                log: root.join(format!("t{}.log", i + 1)),
                extra_args: tracker_args.clone(),
                launcher: Vec::new(),
                info: info.clone(),
                proc: None,
            })
            .collect();
        for t in &mut trackers {
            t.launch();
        }
        for t in &mut trackers {
            t.wait_ready();
        }
        let mut net = Net {
            trackers,
            info,
            dir: Arc::new(dir),
        };
        // A replicated cluster answers writes once it has elected a leader.
        if n > 1 && net.wait_leader(START_TIMEOUT).is_none() {
            panic!("no tracker reported a leader within {START_TIMEOUT:?}");
        }
        net
    }

    /// The temp dir this net owns (short path under /tmp).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh directory under the net's temp dir.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.dir().join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }

    /// Every tracker address, as `IP:PORT` strings.
    pub fn tracker_addrs(&self) -> Vec<String> {
        self.trackers.iter().map(|t| t.addr.to_string()).collect()
    }

    /// `kill -9` every tracker (with one tracker: "the only tracker is down").
    pub fn kill9_trackers(&mut self) {
        for t in &mut self.trackers {
            t.kill9();
        }
    }

    /// The 0-based index of the current leader, as the running trackers'
    /// logs report it (newest term wins), waiting up to `timeout` for one
    /// that is running.
    pub fn wait_leader(&mut self, timeout: Duration) -> Option<usize> {
        let mut found = None;
        wait_until(timeout, || {
            let best = self.reported_leader();
            found = best
                .map(|(_, k)| k - 1)
                .filter(|&i| self.trackers.get_mut(i).is_some_and(Tracker::is_running));
            found.is_some()
        });
        found
    }

    /// The newest leader any running tracker reports, as (term, k).
    pub fn reported_leader(&mut self) -> Option<(u64, usize)> {
        self.trackers
            .iter_mut()
            .filter_map(|t| {
                if t.is_running() {
                    t.reported_leader()
                } else {
                    None
                }
            })
            .max()
    }

    /// A fresh `tracker_info.txt` listing only tracker `i` (0-based), to
    /// pin a daemon to that one tracker.
    pub fn info_for(&self, i: usize) -> PathBuf {
        let path = self.dir().join(format!("only-t{}.txt", i + 1));
        std::fs::write(&path, format!("{}\n", self.trackers[i].addr)).expect("write info");
        path
    }

    /// Restart every tracker that is not running.
    pub fn restart_trackers(&mut self) {
        for t in &mut self.trackers {
            if !t.is_running() {
                t.kill9();
                t.launch();
            }
        }
        for t in &mut self.trackers {
            t.wait_ready();
        }
    }

    /// Start a daemon whose home is `<net dir>/<name>`, and wait until its
    /// control socket answers (and, softly, until it has reached a tracker).
    pub fn daemon(&self, name: &str) -> Daemon {
        self.daemon_with(name, &[])
    }

    /// [`Net::daemon`] with extra `p2pd` arguments (`--max-upload-rate 1M`).
    pub fn daemon_with(&self, name: &str, extra: &[&str]) -> Daemon {
        self.daemon_opts(name, extra, DaemonStyle::default())
    }

    /// [`Net::daemon_with`], choosing how the home and tracker list are given.
    pub fn daemon_opts(&self, name: &str, extra: &[&str], style: DaemonStyle) -> Daemon {
        self.daemon_with_info(name, extra, style, self.info.clone())
    }

    /// A daemon that knows only tracker `i` (0-based): what it reads is
    /// that tracker's replica.
    pub fn daemon_on(&self, name: &str, i: usize) -> Daemon {
        self.daemon_with_info(name, &[], DaemonStyle::default(), self.info_for(i))
    }

    /// A daemon given `info` as its tracker list (a proxy, an impostor, a
    /// file with a fingerprint), waiting softly until it has reached a
    /// tracker.
    pub fn daemon_via(&self, name: &str, extra: &[&str], info: PathBuf) -> Daemon {
        self.daemon_with_info(name, extra, DaemonStyle::default(), info)
    }

    /// Like [`Net::daemon_via`], but waiting only for the control socket:
    /// for a daemon that is expected never to reach a tracker it trusts.
    pub fn daemon_unconnected(&self, name: &str, info: PathBuf) -> Daemon {
        self.spawn_daemon(name, &[], DaemonStyle::default(), info)
    }

    fn daemon_with_info(
        &self,
        name: &str,
        extra: &[&str],
        style: DaemonStyle,
        info: PathBuf,
    ) -> Daemon {
        let d = self.spawn_daemon(name, extra, style, info);
        // Soft: a daemon normally reaches the tracker at once. If it does
        // not, the test's own assertions say what is wrong.
        wait_until(START_TIMEOUT, || {
            d.ctl(&["status"])
                .json
                .is_some_and(|j| j["tracker"].is_string())
        });
        d
    }

    fn spawn_daemon(
        &self,
        name: &str,
        extra: &[&str],
        style: DaemonStyle,
        info: PathBuf,
    ) -> Daemon {
        let home = self.dir().join(name);
        std::fs::create_dir_all(&home).expect("mkdir home");
        if style.info_in_home {
            std::fs::copy(&info, home.join("tracker_info.txt")).expect("copy info");
        }
        let mut d = Daemon {
            name: name.to_owned(),
            home: home.clone(),
            log: self.dir().join(format!("{name}.log")),
            info,
            extra: extra.iter().map(|s| OsString::from(*s)).collect(),
            style,
            extra_env: Vec::new(),
            proc: None,
            _dir: Arc::clone(&self.dir),
        };
        d.launch();
        d.wait_ready();
        d
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for t in &self.trackers {
            print_log_on_panic(&format!("tracker {}", t.k), &t.log);
        }
        for t in &mut self.trackers {
            t.kill9();
        }
    }
}

// ---------------------------------------------------------------- daemon

/// How a [`Daemon`] is told its home and tracker list.
#[derive(Debug, Clone, Copy, Default)]
pub struct DaemonStyle {
    /// `P2P_HOME=H` in the environment instead of `--home H`.
    pub home_from_env: bool,
    /// No `--tracker-info`: the list is copied to `H/tracker_info.txt`.
    pub info_in_home: bool,
}

/// One `p2pd --home H --listen 127.0.0.1:0 --tracker-info INFO` process.
pub struct Daemon {
    pub name: String,
    pub home: PathBuf,
    pub log: PathBuf,
    info: PathBuf,
    extra: Vec<OsString>,
    style: DaemonStyle,
    /// Set in its environment at the next (re)start ([`Daemon::set_env`]).
    extra_env: Vec<(OsString, OsString)>,
    proc: Option<Proc>,
    _dir: Arc<tempfile::TempDir>,
}

impl Daemon {
    pub fn sock(&self) -> PathBuf {
        self.home.join("p2pd.sock")
    }

    /// The tracker_info.txt it is started with (rewrite it, then
    /// [`Daemon::restart`], to point it elsewhere).
    pub fn info_path(&self) -> &Path {
        &self.info
    }

    fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if !self.style.home_from_env {
            args.extend(["--home".into(), self.home.clone().into()]);
        }
        // Unless the test chose the port (`--listen` among the extras).
        if !self.extra.iter().any(|a| a == "--listen") {
            args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        if !self.style.info_in_home {
            args.extend(["--tracker-info".into(), self.info.clone().into()]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    fn env(&self) -> Vec<(OsString, OsString)> {
        let mut env = self.extra_env.clone();
        if self.style.home_from_env {
            env.push(("P2P_HOME".into(), self.home.clone().into()));
        }
        env
    }

    /// Sets (`Some`) or unsets (`None`) `key` in the environment of the
    /// next [`Daemon::restart`] (`P2PD_FAULT` for the crash windows).
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.extra_env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.extra_env.push((key.into(), v.into()));
        }
    }

    fn launch(&mut self) {
        self.proc = Some(Proc::spawn_env(
            &bin("p2pd"),
            &self.args(),
            &self.env(),
            &self.log,
        ));
    }

    /// Wait until the control socket accepts a connection (a stale socket
    /// file left by a killed daemon does not).
    fn wait_ready(&mut self) {
        let sock = self.sock();
        let mut exited = None;
        let up = wait_until(START_TIMEOUT, || {
            if let Some(p) = self.proc.as_mut() {
                exited = p.exited();
            }
            exited.is_some() || UnixStream::connect(&sock).is_ok()
        });
        if let Some(st) = exited {
            panic!(
                "p2pd {} exited ({st}) before its control socket {} answered; log:\n{}",
                self.name,
                sock.display(),
                log_tail(&self.log)
            );
        }
        if !up {
            panic!(
                "p2pd {}: no control socket answering at {} after {START_TIMEOUT:?}; log:\n{}",
                self.name,
                sock.display(),
                log_tail(&self.log)
            );
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// `kill -9`, and reap it. The home (and a stale socket) stay.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// SIGTERM; the exit status if it stopped within [`STOP_TIMEOUT`].
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.proc.take().and_then(|mut p| p.terminate())
    }

    /// Start again on the same home with the same arguments, and wait for
    /// its control socket.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
        self.wait_ready();
    }

    /// Start a second, independent `p2pd` on the same home (it should
    /// refuse); waits at most [`START_TIMEOUT`] for it to exit and returns
    /// its exit status (None: still running, then killed) and its output.
    pub fn start_second_on_same_home(&self) -> (Option<ExitStatus>, String) {
        let log = self
            .home
            .with_file_name(format!("{}-second.log", self.name));
        let mut p = Proc::spawn_env(&bin("p2pd"), &self.args(), &self.env(), &log);
        let mut st = None;
        wait_until(START_TIMEOUT, || {
            st = p.exited();
            st.is_some()
        });
        drop(p);
        (st, std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// `p2pctl --home H --json ARGS`.
    pub fn ctl(&self, args: &[&str]) -> CtlOut {
        Ctl::new(&self.home).args(args).run()
    }

    /// `p2pctl --home H ARGS` (human output).
    pub fn ctl_human(&self, args: &[&str]) -> CtlOut {
        Ctl::new(&self.home).human().args(args).run()
    }

    /// A p2pctl call to configure (stdin, working dir, human output).
    pub fn call(&self) -> Ctl {
        Ctl::new(&self.home)
    }

    /// Poll until `args` succeeds (within [`SETTLE_TIMEOUT`]); its JSON.
    pub fn wait_success(&self, args: &[&str], what: &str) -> Value {
        let mut last = None;
        let ok = wait_until(SETTLE_TIMEOUT, || {
            let out = self.ctl(args);
            let done = out.status == 0;
            last = Some(out);
            done
        });
        let last = last.expect("polled at least once");
        assert!(
            ok,
            "{what}: {args:?} still failing after {SETTLE_TIMEOUT:?}: {last:?}"
        );
        last.json.unwrap_or(Value::Null)
    }

    /// Poll `list_files GROUP` until `name` shows `online == want` (within
    /// [`SETTLE_TIMEOUT`]).
    pub fn wait_online(&self, group: &str, name: &str, want: u64, what: &str) {
        let mut last = Value::Null;
        let ok = wait_until(SETTLE_TIMEOUT, || {
            let out = self.ctl(&["list_files", group]);
            last = out.json.clone().unwrap_or(Value::Null);
            out.status == 0
                && last
                    .as_array()
                    .and_then(|fs| fs.iter().find(|f| f["name"] == name))
                    .is_some_and(|f| f["online"] == want)
        });
        assert!(
            ok,
            "{what}: {name} should show online {want} within {SETTLE_TIMEOUT:?}; last list_files on {}: {last}",
            self.name
        );
    }

    /// Run `ARGS`; assert exit 0 and `{"ok": true}`.
    pub fn ok(&self, args: &[&str]) -> CtlOut {
        self.ctl(args).assert_ok()
    }

    /// Run `ARGS`; assert exit 0 and return the JSON document.
    pub fn json(&self, args: &[&str]) -> Value {
        self.ctl(args).assert_success()
    }

    /// Run `ARGS`; assert exit 1, `{"ok": false, "code": code}` and a
    /// stderr starting `error:`.
    pub fn err(&self, args: &[&str], code: &str) -> CtlOut {
        self.ctl(args).assert_err(code)
    }

    /// `status` as JSON.
    pub fn status(&self) -> Value {
        self.json(&["status"])
    }

    /// `create_user` (ignoring `user_exists`) then `login`.
    pub fn signup(&self, user: &str, password: &str) {
        let out = self.ctl(&["create_user", user, password]);
        if out.status != 0 {
            out.assert_err("user_exists");
        }
        self.ok(&["login", user, password]);
    }

    /// `list_files GROUP` as JSON array.
    pub fn files(&self, group: &str) -> Vec<Value> {
        match self.json(&["list_files", group]) {
            Value::Array(v) => v,
            other => panic!("list_files {group}: not a JSON array: {other}"),
        }
    }

    /// The `list_files` entry named `name`, if listed.
    pub fn file(&self, group: &str, name: &str) -> Option<Value> {
        self.files(group).into_iter().find(|f| f["name"] == name)
    }

    /// Raw control-socket exchange: write `bytes`, then read one reply frame
    /// if one comes within 10 s (None: the daemon closed without replying).
    pub fn raw(&self, bytes: &[u8]) -> RawReply {
        let mut s = UnixStream::connect(self.sock()).expect("connect to control socket");
        s.set_write_timeout(Some(Duration::from_secs(10))).ok();
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let write = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let reply = read_reply_frame(&mut s);
        RawReply { write, reply }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        print_log_on_panic(&format!("p2pd {}", self.name), &self.log);
        self.kill9();
    }
}

// ---------------------------------------------------------------- raw frames

/// `u32` big-endian length, then the payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + payload.len());
    v.extend_from_slice(
        &u32::try_from(payload.len())
            .expect("frame fits u32")
            .to_be_bytes(),
    );
    v.extend_from_slice(payload);
    v
}

/// One control request frame, as p2pctl would send it.
pub fn ctl_frame(request: &Value) -> Vec<u8> {
    let hello = json!({"version": proto::PROTOCOL_VERSION, "request": request});
    frame(&serde_json::to_vec(&hello).expect("encode"))
}

/// What a raw exchange got back.
#[derive(Debug)]
pub struct RawReply {
    /// Writing may fail if the peer closed early (a refused length prefix).
    pub write: std::io::Result<()>,
    /// The first reply frame decoded as JSON, or why there was none.
    pub reply: Result<Value, String>,
}

fn read_reply_frame(s: &mut impl Read) -> Result<Value, String> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .map_err(|e| format!("no reply frame: {e}"))?;
    let len = u32::from_be_bytes(len);
    if len > proto::frame::MAX_CTL_FRAME_BYTES {
        return Err(format!("reply frame of {len} bytes"));
    }
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf)
        .map_err(|e| format!("truncated reply frame: {e}"))?;
    serde_json::from_slice(&buf).map_err(|e| {
        format!(
            "reply is not JSON ({e}): {}",
            String::from_utf8_lossy(&buf[..buf.len().min(300)])
        )
    })
}

/// Raw TCP exchange with a tracker: write `bytes`; then read for at most
/// 3 s whatever comes back (the tracker may answer an error or close).
pub fn raw_tcp(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    // A refused length ends the connection early: a failed write is fine.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.len() > 1 << 20 {
            break;
        }
    }
    Ok(got)
}

// ---------------------------------------------------------------- p2pctl

/// One p2pctl invocation being configured.
pub struct Ctl {
    home: PathBuf,
    json: bool,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    cwd: Option<PathBuf>,
    home_from_env: bool,
}

impl Ctl {
    /// `p2pctl --home HOME --json`, no stdin, the test's working directory.
    pub fn new(home: &Path) -> Ctl {
        Ctl {
            home: home.to_path_buf(),
            json: true,
            args: Vec::new(),
            stdin: None,
            cwd: None,
            home_from_env: false,
        }
    }

    /// Give the home as `P2P_HOME` instead of `--home`.
    pub fn home_from_env(mut self) -> Ctl {
        self.home_from_env = true;
        self
    }

    /// Without `--json`.
    pub fn human(mut self) -> Ctl {
        self.json = false;
        self
    }

    pub fn args(mut self, args: &[&str]) -> Ctl {
        self.args.extend(args.iter().map(OsString::from));
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Ctl {
        self.args.push(arg.into());
        self
    }

    /// Feed this on stdin (else stdin is /dev/null).
    pub fn stdin(mut self, input: &str) -> Ctl {
        self.stdin = Some(input.as_bytes().to_vec());
        self
    }

    /// Run p2pctl in this working directory.
    pub fn cwd(mut self, dir: &Path) -> Ctl {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Run it; kill it and fail after [`CTL_TIMEOUT`].
    pub fn run(self) -> CtlOut {
        let mut cmd = Command::new(bin("p2pctl"));
        if self.home_from_env {
            cmd.env("P2P_HOME", &self.home);
        } else {
            cmd.env_remove("P2P_HOME").arg("--home").arg(&self.home);
        }
        if self.json {
            cmd.arg("--json");
        }
        cmd.args(&self.args);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let shown = shown_args(&self.args);
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn p2pctl: {e}"));
        let feeder = self.stdin.map(|input| {
            let mut w = child.stdin.take().expect("piped stdin");
            std::thread::spawn(move || {
                let _ = w.write_all(&input);
            })
        });
        let mut out_pipe = child.stdout.take().expect("piped stdout");
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let out_reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out_pipe.read_to_end(&mut v);
            v
        });
        let err_reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err_pipe.read_to_end(&mut v);
            v
        });
        let mut status = None;
        let finished = wait_until_fast(CTL_TIMEOUT, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if !finished {
            let _ = child.kill();
            let _ = child.wait();
            panic!("p2pctl {shown} did not finish within {CTL_TIMEOUT:?}; killed");
        }
        if let Some(f) = feeder {
            let _ = f.join();
        }
        let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
        let status = status.expect("finished");
        let json = serde_json::from_str(stdout.trim()).ok();
        CtlOut {
            args: shown,
            status: status.code().unwrap_or(-1),
            stdout,
            stderr,
            json,
            elapsed: started.elapsed(),
        }
    }
}

/// Like [`wait_until`] but polling every 10 ms (p2pctl calls are short).
fn wait_until_fast(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn shown_args(args: &[OsString]) -> String {
    args.iter()
        .map(|a| {
            let s = a.to_string_lossy();
            if s.len() > 80 {
                format!("{}…({} bytes)", &s[..40], s.len())
            } else {
                format!("{s:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What one p2pctl call did.
#[derive(Debug, Clone)]
pub struct CtlOut {
    /// The arguments, for messages.
    pub args: String,
    /// Exit code (-1 if killed by a signal).
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    /// stdout parsed as one JSON document, if it is one.
    pub json: Option<Value>,
    pub elapsed: Duration,
}

impl CtlOut {
    fn describe(&self) -> String {
        format!(
            "p2pctl {}\n  exit: {}\n  stdout: {}\n  stderr: {}",
            self.args,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    /// Exit 0 and a JSON document; returns it.
    pub fn assert_success(self) -> Value {
        assert_eq!(self.status, 0, "want exit 0\n{}", self.describe());
        match self.json {
            Some(v) => v,
            None => panic!("stdout is not one JSON document\n{}", self.describe()),
        }
    }

    /// Exit 0 and `{"ok": true, "message": "..."}`.
    pub fn assert_ok(self) -> CtlOut {
        assert_eq!(self.status, 0, "want exit 0\n{}", self.describe());
        let j = self
            .json
            .as_ref()
            .unwrap_or_else(|| panic!("stdout is not one JSON document\n{}", self.describe()));
        assert_eq!(j["ok"], true, "want {{\"ok\": true}}\n{}", self.describe());
        assert!(
            j["message"].is_string(),
            "want a \"message\" string\n{}",
            self.describe()
        );
        self
    }

    /// Exit 1, `{"ok": false, "code": code, "error": "..."}` and a stderr
    /// starting `error:`.
    pub fn assert_err(self, code: &str) -> CtlOut {
        let j = self.json.clone().unwrap_or(Value::Null);
        assert!(
            self.status == 1 && j["ok"] == false && j["code"] == code,
            "want exit 1 and {{\"ok\": false, \"code\": {code:?}}}\n{}",
            self.describe()
        );
        assert!(
            j["error"].as_str().is_some_and(|s| !s.is_empty()),
            "want a human \"error\" sentence\n{}",
            self.describe()
        );
        assert!(
            self.stderr.trim_start().starts_with("error:"),
            "want stderr starting `error:`\n{}",
            self.describe()
        );
        self
    }

    /// The JSON `code` of a failure, or "" on success.
    pub fn code(&self) -> String {
        self.json
            .as_ref()
            .and_then(|j| j["code"].as_str())
            .unwrap_or("")
            .to_owned()
    }
}

/// p2pctl on a home with (perhaps) no daemon.
pub fn ctl_at(home: &Path, args: &[&str]) -> CtlOut {
    Ctl::new(home).args(args).run()
}

// ---------------------------------------------------------------- scenarios

/// A net with daemons `a` (alice, owner of group `g`) and `b` (bob, a
/// member of `g`), both logged in.
pub struct Pair {
    pub a: Daemon,
    pub b: Daemon,
    pub net: Net,
}

impl Pair {
    pub fn start() -> Pair {
        let net = Net::start();
        let a = net.daemon("a");
        let b = net.daemon("b");
        a.ok(&["create_user", "alice", "pw-a"]);
        a.ok(&["create_user", "bob", "pw-b"]);
        a.ok(&["login", "alice", "pw-a"]);
        b.ok(&["login", "bob", "pw-b"]);
        a.ok(&["create_group", "g"]);
        b.ok(&["join_group", "g"]);
        a.ok(&["accept_request", "g", "bob"]);
        Pair { a, b, net }
    }
}
