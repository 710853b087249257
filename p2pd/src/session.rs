//! Who is logged in on this daemon, and keeping that session alive.
//!
//! Owns `HOME/session.json` (`{user, token}`, mode 0600), published through a
//! `watch` channel so other parts (the swarm engine) follow login and logout,
//! and the heartbeat task. Resuming a session means, in this order:
//!
//! 1. `Heartbeat` (the tracker marks the user online at our peer address);
//! 2. `RegisterFile` for every share of the user (idempotent), dropping a
//!    share whose file vanished or changed.
//!
//! It happens once per (tracker connection, session): after login, at
//! daemon start with a saved session, and after every reconnect. A
//! heartbeat answered `not_logged_in` (logout or login elsewhere) ends the
//! local session.

use crate::daemon::Daemon;
use proto::service::{remove_durably, write_atomic};
use proto::tracker::{SessionToken, TrackerRequest, HEARTBEAT_INTERVAL};
use proto::{ErrorCode, UserId, WireError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// A login session as the tracker handed it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: UserId,
    pub token: SessionToken,
}

/// The session file and its watch channel.
#[derive(Debug)]
pub struct SessionStore {
    path: PathBuf,
    tx: watch::Sender<Option<Session>>,
}

impl SessionStore {
    /// Load `path`; absent means logged out. An unreadable or corrupt file
    /// is reported and treated as logged out: the user can log in again, and
    /// the tracker holds nothing that depends on it.
    pub fn load(path: PathBuf) -> SessionStore {
        let session = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Session>(&bytes) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring corrupt session file: {e}");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read session file: {e}");
                None
            }
        };
        if let Some(s) = &session {
            tracing::info!(user = %s.user, "resuming saved session");
        }
        let (tx, _) = watch::channel(session);
        SessionStore { path, tx }
    }

    pub fn current(&self) -> Option<Session> {
        self.tx.borrow().clone()
    }

    /// Follow login and logout.
    pub fn subscribe(&self) -> watch::Receiver<Option<Session>> {
        self.tx.subscribe()
    }

    /// Persist then publish a new session.
    ///
    /// # Errors
    /// The session file cannot be written; nothing is published then.
    pub fn begin(&self, session: Session) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&session).map_err(std::io::Error::other)?;
        write_atomic(&self.path, &bytes, 0o600)?;
        self.tx.send_replace(Some(session));
        Ok(())
    }

    /// End the session if it is still the one with `token`; `Ok(false)` if
    /// another session (or none) is current.
    ///
    /// # Errors
    /// The session file cannot be removed; the session is ended in memory
    /// anyway, since the tracker no longer honours it.
    pub fn end_if(&self, token: &SessionToken) -> std::io::Result<bool> {
        let mut ended = false;
        self.tx.send_if_modified(|cur| {
            if cur.as_ref().is_some_and(|s| &s.token == token) {
                *cur = None;
                ended = true;
            }
            ended
        });
        if ended {
            remove_durably(&self.path)?;
        }
        Ok(ended)
    }
}

/// Keep the session alive: heartbeat every [`HEARTBEAT_INTERVAL`], resume
/// after each (re)connection or new session. Runs until shutdown.
pub async fn run_heartbeat(daemon: Arc<Daemon>) {
    let mut conn = daemon.tracker.subscribe();
    let mut session = daemon.session.subscribe();
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ticked = tokio::select! {
            _ = daemon.shutdown.cancelled() => return,
            _ = tick.tick() => true,
            r = conn.changed() => { if r.is_err() { return } false }
            r = session.changed() => { if r.is_err() { return } false }
        };
        let Some(s) = daemon.session.current() else {
            continue;
        };
        // A call can wait seconds for an absent tracker; the stop must not.
        let work = async {
            let resumed = resume(&daemon, &s).await;
            if !resumed && ticked {
                // Errors are logged inside; the next tick tries again.
                let _ = heartbeat(&daemon, &s).await;
            }
        };
        tokio::select! {
            _ = daemon.shutdown.cancelled() => return,
            _ = work => {}
        }
    }
}

/// Resume `session` on the current connection unless that was already done.
/// Returns true if it did the work (so no separate heartbeat is needed).
pub async fn resume(daemon: &Daemon, session: &Session) -> bool {
    let _gate = daemon.resume_gate.lock().await;
    let Some(generation) = daemon
        .tracker
        .subscribe()
        .borrow()
        .as_ref()
        .map(|c| c.generation())
    else {
        return false;
    };
    let key = (generation, session.token.clone());
    if daemon.resumed_key().as_ref() == Some(&key) {
        return false;
    }
    if heartbeat(daemon, session).await.is_err() {
        return true;
    }
    if announce_shares(daemon, session).await {
        daemon.set_resumed_key(Some(key));
    }
    true
}

/// One heartbeat. `not_logged_in` ends the local session.
///
/// # Errors
/// The tracker's refusal (logged here).
pub async fn heartbeat(daemon: &Daemon, session: &Session) -> Result<(), WireError> {
    let Some(peer_addr) = daemon.advertised_addr() else {
        return Err(WireError::new(
            ErrorCode::TrackerUnavailable,
            "not connected to a tracker",
        ));
    };
    let req = TrackerRequest::Heartbeat {
        token: session.token.clone(),
        peer_addr,
    };
    match daemon.tracker.call(req).await {
        Ok(_) => Ok(()),
        Err(e) => {
            if e.code == ErrorCode::NotLoggedIn {
                session_ended_elsewhere(daemon, session);
            } else {
                tracing::debug!("heartbeat: {e}");
            }
            Err(e)
        }
    }
}

/// The tracker no longer knows `session`: forget it locally.
pub fn session_ended_elsewhere(daemon: &Daemon, session: &Session) {
    match daemon.session.end_if(&session.token) {
        Ok(true) => tracing::warn!(
            user = %session.user,
            "the tracker ended this session (logged out or logged in elsewhere)"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot remove the session file: {e}"),
    }
}

/// Re-register every share of the session's user. Returns false if the
/// tracker could not be reached (so the next reconnect tries again).
async fn announce_shares(daemon: &Daemon, session: &Session) -> bool {
    let shares = daemon.shares.of_user(&session.user);
    let mut announced = 0usize;
    for entry in shares {
        if let Some(why) = entry.staleness() {
            daemon.shares.drop_stale(session, &entry, &why);
            continue;
        }
        let req = TrackerRequest::RegisterFile {
            token: session.token.clone(),
            group: entry.group.clone(),
            meta: entry.meta.clone(),
        };
        match daemon.tracker.call(req).await {
            Ok(_) => announced += 1,
            Err(e) => match e.code {
                ErrorCode::TrackerUnavailable => return false,
                ErrorCode::NotLoggedIn => {
                    session_ended_elsewhere(daemon, session);
                    return true;
                }
                // The group is gone or we are no longer in it, or the name
                // now holds other content: this share cannot come back.
                _ => {
                    tracing::warn!(
                        group = %entry.group, name = %entry.name,
                        "no longer sharing: the tracker refused it: {e}"
                    );
                    if let Err(e) = daemon
                        .shares
                        .remove(&session.user, &entry.group, &entry.name)
                    {
                        tracing::warn!("cannot update shares: {e}");
                    }
                }
            },
        }
    }
    if announced > 0 {
        tracing::info!(user = %session.user, announced, "shares announced to the tracker");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_persists_and_end_if_matches_token() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("session.json");
        let store = SessionStore::load(path.clone());
        assert!(store.current().is_none());
        let s = Session {
            user: "alice".parse().unwrap(),
            token: SessionToken("tok1".into()),
        };
        store.begin(s.clone()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(SessionStore::load(path.clone()).current(), Some(s.clone()));
        let rx = store.subscribe();
        assert!(!store.end_if(&SessionToken("other".into())).unwrap());
        assert_eq!(rx.borrow().clone(), Some(s.clone()));
        assert!(store.end_if(&s.token).unwrap());
        assert!(rx.borrow().is_none());
        assert!(!path.exists());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(SessionStore::load(path).current().is_none());
    }
}
