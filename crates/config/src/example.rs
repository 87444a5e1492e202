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
# Initialize a new cluster from the lists above on first start (one node only; a node that
# is, or sees a peer that is, already initialized never initializes again). Alternatively run
# `dolmen cluster init` once.
bootstrap = false
# Followers pass writes to the leader and relay the outcome; false answers NOT_LEADER instead.
forward_writes = true
# Build a snapshot and purge the log behind it every this many log entries.
snapshot_interval_entries = 100000
# Log entries kept behind the last snapshot for briefly lagging followers.
snapshot_keep_entries = 5000
# Admin addresses (host:port) of members of a running cluster: a node that is not yet a
# member asks the leader among them to add it (learner, then voter). For growing a cluster.
join = []

[reads]
# "linearizable" (a ReadIndex barrier through the leader), "lease" (the leader answers while
# its lease holds), or "stale" (local applied state, at most max_staleness_ms behind).
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

[rocksdb]
# Size of one memtable, MiB; all column families together hold at most twice this in
# memtables, counted within the block cache.
write_buffer_size_mb = 64
# Most memtables per column family.
max_write_buffer_number = 4
# Size of the shared block cache, MiB. It holds the memtables' charge too, so it bounds
# RocksDB's memory: a node's RSS stays near this plus ~160 MiB (docs/PERFORMANCE.md).
block_cache_size_mb = 512

[server]
# Address the Thrift and admin listeners bind; "0.0.0.0" for every interface.
# Flag: --host   Env: DOLMEN_HOST
host = "127.0.0.1"
# Thrift client API port; 0 = any free port (the "dolmen ready" line says which).
# Default 9090; in replicated mode, the port of this node's replica_endpoints entry.
# Left commented so that default applies.   Flag: --port   Env: DOLMEN_PORT, THRIFT_PORT
# port = 9090
# Admin HTTP port (/health /ready /metrics /status); 0 = any free port.
# Flag: --admin-port   Env: DOLMEN_ADMIN_PORT
admin_port = 9190
# Most client connections served at once.
max_connections = 4096
# Largest Thrift message accepted (1 MiB to 256 MiB); a larger one closes the connection.
max_message_bytes = 16777216
# A request must arrive whole within this long of its first byte, or the connection is
# closed; 0 = no bound.
read_timeout_ms = 30000

[mvcc]
# How long MVCC history is kept; older read versions get TRANSACTION_TOO_OLD.
retention_window_ms = 5000
# How often the leader advances the retention horizon.
compaction_interval_ms = 1000
# How long a read at a version not yet applied waits before FUTURE_VERSION (0 = no wait).
future_version_wait_ms = 1000

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
        expected.retain(|key| key != "server.port");
        assert_eq!(keys(&example), expected);
        assert!(Config::example_toml().contains("\n# port = 9090\n"));
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
        // server.port is commented out, so it comes from this node's replica endpoint.
        assert_eq!(c.server.port, 9091);
    }
}
