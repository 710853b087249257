//! Running under a shell or systemd: the tracker as a background job of an
//! interactive shell, SIGHUP, readiness on `NOTIFY_SOCKET`, the journald
//! log format, no secrets in the logs, the shipped units and installer, and
//! the tracker's memory settings (no transparent huge pages).

use blackbox::{bin, free_port, send_signal, wait_until, Net, SETTLE_TIMEOUT, START_TIMEOUT};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Runs `tests/scripts/tracker_in_pty.py` (an interactive bash in a
/// pseudo-terminal that starts the tracker) in `mode`; its JSON report.
fn tracker_in_pty(mode: &str) -> Value {
    let dir = tempfile::Builder::new()
        .prefix("p2p")
        .tempdir_in("/tmp")
        .unwrap();
    let port = free_port();
    let info = dir.path().join("tracker_info.txt");
    std::fs::write(&info, format!("127.0.0.1:{port}\n")).unwrap();
    let log = dir.path().join("tracker.log");
    let out = Command::new("python3")
        .arg(workspace().join("tests/scripts/tracker_in_pty.py"))
        .arg(bin("tracker"))
        .arg(&info)
        .arg(dir.path().join("data"))
        .arg(&log)
        .arg(port.to_string())
        .arg(mode)
        .stdin(Stdio::null())
        .output()
        .expect("run python3 (the pseudo-terminal driver)");
    assert!(out.status.success(), "driver failed: {out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("driver prints JSON");
    let tracker_log = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("driver report: {report:#}\ntracker log:\n{tracker_log}");
    report
}

#[test]
fn tracker_as_a_background_job_of_an_interactive_shell_keeps_running_and_stops_on_kill() {
    // Before: the tracker read its terminal from the background, the shell
    // said `Stopped (tty input)` and `kill %1` left it stopped.
    let report = tracker_in_pty("background");
    assert_eq!(report["listening"], true);
    assert_eq!(report["stopped"], false, "the job was stopped");
    assert!(
        report["jobs"].as_str().unwrap_or("").contains("Running"),
        "jobs should say Running"
    );
    assert_eq!(report["ended_on_kill"], true, "kill %1 did not end it");
}

#[test]
fn tracker_in_the_foreground_stops_on_quit_typed_even_after_sighups() {
    let report = tracker_in_pty("foreground");
    assert_eq!(report["listening"], true);
    assert_eq!(report["hupped"], true, "SIGHUP sent before quit");
    assert_eq!(
        report["exited_on_quit"], true,
        "quit did not stop it (status 0)"
    );
}

#[test]
fn tracker_suspended_then_put_in_the_background_keeps_running() {
    let report = tracker_in_pty("suspend");
    assert_eq!(report["listening"], true);
    assert_eq!(report["suspended"], true, "Ctrl-Z did not stop it");
    let jobs = report["jobs"].as_str().unwrap_or("");
    assert!(
        jobs.contains("Running") && !jobs.contains("Stopped"),
        "{jobs}"
    );
    assert_eq!(
        report["exited_on_quit"], true,
        "quit after fg did not stop it"
    );
}

#[test]
fn sighup_is_logged_and_ignored_by_the_tracker_and_the_daemon() {
    let net = Net::start();
    let a = net.daemon("a");
    a.signup("alice", "pw-a");
    let tracker_pid = net.trackers[0].pid().expect("tracker running");
    send_signal(tracker_pid, libc::SIGHUP);
    send_signal(a.pid().expect("daemon running"), libc::SIGHUP);
    let said = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("SIGHUP ignored")
    };
    assert!(wait_until(SETTLE_TIMEOUT, || said(&net.trackers[0].log)
        && said(&a.log)));
    // Both still serve: a call that goes through the daemon to the tracker.
    a.ok(&["create_group", "g"]);
    assert_eq!(a.status()["user"], "alice");
}

/// The tracker turns transparent huge pages off for itself (its heap held
/// 35-60 MiB of half-used 2 MiB pages under write load): the kernel shows
/// it as `THP_enabled: 0` in the process's status, whatever the system's
/// THP mode.
#[test]
fn the_tracker_runs_without_transparent_huge_pages() {
    let net = Net::start();
    let pid = net.trackers[0].pid().expect("tracker running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    assert_eq!(thp, Some("0"), "tracker status:\n{status}");
}

/// Binds a datagram socket for `NOTIFY_SOCKET` in `dir`.
fn notify_socket(dir: &Path) -> (UnixDatagram, PathBuf) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (sock, path)
}

/// Datagrams received within `timeout`, until one contains `want`.
fn receive_until(sock: &UnixDatagram, want: &str, timeout: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    wait_until(timeout, || {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        said(&got, want)
    });
    got
}

/// One of the datagrams has the line `want`.
fn said(got: &[String], want: &str) -> bool {
    got.iter().any(|m| m.lines().any(|l| l == want))
}

/// A process started here, killed by its PID on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn both_programs_notify_ready_then_stopping_on_notify_socket() {
    let net = Net::start();
    let (sock, path) = notify_socket(net.dir());

    let mut a = net.daemon("a");
    a.set_env("NOTIFY_SOCKET", Some(path.to_str().unwrap()));
    a.restart();
    let got = receive_until(&sock, "READY=1", START_TIMEOUT);
    assert!(said(&got, "READY=1"), "daemon sent {got:?}");
    a.stop();
    let got = receive_until(&sock, "STOPPING=1", START_TIMEOUT);
    assert!(said(&got, "STOPPING=1"), "daemon sent {got:?}");

    let port = free_port();
    let info = net.dir().join("solo_info.txt");
    std::fs::write(&info, format!("127.0.0.1:{port}\n")).unwrap();
    let log = std::fs::File::create(net.dir().join("solo.log")).unwrap();
    let tracker = Killed(
        Command::new(bin("tracker"))
            .arg(&info)
            .arg("1")
            .arg("--data-dir")
            .arg(net.dir().join("solo"))
            .env("NOTIFY_SOCKET", &path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let got = receive_until(&sock, "READY=1", START_TIMEOUT);
    assert!(said(&got, "READY=1"), "tracker sent {got:?}");
    // Ready means listening.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    send_signal(tracker.0.id(), libc::SIGTERM);
    let got = receive_until(&sock, "STOPPING=1", START_TIMEOUT);
    assert!(said(&got, "STOPPING=1"), "tracker sent {got:?}");
}

#[test]
fn under_journald_lines_carry_a_syslog_priority_and_no_timestamp() {
    let net = Net::start();
    let mut a = net.daemon("a");
    // systemd names the stream it connects as DEV:INODE; here the log file.
    let meta = std::fs::metadata(&a.log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    std::fs::write(&a.log, b"").unwrap();
    a.set_env("JOURNAL_STREAM", Some(&stream));
    a.restart();
    a.signup("alice", "pw-a");
    let log = std::fs::read_to_string(&a.log).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| l.starts_with(p)),
            "no priority: {l}"
        );
        assert!(!l.contains('\u{1b}'), "escape code: {l}");
        // No RFC 3339 timestamp such as 2026-12-01T07:55:34.003909Z.
        assert!(
            !l.split_whitespace()
                .any(|w| w.len() > 20 && w.contains('T') && w.ends_with('Z')),
            "timestamp: {l}"
        );
    }
    assert!(lines.iter().any(|l| l.starts_with("<6>")), "{log}");

    // A stream that is not the journal's (stderr redirected elsewhere):
    // the usual format.
    std::fs::write(&a.log, b"").unwrap();
    a.set_env("JOURNAL_STREAM", Some("1:2"));
    a.restart();
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert!(log.lines().all(|l| !l.starts_with('<')), "{log}");
    assert!(log.contains(" INFO "), "{log}");
}

#[test]
fn passwords_and_tokens_never_reach_the_logs() {
    let net = Net::start();
    let mut a = net.daemon("a");
    let mut b = net.daemon("b");
    // Debug too: the requests and replies that carry them are logged there.
    for d in [&mut a, &mut b] {
        d.set_env("RUST_LOG", Some("debug"));
        d.restart();
    }
    let (pw_a, pw_b) = ("Secret-Pass-Alpha-93", "Secret-Pass-Beta-17");
    a.signup("alice", pw_a);
    b.signup("bob", pw_b);
    a.ok(&["create_group", "g"]);
    b.ok(&["join_group", "g"]);
    a.ok(&["accept_request", "g", "bob"]);
    let f = net.mkdir("src").join("f.bin");
    blackbox::random_file(&f, 300_000);
    a.ok(&["upload_file", f.to_str().unwrap(), "g"]);
    let dest = net.mkdir("dl");
    b.ok(&["download_file", "g", "f.bin", dest.to_str().unwrap()]);
    assert!(wait_until(SETTLE_TIMEOUT, || dest.join("f.bin").exists()));
    a.err(&["login", "alice", "wrong-Secret"], "already_logged_in");
    a.ok(&["logout"]);
    a.err(&["login", "alice", "Wrong-Secret-Pass"], "bad_credentials");

    let token_of = |home: &Path| -> Option<String> {
        let s = std::fs::read_to_string(home.join("session.json")).ok()?;
        let v: Value = serde_json::from_str(&s).ok()?;
        v["token"].as_str().map(str::to_string)
    };
    let token_b = token_of(&b.home).expect("b's session token");
    let mut logs = vec![a.log.clone(), b.log.clone()];
    logs.extend(net.trackers.iter().map(|t| t.log.clone()));
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.is_empty(), "{} is empty", log.display());
        for secret in [pw_a, pw_b, "Wrong-Secret-Pass", token_b.as_str()] {
            assert!(
                !text.contains(secret),
                "{} contains a secret: {secret}",
                log.display()
            );
        }
    }
}

/// `KEY=value` lines of a unit file's `[section]`, comments left out.
fn unit_keys(unit: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut keys = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
        } else if current == section {
            let (k, v) = line.split_once('=').expect("KEY=value");
            keys.push((k.to_string(), v.to_string()));
        }
    }
    keys
}

fn has(keys: &[(String, String)], key: &str, value: &str) -> bool {
    keys.iter().any(|(k, v)| k == key && v == value)
}

#[test]
fn the_units_carry_readiness_restart_hardening_and_install() {
    let dir = workspace().join("contrib/systemd");
    let p2pd = std::fs::read_to_string(dir.join("p2pd.service")).unwrap();
    let service = unit_keys(&p2pd, "Service");
    for (k, v) in [
        ("Type", "notify"),
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ExecStart", "%h/.local/bin/p2pd"),
    ] {
        assert!(has(&service, k, v), "p2pd.service: no {k}={v}");
    }
    assert!(has(
        &unit_keys(&p2pd, "Install"),
        "WantedBy",
        "default.target"
    ));

    let tracker = std::fs::read_to_string(dir.join("tracker@.service")).unwrap();
    let service = unit_keys(&tracker, "Service");
    for (k, v) in [
        ("Type", "notify"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "p2pshare/tracker-%i"),
        ("LoadCredential", "cluster.key:/etc/p2pshare/cluster.key"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("LimitNOFILE", "65536"),
    ] {
        assert!(has(&service, k, v), "tracker@.service: no {k}={v}");
    }
    let exec = &service.iter().find(|(k, _)| k == "ExecStart").unwrap().1;
    for part in [
        "/etc/p2pshare/tracker_info.txt %i",
        "--data-dir ${STATE_DIRECTORY}",
        "--cluster-key ${CREDENTIALS_DIRECTORY}/cluster.key",
    ] {
        assert!(exec.contains(part), "ExecStart lacks {part}: {exec}");
    }
    assert!(has(
        &unit_keys(&tracker, "Install"),
        "WantedBy",
        "multi-user.target"
    ));
}

fn install_sh(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(workspace().join("contrib/install.sh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run bash contrib/install.sh")
}

#[test]
fn install_script_installs_into_a_prefix_and_its_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let units = dir.path().join("units");
    let bins = bin("p2pd").parent().unwrap().to_path_buf();
    let args = [
        "--system",
        "--prefix",
        prefix.to_str().unwrap(),
        "--unit-dir",
        units.to_str().unwrap(),
        "--bin-dir",
        bins.to_str().unwrap(),
    ];

    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let out = install_sh(&dry);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("would run: install -m 755"), "{said}");
    assert!(!prefix.exists() && !units.exists(), "--dry-run wrote files");

    let out = install_sh(&args);
    assert!(out.status.success(), "{out:?}");
    for p in ["tracker", "p2pd", "p2pctl"] {
        let installed = prefix.join("bin").join(p);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(bins.join(p)).unwrap(),
            "{p} installed as built"
        );
        assert_eq!(std::fs::metadata(&installed).unwrap().mode() & 0o777, 0o755);
    }
    let user_unit = units.join("user/p2pd.service");
    let system_unit = units.join("system/tracker@.service");
    let p2pd = std::fs::read_to_string(&user_unit).unwrap();
    let exec = format!("ExecStart={}/bin/p2pd", prefix.display());
    assert!(p2pd.lines().any(|l| l == exec), "{p2pd}");
    let tracker = std::fs::read_to_string(&system_unit).unwrap();
    let exec = format!("ExecStart={}/bin/tracker ", prefix.display());
    assert!(tracker.lines().any(|l| l.starts_with(&exec)), "{tracker}");

    // Man pages and completions, where the programs can make them.
    for p in ["tracker", "p2pd", "p2pctl"] {
        let man = prefix.join(format!("share/man/man1/{p}.1"));
        let completion = prefix.join(format!("share/bash-completion/completions/{p}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.contains(&format!("skipped the man page of {p}")) {
            assert!(std::fs::metadata(&man).unwrap().len() > 0, "{p}.1 empty");
        }
        if !stderr.contains(&format!("skipped the bash completions of {p}")) {
            assert!(std::fs::metadata(&completion).unwrap().len() > 0);
        }
    }

    // systemd's own check, where systemd is installed (.ci/run installs it).
    let has_analyze = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_analyze {
        eprintln!("systemd-analyze not installed: units checked by parsing only");
        return;
    }
    for unit in [&user_unit, &system_unit] {
        let out = Command::new("systemd-analyze")
            .args(["--man=no", "verify"])
            .arg(unit)
            .output()
            .unwrap();
        // It warns about unknown keys and still exits 0: any word fails.
        assert!(
            out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
            "systemd-analyze verify {}: {}{}",
            unit.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn install_script_refuses_an_unknown_argument_with_status_2() {
    let out = install_sh(&["--bogus", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}

fn count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

#[test]
fn an_unreachable_tracker_is_warned_about_once_per_outage() {
    let mut net = Net::start();
    let a = net.daemon("a");
    a.signup("alice", "pw-a");
    net.kill9_trackers();
    // Retries go on every 2 s at most; wait for several of them.
    assert!(wait_until(SETTLE_TIMEOUT, || count(
        &a.log,
        "no tracker answers at"
    ) == 1));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(count(&a.log, "no tracker answers at"), 1, "warned again");
    let warn_line = std::fs::read_to_string(&a.log)
        .unwrap()
        .lines()
        .find(|l| l.contains("no tracker answers at"))
        .unwrap()
        .to_string();
    assert!(warn_line.contains("WARN"), "{warn_line}");

    net.restart_trackers();
    assert!(wait_until(SETTLE_TIMEOUT, || count(
        &a.log,
        "answers again"
    ) == 1
        || count(&a.log, "tracker failover") == 1));
    // A second outage is a second warning.
    net.kill9_trackers();
    assert!(wait_until(SETTLE_TIMEOUT, || count(
        &a.log,
        "no tracker answers at"
    ) == 2));
}

#[test]
fn significant_events_are_one_info_line_each() {
    let net = Net::start();
    let a = net.daemon("a");
    let b = net.daemon("b");
    a.signup("alice", "pw-a");
    b.signup("bob", "pw-b");
    a.ok(&["create_group", "g"]);
    b.ok(&["join_group", "g"]);
    a.ok(&["accept_request", "g", "bob"]);
    let f = net.mkdir("src").join("f.bin");
    blackbox::random_file(&f, 3 * 1024 * 1024);
    a.ok(&["upload_file", f.to_str().unwrap(), "g"]);
    let dest = net.mkdir("dl");
    b.ok(&["download_file", "g", "f.bin", dest.to_str().unwrap()]);
    assert!(wait_until(SETTLE_TIMEOUT, || count(
        &b.log,
        "download finished"
    ) == 1));
    b.ok(&["logout"]);

    let a_log = std::fs::read_to_string(&a.log).unwrap();
    let b_log = std::fs::read_to_string(&b.log).unwrap();
    let line = |log: &str, needle: &str| -> String {
        let found: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
        assert_eq!(found.len(), 1, "one line with {needle:?}:\n{log}");
        found[0].to_string()
    };
    assert!(line(&a_log, "logged in").contains("alice"));
    assert!(line(&a_log, "sharing f.bin in group g").contains("3.00 MiB"));
    let started = line(&b_log, "download started");
    assert!(
        started.contains("f.bin") && started.contains("3.00 MiB"),
        "{started}"
    );
    assert!(started.contains(dest.to_str().unwrap()), "{started}");
    let finished = line(&b_log, "download finished");
    assert!(
        finished.contains("3.00 MiB") && finished.contains("MiB/s") && finished.contains("alice"),
        "{finished}"
    );
    assert!(line(&b_log, "logged out").contains("bob"));
}

#[test]
fn a_lost_peer_tracker_is_logged_once_per_outage_not_at_every_retry() {
    let mut net = Net::start_with(blackbox::Trackers(3));
    // 0-based index; trackers are numbered from 1.
    let leader = net.wait_leader(START_TIMEOUT).expect("a leader");
    let lost = if leader == 2 { 2 } else { 3 };
    net.trackers[lost - 1].kill9();
    let log = net.trackers[leader].log.clone();
    let needle = format!("cannot reach tracker {lost} at");
    assert!(wait_until(SETTLE_TIMEOUT, || count(&log, &needle) == 1));
    // openraft retries several times a second meanwhile.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count(&log, &needle), 1, "reported again");
    assert_eq!(
        count(&log, "openraft::replication"),
        0,
        "openraft's retries logged"
    );
    net.restart_trackers();
    let back = format!("tracker {lost} at");
    assert!(wait_until(SETTLE_TIMEOUT, || count(&log, &back) >= 2
        && count(&log, "answers again") == 1));
}
