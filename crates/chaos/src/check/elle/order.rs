//! What reads alone say: each key's version order (its longest read, of which every other read
//! must be a prefix), who appended each element, which transactions committed, and the
//! anomalies that need no graph (incompatible orders, duplicates, aborted and garbage reads).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{key_name, list};
use crate::history::{ListAppendTxn, MicroOp, WriteOutcome};

/// An anomaly found without the graph.
pub(super) struct Anomaly {
    /// `incompatible-order`, `duplicate-elements`, `G1a` (aborted read), `garbage-read`.
    pub kind: &'static str,
    /// What was seen, naming transactions (`T<i>`), keys and elements.
    pub text: String,
    /// The transactions named.
    pub txns: Vec<usize>,
}

/// The reads' verdict on each key.
pub(super) struct Analysis {
    /// Element → (the transaction that appended it, the key).
    pub writer: HashMap<u64, (usize, u64)>,
    /// Key → its version order (the longest read), for keys whose reads agree.
    pub order: BTreeMap<u64, Vec<u64>>,
    /// Keys read at all.
    pub keys: usize,
    /// Element → its index in its key's order.
    pub position: HashMap<u64, usize>,
    /// By transaction: whether it is in the graph with its appends (committed, or unknown and
    /// seen in a read).
    pub included: Vec<bool>,
    /// By transaction: whether it is in the graph as a read-only observation: its commit was
    /// refused (nothing applied), but its reads returned, all at its one read version, so they
    /// must fit the serial order like a read-only transaction's. On a sharded cluster many
    /// reach several ranges: snapshot reads across groups.
    pub read_only: Vec<bool>,
    /// Anomalies found so far.
    pub anomalies: Vec<Anomaly>,
}

/// Why a history cannot be analyzed.
#[derive(Debug, thiserror::Error)]
pub(super) enum Uninterpretable {
    /// Two transactions appended the same element (the workload makes elements unique).
    #[error("element {element} appended twice (T{first} and T{second})")]
    DuplicateAppend {
        /// The element.
        element: u64,
        /// The first transaction that appended it.
        first: usize,
        /// The second.
        second: usize,
    },
}

/// Analyzes the reads of `txns`.
///
/// # Errors
/// When an element is appended twice (the workload makes elements unique).
pub(super) fn analyze(txns: &[ListAppendTxn]) -> Result<Analysis, Uninterpretable> {
    let mut writer: HashMap<u64, (usize, u64)> = HashMap::new();
    for (i, t) in txns.iter().enumerate() {
        for op in &t.ops {
            if let MicroOp::Append { key, element } = *op {
                if let Some((j, _)) = writer.insert(element, (i, key)) {
                    return Err(Uninterpretable::DuplicateAppend {
                        element,
                        first: j,
                        second: i,
                    });
                }
            }
        }
    }
    let mut anomalies = Vec::new();
    let mut observed: HashSet<u64> = HashSet::new();
    // Key → reads (transaction, the list).
    let mut reads: BTreeMap<u64, Vec<(usize, &[u64])>> = BTreeMap::new();
    for (i, t) in txns.iter().enumerate() {
        for op in &t.ops {
            let MicroOp::R { key, value } = op else {
                continue;
            };
            reads.entry(*key).or_default().push((i, value));
            let mut seen = HashSet::new();
            for &e in value {
                if !seen.insert(e) {
                    anomalies.push(Anomaly {
                        kind: "duplicate-elements",
                        text: format!(
                            "T{i} read {} of {} with {e} more than once",
                            list(value),
                            key_name(*key)
                        ),
                        txns: vec![i],
                    });
                    break;
                }
            }
            for &e in value {
                observed.insert(e);
                match writer.get(&e) {
                    None => anomalies.push(Anomaly {
                        kind: "garbage-read",
                        text: format!(
                            "T{i} read {} of {} with {e}, which no transaction appended",
                            list(value),
                            key_name(*key)
                        ),
                        txns: vec![i],
                    }),
                    Some(&(w, k)) if k != *key => anomalies.push(Anomaly {
                        kind: "garbage-read",
                        text: format!(
                            "T{i} read {} of {} with {e}, which T{w} appended to {}",
                            list(value),
                            key_name(*key),
                            key_name(k)
                        ),
                        txns: vec![i, w],
                    }),
                    Some(&(w, _)) if w != i && txns[w].outcome == WriteOutcome::Failed => {
                        anomalies.push(Anomaly {
                            kind: "G1a",
                            text: format!(
                                "T{i} read {} of {} with {e}, appended by T{w}, which failed \
                                 (aborted read)",
                                list(value),
                                key_name(*key)
                            ),
                            txns: vec![i, w],
                        });
                    }
                    Some(_) => {}
                }
            }
        }
    }
    let mut order = BTreeMap::new();
    let mut position = HashMap::new();
    for (key, rs) in &reads {
        let Some(&(li, longest)) = rs.iter().max_by_key(|(_, v)| v.len()) else {
            continue;
        };
        if let Some(&(bi, bad)) = rs.iter().find(|(_, v)| !longest.starts_with(v)) {
            let common = bad.iter().zip(longest).take_while(|(a, b)| a == b).count();
            anomalies.push(Anomaly {
                kind: "incompatible-order",
                text: format!(
                    "T{bi} read {} of {} and T{li} read {}: neither is a prefix of the other; \
                     they part after {} (an append was overwritten)",
                    list(bad),
                    key_name(*key),
                    list(longest),
                    list(&bad[..common])
                ),
                txns: vec![bi, li],
            });
            continue;
        }
        for (p, &e) in longest.iter().enumerate() {
            position.entry(e).or_insert(p);
        }
        order.insert(*key, longest.to_vec());
    }
    let included = txns
        .iter()
        .map(|t| match t.outcome {
            WriteOutcome::Ok => true,
            WriteOutcome::Failed => false,
            WriteOutcome::Unknown => t.ops.iter().any(
                |op| matches!(op, MicroOp::Append { element, .. } if observed.contains(element)),
            ),
        })
        .collect();
    let read_only = txns
        .iter()
        .map(|t| {
            t.outcome == WriteOutcome::Failed
                && t.complete.is_some()
                && t.ops.iter().any(|op| matches!(op, MicroOp::R { .. }))
        })
        .collect();
    Ok(Analysis {
        writer,
        keys: reads.len(),
        order,
        position,
        included,
        read_only,
        anomalies,
    })
}
