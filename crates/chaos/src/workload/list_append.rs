//! The list-append workload (Elle's model): keys `la/<k>` hold lists of unique elements (comma-
//! separated decimals). A transaction takes one read version, reads 1–4 keys plus every key it
//! appends to (`snapshotRead` at that version), appends a fresh element to 1–3 keys by writing
//! each key's list plus the element, and commits with every key read as a read-conflict key.
//! The checker (`check::check_list_append`) infers each key's order from the reads.
//!
//! Contention and size: [`ACTIVE_KEYS`] keys are in use at a time, so transactions collide; a
//! key retires after [`MAX_APPENDS_PER_KEY`] appends were started on it and a fresh key takes
//! its place (as Jepsen does), so lists, history lines and the checker's work stay small.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dolmen_client::{Client, Op};

use super::{classify, refusal_code, think, Class, Ctx, Process, Turns, OP_TIMEOUT};
use crate::history::{Event, ListAppendTxn, MicroOp, WriteOutcome};
use crate::rng::Rng;

/// Keys in use at a time.
pub const ACTIVE_KEYS: usize = 8;
/// Appends started on a key before it is replaced by a fresh one.
pub const MAX_APPENDS_PER_KEY: u32 = 32;

/// What every list-append client shares: the element counter and the pool of active keys.
pub struct Shared {
    /// The next element (unique across the run).
    elements: AtomicU64,
    /// Active keys and the appends started on each; the next fresh key.
    keys: Mutex<(Vec<(u64, u32)>, u64)>,
}

impl Default for Shared {
    fn default() -> Self {
        let active = (0..ACTIVE_KEYS as u64).map(|k| (k, 0)).collect();
        Self {
            elements: AtomicU64::new(1),
            keys: Mutex::new((active, ACTIVE_KEYS as u64)),
        }
    }
}

impl Shared {
    /// Distinct keys to read (1–4) and to append to (1–3), from the active pool; counts the
    /// appends and retires full keys.
    fn pick(&self, rng: &mut Rng) -> (Vec<u64>, Vec<u64>) {
        let mut guard = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (active, next) = &mut *guard;
        let choose = |rng: &mut Rng, n: u64, active: &[(u64, u32)]| {
            let mut slots: Vec<usize> = Vec::new();
            for _ in 0..n * 8 {
                if slots.len() as u64 >= n {
                    break;
                }
                let s = rng.index(active.len());
                if !slots.contains(&s) {
                    slots.push(s);
                }
            }
            slots
        };
        let (nr, na) = (rng.between(1, 4), rng.between(1, 3));
        let reads = choose(rng, nr, active)
            .into_iter()
            .map(|s| active[s].0)
            .collect();
        let mut appends = Vec::new();
        for s in choose(rng, na, active) {
            appends.push(active[s].0);
            active[s].1 += 1;
            if active[s].1 >= MAX_APPENDS_PER_KEY {
                active[s] = (*next, 0);
                *next += 1;
            }
        }
        (reads, appends)
    }
}

/// The Thrift key of list `k`: `la/<k>`.
pub fn key_bytes(k: u64) -> Vec<u8> {
    format!("la/{k}").into_bytes()
}

/// A stored list; an unparsable one reads as `[u64::MAX]`, which the checker reports as an
/// element nobody appended.
fn decode(value: Option<&[u8]>) -> Vec<u64> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Vec::new();
    };
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.split(',').map(|p| p.parse().ok()).collect())
        .unwrap_or_else(|| vec![u64::MAX])
}

fn encode(list: &[u64]) -> Vec<u8> {
    let parts: Vec<String> = list.iter().map(u64::to_string).collect();
    parts.join(",").into_bytes()
}

/// Runs one list-append client until the context stops it.
pub async fn client(ctx: Ctx, shared: Arc<Shared>, mut rng: Rng) {
    let mut turns = Turns::new(&ctx);
    let mut process = Process::new(&ctx.recorder);
    while let Some((node, c)) = turns.next(&ctx, &mut rng) {
        let (reads, appends) = shared.pick(&mut rng);
        let appends: Vec<(u64, u64)> = appends
            .into_iter()
            .map(|k| (k, shared.elements.fetch_add(1, Ordering::Relaxed)))
            .collect();
        let mut txn = ListAppendTxn {
            process: process.id,
            node,
            read_version: None,
            commit_version: None,
            invoke: ctx.recorder.now(),
            complete: None,
            outcome: WriteOutcome::Failed,
            ops: Vec::new(),
            code: None,
        };
        let class = transaction(c, &reads, &appends, &mut txn).await;
        txn.outcome = match class {
            Class::Ok => WriteOutcome::Ok,
            Class::Failed => WriteOutcome::Failed,
            Class::Unknown => WriteOutcome::Unknown,
        };
        txn.complete = (class != Class::Unknown).then(|| ctx.recorder.now());
        txn.ops.extend(
            appends
                .iter()
                .map(|&(key, element)| MicroOp::Append { key, element }),
        );
        ctx.recorder.record(Event::ListAppend(txn));
        process.after(class, &ctx.recorder);
        think(&mut rng).await;
    }
}

/// One attempt: fills in the read version, the reads that returned and the commit version.
async fn transaction(
    c: &Client,
    reads: &[u64],
    appends: &[(u64, u64)],
    txn: &mut ListAppendTxn,
) -> Class {
    // Nothing is written before the commit: a failure up to it is a definite failure.
    let Ok(Ok(rv)) = tokio::time::timeout(OP_TIMEOUT, c.read_version()).await else {
        return Class::Failed;
    };
    txn.read_version = Some(rv);
    let mut keys: Vec<u64> = reads
        .iter()
        .copied()
        .chain(appends.iter().map(|&(k, _)| k))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut lists = Vec::with_capacity(keys.len());
    for &k in &keys {
        let Ok(Ok(v)) = tokio::time::timeout(OP_TIMEOUT, c.snapshot_get(&key_bytes(k), rv)).await
        else {
            return Class::Failed;
        };
        let value = decode(v.as_deref());
        txn.ops.push(MicroOp::R {
            key: k,
            value: value.clone(),
        });
        lists.push((k, value));
    }
    let ops: Vec<Op> = appends
        .iter()
        .map(|&(k, e)| {
            let mut list = lists
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, l)| l.clone())
                .unwrap_or_default();
            list.push(e);
            Op::Set {
                key: key_bytes(k),
                value: encode(&list),
            }
        })
        .collect();
    let conflicts: Vec<Vec<u8>> = keys.iter().map(|&k| key_bytes(k)).collect();
    match tokio::time::timeout(OP_TIMEOUT, c.commit(rv, &ops, &conflicts)).await {
        Ok(Ok(version)) => {
            txn.commit_version = Some(version);
            Class::Ok
        }
        Ok(Err(e)) => {
            txn.code = refusal_code(&e);
            classify(&e)
        }
        Err(_) => Class::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_garbage_is_visible() {
        assert_eq!(decode(None), Vec::<u64>::new());
        assert_eq!(decode(Some(b"")), Vec::<u64>::new());
        assert_eq!(decode(Some(&encode(&[3, 7, 12]))), vec![3, 7, 12]);
        assert_eq!(decode(Some(b"3,x")), vec![u64::MAX]);
    }

    #[test]
    fn keys_are_distinct_and_retire_after_their_appends() {
        let shared = Shared::default();
        let mut rng = Rng::new(7);
        let mut appended = std::collections::HashMap::new();
        for _ in 0..1000 {
            let (reads, appends) = shared.pick(&mut rng);
            assert!((1..=4).contains(&reads.len()) && (1..=3).contains(&appends.len()));
            let mut a = appends.clone();
            a.dedup();
            a.sort_unstable();
            a.dedup();
            assert_eq!(a.len(), appends.len(), "distinct keys");
            for k in appends {
                *appended.entry(k).or_insert(0u32) += 1;
            }
        }
        assert!(appended.values().all(|&n| n <= MAX_APPENDS_PER_KEY));
        assert!(appended.len() > ACTIVE_KEYS, "keys were replaced");
    }
}
