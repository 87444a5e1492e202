//! `etcd-bench`: a closed-loop load generator for etcd v3 with `dolmen bench`'s model and
//! output, so the two can be compared side by side (`scripts/compare-etcd.sh`). N clients, each
//! its own gRPC connection, issue one request at a time until `--duration` (hard stop);
//! latencies go into an HdrHistogram; one table and one JSON line per run.
//!
//! ```text
//! discover the leader (Status + MemberList) -> preload (batched Txn puts)
//!   -> for each workload × client count: N tasks { op -> histogram } + a line per second
//! ```
//!
//! Exit codes: 0 success; 1 runtime failure (etcd unreachable, preload failed); 2 bad usage.

mod failover;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};

use dolmen_bench_report::{self as report, Outcome, Report, Tally};

/// Per-request timeout (connect and RPC).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys per preload transaction (etcd's default `--max-txn-ops` is 128).
const PRELOAD_BATCH: usize = 100;

/// What each client does in its loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Workload {
    /// `Put` of a random key (blind write).
    Write,
    /// Linearizable `Range` get of a random preloaded key.
    Read,
    /// Read-modify-write of 2 random keys: two linearizable gets, then one `Txn` comparing both
    /// keys' `mod_revision` and putting both; a failed compare counts as a conflict.
    Txn,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Write => "write",
            Workload::Read => "read",
            Workload::Txn => "txn",
        }
    }
}

/// Which member each client connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ReadStrategy {
    /// Every client connects to the leader (found with `Status`), like `dolmen bench
    /// --read-strategy leader`.
    Leader,
    /// Client `i` connects to endpoint `i mod n` (followers forward writes and confirm
    /// linearizable reads with the leader), like `dolmen bench --read-strategy spread`.
    Spread,
}

impl ReadStrategy {
    fn name(self) -> &'static str {
        match self {
            ReadStrategy::Leader => "leader",
            ReadStrategy::Spread => "spread",
        }
    }
}

/// `etcd-bench` flags.
#[derive(Debug, clap::Parser)]
#[command(name = "etcd-bench", version, about, long_about = None)]
struct Args {
    /// etcd client URLs, comma-separated (`http://127.0.0.1:2379,...`).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// Which member each client connects to (one connection per client).
    #[arg(long, value_enum, default_value = "leader")]
    read_strategy: ReadStrategy,
    /// Workloads to run, one after the other.
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
    /// Seconds per run, a hard stop.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Skip writing all `--keys` keys before the runs (reads then mostly miss).
    #[arg(long)]
    no_preload: bool,
    /// A leader-kill scenario instead of the workloads: puts from the first `--clients` count,
    /// client `i` through endpoint `i mod n`, until FILE.done exists (at most `--duration`);
    /// FILE lists the kills (`<unix ns> <member>` per line, written by whoever kills). Prints
    /// the failover per kill as `dolmen bench --scenario failover` does.
    #[arg(long, value_name = "FILE")]
    failover_kills: Option<PathBuf>,
    /// The members' election timeout, for the failover report.
    #[arg(long, default_value_t = 1000)]
    election_timeout_ms: u64,
}

impl Args {
    /// Rejects values that would make a run meaningless, naming the flag.
    fn check(&self) -> Result<(), ArgsError> {
        if self.endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err(ArgsError::NoEndpoint);
        }
        if self.clients.contains(&0) {
            return Err(ArgsError::ZeroClients);
        }
        if self.keys == 0 {
            return Err(ArgsError::ZeroKeys);
        }
        if self.duration == 0 {
            return Err(ArgsError::ZeroDuration);
        }
        Ok(())
    }
}

/// A flag value that would make a run meaningless (exit code 2); the message names the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum ArgsError {
    #[error("--endpoints: give at least one etcd client URL")]
    NoEndpoint,
    #[error("--clients: each count must be at least 1")]
    ZeroClients,
    #[error("--keys must be at least 1")]
    ZeroKeys,
    #[error("--duration must be at least 1 second")]
    ZeroDuration,
}

/// Why a benchmark could not run (exit code 1).
#[derive(Debug, thiserror::Error)]
enum BenchError {
    /// A client could not connect to an endpoint.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: etcd_client::Error,
    },
    /// `Status` or `MemberList` failed on a connected endpoint.
    #[error(transparent)]
    Membership(etcd_client::Error),
    /// The member `Status` names as leader is not in the member list with a client URL.
    #[error("leader {leader:x} has no client URL")]
    LeaderWithoutUrl { leader: u64 },
    /// No endpoint to ask for the leader.
    #[error("cannot find the etcd leader (no endpoint given)")]
    NoEndpoint,
    /// No endpoint could name the leader; `last` is the last endpoint's reason.
    #[error("cannot find the etcd leader ({endpoint}: {last})")]
    NoLeader {
        endpoint: String,
        #[source]
        last: Box<BenchError>,
    },
    /// The kills file of `--failover-kills` cannot be read.
    #[error("--failover-kills {path}: {source}")]
    Kills {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A preload transaction failed.
    #[error("preload to {endpoint}: {source}")]
    Preload {
        endpoint: String,
        #[source]
        source: etcd_client::Error,
    },
}

/// The name of key number `i` (the same names `dolmen bench` uses).
fn key(i: u64) -> Vec<u8> {
    format!("bench/{i:012}").into_bytes()
}

/// A small deterministic generator (xorshift64), one per client.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15).max(1))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// An error's gRPC code name (`Unavailable`, `DeadlineExceeded`, …) or its kind.
fn code(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}", s.code()),
        etcd_client::Error::TransportError(_) => "TRANSPORT".to_owned(),
        _ => "ERROR".to_owned(),
    }
}

fn options() -> ConnectOptions {
    ConnectOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(REQUEST_TIMEOUT)
}

async fn connect(endpoint: &str) -> Result<Client, BenchError> {
    Client::connect([endpoint], Some(options()))
        .await
        .map_err(|source| BenchError::Connect {
            endpoint: endpoint.to_owned(),
            source,
        })
}

/// The leader's client URL: asks each endpoint for `Status` (the leader's member id) and the
/// member list (its client URLs), until one answers.
async fn discover_leader(endpoints: &[String]) -> Result<String, BenchError> {
    let mut last = None;
    for endpoint in endpoints {
        let result = async {
            let mut c = connect(endpoint).await?;
            let leader = c.status().await.map_err(BenchError::Membership)?.leader();
            let members = c.member_list().await.map_err(BenchError::Membership)?;
            members
                .members()
                .iter()
                .find(|m| m.id() == leader)
                .and_then(|m| m.client_urls().first().cloned())
                .ok_or(BenchError::LeaderWithoutUrl { leader })
        }
        .await;
        match result {
            Ok(url) => return Ok(url),
            Err(e) => last = Some((endpoint.clone(), e)),
        }
    }
    let Some((endpoint, last)) = last else {
        return Err(BenchError::NoEndpoint);
    };
    Err(BenchError::NoLeader {
        endpoint,
        last: Box::new(last),
    })
}

/// Puts `value` under every key, `PRELOAD_BATCH` keys per transaction.
async fn preload(endpoint: &str, keys: u64, value: &[u8]) -> Result<(), BenchError> {
    let mut c = connect(endpoint).await?;
    let all: Vec<u64> = (0..keys).collect();
    for chunk in all.chunks(PRELOAD_BATCH) {
        let puts: Vec<TxnOp> = chunk
            .iter()
            .map(|i| TxnOp::put(key(*i), value.to_vec(), None))
            .collect();
        c.txn(Txn::new().and_then(puts))
            .await
            .map_err(|source| BenchError::Preload {
                endpoint: endpoint.to_owned(),
                source,
            })?;
    }
    Ok(())
}

/// Runs one operation of `workload`.
async fn execute(
    c: &mut Client,
    workload: Workload,
    keys: u64,
    rng: &mut Rng,
    value: &[u8],
) -> Outcome {
    let result = match workload {
        Workload::Write => c.put(key(rng.below(keys)), value, None).await.map(|_| true),
        // Linearizable is etcd's default for a range request (serializable is opt-in).
        Workload::Read => c.get(key(rng.below(keys)), None).await.map(|_| true),
        Workload::Txn => txn(c, keys, rng, value).await,
    };
    match result {
        Ok(true) => Outcome::Ok,
        Ok(false) => Outcome::Conflict,
        Err(e) => Outcome::Error(code(&e)),
    }
}

/// Get two distinct keys, then put both modified in one `Txn` guarded by both keys'
/// `mod_revision` (0 when absent); `Ok(false)` when the guard failed (a conflict).
async fn txn(
    c: &mut Client,
    keys: u64,
    rng: &mut Rng,
    value: &[u8],
) -> Result<bool, etcd_client::Error> {
    let first = rng.below(keys);
    let mut second = rng.below(keys);
    if second == first && keys > 1 {
        second = (first + 1) % keys;
    }
    let mut compares = Vec::with_capacity(2);
    let mut puts = Vec::with_capacity(2);
    for k in [key(first), key(second)] {
        let resp = c.get(k.clone(), None).await?;
        let (revision, mut new) = match resp.kvs().first() {
            Some(kv) => (kv.mod_revision(), kv.value().to_vec()),
            None => (0, value.to_vec()),
        };
        if let Some(b) = new.first_mut() {
            *b = b.wrapping_add(1);
        }
        compares.push(Compare::mod_revision(k.clone(), CompareOp::Equal, revision));
        puts.push(TxnOp::put(k, new, None));
    }
    let resp = c.txn(Txn::new().when(compares).and_then(puts)).await?;
    Ok(resp.succeeded())
}

/// Prints the last second's ops/s on stderr once a second, until aborted.
async fn progress(label: String, done: Arc<AtomicU64>) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tick.tick().await;
        let now = done.load(Ordering::Relaxed);
        eprintln!(
            "{label}: {:>8} ops/s at {:>4}s",
            now - last,
            start.elapsed().as_secs()
        );
        last = now;
    }
}

async fn run_once(
    args: &Args,
    targets: &[String],
    workload: Workload,
    clients: usize,
) -> Result<Report, BenchError> {
    // Connect every client first, so connection set-up is not timed.
    let mut conns = Vec::with_capacity(clients);
    for c in 0..clients {
        conns.push(connect(&targets[c % targets.len()]).await?);
    }
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + Duration::from_secs(args.duration));
    let done = Arc::new(AtomicU64::new(0));
    let label = format!(
        "{} @{clients} ({})",
        workload.name(),
        args.read_strategy.name()
    );
    let ticker = tokio::spawn(progress(label, done.clone()));
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, mut client)| {
            let value = vec![b'x'; args.value_size];
            let (keys, done) = (args.keys, done.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(c as u64 + 1);
                let mut r = Tally::new();
                loop {
                    let t = Instant::now();
                    let op = execute(&mut client, workload, keys, &mut rng, &value);
                    // The deadline is a hard stop: an operation still in flight is abandoned.
                    let Ok(outcome) = tokio::time::timeout_at(deadline, op).await else {
                        break;
                    };
                    r.record(outcome, t.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                r
            })
        })
        .collect();
    let mut report = Report::new(workload.name(), clients, args.read_strategy.name());
    report.absorb_all(tasks).await;
    report.elapsed = start.elapsed();
    ticker.abort();
    Ok(report)
}

async fn bench(args: Args) -> Result<(), BenchError> {
    let endpoints: Vec<String> = args
        .endpoints
        .iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    if let Some(kills) = &args.failover_kills {
        return failover::run(&args, &endpoints, kills).await;
    }
    let leader = discover_leader(&endpoints).await?;
    let targets = match args.read_strategy {
        ReadStrategy::Leader => vec![leader.clone()],
        ReadStrategy::Spread => endpoints,
    };
    let value = vec![b'x'; args.value_size];
    if !args.no_preload && args.workload.iter().any(|w| *w != Workload::Write) {
        preload(&leader, args.keys, &value).await?;
    }
    let mut reports = Vec::new();
    for &workload in &args.workload {
        for &n in &args.clients {
            reports.push(run_once(&args, &targets, workload, n).await?);
        }
    }
    report::print(&reports);
    Ok(())
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    if let Err(e) = args.check() {
        eprintln!("etcd-bench: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("etcd-bench: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etcd-bench: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn defaults_match_dolmen_bench() {
        let args = Args::try_parse_from(["etcd-bench"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.clients, [1, 32]);
        assert_eq!(args.duration, 10);
        assert_eq!(args.keys, 10_000);
        assert_eq!(args.value_size, 256);
        assert_eq!(args.read_strategy, ReadStrategy::Leader);
        assert_eq!(
            args.workload,
            [Workload::Write, Workload::Read, Workload::Txn]
        );
        assert!(args.check().is_ok());
    }

    #[test]
    fn zero_counts_are_rejected_naming_the_flag() {
        for (argv, flag, want) in [
            (
                &["etcd-bench", "--clients", "0"][..],
                "--clients",
                ArgsError::ZeroClients,
            ),
            (
                &["etcd-bench", "--keys", "0"][..],
                "--keys",
                ArgsError::ZeroKeys,
            ),
            (
                &["etcd-bench", "--duration", "0"][..],
                "--duration",
                ArgsError::ZeroDuration,
            ),
            (
                &["etcd-bench", "--endpoints", " "][..],
                "--endpoints",
                ArgsError::NoEndpoint,
            ),
        ] {
            let args = Args::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(args.check(), Err(want), "{argv:?}");
            let err = want.to_string();
            assert!(err.contains(flag), "{argv:?}: {err}");
        }
    }

    #[test]
    fn keys_are_dolmen_bench_keys_and_draws_stay_in_range() {
        assert_eq!(key(7), b"bench/000000000007");
        let mut rng = Rng::new(1);
        assert!((0..10_000).all(|_| rng.below(10) < 10));
    }
}
