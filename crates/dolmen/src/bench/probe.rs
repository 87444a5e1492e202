//! `dolmen bench --probe`: this machine's latency floor for a replicated write, measured with
//! no Dolmen code in the path: one fsync (a 256-byte append + `fdatasync`) and a loopback TCP
//! round trip (64-byte ping-pong between two threads). floor = fsync p50 + 2 × RTT p50 (client
//! → leader → follower and back, with one fsync on the critical path when the leader's and the
//! follower's fsyncs overlap).
//!
//! It also measures one thread hand-off: waking a sleeping thread through a channel, as a
//! write's path does each time it passes work between tasks on different threads (Raft core,
//! log I/O, replication, apply). Not part of the floor: the floor counts what any replicated
//! write must pay, the hand-off prices what an implementation adds per thread it crosses.
//!
//! ```text
//! data dir ─▶ file: 1,000 × (append 256 B, sync_data) ─▶ histogram
//! 127.0.0.1:0 ─▶ echo thread ◀─ 10,000 × (write 64 B, read 64 B) ─▶ histogram ─▶ Floor
//! channel ─▶ echo thread ◀─ 10,000 × (send, receive; both sides asleep in between) ─▶ histogram
//! ```

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use dolmen_bench_report as report;

/// fsync samples.
pub const FSYNC_SAMPLES: usize = 1_000;
/// Bytes appended before each fsync (about one small log entry).
pub const FSYNC_BYTES: usize = 256;
/// Round-trip samples.
pub const RTT_SAMPLES: usize = 10_000;
/// Bytes sent each way per round trip.
pub const RTT_BYTES: usize = 64;
/// Hand-off samples (each a channel round trip: two hand-offs).
pub const HANDOFF_SAMPLES: usize = 10_000;
/// Pause between hand-off samples, so the echo thread is asleep when the next one starts.
const HANDOFF_PAUSE: Duration = Duration::from_micros(50);

/// What the probe measured.
pub struct Floor {
    /// Where the fsync file was written.
    pub dir: PathBuf,
    /// One append + `sync_data`, µs.
    pub fsync: Histogram<u64>,
    /// One loopback TCP round trip, µs.
    pub rtt: Histogram<u64>,
    /// One wake-up of a sleeping thread through a channel, µs (half a round trip).
    pub handoff: Histogram<u64>,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

impl Floor {
    /// fsync p50 + 2 × RTT p50, in ms.
    pub fn floor_ms(&self) -> f64 {
        ms(&self.fsync, 0.5) + 2.0 * ms(&self.rtt, 0.5)
    }

    /// The probe as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "probe": "floor", "dir": self.dir.display().to_string(),
            "fsync_samples": self.fsync.len(), "fsync_bytes": FSYNC_BYTES,
            "fsync_p50_ms": ms(&self.fsync, 0.5), "fsync_p99_ms": ms(&self.fsync, 0.99),
            "rtt_samples": self.rtt.len(), "rtt_bytes": RTT_BYTES,
            "rtt_p50_ms": ms(&self.rtt, 0.5), "rtt_p99_ms": ms(&self.rtt, 0.99),
            "handoff_samples": self.handoff.len(),
            "handoff_p50_ms": ms(&self.handoff, 0.5), "handoff_p99_ms": ms(&self.handoff, 0.99),
            "floor_ms": self.floor_ms(),
        })
    }

    /// Prints a table and the JSON line.
    pub fn print(&self) {
        println!(
            "{:<14} {:>8} {:>9} {:>9} {:>9}",
            "probe", "samples", "p50 ms", "p99 ms", "max ms"
        );
        for (name, h) in [
            ("fsync", &self.fsync),
            ("loopback rtt", &self.rtt),
            ("thread handoff", &self.handoff),
        ] {
            println!(
                "{name:<14} {:>8} {:>9.3} {:>9.3} {:>9.3}",
                h.len(),
                ms(h, 0.5),
                ms(h, 0.99),
                h.max() as f64 / 1000.0
            );
        }
        println!(
            "floor = fsync p50 + 2 x rtt p50 = {:.3} ms  (fsync file in {})",
            self.floor_ms(),
            self.dir.display()
        );
        println!(
            "each thread a write's path wakes adds about the hand-off p50 ({:.3} ms) beyond the floor",
            ms(&self.handoff, 0.5)
        );
        println!("{}", self.json());
    }
}

/// Why a probe could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The directory for the fsync file could not be created.
    #[error("--data-dir {}: cannot create it: {source}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// What creating it returned.
        #[source]
        source: std::io::Error,
    },
    /// The fsync file could not be created, appended to or synced.
    #[error("{what} {}: {source}", path.display())]
    Fsync {
        /// What failed: "cannot create", "cannot append to" or "cannot fsync".
        what: &'static str,
        /// The probe's file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No loopback socket could be bound, or its address read.
    #[error("{what}: {source}")]
    Loopback {
        /// What failed: binding it or reading its address.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The loopback ping-pong failed.
    #[error("loopback round trip to {addr}: {source}")]
    RoundTrip {
        /// The echo socket.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The hand-off probe's echo thread stopped answering.
    #[error("thread hand-off probe: the echo thread stopped")]
    EchoStopped,
}

/// Runs both probes; the fsync file goes in `dir` (created if missing), or in a new directory
/// under the system temp dir, removed afterwards.
///
/// # Errors
/// The file or socket that failed.
pub fn run(dir: Option<&Path>) -> Result<Floor, ProbeError> {
    let (dir, own_dir) = match dir {
        Some(d) => (d.to_path_buf(), false),
        None => (
            std::env::temp_dir().join(format!("dolmen-probe-{}", std::process::id())),
            true,
        ),
    };
    if let Err(source) = fs::create_dir_all(&dir) {
        return Err(ProbeError::CreateDir { dir, source });
    }
    let fsync = fsync_probe(&dir);
    if own_dir {
        let _ = fs::remove_dir_all(&dir);
    }
    Ok(Floor {
        dir,
        fsync: fsync?,
        rtt: rtt_probe()?,
        handoff: handoff_probe()?,
    })
}

fn fsync_probe(dir: &Path) -> Result<Histogram<u64>, ProbeError> {
    let path = dir.join(format!("fsync-probe-{}.tmp", std::process::id()));
    let fail = |what: &'static str| {
        let path = path.clone();
        move |source| ProbeError::Fsync { what, path, source }
    };
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(fail("cannot create"))?;
    let block = [b'f'; FSYNC_BYTES];
    let mut h = report::histogram();
    let result = (0..FSYNC_SAMPLES).try_for_each(|_| {
        let t = Instant::now();
        file.write_all(&block).map_err(fail("cannot append to"))?;
        file.sync_data().map_err(fail("cannot fsync"))?;
        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
        Ok(())
    });
    drop(file);
    let _ = fs::remove_file(&path);
    result.map(|()| h)
}

fn rtt_probe() -> Result<Histogram<u64>, ProbeError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| ProbeError::Loopback {
            what: "cannot bind a loopback socket",
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ProbeError::Loopback {
            what: "cannot read the loopback socket's address",
            source,
        })?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; RTT_BYTES];
        // Echo until the prober closes its end.
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let fail = |source| ProbeError::RoundTrip { addr, source };
    let mut s = TcpStream::connect(addr).map_err(fail)?;
    s.set_nodelay(true).map_err(fail)?;
    let mut buf = [b'p'; RTT_BYTES];
    let mut h = report::histogram();
    for _ in 0..RTT_SAMPLES {
        let t = Instant::now();
        s.write_all(&buf).map_err(fail)?;
        s.read_exact(&mut buf).map_err(fail)?;
        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
    }
    drop(s);
    let _ = echo.join();
    Ok(h)
}

fn handoff_probe() -> Result<Histogram<u64>, ProbeError> {
    let (to_echo, echo_in) = mpsc::sync_channel::<Instant>(1);
    let (echo_out, from_echo) = mpsc::sync_channel::<Instant>(1);
    let echo = std::thread::spawn(move || {
        // Back the same instant, until the prober hangs up.
        while let Ok(sent) = echo_in.recv() {
            if echo_out.send(sent).is_err() {
                break;
            }
        }
    });
    let mut h = report::histogram();
    for _ in 0..HANDOFF_SAMPLES {
        to_echo
            .send(Instant::now())
            .map_err(|_| ProbeError::EchoStopped)?;
        let sent = from_echo.recv().map_err(|_| ProbeError::EchoStopped)?;
        let _ = h.record((sent.elapsed().as_micros() / 2).max(1) as u64);
        // Busy-wait (a sleep could take far longer than the pause) while the echo thread
        // goes back to sleep.
        let paused = Instant::now();
        while paused.elapsed() < HANDOFF_PAUSE {
            std::hint::spin_loop();
        }
    }
    drop(to_echo);
    let _ = echo.join();
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_is_fsync_plus_two_round_trips() {
        let (mut fsync, mut rtt) = (report::histogram(), report::histogram());
        fsync.record(200).unwrap_or_default();
        rtt.record(50).unwrap_or_default();
        let floor = Floor {
            dir: PathBuf::from("/x"),
            fsync,
            rtt,
            handoff: report::histogram(),
        };
        assert!((floor.floor_ms() - 0.3).abs() < 0.001);
        assert!((floor.json()["floor_ms"].as_f64().unwrap_or_default() - 0.3).abs() < 0.001);
    }

    #[test]
    fn probe_measures_every_sample() {
        let dir = std::env::temp_dir().join(format!("dolmen-probe-test-{}", std::process::id()));
        let floor = run(Some(&dir)).unwrap_or_else(|e| panic!("probe failed: {e}"));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(floor.fsync.len(), FSYNC_SAMPLES as u64);
        assert_eq!(floor.rtt.len(), RTT_SAMPLES as u64);
        assert_eq!(floor.handoff.len(), HANDOFF_SAMPLES as u64);
    }
}
