//! The list-append workload (Elle's model): keys `la/<k>` hold lists of unique elements (comma-
//! separated decimals). A transaction takes one read version, reads 1–4 keys plus every key it
//! appends to (`snapshotRead` at that version), appends a fresh element to 1–3 keys by writing
//! each key's list plus the element, and commits with every key read as a read-conflict key.
//! The checker (`check::check_list_append`) infers each key's order from the reads.
//!
//! Contention and size: [`ACTIVE_KEYS`] keys are in use at a time, so transactions collide; a
//! key retires after [`MAX_APPENDS_PER_KEY`] appends were started on it and a fresh key takes
//! its place (as Jepsen does), so lists, history lines and the checker's work stay small.
//!
//! On a sharded cluster the active keys are spread evenly over the ranges that hold `la/` keys,
//! and a retired key is replaced by the next unused one of its own range, so transactions keep
//! reaching one range or several in the same proportion all run long (keys compare as text:
//! numbered in order, `la/2` as split key would put `la/20`–`la/99` and then `la/200`–`la/999`
//! in one range, and a long run would stay in it). Unsharded, keys are numbered in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dolmen_client::{Client, Op};

use super::{classify, refusal_code, think, Class, Ctx, Process, Turns, OP_TIMEOUT};
use crate::history::{Event, ListAppendTxn, MicroOp, WriteOutcome};
use crate::rng::Rng;
use crate::shards::Ranges;

/// Keys in use at a time.
pub const ACTIVE_KEYS: usize = 8;
/// Appends started on a key before it is replaced by a fresh one.
pub const MAX_APPENDS_PER_KEY: u32 = 32;

/// Keys looked at to find which ranges hold `la/` keys (`la/0` to `la/9999`).
const PROBED_KEYS: u64 = 10_000;

/// What every list-append client shares: the element counter and the pool of active keys.
pub struct Shared {
    /// The next element (unique across the run).
    elements: AtomicU64,
    /// The active keys and where fresh ones come from.
    keys: Mutex<Pool>,
}

/// The active keys, each with the appends started on it, and the next candidate for a fresh
/// key in each range.
struct Pool {
    /// The ranges keys are taken from.
    ranges: Ranges,
    /// (key, appends started).
    active: Vec<(u64, u32)>,
    /// Range → the lowest key number that may still be unused in it.
    next: BTreeMap<usize, u64>,
    /// Every key used so far (a key is never used twice).
    used: BTreeSet<u64>,
}

impl Pool {
    /// The first unused key of `range`, looked for up to ten times the last one plus
    /// [`PROBED_KEYS`] (the next decade of a decimal prefix); past that, or when `range` holds
    /// no more `la/` keys, the lowest key above every key used, whatever its range.
    fn fresh(&mut self, range: usize) -> u64 {
        let from = self.next.get(&range).copied().unwrap_or(0);
        let bound = from.saturating_mul(10).saturating_add(PROBED_KEYS);
        let found = (from..bound)
            .find(|&k| !self.used.contains(&k) && self.ranges.range_of(&key_bytes(k)) == range);
        let key = match found {
            Some(k) => {
                self.next.insert(range, k + 1);
                k
            }
            None => self.used.last().map_or(0, |&k| k + 1),
        };
        self.used.insert(key);
        key
    }
}

impl Default for Shared {
    /// An unsharded run: keys `la/0`, `la/1`, ... in order.
    fn default() -> Self {
        Self::new(&Ranges::default())
    }
}

impl Shared {
    /// The pool over `ranges`: [`ACTIVE_KEYS`] keys dealt in turn to the ranges that hold
    /// some of `la/0` to `la/9999`, each the first unused key of its range.
    pub fn new(ranges: &Ranges) -> Self {
        let holding: BTreeSet<usize> = (0..PROBED_KEYS)
            .map(|k| ranges.range_of(&key_bytes(k)))
            .collect();
        let holding: Vec<usize> = holding.into_iter().collect();
        let mut pool = Pool {
            ranges: ranges.clone(),
            active: Vec::with_capacity(ACTIVE_KEYS),
            next: BTreeMap::new(),
            used: BTreeSet::new(),
        };
        for slot in 0..ACTIVE_KEYS {
            let range = holding
                .get(slot % holding.len().max(1))
                .copied()
                .unwrap_or(0);
            let key = pool.fresh(range);
            pool.active.push((key, 0));
        }
        Self {
            elements: AtomicU64::new(1),
            keys: Mutex::new(pool),
        }
    }

    /// Distinct keys to read (1–4) and to append to (1–3), from the active pool; counts the
    /// appends and retires full keys.
    fn pick(&self, rng: &mut Rng) -> (Vec<u64>, Vec<u64>) {
        let mut guard = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pool = &mut *guard;
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
        let reads = choose(rng, nr, &pool.active)
            .into_iter()
            .map(|s| pool.active[s].0)
            .collect();
        let mut appends = Vec::new();
        for s in choose(rng, na, &pool.active) {
            let (key, started) = &mut pool.active[s];
            appends.push(*key);
            *started += 1;
            if *started >= MAX_APPENDS_PER_KEY {
                // A fresh key in the same range (an unused number, never reused).
                let range = pool.ranges.range_of(&key_bytes(*key));
                pool.active[s] = (pool.fresh(range), 0);
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
        let used: Vec<u64> = shared.keys.lock().unwrap().used.iter().copied().collect();
        let expected: Vec<u64> = (0..used.len() as u64).collect();
        assert_eq!(used, expected, "unsharded, keys are numbered in order");
    }

    #[test]
    fn sharded_keys_stay_spread_over_the_ranges_holding_lists() {
        // g3 [la/, la/2) holds la/0-1, la/10-19, la/100-199...; g4 [la/2, reg/) the others.
        let ranges = Ranges::parse("bank/4,la/,la/2,reg/").unwrap();
        let shared = Shared::new(&ranges);
        let range_of = |k: u64| ranges.range_of(&key_bytes(k));
        let active = |shared: &Shared| -> Vec<u64> {
            let pool = shared.keys.lock().unwrap();
            pool.active.iter().map(|&(k, _)| k).collect()
        };
        assert_eq!(active(&shared), vec![0, 2, 1, 3, 10, 4, 11, 5]);
        let mut rng = Rng::new(11);
        let mut appended = std::collections::HashMap::new();
        let (mut across, mut txns) = (0, 0);
        for _ in 0..20_000 {
            let (reads, appends) = shared.pick(&mut rng);
            for &k in &appends {
                *appended.entry(k).or_insert(0u32) += 1;
            }
            let reached: BTreeSet<usize> =
                reads.iter().chain(&appends).map(|&k| range_of(k)).collect();
            txns += 1;
            across += usize::from(reached.len() > 1);
            let now = active(&shared);
            let in_g3 = now.iter().filter(|&&k| range_of(k) == 2).count();
            assert_eq!(in_g3, ACTIVE_KEYS / 2, "{now:?}");
            assert!(now.iter().all(|&k| matches!(range_of(k), 2 | 3)), "{now:?}");
        }
        assert!(
            appended.values().all(|&n| n <= MAX_APPENDS_PER_KEY),
            "never reused"
        );
        assert!(
            appended.keys().any(|&k| k >= 1000 && range_of(k) == 2),
            "la/1000 onwards in g3"
        );
        assert!(
            across * 2 > txns,
            "most transactions reach both ranges: {across} of {txns}"
        );
    }

    #[test]
    fn a_range_out_of_keys_hands_out_keys_above_all_used() {
        // [la/1, la/10) holds la/1 only.
        let ranges = Ranges::parse("la/1,la/10,la/2").unwrap();
        let shared = Shared::new(&ranges);
        let mut pool = shared.keys.lock().unwrap();
        let mut seen: BTreeSet<u64> = pool.active.iter().map(|&(k, _)| k).collect();
        assert!(seen.contains(&1));
        for _ in 0..50 {
            assert!(seen.insert(pool.fresh(1)), "never a used key");
        }
    }
}
