//! p2pctl's command line: exit statuses 2 and 3, human output, `--json`.

use blackbox::{ctl_at, Net};

/// A net with one daemon, logged in as alice.
fn alice() -> (blackbox::Daemon, Net) {
    let net = Net::start();
    let a = net.daemon("a");
    a.signup("alice", "pw-a");
    (a, net)
}

#[test]
fn bad_usage_exits_2() {
    let (a, _net) = alice();
    for args in [
        &["no_such_command"][..],
        &["create_group"][..],
        &["create_group", "g1", "extra"][..],
        &["list_groups", "extra"][..],
        &["accept_request", "g1"][..],
        &["stop_share", "g1"][..],
        &["download_file", "g1", "f"][..],
        &["status", "--bogus-flag"][..],
        &["--bogus-flag", "status"][..],
    ] {
        let out = a.ctl(args);
        assert_eq!(
            out.status, 2,
            "p2pctl {args:?}: want exit 2 (bad usage), got {}\nstdout: {}\nstderr: {}",
            out.status, out.stdout, out.stderr
        );
        assert!(
            !out.stderr.trim().is_empty(),
            "p2pctl {args:?}: bad usage should explain itself on stderr"
        );
    }
    // The daemon was not disturbed.
    assert_eq!(a.status()["user"], "alice");
}

#[test]
fn no_daemon_exits_3_and_says_how_to_start_one() {
    let dir = tempfile::Builder::new()
        .prefix("p2p")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let home = dir.path().join("nobody");
    std::fs::create_dir_all(&home).expect("mkdir");
    for args in [&["status"][..], &["list_groups"][..]] {
        let out = ctl_at(&home, args);
        assert_eq!(
            out.status, 3,
            "p2pctl {args:?} with no daemon: want exit 3\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        assert!(
            out.stderr.contains("p2pd"),
            "the message should say how to start a daemon (mention p2pd): {:?}",
            out.stderr
        );
    }
    // A home that does not even exist: still 3, not a crash.
    let out = ctl_at(&dir.path().join("missing"), &["status"]);
    assert_eq!(out.status, 3, "missing home: {out:?}");
}

#[test]
fn human_list_groups_is_tab_separated_without_header() {
    let (a, net) = alice();
    let b = net.daemon("b");
    b.signup("bob", "pw-b");
    a.ok(&["create_group", "g2"]);
    a.ok(&["create_group", "g1"]);
    b.ok(&["join_group", "g1"]);
    a.ok(&["accept_request", "g1", "bob"]);

    let out = a.ctl_human(&["list_groups"]);
    assert_eq!(out.status, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "one line per group, no header: {:?}",
        out.stdout
    );
    for (line, (group, members)) in lines.iter().zip([("g1", "2"), ("g2", "1")]) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols.len() >= 3, "columns separated by tabs: {line:?}");
        assert_eq!(cols[0], group, "groups sorted, group first: {line:?}");
        assert!(cols.contains(&"alice"), "owner column: {line:?}");
        assert!(cols.contains(&members), "member count column: {line:?}");
    }

    // list_requests: one user per line.
    let c = net.daemon("c");
    c.signup("carol", "pw-c");
    c.ok(&["join_group", "g2"]);
    b.ok(&["join_group", "g2"]);
    let out = a.ctl_human(&["list_requests", "g2"]);
    assert_eq!(out.status, 0, "{out:?}");
    let mut users: Vec<&str> = out.stdout.lines().collect();
    users.sort_unstable();
    assert_eq!(users, ["bob", "carol"], "{:?}", out.stdout);
}

#[test]
fn human_error_goes_to_stderr_with_exit_1() {
    let (a, _net) = alice();
    let out = a.ctl_human(&["create_group", "g"]);
    assert_eq!(out.status, 0, "{out:?}");
    let out = a.ctl_human(&["create_group", "g"]);
    assert_eq!(out.status, 1, "{out:?}");
    assert!(out.stderr.starts_with("error:"), "{out:?}");
}

#[test]
fn json_prints_exactly_one_document() {
    let (a, _net) = alice();
    a.ok(&["create_group", "g"]);
    for (args, want_ok) in [
        (&["status"][..], true),
        (&["list_groups"][..], true),
        (&["list_files", "g"][..], true),
        (&["list_requests", "g"][..], true),
        (&["show_downloads"][..], true),
        (&["create_group", "g1"][..], true),
        (&["create_group", "g1"][..], false),
        (&["list_files", "nope"][..], false),
    ] {
        let out = a.ctl(args);
        assert_eq!(out.status, if want_ok { 0 } else { 1 }, "{out:?}");
        let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out.stdout)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("p2pctl --json {args:?}: stdout not JSON ({e}): {out:?}"));
        assert_eq!(
            docs.len(),
            1,
            "p2pctl --json {args:?}: want exactly one JSON document: {:?}",
            out.stdout
        );
    }
    // Lists are JSON arrays even when empty.
    assert_eq!(a.json(&["list_files", "g"]), serde_json::json!([]));
    assert_eq!(a.json(&["list_requests", "g"]), serde_json::json!([]));
    assert_eq!(a.json(&["show_downloads"]), serde_json::json!([]));
}

#[test]
fn home_from_env_and_tracker_info_in_home_with_comments() {
    // Comments, blank lines and the `IP PORT` form are all accepted.
    let net = Net::start_with_info(blackbox::Trackers::from_env(), |addrs| {
        let mut s = String::from("# p2pshare trackers\n\n");
        for a in addrs {
            s.push_str(&format!(
                "  {} {}  \n# another comment\n\n",
                a.ip(),
                a.port()
            ));
        }
        s
    });
    let style = blackbox::DaemonStyle {
        home_from_env: true,
        info_in_home: true,
    };
    let a = net.daemon_opts("a", &[], style);
    let ctl = |args: &[&str]| a.call().home_from_env().args(args).run();
    ctl(&["create_user", "alice", "pw-a"]).assert_ok();
    ctl(&["login", "alice", "pw-a"]).assert_ok();
    let s = ctl(&["status"]).assert_success();
    assert_eq!(s["user"], "alice", "{s}");
    assert!(
        net.tracker_addrs()
            .iter()
            .any(|t| s["tracker"] == t.as_str()),
        "{s}"
    );
}

#[test]
fn control_socket_is_0600_and_listen_address_accepts_peers() {
    use std::os::unix::fs::PermissionsExt;
    let net = Net::start();
    let a = net.daemon("a");
    let mode = std::fs::metadata(a.sock())
        .expect("socket exists")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "control socket mode {mode:o}");
    let s = a.status();
    let listen: std::net::SocketAddr = s["listen"]
        .as_str()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("listen: {s}"));
    std::net::TcpStream::connect_timeout(&listen, std::time::Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("status.listen {listen} should accept peer connections: {e}"));
    // The daemon survives a peer that connects and says nothing.
    assert!(a.status()["listen"].is_string());
}

#[test]
fn p2pd_rate_options_accept_suffixes_and_refuse_garbage() {
    let net = Net::start();
    let a = net.daemon_with(
        "a",
        &["--max-upload-rate", "1M", "--max-download-rate", "512K"],
    );
    a.signup("alice", "pw-a");
    let home = net.mkdir("bad");
    let mut child = std::process::Command::new(blackbox::bin("p2pd"))
        .args(["--home", home.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--tracker-info", net.info.to_str().unwrap()])
        .args(["--max-upload-rate", "fast"])
        // Never the developer's own ~/.config/p2pshare/config.toml.
        .env("XDG_CONFIG_HOME", net.dir().join("no-xdg-config"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn p2pd");
    let mut st = None;
    blackbox::wait_until(std::time::Duration::from_secs(10), || {
        st = child.try_wait().ok().flatten();
        st.is_some()
    });
    if st.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        st.is_some_and(|s| !s.success()),
        "p2pd --max-upload-rate fast should exit non-zero at once, got {st:?}"
    );
}

#[test]
fn upload_json_is_one_document_despite_progress() {
    let (a, net) = alice();
    a.ok(&["create_group", "g"]);
    let dir = net.mkdir("files");
    let f = dir.join("big.bin");
    let sha = blackbox::random_file(&f, 24 * 1024 * 1024);
    let out = a.ctl(&["upload_file", f.to_str().unwrap(), "g"]);
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("upload --json stdout not JSON ({e}): {out:?}"));
    assert_eq!(docs.len(), 1, "one JSON document: {:?}", out.stdout);
    out.assert_ok();
    assert_eq!(
        a.file("g", "big.bin").expect("listed")["sha1"],
        sha.as_str()
    );
}

/// The 15 SPEC commands, as SPEC names them.
const COMMANDS: [&str; 15] = [
    "create_user",
    "login",
    "create_group",
    "join_group",
    "leave_group",
    "list_requests",
    "accept_request",
    "list_groups",
    "list_files",
    "upload_file",
    "download_file",
    "show_downloads",
    "stop_share",
    "logout",
    "status",
];

/// `p2pctl ARGS` exactly as given (no `--home`, no `--json` added), stdin
/// closed, stdout and stderr through pipes, with a home nobody serves.
fn p2pctl_raw(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::Builder::new()
        .prefix("p2p")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let out = std::process::Command::new(blackbox::bin("p2pctl"))
        .args(args)
        .env("P2P_HOME", dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run p2pctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_under_json_are_one_document_with_code_usage() {
    for args in [
        &["--json", "no_such_command"][..],
        &["no_such_command", "--json"],
        &["--json", "create_group"],
        &["create_group", "g1", "extra", "--json"],
        &["--json", "status", "--bogus-flag"],
        &["--bogus-flag", "--json", "status"],
        &["download_file", "g1", "f", "--json"],
        &["--json"],
        &["show_downloads", "--interval", "2", "--json"],
    ] {
        let (status, stdout, stderr) = p2pctl_raw(args);
        assert_eq!(status, 2, "{args:?}: {stdout} {stderr}");
        let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {stdout:?}"));
        assert_eq!(docs.len(), 1, "{args:?}: one document: {stdout:?}");
        let doc = &docs[0];
        assert_eq!(doc["ok"], false, "{args:?}: {doc}");
        assert_eq!(doc["code"], "usage", "{args:?}: {doc}");
        let sentence = doc["error"].as_str().unwrap_or("");
        assert!(
            !sentence.is_empty() && !sentence.contains('\n') && !sentence.contains('\x1b'),
            "{args:?}: {doc}"
        );
        assert!(
            stderr.starts_with("error:"),
            "{args:?}: clap's message: {stderr}"
        );
    }
    // Without --json: nothing on stdout, as before.
    let (status, stdout, _) = p2pctl_raw(&["no_such_command"]);
    assert_eq!((status, stdout.as_str()), (2, ""));
    // --help and --version are not errors, JSON or not.
    for args in [&["--json", "--help"][..], &["--version", "--json"]] {
        let (status, stdout, _) = p2pctl_raw(args);
        assert_eq!(status, 0, "{args:?}");
        assert!(!stdout.contains("\"usage\""), "{args:?}: {stdout}");
    }
}

#[test]
fn help_has_examples_exit_statuses_and_json_shapes() {
    let (status, help, _) = p2pctl_raw(&["--help"]);
    assert_eq!(status, 0);
    for want in [
        "EXAMPLES:",
        "EXIT STATUS:",
        "no daemon answers",
        "kebab-case",
    ] {
        assert!(help.contains(want), "--help lacks {want:?}:\n{help}");
    }
    for name in COMMANDS {
        assert!(help.contains(name), "--help lacks {name}");
    }
    let (_, files, _) = p2pctl_raw(&["list_files", "--help"]);
    assert!(
        files.contains(
            r#"[{"name": "f.iso", "size": 123, "sha1": "<40 hex>", "holders": 2, "online": 1}]"#
        ),
        "{files}"
    );
    let (_, download, _) = p2pctl_raw(&["help", "download_file"]);
    for want in [
        "<GROUP_ID>          A group",
        "<FILE_NAME>         The file's name",
        "<DESTINATION_PATH>  An existing directory",
        "--detach      Return at once",
    ] {
        assert!(download.contains(want), "lacks {want:?}:\n{download}");
    }
}

#[test]
fn completions_and_man_pages_need_no_daemon() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (status, script, stderr) = p2pctl_raw(&["completions", shell]);
        assert_eq!(status, 0, "{shell}: {stderr}");
        assert!(script.len() > 1000, "{shell}: {script}");
        if shell == "bash" {
            for name in COMMANDS {
                assert!(script.contains(name), "bash completion lacks {name}");
            }
        }
    }
    let (status, _, stderr) = p2pctl_raw(&["completions", "tcsh"]);
    assert_eq!(status, 2, "an unknown shell is bad usage: {stderr}");

    let (status, page, _) = p2pctl_raw(&["man"]);
    assert_eq!(status, 0);
    assert!(
        page.starts_with(".ie") || page.contains(".TH p2pctl"),
        "{page}"
    );
    assert!(page.contains("EXIT STATUS"), "{page}");

    let dir = tempfile::Builder::new()
        .prefix("p2p")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let man1 = dir.path().join("share/man/man1");
    let (status, stdout, stderr) = p2pctl_raw(&["man", "--dir", man1.to_str().unwrap()]);
    assert_eq!((status, stdout.as_str()), (0, ""), "{stderr}");
    for page in
        std::iter::once("p2pctl".to_owned()).chain(COMMANDS.iter().map(|c| format!("p2pctl-{c}")))
    {
        let text = std::fs::read_to_string(man1.join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(text.contains(".SH NAME"), "{page}.1: {text}");
    }
    // A directory that cannot be made: refused (1), said on stderr, and
    // under --json as the one failure document.
    let (status, stdout, stderr) = p2pctl_raw(&["man", "--dir", "/proc/no/such"]);
    assert_eq!((status, stdout.as_str()), (1, ""), "{stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
    let (status, stdout, _) = p2pctl_raw(&["man", "--dir", "/proc/no/such", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one document");
    assert_eq!(
        (status, &doc["code"]),
        (1, &serde_json::json!("io")),
        "{doc}"
    );
    let (status, stdout, _) = p2pctl_raw(&["--json", "man", "--dir", man1.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one document");
    assert_eq!((status, &doc["ok"]), (0, &serde_json::json!(true)), "{doc}");
}

#[test]
fn kebab_case_names_are_the_same_commands() {
    let (a, net) = alice();
    let b = net.daemon("b");
    b.signup("bob", "pw-b");
    a.ok(&["create-group", "g1"]);
    b.ok(&["join-group", "g1"]);
    assert_eq!(
        a.json(&["list-requests", "g1"]),
        a.json(&["list_requests", "g1"])
    );
    a.ok(&["accept-request", "g1", "bob"]);
    assert_eq!(a.json(&["list-groups"]), a.json(&["list_groups"]));
    assert_eq!(a.json(&["list-files", "g1"]), serde_json::json!([]));
    assert_eq!(a.json(&["show-downloads"]), serde_json::json!([]));
    let dir = net.mkdir("files");
    let f = dir.join("f.bin");
    blackbox::random_file(&f, 1000);
    a.ok(&["upload-file", f.to_str().unwrap(), "g1"]);
    b.ok(&[
        "download-file",
        "g1",
        "f.bin",
        net.mkdir("dl").to_str().unwrap(),
    ]);
    b.ok(&["stop-share", "g1", "f.bin"]);
    b.ok(&["leave-group", "g1"]);
    assert_eq!(a.file("g1", "f.bin").expect("listed")["holders"], 1);
}

#[test]
fn piped_output_has_no_escape_codes() {
    let (a, net) = alice();
    let dir = net.mkdir("files");
    let f = dir.join("big.bin");
    blackbox::random_file(&f, 3 * 1024 * 1024);
    let mut runs = vec![
        a.ctl_human(&["create_group", "g"]),
        a.ctl_human(&["upload_file", f.to_str().unwrap(), "g"]),
        a.ctl_human(&["list_groups"]),
        a.ctl_human(&["list_requests", "g"]),
        a.ctl_human(&["list_files", "g"]),
        a.ctl_human(&["show_downloads"]),
        a.ctl_human(&["show_downloads", "--watch"]),
        a.ctl_human(&["status"]),
        a.ctl_human(&["join_group", "nope"]),
        a.ctl_human(&["no_such_command"]),
        a.ctl_human(&["download_file", "g"]),
        a.ctl_human(&["--help"]),
        a.ctl_human(&["help", "download_file"]),
    ];
    let b = net.daemon("b");
    b.signup("bob", "pw-b");
    b.ok(&["join_group", "g"]);
    a.ok(&["accept_request", "g", "bob"]);
    let dl = net.mkdir("dl");
    runs.push(b.ctl_human(&["download_file", "g", "big.bin", dl.to_str().unwrap()]));
    runs.push(b.ctl_human(&["show_downloads"]));
    runs.push(b.ctl_human(&["stop_share", "g", "big.bin"]));
    runs.push(b.ctl_human(&["logout"]));
    for out in runs {
        assert!(
            !out.stdout.contains('\x1b') && !out.stderr.contains('\x1b'),
            "escape codes in piped output of p2pctl {}: {out:?}",
            out.args
        );
    }
}
