//! One run's results and how they are printed: a table row each (one table for all runs of a
//! command) and one JSON line each (ops/s, errors by code, conflicts, p50/p99/p99.9 in ms, and
//! the CPU the run used when it was measured).
//! Shared by `dolmen bench` and `tools/etcd-bench` (which depends on this crate by path), so
//! both tools count and print alike.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

pub mod failover;

/// An empty latency histogram (µs, 1 µs to 60 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| unreachable!("static histogram bounds are valid"))
}

/// How one operation ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded (for `txn`: committed).
    Ok,
    /// A `txn` commit was rejected as a conflict (expected under contention; not an error).
    Conflict,
    /// It failed: the error code.
    Error(String),
}

/// What one client counted during a run.
pub struct Tally {
    ops: u64,
    conflicts: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram<u64>,
}

impl Tally {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Self {
            ops: 0,
            conflicts: 0,
            errors: BTreeMap::new(),
            latency: histogram(),
        }
    }

    /// Counts one operation that took `elapsed` (latency of successes only).
    pub fn record(&mut self, outcome: Outcome, elapsed: Duration) {
        match outcome {
            Outcome::Ok => {
                self.ops += 1;
                let _ = self.latency.record(elapsed.as_micros().max(1) as u64);
            }
            Outcome::Conflict => self.conflicts += 1,
            Outcome::Error(code) => *self.errors.entry(code).or_default() += 1,
        }
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

/// CPU used during one run (measured by `dolmen bench`'s `cpu` module).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    /// Share of the machine's CPU time that was busy, 0 to 1.
    pub busy: f64,
    /// The load generator's CPU seconds.
    pub bench_s: f64,
    /// The server processes' CPU seconds (when their process ids were given).
    pub servers_s: Option<f64>,
}

/// The results of one run (one workload at one client count).
pub struct Report {
    /// The workload's name.
    pub workload: &'static str,
    /// Concurrent clients.
    pub clients: usize,
    /// How requests were routed (`--read-strategy`).
    pub read_strategy: &'static str,
    /// Successful operations (for `txn`: commits).
    pub ops: u64,
    /// `txn` commits rejected with `CONFLICT`; not in `ops`, not in `errors`.
    pub conflicts: u64,
    /// Failed operations by error code.
    pub errors: BTreeMap<String, u64>,
    /// Latency of successful operations, µs.
    pub latency: Histogram<u64>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The CPU the run used, when measured.
    pub cpu: Option<CpuUse>,
}

impl Report {
    /// An empty report; add the clients' tallies with [`Report::absorb`].
    pub fn new(workload: &'static str, clients: usize, read_strategy: &'static str) -> Self {
        Self {
            workload,
            clients,
            read_strategy,
            ops: 0,
            conflicts: 0,
            errors: BTreeMap::new(),
            latency: histogram(),
            elapsed: Duration::ZERO,
            cpu: None,
        }
    }

    /// Adds one client's tally.
    pub fn absorb(&mut self, tally: Tally) {
        self.ops += tally.ops;
        self.conflicts += tally.conflicts;
        for (code, n) in tally.errors {
            *self.errors.entry(code).or_default() += n;
        }
        let _ = self.latency.add(&tally.latency);
    }

    /// Adds the tally of every client task (e.g. a `tokio::task::JoinHandle<Tally>`), in order;
    /// a task that failed (panicked) adds nothing.
    pub async fn absorb_all<E>(
        &mut self,
        clients: impl IntoIterator<Item = impl std::future::Future<Output = Result<Tally, E>>>,
    ) {
        for client in clients {
            if let Ok(tally) = client.await {
                self.absorb(tally);
            }
        }
    }

    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Operations attempted: successes, conflicts and errors (each cost CPU).
    fn attempts(&self) -> u64 {
        self.ops + self.conflicts + self.errors.values().sum::<u64>()
    }

    /// `(busy share, load generator µs per attempt, servers µs per attempt)`, when measured.
    fn cpu_per_op(&self) -> Option<(f64, f64, Option<f64>)> {
        let per_op = |seconds: f64| seconds * 1e6 / self.attempts().max(1) as f64;
        self.cpu
            .map(|c| (c.busy, per_op(c.bench_s), c.servers_s.map(per_op)))
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The run as one JSON object.
    /// CPU fields (`cpu_busy`, `bench_cpu_us_per_op`, `server_cpu_us_per_op`) appear only when
    /// measured.
    pub fn json(&self) -> serde_json::Value {
        let mut j = serde_json::json!({
            "workload": self.workload, "clients": self.clients,
            "read_strategy": self.read_strategy, "ops": self.ops,
            "conflicts": self.conflicts, "seconds": self.elapsed.as_secs_f64(),
            "ops_per_sec": self.ops_per_sec(), "p50_ms": self.ms(0.5), "p99_ms": self.ms(0.99),
            "p999_ms": self.ms(0.999), "errors": self.errors,
        });
        if let Some((busy, bench, servers)) = self.cpu_per_op() {
            j["cpu_busy"] = busy.into();
            j["bench_cpu_us_per_op"] = bench.into();
            if let Some(servers) = servers {
                j["server_cpu_us_per_op"] = servers.into();
            }
        }
        j
    }
}

/// Prints one table of all `reports`, then one JSON line per report.
pub fn print(reports: &[Report]) {
    println!(
        "{:<8} {:>7} {:<11} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5} {:>9}  errors",
        "workload",
        "clients",
        "routing",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "conflicts",
        "busy",
        "µs/op"
    );
    for r in reports {
        let errors = if r.errors.is_empty() {
            "-".to_owned()
        } else {
            r.errors
                .iter()
                .map(|(code, n)| format!("{n} {code}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // busy: the machine's CPU; µs/op: load generator's CPU per operation, "+ servers'".
        let (busy, per_op) = match r.cpu_per_op() {
            None => ("-".to_owned(), "-".to_owned()),
            Some((busy, bench, servers)) => (
                format!("{:.0}%", busy * 100.0),
                match servers {
                    Some(servers) => format!("{bench:.0}+{servers:.0}"),
                    None => format!("{bench:.0}"),
                },
            ),
        };
        println!(
            "{:<8} {:>7} {:<11} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9} {busy:>5} {per_op:>9}  {errors}",
            r.workload,
            r.clients,
            r.read_strategy,
            r.ops_per_sec(),
            r.ms(0.5),
            r.ms(0.99),
            r.ms(0.999),
            r.latency.max() as f64 / 1000.0,
            r.conflicts,
        );
    }
    for r in reports {
        println!("{}", r.json());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_the_documented_fields() {
        let mut latency = histogram();
        latency.record(1500).unwrap_or_default();
        let r = Report {
            workload: "txn",
            clients: 2,
            read_strategy: "leader",
            ops: 10,
            conflicts: 3,
            errors: BTreeMap::from([("TIMEOUT".to_owned(), 1)]),
            latency,
            elapsed: Duration::from_secs(2),
            cpu: None,
        };
        let j = r.json();
        assert_eq!(j["ops_per_sec"], 5.0);
        assert_eq!(j["conflicts"], 3);
        assert_eq!(j["read_strategy"], "leader");
        assert_eq!(j["errors"]["TIMEOUT"], 1);
        assert!((j["p50_ms"].as_f64().unwrap_or_default() - 1.5).abs() < 0.01);
        assert!(j.get("cpu_busy").is_none() && j.get("bench_cpu_us_per_op").is_none());
    }

    #[test]
    fn cpu_is_per_attempted_operation() {
        let mut r = Report::new("txn", 2, "leader");
        r.ops = 70;
        r.conflicts = 20;
        r.errors.insert("TIMEOUT".to_owned(), 10);
        r.cpu = Some(CpuUse {
            busy: 0.5,
            bench_s: 0.001,
            servers_s: None,
        });
        let j = r.json();
        assert_eq!(j["cpu_busy"], 0.5);
        // 1 ms over 100 attempts.
        assert!((j["bench_cpu_us_per_op"].as_f64().unwrap_or_default() - 10.0).abs() < 1e-9);
        assert!(j.get("server_cpu_us_per_op").is_none());
        r.cpu = Some(CpuUse {
            busy: 0.5,
            bench_s: 0.001,
            servers_s: Some(0.003),
        });
        let servers = r.json()["server_cpu_us_per_op"]
            .as_f64()
            .unwrap_or_default();
        assert!((servers - 30.0).abs() < 1e-9);
    }
}
