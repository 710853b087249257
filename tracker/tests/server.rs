//! The tracker server in-process, over real TLS links on 127.0.0.1: a few
//! calls, hostile bytes, durability across a restart, and graceful shutdown.

use p2p_link::ticket::{self, Claim};
use p2p_link::{ClusterKey, Endpoint, KeyPairDoc, Link, PublicKey};
use proto::frame::{read_json, write_json, MAX_TRACKER_FRAME_BYTES};
use proto::geometry::PIECE_SIZE_BYTES;
use proto::tracker::{
    FileMeta, SessionToken, TrackerAnswer, TrackerCall, TrackerReply, TrackerRequest,
};
use proto::{ErrorCode, FileName, GroupId, UserId, WireError, PROTOCOL_VERSION};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncRead;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracker::raft::{Cluster, ClusterOptions};
use tracker::server::{self, ServerError, ServerOptions};

const TEST_TIMEOUT: Duration = Duration::from_secs(30);

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: JoinHandle<Result<(), ServerError>>,
    cluster: Arc<Cluster>,
    cancel: tokio_util::sync::CancellationToken,
}

impl Running {
    async fn start(dir: &Path) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let options = ClusterOptions {
            node: 1,
            trackers: vec![addr],
            snapshot_every: tracker::raft::SNAPSHOT_EVERY_ENTRIES,
            cluster_key: Arc::new(ClusterKey::generate().unwrap()),
        };
        let cluster = Cluster::start(options, dir, cancel.clone()).await.unwrap();
        let handle = Arc::clone(&cluster);
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(server::run(
            listener,
            handle,
            ServerOptions::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Running {
            addr,
            stop,
            served,
            cluster,
            cancel,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.served.await.unwrap().unwrap();
        self.cancel.cancel();
        self.cluster.raft.shutdown().await.unwrap();
    }
}

/// A TLS link to `addr` as a daemon opens one (its own random key).
async fn secure(addr: SocketAddr) -> Link {
    secure_as(addr, &KeyPairDoc::generate().unwrap()).await
}

async fn secure_as(addr: SocketAddr, key: &KeyPairDoc) -> Link {
    let tcp = TcpStream::connect(addr).await.unwrap();
    // As p2pd's link does: without it, Nagle holds a second call back
    // until the first is acknowledged, which the tracker's delayed ACK
    // ties to the first answer, and calls look serialised.
    tcp.set_nodelay(true).unwrap();
    let me = Endpoint::new(key);
    me.connect(tcp).await.expect("a TLS link").link
}

struct Client {
    stream: Link,
    next_id: u64,
    /// The link key this client proved.
    key: PublicKey,
    /// The key tickets are signed with, from `Welcome`.
    ticket_key: PublicKey,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let key = KeyPairDoc::generate().unwrap();
        let stream = secure_as(addr, &key).await;
        let mut c = Client {
            stream,
            next_id: 1,
            key: key.public(),
            ticket_key: PublicKey([0; 32]),
        };
        let hello = c
            .call(TrackerRequest::Hello {
                version: PROTOCOL_VERSION,
            })
            .await;
        match hello {
            Ok(TrackerReply::Welcome {
                version: PROTOCOL_VERSION,
                node: 1,
                ticket_key,
            }) => c.ticket_key = ticket_key.parse().expect("a ticket key"),
            other => panic!("{other:?}"),
        }
        c
    }

    async fn call(&mut self, request: TrackerRequest) -> Result<TrackerReply, WireError> {
        let id = self.next_id;
        self.next_id += 1;
        write_json(
            &mut self.stream,
            &TrackerCall {
                id,
                request,
                dedup: None,
            },
            MAX_TRACKER_FRAME_BYTES,
        )
        .await
        .unwrap();
        let answer: TrackerAnswer = read_json(&mut self.stream, MAX_TRACKER_FRAME_BYTES)
            .await
            .unwrap()
            .expect("an answer, not end of stream");
        assert_eq!(answer.id, id);
        answer.result
    }

    async fn done(&mut self, request: TrackerRequest) -> String {
        match self.call(request).await {
            Ok(TrackerReply::Done { message }) => message,
            other => panic!("expected done, got {other:?}"),
        }
    }

    async fn signup(&mut self, user: &str) -> SessionToken {
        let user = user.parse().unwrap();
        self.done(TrackerRequest::CreateUser {
            user: Clone::clone(&user),
            password: "pw".into(),
        })
        .await;
        match self
            .call(TrackerRequest::Login {
                user,
                password: "pw".into(),
            })
            .await
        {
            Ok(TrackerReply::LoggedIn { token }) => token,
            other => panic!("{other:?}"),
        }
    }
}

/// Reads until the server closes; the bytes read are returned.
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got, // FIN or RST: closed either way
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server did not close the connection"),
        }
    }
}

fn meta(name: &str, content: &[u8]) -> FileMeta {
    FileMeta {
        name: name.parse().unwrap(),
        size: content.len() as u64,
        sha1: p2p_sha1::of(content),
        piece_size: PIECE_SIZE_BYTES,
        pieces: vec![p2p_sha1::of(content)],
    }
}

#[tokio::test]
async fn accounts_groups_files_and_presence() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = Running::start(dir.path()).await;
        let mut alice = Client::connect(server.addr).await;
        let mut bob = Client::connect(server.addr).await;
        let ta = alice.signup("alice").await;
        let tb = bob.signup("bob").await;

        let err = alice
            .call(TrackerRequest::Login {
                user: "bob".parse().unwrap(),
                password: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadCredentials);
        let err2 = alice
            .call(TrackerRequest::Login {
                user: "nobody".parse().unwrap(),
                password: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!((err2.code, err2.message), (err.code, err.message));

        let g1 = || "g1".parse().unwrap();
        assert_eq!(
            alice
                .done(TrackerRequest::CreateGroup {
                    token: ta.clone(),
                    group: g1()
                })
                .await,
            "group g1 created"
        );
        assert_eq!(
            bob.done(TrackerRequest::JoinGroup {
                token: tb.clone(),
                group: g1()
            })
            .await,
            "join request sent to group g1"
        );
        let reqs = alice
            .call(TrackerRequest::ListRequests {
                token: ta.clone(),
                group: g1(),
            })
            .await;
        assert_eq!(
            reqs,
            Ok(TrackerReply::Users {
                users: vec!["bob".parse().unwrap()]
            })
        );
        alice
            .done(TrackerRequest::AcceptRequest {
                token: ta.clone(),
                group: g1(),
                user: "bob".parse().unwrap(),
            })
            .await;

        alice
            .done(TrackerRequest::RegisterFile {
                token: ta.clone(),
                group: g1(),
                meta: meta("f.iso", b"data"),
            })
            .await;
        let bob_addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let alice_addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        alice
            .call(TrackerRequest::Heartbeat {
                token: ta.clone(),
                peer_addr: alice_addr,
            })
            .await
            .unwrap();

        match bob
            .call(TrackerRequest::ListFiles {
                token: tb.clone(),
                group: g1(),
            })
            .await
        {
            Ok(TrackerReply::Files { files }) => {
                assert_eq!((files.len(), files[0].holders, files[0].online), (1, 1, 1));
            }
            other => panic!("{other:?}"),
        }
        match bob
            .call(TrackerRequest::Locate {
                token: tb.clone(),
                group: g1(),
                name: "f.iso".parse().unwrap(),
            })
            .await
        {
            Ok(TrackerReply::Located { peers, .. }) => {
                assert_eq!(peers.len(), 1);
                assert_eq!((peers[0].addr, peers[0].complete), (alice_addr, true));
            }
            other => panic!("{other:?}"),
        }

        // Tickets: bob's ticket, checked by alice's daemon on its own; it
        // names bob's link key and no other.
        let name = || "f.iso".parse().unwrap();
        let ticket = match bob
            .call(TrackerRequest::IssueTicket {
                token: tb.clone(),
                group: g1(),
                name: name(),
            })
            .await
        {
            Ok(TrackerReply::Ticket { ticket }) => ticket,
            other => panic!("{other:?}"),
        };
        let (bob_user, group, file): (UserId, GroupId, FileName) =
            ("bob".parse().unwrap(), g1(), name());
        let claim = Claim {
            user: &bob_user,
            group: &group,
            file: &file,
            requester: &bob.key,
        };
        let now = tracker::clock::now_s();
        assert_eq!(alice.ticket_key, bob.ticket_key, "one cluster, one key");
        assert!(ticket::check(&alice.ticket_key, &ticket, &claim, now).is_ok());
        let on_alices_link = Claim {
            requester: &alice.key,
            ..claim
        };
        assert!(ticket::check(&alice.ticket_key, &ticket, &on_alices_link, now).is_err());
        assert!(ticket::check(&alice.ticket_key, "00", &claim, now).is_err());

        // Logging out takes effect at once: offline, no new ticket, token dead.
        bob.call(TrackerRequest::Heartbeat {
            token: tb.clone(),
            peer_addr: bob_addr,
        })
        .await
        .unwrap();
        assert_eq!(
            bob.done(TrackerRequest::Logout { token: tb.clone() }).await,
            "logged out"
        );
        let again = TrackerRequest::IssueTicket {
            token: tb.clone(),
            group: g1(),
            name: name(),
        };
        assert_eq!(
            bob.call(again).await.unwrap_err().code,
            ErrorCode::NotLoggedIn
        );
        let err = bob
            .call(TrackerRequest::ListGroups { token: tb.clone() })
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NotLoggedIn);

        // A login elsewhere ends alice's first session and her presence.
        let mut alice2 = Client::connect(server.addr).await;
        let ta2 = match alice2
            .call(TrackerRequest::Login {
                user: "alice".parse().unwrap(),
                password: "pw".into(),
            })
            .await
        {
            Ok(TrackerReply::LoggedIn { token }) => token,
            other => panic!("{other:?}"),
        };
        let hb = alice
            .call(TrackerRequest::Heartbeat {
                token: ta,
                peer_addr: alice_addr,
            })
            .await;
        assert_eq!(hb.unwrap_err().code, ErrorCode::NotLoggedIn);
        match alice2
            .call(TrackerRequest::ListFiles {
                token: ta2,
                group: g1(),
            })
            .await
        {
            Ok(TrackerReply::Files { files }) => {
                assert_eq!((files[0].holders, files[0].online), (1, 0))
            }
            other => panic!("{other:?}"),
        }
        server.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn hostile_bytes_close_only_their_connection() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = Running::start(dir.path()).await;
        let mut good = Client::connect(server.addr).await;
        let token = good.signup("alice").await;

        // A length prefix far over the limit.
        let mut huge = secure(server.addr).await;
        huge.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3])
            .await
            .unwrap();
        read_until_closed(&mut huge).await;

        // A well-framed payload that is not JSON, after a valid hello.
        let mut garbage = Client::connect(server.addr).await;
        garbage
            .stream
            .write_all(&[0, 0, 0, 5, 0xDE, 0xAD, 0xBE, 0xEF, 0x00])
            .await
            .unwrap();
        let answer: Option<TrackerAnswer> = read_json(&mut garbage.stream, MAX_TRACKER_FRAME_BYTES)
            .await
            .unwrap();
        let err = answer.expect("an error answer").result.unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        read_until_closed(&mut garbage.stream).await;

        // Random bytes straight away (no TLS handshake), and a first call
        // that is not hello.
        let mut noise = TcpStream::connect(server.addr).await.unwrap();
        noise
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_until_closed(&mut noise).await;
        let mut rude = secure(server.addr).await;
        let call = TrackerCall {
            dedup: None,
            id: 9,
            request: TrackerRequest::ListGroups {
                token: token.clone(),
            },
        };
        write_json(&mut rude, &call, MAX_TRACKER_FRAME_BYTES)
            .await
            .unwrap();
        let answer: TrackerAnswer = read_json(&mut rude, MAX_TRACKER_FRAME_BYTES)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.id, 9);
        assert!(answer.result.unwrap_err().message.contains("hello"));
        read_until_closed(&mut rude).await;

        // A version mismatch is a clear refusal.
        let mut old = secure(server.addr).await;
        let hello = TrackerCall {
            dedup: None,
            id: 1,
            request: TrackerRequest::Hello { version: 999 },
        };
        write_json(&mut old, &hello, MAX_TRACKER_FRAME_BYTES)
            .await
            .unwrap();
        let answer: TrackerAnswer = read_json(&mut old, MAX_TRACKER_FRAME_BYTES)
            .await
            .unwrap()
            .unwrap();
        assert!(answer.result.unwrap_err().message.contains("version 999"));

        // A hostile id inside otherwise valid JSON: answered with its call id.
        let mut hostile = Client::connect(server.addr).await;
        let frame =
            br#"{"id": 4, "request": {"op": "create_group", "token": "x", "group": "../etc"}}"#;
        hostile
            .stream
            .write_all(&(frame.len() as u32).to_be_bytes())
            .await
            .unwrap();
        hostile.stream.write_all(frame).await.unwrap();
        let answer: TrackerAnswer = read_json(&mut hostile.stream, MAX_TRACKER_FRAME_BYTES)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.id, 4);
        assert_eq!(answer.result.unwrap_err().code, ErrorCode::InvalidArgument);

        // The first connection and the state are untouched.
        let groups = good.call(TrackerRequest::ListGroups { token }).await;
        assert_eq!(groups, Ok(TrackerReply::Groups { groups: vec![] }));
        server.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn acknowledged_writes_survive_a_restart() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = Running::start(dir.path()).await;
        let mut c = Client::connect(server.addr).await;
        let token = c.signup("alice").await;
        // Concurrent writes on one connection share fsyncs and all land.
        let mut many = Client::connect(server.addr).await;
        for i in 0..20u64 {
            let call = TrackerCall {
                dedup: None,
                id: 100 + i,
                request: TrackerRequest::CreateGroup {
                    token: token.clone(),
                    group: format!("g{i}").parse().unwrap(),
                },
            };
            write_json(&mut many.stream, &call, MAX_TRACKER_FRAME_BYTES)
                .await
                .unwrap();
        }
        for _ in 0..20 {
            let a: TrackerAnswer = read_json(&mut many.stream, MAX_TRACKER_FRAME_BYTES)
                .await
                .unwrap()
                .unwrap();
            assert!(a.result.is_ok(), "{a:?}");
        }
        server.stop().await;

        let server = Running::start(dir.path()).await;
        let mut c = Client::connect(server.addr).await;
        // The session survives too.
        match c.call(TrackerRequest::ListGroups { token }).await {
            Ok(TrackerReply::Groups { groups }) => assert_eq!(groups.len(), 20),
            other => panic!("{other:?}"),
        }
        server.stop().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_graceful_stop_finishes_calls_in_flight() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = Running::start(dir.path()).await;
        let mut c = Client::connect(server.addr).await;
        // create_user spends tens of ms in argon2; stop while it runs.
        let call = TrackerCall {
            dedup: None,
            id: 5,
            request: TrackerRequest::CreateUser {
                user: "late".parse().unwrap(),
                password: "pw".into(),
            },
        };
        write_json(&mut c.stream, &call, MAX_TRACKER_FRAME_BYTES)
            .await
            .unwrap();
        // A quick call behind it: once it is answered, the reader has read
        // the create_user call too (calls are read in order).
        let probe = TrackerCall {
            dedup: None,
            id: 6,
            request: TrackerRequest::ListGroups {
                token: SessionToken("x".into()),
            },
        };
        write_json(&mut c.stream, &probe, MAX_TRACKER_FRAME_BYTES)
            .await
            .unwrap();
        let first: TrackerAnswer = read_json(&mut c.stream, MAX_TRACKER_FRAME_BYTES)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.id, 6, "the quick call overtakes the hashing one");
        server.stop().await;
        let answer: TrackerAnswer = read_json(&mut c.stream, MAX_TRACKER_FRAME_BYTES)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.id, 5);
        assert!(answer.result.is_ok(), "{answer:?}");
        // The connection then closes, and the write is durable.
        assert!(read_until_closed(&mut c.stream).await.is_empty());
        let again = Running::start(dir.path()).await;
        let live = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if again.cluster.state().user_exists(&"late".parse().unwrap()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(live.is_ok(), "the acknowledged write survives a restart");
        again.stop().await;
    })
    .await
    .expect("test timed out");
}
