//! What a bench client does per operation: the workloads (YCSB-style mixes plus `txn`, its
//! range-aware variants `txn-local` and `txn-cross`, and `scan`), the action each draw picks,
//! and how an action runs against the node.
//!
//! ```text
//! Workload --pick(rng)--> Action --execute(conns, keys)--> Outcome (ok | conflict | error code)
//! ```

use dolmen_client::Op;

use super::keys::{key, Keys, Pair, Rng};
use super::route::Conns;

/// Keys read by one `scan`.
pub const SCAN_LEN: u64 = 10;

/// What each client does in its loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// `setKey` of a random key (blind write).
    #[value(alias = "set")]
    Write,
    /// `get` of a random preloaded key (linearizable).
    #[value(alias = "get")]
    Read,
    /// YCSB A: 50% reads, 50% updates (blind `setKey`).
    A,
    /// YCSB B: 95% reads, 5% updates.
    B,
    /// YCSB C: reads only.
    C,
    /// Read-modify-write of 2 random keys in one transaction: read version, two snapshot
    /// reads, one `atomicCommit` with both keys as read conflicts. Commits and conflicts are
    /// counted apart.
    #[value(alias = "commit")]
    Txn,
    /// `txn` with both keys in one quarter of the key space (key `i` of `--keys N` is in
    /// quarter `i * 4 / N`): on a cluster split at the quarters (`--keys 10000`: split keys
    /// `bench/000000002500,bench/000000005000,bench/000000007500`) every transaction stays in one
    /// data group, the single-shard figure to compare `txn-cross` with (random `txn` pairs span
    /// two quarters three times in four). Commits and conflicts are counted apart.
    TxnLocal,
    /// `txn` with its two keys in different quarters of the key space (the first at random, the
    /// second at random in one of the three other quarters): on a cluster split at the quarters
    /// every transaction is a two-phase commit across exactly two data groups. Needs `--keys`
    /// of at least 4. Commits and conflicts are counted apart.
    TxnCross,
    /// `getRange` of `SCAN_LEN` consecutive keys from a random start.
    Scan,
}

/// One operation a client issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `get` of one key.
    Read,
    /// `setKey` of one key.
    Write,
    /// The 2-key read-modify-write transaction, its second key placed by `Pair`.
    Txn(Pair),
    /// A short range read.
    Scan,
}

pub use dolmen_bench_report::Outcome;

impl Workload {
    /// The workloads `--matrix` runs, in order (all but `txn-local` and `txn-cross`, which
    /// differ from `txn` only on a cluster split at the quarters of the keys).
    pub const ALL: [Workload; 7] = [
        Workload::Write,
        Workload::Read,
        Workload::A,
        Workload::B,
        Workload::C,
        Workload::Txn,
        Workload::Scan,
    ];

    /// The name used in the table and the JSON line (the `--workload` value).
    pub fn name(self) -> &'static str {
        match self {
            Workload::Write => "write",
            Workload::Read => "read",
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::Txn => "txn",
            Workload::TxnLocal => "txn-local",
            Workload::TxnCross => "txn-cross",
            Workload::Scan => "scan",
        }
    }

    /// Whether the workload reads keys, so they must be preloaded.
    pub fn reads(self) -> bool {
        self != Workload::Write
    }

    /// The next action; for the mixes, a read with the mix's read fraction, else an update.
    pub fn pick(self, rng: &mut Rng) -> Action {
        let read_fraction = match self {
            Workload::Write => return Action::Write,
            Workload::Read | Workload::C => return Action::Read,
            Workload::Txn => return Action::Txn(Pair::Any),
            Workload::TxnLocal => return Action::Txn(Pair::SameQuarter),
            Workload::TxnCross => return Action::Txn(Pair::OtherQuarter),
            Workload::Scan => return Action::Scan,
            Workload::A => 0.5,
            Workload::B => 0.95,
        };
        if rng.next_f64() < read_fraction {
            Action::Read
        } else {
            Action::Write
        }
    }
}

fn outcome(e: dolmen_client::Error) -> Outcome {
    match e.code() {
        Some("CONFLICT") => Outcome::Conflict,
        Some(code) => Outcome::Error(code.to_owned()),
        None if matches!(e, dolmen_client::Error::Transport { .. }) => {
            Outcome::Error("TRANSPORT".to_owned())
        }
        None => Outcome::Error("ERROR".to_owned()),
    }
}

/// Runs `action` once, on the node `conns` routes it to; `value` is what writes store.
pub async fn execute(
    conns: &Conns,
    action: Action,
    keys: &Keys,
    rng: &mut Rng,
    value: &[u8],
) -> Outcome {
    let result = match action {
        Action::Read => conns
            .reader()
            .get("default", &key(keys.next(rng)))
            .await
            .map(|_| ()),
        Action::Write => {
            conns
                .writer()
                .set("default", &key(keys.next(rng)), value)
                .await
        }
        Action::Scan => {
            let start = keys.next(rng);
            conns
                .reader()
                .range(
                    "default",
                    &key(start),
                    &key(start + SCAN_LEN),
                    SCAN_LEN as i32,
                )
                .await
                .map(|_| ())
        }
        Action::Txn(pair) => txn(conns, keys.pair(rng, pair), value).await,
    };
    result.map_or_else(outcome, |()| Outcome::Ok)
}

/// Read version, read the two keys at it, write both modified, commit with both as read
/// conflicts (so a concurrent writer of either key makes this commit fail with `CONFLICT`).
/// The read version and the reads come from one node (the read strategy's pick), the commit
/// goes to the writer (the leader).
async fn txn(
    conns: &Conns,
    (first, second): (u64, u64),
    value: &[u8],
) -> Result<(), dolmen_client::Error> {
    let reader = conns.reader();
    let rv = reader.read_version().await?;
    let mut ops = Vec::with_capacity(2);
    let mut conflicts = Vec::with_capacity(2);
    for k in [key(first), key(second)] {
        let old = reader.snapshot_get(&k, rv).await?;
        let mut new = old.map_or_else(|| value.to_vec(), |v| v.to_vec());
        if let Some(b) = new.first_mut() {
            *b = b.wrapping_add(1);
        }
        conflicts.push(k.clone());
        ops.push(Op::Set { key: k, value: new });
    }
    conns
        .writer()
        .commit(rv, &ops, &conflicts)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_fraction(workload: Workload) -> f64 {
        let mut rng = Rng::new(7);
        let draws = 100_000;
        let reads = (0..draws)
            .filter(|_| workload.pick(&mut rng) == Action::Read)
            .count();
        reads as f64 / draws as f64
    }

    #[test]
    fn mixes_have_their_read_fractions() {
        for (workload, expected) in [
            (Workload::A, 0.5),
            (Workload::B, 0.95),
            (Workload::C, 1.0),
            (Workload::Read, 1.0),
            (Workload::Write, 0.0),
        ] {
            let got = read_fraction(workload);
            assert!(
                (got - expected).abs() < 0.01,
                "{workload:?}: read fraction {got}, expected {expected}"
            );
        }
    }

    #[test]
    fn txn_and_scan_pick_only_their_action() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            assert_eq!(Workload::Txn.pick(&mut rng), Action::Txn(Pair::Any));
            assert_eq!(
                Workload::TxnLocal.pick(&mut rng),
                Action::Txn(Pair::SameQuarter)
            );
            assert_eq!(
                Workload::TxnCross.pick(&mut rng),
                Action::Txn(Pair::OtherQuarter)
            );
            assert_eq!(Workload::Scan.pick(&mut rng), Action::Scan);
        }
    }

    #[test]
    fn names_are_the_flag_values() {
        use clap::ValueEnum;
        for w in Workload::value_variants() {
            let value = w.to_possible_value().map(|v| v.get_name().to_owned());
            assert_eq!(value.as_deref(), Some(w.name()), "{w:?}");
        }
        assert!(!Workload::ALL.contains(&Workload::TxnCross));
    }
}
