//! Physical garbage collection: deletes versions no read at or above the published horizon can
//! observe, a bounded slice per pass, resuming where the last pass stopped
//! (docs/engine-format.md, History retention; invariant 1).

use std::sync::atomic::Ordering;

use rocksdb::{ReadOptions, WriteBatch};

use crate::engine::Engine;
use crate::error::StorageError;
use crate::keys::TAG_TOMBSTONE;
use crate::options::CF_DATA;

/// What one garbage-collection pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// User keys examined.
    pub keys_scanned: u64,
    /// Version entries deleted.
    pub versions_deleted: u64,
    /// The pass reached the end of the data and starts over next time.
    pub wrapped: bool,
}

impl Engine {
    /// Deletes up to about `max_keys` user keys' worth of versions that no read at or above the
    /// horizon can observe, resuming where the previous pass stopped. Never changes an answer.
    pub fn collect_garbage(&self, max_keys: u64) -> Result<GcReport, StorageError> {
        let _fence = self.read_fence()?;
        // The horizon is published before it is used here (read ordering, invariant 1).
        let horizon = self.horizon();
        let mut report = GcReport::default();
        if horizon == 0 {
            return Ok(report);
        }
        let data = self.cf(CF_DATA);
        let mut cursor = self.gc_cursor.lock();
        let mut batch = WriteBatch::default();
        // The raw intervals this handle owns (one for group 0: everything), from the cursor on.
        let spans = self.scope.data_spans(&self.prefixes);
        let mut stopped = false;
        for (lo, hi) in &spans {
            if hi
                .as_ref()
                .is_some_and(|hi| cursor.as_slice() >= hi.as_slice())
            {
                continue; // finished earlier in this pass
            }
            let from = if cursor.as_slice() > lo.as_slice() {
                cursor.clone()
            } else {
                lo.clone()
            };
            // A scan of everything over time: caching its blocks (old versions included) would
            // fill the block cache with data no read wants and push hot blocks out.
            let mut opts = ReadOptions::default();
            opts.fill_cache(false);
            if let Some(hi) = hi {
                opts.set_iterate_upper_bound(hi.clone());
            }
            let mut iter = self.db.raw_iterator_cf_opt(data, opts);
            iter.seek(&from);
            // (raw key prefix of the current user key, whether its newest version ≤ horizon
            // was seen)
            let mut current: Option<(Vec<u8>, bool)> = None;
            while iter.valid() {
                let (Some(raw), Some(value)) = (iter.key(), iter.value()) else {
                    break;
                };
                let user_prefix = &raw[..raw.len().saturating_sub(8)];
                let same = current
                    .as_ref()
                    .is_some_and(|(p, _)| p.as_slice() == user_prefix);
                if !same {
                    if report.keys_scanned >= max_keys {
                        *cursor = raw.to_vec();
                        stopped = true;
                        break;
                    }
                    report.keys_scanned += 1;
                    current = Some((user_prefix.to_vec(), false));
                }
                let version = raw
                    .get(raw.len().saturating_sub(8)..)
                    .and_then(|b| b.try_into().ok())
                    .map(|b: [u8; 8]| !u64::from_be_bytes(b))
                    .ok_or_else(|| StorageError::Corrupt("short data key".into()))?;
                if let Some((_, seen_visible)) = current.as_mut() {
                    if version <= horizon {
                        if *seen_visible {
                            batch.delete_cf(data, raw); // shadowed by a newer version ≤ horizon
                            report.versions_deleted += 1;
                        } else {
                            *seen_visible = true;
                            if value.first() == Some(&TAG_TOMBSTONE) {
                                batch.delete_cf(data, raw); // the newest visible state is "absent"
                                report.versions_deleted += 1;
                            }
                        }
                    }
                }
                iter.next();
            }
            if stopped {
                break;
            }
            iter.status()?;
        }
        if !stopped {
            report.wrapped = true;
            cursor.clear();
        }
        if report.versions_deleted > 0 {
            self.db.write(batch)?;
            self.gc_versions_deleted
                .fetch_add(report.versions_deleted, Ordering::Relaxed);
        }
        if report.wrapped {
            self.gc_passes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(report)
    }
}
