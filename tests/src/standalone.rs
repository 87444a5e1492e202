//! One `dolmen serve` process on a temporary data directory: the standalone [`TestCluster`].
//! The process itself is `dolmen_testkit`'s [`ServerProcess`]; the config is rendered from
//! `dolmen_config::Config` with the test defaults ([`apply_test_defaults`]).
//!
//! ```text
//!  StandaloneBuilder ─ config.toml ─▶ dolmen serve --config <tmp>/config.toml
//!                                        │ stdout+stderr ─▶ <tmp>/server.log
//!                                        │ "dolmen ready: node=.. thrift=.. admin=.." (awaited)
//!  Drop / restart ─ SIGTERM (≤ 10 s) ─ SIGKILL ─ reaped ──┘
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dolmen_testkit::process::{append_log, log_tail};
use dolmen_testkit::render;
use dolmen_testkit::{Config, Launch, Ready, ServerProcess, Stopped};
use tempfile::TempDir;

use crate::binary::dolmen_bin;
use crate::cluster::TestCluster;

/// How long a node may take to print its readiness line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed with SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The readiness line prefix of `dolmen serve` (docs/CONTRACTS.md).
pub const READY_PREFIX: &str = dolmen_testkit::READY_PREFIX;

/// The test defaults every node gets: column families `default` and `users`, a 300 ms MVCC
/// retention window compacted every 100 ms, a 300 ms wait for future read versions, and fault
/// injection allowed.
pub fn apply_test_defaults(c: &mut Config) {
    c.database.column_families = vec!["default".to_owned(), "users".to_owned()];
    c.mvcc.retention_window_ms = 300;
    c.mvcc.compaction_interval_ms = 100;
    c.mvcc.future_version_wait_ms = 300;
    c.faults.allow_injection = true;
}

/// Builds the configuration of a [`Standalone`] node; every key can be overridden.
///
/// Defaults (the test configuration, [`apply_test_defaults`]): host 127.0.0.1 and ephemeral
/// Thrift and admin ports. `[database] base_path` is always the node's temporary directory.
#[derive(Clone, Debug, Default)]
pub struct StandaloneBuilder {
    /// `[section] key = value` overrides, applied in order.
    settings: Vec<(String, String, toml::Value)>,
    /// The program started as `<bin> serve --config …`; `None` = [`dolmen_bin`].
    bin: Option<PathBuf>,
}

impl StandaloneBuilder {
    /// The default test configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `[section] key = value`, replacing any earlier value.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<toml::Value>) -> Self {
        self.settings
            .push((section.to_owned(), key.to_owned(), value.into()));
        self
    }

    /// Starts `bin` instead of the `dolmen` binary under test (a wrapper that prepares the
    /// node's environment, then runs it with the same arguments, keeping its PID).
    pub fn bin(mut self, bin: &Path) -> Self {
        self.bin = Some(bin.to_owned());
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

    /// The configuration for a node whose data lives in `base_path`.
    ///
    /// # Panics
    /// When a setting does not fit the schema (an unknown key or a wrong type).
    pub fn config(&self, base_path: &Path) -> Config {
        let mut c = Config::default();
        apply_test_defaults(&mut c);
        c.server.host = "127.0.0.1".to_owned();
        c.server.port = 0;
        c.server.admin_port = 0;
        for (section, key, value) in &self.settings {
            render::set(&mut c, section, key, value.clone()).unwrap_or_else(|e| panic!("{e}"));
        }
        c.database.base_path = base_path.to_owned();
        c
    }

    /// The TOML text for a node whose data lives in `base_path`.
    ///
    /// # Panics
    /// As [`Self::config`].
    pub fn render(&self, base_path: &Path) -> String {
        render::render(&self.config(base_path)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes the config into a fresh temporary directory and starts the node.
    ///
    /// # Panics
    /// When the binary is missing, or the node exits or is not ready within [`READY_TIMEOUT`].
    pub fn start(self) -> Standalone {
        self.start_after(|_| {})
    }

    /// As [`Self::start`], but calls `prepare` with the written config file before the node
    /// starts (to restore a backup into its data directory, say).
    ///
    /// # Panics
    /// As [`Self::start`].
    pub fn start_after(self, prepare: impl FnOnce(&Path)) -> Standalone {
        let dir = tempfile::Builder::new()
            .prefix("dolmen-test-")
            .tempdir()
            .expect("create a temp dir for the node");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, self.render(&dir.path().join("data")))
            .expect("write config.toml");
        prepare(&config_path);
        let log_path = dir.path().join("server.log");
        let bin = self.bin.unwrap_or_else(dolmen_bin);
        let node = spawn(&bin, &config_path, &log_path);
        Standalone {
            dir: Some(dir),
            bin,
            config_path,
            log_path,
            node: Some(node),
        }
    }
}

/// Starts `<bin> serve --config <config_path>` with its output appended to `log_path` and
/// waits for its readiness line.
///
/// # Panics
/// When the binary is missing, or the process exits or is not ready within [`READY_TIMEOUT`]
/// (the message carries the log tail).
fn spawn(bin: &Path, config_path: &Path, log_path: &Path) -> ServerProcess {
    let mut p = Launch::new(bin, config_path, log_path)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    p.wait_ready(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    p
}

/// A running standalone `dolmen serve` process, its temporary directory and its log.
///
/// Dropping it stops the process by PID (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]), reaps
/// it and deletes the directory (kept, with its path printed, when `DOLMEN_TEST_KEEP` is set).
/// When dropped during a panic it prints the tail of the server log to stderr.
pub struct Standalone {
    /// Owns the config, data and log; `Option` so `Drop` can keep it on request.
    dir: Option<TempDir>,
    /// The program started (and restarted).
    bin: PathBuf,
    /// Passed to every (re)start.
    config_path: PathBuf,
    /// Receives the node's stdout and stderr across restarts.
    log_path: PathBuf,
    /// The running process; `None` only transiently during restart.
    node: Option<ServerProcess>,
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

    fn ready(&self) -> Ready {
        self.node
            .as_ref()
            .and_then(ServerProcess::ready)
            .expect("node is running")
    }

    /// The node id from the readiness line.
    pub fn node_id(&self) -> u64 {
        self.ready().node_id
    }

    /// The Thrift client address from the readiness line.
    pub fn thrift_endpoint(&self) -> SocketAddr {
        self.ready().thrift
    }

    /// The admin HTTP address from the readiness line.
    pub fn admin_endpoint(&self) -> SocketAddr {
        self.ready().admin
    }

    /// The Thrift TLS address from the readiness line, when the node has that listener.
    pub fn thrift_tls_endpoint(&self) -> Option<SocketAddr> {
        self.ready().thrift_tls
    }

    /// The process id of the running node.
    pub fn pid(&self) -> u32 {
        self.node.as_ref().expect("node is running").pid()
    }

    /// The node's config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
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
        match node.stop(STOP_TIMEOUT) {
            Stopped::Exited(s) => assert!(
                s.success(),
                "expected dolmen to exit 0 after SIGTERM, got {s}; log tail:\n{}",
                self.log_tail(40)
            ),
            Stopped::Killed => panic!(
                "expected dolmen to exit within {STOP_TIMEOUT:?} after SIGTERM, it had to be \
                 killed; log tail:\n{}",
                self.log_tail(40)
            ),
        }
        append_log(&self.log_path, "---- harness: restarting ----\n");
        self.node = Some(spawn(&self.bin, &self.config_path, &self.log_path));
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let _stopped = node.stop(STOP_TIMEOUT);
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let back: Config = toml::from_str(&text).expect("the server's schema");
        assert!(!back.faults.allow_injection);
        assert_eq!(back.database.column_families, ["default", "users"]);
    }
}
