//! Range reads across shards (docs/sharding.md §5.3): one WIRE §3 request answered by asking
//! each range that overlaps it, in key order, for a bounded scan of its part of the interval,
//! and merging the answers into the page one engine's `get_range` would give.
//!
//! ```text
//!   RangeSpec ─▶ RangeBounds [lo, hi) ─▶ for each range, in key order:
//!       scan(range ∩ [lo, hi), skip, ask, budget) ─▶ ScanPage { skipped, pairs, cut }
//!   ─▶ RangePage { items, has_more }            (skip, ask and the budget carry over)
//! ```
//! The scan is a closure, so the same merge serves a local engine ([`crate::Engine::scan`]) and,
//! later, a group asked over the network. Nothing routes through it yet.

use crate::range::{ByteBudget, RangeBounds, RangePage, RangeSpec};

/// How much of one interval a scan returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanLimits {
    /// Visible keys of the interval dropped before any is returned (what is left of
    /// `begin_offset` after the earlier ranges).
    pub skip: usize,
    /// The most pairs returned; `None` = unbounded.
    pub ask: Option<usize>,
    /// The page's byte budget, with the bytes the earlier ranges already put in it: the first
    /// pair always goes in only when `spent == 0`.
    pub budget: ByteBudget,
}

/// What a scan of one interval returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// How many visible keys were dropped (`≤ skip`; less only when the interval holds fewer).
    pub skipped: usize,
    /// The visible pairs after those, ascending by key, at most `ask`.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The byte budget stopped the scan before a visible key of the interval: the page is full
    /// and more keys follow.
    pub cut: bool,
}

/// Why a merged range read failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError<E> {
    /// The ranges handed to [`merge_range`] leave a key of the request uncovered: they must be
    /// in key order and cover `[lo, hi)` without a gap (the routing table is gap-free).
    #[error("no range covers the key {at:02x?}: the ranges must be in key order and cover the requested interval without a gap")]
    Gap {
        /// The first requested key no range holds.
        at: Vec<u8>,
    },
    /// A scan failed (its error, unchanged).
    #[error(transparent)]
    Scan(E),
}

/// Answers `spec` from the ranges that hold its keys: `ranges` are `(start, end)` user-key
/// intervals (`end = None`: +∞) in key order, and `scan(a, b, limits)` scans `[a, b)` of the
/// range that holds it (at one version for every range). The result is the page
/// [`crate::Engine::get_range`] gives over the union of the ranges (docs/sharding.md §5.3):
/// - `begin_offset` counts over the whole request: what one range dropped is not dropped again;
/// - each range is asked for one pair more than the limit leaves, so a pair past the limit,
///   wherever it lies, sets `has_more`; a scan cut by the byte budget sets it too;
/// - ranges after the one that filled the page are not asked.
///
/// Ranges before `lo` are passed over, so the whole table may be given. An empty request still
/// asks the range that holds `lo`, for the empty interval `[lo, lo)`, so a bad version fails as
/// it does on one engine.
///
/// # Errors
/// [`MergeError::Gap`] when the ranges do not cover `[lo, hi)`; [`MergeError::Scan`] with the
/// first error a scan returns (no later range is asked).
pub fn merge_range<'r, E, R, S>(
    spec: &RangeSpec,
    ranges: R,
    mut scan: S,
) -> Result<RangePage, MergeError<E>>
where
    R: IntoIterator<Item = (&'r [u8], Option<&'r [u8]>)>,
    S: FnMut(&[u8], &[u8], &ScanLimits) -> Result<ScanPage, E>,
{
    let bounds = RangeBounds::from_spec(spec);
    // An empty request is the empty interval at `lo`.
    let hi = bounds.hi.max(bounds.lo.clone());
    let mut cursor = bounds.lo; // the first key of the request not yet scanned
    let mut asked = false;
    let mut skip = spec.begin_offset;
    let mut budget = ByteBudget::new(spec.max_bytes);
    let mut page = RangePage::default();
    for (start, end) in ranges {
        if asked && cursor >= hi {
            break;
        }
        if end.is_some_and(|end| end <= cursor.as_slice()) {
            continue; // wholly before what is left of the request
        }
        if start > cursor.as_slice() {
            return Err(MergeError::Gap { at: cursor });
        }
        let stop = match end {
            Some(end) if end < hi.as_slice() => end.to_vec(),
            _ => hi.clone(),
        };
        let limits = ScanLimits {
            skip,
            // One pair more than the limit leaves: it tells `has_more` (never 0: the page is
            // returned as soon as it holds more than `limit`).
            ask: spec
                .limit
                .map(|limit| limit.saturating_sub(page.items.len()) + 1),
            budget,
        };
        let reply = scan(&cursor, &stop, &limits).map_err(MergeError::Scan)?;
        asked = true;
        skip = skip.saturating_sub(reply.skipped);
        for (key, value) in &reply.pairs {
            budget.spent = budget.spent.saturating_add(key.len() + value.len());
        }
        page.items.extend(reply.pairs);
        if let Some(limit) = spec.limit {
            if page.items.len() > limit {
                page.items.truncate(limit);
                page.has_more = true;
                return Ok(page);
            }
        }
        if reply.cut {
            page.has_more = true;
            return Ok(page);
        }
        cursor = stop;
    }
    if !asked || cursor < hi {
        return Err(MergeError::Gap { at: cursor });
    }
    Ok(page)
}
