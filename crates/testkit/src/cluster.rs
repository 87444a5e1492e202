//! A local cluster of `dolmen serve` processes: each node's files and fixed addresses, its
//! process (started, stopped, killed, paused, resumed, wiped, by PID only), harness markers in
//! its log, and the blocking admin calls a test needs (readiness, status, leader, digest).
//!
//! ```text
//!  LocalCluster::new(bin, [NodeSpec{files, addrs}]) ── configs are the caller's (render.rs)
//!     start_many ─ spawn each ─ wait for each readiness line ─ check id/addresses announced
//!     stop / kill9 / pause / resume / wipe / reap_exited          (signals by PID)
//!     status / wait_ready / current_leader / digest ── dolmen_admin::blocking ──▶ each node
//!  Drop ─ SIGKILL every process still running (ServerProcess::drop)
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dolmen_admin::blocking::AdminClient;
use dolmen_admin::{AdminError, Digest, NodeStatus, Readiness};

use crate::leader::leader_of;
use crate::ports::NodeAddrs;
use crate::process::{append_log, log_tail, Launch, ProcessError, Ready, ServerProcess, Stopped};

/// Timeout of one admin call (a SIGSTOPped node never answers).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Poll interval of the cluster waits.
const POLL: Duration = Duration::from_millis(50);
/// Log lines quoted in errors.
const TAIL_LINES: usize = 30;

/// Where one node keeps its config, log and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFiles {
    /// Its config file (`--config`).
    pub config: PathBuf,
    /// stdout and stderr of every start, with markers between them.
    pub log: PathBuf,
    /// `[database] base_path`.
    pub data: PathBuf,
}

impl NodeFiles {
    /// `<dir>/node-<i>.toml`, `<dir>/node-<i>.log`, `<dir>/data-<i>`.
    pub fn flat(dir: &Path, i: usize) -> Self {
        Self {
            config: dir.join(format!("node-{i}.toml")),
            log: dir.join(format!("node-{i}.log")),
            data: dir.join(format!("data-{i}")),
        }
    }

    /// `<dir>/node-<i>.toml`, `<dir>/logs/node-<i>.log`, `<dir>/data/node-<i>`.
    pub fn nested(dir: &Path, i: usize) -> Self {
        Self {
            config: dir.join(format!("node-{i}.toml")),
            log: dir.join("logs").join(format!("node-{i}.log")),
            data: dir.join("data").join(format!("node-{i}")),
        }
    }
}

/// One node: where its files are and where it listens.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Its files.
    pub files: NodeFiles,
    /// Its addresses (as its config gives them).
    pub addrs: NodeAddrs,
}

/// Whether a node's process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Running and not stopped.
    Running,
    /// Stopped with SIGSTOP.
    Paused,
    /// No process (killed, stopped, exited, or not started).
    Down,
}

/// Why a cluster operation failed; every variant names the node.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No such node.
    #[error("node {node} does not exist (the cluster has {count})")]
    NoSuchNode {
        /// The index asked for.
        node: usize,
        /// The cluster's size.
        count: usize,
    },
    /// The operation needs the node in another state.
    #[error("expected node {node} to be {expected}, it is {actual:?}")]
    WrongState {
        /// The node.
        node: usize,
        /// What the operation needs ("down", "running", "paused").
        expected: &'static str,
        /// What it is.
        actual: NodeState,
    },
    /// Its process failed to start, signal or die.
    #[error("node {node}: {source}")]
    Process {
        /// The node.
        node: usize,
        /// What went wrong.
        #[source]
        source: ProcessError,
    },
    /// It announced other addresses than its config gives.
    #[error(
        "expected node {node} to announce (node id, thrift, admin) = {expected:?} from its \
         config, got {announced:?}; log tail:\n{tail}"
    )]
    WrongAnnouncement {
        /// The node.
        node: usize,
        /// From its spec.
        expected: Box<Ready>,
        /// From its readiness line.
        announced: Box<Ready>,
        /// The end of its log.
        tail: String,
    },
    /// Its data could not be deleted.
    #[error("wipe {}: {source}", path.display())]
    Wipe {
        /// The data directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An admin call failed.
    #[error("node {node}: {source}")]
    Admin {
        /// The node.
        node: usize,
        /// The client's error.
        #[source]
        source: Box<AdminError>,
    },
    /// Not ready (`GET /ready` = 200) in time.
    #[error(
        "expected node {node} to be ready (GET /ready = 200) within {timeout:?}, last: {last}"
    )]
    NotReady {
        /// The node.
        node: usize,
        /// The bound.
        timeout: Duration,
        /// The last answer.
        last: String,
    },
    /// No leader named by a majority in time.
    #[error("expected a leader named by a majority within {timeout:?}; statuses:\n{statuses}")]
    NoLeader {
        /// The bound.
        timeout: Duration,
        /// Every node's last `/status` or error, one per line.
        statuses: String,
    },
    /// A digest for another version than asked.
    #[error("node {node} answered a digest for version {got}, expected {version}")]
    DigestVersion {
        /// The node.
        node: usize,
        /// The version asked for.
        version: u64,
        /// The version answered.
        got: u64,
    },
}

/// One node of the cluster and its process.
#[derive(Debug)]
struct Member {
    spec: NodeSpec,
    /// `None` when down.
    process: Option<ServerProcess>,
    /// Between SIGSTOP and SIGCONT.
    paused: bool,
    /// Extra environment of its next starts ([`LocalCluster::set_env`]).
    env: Vec<(String, String)>,
}

/// A local cluster of `dolmen serve` processes. Dropping it kills every process it started.
#[derive(Debug)]
pub struct LocalCluster {
    /// The `dolmen` binary.
    bin: PathBuf,
    /// Children get their own process group (see [`Launch::own_process_group`]).
    own_process_group: bool,
    /// Children get a clean environment (see [`Launch::clean_env`]).
    clean_env: bool,
    /// `harness` or `chaos`: the word in log markers.
    label: &'static str,
    /// Indexed by node id.
    members: Vec<Member>,
    /// Sent by [`Self::admin`]'s clients (the nodes' `server.admin_token`).
    admin_token: Option<String>,
    /// The CA (PEM) [`Self::admin`]'s clients check the nodes against over HTTPS (the nodes'
    /// `server.admin_tls`); `None` = plain HTTP.
    admin_ca: Option<Vec<u8>>,
}

impl LocalCluster {
    /// A cluster of `nodes` (none started) run from `bin`; the configs must already be written
    /// at each [`NodeFiles::config`]. `label` names the harness in log markers.
    pub fn new(bin: &Path, nodes: Vec<NodeSpec>, label: &'static str) -> Self {
        Self {
            bin: bin.to_owned(),
            own_process_group: false,
            clean_env: true,
            label,
            members: nodes
                .into_iter()
                .map(|spec| Member {
                    spec,
                    process: None,
                    paused: false,
                    env: Vec::new(),
                })
                .collect(),
            admin_token: None,
            admin_ca: None,
        }
    }

    /// Admin clients of [`Self::admin`] speak HTTPS, checking the nodes against the CA in
    /// `ca_pem` (the nodes have `server.admin_tls`).
    pub fn with_admin_ca(mut self, ca_pem: Option<Vec<u8>>) -> Self {
        self.admin_ca = ca_pem;
        self
    }

    /// Admin clients of [`Self::admin`] send `token` (the nodes' `server.admin_token`).
    pub fn with_admin_token(mut self, token: Option<String>) -> Self {
        self.admin_token = token;
        self
    }

    /// Starts children in their own process group (a terminal's Ctrl-C reaches only us).
    pub fn with_own_process_group(mut self) -> Self {
        self.own_process_group = true;
        self
    }

    /// Children inherit our whole environment (`DOLMEN_LOG` included), as a command a person
    /// runs would; see [`Launch::clean_env`].
    pub fn with_inherited_env(mut self) -> Self {
        self.clean_env = false;
        self
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn member(&self, i: usize) -> Result<&Member, ClusterError> {
        self.members.get(i).ok_or(ClusterError::NoSuchNode {
            node: i,
            count: self.members.len(),
        })
    }

    fn member_mut(&mut self, i: usize) -> Result<&mut Member, ClusterError> {
        let count = self.members.len();
        self.members
            .get_mut(i)
            .ok_or(ClusterError::NoSuchNode { node: i, count })
    }

    /// Node `i`'s next starts get `env` in their environment (e.g. `FAILPOINTS`); an empty
    /// `env` clears it. A running process keeps the environment it started with.
    ///
    /// # Errors
    /// When the node does not exist.
    pub fn set_env(&mut self, i: usize, env: Vec<(String, String)>) -> Result<(), ClusterError> {
        self.member_mut(i)?.env = env;
        Ok(())
    }

    /// Node `i`'s spec.
    ///
    /// # Errors
    /// When it does not exist.
    pub fn spec(&self, i: usize) -> Result<&NodeSpec, ClusterError> {
        Ok(&self.member(i)?.spec)
    }

    /// Every node's addresses, by id.
    pub fn addrs(&self) -> Vec<NodeAddrs> {
        self.members.iter().map(|m| m.spec.addrs).collect()
    }

    /// Whether node `i` runs, is paused or is down (also for a node that does not exist).
    pub fn state(&self, i: usize) -> NodeState {
        match self.members.get(i) {
            Some(m) if m.process.is_some() && m.paused => NodeState::Paused,
            Some(m) if m.process.is_some() => NodeState::Running,
            _ => NodeState::Down,
        }
    }

    /// Ids of the nodes in `state`.
    pub fn nodes_in(&self, state: NodeState) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.state(i) == state)
            .collect()
    }

    /// The PID of node `i`'s process, when it has one.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members
            .get(i)?
            .process
            .as_ref()
            .map(ServerProcess::pid)
    }

    /// Appends `---- <label>: <what> (unix_ms=..) ----` to node `i`'s log.
    pub fn mark(&self, i: usize, what: &str) {
        if let Some(m) = self.members.get(i) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            append_log(
                &m.spec.files.log,
                &format!("---- {}: {what} (unix_ms={now}) ----\n", self.label),
            );
        }
    }

    /// The last `lines` lines of node `i`'s log (empty for a node that does not exist).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        self.members
            .get(i)
            .map(|m| log_tail(&m.spec.files.log, lines))
            .unwrap_or_default()
    }

    /// Starts node `i` (which must be down) without waiting; see [`Self::poll_started`].
    ///
    /// # Errors
    /// When it is not down or cannot be spawned.
    pub fn spawn(&mut self, i: usize) -> Result<(), ClusterError> {
        let state = self.state(i);
        if state != NodeState::Down {
            return Err(ClusterError::WrongState {
                node: i,
                expected: "down",
                actual: state,
            });
        }
        self.mark(i, "start");
        let (bin, group, clean) = (self.bin.clone(), self.own_process_group, self.clean_env);
        let m = self.member_mut(i)?;
        let mut launch = Launch::new(&bin, &m.spec.files.config, &m.spec.files.log);
        launch.own_process_group = group;
        launch.clean_env = clean;
        launch.env.clone_from(&m.env);
        if let Some(parent) = m.spec.files.log.parent() {
            let _created = std::fs::create_dir_all(parent);
        }
        let process = launch
            .spawn()
            .map_err(|source| ClusterError::Process { node: i, source })?;
        m.process = Some(process);
        m.paused = false;
        Ok(())
    }

    /// Whether node `i` printed its readiness line yet (`Ok(None)` while not); checks that it
    /// announced the id and addresses of its spec.
    ///
    /// # Errors
    /// When it has no process, exited first (then it is down), or announced other addresses.
    pub fn poll_started(&mut self, i: usize) -> Result<Option<Ready>, ClusterError> {
        let m = self.member_mut(i)?;
        let Some(process) = m.process.as_mut() else {
            return Err(ClusterError::WrongState {
                node: i,
                expected: "started",
                actual: NodeState::Down,
            });
        };
        let ready = match process.poll_ready() {
            Ok(Some(ready)) => ready,
            Ok(None) => return Ok(None),
            Err(source) => {
                m.process = None;
                return Err(ClusterError::Process { node: i, source });
            }
        };
        let expected = Ready {
            node_id: u64::try_from(i).unwrap_or(u64::MAX),
            thrift: m.spec.addrs.thrift,
            admin: m.spec.addrs.admin,
            thrift_tls: ready.thrift_tls,
        };
        if ready != expected {
            return Err(ClusterError::WrongAnnouncement {
                node: i,
                expected: Box::new(expected),
                announced: Box::new(ready),
                tail: self.log_tail(i, TAIL_LINES),
            });
        }
        Ok(Some(ready))
    }

    /// Starts the nodes `ids` (all must be down) and waits up to `timeout` for each one's
    /// readiness line; they start in parallel, so none waits for another's start-up. Nodes
    /// that did start belong to the cluster even when another one fails.
    ///
    /// # Errors
    /// The first node that is not down, fails to spawn, exits, is not ready in time (it is
    /// stopped), or announces other addresses than its spec.
    pub fn start_many(&mut self, ids: &[usize], timeout: Duration) -> Result<(), ClusterError> {
        for &i in ids {
            self.spawn(i)?;
        }
        let deadline = Instant::now() + timeout;
        for &i in ids {
            loop {
                if self.poll_started(i)?.is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    let m = self.member_mut(i)?;
                    let mut process = m.process.take();
                    let source = match process.as_mut() {
                        Some(p) => match p.wait_ready(Duration::ZERO) {
                            Err(e) => e,
                            Ok(_) => continue,
                        },
                        None => continue,
                    };
                    return Err(ClusterError::Process { node: i, source });
                }
                std::thread::sleep(POLL);
            }
        }
        Ok(())
    }

    /// Node `i`'s process, taken out of the cluster (the node is down from now on).
    fn take_running(&mut self, i: usize) -> Result<ServerProcess, ClusterError> {
        let m = self.member_mut(i)?;
        m.paused = false;
        m.process.take().ok_or(ClusterError::WrongState {
            node: i,
            expected: "running",
            actual: NodeState::Down,
        })
    }

    /// Stops node `i` with SIGTERM (after SIGCONT when paused), SIGKILL after `timeout`.
    ///
    /// # Errors
    /// When it is down.
    pub fn stop(&mut self, i: usize, timeout: Duration) -> Result<Stopped, ClusterError> {
        self.mark(i, "SIGTERM");
        Ok(self.take_running(i)?.stop(timeout))
    }

    /// Stops every node that has a process at once: SIGCONT and SIGTERM to all, then waits for
    /// each within one `timeout` overall; SIGKILL for those still running then. Returns how
    /// each node stopped, in id order.
    pub fn stop_all(&mut self, timeout: Duration) -> Vec<(usize, Stopped)> {
        let ids: Vec<usize> = (0..self.len())
            .filter(|&i| self.state(i) != NodeState::Down)
            .collect();
        for &i in &ids {
            self.mark(i, "SIGTERM");
            let _resumed = self.signal(i, nix::sys::signal::Signal::SIGCONT);
            let _sent = self.signal(i, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        let mut stopped = Vec::with_capacity(ids.len());
        for i in ids {
            let Some(m) = self.members.get_mut(i) else {
                continue;
            };
            m.paused = false;
            let Some(mut process) = m.process.take() else {
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match process.wait_exit(left) {
                Some(status) => stopped.push((i, Stopped::Exited(status))),
                None => {
                    let _killed = process.kill9();
                    stopped.push((i, Stopped::Killed));
                }
            }
        }
        stopped
    }

    /// Kills node `i` with SIGKILL (a crash) and reaps it.
    ///
    /// # Errors
    /// When it is down, or not reaped within [`crate::process::REAP_TIMEOUT`].
    pub fn kill9(&mut self, i: usize) -> Result<(), ClusterError> {
        self.mark(i, "SIGKILL");
        self.take_running(i)?
            .kill9()
            .map_err(|source| ClusterError::Process { node: i, source })
    }

    /// Freezes node `i` with SIGSTOP: its sockets stay open, it answers nothing.
    ///
    /// # Errors
    /// When it is not running (or already paused).
    pub fn pause(&mut self, i: usize) -> Result<(), ClusterError> {
        self.expect_state(i, NodeState::Running, "running")?;
        self.mark(i, "SIGSTOP");
        self.signal(i, nix::sys::signal::Signal::SIGSTOP)?;
        self.member_mut(i)?.paused = true;
        Ok(())
    }

    /// Resumes node `i` with SIGCONT.
    ///
    /// # Errors
    /// When it is not paused.
    pub fn resume(&mut self, i: usize) -> Result<(), ClusterError> {
        self.expect_state(i, NodeState::Paused, "paused")?;
        self.signal(i, nix::sys::signal::Signal::SIGCONT)?;
        self.member_mut(i)?.paused = false;
        self.mark(i, "SIGCONT");
        Ok(())
    }

    fn expect_state(
        &self,
        i: usize,
        state: NodeState,
        expected: &'static str,
    ) -> Result<(), ClusterError> {
        self.member(i)?;
        let actual = self.state(i);
        if actual == state {
            Ok(())
        } else {
            Err(ClusterError::WrongState {
                node: i,
                expected,
                actual,
            })
        }
    }

    fn signal(&mut self, i: usize, signal: nix::sys::signal::Signal) -> Result<(), ClusterError> {
        let m = self.member_mut(i)?;
        let Some(process) = m.process.as_mut() else {
            return Err(ClusterError::WrongState {
                node: i,
                expected: "running",
                actual: NodeState::Down,
            });
        };
        process
            .signal(signal)
            .map_err(|source| ClusterError::Process { node: i, source })
    }

    /// Deletes node `i`'s data directory (a wiped disk). The node must be down.
    ///
    /// # Errors
    /// When it is not down or the directory cannot be deleted.
    pub fn wipe(&mut self, i: usize) -> Result<(), ClusterError> {
        self.expect_state(i, NodeState::Down, "down")?;
        let dir = self.member(i)?.spec.files.data.clone();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| ClusterError::Wipe {
                path: dir.clone(),
                source,
            })?;
        }
        self.mark(i, "data wiped");
        Ok(())
    }

    /// Nodes whose process exited on its own (not by our hand), with their status; their
    /// processes are forgotten (they count as down).
    pub fn reap_exited(&mut self) -> Vec<(usize, String)> {
        let mut exited = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            let status = m.process.as_mut().and_then(ServerProcess::try_exit);
            if let Some(status) = status {
                m.process = None;
                m.paused = false;
                exited.push((i, status.to_string()));
            }
        }
        exited
    }

    /// A blocking admin client of node `i` (timeout [`ADMIN_TIMEOUT`]).
    ///
    /// # Errors
    /// When the node does not exist.
    pub fn admin(&self, i: usize) -> Result<AdminClient, ClusterError> {
        let client = AdminClient::new(self.member(i)?.spec.addrs.admin)
            .with_timeout(ADMIN_TIMEOUT)
            .with_token(self.admin_token.clone());
        match &self.admin_ca {
            None => Ok(client),
            Some(ca) => client.with_ca(ca).map_err(|source| ClusterError::Admin {
                node: i,
                source: Box::new(source),
            }),
        }
    }

    /// `GET /status` of node `i`.
    ///
    /// # Errors
    /// When it does not answer within [`ADMIN_TIMEOUT`].
    pub fn status(&self, i: usize) -> Result<NodeStatus, ClusterError> {
        self.admin(i)?
            .status()
            .map_err(|source| ClusterError::Admin {
                node: i,
                source: Box::new(source),
            })
    }

    /// `GET /state/digest?version=V` of node `i`: a checksum of all user data visible at `V`.
    ///
    /// # Errors
    /// When it refuses (`V` above its applied version or below its horizon), does not answer,
    /// or answers for another version.
    pub fn digest(&self, i: usize, version: u64) -> Result<String, ClusterError> {
        let Digest {
            version: got,
            digest,
        } = self
            .admin(i)?
            .digest(Some(version))
            .map_err(|source| ClusterError::Admin {
                node: i,
                source: Box::new(source),
            })?;
        if got != version {
            return Err(ClusterError::DigestVersion {
                node: i,
                version,
                got,
            });
        }
        Ok(digest)
    }

    /// Waits up to `timeout` until `GET /ready` of node `i` answers 200.
    ///
    /// # Errors
    /// [`ClusterError::NotReady`] with the last answer.
    pub fn wait_ready(&self, i: usize, timeout: Duration) -> Result<(), ClusterError> {
        let admin = self.admin(i)?;
        let deadline = Instant::now() + timeout;
        loop {
            let last = match admin.ready() {
                Ok(Readiness::Ready) => return Ok(()),
                Ok(Readiness::NotReady(why)) => format!("HTTP 503: {why}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    node: i,
                    timeout,
                    last,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// [`Self::wait_ready`] for every running node, within one `timeout` overall.
    ///
    /// # Errors
    /// The first node that is not ready in time.
    pub fn wait_all_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        for i in self.nodes_in(NodeState::Running) {
            self.wait_ready(i, deadline.saturating_duration_since(Instant::now()))?;
        }
        Ok(())
    }

    /// The leader as the running nodes see it now, without waiting (see [`leader_of`]).
    pub fn current_leader(&self) -> Option<usize> {
        let views: Vec<(usize, NodeStatus)> = self
            .nodes_in(NodeState::Running)
            .into_iter()
            .filter_map(|i| self.status(i).ok().map(|s| (i, s)))
            .collect();
        leader_of(&views, self.len())
    }

    /// Waits up to `timeout` for a leader (see [`Self::current_leader`]).
    ///
    /// # Errors
    /// [`ClusterError::NoLeader`] with every node's status.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<usize, ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.current_leader() {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        let statuses: Vec<String> = (0..self.len())
            .map(|i| match self.status(i) {
                Ok(s) => format!("node {i}: {s:?}"),
                Err(e) => format!("node {i}: {e}"),
            })
            .collect();
        Err(ClusterError::NoLeader {
            timeout,
            statuses: statuses.join("\n"),
        })
    }
}
