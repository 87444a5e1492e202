//! The rules a loaded [`Config`] must satisfy, checked once at start.
//! Each rule reports the first key that breaks it as [`ConfigError::Invalid`], with the value;
//! cross-key rules name the key to change (e.g. `consensus.endpoints` vs `replica_endpoints`).

use std::collections::HashSet;
use std::net::Ipv6Addr;

use super::sharding::decode_split_key;
use super::{Config, ConfigError, Mode, MAX_SHARDS, MAX_SPLIT_KEY_BYTES};

/// Smallest accepted `server.max_message_bytes` (1 MiB).
const MIN_MESSAGE_BYTES: usize = 1 << 20;
/// Largest accepted `server.max_message_bytes` (256 MiB).
const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Largest accepted `rocksdb.block_size_kb` (1 GiB; RocksDB refuses 4 GiB and more).
const MAX_BLOCK_SIZE_KB: u64 = 1 << 20;
/// Longest column family name, in bytes.
const MAX_CF_NAME_BYTES: usize = 255;
/// Largest accepted `consensus.all_wait_ms` (10 minutes): a write waiting longer than that for
/// a lagging voter holds a write permit for nothing a client would still wait for.
const MAX_ALL_WAIT_MS: u64 = 600_000;
/// Largest accepted `database.min_free_disk_mb` and `max_data_size_mb` (1 EiB in MiB, so the
/// byte count fits a `u64`).
const MAX_DISK_MB: u64 = 1 << 40;

impl Config {
    /// Checks every rule; [`Config::load`] calls this.
    ///
    /// Rules: `column_families` non-empty, contains `"default"`, names unique, 1..=255 bytes of
    /// printable ASCII without whitespace; endpoints are `host:port` (port non-zero, no
    /// duplicates); replicated mode needs `replica_endpoints` and `consensus.endpoints` of the
    /// same non-zero length and `instance_id` below it; `consensus.algorithm = "raft"`;
    /// `election_timeout_ms > 2 × heartbeat_interval_ms`; `all_wait_ms` within 1..=600000; intervals, retention, limits and
    /// RocksDB sizes > 0; `max_message_bytes` within 1 MiB..=256 MiB; non-zero `port` and
    /// `admin_port` differ; `sharding.shards` within 0..=1024, not together with `split_keys`,
    /// which decode (`hex:` digits) to 1..=10000 bytes each, strictly increasing, at most 1023
    /// of them; sharding only in replicated mode.
    ///
    /// # Errors
    /// The first broken rule, as [`ConfigError::Invalid`] naming the key (without an origin:
    /// `load` adds it).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server()?;
        self.validate_cluster()?;
        self.validate_consensus_timing()?;
        self.validate_reads()?;
        self.validate_database()?;
        self.validate_rocksdb()?;
        self.validate_mvcc()?;
        self.validate_tls()?;
        self.validate_client_tls()?;
        self.validate_faults()?;
        self.validate_sharding()?;
        Ok(())
    }

    /// `[sharding]` (docs/sharding.md §11). Errors name the entry of `split_keys` at fault by
    /// index (`sharding.split_keys[2]`).
    fn validate_sharding(&self) -> Result<(), ConfigError> {
        let s = &self.sharding;
        if s.shards > MAX_SHARDS {
            return Err(ConfigError::invalid(
                "sharding.shards",
                format!(
                    "must be between 0 (not sharded) and {MAX_SHARDS} (data groups), got {}",
                    s.shards
                ),
            ));
        }
        if s.hibernate_after_ms != 0 && s.hibernate_after_ms < 1000 {
            return Err(ConfigError::invalid(
                "sharding.hibernate_after_ms",
                format!(
                    "must be 0 (never) or at least 1000, got {}",
                    s.hibernate_after_ms
                ),
            ));
        }
        let election = self.consensus.election_timeout_ms;
        if s.orphan_timeout_ms != 0 && s.orphan_timeout_ms < election.saturating_mul(2) {
            return Err(ConfigError::invalid(
                "sharding.orphan_timeout_ms",
                format!(
                    "must be 0 (twice consensus.election_timeout_ms, at least 3000) or at least \
                     twice consensus.election_timeout_ms ({election}), got {}: a coordinator \
                     waiting out an election would be taken for dead",
                    s.orphan_timeout_ms
                ),
            ));
        }
        if !(100..=600_000).contains(&s.lock_timeout_ms) {
            return Err(ConfigError::invalid(
                "sharding.lock_timeout_ms",
                format!(
                    "must be between 100 and 600000 (milliseconds), got {}",
                    s.lock_timeout_ms
                ),
            ));
        }
        if s.shards != 0 && !s.split_keys.is_empty() {
            return Err(ConfigError::invalid(
                "sharding.split_keys",
                format!(
                    "cannot be set together with sharding.shards ({} split keys, shards = {}): \
                     use sharding.split_keys for explicit split points or sharding.shards for \
                     even ones, and leave the other out",
                    s.split_keys.len(),
                    s.shards
                ),
            ));
        }
        let metadata = self.consensus.metadata_replication_mode;
        if metadata != crate::ReplicationMode::Quorum && !s.is_sharded() {
            return Err(ConfigError::invalid(
                "consensus.metadata_replication_mode",
                format!(
                    "must be \"quorum\" on an unsharded cluster (no sharding.shards or \
                     sharding.split_keys), got {:?}: its one group holds the data and follows \
                     consensus.replication_mode",
                    metadata.as_str()
                ),
            ));
        }
        let max_keys = MAX_SHARDS as usize - 1;
        if s.split_keys.len() > max_keys {
            return Err(ConfigError::invalid(
                "sharding.split_keys",
                format!(
                    "at most {max_keys} keys ({MAX_SHARDS} data groups), got {}",
                    s.split_keys.len()
                ),
            ));
        }
        let mut previous: Option<(usize, &str, Vec<u8>)> = None;
        for (i, text) in s.split_keys.iter().enumerate() {
            let key = format!("sharding.split_keys[{i}]");
            let shown = shown_split_key(text);
            let bytes = decode_split_key(text)
                .map_err(|e| ConfigError::invalid(&key, format!("{shown}: {e}")))?;
            if !(1..=MAX_SPLIT_KEY_BYTES).contains(&bytes.len()) {
                return Err(ConfigError::invalid(
                    &key,
                    format!(
                        "{shown} is {} bytes; a split key must be 1 to {MAX_SPLIT_KEY_BYTES} \
                         bytes (the first range already starts at the empty key)",
                        bytes.len()
                    ),
                ));
            }
            if let Some((j, previous_text, previous_bytes)) = &previous {
                if bytes <= *previous_bytes {
                    return Err(ConfigError::invalid(
                        &key,
                        format!(
                            "{shown} is not above sharding.split_keys[{j}] = {}; split keys \
                             must be strictly increasing, compared as bytes",
                            shown_split_key(previous_text)
                        ),
                    ));
                }
            }
            previous = Some((i, text, bytes));
        }
        if s.is_sharded() && self.deployment.mode == Mode::Standalone {
            let key = if s.split_keys.is_empty() {
                "sharding.shards"
            } else {
                "sharding.split_keys"
            };
            return Err(ConfigError::invalid(
                key,
                "[sharding] needs deployment.mode = \"replicated\"; a standalone node runs \
                 one group",
            ));
        }
        Ok(())
    }

    /// `[faults]`.
    fn validate_faults(&self) -> Result<(), ConfigError> {
        let offset = self.faults.clock_offset_ms;
        if offset.unsigned_abs() > crate::MAX_CLOCK_OFFSET_MS.unsigned_abs() {
            return Err(ConfigError::invalid(
                "faults.clock_offset_ms",
                format!(
                    "must be within ±{} ms (one day), got {offset}",
                    crate::MAX_CLOCK_OFFSET_MS
                ),
            ));
        }
        let group = self.faults.unsafe_skip_conflict_check_group;
        let groups = self.sharding.data_groups() as u64;
        if group != 0 && !(self.faults.unsafe_skip_conflict_check && group <= groups) {
            return Err(ConfigError::invalid(
                "faults.unsafe_skip_conflict_check_group",
                format!(
                    "names the one data group where faults.unsafe_skip_conflict_check applies, \
                     so it needs that set and a sharded node with group {group} (data groups \
                     1 to {groups}); got {group} with unsafe_skip_conflict_check = {}",
                    self.faults.unsafe_skip_conflict_check
                ),
            ));
        }
        Ok(())
    }

    /// `[client_tls]` and the listeners that use it.
    fn validate_client_tls(&self) -> Result<(), ConfigError> {
        let t = &self.client_tls;
        let s = &self.server;
        let has_key = !t.key_file.as_os_str().is_empty();
        if t.has_certificate() != has_key {
            let missing = if t.has_certificate() {
                "client_tls.key_file"
            } else {
                "client_tls.cert_file"
            };
            return Err(ConfigError::invalid(
                missing,
                "set client_tls.cert_file and client_tls.key_file together (or neither)",
            ));
        }
        let users = [
            ("server.thrift_tls", s.thrift_tls),
            ("server.admin_tls", s.admin_tls),
        ];
        if let Some((key, _)) = users.iter().find(|(_, on)| *on && !t.has_certificate()) {
            return Err(ConfigError::invalid(
                key,
                "needs client_tls.cert_file and client_tls.key_file (the certificate clients see)",
            ));
        }
        if !t.client_ca_file.as_os_str().is_empty() && !s.thrift_tls {
            return Err(ConfigError::invalid(
                "client_tls.client_ca_file",
                "requires client certificates on the Thrift TLS listener, but \
                 server.thrift_tls is off",
            ));
        }
        if let Some(port) = Some(s.thrift_tls_port).filter(|p| s.thrift_tls && *p != 0) {
            if let Some((key, _)) = [("server.port", s.port), ("server.admin_port", s.admin_port)]
                .into_iter()
                .find(|(_, other)| *other == port)
            {
                return Err(ConfigError::invalid(
                    "server.thrift_tls_port",
                    format!("must differ from {key} (both are {port})"),
                ));
            }
        }
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let t = &self.tls;
        let set = [
            ("tls.ca_file", &t.ca_file),
            ("tls.cert_file", &t.cert_file),
            ("tls.key_file", &t.key_file),
        ];
        let given = set
            .iter()
            .filter(|(_, p)| !p.as_os_str().is_empty())
            .count();
        match set.iter().find(|(_, p)| p.as_os_str().is_empty()) {
            Some((key, _)) if given > 0 => Err(ConfigError::invalid(
                key,
                "set tls.ca_file, tls.cert_file and tls.key_file together (or none of them)",
            )),
            _ => Ok(()),
        }
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.host.is_empty() || s.host.chars().any(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "server.host",
                format!(
                    "must be an address to bind, such as 127.0.0.1 or 0.0.0.0, got {:?}",
                    s.host
                ),
            ));
        }
        for (key, host) in [
            ("server.thrift_host", &s.thrift_host),
            ("server.admin_host", &s.admin_host),
            ("server.peer_host", &s.peer_host),
        ] {
            if host.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be an address to bind, or empty for server.host, got {host:?}"),
                ));
            }
        }
        if s.port != 0 && s.port == s.admin_port {
            return Err(ConfigError::invalid(
                "server.admin_port",
                format!("must differ from server.port (both are {})", s.port),
            ));
        }
        check_token("server.admin_token", &s.admin_token)?;
        check_token("server.admin_view_token", &s.admin_view_token)?;
        check_token("server.thrift_auth_token", &s.thrift_auth_token)?;
        if !s.admin_token.is_empty() && !s.admin_token_file.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "server.admin_token_file",
                "set either server.admin_token or server.admin_token_file, not both",
            ));
        }
        positive("server.max_connections", s.max_connections as u64)?;
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&s.max_message_bytes) {
            return Err(ConfigError::invalid(
                "server.max_message_bytes",
                format!(
                    "must be between {MIN_MESSAGE_BYTES} (1 MiB) and {MAX_MESSAGE_BYTES} \
                     (256 MiB), got {}",
                    s.max_message_bytes
                ),
            ));
        }
        Ok(())
    }

    /// `[deployment]` and the membership half of `[consensus]`.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let d = &self.deployment;
        let c = &self.consensus;
        if c.algorithm != "raft" {
            return Err(ConfigError::invalid(
                "consensus.algorithm",
                format!(
                    "must be \"raft\" (the only one Dolmen implements), got {:?}",
                    c.algorithm
                ),
            ));
        }
        endpoint_list("deployment.replica_endpoints", &d.replica_endpoints)?;
        endpoint_list("consensus.endpoints", &c.endpoints)?;
        endpoint_list("consensus.join", &c.join)?;
        if d.mode != Mode::Replicated {
            return Ok(());
        }
        if d.replica_endpoints.is_empty() {
            return Err(ConfigError::invalid(
                "deployment.replica_endpoints",
                "replicated mode needs every node's client address (host:port), got []",
            ));
        }
        if c.endpoints.len() != d.replica_endpoints.len() {
            return Err(ConfigError::invalid(
                "consensus.endpoints",
                format!(
                    "replicated mode needs one peer address per node: {} entries, but \
                     deployment.replica_endpoints has {}",
                    c.endpoints.len(),
                    d.replica_endpoints.len()
                ),
            ));
        }
        if d.instance_id as usize >= d.replica_endpoints.len() {
            return Err(ConfigError::invalid(
                "deployment.instance_id",
                format!(
                    "must be an index into deployment.replica_endpoints (< {}), got {}",
                    d.replica_endpoints.len(),
                    d.instance_id
                ),
            ));
        }
        Ok(())
    }

    fn validate_consensus_timing(&self) -> Result<(), ConfigError> {
        let c = &self.consensus;
        positive("consensus.heartbeat_interval_ms", c.heartbeat_interval_ms)?;
        if c.election_timeout_ms <= c.heartbeat_interval_ms.saturating_mul(2) {
            return Err(ConfigError::invalid(
                "consensus.election_timeout_ms",
                format!(
                    "must be more than twice consensus.heartbeat_interval_ms ({}), got {}",
                    c.heartbeat_interval_ms, c.election_timeout_ms
                ),
            ));
        }
        positive("consensus.max_batch_size", c.max_batch_size as u64)?;
        positive(
            "consensus.snapshot_interval_entries",
            c.snapshot_interval_entries,
        )?;
        positive(
            "consensus.max_outstanding_proposals",
            c.max_outstanding_proposals as u64,
        )?;
        if !(1..=MAX_ALL_WAIT_MS).contains(&c.all_wait_ms) {
            return Err(ConfigError::invalid(
                "consensus.all_wait_ms",
                format!(
                    "must be between 1 and {MAX_ALL_WAIT_MS} (milliseconds), got {}",
                    c.all_wait_ms
                ),
            ));
        }
        if !(100..=60_000).contains(&c.oracle_window_ms) {
            return Err(ConfigError::invalid(
                "consensus.oracle_window_ms",
                format!(
                    "must be between 100 and 60000 (milliseconds), got {}",
                    c.oracle_window_ms
                ),
            ));
        }
        Ok(())
    }

    fn validate_reads(&self) -> Result<(), ConfigError> {
        positive("reads.max_staleness_ms", self.reads.max_staleness_ms)
    }

    fn validate_database(&self) -> Result<(), ConfigError> {
        let db = &self.database;
        if db.base_path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "database.base_path",
                "must name a directory, got \"\"",
            ));
        }
        let key = "database.column_families";
        let cfs = &db.column_families;
        if cfs.is_empty() {
            return Err(ConfigError::invalid(
                key,
                "must list at least \"default\", got []",
            ));
        }
        let mut seen = HashSet::new();
        for name in cfs {
            if name.is_empty() || name.len() > MAX_CF_NAME_BYTES {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "name {name:?} must be 1 to {MAX_CF_NAME_BYTES} bytes long, got {}",
                        name.len()
                    ),
                ));
            }
            if !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::invalid(
                    key,
                    format!("name {name:?} must be printable ASCII without whitespace"),
                ));
            }
            if !seen.insert(name.as_str()) {
                return Err(ConfigError::invalid(
                    key,
                    format!("name {name:?} is listed twice"),
                ));
            }
        }
        if !seen.contains("default") {
            return Err(ConfigError::invalid(
                key,
                format!("must include \"default\" (requests without a column family use it), got {cfs:?}"),
            ));
        }
        for (key, mb) in [
            ("database.min_free_disk_mb", db.min_free_disk_mb),
            ("database.max_data_size_mb", db.max_data_size_mb),
        ] {
            if mb > MAX_DISK_MB {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be at most {MAX_DISK_MB} (MiB; 0 = off), got {mb}"),
                ));
            }
        }
        Ok(())
    }

    fn validate_rocksdb(&self) -> Result<(), ConfigError> {
        let r = &self.rocksdb;
        positive("rocksdb.write_buffer_size_mb", r.write_buffer_size_mb)?;
        positive(
            "rocksdb.max_write_buffer_number",
            u64::from(r.max_write_buffer_number),
        )?;
        positive("rocksdb.block_cache_size_mb", r.block_cache_size_mb)?;
        if !(1..=MAX_BLOCK_SIZE_KB).contains(&r.block_size_kb) {
            return Err(ConfigError::invalid(
                "rocksdb.block_size_kb",
                format!(
                    "must be between 1 and {MAX_BLOCK_SIZE_KB} (KiB), got {}",
                    r.block_size_kb
                ),
            ));
        }
        positive(
            "rocksdb.max_background_jobs",
            u64::from(r.max_background_jobs),
        )?;
        in_range(
            "bloom_filter.bits_per_key",
            self.bloom_filter.bits_per_key,
            1.0..=100.0,
        )?;
        let c = &self.compaction;
        positive(
            "compaction.target_file_size_base_mb",
            c.target_file_size_base_mb,
        )?;
        positive(
            "compaction.target_file_size_multiplier",
            u64::from(c.target_file_size_multiplier),
        )?;
        positive(
            "compaction.max_bytes_for_level_base_mb",
            c.max_bytes_for_level_base_mb,
        )?;
        in_range(
            "compaction.max_bytes_for_level_multiplier",
            c.max_bytes_for_level_multiplier,
            1.0..=1000.0,
        )?;
        in_range(
            "cache.high_priority_pool_ratio",
            self.cache.high_priority_pool_ratio,
            0.0..=1.0,
        )?;
        positive(
            "logging.keep_log_file_num",
            u64::from(self.logging.keep_log_file_num),
        )
    }

    fn validate_mvcc(&self) -> Result<(), ConfigError> {
        let m = &self.mvcc;
        positive("mvcc.retention_window_ms", m.retention_window_ms)?;
        positive("mvcc.compaction_interval_ms", m.compaction_interval_ms)?;
        // A retry whose entry expired is applied again unless it is refused as too old: only
        // a window at least as long as the MVCC one guarantees that for every retry that read.
        if m.idempotency_window_ms < m.retention_window_ms {
            return Err(ConfigError::invalid(
                "mvcc.idempotency_window_ms",
                format!(
                    "must be at least mvcc.retention_window_ms ({}), got {}: a retry whose \
                     idempotency entry expired while its read version is still retained would \
                     be applied a second time",
                    m.retention_window_ms, m.idempotency_window_ms
                ),
            ));
        }
        Ok(())
    }
}

fn in_range(
    key: &str,
    value: f64,
    range: std::ops::RangeInclusive<f64>,
) -> Result<(), ConfigError> {
    if !range.contains(&value) {
        return Err(ConfigError::invalid(
            key,
            format!(
                "must be between {} and {}, got {value}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(())
}

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be > 0, got 0"));
    }
    Ok(())
}

/// Every entry parses as `host:port` and none repeats.
fn endpoint_list(key: &str, endpoints: &[String]) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        if let Err(problem) = split_endpoint(endpoint) {
            return Err(ConfigError::invalid(
                key,
                format!("entry {i} ({endpoint:?}): {problem}"),
            ));
        }
        if !seen.insert(endpoint.as_str()) {
            return Err(ConfigError::invalid(
                key,
                format!("entry {i} ({endpoint:?}) is listed twice"),
            ));
        }
    }
    Ok(())
}

/// Why an endpoint is not `host:port` (see [`split_endpoint`]); each message names the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No `:port` after the host.
    #[error("expected host:port, such as 127.0.0.1:9090")]
    NoPort,
    /// A `[` without `]:port`.
    #[error("expected [ipv6]:port, such as [::1]:9090")]
    NoBracketedPort,
    /// The bracketed host is not an IPv6 address.
    #[error("{0:?} is not an IPv6 address")]
    NotIpv6(String),
    /// An IPv6 host without brackets.
    #[error("an IPv6 host must be in brackets, such as [::1]:9090")]
    UnbracketedIpv6,
    /// The host is empty or holds whitespace or control characters.
    #[error("host {0:?} is empty or contains whitespace")]
    BadHost(String),
    /// Port 0.
    #[error("port must not be 0 (peers and clients must be able to reach it)")]
    ZeroPort,
    /// The port is not a number in `1..=65535`.
    #[error("port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
}

/// Longest prefix of a split key quoted in an error, in characters.
const SHOWN_KEY_CHARS: usize = 40;

/// A split key as an error quotes it: the text in quotes, cut after [`SHOWN_KEY_CHARS`]
/// characters (with `...` after the closing quote) so a 10000-byte key does not fill the screen.
fn shown_split_key(text: &str) -> String {
    match text.char_indices().nth(SHOWN_KEY_CHARS) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Splits an endpoint `host:port` (IPv6 hosts in brackets: `[::1]:9090`) into host and a
/// non-zero port.
///
/// # Errors
/// An [`EndpointError`] saying what is wrong with `endpoint`.
pub fn split_endpoint(endpoint: &str) -> Result<(&str, u16), EndpointError> {
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or(EndpointError::NoBracketedPort)?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| EndpointError::NotIpv6(host.to_owned()))?;
        (host, port)
    } else {
        let (host, port) = endpoint.rsplit_once(':').ok_or(EndpointError::NoPort)?;
        if host.contains(':') {
            return Err(EndpointError::UnbracketedIpv6);
        }
        (host, port)
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EndpointError::BadHost(host.to_owned()));
    }
    match port.parse::<u16>() {
        Ok(0) => Err(EndpointError::ZeroPort),
        Ok(port) => Ok((host, port)),
        Err(_) => Err(EndpointError::BadPort(port.to_owned())),
    }
}

/// The shortest admin credential accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// An admin credential: empty (none), or at least [`MIN_TOKEN_LEN`] visible ASCII characters.
///
/// # Errors
/// What is wrong with it, naming `key` (never echoing the token).
pub fn check_token(key: &'static str, token: &str) -> Result<(), ConfigError> {
    if token.is_empty() {
        return Ok(());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::invalid(
            key,
            "must be visible ASCII characters without spaces (it is sent in an HTTP header)",
        ));
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(ConfigError::invalid(
            key,
            format!(
                "must be at least {MIN_TOKEN_LEN} characters, got {}",
                token.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConsistencyLevel;

    fn replicated() -> Config {
        let mut c = Config::default();
        c.deployment.mode = Mode::Replicated;
        c.deployment.instance_id = 2;
        c.deployment.replica_endpoints = ["127.0.0.1:9090", "127.0.0.1:9091", "127.0.0.1:9092"]
            .map(String::from)
            .to_vec();
        c.consensus.endpoints = ["127.0.0.1:7090", "127.0.0.1:7091", "127.0.0.1:7092"]
            .map(String::from)
            .to_vec();
        c
    }

    /// Applies `change` to a valid config and returns the key and problem it is rejected with.
    fn rejected(base: Config, change: impl FnOnce(&mut Config)) -> (String, String) {
        let mut c = base;
        c.validate().expect("the base config is valid");
        change(&mut c);
        match c.validate() {
            Err(ConfigError::Invalid {
                key,
                problem,
                origin,
            }) => {
                assert_eq!(origin, None);
                (key, problem)
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn assert_rejected(change: impl FnOnce(&mut Config), key: &str, problem_part: &str) {
        assert_rejected_from(Config::default(), change, key, problem_part);
    }

    fn assert_rejected_from(
        base: Config,
        change: impl FnOnce(&mut Config),
        key: &str,
        problem_part: &str,
    ) {
        let (k, problem) = rejected(base, change);
        assert_eq!(k, key, "problem: {problem}");
        assert!(
            problem.contains(problem_part),
            "{key}: {problem:?} should contain {problem_part:?}"
        );
    }

    #[test]
    fn zero_values_that_must_be_positive_are_rejected() {
        assert_rejected(
            |c| c.reads.max_staleness_ms = 0,
            "reads.max_staleness_ms",
            "must be > 0, got 0",
        );
        assert_rejected(
            |c| c.mvcc.retention_window_ms = 0,
            "mvcc.retention_window_ms",
            "> 0",
        );
        assert_rejected(
            |c| c.mvcc.compaction_interval_ms = 0,
            "mvcc.compaction_interval_ms",
            "> 0",
        );
        assert_rejected(
            |c| c.mvcc.idempotency_window_ms = 0,
            "mvcc.idempotency_window_ms",
            "must be at least mvcc.retention_window_ms (5000), got 0",
        );
        assert_rejected(
            |c| {
                c.mvcc.retention_window_ms = 7_200_000;
            },
            "mvcc.idempotency_window_ms",
            "at least mvcc.retention_window_ms (7200000), got 3600000",
        );
        assert_rejected(
            |c| c.consensus.heartbeat_interval_ms = 0,
            "consensus.heartbeat_interval_ms",
            "> 0",
        );
        assert_rejected(
            |c| c.consensus.max_batch_size = 0,
            "consensus.max_batch_size",
            "> 0",
        );
        assert_rejected(
            |c| c.consensus.max_outstanding_proposals = 0,
            "consensus.max_outstanding_proposals",
            "> 0",
        );
        assert_rejected(
            |c| c.server.max_connections = 0,
            "server.max_connections",
            "> 0",
        );
        assert_rejected(
            |c| c.rocksdb.write_buffer_size_mb = 0,
            "rocksdb.write_buffer_size_mb",
            "> 0",
        );
        assert_rejected(
            |c| c.rocksdb.max_write_buffer_number = 0,
            "rocksdb.max_write_buffer_number",
            "> 0",
        );
        assert_rejected(
            |c| c.rocksdb.block_cache_size_mb = 0,
            "rocksdb.block_cache_size_mb",
            "> 0",
        );
    }

    #[test]
    fn zero_waits_and_ephemeral_ports_are_allowed() {
        let mut c = Config::default();
        c.mvcc.future_version_wait_ms = 0;
        c.server.port = 0;
        c.server.admin_port = 0;
        c.reads.consistency_level = ConsistencyLevel::Stale;
        c.validate().unwrap();
    }

    #[test]
    fn disk_thresholds_are_off_at_zero_and_bounded() {
        let mut c = Config::default();
        assert_eq!(c.database.min_free_disk_mb, 1024);
        assert_eq!(c.database.max_data_size_mb, 0);
        c.database.min_free_disk_mb = 0;
        c.database.max_data_size_mb = 1;
        c.validate().unwrap();
        assert_rejected(
            |c| c.database.min_free_disk_mb = u64::MAX,
            "database.min_free_disk_mb",
            "at most 1099511627776",
        );
        assert_rejected(
            |c| c.database.max_data_size_mb = (1 << 40) + 1,
            "database.max_data_size_mb",
            "got 1099511627777",
        );
    }

    #[test]
    fn ports_must_differ_unless_ephemeral() {
        assert_rejected(
            |c| c.server.admin_port = 9090,
            "server.admin_port",
            "both are 9090",
        );
    }

    #[test]
    fn host_must_be_bindable() {
        assert_rejected(
            |c| c.server.host.clear(),
            "server.host",
            "must be an address",
        );
        assert_rejected(|c| c.server.host = "a b".into(), "server.host", "\"a b\"");
    }

    #[test]
    fn message_size_is_between_1_and_256_mib() {
        let key = "server.max_message_bytes";
        assert_rejected(
            |c| c.server.max_message_bytes = (1 << 20) - 1,
            key,
            "got 1048575",
        );
        assert_rejected(
            |c| c.server.max_message_bytes = (256 << 20) + 1,
            key,
            "256 MiB",
        );
        for ok in [1 << 20, 256 << 20] {
            let mut c = Config::default();
            c.server.max_message_bytes = ok;
            c.validate().unwrap();
        }
    }

    #[test]
    fn metadata_replication_mode_all_is_only_for_sharded_clusters() {
        let key = "consensus.metadata_replication_mode";
        assert_rejected(
            |c| c.consensus.metadata_replication_mode = crate::ReplicationMode::All,
            key,
            "must be \"quorum\" on an unsharded cluster",
        );
        let mut c = replicated();
        c.sharding.shards = 4;
        c.consensus.metadata_replication_mode = crate::ReplicationMode::All;
        c.validate().unwrap();
    }

    #[test]
    fn all_wait_is_between_1_ms_and_10_minutes() {
        let key = "consensus.all_wait_ms";
        assert_rejected(|c| c.consensus.all_wait_ms = 0, key, "got 0");
        assert_rejected(
            |c| c.consensus.all_wait_ms = 600_001,
            key,
            "between 1 and 600000",
        );
        for ok in [1, 600_000] {
            let mut c = replicated();
            c.consensus.replication_mode = crate::ReplicationMode::All;
            c.consensus.all_wait_ms = ok;
            c.validate().unwrap();
        }
    }

    #[test]
    fn election_timeout_must_exceed_twice_the_heartbeat() {
        let key = "consensus.election_timeout_ms";
        assert_rejected(
            |c| c.consensus.election_timeout_ms = 400,
            key,
            "(200), got 400",
        );
        let mut c = Config::default();
        c.consensus.election_timeout_ms = 401;
        c.validate().unwrap();
    }

    #[test]
    fn algorithm_must_be_raft() {
        assert_rejected(
            |c| c.consensus.algorithm = "paxos".into(),
            "consensus.algorithm",
            "\"paxos\"",
        );
    }

    #[test]
    fn column_families_rules() {
        let key = "database.column_families";
        let set = |list: &[&str]| {
            let list = names(list);
            move |c: &mut Config| c.database.column_families = list
        };
        assert_rejected(set(&[]), key, "at least \"default\"");
        assert_rejected(set(&["users"]), key, "must include \"default\"");
        assert_rejected(
            set(&["default", "users", "users"]),
            key,
            "\"users\" is listed twice",
        );
        assert_rejected(set(&["default", ""]), key, "1 to 255 bytes");
        assert_rejected(set(&["default", &"x".repeat(256)]), key, "got 256");
        assert_rejected(set(&["default", "my users"]), key, "without whitespace");
        assert_rejected(set(&["default", "tab\t"]), key, "printable ASCII");
        assert_rejected(set(&["default", "café"]), key, "printable ASCII");
        let mut c = Config::default();
        c.database.column_families = names(&["users", "default", &"y".repeat(255), "a-b.c_d"]);
        c.validate().unwrap();
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn base_path_must_not_be_empty() {
        assert_rejected(
            |c| c.database.base_path = "".into(),
            "database.base_path",
            "directory",
        );
    }

    #[test]
    fn replicated_mode_needs_matching_endpoint_lists() {
        replicated().validate().unwrap();
        assert_rejected(
            |c| c.deployment.mode = Mode::Replicated,
            "deployment.replica_endpoints",
            "got []",
        );
        assert_rejected_from(
            replicated(),
            |c| {
                c.consensus.endpoints.pop();
            },
            "consensus.endpoints",
            "2 entries, but deployment.replica_endpoints has 3",
        );
        assert_rejected_from(
            replicated(),
            |c| c.consensus.endpoints.clear(),
            "consensus.endpoints",
            "0 entries",
        );
        assert_rejected_from(
            replicated(),
            |c| c.deployment.instance_id = 3,
            "deployment.instance_id",
            "(< 3), got 3",
        );
    }

    #[test]
    fn endpoints_must_be_host_port() {
        let bad_replica =
            |e: &'static str| move |c: &mut Config| c.deployment.replica_endpoints[1] = e.into();
        let key = "deployment.replica_endpoints";
        assert_rejected_from(
            replicated(),
            bad_replica("localhost"),
            key,
            "entry 1 (\"localhost\"): expected host:port",
        );
        assert_rejected_from(
            replicated(),
            bad_replica(":9091"),
            key,
            "host \"\" is empty",
        );
        assert_rejected_from(
            replicated(),
            bad_replica("h:x"),
            key,
            "port \"x\" is not a number",
        );
        assert_rejected_from(replicated(), bad_replica("h:65536"), key, "1 to 65535");
        assert_rejected_from(replicated(), bad_replica("h:0"), key, "must not be 0");
        assert_rejected_from(replicated(), bad_replica("::1:9091"), key, "in brackets");
        assert_rejected_from(
            replicated(),
            bad_replica("127.0.0.1:9090"),
            key,
            "entry 1 (\"127.0.0.1:9090\") is listed twice",
        );
        assert_rejected_from(
            replicated(),
            |c| c.consensus.endpoints[0] = "[zz]:7090".into(),
            "consensus.endpoints",
            "not an IPv6 address",
        );
        // Endpoints are checked in standalone mode too, so a typo is found before switching.
        assert_rejected(
            |c| c.consensus.endpoints = vec!["nope".into()],
            "consensus.endpoints",
            "entry 0",
        );
    }

    #[test]
    fn the_oracle_window_is_bounded() {
        let key = "consensus.oracle_window_ms";
        assert_rejected(|c| c.consensus.oracle_window_ms = 99, key, "got 99");
        assert_rejected(|c| c.consensus.oracle_window_ms = 60_001, key, "got 60001");
        for ok in [100, 60_000] {
            let mut c = Config::default();
            c.consensus.oracle_window_ms = ok;
            c.validate().expect("in bounds");
        }
    }

    #[test]
    fn the_lock_timeout_is_between_100_ms_and_10_minutes() {
        let key = "sharding.lock_timeout_ms";
        assert_rejected(|c| c.sharding.lock_timeout_ms = 99, key, "got 99");
        assert_rejected(
            |c| c.sharding.lock_timeout_ms = 600_001,
            key,
            "between 100 and 600000",
        );
        for ok in [100, 600_000] {
            let mut c = Config::default();
            c.sharding.lock_timeout_ms = ok;
            c.validate().unwrap();
        }
    }

    #[test]
    fn the_planted_bug_names_an_existing_data_group_and_needs_the_bug() {
        let key = "faults.unsafe_skip_conflict_check_group";
        assert_rejected(
            |c| {
                c.faults.unsafe_skip_conflict_check = true;
                c.faults.unsafe_skip_conflict_check_group = 1;
            },
            key,
            "(data groups 1 to 0)",
        );
        let mut c = replicated();
        c.sharding.shards = 4;
        c.faults.unsafe_skip_conflict_check_group = 2;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("unsafe_skip_conflict_check = false"), "{e}");
        c.faults.unsafe_skip_conflict_check = true;
        c.validate().unwrap();
        c.faults.unsafe_skip_conflict_check_group = 5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("(data groups 1 to 4)"), "{e}");
    }

    #[test]
    fn a_clock_offset_beyond_a_day_is_refused() {
        assert_rejected(
            |c| c.faults.clock_offset_ms = -86_400_001,
            "faults.clock_offset_ms",
            "within ±86400000 ms",
        );
        let mut c = Config::default();
        c.faults.clock_offset_ms = -86_400_000;
        c.validate().expect("one day back is allowed");
    }

    #[test]
    fn split_endpoint_accepts_names_ipv4_and_bracketed_ipv6() {
        assert_eq!(split_endpoint("127.0.0.1:9090"), Ok(("127.0.0.1", 9090)));
        assert_eq!(
            split_endpoint("node-2.local:7091"),
            Ok(("node-2.local", 7091))
        );
        assert_eq!(split_endpoint("[::1]:9090"), Ok(("::1", 9090)));
        assert!(split_endpoint("[::1]").is_err());
        assert!(split_endpoint("").is_err());
    }
}
