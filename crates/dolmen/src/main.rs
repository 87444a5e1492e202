//! `dolmen`: the one binary. It parses arguments, loads configuration and calls into
//! `dolmen-server` (serve) or `dolmen-client` (terminal commands, bench); nothing else.
//!
//! Exit codes: 0 success; 1 runtime failure (including a failed request); 2 bad usage or
//! configuration (the message names the flag or key).

mod backup;
mod bench;
mod cluster;
mod demo;
mod import;
mod terminal;
mod token;
mod top;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dolmen_server::config::{Config, LogLevel, Mode, Overrides};

/// jemalloc for Rust and (unprefixed) for RocksDB's C++ allocations: less fragmentation under
/// many threads than glibc's arenas, and cheaper malloc/free on the write path.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Dolmen: a replicated, transactional, ordered key-value store.
#[derive(Debug, Parser)]
#[command(name = "dolmen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (Thrift client API, admin HTTP API, and the Raft peer API when replicated).
    Serve(ServeArgs),
    /// Run a local three-node cluster (child processes, data under ./data/demo) until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Operate a running cluster through a node's admin API.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Read one key.
    Get(terminal::GetArgs),
    /// Write one key.
    Set(terminal::SetArgs),
    /// Delete one key.
    Delete(terminal::DeleteArgs),
    /// List a key range.
    Range(terminal::RangeArgs),
    /// Load generator: throughput and latency of YCSB-style workloads, transactions and scans.
    Bench(bench::BenchArgs),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Back up a running node or cluster: the state at one version, into a directory.
    Backup(backup::BackupArgs),
    /// Restore a backup into a new node's empty data directory (replicated: the seed of a new
    /// cluster).
    Restore(backup::RestoreArgs),
    /// Make a stopped standalone node's data the first member of a new cluster (its
    /// replicated configuration names the members); the others join empty.
    Seed(backup::SeedArgs),
    /// Copy every key of a running TransactionalKV server (the older server, or another
    /// Dolmen) into this one through the Thrift API, resumably.
    Import(import::ImportArgs),
}

/// `dolmen config ...`
#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the Dolmen equivalent of an older TransactionalKV server's node file (its
    /// [cluster] timings as [consensus] ones, its read level names as Dolmen's), checked by
    /// loading it; a key Dolmen cannot honour is refused with what to write instead.
    Migrate {
        /// The older node file.
        file: PathBuf,
    },
}

/// `dolmen serve` flags; each overrides the config file and the environment.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML configuration file (docs/WIRE.md §5 plus [server], [mvcc], [faults]).
    #[arg(long, env = "DOLMEN_CONFIG")]
    config: Option<PathBuf>,
    /// Address the Thrift and admin listeners bind.
    #[arg(long)]
    host: Option<String>,
    /// Thrift client port (also THRIFT_PORT / DOLMEN_PORT); 0 picks a free port.
    #[arg(long)]
    port: Option<u16>,
    /// Admin HTTP port (also DOLMEN_ADMIN_PORT); 0 picks a free port.
    #[arg(long)]
    admin_port: Option<u16>,
    /// Data directory ([database] base_path; also DOLMEN_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Deployment mode.
    #[arg(long, value_parser = parse_mode)]
    mode: Option<Mode>,
    /// This node's id ([deployment] instance_id).
    #[arg(long)]
    node_id: Option<u64>,
    /// Column families served, comma-separated (must include "default").
    #[arg(long, value_delimiter = ',')]
    column_families: Option<Vec<String>>,
    /// Allow setFaultInjection (tests only).
    #[arg(long)]
    allow_fault_injection: bool,
}

/// A `--mode` value that is not a deployment mode.
#[derive(Debug, thiserror::Error)]
#[error("unknown mode '{0}': use standalone or replicated")]
struct UnknownMode(String);

fn parse_mode(raw: &str) -> Result<Mode, UnknownMode> {
    match raw {
        "standalone" => Ok(Mode::Standalone),
        "replicated" => Ok(Mode::Replicated),
        other => Err(UnknownMode(other.to_owned())),
    }
}

/// An error and its causes, printed once as one line: "outer: cause: root cause".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Logs to stderr at `DOLMEN_LOG`'s filter, or at `level` ([logging] log_level).
fn init_logging(level: LogLevel) {
    let default = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error | LogLevel::Fatal => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOLMEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Demo(args) => demo::run(args),
        Command::Cluster(command) => cluster::run(command),
        Command::Get(args) => terminal::run(terminal::Request::Get(args)),
        Command::Set(args) => terminal::run(terminal::Request::Set(args)),
        Command::Delete(args) => terminal::run(terminal::Request::Delete(args)),
        Command::Range(args) => terminal::run(terminal::Request::Range(args)),
        Command::Bench(args) => bench::run(args),
        Command::Config(ConfigCommand::Migrate { file }) => migrate(&file),
        Command::Backup(args) => backup::run_backup(args),
        Command::Restore(args) => backup::run_restore(args),
        Command::Seed(args) => backup::run_seed(args),
        Command::Import(args) => import::run(args),
    }
}

fn migrate(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("dolmen: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match dolmen_server::config::migrate(&text, file) {
        Ok(migrated) => {
            print!("{migrated}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dolmen: cannot migrate: {}", chain(&e));
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        host: args.host,
        port: args.port,
        admin_port: args.admin_port,
        data_dir: args.data_dir,
        mode: args.mode,
        node_id: args.node_id,
        column_families: args.column_families,
        allow_fault_injection: args.allow_fault_injection.then_some(true),
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match Config::load(args.config.as_deref(), &env, &overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dolmen: configuration error: {}", chain(&e));
            return ExitCode::from(2);
        }
    };
    init_logging(config.logging.log_level);
    for notice in &config.notices {
        tracing::warn!("configuration: {notice}");
    }
    if let Err(code) = failpoints() {
        return code;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dolmen-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dolmen: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let node_id = config.node_id();
    let node = dolmen_server::node::run(config, shutdown_signal(), |bound| {
        // The one line tests and scripts wait for (docs/CONTRACTS.md).
        let tls = bound
            .thrift_tls
            .map(|a| format!(" thrift_tls={a}"))
            .unwrap_or_default();
        println!(
            "dolmen ready: node={node_id} thrift={} admin={}{tls}",
            bound.thrift, bound.admin
        );
    });
    // Every log line of the node's main task carries its id.
    let span = tracing::info_span!("node", id = node_id);
    let result = runtime.block_on(tracing::Instrument::instrument(node, span));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dolmen: {}", chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Sets the failpoints `FAILPOINTS` names (crash tests, docs/RELIABILITY.md), loudly: each one
/// set is a test-only switch. `Err` (after printing why, naming the variable) on a bad value.
fn failpoints() -> Result<(), ExitCode> {
    use dolmen_engine::failpoint;
    let Some(spec) = std::env::var_os(failpoint::ENV) else {
        return Ok(());
    };
    let set = failpoint::configure(&spec.to_string_lossy()).map_err(|e| {
        eprintln!("dolmen: configuration error: {e}");
        ExitCode::from(2)
    })?;
    if !set.is_empty() {
        tracing::warn!(
            "TEST-ONLY SWITCH ON, not for a real cluster: {}: {}",
            failpoint::ENV,
            set.join("; ")
        );
    }
    Ok(())
}

/// A single-threaded runtime for the client commands; `None` (after printing why) if it cannot
/// start.
fn small_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("dolmen: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the node with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
