//! The p2pshare tracker: accounts, groups, join requests, and which peers
//! hold which files.
//!
//! - [`state`]: [`state::TrackerState`] and [`state::Command`]; `apply` is the
//!   only way to change the state, and it is pure.
//! - [`raft`]: replication with openraft: log store (redb), state machine,
//!   tracker-to-tracker network; every write is committed by a majority.
//! - [`tickets`]: short-lived signed download tickets (any tracker checks them).
//! - [`server`]: the TCP side; one task per connection and per call.
//! - [`passwords`]: password limits; argon2 on a few dedicated threads.
//! - [`clock`]: the wall clock, read before a command is built.
//! - [`tokens`]: session tokens and the ticket key, minted outside `apply`.

pub mod clock;
pub mod passwords;
pub mod raft;
pub mod server;
pub mod state;
pub mod tickets;
pub mod tokens;
