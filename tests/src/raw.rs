//! The attacker's side of the wire: in-test Rust that plays a daemon, with
//! TLS links made by the product's own `p2p-link` crate under keys of its
//! own and calls built from the product's wire types (`proto`). Attack
//! tests use it to send what no honest `p2pd` would.

use p2p_link::{Endpoint, KeyPairDoc, LinkReader, LinkWriter};
use proto::frame::{read_json, write_json, MAX_TRACKER_FRAME_BYTES};
use proto::tracker::{SessionToken, TrackerAnswer, TrackerCall, TrackerReply, TrackerRequest};
use proto::{WireError, PROTOCOL_VERSION};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a tracker call may take (a login runs argon2 on a busy box).
pub const CALL_WAIT: Duration = Duration::from_secs(15);

/// A small runtime for a test's attacker.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A TLS endpoint with a fresh link key of the attacker's.
pub fn endpoint() -> Endpoint {
    Endpoint::new(&KeyPairDoc::generate().expect("a random key"))
}

/// The attacker's own link to a tracker, as a daemon would hold one: TLS
/// with a key of the attacker's, `Hello`, then calls.
pub struct TrackerLink {
    rd: LinkReader,
    wr: LinkWriter,
    next_id: u64,
    token: Option<SessionToken>,
}

impl TrackerLink {
    /// Connects, secures and greets `addr`.
    ///
    /// # Panics
    /// If any step fails or takes longer than [`CALL_WAIT`].
    pub async fn open(addr: SocketAddr, endpoint: &Endpoint) -> TrackerLink {
        let tcp = tokio::time::timeout(CALL_WAIT, TcpStream::connect(addr))
            .await
            .expect("connecting to the tracker in time")
            .expect("connect to the tracker");
        let secured = endpoint.connect(tcp).await.expect("TLS to the tracker");
        let (rd, wr) = p2p_link::tls::split(secured.link);
        let mut link = TrackerLink {
            rd,
            wr,
            next_id: 0,
            token: None,
        };
        let hello = TrackerRequest::Hello {
            version: PROTOCOL_VERSION,
        };
        match link.call(hello).await {
            Ok(TrackerReply::Welcome { .. }) => link,
            other => panic!("hello: {other:?}"),
        }
    }

    /// One call and its answer (others' answers are skipped).
    ///
    /// # Panics
    /// If the link fails or the tracker does not answer within
    /// [`CALL_WAIT`].
    pub async fn call(&mut self, request: TrackerRequest) -> Result<TrackerReply, WireError> {
        self.next_id += 1;
        let id = self.next_id;
        let call = TrackerCall {
            id,
            request,
            dedup: None,
        };
        tokio::time::timeout(
            CALL_WAIT,
            write_json(&mut self.wr, &call, MAX_TRACKER_FRAME_BYTES),
        )
        .await
        .expect("writing to the tracker in time")
        .expect("write to the tracker");
        loop {
            let answer: TrackerAnswer =
                tokio::time::timeout(CALL_WAIT, read_json(&mut self.rd, MAX_TRACKER_FRAME_BYTES))
                    .await
                    .expect("the tracker answers in time")
                    .expect("a well-formed answer")
                    .expect("an answer, not the end of the link");
            if answer.id == id {
                return answer.result;
            }
        }
    }

    /// The session of [`TrackerLink::login`].
    ///
    /// # Panics
    /// If not logged in on this link.
    pub fn token(&self) -> SessionToken {
        self.token.clone().expect("logged in on this link")
    }

    /// Logs in; later calls use the session.
    ///
    /// # Panics
    /// If the tracker refuses.
    pub async fn login(&mut self, user: &str, password: &str) {
        let login = TrackerRequest::Login {
            user: user.parse().expect("user id"),
            password: password.into(),
        };
        match self.call(login).await {
            Ok(TrackerReply::LoggedIn { token }) => self.token = Some(token),
            other => panic!("login {user}: {other:?}"),
        }
    }
}
