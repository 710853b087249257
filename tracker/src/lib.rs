//! The p2pshare tracker: accounts, groups, join requests, and which peers
//! hold which files.
//!
//! - [`state`]: [`state::TrackerState`] and [`state::Command`]; `apply` is the
//!   only way to change the state, and it is pure.
//! - [`store`]: write-ahead log + snapshots, and the group-commit writer.
//! - [`presence`]: who is online, from heartbeats (volatile).
//! - [`tickets`]: short-lived download tickets (volatile).
//! - [`server`]: the TCP side; one task per connection and per call.
//! - [`tracker_info`]: parsing `tracker_info.txt`.

pub mod presence;
pub mod server;
pub mod state;
pub mod store;
pub mod tickets;
pub mod tracker_info;
