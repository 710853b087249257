//! Hostile input: bad ids and names, raw garbage on both sockets, huge
//! strings, unknown commands, a second daemon on a live home, a stale socket.

use blackbox::{ctl_frame, frame, json, raw_tcp, Daemon, Net, Pair};
use serde_json::Value;

/// The daemon still answers and is still logged in.
fn assert_alive(d: &Daemon, user: &str) {
    let s = d.status();
    assert_eq!(
        s["user"], user,
        "daemon {} after hostile input: {s}",
        d.name
    );
}

#[test]
fn hostile_ids_and_names_are_invalid_argument() {
    let pair = Pair::start();
    let a = &pair.a;
    let long = "x".repeat(65);
    let big = "g".repeat(100_000);
    for args in [
        &["create_group", "../x"][..],
        &["create_group", &long][..],
        &["create_group", "a b"][..],
        &["create_group", ""][..],
        &["create_group", &big][..],
        &["join_group", "../x"][..],
        &["list_files", "/etc"][..],
        &["accept_request", "g", "../bob"][..],
        &["create_user", "../x", "pw"][..],
        &["create_user", &long, "pw"][..],
        &["stop_share", "g", "/etc/passwd"][..],
        &["stop_share", "g", "../f"][..],
        &["stop_share", "g", ".."][..],
        &["stop_share", "g", "a\\b"][..],
        &["stop_share", "g", "a\nb"][..],
        &["stop_share", "../g", "f"][..],
    ] {
        a.err(args, "invalid_argument");
    }
    assert_alive(a, "alice");
    // Nothing was created.
    let groups = a.json(&["list_groups"]);
    assert_eq!(groups.as_array().map(Vec::len), Some(1), "{groups}");
    // Logged out, a bad id is still invalid_argument (not a crash).
    pair.b.ok(&["logout"]);
    pair.b.err(&["login", "../x", "pw"], "invalid_argument");
    pair.b.err(&["login", &long, "pw"], "invalid_argument");
    pair.b.ok(&["login", "bob", "pw-b"]);
}

#[test]
fn raw_ctl_frames_with_nul_huge_and_unknown_get_error_replies() {
    let pair = Pair::start();
    let a = &pair.a;
    let nul = a.raw(&ctl_frame(
        &json!({"cmd": "create_group", "group": "a\u{0}b"}),
    ));
    let huge = a.raw(&ctl_frame(
        &json!({"cmd": "create_group", "group": "g".repeat(10 * 1024 * 1024)}),
    ));
    let nul_name = a.raw(&ctl_frame(
        &json!({"cmd": "stop_share", "group": "g", "name": "f\u{0}.bin"}),
    ));
    let unknown = a.raw(&ctl_frame(&json!({"cmd": "format_disk"})));
    let not_json = a.raw(&frame(b"\x00\x01 this is not json"));
    for (what, r) in [
        ("NUL in a group id", nul),
        ("10 MB group id", huge),
        ("NUL in a file name", nul_name),
        ("unknown command", unknown),
        ("undecodable JSON", not_json),
    ] {
        let reply = r
            .reply
            .unwrap_or_else(|e| panic!("{what}: want an error reply frame, got none: {e}"));
        assert_eq!(reply["type"], "error", "{what}: {reply}");
        assert_eq!(reply["code"], "invalid_argument", "{what}: {reply}");
        let msg = reply["message"].as_str().unwrap_or_default();
        assert!(
            msg.len() < 10_000,
            "{what}: the error must not echo the input back ({} bytes)",
            msg.len()
        );
    }
    assert_alive(a, "alice");
    let groups = a.json(&["list_groups"]);
    assert_eq!(
        groups,
        json!([{"group": "g", "owner": "alice", "members": 2}])
    );
}

#[test]
fn raw_garbage_on_control_socket_does_not_kill_the_daemon() {
    let pair = Pair::start();
    let a = &pair.a;
    // A length prefix far over the limit: the daemon must not try to
    // allocate it; it may answer an error or just close.
    let r = a.raw(&[0xFF, 0xFF, 0xFF, 0xFF, b'{', b'}']);
    if let Ok(reply) = &r.reply {
        assert_eq!(reply["type"], "error", "{reply}");
    }
    assert_alive(a, "alice");
    // Random bytes, a truncated frame, an empty connection.
    let mut junk = vec![0u8; 4096];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut junk);
    let _ = a.raw(&junk);
    let _ = a.raw(&[0, 0, 0, 100, b'{']);
    let _ = a.raw(&[]);
    let _ = a.raw(&[0, 0]);
    assert_alive(a, "alice");
    pair.b.json(&["list_files", "g"]);
}

#[test]
fn raw_garbage_on_tracker_port_does_not_kill_the_tracker() {
    let mut pair = Pair::start();
    let addr = pair.net.trackers[0].addr;
    let mut junk = vec![0u8; 64 * 1024];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut junk);
    let _ = raw_tcp(addr, &[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3]);
    let _ = raw_tcp(addr, &junk);
    let _ = raw_tcp(addr, &frame(b"not json at all"));
    let _ = raw_tcp(addr, &[0, 0, 0, 50, b'{']);
    // A well-formed frame whose request carries a 10 MB group id.
    let call = json!({"id": 1, "request": {"op": "hello", "version": proto::PROTOCOL_VERSION}});
    let big = json!({"id": 2, "request": {"op": "list_files", "token": "x", "group": "g".repeat(10 * 1024 * 1024)}});
    let mut bytes = frame(&serde_json::to_vec(&call).unwrap());
    bytes.extend(frame(&serde_json::to_vec(&big).unwrap()));
    let _ = raw_tcp(addr, &bytes);
    let unknown = json!({"id": 3, "request": {"op": "drop_all_tables"}});
    let mut bytes = frame(&serde_json::to_vec(&call).unwrap());
    bytes.extend(frame(&serde_json::to_vec(&unknown).unwrap()));
    let _ = raw_tcp(addr, &bytes);

    assert!(pair.net.trackers[0].is_running(), "tracker died on garbage");
    // Existing daemons still work through it, and new logins too.
    pair.a.ok(&["create_group", "g2"]);
    pair.b.json(&["list_files", "g"]);
    let c = pair.net.daemon("c");
    c.signup("carol", "pw-c");
    assert_eq!(c.json(&["list_groups"]).as_array().map(Vec::len), Some(2));
}

#[test]
fn second_daemon_on_a_live_home_refuses() {
    let net = Net::start();
    let a = net.daemon("a");
    a.signup("alice", "pw-a");
    let (st, output) = a.start_second_on_same_home();
    let st = st
        .unwrap_or_else(|| panic!("a second p2pd on a live home kept running; output:\n{output}"));
    assert!(
        !st.success(),
        "second p2pd must exit non-zero, got {st}; output:\n{output}"
    );
    let lower = output.to_lowercase();
    assert!(
        ["already", "running", "lock", "in use"]
            .iter()
            .any(|w| lower.contains(w)),
        "second p2pd should say the home is in use; output:\n{output}"
    );
    // The first one is untouched, socket included.
    assert_alive(&a, "alice");
    a.ok(&["create_group", "g"]);
}

#[test]
fn stale_socket_of_a_killed_daemon_is_taken_over() {
    let net = Net::start();
    let mut a = net.daemon("a");
    a.signup("alice", "pw-a");
    a.kill9();
    assert!(
        a.sock().exists(),
        "kill -9 cannot clean up; the socket file should still be there"
    );
    // With no daemon behind it, p2pctl says so with exit 3.
    let out = a.ctl(&["status"]);
    assert_eq!(out.status, 3, "stale socket, no daemon: {out:?}");
    a.restart();
    assert_alive(&a, "alice");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(a.sock()).expect("socket").permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");
    let _: Value = a.json(&["list_groups"]);
}
