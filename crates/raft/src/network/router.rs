//! The Raft groups a node's peer server answers for (docs/sharding.md §8.1): [`GroupRouter`]
//! maps each group id to its [`PeerHandler`] and the factory of its received snapshot files.
//! Groups are added and removed while the server runs; a group not in it is [`GroupNotHere`].
//!
//! ```text
//!  request { group_id } ─▶ GroupRouter::get(group_id) ─┬─▶ GroupEntry { handler, incoming }
//!                                                      └─▶ GroupNotHere ─▶ NOT_FOUND / Unavailable
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use crate::log_store::GroupId;
use crate::network::node_beat::BeatReceiver;
use crate::network::{IncomingSnapshot, PeerHandler};
use crate::NodeId;

/// A request for a Raft group this node does not run (docs/replication.md invariant 16). The
/// server answers it with gRPC `NOT_FOUND` (a `ForwardStream` item with `Unavailable`); nothing
/// was handled or proposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("group {group} is not on {}", node_name(*.node))]
pub struct GroupNotHere {
    /// The group the request named.
    pub group: GroupId,
    /// The answering node, when the router knows it.
    pub node: Option<NodeId>,
}

fn node_name(node: Option<NodeId>) -> String {
    match node {
        Some(id) => format!("node {id}"),
        None => "this node".to_string(),
    }
}

impl From<GroupNotHere> for tonic::Status {
    fn from(e: GroupNotHere) -> Self {
        tonic::Status::not_found(e.to_string())
    }
}

/// What the router holds for one group.
pub struct GroupEntry {
    /// Serves the group's requests.
    pub handler: Arc<dyn PeerHandler>,
    /// Creates the files the group's received snapshots are written to (each group's own
    /// directory, docs/sharding.md §7).
    pub incoming: IncomingSnapshot,
}

/// `GroupId → GroupEntry`, shared by clones: the peer server holds one clone and looks up every
/// request's group in it, the node holds another to add and remove groups while it serves.
/// A lookup takes a read lock and clones one `Arc`; a change takes the write lock briefly.
#[derive(Clone, Default)]
pub struct GroupRouter {
    /// The answering node, named in [`GroupNotHere`]; `None` when not known.
    node: Option<NodeId>,
    groups: Arc<RwLock<BTreeMap<GroupId, Arc<GroupEntry>>>>,
    /// The node-level receiver of `NodeBeat` and of [`touch`](Self::touch) (the hibernation
    /// controller, docs/sharding.md §8.3), set once; none: beats are refused, touches ignored.
    beats: Arc<OnceLock<Arc<dyn BeatReceiver>>>,
}

impl GroupRouter {
    /// An empty router of node `node`.
    pub fn new(node: NodeId) -> Self {
        Self {
            node: Some(node),
            groups: Arc::default(),
            beats: Arc::default(),
        }
    }

    /// A router holding only `handler` as `group`, of a node it does not know by id (for
    /// [`serve`](crate::network::serve), which is given one handler).
    pub fn single(
        group: GroupId,
        handler: Arc<dyn PeerHandler>,
        incoming: IncomingSnapshot,
    ) -> Self {
        let router = Self::default();
        router.insert(group, handler, incoming);
        router
    }

    /// Serves `group` with `handler`, its received snapshots going to files from `incoming`.
    /// Replaces the group's entry if it had one (streams already open keep the old handler until
    /// their next message, which then ends them with `NOT_FOUND`); returns whether it did.
    pub fn insert(
        &self,
        group: GroupId,
        handler: Arc<dyn PeerHandler>,
        incoming: IncomingSnapshot,
    ) -> bool {
        let entry = Arc::new(GroupEntry { handler, incoming });
        self.groups.write().insert(group, entry).is_some()
    }

    /// Stops serving `group`: its later requests get [`GroupNotHere`], and its open streams end
    /// with it at their next message. Returns whether the group was served.
    pub fn remove(&self, group: GroupId) -> bool {
        self.groups.write().remove(&group).is_some()
    }

    /// The entry of `group`, or [`GroupNotHere`] naming it.
    pub fn get(&self, group: GroupId) -> Result<Arc<GroupEntry>, GroupNotHere> {
        self.groups.read().get(&group).cloned().ok_or(GroupNotHere {
            group,
            node: self.node,
        })
    }

    /// Whether `entry` is still what `group` is served by (not removed, not replaced): a stream
    /// checks it before each message it passes on.
    pub fn is_current(&self, group: GroupId, entry: &Arc<GroupEntry>) -> bool {
        self.groups
            .read()
            .get(&group)
            .is_some_and(|current| Arc::ptr_eq(current, entry))
    }

    /// The groups served now, in order.
    pub fn groups(&self) -> Vec<GroupId> {
        self.groups.read().keys().copied().collect()
    }

    /// The answering node, when known.
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }

    /// Hands `NodeBeat` messages and [`touch`](Self::touch)es to `receiver` (this node's
    /// hibernation controller) from now on. Set once: returns `false`, changing nothing, when a
    /// receiver was set already.
    pub fn set_beats(&self, receiver: Arc<dyn BeatReceiver>) -> bool {
        self.beats.set(receiver).is_ok()
    }

    /// The receiver of `NodeBeat` messages, when one is set.
    pub fn beats(&self) -> Option<&Arc<dyn BeatReceiver>> {
        self.beats.get()
    }

    /// A message for `group` that is not a heartbeat arrived (a vote, an append carrying
    /// entries, a snapshot, a forwarded write, a read index): the group wakes if it hibernates
    /// (docs/sharding.md §8.3). One atomic load when no controller is set.
    pub fn touch(&self, group: GroupId) {
        if let Some(beats) = self.beats.get() {
            beats.touch(group);
        }
    }
}
