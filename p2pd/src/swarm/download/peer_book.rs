//! Who a download knows, talks to, and no longer trusts.
//!
//! Peer lifecycle: known (listed online by the tracker) → connecting (a
//! connection attached) → ready (its bitfield arrived) → lost (closed,
//! stalled, lied): its connection is detached and it may be dialled again
//! after `retry_at` if the tracker still lists it online. One [`PeerId`]
//! per remote user for the whole download, so per-peer statistics survive
//! reconnections.
//!
//! Blame for corrupt pieces: a sole contributor is certainly lying and is
//! banned for the rest of the download. With several contributors, one
//! already banned explains it; otherwise each gets a strike, and
//! [`MAX_STRIKES`] strikes ban, so an honest peer whose blocks were mixed
//! with a liar's is not lost.
//!
//! Hints: a server names the others fetching the same file from it
//! (`Fetchers`). Those not yet listed online are *hinted*: they will hold
//! pieces in a moment, so the download asks the tracker again soon (at most
//! every [`HINT_LOCATE_INTERVAL`], for at most [`HINT_TTL`] per hint)
//! instead of at its next regular look, and dials them as soon as the
//! tracker lists them. A hint is only a reason to ask the tracker: the
//! address and key still come from it.
//!
//! Pure bookkeeping: no I/O, no clock (time is passed in).

use crate::swarm::peer_conn::Out;
use crate::swarm::pieces::PeerId;
use p2p_link::PublicKey;
use proto::peer::Bitfield;
use proto::tracker::PeerEntry;
use proto::UserId;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Corrupt pieces shared with other contributors before a peer is banned.
pub const MAX_STRIKES: u32 = 3;
/// Shortest time between two looks at the tracker prompted by hints.
pub const HINT_LOCATE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a hinted user that the tracker does not list keeps prompting
/// looks (it marks itself a holder after its first verified piece, well
/// within this; a name that never shows up stops costing anything).
pub const HINT_TTL: Duration = Duration::from_secs(15);
/// Hinted users remembered at most (a hostile server cannot grow the book).
pub const MAX_HINTS: usize = 256;

/// The download's handle on one live connection task.
#[derive(Debug)]
pub struct Conn {
    /// Tells this connection's events from a previous one's.
    pub no: u64,
    pub tx: mpsc::UnboundedSender<Out>,
    pub stop: CancellationToken,
}

/// One remote user of this download.
#[derive(Debug)]
pub struct Slot {
    pub user: UserId,
    pub addr: SocketAddr,
    /// The link key the tracker vouches for at `addr`.
    pub key: PublicKey,
    pub conn: Option<Conn>,
    /// Set once the handshake succeeded.
    pub bitfield: Option<Bitfield>,
    /// Last block received (or when the pipeline last became non-empty).
    pub last_block: Instant,
    pub retry_at: Instant,
}

/// What blaming a corrupt piece decided for one contributor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blame {
    pub peer: PeerId,
    pub user: UserId,
    /// Banned now (else: a strike only).
    pub banned: bool,
    /// Banned by this blame, not before: the moment to tell the tracker.
    pub newly: bool,
}

#[derive(Debug, Default)]
pub struct PeerBook {
    slots: HashMap<PeerId, Slot>,
    ids: HashMap<UserId, PeerId>,
    banned: HashSet<UserId>,
    strikes: HashMap<UserId, u32>,
    /// Users the last `Locate` listed online.
    online: HashSet<UserId>,
    /// Banned users the last `Locate` listed online (for [`why_idle`]).
    ///
    /// [`why_idle`]: PeerBook::why_idle
    banned_online: Vec<UserId>,
    /// The last `Locate` said the file is no longer shared in its group.
    delisted: bool,
    /// Users a server named as fetching this file too, not listed online
    /// yet, with when they were first named.
    hinted: HashMap<UserId, Instant>,
}

impl PeerBook {
    /// Learns who is online now (from `Locate`), skipping `me`, banned
    /// users and entries without a valid key. New users get an id and a
    /// slot; known ones a fresh address and key (a restarted daemon).
    pub fn learn(&mut self, peers: Vec<PeerEntry>, me: &UserId, now: Instant) {
        self.online.clear();
        self.banned_online.clear();
        self.delisted = false;
        for p in peers {
            if self.banned.contains(&p.user) {
                self.banned_online.push(p.user);
                continue;
            }
            if &p.user == me {
                continue;
            }
            let Ok(key) = p.key.parse::<PublicKey>() else {
                tracing::debug!(user = %p.user, "the tracker gave no valid link key; skipped");
                continue;
            };
            self.hinted.remove(&p.user);
            self.online.insert(p.user.clone());
            let next = PeerId(self.ids.len() as u32);
            let id = *self.ids.entry(p.user.clone()).or_insert(next);
            self.slots
                .entry(id)
                .and_modify(|s| (s.addr, s.key) = (p.addr, key))
                .or_insert(Slot {
                    user: p.user,
                    addr: p.addr,
                    key,
                    conn: None,
                    bitfield: None,
                    last_block: now,
                    retry_at: now,
                });
        }
    }

    /// A server named `users` as fetching this file from it too: remember
    /// those the tracker has not listed online (see the module header).
    /// Returns how many are newly hinted.
    pub fn hint(&mut self, users: &[UserId], me: &UserId, now: Instant) -> usize {
        self.hinted
            .retain(|_, at| now.duration_since(*at) < HINT_TTL);
        let mut new = 0;
        for u in users {
            if u == me || self.online.contains(u) || self.banned.contains(u) {
                continue;
            }
            if self.hinted.len() >= MAX_HINTS && !self.hinted.contains_key(u) {
                break;
            }
            self.hinted.entry(u.clone()).or_insert_with(|| {
                new += 1;
                now
            });
        }
        new
    }

    /// Whether hints call for asking the tracker again now, the last look
    /// having been at `last_locate`.
    pub fn hints_due(&self, now: Instant, last_locate: Instant) -> bool {
        now.duration_since(last_locate) >= HINT_LOCATE_INTERVAL
            && self
                .hinted
                .values()
                .any(|&at| now.duration_since(at) < HINT_TTL)
    }

    /// Whether the tracker listed anyone (usable) online.
    pub fn any_online(&self) -> bool {
        !self.online.is_empty()
    }

    /// Learns that the file is no longer shared in its group (every holder
    /// stopped sharing it): nobody is online for it until someone shares it
    /// again.
    pub fn learn_delisted(&mut self) {
        self.online.clear();
        self.banned_online.clear();
        self.delisted = true;
    }

    /// Why no peer is connected, for people (`show_downloads`' `reason`,
    /// the progress bar); `None` while one is.
    pub fn why_idle(&self) -> Option<String> {
        if self.connected() > 0 {
            return None;
        }
        if !self.online.is_empty() {
            let n = self.online.len();
            return Some(format!(
                "cannot reach any holder yet ({n} online); retrying"
            ));
        }
        let names = |users: &mut dyn Iterator<Item = &UserId>| {
            let mut names: Vec<&str> = users.map(UserId::as_str).collect();
            names.sort_unstable();
            names.join(", ")
        };
        if !self.banned_online.is_empty() {
            return Some(format!(
                "every holder online ({}) sent corrupt data; waiting for another holder",
                names(&mut self.banned_online.iter())
            ));
        }
        // The tracker stops listing a copy reported corrupt, so the liars
        // are no longer among those online: say what happened to them.
        let liars = match self.banned.is_empty() {
            true => String::new(),
            false => format!(
                " ({}) sent corrupt data and",
                names(&mut self.banned.iter())
            ),
        };
        Some(match (self.delisted, liars.is_empty()) {
            (false, true) => "no holder of the file is online; waiting for one".into(),
            (false, false) => {
                format!("the holders found{liars} no other is online; waiting for another holder")
            }
            (true, true) => {
                "nobody shares the file any more; waiting for someone to share it again".into()
            }
            (true, false) => format!(
                "the holders found{liars} nobody else shares the file; waiting for someone to \
                 share it again"
            ),
        })
    }

    /// Peers to dial now: online, not connected, past their retry time, in
    /// id order, as many as fit under `max_connected`.
    pub fn due(&self, now: Instant, max_connected: usize) -> Vec<PeerId> {
        let room = max_connected.saturating_sub(self.connected());
        let mut due: Vec<PeerId> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.conn.is_none()
                    && s.retry_at <= now
                    && self.online.contains(&s.user)
                    && !self.banned.contains(&s.user)
            })
            .map(|(&id, _)| id)
            .collect();
        due.sort_unstable();
        due.truncate(room);
        due
    }

    /// Every open connection (ready or still handshaking).
    pub fn conns(&self) -> impl Iterator<Item = &Conn> {
        self.slots.values().filter_map(|s| s.conn.as_ref())
    }

    pub fn connected(&self) -> usize {
        self.slots.values().filter(|s| s.conn.is_some()).count()
    }

    /// How many peers' handshakes succeeded.
    pub fn ready_count(&self) -> usize {
        self.ready_ids().count()
    }

    /// Peers whose handshake succeeded, in id order.
    pub fn ready(&self) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> = self.ready_ids().collect();
        ids.sort_unstable();
        ids
    }

    fn ready_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.slots
            .iter()
            .filter(|(_, s)| s.bitfield.is_some())
            .map(|(&id, _)| id)
    }

    pub fn get(&self, peer: PeerId) -> Option<&Slot> {
        self.slots.get(&peer)
    }

    pub fn get_mut(&mut self, peer: PeerId) -> Option<&mut Slot> {
        self.slots.get_mut(&peer)
    }

    pub fn user_of(&self, peer: PeerId) -> Option<&UserId> {
        self.slots.get(&peer).map(|s| &s.user)
    }

    /// Whether `conn` is `peer`'s current connection (else its events are
    /// late ones of an earlier connection).
    pub fn is_current(&self, peer: PeerId, conn: u64) -> bool {
        self.slots
            .get(&peer)
            .and_then(|s| s.conn.as_ref())
            .is_some_and(|c| c.no == conn)
    }

    /// A new connection to `peer`, handshaking.
    pub fn attach(&mut self, peer: PeerId, conn: Conn, now: Instant) {
        if let Some(s) = self.slots.get_mut(&peer) {
            s.conn = Some(conn);
            s.bitfield = None;
            s.last_block = now;
        }
    }

    /// Ends `peer`'s connection (its task is told to stop) and schedules
    /// the next dial `retry` from `now`. Returns the bitfield it had, for
    /// the caller's availability counts.
    pub fn detach(&mut self, peer: PeerId, retry: Duration, now: Instant) -> Option<Bitfield> {
        let slot = self.slots.get_mut(&peer)?;
        if let Some(c) = slot.conn.take() {
            c.stop.cancel();
        }
        slot.retry_at = now + retry;
        slot.bitfield.take()
    }

    /// Connected peers with requests outstanding (`outstanding(peer)`) that
    /// sent no block for longer than `timeout`.
    pub fn stalled(
        &self,
        now: Instant,
        timeout: Duration,
        outstanding: impl Fn(PeerId) -> usize,
    ) -> Vec<PeerId> {
        self.slots
            .iter()
            .filter(|(&id, s)| {
                s.conn.is_some()
                    && outstanding(id) > 0
                    && now.duration_since(s.last_block) > timeout
            })
            .map(|(&id, _)| id)
            .collect()
    }

    /// Blames the contributors of a corrupt piece (see the module header).
    /// Banned users are no longer dialled; the caller drops their
    /// connections.
    pub fn blame(&mut self, culprits: &[PeerId]) -> Vec<Blame> {
        let users: Vec<(PeerId, UserId)> = culprits
            .iter()
            .filter_map(|&c| Some((c, self.user_of(c)?.clone())))
            .collect();
        if users.len() > 1 && users.iter().any(|(_, u)| self.banned.contains(u)) {
            return Vec::new();
        }
        let sole = culprits.len() == 1;
        users
            .into_iter()
            .map(|(peer, user)| {
                let strikes = self.strikes.entry(user.clone()).or_default();
                *strikes += 1;
                let banned = sole || *strikes >= MAX_STRIKES;
                let newly = banned && self.banned.insert(user.clone());
                if banned {
                    self.online.remove(&user);
                }
                Blame {
                    peer,
                    user,
                    banned,
                    newly,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(names: &[&str]) -> Vec<UserId> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn hints_prompt_a_look_until_the_tracker_lists_them_or_they_expire() {
        let me: UserId = "me".parse().unwrap();
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        book.learn(vec![entry("seeder", 1)], &me, t0);
        assert!(!book.hints_due(t0 + Duration::from_secs(5), t0), "no hints");
        // The seeder names us, itself a known peer, and two others.
        let named = users(&["me", "seeder", "b", "c"]);
        assert_eq!(book.hint(&named, &me, t0), 2);
        assert_eq!(book.hint(&named, &me, t0), 0, "named again: nothing new");
        // Not more often than HINT_LOCATE_INTERVAL after the last look.
        assert!(!book.hints_due(t0 + Duration::from_millis(300), t0));
        let t1 = t0 + HINT_LOCATE_INTERVAL;
        assert!(book.hints_due(t1, t0));
        // The tracker lists b: c still prompts looks.
        book.learn(vec![entry("seeder", 1), entry("b", 2)], &me, t1);
        assert!(book.hints_due(t1 + HINT_LOCATE_INTERVAL, t1));
        assert_eq!(book.due(t1, 16).len(), 2, "b is dialled at once");
        // Then c too: no more hinted looks.
        let t2 = t1 + HINT_LOCATE_INTERVAL;
        book.learn(
            vec![entry("seeder", 1), entry("b", 2), entry("c", 3)],
            &me,
            t2,
        );
        assert!(!book.hints_due(t2 + HINT_LOCATE_INTERVAL, t2));
        // A name the tracker never lists stops prompting after HINT_TTL.
        book.hint(&users(&["ghost"]), &me, t2);
        assert!(book.hints_due(t2 + HINT_LOCATE_INTERVAL, t2));
        assert!(!book.hints_due(t2 + HINT_TTL, t2 + HINT_TTL - HINT_LOCATE_INTERVAL));
    }

    #[test]
    fn hints_are_bounded_and_skip_banned_users() {
        let me: UserId = "me".parse().unwrap();
        let now = Instant::now();
        let mut book = PeerBook::default();
        let many: Vec<UserId> = (0..1000)
            .map(|i| format!("u{i}").parse().unwrap())
            .collect();
        assert_eq!(book.hint(&many, &me, now), MAX_HINTS);
        assert_eq!(book.hinted.len(), MAX_HINTS);
        let mut fresh = PeerBook::default();
        fresh.banned.insert("liar".parse().unwrap());
        assert_eq!(fresh.hint(&users(&["liar"]), &me, now), 0);
    }

    fn entry(user: &str, port: u16) -> PeerEntry {
        PeerEntry {
            user: user.parse().unwrap(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            complete: true,
            key: "ab".repeat(32),
        }
    }

    fn conn(no: u64) -> Conn {
        Conn {
            no,
            tx: mpsc::unbounded_channel().0,
            stop: CancellationToken::new(),
        }
    }

    fn me() -> UserId {
        "me".parse().unwrap()
    }

    #[test]
    fn learns_peers_with_stable_ids_and_skips_me() {
        let mut book = PeerBook::default();
        let now = Instant::now();
        book.learn(
            vec![entry("a", 1), entry("me", 2), entry("b", 3)],
            &me(),
            now,
        );
        assert_eq!(book.due(now, 16), vec![PeerId(0), PeerId(1)]);
        // b comes back on another port; a goes offline.
        book.learn(vec![entry("b", 4)], &me(), now);
        assert_eq!(book.due(now, 16), vec![PeerId(1)]);
        assert_eq!(book.get(PeerId(1)).unwrap().addr.port(), 4);
        assert!(book.any_online());
        book.learn(vec![], &me(), now);
        assert!(!book.any_online());
    }

    #[test]
    fn a_peer_is_dialled_only_with_a_key_and_a_restart_brings_a_new_one() {
        let mut book = PeerBook::default();
        let now = Instant::now();
        let mut keyless = entry("a", 1);
        keyless.key = "not a key".into();
        book.learn(vec![keyless, entry("b", 2)], &me(), now);
        assert_eq!(book.due(now, 16), vec![PeerId(0)], "only b");
        assert_eq!(book.get(PeerId(0)).unwrap().user.as_str(), "b");
        let mut restarted = entry("b", 5);
        restarted.key = "cd".repeat(32);
        book.learn(vec![restarted], &me(), now);
        let b = book.get(PeerId(0)).unwrap();
        assert_eq!((b.addr.port(), b.key.to_string()), (5, "cd".repeat(32)));
    }

    #[test]
    fn an_idle_download_says_why() {
        let mut book = PeerBook::default();
        let now = Instant::now();
        assert_eq!(
            book.why_idle().as_deref(),
            Some("no holder of the file is online; waiting for one")
        );
        book.learn(vec![entry("bob", 1)], &me(), now);
        assert_eq!(
            book.why_idle().as_deref(),
            Some("cannot reach any holder yet (1 online); retrying")
        );
        book.attach(PeerId(0), conn(1), now);
        assert_eq!(book.why_idle(), None, "connected");
        let blamed = book.blame(&[PeerId(0)]);
        assert!(blamed[0].banned, "a sole liar is banned");
        book.detach(PeerId(0), Duration::ZERO, now);
        book.learn(vec![entry("bob", 1)], &me(), now);
        assert_eq!(
            book.why_idle().as_deref(),
            Some("every holder online (bob) sent corrupt data; waiting for another holder")
        );
        book.learn(vec![entry("bob", 1), entry("carol", 2)], &me(), now);
        assert!(book.why_idle().unwrap().starts_with("cannot reach"));
        // The tracker stopped listing bob's copy, then the file.
        book.learn(vec![], &me(), now);
        assert_eq!(
            book.why_idle().as_deref(),
            Some(
                "the holders found (bob) sent corrupt data and no other is online; \
                 waiting for another holder"
            )
        );
        book.learn_delisted();
        assert_eq!(
            book.why_idle().as_deref(),
            Some(
                "the holders found (bob) sent corrupt data and nobody else shares the file; \
                 waiting for someone to share it again"
            )
        );
        let mut fresh = PeerBook::default();
        fresh.learn_delisted();
        assert!(fresh
            .why_idle()
            .unwrap()
            .starts_with("nobody shares the file any more"));
    }

    #[test]
    fn dialling_respects_the_cap_connections_and_retry_times() {
        let mut book = PeerBook::default();
        let now = Instant::now();
        book.learn(
            vec![entry("a", 1), entry("b", 2), entry("c", 3)],
            &me(),
            now,
        );
        assert_eq!(book.due(now, 2), vec![PeerId(0), PeerId(1)]);
        book.attach(PeerId(0), conn(1), now);
        assert_eq!(book.connected(), 1);
        assert_eq!(book.due(now, 2), vec![PeerId(1)]);
        assert!(book.is_current(PeerId(0), 1));
        assert!(!book.is_current(PeerId(0), 2));
        book.get_mut(PeerId(0)).unwrap().bitfield = Some(Bitfield::full(3));
        assert_eq!(book.ready(), vec![PeerId(0)]);
        assert_eq!(book.ready_count(), 1);
        let stop = book
            .get(PeerId(0))
            .unwrap()
            .conn
            .as_ref()
            .unwrap()
            .stop
            .clone();
        let had = book.detach(PeerId(0), Duration::from_secs(2), now);
        assert_eq!(had.map(|b| b.count()), Some(3));
        assert!(stop.is_cancelled(), "the connection task is told to stop");
        assert!(book.ready().is_empty());
        assert_eq!(book.ready_count(), 0);
        assert!(
            !book.due(now, 16).contains(&PeerId(0)),
            "not before its retry time"
        );
        assert!(book
            .due(now + Duration::from_secs(2), 16)
            .contains(&PeerId(0)));
    }

    #[test]
    fn stalled_peers_are_those_with_requests_and_no_recent_block() {
        let mut book = PeerBook::default();
        let t0 = Instant::now();
        book.learn(vec![entry("a", 1), entry("b", 2)], &me(), t0);
        book.attach(PeerId(0), conn(1), t0);
        book.attach(PeerId(1), conn(2), t0);
        let later = t0 + Duration::from_secs(11);
        let outstanding = |p: PeerId| if p == PeerId(0) { 3 } else { 0 };
        assert_eq!(
            book.stalled(later, Duration::from_secs(10), outstanding),
            vec![PeerId(0)]
        );
        assert!(book
            .stalled(t0, Duration::from_secs(10), outstanding)
            .is_empty());
    }

    #[test]
    fn a_sole_liar_is_banned_at_once_shared_blame_takes_strikes() {
        let mut book = PeerBook::default();
        let now = Instant::now();
        book.learn(
            vec![entry("a", 1), entry("b", 2), entry("c", 3)],
            &me(),
            now,
        );
        let (a, b, c) = (PeerId(0), PeerId(1), PeerId(2));
        // Shared blame: strikes, no ban, twice.
        for _ in 0..2 {
            let v = book.blame(&[a, b]);
            assert!(v.iter().all(|x| !x.banned), "{v:?}");
        }
        // The third shared strike bans both.
        let v = book.blame(&[a, b]);
        assert!(v.iter().all(|x| x.banned && x.newly), "{v:?}");
        assert_eq!(book.due(now, 16), vec![c]);
        // A banned user explains a later shared corruption: c keeps clean.
        assert!(book.blame(&[a, c]).is_empty());
        // Alone, c is banned at once and never relearned.
        let v = book.blame(&[c]);
        assert_eq!(
            v,
            vec![Blame {
                peer: c,
                user: "c".parse().unwrap(),
                banned: true,
                newly: true,
            }]
        );
        // A second corrupt piece of c's, already in flight: banned, not anew.
        let v = book.blame(&[c]);
        assert!(v[0].banned && !v[0].newly, "{v:?}");
        book.learn(vec![entry("c", 3)], &me(), now);
        assert!(book.due(now, 16).is_empty());
        assert!(!book.any_online());
    }
}
