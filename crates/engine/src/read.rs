//! Reads at a version: point reads (`get`), range pages (`get_range`), bounded scans of one
//! interval (`scan`, docs/sharding.md §5.3), and the walk over `data` that yields each user
//! key's newest version at or below a version ([`VisibleEntry`]), which the resolver,
//! garbage-collection-free scans and the digest share. `get_range` and `scan` share one walker
//! of the live pairs of an interval ([`LivePairs`]).

use rocksdb::{DBRawIterator, ReadOptions};

use crate::command::check_key;
use crate::engine::Engine;
use crate::error::{ReadError, StorageError};
use crate::keys::{self, DecodedKey, TAG_TOMBSTONE, TAG_VALUE};
use crate::merge::{ScanLimits, ScanPage};
use crate::options::CF_DATA;
use crate::range::{walk_pairs, RangeBounds, RangePage, RangeSpec};
use crate::Version;

/// Decodes a `data` value: `Some(user value)` or `None` for a tombstone. The tag byte is the
/// value's format byte (docs/encoding.md): an unknown one is corruption, named.
pub(crate) fn decode_value(raw: &[u8]) -> Result<Option<&[u8]>, StorageError> {
    match raw.split_first() {
        Some((&TAG_VALUE, rest)) => Ok(Some(rest)),
        Some((&TAG_TOMBSTONE, _)) => Ok(None),
        _ => Err(StorageError::Corrupt(format!(
            "data value with unknown tag {:?}",
            raw.first()
        ))),
    }
}

/// The state of one user key as of a version, produced by walking `data` in key order.
pub(crate) struct VisibleEntry {
    pub(crate) key: Vec<u8>,
    /// `None`: the newest version ≤ the read version is a tombstone.
    pub(crate) value: Option<Vec<u8>>,
    /// The version of that newest entry.
    pub(crate) version: Version,
}

impl VisibleEntry {
    /// Advances `iter` to the next user key that has a version ≤ `version` and returns its
    /// state, leaving the iterator at the following user key. Versions newer than `version` are
    /// skipped by seeking; older ones by stepping over a few, then seeking.
    pub(crate) fn next(
        iter: &mut DBRawIterator<'_>,
        prefix: &[u8],
        version: Version,
    ) -> Result<Option<Self>, StorageError> {
        loop {
            if !iter.valid() {
                iter.status()?;
                return Ok(None);
            }
            let raw = iter.key().unwrap_or_default();
            let Some(DecodedKey {
                user_key,
                version: found,
            }) = keys::decode_version_key(prefix, raw)
            else {
                return Err(StorageError::Corrupt(format!(
                    "undecodable data key {raw:02x?}"
                )));
            };
            if found > version {
                iter.seek(keys::version_key(prefix, &user_key, version));
                continue;
            }
            // `escaped key ‖ terminator`: what every version of this user key starts with.
            let stem = raw[..raw.len() - VERSION_SUFFIX].to_vec();
            let value = decode_value(iter.value().unwrap_or_default())?.map(<[u8]>::to_vec);
            skip_older_versions(iter, &stem, || keys::key_end(prefix, &user_key));
            return Ok(Some(Self {
                key: user_key,
                value,
                version: found,
            }));
        }
    }
}

/// Bytes of the version after a `data` key's stem (`keys::version_key`).
const VERSION_SUFFIX: usize = 8;
/// Older versions stepped over one by one before a seek is cheaper.
const STEPS_BEFORE_SEEK: usize = 4;

/// Moves `iter` from a version of the user key whose entries start with `stem` to the first
/// entry of the next user key. Most keys have one or two versions, and stepping is several
/// times cheaper than a seek, so it steps a few times and seeks to `key_end()` only past that.
fn skip_older_versions(
    iter: &mut DBRawIterator<'_>,
    stem: &[u8],
    key_end: impl FnOnce() -> Vec<u8>,
) {
    iter.next();
    for _ in 0..STEPS_BEFORE_SEEK {
        match iter.key() {
            Some(raw)
                if raw.len() >= VERSION_SUFFIX && raw[..raw.len() - VERSION_SUFFIX] == *stem =>
            {
                iter.next();
            }
            // The next user key, the end, or an error (the caller's next step reports it).
            _ => return,
        }
    }
    if iter.key().is_some_and(|raw| {
        raw.len() >= VERSION_SUFFIX && raw[..raw.len() - VERSION_SUFFIX] == *stem
    }) {
        iter.seek(key_end());
    }
}

/// A user key and its value.
type Pair = (Vec<u8>, Vec<u8>);

/// The live pairs (newest version ≤ the read version is a value) of one interval `[lo, hi)` of
/// one column family, ascending: the seek, the MVCC visibility and the tombstones that
/// `get_range` and `scan` share. The iterator's upper bound is `hi`, so the walk stops at the end
/// of the interval without stepping over the tombstones that may lie beyond it.
struct LivePairs<'a> {
    /// `None` when the interval is empty: nothing is read.
    iter: Option<DBRawIterator<'a>>,
    prefix: &'a [u8],
    version: Version,
}

impl LivePairs<'_> {
    /// The next live pair of the interval.
    fn next(&mut self) -> Result<Option<Pair>, StorageError> {
        let Some(iter) = self.iter.as_mut() else {
            return Ok(None);
        };
        while let Some(entry) = VisibleEntry::next(iter, self.prefix, self.version)? {
            if let Some(value) = entry.value {
                return Ok(Some((entry.key, value)));
            }
        }
        Ok(None)
    }
}

impl Engine {
    /// The walker over the live pairs of `[lo, hi)` in the column family with `prefix` at
    /// `version`, after the version checks of [`Self::read_iter`] (made for an empty interval
    /// too, so every read at a bad version fails alike). The caller holds the read fence.
    fn live_pairs<'a>(
        &'a self,
        prefix: &'a [u8],
        version: Version,
        lo: &[u8],
        hi: &[u8],
    ) -> Result<LivePairs<'a>, ReadError> {
        // `key_start(hi)` is above every entry of a key < `hi` and at or below every entry of
        // `hi` (the encoding preserves order: docs/engine-format.md, `data` keys).
        let mut iter = self.read_iter(version, keys::key_start(prefix, hi))?;
        let iter = (lo < hi).then(|| {
            iter.seek(keys::key_start(prefix, lo));
            iter
        });
        Ok(LivePairs {
            iter,
            prefix,
            version,
        })
    }

    /// An iterator over `data` with an upper bound, followed by the horizon check (the order
    /// matters: docs/engine-format.md, read ordering; it keeps invariant 5 under GC).
    fn read_iter(
        &self,
        version: Version,
        upper_bound: Vec<u8>,
    ) -> Result<DBRawIterator<'_>, ReadError> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper_bound);
        let iter = self.db.raw_iterator_cf_opt(self.cf(CF_DATA), opts);
        let horizon = self.horizon();
        if version < horizon {
            return Err(ReadError::TooOld { version, horizon });
        }
        let applied = self.readable_version();
        if version > applied {
            return Err(ReadError::FutureVersion { version, applied });
        }
        Ok(iter)
    }

    /// The value of `key` in `cf` as of `version` (`None` if absent or deleted).
    pub fn get(
        &self,
        cf: &str,
        key: &[u8],
        version: Version,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        check_key("key", key)?;
        let prefix = self.prefix(cf)?;
        let _fence = self.read_fence()?;
        let mut iter = self.read_iter(version, keys::key_end(prefix, key))?;
        iter.seek(keys::version_key(prefix, key, version));
        if !iter.valid() {
            iter.status()?;
            return Ok(None);
        }
        // The upper bound confines the iterator to versions of `key` that are ≤ `version`.
        let value = iter.value().unwrap_or_default();
        decode_value(value)
            .map(|v| v.map(<[u8]>::to_vec))
            .map_err(Into::into)
    }

    /// A page of `cf` as of `version`, following WIRE §3 exactly.
    pub fn get_range(
        &self,
        cf: &str,
        spec: &RangeSpec,
        version: Version,
    ) -> Result<RangePage, ReadError> {
        let prefix = self.prefix(cf)?;
        let _fence = self.read_fence()?;
        // The walker stops at the end of the request's interval; `RangeWalk` applies the
        // begin, offset, limit and budget rules to what it yields.
        let bounds = RangeBounds::from_spec(spec);
        let mut pairs = self.live_pairs(prefix, version, &bounds.lo, &bounds.hi)?;
        Ok(walk_pairs(spec, || pairs.next())?)
    }

    /// A bounded scan of the interval `[start, end)` of `cf` as of `version` (docs/sharding.md
    /// §5.3): the live keys of the interval in ascending order, the first `limits.skip` dropped
    /// (counted in `skipped`), then at most `limits.ask` pairs within `limits.budget` (the first
    /// pair of an empty page always goes in; `cut` says the budget stopped the scan before
    /// another live key). Any bytes are valid bounds; `end ≤ start` is an empty interval, still
    /// checked against the horizon and the applied version.
    ///
    /// # Errors
    /// As [`Self::get_range`]: an unknown column family, `TooOld`, `FutureVersion`, storage.
    pub fn scan(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
        version: Version,
        limits: &ScanLimits,
    ) -> Result<ScanPage, ReadError> {
        let prefix = self.prefix(cf)?;
        let _fence = self.read_fence()?;
        let mut pairs = self.live_pairs(prefix, version, start, end)?;
        let mut budget = limits.budget;
        let mut page = ScanPage::default();
        let full = |page: &ScanPage| limits.ask.is_some_and(|ask| page.pairs.len() >= ask);
        while page.skipped < limits.skip || !full(&page) {
            let Some((key, value)) = pairs.next()? else {
                break;
            };
            if page.skipped < limits.skip {
                page.skipped += 1;
            } else if budget.fits(key.len() + value.len()) {
                page.pairs.push((key, value));
            } else {
                page.cut = true;
                break;
            }
        }
        Ok(page)
    }
}
