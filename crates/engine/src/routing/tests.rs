//! Every rule of a routing table and its error; tables from settings (§4.4, §4.5); properties
//! of `route`, `overlapping` and `pieces` against a linear model, and the encodings' round
//! trips and refusals.

use proptest::prelude::*;

use super::*;
use crate::encoding::{decode_descriptor, decode_routing, encode_descriptor, encode_routing};
use crate::encoding::{DecodeError, FORMAT_V1};

/// A piece of an interval: the group whose range it lies in, and the piece `[from, to)`.
type Piece<'a> = (u64, (&'a [u8], &'a [u8]));
/// A change that breaks one rule of a descriptor, the error it gets and its message.
type BrokenRule = (fn(&mut RangeDescriptor), DescriptorError, &'static str);

fn range(group: u64, start: &[u8], end: Option<&[u8]>) -> RangeDescriptor {
    RangeDescriptor {
        group,
        start: start.to_vec(),
        end: end.map(<[u8]>::to_vec),
        epoch: 1,
        voters: vec![1, 2, 3],
    }
}

/// `["", "g") ["g", "p") ["p", +∞)` on groups 1, 2, 3.
fn three() -> Vec<RangeDescriptor> {
    vec![
        range(1, b"", Some(b"g")),
        range(2, b"g", Some(b"p")),
        range(3, b"p", None),
    ]
}

fn three_nodes(replicas: usize) -> Placement {
    Placement::new(vec![10, 11, 12], replicas).unwrap()
}

fn starts(table: &RoutingTable) -> Vec<Vec<u8>> {
    table.ranges().iter().map(|d| d.start.clone()).collect()
}

#[test]
fn a_valid_table_is_accepted_and_routes_each_key_to_its_range() {
    let table = RoutingTable::new(three()).unwrap();
    for (key, group) in [
        (&b""[..], 1),
        (b"a", 1),
        (b"f\xff\xff", 1),
        (b"g", 2),
        (b"g\x00", 2),
        (b"o", 2),
        (b"p", 3),
        (b"\xff\xff\xff", 3),
    ] {
        assert_eq!(table.route(key).group, group, "{}", key.escape_ascii());
        assert!(table.route(key).contains(key));
    }
    assert_eq!(table.descriptor(2), Some(&three()[1]));
    assert_eq!(table.descriptor(4), None);
    let one = RoutingTable::new(vec![range(7, b"", None)]).unwrap();
    assert_eq!(one.route(b"anything").group, 7);
}

#[test]
fn an_empty_table_is_refused() {
    assert_eq!(RoutingTable::new(Vec::new()), Err(RoutingError::NoRanges));
}

#[test]
fn a_table_that_does_not_start_at_the_empty_key_is_refused() {
    let mut ranges = three();
    ranges[0].start = b"a".to_vec();
    let err = RoutingTable::new(ranges).unwrap_err();
    assert_eq!(
        err,
        RoutingError::FirstStart {
            group: 1,
            start: b"a".to_vec()
        }
    );
    assert_eq!(
        err.to_string(),
        "range 0 (group 1) starts at \"a\"; the first range must start at the empty key \"\""
    );
}

#[test]
fn a_gap_between_ranges_is_refused_naming_both() {
    let mut ranges = three();
    ranges[1].start = b"h".to_vec();
    let err = RoutingTable::new(ranges).unwrap_err();
    assert!(matches!(
        err,
        RoutingError::Gap {
            index: 1,
            group: 2,
            previous_group: 1,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "range 1 (group 2) starts at \"h\", after range 0 (group 1) ends at \"g\": the keys in \
         between belong to no range"
    );
}

#[test]
fn overlapping_or_unsorted_ranges_are_refused() {
    let mut ranges = three();
    ranges[2].start = b"o".to_vec();
    let err = RoutingTable::new(ranges).unwrap_err();
    assert!(matches!(
        err,
        RoutingError::Overlap {
            index: 2,
            group: 3,
            previous_group: 2,
            ..
        }
    ));
    assert!(
        err.to_string().contains("overlap or are not in key order"),
        "{err}"
    );

    // Out of key order: ["", "p"), ["p", +∞), ["g", "p").
    let ranges = vec![
        range(1, b"", Some(b"p")),
        range(3, b"p", None),
        range(2, b"g", Some(b"p")),
    ];
    let err = RoutingTable::new(ranges).unwrap_err();
    assert!(
        matches!(
            err,
            RoutingError::Overlap {
                index: 2,
                previous_end: None,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "range 2 (group 2) starts at \"g\", before range 1 (group 3) ends at +∞: the ranges \
         overlap or are not in key order"
    );
}

#[test]
fn a_table_whose_last_range_is_bounded_is_refused() {
    let mut ranges = three();
    ranges[2].end = Some(b"z".to_vec());
    let err = RoutingTable::new(ranges).unwrap_err();
    assert_eq!(
        err,
        RoutingError::LastEnd {
            index: 2,
            group: 3,
            end: b"z".to_vec()
        }
    );
    assert!(err.to_string().contains("must end at +∞"), "{err}");
}

#[test]
fn two_ranges_of_one_group_are_refused() {
    let mut ranges = three();
    ranges[2].group = 1;
    let err = RoutingTable::new(ranges).unwrap_err();
    assert_eq!(
        err,
        RoutingError::DuplicateGroup {
            group: 1,
            first: 0,
            second: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "ranges 0 and 2 both belong to group 1; a data group owns one range"
    );
}

#[test]
fn each_descriptor_rule_is_refused_naming_the_range() {
    let cases: Vec<BrokenRule> = vec![
        (
            |d| d.group = 0,
            DescriptorError::MetadataGroup,
            "range 1: group 0 is the metadata group and owns no key range",
        ),
        (
            |d| d.epoch = 0,
            DescriptorError::ZeroEpoch { group: 2 },
            "range 1: group 2's range has epoch 0; epochs start at 1",
        ),
        (
            |d| d.voters.clear(),
            DescriptorError::NoVoters { group: 2 },
            "range 1: group 2's range has no voters",
        ),
        (
            |d| d.voters = vec![4, 5, 4],
            DescriptorError::DuplicateVoter { group: 2, node: 4 },
            "range 1: group 2's range lists node 4 twice among its voters",
        ),
    ];
    for (break_it, problem, message) in cases {
        let mut ranges = three();
        break_it(&mut ranges[1]);
        let err = RoutingTable::new(ranges).unwrap_err();
        assert_eq!(err, RoutingError::Range { index: 1, problem });
        assert!(err.to_string().starts_with(message), "{err}");
    }
}

#[test]
fn an_empty_range_is_refused() {
    // ["", "g") ["g", "g") ["g", +∞): the middle range holds no key.
    let ranges = vec![
        range(1, b"", Some(b"g")),
        range(2, b"g", Some(b"g")),
        range(3, b"g", None),
    ];
    let err = RoutingTable::new(ranges).unwrap_err();
    assert_eq!(
        err.to_string(),
        "range 1: group 2's range is empty: its start \"g\" is not below its end \"g\""
    );
    let inverted = range(2, b"m", Some(b"\x80"));
    assert!(inverted.check().is_ok(), "0x80 sorts above \"m\"");
    let inverted = range(2, b"\x80", Some(b"m"));
    assert_eq!(
        inverted.check().unwrap_err().to_string(),
        "group 2's range is empty: its start \"\\x80\" is not below its end \"m\""
    );
}

#[test]
fn contains_is_start_inclusive_and_end_exclusive() {
    let d = range(2, b"g", Some(b"p"));
    assert!(d.contains(b"g"));
    assert!(d.contains(b"g\x00"));
    assert!(d.contains(b"o\xff\xff"));
    assert!(!d.contains(b"p"));
    assert!(!d.contains(b"f\xff"));
    assert!(!d.contains(b""));
    let last = range(3, b"p", None);
    assert!(last.contains(b"\xff\xff\xff\xff"));
    assert!(!last.contains(b"o"));
    assert_eq!(d.to_string(), "group 2 [\"g\", \"p\") epoch 1");
    assert_eq!(last.to_string(), "group 3 [\"p\", +∞) epoch 1");
}

#[test]
fn clip_gives_the_part_of_an_interval_inside_the_range() {
    let d = range(2, b"g", Some(b"p"));
    assert_eq!(d.clip(b"a", b"z"), Some((&b"g"[..], &b"p"[..])));
    assert_eq!(d.clip(b"h", b"i"), Some((&b"h"[..], &b"i"[..])));
    assert_eq!(d.clip(b"a", b"h"), Some((&b"g"[..], &b"h"[..])));
    assert_eq!(d.clip(b"o", b"z"), Some((&b"o"[..], &b"p"[..])));
    assert_eq!(d.clip(b"a", b"g"), None, "hi is exclusive");
    assert_eq!(d.clip(b"p", b"z"), None, "the range's end is exclusive");
    assert_eq!(d.clip(b"i", b"h"), None, "an empty interval");
    assert_eq!(d.clip(b"i", b"i"), None, "an empty interval");
    let last = range(3, b"p", None);
    assert_eq!(last.clip(b"a", b"\xff"), Some((&b"p"[..], &b"\xff"[..])));
}

#[test]
fn overlapping_gives_the_ranges_of_an_interval_in_key_order() {
    let table = RoutingTable::new(three()).unwrap();
    let groups =
        |lo: &[u8], hi: &[u8]| -> Vec<u64> { table.overlapping(lo, hi).map(|d| d.group).collect() };
    assert_eq!(groups(b"", b"\xff"), vec![1, 2, 3]);
    assert_eq!(groups(b"a", b"b"), vec![1]);
    assert_eq!(
        groups(b"a", b"g"),
        vec![1],
        "hi = a range's start excludes it"
    );
    assert_eq!(groups(b"a", b"g\x00"), vec![1, 2]);
    assert_eq!(groups(b"g", b"p"), vec![2]);
    assert_eq!(groups(b"h", b"q"), vec![2, 3]);
    assert_eq!(groups(b"q", b"r"), vec![3]);
    assert_eq!(groups(b"q", b"q"), Vec::<u64>::new());
    assert_eq!(groups(b"r", b"q"), Vec::<u64>::new());
    let pieces: Vec<Piece<'_>> = table
        .pieces(b"c", b"q")
        .map(|(d, part)| (d.group, part))
        .collect();
    assert_eq!(
        pieces,
        vec![
            (1, (&b"c"[..], &b"g"[..])),
            (2, (&b"g"[..], &b"p"[..])),
            (3, (&b"p"[..], &b"q"[..])),
        ]
    );
}

#[test]
fn even_splits_cut_the_first_two_bytes_evenly() {
    let table = RoutingTable::even(4, &three_nodes(3)).unwrap();
    assert_eq!(
        starts(&table),
        vec![vec![], vec![0x40], vec![0x80], vec![0xC0]]
    );
    let one = RoutingTable::even(1, &three_nodes(3)).unwrap();
    assert_eq!(one.ranges(), &[range_on(1, b"", None, vec![10, 11, 12])]);
    // n = 3: 21845 = 0x5555, 43690 = 0xAAAA; n = 512: 128·i, 0x0080 keeps both bytes.
    let table = RoutingTable::even(3, &three_nodes(1)).unwrap();
    assert_eq!(starts(&table)[1..], [vec![0x55, 0x55], vec![0xAA, 0xAA]]);
    let table = RoutingTable::even(512, &three_nodes(1)).unwrap();
    assert_eq!(table.ranges()[1].start, vec![0x00, 0x80]);
    assert_eq!(table.ranges()[2].start, vec![0x01]);
    let table = RoutingTable::even(MAX_SHARDS, &three_nodes(1)).unwrap();
    assert_eq!(table.ranges().len(), MAX_SHARDS);
    assert_eq!(table.ranges()[1].start, vec![0x00, 0x10]);
    for (i, d) in table.ranges().iter().enumerate() {
        assert_eq!(d.group, i as u64 + 1, "groups 1..=n in key order");
        assert_eq!(d.epoch, 1);
    }
}

fn range_on(group: u64, start: &[u8], end: Option<&[u8]>, voters: Vec<u64>) -> RangeDescriptor {
    RangeDescriptor {
        voters,
        ..range(group, start, end)
    }
}

#[test]
fn shards_out_of_bounds_are_refused() {
    for shards in [0, MAX_SHARDS + 1] {
        let err = RoutingTable::even(shards, &three_nodes(1)).unwrap_err();
        assert_eq!(err, SettingsError::Shards { shards });
        assert_eq!(
            err.to_string(),
            format!("shards = {shards}: must be between 1 and 4096")
        );
    }
}

#[test]
fn split_keys_make_one_more_group_than_keys() {
    let keys = vec![b"g".to_vec(), b"p".to_vec()];
    let table = RoutingTable::from_split_keys(&keys, &three_nodes(2)).unwrap();
    assert_eq!(
        table.ranges(),
        &[
            range_on(1, b"", Some(b"g"), vec![10, 11]),
            range_on(2, b"g", Some(b"p"), vec![11, 12]),
            range_on(3, b"p", None, vec![12, 10]),
        ]
    );
    let none = RoutingTable::from_split_keys(&[], &three_nodes(2)).unwrap();
    assert_eq!(none.ranges(), &[range_on(1, b"", None, vec![10, 11])]);
}

#[test]
fn bad_split_keys_are_refused_by_index() {
    let p = three_nodes(1);
    let keys = |ks: &[&[u8]]| ks.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    let err = RoutingTable::from_split_keys(&keys(&[b"a", b""]), &p).unwrap_err();
    assert_eq!(err, SettingsError::EmptySplitKey { index: 1 });
    assert_eq!(
        err.to_string(),
        "split_keys[1] is empty; every split key must have at least one byte"
    );
    let err = RoutingTable::from_split_keys(&keys(&[b"a", b"c", b"b"]), &p).unwrap_err();
    assert_eq!(
        err.to_string(),
        "split_keys[2] = \"b\" is not above split_keys[1] = \"c\"; split keys must be strictly \
         increasing"
    );
    let err = RoutingTable::from_split_keys(&keys(&[b"a", b"\x80", b"\x80"]), &p).unwrap_err();
    assert_eq!(
        err,
        SettingsError::UnsortedSplitKey {
            index: 2,
            key: vec![0x80],
            previous: vec![0x80]
        }
    );
    let many: Vec<Vec<u8>> = (1..=MAX_SHARDS as u32)
        .map(|i| i.to_be_bytes().to_vec())
        .collect();
    let err = RoutingTable::from_split_keys(&many, &p).unwrap_err();
    assert_eq!(err, SettingsError::TooManySplitKeys { count: MAX_SHARDS });
    assert!(
        err.to_string().contains("at most 4096 groups (4095 keys)"),
        "{err}"
    );
    assert!(RoutingTable::from_split_keys(&many[..MAX_SHARDS - 1], &p).is_ok());
}

#[test]
fn placement_rotates_voters_over_the_nodes() {
    let p = Placement::new(vec![5, 6, 7, 8], 3).unwrap();
    assert_eq!(p.voters(1), vec![5, 6, 7]);
    assert_eq!(p.voters(2), vec![6, 7, 8]);
    assert_eq!(p.voters(4), vec![8, 5, 6]);
    assert_eq!(p.voters(5), vec![5, 6, 7]);
    assert_eq!(p.voters(u64::MAX).len(), 3, "no overflow for any group id");
    let table = RoutingTable::even(4, &Placement::new(vec![0, 1, 2], 3).unwrap()).unwrap();
    let leaders: Vec<u64> = table.ranges().iter().map(|d| d.voters[0]).collect();
    assert_eq!(
        leaders,
        vec![0, 1, 2, 0],
        "preferred leader of g is node (g − 1) mod N"
    );
}

#[test]
fn bad_placement_settings_are_refused() {
    for (nodes, replicas) in [(vec![1, 2, 3], 0), (vec![1, 2, 3], 4), (vec![], 1)] {
        let n = nodes.len();
        let err = Placement::new(nodes, replicas).unwrap_err();
        assert_eq!(err, SettingsError::Replicas { replicas, nodes: n });
        assert_eq!(
            err.to_string(),
            format!("replicas = {replicas}: must be between 1 and the number of nodes ({n})")
        );
    }
    let err = Placement::new(vec![1, 2, 1], 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "nodes[2] = 1 is listed twice (first at nodes[0]); node ids must be distinct"
    );
}

#[test]
fn decoding_refuses_a_table_that_breaks_a_rule() {
    // Encoding does not check (a table in hand is valid); build the bytes of a bad one by hand.
    let mut ranges = three();
    ranges[1].start = b"h".to_vec();
    let mut w = crate::encoding::Writer::new("routing table");
    w.count("ranges", ranges.len()).unwrap();
    for d in &ranges {
        crate::encoding::put_descriptor(&mut w, d).unwrap();
    }
    let err = decode_routing(&w.finish()).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Invalid {
                what: "routing table",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("corrupt routing table: range 1 (group 2) starts at \"h\", after range 0"),
        "{err}"
    );
    let empty = [FORMAT_V1, 0, 0, 0, 0];
    assert_eq!(
        decode_routing(&empty).unwrap_err().to_string(),
        "corrupt routing table: the routing table has no ranges; it must cover every key, \
         [\"\", +∞)"
    );
    let mut bad = range(0, b"", None);
    let bytes = encode_descriptor(&bad).unwrap();
    assert_eq!(
        decode_descriptor(&bytes).unwrap_err().to_string(),
        "corrupt descriptor: group 0 is the metadata group and owns no key range; data groups \
         are numbered from 1"
    );
    bad.group = 4;
    bad.voters = vec![];
    let bytes = encode_descriptor(&bad).unwrap();
    assert!(decode_descriptor(&bytes)
        .unwrap_err()
        .to_string()
        .contains("group 4's range has no voters"));
}

#[test]
fn decode_errors_name_the_field() {
    let bytes = encode_descriptor(&range(2, b"g", Some(b"p"))).unwrap();
    // version ‖ be64 group ‖ be32 len ‖ "g" ‖ flag ‖ …: cut inside the start key.
    let err = decode_descriptor(&bytes[..13]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "corrupt descriptor: start needs 1 more bytes, 0 left"
    );
    let mut flagged = bytes.clone();
    flagged[14] = 2;
    assert_eq!(
        decode_descriptor(&flagged).unwrap_err().to_string(),
        "corrupt descriptor: unknown end presence flag 2"
    );
    let table = encode_routing(&RoutingTable::new(three()).unwrap()).unwrap();
    let err = decode_routing(&table[..table.len() - 3]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "corrupt routing table: voter needs 8 more bytes, 5 left"
    );
}

/// Up to 12 distinct non-empty split keys over a small alphabet, so that random keys often
/// fall on, just before and just after a split.
fn split_keys() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::btree_set(key(), 0..12)
        .prop_map(|set| set.into_iter().filter(|k| !k.is_empty()).collect())
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![0x00u8, 0x01, b'g', b'p', 0xfe, 0xff]),
        0..4,
    )
}

proptest! {
    #[test]
    fn every_key_routes_to_exactly_the_one_range_that_contains_it(
        splits in split_keys(),
        keys in prop::collection::vec(key(), 1..32),
        replicas in 1usize..=3,
    ) {
        let table = RoutingTable::from_split_keys(&splits, &three_nodes(replicas)).unwrap();
        prop_assert_eq!(table.ranges().len(), splits.len() + 1);
        for k in &keys {
            let holders: Vec<u64> = table
                .ranges()
                .iter()
                .filter(|d| d.contains(k))
                .map(|d| d.group)
                .collect();
            prop_assert_eq!(holders.len(), 1, "key {:?} in {:?}", k, holders);
            prop_assert_eq!(table.route(k).group, holders[0]);
            // The model: the group is 1 + the number of split keys ≤ k.
            let model = 1 + splits.iter().filter(|s| s.as_slice() <= k.as_slice()).count();
            prop_assert_eq!(table.route(k).group, model as u64);
        }
    }

    #[test]
    fn overlapping_gives_exactly_the_ranges_holding_a_key_of_the_interval(
        splits in split_keys(),
        lo in key(),
        hi in key(),
    ) {
        let table = RoutingTable::from_split_keys(&splits, &three_nodes(1)).unwrap();
        let got: Vec<u64> = table.overlapping(&lo, &hi).map(|d| d.group).collect();
        // A range holds a key of [lo, hi) iff max(lo, start) < min(hi, end): that bound
        // itself is such a key.
        let model: Vec<u64> = table
            .ranges()
            .iter()
            .filter(|d| {
                let from = lo.as_slice().max(d.start.as_slice());
                let to = d.end.as_deref().map_or(hi.as_slice(), |e| hi.as_slice().min(e));
                from < to
            })
            .map(|d| d.group)
            .collect();
        prop_assert_eq!(&got, &model);
        // The pieces are the same ranges, each non-empty, and tile [lo, hi) in order.
        let pieces: Vec<Piece<'_>> =
            table.pieces(&lo, &hi).map(|(d, p)| (d.group, p)).collect();
        prop_assert_eq!(pieces.iter().map(|(g, _)| *g).collect::<Vec<_>>(), model);
        let mut at = lo.as_slice();
        for (group, (from, to)) in &pieces {
            prop_assert_eq!(*from, at, "pieces are contiguous");
            prop_assert!(from < to);
            prop_assert!(table.descriptor(*group).unwrap().contains(from));
            at = to;
        }
        if lo < hi {
            prop_assert_eq!(at, hi.as_slice(), "pieces end at hi");
        }
    }

    #[test]
    fn descriptors_and_tables_round_trip(
        splits in split_keys(),
        shards in 1usize..=64,
        epochs in prop::collection::vec(1u64..=u64::MAX, 13),
        replicas in 1usize..=3,
    ) {
        let p = three_nodes(replicas);
        for table in [
            RoutingTable::from_split_keys(&splits, &p).unwrap(),
            RoutingTable::even(shards, &p).unwrap(),
        ] {
            let ranges: Vec<RangeDescriptor> = table
                .into_ranges()
                .into_iter()
                .zip(epochs.iter().cycle())
                .map(|(d, epoch)| RangeDescriptor { epoch: *epoch, ..d })
                .collect();
            let table = RoutingTable::new(ranges).unwrap();
            let bytes = encode_routing(&table).unwrap();
            prop_assert_eq!(decode_routing(&bytes).unwrap(), table.clone());
            for d in table.ranges() {
                let bytes = encode_descriptor(d).unwrap();
                prop_assert_eq!(&decode_descriptor(&bytes).unwrap(), d);
            }
        }
    }
}
