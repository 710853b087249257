//! A running daemon: its start-up and shut-down sequence, and the one
//! place where its parts are built and wired together.
//!
//! Start: open and lock HOME → load session and shares → bind the peer
//! listener (its port is advertised) → start the tracker link → bind the
//! control socket → spawn presence (heartbeats), the downloads' session
//! follower, the peer listener and the control socket → serve until the
//! shutdown token is cancelled → stop every task within
//! [`SHUTDOWN_DEADLINE`].

use crate::commands::Commands;
use crate::downloads::Downloads;
use crate::home::{Home, HomeError, SocketGuard};
use crate::options::Options;
use crate::presence::Presence;
use crate::session::SessionStore;
use crate::shares::{ShareSet, SharesError};
use crate::swarm::context::SwarmContext;
use crate::swarm::rate::RateLimiter;
use crate::swarm::serve_index::ServeIndex;
use crate::tracker_client::TrackerClient;
use crate::tracker_link::{Setup, TrackerLink};
use crate::trust::Trust;
use p2p_link::{Endpoint, KeyPairDoc};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a graceful stop may take before the process gives up on it.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Shares(#[from] SharesError),
    #[error("cannot bind the peer listener on {addr}: {source}")]
    BindPeer {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create the control socket {path}: {source}")]
    BindControl {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make this run's link key: {0}")]
    LinkKey(p2p_link::KeyError),
    #[error("some tasks were still running {0:?} after the stop began")]
    StopTimedOut(Duration),
}

/// Runs the daemon until `shutdown` is cancelled.
///
/// # Errors
/// Start-up failures (home locked or unusable, a port or socket that cannot
/// be bound), or a stop that overran [`SHUTDOWN_DEADLINE`].
pub async fn run(options: Options, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let home = Home::open(&options.home)?;
    tracing::info!(home = %home.dir().display(), "home locked");
    let tasks = TaskTracker::new();
    // Every connection and open file is a descriptor; a low soft limit
    // would make a daemon with many downloads fail on accept or open.
    match proto::admission::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(?limit, "open-files limit"),
        Err(e) => tracing::warn!("cannot raise the open-files limit: {e}"),
    }

    let bind_err = |source| DaemonError::BindPeer {
        addr: options.listen,
        source,
    };
    let peer_listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(bind_err)?;
    let peer_local = peer_listener.local_addr().map_err(bind_err)?;
    tracing::info!(addr = %peer_local, "peer listener bound");

    // One key per run: it authenticates every link of this daemon, and
    // tickets name it.
    let link_key = KeyPairDoc::generate().map_err(DaemonError::LinkKey)?;
    let endpoint = Endpoint::new(&link_key);
    let setup = Setup {
        trackers: options.trackers.clone(),
        endpoint: endpoint.clone(),
        trust: Trust::new(options.fingerprint, home.known_cluster_path()),
    };
    let link = TrackerLink::start(setup, &tasks, shutdown.child_token());
    let sessions = Arc::new(SessionStore::load(home.session_path()));
    let client = TrackerClient::new(link, sessions);
    let shares = Arc::new(ShareSet::load(home.shares_path())?);

    let socket_path = home.socket_path();
    let ctl_listener =
        crate::ipc::bind(&socket_path).map_err(|source| DaemonError::BindControl {
            path: socket_path.clone(),
            source,
        })?;
    // Removes the socket file however this function ends from here on.
    let _socket_guard = SocketGuard(socket_path.clone());
    tracing::info!(socket = %socket_path.display(), "control socket ready");

    let uploaded = Arc::new(AtomicU64::new(0));
    let swarm = Arc::new(SwarmContext {
        client: client.clone(),
        shares: shares.clone(),
        serving: ServeIndex::new(shares.clone()),
        fetchers: Arc::default(),
        upload_limit: RateLimiter::new(options.max_upload_rate),
        download_limit: RateLimiter::new(options.max_download_rate),
        uploaded: uploaded.clone(),
        records_dir: home.downloads_dir(),
        endpoint,
        tasks: tasks.clone(),
    });
    let presence = Arc::new(Presence::new(
        client.clone(),
        shares.clone(),
        (options.advertise, peer_local),
        (tasks.clone(), shutdown.child_token()),
    ));
    let downloads = Downloads::new(swarm.clone(), shutdown.child_token());
    let commands = Arc::new(Commands::new(
        client,
        shares,
        presence.clone(),
        downloads.clone(),
        uploaded,
        home.dir().to_path_buf(),
        shutdown.clone(),
    ));

    tasks.spawn(presence.run(shutdown.child_token()));
    tasks.spawn(downloads.follow_session());
    tasks.spawn(crate::peer_listener::run(
        peer_listener,
        swarm,
        shutdown.child_token(),
    ));
    tasks.spawn(crate::ipc::run(
        ctl_listener,
        commands,
        tasks.clone(),
        shutdown.child_token(),
    ));

    // Sockets bound and the home ready; the tracker may still be down
    // (login waits for it), which is no reason to hold systemd back.
    proto::service::notify_ready();
    shutdown.cancelled().await;
    tracing::info!("stopping");
    proto::service::notify_stopping();
    tasks.close();
    match tokio::time::timeout(SHUTDOWN_DEADLINE, tasks.wait()).await {
        Ok(()) => {
            tracing::info!("stopped");
            Ok(())
        }
        Err(_) => Err(DaemonError::StopTimedOut(SHUTDOWN_DEADLINE)),
    }
}

#[cfg(test)]
mod tests {
    //! The whole daemon in-process: a fake tracker, the real control socket.

    use super::*;
    use crate::tracker_link::fake;
    use interprocess::local_socket::tokio::{prelude::*, Stream};
    use interprocess::local_socket::GenericFilePath;
    use proto::ctl::{CtlHello, CtlReply, CtlRequest};
    use proto::frame::{read_json, write_json, MAX_CTL_FRAME_BYTES};
    use proto::tracker::{SessionToken, TrackerReply, TrackerRequest};
    use proto::{ErrorCode, PROTOCOL_VERSION};
    use std::sync::Mutex;

    async fn ctl(sock: &std::path::Path, request: CtlRequest) -> Vec<CtlReply> {
        let name = sock.to_fs_name::<GenericFilePath>().unwrap();
        let mut s = Stream::connect(name).await.unwrap();
        let hello = CtlHello {
            version: PROTOCOL_VERSION,
            request,
        };
        write_json(&mut s, &hello, MAX_CTL_FRAME_BYTES)
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(r) = read_json::<CtlReply, _>(&mut s, MAX_CTL_FRAME_BYTES)
            .await
            .unwrap()
        {
            let last = r.is_final();
            out.push(r);
            if last {
                break;
            }
        }
        out
    }

    fn status_of(replies: Vec<CtlReply>) -> proto::ctl::StatusInfo {
        match replies.into_iter().last() {
            Some(CtlReply::Status(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn login_upload_logout_against_a_fake_tracker() {
        let calls: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = calls.clone();
        let stop_tracker = CancellationToken::new();
        let tracker = fake::spawn(
            Arc::new(move |req| {
                let op = serde_json::to_value(req).unwrap()["op"]
                    .as_str()
                    .unwrap()
                    .to_string();
                log.lock().unwrap().push(op);
                Ok(match req {
                    TrackerRequest::Login { .. } => TrackerReply::LoggedIn {
                        token: SessionToken("tok".into()),
                    },
                    TrackerRequest::Heartbeat { .. } => TrackerReply::Alive {
                        user: "alice".parse().unwrap(),
                        recheck: vec![],
                    },
                    TrackerRequest::ListFiles { .. } => TrackerReply::Files { files: vec![] },
                    _ => TrackerReply::Done {
                        message: "done".into(),
                    },
                })
            }),
            stop_tracker.clone(),
        )
        .await;
        let t = tempfile::Builder::new()
            .prefix("p2d")
            .tempdir_in("/tmp")
            .unwrap();
        let home = t.path().join("h");
        let options = Options {
            home: home.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            trackers: vec![tracker],
            ..Options::default()
        };
        let stop = CancellationToken::new();
        let daemon = tokio::spawn(run(options, stop.clone()));
        let sock = home.join("p2pd.sock");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !sock.exists() {
            assert!(tokio::time::Instant::now() < deadline, "no socket");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let st = status_of(ctl(&sock, CtlRequest::Status).await);
        assert_eq!(st.user, None);
        let r = ctl(&sock, CtlRequest::ListGroups).await;
        assert!(matches!(&r[0], CtlReply::Error(e) if e.code == ErrorCode::NotLoggedIn));

        let login = CtlRequest::Login {
            user: "alice".parse().unwrap(),
            password: "pw".into(),
        };
        let r = ctl(&sock, login.clone()).await;
        assert!(matches!(&r[0], CtlReply::Ok { .. }), "{r:?}");
        let r = ctl(&sock, login).await;
        assert!(matches!(&r[0], CtlReply::Error(e) if e.code == ErrorCode::AlreadyLoggedIn));

        let file = t.path().join("a file.bin");
        std::fs::write(&file, vec![7u8; 3 * 512 * 1024 + 1]).unwrap();
        let r = ctl(
            &sock,
            CtlRequest::UploadFile {
                path: file.clone(),
                group: "g1".parse().unwrap(),
            },
        )
        .await;
        match r.last() {
            Some(CtlReply::Ok { message }) => {
                assert!(
                    message.contains("a file.bin in g1 (1.50 MiB, 4 pieces)"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        let st = status_of(ctl(&sock, CtlRequest::Status).await);
        assert_eq!(st.user.as_ref().map(|u| u.as_str()), Some("alice"));
        assert_eq!(st.shares, 1);
        assert_eq!(st.tracker, Some(tracker.to_string()));

        let r = ctl(&sock, CtlRequest::Logout).await;
        assert!(matches!(&r[0], CtlReply::Ok { .. }), "{r:?}");
        assert!(!home.join("session.json").exists());
        assert!(home.join("shares.json").exists(), "shares outlive logout");

        // Login again: heartbeat first, then the share is re-announced.
        calls.lock().unwrap().clear();
        let r = ctl(
            &sock,
            CtlRequest::Login {
                user: "alice".parse().unwrap(),
                password: "pw".into(),
            },
        )
        .await;
        assert!(
            matches!(&r[0], CtlReply::Ok { message } if message.contains("1 file")),
            "{r:?}"
        );
        let seen = calls.lock().unwrap().clone();
        assert_eq!(
            &seen[..3],
            ["login", "heartbeat", "register_file"],
            "{seen:?}"
        );

        stop.cancel();
        daemon.await.unwrap().unwrap();
        assert!(!sock.exists(), "socket removed on stop");
        assert!(
            home.join("session.json").exists(),
            "session survives a stop"
        );
        stop_tracker.cancel();
    }
}
