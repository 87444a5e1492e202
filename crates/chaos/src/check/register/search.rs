//! The Wing & Gong search over one key's prepared operations: call and return events in a
//! doubly linked list ordered by time, an explicit stack of linearized operations, and the
//! [`Cache`] of explored configurations; the deepest dead end is kept for the explanation.

use std::time::Instant;

use super::cache::Cache;
use super::prepare::{Kind, Prepared, Val, ABSENT};
use crate::check::{Limits, MAX_LISTED};
use crate::history::Nanos;

/// How many operations of the longest linearizable prefix a violation shows (its tail).
const PREFIX_SHOWN: usize = 6;

/// How often (in search steps) the deadline is looked at.
const DEADLINE_EVERY: u64 = 4096;

/// The end of the list (and "no entry").
pub(super) const NIL: usize = usize::MAX;
/// The list's head sentinel.
pub(super) const HEAD: usize = 0;

/// Why the search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
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
pub(super) struct DeadEnd {
    /// Length of the prefix.
    pub(super) depth: usize,
    /// Its last operations (at most [`PREFIX_SHOWN`]), oldest first.
    pub(super) tail: Vec<usize>,
    /// The register after the prefix.
    pub(super) state: Val,
    /// The operation that had to come next (its return was reached) but could not.
    pub(super) blocked: usize,
    /// The operations that could have been linearized next (their calls precede the blocking
    /// return), with at most [`MAX_LISTED`] kept, and how many there were.
    pub(super) candidates: Vec<usize>,
    pub(super) candidate_count: usize,
    /// Which operations were linearized in the prefix (by op index).
    pub(super) linearized: Vec<bool>,
}

/// The search over one key's operations.
pub(super) struct Search<'a> {
    pub(super) p: &'a Prepared,
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
    pub(super) cache: Cache,
    /// The deepest dead end so far (what [`Search::explain_violation`] explains).
    pub(super) deepest: Option<DeadEnd>,
}

impl<'a> Search<'a> {
    pub(super) fn new(p: &'a Prepared) -> Self {
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
    pub(super) fn run(&mut self, limits: &Limits) -> End {
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
}
