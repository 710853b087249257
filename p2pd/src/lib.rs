//! p2pd, the peer daemon of p2pshare: the control plane.
//!
//! - [`options`]: command line, rates, the tracker info file.
//! - [`home`]: HOME, its lock, atomic state-file writes.
//! - [`daemon`]: the shared [`daemon::Daemon`] state and [`daemon::run`].
//! - [`ipc`]: the control socket; one task per p2pctl connection.
//! - [`commands`]: one handler per SPEC command.
//! - [`tracker_link`]: the multiplexed, reconnecting tracker connection.
//! - [`session`]: `session.json`, its watch channel, heartbeats, resume.
//! - [`shares`]: `shares.json`, what each user shares and its validity.
//! - [`hashing`]: one-pass whole-file and per-piece SHA-1.
//! - [`peer_listener`]: accepts peer connections (the swarm engine serves them).
//! - [`downloads`]: the registry of downloads: `download_file`,
//!   `show_downloads`, pausing and resuming with the session.
//! - [`swarm`]: the swarm engine (download tasks, peer protocol, seeder).

pub mod commands;
pub mod daemon;
pub mod downloads;
pub mod hashing;
pub mod home;
pub mod ipc;
pub mod options;
pub mod peer_listener;
pub mod session;
pub mod shares;
pub mod swarm;
pub mod tracker_link;

pub use daemon::{run, Daemon, DaemonError};
pub use options::{Cli, Options};
