//! Property tests: every wire type decodes back to what was encoded, for
//! any value, and the framing never cuts or joins payloads. (The decoders
//! against hostile bytes are fuzzed with `cargo fuzz`: README "Fuzzing".)

use proptest::prelude::*;
use proto::frame::{read_frame, write_frame};
use proto::peer::{decode, encode_frame, encode_payload, BlockRef, Handshake, Message};
use proto::tracker_info;
use proto::Sha1Hash;
use std::net::SocketAddr;

fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{1,32}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn block() -> impl Strategy<Value = BlockRef> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(piece, offset, len)| BlockRef {
        piece,
        offset,
        len,
    })
}

fn handshake() -> impl Strategy<Value = Handshake> {
    (
        any::<u32>(),
        id(),
        id(),
        any::<[u8; 20]>(),
        "[ -~]{0,200}",
        id(),
        any::<bool>(),
    )
        .prop_map(
            |(version, group, name, sha1, ticket, user, crowd)| Handshake {
                version,
                group: group.parse().expect("a valid id"),
                name: name.parse().expect("a valid name"),
                sha1: Sha1Hash(sha1),
                ticket,
                user: user.parse().expect("a valid id"),
                crowd,
            },
        )
}

/// A message and the buffers it borrows from.
#[derive(Debug, Clone)]
enum Owned {
    Handshake(Handshake),
    HandshakeOk,
    Bitfield(Vec<u8>),
    Have(u32),
    Request(BlockRef),
    Piece(u32, u32, Vec<u8>),
    Cancel(BlockRef),
    Reject(BlockRef),
    KeepAlive,
    Ticket(String),
}

impl Owned {
    fn msg(&self) -> Message<'_> {
        match self {
            Owned::Handshake(h) => Message::Handshake(h.clone()),
            Owned::HandshakeOk => Message::HandshakeOk,
            Owned::Bitfield(b) => Message::Bitfield(b),
            Owned::Have(p) => Message::Have(*p),
            Owned::Request(b) => Message::Request(*b),
            Owned::Piece(piece, offset, data) => Message::Piece {
                piece: *piece,
                offset: *offset,
                data,
            },
            Owned::Cancel(b) => Message::Cancel(*b),
            Owned::Reject(b) => Message::Reject(*b),
            Owned::KeepAlive => Message::KeepAlive,
            Owned::Ticket(t) => Message::Ticket(t),
        }
    }
}

fn message() -> impl Strategy<Value = Owned> {
    prop_oneof![
        handshake().prop_map(Owned::Handshake),
        Just(Owned::HandshakeOk),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Owned::Bitfield),
        any::<u32>().prop_map(Owned::Have),
        block().prop_map(Owned::Request),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..2000)
        )
            .prop_map(|(p, o, d)| Owned::Piece(p, o, d)),
        block().prop_map(Owned::Cancel),
        block().prop_map(Owned::Reject),
        Just(Owned::KeepAlive),
        "[ -~]{0,200}".prop_map(Owned::Ticket),
    ]
}

proptest! {
    #[test]
    fn peer_messages_round_trip(m in message()) {
        let msg = m.msg();
        let mut payload = Vec::new();
        encode_payload(&msg, &mut payload).expect("encodes");
        prop_assert_eq!(decode(&payload).expect("decodes"), msg.clone());
        // The frame is the payload behind its length.
        let mut frame = Vec::new();
        encode_frame(&msg, &mut frame).expect("frames");
        prop_assert_eq!(&frame[4..], &payload[..]);
        prop_assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, payload.len());
    }

    #[test]
    fn frames_come_back_whole_and_in_order(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5000), 0..8)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let back = rt.block_on(async {
            let mut wire = Vec::new();
            for p in &payloads {
                write_frame(&mut wire, p, 1 << 20).await.expect("writes");
            }
            let mut r = &wire[..];
            let mut back = Vec::new();
            while let Some(f) = read_frame(&mut r, 1 << 20).await.expect("reads") {
                back.push(f);
            }
            back
        });
        prop_assert_eq!(back, payloads);
    }

    #[test]
    fn tracker_info_lists_what_was_written(
        ports in proptest::collection::vec(1u16.., 1..6),
        blank_lines in 0usize..3,
    ) {
        let addrs: Vec<SocketAddr> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| SocketAddr::from(([127, 0, 0, (i + 1) as u8], *p)))
            .collect();
        let mut text = "\n".repeat(blank_lines);
        for a in &addrs {
            text.push_str(&format!("{a}\n"));
        }
        let info = tracker_info::parse(&text).expect("parses");
        prop_assert_eq!(info.trackers, addrs);
    }
}
