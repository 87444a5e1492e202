//! What a node says about itself and its cluster: `GET /status` ([`NodeStatus`], with a
//! [`RaftStatus`] section in replicated mode and a [`GroupStatus`] per data group on a sharded
//! node) and `GET /cluster/status` ([`ClusterStatus`], every member probed by the node that
//! answers). Field names are the wire names.

use serde::{Deserialize, Serialize};

/// A node id (`deployment.instance_id`).
pub type NodeId = u64;

/// A member's role. Unknown strings read as [`Role::Unknown`], so an older client reads a newer
/// server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Orders writes.
    Leader,
    /// Replicates from the leader and votes.
    Follower,
    /// Campaigning for leadership.
    Candidate,
    /// Replicates without voting.
    Learner,
    /// The Raft core stopped.
    Shutdown,
    /// Not known from here (the member did not answer).
    #[serde(other)]
    Unknown,
}

impl Role {
    /// The wire name (`leader`, `follower`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
            Role::Unknown => "unknown",
        }
    }
}

/// A member's health as seen from the answering node. Unknown strings read as
/// [`Health::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Reachable and caught up.
    Healthy,
    /// Reachable but lagging.
    Degraded,
    /// Not answering.
    Unreachable,
    /// No information yet.
    #[serde(other)]
    Unknown,
}

impl Health {
    /// The wire name (`healthy`, `degraded`, `unreachable`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unreachable => "unreachable",
            Health::Unknown => "unknown",
        }
    }
}

/// `GET /status`: this node, its engine and its view of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node's id.
    pub node_id: NodeId,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The current term (1 on a standalone node, its own leader).
    pub term: u64,
    /// The last applied version.
    pub applied_version: u64,
    /// The MVCC retention horizon.
    pub horizon: u64,
    /// User keys whose newest version is a value.
    pub live_keys: u64,
    /// SST files and memtables of data and meta, in bytes.
    pub size_bytes: u64,
    /// Bytes in RocksDB's block cache, memtables' charge included.
    pub block_cache_bytes: u64,
    /// Bytes in RocksDB's memtables, all column families.
    pub memtable_bytes: u64,
    /// Seconds since the process started.
    pub uptime_seconds: u64,
    /// Every member as this node sees it, ordered by id.
    pub members: Vec<MemberView>,
    /// The Raft state, in replicated mode (`null` on a standalone node); on a sharded node,
    /// group 0's (the oracle and metadata).
    pub raft: Option<RaftStatus>,
    /// On a sharded node: each data group as this node runs it, in key order
    /// (docs/sharding.md §12). Absent on a standalone or unsharded node (and from older
    /// servers), which read as empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupStatus>,
}

/// One data group in [`NodeStatus::groups`]: the keys it owns and its Raft state on the
/// answering node. The Raft fields mean what [`RaftStatus`]'s do, for this group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The group's id (data groups are numbered from 1 in key order at bootstrap).
    pub id: u64,
    /// The first key the group owns, as lower-case hex of its bytes ([`key_hex`]; `""` for the
    /// empty key, where the first group starts).
    pub start: String,
    /// The first key past the group's range, in the same hex; `null` when the range runs to
    /// +∞ (the last group).
    pub end: Option<String>,
    /// The range for people, as the server's messages print it: `['g', 'n')`, `['n', +inf)`
    /// (printable text quoted, other bytes as `0x` hex, keys cut at 64 bytes with `…`).
    pub range: String,
    /// This node's role in the group.
    pub role: Role,
    /// The group's leader this node knows of.
    pub leader: Option<NodeId>,
    /// The group's current term.
    pub term: u64,
    /// The group's last log index here.
    pub last_log: u64,
    /// The group's last committed index known here.
    pub committed: u64,
    /// The group's last applied log index here.
    pub applied: u64,
    /// The version of the group's last applied command here (an oracle version, as clients
    /// see them).
    pub applied_version: u64,
    /// Why the group's Raft core stopped, if it did.
    pub running: Option<String>,
}

/// `bytes` as lower-case hex, two digits a byte: how [`GroupStatus`] spells a range's keys
/// (`b"g"` is `"67"`, the empty key `""`).
pub fn key_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// `GET /ready`'s body: 200 when `ready`, else 503 with every reason the node is not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyAnswer {
    /// Whether the node can serve reads and writes: a leader is known, a version is applied
    /// and the disk is not full.
    pub ready: bool,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The last applied version.
    pub applied_version: u64,
    /// Why not, one entry per condition; empty when ready.
    pub reasons: Vec<NotReady>,
}

/// One reason in [`ReadyAnswer::reasons`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotReady {
    /// What is wrong, for scripts.
    pub condition: NotReadyCondition,
    /// What is wrong, for people (for `disk_full`, the error writes get).
    pub detail: String,
}

/// Why a node is not ready. Unknown strings read as [`NotReadyCondition::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotReadyCondition {
    /// No leader is known (an election, or no quorum).
    NoLeader,
    /// Nothing applied yet, so no read version can be handed out.
    NothingApplied,
    /// The disk is full: writes are refused (`[database] min_free_disk_mb`,
    /// `max_data_size_mb`); reads are still served.
    DiskFull,
    /// A condition this client does not know.
    #[serde(other)]
    Unknown,
}

/// One member in [`NodeStatus::members`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The member's id.
    pub id: NodeId,
    /// Its Thrift client address, `host:port`.
    pub client_addr: String,
    /// Its role.
    pub role: Role,
    /// Its health.
    pub health: Health,
    /// When this node last heard from it, milliseconds since the Unix epoch (0 = never).
    pub last_seen_unix_ms: i64,
}

/// A node's Raft state: the `raft` section of `/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStatus {
    /// This node.
    pub node_id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: Role,
    /// Current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Last log index.
    pub last_log: u64,
    /// Last committed index known here.
    pub committed: u64,
    /// Last applied index (= version).
    pub applied: u64,
    /// Index of the last snapshot.
    pub snapshot: u64,
    /// Last purged log index.
    pub purged: u64,
    /// The membership.
    pub members: Vec<RaftMember>,
    /// Snapshots built by this node.
    pub snapshots_built: u64,
    /// Snapshots installed on this node.
    pub snapshots_installed: u64,
    /// Snapshots this node streamed to a follower that installed them (absent from older
    /// servers).
    #[serde(default)]
    pub snapshots_sent: u64,
    /// Why the Raft core stopped, if it did.
    pub running: Option<String>,
}

impl RaftStatus {
    /// The ids of the voters, ascending.
    pub fn voter_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// One member in [`RaftStatus::members`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftMember {
    /// Node id.
    pub id: NodeId,
    /// Thrift address.
    pub client_addr: String,
    /// Peer (Raft gRPC) address.
    pub peer_addr: String,
    /// Admin address (may be empty).
    pub admin_addr: String,
    /// Voter or learner.
    pub voter: bool,
    /// On the leader: from its acknowledgements and lag; `unknown` elsewhere.
    pub health: Health,
    /// On the leader: the last log index known replicated to this member.
    pub matched: Option<u64>,
    /// When the answering node last heard from this member, milliseconds since the Unix
    /// epoch: its own entry is now; on the leader, a follower's last acknowledgement; absent
    /// when not known (and from older servers).
    #[serde(default)]
    pub last_seen_unix_ms: Option<i64>,
}

/// `GET /cluster/status`: every member's status, as one node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The leader the answering node knows of.
    pub leader: Option<NodeId>,
    /// The leader's last log index (to compute lag), if the leader answered.
    pub leader_last_log: Option<u64>,
    /// One report per member.
    pub nodes: Vec<NodeReport>,
}

/// One member in [`ClusterStatus::nodes`]; the numbers are absent when it did not answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Node id.
    pub id: NodeId,
    /// Thrift address.
    pub client_addr: String,
    /// Admin address as the member itself reports it (from the membership when it did not
    /// answer; empty when unknown, and from older servers).
    #[serde(default)]
    pub admin_addr: String,
    /// Role, or `unknown`.
    pub role: Role,
    /// Term.
    pub term: Option<u64>,
    /// Last log index.
    pub last_log: Option<u64>,
    /// Committed index.
    pub committed: Option<u64>,
    /// Applied index.
    pub applied: Option<u64>,
    /// `healthy` or `unreachable`.
    pub health: Health,
    /// Why it is unreachable.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standalone_status_round_trips_with_raft_null() {
        let text = r#"{"node_id":0,"leader":0,"term":1,"applied_version":7,"horizon":2,
            "live_keys":3,"size_bytes":10,"block_cache_bytes":11,"memtable_bytes":12,
            "uptime_seconds":5,"members":[{"id":0,"client_addr":"127.0.0.1:9090",
            "role":"leader","health":"healthy","last_seen_unix_ms":0}],"raft":null}"#;
        let status: NodeStatus = serde_json::from_str(text).unwrap();
        assert_eq!(status.members[0].role, Role::Leader);
        assert_eq!(status.raft, None);
        let back: serde_json::Value = serde_json::to_value(&status).unwrap();
        let original: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn unknown_role_and_health_strings_read_as_unknown() {
        let report: NodeReport = serde_json::from_str(
            r#"{"id":1,"client_addr":"a:1","role":"observer","term":null,"last_log":null,
                "committed":null,"applied":null,"health":"sleepy","error":"gone"}"#,
        )
        .unwrap();
        assert_eq!(report.role, Role::Unknown);
        assert_eq!(report.health, Health::Unknown);
    }

    #[test]
    fn an_unsharded_status_has_no_groups_field_and_a_sharded_one_lists_them() {
        let old = r#"{"node_id":0,"leader":0,"term":1,"applied_version":7,"horizon":2,
            "live_keys":3,"size_bytes":10,"block_cache_bytes":11,"memtable_bytes":12,
            "uptime_seconds":5,"members":[],"raft":null}"#;
        let status: NodeStatus = serde_json::from_str(old).unwrap();
        assert!(status.groups.is_empty());
        let text = serde_json::to_string(&status).unwrap();
        assert!(!text.contains("groups"), "{text}");

        let group = GroupStatus {
            id: 2,
            start: key_hex(b"g"),
            end: None,
            range: "['g', +inf)".to_owned(),
            role: Role::Follower,
            leader: Some(1),
            term: 3,
            last_log: 40,
            committed: 40,
            applied: 39,
            applied_version: 1_800_000_000_000_123,
            running: None,
        };
        let sharded = NodeStatus {
            groups: vec![group.clone()],
            ..status
        };
        let value = serde_json::to_value(&sharded).unwrap();
        assert_eq!(value["groups"][0]["start"], "67");
        assert_eq!(value["groups"][0]["end"], serde_json::Value::Null);
        assert_eq!(value["groups"][0]["role"], "follower");
        let back: NodeStatus = serde_json::from_value(value).unwrap();
        assert_eq!(back.groups, vec![group]);
    }

    #[test]
    fn keys_are_spelled_as_two_lower_case_hex_digits_a_byte() {
        assert_eq!(key_hex(b""), "");
        assert_eq!(key_hex(b"g"), "67");
        assert_eq!(key_hex(&[0x00, 0x0f, 0xc0, 0xff]), "000fc0ff");
    }
}
