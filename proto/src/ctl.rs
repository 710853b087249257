//! p2pctl <-> p2pd, over the daemon's local socket `HOME/p2pd.sock`.
//!
//! One request per connection: p2pctl writes one [`CtlHello`]-stamped
//! [`CtlRequest`] frame; the daemon answers with one [`CtlReply`] frame, except
//! `download_file` without `detach`, which answers with any number of
//! [`CtlReply::Progress`] frames and then one final reply. Paths are absolute:
//! p2pctl resolves them against its own working directory before sending.
//!
//! The listing structs serialise exactly as SPEC.md's `--json` shapes, so
//! p2pctl prints them as they arrive.

use crate::{ErrorCode, FileName, GroupId, Sha1Hash, UserId, WireError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The first and only frame p2pctl sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtlHello {
    /// [`crate::PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    pub request: CtlRequest,
}

/// One SPEC command, named as SPEC names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum CtlRequest {
    CreateUser {
        user: UserId,
        password: String,
    },
    Login {
        user: UserId,
        password: String,
    },
    CreateGroup {
        group: GroupId,
    },
    JoinGroup {
        group: GroupId,
    },
    LeaveGroup {
        group: GroupId,
    },
    ListRequests {
        group: GroupId,
    },
    AcceptRequest {
        group: GroupId,
        user: UserId,
    },
    ListGroups,
    ListFiles {
        group: GroupId,
    },
    /// `path` is absolute.
    UploadFile {
        path: PathBuf,
        group: GroupId,
    },
    /// `dest` is absolute: an existing directory (the file keeps its name)
    /// or a file path. With `detach` false the connection streams progress.
    DownloadFile {
        group: GroupId,
        name: FileName,
        dest: PathBuf,
        detach: bool,
    },
    ShowDownloads,
    StopShare {
        group: GroupId,
        name: FileName,
    },
    Logout,
    Status,
}

/// `list_groups` item: `{"group": "g1", "owner": "alice", "members": 2}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub group: GroupId,
    pub owner: UserId,
    pub members: u32,
}

/// `list_files` item: `{"name", "size", "sha1", "holders", "online"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub name: FileName,
    pub size: u64,
    pub sha1: Sha1Hash,
    /// Users holding the complete file, online or not.
    pub holders: u32,
    /// Of those, how many are online now.
    pub online: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownloadState {
    Downloading,
    Complete,
    Failed,
    Paused,
}

/// Verified bytes received from one peer during one download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerBytes {
    pub user: UserId,
    pub bytes: u64,
}

/// `show_downloads` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadInfo {
    pub group: GroupId,
    pub name: FileName,
    pub state: DownloadState,
    pub bytes_done: u64,
    pub size: u64,
    /// Absolute final path of the file.
    pub path: PathBuf,
    pub peers: Vec<PeerBytes>,
    /// Recent download rate, bytes per second (0 when not downloading).
    #[serde(default)]
    pub rate: u64,
    /// Why a download failed or is paused, for people (SPEC: `reason`).
    #[serde(
        default,
        rename = "reason",
        alias = "error",
        skip_serializing_if = "Option::is_none"
    )]
    pub error: Option<String>,
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub user: Option<UserId>,
    /// The tracker address in use, when connected.
    pub tracker: Option<String>,
    /// The peer listener's address as announced to the tracker.
    pub listen: String,
    pub shares: u32,
    pub downloads: u32,
    /// Piece bytes served to peers since the daemon started.
    pub uploaded: u64,
}

/// A progress tick of a waiting `download_file` (verified bytes) or of
/// `upload_file` (hashed bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub bytes_done: u64,
    pub size: u64,
    /// Peers currently connected for this download (0 while hashing).
    pub peers: u32,
    /// Bytes per second over the last few seconds.
    pub rate: u64,
    /// The download waits for a holder to come online.
    #[serde(default)]
    pub paused: bool,
    /// Why it is paused, when it is not simply waiting for a holder
    /// (`disk full: PATH`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every answer p2pd gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CtlReply {
    /// An action succeeded: `{"ok": true, "message": ...}` in `--json`.
    Ok {
        message: String,
    },
    Groups {
        groups: Vec<GroupInfo>,
    },
    Requests {
        users: Vec<UserId>,
    },
    Files {
        files: Vec<FileInfo>,
    },
    Downloads {
        downloads: Vec<DownloadInfo>,
    },
    Status(StatusInfo),
    /// Not final: more frames follow.
    Progress(Progress),
    Error(WireError),
}

impl CtlReply {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        CtlReply::Error(WireError::new(code, message))
    }

    /// True for every reply but a progress tick.
    pub fn is_final(&self) -> bool {
        !matches!(self, CtlReply::Progress(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let req = CtlHello {
            version: crate::PROTOCOL_VERSION,
            request: CtlRequest::DownloadFile {
                group: "g1".parse().unwrap(),
                name: "my file.iso".parse().unwrap(),
                dest: "/tmp/dl".into(),
                detach: false,
            },
        };
        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains("\"cmd\":\"download_file\""), "{json}");
        assert_eq!(serde_json::from_str::<CtlHello>(&json).unwrap(), req);
    }

    #[test]
    fn hostile_ids_do_not_decode() {
        let json = r#"{"version":1,"request":{"cmd":"create_group","group":"../x"}}"#;
        assert!(serde_json::from_str::<CtlHello>(json).is_err());
        let json = r#"{"version":1,"request":{"cmd":"no_such"}}"#;
        assert!(serde_json::from_str::<CtlHello>(json).is_err());
    }

    #[test]
    fn listings_have_spec_shapes() {
        let f = FileInfo {
            name: "f.iso".parse().unwrap(),
            size: 123,
            // SHA-1 of the empty file.
            sha1: "da39a3ee5e6b4b0d3255bfef95601890afd80709".parse().unwrap(),
            holders: 2,
            online: 1,
        };
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name":"f.iso","size":123,
                "sha1":"da39a3ee5e6b4b0d3255bfef95601890afd80709","holders":2,"online":1})
        );
        let s = StatusInfo {
            user: None,
            tracker: None,
            listen: "127.0.0.1:1".into(),
            shares: 0,
            downloads: 0,
            uploaded: 0,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["user"], serde_json::Value::Null);
        assert_eq!(
            serde_json::to_value(DownloadState::Paused).unwrap(),
            "paused"
        );
    }
}
