//! Accounts and sessions: create_user, login, logout, status, one session
//! per user.

use blackbox::{wait_until, Net, SETTLE_TIMEOUT};
use serde_json::Value;
use std::net::SocketAddr;

#[test]
fn create_user_then_duplicate_is_user_exists() {
    let net = Net::start();
    let a = net.daemon("a");
    a.ok(&["create_user", "alice", "pw-a"]);
    a.err(&["create_user", "alice", "other"], "user_exists");
    // From another daemon too: accounts live on the tracker.
    let b = net.daemon("b");
    b.err(&["create_user", "alice", "pw-a"], "user_exists");
    b.ok(&["create_user", "bob", "pw-b"]);
}

#[test]
fn login_refusals_and_success() {
    let net = Net::start();
    let a = net.daemon("a");
    a.ok(&["create_user", "alice", "pw-a"]);
    a.ok(&["create_user", "bob", "pw-b"]);
    a.err(&["login", "alice", "wrong"], "bad_credentials");
    a.err(&["login", "nobody", "pw-a"], "bad_credentials");
    // bob's password is not alice's.
    a.err(&["login", "alice", "pw-b"], "bad_credentials");
    assert_eq!(a.status()["user"], Value::Null);
    a.ok(&["login", "alice", "pw-a"]);
    assert_eq!(a.status()["user"], "alice");
    a.err(&["login", "alice", "pw-a"], "already_logged_in");
    a.err(&["login", "bob", "pw-b"], "already_logged_in");
    assert_eq!(a.status()["user"], "alice");
}

#[test]
fn logout_then_logout_again_is_not_logged_in() {
    let net = Net::start();
    let a = net.daemon("a");
    a.err(&["logout"], "not_logged_in");
    a.signup("alice", "pw-a");
    a.ok(&["logout"]);
    assert_eq!(a.status()["user"], Value::Null);
    a.err(&["logout"], "not_logged_in");
    // Logging in again works, as another user too.
    a.signup("bob", "pw-b");
    assert_eq!(a.status()["user"], "bob");
}

fn assert_status_shape(s: &Value, user: Option<&str>, trackers: &[String]) {
    let obj = s
        .as_object()
        .unwrap_or_else(|| panic!("status is an object: {s}"));
    for key in [
        "user",
        "tracker",
        "listen",
        "shares",
        "downloads",
        "uploaded",
    ] {
        assert!(obj.contains_key(key), "status lacks {key:?}: {s}");
    }
    match user {
        Some(u) => assert_eq!(s["user"], u, "{s}"),
        None => assert_eq!(s["user"], Value::Null, "{s}"),
    }
    let tracker = s["tracker"]
        .as_str()
        .unwrap_or_else(|| panic!("connected daemon: tracker is IP:PORT: {s}"));
    assert!(
        trackers.iter().any(|t| t == tracker),
        "tracker {tracker} is one of {trackers:?}"
    );
    let listen: SocketAddr = s["listen"]
        .as_str()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("listen is IP:PORT: {s}"));
    assert_ne!(listen.port(), 0, "listen is the bound port, not 0: {s}");
    for key in ["shares", "downloads", "uploaded"] {
        assert_eq!(s[key], 0, "fresh daemon: {key} is 0: {s}");
    }
}

#[test]
fn status_shape_before_and_after_login() {
    let net = Net::start();
    let a = net.daemon("a");
    let trackers = net.tracker_addrs();
    assert_status_shape(&a.status(), None, &trackers);
    a.signup("alice", "pw-a");
    assert_status_shape(&a.status(), Some("alice"), &trackers);
    // Human output works too.
    let out = a.ctl_human(&["status"]);
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stdout.contains("alice"), "{out:?}");
}

#[test]
fn password_dash_reads_stdin() {
    let net = Net::start();
    let a = net.daemon("a");
    a.call()
        .args(&["create_user", "carol", "-"])
        .stdin("pw-c\n")
        .run()
        .assert_ok();
    a.call()
        .args(&["login", "carol", "-"])
        .stdin("wrong\n")
        .run()
        .assert_err("bad_credentials");
    a.call()
        .args(&["login", "carol", "-"])
        .stdin("pw-c\n")
        .run()
        .assert_ok();
    assert_eq!(a.status()["user"], "carol");
    // The trailing newline was not part of the password.
    a.ok(&["logout"]);
    a.ok(&["login", "carol", "pw-c"]);
}

#[test]
fn one_session_per_user_login_elsewhere_ends_the_older() {
    let net = Net::start();
    let a = net.daemon("a");
    let b = net.daemon("b");
    a.signup("bob", "pw-b");
    a.ok(&["create_group", "g"]);
    b.ok(&["login", "bob", "pw-b"]);
    assert_eq!(b.status()["user"], "bob");
    let mut last = Value::Null;
    let ended = wait_until(SETTLE_TIMEOUT, || {
        last = a.status();
        last["user"].is_null()
    });
    assert!(
        ended,
        "daemon a should show user null within {SETTLE_TIMEOUT:?} after bob logged in on b; status: {last}"
    );
    a.err(&["list_groups"], "not_logged_in");
    // The new session works.
    let groups = b.json(&["list_groups"]);
    assert_eq!(groups[0]["group"], "g", "{groups}");
}

#[test]
fn commands_needing_login_say_not_logged_in() {
    let net = Net::start();
    let a = net.daemon("a");
    let dir = net.mkdir("files");
    let f = dir.join("f.bin");
    blackbox::random_file(&f, 1000);
    let f = f.to_str().expect("utf-8 path");
    let dl = net.mkdir("dl");
    let dl = dl.to_str().expect("utf-8 path");
    for args in [
        &["create_group", "g"][..],
        &["join_group", "g"][..],
        &["leave_group", "g"][..],
        &["list_requests", "g"][..],
        &["accept_request", "g", "bob"][..],
        &["list_groups"][..],
        &["list_files", "g"][..],
        &["upload_file", f, "g"][..],
        &["download_file", "--detach", "g", "f.bin", dl][..],
        &["show_downloads"][..],
        &["stop_share", "g", "f.bin"][..],
        &["logout"][..],
    ] {
        a.err(args, "not_logged_in");
    }
    // status needs no login.
    assert_eq!(a.status()["user"], Value::Null);
}

#[test]
fn empty_password_is_invalid_argument() {
    let net = Net::start();
    let a = net.daemon("a");
    a.err(&["create_user", "alice", ""], "invalid_argument");
    a.call()
        .args(&["create_user", "alice", "-"])
        .stdin("\n")
        .run()
        .assert_err("invalid_argument");
    // Nothing was created.
    a.ok(&["create_user", "alice", "pw-a"]);
}
