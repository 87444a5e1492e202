//! The node runtime: start-up in a fixed order, background jobs, graceful shutdown.
//!
//! ```text
//!  data dir ─▶ Engine::open ─▶ bind Thrift + admin ─▶ Replicator/ReadGate ─▶ Service
//!     ─▶ "dolmen ready" ─▶ serve until shutdown ─▶ drain connections ─▶ stop writer ─▶ flush
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dolmen_api::{SafeCodecLimits, ServeError};
use dolmen_config::EndpointError;
use dolmen_engine::{Engine, OpenError, StorageError};
use dolmen_raft::oracle::offset_clock;
use dolmen_raft::{
    CoreStopped, Direct, DirectOptions, Formation, NodeAddr, RaftNode, RaftNodeError,
    RaftNodeOptions, ReadConsistency, ReadGate, ReadOptions, ReplicationMode, Replicator,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Bootstrap, Config, ConsistencyLevel, Mode};
use crate::error::ServiceError;
use crate::net_faults::NetworkFaults;
use crate::service::{Service, ServiceOptions};
use crate::shards::{ShardGroup, Shards};

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory cannot be created or written.
    #[error("data directory {path}: {source} (set [database] base_path or --data-dir to a writable directory)")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error("{0} (is another dolmen process using this data directory?)")]
    Open(#[from] OpenError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for the {what}: {source} (is the port in use? choose another with --port/--admin-port)")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration asks for something this build cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// `[sharding]` cannot be served as configured, or does not match the data directory.
    #[error("{0}")]
    Sharding(String),
    /// A bound listener's address could not be read.
    #[error("cannot read a bound address: {0}")]
    LocalAddr(std::io::Error),
    /// `consensus.endpoints[index]` is not `host:port`.
    #[error("consensus.endpoints[{index}]: {source}")]
    Endpoint {
        /// Which endpoint.
        index: usize,
        /// What is wrong with it.
        source: EndpointError,
    },
    /// The standalone writer thread could not be spawned.
    #[error("cannot start the writer thread: {0}")]
    WriterThread(std::io::Error),
    /// The Raft node could not start.
    #[error(transparent)]
    Raft(#[from] RaftNodeError),
    /// The first version could not be written (standalone).
    #[error("cannot write the initial version: {0}")]
    InitialVersion(ServiceError),
    /// A start-up or shutdown step panicked.
    #[error("{step} panicked: {source}")]
    Panicked {
        /// What was running.
        step: &'static str,
        /// The panic, as the task reports it.
        source: tokio::task::JoinError,
    },
    /// The Thrift server failed.
    #[error("the Thrift server failed: {0}")]
    Thrift(#[from] ServeError),
    /// The Raft core stopped on a fatal error while the node was serving.
    #[error(transparent)]
    RaftStopped(#[from] CoreStopped),
    /// The final flush of the memtables failed.
    #[error("final flush failed: {0}")]
    Flush(StorageError),
    /// The `[client_tls]` files cannot be used.
    #[error(transparent)]
    ClientTls(#[from] crate::client_tls::ClientTlsError),
    /// The admin API's operator token could not be read from its file.
    #[error(transparent)]
    AdminToken(#[from] crate::admin::auth::TokenFileError),
    /// A `[tls]` file could not be read.
    #[error("{key} {}: {source}", path.display())]
    TlsFile {
        /// The setting.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl NodeError {
    /// The process exit code for this error (docs/CONTRACTS.md): 2 when the configuration is
    /// at fault (as for a configuration file that does not load), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Raft(e) if e.is_config() => 2,
            Self::Sharding(_) => 2,
            _ => 1,
        }
    }
}

/// Says loudly at start which test-only switches are on (docs/SECURITY.md §4): none belongs on
/// a real cluster.
fn warn_test_switches(faults: &dolmen_config::FaultsConfig) {
    let on = [
        (
            faults.allow_injection,
            "[faults] allow_injection: clients may make requests fail",
        ),
        (
            faults.allow_network_faults,
            "[faults] allow_network_faults: /debug/network-faults may drop and delay peer traffic",
        ),
        (
            faults.unsafe_stale_reads,
            "[faults] unsafe_stale_reads: linearizable reads are served stale (a planted bug)",
        ),
        (
            faults.lose_unsynced_writes,
            "[faults] lose_unsynced_writes: writes not yet fsynced are lost if this process dies",
        ),
        (
            faults.unsafe_skip_log_fsync,
            "[faults] unsafe_skip_log_fsync: the Raft log acknowledges before fsync (a planted bug)",
        ),
        (
            faults.unsafe_skip_conflict_check,
            "[faults] unsafe_skip_conflict_check: commits skip the read-conflict check (a planted bug)",
        ),
        (
            faults.clock_offset_ms != 0,
            "[faults] clock_offset_ms: this node's clock is shifted where it draws versions",
        ),
    ];
    for (_, what) in on.iter().filter(|(on, _)| *on) {
        tracing::warn!("TEST-ONLY SWITCH ON, not for a real cluster: {what}");
    }
}

/// Addresses a started node listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// The Thrift client API.
    pub thrift: SocketAddr,
    /// The admin HTTP API.
    pub admin: SocketAddr,
    /// The Thrift client API over TLS, when `[server] thrift_tls` is on.
    pub thrift_tls: Option<SocketAddr>,
}

/// The client-facing listeners, bound (`[server]`): Thrift, its TLS twin, admin.
struct Listeners {
    thrift: TcpListener,
    /// The TLS listener's established connections, for the Thrift server.
    thrift_tls: Option<tokio::sync::mpsc::Receiver<volo::net::conn::Conn>>,
    admin: crate::admin::AdminListener,
    bound: Bound,
}

/// Binds every client-facing listener on its own address (`thrift_host`, `admin_host`, else
/// `host`) and starts the TLS handshakes of those that speak TLS.
async fn bind_listeners(config: &Config) -> Result<Listeners, NodeError> {
    let server = &config.server;
    let thrift = bind("Thrift client API", server.thrift_bind_host(), server.port).await?;
    let admin = bind(
        "admin HTTP API",
        server.admin_bind_host(),
        server.admin_port,
    )
    .await?;
    let thrift_tls = if server.thrift_tls {
        let (host, port) = (server.thrift_bind_host(), server.thrift_tls_port);
        Some(bind("Thrift client API over TLS", host, port).await?)
    } else {
        None
    };
    let bound = Bound {
        thrift: local_addr(&thrift)?,
        admin: local_addr(&admin)?,
        thrift_tls: thrift_tls.as_ref().map(local_addr).transpose()?,
    };
    let thrift_tls = match thrift_tls {
        Some(listener) => {
            let acceptor = crate::client_tls::acceptor(&config.client_tls, true)?;
            let incoming = crate::client_tls::spawn_handshakes(listener, acceptor, "thrift-tls")
                .map_err(NodeError::LocalAddr)?;
            Some(crate::client_tls::thrift_conns(incoming))
        }
        None => None,
    };
    let admin = if server.admin_tls {
        let acceptor = crate::client_tls::acceptor(&config.client_tls, false)?;
        crate::admin::AdminListener::Tls(
            crate::client_tls::spawn_handshakes(admin, acceptor, "admin-https")
                .map_err(NodeError::LocalAddr)?,
        )
    } else {
        crate::admin::AdminListener::Plain(admin)
    };
    Ok(Listeners {
        thrift,
        thrift_tls,
        admin,
        bound,
    })
}

async fn bind(what: &'static str, host: &str, port: u16) -> Result<TcpListener, NodeError> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(&addr)
        .await
        .map_err(|source| NodeError::Bind { what, addr, source })
}

/// Runs a node until `shutdown` resolves. `on_ready` is called once every listener is bound and
/// the node can serve (the binary prints the readiness line from it).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(Bound),
) -> Result<(), NodeError> {
    let credentials = crate::admin::Credentials::from_config(&config.server)?;
    warn_test_switches(&config.faults);
    let node_id = config.node_id();
    let data_dir = config.data_dir().join(format!("node-{node_id}"));
    std::fs::create_dir_all(&data_dir).map_err(|source| NodeError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let engine_options = crate::engine_options::engine_options(&config, data_dir.join("db"));
    let engine = tokio::task::spawn_blocking(move || Engine::open(&engine_options))
        .await
        .map_err(|source| NodeError::Panicked {
            step: "opening the database",
            source,
        })??;
    let table = crate::sharding::routing_table(&config)?;
    crate::sharding::check_layout(&data_dir, &engine, &config)?;
    let mut engine = engine;
    if table.is_some() {
        // The data groups own every key; group 0 holds the oracle only.
        engine.own_no_data().map_err(NodeError::Flush)?;
    }
    let engine = Arc::new(engine);
    // The disk guard's first sample is taken before the node serves: a node started on a full
    // disk refuses writes from its first request.
    let disk = Arc::new(crate::disk::DiskGuard::new(
        data_dir.clone(),
        crate::disk::DiskLimits::from_config(&config.database),
    ));
    let first = disk.clone();
    tokio::task::spawn_blocking(move || first.refresh())
        .await
        .map_err(|source| NodeError::Panicked {
            step: "measuring the disk",
            source,
        })?;

    let Listeners {
        thrift: thrift_listener,
        thrift_tls,
        admin: admin_listener,
        bound,
    } = bind_listeners(&config).await?;

    let network_faults = config
        .faults
        .allow_network_faults
        .then(|| Arc::new(NetworkFaults::default()));
    let replication = match config.deployment.mode {
        Mode::Standalone => Replication::Direct(Arc::new(
            Direct::start_with_clock(
                engine.clone(),
                DirectOptions {
                    node_id,
                    client_addr: bound.thrift.to_string(),
                    max_batch: config.consensus.max_batch_size.max(1) * 10,
                    max_outstanding: config.consensus.max_outstanding_proposals.max(1),
                },
                offset_clock(config.faults.clock_offset_ms),
            )
            .map_err(NodeError::WriterThread)?,
        )),
        Mode::Replicated => Replication::Raft(Arc::new(
            start_raft(
                &config,
                &engine,
                &data_dir,
                bound,
                network_faults.clone(),
                disk.clone(),
            )
            .await?,
        )),
    };
    let (replicator, gate) = replication.seams();
    let metadata = ShardGroup {
        id: 0,
        engine: engine.clone(),
        replicator,
        gate,
    };
    // The groups that own the keys: the one group, or the data groups of a sharded node.
    let (shards, key_groups) = match (&table, replication.raft()) {
        (Some(table), Some(raft)) => {
            let started = crate::sharding::start_data_groups(&raft, &engine, table).await?;
            let oracle = match started.first() {
                Some(first) => Arc::new(first.group.oracle_gate()) as Arc<dyn ReadGate>,
                None => return Err(NodeError::Sharding("no data group".into())),
            };
            let groups: Vec<ShardGroup> = started
                .iter()
                .map(|s| ShardGroup {
                    id: s.group.id(),
                    engine: s.engine.clone(),
                    replicator: Arc::new(s.group.replicator()),
                    gate: Arc::new(s.group.read_gate()),
                })
                .collect();
            let shards = Shards::routed(table.clone(), groups.clone(), oracle, metadata.clone())
                .map(|s| {
                    let election = config.consensus.election_timeout_ms;
                    let orphan = config.sharding.orphan_timeout_ms(election);
                    s.with_orphan_timeout(Duration::from_millis(orphan))
                        .with_lock_timeout(Duration::from_millis(config.sharding.lock_timeout_ms))
                        .with_every_voter_applying(
                            config.consensus.replication_mode
                                == crate::config::ReplicationMode::All,
                        )
                })
                .map_err(|e| NodeError::Sharding(e.to_string()))?;
            tokio::spawn(crate::sharding::initialize_data_groups(
                raft.clone(),
                initial_members(&config, bound.admin.port()),
            ));
            (shards, groups)
        }
        _ => (Shards::single(metadata.clone()), vec![metadata.clone()]),
    };
    let service = Arc::new(
        Service::sharded(
            shards,
            ServiceOptions {
                future_version_wait: Duration::from_millis(config.mvcc.future_version_wait_ms),
                allow_fault_injection: config.faults.allow_injection,
                max_read_concurrency: config.concurrency.max_read_concurrency as usize,
                max_range_bytes: (config.server.max_range_bytes > 0)
                    .then_some(config.server.max_range_bytes),
            },
        )
        .with_disk_guard(disk.clone()),
    );
    match &replication {
        Replication::Direct(_) => service
            .ensure_initial_version()
            .await
            .map_err(NodeError::InitialVersion)?,
        // The first leader's blank entry is the initial version; bootstrap once, in the
        // background (peers may still be starting).
        Replication::Raft(raft) if !config.consensus.join.is_empty() => {
            let client = join_client(&config, credentials.operator.clone())?;
            tokio::spawn(join(raft.clone(), config.consensus.join.clone(), client));
        }
        Replication::Raft(raft) => match config.consensus.bootstrap {
            Bootstrap::Init => drop(tokio::spawn(bootstrap(raft.clone()))),
            Bootstrap::Auto => drop(tokio::spawn(form(raft.clone()))),
            Bootstrap::Wait => {}
        },
    }

    // One stop signal fans out to every listener and background job.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let windows = crate::jobs::Windows {
        retention: Duration::from_millis(config.mvcc.retention_window_ms),
        idempotency: Duration::from_millis(config.mvcc.idempotency_window_ms),
        interval: Duration::from_millis(config.mvcc.compaction_interval_ms),
    };
    let mut jobs = vec![tokio::spawn(crate::disk::watch(
        disk.clone(),
        stopped(stop_rx.clone()),
    ))];
    // Retention and garbage collection per group that owns keys: each has its own horizon,
    // idempotency table and span.
    for group in &key_groups {
        jobs.push(tokio::spawn(crate::jobs::retention_job(
            group.clone(),
            windows,
            stopped(stop_rx.clone()),
        )));
        jobs.push(tokio::spawn(crate::jobs::gc_job(
            group.engine.clone(),
            Duration::from_millis(config.mvcc.compaction_interval_ms),
            Duration::from_millis(config.mvcc.retention_window_ms),
            stopped(stop_rx.clone()),
        )));
    }
    if service.shards().metadata().is_some() {
        // Locks whose coordinator stopped are resolved even if nobody reads their keys.
        jobs.push(tokio::spawn(crate::cross_shard::sweep_orphans(
            service.clone(),
            stopped(stop_rx.clone()),
        )));
    }
    if let (Some(table), Some(raft)) = (&table, replication.raft()) {
        if config.sharding.place_leaders {
            // Data groups' leaderships to their preferred nodes (docs/sharding.md §4.5).
            let election = Duration::from_millis(config.consensus.election_timeout_ms);
            jobs.push(tokio::spawn(raft.place_leaders(
                crate::sharding::leader_placement(table, election),
                stopped(stop_rx.clone()),
            )));
        }
    }
    let admin = tokio::spawn(crate::admin::serve(
        admin_listener,
        crate::admin::AdminState {
            service: service.clone(),
            engine: engine.clone(),
            raft: replication.raft(),
            network_faults,
            config: Arc::new(config.clone()),
            credentials,
        },
        stopped(stop_rx.clone()),
    ));
    let handoff_limit = Duration::from_millis(config.consensus.election_timeout_ms) * 2;
    let thrift_serving = crate::thrift::serve(
        dolmen_api::ShutdownIncoming::new(thrift_listener, stopped(stop_rx.clone()))
            .with_accepted(thrift_tls),
        service.clone(),
        (!config.server.thrift_auth_token.is_empty())
            .then(|| config.server.thrift_auth_token.clone()),
        codec_limits(&config.server),
        config.server.max_connections,
        hand_off(replication.raft(), handoff_limit),
    );
    let mut thrift = tokio::spawn(thrift_serving);

    tracing::info!(node = node_id, thrift = %bound.thrift, admin = %bound.admin, "node ready");
    on_ready(bound);

    // A fatal Raft error (a storage failure) stops the node: it must not serve from a state it
    // can no longer replicate. A restart recovers from the durable state.
    let raft_stopped = {
        let raft = replication.raft();
        async move {
            match raft {
                Some(raft) => raft.stopped().await,
                None => std::future::pending().await,
            }
        }
    };
    let ended_early = tokio::select! {
        () = shutdown => None,
        res = &mut thrift => Some(res.map(|served| served.map_err(NodeError::Thrift))),
        reason = raft_stopped => Some(Ok(Err(NodeError::RaftStopped(reason)))),
    };
    tracing::info!(node = node_id, "shutting down");
    // A planned stop of the leader hands leadership over first, while this node still serves,
    // so clients see no election (docs/replication.md, "Planned restarts").
    if ended_early.is_none() {
        hand_off(replication.raft(), handoff_limit).await;
    }
    let _ = stop_tx.send(true);
    // Stop accepting, let in-flight requests finish (the Thrift server drains connections).
    let thrift_result = match ended_early {
        // volo's server also listens for SIGTERM/SIGINT/SIGHUP and drains on its own: a clean
        // return is a graceful stop, not a failure.
        Some(Ok(result)) => result,
        Some(Err(source)) => Err(NodeError::Panicked {
            step: "the Thrift server",
            source,
        }),
        None => match thrift.await {
            Ok(served) => served.map_err(NodeError::Thrift),
            Err(source) => Err(NodeError::Panicked {
                step: "the Thrift server",
                source,
            }),
        },
    };
    let _ = admin.await;
    for job in jobs {
        let _ = job.await;
    }
    // Every acknowledged write is already fsynced; stop the writer and flush memtables so the
    // next start does not replay the RocksDB WAL.
    replication.shutdown().await;
    let flush_engine = engine.clone();
    tokio::task::spawn_blocking(move || flush_engine.flush())
        .await
        .map_err(|source| NodeError::Panicked {
            step: "the final flush",
            source,
        })?
        .map_err(NodeError::Flush)?;
    tracing::info!(node = node_id, "stopped");
    thrift_result
}

/// The Thrift codec's limits from `[server]` (`read_timeout_ms = 0`: no bound).
fn codec_limits(server: &dolmen_config::ServerConfig) -> SafeCodecLimits {
    let millis = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
    SafeCodecLimits {
        max_message_bytes: server.max_message_bytes,
        read_timeout: millis(server.read_timeout_ms),
        idle_timeout: millis(server.idle_timeout_ms),
        ..SafeCodecLimits::default()
    }
}

/// Hands leadership to another voter if this node leads (Raft only), at most `limit`.
async fn hand_off(raft: Option<Arc<RaftNode>>, limit: Duration) {
    if let Some(raft) = raft {
        if let Some(to) = raft.hand_off_leadership(limit).await {
            tracing::info!(to, "stopping: leadership handed over");
        }
    }
}

/// The replicator behind the service: standalone or Raft. Only start-up and shutdown differ;
/// the service core sees the same two traits.
enum Replication {
    Direct(Arc<Direct>),
    Raft(Arc<RaftNode>),
}

impl Replication {
    fn seams(&self) -> (Arc<dyn Replicator>, Arc<dyn ReadGate>) {
        match self {
            Replication::Direct(d) => (d.clone(), d.clone()),
            Replication::Raft(r) => (Arc::new(r.replicator()), Arc::new(r.read_gate())),
        }
    }

    fn raft(&self) -> Option<Arc<RaftNode>> {
        match self {
            Replication::Direct(_) => None,
            Replication::Raft(r) => Some(r.clone()),
        }
    }

    async fn shutdown(&self) {
        match self {
            Replication::Direct(d) => d.shutdown(),
            Replication::Raft(r) => r.shutdown().await,
        }
    }
}

/// The configured members of a replicated cluster, by id, as a new cluster's membership names
/// them: client and peer addresses from the lists, and this node's admin address on
/// `admin_port` (the others' are learned later).
pub fn initial_members(config: &Config, admin_port: u16) -> BTreeMap<u64, NodeAddr> {
    let own = config.node_id();
    (0..config.consensus.endpoints.len())
        .map(|i| {
            let id = i as u64;
            let client_addr = config.deployment.replica_endpoints[i].clone();
            let admin_addr = if id == own {
                advertised(&client_addr, admin_port)
            } else {
                String::new()
            };
            let addr = NodeAddr {
                client_addr,
                peer_addr: config.consensus.endpoints[i].clone(),
                admin_addr,
            };
            (id, addr)
        })
        .collect()
}

/// Starts this node's Raft member: the peer listener, storage and openraft.
async fn start_raft(
    config: &Config,
    engine: &Arc<Engine>,
    data_dir: &std::path::Path,
    bound: Bound,
    network_faults: Option<Arc<NetworkFaults>>,
    admission: Arc<dyn dolmen_raft::WriteAdmission>,
) -> Result<RaftNode, NodeError> {
    let node_id = config.node_id();
    let index = usize::try_from(node_id).unwrap_or(usize::MAX);
    let initial_members = initial_members(config, bound.admin.port());
    // A validated config lists this node (instance_id < the lists' length).
    let this = initial_members[&node_id].clone();
    let (_, peer_port) = crate::config::split_endpoint(&config.consensus.endpoints[index])
        .map_err(|source| NodeError::Endpoint { index, source })?;
    let peer_listener = bind("peer (Raft) API", config.server.peer_bind_host(), peer_port).await?;
    let c = &config.consensus;
    let options = RaftNodeOptions {
        node_id,
        this,
        initial_members,
        snapshot_dir: data_dir.join("snapshots"),
        election_timeout: Duration::from_millis(c.election_timeout_ms),
        heartbeat_interval: Duration::from_millis(c.heartbeat_interval_ms),
        snapshot_interval_entries: c.snapshot_interval_entries,
        snapshot_keep_entries: c.snapshot_keep_entries,
        max_batch_entries: c.max_batch_size as u64,
        max_outstanding_proposals: c.max_outstanding_proposals,
        leader_wait: match c.leader_wait_ms {
            0 => Duration::from_millis(c.election_timeout_ms.saturating_mul(2)),
            ms => Duration::from_millis(ms),
        },
        forward_writes: c.forward_writes,
        reads: ReadOptions {
            consistency: match config.reads.consistency_level {
                ConsistencyLevel::Linearizable => ReadConsistency::Linearizable,
                ConsistencyLevel::Lease => ReadConsistency::Lease,
                ConsistencyLevel::Stale => ReadConsistency::Stale,
            },
            allow_stale_reads: config.reads.allow_stale_reads,
            max_staleness: Duration::from_millis(config.reads.max_staleness_ms),
            unsafe_stale_reads: config.faults.unsafe_stale_reads,
        },
        // Unsharded, group 0 holds the data: `replication_mode` governs it.
        replication: replication_mode(
            if config.sharding.is_sharded() {
                c.metadata_replication_mode
            } else {
                c.replication_mode
            },
            c.all_wait_ms,
        ),
        data_replication: replication_mode(c.replication_mode, c.all_wait_ms),
        fingerprint: fingerprint(config),
        faults: network_faults.map(|f| f as Arc<dyn dolmen_raft::network::PeerFaults>),
        tls: peer_tls(&config.tls)?,
        // A leader refuses followers' forwarded writes while its own disk is full.
        admission: Some(admission),
        unsafe_skip_log_fsync: config.faults.unsafe_skip_log_fsync,
        clock_offset_ms: config.faults.clock_offset_ms,
        hibernate_after: Duration::from_millis(config.sharding.hibernate_after_ms),
        oracle_window: Duration::from_millis(c.oracle_window_ms),
    };
    Ok(RaftNode::start(engine.clone(), options, peer_listener).await?)
}

/// The Raft layer's acknowledgement policy for a configured mode.
fn replication_mode(mode: crate::config::ReplicationMode, all_wait_ms: u64) -> ReplicationMode {
    match mode {
        crate::config::ReplicationMode::Quorum => ReplicationMode::Quorum,
        crate::config::ReplicationMode::All => ReplicationMode::All {
            wait: Duration::from_millis(all_wait_ms),
        },
    }
}

/// What every member of a cluster must agree on, compared at bootstrap (docs/replication.md
/// §8.3): the column families, the replication modes when they are not the default (so a
/// `quorum` node's fingerprint stays what older builds send), and the shards when sharded.
fn fingerprint(config: &Config) -> String {
    let cfs = format!("cf={}", config.database.column_families.join(","));
    let c = &config.consensus;
    let mut mode = match c.replication_mode {
        crate::config::ReplicationMode::Quorum => cfs,
        mode => format!("{cfs};replication_mode={mode}"),
    };
    // Sharded: group 0's mode when it differs, and the split points (an unsharded node's
    // fingerprint stays what older builds send).
    let Some(sharding) = config.sharding.fingerprint() else {
        return mode;
    };
    if c.metadata_replication_mode != crate::config::ReplicationMode::Quorum {
        mode = format!(
            "{mode};metadata_replication_mode={}",
            c.metadata_replication_mode
        );
    }
    format!("{mode};sharding={sharding}")
}

/// The peer port's mutual TLS from `[tls]`, or plaintext (with a warning) when it names no
/// files. Also what `dolmen bench --probe oracle` speaks to a node's peer port with.
///
/// # Errors
/// `TlsFile` naming the key whose file cannot be read.
pub fn peer_tls(
    tls: &dolmen_config::TlsConfig,
) -> Result<Option<dolmen_raft::network::PeerTls>, NodeError> {
    if !tls.enabled() {
        tracing::warn!(
            "the peer (Raft) port is plaintext and unauthenticated: anyone who reaches it can \
             vote, append and install snapshots; set [tls] ca_file, cert_file and key_file \
             (docs/SECURITY.md)"
        );
        return Ok(None);
    }
    let read = |key: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| NodeError::TlsFile {
            key,
            path: path.to_owned(),
            source,
        })
    };
    Ok(Some(dolmen_raft::network::PeerTls {
        ca: read("tls.ca_file", &tls.ca_file)?,
        cert: read("tls.cert_file", &tls.cert_file)?,
        key: read("tls.key_file", &tls.key_file)?,
    }))
}

/// `host:port` with the host of `endpoint` (what peers and clients use to reach this node).
fn advertised(endpoint: &str, port: u16) -> String {
    match endpoint.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("127.0.0.1:{port}"),
    }
}

/// Initializes the cluster once (`consensus.bootstrap`), retrying while peers start.
async fn bootstrap(raft: Arc<RaftNode>) {
    for attempt in 1..=30 {
        match raft.init_guarded().await {
            Ok(outcome) => {
                tracing::info!(?outcome, "bootstrap");
                return;
            }
            Err(e) => {
                tracing::warn!(attempt, error = %e, "bootstrap failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tracing::error!("bootstrap gave up after 30 attempts; run `dolmen cluster init`");
}

/// Forms a new cluster from the static member list when that is safe (`bootstrap = "auto"`):
/// tries every second until this node is initialized or some member is, for at most 10
/// minutes.
async fn form(raft: Arc<RaftNode>) {
    const ATTEMPTS: u32 = 600;
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        match raft.form_from_static_list().await {
            Ok(Formation::Initialized) => {
                tracing::info!("formed a new cluster from the configured member list");
                return;
            }
            Ok(Formation::AlreadyInitialized) => return,
            Ok(Formation::HoldsData) => {
                tracing::warn!(
                    "this node holds data but belongs to no cluster, so it will not form a new \
                     one by itself; run `dolmen cluster init` to make it the seed of one, or \
                     add it to a running cluster"
                );
                return;
            }
            Ok(waiting @ Formation::Waiting { .. }) => {
                if last.as_ref() != Some(&waiting) {
                    tracing::info!(
                        ?waiting,
                        "waiting for a majority of members to form the cluster"
                    );
                }
                last = Some(waiting);
            }
            Err(e) => tracing::warn!(attempt, error = %e, "cannot form the cluster"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::error!(
        "no cluster formed in 10 minutes: start a majority of the members, or run `dolmen cluster init`"
    );
}

/// The admin client a joining node calls the members with: its operator token, and HTTPS
/// checked against `[client_tls] ca_file` when that is set.
fn join_client(
    config: &Config,
    token: Option<String>,
) -> Result<dolmen_admin::AdminClient, NodeError> {
    let client = dolmen_admin::AdminClient::new(String::new())
        .with_timeout(Duration::from_secs(120))
        .with_token(token);
    let ca_file = &config.client_tls.ca_file;
    if ca_file.as_os_str().is_empty() {
        return Ok(client);
    }
    let pem = std::fs::read(ca_file).map_err(|source| NodeError::TlsFile {
        key: "client_tls.ca_file",
        path: ca_file.clone(),
        source,
    })?;
    client.with_ca(&pem).map_err(|e| {
        NodeError::ClientTls(crate::client_tls::ClientTlsError::Pem {
            key: "client_tls.ca_file",
            path: ca_file.clone(),
            what: e.to_string(),
        })
    })
}

/// Asks the members at `admins` (admin addresses) to add this node, until it is a voter
/// (`[consensus] join`). Bounded: gives up after 10 minutes with an error in the log.
async fn join(raft: Arc<RaftNode>, admins: Vec<String>, client: dolmen_admin::AdminClient) {
    const ATTEMPTS: u32 = 300;
    let me = raft.this().clone();
    let node = dolmen_admin::AddNode {
        id: raft.node_id(),
        client_addr: me.client_addr,
        peer_addr: me.peer_addr,
        admin_addr: me.admin_addr,
    };
    for attempt in 1..=ATTEMPTS {
        if raft.is_voter() {
            tracing::info!("joined the cluster");
            return;
        }
        for admin in &admins {
            match client.at(admin.as_str()).add_node(&node).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(attempt, admin = %admin, error = %e, "join: not added yet")
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tracing::error!(
        "could not join the cluster through {admins:?}; add this node with `dolmen cluster add-node`"
    );
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, NodeError> {
    listener.local_addr().map_err(NodeError::LocalAddr)
}
