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
//! Cost: a correct 2,000-op history with 20 concurrent clients needs about 10,000 states (a few
//! ms in release builds); each state costs about 60–100 bytes of cache.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use super::{ms, push_capped, Limits, Report, Verdict, MAX_LISTED};
use crate::history::{Nanos, RegisterCall, RegisterOp, RegisterOutcome};

const CHECKER: &str = "register";

/// How many keys' explanations a report spells out.
const MAX_KEYS_EXPLAINED: usize = 3;

/// How many operations of the longest linearizable prefix a violation shows (its tail).
const PREFIX_SHOWN: usize = 6;

/// How often (in search steps) the deadline is looked at.
const DEADLINE_EVERY: u64 = 4096;

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

/// A register value, interned per key: 0 is "absent", `i > 0` is the `i`-th distinct value.
type Val = u32;

const ABSENT: Val = 0;

/// An operation as the search sees it.
#[derive(Debug, Clone, Copy)]
enum Kind {
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
    fn step(self, state: Val) -> Option<Val> {
        match self {
            Kind::Read(v) => (state == v).then_some(state),
            Kind::Write(v) => Some(v),
            Kind::Cas { expect, new } => (state == expect).then_some(new),
        }
    }

    /// Whether the operation needs the register to hold `v`.
    fn observes(self, v: Val) -> bool {
        match self {
            Kind::Read(w) | Kind::Cas { expect: w, .. } => w == v,
            Kind::Write(_) => false,
        }
    }

    /// The value the register holds after this operation, if it writes.
    fn written(self) -> Option<Val> {
        match self {
            Kind::Read(_) => None,
            Kind::Write(v) | Kind::Cas { new: v, .. } => Some(v),
        }
    }
}

/// One operation of the key, ready for the search.
#[derive(Debug, Clone, Copy)]
struct Op {
    /// Index in the caller's slice (for explanations).
    index: usize,
    kind: Kind,
    invoke: Nanos,
    /// `None` for a pending operation (unknown outcome): it need not be linearized at all.
    complete: Option<Nanos>,
    /// Bit in the linearized set. Required operations take the first words, pending ones the
    /// words after, so a long-pending operation does not widen the cache keys.
    bit: usize,
}

/// Checks one key: the operations of `ops` at `indices`.
fn check_key(ops: &[RegisterOp], indices: &[usize], limits: &Limits) -> KeyOutcome {
    let prepared = match prepare(ops, indices) {
        Ok(prepared) => prepared,
        Err(explanation) => {
            return KeyOutcome {
                verdict: Verdict::Unknown,
                explanation,
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

/// A key's operations after preparation.
#[derive(Debug)]
struct Prepared {
    /// Required operations first (by invocation), then pending ones.
    ops: Vec<Op>,
    /// Distinct values; `values[i - 1]` is the value interned as `i`.
    values: Vec<u64>,
    /// Words of the linearized set holding required operations.
    required_words: usize,
    /// Total words of the linearized set.
    words: usize,
    stats: Stats,
}

/// Validates and interns one key's operations and drops those that cannot matter.
fn prepare(ops: &[RegisterOp], indices: &[usize]) -> Result<Prepared, String> {
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
                return Err(format!(
                    "malformed op #{index}: completes at {} ms, before its invocation at {} ms",
                    ms(complete),
                    ms(op.invoke)
                ));
            }
        }
        let definite = matches!(op.outcome, RegisterOutcome::Ok | RegisterOutcome::Read(_));
        if definite && op.complete.is_none() {
            return Err(format!(
                "malformed op #{index}: outcome {:?} without a completion time",
                op.outcome
            ));
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
                let who = format!("#{index} (p{} n{})", op.process, op.node);
                return Err(format!(
                    "malformed op {who}: call {call:?} cannot have outcome {outcome:?}"
                ));
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

/// The end of the list (and "no entry").
const NIL: usize = usize::MAX;
/// The list's head sentinel.
const HEAD: usize = 0;

/// Why the search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Linearizable,
    NotLinearizable,
    StateLimit,
    Deadline,
}

/// A linearized operation on the search stack.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Index into `Prepared::ops`.
    op: usize,
    /// The register before it.
    state_before: Val,
    /// Absorbed by the blind write in the frame above it (see [`Search::absorb`]): popped
    /// together with that frame.
    absorbed: bool,
}

/// The deepest point the search reached: the longest linearizable prefix and what blocked it.
#[derive(Debug, Clone)]
struct DeadEnd {
    /// Length of the prefix.
    depth: usize,
    /// Its last operations (at most [`PREFIX_SHOWN`]), oldest first.
    tail: Vec<usize>,
    /// The register after the prefix.
    state: Val,
    /// The operation that had to come next (its return was reached) but could not.
    blocked: usize,
    /// The operations that could have been linearized next (their calls precede the blocking
    /// return), with at most [`MAX_LISTED`] kept, and how many there were.
    candidates: Vec<usize>,
    candidate_count: usize,
    /// Which operations were linearized in the prefix (by op index).
    linearized: Vec<bool>,
}

/// The search over one key's operations.
struct Search<'a> {
    p: &'a Prepared,
    /// Entry `e` (1-based; 0 is the head) belongs to operation `entry_op[e]`.
    entry_op: Vec<usize>,
    /// Whether entry `e` is a call (else a return).
    entry_call: Vec<bool>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Each operation's call entry and return entry (`NIL` for pending operations).
    call_entry: Vec<usize>,
    return_entry: Vec<usize>,
    /// Each operation's place in the order candidates are tried in.
    rank: Vec<u32>,
    /// Required blind writes whose value nothing observes (see [`Self::absorb`]).
    unobserved: Vec<bool>,
    /// The linearized set.
    bits: Vec<u64>,
    cache: Cache,
    deepest: Option<DeadEnd>,
}

impl<'a> Search<'a> {
    fn new(p: &'a Prepared) -> Self {
        // Required blind writes of a value no read returns and no compare-and-set expects.
        let mut observed = vec![false; p.values.len() + 1];
        for op in &p.ops {
            if let Kind::Read(v) | Kind::Cas { expect: v, .. } = op.kind {
                observed[v as usize] = true;
            }
        }
        let unobserved: Vec<bool> = p
            .ops
            .iter()
            .map(|op| match op.kind {
                Kind::Write(v) => op.complete.is_some() && !observed[v as usize],
                _ => false,
            })
            .collect();

        // Calls before returns at equal times, so operations that touch are concurrent.
        let mut events: Vec<(Nanos, bool, usize)> = Vec::with_capacity(2 * p.ops.len());
        for (i, op) in p.ops.iter().enumerate() {
            events.push((op.invoke, false, i));
            if let Some(complete) = op.complete {
                events.push((complete, true, i));
            }
        }
        events.sort_unstable();

        // The order candidates are tried in (just-in-time linearization): reads first (a
        // matching read is always safe), then required operations by completion (the first to
        // complete is the one that must be linearized soonest), pending operations last.
        let mut by_rank: Vec<usize> = (0..p.ops.len()).collect();
        by_rank.sort_by_key(|&i| {
            let op = &p.ops[i];
            let class = match (op.kind, op.complete) {
                (Kind::Read(_), _) => 0,
                (_, None) => 3,
                _ if unobserved[i] => 2,
                _ => 1,
            };
            (class, op.complete, op.invoke, i)
        });
        let mut rank = vec![0u32; p.ops.len()];
        for (r, &i) in by_rank.iter().enumerate() {
            rank[i] = r as u32;
        }

        let n = events.len();
        let mut entry_op = vec![NIL; n + 1];
        let mut entry_call = vec![false; n + 1];
        let mut call_entry = vec![NIL; p.ops.len()];
        let mut return_entry = vec![NIL; p.ops.len()];
        for (i, &(_, ret, op)) in events.iter().enumerate() {
            let e = i + 1;
            entry_op[e] = op;
            entry_call[e] = !ret;
            if ret {
                return_entry[op] = e;
            } else {
                call_entry[op] = e;
            }
        }
        let next = (0..=n).map(|e| if e < n { e + 1 } else { NIL }).collect();
        let prev = (0..=n).map(|e| if e == 0 { NIL } else { e - 1 }).collect();
        Search {
            p,
            entry_op,
            entry_call,
            next,
            prev,
            call_entry,
            return_entry,
            rank,
            unobserved,
            bits: vec![0; p.words],
            cache: Cache::default(),
            deepest: None,
        }
    }

    /// Unlinks entry `e` (its own links are kept for [`Self::relink`]).
    #[inline]
    fn unlink(&mut self, e: usize) {
        let (prev, next) = (self.prev[e], self.next[e]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Puts back entry `e`; entries must be put back in the reverse order of unlinking.
    #[inline]
    fn relink(&mut self, e: usize) {
        let (prev, next) = (self.prev[e], self.next[e]);
        self.next[prev] = e;
        if next != NIL {
            self.prev[next] = e;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_entry[op]);
        if self.return_entry[op] != NIL {
            self.unlink(self.return_entry[op]);
        }
    }

    fn unlift(&mut self, op: usize) {
        if self.return_entry[op] != NIL {
            self.relink(self.return_entry[op]);
        }
        self.relink(self.call_entry[op]);
    }

    #[inline]
    fn flip(&mut self, op: usize) {
        let bit = self.p.ops[op].bit;
        self.bits[bit / 64] ^= 1 << (bit % 64);
    }

    /// Runs the search to its end.
    fn run(&mut self, limits: &Limits) -> End {
        let ops = &self.p.ops;
        let mut required_left = ops.iter().filter(|op| op.complete.is_some()).count();
        let mut stack: Vec<Frame> = Vec::new();
        let mut state = ABSENT;
        // Only candidates of at least this rank are tried (after backtracking over one).
        let mut from_rank = 0u32;
        let mut candidates: Vec<(u32, usize)> = Vec::new();
        let mut steps = 0u64;
        loop {
            if required_left == 0 {
                return End::Linearizable;
            }
            steps += 1;
            if steps.is_multiple_of(DEADLINE_EVERY) {
                if let Some(deadline) = limits.deadline {
                    if Instant::now() >= deadline {
                        return End::Deadline;
                    }
                }
            }

            // Right after a pending operation, only an operation that observes its value may
            // follow (see the module docs).
            let observe = stack
                .last()
                .filter(|frame| ops[frame.op].complete.is_none())
                .map(|_| state);

            // The candidates are the calls before the first return in the list.
            candidates.clear();
            let mut entry = self.next[HEAD];
            while entry != NIL && self.entry_call[entry] {
                let op = self.entry_op[entry];
                if self.rank[op] >= from_rank {
                    candidates.push((self.rank[op], op));
                }
                entry = self.next[entry];
            }
            candidates.sort_unstable();

            let mut dead = false;
            let mut pushed = false;
            for &(_, op) in &candidates {
                if let Some(v) = observe {
                    if !ops[op].kind.observes(v) {
                        continue;
                    }
                }
                let Some(new_state) = ops[op].kind.step(state) else {
                    continue;
                };
                let mark = stack.len();
                if let Kind::Write(_) = ops[op].kind {
                    required_left -= self.absorb(op, state, &mut stack);
                }
                self.flip(op);
                let restricted = ops[op].complete.is_none();
                if self
                    .cache
                    .insert(&self.bits, self.p.required_words, new_state, restricted)
                {
                    if self.cache.len > limits.max_states_per_key {
                        return End::StateLimit;
                    }
                    stack.push(Frame {
                        op,
                        state_before: state,
                        absorbed: false,
                    });
                    state = new_state;
                    self.lift(op);
                    if ops[op].complete.is_some() {
                        required_left -= 1;
                    }
                    from_rank = 0;
                    pushed = true;
                    break;
                }
                self.flip(op);
                required_left += self.unabsorb(mark, &mut stack);
                if matches!(ops[op].kind, Kind::Read(_)) {
                    // A matching read whose configuration was explored: this one is dead too.
                    dead = true;
                    break;
                }
            }
            if pushed {
                continue;
            }
            if !dead && entry != NIL {
                self.note_dead_end(&stack, state, entry);
            }

            // Backtrack; over a read, keep backtracking (see the module docs).
            loop {
                let Some(frame) = stack.pop() else {
                    return End::NotLinearizable;
                };
                state = frame.state_before;
                self.flip(frame.op);
                self.unlift(frame.op);
                if ops[frame.op].complete.is_some() {
                    required_left += 1;
                }
                let mark = stack.iter().rposition(|f| !f.absorbed).map_or(0, |i| i + 1);
                required_left += self.unabsorb(mark, &mut stack);
                if !matches!(ops[frame.op].kind, Kind::Read(_)) {
                    from_rank = self.rank[frame.op] + 1;
                    break;
                }
            }
        }
    }

    /// Before blind write `op`, linearizes every candidate whose written value nothing observes
    /// (an unobserved write), pushing them as absorbed frames; returns how many.
    ///
    /// Sound and complete: an unobserved write can only be followed by a blind write (or
    /// nothing), and removing it from any valid continuation leaves a valid continuation, so a
    /// configuration with it linearized succeeds whenever the one without does.
    fn absorb(&mut self, op: usize, state: Val, stack: &mut Vec<Frame>) -> usize {
        let mut count = 0;
        loop {
            let mut entry = self.next[HEAD];
            while entry != NIL && self.entry_call[entry] {
                let other = self.entry_op[entry];
                if other != op && self.unobserved[other] {
                    break;
                }
                entry = self.next[entry];
            }
            if entry == NIL || !self.entry_call[entry] {
                return count;
            }
            let other = self.entry_op[entry];
            self.flip(other);
            self.lift(other);
            stack.push(Frame {
                op: other,
                state_before: state,
                absorbed: true,
            });
            count += 1;
        }
    }

    /// Undoes [`Self::absorb`] down to stack length `mark`; returns how many it put back.
    fn unabsorb(&mut self, mark: usize, stack: &mut Vec<Frame>) -> usize {
        let mut count = 0;
        while stack.len() > mark {
            if let Some(frame) = stack.pop() {
                self.flip(frame.op);
                self.unlift(frame.op);
                count += 1;
            }
        }
        count
    }

    /// Remembers the deepest prefix that got stuck at return entry `ret`.
    fn note_dead_end(&mut self, stack: &[Frame], state: Val, ret: usize) {
        if self
            .deepest
            .as_ref()
            .is_some_and(|d| d.depth >= stack.len())
        {
            return;
        }
        let mut candidates = Vec::new();
        let mut candidate_count = 0;
        let mut e = self.next[HEAD];
        while e != NIL && e != ret {
            if self.entry_call[e] {
                candidate_count += 1;
                if candidates.len() < MAX_LISTED {
                    candidates.push(self.entry_op[e]);
                }
            }
            e = self.next[e];
        }
        let mut linearized = vec![false; self.p.ops.len()];
        for frame in stack {
            linearized[frame.op] = true;
        }
        self.deepest = Some(DeadEnd {
            depth: stack.len(),
            tail: stack[stack.len().saturating_sub(PREFIX_SHOWN)..]
                .iter()
                .map(|f| f.op)
                .collect(),
            state,
            blocked: self.entry_op[ret],
            candidates,
            candidate_count,
            linearized,
        });
    }

    /// Explains why no order works, from the deepest dead end.
    fn explain_violation(&self, raw: &[RegisterOp]) -> String {
        let p = self.p;
        let Some(dead) = &self.deepest else {
            return "not linearizable (no dead end recorded)".to_string();
        };
        let describe = |op: usize| describe_op(raw, &p.ops[op], &p.values);
        let value = |v: Val| show_value(&p.values, v);
        let mut text = String::from("not linearizable. ");
        if dead.depth == 0 {
            text.push_str("No operation can even go first; the register starts absent.");
        } else {
            let _ = write!(
                text,
                "The longest linearizable prefix has {} ops{}:",
                dead.depth,
                if dead.depth > dead.tail.len() {
                    ", ending with"
                } else {
                    ""
                }
            );
            push_capped(&mut text, "  ", dead.tail.iter().map(|&op| describe(op)));
            let _ = write!(
                text,
                "\nafter which the register holds {}.",
                value(dead.state)
            );
        }

        let blocked = &p.ops[dead.blocked];
        let _ = write!(
            text,
            "\nNext must come {} (the earliest of the remaining ops to complete), but it cannot: \
             {}.",
            describe(dead.blocked),
            self.why_not(dead, dead.blocked)
        );
        if let Kind::Read(v) = blocked.kind {
            let _ = write!(text, " {}.", self.read_hint(raw, dead, v, blocked));
        }
        let others: Vec<usize> = dead
            .candidates
            .iter()
            .copied()
            .filter(|&op| op != dead.blocked)
            .collect();
        if !others.is_empty() {
            text.push_str("\nOther ops that could go before it, and why none helps:");
            let hidden = dead.candidate_count.saturating_sub(dead.candidates.len());
            push_capped(
                &mut text,
                "  ",
                others
                    .iter()
                    .map(|&op| format!("{}: {}", describe(op), self.why_not(dead, op))),
            );
            if hidden > 0 {
                let _ = write!(text, "\n  … and {hidden} more");
            }
        }
        text
    }

    /// Why `op` cannot be linearized right after the dead end's prefix.
    fn why_not(&self, dead: &DeadEnd, op: usize) -> String {
        let state = show_value(&self.p.values, dead.state);
        match self.p.ops[op].kind {
            Kind::Read(v) if v != dead.state => {
                format!(
                    "it read {} but the register holds {state}",
                    show_value(&self.p.values, v)
                )
            }
            Kind::Cas { expect, .. } if expect != dead.state => format!(
                "it expects {} but the register holds {state}",
                show_value(&self.p.values, expect)
            ),
            _ => "it can go next, but every order that continues from it fails later".to_string(),
        }
    }

    /// For a read of `v` that cannot be placed: where the writes of `v` are.
    fn read_hint(&self, raw: &[RegisterOp], dead: &DeadEnd, v: Val, read: &Op) -> String {
        let p = self.p;
        let shown = show_value(&p.values, v);
        if v == ABSENT {
            return "A written register never becomes absent again".to_string();
        }
        let writers: Vec<usize> = (0..p.ops.len())
            .filter(|&op| p.ops[op].kind.written() == Some(v))
            .collect();
        if writers.is_empty() {
            return unwritten_reason(raw, p, read.index, v);
        }
        let list = |ops: &[usize]| -> String {
            let mut s: Vec<String> = ops
                .iter()
                .take(3)
                .map(|&op| describe_op(raw, &p.ops[op], &p.values))
                .collect();
            if ops.len() > 3 {
                s.push(format!("… and {} more", ops.len() - 3));
            }
            s.join("; ")
        };
        let (done, remaining): (Vec<usize>, Vec<usize>) =
            writers.iter().partition(|&&op| dead.linearized[op]);
        let concurrent: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|op| dead.candidates.contains(op))
            .collect();
        if !concurrent.is_empty() {
            format!(
                "A concurrent write of {shown} exists ({}), but every order that applies it \
                 first fails later",
                list(&concurrent)
            )
        } else if !remaining.is_empty() && done.is_empty() {
            format!(
                "The writes of {shown} cannot take effect before this read: {}",
                list(&remaining)
            )
        } else {
            format!(
                "Every write of {shown} that could precede this read is already overwritten: {}",
                list(&done)
            )
        }
    }
}

/// Why nothing can produce `v` (interned, not absent) for the op at `raw[index]`: no op of its
/// key wrote it, or only failed ones did.
fn unwritten_reason(raw: &[RegisterOp], p: &Prepared, index: usize, v: Val) -> String {
    let shown = show_value(&p.values, v);
    let raw_v = p.values.get((v as usize).wrapping_sub(1)).copied();
    let key = raw.get(index).map(|op| op.key);
    let writes = |op: &RegisterOp| match op.call {
        RegisterCall::Write(w) | RegisterCall::Cas { new: w, .. } => Some(w) == raw_v,
        RegisterCall::Read => false,
    };
    let failed = raw
        .iter()
        .any(|op| Some(op.key) == key && op.outcome == RegisterOutcome::Failed && writes(op));
    if failed {
        format!("The only writes of {shown} failed (definitely had no effect)")
    } else {
        format!("No operation ever wrote {shown}")
    }
}

/// A completed read or compare-and-set that needs a value no kept operation writes: a
/// violation found without searching.
fn unwritten_value(raw: &[RegisterOp], p: &Prepared) -> Option<String> {
    let mut written = vec![false; p.values.len() + 1];
    for op in &p.ops {
        if let Some(v) = op.kind.written() {
            written[v as usize] = true;
        }
    }
    p.ops
        .iter()
        .filter(|op| op.complete.is_some())
        .find_map(|op| {
            let v = match op.kind {
                Kind::Read(v) | Kind::Cas { expect: v, .. } => v,
                Kind::Write(_) => return None,
            };
            (v != ABSENT && !written[v as usize]).then(|| {
                format!(
                    "not linearizable: {} needs the register to hold {}. {}.",
                    describe_op(raw, op, &p.values),
                    show_value(&p.values, v),
                    unwritten_reason(raw, p, op.index, v)
                )
            })
        })
}

/// `5`, or `absent`.
fn show_value(values: &[u64], v: Val) -> String {
    if v == ABSENT {
        "absent".to_string()
    } else {
        values
            .get(v as usize - 1)
            .map_or_else(|| "?".to_string(), |v| v.to_string())
    }
}

/// `#17 p4 n2 read→5 @12.345–12.400 ms`, from the caller's operation.
fn describe_op(raw: &[RegisterOp], op: &Op, values: &[u64]) -> String {
    let r = &raw[op.index];
    let what = match op.kind {
        Kind::Read(v) => format!("read→{}", show_value(values, v)),
        Kind::Write(v) => format!("write({})", show_value(values, v)),
        Kind::Cas { expect, new } => {
            format!(
                "cas({}→{})",
                show_value(values, expect),
                show_value(values, new)
            )
        }
    };
    let outcome = if op.complete.is_none() {
        " unknown-outcome"
    } else {
        ""
    };
    let complete = match r.complete {
        Some(c) => ms(c),
        None => "?".to_string(),
    };
    format!(
        "#{} p{} n{} {what}{outcome} @{}–{} ms",
        op.index,
        r.process,
        r.node,
        ms(r.invoke),
        complete
    )
}

/// The memo of explored configurations: (linearized set, register value), stored compactly.
///
/// A key is the register value, the restriction flag and the linearized set with its all-ones
/// prefix of required words cut off: `[value | restricted << 32 | first_word << 33, required
/// words from first_word up to the last non-zero one, pending words]`. Keys live back to back
/// in one arena; a map from hash to the newest key with that hash starts a chain through it.
#[derive(Default)]
struct Cache {
    /// Hash → arena offset of the newest key with that hash.
    heads: HashMap<u64, usize, BuildHasherDefault<IdentityHasher>>,
    /// Per key: `[chain link (offset + 1, or 0), length, words…]`.
    arena: Vec<u64>,
    /// Scratch for building a key.
    scratch: Vec<u64>,
    /// Keys stored.
    len: u64,
}

impl Cache {
    /// Inserts the configuration; whether it was new. `restricted`: the last operation was
    /// pending, so only an observer of its value may follow (a different search node).
    fn insert(
        &mut self,
        bits: &[u64],
        required_words: usize,
        state: Val,
        restricted: bool,
    ) -> bool {
        let first = bits[..required_words]
            .iter()
            .position(|&w| w != u64::MAX)
            .unwrap_or(required_words);
        let last = bits[first..required_words]
            .iter()
            .rposition(|&w| w != 0)
            .map_or(first, |i| first + i + 1);
        self.scratch.clear();
        self.scratch
            .push(u64::from(state) | u64::from(restricted) << 32 | (first as u64) << 33);
        self.scratch.extend_from_slice(&bits[first..last]);
        self.scratch.extend_from_slice(&bits[required_words..]);
        let hash = hash_words(&self.scratch);

        let mut link = self.heads.get(&hash).map_or(0, |&offset| offset + 1);
        while link != 0 {
            let offset = link - 1;
            let len = self.arena[offset + 1] as usize;
            if self.arena[offset + 2..offset + 2 + len] == self.scratch[..] {
                return false;
            }
            link = self.arena[offset] as usize;
        }
        let offset = self.arena.len();
        let chain = self
            .heads
            .insert(hash, offset)
            .map_or(0, |old| old as u64 + 1);
        self.arena.push(chain);
        self.arena.push(self.scratch.len() as u64);
        self.arena.extend_from_slice(&self.scratch);
        self.len += 1;
        true
    }
}

/// A fast hash of a key's words (FxHash's multiply-rotate, with a final mix).
fn hash_words(words: &[u64]) -> u64 {
    let mut h = words.len() as u64;
    for &w in words {
        h = (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Passes an already mixed `u64` hash through.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: u64 = 1_000_000;

    fn op(
        process: u64,
        key: u64,
        call: RegisterCall,
        invoke_ms: u64,
        complete_ms: Option<u64>,
        outcome: RegisterOutcome,
    ) -> RegisterOp {
        RegisterOp {
            process,
            node: (process % 3) as usize,
            key,
            call,
            invoke: invoke_ms * MS,
            complete: complete_ms.map(|c| c * MS),
            outcome,
        }
    }

    fn read(p: u64, t0: u64, t1: u64, v: Option<u64>) -> RegisterOp {
        op(
            p,
            0,
            RegisterCall::Read,
            t0,
            Some(t1),
            RegisterOutcome::Read(v),
        )
    }

    fn write(p: u64, t0: u64, t1: u64, v: u64) -> RegisterOp {
        op(
            p,
            0,
            RegisterCall::Write(v),
            t0,
            Some(t1),
            RegisterOutcome::Ok,
        )
    }

    fn write_unknown(p: u64, t0: u64, v: u64) -> RegisterOp {
        op(
            p,
            0,
            RegisterCall::Write(v),
            t0,
            None,
            RegisterOutcome::Unknown,
        )
    }

    fn cas(
        p: u64,
        t0: u64,
        t1: u64,
        expect: u64,
        new: u64,
        outcome: RegisterOutcome,
    ) -> RegisterOp {
        op(
            p,
            0,
            RegisterCall::Cas { expect, new },
            t0,
            Some(t1),
            outcome,
        )
    }

    fn on_key(key: u64, mut ops: Vec<RegisterOp>) -> Vec<RegisterOp> {
        for op in &mut ops {
            op.key = key;
        }
        ops
    }

    fn check(ops: &[RegisterOp]) -> Report {
        check_registers(ops, &Limits::default())
    }

    #[track_caller]
    fn assert_ok(ops: &[RegisterOp]) {
        let report = check(ops);
        assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
        assert_eq!(report.checked, ops.len() as u64);
    }

    #[track_caller]
    fn assert_violation(ops: &[RegisterOp]) -> String {
        let report = check(ops);
        assert_eq!(report.verdict, Verdict::Violation, "{}", report.explanation);
        report.explanation
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_ok(&[]);
    }

    #[test]
    fn sequential_history_passes() {
        assert_ok(&[
            read(1, 0, 1, None),
            write(1, 2, 3, 1),
            read(2, 4, 5, Some(1)),
            write(3, 6, 7, 2),
            read(1, 8, 9, Some(2)),
            read(2, 10, 11, Some(2)),
        ]);
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        let base = || vec![write(1, 0, 1, 1), write(2, 2, 10, 2)];
        for seen in [1, 2] {
            let mut ops = base();
            ops.push(read(3, 3, 4, Some(seen)));
            assert_ok(&ops);
        }
        // Old then new during the write is fine...
        let mut ops = base();
        ops.extend([read(3, 3, 4, Some(1)), read(4, 5, 6, Some(2))]);
        assert_ok(&ops);
        // ...new then old is not.
        let mut ops = base();
        ops.extend([read(3, 3, 4, Some(2)), read(4, 5, 6, Some(1))]);
        let text = assert_violation(&ops);
        assert!(text.contains("#3 p4 n1 read→1 @5.000–6.000 ms"), "{text}");
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let ops = [write(1, 0, 1, 1), write(2, 2, 3, 2), read(3, 4, 5, Some(1))];
        let text = assert_violation(&ops);
        assert!(text.starts_with("1 of 1 keys not linearizable"), "{text}");
        assert!(text.contains("key 0: not linearizable"), "{text}");
        assert!(text.contains("register holds 2"), "{text}");
        assert!(text.contains("#2 p3 n0 read→1 @4.000–5.000 ms"), "{text}");
        assert!(
            text.contains("already overwritten: #0 p1 n1 write(1) @0.000–1.000 ms"),
            "{text}"
        );
    }

    #[test]
    fn reading_a_value_never_written_is_a_violation() {
        let text = assert_violation(&[write(1, 0, 1, 1), read(2, 2, 3, Some(5))]);
        assert!(text.contains("No operation ever wrote 5"), "{text}");
        let text = assert_violation(&[read(2, 2, 3, Some(5))]);
        assert!(
            text.contains("#0 p2 n2 read→5 @2.000–3.000 ms needs the register"),
            "{text}"
        );
        // Found by the search rather than up front: nothing can go first.
        let text = assert_violation(&[write(1, 5, 6, 5), read(2, 2, 3, Some(5))]);
        assert!(text.contains("No operation can even go first"), "{text}");
        assert!(
            text.contains("cannot take effect before this read: #0 p1 n1 write(5)"),
            "{text}"
        );
    }

    #[test]
    fn absent_is_only_readable_before_the_first_write() {
        assert_ok(&[write(1, 0, 5, 1), read(2, 5, 6, None)]); // touching: concurrent
        let text = assert_violation(&[write(1, 0, 5, 1), read(2, 6, 7, None)]);
        assert!(text.contains("never becomes absent again"), "{text}");
    }

    #[test]
    fn compare_and_set_semantics() {
        // Success changes the value; a failed one is ignored.
        assert_ok(&[
            write(1, 0, 1, 1),
            cas(2, 2, 3, 1, 2, RegisterOutcome::Ok),
            cas(3, 4, 5, 1, 3, RegisterOutcome::Failed),
            read(1, 6, 7, Some(2)),
        ]);
        // A successful one needs its expected value.
        let text = assert_violation(&[
            write(1, 0, 1, 1),
            write(1, 2, 3, 2),
            cas(2, 4, 5, 1, 6, RegisterOutcome::Ok),
        ]);
        assert!(
            text.contains("it expects 1 but the register holds 2"),
            "{text}"
        );
        let text = assert_violation(&[cas(2, 2, 3, 5, 6, RegisterOutcome::Ok)]);
        assert!(
            text.contains("cas(5→6) @2.000–3.000 ms needs the register to hold 5"),
            "{text}"
        );
        assert!(text.contains("No operation ever wrote 5"), "{text}");
        // Its effect is visible, and the value before it is gone.
        assert_violation(&[
            write(1, 0, 1, 1),
            cas(2, 2, 3, 1, 2, RegisterOutcome::Ok),
            read(1, 6, 7, Some(1)),
        ]);
        // Two concurrent CAS from the same value cannot both succeed.
        assert_violation(&[
            write(1, 0, 1, 1),
            cas(2, 2, 5, 1, 2, RegisterOutcome::Ok),
            cas(3, 2, 5, 1, 3, RegisterOutcome::Ok),
        ]);
        // Chained concurrent CAS can.
        assert_ok(&[
            write(1, 0, 1, 1),
            cas(2, 2, 5, 2, 3, RegisterOutcome::Ok),
            cas(3, 2, 5, 1, 2, RegisterOutcome::Ok),
            read(1, 6, 7, Some(3)),
        ]);
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        // Seen long after its invocation.
        assert_ok(&[
            write(1, 0, 1, 1),
            write_unknown(2, 2, 2),
            read(3, 3, 4, Some(1)),
            read(3, 50, 51, Some(2)),
        ]);
        // Never seen.
        assert_ok(&[
            write(1, 0, 1, 1),
            write_unknown(2, 2, 2),
            read(3, 50, 51, Some(1)),
        ]);
        // An unknown compare-and-set as well, and a completion time on an unknown op is ignored.
        let mut late = cas(2, 2, 3, 1, 7, RegisterOutcome::Unknown);
        late.complete = Some(3 * MS);
        assert_ok(&[
            write(1, 0, 1, 1),
            late,
            read(3, 60, 61, Some(1)),
            read(3, 70, 71, Some(7)),
        ]);
    }

    #[test]
    fn an_unknown_write_seen_before_its_invocation_is_a_violation() {
        let text = assert_violation(&[
            write(1, 0, 1, 1),
            read(3, 2, 3, Some(2)),
            write_unknown(2, 5, 2),
        ]);
        assert!(
            text.contains("cannot take effect before this read"),
            "{text}"
        );
        assert!(
            text.contains("write(2) unknown-outcome @5.000–? ms"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_write_cannot_come_back_after_being_overwritten() {
        assert_violation(&[
            write_unknown(2, 0, 2),
            read(3, 2, 3, Some(2)),
            write(1, 4, 5, 1),
            read(3, 6, 7, Some(2)),
        ]);
    }

    #[test]
    fn reads_alternating_between_single_writes_are_a_violation() {
        let text = assert_violation(&[
            write(1, 0, 10, 1),
            write(2, 0, 10, 2),
            read(3, 1, 2, Some(1)),
            read(3, 3, 4, Some(2)),
            read(3, 5, 6, Some(1)),
        ]);
        assert!(text.contains("read→1 @5.000–6.000 ms"), "{text}");
    }

    #[test]
    fn failed_and_unknown_reads_are_ignored_but_failed_writes_are_not_seen() {
        assert_ok(&[
            write(1, 0, 1, 1),
            write(2, 2, 3, 9).with_outcome(RegisterOutcome::Failed),
            op(3, 0, RegisterCall::Read, 4, None, RegisterOutcome::Unknown),
            read(1, 5, 6, Some(1)),
        ]);
        let text = assert_violation(&[
            write(1, 0, 1, 1),
            write(2, 2, 3, 9).with_outcome(RegisterOutcome::Failed),
            read(1, 5, 6, Some(9)),
        ]);
        assert!(text.contains("The only writes of 9 failed"), "{text}");
        let report = check(&[write(2, 2, 3, 9).with_outcome(RegisterOutcome::Failed)]);
        assert!(
            report.explanation.contains("1 failed"),
            "{}",
            report.explanation
        );
    }

    #[test]
    fn keys_are_checked_separately_and_the_bad_one_is_named() {
        let good = |key| on_key(key, vec![write(1, 0, 1, key), read(2, 2, 3, Some(key))]);
        let mut ops = good(1);
        ops.extend(on_key(2, vec![write(1, 0, 1, 5), read(2, 2, 3, Some(6))]));
        ops.extend(good(3));
        // The same value on another key does not help key 2.
        ops.extend(on_key(4, vec![write(1, 0, 1, 6)]));
        let text = assert_violation(&ops);
        assert!(text.starts_with("1 of 4 keys not linearizable"), "{text}");
        assert!(text.contains("\nkey 2: "), "{text}");
        assert!(
            !text.contains("key 1:") && !text.contains("key 3:"),
            "{text}"
        );
    }

    #[test]
    fn hitting_a_limit_is_unknown_never_ok() {
        let ops: Vec<RegisterOp> = (0..20).map(|i| write(i, i, i + 1, i)).collect();
        let limits = Limits {
            max_states_per_key: 5,
            deadline: None,
        };
        let report = check_registers(&ops, &limits);
        assert_eq!(report.verdict, Verdict::Unknown, "{}", report.explanation);
        assert!(
            report.explanation.contains("gave up after 6 states"),
            "{}",
            report.explanation
        );
        assert!(!report.passed());

        let past = Instant::now().checked_sub(Duration::from_millis(1));
        let limits = Limits {
            max_states_per_key: u64::MAX,
            deadline: past,
        };
        let report = check_registers(&ops, &limits);
        assert_eq!(report.verdict, Verdict::Unknown, "{}", report.explanation);
        assert!(
            report.explanation.contains("deadline"),
            "{}",
            report.explanation
        );
    }

    #[test]
    fn a_deadline_stops_a_long_search() {
        // 24 concurrent writes read back one by one, then the first value again: proving that
        // no order works means trying ~2^24 subsets.
        let mut ops: Vec<RegisterOp> = (0..24).map(|i| write(i, 0, 100, i)).collect();
        ops.extend((0..24).map(|i| read(30, 1 + 2 * i, 2 + 2 * i, Some(i))));
        ops.push(read(30, 60, 61, Some(0)));
        let limits = Limits {
            max_states_per_key: 3_000_000,
            deadline: Instant::now().checked_add(Duration::from_millis(20)),
        };
        let report = check_registers(&ops, &limits);
        assert_eq!(report.verdict, Verdict::Unknown, "{}", report.explanation);
        assert!(
            report.explanation.contains("passed the deadline"),
            "{}",
            report.explanation
        );
    }

    #[test]
    fn a_violation_wins_over_an_undecided_key() {
        let mut ops = on_key(1, vec![write(1, 0, 1, 1), read(2, 2, 3, Some(2))]);
        ops.push(op(
            1,
            2,
            RegisterCall::Read,
            0,
            Some(1),
            RegisterOutcome::Ok,
        ));
        let report = check(&ops);
        assert_eq!(report.verdict, Verdict::Violation, "{}", report.explanation);
        assert!(
            report.explanation.contains("(1 more undecided)"),
            "{}",
            report.explanation
        );
    }

    #[test]
    fn malformed_ops_make_the_key_unknown() {
        let bad_read = op(4, 0, RegisterCall::Read, 2, Some(3), RegisterOutcome::Ok);
        let report = check(&[write(1, 0, 1, 1), bad_read]);
        assert_eq!(report.verdict, Verdict::Unknown);
        assert!(
            report.explanation.contains("malformed op #1 (p4 n1)"),
            "{}",
            report.explanation
        );

        let bad_write = write(1, 0, 1, 1).with_outcome(RegisterOutcome::Read(Some(1)));
        assert_eq!(check(&[bad_write]).verdict, Verdict::Unknown);

        let mut backwards = write(1, 5, 1, 1);
        assert_eq!(check(&[backwards.clone()]).verdict, Verdict::Unknown);
        backwards.complete = None;
        let report = check(&[backwards]);
        assert_eq!(report.verdict, Verdict::Unknown);
        assert!(
            report.explanation.contains("without a completion time"),
            "{}",
            report.explanation
        );
    }

    #[test]
    fn explanations_stay_bounded() {
        // 40 concurrent writes, then a read of a value none wrote: found without a search.
        let mut ops: Vec<RegisterOp> = (0..40).map(|i| write(i, 0, 10, i)).collect();
        ops.push(read(99, 11, 12, Some(1_000)));
        let text = assert_violation(&ops);
        assert!(
            text.contains("#40 p99 n0 read→1000 @11.000–12.000 ms needs"),
            "{text}"
        );
        assert!(text.contains("No operation ever wrote 1000"), "{text}");
        // 12 concurrent writes and reads flipping back: the search must try every order.
        let mut ops: Vec<RegisterOp> = (0..12).map(|i| write(i, 0, 10, i)).collect();
        ops.extend([
            read(20, 1, 2, Some(1)),
            read(20, 3, 4, Some(2)),
            read(20, 5, 6, Some(1)),
        ]);
        let text = assert_violation(&ops);
        assert!(text.contains("#14 p20 n2 read→1 @5.000–6.000 ms"), "{text}");
        assert!(text.contains("14 ops, ending with:"), "{text}");
        let tail = "#13 p20 n2 read→2 @3.000–4.000 ms\nafter which the register holds 2.";
        assert!(text.contains(tail), "{text}");
        assert!(
            text.contains("already overwritten: #1 p1 n1 write(1)"),
            "{text}"
        );
        assert!(text.lines().count() < 30, "{text}");
    }

    impl RegisterOp {
        fn with_outcome(mut self, outcome: RegisterOutcome) -> Self {
            self.outcome = outcome;
            self
        }
    }

    /// splitmix64: deterministic, dependency-free randomness for generated histories.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A history of `count` ops by `clients` clients against one real (linearizable) register:
    /// each op takes effect at a random instant inside its interval; about one op in
    /// `unknown_every` has an unknown outcome (and takes effect late or never).
    fn generate(seed: u64, clients: u64, count: usize, unknown_every: u64) -> Vec<RegisterOp> {
        let mut rng = Rng(seed);
        let mut free_at = vec![0u64; clients as usize];
        let mut process: Vec<u64> = (0..clients).collect();
        let mut next_process = clients;
        let mut next_value = 1u64;
        // (op, linearization point or None for never)
        let mut planned: Vec<(RegisterOp, Option<u64>)> = Vec::with_capacity(count);
        for _ in 0..count {
            let c = (0..clients as usize)
                .min_by_key(|&c| (free_at[c], c))
                .unwrap_or(0);
            let invoke = free_at[c] + rng.below(200_000);
            let duration = 50_000 + rng.below(3 * MS);
            let call = match rng.below(10) {
                0..=3 => RegisterCall::Read,
                4..=7 => {
                    next_value += 1;
                    RegisterCall::Write(next_value)
                }
                _ => {
                    next_value += 1;
                    RegisterCall::Cas {
                        expect: (next_value - 1).saturating_sub(rng.below(3)),
                        new: next_value,
                    }
                }
            };
            let unknown = rng.below(unknown_every) == 0;
            let at = if !unknown {
                Some(invoke + rng.below(duration + 1))
            } else if rng.below(2) == 0 {
                Some(invoke + rng.below(20 * MS))
            } else {
                None
            };
            planned.push((
                RegisterOp {
                    process: process[c],
                    node: c % 3,
                    key: 0,
                    call,
                    invoke,
                    complete: (!unknown).then_some(invoke + duration),
                    outcome: RegisterOutcome::Unknown,
                },
                at,
            ));
            free_at[c] = invoke + duration;
            if unknown {
                process[c] = next_process;
                next_process += 1;
            }
        }
        let mut order: Vec<usize> = (0..planned.len())
            .filter(|&i| planned[i].1.is_some())
            .collect();
        order.sort_by_key(|&i| planned[i].1);
        let mut register: Option<u64> = None;
        for i in order {
            let op = &mut planned[i].0;
            let unknown = op.complete.is_none();
            let outcome = match op.call {
                RegisterCall::Read => RegisterOutcome::Read(register),
                RegisterCall::Write(v) => {
                    register = Some(v);
                    RegisterOutcome::Ok
                }
                RegisterCall::Cas { expect, new } => {
                    if register == Some(expect) {
                        register = Some(new);
                        RegisterOutcome::Ok
                    } else {
                        RegisterOutcome::Failed
                    }
                }
            };
            if !unknown {
                op.outcome = outcome;
            }
        }
        planned.into_iter().map(|(op, _)| op).collect()
    }

    /// Makes one late read return a value that two completed writes definitely overwrote.
    fn make_stale(ops: &mut [RegisterOp]) -> usize {
        let written = |op: &RegisterOp| match (op.call, op.outcome) {
            (RegisterCall::Write(v) | RegisterCall::Cas { new: v, .. }, RegisterOutcome::Ok) => {
                Some(v)
            }
            _ => None,
        };
        for r in (ops.len() / 2..ops.len()).rev() {
            let RegisterOutcome::Read(Some(seen)) = ops[r].outcome else {
                continue;
            };
            let before = |op: &RegisterOp, t: u64| op.complete.is_some_and(|c| c < t);
            for b in 0..ops.len() {
                if written(&ops[b]).is_none() || !before(&ops[b], ops[r].invoke) {
                    continue;
                }
                let a = (0..ops.len()).find(|&a| {
                    written(&ops[a]).is_some_and(|v| v != seen) && before(&ops[a], ops[b].invoke)
                });
                if let Some(a) = a {
                    ops[r].outcome = RegisterOutcome::Read(written(&ops[a]));
                    return r;
                }
            }
        }
        panic!("no read to make stale");
    }

    #[test]
    fn generated_histories_pass_and_a_stale_read_fails() {
        for seed in 1..=20 {
            let mut ops = generate(seed, 5, 200, 40);
            let report = check(&ops);
            assert_eq!(
                report.verdict,
                Verdict::Ok,
                "seed {seed}: {}",
                report.explanation
            );
            let r = make_stale(&mut ops);
            let text = assert_violation(&ops);
            assert!(text.contains(&format!("#{r} ")), "seed {seed}: {text}");
        }
    }

    #[test]
    fn a_big_correct_history_checks_quickly_and_a_stale_read_in_it_is_found() {
        for clients in [10, 20] {
            let mut ops = generate(7, clients, 2_000, 300);
            let unknown = ops
                .iter()
                .filter(|op| op.outcome == RegisterOutcome::Unknown)
                .count();
            assert!((2..20).contains(&unknown), "{unknown} unknown ops");
            let indices: Vec<usize> = (0..ops.len()).collect();
            let started = Instant::now();
            let outcome = check_key(&ops, &indices, &Limits::default());
            let elapsed = started.elapsed();
            assert_eq!(outcome.verdict, Verdict::Ok, "{}", outcome.explanation);
            eprintln!(
                "2000 ops, {clients} clients, {unknown} unknown: {} states in {elapsed:?}",
                outcome.states
            );
            // A deterministic stand-in for a time bound: few states per op.
            assert!(
                outcome.states < 20 * ops.len() as u64,
                "{} states",
                outcome.states
            );

            let r = make_stale(&mut ops);
            let started = Instant::now();
            let outcome = check_key(&ops, &indices, &Limits::default());
            let elapsed = started.elapsed();
            eprintln!(
                "  stale read #{r}: {} states in {elapsed:?}",
                outcome.states
            );
            assert_eq!(
                outcome.verdict,
                Verdict::Violation,
                "{}",
                outcome.explanation
            );
            assert!(
                outcome.explanation.contains(&format!("#{r} ")),
                "{}",
                outcome.explanation
            );
            assert!(
                outcome.states < 100 * ops.len() as u64,
                "{} states",
                outcome.states
            );
            assert!(outcome.explanation.len() < 4_000, "{}", outcome.explanation);
        }
    }

    /// Whether `ops` (one key) is linearizable, by trying every order: no memo, no pruning.
    fn brute_force(ops: &[RegisterOp]) -> bool {
        struct B {
            call: RegisterCall,
            invoke: u64,
            complete: Option<u64>, // None: pending
            read: Option<Option<u64>>,
        }
        let ops: Vec<B> = ops
            .iter()
            .filter_map(|op| match (op.call, op.outcome) {
                (_, RegisterOutcome::Failed) => None,
                (RegisterCall::Read, RegisterOutcome::Unknown) => None,
                (call, RegisterOutcome::Unknown) => Some(B {
                    call,
                    invoke: op.invoke,
                    complete: None,
                    read: None,
                }),
                (call, RegisterOutcome::Read(v)) => Some(B {
                    call,
                    invoke: op.invoke,
                    complete: op.complete,
                    read: Some(v),
                }),
                (call, RegisterOutcome::Ok) => Some(B {
                    call,
                    invoke: op.invoke,
                    complete: op.complete,
                    read: None,
                }),
            })
            .collect();
        fn go(ops: &[B], done: &mut Vec<bool>, state: Option<u64>) -> bool {
            let left = |i: usize, done: &[bool]| !done[i] && ops[i].complete.is_some();
            if !(0..ops.len()).any(|i| left(i, done)) {
                return true;
            }
            for x in 0..ops.len() {
                if done[x]
                    || (0..ops.len()).any(|y| {
                        left(y, done) && ops[y].complete.is_some_and(|c| c < ops[x].invoke)
                    })
                {
                    continue;
                }
                let next = match (ops[x].call, ops[x].read) {
                    (RegisterCall::Read, Some(v)) if v == state => state,
                    (RegisterCall::Read, _) => continue,
                    (RegisterCall::Write(v), _) => Some(v),
                    (RegisterCall::Cas { expect, new }, _) if state == Some(expect) => Some(new),
                    (RegisterCall::Cas { .. }, _) => continue,
                };
                done[x] = true;
                let ok = go(ops, done, next);
                done[x] = false;
                if ok {
                    return true;
                }
            }
            false
        }
        go(&ops, &mut vec![false; ops.len()], None)
    }

    #[test]
    fn agrees_with_a_brute_force_search_on_small_random_histories() {
        let mut rng = Rng(99);
        let (mut good, mut bad) = (0, 0);
        for _ in 0..3_000 {
            let n = 1 + rng.below(7) as usize;
            // Few distinct values: most are observed; more: many writes nothing observes.
            let values = 3 + rng.below(4);
            let ops: Vec<RegisterOp> = (0..n)
                .map(|i| {
                    let invoke = rng.below(10);
                    let complete = invoke + rng.below(5);
                    let value = 1 + rng.below(values);
                    let (call, outcome) = match rng.below(8) {
                        0..=2 => {
                            let v = rng.below(values + 1);
                            let seen = (v > 0).then_some(v);
                            let outcome = if rng.below(10) == 0 {
                                RegisterOutcome::Unknown
                            } else {
                                RegisterOutcome::Read(seen)
                            };
                            (RegisterCall::Read, outcome)
                        }
                        3..=5 => (RegisterCall::Write(value), RegisterOutcome::Ok),
                        _ => (
                            RegisterCall::Cas {
                                expect: 1 + rng.below(values),
                                new: value,
                            },
                            RegisterOutcome::Ok,
                        ),
                    };
                    let outcome = match (outcome, rng.below(6)) {
                        (RegisterOutcome::Ok, 0 | 2) => RegisterOutcome::Unknown,
                        (RegisterOutcome::Ok, 1) => RegisterOutcome::Failed,
                        (outcome, _) => outcome,
                    };
                    let complete = (outcome != RegisterOutcome::Unknown || rng.below(2) == 0)
                        .then_some(complete);
                    op(i as u64, 0, call, invoke, complete, outcome)
                })
                .collect();
            let expected = brute_force(&ops);
            let report = check(&ops);
            let want = if expected {
                Verdict::Ok
            } else {
                Verdict::Violation
            };
            assert_eq!(report.verdict, want, "{ops:#?}\n{}", report.explanation);
            if expected {
                good += 1;
            } else {
                bad += 1;
            }
        }
        assert!(good > 500 && bad > 500, "{good} good, {bad} bad");
    }
}
