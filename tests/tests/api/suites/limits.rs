//! Limits: key and value sizes, empty keys, and `[server] max_connections`.

use std::time::{Duration, Instant};

use dolmen_tests::client::op_set;
use dolmen_tests::kvstore::{GetRequest, GetResponse, TTransactionalKVSyncClient};
use dolmen_tests::raw::{call_bytes, RawConn};
use dolmen_tests::{Connector, KvExt, TestCluster};
use thrift::protocol::TMessageType;

use crate::helpers::{assert_found, assert_missing, assert_nonempty_error, fresh_ns, key};

/// Key ≤ 10,000 and value ≤ 100,000 bytes; larger or empty keys are INVALID_ARGUMENT.
pub(crate) fn suite_size_limits_and_empty_keys(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("limits");

    let mut max_key = key(&ns, b"");
    max_key.resize(10_000, b'k');
    kv.must_set(&max_key, b"max-key");
    assert_found(&mut kv, &max_key, b"max-key");

    let mut big_key = max_key.clone();
    big_key.push(b'k');
    let r = kv.set_in(&big_key, b"v", None);
    assert!(
        !r.success,
        "expected setKey with a 10,001-byte key to fail: {r:?}"
    );
    assert_eq!(
        r.error_code.as_deref(),
        Some("INVALID_ARGUMENT"),
        "expected INVALID_ARGUMENT: {r:?}"
    );
    assert_nonempty_error(&r.error, "setKey with a 10,001-byte key");
    let r = kv.get_value(&big_key);
    assert!(
        !r.found,
        "expected get with a 10,001-byte key not found: {r:?}"
    );
    assert_nonempty_error(&r.error, "get with a 10,001-byte key");
    let rv = kv.read_version();
    let r = kv.commit(rv, vec![op_set(&big_key, b"v")], vec![]);
    assert!(
        !r.success,
        "expected atomicCommit with a 10,001-byte key to fail: {r:?}"
    );
    assert_eq!(
        r.error_code.as_deref(),
        Some("INVALID_ARGUMENT"),
        "expected INVALID_ARGUMENT for a 10,001-byte key in atomicCommit: {r:?}"
    );

    let k = key(&ns, b"value");
    let max_value = vec![b'v'; 100_000];
    kv.must_set(&k, &max_value);
    assert_found(&mut kv, &k, &max_value);
    let kb = key(&ns, b"big-value");
    let r = kv.set_in(&kb, &vec![b'v'; 100_001], None);
    assert!(
        !r.success,
        "expected setKey with a 100,001-byte value to fail: {r:?}"
    );
    assert_eq!(
        r.error_code.as_deref(),
        Some("INVALID_ARGUMENT"),
        "expected INVALID_ARGUMENT: {r:?}"
    );
    assert_nonempty_error(&r.error, "setKey with a 100,001-byte value");
    assert_missing(&mut kv, &kb);

    // Empty keys.
    let r = kv.set_in(b"", b"v", None);
    assert!(
        !r.success,
        "expected setKey with an empty key to fail: {r:?}"
    );
    assert_eq!(
        r.error_code.as_deref(),
        Some("INVALID_ARGUMENT"),
        "expected INVALID_ARGUMENT: {r:?}"
    );
    let r = kv.get_value(b"");
    assert!(
        !r.found && r.value.is_empty(),
        "expected get(empty key) not found: {r:?}"
    );
    assert_nonempty_error(&r.error, "get with an empty key");
    let rv = kv.read_version();
    let r = kv.snapshot_read_in(b"", rv, None);
    assert!(
        !r.found,
        "expected snapshotRead(empty key) not found: {r:?}"
    );
    assert_nonempty_error(&r.error, "snapshotRead with an empty key");
}

/// `[server] max_connections`: a connection beyond the cap is refused with an error and closed;
/// connections within it keep working, and closing one frees its place.
pub(crate) fn suite_max_connections(c: &dyn TestCluster, connect: Connector) {
    let addr = connect.endpoint(c);
    let ns = fresh_ns("maxconn");
    let mut first = connect.connect(addr);
    let mut second = connect.connect(addr);
    first.must_set(&key(&ns, b"a"), b"1");
    second.must_set(&key(&ns, b"b"), b"2");
    {
        let mut third = connect.connect(addr);
        let refused = third.get(GetRequest::new(key(&ns, b"a"), None));
        assert!(
            refused.is_err(),
            "a third connection with max_connections=2 must be refused, got {refused:?}"
        );
    }
    // The refusal names the call it refuses: clients match a reply by method name and seqid
    // (the stock Node.js client waits forever for a reply it cannot match).
    {
        let mut raw = RawConn::connect(addr, connect.framed());
        raw.send(&call_bytes(
            "get",
            4242,
            &GetRequest::new(key(&ns, b"a"), None),
        ));
        let r = raw.recv::<GetResponse>().unwrap_or_else(|e| {
            panic!("expected an EXCEPTION refusing a connection over the cap, got {e:?}")
        });
        assert_eq!(
            (
                r.header.message_type,
                r.header.name.as_str(),
                r.header.sequence_number
            ),
            (TMessageType::Exception, "get", 4242),
            "expected the refusal to echo the call's method name and seqid: {r:?}"
        );
        let message = r.exception.map(|e| e.message).unwrap_or_default();
        assert!(message.contains("max_connections"), "{message}");
    }
    assert_found(&mut first, &key(&ns, b"b"), b"2");
    drop(second);
    // The server notices the close asynchronously: retry a bounded number of times.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect.connect(addr);
        match again.get(GetRequest::new(key(&ns, b"a"), None)) {
            Ok(r) => {
                assert!(r.found, "expected the value written before: {r:?}");
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "a freed connection slot was not reused within 10 s: {e:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `[server] read_timeout_ms` (1 s here): a connection whose request stops after 3 bytes is
/// closed once the timeout passes, and other clients are served meanwhile and after.
pub(crate) fn suite_slow_requests_are_cut_off(c: &dyn TestCluster, connect: Connector) {
    let addr = connect.endpoint(c);
    let ns = fresh_ns("slow");
    let mut slow = RawConn::connect(addr, connect.framed());
    let request = call_bytes("get", 1, &GetRequest::new(key(&ns, b"a"), None));
    slow.send_raw(&request[..3]);
    let mut kv = connect.connect(addr);
    kv.must_set(&key(&ns, b"during"), b"1");
    let started = Instant::now();
    slow.expect_closed("read_timeout_ms (a request stuck after 3 bytes)");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stuck request was cut off only after {:?}",
        started.elapsed()
    );
    assert_found(&mut kv, &key(&ns, b"during"), b"1");
}
