//! Sharing: upload_file, list_files, stop_share.

use blackbox::{json, random_file, wait_until, Pair, EMPTY_SHA1, SETTLE_TIMEOUT};
use serde_json::Value;
use std::path::Path;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The SPEC fields of a `list_files` entry (more may be added).
fn spec_fields(f: &Value) -> Value {
    for key in ["name", "size", "sha1", "holders", "online"] {
        assert!(f.get(key).is_some(), "list_files entry lacks {key:?}: {f}");
    }
    json!({"name": f["name"], "size": f["size"], "sha1": f["sha1"],
           "holders": f["holders"], "online": f["online"]})
}

#[test]
fn upload_then_list_files_has_spec_shape() {
    let pair = Pair::start();
    let dir = pair.net.mkdir("alice");
    let f = dir.join("f.bin");
    // Three pieces, the last one short.
    let sha = random_file(&f, 1_300_000);
    pair.a.ok(&["upload_file", p(&f), "g"]);
    let want =
        json!([{"name": "f.bin", "size": 1_300_000, "sha1": sha, "holders": 1, "online": 1}]);
    for d in [&pair.a, &pair.b] {
        let files: Vec<Value> = d.files("g").iter().map(spec_fields).collect();
        assert_eq!(
            Value::Array(files),
            want,
            "list_files as seen by {}",
            d.name
        );
    }
    assert_eq!(pair.a.status()["shares"], 1);
    // Uploading the same file again is harmless: still one holder.
    pair.a.ok(&["upload_file", p(&f), "g"]);
    assert_eq!(pair.b.file("g", "f.bin").unwrap()["holders"], 1);
}

#[test]
fn relative_path_is_resolved_against_p2pctl_working_dir() {
    let pair = Pair::start();
    let dir = pair.net.mkdir("alice");
    let sha = random_file(&dir.join("rel.bin"), 70_000);
    pair.a
        .call()
        .args(&["upload_file", "rel.bin", "g"])
        .cwd(&dir)
        .run()
        .assert_ok();
    let f = pair.b.file("g", "rel.bin").expect("rel.bin listed");
    assert_eq!(f["sha1"], sha.as_str());
    assert_eq!(f["size"], 70_000);
    // And a ./sub/../ form from the same directory.
    std::fs::create_dir(dir.join("sub")).expect("mkdir");
    let sha2 = random_file(&dir.join("sub").join("deep.bin"), 10);
    pair.a
        .call()
        .args(&["upload_file", "./sub/deep.bin", "g"])
        .cwd(&dir)
        .run()
        .assert_ok();
    assert_eq!(
        pair.b.file("g", "deep.bin").expect("deep.bin")["sha1"],
        sha2.as_str()
    );
}

#[test]
fn empty_file_and_names_with_spaces_and_utf8() {
    let pair = Pair::start();
    let dir = pair.net.mkdir("alice");
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").expect("write");
    pair.a.ok(&["upload_file", p(&empty), "g"]);
    let f = pair.b.file("g", "empty").expect("empty file listed");
    assert_eq!(
        spec_fields(&f),
        json!({"name": "empty", "size": 0, "sha1": EMPTY_SHA1, "holders": 1, "online": 1})
    );

    let spaced = dir.join("my file.txt");
    let sha = random_file(&spaced, 1234);
    pair.a.ok(&["upload_file", p(&spaced), "g"]);
    assert_eq!(
        pair.b.file("g", "my file.txt").expect("spaced name")["sha1"],
        sha.as_str()
    );

    let utf8 = dir.join("ünïcødé ☃.dat");
    let sha = random_file(&utf8, 600_000);
    pair.a.ok(&["upload_file", p(&utf8), "g"]);
    assert_eq!(
        pair.b.file("g", "ünïcødé ☃.dat").expect("utf-8 name")["sha1"],
        sha.as_str()
    );

    // Sorted by name (byte order).
    let names: Vec<String> = pair
        .b
        .files("g")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 3);
    assert_eq!(pair.a.status()["shares"], 3);
}

#[test]
fn same_content_adds_a_holder_other_content_is_name_taken() {
    let pair = Pair::start();
    let da = pair.net.mkdir("alice");
    let db = pair.net.mkdir("bob");
    let sha = random_file(&da.join("f.bin"), 800_000);
    std::fs::copy(da.join("f.bin"), db.join("f.bin")).expect("copy");
    pair.a.ok(&["upload_file", p(&da.join("f.bin")), "g"]);
    pair.b.ok(&["upload_file", p(&db.join("f.bin")), "g"]);
    assert_eq!(
        spec_fields(&pair.a.file("g", "f.bin").unwrap()),
        json!({"name": "f.bin", "size": 800_000, "sha1": sha, "holders": 2, "online": 2})
    );

    // Same name, other content of the same size; and of another size.
    let other = pair.net.mkdir("bob2");
    random_file(&other.join("f.bin"), 800_000);
    let refused = pair
        .b
        .err(&["upload_file", p(&other.join("f.bin")), "g"], "name_taken");
    // The sentence says how to go on, not only what is wrong.
    assert!(
        refused.stderr.contains("another name")
            && refused.stderr.contains("p2pctl stop_share g f.bin"),
        "{}",
        refused.stderr
    );
    random_file(&other.join("f.bin"), 5);
    pair.b
        .err(&["upload_file", p(&other.join("f.bin")), "g"], "name_taken");
    // Nothing changed.
    assert_eq!(pair.a.file("g", "f.bin").unwrap()["sha1"], sha.as_str());
    assert_eq!(pair.a.file("g", "f.bin").unwrap()["holders"], 2);
}

#[test]
fn upload_refusals() {
    let pair = Pair::start();
    let dir = pair.net.mkdir("alice");
    pair.a
        .err(&["upload_file", p(&dir.join("missing.bin")), "g"], "io");
    pair.a
        .err(&["upload_file", p(&dir), "g"], "invalid_argument");
    let f = dir.join("f.bin");
    random_file(&f, 100);
    pair.a.ok(&["create_group", "solo"]);
    let refused = pair.b.err(&["upload_file", p(&f), "solo"], "not_member");
    assert!(
        refused.stderr.contains("p2pctl join_group solo"),
        "not_member says how to become one: {}",
        refused.stderr
    );
    pair.b.err(&["upload_file", p(&f), "nope"], "no_such_group");
    assert_eq!(pair.a.json(&["list_files", "solo"]), json!([]));
    assert_eq!(pair.a.json(&["list_files", "g"]), json!([]));
    assert_eq!(pair.a.status()["shares"], 0);
}

#[test]
fn stop_share_lowers_holders_and_delists_when_nobody_holds() {
    let pair = Pair::start();
    let da = pair.net.mkdir("alice");
    let db = pair.net.mkdir("bob");
    random_file(&da.join("f.bin"), 3000);
    std::fs::copy(da.join("f.bin"), db.join("f.bin")).expect("copy");
    random_file(&da.join("only-alice.bin"), 10);

    pair.b
        .err(&["stop_share", "g", "nothing.bin"], "no_such_file");
    pair.b
        .err(&["stop_share", "nope", "f.bin"], "no_such_group");
    pair.a.ok(&["upload_file", p(&da.join("f.bin")), "g"]);
    pair.a
        .ok(&["upload_file", p(&da.join("only-alice.bin")), "g"]);
    pair.b
        .err(&["stop_share", "g", "only-alice.bin"], "not_holder");
    pair.b.ok(&["upload_file", p(&db.join("f.bin")), "g"]);
    assert_eq!(pair.b.file("g", "f.bin").unwrap()["holders"], 2);

    pair.a.ok(&["stop_share", "g", "f.bin"]);
    let f = pair.b.file("g", "f.bin").expect("still held by bob");
    assert_eq!(
        (f["holders"].clone(), f["online"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(pair.a.status()["shares"], 1);
    pair.a.err(&["stop_share", "g", "f.bin"], "not_holder");

    pair.b.ok(&["stop_share", "g", "f.bin"]);
    assert!(
        pair.a.file("g", "f.bin").is_none(),
        "nobody holds f.bin: delisted"
    );
    pair.b.err(&["stop_share", "g", "f.bin"], "no_such_file");
    // The other file is untouched; alice's own copy is untouched on disk.
    assert!(pair.b.file("g", "only-alice.bin").is_some());
    assert_eq!(std::fs::metadata(da.join("f.bin")).unwrap().len(), 3000);
    // A file can be shared again after being delisted.
    pair.a.ok(&["upload_file", p(&da.join("f.bin")), "g"]);
    assert_eq!(pair.b.file("g", "f.bin").unwrap()["holders"], 1);
}

#[test]
fn leaving_a_group_drops_the_leavers_holdings() {
    let pair = Pair::start();
    let db = pair.net.mkdir("bob");
    random_file(&db.join("b.bin"), 100);
    pair.b.ok(&["upload_file", p(&db.join("b.bin")), "g"]);
    assert!(pair.a.file("g", "b.bin").is_some());
    pair.b.ok(&["leave_group", "g"]);
    assert!(
        pair.a.file("g", "b.bin").is_none(),
        "the leaver's only copy is delisted"
    );
}

#[test]
fn changed_file_is_dropped_after_daemon_restart() {
    let mut pair = Pair::start();
    let da = pair.net.mkdir("alice");
    let db = pair.net.mkdir("bob");
    random_file(&da.join("f.bin"), 50_000);
    std::fs::copy(da.join("f.bin"), db.join("f.bin")).expect("copy");
    random_file(&da.join("gone.bin"), 10);
    pair.a.ok(&["upload_file", p(&da.join("f.bin")), "g"]);
    pair.a.ok(&["upload_file", p(&da.join("gone.bin")), "g"]);
    pair.b.ok(&["upload_file", p(&db.join("f.bin")), "g"]);
    assert_eq!(pair.a.status()["shares"], 2);

    pair.a.kill9();
    // Change f.bin (size differs) and delete gone.bin.
    let mut bytes = std::fs::read(da.join("f.bin")).expect("read");
    bytes.extend_from_slice(b"changed");
    std::fs::write(da.join("f.bin"), bytes).expect("write");
    std::fs::remove_file(da.join("gone.bin")).expect("rm");
    pair.a.restart();

    let mut last = Value::Null;
    let dropped = wait_until(SETTLE_TIMEOUT, || {
        last = pair.a.status();
        last["shares"] == 0
    });
    assert!(
        dropped,
        "alice's daemon should drop both shares after restart; status: {last}"
    );
    let mut files = Vec::new();
    let settled = wait_until(SETTLE_TIMEOUT, || {
        files = pair.b.files("g");
        files.len() == 1 && files[0]["name"] == "f.bin" && files[0]["holders"] == 1
    });
    assert!(
        settled,
        "want only f.bin listed, held by bob alone; list_files: {}",
        Value::Array(files)
    );
}

#[test]
fn downloading_a_file_you_share_says_to_copy_it() {
    let pair = Pair::start();
    let dir = pair.net.mkdir("alice");
    let f = dir.join("f.bin");
    random_file(&f, 100_000);
    pair.a.ok(&["upload_file", p(&f), "g"]);
    let dest = pair.net.mkdir("alice-dl");
    // Not no_holders_online (a script would wait for holders forever): the
    // request itself makes no sense, like downloading a file twice at once.
    let refused = pair.a.err(
        &["download_file", "g", "f.bin", p(&dest)],
        "invalid_argument",
    );
    assert!(
        refused.stderr.contains("you already share f.bin in g")
            && refused.stderr.contains(p(&f))
            && refused.stderr.contains("copy"),
        "{}",
        refused.stderr
    );
    assert!(std::fs::read_dir(&dest).unwrap().next().is_none());
    assert_eq!(pair.a.json(&["show_downloads"]), json!([]));
    // bob, who does not hold it, still downloads it.
    let bob_dest = pair.net.mkdir("bob-dl");
    pair.b.ok(&["download_file", "g", "f.bin", p(&bob_dest)]);
}
