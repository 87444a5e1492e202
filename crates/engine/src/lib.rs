//! Dolmen's storage engine: multi-version (MVCC) key-value state over RocksDB, with
//! FoundationDB-style conflict detection, versionstamps and the docs/WIRE.md range algorithm.
//! Synchronous and protocol-free: it knows nothing of Raft, Thrift or the network.
//!
//! ```text
//!   Command ──▶ Engine::apply_batch(version) ──▶ RocksDB `data` + `meta` (one batch)
//!   Engine::get / get_range(version)  ◀── reads at any retained version
//!   Engine::export / restore / digest_at ◀─▶ whole-state transfer (snapshots, replica checks)
//! ```
//! The byte layout and invariants are specified in `docs/engine-format.md`.

mod command;
mod keys;
pub mod range;
mod store;
mod transfer;

pub use command::{
    check_key, check_value, stamp_buffer, versionstamp, Command, IdempotencyToken, Invalid,
    KeyRange, Mutation, Outcome, Transaction, MAX_CLIENT_ID_BYTES, MAX_COMMIT_BYTES, MAX_KEY_BYTES,
    MAX_VALUE_BYTES, VERSIONSTAMP_LEN,
};
pub use range::{RangePage, RangeSpec};
pub use store::{
    check_column_family_name, Durability, Engine, EngineOptions, EngineStats, GcReport, OpenError,
    ReadError, StorageError, CF_DATA, CF_META, CF_RAFT_LOG, CF_RAFT_STATE,
};
pub use transfer::{Export, Record, Section};

/// A commit version: strictly increasing, identical on every replica (docs/ARCHITECTURE.md §2).
pub type Version = u64;
