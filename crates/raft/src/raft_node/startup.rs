//! Starting a node: the openraft configuration, opening the log store and state machine over
//! the engine, the quiet period of a restarted member (invariant 14), the peer gRPC server and
//! the follower's leader-view refresher; then, on a sharded node, each data group over its own
//! engine handle on the same peer server (`start_data_group`), with the data groups'
//! hibernation controller. Every group's log store is opened on the node's one `raft-log`
//! writer (`LogWriter`), so one batch and one WAL fsync cover all the groups' appends.
//!
//! ```text
//!  Engine ─▶ LogStore + StateMachine ─▶ Raft::build ─▶ (quiet period if initialized) ─▶ run
//!    (start_group, per group)                              └─▶ peer gRPC server (group 0's start)
//!  data group g: engine handle ─▶ start_group (versions from GroupZeroOracle) ─▶ GroupRouter[g]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dolmen_engine::Engine;
use openraft::storage::RaftLogStorage;
use openraft::{RaftLogReader, SnapshotPolicy, StorageHelper};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::leadership::LeadershipStats;
use super::membership::unconfigured_voter;
use super::status::status_of;
use super::{DataGroup, RaftNode, RaftNodeOptions};
use crate::apply_report::ApplyReporting;
use crate::apply_tracker::{ApplyTracker, ReplicationMode, WriteAck};
use crate::hibernate::{HibernateOptions, Hibernation};
use crate::log_store::GroupId;
use crate::log_store::{LogFsync, LogStore, LogWriter};
use crate::network::{self, GroupRouter, GrpcNetworkFactory, NetworkOptions, RaftPeerHandler};
use crate::oracle::offset_clock;
use crate::raft_replicator::{read_batchers, LeaderContact, Shared};
use crate::sequencer::{Sequencer, VersionSource};
use crate::shard::GroupZeroOracle;
use crate::snapshot::SnapshotDir;
use crate::state_machine::{AppliedPosition, StateMachine};
use crate::types::{Raft, GROUP_ID};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum RaftNodeError {
    /// A storage failure while opening.
    #[error("opening the Raft storage: {0}")]
    Storage(#[from] std::io::Error),
    /// openraft refused the configuration.
    #[error("invalid Raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    /// The blocking task that opens the state machine panicked or was cancelled.
    #[error("the Raft core failed to start: opening the state machine: {0}")]
    OpenTask(tokio::task::JoinError),
    /// openraft failed to start.
    #[error("the Raft core failed to start: {0}")]
    Start(openraft::error::Fatal<crate::types::DolmenRaft>),
    /// Under `replication_mode = "all"`, the group's membership holds a voter that is not a
    /// configured node: no write could ever be acknowledged by every voter with certainty.
    #[error(
        "replication_mode = \"all\": group {group} has voter {voter} (peer address {addr}), \
         which is not a configured node (consensus.endpoints has entries for nodes {}); every \
         voter must be listed in consensus.endpoints: add its entry, or remove it from the group \
         (dolmen cluster remove-node) while running with replication_mode = \"quorum\"",
        super::error::ids(.configured)
    )]
    UnconfiguredVoter {
        /// The group whose membership holds the voter.
        group: u64,
        /// The voter.
        voter: crate::NodeId,
        /// Its peer address in the membership.
        addr: String,
        /// The configured nodes.
        configured: Vec<crate::NodeId>,
    },
}

impl RaftNodeError {
    /// Whether the configuration is at fault (the binary exits 2, as for a bad config file),
    /// rather than storage or the runtime.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_) | Self::UnconfiguredVoter { .. })
    }
}

impl RaftNode {
    /// Opens the node's Raft storage over `engine`, builds and runs openraft, and serves the
    /// peer protocol on `peer_listener`. Returns once the node takes part in the group (after
    /// the quiet period of a restarted node).
    pub async fn start(
        engine: Arc<Engine>,
        options: RaftNodeOptions,
        peer_listener: TcpListener,
    ) -> Result<Self, RaftNodeError> {
        let network_options = NetworkOptions {
            tls: options.tls.clone(),
            ..NetworkOptions::default()
        };
        // Group 0's network; every other group's is `for_group(g)` of it, on the same
        // connections (docs/sharding.md §8.1).
        let mut network = GrpcNetworkFactory::new(options.node_id, network_options);
        if let Some(faults) = &options.faults {
            network = network.with_faults(faults.clone());
        }
        let fsync = if options.unsafe_skip_log_fsync {
            LogFsync::UnsafeLazy
        } else {
            LogFsync::BeforeAck
        };
        // One `raft-log` thread for the node: group 0 and every data group queue into it
        // (docs/sharding.md §7).
        let log_writer = LogWriter::start(&engine, fsync)?;
        let group = start_group(GroupStart {
            group: GROUP_ID,
            engine: engine.clone(),
            options: &options,
            snapshot_dir: options.snapshot_dir.clone(),
            network: &network,
            oracle: None,
            replication: options.replication,
            log_writer: &log_writer,
        })
        .await?;
        let GroupParts {
            raft,
            shared,
            log,
            snapshots,
            leadership,
            oracle_versions,
            handler,
            incoming,
            tracker,
        } = group;

        let peer_addr = peer_listener.local_addr()?;
        let (stop_peers, mut stop_rx) = watch::channel(false);
        // One peer server for every group this node runs; group 0's received snapshots keep
        // going to `snapshot_dir`, each data group's to its own directory.
        let router = GroupRouter::new(options.node_id);
        router.insert(GROUP_ID, handler, incoming);
        let serve_options = network::ServeOptions {
            tls: options.tls.clone(),
            ..network::ServeOptions::default()
        };
        let served_router = router.clone();
        let peer_server = tokio::spawn(async move {
            let stop = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            let served = network::serve_router(serve_options, peer_listener, served_router, stop);
            if let Err(e) = served.await {
                tracing::error!(error = %e, "the peer server stopped");
            }
        });

        report_applied(
            options.replication,
            &raft,
            &shared,
            &tracker,
            options.heartbeat_interval,
            stop_peers.subscribe(),
        );

        // A follower learns the other members' health from the leader, every heartbeat
        // interval (one small Probe), so its getClusterHealth agrees with the leader's.
        let view_shared = shared.clone();
        let mut view_stop = stop_peers.subscribe();
        let view_every = options.heartbeat_interval.max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(view_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = view_stop.changed() => return,
                    _ = tick.tick() => view_shared.refresh_leader_view().await,
                }
            }
        });

        let group_zero_oracle = GroupZeroOracle::new(shared.clone());
        Ok(Self {
            raft,
            shared,
            options,
            snapshots,
            log,
            log_writer,
            leadership,
            peer_addr,
            stop_peers,
            peer_server: parking_lot::Mutex::new(Some(peer_server)),
            oracle_versions,
            router,
            network,
            data_groups: parking_lot::Mutex::new(Vec::new()),
            group_zero_oracle,
            hibernation: std::sync::OnceLock::new(),
        })
    }

    /// Starts data group `group` of a sharded node over its engine handle (docs/sharding.md
    /// §2): its own log, state machine, snapshots (under `snapshot_dir/g<group>`) and
    /// sequencer, whose commits draw their versions from group 0's oracle; served by this
    /// node's peer server on the same connections. The group is initialized with the
    /// configured members once group 0 is initialized here ([`DataGroup::initialize_with`]).
    pub async fn start_data_group(
        &self,
        group: GroupId,
        engine: Arc<Engine>,
    ) -> Result<Arc<DataGroup>, RaftNodeError> {
        let oracle = self.group_zero_oracle.clone();
        let parts = start_group(GroupStart {
            group,
            engine,
            options: &self.options,
            snapshot_dir: self.options.snapshot_dir.join(format!("g{group}")),
            network: &self.network,
            oracle: Some(oracle.clone()),
            replication: self.options.data_replication,
            log_writer: &self.log_writer,
        })
        .await?;
        self.router
            .insert(group, parts.handler.clone(), parts.incoming.clone());
        report_applied(
            self.options.data_replication,
            &parts.raft,
            &parts.shared,
            &parts.tracker,
            self.options.heartbeat_interval,
            self.stop_peers.subscribe(),
        );
        if let Some(hibernation) = self.hibernation() {
            hibernation.register(group, Arc::new(parts.raft.clone()));
            // This node's own proposals and reads wake the group too (the peer server wakes
            // it for what peers send).
            let waker = hibernation.clone();
            let _ = parts.shared.wake.set(Arc::new(move || waker.touch(group)));
        }
        let data = Arc::new(DataGroup {
            group,
            raft: parts.raft,
            shared: parts.shared,
            log: parts.log,
            snapshots: parts.snapshots,
            oracle,
            election_timeout: self.options.election_timeout,
            this: (self.options.node_id, self.options.this.admin_addr.clone()),
        });
        self.data_groups.lock().push(data.clone());
        Ok(data)
    }
}

impl RaftNode {
    /// The data groups' hibernation controller, started with the first call (its beats reach
    /// it through the peer server's router); `None` when `hibernate_after` is zero.
    fn hibernation(&self) -> Option<Arc<Hibernation>> {
        if self.options.hibernate_after.is_zero() {
            return None;
        }
        let (hibernation, _) = self.hibernation.get_or_init(|| {
            let hibernation = Hibernation::new(
                self.options.node_id,
                HibernateOptions {
                    beat_interval: self.options.heartbeat_interval,
                    election_timeout: self.options.election_timeout,
                    hibernate_after: self.options.hibernate_after,
                },
            );
            self.router.set_beats(hibernation.clone());
            let beats = hibernation.spawn_beats(self.shared.peers.clone());
            (hibernation, parking_lot::Mutex::new(Some(beats)))
        });
        Some(hibernation.clone())
    }
}

/// Under `all`, starts the task by which this member reports its applied index of the group
/// to the group's leader, and leads its tracker while it leads (`apply_report.rs`); nothing
/// runs in `quorum` mode. It ends when `stop` turns true (the node's peer server stops).
fn report_applied(
    replication: ReplicationMode,
    raft: &Raft,
    shared: &Shared,
    tracker: &Arc<ApplyTracker>,
    retry: Duration,
    stop: watch::Receiver<bool>,
) {
    if let ReplicationMode::All { .. } = replication {
        let reporting = ApplyReporting {
            raft: raft.clone(),
            node_id: shared.node_id,
            peers: shared.peers.clone(),
            applied: shared.applied.clone(),
            tracker: tracker.clone(),
            retry,
        };
        reporting.spawn(stop);
    }
}

/// What [`start_group`] needs.
struct GroupStart<'a> {
    group: GroupId,
    engine: Arc<Engine>,
    options: &'a RaftNodeOptions,
    snapshot_dir: std::path::PathBuf,
    /// Group 0's network factory (the node's channels).
    network: &'a GrpcNetworkFactory,
    /// Group 0's oracle, for a data group; `None`: the group is its own oracle.
    oracle: Option<Arc<GroupZeroOracle>>,
    /// When the group's writes are acknowledged.
    replication: ReplicationMode,
    /// The node's `raft-log` writer, which the group's log store queues into.
    log_writer: &'a LogWriter,
}

/// One running group of this node, before the node wires it into its peer server.
struct GroupParts {
    raft: Raft,
    shared: Arc<Shared>,
    log: LogStore,
    snapshots: Arc<crate::snapshot::SnapshotStats>,
    leadership: Arc<LeadershipStats>,
    oracle_versions: Arc<AtomicU64>,
    handler: Arc<dyn network::PeerHandler>,
    incoming: network::IncomingSnapshot,
    tracker: Arc<ApplyTracker>,
}

/// Opens one group's storage over its engine handle, builds and runs its Raft core, its
/// sequencer and its peer handler.
#[allow(clippy::too_many_lines)] // one linear start-up sequence
async fn start_group(start: GroupStart<'_>) -> Result<GroupParts, RaftNodeError> {
    let GroupStart {
        group,
        engine,
        options,
        snapshot_dir,
        network,
        oracle,
        replication,
        log_writer,
    } = start;
    let (election_min, election_max) = election_window(
        duration_ms(options.election_timeout),
        duration_ms(options.heartbeat_interval),
    );
    let config = openraft::Config {
        cluster_name: "dolmen".into(),
        election_timeout_min: election_min,
        election_timeout_max: election_max,
        heartbeat_interval: duration_ms(options.heartbeat_interval),
        // The snapshot call's hard deadline: generous, the stream itself is bounded.
        install_snapshot_timeout: 60_000,
        max_payload_entries: options.max_batch_entries.max(1),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_interval_entries),
        max_in_snapshot_log_to_keep: options.snapshot_keep_entries,
        enable_pre_vote: Some(true),
        // Our state machine does not fsync on apply: never trust it as a leader's restore.
        enable_leader_restore: Some(false),
        allow_log_reversion: Some(false),
        ..Default::default()
    }
    .validate()?;

    // Blocking, and long once: opening migrates a layout-1 log (log_store/layout.rs).
    let (log_engine, log_writer) = (engine.clone(), log_writer.clone());
    let mut log_store =
        tokio::task::spawn_blocking(move || LogStore::open_with(&log_engine, group, &log_writer))
            .await
            .map_err(|e| std::io::Error::other(format!("opening the log store: {e}")))??;
    // Asked of storage: the Raft core cannot answer before `run`.
    let log_state = log_store.get_log_state().await?;
    let initialized = log_state.last_log_id.is_some() || log_store.read_vote().await?.is_some();
    let log = log_store.clone();
    let (applied_tx, applied_rx) = watch::channel(AppliedPosition::default());
    // Opening may redo an interrupted snapshot install: blocking work.
    let (sm_engine, sm_dir) = (engine.clone(), snapshot_dir.clone());
    let mut state_machine =
        tokio::task::spawn_blocking(move || StateMachine::open(sm_engine, sm_dir, applied_tx))
            .await
            .map_err(RaftNodeError::OpenTask)??
            .with_log(log_store.clone());
    if let ReplicationMode::All { .. } = replication {
        // The membership the core will start with: the last one in the log, or else the
        // state machine's (openraft's own rule).
        let membership = StorageHelper::new(&mut log_store, &mut state_machine)
            .get_membership()
            .await
            .map_err(|e| std::io::Error::other(format!("reading the membership: {e}")))?;
        let effective = membership.effective().membership();
        if let Some((voter, addr)) = unconfigured_voter(effective, &options.initial_members) {
            return Err(RaftNodeError::UnconfiguredVoter {
                group,
                voter,
                addr,
                configured: options.initial_members.keys().copied().collect(),
            });
        }
    }
    // A seeded node (`seed.rs`) has its log purged with no snapshot yet: followers could
    // not catch up until one is built, so build one as soon as the core runs.
    let needs_snapshot = log_state.last_purged_log_id.is_some()
        && SnapshotDir::open(&snapshot_dir)?.latest()?.is_none();
    let snapshots = state_machine.stats();
    let incoming = state_machine.snapshot_dir();
    let network = network
        .for_group(group)
        .with_snapshot_stats(snapshots.clone());
    let peers = network.peer_client();
    let raft = Raft::build(
        options.node_id,
        Arc::new(config),
        network,
        log_store,
        state_machine,
    )
    .await
    .map_err(RaftNodeError::Start)?;

    // Invariant 14: a restarted member may have granted a lease it no longer remembers;
    // it stays silent for longer than the leader lease (`election_timeout_max`) before it
    // may campaign or vote.
    if initialized {
        tokio::time::sleep(options.election_timeout).await;
    }
    raft.run();
    if needs_snapshot {
        tracing::info!(
            group,
            "the log is purged but no snapshot exists (a seeded node): building one"
        );
        if let Err(e) = raft.trigger().snapshot().await {
            tracing::warn!(group, error = %e, "cannot start the snapshot of a seeded node");
        }
    }
    let leadership = Arc::new(LeadershipStats::default());
    super::leadership::follow(raft.clone(), leadership.clone());

    // One acknowledgement policy for this node's writes and forwarded ones.
    let tracker = Arc::new(ApplyTracker::new());
    let ack = Arc::new(WriteAck::new(replication, tracker.clone()));
    let contact = Arc::new(LeaderContact::default());
    let shared_contact = contact.clone();
    let source = match &oracle {
        Some(oracle) => VersionSource::GroupZero(oracle.clone()),
        None => Sequencer::own_source(options.oracle_window, offset_clock(options.clock_offset_ms)),
    };
    let sequencer = Sequencer::new(
        raft.clone(),
        options.node_id,
        engine.clone(),
        applied_rx.clone(),
        source,
        options.leader_wait,
    );
    sequencer.follow_leadership();
    let shared = Arc::new_cyclic(|weak| {
        let (local_reads, remote_reads) = read_batchers(weak);
        Shared {
            raft: raft.clone(),
            node_id: options.node_id,
            peers,
            forward_writes: options.forward_writes,
            outstanding: Arc::new(Semaphore::new(options.max_outstanding_proposals.max(1))),
            max_outstanding: options.max_outstanding_proposals.max(1),
            applied: applied_rx,
            reads: options.reads,
            contact: shared_contact,
            rpc_timeout: Duration::from_secs(10),
            election_timeout: options.election_timeout,
            leader_wait: options.leader_wait,
            leader_view: parking_lot::Mutex::new(None),
            local_reads,
            remote_reads,
            ack: ack.clone(),
            sequencer: sequencer.clone(),
            oracle,
            engine: engine.clone(),
            wake: std::sync::OnceLock::new(),
            oracle_confirmations: Arc::default(),
            read_index_confirmations: Arc::default(),
        }
    });

    let status_raft = raft.clone();
    let status_stats = snapshots.clone();
    let own_admin = options.this.admin_addr.clone();
    let node_id = options.node_id;
    let election_timeout = options.election_timeout;
    let oracle_versions = Arc::new(AtomicU64::new(0));
    let handler: Arc<dyn network::PeerHandler> = Arc::new(
        RaftPeerHandler::new(raft.clone(), node_id, options.fingerprint.clone())
            .on_leader_append(Arc::new(move || contact.touch()))
            .with_write_limit(shared.outstanding.clone(), shared.max_outstanding)
            .with_admission(options.admission.clone())
            .with_write_ack(ack.clone())
            .with_writes(Arc::new(move |command| {
                let sequencer = sequencer.clone();
                Box::pin(async move { sequencer.write(command).await })
            }))
            .with_read_index({
                let shared = shared.clone();
                Arc::new(move |timeout, covering, lease| {
                    let shared = shared.clone();
                    Box::pin(async move { shared.peer_read_index(covering, lease, timeout).await })
                })
            })
            .with_timestamps({
                // The oracle for gateways (`Timestamps`, docs/sharding.md §3.3); what it
                // hands out is counted for `dolmen_oracle_versions_total`.
                let (shared, handed_out) = (shared.clone(), oracle_versions.clone());
                Arc::new(move |commit_count, want_read| {
                    let (shared, handed_out) = (shared.clone(), handed_out.clone());
                    Box::pin(async move {
                        let grant = shared.grant_versions(commit_count, want_read).await?;
                        let read = u64::from(grant.read_version.is_some());
                        handed_out.fetch_add(u64::from(grant.count) + read, Ordering::Relaxed);
                        Ok(grant)
                    })
                })
            })
            .with_status(Arc::new(move || {
                let this = (node_id, own_admin.as_str());
                let status = status_of(&status_raft, this, &status_stats, election_timeout);
                serde_json::to_string(&status).unwrap_or_default()
            })),
    );
    let incoming: network::IncomingSnapshot = Arc::new(move || incoming.incoming());
    Ok(GroupParts {
        raft,
        shared,
        log,
        snapshots,
        leadership,
        oracle_versions,
        handler,
        incoming,
        tracker,
    })
}

/// openraft's `(election_timeout_min, election_timeout_max)` for Dolmen's `election_timeout`
/// `e` (ms) and heartbeat interval `hb` (ms).
///
/// openraft starts a follower's election `lease + rand[min, max)` after it last heard from the
/// leader, with `lease = max` (the leader lease: no follower votes for another candidate within
/// it, which is what makes lease reads safe). Dolmen's `election_timeout` means what etcd's
/// does, the silence after which a follower campaigns, so the window is `min + max = e`:
/// `min = 2e/5`, `max = 3e/5`, and a follower campaigns between `e` and `1.2 e` after the
/// leader's last message (docs/replication.md, "Failover"). `min` stays above the heartbeat
/// interval (openraft requires it), which only matters for `e` close to `2 hb`.
pub(crate) fn election_window(e: u64, hb: u64) -> (u64, u64) {
    let min = (e * 2 / 5).max(hb + 1);
    let max = (e * 3 / 5).max(min + 1);
    (min, max)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::election_window;

    #[test]
    fn a_follower_campaigns_between_one_and_one_point_two_election_timeouts() {
        // openraft campaigns `max + rand[min, max)` after the last message from the leader.
        let (min, max) = election_window(1000, 200);
        assert_eq!((min, max), (400, 600));
        assert_eq!(
            max + min,
            1000,
            "the earliest election is one election timeout"
        );
        assert_eq!(max + max, 1200);
    }

    #[test]
    fn the_window_stays_above_the_heartbeat_and_non_empty() {
        for (e, hb) in [(401, 200), (500, 100), (3, 1), (100_000, 10)] {
            let (min, max) = election_window(e, hb);
            assert!(
                min > hb,
                "min {min} must exceed the heartbeat {hb} (e = {e})"
            );
            assert!(max > min, "empty window {min}..{max} (e = {e})");
        }
    }
}
