//! The engine's RocksDB options from the node configuration: `[rocksdb]` sizes and the tuning
//! sections (`[bloom_filter]`, `[compression]`, `[compaction]`, `[cache]`, `[memory]`,
//! `[logging]`, `[performance]`), each key to the RocksDB option it names.

use std::path::PathBuf;

use dolmen_config::{CompactionPriority, Compression, Config, LogLevel, StatisticsLevel};
use dolmen_engine::{DBCompressionType, EngineOptions, LevelCompression, StatsLevel, Tuning};

const MIB: u64 = 1 << 20;

/// The options of the engine at `path`, as `config` says.
pub fn engine_options(config: &Config, path: PathBuf) -> EngineOptions {
    let r = &config.rocksdb;
    let bytes = |mb: u64| usize::try_from(mb.saturating_mul(MIB)).unwrap_or(usize::MAX);
    let memtable_limit = match config.memory.write_buffer_manager_limit_mb {
        0 => r.write_buffer_size_mb.saturating_mul(2),
        mb => mb,
    };
    let c = &config.compaction;
    let tuning = Tuning {
        block_size: usize::try_from(r.block_size_kb.saturating_mul(1 << 10)).unwrap_or(usize::MAX),
        max_background_jobs: i32::try_from(r.max_background_jobs).unwrap_or(i32::MAX),
        bytes_per_sync: r.bytes_per_sync,
        level_compaction_dynamic_level_bytes: r.dynamic_level_bytes,
        bloom_bits_per_key: config
            .bloom_filter
            .enabled
            .then_some(config.bloom_filter.bits_per_key),
        compression: LevelCompression {
            l0: compression(config.compression.l0_compression),
            l1: compression(config.compression.l1_compression),
            bottom: compression(config.compression.bottom_compression),
        },
        compaction_pri: compaction_pri(c.compaction_priority),
        target_file_size_base: c.target_file_size_base_mb.saturating_mul(MIB),
        target_file_size_multiplier: i32::try_from(c.target_file_size_multiplier)
            .unwrap_or(i32::MAX),
        max_bytes_for_level_base: c.max_bytes_for_level_base_mb.saturating_mul(MIB),
        max_bytes_for_level_multiplier: c.max_bytes_for_level_multiplier,
        cache_index_and_filter_blocks: config.cache.cache_index_and_filter_blocks,
        pin_l0_filter_and_index_blocks_in_cache: config
            .cache
            .pin_l0_filter_and_index_blocks_in_cache,
        index_and_filter_blocks_high_priority: config.cache.high_priority_pool_ratio > 0.0,
        write_buffer_manager_bytes: config
            .memory
            .enable_write_buffer_manager
            .then(|| bytes(memtable_limit)),
        info_log_level: log_level(config.logging.log_level),
        max_log_file_size: bytes(config.logging.max_log_file_size_mb),
        keep_log_file_num: config.logging.keep_log_file_num as usize,
        statistics: config
            .performance
            .enable_statistics
            .then(|| stats_level(config.performance.statistics_level)),
        stats_dump_period_sec: config.performance.stats_dump_period_sec,
        manual_wal_flush: config.faults.lose_unsynced_writes,
    };
    EngineOptions {
        path,
        column_families: config.database.column_families.clone(),
        write_buffer_size_mb: usize::try_from(r.write_buffer_size_mb).unwrap_or(usize::MAX),
        max_write_buffer_number: i32::try_from(r.max_write_buffer_number).unwrap_or(i32::MAX),
        block_cache_size_mb: usize::try_from(r.block_cache_size_mb).unwrap_or(usize::MAX),
        tuning,
        unsafe_skip_conflict_check: config.faults.unsafe_skip_conflict_check,
        unsafe_skip_conflict_check_group: config.faults.unsafe_skip_conflict_check_group,
    }
}

fn compression(c: Compression) -> DBCompressionType {
    match c {
        Compression::None => DBCompressionType::None,
        Compression::Lz4 => DBCompressionType::Lz4,
        Compression::Lz4hc => DBCompressionType::Lz4hc,
        Compression::Zstd => DBCompressionType::Zstd,
    }
}

fn compaction_pri(p: CompactionPriority) -> dolmen_engine::CompactionPriority {
    use dolmen_engine::CompactionPriority as Engine;
    match p {
        CompactionPriority::ByCompensatedSize => Engine::ByCompensatedSize,
        CompactionPriority::OldestLargestSeqFirst => Engine::OldestLargestSeqFirst,
        CompactionPriority::OldestSmallestSeqFirst => Engine::OldestSmallestSeqFirst,
        CompactionPriority::MinOverlappingRatio => Engine::MinOverlappingRatio,
        CompactionPriority::RoundRobin => Engine::RoundRobin,
    }
}

fn log_level(level: LogLevel) -> dolmen_engine::LogLevel {
    match level {
        LogLevel::Debug => dolmen_engine::LogLevel::Debug,
        LogLevel::Info => dolmen_engine::LogLevel::Info,
        LogLevel::Warn => dolmen_engine::LogLevel::Warn,
        LogLevel::Error => dolmen_engine::LogLevel::Error,
        LogLevel::Fatal => dolmen_engine::LogLevel::Fatal,
    }
}

fn stats_level(level: StatisticsLevel) -> StatsLevel {
    match level {
        StatisticsLevel::DisableAll => StatsLevel::DisableAll,
        StatisticsLevel::ExceptHistogramOrTimers => StatsLevel::ExceptHistogramOrTimers,
        StatisticsLevel::ExceptTimers => StatsLevel::ExceptTimers,
        StatisticsLevel::ExceptDetailedTimers => StatsLevel::ExceptDetailedTimers,
        StatisticsLevel::ExceptTimeForMutex => StatsLevel::ExceptTimeForMutex,
        StatisticsLevel::All => StatsLevel::All,
    }
}
