//! Commands: the only way data changes. A command is what the Raft log carries and what
//! `Engine::apply_batch` executes; an `Outcome` is what every replica computes for it.

use serde::{Deserialize, Serialize};

use crate::Version;

/// Length of a versionstamp: 8-byte big-endian commit version ‖ 2-byte big-endian order.
pub const VERSIONSTAMP_LEN: usize = 10;
/// Largest user key, in bytes (WIRE §4).
pub const MAX_KEY_BYTES: usize = 10_000;
/// Largest user value, in bytes (WIRE §4).
pub const MAX_VALUE_BYTES: usize = 100_000;
/// Largest commit: the sum of its keys, values and conflict bounds, in bytes (WIRE §4).
pub const MAX_COMMIT_BYTES: usize = 10_000_000;
/// Largest idempotency client id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;
/// Most idempotency entries one [`Command::ExpireIdempotency`] proposed by a Dolmen leader
/// deletes; the next command continues. The limit travels in the command, so every replica
/// deletes the same entries even if a later build changes this number.
pub const EXPIRE_IDEMPOTENCY_LIMIT: u32 = 10_000;
/// Most operations in one commit, and most read conflict ranges (WIRE §4): bounds the work of
/// validating, checking and applying one command on every replica, whatever its byte size.
pub const MAX_COMMIT_OPERATIONS: usize = 100_000;

/// A change to the state machine, applied at one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A transaction: conflict check, then all mutations at one version.
    Commit(Transaction),
    /// Raise the MVCC retention horizon (never lowers it).
    Compact {
        /// Reads below this version become `TRANSACTION_TOO_OLD`.
        horizon: Version,
    },
    /// Consumes a version and changes nothing (Raft blank and membership entries).
    Noop,
    /// Forget idempotency (dedupe) entries recorded before `before`, oldest first, at most
    /// `limit` of them. Proposed by the leader from `[mvcc] idempotency_window_ms`; applying it
    /// never looks at a clock, so every replica forgets the same entries at the same log
    /// position. `before` is capped at the MVCC horizon when applied.
    ExpireIdempotency {
        /// Entries recorded at a version below this one expire.
        before: Version,
        /// Most entries this command deletes.
        limit: u32,
    },
    /// Raise the oracle's persisted upper bound (docs/sharding.md §3.2): no leader hands out a
    /// version above the bound it has seen applied, and a new leader starts above it. Never
    /// lowers it; the engine only stores it.
    OracleBound {
        /// The new upper bound.
        bound: Version,
    },
    /// Phase one of a commit across groups (docs/sharding.md §6.3), in each participant: check
    /// the piece's read conflicts over `(read_version, ∞)` and its overlap with other locks,
    /// then hold its writes and read ranges locked in replicated state until a `Resolve`.
    /// Takes no version of its own.
    Prepare(Prepare),
    /// Phase two, in each participant: write the prepared piece at `commit` (or drop it when
    /// `None`), release its locks and remember the transaction as done. Idempotent.
    Resolve {
        /// The transaction.
        txid: TxId,
        /// Its stamp (as prepared), which keys its done record.
        stamp: Version,
        /// The commit version, or `None` to abort.
        commit: Option<Version>,
    },
    /// The decision of a commit across groups, recorded in group 0 (docs/sharding.md §6.3
    /// step 3): the first decision for `txid` wins, and the answer is the one recorded. With a
    /// token, group 0's idempotency table makes it exactly-once (§6.6).
    Decide(Decide),
    /// Drops group 0's decision record of `txid` once every participant resolved it.
    Forget {
        /// The transaction.
        txid: TxId,
    },
}

/// A transaction id across groups: `be32 node ‖ be32 incarnation ‖ be64 counter`, or any 16
/// unique bytes (docs/sharding.md §6.3).
pub type TxId = [u8; 16];

/// One participant's part of a commit across groups (docs/sharding.md §6.3 step 1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    /// The transaction.
    pub txid: TxId,
    /// An oracle version the coordinator obtained for it (its read version, when it has one):
    /// the lock's age, and the bound the group's horizon waits for (invariant 11).
    pub stamp: Version,
    /// The version the transaction read at; `None` for blind writes.
    pub read_version: Option<Version>,
    /// The mutations inside this group, each with its index in the whole commit (the order
    /// its versionstamp carries).
    pub piece: Vec<(u32, Mutation)>,
    /// The read-conflict ranges inside this group.
    pub read_conflicts: Vec<KeyRange>,
}

/// The decision for a commit across groups, as the coordinator (or an orphan's resolver)
/// proposes it to group 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decide {
    /// The transaction.
    pub txid: TxId,
    /// The client's retry token, if it sent one.
    pub idempotency: Option<IdempotencyToken>,
    /// `Committed { version }` to commit at `version`; any other outcome aborts and is the
    /// client's answer.
    pub outcome: Outcome,
}

/// A one-line summary for logs (Raft's `AppData` requires `Display`); never the payload bytes.
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Commit(txn) => write!(
                f,
                "commit({} mutations, {} conflict ranges)",
                txn.mutations.len(),
                txn.read_conflicts.len()
            ),
            Command::Compact { horizon } => write!(f, "compact(horizon {horizon})"),
            Command::Noop => f.write_str("noop"),
            Command::ExpireIdempotency { before, limit } => {
                write!(f, "expire_idempotency(before {before}, limit {limit})")
            }
            Command::OracleBound { bound } => write!(f, "oracle_bound({bound})"),
            Command::Prepare(p) => write!(
                f,
                "prepare({}, {} mutations, {} conflict ranges)",
                show_txid(&p.txid),
                p.piece.len(),
                p.read_conflicts.len()
            ),
            Command::Resolve { txid, commit, .. } => match commit {
                Some(v) => write!(f, "resolve({}, commit at {v})", show_txid(txid)),
                None => write!(f, "resolve({}, abort)", show_txid(txid)),
            },
            Command::Decide(d) => write!(f, "decide({})", show_txid(&d.txid)),
            Command::Forget { txid } => write!(f, "forget({})", show_txid(txid)),
        }
    }
}

/// A transaction id as hex, for logs and messages.
pub fn show_txid(txid: &TxId) -> String {
    txid.iter().map(|b| format!("{b:02x}")).collect()
}

/// A transaction as committed: FoundationDB's model, checked at apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The version the transaction read at; `None` for blind writes (no conflict check).
    pub read_version: Option<Version>,
    /// Mutations, applied in order (a later one on the same key wins).
    pub mutations: Vec<Mutation>,
    /// Conflict if any key in these ranges was written after `read_version`.
    pub read_conflicts: Vec<KeyRange>,
    /// Retry token: a commit with the same token returns the first outcome.
    pub idempotency: Option<IdempotencyToken>,
    /// How the replication layer chose the commit's version, when it did (docs/sharding.md
    /// §3.1, §6.2); `None` for a commit proposed without one. The engine never reads it: it
    /// applies at the version it is given.
    pub stamp: Option<Stamp>,
}

/// What a leader put into a commit it proposed, from which every replica derives the same
/// version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stamp {
    /// The leader's clock in µs since the Unix epoch when it proposed the commit; the version is
    /// `max(last applied + 1, at)` (the rule of builds before the sequencer; such entries may
    /// still be in a log).
    ProposedAt(u64),
    /// The sequencer's version, drawn from the oracle by the leader of `term`: the commit applies
    /// at exactly `version` if the entry's term is `term` and `version` is above every version
    /// applied before it, else nothing applies and the leader draws again.
    Sequenced {
        /// The commit version.
        version: Version,
        /// The term of the leader that drew it.
        term: u64,
    },
}

/// A client's retry token: the state machine remembers the latest outcome per client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyToken {
    /// Opaque client identity, 1..=128 bytes.
    pub client_id: Vec<u8>,
    /// Increases with each new transaction of the client.
    pub sequence: u64,
}

/// A half-open key range `[begin, end)` in one column family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// The column family.
    pub cf: String,
    /// Inclusive start.
    pub begin: Vec<u8>,
    /// Exclusive end.
    pub end: Vec<u8>,
}

impl KeyRange {
    /// The range holding exactly `key`: `[key, key ‖ 0x00)`.
    pub fn single(cf: &str, key: &[u8]) -> Self {
        let mut end = key.to_vec();
        end.push(0);
        Self {
            cf: cf.to_owned(),
            begin: key.to_vec(),
            end,
        }
    }

    /// The one key this range holds, when it has [`KeyRange::single`]'s shape.
    pub fn single_key(&self) -> Option<&[u8]> {
        let one = self.end.len() == self.begin.len() + 1
            && self.end.starts_with(&self.begin)
            && self.end.last() == Some(&0);
        one.then_some(self.begin.as_slice())
    }
}

/// One write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mutation {
    /// Write `value` at `key`.
    Set {
        /// Column family.
        cf: String,
        /// User key.
        key: Vec<u8>,
        /// User value.
        value: Vec<u8>,
    },
    /// Delete `key` (deleting a missing key is fine).
    Delete {
        /// Column family.
        cf: String,
        /// User key.
        key: Vec<u8>,
    },
    /// Delete every key in `[begin, end)`.
    ClearRange {
        /// Column family.
        cf: String,
        /// Inclusive start.
        begin: Vec<u8>,
        /// Exclusive end.
        end: Vec<u8>,
    },
    /// Write `value` at `key` with its last 10 bytes replaced by the versionstamp.
    SetVersionstampedKey {
        /// Column family.
        cf: String,
        /// Key buffer, ≥ 10 bytes.
        key: Vec<u8>,
        /// User value.
        value: Vec<u8>,
    },
    /// Write `value` with its last 10 bytes replaced by the versionstamp at `key`.
    SetVersionstampedValue {
        /// Column family.
        cf: String,
        /// User key.
        key: Vec<u8>,
        /// Value buffer, ≥ 10 bytes.
        value: Vec<u8>,
    },
}

impl Mutation {
    /// The column family the mutation writes.
    pub fn cf(&self) -> &str {
        match self {
            Mutation::Set { cf, .. }
            | Mutation::Delete { cf, .. }
            | Mutation::ClearRange { cf, .. }
            | Mutation::SetVersionstampedKey { cf, .. }
            | Mutation::SetVersionstampedValue { cf, .. } => cf,
        }
    }

    /// Bytes the mutation contributes to the commit size limit.
    fn size(&self) -> usize {
        match self {
            Mutation::Set { key, value, .. }
            | Mutation::SetVersionstampedKey { key, value, .. }
            | Mutation::SetVersionstampedValue { key, value, .. } => key.len() + value.len(),
            Mutation::Delete { key, .. } => key.len(),
            Mutation::ClearRange { begin, end, .. } => begin.len() + end.len(),
        }
    }
}

/// The 10-byte versionstamp of operation `order` in the commit at `version`.
pub fn versionstamp(version: Version, order: u16) -> [u8; VERSIONSTAMP_LEN] {
    let mut stamp = [0u8; VERSIONSTAMP_LEN];
    stamp[..8].copy_from_slice(&version.to_be_bytes());
    stamp[8..].copy_from_slice(&order.to_be_bytes());
    stamp
}

/// `buffer` with its last 10 bytes replaced by `stamp` (the caller checked the length).
pub fn stamp_buffer(buffer: &[u8], stamp: &[u8; VERSIONSTAMP_LEN]) -> Vec<u8> {
    let mut out = buffer.to_vec();
    let at = out.len() - VERSIONSTAMP_LEN;
    out[at..].copy_from_slice(stamp);
    out
}

/// What applying a command produced; identical on every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The transaction applied at `version`.
    Committed {
        /// The commit version (versionstamps derive from it).
        version: Version,
    },
    /// A read-conflict key was written after the read version; nothing applied.
    Conflict {
        /// Column family of the first conflicting key found.
        cf: String,
        /// The first conflicting key found.
        key: Vec<u8>,
    },
    /// The read version is below the retention horizon; nothing applied.
    TooOld {
        /// The transaction's read version.
        read_version: Version,
        /// The horizon at apply time.
        horizon: Version,
    },
    /// The transaction is invalid; nothing applied.
    Rejected(Invalid),
    /// A non-transaction command applied.
    Applied,
    /// A `Prepare` holds its locks (or already held them: a retry).
    Prepared,
    /// A key or range of the command overlaps a lock of a transaction committing across
    /// groups that is not decided yet; nothing applied (answered as `CONFLICT`).
    Locked {
        /// Column family of the first locked key found.
        cf: String,
        /// The first locked key (or range start) found.
        key: Vec<u8>,
    },
    /// A `Prepare` of a transaction this group already resolved (a late retry); nothing held.
    AlreadyResolved,
    /// A commit across groups aborted for want of an answer (a participant or group 0 was
    /// unavailable, or its coordinator stopped: an orphan); nothing applied (answered as
    /// `UNAVAILABLE`).
    Aborted {
        /// Why, for the client.
        reason: String,
    },
    /// A `Decide`'s answer: the decision recorded for the transaction.
    Decided {
        /// The version the transaction commits at, or `None` when it aborts (also when the
        /// answer is an earlier attempt's commit, found by the idempotency token).
        commit: Option<Version>,
        /// What its client is told.
        answer: Box<Outcome>,
    },
}

/// Why a command or request is invalid. Each variant maps to one WIRE error code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Invalid {
    /// `INVALID_OPERATION`: the operation is malformed.
    #[error("operation {index}: {problem}")]
    Operation {
        /// Position of the operation in the commit.
        index: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// `INVALID_ARGUMENT`: a field is out of bounds.
    #[error("{field}: {problem}")]
    Argument {
        /// The offending field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The column family is not configured on this node.
    #[error("unknown column family '{name}' (configured: {configured})")]
    UnknownColumnFamily {
        /// The name the client sent.
        name: String,
        /// The configured names, comma-separated.
        configured: String,
    },
    /// The read version is not below the commit version (a client bug).
    #[error("read version {read_version} is not below the commit version {version}")]
    FutureReadVersion {
        /// The transaction's read version.
        read_version: Version,
        /// The version the commit would apply at.
        version: Version,
    },
    /// A key or range of the commit lies outside the range of the group it was sent to: the
    /// gateway routed it by an older routing, or a versionstamped key landed past the range's
    /// end. Nothing applied; the gateway routes again.
    #[error(
        "{what} {} is outside group {group}'s range; nothing applied, retry",
        crate::command::printable_key(key)
    )]
    OutsideRange {
        /// What lies outside: "key", "clear range start", "read-conflict range start", ….
        what: String,
        /// Its first key outside the range.
        key: Vec<u8>,
        /// The group that refused it.
        group: u64,
    },
    /// A retried commit carries a sequence older than the client's latest.
    #[error(
        "idempotency sequence {sequence} is older than the latest seen ({latest}) for this client"
    )]
    StaleSequence {
        /// The sequence sent.
        sequence: u64,
        /// The latest sequence the state machine remembers.
        latest: u64,
    },
}

/// Checks a user key against WIRE §4 (non-empty, ≤ 10,000 bytes).
pub fn check_key(field: &str, key: &[u8]) -> Result<(), Invalid> {
    if key.is_empty() {
        return Err(Invalid::Argument {
            field: field.to_owned(),
            problem: "key must not be empty".into(),
        });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Invalid::Argument {
            field: field.to_owned(),
            problem: format!(
                "key length {} exceeds the limit of {MAX_KEY_BYTES} bytes",
                key.len()
            ),
        });
    }
    Ok(())
}

/// Checks a user value against WIRE §4 (≤ 100,000 bytes).
pub fn check_value(field: &str, value: &[u8]) -> Result<(), Invalid> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Invalid::Argument {
            field: field.to_owned(),
            problem: format!(
                "value length {} exceeds the limit of {MAX_VALUE_BYTES} bytes",
                value.len()
            ),
        });
    }
    Ok(())
}

/// Checks a range bound: may be empty, at most one byte longer than a key.
fn check_bound(field: &str, bound: &[u8]) -> Result<(), Invalid> {
    if bound.len() > MAX_KEY_BYTES + 1 {
        return Err(Invalid::Argument {
            field: field.to_owned(),
            problem: format!(
                "range bound length {} exceeds the limit of {} bytes",
                bound.len(),
                MAX_KEY_BYTES + 1
            ),
        });
    }
    Ok(())
}

impl Transaction {
    /// Validates shape and sizes (not column families, which depend on the node's config).
    /// Runs before proposing and again at apply, so a bad command is rejected the same way
    /// everywhere.
    pub fn validate(&self) -> Result<(), Invalid> {
        for (field, count) in [
            ("operations", self.mutations.len()),
            ("read_conflict_ranges", self.read_conflicts.len()),
        ] {
            if count > MAX_COMMIT_OPERATIONS {
                return Err(Invalid::Argument {
                    field: field.into(),
                    problem: format!(
                        "{count} entries exceed the limit of {MAX_COMMIT_OPERATIONS} per commit"
                    ),
                });
            }
        }
        let mut total = 0usize;
        for (index, m) in self.mutations.iter().enumerate() {
            let field = |name: &str| format!("operations[{index}].{name}");
            let op_problem = |problem: String| Invalid::Operation { index, problem };
            match m {
                Mutation::Set { key, value, .. } => {
                    check_key(&field("key"), key)?;
                    check_value(&field("value"), value)?;
                }
                Mutation::Delete { key, .. } => check_key(&field("key"), key)?,
                Mutation::ClearRange { begin, end, .. } => {
                    check_bound(&field("key"), begin)?;
                    check_bound(&field("value"), end)?;
                }
                Mutation::SetVersionstampedKey { key, value, .. } => {
                    if key.len() < VERSIONSTAMP_LEN {
                        return Err(op_problem(format!(
                            "SET_VERSIONSTAMPED_KEY needs a key buffer of at least \
                             {VERSIONSTAMP_LEN} bytes, got {}",
                            key.len()
                        )));
                    }
                    check_key(&field("key"), key)?;
                    check_value(&field("value"), value)?;
                }
                Mutation::SetVersionstampedValue { key, value, .. } => {
                    if value.len() < VERSIONSTAMP_LEN {
                        return Err(op_problem(format!(
                            "SET_VERSIONSTAMPED_VALUE needs a value buffer of at least \
                             {VERSIONSTAMP_LEN} bytes, got {}",
                            value.len()
                        )));
                    }
                    check_key(&field("key"), key)?;
                    check_value(&field("value"), value)?;
                }
            }
            let stamped = matches!(
                m,
                Mutation::SetVersionstampedKey { .. } | Mutation::SetVersionstampedValue { .. }
            );
            if stamped && index > usize::from(u16::MAX) {
                return Err(op_problem(format!(
                    "versionstamped operations must be among the first {} of a commit",
                    u32::from(u16::MAX) + 1
                )));
            }
            total += m.size();
        }
        for (i, r) in self.read_conflicts.iter().enumerate() {
            check_bound(&format!("read_conflict_ranges[{i}].begin_key"), &r.begin)?;
            check_bound(&format!("read_conflict_ranges[{i}].end_key"), &r.end)?;
            total += r.begin.len() + r.end.len();
        }
        if total > MAX_COMMIT_BYTES {
            return Err(Invalid::Argument {
                field: "operations".into(),
                problem: format!(
                    "commit size {total} bytes exceeds the limit of {MAX_COMMIT_BYTES} bytes"
                ),
            });
        }
        if let Some(token) = &self.idempotency {
            if token.client_id.is_empty() || token.client_id.len() > MAX_CLIENT_ID_BYTES {
                return Err(Invalid::Argument {
                    field: "client_id".into(),
                    problem: format!(
                        "must be 1..={MAX_CLIENT_ID_BYTES} bytes, got {}",
                        token.client_id.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Every column family the transaction touches (mutations and conflict ranges).
    pub fn column_families(&self) -> impl Iterator<Item = &str> {
        self.mutations
            .iter()
            .map(Mutation::cf)
            .chain(self.read_conflicts.iter().map(|r| r.cf.as_str()))
    }
}

/// A key for error messages: text when printable, hex otherwise, at most 64 bytes shown.
pub fn printable_key(key: &[u8]) -> String {
    let shown = &key[..key.len().min(64)];
    let more = if key.len() > 64 { "…" } else { "" };
    match std::str::from_utf8(shown) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("'{s}'{more}"),
        _ => {
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}{more}")
        }
    }
}
