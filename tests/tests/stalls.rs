//! No silent stalls: a download that cannot progress says why, in
//! `show_downloads`' `reason`, and carries on when it can.
//!
//! The holder here lies without knowing it: its shared file changed on disk
//! with its modification time put back, so the daemon still serves it and
//! every piece it sends fails its SHA-1. The downloader reports it; the
//! tracker stops listing that copy and tells its holder, which re-hashes
//! the file, finds it changed and stops sharing it.

use blackbox::{random_file, sha1_file, wait_until, Daemon, Pair};
use serde_json::Value;
use std::time::Duration;

/// SPEC (issue 12): a stalled download shows a reason within this.
const REASON_WITHIN: Duration = Duration::from_secs(30);
/// Time for the download to finish once an honest holder shares the file.
const FINISH_WITHIN: Duration = Duration::from_secs(60);

/// `name`'s entry in `d`'s `show_downloads`.
fn download(d: &Daemon, name: &str) -> Option<Value> {
    let all = d.ctl(&["show_downloads"]).json?;
    all.as_array()?.iter().find(|x| x["name"] == name).cloned()
}

#[test]
fn a_holder_whose_file_changed_is_named_and_an_honest_one_finishes_it() {
    let pair = Pair::start();
    let (a, b) = (&pair.a, &pair.b);
    // bob shares f.bin, then its bytes change under the same size and
    // modification time.
    let bob_dir = pair.net.mkdir("bob");
    let shared = bob_dir.join("f.bin");
    let sha = random_file(&shared, 4 << 20);
    b.ok(&["upload_file", shared.to_str().unwrap(), "g"]);
    let honest = pair.net.mkdir("carol").join("f.bin");
    std::fs::copy(&shared, &honest).expect("keep the real bytes");
    let mtime = std::fs::metadata(&shared)
        .and_then(|m| m.modified())
        .expect("mtime");
    random_file(&shared, 4 << 20);
    std::fs::File::options()
        .write(true)
        .open(&shared)
        .and_then(|f| f.set_modified(mtime))
        .expect("put the mtime back");

    let dest = pair.net.mkdir("dest");
    a.ok(&[
        "download_file",
        "g",
        "f.bin",
        dest.to_str().unwrap(),
        "--detach",
    ]);
    let mut last = None;
    let named = wait_until(REASON_WITHIN, || {
        last = download(a, "f.bin");
        last.as_ref().is_some_and(|x| {
            x["state"] == "paused"
                && x["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("(bob) sent corrupt data"))
        })
    });
    assert!(named, "no reason naming bob within 30 s: {last:?}");
    let human = a.ctl_human(&["show_downloads"]).stdout;
    assert!(human.contains("corrupt"), "{human}");

    // bob was the only holder: once he has re-hashed and dropped his copy,
    // nobody shares f.bin, and the download waits for someone who does.
    let mut files = None;
    let unlisted = wait_until(REASON_WITHIN, || {
        files = a.ctl(&["list_files", "g"]).json;
        files
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|all| all.iter().all(|f| f["name"] != "f.bin"))
    });
    assert!(unlisted, "bob's corrupt copy is still listed: {files:?}");
    let told = wait_until(REASON_WITHIN, || {
        last = download(a, "f.bin");
        last.as_ref().is_some_and(|x| {
            x["state"] == "paused"
                && x["reason"].as_str().is_some_and(|r| {
                    r.contains("(bob) sent corrupt data") && r.contains("nobody else shares")
                })
        })
    });
    assert!(
        told,
        "the reason does not say nobody shares it now: {last:?}"
    );

    // carol joins and shares the real file: the download finishes from her.
    let c = pair.net.daemon("c");
    c.signup("carol", "pw-c");
    c.ok(&["join_group", "g"]);
    a.ok(&["accept_request", "g", "carol"]);
    c.ok(&["upload_file", honest.to_str().unwrap(), "g"]);
    let done = wait_until(FINISH_WITHIN, || {
        last = download(a, "f.bin");
        last.as_ref().is_some_and(|x| x["state"] == "complete")
    });
    assert!(
        done,
        "not complete after an honest holder appeared: {last:?}"
    );
    assert_eq!(sha1_file(&dest.join("f.bin")), sha);
}
