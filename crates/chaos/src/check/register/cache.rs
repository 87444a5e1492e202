//! The search's memo of explored configurations (linearized set, register value), stored
//! compactly in one arena with a hash-chained index.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::prepare::Val;

/// The memo of explored configurations: (linearized set, register value), stored compactly.
///
/// A key is the register value, the restriction flag and the linearized set with its all-ones
/// prefix of required words cut off: `[value | restricted << 32 | first_word << 33, required
/// words from first_word up to the last non-zero one, pending words]`. Keys live back to back
/// in one arena; a map from hash to the newest key with that hash starts a chain through it.
#[derive(Default)]
pub(super) struct Cache {
    /// Hash → arena offset of the newest key with that hash.
    heads: HashMap<u64, usize, BuildHasherDefault<IdentityHasher>>,
    /// Per key: `[chain link (offset + 1, or 0), length, words…]`.
    arena: Vec<u64>,
    /// Scratch for building a key.
    scratch: Vec<u64>,
    /// Keys stored.
    pub(super) len: u64,
}

impl Cache {
    /// Inserts the configuration; whether it was new. `restricted`: the last operation was
    /// pending, so only an observer of its value may follow (a different search node).
    pub(super) fn insert(
        &mut self,
        bits: &[u64],
        required_words: usize,
        state: Val,
        restricted: bool,
    ) -> bool {
        let first = bits[..required_words]
            .iter()
            .position(|&w| w != u64::MAX)
            .unwrap_or(required_words);
        let last = bits[first..required_words]
            .iter()
            .rposition(|&w| w != 0)
            .map_or(first, |i| first + i + 1);
        self.scratch.clear();
        self.scratch
            .push(u64::from(state) | u64::from(restricted) << 32 | (first as u64) << 33);
        self.scratch.extend_from_slice(&bits[first..last]);
        self.scratch.extend_from_slice(&bits[required_words..]);
        let hash = hash_words(&self.scratch);

        let mut link = self.heads.get(&hash).map_or(0, |&offset| offset + 1);
        while link != 0 {
            let offset = link - 1;
            let len = self.arena[offset + 1] as usize;
            if self.arena[offset + 2..offset + 2 + len] == self.scratch[..] {
                return false;
            }
            link = self.arena[offset] as usize;
        }
        let offset = self.arena.len();
        let chain = self
            .heads
            .insert(hash, offset)
            .map_or(0, |old| old as u64 + 1);
        self.arena.push(chain);
        self.arena.push(self.scratch.len() as u64);
        self.arena.extend_from_slice(&self.scratch);
        self.len += 1;
        true
    }
}

/// A fast hash of a key's words (FxHash's multiply-rotate, with a final mix).
fn hash_words(words: &[u64]) -> u64 {
    let mut h = words.len() as u64;
    for &w in words {
        h = (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Passes an already mixed `u64` hash through.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
