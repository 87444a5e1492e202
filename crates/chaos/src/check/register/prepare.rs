//! A key's operations made ready for the search: validated (a malformed op makes the key
//! undecided), values interned, failed ops and unknown-outcome reads set aside, pending writes
//! that nothing observes dropped, and each op given its bit in the linearized set.

use std::collections::HashMap;

use super::Stats;
use crate::check::ms;
use crate::history::{Nanos, RegisterCall, RegisterOp, RegisterOutcome};

/// A register value, interned per key: 0 is "absent", `i > 0` is the `i`-th distinct value.
pub(super) type Val = u32;

pub(super) const ABSENT: Val = 0;

/// An operation as the search sees it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// Returned this value.
    Read(Val),
    /// Set the register.
    Write(Val),
    /// Set `new` if the register held `expect`.
    Cas { expect: Val, new: Val },
}

impl Kind {
    /// Applies the operation to `state`: the new state, or `None` if it cannot happen here.
    #[inline]
    pub(super) fn step(self, state: Val) -> Option<Val> {
        match self {
            Kind::Read(v) => (state == v).then_some(state),
            Kind::Write(v) => Some(v),
            Kind::Cas { expect, new } => (state == expect).then_some(new),
        }
    }

    /// Whether the operation needs the register to hold `v`.
    pub(super) fn observes(self, v: Val) -> bool {
        match self {
            Kind::Read(w) | Kind::Cas { expect: w, .. } => w == v,
            Kind::Write(_) => false,
        }
    }

    /// The value the register holds after this operation, if it writes.
    pub(super) fn written(self) -> Option<Val> {
        match self {
            Kind::Read(_) => None,
            Kind::Write(v) | Kind::Cas { new: v, .. } => Some(v),
        }
    }
}

/// One operation of the key, ready for the search.
#[derive(Debug, Clone, Copy)]
pub(super) struct Op {
    /// Index in the caller's slice (for explanations).
    pub(super) index: usize,
    /// What it did, on interned values.
    pub(super) kind: Kind,
    pub(super) invoke: Nanos,
    /// `None` for a pending operation (unknown outcome): it need not be linearized at all.
    pub(super) complete: Option<Nanos>,
    /// Bit in the linearized set. Required operations take the first words, pending ones the
    /// words after, so a long-pending operation does not widen the cache keys.
    pub(super) bit: usize,
}

/// A key's operations after preparation.
#[derive(Debug)]
pub(super) struct Prepared {
    /// Required operations first (by invocation), then pending ones.
    pub(super) ops: Vec<Op>,
    /// Distinct values; `values[i - 1]` is the value interned as `i`.
    pub(super) values: Vec<u64>,
    /// Words of the linearized set holding required operations.
    pub(super) required_words: usize,
    /// Total words of the linearized set.
    pub(super) words: usize,
    /// What was set aside, for the summary line.
    pub(super) stats: Stats,
}

/// An operation the checker cannot interpret: its key is undecided ([`Verdict::Unknown`]),
/// never passed.
///
/// [`Verdict::Unknown`]: crate::check::Verdict::Unknown
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum MalformedOp {
    /// The completion time is before the invocation time.
    #[error(
        "malformed op #{index}: completes at {} ms, before its invocation at {} ms",
        ms(*complete),
        ms(*invoke)
    )]
    CompletesBeforeInvoked {
        /// Index in the caller's slice.
        index: usize,
        complete: Nanos,
        invoke: Nanos,
    },
    /// A definite outcome (`Ok` or a read value) without a completion time.
    #[error("malformed op #{index}: outcome {outcome:?} without a completion time")]
    NoCompletion {
        /// Index in the caller's slice.
        index: usize,
        outcome: RegisterOutcome,
    },
    /// An outcome the call cannot have (a read answered `Ok`, a write answered with a value).
    #[error(
        "malformed op #{index} (p{process} n{node}): call {call:?} cannot have outcome {outcome:?}"
    )]
    CallCannotHaveOutcome {
        /// Index in the caller's slice.
        index: usize,
        process: u64,
        node: usize,
        call: RegisterCall,
        outcome: RegisterOutcome,
    },
}

/// Validates and interns one key's operations and drops those that cannot matter.
pub(super) fn prepare(ops: &[RegisterOp], indices: &[usize]) -> Result<Prepared, MalformedOp> {
    let mut interned: HashMap<u64, Val> = HashMap::new();
    let mut values: Vec<u64> = Vec::new();
    let mut intern = |v: Option<u64>| -> Val {
        match v {
            None => ABSENT,
            Some(v) => *interned.entry(v).or_insert_with(|| {
                values.push(v);
                values.len() as Val
            }),
        }
    };

    let mut stats = Stats::default();
    let mut kept: Vec<Op> = Vec::new();
    for &index in indices {
        let op = &ops[index];
        if let Some(complete) = op.complete {
            if complete < op.invoke {
                return Err(MalformedOp::CompletesBeforeInvoked {
                    index,
                    complete,
                    invoke: op.invoke,
                });
            }
        }
        let definite = matches!(op.outcome, RegisterOutcome::Ok | RegisterOutcome::Read(_));
        if definite && op.complete.is_none() {
            return Err(MalformedOp::NoCompletion {
                index,
                outcome: op.outcome,
            });
        }
        let kind = match (op.call, op.outcome) {
            (_, RegisterOutcome::Failed) => {
                stats.failed += 1;
                continue;
            }
            (RegisterCall::Read, RegisterOutcome::Unknown) => {
                stats.unknown_reads += 1;
                continue;
            }
            (RegisterCall::Read, RegisterOutcome::Read(v)) => Kind::Read(intern(v)),
            (RegisterCall::Write(v), RegisterOutcome::Ok | RegisterOutcome::Unknown) => {
                Kind::Write(intern(Some(v)))
            }
            (RegisterCall::Cas { expect, new }, RegisterOutcome::Ok | RegisterOutcome::Unknown) => {
                Kind::Cas {
                    expect: intern(Some(expect)),
                    new: intern(Some(new)),
                }
            }
            (call, outcome) => {
                return Err(MalformedOp::CallCannotHaveOutcome {
                    index,
                    process: op.process,
                    node: op.node,
                    call,
                    outcome,
                });
            }
        };
        let pending = op.outcome == RegisterOutcome::Unknown;
        if pending {
            stats.pending += 1;
        }
        kept.push(Op {
            index,
            kind,
            invoke: op.invoke,
            complete: if pending { None } else { op.complete },
            bit: 0,
        });
    }

    // Drop pending operations whose value nothing observes, until none is left to drop (a
    // dropped compare-and-set no longer observes its expected value).
    loop {
        let mut observed = vec![false; values.len() + 1];
        for op in &kept {
            match op.kind {
                Kind::Read(v) | Kind::Cas { expect: v, .. } => observed[v as usize] = true,
                Kind::Write(_) => {}
            }
        }
        let before = kept.len();
        kept.retain(|op| {
            op.complete.is_some() || op.kind.written().is_some_and(|v| observed[v as usize])
        });
        if kept.len() == before {
            break;
        }
    }
    stats.pending_kept = kept.iter().filter(|op| op.complete.is_none()).count() as u64;

    kept.sort_by_key(|op| (op.complete.is_none(), op.invoke, op.index));
    let required = kept.iter().filter(|op| op.complete.is_some()).count();
    let required_words = required.div_ceil(64);
    let pending_words = (kept.len() - required).div_ceil(64);
    for (i, op) in kept.iter_mut().enumerate() {
        op.bit = if i < required {
            i
        } else {
            required_words * 64 + (i - required)
        };
    }
    Ok(Prepared {
        ops: kept,
        values,
        required_words,
        words: required_words + pending_words,
        stats,
    })
}
