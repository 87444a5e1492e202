//! The `dolmen-chaos` command line: `run`, `replay <dir>`, `check <dir>`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use dolmen_chaos::options::{
    parse_duration, parse_faults, parse_workloads, PlantedBug, RunOptions,
};
use dolmen_chaos::rng::Rng;
use dolmen_chaos::run;
use dolmen_chaos::shards::{self, Ranges};

/// Exit code: every check passed.
const EXIT_PASS: u8 = 0;
/// Exit code: the harness failed (cluster could not start, a fault could not be applied, ...).
const EXIT_HARNESS: u8 = 2;
/// How long an interrupted run may take to stop its load and heal before it is cut short.
const INTERRUPT_GRACE: Duration = Duration::from_secs(30);

/// Fault-injection runs against a real Dolmen cluster on loopback.
///
/// Exit codes: 0 every check passed; 1 a violation was found, or a check could not decide
/// (unknown counts as failure); 2 harness error (the cluster could not start, a fault could
/// not be applied, bad arguments, interrupted).
#[derive(Parser, Debug)]
#[command(name = "dolmen-chaos", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a cluster, run clients and a seeded nemesis, heal, check, save the run folder.
    Run(RunArgs),
    /// Run again with the seed and arguments saved in <DIR>/run.json.
    Replay {
        /// A run folder (holds run.json).
        dir: PathBuf,
        /// Where the new run goes (default: ./chaos-runs/<timestamp>-seed-<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Use this dolmen binary instead of the one recorded in run.json.
        #[arg(long)]
        dolmen: Option<PathBuf>,
    },
    /// Re-run the checkers on <DIR>/history.jsonl.
    Check {
        /// A run folder (holds history.jsonl).
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Profile {
    /// About two minutes in all (setup and checks included), every fault kind, modest load.
    Short,
    /// As long as --duration (default 30m), every fault kind, more clients.
    Long,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ReadsArg {
    Linearizable,
    Lease,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BugArg {
    /// Followers answer linearizable reads from local state ([faults] unsafe_stale_reads).
    StaleReads,
    /// The Raft log acknowledges before its fsync ([faults] unsafe_skip_log_fsync); implies
    /// --lose-unsynced-writes, shows under --faults crash-all.
    SkipLogFsync,
    /// Commits skip the read-conflict check ([faults] unsafe_skip_conflict_check); shows as
    /// dependency cycles in list-append, with or without faults.
    SkipConflictCheck,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Seed of every random choice (default: random, printed and saved in run.json).
    #[arg(long)]
    seed: Option<u64>,
    /// How long clients and faults run, e.g. 90s, 2m, 30m (default 60s; short: 75s; long: 30m).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// Workloads, comma-separated: register, bank, set, list-append (or all).
    #[arg(long, default_value = "register,bank,set,list-append")]
    workloads: String,
    /// Fault kinds, comma-separated: kill, pause, partition, drop, delay, duplicate, transfer,
    /// mix (a network fault with a kill, pause, transfer or crash-all inside it), crash-all
    /// (every node killed at once, then restarted) (or all, or none).
    #[arg(long, default_value = "all")]
    faults: String,
    /// Concurrent clients, spread over the workloads (default 9; short: 8; long: 12).
    #[arg(long)]
    clients: Option<usize>,
    /// The dolmen binary (default: `dolmen` next to this executable).
    #[arg(long, env = "DOLMEN_BIN")]
    dolmen: Option<PathBuf>,
    /// The run folder (default: ./chaos-runs/<timestamp>-seed-<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Plant a known bug in every node, to prove the checkers catch it.
    #[arg(long, value_enum)]
    planted_bug: Option<BugArg>,
    /// With --planted-bug skip-conflict-check on a sharded run: only this data group (1 for
    /// the first range of --split-keys) skips the check, the bug on one shard; 0 (the
    /// default): every group.
    #[arg(long, default_value_t = 0)]
    planted_bug_group: u64,
    /// Preset duration and load.
    #[arg(long, value_enum)]
    profile: Option<Profile>,
    /// Keep the nodes' data directories even when the run passes.
    #[arg(long)]
    keep: bool,
    /// The nodes' `[reads] consistency_level`: `linearizable` (a ReadIndex barrier per read) or
    /// `lease` (the leader answers from its lease); the register checker judges both as
    /// linearizable.
    #[arg(long, value_enum, default_value = "linearizable")]
    reads: ReadsArg,
    /// Self-test: succeed (exit 0) only if this checker (e.g. `register`) finds a violation,
    /// as it must with `--planted-bug`; exit 1 if it does not.
    #[arg(long, value_name = "CHECKER")]
    expect_violation: Option<String>,
    /// Every node loses what it never fsynced when killed, as after a power cut
    /// ([faults] lose_unsynced_writes; on in both profiles).
    #[arg(long)]
    lose_unsynced_writes: bool,
    /// Shard the cluster: `[sharding] split_keys` on every node, comma-separated and strictly
    /// increasing (UTF-8 text, or `hex:` and two hex digits per byte; a comma only in hex).
    /// Group 0 then holds the oracle and one data group owns each range.
    #[arg(long, value_name = "KEYS", value_parser = Ranges::parse)]
    split_keys: Option<Ranges>,
}

fn random_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Rng::new(nanos ^ (u64::from(std::process::id()) << 40)).next_u64() >> 1
}

fn default_dolmen() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("dolmen")))
        .unwrap_or_else(|| PathBuf::from("dolmen"))
}

fn resolve(args: RunArgs) -> anyhow::Result<(RunOptions, Option<PathBuf>, Option<String>)> {
    let (duration, clients) = match args.profile {
        Some(Profile::Short) => (Duration::from_secs(75), 8),
        Some(Profile::Long) => (Duration::from_secs(30 * 60), 12),
        None => (Duration::from_secs(60), 9),
    };
    let workloads = parse_workloads(&args.workloads).context("--workloads")?;
    let faults = parse_faults(&args.faults).context("--faults")?;
    let clients = args.clients.unwrap_or(clients).max(1);
    let dolmen = args.dolmen.unwrap_or_else(default_dolmen);
    let dolmen = dolmen.canonicalize().unwrap_or(dolmen);
    let split_keys: Vec<String> = args
        .split_keys
        .map(|r| r.texts().to_vec())
        .unwrap_or_default();
    let groups = if split_keys.is_empty() {
        0
    } else {
        split_keys.len() as u64 + 1
    };
    if args.planted_bug_group != 0
        && !(matches!(args.planted_bug, Some(BugArg::SkipConflictCheck))
            && args.planted_bug_group <= groups)
    {
        anyhow::bail!(
            "--planted-bug-group {} needs --planted-bug skip-conflict-check and --split-keys \
             with that many ranges (data groups 1 to {groups} here)",
            args.planted_bug_group
        );
    }
    let opts = RunOptions {
        seed: args.seed.unwrap_or_else(random_seed),
        duration_secs: args.duration.unwrap_or(duration).as_secs().max(1),
        nodes: usize::from(args.nodes),
        workloads,
        faults,
        clients,
        dolmen,
        planted_bug: args.planted_bug.map(|b| match b {
            BugArg::StaleReads => PlantedBug::StaleReads,
            BugArg::SkipLogFsync => PlantedBug::SkipLogFsync,
            BugArg::SkipConflictCheck => PlantedBug::SkipConflictCheck,
        }),
        profile: args.profile.map(|p| format!("{p:?}").to_lowercase()),
        keep_data: args.keep,
        lease_reads: matches!(args.reads, ReadsArg::Lease),
        // Skipped fsyncs matter only when unsynced writes can be lost.
        lose_unsynced_writes: args.lose_unsynced_writes
            || args.profile.is_some()
            || matches!(args.planted_bug, Some(BugArg::SkipLogFsync)),
        planted_bug_group: args.planted_bug_group,
        split_keys,
    };
    Ok((opts, args.out, args.expect_violation))
}

/// Runs with Ctrl-C handling: the first Ctrl-C stops load and faults and heals (bounded);
/// dropping the run kills every node it started. With `expect_violation`, the exit code says
/// whether that checker found a violation instead.
async fn run_interruptible(
    opts: RunOptions,
    out: PathBuf,
    expect_violation: Option<String>,
) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    let fut = run::run(opts, &out, Arc::clone(&stop));
    tokio::pin!(fut);
    let result = tokio::select! {
        r = &mut fut => r,
        _ = tokio::signal::ctrl_c() => {
            stop.store(true, Ordering::Relaxed);
            eprintln!("dolmen-chaos: interrupted; stopping the load and healing (up to {INTERRUPT_GRACE:?})");
            match tokio::time::timeout(INTERRUPT_GRACE, &mut fut).await {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("interrupted")),
            }
        }
    };
    match result {
        Ok(r) => match expect_violation {
            None => ExitCode::from(u8::try_from(r.exit_code).unwrap_or(1)),
            // On a sharded cluster the planted bug must be caught while commits across
            // ranges commit (two-phase commit), not only in a run where they all failed.
            Some(checker)
                if r.violated.contains(&checker)
                    && r.undecided.iter().any(|c| c == shards::CROSS_RANGE) =>
            {
                eprintln!(
                    "dolmen-chaos: self-test FAILED: the {checker} checker found a violation, \
                     but no transaction reaching several ranges committed (see the cross-range \
                     report; run folder {})",
                    r.out.display()
                );
                ExitCode::from(1)
            }
            Some(checker) if r.violated.contains(&checker) => {
                eprintln!("dolmen-chaos: self-test passed: the {checker} checker found the violation it had to find");
                ExitCode::from(EXIT_PASS)
            }
            Some(checker) => {
                eprintln!(
                    "dolmen-chaos: self-test FAILED: expected the {checker} checker to find a \
                     violation; violations found: {:?} (run folder {})",
                    r.violated,
                    r.out.display()
                );
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("dolmen-chaos: harness error: {e:#}");
            eprintln!("dolmen-chaos: run folder kept: {}", out.display());
            ExitCode::from(EXIT_HARNESS)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => match resolve(args) {
            Ok((opts, out, expect)) => {
                let out = out.unwrap_or_else(|| run::default_out(opts.seed));
                run_interruptible(opts, out, expect).await
            }
            Err(e) => {
                eprintln!("dolmen-chaos: {e:#}");
                ExitCode::from(EXIT_HARNESS)
            }
        },
        Command::Replay { dir, out, dolmen } => match dolmen_chaos::report::read_info(&dir) {
            Ok(info) => {
                let mut opts = info.options;
                if let Some(d) = dolmen {
                    opts.dolmen = d.canonicalize().unwrap_or(d);
                }
                eprintln!(
                    "dolmen-chaos: replaying {} (seed {})",
                    dir.display(),
                    opts.seed
                );
                let out = out.unwrap_or_else(|| run::default_out(opts.seed));
                run_interruptible(opts, out, None).await
            }
            Err(e) => {
                eprintln!("dolmen-chaos: {e:#}");
                ExitCode::from(EXIT_HARNESS)
            }
        },
        Command::Check { dir } => match run::check_saved(&dir) {
            Ok(0) => ExitCode::from(EXIT_PASS),
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => {
                eprintln!("dolmen-chaos: {e:#}");
                ExitCode::from(EXIT_HARNESS)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dolmen_chaos::nemesis::FaultKind;
    use dolmen_chaos::workload::Workload;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn profile_defaults_and_overrides() {
        let cli = Cli::parse_from(["dolmen-chaos", "run", "--profile", "short", "--seed", "7"]);
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        let (o, out, expect) = resolve(args).unwrap();
        assert!(expect.is_none());
        assert_eq!((o.seed, o.duration_secs, o.clients, o.nodes), (7, 75, 8, 3));
        assert_eq!(
            o.workloads,
            Workload::ALL.to_vec(),
            "two clients per workload"
        );
        assert_eq!(o.faults, FaultKind::ALL.to_vec());
        assert!(o.lose_unsynced_writes, "the profiles cut the power");
        assert!(out.is_none());
        let cli = Cli::parse_from([
            "dolmen-chaos",
            "run",
            "--duration",
            "40s",
            "--faults",
            "kill,pause,transfer",
            "--workloads",
            "register",
            "--clients",
            "4",
            "--planted-bug",
            "stale-reads",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        let (o, _, _) = resolve(args).unwrap();
        assert_eq!((o.duration_secs, o.clients, o.faults.len()), (40, 4, 3));
        assert!(!o.network_faults());
        assert_eq!(o.planted_bug, Some(PlantedBug::StaleReads));
        assert!(!o.lose_unsynced_writes);
        let cli = Cli::parse_from([
            "dolmen-chaos",
            "run",
            "--faults",
            "crash-all",
            "--planted-bug",
            "skip-log-fsync",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        let (o, _, _) = resolve(args).unwrap();
        assert_eq!(o.faults, vec![FaultKind::CrashAll]);
        assert_eq!(o.planted_bug, Some(PlantedBug::SkipLogFsync));
        assert!(
            o.lose_unsynced_writes,
            "the planted bug needs the power cut"
        );
        assert!(o.split_keys.is_empty(), "not sharded unless asked");
    }

    #[test]
    fn split_keys_are_parsed_and_bad_ones_refused_naming_the_key() {
        let cli = Cli::parse_from([
            "dolmen-chaos",
            "run",
            "--split-keys",
            "bank/4,la/,la/5,reg/,reg/5,set/",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        let (o, _, _) = resolve(args).unwrap();
        assert_eq!(
            o.split_keys,
            ["bank/4", "la/", "la/5", "reg/", "reg/5", "set/"]
        );
        assert_eq!(o.ranges().unwrap().len(), 7);
        let e = Cli::try_parse_from(["dolmen-chaos", "run", "--split-keys", "la/5,la/"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("split key 2 (\"la/\") is not above split key 1 (\"la/5\")"),
            "{e}"
        );
        let e = Cli::try_parse_from(["dolmen-chaos", "run", "--split-keys", "a,,b"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("split key 2 is empty"), "{e}");
    }
}
