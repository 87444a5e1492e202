//! One `dolmen serve` process on a temporary data directory: the standalone [`TestCluster`].
//!
//! ```text
//!  StandaloneBuilder ─ config.toml ─▶ dolmen serve --config <tmp>/config.toml
//!                                        │ stdout ─▶ "dolmen ready: node=.. thrift=.. admin=.."
//!                                        │ stdout+stderr ─▶ drain threads ─▶ <tmp>/server.log
//!  Drop / restart ─ SIGTERM (≤ 10 s) ─ SIGKILL ─ wait ──┘
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::binary::dolmen_bin;
use crate::cluster::TestCluster;

/// How long a node may take to print its readiness line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed with SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The readiness line prefix of `dolmen serve` (docs/CONTRACTS.md).
pub const READY_PREFIX: &str = "dolmen ready:";

/// Builds the TOML configuration of a [`Standalone`] node; every key can be overridden.
///
/// Defaults (the test configuration): column families `default` and `users`, host 127.0.0.1,
/// ephemeral Thrift and admin ports, a 300 ms MVCC retention window compacted every 100 ms, a
/// 300 ms wait for future read versions, and fault injection allowed. `[database] base_path` is
/// always the node's temporary directory.
#[derive(Clone, Debug)]
pub struct StandaloneBuilder {
    config: toml::Table,
}

impl Default for StandaloneBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StandaloneBuilder {
    /// The default test configuration.
    pub fn new() -> Self {
        Self {
            config: toml::Table::new(),
        }
        .set("database", "column_families", vec!["default", "users"])
        .set("server", "host", "127.0.0.1")
        .set("server", "port", 0)
        .set("server", "admin_port", 0)
        .set("mvcc", "retention_window_ms", 300)
        .set("mvcc", "compaction_interval_ms", 100)
        .set("mvcc", "future_version_wait_ms", 300)
        .set("faults", "allow_injection", true)
    }

    /// Sets `[section] key = value`, replacing any earlier value.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<toml::Value>) -> Self {
        let table = self
            .config
            .entry(section.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(table) = table else {
            panic!("config section [{section}] is not a table");
        };
        table.insert(key.to_owned(), value.into());
        self
    }

    /// `[faults] allow_injection`.
    pub fn allow_injection(self, allow: bool) -> Self {
        self.set("faults", "allow_injection", allow)
    }

    /// `[mvcc] retention_window_ms`.
    pub fn retention_window_ms(self, ms: i64) -> Self {
        self.set("mvcc", "retention_window_ms", ms)
    }

    /// The TOML text for a node whose data lives in `base_path`.
    pub fn render(&self, base_path: &Path) -> String {
        let config = self.clone().set(
            "database",
            "base_path",
            base_path.to_str().expect("temp dir path is UTF-8"),
        );
        toml::to_string(&config.config).expect("config serializes to TOML")
    }

    /// Writes the config into a fresh temporary directory and starts the node.
    ///
    /// # Panics
    /// When the binary is missing, or the node exits or is not ready within [`READY_TIMEOUT`].
    pub fn start(self) -> Standalone {
        let dir = tempfile::Builder::new()
            .prefix("dolmen-test-")
            .tempdir()
            .expect("create a temp dir for the node");
        let config_path = dir.path().join("config.toml");
        let text = self.render(&dir.path().join("data"));
        std::fs::write(&config_path, text).expect("write config.toml");
        let log_path = dir.path().join("server.log");
        let node = Node::spawn(&config_path, &log_path);
        Standalone {
            dir: Some(dir),
            config_path,
            log_path,
            node: Some(node),
        }
    }
}

/// A running standalone `dolmen serve` process, its temporary directory and its log.
///
/// Dropping it stops the process by PID (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]), reaps
/// it and deletes the directory (kept, with its path printed, when `DOLMEN_TEST_KEEP` is set).
/// When dropped during a panic it prints the tail of the server log to stderr.
pub struct Standalone {
    /// Owns the config, data and log; `Option` so `Drop` can keep it on request.
    dir: Option<TempDir>,
    /// Passed to every (re)start.
    config_path: PathBuf,
    /// Receives the node's stdout and stderr across restarts.
    log_path: PathBuf,
    /// The running process; `None` only transiently during restart.
    node: Option<Node>,
}

impl Standalone {
    /// Starts a node with the default test configuration ([`StandaloneBuilder::new`]).
    pub fn start() -> Self {
        StandaloneBuilder::new().start()
    }

    /// A builder for a node with configuration overrides.
    pub fn builder() -> StandaloneBuilder {
        StandaloneBuilder::new()
    }

    fn node(&self) -> &Node {
        self.node.as_ref().expect("node is running")
    }

    /// The node id from the readiness line.
    pub fn node_id(&self) -> u64 {
        self.node().node_id
    }

    /// The Thrift client address from the readiness line.
    pub fn thrift_endpoint(&self) -> SocketAddr {
        self.node().thrift
    }

    /// The admin HTTP address from the readiness line.
    pub fn admin_endpoint(&self) -> SocketAddr {
        self.node().admin
    }

    /// The process id of the running node.
    pub fn pid(&self) -> u32 {
        self.node().child.id()
    }

    /// The file collecting the node's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }
}

impl TestCluster for Standalone {
    fn client_endpoints(&self) -> Vec<SocketAddr> {
        vec![self.thrift_endpoint()]
    }

    fn leader_endpoint(&self) -> SocketAddr {
        self.thrift_endpoint()
    }

    fn follower_endpoint(&self) -> Option<SocketAddr> {
        None
    }

    fn restart(&mut self) {
        let node = self.node.take().expect("node is running");
        node.stop_clean(&self.log_path);
        append_log(&self.log_path, "---- harness: restarting ----\n");
        self.node = Some(Node::spawn(&self.config_path, &self.log_path));
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let _status = node.stop();
        }
        if std::thread::panicking() {
            eprintln!(
                "==== dolmen server log (last 80 lines of {}) ====\n{}\n==== end of server log ====",
                self.log_path.display(),
                self.log_tail(80)
            );
        }
        if std::env::var_os("DOLMEN_TEST_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("DOLMEN_TEST_KEEP: keeping {}", dir.keep().display());
            }
        }
    }
}

/// One `dolmen serve` child process, shared by [`Standalone`] and
/// [`crate::replicated::ReplicatedCluster`].
pub(crate) struct Node {
    /// The process; stopped by PID and reaped in [`Node::stop`] or [`Node::kill9`].
    child: Child,
    /// From the readiness line.
    pub(crate) node_id: u64,
    /// Thrift client address from the readiness line.
    pub(crate) thrift: SocketAddr,
    /// Admin HTTP address from the readiness line.
    pub(crate) admin: SocketAddr,
}

/// What the stdout drain thread tells the starter.
enum Startup {
    Ready(String),
    Eof,
}

impl Node {
    /// Starts `dolmen serve --config <config_path>`, appending its output to `log_path`, and
    /// waits for the readiness line.
    ///
    /// # Panics
    /// When the binary is missing, or the process exits or is not ready within
    /// [`READY_TIMEOUT`] (the message carries the log tail).
    pub(crate) fn spawn(config_path: &Path, log_path: &Path) -> Node {
        let bin = dolmen_bin();
        let log = Arc::new(Mutex::new(
            File::options()
                .create(true)
                .append(true)
                .open(log_path)
                .expect("open server.log"),
        ));
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Environment beats the config file (docs/CONTRACTS.md): a developer's THRIFT_PORT or
        // DOLMEN_* must not leak into the node under test.
        for (name, _) in std::env::vars_os() {
            let s = name.to_string_lossy();
            if s == "THRIFT_PORT" || s.starts_with("DOLMEN_") {
                cmd.env_remove(&name);
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("expected to spawn {} serve: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        drain(stdout, "stdout", Arc::clone(&log), Some(tx));
        drain(stderr, "stderr", log, None);

        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Startup::Ready(line)) => line,
            Ok(Startup::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = Node::terminate(child);
                panic!(
                    "expected `dolmen serve` to print `{READY_PREFIX} ...`, it closed stdout \
                     first (exit: {status:?}); log tail:\n{}",
                    log_tail(log_path, 40)
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _status = Node::terminate(child);
                panic!(
                    "expected `dolmen serve` to print `{READY_PREFIX} ...` within \
                     {READY_TIMEOUT:?}; log tail:\n{}",
                    log_tail(log_path, 40)
                );
            }
        };
        let (node_id, thrift, admin) = parse_ready(&line);
        Node {
            child,
            node_id,
            thrift,
            admin,
        }
    }

    /// SIGTERM by PID, wait up to [`STOP_TIMEOUT`], then SIGKILL; always reaps. Returns the exit
    /// status when the process exited on its own after SIGTERM.
    pub(crate) fn stop(self) -> Option<ExitStatus> {
        Node::terminate(self.child)
    }

    /// [`Node::stop`], asserting that the process exited 0 within [`STOP_TIMEOUT`].
    ///
    /// # Panics
    /// When it exited non-zero or had to be killed, with the tail of `log_path`.
    pub(crate) fn stop_clean(self, log_path: &Path) {
        match self.stop() {
            Some(s) => assert!(
                s.success(),
                "expected dolmen to exit 0 after SIGTERM, got {s}; log tail:\n{}",
                log_tail(log_path, 40)
            ),
            None => panic!(
                "expected dolmen to exit within {STOP_TIMEOUT:?} after SIGTERM, it had to be \
                 killed; log tail:\n{}",
                log_tail(log_path, 40)
            ),
        }
    }

    /// SIGKILL by PID and reap: a crash, no chance to flush or say goodbye.
    pub(crate) fn kill9(mut self) {
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to the process by PID.
    ///
    /// # Panics
    /// When the signal cannot be delivered.
    pub(crate) fn signal(&mut self, signal: Signal) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "expected dolmen (pid {}) to be running to send it {signal}, it exited: {status}",
                self.child.id()
            );
        }
        // Not reaped yet (checked above), so the PID still names our child.
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"));
        kill(pid, signal).unwrap_or_else(|e| panic!("expected to send {signal} to pid {pid}: {e}"));
    }

    fn terminate(mut child: Child) -> Option<ExitStatus> {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        // The child is not reaped yet, so its PID cannot have been reused.
        let _sent = kill(pid, Signal::SIGTERM);
        if let Some(status) = wait_bounded(&mut child, STOP_TIMEOUT) {
            return Some(status);
        }
        let _killed = child.kill();
        let _reaped = child.wait();
        None
    }
}

/// Polls `child` for exit until `limit` passes.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Copies `pipe` line by line into `log` on a background thread so the pipe never fills; on
/// stdout (`ready` set) also reports the readiness line and end of stream.
fn drain(
    pipe: impl Read + Send + 'static,
    name: &'static str,
    log: Arc<Mutex<File>>,
    ready: Option<mpsc::Sender<Startup>>,
) {
    std::thread::Builder::new()
        .name(format!("dolmen-{name}-drain"))
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            let mut announced = false;
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if let Ok(mut f) = log.lock() {
                    let _w = f.write_all(format!("[{name}] ").as_bytes());
                    let _w = f.write_all(&line);
                    if !line.ends_with(b"\n") {
                        let _w = f.write_all(b"\n");
                    }
                }
                let text = String::from_utf8_lossy(&line);
                if let Some(tx) = &ready {
                    if !announced && text.starts_with(READY_PREFIX) {
                        announced = true;
                        let _sent = tx.send(Startup::Ready(text.trim_end().to_owned()));
                    }
                }
            }
            if let Some(tx) = ready {
                let _sent = tx.send(Startup::Eof);
            }
        })
        .expect("spawn drain thread");
}

/// Parses `dolmen ready: node=<id> thrift=<ip:port> admin=<ip:port>`.
fn parse_ready(line: &str) -> (u64, SocketAddr, SocketAddr) {
    let rest = line.strip_prefix(READY_PREFIX).expect("ready prefix");
    let (mut node, mut thrift, mut admin) = (None, None, None);
    for token in rest.split_whitespace() {
        match token.split_once('=') {
            Some(("node", v)) => node = v.parse().ok(),
            Some(("thrift", v)) => thrift = v.parse().ok(),
            Some(("admin", v)) => admin = v.parse().ok(),
            _ => {}
        }
    }
    match (node, thrift, admin) {
        (Some(n), Some(t), Some(a)) => (n, t, a),
        _ => panic!(
            "expected a readiness line `{READY_PREFIX} node=<id> thrift=<ip:port> \
             admin=<ip:port>`, got {line:?}"
        ),
    }
}

/// Appends a harness marker to a node's log.
pub(crate) fn append_log(path: &Path, text: &str) {
    if let Ok(mut f) = File::options().append(true).open(path) {
        let _w = f.write_all(text.as_bytes());
    }
}

/// The last `lines` lines of the log at `path` (empty when it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_readiness_line() {
        let (id, t, a) =
            parse_ready("dolmen ready: node=3 thrift=127.0.0.1:9090 admin=127.0.0.1:9190");
        assert_eq!(id, 3);
        assert_eq!(t, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(a, "127.0.0.1:9190".parse().unwrap());
    }

    #[test]
    fn default_config_has_the_test_settings() {
        let text = StandaloneBuilder::new()
            .allow_injection(false)
            .render(Path::new("/tmp/x"));
        let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
        assert_eq!(parsed["database"]["base_path"].as_str(), Some("/tmp/x"));
        assert_eq!(parsed["server"]["port"].as_integer(), Some(0));
        assert_eq!(
            parsed["mvcc"]["retention_window_ms"].as_integer(),
            Some(300)
        );
        assert_eq!(parsed["faults"]["allow_injection"].as_bool(), Some(false));
    }
}
