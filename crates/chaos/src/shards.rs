//! The key ranges of a sharded run (`--split-keys`): the split keys as given and as bytes, which
//! range (data group) each workload key falls in, and the per-workload figures that show a run
//! exercised the sharded path: operations by range, and transactions reaching one range or
//! several (those commit by two-phase commit, docs/sharding.md §6.3), with the refusals by
//! code. The `cross-range` report ([`ShardTally::cross_range_report`]) makes a sharded run in
//! which no transfer or list-append transaction reaching several ranges committed an unknown
//! verdict, never a pass: the checkers would have judged no two-phase commit.
//!
//! ```text
//!  "bank/4,la/,la/5" ─ parse ─▶ Ranges [""..bank/4) [bank/4..la/) [la/..la/5) [la/5..+∞)
//!                                  │ range_of(key) = data group − 1
//!  history events ─ keys ──────────┴▶ ShardTally: per workload, by range, one vs several ranges
//!                                        └▶ cross-range report: committed across ranges?
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use dolmen_config::{ShardingConfig, HEX_PREFIX, MAX_SHARDS, MAX_SPLIT_KEY_BYTES};
use serde::{Deserialize, Serialize};

use crate::check::{Report, Verdict};
use crate::history::{Event, MicroOp, RegisterCall, RegisterOutcome, WriteOutcome};
use crate::workload::{bank, list_append, register, set};

/// Longest prefix of a split key quoted in an error, in characters.
const SHOWN_CHARS: usize = 40;

/// The name of the report on commits across ranges.
pub const CROSS_RANGE: &str = "cross-range";

/// The workloads (as tallied) whose transactions may reach several ranges.
const TRANSACTIONAL: [&str; 2] = ["bank-transfer", "list-append"];

/// `part` as a percentage of `whole`, rounded down (`0%` of nothing).
fn pct(part: u64, whole: u64) -> String {
    format!("{}%", (part * 100).checked_div(whole).unwrap_or(0))
}

/// Why a `--split-keys` list is refused. Positions count from 1, as the list is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitKeysError {
    /// An empty entry (two commas in a row, or one at either end).
    #[error(
        "split key {position} is empty (between {after} and {before}); the first range already \
         starts at the empty key, so every split key needs at least one byte"
    )]
    Empty {
        /// Its position in the list.
        position: usize,
        /// The entry before it, quoted, or `the start of the list`.
        after: String,
        /// The entry after it, quoted, or `the end of the list`.
        before: String,
    },
    /// A `hex:` entry whose digits do not decode.
    #[error(
        "split key {position} ({key}) is not valid hex: write \"hex:\" and two hex digits \
         (0-9, a-f) per byte"
    )]
    BadHex {
        /// Its position in the list.
        position: usize,
        /// The entry, quoted.
        key: String,
    },
    /// An entry longer than a key a client may write.
    #[error(
        "split key {position} ({key}) is {bytes} bytes; a split key is at most \
         {MAX_SPLIT_KEY_BYTES} bytes"
    )]
    TooLong {
        /// Its position in the list.
        position: usize,
        /// The entry, quoted.
        key: String,
        /// Its length as bytes.
        bytes: usize,
    },
    /// An entry not above the one before it, compared as bytes.
    #[error(
        "split key {position} ({key}) is not above split key {previous_position} ({previous}); \
         split keys must be strictly increasing, compared as bytes"
    )]
    NotIncreasing {
        /// Its position in the list.
        position: usize,
        /// The entry, quoted.
        key: String,
        /// The position of the entry before it.
        previous_position: usize,
        /// The entry before it, quoted.
        previous: String,
    },
    /// More entries than the server accepts.
    #[error("{count} split keys; a cluster takes at most {max} (one data group each, plus one)")]
    TooMany {
        /// How many were given.
        count: usize,
        /// The most accepted.
        max: usize,
    },
}

/// The key ranges of a run: range `i` is `[split[i-1], split[i])` (the first from the empty
/// key, the last to the end of the keyspace) and is served by data group `i + 1`. Not sharded:
/// one range holding every key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    /// The split keys as given (UTF-8 text, or `hex:` digits), for labels.
    texts: Vec<String>,
    /// The same keys as bytes, strictly increasing.
    splits: Vec<Vec<u8>>,
}

impl Ranges {
    /// Parses `--split-keys`: comma-separated keys, each UTF-8 text taken as its bytes or
    /// `hex:` and two hex digits per byte (a key holding a comma must be written in hex).
    /// Nothing is trimmed: a space is a byte of the key.
    ///
    /// # Errors
    /// The first entry that is empty, bad hex, too long, or not above the one before it.
    pub fn parse(text: &str) -> Result<Self, SplitKeysError> {
        let texts: Vec<String> = text.split(',').map(str::to_owned).collect();
        Self::new(texts)
    }

    /// Checks split keys as they are saved in `run.json` (see [`Self::parse`]); an empty list
    /// is an unsharded run.
    ///
    /// # Errors
    /// As [`Self::parse`].
    pub fn new(texts: Vec<String>) -> Result<Self, SplitKeysError> {
        let max = MAX_SHARDS as usize - 1;
        if texts.len() > max {
            return Err(SplitKeysError::TooMany {
                count: texts.len(),
                max,
            });
        }
        let mut splits: Vec<Vec<u8>> = Vec::with_capacity(texts.len());
        for (i, key) in texts.iter().enumerate() {
            let position = i + 1;
            if key.is_empty() {
                let quoted = |j: Option<usize>, end: &str| {
                    j.and_then(|j| texts.get(j))
                        .map_or_else(|| end.to_owned(), |t| shown(t))
                };
                return Err(SplitKeysError::Empty {
                    position,
                    after: quoted(i.checked_sub(1), "the start of the list"),
                    before: quoted(Some(i + 1), "the end of the list"),
                });
            }
            let bytes = decode(key).ok_or_else(|| SplitKeysError::BadHex {
                position,
                key: shown(key),
            })?;
            if bytes.is_empty() {
                // `hex:` with no digits.
                return Err(SplitKeysError::BadHex {
                    position,
                    key: shown(key),
                });
            }
            if bytes.len() > MAX_SPLIT_KEY_BYTES {
                return Err(SplitKeysError::TooLong {
                    position,
                    key: shown(key),
                    bytes: bytes.len(),
                });
            }
            if let Some(previous) = splits.last() {
                if bytes <= *previous {
                    return Err(SplitKeysError::NotIncreasing {
                        position,
                        key: shown(key),
                        previous_position: i,
                        previous: shown(&texts[i - 1]),
                    });
                }
            }
            splits.push(bytes);
        }
        Ok(Self { texts, splits })
    }

    /// The split keys as given (empty: not sharded).
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// Whether the keyspace is split.
    pub fn is_sharded(&self) -> bool {
        !self.splits.is_empty()
    }

    /// How many ranges there are (one more than the split keys).
    pub fn len(&self) -> usize {
        self.splits.len() + 1
    }

    /// Never: there is always at least the one range holding every key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The range holding `key`: the number of split keys at or below it.
    pub fn range_of(&self, key: &[u8]) -> usize {
        self.splits.partition_point(|split| split.as_slice() <= key)
    }

    /// The ranges `keys` reach.
    pub fn reached<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) -> BTreeSet<usize> {
        keys.into_iter().map(|k| self.range_of(k)).collect()
    }

    /// `g3 [la/, la/5)`: range `i`'s data group and bounds.
    pub fn label(&self, i: usize) -> String {
        let start = match i.checked_sub(1).and_then(|j| self.texts.get(j)) {
            Some(t) => t.clone(),
            None => String::new(),
        };
        let end = self
            .texts
            .get(i)
            .map_or_else(|| "+∞".to_owned(), Clone::clone);
        format!("g{} [{start}, {end})", i + 1)
    }
}

/// A split key's bytes (the server's own decoding, `dolmen_config`); `None` when its hex does
/// not decode.
fn decode(text: &str) -> Option<Vec<u8>> {
    let one = ShardingConfig {
        split_keys: vec![text.to_owned()],
        ..ShardingConfig::default()
    };
    let mut decoded = one.decoded_split_keys();
    if text.starts_with(HEX_PREFIX) && decoded.is_empty() {
        return None;
    }
    decoded.pop()
}

/// A key as an error quotes it, cut after [`SHOWN_CHARS`] characters.
fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Outcomes of writes or transactions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    /// Committed (acknowledged).
    pub ok: u64,
    /// Definitely not applied.
    pub failed: u64,
    /// Refused with `UNAVAILABLE` (counted in `failed` too; also in `codes`).
    pub unavailable: u64,
    /// The failed ones by the code of the commit's refusal (`CONFLICT`, `UNAVAILABLE`, ...);
    /// those without one (a failure before the commit, a refused connection) are not counted
    /// here. Absent from summaries written before it was recorded.
    #[serde(default)]
    pub codes: BTreeMap<String, u64>,
    /// Outcome unknown.
    pub unknown: u64,
}

impl Outcomes {
    fn add(&mut self, outcome: WriteOutcome, code: Option<&str>) {
        match outcome {
            WriteOutcome::Ok => self.ok += 1,
            WriteOutcome::Failed => {
                self.failed += 1;
                if code == Some("UNAVAILABLE") {
                    self.unavailable += 1;
                }
                if let Some(code) = code {
                    *self.codes.entry(code.to_owned()).or_default() += 1;
                }
            }
            WriteOutcome::Unknown => self.unknown += 1,
        }
    }

    /// `12 committed, 5 refused (3 CONFLICT, 1 UNAVAILABLE, 1 before the commit), 1 unknown`.
    fn line(&self) -> String {
        let mut refusals: Vec<String> = self
            .codes
            .iter()
            .map(|(code, n)| format!("{n} {code}"))
            .collect();
        let coded: u64 = self.codes.values().sum();
        if self.failed > coded {
            refusals.push(format!("{} before the commit", self.failed - coded));
        }
        let refusals = if refusals.is_empty() {
            String::new()
        } else {
            format!(" ({})", refusals.join(", "))
        };
        format!(
            "{} committed, {} refused{refusals}, {} unknown",
            self.ok, self.failed, self.unknown
        )
    }

    fn total(&self) -> u64 {
        self.ok + self.failed + self.unknown
    }
}

/// One workload's figures on a sharded run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadShards {
    /// Operations (reads too) by the label of the range their keys lie in, for operations
    /// whose keys lie in one range.
    pub by_range: BTreeMap<String, u64>,
    /// Writes and transactions whose keys lie in one range.
    pub one_range: Outcomes,
    /// Transactions whose keys (written, read, conflict keys) reach several ranges.
    pub several_ranges: Outcomes,
    /// Reads that reach several ranges (bank: one snapshot range read over every account).
    pub reads_across: u64,
}

/// Per-workload figures of a sharded run (`summary.json`'s `shards`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardTally {
    /// The split keys, as given.
    pub split_keys: Vec<String>,
    /// Workload (`register`, `bank-transfer`, `bank-read`, `set`, `list-append`) → figures.
    pub workloads: BTreeMap<String, WorkloadShards>,
}

impl ShardTally {
    /// Counts `events` over `ranges`.
    pub fn of(events: &[Event], ranges: &Ranges) -> Self {
        let mut tally = ShardTally {
            split_keys: ranges.texts().to_vec(),
            workloads: BTreeMap::new(),
        };
        for event in events {
            match event {
                Event::Register(op) => {
                    let w = tally.entry("register");
                    let range = ranges.range_of(&register::key_bytes(op.key));
                    *w.by_range.entry(ranges.label(range)).or_default() += 1;
                    if !matches!(op.call, RegisterCall::Read) {
                        let outcome = match op.outcome {
                            RegisterOutcome::Ok | RegisterOutcome::Read(_) => WriteOutcome::Ok,
                            RegisterOutcome::Failed => WriteOutcome::Failed,
                            RegisterOutcome::Unknown => WriteOutcome::Unknown,
                        };
                        w.one_range.add(outcome, None);
                    }
                }
                Event::Transfer(t) => {
                    let keys = [bank::account_key(t.from), bank::account_key(t.to)];
                    let reached = ranges.reached(keys.iter().map(Vec::as_slice));
                    tally.transaction("bank-transfer", ranges, &reached, t.outcome, t.code());
                }
                Event::BankRead(_) => {
                    let keys: Vec<Vec<u8>> = (0..bank::ACCOUNTS).map(bank::account_key).collect();
                    let reached = ranges.reached(keys.iter().map(Vec::as_slice));
                    let w = tally.entry("bank-read");
                    match reached.iter().next() {
                        Some(&only) if reached.len() == 1 => {
                            *w.by_range.entry(ranges.label(only)).or_default() += 1;
                        }
                        _ => w.reads_across += 1,
                    }
                }
                Event::SetAdd(a) => {
                    let range = ranges.range_of(&set::key_bytes(a.element));
                    let reached = BTreeSet::from([range]);
                    tally.transaction("set", ranges, &reached, a.outcome, None);
                }
                Event::ListAppend(t) => {
                    let keys: Vec<Vec<u8>> = t
                        .ops
                        .iter()
                        .map(|op| match op {
                            MicroOp::R { key, .. } | MicroOp::Append { key, .. } => {
                                list_append::key_bytes(*key)
                            }
                        })
                        .collect();
                    let reached = ranges.reached(keys.iter().map(Vec::as_slice));
                    tally.transaction("list-append", ranges, &reached, t.outcome, t.code());
                }
                Event::SetFinal(_) | Event::Nemesis(_) => {}
            }
        }
        tally
    }

    fn entry(&mut self, workload: &str) -> &mut WorkloadShards {
        self.workloads.entry(workload.to_owned()).or_default()
    }

    fn transaction(
        &mut self,
        workload: &str,
        ranges: &Ranges,
        reached: &BTreeSet<usize>,
        outcome: WriteOutcome,
        code: Option<&str>,
    ) {
        let w = self.entry(workload);
        match reached.iter().next() {
            Some(&only) if reached.len() == 1 => {
                *w.by_range.entry(ranges.label(only)).or_default() += 1;
                w.one_range.add(outcome, code);
            }
            _ => w.several_ranges.add(outcome, code),
        }
    }

    /// The `cross-range` report: Ok when every transactional workload of the run (transfers,
    /// list-append) committed at least one transaction reaching several ranges, so the checkers
    /// judged two-phase commits; [`Verdict::Unknown`] (a failed run, never a pass) when one
    /// attempted none or committed none. `checked` is the number of those committed.
    pub fn cross_range_report(&self) -> Report {
        let mut committed = 0u64;
        let mut parts = Vec::new();
        let mut gaps = Vec::new();
        for name in TRANSACTIONAL {
            let Some(w) = self.workloads.get(name) else {
                continue;
            };
            let several = &w.several_ranges;
            let attempted = several.total();
            let all = attempted + w.one_range.total();
            committed += several.ok;
            parts.push(format!(
                "{name}: {} of {attempted} reaching several ranges committed ({} of {all} \
                 transactions reach several)",
                several.ok,
                pct(attempted, all)
            ));
            if several.ok == 0 {
                gaps.push(if attempted == 0 {
                    format!("{name} attempted no transaction reaching several ranges")
                } else {
                    format!(
                        "none of the {attempted} {name} transactions reaching several ranges \
                         committed: {}",
                        several.line()
                    )
                });
            }
        }
        let (verdict, explanation) = if parts.is_empty() {
            (
                Verdict::Unknown,
                "no transfers or list-append transactions: nothing reached several ranges"
                    .to_owned(),
            )
        } else if gaps.is_empty() {
            (
                Verdict::Ok,
                format!("two-phase commits exercised; {}", parts.join("; ")),
            )
        } else {
            (
                Verdict::Unknown,
                format!(
                    "two-phase commit not exercised, so no checker judged it: {}; {}",
                    gaps.join("; "),
                    parts.join("; ")
                ),
            )
        };
        Report {
            checker: CROSS_RANGE,
            verdict,
            checked: committed,
            explanation,
        }
    }

    /// One line per workload, for the printed summary and the docs.
    pub fn lines(&self) -> Vec<String> {
        let outcomes = Outcomes::line;
        self.workloads
            .iter()
            .map(|(name, w)| {
                let mut line = format!("{name:<14}");
                if w.one_range.total() > 0 {
                    let _ = write!(line, " one range: {};", outcomes(&w.one_range));
                }
                if w.several_ranges.total() > 0 {
                    let _ = write!(line, " several ranges: {};", outcomes(&w.several_ranges));
                }
                if w.reads_across > 0 {
                    let _ = write!(line, " {} reads across ranges;", w.reads_across);
                }
                let by: Vec<String> = w
                    .by_range
                    .iter()
                    .map(|(label, n)| format!("{label}: {n}"))
                    .collect();
                if !by.is_empty() {
                    let _ = write!(line, " by range: {}", by.join(", "));
                }
                line.trim_end_matches(';').to_owned()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{BankRead, ListAppendTxn, RegisterOp, SetAdd, TransferOp};

    fn ranges(text: &str) -> Ranges {
        Ranges::parse(text).unwrap()
    }

    #[test]
    fn split_keys_parse_and_route_keys_to_their_range() {
        let r = ranges("bank/4,la/,la/5,reg/,reg/5,set/");
        assert_eq!(r.len(), 7);
        assert!(r.is_sharded());
        assert_eq!(r.range_of(b"bank/0"), 0);
        assert_eq!(r.range_of(b"bank/3"), 0);
        assert_eq!(r.range_of(b"bank/4"), 1, "a split key starts its range");
        assert_eq!(r.range_of(b"bank/7"), 1);
        assert_eq!(r.range_of(b"la/17"), 2);
        assert_eq!(r.range_of(b"la/499"), 2);
        assert_eq!(r.range_of(b"la/5"), 3);
        assert_eq!(r.range_of(b"la/9"), 3);
        assert_eq!(r.range_of(b"reg/0"), 4);
        assert_eq!(r.range_of(b"reg/61"), 5);
        assert_eq!(r.range_of(b"set/1"), 6);
        assert_eq!(r.label(0), "g1 [, bank/4)");
        assert_eq!(r.label(3), "g4 [la/5, reg/)");
        assert_eq!(r.label(6), "g7 [set/, +∞)");
        assert_eq!(ranges("hex:6c612f35").range_of(b"la/5"), 1);
        let unsharded = Ranges::new(Vec::new()).unwrap();
        assert!(!unsharded.is_sharded());
        assert_eq!(unsharded.range_of(b"anything"), 0);
    }

    #[test]
    fn bad_split_keys_are_refused_naming_the_key() {
        let e = Ranges::parse("a,,c").unwrap_err();
        assert!(
            matches!(e, SplitKeysError::Empty { position: 2, .. }),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("split key 2") && text.contains("\"a\"") && text.contains("\"c\""),
            "{text}"
        );
        let e = Ranges::parse("a,").unwrap_err().to_string();
        assert!(e.contains("the end of the list"), "{e}");
        let e = Ranges::parse("b,a").unwrap_err();
        assert_eq!(
            e,
            SplitKeysError::NotIncreasing {
                position: 2,
                key: "\"a\"".into(),
                previous_position: 1,
                previous: "\"b\"".into(),
            }
        );
        assert!(
            Ranges::parse("a,a").is_err(),
            "equal keys are not increasing"
        );
        let e = Ranges::parse("a,hex:zz").unwrap_err();
        assert!(
            matches!(e, SplitKeysError::BadHex { position: 2, .. }),
            "{e:?}"
        );
        assert!(Ranges::parse("hex:").is_err(), "hex: without digits");
        assert!(Ranges::parse("hex:616").is_err(), "odd digits");
        let long = "k".repeat(MAX_SPLIT_KEY_BYTES + 1);
        assert!(matches!(
            Ranges::parse(&long).unwrap_err(),
            SplitKeysError::TooLong { position: 1, .. }
        ));
        let many: Vec<String> = (0..MAX_SHARDS).map(|i| format!("k{i:05}")).collect();
        assert!(matches!(
            Ranges::new(many).unwrap_err(),
            SplitKeysError::TooMany { .. }
        ));
    }

    #[test]
    fn the_tally_separates_transactions_reaching_one_range_from_several() {
        let r = ranges("bank/4,la/,la/5,reg/,reg/5,set/");
        let transfer = |from, to, outcome, code: Option<&str>| {
            Event::Transfer(TransferOp {
                process: 0,
                node: 0,
                from,
                to,
                amount: 1,
                invoke: 0,
                complete: Some(1),
                outcome,
                code: code.map(str::to_owned),
                commit_version: None,
            })
        };
        let txn = |keys: &[u64], outcome, code: Option<&str>| {
            Event::ListAppend(ListAppendTxn {
                process: 0,
                node: 0,
                read_version: Some(1),
                commit_version: None,
                invoke: 0,
                complete: Some(1),
                outcome,
                ops: keys
                    .iter()
                    .map(|&key| MicroOp::Append { key, element: key })
                    .collect(),
                code: code.map(str::to_owned),
            })
        };
        let events = vec![
            transfer(0, 3, WriteOutcome::Ok, None),
            transfer(5, 6, WriteOutcome::Failed, Some("CONFLICT")),
            transfer(1, 6, WriteOutcome::Failed, Some("UNAVAILABLE")),
            txn(&[1, 2], WriteOutcome::Ok, None),
            txn(&[1, 7], WriteOutcome::Failed, Some("UNAVAILABLE")),
            txn(&[12, 5], WriteOutcome::Unknown, None),
            Event::BankRead(BankRead {
                process: 0,
                node: 0,
                version: 1,
                invoke: 0,
                complete: 1,
                balances: Vec::new(),
            }),
            Event::Register(RegisterOp {
                process: 0,
                node: 0,
                key: 7,
                call: RegisterCall::Write(1),
                invoke: 0,
                complete: Some(1),
                outcome: RegisterOutcome::Ok,
            }),
            Event::SetAdd(SetAdd {
                process: 0,
                node: 0,
                element: 3,
                invoke: 0,
                complete: Some(1),
                outcome: WriteOutcome::Ok,
            }),
        ];
        let t = ShardTally::of(&events, &r);
        let bank = &t.workloads["bank-transfer"];
        assert_eq!((bank.one_range.ok, bank.one_range.failed), (1, 1));
        assert_eq!(bank.one_range.unavailable, 0);
        assert_eq!(
            (bank.several_ranges.failed, bank.several_ranges.unavailable),
            (1, 1)
        );
        assert_eq!(bank.by_range["g1 [, bank/4)"], 1);
        assert_eq!(bank.by_range["g2 [bank/4, la/)"], 1);
        let la = &t.workloads["list-append"];
        assert_eq!(la.one_range.ok, 1);
        assert_eq!(
            (la.several_ranges.unavailable, la.several_ranges.unknown),
            (1, 1)
        );
        assert_eq!(t.workloads["bank-read"].reads_across, 1);
        assert_eq!(t.workloads["register"].by_range["g6 [reg/5, set/)"], 1);
        assert_eq!(t.workloads["set"].by_range["g7 [set/, +∞)"], 1);
        let lines = t.lines().join("\n");
        assert!(
            lines.contains("several ranges: 0 committed, 1 refused (1 UNAVAILABLE)"),
            "{lines}"
        );
        assert!(
            lines.contains("one range: 1 committed, 1 refused (1 CONFLICT)"),
            "{lines}"
        );
        // Nothing reaching several ranges committed: two-phase commit was not exercised.
        let report = t.cross_range_report();
        assert_eq!(report.verdict, Verdict::Unknown, "{}", report.explanation);
        assert!(
            report
                .explanation
                .contains("none of the 1 bank-transfer transactions reaching several ranges"),
            "{}",
            report.explanation
        );
        // Once a transfer and a list-append transaction across ranges commit, it was.
        let mut events = events;
        events.push(transfer(2, 7, WriteOutcome::Ok, None));
        events.push(txn(&[0, 9], WriteOutcome::Ok, None));
        events.push(txn(&[3], WriteOutcome::Failed, None));
        let t = ShardTally::of(&events, &r);
        let report = t.cross_range_report();
        assert_eq!(report.verdict, Verdict::Ok, "{}", report.explanation);
        assert_eq!(report.checked, 2);
        assert!(
            report.explanation.contains(
                "bank-transfer: 1 of 2 reaching several ranges committed (50% of 4 transactions"
            ),
            "{}",
            report.explanation
        );
        let lines = t.lines().join("\n");
        assert!(
            lines.contains("one range: 1 committed, 1 refused (1 before the commit), 0 unknown"),
            "{lines}"
        );
    }

    #[test]
    fn a_run_without_transactions_across_ranges_is_not_a_pass() {
        let r = ranges("bank/4,la/,la/5");
        let only_one = vec![Event::Transfer(TransferOp {
            process: 0,
            node: 0,
            from: 0,
            to: 1,
            amount: 1,
            invoke: 0,
            complete: Some(1),
            outcome: WriteOutcome::Ok,
            code: None,
            commit_version: Some(5),
        })];
        let report = ShardTally::of(&only_one, &r).cross_range_report();
        assert_eq!(report.verdict, Verdict::Unknown);
        assert!(
            report
                .explanation
                .contains("bank-transfer attempted no transaction reaching several ranges"),
            "{}",
            report.explanation
        );
        let report = ShardTally::of(&[], &r).cross_range_report();
        assert_eq!(report.verdict, Verdict::Unknown);
    }
}
