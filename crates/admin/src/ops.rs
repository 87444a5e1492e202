//! The cluster operations' requests and answers: `POST /cluster/init`, `/cluster/snapshot`,
//! `/cluster/add-node`, `/cluster/remove-node`, `/cluster/transfer-leader`, and
//! `GET /state/digest`. Every operation answers `{"outcome": ...}`; the digest answers
//! `{"version", "digest"}`, plus `groups` on a sharded node ([`GroupedDigest`]).

use serde::{Deserialize, Serialize};

use crate::status::NodeId;

/// What `POST /cluster/init` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitOutcome {
    /// This call initialized the cluster.
    Initialized,
    /// The cluster was already initialized (here or on a peer); nothing was done.
    AlreadyInitialized,
}

/// What a membership operation (add, remove, transfer) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipOutcome {
    /// The change was made.
    Changed,
    /// Nothing to do: the cluster already was as asked.
    Unchanged,
}

impl MembershipOutcome {
    /// The wire name (`changed` or `unchanged`), as `dolmen cluster` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipOutcome::Changed => "changed",
            MembershipOutcome::Unchanged => "unchanged",
        }
    }
}

/// What `POST /cluster/snapshot` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotOutcome {
    /// The state machine was asked to build a snapshot now.
    Triggered,
}

/// The answer of every cluster operation: `{"outcome": ...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome<T> {
    /// What the operation did.
    pub outcome: T,
}

/// The query of `POST /cluster/add-node`: `?id=N&client_addr=H:P&peer_addr=H:P[&admin_addr=H:P]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddNode {
    /// The new node's id (its `deployment.instance_id`).
    pub id: NodeId,
    /// Its Thrift client address.
    pub client_addr: String,
    /// Its peer (Raft gRPC) address.
    pub peer_addr: String,
    /// Its admin HTTP address; empty when not given.
    #[serde(default)]
    pub admin_addr: String,
}

impl AddNode {
    /// The request path with its query (addresses are `host:port`, which need no escaping).
    pub fn path(&self) -> String {
        format!(
            "/cluster/add-node?id={}&client_addr={}&peer_addr={}&admin_addr={}",
            self.id, self.client_addr, self.peer_addr, self.admin_addr
        )
    }
}

/// The query of `POST /cluster/remove-node`: `?id=N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveNode {
    /// The node to remove.
    pub id: NodeId,
}

/// The query of `POST /cluster/transfer-leader`: `?to=N[&group=G]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLeader {
    /// The voter that should lead.
    pub to: NodeId,
    /// The group whose leadership moves: 0 (the default) is the metadata group, the only
    /// group of an unsharded cluster; a sharded cluster's data groups are 1..=N.
    #[serde(default)]
    pub group: u64,
}

impl TransferLeader {
    /// The request path with its query (`group` only when not 0, as older servers expect).
    pub fn path(&self) -> String {
        match self.group {
            0 => format!("/cluster/transfer-leader?to={}", self.to),
            group => format!("/cluster/transfer-leader?to={}&group={group}", self.to),
        }
    }
}

/// The query of `GET /state/digest`: `?version=V`; absent = the applied version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestQuery {
    /// The version to digest.
    pub version: Option<u64>,
}

/// `GET /state/digest`: a checksum of every user key/value visible at `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// The version digested.
    pub version: u64,
    /// CRC-64 as 16 lowercase hex digits.
    pub digest: String,
}

impl Digest {
    /// The answer for `digest` at `version`, formatted as on the wire.
    pub fn new(version: u64, digest: u64) -> Self {
        Self {
            version,
            digest: format!("{digest:016x}"),
        }
    }
}

/// `GET /state/digest` read with every field a sharded node sends: [`Digest`]'s, plus each data
/// group's own digest (docs/sharding.md §12). On a sharded node `digest` combines the groups'
/// (CRC-64 over `be64(id) ‖ be64(group digest)` for each group in key order), so replicas whose
/// combined digests agree agree on every group; `groups` says which group differs when they do
/// not. An unsharded node (and an older server) sends no `groups`, which reads as empty; a
/// client reading [`Digest`] ignores them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupedDigest {
    /// The version digested.
    pub version: u64,
    /// CRC-64 as 16 lowercase hex digits: of the node's data, or the combination of `groups`.
    pub digest: String,
    /// On a sharded node: each data group's digest at `version`, in key order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupDigest>,
}

/// One data group in [`GroupedDigest::groups`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDigest {
    /// The group's id.
    pub id: u64,
    /// Its key range for people, as `/status` prints it (`['g', 'n')`).
    pub range: String,
    /// CRC-64 of every user key/value the group owns visible at the version, as 16 lowercase
    /// hex digits.
    pub digest: String,
}

impl GroupDigest {
    /// The entry for group `id` owning `range`, whose digest is `digest`, formatted as on the
    /// wire.
    pub fn new(id: u64, range: impl Into<String>, digest: u64) -> Self {
        Self {
            id,
            range: range.into(),
            digest: format!("{digest:016x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_snake_case_strings_under_outcome() {
        let answer = Outcome {
            outcome: InitOutcome::AlreadyInitialized,
        };
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            r#"{"outcome":"already_initialized"}"#
        );
        let read: Outcome<MembershipOutcome> =
            serde_json::from_str(r#"{"outcome":"unchanged"}"#).unwrap();
        assert_eq!(read.outcome, MembershipOutcome::Unchanged);
        assert_eq!(
            serde_json::to_string(&Outcome {
                outcome: SnapshotOutcome::Triggered
            })
            .unwrap(),
            r#"{"outcome":"triggered"}"#
        );
    }

    #[test]
    fn a_transfer_names_its_group_only_when_not_the_metadata_group() {
        let to_group_0 = TransferLeader { to: 2, group: 0 };
        assert_eq!(to_group_0.path(), "/cluster/transfer-leader?to=2");
        let to_group_3 = TransferLeader { to: 2, group: 3 };
        assert_eq!(to_group_3.path(), "/cluster/transfer-leader?to=2&group=3");
        let old: TransferLeader = serde_json::from_str(r#"{"to":1}"#).unwrap();
        assert_eq!(old, TransferLeader { to: 1, group: 0 });
    }

    #[test]
    fn a_digest_is_sixteen_hex_digits() {
        assert_eq!(
            serde_json::to_string(&Digest::new(9, 0xab)).unwrap(),
            r#"{"version":9,"digest":"00000000000000ab"}"#
        );
    }

    #[test]
    fn a_digest_without_groups_reads_as_grouped_and_writes_no_groups_field() {
        let plain = serde_json::to_string(&Digest::new(9, 0xab)).unwrap();
        let grouped: GroupedDigest = serde_json::from_str(&plain).unwrap();
        assert!(grouped.groups.is_empty());
        assert_eq!(serde_json::to_string(&grouped).unwrap(), plain);

        let sharded = GroupedDigest {
            version: 9,
            digest: format!("{:016x}", 0xcd),
            groups: vec![GroupDigest::new(1, "['', 'g')", 0x1f)],
        };
        let text = serde_json::to_string(&sharded).unwrap();
        assert_eq!(
            text,
            r#"{"version":9,"digest":"00000000000000cd","groups":[{"id":1,"range":"['', 'g')","digest":"000000000000001f"}]}"#
        );
        // An older client reads the same answer as a plain digest.
        let old: Digest = serde_json::from_str(&text).unwrap();
        assert_eq!(old, Digest::new(9, 0xcd));
    }
}
