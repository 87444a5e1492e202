//! Strict serializability of list-append histories, after Elle (Kingsbury & Alvaro, VLDB 2020):
//! every key holds a list, transactions read lists and append unique elements, so a read
//! reveals the order of every append before it, and the order of appends reveals which
//! transaction each other one depended on.
//!
//! ```text
//!   txns ─► order (per key: the longest read; every read a prefix of it) ─► anomalies without
//!        │        a graph: incompatible order, duplicates, aborted reads, garbage reads
//!        └► graph (ww, wr, rw between committed txns; sparse rt for strict serializability)
//!             ─► cycle (Tarjan SCCs, shortest cycle per SCC, G0 / G1c / G-single / G2 [-realtime])
//! ```
//!
//! Which transactions are in the graph: those that committed (`Ok`), and those with an unknown
//! outcome whose element some read shows (so they committed), with their appends; failed ones
//! whose reads returned as read-only transactions (their reads only: a snapshot read at the
//! read version is an observation whatever the commit did, and nothing they appended applied).
//! Unobserved unknown ones are left out, which can only hide a cycle, never invent one. Reads of
//! every recorded transaction are checked against the order. On a sharded cluster transactions
//! reaching several ranges commit by two-phase commit and are in the graph like any other: one
//! seen by a read in one group but missed by it in another (a fractured read) closes a wr + rw
//! cycle; refused ones (a conflict, a lock, a participant unavailable) are read-only, and their
//! reads across groups at one read version must be one consistent snapshot.

mod cycle;
mod graph;
mod order;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use super::{ms, push_capped, Report, Verdict};
use crate::history::{ListAppendTxn, MicroOp, WriteOutcome};

const CHECKER: &str = "list-append";

/// Most strongly connected components searched for a shortest cycle (each is reported).
const MAX_CYCLES: usize = 32;

/// Checks a list-append history for strict serializability.
///
/// `checked` is the number of transactions in the dependency graph. No committed transaction
/// gives [`Verdict::Unknown`]; an element appended twice (a workload bug) too.
pub fn check_list_append(txns: &[ListAppendTxn]) -> Report {
    let analysis = match order::analyze(txns) {
        Ok(a) => a,
        Err(why) => {
            return Report {
                checker: CHECKER,
                verdict: Verdict::Unknown,
                checked: 0,
                explanation: format!("the history cannot be interpreted: {why}"),
            }
        }
    };
    let with_appends = analysis.included.iter().filter(|&&i| i).count();
    let read_only = analysis.read_only.iter().filter(|&&r| r).count();
    let included = with_appends + read_only;
    if with_appends == 0 && analysis.anomalies.is_empty() {
        return Report {
            checker: CHECKER,
            verdict: Verdict::Unknown,
            checked: 0,
            explanation: format!(
                "no committed list-append transaction among {} recorded",
                txns.len()
            ),
        };
    }
    let graph = graph::build(txns, &analysis);
    let cycles = cycle::find(&graph, MAX_CYCLES);
    // Cycles first: they say the most. Each item with the transactions it names.
    let mut items: Vec<(String, Vec<usize>)> = Vec::new();
    for c in &cycles {
        let steps: Vec<String> = c
            .edges
            .iter()
            .map(|&e| graph.describe(txns, &analysis, e))
            .collect();
        items.push((
            format!(
                "{} cycle of {}: {}",
                c.class,
                c.edges.len(),
                steps.join("; ")
            ),
            c.edges.iter().map(|&e| graph.edges[e].from).collect(),
        ));
    }
    for a in &analysis.anomalies {
        items.push((format!("{}: {}", a.kind, a.text), a.txns.clone()));
    }
    let ok = txns
        .iter()
        .filter(|t| t.outcome == WriteOutcome::Ok)
        .count();
    let summary = format!(
        "{included} transactions in the graph ({ok} committed, {} unknown but seen in a read, \
         {read_only} read-only: refused commits whose reads returned) of {} recorded, {} keys \
         read ({} with one order), {} edges ({} ww, {} wr, {} rw, {} rt)",
        with_appends - ok.min(with_appends),
        txns.len(),
        analysis.keys,
        analysis.order.len(),
        graph.edges.len(),
        graph.count(graph::Kind::Ww),
        graph.count(graph::Kind::Wr),
        graph.count(graph::Kind::Rw),
        graph.count(graph::Kind::Rt),
    );
    if items.is_empty() {
        return Report {
            checker: CHECKER,
            verdict: Verdict::Ok,
            checked: included as u64,
            explanation: format!("strictly serializable: no cycle, no anomaly; {summary}"),
        };
    }
    let mut classes: Vec<&str> = analysis
        .anomalies
        .iter()
        .map(|a| a.kind)
        .chain(cycles.iter().map(|c| c.class.as_str()))
        .collect();
    classes.sort_unstable();
    classes.dedup();
    let mut text = format!(
        "{} anomalies ({}){}; {summary}:",
        items.len(),
        classes.join(", "),
        if cycles.len() == MAX_CYCLES {
            ", more cycles not searched"
        } else {
            ""
        }
    );
    let mut names: Vec<usize> = items
        .iter()
        .take(super::MAX_LISTED)
        .flat_map(|(_, t)| t.iter().copied())
        .collect();
    push_capped(&mut text, "  ", items.into_iter().map(|(text, _)| text));
    names.sort_unstable();
    names.dedup();
    text.push_str(
        "\n  transactions named above (T<i>: the i-th list-append transaction recorded):",
    );
    push_capped(
        &mut text,
        "    ",
        names.into_iter().map(|i| describe_txn(txns, i)),
    );
    Report {
        checker: CHECKER,
        verdict: Verdict::Violation,
        checked: included as u64,
        explanation: text,
    }
}

/// `la/<k>`.
pub(crate) fn key_name(key: u64) -> String {
    format!("la/{key}")
}

/// `[3 7]`.
pub(crate) fn list(value: &[u64]) -> String {
    let parts: Vec<String> = value.iter().map(u64::to_string).collect();
    format!("[{}]", parts.join(" "))
}

/// `T12 = p3 n1 ok rv 40 commit 52 @1.000–2.000 ms: r la/5 [3 7], append la/5 9`.
fn describe_txn(txns: &[ListAppendTxn], i: usize) -> String {
    let Some(t) = txns.get(i) else {
        return format!("T{i} = ?");
    };
    let mut s = format!(
        "T{i} = p{} n{} {:?} rv {} commit {} @{}–{} ms:",
        t.process,
        t.node,
        t.outcome,
        t.read_version.map_or("-".into(), |v| v.to_string()),
        t.commit_version.map_or("-".into(), |v| v.to_string()),
        ms(t.invoke),
        t.complete.map_or("?".into(), ms),
    );
    for (n, op) in t.ops.iter().enumerate() {
        let sep = if n == 0 { " " } else { ", " };
        let _ = match op {
            MicroOp::R { key, value } => write!(s, "{sep}r {} {}", key_name(*key), list(value)),
            MicroOp::Append { key, element } => {
                write!(s, "{sep}append {} {element}", key_name(*key))
            }
        };
    }
    s
}
