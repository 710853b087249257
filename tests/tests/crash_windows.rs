//! Crash windows and a full disk: a daemon killed at the worst moment
//! (`P2PD_FAULT` makes it SIGKILL itself exactly there) comes back
//! consistent, and a download that runs out of disk pauses and resumes.

use blackbox::{random_file, sha1_file, wait_until, Daemon, Net, Pair};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Time for anything here to happen (liveness, not performance).
const WITHIN: Duration = Duration::from_secs(40);

/// Starts `d` again with `P2PD_FAULT=point` (or without it: `None`), and
/// waits until it is connected to the tracker.
fn restart_with_fault(d: &mut Daemon, point: Option<&str>) {
    d.set_env("P2PD_FAULT", point);
    d.restart();
    assert!(
        wait_until(WITHIN, || d.status()["tracker"].is_string()),
        "{} reconnects: {}",
        d.name,
        d.status()
    );
}

fn wait_dead(d: &mut Daemon, what: &str) {
    assert!(
        wait_until(WITHIN, || !d.is_running()),
        "{what}: p2pd {} should have killed itself at the fault point",
        d.name
    );
}

/// `name`'s entry in `d`'s `show_downloads`.
fn download(d: &Daemon, name: &str) -> Option<Value> {
    let all = d.ctl(&["show_downloads"]).json?;
    all.as_array()?.iter().find(|x| x["name"] == name).cloned()
}

/// `d` starts downloading `g/f.bin` (detached) into a new directory
/// `dir` of the net; returns that directory.
fn start_download(d: &Daemon, net: &Net, dir: &str) -> PathBuf {
    let dest = net.mkdir(dir);
    d.ok(&[
        "download_file",
        "g",
        "f.bin",
        dest.to_str().unwrap(),
        "--detach",
    ]);
    dest
}

/// Waits until `name` is complete on `d`; panics with its last state.
fn wait_complete(d: &Daemon, name: &str, what: &str) -> Value {
    let mut last = None;
    let done = wait_until(WITHIN, || {
        last = download(d, name);
        last.as_ref().is_some_and(|x| x["state"] == "complete")
    });
    assert!(done, "{what}: {name} not complete on {}: {last:?}", d.name);
    last.expect("seen")
}

#[test]
fn crash_after_register_leaves_no_phantom_holder() {
    let mut pair = Pair::start();
    restart_with_fault(&mut pair.a, Some("after_register"));
    let dir = pair.net.mkdir("alice");
    let file = dir.join("f.bin");
    let sha = random_file(&file, 3 << 20);
    let out = pair.a.ctl(&["upload_file", file.to_str().unwrap(), "g"]);
    assert_ne!(out.status, 0, "the daemon died before answering");
    wait_dead(&mut pair.a, "upload_file");
    // The tracker committed the registration before the crash.
    assert_eq!(pair.b.file("g", "f.bin").expect("listed")["holders"], 1);

    restart_with_fault(&mut pair.a, None);
    // The holder the tracker lists serves the file.
    let dest = start_download(&pair.b, &pair.net, "bob-dl");
    wait_complete(&pair.b, "f.bin", "download from the restarted holder");
    assert_eq!(sha1_file(&dest.join("f.bin")), sha);
    assert_eq!(pair.a.status()["shares"], 1, "the share was recorded first");
}

#[test]
fn crash_before_register_registers_at_restart() {
    let mut pair = Pair::start();
    restart_with_fault(&mut pair.a, Some("before_register"));
    let dir = pair.net.mkdir("alice");
    random_file(&dir.join("f.bin"), 1000);
    let out = pair
        .a
        .ctl(&["upload_file", dir.join("f.bin").to_str().unwrap(), "g"]);
    assert_ne!(out.status, 0, "the daemon died before answering");
    wait_dead(&mut pair.a, "upload_file");
    assert!(pair.b.file("g", "f.bin").is_none(), "not registered yet");
    restart_with_fault(&mut pair.a, None);
    // Recorded, so the restart announces it.
    pair.b
        .wait_online("g", "f.bin", 1, "registered by the restart");
}

#[test]
fn a_share_whose_file_vanished_while_down_is_withdrawn_at_restart() {
    let mut pair = Pair::start();
    let dir = pair.net.mkdir("alice");
    random_file(&dir.join("f.bin"), 1000);
    pair.a
        .ok(&["upload_file", dir.join("f.bin").to_str().unwrap(), "g"]);
    pair.a.kill9();
    std::fs::remove_file(dir.join("f.bin")).expect("rm");
    restart_with_fault(&mut pair.a, None);
    // Alice was its only holder: withdrawn, the file is delisted.
    assert!(
        wait_until(WITHIN, || pair.b.file("g", "f.bin").is_none()),
        "still listed: {:?}",
        pair.b.file("g", "f.bin")
    );
    assert_eq!(pair.a.status()["shares"], 0);
}

#[test]
fn refused_upload_is_not_recorded() {
    let pair = Pair::start();
    let (da, db) = (pair.net.mkdir("alice"), pair.net.mkdir("bob"));
    let sha = random_file(&da.join("f.bin"), 1000);
    random_file(&db.join("f.bin"), 1000);
    pair.a
        .ok(&["upload_file", da.join("f.bin").to_str().unwrap(), "g"]);
    pair.b.err(
        &["upload_file", db.join("f.bin").to_str().unwrap(), "g"],
        "name_taken",
    );
    assert_eq!(pair.b.status()["shares"], 0, "a refused share is forgotten");
    // Alice's own share of the name survives her refused other content.
    let other = pair.net.mkdir("alice-other");
    random_file(&other.join("f.bin"), 2000);
    pair.a.err(
        &["upload_file", other.join("f.bin").to_str().unwrap(), "g"],
        "name_taken",
    );
    assert_eq!(pair.a.status()["shares"], 1);
    let dest = start_download(&pair.b, &pair.net, "bob-dl");
    wait_complete(&pair.b, "f.bin", "served from the original path");
    assert_eq!(sha1_file(&dest.join("f.bin")), sha);
}

/// Bob's download of alice's file dies at `point` while finishing; the
/// restarted daemon completes it from the file on disk and shares it: a
/// third member downloads it from bob alone.
fn crash_while_finishing(point: &str, part_left: bool) {
    let mut pair = Pair::start();
    let dir = pair.net.mkdir("alice");
    let sha = random_file(&dir.join("f.bin"), 3 << 20);
    pair.a
        .ok(&["upload_file", dir.join("f.bin").to_str().unwrap(), "g"]);
    restart_with_fault(&mut pair.b, Some(point));
    let dest = start_download(&pair.b, &pair.net, "bob-dl");
    wait_dead(&mut pair.b, "finishing the download");
    let (final_path, part) = (dest.join("f.bin"), dest.join("f.bin.part"));
    assert!(final_path.exists(), "the final name was linked");
    assert_eq!(part.exists(), part_left, "the crash window of {point}");

    restart_with_fault(&mut pair.b, None);
    let d = wait_complete(&pair.b, "f.bin", "after the restart");
    assert_eq!(d["bytes_done"], 3 << 20, "{d}");
    assert_eq!(sha1_file(&final_path), sha);
    assert!(!part.exists(), "the leftover .part is removed");
    assert_eq!(pair.b.status()["shares"], 1, "{}", pair.b.status());

    // Shared: carol gets it from bob with alice gone.
    let c = pair.net.daemon("c");
    c.signup("carol", "pw-c");
    c.ok(&["join_group", "g"]);
    pair.a.ok(&["accept_request", "g", "carol"]);
    pair.a.kill9();
    pair.b.wait_online("g", "f.bin", 1, "only bob online");
    let cdest = start_download(&c, &pair.net, "carol-dl");
    let d = wait_complete(&c, "f.bin", "carol from bob");
    assert_eq!(sha1_file(&cdest.join("f.bin")), sha);
    assert_eq!(d["peers"][0]["user"], "bob", "{d}");
}

#[test]
fn crash_between_link_and_part_removal_completes_on_restart() {
    crash_while_finishing("after_link", true);
}

#[test]
fn crash_before_the_share_is_recorded_completes_on_restart() {
    crash_while_finishing("after_finish", false);
}

#[test]
fn other_content_at_the_final_path_after_a_crash_is_never_touched() {
    let mut pair = Pair::start();
    let dir = pair.net.mkdir("alice");
    random_file(&dir.join("f.bin"), 1 << 20);
    pair.a
        .ok(&["upload_file", dir.join("f.bin").to_str().unwrap(), "g"]);
    restart_with_fault(&mut pair.b, Some("after_link"));
    let dest = start_download(&pair.b, &pair.net, "bob-dl");
    wait_dead(&mut pair.b, "finishing the download");
    // While the daemon is down, something else takes the final name
    // (same size, other bytes; a new inode, not the linked .part).
    let final_path = dest.join("f.bin");
    std::fs::remove_file(&final_path).expect("unlink");
    let planted = random_file(&final_path, 1 << 20);

    restart_with_fault(&mut pair.b, None);
    let mut last = None;
    let failed = wait_until(WITHIN, || {
        last = download(&pair.b, "f.bin");
        last.as_ref().is_some_and(|x| x["state"] == "failed")
    });
    assert!(
        failed,
        "a mismatching final file fails the download: {last:?}"
    );
    let reason = last.expect("seen")["reason"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(reason.contains("already exists"), "{reason}");
    assert_eq!(sha1_file(&final_path), planted, "never touched");
    assert_eq!(pair.b.status()["shares"], 0, "not shared");
}

/// A small tmpfs mounted for the test, unmounted (lazily: the daemon may
/// still hold a file there) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_pauses_with_a_reason_and_resumes_from_verified_pieces() {
    let pair = Pair::start();
    let small = pair.net.mkdir("small");
    let _mounted = match Tmpfs::mount(&small, "16m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {}: {why}",
                small.display()
            );
            return;
        }
    };
    // Room for a few pieces of the file, not all of them.
    let filler = small.join("filler");
    std::fs::write(&filler, vec![0u8; 14 << 20]).expect("fill the tmpfs");
    let dir = pair.net.mkdir("alice");
    let size = 6u64 << 20;
    let sha = random_file(&dir.join("f.bin"), size as usize);
    pair.a
        .ok(&["upload_file", dir.join("f.bin").to_str().unwrap(), "g"]);
    pair.b.ok(&[
        "download_file",
        "g",
        "f.bin",
        small.to_str().unwrap(),
        "--detach",
    ]);
    let mut last = None;
    let paused = wait_until(WITHIN, || {
        last = download(&pair.b, "f.bin");
        last.as_ref().is_some_and(|x| {
            x["state"] == "paused"
                && x["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("disk full"))
        })
    });
    assert!(paused, "paused with a reason: {last:?}");
    let d = last.expect("seen");
    let kept = d["bytes_done"].as_u64().expect("bytes_done");
    assert!(kept > 0, "some pieces fit before the disk was full: {d}");
    assert!(small.join("f.bin.part").exists(), "the .part is kept");
    let human = pair.b.ctl_human(&["show_downloads"]);
    assert!(human.stdout.contains("disk full"), "{}", human.stdout);

    std::fs::remove_file(&filler).expect("free the space");
    let mut low = u64::MAX;
    let done = wait_until(WITHIN, || {
        let Some(x) = download(&pair.b, "f.bin") else {
            return false;
        };
        low = low.min(x["bytes_done"].as_u64().unwrap_or(0));
        x["state"] == "complete"
    });
    assert!(
        done,
        "resumed once there was room: {:?}",
        download(&pair.b, "f.bin")
    );
    assert!(
        low >= kept,
        "never back below {kept} verified bytes (saw {low})"
    );
    assert_eq!(sha1_file(&small.join("f.bin")), sha);
    assert!(!small.join("f.bin.part").exists());
}
