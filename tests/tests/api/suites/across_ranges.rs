//! Transactions across ranges (docs/sharding.md §6.3): on the cluster split at `d`, `l` and
//! `s`, every commit here reaches several data groups and commits through two-phase commit at
//! one version. Each suite makes every node the gateway (the coordinator) in turn and reads
//! back through every node. A key's first byte picks its range (`a`, `e`, `m`, `t`: one per
//! range, [`RANGES`]), a private namespace ([`fresh_ns`]) follows, so the keys of these suites
//! never meet the shared suites' (`basic/…`, `commit/…`); on a cluster with one group the same
//! suites check the same semantics. Resends with an idempotency token are in `resends.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dolmen_tests::client::{op, op_delete, op_set, range_all_absent};
use dolmen_tests::kvstore::{
    AtomicCommitResponse, GetRangeRequest, Operation, TTransactionalKVSyncClient,
};
use dolmen_tests::raw::show;
use dolmen_tests::{Connector, KvClient, KvExt, TestCluster};

use crate::helpers::{
    assert_found, assert_missing, fresh_ns, kv_pairs, parse_stamp, reply, show_keys,
    snapshot_range_of, stamp,
};

/// A first byte in each range of the cluster split at `d`, `l` and `s`, in key order.
pub(super) const RANGES: [u8; 4] = [b'a', b'e', b'm', b't'];

/// `first ‖ ns ‖ suffix`: a key of the namespace `ns` in the range `first` falls in.
pub(super) fn in_range(first: u8, ns: &[u8], suffix: &[u8]) -> Vec<u8> {
    [&[first][..], ns, suffix].concat()
}

/// Every node's Thrift address, the one `connect` targets first.
pub(super) fn nodes(c: &dyn TestCluster, connect: Connector) -> Vec<SocketAddr> {
    let first = connect.endpoint(c);
    let mut all = c.client_endpoints();
    all.sort_by_key(|&addr| addr != first);
    all
}

/// One client per node of [`nodes`], with `connect`'s transport.
pub(super) fn clients(nodes: &[SocketAddr], connect: Connector) -> Vec<KvClient> {
    nodes.iter().map(|&addr| connect.connect(addr)).collect()
}

/// `snapshotRead(k)` at `version` through `node` is `expected` (`None`: not found), with no
/// error.
#[track_caller]
pub(super) fn assert_at(
    kv: &mut KvClient,
    node: SocketAddr,
    k: &[u8],
    version: i64,
    expected: Option<&[u8]>,
) {
    let r = kv.snapshot_read_in(k, version, None);
    let seen = r.found.then_some(r.value.as_slice());
    assert!(
        r.error.is_none() && seen == expected,
        "expected snapshotRead({}) at {version} through {node} to be {}, got found={} value={} \
         error={:?}",
        show(k),
        expected.map_or_else(|| "not found".to_owned(), show),
        r.found,
        show(&r.value),
        r.error
    );
}

/// Asserts a failed commit with `error_code` `code`.
#[track_caller]
pub(super) fn assert_refused(r: &AtomicCommitResponse, code: &str, what: &str) {
    assert!(
        !r.success && r.error_code.as_deref() == Some(code) && r.committed_version.is_none(),
        "expected {what} to fail with {code} and no committed_version, got {r:?}"
    );
}

/// A commit writing a key in every range commits at one version: through every node, every
/// key is visible at `committed_version` and none at `committed_version - 1` (a delete
/// likewise); a read-conflict key in a range the commit does not write aborts it when written
/// since the read version, and is harmless otherwise.
pub(crate) fn suite_commits_across_ranges(c: &dyn TestCluster, connect: Connector) {
    let nodes = nodes(c, connect);
    let mut kvs = clients(&nodes, connect);
    for gateway in 0..kvs.len() {
        let ns = fresh_ns("xr-commit");
        let keys: Vec<Vec<u8>> = RANGES.iter().map(|&r| in_range(r, &ns, b"k")).collect();
        let values: Vec<Vec<u8>> = (0..keys.len())
            .map(|i| format!("value {i}").into_bytes())
            .collect();
        let doomed = in_range(b'e', &ns, b"doomed");
        kvs[gateway].must_set(&doomed, b"old");

        let rv = kvs[gateway].read_version();
        let mut ops: Vec<Operation> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| op_set(k, v))
            .collect();
        ops.push(op_delete(&doomed));
        let cv = kvs[gateway].must_commit(rv, ops, vec![keys[0].clone(), keys[3].clone()]);
        assert!(
            cv > rv,
            "expected committed_version {cv} > read version {rv}"
        );
        for (kv, &node) in kvs.iter_mut().zip(&nodes) {
            for (k, v) in keys.iter().zip(&values) {
                assert_at(kv, node, k, cv, Some(v));
                assert_at(kv, node, k, cv - 1, None);
                assert_found(kv, k, v);
            }
            assert_at(kv, node, &doomed, cv - 1, Some(b"old"));
            assert_at(kv, node, &doomed, cv, None);
            assert_missing(kv, &doomed);
        }

        // Writes in two ranges, read-conflict key in a third (a participant that only reads):
        // written through another node since the read version, so CONFLICT, nothing applied.
        let other = (gateway + 1) % kvs.len();
        let watched = in_range(b't', &ns, b"watched");
        let writes = [in_range(b'a', &ns, b"w"), in_range(b'm', &ns, b"w")];
        let rv = kvs[gateway].read_version();
        kvs[other].must_set(&watched, b"changed");
        let ops: Vec<Operation> = writes.iter().map(|k| op_set(k, b"w")).collect();
        let r = kvs[gateway].commit(rv, ops.clone(), vec![watched.clone()]);
        assert_refused(
            &r,
            "CONFLICT",
            "a commit whose read-conflict key was written since",
        );
        for kv in &mut kvs {
            for k in &writes {
                assert_missing(kv, k);
            }
        }
        // Not written since this read version: it commits.
        let rv = kvs[gateway].read_version();
        let cv = kvs[gateway].must_commit(rv, ops, vec![watched.clone()]);
        for (kv, &node) in kvs.iter_mut().zip(&nodes) {
            for k in &writes {
                assert_at(kv, node, k, cv, Some(b"w"));
                assert_at(kv, node, k, cv - 1, None);
            }
        }
    }
}

/// The balances of `accounts` at `version` through `kv`.
#[track_caller]
fn balances(kv: &mut KvClient, node: SocketAddr, accounts: &[Vec<u8>], version: i64) -> Vec<i64> {
    accounts
        .iter()
        .map(|account| {
            let r = kv.snapshot_read_in(account, version, None);
            assert!(
                r.found && r.error.is_none(),
                "expected account {} at {version} through {node}, got {r:?}",
                show(account)
            );
            std::str::from_utf8(&r.value)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or_else(|| panic!("expected a balance, got {}", show(&r.value)))
        })
        .collect()
}

/// `set account = balance`.
fn op_balance(account: &[u8], balance: i64) -> Operation {
    op_set(account, balance.to_string().as_bytes())
}

/// Accounts opened in each range.
const OPENING: i64 = 100;
/// Transfers each node's client makes in the concurrent phase.
const CONCURRENT_TRANSFERS: usize = 6;
/// Attempts per concurrent transfer (a CONFLICT is retried at a new read version).
const ATTEMPTS: usize = 20;
/// The concurrent phase stops starting transfers after this long (not a failure).
const CONCURRENT_BUDGET: Duration = Duration::from_secs(60);

/// Bank transfers between accounts in different ranges: a transfer reads both accounts at a
/// read version and writes both with them as read-conflict keys; a second transaction at the
/// same, now older, read version that wrote one of them (or only read one) gets CONFLICT and
/// applies nothing; every snapshot of all accounts, at any version through any node, sums to
/// the opening total. Then one client per node transfers concurrently, and the balances are
/// exactly the committed transfers.
pub(crate) fn suite_transfers_across_ranges(c: &dyn TestCluster, connect: Connector) {
    let nodes = nodes(c, connect);
    let mut kvs = clients(&nodes, connect);
    let ns = fresh_ns("xr-bank");
    let accounts: Vec<Vec<u8>> = RANGES.iter().map(|&r| in_range(r, &ns, b"acct")).collect();
    let total = OPENING * accounts.len() as i64;
    let rv = kvs[0].read_version();
    let ops = accounts.iter().map(|a| op_balance(a, OPENING)).collect();
    kvs[0].must_commit(rv, ops, vec![]);
    let mut expected = vec![OPENING; accounts.len()];

    for round in 0..kvs.len() * 2 {
        let gateway = round % kvs.len();
        let other = (gateway + 1) % kvs.len();
        let (from, to, third) = (round % 4, (round + 1) % 4, (round + 2) % 4);
        let rv = kvs[gateway].read_version();
        let seen = balances(&mut kvs[gateway], nodes[gateway], &accounts, rv);
        assert_eq!(
            seen, expected,
            "balances at {rv} through {}",
            nodes[gateway]
        );
        let amount = 10 + round as i64;
        let cv = kvs[gateway].must_commit(
            rv,
            vec![
                op_balance(&accounts[from], seen[from] - amount),
                op_balance(&accounts[to], seen[to] + amount),
            ],
            vec![accounts[from].clone(), accounts[to].clone()],
        );
        // The same read version through another node: it read `from`, which the first
        // transfer wrote since.
        let r = kvs[other].commit(
            rv,
            vec![
                op_balance(&accounts[from], seen[from] - 5),
                op_balance(&accounts[third], seen[third] + 5),
            ],
            vec![accounts[from].clone(), accounts[third].clone()],
        );
        assert_refused(
            &r,
            "CONFLICT",
            "a transfer out of an account written since its read",
        );
        // It writes only the third account but read `to`: the conflict is in a range it only
        // reads.
        let r = kvs[other].commit(
            rv,
            vec![op_balance(&accounts[third], seen[third] + 1)],
            vec![accounts[to].clone(), accounts[third].clone()],
        );
        assert_refused(
            &r,
            "CONFLICT",
            "a write whose read of another range is stale",
        );

        let before = expected.clone();
        expected[from] -= amount;
        expected[to] += amount;
        for (kv, &node) in kvs.iter_mut().zip(&nodes) {
            assert_eq!(
                balances(kv, node, &accounts, cv - 1),
                before,
                "at {} via {node}",
                cv - 1
            );
            assert_eq!(
                balances(kv, node, &accounts, cv),
                expected,
                "at {cv} via {node}"
            );
            let now = kv.read_version();
            assert_eq!(
                balances(kv, node, &accounts, now),
                expected,
                "at {now} via {node}"
            );
        }
    }
    assert_eq!(expected.iter().sum::<i64>(), total);

    // One client per node, transferring at once.
    let deadline = Instant::now() + CONCURRENT_BUDGET;
    let outcomes: Vec<Transfers> = std::thread::scope(|scope| {
        let workers: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(worker, &node)| {
                let accounts = &accounts;
                scope.spawn(move || transfer_at_once(connect, node, worker, accounts, deadline))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a transfer worker"))
            .collect()
    });
    let unknown: usize = outcomes.iter().map(|t| t.unknown.len()).sum();
    for transfers in &outcomes {
        for &(from, to, amount) in &transfers.committed {
            expected[from] -= amount;
            expected[to] += amount;
        }
    }
    for (kv, &node) in kvs.iter_mut().zip(&nodes) {
        let now = kv.read_version();
        let seen = balances(kv, node, &accounts, now);
        assert_eq!(
            seen.iter().sum::<i64>(),
            total,
            "the sum at {now} via {node}: {seen:?}"
        );
        if unknown == 0 {
            assert_eq!(
                seen, expected,
                "balances at {now} via {node} after {outcomes:?}"
            );
        }
    }
}

/// What one concurrent worker did.
#[derive(Debug, Default)]
struct Transfers {
    /// `(from, to, amount)` of each committed transfer.
    committed: Vec<(usize, usize, i64)>,
    /// The answers of commits whose outcome is unknown (`TIMEOUT`, `UNAVAILABLE`).
    unknown: Vec<AtomicCommitResponse>,
}

/// Up to [`CONCURRENT_TRANSFERS`] transfers through `node`, each retried on CONFLICT at most
/// [`ATTEMPTS`] times; every snapshot read on the way sums to the opening total.
fn transfer_at_once(
    connect: Connector,
    node: SocketAddr,
    worker: usize,
    accounts: &[Vec<u8>],
    deadline: Instant,
) -> Transfers {
    let mut kv = connect.connect(node);
    let total = OPENING * accounts.len() as i64;
    let mut done = Transfers::default();
    for i in 0..CONCURRENT_TRANSFERS {
        let from = (worker + i) % accounts.len();
        let to = (from + 1 + i % (accounts.len() - 1)) % accounts.len();
        let amount = 1 + (i % 5) as i64;
        for _ in 0..ATTEMPTS {
            if Instant::now() >= deadline {
                return done;
            }
            let rv = kv.read_version();
            let seen = balances(&mut kv, node, accounts, rv);
            assert_eq!(
                seen.iter().sum::<i64>(),
                total,
                "the sum at {rv} via {node}: {seen:?}"
            );
            let r = kv.commit(
                rv,
                vec![
                    op_balance(&accounts[from], seen[from] - amount),
                    op_balance(&accounts[to], seen[to] + amount),
                ],
                vec![accounts[from].clone(), accounts[to].clone()],
            );
            match r.error_code.as_deref() {
                None if r.success => {
                    done.committed.push((from, to, amount));
                    break;
                }
                Some("CONFLICT") => continue,
                Some("TIMEOUT" | "UNAVAILABLE") => {
                    done.unknown.push(r);
                    break;
                }
                _ => panic!("expected a transfer via {node} to commit or conflict, got {r:?}"),
            }
        }
    }
    done
}

/// The `users` keys of [`suite_range_reads_across_ranges`], on both sides of every split
/// point and on them.
const RANGE_KEYS: &[&[u8]] = &[
    b"a", b"c\xff", b"d", b"d\x00", b"e", b"k", b"k\xff", b"l", b"l\x00", b"m", b"r\xff", b"s",
    b"s\x00", b"t", b"z",
];

/// The model of one column family: `ops` applied in order to `model`.
fn apply(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: &[Operation]) {
    for o in ops {
        match o.type_.as_str() {
            "set" => {
                model.insert(o.key.clone(), o.value.clone().unwrap_or_default());
            }
            "delete" => {
                model.remove(&o.key);
            }
            "clear_range" => {
                let end = o.value.clone().unwrap_or_default();
                model.retain(|k, _| *k < o.key || *k >= end);
            }
            other => panic!("the model has no operation {other}"),
        }
    }
}

/// A `users` range request with the given bounds and limit.
fn users_range(begin: Option<&[u8]>, limit: Option<i32>) -> GetRangeRequest {
    GetRangeRequest {
        begin_key: begin.map(<[u8]>::to_vec),
        limit,
        column_family: Some("users".to_owned()),
        ..range_all_absent()
    }
}

/// `snapshotGetRange(request)` at `version` through `node` is `expected` and `has_more`.
#[track_caller]
fn assert_range(
    kv: &mut KvClient,
    node: SocketAddr,
    request: &GetRangeRequest,
    version: i64,
    expected: &[(Vec<u8>, Vec<u8>)],
    has_more: bool,
) {
    let r = reply(
        "snapshotGetRange",
        kv.snapshot_get_range(snapshot_range_of(request, version)),
    );
    let got = kv_pairs(&r);
    let keys = |pairs: &[(Vec<u8>, Vec<u8>)]| {
        show_keys(&pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>())
    };
    assert!(
        r.success && r.error.is_none() && got == expected && r.has_more == has_more,
        "expected {request:?} at {version} through {node} to give {} (has_more {has_more}), got \
         {} (has_more {}, success {}, error {:?})",
        keys(expected),
        keys(&got),
        r.has_more,
        r.success,
        r.error
    );
}

/// Range reads over every range boundary after commits across ranges: one commit clears the
/// `users` column family and writes keys on both sides of every split point (and on them),
/// another deletes, overwrites and clears across boundaries; through every node, snapshot
/// reads at each commit version give exactly the model's keys in order, and `limit`,
/// `begin_offset` and paging by the last key have their WIRE §3 `has_more`.
///
/// Needs the `users` column family to itself: it clears it.
pub(crate) fn suite_range_reads_across_ranges(c: &dyn TestCluster, connect: Connector) {
    let nodes = nodes(c, connect);
    let mut kvs = clients(&nodes, connect);
    let users = Some("users");
    let mut first = vec![op("clear_range", b"", Some(b"\xff"), users)];
    first.extend(RANGE_KEYS.iter().map(|k| {
        let value = [b"one:".as_slice(), k].concat();
        op("set", k, Some(&value), users)
    }));
    let second = vec![
        op("delete", b"d", None, users),
        op("delete", b"s", None, users),
        op("set", b"e", Some(b"two:e"), users),
        op("set", b"b", Some(b"two:b"), users),
        op("set", b"n", Some(b"two:n"), users),
        op("clear_range", b"k", Some(b"l\x01"), users),
        op("set", b"k\x80", Some(b"two:k\x80"), users),
        op("set", b"u", Some(b"two:u"), users),
    ];
    let mut model = BTreeMap::new();
    apply(&mut model, &first);
    let after_first: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
    apply(&mut model, &second);
    let after_second: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();

    let gateway = nodes.len() - 1;
    let rv = kvs[gateway].read_version();
    let cv1 = kvs[0].must_commit(rv, first, vec![]);
    let rv = kvs[gateway].read_version();
    let cv2 = kvs[gateway].must_commit(rv, second, vec![]);
    let all = users_range(None, None);
    let n = after_second.len();
    for (kv, &node) in kvs.iter_mut().zip(&nodes) {
        assert_range(kv, node, &all, cv1, &after_first, false);
        assert_range(kv, node, &all, cv2, &after_second, false);
        let r = kv.range(all.clone());
        assert!(
            r.success && kv_pairs(&r) == after_second && !r.has_more,
            "expected getRange of users through {node} to give the model, got {r:?}"
        );
        assert_range(
            kv,
            node,
            &users_range(None, Some(0)),
            cv2,
            &after_second,
            false,
        );
        // has_more tells exactly whether another key follows, wherever the limit falls.
        for limit in 1..=n + 1 {
            let page = &after_second[..limit.min(n)];
            let request = users_range(None, Some(i32::try_from(limit).expect("few keys")));
            assert_range(kv, node, &request, cv2, page, limit < n);
        }
        for offset in 0..=n {
            let page = &after_second[offset.min(n)..(offset + 2).min(n)];
            let request = GetRangeRequest {
                begin_offset: Some(i32::try_from(offset).expect("few keys")),
                ..users_range(None, Some(2))
            };
            assert_range(kv, node, &request, cv2, page, offset + 2 < n);
        }
        // Paging by the last key, three at a time, at one version.
        let mut paged = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        for _ in 0..=n {
            let request = GetRangeRequest {
                begin_or_equal: Some(after.is_none()),
                ..users_range(after.as_deref(), Some(3))
            };
            let r = reply(
                "snapshotGetRange",
                kv.snapshot_get_range(snapshot_range_of(&request, cv2)),
            );
            assert!(r.success, "expected a page through {node}: {r:?}");
            paged.extend(kv_pairs(&r));
            after = paged.last().map(|(k, _)| k.clone());
            if !r.has_more {
                break;
            }
        }
        assert_eq!(paged, after_second, "pages of three through {node}");
        // A range inside the column family that still crosses every split point.
        let request = GetRangeRequest {
            end_key: Some(b"t".to_vec()),
            end_or_equal: Some(true),
            ..users_range(Some(b"c"), None)
        };
        let inside: Vec<_> = after_second
            .iter()
            .filter(|(k, _)| k.as_slice() >= b"c".as_slice() && k.as_slice() <= b"t".as_slice())
            .cloned()
            .collect();
        assert_range(kv, node, &request, cv2, &inside, false);
    }
}

/// A commit across ranges with versionstamped keys and values: operation `i` is stamped
/// `committed_version ‖ i` in every range, a versionstamped key whose stamp is the whole key
/// (so it may land in any range) included, and nothing is visible just below the commit.
pub(crate) fn suite_versionstamps_across_ranges(c: &dyn TestCluster, connect: Connector) {
    let nodes = nodes(c, connect);
    let mut kvs = clients(&nodes, connect);
    let placeholder = [0xAA_u8; 10];
    let mut previous = 0;
    for gateway in 0..kvs.len() {
        let ns = fresh_ns("xr-vs");
        let plain = in_range(b'a', &ns, b"plain");
        let p1 = [in_range(b'e', &ns, b"op1/").as_slice(), &placeholder].concat();
        let k2 = in_range(b'm', &ns, b"op2");
        let v2 = [b"v2:".as_slice(), &placeholder].concat();
        let p3 = [in_range(b't', &ns, b"op3/").as_slice(), &placeholder].concat();
        let before = kvs[gateway].read_version();
        let cv = kvs[gateway].must_commit(
            before,
            vec![
                op_set(&plain, b"p"),
                op("SET_VERSIONSTAMPED_KEY", &p1, Some(b"one"), None),
                op("SET_VERSIONSTAMPED_VALUE", &k2, Some(&v2), None),
                op("SET_VERSIONSTAMPED_KEY", &p3, Some(b"three"), None),
                op("SET_VERSIONSTAMPED_KEY", &placeholder, Some(&ns), None),
            ],
            vec![],
        );
        let after = kvs[gateway].read_version();
        assert!(
            before < cv && cv <= after && cv > previous,
            "expected committed_version {cv} in ({before}, {after}] and above the previous \
             commit's {previous}"
        );
        previous = cv;
        let key1 = [&p1[..p1.len() - 10], &stamp(cv, 1)].concat();
        let val2 = [b"v2:".as_slice(), &stamp(cv, 2)].concat();
        let key3 = [&p3[..p3.len() - 10], &stamp(cv, 3)].concat();
        let key4 = stamp(cv, 4);
        assert_eq!(parse_stamp(&val2[3..]), (cv, 2));
        let written: [(&[u8], &[u8]); 5] = [
            (&plain, b"p"),
            (&key1, b"one"),
            (&k2, &val2),
            (&key3, b"three"),
            (&key4, &ns),
        ];
        for (kv, &node) in kvs.iter_mut().zip(&nodes) {
            for (k, v) in written {
                assert_at(kv, node, k, cv, Some(v));
                assert_at(kv, node, k, cv - 1, None);
            }
            // Nothing with the placeholder was written.
            assert_at(kv, node, &p1, cv, None);
            assert_at(kv, node, &placeholder, cv, None);
        }
    }
}
