//! Byte encodings of what the log store and the state machine persist (entries, log ids,
//! votes, stored memberships, snapshot metas) and of what the peer transport carries besides
//! (memberships, engine commands and outcomes).
//!
//! **Interim format (`0x80`).** docs/replication.md §2 chooses protobuf (`dolmen.raft.v1`,
//! format byte `0x01`) for `raft_log` values, which needs the proto, `build.rs` and the vendored
//! protoc (build-order slice 1). This slice ships the log store without that codegen, so values
//! use a small explicitly versioned encoding instead: a leading format byte `0x80` (distinct from
//! the protobuf format's `0x01`, so the protobuf codec can keep reading these values or refuse
//! them by name), fixed big-endian integers for log ids and votes, and the engine `Command` as
//! serde JSON (which, like protobuf, ignores unknown struct fields). Replace it with the protobuf
//! codec before any cluster stores data that must survive an upgrade.
//!
//! Engine commands, the bulk of the log, use a compact binary body (tag 3): JSON spelled every
//! value byte as a decimal number and cost more CPU than the rest of the write path. Values
//! written with the JSON body (tag 1, command format 0x80) are still read.
//!
//! ```text
//! entry   = 0x80 ‖ be64 term ‖ be64 node_id ‖ be64 index ‖ tag ‖ body
//!   tag 0 = blank (no body) · 1 = normal (JSON Command, read only) · 2 = membership (below)
//!   tag 3 = normal (binary command body, below)
//! command body = u8 0 ‖ opt_u64 read_version ‖ be32 n ‖ n × mutation ‖ be32 m ‖ m × range
//!                  ‖ opt_token                                   (commit)
//!              | u8 1 ‖ be64 horizon (compact) | u8 2 (noop)
//! mutation = u8 kind (0 set · 1 delete · 2 clear range · 3 versionstamped key
//!            · 4 versionstamped value) ‖ str cf ‖ bytes ‖ bytes (delete: one bytes)
//! range    = str cf ‖ bytes begin ‖ bytes end
//! opt_u64  = u8 0 | u8 1 ‖ be64;  opt_token = u8 0 | u8 1 ‖ bytes client_id ‖ be64 sequence
//! bytes    = be32 len ‖ raw
//! membership = be32 n ‖ n × (be32 m ‖ m × be64 id) ‖ be32 k ‖ k × (be64 id ‖ 3 × str)
//! str     = be32 len ‖ utf-8
//! log id  = 0x80 ‖ be64 term ‖ be64 node_id ‖ be64 index
//! vote    = 0x80 ‖ be64 term ‖ be64 node_id ‖ u8 committed
//! stored membership = 0x80 ‖ opt_log_id ‖ membership
//! snapshot meta     = 0x80 ‖ opt_log_id (last log id) ‖ opt_log_id ‖ membership (last membership)
//! opt_log_id = u8 0 (none) | u8 1 ‖ be64 term ‖ be64 node_id ‖ be64 index
//! membership value = 0x80 ‖ membership
//! command = 0x81 ‖ command body   (0x80 ‖ JSON Command is still read)
//! outcome = 0x80 ‖ JSON Outcome
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use dolmen_engine::{Command, IdempotencyToken, KeyRange, Mutation, Outcome, Transaction};
use openraft::impls::leader_id_adv::LeaderId;

use crate::types::{Entry, EntryPayload, LogId, Membership, NodeAddr, Vote};
use crate::NodeId;

/// The format byte of every value written by this module except commands.
pub const FORMAT_INTERIM: u8 = 0x80;
/// The format byte of a command value with the binary body.
pub const FORMAT_COMMAND: u8 = 0x81;

const TAG_BLANK: u8 = 0;
const TAG_NORMAL: u8 = 1;
const TAG_MEMBERSHIP: u8 = 2;
const TAG_COMMAND: u8 = 3;

const COMMAND_COMMIT: u8 = 0;
const COMMAND_COMPACT: u8 = 1;
const COMMAND_NOOP: u8 = 2;

const MUTATION_SET: u8 = 0;
const MUTATION_DELETE: u8 = 1;
const MUTATION_CLEAR_RANGE: u8 = 2;
const MUTATION_VERSIONSTAMPED_KEY: u8 = 3;
const MUTATION_VERSIONSTAMPED_VALUE: u8 = 4;

/// A corrupt or unknown stored value; openraft turns it into a fatal storage error.
fn corrupt(what: &str, detail: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt {what}: {detail}"),
    )
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: usize) -> io::Result<()> {
    let v = u32::try_from(v).map_err(|_| io::Error::other(format!("length {v} exceeds u32")))?;
    out.extend_from_slice(&v.to_be_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> io::Result<()> {
    put_u32(out, s.len())?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> io::Result<()> {
    put_u32(out, b.len())?;
    out.extend_from_slice(b);
    Ok(())
}

/// Writes the binary command body.
fn put_command(out: &mut Vec<u8>, command: &Command) -> io::Result<()> {
    match command {
        Command::Commit(txn) => {
            out.push(COMMAND_COMMIT);
            match txn.read_version {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    put_u64(out, v);
                }
            }
            put_u32(out, txn.mutations.len())?;
            for m in &txn.mutations {
                put_mutation(out, m)?;
            }
            put_u32(out, txn.read_conflicts.len())?;
            for r in &txn.read_conflicts {
                put_str(out, &r.cf)?;
                put_bytes(out, &r.begin)?;
                put_bytes(out, &r.end)?;
            }
            match &txn.idempotency {
                None => out.push(0),
                Some(token) => {
                    out.push(1);
                    put_bytes(out, &token.client_id)?;
                    put_u64(out, token.sequence);
                }
            }
        }
        Command::Compact { horizon } => {
            out.push(COMMAND_COMPACT);
            put_u64(out, *horizon);
        }
        Command::Noop => out.push(COMMAND_NOOP),
    }
    Ok(())
}

fn put_mutation(out: &mut Vec<u8>, m: &Mutation) -> io::Result<()> {
    let (kind, cf, a, b) = match m {
        Mutation::Set { cf, key, value } => (MUTATION_SET, cf, key, Some(value)),
        Mutation::Delete { cf, key } => (MUTATION_DELETE, cf, key, None),
        Mutation::ClearRange { cf, begin, end } => (MUTATION_CLEAR_RANGE, cf, begin, Some(end)),
        Mutation::SetVersionstampedKey { cf, key, value } => {
            (MUTATION_VERSIONSTAMPED_KEY, cf, key, Some(value))
        }
        Mutation::SetVersionstampedValue { cf, key, value } => {
            (MUTATION_VERSIONSTAMPED_VALUE, cf, key, Some(value))
        }
    };
    out.push(kind);
    put_str(out, cf)?;
    put_bytes(out, a)?;
    if let Some(b) = b {
        put_bytes(out, b)?;
    }
    Ok(())
}

fn put_log_id(out: &mut Vec<u8>, id: &LogId) {
    put_u64(out, id.leader_id.term);
    put_u64(out, id.leader_id.node_id);
    put_u64(out, id.index);
}

fn put_opt_log_id(out: &mut Vec<u8>, id: Option<&LogId>) {
    match id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            put_log_id(out, id);
        }
    }
}

/// Writes the `membership` body: joint configs, then the address book.
fn put_membership(out: &mut Vec<u8>, membership: &Membership) -> io::Result<()> {
    let configs = membership.get_joint_config();
    put_u32(out, configs.len())?;
    for config in configs {
        put_u32(out, config.len())?;
        for id in config {
            put_u64(out, *id);
        }
    }
    let nodes: Vec<_> = membership.nodes().collect();
    put_u32(out, nodes.len())?;
    for (id, addr) in nodes {
        put_u64(out, *id);
        put_str(out, &addr.client_addr)?;
        put_str(out, &addr.peer_addr)?;
        put_str(out, &addr.admin_addr)?;
    }
    Ok(())
}

/// Reads a value front to back; every read names the value kind on failure.
struct Reader<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks the format byte and starts after it.
    fn new(what: &'static str, bytes: &'a [u8]) -> io::Result<Self> {
        match bytes.split_first() {
            Some((&FORMAT_INTERIM, rest)) => Ok(Self { what, rest }),
            Some((format, _)) => Err(corrupt(
                what,
                format_args!("unknown format byte {format:#04x}"),
            )),
            None => Err(corrupt(what, "empty value")),
        }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(corrupt(
                self.what,
                format_args!("needs {n} more bytes, has {}", self.rest.len()),
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> io::Result<usize> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn str(&mut self) -> io::Result<String> {
        let len = self.u32()?;
        let what = self.what;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|e| corrupt(what, e))
    }

    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let len = self.u32()?;
        Ok(self.take(len)?.to_vec())
    }

    /// A presence flag: 0 or 1.
    fn flag(&mut self, field: &str) -> io::Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(corrupt(
                self.what,
                format_args!("{field} presence flag {other}"),
            )),
        }
    }

    /// Reads the binary command body.
    fn command(&mut self) -> io::Result<Command> {
        match self.u8()? {
            COMMAND_COMMIT => {
                let read_version = if self.flag("read_version")? {
                    Some(self.u64()?)
                } else {
                    None
                };
                let mut mutations = Vec::new();
                for _ in 0..self.u32()? {
                    mutations.push(self.mutation()?);
                }
                let mut read_conflicts = Vec::new();
                for _ in 0..self.u32()? {
                    read_conflicts.push(KeyRange {
                        cf: self.str()?,
                        begin: self.bytes()?,
                        end: self.bytes()?,
                    });
                }
                let idempotency = if self.flag("idempotency")? {
                    Some(IdempotencyToken {
                        client_id: self.bytes()?,
                        sequence: self.u64()?,
                    })
                } else {
                    None
                };
                Ok(Command::Commit(Transaction {
                    read_version,
                    mutations,
                    read_conflicts,
                    idempotency,
                }))
            }
            COMMAND_COMPACT => Ok(Command::Compact {
                horizon: self.u64()?,
            }),
            COMMAND_NOOP => Ok(Command::Noop),
            kind => Err(corrupt(
                self.what,
                format_args!("unknown command kind {kind}"),
            )),
        }
    }

    fn mutation(&mut self) -> io::Result<Mutation> {
        let kind = self.u8()?;
        let cf = self.str()?;
        let a = self.bytes()?;
        Ok(match kind {
            MUTATION_SET => Mutation::Set {
                cf,
                key: a,
                value: self.bytes()?,
            },
            MUTATION_DELETE => Mutation::Delete { cf, key: a },
            MUTATION_CLEAR_RANGE => Mutation::ClearRange {
                cf,
                begin: a,
                end: self.bytes()?,
            },
            MUTATION_VERSIONSTAMPED_KEY => Mutation::SetVersionstampedKey {
                cf,
                key: a,
                value: self.bytes()?,
            },
            MUTATION_VERSIONSTAMPED_VALUE => Mutation::SetVersionstampedValue {
                cf,
                key: a,
                value: self.bytes()?,
            },
            kind => {
                return Err(corrupt(
                    self.what,
                    format_args!("unknown mutation kind {kind}"),
                ))
            }
        })
    }

    fn log_id(&mut self) -> io::Result<LogId> {
        let term = self.u64()?;
        let node_id = self.u64()?;
        let index = self.u64()?;
        Ok(LogId {
            leader_id: LeaderId { term, node_id },
            index,
        })
    }

    fn opt_log_id(&mut self) -> io::Result<Option<LogId>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.log_id()?)),
            other => Err(corrupt(
                self.what,
                format_args!("log id presence flag {other}"),
            )),
        }
    }

    /// Reads the `membership` body shared by entries and [`encode_membership`].
    fn membership(&mut self) -> io::Result<Membership> {
        let mut configs = Vec::new();
        for _ in 0..self.u32()? {
            let mut config = BTreeSet::new();
            for _ in 0..self.u32()? {
                config.insert(self.u64()?);
            }
            configs.push(config);
        }
        let mut nodes: BTreeMap<NodeId, NodeAddr> = BTreeMap::new();
        for _ in 0..self.u32()? {
            let id = self.u64()?;
            let addr = NodeAddr {
                client_addr: self.str()?,
                peer_addr: self.str()?,
                admin_addr: self.str()?,
            };
            nodes.insert(id, addr);
        }
        Membership::new(configs, nodes).map_err(|e| corrupt(self.what, e))
    }

    /// Takes everything left (a JSON body).
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    fn finish(self) -> io::Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(corrupt(
                self.what,
                format_args!("{} trailing bytes", self.rest.len()),
            ))
        }
    }
}

/// Encodes a log entry as a `raft_log` value.
pub fn encode_entry(entry: &Entry) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_INTERIM];
    put_log_id(&mut out, &entry.log_id);
    match &entry.payload {
        EntryPayload::Blank => out.push(TAG_BLANK),
        EntryPayload::Normal(command) => {
            out.push(TAG_COMMAND);
            put_command(&mut out, command)?;
        }
        EntryPayload::Membership(membership) => {
            out.push(TAG_MEMBERSHIP);
            put_membership(&mut out, membership)?;
        }
    }
    Ok(out)
}

/// Decodes a `raft_log` value written by [`encode_entry`].
pub fn decode_entry(bytes: &[u8]) -> io::Result<Entry> {
    let mut r = Reader::new("raft_log entry", bytes)?;
    let log_id = r.log_id()?;
    let payload = match r.u8()? {
        TAG_BLANK => EntryPayload::Blank,
        TAG_COMMAND => EntryPayload::Normal(r.command()?),
        TAG_NORMAL => {
            EntryPayload::Normal(serde_json::from_slice(r.rest()).map_err(|e| corrupt(r.what, e))?)
        }
        TAG_MEMBERSHIP => EntryPayload::Membership(r.membership()?),
        tag => return Err(corrupt(r.what, format_args!("unknown payload tag {tag}"))),
    };
    r.finish()?;
    Ok(Entry { log_id, payload })
}

/// Encodes a log id (`raft_state` `committed` and `last_purged`).
pub fn encode_log_id(id: &LogId) -> Vec<u8> {
    let mut out = vec![FORMAT_INTERIM];
    put_log_id(&mut out, id);
    out
}

/// Decodes a value written by [`encode_log_id`].
pub fn decode_log_id(bytes: &[u8]) -> io::Result<LogId> {
    let mut r = Reader::new("log id", bytes)?;
    let id = r.log_id()?;
    r.finish()?;
    Ok(id)
}

/// Encodes a vote (`raft_state` `vote`).
pub fn encode_vote(vote: &Vote) -> Vec<u8> {
    let mut out = vec![FORMAT_INTERIM];
    put_u64(&mut out, vote.leader_id.term);
    put_u64(&mut out, vote.leader_id.node_id);
    out.push(u8::from(vote.committed));
    out
}

/// Decodes a value written by [`encode_vote`].
pub fn decode_vote(bytes: &[u8]) -> io::Result<Vote> {
    let mut r = Reader::new("vote", bytes)?;
    let term = r.u64()?;
    let node_id = r.u64()?;
    let committed = match r.u8()? {
        0 => false,
        1 => true,
        other => return Err(corrupt(r.what, format_args!("committed flag {other}"))),
    };
    r.finish()?;
    Ok(Vote {
        leader_id: LeaderId { term, node_id },
        committed,
    })
}

pub use crate::types::{SnapshotMeta, StoredMembership};

/// Encodes a stored membership (the state machine's `raft/last_membership` meta value).
pub fn encode_stored_membership(stored: &StoredMembership) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_INTERIM];
    put_opt_log_id(&mut out, stored.log_id().as_ref());
    put_membership(&mut out, stored.membership())?;
    Ok(out)
}

/// Decodes a value written by [`encode_stored_membership`].
pub fn decode_stored_membership(bytes: &[u8]) -> io::Result<StoredMembership> {
    let mut r = Reader::new("stored membership", bytes)?;
    let log_id = r.opt_log_id()?;
    let membership = r.membership()?;
    r.finish()?;
    Ok(StoredMembership::new(log_id, membership))
}

/// Encodes a snapshot meta (the header of a snapshot file).
pub fn encode_snapshot_meta(meta: &SnapshotMeta) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_INTERIM];
    put_opt_log_id(&mut out, meta.last_log_id.as_ref());
    put_opt_log_id(&mut out, meta.last_membership.log_id().as_ref());
    put_membership(&mut out, meta.last_membership.membership())?;
    Ok(out)
}

/// Decodes a value written by [`encode_snapshot_meta`].
pub fn decode_snapshot_meta(bytes: &[u8]) -> io::Result<SnapshotMeta> {
    let mut r = Reader::new("snapshot meta", bytes)?;
    let last_log_id = r.opt_log_id()?;
    let membership_log_id = r.opt_log_id()?;
    let membership = r.membership()?;
    r.finish()?;
    Ok(SnapshotMeta {
        last_log_id,
        last_membership: StoredMembership::new(membership_log_id, membership),
    })
}

/// Encodes a membership on its own (snapshot metadata on the wire).
pub fn encode_membership(membership: &Membership) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_INTERIM];
    put_membership(&mut out, membership)?;
    Ok(out)
}

/// Decodes a value written by [`encode_membership`].
pub fn decode_membership(bytes: &[u8]) -> io::Result<Membership> {
    let mut r = Reader::new("membership", bytes)?;
    let membership = r.membership()?;
    r.finish()?;
    Ok(membership)
}

/// Encodes an engine command (a forwarded write), with the body entries use.
pub fn encode_command(command: &Command) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_COMMAND];
    put_command(&mut out, command)?;
    Ok(out)
}

/// Decodes a value written by [`encode_command`] (or by the JSON format before it).
pub fn decode_command(bytes: &[u8]) -> io::Result<Command> {
    const WHAT: &str = "command";
    match bytes.split_first() {
        Some((&FORMAT_COMMAND, body)) => {
            let mut r = Reader {
                what: WHAT,
                rest: body,
            };
            let command = r.command()?;
            r.finish()?;
            Ok(command)
        }
        _ => {
            let mut r = Reader::new(WHAT, bytes)?;
            serde_json::from_slice(r.rest()).map_err(|e| corrupt(r.what, e))
        }
    }
}

/// Encodes an engine outcome (the answer to a forwarded write).
pub fn encode_outcome(outcome: &Outcome) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_INTERIM];
    serde_json::to_writer(&mut out, outcome).map_err(io::Error::other)?;
    Ok(out)
}

/// Decodes a value written by [`encode_outcome`].
pub fn decode_outcome(bytes: &[u8]) -> io::Result<Outcome> {
    let mut r = Reader::new("outcome", bytes)?;
    serde_json::from_slice(r.rest()).map_err(|e| corrupt(r.what, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dolmen_engine::Invalid;

    fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
        LogId {
            leader_id: LeaderId { term, node_id },
            index,
        }
    }

    fn membership() -> Membership {
        let nodes: BTreeMap<NodeId, NodeAddr> = [
            (1, NodeAddr::default()),
            (
                2,
                NodeAddr {
                    client_addr: "127.0.0.1:9090".into(),
                    peer_addr: "127.0.0.1:7090".into(),
                    admin_addr: "127.0.0.1:9190".into(),
                },
            ),
        ]
        .into();
        Membership::new(vec![BTreeSet::from([1, 2])], nodes).unwrap()
    }

    #[test]
    fn stored_membership_round_trips() {
        for stored in [
            StoredMembership::default(),
            StoredMembership::new(Some(log_id(3, 1, 7)), membership()),
        ] {
            let bytes = encode_stored_membership(&stored).unwrap();
            assert_eq!(decode_stored_membership(&bytes).unwrap(), stored);
            assert!(decode_stored_membership(&bytes[..bytes.len() - 1]).is_err());
        }
    }

    #[test]
    fn snapshot_meta_round_trips() {
        for meta in [
            SnapshotMeta::default(),
            SnapshotMeta {
                last_log_id: Some(log_id(4, 2, 10)),
                last_membership: StoredMembership::new(Some(log_id(3, 1, 7)), membership()),
            },
        ] {
            let bytes = encode_snapshot_meta(&meta).unwrap();
            assert_eq!(decode_snapshot_meta(&bytes).unwrap(), meta);
            let mut bad = bytes.clone();
            bad.push(0);
            assert!(decode_snapshot_meta(&bad).is_err());
        }
    }

    fn addr(i: u64) -> NodeAddr {
        NodeAddr {
            client_addr: format!("127.0.0.1:{}", 7000 + i),
            peer_addr: format!("127.0.0.1:{}", 8000 + i),
            admin_addr: if i == 2 {
                String::new()
            } else {
                format!("127.0.0.1:{}", 9000 + i)
            },
        }
    }

    fn joint_membership() -> Membership {
        let configs = vec![BTreeSet::from([0, 1]), BTreeSet::from([1, 2])];
        let nodes = (0..4).map(|i| (i, addr(i))).collect::<BTreeMap<_, _>>();
        Membership::new(configs, nodes).expect("voters are all in the address book")
    }

    #[test]
    fn membership_round_trips_and_matches_the_entry_body() {
        let membership = joint_membership();
        let bytes = encode_membership(&membership).expect("encodes");
        assert_eq!(decode_membership(&bytes).expect("decodes"), membership);

        // The standalone value is the entry's membership body behind the format byte.
        let entry = Entry {
            log_id: LogId {
                leader_id: LeaderId {
                    term: 3,
                    node_id: 1,
                },
                index: 9,
            },
            payload: EntryPayload::Membership(membership),
        };
        let entry_bytes = encode_entry(&entry).expect("encodes");
        assert_eq!(&entry_bytes[1 + 24 + 1..], &bytes[1..]);
        assert_eq!(decode_entry(&entry_bytes).expect("decodes"), entry);
    }

    #[test]
    fn membership_refuses_trailing_bytes_and_foreign_formats() {
        let mut bytes = encode_membership(&joint_membership()).expect("encodes");
        bytes.push(0);
        let err = decode_membership(&bytes).expect_err("trailing byte");
        assert!(err.to_string().contains("membership"), "{err}");
        bytes[0] = 0x01;
        let err = decode_membership(&bytes).expect_err("format byte");
        assert!(err.to_string().contains("format byte 0x01"), "{err}");
    }

    #[test]
    fn commands_round_trip() {
        let commit = Command::Commit(Transaction {
            read_version: Some(41),
            mutations: vec![
                Mutation::Set {
                    cf: "default".into(),
                    key: b"k".to_vec(),
                    value: vec![0, 255, 7],
                },
                Mutation::Delete {
                    cf: "default".into(),
                    key: b"gone".to_vec(),
                },
                Mutation::ClearRange {
                    cf: "other".into(),
                    begin: b"a".to_vec(),
                    end: b"b".to_vec(),
                },
                Mutation::SetVersionstampedKey {
                    cf: "default".into(),
                    key: vec![1; 12],
                    value: b"v".to_vec(),
                },
                Mutation::SetVersionstampedValue {
                    cf: "default".into(),
                    key: b"vs".to_vec(),
                    value: vec![2; 10],
                },
            ],
            read_conflicts: vec![KeyRange::single("default", b"k")],
            idempotency: Some(IdempotencyToken {
                client_id: b"client".to_vec(),
                sequence: 5,
            }),
        });
        for command in [commit, Command::Compact { horizon: 17 }, Command::Noop] {
            let bytes = encode_command(&command).expect("encodes");
            assert_eq!(bytes[0], FORMAT_COMMAND);
            assert_eq!(decode_command(&bytes).expect("decodes"), command);
            // Values written before the binary body are still read.
            let mut json = vec![FORMAT_INTERIM];
            serde_json::to_writer(&mut json, &command).expect("JSON");
            assert_eq!(decode_command(&json).expect("decodes JSON"), command);
            // Every truncation is an error, never a panic or a wrong command.
            for cut in 1..bytes.len() {
                let err = decode_command(&bytes[..cut]).expect_err("truncated");
                assert!(err.to_string().contains("corrupt command"), "{err}");
            }
            // So is trailing garbage.
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode_command(&longer).is_err());
            // Entries carry the same body, and the JSON-bodied entries of older logs still read.
            let entry = Entry {
                log_id: log_id(3, 1, 9),
                payload: EntryPayload::Normal(command.clone()),
            };
            let encoded = encode_entry(&entry).expect("encodes entry");
            assert_eq!(decode_entry(&encoded).expect("decodes entry"), entry);
            let mut old = encoded[..1 + 24].to_vec();
            old.push(TAG_NORMAL);
            old.extend_from_slice(&json[1..]);
            assert_eq!(decode_entry(&old).expect("decodes an old entry"), entry);
        }
        let err = decode_command(&[FORMAT_COMMAND, 9]).expect_err("unknown kind");
        assert!(err.to_string().contains("unknown command kind 9"), "{err}");
        let err = decode_command(&[FORMAT_INTERIM, b'{']).expect_err("truncated JSON");
        assert!(err.to_string().contains("corrupt command"), "{err}");
        let err = decode_command(&[]).expect_err("empty");
        assert!(err.to_string().contains("empty value"), "{err}");
    }

    #[test]
    fn outcomes_round_trip() {
        let outcomes = [
            Outcome::Committed { version: 12 },
            Outcome::Conflict {
                cf: "default".into(),
                key: b"k".to_vec(),
            },
            Outcome::TooOld {
                read_version: 3,
                horizon: 10,
            },
            Outcome::Rejected(Invalid::Argument {
                field: "key".into(),
                problem: "too long".into(),
            }),
            Outcome::Applied,
        ];
        for outcome in outcomes {
            let bytes = encode_outcome(&outcome).expect("encodes");
            assert_eq!(decode_outcome(&bytes).expect("decodes"), outcome);
        }
        let err = decode_outcome(&[0x7f]).expect_err("foreign format");
        assert!(err.to_string().contains("corrupt outcome"), "{err}");
    }
}
