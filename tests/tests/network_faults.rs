//! The test-only network fault layer (`[faults] allow_network_faults`, admin
//! `/debug/network-faults`) and the planted bug the chaos suite must catch
//! (`[faults] unsafe_stale_reads`), on real 3-node clusters:
//! - rules are refused unless the node allows them, and bad rules are refused naming the field;
//! - cutting the leader off with drop rules elects another leader, and the cut-off node never
//!   answers a linearizable read with its stale value; after the rules are cleared every replica
//!   converges;
//! - duplicated and delayed Raft messages lose no acknowledged write;
//! - with the planted bug, a cut-off follower serves a stale value (what the checker must see).
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace -- network_faults`.

use std::time::Duration;

use dolmen_admin::{ErrorCode, Rule, RuleAction, RuleSet};
use dolmen_tests::admin::admin;
use dolmen_tests::client::connect_buffered;
use dolmen_tests::kvstore::{GetRequest, TTransactionalKVSyncClient};
use dolmen_tests::replicated::{
    check_writes, summarize, try_connect, unique_prefix, wait_until, WriteKind, WriteLoad,
    WriteLoadConfig, LEADER_TIMEOUT,
};
use dolmen_tests::{KvExt, ReplicatedCluster};

/// What a linearizable `get` through one node gave.
#[derive(Debug, PartialEq, Eq)]
enum ReadAnswer {
    /// The key's value.
    Found(Vec<u8>),
    /// The key is absent.
    NotFound,
    /// The node answered with an error.
    Refused(String),
    /// No answer (connect or transport failure).
    Transport(String),
}

/// A linearizable `get` of `key` through `node`.
fn get(c: &ReplicatedCluster, node: usize, key: &[u8]) -> ReadAnswer {
    let mut kv = match try_connect(c.thrift_endpoint(node)) {
        Ok(kv) => kv,
        Err(e) => return ReadAnswer::Transport(format!("connect: {e}")),
    };
    match kv.get(GetRequest::new(key.to_vec(), None)) {
        Err(e) => ReadAnswer::Transport(e.to_string()),
        Ok(r) => match (r.error, r.found) {
            (Some(e), _) => ReadAnswer::Refused(e),
            (None, true) => ReadAnswer::Found(r.value),
            (None, false) => ReadAnswer::NotFound,
        },
    }
}

fn faulty_cluster() -> dolmen_tests::replicated::ReplicatedBuilder {
    ReplicatedCluster::builder()
        .set("faults", "allow_network_faults", true)
        .set("mvcc", "retention_window_ms", 600_000)
}

#[test]
fn network_rules_are_validated_and_refused_unless_allowed() {
    let c = ReplicatedCluster::builder()
        .set_node(0, "faults", "allow_network_faults", true)
        .start();
    c.wait_for_leader(LEADER_TIMEOUT);

    let refused = admin(c.admin_endpoint(1))
        .set_network_faults(&RuleSet::default())
        .expect_err("node 1 does not allow network faults");
    assert_eq!(refused.status(), Some(403), "{refused}");
    assert_eq!(
        refused.code(),
        Some(ErrorCode::NetworkFaultsOff),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("allow_network_faults"),
        "{refused}"
    );

    let bad = admin(c.admin_endpoint(0))
        .set_network_faults(&RuleSet {
            rules: vec![
                Rule::new(RuleAction::Drop),
                Rule {
                    probability: 1.5,
                    delay_ms: 5,
                    ..Rule::new(RuleAction::Delay)
                },
            ],
        })
        .expect_err("a probability above 1 is refused");
    assert_eq!(bad.status(), Some(400), "{bad}");
    assert!(bad.to_string().contains("rules[1].probability"), "{bad}");

    let good = RuleSet {
        rules: vec![Rule {
            to: Some(2),
            delay_ms: 5,
            jitter_ms: 5,
            rpcs: vec!["AppendEntries".into()],
            ..Rule::new(RuleAction::Delay)
        }],
    };
    let installed = admin(c.admin_endpoint(0)).set_network_faults(&good);
    assert_eq!(installed.as_ref().ok(), Some(&good), "{installed:?}");
    let shown = admin(c.admin_endpoint(0)).network_faults().unwrap();
    assert_eq!(shown.rules[0].to, Some(2), "{shown:?}");
    assert_eq!(shown.rules[0].action, RuleAction::Delay, "{shown:?}");
    let cleared = admin(c.admin_endpoint(0)).clear_network_faults();
    assert_eq!(cleared.ok(), Some(RuleSet::default()));
}

#[test]
fn a_cut_off_leader_is_replaced_and_serves_no_stale_read() {
    let c = faulty_cluster().start();
    let old = c.wait_for_leader(LEADER_TIMEOUT);
    let key = [unique_prefix("netfaults").as_slice(), b"k"].concat();
    c.write_until_acked(old, &key, b"v1");

    c.cut_off(old);
    let others: Vec<usize> = (0..c.node_count()).filter(|&i| i != old).collect();
    let mut new = None;
    let elected = wait_until(LEADER_TIMEOUT, || {
        new = admin(c.admin_endpoint(others[0]))
            .status()
            .ok()
            .and_then(|s| s.leader)
            .map(|l| l as usize)
            .filter(|&l| l != old);
        new.is_some()
    });
    assert!(
        elected,
        "no new leader among {others:?} after cutting off {old}"
    );
    let new = new.unwrap_or(others[0]);
    c.write_until_acked(new, &key, b"v2");

    // The old leader may still believe it leads; it must not answer from its stale state.
    match get(&c, old, &key) {
        ReadAnswer::Found(value) => {
            assert_ne!(value, b"v1", "the cut-off node served a stale value")
        }
        other => println!("cut-off node did not serve the read: {other:?}"),
    }

    c.heal();
    let all: Vec<usize> = (0..c.node_count()).collect();
    let (v, digest) = c.converged_digest(&all, c.applied(new), Duration::from_secs(60));
    println!("healed and converged at version {v}: {digest}");
    assert_eq!(get(&c, old, &key), ReadAnswer::Found(b"v2".to_vec()));
}

#[test]
fn duplicated_and_delayed_raft_messages_lose_no_acknowledged_write() {
    let c = faulty_cluster().start();
    c.wait_for_leader(LEADER_TIMEOUT);
    for i in 0..c.node_count() {
        let rules = vec![
            Rule {
                probability: 0.5,
                rpcs: ["AppendEntries", "Vote", "PreVote"]
                    .map(String::from)
                    .to_vec(),
                ..Rule::new(RuleAction::Duplicate)
            },
            Rule {
                probability: 0.3,
                delay_ms: 1,
                jitter_ms: 20,
                ..Rule::new(RuleAction::Delay)
            },
        ];
        admin(c.admin_endpoint(i))
            .set_network_faults(&RuleSet { rules })
            .unwrap_or_else(|e| panic!("node {i}: PUT /debug/network-faults: {e}"));
    }
    let prefix = unique_prefix("dup");
    let rv = connect_buffered(c.thrift_endpoint(0)).read_version();
    let targets: Vec<_> = (0..c.node_count())
        .map(|i| (i, c.thrift_endpoint(i)))
        .collect();
    let loads = WriteLoad::start_mixed(
        &WriteLoadConfig {
            targets,
            threads: 3,
            prefix: prefix.clone(),
            kind: WriteKind::SetKey,
            pause: Duration::from_millis(1),
            max_writes_per_thread: 300,
            max_duration: Duration::from_secs(30),
        },
        rv,
    );
    let records: Vec<_> = loads.into_iter().flat_map(WriteLoad::complete).collect();
    println!("writes under duplication: {}", summarize(&records));
    c.heal();
    let all: Vec<usize> = (0..c.node_count()).collect();
    check_writes(&c, &all, &prefix, &records, Duration::from_secs(30));
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    c.converged_digest(&all, c.applied(leader), Duration::from_secs(60));
}

#[test]
fn with_the_planted_bug_a_cut_off_follower_serves_a_stale_value() {
    let c = faulty_cluster()
        .set("faults", "unsafe_stale_reads", true)
        .start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let follower = c.followers()[0];
    let key = [unique_prefix("planted").as_slice(), b"k"].concat();
    let v1 = c.write_until_acked(leader, &key, b"v1");
    c.wait_applied_at_least(follower, v1);

    c.cut_off(follower);
    c.write_until_acked(leader, &key, b"v2");
    assert_eq!(
        get(&c, follower, &key),
        ReadAnswer::Found(b"v1".to_vec()),
        "with [faults] unsafe_stale_reads a cut-off follower answers from its own state"
    );
    c.heal();
}
