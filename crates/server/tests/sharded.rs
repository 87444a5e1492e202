//! The gateway in process (docs/sharding.md §5.1, §5.3, §6.1): a `Service` over several data
//! groups of one database, each an engine handle with its own `Direct`, all drawing versions
//! from one strictly increasing clock, and a test oracle that draws read versions from the same
//! clock. No processes, no sockets. Reads must route to the owning group and merge ranges into
//! the page one unsharded service gives over the same data; commits must go to the one group
//! they touch, or commit across groups at one version (two-phase commit, §6.3), with locks that
//! refuse writes and make readers wait for the decision (§6.5).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dolmen_engine::routing::Placement;
use dolmen_engine::{
    Command, Decide, Engine, EngineOptions, IdempotencyToken, KeyRange, KeySpan, Mutation, Outcome,
    Prepare, RangeSpec, RoutingTable, Transaction, Version,
};
use dolmen_raft::oracle::Clock;
use dolmen_raft::{
    BoxFuture, Direct, DirectOptions, ProposeError, ReadError, ReadGate, Replicator,
};
use dolmen_server::error::ErrorCode;
use dolmen_server::service::{Service, ServiceOptions};
use dolmen_server::shards::{ShardGroup, Shards, ShardsError};
use parking_lot::Mutex;
use tempfile::TempDir;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A data group's gate in these sequential tests: every acknowledged commit has applied, so
/// any version handed out so far is covered at once; it records the versions it was asked to
/// cover, and lets the engine read up to them.
struct TestGate {
    engine: Arc<Engine>,
    covered: Mutex<Vec<Version>>,
}

impl ReadGate for TestGate {
    fn read_version(&self) -> BoxFuture<'_, Result<Version, ReadError>> {
        let version = self.engine.applied_version();
        Box::pin(async move { Ok(version) })
    }

    fn wait_applied(
        &self,
        _version: Version,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<(), ReadError>> {
        Box::pin(async { Ok(()) })
    }

    fn applied_version(&self) -> Version {
        self.engine.applied_version()
    }

    fn cover(&self, version: Version, _wait: Duration) -> BoxFuture<'_, Result<(), ReadError>> {
        self.covered.lock().push(version);
        self.engine.mark_complete(version);
        Box::pin(async { Ok(()) })
    }
}

/// The oracle: a read version is a fresh draw of the shared clock, so it is above every
/// version any group handed out before.
struct TestOracle {
    clock: Clock,
}

impl ReadGate for TestOracle {
    fn read_version(&self) -> BoxFuture<'_, Result<Version, ReadError>> {
        let version = (self.clock)();
        Box::pin(async move { Ok(version) })
    }

    fn wait_applied(
        &self,
        _version: Version,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<(), ReadError>> {
        Box::pin(async { Ok(()) })
    }

    fn applied_version(&self) -> Version {
        0
    }

    fn commit_version(&self) -> BoxFuture<'_, Result<Version, ReadError>> {
        let version = (self.clock)();
        Box::pin(async move { Ok(version) })
    }
}

/// One strictly increasing clock for every group and the oracle. Each draw moves it by 1,000,
/// so a batch of fewer than 1,000 commands never reaches the next draw.
fn shared_clock() -> Clock {
    let now = Arc::new(AtomicU64::new(1_000_000));
    Arc::new(move || now.fetch_add(1_000, Ordering::SeqCst))
}

fn options() -> ServiceOptions {
    ServiceOptions {
        future_version_wait: Duration::from_millis(50),
        allow_fault_injection: false,
        max_read_concurrency: 0,
        max_range_bytes: None,
    }
}

fn direct_options(node_id: u64) -> DirectOptions {
    DirectOptions {
        node_id,
        client_addr: "127.0.0.1:0".to_owned(),
        max_batch: 64,
        max_outstanding: 1024,
    }
}

fn engine_options(dir: &TempDir) -> EngineOptions {
    EngineOptions::new(
        dir.path().join("db"),
        vec!["default".to_owned(), "other".to_owned()],
    )
}

/// The node id group 0's replicator reports (the membership source).
const MEMBERSHIP_NODE: u64 = 7;

/// A sharded service and what keeps it alive.
struct Sharded {
    service: Service,
    /// Group 0's replicator (decisions).
    metadata: Arc<Direct>,
    /// The data groups' engine handles and gates, in key order (group `i + 1` at `i`).
    engines: Vec<Arc<Engine>>,
    gates: Vec<Arc<TestGate>>,
    directs: Vec<Arc<Direct>>,
    _dir: TempDir,
}

impl Drop for Sharded {
    fn drop(&mut self) {
        for direct in &self.directs {
            direct.shutdown();
        }
    }
}

fn table(splits: &[&[u8]]) -> RoutingTable {
    let keys: Vec<Vec<u8>> = splits.iter().map(|k| k.to_vec()).collect();
    RoutingTable::from_split_keys(&keys, &Placement::new(vec![0], 1).unwrap()).unwrap()
}

/// The data groups of `table` over one database, each with its own `Direct` on `clock`.
struct Parts {
    base: Arc<Engine>,
    groups: Vec<ShardGroup>,
    engines: Vec<Arc<Engine>>,
    gates: Vec<Arc<TestGate>>,
    directs: Vec<Arc<Direct>>,
}

fn parts(dir: &TempDir, table: &RoutingTable, clock: &Clock) -> Parts {
    let base = Arc::new(Engine::open(&engine_options(dir)).expect("open the engine"));
    let mut out = Parts {
        base: base.clone(),
        groups: Vec::new(),
        engines: Vec::new(),
        gates: Vec::new(),
        directs: Vec::new(),
    };
    for d in table.ranges() {
        let span = KeySpan::new(d.start.clone(), d.end.clone()).unwrap();
        let engine = Arc::new(base.open_group(d.group, span).unwrap());
        let direct = Arc::new(
            Direct::start_with_clock(engine.clone(), direct_options(d.group), clock.clone())
                .unwrap(),
        );
        let gate = Arc::new(TestGate {
            engine: engine.clone(),
            covered: Mutex::new(Vec::new()),
        });
        out.groups.push(ShardGroup {
            id: d.group,
            engine: engine.clone(),
            replicator: direct.clone(),
            gate: gate.clone(),
        });
        out.engines.push(engine);
        out.gates.push(gate);
        out.directs.push(direct);
    }
    out
}

/// Group 0 over `base`, reporting `node` as this node.
fn metadata(base: &Arc<Engine>, node: u64, clock: &Clock) -> (ShardGroup, Arc<Direct>) {
    let direct = Arc::new(
        Direct::start_with_clock(base.clone(), direct_options(node), clock.clone()).unwrap(),
    );
    let group = ShardGroup {
        id: 0,
        engine: base.clone(),
        replicator: direct.clone(),
        gate: direct.clone(),
    };
    (group, direct)
}

async fn sharded(splits: &[&[u8]]) -> Sharded {
    sharded_with(splits, |shards| shards).await
}

/// [`sharded`], with `tune` applied to the groups (lock timeouts, orphan timeouts).
async fn sharded_with(splits: &[&[u8]], tune: impl FnOnce(Shards) -> Shards) -> Sharded {
    sharded_wrapping(splits, |groups| groups, tune).await
}

/// [`sharded_with`], the data groups passed through `wrap` first (a replicator that fails).
async fn sharded_wrapping(
    splits: &[&[u8]],
    wrap: impl FnOnce(Vec<ShardGroup>) -> Vec<ShardGroup>,
    tune: impl FnOnce(Shards) -> Shards,
) -> Sharded {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = shared_clock();
    let table = table(splits);
    let Parts {
        base,
        groups,
        engines,
        gates,
        mut directs,
    } = parts(&dir, &table, &clock);
    let groups = wrap(groups);
    // Group 0 gives the cluster view and records decisions.
    let (metadata, direct) = metadata(&base, MEMBERSHIP_NODE, &clock);
    let shards = tune(
        Shards::routed(table, groups, Arc::new(TestOracle { clock }), metadata)
            .expect("the groups fit the table"),
    );
    directs.push(direct.clone());
    let service = Service::sharded(shards, options());
    service
        .ensure_initial_version()
        .await
        .expect("initial versions");
    Sharded {
        service,
        metadata: direct,
        engines,
        gates,
        directs,
        _dir: dir,
    }
}

/// An unsharded service: one group owning every key.
struct Unsharded {
    service: Service,
    direct: Arc<Direct>,
    _dir: TempDir,
}

impl Drop for Unsharded {
    fn drop(&mut self) {
        self.direct.shutdown();
    }
}

async fn unsharded() -> Unsharded {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Arc::new(Engine::open(&engine_options(&dir)).expect("open the engine"));
    let direct = Arc::new(Direct::start(engine.clone(), direct_options(1)).unwrap());
    let service = Service::new(engine, direct.clone(), direct.clone(), options());
    service
        .ensure_initial_version()
        .await
        .expect("initial version");
    Unsharded {
        service,
        direct,
        _dir: dir,
    }
}

fn set(cf: &str, key: &[u8], value: &[u8]) -> Mutation {
    Mutation::Set {
        cf: cf.to_owned(),
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn tx(mutations: Vec<Mutation>) -> Transaction {
    Transaction {
        mutations,
        ..Transaction::default()
    }
}

/// The applied version of every data group.
fn applied(s: &Sharded) -> Vec<Version> {
    s.engines.iter().map(|e| e.applied_version()).collect()
}

/// The group positions whose gate was asked to cover something since the last call.
fn covered(s: &Sharded) -> Vec<usize> {
    s.gates
        .iter()
        .enumerate()
        .filter(|(_, g)| !std::mem::take(&mut *g.covered.lock()).is_empty())
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test]
async fn point_reads_and_writes_go_to_the_group_owning_the_key() {
    let s = sharded(&[b"g", b"n", b"t"]).await;
    let service = &s.service;
    for (key, owner) in [
        (b"a".as_slice(), 0),
        (b"g", 1),
        (b"m\xff", 1),
        (b"n", 2),
        (b"s", 2),
        (b"t", 3),
        (b"\xff\xff", 3),
    ] {
        let before = applied(&s);
        let version = service
            .set("default", key.to_vec(), key.to_vec())
            .await
            .unwrap();
        let after = applied(&s);
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            if i == owner {
                assert_eq!(*a, version, "key {key:?} applied in group {}", i + 1);
            } else {
                assert_eq!(a, b, "key {key:?} left group {} alone", i + 1);
            }
        }
        covered(&s);
        assert_eq!(
            service.get("default", key).await.unwrap(),
            Some(key.to_vec())
        );
        assert_eq!(
            covered(&s),
            vec![owner],
            "get {key:?} covered its owner only"
        );
        assert_eq!(
            service.snapshot_get("default", key, version).await.unwrap(),
            Some(key.to_vec())
        );
        assert_eq!(covered(&s), vec![owner], "snapshot_get {key:?}");
        assert_eq!(
            service
                .snapshot_get("default", key, version - 1)
                .await
                .unwrap(),
            None
        );
        assert_eq!(service.get("other", key).await.unwrap(), None);
    }
    // Deletes route too.
    service.delete("default", b"n".to_vec()).await.unwrap();
    assert_eq!(service.get("default", b"n").await.unwrap(), None);
    assert_eq!(
        service.get("default", b"s").await.unwrap(),
        Some(b"s".to_vec())
    );
    // The statistics sum the groups' live keys; the cluster view is group 0's.
    assert_eq!(service.engine_stats().live_keys, 6);
    assert_eq!(
        service.engine_stats().applied_version,
        *applied(&s).iter().max().unwrap()
    );
    assert_eq!(service.cluster().this_node, MEMBERSHIP_NODE);
}

#[tokio::test]
async fn every_group_gets_an_initial_version_and_an_empty_commit_gets_one_from_the_first() {
    let s = sharded(&[b"m"]).await;
    let first = applied(&s);
    assert!(
        first.iter().all(|&v| v > 0),
        "every group applied: {first:?}"
    );
    let read = s.service.read_version().await.unwrap();
    assert!(read > *first.iter().max().unwrap());
    let version = s
        .service
        .commit(Transaction::default(), TIMEOUT)
        .await
        .unwrap();
    assert!(version > read, "{version} after the read version {read}");
    assert_eq!(applied(&s), vec![version, first[1]], "group 1 took it");
    // A read-only transaction at a read version, no conflict range, is empty too.
    let version = s
        .service
        .commit(
            Transaction {
                read_version: Some(s.service.read_version().await.unwrap()),
                ..Transaction::default()
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(applied(&s)[0], version);
}

#[tokio::test]
async fn a_commit_spanning_two_groups_applies_in_both_at_one_version() {
    let s = sharded(&[b"m"]).await;
    let service = &s.service;
    let before = service.read_version().await.unwrap();
    let version = service
        .commit(
            tx(vec![set("default", b"a", b"1"), set("other", b"z", b"2")]),
            TIMEOUT,
        )
        .await
        .expect("commits across two groups");
    assert!(version > before);
    // Both halves at the one version: visible at it, invisible just below it.
    for (cf, key, value) in [("default", b"a", b"1"), ("other", b"z", b"2")] {
        assert_eq!(
            service.snapshot_get(cf, key, version).await.unwrap(),
            Some(value.to_vec())
        );
        assert_eq!(
            service.snapshot_get(cf, key, version - 1).await.unwrap(),
            None
        );
    }
    // Nothing stays locked, and group 0 recorded the decision (forgotten once resolved).
    for engine in &s.engines {
        assert!(
            engine.locks().is_empty(),
            "locks left: {:?}",
            engine.locks()
        );
    }

    // A clear range across the split clears both parts, atomically.
    service
        .set("default", b"l".to_vec(), b"x".to_vec())
        .await
        .unwrap();
    service
        .set("default", b"n".to_vec(), b"y".to_vec())
        .await
        .unwrap();
    let clear = Mutation::ClearRange {
        cf: "default".to_owned(),
        begin: b"k".to_vec(),
        end: b"p".to_vec(),
    };
    let cleared = service.commit(tx(vec![clear]), TIMEOUT).await.unwrap();
    assert_eq!(service.get("default", b"l").await.unwrap(), None);
    assert_eq!(service.get("default", b"n").await.unwrap(), None);
    assert_eq!(
        service
            .snapshot_get("default", b"n", cleared - 1)
            .await
            .unwrap(),
        Some(b"y".to_vec())
    );
}

#[tokio::test]
async fn read_conflicts_across_groups_are_checked_in_each_group() {
    let s = sharded(&[b"g", b"n"]).await;
    let service = &s.service;
    let read_version = service.read_version().await.unwrap();
    let commit = |begin: &[u8], end: &[u8]| Transaction {
        read_version: Some(read_version),
        mutations: vec![set("default", b"a", b"1")],
        read_conflicts: vec![KeyRange {
            cf: "default".to_owned(),
            begin: begin.to_vec(),
            end: end.to_vec(),
        }],
        idempotency: None,
        stamp: None,
    };
    // A write after the read version in the middle group of the read range.
    service
        .set("default", b"h".to_vec(), b"later".to_vec())
        .await
        .unwrap();
    let err = service
        .commit(commit(b"b", b"p"), TIMEOUT)
        .await
        .expect_err("group 2 saw a write after the read version");
    assert_eq!(err.code, ErrorCode::Conflict, "{err}");
    assert!(err.message.contains("key 'h'"), "{err}");
    assert_eq!(service.get("default", b"a").await.unwrap(), None);
    for engine in &s.engines {
        assert!(engine.locks().is_empty(), "an aborted commit left locks");
    }
    // Reads elsewhere than the write commit across the groups they reach.
    let version = service
        .commit(
            Transaction {
                read_conflicts: vec![
                    KeyRange::single("other", b"h"),
                    KeyRange::single("default", b"x"),
                ],
                ..commit(b"a", b"b")
            },
            TIMEOUT,
        )
        .await
        .expect("no conflict in any group");
    assert_eq!(
        service
            .snapshot_get("default", b"a", version)
            .await
            .unwrap(),
        Some(b"1".to_vec())
    );
}

#[tokio::test]
async fn a_token_makes_a_commit_across_groups_exactly_once() {
    let s = sharded(&[b"m"]).await;
    let service = &s.service;
    let token = IdempotencyToken {
        client_id: b"client".to_vec(),
        sequence: 5,
    };
    let with_token = |value: &[u8]| Transaction {
        idempotency: Some(token.clone()),
        ..tx(vec![
            set("default", b"a", value),
            set("default", b"z", value),
        ])
    };
    let first = service.commit(with_token(b"1"), TIMEOUT).await.unwrap();
    // The retry answers the first outcome and applies nothing.
    let again = service.commit(with_token(b"2"), TIMEOUT).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        service.get("default", b"z").await.unwrap(),
        Some(b"1".to_vec())
    );
    for engine in &s.engines {
        assert!(
            engine.locks().is_empty(),
            "the retry's prepares were resolved"
        );
    }
    // An older sequence is refused.
    let stale = Transaction {
        idempotency: Some(IdempotencyToken {
            sequence: 4,
            ..token.clone()
        }),
        ..with_token(b"3")
    };
    let err = service.commit(stale, TIMEOUT).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument, "{err}");
}

/// Writes `z = old` in group 2 (of a `m` split), then prepares transaction `txid` there
/// writing `z = new`, stamped with a fresh read version: its lock holds `z`, undecided.
/// Returns the prepare, for a late resend.
async fn lock_z(s: &Sharded, txid: [u8; 16]) -> Command {
    let service = &s.service;
    service
        .set("default", b"z".to_vec(), b"old".to_vec())
        .await
        .unwrap();
    let stamp = service.read_version().await.unwrap();
    let prepare = Command::Prepare(Prepare {
        txid,
        stamp,
        read_version: Some(stamp),
        piece: vec![(0, set("default", b"z", b"new"))],
        read_conflicts: vec![],
    });
    let prepared = s.directs[1].propose(prepare.clone()).await.unwrap();
    assert_eq!(prepared.outcome, Outcome::Prepared);
    prepare
}

#[tokio::test]
async fn locks_refuse_writes_and_make_readers_wait_for_the_decision() {
    let s = sharded(&[b"m"]).await;
    let service = &s.service;
    let txid = [9u8; 16];
    // A coordinator that prepared in group 2, decided Commit(C) in group 0, then stopped.
    let prepare = lock_z(&s, txid).await;
    let commit = service.read_version().await.unwrap();
    let decided = s
        .metadata
        .propose(Command::Decide(Decide {
            txid,
            idempotency: None,
            outcome: Outcome::Committed { version: commit },
        }))
        .await
        .unwrap();
    assert!(matches!(decided.outcome, Outcome::Decided { commit: Some(c), .. } if c == commit));
    // A write to the locked key is refused, nothing applied.
    let err = service
        .set("default", b"z".to_vec(), b"other".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{err}");
    assert!(err.message.contains("locked"), "{err}");
    // A read below the commit version waits for the decision, then reads past the lock.
    assert_eq!(
        service
            .snapshot_get("default", b"z", commit - 1)
            .await
            .unwrap(),
        Some(b"old".to_vec())
    );
    assert_eq!(
        s.engines[1].locks().len(),
        1,
        "a reader below C leaves the lock"
    );
    // A read at or above it resolves the lock from group 0's record and sees the write.
    assert_eq!(
        service.get("default", b"z").await.unwrap(),
        Some(b"new".to_vec())
    );
    assert!(s.engines[1].locks().is_empty());
    assert_eq!(
        service.snapshot_get("default", b"z", commit).await.unwrap(),
        Some(b"new".to_vec())
    );
    // A late prepare of the resolved transaction holds nothing.
    let late = s.directs[1].propose(prepare).await.unwrap();
    assert_eq!(late.outcome, Outcome::AlreadyResolved);
    assert!(s.engines[1].locks().is_empty());
}

/// `[sharding] lock_timeout_ms`: a read that meets a lock still undecided (and not yet an
/// orphan's) answers `UNAVAILABLE` naming the key and the transaction once the lock timeout
/// passed, and reads again once the transaction is decided.
#[tokio::test]
async fn a_read_meeting_an_undecided_lock_gives_up_after_the_lock_timeout() {
    let timeout = Duration::from_millis(300);
    let s = sharded_with(&[b"m"], |shards| {
        shards
            .with_lock_timeout(timeout)
            .with_orphan_timeout(Duration::from_secs(600))
    })
    .await;
    let service = &s.service;
    let txid = [7u8; 16];
    lock_z(&s, txid).await;
    let started = std::time::Instant::now();
    let err = service.get("default", b"z").await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    assert!(
        err.message.contains("still undecided after 300 ms") && err.message.contains("'z'"),
        "{err}"
    );
    assert!(waited >= timeout, "gave up after {waited:?}");
    // Decided (aborted) in group 0: the next read resolves the lock and reads the old value.
    s.metadata
        .propose(Command::Decide(Decide {
            txid,
            idempotency: None,
            outcome: Outcome::Aborted {
                reason: "test".into(),
            },
        }))
        .await
        .unwrap();
    assert_eq!(
        service.get("default", b"z").await.unwrap(),
        Some(b"old".to_vec())
    );
}

#[tokio::test]
async fn versionstamped_keys_go_to_the_group_of_their_prefix() {
    let s = sharded(&[b"log/b", b"m"]).await;
    let service = &s.service;
    let placeholder = [0u8; 10];
    let key = service
        .set_versionstamped_key(
            "default",
            [b"log/c".as_slice(), &placeholder].concat(),
            b"v".to_vec(),
        )
        .await
        .unwrap();
    let version = u64::from_be_bytes(key[5..13].try_into().unwrap());
    assert_eq!(applied(&s)[1], version, "group 2 holds ['log/b', 'm')");
    assert_eq!(
        service.get("default", &key).await.unwrap(),
        Some(b"v".to_vec())
    );
    // The prefix `log/` reaches keys on both sides of `log/b`, but the key written is
    // `log/ ‖ be64(version) ‖ order`, and versions (here about 10^6) start with zero bytes: it
    // is routed to, and lands in, group 1.
    let low = service
        .set_versionstamped_key(
            "default",
            [b"log/".as_slice(), &placeholder].concat(),
            b"v".to_vec(),
        )
        .await
        .expect("routed by the lowest version it can get");
    let version = u64::from_be_bytes(low[4..12].try_into().unwrap());
    assert!(low.as_slice() < b"log/b".as_slice());
    assert_eq!(applied(&s)[0], version, "group 1 holds ['', 'log/b')");
    assert_eq!(
        service.get("default", &low).await.unwrap(),
        Some(b"v".to_vec())
    );
    // A versionstamped value goes to its key's group.
    let value = service
        .set_versionstamped_value(
            "default",
            b"z".to_vec(),
            [b"at:".as_slice(), &placeholder].concat(),
        )
        .await
        .unwrap();
    let stamped = u64::from_be_bytes(value[3..11].try_into().unwrap());
    assert_eq!(applied(&s)[2], stamped);
    assert_eq!(service.get("default", b"z").await.unwrap(), Some(value));
}

/// The keys both services hold; values differ in length so byte budgets cut at varied places.
fn data_keys() -> Vec<Vec<u8>> {
    [
        b"a".as_slice(),
        b"b",
        b"f",
        b"g",
        b"g\x00",
        b"ga",
        b"h",
        b"m",
        b"n",
        b"na",
        b"nb",
        b"s",
        b"t",
        b"ta",
        b"z",
        b"zz",
        b"\xff",
    ]
    .iter()
    .map(|k| k.to_vec())
    .collect()
}

/// Writes the same history to a service: every key in both column families, then some deleted
/// and a cleared range (tombstones the scans must pass over). Returns the read version after
/// the first phase.
async fn write_history(service: &Service) -> Version {
    for (i, key) in data_keys().iter().enumerate() {
        let value = vec![b'v'; i % 5 + 1];
        service
            .set("default", key.clone(), value.clone())
            .await
            .unwrap();
        service
            .set("other", key.clone(), key.clone())
            .await
            .unwrap();
    }
    let first = service.read_version().await.unwrap();
    for key in [b"b".as_slice(), b"ga", b"nb", b"zz"] {
        service.delete("default", key.to_vec()).await.unwrap();
    }
    let clear = Mutation::ClearRange {
        cf: "other".to_owned(),
        begin: b"nb".to_vec(),
        end: b"t".to_vec(),
    };
    service.commit(tx(vec![clear]), TIMEOUT).await.unwrap();
    service
        .set("default", b"h".to_vec(), b"rewritten".to_vec())
        .await
        .unwrap();
    first
}

/// Range requests over begin and end keys around the data and the split points, both
/// inclusivities, offsets, end offsets, limits and byte budgets.
fn specs() -> Vec<RangeSpec> {
    let begins: [&[u8]; 6] = [b"", b"a", b"g", b"g\x00", b"n", b"t"];
    let ends: [&[u8]; 7] = [b"", b"a", b"g", b"na", b"t", b"zz", b"\xff\xff"];
    let mut out = Vec::new();
    let mut n = 0usize;
    for begin in begins {
        for end in ends {
            for begin_or_equal in [true, false] {
                for end_or_equal in [true, false] {
                    for begin_offset in [0, 1, 3] {
                        for end_offset in [-1, 0, 1] {
                            for limit in [None, Some(0), Some(1), Some(2), Some(5)] {
                                n += 1;
                                out.push(RangeSpec {
                                    begin_key: begin.to_vec(),
                                    end_key: end.to_vec(),
                                    begin_or_equal,
                                    end_or_equal,
                                    begin_offset,
                                    end_offset,
                                    limit,
                                    // A budget on every third request: a few pairs' worth.
                                    max_bytes: n.is_multiple_of(3).then_some(n % 7 + 2),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

async fn ranges_match_an_unsharded_service(splits: &[&[u8]]) {
    let s = sharded(splits).await;
    let u = unsharded().await;
    let sharded_first = write_history(&s.service).await;
    let unsharded_first = write_history(&u.service).await;
    let mut has_more = 0;
    let mut items = 0;
    for spec in specs() {
        for cf in ["default", "other"] {
            let want = u.service.get_range(cf, spec.clone(), None).await.unwrap();
            let got = s.service.get_range(cf, spec.clone(), None).await.unwrap();
            assert_eq!(got, want, "splits {splits:?}, {cf}, {spec:?}");
            // The same request at the first phase's snapshot.
            let want = u
                .service
                .get_range(cf, spec.clone(), Some(unsharded_first))
                .await
                .unwrap();
            let got = s
                .service
                .get_range(cf, spec.clone(), Some(sharded_first))
                .await
                .unwrap();
            assert_eq!(got, want, "splits {splits:?}, {cf} at phase 1, {spec:?}");
            has_more += usize::from(got.has_more);
            items += got.items.len();
        }
    }
    // The requests exercise both kinds of page.
    assert!(has_more > 1_000 && items > 10_000, "{has_more} {items}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_reads_across_one_split_equal_an_unsharded_service() {
    ranges_match_an_unsharded_service(&[b"m"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_reads_across_three_splits_on_data_keys_equal_an_unsharded_service() {
    ranges_match_an_unsharded_service(&[b"g\x00", b"n", b"ta"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_reads_across_four_splits_between_keys_equal_an_unsharded_service() {
    ranges_match_an_unsharded_service(&[b"c", b"h", b"nab", b"y"]).await;
}

#[tokio::test]
async fn a_range_read_covers_every_group_it_reads_and_an_empty_one_asks_the_owner_of_its_start() {
    let s = sharded(&[b"g", b"n", b"t"]).await;
    let service = &s.service;
    let spec = |begin: &[u8], end: &[u8]| RangeSpec {
        begin_key: begin.to_vec(),
        end_key: end.to_vec(),
        begin_or_equal: true,
        end_or_equal: false,
        begin_offset: 0,
        end_offset: 0,
        limit: None,
        max_bytes: None,
    };
    covered(&s);
    service
        .get_range("default", spec(b"h", b"u"), None)
        .await
        .unwrap();
    assert_eq!(covered(&s), vec![1, 2, 3]);
    service
        .get_range("default", spec(b"o", b""), None)
        .await
        .unwrap();
    assert_eq!(
        covered(&s),
        vec![2],
        "an empty range asks the owner of its start"
    );
    // A version below the horizon of the group asked fails as on one group.
    let past = service.read_version().await.unwrap();
    s.directs[2]
        .propose(Command::Compact { horizon: past })
        .await
        .unwrap();
    let err = service
        .get_range("default", spec(b"o", b""), Some(past - 1))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::TransactionTooOld, "{err}");
    // Each group's part is scanned by that group: below group 3's horizon only a range
    // reaching group 3 is too old.
    let page = service
        .get_range("default", spec(b"a", b"n"), Some(past - 1))
        .await
        .unwrap();
    assert!(page.items.is_empty() && !page.has_more);
    let err = service
        .get_range("default", spec(b"a", b"n\x00"), Some(past - 1))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::TransactionTooOld, "{err}");
    assert_eq!(
        code_of(service.snapshot_get("default", b"n", past - 1).await),
        ErrorCode::TransactionTooOld
    );
    assert_eq!(
        service
            .snapshot_get("default", b"m", past - 1)
            .await
            .unwrap(),
        None
    );
}

/// A group's replicator whose `Resolve`s fail as if its leader could not be reached while
/// `unreachable` is set; everything else goes through.
struct ResolvesUnreachable {
    inner: Arc<dyn Replicator>,
    unreachable: std::sync::atomic::AtomicBool,
}

impl Replicator for ResolvesUnreachable {
    fn propose(
        &self,
        command: Command,
    ) -> BoxFuture<'_, Result<dolmen_raft::Applied, ProposeError>> {
        if matches!(command, Command::Resolve { .. }) && self.unreachable.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(ProposeError::LeaderUnreachable(
                    "the test's leader cannot be reached".into(),
                ))
            });
        }
        self.inner.propose(command)
    }

    fn cluster(&self) -> dolmen_raft::ClusterView {
        self.inner.cluster()
    }
}

/// Under `replication_mode = "all"` a commit across groups is answered as committed only once
/// every participant confirmed its resolve: one whose resolve fails (its leader unreachable)
/// turns the answer into `TIMEOUT` naming that group (docs/sharding.md §9). Under `quorum` the
/// recorded decision is the answer. Either way the decision stands: once the group is
/// reachable, a reader resolves its lock from group 0's record and sees the commit.
#[tokio::test]
async fn under_all_a_commit_whose_resolve_fails_in_a_group_times_out_naming_it() {
    for all in [true, false] {
        let failing = Arc::new(std::sync::OnceLock::<Arc<ResolvesUnreachable>>::new());
        let hook = failing.clone();
        let s = sharded_wrapping(
            &[b"m"],
            move |mut groups| {
                let wrapped = Arc::new(ResolvesUnreachable {
                    inner: groups[1].replicator.clone(),
                    unreachable: std::sync::atomic::AtomicBool::new(true),
                });
                groups[1].replicator = wrapped.clone();
                hook.set(wrapped).ok();
                groups
            },
            |shards| shards.with_every_voter_applying(all),
        )
        .await;
        let both = tx(vec![set("default", b"a", b"1"), set("default", b"z", b"2")]);
        let result = s.service.commit(both, TIMEOUT).await;
        if all {
            let e = result.expect_err("not every participant confirmed its resolve");
            assert_eq!(e.code, ErrorCode::Timeout, "{e:?}");
            assert!(
                e.message.contains("data group 2") && e.message.contains("replication_mode = all"),
                "{}",
                e.message
            );
        } else {
            result.expect("under quorum the recorded decision is the answer");
        }
        // Group 1 resolved at once; group 2 holds its lock until a reader resolves it.
        assert_eq!(
            s.service.get("default", b"a").await.unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(s.engines[1].locks().len(), 1, "all = {all}");
        failing
            .get()
            .expect("wrapped")
            .unreachable
            .store(false, Ordering::SeqCst);
        assert_eq!(
            s.service.get("default", b"z").await.unwrap(),
            Some(b"2".to_vec()),
            "all = {all}"
        );
        assert!(s.engines[1].locks().is_empty(), "all = {all}");
    }
}

fn code_of<T: std::fmt::Debug>(result: Result<T, dolmen_server::error::ServiceError>) -> ErrorCode {
    result.expect_err("the request should fail").code
}

#[tokio::test]
async fn shards_refuse_groups_that_do_not_fit_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let clock = shared_clock();
    let table = table(&[b"m"]);
    let oracle: Arc<dyn ReadGate> = Arc::new(TestOracle {
        clock: clock.clone(),
    });
    let fit = |groups: Vec<ShardGroup>, base: &Arc<Engine>| {
        let (metadata, _direct) = metadata(base, 0, &clock);
        Shards::routed(table.clone(), groups, oracle.clone(), metadata).map(|_| ())
    };
    let p = parts(&dir, &table, &clock);
    // A group missing.
    assert_eq!(
        fit(p.groups[..1].to_vec(), &p.base),
        Err(ShardsError::MissingGroup {
            group: 2,
            range: "['m', +inf)".to_owned()
        })
    );
    // A group twice.
    let twice = vec![
        p.groups[0].clone(),
        p.groups[1].clone(),
        p.groups[0].clone(),
    ];
    assert_eq!(
        fit(twice, &p.base),
        Err(ShardsError::DuplicateGroup { group: 1 })
    );
    // A group the table does not list (group 0 never is).
    let mut extra = p.groups.clone();
    extra.push(ShardGroup {
        id: 0,
        ..p.groups[0].clone()
    });
    assert_eq!(
        fit(extra, &p.base),
        Err(ShardsError::ExtraGroup {
            group: 0,
            table: "1, 2".to_owned()
        })
    );
    // A handle over other keys than the table gives its group.
    let swapped = vec![
        ShardGroup {
            id: 1,
            ..p.groups[1].clone()
        },
        ShardGroup {
            id: 2,
            ..p.groups[0].clone()
        },
    ];
    let err = fit(swapped, &p.base).unwrap_err();
    assert_eq!(
        err,
        ShardsError::SpanMismatch {
            group: 1,
            table: "['', 'm')".to_owned(),
            handle: "['m', +inf)".to_owned()
        }
    );
    assert!(err.to_string().contains("group 1's engine handle"), "{err}");
    // The groups as the table has them fit, in key order whatever order they came in.
    let reversed: Vec<ShardGroup> = p.groups.iter().rev().cloned().collect();
    let (metadata, _direct) = metadata(&p.base, 0, &clock);
    let shards = Shards::routed(table.clone(), reversed, oracle, metadata).unwrap();
    let ids: Vec<u64> = shards.groups().iter().map(|g| g.id).collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(shards.route(b"l").id, 1);
    assert_eq!(shards.route(b"m").id, 2);
    assert_eq!(shards.overlapping(b"a", b"m"), 0..1);
    assert_eq!(shards.overlapping(b"a", b"m\x00"), 0..2);
    assert_eq!(shards.overlapping(b"m", b"m"), 0..0);
    assert_eq!(shards.involved(b"m", b"m"), 1..2);
    for direct in &p.directs {
        direct.shutdown();
    }
}

/// A versionstamped key with a token goes to every group it may land in, whatever the
/// versions are when it is sent: a resend reaches the same groups and the same token table as
/// the first attempt, so it answers the first outcome instead of writing a second key (a
/// token-less one is routed by the lowest version it can get, as before).
#[tokio::test]
async fn a_versionstamped_key_with_a_token_is_written_once_whatever_the_resend_meets() {
    // Group 2 owns the stamps above `log/ ‖ 80`: these versions land in group 1.
    let s = sharded(&[b"log/\x80"]).await;
    let service = &s.service;
    let buffer = [b"log/".as_slice(), &[0; 10]].concat();
    let stamped = Transaction {
        idempotency: Some(IdempotencyToken {
            client_id: b"stamper".to_vec(),
            sequence: 1,
        }),
        ..tx(vec![Mutation::SetVersionstampedKey {
            cf: "default".to_owned(),
            key: buffer.clone(),
            value: b"once".to_vec(),
        }])
    };
    let version = service.commit(stamped.clone(), TIMEOUT).await.unwrap();
    let again = service.commit(stamped, TIMEOUT).await.unwrap();
    assert_eq!(again, version, "the resend answers the first commit");
    let key = [b"log/".as_slice(), &version.to_be_bytes(), &[0, 0]].concat();
    assert_eq!(
        service.get("default", &key).await.unwrap(),
        Some(b"once".to_vec())
    );
    let page = service
        .get_range(
            "default",
            RangeSpec {
                begin_key: b"log/".to_vec(),
                end_key: b"log0".to_vec(),
                begin_or_equal: true,
                end_or_equal: false,
                begin_offset: 0,
                end_offset: 0,
                limit: None,
                max_bytes: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "one key written: {page:?}");
    for engine in &s.engines {
        assert!(engine.locks().is_empty());
    }
}
