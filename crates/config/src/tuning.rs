//! RocksDB tuning and read concurrency: the sections the older `TransactionalKV` server's node
//! files carry (`[bloom_filter]`, `[compression]`, `[compaction]`, `[cache]`, `[memory]`,
//! `[logging]`, `[performance]`, `[concurrency]`), each applied to the engine as the RocksDB
//! option of the same name (docs/configuration.md lists the mapping). Defaults are what Dolmen
//! used before these keys existed, or RocksDB's own default.
//!
//! Names of RocksDB enums are read leniently: `"zstd"`, `"ZSTD"`, `"kZSTD"`,
//! `"min_overlapping_ratio"` and `"kMinOverlappingRatio"` all work; [`Config`](crate::Config)
//! serializes the snake-case name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `[bloom_filter]`: a Bloom filter per SST file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [bloom_filter] table")]
pub struct BloomFilterConfig {
    /// `enabled`: build a whole-key Bloom filter into every SST file. Default `false`.
    pub enabled: bool,
    /// `bits_per_key`: filter bits per key (10 ≈ 1% false positives). Default `10`.
    pub bits_per_key: f64,
}

impl Default for BloomFilterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bits_per_key: 10.0,
        }
    }
}

/// `[compression]`: the block compression per LSM level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [compression] table")]
pub struct CompressionConfig {
    /// `l0_compression`: level 0 (freshly flushed memtables). Default `"lz4"`.
    pub l0_compression: Compression,
    /// `l1_compression`: levels 1 and up, except the bottom one. Default `"lz4"`.
    pub l1_compression: Compression,
    /// `bottom_compression`: the bottommost level (most of the data). Default `"lz4"`.
    pub bottom_compression: Compression,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            l0_compression: Compression::Lz4,
            l1_compression: Compression::Lz4,
            bottom_compression: Compression::Lz4,
        }
    }
}

/// `[concurrency]`: how many reads run at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [concurrency] table")]
pub struct ConcurrencyConfig {
    /// `max_read_concurrency`: most reads (`get`, `snapshotGet`, range reads) reading the
    /// engine at once; more wait their turn in arrival order. `0` = no bound. Default `0`.
    pub max_read_concurrency: u32,
}

/// `[compaction]`: leveled compaction's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [compaction] table")]
pub struct CompactionConfig {
    /// `compaction_priority`: which file a compaction picks first. Default
    /// `"min_overlapping_ratio"`.
    pub compaction_priority: CompactionPriority,
    /// `target_file_size_base_mb`: SST file size at level 1, in MiB. Default `64`.
    pub target_file_size_base_mb: u64,
    /// `target_file_size_multiplier`: file size growth per level. Default `1`.
    pub target_file_size_multiplier: u32,
    /// `max_bytes_for_level_base_mb`: total size of level 1, in MiB. Default `256`.
    pub max_bytes_for_level_base_mb: u64,
    /// `max_bytes_for_level_multiplier`: size growth per level. Default `10`.
    pub max_bytes_for_level_multiplier: f64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            compaction_priority: CompactionPriority::MinOverlappingRatio,
            target_file_size_base_mb: 64,
            target_file_size_multiplier: 1,
            max_bytes_for_level_base_mb: 256,
            max_bytes_for_level_multiplier: 10.0,
        }
    }
}

/// `[cache]`: what the block cache holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [cache] table")]
pub struct CacheConfig {
    /// `cache_index_and_filter_blocks`: index and filter blocks live in the block cache, so
    /// its size bounds them (otherwise each open file holds its own). Default `true`.
    pub cache_index_and_filter_blocks: bool,
    /// `pin_l0_filter_and_index_blocks_in_cache`: level-0 index and filter blocks are never
    /// evicted. Default `true`.
    pub pin_l0_filter_and_index_blocks_in_cache: bool,
    /// `high_priority_pool_ratio`: above `0`, index and filter blocks are cached with high
    /// priority. RocksDB's C API, which Dolmen uses, cannot size the pool: it is RocksDB's
    /// default, half of the cache, whatever the value (a value other than `0` or `0.5` is
    /// reported at start). `0` caches them with the data blocks. Default `0.5`.
    pub high_priority_pool_ratio: f64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            cache_index_and_filter_blocks: true,
            pin_l0_filter_and_index_blocks_in_cache: true,
            high_priority_pool_ratio: 0.5,
        }
    }
}

/// `[memory]`: the memtable budget across column families.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [memory] table")]
pub struct MemoryConfig {
    /// `enable_write_buffer_manager`: all memtables together stay under one limit, charged to
    /// the block cache. `false` bounds each column family alone. Default `true`.
    pub enable_write_buffer_manager: bool,
    /// `write_buffer_manager_limit_mb`: that limit, in MiB; `0` = twice
    /// `rocksdb.write_buffer_size_mb`. Default `0`.
    pub write_buffer_manager_limit_mb: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            enable_write_buffer_manager: true,
            write_buffer_manager_limit_mb: 0,
        }
    }
}

/// `[logging]`: the node's log and RocksDB's own `LOG` file in the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [logging] table")]
pub struct LoggingConfig {
    /// `log_level`: the least severe message logged, by the node (unless `DOLMEN_LOG` says
    /// otherwise) and by RocksDB in its `LOG` file. Default `"info"`.
    pub log_level: LogLevel,
    /// `max_log_file_size_mb`: RocksDB starts a new `LOG` file past this size, in MiB; `0` =
    /// one file per start. Default `0`.
    pub max_log_file_size_mb: u64,
    /// `keep_log_file_num`: old RocksDB `LOG` files kept. Default `1000`.
    pub keep_log_file_num: u32,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            max_log_file_size_mb: 0,
            keep_log_file_num: 1000,
        }
    }
}

/// `[performance]`: RocksDB's statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a [performance] table")]
pub struct PerformanceConfig {
    /// `enable_statistics`: RocksDB counts cache hits, bytes read and written, and so on; the
    /// block cache hit rate in `getDatabaseStats` and `/metrics` needs them. Default `true`.
    pub enable_statistics: bool,
    /// `statistics_level`: how much they measure. Default `"except_detailed_timers"`.
    pub statistics_level: StatisticsLevel,
    /// `stats_dump_period_sec`: how often RocksDB writes them to its `LOG` file; `0` = never.
    /// Default `600`.
    pub stats_dump_period_sec: u32,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        Self {
            enable_statistics: true,
            statistics_level: StatisticsLevel::ExceptDetailedTimers,
            stats_dump_period_sec: 600,
        }
    }
}

/// The lenient spelling of a RocksDB enum name: lower case, without `_`/`-`, without
/// RocksDB's C++ `k` prefix (`kZSTD`, `kMinOverlappingRatio`).
fn normalize(name: &str) -> String {
    let trimmed = match name.strip_prefix('k') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_uppercase()) => rest,
        _ => name,
    };
    trimmed
        .chars()
        .filter(|c| *c != '_' && *c != '-' && *c != ' ')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Why a name is not one of a RocksDB enum setting's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingNameError {
    /// Not a value of the setting at all.
    #[error("unknown {what} `{name}`, expected {expected}")]
    Unknown {
        /// The setting's kind, e.g. `compression`.
        what: &'static str,
        /// The name given.
        name: String,
        /// The accepted names, for the message.
        expected: &'static str,
    },
    /// A compression RocksDB has, but not this build of it.
    #[error(
        "compression `{0}` is not built into Dolmen's RocksDB (it carries lz4 and zstd); \
         write \"lz4\" (fast) or \"zstd\" (smaller), or \"none\""
    )]
    NotBuilt(String),
}

/// Defines a RocksDB enum setting: its variants with their snake-case name and the normalized
/// spellings accepted, serde through the name, and `Display`.
macro_rules! named_setting {
    (
        $(#[$meta:meta])* $name:ident, $what:literal, $expected:literal, $not_built:expr;
        $($(#[$vmeta:meta])* $variant:ident = $canonical:literal $(| $alias:literal)*,)+
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The snake-case name (what `Config` serializes).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $canonical,)+
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = SettingNameError;

            fn try_from(name: String) -> Result<Self, SettingNameError> {
                let normalized = normalize(&name);
                $(
                    if normalize($canonical) == normalized
                        $(|| normalize($alias) == normalized)*
                    {
                        return Ok($name::$variant);
                    }
                )+
                let not_built: fn(&str) -> bool = $not_built;
                Err(if not_built(&normalized) {
                    SettingNameError::NotBuilt(name)
                } else {
                    SettingNameError::Unknown {
                        what: $what,
                        name,
                        expected: $expected,
                    }
                })
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.as_str().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_setting! {
    /// A block compression algorithm (the ones this build of RocksDB carries).
    Compression, "compression", "\"none\", \"lz4\", \"lz4hc\" or \"zstd\"",
    |name| matches!(
        name.trim_end_matches("compression"),
        "snappy" | "zlib" | "bzip2" | "xpress"
    );
    /// No compression.
    None = "none" | "no" | "nocompression" | "disabled" | "off",
    /// LZ4: fast, moderate ratio.
    Lz4 = "lz4" | "lz4compression",
    /// LZ4 high compression: slower writes, same read speed.
    Lz4hc = "lz4hc" | "lz4hccompression",
    /// Zstandard: the best ratio, more CPU.
    Zstd = "zstd" | "zstandard" | "zstdcompression",
}

named_setting! {
    /// Which file leveled compaction picks first (RocksDB's `compaction_pri`).
    CompactionPriority, "compaction priority",
    "\"by_compensated_size\", \"oldest_largest_seq_first\", \"oldest_smallest_seq_first\", \
     \"min_overlapping_ratio\" or \"round_robin\"",
    |_| false;
    /// Larger files first, compensated by deletions.
    ByCompensatedSize = "by_compensated_size",
    /// Files whose latest update is oldest first.
    OldestLargestSeqFirst = "oldest_largest_seq_first",
    /// Files whose key range went longest without compaction first.
    OldestSmallestSeqFirst = "oldest_smallest_seq_first",
    /// Files with the least overlap in the next level first (RocksDB's default).
    MinOverlappingRatio = "min_overlapping_ratio",
    /// A cursor moving round the key space.
    RoundRobin = "round_robin",
}

named_setting! {
    /// How much RocksDB's statistics measure (RocksDB's `StatsLevel`).
    StatisticsLevel, "statistics level",
    "\"disable_all\", \"except_histogram_or_timers\", \"except_timers\", \
     \"except_detailed_timers\", \"except_time_for_mutex\" or \"all\"",
    |_| false;
    /// Nothing.
    DisableAll = "disable_all",
    /// Counters only.
    ExceptHistogramOrTimers = "except_histogram_or_timers",
    /// Counters and histograms, no timers.
    ExceptTimers = "except_timers",
    /// Everything but detailed timers (RocksDB's default).
    ExceptDetailedTimers = "except_detailed_timers",
    /// Everything but time spent in mutexes.
    ExceptTimeForMutex = "except_time_for_mutex",
    /// Everything.
    All = "all",
}

named_setting! {
    /// A log severity.
    LogLevel, "log level", "\"debug\", \"info\", \"warn\", \"error\" or \"fatal\"",
    |_| false;
    /// Everything, including debugging detail.
    Debug = "debug" | "trace",
    /// Normal operation.
    Info = "info",
    /// Problems worth a look.
    Warn = "warn" | "warning",
    /// Failures.
    Error = "error",
    /// Only what stops the node.
    Fatal = "fatal" | "critical",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocksdb_names_are_read_in_any_usual_spelling() {
        for spelling in ["zstd", "ZSTD", "kZSTD", "zstandard"] {
            assert_eq!(
                Compression::try_from(spelling.to_owned()),
                Ok(Compression::Zstd)
            );
        }
        for spelling in ["none", "kNoCompression", "no"] {
            assert_eq!(
                Compression::try_from(spelling.to_owned()),
                Ok(Compression::None)
            );
        }
        assert_eq!(
            Compression::try_from("kLZ4Compression".to_owned()),
            Ok(Compression::Lz4)
        );
        for spelling in [
            "min_overlapping_ratio",
            "kMinOverlappingRatio",
            "MinOverlappingRatio",
        ] {
            assert_eq!(
                CompactionPriority::try_from(spelling.to_owned()),
                Ok(CompactionPriority::MinOverlappingRatio)
            );
        }
        assert_eq!(
            StatisticsLevel::try_from("kExceptDetailedTimers".to_owned()),
            Ok(StatisticsLevel::ExceptDetailedTimers)
        );
        assert_eq!(LogLevel::try_from("WARN".to_owned()), Ok(LogLevel::Warn));
    }

    #[test]
    fn a_compression_this_build_lacks_is_refused_with_what_to_write() {
        let e = Compression::try_from("snappy".to_owned())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not built into") && e.contains("\"zstd\""),
            "{e}"
        );
        let e = Compression::try_from("brotli".to_owned())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown compression `brotli`"), "{e}");
    }

    #[test]
    fn names_serialize_in_snake_case() {
        assert_eq!(String::from(CompactionPriority::RoundRobin), "round_robin");
        assert_eq!(Compression::Lz4hc.to_string(), "lz4hc");
    }
}
