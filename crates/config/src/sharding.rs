//! `[sharding]`: how many data groups a cluster is bootstrapped with and where their ranges
//! split (docs/sharding.md §4.3, §4.4, §11), the split-key spelling (`hex:` for bytes), and the
//! fingerprint every member must agree on. Validation is in `validate.rs`.
//!
//! ```text
//!  split_keys ["m", "hex:c0ff"] ─decode─▶ [b"m", [0xc0, 0xff]] ─▶ data groups 1..=3
//!  shards = 4 (no split_keys) ──────────────────────────────────▶ data groups 1..=4, even splits
//!  either ─▶ fingerprint: "split_keys=6d,c0ff" / "shards=4", the same on every member
//! ```

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The largest accepted `sharding.shards`, and the most data groups `split_keys` may make.
pub const MAX_SHARDS: u32 = 1024;

/// The longest split key, in bytes: the longest key a client may write (the engine's
/// `MAX_KEY_BYTES`).
pub const MAX_SPLIT_KEY_BYTES: usize = 10_000;

/// The prefix that marks a split key written as hex digits (`"hex:c0ff"`).
pub const HEX_PREFIX: &str = "hex:";

/// `[sharding]`: the keyspace's data groups at bootstrap (docs/sharding.md §11).
///
/// Not sharded (the default: `shards = 0`, no `split_keys`), one Raft group holds the version
/// oracle and all data, as every earlier build ran. Sharded, group 0 holds only metadata (the
/// oracle and the routing table) and data groups `1..=n` own the keyspace in key order. Every
/// member must have the same settings ([`ShardingConfig::fingerprint`]). Build it through
/// [`Config::load`](crate::Config::load), which validates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [sharding] table")]
pub struct ShardingConfig {
    /// `shards`: `0` = not sharded; `n` (1 to 1024) = `n` data groups with even split points
    /// of the first two key bytes (docs/sharding.md §4.4). Not together with `split_keys`.
    /// Default `0`.
    pub shards: u32,
    /// `split_keys`: explicit split points, strictly increasing as bytes; `n` keys make `n + 1`
    /// data groups (at most 1023 keys). Each is UTF-8 text taken as its bytes, or `hex:`
    /// followed by an even number of hex digits for any bytes (`"hex:c0ff"`; a key whose text
    /// starts with `hex:` must itself be written in hex). Decoded, 1 to 10000 bytes. Default
    /// `[]`.
    pub split_keys: Vec<String>,
    /// `hibernate_after_ms`: a data group whose leader saw no activity for this long turns its
    /// heartbeat and election timers off (docs/sharding.md §8.3), so idle groups cost one
    /// node-level beat per peer rather than heartbeats each. 0 = never; otherwise at least
    /// 1000. Default `10000`.
    pub hibernate_after_ms: u64,
    /// `orphan_timeout_ms`: a lock of a commit across ranges whose coordinator has not decided
    /// it this long after it prepared (by the oracle's clock) belongs to an orphan: readers and
    /// the sweeper abort it through the metadata group (docs/sharding.md §6.5). `0` (the
    /// default) = twice `consensus.election_timeout_ms`, at least 3000; otherwise at least
    /// twice `consensus.election_timeout_ms` (a coordinator waiting out an election is not an
    /// orphan). See [`ShardingConfig::orphan_timeout_ms`].
    pub orphan_timeout_ms: u64,
    /// `lock_timeout_ms`: how long a read waits for the locks of commits across ranges over what
    /// it reads (waiting for them to go, resolving them from the metadata group's decision)
    /// before it answers `UNAVAILABLE` naming the key and the transaction (docs/sharding.md
    /// §6.5); 100 to 600000. Default `10000`.
    pub lock_timeout_ms: u64,
    /// `place_leaders`: each data group's leader hands the group's leadership to its preferred
    /// node (node `(g − 1) mod N` for data group `g`) once that node is a healthy, caught-up
    /// voter, so leaderships spread over the nodes after bootstrap and come back to a node
    /// that returns (docs/sharding.md §4.5). `false` leaves them where elections and operators
    /// put them. Default `true`.
    pub place_leaders: bool,
}

/// The default `hibernate_after_ms`.
pub const DEFAULT_HIBERNATE_AFTER_MS: u64 = 10_000;

/// The default `lock_timeout_ms`.
pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 10_000;

/// The least orphan timeout `orphan_timeout_ms = 0` gives.
pub const MIN_AUTO_ORPHAN_TIMEOUT_MS: u64 = 3_000;

impl Default for ShardingConfig {
    fn default() -> Self {
        Self {
            shards: 0,
            split_keys: Vec::new(),
            hibernate_after_ms: DEFAULT_HIBERNATE_AFTER_MS,
            orphan_timeout_ms: 0,
            lock_timeout_ms: DEFAULT_LOCK_TIMEOUT_MS,
            place_leaders: true,
        }
    }
}

impl ShardingConfig {
    /// The orphan timeout in force with elections of `election_timeout_ms`: the configured one,
    /// or for `0` twice the election timeout, at least 3000.
    pub fn orphan_timeout_ms(&self, election_timeout_ms: u64) -> u64 {
        match self.orphan_timeout_ms {
            0 => election_timeout_ms
                .saturating_mul(2)
                .max(MIN_AUTO_ORPHAN_TIMEOUT_MS),
            set => set,
        }
    }

    /// Whether the cluster is sharded: group 0 holds only metadata and data groups own the
    /// keys (`data_groups() > 0`).
    pub fn is_sharded(&self) -> bool {
        self.data_groups() > 0
    }

    /// How many data groups the keyspace is split into: `0` when not sharded, one more than
    /// the number of split keys when they are given, else `shards`. (Validation refuses both
    /// together; on such an unvalidated config the split keys count.)
    pub fn data_groups(&self) -> usize {
        if self.split_keys.is_empty() {
            self.shards as usize
        } else {
            self.split_keys.len() + 1
        }
    }

    /// The split keys as bytes, in the order given. A validated config decodes every one; on an
    /// unvalidated config an entry that does not decode (bad hex) is left out rather than
    /// failing, so the result can be shorter than `split_keys`.
    pub fn decoded_split_keys(&self) -> Vec<Vec<u8>> {
        self.split_keys
            .iter()
            .filter_map(|text| decode_split_key(text).ok())
            .collect()
    }

    /// A short canonical description of the settings, which every member of one cluster must
    /// share (docs/sharding.md §4.3, §11): `None` when not sharded, `"shards=<n>"` for even
    /// split points, `"split_keys=<hex>,<hex>,..."` (each decoded key as lower-case hex) for
    /// explicit ones. Equal settings give equal strings whatever their spelling (`"m"` and
    /// `"hex:6D"` are one key). On an unvalidated config it describes what
    /// [`data_groups`](Self::data_groups) and
    /// [`decoded_split_keys`](Self::decoded_split_keys) see.
    pub fn fingerprint(&self) -> Option<String> {
        if !self.is_sharded() {
            return None;
        }
        if self.split_keys.is_empty() {
            return Some(format!("shards={}", self.shards));
        }
        let keys: Vec<String> = self
            .decoded_split_keys()
            .iter()
            .map(|key| lower_hex(key))
            .collect();
        Some(format!("split_keys={}", keys.join(",")))
    }
}

/// Why a `split_keys` entry does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SplitKeyError {
    /// A character after `hex:` that is not a hex digit.
    #[error(
        "character {position} ({character:?}) is not a hex digit (0-9, a-f, A-F); write \
         \"hex:\" and two hex digits per byte"
    )]
    NotHexDigit {
        /// The character.
        character: char,
        /// Its position in the whole text, counting from 1 (the `h` of `hex:` is 1).
        position: usize,
    },
    /// An odd number of hex digits after `hex:`.
    #[error(
        "has {digits} hex digits after \"hex:\"; bytes take two each, so the count must be even"
    )]
    OddHexDigits {
        /// How many digits follow the prefix.
        digits: usize,
    },
}

/// A split key's bytes: the hex digits after [`HEX_PREFIX`] (either case), or else the text's
/// UTF-8 bytes. The length is not checked here.
pub(crate) fn decode_split_key(text: &str) -> Result<Vec<u8>, SplitKeyError> {
    let Some(digits) = text.strip_prefix(HEX_PREFIX) else {
        return Ok(text.as_bytes().to_vec());
    };
    let prefix_chars = HEX_PREFIX.chars().count();
    let mut nibbles = Vec::with_capacity(digits.len());
    for (i, character) in digits.chars().enumerate() {
        let nibble = character.to_digit(16).ok_or(SplitKeyError::NotHexDigit {
            character,
            position: prefix_chars + i + 1,
        })?;
        // `to_digit(16)` is below 16, so it fits a byte.
        nibbles.push(nibble as u8);
    }
    if nibbles.len() % 2 != 0 {
        return Err(SplitKeyError::OddHexDigits {
            digits: nibbles.len(),
        });
    }
    Ok(nibbles
        .chunks_exact(2)
        .map(|pair| (pair[0] << 4) | pair[1])
        .collect())
}

/// `bytes` as lower-case hex digits.
fn lower_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> ShardingConfig {
        ShardingConfig {
            split_keys: list.iter().map(|s| s.to_string()).collect(),
            ..ShardingConfig::default()
        }
    }

    fn shards(n: u32) -> ShardingConfig {
        ShardingConfig {
            shards: n,
            ..ShardingConfig::default()
        }
    }

    #[test]
    fn the_default_is_not_sharded() {
        let c = ShardingConfig::default();
        assert_eq!(c.shards, 0);
        assert!(c.split_keys.is_empty());
        assert_eq!(c.data_groups(), 0);
        assert!(!c.is_sharded());
        assert_eq!(c.fingerprint(), None);
        assert!(c.decoded_split_keys().is_empty());
    }

    #[test]
    fn data_groups_count_shards_or_split_keys_plus_one() {
        assert_eq!(shards(1).data_groups(), 1);
        assert_eq!(shards(4).data_groups(), 4);
        assert_eq!(shards(MAX_SHARDS).data_groups(), 1024);
        assert_eq!(keys(&["m"]).data_groups(), 2);
        assert_eq!(keys(&["g", "n", "t"]).data_groups(), 4);
        assert!(keys(&["m"]).is_sharded());
    }

    #[test]
    fn text_keys_are_their_utf8_bytes_and_hex_keys_their_digits() {
        assert_eq!(decode_split_key("user/"), Ok(b"user/".to_vec()));
        assert_eq!(decode_split_key("é"), Ok(vec![0xc3, 0xa9]));
        assert_eq!(decode_split_key("hex:c0ff"), Ok(vec![0xc0, 0xff]));
        assert_eq!(decode_split_key("hex:C0fF"), Ok(vec![0xc0, 0xff]));
        assert_eq!(decode_split_key("hex:00"), Ok(vec![0x00]));
        assert_eq!(decode_split_key("hex:"), Ok(Vec::new()));
        // Only the exact lower-case prefix marks hex.
        assert_eq!(decode_split_key("HEX:c0"), Ok(b"HEX:c0".to_vec()));
        assert_eq!(decode_split_key("hexc0"), Ok(b"hexc0".to_vec()));
    }

    #[test]
    fn bad_hex_names_the_character_and_its_position() {
        assert_eq!(
            decode_split_key("hex:c0fg"),
            Err(SplitKeyError::NotHexDigit {
                character: 'g',
                position: 8
            })
        );
        assert_eq!(
            decode_split_key("hex:é0"),
            Err(SplitKeyError::NotHexDigit {
                character: 'é',
                position: 5
            })
        );
        assert_eq!(
            decode_split_key("hex:c0f"),
            Err(SplitKeyError::OddHexDigits { digits: 3 })
        );
        let message = decode_split_key("hex:c0 ff").unwrap_err().to_string();
        assert!(
            message.starts_with("character 7 (' ') is not a hex digit"),
            "{message}"
        );
        let message = decode_split_key("hex:abc").unwrap_err().to_string();
        assert!(message.starts_with("has 3 hex digits"), "{message}");
    }

    #[test]
    fn decoded_split_keys_leave_out_what_does_not_decode() {
        assert_eq!(
            keys(&["a", "hex:62", "hex:zz", "c"]).decoded_split_keys(),
            [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
    }

    #[test]
    fn fingerprints_are_equal_for_equal_settings_whatever_the_spelling() {
        assert_eq!(shards(4).fingerprint().as_deref(), Some("shards=4"));
        assert_eq!(shards(4).fingerprint(), shards(4).fingerprint());
        assert_eq!(
            keys(&["m", "hex:c0ff"]).fingerprint().as_deref(),
            Some("split_keys=6d,c0ff")
        );
        assert_eq!(
            keys(&["m", "hex:c0ff"]).fingerprint(),
            keys(&["hex:6D", "hex:C0FF"]).fingerprint()
        );
    }

    #[test]
    fn fingerprints_differ_for_different_settings() {
        let all = [
            shards(1).fingerprint(),
            shards(2).fingerprint(),
            shards(4).fingerprint(),
            keys(&["m"]).fingerprint(),
            keys(&["n"]).fingerprint(),
            keys(&["m", "n"]).fingerprint(),
            keys(&["mn"]).fingerprint(),
            keys(&["hex:6d00"]).fingerprint(),
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(a.is_some());
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Three even groups and three explicit ones are different tables.
        assert_ne!(shards(3).fingerprint(), keys(&["g", "t"]).fingerprint());
    }
}
