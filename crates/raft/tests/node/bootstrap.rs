//! The guarded bootstrap (invariant 15) and the restart quiet period (invariant 14): a node
//! initializes once, never when a peer already is, never beside a peer with another data
//! layout; a restarted member stays silent for one election timeout (longer than the leader lease).

use std::time::Instant;

use dolmen_engine::{Command, Engine, EngineOptions, Mutation, Transaction};
use dolmen_raft::{
    BootstrapError, Direct, DirectOptions, ErrorKind, Formation, InitOutcome, Replicator,
};

use crate::harness::{eventually, leader_alone, released, start, start_in, Spec, ELECTION_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_guarded_initializes_once_and_then_reports_already_initialized() {
    let a = start(Spec::new(0, &[])).await;
    assert_eq!(
        a.raft.init_guarded().await.expect("init"),
        InitOutcome::Initialized
    );
    eventually("node 0 leads", || async { a.role() == "leader" }).await;
    let before = a.raft.status();
    assert_eq!(
        a.raft.init_guarded().await.expect("second init"),
        InitOutcome::AlreadyInitialized
    );
    let after = a.raft.status();
    assert_eq!(after.term, before.term, "a second init starts no new term");
    assert_eq!(after.members.len(), 1);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_peer_is_initialized_does_not_initialize_its_own_cluster() {
    let a = leader_alone().await;
    // Node 1 is configured with {0, 1}; node 0 already runs a cluster of its own.
    let b = start(Spec::new(1, &[&a])).await;
    assert_eq!(
        b.raft.init_guarded().await.expect("init on node 1"),
        InitOutcome::AlreadyInitialized
    );
    let status = b.raft.status();
    assert!(
        status.members.is_empty(),
        "node 1 has no membership: {status:?}"
    );
    assert_eq!(status.last_log, 0, "node 1 wrote nothing");
    assert_eq!(
        a.raft.status().members.len(),
        1,
        "node 0's cluster is unchanged"
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_another_data_layout_is_refused_naming_both_layouts() {
    let a = start(Spec::new(0, &[])).await;
    let mut spec = Spec::new(1, &[&a]);
    spec.fingerprint = "cf=default,orders".into();
    let b = start(spec).await;
    let err = b.raft.init_guarded().await.expect_err("the layouts differ");
    assert!(
        matches!(&err, BootstrapError::LayoutMismatch { id: 0, theirs, ours, .. }
            if theirs == "cf=default" && ours == "cf=default,orders"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        format!(
            "node 0 at {} has a different data layout (cf=default); this node has \
             cf=default,orders. Every member must configure the same [database] column_families \
             and [consensus] replication_mode",
            a.addr.peer_addr
        )
    );
    assert_eq!(b.raft.status().last_log, 0, "node 1 did not initialize");
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_is_quiet_for_one_election_timeout_and_never_reinitializes() {
    let a = leader_alone().await;
    let last_log = a.raft.status().last_log;
    let dir = a.stop().await;
    released(&dir).await;

    let restart = Instant::now();
    let a = start_in(Spec::new(0, &[]), dir).await;
    let quiet = restart.elapsed();
    assert!(
        // One election timeout: longer than the leader lease a forgotten vote could have
        // granted (openraft's `election_timeout_max`, 0.6 of it).
        quiet >= ELECTION_TIMEOUT,
        "a restarted member returned from start after {quiet:?}, before its quiet period"
    );
    assert_eq!(
        a.raft.init_guarded().await.expect("init after restart"),
        InitOutcome::AlreadyInitialized
    );
    eventually("node 0 leads again", || async { a.role() == "leader" }).await;
    let status = a.raft.status();
    assert!(status.last_log >= last_log, "the log survived: {status:?}");
    assert_eq!(status.members.len(), 1);
    a.stop().await;
}

/// A static list (no `bootstrap`): two empty members that see each other form the cluster
/// from the list, and both end up in it with one leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_empty_members_form_the_cluster_from_their_list() {
    let a = start(Spec::new(0, &[])).await;
    let mut spec = Spec::new(1, &[&a]);
    spec.members.insert(0, a.addr.clone());
    let b = start(spec).await;
    // Node 0 lists only itself here, so it could form alone; node 1 lists {0, 1}: with node 0
    // answering empty, that is a majority of two.
    assert_eq!(
        b.raft.form_from_static_list().await.expect("form"),
        Formation::Initialized
    );
    eventually("one of the two leads, with both as members", || async {
        let (sa, sb) = (a.raft.status(), b.raft.status());
        let leaders = [&sa, &sb]
            .iter()
            .filter(|s| s.role.as_str() == "leader")
            .count();
        leaders == 1 && sa.members.len() == 2 && sb.members.len() == 2
    })
    .await;
    assert_eq!(
        a.raft.form_from_static_list().await.expect("form again"),
        Formation::AlreadyInitialized,
        "node 0 was reached by the new cluster"
    );
    b.stop().await;
    a.stop().await;
}

/// Without a majority answering, a member waits instead of forming a cluster that could
/// split from one the silent members formed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_reaches_no_majority_waits() {
    let a = start(Spec::new(0, &[])).await;
    let b = start(Spec::new(1, &[&a])).await;
    a.stop().await;
    assert_eq!(
        b.raft.form_from_static_list().await.expect("form"),
        Formation::Waiting {
            answered: 1,
            needed: 2
        }
    );
    assert_eq!(b.raft.status().last_log, 0, "node 1 wrote nothing");
    b.stop().await;
}

/// A member whose peer already runs a cluster, or that holds data itself, never forms one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_sees_a_cluster_or_holds_data_never_forms_one() {
    let a = leader_alone().await;
    let b = start(Spec::new(1, &[&a])).await;
    assert_eq!(
        b.raft.form_from_static_list().await.expect("form"),
        Formation::AlreadyInitialized
    );
    assert_eq!(b.raft.status().last_log, 0, "node 1 wrote nothing");
    b.stop().await;

    a.stop().await;

    // A standalone node's data (written without Raft), now started as a member: it holds
    // data, so it waits for an operator instead of forming a new cluster around it.
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
    write_standalone_data(&dir).await;
    let c = start_in(Spec::new(2, &[]), dir).await;
    assert_eq!(
        c.raft.form_from_static_list().await.expect("form"),
        Formation::HoldsData
    );
    assert_eq!(c.raft.status().last_log, 0, "node 2 wrote nothing");
    c.stop().await;
}

/// Commits one key through a standalone (`Direct`) node over `dir`'s engine, then closes it.
async fn write_standalone_data(dir: &tempfile::TempDir) {
    let engine = std::sync::Arc::new(
        Engine::open(&EngineOptions::new(
            dir.path().join("db"),
            vec!["default".into()],
        ))
        .expect("the engine opens"),
    );
    let direct = Direct::start(
        engine,
        DirectOptions {
            node_id: 0,
            client_addr: "127.0.0.1:9090".into(),
            max_batch: 8,
            max_outstanding: 8,
        },
    )
    .expect("the standalone node starts");
    let set = Command::Commit(Transaction {
        mutations: vec![Mutation::Set {
            cf: "default".into(),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }],
        ..Transaction::default()
    });
    direct.propose(set).await.expect("the write commits");
    direct.shutdown();
    released(dir).await;
}
