//! Validated names: [`UserId`], [`GroupId`] and [`FileName`].
//!
//! Every id or file name read from argv, a socket or a file becomes one of
//! these at the boundary (deserialising validates too), so code past `proto`
//! never re-checks them and can never be handed `../x` or a NUL.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest user or group id SPEC.md allows.
pub const MAX_ID_LEN: usize = 64;
/// Longest file name in bytes (the usual file-system limit).
pub const MAX_FILE_NAME_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} {shown} may only contain letters, digits, '_', '.' and '-'")]
    BadIdChar { kind: &'static str, shown: String },
    #[error("file name {shown} must be a base name: no '/', '\\', NUL or control characters, not '.' or '..'")]
    BadFileName { shown: String },
}

/// Quote a hostile string for an error message without echoing control
/// characters or megabytes of it back to the terminal.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(70).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

fn check_id(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: s.len(),
            max: MAX_ID_LEN,
        });
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(IdError::BadIdChar {
            kind,
            shown: shown(s),
        });
    }
    Ok(())
}

fn check_file_name(s: &str) -> Result<(), IdError> {
    let kind = "file name";
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_FILE_NAME_BYTES {
        return Err(IdError::TooLong {
            kind,
            len: s.len(),
            max: MAX_FILE_NAME_BYTES,
        });
    }
    if s == "." || s == ".." || s.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return Err(IdError::BadFileName { shown: shown(s) });
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                $check(&s)?;
                Ok($name(s))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                $check(s)?;
                Ok($name(s.to_owned()))
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::try_from(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_name!(
    /// A user id: `[A-Za-z0-9_.-]{1,64}`.
    UserId,
    |s: &str| check_id("user id", s)
);
validated_name!(
    /// A group id: `[A-Za-z0-9_.-]{1,64}`.
    GroupId,
    |s: &str| check_id("group id", s)
);
validated_name!(
    /// A file's base name: 1..=255 bytes of UTF-8, no `/`, `\`, NUL or
    /// control characters, not `.` or `..`. Spaces are fine.
    FileName,
    check_file_name
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_spec_alphabet() {
        for ok in ["alice", "a", "A-b_c.9", &"x".repeat(64)] {
            assert!(UserId::try_from(ok).is_ok(), "{ok}");
            assert!(GroupId::try_from(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn ids_refuse_hostile_input() {
        for bad in [
            "",
            "../x",
            "/etc/passwd",
            "a b",
            "a\0b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(UserId::try_from(bad).is_err(), "{bad:?}");
            assert!(GroupId::try_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn file_names_are_base_names() {
        for ok in ["f.iso", "my file.txt", "ünïcødé", "..a", &"x".repeat(255)] {
            assert!(FileName::try_from(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a\\b",
            "a\0b",
            "a\nb",
            &"x".repeat(256),
        ] {
            assert!(FileName::try_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<UserId>("\"../x\"").is_err());
        assert!(serde_json::from_str::<FileName>("\"a/b\"").is_err());
        let u: UserId = serde_json::from_str("\"bob\"").unwrap();
        assert_eq!(u.as_str(), "bob");
    }

    #[test]
    fn error_messages_do_not_echo_huge_input() {
        let huge = "/".repeat(10_000_000);
        let msg = FileName::try_from(huge.as_str()).unwrap_err().to_string();
        assert!(msg.len() < 200, "{}", msg.len());
    }
}
