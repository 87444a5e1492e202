//! `--failover-kills FILE`: a write load for a leader-kill scenario driven from outside
//! (`scripts/compare-failover.sh` kills the members and appends `<unix ns> <member>` to FILE for
//! each kill). Client `i` puts through endpoint `i mod n`; after an error it counts the failure
//! and moves to the next endpoint, as `dolmen bench --scenario failover` does. The load runs
//! until FILE.done exists (or `--duration`), then each kill's failover is computed from the
//! timeline: the first put started after the kill and acknowledged, and the puts that failed
//! in between. Printed by `dolmen_bench_report::failover`, as Dolmen's figures are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dolmen_bench_report::failover::{Failover, FailoverRun};

use crate::{code, connect, key, Args, BenchError, Rng};

/// Pause after a failed put before the next one.
const BACKOFF: Duration = Duration::from_millis(20);

/// One put: wall-clock start and end (ns since the Unix epoch), and its error code if it failed.
struct Put {
    start: u128,
    end: u128,
    error: Option<String>,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Runs the load, then prints the failovers of the kills listed in `kills`.
pub async fn run(args: &Args, endpoints: &[String], kills: &Path) -> Result<(), BenchError> {
    let clients = args.clients.first().copied().unwrap_or(8);
    let done = PathBuf::from(format!("{}.done", kills.display()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let (endpoints, stop) = (endpoints.to_vec(), stop.clone());
        let (keys, value) = (args.keys, vec![b'x'; args.value_size]);
        tasks.push(tokio::spawn(async move {
            let mut node = c % endpoints.len();
            let mut rng = Rng::new(c as u64 + 1);
            let mut client = connect(&endpoints[node]).await.ok();
            let mut puts = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = now_ns();
                let result = match client.as_mut() {
                    Some(cl) => cl
                        .put(key(rng.below(keys)), value.clone(), None)
                        .await
                        .map(|_| ())
                        .map_err(|e| code(&e)),
                    None => Err("TRANSPORT".to_owned()),
                };
                let failed = result.is_err();
                puts.push(Put {
                    start,
                    end: now_ns(),
                    error: result.err(),
                });
                if failed {
                    node = (node + 1) % endpoints.len();
                    tokio::time::sleep(BACKOFF).await;
                    client = connect(&endpoints[node]).await.ok();
                }
            }
            puts
        }));
    }
    let limit = Duration::from_secs(args.duration);
    while !done.exists() && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut puts = Vec::new();
    for t in tasks {
        puts.extend(t.await.unwrap_or_default());
    }
    let kill_times = read_kills(kills)?;
    let run = FailoverRun {
        system: "etcd",
        clients,
        election_timeout_ms: args.election_timeout_ms,
        failovers: kill_times.iter().filter_map(|&k| failover(&puts, k)).collect(),
        ops: puts.iter().filter(|p| p.error.is_none()).count() as u64,
        failed_by_code: puts
            .iter()
            .filter_map(|p| p.error.clone())
            .fold(BTreeMap::new(), |mut m, c| {
                *m.entry(c).or_insert(0) += 1;
                m
            }),
        elapsed: started.elapsed(),
    };
    if run.failovers.len() < kill_times.len() {
        eprintln!(
            "etcd-bench: {} of {} kills had no acknowledged put after them",
            kill_times.len() - run.failovers.len(),
            kill_times.len()
        );
    }
    run.print();
    Ok(())
}

/// The kill's failover, if some put started after it was acknowledged.
fn failover(puts: &[Put], kill: u128) -> Option<Failover> {
    let recovered = puts
        .iter()
        .filter(|p| p.error.is_none() && p.start >= kill)
        .map(|p| p.end)
        .min()?;
    let failed = puts
        .iter()
        .filter(|p| p.error.is_some() && p.end >= kill && p.end <= recovered)
        .count() as u64;
    let took = u64::try_from(recovered - kill).unwrap_or(u64::MAX);
    Some(Failover {
        took: Duration::from_nanos(took),
        failed,
    })
}

/// The kills' instants: the first field of each line, ns since the Unix epoch.
fn read_kills(path: &Path) -> Result<Vec<u128>, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Kills {
        path: path.display().to_string(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(start: u128, end: u128, ok: bool) -> Put {
        Put {
            start,
            end,
            error: (!ok).then(|| "Unavailable".to_owned()),
        }
    }

    #[test]
    fn a_failover_ends_at_the_first_put_started_after_the_kill_and_acknowledged() {
        let puts = [
            put(90, 95, true),
            // In flight at the kill, acknowledged after it: does not count.
            put(99, 120, true),
            put(101, 150, false),
            put(151, 400, false),
            put(160, 1300, true),
            put(401, 1200, true),
        ];
        let f = failover(&puts, 100).expect("recovered");
        assert_eq!(f.took, Duration::from_nanos(1100));
        assert_eq!(f.failed, 2);
        assert!(failover(&puts, 2000).is_none());
    }
}
