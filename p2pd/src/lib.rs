//! p2pd, the peer daemon of p2pshare.
//!
//! Dependencies point down this list; nothing below imports what is above.
//!
//! - [`daemon`]: start-up and shut-down; builds the parts and wires them.
//! - [`ipc`]: the control socket; one task per p2pctl connection.
//! - [`commands`]: one handler per SPEC command.
//! - [`downloads`]: the registry of downloads: `download_file`,
//!   `show_downloads`, pausing and resuming with the session.
//! - [`peer_listener`]: accepts peer connections for the seeder.
//! - [`presence`]: heartbeats, the advertised address, resuming a session
//!   (re-announcing shares) on every tracker connection.
//! - [`swarm`]: the swarm engine: one download's whole life, the seeder,
//!   the peer protocol, pieces, the picker, storage, verification.
//! - [`recheck`]: re-hashing our shares that a downloader reported corrupt.
//! - [`shares`]: `shares.json`, what each user shares and its validity.
//! - [`tracker_client`]: every call to the tracker, typed, and the one
//!   "`not_logged_in` ends the session" rule.
//! - [`tracker_link`]: the multiplexed, reconnecting tracker connection.
//! - [`session`]: `session.json` and its watch channel.
//! - [`progress`]: how long commands report progress to p2pctl.
//! - [`hashing`]: one-pass whole-file and per-piece SHA-1 of a file.
//! - [`home`]: HOME, its lock, where the state files live.
//! - [`options`]: command line and configuration, merged.
//! - [`config`]: the config file (`~/.config/p2pshare/config.toml`).
//! - [`manual`]: `p2pd completions SHELL` and `p2pd man`.
//! - [`fault`]: test-only crash points (`P2PD_FAULT`).

pub mod commands;
pub mod config;
pub mod daemon;
pub mod downloads;
pub mod fault;
pub mod hashing;
pub mod home;
pub mod ipc;
pub mod manual;
pub mod options;
pub mod peer_listener;
pub mod presence;
pub mod progress;
pub mod recheck;
pub mod session;
pub mod shares;
pub mod swarm;
pub mod tracker_client;
pub mod tracker_link;
pub mod trust;

pub use daemon::{run, DaemonError};
pub use options::{Cli, Options, Tool};
