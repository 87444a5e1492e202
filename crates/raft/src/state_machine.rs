//! The Raft state machine over the engine (docs/replication.md §4–§5): committed entries become
//! `Engine::apply_batch` calls at version = log index; snapshots are files built from one
//! RocksDB snapshot and installed with `Engine::restore` under a durable redo marker.
//!
//! ```text
//! apply(stream) ─▶ take one, drain ready (≤1024 entries / 16 MiB) ─▶ blocking: apply_batch(
//!     [(index, cmd)], Buffered, raft/last_applied [+ raft/last_membership]) ─▶ applied_tx ─▶ responders
//! build_snapshot ─▶ blocking: Engine::export ─▶ SnapshotDir::build (tmp, fsync, rename)
//! install_snapshot ─▶ verify file ─▶ adopt under final name ─▶ Engine::restore(marker = path)
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dolmen_engine::{
    failpoint, Command, Durability, Engine, Mutation, Outcome, Section, Stamp, Version,
};
use futures::{FutureExt, Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{OptionalSend, RaftSnapshotBuilder};
use tokio::sync::watch;

use crate::codec::{self, SnapshotMeta, StoredMembership};
use crate::log_store::LogStore;
use crate::oracle::OracleState;
use crate::snapshot::{self, SnapshotDir, SnapshotReader, SnapshotStats};
use crate::types::{DolmenRaft, EntryPayload, LogId, SnapshotFile};
use crate::Applied;

/// `meta` key of the log id of the last applied entry (written with every apply batch).
pub const META_LAST_APPLIED: &[u8] = b"raft/last_applied";
/// `meta` key of the last applied membership (written with batches that hold one).
pub const META_LAST_MEMBERSHIP: &[u8] = b"raft/last_membership";

/// Most entries applied in one engine batch.
const MAX_CHUNK_ENTRIES: usize = 1024;
/// Most payload bytes (estimated) applied in one engine batch.
const MAX_CHUNK_BYTES: usize = 16 << 20;

pub use crate::types::Snapshot;

fn engine_error(what: &str, e: dolmen_engine::StorageError) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// Runs blocking engine or file work off the async threads (STYLE 10).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("state machine task failed: {e}")))?
}

/// Payload bytes of a command, to bound a chunk's size (an estimate, not an encoding).
fn command_bytes(command: &Command) -> usize {
    let mutation = |m: &Mutation| match m {
        Mutation::Set { key, value, .. }
        | Mutation::SetVersionstampedKey { key, value, .. }
        | Mutation::SetVersionstampedValue { key, value, .. } => key.len() + value.len(),
        Mutation::Delete { key, .. } => key.len(),
        Mutation::ClearRange { begin, end, .. } => begin.len() + end.len(),
    };
    let ranges = |ranges: &[dolmen_engine::KeyRange]| -> usize {
        ranges.iter().map(|r| r.begin.len() + r.end.len()).sum()
    };
    match command {
        Command::Commit(tx) => {
            64 + tx.mutations.iter().map(mutation).sum::<usize>() + ranges(&tx.read_conflicts)
        }
        Command::Prepare(p) => {
            64 + p.piece.iter().map(|(_, m)| mutation(m)).sum::<usize>() + ranges(&p.read_conflicts)
        }
        Command::Compact { .. }
        | Command::Noop
        | Command::ExpireIdempotency { .. }
        | Command::OracleBound { .. }
        | Command::Resolve { .. }
        | Command::Decide(_)
        | Command::Forget { .. } => 64,
    }
}

fn entry_bytes(item: &EntryResponder<DolmenRaft>) -> usize {
    match &item.0.payload {
        EntryPayload::Normal(command) => command_bytes(command),
        EntryPayload::Blank | EntryPayload::Membership(_) => 64,
    }
}

/// The Dolmen state machine: the engine's `data` + `meta`, plus the node's snapshot directory.
pub struct StateMachine {
    /// The node's engine; this state machine is its only writer in replicated mode.
    engine: Arc<Engine>,
    /// Complete snapshots and incoming temporary files.
    snapshots: Arc<SnapshotDir>,
    /// Published after each applied chunk and install: readers wait on it (ReadGate).
    applied_tx: watch::Sender<AppliedPosition>,
    /// Build/install counters for `/status`.
    stats: Arc<SnapshotStats>,
    /// The node's log store: an entry is applied only once it is written there
    /// ([`LogStore::wait_written`]). `None` only for tests of the state machine alone.
    log: Option<LogStore>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("engine", &self.engine)
            .field("snapshots", &self.snapshots.path())
            .finish()
    }
}

impl StateMachine {
    /// Opens the state machine over `engine`, with snapshots in `snapshot_dir` (created if
    /// missing; leftover `*.tmp` files are deleted). If a snapshot install was interrupted by a
    /// crash (the engine reports a restore marker), the restore is redone from the snapshot file
    /// the marker names before this returns; a missing or corrupt file is an error. Blocking:
    /// call it at start-up, before `Raft::build`. Publishes the applied version on `applied_tx`.
    pub fn open(
        engine: Arc<Engine>,
        snapshot_dir: PathBuf,
        applied_tx: watch::Sender<AppliedPosition>,
    ) -> io::Result<Self> {
        let snapshots = Arc::new(SnapshotDir::open(&snapshot_dir)?);
        let stats = Arc::new(SnapshotStats::default());
        let pending = engine
            .pending_restore()
            .map_err(|e| engine_error("reading the restore marker", e))?;
        if let Some(marker) = pending {
            let path = marker_path(&marker);
            tracing::warn!(snapshot = %path.display(), "redoing an interrupted snapshot install");
            let meta = snapshot::verify(&path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "an interrupted snapshot install must be redone from {}, but that file \
                         is unusable ({e}); the state machine is partial: put the file back, or \
                         wipe this node's data directory and let it rejoin",
                        path.display()
                    ),
                )
            })?;
            restore_from(&engine, &path)?;
            snapshots.delete_all_except(&path)?;
            stats.record_install(meta.0.last_log_id.map_or(0, |id| id.index));
        } else if let Some((meta, _)) = snapshots.latest()? {
            stats.set_last_index(meta.last_log_id.map_or(0, |id| id.index));
        }
        applied_tx.send_replace(AppliedPosition {
            index: last_applied_index(&engine)?,
            version: engine.applied_version(),
            drawn: 0,
        });
        Ok(Self {
            engine,
            snapshots,
            applied_tx,
            stats,
            log: None,
        })
    }

    /// The same state machine, applying an entry only once `log` has written it (see
    /// [`LogStore::wait_written`]). The node always sets it.
    #[must_use]
    pub fn with_log(mut self, log: LogStore) -> Self {
        self.log = Some(log);
        self
    }

    /// Snapshot counters for `/status`.
    pub fn stats(&self) -> Arc<SnapshotStats> {
        Arc::clone(&self.stats)
    }

    /// The snapshot directory (the network layer takes `incoming()` files from it).
    pub fn snapshot_dir(&self) -> Arc<SnapshotDir> {
        Arc::clone(&self.snapshots)
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Applies one chunk in one engine batch, then publishes and answers.
    async fn apply_chunk(&mut self, chunk: Vec<EntryResponder<DolmenRaft>>) -> io::Result<()> {
        let Some(last) = chunk.last().map(|(entry, _)| entry.log_id) else {
            return Ok(());
        };
        let mut batch: Vec<(Version, Command)> = Vec::with_capacity(chunk.len());
        // Each entry's version, by the same rule on every replica: `entry_version`.
        let mut reached = self.engine.applied_version();
        let mut drawn = self.applied_tx.borrow().drawn;
        let mut membership = None;
        let mut responders = Vec::with_capacity(chunk.len());
        for (entry, responder) in chunk {
            let index = entry.log_id.index;
            let command = match entry.payload {
                EntryPayload::Normal(_) if index == 0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "log entry {} carries a command at index 0, which only the initial \
                             membership may use",
                            entry.log_id
                        ),
                    ));
                }
                EntryPayload::Normal(command) => Some(command),
                EntryPayload::Blank => Some(Command::Noop),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    Some(Command::Noop)
                }
            };
            // Index 0 is only ever the initial membership (or the suite's blank): it consumes no
            // version, so it is applied meta-only (replication.md invariant 1).
            let Some(command) = command.filter(|_| index > 0) else {
                responders.push((Ok(reached), None, responder));
                continue;
            };
            match entry_version(&command, entry.log_id.leader_id.term, reached) {
                Ok(version) => {
                    reached = version;
                    drawn = drawn.max(drawn_version(&command));
                    batch.push((version, command));
                    responders.push((Ok(version), Some(batch.len() - 1), responder));
                }
                Err(refused) => responders.push((Err(refused), None, responder)),
            }
        }
        let mut extra_meta = vec![(META_LAST_APPLIED.to_vec(), codec::encode_log_id(&last))];
        if let Some(stored) = &membership {
            extra_meta.push((
                META_LAST_MEMBERSHIP.to_vec(),
                codec::encode_stored_membership(stored)?,
            ));
        }
        // The log has written everything applied here before the engine writes it: the engine's
        // write then follows the entries in the WAL, so a crash that loses one loses both.
        if let Some(log) = &self.log {
            log.wait_written(last.index).await?;
        }
        let engine = Arc::clone(&self.engine);
        let outcomes = blocking(move || {
            // Atomic apply (invariant 5): data, applied_version, raft/last_applied and
            // raft/last_membership in one batch. Buffered: the Raft log is the WAL.
            engine
                .apply_batch(&batch, Durability::Buffered, &extra_meta)
                .map_err(|e| engine_error(&format!("applying log entries up to {last}"), e))
        })
        .await?;
        self.applied_tx.send_replace(AppliedPosition {
            index: last.index,
            version: self.engine.applied_version(),
            drawn,
        });
        let mut outcomes: Vec<Option<Outcome>> = outcomes.into_iter().map(Some).collect();
        for (version, position, responder) in responders {
            // Blank, membership and index-0 entries change nothing: `Applied`.
            let outcome = position
                .and_then(|p| outcomes.get_mut(p).and_then(Option::take))
                .unwrap_or(Outcome::Applied);
            let reply = match version {
                Ok(version) => EntryReply::Applied(Applied { version, outcome }),
                Err(refused) => EntryReply::NotSequenced(refused),
            };
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        Ok(())
    }
}

/// What applying one log entry answers the node that proposed it (openraft's response type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryReply {
    /// The entry applied, at this version, with this outcome.
    Applied(Applied),
    /// A sequenced commit that applied nothing; its leader draws a new version.
    NotSequenced(NotSequenced),
}

/// Why a sequenced commit applied nothing (docs/sharding.md §6.2).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotSequenced {
    /// Drawn by the leader of one term, appended in another.
    #[error("version drawn in term {drawn}, appended in term {appended}")]
    StaleTerm {
        /// The term the version was drawn in.
        drawn: u64,
        /// The term of the log entry.
        appended: u64,
    },
    /// Not above a version applied before it.
    #[error("version {version} is not above the version {reached} applied before it")]
    Reorder {
        /// The commit's version.
        version: Version,
        /// The version applied before it.
        reached: Version,
    },
}

/// The version entry `command` of term `term` applies at, after the versions up to `reached`:
/// - a sequenced commit at its own version, if drawn in this term and above `reached`;
/// - a commit stamped with a leader's clock (logs of earlier builds) at `max(reached + 1,
///   stamp)`, one without either at `reached + 1`;
/// - the retention commands (`Compact`, `ExpireIdempotency`) at `reached + 1`: the retention
///   job ages entries by the versions applied over time, so on an idle group its own commands
///   must move the version for the last commit's idempotency entry to expire (a sequenced
///   commit drawn at that very version is refused as out of order and drawn again);
/// - anything else at `reached`: it writes no data at a version (docs/sharding.md §6.2).
fn entry_version(command: &Command, term: u64, reached: Version) -> Result<Version, NotSequenced> {
    let txn = match command {
        Command::Commit(txn) => txn,
        Command::Compact { .. } | Command::ExpireIdempotency { .. } => {
            return Ok(reached.saturating_add(1))
        }
        Command::Noop
        | Command::OracleBound { .. }
        | Command::Prepare(_)
        | Command::Decide(_)
        | Command::Forget { .. }
        | Command::Resolve { commit: None, .. } => return Ok(reached),
        // A commit across groups writes at its version, below the version reached if other
        // commits came first (only on keys it held locked), else raising it so that no later
        // entry applies below it (docs/sharding.md invariant 5).
        Command::Resolve {
            commit: Some(version),
            ..
        } => return Ok(reached.max(*version)),
    };
    match txn.stamp {
        Some(Stamp::Sequenced { term: drawn, .. }) if drawn != term => {
            Err(NotSequenced::StaleTerm {
                drawn,
                appended: term,
            })
        }
        Some(Stamp::Sequenced { version, .. }) if version <= reached => {
            Err(NotSequenced::Reorder { version, reached })
        }
        Some(Stamp::Sequenced { version, .. }) => Ok(version),
        Some(Stamp::ProposedAt(at)) => Ok(OracleState::new(reached).next(at, 1).start),
        None => Ok(reached.saturating_add(1)),
    }
}

/// The version `command` got from an oracle, when it got one (0 otherwise).
fn drawn_version(command: &Command) -> Version {
    match command {
        Command::Commit(dolmen_engine::Transaction {
            stamp: Some(Stamp::Sequenced { version, .. }),
            ..
        }) => *version,
        Command::Resolve {
            commit: Some(version),
            ..
        } => *version,
        _ => 0,
    }
}

/// How far this node has applied: the last log index, and the version it reached (a version is
/// no longer a log index: docs/sharding.md §3.1). Barriers wait on the index, reads at a version
/// on the version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppliedPosition {
    /// The last applied log index.
    pub index: u64,
    /// The engine's applied version.
    pub version: Version,
    /// The highest version an applied entry got from an oracle (a sequenced commit, a
    /// resolved commit across groups) since this node started; the retention commands'
    /// versions are not (docs/sharding.md §16.1). 0 until one applies.
    pub drawn: Version,
}

/// The index of `raft/last_applied` (0 when nothing was applied).
fn last_applied_index(engine: &Engine) -> io::Result<u64> {
    let stored = engine
        .read_meta(META_LAST_APPLIED)
        .map_err(|e| engine_error("reading the applied state", e))?;
    Ok(stored
        .map(|v| codec::decode_log_id(&v))
        .transpose()?
        .map_or(0, |id| id.index))
}

/// The snapshot file a restore marker names (the marker is the path's bytes).
fn marker_path(marker: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(marker))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(marker).into_owned())
    }
}

/// The restore marker naming `path`.
fn path_marker(path: &Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().into_owned().into_bytes()
    }
}

/// Replaces the engine's state with the snapshot at `path` (already verified).
fn restore_from(engine: &Engine, path: &Path) -> io::Result<()> {
    let reader = SnapshotReader::open(path)?;
    engine
        .restore(&path_marker(path), reader)
        .map_err(|e| engine_error(&format!("restoring snapshot {}", path.display()), e))
}

/// Reads the whole file and checks it is the snapshot `expected` describes: crc, record count,
/// header meta, and the `raft/last_applied` it restores (stored at `last_applied_key`, the
/// group's key of that name).
fn verify_for_install(
    path: &Path,
    expected: &SnapshotMeta,
    last_applied_key: &[u8],
) -> io::Result<()> {
    let mut reader = SnapshotReader::open(path)?;
    if reader.meta() != expected {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "snapshot file {} holds {:?}, but install asked for {expected:?}",
                path.display(),
                reader.meta()
            ),
        ));
    }
    let mut last_applied = None;
    for record in reader.by_ref() {
        let (section, key, value) = record?;
        if section == Section::Meta && key == last_applied_key {
            last_applied = Some(codec::decode_log_id(&value)?);
        }
    }
    if last_applied != expected.last_log_id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "snapshot file {} restores last applied {last_applied:?}, its meta says {:?}",
                path.display(),
                expected.last_log_id
            ),
        ));
    }
    Ok(())
}

impl RaftStateMachine<DolmenRaft> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let engine = Arc::clone(&self.engine);
        blocking(move || {
            let read = |key: &[u8]| {
                engine
                    .read_meta(key)
                    .map_err(|e| engine_error("reading the applied state", e))
            };
            let applied = read(META_LAST_APPLIED)?
                .map(|v| codec::decode_log_id(&v))
                .transpose()?;
            let membership = read(META_LAST_MEMBERSHIP)?
                .map(|v| codec::decode_stored_membership(&v))
                .transpose()?
                .unwrap_or_default();
            Ok((applied, membership))
        })
        .await
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<DolmenRaft>>> + Unpin + OptionalSend,
    {
        loop {
            let Some(first) = entries.next().await else {
                return Ok(());
            };
            let first = first?;
            let mut bytes = entry_bytes(&first);
            let mut chunk = vec![first];
            let mut ended = false;
            let mut failed = None;
            // Drain what is ready without waiting: one engine batch per burst of commits.
            while chunk.len() < MAX_CHUNK_ENTRIES && bytes < MAX_CHUNK_BYTES {
                match entries.next().now_or_never() {
                    Some(Some(Ok(item))) => {
                        bytes += entry_bytes(&item);
                        chunk.push(item);
                    }
                    Some(Some(Err(e))) => {
                        failed = Some(e);
                        break;
                    }
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            self.apply_chunk(chunk).await?;
            if let Some(e) = failed {
                return Err(e);
            }
            if ended {
                return Ok(());
            }
        }
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<SnapshotBuilder> {
        Some(self.builder())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.builder()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        file: SnapshotFile,
    ) -> io::Result<()> {
        let engine = Arc::clone(&self.engine);
        let snapshots = Arc::clone(&self.snapshots);
        let meta = meta.clone();
        let index = meta.last_log_id.map_or(0, |id| id.index);
        blocking(move || {
            // Everything is checked before the first destructive step.
            verify_for_install(&file.path, &meta, &engine.meta_key(META_LAST_APPLIED))?;
            let file = snapshots.adopt(&file, &meta)?;
            // Adopted under its final name, the engine untouched: a crash leaves the old state.
            failpoint::crash_point(failpoint::SNAPSHOT_INSTALL_BEFORE_RESTORE);
            restore_from(&engine, &file.path)?;
            // Restored (the restore marker is cleared in the same batch as the last records);
            // not yet recorded: older snapshots are still there, the applied version unpublished.
            failpoint::crash_point(failpoint::SNAPSHOT_INSTALL_BEFORE_RECORD);
            snapshots.delete_all_except(&file.path)
        })
        .await?;
        // An installed snapshot is a later log position: what was drawn before still holds.
        let drawn = self.applied_tx.borrow().drawn;
        self.applied_tx.send_replace(AppliedPosition {
            index,
            version: self.engine.applied_version(),
            drawn,
        });
        self.stats.record_install(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let snapshots = Arc::clone(&self.snapshots);
        let latest = blocking(move || snapshots.latest()).await?;
        Ok(latest.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

impl StateMachine {
    fn builder(&self) -> SnapshotBuilder {
        SnapshotBuilder {
            engine: Arc::clone(&self.engine),
            snapshots: Arc::clone(&self.snapshots),
            stats: Arc::clone(&self.stats),
        }
    }
}

/// Builds a snapshot file from one consistent engine export; runs concurrently with applies.
pub struct SnapshotBuilder {
    engine: Arc<Engine>,
    snapshots: Arc<SnapshotDir>,
    stats: Arc<SnapshotStats>,
}

impl RaftSnapshotBuilder<DolmenRaft> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let started = Instant::now();
        let engine = Arc::clone(&self.engine);
        let snapshots = Arc::clone(&self.snapshots);
        let snapshot = blocking(move || {
            let export = engine
                .export()
                .map_err(|e| engine_error("starting a snapshot export", e))?;
            // The meta comes from the same RocksDB snapshot as the records, so they match.
            let read = |key: &[u8]| {
                export
                    .meta(key)
                    .map_err(|e| engine_error("reading snapshot meta", e))
            };
            let last_log_id = read(META_LAST_APPLIED)?
                .map(|v| codec::decode_log_id(&v))
                .transpose()?;
            let last_membership = read(META_LAST_MEMBERSHIP)?
                .map(|v| codec::decode_stored_membership(&v))
                .transpose()?
                .unwrap_or_default();
            let meta = SnapshotMeta {
                last_log_id,
                last_membership,
            };
            let records = export.map(|r| r.map_err(|e| engine_error("exporting", e)));
            let file = snapshots.build(&meta, records)?;
            Ok(Snapshot {
                meta,
                snapshot: file,
            })
        })
        .await?;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let index = snapshot.meta.last_log_id.map_or(0, |id| id.index);
        self.stats.record_build(index, millis);
        tracing::info!(index, millis, path = %snapshot.snapshot.path.display(), "snapshot built");
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dolmen_engine::Transaction;

    fn commit(stamp: Option<Stamp>) -> Command {
        Command::Commit(Transaction {
            stamp,
            ..Transaction::default()
        })
    }

    fn sequenced(version: Version, term: u64) -> Command {
        commit(Some(Stamp::Sequenced { version, term }))
    }

    #[test]
    fn a_sequenced_commit_applies_at_its_own_version_only_in_order_and_in_its_term() {
        // In its term and above what was reached: exactly its version, gaps allowed.
        assert_eq!(entry_version(&sequenced(1_000, 3), 3, 10), Ok(1_000));
        // Not above what was reached: nothing applies, the leader draws again.
        assert_eq!(
            entry_version(&sequenced(10, 3), 3, 10),
            Err(NotSequenced::Reorder {
                version: 10,
                reached: 10
            })
        );
        assert_eq!(
            entry_version(&sequenced(9, 3), 3, 10),
            Err(NotSequenced::Reorder {
                version: 9,
                reached: 10
            })
        );
        // Drawn in term 3, appended in term 5 (the leader lost and won again in between).
        assert_eq!(
            entry_version(&sequenced(1_000, 3), 5, 10),
            Err(NotSequenced::StaleTerm {
                drawn: 3,
                appended: 5
            })
        );
    }

    #[test]
    fn commits_of_earlier_builds_and_other_entries_keep_their_rules() {
        // A clock stamp (kind 4): max(reached + 1, stamp), whatever the term.
        assert_eq!(
            entry_version(&commit(Some(Stamp::ProposedAt(500))), 9, 10),
            Ok(500)
        );
        assert_eq!(
            entry_version(&commit(Some(Stamp::ProposedAt(5))), 9, 10),
            Ok(11)
        );
        // No stamp: the next version.
        assert_eq!(entry_version(&commit(None), 1, 10), Ok(11));
        // Entries that write no data take no version of their own, except the retention
        // commands, which move the version so an idle group's entries age.
        for command in [Command::Noop, Command::OracleBound { bound: 99 }] {
            assert_eq!(entry_version(&command, 1, 10), Ok(10), "{command}");
        }
        for command in [
            Command::Compact { horizon: 3 },
            Command::ExpireIdempotency {
                before: 3,
                limit: 10,
            },
        ] {
            assert_eq!(entry_version(&command, 1, 10), Ok(11), "{command}");
        }
    }
}
