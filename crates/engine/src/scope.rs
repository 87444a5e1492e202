//! Which part of the node's one RocksDB an engine handle owns (docs/sharding.md §7): every Raft
//! group of a node applies through its own [`Engine`](crate::Engine) handle over the same
//! database, with its own applied version, horizon, idempotency table, restore fence and
//! `ClearRange` markers, all under its own `meta` keys, and its own span of the shared `data`
//! column family (user data stays keyed by user key, so a split moves no data).
//!
//! ```text
//!  meta:  group 0: the names of layout 1, unprefixed ("applied_version", "dedupe/…", …)
//!         group g ≥ 1: 0x00 ‖ be64 g ‖ name       (every name is ASCII, so no clash)
//!  data:  group 0: everything (today's one group); group g: in each column family,
//!         [key_start(cf, start), key_start(cf, end))
//! ```

use std::collections::BTreeMap;

use crate::keys;

/// A half-open interval of user keys, in every column family: `[start, end)`, `end = None`
/// meaning +∞.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeySpan {
    /// The first user key of the span.
    pub start: Vec<u8>,
    /// The first user key after the span; `None` = +∞.
    pub end: Option<Vec<u8>>,
}

impl KeySpan {
    /// Every user key.
    pub fn all() -> Self {
        Self::default()
    }

    /// No user key: the span of group 0 when the node's data groups own every key (a sharded
    /// node's metadata group), so its snapshots, digests and garbage collection cover no data.
    pub fn none() -> Self {
        Self {
            start: Vec::new(),
            end: Some(Vec::new()),
        }
    }

    /// Whether the span holds no key.
    pub fn is_empty(&self) -> bool {
        self.end.as_ref().is_some_and(|end| *end <= self.start)
    }

    /// `[start, end)`; `None` when it is empty (`end ≤ start`).
    pub fn new(start: Vec<u8>, end: Option<Vec<u8>>) -> Option<Self> {
        match &end {
            Some(e) if e.as_slice() <= start.as_slice() => None,
            _ => Some(Self { start, end }),
        }
    }

    /// Whether `key` is in the span.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }

    /// Whether every key of `[begin, end)` is in the span (an empty interval always is).
    pub fn holds(&self, begin: &[u8], end: &[u8]) -> bool {
        begin >= end
            || (begin >= self.start.as_slice()
                && self.end.as_deref().is_none_or(|limit| end <= limit))
    }

    /// Whether some key of `[begin, end)` is in the span.
    pub fn meets(&self, begin: &[u8], end: &[u8]) -> bool {
        begin < end
            && end > self.start.as_slice()
            && self.end.as_deref().is_none_or(|limit| begin < limit)
    }
}

/// The byte that starts every `meta` key of a group other than 0.
const GROUP_META_TAG: u8 = 0x00;

/// The group an engine handle applies for, and what of the database it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    /// The Raft group (0: the node's first group, whose keys keep their layout-1 names).
    pub(crate) group: u64,
    /// Prepended to every `meta` key name of this group.
    meta_prefix: Vec<u8>,
    /// The user keys whose `data` this group owns.
    pub(crate) span: KeySpan,
}

impl Scope {
    /// Group 0, owning every user key, with the `meta` names of layout 1.
    pub(crate) fn first() -> Self {
        Self {
            group: 0,
            meta_prefix: Vec::new(),
            span: KeySpan::all(),
        }
    }

    /// Group `group` (≥ 1) over `span`.
    pub(crate) fn group(group: u64, span: KeySpan) -> Self {
        Self {
            group,
            meta_prefix: Self::group_meta_prefix(group),
            span,
        }
    }

    fn group_meta_prefix(group: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(9);
        out.push(GROUP_META_TAG);
        out.extend_from_slice(&group.to_be_bytes());
        out
    }

    /// The `meta` key of `name` in this group.
    pub(crate) fn meta_key(&self, name: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.meta_prefix.len() + name.len());
        out.extend_from_slice(&self.meta_prefix);
        out.extend_from_slice(name);
        out
    }

    /// `name` of a `meta` key of this group (`None` when the key is not this group's).
    pub(crate) fn meta_name<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        let name = key.strip_prefix(self.meta_prefix.as_slice())?;
        // Group 0's names never start with the tag of another group's keys.
        (self.group != 0 || name.first() != Some(&GROUP_META_TAG)).then_some(name)
    }

    /// Every `meta` key of this group: `[lo, hi)`, `hi = None` meaning +∞.
    pub(crate) fn meta_bounds(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        if self.group == 0 {
            return (vec![GROUP_META_TAG + 1], None);
        }
        let hi = self
            .group
            .checked_add(1)
            .map(Self::group_meta_prefix)
            .or_else(|| Some(vec![GROUP_META_TAG + 1]));
        (self.meta_prefix.clone(), hi)
    }

    /// The raw `data` interval this group owns in the column family with `prefix`: `[lo, hi)`.
    pub(crate) fn cf_span(&self, prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let lo = keys::key_start(prefix, &self.span.start);
        let hi = match &self.span.end {
            Some(end) => keys::key_start(prefix, end),
            None => keys::cf_end(prefix),
        };
        (lo, hi)
    }

    /// The raw `data` intervals this group owns, in key order: one per column family of
    /// `prefixes` (the whole column family for a span of every key).
    pub(crate) fn data_spans(
        &self,
        prefixes: &BTreeMap<String, Vec<u8>>,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        if self.span == KeySpan::all() {
            return vec![(Vec::new(), None)];
        }
        if self.span.is_empty() {
            return Vec::new();
        }
        let mut spans: Vec<(Vec<u8>, Option<Vec<u8>>)> = prefixes
            .values()
            .map(|prefix| {
                let (lo, hi) = self.cf_span(prefix);
                (lo, Some(hi))
            })
            .collect();
        spans.sort();
        spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_have_disjoint_meta_keys_and_group_zero_keeps_its_names() {
        let first = Scope::first();
        let seven = Scope::group(7, KeySpan::all());
        let eight = Scope::group(8, KeySpan::all());
        assert_eq!(first.meta_key(b"horizon"), b"horizon".to_vec());
        let key = seven.meta_key(b"horizon");
        assert_eq!(seven.meta_name(&key), Some(b"horizon".as_slice()));
        assert_eq!(eight.meta_name(&key), None);
        assert_eq!(
            first.meta_name(&key),
            None,
            "group 0 never reads another's keys"
        );
        for (scope, inside, outside) in [
            (&seven, seven.meta_key(b"x"), eight.meta_key(b"x")),
            (&first, first.meta_key(b"x"), seven.meta_key(b"x")),
        ] {
            let (lo, hi) = scope.meta_bounds();
            let within = |k: &[u8]| k >= lo.as_slice() && hi.as_deref().is_none_or(|h| k < h);
            assert!(within(&inside));
            assert!(!within(&outside));
        }
    }

    #[test]
    fn a_span_owns_its_keys_in_every_column_family() {
        let prefixes: BTreeMap<String, Vec<u8>> = ["default", "other"]
            .into_iter()
            .map(|cf| (cf.to_owned(), keys::cf_prefix(cf)))
            .collect();
        let span = KeySpan::new(b"g".to_vec(), Some(b"n".to_vec())).unwrap();
        let spans = Scope::group(1, span).data_spans(&prefixes);
        assert_eq!(spans.len(), 2);
        for (cf, prefix) in &prefixes {
            let owned = |k: &[u8]| {
                let raw = keys::version_key(prefix, k, 5);
                spans
                    .iter()
                    .any(|(lo, hi)| raw >= *lo && hi.as_ref().is_none_or(|h| raw < *h))
            };
            assert!(owned(b"g"), "{cf}");
            assert!(owned(b"m\xff\xff"), "{cf}");
            assert!(!owned(b"f\xff"), "{cf}");
            assert!(!owned(b"n"), "{cf}");
            assert!(!owned(b"n\x00"), "{cf}");
        }
        assert!(KeySpan::new(b"b".to_vec(), Some(b"a".to_vec())).is_none());
        let nothing = Scope {
            span: KeySpan::none(),
            ..Scope::first()
        };
        assert!(nothing.data_spans(&prefixes).is_empty());
        assert!(!KeySpan::none().contains(b""));
        assert!(!KeySpan::none().contains(b"a"));
        assert_eq!(
            Scope::first().data_spans(&prefixes),
            vec![(Vec::new(), None)]
        );
    }
}
