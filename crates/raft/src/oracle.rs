//! Versions in FoundationDB units (docs/sharding.md §3.1): microseconds of wall time since the
//! Unix epoch, made strictly increasing. About 1,000,000 versions per second, so the 5 s MVCC
//! window is 5,000,000 versions and a versionstamp's first 8 bytes read as a time.
//!
//! [`OracleState`] is the rule alone, with no clock inside: `next = max(last + 1, now)`. The
//! clock is only a lower bound: a clock that steps back makes versions advance by one per
//! version until it catches up; one that jumps forward makes versions jump. Whoever holds an
//! `OracleState` must start it above every version handed out before (invariant 1): the
//! standalone writer (`direct.rs`) starts it at the engine's applied version, which is written
//! in the same synced batch as the versions it hands out. A Raft group's leader starts it above
//! the bound persisted in the group's log and above the applied version (`sequencer.rs`).

use std::ops::Range;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use dolmen_engine::Version;

/// A source of "now" in microseconds since the Unix epoch; tests substitute their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock in microseconds since the Unix epoch (0 if it is before the epoch).
pub fn system_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The system clock as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(system_micros)
}

/// The system clock shifted by `offset_ms` (`[faults] clock_offset_ms`, tests of clock steps);
/// the system clock itself when 0.
pub fn offset_clock(offset_ms: i64) -> Clock {
    if offset_ms == 0 {
        return system_clock();
    }
    let offset_us = offset_ms.saturating_mul(1000);
    Arc::new(move || system_micros().saturating_add_signed(offset_us))
}

/// Versions handed out by the oracle in one grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionGrant {
    /// `count` consecutive commit versions starting here (unused when count = 0).
    pub first: Version,
    /// How many commit versions.
    pub count: u32,
    /// A read version (≥ every version handed out before the request arrived), when asked.
    pub read_version: Option<Version>,
}

/// The last version handed out, and the rule for the next ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OracleState {
    last: Version,
}

impl OracleState {
    /// An oracle whose next version is above `last`.
    pub fn new(last: Version) -> Self {
        Self { last }
    }

    /// The last version handed out (or the starting point).
    pub fn last(&self) -> Version {
        self.last
    }

    /// Raises the starting point to `version` if it is higher (versions handed out elsewhere,
    /// e.g. a restored engine state); never lowers it.
    pub fn observe(&mut self, version: Version) {
        self.last = self.last.max(version);
    }

    /// `n` (at least 1) consecutive versions, the first `max(last + 1, now_us)`: above every
    /// version handed out before, and at least the clock.
    pub fn next(&mut self, now_us: u64, n: u64) -> Range<Version> {
        let first = self.last.saturating_add(1).max(now_us);
        let end = first.saturating_add(n.max(1));
        self.last = end - 1;
        first..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn follows_the_clock_and_never_repeats() {
        let mut oracle = OracleState::new(0);
        assert_eq!(oracle.next(1_000, 3), 1_000..1_003);
        // The clock did not move: the next versions follow the last.
        assert_eq!(oracle.next(1_000, 1), 1_003..1_004);
        // The clock stepped back: still above the last.
        assert_eq!(oracle.next(10, 2), 1_004..1_006);
        // The clock jumped: versions jump with it.
        assert_eq!(oracle.next(5_000_000, 1), 5_000_000..5_000_001);
        assert_eq!(oracle.last(), 5_000_000);
        // A restart starts above what was persisted, whatever the clock says.
        let mut restarted = OracleState::new(oracle.last());
        assert_eq!(restarted.next(0, 1), 5_000_001..5_000_002);
        restarted.observe(7);
        assert_eq!(restarted.last(), 5_000_001);
        restarted.observe(9_000_000);
        assert_eq!(restarted.next(0, 1), 9_000_001..9_000_002);
    }

    proptest! {
        /// Random clocks (steps back and forward), batch sizes and restarts from the last
        /// version: every version is above every version before it and at least the clock.
        #[test]
        fn strictly_increasing_under_any_clock(
            steps in proptest::collection::vec((0u64..3_000_000, 1u64..50, any::<bool>()), 1..200),
            start in 0u64..1_000_000,
        ) {
            let mut oracle = OracleState::new(start);
            let mut previous = start;
            for (now, n, restart) in steps {
                if restart {
                    oracle = OracleState::new(oracle.last());
                }
                let range = oracle.next(now, n);
                prop_assert!(range.start > previous);
                prop_assert!(range.start >= now);
                prop_assert_eq!(range.end - range.start, n);
                previous = range.end - 1;
                prop_assert_eq!(oracle.last(), previous);
            }
        }
    }
}
