//! `dolmen bench`: a closed-loop load generator. N clients, each with its own connection, issue
//! one request at a time until `--duration` (hard stop) or `--ops`; latencies go into an
//! HdrHistogram. Prints a live ops/s line on a terminal, then one table and one JSON line per run.
//! Never used for timed assertions in tests.
//!
//! ```text
//! preload (batched atomicCommits) -> for each workload × client count: run_once -> Report
//!   run_once: N tasks { Workload::pick -> workload::execute -> histogram } + progress ticker
//! ```

mod keys;
mod report;
mod workload;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_client::{Client, Op};

use keys::{key, Distribution, Keys, Rng};
use report::Report;
use workload::{Outcome, Workload};

/// `dolmen bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The node's Thrift address (ignored when `--endpoints` is given).
    #[arg(long, default_value = "127.0.0.1:9090", env = "DOLMEN_ADDR")]
    addr: SocketAddr,
    /// Thrift addresses of the cluster's nodes, comma-separated; client `i` connects to
    /// endpoint `i mod n` (a follower forwards writes to the leader and serves reads itself).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<SocketAddr>,
    /// Workloads to run, one after the other (`set`, `get`, `commit` are aliases of `write`,
    /// `read`, `txn`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "write,read,txn"
    )]
    workload: Vec<Workload>,
    /// Concurrent clients (each its own connection); a comma-separated list runs each.
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
    /// How keys are chosen.
    #[arg(long, value_enum, default_value = "uniform")]
    distribution: Distribution,
    /// Skip writing all `--keys` keys before the runs (reads then mostly miss).
    #[arg(long)]
    no_preload: bool,
}

impl BenchArgs {
    /// The address client `client` connects to.
    fn endpoint(&self, client: usize) -> SocketAddr {
        match self.endpoints.len() {
            0 => self.addr,
            n => self.endpoints[client % n],
        }
    }

    fn duration(&self) -> Option<Duration> {
        match (self.duration, self.ops) {
            (Some(secs), _) => Some(Duration::from_secs(secs)),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }
}

/// What one client task hands back.
struct ClientResult {
    ops: u64,
    conflicts: u64,
    errors: BTreeMap<String, u64>,
    latency: hdrhistogram::Histogram<u64>,
}

/// Prints the current ops/s on stderr once a second, overwriting the line, until aborted.
async fn progress(name: &'static str, clients: usize, done: Arc<AtomicU64>) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tick.tick().await;
        let now = done.load(Ordering::Relaxed);
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{name} at {clients} clients: {:>8} ops/s, {:>4}s",
            now - last,
            start.elapsed().as_secs()
        );
        let _ = err.flush();
        last = now;
    }
}

async fn run_once(args: &BenchArgs, workload: Workload, clients: usize, keys: Keys) -> Report {
    let start = Instant::now();
    let deadline = args
        .duration()
        .map(|d| tokio::time::Instant::from_std(start + d));
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let ticker = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(progress(workload.name(), clients, done.clone())));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            // Each client its own connection pool, so `clients` means connections.
            let client = Client::new(args.endpoint(c), Duration::from_secs(10));
            let value = vec![b'x'; args.value_size];
            let (max_ops, issued, done) = (args.ops, issued.clone(), done.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(c as u64 + 1);
                let mut r = ClientResult {
                    ops: 0,
                    conflicts: 0,
                    errors: BTreeMap::new(),
                    latency: report::histogram(),
                };
                loop {
                    if max_ops.is_some_and(|max| issued.fetch_add(1, Ordering::Relaxed) >= max) {
                        break;
                    }
                    let action = workload.pick(&mut rng);
                    let t = Instant::now();
                    let op = workload::execute(&client, action, &keys, &mut rng, &value);
                    // The deadline is a hard stop: an operation still in flight is abandoned.
                    let outcome = match deadline {
                        Some(d) => match tokio::time::timeout_at(d, op).await {
                            Ok(outcome) => outcome,
                            Err(_) => break,
                        },
                        None => op.await,
                    };
                    match outcome {
                        Outcome::Ok => {
                            r.ops += 1;
                            let _ = r.latency.record(t.elapsed().as_micros().max(1) as u64);
                        }
                        Outcome::Conflict => r.conflicts += 1,
                        Outcome::Error(code) => *r.errors.entry(code).or_default() += 1,
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                r
            })
        })
        .collect();
    let mut report = Report {
        workload: workload.name(),
        clients,
        ops: 0,
        conflicts: 0,
        errors: BTreeMap::new(),
        latency: report::histogram(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        if let Ok(r) = task.await {
            report.ops += r.ops;
            report.conflicts += r.conflicts;
            for (code, n) in r.errors {
                *report.errors.entry(code).or_default() += n;
            }
            let _ = report.latency.add(&r.latency);
        }
    }
    report.elapsed = start.elapsed();
    if let Some(ticker) = ticker {
        ticker.abort();
        eprint!("\r{:60}\r", "");
    }
    report
}

async fn preload(args: &BenchArgs) -> Result<(), String> {
    let client = Client::new(args.endpoint(0), Duration::from_secs(10));
    let value = vec![b'x'; args.value_size];
    let keys: Vec<u64> = (0..args.keys).collect();
    for chunk in keys.chunks(1000) {
        let ops: Vec<Op> = chunk
            .iter()
            .map(|i| Op::Set {
                key: key(*i),
                value: value.clone(),
            })
            .collect();
        client
            .commit(0, &ops, &[])
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs the requested workloads at each client count and prints the results.
pub fn run(args: BenchArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dolmen bench: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let (workloads, clients) = if args.matrix {
        (Workload::ALL.to_vec(), vec![1, 32])
    } else {
        (args.workload.clone(), args.clients.clone())
    };
    runtime.block_on(async {
        if !args.no_preload && workloads.iter().any(|w| w.reads()) {
            if let Err(e) = preload(&args).await {
                eprintln!("dolmen bench: preload of {} keys failed: {e}", args.keys);
                return ExitCode::from(1);
            }
        }
        let keys = Keys::new(args.distribution, args.keys);
        let mut reports = Vec::new();
        for &workload in &workloads {
            for &n in &clients {
                reports.push(run_once(&args, workload, n.max(1), keys).await);
            }
        }
        report::print(&reports);
        ExitCode::SUCCESS
    })
}
