//! `NodeBeat` (docs/sharding.md §8.3): node-level liveness between peers, one message per peer
//! per heartbeat interval whatever the number of groups, carrying the groups the sender
//! hibernates. The domain types and their protobuf conversions, the receiving side the peer
//! server calls ([`BeatReceiver`], set on the [`GroupRouter`]), and the sending side
//! ([`PeerClient::node_beat`]). What a beat means is the hibernation controller's business
//! (`crate::hibernate`).
//!
//! ```text
//!  node A: controller ─ Beat each interval ─▶ PeerClient::node_beat(B) ══ one stream ══▶
//!  node B: serve_router ─▶ GroupRouter::beats() ─▶ BeatReceiver::receive(beat)
//! ```
//!
//! [`GroupRouter`]: crate::network::GroupRouter

use futures::stream::{BoxStream, StreamExt as _};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::log_store::GroupId;
use crate::network::client::BadPeerAddress;
use crate::network::faults::{decide, FaultAction};
use crate::network::wire::pb;
use crate::network::PeerClient;
use crate::{BoxFuture, NodeId};

/// Where a group's log stands when it hibernates: its leader's term and last log id. A leader
/// announces it; a follower whose own state is exactly this acknowledges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hibernating {
    /// The group.
    pub group: GroupId,
    /// The leader's term.
    pub term: u64,
    /// The index of the last log entry (every voter has it and has applied it).
    pub last_log_index: u64,
    /// The term of that entry.
    pub last_log_term: u64,
}

/// One node's beat to a peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Beat {
    /// The sending node.
    pub from: NodeId,
    /// Changes each time the sender's controller starts, so a restarted peer is told apart.
    pub incarnation: u64,
    /// The groups the sender hibernates: as their leader an announcement, as a follower an
    /// acknowledgement.
    pub hibernating: Vec<Hibernating>,
}

impl From<&Beat> for pb::Beat {
    fn from(beat: &Beat) -> Self {
        pb::Beat {
            from: beat.from,
            incarnation: beat.incarnation,
            hibernating: beat
                .hibernating
                .iter()
                .map(|h| pb::Hibernating {
                    group_id: h.group,
                    term: h.term,
                    last_log_index: h.last_log_index,
                    last_log_term: h.last_log_term,
                })
                .collect(),
        }
    }
}

impl From<pb::Beat> for Beat {
    fn from(beat: pb::Beat) -> Self {
        Beat {
            from: beat.from,
            incarnation: beat.incarnation,
            hibernating: beat
                .hibernating
                .into_iter()
                .map(|h| Hibernating {
                    group: h.group_id,
                    term: h.term,
                    last_log_index: h.last_log_index,
                    last_log_term: h.last_log_term,
                })
                .collect(),
        }
    }
}

/// The node-level side the peer server hands beats and group activity to: the hibernation
/// controller. Both calls are made on the server's tasks and must not block.
pub trait BeatReceiver: Send + Sync + 'static {
    /// A beat arrived from a peer.
    fn receive(&self, beat: Beat);
    /// A message for `group` that is not a heartbeat arrived, or a local caller is about to
    /// propose or read in it: the group must wake if it hibernates.
    fn touch(&self, group: GroupId);
}

/// Why a beat stream to a peer ended (the sender opens another at its next beat).
#[derive(Debug, thiserror::Error)]
pub enum BeatStreamError {
    /// The peer's address is not usable.
    #[error(transparent)]
    BadAddress(#[from] BadPeerAddress),
    /// The stream could not be opened, or broke.
    #[error("the beat stream to node {to} at {addr} ended: {status}")]
    Broken {
        /// The peer.
        to: NodeId,
        /// Its peer address.
        addr: String,
        /// What gRPC said.
        #[source]
        status: Status,
    },
}

impl PeerClient {
    /// Sends each beat `beats` yields to node `to` at `peer_addr` on one `NodeBeat` stream, until
    /// `beats` ends or the stream breaks. Each beat passes the fault hook as a `"NodeBeat"` call
    /// (a dropped beat is skipped, a delayed one waits).
    pub fn node_beat(
        &self,
        to: NodeId,
        peer_addr: &str,
        mut beats: BoxStream<'static, Beat>,
    ) -> BoxFuture<'static, Result<(), BeatStreamError>> {
        let (from, channels, faults) = self.parts();
        let client = channels.client(peer_addr);
        let addr = peer_addr.to_string();
        // As `applied_stream`: a channel fed beside the call keeps the call's future `Send`.
        let (sender, outgoing) = tokio::sync::mpsc::channel::<pb::Beat>(1);
        let feed = async move {
            while let Some(beat) = beats.next().await {
                match decide(faults.as_ref(), from, to, "NodeBeat") {
                    FaultAction::Drop => continue,
                    FaultAction::Delay(delay) => tokio::time::sleep(delay).await,
                    FaultAction::Deliver | FaultAction::Duplicate => {}
                }
                if sender.send(pb::Beat::from(&beat)).await.is_err() {
                    return;
                }
            }
        };
        Box::pin(async move {
            let mut client = client?;
            let call = client.node_beat(ReceiverStream::new(outgoing));
            tokio::pin!(call);
            let result = tokio::select! {
                result = &mut call => result,
                () = feed => call.await,
            };
            result
                .map(|_| ())
                .map_err(|status| BeatStreamError::Broken { to, addr, status })
        })
    }
}

/// The server side of one `NodeBeat` stream: every beat to `receiver`, until the peer closes
/// the stream or the server shuts down (`closed` turns `true`). Without a receiver (no
/// hibernation controller on this node) the stream is refused with `UNIMPLEMENTED`.
pub(crate) async fn serve(
    receiver: Option<std::sync::Arc<dyn BeatReceiver>>,
    mut beats: Streaming<pb::Beat>,
    mut closed: tokio::sync::watch::Receiver<bool>,
) -> Result<pb::Empty, Status> {
    let Some(receiver) = receiver else {
        return Err(Status::unimplemented(
            "NodeBeat: this node runs no hibernation controller",
        ));
    };
    loop {
        let closing = async {
            let _ = closed.wait_for(|closed| *closed).await;
        };
        let beat = tokio::select! {
            beat = beats.message() => beat?,
            () = closing => None,
        };
        match beat {
            Some(beat) => receiver.receive(Beat::from(beat)),
            None => return Ok(pb::Empty {}),
        }
    }
}
