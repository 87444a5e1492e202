//! Data and versions survive a SIGTERM restart (of each node, rolling, on a cluster).

use dolmen_tests::client::op_set;
use dolmen_tests::{Connector, KvExt, TestCluster};

use crate::helpers::{assert_found, assert_missing, fresh_ns, key};

/// Data and versions survive a SIGTERM restart.
pub(crate) fn suite_restart(c: &mut dyn TestCluster, connect: Connector) {
    let ns = fresh_ns("restart");
    let keys: Vec<Vec<u8>> = (0..5)
        .map(|i| key(&ns, format!("k{i}").as_bytes()))
        .collect();
    let gone = key(&ns, b"gone");
    let before = {
        let mut kv = connect.client(c);
        for k in &keys {
            kv.must_set(k, k);
        }
        kv.must_set(&gone, b"x");
        kv.must_delete(&gone);
        let rv = kv.read_version();
        kv.must_commit(rv, vec![op_set(&key(&ns, b"committed"), b"c")], vec![]);
        kv.read_version()
    };

    c.restart();

    let mut kv = connect.client(c);
    for k in &keys {
        assert_found(&mut kv, k, k);
    }
    assert_found(&mut kv, &key(&ns, b"committed"), b"c");
    assert_missing(&mut kv, &gone);
    let rv = kv.read_version();
    assert!(
        rv >= before,
        "expected the read version after restart {rv} >= {before} before"
    );
    kv.must_set(&key(&ns, b"after"), b"a");
    let after = kv.read_version();
    assert!(
        after > before,
        "expected a new write after restart to give read version {after} > {before}"
    );
}
