//! Groups: create, join, requests, accept, list, leave.

use blackbox::{json, Daemon, Net};
use serde_json::Value;

/// Daemons a, b, c logged in as alice, bob, carol.
fn three() -> (Daemon, Daemon, Daemon, Net) {
    let net = Net::start();
    let a = net.daemon("a");
    let b = net.daemon("b");
    let c = net.daemon("c");
    a.signup("alice", "pw-a");
    b.signup("bob", "pw-b");
    c.signup("carol", "pw-c");
    (a, b, c, net)
}

fn group<'v>(groups: &'v Value, id: &str) -> Option<&'v Value> {
    groups
        .as_array()
        .unwrap_or_else(|| panic!("list_groups is an array: {groups}"))
        .iter()
        .find(|g| g["group"] == id)
}

#[test]
fn create_group_ok_exists_and_not_logged_in() {
    let net = Net::start();
    let a = net.daemon("a");
    let b = net.daemon("b");
    a.err(&["create_group", "g1"], "not_logged_in");
    a.signup("alice", "pw-a");
    b.signup("bob", "pw-b");
    a.ok(&["create_group", "g1"]);
    a.err(&["create_group", "g1"], "group_exists");
    b.err(&["create_group", "g1"], "group_exists");
    let groups = b.json(&["list_groups"]);
    assert_eq!(
        groups,
        json!([{"group": "g1", "owner": "alice", "members": 1}])
    );
}

#[test]
fn join_group_refusals_and_pending_request() {
    let (a, b, _c, _net) = three();
    b.err(&["join_group", "nope"], "no_such_group");
    a.ok(&["create_group", "g1"]);
    a.err(&["join_group", "g1"], "already_member");
    b.ok(&["join_group", "g1"]);
    // A repeated request while one is pending succeeds and stays one request.
    b.ok(&["join_group", "g1"]);
    assert_eq!(a.json(&["list_requests", "g1"]), json!(["bob"]));
    // A pending requester is not a member yet; the sentence says what to do.
    let refused = b.err(&["list_files", "g1"], "not_member");
    assert!(
        refused.stderr.contains("p2pctl join_group g1"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        group(&b.json(&["list_groups"]), "g1").unwrap()["members"],
        1
    );
}

#[test]
fn list_requests_owner_only() {
    let (a, b, c, _net) = three();
    a.err(&["list_requests", "g1"], "no_such_group");
    a.ok(&["create_group", "g1"]);
    assert_eq!(a.json(&["list_requests", "g1"]), json!([]));
    b.ok(&["join_group", "g1"]);
    assert_eq!(a.json(&["list_requests", "g1"]), json!(["bob"]));
    c.ok(&["join_group", "g1"]);
    let mut users: Vec<String> = serde_json::from_value(a.json(&["list_requests", "g1"]))
        .expect("list_requests is an array of user ids");
    users.sort();
    assert_eq!(users, ["bob", "carol"]);
    b.err(&["list_requests", "g1"], "not_owner");
    // A member who is not the owner: still not_owner.
    a.ok(&["accept_request", "g1", "bob"]);
    b.err(&["list_requests", "g1"], "not_owner");
}

#[test]
fn accept_request_refusals_and_success() {
    let (a, b, c, _net) = three();
    a.err(&["accept_request", "nope", "bob"], "no_such_group");
    a.ok(&["create_group", "g1"]);
    a.err(&["accept_request", "g1", "bob"], "no_such_request");
    b.ok(&["join_group", "g1"]);
    c.ok(&["join_group", "g1"]);
    c.err(&["accept_request", "g1", "bob"], "not_owner");
    a.ok(&["accept_request", "g1", "bob"]);
    a.err(&["accept_request", "g1", "bob"], "no_such_request");
    // A member who is not the owner cannot accept either.
    b.err(&["accept_request", "g1", "carol"], "not_owner");
    assert_eq!(a.json(&["list_requests", "g1"]), json!(["carol"]));
    assert_eq!(
        group(&a.json(&["list_groups"]), "g1").unwrap(),
        &json!({"group": "g1", "owner": "alice", "members": 2})
    );
    // bob is a member now.
    assert_eq!(b.json(&["list_files", "g1"]), json!([]));
    b.err(&["join_group", "g1"], "already_member");
}

#[test]
fn list_groups_shape_and_sorted_for_everyone() {
    let (a, b, c, _net) = three();
    assert_eq!(a.json(&["list_groups"]), json!([]));
    a.ok(&["create_group", "zeta"]);
    b.ok(&["create_group", "Alpha"]);
    a.ok(&["create_group", "mid-1"]);
    a.ok(&["create_group", "alpha"]);
    c.ok(&["join_group", "zeta"]);
    a.ok(&["accept_request", "zeta", "carol"]);
    let want = json!([
        {"group": "Alpha", "owner": "bob", "members": 1},
        {"group": "alpha", "owner": "alice", "members": 1},
        {"group": "mid-1", "owner": "alice", "members": 1},
        {"group": "zeta", "owner": "alice", "members": 2},
    ]);
    for d in [&a, &b, &c] {
        let got = d.json(&["list_groups"]);
        // More fields may be added; compare the SPEC ones.
        let got: Vec<Value> = got
            .as_array()
            .unwrap_or_else(|| panic!("array: {got}"))
            .iter()
            .map(|g| json!({"group": g["group"], "owner": g["owner"], "members": g["members"]}))
            .collect();
        assert_eq!(Value::Array(got), want, "list_groups as seen by {}", d.name);
    }
}

#[test]
fn leave_group_passes_ownership_then_deletes_empty_group() {
    let (a, b, c, _net) = three();
    a.err(&["leave_group", "g1"], "no_such_group");
    a.ok(&["create_group", "g1"]);
    b.err(&["leave_group", "g1"], "not_member");
    // carol becomes a member before bob: she is the longest-standing member
    // after alice, although "bob" sorts first.
    c.ok(&["join_group", "g1"]);
    a.ok(&["accept_request", "g1", "carol"]);
    b.ok(&["join_group", "g1"]);
    a.ok(&["accept_request", "g1", "bob"]);
    assert_eq!(
        group(&a.json(&["list_groups"]), "g1").unwrap()["members"],
        3
    );

    a.ok(&["leave_group", "g1"]);
    assert_eq!(
        group(&b.json(&["list_groups"]), "g1").unwrap(),
        &json!({"group": "g1", "owner": "carol", "members": 2})
    );
    a.err(&["list_files", "g1"], "not_member");
    a.err(&["leave_group", "g1"], "not_member");
    // The new owner owns: she sees requests, the old one does not.
    a.ok(&["join_group", "g1"]);
    assert_eq!(c.json(&["list_requests", "g1"]), json!(["alice"]));
    b.err(&["list_requests", "g1"], "not_owner");

    c.ok(&["leave_group", "g1"]);
    assert_eq!(
        group(&b.json(&["list_groups"]), "g1").unwrap(),
        &json!({"group": "g1", "owner": "bob", "members": 1})
    );
    b.ok(&["leave_group", "g1"]);
    assert!(
        group(&b.json(&["list_groups"]), "g1").is_none(),
        "a group left empty is deleted"
    );
    b.err(&["list_files", "g1"], "no_such_group");
    b.err(&["join_group", "g1"], "no_such_group");
    // Its pending request went with it; the id is free again.
    b.ok(&["create_group", "g1"]);
    assert_eq!(b.json(&["list_requests", "g1"]), json!([]));
}

#[test]
fn list_files_needs_membership() {
    let (a, b, _c, _net) = three();
    a.ok(&["create_group", "g1"]);
    b.err(&["list_files", "g1"], "not_member");
    b.err(&["list_files", "nope"], "no_such_group");
    assert_eq!(a.json(&["list_files", "g1"]), json!([]));
}
