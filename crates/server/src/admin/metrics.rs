//! `GET /metrics`: the node's counters and gauges in the Prometheus text format (0.0.4),
//! encoded by `prometheus-client` from the values the service, the engine and the Raft node
//! hold (read at scrape time by a [`Collector`]; nothing is copied between scrapes).
//!
//! Metric names carry their unit (`_bytes`, `_ms`) and counters end in `_total`; scripts and
//! tests grep these names, so they never change. On a sharded node each data group's Raft
//! gauges carry a `group` label (`dolmen_group_*`, docs/sharding.md §12); node-wide series stay
//! unlabeled.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use dolmen_engine::EngineStats;
use dolmen_raft::{Leadership, RaftNode};

use super::series::{Series, SnapshotCounts};
use crate::request_metrics::{HistogramSnapshot, Method};
use crate::service::Service;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The registry the admin endpoint renders: one collector over the node's live values.
pub fn registry(
    service: Arc<Service>,
    raft: Option<Arc<RaftNode>>,
    series: Arc<Series>,
) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeMetrics {
        service,
        raft,
        series,
    }));
    registry
}

/// Renders `registry` as Prometheus text.
///
/// # Errors
/// Only when a value cannot be written (formatting into a `String` does not fail).
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

/// The node's values, read on each scrape.
struct NodeMetrics {
    service: Arc<Service>,
    raft: Option<Arc<RaftNode>>,
    series: Arc<Series>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics")
            .field("raft", &self.raft.is_some())
            .finish_non_exhaustive()
    }
}

impl Collector for NodeMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.service.stats();
        let engine = self.service.engine_stats();
        let cluster = self.service.cluster();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let status = self.raft.as_ref().map(|r| r.status());
        let replication = status.as_ref().map(|s| Replication {
            apply_lag: s.committed.saturating_sub(s.applied),
            followers: if s.leader == Some(s.node_id) {
                s.members
                    .iter()
                    .filter(|m| m.id != s.node_id)
                    .filter_map(|m| Some((m.id, s.last_log.saturating_sub(m.matched?))))
                    .collect()
            } else {
                Vec::new()
            },
            snapshots: SnapshotCounts {
                built: s.snapshots_built,
                sent: s.snapshots_sent,
                installed: s.snapshots_installed,
            },
            all_wait_timeouts: self.raft.as_ref().map_or(0, |r| r.all_wait_timeouts()),
            oracle_versions: self.raft.as_ref().map_or(0, |r| r.oracle_versions()),
            oracle_confirmations: self
                .raft
                .as_ref()
                .map_or((0, 0), |r| by_means(r.oracle_confirmations())),
            read_index_confirmations: self
                .raft
                .as_ref()
                .map_or((0, 0), |r| by_means(r.read_index_confirmations())),
            voters_applied: self
                .raft
                .as_ref()
                .map(|r| r.voters_applied())
                .unwrap_or_default(),
        });
        let groups = self
            .raft
            .as_ref()
            .map(|r| {
                r.data_groups()
                    .iter()
                    .map(|g| {
                        let mut values = GroupValues::of(g.id(), &g.status(), g.applied_version());
                        values.hibernating = r.is_asleep(g.id());
                        values.locks = self
                            .service
                            .shards()
                            .groups()
                            .iter()
                            .find(|s| s.id == g.id())
                            .map_or(0, |s| s.engine.lock_count());
                        values
                    })
                    .collect()
            })
            .unwrap_or_default();
        let connections = &stats.connections;
        Snapshot {
            reads: load(&stats.reads),
            writes: load(&stats.writes),
            commits: load(&stats.committed),
            aborts: load(&stats.aborted),
            active_commits: stats.active.load(Ordering::Relaxed),
            request_duration_avg_ms: stats.average_response_ms(),
            is_leader: cluster.leader == Some(cluster.this_node),
            term: cluster.term,
            raft_log_fsyncs: self.raft.as_ref().map(|r| r.log_fsyncs()),
            leadership: self.raft.as_ref().map(|r| r.leadership()),
            latency: stats.methods.latency(),
            errors: stats
                .methods
                .errors()
                .into_iter()
                .map(|((m, code), n)| (m, code, n))
                .collect(),
            connections_open: connections.open.load(Ordering::Relaxed),
            connections_accepted: load(&connections.accepted),
            connections_refused: load(&connections.refused),
            connections_idle_closed: load(&connections.idle_closed),
            replication,
            horizon_age_seconds: self.series.horizon_age_seconds(engine.horizon),
            disk: DiskValues::of(self.service.disk()),
            groups,
            engine,
        }
        .encode(encoder)
    }
}

/// One scrape's values.
struct Snapshot {
    reads: u64,
    writes: u64,
    commits: u64,
    aborts: u64,
    active_commits: i64,
    request_duration_avg_ms: f64,
    engine: EngineStats,
    is_leader: bool,
    term: u64,
    /// In replicated mode only.
    raft_log_fsyncs: Option<u64>,
    /// In replicated mode only.
    leadership: Option<Leadership>,
    /// Per Thrift method.
    latency: Vec<(Method, HistogramSnapshot)>,
    /// Per Thrift method and wire error code.
    errors: Vec<(Method, String, u64)>,
    connections_open: i64,
    connections_accepted: u64,
    connections_refused: u64,
    connections_idle_closed: u64,
    /// In replicated mode only.
    replication: Option<Replication>,
    horizon_age_seconds: Option<f64>,
    disk: DiskValues,
    /// On a sharded node: each data group's Raft state here, by id (empty otherwise).
    groups: Vec<GroupValues>,
}

/// A per-group gauge: name, help, and how to read its value from a group's values.
type GroupGauge = (&'static str, &'static str, fn(&GroupValues) -> u64);

/// One data group's gauges (`group` label).
struct GroupValues {
    /// The group's id: the `group` label.
    id: u64,
    /// `dolmen_group_applied_index`.
    applied_index: u64,
    /// `dolmen_group_applied_version`.
    applied_version: u64,
    /// `dolmen_group_last_log_index`.
    last_log_index: u64,
    /// `dolmen_group_term`.
    term: u64,
    /// `dolmen_group_is_leader`.
    is_leader: bool,
    /// `dolmen_group_hibernating`.
    hibernating: bool,
    /// `dolmen_group_locks`.
    locks: u64,
}

impl GroupValues {
    fn of(id: u64, status: &dolmen_admin::RaftStatus, applied_version: u64) -> Self {
        Self {
            id,
            applied_index: status.applied,
            applied_version,
            last_log_index: status.last_log,
            term: status.term,
            is_leader: status.role == dolmen_admin::Role::Leader,
            hibernating: false,
            locks: 0,
        }
    }

    /// One labelled family per gauge, a sample per group; nothing when there are no groups (an
    /// unsharded node's text stays as it was).
    fn encode(groups: &[GroupValues], e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if groups.is_empty() {
            return Ok(());
        }
        let gauges: [GroupGauge; 7] = [
            (
                "dolmen_group_applied_index",
                "A data group's last applied log index on this node.",
                |g| g.applied_index,
            ),
            (
                "dolmen_group_applied_version",
                "The version of a data group's last applied command on this node.",
                |g| g.applied_version,
            ),
            (
                "dolmen_group_last_log_index",
                "A data group's last log index on this node.",
                |g| g.last_log_index,
            ),
            ("dolmen_group_term", "A data group's current term.", |g| {
                g.term
            }),
            (
                "dolmen_group_is_leader",
                "1 when this node leads the data group.",
                |g| u64::from(g.is_leader),
            ),
            (
                "dolmen_group_hibernating",
                "1 while the data group's timers are off on this node (idle, docs/sharding.md §8.3).",
                |g| u64::from(g.hibernating),
            ),
            (
                "dolmen_group_locks",
                "Locks of transactions committing across groups that the data group holds on this node (docs/sharding.md §6.4).",
                |g| g.locks,
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for group in groups {
                let labels = [("group", group.id.to_string())];
                ConstGauge::new(value(group)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The disk guard's last sample and state.
struct DiskValues {
    free_bytes: u64,
    data_bytes: u64,
    full: bool,
    refused: u64,
}

impl DiskValues {
    fn of(guard: &crate::disk::DiskGuard) -> Self {
        let sample = guard.sample().unwrap_or_default();
        Self {
            free_bytes: sample.free_bytes,
            data_bytes: sample.data_bytes,
            full: guard.full().is_some(),
            refused: guard.refused_total(),
        }
    }

    fn encode(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "dolmen_disk_free_bytes",
                "Free bytes on the data directory's filesystem (sampled every second).",
                self.free_bytes,
            ),
            (
                "dolmen_data_size_bytes",
                "Bytes in the node's data directory: database, Raft log, snapshots (sampled every second).",
                self.data_bytes,
            ),
            (
                "dolmen_disk_full",
                "1 while writes are refused for want of disk space ([database] min_free_disk_mb, max_data_size_mb).",
                u64::from(self.full),
            ),
        ];
        for (name, help, value) in gauges {
            emit(e, name, help, &ConstGauge::new(value))?;
        }
        emit(
            e,
            "dolmen_writes_refused_disk_full",
            "Writes refused because the disk was full (this node's clients' and forwarded ones).",
            &ConstCounter::new(self.refused),
        )
    }
}

/// Replication state, in replicated mode.
struct Replication {
    /// This node's committed index − applied index.
    apply_lag: u64,
    /// On the leader: (follower, leader's last log index − its match index).
    followers: Vec<(u64, u64)>,
    snapshots: SnapshotCounts,
    /// Writes answered `TIMEOUT` because a voter had not applied them within `all_wait_ms`.
    all_wait_timeouts: u64,
    /// Versions this node handed out as the oracle on `Timestamps` (commit versions plus one
    /// per read version).
    oracle_versions: u64,
    /// Oracle grants this node confirmed as group 0's leader: (by a ReadIndex round, by the
    /// leader lease).
    oracle_confirmations: (u64, u64),
    /// Followers' `ReadIndex` requests this node answered as group 0's leader: (by a ReadIndex
    /// round, by the leader lease).
    read_index_confirmations: (u64, u64),
    /// On the leader under `replication_mode = "all"`: (voter, applied index it reported).
    voters_applied: Vec<(u64, u64)>,
}

/// A node's confirmations as (by a ReadIndex round, by the leader lease).
fn by_means(c: &dolmen_raft::Confirmations) -> (u64, u64) {
    (
        c.read_index.load(Ordering::Relaxed),
        c.lease.load(Ordering::Relaxed),
    )
}

/// Writes one metric; a counter's `name` is given without its `_total`, which the encoder adds.
fn emit(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

/// Writes a counter of leadership confirmations labelled `by="read_index"` and `by="lease"`
/// from `(by a ReadIndex round, by the leader lease)`.
fn emit_by_means(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    (by_round, by_lease): (u64, u64),
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (by, count) in [("read_index", by_round), ("lease", by_lease)] {
        ConstCounter::new(count).encode(family.encode_family(&[("by", by)])?)?;
    }
    Ok(())
}

impl Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let engine = &self.engine;
        let mut counters = vec![
            ("dolmen_reads", "Read requests served.", self.reads),
            ("dolmen_writes", "Write requests served.", self.writes),
            ("dolmen_commits", "Transactions committed.", self.commits),
            (
                "dolmen_aborts",
                "Transactions not committed (conflict, too old, fault, timeout).",
                self.aborts,
            ),
        ];
        if let Some(fsyncs) = self.raft_log_fsyncs {
            counters.push((
                "dolmen_raft_log_fsyncs",
                "Raft log fsyncs (each covers every entry appended before it).",
                fsyncs,
            ));
        }
        if let Some(l) = &self.leadership {
            counters.push((
                "dolmen_raft_elections",
                "Elections this node started (it became a candidate).",
                l.elections,
            ));
            counters.push((
                "dolmen_raft_leader_changes",
                "Times the leader this node knows of changed (the first leader included).",
                l.leader_changes,
            ));
        }
        for (name, help, value) in counters {
            emit(e, name, help, &ConstCounter::new(value))?;
        }
        emit(
            e,
            "dolmen_active_commits",
            "atomicCommit calls in flight.",
            &ConstGauge::new(self.active_commits),
        )?;
        emit(
            e,
            "dolmen_request_duration_avg_ms",
            "Mean request duration since start.",
            &ConstGauge::new(self.request_duration_avg_ms),
        )?;
        let gauges = [
            (
                "dolmen_applied_version",
                "Version of the last applied command.",
                engine.applied_version,
            ),
            ("dolmen_mvcc_horizon", "MVCC retention horizon.", engine.horizon),
            (
                "dolmen_live_keys",
                "User keys whose newest version is a value.",
                engine.live_keys,
            ),
            (
                "dolmen_db_size_bytes",
                "SST files and memtables of data and meta.",
                engine.size_bytes,
            ),
            (
                "dolmen_block_cache_bytes",
                "Bytes in RocksDB's block cache, memtables' charge included (bounded by rocksdb.block_cache_size_mb).",
                engine.block_cache_bytes,
            ),
            (
                "dolmen_memtable_bytes",
                "Bytes in RocksDB's memtables, all column families (at most 2 x rocksdb.write_buffer_size_mb, within the block cache).",
                engine.memtable_bytes,
            ),
            (
                "dolmen_compaction_pending_bytes",
                "RocksDB's estimate of bytes awaiting compaction.",
                engine.compaction_pending_bytes,
            ),
            (
                "dolmen_is_leader",
                "1 when this node orders writes.",
                u64::from(self.is_leader),
            ),
            ("dolmen_term", "Current replication term.", self.term),
        ];
        for (name, help, value) in gauges {
            emit(e, name, help, &ConstGauge::new(value))?;
        }
        if let Some(l) = &self.leadership {
            emit(
                e,
                "dolmen_raft_leaderless_seconds",
                "Seconds this node knew no leader (elections in progress, no quorum).",
                &ConstCounter::new(l.leaderless.as_secs_f64()),
            )?;
        }
        self.encode_requests(e)?;
        self.encode_connections_and_mvcc(e)?;
        self.disk.encode(e)?;
        if let Some(r) = &self.replication {
            r.encode(e)?;
        }
        GroupValues::encode(&self.groups, e)
    }

    fn encode_requests(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let seconds = Unit::Seconds;
        let mut histograms = e.encode_descriptor(
            "dolmen_request_duration",
            "Thrift request latency in the node (decoded request to answer), per method.",
            Some(&seconds),
            MetricType::Histogram,
        )?;
        for (method, h) in self.latency.iter().filter(|(_, h)| h.count > 0) {
            let labels = [("method", method.name())];
            histograms
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    h.sum_seconds,
                    h.count,
                    &h.prometheus_buckets(),
                    None,
                )?;
        }
        let mut errors = e.encode_descriptor(
            "dolmen_request_errors",
            "Thrift requests answered with an error, per method and wire error code.",
            None,
            MetricType::Counter,
        )?;
        for (method, code, n) in &self.errors {
            let labels = [("method", method.name()), ("code", code.as_str())];
            ConstCounter::new(*n).encode(errors.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn encode_connections_and_mvcc(
        &self,
        e: &mut DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        emit(
            e,
            "dolmen_client_connections",
            "Open Thrift connections (refused ones until they close).",
            &ConstGauge::new(self.connections_open),
        )?;
        emit(
            e,
            "dolmen_client_connections_accepted",
            "Thrift connections accepted.",
            &ConstCounter::new(self.connections_accepted),
        )?;
        emit(
            e,
            "dolmen_client_connections_refused",
            "Thrift connections refused past server.max_connections.",
            &ConstCounter::new(self.connections_refused),
        )?;
        emit(
            e,
            "dolmen_client_connections_idle_closed",
            "Thrift connections closed because no request came within server.idle_timeout_ms.",
            &ConstCounter::new(self.connections_idle_closed),
        )?;
        emit(
            e,
            "dolmen_mvcc_gc_runs",
            "Garbage-collection passes over the whole keyspace completed.",
            &ConstCounter::new(self.engine.gc_passes),
        )?;
        emit(
            e,
            "dolmen_mvcc_gc_deleted_versions",
            "Versions garbage collection deleted (older than the horizon and shadowed).",
            &ConstCounter::new(self.engine.gc_versions_deleted),
        )?;
        emit(
            e,
            "dolmen_idempotency_entries",
            "Entries in the idempotency table (each client id's latest commit, kept for \
             mvcc.idempotency_window_ms).",
            &ConstGauge::new(self.engine.idempotency_entries),
        )?;
        emit(
            e,
            "dolmen_idempotency_expired",
            "Idempotency entries expired through the log since the node started.",
            &ConstCounter::new(self.engine.idempotency_expired),
        )?;
        emit(
            e,
            "dolmen_mvcc_horizon_age_versions",
            "Applied version minus the MVCC retention horizon.",
            &ConstGauge::new(
                self.engine
                    .applied_version
                    .saturating_sub(self.engine.horizon),
            ),
        )?;
        if let Some(age) = self.horizon_age_seconds {
            emit(
                e,
                "dolmen_mvcc_horizon_age_seconds",
                "Seconds since this node applied the horizon's version (at least the oldest \
                 of the last 300 one-second samples).",
                &ConstGauge::new(age),
            )?;
        }
        Ok(())
    }
}

impl Replication {
    fn encode(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        emit(
            e,
            "dolmen_apply_lag_entries",
            "This node's committed index minus its applied index.",
            &ConstGauge::new(self.apply_lag),
        )?;
        let mut lag = e.encode_descriptor(
            "dolmen_replication_log_lag_entries",
            "On the leader: its last log index minus each follower's match index.",
            None,
            MetricType::Gauge,
        )?;
        for (follower, entries) in &self.followers {
            let labels = [("follower", follower.to_string())];
            ConstGauge::new(*entries).encode(lag.encode_family(&labels)?)?;
        }
        for (name, help, value) in [
            (
                "dolmen_raft_snapshots_built",
                "Snapshots this node built.",
                self.snapshots.built,
            ),
            (
                "dolmen_raft_snapshots_sent",
                "Snapshots this node streamed to a follower that installed them.",
                self.snapshots.sent,
            ),
            (
                "dolmen_raft_snapshots_installed",
                "Snapshots installed on this node.",
                self.snapshots.installed,
            ),
        ] {
            emit(e, name, help, &ConstCounter::new(value))?;
        }
        emit(
            e,
            "dolmen_all_wait_timeouts",
            "Writes answered TIMEOUT under replication_mode = \"all\" because a voter had not \
             applied them within all_wait_ms (committed; they apply there later).",
            &ConstCounter::new(self.all_wait_timeouts),
        )?;
        emit(
            e,
            "dolmen_oracle_versions",
            "Versions this node handed out as the oracle to gateways on Timestamps (commit \
             versions plus one per read version; docs/sharding.md §3.3).",
            &ConstCounter::new(self.oracle_versions),
        )?;
        emit_by_means(
            e,
            "dolmen_oracle_confirmations",
            "Oracle grants this node confirmed as group 0's leader, by how: a ReadIndex round \
             (read_index) or the leader lease (lease, under consistency_level = \"lease\"; \
             docs/sharding.md §3.2).",
            self.oracle_confirmations,
        )?;
        emit_by_means(
            e,
            "dolmen_read_index_confirmations",
            "Followers' ReadIndex requests this node answered as group 0's leader, by how it \
             confirmed its leadership: a ReadIndex round (read_index) or the leader lease (lease, \
             for a follower under consistency_level = \"lease\"; docs/replication.md §7.2).",
            self.read_index_confirmations,
        )?;
        let mut applied = e.encode_descriptor(
            "dolmen_member_applied_index",
            "On the leader under replication_mode = \"all\": the log index each voter reported \
             applying (0 = no report yet).",
            None,
            MetricType::Gauge,
        )?;
        for (member, index) in &self.voters_applied {
            let labels = [("member", member.to_string())];
            ConstGauge::new(*index).encode(applied.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A collector over fixed values, to render without a node; `sharded` adds two data groups.
    #[derive(Debug)]
    struct Fixed {
        sharded: bool,
    }

    impl Collector for Fixed {
        fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let groups = if self.sharded {
                vec![
                    GroupValues {
                        id: 1,
                        applied_index: 41,
                        applied_version: 1_800_000_000_000_500,
                        last_log_index: 42,
                        term: 3,
                        is_leader: true,
                        hibernating: false,
                        locks: 2,
                    },
                    GroupValues {
                        id: 2,
                        applied_index: 17,
                        applied_version: 1_800_000_000_000_400,
                        last_log_index: 17,
                        term: 5,
                        is_leader: false,
                        hibernating: true,
                        locks: 0,
                    },
                ]
            } else {
                Vec::new()
            };
            Snapshot {
                reads: 3,
                writes: 4,
                commits: 2,
                aborts: 1,
                active_commits: 0,
                request_duration_avg_ms: 0.25,
                engine: EngineStats {
                    live_keys: 5,
                    memtable_bytes: 4096,
                    idempotency_entries: 12,
                    idempotency_expired: 30,
                    ..EngineStats::default()
                },
                is_leader: true,
                term: 7,
                raft_log_fsyncs: Some(9),
                leadership: Some(Leadership {
                    elections: 2,
                    leader_changes: 3,
                    leaderless: std::time::Duration::from_millis(1500),
                }),
                latency: {
                    let m = crate::request_metrics::RequestMetrics::default();
                    m.observe(Method::Get, std::time::Duration::from_micros(400), None);
                    m.latency()
                },
                errors: vec![(Method::AtomicCommit, "CONFLICT".to_owned(), 6)],
                connections_open: 2,
                connections_accepted: 5,
                connections_refused: 1,
                connections_idle_closed: 4,
                replication: Some(Replication {
                    apply_lag: 3,
                    followers: vec![(2, 10)],
                    snapshots: SnapshotCounts {
                        built: 1,
                        sent: 2,
                        installed: 0,
                    },
                    all_wait_timeouts: 5,
                    oracle_versions: 640,
                    oracle_confirmations: (12, 3),
                    read_index_confirmations: (7, 9),
                    voters_applied: vec![(0, 41), (2, 40)],
                }),
                horizon_age_seconds: Some(4.5),
                disk: DiskValues {
                    free_bytes: 812 << 20,
                    data_bytes: 3 << 20,
                    full: true,
                    refused: 11,
                },
                groups,
            }
            .encode(encoder)
        }
    }

    fn rendered(sharded: bool) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed { sharded }));
        render(&registry).unwrap()
    }

    #[test]
    fn the_text_keeps_every_metric_name_with_its_help_and_type() {
        let text = rendered(false);
        for expected in [
            "# HELP dolmen_reads_total Read requests served.\n# TYPE dolmen_reads_total counter\ndolmen_reads_total 3\n",
            "# TYPE dolmen_aborts_total counter\ndolmen_aborts_total 1\n",
            "# HELP dolmen_memtable_bytes Bytes in RocksDB's memtables",
            "# TYPE dolmen_memtable_bytes gauge\ndolmen_memtable_bytes 4096\n",
            "dolmen_live_keys 5\n",
            "dolmen_request_duration_avg_ms 0.25\n",
            "dolmen_is_leader 1\n",
            "dolmen_term 7\n",
            "# TYPE dolmen_raft_log_fsyncs_total counter\ndolmen_raft_log_fsyncs_total 9\n",
            "dolmen_raft_elections_total 2\n",
            "dolmen_raft_leader_changes_total 3\n",
            "# TYPE dolmen_raft_leaderless_seconds_total counter\ndolmen_raft_leaderless_seconds_total 1.5\n",
            "# TYPE dolmen_request_duration_seconds histogram\n",
            "dolmen_request_duration_seconds_sum{method=\"get\"} 0.0004\n",
            "dolmen_request_duration_seconds_count{method=\"get\"} 1\n",
            "dolmen_request_duration_seconds_bucket{method=\"get\",le=\"0.0003\"} 0\n",
            "dolmen_request_duration_seconds_bucket{method=\"get\",le=\"0.0005\"} 1\n",
            "dolmen_request_duration_seconds_bucket{method=\"get\",le=\"+Inf\"} 1\n",
            "dolmen_request_errors_total{method=\"atomicCommit\",code=\"CONFLICT\"} 6\n",
            "dolmen_client_connections 2\n",
            "dolmen_client_connections_accepted_total 5\n",
            "dolmen_client_connections_refused_total 1\n",
            "dolmen_replication_log_lag_entries{follower=\"2\"} 10\n",
            "dolmen_apply_lag_entries 3\n",
            "dolmen_raft_snapshots_sent_total 2\n",
            "# TYPE dolmen_all_wait_timeouts_total counter\ndolmen_all_wait_timeouts_total 5\n",
            "dolmen_member_applied_index{member=\"2\"} 40\n",
            "# TYPE dolmen_oracle_versions_total counter\ndolmen_oracle_versions_total 640\n",
            "dolmen_oracle_confirmations_total{by=\"read_index\"} 12\n",
            "dolmen_oracle_confirmations_total{by=\"lease\"} 3\n",
            "dolmen_read_index_confirmations_total{by=\"read_index\"} 7\n",
            "dolmen_read_index_confirmations_total{by=\"lease\"} 9\n",
            "dolmen_mvcc_horizon_age_seconds 4.5\n",
            "# TYPE dolmen_idempotency_entries gauge\ndolmen_idempotency_entries 12\n",
            "# TYPE dolmen_idempotency_expired_total counter\ndolmen_idempotency_expired_total 30\n",
            "# TYPE dolmen_disk_free_bytes gauge\ndolmen_disk_free_bytes 851443712\n",
            "dolmen_data_size_bytes 3145728\n",
            "dolmen_disk_full 1\n",
            "# TYPE dolmen_writes_refused_disk_full_total counter\ndolmen_writes_refused_disk_full_total 11\n",
        ] {
            assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
        }
        let names = [
            "dolmen_reads_total",
            "dolmen_writes_total",
            "dolmen_commits_total",
            "dolmen_aborts_total",
            "dolmen_raft_log_fsyncs_total",
            "dolmen_raft_elections_total",
            "dolmen_raft_leader_changes_total",
            "dolmen_active_commits",
            "dolmen_request_duration_avg_ms",
            "dolmen_applied_version",
            "dolmen_mvcc_horizon",
            "dolmen_live_keys",
            "dolmen_db_size_bytes",
            "dolmen_block_cache_bytes",
            "dolmen_memtable_bytes",
            "dolmen_compaction_pending_bytes",
            "dolmen_is_leader",
            "dolmen_term",
            "dolmen_raft_leaderless_seconds_total",
            "dolmen_request_duration_seconds_bucket",
            "dolmen_request_duration_seconds_sum",
            "dolmen_request_duration_seconds_count",
            "dolmen_request_errors_total",
            "dolmen_client_connections",
            "dolmen_client_connections_accepted_total",
            "dolmen_client_connections_refused_total",
            "dolmen_client_connections_idle_closed_total",
            "dolmen_mvcc_gc_runs_total",
            "dolmen_mvcc_gc_deleted_versions_total",
            "dolmen_idempotency_entries",
            "dolmen_idempotency_expired_total",
            "dolmen_mvcc_horizon_age_versions",
            "dolmen_mvcc_horizon_age_seconds",
            "dolmen_disk_free_bytes",
            "dolmen_data_size_bytes",
            "dolmen_disk_full",
            "dolmen_writes_refused_disk_full_total",
            "dolmen_apply_lag_entries",
            "dolmen_replication_log_lag_entries",
            "dolmen_raft_snapshots_built_total",
            "dolmen_raft_snapshots_sent_total",
            "dolmen_raft_snapshots_installed_total",
            "dolmen_all_wait_timeouts_total",
            "dolmen_oracle_versions_total",
            "dolmen_oracle_confirmations_total",
            "dolmen_read_index_confirmations_total",
            "dolmen_member_applied_index",
        ];
        let mut samples: Vec<&str> = Vec::new();
        for name in text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split([' ', '{']).next())
        {
            if !samples.contains(&name) {
                samples.push(name);
            }
        }
        assert_eq!(samples, names, "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn a_sharded_node_labels_each_data_groups_gauges_with_its_id() {
        let text = rendered(true);
        for expected in [
            "# HELP dolmen_group_applied_index A data group's last applied log index on this node.\n\
             # TYPE dolmen_group_applied_index gauge\n\
             dolmen_group_applied_index{group=\"1\"} 41\n\
             dolmen_group_applied_index{group=\"2\"} 17\n",
            "# TYPE dolmen_group_applied_version gauge\n\
             dolmen_group_applied_version{group=\"1\"} 1800000000000500\n\
             dolmen_group_applied_version{group=\"2\"} 1800000000000400\n",
            "dolmen_group_last_log_index{group=\"1\"} 42\n",
            "dolmen_group_last_log_index{group=\"2\"} 17\n",
            "dolmen_group_term{group=\"1\"} 3\n",
            "dolmen_group_term{group=\"2\"} 5\n",
            "dolmen_group_is_leader{group=\"1\"} 1\n",
            "dolmen_group_is_leader{group=\"2\"} 0\n",
            "dolmen_group_hibernating{group=\"1\"} 0\n",
            "dolmen_group_hibernating{group=\"2\"} 1\n",
            // Node-wide series keep no label.
            "dolmen_term 7\n",
            "dolmen_applied_version 0\n",
        ] {
            assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
        }
        // The unsharded text is the sharded one without the group families.
        let unsharded = rendered(false);
        let without_groups: String = text
            .lines()
            .filter(|l| !l.contains("dolmen_group_"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(without_groups, unsharded);
    }
}
