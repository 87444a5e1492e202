//! The overlay against a model: a `BTreeMap` snapshot with the buffered writes applied in order,
//! read through a fake server that pages the snapshot like `snapshotGetRange` does.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

/// One buffered write, as the SDK offers them.
#[derive(Clone, Debug)]
enum Write {
    Set(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    ClearRange(Vec<u8>, Vec<u8>),
    SetVersionstampedValue(Vec<u8>),
}

/// Keys over a 3-letter alphabet, at most 2 long: writes, clears and reads collide often.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..3, 0..3)
}

fn every_key() -> Vec<Vec<u8>> {
    let mut keys = vec![Vec::new()];
    for a in 0u8..3 {
        keys.push(vec![a]);
        for b in 0u8..3 {
            keys.push(vec![a, b]);
        }
    }
    keys
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        3 => (key(), prop::collection::vec(any::<u8>(), 0..3)).prop_map(|(k, v)| Write::Set(k, v)),
        2 => key().prop_map(Write::Delete),
        2 => (key(), key()).prop_map(|(b, e)| Write::ClearRange(b, e)),
        1 => key().prop_map(Write::SetVersionstampedValue),
    ]
}

/// What a transaction should see: the snapshot with its writes applied.
#[derive(Debug)]
struct Model {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Keys holding a pending versionstamped value.
    unreadable: BTreeSet<Vec<u8>>,
}

impl Model {
    fn new(snapshot: &BTreeMap<Vec<u8>, Vec<u8>>, writes: &[Write]) -> Self {
        let mut model = Model {
            data: snapshot.clone(),
            unreadable: BTreeSet::new(),
        };
        for w in writes {
            match w {
                Write::Set(k, v) => {
                    model.unreadable.remove(k);
                    model.data.insert(k.clone(), v.clone());
                }
                Write::Delete(k) => {
                    model.unreadable.remove(k);
                    model.data.remove(k);
                }
                Write::ClearRange(b, e) => {
                    model.unreadable.retain(|k| !within(k, b, e));
                    model.data.retain(|k, _| !within(k, b, e));
                }
                Write::SetVersionstampedValue(k) => {
                    model.data.remove(k);
                    model.unreadable.insert(k.clone());
                }
            }
        }
        model
    }
}

fn overlay(writes: &[Write]) -> Overlay {
    let mut overlay = Overlay::default();
    for w in writes {
        match w {
            Write::Set(k, v) => overlay.set(k, v),
            Write::Delete(k) => overlay.delete(k),
            Write::ClearRange(b, e) => overlay.clear_range(b, e),
            Write::SetVersionstampedValue(k) => overlay.set_versionstamped_value(k),
        }
    }
    overlay
}

/// `snapshotGetRange` over `snapshot`: `has_more` when another key of the range follows the page.
fn serve(snapshot: &BTreeMap<Vec<u8>, Vec<u8>>, page: &PageRequest) -> (Vec<KeyValue>, bool) {
    let mut pairs: Vec<_> = snapshot
        .iter()
        .filter(|(k, _)| {
            let after = if page.inclusive {
                **k >= page.cursor
            } else {
                **k > page.cursor
            };
            after && **k < page.end
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let limit = usize::try_from(page.limit).expect("positive page limit");
    assert!(
        limit > 0,
        "a page of zero keys would mean 'unlimited' on the wire"
    );
    let more = pairs.len() > limit;
    pairs.truncate(limit);
    (pairs, more)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A point read answered by the overlay (or by the snapshot on a miss) is the model's.
    #[test]
    fn point_reads_see_the_snapshot_with_the_writes_applied(
        snapshot in prop::collection::btree_map(key(), prop::collection::vec(any::<u8>(), 0..3), 0..8),
        writes in prop::collection::vec(write(), 0..10),
    ) {
        let model = Model::new(&snapshot, &writes);
        let overlay = overlay(&writes);
        for k in every_key() {
            let seen = overlay.local(&k);
            if model.unreadable.contains(&k) {
                prop_assert_eq!(seen, Local::Unreadable, "key {:?}", k);
                continue;
            }
            let value = match seen {
                Local::Value(v) => v,
                Local::Miss => snapshot.get(&k).cloned(),
                Local::Unreadable => {
                    return Err(TestCaseError::fail(format!("key {k:?} is readable")));
                }
            };
            prop_assert_eq!(value.as_ref(), model.data.get(&k), "key {:?}", k);
        }
    }

    /// A range read merged page by page is the model's range, cut at `limit`; its conflict range
    /// covers every key the answer depends on and nothing outside `[begin, end)`.
    #[test]
    fn range_reads_see_the_snapshot_with_the_writes_applied(
        snapshot in prop::collection::btree_map(key(), prop::collection::vec(any::<u8>(), 0..3), 0..8),
        writes in prop::collection::vec(write(), 0..10),
        (begin, end) in (key(), key()),
        limit in 0usize..5,
        page_size in 1usize..4,
    ) {
        let model = Model::new(&snapshot, &writes);
        let merge = overlay(&writes).range(&begin, &end, limit, page_size);
        let pending = model.unreadable.iter().find(|k| within(k, &begin, &end));
        let mut merge = match (merge, pending) {
            (Err(k), Some(_)) => {
                prop_assert!(model.unreadable.contains(&k) && within(&k, &begin, &end));
                return Ok(());
            }
            (Ok(merge), None) => merge,
            (merge, pending) => {
                return Err(TestCaseError::fail(format!(
                    "range answered {:?}, pending versionstamped key {pending:?}",
                    merge.err()
                )));
            }
        };
        let mut pages = 0;
        while let Some(page) = merge.next_page() {
            pages += 1;
            prop_assert!(pages <= 64, "the merge does not terminate");
            let (pairs, more) = serve(&snapshot, &page);
            merge.absorb(pairs, more);
        }
        let (got, conflict) = merge.finish();

        let in_range: Vec<_> = if begin < end {
            model.data.range(begin.clone()..end.clone()).map(|(k, v)| (k.clone(), v.clone())).collect()
        } else {
            Vec::new()
        };
        let expected: Vec<_> = in_range.into_iter().take(if limit == 0 { usize::MAX } else { limit }).collect();
        prop_assert_eq!(&got, &expected);

        // The answer depends on [begin, end), or only up to its last key when it holds `limit`
        // keys (keys after it cannot change the first `limit`).
        let needed_end = match got.last() {
            Some((k, _)) if limit > 0 && got.len() == limit => key_after(k),
            _ => end.clone(),
        };
        match conflict {
            None => prop_assert!(begin >= needed_end, "no conflict range recorded"),
            Some(Range { start: b, end: e }) => {
                prop_assert_eq!(&b, &begin);
                prop_assert!(e >= needed_end && e <= end, "conflict end {:?}, needed {:?}", e, needed_end);
            }
        }
    }
}
