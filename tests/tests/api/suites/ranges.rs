//! getRange / snapshotGetRange: the WIRE §3 algorithm as a table of cases, defaults with
//! absent bounds, and bytewise order.

use dolmen_tests::client::{op_set, range_all_absent};
use dolmen_tests::kvstore::{GetRangeRequest, TTransactionalKVSyncClient};
use dolmen_tests::raw::show;
use dolmen_tests::{Connector, KvExt, TestCluster};

use crate::helpers::{
    assert_ascending, fresh_ns, key, kv_pairs, reply, show_keys, snapshot_range_of,
};

/// One row of the getRange table: begin/end are suffixes appended to the suite's namespace.
struct RangeCase {
    name: &'static str,
    begin: &'static [u8],
    end: &'static [u8],
    begin_offset: Option<i32>,
    begin_or_equal: Option<bool>,
    end_offset: Option<i32>,
    end_or_equal: Option<bool>,
    limit: Option<i32>,
    expected: &'static [usize],
    has_more: bool,
}

const CASE: RangeCase = RangeCase {
    name: "",
    begin: b"endoff003",
    end: b"endoff007",
    begin_offset: None,
    begin_or_equal: None,
    end_offset: None,
    end_or_equal: None,
    limit: None,
    expected: &[],
    has_more: false,
};

const RANGE_CASES: &[RangeCase] = &[
    RangeCase {
        name: "defaults: begin inclusive, end exclusive",
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin_or_equal=true explicit",
        begin_or_equal: Some(true),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin_or_equal=false skips begin",
        begin_or_equal: Some(false),
        expected: &[4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin_or_equal=false, begin not a key",
        begin: b"endoff0031",
        begin_or_equal: Some(false),
        expected: &[4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "end_or_equal=true includes end",
        end_or_equal: Some(true),
        expected: &[3, 4, 5, 6, 7],
        ..CASE
    },
    RangeCase {
        name: "end_or_equal=false explicit",
        end_or_equal: Some(false),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin_offset=2 drops 2",
        begin_offset: Some(2),
        expected: &[5, 6],
        ..CASE
    },
    RangeCase {
        name: "negative begin_offset is 0",
        begin_offset: Some(-3),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin_offset past the range",
        begin_offset: Some(10),
        ..CASE
    },
    RangeCase {
        name: "WIRE example: end endoff005 offset -1 = endoff004 (exclusive)",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(-1),
        expected: &[0, 1, 2, 3],
        ..CASE
    },
    RangeCase {
        name: "end endoff005 offset -1, end_or_equal",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(-1),
        end_or_equal: Some(true),
        expected: &[0, 1, 2, 3, 4],
        ..CASE
    },
    RangeCase {
        name: "end endoff005 offset +1 = endoff006",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(1),
        expected: &[0, 1, 2, 3, 4, 5],
        ..CASE
    },
    RangeCase {
        name: "end endoff005 offset +1, end_or_equal",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(1),
        end_or_equal: Some(true),
        expected: &[0, 1, 2, 3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "end offset +2 = endoff007",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(2),
        expected: &[0, 1, 2, 3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "end offset -2 = endoff003",
        begin: b"",
        end: b"endoff005",
        end_offset: Some(-2),
        expected: &[0, 1, 2],
        ..CASE
    },
    RangeCase {
        name: "step up zeroes trailing 0xFF: endoff004\\xff\\xff +1 = endoff005\\0\\0",
        begin: b"",
        end: b"endoff004\xff\xff",
        end_offset: Some(1),
        expected: &[0, 1, 2, 3, 4, 5],
        ..CASE
    },
    RangeCase {
        name: "step down fills 0xFF: endoff005\\0 -1 = endoff004\\xff",
        begin: b"",
        end: b"endoff005\x00",
        end_offset: Some(-1),
        expected: &[0, 1, 2, 3, 4],
        ..CASE
    },
    RangeCase {
        name: "end before the first key",
        begin: b"",
        end: b"endoff000",
        end_offset: Some(-1),
        ..CASE
    },
    RangeCase {
        name: "limit below remaining: has_more",
        limit: Some(2),
        expected: &[3, 4],
        has_more: true,
        ..CASE
    },
    RangeCase {
        name: "limit one below remaining: has_more",
        limit: Some(3),
        expected: &[3, 4, 5],
        has_more: true,
        ..CASE
    },
    RangeCase {
        name: "limit = remaining: no has_more (keys beyond end don't count)",
        limit: Some(4),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "limit > remaining",
        limit: Some(5),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "end_or_equal, limit = remaining",
        end_or_equal: Some(true),
        limit: Some(5),
        expected: &[3, 4, 5, 6, 7],
        ..CASE
    },
    RangeCase {
        name: "end_or_equal, limit one short: has_more",
        end_or_equal: Some(true),
        limit: Some(4),
        expected: &[3, 4, 5, 6],
        has_more: true,
        ..CASE
    },
    RangeCase {
        name: "limit 0 = unlimited",
        limit: Some(0),
        expected: &[3, 4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "limit 0 = unlimited, whole namespace",
        begin: b"",
        end: b"~",
        limit: Some(0),
        expected: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ..CASE
    },
    RangeCase {
        name: "negative limit = unlimited",
        begin: b"",
        end: b"~",
        limit: Some(-1),
        expected: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ..CASE
    },
    RangeCase {
        name: "begin_offset then limit: has_more",
        begin_offset: Some(1),
        limit: Some(2),
        expected: &[4, 5],
        has_more: true,
        ..CASE
    },
    RangeCase {
        name: "begin_offset then limit = remaining",
        begin_offset: Some(1),
        limit: Some(3),
        expected: &[4, 5, 6],
        ..CASE
    },
    RangeCase {
        name: "begin > end: empty",
        begin: b"endoff007",
        end: b"endoff003",
        ..CASE
    },
    RangeCase {
        name: "begin = end, end exclusive: empty",
        begin: b"endoff005",
        end: b"endoff005",
        ..CASE
    },
    RangeCase {
        name: "begin = end, end inclusive: the key",
        begin: b"endoff005",
        end: b"endoff005",
        end_or_equal: Some(true),
        expected: &[5],
        ..CASE
    },
    RangeCase {
        name: "begin = end, begin exclusive, end inclusive: empty",
        begin: b"endoff005",
        end: b"endoff005",
        begin_or_equal: Some(false),
        end_or_equal: Some(true),
        ..CASE
    },
];

/// The WIRE §3 getRange/snapshotGetRange algorithm, table-driven, on keys endoff000..endoff009
/// under a private namespace; plus the default limit of 1000 and present-but-empty end_key.
pub(crate) fn suite_get_range_algorithm(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("range");
    let keys: Vec<Vec<u8>> = (0..10)
        .map(|i| key(&ns, format!("endoff{i:03}").as_bytes()))
        .collect();
    let rv = kv.read_version();
    let ops = keys
        .iter()
        .enumerate()
        .map(|(i, k)| op_set(k, format!("v{i}").as_bytes()))
        .collect();
    kv.must_commit(rv, ops, vec![]);

    let mut failures = Vec::new();
    for case in RANGE_CASES {
        let req = GetRangeRequest {
            begin_key: Some(key(&ns, case.begin)),
            end_key: Some(key(&ns, case.end)),
            begin_offset: case.begin_offset,
            begin_or_equal: case.begin_or_equal,
            end_offset: case.end_offset,
            end_or_equal: case.end_or_equal,
            limit: case.limit,
            column_family: None,
        };
        let expected: Vec<(Vec<u8>, Vec<u8>)> = case
            .expected
            .iter()
            .map(|&i| (keys[i].clone(), format!("v{i}").into_bytes()))
            .collect();
        let got = kv.range(req.clone());
        // A fresh read version per case: no writes happen meanwhile, and a version taken
        // once would fall below the (short, 300 ms) retention horizon during the table.
        let rv = kv.read_version();
        let snap = reply(
            "snapshotGetRange",
            kv.snapshot_get_range(snapshot_range_of(&req, rv)),
        );
        for (method, r) in [("getRange", got), ("snapshotGetRange", snap)] {
            if !r.success
                || r.error.is_some()
                || kv_pairs(&r) != expected
                || r.has_more != case.has_more
            {
                let got_keys: Vec<Vec<u8>> = r.key_values.iter().map(|kv| kv.key.clone()).collect();
                failures.push(format!(
                    "{method} [{}]: expected keys {:?} has_more={}, got success={} error={:?} \
                     keys {} has_more={}",
                    case.name,
                    case.expected,
                    case.has_more,
                    r.success,
                    r.error,
                    show_keys(&got_keys),
                    r.has_more
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "range algorithm mismatches:\n{}",
        failures.join("\n")
    );

    // Present-but-empty end_key means an empty range.
    for begin in [None, Some(ns.clone())] {
        let r = kv.range(GetRangeRequest {
            begin_key: begin.clone(),
            end_key: Some(vec![]),
            ..range_all_absent()
        });
        assert!(
            r.success && r.key_values.is_empty() && !r.has_more,
            "expected an empty range for end_key=b\"\" (begin {begin:?}): {r:?}"
        );
    }

    // Absent limit = 1000.
    let ns2 = fresh_ns("range-limit");
    let rv = kv.read_version();
    let ops = (0..1001)
        .map(|i| op_set(&key(&ns2, format!("{i:04}").as_bytes()), b"x"))
        .collect();
    kv.must_commit(rv, ops, vec![]);
    let req = GetRangeRequest {
        begin_key: Some(ns2.clone()),
        end_key: Some(key(&ns2, b"~")),
        ..range_all_absent()
    };
    let r = kv.range(req.clone());
    assert!(
        r.success && r.key_values.len() == 1000 && r.has_more,
        "expected absent limit = 1000 results with has_more of 1001 keys, got {} has_more={}",
        r.key_values.len(),
        r.has_more
    );
    assert_ascending(&r, "getRange");
    let r = kv.range(GetRangeRequest {
        limit: Some(1001),
        ..req.clone()
    });
    assert!(
        r.key_values.len() == 1001 && !r.has_more,
        "expected limit 1001 = all 1001 keys, no has_more; got {} has_more={}",
        r.key_values.len(),
        r.has_more
    );
    let r = kv.range(GetRangeRequest {
        limit: Some(0),
        ..req
    });
    assert!(
        r.key_values.len() == 1001 && !r.has_more,
        "expected limit 0 = all 1001 keys, no has_more; got {} has_more={}",
        r.key_values.len(),
        r.has_more
    );
}

/// Range defaults with absent begin/end and bytewise order with 0x00/0xFF keys.
///
/// Needs the `users` column family empty at the start (a fresh cluster): absent begin and end
/// span the whole column family.
pub(crate) fn suite_range_defaults_and_byte_order(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let sorted: Vec<&[u8]> = vec![
        b"\x00",
        b"\x00\x00",
        b"\x01",
        b"a",
        b"a\x00",
        b"a\xff",
        b"b",
        b"\xfe",
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
    ];
    // Written in a scrambled order.
    for i in [5usize, 0, 9, 2, 7, 10, 1, 4, 8, 3, 6] {
        let r = kv.set_in(sorted[i], format!("v{i}").as_bytes(), Some("users"));
        assert!(
            r.success,
            "expected setKey({}) in users: {r:?}",
            show(sorted[i])
        );
    }
    // A key in the default column family must never show up.
    kv.must_set(b"a\x01", b"default-cf");

    let users = Some("users".to_owned());
    let base = GetRangeRequest {
        column_family: users.clone(),
        ..range_all_absent()
    };
    let cases: Vec<(&str, GetRangeRequest, usize, usize)> = vec![
        ("all fields absent: [\"\", \\xff)", base.clone(), 0, 8),
        (
            "begin absent, begin_or_equal=false",
            GetRangeRequest {
                begin_or_equal: Some(false),
                ..base.clone()
            },
            0,
            8,
        ),
        (
            "end \\xff\\xff\\xff",
            GetRangeRequest {
                end_key: Some(b"\xff\xff\xff".to_vec()),
                ..base.clone()
            },
            0,
            11,
        ),
        (
            "begin \\xff, end \\xff\\xff\\xff",
            GetRangeRequest {
                begin_key: Some(b"\xff".to_vec()),
                end_key: Some(b"\xff\xff\xff".to_vec()),
                ..base.clone()
            },
            8,
            11,
        ),
        (
            "end \\xff inclusive",
            GetRangeRequest {
                end_key: Some(b"\xff".to_vec()),
                end_or_equal: Some(true),
                ..base.clone()
            },
            0,
            9,
        ),
        (
            "absent end, offset +1 = \\xff\\x00",
            GetRangeRequest {
                end_offset: Some(1),
                ..base.clone()
            },
            0,
            9,
        ),
        (
            "end \\xff offset +1 inclusive = ..=\\xff\\x00",
            GetRangeRequest {
                end_key: Some(b"\xff".to_vec()),
                end_offset: Some(1),
                end_or_equal: Some(true),
                ..base.clone()
            },
            0,
            10,
        ),
        (
            "end \\xff\\xff offset +1 = \\xff\\xff\\x00",
            GetRangeRequest {
                end_key: Some(b"\xff\xff".to_vec()),
                end_offset: Some(1),
                ..base.clone()
            },
            0,
            11,
        ),
        (
            "absent end, offset -1 = \\xfe",
            GetRangeRequest {
                end_offset: Some(-1),
                ..base.clone()
            },
            0,
            7,
        ),
        (
            "end \"a\" offset -1 = empty key (as observed)",
            GetRangeRequest {
                end_key: Some(b"a".to_vec()),
                end_offset: Some(-1),
                ..base.clone()
            },
            0,
            0,
        ),
        (
            "end \"b\" offset -1 = \"a\"",
            GetRangeRequest {
                end_key: Some(b"b".to_vec()),
                end_offset: Some(-1),
                ..base.clone()
            },
            0,
            3,
        ),
        (
            "end \"b\" offset -1 = \"a\", inclusive",
            GetRangeRequest {
                end_key: Some(b"b".to_vec()),
                end_offset: Some(-1),
                end_or_equal: Some(true),
                ..base.clone()
            },
            0,
            4,
        ),
        (
            "end \\x00\\x01 offset -1 = \\x00\\x00",
            GetRangeRequest {
                end_key: Some(b"\x00\x01".to_vec()),
                end_offset: Some(-1),
                ..base.clone()
            },
            0,
            1,
        ),
        (
            "end \\x01 offset -1 = \\x00, inclusive",
            GetRangeRequest {
                end_key: Some(b"\x01".to_vec()),
                end_offset: Some(-1),
                end_or_equal: Some(true),
                ..base.clone()
            },
            0,
            1,
        ),
        (
            "end \\x00 offset -1 = empty key",
            GetRangeRequest {
                end_key: Some(b"\x00".to_vec()),
                end_offset: Some(-1),
                end_or_equal: Some(true),
                ..base.clone()
            },
            0,
            0,
        ),
        (
            "present-but-empty end",
            GetRangeRequest {
                end_key: Some(vec![]),
                ..base.clone()
            },
            0,
            0,
        ),
        (
            "begin \"a\", begin exclusive",
            GetRangeRequest {
                begin_key: Some(b"a".to_vec()),
                begin_or_equal: Some(false),
                ..base.clone()
            },
            4,
            8,
        ),
    ];
    let mut failures = Vec::new();
    for (name, req, from, to) in cases {
        let expected: Vec<(Vec<u8>, Vec<u8>)> = (from..to)
            .map(|i| (sorted[i].to_vec(), format!("v{i}").into_bytes()))
            .collect();
        let got = kv.range(req.clone());
        // A fresh read version per case: no writes happen meanwhile, and a version taken
        // once would fall below the (short, 300 ms) retention horizon during the table.
        let rv = kv.read_version();
        let snap = reply(
            "snapshotGetRange",
            kv.snapshot_get_range(snapshot_range_of(&req, rv)),
        );
        for (method, r) in [("getRange", got), ("snapshotGetRange", snap)] {
            if !r.success || kv_pairs(&r) != expected || r.has_more {
                let got_keys: Vec<Vec<u8>> = r.key_values.iter().map(|kv| kv.key.clone()).collect();
                let want: Vec<Vec<u8>> = expected.iter().map(|(k, _)| k.clone()).collect();
                failures.push(format!(
                    "{method} [{name}]: expected {} has_more=false, got success={} error={:?} {} \
                     has_more={}",
                    show_keys(&want),
                    r.success,
                    r.error,
                    show_keys(&got_keys),
                    r.has_more
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "range default/byte-order mismatches:\n{}",
        failures.join("\n")
    );
}
