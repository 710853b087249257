//! The wire of p2pshare, in one place.
//!
//! - [`frame`]: the one framing every link uses (u32 big-endian length, then
//!   the payload), with a per-link maximum checked before allocating.
//! - [`ids`]: validated newtypes for user ids, group ids and file names; code
//!   past this crate trusts them.
//! - [`error`]: [`ErrorCode`], the SPEC's error codes, the only error that
//!   crosses a wire.
//! - [`ctl`]: p2pctl <-> p2pd (one request per connection).
//! - [`tracker`]: p2pd <-> tracker (a long-lived, multiplexed connection).
//! - [`raft`]: tracker <-> tracker (Raft RPCs, forwarded writes, presence).
//! - `codec` (feature `binary`): the trackers' binary encoding (MessagePack,
//!   marked) of their log, snapshots and frames; JSON is still read.
//! - [`peer`]: p2pd <-> p2pd (handshake, bitfield, piece requests, piece data).
//! - [`geometry`]: every piece/offset computation.
//! - [`hash`]: the SHA-1 digest type as it travels (40 lowercase hex
//!   digits; 20 bytes in the binary encoding). Computing digests is the `p2p-sha1` crate's (`proto/sha1/`),
//!   which p2pctl does not depend on.
//! - [`tracker_info`]: the one parser of `tracker_info.txt`.
//! - [`dirs`]: default state directories and the control socket's name.
//! - [`as_text`]: serde helper writing a field as its text in every
//!   encoding (socket addresses in logged types).
//! - [`units`]: byte counts and rates, parsed and shown in binary units.
//! - `service` (feature `service`): what `tracker` and `p2pd` share beyond
//!   the wire: logging, signals, the accept loop, durable file writes.
//! - `config_file` (feature `service`): paths and errors of the daemons'
//!   config files.
//! - `admission` (feature `service`): caps on the connections a listener
//!   holds (per source address, in total) and the open-files limit.

#[cfg(feature = "service")]
pub mod admission;
pub mod as_text;
#[cfg(feature = "binary")]
pub mod codec;
#[cfg(feature = "service")]
pub mod config_file;
pub mod ctl;
pub mod dirs;
pub mod error;
pub mod frame;
pub mod geometry;
pub mod hash;
pub mod ids;
pub mod peer;
pub mod raft;
#[cfg(feature = "service")]
pub mod service;
pub mod tracker;
pub mod tracker_info;
pub mod units;

pub use error::{ErrorCode, WireError};
pub use hash::Sha1Hash;
pub use ids::{FileName, GroupId, IdError, UserId};

/// Version of the control and tracker protocols. Sent first on each
/// connection so a mismatch reads as a clear message, not a decode error.
pub const PROTOCOL_VERSION: u32 = 1;
