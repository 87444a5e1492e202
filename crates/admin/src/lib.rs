//! The admin HTTP API of a Dolmen node, as types: the serde structs of every endpoint's
//! request and answer ([`status`], [`ops`], [`faults`]), the refusal body ([`refusal`]), and
//! the one client ([`AdminClient`], async; [`blocking::AdminClient`] for synchronous callers;
//! feature `client`). Without that feature the crate is types and serde only: the Raft crate
//! builds its statuses from these types, so a field is named once for producer and readers.
//!
//! ```text
//!  server (axum handlers) ── serializes ──▶ JSON ◀── deserializes ── AdminClient
//!                                                     (dolmen cluster, join, chaos, tests)
//! ```
//!
//! The wire names are those of `docs/CONTRACTS.md` ("Admin HTTP API"); this crate depends on
//! no server code, so clients build without RocksDB.

pub mod backup;
#[cfg(feature = "client")]
pub mod blocking;
#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
mod error;
pub mod faults;
pub mod ops;
pub mod refusal;
pub mod status;

#[cfg(feature = "client")]
pub use client::{AdminClient, RawAnswer, Readiness, DEFAULT_TIMEOUT};
#[cfg(feature = "client")]
pub use error::AdminError;
pub use faults::{Rule, RuleAction, RuleError, RuleSet};
#[cfg(feature = "client")]
pub use hyper::Method;
pub use ops::{
    AddNode, Digest, DigestQuery, GroupDigest, GroupedDigest, InitOutcome, MembershipOutcome,
    Outcome, RemoveNode, SnapshotOutcome, TransferLeader,
};
pub use refusal::{ErrorBody, ErrorCode};
pub use status::{
    key_hex, ClusterStatus, GroupStatus, Health, MemberView, NodeId, NodeReport, NodeStatus,
    NotReady, NotReadyCondition, RaftMember, RaftStatus, ReadyAnswer, Role,
};
