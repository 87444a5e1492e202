//! Backups: the visible user state at one version, as `(column family, key, value)` records.
//!
//! ```text
//!   export_visible(v) ─▶ one RocksDB snapshot ─▶ per column family (name order), per live key
//!                        (key order): BackupRecord ─encode─▶ be32 len ‖ cf ‖ be32 len ‖ key ‖
//!                        be32 len ‖ value   (a backup part's bytes; CRC-64 over them = digest_at)
//!   restore_visible(v, records) ─▶ restore(): every record at version v, applied = horizon = v
//! ```
//!
//! The RocksDB snapshot pins what the export reads: garbage collection that runs while it
//! streams deletes nothing it sees, so a backup never needs the retention horizon held back.

use std::cell::Cell;
use std::io;

use rocksdb::{DBRawIterator, ReadOptions, SnapshotWithThreadMode, DB};

use crate::encoding;
use crate::engine::Engine;
use crate::error::StorageError;
use crate::keys::{self, TAG_VALUE};
use crate::options::CF_DATA;
use crate::read::VisibleEntry;
use crate::transfer::{Record, Section};
use crate::Version;

/// One live key of a backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupRecord {
    /// Its column family.
    pub cf: String,
    /// The key.
    pub key: Vec<u8>,
    /// Its value at the backup's version.
    pub value: Vec<u8>,
}

/// A record cut short: the bytes end inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a record is cut short at byte {offset}: {needed} more bytes expected, {left} left")]
pub struct TruncatedRecord {
    /// Where the record starts.
    pub offset: usize,
    /// Bytes the record still needs.
    pub needed: usize,
    /// Bytes left.
    pub left: usize,
}

impl BackupRecord {
    /// Appends the record's bytes: `be32(len) ‖ cf ‖ be32(len) ‖ key ‖ be32(len) ‖ value`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        for part in [self.cf.as_bytes(), &self.key, &self.value] {
            // Keys ≤ 10 KB, values ≤ 100 KB, names ≤ 255 bytes: lengths fit u32.
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part);
        }
    }

    /// Decodes the record at `bytes[offset..]`: the record and the offset after it, or `None`
    /// when `offset` is the end.
    pub fn decode(bytes: &[u8], offset: usize) -> Result<Option<(Self, usize)>, TruncatedRecord> {
        Ok(RecordRef::decode(bytes, offset)?.map(|(r, next)| {
            let record = Self {
                cf: String::from_utf8_lossy(r.cf).into_owned(),
                key: r.key.to_vec(),
                value: r.value.to_vec(),
            };
            (record, next)
        }))
    }
}

/// A record's parts, borrowed from the bytes it was decoded from (counting and checking
/// records without copying them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The column family's name.
    pub cf: &'a [u8],
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// Decodes the record at `bytes[offset..]`: the record and the offset after it, or `None`
    /// when `offset` is the end.
    pub fn decode(
        bytes: &'a [u8],
        offset: usize,
    ) -> Result<Option<(Self, usize)>, TruncatedRecord> {
        if offset >= bytes.len() {
            return Ok(None);
        }
        let mut at = offset;
        let mut take = || -> Result<&'a [u8], TruncatedRecord> {
            let short = |needed: usize, at: usize| TruncatedRecord {
                offset,
                needed,
                left: bytes.len() - at,
            };
            let len_bytes = bytes.get(at..at + 4).ok_or_else(|| short(4, at))?;
            let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]])
                as usize;
            let part = bytes
                .get(at + 4..at + 4 + len)
                .ok_or_else(|| short(4 + len, at))?;
            at += 4 + len;
            Ok(part)
        };
        let (cf, key, value) = (take()?, take()?, take()?);
        Ok(Some((Self { cf, key, value }, at)))
    }
}

/// CRC-64/XZ (ECMA-182 polynomial, reflected; init and final xor all ones): the checksum of
/// backup parts and of [`Engine::digest_at`]. SIMD-accelerated (`crc64fast`, TiKV's), so a
/// backup's checksums cost little next to reading the data.
#[derive(Clone)]
pub struct Checksum(crc64fast::Digest);

impl std::fmt::Debug for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checksum({:016x})", self.finish())
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Self(crc64fast::Digest::new())
    }
}

impl Checksum {
    /// An empty checksum.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// The checksum of everything added so far.
    pub fn finish(&self) -> u64 {
        self.0.sum64()
    }
}

/// A streaming export of the visible user state at one version, read from one RocksDB
/// snapshot: every live key of every user column family, column families in name order, keys
/// in order. Nothing is collected in memory.
pub struct VisibleExport<'e> {
    // Field order matters: the iterator is dropped before the snapshot it reads.
    /// The column family being read: its name, its key prefix and the iterator.
    current: Option<(String, Vec<u8>, DBRawIterator<'e>)>,
    /// Column families still to read, in reverse name order (popped from the end).
    pending: Vec<(String, Vec<u8>)>,
    snapshot: SnapshotWithThreadMode<'e, DB>,
    engine: &'e Engine,
    version: Version,
    failed: bool,
}

impl VisibleExport<'_> {
    /// The version this export reads at.
    pub fn version(&self) -> Version {
        self.version
    }
}

impl Iterator for VisibleExport<'_> {
    type Item = Result<BackupRecord, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            let Some((cf, prefix, iter)) = self.current.as_mut() else {
                let (cf, prefix) = self.pending.pop()?;
                let engine: &Engine = self.engine;
                // The user keys this handle owns in the column family (all of them for group 0).
                let (lo, hi) = engine.scope.cf_span(&prefix);
                let mut opts = ReadOptions::default();
                opts.set_snapshot(&self.snapshot);
                opts.set_iterate_upper_bound(hi);
                // A whole-state scan: caching its blocks would only push hot ones out.
                opts.fill_cache(false);
                let mut iter = engine.db.raw_iterator_cf_opt(engine.cf(CF_DATA), opts);
                iter.seek(lo);
                self.current = Some((cf, prefix, iter));
                continue;
            };
            match VisibleEntry::next(iter, prefix, self.version) {
                Ok(Some(VisibleEntry {
                    key,
                    value: Some(value),
                    ..
                })) => {
                    return Some(Ok(BackupRecord {
                        cf: cf.clone(),
                        key,
                        value,
                    }))
                }
                Ok(Some(_)) => {} // deleted at this version
                Ok(None) => self.current = None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl Engine {
    /// The visible user state at `version`, streamed from one RocksDB snapshot. Fails with
    /// `VersionOutOfRange` unless `horizon ≤ version ≤ applied`.
    pub fn export_visible(&self, version: Version) -> Result<VisibleExport<'_>, StorageError> {
        let snapshot = {
            let _fence = self.read_fence()?;
            self.db.snapshot()
        };
        // Snapshot first, then the horizon check: history the check allows is in the snapshot
        // even if garbage collection removes it a moment later.
        let (horizon, applied) = (self.horizon(), self.applied_version());
        if version < horizon || version > applied {
            return Err(StorageError::VersionOutOfRange {
                version,
                horizon,
                applied,
            });
        }
        let mut pending: Vec<(String, Vec<u8>)> = self
            .prefixes
            .iter()
            .map(|(name, prefix)| (name.clone(), prefix.clone()))
            .collect();
        pending.reverse();
        Ok(VisibleExport {
            current: None,
            pending,
            snapshot,
            engine: self,
            version,
            failed: false,
        })
    }

    /// A checksum of every user column family's visible `(cf, key, value)` at `version` (a full
    /// MVCC scan), for comparing replicas: [`Checksum`] over the [`BackupRecord`] encoding of
    /// [`Engine::export_visible`]'s records, so a backup's digest is this too. Equal visible
    /// states give equal digests regardless of history or garbage-collection timing. Fails
    /// with `VersionOutOfRange` unless `horizon ≤ version ≤ applied`.
    pub fn digest_at(&self, version: Version) -> Result<u64, StorageError> {
        let mut digest = Checksum::new();
        let mut bytes = Vec::new();
        for record in self.export_visible(version)? {
            bytes.clear();
            record?.encode_into(&mut bytes);
            digest.update(&bytes);
        }
        Ok(digest.finish())
    }

    /// Replaces the whole state with `records` as the visible state at `version` (each one
    /// written at `version`; applied version and horizon `version`, so no older read is
    /// served), crash-safely through [`Engine::restore`] with `marker`. Returns the number of
    /// records. A record of a column family this engine does not serve fails the restore and
    /// leaves it pending: check the column families first.
    pub fn restore_visible(
        &self,
        marker: &[u8],
        version: Version,
        records: impl Iterator<Item = io::Result<BackupRecord>>,
    ) -> Result<u64, StorageError> {
        let count = Cell::new(0u64);
        let data = records.map(|record| {
            let record = record?;
            let prefix = self.prefixes.get(&record.cf).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("column family {:?} is not configured here", record.cf),
                )
            })?;
            count.set(count.get() + 1);
            let mut value = Vec::with_capacity(record.value.len() + 1);
            value.push(TAG_VALUE);
            value.extend_from_slice(&record.value);
            Ok((
                Section::Data,
                keys::version_key(prefix, &record.key, version),
                value,
            ))
        });
        let meta = std::iter::once_with(|| -> Vec<io::Result<Record>> {
            [
                (keys::META_APPLIED_VERSION, version),
                (keys::META_HORIZON, version),
                (keys::META_LIVE_KEYS, count.get()),
            ]
            .into_iter()
            .map(|(name, n)| Ok((Section::Meta, self.meta_key(name), encoding::encode_u64(n))))
            .collect()
        })
        .flatten();
        self.restore(marker, data.chain(meta))?;
        Ok(count.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_xz_check_value() {
        // The standard check value of CRC-64/XZ over "123456789".
        let mut crc = Checksum::new();
        crc.update(b"123456789");
        assert_eq!(crc.finish(), 0x995D_C9BB_DF19_39FA);
    }

    #[test]
    fn records_round_trip_and_a_cut_is_reported_with_its_offset() {
        let records = [
            BackupRecord {
                cf: "default".into(),
                key: b"a".to_vec(),
                value: b"1".to_vec(),
            },
            BackupRecord {
                cf: "users".into(),
                key: vec![0, 255],
                value: Vec::new(),
            },
        ];
        let mut bytes = Vec::new();
        for r in &records {
            r.encode_into(&mut bytes);
        }
        let (first, at) = BackupRecord::decode(&bytes, 0).unwrap().unwrap();
        let (second, end) = BackupRecord::decode(&bytes, at).unwrap().unwrap();
        assert_eq!([first, second], records);
        assert_eq!(BackupRecord::decode(&bytes, end), Ok(None));
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(
            BackupRecord::decode(cut, at),
            Err(TruncatedRecord {
                offset: at,
                needed: 4,
                left: 3
            })
        );
    }
}
