//! Black-box API suite: every docs/WIRE.md §2 method and the §3/§4 semantics, driven through the stock
//! Apache Thrift client (buffered and framed) against real `dolmen serve` processes.
//!
//! Each `suite_*` function takes `(&dyn TestCluster, Connector)`, so the same function runs
//! against a standalone node (one fresh node per test) and against a 3-node Raft cluster with
//! the client on the leader and on a follower (`cluster::*`, a few suites per cluster). Suites
//! keep their keys under a unique namespace ([`helpers::fresh_ns`]) unless their doc says they
//! need an empty column family.
//!
//! ```text
//! main.rs       the runners: standalone!(name => suite) × {buffered, framed}; cluster::*;
//!               sharded::*
//! helpers.rs    namespaces, reply unwrapping, assertions
//! suites/       one module per concern: methods, reads, versions, commits, versionstamps,
//!               ranges, limits, faults, diagnostics, restart, protocol, across_ranges,
//!               resends
//! ```
//!
//! Run: `make test`, or `cargo build --workspace --all-targets && cargo test --workspace` (`DOLMEN_BIN=<path>` picks
//! another binary; `DOLMEN_TEST_KEEP=1` keeps each node's temp dir with its `server.log`).

mod helpers;
mod suites;

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use dolmen_tests::kvstore::TTransactionalKVSyncClient;
use dolmen_tests::replicated::try_connect;
use dolmen_tests::{
    Connector, KvExt, ReplicatedBuilder, ReplicatedCluster, Standalone, StandaloneBuilder, Target,
    TestCluster, Transport,
};

use suites::{
    fault, suite_atomic_commit, suite_atomic_commit_invalid_operations, suite_byte_at_a_time,
    suite_column_families, suite_commits_across_ranges, suite_concurrent_clients, suite_conflicts,
    suite_diagnostics, suite_every_method_replies, suite_fault_injection,
    suite_fault_injection_disabled, suite_future_version, suite_get_range_algorithm,
    suite_get_set_delete, suite_idempotent_retries_across_ranges, suite_legacy_methods,
    suite_malformed_input_closes_connection, suite_many_sequential_requests, suite_max_connections,
    suite_ping, suite_range_defaults_and_byte_order, suite_range_reads_across_ranges,
    suite_read_versions, suite_resends_whose_every_check_fails, suite_restart,
    suite_size_limits_and_empty_keys, suite_slow_requests_are_cut_off, suite_snapshots,
    suite_transaction_too_old, suite_transfers_across_ranges, suite_unknown_column_family,
    suite_unknown_method, suite_versionstamps, suite_versionstamps_across_ranges,
};

// ---------------------------------------------------------------------------------------------
// Runners: standalone × {buffered, framed}
// ---------------------------------------------------------------------------------------------

type Suite = fn(&dyn TestCluster, Connector);
type MutSuite = fn(&mut dyn TestCluster, Connector);

fn run_standalone(builder: StandaloneBuilder, suite: Suite, transport: Transport) {
    let node = builder.start();
    suite(&node, Connector::new(transport, Target::Leader));
}

fn run_standalone_mut(builder: StandaloneBuilder, suite: MutSuite, transport: Transport) {
    let mut node = builder.start();
    suite(&mut node, Connector::new(transport, Target::Leader));
}

/// `standalone!(name => suite[, builder])` defines `name::buffered` and `name::framed`, each
/// running `suite` against its own fresh standalone node.
macro_rules! standalone {
    ($name:ident => $suite:path) => {
        standalone!($name => $suite, Standalone::builder());
    };
    ($name:ident => $suite:path, $builder:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn buffered() {
                run_standalone($builder, $suite, Transport::Buffered)
            }
            #[test]
            fn framed() {
                run_standalone($builder, $suite, Transport::Framed)
            }
        }
    };
}

standalone!(every_method_replies => suite_every_method_replies);
standalone!(get_set_delete => suite_get_set_delete);
standalone!(column_families => suite_column_families);
standalone!(unknown_column_family => suite_unknown_column_family);
standalone!(read_versions => suite_read_versions);
standalone!(atomic_commit => suite_atomic_commit);
standalone!(atomic_commit_invalid_operations => suite_atomic_commit_invalid_operations);
standalone!(conflicts => suite_conflicts);
standalone!(snapshots => suite_snapshots);
standalone!(future_version => suite_future_version);
standalone!(transaction_too_old => suite_transaction_too_old);
standalone!(versionstamps => suite_versionstamps);
standalone!(get_range_algorithm => suite_get_range_algorithm);
standalone!(range_defaults_and_byte_order => suite_range_defaults_and_byte_order);
standalone!(size_limits_and_empty_keys => suite_size_limits_and_empty_keys);
standalone!(legacy_methods => suite_legacy_methods);
standalone!(fault_injection => suite_fault_injection);
standalone!(
    fault_injection_disabled => suite_fault_injection_disabled,
    Standalone::builder().allow_injection(false)
);
standalone!(ping => suite_ping);
standalone!(diagnostics => suite_diagnostics);
standalone!(malformed_input_closes_connection => suite_malformed_input_closes_connection);
standalone!(unknown_method => suite_unknown_method);
standalone!(byte_at_a_time => suite_byte_at_a_time);
standalone!(many_sequential_requests => suite_many_sequential_requests);
standalone!(concurrent_clients => suite_concurrent_clients);
standalone!(max_connections => suite_max_connections, Standalone::builder().set("server", "max_connections", 2));
standalone!(
    slow_requests_are_cut_off => suite_slow_requests_are_cut_off,
    Standalone::builder().set("server", "read_timeout_ms", 1000)
);
standalone!(resends_whose_every_check_fails => suite_resends_whose_every_check_fails);

mod restart {
    use super::*;
    #[test]
    fn buffered() {
        run_standalone_mut(Standalone::builder(), suite_restart, Transport::Buffered)
    }
    #[test]
    fn framed() {
        run_standalone_mut(Standalone::builder(), suite_restart, Transport::Framed)
    }
}

// ---------------------------------------------------------------------------------------------
// Runners: a 3-node cluster, client on the leader and on a follower
// ---------------------------------------------------------------------------------------------
//
// One cluster per group of suites that can share it (suites keep to their own namespaces), run
// one after another, each in `catch_unwind` so that every failure is reported with its suite and
// connector. Suites needing their own configuration or state get their own cluster.

/// `(name, suite)` pairs for [`run_on_cluster`].
macro_rules! suites {
    ($($suite:ident),* $(,)?) => {
        &[$((stringify!($suite), $suite as Suite)),*]
    };
}

/// The leader over buffered and a follower over framed; every transport on both when
/// `DOLMEN_CLUSTER_ALL_CONNECTORS` is set (about twice the time).
fn cluster_connectors() -> Vec<Connector> {
    if std::env::var_os("DOLMEN_CLUSTER_ALL_CONNECTORS").is_some() {
        let mut all = Vec::new();
        for target in [Target::Leader, Target::Follower] {
            for transport in [Transport::Buffered, Transport::Framed] {
                all.push(Connector::new(transport, target));
            }
        }
        all
    } else {
        vec![
            Connector::new(Transport::Buffered, Target::Leader),
            Connector::new(Transport::Framed, Target::Follower),
        ]
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "<non-string panic payload>".to_owned())
}

/// Clears a commit fault a failed suite may have left installed, on every node (best effort:
/// with injection disabled the call is refused, which is fine).
fn clear_faults(cluster: &ReplicatedCluster) {
    for addr in cluster.client_endpoints() {
        if let Ok(mut kv) = try_connect(addr) {
            let _cleared = kv.set_fault_injection(fault(Some(0.0), None));
        }
    }
}

/// Runs every suite with every connector of [`cluster_connectors`] on `cluster`, then the
/// mutating suites (which may restart it); fails naming every (suite, connector) that failed.
fn run_on_cluster(
    cluster: &mut ReplicatedCluster,
    suites: &[(&str, Suite)],
    mut_suites: &[(&str, MutSuite)],
) {
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut record =
        |name: &str, connect: Connector, started: Instant, r: std::thread::Result<()>| {
            runs += 1;
            let took = started.elapsed();
            eprintln!(
                "cluster suite {name} via {connect:?}: {} in {took:?}",
                if r.is_ok() { "ok" } else { "FAILED" }
            );
            r.map_err(|p| format!("{name} via {connect:?}: {}", panic_text(p.as_ref())))
        };
    for connect in cluster_connectors() {
        for (name, suite) in suites {
            let started = Instant::now();
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| suite(&*cluster, connect)));
            if let Err(e) = record(name, connect, started, r) {
                failures.push(e);
                clear_faults(cluster);
            }
        }
    }
    for connect in cluster_connectors() {
        for (name, suite) in mut_suites {
            let started = Instant::now();
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| suite(&mut *cluster, connect)));
            if let Err(e) = record(name, connect, started, r) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} suite runs failed on the 3-node cluster:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The shareable suites that need fault injection allowed (the test default).
const WITH_FAULT_INJECTION: &[(&str, Suite)] = suites![
    suite_every_method_replies,
    suite_fault_injection,
    suite_get_set_delete,
    suite_column_families,
    suite_unknown_column_family,
    suite_read_versions,
    suite_atomic_commit,
    suite_atomic_commit_invalid_operations,
    suite_conflicts,
    suite_snapshots,
    suite_future_version,
    suite_transaction_too_old,
];

/// The rest of the shareable suites, on a cluster that refuses fault injection.
const WITHOUT_FAULT_INJECTION: &[(&str, Suite)] = suites![
    suite_fault_injection_disabled,
    suite_versionstamps,
    suite_get_range_algorithm,
    suite_size_limits_and_empty_keys,
    suite_legacy_methods,
    suite_ping,
    suite_diagnostics,
    suite_malformed_input_closes_connection,
    suite_unknown_method,
    suite_byte_at_a_time,
    suite_many_sequential_requests,
    suite_concurrent_clients,
];

/// Suites with their own needs: `range_defaults_and_byte_order` needs the `users` column
/// family to itself (it is idempotent, so it runs once per connector), `max_connections`
/// needs `[server] max_connections = 2`, and `restart` restarts every node (rolling).
const OWN_CONFIG: &[(&str, Suite)] =
    suites![suite_range_defaults_and_byte_order, suite_max_connections];

/// The suites of transactions across the ranges of the cluster split at `d`, `l` and `s`
/// (`suites/across_ranges.rs`); `suite_range_reads_across_ranges` needs the `users` column
/// family to itself.
const ACROSS_RANGES: &[(&str, Suite)] = suites![
    suite_commits_across_ranges,
    suite_transfers_across_ranges,
    suite_range_reads_across_ranges,
    suite_versionstamps_across_ranges,
    suite_idempotent_retries_across_ranges,
];

/// [`WITH_FAULT_INJECTION`] on a cluster from `builder`.
fn run_with_fault_injection(builder: ReplicatedBuilder) {
    run_on_cluster(&mut builder.start(), WITH_FAULT_INJECTION, &[]);
}

/// [`WITHOUT_FAULT_INJECTION`] on a cluster from `builder` that refuses fault injection.
fn run_without_fault_injection(builder: ReplicatedBuilder) {
    let mut c = builder.set("faults", "allow_injection", false).start();
    run_on_cluster(&mut c, WITHOUT_FAULT_INJECTION, &[]);
}

/// [`OWN_CONFIG`] and the rolling restart on a cluster from `builder` with
/// `[server] max_connections = 2`.
fn run_own_config(builder: ReplicatedBuilder) {
    let mut c = builder.set("server", "max_connections", 2).start();
    run_on_cluster(
        &mut c,
        OWN_CONFIG,
        &[("suite_restart", suite_restart as MutSuite)],
    );
}

mod cluster {
    use super::*;

    #[test]
    fn shared_with_fault_injection() {
        run_with_fault_injection(ReplicatedCluster::builder());
    }

    #[test]
    fn shared_without_fault_injection() {
        run_without_fault_injection(ReplicatedCluster::builder());
    }

    #[test]
    fn own_config() {
        run_own_config(ReplicatedCluster::builder());
    }
}

/// The shareable suites against a sharded cluster (docs/sharding.md §2): group 0 holds the
/// oracle and four data groups split at `d`, `l` and `s`, so the suites' namespaces (`basic/…`,
/// `fault/…`, `range/…`, `versions/…`) are spread over every group, every read takes its version
/// from group 0's oracle, and range reads over a column family cross every boundary. The shared
/// suites' transactions stay inside their namespace, so inside one range (the fast path of
/// docs/sharding.md §6.2); `transactions_across_ranges` runs the suites whose transactions
/// span ranges (two-phase commit, §6.3).
mod sharded {
    use super::*;

    fn sharded_cluster() -> ReplicatedBuilder {
        ReplicatedCluster::builder().set("sharding", "split_keys", vec!["d", "l", "s"])
    }

    #[test]
    fn shared_with_fault_injection() {
        run_with_fault_injection(sharded_cluster());
    }

    #[test]
    fn shared_without_fault_injection() {
        run_without_fault_injection(sharded_cluster());
    }

    /// Commits reaching two to four ranges: atomic visibility, bank transfers and their
    /// conflicts, range reads over every boundary, versionstamps, idempotent resends; through
    /// every node, over both transports. On a cluster of its own, since the range suite
    /// clears the `users` column family, with a 60 s MVCC window so that reads just below a
    /// commit's version are served however slow the machine.
    #[test]
    fn transactions_across_ranges() {
        let mut c = sharded_cluster()
            .set("mvcc", "retention_window_ms", 60_000)
            .start();
        run_on_cluster(&mut c, ACROSS_RANGES, &[]);
    }

    /// The token must answer a resend before the participants' checks do (regression, see
    /// `suite_resends_whose_every_check_fails`; it passes on one node, `standalone!` above):
    /// when every participant refuses its prepare (the resend meets the first attempt's own
    /// writes), the coordinator still asks group 0's table (docs/sharding.md §6.3 step 3).
    /// Its later step waits for every data group's horizon to pass the first read version,
    /// which once stalled when a resolve applied under an in-flight `Compact` (jobs.rs).
    #[test]
    fn resends_whose_every_check_fails() {
        let mut c = sharded_cluster().start();
        run_on_cluster(&mut c, suites![suite_resends_whose_every_check_fails], &[]);
    }

    #[test]
    fn own_config() {
        run_own_config(sharded_cluster());
    }
}

/// `/metrics` (Prometheus text) and `/status` report the engine's memory next to its counters:
/// after writes the memtables hold bytes, the block cache gauge is there, and the live-key
/// gauge counts exactly the keys written to this fresh node.
#[test]
fn admin_metrics_report_memory_and_live_keys() {
    let node = Standalone::builder().start();
    let mut kv = Connector::new(Transport::Buffered, Target::Leader).client(&node);
    for i in 0..5 {
        kv.must_set(format!("metrics-{i}").as_bytes(), b"value");
    }
    let admin = dolmen_tests::admin::admin(node.admin_endpoint());
    let metrics = admin
        .metrics()
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    let gauge = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("expected {name} in /metrics:\n{metrics}"))
            .parse()
            .unwrap_or_else(|e| panic!("{name} is not an integer: {e}"))
    };
    assert!(gauge("dolmen_memtable_bytes") > 0, "{metrics}");
    gauge("dolmen_block_cache_bytes");
    assert_eq!(gauge("dolmen_live_keys"), 5, "{metrics}");
    assert!(gauge("dolmen_writes_total") >= 5, "{metrics}");

    // The typed answer has no default for these: a /status without them does not parse.
    let status = admin
        .status()
        .unwrap_or_else(|e| panic!("GET /status: {e}"));
    assert!(
        status.memtable_bytes > 0,
        "expected the memtables' bytes in /status: {status:?}"
    );
}
