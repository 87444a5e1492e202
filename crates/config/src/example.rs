//! The example configuration shipped as `dolmen.example.toml`: every key, at its default,
//! with a comment saying what it does and how to override it (`server.port` commented out, so
//! the replicated default applies). Tests keep it in step with the schema.

/// See [`Config::example_toml`](super::Config::example_toml).
pub(super) const EXAMPLE_TOML: &str = r#"# Dolmen node configuration (dolmen.example.toml).
#
# Every key is shown at its default; delete what you do not change. Unknown keys are an error.
# Precedence: command-line flags > environment > this file > defaults.
# Any key can be set from the environment as DOLMEN_<SECTION>__<KEY>=<toml value>,
# e.g. DOLMEN_READS__CONSISTENCY_LEVEL=stale or DOLMEN_DATABASE__COLUMN_FAMILIES=default,users.
# Start a node with: dolmen serve --config dolmen.toml

[deployment]
# "standalone": one node, no replication. "replicated": a member of a Raft cluster
# (then replica_endpoints and consensus.endpoints are required).   Flag: --mode
mode = "standalone"
# This node's id: its index into replica_endpoints and consensus.endpoints.   Flag: --node-id
instance_id = 0
# Every node's client (Thrift) address, host:port, in instance_id order. Clients are sent to
# the leader's entry. In replicated mode server.port defaults to this node's entry's port.
replica_endpoints = []
# replica_endpoints = ["127.0.0.1:9090", "127.0.0.1:9091", "127.0.0.1:9092"]

[consensus]
# The replication protocol; "raft" is the only one.
algorithm = "raft"
# Every node's peer (gRPC) address, host:port, same order and length as replica_endpoints.
endpoints = []
# endpoints = ["127.0.0.1:7090", "127.0.0.1:7091", "127.0.0.1:7092"]
# A follower that hears no leader for this long starts an election.
# Must be more than twice heartbeat_interval_ms.
election_timeout_ms = 1000
# How often the leader sends heartbeats.
heartbeat_interval_ms = 200
# Most log entries in one append request to a follower.
max_batch_size = 100
# Most client writes waiting for commit at once; more are refused, not queued.
max_outstanding_proposals = 1000
# How a new cluster forms from the lists above. "auto": the members form it by themselves
# once a majority of them answer and none holds data or belongs to a cluster (as etcd's
# initial-cluster). true: this node initializes it on first start (one node only). false:
# never by itself; run `dolmen cluster init` once, or add the node to a running cluster.
# A node that is, or sees a peer that is, already initialized never initializes again.
bootstrap = "auto"
# Followers pass writes to the leader and relay the outcome; false answers NOT_LEADER instead.
forward_writes = true
# Build a snapshot and purge the log behind it every this many log entries.
snapshot_interval_entries = 100000
# Log entries kept behind the last snapshot for briefly lagging followers.
snapshot_keep_entries = 5000
# Admin addresses (host:port) of members of a running cluster: a node that is not yet a
# member asks the leader among them to add it (learner, then voter). For growing a cluster.
join = []
# How long a write or linearizable read waits for a leader before UNAVAILABLE, in
# milliseconds; 0 = twice election_timeout_ms (enough for one failover).
leader_wait_ms = 0
# When a client write is acknowledged. "quorum": once a majority holds it and the answering
# node has applied it. "all": only once every voter has applied it (a stale read on any
# member then sees it), waiting at most all_wait_ms; past that the write answers TIMEOUT
# naming the lagging member (it is committed and will apply there). Every member must use
# the same mode, and under "all" every voter must be listed in endpoints.
replication_mode = "quorum"
# Sharded clusters: when group 0, the metadata group, acknowledges the decision of a commit
# across ranges ("quorum" or "all"); replication_mode governs the data groups. Must stay
# "quorum" on an unsharded cluster.
metadata_replication_mode = "quorum"
# Under replication_mode = "all": how long the leader waits for every voter to apply a
# write, in milliseconds; 1 to 600000.
all_wait_ms = 2000
# How far ahead of the versions it hands out the leader's version oracle persists its upper
# bound, in milliseconds (one Raft write per window; after a failover the new leader's versions
# start up to one window ahead of its clock); 100 to 60000.
oracle_window_ms = 3000

[sharding]
# Every member of a cluster must have the same [sharding]; replicated mode only.
# Data groups the keyspace is split into at bootstrap. 0 = not sharded: one Raft group holds
# the version oracle and all data. n (1 to 1024) = group 0 holds only metadata and n data
# groups own the keyspace, split evenly on the first two key bytes (ASCII keys crowd into a
# few of those ranges: prefer split_keys). Sharding is being built in slices: a commit whose
# keys span ranges is refused until cross-shard transactions exist.
# Env: DOLMEN_SHARDING__SHARDS
shards = 0
# Explicit split points instead of shards: n keys make n + 1 data groups (at most 1023
# keys). UTF-8 text is taken as its bytes; "hex:" and two hex digits per byte for any bytes.
# Each 1 to 10000 bytes, strictly increasing as bytes.
# Env: DOLMEN_SHARDING__SPLIT_KEYS='["user/m", "hex:c0ff"]'
split_keys = []
# A data group idle this long turns its heartbeat and election timers off; one beat per peer
# keeps the nodes in touch, and any activity wakes the group. 0 = never; else at least 1000.
hibernate_after_ms = 10000
# A commit across ranges still undecided this long after it prepared is an orphan's (its
# coordinator stopped): readers and each range's leader abort it through the metadata group.
# 0 = twice consensus.election_timeout_ms, at least 3000; else at least twice that timeout.
orphan_timeout_ms = 0
# How long a read waits for the locks of commits across ranges over what it reads before it
# answers UNAVAILABLE naming the key and the transaction, in milliseconds; 100 to 600000.
lock_timeout_ms = 10000
# Each data group's leader hands the leadership to the group's preferred node (data group g:
# node (g - 1) mod N) once that node is healthy and caught up, so leaderships spread over the
# nodes after bootstrap and return to a node that comes back. false = leave them be.
place_leaders = true
# split_keys = ["user/g", "user/n", "user/t"]

[reads]
# "linearizable" (a ReadIndex barrier through the leader), "lease" (the leader answers while
# its lease holds), or "stale" (local applied state, at most max_staleness_ms behind).
# On a sharded cluster "lease" also lets group 0's leader confirm oracle grants, and each data
# group's leader the read barriers at a version, by its lease instead of a ReadIndex round each
# (the same bounded clock-drift assumption).
# The older names are read too: "strong" and "read_index" = "linearizable",
# "leader" = "lease", "local" = "stale".
consistency_level = "linearizable"
# Whether a follower may answer reads from local state without a barrier.
allow_stale_reads = false
# How far behind the leader a stale read may be, in milliseconds. Must be > 0.
max_staleness_ms = 1000

[database]
# Directory holding this node's RocksDB.   Flag: --data-dir   Env: DOLMEN_DATA_DIR
base_path = "./data"
# The column families clients may name; must include "default". Names are 1-255 bytes of
# printable ASCII without spaces.   Flag: --column-families a,b,...
column_families = ["default"]
# Writes are refused (UNAVAILABLE: "disk full: ...") while the filesystem holding the data
# directory has less than this many MiB free, and taken again 5% above it; reads go on and
# GET /ready answers 503. The headroom lets writes in flight, flushes and compactions finish.
# 0 = no check.
min_free_disk_mb = 1024
# A quota on the node's data directory (database, Raft log, snapshots), MiB: writes are
# refused while it is larger, and taken again 5% below it. 0 = no quota.
max_data_size_mb = 0

[rocksdb]
# Size of one memtable, MiB; all column families together stay under
# memory.write_buffer_manager_limit_mb (twice this by default), counted within the block cache.
write_buffer_size_mb = 64
# Most memtables per column family.
max_write_buffer_number = 4
# Size of the shared block cache, MiB. It holds the memtables' charge too, so it bounds
# RocksDB's memory: a node's RSS stays near this plus ~160 MiB (docs/PERFORMANCE.md).
block_cache_size_mb = 512
# Uncompressed size of one data block, KiB: larger compresses better, costs more per read.
block_size_kb = 4
# RocksDB's flush and compaction threads.
max_background_jobs = 2
# Sync SST files every this many bytes as they are written (smoother I/O); 0 = at the end.
bytes_per_sync = 0
# Level sizes follow the data size (RocksDB's level_compaction_dynamic_level_bytes).
dynamic_level_bytes = true

[server]
# Address the Thrift, admin and peer listeners bind; "0.0.0.0" for every interface.
# Flag: --host   Env: DOLMEN_HOST
host = "127.0.0.1"
# Per-listener bind addresses, each empty = host: expose clients without exposing the peer
# or admin port (for example thrift_host = "0.0.0.0", peer_host = "10.0.0.5").
thrift_host = ""
admin_host = ""
peer_host = ""
# Thrift client API port; 0 = any free port (the "dolmen ready" line says which).
# Default 9090; in replicated mode, the port of this node's replica_endpoints entry.
# Left commented so that default applies.   Flag: --port   Env: DOLMEN_PORT, THRIFT_PORT
# port = 9090
# Admin HTTP port (/health /ready /metrics /status); 0 = any free port. In replicated mode,
# unless set, the Thrift port + 100 (the next step of 100 if an endpoint uses it).
# Left commented so that default applies.
# Flag: --admin-port   Env: DOLMEN_ADMIN_PORT
# admin_port = 9190
# A second Thrift listener speaking TLS with [client_tls]'s certificate (stock Thrift SSL
# sockets), beside the plaintext one, on thrift_tls_port (0 = any free port).
thrift_tls = false
thrift_tls_port = 9093
# The admin port speaks HTTPS with [client_tls]'s certificate.
admin_tls = false
# When set (16 characters or more), getClusterHealth, getDatabaseStats and getNodeInfo must
# carry it in their auth_token field; the other methods carry no such field.
thrift_auth_token = ""
# Most client connections served at once.
max_connections = 4096
# Largest Thrift message accepted (1 MiB to 256 MiB); a larger one closes the connection.
max_message_bytes = 16777216
# A request must arrive whole within this long of its first byte, or the connection is
# closed; 0 = no bound.
read_timeout_ms = 30000
# A client connection on which no request starts for this long is closed (clients that
# never close theirs then cannot fill max_connections); 0 = never.
idle_timeout_ms = 3600000
# Most key and value bytes in one range answer; a page cut by it says has_more and the client
# reads on from its last key. 0 = no bound.
max_range_bytes = 8388608
# The admin API's operator credential (Authorization: Bearer <token>), at least 16
# characters: membership changes, snapshots, backups and the console's data writes need it.
# Empty = none: the node warns at start, and the console cannot write. Or name a file
# holding it.   Env: DOLMEN_SERVER__ADMIN_TOKEN
admin_token = ""
admin_token_file = ""
# A credential for the admin endpoints that reveal state (/status, /metrics, the console's
# data); empty = those are open.
admin_view_token = ""

[mvcc]
# How long MVCC history is kept; older read versions get TRANSACTION_TOO_OLD.
retention_window_ms = 5000
# How often the leader advances the retention horizon.
compaction_interval_ms = 1000
# How long a read at a version not yet applied waits before FUTURE_VERSION (0 = no wait).
future_version_wait_ms = 1000
# How long a client's latest commit is remembered for its retries (idempotency tokens); then
# the leader expires it through the log. At least retention_window_ms.
idempotency_window_ms = 3600000

[faults]
# Whether the setFaultInjection RPC may install faults (for tests only).
# Flag: --allow-fault-injection
allow_injection = false
# Whether the admin API may drop, delay or duplicate this node's peer calls
# (/debug/network-faults; the fault-injection suite only).
allow_network_faults = false
# A planted bug for the fault-injection suite's self-test: followers serve linearizable reads
# from local state. Never on a real cluster.
unsafe_stale_reads = false
# The fault-injection suite's power cut: writes never fsynced stay in process memory, so a
# killed node loses them. Tests only.
lose_unsynced_writes = false
# A planted bug for the fault-injection suite's self-test: the Raft log acknowledges writes
# before they are fsynced. Never on a real cluster.
unsafe_skip_log_fsync = false
# A planted bug for the fault-injection suite's self-test: commits skip the read-conflict
# check, so transactions are no longer serializable. Never on a real cluster.
unsafe_skip_conflict_check = false
# With unsafe_skip_conflict_check on a sharded node: only this data group skips the check
# (the planted bug on one shard); 0 = every group.
unsafe_skip_conflict_check_group = 0
# Milliseconds added to this node's clock where it draws versions, to test clock steps
# (versions never go back). Tests only.
clock_offset_ms = 0

[tls]
# Mutual TLS on the peer (Raft) port: the cluster CA's certificate and this node's certificate
# (naming dolmen-peer) and key, PEM. All three set: a peer without a certificate the CA signed
# is refused at the handshake. None set: plaintext, with a warning at start.
ca_file = ""
cert_file = ""
key_file = ""

[client_tls]
# The certificate (chain) and key, PEM, of the Thrift TLS listener and of the admin port's
# HTTPS; both or neither.
cert_file = ""
key_file = ""
# When set, the Thrift TLS listener requires a client certificate this CA signed.
client_ca_file = ""
# The CA this node checks other members' admin certificates against when it joins over HTTPS.
ca_file = ""

# RocksDB tuning: each key sets the RocksDB option it is named after (docs/configuration.md).
[bloom_filter]
# Build a whole-key Bloom filter into every SST file.
enabled = false
# Filter bits per key (10 = about 1% false positives).
bits_per_key = 10.0

[compression]
# Block compression of level 0, of levels 1 and up, and of the bottom level (most data):
# "none", "lz4", "lz4hc" or "zstd".
l0_compression = "lz4"
l1_compression = "lz4"
bottom_compression = "lz4"

[concurrency]
# Most reads (get, snapshotGet, range reads) reading the engine at once; more wait their
# turn. 0 = no bound.
max_read_concurrency = 0

[compaction]
# Which file a compaction picks first: "by_compensated_size", "oldest_largest_seq_first",
# "oldest_smallest_seq_first", "min_overlapping_ratio" or "round_robin".
compaction_priority = "min_overlapping_ratio"
# SST file size at level 1, MiB, and its growth per level.
target_file_size_base_mb = 64
target_file_size_multiplier = 1
# Total size of level 1, MiB, and its growth per level.
max_bytes_for_level_base_mb = 256
max_bytes_for_level_multiplier = 10.0

[cache]
# Index and filter blocks live in the block cache (its size bounds them).
cache_index_and_filter_blocks = true
# Level-0 index and filter blocks are never evicted.
pin_l0_filter_and_index_blocks_in_cache = true
# Above 0, index and filter blocks are cached with high priority, in RocksDB's high-priority
# pool of half the cache (RocksDB's C API cannot size it); 0 = no priority.
high_priority_pool_ratio = 0.5

[memory]
# All memtables together stay under one limit, charged to the block cache.
enable_write_buffer_manager = true
# That limit, MiB; 0 = twice rocksdb.write_buffer_size_mb.
write_buffer_manager_limit_mb = 0

[logging]
# Least severe message logged by the node (unless DOLMEN_LOG is set) and by RocksDB in its
# LOG file: "debug", "info", "warn", "error" or "fatal".
log_level = "info"
# RocksDB starts a new LOG file past this size, MiB; 0 = one file per start.
max_log_file_size_mb = 0
# Old RocksDB LOG files kept.
keep_log_file_num = 1000

[performance]
# RocksDB statistics (cache hits and more; getDatabaseStats' cache hit rate needs them).
enable_statistics = true
# "disable_all", "except_histogram_or_timers", "except_timers", "except_detailed_timers",
# "except_time_for_mutex" or "all".
statistics_level = "except_detailed_timers"
# How often RocksDB writes its statistics to its LOG file, seconds; 0 = never.
stats_dump_period_sec = 600

[cluster]
# The older TransactionalKV server's timings, read as Raft timings where [consensus] does
# not set them (0 = not set): health_check_interval_ms as heartbeat_interval_ms,
# node_timeout_ms as election_timeout_ms, leader_discovery_timeout_ms as leader_wait_ms.
health_check_interval_ms = 0
node_timeout_ms = 0
leader_discovery_timeout_ms = 0
"#;

#[cfg(test)]
mod tests {
    use std::io::Write;

    use toml::{Table, Value};

    use crate::{Config, Mode, Overrides};

    fn load(text: &str) -> Config {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        Config::load(Some(f.path()), &[], &Overrides::default()).unwrap()
    }

    #[test]
    fn the_example_loads_to_the_defaults() {
        assert_eq!(load(Config::example_toml()), Config::default());
    }

    #[test]
    fn the_shipped_file_is_the_example() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dolmen.example.toml");
        let shipped = std::fs::read_to_string(path).unwrap();
        assert!(
            shipped == Config::example_toml(),
            "{path} differs from Config::example_toml(); write the latter into it"
        );
    }

    #[test]
    fn the_example_shows_every_key() {
        let example: Table = Config::example_toml().parse().unwrap();
        let Ok(Value::Table(schema)) = Value::try_from(Config::default()) else {
            panic!("the defaults serialize to a table");
        };
        let keys = |t: &Table| -> Vec<String> {
            t.iter()
                .flat_map(|(section, keys)| {
                    let keys = keys.as_table().unwrap();
                    keys.keys().map(move |key| format!("{section}.{key}"))
                })
                .collect()
        };
        let mut expected = keys(&schema);
        expected.retain(|key| key != "server.port" && key != "server.admin_port");
        assert_eq!(keys(&example), expected);
        assert!(Config::example_toml().contains("\n# port = 9090\n"));
        assert!(Config::example_toml().contains("\n# admin_port = 9190\n"));
    }

    #[test]
    fn the_commented_cluster_lines_make_a_valid_replicated_config() {
        let replicated = Config::example_toml()
            .replace("mode = \"standalone\"", "mode = \"replicated\"")
            .replace("instance_id = 0", "instance_id = 1")
            .replace("replica_endpoints = []\n# ", "")
            .replace("endpoints = []\n# ", "");
        let c = load(&replicated);
        assert_eq!(c.deployment.mode, Mode::Replicated);
        assert_eq!(c.deployment.replica_endpoints.len(), 3);
        assert_eq!(c.consensus.endpoints.len(), 3);
        // server.port is commented out, so it comes from this node's replica endpoint, and
        // the admin port is 100 above it.
        assert_eq!(c.server.port, 9091);
        assert_eq!(c.server.admin_port, 9191);
    }
}
