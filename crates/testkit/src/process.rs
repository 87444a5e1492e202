//! One `dolmen serve` child process: started with stdout and stderr appended to a log file, its
//! readiness line (`dolmen ready: node=<id> thrift=<addr> admin=<addr>`) awaited for a bounded
//! time, signalled by PID only while it is our unreaped child, and killed when dropped.
//!
//! ```text
//!  Launch::spawn ─▶ dolmen serve --config <file>  ── stdout+stderr (O_APPEND) ──▶ <log>
//!       wait_ready: read <log> from the spawn offset until "dolmen ready:" (≤ timeout)
//!       signal / stop (SIGTERM ≤ timeout, then SIGKILL) / kill9 ── by PID, reaped ── Drop: kill9
//! ```

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The readiness line prefix of `dolmen serve` (docs/CONTRACTS.md).
pub const READY_PREFIX: &str = "dolmen ready:";
/// How long a process may take to be reaped after SIGKILL.
pub const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Poll interval of the process waits.
const POLL: Duration = Duration::from_millis(20);
/// Log lines quoted in start-up errors.
const TAIL_LINES: usize = 40;

/// Why a process operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The log file could not be opened.
    #[error("cannot open the log {}: {source}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The binary could not be started.
    #[error("expected to spawn {} serve: {source}", bin.display())]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The process exited before printing its readiness line.
    #[error(
        "expected `dolmen serve` to print `{READY_PREFIX} ...`, it exited first ({status}); \
         log tail:\n{tail}"
    )]
    ExitedBeforeReady {
        /// Its exit status.
        status: ExitStatus,
        /// The end of its log.
        tail: String,
    },
    /// No readiness line within the timeout (the process was stopped).
    #[error("expected `dolmen serve` to print `{READY_PREFIX} ...` within {timeout:?}; log tail:\n{tail}")]
    NotReady {
        /// The timeout that passed.
        timeout: Duration,
        /// The end of its log.
        tail: String,
    },
    /// A readiness line without the three fields.
    #[error(
        "expected a readiness line `{READY_PREFIX} node=<id> thrift=<ip:port> admin=<ip:port>`, \
         got {line:?}"
    )]
    BadReadyLine {
        /// The line.
        line: String,
    },
    /// A signal for a process that already exited.
    #[error("expected dolmen (pid {pid}) to be running to send it {signal}, it exited: {status}")]
    Exited {
        /// Its PID.
        pid: u32,
        /// The signal not sent.
        signal: Signal,
        /// Its exit status.
        status: ExitStatus,
    },
    /// `kill(2)` failed.
    #[error("expected to send {signal} to pid {pid}: {source}")]
    Signal {
        /// Its PID.
        pid: u32,
        /// The signal.
        signal: Signal,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// Not reaped within [`REAP_TIMEOUT`] of SIGKILL.
    #[error("dolmen (pid {pid}) was not reaped within {REAP_TIMEOUT:?} of SIGKILL")]
    Unreaped {
        /// Its PID.
        pid: u32,
    },
}

/// What a node announced in its readiness line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// `node=`: its node id.
    pub node_id: u64,
    /// `thrift=`: its Thrift client address.
    pub thrift: SocketAddr,
    /// `admin=`: its admin HTTP address.
    pub admin: SocketAddr,
    /// `thrift_tls=`: its Thrift TLS address, when it has one.
    pub thrift_tls: Option<SocketAddr>,
}

impl Ready {
    /// Parses `dolmen ready: node=<id> thrift=<ip:port> admin=<ip:port>`.
    ///
    /// # Errors
    /// [`ProcessError::BadReadyLine`] when a field is missing or malformed.
    pub fn parse(line: &str) -> Result<Ready, ProcessError> {
        let bad = || ProcessError::BadReadyLine {
            line: line.to_owned(),
        };
        let rest = line.trim().strip_prefix(READY_PREFIX).ok_or_else(bad)?;
        let (mut node, mut thrift, mut admin, mut thrift_tls) = (None, None, None, None);
        for token in rest.split_whitespace() {
            match token.split_once('=') {
                Some(("node", v)) => node = v.parse().ok(),
                Some(("thrift", v)) => thrift = v.parse().ok(),
                Some(("admin", v)) => admin = v.parse().ok(),
                Some(("thrift_tls", v)) => thrift_tls = v.parse().ok(),
                _ => {}
            }
        }
        match (node, thrift, admin) {
            (Some(node_id), Some(thrift), Some(admin)) => Ok(Ready {
                node_id,
                thrift,
                admin,
                thrift_tls,
            }),
            _ => Err(bad()),
        }
    }
}

/// How to start one `dolmen serve`.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `dolmen` binary.
    pub bin: PathBuf,
    /// Passed as `--config`.
    pub config: PathBuf,
    /// stdout and stderr are appended here.
    pub log: PathBuf,
    /// Removes `THRIFT_PORT`, `FAILPOINTS` and every `DOLMEN_*` variable from the child's environment
    /// (the environment beats the config file, so a developer's settings must not leak into a
    /// node under test). Default true.
    pub clean_env: bool,
    /// Starts the child in its own process group, so a Ctrl-C in the terminal reaches only
    /// the harness, which then stops the nodes itself. Default false.
    pub own_process_group: bool,
    /// Variables set in the child's environment, after the cleaning (e.g. `FAILPOINTS` for a
    /// crash test). Default none.
    pub env: Vec<(String, String)>,
}

impl Launch {
    /// `bin serve --config <config>`, output appended to `log`, clean environment.
    pub fn new(bin: &Path, config: &Path, log: &Path) -> Self {
        Self {
            bin: bin.to_owned(),
            config: config.to_owned(),
            log: log.to_owned(),
            clean_env: true,
            own_process_group: false,
            env: Vec::new(),
        }
    }

    /// Starts the process without waiting for it; see [`ServerProcess::wait_ready`].
    ///
    /// # Errors
    /// When the log cannot be opened or the binary cannot be started.
    pub fn spawn(&self) -> Result<ServerProcess, ProcessError> {
        let log_error = |source| ProcessError::Log {
            path: self.log.clone(),
            source,
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(log_error)?;
        let offset = log.metadata().map_err(log_error)?.len();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().map_err(log_error)?))
            .stderr(Stdio::from(log));
        if self.clean_env {
            for (name, _) in std::env::vars_os() {
                let s = name.to_string_lossy();
                if s == "THRIFT_PORT" || s == "FAILPOINTS" || s.starts_with("DOLMEN_") {
                    cmd.env_remove(&name);
                }
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if self.own_process_group {
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            bin: self.bin.clone(),
            source,
        })?;
        Ok(ServerProcess {
            pid: child.id(),
            child,
            status: None,
            log: self.log.clone(),
            offset,
            ready: None,
        })
    }
}

/// How a SIGTERM stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself, with this status.
    Exited(ExitStatus),
    /// It did not exit in time and was killed with SIGKILL.
    Killed,
}

/// A running `dolmen serve` child. Dropping it kills it (SIGKILL by PID) and reaps it.
#[derive(Debug)]
pub struct ServerProcess {
    /// The child; signalled only while `status` is `None`, so its PID is still ours.
    child: Child,
    /// Its PID (kept for messages after it is reaped).
    pid: u32,
    /// Its exit status once reaped: the PID may be reused from then on.
    status: Option<ExitStatus>,
    /// Where its output goes.
    log: PathBuf,
    /// The log's length at spawn: the readiness line is searched after it.
    offset: u64,
    /// The readiness line, once seen.
    ready: Option<Ready>,
}

impl ServerProcess {
    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What it announced, once [`Self::wait_ready`] or [`Self::poll_ready`] saw it.
    pub fn ready(&self) -> Option<Ready> {
        self.ready
    }

    /// Looks once for the readiness line; `Ok(None)` while it is not printed yet.
    ///
    /// # Errors
    /// When the process exited first (it is reaped), or the line is malformed.
    pub fn poll_ready(&mut self) -> Result<Option<Ready>, ProcessError> {
        if self.ready.is_some() {
            return Ok(self.ready);
        }
        if let Some(line) = self.ready_line() {
            self.ready = Some(Ready::parse(&line)?);
            return Ok(self.ready);
        }
        if let Some(status) = self.try_exit() {
            // It may have printed the line just before exiting; it exited all the same.
            return Err(ProcessError::ExitedBeforeReady {
                status,
                tail: log_tail(&self.log, TAIL_LINES),
            });
        }
        Ok(None)
    }

    /// Waits up to `timeout` for the readiness line.
    ///
    /// # Errors
    /// When it exits first, or does not print it in time (then it is stopped: SIGTERM, and
    /// SIGKILL after `timeout` more at most).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ready) = self.poll_ready()? {
                return Ok(ready);
            }
            if Instant::now() >= deadline {
                let _stopped = self.terminate(timeout);
                return Err(ProcessError::NotReady {
                    timeout,
                    tail: log_tail(&self.log, TAIL_LINES),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Its exit status when it has exited (then it is reaped); `None` while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
            }
        }
        self.status
    }

    /// Whether it has been reaped (exited, killed or stopped).
    pub fn is_reaped(&self) -> bool {
        self.status.is_some()
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, SIGTERM, ...) by PID.
    ///
    /// # Errors
    /// When it already exited, or `kill(2)` fails.
    pub fn signal(&mut self, signal: Signal) -> Result<(), ProcessError> {
        if let Some(status) = self.try_exit() {
            return Err(ProcessError::Exited {
                pid: self.pid,
                signal,
                status,
            });
        }
        // Not reaped yet (checked above), so the PID still names our child.
        let pid = Pid::from_raw(i32::try_from(self.pid).unwrap_or(i32::MAX));
        kill(pid, signal).map_err(|source| ProcessError::Signal {
            pid: self.pid,
            signal,
            source,
        })
    }

    /// SIGTERM (after SIGCONT, in case it is stopped), wait up to `timeout`, then SIGKILL;
    /// always reaps.
    pub fn stop(mut self, timeout: Duration) -> Stopped {
        self.terminate(timeout)
    }

    /// SIGKILL by PID and reap: a crash, no chance to flush or say goodbye.
    ///
    /// # Errors
    /// When it is not reaped within [`REAP_TIMEOUT`].
    pub fn kill9(mut self) -> Result<(), ProcessError> {
        self.kill_in_place()
    }

    fn terminate(&mut self, timeout: Duration) -> Stopped {
        if let Some(status) = self.try_exit() {
            return Stopped::Exited(status);
        }
        let _resumed = self.signal(Signal::SIGCONT);
        let _sent = self.signal(Signal::SIGTERM);
        if let Some(status) = self.wait_exit(timeout) {
            return Stopped::Exited(status);
        }
        let _killed = self.kill_in_place();
        Stopped::Killed
    }

    fn kill_in_place(&mut self) -> Result<(), ProcessError> {
        if self.try_exit().is_some() {
            return Ok(());
        }
        // Not reaped, so the PID is still our child's.
        let _killed = self.child.kill();
        match self.wait_exit(REAP_TIMEOUT) {
            Some(_) => Ok(()),
            None => Err(ProcessError::Unreaped { pid: self.pid }),
        }
    }

    /// Polls for exit until `limit` passes; its status when it exited (then it is reaped).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// The first readiness line written to the log since spawn.
    fn ready_line(&self) -> Option<String> {
        let mut f = File::open(&self.log).ok()?;
        f.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        // Only complete lines: the writer may be in the middle of one.
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .find(|l| l.starts_with(READY_PREFIX))
            .map(str::to_owned)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SIGKILL also ends a SIGSTOPped process.
        let _killed = self.kill_in_place();
    }
}

/// Appends `text` to the log at `path` (a harness marker); ignores failures.
pub fn append_log(path: &Path, text: &str) {
    if let Ok(mut f) = File::options().create(true).append(true).open(path) {
        let _written = f.write_all(text.as_bytes());
    }
}

/// The last `lines` lines of the log at `path` (empty when it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_readiness_line() {
        let r = Ready::parse("dolmen ready: node=3 thrift=127.0.0.1:9090 admin=127.0.0.1:9190")
            .unwrap();
        assert_eq!(r.node_id, 3);
        assert_eq!(r.thrift, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(r.admin, "127.0.0.1:9190".parse().unwrap());
        assert_eq!(r.thrift_tls, None);
        let r = Ready::parse(
            "dolmen ready: node=3 thrift=127.0.0.1:9090 admin=127.0.0.1:9190 \
             thrift_tls=127.0.0.1:9093",
        )
        .unwrap();
        assert_eq!(r.thrift_tls, Some("127.0.0.1:9093".parse().unwrap()));
        assert!(matches!(
            Ready::parse("dolmen ready: node=3 thrift=127.0.0.1:9090"),
            Err(ProcessError::BadReadyLine { .. })
        ));
    }

    /// A stand-in for `dolmen serve`: a shell script that prints a readiness line and waits.
    fn fake_server(dir: &Path, script: &str) -> Launch {
        let bin = dir.join("fake-dolmen");
        std::fs::write(&bin, format!("#!/bin/sh\n{script}\n")).unwrap();
        let mut perms = std::fs::metadata(&bin).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&bin, perms).unwrap();
        Launch::new(&bin, &dir.join("config.toml"), &dir.join("node.log"))
    }

    /// Starts `launch`. A script just written may still be open for writing in a child that
    /// another test thread forked meanwhile (until that child execs), which makes exec fail
    /// with ETXTBSY: retried, a bounded number of times.
    fn spawn(launch: &Launch) -> ServerProcess {
        for _ in 0..200 {
            match launch.spawn() {
                Err(ProcessError::Spawn { source, .. })
                    if source.kind() == std::io::ErrorKind::ExecutableFileBusy =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other.unwrap(),
            }
        }
        panic!("the fake server stayed busy (ETXTBSY) for 2 s")
    }

    #[test]
    fn waits_for_the_readiness_line_and_stops_by_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let launch = fake_server(
            dir.path(),
            "echo starting; sleep 0.2; \
             echo 'dolmen ready: node=1 thrift=127.0.0.1:1 admin=127.0.0.1:2'; \
             trap 'exit 0' TERM; while true; do sleep 0.05; done",
        );
        let mut p = spawn(&launch);
        let ready = p.wait_ready(Duration::from_secs(10)).unwrap();
        assert_eq!(ready.node_id, 1);
        match p.stop(Duration::from_secs(10)) {
            Stopped::Exited(s) => assert!(s.success(), "{s}"),
            Stopped::Killed => panic!("expected the fake server to exit on SIGTERM"),
        }
        let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
        assert!(log.starts_with("starting\n"), "{log}");
    }

    #[test]
    fn an_exit_before_the_readiness_line_is_reported_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let launch = fake_server(dir.path(), "echo 'bad config: nope' >&2; exit 2");
        let mut p = spawn(&launch);
        match p.wait_ready(Duration::from_secs(10)) {
            Err(ProcessError::ExitedBeforeReady { status, tail }) => {
                assert_eq!(status.code(), Some(2));
                assert!(tail.contains("bad config: nope"), "{tail}");
            }
            other => panic!("expected ExitedBeforeReady, got {other:?}"),
        }
    }

    #[test]
    fn a_silent_process_times_out_and_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let launch = fake_server(dir.path(), "exec sleep 30");
        let mut p = spawn(&launch);
        let started = Instant::now();
        let e = p.wait_ready(Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, ProcessError::NotReady { .. }), "{e}");
        assert!(p.is_reaped(), "a process that never got ready is stopped");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
