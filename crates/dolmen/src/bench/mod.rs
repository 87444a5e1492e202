//! `dolmen bench`: a closed-loop load generator. N clients, each with its own connection per
//! node, issue one request at a time until `--duration` (hard stop) or `--ops`; latencies go into
//! an HdrHistogram. Shows a live progress bar (plain lines when stderr is not a terminal), then
//! one table and one JSON line per run, with the CPU the run used (the machine's busy share, the
//! load generator's and, with `--server-pids`, the servers' CPU per operation).
//! `--probe` measures the machine's latency floor instead; `--probe oracle` the oracle's rate to
//! one gateway (`oracle.rs`).
//! Never used for timed assertions in tests.
//!
//! ```text
//! discover leader (route) -> preload (batched atomicCommits to the leader)
//!   -> for each workload × client count: run_once -> Report
//!   run_once: cpu::Sample -> N tasks { Workload::pick -> workload::execute(Conns) -> histogram }
//!             + progress -> cpu::Sample
//! ```

mod cpu;
mod failover;
mod keys;
mod oracle;
mod probe;
mod progress;
mod route;
mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_bench_report as report;
use dolmen_client::{Client, Op};

use keys::{key, Distribution, Keys, Rng};
use progress::{Goal, Progress};
use report::{Report, Tally};
use route::{ReadStrategy, Topology};
use workload::Workload;

/// Per-request timeout (connect and RPC).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `dolmen bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The node's Thrift address (ignored when `--endpoints` is given).
    #[arg(long, default_value = "127.0.0.1:9090", env = "DOLMEN_ADDR")]
    addr: SocketAddr,
    /// Thrift addresses of the cluster's nodes, comma-separated. The leader is found with
    /// `getClusterHealth`; where each request goes is `--read-strategy`'s choice.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<SocketAddr>,
    /// Where requests go. Writes and `txn` commits always go to the leader (except `spread`);
    /// reads, and a `txn`'s read version with its snapshot reads (one node per transaction):
    /// `leader` all to the leader (the default: what `dolmen_client::Database` does, so the
    /// figures are what an application sees; reads on a follower cost a ReadIndex round trip
    /// to the leader anyway); `round-robin` the next node per operation; `sticky` client `i` to
    /// node `i mod n`; `spread` client `i` sends everything, writes included, to node `i mod n`
    /// (followers forward writes: measures the forwarding hop). No `nearest`: on one machine
    /// every node is equally near.
    #[arg(long, value_enum, default_value = "leader")]
    read_strategy: ReadStrategy,
    /// Workloads to run, one after the other (`set`, `get`, `commit` are aliases of `write`,
    /// `read`, `txn`). `txn-local` and `txn-cross` are for a cluster split at the quarters of
    /// the keys (`--keys 10000`: `--split-keys
    /// bench/000000002500,bench/000000005000,bench/000000007500`): `txn` with both keys in one
    /// data group, and in two.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "write,read,txn"
    )]
    workload: Vec<Workload>,
    /// Concurrent clients (each its own connection to each node it uses); a comma-separated
    /// list runs each.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    clients: Vec<usize>,
    /// Run every workload at 1 and 32 clients (overrides `--workload` and `--clients`).
    #[arg(long)]
    matrix: bool,
    /// Seconds per run, a hard stop (default 10, or unlimited when `--ops` is given).
    #[arg(long)]
    duration: Option<u64>,
    /// Operations per run, shared by all clients: attempts, so conflicts and errors count too
    /// (a `txn` counts as one).
    #[arg(long)]
    ops: Option<u64>,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// What values hold: `repeated` (one byte repeated: compresses to nothing) or `text`
    /// (words drawn from a small vocabulary, each key its own: compresses about as well as
    /// text and JSON do, for measuring compression and disk use).
    #[arg(long, value_enum, default_value = "repeated")]
    values: ValueKind,
    /// How keys are chosen.
    #[arg(long, value_enum, default_value = "uniform")]
    distribution: Distribution,
    /// Skip writing all `--keys` keys before the runs (reads then mostly miss).
    #[arg(long)]
    no_preload: bool,
    /// Process ids of the servers under test, when they run on this machine (comma-separated;
    /// Linux): each run then reports their CPU per operation next to the load generator's.
    #[arg(long, value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// Measure this machine's latency floor instead of a server: fsync (1,000 × a 256-byte
    /// append + fdatasync in `--data-dir`) and loopback TCP round trip (10,000 × 64-byte
    /// ping-pong); prints p50/p99 and floor = fsync p50 + 2 × RTT p50. Also one thread
    /// hand-off (10,000 wake-ups of a sleeping thread), what each thread a write crosses adds.
    /// Needs no server. `--probe oracle` instead measures the oracle's rate to one gateway:
    /// this process opens one `Timestamps` stream to group 0's leader (found among
    /// `--peer-endpoints`) and `--callers` tasks each ask one commit version at a time for
    /// `--duration` seconds; prints versions/s, callers per batch and latency, and checks that
    /// every version is unique and each caller's increase.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "floor")]
    probe: Option<ProbeKind>,
    /// `--probe oracle`: the nodes' peer (Raft) addresses, comma-separated (default: the
    /// `dolmen demo` cluster's).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:7090,127.0.0.1:7091,127.0.0.1:7092"
    )]
    peer_endpoints: Vec<String>,
    /// `--probe oracle`: concurrent callers asking for versions.
    #[arg(long, default_value_t = 256)]
    callers: usize,
    /// `--probe oracle`: a node's configuration file, whose `[tls]` the probe speaks to the
    /// peer port with (plaintext without one).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Measure availability instead of throughput, on a 3-node cluster this command starts
    /// itself (this binary, loopback ports, a temporary directory) under a steady setKey load
    /// of the first `--clients` count: `failover` kills the leader `--kills` times (SIGKILL)
    /// and reports the time to the next acknowledged write (p50/p99) and the failed requests
    /// per failover; `rolling-restart` restarts every node with SIGTERM, followers first, while
    /// the clients retry on the next node, and reports the requests that failed for good.
    #[arg(long, value_enum, conflicts_with = "probe")]
    scenario: Option<failover::Scenario>,
    /// Leader kills in `--scenario failover`.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// The cluster's `[consensus] election_timeout_ms` in `--scenario` (heartbeats every fifth).
    #[arg(long, default_value_t = 1000)]
    election_timeout_ms: u64,
    /// The `dolmen` binary whose `serve` the `--scenario` cluster runs (default: this one), to
    /// measure another build with the same load and faults.
    #[arg(long, requires = "scenario")]
    server_bin: Option<PathBuf>,
    /// Directory for `--probe`'s fsync file: put it on the disk the nodes use (default: a
    /// new directory under the system temp dir, removed afterwards). Not for `--probe oracle`.
    #[arg(long, requires = "probe")]
    data_dir: Option<PathBuf>,
}

/// A flag value that would make a run meaningless (exit code 2); the message names the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum ArgsError {
    /// A `--clients` count of 0.
    #[error("--clients: each count must be at least 1")]
    Clients,
    /// `--keys 0`.
    #[error("--keys must be at least 1")]
    Keys,
    /// `txn-cross` with fewer keys than quarters.
    #[error("--workload txn-cross needs --keys of at least 4 (a key in each quarter)")]
    KeysForCross,
    /// `--duration 0`.
    #[error("--duration must be at least 1 second")]
    Duration,
    /// `--ops 0`.
    #[error("--ops must be at least 1")]
    Ops,
    /// `--callers 0`.
    #[error("--callers must be at least 1")]
    Callers,
}

/// What `--probe` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeKind {
    /// The machine's latency floor (fsync, loopback round trip, thread hand-off).
    Floor,
    /// The oracle's versions per second to one gateway, against a running cluster.
    Oracle,
}

impl BenchArgs {
    /// The endpoints given (`--endpoints`, else `--addr`).
    fn seeds(&self) -> Vec<SocketAddr> {
        if self.endpoints.is_empty() {
            vec![self.addr]
        } else {
            self.endpoints.clone()
        }
    }

    fn duration(&self) -> Option<Duration> {
        match (self.duration, self.ops) {
            (Some(secs), _) => Some(Duration::from_secs(secs)),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }

    /// Rejects values that would make a run meaningless, naming the flag.
    fn check(&self) -> Result<(), ArgsError> {
        if self.clients.contains(&0) {
            return Err(ArgsError::Clients);
        }
        if self.keys == 0 {
            return Err(ArgsError::Keys);
        }
        if self.keys < keys::QUARTERS && self.workload.contains(&Workload::TxnCross) {
            return Err(ArgsError::KeysForCross);
        }
        if self.duration == Some(0) {
            return Err(ArgsError::Duration);
        }
        if self.ops == Some(0) {
            return Err(ArgsError::Ops);
        }
        if self.callers == 0 {
            return Err(ArgsError::Callers);
        }
        Ok(())
    }
}

async fn run_once(
    args: &BenchArgs,
    topology: &Topology,
    workload: Workload,
    clients: usize,
    keys: Keys,
    measure_cpu: bool,
) -> Report {
    let cpu_before = measure_cpu.then(|| cpu::Sample::take(&args.server_pids));
    let start = Instant::now();
    let deadline = args
        .duration()
        .map(|d| tokio::time::Instant::from_std(start + d));
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let goal = match (args.duration(), args.ops) {
        (Some(d), _) => Goal::Duration(d),
        (None, ops) => Goal::Ops(ops.unwrap_or(0)),
    };
    let label = format!(
        "{} @{clients} ({})",
        workload.name(),
        topology.strategy.name()
    );
    let progress = Progress::start(label, goal, done.clone());
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            // Each client its own connection to each node, so `clients` means connections.
            let conns = topology.connect(c, REQUEST_TIMEOUT);
            let value = args.values.make(args.value_size, c as u64);
            let (max_ops, issued, done) = (args.ops, issued.clone(), done.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(c as u64 + 1);
                let mut r = Tally::new();
                loop {
                    if max_ops.is_some_and(|max| issued.fetch_add(1, Ordering::Relaxed) >= max) {
                        break;
                    }
                    let action = workload.pick(&mut rng);
                    let t = Instant::now();
                    let op = workload::execute(&conns, action, &keys, &mut rng, &value);
                    // The deadline is a hard stop: an operation still in flight is abandoned.
                    let outcome = match deadline {
                        Some(d) => match tokio::time::timeout_at(d, op).await {
                            Ok(outcome) => outcome,
                            Err(_) => break,
                        },
                        None => op.await,
                    };
                    r.record(outcome, t.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                r
            })
        })
        .collect();
    let mut report = Report::new(workload.name(), clients, topology.strategy.name());
    report.absorb_all(tasks).await;
    report.elapsed = start.elapsed();
    progress.finish();
    if let Some(before) = cpu_before {
        match before.and_then(|b| Ok(b.until(&cpu::Sample::take(&args.server_pids)?))) {
            Ok(used) => report.cpu = Some(used),
            Err(e) => eprintln!("dolmen bench: no CPU figures for this run: {e}"),
        }
    }
    report
}

/// `--probe oracle`: loads the peer TLS of `--config`, runs the probe and prints it.
fn run_oracle_probe(args: &BenchArgs) -> ExitCode {
    let tls = match &args.config {
        None => None,
        Some(path) => {
            let env: Vec<(String, String)> = std::env::vars().collect();
            let overrides = dolmen_server::config::Overrides::default();
            let loaded = dolmen_server::config::Config::load(Some(path), &env, &overrides)
                .map_err(anyhow::Error::from)
                .and_then(|c| Ok(dolmen_server::node::peer_tls(&c.tls)?));
            match loaded {
                Ok(tls) => tls,
                Err(e) => {
                    eprintln!(
                        "dolmen bench --probe oracle: --config {}: {e:#}",
                        path.display()
                    );
                    return ExitCode::from(2);
                }
            }
        }
    };
    let settings = oracle::Settings {
        peers: args.peer_endpoints.clone(),
        callers: args.callers,
        duration: args.duration().unwrap_or(Duration::from_secs(10)),
        tls,
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(oracle::run(&settings)) {
        Ok(run) => {
            run.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dolmen bench --probe oracle: {e}");
            ExitCode::from(1)
        }
    }
}

/// A multi-threaded tokio runtime, or exit code 1 with the reason on stderr.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("dolmen bench: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

/// What benchmark values hold (`--values`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ValueKind {
    /// `x` repeated.
    Repeated,
    /// Words from a 64-word vocabulary, drawn by a generator seeded per key.
    Text,
}

/// The vocabulary of `--values text`.
const WORDS: [&str; 64] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "user", "order", "item", "price",
    "count", "status", "active", "pending", "shipped", "created", "updated", "name", "email",
    "city", "country", "street", "total", "amount", "currency", "eur", "usd", "true", "false",
    "null", "id", "type", "value", "key", "{", "}", ":", ",", "\"", "0", "1", "2", "3", "4",
];

impl ValueKind {
    /// A value of `size` bytes; with `Text`, the words depend on `seed`.
    pub fn make(self, size: usize, seed: u64) -> Vec<u8> {
        match self {
            ValueKind::Repeated => vec![b'x'; size],
            ValueKind::Text => {
                let mut rng = Rng::new(seed);
                let mut out = Vec::with_capacity(size + 16);
                while out.len() < size {
                    let word = (rng.next_u64() % WORDS.len() as u64) as usize;
                    out.extend_from_slice(WORDS[word].as_bytes());
                    out.push(b' ');
                }
                out.truncate(size);
                out
            }
        }
    }
}

/// Writes every key once, 1,000 keys per commit, to the write node.
async fn preload(args: &BenchArgs, topology: &Topology) -> Result<(), dolmen_client::Error> {
    let client = Client::new(topology.write_node(), REQUEST_TIMEOUT);
    let keys: Vec<u64> = (0..args.keys).collect();
    for chunk in keys.chunks(1000) {
        let ops: Vec<Op> = chunk
            .iter()
            .map(|i| Op::Set {
                key: key(*i),
                value: args.values.make(args.value_size, *i),
            })
            .collect();
        client.commit(0, &ops, &[]).await?;
    }
    Ok(())
}

/// Runs the requested workloads at each client count and prints the results (or, with
/// `--probe`, the latency floor).
pub fn run(args: BenchArgs) -> ExitCode {
    if let Err(e) = args.check() {
        eprintln!("dolmen bench: {e}");
        return ExitCode::from(2);
    }
    if let Some(scenario) = args.scenario {
        let settings = failover::Settings {
            scenario,
            kills: args.kills.max(1),
            clients: args.clients.first().copied().unwrap_or(8),
            election_timeout_ms: args.election_timeout_ms.max(3),
            value_size: args.value_size,
            keys: args.keys,
            server_bin: args.server_bin.clone(),
        };
        return match failover::run(&settings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dolmen bench --scenario: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if args.probe == Some(ProbeKind::Oracle) {
        return run_oracle_probe(&args);
    }
    if args.probe == Some(ProbeKind::Floor) {
        return match probe::run(args.data_dir.as_deref()) {
            Ok(floor) => {
                floor.print();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dolmen bench --probe: {e}");
                ExitCode::from(1)
            }
        };
    }
    let measure_cpu = match cpu::Sample::take(&args.server_pids) {
        Ok(_) => true,
        Err(e) if args.server_pids.is_empty() => {
            eprintln!("dolmen bench: no CPU figures: {e}");
            false
        }
        Err(e) => {
            eprintln!("dolmen bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let (workloads, clients) = if args.matrix {
        (Workload::ALL.to_vec(), vec![1, 32])
    } else {
        (args.workload.clone(), args.clients.clone())
    };
    runtime.block_on(async {
        let topology =
            match Topology::discover(&args.seeds(), args.read_strategy, REQUEST_TIMEOUT).await {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("dolmen bench: {e}");
                    return ExitCode::from(1);
                }
            };
        if !args.no_preload && workloads.iter().any(|w| w.reads()) {
            if let Err(e) = preload(&args, &topology).await {
                eprintln!("dolmen bench: preload of {} keys failed: {e}", args.keys);
                return ExitCode::from(1);
            }
        }
        let keys = Keys::new(args.distribution, args.keys);
        let mut reports = Vec::new();
        for &workload in &workloads {
            for &n in &clients {
                reports.push(run_once(&args, &topology, workload, n, keys, measure_cpu).await);
            }
        }
        report::print(&reports);
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(argv: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn read_strategy_defaults_to_leader_and_parses_each_value() {
        let args =
            parse(&["--endpoints", "127.0.0.1:1,127.0.0.1:2"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.read_strategy, ReadStrategy::Leader);
        for (raw, want) in [
            ("leader", ReadStrategy::Leader),
            ("round-robin", ReadStrategy::RoundRobin),
            ("sticky", ReadStrategy::Sticky),
            ("spread", ReadStrategy::Spread),
        ] {
            let args = parse(&["--read-strategy", raw]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(args.read_strategy, want);
            assert_eq!(want.name(), raw);
        }
        assert!(parse(&["--read-strategy", "nearest"]).is_err());
    }

    #[test]
    fn data_dir_needs_probe() {
        assert!(parse(&["--data-dir", "/tmp/x"]).is_err());
        let args = parse(&["--probe", "--data-dir", "/tmp/x"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.probe, Some(ProbeKind::Floor));
    }

    #[test]
    fn probe_takes_an_optional_kind_and_oracle_its_own_flags() {
        assert_eq!(parse(&[]).map(|a| a.probe).ok(), Some(None));
        let args = parse(&["--probe"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.probe, Some(ProbeKind::Floor));
        let args = parse(&[
            "--probe",
            "oracle",
            "--callers",
            "8",
            "--peer-endpoints",
            "a:1,b:2",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.probe, Some(ProbeKind::Oracle));
        assert_eq!(args.callers, 8);
        assert_eq!(args.peer_endpoints, ["a:1", "b:2"]);
        assert_eq!(
            parse(&["--probe", "oracle"]).map(|a| a.callers).ok(),
            Some(256)
        );
        assert!(parse(&["--probe", "tso"]).is_err());
        let args =
            parse(&["--probe", "oracle", "--callers", "0"]).unwrap_or_else(|e| panic!("{e}"));
        let err = args.check().expect_err("no callers");
        assert_eq!(err, ArgsError::Callers);
        assert!(err.to_string().contains("--callers"), "{err}");
    }

    #[test]
    fn txn_variants_parse_and_cross_accepts_four_keys() {
        let args = parse(&["--workload", "txn-local,txn-cross", "--keys", "4"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.workload, [Workload::TxnLocal, Workload::TxnCross]);
        assert_eq!(args.check(), Ok(()));
        let args =
            parse(&["--workload", "txn-local", "--keys", "1"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.check(), Ok(()));
    }

    #[test]
    fn zero_counts_are_rejected_naming_the_flag() {
        for (argv, flag, want) in [
            (&["--clients", "1,0"][..], "--clients", ArgsError::Clients),
            (&["--keys", "0"][..], "--keys", ArgsError::Keys),
            (&["--duration", "0"][..], "--duration", ArgsError::Duration),
            (&["--ops", "0"][..], "--ops", ArgsError::Ops),
            (
                &["--workload", "txn,txn-cross", "--keys", "3"][..],
                "--keys",
                ArgsError::KeysForCross,
            ),
        ] {
            let args = parse(argv).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(args.check(), Err(want), "{argv:?}");
            let err = want.to_string();
            assert!(err.contains(flag), "{argv:?}: {err}");
        }
    }
}
