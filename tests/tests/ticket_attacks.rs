//! Tickets under attack (issue 11; SPEC "Trust: the cluster key"): a
//! serving peer checks on its own, before the first byte, that the
//! requester is a logged-in member of the file's group, on a ticket bound
//! to the requester's connection; a member who leaves the group or logs out
//! stops receiving bytes within 60 s, on connections already open too.
//!
//! The victims are real `tracker` and `p2pd` processes on 127.0.0.1. The
//! attacker is in-test Rust that plays a daemon: TLS links made with the
//! product's own `p2p-link` crate and keys of its own, tracker calls and
//! peer messages built from the product's wire types (`proto`).
//!
//! Every refusal is paired with a positive control: the same ticket, shown
//! on the link and for the claim it was issued for, is served. So a refusal
//! is the binding under test at work, not a malformed frame.
//!
//! The revocation tests wait out a ticket's life (45 s) by necessity; they
//! are separate tests so the harness runs them side by side.

use blackbox::raw::{endpoint, runtime, TrackerLink};
use blackbox::{random_file, wait_until, Daemon, Net, SETTLE_TIMEOUT};
use p2p_link::ticket::{self, Claim};
use p2p_link::{ClusterKey, Endpoint, LinkReader, LinkWriter};
use proto::frame::{read_frame, MAX_PEER_FRAME_BYTES};
use proto::peer::{
    decode, encode_frame, BlockRef, Handshake, Message, Refusal, RefusalReason,
    PEER_PROTOCOL_VERSION,
};
use proto::tracker::{TrackerReply, TrackerRequest};
use proto::{ErrorCode, FileName, GroupId, Sha1Hash, UserId, WireError};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long the attacker waits for a peer's answer before calling it
/// silence.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// SPEC: a member who leaves or logs out stops receiving bytes within this.
const REVOKED_WITHIN: Duration = Duration::from_secs(60);
/// Over the last this much of [`REVOKED_WITHIN`], nothing may move.
const QUIET: Duration = Duration::from_secs(10);
/// How long a download may take to get going.
const START_WAIT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;
/// The block the attacker asks for: the first 16 KiB of the file.
const PROBE: BlockRef = BlockRef {
    piece: 0,
    offset: 0,
    len: 16 * 1024,
};

// ------------------------------------------------------------ small things

fn now_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    u64::try_from(d.as_millis()).expect("milliseconds fit u64")
}

/// A ticket's expiry (seconds since the epoch): it is `EXPIRY.SIGNATURE`.
fn expiry_of(ticket: &str) -> u64 {
    ticket
        .split_once('.')
        .and_then(|(e, _)| e.parse().ok())
        .unwrap_or_else(|| panic!("not a ticket: {ticket:?}"))
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn pw(user: &str) -> String {
    format!("pw-{user}")
}

/// Creates each of `users`, has it ask to join `group` through the helper
/// daemon `m` (logged out again after), and has the owner on `owner`
/// accept it.
fn add_members(owner: &Daemon, m: &Daemon, group: &str, users: &[&str]) {
    for &u in users {
        let out = owner.ctl(&["create_user", u, &pw(u)]);
        if out.status != 0 {
            out.assert_err("user_exists");
        }
        m.ok(&["login", u, &pw(u)]);
        m.ok(&["join_group", group]);
        m.ok(&["logout"]);
        owner.ok(&["accept_request", group, u]);
    }
}

/// The address a daemon serves pieces on.
fn listen_addr(d: &Daemon) -> SocketAddr {
    let s = d.status();
    s["listen"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{}: no listen address in {s}", d.name))
}

/// A file of random bytes at `dir/name`: its path, bytes and SHA-1.
fn probe_file(dir: &Path, name: &str, size: usize) -> (PathBuf, Vec<u8>, Sha1Hash) {
    let path = dir.join(name);
    let sha = random_file(&path, size);
    let bytes = std::fs::read(&path).expect("read the file back");
    (path, bytes, sha.parse().expect("a SHA-1"))
}

/// What a downloader says first.
fn handshake(group: &str, name: &str, sha1: Sha1Hash, user: &str, ticket: &str) -> Handshake {
    Handshake {
        version: PEER_PROTOCOL_VERSION,
        group: group.parse().expect("group id"),
        name: name.parse().expect("file name"),
        sha1,
        ticket: ticket.to_owned(),
        user: user.parse().expect("user id"),
        crowd: false,
    }
}

// ------------------------------------------------------------ the attacker's tracker link

/// What these tests ask a tracker, on the attacker's link.
trait TicketCalls {
    async fn login_as(&mut self, user: &str);
    async fn issue(&mut self, group: &str, name: &str) -> Result<String, WireError>;
    async fn issue_ok(&mut self, group: &str, name: &str) -> String;
    async fn assert_no_ticket(&mut self, group: &str, name: &str, code: ErrorCode);
    async fn leave(&mut self, group: &str);
    async fn logout(&mut self);
}

impl TicketCalls for TrackerLink {
    async fn login_as(&mut self, user: &str) {
        self.login(user, &pw(user)).await;
    }

    async fn issue(&mut self, group: &str, name: &str) -> Result<String, WireError> {
        let req = TrackerRequest::IssueTicket {
            token: self.token(),
            group: group.parse().expect("group id"),
            name: name.parse().expect("file name"),
        };
        match self.call(req).await? {
            TrackerReply::Ticket { ticket } => Ok(ticket),
            other => panic!("IssueTicket answered {other:?}"),
        }
    }

    /// A ticket that must be granted; asked again for a while, since with
    /// several trackers this one's replica may lag behind a membership.
    async fn issue_ok(&mut self, group: &str, name: &str) -> String {
        let end = Instant::now() + SETTLE_TIMEOUT;
        loop {
            match self.issue(group, name).await {
                Ok(t) => return t,
                Err(_) if Instant::now() < end => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("IssueTicket {group}/{name} refused: {e:?}"),
            }
        }
    }

    /// Asserts the tracker refuses a ticket with `code` (within a while,
    /// for a lagging replica).
    async fn assert_no_ticket(&mut self, group: &str, name: &str, code: ErrorCode) {
        let end = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let r = self.issue(group, name).await;
            match &r {
                Err(e) if e.code == code => return,
                _ if Instant::now() < end => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => panic!("IssueTicket {group}/{name}: want {code:?}, got {r:?}"),
            }
        }
    }

    async fn leave(&mut self, group: &str) {
        let req = TrackerRequest::LeaveGroup {
            token: self.token(),
            group: group.parse().expect("group id"),
        };
        self.call(req).await.expect("leave_group");
    }

    async fn logout(&mut self) {
        let req = TrackerRequest::Logout {
            token: self.token(),
        };
        self.call(req).await.expect("logout");
    }
}

// ------------------------------------------------------------ the attacker's peer link

/// A message from the seeder, owned (piece data shown by length only).
enum Seen {
    Ok,
    Refused(Refusal),
    Bitfield,
    Have,
    Piece {
        piece: u32,
        offset: u32,
        data: Vec<u8>,
    },
    Reject,
    KeepAlive,
    Other(String),
}

impl fmt::Debug for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Ok => write!(f, "HandshakeOk"),
            Seen::Refused(r) => write!(f, "HandshakeReject({:?}: {})", r.reason, r.error.message),
            Seen::Bitfield => write!(f, "Bitfield"),
            Seen::Have => write!(f, "Have"),
            Seen::Piece {
                piece,
                offset,
                data,
            } => write!(f, "Piece({piece}, {offset}, {} bytes)", data.len()),
            Seen::Reject => write!(f, "Reject"),
            Seen::KeepAlive => write!(f, "KeepAlive"),
            Seen::Other(s) => write!(f, "{s}"),
        }
    }
}

impl Seen {
    fn of(payload: &[u8]) -> Seen {
        match decode(payload) {
            Ok(Message::HandshakeOk) => Seen::Ok,
            Ok(Message::HandshakeReject(r)) => Seen::Refused(r),
            Ok(Message::Bitfield(_)) => Seen::Bitfield,
            Ok(Message::Have(_)) => Seen::Have,
            Ok(Message::Piece {
                piece,
                offset,
                data,
            }) => Seen::Piece {
                piece,
                offset,
                data: data.to_vec(),
            },
            Ok(Message::Reject(_)) => Seen::Reject,
            Ok(Message::KeepAlive) => Seen::KeepAlive,
            Ok(other) => Seen::Other(format!("{other:?}")),
            Err(e) => Seen::Other(format!("undecodable: {e}")),
        }
    }

    /// Anything a refused requester must never see.
    fn is_service(&self) -> bool {
        matches!(
            self,
            Seen::Ok | Seen::Bitfield | Seen::Have | Seen::Piece { .. }
        )
    }
}

enum Next {
    Frame(Seen),
    Closed,
    Silent,
}

/// The attacker's TLS link to a seeder, with its own key.
struct PeerLink {
    rd: LinkReader,
    wr: LinkWriter,
}

impl PeerLink {
    async fn open(addr: SocketAddr, endpoint: &Endpoint) -> PeerLink {
        let tcp = tokio::time::timeout(ANSWER_WAIT, TcpStream::connect(addr))
            .await
            .expect("connecting to the seeder in time")
            .expect("connect to the seeder");
        let secured = endpoint.connect(tcp).await.expect("TLS to the seeder");
        let (rd, wr) = p2p_link::tls::split(secured.link);
        PeerLink { rd, wr }
    }

    /// Writes one message; false if the link is gone.
    async fn send(&mut self, msg: &Message<'_>) -> bool {
        let mut buf = Vec::new();
        encode_frame(msg, &mut buf).expect("encode a peer frame");
        let write = async {
            self.wr.write_all(&buf).await?;
            self.wr.flush().await
        };
        matches!(tokio::time::timeout(ANSWER_WAIT, write).await, Ok(Ok(())))
    }

    async fn next(&mut self, wait: Duration) -> Next {
        match tokio::time::timeout(wait, read_frame(&mut self.rd, MAX_PEER_FRAME_BYTES)).await {
            Err(_) => Next::Silent,
            Ok(Ok(Some(p))) => Next::Frame(Seen::of(&p)),
            Ok(Ok(None) | Err(_)) => Next::Closed,
        }
    }

    /// Reads frames for up to `wait`: until the seeder closes, a `Piece`
    /// (or a `Reject`) answers a request, or silence.
    async fn listen(&mut self, wait: Duration, into: &mut Attempt) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Frame(s) => {
                    let answer = matches!(s, Seen::Piece { .. } | Seen::Reject);
                    into.frames.push(s);
                    if answer {
                        return;
                    }
                }
                Next::Closed => {
                    into.closed = true;
                    return;
                }
                Next::Silent => return,
            }
        }
    }
}

/// What one exchange with a seeder got.
#[derive(Debug, Default)]
struct Attempt {
    frames: Vec<Seen>,
    /// The seeder ended the connection (EOF or reset) within the wait.
    closed: bool,
}

impl Attempt {
    fn piece(&self) -> Option<(u32, u32, &[u8])> {
        self.frames.iter().find_map(|f| match f {
            Seen::Piece {
                piece,
                offset,
                data,
            } => Some((*piece, *offset, &data[..])),
            _ => None,
        })
    }
}

/// Connects with `endpoint`, shows `hs`, reads the answer; then, whatever
/// it was, asks for the [`PROBE`] block as a served peer would and listens
/// for it. A refused requester must get nothing but the refusal.
async fn present(seeder: SocketAddr, endpoint: &Endpoint, hs: Handshake) -> Attempt {
    let mut link = PeerLink::open(seeder, endpoint).await;
    let mut a = Attempt::default();
    if !link.send(&Message::Handshake(hs)).await {
        a.closed = true;
        return a;
    }
    match link.next(ANSWER_WAIT).await {
        Next::Frame(s) => a.frames.push(s),
        Next::Closed => {
            a.closed = true;
            return a;
        }
        Next::Silent => return a,
    }
    if !link.send(&Message::Request(PROBE)).await {
        a.closed = true;
        return a;
    }
    link.listen(ANSWER_WAIT, &mut a).await;
    a
}

fn assert_refused_for_ticket(a: &Attempt, what: &str) {
    match a.frames.first() {
        Some(Seen::Refused(r)) if r.reason == RefusalReason::Ticket => {}
        _ => panic!("{what}: want HandshakeReject with reason `ticket` first; got {a:?}"),
    }
    assert!(
        !a.frames.iter().any(Seen::is_service),
        "{what}: a refused requester got service: {a:?}"
    );
    assert!(
        a.closed,
        "{what}: the seeder keeps a refused link open: {a:?}"
    );
}

/// The seeder accepted and sent the [`PROBE`] block, byte for byte.
fn assert_served(a: &Attempt, file: &[u8], what: &str) {
    assert!(
        matches!(a.frames.first(), Some(Seen::Ok)),
        "{what}: want HandshakeOk first; got {a:?}"
    );
    assert!(
        matches!(a.frames.get(1), Some(Seen::Bitfield)),
        "{what}: want a Bitfield after HandshakeOk; got {a:?}"
    );
    let (piece, offset, data) = a
        .piece()
        .unwrap_or_else(|| panic!("{what}: no Piece for the request; got {a:?}"));
    assert_eq!((piece, offset), (PROBE.piece, PROBE.offset), "{what}");
    assert!(
        data == &file[..PROBE.len as usize],
        "{what}: the piece is not the file's bytes"
    );
}

/// An accepted, served link (the [`PROBE`] block checked), for what comes
/// next on it.
async fn served_link(
    seeder: SocketAddr,
    endpoint: &Endpoint,
    hs: Handshake,
    file: &[u8],
    what: &str,
) -> PeerLink {
    let mut link = PeerLink::open(seeder, endpoint).await;
    let mut a = Attempt::default();
    assert!(
        link.send(&Message::Handshake(hs)).await,
        "{what}: handshake"
    );
    for _ in 0..2 {
        match link.next(ANSWER_WAIT).await {
            Next::Frame(s) => a.frames.push(s),
            Next::Closed => a.closed = true,
            Next::Silent => {}
        }
    }
    assert!(link.send(&Message::Request(PROBE)).await, "{what}: request");
    link.listen(ANSWER_WAIT, &mut a).await;
    assert_served(&a, file, what);
    link
}

/// Shows `ticket` as a renewal on a served link, then asks for a block:
/// what came back.
async fn renew_then_request(link: &mut PeerLink, ticket: &str) -> Attempt {
    let mut a = Attempt::default();
    if !link.send(&Message::Ticket(ticket)).await || !link.send(&Message::Request(PROBE)).await {
        a.closed = true;
        return a;
    }
    link.listen(ANSWER_WAIT, &mut a).await;
    a
}

/// A renewal that must end the link at once, and nothing served after it.
fn assert_cut(a: &Attempt, what: &str) {
    assert!(a.closed, "{what}: the link stays open: {a:?}");
    assert!(
        a.piece().is_none(),
        "{what}: a block was served after the bad renewal: {a:?}"
    );
}

/// What a requester that never renews saw until the seeder cut it.
#[derive(Debug, Default)]
struct Drain {
    /// When each `Piece` came (ms since the epoch).
    pieces: Vec<u64>,
    /// When the seeder ended the link (ms since the epoch), if it did
    /// before the deadline.
    closed_ms: Option<u64>,
}

/// Asks for the [`PROBE`] block again and again (one at a time, 5 a
/// second), never renewing, until the seeder ends the link or `until`.
async fn keep_requesting(mut link: PeerLink, until: tokio::time::Instant) -> Drain {
    let mut d = Drain::default();
    while tokio::time::Instant::now() < until {
        if !link.send(&Message::Request(PROBE)).await {
            d.closed_ms = Some(now_ms());
            return d;
        }
        let mut a = Attempt::default();
        link.listen(ANSWER_WAIT, &mut a).await;
        if a.piece().is_some() {
            d.pieces.push(now_ms());
        }
        if a.closed {
            d.closed_ms = Some(now_ms());
            return d;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d
}

// ------------------------------------------------------------ 1. replay by another user, on another link

/// Issue 11: "a ticket captured from bob was replayed by carol (claiming
/// to be bob) and served". The attacker logs in as bob on its own link
/// (key K1) and gets a real ticket; carol, on her own link (K2), shows it
/// claiming to be bob and claiming to be herself, before and after she is
/// a member; a third link (K3) shows it as bob. All refused with `ticket`,
/// no byte served. Controls: the same ticket as bob on K1 is served, and
/// carol's own ticket as carol on K2 too (once she is a member).
#[test]
fn a_captured_ticket_is_refused_to_another_user_and_on_another_link() {
    let net = Net::start();
    let a = net.daemon("a");
    let m = net.daemon("m");
    a.signup("alice", &pw("alice"));
    a.ok(&["create_group", "g"]);
    let (path, file, sha1) = probe_file(&net.mkdir("src"), "f.bin", MIB);
    a.ok(&["upload_file", p(&path), "g"]);
    add_members(&a, &m, "g", &["bob"]);
    a.ok(&["create_user", "carol", &pw("carol")]);
    m.ok(&["login", "carol", &pw("carol")]);
    m.ok(&["join_group", "g"]); // pending: not a member yet
    m.ok(&["logout"]);
    let seeder = listen_addr(&a);
    let tracker = net.trackers[0].addr;
    let hs = |user: &str, ticket: &str| handshake("g", "f.bin", sha1, user, ticket);
    let (k1, k2, k3) = (endpoint(), endpoint(), endpoint());
    let rt = runtime();

    // bob's ticket, as the attacker gets it: logged in as bob on K1.
    let mut as_bob = rt.block_on(TrackerLink::open(tracker, &k1));
    rt.block_on(as_bob.login_as("bob"));
    let bob_ticket = rt.block_on(as_bob.issue_ok("g", "f.bin"));
    // carol on her own link K2; not a member, so no ticket of her own.
    let mut as_carol = rt.block_on(TrackerLink::open(tracker, &k2));
    rt.block_on(as_carol.login_as("carol"));
    rt.block_on(as_carol.assert_no_ticket("g", "f.bin", ErrorCode::NotMember));

    for member in [false, true] {
        if member {
            a.ok(&["accept_request", "g", "carol"]);
        }
        let who = if member {
            "carol (member)"
        } else {
            "carol (not a member)"
        };
        let att = rt.block_on(present(seeder, &k2, hs("bob", &bob_ticket)));
        assert_refused_for_ticket(&att, &format!("{who} shows bob's ticket as bob"));
        let att = rt.block_on(present(seeder, &k2, hs("carol", &bob_ticket)));
        assert_refused_for_ticket(&att, &format!("{who} shows bob's ticket as carol"));
    }

    // carol, a member now, has a ticket of her own: good for her on her
    // link, and for nobody else on any other.
    let carol_ticket = rt.block_on(as_carol.issue_ok("g", "f.bin"));
    let att = rt.block_on(present(seeder, &k2, hs("carol", &carol_ticket)));
    assert_served(
        &att,
        &file,
        "control: carol's own ticket, as carol, on her link",
    );
    let att = rt.block_on(present(seeder, &k2, hs("bob", &carol_ticket)));
    assert_refused_for_ticket(&att, "carol's own ticket, claiming to be bob");
    let att = rt.block_on(present(seeder, &k1, hs("carol", &carol_ticket)));
    assert_refused_for_ticket(&att, "carol's ticket as carol on bob's link");

    // bob's ticket on a third link, as bob: the link binding alone.
    let att = rt.block_on(present(seeder, &k3, hs("bob", &bob_ticket)));
    assert_refused_for_ticket(&att, "bob's ticket as bob on another link (K3)");
    // On the link it names, as anyone but bob: the user binding alone.
    let att = rt.block_on(present(seeder, &k1, hs("carol", &bob_ticket)));
    assert_refused_for_ticket(&att, "bob's ticket as carol on bob's link");
    // Control: the very ticket, as bob, on the link it was issued for.
    let att = rt.block_on(present(seeder, &k1, hs("bob", &bob_ticket)));
    assert_served(&att, &file, "control: bob's ticket as bob on K1");
}

// ------------------------------------------------------------ 2. another file, another group, forged

/// A real ticket for another file, or for the same name in another group,
/// does not open this file; a ticket signed with any key but the cluster's
/// (one made with `ClusterKey::generate()` here), or with its expiry
/// changed, opens nothing. Controls: each real ticket opens what it names.
/// (A ticket with a far expiry cannot be made without the cluster's key,
/// and a seeder caps the expiry anyway; the unit tests of `ticket.rs`
/// cover that, so it is not tried here.)
#[test]
fn tickets_for_another_file_or_group_and_forged_tickets_are_refused() {
    let net = Net::start();
    let a = net.daemon("a");
    let m = net.daemon("m");
    a.signup("alice", &pw("alice"));
    a.ok(&["create_group", "g"]);
    a.ok(&["create_group", "g2"]);
    let src = net.mkdir("src");
    let (f_path, file, sha1) = probe_file(&src, "f.bin", MIB);
    let (o_path, other, other_sha1) = probe_file(&src, "other.bin", MIB);
    a.ok(&["upload_file", p(&f_path), "g"]);
    a.ok(&["upload_file", p(&f_path), "g2"]);
    a.ok(&["upload_file", p(&o_path), "g"]);
    add_members(&a, &m, "g", &["bob"]);
    m.ok(&["login", "bob", &pw("bob")]);
    m.ok(&["join_group", "g2"]);
    m.ok(&["logout"]);
    a.ok(&["accept_request", "g2", "bob"]);
    let seeder = listen_addr(&a);
    let k1 = endpoint();
    let rt = runtime();

    let mut as_bob = rt.block_on(TrackerLink::open(net.trackers[0].addr, &k1));
    rt.block_on(as_bob.login_as("bob"));
    let t_f = rt.block_on(as_bob.issue_ok("g", "f.bin"));
    let t_other = rt.block_on(as_bob.issue_ok("g", "other.bin"));
    let t_g2 = rt.block_on(as_bob.issue_ok("g2", "f.bin"));
    let f_as_bob = |ticket: &str| handshake("g", "f.bin", sha1, "bob", ticket);

    let att = rt.block_on(present(seeder, &k1, f_as_bob(&t_other)));
    assert_refused_for_ticket(&att, "a ticket for other.bin shown for f.bin");
    let att = rt.block_on(present(
        seeder,
        &k1,
        handshake("g", "other.bin", other_sha1, "bob", &t_other),
    ));
    assert_served(&att, &other, "control: the other.bin ticket for other.bin");

    let att = rt.block_on(present(seeder, &k1, f_as_bob(&t_g2)));
    assert_refused_for_ticket(&att, "a ticket for g2/f.bin shown for g/f.bin");
    let att = rt.block_on(present(
        seeder,
        &k1,
        handshake("g2", "f.bin", sha1, "bob", &t_g2),
    ));
    assert_served(&att, &file, "control: the g2 ticket for g2/f.bin");

    // Forged: the exact claim the tracker would sign (bob, g, f.bin, K1,
    // a fresh expiry), signed by a ticket key of the attacker's making.
    let (bob, g, f): (UserId, GroupId, FileName) = (
        "bob".parse().expect("user"),
        "g".parse().expect("group"),
        "f.bin".parse().expect("name"),
    );
    let k1_key = k1.key();
    let claim = Claim {
        user: &bob,
        group: &g,
        file: &f,
        requester: &k1_key,
    };
    let rogue = ClusterKey::generate().expect("a cluster key of the attacker's");
    let forged = ticket::issue(&rogue.ticket_key(), &claim, now_ms() / 1000);
    assert_eq!(
        forged.len(),
        t_f.len(),
        "the forgery is shaped like a ticket"
    );
    let att = rt.block_on(present(seeder, &k1, f_as_bob(&forged)));
    assert_refused_for_ticket(&att, "a ticket signed by another cluster key");
    // A real ticket with its expiry moved (still within the cap).
    let (expiry, sig) = t_f.split_once('.').expect("EXPIRY.SIG");
    let moved = format!("{}.{sig}", expiry_of(&t_f) + 5);
    assert_ne!(moved.split_once('.').map(|m| m.0), Some(expiry));
    let att = rt.block_on(present(seeder, &k1, f_as_bob(&moved)));
    assert_refused_for_ticket(&att, "a real ticket with its expiry moved");
    // Control: the real one.
    let att = rt.block_on(present(seeder, &k1, f_as_bob(&t_f)));
    assert_served(&att, &file, "control: bob's real ticket for g/f.bin");
}

// ------------------------------------------------------------ 3. revocation mid-download

/// A seeder alice limited to `rate`, sharing a `size`-byte file `big.bin`
/// in group `g`, and bob, a member, downloading it (detached) until he has
/// verified some of it and is still receiving.
struct MidDownload {
    a: Daemon,
    b: Daemon,
    size: u64,
    _net: Net,
}

fn bytes_done(b: &Daemon) -> Option<u64> {
    let out = b.ctl(&["show_downloads"]);
    let list = out.json.filter(|_| out.status == 0)?;
    list.as_array()?
        .iter()
        .find(|x| x["name"] == "big.bin")
        .and_then(|x| x["bytes_done"].as_u64())
}

fn uploaded(a: &Daemon) -> u64 {
    a.status()["uploaded"]
        .as_u64()
        .expect("status shows uploaded")
}

fn mid_download(rate: &str, size: usize) -> MidDownload {
    let net = Net::start();
    let a = net.daemon_with("a", &["--max-upload-rate", rate]);
    let b = net.daemon("b");
    a.signup("alice", &pw("alice"));
    a.ok(&["create_group", "g"]);
    b.signup("bob", &pw("bob"));
    b.ok(&["join_group", "g"]);
    a.ok(&["accept_request", "g", "bob"]);
    let (path, _, _) = probe_file(&net.mkdir("src"), "big.bin", size);
    a.ok(&["upload_file", p(&path), "g"]);
    let dest = net.mkdir("dl");
    b.ok(&["download_file", "--detach", "g", "big.bin", p(&dest)]);
    // Received and verified some, and still receiving: both counters grow.
    let mut first = 0;
    assert!(
        wait_until(START_WAIT, || {
            first = bytes_done(&b).unwrap_or(0);
            first >= MIB as u64
        }),
        "bob's download never got going: {:?}",
        b.ctl(&["show_downloads"])
    );
    let up = uploaded(&a);
    let mut later = 0;
    assert!(
        wait_until(START_WAIT, || {
            later = bytes_done(&b).unwrap_or(0);
            later > first && uploaded(&a) > up
        }),
        "bob's download stopped growing before anything was revoked ({first} -> {later})"
    );
    MidDownload {
        a,
        b,
        size: size as u64,
        _net: net,
    }
}

/// One look, `at` after the revocation.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    bob: Option<u64>,
    alice_uploaded: u64,
}

/// Samples once a second for [`REVOKED_WITHIN`] from `since`.
fn watch(s: &MidDownload, since: Instant) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut k = 0u32;
    loop {
        let tick = since + Duration::from_secs(u64::from(k));
        if tick > since + REVOKED_WITHIN {
            return samples;
        }
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        samples.push(Sample {
            at: since.elapsed(),
            bob: bytes_done(&s.b),
            alice_uploaded: uploaded(&s.a),
        });
        k += 1;
    }
}

/// When a counter last moved, for messages.
fn last_move(samples: &[Sample], of: impl Fn(&Sample) -> Option<u64>) -> Option<Duration> {
    samples
        .windows(2)
        .filter(|w| of(&w[0]) != of(&w[1]))
        .map(|w| w[1].at)
        .last()
}

/// The samples of the last [`QUIET`] before [`REVOKED_WITHIN`] (at least
/// five of them).
fn quiet_window(samples: &[Sample]) -> Vec<Sample> {
    let quiet: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.at >= REVOKED_WITHIN - QUIET)
        .collect();
    assert!(
        quiet.len() >= 5,
        "too few samples in the last {QUIET:?}: {samples:?}"
    );
    quiet
}

/// Issue 11 acceptance: "a member who leaves mid-download stops receiving
/// bytes within 60 s". bob leaves the group while downloading from alice
/// (upload limited, so the download would take minutes). bob's daemon does
/// not stop the download by itself on leaving; it goes on asking the
/// tracker for fresh tickets, which are refused, so alice's lease on the
/// open connection runs out. Asserted: over the last 10 s before the 60 s
/// mark neither bob's verified bytes nor alice's uploaded count moves, and
/// bob does not have the whole file.
///
/// Would fail if tickets lived 10 minutes (or a seeder ignored their
/// expiry): at 512 KiB/s bob would keep receiving for all 60 s.
#[test]
fn a_member_who_leaves_mid_download_stops_receiving_within_60_s() {
    let s = mid_download("512K", 64 * MIB);
    s.b.ok(&["leave_group", "g"]);
    let left = Instant::now();
    let samples = watch(&s, left);
    let quiet = quiet_window(&samples);
    let stopped_bob = last_move(&samples, |x| x.bob);
    let stopped_alice = last_move(&samples, |x| Some(x.alice_uploaded));
    eprintln!(
        "after leaving: bob's bytes last moved at {stopped_bob:?}, alice's uploaded at {stopped_alice:?}"
    );
    assert!(
        quiet.iter().all(|x| x.bob.is_some() && x.bob == quiet[0].bob),
        "bob's verified bytes still moving {:?} after leaving (last move at {stopped_bob:?}): {quiet:?}",
        REVOKED_WITHIN - QUIET
    );
    assert!(
        quiet
            .iter()
            .all(|x| x.alice_uploaded == quiet[0].alice_uploaded),
        "alice still uploading {:?} after bob left (last move at {stopped_alice:?}): {quiet:?}",
        REVOKED_WITHIN - QUIET
    );
    let got = quiet[0].bob.unwrap_or(0);
    assert!(
        got < s.size,
        "bob got the whole file ({got} bytes): the test proves nothing, slow alice down"
    );
}

/// The same for a member who logs out mid-download, measured where the
/// bytes leave: alice's `uploaded` count. (bob's daemon pauses its
/// downloads on logout by itself, so this test passes on bob's side alone;
/// that the seeder cuts a logged-out requester that does not stop is shown
/// by the raw attacker of `an_attacker_cut_from_the_group_or_logged_out_is_cut_off_with_its_ticket`.)
#[test]
fn a_member_who_logs_out_mid_download_stops_receiving_within_60_s() {
    let s = mid_download("512K", 64 * MIB);
    s.b.ok(&["logout"]);
    let out = Instant::now();
    assert!(s.b.status()["user"].is_null(), "bob is logged out");
    let samples = watch(&s, out);
    let quiet = quiet_window(&samples);
    let stopped = last_move(&samples, |x| Some(x.alice_uploaded));
    eprintln!("after logout: alice's uploaded last moved at {stopped:?}");
    assert!(
        quiet
            .iter()
            .all(|x| x.alice_uploaded == quiet[0].alice_uploaded),
        "alice still uploading {:?} after bob logged out (last move at {stopped:?}): {quiet:?}",
        REVOKED_WITHIN - QUIET
    );
    assert!(
        quiet[0].alice_uploaded < s.size,
        "alice sent the whole file: the test proves nothing, slow alice down"
    );
}

/// Raw attackers that hold a good ticket and an open, served connection,
/// and then lose the right to it: dave leaves the group, erin logs out.
/// Both keep requesting blocks and never renew (the tracker now refuses
/// them tickets: asserted). alice must end each connection within 60 s of
/// the ticket's issue. Renewals that must end a served link at once: a
/// ticket for another of dave's links, a forged one, and frank's own
/// ticket once expired; control: frank renewing with a fresh ticket is
/// still served.
///
/// Would fail if tickets lived 10 minutes or the seeder did not end a
/// connection when its lease runs out (dave and erin would still be served
/// at the 70 s deadline), or if a renewal were not checked like a
/// handshake.
#[test]
fn an_attacker_cut_from_the_group_or_logged_out_is_cut_off_with_its_ticket() {
    let net = Net::start();
    let a = net.daemon("a");
    let m = net.daemon("m");
    a.signup("alice", &pw("alice"));
    a.ok(&["create_group", "g"]);
    let (path, file, sha1) = probe_file(&net.mkdir("src"), "f.bin", MIB);
    a.ok(&["upload_file", p(&path), "g"]);
    add_members(&a, &m, "g", &["dave", "erin", "frank"]);
    let seeder = listen_addr(&a);
    let tracker = net.trackers[0].addr;
    let hs = |user: &str, ticket: &str| handshake("g", "f.bin", sha1, user, ticket);
    let (kx, kd, ke, kf) = (endpoint(), endpoint(), endpoint(), endpoint());
    let rt = runtime();

    rt.block_on(async {
        // A ticket for another of dave's links: logged in on Kx first (the
        // login on Kd below ends that session; the ticket stays signed).
        let mut on_kx = TrackerLink::open(tracker, &kx).await;
        on_kx.login_as("dave").await;
        let t_x = on_kx.issue_ok("g", "f.bin").await;
        let mut dave = TrackerLink::open(tracker, &kd).await;
        dave.login_as("dave").await;
        let dave_issued = now_ms();
        let t_d = dave.issue_ok("g", "f.bin").await;
        let mut erin = TrackerLink::open(tracker, &ke).await;
        erin.login_as("erin").await;
        let erin_issued = now_ms();
        let t_e = erin.issue_ok("g", "f.bin").await;
        let mut frank = TrackerLink::open(tracker, &kf).await;
        frank.login_as("frank").await;
        let t_f0 = frank.issue_ok("g", "f.bin").await;

        // Bad renewals on a served link end it at once.
        let (dave_id, g, f): (UserId, GroupId, FileName) = (
            "dave".parse().expect("user"),
            "g".parse().expect("group"),
            "f.bin".parse().expect("name"),
        );
        let kd_key = kd.key();
        let claim = Claim {
            user: &dave_id,
            group: &g,
            file: &f,
            requester: &kd_key,
        };
        let rogue = ClusterKey::generate().expect("an attacker's cluster key");
        let forged = ticket::issue(&rogue.ticket_key(), &claim, now_ms() / 1000);
        for (what, bad) in [
            ("renewal with a ticket for another link", &t_x),
            ("renewal with a forged ticket", &forged),
        ] {
            let mut l = served_link(seeder, &kd, hs("dave", &t_d), &file, what).await;
            let att = renew_then_request(&mut l, bad).await;
            assert_cut(&att, what);
        }

        // Served now; then the membership ends and the attackers go on.
        let dl = served_link(seeder, &kd, hs("dave", &t_d), &file, "dave before leaving").await;
        let el = served_link(seeder, &ke, hs("erin", &t_e), &file, "erin before logout").await;
        dave.leave("g").await;
        let dave_left = now_ms();
        erin.logout().await;
        let erin_out = now_ms();
        dave.assert_no_ticket("g", "f.bin", ErrorCode::NotMember)
            .await;
        erin.assert_no_ticket("g", "f.bin", ErrorCode::NotLoggedIn)
            .await;
        let deadline = tokio::time::Instant::now() + REVOKED_WITHIN + QUIET;
        let frank_part = async {
            // Wait out frank's first ticket (bounded: it lives 45 s).
            let expired = expiry_of(&t_f0) + 1;
            let wait = Duration::from_millis((expired * 1000).saturating_sub(now_ms()));
            assert!(wait <= REVOKED_WITHIN, "a ticket living {wait:?} more");
            tokio::time::sleep(wait).await;
            let t_f1 = frank.issue_ok("g", "f.bin").await;
            let what = "renewal with frank's own ticket, expired";
            let mut l = served_link(seeder, &kf, hs("frank", &t_f1), &file, what).await;
            let att = renew_then_request(&mut l, &t_f0).await;
            assert_cut(&att, what);
            // Control: a fresh ticket renews a served link.
            let t_f2 = frank.issue_ok("g", "f.bin").await;
            let what = "control: renewal with a fresh ticket";
            let mut l = served_link(seeder, &kf, hs("frank", &t_f1), &file, what).await;
            let att = renew_then_request(&mut l, &t_f2).await;
            assert!(
                !att.closed && att.piece().is_some(),
                "{what}: want a block, the link open; got {att:?}"
            );
        };
        let (dave_run, erin_run, ()) = tokio::join!(
            keep_requesting(dl, deadline),
            keep_requesting(el, deadline),
            frank_part
        );
        for (who, run, issued, revoked, ticket) in [
            ("dave (left the group)", &dave_run, dave_issued, dave_left, &t_d),
            ("erin (logged out)", &erin_run, erin_issued, erin_out, &t_e),
        ] {
            let after = run.pieces.iter().filter(|&&t| t > revoked).count();
            eprintln!(
                "{who}: {after} blocks after the revocation, cut {:?} ms after the ticket was issued (expiry {})",
                run.closed_ms.map(|c| c.saturating_sub(issued)),
                expiry_of(ticket)
            );
            let closed = run.closed_ms.unwrap_or_else(|| {
                panic!(
                    "{who}: still served at the test's deadline ({:?} after the revocation): \
                     {} blocks, the last at +{:?} ms after the ticket was issued",
                    REVOKED_WITHIN + QUIET,
                    run.pieces.len(),
                    run.pieces.last().map(|t| t.saturating_sub(issued))
                )
            });
            let limit = issued + u64::try_from(REVOKED_WITHIN.as_millis()).expect("ms");
            assert!(
                closed <= limit,
                "{who}: cut {} ms after the ticket was issued; the bound is {REVOKED_WITHIN:?}",
                closed - issued
            );
            let last = run.pieces.last().copied().unwrap_or(issued);
            assert!(
                last <= expiry_of(ticket) * 1000 + 1000,
                "{who}: a block at {last} ms, after the ticket's expiry {}",
                expiry_of(ticket)
            );
        }
    });
}

// ------------------------------------------------------------ 5. an impostor at a holder's address

/// What an impostor listening at a holder's address got from downloaders.
#[derive(Debug, Default)]
struct Impostor {
    /// Connections whose TLS handshake completed (the downloader dialled
    /// us and saw our key).
    secured: usize,
    /// Application bytes received on them: a handshake, a ticket.
    bytes: usize,
}

/// Listens at `addr` with a key of its own until [`ANSWER_WAIT`] after
/// the first secured connection (at most `within`), reading everything
/// each downloader sends.
async fn impersonate(addr: SocketAddr, within: Duration) -> Impostor {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the holder's address");
    let key = endpoint();
    let mut got = Impostor::default();
    let mut until = tokio::time::Instant::now() + within;
    while let Ok(Ok((tcp, _))) = tokio::time::timeout_at(until, listener.accept()).await {
        let Ok(secured) = key.accept(tcp).await else {
            continue;
        };
        if got.secured == 0 {
            until = until.min(tokio::time::Instant::now() + ANSWER_WAIT);
        }
        got.secured += 1;
        let mut link = secured.link;
        let mut buf = [0u8; 4096];
        // Until the downloader closes (or stays silent up to the end).
        while let Ok(Ok(n @ 1..)) = tokio::time::timeout_at(until, link.read(&mut buf)).await {
            got.bytes += n;
        }
    }
    got
}

/// A daemon dialled at a holder's address by someone else (a machine that
/// took the address over, a spoofed route) proves a key the tracker does
/// not vouch for: the downloader sends it nothing (no handshake, so no
/// ticket) and hangs up. The holder, bob, is killed while the tracker still
/// lists him online (no heartbeat for up to 10 s), and the attacker binds
/// his address with a key of its own.
#[test]
fn an_impostor_at_a_holders_address_gets_no_handshake_and_no_ticket() {
    let net = Net::start();
    let a = net.daemon("a");
    let mut b = net.daemon("b");
    let d = net.daemon("d");
    a.signup("alice", &pw("alice"));
    a.ok(&["create_group", "g"]);
    add_members(&a, &d, "g", &["bob", "dave"]);
    let (path, _, _) = probe_file(&net.mkdir("src"), "f.bin", MIB);
    b.ok(&["login", "bob", &pw("bob")]);
    b.ok(&["upload_file", p(&path), "g"]);
    let bob = listen_addr(&b);
    d.ok(&["login", "dave", &pw("dave")]);
    let rt = runtime();

    // From here the clock runs: bob is listed online for at most 10 s.
    b.kill9();
    let watch = rt.spawn(impersonate(bob, Duration::from_secs(20)));
    let dest = net.mkdir("dest");
    d.ok(&["download_file", "g", "f.bin", p(&dest), "--detach"]);
    let got = rt.block_on(watch).expect("the impostor task");
    assert!(
        got.secured >= 1,
        "the downloader never dialled bob's address (was bob still listed online?): {got:?}"
    );
    assert_eq!(
        got.bytes, 0,
        "the downloader sent {} bytes to a key the tracker does not vouch for: {got:?}",
        got.bytes
    );
    assert!(
        !dest.join("f.bin").exists(),
        "nothing came from the impostor"
    );
}
