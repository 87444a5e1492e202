//! Operators see every group of a sharded cluster (docs/sharding.md §12): three nodes, data
//! groups 1..=3 split at `g` and `n`, every node a replica of every group. Through the real
//! binary: `/status` on every node lists the data groups with their ranges, one leader each and
//! the versions applied; `/metrics` labels each group's gauges; `dolmen cluster status` prints
//! the group table; `dolmen cluster verify` compares every group's data across the replicas,
//! naming the groups, and its digest follows a change in one group only; `dolmen cluster
//! transfer-leader --group` moves a data group's leadership and refuses unknown groups and
//! targets by name. A standalone node answers as it did before groups existed.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test sharded_operations`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use dolmen_admin::{ErrorCode, GroupStatus, Method, NodeStatus, Role, TransferLeader};
use dolmen_tests::admin::admin;
use dolmen_tests::binary::{dolmen_bin, output_text};
use dolmen_tests::client::op_set;
use dolmen_tests::replicated::{wait_until, LEADER_TIMEOUT};
use dolmen_tests::{connect_buffered, KvExt, ReplicatedCluster, Standalone};

/// Each data group's id, a key it owns, its range as `/status` prints it, and its start and end
/// in `/status`'s hex.
const GROUPS: [(u64, &str, &str, &str, Option<&str>); 3] = [
    (1, "apple", "['', 'g')", "", Some("67")),
    (2, "house", "['g', 'n')", "67", Some("6e")),
    (3, "zebra", "['n', +inf)", "6e", None),
];

/// How long a follower may take to apply a commit, or a group to settle on one leader.
const SETTLE: Duration = Duration::from_secs(30);

fn sharded_cluster() -> ReplicatedCluster {
    ReplicatedCluster::builder()
        .set("sharding", "split_keys", vec!["g", "n"])
        // History kept so the digest of an earlier version can be taken again.
        .set("mvcc", "retention_window_ms", 120_000)
        .start()
}

/// Runs `dolmen cluster <command> --endpoints <every admin address>`: exit code and output.
fn dolmen_cluster(cluster: &ReplicatedCluster, command: &str) -> (Option<i32>, String) {
    dolmen_cluster_with(cluster, command, &[])
}

/// Runs `dolmen cluster <command> --endpoints <every admin address> <args>`: exit code and
/// output.
fn dolmen_cluster_with(
    cluster: &ReplicatedCluster,
    command: &str,
    args: &[&str],
) -> (Option<i32>, String) {
    let endpoints: Vec<String> = (0..cluster.node_count())
        .map(|i| cluster.admin_endpoint(i).to_string())
        .collect();
    let out = Command::new(dolmen_bin())
        .args(["cluster", command, "--endpoints", &endpoints.join(",")])
        .args(args)
        .output()
        .unwrap_or_else(|e| cluster.fail(&format!("run dolmen cluster {command}: {e}")));
    (out.status.code(), output_text(&out))
}

/// Writes `value` at each group's key through node 0; the commit version of each group's
/// write, by group id.
fn write_every_group(cluster: &ReplicatedCluster, value: &[u8]) -> BTreeMap<u64, u64> {
    let mut kv = connect_buffered(cluster.thrift_endpoint(0));
    GROUPS
        .iter()
        .map(|&(id, key, ..)| {
            let rv = kv.read_version();
            let cv = kv.must_commit(rv, vec![op_set(key.as_bytes(), value)], vec![]);
            (id, u64::try_from(cv).expect("a commit version is positive"))
        })
        .collect()
}

/// Every node's `/status` once each lists the groups with versions at least `commits`' and
/// every group has exactly one leader that every node names.
fn settled_statuses(cluster: &ReplicatedCluster, commits: &BTreeMap<u64, u64>) -> Vec<NodeStatus> {
    let mut last = Vec::new();
    let settled = wait_until(SETTLE, || {
        last = (0..cluster.node_count())
            .map(|i| cluster.status(i))
            .collect();
        let applied = last.iter().all(|s| {
            s.groups.len() == GROUPS.len()
                && s.groups
                    .iter()
                    .all(|g| g.applied_version >= commits.get(&g.id).copied().unwrap_or(0))
        });
        applied
            && GROUPS
                .iter()
                .all(|&(id, ..)| one_leader(&last, id).is_some())
    });
    if !settled {
        cluster.fail(&format!(
            "expected every node to list groups 1..=3, each with one leader and versions at \
             least {commits:?}, within {SETTLE:?}; last: {last:#?}"
        ));
    }
    last
}

/// The one node that leads group `id` when every status names it and it alone says leader.
fn one_leader(statuses: &[NodeStatus], id: u64) -> Option<u64> {
    let views: Vec<(u64, &GroupStatus)> = statuses
        .iter()
        .filter_map(|s| Some((s.node_id, s.groups.iter().find(|g| g.id == id)?)))
        .collect();
    let leaders: Vec<u64> = views
        .iter()
        .filter(|(_, g)| g.role == Role::Leader)
        .map(|(node, _)| *node)
        .collect();
    match leaders.as_slice() {
        [leader] if views.iter().all(|(_, g)| g.leader == Some(*leader)) => Some(*leader),
        _ => None,
    }
}

/// The value of the sample `name{group="id"}` in a Prometheus text.
fn group_sample(text: &str, name: &str, id: u64) -> Option<u64> {
    let prefix = format!("{name}{{group=\"{id}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The combined digest `verify` printed for its first endpoint.
fn printed_digest(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.split_once("  digest ").map(|(_, d)| d.trim().to_owned()))
        .unwrap_or_else(|| panic!("no digest line in:\n{output}"))
}

#[test]
fn every_node_reports_every_data_group_with_its_range_leader_and_versions() {
    let cluster = sharded_cluster();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let commits = write_every_group(&cluster, b"v1");
    let statuses = settled_statuses(&cluster, &commits);

    for status in &statuses {
        let node = status.node_id;
        let ids: Vec<u64> = status.groups.iter().map(|g| g.id).collect();
        assert_eq!(
            ids,
            vec![1, 2, 3],
            "node {node} lists the groups in key order"
        );
        for (group, &(id, _, range, start, end)) in status.groups.iter().zip(&GROUPS) {
            assert_eq!(
                (
                    group.range.as_str(),
                    group.start.as_str(),
                    group.end.as_deref()
                ),
                (range, start, end),
                "node {node}, group {id}"
            );
            assert!(
                group.term >= 1 && group.applied >= 1 && group.last_log >= group.applied,
                "node {node}, group {id}: {group:?}"
            );
            assert_eq!(group.running, None, "node {node}, group {id}");
        }
        // Group 0 (the oracle) is still the `raft` section.
        assert!(
            status.raft.is_some(),
            "node {node} keeps its group 0 section"
        );
    }

    // `/metrics`: each group's gauges under its label, one leader per group across the nodes.
    let texts: Vec<String> = (0..cluster.node_count())
        .map(|i| {
            admin(cluster.admin_endpoint(i))
                .metrics()
                .unwrap_or_else(|e| cluster.fail(&format!("/metrics of node {i}: {e}")))
        })
        .collect();
    for &(id, ..) in &GROUPS {
        let mut leaders = 0;
        for (i, text) in texts.iter().enumerate() {
            for name in [
                "dolmen_group_applied_index",
                "dolmen_group_last_log_index",
                "dolmen_group_term",
            ] {
                assert!(
                    group_sample(text, name, id).is_some_and(|v| v >= 1),
                    "node {i}: {name} of group {id} in:\n{text}"
                );
            }
            let applied = group_sample(text, "dolmen_group_applied_version", id);
            assert!(
                applied >= Some(commits[&id]),
                "node {i}: group {id} applied version {applied:?} < {}",
                commits[&id]
            );
            leaders += group_sample(text, "dolmen_group_is_leader", id)
                .unwrap_or_else(|| panic!("node {i}: no is_leader of group {id} in:\n{text}"));
        }
        assert_eq!(leaders, 1, "exactly one node leads group {id}");
    }

    // `dolmen cluster status`: after the node table, one row per group with its range, the
    // leader every node names, and every member answering.
    let (code, output) = dolmen_cluster(&cluster, "status");
    assert_eq!(code, Some(0), "dolmen cluster status: {output}");
    let header = output
        .lines()
        .position(|l| l.trim_start().starts_with("group  range"))
        .unwrap_or_else(|| panic!("no group table in:\n{output}"));
    let rows: Vec<&str> = output.lines().skip(header + 1).collect();
    assert_eq!(rows.len(), GROUPS.len(), "one row per group:\n{output}");
    for (row, &(id, _, range, ..)) in rows.iter().zip(&GROUPS) {
        let leader = one_leader(&statuses, id).expect("settled");
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields.first(), Some(&id.to_string().as_str()), "{row}");
        assert!(row.contains(range), "group {id}'s range in {row:?}");
        assert!(
            row.ends_with("3/3"),
            "every member reported group {id}: {row:?}"
        );
        // group, range (2 words), leader, term, applied, lag, members.
        assert_eq!(fields.len(), 8, "{row:?}");
        assert_eq!(
            fields[3],
            leader.to_string(),
            "group {id}'s leader: {row:?}"
        );
    }
}

#[test]
fn verify_compares_every_data_group_and_follows_a_change_in_one() {
    let cluster = sharded_cluster();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let commits = write_every_group(&cluster, b"v1");
    settled_statuses(&cluster, &commits);

    let (code, first) = dolmen_cluster(&cluster, "verify");
    assert_eq!(code, Some(0), "dolmen cluster verify: {first}");
    assert!(
        first.contains("in every group (1, 2, 3)"),
        "verify names the groups compared: {first}"
    );
    for &(id, _, range, ..) in &GROUPS {
        assert!(
            first
                .lines()
                .any(|l| l.starts_with(&format!("group {id:>4}"))
                    && l.contains(range)
                    && l.contains("match")),
            "group {id} compared: {first}"
        );
    }
    let before = printed_digest(&first);

    // Every node gives the same per-group digests at one version; group 0 is not among them.
    let version = *commits.values().max().expect("three commits");
    let digests: Vec<_> = (0..cluster.node_count())
        .map(|i| {
            admin(cluster.admin_endpoint(i))
                .grouped_digest(Some(version))
                .unwrap_or_else(|e| cluster.fail(&format!("digest of node {i} at {version}: {e}")))
        })
        .collect();
    for d in &digests {
        assert_eq!(d, &digests[0], "replicas agree at {version}");
        let ids: Vec<u64> = d.groups.iter().map(|g| g.id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }

    // A change in group 2 only: verify passes again with another digest; only group 2's moved.
    let mut kv = connect_buffered(cluster.thrift_endpoint(1));
    let rv = kv.read_version();
    let changed = kv.must_commit(rv, vec![op_set(b"house", b"v2")], vec![]);
    let changed = u64::try_from(changed).expect("a positive version");
    let mut after_change = commits.clone();
    after_change.insert(2, changed);
    settled_statuses(&cluster, &after_change);
    let (code, second) = dolmen_cluster(&cluster, "verify");
    assert_eq!(
        code,
        Some(0),
        "dolmen cluster verify after a change: {second}"
    );
    assert_ne!(
        printed_digest(&second),
        before,
        "the digest follows the change in group 2:\n{first}\n{second}"
    );
    let later = admin(cluster.admin_endpoint(2))
        .grouped_digest(Some(changed))
        .unwrap_or_else(|e| cluster.fail(&format!("digest at {changed}: {e}")));
    let earlier = &digests[0];
    assert_ne!(later.digest, earlier.digest);
    assert_eq!(later.groups[0], earlier.groups[0], "group 1 did not change");
    assert_ne!(
        later.groups[1].digest, earlier.groups[1].digest,
        "group 2 changed"
    );
    assert_eq!(later.groups[2], earlier.groups[2], "group 3 did not change");
    // The earlier version still digests as it did: the digest is of the data at V.
    let again = admin(cluster.admin_endpoint(1))
        .grouped_digest(Some(version))
        .unwrap_or_else(|e| cluster.fail(&format!("digest at {version} again: {e}")));
    assert_eq!(&again, earlier);
}

/// Group `id`'s leader in the group table `dolmen cluster status` printed.
fn printed_group_leader(output: &str, id: u64) -> Option<u64> {
    let header = output
        .lines()
        .position(|l| l.trim_start().starts_with("group  range"))?;
    output.lines().skip(header + 1).find_map(|row| {
        let fields: Vec<&str> = row.split_whitespace().collect();
        // group, range (2 words), leader, term, applied, lag, members.
        (fields.first() == Some(&id.to_string().as_str()))
            .then(|| fields.get(3)?.parse().ok())
            .flatten()
    })
}

#[test]
fn a_data_groups_leadership_moves_on_request_and_bad_transfers_are_refused_by_name() {
    // Leader placement off: it would hand the group back to its preferred node.
    let cluster = ReplicatedCluster::builder()
        .set("sharding", "split_keys", vec!["g", "n"])
        .set("sharding", "place_leaders", false)
        .start();
    cluster.wait_for_leader(LEADER_TIMEOUT);
    let commits = write_every_group(&cluster, b"v1");
    let statuses = settled_statuses(&cluster, &commits);
    let group = 2;
    let from = one_leader(&statuses, group).expect("settled");
    let to = (from + 1) % cluster.node_count() as u64;

    // Through the CLI, given every node: the one leading group 2 acts.
    let (code, output) = dolmen_cluster_with(
        &cluster,
        "transfer-leader",
        &["--to", &to.to_string(), "--group", &group.to_string()],
    );
    assert_eq!(code, Some(0), "transfer-leader --group {group}: {output}");
    assert_eq!(output.trim(), "changed", "{output}");
    // `cluster status` shows it, once every member names the new leader.
    let mut printed = String::new();
    let shown = wait_until(SETTLE, || {
        let (code, output) = dolmen_cluster(&cluster, "status");
        printed = output;
        code == Some(0) && printed_group_leader(&printed, group) == Some(to)
    });
    assert!(
        shown,
        "cluster status names node {to} as group {group}'s leader within {SETTLE:?}:\n{printed}"
    );
    let statuses = settled_statuses(&cluster, &commits);
    assert_eq!(one_leader(&statuses, group), Some(to), "{statuses:#?}");
    // Asking again is `unchanged`.
    let (code, output) = dolmen_cluster_with(
        &cluster,
        "transfer-leader",
        &["--to", &to.to_string(), "--group", &group.to_string()],
    );
    assert_eq!((code, output.trim()), (Some(0), "unchanged"), "{output}");

    // A node that does not lead group 2 refuses with `not_leader`, naming its leader.
    let follower = (to + 1) % cluster.node_count() as u64;
    let refused = admin(cluster.admin_endpoint(follower as usize))
        .with_timeout(SETTLE)
        .transfer_group_leader(TransferLeader {
            to: follower,
            group,
        })
        .expect_err("the follower does not lead the group");
    assert!(refused.is_not_leader(), "{refused}");
    assert_eq!(refused.leader(), Some(to), "{refused}");
    assert!(
        refused
            .to_string()
            .contains(&format!("is not the leader of data group {group}")),
        "{refused}"
    );

    // A group that does not exist, and a target that is not a voter: 400, exit 1, named.
    let (code, output) =
        dolmen_cluster_with(&cluster, "transfer-leader", &["--to", "1", "--group", "9"]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("there is no group 9: this node runs groups 0, 1, 2, 3"),
        "{output}"
    );
    let (code, output) =
        dolmen_cluster_with(&cluster, "transfer-leader", &["--to", "7", "--group", "3"]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("node 7 is not a voter of data group 3 (its voters are 0, 1, 2)"),
        "{output}"
    );
    let refused = admin(cluster.admin_endpoint(0))
        .transfer_group_leader(TransferLeader { to: 1, group: 9 })
        .expect_err("no group 9");
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(400), Some(ErrorCode::InvalidRequest)),
        "{refused}"
    );

    // Without --group it is group 0's, as before sharding.
    let meta = cluster.wait_for_leader(LEADER_TIMEOUT);
    let (code, output) =
        dolmen_cluster_with(&cluster, "transfer-leader", &["--to", &meta.to_string()]);
    assert_eq!((code, output.trim()), (Some(0), "unchanged"), "{output}");
}

#[test]
fn a_standalone_node_answers_without_groups() {
    let node = Standalone::start();
    let mut kv = connect_buffered(node.thrift_endpoint());
    kv.must_set(b"k", b"v");
    let client = admin(node.admin_endpoint());
    let status: serde_json::Value = client.json(Method::GET, "/status", None).expect("/status");
    assert!(status.get("groups").is_none(), "no groups field: {status}");
    let digest: serde_json::Value = client
        .json(Method::GET, "/state/digest", None)
        .expect("/state/digest");
    let mut fields: Vec<&String> = digest.as_object().expect("an object").keys().collect();
    fields.sort();
    assert_eq!(fields, ["digest", "version"], "{digest}");
    let metrics = client.metrics().expect("/metrics");
    assert!(
        metrics.contains("dolmen_term ") && !metrics.contains("dolmen_group_"),
        "{metrics}"
    );
}
