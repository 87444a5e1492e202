//! The dependency graph between the transactions in the graph (see the module above), from each
//! key's version order. Read-only nodes (refused commits whose reads returned) take part only
//! through their reads: no edge comes from an element they appended, which never applied.
//! - `ww`: T1's element comes just before T2's in a key's order;
//! - `wr`: T2 read a list whose last element T1 appended;
//! - `rw`: T1 read a list of a key without T2's element that comes next in the key's order; and,
//!   for an element no read shows (it was never read, or it was lost), T1 read the key without it
//!   with a list as long as T2's own read of that key, or the next longer one seen (lists only
//!   grow by appends, so any reader without T2's element must come before T2; these two lengths
//!   are enough to close every cycle through T2, e.g. a lost update);
//! - `rt` (strict serializability): T1 completed before T2 was invoked. Sparse: a *frontier* of
//!   completed transactions not yet known to precede another completed one; each invocation
//!   gets an edge from every member (a few: about the number of clients), and a completion
//!   replaces its own predecessors in the frontier with itself. Every real-time order is
//!   implied by a path of such edges.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::order::Analysis;
use super::{key_name, list, ms};
use crate::history::{ListAppendTxn, MicroOp};

/// Most `rw` edges into one never-read element (bounded by the clients in practice).
const MAX_UNSEEN_READERS: usize = 64;

/// The kind of a dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    /// Write-write.
    Ww,
    /// Write-read.
    Wr,
    /// Read-write (anti-dependency).
    Rw,
    /// Real time.
    Rt,
}

/// Why an edge exists (enough to explain it).
#[derive(Clone, Copy, Debug)]
pub(super) enum Why {
    /// `from` appended `prev` to `key` just before `to` appended `next`.
    Ww { key: u64, prev: u64, next: u64 },
    /// `to`'s micro-op `op` read `key` with `from`'s element last.
    Wr { key: u64, op: usize },
    /// `from`'s micro-op `op` read `key` without `to`'s `element`; `unseen` when no read shows it.
    Rw {
        key: u64,
        op: usize,
        element: u64,
        unseen: bool,
    },
    /// `from` completed before `to` was invoked.
    Rt,
}

/// One edge.
#[derive(Clone, Copy, Debug)]
pub(super) struct Edge {
    pub from: usize,
    pub to: usize,
    pub kind: Kind,
    pub why: Why,
}

/// Edges, and by transaction the indexes of the edges leaving it.
pub(super) struct Graph {
    pub edges: Vec<Edge>,
    pub out: Vec<Vec<usize>>,
    /// Which transactions are nodes.
    pub nodes: Vec<bool>,
}

impl Graph {
    fn add(
        &mut self,
        seen: &mut HashSet<(usize, usize, Kind)>,
        from: usize,
        to: usize,
        kind: Kind,
        why: Why,
    ) {
        if from == to || !self.nodes[from] || !self.nodes[to] || !seen.insert((from, to, kind)) {
            return;
        }
        self.out[from].push(self.edges.len());
        self.edges.push(Edge {
            from,
            to,
            kind,
            why,
        });
    }

    /// Edges of `kind`.
    pub fn count(&self, kind: Kind) -> usize {
        self.edges.iter().filter(|e| e.kind == kind).count()
    }

    /// One edge in words, naming both transactions, the key and the elements.
    pub fn describe(&self, txns: &[ListAppendTxn], a: &Analysis, e: usize) -> String {
        let Edge { from, to, why, .. } = self.edges[e];
        let read = |t: usize, op: usize| match txns.get(t).and_then(|t| t.ops.get(op)) {
            Some(MicroOp::R { value, .. }) => list(value),
            _ => "?".into(),
        };
        match why {
            Why::Ww { key, prev, next } => format!(
                "T{from} appended {prev} to {} just before T{to}'s {next} (ww)",
                key_name(key)
            ),
            Why::Wr { key, op } => format!(
                "T{from}'s append to {} is the last element T{to} read in {} (wr)",
                key_name(key),
                read(to, op)
            ),
            Why::Rw {
                key,
                op,
                element,
                unseen: false,
            } => {
                let r = read(from, op);
                let after = match a.position.get(&element).copied().unwrap_or(0) {
                    0 => "which comes first".to_owned(),
                    p => format!(
                        "which comes after {}",
                        a.order
                            .get(&key)
                            .and_then(|o| o.get(p - 1))
                            .copied()
                            .unwrap_or(0)
                    ),
                };
                format!(
                    "T{from} read {r} of {} without T{to}'s {element}, {after} (rw)",
                    key_name(key)
                )
            }
            Why::Rw {
                key,
                op,
                element,
                unseen: true,
            } => format!(
                "T{from} read {} of {} without T{to}'s {element}, which no read shows; T{to} \
                 itself read {} of it (rw)",
                read(from, op),
                key_name(key),
                own_read(txns, to, key).map_or("nothing".into(), |(_, v)| list(v))
            ),
            Why::Rt => format!(
                "T{from} completed at {} ms before T{to} was invoked at {} ms (rt)",
                txns.get(from)
                    .and_then(|t| t.complete)
                    .map_or("?".into(), ms),
                txns.get(to).map_or("?".into(), |t| ms(t.invoke))
            ),
        }
    }
}

/// Transaction `t`'s read of `key`: (micro-op index, list).
fn own_read(txns: &[ListAppendTxn], t: usize, key: u64) -> Option<(usize, &[u64])> {
    txns.get(t)?
        .ops
        .iter()
        .enumerate()
        .find_map(|(i, op)| match op {
            MicroOp::R { key: k, value } if *k == key => Some((i, value.as_slice())),
            _ => None,
        })
}

/// Builds the graph.
pub(super) fn build(txns: &[ListAppendTxn], a: &Analysis) -> Graph {
    let mut g = Graph {
        edges: Vec::new(),
        out: vec![Vec::new(); txns.len()],
        nodes: a
            .included
            .iter()
            .zip(&a.read_only)
            .map(|(&with_appends, &read_only)| with_appends || read_only)
            .collect(),
    };
    let mut seen = HashSet::new();
    // Only appends that applied have a writer in the graph.
    let writer = |e: &u64| {
        a.writer
            .get(e)
            .map(|&(w, _)| w)
            .filter(|&w| a.included.get(w).copied().unwrap_or(false))
    };
    for (&key, order) in &a.order {
        for pair in order.windows(2) {
            if let (Some(w1), Some(w2)) = (writer(&pair[0]), writer(&pair[1])) {
                let why = Why::Ww {
                    key,
                    prev: pair[0],
                    next: pair[1],
                };
                g.add(&mut seen, w1, w2, Kind::Ww, why);
            }
        }
    }
    // Reads by the transactions in the graph, by key: (length, reader, micro-op).
    let mut by_key: HashMap<u64, Vec<(usize, usize, usize)>> = HashMap::new();
    for (r, t) in txns.iter().enumerate() {
        if !g.nodes[r] {
            continue;
        }
        for (op, m) in t.ops.iter().enumerate() {
            let MicroOp::R { key, value } = m else {
                continue;
            };
            let Some(order) = a.order.get(key) else {
                continue;
            };
            by_key.entry(*key).or_default().push((value.len(), r, op));
            if let Some(w) = value.last().and_then(writer) {
                g.add(&mut seen, w, r, Kind::Wr, Why::Wr { key: *key, op });
            }
            if let Some(&next) = order.get(value.len()) {
                if let Some(w) = writer(&next) {
                    let why = Why::Rw {
                        key: *key,
                        op,
                        element: next,
                        unseen: false,
                    };
                    g.add(&mut seen, r, w, Kind::Rw, why);
                }
            }
        }
    }
    for reads in by_key.values_mut() {
        reads.sort_unstable();
    }
    for (w, t) in txns.iter().enumerate() {
        if !a.included[w] {
            continue;
        }
        for m in &t.ops {
            let MicroOp::Append { key, element } = *m else {
                continue;
            };
            if a.position.contains_key(&element) || !a.order.contains_key(&key) {
                continue;
            }
            let (Some((_, own)), Some(reads)) = (own_read(txns, w, key), by_key.get(&key)) else {
                continue;
            };
            let len = own.len();
            let start = reads.partition_point(|&(l, _, _)| l < len);
            let longer = reads[start..].iter().map(|&(l, _, _)| l).find(|&l| l > len);
            let end = longer.unwrap_or(len);
            for &(_, r, op) in reads[start..]
                .iter()
                .take_while(|&&(l, _, _)| l <= end)
                .take(MAX_UNSEEN_READERS)
            {
                let why = Why::Rw {
                    key,
                    op,
                    element,
                    unseen: true,
                };
                g.add(&mut seen, r, w, Kind::Rw, why);
            }
        }
    }
    realtime(&mut g, &mut seen, txns, a);
    g
}

/// The sparse real-time edges (see the module docs).
fn realtime(
    g: &mut Graph,
    seen: &mut HashSet<(usize, usize, Kind)>,
    txns: &[ListAppendTxn],
    a: &Analysis,
) {
    // (time, 0 = invoke | 1 = complete, txn): at equal times invocations come first, since
    // only a completion strictly before an invocation orders two transactions.
    let mut events: Vec<(u64, u8, usize)> = Vec::new();
    for (i, t) in txns.iter().enumerate() {
        if !g.nodes[i] {
            continue;
        }
        events.push((t.invoke, 0, i));
        // A committed transaction completes with its commit's answer; a read-only one (a
        // refused commit) with the refusal, after every one of its reads.
        let completes = t.outcome == crate::history::WriteOutcome::Ok || a.read_only[i];
        if completes {
            if let Some(c) = t.complete {
                events.push((c, 1, i));
            }
        }
    }
    events.sort_unstable();
    let mut frontier: BTreeSet<usize> = BTreeSet::new();
    let mut preds: HashMap<usize, Vec<usize>> = HashMap::new();
    for (_, what, t) in events {
        if what == 0 {
            let p: Vec<usize> = frontier.iter().copied().collect();
            for &f in &p {
                g.add(seen, f, t, Kind::Rt, Why::Rt);
            }
            preds.insert(t, p);
        } else {
            for f in preds.remove(&t).unwrap_or_default() {
                frontier.remove(&f);
            }
            frontier.insert(t);
        }
    }
}
