//! The encodings of what the log store and the state machine persist (entries, log ids, votes,
//! stored memberships, snapshot metas) and of what the peer transport carries besides
//! (memberships, engine commands and outcomes). One versioned binary format for all of it,
//! specified byte by byte in docs/encoding.md; the primitives and the engine's own values
//! (commands, outcomes) are `dolmen_engine::encoding`, so each value has exactly one codec.
//!
//! ```text
//! entry             = 0x01 ‖ log id ‖ u8 payload (0 blank · 1 command ‖ command · 2 membership ‖ membership)
//! log id            = 0x01 ‖ be64 term ‖ be64 node_id ‖ be64 index
//! vote              = 0x01 ‖ be64 term ‖ be64 node_id ‖ flag committed
//! stored membership = 0x01 ‖ opt log id ‖ membership
//! snapshot meta     = 0x01 ‖ opt log id (last log id) ‖ opt log id ‖ membership (last membership)
//! membership value  = 0x01 ‖ membership
//! command / outcome = dolmen_engine::encoding::{encode,decode}_{command,outcome}
//! ```
//!
//! Functions return `io::Result` because openraft's storage traits and the transport speak
//! `io::Error`; a value that does not decode is `InvalidData` whose source is a typed
//! [`DecodeError`] (an unknown version is [`DecodeError::UnknownVersion`], naming it).

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use dolmen_engine::encoding::{self as enc, DecodeError, EncodeError, Reader, Writer};
use dolmen_engine::{Command, Outcome};
use openraft::impls::leader_id_adv::LeaderId;

use crate::types::{Entry, EntryPayload, LogId, Membership, NodeAddr, Vote};
pub use crate::types::{SnapshotMeta, StoredMembership};
use crate::NodeId;

/// Payload tag of a blank entry (no body).
const PAYLOAD_BLANK: u8 = 0;
/// Payload tag of an entry carrying an engine command.
const PAYLOAD_COMMAND: u8 = 1;
/// Payload tag of a membership entry.
const PAYLOAD_MEMBERSHIP: u8 = 2;

fn put_log_id(w: &mut Writer, id: &LogId) {
    w.u64(id.leader_id.term);
    w.u64(id.leader_id.node_id);
    w.u64(id.index);
}

fn put_opt_log_id(w: &mut Writer, id: Option<&LogId>) {
    w.flag(id.is_some());
    if let Some(id) = id {
        put_log_id(w, id);
    }
}

/// Writes the `membership` body: joint configs, then the address book.
fn put_membership(w: &mut Writer, membership: &Membership) -> Result<(), EncodeError> {
    let configs = membership.get_joint_config();
    w.count("configs", configs.len())?;
    for config in configs {
        w.count("voters", config.len())?;
        for id in config {
            w.u64(*id);
        }
    }
    let nodes: Vec<_> = membership.nodes().collect();
    w.count("nodes", nodes.len())?;
    for (id, addr) in nodes {
        w.u64(*id);
        w.str("client_addr", &addr.client_addr)?;
        w.str("peer_addr", &addr.peer_addr)?;
        w.str("admin_addr", &addr.admin_addr)?;
    }
    Ok(())
}

fn read_log_id(r: &mut Reader<'_>) -> Result<LogId, DecodeError> {
    let term = r.u64("term")?;
    let node_id = r.u64("node_id")?;
    let index = r.u64("index")?;
    Ok(LogId {
        leader_id: LeaderId { term, node_id },
        index,
    })
}

fn read_opt_log_id(r: &mut Reader<'_>) -> Result<Option<LogId>, DecodeError> {
    if r.flag("log id presence flag")? {
        Ok(Some(read_log_id(r)?))
    } else {
        Ok(None)
    }
}

/// Reads the `membership` body shared by entries and [`encode_membership`].
fn read_membership(r: &mut Reader<'_>) -> Result<Membership, DecodeError> {
    let mut configs = Vec::new();
    for _ in 0..r.count("configs")? {
        let mut config = BTreeSet::new();
        for _ in 0..r.count("voters")? {
            config.insert(r.u64("voter")?);
        }
        configs.push(config);
    }
    let mut nodes: BTreeMap<NodeId, NodeAddr> = BTreeMap::new();
    for _ in 0..r.count("nodes")? {
        let id = r.u64("node id")?;
        let addr = NodeAddr {
            client_addr: r.str("client_addr")?,
            peer_addr: r.str("peer_addr")?,
            admin_addr: r.str("admin_addr")?,
        };
        nodes.insert(id, addr);
    }
    Membership::new(configs, nodes).map_err(|e| r.invalid(e))
}

/// Encodes a log entry as a `raft_log` value (and an entry on the wire).
pub fn encode_entry(entry: &Entry) -> io::Result<Vec<u8>> {
    let mut w = Writer::new("raft_log entry");
    put_log_id(&mut w, &entry.log_id);
    match &entry.payload {
        EntryPayload::Blank => w.u8(PAYLOAD_BLANK),
        EntryPayload::Normal(command) => {
            w.u8(PAYLOAD_COMMAND);
            enc::put_command(&mut w, command)?;
        }
        EntryPayload::Membership(membership) => {
            w.u8(PAYLOAD_MEMBERSHIP);
            put_membership(&mut w, membership)?;
        }
    }
    Ok(w.finish())
}

/// Decodes a `raft_log` value written by [`encode_entry`].
pub fn decode_entry(bytes: &[u8]) -> io::Result<Entry> {
    Ok(Reader::whole("raft_log entry", bytes, |r| {
        let log_id = read_log_id(r)?;
        let payload = match r.u8("payload tag")? {
            PAYLOAD_BLANK => EntryPayload::Blank,
            PAYLOAD_COMMAND => EntryPayload::Normal(enc::read_command(r)?),
            PAYLOAD_MEMBERSHIP => EntryPayload::Membership(read_membership(r)?),
            tag => return Err(r.unknown_tag("payload tag", tag)),
        };
        Ok(Entry { log_id, payload })
    })?)
}

/// Encodes a log id (`raft_state` `committed` and `last_purged`, `meta/raft/last_applied`).
pub fn encode_log_id(id: &LogId) -> Vec<u8> {
    let mut w = Writer::with_capacity("log id", 25);
    put_log_id(&mut w, id);
    w.finish()
}

/// Decodes a value written by [`encode_log_id`].
pub fn decode_log_id(bytes: &[u8]) -> io::Result<LogId> {
    Ok(Reader::whole("log id", bytes, read_log_id)?)
}

/// Encodes a vote (`raft_state` `vote`).
pub fn encode_vote(vote: &Vote) -> Vec<u8> {
    let mut w = Writer::with_capacity("vote", 18);
    w.u64(vote.leader_id.term);
    w.u64(vote.leader_id.node_id);
    w.flag(vote.committed);
    w.finish()
}

/// Decodes a value written by [`encode_vote`].
pub fn decode_vote(bytes: &[u8]) -> io::Result<Vote> {
    Ok(Reader::whole("vote", bytes, |r| {
        let term = r.u64("term")?;
        let node_id = r.u64("node_id")?;
        let committed = r.flag("committed flag")?;
        Ok(Vote {
            leader_id: LeaderId { term, node_id },
            committed,
        })
    })?)
}

/// Encodes a stored membership (the state machine's `raft/last_membership` meta value).
pub fn encode_stored_membership(stored: &StoredMembership) -> io::Result<Vec<u8>> {
    let mut w = Writer::new("stored membership");
    put_opt_log_id(&mut w, stored.log_id().as_ref());
    put_membership(&mut w, stored.membership())?;
    Ok(w.finish())
}

/// Decodes a value written by [`encode_stored_membership`].
pub fn decode_stored_membership(bytes: &[u8]) -> io::Result<StoredMembership> {
    Ok(Reader::whole("stored membership", bytes, |r| {
        let log_id = read_opt_log_id(r)?;
        Ok(StoredMembership::new(log_id, read_membership(r)?))
    })?)
}

/// Encodes a snapshot meta (the header of a snapshot file).
pub fn encode_snapshot_meta(meta: &SnapshotMeta) -> io::Result<Vec<u8>> {
    let mut w = Writer::new("snapshot meta");
    put_opt_log_id(&mut w, meta.last_log_id.as_ref());
    put_opt_log_id(&mut w, meta.last_membership.log_id().as_ref());
    put_membership(&mut w, meta.last_membership.membership())?;
    Ok(w.finish())
}

/// Decodes a value written by [`encode_snapshot_meta`].
pub fn decode_snapshot_meta(bytes: &[u8]) -> io::Result<SnapshotMeta> {
    Ok(Reader::whole("snapshot meta", bytes, |r| {
        let last_log_id = read_opt_log_id(r)?;
        let membership_log_id = read_opt_log_id(r)?;
        let membership = read_membership(r)?;
        Ok(SnapshotMeta {
            last_log_id,
            last_membership: StoredMembership::new(membership_log_id, membership),
        })
    })?)
}

/// Encodes a membership on its own (snapshot metadata on the wire).
pub fn encode_membership(membership: &Membership) -> io::Result<Vec<u8>> {
    let mut w = Writer::new("membership");
    put_membership(&mut w, membership)?;
    Ok(w.finish())
}

/// Decodes a value written by [`encode_membership`].
pub fn decode_membership(bytes: &[u8]) -> io::Result<Membership> {
    Ok(Reader::whole("membership", bytes, read_membership)?)
}

/// Encodes an engine command (a forwarded write): the engine's one command encoding.
pub fn encode_command(command: &Command) -> io::Result<Vec<u8>> {
    Ok(enc::encode_command(command)?)
}

/// Decodes a value written by [`encode_command`].
pub fn decode_command(bytes: &[u8]) -> io::Result<Command> {
    Ok(enc::decode_command(bytes)?)
}

/// Encodes an engine outcome (the answer to a forwarded write): the engine's one outcome
/// encoding, the same the dedupe table stores.
pub fn encode_outcome(outcome: &Outcome) -> io::Result<Vec<u8>> {
    Ok(enc::encode_outcome(outcome)?)
}

/// Decodes a value written by [`encode_outcome`].
pub fn decode_outcome(bytes: &[u8]) -> io::Result<Outcome> {
    Ok(enc::decode_outcome(bytes)?)
}

#[cfg(test)]
mod tests;
