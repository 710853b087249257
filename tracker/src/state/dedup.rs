//! Exactly-once daemon writes: the outcome of each recent request id, so a
//! write retried on another tracker gets its first outcome instead of being
//! applied twice ([`Command::Dedup`](super::Command::Dedup)).
//!
//! Invariant: `outcomes` and `outcome_order` hold the same ids; ids are
//! forgotten by the stamp of the command being applied (never a clock), once
//! older than [`DEDUP_WINDOW`], so every replica forgets the same ones.

use super::{Applied, Command, TrackerState};
use proto::tracker::{RequestId, DEDUP_WINDOW};
use proto::WireError;
use serde::{Deserialize, Serialize};

/// The outcome of one remembered request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Outcome {
    at_ms: u64,
    result: Result<Applied, WireError>,
}

/// (De)serialise a map with struct keys as a list of pairs.
pub(super) mod outcomes_as_list {
    use super::{Outcome, RequestId};
    use imbl::OrdMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        map: &OrdMap<RequestId, Outcome>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<OrdMap<RequestId, Outcome>, D::Error> {
        Ok(Vec::<(RequestId, Outcome)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

impl TrackerState {
    /// Applies `write` on behalf of `request`, stamped `at_ms`, unless that
    /// request was applied before: then its first outcome, again.
    pub(super) fn dedup(
        &mut self,
        request: RequestId,
        at_ms: u64,
        write: Command,
    ) -> Result<Applied, WireError> {
        self.forget_outcomes(at_ms);
        if let Some(seen) = self.outcomes.get(&request) {
            return seen.result.clone();
        }
        let result = self.apply(write);
        let outcome = Outcome {
            at_ms,
            result: result.clone(),
        };
        self.outcomes.insert(request, outcome);
        self.outcome_order.push_back((at_ms, request));
        result
    }

    /// Drops remembered request ids stamped more than [`DEDUP_WINDOW`]
    /// before `now_ms` (the stamp of the command being applied, so every
    /// replica forgets the same ones).
    fn forget_outcomes(&mut self, now_ms: u64) {
        let window = u64::try_from(DEDUP_WINDOW.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_ms.saturating_sub(window);
        while let Some(&(at, id)) = self.outcome_order.front() {
            if at >= cutoff {
                break;
            }
            self.outcome_order.pop_front();
            self.outcomes.remove(&id);
        }
    }

    /// How many request ids are remembered (for tests and logs).
    pub fn remembered_requests(&self) -> usize {
        self.outcomes.len()
    }
}
