//! Black-box suite for the Rust SDK (`dolmen-client`): transactions against a real standalone
//! `dolmen serve` — read-your-writes, range merging, conflicts, the `transact` retry loop,
//! idempotent commits and versionstamps.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace -- sdk`.

use dolmen_client::{Database, DatabaseOptions, Error, VERSIONSTAMP_LEN};
use dolmen_tests::Standalone;

async fn open(node: &Standalone) -> Database {
    Database::connect(node.thrift_endpoint(), DatabaseOptions::default())
        .await
        .expect("connect to the node")
}

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_read_your_writes() {
    let node = Standalone::start();
    let db = open(&node).await;
    let setup = db.begin();
    setup.set(b"ryw/a", b"1");
    setup.set(b"ryw/b", b"2");
    setup.commit().await.unwrap();

    let tx = db.begin();
    assert_eq!(tx.get(b"ryw/a").await.unwrap(), Some(b"1".to_vec()));
    tx.set(b"ryw/a", b"10");
    tx.delete(b"ryw/b");
    tx.set(b"ryw/c", b"3");
    assert_eq!(tx.get(b"ryw/a").await.unwrap(), Some(b"10".to_vec()));
    assert_eq!(tx.get(b"ryw/b").await.unwrap(), None);
    assert_eq!(
        tx.snapshot_get(b"ryw/c").await.unwrap(),
        Some(b"3".to_vec())
    );
    tx.clear_range(b"ryw/", b"ryw0");
    assert_eq!(tx.get(b"ryw/a").await.unwrap(), None);
    tx.set(b"ryw/d", b"4");
    assert_eq!(tx.get(b"ryw/d").await.unwrap(), Some(b"4".to_vec()));
    // Nothing is visible to others before the commit.
    assert_eq!(db.begin().get(b"ryw/c").await.unwrap(), None);
    tx.commit().await.unwrap();

    let after = db.begin();
    assert_eq!(
        after.get_range(b"ryw/", b"ryw0", 0).await.unwrap(),
        vec![kv("ryw/d", "4")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_get_range_merges_buffered_writes() {
    let node = Standalone::start();
    let db = open(&node).await;
    let setup = db.begin();
    for k in ["r/a", "r/b", "r/c", "r/d", "r/e", "r/f"] {
        setup.set(k.as_bytes(), b"old");
    }
    setup.commit().await.unwrap();

    let tx = db.begin();
    tx.set(b"r/b", b"new"); // overrides a stored key
    tx.delete(b"r/c"); // hides a stored key
    tx.set(b"r/bb", b"ins"); // a key only in the buffer
    tx.clear_range(b"r/d", b"r/f"); // hides r/d and r/e
    tx.set(b"r/zz", b"out"); // outside the range asked for
    let all = tx.get_range(b"r/", b"r/z", 0).await.unwrap();
    assert_eq!(
        all,
        vec![
            kv("r/a", "old"),
            kv("r/b", "new"),
            kv("r/bb", "ins"),
            kv("r/f", "old"),
        ]
    );
    let first3 = tx.get_range(b"r/", b"r/z", 3).await.unwrap();
    assert_eq!(first3, all[..3].to_vec());
    // Paging: a limit smaller than the deletions still fills up.
    let two = tx.get_range(b"r/c", b"r/z", 1).await.unwrap();
    assert_eq!(two, vec![kv("r/f", "old")]);
    // An empty or inverted range reads nothing and the commit still goes through.
    assert!(tx.get_range(b"r/z", b"r/a", 0).await.unwrap().is_empty());
    tx.clear_range(b"r/z", b"r/a");
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_conflicting_transactions() {
    let node = Standalone::start();
    let db = open(&node).await;
    let t1 = db.begin();
    let t2 = db.begin();
    assert_eq!(t1.get(b"conflict/k").await.unwrap(), None);
    assert_eq!(t2.get(b"conflict/k").await.unwrap(), None);
    t1.set(b"conflict/k", b"t1");
    t2.set(b"conflict/k", b"t2");
    t1.commit().await.unwrap();
    let err = t2.commit().await.unwrap_err();
    assert_eq!(err.code(), Some("CONFLICT"), "{err}");
    assert!(err.is_retryable());
    assert_eq!(
        db.begin().get(b"conflict/k").await.unwrap(),
        Some(b"t1".to_vec())
    );

    // A range read conflicts with an insert into the range; a snapshot read conflicts with nothing.
    let t3 = db.begin();
    let t4 = db.begin();
    t3.get_range(b"conflict/r/", b"conflict/r0", 0)
        .await
        .unwrap();
    t3.set(b"conflict/other", b"x");
    t4.snapshot_get(b"conflict/r/a").await.unwrap();
    t4.set(b"conflict/r/a", b"y");
    t4.commit().await.unwrap();
    assert_eq!(t3.commit().await.unwrap_err().code(), Some("CONFLICT"));

    // Non-retryable errors are typed as such.
    let bad = db.begin();
    bad.use_column_family("no-such-cf");
    bad.set(b"k", b"v");
    let err = bad.commit().await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
}

fn decode(v: Option<Vec<u8>>) -> Result<u64, Error> {
    Ok(v.map_or(0, |b| {
        u64::from_be_bytes(b.try_into().expect("8-byte counter"))
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_transact_counter_is_exact() {
    const TASKS: u64 = 8;
    const INCREMENTS: u64 = 15;
    let node = Standalone::start();
    let db = open(&node).await;
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let db = db.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                db.transact(|tx| async move {
                    let n = decode(tx.get(b"counter").await?)?;
                    tx.set(b"counter", &(n + 1).to_be_bytes());
                    Ok(())
                })
                .await
                .expect("transact commits");
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let total = decode(db.begin().get(b"counter").await.unwrap()).unwrap();
    assert_eq!(total, TASKS * INCREMENTS);
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_idempotent_commit_applies_once() {
    let node = Standalone::start();
    let db = open(&node).await;
    let tx = db.begin();
    let n = decode(tx.get(b"idem").await.unwrap()).unwrap();
    tx.set(b"idem", &(n + 1).to_be_bytes());
    let first = tx.commit().await.unwrap();
    // The same request (same client_id/client_sequence) again, as after an unknown outcome:
    // the server answers with the first outcome and applies nothing.
    let second = tx.commit().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(decode(db.begin().get(b"idem").await.unwrap()).unwrap(), 1);

    // The retry loop after an unknown outcome: the transaction runs again with the same token,
    // and the server returns the first outcome instead of applying the second run.
    let tx = db.begin();
    tx.set(b"idem2", b"first");
    let first = tx.commit().await.unwrap();
    tx.reset_for_retry(true);
    tx.set(b"idem2", b"second");
    assert_eq!(tx.commit().await.unwrap(), first);
    assert_eq!(
        db.begin().get(b"idem2").await.unwrap(),
        Some(b"first".to_vec())
    );
    // After a known outcome the retry takes a new token and applies.
    tx.reset_for_retry(false);
    tx.set(b"idem2", b"third");
    assert!(tx.commit().await.unwrap().version > first.version);
    assert_eq!(
        db.begin().get(b"idem2").await.unwrap(),
        Some(b"third".to_vec())
    );

    // A later transaction gets a fresh token and applies normally.
    let next = db
        .transact(|tx| async move {
            let n = decode(tx.get(b"idem").await?)?;
            tx.set(b"idem", &(n + 1).to_be_bytes());
            Ok(n + 1)
        })
        .await
        .unwrap();
    assert_eq!(next, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_versionstamps() {
    let node = Standalone::start();
    let db = open(&node).await;
    let tx = db.begin();
    tx.set(b"vs/plain", b"p");
    let mut key = b"vs/key/".to_vec();
    key.extend_from_slice(&[0; VERSIONSTAMP_LEN]);
    let key_op = tx.set_versionstamped_key(&key, b"stamped").unwrap();
    let mut value = b"v:".to_vec();
    value.extend_from_slice(&[0; VERSIONSTAMP_LEN]);
    let value_op = tx.set_versionstamped_value(b"vs/value", &value).unwrap();
    assert!(matches!(
        tx.get(b"vs/value").await,
        Err(Error::Usage { .. })
    ));
    let committed = tx.commit().await.unwrap();

    let key_stamp = committed.versionstamp_of(key_op);
    assert_eq!(&key_stamp[..8], &committed.version.to_be_bytes());
    assert_eq!(&key_stamp[8..], &1u16.to_be_bytes());
    let value_stamp = committed.versionstamp_of(value_op);
    assert_ne!(key_stamp, value_stamp);

    let read = db.begin();
    let mut stamped_key = b"vs/key/".to_vec();
    stamped_key.extend_from_slice(&key_stamp);
    assert_eq!(
        read.get(&stamped_key).await.unwrap(),
        Some(b"stamped".to_vec())
    );
    let mut stamped_value = b"v:".to_vec();
    stamped_value.extend_from_slice(&value_stamp);
    assert_eq!(read.get(b"vs/value").await.unwrap(), Some(stamped_value));
    assert_eq!(
        read.get_range(b"vs/key/", b"vs/key0", 0).await.unwrap(),
        vec![(stamped_key, b"stamped".to_vec())]
    );
    assert!(tx.set_versionstamped_key(b"short", b"v").is_err());
}
