//! A leader-kill scenario's results, counted and printed alike by `dolmen bench --scenario
//! failover` and `tools/etcd-bench --failover-kills`: per kill, the time from the kill to the
//! first write that was started after it and acknowledged, and the requests that failed in
//! between; then p50/p99/max over all kills, in ms and in election timeouts, and one JSON line.

use std::collections::BTreeMap;
use std::time::Duration;

/// One leader kill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failover {
    /// From the kill to the first write started after it and acknowledged.
    pub took: Duration,
    /// Requests that failed from the kill to that acknowledgement.
    pub failed: u64,
}

/// A whole scenario run.
#[derive(Clone, Debug)]
pub struct FailoverRun {
    /// `dolmen` or `etcd`.
    pub system: &'static str,
    /// Writing clients.
    pub clients: usize,
    /// The cluster's election timeout.
    pub election_timeout_ms: u64,
    /// One entry per kill.
    pub failovers: Vec<Failover>,
    /// Writes acknowledged over the whole run.
    pub ops: u64,
    /// Failed requests over the whole run, by error code.
    pub failed_by_code: BTreeMap<String, u64>,
    /// The run's length.
    pub elapsed: Duration,
}

impl FailoverRun {
    /// Failover time at quantile `q` (nearest rank), in ms.
    pub fn quantile_ms(&self, q: f64) -> u64 {
        let mut ms: Vec<u64> = self.failovers.iter().map(|f| millis(f.took)).collect();
        ms.sort_unstable();
        if ms.is_empty() {
            return 0;
        }
        let rank = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
        ms[rank - 1]
    }

    /// The summary lines, then the JSON line.
    pub fn print(&self) {
        let (p50, p99, max) = (
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(1.0),
        );
        let et = self.election_timeout_ms.max(1) as f64;
        let failed: Vec<u64> = self.failovers.iter().map(|f| f.failed).collect();
        let mean_failed = failed.iter().sum::<u64>() as f64 / failed.len().max(1) as f64;
        println!(
            "{} failover over {} leader kills ({} clients, election timeout {} ms):\n  \
             p50 {p50} ms ({:.2} election timeouts)  p99 {p99} ms ({:.2})  max {max} ms\n  \
             failed requests per failover: mean {mean_failed:.1}, max {}\n  \
             writes acknowledged: {} in {:.0} s; failed by code: {:?}",
            self.system,
            self.failovers.len(),
            self.clients,
            self.election_timeout_ms,
            p50 as f64 / et,
            p99 as f64 / et,
            failed.iter().max().copied().unwrap_or(0),
            self.ops,
            self.elapsed.as_secs_f64(),
            self.failed_by_code,
        );
        let json = serde_json::json!({
            "scenario": "failover",
            "system": self.system,
            "kills": self.failovers.len(),
            "clients": self.clients,
            "election_timeout_ms": self.election_timeout_ms,
            "failover_p50_ms": p50,
            "failover_p99_ms": p99,
            "failover_max_ms": max,
            "failover_ms": self.failovers.iter().map(|f| millis(f.took)).collect::<Vec<_>>(),
            "failed_per_failover": failed,
            "ops": self.ops,
            "failed_by_code": self.failed_by_code,
        });
        println!("{json}");
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_over_the_kills() {
        let run = FailoverRun {
            system: "dolmen",
            clients: 8,
            election_timeout_ms: 1000,
            failovers: [1100, 1200, 1000, 5000]
                .into_iter()
                .map(|ms| Failover {
                    took: Duration::from_millis(ms),
                    failed: 1,
                })
                .collect(),
            ops: 10,
            failed_by_code: BTreeMap::new(),
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(run.quantile_ms(0.5), 1100);
        assert_eq!(run.quantile_ms(0.99), 5000);
        assert_eq!(run.quantile_ms(1.0), 5000);
        assert_eq!(run.quantile_ms(0.25), 1000);
    }
}
