//! The swarm engine: downloading a file from every online holder at once,
//! verified and resumable, and serving verified pieces to other members.
//!
//! It receives a narrow [`context::SwarmContext`] from the daemon (the
//! tracker client, the share set, the serve index, the rate limits, a task
//! tracker) and never reaches up into the daemon's other modules.
//!
//! # Modules
//!
//! - [`download`]: one download's whole life behind one entry point
//!   (`download::run`): locate, open or resume `.part`, the swarm, verify,
//!   finish, register, abandon. Its parts: the peer book, the hash gate,
//!   the saver, the status, the typed error, the event loop.
//! - [`seeder`]: one incoming connection (we serve): admission (ticket
//!   check), then requests answered from disk.
//! - [`fetchers`]: who fetches which file from us, told to each of them
//!   (`Fetchers`), so downloaders find each other fast.
//! - [`steering`]: which of our pieces each of a crowd of downloaders is
//!   shown, so that a whole file's seeder sends every piece once.
//! - [`serve_index`]: what may be served: shares, and verified pieces of
//!   downloads in progress.
//! - [`peer_conn`]: one outgoing connection (we download from the peer).
//! - [`pieces`]: piece/block state of one download (`PieceTracker`): the
//!   invariant "each piece is exactly one of Have, InFlight, Wanted" and its
//!   transitions, verified bytes in total and per peer.
//! - [`picker`]: which blocks to request from a peer next (`pick_blocks`,
//!   rarest first, random first piece, endgame), a pure function over the
//!   `Mediator` trait; `Availability` counts who has what.
//! - [`verifier`]: complete pieces hashed in batches and written on one
//!   thread per download; `Assembly` keeps blocks until their piece is in.
//! - [`prefix_hash`]: the whole-file SHA-1 of the verified prefix, on its
//!   own thread while the download runs.
//! - [`storage`]: final path resolution, `DEST.part`, positional block I/O,
//!   the no-overwrite rename, piece frames read straight from disk.
//! - [`resume`]: the per-download record in `HOME/downloads/`.
//! - [`wire`]: named timeouts, reading and writing peer frames.
//! - [`rate`]: the shared upload and download token buckets; rate meters.
//! - [`pool`]: recycled block buffers.
//! - [`context`]: what the engine receives from the daemon.
//!
//! # Design
//!
//! **Pipelines.** A peer's pipeline is topped up to its share of the
//! download's budget of outstanding requests (`picker::pipeline_depth`:
//! 48 blocks, 6 MiB, shared by the ready peers, at most 16 and at least 3
//! each; every outstanding block may be held in memory once it arrives, so
//! the budget bounds a download's memory whatever its number of peers):
//! `pick_blocks(max = depth - tracker.peer_outstanding(peer))`, then
//! `reserve_block` for each pick, then one `Request` per pick down the
//! peer's writer channel. The top up runs after every event of that peer,
//! so a fast peer is never idle.
//!
//! **Endgame and cancel.** Once every missing block is requested, picks are
//! duplicates of other peers' requests. The first copy to arrive is accepted
//! (`BlockOutcome::Accepted { cancel, .. }`); the download sends `Cancel` to
//! each peer in `cancel`. A copy that crosses the `Cancel` comes back as
//! `BlockOutcome::Duplicate` and is dropped silently; a server receiving
//! `Cancel` for a block it has queued drops it from its queue.
//!
//! **Blocks and verification.** A `Piece` message's frame buffer is kept as
//! it arrived (`verifier::Assembly`, data at `proto::peer::PIECE_DATA_START`:
//! no copy in user space) until every block of its piece is in. The complete
//! piece goes to the download's `verifier::Verifier` thread, which hashes
//! the pieces queued together (`p2p_sha1::digest_many`: eight pieces in
//! the lanes of one vector), writes the matching ones into `DEST.part` and
//! reports each verdict. A match is `mark_verified`, then servable at once
//! (the serve index's `watch` of verified pieces; connected servers send
//! `Have`); a mismatch is `mark_corrupt`, its contributors blamed (a sole
//! contributor is banned for the download) and the piece fetched elsewhere;
//! a corrupt piece never touches the disk. At most a dozen complete pieces
//! wait for the verifier (requests pause at that many), so memory stays
//! bounded; the file is never held in memory.
//!
//! **Whole-file hash.** A `prefix_hash::PrefixHasher` thread hashes the
//! file's verified prefix in order from `DEST.part` as it grows, so the
//! whole-file SHA-1 overlaps the download; requests pause while it lags too
//! far behind (`download::hash_gate`). At completion only the tail is left
//! to hash; if the digest equals the meta's SHA-1, `storage::finish` links
//! `DEST.part` to `DEST` (never overwriting), the file becomes a share and
//! is registered (we are a holder), and the resume record is removed;
//! otherwise the download fails with `integrity`.
//!
//! **Partial seeding.** When the first piece is verified, the download
//! sends `MarkPartial` to the tracker; its verified pieces are servable
//! from then on.
//!
//! **Resume.** Every `resume::RESUME_SAVE_INTERVAL` (and on pause) the
//! download syncs `DEST.part` and then saves its record, so a record never
//! lists a piece whose bytes are not durable. On login the daemon restarts
//! each saved record's download through the same `download::run`.
//!
//! **Peer connections.** Each connection is a task owning its socket, split
//! into a reader future and a writer future fed by an `mpsc` channel of
//! outgoing frames, run under `select!`: whichever ends first ends the
//! connection. Every read, write and the handshake run under a named timeout
//! (`with_timeout("reading piece", ..)`); a peer with requests outstanding
//! that sends nothing for the stall timeout is dropped and its blocks
//! released. Frames are read with a length checked against
//! `MAX_PEER_FRAME_BYTES` before allocating; every `Piece` range is checked
//! against our own requests (`block_received`), every `Have`/`Bitfield`
//! against the piece count.

pub mod context;
pub mod download;
pub mod fetchers;
pub mod lease;
pub mod peer_conn;
pub mod picker;
pub mod pieces;
pub mod pool;
pub mod prefix_hash;
pub mod rate;
pub mod resume;
pub mod seeder;
pub mod serve_index;
pub mod steering;
pub mod storage;
pub mod verifier;
pub mod wire;
