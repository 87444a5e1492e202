//! Node configuration: the TOML schema (docs/WIRE.md §5 plus Dolmen's `[server]`, `[mvcc]`,
//! `[faults]`, `[sharding]`), its defaults, and loading with precedence flags > environment > file > defaults.
//! Everything is validated at load; each error names the key and the file, variable or flag.
//!
//! ```text
//!  file ──parse──▶ toml::Table ─┐
//!  env DOLMEN_* ─────────────────┼─▶ merged Table (+ origin per key) ─serde─▶ Config
//!  Overrides (flags) ────────────┘     (missing keys: serde defaults)          │
//!                         replicated: server.port ◀─ replica_endpoints[id] ◀──┤
//!                                                               validate() ◀──┘
//! ```

mod error;
mod example;
mod legacy;
mod load;
mod sharding;
mod tuning;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use error::{ConfigError, Origin};
pub use legacy::{migrate, ClusterConfig};
pub use load::{Overrides, PASSTHROUGH_ENV};
pub use sharding::{
    ShardingConfig, DEFAULT_LOCK_TIMEOUT_MS, HEX_PREFIX, MAX_SHARDS, MAX_SPLIT_KEY_BYTES,
};
pub use tuning::{
    BloomFilterConfig, CacheConfig, CompactionConfig, CompactionPriority, Compression,
    CompressionConfig, ConcurrencyConfig, LogLevel, LoggingConfig, MemoryConfig, PerformanceConfig,
    SettingNameError, StatisticsLevel,
};
pub use validate::{check_token, split_endpoint, EndpointError, MIN_TOKEN_LEN};

/// The whole node configuration: one struct per TOML section.
///
/// Build it with [`Config::load`] (which validates); [`Config::default`] is the configuration of
/// a standalone node on `127.0.0.1:9090` with data under `./data`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "a table of sections ([deployment], [server], ...)"
)]
pub struct Config {
    /// `[deployment]`: standalone or replicated, and this node's place in the cluster.
    pub deployment: DeploymentConfig,
    /// `[consensus]`: Raft peers and timing (used in replicated mode).
    pub consensus: ConsensusConfig,
    /// `[sharding]`: whether the keyspace is split over data groups, and where
    /// (docs/sharding.md §11). Not sharded by default.
    pub sharding: ShardingConfig,
    /// `[reads]`: which consistency reads get by default.
    pub reads: ReadsConfig,
    /// `[database]`: where the data lives and which column families exist.
    pub database: DatabaseConfig,
    /// `[rocksdb]`: RocksDB tuning.
    pub rocksdb: RocksdbConfig,
    /// `[server]`: listener addresses and connection limits.
    pub server: ServerConfig,
    /// `[mvcc]`: how much version history is kept and how reads wait for versions.
    pub mvcc: MvccConfig,
    /// `[faults]`: whether the `setFaultInjection` RPC is allowed.
    pub faults: FaultsConfig,
    /// `[tls]`: mutual TLS between peers.
    pub tls: TlsConfig,
    /// `[client_tls]`: TLS towards clients and operators.
    pub client_tls: ClientTlsConfig,
    /// `[bloom_filter]`: RocksDB's Bloom filters.
    pub bloom_filter: BloomFilterConfig,
    /// `[compression]`: RocksDB's block compression per level.
    pub compression: CompressionConfig,
    /// `[concurrency]`: how many reads run at once.
    pub concurrency: ConcurrencyConfig,
    /// `[compaction]`: RocksDB's leveled compaction.
    pub compaction: CompactionConfig,
    /// `[cache]`: what RocksDB's block cache holds.
    pub cache: CacheConfig,
    /// `[memory]`: RocksDB's memtable budget.
    pub memory: MemoryConfig,
    /// `[logging]`: log levels and RocksDB's `LOG` files.
    pub logging: LoggingConfig,
    /// `[performance]`: RocksDB's statistics.
    pub performance: PerformanceConfig,
    /// `[cluster]`: the older server's failure-detection timings, read as Raft timings where
    /// `[consensus]` does not set them.
    pub cluster: ClusterConfig,
    /// What loading noticed but accepted (a setting superseded by another, one honoured only in
    /// part): the node logs each line as a warning at start. Not a setting.
    #[serde(skip)]
    pub notices: Vec<String>,
}

/// `[deployment]`: how this node is deployed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [deployment] table")]
pub struct DeploymentConfig {
    /// `mode`: a single node on its own, or a member of a Raft cluster. Default `"standalone"`.
    pub mode: Mode,
    /// `instance_id`: this node's id, and its index into `replica_endpoints` and
    /// `consensus.endpoints` in replicated mode (`--node-id`). Default `0`.
    pub instance_id: u32,
    /// `replica_endpoints`: every node's client (Thrift) address as `host:port`, indexed by
    /// instance id; used to redirect clients to the leader and, in replicated mode, as the
    /// default `server.port`. Default `[]`.
    pub replica_endpoints: Vec<String>,
}

/// Whether the node runs alone or as part of a replicated cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One node, no Raft; versions come from a persistent local counter (`"standalone"`).
    #[default]
    Standalone,
    /// A member of a Raft cluster described by `[deployment]` and `[consensus]` (`"replicated"`).
    Replicated,
}

/// `[consensus]`: the replication protocol and its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [consensus] table")]
pub struct ConsensusConfig {
    /// `algorithm`: the replication protocol; only `"raft"` exists. Default `"raft"`.
    pub algorithm: String,
    /// `endpoints`: every node's peer (gRPC) address as `host:port`, indexed by instance id,
    /// same length as `deployment.replica_endpoints`. Default `[]`.
    pub endpoints: Vec<String>,
    /// `election_timeout_ms`: how long a follower waits without hearing from a leader before
    /// it starts an election; must exceed twice the heartbeat interval. Default `1000`.
    pub election_timeout_ms: u64,
    /// `heartbeat_interval_ms`: how often the leader sends heartbeats. Default `200`.
    pub heartbeat_interval_ms: u64,
    /// `max_batch_size`: most log entries sent in one append request. Default `100`.
    pub max_batch_size: usize,
    /// `max_outstanding_proposals`: most client writes waiting for commit at once; more are
    /// refused rather than queued without bound. Default `1000`.
    pub max_outstanding_proposals: usize,
    /// `bootstrap`: how a new cluster is formed from `endpoints` (docs/replication.md §8.3).
    /// `"auto"` (the key left out): the members form it by themselves once a majority of them
    /// answer and none holds data or belongs to a cluster, as etcd's `initial-cluster` does.
    /// `true`: this node initializes it on its first start unless it or a reachable peer
    /// already is initialized. `false`: never by itself; wait for `dolmen cluster init` or to
    /// be added. A node with `join` set joins instead. Default `"auto"`.
    pub bootstrap: Bootstrap,
    /// `forward_writes`: a follower passes writes to the leader and relays the outcome;
    /// `false` answers `NOT_LEADER` with the leader's address instead. Default `true`.
    pub forward_writes: bool,
    /// `snapshot_interval_entries`: a snapshot of the state is built after this many log
    /// entries, and the log behind it is purged. Default `100000` (etcd's `snapshot-count`).
    pub snapshot_interval_entries: u64,
    /// `snapshot_keep_entries`: log entries kept behind the last snapshot, so a briefly
    /// lagging follower catches up from the log instead of a snapshot. Default `5000`.
    pub snapshot_keep_entries: u64,
    /// `join`: admin addresses (`host:port`) of members of a running cluster. A node that is
    /// not yet a member asks them (the leader among them) to add it, with the addresses of its
    /// own `replica_endpoints`/`endpoints` entries, until it is a voter. Default `[]`.
    pub join: Vec<String>,
    /// `leader_wait_ms`: how long a write or linearizable read waits for a leader that can
    /// take it before failing with `UNAVAILABLE`; `0` = twice `election_timeout_ms`, enough
    /// for one failover. Default `0`.
    pub leader_wait_ms: u64,
    /// `replication_mode`: when a client write is acknowledged (docs/replication.md §7.5).
    /// `"quorum"`: once a majority has it in its log and this node has applied it. `"all"`:
    /// only once every voter of the group has applied it, waiting at most `all_wait_ms`
    /// (then `TIMEOUT` naming the lagging member). Every member must have the same mode.
    /// Default `"quorum"`.
    pub replication_mode: ReplicationMode,
    /// `metadata_replication_mode`: on a sharded cluster, when group 0 (the metadata group)
    /// acknowledges the decision of a commit across ranges, `"quorum"` or `"all"`;
    /// `replication_mode` governs the data groups, whose writes are what clients read. Must
    /// stay `"quorum"` on an unsharded cluster, whose one group follows `replication_mode`.
    /// Default `"quorum"`.
    pub metadata_replication_mode: ReplicationMode,
    /// `all_wait_ms`: under `replication_mode = "all"`, how long the leader waits, after
    /// applying a write, for every voter to apply it; 1 to 600000. Default `2000`.
    pub all_wait_ms: u64,
    /// `oracle_window_ms`: how far ahead of the versions it hands out the leader's oracle
    /// persists its upper bound (one Raft write per window; after a failover the next leader's
    /// versions start up to one window ahead of its clock); 100 to 60000. Default `3000`.
    pub oracle_window_ms: u64,
}

/// When a client write is acknowledged (`consensus.replication_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// Committed on a majority and applied on the answering node (`"quorum"`).
    #[default]
    Quorum,
    /// Applied on every voter of the group, within `all_wait_ms` (`"all"`).
    All,
}

impl ReplicationMode {
    /// The TOML spelling: `"quorum"` or `"all"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationMode::Quorum => "quorum",
            ReplicationMode::All => "all",
        }
    }
}

impl fmt::Display for ReplicationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a new cluster is formed (`consensus.bootstrap`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Bootstrap {
    /// The members form it by themselves when it is safe (`"auto"`, or the key left out).
    #[default]
    Auto,
    /// This node initializes it (`true`).
    Init,
    /// This node never initializes one (`false`).
    Wait,
}

impl Serialize for Bootstrap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Bootstrap::Auto => serializer.serialize_str("auto"),
            Bootstrap::Init => serializer.serialize_bool(true),
            Bootstrap::Wait => serializer.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for Bootstrap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Bootstrap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Bootstrap, E> {
                Ok(if v { Bootstrap::Init } else { Bootstrap::Wait })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bootstrap, E> {
                match v {
                    "auto" => Ok(Bootstrap::Auto),
                    "true" => Ok(Bootstrap::Init),
                    "false" => Ok(Bootstrap::Wait),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        Self {
            algorithm: "raft".to_owned(),
            endpoints: Vec::new(),
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 200,
            max_batch_size: 100,
            max_outstanding_proposals: 1000,
            bootstrap: Bootstrap::Auto,
            forward_writes: true,
            snapshot_interval_entries: 100_000,
            snapshot_keep_entries: 5000,
            join: Vec::new(),
            leader_wait_ms: 0,
            replication_mode: ReplicationMode::Quorum,
            metadata_replication_mode: ReplicationMode::Quorum,
            all_wait_ms: 2000,
            oracle_window_ms: 3000,
        }
    }
}

/// `[reads]`: the default consistency of reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [reads] table")]
pub struct ReadsConfig {
    /// `consistency_level`: how reads are made consistent. Default `"linearizable"`.
    pub consistency_level: ConsistencyLevel,
    /// `allow_stale_reads`: whether a follower may answer from its local state without a read
    /// barrier (bounded by `max_staleness_ms`). Default `false`.
    pub allow_stale_reads: bool,
    /// `max_staleness_ms`: how far behind the leader a stale read may be. Default `1000`.
    pub max_staleness_ms: u64,
}

impl Default for ReadsConfig {
    fn default() -> Self {
        Self {
            consistency_level: ConsistencyLevel::default(),
            allow_stale_reads: false,
            max_staleness_ms: 1000,
        }
    }
}

/// How a read is made consistent with the writes before it. The older server's and the
/// original design's names are read too (docs/configuration.md): `"strong"` and
/// `"read_index"` mean `"linearizable"`, `"leader"` means `"lease"`, `"local"` means `"stale"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsistencyLevel {
    /// A ReadIndex barrier through the leader before every read (`"linearizable"`).
    #[default]
    #[serde(alias = "strong", alias = "read_index")]
    Linearizable,
    /// The leader answers while its lease holds, with no round trip (`"lease"`).
    #[serde(alias = "leader")]
    Lease,
    /// Local applied state, at most `max_staleness_ms` behind (`"stale"`).
    #[serde(alias = "local")]
    Stale,
}

/// `[database]`: the on-disk data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [database] table")]
pub struct DatabaseConfig {
    /// `base_path`: the directory holding this node's RocksDB (`--data-dir`,
    /// `DOLMEN_DATA_DIR`). Default `"./data"`.
    pub base_path: PathBuf,
    /// `column_families`: the user column families clients may name; must include
    /// `"default"` (`--column-families`). Default `["default"]`.
    pub column_families: Vec<String>,
    /// `min_free_disk_mb`: writes are refused (`UNAVAILABLE: disk full: …`) while the
    /// filesystem holding the data directory has less than this many MiB free for this user,
    /// and taken again once it has 5% more; reads go on. The headroom lets writes already in
    /// flight, memtable flushes and compactions finish without RocksDB meeting a full disk.
    /// `0` = no check. Default `1024`.
    pub min_free_disk_mb: u64,
    /// `max_data_size_mb`: a quota on the node's data directory (`<base_path>/node-<id>`:
    /// database, Raft log, snapshots): writes are refused while it holds more than this many
    /// MiB, and taken again once it is 5% below. `0` = no quota. Default `0`.
    pub max_data_size_mb: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            base_path: PathBuf::from("./data"),
            column_families: vec!["default".to_owned()],
            min_free_disk_mb: 1024,
            max_data_size_mb: 0,
        }
    }
}

/// `[rocksdb]`: RocksDB tuning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [rocksdb] table")]
pub struct RocksdbConfig {
    /// `write_buffer_size_mb`: size of one memtable in MiB; all column families together hold
    /// at most twice this in memtables, counted within the block cache. Default `64`.
    pub write_buffer_size_mb: u64,
    /// `max_write_buffer_number`: most memtables per column family. Default `4`.
    pub max_write_buffer_number: u32,
    /// `block_cache_size_mb`: size of the shared block cache in MiB; it holds the memtables'
    /// charge too, so it bounds RocksDB's memory. Default `512`.
    pub block_cache_size_mb: u64,
    /// `block_size_kb`: uncompressed size of one data block in KiB; larger blocks compress
    /// better and cost more per point read. Default `4`.
    pub block_size_kb: u64,
    /// `max_background_jobs`: RocksDB's flush and compaction threads. Default `2`.
    pub max_background_jobs: u32,
    /// `bytes_per_sync`: SST files are synced to disk every this many bytes as they are
    /// written, smoothing I/O; `0` = once at the end. Default `0`.
    pub bytes_per_sync: u64,
    /// `dynamic_level_bytes`: level sizes follow the data size (RocksDB's
    /// `level_compaction_dynamic_level_bytes`). Default `true`.
    pub dynamic_level_bytes: bool,
}

impl Default for RocksdbConfig {
    fn default() -> Self {
        Self {
            write_buffer_size_mb: 64,
            max_write_buffer_number: 4,
            block_cache_size_mb: 512,
            block_size_kb: 4,
            max_background_jobs: 2,
            bytes_per_sync: 0,
            dynamic_level_bytes: true,
        }
    }
}

/// `[server]`: the node's listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [server] table")]
pub struct ServerConfig {
    /// `host`: the address the Thrift, admin and peer listeners bind unless `thrift_host`,
    /// `admin_host` or `peer_host` says otherwise (`--host`, `DOLMEN_HOST`). Default
    /// `"127.0.0.1"`.
    pub host: String,
    /// `thrift_host`: the address the Thrift listeners (plaintext and TLS) bind. Empty =
    /// `host`. Default `""`.
    pub thrift_host: String,
    /// `admin_host`: the address the admin listener binds. Empty = `host`. Default `""`.
    pub admin_host: String,
    /// `peer_host`: the address the peer (Raft) listener binds, so exposing clients does not
    /// expose the peer port. Empty = `host`. Default `""`.
    pub peer_host: String,
    /// `port`: the Thrift client API port, `0` = ephemeral (`--port`, `DOLMEN_PORT`,
    /// `THRIFT_PORT`). Default `9090`; in replicated mode the port of this node's
    /// `replica_endpoints` entry unless set explicitly.
    pub port: u16,
    /// `admin_port`: the admin HTTP port (`/health /ready /metrics /status`), `0` = ephemeral
    /// (`--admin-port`, `DOLMEN_ADMIN_PORT`). Default `9190`; in replicated mode the Thrift
    /// port + 100 unless set explicitly (the next step of 100 if an endpoint uses that port).
    pub admin_port: u16,
    /// `thrift_tls`: a second Thrift listener, on `thrift_tls_port`, that speaks TLS with
    /// `[client_tls]`'s certificate, beside the plaintext one. Default `false`.
    pub thrift_tls: bool,
    /// `thrift_tls_port`: the Thrift TLS listener's port, `0` = ephemeral. Default `9093`.
    pub thrift_tls_port: u16,
    /// `admin_tls`: the admin port speaks HTTPS with `[client_tls]`'s certificate. Default
    /// `false`.
    pub admin_tls: bool,
    /// `thrift_auth_token`: when set, the Thrift requests that carry an `auth_token` field
    /// (`getClusterHealth`, `getDatabaseStats`, `getNodeInfo`) must carry this one. At least 16
    /// characters. Empty = not checked. Default `""`.
    pub thrift_auth_token: String,
    /// `max_connections`: most client connections served at once. Default `4096`.
    pub max_connections: usize,
    /// `max_message_bytes`: largest Thrift message accepted; a larger one is a protocol error
    /// and closes the connection. Between 1 MiB and 256 MiB. Default `16777216` (16 MiB).
    pub max_message_bytes: usize,
    /// `read_timeout_ms`: a request must arrive whole within this long of its first byte, or
    /// the connection is closed. `0` = no bound. Default `30000`.
    pub read_timeout_ms: u64,
    /// `idle_timeout_ms`: a client connection on which no request starts for this long is
    /// closed, so clients that never close theirs cannot fill `max_connections`. `0` = never.
    /// Default `3600000` (an hour: long enough for pools that sit idle between bursts; clients
    /// must reconnect after it, as after any server restart).
    pub idle_timeout_ms: u64,
    /// `max_range_bytes`: most key and value bytes in one `getRange` answer (the first pair
    /// always goes in); a page cut by it says `has_more`, and the client reads on from its last
    /// key. `0` = no bound. Default `8388608` (8 MiB: stock clients' frame limits are 16 MB).
    pub max_range_bytes: usize,
    /// `admin_token`: the operator credential of the admin API (`Authorization: Bearer`): every
    /// request that changes state, and `GET /backup`, must carry it. Empty = none: membership
    /// and snapshot requests stay open (a warning is logged at start) and data writes from the
    /// console are refused. At least 16 characters. Default `""` (docs/console.md §2).
    pub admin_token: String,
    /// `admin_token_file`: a file holding `admin_token` (its first line), instead of the
    /// setting. Default `""` (none).
    pub admin_token_file: PathBuf,
    /// `admin_view_token`: a credential that opens the admin endpoints that reveal state
    /// (`/status`, `/metrics`, the console's data); the operator token opens them too. Empty =
    /// they are open. Default `""`.
    pub admin_view_token: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            thrift_host: String::new(),
            admin_host: String::new(),
            peer_host: String::new(),
            port: 9090,
            admin_port: 9190,
            thrift_tls: false,
            thrift_tls_port: 9093,
            admin_tls: false,
            thrift_auth_token: String::new(),
            max_connections: 4096,
            max_message_bytes: 16 * 1024 * 1024,
            read_timeout_ms: 30_000,
            idle_timeout_ms: 3_600_000,
            max_range_bytes: 8 * 1024 * 1024,
            admin_token: String::new(),
            admin_token_file: PathBuf::new(),
            admin_view_token: String::new(),
        }
    }
}

/// `[mvcc]`: version history and version waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [mvcc] table")]
pub struct MvccConfig {
    /// `retention_window_ms`: how long MVCC history is kept; reads older than this get
    /// `TRANSACTION_TOO_OLD`. Default `5000`.
    pub retention_window_ms: u64,
    /// `compaction_interval_ms`: how often the leader advances the retention horizon (a
    /// `Compact` command). Default `1000`.
    pub compaction_interval_ms: u64,
    /// `future_version_wait_ms`: how long a read at a version not yet applied waits before
    /// answering `FUTURE_VERSION`; `0` answers at once. Default `1000`.
    pub future_version_wait_ms: u64,
    /// `idempotency_window_ms`: how long the idempotency table remembers a client's latest
    /// commit (a retry within it gets the first outcome); the leader then expires the entry
    /// through the log. At least `retention_window_ms`. Default `3600000` (1 hour).
    pub idempotency_window_ms: u64,
}

impl Default for MvccConfig {
    fn default() -> Self {
        Self {
            retention_window_ms: 5000,
            compaction_interval_ms: 1000,
            future_version_wait_ms: 1000,
            idempotency_window_ms: 3_600_000,
        }
    }
}

/// `[tls]`: mutual TLS on the peer port (docs/SECURITY.md §1). All three files set: peers speak
/// TLS, each presents its certificate, and a peer whose certificate the cluster CA did not sign
/// is refused at the handshake. None set: plaintext, with a warning at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [tls] table")]
pub struct TlsConfig {
    /// `ca_file`: the cluster CA's certificate (PEM), which signs every member's.
    pub ca_file: PathBuf,
    /// `cert_file`: this node's certificate (PEM), naming `dolmen-peer`.
    pub cert_file: PathBuf,
    /// `key_file`: its private key (PEM).
    pub key_file: PathBuf,
}

impl TlsConfig {
    /// Whether mutual TLS is configured (all three files).
    pub fn enabled(&self) -> bool {
        !self.ca_file.as_os_str().is_empty()
    }
}

impl ServerConfig {
    /// The address the Thrift listeners bind.
    pub fn thrift_bind_host(&self) -> &str {
        or_host(&self.thrift_host, &self.host)
    }

    /// The address the admin listener binds.
    pub fn admin_bind_host(&self) -> &str {
        or_host(&self.admin_host, &self.host)
    }

    /// The address the peer listener binds.
    pub fn peer_bind_host(&self) -> &str {
        or_host(&self.peer_host, &self.host)
    }
}

fn or_host<'a>(specific: &'a str, host: &'a str) -> &'a str {
    if specific.is_empty() {
        host
    } else {
        specific
    }
}

/// `[client_tls]`: TLS towards clients and operators (docs/SECURITY.md §1.2): the certificate of
/// the Thrift TLS listener (`server.thrift_tls`) and of the admin port
/// (`server.admin_tls`), and the CAs this node trusts on that side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [client_tls] table")]
pub struct ClientTlsConfig {
    /// `cert_file`: the certificate chain clients see (PEM), naming the host they dial.
    pub cert_file: PathBuf,
    /// `key_file`: its private key (PEM).
    pub key_file: PathBuf,
    /// `client_ca_file`: when set, the Thrift TLS listener requires a client certificate
    /// this CA signed (PEM). Empty = any client may connect (server-only TLS).
    pub client_ca_file: PathBuf,
    /// `ca_file`: the CA (PEM) this node checks other members' admin certificates against when
    /// it calls their admin API over HTTPS (`[consensus] join`). Empty = the system's roots are
    /// not used: joins over HTTPS need it.
    pub ca_file: PathBuf,
}

impl ClientTlsConfig {
    /// Whether a certificate and key are configured.
    pub fn has_certificate(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }
}

/// `[faults]`: test-only fault injection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [faults] table")]
pub struct FaultsConfig {
    /// `allow_injection`: whether `setFaultInjection` may install faults; it refuses otherwise
    /// (`--allow-fault-injection`). Default `false`.
    pub allow_injection: bool,
    /// `allow_network_faults`: whether the admin API may install network fault rules on the
    /// peer calls this node sends (`/debug/network-faults`: drop, delay, duplicate), for the
    /// fault-injection suite. Default `false`.
    pub allow_network_faults: bool,
    /// `unsafe_stale_reads`: a planted bug for the fault-injection suite's self-test: followers
    /// answer `linearizable` reads from local state without asking the leader, so they can
    /// serve stale values. Never set it on a real cluster. Default `false`.
    pub unsafe_stale_reads: bool,
    /// `lose_unsynced_writes`: the fault-injection suite's power cut: RocksDB keeps its WAL
    /// writes in process memory until the next fsync, so a killed process loses exactly what
    /// was never fsynced, as a machine losing power would. Slower; tests only. Default `false`.
    pub lose_unsynced_writes: bool,
    /// `unsafe_skip_log_fsync`: a planted bug for the fault-injection suite's self-test: the
    /// Raft log store acknowledges appends and votes without waiting for their fsync (it
    /// fsyncs lazily, every few seconds), so with `lose_unsynced_writes` a crash of every node
    /// loses acknowledged writes. Never set it on a real cluster. Default `false`.
    pub unsafe_skip_log_fsync: bool,
    /// `unsafe_skip_conflict_check`: a planted bug for the fault-injection suite's self-test:
    /// the engine's resolver skips the read-conflict check of commits, so a commit whose reads
    /// were overwritten after its read version still writes (lost updates, write skew: not
    /// serializable). Never set it on a real cluster. Default `false`.
    pub unsafe_skip_conflict_check: bool,
    /// `unsafe_skip_conflict_check_group`: with `unsafe_skip_conflict_check` on a sharded
    /// node, only data group N skips the check (the planted bug on one shard); 0, the
    /// default, means every group.
    pub unsafe_skip_conflict_check_group: u64,
    /// `clock_offset_ms`: added to this node's clock wherever it draws versions (the standalone
    /// writer, a Raft leader's oracle), so a test can step a node's clock back or forward by
    /// restarting it with another offset. Versions must never go back whatever it is
    /// (docs/sharding.md §3.2). At most one day either way. Default `0`.
    pub clock_offset_ms: i64,
}

/// The largest `[faults] clock_offset_ms` either way: one day.
pub const MAX_CLOCK_OFFSET_MS: i64 = 86_400_000;

impl Config {
    /// Loads the configuration: defaults, then the TOML file at `path` (if any), then `env`
    /// (the binary passes `std::env::vars()`), then `overrides` (the command-line flags); then
    /// fills the replicated-mode port default and [validates](Config::validate).
    ///
    /// [`Overrides`] lists the flags. Environment variables, applied in this order (a later
    /// one wins):
    /// 1. `THRIFT_PORT` sets `server.port` (the original server's variable);
    /// 2. `DOLMEN_<SECTION>__<KEY>=<value>` sets any key, e.g.
    ///    `DOLMEN_READS__CONSISTENCY_LEVEL=stale`. The value is read as a TOML value (`200`,
    ///    `true`, `["default","users"]`, `"x"`), falling back to the raw text; for a string key
    ///    the raw text always works, and for a list key `a,b` means `["a","b"]`;
    /// 3. `DOLMEN_HOST` (`server.host`), `DOLMEN_PORT` (`server.port`), `DOLMEN_ADMIN_PORT`
    ///    (`server.admin_port`), `DOLMEN_DATA_DIR` (`database.base_path`).
    ///
    /// [`PASSTHROUGH_ENV`] (`DOLMEN_CONFIG`, `DOLMEN_LOG`) are skipped; any other `DOLMEN_*`
    /// variable is an error, so a typo is caught. Variables without the prefix are ignored.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key and where its bad value came from: `Io`/`Parse` for the
    /// file, `UnknownKey` for a key (in the file or as a variable) that does not exist, `Env`
    /// for a variable that is not a Dolmen setting or has the wrong type, `Invalid` for a value
    /// that breaks a rule.
    pub fn load(
        path: Option<&Path>,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        load::load(path, env, overrides)
    }

    /// The directory holding this node's data (`database.base_path`).
    pub fn data_dir(&self) -> PathBuf {
        self.database.base_path.clone()
    }

    /// This node's id (`deployment.instance_id`), as Raft names nodes.
    pub fn node_id(&self) -> u64 {
        u64::from(self.deployment.instance_id)
    }

    /// A complete example configuration, every key at its default with a comment (`port`
    /// commented out so the replicated-mode default applies); shipped as `dolmen.example.toml`.
    /// [`Config::load`] of it gives [`Config::default`].
    pub fn example_toml() -> &'static str {
        example::EXAMPLE_TOML
    }
}

impl Mode {
    /// The TOML spelling: `"standalone"` or `"replicated"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Replicated => "replicated",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of an enum's TOML spellings ([`Mode`], [`ConsistencyLevel`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}`, expected {expected}")]
pub struct UnknownName {
    /// What was being named: `mode` or `consistency level`.
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// The accepted spellings, for the message.
    pub expected: &'static str,
}

impl FromStr for Mode {
    type Err = UnknownName;

    /// Parses the TOML spelling (for `--mode`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standalone" => Ok(Mode::Standalone),
            "replicated" => Ok(Mode::Replicated),
            other => Err(UnknownName {
                what: "mode",
                name: other.to_owned(),
                expected: "`standalone` or `replicated`",
            }),
        }
    }
}

impl ConsistencyLevel {
    /// The TOML spelling: `"linearizable"`, `"lease"` or `"stale"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsistencyLevel::Linearizable => "linearizable",
            ConsistencyLevel::Lease => "lease",
            ConsistencyLevel::Stale => "stale",
        }
    }
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConsistencyLevel {
    type Err = UnknownName;

    /// Parses the TOML spelling.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linearizable" | "strong" | "read_index" => Ok(ConsistencyLevel::Linearizable),
            "lease" | "leader" => Ok(ConsistencyLevel::Lease),
            "stale" | "local" => Ok(ConsistencyLevel::Stale),
            other => Err(UnknownName {
                what: "consistency level",
                name: other.to_owned(),
                expected: "`linearizable`, `lease` or `stale` (or the older names `strong`, \
                           `read_index`, `leader`, `local`)",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let c = Config::default();
        assert_eq!(c.deployment.mode, Mode::Standalone);
        assert_eq!(c.deployment.instance_id, 0);
        assert!(c.deployment.replica_endpoints.is_empty());
        assert_eq!(c.consensus.algorithm, "raft");
        assert!(c.consensus.endpoints.is_empty());
        assert_eq!(c.consensus.election_timeout_ms, 1000);
        assert_eq!(c.consensus.heartbeat_interval_ms, 200);
        assert_eq!(c.consensus.max_batch_size, 100);
        assert_eq!(c.consensus.max_outstanding_proposals, 1000);
        assert_eq!(c.consensus.replication_mode, ReplicationMode::Quorum);
        assert_eq!(c.consensus.all_wait_ms, 2000);
        assert_eq!(c.reads.consistency_level, ConsistencyLevel::Linearizable);
        assert!(!c.reads.allow_stale_reads);
        assert_eq!(c.reads.max_staleness_ms, 1000);
        assert_eq!(c.database.base_path, PathBuf::from("./data"));
        assert_eq!(c.database.column_families, vec!["default".to_owned()]);
        assert_eq!(c.rocksdb.write_buffer_size_mb, 64);
        assert_eq!(c.rocksdb.max_write_buffer_number, 4);
        assert_eq!(c.rocksdb.block_cache_size_mb, 512);
        assert_eq!(c.server.host, "127.0.0.1");
        assert_eq!(c.server.port, 9090);
        assert_eq!(c.server.admin_port, 9190);
        assert_eq!(c.server.max_connections, 4096);
        assert_eq!(c.server.max_message_bytes, 16_777_216);
        assert_eq!(c.mvcc.retention_window_ms, 5000);
        assert_eq!(c.mvcc.compaction_interval_ms, 1000);
        assert_eq!(c.mvcc.future_version_wait_ms, 1000);
        assert_eq!(c.mvcc.idempotency_window_ms, 3_600_000);
        assert!(!c.faults.allow_injection);
        assert_eq!(c.sharding.shards, 0);
        assert!(c.sharding.split_keys.is_empty());
        assert_eq!(c.sharding.data_groups(), 0);
        assert_eq!(c.data_dir(), PathBuf::from("./data"));
        assert_eq!(c.node_id(), 0);
        c.validate().unwrap();
    }

    #[test]
    fn an_empty_table_deserializes_to_the_defaults() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c, Config::default());
        let c: Config = toml::from_str("[reads]\n[server]\n").unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn enums_use_their_toml_spelling() {
        for mode in [Mode::Standalone, Mode::Replicated] {
            assert_eq!(mode.as_str().parse::<Mode>().unwrap(), mode);
            assert_eq!(mode.to_string(), mode.as_str());
        }
        for level in [
            ConsistencyLevel::Linearizable,
            ConsistencyLevel::Lease,
            ConsistencyLevel::Stale,
        ] {
            assert_eq!(level.as_str().parse::<ConsistencyLevel>().unwrap(), level);
            let r: ReadsConfig =
                toml::from_str(&format!("consistency_level = \"{level}\"")).unwrap();
            assert_eq!(r.consistency_level, level);
        }
        assert!("Replicated".parse::<Mode>().is_err());
        assert!("eventual".parse::<ConsistencyLevel>().is_err());
        // The older server's and the original design's names.
        for (old, level) in [
            ("strong", ConsistencyLevel::Linearizable),
            ("read_index", ConsistencyLevel::Linearizable),
            ("leader", ConsistencyLevel::Lease),
            ("local", ConsistencyLevel::Stale),
        ] {
            assert_eq!(old.parse::<ConsistencyLevel>().unwrap(), level);
            let r: ReadsConfig = toml::from_str(&format!("consistency_level = \"{old}\"")).unwrap();
            assert_eq!(r.consistency_level, level);
        }
    }
}
