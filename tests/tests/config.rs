//! The daemons' config files, the tracker_info.txt lookup, and the
//! generated man pages and completions, through the real binaries.
//!
//! Every process gets its own `HOME` and `XDG_CONFIG_HOME` under a temp
//! dir and runs in an empty working directory (the repository has a
//! tracker_info.txt at its root), so nothing of the user's is read.

use blackbox::{bin, free_port, wait_until, Ctl, Net, Trackers, START_TIMEOUT};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// How long a process that should refuse to start may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A started process, killed by its PID when dropped.
struct Started {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Started {
    fn spawn(mut cmd: Command, dir: &Path, name: &str) -> Started {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("create out"))
            .stderr(std::fs::File::create(&err).expect("create err"))
            .spawn()
            .expect("spawn");
        Started { child, out, err }
    }

    /// Its exit status if it ends within [`EXIT_TIMEOUT`].
    fn exit(&mut self) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(EXIT_TIMEOUT, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A user's world: `HOME`, `XDG_CONFIG_HOME`, an empty working directory.
struct User {
    dir: tempfile::TempDir,
}

impl User {
    fn new() -> User {
        let dir = tempfile::tempdir().expect("temp dir");
        for d in ["home", "config", "cwd"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        User { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `$XDG_CONFIG_HOME/p2pshare`.
    fn config_dir(&self) -> PathBuf {
        self.path("config").join("p2pshare")
    }

    fn write_config(&self, text: &str) -> PathBuf {
        std::fs::create_dir_all(self.config_dir()).expect("mkdir config");
        let path = self.config_dir().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin(program));
        cmd.args(args)
            .env_remove("P2P_HOME")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .current_dir(self.path("cwd"));
        cmd
    }

    fn start(&self, program: &str, args: &[&str], name: &str) -> Started {
        Started::spawn(self.command(program, args), self.dir.path(), name)
    }
}

fn toml_str(p: &Path) -> String {
    format!("{:?}", p.to_str().expect("utf-8 path"))
}

/// `status` of the daemon whose home is `home`, once it has reached a
/// tracker (or `None` after [`START_TIMEOUT`]).
fn connected_status(home: &Path) -> Option<serde_json::Value> {
    let mut last = None;
    wait_until(START_TIMEOUT, || {
        last = Ctl::new(home).args(&["status"]).run().json;
        last.as_ref().is_some_and(|j| j["tracker"].is_string())
    });
    last.filter(|j| j["tracker"].is_string())
}

#[test]
fn p2pd_without_tracker_info_names_every_place_in_one_line() {
    let user = User::new();
    let mut p2pd = user.start("p2pd", &[], "p2pd");
    let status = p2pd.exit();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", p2pd.stderr());
    let err = p2pd.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line:\n{err}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    let data_home = user.path("home").join(".local/share/p2pshare");
    for place in [
        data_home.join("tracker_info.txt"),
        user.config_dir().join("tracker_info.txt"),
        user.path("cwd").join("tracker_info.txt"),
    ] {
        assert!(
            line.contains(place.to_str().unwrap()),
            "{place:?} in {line}"
        );
    }
    assert!(line.contains("--tracker-info FILE"), "{line}");
    assert!(
        !line.contains("os error"),
        "no OS error for a lookup: {line}"
    );
}

#[test]
fn p2pd_takes_home_listen_and_tracker_info_from_its_config_file() {
    let net = Net::start_with(Trackers(1));
    let user = User::new();
    let port = free_port();
    // `home` relative: from the config file's directory.
    let config = user.write_config(&format!(
        "# written by the test\nhome = \"state\"\nlisten = \"127.0.0.1:{port}\"\n\
         tracker_info = {}\nmax_upload_rate = \"1MiB\"\n",
        toml_str(&net.info)
    ));
    let home = user.config_dir().join("state");
    let mut p2pd = user.start("p2pd", &[], "p2pd");
    let status = connected_status(&home);
    assert!(
        status.is_some(),
        "no daemon at {home:?} reaching the tracker; exit {:?}, stderr:\n{}",
        p2pd.child.try_wait(),
        p2pd.stderr()
    );
    let status = status.unwrap();
    assert_eq!(status["listen"], format!("127.0.0.1:{port}"), "{status}");
    // The log says which files it used.
    let log = p2pd.stderr();
    assert!(
        log.contains(&format!("config file {}", config.display())),
        "{log}"
    );
    assert!(
        log.contains(&format!("tracker list {}", net.info.display())),
        "{log}"
    );
    let ctl = |args: &[&str]| Ctl::new(&home).args(args).run();
    assert_eq!(ctl(&["create_user", "alice", "pw-alice"]).status, 0);
    let login = ctl(&["login", "alice", "pw-alice"]);
    assert_eq!(login.status, 0, "{login:?}");
}

#[test]
fn flags_and_p2p_home_override_the_config_file() {
    let net = Net::start_with(Trackers(1));
    let user = User::new();
    let (file_port, flag_port) = (free_port(), free_port());
    user.write_config(&format!(
        "home = \"from-file\"\nlisten = \"127.0.0.1:{file_port}\"\n\
         tracker_info = \"/nonexistent/tracker_info.txt\"\n"
    ));
    let home = user.path("from-env");
    let listen = format!("127.0.0.1:{flag_port}");
    let info = net.info.to_str().unwrap();
    let mut cmd = user.command("p2pd", &["--listen", &listen, "--tracker-info", info]);
    cmd.env("P2P_HOME", &home);
    let mut started = Started::spawn(cmd, user.dir.path(), "p2pd");
    let status = connected_status(&home);
    assert!(
        status.is_some(),
        "no daemon at {home:?}; exit {:?}, stderr:\n{}",
        started.child.try_wait(),
        started.stderr()
    );
    assert_eq!(status.unwrap()["listen"], listen.as_str());
    assert!(!user.config_dir().join("from-file").exists());
}

#[test]
fn p2pd_refuses_an_unknown_key_naming_it_and_the_file() {
    let user = User::new();
    let path = user.write_config("lisen = \"127.0.0.1:0\"\n");
    let mut p2pd = user.start("p2pd", &["--tracker-info", "/dev/null"], "p2pd");
    assert_eq!(
        p2pd.exit().and_then(|s| s.code()),
        Some(1),
        "{}",
        p2pd.stderr()
    );
    let err = p2pd.stderr();
    assert!(err.contains("`lisen`"), "{err}");
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn p2pd_refuses_a_bad_rate_in_the_file_and_a_missing_config_flag_file() {
    let user = User::new();
    user.write_config("max_download_rate = \"10 megs\"\n");
    let mut p2pd = user.start("p2pd", &["--tracker-info", "/dev/null"], "bad-rate");
    assert_eq!(
        p2pd.exit().and_then(|s| s.code()),
        Some(1),
        "{}",
        p2pd.stderr()
    );
    let err = p2pd.stderr();
    assert!(
        err.contains("max_download_rate") && err.contains("10MiB"),
        "{err}"
    );

    let missing = user.path("missing.toml");
    let missing = missing.to_str().unwrap();
    let mut p2pd = user.start("p2pd", &["--config", missing], "missing");
    assert_eq!(
        p2pd.exit().and_then(|s| s.code()),
        Some(1),
        "{}",
        p2pd.stderr()
    );
    assert!(p2pd.stderr().contains(missing), "{}", p2pd.stderr());
}

#[test]
fn tracker_config_file_applies_and_its_flags_win() {
    let user = User::new();
    let config = user.path("tracker.toml");
    // The harness passes --data-dir: the file's must lose.
    std::fs::write(&config, "max_groups = 1\ndata_dir = \"unused-data\"\n").expect("write");
    let net = Net::start_with_tracker_args(Trackers(1), &["--config", config.to_str().unwrap()]);
    let a = net.daemon("a");
    a.signup("alice", "pw-alice");
    a.ok(&["create_group", "g1"]);
    a.err(&["create_group", "g2"], "invalid_argument");
    assert!(!user.path("unused-data").exists());
}

#[test]
fn tracker_refuses_an_unknown_key_naming_it_and_the_file() {
    let user = User::new();
    let info = user.path("tracker_info.txt");
    std::fs::write(&info, format!("127.0.0.1:{}\n", free_port())).expect("write info");
    let config = user.path("tracker.toml");
    std::fs::write(&config, "max_conections = 10\n").expect("write");
    let data = user.path("data");
    let args = [
        info.to_str().unwrap(),
        "1",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let mut tracker = user.start("tracker", &args, "tracker");
    assert_eq!(
        tracker.exit().and_then(|s| s.code()),
        Some(1),
        "{}",
        tracker.stderr()
    );
    let err = tracker.stderr();
    assert!(err.contains("`max_conections`"), "{err}");
    assert!(err.contains(config.to_str().unwrap()), "{err}");
    assert!(!data.exists(), "refused before touching the data dir");
}

#[test]
fn man_pages_and_completions_come_from_the_binaries() {
    let user = User::new();
    for program in ["p2pd", "tracker"] {
        let dir = user.path(&format!("man-{program}"));
        let mut man = user.start(program, &["man", "--dir", dir.to_str().unwrap()], program);
        assert_eq!(
            man.exit().and_then(|s| s.code()),
            Some(0),
            "{}",
            man.stderr()
        );
        let page = std::fs::read_to_string(dir.join(format!("{program}.1"))).expect("page");
        assert!(
            page.contains(".TH") && page.contains("\\-\\-config"),
            "{program}"
        );
        assert!(
            man.stdout().contains(&format!("{program}.1")),
            "{}",
            man.stdout()
        );

        let name = format!("{program}-bash");
        let mut bash = user.start(program, &["completions", "bash"], &name);
        assert_eq!(
            bash.exit().and_then(|s| s.code()),
            Some(0),
            "{}",
            bash.stderr()
        );
        let script = bash.stdout();
        assert!(
            script.contains("complete") && script.contains("--config"),
            "{program}"
        );
    }
    // P2P_HOME in the environment does not turn `p2pd man` into a usage error.
    let mut cmd = user.command("p2pd", &["man"]);
    cmd.env("P2P_HOME", user.path("home"));
    let mut man = Started::spawn(cmd, user.dir.path(), "man-env");
    assert_eq!(
        man.exit().and_then(|s| s.code()),
        Some(0),
        "{}",
        man.stderr()
    );
    assert!(man.stdout().contains(".TH"));
}

#[test]
fn the_harness_hides_the_developers_config_from_every_process() {
    let net = Net::start_with(Trackers(1));
    let mut a = net.daemon("a");
    let pids = [
        ("p2pd", a.pid().expect("daemon pid")),
        ("tracker", net.trackers[0].pid().expect("tracker pid")),
    ];
    for (what, pid) in pids {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
        let config_home = environ
            .split(|b| *b == 0)
            .find_map(|var| var.strip_prefix(b"XDG_CONFIG_HOME="))
            .map(|v| PathBuf::from(String::from_utf8_lossy(v).into_owned()));
        let config_home = config_home.unwrap_or_else(|| panic!("{what}: no XDG_CONFIG_HOME"));
        assert!(
            config_home.starts_with(net.dir()),
            "{what}: {config_home:?}"
        );
        assert!(!config_home.exists(), "{what}: {config_home:?} is empty");
    }
    assert!(a.is_running());
}
