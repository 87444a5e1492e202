//! The older `TransactionalKV` server's node files: its `[cluster]` timings, read as Dolmen's
//! Raft timings where `[consensus]` is silent, and `dolmen config migrate`, which rewrites such
//! a file in Dolmen's own terms (docs/configuration.md).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::{Config, ConfigError, ConsistencyLevel, Origin};

/// `[cluster]`: the older server's failure-detection timings. Each is read as the Raft timing
/// of the same meaning when `[consensus]` does not set that timing itself; `0` = not set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [cluster] table")]
pub struct ClusterConfig {
    /// `health_check_interval_ms`: how often members check on each other, read as
    /// `consensus.heartbeat_interval_ms`. Default `0`.
    pub health_check_interval_ms: u64,
    /// `node_timeout_ms`: silence after which a member counts as down, read as
    /// `consensus.election_timeout_ms`. Default `0`.
    pub node_timeout_ms: u64,
    /// `leader_discovery_timeout_ms`: how long a request looks for a leader, read as
    /// `consensus.leader_wait_ms`. Default `0`.
    pub leader_discovery_timeout_ms: u64,
}

/// Each `[cluster]` key and the `[consensus]` key it stands for.
const CLUSTER_ALIASES: [(&str, &str); 3] = [
    ("health_check_interval_ms", "heartbeat_interval_ms"),
    ("node_timeout_ms", "election_timeout_ms"),
    ("leader_discovery_timeout_ms", "leader_wait_ms"),
];

fn cluster_value(cluster: &ClusterConfig, key: &str) -> u64 {
    match key {
        "health_check_interval_ms" => cluster.health_check_interval_ms,
        "node_timeout_ms" => cluster.node_timeout_ms,
        _ => cluster.leader_discovery_timeout_ms,
    }
}

fn consensus_value<'a>(config: &'a mut Config, key: &str) -> &'a mut u64 {
    match key {
        "heartbeat_interval_ms" => &mut config.consensus.heartbeat_interval_ms,
        "election_timeout_ms" => &mut config.consensus.election_timeout_ms,
        _ => &mut config.consensus.leader_wait_ms,
    }
}

/// Applies the `[cluster]` timings where `[consensus]` is silent (`origins` says which keys
/// somebody set, and is given the alias's origin for the key it fills), and notes the ones
/// `[consensus]` overrides; also notes a `high_priority_pool_ratio` RocksDB cannot apply.
pub(crate) fn apply(config: &mut Config, origins: &mut HashMap<String, Origin>) {
    for (alias, key) in CLUSTER_ALIASES {
        let value = cluster_value(&config.cluster, alias);
        if value == 0 {
            continue;
        }
        let target = format!("consensus.{key}");
        if origins.contains_key(&target) {
            let own = *consensus_value(config, key);
            if own != value {
                config.notices.push(format!(
                    "cluster.{alias} = {value} is not used: {target} = {own} sets the same \
                     timing (remove cluster.{alias})"
                ));
            }
        } else {
            *consensus_value(config, key) = value;
            if let Some(origin) = origins.get(&format!("cluster.{alias}")).cloned() {
                origins.insert(target, origin);
            }
        }
    }
    let ratio = config.cache.high_priority_pool_ratio;
    if ratio != 0.0 && ratio != 0.5 {
        config.notices.push(format!(
            "cache.high_priority_pool_ratio = {ratio}: index and filter blocks are cached with \
             high priority, but the pool is RocksDB's default, half of the block cache \
             (RocksDB's C API cannot size it); write 0.5 to say so, or 0 for no priority"
        ));
    }
}

/// `dolmen config migrate`: the older server's node file `text` (read from `path`, for
/// messages) rewritten as the equivalent Dolmen file. `[cluster]` timings move to
/// `[consensus]` (unless it sets them), the older consistency level names become Dolmen's,
/// and a `high_priority_pool_ratio` RocksDB cannot apply becomes `0.5`; every other key keeps
/// its name and value. The result is checked by loading it, and starts with a comment listing
/// each change.
///
/// # Errors
/// When `text` is not TOML, or the rewritten file does not load (an unknown key, a bad
/// value): the same message `dolmen serve` would give.
pub fn migrate(text: &str, path: &std::path::Path) -> Result<String, ConfigError> {
    let mut table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    let mut changes = Vec::new();

    if let Some(Value::Table(cluster)) = table.remove("cluster") {
        let mut consensus = section(&mut table, "consensus");
        let mut leftover = Table::new();
        for (alias, key) in CLUSTER_ALIASES {
            let Some(value) = cluster.get(alias) else {
                continue;
            };
            let Some(consensus) = consensus.as_deref_mut() else {
                continue; // `consensus` is not a table: the load below says so
            };
            if value.as_integer() == Some(0) {
                changes.push(format!("dropped cluster.{alias} = 0 (not set)"));
            } else if let Some(own) = consensus.get(key) {
                changes.push(format!(
                    "dropped cluster.{alias} = {value}: consensus.{key} = {own} already sets it"
                ));
            } else {
                consensus.insert(key.to_owned(), value.clone());
                changes.push(format!("cluster.{alias} = {value} became consensus.{key}"));
            }
        }
        for (key, value) in cluster {
            if !CLUSTER_ALIASES.iter().any(|(alias, _)| *alias == key) {
                leftover.insert(key, value); // for the load below to refuse by name
            }
        }
        if !leftover.is_empty() {
            table.insert("cluster".to_owned(), Value::Table(leftover));
        }
    }
    if let Some(Value::Table(reads)) = table.get_mut("reads") {
        if let Some(Value::String(level)) = reads.get("consistency_level") {
            if let Ok(parsed) = level.parse::<ConsistencyLevel>() {
                if parsed.as_str() != level {
                    changes.push(format!(
                        "reads.consistency_level \"{level}\" became \"{parsed}\""
                    ));
                    reads.insert(
                        "consistency_level".to_owned(),
                        Value::String(parsed.as_str().to_owned()),
                    );
                }
            }
        }
    }
    if let Some(Value::Table(cache)) = table.get_mut("cache") {
        let ratio = cache
            .get("high_priority_pool_ratio")
            .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)));
        if let Some(ratio) = ratio.filter(|r| *r != 0.0 && *r != 0.5) {
            cache.insert("high_priority_pool_ratio".to_owned(), Value::Float(0.5));
            changes.push(format!(
                "cache.high_priority_pool_ratio {ratio} became 0.5 (the pool size RocksDB's C \
                 API applies)"
            ));
        }
    }

    let body = toml::to_string(&table).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    crate::load::load_text(&body, path)?;

    let mut out = format!(
        "# Dolmen configuration migrated from {} by `dolmen config migrate`.\n",
        path.display()
    );
    if changes.is_empty() {
        out.push_str("# Nothing needed changing: Dolmen reads every key of the original.\n");
    }
    for change in &changes {
        out.push_str(&format!("# - {change}\n"));
    }
    out.push('\n');
    out.push_str(&body);
    Ok(out)
}

/// `[name]` of `table`, created when missing; `None` when it is not a table.
fn section<'a>(table: &'a mut Table, name: &str) -> Option<&'a mut Table> {
    table
        .entry(name.to_owned())
        .or_insert_with(|| Value::Table(Table::new()))
        .as_table_mut()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::load::load_text;
    use crate::{Bootstrap, Compression, Overrides};

    fn fixture() -> (PathBuf, String) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/older-server-node.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text)
    }

    #[test]
    fn the_older_servers_node_file_loads_with_every_key_honoured() {
        let (path, _) = fixture();
        let c = Config::load(Some(&path), &[], &Overrides::default()).unwrap();
        assert_eq!(c.reads.consistency_level, ConsistencyLevel::Linearizable);
        assert_eq!(c.consensus.bootstrap, Bootstrap::Auto);
        // [cluster] fills the Raft timings [consensus] leaves out.
        assert_eq!(c.consensus.heartbeat_interval_ms, 250);
        assert_eq!(c.consensus.election_timeout_ms, 1500);
        assert_eq!(c.consensus.leader_wait_ms, 4000);
        assert_eq!(c.rocksdb.block_size_kb, 16);
        assert_eq!(c.compression.bottom_compression, Compression::Zstd);
        assert_eq!(c.compaction.max_bytes_for_level_multiplier, 8.0);
        assert_eq!(c.concurrency.max_read_concurrency, 64);
        assert_eq!(c.server.admin_port, 9190, "Thrift port 9090 + 100");
        assert_eq!(c.notices.len(), 1, "{:?}", c.notices);
        assert!(c.notices[0].starts_with("cache.high_priority_pool_ratio = 0.2"));
    }

    #[test]
    fn the_default_admin_port_steps_over_a_peer_port() {
        let (path, text) = fixture();
        // Peers at the Thrift port + 100: the admin port takes the next free step.
        let text = text.replace("127.0.0.1:7090", "127.0.0.1:9190");
        let c = load_text(&text, &path).unwrap();
        assert_eq!(c.server.admin_port, 9290);
    }

    #[test]
    fn consensus_wins_over_cluster_and_says_so() {
        let (path, text) = fixture();
        let text = text.replace(
            "max_batch_size = 100",
            "max_batch_size = 100\nelection_timeout_ms = 3000",
        );
        let c = load_text(&text, &path).unwrap();
        assert_eq!(c.consensus.election_timeout_ms, 3000);
        assert!(
            c.notices.iter().any(|n| n
                == "cluster.node_timeout_ms = 1500 is not used: consensus.election_timeout_ms \
                    = 3000 sets the same timing (remove cluster.node_timeout_ms)"),
            "{:?}",
            c.notices
        );
    }

    #[test]
    fn a_bad_cluster_timing_is_reported_under_its_own_name() {
        let (path, text) = fixture();
        let text = text.replace("node_timeout_ms = 1500", "node_timeout_ms = 400");
        let e = load_text(&text, &path).unwrap_err().to_string();
        assert!(
            e.contains("consensus.election_timeout_ms") && e.contains("older-server-node.toml"),
            "{e}"
        );
    }

    #[test]
    fn migrate_rewrites_the_file_in_dolmens_terms_and_the_result_loads() {
        let (path, text) = fixture();
        let out = migrate(&text, &path).unwrap();
        assert!(
            out.contains("# - cluster.node_timeout_ms = 1500 became consensus.election_timeout_ms"),
            "{out}"
        );
        assert!(
            out.contains("# - reads.consistency_level \"strong\" became \"linearizable\""),
            "{out}"
        );
        assert!(
            out.contains("high_priority_pool_ratio 0.2 became 0.5"),
            "{out}"
        );
        let migrated = load_text(&out, &path).unwrap();
        let original = load_text(&text, &path).unwrap();
        assert!(migrated.notices.is_empty(), "{:?}", migrated.notices);
        let table: Table = out.parse().unwrap();
        assert!(table.get("cluster").is_none(), "{out}");
        assert_eq!(migrated.consensus, original.consensus);
        assert_eq!(migrated.rocksdb, original.rocksdb);
        assert_eq!(migrated.compression, original.compression);
    }

    #[test]
    fn what_dolmen_cannot_honour_is_refused_with_what_to_write() {
        let (path, text) = fixture();
        let text = text.replace(
            "bottom_compression = \"zstd\"",
            "bottom_compression = \"snappy\"",
        );
        let e = load_text(&text, &path).unwrap_err().to_string();
        assert!(
            e.contains("snappy") && e.contains("write \"lz4\" (fast) or \"zstd\" (smaller)"),
            "{e}"
        );
        let e = migrate(&text, &path).unwrap_err().to_string();
        assert!(e.contains("snappy"), "{e}");
    }
}
