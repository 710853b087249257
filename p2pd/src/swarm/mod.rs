//! The swarm engine: downloading a file from every online holder at once,
//! verified and resumable, and serving verified pieces to other members.
//!
//! # Modules
//!
//! - [`pieces`]: piece/block state of one download (`PieceTracker`): the
//!   invariant "each piece is exactly one of Have, InFlight, Wanted" and the
//!   transitions (`reserve_block`, `block_received`, `mark_verified`,
//!   `mark_corrupt`, `release_peer`), verified bytes in total and per peer.
//! - [`picker`]: which blocks to request from a peer next (`pick_blocks`,
//!   rarest first, random first piece, endgame), a pure function over the
//!   `Mediator` trait; `Availability` counts who has what.
//! - [`resume`]: the per-download record in `HOME/downloads/`.
//! - [`download`]: the task of one download (events, pipelines, resume
//!   saves, completion).
//! - [`peer_conn`]: one outgoing connection (we download from the peer).
//! - [`seeder`]: one incoming connection (we serve), and `authorize_peer`.
//! - [`wire`]: named timeouts, reading and writing peer frames.
//! - [`rate`]: the shared upload and download token buckets.
//! - [`prefix_hash`]: the whole-file SHA-1 of the verified prefix, computed
//!   on its own thread while the download runs.
//! - [`verifier`]: complete pieces, hashed in batches and written on one
//!   thread per download; `Assembly` keeps blocks until their piece is in.
//! - [`storage`]: final path resolution, `DEST.part`, positional block I/O,
//!   piece and whole-file hashing, the no-overwrite rename, piece frames read
//!   straight from disk for serving.
//!
//! # Design
//!
//! **One task per download.** It owns the download's `PieceTracker`,
//! `Availability`, `PartFile` and resume record; nothing else touches them,
//! so they need no lock. It:
//! 1. asks the tracker to `Locate` the file (meta + online peers) and for an
//!    `IssueTicket`; resolves the destination (`storage::resolve_destination`,
//!    refusing an existing final path with `io`); loads or creates the
//!    resume record and opens `DEST.part` (`PartMode::Resume` only if the
//!    record matches the meta's SHA-1 and size, else `Fresh`);
//! 2. connects to every peer (up to a cap), one connection task each, and
//!    from then on reacts to events from them on one `mpsc` channel:
//!    `Bitfield`/`Have` (update the peer's bitfield and `Availability`, then
//!    top up its pipeline), `Piece` (see below), `Reject` (`release_block`,
//!    top up), disconnected / stalled (`release_peer`, remove its bitfield
//!    from `Availability`, top up the others);
//! 3. re-`Locate`s from time to time (peers come online, partial holders
//!    appear) and pauses when no holder is online.
//!
//! **Pipelines.** A peer's pipeline is topped up to
//! `picker::PIPELINE_DEPTH_BLOCKS` outstanding requests: `pick_blocks(max =
//! depth - tracker.peer_outstanding(peer))`, then `reserve_block` for each
//! pick, then one `Request` per pick down the peer's writer channel. The top
//! up runs after every event of that peer, so a fast peer is never idle.
//!
//! **Endgame and cancel.** Once every missing block is requested, picks are
//! duplicates of other peers' requests. The first copy to arrive is accepted
//! (`BlockOutcome::Accepted { cancel, .. }`); the task sends `Cancel` to each
//! peer in `cancel` (their requests are already forgotten by the tracker). A
//! copy that crosses the `Cancel` comes back as `BlockOutcome::Duplicate` and
//! is dropped silently; a server receiving `Cancel` for a block it has queued
//! drops it from its queue, otherwise ignores it.
//!
//! **Blocks and verification.** A `Piece` message's frame buffer is kept
//! as it arrived (`verifier::Assembly`, data at
//! `proto::peer::PIECE_DATA_START`: no copy in user space) until every block
//! of its piece is in. The complete piece goes to the download's
//! `verifier::Verifier` thread, which hashes the pieces queued together
//! (`proto::hash::digest_many`: eight pieces in the lanes of one vector),
//! writes the matching ones into `DEST.part` and reports each verdict. A
//! match is `mark_verified` (then `Have` to every connected peer), a
//! mismatch is `mark_corrupt`, whose contributors are dropped for this
//! download and the piece fetched elsewhere; a corrupt piece never touches
//! the disk. At most `MAX_VERIFY_QUEUE` complete pieces wait for the
//! verifier (requests pause at that many), so memory stays bounded; the
//! file is never held in memory.
//!
//! **Whole-file hash.** A `prefix_hash::PrefixHasher` thread hashes the
//! file's verified prefix (pieces `0..k`, all verified) in order from
//! `DEST.part` as it grows, so the whole-file SHA-1 overlaps the download;
//! only verified bytes are ever fed to it. A resumed download starts it
//! again from byte 0; a pause drops it.
//!
//! **Completion.** When every piece is verified: the prefix hasher's digest
//! (only the tail is left to hash by then); if it equals the meta's SHA-1, `storage::finish` links `DEST.part` to `DEST`
//! (never overwriting), the share is registered (`RegisterFile`: the caller
//! is now a holder) and the resume record removed; otherwise the download
//! fails with `integrity`.
//!
//! **Partial seeding.** When the first piece is verified, the daemon sends
//! `MarkPartial` to the tracker; verified pieces are servable at once (the
//! seeder reads `DEST.part` for pieces in the download's `have` bitfield).
//!
//! **Resume.** Every `resume::RESUME_SAVE_INTERVAL` (and on pause, failure,
//! completion) the task does `PartFile::sync_data` and then `resume::save`,
//! so a record never lists a piece whose bytes are not durable. On login the
//! daemon loads `HOME/downloads/` (`resume::load_dir`) and restarts each
//! record's download; a corrupt record is logged and the download starts
//! over from zero.
//!
//! **Peer connections.** Each connection is a task owning its socket, split
//! into a reader future and a writer future fed by an `mpsc` channel of
//! outgoing frames, run under `select!`: whichever ends first ends the
//! connection. Every read, write and the handshake run under a named timeout
//! (`with_timeout("reading piece", ..)`); a peer with requests outstanding
//! that sends nothing for the stall timeout is dropped and its blocks
//! released. Frames are read with `proto::frame::read_frame(..,
//! MAX_PEER_FRAME_BYTES)` (length checked before allocating) and decoded
//! with `proto::peer::decode`; every `Piece` range is checked against our
//! own requests (`block_received`), every `Have`/`Bitfield` against the
//! piece count.
//!
//! **Seeder.** The peer listener accepts connections; for each, the
//! `Handshake` names group, file, SHA-1, user and ticket; the seeder asks
//! the tracker `CheckTicket` (the one place that decides who may fetch:
//! a logged-in member of the file's group) and requires the answer to name
//! the handshake's user, then answers `HandshakeOk` + its `Bitfield` (full for
//! a share; the verified pieces of a running download), or
//! `HandshakeReject`. Each `Request` is checked (`BlockRef::check`) and
//! answered with a frame built by `storage::fill_piece_frame` (header, then
//! the data read from disk into the same buffer) in `spawn_blocking`, or
//! `Reject` for a piece it does not have.

pub mod download;
pub mod peer_conn;
pub mod picker;
pub mod pieces;
pub mod pool;
pub mod prefix_hash;
pub mod rate;
pub mod resume;
pub mod seeder;
pub mod storage;
pub mod verifier;
pub mod wire;
