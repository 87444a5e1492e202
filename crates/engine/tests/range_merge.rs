//! Range reads across shards (docs/sharding.md §5.3): the merge of bounded scans
//! (`Engine::scan`) over a store cut at random split points gives exactly the page
//! `Engine::get_range` gives over the whole store, and both equal the reference walk over a
//! model, for random keys, histories (overwrites and deletes at several versions), split points
//! and WIRE §3 requests. Hand-written cases pin the boundaries: a split at `lo` or at `hi`, an
//! offset that skips whole ranges, a limit reached exactly at a range's end, the byte budget
//! across ranges, bad versions and ranges that leave a gap.

use std::cell::RefCell;
use std::collections::BTreeMap;

use dolmen_engine::range::walk;
use dolmen_engine::{
    merge_range, ByteBudget, Command, Durability, Engine, EngineOptions, MergeError, Mutation,
    RangeBounds, RangePage, RangeSpec, ReadError, ScanLimits, ScanPage, Transaction, Version,
};
use proptest::prelude::*;
use tempfile::TempDir;

const CF: &str = "default";
/// A second column family holding the same keys with other values: no scan may see them.
const OTHER_CF: &str = "users";

/// Every version of one key, oldest first (`None` = deleted).
type History = Vec<(Version, Option<Vec<u8>>)>;
/// A range of the table: `(start, end)`, `end = None` for +∞.
type Range = (Vec<u8>, Option<Vec<u8>>);
/// A set (`Some`) or a delete (`None`) of one key.
type Write = (Vec<u8>, Option<Vec<u8>>);
/// What the merge answered.
type Merged = Result<RangePage, MergeError<ReadError>>;

/// One engine and the model of what it holds.
struct Store {
    _dir: TempDir,
    engine: Engine,
    /// Every version of each key of `CF`, oldest first (`None` = deleted).
    model: BTreeMap<Vec<u8>, History>,
    applied: Version,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(&EngineOptions::new(
            dir.path(),
            vec![CF.into(), OTHER_CF.into()],
        ))
        .unwrap();
        Self {
            _dir: dir,
            engine,
            model: BTreeMap::new(),
            applied: 0,
        }
    }

    /// Commits sets (`Some`) and deletes (`None`) of `CF` keys at the next version, with the
    /// same keys set in `OTHER_CF`.
    fn commit(&mut self, writes: &[Write]) -> Version {
        let version = self.applied + 1;
        let mut mutations = Vec::new();
        for (key, value) in writes {
            mutations.push(match value {
                Some(value) => Mutation::Set {
                    cf: CF.into(),
                    key: key.clone(),
                    value: value.clone(),
                },
                None => Mutation::Delete {
                    cf: CF.into(),
                    key: key.clone(),
                },
            });
            mutations.push(Mutation::Set {
                cf: OTHER_CF.into(),
                key: key.clone(),
                value: b"other".to_vec(),
            });
            let versions = self.model.entry(key.clone()).or_default();
            if versions.last().is_some_and(|(v, _)| *v == version) {
                versions.pop(); // the last write of a key in one commit wins
            }
            versions.push((version, value.clone()));
        }
        let command = Command::Commit(Transaction {
            read_version: None,
            mutations,
            read_conflicts: Vec::new(),
            idempotency: None,
            stamp: None,
        });
        let outcomes = self
            .engine
            .apply_batch(&[(version, command)], Durability::Buffered, &[])
            .unwrap();
        assert!(
            matches!(outcomes[0], dolmen_engine::Outcome::Committed { .. }),
            "{outcomes:?}"
        );
        self.applied = version;
        version
    }

    /// Sets each key to `v` in one commit.
    fn load(keys: &[&str]) -> Self {
        let mut store = Self::new();
        let writes: Vec<_> = keys
            .iter()
            .map(|k| (k.as_bytes().to_vec(), Some(b"v".to_vec())))
            .collect();
        store.commit(&writes);
        store
    }

    /// The live pairs of `CF` at `version`, ascending.
    fn visible(&self, version: Version) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.model
            .iter()
            .filter_map(|(key, versions)| {
                let (_, value) = versions.iter().rev().find(|(v, _)| *v <= version)?;
                Some((key.clone(), value.clone()?))
            })
            .collect()
    }
}

/// The ranges of a table split at `splits` (sorted, deduplicated; an empty split is the start).
fn ranges(splits: &[Vec<u8>]) -> Vec<Range> {
    let mut points: Vec<Vec<u8>> = splits.iter().filter(|s| !s.is_empty()).cloned().collect();
    points.sort();
    points.dedup();
    let starts = std::iter::once(Vec::new()).chain(points.iter().cloned());
    let ends = points
        .iter()
        .cloned()
        .map(Some)
        .chain(std::iter::once(None));
    starts.zip(ends).collect()
}

/// The ranges that overlap the request (the one holding `lo` when it is empty): what the
/// routing table will hand the merge.
fn overlapping(all: &[Range], bounds: &RangeBounds) -> Vec<Range> {
    let hi = bounds.hi.clone().max(bounds.lo.clone());
    all.iter()
        .filter(|(start, end)| {
            let after_lo = end.as_ref().is_none_or(|end| *end > bounds.lo);
            if bounds.is_empty() {
                *start <= bounds.lo && after_lo
            } else {
                *start < hi && after_lo
            }
        })
        .cloned()
        .collect()
}

/// One scan the merge asked for.
#[derive(Debug)]
struct Asked {
    start: Vec<u8>,
    end: Vec<u8>,
    limits: ScanLimits,
    reply: ScanPage,
}

/// The merged page over `ranges` at `version`, with the scans it asked for. Checks on the way
/// that every scanned interval lies in the request and follows the previous one.
fn merged(
    engine: &Engine,
    spec: &RangeSpec,
    ranges: &[Range],
    version: Version,
) -> (Merged, Vec<Asked>) {
    let asked = RefCell::new(Vec::<Asked>::new());
    let bounds = RangeBounds::from_spec(spec);
    let result = merge_range(
        spec,
        ranges.iter().map(|(s, e)| (s.as_slice(), e.as_deref())),
        |start, end, limits| {
            let mut asked = asked.borrow_mut();
            let expected_start = asked.last().map_or(&bounds.lo, |a| &a.end);
            assert_eq!(start, expected_start.as_slice(), "scans are contiguous");
            assert!(start <= end, "a scanned interval is ordered");
            assert!(
                end <= bounds.hi.as_slice() || end == bounds.lo.as_slice(),
                "a scan stays inside the request"
            );
            let reply = engine.scan(CF, start, end, version, limits)?;
            asked.push(Asked {
                start: start.to_vec(),
                end: end.to_vec(),
                limits: limits.clone(),
                reply: reply.clone(),
            });
            Ok(reply)
        },
    );
    (result, asked.into_inner())
}

/// A request over the whole keyspace: no offset, no limit, no budget.
fn everything() -> RangeSpec {
    RangeSpec {
        begin_key: Vec::new(),
        end_key: vec![0xFF],
        begin_or_equal: true,
        end_or_equal: false,
        begin_offset: 0,
        end_offset: 0,
        limit: None,
        max_bytes: None,
    }
}

fn spec(begin: &str, end: &str) -> RangeSpec {
    RangeSpec {
        begin_key: begin.as_bytes().to_vec(),
        end_key: end.as_bytes().to_vec(),
        ..everything()
    }
}

fn splits(points: &[&str]) -> Vec<Range> {
    ranges(
        &points
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect::<Vec<_>>(),
    )
}

fn keys_of(page: &RangePage) -> Vec<String> {
    page.items
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// The merged page, checked against `get_range` on the same store.
fn merged_page(store: &Store, spec: &RangeSpec, ranges: &[Range]) -> RangePage {
    let (page, _) = merged(&store.engine, spec, ranges, store.applied);
    let page = page.unwrap();
    assert_eq!(
        page,
        store.engine.get_range(CF, spec, store.applied).unwrap(),
        "{spec:?}"
    );
    page
}

#[test]
fn a_split_exactly_at_lo_starts_the_scan_at_that_range() {
    let store = Store::load(&["a", "b", "c", "c\0", "d", "e", "f"]);
    // lo = "c": the range before it is not asked.
    let (page, asked) = merged(
        &store.engine,
        &spec("c", "e"),
        &splits(&["c"]),
        store.applied,
    );
    assert_eq!(keys_of(&page.unwrap()), ["c", "c\0", "d"]);
    assert_eq!(asked.len(), 1);
    assert_eq!(
        (asked[0].start.as_slice(), asked[0].end.as_slice()),
        (&b"c"[..], &b"e"[..])
    );
    // lo = "c\0" (begin "c" excluded), split there and just before it.
    let mut after_c = spec("c", "e");
    after_c.begin_or_equal = false;
    for points in [&["c\0"][..], &["c"], &["c", "c\0"]] {
        let page = merged_page(&store, &after_c, &splits(points));
        assert_eq!(keys_of(&page), ["c\0", "d"], "splits {points:?}");
    }
}

#[test]
fn a_split_exactly_at_hi_ends_the_scan_with_the_range_before_it() {
    let store = Store::load(&["a", "b", "c", "d", "d\0", "e"]);
    // hi = "d" (end excluded): the range starting at "d" is not asked.
    let (page, asked) = merged(
        &store.engine,
        &spec("a", "d"),
        &splits(&["b", "d"]),
        store.applied,
    );
    assert_eq!(keys_of(&page.unwrap()), ["a", "b", "c"]);
    assert_eq!(asked.len(), 2);
    // hi = "d\0" (end "d" included): "d" is the last key, in the range [d, d\0).
    let mut with_d = spec("a", "d");
    with_d.end_or_equal = true;
    for points in [&["d"][..], &["d\0"], &["d", "d\0"]] {
        let page = merged_page(&store, &with_d, &splits(points));
        assert_eq!(keys_of(&page), ["a", "b", "c", "d"], "splits {points:?}");
    }
    // end_offset moves hi: "e" with offset −1 is "d".
    let mut moved = spec("a", "e");
    moved.end_offset = -1;
    assert_eq!(
        keys_of(&merged_page(&store, &moved, &splits(&["d"]))),
        ["a", "b", "c"]
    );
}

#[test]
fn an_offset_that_skips_whole_ranges_is_counted_across_them() {
    let store = Store::load(&["a", "b", "c", "d", "e", "f", "g"]);
    let mut skip4 = everything();
    skip4.begin_offset = 4;
    let (page, asked) = merged(
        &store.engine,
        &skip4,
        &splits(&["c", "e", "f"]),
        store.applied,
    );
    assert_eq!(keys_of(&page.unwrap()), ["e", "f", "g"]);
    let skips: Vec<(usize, usize)> = asked
        .iter()
        .map(|a| (a.limits.skip, a.reply.skipped))
        .collect();
    // [, c) drops a, b; [c, e) drops c, d; nothing is left to drop after.
    assert_eq!(skips, [(4, 2), (2, 2), (0, 0), (0, 0)]);
    // An offset past every key: empty, no more.
    skip4.begin_offset = 9;
    let page = merged_page(&store, &skip4, &splits(&["c", "e", "f"]));
    assert_eq!((page.items.len(), page.has_more), (0, false));
}

#[test]
fn a_limit_reached_at_a_range_end_says_has_more_only_if_a_later_range_holds_a_key() {
    let store = Store::load(&["a", "b", "c", "e", "f"]);
    let mut three = everything();
    three.limit = Some(3);
    // The first range ends after exactly 3 keys; the next holds "e": has_more.
    let (page, asked) = merged(&store.engine, &three, &splits(&["d"]), store.applied);
    let page = page.unwrap();
    assert_eq!(
        (keys_of(&page), page.has_more),
        (vec!["a".into(), "b".into(), "c".into()], true)
    );
    assert_eq!(asked[0].limits.ask, Some(4));
    assert_eq!(asked[1].limits.ask, Some(1), "one key tells has_more");
    // The next range is empty, the one after holds a key: has_more still.
    let page = merged_page(&store, &three, &splits(&["d", "d\0", "e"]));
    assert!(page.has_more);
    // No later key in the request: has_more = false, every range asked.
    let mut to_d = spec("", "d");
    to_d.limit = Some(3);
    let (page, asked) = merged(&store.engine, &to_d, &splits(&["d"]), store.applied);
    let page = page.unwrap();
    assert_eq!((page.items.len(), page.has_more), (3, false));
    assert_eq!(asked.len(), 1);
    let mut to_e = spec("", "e");
    to_e.limit = Some(3);
    let (page, asked) = merged(&store.engine, &to_e, &splits(&["d"]), store.applied);
    let page = page.unwrap();
    assert_eq!((page.items.len(), page.has_more), (3, false));
    assert_eq!(asked.len(), 2, "the empty rest of the request is asked too");
    assert_eq!(
        page,
        store.engine.get_range(CF, &to_e, store.applied).unwrap()
    );
    // Limit 0: no item, has_more iff a key is in range.
    let mut zero = everything();
    zero.limit = Some(0);
    let page = merged_page(&store, &zero, &splits(&["d"]));
    assert_eq!((page.items.len(), page.has_more), (0, true));
}

#[test]
fn the_byte_budget_carries_across_ranges_and_the_first_pair_always_goes_in() {
    let mut store = Store::new();
    // Pairs of 3 bytes (`a`..`d`), then a 20-byte one (`e`).
    store.commit(&[
        (b"a".to_vec(), Some(b"aa".to_vec())),
        (b"b".to_vec(), Some(b"bb".to_vec())),
        (b"c".to_vec(), Some(b"cc".to_vec())),
        (b"d".to_vec(), Some(b"dd".to_vec())),
        (b"e".to_vec(), Some(vec![b'e'; 19])),
    ]);
    let mut budget = everything();
    budget.max_bytes = Some(7);
    // Two pairs fit in the first range [, c); the third, first of [c, ..), does not.
    let (page, asked) = merged(&store.engine, &budget, &splits(&["c"]), store.applied);
    let page = page.unwrap();
    assert_eq!(
        (keys_of(&page), page.has_more),
        (vec!["a".into(), "b".into()], true)
    );
    assert_eq!(
        asked[1].limits.budget,
        ByteBudget {
            max: Some(7),
            spent: 6
        }
    );
    assert!(asked[1].reply.cut && asked[1].reply.pairs.is_empty());
    assert_eq!(
        page,
        store.engine.get_range(CF, &budget, store.applied).unwrap()
    );
    // An offset drops the first range's keys: the first pair of the page, in the next range,
    // goes in whatever its size.
    budget.begin_offset = 4;
    let page = merged_page(&store, &budget, &splits(&["c", "e"]));
    assert_eq!((keys_of(&page), page.has_more), (vec!["e".into()], false));
}

#[test]
fn a_bad_version_fails_the_merge_as_it_fails_get_range_even_for_an_empty_request() {
    let store = Store::load(&["a", "b"]);
    let horizon = store.applied;
    store
        .engine
        .apply_batch(
            &[(store.applied, Command::Compact { horizon })],
            Durability::Buffered,
            &[],
        )
        .unwrap();
    let empty = spec("b", ""); // a present but empty end key
    for (request, version) in [
        (&everything(), 0),
        (&empty, 0),
        (&empty, 99),
        (&everything(), 99),
    ] {
        let (page, asked) = merged(&store.engine, request, &splits(&["b"]), version);
        let single = store.engine.get_range(CF, request, version);
        match (page, single) {
            (Err(MergeError::Scan(ReadError::TooOld { .. })), Err(ReadError::TooOld { .. }))
                if version == 0 => {}
            (
                Err(MergeError::Scan(ReadError::FutureVersion { .. })),
                Err(ReadError::FutureVersion { .. }),
            ) if version == 99 => {}
            other => panic!("at {version}: {other:?}"),
        }
        assert!(asked.is_empty(), "the failed scan is the only one asked");
    }
    // At a good version the empty request is empty, after asking the range holding `lo`.
    let (page, asked) = merged(&store.engine, &empty, &splits(&["b"]), store.applied);
    assert_eq!(page.unwrap(), RangePage::default());
    assert_eq!(asked.len(), 1);
    assert_eq!(
        (asked[0].start.as_slice(), asked[0].end.as_slice()),
        (&b"b"[..], &b"b"[..])
    );
}

#[test]
fn ranges_that_leave_a_gap_are_an_error_naming_the_first_uncovered_key() {
    let store = Store::load(&["a", "b", "c", "d"]);
    let at = |ranges: &[Range], request: &RangeSpec| match merged(
        &store.engine,
        request,
        ranges,
        store.applied,
    )
    .0
    {
        Err(MergeError::Gap { at }) => at,
        other => panic!("{other:?}"),
    };
    let owned =
        |s: &str, e: Option<&str>| (s.as_bytes().to_vec(), e.map(|e| e.as_bytes().to_vec()));
    let hole = [owned("", Some("b")), owned("c", None)];
    assert_eq!(at(&hole, &everything()), b"b");
    let short = [owned("", Some("b"))];
    assert_eq!(at(&short, &everything()), b"b");
    let late = [owned("b", None)];
    assert_eq!(at(&late, &spec("a", "c")), b"a");
    assert_eq!(at(&[], &spec("a", "c")), b"a");
    assert_eq!(
        at(&[], &spec("a", "")),
        b"a",
        "an empty request needs the range of lo"
    );
    let message = MergeError::<ReadError>::Gap { at: b"b".to_vec() }.to_string();
    assert!(
        message.contains("[62]") && message.contains("without a gap"),
        "{message}"
    );
}

#[test]
fn scan_drops_skip_then_returns_at_most_ask_within_the_budget() {
    let mut store = Store::load(&["a", "b", "c", "d", "e"]);
    store.commit(&[(b"c".to_vec(), None)]); // a tombstone inside the interval
    let v = store.applied;
    let scan = |start: &str, end: &str, skip, ask, budget| {
        let limits = ScanLimits { skip, ask, budget };
        let page = store
            .engine
            .scan(CF, start.as_bytes(), end.as_bytes(), v, &limits)
            .unwrap();
        let keys: Vec<String> = page
            .pairs
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into())
            .collect();
        (page.skipped, keys, page.cut)
    };
    let none = ByteBudget::default();
    assert_eq!(
        scan("b", "e", 0, None, none),
        (0, vec!["b".into(), "d".into()], false)
    );
    assert_eq!(scan("b", "e", 1, None, none), (1, vec!["d".into()], false));
    assert_eq!(scan("b", "e", 5, None, none), (2, vec![], false));
    assert_eq!(
        scan("a", "z", 1, Some(2), none),
        (1, vec!["b".into(), "d".into()], false)
    );
    assert_eq!(
        scan("a", "z", 1, Some(0), none),
        (1, vec![], false),
        "ask 0 still skips"
    );
    assert_eq!(
        scan("e", "b", 0, None, none),
        (0, vec![], false),
        "end ≤ start is empty"
    );
    let tight = ByteBudget {
        max: Some(4),
        spent: 0,
    };
    assert_eq!(
        scan("a", "z", 0, None, tight),
        (0, vec!["a".into(), "b".into()], true)
    );
    let spent = ByteBudget {
        max: Some(4),
        spent: 3,
    };
    assert_eq!(
        scan("a", "z", 0, None, spent),
        (0, vec![], true),
        "a continued page is not empty"
    );
    // The other column family holds the same keys: none of its pairs appear.
    assert!(store
        .engine
        .scan(CF, b"", b"\xFF", v, &ScanLimits::default())
        .unwrap()
        .pairs
        .iter()
        .all(|(_, v)| v == b"v"));
}

// ---- The property test ----

/// Stored keys (non-empty: WIRE §4): the boundary bytes, shared prefixes, anything short.
fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            b"\x00".to_vec(),
            b"\x00\x00".to_vec(),
            b"\x01".to_vec(),
            b"a".to_vec(),
            b"a\x00".to_vec(),
            b"a\x00\x00".to_vec(),
            b"a\xFF".to_vec(),
            b"ab".to_vec(),
            b"abc".to_vec(),
            b"b".to_vec(),
            b"\xFF".to_vec(),
            b"\xFF\x00".to_vec(),
            b"\xFF\xFF".to_vec(),
        ]),
        prop::collection::vec(prop::sample::select(vec![0x00, b'a', b'b', 0xFF]), 1..4),
        prop::collection::vec(any::<u8>(), 1..4),
    ]
}

/// Request keys and split points: stored keys and the empty key.
fn bound_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![1 => Just(Vec::new()), 6 => key_strategy()]
}

fn spec_strategy() -> impl Strategy<Value = RangeSpec> {
    (
        bound_strategy(),
        prop_oneof![4 => bound_strategy(), 1 => Just(vec![0xFF])],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![3 => Just(0usize), 2 => 1usize..6],
        prop_oneof![3 => Just(0i64), 4 => -3i64..=3, 1 => -600i64..=600],
        // At the wire: absent → 1000, ≤ 0 → unlimited (None); here also `Some(0)`.
        prop_oneof![
            Just(None),
            Just(Some(0)),
            (1usize..6).prop_map(Some),
            Just(Some(1000))
        ],
        prop_oneof![2 => Just(None), 1 => (1usize..20).prop_map(Some)],
    )
        .prop_map(
            |(
                begin_key,
                end_key,
                begin_or_equal,
                end_or_equal,
                begin_offset,
                end_offset,
                limit,
                max_bytes,
            )| {
                RangeSpec {
                    begin_key,
                    end_key,
                    begin_or_equal,
                    end_or_equal,
                    begin_offset,
                    end_offset,
                    limit,
                    max_bytes,
                }
            },
        )
}

/// A split point: a key, or one of the request's bounds (or its successor).
#[derive(Clone, Debug)]
enum Split {
    Key(Vec<u8>),
    Lo,
    Hi,
    AfterLo,
}

fn split_strategy() -> impl Strategy<Value = Split> {
    prop_oneof![
        4 => bound_strategy().prop_map(Split::Key),
        1 => Just(Split::Lo),
        1 => Just(Split::Hi),
        1 => Just(Split::AfterLo),
    ]
}

/// One commit: sets and deletes (a third of the writes).
fn commit_strategy() -> impl Strategy<Value = Vec<Write>> {
    prop::collection::vec(
        (
            key_strategy(),
            prop_oneof![1 => Just(None), 2 => prop::collection::vec(any::<u8>(), 0..6).prop_map(Some)],
        ),
        1..6,
    )
}

/// A read: the request, the split points, the version (mod applied + 1), and whether the merge
/// gets the whole table or only the overlapping ranges.
type Read = (RangeSpec, Vec<Split>, u64, bool);

fn read_strategy() -> impl Strategy<Value = Read> {
    (
        spec_strategy(),
        prop::collection::vec(split_strategy(), 0..=6),
        any::<u64>(),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_merged_page_over_any_split_equals_get_range(
        history in prop::collection::vec(commit_strategy(), 1..8),
        reads in prop::collection::vec(read_strategy(), 1..12),
    ) {
        let mut store = Store::new();
        for writes in &history {
            store.commit(writes);
        }
        for (spec, picks, version, whole_table) in reads {
            let version = version % (store.applied + 1);
            let bounds = RangeBounds::from_spec(&spec);
            let points: Vec<Vec<u8>> = picks
                .iter()
                .map(|pick| match pick {
                    Split::Key(key) => key.clone(),
                    Split::Lo => bounds.lo.clone(),
                    Split::Hi => bounds.hi.clone(),
                    Split::AfterLo => [bounds.lo.as_slice(), &[0]].concat(),
                })
                .collect();
            let all = ranges(&points);
            let given = if whole_table { all.clone() } else { overlapping(&all, &bounds) };
            let want = walk(&spec, store.visible(version));
            let single = store.engine.get_range(CF, &spec, version).unwrap();
            prop_assert_eq!(&single, &want, "get_range against the model: {:?}", spec);
            let (page, asked) = merged(&store.engine, &spec, &given, version);
            let page = page.unwrap();
            prop_assert_eq!(&page, &want, "merged over {:?}: {:?}; asked {:?}", all, spec, asked);
            prop_assert!(asked.len() <= given.len());
        }
    }

    #[test]
    fn a_scan_is_the_live_keys_of_its_interval_after_skip_within_ask_and_budget(
        history in prop::collection::vec(commit_strategy(), 1..8),
        scans in prop::collection::vec(
            (bound_strategy(), bound_strategy(), 0usize..5, prop::option::of(0usize..5),
             prop::option::of(1usize..20), 0usize..6, any::<u64>()),
            1..12,
        ),
    ) {
        let mut store = Store::new();
        for writes in &history {
            store.commit(writes);
        }
        for (start, end, skip, ask, max, spent, version) in scans {
            let version = version % (store.applied + 1);
            let limits = ScanLimits { skip, ask, budget: ByteBudget { max, spent } };
            let page = store.engine.scan(CF, &start, &end, version, &limits).unwrap();
            // The model: live keys of [start, end), then skip, ask and the budget by hand.
            let live: Vec<_> = store
                .visible(version)
                .into_iter()
                .filter(|(k, _)| start <= *k && *k < end)
                .collect();
            let skipped = skip.min(live.len());
            let mut want = ScanPage { skipped, ..ScanPage::default() };
            let mut bytes = spent;
            for (key, value) in live.into_iter().skip(skipped) {
                if ask.is_some_and(|ask| want.pairs.len() >= ask) {
                    break;
                }
                let size = key.len() + value.len();
                if max.is_some_and(|max| bytes > 0 && bytes + size > max) {
                    want.cut = true;
                    break;
                }
                bytes += size;
                want.pairs.push((key, value));
            }
            prop_assert_eq!(page, want);
        }
    }
}
