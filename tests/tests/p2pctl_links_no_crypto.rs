//! p2pctl never hashes, so it must not link the hashing code: that lives
//! in the `p2p-sha1` crate (`proto/sha1/`), the only user of AWS-LC next to
//! the tracker's ticket HMAC, and p2pctl depends on `proto` alone. Two
//! checks:
//!
//! - the dependency graph: `cargo tree -p p2pctl -e normal` has neither
//!   `p2p-sha1` nor any `aws-lc` package.
//! - the binary itself, as last built (`target/<profile>/p2pctl`): no
//!   `aws_lc` symbol. Skipped, saying so, if the binary has not been built.

use blackbox::wait_until;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CARGO_TREE_TIMEOUT: Duration = Duration::from_secs(60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace")
        .to_path_buf()
}

/// A note that shows even though the test harness captures output.
fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

#[test]
fn p2pctl_depends_on_no_crypto() {
    // Output to files, not pipes: nothing blocks while we poll.
    let stdout = tempfile::NamedTempFile::new().expect("temp file");
    let stderr = tempfile::NamedTempFile::new().expect("temp file");
    let mut child = Command::new(env!("CARGO"))
        // --locked: never rewrite Cargo.lock; --offline: no network.
        .args(["tree", "--offline", "--locked", "-p", "p2pctl"])
        .args(["-e", "normal", "--prefix", "none", "-f", "{p} [{f}]"])
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(stdout.reopen().expect("reopen temp file"))
        .stderr(stderr.reopen().expect("reopen temp file"))
        .spawn()
        .expect("run cargo tree");
    let mut status = None;
    let finished = wait_until(CARGO_TREE_TIMEOUT, || {
        status = child.try_wait().expect("wait for cargo tree");
        status.is_some()
    });
    if !finished {
        // Child::kill signals this child's PID only.
        let _ = child.kill();
        let _ = child.wait();
        panic!("cargo tree still running after {CARGO_TREE_TIMEOUT:?}");
    }
    let read = |f: &tempfile::NamedTempFile| std::fs::read_to_string(f.path()).unwrap_or_default();
    let tree = read(&stdout);
    assert!(
        status.is_some_and(|s| s.success()),
        "cargo tree failed: {}",
        read(&stderr)
    );

    let crypto: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("aws-lc") || l.starts_with("p2p-sha1"))
        .collect();
    assert!(
        crypto.is_empty(),
        "p2pctl depends on hashing code: {crypto:?}\n{tree}"
    );
    assert!(
        tree.lines().any(|l| l.starts_with("proto ")),
        "p2pctl should depend on proto:\n{tree}"
    );
}

/// Path of the last-built p2pctl, in the profile these tests were built
/// with (as `blackbox::bin` finds it, without its panic).
fn built_p2pctl() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    };
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile).join("p2pctl")
}

#[test]
fn built_p2pctl_has_no_aws_lc_symbols() {
    let path = built_p2pctl();
    let Ok(bytes) = std::fs::read(&path) else {
        note(&format!(
            "SKIPPED built_p2pctl_has_no_aws_lc_symbols: no {} \
             (run `cargo build --workspace --bins`, add --release for release tests)",
            path.display()
        ));
        return;
    };
    // Symbol names (`aws_lc_0_47_0_*`, `aws_lc_rs::*`, `aws_lc_sys::*`) sit
    // in the symbol table as plain bytes; a plain search needs no tool.
    let needle = b"aws_lc";
    let mut hits = 0usize;
    let mut examples: Vec<String> = Vec::new();
    for at in (0..bytes.len()).filter(|&at| bytes[at..].starts_with(needle)) {
        hits += 1;
        let len = bytes[at..]
            .iter()
            .take(80)
            .take_while(|b| b.is_ascii_graphic())
            .count();
        let name = String::from_utf8_lossy(&bytes[at..at + len]).into_owned();
        if examples.len() < 5 && !examples.contains(&name) {
            examples.push(name);
        }
    }
    assert!(
        hits == 0,
        "{} links AWS-LC ({} hits, e.g. {:?}); p2pctl never hashes. \
         See `nm -C {} | grep -i aws_lc` and `cargo tree -p p2pctl -i aws-lc-rs`",
        path.display(),
        hits,
        examples,
        path.display()
    );
}
