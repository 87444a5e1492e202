//! The generated `dolmen.raft.v1` code ([`pb`]) and the conversions between its messages and
//! openraft/engine types. Openraft values are bytes in the [`crate::codec`] encodings; this file
//! only frames them, so each value has exactly one codec.

use std::io;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, StreamAppendError, StreamAppendResult,
    TransferLeaderError, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::StoredMembership;

use crate::codec;
use crate::log_store::GroupId;
use crate::network::SnapshotMeta;
use crate::oracle::VersionGrant;
use crate::types::{DolmenRaft, LogId, Vote};
use crate::{Applied, NodeId, ProposeError};

/// Code generated from `proto/dolmen_raft.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("dolmen.raft.v1");
}

/// A field that did not decode; names the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {source}")]
pub struct DecodeError {
    /// The protobuf field.
    pub field: &'static str,
    /// What was wrong with it.
    #[source]
    pub source: io::Error,
}

impl DecodeError {
    fn new(field: &'static str, source: io::Error) -> Self {
        Self { field, source }
    }

    fn missing(field: &'static str) -> Self {
        Self::new(field, io::Error::new(io::ErrorKind::InvalidData, "missing"))
    }
}

impl From<DecodeError> for tonic::Status {
    fn from(e: DecodeError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

fn vote(field: &'static str, bytes: &[u8]) -> Result<Vote, DecodeError> {
    codec::decode_vote(bytes).map_err(|e| DecodeError::new(field, e))
}

fn log_id(field: &'static str, bytes: &[u8]) -> Result<LogId, DecodeError> {
    codec::decode_log_id(bytes).map_err(|e| DecodeError::new(field, e))
}

fn opt_log_id(field: &'static str, bytes: Option<&[u8]>) -> Result<Option<LogId>, DecodeError> {
    bytes.map(|b| log_id(field, b)).transpose()
}

fn enc_opt_log_id(id: Option<&LogId>) -> Option<Vec<u8>> {
    id.map(codec::encode_log_id)
}

/// `AppendEntriesRequest` of `group` → protobuf, as one request.
pub fn append_request_to_pb(
    group: GroupId,
    req: &AppendEntriesRequest<DolmenRaft>,
) -> io::Result<pb::AppendEntriesRequest> {
    let mut parts = append_request_to_pb_parts(group, req, usize::MAX)?;
    parts
        .pop()
        .ok_or_else(|| io::Error::other("an append encodes to at least one request"))
}

/// `AppendEntriesRequest` of `group` → protobuf requests whose entries total at most `budget` bytes each
/// (an entry larger than `budget` goes alone), so that no request nears the gRPC message limit
/// (docs/replication.md §6.3). The parts are consecutive appends with the request's vote and
/// leader commit, each after the previous part's last entry: a follower appends them in order
/// (a commit index beyond its log waits for the log), and its answer to the last part is its
/// answer to the whole request. A request without entries is one part.
pub fn append_request_to_pb_parts(
    group: GroupId,
    req: &AppendEntriesRequest<DolmenRaft>,
    budget: usize,
) -> io::Result<Vec<pb::AppendEntriesRequest>> {
    let vote = codec::encode_vote(&req.vote);
    let leader_commit = enc_opt_log_id(req.leader_commit.as_ref());
    let part = |prev: Option<&LogId>, entries: Vec<Vec<u8>>| pb::AppendEntriesRequest {
        group_id: group,
        vote: vote.clone(),
        prev_log_id: enc_opt_log_id(prev),
        entries,
        leader_commit: leader_commit.clone(),
    };
    let mut parts = Vec::new();
    let mut prev = req.prev_log_id.as_ref();
    let (mut entries, mut bytes) = (Vec::new(), 0usize);
    for (i, entry) in req.entries.iter().enumerate() {
        let encoded = codec::encode_entry(entry)?;
        if !entries.is_empty() && bytes.saturating_add(encoded.len()) > budget {
            parts.push(part(prev, std::mem::take(&mut entries)));
            prev = Some(&req.entries[i - 1].log_id);
            bytes = 0;
        }
        bytes = bytes.saturating_add(encoded.len());
        entries.push(encoded);
    }
    parts.push(part(prev, entries));
    Ok(parts)
}

/// Protobuf → `AppendEntriesRequest` (the group is the caller's: the server looks it up).
pub fn append_request_from_pb(
    req: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<DolmenRaft>, DecodeError> {
    let entries = req
        .entries
        .iter()
        .map(|b| codec::decode_entry(b).map_err(|e| DecodeError::new("entries", e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppendEntriesRequest {
        vote: vote("vote", &req.vote)?,
        prev_log_id: opt_log_id("prev_log_id", req.prev_log_id.as_deref())?,
        entries,
        leader_commit: opt_log_id("leader_commit", req.leader_commit.as_deref())?,
    })
}

/// `AppendEntriesResponse` → protobuf.
pub fn append_response_to_pb(
    resp: &AppendEntriesResponse<DolmenRaft>,
) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match resp {
        AppendEntriesResponse::Success => R::Success(pb::Empty {}),
        AppendEntriesResponse::PartialSuccess(matching) => R::PartialSuccess(pb::PartialSuccess {
            matching: enc_opt_log_id(matching.as_ref()),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Empty {}),
        AppendEntriesResponse::HigherVote(v) => R::HigherVote(codec::encode_vote(v)),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
    }
}

/// Protobuf → `AppendEntriesResponse`.
pub fn append_response_from_pb(
    resp: pb::AppendEntriesResponse,
) -> Result<AppendEntriesResponse<DolmenRaft>, DecodeError> {
    use pb::append_entries_response::Result as R;
    Ok(match resp.result {
        Some(R::Success(_)) => AppendEntriesResponse::Success,
        Some(R::PartialSuccess(p)) => AppendEntriesResponse::PartialSuccess(opt_log_id(
            "partial_success.matching",
            p.matching.as_deref(),
        )?),
        Some(R::Conflict(_)) => AppendEntriesResponse::Conflict,
        Some(R::HigherVote(v)) => AppendEntriesResponse::HigherVote(vote("higher_vote", &v)?),
        None => return Err(DecodeError::missing("result")),
    })
}

/// One answer of an `AppendStream` → protobuf.
pub fn stream_result_to_pb(result: &StreamAppendResult<DolmenRaft>) -> pb::AppendStreamResponse {
    use pb::append_stream_response::Result as R;
    let result = match result {
        Ok(matching) => R::Matching(pb::Matching {
            log_id: enc_opt_log_id(matching.as_ref()),
        }),
        Err(StreamAppendError::Conflict(id)) => R::Conflict(codec::encode_log_id(id)),
        Err(StreamAppendError::HigherVote(v)) => R::HigherVote(codec::encode_vote(v)),
    };
    pb::AppendStreamResponse {
        result: Some(result),
    }
}

/// Protobuf → one answer of an `AppendStream`.
pub fn stream_result_from_pb(
    resp: pb::AppendStreamResponse,
) -> Result<StreamAppendResult<DolmenRaft>, DecodeError> {
    use pb::append_stream_response::Result as R;
    Ok(match resp.result {
        Some(R::Matching(m)) => Ok(opt_log_id("matching.log_id", m.log_id.as_deref())?),
        Some(R::Conflict(id)) => Err(StreamAppendError::Conflict(log_id("conflict", &id)?)),
        Some(R::HigherVote(v)) => Err(StreamAppendError::HigherVote(vote("higher_vote", &v)?)),
        None => return Err(DecodeError::missing("result")),
    })
}

/// `VoteRequest` of `group` → protobuf (Vote and PreVote share the message).
pub fn vote_request_to_pb(group: GroupId, req: &VoteRequest<DolmenRaft>) -> pb::VoteRequest {
    pb::VoteRequest {
        group_id: group,
        vote: codec::encode_vote(&req.vote),
        last_log_id: enc_opt_log_id(req.last_log_id.as_ref()),
        leadership_transfer: req.leadership_transfer,
    }
}

/// Protobuf → `VoteRequest`.
pub fn vote_request_from_pb(req: pb::VoteRequest) -> Result<VoteRequest<DolmenRaft>, DecodeError> {
    let mut out = VoteRequest::new(
        vote("vote", &req.vote)?,
        opt_log_id("last_log_id", req.last_log_id.as_deref())?,
    );
    out.leadership_transfer = req.leadership_transfer;
    Ok(out)
}

/// `VoteResponse` → protobuf.
pub fn vote_response_to_pb(resp: &VoteResponse<DolmenRaft>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: codec::encode_vote(&resp.vote),
        granted: resp.vote_granted,
        last_log_id: enc_opt_log_id(resp.last_log_id.as_ref()),
    }
}

/// Protobuf → `VoteResponse`.
pub fn vote_response_from_pb(
    resp: pb::VoteResponse,
) -> Result<VoteResponse<DolmenRaft>, DecodeError> {
    Ok(VoteResponse {
        vote: vote("vote", &resp.vote)?,
        vote_granted: resp.granted,
        last_log_id: opt_log_id("last_log_id", resp.last_log_id.as_deref())?,
    })
}

/// `TransferLeaderRequest` of `group` → protobuf.
pub fn transfer_request_to_pb(
    group: GroupId,
    req: &TransferLeaderRequest<DolmenRaft>,
) -> pb::TransferLeaderRequest {
    pb::TransferLeaderRequest {
        group_id: group,
        from_leader: codec::encode_vote(req.from_leader()),
        to_node_id: *req.to_node_id(),
        last_log_id: enc_opt_log_id(req.last_log_id()),
    }
}

/// Protobuf → `TransferLeaderRequest`.
pub fn transfer_request_from_pb(
    req: pb::TransferLeaderRequest,
) -> Result<TransferLeaderRequest<DolmenRaft>, DecodeError> {
    Ok(TransferLeaderRequest::new(
        vote("from_leader", &req.from_leader)?,
        req.to_node_id,
        opt_log_id("last_log_id", req.last_log_id.as_deref())?,
    ))
}

/// `TransferLeaderResponse` (the remote's verdict) → protobuf.
pub fn transfer_response_to_pb(
    resp: &TransferLeaderResponse<DolmenRaft>,
) -> pb::TransferLeaderResponse {
    use pb::transfer_leader_response::Result as R;
    let result = match resp {
        Ok(()) => R::Ok(pb::Empty {}),
        Err(TransferLeaderError::VoteChanged { expected, actual }) => {
            R::VoteChanged(pb::VoteChanged {
                expected: codec::encode_vote(expected),
                actual: codec::encode_vote(actual),
            })
        }
        Err(TransferLeaderError::LogNotFlushed { expected, actual }) => {
            R::LogNotFlushed(pb::LogNotFlushed {
                expected: enc_opt_log_id(expected.as_ref()),
                actual: enc_opt_log_id(actual.as_ref()),
            })
        }
    };
    pb::TransferLeaderResponse {
        result: Some(result),
    }
}

/// Protobuf → `TransferLeaderResponse`.
pub fn transfer_response_from_pb(
    resp: pb::TransferLeaderResponse,
) -> Result<TransferLeaderResponse<DolmenRaft>, DecodeError> {
    use pb::transfer_leader_response::Result as R;
    Ok(match resp.result {
        Some(R::Ok(_)) => Ok(()),
        Some(R::VoteChanged(v)) => Err(TransferLeaderError::VoteChanged {
            expected: vote("vote_changed.expected", &v.expected)?,
            actual: vote("vote_changed.actual", &v.actual)?,
        }),
        Some(R::LogNotFlushed(l)) => Err(TransferLeaderError::LogNotFlushed {
            expected: opt_log_id("log_not_flushed.expected", l.expected.as_deref())?,
            actual: opt_log_id("log_not_flushed.actual", l.actual.as_deref())?,
        }),
        None => return Err(DecodeError::missing("result")),
    })
}

/// The first message of a snapshot stream of `group`.
pub fn snapshot_header_to_pb(
    group: GroupId,
    leader_vote: &Vote,
    meta: &SnapshotMeta,
    size: u64,
) -> io::Result<pb::SnapshotHeader> {
    Ok(pb::SnapshotHeader {
        group_id: group,
        vote: codec::encode_vote(leader_vote),
        last_log_id: enc_opt_log_id(meta.last_log_id.as_ref()),
        membership_log_id: enc_opt_log_id(meta.last_membership.log_id().as_ref()),
        membership: codec::encode_membership(meta.last_membership.membership())?,
        size,
    })
}

/// A snapshot stream's header → `(leader vote, meta, data size)`.
pub fn snapshot_header_from_pb(
    header: pb::SnapshotHeader,
) -> Result<(Vote, SnapshotMeta, u64), DecodeError> {
    let membership = codec::decode_membership(&header.membership)
        .map_err(|e| DecodeError::new("header.membership", e))?;
    let meta = SnapshotMeta {
        last_log_id: opt_log_id("header.last_log_id", header.last_log_id.as_deref())?,
        last_membership: StoredMembership::new(
            opt_log_id(
                "header.membership_log_id",
                header.membership_log_id.as_deref(),
            )?,
            membership,
        ),
    };
    Ok((vote("header.vote", &header.vote)?, meta, header.size))
}

/// `NOT_LEADER` → its protobuf hint.
pub fn not_leader_to_pb(leader_id: Option<NodeId>, leader_addr: Option<String>) -> pb::NotLeader {
    pb::NotLeader {
        leader_id,
        leader_client_addr: leader_addr,
    }
}

/// A protobuf hint → `ProposeError::NotLeader`.
pub fn not_leader_from_pb(hint: pb::NotLeader) -> ProposeError {
    ProposeError::NotLeader {
        leader_id: hint.leader_id,
        leader_addr: hint.leader_client_addr.filter(|a| !a.is_empty()),
    }
}

/// A forward's answer → protobuf.
pub fn forward_response_to_pb(
    result: &Result<Applied, ProposeError>,
) -> io::Result<pb::ForwardResponse> {
    use pb::forward_response::Result as R;
    let result = match result {
        Ok(applied) => R::Applied(pb::Applied {
            version: applied.version,
            outcome: codec::encode_outcome(&applied.outcome)?,
        }),
        Err(ProposeError::NotLeader {
            leader_id,
            leader_addr,
        }) => R::NotLeader(not_leader_to_pb(*leader_id, leader_addr.clone())),
        Err(ProposeError::Unavailable(message) | ProposeError::LeaderUnreachable(message)) => {
            R::Unavailable(pb::Unavailable {
                message: message.clone(),
            })
        }
        Err(ProposeError::Timeout(_)) => R::Timeout(pb::Timeout {}),
        Err(ProposeError::NotAppliedByAll {
            node,
            addr,
            applied,
            index,
            waited,
        }) => R::AllWaitTimeout(pb::AllWaitTimeout {
            node_id: *node,
            peer_addr: addr.clone(),
            applied: *applied,
            index: *index,
            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        }),
    };
    Ok(pb::ForwardResponse {
        result: Some(result),
    })
}

/// A read index answer → protobuf.
pub fn read_index_response_to_pb(result: &Result<u64, ProposeError>) -> pb::ReadIndexResponse {
    use pb::read_index_response::Result as R;
    let result = match result {
        Ok(index) => R::ReadIndex(*index),
        Err(ProposeError::NotLeader {
            leader_id,
            leader_addr,
        }) => R::NotLeader(not_leader_to_pb(*leader_id, leader_addr.clone())),
        Err(ProposeError::Unavailable(message) | ProposeError::LeaderUnreachable(message)) => {
            R::Unavailable(pb::Unavailable {
                message: message.clone(),
            })
        }
        // A read index never waits for every voter; were it to, the outcome is as unknown.
        Err(ProposeError::Timeout(_) | ProposeError::NotAppliedByAll { .. }) => {
            R::Timeout(pb::Timeout {})
        }
    };
    pb::ReadIndexResponse {
        result: Some(result),
    }
}

/// The oracle's answer to `Timestamps` request `id` → protobuf. Every error means nothing
/// was handed out (versions drawn for it are burned), so each is `Unavailable` but `NOT_LEADER`.
pub fn timestamp_reply_to_pb(
    id: u64,
    result: &Result<VersionGrant, ProposeError>,
) -> pb::TimestampReply {
    use pb::timestamp_reply::Result as R;
    let result = match result {
        Ok(grant) => R::Range(pb::VersionRange {
            first: grant.first,
            count: grant.count,
            read_version: grant.read_version,
        }),
        Err(ProposeError::NotLeader {
            leader_id,
            leader_addr,
        }) => R::NotLeader(not_leader_to_pb(*leader_id, leader_addr.clone())),
        Err(e) => R::Unavailable(pb::Unavailable {
            message: match e {
                ProposeError::Unavailable(m) | ProposeError::LeaderUnreachable(m) => m.clone(),
                other => other.to_string(),
            },
        }),
    };
    pb::TimestampReply {
        id,
        result: Some(result),
    }
}

/// A `Timestamps` reply's result → the grant, or why there is none (nothing handed out).
pub fn version_grant_from_pb(
    result: Option<pb::timestamp_reply::Result>,
) -> Result<VersionGrant, ProposeError> {
    use pb::timestamp_reply::Result as R;
    match result {
        Some(R::Range(range)) => Ok(VersionGrant {
            first: range.first,
            count: range.count,
            read_version: range.read_version,
        }),
        Some(R::NotLeader(hint)) => Err(not_leader_from_pb(hint)),
        Some(R::Unavailable(u)) => Err(ProposeError::Unavailable(u.message)),
        None => Err(ProposeError::Unavailable(
            "the oracle answered without a result".into(),
        )),
    }
}

/// A forward's `TIMEOUT` under `replication_mode = "all"` → the error, naming the voter.
pub fn all_wait_timeout_from_pb(t: pb::AllWaitTimeout) -> ProposeError {
    ProposeError::NotAppliedByAll {
        node: t.node_id,
        addr: t.peer_addr,
        applied: t.applied,
        index: t.index,
        waited: std::time::Duration::from_millis(t.waited_ms),
    }
}

/// Decodes an applied outcome.
pub fn applied_from_pb(applied: pb::Applied) -> Result<Applied, DecodeError> {
    Ok(Applied {
        version: applied.version,
        outcome: codec::decode_outcome(&applied.outcome)
            .map_err(|e| DecodeError::new("applied.outcome", e))?,
    })
}

/// Decodes a forwarded command.
pub fn command_from_pb(bytes: &[u8]) -> Result<dolmen_engine::Command, DecodeError> {
    codec::decode_command(bytes).map_err(|e| DecodeError::new("command", e))
}

/// Decodes a vote carried by a snapshot response.
pub fn snapshot_vote_from_pb(bytes: &[u8]) -> Result<Vote, DecodeError> {
    vote("vote", bytes)
}
