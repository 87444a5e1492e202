//! Black-box suite for the multi-node SDK (`Database::connect_cluster`) against a real 3-node
//! Raft cluster: every read strategy, leader discovery through a follower, `kill -9` of the
//! leader under concurrent `transact` increments (each applied exactly once), and reads while a
//! node is down.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace -- sdk_cluster`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_client::{Database, DatabaseOptions, Error, ReadStrategy};
use dolmen_tests::replicated::LEADER_TIMEOUT;
use dolmen_tests::ReplicatedCluster;

const STRATEGIES: [ReadStrategy; 4] = [
    ReadStrategy::LeaderOnly,
    ReadStrategy::RoundRobin,
    ReadStrategy::Nearest,
    ReadStrategy::Sticky,
];

fn endpoints(c: &ReplicatedCluster) -> Vec<SocketAddr> {
    (0..c.node_count()).map(|i| c.thrift_endpoint(i)).collect()
}

fn options(strategy: ReadStrategy) -> DatabaseOptions {
    DatabaseOptions {
        read_strategy: strategy,
        request_timeout: Duration::from_secs(3),
        transaction_deadline: Duration::from_secs(60),
        max_attempts: 10_000,
        ..DatabaseOptions::default()
    }
}

fn decode(v: Option<Vec<u8>>) -> Result<u64, Error> {
    Ok(v.map_or(0, |b| {
        u64::from_be_bytes(b.try_into().expect("8-byte counter"))
    }))
}

async fn increment(db: &Database, key: &'static [u8]) -> Result<u64, Error> {
    db.transact(|tx| async move {
        let n = decode(tx.get(key).await?)?;
        tx.set(key, &(n + 1).to_be_bytes());
        Ok(n + 1)
    })
    .await
}

async fn read_counter(db: &Database, key: &[u8]) -> u64 {
    decode(db.begin().get(key).await.expect("read the counter")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_cluster_transact_with_each_read_strategy() {
    let c = ReplicatedCluster::start_default();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    for strategy in STRATEGIES {
        let db = Database::connect_cluster(&endpoints(&c), options(strategy))
            .await
            .expect("connect to the cluster");
        assert_eq!(db.leader(), Some(c.thrift_endpoint(leader)), "{strategy:?}");
        let key: &'static [u8] = match strategy {
            ReadStrategy::LeaderOnly => b"strategy/leader",
            ReadStrategy::RoundRobin => b"strategy/rr",
            ReadStrategy::Nearest => b"strategy/nearest",
            _ => b"strategy/sticky",
        };
        let mut handles = Vec::new();
        for _ in 0..3 {
            let db = db.clone();
            handles.push(tokio::spawn(async move {
                for _ in 0..10 {
                    increment(&db, key).await.expect("transact commits");
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(read_counter(&db, key).await, 30, "{strategy:?}");
        // Every node answers reads at a fresh read version with the same, latest value.
        for i in 0..c.node_count() {
            let one = Database::connect_cluster(&[c.thrift_endpoint(i)], options(strategy))
                .await
                .unwrap();
            let tx = one.begin();
            assert_eq!(decode(tx.get(key).await.unwrap()).unwrap(), 30);
            let keys_so_far = STRATEGIES.iter().position(|s| *s == strategy).unwrap() + 1;
            let range = tx.get_range(b"strategy/", b"strategy0", 0).await.unwrap();
            assert_eq!(range.len(), keys_so_far);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_cluster_discovers_the_leader_through_a_follower() {
    // Followers answer writes with NOT_LEADER instead of forwarding them: the SDK must route.
    let c = ReplicatedCluster::builder()
        .set("consensus", "forward_writes", false)
        .start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let follower = c.followers()[0];
    let db = Database::connect(c.thrift_endpoint(follower), options(ReadStrategy::Sticky))
        .await
        .expect("connect through a follower");
    assert_eq!(db.leader(), Some(c.thrift_endpoint(leader)));
    let mut nodes = db.nodes();
    nodes.sort();
    let mut all = endpoints(&c);
    all.sort();
    assert_eq!(nodes, all, "every member is discovered from one follower");
    for _ in 0..5 {
        increment(&db, b"via-follower").await.expect("commit");
    }
    assert_eq!(read_counter(&db, b"via-follower").await, 5);
    // The follower itself refuses the write: the SDK did the routing.
    let err = db
        .client()
        .set("default", b"direct", b"x")
        .await
        .expect_err("a follower without forwarding refuses writes");
    assert_eq!(err.code(), Some("NOT_LEADER"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_cluster_leader_kill9_during_transact_applies_exactly_once() {
    const TASKS: usize = 2;
    const INCREMENTS: usize = 40;
    let mut c = ReplicatedCluster::builder()
        .set("consensus", "forward_writes", false)
        .start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let db = Database::connect_cluster(&endpoints(&c), options(ReadStrategy::RoundRobin))
        .await
        .expect("connect to the cluster");
    let ok = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let (db, ok) = (db.clone(), ok.clone());
        handles.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            for _ in 0..INCREMENTS {
                match increment(&db, b"failover/counter").await {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            errors
        }));
    }
    let waited = Instant::now();
    while ok.load(Ordering::SeqCst) < 10 && waited.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        ok.load(Ordering::SeqCst) >= 10,
        "increments before the kill"
    );
    let killed_at = ok.load(Ordering::SeqCst);
    tokio::task::block_in_place(|| c.kill9(leader));
    let mut errors = Vec::new();
    for h in handles {
        errors.extend(h.await.unwrap());
    }
    let successes = ok.load(Ordering::SeqCst);
    let new_leader = tokio::task::block_in_place(|| c.wait_for_leader(LEADER_TIMEOUT));
    assert_ne!(new_leader, leader);
    let total = read_counter(&db, b"failover/counter").await;
    println!(
        "kill9 of leader {leader} after {killed_at} increments; {successes} succeeded, \
         {} failed, counter = {total}; errors: {errors:?}",
        errors.len()
    );
    assert_eq!(
        total, successes,
        "every successful transact applied exactly once (errors: {errors:?})"
    );
    assert!(
        successes > killed_at,
        "transactions kept committing after the kill (errors: {errors:?})"
    );
    assert!(errors.is_empty(), "no transact gave up: {errors:?}");
    assert_eq!(db.leader(), Some(c.thrift_endpoint(new_leader)));
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_cluster_reads_keep_working_with_a_node_down() {
    let mut c = ReplicatedCluster::start_default();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let down = c.followers()[0];
    let dbs = {
        let mut dbs = Vec::new();
        for strategy in STRATEGIES {
            let db = Database::connect_cluster(&endpoints(&c), options(strategy))
                .await
                .unwrap();
            dbs.push((strategy, db));
        }
        dbs
    };
    let (_, writer) = &dbs[0];
    increment(writer, b"down/counter").await.unwrap();
    // Warm every strategy up (Sticky picks a node, Nearest measures them all).
    for (_, db) in &dbs {
        for _ in 0..6 {
            assert_eq!(read_counter(db, b"down/counter").await, 1);
        }
    }
    tokio::task::block_in_place(|| c.kill9(down));
    let mut expected = 1;
    for (strategy, db) in &dbs {
        for i in 0..12 {
            let tx = db.begin();
            let got = tx.get(b"down/counter").await;
            assert_eq!(
                got.map(|v| decode(v).unwrap()),
                Ok(expected),
                "{strategy:?} read {i} with node {down} down"
            );
        }
        if *strategy == ReadStrategy::RoundRobin {
            // Round robin reached the dead node and took it out of rotation.
            assert!(
                db.down_nodes().contains(&c.thrift_endpoint(down)),
                "{strategy:?}: {:?}",
                db.down_nodes()
            );
        }
        // Writes are unaffected too.
        expected = increment(db, b"down/counter").await.unwrap();
        assert_eq!(db.leader(), Some(c.thrift_endpoint(leader)));
    }
    assert_eq!(read_counter(writer, b"down/counter").await, 5);
}
