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
