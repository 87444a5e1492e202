//! Named failpoints at every persistence step of a node (STYLE 6): the Raft log store, snapshot
//! build and install, and apply. Each name sits next to the comment that states the step's
//! durability rule; this module is their one catalog, and sets them up from `FAILPOINTS`.
//!
//! ```text
//!  FAILPOINTS="raft_log::before_fsync=20*off->return;apply::after_write=return"
//!      ─▶ configure ─▶ fail::cfg per name ─▶ crash_point(name) at the step: `return` = SIGKILL
//! ```
//! Actions are the `fail` crate's (`off`, `return`, `panic`, `sleep(ms)`, `pause`, `N*action`,
//! `P%action`, chained with `->`). `return` is the crash: the process is killed at that step,
//! as a power cut or SIGKILL would stop it there. A failpoint no one configured costs one atomic
//! load.

/// The node's `raft-log` thread, before it writes a batch (every group's queued requests).
pub const LOG_BEFORE_WRITE: &str = "raft_log::before_write";
/// The log store, after the batch write and before the WAL fsync.
pub const LOG_BEFORE_FSYNC: &str = "raft_log::before_fsync";
/// The log store, after the fsync and before openraft's callbacks and waiters hear of it.
pub const LOG_BEFORE_ACK: &str = "raft_log::before_ack";
/// The log store, before writing a batch that saves a vote (of any group).
pub const LOG_SAVE_VOTE: &str = "raft_log::save_vote";
/// The log store, before writing a batch that truncates a log's suffix (of any group).
pub const LOG_TRUNCATE: &str = "raft_log::truncate";
/// The log store, before writing a batch that purges a log's prefix (of any group).
pub const LOG_PURGE: &str = "raft_log::purge";
/// The layout-1 log migration at open, after a chunk of copies to group 0's keys is synced.
pub const LOG_MIGRATE_COPY_CHUNK: &str = "raft_log::migrate_copy_chunk";
/// The layout-1 log migration, after a chunk of deletes of layout-1 keys is synced.
pub const LOG_MIGRATE_DELETE_CHUNK: &str = "raft_log::migrate_delete_chunk";
/// The layout-1 log migration, every layout-1 key deleted, before the `meta/layout` marker.
pub const LOG_MIGRATE_BEFORE_MARKER: &str = "raft_log::migrate_before_marker";
/// Snapshot build: the file is written, not yet fsynced nor renamed to its final name.
pub const SNAPSHOT_BUILD_BEFORE_SYNC: &str = "snapshot::build_before_sync";
/// Snapshot build: renamed to its final name, the directory not yet fsynced.
pub const SNAPSHOT_BUILD_BEFORE_DIR_SYNC: &str = "snapshot::build_before_dir_sync";
/// Snapshot install: the received file is verified and adopted, the restore not started.
pub const SNAPSHOT_INSTALL_BEFORE_RESTORE: &str = "snapshot::install_before_restore";
/// Snapshot install: the engine is restored, the install not yet recorded (older snapshots
/// kept, applied version not published).
pub const SNAPSHOT_INSTALL_BEFORE_RECORD: &str = "snapshot::install_before_record";
/// `Engine::apply_batch`, a `ClearRange` chunk written ahead of its batch (after its synced
/// marker), before the next chunk or the batch's final write.
pub const APPLY_CLEAR_RANGE_CHUNK: &str = "apply::clear_range_chunk";
/// `Engine::apply_batch`, before the batch is written to RocksDB.
pub const APPLY_BEFORE_WRITE: &str = "apply::before_write";
/// `Engine::apply_batch`, after the batch write and before the applied version is published.
pub const APPLY_AFTER_WRITE: &str = "apply::after_write";

/// The gateway coordinating a commit across groups: every participant prepared, no commit
/// version drawn, nothing decided (docs/sharding.md §6.3).
pub const CROSS_SHARD_AFTER_PREPARE: &str = "cross_shard::after_prepare";
/// The coordinator: the decision recorded in group 0, no participant resolved.
pub const CROSS_SHARD_AFTER_DECIDE: &str = "cross_shard::after_decide";
/// The coordinator: one participant resolved, the others possibly not.
pub const CROSS_SHARD_AFTER_FIRST_RESOLVE: &str = "cross_shard::after_first_resolve";

/// Every failpoint, in persistence order within each component.
pub const ALL: [&str; 19] = [
    LOG_MIGRATE_COPY_CHUNK,
    LOG_MIGRATE_DELETE_CHUNK,
    LOG_MIGRATE_BEFORE_MARKER,
    LOG_BEFORE_WRITE,
    LOG_BEFORE_FSYNC,
    LOG_BEFORE_ACK,
    LOG_SAVE_VOTE,
    LOG_TRUNCATE,
    LOG_PURGE,
    SNAPSHOT_BUILD_BEFORE_SYNC,
    SNAPSHOT_BUILD_BEFORE_DIR_SYNC,
    SNAPSHOT_INSTALL_BEFORE_RESTORE,
    SNAPSHOT_INSTALL_BEFORE_RECORD,
    APPLY_CLEAR_RANGE_CHUNK,
    APPLY_BEFORE_WRITE,
    APPLY_AFTER_WRITE,
    CROSS_SHARD_AFTER_PREPARE,
    CROSS_SHARD_AFTER_DECIDE,
    CROSS_SHARD_AFTER_FIRST_RESOLVE,
];

/// The environment variable [`configure`] reads (the `fail` crate's own name for it).
pub const ENV: &str = "FAILPOINTS";

/// Why `FAILPOINTS` was refused.
#[derive(Debug, thiserror::Error)]
pub enum FailpointError {
    /// A `name=actions` pair without the `=`.
    #[error("{ENV}: expected `name=actions` separated by `;`, got {entry:?}")]
    Syntax {
        /// The entry.
        entry: String,
    },
    /// A name that is not one of [`ALL`] (a typo would otherwise never fire).
    #[error("{ENV}: unknown failpoint {name:?}; known: {}", ALL.join(", "))]
    Unknown {
        /// The name.
        name: String,
    },
    /// Actions the `fail` crate cannot parse.
    #[error("{ENV}: failpoint {name:?}: bad actions {actions:?}: {reason}")]
    Actions {
        /// The name.
        name: String,
        /// The actions given.
        actions: String,
        /// The `fail` crate's message.
        reason: String,
    },
}

/// Configures the failpoints `spec` names (`name=actions;name=actions`, the `fail` crate's
/// `FAILPOINTS` syntax) and returns the entries set, for the start-up warning. Checks every entry
/// before setting any.
///
/// # Errors
/// [`FailpointError`] naming the entry: no `=`, an unknown name, or actions `fail` refuses.
pub fn configure(spec: &str) -> Result<Vec<String>, FailpointError> {
    let mut entries = Vec::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, actions) = entry
            .split_once('=')
            .map(|(n, a)| (n.trim(), a.trim()))
            .ok_or_else(|| FailpointError::Syntax {
                entry: entry.to_owned(),
            })?;
        if !ALL.contains(&name) {
            return Err(FailpointError::Unknown {
                name: name.to_owned(),
            });
        }
        entries.push((name, actions));
    }
    for (name, actions) in &entries {
        fail::cfg(*name, actions).map_err(|reason| FailpointError::Actions {
            name: (*name).to_owned(),
            actions: (*actions).to_owned(),
            reason,
        })?;
    }
    Ok(entries
        .into_iter()
        .map(|(name, actions)| format!("{name}={actions}"))
        .collect())
}

/// The failpoint `name`: inert unless configured; its `return` action kills the process here
/// with SIGKILL (a crash at this persistence step: no destructor, flush or core dump), after one
/// line on stderr naming it.
pub fn crash_point(name: &'static str) {
    fail::fail_point!(name, |_| {
        eprintln!("failpoint {name}: crashing the process here (SIGKILL)");
        let _raised = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        // Only if the signal could not be raised.
        std::process::abort()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_refuses_unknown_names_and_bad_actions_before_setting_any() {
        assert!(matches!(
            configure("raft_log::before_fsync"),
            Err(FailpointError::Syntax { .. })
        ));
        let e = configure("raft_log::befor_fsync=return").unwrap_err();
        assert!(
            e.to_string().contains("raft_log::befor_fsync") && e.to_string().contains(ALL[0]),
            "{e}"
        );
        assert!(matches!(
            configure("apply::before_write=3*bogus"),
            Err(FailpointError::Actions { .. })
        ));
        assert_eq!(configure(" ; ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn an_unconfigured_crash_point_does_nothing() {
        for name in ALL {
            crash_point(name);
        }
    }
}
