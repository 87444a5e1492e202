//! Byte layout of the `data` and `meta` column families (docs/engine-format.md).
//!
//! `data key = cf_prefix ‖ escape(user_key) ‖ 0x00 0x01 ‖ be64(!version)`: order-preserving for
//! user keys, newest version first, one seek per point read.

use crate::Version;

/// Terminator after an escaped user key; every version entry of the key follows it.
const TERMINATOR: [u8; 2] = [0x00, 0x01];
/// Sorts after every entry of a user key and before every larger user key.
const AFTER_KEY: [u8; 2] = [0x00, 0x02];
/// The escaped form of a 0x00 byte inside a user key.
const ESCAPED_ZERO: [u8; 2] = [0x00, 0xFF];

/// First byte of a `data` value holding a user value.
pub(crate) const TAG_VALUE: u8 = 0x01;
/// First byte (and only byte) of a `data` value recording a delete.
pub(crate) const TAG_TOMBSTONE: u8 = 0x00;

/// `meta` key of the version of the last applied command.
pub(crate) const META_APPLIED_VERSION: &[u8] = b"applied_version";
/// `meta` key of the MVCC retention horizon.
pub(crate) const META_HORIZON: &[u8] = b"horizon";
/// `meta` key of the number of live user keys.
pub(crate) const META_LIVE_KEYS: &[u8] = b"live_keys";
/// `meta` key of the restore marker: present from the first destructive step of
/// `Engine::restore` until its last batch (docs/engine-format.md, Restore).
pub(crate) const META_RESTORE_PENDING: &[u8] = b"restore_pending";
/// `meta` key prefix of the idempotency (dedupe) table.
pub(crate) const META_DEDUPE_PREFIX: &[u8] = b"dedupe/";
/// `meta` key prefix of the dedupe table's index by the version each entry was recorded at:
/// `dedupe-by-version/ ‖ be64 version ‖ client_id` (expiry scans it oldest first).
pub(crate) const META_DEDUPE_INDEX_PREFIX: &[u8] = b"dedupe-by-version/";
/// `meta` key prefix of the markers of `ClearRange` chunks written ahead of their batch:
/// `clear_pending/ ‖ be64 version ‖ be32 mutation index` (docs/engine-format.md, Clearing a
/// range).
pub(crate) const META_CLEAR_PENDING_PREFIX: &[u8] = b"clear_pending/";
/// `meta` key of the oracle's persisted upper bound (`Command::OracleBound`).
pub(crate) const META_ORACLE_BOUND: &[u8] = b"oracle_bound";
/// `meta` key of the number of dedupe entries.
pub(crate) const META_DEDUPE_ENTRIES: &[u8] = b"dedupe_entries";
/// `meta` prefix of a participant's locks: `txn_lock/ ‖ txid` → the prepare (locks.rs).
pub(crate) const META_TXN_LOCK_PREFIX: &[u8] = b"txn_lock/";
/// `meta` prefix of a participant's resolved transactions: `txn_done/ ‖ be64 stamp ‖ txid`.
pub(crate) const META_TXN_DONE_PREFIX: &[u8] = b"txn_done/";
/// `meta` prefix of group 0's decisions: `txn_decision/ ‖ txid` → the decision.
pub(crate) const META_TXN_DECISION_PREFIX: &[u8] = b"txn_decision/";

/// The prefix shared by every `data` key of one column family.
pub(crate) fn cf_prefix(cf: &str) -> Vec<u8> {
    debug_assert!(
        !cf.is_empty() && cf.len() <= 255,
        "validated column family name"
    );
    let mut out = Vec::with_capacity(cf.len() + 1);
    out.push(cf.len() as u8);
    out.extend_from_slice(cf.as_bytes());
    out
}

/// Appends `escape(key)` to `out`.
fn push_escaped(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        if b == 0 {
            out.extend_from_slice(&ESCAPED_ZERO);
        } else {
            out.push(b);
        }
    }
}

/// `cf_prefix ‖ escape(key)`: the start of every encoding derived from `key`.
fn escaped_key(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + key.len() + 12);
    out.extend_from_slice(prefix);
    push_escaped(&mut out, key);
    out
}

/// The `data` key of `key` at `version`.
pub(crate) fn version_key(prefix: &[u8], key: &[u8], version: Version) -> Vec<u8> {
    let mut out = escaped_key(prefix, key);
    out.extend_from_slice(&TERMINATOR);
    out.extend_from_slice(&(!version).to_be_bytes());
    out
}

/// The smallest encoding at or after every entry of user keys ≥ `key` (a seek target).
pub(crate) fn key_start(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = escaped_key(prefix, key);
    out.extend_from_slice(&TERMINATOR);
    out
}

/// The smallest encoding after every entry of `key` (the seek target of the next user key).
pub(crate) fn key_end(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = escaped_key(prefix, key);
    out.extend_from_slice(&AFTER_KEY);
    out
}

/// The exclusive upper bound of every `data` key of one column family.
pub(crate) fn cf_end(prefix: &[u8]) -> Vec<u8> {
    // The length byte bounds the prefix: incrementing the last byte of the name (or the length
    // byte when every name byte is 0xFF, which printable names never are) ends the family.
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xFF {
            out.push(last + 1);
            return out;
        }
    }
    vec![0xFF; 2]
}

/// A decoded `data` key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DecodedKey {
    /// The user key, unescaped.
    pub user_key: Vec<u8>,
    /// The version the entry was written at.
    pub version: Version,
}

/// Decodes a `data` key of the column family with `prefix`; `None` if it is not one.
pub(crate) fn decode_version_key(prefix: &[u8], raw: &[u8]) -> Option<DecodedKey> {
    let rest = raw.strip_prefix(prefix)?;
    if rest.len() < TERMINATOR.len() + 8 {
        return None;
    }
    let (escaped, tail) = rest.split_at(rest.len() - 10);
    if tail[..2] != TERMINATOR {
        return None;
    }
    let mut user_key = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while i < escaped.len() {
        let b = escaped[i];
        if b == 0 {
            if escaped.get(i + 1) != Some(&0xFF) {
                return None;
            }
            i += 2;
        } else {
            i += 1;
        }
        user_key.push(b);
    }
    let inverted = u64::from_be_bytes(tail[2..].try_into().ok()?);
    Some(DecodedKey {
        user_key,
        version: !inverted,
    })
}

/// `meta` key of one client's dedupe entry.
pub(crate) fn dedupe_key(client_id: &[u8]) -> Vec<u8> {
    let mut out = META_DEDUPE_PREFIX.to_vec();
    out.extend_from_slice(client_id);
    out
}

/// The smallest key after every key that starts with `prefix` (an iterator's upper bound);
/// `prefix` must not be all 0xFF bytes (the `meta` prefixes are ASCII).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xFF {
            out.push(last + 1);
            break;
        }
    }
    out
}

/// The `meta` key of the index entry of `client_id`'s dedupe entry, recorded at `version`.
pub(crate) fn dedupe_index_key(version: Version, client_id: &[u8]) -> Vec<u8> {
    let mut out = dedupe_index_bound(version);
    out.extend_from_slice(client_id);
    out
}

/// The first index key at `version`: every entry recorded before `version` sorts below it.
pub(crate) fn dedupe_index_bound(version: Version) -> Vec<u8> {
    let mut out = Vec::with_capacity(META_DEDUPE_INDEX_PREFIX.len() + 8 + 16);
    out.extend_from_slice(META_DEDUPE_INDEX_PREFIX);
    out.extend_from_slice(&version.to_be_bytes());
    out
}

/// Decodes an index key written by [`dedupe_index_key`]: `(version, client_id)`.
pub(crate) fn decode_dedupe_index_key(raw: &[u8]) -> Option<(Version, &[u8])> {
    let rest = raw.strip_prefix(META_DEDUPE_INDEX_PREFIX)?;
    if rest.len() < 8 {
        return None;
    }
    let (version, client_id) = rest.split_at(8);
    Some((u64::from_be_bytes(version.try_into().ok()?), client_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dedupe_index_keys_sort_by_version_then_client_and_round_trip() {
        let a = dedupe_index_key(5, b"zz");
        let b = dedupe_index_key(6, b"aa");
        assert!(a < b);
        assert!(a < dedupe_index_bound(6) && dedupe_index_bound(6) <= b);
        assert_eq!(decode_dedupe_index_key(&b), Some((6, b"aa".as_slice())));
        assert_eq!(decode_dedupe_index_key(b"dedupe-by-version/\x00"), None);
        // The table, the index and the count never share keys.
        assert!(!dedupe_key(b"x").starts_with(META_DEDUPE_INDEX_PREFIX));
        assert!(!a.starts_with(META_DEDUPE_PREFIX));
        assert!(!META_DEDUPE_ENTRIES.starts_with(META_DEDUPE_PREFIX));
        assert_eq!(prefix_end(META_DEDUPE_PREFIX), b"dedupe0");
        assert!(a < prefix_end(META_DEDUPE_INDEX_PREFIX));
    }

    #[test]
    fn roundtrip_with_zero_bytes() {
        let p = cf_prefix("default");
        let k = version_key(&p, b"a\x00b\x00", 42);
        let d = decode_version_key(&p, &k).unwrap();
        assert_eq!(d.user_key, b"a\x00b\x00");
        assert_eq!(d.version, 42);
        assert!(decode_version_key(&cf_prefix("other"), &k).is_none());
    }

    #[test]
    fn newest_version_sorts_first_and_bounds_hold() {
        let p = cf_prefix("default");
        assert!(version_key(&p, b"k", 9) < version_key(&p, b"k", 3));
        assert!(key_start(&p, b"k") <= version_key(&p, b"k", u64::MAX));
        assert!(version_key(&p, b"k", 0) < key_end(&p, b"k"));
        assert!(key_end(&p, b"k") < key_start(&p, b"k\x00"));
        assert!(key_end(&p, b"k") < key_start(&p, b"k\x01"));
        assert!(version_key(&p, b"\xFF\xFF", 0) < cf_end(&p));
    }

    proptest! {
        #[test]
        fn encoding_preserves_user_key_order(a in prop::collection::vec(any::<u8>(), 0..8),
                                             b in prop::collection::vec(any::<u8>(), 0..8),
                                             va: u64, vb: u64) {
            let p = cf_prefix("cf");
            let (ka, kb) = (version_key(&p, &a, va), version_key(&p, &b, vb));
            if a != b {
                prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
                prop_assert_eq!(a < b, key_end(&p, &a) <= key_start(&p, &b));
            } else {
                prop_assert_eq!(vb.cmp(&va), ka.cmp(&kb));
            }
            prop_assert_eq!(decode_version_key(&p, &ka).unwrap().user_key, a);
        }
    }
}
