//! `dolmen bench`: a closed-loop load generator. N clients, each with its own connection, issue
//! one request at a time for a fixed duration; latencies go into an HdrHistogram. Prints a
//! table and one JSON line per run. Never used for timed assertions in tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use dolmen_client::{Client, Op};
use hdrhistogram::Histogram;

/// What each client does in a loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// `setKey` of a random key (blind write).
    Set,
    /// `get` of a random preloaded key.
    Get,
    /// `atomicCommit`: read version, then set one random key with it as a read conflict.
    Commit,
}

/// `dolmen bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The node's Thrift address.
    #[arg(long, default_value = "127.0.0.1:9090", env = "DOLMEN_ADDR")]
    addr: SocketAddr,
    /// Workloads to run, one after the other.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "set,get,commit"
    )]
    workload: Vec<Workload>,
    /// Concurrent clients (each its own connection); a comma-separated list runs each.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    clients: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
}

/// One run's results.
struct Report {
    ops: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram<u64>,
    elapsed: Duration,
}

/// A small deterministic generator (xorshift), one per client: no shared state in the loop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("bench/{i:08}").into_bytes()
}

async fn one(client: &Client, workload: Workload, key: &[u8], value: &[u8]) -> Result<(), String> {
    let code = |e: dolmen_client::Error| e.code().unwrap_or("ERROR").to_owned();
    match workload {
        Workload::Set => client.set("default", key, value).await.map_err(code),
        Workload::Get => client.get("default", key).await.map(|_| ()).map_err(code),
        Workload::Commit => {
            let rv = client.read_version().await.map_err(code)?;
            let op = Op::Set {
                key: key.to_vec(),
                value: value.to_vec(),
            };
            client
                .commit(rv, &[op], &[key.to_vec()])
                .await
                .map(|_| ())
                .map_err(code)
        }
    }
}

async fn run_once(args: &BenchArgs, workload: Workload, clients: usize) -> Report {
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            // Each client its own connection pool, so `clients` means connections.
            let client = Client::new(args.addr, Duration::from_secs(10));
            let (keys, value) = (args.keys.max(1), vec![b'x'; args.value_size]);
            tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
                let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .unwrap_or_else(|_| unreachable!("static histogram bounds are valid"));
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                let mut ops = 0u64;
                while Instant::now() < deadline {
                    let k = key(rng.next() % keys);
                    let t = Instant::now();
                    match one(&client, workload, &k, &value).await {
                        Ok(()) => {
                            ops += 1;
                            let _ = latency.record(t.elapsed().as_micros().max(1) as u64);
                        }
                        Err(code) => *errors.entry(code).or_default() += 1,
                    }
                }
                (ops, errors, latency)
            })
        })
        .collect();
    let mut report = Report {
        ops: 0,
        errors: BTreeMap::new(),
        latency: Histogram::new_with_bounds(1, 60_000_000, 3)
            .unwrap_or_else(|_| unreachable!("static histogram bounds are valid")),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        if let Ok((ops, errors, latency)) = task.await {
            report.ops += ops;
            for (code, n) in errors {
                *report.errors.entry(code).or_default() += n;
            }
            let _ = report.latency.add(&latency);
        }
    }
    report.elapsed = start.elapsed();
    report
}

async fn preload(args: &BenchArgs) -> Result<(), String> {
    let client = Client::new(args.addr, Duration::from_secs(10));
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

/// Runs the benchmark matrix and prints the results.
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
    runtime.block_on(async {
        if let Err(e) = preload(&args).await {
            eprintln!("dolmen bench: preload of {} keys failed: {e}", args.keys);
            return ExitCode::from(1);
        }
        println!(
            "{:<8} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9}  errors",
            "workload", "clients", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for &workload in &args.workload {
            for &clients in &args.clients {
                let r = run_once(&args, workload, clients.max(1)).await;
                let ops_per_sec = r.ops as f64 / r.elapsed.as_secs_f64();
                let ms = |q: f64| r.latency.value_at_quantile(q) as f64 / 1000.0;
                let name = format!("{workload:?}").to_lowercase();
                println!(
                    "{name:<8} {clients:>7} {ops_per_sec:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {:?}",
                    ms(0.5),
                    ms(0.99),
                    ms(0.999),
                    r.latency.max() as f64 / 1000.0,
                    r.errors
                );
                let json = serde_json::json!({
                    "workload": name, "clients": clients, "ops": r.ops,
                    "seconds": r.elapsed.as_secs_f64(), "ops_per_sec": ops_per_sec,
                    "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
                    "errors": r.errors,
                });
                println!("{json}");
            }
        }
        ExitCode::SUCCESS
    })
}
