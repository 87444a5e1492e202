//! setFaultInjection: installing and clearing a commit fault, and its refusal when injection
//! is not allowed.

use dolmen_tests::client::op_set;
use dolmen_tests::kvstore::{FaultInjectionRequest, TTransactionalKVSyncClient};
use dolmen_tests::{Connector, KvExt, TestCluster};
use thrift::OrderedFloat;

use crate::helpers::{assert_found, assert_missing, assert_nonempty_error, fresh_ns, key, reply};

pub(crate) fn fault(probability: Option<f64>, target: Option<&str>) -> FaultInjectionRequest {
    FaultInjectionRequest::new(
        "CONFLICT".to_owned(),
        probability.map(OrderedFloat),
        Some(0),
        target.map(str::to_owned),
    )
}

/// setFaultInjection installs and clears a process-wide commit fault (injection allowed).
pub(crate) fn suite_fault_injection(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let ns = fresh_ns("fault");
    for (what, install, clear) in [
        (
            "target absent, cleared with probability 0",
            fault(Some(1.0), None),
            fault(Some(0.0), None),
        ),
        (
            "target \"commit\", cleared with probability absent",
            fault(Some(1.0), Some("commit")),
            fault(None, None),
        ),
    ] {
        let r = reply("setFaultInjection", kv.set_fault_injection(install));
        assert!(
            r.success && r.error.is_none(),
            "expected installing a fault to succeed ({what}): {r:?}"
        );
        let k = key(&ns, what.as_bytes());
        let rv = kv.read_version();
        let r = kv.commit(rv, vec![op_set(&k, b"x")], vec![]);
        assert!(
            !r.success,
            "expected the injected fault to fail the commit ({what}): {r:?}"
        );
        assert_eq!(
            r.error_code.as_deref(),
            Some("CONFLICT"),
            "expected CONFLICT ({what}): {r:?}"
        );
        assert_missing(&mut kv, &k);

        let r = reply("setFaultInjection", kv.set_fault_injection(clear));
        assert!(
            r.success && r.error.is_none(),
            "expected clearing the fault to succeed ({what}): {r:?}"
        );
        let rv = kv.read_version();
        kv.must_commit(rv, vec![op_set(&k, b"y")], vec![]);
        assert_found(&mut kv, &k, b"y");
    }
}

/// With `[faults] allow_injection = false`, setFaultInjection refuses.
pub(crate) fn suite_fault_injection_disabled(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let r = reply(
        "setFaultInjection",
        kv.set_fault_injection(fault(Some(1.0), None)),
    );
    assert!(
        !r.success,
        "expected setFaultInjection to be refused when not allowed: {r:?}"
    );
    assert_nonempty_error(&r.error, "setFaultInjection with injection disabled");
    let k = key(&fresh_ns("fault-off"), b"k");
    let rv = kv.read_version();
    kv.must_commit(rv, vec![op_set(&k, b"x")], vec![]);
    assert_found(&mut kv, &k, b"x");
}
