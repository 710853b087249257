//! The encoding of the trackers' own messages, compared on what they carry
//! under write load: JSON (before), MessagePack with structs as maps (what
//! `proto::codec` uses) and postcard (positional, the most compact).
//!
//! ```text
//! cargo bench -p tracker --bench codec            # every payload, every codec
//! cargo bench -p tracker --bench codec -- --quick  # fewer rounds
//! ```
//!
//! Payloads: a Raft append of one group-commit entry holding 200
//! registrations (the leader writes it to its log, reads it back for each
//! follower, each follower decodes it), the same registrations' file
//! metadata alone (the shape postcard can read: it has no tagged enums),
//! and a snapshot: the state after 20,000 registrations (the load
//! benchmark's state is 2.5 times that by the end of its write phase).
//! Printed per payload and codec: size, encode and decode time per
//! message (median of the rounds), and both as a ratio to JSON's.

use openraft::{Entry, EntryPayload, LogId, Vote};
use proto::geometry::{piece_count, PIECE_SIZE_BYTES};
use proto::tracker::{FileMeta, RequestId, SessionToken};
use proto::Sha1Hash;
use rand::{Rng, SeedableRng};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Instant;
use tracker::raft::network::RaftRpc;
use tracker::raft::TypeConfig;
use tracker::state::{Caps, Command, TrackerState};

/// Writes in the group-commit entry: about what a leader batches at
/// 2,000 writes/s.
const WRITES: usize = 200;

fn registrations(rng: &mut impl Rng) -> Vec<FileMeta> {
    (0..WRITES)
        .map(|i| {
            // 1..64 MiB, as the load generator registers: 2..128 pieces.
            let size = rng.gen_range(1..=64u64) << 20;
            let mut hash = || Sha1Hash(rng.gen());
            FileMeta {
                name: format!("w{i}.bin").parse().expect("valid name"),
                size,
                sha1: hash(),
                piece_size: PIECE_SIZE_BYTES,
                pieces: (0..piece_count(size)).map(|_| hash()).collect(),
            }
        })
        .collect()
}

fn append(metas: &[FileMeta]) -> RaftRpc {
    let writes = metas
        .iter()
        .enumerate()
        .map(|(i, meta)| Command::Dedup {
            request: RequestId {
                client: i as u64,
                seq: 7,
            },
            at_ms: 1_764_000_000_000,
            write: Box::new(Command::Capped {
                caps: Caps::default(),
                write: Box::new(Command::RegisterFile {
                    token: SessionToken("0123456789abcdef0123456789abcdef".into()),
                    group: "g1".parse().expect("valid group"),
                    meta: meta.clone(),
                }),
            }),
        })
        .collect();
    let entry: Entry<TypeConfig> = Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(3, 1), 12_345),
        payload: EntryPayload::Normal(Command::Batch { writes }),
    };
    RaftRpc::AppendEntries(openraft::raft::AppendEntriesRequest {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 12_344)),
        entries: vec![entry],
        leader_commit: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 12_340)),
    })
}

struct Codec {
    name: &'static str,
    encode: fn(&dyn erased::Value) -> Result<Vec<u8>, String>,
}

/// Encoding through a `dyn` so one table of codecs serves every payload.
mod erased {
    pub trait Value {
        fn json(&self) -> Result<Vec<u8>, String>;
        fn msgpack(&self) -> Result<Vec<u8>, String>;
        fn postcard(&self) -> Result<Vec<u8>, String>;
    }
    impl<T: serde::Serialize> Value for T {
        fn json(&self) -> Result<Vec<u8>, String> {
            serde_json::to_vec(self).map_err(|e| e.to_string())
        }
        fn msgpack(&self) -> Result<Vec<u8>, String> {
            proto::codec::encode(self).map_err(|e| e.to_string())
        }
        fn postcard(&self) -> Result<Vec<u8>, String> {
            postcard::to_stdvec(self).map_err(|e| e.to_string())
        }
    }
}

const CODECS: [Codec; 3] = [
    Codec {
        name: "json",
        encode: |v| v.json(),
    },
    Codec {
        name: "msgpack",
        encode: |v| v.msgpack(),
    },
    Codec {
        name: "postcard",
        encode: |v| v.postcard(),
    },
];

fn decode<T: DeserializeOwned>(codec: &str, bytes: &[u8]) -> Result<T, String> {
    match codec {
        "postcard" => postcard::from_bytes(bytes).map_err(|e| e.to_string()),
        // proto::codec reads both JSON and its own marked MessagePack.
        _ => proto::codec::decode(bytes).map_err(|e| e.to_string()),
    }
}

/// Median seconds of `rounds` runs of `f`.
fn median_secs(rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn compare<T: Serialize + DeserializeOwned>(label: &str, value: &T, rounds: usize) {
    println!("{label}");
    println!(
        "  {:<9} {:>10} {:>8} {:>11} {:>8} {:>11} {:>8}",
        "codec", "bytes", "x json", "encode us", "x json", "decode us", "x json"
    );
    let mut json: Option<(f64, f64, f64)> = None;
    for codec in &CODECS {
        let bytes = match (codec.encode)(value) {
            Ok(b) => b,
            Err(e) => {
                println!("  {:<9} cannot encode: {e}", codec.name);
                continue;
            }
        };
        if let Err(e) = decode::<T>(codec.name, &bytes) {
            println!("  {:<9} cannot decode its own output: {e}", codec.name);
            continue;
        }
        let enc = median_secs(rounds, || {
            std::hint::black_box((codec.encode)(value).expect("encodes"));
        });
        let dec = median_secs(rounds, || {
            std::hint::black_box(decode::<T>(codec.name, &bytes).expect("decodes"));
        });
        let size = bytes.len() as f64;
        let (js, je, jd) = *json.get_or_insert((size, enc, dec));
        println!(
            "  {:<9} {:>10} {:>8.2} {:>11.0} {:>8.2} {:>11.0} {:>8.2}",
            codec.name,
            bytes.len(),
            size / js,
            enc * 1e6,
            enc / je,
            dec * 1e6,
            dec / jd
        );
    }
}

/// A state of 50 users in one group sharing `files` files.
fn state(files: usize, rng: &mut impl Rng) -> TrackerState {
    let mut s = TrackerState::default();
    let token = |u: usize| SessionToken(format!("token-of-user-{u:04}-0123456789abcdef"));
    let group: proto::GroupId = "g1".parse().expect("valid group");
    for u in 0..50 {
        let user: proto::UserId = format!("user{u}").parse().expect("valid user");
        let applied = [
            Command::CreateUser {
                user: user.clone(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            },
            Command::StartSession {
                user: user.clone(),
                token: token(u),
            },
            match u {
                0 => Command::CreateGroup {
                    token: token(0),
                    group: group.clone(),
                },
                _ => Command::JoinGroup {
                    token: token(u),
                    group: group.clone(),
                },
            },
        ];
        for cmd in applied {
            s.apply(cmd).expect("set-up applies");
        }
        if u > 0 {
            s.apply(Command::AcceptRequest {
                token: token(0),
                group: group.clone(),
                user,
            })
            .expect("accepted");
        }
    }
    let mut left = files;
    while left > 0 {
        for mut meta in registrations(rng).into_iter().take(left) {
            meta.name = format!("f{left}.bin").parse().expect("valid name");
            s.apply(Command::RegisterFile {
                token: token(left % 50),
                group: group.clone(),
                meta,
            })
            .expect("registered");
            left -= 1;
        }
    }
    s
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 11 } else { 51 };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let metas = registrations(&mut rng);
    let hashes: usize = metas.iter().map(|m| m.pieces.len()).sum();
    compare(
        &format!("raft append: one entry of {WRITES} registrations ({hashes} piece hashes)"),
        &append(&metas),
        rounds,
    );
    compare(
        &format!("file metadata alone: {WRITES} FileMeta"),
        &metas,
        rounds,
    );
    compare(
        "snapshot: the state after 20,000 registrations",
        &state(20_000, &mut rng),
        if quick { 3 } else { 7 },
    );
}
