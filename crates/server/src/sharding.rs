//! Starting a sharded node (docs/sharding.md §2, §4.3): the routing table from `[sharding]`,
//! the data directory's layout marker (a directory made unsharded never opens sharded, nor the
//! reverse, nor with other split points: splits are not built), the data groups over their
//! engine handles, and their initialization once group 0 is initialized here.
//!
//! ```text
//!  [sharding] ─▶ RoutingTable (every node a voter of every group)
//!  data dir/sharding ─▶ same as configured? else refuse (exit 2)
//!  per range: engine.open_group(g, span) ─▶ RaftNode::start_data_group ─▶ ShardGroup
//!  background: group 0 initialized here ─▶ initialize each data group with the configured members
//!  background: each group's preferred leader (its first voter) ─▶ RaftNode::place_leaders
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dolmen_engine::routing::Placement;
use dolmen_engine::{Engine, KeySpan, RoutingTable};
use dolmen_raft::{DataGroup, NodeAddr, PlacementOptions, RaftNode};

use crate::config::Config;
use crate::node::NodeError;

/// The name of the layout marker in a node's data directory.
const MARKER: &str = "sharding";
/// The marker of a directory whose one Raft group holds every key.
const UNSHARDED: &str = "unsharded";

/// The routing table `[sharding]` asks for (`None`: not sharded), with every configured node a
/// voter of every data group.
///
/// # Errors
/// `Sharding` naming the setting the table cannot be built from.
pub(crate) fn routing_table(config: &Config) -> Result<Option<RoutingTable>, NodeError> {
    let sharding = &config.sharding;
    let groups = sharding.data_groups();
    if groups == 0 {
        return Ok(None);
    }
    if !config.consensus.join.is_empty() {
        return Err(NodeError::Sharding(
            "[sharding] with consensus.join is not built yet: a sharded cluster's members are \
             the configured consensus.endpoints, formed together"
                .into(),
        ));
    }
    let nodes: Vec<u64> = (0..config.consensus.endpoints.len() as u64).collect();
    let replicas = nodes.len();
    let placement = Placement::new(nodes, replicas)
        .map_err(|e| NodeError::Sharding(format!("consensus.endpoints: {e}")))?;
    let keys = sharding.decoded_split_keys();
    let table = if keys.is_empty() {
        RoutingTable::even(groups, &placement)
            .map_err(|e| NodeError::Sharding(format!("sharding.shards: {e}")))?
    } else {
        RoutingTable::from_split_keys(&keys, &placement)
            .map_err(|e| NodeError::Sharding(format!("sharding.split_keys: {e}")))?
    };
    Ok(Some(table))
}

/// Refuses a data directory laid out otherwise than `[sharding]` asks (its marker names the
/// layout it was made with); writes the marker into a directory that has none. A directory
/// without a marker that already holds data was made by a build before sharding: unsharded.
///
/// # Errors
/// `Sharding` naming both layouts; `DataDir` when the marker cannot be read or written.
pub(crate) fn check_layout(
    data_dir: &Path,
    engine: &Engine,
    config: &Config,
) -> Result<(), NodeError> {
    let wanted = config
        .sharding
        .fingerprint()
        .unwrap_or_else(|| UNSHARDED.to_string());
    let path = data_dir.join(MARKER);
    let io = |source| NodeError::DataDir {
        path: path.clone(),
        source,
    };
    let stored = match std::fs::read_to_string(&path) {
        Ok(stored) => stored.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let made = if engine.applied_version() > 0 {
                UNSHARDED.to_string()
            } else {
                wanted.clone()
            };
            std::fs::write(&path, format!("{made}\n")).map_err(io)?;
            made
        }
        Err(e) => return Err(io(e)),
    };
    if stored != wanted {
        return Err(NodeError::Sharding(format!(
            "the data directory {} was laid out as `{stored}`, but [sharding] asks for \
             `{wanted}`; changing the shards of an existing cluster (splitting or merging \
             ranges) is not built yet: start it with the [sharding] it was made with, or with \
             an empty data directory",
            data_dir.display()
        )));
    }
    Ok(())
}

/// A data group running on this node, with its range and engine handle.
pub(crate) struct StartedGroup {
    pub(crate) group: Arc<DataGroup>,
    pub(crate) engine: Arc<Engine>,
}

/// Starts every data group of `table` on this node, each over its own engine handle.
///
/// # Errors
/// Storage errors opening a handle; the Raft errors of a group's start.
pub(crate) async fn start_data_groups(
    raft: &RaftNode,
    engine: &Arc<Engine>,
    table: &RoutingTable,
) -> Result<Vec<StartedGroup>, NodeError> {
    let mut started = Vec::with_capacity(table.ranges().len());
    for range in table.ranges() {
        let span = KeySpan::new(range.start.clone(), range.end.clone())
            .ok_or_else(|| NodeError::Sharding(format!("group {}: an empty range", range.group)))?;
        let (root, id) = (engine.clone(), range.group);
        let handle = tokio::task::spawn_blocking(move || root.open_group(id, span))
            .await
            .map_err(|source| NodeError::Panicked {
                step: "opening a data group's engine handle",
                source,
            })?
            .map_err(NodeError::Flush)?;
        let handle = Arc::new(handle);
        let group = raft.start_data_group(range.group, handle.clone()).await?;
        started.push(StartedGroup {
            group,
            engine: handle,
        });
    }
    Ok(started)
}

/// Leader placement for `table`'s data groups (docs/sharding.md §4.5): each one's preferred
/// leader is the first voter of its range, with timings derived from `election_timeout`.
pub(crate) fn leader_placement(
    table: &RoutingTable,
    election_timeout: Duration,
) -> PlacementOptions {
    let preferred = table
        .ranges()
        .iter()
        .filter_map(|range| Some((range.group, *range.voters.first()?)))
        .collect();
    PlacementOptions::new(preferred, election_timeout)
}

/// Initializes every data group with the configured members once group 0 is initialized on
/// this node (each node does the same with the same members, so every replica's first entry
/// is the same). Bounded: gives up after 10 minutes with an error in the log.
pub(crate) async fn initialize_data_groups(raft: Arc<RaftNode>, members: BTreeMap<u64, NodeAddr>) {
    // The same members on every node: ids with their client and peer addresses; admin
    // addresses differ by node (each knows only its own), so none is named.
    let members: BTreeMap<u64, NodeAddr> = members
        .into_iter()
        .map(|(id, addr)| {
            (
                id,
                NodeAddr {
                    admin_addr: String::new(),
                    ..addr
                },
            )
        })
        .collect();
    const ATTEMPTS: u32 = 1200;
    for _ in 0..ATTEMPTS {
        if raft.is_initialized().await {
            for group in raft.data_groups() {
                match group.initialize_with(members.clone()).await {
                    Ok(true) => tracing::info!(group = group.id(), "data group initialized"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(group = group.id(), error = %e, "cannot initialize a data group")
                    }
                }
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::error!("group 0 was not initialized within 10 minutes; the data groups wait for it");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;

    fn config(split_keys: &[&str]) -> Config {
        let mut config = Config::default();
        config.deployment.mode = Mode::Replicated;
        config.sharding.split_keys = split_keys.iter().map(|k| (*k).to_string()).collect();
        config
    }

    fn open(dir: &Path) -> Engine {
        let options = crate::engine_options::engine_options(&Config::default(), dir.join("db"));
        Engine::open(&options).expect("engine opens")
    }

    #[test]
    fn a_data_directory_keeps_the_layout_it_was_made_with() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = open(dir.path());
        let sharded = config(&["m"]);
        check_layout(dir.path(), &engine, &sharded).expect("a fresh directory takes any layout");
        check_layout(dir.path(), &engine, &sharded).expect("the same layout again");
        for other in [config(&[]), config(&["n"]), config(&["m", "t"])] {
            let refused =
                check_layout(dir.path(), &engine, &other).expect_err("another layout is refused");
            let text = refused.to_string();
            assert!(
                text.contains("split_keys") && text.contains("not built"),
                "the refusal names both layouts: {text}"
            );
            assert_eq!(refused.exit_code(), 2, "a configuration error");
        }
    }

    #[test]
    fn a_directory_with_data_and_no_marker_is_unsharded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = open(dir.path());
        // An earlier build's data: something applied, no marker.
        engine
            .apply_batch(
                &[(1, dolmen_engine::Command::Noop)],
                dolmen_engine::Durability::Buffered,
                &[],
            )
            .expect("a command applies");
        let refused = check_layout(dir.path(), &engine, &config(&["m"]))
            .expect_err("an unsharded directory does not open sharded");
        assert!(refused.to_string().contains("unsharded"), "{refused}");
        check_layout(dir.path(), &engine, &config(&[])).expect("it opens unsharded");
    }

    #[test]
    fn the_table_puts_every_node_in_every_group() {
        let mut sharded = config(&["g", "n"]);
        sharded.consensus.endpoints = vec!["a:1".into(), "b:1".into(), "c:1".into()];
        let table = routing_table(&sharded).expect("a table").expect("sharded");
        let groups: Vec<u64> = table.ranges().iter().map(|r| r.group).collect();
        assert_eq!(groups, vec![1, 2, 3]);
        for range in table.ranges() {
            let mut voters = range.voters.clone();
            voters.sort_unstable();
            assert_eq!(voters, vec![0, 1, 2], "group {}", range.group);
        }
        assert!(routing_table(&config(&[])).expect("no table").is_none());
    }

    #[test]
    fn each_data_group_prefers_node_g_minus_one_mod_n() {
        let mut sharded = config(&["d", "g", "n"]);
        sharded.consensus.endpoints = vec!["a:1".into(), "b:1".into(), "c:1".into()];
        let table = routing_table(&sharded).expect("a table").expect("sharded");
        let election = Duration::from_millis(500);
        let placement = leader_placement(&table, election);
        assert_eq!(
            placement.preferred.into_iter().collect::<Vec<_>>(),
            vec![(1, 0), (2, 1), (3, 2), (4, 0)]
        );
        assert_eq!(
            (placement.interval, placement.settle, placement.retry_after),
            (election, election * 3, Duration::from_secs(10))
        );
    }
}
