//! The encoding of an engine [`Command`]: what every Raft log entry carries and what a follower
//! forwards to the leader (docs/encoding.md, "command").

use super::{DecodeError, EncodeError, Reader, Writer};
use crate::command::{Command, IdempotencyToken, KeyRange, Mutation, Stamp, Transaction};

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
            w.flag(txn.read_version.is_some());
            if let Some(v) = txn.read_version {
                w.u64(v);
            }
            w.count("mutations", txn.mutations.len())?;
            for m in &txn.mutations {
                put_mutation(w, m)?;
            }
            w.count("read_conflicts", txn.read_conflicts.len())?;
            for r in &txn.read_conflicts {
                w.str("range cf", &r.cf)?;
                w.bytes("range begin", &r.begin)?;
                w.bytes("range end", &r.end)?;
            }
            w.flag(txn.idempotency.is_some());
            if let Some(token) = &txn.idempotency {
                w.bytes("client_id", &token.client_id)?;
                w.u64(token.sequence);
            }
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
    }
    Ok(())
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
            let read_version = if r.flag("read_version presence flag")? {
                Some(r.u64("read_version")?)
            } else {
                None
            };
            let mut mutations = Vec::new();
            for _ in 0..r.count("mutations")? {
                mutations.push(read_mutation(r)?);
            }
            let mut read_conflicts = Vec::new();
            for _ in 0..r.count("read_conflicts")? {
                read_conflicts.push(KeyRange {
                    cf: r.str("range cf")?,
                    begin: r.bytes("range begin")?,
                    end: r.bytes("range end")?,
                });
            }
            let idempotency = if r.flag("idempotency presence flag")? {
                Some(IdempotencyToken {
                    client_id: r.bytes("client_id")?,
                    sequence: r.u64("sequence")?,
                })
            } else {
                None
            };
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
