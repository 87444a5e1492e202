//! The keys of one group's Raft log and state (docs/sharding.md §7, layout 2; docs/replication.md
//! §3). Every key starts with the group's id, so groups sharing the node's RocksDB never touch
//! each other's keys, and every range of a group stops at the group's end.
//!
//! ```text
//! raft_log   = be64(group) ‖ be64(index)          (16 bytes; sorts by group, then index)
//! raft_state = be64(group) ‖ name                 (name: vote | committed | last_purged)
//! group end  = be64(group) ‖ 0xff × 9             (17 bytes: after every key of the group,
//!                                                  before every key of group + 1)
//! ```

use std::io;

/// A Raft group's id; group 0 is today's only group (`crate::types::GROUP_ID`).
pub type GroupId = u64;

/// `raft_state` name of the vote.
pub(crate) const VOTE: &[u8] = b"vote";
/// `raft_state` name of the last committed log id (`save_committed`).
pub(crate) const COMMITTED: &[u8] = b"committed";
/// `raft_state` name of the last purged log id.
pub(crate) const LAST_PURGED: &[u8] = b"last_purged";
/// Every `raft_state` name a group has.
pub(crate) const STATE_NAMES: [&[u8]; 3] = [VOTE, COMMITTED, LAST_PURGED];

/// The `raft_log` key of `index` in `group`: big-endian, so keys sort by group, then index.
pub(crate) fn log_key(group: GroupId, index: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Sorts after every `raft_log` key of `group` and before every key of the next group: the
/// exclusive end of "to the group's last entry".
pub(crate) fn log_end(group: GroupId) -> [u8; 17] {
    let mut key = [0xff; 17];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key
}

/// The `raft_state` key of `name` in `group`.
pub(crate) fn state_key(group: GroupId, name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + name.len());
    key.extend_from_slice(&group.to_be_bytes());
    key.extend_from_slice(name);
    key
}

/// The index a `raft_log` key of `group` names; any other key is corrupt data.
pub(crate) fn key_index(group: GroupId, key: &[u8]) -> io::Result<u64> {
    let corrupt = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "corrupt raft_log key {key:02x?} in group {group}: expected be64(group {group}) ‖ \
                 be64(index), 16 bytes"
            ),
        )
    };
    let bytes: [u8; 16] = key.try_into().map_err(|_| corrupt())?;
    let (prefix, index) = bytes.split_at(8);
    if prefix != group.to_be_bytes() {
        return Err(corrupt());
    }
    let index: [u8; 8] = index.try_into().map_err(|_| corrupt())?;
    Ok(u64::from_be_bytes(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_group_sort_between_its_start_and_its_end() {
        for group in [0, 7, u64::MAX - 1] {
            let (start, end) = (log_key(group, 0), log_end(group));
            assert!(start[..] < log_key(group, u64::MAX)[..]);
            assert!(log_key(group, u64::MAX)[..] < end[..]);
            assert!(end[..] < log_key(group + 1, 0)[..]);
            assert!(group == 0 || log_end(group - 1)[..] < start[..]);
            assert_eq!(key_index(group, &log_key(group, 42)).unwrap(), 42);
        }
    }

    #[test]
    fn a_key_of_another_group_or_length_is_corrupt() {
        let err = key_index(7, &log_key(8, 1)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("group 7"), "{err}");
        let err = key_index(0, &5u64.to_be_bytes()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn state_keys_carry_the_group() {
        assert_eq!(state_key(7, VOTE), b"\0\0\0\0\0\0\0\x07vote".to_vec());
    }
}
