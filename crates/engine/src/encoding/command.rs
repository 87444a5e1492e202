//! The encoding of an engine [`Command`]: what every Raft log entry carries and what a follower
//! forwards to the leader (docs/encoding.md, "command").

use super::{DecodeError, EncodeError, Reader, Writer};
use crate::command::{
    Command, Decide, IdempotencyToken, KeyRange, Mutation, Prepare, Stamp, Transaction, TxId,
};
use crate::Version;

const COMMAND_COMMIT: u8 = 0;
const COMMAND_COMPACT: u8 = 1;
const COMMAND_NOOP: u8 = 2;
const COMMAND_EXPIRE_IDEMPOTENCY: u8 = 3;
/// A commit with the leader's clock reading at proposal (`Transaction::proposed_at_us`).
const COMMAND_STAMPED_COMMIT: u8 = 4;
/// A commit with the sequencer's version and term (`Stamp::Sequenced`).
const COMMAND_SEQUENCED_COMMIT: u8 = 5;
/// The oracle's persisted upper bound.
const COMMAND_ORACLE_BOUND: u8 = 6;
/// Phase one of a commit across groups, in a participant.
const COMMAND_PREPARE: u8 = 7;
/// Phase two, in a participant.
const COMMAND_RESOLVE: u8 = 8;
/// The decision, in group 0.
const COMMAND_DECIDE: u8 = 9;
/// Drops a decision record, in group 0.
const COMMAND_FORGET: u8 = 12;

const MUTATION_SET: u8 = 0;
const MUTATION_DELETE: u8 = 1;
const MUTATION_CLEAR_RANGE: u8 = 2;
const MUTATION_VERSIONSTAMPED_KEY: u8 = 3;
const MUTATION_VERSIONSTAMPED_VALUE: u8 = 4;

/// `FORMAT_V1 ‖ command`: a forwarded write.
pub fn encode_command(command: &Command) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new("command");
    put_command(&mut w, command)?;
    Ok(w.finish())
}

/// Decodes a value written by [`encode_command`].
pub fn decode_command(bytes: &[u8]) -> Result<Command, DecodeError> {
    Reader::whole("command", bytes, read_command)
}

/// Writes the command body (no version byte): the payload of a log entry.
pub fn put_command(w: &mut Writer, command: &Command) -> Result<(), EncodeError> {
    match command {
        Command::Commit(txn) => {
            match txn.stamp {
                None => w.u8(COMMAND_COMMIT),
                Some(Stamp::ProposedAt(at)) => {
                    w.u8(COMMAND_STAMPED_COMMIT);
                    w.u64(at);
                }
                Some(Stamp::Sequenced { version, term }) => {
                    w.u8(COMMAND_SEQUENCED_COMMIT);
                    w.u64(version);
                    w.u64(term);
                }
            }
            put_read_version(w, txn.read_version);
            w.count("mutations", txn.mutations.len())?;
            for m in &txn.mutations {
                put_mutation(w, m)?;
            }
            put_ranges(w, &txn.read_conflicts)?;
            put_token(w, txn.idempotency.as_ref())?;
        }
        Command::Compact { horizon } => {
            w.u8(COMMAND_COMPACT);
            w.u64(*horizon);
        }
        Command::Noop => w.u8(COMMAND_NOOP),
        Command::ExpireIdempotency { before, limit } => {
            w.u8(COMMAND_EXPIRE_IDEMPOTENCY);
            w.u64(*before);
            w.count("limit", *limit as usize)?;
        }
        Command::OracleBound { bound } => {
            w.u8(COMMAND_ORACLE_BOUND);
            w.u64(*bound);
        }
        Command::Prepare(prepare) => {
            w.u8(COMMAND_PREPARE);
            put_prepare(w, prepare)?;
        }
        Command::Resolve {
            txid,
            stamp,
            commit,
        } => {
            w.u8(COMMAND_RESOLVE);
            w.fixed(txid);
            w.u64(*stamp);
            put_read_version(w, *commit);
        }
        Command::Decide(Decide {
            txid,
            idempotency,
            outcome,
        }) => {
            w.u8(COMMAND_DECIDE);
            w.fixed(txid);
            put_token(w, idempotency.as_ref())?;
            super::put_outcome(w, outcome)?;
        }
        Command::Forget { txid } => {
            w.u8(COMMAND_FORGET);
            w.fixed(txid);
        }
    }
    Ok(())
}

/// `txid ‖ be64 stamp ‖ opt_be64 read_version ‖ count n ‖ n × (be32 order ‖ mutation) ‖
/// ranges`: a prepare's body, in its command and in the participant's lock record.
pub(crate) fn put_prepare(w: &mut Writer, prepare: &Prepare) -> Result<(), EncodeError> {
    w.fixed(&prepare.txid);
    w.u64(prepare.stamp);
    put_read_version(w, prepare.read_version);
    w.count("piece", prepare.piece.len())?;
    for (order, m) in &prepare.piece {
        w.count("order", *order as usize)?;
        put_mutation(w, m)?;
    }
    put_ranges(w, &prepare.read_conflicts)
}

/// Reads a body written by [`put_prepare`].
pub(crate) fn read_prepare(r: &mut Reader<'_>) -> Result<Prepare, DecodeError> {
    let txid = read_txid(r)?;
    let stamp = r.u64("stamp")?;
    let read_version = read_opt_version(r, "read_version presence flag", "read_version")?;
    let mut piece = Vec::new();
    for _ in 0..r.count("piece")? {
        // `count` reads a be32: it fits.
        let order = u32::try_from(r.count("order")?).unwrap_or(u32::MAX);
        piece.push((order, read_mutation(r)?));
    }
    Ok(Prepare {
        txid,
        stamp,
        read_version,
        piece,
        read_conflicts: read_ranges(r)?,
    })
}

fn read_txid(r: &mut Reader<'_>) -> Result<TxId, DecodeError> {
    let mut txid = [0u8; 16];
    txid.copy_from_slice(r.take("txid", 16)?);
    Ok(txid)
}

fn put_read_version(w: &mut Writer, version: Option<Version>) {
    w.flag(version.is_some());
    if let Some(v) = version {
        w.u64(v);
    }
}

fn read_opt_version(
    r: &mut Reader<'_>,
    flag: &'static str,
    field: &'static str,
) -> Result<Option<Version>, DecodeError> {
    if r.flag(flag)? {
        Ok(Some(r.u64(field)?))
    } else {
        Ok(None)
    }
}

fn put_ranges(w: &mut Writer, ranges: &[KeyRange]) -> Result<(), EncodeError> {
    w.count("read_conflicts", ranges.len())?;
    for r in ranges {
        w.str("range cf", &r.cf)?;
        w.bytes("range begin", &r.begin)?;
        w.bytes("range end", &r.end)?;
    }
    Ok(())
}

fn read_ranges(r: &mut Reader<'_>) -> Result<Vec<KeyRange>, DecodeError> {
    let mut ranges = Vec::new();
    for _ in 0..r.count("read_conflicts")? {
        ranges.push(KeyRange {
            cf: r.str("range cf")?,
            begin: r.bytes("range begin")?,
            end: r.bytes("range end")?,
        });
    }
    Ok(ranges)
}

fn put_token(w: &mut Writer, token: Option<&IdempotencyToken>) -> Result<(), EncodeError> {
    w.flag(token.is_some());
    if let Some(token) = token {
        w.bytes("client_id", &token.client_id)?;
        w.u64(token.sequence);
    }
    Ok(())
}

fn read_token(r: &mut Reader<'_>) -> Result<Option<IdempotencyToken>, DecodeError> {
    if !r.flag("idempotency presence flag")? {
        return Ok(None);
    }
    Ok(Some(IdempotencyToken {
        client_id: r.bytes("client_id")?,
        sequence: r.u64("sequence")?,
    }))
}

fn put_mutation(w: &mut Writer, m: &Mutation) -> Result<(), EncodeError> {
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
    w.u8(kind);
    w.str("mutation cf", cf)?;
    w.bytes("mutation key", a)?;
    if let Some(b) = b {
        w.bytes("mutation value", b)?;
    }
    Ok(())
}

/// Reads a command body written by [`put_command`].
pub fn read_command(r: &mut Reader<'_>) -> Result<Command, DecodeError> {
    match r.u8("command kind")? {
        kind @ (COMMAND_COMMIT | COMMAND_STAMPED_COMMIT | COMMAND_SEQUENCED_COMMIT) => {
            let stamp = match kind {
                COMMAND_STAMPED_COMMIT => Some(Stamp::ProposedAt(r.u64("proposed_at_us")?)),
                COMMAND_SEQUENCED_COMMIT => Some(Stamp::Sequenced {
                    version: r.u64("sequenced version")?,
                    term: r.u64("sequenced term")?,
                }),
                _ => None,
            };
            let read_version = read_opt_version(r, "read_version presence flag", "read_version")?;
            let mut mutations = Vec::new();
            for _ in 0..r.count("mutations")? {
                mutations.push(read_mutation(r)?);
            }
            let read_conflicts = read_ranges(r)?;
            let idempotency = read_token(r)?;
            Ok(Command::Commit(Transaction {
                read_version,
                mutations,
                read_conflicts,
                idempotency,
                stamp,
            }))
        }
        COMMAND_COMPACT => Ok(Command::Compact {
            horizon: r.u64("horizon")?,
        }),
        COMMAND_NOOP => Ok(Command::Noop),
        COMMAND_EXPIRE_IDEMPOTENCY => {
            let before = r.u64("before")?;
            let limit = r.count("limit")?;
            Ok(Command::ExpireIdempotency {
                before,
                // `count` reads a be32: it fits.
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
            })
        }
        COMMAND_ORACLE_BOUND => Ok(Command::OracleBound {
            bound: r.u64("bound")?,
        }),
        COMMAND_PREPARE => Ok(Command::Prepare(read_prepare(r)?)),
        COMMAND_RESOLVE => Ok(Command::Resolve {
            txid: read_txid(r)?,
            stamp: r.u64("stamp")?,
            commit: read_opt_version(r, "commit presence flag", "commit version")?,
        }),
        COMMAND_DECIDE => Ok(Command::Decide(Decide {
            txid: read_txid(r)?,
            idempotency: read_token(r)?,
            outcome: super::read_outcome(r)?,
        })),
        COMMAND_FORGET => Ok(Command::Forget {
            txid: read_txid(r)?,
        }),
        kind => Err(r.unknown_tag("command kind", kind)),
    }
}

fn read_mutation(r: &mut Reader<'_>) -> Result<Mutation, DecodeError> {
    let kind = r.u8("mutation kind")?;
    let cf = r.str("mutation cf")?;
    let a = r.bytes("mutation key")?;
    Ok(match kind {
        MUTATION_SET => Mutation::Set {
            cf,
            key: a,
            value: r.bytes("mutation value")?,
        },
        MUTATION_DELETE => Mutation::Delete { cf, key: a },
        MUTATION_CLEAR_RANGE => Mutation::ClearRange {
            cf,
            begin: a,
            end: r.bytes("mutation value")?,
        },
        MUTATION_VERSIONSTAMPED_KEY => Mutation::SetVersionstampedKey {
            cf,
            key: a,
            value: r.bytes("mutation value")?,
        },
        MUTATION_VERSIONSTAMPED_VALUE => Mutation::SetVersionstampedValue {
            cf,
            key: a,
            value: r.bytes("mutation value")?,
        },
        kind => return Err(r.unknown_tag("mutation kind", kind)),
    })
}
