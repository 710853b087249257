//! Guarantees across kill -9 and restart, presence, and a missing tracker.

use blackbox::{json, random_file, wait_until, Net, Pair, SETTLE_TIMEOUT};
use serde_json::Value;
use std::time::{Duration, Instant};

#[test]
fn tracker_kill9_and_restart_keeps_everything() {
    let mut pair = Pair::start();
    let c = pair.net.daemon("c");
    c.signup("carol", "pw-c");
    c.ok(&["join_group", "g"]);
    let dir = pair.net.mkdir("alice");
    let sha = random_file(&dir.join("f.bin"), 600_000);
    pair.a
        .ok(&["upload_file", dir.join("f.bin").to_str().unwrap(), "g"]);
    let db = pair.net.mkdir("bob");
    std::fs::copy(dir.join("f.bin"), db.join("f.bin")).expect("copy");
    pair.b
        .ok(&["upload_file", db.join("f.bin").to_str().unwrap(), "g"]);
    pair.b.ok(&["create_group", "g2"]);

    pair.net.kill9_trackers();
    pair.net.restart_trackers();

    // Sessions survive: the daemons reconnect by themselves.
    let groups = pair
        .a
        .wait_success(&["list_groups"], "alice after tracker restart");
    assert_eq!(
        groups,
        json!([
            {"group": "g", "owner": "alice", "members": 2},
            {"group": "g2", "owner": "bob", "members": 1},
        ])
    );
    assert_eq!(pair.a.json(&["list_requests", "g"]), json!(["carol"]));
    let f = pair.b.file("g", "f.bin").expect("f.bin still listed");
    assert_eq!(f["sha1"], sha.as_str());
    assert_eq!(f["size"], 600_000);
    assert_eq!(f["holders"], 2);
    pair.b
        .wait_online("g", "f.bin", 2, "both holders reconnected");

    // Accounts survive: a fresh daemon can log in; wrong passwords still fail.
    let d = pair.net.daemon("d");
    d.err(&["login", "carol", "nope"], "bad_credentials");
    d.ok(&["login", "bob", "pw-b"]);
    d.err(&["create_user", "carol", "x"], "user_exists");
    // Writes after the restart are durable too.
    pair.a.ok(&["accept_request", "g", "carol"]);
    pair.net.kill9_trackers();
    pair.net.restart_trackers();
    let groups = c.wait_success(&["list_groups"], "carol after second restart");
    assert_eq!(
        groups[0],
        json!({"group": "g", "owner": "alice", "members": 3})
    );
}

#[test]
fn killed_daemon_goes_offline_then_restart_resumes_session_and_shares() {
    let mut pair = Pair::start();
    let dir = pair.net.mkdir("alice");
    random_file(&dir.join("f.bin"), 100_000);
    pair.a
        .ok(&["upload_file", dir.join("f.bin").to_str().unwrap(), "g"]);
    pair.b.wait_online("g", "f.bin", 1, "after upload");

    pair.a.kill9();
    pair.b
        .wait_online("g", "f.bin", 0, "alice's daemon was killed (vanished)");
    assert_eq!(
        pair.b.file("g", "f.bin").unwrap()["holders"],
        1,
        "still held while offline"
    );

    pair.a.restart();
    let s = pair.a.status();
    assert_eq!(
        s["user"], "alice",
        "session survives kill -9 without login: {s}"
    );
    assert_eq!(s["shares"], 1, "shares survive kill -9: {s}");
    pair.b
        .wait_online("g", "f.bin", 1, "alice's daemon restarted");
    // The session is real: commands needing login work.
    pair.a.json(&["list_files", "g"]);
}

#[test]
fn sigterm_stops_cleanly_and_session_survives() {
    let mut pair = Pair::start();
    let st = pair.a.stop();
    assert!(
        st.is_some_and(|s| s.success()),
        "p2pd should exit 0 within 10 s of SIGTERM, got {st:?}"
    );
    pair.a.restart();
    assert_eq!(pair.a.status()["user"], "alice");
    pair.a.json(&["list_requests", "g"]);
    let st = pair.net.trackers[0].stop();
    assert!(
        st.is_some_and(|s| s.success()),
        "tracker should exit 0 within 10 s of SIGTERM, got {st:?}"
    );
}

#[test]
fn logout_takes_shares_offline_and_login_brings_them_back() {
    let pair = Pair::start();
    let dir = pair.net.mkdir("alice");
    random_file(&dir.join("f.bin"), 1000);
    pair.a
        .ok(&["upload_file", dir.join("f.bin").to_str().unwrap(), "g"]);
    pair.b.wait_online("g", "f.bin", 1, "after upload");

    pair.a.ok(&["logout"]);
    pair.b.wait_online("g", "f.bin", 0, "alice logged out");
    assert_eq!(
        pair.b.file("g", "f.bin").unwrap()["holders"],
        1,
        "still listed"
    );

    pair.a.ok(&["login", "alice", "pw-a"]);
    pair.b.wait_online("g", "f.bin", 1, "alice logged in again");
    assert_eq!(pair.a.status()["shares"], 1);
    // Logout survives a restart: the restarted daemon is not logged in.
    let mut pair = pair;
    pair.a.ok(&["logout"]);
    pair.a.kill9();
    pair.a.restart();
    assert_eq!(pair.a.status()["user"], Value::Null);
}

#[test]
fn tracker_down_is_tracker_unavailable_then_daemon_reconnects() {
    let mut net = Net::start();
    let a = net.daemon("a");
    a.signup("alice", "pw-a");
    a.ok(&["create_group", "g"]);

    net.kill9_trackers();
    let started = Instant::now();
    let out = a.ctl(&["list_groups"]);
    let elapsed = started.elapsed();
    let out = out.assert_err("tracker_unavailable");
    assert!(
        elapsed < Duration::from_secs(10),
        "tracker_unavailable must come within 10 s, took {elapsed:?}: {out:?}"
    );
    // status needs no tracker.
    let s = a.status();
    assert_eq!(s["user"], "alice", "{s}");

    net.restart_trackers();
    let groups = a.wait_success(&["list_groups"], "daemon reconnects by itself");
    assert_eq!(
        groups,
        json!([{"group": "g", "owner": "alice", "members": 1}])
    );
    let s = a.status();
    assert!(s["tracker"].is_string(), "connected again: {s}");
}

#[test]
fn stop_share_and_leave_group_survive_daemon_restart() {
    let mut pair = Pair::start();
    pair.a.ok(&["create_group", "g2"]);
    pair.b.ok(&["join_group", "g2"]);
    pair.a.ok(&["accept_request", "g2", "bob"]);
    let dir = pair.net.mkdir("alice");
    for n in ["keep.bin", "stopped.bin", "left.bin"] {
        random_file(&dir.join(n), 1000);
    }
    let path = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    pair.a.ok(&["upload_file", &path("keep.bin"), "g"]);
    pair.a.ok(&["upload_file", &path("stopped.bin"), "g"]);
    pair.a.ok(&["upload_file", &path("left.bin"), "g2"]);
    pair.a.ok(&["stop_share", "g", "stopped.bin"]);
    pair.a.ok(&["leave_group", "g2"]);
    assert_eq!(pair.a.status()["shares"], 1);

    pair.a.kill9();
    pair.b.wait_online("g", "keep.bin", 0, "alice killed");
    pair.a.restart();
    pair.b
        .wait_online("g", "keep.bin", 1, "alice restarted and re-announced");
    assert_eq!(pair.a.status()["shares"], 1, "only keep.bin is shared");
    assert!(
        pair.b.file("g", "stopped.bin").is_none(),
        "stop_share is remembered"
    );
    assert_eq!(
        pair.b.json(&["list_files", "g2"]),
        json!([]),
        "left group stays left"
    );
    pair.a.err(&["list_files", "g2"], "not_member");
}

#[test]
fn shares_belong_to_their_user_on_a_shared_daemon() {
    let pair = Pair::start();
    pair.a.ok(&["create_user", "carol", "pw-c"]);
    let dir = pair.net.mkdir("alice");
    random_file(&dir.join("f.bin"), 1000);
    pair.a
        .ok(&["upload_file", dir.join("f.bin").to_str().unwrap(), "g"]);
    pair.a.ok(&["logout"]);
    pair.a.ok(&["login", "carol", "pw-c"]);
    assert_eq!(pair.a.status()["shares"], 0, "carol shares nothing");
    pair.b.wait_online(
        "g",
        "f.bin",
        0,
        "alice logged out, carol logged in on her daemon",
    );
    pair.a.err(&["stop_share", "g", "f.bin"], "not_member");
    pair.a.ok(&["logout"]);
    pair.a.ok(&["login", "alice", "pw-a"]);
    assert_eq!(pair.a.status()["shares"], 1);
    pair.b.wait_online("g", "f.bin", 1, "alice back");
}

#[test]
fn daemon_started_while_tracker_down_connects_later() {
    let mut net = Net::start();
    let mut a = net.daemon("a");
    a.signup("alice", "pw-a");
    a.kill9();
    net.kill9_trackers();
    a.restart();
    let s = a.status();
    assert_eq!(s["user"], "alice", "session kept with no tracker: {s}");
    a.err(&["list_groups"], "tracker_unavailable");
    net.restart_trackers();
    let groups = a.wait_success(&["list_groups"], "daemon connects once a tracker is up");
    assert_eq!(groups, json!([]));
}

#[test]
fn concurrent_acknowledged_writes_survive_tracker_kill9() {
    let mut net = Net::start();
    let a = net.daemon("a");
    let users: Vec<String> = (0..16).map(|i| format!("user{i}")).collect();
    std::thread::scope(|s| {
        for u in &users {
            let a = &a;
            s.spawn(move || {
                a.ok(&["create_user", u, "pw"]);
            });
        }
    });
    // Every create_user was acknowledged: kill -9 at once.
    net.kill9_trackers();
    net.restart_trackers();
    for u in &users {
        let mut last = None;
        let ok = wait_until(SETTLE_TIMEOUT, || {
            let out = a.ctl(&["create_user", u, "pw"]);
            let done = out.status == 1 && out.code() == "user_exists";
            last = Some(out);
            done || last.as_ref().is_some_and(|o| o.status == 0)
        });
        let last = last.expect("polled");
        assert!(
            ok && last.status == 1,
            "{u} was acknowledged before the crash and must still exist: {last:?}"
        );
    }
    a.ok(&["login", "user7", "pw"]);
}
