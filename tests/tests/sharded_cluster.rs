//! A sharded cluster (docs/sharding.md §2, §5, §6.2): three nodes, group 0 holding the oracle
//! and four data groups split at `sh/b`, `sh/d` and `sh/f`, every node a replica of every
//! group. Through the real binary and a stock Thrift client on every node: each key is served
//! by the group that owns it, range reads across the boundaries keep WIRE §3's offset, limit
//! and `has_more`, snapshot reads at a version see exactly the commits at or below it in every
//! group, versions and versionstamps increase in commit order across groups, a commit that
//! spans groups applies in each at one version (two-phase commit), a coordinator killed at any
//! step leaves every key readable and all-or-nothing, a killed node's groups fail over, and
//! each group's leadership goes to its preferred node after start and when that node returns,
//! and reads through every node ride through leadership transfers of every group.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test sharded_cluster`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_admin::TransferLeader;
use dolmen_tests::admin::admin;
use dolmen_tests::client::{op, op_set};
use dolmen_tests::kvstore::{GetRangeRequest, TTransactionalKVSyncClient};
use dolmen_tests::replicated::LEADER_TIMEOUT;
use dolmen_tests::{connect_buffered, connect_framed, KvClient, KvExt, ReplicatedCluster};

/// Keys of the four data groups: `sh/a…` in group 1, `sh/c…` in 2, `sh/e…` in 3, `sh/g…` in 4.
const RANGES: [&str; 4] = ["sh/a", "sh/c", "sh/e", "sh/g"];

fn sharded_cluster() -> ReplicatedCluster {
    ReplicatedCluster::builder()
        .set("sharding", "split_keys", vec!["sh/b", "sh/d", "sh/f"])
        // History kept for the snapshot reads of these tests.
        .set("mvcc", "retention_window_ms", 120_000)
        .start()
}

fn range(begin: &[u8], end: &[u8], offset: Option<i32>, limit: Option<i32>) -> GetRangeRequest {
    GetRangeRequest::new(
        begin.to_vec(),
        end.to_vec(),
        offset,
        None::<bool>,
        None::<i32>,
        None::<bool>,
        limit,
        None::<String>,
    )
}

fn keys_of(kv: &mut KvClient, request: GetRangeRequest) -> (Vec<String>, bool) {
    let page = kv.range(request);
    assert!(
        page.success && page.error.is_none(),
        "getRange failed: {page:?}"
    );
    let keys = page
        .key_values
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect();
    (keys, page.has_more)
}

/// Retries `f` (a call that may meet a failover) until it returns `Some`, for at most `limit`.
fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(done) = f() {
            return done;
        }
        assert!(start.elapsed() < limit, "no success within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_node_routes_reads_and_single_shard_commits_to_the_owning_group() {
    let cluster = sharded_cluster();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let nodes = cluster.node_count();
    let mut clients: Vec<KvClient> = (0..nodes)
        .map(|i| {
            if i % 2 == 0 {
                connect_buffered(cluster.thrift_endpoint(i))
            } else {
                connect_framed(cluster.thrift_endpoint(i))
            }
        })
        .collect();

    // Every node writes one key into every range; versions increase in commit order whichever
    // group took the commit.
    let mut last = 0;
    let mut written = Vec::new();
    for (i, kv) in clients.iter_mut().enumerate() {
        for prefix in RANGES {
            let key = format!("{prefix}{i}");
            let rv = kv.read_version();
            assert!(
                rv >= last,
                "read version {rv} below the commit before it ({last})"
            );
            let cv = kv.must_commit(rv, vec![op_set(key.as_bytes(), b"v1")], vec![]);
            assert!(
                cv > last,
                "commit version {cv} not above the one before ({last})"
            );
            last = cv;
            written.push(key);
        }
    }
    written.sort();
    let before_update = last;

    // Every node reads every key, and the whole range in key order across the boundaries.
    for kv in &mut clients {
        for key in &written {
            let got = kv.get_value(key.as_bytes());
            assert!(got.found && got.value == b"v1", "{key}: {got:?}");
        }
        let (all, more) = keys_of(kv, range(b"sh/", b"sh/\xff", None, None));
        assert_eq!(all, written, "a range read across four groups");
        assert!(!more);
        // An offset and a limit that cross boundaries: keys 2..7 of 12, more after.
        let (page, more) = keys_of(kv, range(b"sh/", b"sh/\xff", Some(2), Some(5)));
        assert_eq!(page, written[2..7].to_vec());
        assert!(more, "keys remain after the page");
        // A page that ends exactly at the last key says no more.
        let (tail, more) = keys_of(kv, range(b"sh/", b"sh/\xff", Some(9), Some(3)));
        assert_eq!(tail, written[9..].to_vec());
        assert!(!more, "the page ends at the last key");
    }

    // Updates in every range; a snapshot read at the version before them sees the old values
    // in every group, through every node.
    for (n, prefix) in RANGES.iter().enumerate() {
        let key = format!("{prefix}0");
        let kv = &mut clients[n % nodes];
        let rv = kv.read_version();
        kv.must_commit(rv, vec![op_set(key.as_bytes(), b"v2")], vec![]);
    }
    for kv in &mut clients {
        for prefix in RANGES {
            let key = format!("{prefix}0");
            let old = kv.snapshot_read_in(key.as_bytes(), before_update, None);
            assert!(
                old.found && old.value == b"v1",
                "{key} at {before_update}: {old:?}"
            );
            let new = kv.get_value(key.as_bytes());
            assert!(new.found && new.value == b"v2", "{key} now: {new:?}");
        }
    }

    // Versionstamped values in different groups: stamps increase in commit order.
    let mut previous = 0i64;
    for (n, prefix) in RANGES.iter().enumerate() {
        let key = format!("{prefix}stamp");
        let kv = &mut clients[(n + 1) % nodes];
        let rv = kv.read_version();
        let cv = kv.must_commit(
            rv,
            vec![op(
                "SET_VERSIONSTAMPED_VALUE",
                key.as_bytes(),
                Some(&[0u8; 10]),
                None,
            )],
            vec![],
        );
        let value = kv.get_value(key.as_bytes());
        let stamp = i64::from_be_bytes(value.value[..8].try_into().expect("a 10-byte stamp"));
        assert_eq!(stamp, cv, "the stamp carries the commit version");
        assert!(stamp > previous, "stamps increase across groups");
        previous = stamp;
    }

    // Conflicts are still detected inside a group.
    let kv = &mut clients[1];
    let rv = kv.read_version();
    clients[2].must_set(b"sh/c0", b"v3");
    let r = clients[1].commit(rv, vec![op_set(b"sh/c9", b"x")], vec![b"sh/c0".to_vec()]);
    assert!(
        !r.success,
        "a read-conflict key written after the read version: {r:?}"
    );
    assert_eq!(r.error_code.as_deref(), Some("CONFLICT"), "{r:?}");

    // A commit spanning groups 1 and 4 commits both halves at one version.
    let kv = &mut clients[0];
    let rv = kv.read_version();
    let version = kv.must_commit(
        rv,
        vec![op_set(b"sh/a-span", b"x"), op_set(b"sh/g-span", b"x")],
        vec![b"sh/c0".to_vec()],
    );
    for key in [b"sh/a-span".as_slice(), b"sh/g-span"] {
        let at = clients[2].snapshot_read_in(key, version, None);
        assert!(at.found && at.value == b"x", "{at:?}");
        let before = clients[1].snapshot_read_in(key, version - 1, None);
        assert!(
            !before.found,
            "nothing below the commit version: {before:?}"
        );
    }

    // getRange on a whole column family spans every group and is in key order.
    let page = clients[2].get_range(GetRangeRequest::new(
        Vec::new(),
        vec![0xff],
        None::<i32>,
        None::<bool>,
        None::<i32>,
        None::<bool>,
        Some(1000),
        None::<String>,
    ));
    let page = page.expect("getRange");
    let keys: Vec<&[u8]> = page.key_values.iter().map(|kv| kv.key.as_slice()).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "key order across groups"
    );
    assert_eq!(keys.len(), written.len() + RANGES.len() + 2);
}

#[test]
fn a_killed_node_leaves_every_group_serving_and_every_acknowledged_write_readable() {
    let mut cluster = sharded_cluster();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut kv = connect_buffered(cluster.thrift_endpoint(0));
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        for prefix in RANGES {
            let key = format!("{prefix}kill-{round}");
            kv.must_set(key.as_bytes(), b"before");
            acknowledged.push(key);
        }
    }
    let read_version = kv.read_version();

    // Node 0 leads group 0 or some data groups, or both: after it is killed the others elect
    // new leaders for them and keep serving every range.
    cluster.kill9(0);
    let mut survivor = connect_framed(cluster.thrift_endpoint(1));
    for prefix in RANGES {
        let key = format!("{prefix}kill-after");
        eventually(Duration::from_secs(30), || {
            let r = survivor.set_in(key.as_bytes(), b"after", None);
            r.success.then_some(())
        });
        acknowledged.push(key);
    }
    let mut other = connect_buffered(cluster.thrift_endpoint(2));
    for key in &acknowledged {
        let got = eventually(Duration::from_secs(30), || {
            let got = other.get_value(key.as_bytes());
            got.error.is_none().then_some(got)
        });
        assert!(
            got.found,
            "{key} was acknowledged and must be readable: {got:?}"
        );
    }
    // The snapshot from before the kill still reads the same in every group.
    for key in acknowledged
        .iter()
        .filter(|k| k.contains("kill-") && !k.ends_with("after"))
    {
        let old = other.snapshot_read_in(key.as_bytes(), read_version, None);
        assert!(
            old.found && old.value == b"before",
            "{key} at {read_version}: {old:?}"
        );
    }
    for key in acknowledged.iter().filter(|k| k.ends_with("after")) {
        let old = other.snapshot_read_in(key.as_bytes(), read_version, None);
        assert!(
            !old.found,
            "{key} was written after {read_version}: {old:?}"
        );
    }
}

/// Each data group's leader by node, when every answering node names the same one and it
/// alone says it leads: `leaders[g - 1]`, `None` for a group not settled. Nodes in `down` are
/// not asked.
fn group_leaders(cluster: &ReplicatedCluster, down: &[usize]) -> Vec<Option<u64>> {
    let statuses: Vec<_> = (0..cluster.node_count())
        .filter(|i| !down.contains(i))
        .filter_map(|i| cluster.try_status(i).ok())
        .collect();
    (1..=RANGES.len() as u64)
        .map(|id| {
            let views: Vec<_> = statuses
                .iter()
                .filter_map(|s| Some((s.node_id, s.groups.iter().find(|g| g.id == id)?)))
                .collect();
            let claims: Vec<u64> = views
                .iter()
                .filter(|(_, g)| g.role == dolmen_admin::Role::Leader)
                .map(|(node, _)| *node)
                .collect();
            match claims.as_slice() {
                [leader]
                    if views.len() == statuses.len()
                        && views.iter().all(|(_, g)| g.leader == Some(*leader)) =>
                {
                    Some(*leader)
                }
                _ => None,
            }
        })
        .collect()
}

/// Waits (at most `limit`) until `wanted(leaders)` holds for [`group_leaders`]; the last
/// leaders seen otherwise, with the nodes' logs.
fn wait_leaders(
    cluster: &ReplicatedCluster,
    down: &[usize],
    limit: Duration,
    what: &str,
    wanted: impl Fn(&[Option<u64>]) -> bool,
) {
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < limit {
        last = group_leaders(cluster, down);
        if wanted(&last) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.fail(&format!(
        "{what} within {limit:?}; the data groups' leaders (groups 1..=4) were {last:?}"
    ));
}

/// How long placement may take to move every group (a few election timeouts per move, one
/// move at a time per node, after the groups' first elections).
const PLACEMENT: Duration = Duration::from_secs(60);

#[test]
fn data_group_leaderships_go_to_their_preferred_nodes_and_back_to_a_node_that_returns() {
    let mut cluster = sharded_cluster();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    // Group g prefers node (g − 1) mod 3: 0, 1, 2, 0 (docs/sharding.md §4.5).
    let preferred: Vec<Option<u64>> = (0..RANGES.len() as u64).map(|g| Some(g % 3)).collect();
    wait_leaders(
        &cluster,
        &[],
        PLACEMENT,
        "every data group led by its preferred node",
        |leaders| leaders == preferred.as_slice(),
    );

    // Node 1 goes: group 2, which it leads, fails over and keeps serving.
    cluster.kill9(1);
    wait_leaders(
        &cluster,
        &[1],
        PLACEMENT,
        "group 2 led by node 0 or 2 after node 1 was killed",
        |leaders| leaders[1].is_some_and(|l| l != 1),
    );
    let mut kv = connect_buffered(cluster.thrift_endpoint(0));
    let key = format!("{}while-away", RANGES[1]);
    eventually(Duration::from_secs(30), || {
        kv.set_in(key.as_bytes(), b"v", None).success.then_some(())
    });

    // It returns: once it has caught up, group 2's leader hands the group back to it.
    cluster.start(1);
    wait_leaders(
        &cluster,
        &[],
        PLACEMENT,
        "every data group led by its preferred node again after node 1 returned",
        |leaders| leaders == preferred.as_slice(),
    );
    // The move is in the log of the node that made it.
    let moved = (0..cluster.node_count()).any(|i| {
        std::fs::read_to_string(cluster.log_path(i)).is_ok_and(|log| {
            log.lines().any(|l| {
                l.contains("placement: the preferred node leads the group")
                    && l.contains("group=2")
                    && l.contains("to=1")
            })
        })
    });
    assert!(
        moved,
        "no node logged moving group 2 to node 1:\n{}",
        cluster.log_tails(40)
    );
    let mut kv = connect_framed(cluster.thrift_endpoint(1));
    let got = eventually(Duration::from_secs(30), || {
        let got = kv.get_value(key.as_bytes());
        got.error.is_none().then_some(got)
    });
    assert!(got.found, "{key} written while node 1 was away: {got:?}");
}

/// Versionstamped keys whose versions cross a split point: the cluster is split at the key
/// `be64(t)` for a time `t` a few seconds ahead, and bare versionstamped keys (an empty prefix:
/// the key is the stamp) are written before and after `t`. Each goes to the group its lowest
/// possible version points at; one that lands past that group's end is refused there with
/// nothing applied and routed again. Every write succeeds, through every node, and every key
/// it returns holds its value.
#[test]
fn versionstamped_keys_follow_their_versions_across_a_split_point() {
    let split_at = dolmen_tests::client::now_micros() + 4_000_000;
    let split_key = format!("hex:{:016x}", split_at);
    let cluster = ReplicatedCluster::builder()
        .set("sharding", "split_keys", vec![split_key.as_str()])
        .start();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut clients: Vec<KvClient> = (0..cluster.node_count())
        .map(|i| connect_buffered(cluster.thrift_endpoint(i)))
        .collect();
    let mut written = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0usize;
    while dolmen_tests::client::now_micros() < split_at + 2_000_000 {
        assert!(
            Instant::now() < deadline,
            "the split point was never passed"
        );
        let kv = &mut clients[n % 3];
        let r = kv
            .set_versionstamped_key(dolmen_tests::kvstore::SetVersionstampedKeyRequest::new(
                vec![0u8; 10],
                format!("v{n}").into_bytes(),
                None::<String>,
            ))
            .expect("setVersionstampedKey");
        assert!(r.success, "write {n}: {r:?}");
        written.push((r.generated_key, format!("v{n}")));
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let below = written
        .iter()
        .filter(|(key, _)| key.as_slice() < split_at.to_be_bytes().as_slice())
        .count();
    assert!(
        below > 0 && below < written.len(),
        "keys on both sides of the split: {below} of {}",
        written.len()
    );
    for (key, value) in &written {
        let got = clients[1].get_value(key);
        assert!(
            got.found && got.value == value.as_bytes(),
            "{key:?}: {got:?}"
        );
    }
}

/// Idle data groups hibernate (`[sharding] hibernate_after_ms`, docs/sharding.md §8.3) and
/// come back for every kind of request, through every node; after the node that leads some of
/// them is killed while they sleep, the others notice its beats stop, elect, and serve every
/// acknowledged write.
#[test]
fn hibernated_groups_wake_for_reads_and_writes_and_elect_after_a_kill() {
    let mut cluster = ReplicatedCluster::builder()
        .set("sharding", "split_keys", vec!["sh/b", "sh/d", "sh/f"])
        .set("sharding", "hibernate_after_ms", 1000)
        .set("mvcc", "retention_window_ms", 120_000)
        .start();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut kv = connect_buffered(cluster.thrift_endpoint(0));
    for prefix in RANGES {
        kv.must_set(format!("{prefix}sleep-0").as_bytes(), b"v0");
    }
    for round in 1..=2 {
        // Longer than hibernate_after plus a few beats: the groups sleep, on every node.
        let start = Instant::now();
        loop {
            let asleep: usize = (0..cluster.node_count())
                .map(|i| hibernating(&cluster, i))
                .sum();
            if asleep == RANGES.len() * cluster.node_count() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "round {round}: {asleep} of {} group replicas hibernate",
                RANGES.len() * cluster.node_count()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        for node in 0..cluster.node_count() {
            let mut kv = connect_framed(cluster.thrift_endpoint(node));
            for prefix in RANGES {
                let old = format!("{prefix}sleep-{}", round - 1);
                let got = kv.get_value(old.as_bytes());
                assert!(got.found, "node {node}, round {round}: {old}: {got:?}");
                let (keys, _) = keys_of(&mut kv, range(b"sh/", b"sh/\xff", None, None));
                assert!(keys.contains(&old), "node {node}: a range read sees {old}");
            }
        }
        let mut kv = connect_buffered(cluster.thrift_endpoint(round % 3));
        for prefix in RANGES {
            kv.must_set(format!("{prefix}sleep-{round}").as_bytes(), b"v");
        }
    }
    let start = Instant::now();
    while hibernating(&cluster, 0) < RANGES.len() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the groups sleep again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.kill9(0);
    let mut survivor = connect_buffered(cluster.thrift_endpoint(2));
    for prefix in RANGES {
        let key = format!("{prefix}sleep-after-kill");
        eventually(Duration::from_secs(30), || {
            survivor
                .set_in(key.as_bytes(), b"v", None)
                .success
                .then_some(())
        });
        for round in 0..=2 {
            let old = format!("{prefix}sleep-{round}");
            let got = survivor.get_value(old.as_bytes());
            assert!(got.found, "{old} after the kill: {got:?}");
        }
    }
}

/// How many data groups hibernate on node `node`, from its `/metrics`.
fn hibernating(cluster: &ReplicatedCluster, node: usize) -> usize {
    let text = dolmen_tests::admin::admin(cluster.admin_endpoint(node))
        .metrics()
        .unwrap_or_else(|e| panic!("/metrics of node {node}: {e}"));
    text.lines()
        .filter(|line| line.starts_with("dolmen_group_hibernating{") && line.ends_with(" 1"))
        .count()
}

/// How many locks of commits across groups the data groups hold on node `node`, from its
/// `/metrics`.
fn locks_held(cluster: &ReplicatedCluster, node: usize) -> u64 {
    let text = dolmen_tests::admin::admin(cluster.admin_endpoint(node))
        .metrics()
        .unwrap_or_else(|e| panic!("/metrics of node {node}: {e}"));
    text.lines()
        .filter(|line| line.starts_with("dolmen_group_locks{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A coordinator killed at `point` of a commit across groups 1 and 4 (docs/sharding.md §6.5):
/// the other nodes resolve its locks (with `sweep_first`, the orphan sweeper alone, before any
/// read; otherwise readers that meet them), the two keys read the same on every node,
/// `committed` tells which value, and both take new writes. The coordinator restarts and
/// reads the same.
fn coordinator_killed_at(point: &str, committed: bool, sweep_first: bool) {
    let mut cluster = sharded_cluster();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let coordinator = 2;
    let keys = [b"sh/a-orphan".as_slice(), b"sh/g-orphan"];
    let mut kv = connect_buffered(cluster.thrift_endpoint(0));
    for key in keys {
        kv.must_set(key, b"before");
    }
    cluster.stop(coordinator);
    cluster.set_env(coordinator, &[("FAILPOINTS", &format!("{point}=return"))]);
    cluster.start(coordinator);
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let mut doomed = connect_framed(cluster.thrift_endpoint(coordinator));
    let rv = doomed.read_version();
    let request = dolmen_tests::kvstore::AtomicCommitRequest::new(
        rv,
        keys.iter().map(|k| op_set(k, b"after")).collect::<Vec<_>>(),
        Vec::<Vec<u8>>::new(),
        None,
    );
    // The process dies while it coordinates: the connection drops without an answer.
    let answer = doomed.atomic_commit(request);
    assert!(answer.is_err(), "the coordinator answered: {answer:?}");
    let status = cluster
        .wait_exited(coordinator, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("node {coordinator} did not die at {point}"));
    assert!(status.contains("SIGKILL"), "{status}");
    if sweep_first {
        for node in [0, 1] {
            eventually(Duration::from_secs(30), || {
                (locks_held(&cluster, node) == 0).then_some(())
            });
        }
    }

    let expected: &[u8] = if committed { b"after" } else { b"before" };
    for node in [0, 1] {
        let mut reader = connect_buffered(cluster.thrift_endpoint(node));
        for key in keys {
            let got = eventually(Duration::from_secs(30), || {
                let got = reader.get_value(key);
                got.error.is_none().then_some(got)
            });
            assert_eq!(
                got.value,
                expected,
                "{} on node {node} after a coordinator died at {point}",
                String::from_utf8_lossy(key)
            );
        }
    }
    // No lock is left in the way of new writes, single-range or across ranges.
    let rv = kv.read_version();
    kv.must_commit(
        rv,
        keys.iter().map(|k| op_set(k, b"again")).collect(),
        vec![],
    );
    // Released on every replica once it applied the resolves (a follower may be a little
    // behind its leader's answer).
    for node in [0, 1] {
        eventually(Duration::from_secs(10), || {
            (locks_held(&cluster, node) == 0).then_some(())
        });
    }
    cluster.set_env(coordinator, &[]);
    cluster.start(coordinator);
    let mut back = connect_buffered(cluster.thrift_endpoint(coordinator));
    for key in keys {
        let got = eventually(Duration::from_secs(30), || {
            let got = back.get_value(key);
            got.error.is_none().then_some(got)
        });
        assert_eq!(got.value, b"again");
    }
}

#[test]
fn a_coordinator_killed_after_every_prepare_leaves_an_aborted_orphan() {
    coordinator_killed_at("cross_shard::after_prepare", false, true);
}

#[test]
fn a_coordinator_killed_after_its_decision_leaves_a_commit_the_others_finish() {
    coordinator_killed_at("cross_shard::after_decide", true, false);
}

#[test]
fn a_coordinator_killed_after_one_resolve_leaves_a_commit_the_others_finish() {
    coordinator_killed_at("cross_shard::after_first_resolve", true, true);
}

/// Commits across ranges made at once through every gateway get distinct versions (each draws
/// its own commit version; read versions may be shared by batched reads, commit versions never).
#[test]
fn concurrent_commits_across_ranges_get_distinct_versions() {
    let cluster = sharded_cluster();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let nodes = cluster.node_count();
    let threads: Vec<_> = (0..12)
        .map(|t| {
            let endpoint = cluster.thrift_endpoint(t % nodes);
            std::thread::spawn(move || {
                let mut kv = connect_buffered(endpoint);
                (0..10)
                    .filter_map(|i| {
                        let keys = [format!("sh/a/c{t}-{i}"), format!("sh/g/c{t}-{i}")];
                        let rv = kv.read_version();
                        let ops = keys.iter().map(|k| op_set(k.as_bytes(), b"v")).collect();
                        let r = kv.commit(rv, ops, vec![]);
                        r.committed_version
                    })
                    .collect::<Vec<i64>>()
            })
        })
        .collect();
    let mut versions: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a client thread"))
        .collect();
    let committed = versions.len();
    assert!(committed >= 90, "most commits succeed: {committed} of 120");
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        committed,
        "every commit has its own version"
    );
}

/// Group `group`'s leader as node `node` sees it (group 0 in `raft`, data groups in `groups`).
fn leader_seen(cluster: &ReplicatedCluster, node: usize, group: u64) -> Option<u64> {
    let status = cluster.try_status(node).ok()?;
    if group == 0 {
        status.raft.and_then(|r| r.leader)
    } else {
        status.groups.iter().find(|g| g.id == group)?.leader
    }
}

/// Reads through every node while the leadership of group 0 (the oracle) and of each data
/// group moves twice: none fails. A read that meets the moment its group (or group 0) has no
/// known leader waits for the next one, within the leader wait, instead of answering
/// `UNAVAILABLE: no leader is known`.
#[test]
fn reads_through_every_node_ride_through_leadership_transfers_of_every_group() {
    let cluster = ReplicatedCluster::builder()
        .set("sharding", "split_keys", vec!["sh/b", "sh/d", "sh/f"])
        // Only this test moves leaderships.
        .set("sharding", "place_leaders", false)
        .start();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let keys: Vec<Vec<u8>> = RANGES
        .iter()
        .map(|r| format!("{r}-moving").into_bytes())
        .collect();
    let mut kv = connect_buffered(cluster.thrift_endpoint(0));
    for key in &keys {
        kv.must_set(key, b"here");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..cluster.node_count())
        .map(|node| {
            let (stop, keys) = (stop.clone(), keys.clone());
            let endpoint = cluster.thrift_endpoint(node);
            std::thread::spawn(move || {
                let mut kv = connect_buffered(endpoint);
                let (mut reads, mut failed) = (0u64, Vec::new());
                // Bounded by count as well as by the flag.
                while !stop.load(Ordering::SeqCst) && reads < 1_000_000 {
                    for key in &keys {
                        let t = Instant::now();
                        let got = kv.get_value(key);
                        reads += 1;
                        if got.error.is_some() || got.value != b"here" {
                            failed.push(format!("node {node}: {got:?} after {:?}", t.elapsed()));
                        }
                    }
                }
                (reads, failed)
            })
        })
        .collect();
    let mut moves = 0;
    for group in 0..=RANGES.len() as u64 {
        for _ in 0..2 {
            let leader = eventually(Duration::from_secs(30), || leader_seen(&cluster, 0, group));
            let to = (leader + 1) % cluster.node_count() as u64;
            admin(cluster.admin_endpoint(leader as usize))
                .with_timeout(Duration::from_secs(10))
                .transfer_group_leader(TransferLeader { to, group })
                .unwrap_or_else(|e| panic!("transfer group {group} from {leader} to {to}: {e}"));
            eventually(Duration::from_secs(30), || {
                (leader_seen(&cluster, 0, group) == Some(to)).then_some(())
            });
            moves += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for reader in readers {
        let (reads, failed) = reader.join().expect("a reader thread panicked");
        total += reads;
        assert!(
            failed.is_empty(),
            "{} of {reads} reads failed during {moves} leadership transfers, first: {}",
            failed.len(),
            failed[0]
        );
    }
    assert!(total > 0, "no read ran during the transfers");
}

/// Commits one at a time through every node, in one range and across two, each after a read
/// version taken once the one before was acknowledged, while group 0's leadership moves once:
/// every version is above the one before (the oracle never goes back in real time).
/// Returns how many commits there were.
fn sequential_commits_increase(cluster: &ReplicatedCluster) -> u64 {
    let mut clients: Vec<KvClient> = (0..cluster.node_count())
        .map(|node| connect_buffered(cluster.thrift_endpoint(node)))
        .collect();
    let (mut last, mut commits) = (0i64, 0u64);
    for round in 0..40 {
        if round == 20 {
            let leader = eventually(Duration::from_secs(30), || leader_seen(cluster, 0, 0));
            let to = (leader + 1) % cluster.node_count() as u64;
            admin(cluster.admin_endpoint(leader as usize))
                .with_timeout(Duration::from_secs(10))
                .transfer_group_leader(TransferLeader { to, group: 0 })
                .unwrap_or_else(|e| panic!("transfer group 0 from {leader} to {to}: {e}"));
        }
        let nodes = clients.len();
        let kv = &mut clients[round % nodes];
        let rv = kv.read_version();
        assert!(rv >= last, "read version {rv} below the last commit {last}");
        let keys = if round % 4 == 0 {
            vec![format!("sh/a/seq{round}"), format!("sh/g/seq{round}")]
        } else {
            vec![format!("{}/seq{round}", RANGES[round % RANGES.len()])]
        };
        let ops = keys.iter().map(|k| op_set(k.as_bytes(), b"v")).collect();
        let r = kv.commit(rv, ops, vec![]);
        let version = r
            .committed_version
            .unwrap_or_else(|| panic!("commit {round} failed: {r:?}"));
        assert!(
            version > rv && version > last,
            "commit {round} at {version}, after {last}"
        );
        last = version;
        commits += 1;
    }
    commits
}

/// Under `[reads] consistency_level = "lease"` group 0's leader confirms oracle grants by its
/// leader lease instead of a ReadIndex round each (docs/sharding.md §3.2); under the default
/// `linearizable`, by a round each. Either way versions increase in real time across a
/// leadership transfer of group 0.
#[test]
fn oracle_grants_are_confirmed_by_the_lease_only_under_lease_reads() {
    for lease in [true, false] {
        let mut builder = ReplicatedCluster::builder().set(
            "sharding",
            "split_keys",
            vec!["sh/b", "sh/d", "sh/f"],
        );
        if lease {
            builder = builder.set("reads", "consistency_level", "lease");
        }
        let cluster = builder.start();
        cluster.wait_for_leader(LEADER_TIMEOUT);
        // At least a read version and a commit version per commit, each its own grant.
        cluster.assert_confirmed_by(
            "dolmen_oracle_confirmations_total",
            lease,
            2,
            "commits",
            || sequential_commits_increase(&cluster),
        );
    }
}
