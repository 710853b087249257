//! p2pshare's trust, in one crate the daemon and the tracker share (p2pctl
//! links none of it): the cluster key and the keys derived from it
//! ([`keys`]), TLS 1.3 links authenticated by raw ed25519 keys ([`tls`]),
//! and the download tickets a seeding peer checks on its own ([`ticket`]).
//!
//! All cryptography is AWS-LC's, through rustls and aws-lc-rs; this crate
//! only decides which keys exist and which are acceptable.

pub mod keys;
pub mod ticket;
pub mod tls;

pub use keys::{ClusterKey, Fingerprint, KeyError, KeyPairDoc, PublicKey};
pub use tls::{Endpoint, Link, LinkError, LinkReader, LinkWriter, Secured};
