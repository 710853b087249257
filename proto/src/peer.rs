//! p2pd <-> p2pd: the piece protocol.
//!
//! Every message rides in one [`crate::frame`] frame (u32 big-endian length,
//! then the payload) of at most [`MAX_PEER_FRAME_BYTES`]. A payload is one
//! tag byte, then a body whose layout the tag fixes; integers are big-endian.
//!
//! | tag | message | body |
//! | --- | --- | --- |
//! | 0 | [`Message::Handshake`] | JSON [`Handshake`] |
//! | 1 | [`Message::HandshakeOk`] | empty |
//! | 2 | [`Message::HandshakeReject`] | JSON [`Refusal`] |
//! | 3 | [`Message::Bitfield`] | packed bits, piece 0 = high bit of byte 0 |
//! | 4 | [`Message::Have`] | piece u32 |
//! | 5 | [`Message::Request`] | piece u32, offset u32, len u32 |
//! | 6 | [`Message::Piece`] | piece u32, offset u32, then the raw data |
//! | 7 | [`Message::Cancel`] | piece u32, offset u32, len u32 |
//! | 8 | [`Message::Reject`] | piece u32, offset u32, len u32 |
//! | 9 | [`Message::KeepAlive`] | empty |
//! | 10 | [`Message::Ticket`] | the ticket, UTF-8 |
//! | 11 | [`Message::Fetchers`] | JSON array of user ids |
//!
//! Frames travel inside a TLS link on which both ends proved a key.
//! The connection is one-way in purpose: the side that connects downloads,
//! the side that accepts serves. The downloader sends `Handshake` (naming the
//! file and showing a tracker-signed ticket bound to its link key); the
//! server checks the ticket on its own and answers `HandshakeOk` then its
//! `Bitfield`, or `HandshakeReject` and closes. Then the downloader sends
//! `Request`/`Cancel`, and a fresh `Ticket` before the last one expires; the
//! server answers each request with `Piece` or `Reject` while the ticket is
//! live, and announces new pieces with `Have`, and who else fetches the same
//! file from it with `Fetchers` (so downloaders find each other, and know
//! to spread their picks, without waiting for their next look at the
//! tracker). The downloader sends `Have` for each piece it verifies, so a
//! server holding the whole file can steer a crowd: it may first show a
//! downloader only some of its pieces, and more as those arrive. Either
//! side may send `KeepAlive` when idle.
//!
//! Decoding never panics: every length is checked, a body must be exactly as
//! long as its tag says, and piece data borrows from the frame buffer
//! ([`decode`] copies nothing but handshake strings). Whether a range is legal
//! for a given file is a separate check, [`BlockRef::check`], since it needs
//! the file's size.
//!
//! Sending piece data copies nothing either: [`piece_frame_header`] gives the
//! frame prefix and message header for a block, and the sender reads the block
//! from disk into the same buffer right after it (rqbit's
//! `serialize_piece_preamble`).

pub use crate::frame::MAX_PEER_FRAME_BYTES;
use crate::geometry::{self, BlockRangeError, BLOCK_SIZE_BYTES};
use crate::{FileName, GroupId, Sha1Hash, UserId, WireError};
use serde::{Deserialize, Serialize};

/// Version of the peer protocol, first field of the handshake.
pub const PEER_PROTOCOL_VERSION: u32 = 1;
/// Longest ticket accepted (a signed ticket is about 140 characters).
pub const MAX_TICKET_BYTES: usize = 256;
/// Longest handshake JSON accepted (names are bounded; this leaves room).
pub const MAX_HANDSHAKE_BYTES: usize = 4 * 1024;
/// Users named in one `Fetchers` message at most (a server with more
/// names a sample), and the most bytes its body may take.
pub const MAX_FETCHERS_LISTED: usize = 48;
pub const MAX_FETCHERS_BYTES: usize = 4 * 1024;
/// Length of the frame length prefix.
pub const FRAME_PREFIX_BYTES: usize = 4;
/// Tag, piece and offset of a `Piece` message, before the data.
pub const PIECE_HEADER_BYTES: usize = 1 + 4 + 4;
/// Frame prefix plus piece header: where the data starts in a whole frame.
pub const PIECE_FRAME_HEADER_BYTES: usize = FRAME_PREFIX_BYTES + PIECE_HEADER_BYTES;
/// Where piece data starts in a payload as [`crate::frame::read_frame`]
/// returns it (no prefix).
pub const PIECE_DATA_START: usize = PIECE_HEADER_BYTES;

// A full block and its header fit in one peer frame.
const _: () =
    assert!(PIECE_HEADER_BYTES + BLOCK_SIZE_BYTES as usize <= MAX_PEER_FRAME_BYTES as usize);

mod tag {
    pub const HANDSHAKE: u8 = 0;
    pub const HANDSHAKE_OK: u8 = 1;
    pub const HANDSHAKE_REJECT: u8 = 2;
    pub const BITFIELD: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const REQUEST: u8 = 5;
    pub const PIECE: u8 = 6;
    pub const CANCEL: u8 = 7;
    pub const REJECT: u8 = 8;
    pub const KEEP_ALIVE: u8 = 9;
    pub const TICKET: u8 = 10;
    pub const FETCHERS: u8 = 11;
}

/// What a downloader says first: which file, and the proof it may fetch it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    /// [`PEER_PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    pub group: GroupId,
    pub name: FileName,
    /// SHA-1 of the whole file, so both sides mean the same content.
    pub sha1: Sha1Hash,
    /// From the tracker's `IssueTicket`; the server checks it on its own
    /// (`p2p_link::ticket`) against this handshake's user, group and file
    /// and the link key the downloader proved.
    pub ticket: String,
    /// Who the downloader says it is; the ticket must name the same user.
    pub user: UserId,
    /// The downloader takes part in a crowd: it understands `Fetchers` and
    /// sends `Have` for each piece it verifies, so the server may steer it.
    /// Absent (false) from daemons that predate it, which are served
    /// plainly; servers that predate it ignore it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub crowd: bool,
}

/// A byte range of one piece: what `Request`, `Cancel` and `Reject` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub piece: u32,
    /// Offset inside the piece.
    pub offset: u32,
    pub len: u32,
}

impl BlockRef {
    /// Checks the range against a file of `size` bytes: an existing piece,
    /// `1..=BLOCK_SIZE_BYTES` bytes, not past the piece's end.
    ///
    /// # Errors
    /// The first rule broken; a server answers it by dropping the peer.
    pub fn check(&self, size: u64) -> Result<(), BlockRangeError> {
        geometry::check_block_range(size, self.piece, self.offset, self.len)
    }

    /// Byte offset of the range in the file.
    pub fn file_offset(&self) -> u64 {
        geometry::file_offset(self.piece, self.offset)
    }
}

/// Why a serving peer refused a handshake: a reason the downloader acts on
/// (a `ticket` refusal makes it fetch a new ticket), and a sentence for
/// people. On the wire: the [`WireError`]'s fields plus `reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error}")]
pub struct Refusal {
    #[serde(default)]
    pub reason: RefusalReason,
    #[serde(flatten)]
    pub error: WireError,
}

/// What a [`Refusal`] means for the downloader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// Another peer protocol version.
    Version,
    /// The server does not hold that file (any more).
    NotServed,
    /// The ticket is unknown, expired or for another file: a new one may do.
    Ticket,
    /// The requester may not fetch it (not a logged-in member).
    Denied,
    /// The server could not decide now (its tracker is unreachable, it is
    /// not logged in itself).
    #[default]
    Unavailable,
}

impl Refusal {
    pub fn new(reason: RefusalReason, error: WireError) -> Refusal {
        Refusal { reason, error }
    }
}

/// One peer message. Borrowed parts point into the decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Handshake(Handshake),
    HandshakeOk,
    HandshakeReject(Refusal),
    /// The sender's verified pieces; check with [`Bitfield::from_bytes`].
    Bitfield(&'a [u8]),
    Have(u32),
    Request(BlockRef),
    Piece {
        piece: u32,
        offset: u32,
        data: &'a [u8],
    },
    Cancel(BlockRef),
    /// The server will not send this block (choked, not held, busy).
    Reject(BlockRef),
    KeepAlive,
    /// A fresh ticket from the downloader, for the same file on the same
    /// link: the server serves only while the latest ticket is live, so a
    /// member who leaves stops receiving bytes once it expires.
    Ticket(&'a str),
    /// From the server: the other users fetching this file from it now
    /// (at most [`MAX_FETCHERS_LISTED`]; the whole list each time, empty
    /// when none is left). A hint, not a credential: the downloader asks
    /// the tracker for their addresses and keys.
    Fetchers(Vec<UserId>),
}

/// Why a payload is not a peer message.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("empty peer message")]
    Empty,
    #[error("unknown peer message tag {0}")]
    UnknownTag(u8),
    #[error("{what} body is {got} bytes; expected {expected}")]
    BadLength {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{what} body of {got} bytes exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("piece message shorter than its header ({got} bytes)")]
    ShortPieceHeader { got: usize },
    #[error("malformed {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("ticket of {0} bytes is too long")]
    TicketTooLong(usize),
    #[error("a ticket is text")]
    BadTicket,
    #[error("fetchers list of {0} users exceeds the limit of {MAX_FETCHERS_LISTED}")]
    TooManyFetchers(usize),
    #[error("message does not fit in a peer frame ({0} bytes)")]
    FrameTooLarge(usize),
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(w)
}

fn exact<'a>(what: &'static str, body: &'a [u8], expected: usize) -> Result<&'a [u8], PeerError> {
    if body.len() != expected {
        return Err(PeerError::BadLength {
            what,
            got: body.len(),
            expected,
        });
    }
    Ok(body)
}

fn block_ref(what: &'static str, body: &[u8]) -> Result<BlockRef, PeerError> {
    let b = exact(what, body, 12)?;
    Ok(BlockRef {
        piece: be_u32(b, 0),
        offset: be_u32(b, 4),
        len: be_u32(b, 8),
    })
}

/// Decodes one frame payload (as [`crate::frame::read_frame`] returns it).
///
/// # Errors
/// A [`PeerError`] for anything but a well-formed message; the connection
/// should end, since the peer does not speak the protocol.
pub fn decode(payload: &[u8]) -> Result<Message<'_>, PeerError> {
    let (&t, body) = payload.split_first().ok_or(PeerError::Empty)?;
    Ok(match t {
        tag::HANDSHAKE => {
            if body.len() > MAX_HANDSHAKE_BYTES {
                return Err(PeerError::TooLong {
                    what: "handshake",
                    got: body.len(),
                    max: MAX_HANDSHAKE_BYTES,
                });
            }
            let h: Handshake = serde_json::from_slice(body).map_err(|source| PeerError::Json {
                what: "handshake",
                source,
            })?;
            if h.ticket.len() > MAX_TICKET_BYTES {
                return Err(PeerError::TicketTooLong(h.ticket.len()));
            }
            Message::Handshake(h)
        }
        tag::HANDSHAKE_OK => {
            exact("handshake ok", body, 0)?;
            Message::HandshakeOk
        }
        tag::HANDSHAKE_REJECT => {
            if body.len() > MAX_HANDSHAKE_BYTES {
                return Err(PeerError::TooLong {
                    what: "handshake reject",
                    got: body.len(),
                    max: MAX_HANDSHAKE_BYTES,
                });
            }
            Message::HandshakeReject(serde_json::from_slice(body).map_err(|source| {
                PeerError::Json {
                    what: "handshake reject",
                    source,
                }
            })?)
        }
        tag::BITFIELD => Message::Bitfield(body),
        tag::HAVE => Message::Have(be_u32(exact("have", body, 4)?, 0)),
        tag::REQUEST => Message::Request(block_ref("request", body)?),
        tag::PIECE => {
            if body.len() < 8 {
                return Err(PeerError::ShortPieceHeader { got: payload.len() });
            }
            Message::Piece {
                piece: be_u32(body, 0),
                offset: be_u32(body, 4),
                data: &body[8..],
            }
        }
        tag::CANCEL => Message::Cancel(block_ref("cancel", body)?),
        tag::REJECT => Message::Reject(block_ref("reject", body)?),
        tag::KEEP_ALIVE => {
            exact("keep-alive", body, 0)?;
            Message::KeepAlive
        }
        tag::TICKET => {
            if body.len() > MAX_TICKET_BYTES {
                return Err(PeerError::TicketTooLong(body.len()));
            }
            Message::Ticket(std::str::from_utf8(body).map_err(|_| PeerError::BadTicket)?)
        }
        tag::FETCHERS => {
            if body.len() > MAX_FETCHERS_BYTES {
                return Err(PeerError::TooLong {
                    what: "fetchers",
                    got: body.len(),
                    max: MAX_FETCHERS_BYTES,
                });
            }
            let users: Vec<UserId> =
                serde_json::from_slice(body).map_err(|source| PeerError::Json {
                    what: "fetchers",
                    source,
                })?;
            if users.len() > MAX_FETCHERS_LISTED {
                return Err(PeerError::TooManyFetchers(users.len()));
            }
            Message::Fetchers(users)
        }
        other => return Err(PeerError::UnknownTag(other)),
    })
}

fn push_block_ref(out: &mut Vec<u8>, t: u8, b: &BlockRef) {
    out.push(t);
    out.extend_from_slice(&b.piece.to_be_bytes());
    out.extend_from_slice(&b.offset.to_be_bytes());
    out.extend_from_slice(&b.len.to_be_bytes());
}

/// Appends `msg`'s payload (no frame prefix) to `out`.
///
/// # Errors
/// [`PeerError::Json`] if a handshake cannot be serialised (it always can).
pub fn encode_payload(msg: &Message<'_>, out: &mut Vec<u8>) -> Result<(), PeerError> {
    match msg {
        Message::Handshake(h) => {
            out.push(tag::HANDSHAKE);
            serde_json::to_writer(&mut *out, h).map_err(|source| PeerError::Json {
                what: "handshake",
                source,
            })?;
        }
        Message::HandshakeOk => out.push(tag::HANDSHAKE_OK),
        Message::HandshakeReject(e) => {
            out.push(tag::HANDSHAKE_REJECT);
            serde_json::to_writer(&mut *out, e).map_err(|source| PeerError::Json {
                what: "handshake reject",
                source,
            })?;
        }
        Message::Bitfield(bits) => {
            out.push(tag::BITFIELD);
            out.extend_from_slice(bits);
        }
        Message::Have(p) => {
            out.push(tag::HAVE);
            out.extend_from_slice(&p.to_be_bytes());
        }
        Message::Request(b) => push_block_ref(out, tag::REQUEST, b),
        Message::Piece {
            piece,
            offset,
            data,
        } => {
            out.push(tag::PIECE);
            out.extend_from_slice(&piece.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(data);
        }
        Message::Cancel(b) => push_block_ref(out, tag::CANCEL, b),
        Message::Reject(b) => push_block_ref(out, tag::REJECT, b),
        Message::KeepAlive => out.push(tag::KEEP_ALIVE),
        Message::Ticket(t) => {
            out.push(tag::TICKET);
            out.extend_from_slice(t.as_bytes());
        }
        Message::Fetchers(users) => {
            if users.len() > MAX_FETCHERS_LISTED {
                return Err(PeerError::TooManyFetchers(users.len()));
            }
            out.push(tag::FETCHERS);
            serde_json::to_writer(&mut *out, users).map_err(|source| PeerError::Json {
                what: "fetchers",
                source,
            })?;
        }
    }
    Ok(())
}

/// Appends `msg` as one whole frame (length prefix, then payload) to `out`,
/// ready for `write_all`. Several frames may be appended to one buffer.
///
/// # Errors
/// [`PeerError::FrameTooLarge`] if the payload exceeds
/// [`MAX_PEER_FRAME_BYTES`]; `out` is then left as it was.
pub fn encode_frame(msg: &Message<'_>, out: &mut Vec<u8>) -> Result<(), PeerError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX_BYTES]);
    if let Err(e) = encode_payload(msg, out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - FRAME_PREFIX_BYTES;
    match u32::try_from(len) {
        Ok(l) if l <= MAX_PEER_FRAME_BYTES => {
            out[start..start + FRAME_PREFIX_BYTES].copy_from_slice(&l.to_be_bytes());
            Ok(())
        }
        _ => {
            out.truncate(start);
            Err(PeerError::FrameTooLarge(len))
        }
    }
}

/// The bytes of a whole `Piece` frame that come before its `len` data bytes:
/// frame prefix, tag, piece, offset. A sender puts these in a buffer of
/// `PIECE_FRAME_HEADER_BYTES + len` bytes, reads the block from disk into the
/// rest (`read_exact_at`), and writes the buffer; no other copy is made.
///
/// # Errors
/// [`PeerError::TooLong`] if `len` exceeds [`BLOCK_SIZE_BYTES`] (checked so
/// the frame always fits the peer limit).
pub fn piece_frame_header(
    piece: u32,
    offset: u32,
    len: u32,
) -> Result<[u8; PIECE_FRAME_HEADER_BYTES], PeerError> {
    if len > BLOCK_SIZE_BYTES {
        return Err(PeerError::TooLong {
            what: "piece",
            got: len as usize,
            max: BLOCK_SIZE_BYTES as usize,
        });
    }
    let payload_len = PIECE_HEADER_BYTES as u32 + len;
    let mut h = [0u8; PIECE_FRAME_HEADER_BYTES];
    h[0..4].copy_from_slice(&payload_len.to_be_bytes());
    h[4] = tag::PIECE;
    h[5..9].copy_from_slice(&piece.to_be_bytes());
    h[9..13].copy_from_slice(&offset.to_be_bytes());
    Ok(h)
}

// ---------------------------------------------------------------------------
// Bitfield
// ---------------------------------------------------------------------------

/// Why bytes are not a bitfield for a given piece count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    #[error("bitfield of {got} bytes for {pieces} pieces; expected {expected} bytes")]
    WrongLength {
        pieces: u32,
        got: usize,
        expected: usize,
    },
    #[error("bitfield sets bits past its last piece")]
    SpareBitsSet,
    #[error("piece {piece} is out of range ({pieces} pieces)")]
    OutOfRange { piece: u32, pieces: u32 },
}

/// One bit per piece, packed high bit first (piece 0 is `0x80` of byte 0);
/// spare bits in the last byte are always zero. `count` is kept up to date,
/// so it is O(1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: u32,
    ones: u32,
}

fn byte_len(pieces: u32) -> usize {
    pieces.div_ceil(8) as usize
}

impl Bitfield {
    /// All zero, `pieces` long.
    pub fn new(pieces: u32) -> Self {
        Bitfield {
            bits: vec![0; byte_len(pieces)],
            len: pieces,
            ones: 0,
        }
    }

    /// All one, `pieces` long (a complete holder).
    pub fn full(pieces: u32) -> Self {
        let mut bits = vec![0xFF; byte_len(pieces)];
        let spare = (bits.len() * 8) as u64 - pieces as u64;
        if let Some(last) = bits.last_mut() {
            *last &= 0xFFu8 << spare;
        }
        Bitfield {
            bits,
            len: pieces,
            ones: pieces,
        }
    }

    /// Takes bytes as they came off the wire or from disk.
    ///
    /// # Errors
    /// [`BitfieldError::WrongLength`] unless there are exactly
    /// `ceil(pieces / 8)` bytes; [`BitfieldError::SpareBitsSet`] if a bit
    /// past the last piece is one.
    pub fn from_bytes(bytes: &[u8], pieces: u32) -> Result<Self, BitfieldError> {
        let expected = byte_len(pieces);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                pieces,
                got: bytes.len(),
                expected,
            });
        }
        let spare = (expected * 8) as u64 - pieces as u64;
        if let Some(&last) = bytes.last() {
            // spare < 8, so the mask is the low `spare` bits.
            if last & ((1u16 << spare) - 1) as u8 != 0 {
                return Err(BitfieldError::SpareBitsSet);
            }
        }
        Ok(Bitfield {
            bits: bytes.to_vec(),
            len: pieces,
            ones: bytes.iter().map(|b| b.count_ones()).sum(),
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Number of pieces the field covers.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `piece` is set; `false` past the end.
    pub fn has(&self, piece: u32) -> bool {
        piece < self.len && self.bits[(piece / 8) as usize] & (0x80 >> (piece % 8)) != 0
    }

    /// Sets `piece`; returns whether it was newly set.
    ///
    /// # Errors
    /// [`BitfieldError::OutOfRange`] past the end (a peer's `Have` may say
    /// anything).
    pub fn set(&mut self, piece: u32) -> Result<bool, BitfieldError> {
        if piece >= self.len {
            return Err(BitfieldError::OutOfRange {
                piece,
                pieces: self.len,
            });
        }
        let byte = &mut self.bits[(piece / 8) as usize];
        let mask = 0x80 >> (piece % 8);
        let new = *byte & mask == 0;
        *byte |= mask;
        self.ones += u32::from(new);
        Ok(new)
    }

    /// Clears `piece` (no-op past the end); returns whether it was set.
    pub fn unset(&mut self, piece: u32) -> bool {
        if !self.has(piece) {
            return false;
        }
        self.bits[(piece / 8) as usize] &= !(0x80 >> (piece % 8));
        self.ones -= 1;
        true
    }

    /// Number of pieces set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    /// Every piece set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// The set pieces, ascending.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&p| self.has(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn handshake() -> Handshake {
        Handshake {
            version: PEER_PROTOCOL_VERSION,
            group: "g1".parse().unwrap(),
            name: "my file.iso".parse().unwrap(),
            sha1: Sha1Hash([7; 20]),
            ticket: "0123456789abcdef0123456789abcdef".into(),
            user: "bob".parse().unwrap(),
            crowd: true,
        }
    }

    #[test]
    fn a_handshake_from_an_older_daemon_is_no_crowd_member() {
        let mut old = serde_json::to_value(handshake()).unwrap();
        old.as_object_mut().unwrap().remove("crowd");
        let hs: Handshake = serde_json::from_value(old).unwrap();
        assert!(!hs.crowd);
        let plain = Handshake {
            crowd: false,
            ..handshake()
        };
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("crowd"), "left out when false: {json}");
    }

    #[test]
    fn a_refusal_is_a_wire_error_plus_a_reason() {
        let r = Refusal::new(
            RefusalReason::Ticket,
            WireError::new(crate::ErrorCode::InvalidArgument, "expired ticket"),
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["reason"], "ticket");
        assert_eq!(json["code"], "invalid_argument");
        assert_eq!(json["message"], "expired ticket");
        // A bare WireError (no reason) still decodes.
        let bare = br#"{"code":"not_member","message":"no"}"#;
        let r: Refusal = serde_json::from_slice(bare).unwrap();
        assert_eq!(r.reason, RefusalReason::Unavailable);
        assert_eq!(r.error.code, crate::ErrorCode::NotMember);
    }

    fn samples(data: &[u8]) -> Vec<Message<'_>> {
        let b = BlockRef {
            piece: 7,
            offset: BLOCK_SIZE_BYTES,
            len: 1234,
        };
        vec![
            Message::Handshake(handshake()),
            Message::HandshakeOk,
            Message::HandshakeReject(Refusal::new(
                RefusalReason::Ticket,
                WireError::new(crate::ErrorCode::InvalidArgument, "expired ticket"),
            )),
            Message::Bitfield(&[0xA0]),
            Message::Bitfield(&[]),
            Message::Have(u32::MAX),
            Message::Request(b),
            Message::Piece {
                piece: 3,
                offset: 5,
                data,
            },
            Message::Piece {
                piece: 0,
                offset: 0,
                data: &[],
            },
            Message::Cancel(b),
            Message::Reject(b),
            Message::KeepAlive,
            Message::Ticket("1045.abcd"),
            Message::Ticket(""),
            Message::Fetchers(vec![]),
            Message::Fetchers(vec!["alice".parse().unwrap(), "bob.2".parse().unwrap()]),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        let data: Vec<u8> = (0..BLOCK_SIZE_BYTES).map(|i| i as u8).collect();
        for msg in samples(&data) {
            let mut payload = Vec::new();
            encode_payload(&msg, &mut payload).unwrap();
            assert_eq!(decode(&payload).unwrap(), msg);

            let mut frame = vec![0xEE]; // appending keeps what was there
            encode_frame(&msg, &mut frame).unwrap();
            assert_eq!(frame[0], 0xEE);
            assert_eq!(be_u32(&frame, 1) as usize, payload.len());
            assert_eq!(&frame[1 + FRAME_PREFIX_BYTES..], &payload[..]);
        }
    }

    #[tokio::test]
    async fn frames_read_back_through_frame_reader() {
        let data = vec![9u8; 100];
        let mut wire = Vec::new();
        for msg in samples(&data) {
            encode_frame(&msg, &mut wire).unwrap();
        }
        let mut r = &wire[..];
        for msg in samples(&data) {
            let payload = crate::frame::read_frame(&mut r, MAX_PEER_FRAME_BYTES)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(decode(&payload).unwrap(), msg);
        }
    }

    #[test]
    fn piece_header_then_data_is_a_piece_frame() {
        let data = vec![42u8; 300];
        let mut buf = piece_frame_header(9, 128, 300).unwrap().to_vec();
        buf.extend_from_slice(&data);
        let mut want = Vec::new();
        encode_frame(
            &Message::Piece {
                piece: 9,
                offset: 128,
                data: &data,
            },
            &mut want,
        )
        .unwrap();
        assert_eq!(buf, want);
        let payload = &buf[FRAME_PREFIX_BYTES..];
        assert_eq!(&payload[PIECE_DATA_START..], &data[..]);
        assert!(piece_frame_header(0, 0, BLOCK_SIZE_BYTES).is_ok());
        assert!(piece_frame_header(0, 0, BLOCK_SIZE_BYTES + 1).is_err());
    }

    #[test]
    fn oversized_frame_is_refused_and_leaves_buffer_alone() {
        let data = vec![0u8; MAX_PEER_FRAME_BYTES as usize];
        let mut out = vec![1, 2, 3];
        let msg = Message::Piece {
            piece: 0,
            offset: 0,
            data: &data,
        };
        assert!(matches!(
            encode_frame(&msg, &mut out),
            Err(PeerError::FrameTooLarge(_))
        ));
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let data = vec![1u8; 64];
        for msg in samples(&data) {
            let mut payload = Vec::new();
            encode_payload(&msg, &mut payload).unwrap();
            for cut in 0..payload.len() {
                let short = &payload[..cut];
                // A bitfield, piece or ticket body has no fixed length: a cut
                // one is a different (shorter) message, which the caller's
                // range, bitfield and ticket checks refuse. Everything else
                // must fail here.
                match (decode(short), &msg) {
                    (Err(_), _) => {}
                    (Ok(Message::Bitfield(_)), Message::Bitfield(_)) => {}
                    (Ok(Message::Ticket(_)), Message::Ticket(_)) => {}
                    (Ok(Message::Piece { data: d, .. }), Message::Piece { data: full, .. })
                        if cut >= PIECE_HEADER_BYTES && d.len() < full.len() => {}
                    (Ok(other), _) => panic!("{msg:?} cut at {cut} decoded as {other:?}"),
                }
            }
        }
    }

    #[test]
    fn fetchers_lists_are_bounded_and_made_of_valid_ids() {
        // The longest ids, as many as allowed, fit the body limit.
        let long: Vec<UserId> = (0..MAX_FETCHERS_LISTED)
            .map(|i| format!("{i:0>64}").parse().unwrap())
            .collect();
        let mut payload = Vec::new();
        encode_payload(&Message::Fetchers(long.clone()), &mut payload).unwrap();
        assert!(payload.len() - 1 <= MAX_FETCHERS_BYTES);
        assert_eq!(decode(&payload).unwrap(), Message::Fetchers(long.clone()));
        // One more is refused both ways.
        let mut more = long;
        more.push("x".parse().unwrap());
        assert!(matches!(
            encode_payload(&Message::Fetchers(more), &mut Vec::new()),
            Err(PeerError::TooManyFetchers(49))
        ));
        let many = format!("{:?}", vec!["a"; MAX_FETCHERS_LISTED + 1]);
        let hostile = [&[tag::FETCHERS][..], many.as_bytes()].concat();
        assert!(matches!(
            decode(&hostile),
            Err(PeerError::TooManyFetchers(49))
        ));
        // Invalid ids, other JSON, and oversized bodies are errors.
        for body in [
            &br#"["../etc"]"#[..],
            br#"[""]"#,
            br#"{"a":1}"#,
            br#"[1,2]"#,
            &vec![b' '; MAX_FETCHERS_BYTES + 1],
        ] {
            let p = [&[tag::FETCHERS][..], body].concat();
            assert!(decode(&p).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn trailing_bytes_are_an_error_for_fixed_messages() {
        for payload in [
            &[tag::HAVE, 0, 0, 0, 1, 0][..],
            &[tag::HANDSHAKE_OK, 0],
            &[tag::KEEP_ALIVE, 0],
            &[tag::REQUEST, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9],
        ] {
            assert!(decode(payload).is_err(), "{payload:?}");
        }
        assert!(matches!(decode(&[200]), Err(PeerError::UnknownTag(200))));
        assert!(matches!(decode(&[]), Err(PeerError::Empty)));
    }

    #[test]
    fn hostile_handshakes_are_refused() {
        let mut h = serde_json::to_value(handshake()).unwrap();
        h["name"] = "../etc/passwd".into();
        let mut p = vec![tag::HANDSHAKE];
        p.extend(serde_json::to_vec(&h).unwrap());
        assert!(matches!(decode(&p), Err(PeerError::Json { .. })));

        let mut h = handshake();
        h.ticket = "x".repeat(MAX_TICKET_BYTES + 1);
        let mut p = Vec::new();
        encode_payload(&Message::Handshake(h), &mut p).unwrap();
        assert!(matches!(decode(&p), Err(PeerError::TicketTooLong(_))));

        let mut p = vec![tag::HANDSHAKE];
        p.resize(1 + MAX_HANDSHAKE_BYTES + 1, b' ');
        assert!(matches!(decode(&p), Err(PeerError::TooLong { .. })));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let mut buf = Vec::new();
        for i in 0..20_000 {
            let len = rng.gen_range(0..64);
            buf.clear();
            buf.extend((0..len).map(|_| rng.gen::<u8>()));
            if i % 2 == 0 && !buf.is_empty() {
                buf[0] %= 11; // mostly valid tags, to reach the body decoders
            }
            if let Ok(msg) = decode(&buf) {
                // Whatever decodes re-encodes to the same bytes.
                let mut again = Vec::new();
                encode_payload(&msg, &mut again).unwrap();
                if !matches!(msg, Message::Handshake(_) | Message::HandshakeReject(_)) {
                    assert_eq!(again, buf);
                }
            }
            let pieces = rng.gen_range(0..100);
            let _ = Bitfield::from_bytes(&buf, pieces);
        }
    }

    #[test]
    fn block_ref_checks_use_geometry() {
        let size = geometry::PIECE_SIZE_BYTES + 10;
        let ok = BlockRef {
            piece: 1,
            offset: 0,
            len: 10,
        };
        assert!(ok.check(size).is_ok());
        assert_eq!(ok.file_offset(), geometry::PIECE_SIZE_BYTES);
        for bad in [
            BlockRef { len: 11, ..ok },
            BlockRef { piece: 2, ..ok },
            BlockRef { len: 0, ..ok },
            BlockRef {
                piece: 0,
                offset: 0,
                len: BLOCK_SIZE_BYTES + 1,
            },
            BlockRef {
                piece: 0,
                offset: u32::MAX,
                len: 1,
            },
        ] {
            assert!(bad.check(size).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bitfield_basics() {
        let mut b = Bitfield::new(10);
        assert_eq!(b.as_bytes(), &[0, 0]);
        assert_eq!(b.set(0), Ok(true));
        assert_eq!(b.set(0), Ok(false));
        assert_eq!(b.set(9), Ok(true));
        assert!(b.set(10).is_err());
        assert!(b.has(0) && b.has(9) && !b.has(1) && !b.has(10) && !b.has(u32::MAX));
        assert_eq!(b.count(), 2);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.ones().collect::<Vec<_>>(), [0, 9]);
        assert!(b.unset(9));
        assert!(!b.unset(9));
        assert_eq!(b.count(), 1);
        let back = Bitfield::from_bytes(b.as_bytes(), 10).unwrap();
        assert_eq!(back, b);

        let full = Bitfield::full(10);
        assert_eq!(full.as_bytes(), &[0xFF, 0xC0]);
        assert!(full.is_full());
        assert_eq!(Bitfield::from_bytes(full.as_bytes(), 10).unwrap(), full);
        assert_eq!(Bitfield::full(8).as_bytes(), &[0xFF]);
        assert_eq!(Bitfield::full(0).as_bytes(), &[] as &[u8]);
        assert!(Bitfield::new(0).is_full() && Bitfield::new(0).is_empty());
    }

    #[test]
    fn bitfield_validation() {
        assert_eq!(
            Bitfield::from_bytes(&[0xFF, 0xE0], 10),
            Err(BitfieldError::SpareBitsSet)
        );
        assert!(matches!(
            Bitfield::from_bytes(&[0xFF], 10),
            Err(BitfieldError::WrongLength { .. })
        ));
        assert!(matches!(
            Bitfield::from_bytes(&[0, 0, 0], 10),
            Err(BitfieldError::WrongLength { .. })
        ));
        assert!(Bitfield::from_bytes(&[], 0).is_ok());
        assert!(Bitfield::from_bytes(&[0], 0).is_err());
        assert_eq!(Bitfield::from_bytes(&[0x01], 8).unwrap().count(), 1);
        assert_eq!(
            Bitfield::from_bytes(&[0x01], 7),
            Err(BitfieldError::SpareBitsSet)
        );
    }
}
