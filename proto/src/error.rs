//! The error codes of SPEC.md, shared by all three programs.
//!
//! [`ErrorCode`] is the only error type that crosses a wire; every refusal a
//! user can see is one of these plus a human sentence ([`WireError`]).

use serde::{Deserialize, Serialize};
use std::fmt;

/// SPEC.md's error codes, serialised verbatim (`"not_logged_in"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotLoggedIn,
    AlreadyLoggedIn,
    UserExists,
    BadCredentials,
    NoSuchGroup,
    GroupExists,
    NotMember,
    NotOwner,
    AlreadyMember,
    NoSuchRequest,
    NoSuchFile,
    NameTaken,
    NotHolder,
    NoHoldersOnline,
    Integrity,
    Io,
    InvalidArgument,
    TrackerUnavailable,
    /// The tracker's identity is not the one this daemon trusts.
    UntrustedTracker,
    /// Too many failed logins for that user or from that address, or the
    /// tracker's password checks are saturated; the message says when to
    /// retry.
    RateLimited,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::NotLoggedIn,
        ErrorCode::AlreadyLoggedIn,
        ErrorCode::UserExists,
        ErrorCode::BadCredentials,
        ErrorCode::NoSuchGroup,
        ErrorCode::GroupExists,
        ErrorCode::NotMember,
        ErrorCode::NotOwner,
        ErrorCode::AlreadyMember,
        ErrorCode::NoSuchRequest,
        ErrorCode::NoSuchFile,
        ErrorCode::NameTaken,
        ErrorCode::NotHolder,
        ErrorCode::NoHoldersOnline,
        ErrorCode::Integrity,
        ErrorCode::Io,
        ErrorCode::InvalidArgument,
        ErrorCode::TrackerUnavailable,
        ErrorCode::UntrustedTracker,
        ErrorCode::RateLimited,
    ];

    /// The code as SPEC.md spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::AlreadyLoggedIn => "already_logged_in",
            ErrorCode::UserExists => "user_exists",
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::NoSuchGroup => "no_such_group",
            ErrorCode::GroupExists => "group_exists",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::AlreadyMember => "already_member",
            ErrorCode::NoSuchRequest => "no_such_request",
            ErrorCode::NoSuchFile => "no_such_file",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::NotHolder => "not_holder",
            ErrorCode::NoHoldersOnline => "no_holders_online",
            ErrorCode::Integrity => "integrity",
            ErrorCode::Io => "io",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::TrackerUnavailable => "tracker_unavailable",
            ErrorCode::UntrustedTracker => "untrusted_tracker",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal as it travels: a code for scripts, a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_spec_spells_them() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }
}
