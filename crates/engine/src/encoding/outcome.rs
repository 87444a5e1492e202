//! The encoding of an engine [`Outcome`], written once for both of its uses: the dedupe table's
//! remembered outcome (`meta/dedupe/…`) and a forwarded write's answer between nodes
//! (docs/encoding.md, "outcome").

use super::{DecodeError, EncodeError, Reader, Writer};
use crate::command::{Invalid, Outcome};
use crate::Version;

const OUTCOME_COMMITTED: u8 = 0;
const OUTCOME_CONFLICT: u8 = 1;
const OUTCOME_TOO_OLD: u8 = 2;
const OUTCOME_REJECTED: u8 = 3;
const OUTCOME_APPLIED: u8 = 4;
const OUTCOME_PREPARED: u8 = 5;
const OUTCOME_LOCKED: u8 = 6;
const OUTCOME_DECIDED: u8 = 8;
const OUTCOME_ALREADY_RESOLVED: u8 = 9;
const OUTCOME_ABORTED: u8 = 10;

const INVALID_OPERATION: u8 = 0;
const INVALID_ARGUMENT: u8 = 1;
const INVALID_UNKNOWN_COLUMN_FAMILY: u8 = 2;
const INVALID_FUTURE_READ_VERSION: u8 = 3;
const INVALID_STALE_SEQUENCE: u8 = 4;
const INVALID_OUTSIDE_RANGE: u8 = 5;

/// `FORMAT_V1 ‖ outcome`: a forwarded write's answer.
pub fn encode_outcome(outcome: &Outcome) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new("outcome");
    put_outcome(&mut w, outcome)?;
    Ok(w.finish())
}

/// Decodes a value written by [`encode_outcome`].
pub fn decode_outcome(bytes: &[u8]) -> Result<Outcome, DecodeError> {
    Reader::whole("outcome", bytes, read_outcome)
}

/// Writes the outcome body (no version byte).
pub fn put_outcome(w: &mut Writer, outcome: &Outcome) -> Result<(), EncodeError> {
    match outcome {
        Outcome::Committed { version } => {
            w.u8(OUTCOME_COMMITTED);
            w.u64(*version);
        }
        Outcome::Conflict { cf, key } => {
            w.u8(OUTCOME_CONFLICT);
            w.str("conflict cf", cf)?;
            w.bytes("conflict key", key)?;
        }
        Outcome::TooOld {
            read_version,
            horizon,
        } => {
            w.u8(OUTCOME_TOO_OLD);
            w.u64(*read_version);
            w.u64(*horizon);
        }
        Outcome::Rejected(invalid) => {
            w.u8(OUTCOME_REJECTED);
            put_invalid(w, invalid)?;
        }
        Outcome::Applied => w.u8(OUTCOME_APPLIED),
        Outcome::Prepared => w.u8(OUTCOME_PREPARED),
        Outcome::Locked { cf, key } => {
            w.u8(OUTCOME_LOCKED);
            w.str("locked cf", cf)?;
            w.bytes("locked key", key)?;
        }
        Outcome::AlreadyResolved => w.u8(OUTCOME_ALREADY_RESOLVED),
        Outcome::Aborted { reason } => {
            w.u8(OUTCOME_ABORTED);
            w.str("abort reason", reason)?;
        }
        Outcome::Decided { commit, answer } => {
            w.u8(OUTCOME_DECIDED);
            put_decision(w, *commit, answer)?;
        }
    }
    Ok(())
}

/// `opt_be64 commit ‖ outcome`: a decision, in a `Decided` outcome and in group 0's decision
/// record.
fn put_decision(
    w: &mut Writer,
    commit: Option<Version>,
    answer: &Outcome,
) -> Result<(), EncodeError> {
    w.flag(commit.is_some());
    if let Some(v) = commit {
        w.u64(v);
    }
    put_outcome(w, answer)
}

fn read_decision(r: &mut Reader<'_>) -> Result<(Option<Version>, Outcome), DecodeError> {
    let commit = if r.flag("commit presence flag")? {
        Some(r.u64("commit version")?)
    } else {
        None
    };
    // Never nested: a decision's answer is what a client is told.
    if r.rest.first() == Some(&OUTCOME_DECIDED) {
        return Err(r.invalid("a decision's answer is itself a decision"));
    }
    let answer = read_outcome(r)?;
    Ok((commit, answer))
}

/// `FORMAT_V1 ‖ decision`: group 0's record of a commit across groups.
pub fn encode_decision(commit: Option<Version>, answer: &Outcome) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new("decision");
    put_decision(&mut w, commit, answer)?;
    Ok(w.finish())
}

/// Decodes a value written by [`encode_decision`].
pub fn decode_decision(bytes: &[u8]) -> Result<(Option<Version>, Outcome), DecodeError> {
    Reader::whole("decision", bytes, read_decision)
}

fn put_invalid(w: &mut Writer, invalid: &Invalid) -> Result<(), EncodeError> {
    match invalid {
        Invalid::Operation { index, problem } => {
            w.u8(INVALID_OPERATION);
            // usize fits u64 on every target Dolmen builds for.
            w.u64(*index as u64);
            w.str("problem", problem)?;
        }
        Invalid::Argument { field, problem } => {
            w.u8(INVALID_ARGUMENT);
            w.str("field", field)?;
            w.str("problem", problem)?;
        }
        Invalid::UnknownColumnFamily { name, configured } => {
            w.u8(INVALID_UNKNOWN_COLUMN_FAMILY);
            w.str("name", name)?;
            w.str("configured", configured)?;
        }
        Invalid::FutureReadVersion {
            read_version,
            version,
        } => {
            w.u8(INVALID_FUTURE_READ_VERSION);
            w.u64(*read_version);
            w.u64(*version);
        }
        Invalid::StaleSequence { sequence, latest } => {
            w.u8(INVALID_STALE_SEQUENCE);
            w.u64(*sequence);
            w.u64(*latest);
        }
        Invalid::OutsideRange { what, key, group } => {
            w.u8(INVALID_OUTSIDE_RANGE);
            w.str("what", what)?;
            w.bytes("key", key)?;
            w.u64(*group);
        }
    }
    Ok(())
}

/// Reads an outcome body written by [`put_outcome`].
pub fn read_outcome(r: &mut Reader<'_>) -> Result<Outcome, DecodeError> {
    Ok(match r.u8("outcome kind")? {
        OUTCOME_COMMITTED => Outcome::Committed {
            version: r.u64("version")?,
        },
        OUTCOME_CONFLICT => Outcome::Conflict {
            cf: r.str("conflict cf")?,
            key: r.bytes("conflict key")?,
        },
        OUTCOME_TOO_OLD => Outcome::TooOld {
            read_version: r.u64("read_version")?,
            horizon: r.u64("horizon")?,
        },
        OUTCOME_REJECTED => Outcome::Rejected(read_invalid(r)?),
        OUTCOME_APPLIED => Outcome::Applied,
        OUTCOME_PREPARED => Outcome::Prepared,
        OUTCOME_LOCKED => Outcome::Locked {
            cf: r.str("locked cf")?,
            key: r.bytes("locked key")?,
        },
        OUTCOME_ALREADY_RESOLVED => Outcome::AlreadyResolved,
        OUTCOME_ABORTED => Outcome::Aborted {
            reason: r.str("abort reason")?,
        },
        OUTCOME_DECIDED => {
            let (commit, answer) = read_decision(r)?;
            Outcome::Decided {
                commit,
                answer: Box::new(answer),
            }
        }
        kind => return Err(r.unknown_tag("outcome kind", kind)),
    })
}

fn read_invalid(r: &mut Reader<'_>) -> Result<Invalid, DecodeError> {
    Ok(match r.u8("rejection kind")? {
        INVALID_OPERATION => Invalid::Operation {
            index: usize::try_from(r.u64("operation index")?)
                .map_err(|_| r.invalid("operation index does not fit this platform's usize"))?,
            problem: r.str("problem")?,
        },
        INVALID_ARGUMENT => Invalid::Argument {
            field: r.str("field")?,
            problem: r.str("problem")?,
        },
        INVALID_UNKNOWN_COLUMN_FAMILY => Invalid::UnknownColumnFamily {
            name: r.str("name")?,
            configured: r.str("configured")?,
        },
        INVALID_FUTURE_READ_VERSION => Invalid::FutureReadVersion {
            read_version: r.u64("read_version")?,
            version: r.u64("version")?,
        },
        INVALID_STALE_SEQUENCE => Invalid::StaleSequence {
            sequence: r.u64("sequence")?,
            latest: r.u64("latest")?,
        },
        INVALID_OUTSIDE_RANGE => Invalid::OutsideRange {
            what: r.str("what")?,
            key: r.bytes("key")?,
            group: r.u64("group")?,
        },
        kind => return Err(r.unknown_tag("rejection kind", kind)),
    })
}
