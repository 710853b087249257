//! Local trust, attacked as another local user would: a symlink planted on
//! the daemon's temporary state file, a home others may write to, the
//! modes of what the daemon and the tracker leave on disk, and another uid
//! driving a daemon through its control socket (SO_PEERCRED).

use blackbox::{bin, random_file, wait_until, Ctl, CtlOut, Net, START_TIMEOUT};
use std::ffi::OsStr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The uid `setpriv` drops to in [`another_uid_cannot_drive_a_daemon`].
const NOBODY: u32 = 65534;

fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Every entry under `dir` (not following symlinks), `dir` excluded.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = e.expect("dir entry").path();
        if std::fs::symlink_metadata(&path).expect("lstat").is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// `dir` is 0700 and everything in it 0700 (directories) or 0600 (files,
/// sockets); no symlinks.
fn assert_private_tree(what: &str, dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{what}: {}", dir.display());
    let entries = walk(dir);
    for path in &entries {
        let meta = std::fs::symlink_metadata(path).expect("lstat");
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert!(
            meta.is_dir() || meta.is_file() || meta.file_type().is_socket(),
            "{what}: unexpected kind of file {}",
            path.display()
        );
        assert_eq!(
            meta.mode() & 0o7777,
            want,
            "{what}: {} is {:04o}",
            path.display(),
            meta.mode() & 0o7777
        );
    }
    assert!(!entries.is_empty(), "{what}: {} is empty", dir.display());
}

/// A `p2pd` started here rather than by the harness (which makes the home
/// itself); SIGKILLed and reaped on drop.
struct Started {
    child: Child,
    log: PathBuf,
}

impl Started {
    fn spawn(home: &Path, info: &Path, log: &Path) -> Started {
        let out = std::fs::File::create(log).expect("create log");
        let child = Command::new(bin("p2pd"))
            .args(["--home", p(home), "--listen", "127.0.0.1:0"])
            .args(["--tracker-info", p(info)])
            .env_remove("P2P_HOME")
            // Never the developer's own ~/.config/p2pshare/config.toml.
            .env("XDG_CONFIG_HOME", home.with_file_name("no-xdg-config"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log"))
            .stderr(out)
            .spawn()
            .expect("spawn p2pd");
        Started {
            child,
            log: log.to_path_buf(),
        }
    }

    /// The exit status, if it exits within [`START_TIMEOUT`].
    fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let mut st = None;
        wait_until(START_TIMEOUT, || {
            st = self.child.try_wait().ok().flatten();
            st.is_some()
        });
        st
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- p2pd log -----\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn symlinks_planted_on_the_state_tmp_files_are_not_followed() {
    let net = Net::start();
    let d = net.daemon("a");
    let victim = net.dir().join("victim");
    let victim2 = net.dir().join("victim2");
    for v in [&victim, &victim2] {
        std::fs::write(v, b"precious, not the daemon's").expect("write victim");
        chmod(v, 0o644);
    }
    std::os::unix::fs::symlink(&victim, d.home.join("session.json.tmp")).expect("plant");
    std::os::unix::fs::symlink(&victim2, d.home.join("shares.json.tmp")).expect("plant");

    d.ok(&["create_user", "alice", "pw"]);
    d.ok(&["login", "alice", "pw"]);
    d.ok(&["create_group", "g"]);
    let f = net.dir().join("f.bin");
    random_file(&f, 1000);
    d.ok(&["upload_file", p(&f), "g"]);

    for v in [&victim, &victim2] {
        assert_eq!(
            std::fs::read(v).expect("victim still there"),
            b"precious, not the daemon's",
            "{} was written through the planted link",
            v.display()
        );
        assert_eq!(mode(v), 0o644, "{}: mode changed", v.display());
    }
    for name in ["session.json", "shares.json"] {
        let path = d.home.join(name);
        let meta = std::fs::symlink_metadata(&path).expect("state file saved");
        assert!(
            meta.is_file(),
            "{name} is a regular file, not the planted link"
        );
        assert_eq!(meta.mode() & 0o777, 0o600, "{name}");
        assert!(
            std::fs::symlink_metadata(d.home.join(format!("{name}.tmp"))).is_err(),
            "{name}.tmp: the planted link is gone"
        );
    }
    let session = std::fs::read_to_string(d.home.join("session.json")).expect("read");
    assert!(session.contains("alice"), "{session}");

    // Saved properly: a restarted daemon is still logged in and sharing.
    let mut d = d;
    d.restart();
    assert_eq!(d.status()["user"], "alice");
    assert_eq!(d.file("g", "f.bin").expect("still listed")["holders"], 1);
}

#[test]
fn a_home_others_may_write_to_is_refused() {
    let t = tempfile::Builder::new()
        .prefix("p2p")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let info = t.path().join("tracker_info.txt");
    // Never reached: the home is refused before any tracker is contacted.
    std::fs::write(&info, "127.0.0.1:1\n").expect("write info");
    for home_mode in [0o777, 0o770, 0o757] {
        let home = t.path().join(format!("h{home_mode:o}"));
        std::fs::create_dir(&home).expect("mkdir");
        chmod(&home, home_mode);
        let mut d = Started::spawn(&home, &info, &t.path().join(format!("{home_mode:o}.log")));
        let st = d.wait_exit();
        let log = d.log();
        assert!(
            st.is_some_and(|s| !s.success()),
            "mode {home_mode:o}: p2pd should refuse at once and exit non-zero, got {st:?}; log:\n{log}"
        );
        assert!(log.contains(p(&home)), "names the home: {log}");
        assert!(
            log.contains(&format!("chmod 700 {}", p(&home))),
            "says how to fix it: {log}"
        );
        assert!(
            !home.join("p2pd.sock").exists(),
            "no socket in a refused home"
        );
        assert_eq!(mode(&home), home_mode, "a refused home is left as it was");
    }
}

#[test]
fn the_daemon_keeps_its_home_private() {
    let net = Net::start();
    let b = net.daemon("b");
    b.ok(&["create_user", "bob", "pw-b"]);
    b.ok(&["login", "bob", "pw-b"]);
    b.ok(&["create_group", "g"]);
    let shared = net.dir().join("shared.bin");
    random_file(&shared, 700_000);
    b.ok(&["upload_file", p(&shared), "g"]);

    // A home that does not exist yet, parents included: the daemon makes it.
    let parent = net.dir().join("new");
    let home = parent.join("home");
    let mut a = Started::spawn(&home, &net.info, &net.dir().join("a.log"));
    let sock = home.join("p2pd.sock");
    assert!(
        wait_until(START_TIMEOUT, || UnixStream::connect(&sock).is_ok()),
        "p2pd did not open {} in time",
        sock.display()
    );
    let ctl = |args: &[&str]| Ctl::new(&home).args(args).run();
    assert_eq!(mode(&parent), 0o700, "a parent it created");
    assert_eq!(mode(&home), 0o700);

    ctl(&["create_user", "alice", "pw-a"]).assert_ok();
    ctl(&["login", "alice", "pw-a"]).assert_ok();
    ctl(&["join_group", "g"]).assert_ok();
    b.ok(&["accept_request", "g", "alice"]);
    let mine = net.dir().join("mine.bin");
    random_file(&mine, 3000);
    ctl(&["upload_file", p(&mine), "g"]).assert_ok();
    // A download leaves a record in HOME/downloads while it runs; the
    // destination is the user's own directory, with the user's modes.
    let dest = net.mkdir("dl");
    ctl(&["download_file", "g", "shared.bin", p(&dest)]).assert_ok();
    // Whatever this umask makes of 0644, as for any file the user creates.
    let probe = dest.join("probe");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&probe)
        .expect("create probe");
    assert_eq!(
        mode(&dest.join("shared.bin")),
        mode(&probe),
        "a download keeps the user's modes"
    );

    assert_private_tree("p2pd home", &home);
    for name in ["p2pd.sock", "p2pd.lock", "session.json", "shares.json"] {
        assert!(home.join(name).exists(), "{name} in the home");
    }
    assert!(a.child.try_wait().ok().flatten().is_none(), "still running");
}

#[test]
fn the_tracker_keeps_its_data_dir_private() {
    let mut net = Net::start();
    let d = net.daemon("a");
    d.ok(&["create_user", "alice", "pw"]);
    d.ok(&["login", "alice", "pw"]);
    d.ok(&["create_group", "g"]);
    for t in &net.trackers {
        assert_private_tree(&format!("tracker {} data", t.k), &t.data_dir);
    }

    // A data dir left world-readable (by an older tracker, or by hand) is
    // made private again at start.
    let t = &mut net.trackers[0];
    t.stop();
    chmod(&t.data_dir, 0o755);
    for f in walk(&t.data_dir) {
        chmod(&f, 0o644);
    }
    t.restart();
    assert_private_tree("tracker 1 data after restart", &t.data_dir);
    d.wait_success(&["list_groups"], "the tracker is back");
}

/// `id -u` of this test process.
fn my_uid() -> Option<u32> {
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// Run `p2pctl --home HOME --json ARGS` as uid/gid [`NOBODY`] through
/// `setpriv`, killed after 30 s.
fn ctl_as_nobody(p2pctl: &Path, home: &Path, args: &[&str]) -> Output {
    let mut child = Command::new("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(p2pctl)
        .args([OsStr::new("--home"), home.as_os_str(), OsStr::new("--json")])
        .args(args)
        .env_remove("P2P_HOME")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn setpriv");
    let done = wait_until(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !done {
        let _ = child.kill();
    }
    child.wait_with_output().expect("collect p2pctl output")
}

#[test]
fn another_uid_cannot_drive_a_daemon() {
    if my_uid() != Some(0) {
        eprintln!("skipped: needs root to run p2pctl as another uid (setpriv)");
        return;
    }
    let has_setpriv = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_setpriv {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    let net = Net::start();
    let d = net.daemon("a");
    d.ok(&["create_user", "alice", "pw"]);
    d.ok(&["login", "alice", "pw"]);

    // Open every file-mode door on the way to the socket, for this test
    // only, so SO_PEERCRED is all that stands in the way.
    let p2pctl = net.dir().join("p2pctl");
    std::fs::copy(bin("p2pctl"), &p2pctl).expect("copy p2pctl where nobody may run it");
    chmod(&p2pctl, 0o755);
    chmod(net.dir(), 0o711);
    chmod(&d.home, 0o711);
    chmod(&d.sock(), 0o666);
    let reachable = ctl_as_nobody(&p2pctl, &d.home, &["status"]);
    let stderr = String::from_utf8_lossy(&reachable.stderr);
    assert!(
        !stderr.contains("ermission denied"),
        "the socket should be reachable by file modes: {stderr}"
    );

    for args in [
        &["create_group", "intruders"][..],
        &["logout"][..],
        &["status"][..],
    ] {
        let out = ctl_as_nobody(&p2pctl, &d.home, args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} as uid {NOBODY}: stdout {stdout} stderr {stderr}"
        );
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("connections from uid {NOBODY} are refused")),
            "{args:?}: {stderr}"
        );
        let doc: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON document ({e}): {stdout}"));
        assert_eq!(doc["ok"], false, "{doc}");
        assert!(
            !stdout.contains("alice"),
            "nothing about the owner leaks: {stdout}"
        );
    }

    // The owner's daemon is as it was: still logged in, no group created.
    assert_eq!(d.status()["user"], "alice");
    let groups = d.json(&["list_groups"]);
    assert_eq!(
        groups,
        serde_json::json!([]),
        "no group was created: {groups}"
    );
    let log = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert!(
        log.contains("refused a control connection"),
        "logged: {log}"
    );
    // And the owner still drives it.
    let out: CtlOut = d.ctl(&["create_group", "mine"]);
    out.assert_ok();
}
