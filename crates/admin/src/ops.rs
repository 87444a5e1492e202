//! The cluster operations' requests and answers: `POST /cluster/init`, `/cluster/snapshot`,
//! `/cluster/add-node`, `/cluster/remove-node`, `/cluster/transfer-leader`, and
//! `GET /state/digest`. Every operation answers `{"outcome": ...}`; the digest answers
//! `{"version", "digest"}`.

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

/// The query of `POST /cluster/transfer-leader`: `?to=N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLeader {
    /// The voter that should lead.
    pub to: NodeId,
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
    fn a_digest_is_sixteen_hex_digits() {
        assert_eq!(
            serde_json::to_string(&Digest::new(9, 0xab)).unwrap(),
            r#"{"version":9,"digest":"00000000000000ab"}"#
        );
    }
}
