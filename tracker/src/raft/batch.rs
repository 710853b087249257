//! Group commit: the writes that queue up while earlier ones are being
//! committed go into the log together, as one [`Command::Batch`] entry.
//!
//! Why: openraft 0.9 hands each `client_write` to the log store as its own
//! append and waits for it to be flushed before it looks at the next one,
//! and our log store fsyncs each append (redb `Durability::Immediate`), so
//! one write per entry means one fsync per write on every tracker, a few
//! milliseconds each. Batching at the application level makes it one fsync
//! per batch, whatever the batch holds, and one forwarded request per batch
//! from a follower to the leader instead of one connection per write.
//!
//! How (the write path, `raft/write.rs`, runs it): every write (a daemon's,
//! a presence batch, one forwarded by a follower) is queued as a
//! [`Queued`]; one task
//! takes the queue's head plus whatever else is waiting, up to
//! [`MAX_BATCH_WRITES`] writes or about [`MAX_BATCH_BYTES`], and commits that
//! batch while the next one accumulates; at most [`MAX_BATCHES_IN_FLIGHT`]
//! batches are being committed at once. Under light load a batch is one
//! write and is logged as a plain command, exactly as before.
//!
//! Semantics are those of single writes: each write of a batch is applied
//! in order as if it were its own entry (a refusal refuses only that write),
//! each caller gets its own result, and a batch that failed with an unknown
//! outcome reports `tracker_unavailable` to every caller in it.

use crate::state::{Applied, Command};
use proto::{ErrorCode, WireError};
use std::time::Instant;
use tokio::sync::oneshot;

/// Most writes in one batch.
pub const MAX_BATCH_WRITES: usize = 1024;
/// About the most bytes of commands in one batch (one log entry); a single
/// larger write still goes alone.
pub const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Batches being committed at once by one tracker. While they are, new
/// writes wait and form the next batch; more would only queue in Raft,
/// which appends one entry at a time.
pub const MAX_BATCHES_IN_FLIGHT: usize = 2;

/// One or more writes waiting for a batch, committed together and
/// answered together.
pub struct Queued {
    /// One write of this tracker, or the batch a follower forwarded (kept
    /// whole so that it is committed, or refused, as one).
    pub cmds: Vec<Command>,
    /// Forwarded by a follower: commit only while leader, never forward on.
    pub forwarded: bool,
    /// Not sent to the leader by then: given up (certainly not appended).
    pub deadline: Instant,
    /// When it was queued (for the write path's timing log).
    pub queued: Instant,
    pub done: oneshot::Sender<Written>,
}

/// How a queued write ended.
#[derive(Debug)]
pub enum Written {
    /// Committed (and applied here) at log `index`; one result per command.
    Applied {
        results: Vec<Result<Applied, WireError>>,
        index: u64,
    },
    /// Not appended: this tracker is not the leader (best guess given).
    NotLeader(Option<u64>),
    /// Not committed, or the outcome is unknown; the error says which.
    Failed(WireError),
}

/// Appends queued items to `batch` while they fit; returns the first one
/// that does not (it starts the next batch). `batch` must hold at least the
/// first item, which is kept whatever its size.
pub fn fill(batch: &mut Vec<Queued>, mut next: impl FnMut() -> Option<Queued>) -> Option<Queued> {
    let mut writes: usize = batch.iter().map(|q| q.cmds.len()).sum();
    let mut bytes: usize = batch.iter().map(approx_bytes).sum();
    while let Some(q) = next() {
        let (w, b) = (q.cmds.len(), approx_bytes(&q));
        if writes + w > MAX_BATCH_WRITES || bytes + b > MAX_BATCH_BYTES {
            return Some(q);
        }
        writes += w;
        bytes += b;
        batch.push(q);
    }
    None
}

fn approx_bytes(q: &Queued) -> usize {
    q.cmds.iter().map(Command::approx_bytes).sum()
}

/// The one log entry for `cmds`: the command itself when alone (so a
/// lightly loaded tracker logs exactly what it did before), else a batch.
pub fn combine(mut cmds: Vec<Command>) -> Command {
    if cmds.len() == 1 {
        cmds.pop().expect("one command")
    } else {
        Command::Batch { writes: cmds }
    }
}

/// Splits the result of the entry built by [`combine`] from `total`
/// commands back into one result per command.
///
/// # Errors
/// An internal error when the entry's result does not have one result per
/// command (it cannot happen with [`crate::state::TrackerState::apply`]).
pub fn split(
    total: usize,
    result: Result<Applied, WireError>,
) -> Result<Vec<Result<Applied, WireError>>, WireError> {
    if total == 1 {
        return Ok(vec![result]);
    }
    match result {
        Ok(applied) if applied.results.len() == total => Ok(applied.results),
        Ok(applied) => Err(WireError::new(
            ErrorCode::Io,
            format!(
                "a batch of {total} writes came back with {} results",
                applied.results.len()
            ),
        )),
        Err(e) => Err(e),
    }
}

/// Hands each item its share of `results` (in queue order).
pub fn distribute(batch: Vec<Queued>, results: Vec<Result<Applied, WireError>>, index: u64) {
    let mut results = results.into_iter();
    for q in batch {
        let mine: Vec<_> = results.by_ref().take(q.cmds.len()).collect();
        let _ = q.done.send(Written::Applied {
            results: mine,
            index,
        });
    }
}

/// Tells every item of `batch` the same failure.
pub fn fail(batch: Vec<Queued>, error: &WireError) {
    for q in batch {
        let _ = q.done.send(Written::Failed(error.clone()));
    }
}

/// Answers the items of a committed batch from its entry's `result` (see
/// [`split`]); all of them fail alike if it has the wrong shape.
pub fn settle(batch: Vec<Queued>, result: Result<Applied, WireError>, index: u64) {
    let total = batch.iter().map(|q| q.cmds.len()).sum();
    match split(total, result) {
        Ok(results) => distribute(batch, results, index),
        Err(e) => fail(batch, &e),
    }
}

/// Fails (with `error`) the items whose deadline is `now` or past; returns
/// the others, in order.
pub fn drop_expired(batch: Vec<Queued>, now: Instant, error: &WireError) -> Vec<Queued> {
    let (expired, live): (Vec<_>, Vec<_>) = batch.into_iter().partition(|q| q.deadline <= now);
    fail(expired, error);
    live
}

/// The latest deadline of `batch`: how long it may keep trying.
pub fn latest_deadline(batch: &[Queued]) -> Option<Instant> {
    batch.iter().map(|q| q.deadline).max()
}

/// On a tracker that does not lead: answers the items a follower forwarded
/// here with [`Written::NotLeader`] (never forwarded on: their sender
/// retries with whoever it thinks leads) and returns this tracker's own.
pub fn refuse_forwarded(batch: Vec<Queued>, leader: Option<u64>) -> Vec<Queued> {
    let (forwarded, own): (Vec<_>, Vec<_>) = batch.into_iter().partition(|q| q.forwarded);
    for q in forwarded {
        let _ = q.done.send(Written::NotLeader(leader));
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TrackerState;
    use proto::geometry::{piece_count, PIECE_SIZE_BYTES};
    use proto::tracker::{FileMeta, SessionToken};
    use std::time::Duration;

    fn group(token: &str, g: &str) -> Command {
        Command::CreateGroup {
            token: SessionToken(token.into()),
            group: g.parse().unwrap(),
        }
    }

    fn queued(cmds: Vec<Command>) -> (Queued, oneshot::Receiver<Written>) {
        let (done, rx) = oneshot::channel();
        let q = Queued {
            cmds,
            forwarded: false,
            deadline: Instant::now() + Duration::from_secs(5),
            queued: Instant::now(),
            done,
        };
        (q, rx)
    }

    fn big_registration(pieces: u64) -> Command {
        let size = pieces * PIECE_SIZE_BYTES;
        Command::RegisterFile {
            token: SessionToken("t".into()),
            group: "g".parse().unwrap(),
            meta: FileMeta {
                name: "f".parse().unwrap(),
                size,
                sha1: p2p_sha1::of(b""),
                piece_size: PIECE_SIZE_BYTES,
                pieces: vec![p2p_sha1::of(b""); piece_count(size) as usize],
            },
        }
    }

    #[test]
    fn fill_takes_what_is_waiting_up_to_the_write_limit() {
        let (first, _) = queued(vec![group("t", "g0")]);
        let mut batch = vec![first];
        let mut waiting: Vec<Queued> = (1..=MAX_BATCH_WRITES + 5)
            .map(|i| queued(vec![group("t", &format!("g{i}"))]).0)
            .collect();
        waiting.reverse();
        let left = fill(&mut batch, || waiting.pop());
        assert_eq!(batch.len(), MAX_BATCH_WRITES);
        assert!(
            left.is_some(),
            "the first write that did not fit is handed back"
        );
        assert_eq!(waiting.len(), 5);
    }

    #[test]
    fn fill_cuts_by_size_but_always_keeps_the_first() {
        // ~1.1 MiB of piece hashes each: two do not fit in one batch.
        let (first, _) = queued(vec![big_registration(25_000)]);
        let mut batch = vec![first];
        let mut waiting = vec![queued(vec![big_registration(25_000)]).0];
        assert!(fill(&mut batch, || waiting.pop()).is_some());
        assert_eq!(batch.len(), 1);
        // A write larger than the limit still goes, alone.
        let (huge, _) = queued(vec![big_registration(60_000)]);
        let mut batch = vec![huge];
        assert!(fill(&mut batch, || None).is_none());
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn fill_keeps_a_forwarded_batch_whole() {
        let (first, _) = queued(vec![group("t", "a")]);
        let mut batch = vec![first];
        let whole: Vec<Command> = (0..MAX_BATCH_WRITES)
            .map(|i| group("t", &format!("b{i}")))
            .collect();
        let mut waiting = vec![queued(whole).0];
        let left = fill(&mut batch, || waiting.pop()).expect("does not fit");
        assert_eq!(left.cmds.len(), MAX_BATCH_WRITES);
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn a_single_write_is_logged_as_itself() {
        let cmd = group("t", "g");
        assert_eq!(combine(vec![cmd.clone()]), cmd);
        assert!(
            matches!(combine(vec![cmd.clone(), cmd]), Command::Batch { writes } if writes.len() == 2)
        );
    }

    /// A batch applies like its writes one by one, refusals included, and
    /// each caller gets back its own results.
    #[test]
    fn a_batch_applies_like_its_writes_in_order() {
        let setup = [
            Command::CreateUser {
                user: "a".parse().unwrap(),
                password_hash: "h".into(),
            },
            Command::StartSession {
                user: "a".parse().unwrap(),
                token: SessionToken("t".into()),
            },
        ];
        let writes = vec![
            group("t", "g1"),
            group("t", "g1"),      // group_exists
            group("nobody", "g2"), // not_logged_in
            group("t", "g3"),
        ];
        let mut one_by_one = TrackerState::default();
        let mut batched = TrackerState::default();
        for c in &setup {
            one_by_one.apply(c.clone()).unwrap();
            batched.apply(c.clone()).unwrap();
        }
        let expected: Vec<_> = writes.iter().map(|w| one_by_one.apply(w.clone())).collect();
        let result = batched.apply(combine(writes.clone()));
        assert_eq!(batched, one_by_one);
        let results = split(writes.len(), result).unwrap();
        assert_eq!(results, expected);
        assert_eq!(
            results[1].as_ref().unwrap_err().code,
            ErrorCode::GroupExists
        );
        assert_eq!(
            results[2].as_ref().unwrap_err().code,
            ErrorCode::NotLoggedIn
        );

        // Two callers: the first queued one write, the second three.
        let (a, mut ra) = queued(vec![writes[0].clone()]);
        let (b, mut rb) = queued(writes[1..].to_vec());
        distribute(vec![a, b], results, 42);
        match ra.try_recv().unwrap() {
            Written::Applied { results, index } => {
                assert_eq!(index, 42);
                assert_eq!(results, expected[..1]);
            }
            other => panic!("{other:?}"),
        }
        match rb.try_recv().unwrap() {
            Written::Applied { results, .. } => assert_eq!(results, expected[1..]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expired_items_fail_and_the_rest_keep_their_order() {
        let now = Instant::now();
        let at = |deadline, g: &str| {
            let (mut q, rx) = queued(vec![group("t", g)]);
            q.deadline = deadline;
            (q, rx)
        };
        let (a, mut ra) = at(now - Duration::from_millis(1), "a");
        let (b, _) = at(now + Duration::from_secs(1), "b");
        let (c, mut rc) = at(now, "c");
        let (d, _) = at(now + Duration::from_secs(2), "d");
        let e = WireError::new(ErrorCode::TrackerUnavailable, "late");
        let live = drop_expired(vec![a, b, c, d], now, &e);
        let names: Vec<_> = live.iter().map(|q| q.cmds[0].clone()).collect();
        assert_eq!(names, [group("t", "b"), group("t", "d")]);
        assert!(matches!(ra.try_recv(), Ok(Written::Failed(x)) if x == e));
        assert!(matches!(rc.try_recv(), Ok(Written::Failed(_))));
        assert_eq!(latest_deadline(&live), Some(now + Duration::from_secs(2)));
        assert_eq!(latest_deadline(&[]), None);
    }

    #[test]
    fn a_follower_refuses_forwarded_items_and_keeps_its_own() {
        let (own, mut r_own) = queued(vec![group("t", "a")]);
        let (mut fwd, mut r_fwd) = queued(vec![group("t", "b")]);
        fwd.forwarded = true;
        let kept = refuse_forwarded(vec![fwd, own], Some(3));
        assert_eq!(kept.len(), 1);
        assert!(!kept[0].forwarded);
        assert!(matches!(r_fwd.try_recv(), Ok(Written::NotLeader(Some(3)))));
        assert!(
            r_own.try_recv().is_err(),
            "its own write is not answered yet"
        );
    }

    #[test]
    fn settle_splits_a_batch_result_or_fails_it_whole() {
        let ok = |m: &str| {
            Ok(Applied {
                message: m.into(),
                session_changed: None,
                results: Vec::new(),
            })
        };
        let (a, mut ra) = queued(vec![group("t", "a")]);
        let (b, mut rb) = queued(vec![group("t", "b"), group("t", "c")]);
        let entry = Applied {
            message: "3 writes applied".into(),
            session_changed: None,
            results: vec![ok("a"), ok("b"), ok("c")],
        };
        settle(vec![a, b], Ok(entry), 9);
        assert!(
            matches!(ra.try_recv(), Ok(Written::Applied { results, index: 9 }) if results == [ok("a")])
        );
        assert!(
            matches!(rb.try_recv(), Ok(Written::Applied { results, .. }) if results.len() == 2)
        );
        // One write alone: its result, refusal included, is its own.
        let (a, mut ra) = queued(vec![group("t", "a")]);
        let refused = WireError::new(ErrorCode::GroupExists, "x");
        settle(vec![a], Err(refused.clone()), 0);
        assert!(
            matches!(ra.try_recv(), Ok(Written::Applied { results, .. }) if results == [Err(refused.clone())])
        );
        // Two writes refused as a whole: both fail.
        let (a, mut ra) = queued(vec![group("t", "a")]);
        let (b, mut rb) = queued(vec![group("t", "b")]);
        settle(vec![a, b], Err(refused.clone()), 0);
        assert!(matches!(ra.try_recv(), Ok(Written::Failed(e)) if e == refused));
        assert!(matches!(rb.try_recv(), Ok(Written::Failed(_))));
    }

    #[test]
    fn split_refuses_a_result_of_the_wrong_shape() {
        assert!(split(
            2,
            Ok(Applied {
                message: "x".into(),
                session_changed: None,
                results: Vec::new(),
            })
        )
        .is_err());
        let e = WireError::new(ErrorCode::TrackerUnavailable, "x");
        assert_eq!(split(3, Err(e.clone())).unwrap_err(), e);
        assert_eq!(split(1, Err(e.clone())).unwrap(), vec![Err(e)]);
    }
}
