//! The suites, one module per concern. Each `suite_*` takes `(&dyn TestCluster, Connector)`
//! (`&mut` for the ones that restart nodes), so the runners in `main.rs` can run it on a
//! standalone node and on a 3-node cluster alike.

mod across_ranges;
mod commits;
mod diagnostics;
mod faults;
mod limits;
mod methods;
mod protocol;
mod ranges;
mod reads;
mod resends;
mod restart;
mod versions;
mod versionstamps;

pub(crate) use across_ranges::{
    suite_commits_across_ranges, suite_range_reads_across_ranges, suite_transfers_across_ranges,
    suite_versionstamps_across_ranges,
};
pub(crate) use commits::{
    suite_atomic_commit, suite_atomic_commit_invalid_operations, suite_conflicts,
};
pub(crate) use diagnostics::suite_diagnostics;
pub(crate) use faults::{fault, suite_fault_injection, suite_fault_injection_disabled};
pub(crate) use limits::{
    suite_max_connections, suite_size_limits_and_empty_keys, suite_slow_requests_are_cut_off,
};
pub(crate) use methods::{suite_every_method_replies, suite_legacy_methods, suite_ping};
pub(crate) use protocol::{
    suite_byte_at_a_time, suite_concurrent_clients, suite_malformed_input_closes_connection,
    suite_many_sequential_requests, suite_unknown_method,
};
pub(crate) use ranges::{suite_get_range_algorithm, suite_range_defaults_and_byte_order};
pub(crate) use reads::{suite_column_families, suite_get_set_delete, suite_unknown_column_family};
pub(crate) use resends::{
    suite_idempotent_retries_across_ranges, suite_resends_whose_every_check_fails,
};
pub(crate) use restart::suite_restart;
pub(crate) use versions::{
    suite_future_version, suite_read_versions, suite_snapshots, suite_transaction_too_old,
};
pub(crate) use versionstamps::suite_versionstamps;
