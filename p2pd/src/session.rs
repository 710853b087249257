//! Who is logged in on this daemon: `HOME/session.json` (`{user, token}`,
//! mode 0600), published through a `watch` channel so the other parts
//! (presence, downloads, the seeder) follow login and logout. Keeping the
//! session alive is the presence module's job; deciding that it ended is
//! the tracker client's.

use proto::service::{remove_durably, write_atomic};
use proto::tracker::SessionToken;
use proto::UserId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
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
        // The user only: the token is a password for the session.
        tracing::info!(user = %session.user, "logged in");
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
