//! The p2pshare tracker: accounts, groups, join requests, and which peers
//! hold which files.
//!
//! - [`state`]: [`state::TrackerState`] and [`state::Command`]; `apply` is the
//!   only way to change the state, and it is pure (one method per command).
//! - [`raft`]: replication with openraft: formation, the write path (group
//!   commit, forwarding), presence, leadership, the tracker-to-tracker
//!   network, log store (redb) and state machine; every write is committed
//!   by a majority.
//! - [`server`]: the TCP side: accept loop, one task per connection
//!   (`connection`) and per call (`handler`: a request becomes a read or a
//!   command).
//! - [`data_dir`]: the data directory is private (0700, files 0600, umask).
//! - [`passwords`]: password limits; argon2 on a few dedicated threads.
//! - [`tokens`]: session tokens, minted outside `apply`.
//! - [`clock`]: the wall clock, read before a command is built.
//!
//! Download tickets are signed with a key derived from the cluster key
//! (`p2p_link::ticket`); seeding daemons check them on their own.
//!
//! Dependencies point one way: `server` → `raft` → `state`; the small
//! modules (`passwords`, `tokens`, `clock`, `data_dir`) depend on none of
//! the three.

pub mod clock;
pub mod data_dir;
pub mod passwords;
pub mod raft;
pub mod server;
pub mod state;
pub mod tokens;
