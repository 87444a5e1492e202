//! The `getRange` algorithm of docs/WIRE.md §3, independent of storage.
//!
//! `RangeSpec` is a validated range request; `effective_end` does the byte arithmetic of
//! `end_offset`; `RangeWalk` applies begin/end/offset/limit rules to an ascending key stream;
//! `RangeBounds` is the same request as one half-open key interval (docs/sharding.md §5.3).

/// The largest `|end_offset|` accepted: each step is cheap, but the count must be bounded.
pub const MAX_END_OFFSET: i64 = 1_000_000;

/// A validated range request (WIRE §3), with defaults already applied by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSpec {
    /// Walk starts at keys ≥ this.
    pub begin_key: Vec<u8>,
    /// The end key before `end_offset` is applied. Empty means the client sent a
    /// present-but-empty end key, which WIRE §3 defines as an empty range.
    pub end_key: Vec<u8>,
    /// Whether `begin_key` itself may be returned.
    pub begin_or_equal: bool,
    /// Whether the effective end key itself may be returned.
    pub end_or_equal: bool,
    /// Number of in-range keys dropped before collecting (negative offsets count as 0).
    pub begin_offset: usize,
    /// Steps of byte arithmetic applied to `end_key` (positive: up, negative: down).
    pub end_offset: i64,
    /// Maximum number of results; `None` = unlimited.
    pub limit: Option<usize>,
    /// Most key and value bytes in one answer (the first pair always goes in, whatever its
    /// size); a page cut by it says `has_more`. `None` = unbounded.
    pub max_bytes: Option<usize>,
}

/// One step up: WIRE §3 ("empty → [0x01]; else +1 on the rightmost byte < 0xFF and zero the
/// 0xFF bytes to its right; all 0xFF → append 0x00").
pub fn step_up(key: &mut Vec<u8>) {
    if key.is_empty() {
        key.push(0x01);
        return;
    }
    match key.iter().rposition(|&b| b < 0xFF) {
        Some(i) => {
            key[i] += 1;
            key[i + 1..].iter_mut().for_each(|b| *b = 0);
        }
        None => key.push(0x00),
    }
}

/// One step down: WIRE §3 ("empty → empty; `b"a"` → empty (kept as observed); else −1 on the
/// rightmost non-zero byte and set every byte to its right to 0xFF; all 0x00 → empty").
pub fn step_down(key: &mut Vec<u8>) {
    if key.as_slice() == b"a" {
        key.clear();
        return;
    }
    match key.iter().rposition(|&b| b != 0) {
        Some(i) => {
            key[i] -= 1;
            key[i + 1..].iter_mut().for_each(|b| *b = 0xFF);
        }
        None => key.clear(),
    }
}

/// `end_key` moved by `end_offset` steps.
pub fn effective_end(end_key: &[u8], end_offset: i64) -> Vec<u8> {
    let mut key = end_key.to_vec();
    if end_offset >= 0 {
        for _ in 0..end_offset {
            step_up(&mut key);
        }
    } else {
        for _ in 0..end_offset.unsigned_abs() {
            if key.is_empty() {
                break; // empty stays empty: further steps change nothing
            }
            step_down(&mut key);
        }
    }
    key
}

/// A range request as one half-open interval `[lo, hi)` of user keys (docs/sharding.md §5.3):
/// exactly the keys the WIRE §3 walk may return, before `begin_offset`, `limit` and the byte
/// budget. Empty when `hi ≤ lo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeBounds {
    /// The smallest key in range: `begin_key`, or `begin_key ‖ 0x00` (its successor) when
    /// `!begin_or_equal`.
    pub lo: Vec<u8>,
    /// The first key past the range: the effective end, or `effective_end ‖ 0x00` when
    /// `end_or_equal`; `lo` for a present but empty `end_key`.
    pub hi: Vec<u8>,
}

impl RangeBounds {
    /// The interval of `spec`, computed once (the `end_offset` arithmetic is [`effective_end`]).
    pub fn from_spec(spec: &RangeSpec) -> Self {
        let mut lo = spec.begin_key.clone();
        if !spec.begin_or_equal {
            lo.push(0x00); // the smallest key above `begin_key`
        }
        let hi = if spec.end_key.is_empty() {
            lo.clone() // WIRE §3: a present but empty end key is an empty range
        } else {
            let mut hi = effective_end(&spec.end_key, spec.end_offset);
            if spec.end_or_equal {
                hi.push(0x00); // the smallest key above the effective end
            }
            hi
        };
        Self { lo, hi }
    }

    /// Whether no key is in range.
    pub fn is_empty(&self) -> bool {
        self.hi <= self.lo
    }

    /// Whether `key` is in range.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.lo.as_slice() <= key && key < self.hi.as_slice()
    }
}

/// The byte budget of one page (`RangeSpec::max_bytes`): key and value bytes of the pairs
/// taken so far, against the most allowed. The first pair of a page always fits, so a page
/// makes progress whatever the size of a pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteBudget {
    /// The most key and value bytes in one page; `None` = unbounded.
    pub max: Option<usize>,
    /// The bytes of the pairs already in the page (a page continued across ranges starts with
    /// what the earlier ranges gave).
    pub spent: usize,
}

impl ByteBudget {
    /// A budget of `max` bytes for a page that holds nothing yet.
    pub fn new(max: Option<usize>) -> Self {
        Self { max, spent: 0 }
    }

    /// Whether a pair of `size` bytes fits, counting it when it does: always when the page is
    /// empty (`spent == 0`), else when `spent + size ≤ max`. When it does not, the page is full
    /// and more keys follow.
    pub fn fits(&mut self, size: usize) -> bool {
        let within = self
            .max
            .is_none_or(|max| self.spent == 0 || self.spent.saturating_add(size) <= max);
        if within {
            self.spent = self.spent.saturating_add(size);
        }
        within
    }
}

/// What the walker decided about one key.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not in range yet (only `begin_key` itself when `!begin_or_equal`): look at the next key.
    Skip,
    /// In range but dropped by `begin_offset`.
    Dropped,
    /// Collect this key.
    Take,
    /// The limit is reached and this key is in range: stop with `has_more = true`.
    MoreAfterLimit,
    /// Past the end: stop with `has_more = false`.
    End,
}

/// Applies the §3 walk rules to keys fed in ascending order (starting at `begin_key`).
#[derive(Debug)]
pub struct RangeWalk<'a> {
    spec: &'a RangeSpec,
    end: Vec<u8>,
    empty: bool,
    dropped: usize,
    taken: usize,
    /// Key and value bytes of the pairs taken, against `spec.max_bytes`.
    budget: ByteBudget,
}

impl<'a> RangeWalk<'a> {
    /// Starts a walk for `spec`.
    pub fn new(spec: &'a RangeSpec) -> Self {
        Self {
            spec,
            empty: spec.end_key.is_empty(), // present-but-empty end key: an empty range
            end: effective_end(&spec.end_key, spec.end_offset),
            dropped: 0,
            taken: 0,
            budget: ByteBudget::new(spec.max_bytes),
        }
    }

    /// Whether a pair of `size` bytes that [`Self::feed`] said to take fits the byte budget
    /// (counting it when it does): the first pair always fits. When it does not, the page is
    /// full and more keys follow.
    pub fn fits(&mut self, size: usize) -> bool {
        self.budget.fits(size)
    }

    /// The effective end key.
    pub fn end(&self) -> &[u8] {
        &self.end
    }

    /// Whether `key` (and so every later key) is beyond the end of the range.
    pub fn past_end(&self, key: &[u8]) -> bool {
        self.empty
            || match key.cmp(self.end.as_slice()) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Equal => !self.spec.end_or_equal,
                std::cmp::Ordering::Less => false,
            }
    }

    /// Decides what to do with the next visible key (keys must be fed ascending, ≥ begin).
    pub fn feed(&mut self, key: &[u8]) -> Step {
        if self.past_end(key) {
            return Step::End;
        }
        if !self.spec.begin_or_equal && key == self.spec.begin_key.as_slice() {
            return Step::Skip;
        }
        if self.dropped < self.spec.begin_offset {
            self.dropped += 1;
            return Step::Dropped;
        }
        if self.spec.limit.is_some_and(|limit| self.taken >= limit) {
            return Step::MoreAfterLimit;
        }
        self.taken += 1;
        Step::Take
    }
}

/// One page of a range read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangePage {
    /// Key/value pairs, bytewise ascending by key.
    pub items: Vec<(Vec<u8>, Vec<u8>)>,
    /// Another in-range key exists after the last one returned.
    pub has_more: bool,
}

/// Runs the walk over an ascending `(key, value)` stream: the reference semantics the engine's
/// RocksDB implementation and the tests' model share.
pub fn walk<I>(spec: &RangeSpec, entries: I) -> RangePage
where
    I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
{
    let mut entries = entries.into_iter();
    let from_begin = || {
        Ok::<_, std::convert::Infallible>(entries.by_ref().find(|(key, _)| *key >= spec.begin_key))
    };
    match walk_pairs(spec, from_begin) {
        Ok(page) => page,
        Err(never) => match never {},
    }
}

/// The page `spec` asks for, from `next`: the next `(key, value)` pair in ascending key order at
/// or after `spec.begin_key` (`None` at the end; an error ends the walk).
pub(crate) fn walk_pairs<E>(
    spec: &RangeSpec,
    mut next: impl FnMut() -> Result<Option<(Vec<u8>, Vec<u8>)>, E>,
) -> Result<RangePage, E> {
    let mut walk = RangeWalk::new(spec);
    let mut page = RangePage::default();
    while let Some((key, value)) = next()? {
        match walk.feed(&key) {
            Step::Skip | Step::Dropped => {}
            Step::Take if walk.fits(key.len() + value.len()) => page.items.push((key, value)),
            Step::Take | Step::MoreAfterLimit => {
                page.has_more = true;
                break;
            }
            Step::End => break,
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(begin: &[u8], end: &[u8]) -> RangeSpec {
        RangeSpec {
            begin_key: begin.to_vec(),
            end_key: end.to_vec(),
            begin_or_equal: true,
            end_or_equal: false,
            begin_offset: 0,
            end_offset: 0,
            limit: Some(1000),
            max_bytes: None,
        }
    }

    fn keys(names: &[&str]) -> Vec<(Vec<u8>, Vec<u8>)> {
        names
            .iter()
            .map(|n| (n.as_bytes().to_vec(), b"v".to_vec()))
            .collect()
    }

    fn got(page: &RangePage) -> Vec<String> {
        page.items
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn byte_arithmetic_matches_wire() {
        assert_eq!(effective_end(b"", 1), vec![0x01]);
        assert_eq!(effective_end(b"ab\xFF\xFF", 1), b"ac\x00\x00".to_vec());
        assert_eq!(effective_end(b"\xFF\xFF", 1), b"\xFF\xFF\x00".to_vec());
        assert_eq!(effective_end(b"", -1), b"".to_vec());
        assert_eq!(effective_end(b"a", -1), b"".to_vec());
        assert_eq!(effective_end(b"b", -1), b"a".to_vec());
        assert_eq!(effective_end(b"ab\x00\x00", -1), b"aa\xFF\xFF".to_vec());
        assert_eq!(effective_end(b"\x00\x00", -1), b"".to_vec());
        assert_eq!(effective_end(b"endoff005", -1), b"endoff004".to_vec());
        assert_eq!(effective_end(b"endoff005", 2), b"endoff007".to_vec());
    }

    #[test]
    fn walk_rules() {
        let data = keys(&["a", "b", "c", "d", "e"]);
        assert_eq!(got(&walk(&spec(b"b", b"d"), data.clone())), ["b", "c"]);
        let mut s = spec(b"b", b"d");
        s.begin_or_equal = false;
        s.end_or_equal = true;
        assert_eq!(got(&walk(&s, data.clone())), ["c", "d"]);
        s.begin_offset = 1;
        assert_eq!(got(&walk(&s, data.clone())), ["d"]);
        let mut s = spec(b"a", b"\xFF");
        s.limit = Some(2);
        let page = walk(&s, data.clone());
        assert_eq!(
            (got(&page), page.has_more),
            (vec!["a".into(), "b".into()], true)
        );
        s.begin_offset = 3;
        let page = walk(&s, data.clone());
        assert_eq!(
            (got(&page), page.has_more),
            (vec!["d".into(), "e".into()], false)
        );
        assert!(walk(&spec(b"a", b""), data.clone()).items.is_empty());
        assert!(walk(&spec(b"d", b"b"), data.clone()).items.is_empty());
        let mut s = spec(b"a", b"c");
        s.end_offset = -1; // effective end "b"
        assert_eq!(got(&walk(&s, data)), ["a"]);
    }

    #[test]
    fn bounds_are_the_walk_as_one_half_open_interval() {
        let bounds = |s: &RangeSpec| {
            let b = RangeBounds::from_spec(s);
            (b.lo, b.hi)
        };
        let mut s = spec(b"b", b"d");
        assert_eq!(bounds(&s), (b"b".to_vec(), b"d".to_vec()));
        s.begin_or_equal = false;
        s.end_or_equal = true;
        assert_eq!(bounds(&s), (b"b\x00".to_vec(), b"d\x00".to_vec()));
        s.end_offset = -1; // effective end "c"
        assert_eq!(bounds(&s), (b"b\x00".to_vec(), b"c\x00".to_vec()));
        s.end_offset = 1; // effective end "e"
        s.end_or_equal = false;
        assert_eq!(bounds(&s), (b"b\x00".to_vec(), b"e".to_vec()));
        // A present but empty end key is empty whatever the offset.
        let mut empty = spec(b"b", b"");
        empty.end_offset = 3;
        empty.end_or_equal = true;
        let b = RangeBounds::from_spec(&empty);
        assert!(b.is_empty() && !b.contains(b"b"));
        // An end that steps down to empty, inclusive: only the empty key would be in range.
        let mut down = spec(b"", b"a");
        down.end_offset = -1;
        down.end_or_equal = true;
        let b = RangeBounds::from_spec(&down);
        assert_eq!((b.lo.as_slice(), b.hi.as_slice()), (&b""[..], &b"\x00"[..]));
        assert!(b.contains(b"") && !b.contains(b"\x00"));
        // End before begin: empty.
        assert!(RangeBounds::from_spec(&spec(b"d", b"b")).is_empty());
    }

    #[test]
    fn bounds_hold_exactly_the_keys_the_walk_may_return() {
        // Every key of a small alphabet, every flag combination and a few offsets: with no
        // offset, limit or budget, the walk returns exactly the keys the interval contains.
        let alphabet: [&[u8]; 9] = [
            b"",
            b"\x00",
            b"\x00\x00",
            b"a",
            b"a\x00",
            b"ab",
            b"b",
            b"\xFF",
            b"\xFF\x00",
        ];
        let data: Vec<(Vec<u8>, Vec<u8>)> = alphabet[1..]
            .iter()
            .map(|k| (k.to_vec(), b"v".to_vec()))
            .collect();
        for begin in alphabet {
            for end in alphabet {
                for (begin_or_equal, end_or_equal) in
                    [(true, true), (true, false), (false, true), (false, false)]
                {
                    for end_offset in -2..=2 {
                        let mut s = spec(begin, end);
                        s.begin_or_equal = begin_or_equal;
                        s.end_or_equal = end_or_equal;
                        s.end_offset = end_offset;
                        s.limit = None;
                        let bounds = RangeBounds::from_spec(&s);
                        let inside: Vec<_> = data
                            .iter()
                            .filter(|(k, _)| bounds.contains(k))
                            .cloned()
                            .collect();
                        assert_eq!(walk(&s, data.clone()).items, inside, "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_byte_budget_cuts_the_page_before_the_pair_that_would_pass_it() {
        let pairs = || (b'a'..=b'e').map(|k| (vec![k], vec![k; 2])); // 3 bytes a pair
        let mut budget = spec(b"a", b"z");
        budget.max_bytes = Some(7);
        let page = walk(&budget, pairs());
        assert_eq!(page.items.len(), 2, "3 + 3 fit 7, a third pair does not");
        assert!(page.has_more);
        budget.max_bytes = Some(1);
        let page = walk(&budget, pairs());
        assert_eq!(page.items.len(), 1, "the first pair always goes in");
        assert!(page.has_more);
        budget.max_bytes = Some(15);
        let page = walk(&budget, pairs());
        assert_eq!(
            (page.items.len(), page.has_more),
            (5, false),
            "all fit exactly"
        );
    }
}
