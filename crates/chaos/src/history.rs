//! The recorded history of a chaos run: what every client invoked, when, and what came back,
//! plus what the nemesis did. Stored as one JSON object per line (`history.jsonl`), so a saved
//! run can be checked again offline (`dolmen-chaos check <dir>`).
//!
//! Times are nanoseconds since the start of the run on one monotonic clock (the runner's).
//! An operation whose outcome is unknown (timeout, broken connection, `TIMEOUT`) has no
//! completion time: it may take effect at any point after its invocation, or never.

use serde::{Deserialize, Serialize};

/// Nanoseconds since the start of the run.
pub type Nanos = u64;

/// One line of `history.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A single-key register operation.
    Register(RegisterOp),
    /// A bank transfer between two accounts.
    Transfer(TransferOp),
    /// A snapshot read of every bank account.
    BankRead(BankRead),
    /// An insert into the set.
    SetAdd(SetAdd),
    /// The set as read from one replica at the end of the run.
    SetFinal(SetFinal),
    /// A list-append transaction: reads and appends at one read version.
    ListAppend(ListAppendTxn),
    /// Something the nemesis did (or undid).
    Nemesis(NemesisEvent),
}

/// What a register client asked for. Registers hold `u64` values and start absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterCall {
    /// A linearizable `get`.
    Read,
    /// A blind write.
    Write(u64),
    /// Compare-and-set: write `new` if the register holds `expect` (an `atomicCommit` whose read
    /// conflict key is the register).
    Cas {
        /// The value the register must hold.
        expect: u64,
        /// The value to write.
        new: u64,
    },
}

/// How a register operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterOutcome {
    /// A read returned this value (`None` = absent).
    Read(Option<u64>),
    /// A write or compare-and-set took effect.
    Ok,
    /// Definitely had no effect: a refused request (`NOT_LEADER`, `UNAVAILABLE`, `CONFLICT`), or
    /// a compare-and-set whose expected value did not match. Ignored by the checker.
    Failed,
    /// Unknown: it may or may not have taken effect (or, for a read, returned nothing usable).
    Unknown,
}

/// One register operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterOp {
    /// The client (a new id after an operation with an unknown outcome, as in Jepsen, so one
    /// process never has two operations in flight).
    pub process: u64,
    /// The node (index) the request was sent to.
    pub node: usize,
    /// The register.
    pub key: u64,
    /// What was asked.
    pub call: RegisterCall,
    /// When the request was sent.
    pub invoke: Nanos,
    /// When the answer arrived; `None` when the outcome is unknown.
    pub complete: Option<Nanos>,
    /// The answer.
    pub outcome: RegisterOutcome,
}

/// How a bank transfer or set insert ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// Committed.
    Ok,
    /// Definitely not committed.
    Failed,
    /// May or may not have committed.
    Unknown,
}

/// A transfer of `amount` from one account to another, in one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOp {
    /// The client.
    pub process: u64,
    /// The node the commit was sent to.
    pub node: usize,
    /// Account debited.
    pub from: u32,
    /// Account credited.
    pub to: u32,
    /// Amount moved.
    pub amount: i64,
    /// When the transaction started.
    pub invoke: Nanos,
    /// When the commit answer arrived; `None` when unknown.
    pub complete: Option<Nanos>,
    /// The commit's outcome.
    pub outcome: WriteOutcome,
    /// The error code of the server's refusal (`CONFLICT`, `UNAVAILABLE`, ...) when the commit
    /// was refused with one; absent otherwise, and in histories written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The commit version, for a committed transfer (absent from histories written before it
    /// was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_version: Option<i64>,
}

impl TransferOp {
    /// The refusal's error code, if any.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

/// A read of every account at one read version (one snapshot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankRead {
    /// The client.
    pub process: u64,
    /// The node read from.
    pub node: usize,
    /// The snapshot's read version.
    pub version: i64,
    /// When the read started.
    pub invoke: Nanos,
    /// When it returned.
    pub complete: Nanos,
    /// Balance of each account, by account number (absent accounts read as `None`).
    pub balances: Vec<Option<i64>>,
}

/// An insert of a unique element into the set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAdd {
    /// The client.
    pub process: u64,
    /// The node the write was sent to.
    pub node: usize,
    /// The element (unique across the run).
    pub element: u64,
    /// When the write was sent.
    pub invoke: Nanos,
    /// When the answer arrived; `None` when unknown.
    pub complete: Option<Nanos>,
    /// The write's outcome.
    pub outcome: WriteOutcome,
}

/// The whole set as one replica serves it after the cluster healed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetFinal {
    /// The replica.
    pub node: usize,
    /// The version it was read at.
    pub version: i64,
    /// Every element present, ascending.
    pub elements: Vec<u64>,
}

/// One micro-operation of a list-append transaction (Elle's model).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum MicroOp {
    /// `[r k list]`: key `la/<key>` read as this list at the transaction's read version (an
    /// absent key reads as the empty list).
    R {
        /// The key's number.
        key: u64,
        /// The elements read, in list order.
        value: Vec<u64>,
    },
    /// `[append k e]`: the element appended to key `la/<key>` (unique in the run).
    Append {
        /// The key's number.
        key: u64,
        /// The element.
        element: u64,
    },
}

/// A list-append transaction: one read version, reads, then appends (read-modify-write of each
/// appended key's list, every key read sent as a read-conflict key), one commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListAppendTxn {
    /// The client.
    pub process: u64,
    /// The node every request went to.
    pub node: usize,
    /// The read version, when one was obtained.
    pub read_version: Option<i64>,
    /// The commit version, for a committed transaction.
    pub commit_version: Option<i64>,
    /// When the transaction started (before `getReadVersion`).
    pub invoke: Nanos,
    /// When the commit answer arrived; `None` when unknown.
    pub complete: Option<Nanos>,
    /// The commit's outcome (a failed read before the commit is a definite failure).
    pub outcome: WriteOutcome,
    /// The reads that returned (in order), then the appends.
    pub ops: Vec<MicroOp>,
    /// The error code of the server's refusal of the commit (`CONFLICT`, `UNAVAILABLE`, ...)
    /// when it was refused with one; absent otherwise, and in histories written before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ListAppendTxn {
    /// The refusal's error code, if any.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

/// A fault started or ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NemesisEvent {
    /// When.
    pub at: Nanos,
    /// Short name, e.g. `kill9`, `restart`, `partition`, `heal`.
    pub action: String,
    /// The nodes involved.
    pub nodes: Vec<usize>,
    /// Free-form detail (the partition's sides, drop probability, ...).
    pub detail: String,
}
