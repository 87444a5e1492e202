//! The writer's memory of recently written keys: each one's newest version and whether it is
//! live, so `apply_batch` rarely seeks `data` to keep the live-key count or to check a one-key
//! read conflict.

use std::collections::HashMap;

use crate::Version;

/// The latest known state of one user key inside a batch being applied.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    /// The version of the key's newest entry.
    pub(crate) version: Version,
    /// Whether that entry is a value (not a tombstone).
    pub(crate) live: bool,
}

/// The newest version of recently written keys and whether it is live, so that a write need not
/// seek `data` to keep the live-key count (that seek was the largest cost of applying a blind
/// write), nor a single-key read conflict to find the key's newest version.
///
/// Only the writer uses it, under `apply_lock`, and it is updated only after a batch is written
/// (a spilled `ClearRange` chunk removes its keys as it writes them), so it always matches
/// `data`, but for one case that changes no answer: garbage collection may delete a newest version that is a tombstone at or below the horizon, which is neither live
/// nor able to conflict (a conflict check needs a read version at or above the horizon).
/// `restore` clears it. Two generations bound its memory: when the current one holds
/// [`LiveCache::GENERATION_BYTES`] of keys it becomes the old one, and the old one is dropped.
#[derive(Default)]
pub(crate) struct LiveCache {
    current: HashMap<Vec<u8>, Pending>,
    old: HashMap<Vec<u8>, Pending>,
    current_bytes: usize,
}

impl LiveCache {
    /// Key bytes per generation (plus about 64 bytes of overhead per key).
    const GENERATION_BYTES: usize = 8 << 20;

    /// The newest state of the `data` key prefix `key` (`keys::key_start`), if remembered.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Pending> {
        self.current.get(key).or_else(|| self.old.get(key)).copied()
    }

    /// Remembers the newest state of `key` (a `keys::key_start` prefix) after a written batch.
    pub(crate) fn insert(&mut self, key: Vec<u8>, newest: Pending) {
        let bytes = key.len() + 64;
        if self.current.insert(key, newest).is_none() {
            self.current_bytes += bytes;
        }
        if self.current_bytes > Self::GENERATION_BYTES {
            self.old = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
    }

    /// Forgets `key` (a `keys::key_start` prefix): a spilled `ClearRange` chunk wrote a newer
    /// version of it straight to `data` (docs/engine-format.md invariant 12).
    pub(crate) fn remove(&mut self, key: &[u8]) {
        if self.current.remove(key).is_some() {
            self.current_bytes = self.current_bytes.saturating_sub(key.len() + 64);
        }
        self.old.remove(key);
    }

    /// Forgets everything (the data was replaced).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}
