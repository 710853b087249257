//! `p2pctl show_downloads --watch`: waits for every download to finish and
//! then prints the final listing once (piped), or one JSON document.

use blackbox::{random_file, sha1_file, Net};
use std::path::Path;

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// alice shares `f.bin` and `g.bin` (4 MiB each) in g; bob, a member whose daemon downloads
/// at 1 MiB/s, so a download lasts seconds, not milliseconds.
fn slow_pair() -> (blackbox::Daemon, blackbox::Daemon, Net, String) {
    let net = Net::start();
    let a = net.daemon("a");
    let b = net.daemon_with("b", &["--max-download-rate", "1MiB"]);
    a.signup("alice", "pw-a");
    b.signup("bob", "pw-b");
    a.ok(&["create_group", "g"]);
    b.ok(&["join_group", "g"]);
    a.ok(&["accept_request", "g", "bob"]);
    let dir = net.mkdir("alice");
    let sha = random_file(&dir.join("f.bin"), 4 << 20);
    a.ok(&["upload_file", p(&dir.join("f.bin")), "g"]);
    std::fs::copy(dir.join("f.bin"), dir.join("g.bin")).expect("copy");
    a.ok(&["upload_file", p(&dir.join("g.bin")), "g"]);
    (a, b, net, sha)
}

#[test]
fn watch_ends_by_itself_when_the_downloads_finish() {
    let (_a, b, net, sha) = slow_pair();
    let dest = net.mkdir("bob");
    b.ok(&["download_file", "g", "f.bin", p(&dest), "--detach"]);
    let out = b.ctl_human(&["show_downloads", "--watch"]);
    assert_eq!(out.status, 0, "{out:?}");
    // It returned because the download finished, so the one listing it
    // prints shows it complete, whatever the timing.
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the final listing, once: {out:?}");
    assert!(lines[0].starts_with("[C] [g] f.bin\t100%\t"), "{out:?}");
    assert_eq!(sha1_file(&dest.join("f.bin")), sha);

    // Under --json: one document, every download finished.
    let dest2 = net.mkdir("bob2");
    b.ok(&["download_file", "g", "g.bin", p(&dest2), "--detach"]);
    let out = b.ctl(&["show_downloads", "--watch", "--interval", "1"]);
    let doc = out
        .json
        .clone()
        .unwrap_or_else(|| panic!("one document: {out:?}"));
    assert_eq!(out.status, 0, "{out:?}");
    let states: Vec<&str> = doc
        .as_array()
        .expect("a listing")
        .iter()
        .map(|d| d["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["complete", "complete"], "{doc}");
    assert_eq!(sha1_file(&dest2.join("g.bin")), sha);
}

#[test]
fn watch_with_nothing_to_wait_for_and_without_a_daemon() {
    let net = Net::start();
    let a = net.daemon("a");
    a.signup("alice", "pw-a");
    let out = a.ctl_human(&["show_downloads", "--watch"]);
    assert_eq!((out.status, out.stdout.as_str()), (0, ""), "{out:?}");
    // Not logged in: the daemon's refusal, once, not a loop.
    a.ok(&["logout"]);
    a.err(&["show_downloads", "--watch"], "not_logged_in");
    let nobody = net.mkdir("nobody");
    let out = blackbox::ctl_at(&nobody, &["show_downloads", "--watch"]);
    assert_eq!(out.status, 3, "{out:?}");
}
