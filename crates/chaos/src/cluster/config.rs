//! A node's config before it starts, as a `dolmen_config::Config`: the kit's replicated-cluster
//! fields plus the chaos suite's timing, snapshot, retention and fault settings.

use std::path::Path;

use dolmen_config::{Config, ConsistencyLevel};
use dolmen_testkit::render::replicated_node;

use super::{ClusterSpec, NodeAddrs};

/// The config of node `i`.
pub(super) fn render_config(
    spec: &ClusterSpec,
    i: usize,
    addrs: &[NodeAddrs],
    data_dir: &Path,
) -> Config {
    let mut c = replicated_node(i, addrs, data_dir);
    c.consensus.election_timeout_ms = 500;
    c.consensus.heartbeat_interval_ms = 100;
    // Small enough that a restarted node sometimes catches up from a snapshot.
    c.consensus.snapshot_interval_entries = 5000;
    c.consensus.snapshot_keep_entries = 500;
    c.database.column_families = vec!["default".to_owned()];
    c.mvcc.retention_window_ms = 5000;
    c.mvcc.compaction_interval_ms = 1000;
    c.rocksdb.write_buffer_size_mb = 8;
    c.rocksdb.block_cache_size_mb = 16;
    // Left at their defaults (so not written) unless asked: an older server that does not know
    // the keys then still starts.
    c.faults.allow_network_faults = spec.network_faults;
    c.faults.unsafe_stale_reads = spec.stale_reads;
    c.faults.lose_unsynced_writes = spec.lose_unsynced_writes;
    c.faults.unsafe_skip_log_fsync = spec.skip_log_fsync;
    c.faults.unsafe_skip_conflict_check = spec.skip_conflict_check;
    c.faults.unsafe_skip_conflict_check_group = spec.skip_conflict_check_group;
    if spec.lease_reads {
        c.reads.consistency_level = ConsistencyLevel::Lease;
    }
    // Every member the same split points: group 0 holds the oracle, the data groups the ranges.
    c.sharding.split_keys = spec.split_keys.clone();
    c
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use dolmen_testkit::loopback;
    use dolmen_testkit::render::render;

    use super::*;

    #[test]
    fn config_lists_every_node_and_sets_faults_only_when_asked() {
        let addrs: Vec<NodeAddrs> = (0..3u16)
            .map(|i| NodeAddrs {
                thrift: loopback(20_000 + i),
                peer: loopback(21_000 + i),
                admin: loopback(22_000 + i),
            })
            .collect();
        let mut spec = ClusterSpec {
            nodes: 3,
            dolmen: PathBuf::from("/bin/false"),
            dir: PathBuf::from("/tmp/x"),
            network_faults: false,
            stale_reads: false,
            lease_reads: false,
            lose_unsynced_writes: false,
            skip_log_fsync: false,
            skip_conflict_check: false,
            skip_conflict_check_group: 0,
            split_keys: Vec::new(),
        };
        let c = render_config(&spec, 1, &addrs, Path::new("/tmp/x/data/node-1"));
        let text = render(&c).unwrap();
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(t["deployment"]["instance_id"].as_integer(), Some(1));
        assert_eq!(t["consensus"]["bootstrap"].as_bool(), Some(false));
        assert_eq!(t["server"]["port"].as_integer(), Some(20_001));
        assert_eq!(
            t["consensus"]["endpoints"].as_array().map(Vec::len),
            Some(3)
        );
        assert!(t.get("faults").is_none());
        assert!(t.get("reads").is_none());
        assert!(t.get("sharding").is_none(), "not sharded unless asked");
        spec.network_faults = true;
        spec.stale_reads = true;
        spec.lease_reads = true;
        spec.lose_unsynced_writes = true;
        spec.skip_log_fsync = true;
        spec.skip_conflict_check = true;
        spec.split_keys = vec!["bank/4".into(), "hex:6c612f".into()];
        let text = render(&render_config(
            &spec,
            0,
            &addrs,
            Path::new("/tmp/x/data/node-0"),
        ))
        .unwrap();
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(t["consensus"]["bootstrap"].as_bool(), Some(true));
        assert_eq!(t["faults"]["allow_network_faults"].as_bool(), Some(true));
        assert_eq!(t["faults"]["unsafe_stale_reads"].as_bool(), Some(true));
        assert_eq!(t["faults"]["lose_unsynced_writes"].as_bool(), Some(true));
        assert_eq!(t["faults"]["unsafe_skip_log_fsync"].as_bool(), Some(true));
        assert_eq!(
            t["faults"]["unsafe_skip_conflict_check"].as_bool(),
            Some(true)
        );
        assert_eq!(t["reads"]["consistency_level"].as_str(), Some("lease"));
        let keys: Vec<&str> = t["sharding"]["split_keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(toml::Value::as_str)
            .collect();
        assert_eq!(keys, ["bank/4", "hex:6c612f"]);
    }

    #[test]
    fn a_sharded_config_passes_the_servers_own_validation() {
        let addrs: Vec<NodeAddrs> = (0..3u16)
            .map(|i| NodeAddrs {
                thrift: loopback(20_000 + i),
                peer: loopback(21_000 + i),
                admin: loopback(22_000 + i),
            })
            .collect();
        let spec = ClusterSpec {
            nodes: 3,
            dolmen: PathBuf::from("/bin/false"),
            dir: PathBuf::from("/tmp/x"),
            network_faults: true,
            stale_reads: false,
            lease_reads: false,
            lose_unsynced_writes: true,
            skip_log_fsync: false,
            skip_conflict_check: true,
            skip_conflict_check_group: 3,
            split_keys: ["bank/4", "la/", "la/5", "reg/", "reg/5", "set/"]
                .map(str::to_owned)
                .to_vec(),
        };
        let c = render_config(&spec, 2, &addrs, Path::new("/tmp/x/data/node-2"));
        c.validate().unwrap();
        assert_eq!(c.sharding.data_groups(), 7);
        assert_eq!(c.faults.unsafe_skip_conflict_check_group, 3);
    }
}
