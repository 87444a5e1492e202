//! The peer transport (docs/replication.md §6): gRPC (tonic) between replicas.
//!
//! ```text
//!  RaftCore ─▶ GrpcNetworkFactory (per group) ─▶ GrpcNetwork (RaftNetworkV2) ─┐
//!  RaftReplicator ─▶ PeerClient (forward, read_index, probe, oracle) ─────────┤ one lazily
//!                                                      connected Channel per   │ peer address,
//!                     [PeerFaults hook: deliver | drop | delay] ◀── every group ┘ shared
//!   ══ gRPC dolmen.raft.v1.Peer ══▶ serve_router() ─▶ GroupRouter[group_id] ─▶ dyn PeerHandler
//!                                      (NOT_FOUND: group not here)   └─▶ RaftPeerHandler ─▶ Raft
//! ```
//!
//! - [`handler`]: the [`PeerHandler`] seam the server calls, and [`RaftPeerHandler`], its
//!   implementation over `openraft::Raft`.
//! - [`router`]: [`GroupRouter`], the groups the server answers for, and [`GroupNotHere`].
//! - [`node_beat`]: `NodeBeat`, node-level liveness and hibernation announcements, both sides.
//! - [`server`]: [`serve_router`] (and [`serve`] for one group), the tonic server, including
//!   the snapshot receiver.
//! - [`client`]: the channel cache and [`PeerClient`] (follower → leader calls).
//! - `forward_stream`: forwarded writes batched on one stream per leader, both sides.
//! - [`timestamps`]: versions from the oracle, batched by the gateway ([`OracleClient`]) on
//!   one `Timestamps` stream per leader, both sides.
//! - `by_id`: what those two streams share (requests answered by id as they resolve).
//! - [`raft_network`]: [`GrpcNetworkFactory`], openraft's network over the same channels.
//! - [`faults`]: the test-only fault hook on outgoing calls.
//! - [`tls`]: mutual TLS, when the node has certificates.
//! - [`wire`]: the generated protobuf code and the conversions between it and openraft types.

mod by_id;
pub mod client;
pub mod faults;
mod forward_stream;
pub mod handler;
pub mod node_beat;
pub mod raft_network;
pub mod router;
pub mod server;
pub mod silent;
pub mod timestamps;
pub mod tls;
pub mod wire;

use std::time::Duration;

pub use client::{BadPeerAddress, PeerClient};
pub use faults::{FaultAction, PeerFaults};
pub use handler::{PeerHandler, ProbeInfo, RaftPeerHandler, TimestampsHook};
pub use node_beat::{Beat, BeatReceiver, BeatStreamError, Hibernating};
pub use raft_network::{GrpcNetwork, GrpcNetworkFactory};
pub use router::{GroupEntry, GroupNotHere, GroupRouter};
pub use server::{serve, serve_groups, serve_router, serve_with, IncomingSnapshot, ServeOptions};
pub use timestamps::{OracleClient, OracleStats};
pub use tls::{PeerTls, PEER_TLS_NAME};

pub use crate::log_store::GroupId;
pub use crate::types::{Snapshot, SnapshotMeta};

/// The largest gRPC message either side decodes or encodes: a commit is at most 10 MB (WIRE
/// §4), so one entry always fits, and appends are cut at [`APPEND_BATCH_BYTES`].
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Entry bytes in one append request: a batch is cut into requests of at most this much, so a
/// follower far behind never gets a request over [`MAX_MESSAGE_BYTES`] (one larger entry goes
/// alone).
pub const APPEND_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// The largest snapshot data chunk on the wire.
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Client-side settings of the peer transport (docs/replication.md §6.3).
#[derive(Clone, Debug)]
pub struct NetworkOptions {
    /// Bound on establishing a TCP connection to a peer.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive ping interval on idle and busy connections.
    pub keepalive_interval: Duration,
    /// How long a keep-alive ping may go unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
    /// Snapshot data chunk size; capped at [`MAX_SNAPSHOT_CHUNK_BYTES`] and by openraft's
    /// `snapshot_max_chunk_size`.
    pub snapshot_chunk_bytes: usize,
    /// Upper bound on a whole snapshot transfer, including the receiver's install.
    pub snapshot_max_duration: Duration,
    /// Mutual TLS to every peer, when set (`https`); plaintext otherwise.
    pub tls: Option<PeerTls>,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(3),
            snapshot_chunk_bytes: MAX_SNAPSHOT_CHUNK_BYTES,
            snapshot_max_duration: Duration::from_secs(600),
            tls: None,
        }
    }
}
