//! The service core in-process: a `Service` over the standalone (`Direct`) replicator and an
//! engine in a temp dir, no processes and no sockets. Each test checks outcomes and the WIRE
//! error codes (docs/WIRE.md §4) that the Thrift layer sends on.

use std::sync::Arc;
use std::time::Duration;

use dolmen_engine::{
    Command, Engine, EngineOptions, KeyRange, Mutation, RangeSpec, Transaction, Version,
};
use dolmen_raft::{Direct, DirectOptions, Replicator};
use dolmen_server::error::{ErrorCode, ServiceError};
use dolmen_server::faults::Target;
use dolmen_server::service::{Service, ServiceOptions};
use tempfile::TempDir;

/// A service and what keeps it alive (the writer thread, the data directory).
struct Fixture {
    service: Service,
    direct: Arc<Direct>,
    _dir: TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.direct.shutdown();
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = EngineOptions::new(
        dir.path().join("db"),
        vec!["default".to_owned(), "other".to_owned()],
    );
    let engine = Arc::new(Engine::open(&options).expect("open the engine"));
    let direct = Arc::new(
        Direct::start(
            engine.clone(),
            DirectOptions {
                node_id: 1,
                client_addr: "127.0.0.1:0".to_owned(),
                max_batch: 64,
                max_outstanding: 1024,
            },
        )
        .expect("start the writer thread"),
    );
    let service = Service::new(
        engine,
        direct.clone(),
        direct.clone(),
        ServiceOptions {
            future_version_wait: Duration::from_millis(50),
            allow_fault_injection: true,
            max_read_concurrency: 0,
            max_range_bytes: None,
        },
    );
    service
        .ensure_initial_version()
        .await
        .expect("initial version");
    Fixture {
        service,
        direct,
        _dir: dir,
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn code(result: Result<impl std::fmt::Debug, ServiceError>) -> ErrorCode {
    result.expect_err("the request should fail").code
}

fn range(begin: &[u8], end: &[u8], limit: Option<usize>) -> RangeSpec {
    RangeSpec {
        begin_key: begin.to_vec(),
        end_key: end.to_vec(),
        begin_or_equal: true,
        end_or_equal: false,
        begin_offset: 0,
        end_offset: 0,
        limit,
        max_bytes: None,
    }
}

fn set(key: &[u8], value: &[u8]) -> Mutation {
    Mutation::Set {
        cf: "default".to_owned(),
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn commit_at(read_version: Version, mutations: Vec<Mutation>, reads: &[&[u8]]) -> Transaction {
    Transaction {
        read_version: Some(read_version),
        mutations,
        read_conflicts: reads
            .iter()
            .map(|k| KeyRange::single("default", k))
            .collect(),
        idempotency: None,
        stamp: None,
    }
}

#[tokio::test]
async fn get_set_delete_round_trip_in_each_column_family() {
    let f = fixture().await;
    let s = &f.service;
    assert_eq!(s.get("default", b"k").await.unwrap(), None);
    let v1 = s
        .set("default", b"k".to_vec(), b"1".to_vec())
        .await
        .unwrap();
    s.set("other", b"k".to_vec(), b"other".to_vec())
        .await
        .unwrap();
    assert_eq!(s.get("default", b"k").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get("other", b"k").await.unwrap(), Some(b"other".to_vec()));
    let v2 = s.delete("default", b"k".to_vec()).await.unwrap();
    assert!(v2 > v1, "versions grow: {v1} then {v2}");
    assert_eq!(s.get("default", b"k").await.unwrap(), None);
    assert_eq!(s.get("other", b"k").await.unwrap(), Some(b"other".to_vec()));
    // Deleting a missing key succeeds.
    s.delete("default", b"never".to_vec()).await.unwrap();
    assert!(s.read_version().await.unwrap() >= v2);
}

#[tokio::test]
async fn range_reads_page_with_has_more() {
    let f = fixture().await;
    let s = &f.service;
    for k in [b"a", b"b", b"c", b"d"] {
        s.set("default", k.to_vec(), k.to_vec()).await.unwrap();
    }
    let page = s
        .get_range("default", range(b"a", b"d", Some(2)), None)
        .await
        .unwrap();
    let keys: Vec<_> = page.items.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
    assert!(page.has_more);
    let page = s
        .get_range("default", range(b"b", b"d", None), None)
        .await
        .unwrap();
    assert_eq!(
        page.items,
        vec![
            (b"b".to_vec(), b"b".to_vec()),
            (b"c".to_vec(), b"c".to_vec())
        ]
    );
    assert!(!page.has_more);
}

#[tokio::test]
async fn snapshot_reads_see_the_state_at_their_version() {
    let f = fixture().await;
    let s = &f.service;
    let v1 = s
        .set("default", b"k".to_vec(), b"1".to_vec())
        .await
        .unwrap();
    let v2 = s
        .set("default", b"k".to_vec(), b"2".to_vec())
        .await
        .unwrap();
    s.set("default", b"j".to_vec(), b"j".to_vec())
        .await
        .unwrap();
    let v3 = s.delete("default", b"k".to_vec()).await.unwrap();
    let at = |v| s.snapshot_get("default", b"k", v);
    assert_eq!(at(v1 - 1).await.unwrap(), None);
    assert_eq!(at(v1).await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(at(v2).await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(at(v3).await.unwrap(), None);
    let page = s
        .get_range("default", range(b"a", b"z", None), Some(v2))
        .await
        .unwrap();
    assert_eq!(page.items, vec![(b"k".to_vec(), b"2".to_vec())]);
}

#[tokio::test]
async fn a_commit_conflicts_when_a_read_key_was_written_after_its_read_version() {
    let f = fixture().await;
    let s = &f.service;
    let rv = s.read_version().await.unwrap();
    s.set("default", b"read".to_vec(), b"other".to_vec())
        .await
        .unwrap();
    let err = s
        .commit(commit_at(rv, vec![set(b"w", b"1")], &[b"read"]), TIMEOUT)
        .await
        .expect_err("a conflict");
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(err.message.starts_with("CONFLICT: key 'read'"), "{err}");
    assert_eq!(
        s.get("default", b"w").await.unwrap(),
        None,
        "nothing applied"
    );

    // The same commit at a fresh read version, or reading another key, goes through.
    let rv = s.read_version().await.unwrap();
    let version = s
        .commit(commit_at(rv, vec![set(b"w", b"1")], &[b"read"]), TIMEOUT)
        .await
        .unwrap();
    assert!(version > rv);
    assert_eq!(
        s.snapshot_get("default", b"w", version).await.unwrap(),
        Some(b"1".to_vec())
    );
}

#[tokio::test]
async fn versionstamped_keys_and_values_carry_the_commit_version() {
    let f = fixture().await;
    let s = &f.service;
    let placeholder = [0u8; 10];
    let key = s
        .set_versionstamped_key(
            "default",
            [b"log/".as_slice(), &placeholder].concat(),
            b"v".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(key.len(), 14);
    assert_eq!(&key[..4], b"log/");
    let version = u64::from_be_bytes(key[4..12].try_into().unwrap());
    assert_eq!(&key[12..], &[0, 0], "order 0");
    assert_eq!(s.get("default", &key).await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        s.snapshot_get("default", &key, version - 1).await.unwrap(),
        None
    );

    let value = s
        .set_versionstamped_value(
            "default",
            b"stamped".to_vec(),
            [b"at:".as_slice(), &placeholder].concat(),
        )
        .await
        .unwrap();
    let stamped_at = u64::from_be_bytes(value[3..11].try_into().unwrap());
    assert!(stamped_at > version);
    assert_eq!(s.get("default", b"stamped").await.unwrap(), Some(value));

    // A buffer shorter than the stamp is an invalid operation, not a write.
    let short = s
        .set_versionstamped_key("default", b"short".to_vec(), b"v".to_vec())
        .await;
    assert_eq!(code(short), ErrorCode::InvalidOperation);
    let short = s
        .set_versionstamped_value("default", b"k".to_vec(), b"short".to_vec())
        .await;
    assert_eq!(code(short), ErrorCode::InvalidOperation);
}

#[tokio::test]
async fn reads_and_commits_below_the_horizon_are_too_old() {
    let f = fixture().await;
    let s = &f.service;
    let old = s
        .set("default", b"k".to_vec(), b"1".to_vec())
        .await
        .unwrap();
    let newer = s
        .set("default", b"k".to_vec(), b"2".to_vec())
        .await
        .unwrap();
    // The retention job's command, through the group's replicator.
    f.direct
        .propose(Command::Compact { horizon: newer })
        .await
        .unwrap();

    assert_eq!(
        code(s.snapshot_get("default", b"k", old).await),
        ErrorCode::TransactionTooOld
    );
    assert_eq!(
        code(
            s.get_range("default", range(b"a", b"z", None), Some(old))
                .await
        ),
        ErrorCode::TransactionTooOld
    );
    let err = s
        .commit(commit_at(old, vec![set(b"w", b"1")], &[b"k"]), TIMEOUT)
        .await
        .expect_err("too old");
    assert_eq!(err.code, ErrorCode::TransactionTooOld);
    assert!(err.message.contains(&format!("horizon {newer}")), "{err}");
    // At the horizon itself the snapshot is still whole.
    assert_eq!(
        s.snapshot_get("default", b"k", newer).await.unwrap(),
        Some(b"2".to_vec())
    );
}

#[tokio::test]
async fn versions_beyond_the_applied_state_are_future_versions() {
    let f = fixture().await;
    let s = &f.service;
    let future = s.read_version().await.unwrap() + 1_000;
    assert_eq!(
        code(s.snapshot_get("default", b"k", future).await),
        ErrorCode::FutureVersion
    );
    assert_eq!(
        code(
            s.get_range("default", range(b"a", b"z", None), Some(future))
                .await
        ),
        ErrorCode::FutureVersion
    );
    assert_eq!(
        code(
            s.commit(commit_at(future, vec![set(b"w", b"1")], &[]), TIMEOUT)
                .await
        ),
        ErrorCode::FutureVersion
    );
}

#[tokio::test]
async fn invalid_requests_name_their_problem_and_write_nothing() {
    let f = fixture().await;
    let s = &f.service;
    let rv = s.read_version().await.unwrap();
    // A versionstamped key without room for the stamp.
    let stamp = Mutation::SetVersionstampedKey {
        cf: "default".to_owned(),
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    };
    let err = s
        .commit(commit_at(rv, vec![set(b"ok", b"1"), stamp], &[]), TIMEOUT)
        .await
        .expect_err("invalid");
    assert_eq!(err.code, ErrorCode::InvalidOperation);
    assert!(err.message.starts_with("INVALID_OPERATION: "), "{err}");
    assert_eq!(
        s.get("default", b"ok").await.unwrap(),
        None,
        "all or nothing"
    );

    // An unknown column family, in a commit or a read.
    let elsewhere = Mutation::Set {
        cf: "nope".to_owned(),
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    };
    let err = s
        .commit(commit_at(rv, vec![elsewhere], &[]), TIMEOUT)
        .await
        .expect_err("unknown cf");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(err.message.contains("'nope'"), "{err}");
    assert_eq!(code(s.get("nope", b"k").await), ErrorCode::InvalidArgument);
    assert_eq!(
        code(s.get_range("nope", range(b"a", b"z", None), None).await),
        ErrorCode::InvalidArgument
    );
    // An empty key.
    assert_eq!(
        code(s.get("default", b"").await),
        ErrorCode::InvalidArgument
    );
}

#[tokio::test]
async fn an_injected_fault_fails_its_target_with_its_code() {
    let f = fixture().await;
    let s = &f.service;
    s.faults()
        .configure("UNAVAILABLE", 1.0, 0, Target::Get)
        .unwrap();
    assert_eq!(
        code(s.get("default", b"k").await),
        ErrorCode::Injected("UNAVAILABLE".to_owned())
    );
    // Other operations are not targeted.
    s.set("default", b"k".to_vec(), b"v".to_vec())
        .await
        .unwrap();
}
