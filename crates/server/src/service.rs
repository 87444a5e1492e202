//! The protocol-free service core: every client operation, in domain types. The Thrift layer
//! only converts; standalone and replicated nodes differ only in the `Replicator`/`ReadGate`
//! plugged in here (docs/ARCHITECTURE.md §1).
//!
//! ```text
//!   reads:  ReadGate::read_version / wait_applied ──▶ Engine::get / get_range(version)
//!   writes: validate ──▶ disk guard ──▶ fault check ──▶ Replicator::propose(Command) ──▶ Outcome
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_engine::{
    check_key, Command, Engine, EngineStats, Mutation, Outcome, RangePage, RangeSpec, Transaction,
    Version, VERSIONSTAMP_LEN,
};
use dolmen_raft::{ClusterView, ReadGate, Replicator};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::disk::DiskGuard;
use crate::error::{ErrorCode, ServiceError};
use crate::faults::{FaultInjector, Target};
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

/// The largest `timeout_seconds` a commit may ask for.
pub const MAX_COMMIT_TIMEOUT_SECS: i64 = 3600;

/// The service core shared by every connection.
pub struct Service {
    engine: Arc<Engine>,
    replicator: Arc<dyn Replicator>,
    gate: Arc<dyn ReadGate>,
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
            .field("engine", &self.engine)
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
    /// A service over `engine`, ordering writes through `replicator` and reads through `gate`.
    pub fn new(
        engine: Arc<Engine>,
        replicator: Arc<dyn Replicator>,
        gate: Arc<dyn ReadGate>,
        options: ServiceOptions,
    ) -> Self {
        Self {
            faults: FaultInjector::new(options.allow_fault_injection),
            engine,
            replicator,
            gate,
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

    /// The byte budget of one range answer.
    pub fn max_range_bytes(&self) -> Option<usize> {
        self.options.max_range_bytes
    }

    /// Request counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Engine statistics (keys, sizes, cache).
    pub fn engine_stats(&self) -> EngineStats {
        self.engine.stats()
    }

    /// Membership, roles and health; this node is `degraded` while its disk is full (it
    /// refuses writes).
    pub fn cluster(&self) -> ClusterView {
        let mut view = self.replicator.cluster();
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
        Ok(self.engine.check_column_family(cf)?)
    }

    // ----------------------------------------------------------------------------------------
    // Reads
    // ----------------------------------------------------------------------------------------

    /// A linearizable read version (> 0 once the node has applied anything).
    pub async fn read_version(&self) -> Result<Version, ServiceError> {
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.gate.read_version().await?)
    }

    /// The latest committed value of `key` under the node's read consistency level.
    pub async fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ServiceError> {
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        check_key("key", key)?;
        self.check_cf(cf)?;
        self.faults.check(Target::Get).await?;
        let version = self.gate.read_version().await?;
        let _permit = self.read_permit().await?;
        Ok(self.engine.get(cf, key, version)?)
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

    /// Waits (bounded) until `version` is applied here.
    async fn await_version(&self, version: Version) -> Result<(), ServiceError> {
        if version > self.gate.applied_version() {
            self.gate
                .wait_applied(version, self.options.future_version_wait)
                .await?;
        }
        Ok(())
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
        self.await_version(version).await?;
        let _permit = self.read_permit().await?;
        Ok(self.engine.get(cf, key, version)?)
    }

    /// A range page, at `version` (snapshot) or at a fresh read version (`None`).
    pub async fn get_range(
        &self,
        cf: &str,
        spec: RangeSpec,
        version: Option<Version>,
    ) -> Result<RangePage, ServiceError> {
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        self.check_cf(cf)?;
        let version = match version {
            Some(v) => {
                self.await_version(v).await?;
                v
            }
            None => self.gate.read_version().await?,
        };
        let _permit = self.read_permit().await?;
        let engine = self.engine.clone();
        let cf = cf.to_owned();
        // A range may walk many keys: keep it off the async worker threads.
        tokio::task::spawn_blocking(move || engine.get_range(&cf, &spec, version))
            .await
            .map_err(|e| {
                ServiceError::new(ErrorCode::Unavailable, format!("range read failed: {e}"))
            })?
            .map_err(Into::into)
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
        tx: Transaction,
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
        if let Some(read_version) = tx.read_version {
            // A read version this node has not reached: wait a little, then FUTURE_VERSION.
            self.await_version(read_version).await?;
        }
        let applied = tokio::time::timeout(timeout, self.replicator.propose(Command::Commit(tx)))
            .await
            .map_err(|_| dolmen_raft::ProposeError::Timeout(timeout))??;
        match applied.outcome {
            Outcome::Committed { version } => Ok(version),
            Outcome::Conflict { cf, key } => Err(ServiceError::new(
                ErrorCode::Conflict,
                format!(
                    "key {} in column family '{cf}' was written after the read version; \
                     retry the transaction with a new read version",
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
            Outcome::Applied => Err(ServiceError::new(
                ErrorCode::Unavailable,
                "internal: a commit produced a non-commit outcome",
            )),
        }
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

    /// Raises the MVCC retention horizon (the retention job's command).
    pub async fn compact(&self, horizon: Version) -> Result<(), ServiceError> {
        self.replicator
            .propose(Command::Compact { horizon })
            .await?;
        Ok(())
    }

    /// Forgets idempotency entries recorded before `before`, at most
    /// [`EXPIRE_IDEMPOTENCY_LIMIT`](dolmen_engine::EXPIRE_IDEMPOTENCY_LIMIT) of them (the
    /// retention job's other command).
    pub async fn expire_idempotency(&self, before: Version) -> Result<(), ServiceError> {
        self.replicator
            .propose(Command::ExpireIdempotency {
                before,
                limit: dolmen_engine::EXPIRE_IDEMPOTENCY_LIMIT,
            })
            .await?;
        Ok(())
    }

    /// Makes sure the node has applied at least one version, so read versions are > 0.
    pub async fn ensure_initial_version(&self) -> Result<(), ServiceError> {
        if self.gate.applied_version() == 0 {
            self.replicator.propose(Command::Noop).await?;
        }
        Ok(())
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
    let shown = &key[..key.len().min(64)];
    let more = if key.len() > 64 { "…" } else { "" };
    match std::str::from_utf8(shown) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("'{s}'{more}"),
        _ => {
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}{more}")
        }
    }
}
