//! A three-tracker Raft cluster: leader loss, restarts, a wiped tracker,
//! presence across trackers. Every step is a bounded poll through p2pctl.

use blackbox::{random_file, wait_until, Daemon, Net, Trackers, SETTLE_TIMEOUT};
use std::time::{Duration, Instant};

const ELECTION_WAIT: Duration = Duration::from_secs(15);

fn groups(d: &Daemon) -> Vec<String> {
    let v = d.wait_success(&["list_groups"], "list_groups");
    v.as_array()
        .expect("list_groups is an array")
        .iter()
        .filter_map(|g| g["group"].as_str().map(str::to_owned))
        .collect()
}

/// Poll until `d` lists every group of `want`.
fn wait_groups(d: &Daemon, want: &[&str], what: &str) {
    let mut last = Vec::new();
    let ok = wait_until(SETTLE_TIMEOUT, || {
        last = groups(d);
        want.iter().all(|g| last.iter().any(|h| h == g))
    });
    assert!(
        ok,
        "{what}: {} should list {want:?}; lists {last:?}",
        d.name
    );
}

#[test]
fn leader_kill9_failover_restarts_and_full_restart_keep_state() {
    let mut net = Net::start_with(Trackers(3));
    let a = net.daemon("a");
    let b = net.daemon("b");
    a.signup("alice", "pw");
    b.signup("bob", "pw");
    a.ok(&["create_group", "g1"]);
    b.ok(&["join_group", "g1"]);
    a.ok(&["accept_request", "g1", "bob"]);
    let f = net.dir().join("f1.bin");
    random_file(&f, 100_000);
    a.ok(&["upload_file", f.to_str().expect("utf-8 path"), "g1"]);

    // kill -9 the leader: within 15 s every command works again.
    let leader = net.wait_leader(ELECTION_WAIT).expect("a leader");
    let t0 = Instant::now();
    net.trackers[leader].kill9();
    a.wait_success(&["create_group", "g2"], "write after the leader died");
    let failover = t0.elapsed();
    println!("first write after the leader's kill -9 succeeded after {failover:?}");
    assert!(
        failover < Duration::from_secs(15),
        "failover took {failover:?}"
    );
    b.wait_success(&["create_user", "carol", "pw"], "another write");
    wait_groups(&b, &["g1", "g2"], "reads after failover");
    assert_eq!(
        b.status()["user"],
        "bob",
        "bob's session survives the leader"
    );
    assert_eq!(a.file("g1", "f1.bin").expect("f1 listed")["holders"], 1);
    b.wait_online("g1", "f1.bin", 1, "alice's presence survives the leader");

    // Restart it, then kill another: what was written meanwhile is there.
    net.trackers[leader].restart();
    let other = (leader + 1) % 3;
    // The restarted tracker must have caught up before the other one goes,
    // or the two left could not form a majority with all the data.
    let pinned = net.daemon_on("pinned", leader);
    pinned.wait_success(&["login", "carol", "pw"], "login via the restarted tracker");
    wait_groups(&pinned, &["g1", "g2"], "the restarted tracker caught up");
    net.trackers[other].kill9();
    a.wait_success(
        &["create_group", "g3"],
        "write with the second tracker down",
    );
    wait_groups(&a, &["g1", "g2", "g3"], "state after the second kill");
    pinned.wait_success(&["join_group", "g1"], "carol via the restarted tracker");

    // kill all three, restart all three: everything is there.
    net.kill9_trackers();
    net.restart_trackers();
    net.wait_leader(ELECTION_WAIT)
        .expect("a leader after a full restart");
    wait_groups(&a, &["g1", "g2", "g3"], "after restarting all three");
    let owner_view = a.wait_success(&["list_requests", "g1"], "carol's request");
    assert_eq!(owner_view, serde_json::json!(["carol"]));
    assert_eq!(a.file("g1", "f1.bin").expect("f1 listed")["holders"], 1);
    assert_eq!(b.status()["user"], "bob");
}

#[test]
fn wiped_tracker_rejoins_as_follower_and_catches_up() {
    let mut net = Net::start_with(Trackers(3));
    let a = net.daemon("a");
    a.signup("alice", "pw");
    a.ok(&["create_user", "zed", "pw"]);
    let names: Vec<String> = (0..20).map(|i| format!("g{i}")).collect();
    for g in &names {
        a.ok(&["create_group", g]);
    }
    // Wipe the tracker the daemons use first (line 1), leader or not.
    net.trackers[0].wipe();
    net.trackers[0].restart();
    let pinned = net.daemon_on("pinned", 0);
    pinned.wait_success(&["login", "zed", "pw"], "login through the wiped tracker");
    let want: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_groups(&pinned, &want, "the wiped tracker caught up");
    // It is a full member again: with another tracker down, the cluster
    // needs it for a majority.
    let other = if net.wait_leader(ELECTION_WAIT) == Some(1) {
        2
    } else {
        1
    };
    net.trackers[other].kill9();
    pinned.wait_success(
        &["create_group", "after"],
        "write needing the wiped tracker",
    );
    wait_groups(&a, &["after"], "seen by the other daemon");
    // It did not start a cluster of its own: one leader, one history.
    let log = std::fs::read_to_string(&net.trackers[0].log).unwrap_or_default();
    assert!(
        log.contains("is leader (term"),
        "the wiped tracker learnt a leader:\n{log}"
    );
}

#[test]
fn wiped_tracker_catches_up_from_a_snapshot_once_the_log_is_purged() {
    // Snapshot every 20 entries (keeping 2), so by the time tracker 1 is
    // wiped the entries it lacks are gone from every log: only installing
    // the leader's snapshot can bring it back.
    let mut net = Net::start_with_tracker_args(Trackers(3), &["--snapshot-every", "20"]);
    let a = net.daemon("a");
    a.signup("alice", "pw");
    a.ok(&["create_user", "zed", "pw"]);
    let names: Vec<String> = (0..60).map(|i| format!("s{i}")).collect();
    for g in &names {
        a.ok(&["create_group", g]);
    }
    net.trackers[0].wipe();
    net.trackers[0].restart();
    let pinned = net.daemon_on("pinned", 0);
    pinned.wait_success(&["login", "zed", "pw"], "login through the wiped tracker");
    let want: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_groups(&pinned, &want, "the wiped tracker caught up");
    let log = std::fs::read_to_string(&net.trackers[0].log).unwrap_or_default();
    assert!(
        log.contains("snapshot installed from the leader"),
        "the wiped tracker should have caught up through a snapshot:\n{log}"
    );
}

#[test]
fn vanished_daemon_goes_offline_on_every_tracker_within_15s() {
    let net = Net::start_with(Trackers(3));
    let seeder = net.daemon("seeder");
    seeder.signup("alice", "pw");
    seeder.ok(&["create_group", "g"]);
    let f = net.dir().join("f.bin");
    random_file(&f, 10_000);
    seeder.ok(&["upload_file", f.to_str().expect("utf-8 path"), "g"]);
    let mut viewers = Vec::new();
    for i in 0..3 {
        let user = format!("viewer{i}");
        let d = net.daemon_on(&format!("v{i}"), i);
        d.signup(&user, "pw");
        d.ok(&["join_group", "g"]);
        seeder.ok(&["accept_request", "g", &user]);
        viewers.push(d);
    }
    for v in &viewers {
        v.wait_online("g", "f.bin", 1, "seeder online");
    }
    let mut seeder = seeder;
    let t0 = Instant::now();
    seeder.kill9();
    for v in &viewers {
        v.wait_online("g", "f.bin", 0, "seeder offline after kill -9");
    }
    let took = t0.elapsed();
    println!("offline on all three trackers after {took:?}");
    assert!(took < Duration::from_secs(16), "took {took:?}");
}

#[test]
fn two_trackers_warn_that_losing_one_pauses_writes() {
    let net = Net::start_with(Trackers(2));
    let log = std::fs::read_to_string(&net.trackers[0].log).unwrap_or_default();
    assert!(log.contains("pauses all writes"), "{log}");
    assert!(log.contains("3 or 5"), "{log}");
}
