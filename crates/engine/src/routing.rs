//! The key ranges of the data groups and the table that routes a key to its range
//! (docs/sharding.md §4.1, §4.4, §4.5): [`RangeDescriptor`], [`RoutingTable`] with its checked
//! constructor, and the tables the `[sharding]` settings give ([`RoutingTable::even`],
//! [`RoutingTable::from_split_keys`], [`Placement`]). Values only: nothing routes with them yet.
//!
//! ```text
//!   [sharding] shards | split_keys ─▶ split points ─┐
//!   nodes, replicas ─▶ Placement ───────────────────┴─▶ RoutingTable::new (the rules below)
//!   user key ─▶ route ─▶ &RangeDescriptor        [lo, hi) ─▶ overlapping ─▶ d ∩ [lo, hi), in order
//! ```
//!
//! The rules of a table, checked by [`RoutingTable::new`] and by every decode: at least one
//! range; the first starts at the empty key, each next one starts exactly where the one before
//! ends (so sorted, gap-free, non-overlapping), the last ends at +∞; and each range (also a
//! descriptor on its own, [`RangeDescriptor::check`]) belongs to a data group (≥ 1) of its own,
//! is non-empty, has an epoch ≥ 1 and at least one voter, none twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The metadata group: it holds the routing table and owns no key range (docs/sharding.md §2).
pub const METADATA_GROUP: u64 = 0;

/// The most data groups a table built from settings may have ([`RoutingTable::even`],
/// [`RoutingTable::from_split_keys`]).
pub const MAX_SHARDS: usize = 4096;

/// The half-open user-key interval `[start, end)` a data group owns, in every column family at
/// once, with the epoch and voters of that group (docs/sharding.md §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeDescriptor {
    /// The data group that owns the range (never [`METADATA_GROUP`]).
    pub group: u64,
    /// The first key of the range (inclusive); the empty key for the first range.
    pub start: Vec<u8>,
    /// The first key past the range; `None` is +∞ (the last range).
    pub end: Option<Vec<u8>>,
    /// Raised whenever the range or its replicas change; routes carry it (§4.2). Starts at 1.
    pub epoch: u64,
    /// The node ids of the group's voters; the first is its preferred leader (§4.5).
    pub voters: Vec<u64>,
}

/// Why a descriptor is not a valid range of a data group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    /// The descriptor names the metadata group.
    #[error(
        "group {METADATA_GROUP} is the metadata group and owns no key range; data groups are \
         numbered from 1"
    )]
    MetadataGroup,
    /// `start ≥ end`: the range holds no key.
    #[error(
        "group {group}'s range is empty: its start {} is not below its end {}",
        show(start),
        show(end)
    )]
    Empty {
        /// The group of the range.
        group: u64,
        /// Its start.
        start: Vec<u8>,
        /// Its end.
        end: Vec<u8>,
    },
    /// Epoch 0.
    #[error("group {group}'s range has epoch 0; epochs start at 1")]
    ZeroEpoch {
        /// The group of the range.
        group: u64,
    },
    /// No voter.
    #[error("group {group}'s range has no voters; a group needs at least one")]
    NoVoters {
        /// The group of the range.
        group: u64,
    },
    /// A node is listed twice among the voters.
    #[error("group {group}'s range lists node {node} twice among its voters")]
    DuplicateVoter {
        /// The group of the range.
        group: u64,
        /// The node listed twice.
        node: u64,
    },
}

/// Why a list of descriptors is not a routing table: each variant names the range (its
/// position in the table and its group) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// No range at all.
    #[error("the routing table has no ranges; it must cover every key, [\"\", +∞)")]
    NoRanges,
    /// One range breaks a rule of its own.
    #[error("range {index}: {problem}")]
    Range {
        /// Its position in the table.
        index: usize,
        /// What is wrong with it.
        problem: DescriptorError,
    },
    /// The first range does not start at the empty key.
    #[error(
        "range 0 (group {group}) starts at {}; the first range must start at the empty key \
         \"\"",
        show(start)
    )]
    FirstStart {
        /// The group of the first range.
        group: u64,
        /// Where it starts.
        start: Vec<u8>,
    },
    /// A range starts after the end of the one before: the keys in between have no range.
    #[error(
        "range {index} (group {group}) starts at {}, after range {} (group {previous_group}) \
         ends at {}: the keys in between belong to no range",
        show(start),
        index.saturating_sub(1),
        show(previous_end)
    )]
    Gap {
        /// Its position in the table.
        index: usize,
        /// Its group.
        group: u64,
        /// Where it starts.
        start: Vec<u8>,
        /// The group of the range before it.
        previous_group: u64,
        /// Where the range before it ends.
        previous_end: Vec<u8>,
    },
    /// A range starts before the end of the one before: they overlap, or are out of key order.
    #[error(
        "range {index} (group {group}) starts at {}, before range {} (group {previous_group}) \
         ends at {}: the ranges overlap or are not in key order",
        show(start),
        index.saturating_sub(1),
        show_end(previous_end.as_deref())
    )]
    Overlap {
        /// Its position in the table.
        index: usize,
        /// Its group.
        group: u64,
        /// Where it starts.
        start: Vec<u8>,
        /// The group of the range before it.
        previous_group: u64,
        /// Where the range before it ends (`None`: +∞).
        previous_end: Option<Vec<u8>>,
    },
    /// The last range does not end at +∞.
    #[error(
        "range {index} (group {group}), the last, ends at {}; the last range must end at +∞",
        show(end)
    )]
    LastEnd {
        /// Its position in the table.
        index: usize,
        /// Its group.
        group: u64,
        /// Where it ends.
        end: Vec<u8>,
    },
    /// Two ranges belong to the same group.
    #[error(
        "ranges {first} and {second} both belong to group {group}; a data group owns one range"
    )]
    DuplicateGroup {
        /// The group.
        group: u64,
        /// The position of its first range.
        first: usize,
        /// The position of its second range.
        second: usize,
    },
}

/// Why `[sharding]` settings do not give a table (docs/sharding.md §11); each variant names the
/// setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// `shards` out of bounds.
    #[error("shards = {shards}: must be between 1 and {MAX_SHARDS}")]
    Shards {
        /// The value given.
        shards: usize,
    },
    /// More split keys than groups allowed.
    #[error(
        "split_keys has {count} keys, which make {} groups; at most {MAX_SHARDS} groups \
         ({} keys) are allowed",
        count.saturating_add(1),
        MAX_SHARDS - 1
    )]
    TooManySplitKeys {
        /// How many keys were given.
        count: usize,
    },
    /// An empty split key (it would make an empty first range).
    #[error("split_keys[{index}] is empty; every split key must have at least one byte")]
    EmptySplitKey {
        /// Its position in `split_keys`.
        index: usize,
    },
    /// A split key not strictly above the one before it.
    #[error(
        "split_keys[{index}] = {} is not above split_keys[{}] = {}; split keys must be strictly \
         increasing",
        show(key),
        index.saturating_sub(1),
        show(previous)
    )]
    UnsortedSplitKey {
        /// Its position in `split_keys`.
        index: usize,
        /// The key.
        key: Vec<u8>,
        /// The key before it.
        previous: Vec<u8>,
    },
    /// `replicas` out of bounds.
    #[error("replicas = {replicas}: must be between 1 and the number of nodes ({nodes})")]
    Replicas {
        /// The value given.
        replicas: usize,
        /// How many nodes there are.
        nodes: usize,
    },
    /// A node id listed twice.
    #[error("nodes[{index}] = {node} is listed twice (first at nodes[{first}]); node ids must be distinct")]
    DuplicateNode {
        /// The node id.
        node: u64,
        /// Its first position.
        first: usize,
        /// Its second position.
        index: usize,
    },
}

/// A key for messages: quoted, printable ASCII as is, other bytes as `\xNN`.
fn show(key: &[u8]) -> String {
    format!("\"{}\"", key.escape_ascii())
}

/// A range end for messages: [`show`], or `+∞` for `None`.
fn show_end(end: Option<&[u8]>) -> String {
    end.map_or_else(|| "+∞".to_owned(), show)
}

impl RangeDescriptor {
    /// The rules a descriptor keeps on its own (module docs): a data group, non-empty, epoch
    /// ≥ 1, at least one voter and none twice.
    pub fn check(&self) -> Result<(), DescriptorError> {
        let group = self.group;
        if group == METADATA_GROUP {
            return Err(DescriptorError::MetadataGroup);
        }
        if let Some(end) = &self.end {
            if self.start >= *end {
                return Err(DescriptorError::Empty {
                    group,
                    start: self.start.clone(),
                    end: end.clone(),
                });
            }
        }
        if self.epoch == 0 {
            return Err(DescriptorError::ZeroEpoch { group });
        }
        if self.voters.is_empty() {
            return Err(DescriptorError::NoVoters { group });
        }
        let mut seen = BTreeSet::new();
        if let Some(node) = self.voters.iter().find(|node| !seen.insert(**node)) {
            return Err(DescriptorError::DuplicateVoter { group, node: *node });
        }
        Ok(())
    }

    /// Whether `key` (of any column family) belongs to this range: `start ≤ key < end`.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && self.end.as_deref().is_none_or(|end| key < end)
    }

    /// `[lo, hi) ∩ [start, end)`: the part of a half-open user-key interval inside this range,
    /// or `None` when they share no key.
    pub fn clip<'a>(&'a self, lo: &'a [u8], hi: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        let from = lo.max(self.start.as_slice());
        let to = match self.end.as_deref() {
            Some(end) => hi.min(end),
            None => hi,
        };
        (from < to).then_some((from, to))
    }
}

impl fmt::Display for RangeDescriptor {
    /// `group 3 ["g", "m") epoch 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "group {} [{}, {}) epoch {}",
            self.group,
            show(&self.start),
            show_end(self.end.as_deref()),
            self.epoch
        )
    }
}

/// Every data group's range, in key order, covering every key `["", +∞)` exactly once
/// (docs/sharding.md §4.1). Built only through [`RoutingTable::new`] (or the constructors from
/// settings, and decoding, which call it), so a table in hand keeps the rules of the module
/// docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingTable {
    /// Sorted by `start`; `ranges[i].end == Some(ranges[i + 1].start)`; the last ends at +∞.
    ranges: Vec<RangeDescriptor>,
}

impl RoutingTable {
    /// The table of `ranges`, in key order, if they keep every rule (module docs); else the
    /// first rule broken, naming the range.
    pub fn new(ranges: Vec<RangeDescriptor>) -> Result<Self, RoutingError> {
        let Some(first) = ranges.first() else {
            return Err(RoutingError::NoRanges);
        };
        if !first.start.is_empty() {
            return Err(RoutingError::FirstStart {
                group: first.group,
                start: first.start.clone(),
            });
        }
        // Group id → position of its range.
        let mut groups = BTreeMap::new();
        for (index, d) in ranges.iter().enumerate() {
            d.check()
                .map_err(|problem| RoutingError::Range { index, problem })?;
            if let Some(&first) = groups.get(&d.group) {
                return Err(RoutingError::DuplicateGroup {
                    group: d.group,
                    first,
                    second: index,
                });
            }
            groups.insert(d.group, index);
            let Some(previous) = index.checked_sub(1).map(|i| &ranges[i]) else {
                continue;
            };
            // Each range starts exactly where the one before ends: with every range non-empty
            // (checked above), this makes the table sorted, gap-free and non-overlapping.
            match previous.end.as_deref() {
                Some(end) if end == d.start.as_slice() => {}
                Some(end) if end < d.start.as_slice() => {
                    return Err(RoutingError::Gap {
                        index,
                        group: d.group,
                        start: d.start.clone(),
                        previous_group: previous.group,
                        previous_end: end.to_vec(),
                    })
                }
                end => {
                    return Err(RoutingError::Overlap {
                        index,
                        group: d.group,
                        start: d.start.clone(),
                        previous_group: previous.group,
                        previous_end: end.map(<[u8]>::to_vec),
                    })
                }
            }
        }
        let last = ranges.len() - 1;
        if let Some(end) = &ranges[last].end {
            return Err(RoutingError::LastEnd {
                index: last,
                group: ranges[last].group,
                end: end.clone(),
            });
        }
        Ok(Self { ranges })
    }

    /// `n` data groups over even split points of the first two key bytes (§4.4): split `i` is
    /// `be16(⌊65536·i/n⌋)` without trailing zero bytes (`n = 4`: `0x40`, `0x80`, `0xC0`).
    /// Groups `1..=n` in key order, epoch 1, voters by `placement`.
    pub fn even(n: usize, placement: &Placement) -> Result<Self, SettingsError> {
        if !(1..=MAX_SHARDS).contains(&n) {
            return Err(SettingsError::Shards { shards: n });
        }
        let splits = (1..n)
            .map(|i| {
                // i < n ≤ 4096, so 65536·i/n is in 16..65536 and fits a u16.
                let point = u16::try_from(65_536 * i / n).unwrap_or(u16::MAX);
                let mut key = point.to_be_bytes().to_vec();
                while key.last() == Some(&0) {
                    key.pop();
                }
                key
            })
            .collect();
        Ok(Self::from_points(splits, placement))
    }

    /// `keys.len() + 1` data groups split at `keys`, which must be non-empty and strictly
    /// increasing (§11 `split_keys`). Groups `1..=n` in key order, epoch 1, voters by
    /// `placement`.
    pub fn from_split_keys(keys: &[Vec<u8>], placement: &Placement) -> Result<Self, SettingsError> {
        if keys.len() >= MAX_SHARDS {
            return Err(SettingsError::TooManySplitKeys { count: keys.len() });
        }
        for (index, key) in keys.iter().enumerate() {
            if key.is_empty() {
                return Err(SettingsError::EmptySplitKey { index });
            }
            if let Some(previous) = index.checked_sub(1).map(|i| &keys[i]) {
                if key <= previous {
                    return Err(SettingsError::UnsortedSplitKey {
                        index,
                        key: key.clone(),
                        previous: previous.clone(),
                    });
                }
            }
        }
        Ok(Self::from_points(keys.to_vec(), placement))
    }

    /// The table of the checked, strictly increasing, non-empty split points `splits`.
    fn from_points(splits: Vec<Vec<u8>>, placement: &Placement) -> Self {
        let starts = std::iter::once(Vec::new()).chain(splits.clone());
        let ends = splits.into_iter().map(Some).chain(std::iter::once(None));
        let ranges = starts
            .zip(ends)
            .zip(1u64..)
            .map(|((start, end), group)| RangeDescriptor {
                group,
                start,
                end,
                epoch: 1,
                voters: placement.voters(group),
            })
            .collect();
        Self { ranges }
    }

    /// The ranges, in key order.
    pub fn ranges(&self) -> &[RangeDescriptor] {
        &self.ranges
    }

    /// The ranges, in key order, by value.
    pub fn into_ranges(self) -> Vec<RangeDescriptor> {
        self.ranges
    }

    /// The range of `group`, if the table has one.
    pub fn descriptor(&self, group: u64) -> Option<&RangeDescriptor> {
        self.ranges.iter().find(|d| d.group == group)
    }

    /// The position of the range holding `key`.
    fn index_of(&self, key: &[u8]) -> usize {
        // The first range starts at "" ≤ every key, so at least one start is ≤ key.
        self.ranges
            .partition_point(|d| d.start.as_slice() <= key)
            .saturating_sub(1)
    }

    /// The range that holds `key` (of any column family): the one with `start ≤ key < end`.
    /// Every key has exactly one.
    pub fn route(&self, key: &[u8]) -> &RangeDescriptor {
        &self.ranges[self.index_of(key)]
    }

    /// The ranges holding at least one key of the half-open user-key interval `[lo, hi)`, in
    /// key order; none when `lo ≥ hi`. Clip each with [`RangeDescriptor::clip`] (or use
    /// [`RoutingTable::pieces`]) for the interval each group is asked to scan (§5.3).
    pub fn overlapping<'a>(
        &'a self,
        lo: &[u8],
        hi: &[u8],
    ) -> impl Iterator<Item = &'a RangeDescriptor> + 'a {
        let (first, last) = if lo < hi {
            // Ranges from the one holding `lo` up to the last that starts below `hi`.
            (
                self.index_of(lo),
                self.ranges.partition_point(|d| d.start.as_slice() < hi),
            )
        } else {
            (0, 0)
        };
        self.ranges[first..last].iter()
    }

    /// `[lo, hi)` cut at the range boundaries: each overlapping range with its part of the
    /// interval, in key order. The parts are non-empty, disjoint and together exactly
    /// `[lo, hi)`.
    pub fn pieces<'a>(
        &'a self,
        lo: &'a [u8],
        hi: &'a [u8],
    ) -> impl Iterator<Item = (&'a RangeDescriptor, (&'a [u8], &'a [u8]))> + 'a {
        self.overlapping(lo, hi)
            .filter_map(move |d| d.clip(lo, hi).map(|part| (d, part)))
    }
}

/// Where the data groups' voters go (§4.5): group `g`'s voters are `nodes[(g − 1 + j) mod N]`
/// for `j < replicas`, given the `N` node ids in order; the first is its preferred leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The node ids, in order, distinct.
    nodes: Vec<u64>,
    /// Voters per data group, `1..=nodes.len()`.
    replicas: usize,
}

impl Placement {
    /// Placement over `nodes` (in order, distinct) with `replicas` voters per data group,
    /// `1 ≤ replicas ≤ nodes.len()`.
    pub fn new(nodes: Vec<u64>, replicas: usize) -> Result<Self, SettingsError> {
        if !(1..=nodes.len()).contains(&replicas) {
            return Err(SettingsError::Replicas {
                replicas,
                nodes: nodes.len(),
            });
        }
        // Node id → its position.
        let mut seen = BTreeMap::new();
        for (index, node) in nodes.iter().enumerate() {
            if let Some(&first) = seen.get(node) {
                return Err(SettingsError::DuplicateNode {
                    node: *node,
                    first,
                    index,
                });
            }
            seen.insert(*node, index);
        }
        Ok(Self { nodes, replicas })
    }

    /// The voters of data group `group` (≥ 1), preferred leader first.
    pub fn voters(&self, group: u64) -> Vec<u64> {
        let n = self.nodes.len();
        // `group − 1` reduced mod N first, so no group id overflows the sum.
        let first = usize::try_from(group.saturating_sub(1) % n as u64).unwrap_or(0);
        (0..self.replicas)
            .map(|j| self.nodes[(first + j) % n])
            .collect()
    }
}

#[cfg(test)]
mod tests;
