//! Linearizability of register histories, one key at a time (a register is P-compositional).
//!
//! Wing & Gong's search with Lowe's memoization, as in porcupine: the call and return events
//! of one key sit in a doubly linked list ordered by time; the search repeatedly linearizes a
//! call that precedes every outstanding return, lifting it (and its return) out of the list,
//! and backtracks (an explicit stack, no recursion) when a return is reached first. A cache of
//! (set of linearized operations, register value) prunes configurations already explored.
//!
//! ```text
//!   ops ─► by key ─► prepare (drop Failed ops and unknown reads, intern values, drop
//!                    │        unknown writes nothing could observe)
//!                    └─► search (list + stack + cache) ─► Ok | Violation(prefix) | Unknown
//! ```
//!
//! Semantics:
//! - The register starts absent. `Read` must return the current value; `Write(v)` sets it;
//!   `Cas { expect, new }` requires `Some(expect)` and sets `new`.
//! - `Failed` operations had no effect and are ignored; reads with an `Unknown` outcome are
//!   ignored too. Writes and compare-and-sets with an `Unknown` outcome are *pending*: they may
//!   take effect at any point after their invocation (their completion time, if any, is ignored)
//!   or never.
//! - Operation A precedes B in real time only if `A.complete < B.invoke` (strictly).
//!
//! Beyond porcupine (each keeps the search exact: it only skips orders that cannot succeed
//! when an order that is tried would; `agrees_with_a_brute_force_search…` checks this):
//! - *Unobserved pending ops are dropped.* A pending operation whose written value no read
//!   returns and no compare-and-set expects can only be followed by a blind write, so removing
//!   it from any valid linearization leaves a valid one.
//! - *A pending op must be followed by an observer of its value* (a read of it or a
//!   compare-and-set expecting it), for the same reason; the cache key records this restriction.
//! - *Reads first.* A read that matches the register can always be linearized next: if the
//!   configuration after it has no completion, neither has the one before. So backtracking over
//!   a read keeps backtracking, and a matching read whose configuration is cached ends the
//!   branch.
//! - *Unobserved writes are absorbed.* When a blind write is linearized, every candidate
//!   completed write whose value nothing observes is linearized just before it: such a write
//!   can only be followed by a blind write, and a configuration with it linearized succeeds
//!   whenever the one without does. This removes the 2^k subsets of concurrent unobserved
//!   writes that otherwise dominate the search under high concurrency.
//! - *Just-in-time order.* Candidates are tried reads first, then completed ops by completion
//!   time (the first to complete must be linearized soonest), then pending ops.
//!
//! Modules: `prepare` (validation, interning, dropping what cannot matter), `search` (the
//! Wing & Gong search), `cache` (its memo of explored configurations), `explain` (a violation
//! in words: the longest linearizable prefix and the op that cannot come next).
//!
//! Cost: a correct 2,000-op history with 20 concurrent clients needs about 10,000 states (a few
//! ms in release builds); each state costs about 60–100 bytes of cache.

mod cache;
mod explain;
mod prepare;
mod search;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use super::{Limits, Report, Verdict};
use crate::history::RegisterOp;
use explain::unwritten_value;
use prepare::prepare;
use search::{End, Search};

const CHECKER: &str = "register";

/// How many keys' explanations a report spells out.
const MAX_KEYS_EXPLAINED: usize = 3;

/// Checks that every key's history is linearizable for a register that starts absent.
///
/// Keys are checked independently. The verdict is [`Verdict::Violation`] if any key is not
/// linearizable, else [`Verdict::Unknown`] if any key could not be decided (a limit was hit or
/// an operation is malformed), else [`Verdict::Ok`]. `checked` counts every operation given,
/// including the ignored ones (failed operations, reads with an unknown outcome).
///
/// Malformed operations (a `Read` answered `Ok`, a write answered with a value, a definite
/// outcome without a completion time, a completion before the invocation) make their key
/// `Unknown`, with the operation named in the explanation.
pub fn check_registers(ops: &[RegisterOp], limits: &Limits) -> Report {
    let mut by_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        by_key.entry(op.key).or_default().push(i);
    }

    let mut violations = Vec::new();
    let mut unknowns = Vec::new();
    let mut states_total = 0u64;
    let mut stats = Stats::default();
    for (&key, indices) in &by_key {
        let outcome = check_key(ops, indices, limits);
        states_total += outcome.states;
        stats.add(&outcome.stats);
        match outcome.verdict {
            Verdict::Ok => {}
            Verdict::Violation => violations.push(format!("key {key}: {}", outcome.explanation)),
            Verdict::Unknown => unknowns.push(format!("key {key}: {}", outcome.explanation)),
        }
    }

    let summary = format!(
        "{} ops on {} keys ({} failed and {} unknown-outcome reads ignored, {} unknown-outcome \
         writes of which {} could matter); {} search states",
        ops.len(),
        by_key.len(),
        stats.failed,
        stats.unknown_reads,
        stats.pending,
        stats.pending_kept,
        states_total
    );
    let (verdict, explanation) = if !violations.is_empty() {
        let mut text = format!(
            "{} of {} keys not linearizable",
            violations.len(),
            by_key.len()
        );
        if !unknowns.is_empty() {
            let _ = write!(text, " ({} more undecided)", unknowns.len());
        }
        let _ = write!(text, "; {summary}");
        explain_keys(&mut text, &violations);
        (Verdict::Violation, text)
    } else if !unknowns.is_empty() {
        let mut text = format!(
            "{} of {} keys undecided; {summary}",
            unknowns.len(),
            by_key.len()
        );
        explain_keys(&mut text, &unknowns);
        (Verdict::Unknown, text)
    } else {
        (Verdict::Ok, format!("all keys linearizable; {summary}"))
    };
    Report {
        checker: CHECKER,
        verdict,
        checked: ops.len() as u64,
        explanation,
    }
}

/// Appends the first few keys' explanations, then how many were left out.
fn explain_keys(text: &mut String, keys: &[String]) {
    for explanation in keys.iter().take(MAX_KEYS_EXPLAINED) {
        text.push('\n');
        text.push_str(explanation);
    }
    if keys.len() > MAX_KEYS_EXPLAINED {
        let _ = write!(
            text,
            "\n… and {} more keys",
            keys.len() - MAX_KEYS_EXPLAINED
        );
    }
}

/// Counts of operations the preparation set aside, for the summary line.
#[derive(Debug, Default, Clone)]
struct Stats {
    /// Operations with a `Failed` outcome.
    failed: u64,
    /// Reads with an `Unknown` outcome.
    unknown_reads: u64,
    /// Writes and compare-and-sets with an `Unknown` outcome.
    pending: u64,
    /// Of those, the ones whose value something observes (the others are dropped).
    pending_kept: u64,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.failed += other.failed;
        self.unknown_reads += other.unknown_reads;
        self.pending += other.pending;
        self.pending_kept += other.pending_kept;
    }
}

/// The verdict on one key.
#[derive(Debug)]
struct KeyOutcome {
    verdict: Verdict,
    /// Without the `key N: ` prefix; empty when the key is linearizable.
    explanation: String,
    /// Search states explored (cache insertions).
    states: u64,
    stats: Stats,
}

/// Checks one key: the operations of `ops` at `indices`.
fn check_key(ops: &[RegisterOp], indices: &[usize], limits: &Limits) -> KeyOutcome {
    let prepared = match prepare(ops, indices) {
        Ok(prepared) => prepared,
        Err(malformed) => {
            return KeyOutcome {
                verdict: Verdict::Unknown,
                explanation: malformed.to_string(),
                states: 0,
                stats: Stats::default(),
            }
        }
    };
    if let Some(deadline) = limits.deadline {
        if Instant::now() >= deadline {
            return KeyOutcome {
                verdict: Verdict::Unknown,
                explanation: "not checked: the deadline had passed".to_string(),
                states: 0,
                stats: prepared.stats,
            };
        }
    }
    if let Some(explanation) = unwritten_value(ops, &prepared) {
        return KeyOutcome {
            verdict: Verdict::Violation,
            explanation,
            states: 0,
            stats: prepared.stats,
        };
    }
    let mut search = Search::new(&prepared);
    let end = search.run(limits);
    let states = search.cache.len;
    let pending = prepared
        .ops
        .iter()
        .filter(|op| op.complete.is_none())
        .count();
    let (verdict, explanation) = match end {
        End::Linearizable => (Verdict::Ok, String::new()),
        End::NotLinearizable => (Verdict::Violation, search.explain_violation(ops)),
        End::StateLimit => (
            Verdict::Unknown,
            format!(
                "search gave up after {states} states (max_states_per_key = {}); {} ops, {pending} \
                 of them with unknown outcome",
                limits.max_states_per_key,
                prepared.ops.len(),
            ),
        ),
        End::Deadline => (
            Verdict::Unknown,
            format!("search passed the deadline after {states} states"),
        ),
    };
    KeyOutcome {
        verdict,
        explanation,
        states,
        stats: prepared.stats,
    }
}
