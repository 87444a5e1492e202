//! Dolmen's storage engine: multi-version (MVCC) key-value state over RocksDB, with
//! FoundationDB-style conflict detection, versionstamps and the docs/WIRE.md range algorithm.
//! Synchronous and protocol-free: it knows nothing of Raft, Thrift or the network.
//!
//! ```text
//!   Command ──▶ Engine::apply_batch(version) ──▶ RocksDB `data` + `meta` (one batch)
//!   Engine::get / get_range(version)  ◀── reads at any retained version
//!   Engine::export / restore / digest_at ◀─▶ whole-state transfer (snapshots, replica checks)
//! ```
//! The byte layout and invariants are specified in `docs/engine-format.md`; the encoding of
//! every stored value and of what nodes send each other, in `docs/encoding.md` ([`encoding`]).

mod apply;
mod backup;
mod clear;
mod command;
mod dedupe;
pub mod encoding;
mod engine;
mod error;
pub mod failpoint;
mod gc;
mod keys;
mod live_cache;
mod locks;
pub mod merge;
mod options;
pub mod range;
mod read;
mod resolver;
pub mod routing;
mod scope;
mod stats;
mod transfer;

pub use backup::{BackupRecord, Checksum, RecordRef, TruncatedRecord, VisibleExport};
pub use command::{
    check_key, check_value, printable_key, show_txid, stamp_buffer, versionstamp, Command, Decide,
    IdempotencyToken, Invalid, KeyRange, Mutation, Outcome, Prepare, Stamp, Transaction, TxId,
    EXPIRE_IDEMPOTENCY_LIMIT, MAX_CLIENT_ID_BYTES, MAX_COMMIT_BYTES, MAX_COMMIT_OPERATIONS,
    MAX_KEY_BYTES, MAX_VALUE_BYTES, VERSIONSTAMP_LEN,
};
pub use encoding::{DecodeError, EncodeError};
pub use engine::Engine;
pub use error::{ColumnFamilyNameError, OpenError, ReadError, StorageError};
pub use gc::GcReport;
pub use locks::LockInfo;
pub use merge::{merge_range, MergeError, ScanLimits, ScanPage};
pub use options::{
    check_column_family_name, CompactionPriority, DBCompressionType, Durability, EngineOptions,
    LevelCompression, LogLevel, StatsLevel, Tuning, CF_DATA, CF_META, CF_RAFT_LOG, CF_RAFT_STATE,
};
pub use range::{ByteBudget, RangeBounds, RangePage, RangeSpec};
pub use routing::{RangeDescriptor, RoutingTable};
pub use scope::KeySpan;
pub use stats::EngineStats;
pub use transfer::{Export, Record, Section};

/// A commit version: strictly increasing, identical on every replica (docs/ARCHITECTURE.md §2).
pub type Version = u64;
