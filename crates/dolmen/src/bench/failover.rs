//! `dolmen bench --scenario failover|rolling-restart`: availability under a steady write load,
//! on a 3-node cluster this command starts itself (the one local-cluster harness,
//! `dolmen_testkit`, with this binary, ephemeral loopback ports and a temporary directory).
//!
//! ```text
//!  start 3 nodes ─▶ C clients: setKey in a closed loop, client i through node i mod 3
//!  failover:        N × { leader = majority's view ─▶ SIGKILL it at t0
//!                         ─▶ failover = first write started after t0 and acknowledged − t0
//!                         ─▶ failed requests in [t0, t0 + failover] ─▶ restart it, ready }
//!  rolling-restart: each node, followers first: SIGTERM ─▶ exit ─▶ restart ─▶ ready
//!                   (clients retry a failed write on the next node for up to 10 s)
//! ```
//! In `failover`, clients do not retry: every error is counted, and a client whose node is
//! gone moves to the next node. Figures only, never assertions (docs/PERFORMANCE.md).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dolmen_bench_report::failover::{Failover, FailoverRun};
use dolmen_client::{Client, Error};
use dolmen_testkit::render::{self, replicated_node};
use dolmen_testkit::{LocalCluster, NodeAddrs, NodeFiles, NodeSpec};
use parking_lot::Mutex;

/// Which fault the scenario injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// SIGKILL the leader `--kills` times; measure the time to the next acknowledged write.
    Failover,
    /// SIGTERM and restart every node once, followers first; count failed requests.
    RollingRestart,
}

/// The scenario's settings, from `dolmen bench` flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The fault.
    pub scenario: Scenario,
    /// Leader kills (`failover`).
    pub kills: u32,
    /// Writing clients.
    pub clients: usize,
    /// The nodes' `[consensus] election_timeout_ms`.
    pub election_timeout_ms: u64,
    /// Value size in bytes.
    pub value_size: usize,
    /// Distinct keys.
    pub keys: u64,
    /// The server binary (`None`: this one).
    pub server_bin: Option<std::path::PathBuf>,
}

const READY: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(40);
/// How long a write may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A retrying client gives up on a write after this long (`rolling-restart`).
const RETRY_BUDGET: Duration = Duration::from_secs(10);
/// Pause after a failed attempt before the next one.
const BACKOFF: Duration = Duration::from_millis(20);

/// Runs the scenario and prints its table and JSON line.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let exe = match &settings.server_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe().context("cannot find the dolmen executable")?,
    };
    let dir = std::env::temp_dir().join(format!("dolmen-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = with_cluster(settings, &exe, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn with_cluster(settings: &Settings, exe: &Path, dir: &Path) -> anyhow::Result<()> {
    let addrs = NodeAddrs::pick(3)?;
    let mut specs = Vec::with_capacity(addrs.len());
    for (i, a) in addrs.iter().enumerate() {
        let files = NodeFiles::flat(dir, i);
        let mut config = replicated_node(i, &addrs, &files.data);
        config.consensus.election_timeout_ms = settings.election_timeout_ms;
        config.consensus.heartbeat_interval_ms = (settings.election_timeout_ms / 5).max(1);
        render::write(&files.config, "", &config)?;
        specs.push(NodeSpec { files, addrs: *a });
    }
    let mut cluster = LocalCluster::new(exe, specs, "bench");
    cluster.start_many(&[0, 1, 2], READY)?;
    cluster.wait_all_ready(READY)?;
    cluster.wait_for_leader(READY)?;
    let thrift: Vec<SocketAddr> = addrs.iter().map(|a| a.thrift).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the load's runtime")?;
    let retry = settings.scenario == Scenario::RollingRestart;
    let load = Load::start(&runtime, &thrift, settings, retry);
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let outcome = match settings.scenario {
        Scenario::Failover => kill_leaders(&mut cluster, &load, settings).map(Outcome::Failover),
        Scenario::RollingRestart => {
            roll(&mut cluster, settings.election_timeout_ms).map(|()| Outcome::Rolling)
        }
    };
    std::thread::sleep(Duration::from_secs(1));
    load.stop.store(true, Ordering::Relaxed);
    runtime.shutdown_timeout(REQUEST_TIMEOUT);
    cluster.stop_all(STOP);
    let outcome = outcome?;
    outcome.print(settings, &load, started.elapsed());
    Ok(())
}

fn kill_leaders(
    cluster: &mut LocalCluster,
    load: &Load,
    settings: &Settings,
) -> anyhow::Result<Vec<Failover>> {
    let mut failovers = Vec::new();
    for k in 0..settings.kills {
        // Steady state first: every node ready and writes flowing; then the leader a majority
        // names is the victim.
        cluster.wait_all_ready(READY)?;
        std::thread::sleep(Duration::from_millis(500));
        let victim = cluster.wait_for_leader(READY)?;
        let errors_before = load.errors.lock().len();
        let t0 = Instant::now();
        *load.armed.lock() = Some(Armed {
            kill: t0,
            recovered: None,
        });
        cluster.kill9(victim)?;
        let recovered = load.wait_recovered(Duration::from_secs(30))?;
        let failed = load.errors.lock()[errors_before..]
            .iter()
            .filter(|e| e.at <= recovered)
            .count();
        let took = recovered - t0;
        eprintln!(
            "kill {}/{}: node {victim} (leader) killed; next write acknowledged after {:.0} ms, \
             {failed} failed requests",
            k + 1,
            settings.kills,
            took.as_secs_f64() * 1000.0
        );
        failovers.push(Failover {
            took,
            failed: failed as u64,
        });
        cluster.spawn(victim)?;
        cluster.wait_ready(victim, READY)?;
    }
    Ok(failovers)
}

/// SIGTERM and restart each node in turn, followers first, the leader last.
fn roll(cluster: &mut LocalCluster, election_timeout_ms: u64) -> anyhow::Result<()> {
    let first_leader = cluster.wait_for_leader(READY)?;
    let order: Vec<usize> = (0..3)
        .filter(|&i| i != first_leader)
        .chain([first_leader])
        .collect();
    for i in order {
        cluster.wait_all_ready(READY)?;
        let t0 = Instant::now();
        let stopped = cluster.stop(i, STOP)?;
        eprintln!(
            "node {i}: stopped after {:.0} ms ({stopped:?}); restarting",
            t0.elapsed().as_secs_f64() * 1000.0
        );
        cluster.spawn(i)?;
        cluster.wait_ready(i, READY)?;
        // Let it catch up and the load settle before the next node goes.
        std::thread::sleep(Duration::from_millis(2 * election_timeout_ms));
    }
    Ok(())
}

enum Outcome {
    Failover(Vec<Failover>),
    Rolling,
}

impl Outcome {
    fn print(&self, settings: &Settings, load: &Load, elapsed: Duration) {
        let ops = load.ops.load(Ordering::Relaxed);
        let errors = load.errors.lock();
        let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
        for e in errors.iter() {
            *by_code.entry(e.code.clone()).or_default() += 1;
        }
        match self {
            Outcome::Failover(failovers) => FailoverRun {
                system: "dolmen",
                clients: settings.clients,
                election_timeout_ms: settings.election_timeout_ms,
                failovers: failovers.clone(),
                ops,
                failed_by_code: by_code,
                elapsed,
            }
            .print(),
            Outcome::Rolling => {
                let retried = load.retried.load(Ordering::Relaxed);
                println!(
                    "rolling restart of 3 nodes ({} retrying clients, election_timeout_ms = {}):\n  \
                     failed requests: {}  (retried attempts: {retried})\n  \
                     writes acknowledged: {ops} in {:.0} s; failed by code: {by_code:?}",
                    settings.clients,
                    settings.election_timeout_ms,
                    errors.len(),
                    elapsed.as_secs_f64(),
                );
                let json = serde_json::json!({
                    "scenario": "rolling-restart",
                    "clients": settings.clients,
                    "election_timeout_ms": settings.election_timeout_ms,
                    "failed": errors.len(),
                    "retried": retried,
                    "ops": ops,
                    "failed_by_code": by_code,
                });
                println!("{json}");
            }
        }
    }
}

/// The kill being measured, if any: when it happened, and when the first write started after
/// it was acknowledged.
type ArmedKill = Arc<Mutex<Option<Armed>>>;

struct Armed {
    kill: Instant,
    recovered: Option<Instant>,
}

/// A request that failed for good (after retries, when the clients retry).
struct Failed {
    at: Instant,
    code: String,
}

/// The clients and what they saw.
struct Load {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    retried: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<Failed>>>,
    /// Set at a kill.
    armed: ArmedKill,
}

impl Load {
    fn start(
        runtime: &tokio::runtime::Runtime,
        nodes: &[SocketAddr],
        settings: &Settings,
        retry: bool,
    ) -> Self {
        let load = Load {
            stop: Arc::default(),
            ops: Arc::default(),
            retried: Arc::default(),
            errors: Arc::default(),
            armed: Arc::default(),
        };
        // The Thrift clients' timers need the runtime's context.
        let _context = runtime.enter();
        let clients: Arc<Vec<Client>> = Arc::new(
            nodes
                .iter()
                .map(|a| Client::new(*a, REQUEST_TIMEOUT))
                .collect(),
        );
        for c in 0..settings.clients {
            let ctx = ClientLoop {
                clients: clients.clone(),
                node: c % nodes.len(),
                stop: load.stop.clone(),
                ops: load.ops.clone(),
                retried: load.retried.clone(),
                errors: load.errors.clone(),
                armed: load.armed.clone(),
                value: vec![b'v'; settings.value_size],
                keys: settings.keys.max(1),
                seed: c as u64,
                retry,
            };
            runtime.spawn(ctx.run());
        }
        load
    }

    /// Waits until the first write started after the armed kill is acknowledged.
    fn wait_recovered(&self, limit: Duration) -> anyhow::Result<Instant> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(recovered) = self.armed.lock().as_ref().and_then(|a| a.recovered) {
                return Ok(recovered);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("no write was acknowledged within {limit:?} of the leader's kill")
    }
}

/// One client's loop.
struct ClientLoop {
    clients: Arc<Vec<Client>>,
    node: usize,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    retried: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<Failed>>>,
    armed: ArmedKill,
    value: Vec<u8>,
    keys: u64,
    seed: u64,
    retry: bool,
}

impl ClientLoop {
    async fn run(mut self) {
        let mut n = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let key = format!(
                "failover-{:08}",
                (self.seed * 7919 + n * 104_729) % self.keys
            );
            let begun = Instant::now();
            let mut result = self.attempt(key.as_bytes()).await;
            while result.is_err()
                && self.retry
                && begun.elapsed() < RETRY_BUDGET
                && !self.stop.load(Ordering::Relaxed)
            {
                self.retried.fetch_add(1, Ordering::Relaxed);
                result = self.attempt(key.as_bytes()).await;
            }
            match result {
                Ok(()) => {
                    self.ops.fetch_add(1, Ordering::Relaxed);
                    let mut armed = self.armed.lock();
                    if let Some(a) = armed.as_mut() {
                        if a.recovered.is_none() && begun >= a.kill {
                            a.recovered = Some(Instant::now());
                        }
                    }
                }
                Err(e) => self.errors.lock().push(Failed {
                    at: Instant::now(),
                    code: code_of(&e),
                }),
            }
        }
    }

    /// One setKey; after a failure the client moves to the next node and pauses briefly.
    async fn attempt(&mut self, key: &[u8]) -> Result<(), Error> {
        let result = self.clients[self.node]
            .set("default", key, &self.value)
            .await;
        if result.is_err() {
            self.node = (self.node + 1) % self.clients.len();
            tokio::time::sleep(BACKOFF).await;
        }
        result
    }
}

/// The error's WIRE code, or `TRANSPORT` when the request did not complete.
fn code_of(e: &Error) -> String {
    match e {
        Error::Transport { .. } => "TRANSPORT".to_owned(),
        Error::Server { code, .. } => code.clone().unwrap_or_else(|| "UNKNOWN".to_owned()),
        other => format!("{other}").chars().take(40).collect(),
    }
}
