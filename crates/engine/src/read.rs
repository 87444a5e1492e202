//! Reads at a version: point reads (`get`), range pages (`get_range`), and the walk over `data`
//! that yields each user key's newest version at or below a version ([`VisibleEntry`]), which
//! the resolver, garbage-collection-free scans and the digest share.

use rocksdb::{DBRawIterator, ReadOptions};

use crate::command::check_key;
use crate::engine::Engine;
use crate::error::{ReadError, StorageError};
use crate::keys::{self, DecodedKey, TAG_TOMBSTONE, TAG_VALUE};
use crate::options::CF_DATA;
use crate::range::{RangePage, RangeSpec, RangeWalk, Step};
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

impl Engine {
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
        let applied = self.applied_version();
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
        let mut iter = self.read_iter(version, keys::cf_end(prefix))?;
        let mut walk = RangeWalk::new(spec);
        let mut page = RangePage::default();
        iter.seek(keys::key_start(prefix, &spec.begin_key));
        while let Some(entry) = VisibleEntry::next(&mut iter, prefix, version)? {
            if walk.past_end(&entry.key) {
                break;
            }
            if let Some(value) = entry.value {
                match walk.feed(&entry.key) {
                    Step::Skip | Step::Dropped => {}
                    Step::Take if walk.fits(entry.key.len() + value.len()) => {
                        page.items.push((entry.key, value));
                    }
                    Step::Take | Step::MoreAfterLimit => {
                        page.has_more = true;
                        break;
                    }
                    Step::End => break,
                }
            }
        }
        Ok(page)
    }
}
