//! One handler per SPEC command: turn a [`CtlRequest`] into tracker calls
//! and local state changes, and answer one [`CtlReply`].
//!
//! Every refusal is a [`WireError`] with a SPEC code and a sentence a user
//! understands. Commands other than `create_user`, `login` and `status`
//! need a session ([`TrackerClient::current`]); the tracker client ends a
//! session the tracker no longer honours. [`upload`] has `upload_file`.

mod upload;

use crate::downloads::Downloads;
use crate::presence::Presence;
use crate::progress::ProgressSink;
use crate::session::Session;
use crate::shares::ShareSet;
use crate::tracker_client::{SessionClient, TrackerClient};
use proto::ctl::{CtlReply, CtlRequest, StatusInfo};
use proto::{ErrorCode, FileName, GroupId, UserId, WireError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What the commands act on; one per daemon, shared by every control
/// connection.
pub struct Commands {
    pub client: TrackerClient,
    pub shares: Arc<ShareSet>,
    pub presence: Arc<Presence>,
    pub downloads: Arc<Downloads>,
    /// Piece bytes served since start (`status`).
    pub uploaded: Arc<AtomicU64>,
    /// HOME, named in error messages.
    pub home: PathBuf,
    /// Cancelled when the daemon stops (long hashing gives up).
    pub shutdown: CancellationToken,
    /// Serialises login and logout, so "already logged in" is decided
    /// against a settled state.
    login_gate: tokio::sync::Mutex<()>,
}

type CmdResult = Result<CtlReply, WireError>;

/// A tracker sentence as the command's answer.
fn ok(message: String) -> CtlReply {
    CtlReply::Ok { message }
}

fn io_error(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::Io, msg)
}

impl Commands {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: TrackerClient,
        shares: Arc<ShareSet>,
        presence: Arc<Presence>,
        downloads: Arc<Downloads>,
        uploaded: Arc<AtomicU64>,
        home: PathBuf,
        shutdown: CancellationToken,
    ) -> Commands {
        Commands {
            client,
            shares,
            presence,
            downloads,
            uploaded,
            home,
            shutdown,
            login_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs one request to its final reply; progress ticks go to `progress`.
    pub async fn dispatch(&self, request: CtlRequest, progress: ProgressSink) -> CtlReply {
        use CtlRequest as C;
        let result = match request {
            C::CreateUser { user, password } => {
                self.client.create_user(user, password).await.map(ok)
            }
            C::Login { user, password } => self.login(user, password).await,
            C::Logout => self.logout().await,
            C::Status => Ok(self.status()),
            C::UploadFile { path, group } => {
                upload::upload_file(self, path, group, &progress).await
            }
            C::DownloadFile {
                group,
                name,
                dest,
                detach,
            } => {
                self.as_session(|s| async move {
                    let d = &self.downloads;
                    d.download_file(s, group, name, dest, detach, &progress)
                        .await
                })
                .await
            }
            C::CreateGroup { group } => {
                self.as_session(|s| async move { s.create_group(group).await.map(ok) })
                    .await
            }
            C::JoinGroup { group } => {
                self.as_session(|s| async move { s.join_group(group).await.map(ok) })
                    .await
            }
            C::LeaveGroup { group } => self.as_session(|s| self.leave_group(s, group)).await,
            C::ListRequests { group } => {
                self.as_session(|s| async move {
                    let users = s.list_requests(group).await?;
                    Ok(CtlReply::Requests { users })
                })
                .await
            }
            C::AcceptRequest { group, user } => {
                self.as_session(|s| async move { s.accept_request(group, user).await.map(ok) })
                    .await
            }
            C::ListGroups => {
                self.as_session(|s| async move {
                    let groups = s.list_groups().await?;
                    Ok(CtlReply::Groups { groups })
                })
                .await
            }
            C::ListFiles { group } => {
                self.as_session(|s| async move {
                    let files = s.list_files(group).await?;
                    Ok(CtlReply::Files { files })
                })
                .await
            }
            C::StopShare { group, name } => {
                self.as_session(|s| self.stop_share(s, group, name)).await
            }
            C::ShowDownloads => {
                self.as_session(|s| async move {
                    let downloads = self.downloads.show(s.user());
                    Ok(CtlReply::Downloads { downloads })
                })
                .await
            }
        };
        result.unwrap_or_else(CtlReply::Error)
    }

    /// Runs `command` as the current session, or refuses with
    /// `not_logged_in`.
    async fn as_session<F, Fut>(&self, command: F) -> CmdResult
    where
        F: FnOnce(SessionClient) -> Fut,
        Fut: std::future::Future<Output = CmdResult>,
    {
        command(self.client.current()?).await
    }

    async fn leave_group(&self, s: SessionClient, group: GroupId) -> CmdResult {
        let message = s.leave_group(group.clone()).await?;
        // The tracker dropped our holdings in the group; forget them here too.
        if let Err(e) = self.shares.remove_group(s.user(), &group) {
            tracing::warn!("cannot update shares after leaving {group}: {e}");
        }
        Ok(ok(message))
    }

    async fn login(&self, user: UserId, password: String) -> CmdResult {
        let _gate = self.login_gate.lock().await;
        if let Some(s) = self.client.sessions().current() {
            return Err(WireError::new(
                ErrorCode::AlreadyLoggedIn,
                format!("already logged in as {}; logout first", s.user),
            ));
        }
        let token = self.client.login(user.clone(), password).await?;
        let session = Session {
            user: user.clone(),
            token,
        };
        self.client.sessions().begin(session.clone()).map_err(|e| {
            io_error(format!(
                "cannot save the session in {}: {e}",
                self.home.display()
            ))
        })?;
        // Heartbeat and re-announce before answering, so "logged in" means
        // online and sharing again.
        self.presence.resume(&self.client.acting_as(session)).await;
        let message = match self.shares.count(&user) {
            0 => format!("logged in as {user}"),
            1 => format!("logged in as {user}; sharing 1 file again"),
            n => format!("logged in as {user}; sharing {n} files again"),
        };
        Ok(ok(message))
    }

    async fn logout(&self) -> CmdResult {
        let _gate = self.login_gate.lock().await;
        let s = self.client.current()?;
        s.logout().await?;
        self.presence.forget_resumed();
        Ok(ok(format!("logged out {}", s.user())))
    }

    async fn stop_share(&self, s: SessionClient, group: GroupId, name: FileName) -> CmdResult {
        let result = s.stop_share(group.clone(), name.clone()).await;
        match &result {
            // The tracker says we do not hold it: a local entry is stale.
            Ok(())
            | Err(WireError {
                code: ErrorCode::NotHolder | ErrorCode::NoSuchFile,
                ..
            }) => {
                self.shares
                    .remove(s.user(), &group, &name)
                    .map_err(|e| io_error(format!("cannot update the shares file: {e}")))?;
            }
            Err(_) => {}
        }
        result.map(|()| ok(format!("stopped sharing {name} in {group}")))
    }

    fn status(&self) -> CtlReply {
        let session = self.client.sessions().current();
        let user = session.map(|s| s.user);
        let (shares, downloads) = match &user {
            Some(u) => (self.shares.count(u), self.downloads.count(u)),
            None => (0, 0),
        };
        CtlReply::Status(StatusInfo {
            user,
            tracker: self.client.link().current_tracker().map(|a| a.to_string()),
            listen: self.presence.listen_addr().to_string(),
            shares: u32::try_from(shares).unwrap_or(u32::MAX),
            downloads,
            uploaded: self.uploaded.load(Ordering::Relaxed),
        })
    }
}
