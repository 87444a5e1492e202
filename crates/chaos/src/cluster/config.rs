//! A node's files before it starts: its TOML config and free loopback ports for its listeners.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use serde_json::json;

use super::{ClusterSpec, NodeAddrs};
use crate::rng::Rng;

/// The TOML config of node `i`.
pub(super) fn render_config(
    spec: &ClusterSpec,
    i: usize,
    addrs: &[NodeAddrs],
    data_dir: &Path,
) -> anyhow::Result<String> {
    let list = |f: fn(&NodeAddrs) -> SocketAddr| -> Vec<String> {
        addrs.iter().map(|a| f(a).to_string()).collect()
    };
    let mut faults = toml::Table::new();
    if spec.network_faults {
        faults.insert("allow_network_faults".into(), true.into());
    }
    if spec.stale_reads {
        faults.insert("unsafe_stale_reads".into(), true.into());
    }
    let data = data_dir.to_str().ok_or_else(|| {
        anyhow!(
            "the run directory path is not UTF-8: {}",
            data_dir.display()
        )
    })?;
    let config = json!({
        "deployment": {
            "mode": "replicated",
            "instance_id": i,
            "replica_endpoints": list(|a| a.thrift),
        },
        "consensus": {
            "endpoints": list(|a| a.peer),
            "election_timeout_ms": 500,
            "heartbeat_interval_ms": 100,
            "bootstrap": i == 0,
            // Small enough that a restarted node sometimes catches up from a snapshot.
            "snapshot_interval_entries": 5000,
            "snapshot_keep_entries": 500,
        },
        "server": {
            "host": "127.0.0.1",
            "port": addrs[i].thrift.port(),
            "admin_port": addrs[i].admin.port(),
        },
        "database": { "base_path": data, "column_families": ["default"] },
        "mvcc": { "retention_window_ms": 5000, "compaction_interval_ms": 1000 },
        "rocksdb": { "write_buffer_size_mb": 8, "block_cache_size_mb": 16 },
    });
    let mut table: toml::Table =
        serde_json::from_value(config).context("the node config as a TOML table")?;
    if !faults.is_empty() {
        table.insert("faults".into(), toml::Value::Table(faults));
    }
    toml::to_string(&table).context("serialize the node config")
}

pub(super) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Picks `n` distinct free loopback ports below the kernel's ephemeral range when possible, so
/// no outgoing connection takes a stopped node's port before it restarts. Each is bound while
/// picking, so the `n` are free at return.
pub(super) fn pick_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low);
    let mut rng = Rng::new(unix_nanos() ^ (u64::from(std::process::id()) << 32));
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    let mut seen = HashSet::new();
    if high > low + 1000 {
        for _ in 0..20_000 {
            if held.len() == n {
                break;
            }
            let port = low + u16::try_from(rng.below(u64::from(high - low))).unwrap_or(0);
            if !seen.insert(port) {
                continue;
            }
            if let Ok(l) = TcpListener::bind(loopback(port)) {
                held.push(l);
            }
        }
    }
    for _ in 0..1000 {
        if held.len() == n {
            break;
        }
        let l = TcpListener::bind(loopback(0)).context("bind 127.0.0.1:0 to pick a port")?;
        if seen.insert(l.local_addr()?.port()) {
            held.push(l);
        }
    }
    if held.len() < n {
        bail!("could not find {n} free loopback ports");
    }
    held.iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect::<std::io::Result<Vec<u16>>>()
        .context("read a picked port")
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

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
        };
        let text = render_config(&spec, 1, &addrs, Path::new("/tmp/x/data/node-1")).unwrap();
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(t["deployment"]["instance_id"].as_integer(), Some(1));
        assert_eq!(t["consensus"]["bootstrap"].as_bool(), Some(false));
        assert_eq!(t["server"]["port"].as_integer(), Some(20_001));
        assert_eq!(
            t["consensus"]["endpoints"].as_array().map(Vec::len),
            Some(3)
        );
        assert!(t.get("faults").is_none());
        spec.network_faults = true;
        spec.stale_reads = true;
        let text = render_config(&spec, 0, &addrs, Path::new("/tmp/x/data/node-0")).unwrap();
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(t["consensus"]["bootstrap"].as_bool(), Some(true));
        assert_eq!(t["faults"]["allow_network_faults"].as_bool(), Some(true));
        assert_eq!(t["faults"]["unsafe_stale_reads"].as_bool(), Some(true));
    }

    #[test]
    fn picked_ports_are_distinct() {
        let ports = pick_ports(9).unwrap();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), 9);
    }
}
