//! The swarm: download_file from several holders, faults (a seeder killed,
//! a lying holder, the downloader killed, the only holder logging out),
//! partial seeding, and the refusals SPEC names.

use blackbox::{random_file, sha1_file, wait_until, Daemon, Net, EMPTY_SHA1, SETTLE_TIMEOUT};
use serde_json::Value;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const MIB: usize = 1024 * 1024;
/// Overall bound for one download in these tests.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Start one daemon per `(name, extra args)`, sign each up as user `name`,
/// and put them all in group `g` (owned by the first).
fn swarm(net: &Net, daemons: &[(&str, &[&str])]) -> Vec<Daemon> {
    let ds: Vec<Daemon> = daemons
        .iter()
        .map(|(name, extra)| net.daemon_with(name, extra))
        .collect();
    for d in &ds {
        d.signup(&d.name, "pw");
    }
    ds[0].ok(&["create_group", "g"]);
    for d in &ds[1..] {
        d.ok(&["join_group", "g"]);
        ds[0].ok(&["accept_request", "g", &d.name]);
    }
    ds
}

/// The `show_downloads` entry for `name`, if listed.
fn download(d: &Daemon, name: &str) -> Option<Value> {
    match d.json(&["show_downloads"]) {
        Value::Array(v) => v.into_iter().find(|x| x["name"] == name),
        other => panic!("show_downloads: not an array: {other}"),
    }
}

/// Poll `show_downloads` until `name`'s entry satisfies `cond`.
fn wait_download(
    d: &Daemon,
    name: &str,
    timeout: Duration,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = None;
    let ok = wait_until(timeout, || {
        last = download(d, name);
        last.as_ref().is_some_and(&cond)
    });
    assert!(ok, "download of {name} on {}: last seen {last:?}", d.name);
    last.expect("seen")
}

fn complete(x: &Value) -> bool {
    x["state"] == "complete"
}

fn bytes_done(x: &Value) -> u64 {
    x["bytes_done"].as_u64().unwrap_or(0)
}

fn uploaded(d: &Daemon) -> u64 {
    d.status()["uploaded"].as_u64().expect("uploaded")
}

fn peers_with_bytes(x: &Value) -> Vec<String> {
    x["peers"]
        .as_array()
        .expect("peers array")
        .iter()
        .filter(|p| p["bytes"].as_u64().unwrap_or(0) > 0)
        .map(|p| p["user"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn three_holders_one_downloader() {
    let net = Net::start();
    let slow: &[&str] = &["--max-upload-rate", "8M"];
    let ds = swarm(&net, &[("a", slow), ("b", slow), ("c", slow), ("d", &[])]);
    let src = net.mkdir("src");
    let f = src.join("big.bin");
    let sha = random_file(&f, 24 * MIB);
    for d in &ds[..3] {
        d.ok(&["upload_file", p(&f), "g"]);
    }
    assert_eq!(ds[3].file("g", "big.bin").expect("listed")["holders"], 3);
    let dest = net.mkdir("dl");
    let out = ds[3].ok(&["download_file", "g", "big.bin", p(&dest)]);
    assert!(
        out.stdout.contains("downloaded big.bin"),
        "message: {}",
        out.stdout
    );
    let got = dest.join("big.bin");
    assert_eq!(sha1_file(&got), sha);
    assert!(!dest.join("big.bin.part").exists(), "no .part left");
    let x = download(&ds[3], "big.bin").expect("listed");
    assert!(complete(&x), "{x}");
    assert_eq!(bytes_done(&x), 24 * MIB as u64);
    assert_eq!(x["size"], 24 * MIB as u64);
    assert_eq!(x["path"], p(&got));
    let peers = peers_with_bytes(&x);
    assert!(peers.len() >= 2, "want pieces from at least 2 peers: {x}");
    let total: u64 = x["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 24 * MIB as u64, "per-peer bytes add up: {x}");
    assert_eq!(ds[3].file("g", "big.bin").expect("listed")["holders"], 4);
    let served: u64 = ds[..3].iter().map(uploaded).sum();
    assert!(served >= 24 * MIB as u64, "seeders served {served}");
    assert!(ds[3].status()["downloads"].as_u64().unwrap() >= 1);
}

#[test]
fn a_seeder_killed_mid_download() {
    let net = Net::start();
    let slow: &[&str] = &["--max-upload-rate", "4M"];
    let mut ds = swarm(&net, &[("a", slow), ("b", slow), ("c", slow), ("d", &[])]);
    let src = net.mkdir("src");
    let f = src.join("big.bin");
    let sha = random_file(&f, 24 * MIB);
    for d in &ds[..3] {
        d.ok(&["upload_file", p(&f), "g"]);
    }
    let dest = net.mkdir("dl");
    ds[3].ok(&["download_file", "--detach", "g", "big.bin", p(&dest)]);
    wait_download(&ds[3], "big.bin", DOWNLOAD_TIMEOUT, |x| {
        bytes_done(x) >= 4 * MIB as u64
    });
    ds[1].kill9();
    let x = wait_download(&ds[3], "big.bin", DOWNLOAD_TIMEOUT, complete);
    assert_eq!(sha1_file(&dest.join("big.bin")), sha, "{x}");
}

#[test]
fn a_holder_with_an_altered_file_is_dropped() {
    let net = Net::start();
    let ds = swarm(&net, &[("honest", &[]), ("liar", &[]), ("c", &[])]);
    let size = 12 * MIB;
    let (hd, ld) = (net.mkdir("honest-files"), net.mkdir("liar-files"));
    let sha = random_file(&hd.join("f.bin"), size);
    std::fs::copy(hd.join("f.bin"), ld.join("f.bin")).expect("copy");
    ds[0].ok(&["upload_file", p(&hd.join("f.bin")), "g"]);
    ds[1].ok(&["upload_file", p(&ld.join("f.bin")), "g"]);
    // Alter most pieces of the liar's copy, keeping size and mtime so its
    // daemon still serves it.
    let lf = ld.join("f.bin");
    let mtime = std::fs::metadata(&lf).unwrap().modified().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&lf).unwrap();
    for piece in (1..24).step_by(2) {
        file.write_all_at(b"garbage garbage garbage", piece * 512 * 1024 + 1000)
            .unwrap();
    }
    file.set_modified(mtime).unwrap();
    file.sync_all().unwrap();
    drop(file);
    assert_eq!(std::fs::metadata(&lf).unwrap().modified().unwrap(), mtime);

    let dest = net.mkdir("dl");
    ds[2].ok(&["download_file", "g", "f.bin", p(&dest)]);
    assert_eq!(sha1_file(&dest.join("f.bin")), sha);
}

#[test]
fn the_downloader_killed_and_restarted_resumes() {
    let net = Net::start();
    let slow: &[&str] = &["--max-upload-rate", "3M"];
    let mut ds = swarm(&net, &[("a", slow), ("b", slow), ("c", &[])]);
    let size = 24 * MIB;
    let src = net.mkdir("src");
    let f = src.join("big.bin");
    let sha = random_file(&f, size);
    ds[0].ok(&["upload_file", p(&f), "g"]);
    ds[1].ok(&["upload_file", p(&f), "g"]);
    let dest = net.mkdir("dl");
    ds[2].ok(&["download_file", "--detach", "g", "big.bin", p(&dest)]);
    wait_download(&ds[2], "big.bin", DOWNLOAD_TIMEOUT, |x| {
        bytes_done(x) >= 8 * MIB as u64
    });
    // Kill right after a progress save, so what is lost is only the blocks
    // in flight and what arrived since.
    let records = ds[2].home.join("downloads");
    let stamp = || -> Option<SystemTime> {
        std::fs::read_dir(&records)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| e.metadata().ok()?.modified().ok())
            .max()
    };
    let before = stamp();
    assert!(before.is_some(), "a resume record in {}", records.display());
    assert!(wait_until(Duration::from_secs(10), || stamp() != before));
    ds[2].kill9();
    assert!(dest.join("big.bin.part").exists());
    assert!(!dest.join("big.bin").exists());
    ds[2].restart();
    assert_eq!(ds[2].status()["user"], "c", "the session survives");
    let x = wait_download(&ds[2], "big.bin", DOWNLOAD_TIMEOUT, complete);
    assert_eq!(sha1_file(&dest.join("big.bin")), sha, "{x}");
    let served = uploaded(&ds[0]) + uploaded(&ds[1]);
    assert!(
        (served as f64) < 1.6 * size as f64,
        "seeders served {served} bytes for a file of {size}: the resume started over?"
    );
}

#[test]
fn the_only_holder_logs_out_then_back_in() {
    let net = Net::start();
    let ds = swarm(&net, &[("a", &["--max-upload-rate", "2M"]), ("b", &[])]);
    let src = net.mkdir("src");
    let f = src.join("f.bin");
    let sha = random_file(&f, 10 * MIB);
    ds[0].ok(&["upload_file", p(&f), "g"]);
    let dest = net.mkdir("dl");
    ds[1].ok(&["download_file", "--detach", "g", "f.bin", p(&dest)]);
    wait_download(&ds[1], "f.bin", DOWNLOAD_TIMEOUT, |x| {
        bytes_done(x) >= 2 * MIB as u64
    });
    ds[0].ok(&["logout"]);
    let paused = wait_download(&ds[1], "f.bin", SETTLE_TIMEOUT, |x| x["state"] == "paused");
    assert!(bytes_done(&paused) < 10 * MIB as u64, "{paused}");
    ds[0].ok(&["login", "a", "pw"]);
    let x = wait_download(&ds[1], "f.bin", DOWNLOAD_TIMEOUT, complete);
    assert!(bytes_done(&x) == 10 * MIB as u64);
    assert_eq!(sha1_file(&dest.join("f.bin")), sha);
}

#[test]
fn a_downloader_serves_its_verified_pieces() {
    let net = Net::start();
    let ds = swarm(
        &net,
        &[("a", &["--max-upload-rate", "2M"]), ("b", &[]), ("c", &[])],
    );
    let src = net.mkdir("src");
    let f = src.join("f.bin");
    let sha = random_file(&f, 12 * MIB);
    ds[0].ok(&["upload_file", p(&f), "g"]);
    let (db, dc) = (net.mkdir("dl-b"), net.mkdir("dl-c"));
    ds[1].ok(&["download_file", "--detach", "g", "f.bin", p(&db)]);
    wait_download(&ds[1], "f.bin", DOWNLOAD_TIMEOUT, |x| {
        bytes_done(x) >= 2 * MIB as u64
    });
    // b is not a holder yet, but serves what it verified.
    assert_eq!(ds[2].file("g", "f.bin").expect("listed")["holders"], 1);
    ds[2].ok(&["download_file", "--detach", "g", "f.bin", p(&dc)]);
    let x = wait_download(&ds[2], "f.bin", DOWNLOAD_TIMEOUT, complete);
    assert!(
        peers_with_bytes(&x).iter().any(|u| u == "b"),
        "c got nothing from b: {x}"
    );
    assert_eq!(sha1_file(&dc.join("f.bin")), sha);
    wait_download(&ds[1], "f.bin", DOWNLOAD_TIMEOUT, complete);
    assert_eq!(sha1_file(&db.join("f.bin")), sha);
    assert_eq!(ds[0].file("g", "f.bin").expect("listed")["holders"], 3);
}

#[test]
fn refusals_and_edge_cases() {
    let started = Instant::now();
    let net = Net::start();
    let ds = swarm(&net, &[("a", &["--max-upload-rate", "1M"]), ("b", &[])]);
    let (a, b) = (&ds[0], &ds[1]);
    let src = net.mkdir("src");
    let f = src.join("f.bin");
    let sha = random_file(&f, 6 * MIB);
    a.ok(&["upload_file", p(&f), "g"]);
    let empty = src.join("empty");
    std::fs::write(&empty, b"").unwrap();
    a.ok(&["upload_file", p(&empty), "g"]);

    // The final path exists: io, and it is left alone.
    let dest = net.mkdir("dl");
    std::fs::write(dest.join("f.bin"), b"mine").unwrap();
    b.err(&["download_file", "g", "f.bin", p(&dest)], "io");
    assert_eq!(std::fs::read(dest.join("f.bin")).unwrap(), b"mine");
    let link = dest.join("link");
    std::os::unix::fs::symlink("/nonexistent/target", &link).unwrap();
    b.err(&["download_file", "g", "f.bin", p(&link)], "io");
    assert!(!dest.join("f.bin.part").exists() && !dest.join("link.part").exists());
    std::fs::remove_file(dest.join("f.bin")).unwrap();

    // A name that would escape the destination is not a file name.
    let out = b.ctl(&["download_file", "g", "../f.bin", p(&dest)]);
    assert_ne!(out.status, 0, "{out:?}");
    if out.status == 1 {
        assert_eq!(out.code(), "invalid_argument");
    }

    // An empty file.
    b.ok(&["download_file", "g", "empty", p(&dest)]);
    assert_eq!(sha1_file(&dest.join("empty")), EMPTY_SHA1);

    // Twice the same download: invalid_argument while the first runs.
    let other = net.mkdir("dl2");
    b.ok(&["download_file", "--detach", "g", "f.bin", p(&dest)]);
    b.err(
        &["download_file", "g", "f.bin", p(&other)],
        "invalid_argument",
    );
    let x = wait_download(b, "f.bin", DOWNLOAD_TIMEOUT, complete);
    assert_eq!(sha1_file(&dest.join("f.bin")), sha, "{x}");
    let mut names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["empty", "f.bin", "link"], "no .part left behind");
    assert!(std::fs::read_dir(&other).unwrap().next().is_none());

    // Nobody holding it online: no_holders_online, nothing left behind.
    let g = src.join("g.bin");
    random_file(&g, MIB);
    a.ok(&["upload_file", p(&g), "g"]);
    a.ok(&["logout"]);
    assert!(wait_until(SETTLE_TIMEOUT, || b
        .file("g", "g.bin")
        .is_some_and(|f| f["online"] == 0)));
    b.err(
        &["download_file", "g", "g.bin", p(&other)],
        "no_holders_online",
    );
    assert!(std::fs::read_dir(&other).unwrap().next().is_none());
    assert!(download(b, "g.bin").is_none());
    let records: Vec<_> = std::fs::read_dir(b.home.join("downloads"))
        .map(|r| r.filter_map(|e| e.ok()).collect())
        .unwrap_or_default();
    assert!(records.is_empty(), "resume records left: {records:?}");
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn ctrl_c_in_p2pctl_leaves_the_download_running() {
    let net = Net::start();
    let ds = swarm(&net, &[("a", &["--max-upload-rate", "2M"]), ("b", &[])]);
    let src = net.mkdir("src");
    let f = src.join("f.bin");
    let sha = random_file(&f, 8 * MIB);
    ds[0].ok(&["upload_file", p(&f), "g"]);
    let dest = net.mkdir("dl");
    // A waiting (not detached) download, as a user runs it in a shell.
    let mut child = std::process::Command::new(blackbox::bin("p2pctl"))
        .arg("--home")
        .arg(&ds[1].home)
        .args(["download_file", "g", "f.bin", p(&dest)])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn p2pctl");
    wait_download(&ds[1], "f.bin", DOWNLOAD_TIMEOUT, |x| bytes_done(x) > 0);
    blackbox::send_signal(child.id(), libc::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait p2pctl") {
            break s;
        }
        assert!(Instant::now() < deadline, "p2pctl ignored SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("p2pctl output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    assert!(stderr.contains("continues"), "stderr: {stderr}");
    let x = wait_download(&ds[1], "f.bin", DOWNLOAD_TIMEOUT, complete);
    assert_eq!(sha1_file(&dest.join("f.bin")), sha, "{x}");
}

#[test]
fn a_flash_crowd_trades_instead_of_asking_the_seeder_again() {
    // One seeder, four downloaders started together, every upload capped:
    // the seeder's upload is what limits the crowd, so what matters is that
    // it sends each piece about once and the downloaders trade the rest.
    // Left to pick freely they asked it for the same pieces: 1.9 copies for
    // four downloaders, 3.4 for twelve (`bench/flashcrowd.sh`).
    let net = Net::start();
    let cap: &[&str] = &["--max-upload-rate", "4M"];
    let names = ["a", "b", "c", "d", "e"];
    let spec: Vec<(&str, &[&str])> = names.iter().map(|n| (*n, cap)).collect();
    let ds = swarm(&net, &spec);
    let src = net.mkdir("src");
    let f = src.join("crowd.bin");
    let size = 16 * MIB;
    let sha = random_file(&f, size);
    ds[0].ok(&["upload_file", p(&f), "g"]);
    let before = uploaded(&ds[0]);
    let dests: Vec<_> = names[1..]
        .iter()
        .map(|n| net.mkdir(&format!("dl-{n}")))
        .collect();
    for (d, dest) in ds[1..].iter().zip(&dests) {
        d.ok(&["download_file", "--detach", "g", "crowd.bin", p(dest)]);
    }
    for (d, dest) in ds[1..].iter().zip(&dests) {
        let x = wait_download(d, "crowd.bin", DOWNLOAD_TIMEOUT, complete);
        assert_eq!(sha1_file(&dest.join("crowd.bin")), sha, "{}: {x}", d.name);
        assert!(
            peers_with_bytes(&x).iter().any(|u| u != "a"),
            "{} got nothing from the other downloaders: {x}",
            d.name
        );
    }
    let copies = (uploaded(&ds[0]) - before) as f64 / size as f64;
    eprintln!("the seeder sent {copies:.2} copies");
    assert!(
        copies <= 1.5,
        "the seeder sent {copies:.2} copies of the file to four downloaders"
    );
}
