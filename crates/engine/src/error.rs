//! The engine's errors, one enum per kind of operation: opening ([`OpenError`]), reading
//! ([`ReadError`]) and storage failures any operation can hit ([`StorageError`]).

use std::path::PathBuf;

use crate::command::Invalid;
use crate::encoding::{DecodeError, EncodeError};
use crate::Version;

/// A user column family name breaks docs/engine-format.md's rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ColumnFamilyNameError {
    /// Empty or longer than 255 bytes (the `data` key prefix stores the length in one byte).
    #[error("must be 1..=255 bytes long, got {len}")]
    Length {
        /// The name's length in bytes.
        len: usize,
    },
    /// Holds a byte outside printable ASCII, or a space.
    #[error("must be printable ASCII without spaces")]
    NotPrintable,
}

/// Failure to open the engine.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// RocksDB refused to open (permissions, lock held by another process, corruption).
    #[error("cannot open the database at {path}: {source}")]
    Rocks {
        /// The database directory.
        path: PathBuf,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A configured column family name is unusable.
    #[error("column family '{name}': {problem}")]
    ColumnFamily {
        /// The name.
        name: String,
        /// What is wrong with it.
        #[source]
        problem: ColumnFamilyNameError,
    },
    /// The configuration lacks the "default" column family.
    #[error("column family 'default': the \"default\" column family must be configured")]
    MissingDefault,
    /// Stored metadata could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A storage-level failure: the node cannot continue safely.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB failed.
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// An engine handle was asked for a group or span it cannot have.
    #[error("invalid engine scope: {0}")]
    InvalidScope(String),
    /// Bytes on disk do not match docs/engine-format.md.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A stored value does not decode (docs/encoding.md): names the value and what is wrong.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A value to store cannot be encoded (docs/encoding.md).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// `apply_batch` was handed a commit version not above the applied one, or another
    /// command's version below it.
    #[error("version {version} does not follow the applied version {applied}")]
    VersionOrder {
        /// The offending version.
        version: Version,
        /// The last applied version.
        applied: Version,
    },
    /// A whole-state operation (`digest_at`) was asked for a version outside the retained range.
    #[error("version {version} is outside the retained range [horizon {horizon}, applied {applied}]; pick a version in it")]
    VersionOutOfRange {
        /// The requested version.
        version: Version,
        /// The retention horizon.
        horizon: Version,
        /// The last applied version.
        applied: Version,
    },
    /// A snapshot restore started and did not finish: the state is partial until it is redone.
    #[error("a snapshot restore did not finish (marker {marker:?}); redo it with Engine::restore before using the engine")]
    RestoreIncomplete {
        /// The restore marker, lossily as text (the raft layer stores the snapshot file path).
        marker: String,
    },
    /// The records handed to `Engine::restore` failed to read; the restore marker stays.
    #[error(
        "reading the records to restore failed: {0}; the restore marker stays, redo the restore"
    )]
    RestoreSource(#[source] std::io::Error),
    /// A failure injected by a test hook ([`crate::Engine::fail_clear_range_after_chunks`]).
    #[error("injected failure: {what}")]
    Injected {
        /// Where it was injected.
        what: &'static str,
    },
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Bad input (unknown column family, bad key).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The version is below the retention horizon: `TRANSACTION_TOO_OLD`.
    #[error("TRANSACTION_TOO_OLD: read version {version} is below the retention horizon {horizon}; start a new transaction")]
    TooOld {
        /// The requested version.
        version: Version,
        /// The horizon.
        horizon: Version,
    },
    /// The version is not applied yet: `FUTURE_VERSION` (callers wait before asking).
    #[error("FUTURE_VERSION: read version {version} is beyond the applied version {applied}")]
    FutureVersion {
        /// The requested version.
        version: Version,
        /// The last applied version.
        applied: Version,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<rocksdb::Error> for ReadError {
    fn from(e: rocksdb::Error) -> Self {
        ReadError::Storage(StorageError::Rocks(e))
    }
}
