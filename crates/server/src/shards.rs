//! The groups a node serves and the key ranges they own: what the gateway routes every read and
//! commit through (docs/sharding.md §2 "Inside one node", §10). One shape for every topology: a
//! standalone node or an unsharded cluster is one group owning `["", +∞)`; a sharded node is
//! the data groups of its routing table, with read versions from group 0's oracle.
//!
//! ```text
//!   key ─▶ route ─▶ &ShardGroup                 (engine, replicator, gate of its group)
//!   [lo, hi) ─▶ overlapping / involved ─▶ positions of the groups in key order
//!   Transaction ─▶ touched ─▶ the groups its writes and read-conflict ranges reach (§6.1)
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use dolmen_engine::{
    stamp_buffer, versionstamp, Engine, KeySpan, Mutation, RoutingTable, Transaction, Version,
};
use dolmen_raft::{ReadGate, Replicator};

use crate::cross_shard::DEFAULT_ORPHAN_AGE;

use crate::service::printable;

/// One Raft group as the gateway sees it: its engine handle (reads), its replicator (commits)
/// and its read gate (the barrier a read at a version waits on).
#[derive(Clone)]
pub struct ShardGroup {
    /// The group's id (0: the node's first group; data groups of a routing table are ≥ 1).
    pub id: u64,
    /// The engine handle the group applies through (`Engine::open`, or `open_group` for g ≥ 1).
    pub engine: Arc<Engine>,
    /// Orders the group's commands.
    pub replicator: Arc<dyn Replicator>,
    /// Decides when this node may read the group's data at a version (`ReadGate::cover`).
    pub gate: Arc<dyn ReadGate>,
}

impl fmt::Debug for ShardGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardGroup")
            .field("id", &self.id)
            .field("span", self.engine.span())
            .finish_non_exhaustive()
    }
}

/// Why a routing table and a node's groups do not fit together; each variant names the group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardsError {
    /// The table gives a range to a group the node was not handed.
    #[error(
        "the routing table gives keys {range} to group {group}, but no group {group} was \
         given; start every group of the table"
    )]
    MissingGroup {
        /// The group of the table.
        group: u64,
        /// Its range, printed.
        range: String,
    },
    /// A group was handed that the table does not list.
    #[error(
        "group {group} was given, but the routing table gives it no range (its groups are \
         {table}); give only the table's data groups"
    )]
    ExtraGroup {
        /// The group not in the table.
        group: u64,
        /// The table's groups, printed.
        table: String,
    },
    /// Two groups with one id were handed.
    #[error("group {group} was given twice; give each group once")]
    DuplicateGroup {
        /// The id given twice.
        group: u64,
    },
    /// A group's engine handle owns other keys than the table gives the group.
    #[error(
        "group {group}'s engine handle owns keys {handle}, but the routing table gives it \
         keys {table}; open the handle over the table's range"
    )]
    SpanMismatch {
        /// The group.
        group: u64,
        /// The table's range for it, printed.
        table: String,
        /// The handle's span, printed.
        handle: String,
    },
}

/// The groups of this node in key order, each with the key range it owns, and where read
/// versions and cluster views come from. The ranges are sorted, gap-free and cover every key;
/// every method works alike for one group and for many.
pub struct Shards {
    /// In key order: `groups[i]` owns `spans[i]`.
    groups: Vec<ShardGroup>,
    /// `spans[0].start` is empty, `spans[i].end == Some(spans[i + 1].start)`, the last ends at
    /// +∞ (a routing table's rules, or the one range of [`Shards::single`]).
    spans: Vec<KeySpan>,
    /// Where read versions come from: the single group's gate, or group 0's oracle.
    versions: Arc<dyn ReadGate>,
    /// Where cluster views come from: the single group's replicator, or group 0's.
    membership: Arc<dyn Replicator>,
    /// Group 0 of a sharded node, which records the decisions of commits across groups
    /// (docs/sharding.md §6.3); `None` for one group, where every commit is single-group.
    metadata: Option<ShardGroup>,
    /// How old (in versions: µs of the oracle's clock) an undecided lock must be for its
    /// transaction to be taken for an orphan (`[sharding] orphan_timeout_ms`, §6.5).
    orphan_age: Version,
    /// How long a read waits for the locks over what it reads before `UNAVAILABLE`
    /// (`[sharding] lock_timeout_ms`, §6.5).
    lock_timeout: std::time::Duration,
    /// The data groups acknowledge a write only once every voter applied it (`[consensus]
    /// replication_mode = "all"`): a commit across groups whose resolve in some participant
    /// is not confirmed is not answered as committed (§9).
    every_voter_applies: bool,
}

impl fmt::Debug for Shards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shards")
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// `['a', 'm')`, `['m', +inf)`: a key range for messages.
pub fn show_span(span: &KeySpan) -> String {
    let end = span
        .end
        .as_deref()
        .map_or_else(|| "+inf".to_owned(), printable);
    format!("[{}, {end})", printable(&span.start))
}

impl Shards {
    /// One group owns every key; read versions come from its own gate and cluster views from
    /// its own replicator (a standalone node, an unsharded cluster).
    pub fn single(group: ShardGroup) -> Self {
        Self {
            versions: group.gate.clone(),
            membership: group.replicator.clone(),
            groups: vec![group],
            spans: vec![KeySpan::all()],
            metadata: None,
            orphan_age: DEFAULT_ORPHAN_AGE,
            lock_timeout: std::time::Duration::from_millis(dolmen_config::DEFAULT_LOCK_TIMEOUT_MS),
            every_voter_applies: false,
        }
    }

    /// The data groups of `table`: each range's group must be in `groups` exactly once, with an
    /// engine handle over that range, and `groups` must hold no other. Read versions come from
    /// `oracle` (group 0's); cluster views and the decisions of commits across groups from
    /// `metadata` (group 0).
    ///
    /// # Errors
    /// [`ShardsError`] naming the first group missing, given twice, not in the table, or whose
    /// handle owns other keys than its range.
    pub fn routed(
        table: RoutingTable,
        groups: Vec<ShardGroup>,
        oracle: Arc<dyn ReadGate>,
        metadata: ShardGroup,
    ) -> Result<Self, ShardsError> {
        let mut seen = BTreeSet::new();
        for group in &groups {
            if !seen.insert(group.id) {
                return Err(ShardsError::DuplicateGroup { group: group.id });
            }
            if table.descriptor(group.id).is_none() {
                let table = table
                    .ranges()
                    .iter()
                    .map(|d| d.group.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ShardsError::ExtraGroup {
                    group: group.id,
                    table,
                });
            }
        }
        let mut given = groups;
        let mut ordered = Vec::with_capacity(given.len());
        let mut spans = Vec::with_capacity(given.len());
        for d in table.into_ranges() {
            let span = KeySpan {
                start: d.start,
                end: d.end,
            };
            let Some(at) = given.iter().position(|g| g.id == d.group) else {
                return Err(ShardsError::MissingGroup {
                    group: d.group,
                    range: show_span(&span),
                });
            };
            let group = given.swap_remove(at);
            if group.engine.span() != &span {
                return Err(ShardsError::SpanMismatch {
                    group: group.id,
                    table: show_span(&span),
                    handle: show_span(group.engine.span()),
                });
            }
            ordered.push(group);
            spans.push(span);
        }
        Ok(Self {
            groups: ordered,
            spans,
            versions: oracle,
            membership: metadata.replicator.clone(),
            metadata: Some(metadata),
            orphan_age: DEFAULT_ORPHAN_AGE,
            lock_timeout: std::time::Duration::from_millis(dolmen_config::DEFAULT_LOCK_TIMEOUT_MS),
            every_voter_applies: false,
        })
    }

    /// The same groups, taking an undecided lock older than `timeout` for an orphan's.
    pub fn with_orphan_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.orphan_age = Version::try_from(timeout.as_micros()).unwrap_or(Version::MAX);
        self
    }

    /// The same groups, a read waiting at most `wait` for the locks over what it reads.
    pub fn with_lock_timeout(mut self, wait: std::time::Duration) -> Self {
        self.lock_timeout = wait;
        self
    }

    /// The same groups, whose writes are acknowledged only once every voter applied them
    /// (`[consensus] replication_mode = "all"`) when `all`.
    pub fn with_every_voter_applying(mut self, all: bool) -> Self {
        self.every_voter_applies = all;
        self
    }

    /// Whether the data groups acknowledge a write only once every voter applied it.
    pub fn every_voter_applies(&self) -> bool {
        self.every_voter_applies
    }

    /// How long a read waits for the locks over what it reads before `UNAVAILABLE`.
    pub fn lock_timeout(&self) -> std::time::Duration {
        self.lock_timeout
    }

    /// How old an undecided lock must be, in versions, to be taken for an orphan's.
    pub fn orphan_age(&self) -> Version {
        self.orphan_age
    }

    /// The groups, in key order (never empty).
    pub fn groups(&self) -> &[ShardGroup] {
        &self.groups
    }

    /// The key ranges the groups own, in key order: `spans()[i]` is `groups()[i]`'s.
    pub fn spans(&self) -> &[KeySpan] {
        &self.spans
    }

    /// The first group in key order (the owner of the empty key).
    pub fn first(&self) -> &ShardGroup {
        &self.groups[0]
    }

    /// Where read versions come from (the single group's gate, or group 0's oracle).
    pub fn read_versions(&self) -> &Arc<dyn ReadGate> {
        &self.versions
    }

    /// Where cluster views come from (the single group's replicator, or group 0's).
    pub fn membership(&self) -> &Arc<dyn Replicator> {
        &self.membership
    }

    /// Group 0, where commits across groups are decided (`None` for one group).
    pub fn metadata(&self) -> Option<&ShardGroup> {
        self.metadata.as_ref()
    }

    /// The position (in key order) of the group owning `key`.
    pub fn position(&self, key: &[u8]) -> usize {
        // The first range starts at "" ≤ every key, so at least one start is ≤ key.
        self.spans
            .partition_point(|s| s.start.as_slice() <= key)
            .saturating_sub(1)
    }

    /// The owner of `key` (of any column family).
    pub fn route(&self, key: &[u8]) -> &ShardGroup {
        &self.groups[self.position(key)]
    }

    /// The positions of the groups holding at least one key of the half-open interval
    /// `[lo, hi)`, in key order; none when `lo ≥ hi`.
    pub fn overlapping(&self, lo: &[u8], hi: &[u8]) -> Range<usize> {
        if lo >= hi {
            return 0..0;
        }
        let last = self.spans.partition_point(|s| s.start.as_slice() < hi);
        self.position(lo)..last
    }

    /// The positions of the groups a read of `[lo, hi)` asks (docs/sharding.md §5.3): those
    /// overlapping it, or, for an empty interval, the owner of `lo` (so a bad version fails as
    /// it does on one group).
    pub fn involved(&self, lo: &[u8], hi: &[u8]) -> Range<usize> {
        if lo >= hi {
            let at = self.position(lo);
            return at..at + 1;
        }
        self.overlapping(lo, hi)
    }

    /// The positions of the groups `tx` involves (docs/sharding.md §6.1), in key order: the
    /// owner of each set, delete and versionstamped-value key; every group overlapping a clear
    /// range; for a versionstamped key with buffer `p ‖ 10 bytes`, the owner of the key it
    /// would be with the lowest version the commit can get (one above the last version the
    /// read-version source is known to have handed out: versions only grow, so the key written
    /// is at or above it, and past the owner's end only if the versions crossed a split point
    /// meanwhile, which the group refuses at apply and the gateway routes again), or, for a
    /// commit with an idempotency token, every group of `[p ‖ 00×10, p ‖ ff×10]`; every group
    /// overlapping a read-conflict range. Empty for a transaction with none of these.
    pub fn touched(&self, tx: &Transaction) -> BTreeSet<usize> {
        let lowest = self.versions.applied_version().saturating_add(1);
        let mut out = BTreeSet::new();
        for (order, mutation) in tx.mutations.iter().enumerate() {
            match mutation {
                Mutation::Set { key, .. }
                | Mutation::Delete { key, .. }
                | Mutation::SetVersionstampedValue { key, .. } => {
                    out.insert(self.position(key));
                }
                Mutation::ClearRange { begin, end, .. } => out.extend(self.overlapping(begin, end)),
                // With a token, every group the key may land in: a resend must reach the same
                // groups as the first attempt whatever the versions did meanwhile, so that the
                // token's table that answers it is the one that saw the first (§6.6).
                Mutation::SetVersionstampedKey { key, .. } if tx.idempotency.is_some() => {
                    out.extend(self.stamp_slots(key));
                }
                Mutation::SetVersionstampedKey { key, .. } => {
                    let order = u16::try_from(order).unwrap_or(u16::MAX);
                    let lowest_key = stamp_buffer(key, &versionstamp(lowest, order));
                    out.insert(self.position(&lowest_key));
                }
            }
        }
        for range in &tx.read_conflicts {
            out.extend(self.overlapping(&range.begin, &range.end));
        }
        out
    }

    /// `group 2 (keys ['m', +inf))` for the group at `position`.
    pub fn describe(&self, position: usize) -> String {
        format!(
            "{} (keys {})",
            self.groups[position].id,
            show_span(&self.spans[position])
        )
    }
}
