//! The peer transport end to end: a real tonic server on 127.0.0.1:0 with a mock
//! `PeerHandler` (`harness`), driven through the real client side (openraft's network from
//! `GrpcNetworkFactory`, and `PeerClient`); `groups` serves several groups behind one
//! `GroupRouter`; `live` puts a real Raft behind it; `timestamps` drives the oracle's stream
//! through the gateway's batching client. `hibernate` runs many idle groups under one hibernation
//! controller per node.

mod append;
mod groups;
mod harness;
mod hibernate;
mod live;
mod peer_client;
mod refusals;
mod silent;
mod snapshot;
mod timestamps;
mod tls;
mod vote;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_engine::{Command, Outcome, Transaction};
use dolmen_raft::network::wire::pb;
use dolmen_raft::network::{
    serve, serve_groups, serve_with, FaultAction, GroupRouter, GrpcNetwork, GrpcNetworkFactory,
    IncomingSnapshot, NetworkOptions, PeerFaults, PeerHandler, PeerTls, ProbeInfo, ServeOptions,
    Snapshot, SnapshotMeta,
};
use dolmen_raft::oracle::VersionGrant;
use dolmen_raft::types::{
    DolmenRaft, Entry, EntryPayload, LogId, Membership, NodeAddr, SnapshotFile, Vote,
};
use dolmen_raft::{Applied, BoxFuture, NodeId, ProposeError};
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use openraft::errors::{Fatal, RPCError, RaftError, ReplicationClosed, StreamingError};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError,
    StreamAppendResult, TransferLeaderError, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::StoredMembership;
use parking_lot::Mutex;

use harness::*;

const THIS_NODE: NodeId = 0;
const PEER: NodeId = 1;
const TTL: Duration = Duration::from_secs(2);
