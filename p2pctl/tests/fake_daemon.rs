//! p2pctl end to end against a fake p2pd: a local-socket listener in a temp
//! home that records the request and answers canned [`CtlReply`] frames.
//! Checks what scripts rely on: exit statuses 0/1/2/3/130, the `--json`
//! documents, the `error:` line, progress frames never reaching stdout.

use interprocess::local_socket::tokio::{prelude::*, Stream};
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use proto::ctl::{CtlHello, CtlReply, CtlRequest, GroupInfo, Progress, StatusInfo};
use proto::frame::{read_json, write_json, MAX_CTL_FRAME_BYTES};
use proto::{ErrorCode, PROTOCOL_VERSION};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// Every test finishes well within this, or fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A short directory under /tmp (socket paths are limited to ~100 bytes),
/// removed on drop.
struct TempHome(PathBuf);

impl TempHome {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/tmp/p2pctl-t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp home");
        TempHome(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the fake daemon does after reading the request.
enum Script {
    /// Write these frames, then close.
    Reply(Vec<CtlReply>),
    /// Write these frames, then hold the connection open until the client
    /// goes away.
    ReplyThenHold(Vec<CtlReply>),
}

/// Serve exactly one connection on `home/p2pd.sock`; the request it got
/// arrives on the returned channel.
fn fake_daemon(home: &Path, script: Script) -> oneshot::Receiver<CtlHello> {
    let name = home
        .join("p2pd.sock")
        .to_fs_name::<GenericFilePath>()
        .expect("socket name");
    let listener = ListenerOptions::new()
        .name(name)
        .create_tokio()
        .expect("listen on the fake socket");
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut conn: Stream = listener.accept().await.expect("accept");
        let hello: CtlHello = read_json(&mut conn, MAX_CTL_FRAME_BYTES)
            .await
            .expect("read hello")
            .expect("a hello frame");
        let _ = tx.send(hello);
        let (frames, hold) = match script {
            Script::Reply(f) => (f, false),
            Script::ReplyThenHold(f) => (f, true),
        };
        for frame in &frames {
            if write_json(&mut conn, frame, MAX_CTL_FRAME_BYTES)
                .await
                .is_err()
            {
                return;
            }
        }
        if hold {
            // Until the client closes its end.
            let _: Result<Option<Vec<u8>>, _> =
                proto::frame::read_frame(&mut conn, MAX_CTL_FRAME_BYTES).await;
        } else {
            let _ = conn.shutdown().await;
        }
        drop(listener);
    });
    rx
}

fn p2pctl(home: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_p2pctl"));
    cmd.arg("--home")
        .arg(home)
        .args(args)
        .env_remove("P2P_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(mut cmd: tokio::process::Command) -> Output {
    tokio::time::timeout(TEST_TIMEOUT, cmd.output())
        .await
        .expect("p2pctl finished in time")
        .expect("p2pctl runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

fn one_json(o: &Output) -> Value {
    let text = stdout(o);
    assert_eq!(text.lines().count(), 1, "one document: {text:?}");
    serde_json::from_str(&text).expect("stdout is JSON")
}

fn status_info() -> StatusInfo {
    StatusInfo {
        user: Some("alice".parse().unwrap()),
        tracker: Some("127.0.0.1:7600".into()),
        listen: "127.0.0.1:40001".into(),
        shares: 2,
        downloads: 0,
        uploaded: 0,
    }
}

async fn received(rx: oneshot::Receiver<CtlHello>) -> CtlRequest {
    let hello = tokio::time::timeout(TEST_TIMEOUT, rx)
        .await
        .expect("daemon got a request in time")
        .expect("daemon got a request");
    assert_eq!(hello.version, PROTOCOL_VERSION);
    hello.request
}

#[tokio::test(flavor = "multi_thread")]
async fn status_human_and_json() {
    let home = TempHome::new();
    let rx = fake_daemon(
        home.path(),
        Script::Reply(vec![CtlReply::Status(status_info())]),
    );
    let o = run(p2pctl(home.path(), &["status"])).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "user: alice\ntracker: 127.0.0.1:7600\nlisten: 127.0.0.1:40001\nshares: 2\ndownloads: 0\nuploaded: 0\n"
    );
    assert_eq!(received(rx).await, CtlRequest::Status);

    let rx = fake_daemon(
        home.path(),
        Script::Reply(vec![CtlReply::Status(StatusInfo {
            user: None,
            ..status_info()
        })]),
    );
    // --json after the command, as a global flag.
    let o = run(p2pctl(home.path(), &["status", "--json"])).await;
    assert_eq!(o.status.code(), Some(0));
    let v = one_json(&o);
    assert_eq!(v["user"], Value::Null);
    assert_eq!(v["listen"], "127.0.0.1:40001");
    assert_eq!(v["shares"], 2);
    received(rx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_is_tab_separated_without_header_when_piped() {
    let home = TempHome::new();
    let group = |g: &str, o: &str, m| GroupInfo {
        group: g.parse().unwrap(),
        owner: o.parse().unwrap(),
        members: m,
    };
    let groups = vec![group("g1", "alice", 2), group("g2", "bob", 1)];
    let rx = fake_daemon(
        home.path(),
        Script::Reply(vec![CtlReply::Groups {
            groups: groups.clone(),
        }]),
    );
    let o = run(p2pctl(home.path(), &["list_groups"])).await;
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "g1\talice\t2\ng2\tbob\t1\n");
    received(rx).await;

    let rx = fake_daemon(
        home.path(),
        Script::Reply(vec![CtlReply::Groups { groups }]),
    );
    let o = run(p2pctl(home.path(), &["--json", "list_groups"])).await;
    assert_eq!(
        one_json(&o),
        json!([{"group": "g1", "owner": "alice", "members": 2},
               {"group": "g2", "owner": "bob", "members": 1}])
    );
    received(rx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusal_exits_1_with_error_line_and_json_document() {
    let home = TempHome::new();
    let rx = fake_daemon(
        home.path(),
        Script::Reply(vec![CtlReply::error(
            ErrorCode::UserExists,
            "user alice already exists",
        )]),
    );
    let o = run(p2pctl(
        home.path(),
        &["--json", "create_user", "alice", "pw"],
    ))
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        one_json(&o),
        json!({"ok": false, "code": "user_exists", "error": "user alice already exists"})
    );
    assert_eq!(stderr(&o), "error: user alice already exists\n");
    match received(rx).await {
        CtlRequest::CreateUser { user, password } => {
            assert_eq!(user.as_str(), "alice");
            assert_eq!(password, "pw");
        }
        other => panic!("{other:?}"),
    }

    let rx = fake_daemon(
        home.path(),
        Script::Reply(vec![CtlReply::error(ErrorCode::NoSuchGroup, "no group g9")]),
    );
    let o = run(p2pctl(home.path(), &["join_group", "g9"])).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), "error: no group g9\n");
    received(rx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn action_success_prints_message() {
    let home = TempHome::new();
    let ok = || CtlReply::Ok {
        message: "group g1 created".into(),
    };
    let rx = fake_daemon(home.path(), Script::Reply(vec![ok()]));
    let o = run(p2pctl(home.path(), &["create_group", "g1"])).await;
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "group g1 created\n");
    assert_eq!(stderr(&o), "");
    received(rx).await;

    let rx = fake_daemon(home.path(), Script::Reply(vec![ok()]));
    let o = run(p2pctl(home.path(), &["create_group", "g1", "--json"])).await;
    assert_eq!(
        one_json(&o),
        json!({"ok": true, "message": "group g1 created"})
    );
    received(rx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_daemon_exits_3_and_says_how_to_start_one() {
    let home = TempHome::new();
    let o = run(p2pctl(home.path(), &["status"])).await;
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(err.starts_with("error: no p2pd answers on "), "{err}");
    assert!(
        err.contains(&format!(
            "start one with: p2pd --home {}",
            home.path().display()
        )),
        "{err}"
    );
    assert_eq!(stdout(&o), "");

    let o = run(p2pctl(home.path(), &["--json", "list_groups"])).await;
    assert_eq!(o.status.code(), Some(3));
    let v = one_json(&o);
    assert_eq!(v["ok"], false);
    assert_eq!(v["code"], "io");

    // A stale socket file nobody listens on: still exit 3.
    let stale = home.path().join("stale");
    std::fs::create_dir(&stale).unwrap();
    {
        let name = stale
            .join("p2pd.sock")
            .to_fs_name::<GenericFilePath>()
            .unwrap();
        let listener = ListenerOptions::new()
            .name(name)
            .reclaim_name(false)
            .create_tokio()
            .unwrap();
        drop(listener);
    }
    assert!(stale.join("p2pd.sock").exists());
    let o = run(p2pctl(&stale, &["status"])).await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));

    // A password is not asked for when nobody will read it.
    let o = run(p2pctl(home.path(), &["login", "alice"])).await;
    assert_eq!(o.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_values_exit_1_before_contacting_the_daemon() {
    let home = TempHome::new();
    for args in [
        &["--json", "create_group", "../x"][..],
        &["--json", "accept_request", "g1", "a b"],
        &["--json", "download_file", "g1", "../etc/passwd", "/tmp"],
        &["--json", "stop_share", "g1", ".."],
    ] {
        let o = run(p2pctl(home.path(), args)).await;
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let v = one_json(&o);
        assert_eq!(v["code"], "invalid_argument", "{args:?}");
        assert!(stderr(&o).starts_with("error: "), "{args:?}");
    }
    let huge = "x".repeat(100_000);
    let o = run(p2pctl(home.path(), &["join_group", &huge])).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).len() < 300, "the error does not echo huge input");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2_and_help_exits_0() {
    let home = TempHome::new();
    for args in [
        &["no_such_command"][..],
        &["create_group"],
        &["create_group", "g", "extra"],
        &["status", "--bogus"],
        &[],
    ] {
        let o = run(p2pctl(home.path(), args)).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!stderr(&o).is_empty());
    }
    for args in [
        &["--help"][..],
        &["--version"],
        &["download_file", "--help"],
    ] {
        let o = run(p2pctl(home.path(), args)).await;
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(!stdout(&o).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn password_from_stdin() {
    let home = TempHome::new();
    for args in [&["login", "alice", "-"][..], &["login", "alice"]] {
        let rx = fake_daemon(
            home.path(),
            Script::Reply(vec![CtlReply::Ok {
                message: "logged in as alice".into(),
            }]),
        );
        let mut cmd = p2pctl(home.path(), args);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"s3cret pw\nignored\n").await.unwrap();
        drop(stdin);
        let o = tokio::time::timeout(TEST_TIMEOUT, child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        match received(rx).await {
            CtlRequest::Login { password, .. } => assert_eq!(password, "s3cret pw"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_are_made_absolute_against_p2pctl_cwd() {
    let home = TempHome::new();
    let work = TempHome::new();
    let ok = || CtlReply::Ok {
        message: "ok".into(),
    };
    let rx = fake_daemon(home.path(), Script::Reply(vec![ok()]));
    let mut cmd = p2pctl(home.path(), &["upload_file", "sub/f.bin", "g1"]);
    cmd.current_dir(work.path());
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    match received(rx).await {
        CtlRequest::UploadFile { path, group } => {
            assert_eq!(path, work.path().join("sub/f.bin"));
            assert_eq!(group.as_str(), "g1");
        }
        other => panic!("{other:?}"),
    }

    let rx = fake_daemon(home.path(), Script::Reply(vec![ok()]));
    let mut cmd = p2pctl(
        home.path(),
        &["download_file", "g1", "my file.iso", "dl", "--detach"],
    );
    cmd.current_dir(work.path());
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(0));
    match received(rx).await {
        CtlRequest::DownloadFile {
            name, dest, detach, ..
        } => {
            assert_eq!(name.as_str(), "my file.iso");
            assert_eq!(dest, work.path().join("dl"));
            assert!(detach);
        }
        other => panic!("{other:?}"),
    }
}

fn tick(done: u64) -> CtlReply {
    CtlReply::Progress(Progress {
        bytes_done: done,
        size: 100,
        peers: 1,
        rate: 10,
        paused: false,
        reason: None,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_frames_never_reach_stdout() {
    let home = TempHome::new();
    let frames = || {
        vec![
            tick(0),
            tick(50),
            tick(100),
            CtlReply::Ok {
                message: "downloaded f.bin".into(),
            },
        ]
    };
    let rx = fake_daemon(home.path(), Script::Reply(frames()));
    let o = run(p2pctl(
        home.path(),
        &["--json", "download_file", "g1", "f.bin", "/tmp"],
    ))
    .await;
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        one_json(&o),
        json!({"ok": true, "message": "downloaded f.bin"})
    );
    match received(rx).await {
        CtlRequest::DownloadFile { detach, .. } => assert!(!detach),
        other => panic!("{other:?}"),
    }

    let rx = fake_daemon(home.path(), Script::Reply(frames()));
    let o = run(p2pctl(
        home.path(),
        &["download_file", "g1", "f.bin", "/tmp"],
    ))
    .await;
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "downloaded f.bin\n");
    assert_eq!(stderr(&o), "", "no bar when stderr is not a terminal");
    received(rx).await;

    // A streamed failure is still a failure.
    let rx = fake_daemon(
        home.path(),
        Script::Reply(vec![
            tick(10),
            CtlReply::error(ErrorCode::Integrity, "whole-file SHA-1 mismatch"),
        ]),
    );
    let o = run(p2pctl(
        home.path(),
        &["--json", "download_file", "g1", "f.bin", "/tmp"],
    ))
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(one_json(&o)["code"], "integrity");
    received(rx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_closing_without_answer_is_io() {
    let home = TempHome::new();
    let rx = fake_daemon(home.path(), Script::Reply(vec![tick(1)]));
    let o = run(p2pctl(home.path(), &["--json", "list_groups"])).await;
    assert_eq!(o.status.code(), Some(1));
    let v = one_json(&o);
    assert_eq!(v["code"], "io");
    assert!(stderr(&o).starts_with("error: "));
    received(rx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn home_from_env() {
    let home = TempHome::new();
    let rx = fake_daemon(
        home.path(),
        Script::Reply(vec![CtlReply::Requests {
            users: vec!["bob".parse().unwrap()],
        }]),
    );
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_p2pctl"));
    cmd.args(["--json", "list_requests", "g1"])
        .env("P2P_HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "[\"bob\"]\n");
    received(rx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_detaches_with_exit_130() {
    let home = TempHome::new();
    let rx = fake_daemon(home.path(), Script::ReplyThenHold(vec![tick(10)]));
    let child = p2pctl(home.path(), &["download_file", "g1", "f.bin", "/tmp"])
        .spawn()
        .unwrap();
    received(rx).await;
    // The request is sent, so p2pctl waits in its select with the handler set.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = tokio::time::timeout(TEST_TIMEOUT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.status.code(), Some(130));
    assert!(
        stderr(&o).contains("download continues in the daemon; see p2pctl show_downloads"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");
}
