//! The daemon's calls to the tracker, typed, and the one session rule.
//!
//! [`TrackerClient`] wraps the raw connection ([`TrackerLink`]) and the
//! session store. A call made as a user goes through a [`SessionClient`]
//! (the client bound to one session: the current one for a command, the
//! one a download started under for that download). This is the only place
//! that applies the rule *"the tracker says `not_logged_in`, so that
//! session ended elsewhere (logout, a login on another daemon): end it here
//! too"*. Each method builds its request and checks the reply's shape; a
//! reply of another shape is `tracker_unavailable` (a tracker of another
//! version).

use crate::session::{Session, SessionStore};
use crate::tracker_link::TrackerLink;
use proto::ctl::{FileInfo, GroupInfo};
use proto::tracker::{FileMeta, PeerEntry, SessionToken, SharedRef, TrackerReply, TrackerRequest};
use proto::{ErrorCode, FileName, GroupId, UserId, WireError};
use std::net::SocketAddr;
use std::sync::Arc;

/// A cheap handle: the tracker connection and the session store.
#[derive(Clone, Debug)]
pub struct TrackerClient {
    link: TrackerLink,
    sessions: Arc<SessionStore>,
}

/// What `Locate` gave: the file's description and the online peers (other
/// than us) that hold all or part of it.
#[derive(Debug, Clone)]
pub struct Located {
    pub meta: FileMeta,
    pub peers: Vec<PeerEntry>,
}

impl TrackerClient {
    pub fn new(link: TrackerLink, sessions: Arc<SessionStore>) -> TrackerClient {
        TrackerClient { link, sessions }
    }

    /// The raw connection (which tracker, our local IP, reconnections).
    pub fn link(&self) -> &TrackerLink {
        &self.link
    }

    pub fn sessions(&self) -> &Arc<SessionStore> {
        &self.sessions
    }

    /// The client acting as the current session.
    ///
    /// # Errors
    /// `not_logged_in` when nobody is logged in on this daemon.
    pub fn current(&self) -> Result<SessionClient, WireError> {
        let session = self.sessions.current().ok_or_else(|| {
            WireError::new(
                ErrorCode::NotLoggedIn,
                "not logged in; run p2pctl login USER",
            )
        })?;
        Ok(self.acting_as(session))
    }

    /// The client acting as `session`, current or not (a download keeps
    /// the session it started under; its calls fail once that one ended).
    pub fn acting_as(&self, session: Session) -> SessionClient {
        SessionClient {
            client: self.clone(),
            session,
        }
    }

    /// `create_user`.
    ///
    /// # Errors
    /// The tracker's refusal (`user_exists`, `invalid_argument`, ...).
    pub async fn create_user(&self, user: UserId, password: String) -> Result<String, WireError> {
        done(
            self.link
                .call(TrackerRequest::CreateUser { user, password })
                .await?,
        )
    }

    /// `login`: a new session token (the tracker ends the user's previous
    /// session). Storing it is the caller's business.
    ///
    /// # Errors
    /// `bad_credentials`, `tracker_unavailable`, ...
    pub async fn login(&self, user: UserId, password: String) -> Result<SessionToken, WireError> {
        match self
            .link
            .call(TrackerRequest::Login { user, password })
            .await?
        {
            TrackerReply::LoggedIn { token } => Ok(token),
            other => Err(unexpected(other)),
        }
    }
}

/// The tracker client acting as one session. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionClient {
    client: TrackerClient,
    session: Session,
}

impl SessionClient {
    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn user(&self) -> &UserId {
        &self.session.user
    }

    fn token(&self) -> SessionToken {
        self.session.token.clone()
    }

    /// Sends `request` (built with this session's token). `not_logged_in`
    /// ends the session locally as well.
    async fn call(&self, request: TrackerRequest) -> Result<TrackerReply, WireError> {
        match self.client.link.call(request).await {
            Err(e) if e.code == ErrorCode::NotLoggedIn => {
                self.session_ended_elsewhere();
                Err(WireError::new(
                    ErrorCode::NotLoggedIn,
                    "not logged in: the session ended (logged out or logged in elsewhere); run p2pctl login USER",
                ))
            }
            other => other,
        }
    }

    fn session_ended_elsewhere(&self) {
        match self.client.sessions.end_if(&self.session.token) {
            Ok(true) => tracing::warn!(
                user = %self.session.user,
                "the tracker ended this session (logged out or logged in elsewhere)"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot remove the session file: {e}"),
        }
    }

    /// Ends the session at the tracker and here. A session the tracker
    /// already forgot is simply ended here: that is what was asked.
    ///
    /// # Errors
    /// The tracker cannot be reached (the session stays), or the session
    /// file cannot be removed (`io`; the session is over anyway).
    pub async fn logout(&self) -> Result<(), WireError> {
        match self
            .client
            .link
            .call(TrackerRequest::Logout {
                token: self.token(),
            })
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::NotLoggedIn => {}
            Err(e) => return Err(e),
        }
        tracing::info!(user = %self.session.user, "logged out");
        self.client
            .sessions
            .end_if(&self.session.token)
            .map(|_| ())
            .map_err(|e| {
                WireError::new(
                    ErrorCode::Io,
                    format!("logged out, but cannot remove the session file: {e}"),
                )
            })
    }

    /// Keeps the user online at `peer_addr`. Returns our copies a
    /// downloader reported corrupt, which the tracker no longer lists.
    ///
    /// # Errors
    /// The tracker's refusal; `not_logged_in` has ended the session.
    pub async fn heartbeat(&self, peer_addr: SocketAddr) -> Result<Vec<SharedRef>, WireError> {
        let token = self.token();
        match self
            .call(TrackerRequest::Heartbeat { token, peer_addr })
            .await?
        {
            TrackerReply::Alive { recheck, .. } => Ok(recheck),
            other => Err(unexpected(other)),
        }
    }

    /// `holder` sent our download of `name` data that failed its SHA-1.
    ///
    /// # Errors
    /// The tracker's refusal (`not_holder`, ...).
    pub async fn report_corrupt(
        &self,
        group: GroupId,
        name: FileName,
        holder: UserId,
    ) -> Result<(), WireError> {
        let token = self.token();
        let report = TrackerRequest::ReportCorrupt {
            token,
            group,
            name,
            holder,
        };
        self.call(report).await.map(|_| ())
    }

    /// # Errors
    /// The tracker's refusal (`group_exists`, ...).
    pub async fn create_group(&self, group: GroupId) -> Result<String, WireError> {
        let token = self.token();
        done(
            self.call(TrackerRequest::CreateGroup { token, group })
                .await?,
        )
    }

    /// # Errors
    /// The tracker's refusal (`no_such_group`, `already_member`, ...).
    pub async fn join_group(&self, group: GroupId) -> Result<String, WireError> {
        let token = self.token();
        done(
            self.call(TrackerRequest::JoinGroup { token, group })
                .await?,
        )
    }

    /// # Errors
    /// The tracker's refusal (`no_such_group`, `not_member`, ...).
    pub async fn leave_group(&self, group: GroupId) -> Result<String, WireError> {
        let token = self.token();
        done(
            self.call(TrackerRequest::LeaveGroup { token, group })
                .await?,
        )
    }

    /// # Errors
    /// The tracker's refusal (`not_owner`, ...).
    pub async fn list_requests(&self, group: GroupId) -> Result<Vec<UserId>, WireError> {
        let token = self.token();
        match self
            .call(TrackerRequest::ListRequests { token, group })
            .await?
        {
            TrackerReply::Users { users } => Ok(users),
            other => Err(unexpected(other)),
        }
    }

    /// # Errors
    /// The tracker's refusal (`not_owner`, `no_such_request`, ...).
    pub async fn accept_request(&self, group: GroupId, user: UserId) -> Result<String, WireError> {
        let token = self.token();
        done(
            self.call(TrackerRequest::AcceptRequest { token, group, user })
                .await?,
        )
    }

    /// # Errors
    /// The tracker's refusal.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>, WireError> {
        let token = self.token();
        match self.call(TrackerRequest::ListGroups { token }).await? {
            TrackerReply::Groups { groups } => Ok(groups),
            other => Err(unexpected(other)),
        }
    }

    /// # Errors
    /// The tracker's refusal (`no_such_group`, `not_member`).
    pub async fn list_files(&self, group: GroupId) -> Result<Vec<FileInfo>, WireError> {
        let token = self.token();
        match self
            .call(TrackerRequest::ListFiles { token, group })
            .await?
        {
            TrackerReply::Files { files } => Ok(files),
            other => Err(unexpected(other)),
        }
    }

    /// Registers the file, or adds us as another holder of the same content.
    ///
    /// # Errors
    /// The tracker's refusal (`name_taken`, `not_member`, ...).
    pub async fn register_file(&self, group: GroupId, meta: FileMeta) -> Result<(), WireError> {
        let token = self.token();
        let (name, size) = (meta.name.clone(), meta.size);
        self.call(TrackerRequest::RegisterFile {
            token,
            group: group.clone(),
            meta,
        })
        .await?;
        tracing::info!(
            "sharing {name} in group {group} ({})",
            proto::units::Bytes(size)
        );
        Ok(())
    }

    /// We no longer serve the file (complete or partial).
    ///
    /// # Errors
    /// The tracker's refusal (`not_holder`, `no_such_file`, ...).
    pub async fn stop_share(&self, group: GroupId, name: FileName) -> Result<(), WireError> {
        let token = self.token();
        self.call(TrackerRequest::StopShare { token, group, name })
            .await
            .map(|_| ())
    }

    /// The file's description and its online holders, checked for
    /// consistency (the piece list must fit the size, the name the request).
    ///
    /// # Errors
    /// The tracker's refusal; `invalid_argument` for an inconsistent meta.
    pub async fn locate(&self, group: GroupId, name: FileName) -> Result<Located, WireError> {
        let token = self.token();
        let asked = name.clone();
        let (meta, peers) = match self
            .call(TrackerRequest::Locate { token, group, name })
            .await?
        {
            TrackerReply::Located { meta, peers } => (meta, peers),
            other => return Err(unexpected(other)),
        };
        if !meta.is_consistent() || meta.name != asked {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                format!("the tracker's description of {asked} is inconsistent"),
            ));
        }
        Ok(Located { meta, peers })
    }

    /// We hold verified pieces of the file and serve them.
    ///
    /// # Errors
    /// The tracker's refusal.
    pub async fn mark_partial(&self, group: GroupId, name: FileName) -> Result<(), WireError> {
        let token = self.token();
        self.call(TrackerRequest::MarkPartial { token, group, name })
            .await
            .map(|_| ())
    }

    /// A short-lived ticket to show the file's holders.
    ///
    /// # Errors
    /// The tracker's refusal (`not_member`, `no_such_file`, ...).
    pub async fn issue_ticket(&self, group: GroupId, name: FileName) -> Result<String, WireError> {
        let token = self.token();
        match self
            .call(TrackerRequest::IssueTicket { token, group, name })
            .await?
        {
            TrackerReply::Ticket { ticket } => Ok(ticket),
            other => Err(unexpected(other)),
        }
    }
}

/// A tracker `Done` as its sentence.
fn done(reply: TrackerReply) -> Result<String, WireError> {
    match reply {
        TrackerReply::Done { message } => Ok(message),
        other => Err(unexpected(other)),
    }
}

fn unexpected(reply: TrackerReply) -> WireError {
    tracing::error!(?reply, "unexpected tracker reply");
    WireError::new(
        ErrorCode::TrackerUnavailable,
        "the tracker gave an unexpected answer; is it the same version as p2pd?",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker_link::fake;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    async fn client_with(
        answer: fake::Answerer,
    ) -> (TrackerClient, tempfile::TempDir, CancellationToken) {
        let stop = CancellationToken::new();
        let addr = fake::spawn(answer, stop.clone()).await;
        let link = TrackerLink::start(
            crate::tracker_link::fake::setup(vec![addr]),
            &TaskTracker::new(),
            stop.clone(),
        );
        let dir = tempfile::tempdir().unwrap();
        let sessions = Arc::new(SessionStore::load(dir.path().join("session.json")));
        (TrackerClient::new(link, sessions), dir, stop)
    }

    fn session(token: &str) -> Session {
        Session {
            user: "alice".parse().unwrap(),
            token: SessionToken(token.into()),
        }
    }

    #[tokio::test]
    async fn not_logged_in_ends_that_session_and_only_that_one() {
        let (client, _dir, stop) = client_with(Arc::new(|req| match req.token() {
            Some(t) if t.0 == "old" => Err(WireError::new(ErrorCode::NotLoggedIn, "gone")),
            _ => Ok(TrackerReply::Groups { groups: vec![] }),
        }))
        .await;
        assert!(client.current().is_err(), "nobody logged in yet");
        client.sessions().begin(session("new")).unwrap();
        // A download still acting as an older session is refused; the
        // current session is untouched.
        let old = client.acting_as(session("old"));
        let e = old.list_groups().await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotLoggedIn);
        assert!(e.message.contains("run p2pctl login"), "{}", e.message);
        assert_eq!(client.sessions().current(), Some(session("new")));
        // The current one, refused, is ended locally.
        let current = client.current().unwrap();
        assert!(current.list_groups().await.unwrap().is_empty());
        client.sessions().begin(session("old")).unwrap();
        let e = client.current().unwrap().list_groups().await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotLoggedIn);
        assert_eq!(client.sessions().current(), None);
        stop.cancel();
    }

    #[tokio::test]
    async fn logout_of_a_forgotten_session_still_ends_it() {
        let (client, _dir, stop) = client_with(Arc::new(|_| {
            Err(WireError::new(ErrorCode::NotLoggedIn, "gone"))
        }))
        .await;
        client.sessions().begin(session("t")).unwrap();
        client.current().unwrap().logout().await.unwrap();
        assert_eq!(client.sessions().current(), None);
        stop.cancel();
    }

    #[tokio::test]
    async fn replies_of_the_wrong_shape_and_bad_metas_are_refused() {
        let (client, _dir, stop) = client_with(Arc::new(|req| match req {
            TrackerRequest::Locate { .. } => Ok(TrackerReply::Located {
                meta: FileMeta {
                    name: "other".parse().unwrap(),
                    size: 0,
                    sha1: proto::Sha1Hash([0; 20]),
                    piece_size: proto::geometry::PIECE_SIZE_BYTES,
                    pieces: vec![],
                },
                peers: vec![],
            }),
            _ => Ok(TrackerReply::Done {
                message: "done".into(),
            }),
        }))
        .await;
        let s = client.acting_as(session("t"));
        let e = s.list_groups().await.unwrap_err();
        assert_eq!(e.code, ErrorCode::TrackerUnavailable);
        let e = s
            .locate("g".parse().unwrap(), "f".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(s.create_group("g".parse().unwrap()).await.unwrap(), "done");
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
