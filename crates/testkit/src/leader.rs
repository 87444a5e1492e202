//! Who leads, from the nodes' own `/status` answers: the node claiming leadership in the
//! highest claimed term that a majority of its voters (itself included) names as leader.

use dolmen_admin::{NodeStatus, Role};

/// The leader among `views` (`(node index, its /status)` of the nodes that answered), or `None`.
/// The majority is of the voters the claimant reports, or of `cluster_size` when it reports
/// none (before any membership change they are the same).
pub fn leader_of(views: &[(usize, NodeStatus)], cluster_size: usize) -> Option<usize> {
    let (_, leader, claimant) = views
        .iter()
        .filter_map(|(i, s)| {
            let raft = s.raft.as_ref()?;
            (raft.role == Role::Leader).then_some((s.term, *i, s))
        })
        .max_by_key(|(term, i, _)| (*term, *i))?;
    let named = views
        .iter()
        .filter(|(_, s)| s.leader == u64::try_from(leader).ok())
        .count();
    let voters = claimant
        .raft
        .as_ref()
        .map(|r| r.voter_ids().len())
        .filter(|&n| n > 0)
        .unwrap_or(cluster_size);
    (named > voters / 2).then_some(leader)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/status` of node `id` that names `leader`, in `role` at `term`, with three voters.
    fn status(id: u64, role: &str, term: u64, leader: Option<u64>) -> NodeStatus {
        let member = |id: u64| {
            serde_json::json!({
                "id": id, "client_addr": "", "peer_addr": "", "admin_addr": "",
                "voter": true, "health": "healthy", "matched": null
            })
        };
        serde_json::from_value(serde_json::json!({
            "node_id": id, "leader": leader, "term": term, "applied_version": 1,
            "horizon": 0, "live_keys": 0, "size_bytes": 0, "block_cache_bytes": 0,
            "memtable_bytes": 0, "uptime_seconds": 0, "members": [],
            "raft": {
                "node_id": id, "role": role, "term": term, "leader": leader, "last_log": 0,
                "committed": 0, "applied": 0, "snapshot": 0, "purged": 0,
                "members": [member(0), member(1), member(2)],
                "snapshots_built": 0, "snapshots_installed": 0, "running": null
            }
        }))
        .expect("a valid NodeStatus")
    }

    #[test]
    fn a_leader_needs_a_majority_naming_it() {
        let views = vec![
            (0, status(0, "follower", 2, Some(1))),
            (1, status(1, "leader", 2, Some(1))),
            (2, status(2, "follower", 2, None)),
        ];
        assert_eq!(leader_of(&views, 3), Some(1));
        let alone = vec![
            (1, status(1, "leader", 2, Some(1))),
            (2, status(2, "follower", 2, None)),
        ];
        assert_eq!(
            leader_of(&alone, 3),
            None,
            "one of three voters is no majority"
        );
    }

    #[test]
    fn the_highest_term_claim_wins() {
        let views = vec![
            (0, status(0, "leader", 2, Some(0))),
            (1, status(1, "leader", 3, Some(1))),
            (2, status(2, "follower", 3, Some(1))),
        ];
        assert_eq!(leader_of(&views, 3), Some(1));
    }
}
