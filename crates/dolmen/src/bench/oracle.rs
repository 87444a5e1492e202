//! `dolmen bench --probe oracle`: the oracle's rate to one gateway (docs/sharding.md §3.3,
//! §16.2: ≥ 100,000 versions per second). This process acts as one gateway: one
//! [`OracleClient`] (one `Timestamps` stream) to group 0's leader over the peer transport, with
//! the node's peer TLS when `--config` names it, and `--callers` tasks each asking one commit
//! version at a time until `--duration` ends.
//!
//! ```text
//! --peer-endpoints ─▶ the one that grants (group 0's leader) ─▶ N callers × versions(1)
//!   ─▶ OracleClient: batches (≤ 2 in flight) ══▶ leader ─▶ versions/s, batch sizes, latency
//!   ─▶ check: each caller's versions increase; no version handed out twice
//! ```

use std::time::{Duration, Instant};

use dolmen_bench_report as report;
use dolmen_raft::network::{NetworkOptions, OracleClient, OracleStats, PeerClient, PeerTls};
use dolmen_raft::NodeId;
use hdrhistogram::Histogram;

/// Bound on one call for versions.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on finding the oracle among the endpoints.
const FIND_TIMEOUT: Duration = Duration::from_secs(2);

/// What the oracle probe runs against.
pub struct Settings {
    /// Peer addresses of the cluster's nodes; the one that grants versions is the oracle.
    pub peers: Vec<String>,
    /// Concurrent callers.
    pub callers: usize,
    /// How long they ask.
    pub duration: Duration,
    /// The node's peer TLS, when its configuration has it.
    pub tls: Option<PeerTls>,
}

/// Why the oracle probe failed.
#[derive(Debug, thiserror::Error)]
pub enum OracleProbeError {
    /// No endpoint granted a version.
    #[error("--peer-endpoints: no node granted a version (is the cluster running, and is this its peer port?): {}", tried.join("; "))]
    NoOracle {
        /// Each endpoint with its answer.
        tried: Vec<String>,
    },
    /// A version was handed out twice (a bug in the oracle or the batching).
    #[error("version {version} was handed out {times} times")]
    Duplicate {
        /// The version.
        version: u64,
        /// How many times.
        times: usize,
    },
    /// A caller got a version not above its previous one.
    #[error("caller {caller} got version {next} after {previous}")]
    NotIncreasing {
        /// The caller.
        caller: usize,
        /// Its previous version.
        previous: u64,
        /// The one that followed.
        next: u64,
    },
}

/// What one run measured.
pub struct OracleRun {
    /// The oracle's node id and peer address.
    pub leader: (NodeId, String),
    /// Concurrent callers.
    pub callers: usize,
    /// How long they asked.
    pub elapsed: Duration,
    /// Versions handed to callers.
    pub versions: u64,
    /// Calls that failed, and the first failure's text.
    pub errors: u64,
    pub first_error: Option<String>,
    /// The client's batches (its counts include the finding call).
    pub stats: OracleStats,
    /// One call's latency, µs.
    pub latency: Histogram<u64>,
    /// Whether the peers spoke TLS.
    pub tls: bool,
}

impl OracleRun {
    /// Versions per second.
    pub fn rate(&self) -> f64 {
        self.versions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Callers served per request on the stream (the batch size).
    pub fn batch_size(&self) -> f64 {
        self.stats.callers as f64 / (self.stats.batches.max(1)) as f64
    }

    /// The run as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        serde_json::json!({
            "probe": "oracle", "leader_id": self.leader.0, "leader_peer_addr": self.leader.1,
            "tls": self.tls, "callers": self.callers, "seconds": self.elapsed.as_secs_f64(),
            "versions": self.versions, "versions_per_s": self.rate(),
            "batches": self.stats.batches, "callers_per_batch": self.batch_size(),
            "streams": self.stats.streams, "errors": self.errors,
            "first_error": self.first_error,
            "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": self.latency.max() as f64 / 1000.0,
        })
    }

    /// Prints a summary and the JSON line.
    pub fn print(&self) {
        println!(
            "oracle: node {} at {} ({}), {} callers, {:.1} s",
            self.leader.0,
            self.leader.1,
            if self.tls { "mutual TLS" } else { "plaintext" },
            self.callers,
            self.elapsed.as_secs_f64()
        );
        println!(
            "{:>12} {:>14} {:>10} {:>14} {:>9} {:>9} {:>7}",
            "versions", "versions/s", "batches", "callers/batch", "p50 ms", "p99 ms", "errors"
        );
        println!(
            "{:>12} {:>14.0} {:>10} {:>14.1} {:>9.3} {:>9.3} {:>7}",
            self.versions,
            self.rate(),
            self.stats.batches,
            self.batch_size(),
            self.latency.value_at_quantile(0.5) as f64 / 1000.0,
            self.latency.value_at_quantile(0.99) as f64 / 1000.0,
            self.errors
        );
        if let Some(e) = &self.first_error {
            println!("first error: {e}");
        }
        println!("every version unique, each caller's increasing");
        println!("{}", self.json());
    }
}

/// Finds the oracle among `settings.peers`, runs the callers and checks their versions.
///
/// # Errors
/// No oracle found, or a version handed out twice or out of order.
pub async fn run(settings: &Settings) -> Result<OracleRun, OracleProbeError> {
    let options = NetworkOptions {
        tls: settings.tls.clone(),
        ..NetworkOptions::default()
    };
    // This process is not a member: its id only appears in the fault hook, unused here.
    let client = PeerClient::new(u64::MAX, options);
    let oracle = client.oracle().clone();
    let leader = find(&client, &settings.peers).await?;

    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + settings.duration);
    let tasks: Vec<_> = (0..settings.callers)
        .map(|caller| {
            let (oracle, leader) = (oracle.clone(), leader.clone());
            tokio::spawn(async move { ask(caller, &oracle, &leader, deadline).await })
        })
        .collect();
    let mut all = Vec::new();
    let mut latency = report::histogram();
    let (mut errors, mut first_error) = (0, None);
    for task in tasks {
        let Ok(done) = task.await else { continue };
        let done = done?;
        all.extend(done.versions);
        let _ = latency.add(&done.latency);
        errors += done.errors;
        first_error = first_error.or(done.first_error);
    }
    let elapsed = start.elapsed();
    let versions = all.len() as u64;
    check_unique(all)?;
    Ok(OracleRun {
        leader,
        callers: settings.callers,
        elapsed,
        versions,
        errors,
        first_error,
        stats: oracle.stats(),
        latency,
        tls: settings.tls.is_some(),
    })
}

/// The endpoint that grants a read version (group 0's leader), with its node id.
async fn find(client: &PeerClient, peers: &[String]) -> Result<(NodeId, String), OracleProbeError> {
    let mut tried = Vec::new();
    for addr in peers {
        let id = match client.probe(0, addr, FIND_TIMEOUT).await {
            Ok(info) => info.node_id,
            Err(e) => {
                tried.push(format!("{addr}: {e}"));
                continue;
            }
        };
        // A follower answers NOT_LEADER; only the leader grants.
        match client
            .oracle()
            .versions(id, addr, 0, true, FIND_TIMEOUT)
            .await
        {
            Ok(_) => return Ok((id, addr.clone())),
            Err(e) => tried.push(format!("{addr}: {e}")),
        }
    }
    Err(OracleProbeError::NoOracle { tried })
}

struct Done {
    versions: Vec<u64>,
    latency: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// One caller: one commit version at a time until `deadline`, each above its previous.
async fn ask(
    caller: usize,
    oracle: &OracleClient,
    (id, addr): &(NodeId, String),
    deadline: tokio::time::Instant,
) -> Result<Done, OracleProbeError> {
    let mut done = Done {
        versions: Vec::new(),
        latency: report::histogram(),
        errors: 0,
        first_error: None,
    };
    loop {
        let t = Instant::now();
        let call = oracle.versions(*id, addr, 1, false, CALL_TIMEOUT);
        // The deadline is a hard stop: a call still in flight is abandoned.
        let Ok(result) = tokio::time::timeout_at(deadline, call).await else {
            return Ok(done);
        };
        let _ = done
            .latency
            .record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        match result {
            Ok(grant) => {
                if let Some(&previous) = done.versions.last() {
                    if grant.first <= previous {
                        return Err(OracleProbeError::NotIncreasing {
                            caller,
                            previous,
                            next: grant.first,
                        });
                    }
                }
                done.versions.push(grant.first);
            }
            Err(e) => {
                done.errors += 1;
                done.first_error.get_or_insert_with(|| e.to_string());
                // Back off a little so a failing oracle is not hammered.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Every version once.
fn check_unique(mut all: Vec<u64>) -> Result<(), OracleProbeError> {
    all.sort_unstable();
    match all.windows(2).find(|w| w[0] == w[1]) {
        None => Ok(()),
        Some(w) => Err(OracleProbeError::Duplicate {
            version: w[0],
            times: all.iter().filter(|v| **v == w[0]).count(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_handed_out_twice_is_reported() {
        assert!(check_unique(vec![3, 1, 2]).is_ok());
        let err = check_unique(vec![5, 1, 5, 2, 5]).expect_err("duplicate");
        assert!(
            matches!(
                err,
                OracleProbeError::Duplicate {
                    version: 5,
                    times: 3
                }
            ),
            "{err}"
        );
    }
}
