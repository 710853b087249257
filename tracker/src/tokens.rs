//! Unguessable strings the tracker mints: session tokens (at login) and the
//! cluster's ticket key (by the first leader).
//!
//! Drawn from the OS's random source, always *outside* `apply`: the minted
//! value travels inside the command, so every replica stores the same one.

use proto::tracker::SessionToken;
use rand::rngs::OsRng;
use rand::RngCore;

/// 128 random bits as 32 lowercase hex digits.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A fresh session token for a login.
pub fn session_token() -> SessionToken {
    SessionToken(random_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_128_bit_hex_and_distinct() {
        let (a, b) = (random_hex(), random_hex());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(session_token(), session_token());
    }
}
