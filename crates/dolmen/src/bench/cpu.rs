//! Where a run's CPU went, read from Linux's `/proc` before and after it: how busy the whole
//! machine was (all CPUs), the load generator's own CPU, and the server processes' CPU when
//! `--server-pids` names them (nodes on this machine). A run at `busy` ≈ 100% is CPU-bound:
//! its ops/s is capped by CPU per operation, not by latency.
//!
//! ```text
//! /proc/stat (machine), /proc/self/stat (bench), /proc/<pid>/stat (servers)
//!   ─▶ Sample before ─▶ run ─▶ Sample after ─▶ CpuUse { busy, bench_s, servers_s }
//! ```

use std::fs;

use dolmen_bench_report::CpuUse;

/// CPU counters at one instant, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// All CPUs: ticks not idle and not waiting for I/O.
    busy: u64,
    /// All CPUs: every tick.
    total: u64,
    /// This process: user + system.
    bench: u64,
    /// The `--server-pids` processes: user + system (`None` without them).
    servers: Option<u64>,
}

/// Clock ticks per second of `/proc`'s CPU counters.
fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as f64,
        // USER_HZ, the value the kernel's /proc ABI has used on every Linux platform.
        _ => 100.0,
    }
}

/// `(busy, total)` from the aggregate `cpu` line of `/proc/stat`'s text.
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already
    // counted in user and nice, so only the first eight make the total.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// User + system ticks from a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces or parentheses, so fields are counted after the last `)`.
fn process_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state (3) ... utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Why the CPU counters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// A `/proc` file could not be read (not Linux, or the process exited).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What reading it returned.
        #[source]
        source: std::io::Error,
    },
    /// A `/proc/<pid>/stat` file does not have the fields this module reads.
    #[error("{path}: unexpected format")]
    Format {
        /// The file.
        path: String,
    },
    /// `/proc/stat` has no aggregate `cpu` line.
    #[error("/proc/stat: no aggregate `cpu` line")]
    NoCpuLine,
    /// One of the `--server-pids` could not be read (e.g. no such process).
    #[error("--server-pids {pid}: {source}")]
    Server {
        /// The process id as given.
        pid: u32,
        /// Why its counters could not be read.
        #[source]
        source: Box<CpuError>,
    },
}

fn read_process(pid: &str) -> Result<u64, CpuError> {
    let path = format!("/proc/{pid}/stat");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(CpuError::Read { path, source }),
    };
    process_ticks(&text).ok_or(CpuError::Format { path })
}

impl Sample {
    /// The counters now; `servers` are the `--server-pids`.
    ///
    /// # Errors
    /// Which `/proc` file could not be read or parsed (a server that exited, or not Linux).
    pub fn take(servers: &[u32]) -> Result<Self, CpuError> {
        let stat = fs::read_to_string("/proc/stat").map_err(|source| CpuError::Read {
            path: "/proc/stat".to_owned(),
            source,
        })?;
        let (busy, total) = machine_ticks(&stat).ok_or(CpuError::NoCpuLine)?;
        let bench = read_process("self")?;
        let servers = if servers.is_empty() {
            None
        } else {
            let mut sum = 0;
            for pid in servers {
                sum += read_process(&pid.to_string()).map_err(|e| CpuError::Server {
                    pid: *pid,
                    source: Box::new(e),
                })?;
            }
            Some(sum)
        };
        Ok(Self {
            busy,
            total,
            bench,
            servers,
        })
    }

    /// What was used between `self` (before) and `after`.
    pub fn until(&self, after: &Sample) -> CpuUse {
        let hz = ticks_per_second();
        let total = after.total.saturating_sub(self.total);
        CpuUse {
            busy: after.busy.saturating_sub(self.busy) as f64 / total.max(1) as f64,
            bench_s: after.bench.saturating_sub(self.bench) as f64 / hz,
            servers_s: self
                .servers
                .zip(after.servers)
                .map(|(before, after)| after.saturating_sub(before) as f64 / hz),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ticks_leave_out_idle_iowait_and_guest() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 40 0\ncpu0 50 2 25 500 10 1 1 0 20 0\n";
        // total = 100+5+50+1000+20+3+2+0; idle = 1000 + 20.
        assert_eq!(machine_ticks(stat), Some((160, 1180)));
        assert_eq!(machine_ticks("cpu0 1 2 3 4\n"), None);
        assert_eq!(machine_ticks("cpu  1 x 3 4\n"), None);
    }

    #[test]
    fn process_ticks_count_fields_after_the_name() {
        // A name with a space and a parenthesis: fields must be counted after the last `)`.
        let stat = "4242 (a b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    700 300 0 0 20 0 9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(process_ticks(stat), Some(1000));
        assert_eq!(process_ticks("4242 (x) S 1"), None);
        assert_eq!(process_ticks("no parenthesis"), None);
    }

    #[test]
    fn until_takes_differences_and_divides_per_operation() {
        let before = Sample {
            busy: 100,
            total: 400,
            bench: 10,
            servers: Some(50),
        };
        let after = Sample {
            busy: 280,
            total: 600,
            bench: 30,
            servers: Some(150),
        };
        let used = before.until(&after);
        assert!((used.busy - 0.9).abs() < 1e-9);
        let hz = ticks_per_second();
        assert!((used.bench_s - 20.0 / hz).abs() < 1e-9);
        assert!((used.servers_s.unwrap_or_default() - 100.0 / hz).abs() < 1e-9);
        let alone = Sample {
            servers: None,
            ..before
        };
        assert_eq!(alone.until(&after).servers_s, None);
    }

    #[test]
    fn this_process_and_the_machine_can_be_sampled() {
        let own = std::process::id();
        let before = Sample::take(&[own]).unwrap_or_else(|e| panic!("{e}"));
        assert!(before.total > 0 && before.busy <= before.total);
        assert!(before.servers.is_some());
        let err = Sample::take(&[u32::MAX]);
        assert!(
            matches!(err, Err(CpuError::Server { pid: u32::MAX, .. })),
            "{err:?}"
        );
        let message = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains(&format!("--server-pids {}", u32::MAX)),
            "{message}"
        );
    }
}
