//! Being online: heartbeats, the advertised peer address, and resuming a
//! session on each tracker connection.
//!
//! Resuming a session means, in this order:
//!
//! 1. `Heartbeat` (the tracker marks the user online at our peer address);
//! 2. `RegisterFile` for every share of the user (idempotent), dropping a
//!    share whose file vanished or changed, or that the tracker refuses;
//!    except shares the heartbeat's answer names as reported corrupt, which
//!    are re-hashed first ([`Rechecker`]).
//!
//! It happens once per (tracker connection, session): after login, at
//! daemon start with a saved session, and after every reconnect. Between
//! resumes, one heartbeat every [`HEARTBEAT_INTERVAL`]. A heartbeat
//! answered `not_logged_in` ends the local session (the tracker client
//! applies that rule).

use crate::recheck::Rechecker;
use crate::shares::{forget_stale, ShareSet};
use crate::tracker_client::{SessionClient, TrackerClient};
use proto::tracker::{SessionToken, SharedRef, HEARTBEAT_INTERVAL};
use proto::{ErrorCode, WireError};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Heartbeats and session resumes of this daemon.
#[derive(Debug)]
pub struct Presence {
    client: TrackerClient,
    shares: Arc<ShareSet>,
    recheck: Arc<Rechecker>,
    addr: PeerAddr,
    /// Serialises resumes, so two triggers (login, reconnect) do not
    /// announce the shares twice at once.
    gate: tokio::sync::Mutex<()>,
    /// (connection generation, session) last resumed completely.
    resumed: Mutex<Option<(u64, SessionToken)>>,
}

/// Where peers reach us: `--advertise`, else the local IP of the tracker
/// connection with the peer listener's port.
#[derive(Debug)]
struct PeerAddr {
    advertise: Option<SocketAddr>,
    listener: SocketAddr,
    /// The last address announced, shown by `status` while disconnected.
    last: Mutex<Option<SocketAddr>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Presence {
    /// Re-checks run on `tasks` until `stop`.
    pub fn new(
        client: TrackerClient,
        shares: Arc<ShareSet>,
        (advertise, listener): (Option<SocketAddr>, SocketAddr),
        (tasks, stop): (TaskTracker, CancellationToken),
    ) -> Presence {
        Presence {
            client,
            recheck: Arc::new(Rechecker::new(shares.clone(), tasks, stop)),
            shares,
            addr: PeerAddr {
                advertise,
                listener,
                last: Mutex::new(None),
            },
            gate: tokio::sync::Mutex::new(()),
            resumed: Mutex::new(None),
        }
    }

    /// The address announced to the tracker; `None` when neither
    /// `--advertise` nor a tracker connection gives one.
    pub fn advertised_addr(&self) -> Option<SocketAddr> {
        let a = &self.addr;
        let addr = a.advertise.or_else(|| {
            self.client
                .link()
                .local_ip()
                .map(|ip| SocketAddr::new(ip, a.listener.port()))
        });
        if addr.is_some() {
            *lock(&a.last) = addr;
        }
        addr
    }

    /// What `status` shows as `listen`: the advertised address, else the
    /// last one advertised, else the listener's own address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.advertised_addr()
            .or(*lock(&self.addr.last))
            .unwrap_or(self.addr.listener)
    }

    /// After a logout: the next session resumes from scratch.
    pub fn forget_resumed(&self) {
        *lock(&self.resumed) = None;
    }

    /// Keeps the session alive until `shutdown`: a heartbeat every
    /// [`HEARTBEAT_INTERVAL`], a resume after each (re)connection or new
    /// session.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut conn = self.client.link().subscribe();
        let mut session = self.client.sessions().subscribe();
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ticked = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => true,
                r = conn.changed() => { if r.is_err() { return } false }
                r = session.changed() => { if r.is_err() { return } false }
            };
            let Ok(s) = self.client.current() else {
                continue;
            };
            // A call can wait seconds for an absent tracker; the stop must not.
            let work = async {
                let resumed = self.resume(&s).await;
                if !resumed && ticked {
                    // Errors are logged inside; the next tick tries again.
                    let _ = self.heartbeat(&s).await;
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = work => {}
            }
        }
    }

    /// Resumes `session` on the current connection unless that was already
    /// done. Returns true if it did the work (no separate heartbeat needed).
    pub async fn resume(&self, session: &SessionClient) -> bool {
        let _gate = self.gate.lock().await;
        let Some(generation) = self
            .client
            .link()
            .subscribe()
            .borrow()
            .as_ref()
            .map(|c| c.generation())
        else {
            return false;
        };
        let key = (generation, session.session().token.clone());
        if lock(&self.resumed).as_ref() == Some(&key) {
            return false;
        }
        let Ok(recheck) = self.heartbeat(session).await else {
            return true;
        };
        if self.announce_shares(session, &recheck).await {
            *lock(&self.resumed) = Some(key);
        }
        true
    }

    /// Returns our shares reported corrupt (their re-checks started).
    async fn heartbeat(&self, session: &SessionClient) -> Result<Vec<SharedRef>, WireError> {
        let Some(peer_addr) = self.advertised_addr() else {
            return Err(WireError::new(
                ErrorCode::TrackerUnavailable,
                "not connected to a tracker",
            ));
        };
        let r = session.heartbeat(peer_addr).await;
        match &r {
            Ok(recheck) if !recheck.is_empty() => self.recheck.start(session, recheck.clone()),
            Ok(_) => {}
            Err(e) => tracing::debug!("heartbeat: {e}"),
        }
        r
    }

    /// Re-registers every share of the session's user but those reported
    /// corrupt (`recheck`: their re-check registers them if intact).
    /// Returns false if the tracker could not be reached (so the next
    /// reconnect tries again).
    async fn announce_shares(&self, session: &SessionClient, recheck: &[SharedRef]) -> bool {
        let mut announced = 0usize;
        for entry in self.shares.of_user(session.user()) {
            let file = SharedRef {
                group: entry.group.clone(),
                name: entry.name.clone(),
            };
            if recheck.contains(&file) || self.recheck.is_pending(session.user(), &file) {
                continue;
            }
            if let Some(why) = entry.staleness() {
                forget_stale(&self.shares, session, &entry, &why);
                continue;
            }
            let (group, meta) = (entry.group.clone(), entry.meta.clone());
            match session.register_file(group, meta).await {
                Ok(()) => announced += 1,
                Err(e) => match e.code {
                    ErrorCode::TrackerUnavailable => return false,
                    // The session ended; the client has forgotten it.
                    ErrorCode::NotLoggedIn => return true,
                    // The group is gone or we are no longer in it, or the
                    // name now holds other content: it cannot come back.
                    _ => {
                        tracing::warn!(
                            group = %entry.group, name = %entry.name,
                            "no longer sharing: the tracker refused it: {e}"
                        );
                        if let Err(e) =
                            self.shares
                                .remove(session.user(), &entry.group, &entry.name)
                        {
                            tracing::warn!("cannot update shares: {e}");
                        }
                    }
                },
            }
        }
        if announced > 0 {
            tracing::info!(user = %session.user(), announced, "shares announced to the tracker");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Session, SessionStore};
    use crate::shares::{FileStamp, ShareEntry};
    use crate::tracker_link::{fake, TrackerLink};
    use proto::tracker::{FileMeta, TrackerReply, TrackerRequest};
    use std::time::Duration;

    fn share(dir: &std::path::Path, name: &str) -> ShareEntry {
        let path = dir.join(name);
        std::fs::write(&path, name).unwrap();
        let stamp = FileStamp::read(&path).unwrap();
        ShareEntry {
            group: "g".parse().unwrap(),
            name: name.parse().unwrap(),
            path,
            size: stamp.size,
            mtime: stamp.mtime,
            meta: FileMeta {
                name: name.parse().unwrap(),
                size: stamp.size,
                sha1: p2p_sha1::of(name.as_bytes()),
                piece_size: proto::geometry::PIECE_SIZE_BYTES,
                pieces: vec![p2p_sha1::of(name.as_bytes())],
            },
        }
    }

    #[tokio::test]
    async fn resume_heartbeats_reannounces_and_drops_what_cannot_come_back() {
        let calls: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = calls.clone();
        let stop = CancellationToken::new();
        let addr = fake::spawn(
            Arc::new(move |req| {
                let what = match req {
                    TrackerRequest::Heartbeat { peer_addr, .. } => format!("heartbeat {peer_addr}"),
                    TrackerRequest::RegisterFile { meta, .. } => format!("register {}", meta.name),
                    TrackerRequest::StopShare { name, .. } => format!("stop {name}"),
                    other => format!("{other:?}"),
                };
                lock(&log).push(what.clone());
                if what == "register taken" {
                    return Err(WireError::new(ErrorCode::NameTaken, "other content"));
                }
                if what.starts_with("heartbeat") {
                    let named = |name: &str| SharedRef {
                        group: "g".parse().unwrap(),
                        name: name.parse().unwrap(),
                    };
                    let recheck = vec![named("intact"), named("rotten")];
                    let user = "alice".parse().unwrap();
                    return Ok(TrackerReply::Alive { user, recheck });
                }
                Ok(TrackerReply::Done {
                    message: "ok".into(),
                })
            }),
            stop.clone(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let link = TrackerLink::start(
            crate::tracker_link::fake::setup(vec![addr]),
            &TaskTracker::new(),
            stop.clone(),
        );
        let sessions = Arc::new(SessionStore::load(dir.path().join("session.json")));
        let client = TrackerClient::new(link, sessions);
        let shares = Arc::new(ShareSet::load(dir.path().join("shares.json")).unwrap());
        let session = client.acting_as(Session {
            user: "alice".parse().unwrap(),
            token: SessionToken("t".into()),
        });
        for name in ["kept", "taken", "changed", "intact", "rotten"] {
            shares
                .upsert(session.user(), share(dir.path(), name))
                .unwrap();
        }
        std::fs::write(dir.path().join("changed"), "changed since").unwrap();
        // Same size, same mtime, other bytes: only a re-hash tells.
        let rotten = dir.path().join("rotten");
        let mtime = std::fs::metadata(&rotten).unwrap().modified().unwrap();
        std::fs::write(&rotten, "ROTTEN").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&rotten)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let listener: SocketAddr = "0.0.0.0:7777".parse().unwrap();
        let tasks = (TaskTracker::new(), stop.clone());
        let presence = Presence::new(client.clone(), shares.clone(), (None, listener), tasks);
        assert_eq!(presence.listen_addr(), listener, "not connected yet");
        // Wait for the link, then resume.
        let mut conn = client.link().subscribe();
        tokio::time::timeout(Duration::from_secs(5), conn.wait_for(|c| c.is_some()))
            .await
            .unwrap()
            .unwrap();
        assert!(presence.resume(&session).await);
        assert!(!presence.resume(&session).await, "once per connection");
        assert_eq!(
            presence.advertised_addr(),
            Some("127.0.0.1:7777".parse().unwrap()),
            "the connection's local IP with the listener's port"
        );
        // Shares named as reported corrupt are re-hashed, not announced:
        // the intact one is registered again, the rotten one dropped.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let wanted = ["stop changed", "stop rotten", "register intact"];
        while !wanted.iter().all(|w| lock(&calls).contains(&w.to_string())) {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", lock(&calls));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let names: Vec<String> = shares
            .of_user(session.user())
            .into_iter()
            .map(|e| e.name.to_string())
            .collect();
        assert_eq!(names, ["kept", "intact"]);
        let seen = lock(&calls).clone();
        assert_eq!(seen[0], "heartbeat 127.0.0.1:7777");
        assert!(seen.contains(&"register kept".to_string()), "{seen:?}");
        assert!(!seen.contains(&"register rotten".to_string()), "{seen:?}");
        let intact = seen.iter().filter(|c| *c == "register intact").count();
        assert_eq!(intact, 1, "registered once, by its re-check: {seen:?}");
        presence.forget_resumed();
        assert!(presence.resume(&session).await, "again after a logout");
        stop.cancel();
    }
}
