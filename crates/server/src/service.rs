//! The protocol-free service core: every client operation, in domain types. The Thrift layer
//! only converts; standalone, replicated and sharded nodes differ only in the [`Shards`] plugged
//! in here (docs/ARCHITECTURE.md §1, docs/sharding.md §2 "Inside one node", §10): every read and
//! commit is routed to the group that owns its keys, through one code path for every topology.
//!
//! ```text
//!   get:     read version ─▶ route(key) ─▶ cover(R) on its group ─▶ locks (§6.5) ─▶ get(R)
//!   range:   read version ─▶ cover(R) and locks on every group of [lo, hi)
//!              ─▶ merge_range(scan per group)
//!   commits: validate ─▶ disk guard ─▶ fault check ─▶ touched groups (§6.1)
//!              one:  read version issued? ─▶ its Replicator::propose(Command) ─▶ Outcome
//!              more: two-phase commit (cross_shard.rs, §6.3) ─▶ the recorded decision
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_engine::{
    check_key, merge_range, Command, Engine, EngineStats, Invalid, KeyRange, KeySpan, MergeError,
    Mutation, Outcome, RangeBounds, RangePage, RangeSpec, Transaction, Version, VERSIONSTAMP_LEN,
};
use dolmen_raft::{ClusterView, ReadGate, Replicator};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::disk::DiskGuard;
use crate::error::{ErrorCode, ServiceError};
use crate::faults::{FaultInjector, Target};
use crate::shards::{ShardGroup, Shards};
use crate::stats::{InFlight, Stats};

/// Service tuning, from the node's configuration.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// How long a read at a not-yet-applied version waits before `FUTURE_VERSION`.
    pub future_version_wait: Duration,
    /// Whether `setFaultInjection` may install faults.
    pub allow_fault_injection: bool,
    /// Most reads reading the engine at once (`0` = no bound); more wait in arrival order.
    pub max_read_concurrency: usize,
    /// Most key and value bytes in one range answer (`server.max_range_bytes`); `None` = no
    /// bound. A page cut by it says `has_more`.
    pub max_range_bytes: Option<usize>,
}

/// How many times a commit with a versionstamped key is routed before its refusal is the
/// answer (each try that a group refuses applies nothing).
const ROUTE_TRIES: usize = 3;

/// The largest `timeout_seconds` a commit may ask for.
pub const MAX_COMMIT_TIMEOUT_SECS: i64 = 3600;

/// The service core shared by every connection.
pub struct Service {
    /// The groups every read and commit is routed to, with the read-version source.
    shards: Shards,
    faults: FaultInjector,
    stats: Stats,
    options: ServiceOptions,
    started: Instant,
    /// `max_read_concurrency` permits; `None` when reads are not bounded.
    read_permits: Option<Semaphore>,
    /// Refuses writes while the disk is full ([`DiskGuard::off`] unless the node sets one).
    disk: Arc<DiskGuard>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("shards", &self.shards)
            .field("options", &self.options)
            .finish()
    }
}

/// A version from the wire (i64) as a `Version`; negative is invalid.
pub fn wire_version(field: &str, version: i64) -> Result<Version, ServiceError> {
    Version::try_from(version)
        .map_err(|_| ServiceError::argument(field, format!("must be ≥ 0, got {version}")))
}

impl Service {
    /// A service over one group owning every key: `engine`, ordering writes through
    /// `replicator` and reads through `gate` ([`Shards::single`]).
    pub fn new(
        engine: Arc<Engine>,
        replicator: Arc<dyn Replicator>,
        gate: Arc<dyn ReadGate>,
        options: ServiceOptions,
    ) -> Self {
        let id = engine.group();
        Self::sharded(
            Shards::single(ShardGroup {
                id,
                engine,
                replicator,
                gate,
            }),
            options,
        )
    }

    /// A service routing every read and commit to the group of `shards` that owns its keys.
    pub fn sharded(shards: Shards, options: ServiceOptions) -> Self {
        Self {
            faults: FaultInjector::new(options.allow_fault_injection),
            shards,
            stats: Stats::default(),
            read_permits: (options.max_read_concurrency > 0)
                .then(|| Semaphore::new(options.max_read_concurrency)),
            options,
            started: Instant::now(),
            disk: Arc::new(DiskGuard::off()),
        }
    }

    /// Refuses writes while `disk` says the disk is full.
    #[must_use]
    pub fn with_disk_guard(mut self, disk: Arc<DiskGuard>) -> Self {
        self.disk = disk;
        self
    }

    /// The disk guard (`/ready`, `/metrics`).
    pub fn disk(&self) -> &DiskGuard {
        &self.disk
    }

    /// The groups reads and commits are routed to.
    pub fn shards(&self) -> &Shards {
        &self.shards
    }

    /// The byte budget of one range answer.
    pub fn max_range_bytes(&self) -> Option<usize> {
        self.options.max_range_bytes
    }

    /// Request counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Engine statistics of this node's database: its size, compaction backlog, cache and
    /// memtables (database-wide, read from one handle) with the per-group figures combined over
    /// every group (live keys, garbage collection and idempotency counters summed; the highest
    /// applied version; the lowest horizon, below which some group's history is gone).
    pub fn engine_stats(&self) -> EngineStats {
        let mut groups = self.shards.groups().iter().map(|g| g.engine.stats());
        // `Shards` is never empty; a default only keeps this total.
        let mut total = groups.next().unwrap_or_default();
        for stats in groups {
            total.live_keys = total.live_keys.saturating_add(stats.live_keys);
            total.gc_passes = total.gc_passes.saturating_add(stats.gc_passes);
            total.gc_versions_deleted = total
                .gc_versions_deleted
                .saturating_add(stats.gc_versions_deleted);
            total.idempotency_entries = total
                .idempotency_entries
                .saturating_add(stats.idempotency_entries);
            total.idempotency_expired = total
                .idempotency_expired
                .saturating_add(stats.idempotency_expired);
            total.applied_version = total.applied_version.max(stats.applied_version);
            total.horizon = total.horizon.min(stats.horizon);
        }
        total
    }

    /// Membership, roles and health; this node is `degraded` while its disk is full (it
    /// refuses writes).
    pub fn cluster(&self) -> ClusterView {
        let mut view = self.shards.membership().cluster();
        if self.disk.full().is_some() {
            let this = view.this_node;
            for member in view.members.iter_mut().filter(|m| m.id == this) {
                if member.health == dolmen_raft::Health::Healthy {
                    member.health = dolmen_raft::Health::Degraded;
                }
            }
        }
        view
    }

    /// How long this node has been serving.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The fault injector (`setFaultInjection`).
    pub fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    fn check_cf(&self, cf: &str) -> Result<(), ServiceError> {
        // Column families are the database's, the same in every group's handle.
        Ok(self.shards.first().engine.check_column_family(cf)?)
    }

    // ----------------------------------------------------------------------------------------
    // Reads
    // ----------------------------------------------------------------------------------------

    /// A linearizable read version (> 0 once the node has applied anything).
    pub async fn read_version(&self) -> Result<Version, ServiceError> {
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        self.fresh_read_version().await
    }

    /// A read version from the shards' source (the single group's gate, or the oracle).
    async fn fresh_read_version(&self) -> Result<Version, ServiceError> {
        Ok(self.shards.read_versions().read_version().await?)
    }

    /// The latest committed value of `key` under the node's read consistency level.
    pub async fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ServiceError> {
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        check_key("key", key)?;
        self.check_cf(cf)?;
        self.faults.check(Target::Get).await?;
        let version = self.fresh_read_version().await?;
        self.point_read(cf, key, version).await
    }

    /// The value of `key` as of `version` (MVCC snapshot read).
    pub async fn snapshot_get(
        &self,
        cf: &str,
        key: &[u8],
        version: Version,
    ) -> Result<Option<Vec<u8>>, ServiceError> {
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        check_key("key", key)?;
        self.check_cf(cf)?;
        self.point_read(cf, key, version).await
    }

    /// Reads `key` at `version` on its group, once the group covers `version` here.
    async fn point_read(
        &self,
        cf: &str,
        key: &[u8],
        version: Version,
    ) -> Result<Option<Vec<u8>>, ServiceError> {
        let position = self.shards.position(key);
        let group = &self.shards.groups()[position];
        // A version this group has not reached here: wait a little, then FUTURE_VERSION.
        group
            .gate
            .cover(version, self.options.future_version_wait)
            .await?;
        self.shards
            .await_locks(position, &KeyRange::single(cf, key), version)
            .await?;
        let _permit = self.read_permit().await?;
        Ok(group.engine.get(cf, key, version)?)
    }

    /// A turn to read the engine, under `max_read_concurrency`.
    async fn read_permit(&self) -> Result<Option<SemaphorePermit<'_>>, ServiceError> {
        match &self.read_permits {
            None => Ok(None),
            Some(permits) => permits.acquire().await.map(Some).map_err(|_| {
                ServiceError::new(ErrorCode::Unavailable, "the node is shutting down")
            }),
        }
    }

    /// Waits (bounded) until every group of `groups` covers `version` here, asking them all at
    /// once; the first failure answers.
    async fn cover_all(&self, groups: &[ShardGroup], version: Version) -> Result<(), ServiceError> {
        let wait = self.options.future_version_wait;
        if let [group] = groups {
            return Ok(group.gate.cover(version, wait).await?);
        }
        // Dropping the set (an early error, or a cancelled request) aborts the other waits.
        let mut waits = tokio::task::JoinSet::new();
        for group in groups {
            let gate = group.gate.clone();
            waits.spawn(async move { gate.cover(version, wait).await });
        }
        while let Some(done) = waits.join_next().await {
            done.map_err(|e| {
                ServiceError::new(ErrorCode::Unavailable, format!("read barrier failed: {e}"))
            })??;
        }
        Ok(())
    }

    /// A range page, at `version` (snapshot) or at a fresh read version (`None`): the groups
    /// holding the request's keys each scan their part, merged in key order (docs/sharding.md
    /// §5.3); one group gives exactly `Engine::get_range`'s page.
    pub async fn get_range(
        &self,
        cf: &str,
        spec: RangeSpec,
        version: Option<Version>,
    ) -> Result<RangePage, ServiceError> {
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        self.check_cf(cf)?;
        let bounds = RangeBounds::from_spec(&spec);
        let involved = self.shards.involved(&bounds.lo, &bounds.hi);
        let groups = &self.shards.groups()[involved.clone()];
        let version = match version {
            Some(v) => v,
            None => self.fresh_read_version().await?,
        };
        self.cover_all(groups, version).await?;
        for position in involved.clone() {
            let part = self.shards.clip(position, cf, &bounds.lo, &bounds.hi);
            self.shards.await_locks(position, &part, version).await?;
        }
        let _permit = self.read_permit().await?;
        let parts: Vec<(KeySpan, Arc<Engine>)> = self.shards.spans()[involved]
            .iter()
            .cloned()
            .zip(groups.iter().map(|g| g.engine.clone()))
            .collect();
        let cf = cf.to_owned();
        // A range may walk many keys: keep it off the async worker threads.
        let merged = tokio::task::spawn_blocking(move || {
            let ranges = parts
                .iter()
                .map(|(span, _)| (span.start.as_slice(), span.end.as_deref()));
            merge_range(&spec, ranges, |start, end, limits| {
                // `start` lies in the range being scanned: its owner among the parts.
                let at = parts
                    .partition_point(|(span, _)| span.start.as_slice() <= start)
                    .saturating_sub(1);
                parts[at].1.scan(&cf, start, end, version, limits)
            })
        })
        .await
        .map_err(|e| {
            ServiceError::new(ErrorCode::Unavailable, format!("range read failed: {e}"))
        })?;
        merged.map_err(|e| match e {
            MergeError::Scan(e) => e.into(),
            MergeError::Gap { at } => ServiceError::new(
                ErrorCode::Unavailable,
                format!(
                    "internal: no group holds key {} of the range read",
                    printable(&at)
                ),
            ),
        })
    }

    // ----------------------------------------------------------------------------------------
    // Writes
    // ----------------------------------------------------------------------------------------

    /// Commits `tx` atomically; returns the commit version.
    pub async fn commit(
        &self,
        tx: Transaction,
        timeout: Duration,
    ) -> Result<Version, ServiceError> {
        self.commit_as(tx, timeout, Target::Commit).await
    }

    async fn commit_as(
        &self,
        tx: Transaction,
        timeout: Duration,
        op: Target,
    ) -> Result<Version, ServiceError> {
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        let _active = InFlight::enter(&self.stats.active);
        let result = self.commit_inner(tx, timeout, op).await;
        let counter = if result.is_ok() {
            &self.stats.committed
        } else {
            &self.stats.aborted
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn commit_inner(
        &self,
        mut tx: Transaction,
        timeout: Duration,
        op: Target,
    ) -> Result<Version, ServiceError> {
        tx.validate()?;
        for cf in tx.column_families() {
            self.check_cf(cf)?;
        }
        // A full disk refuses the write before it is proposed; reads go on.
        self.disk.check()?;
        self.faults.check(op).await?;
        // A versionstamped key is routed by the lowest version the commit can get; a group
        // whose range the key passed refuses it with nothing applied (`OutsideRange`), and it
        // is routed again with a fresh version (docs/sharding.md §6.1).
        let stamped_key = tx
            .mutations
            .iter()
            .any(|m| matches!(m, Mutation::SetVersionstampedKey { .. }));
        let mut tries = if stamped_key { ROUTE_TRIES } else { 1 };
        let outcome = loop {
            tries -= 1;
            let touched = self.shards.touched(&tx);
            let first = touched.first().map_or(0, |&at| at);
            if let Some(read_version) = tx.read_version {
                // A read version nobody has handed out yet: wait a little, then
                // FUTURE_VERSION.
                self.shards.groups()[first]
                    .gate
                    .admit_read_version(read_version, self.options.future_version_wait)
                    .await?;
            }
            if touched.len() > 1 {
                let node = self.shards.membership().cluster().this_node;
                break self.shards.commit_across(tx, node, timeout).await?;
            }
            let group = &self.shards.groups()[first];
            // Kept for another try only when one may follow.
            let command = Command::Commit(if tries > 0 {
                tx.clone()
            } else {
                std::mem::take(&mut tx)
            });
            let applied = tokio::time::timeout(timeout, group.replicator.propose(command))
                .await
                .map_err(|_| dolmen_raft::ProposeError::Timeout(timeout))??;
            match applied.outcome {
                Outcome::Rejected(Invalid::OutsideRange { .. }) if tries > 0 => {
                    self.shards.read_versions().read_version().await?;
                }
                outcome => break outcome,
            }
        };
        commit_answer(outcome)
    }

    fn single(mutation: Mutation) -> Transaction {
        Transaction {
            mutations: vec![mutation],
            ..Transaction::default()
        }
    }

    /// Writes one key at a new version (no conflict check).
    pub async fn set(
        &self,
        cf: &str,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<Version, ServiceError> {
        let tx = Self::single(Mutation::Set {
            cf: cf.to_owned(),
            key,
            value,
        });
        self.commit_as(tx, default_timeout(), Target::Set).await
    }

    /// Deletes one key at a new version (deleting a missing key succeeds).
    pub async fn delete(&self, cf: &str, key: Vec<u8>) -> Result<Version, ServiceError> {
        let tx = Self::single(Mutation::Delete {
            cf: cf.to_owned(),
            key,
        });
        self.commit_as(tx, default_timeout(), Target::Delete).await
    }

    /// Writes `value` at `key_prefix` with its last 10 bytes replaced by the versionstamp;
    /// returns the key written.
    pub async fn set_versionstamped_key(
        &self,
        cf: &str,
        key_prefix: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, ServiceError> {
        check_stamp_buffer("key_prefix", &key_prefix)?;
        let tx = Self::single(Mutation::SetVersionstampedKey {
            cf: cf.to_owned(),
            key: key_prefix.clone(),
            value,
        });
        let version = self.commit_as(tx, default_timeout(), Target::Set).await?;
        Ok(dolmen_engine::stamp_buffer(
            &key_prefix,
            &dolmen_engine::versionstamp(version, 0),
        ))
    }

    /// Writes `value_prefix` with its last 10 bytes replaced by the versionstamp at `key`;
    /// returns the value written.
    pub async fn set_versionstamped_value(
        &self,
        cf: &str,
        key: Vec<u8>,
        value_prefix: Vec<u8>,
    ) -> Result<Vec<u8>, ServiceError> {
        check_stamp_buffer("value_prefix", &value_prefix)?;
        let tx = Self::single(Mutation::SetVersionstampedValue {
            cf: cf.to_owned(),
            key,
            value: value_prefix.clone(),
        });
        let version = self.commit_as(tx, default_timeout(), Target::Set).await?;
        Ok(dolmen_engine::stamp_buffer(
            &value_prefix,
            &dolmen_engine::versionstamp(version, 0),
        ))
    }

    /// Makes sure every group has applied at least one version, so read versions are > 0: a
    /// group whose gate reports nothing applied gets an empty command.
    pub async fn ensure_initial_version(&self) -> Result<(), ServiceError> {
        for group in self.shards.groups() {
            if group.gate.applied_version() == 0 {
                group.replicator.propose(Command::Noop).await?;
            }
        }
        Ok(())
    }
}

/// A commit's answer from its outcome: the version, or the error every WIRE client reads as
/// "not applied".
fn commit_answer(outcome: Outcome) -> Result<Version, ServiceError> {
    match outcome {
        Outcome::Committed { version } => Ok(version),
        Outcome::Conflict { cf, key } => Err(ServiceError::new(
            ErrorCode::Conflict,
            format!(
                "key {} in column family '{cf}' was written after the read version; \
                 retry the transaction with a new read version",
                printable(&key)
            ),
        )),
        Outcome::Locked { cf, key } => Err(ServiceError::new(
            ErrorCode::Conflict,
            format!(
                "key {} in column family '{cf}' is locked by a transaction committing across \
                 shards; retry the transaction with a new read version",
                printable(&key)
            ),
        )),
        Outcome::TooOld {
            read_version,
            horizon,
        } => Err(ServiceError::new(
            ErrorCode::TransactionTooOld,
            format!(
                "read version {read_version} is below the retention horizon {horizon}; \
                 retry with a new read version"
            ),
        )),
        Outcome::Rejected(invalid) => Err(invalid.into()),
        Outcome::Aborted { reason } => Err(ServiceError::new(
            ErrorCode::Unavailable,
            format!("the commit across shards aborted, nothing applied: {reason}"),
        )),
        other => Err(ServiceError::new(
            ErrorCode::Unavailable,
            format!("internal: a commit produced a non-commit outcome {other:?}"),
        )),
    }
}

/// The default commit deadline (WIRE §3: `timeout_seconds = 60`).
pub fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Validates a wire `timeout_seconds` (absent → 60).
pub fn commit_timeout(timeout_seconds: Option<i64>) -> Result<Duration, ServiceError> {
    match timeout_seconds {
        None => Ok(default_timeout()),
        Some(s) if (1..=MAX_COMMIT_TIMEOUT_SECS).contains(&s) => {
            Ok(Duration::from_secs(s.unsigned_abs()))
        }
        Some(s) => Err(ServiceError::argument(
            "timeout_seconds",
            format!("must be 1..={MAX_COMMIT_TIMEOUT_SECS}, got {s}"),
        )),
    }
}

fn check_stamp_buffer(field: &str, buffer: &[u8]) -> Result<(), ServiceError> {
    if buffer.len() < VERSIONSTAMP_LEN {
        return Err(ServiceError::new(
            ErrorCode::InvalidOperation,
            format!(
                "{field}: must be at least {VERSIONSTAMP_LEN} bytes (its last {VERSIONSTAMP_LEN} \
                 bytes are replaced by the versionstamp), got {}",
                buffer.len()
            ),
        ));
    }
    Ok(())
}

/// A key for error messages: text when printable, hex otherwise, truncated.
pub fn printable(key: &[u8]) -> String {
    dolmen_engine::printable_key(key)
}
