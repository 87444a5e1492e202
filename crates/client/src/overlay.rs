//! Read-your-writes without I/O: one column family's buffered writes ([`Overlay`]), what they
//! answer for a point read ([`Local`]), and the merge of a paged snapshot range read with them
//! ([`RangeMerge`]). [`crate::Transaction`] fetches the pages; this module decides.
//!
//! ```text
//!   RangeMerge::next_page ─▶ (caller: snapshotGetRange) ─▶ absorb(page) ─▶ … ─▶ finish
//!        cursor, inclusive, page size                        pairs, more     keys, conflict end
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

/// A key and its value.
pub(crate) type KeyValue = (Vec<u8>, Vec<u8>);

/// Buffered writes of one column family.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overlay {
    /// `Some(value)` = set, `None` = deleted.
    keys: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Cleared `[begin, end)` ranges (keys set after a clear live in `keys`).
    clears: Vec<(Vec<u8>, Vec<u8>)>,
    /// Keys whose value is a pending versionstamped value: unknown until commit.
    unreadable: Vec<Vec<u8>>,
}

/// What the buffered writes answer for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Local {
    /// Written by this transaction: the value, or `None` when deleted or cleared.
    Value(Option<Vec<u8>>),
    /// Holds a pending versionstamped value.
    Unreadable,
    /// Not written: read the snapshot.
    Miss,
}

fn within(key: &[u8], begin: &[u8], end: &[u8]) -> bool {
    begin <= key && key < end
}

impl Overlay {
    fn cleared(&self, key: &[u8]) -> bool {
        self.clears.iter().any(|(b, e)| within(key, b, e))
    }

    /// Buffers `key = value`.
    pub(crate) fn set(&mut self, key: &[u8], value: &[u8]) {
        self.unreadable.retain(|k| k != key);
        self.keys.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Buffers a delete of `key`.
    pub(crate) fn delete(&mut self, key: &[u8]) {
        self.unreadable.retain(|k| k != key);
        self.keys.insert(key.to_vec(), None);
    }

    /// Buffers a delete of every key in `[begin, end)` (nothing when `begin >= end`).
    pub(crate) fn clear_range(&mut self, begin: &[u8], end: &[u8]) {
        self.unreadable.retain(|k| !within(k, begin, end));
        // (`retain`, not `BTreeMap::range`: the latter panics on an inverted range.)
        self.keys.retain(|k, _| !within(k, begin, end));
        self.clears.push((begin.to_vec(), end.to_vec()));
    }

    /// Buffers a versionstamped value at `key`: unreadable until commit.
    pub(crate) fn set_versionstamped_value(&mut self, key: &[u8]) {
        self.keys.remove(key);
        self.unreadable.push(key.to_vec());
    }

    /// What the buffered writes say about `key`.
    pub(crate) fn local(&self, key: &[u8]) -> Local {
        if self.unreadable.iter().any(|k| k == key) {
            Local::Unreadable
        } else if let Some(v) = self.keys.get(key) {
            Local::Value(v.clone())
        } else if self.cleared(key) {
            Local::Value(None)
        } else {
            Local::Miss
        }
    }

    /// A merge of the snapshot's `[begin, end)` with these writes, at most `limit` keys
    /// (0 = no limit), fetched `page_size` keys at a time (> 0).
    ///
    /// # Errors
    /// The first key of the range holding a pending versionstamped value.
    pub(crate) fn range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        page_size: usize,
    ) -> Result<RangeMerge, Vec<u8>> {
        if let Some(k) = self.unreadable.iter().find(|k| within(k, begin, end)) {
            return Err(k.clone());
        }
        let page = if limit == 0 {
            page_size
        } else {
            limit.min(page_size)
        };
        Ok(RangeMerge {
            local: self
                .keys
                .iter()
                .filter(|(k, _)| within(k, begin, end))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            clears: self.clears.clone(),
            begin: begin.to_vec(),
            end: end.to_vec(),
            limit,
            page: i32::try_from(page).unwrap_or(i32::MAX),
            out: Vec::new(),
            cursor: begin.to_vec(),
            inclusive: true,
            truncated: false,
            done: begin >= end,
        })
    }
}

/// The next snapshot page a [`RangeMerge`] needs: keys of `[cursor, end)` (or `(cursor, end)`
/// when not `inclusive`), at most `limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// Where the page starts.
    pub cursor: Vec<u8>,
    /// Whether `cursor` itself is included.
    pub inclusive: bool,
    /// The exclusive end of the range.
    pub end: Vec<u8>,
    /// Most keys in the page (> 0).
    pub limit: i32,
}

/// A range read in progress: snapshot pages merged with the overlay as they arrive.
#[derive(Debug)]
pub(crate) struct RangeMerge {
    /// The overlay's writes inside `[begin, end)`, ascending.
    local: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The overlay's cleared ranges.
    clears: Vec<(Vec<u8>, Vec<u8>)>,
    begin: Vec<u8>,
    end: Vec<u8>,
    /// Most keys returned (0 = no limit).
    limit: usize,
    /// Keys asked per page.
    page: i32,
    /// The merged keys so far.
    out: Vec<KeyValue>,
    /// Where the next page starts.
    cursor: Vec<u8>,
    inclusive: bool,
    /// Whether the limit cut the result short (the conflict range then ends after the last key).
    truncated: bool,
    done: bool,
}

impl RangeMerge {
    /// The page to fetch next; `None` once the merge is complete.
    pub(crate) fn next_page(&self) -> Option<PageRequest> {
        (!self.done).then(|| PageRequest {
            cursor: self.cursor.clone(),
            inclusive: self.inclusive,
            end: self.end.clone(),
            limit: self.page,
        })
    }

    /// Merges the page answering [`RangeMerge::next_page`]: its `pairs` and whether more keys
    /// follow it in the range.
    pub(crate) fn absorb(&mut self, pairs: Vec<KeyValue>, more: bool) {
        // This page covers keys from the cursor up to `high` (inclusive), or to `end`.
        let high = if more {
            pairs.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        let cleared = |key: &[u8]| self.clears.iter().any(|(b, e)| within(key, b, e));
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = pairs
            .into_iter()
            .filter(|(k, _)| !cleared(k) && !self.local.iter().any(|(l, _)| l == k))
            .collect();
        for (k, v) in &self.local {
            let after_cursor = if self.inclusive {
                *k >= self.cursor
            } else {
                *k > self.cursor
            };
            let before_high = high.as_ref().is_none_or(|h| k <= h);
            if let (true, true, Some(v)) = (after_cursor, before_high, v) {
                merged.insert(k.clone(), v.clone());
            }
        }
        self.out.extend(merged);
        if self.limit > 0 && self.out.len() >= self.limit {
            self.truncated = self.out.len() > self.limit || high.is_some();
            self.out.truncate(self.limit);
            self.done = true;
            return;
        }
        match high {
            Some(h) => {
                self.cursor = h;
                self.inclusive = false;
            }
            None => self.done = true,
        }
    }

    /// The merged keys, ascending, and the read conflict range `[begin, end)` they depend on
    /// (`None` when empty): up to just after the last key when the limit cut the read short.
    pub(crate) fn finish(self) -> (Vec<KeyValue>, Option<Range<Vec<u8>>>) {
        let conflict_end = match self.out.last() {
            Some((k, _)) if self.truncated => key_after(k),
            _ => self.end,
        };
        let conflict = (self.begin < conflict_end).then_some(self.begin..conflict_end);
        (self.out, conflict)
    }
}

/// The smallest key after `key`.
pub(crate) fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

#[cfg(test)]
mod tests;
