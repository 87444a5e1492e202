//! A cluster of real `dolmen serve` processes on loopback, owned by the runner: configs, logs,
//! data directories, and every control the nemesis needs (crash, pause, restart, network
//! rules, leadership transfer), each bounded in time and none panicking.
//!
//! ```text
//!  Cluster::start ─ pick ports (thrift, peer, admin per node) ─ <run>/node-<i>.toml
//!      │ spawn `dolmen serve --config ..` (stdout+stderr appended to <run>/logs/node-<i>.log)
//!      │ kill9 / pause / resume / terminate / start_node        (signals by PID, our children)
//!      └ status / leader / digest / network rules / transfer ── admin HTTP ──▶ each node
//!  Drop ─ SIGKILL every child still running (also on errors, panics and Ctrl-C)
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use hyper::Method;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::admin;

mod config;

use config::{loopback, pick_ports, render_config};

/// How long a (re)started node may take to answer `GET /health`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node may take to exit (be reaped) after SIGKILL.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one admin HTTP call (a paused node never answers).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of `POST /cluster/transfer-leader` (it waits until the target leads).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll interval of every wait.
const POLL: Duration = Duration::from_millis(100);
/// Log lines quoted in error messages.
const TAIL_LINES: usize = 25;

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Number of nodes (ids `0..nodes`).
    pub nodes: usize,
    /// The `dolmen` binary.
    pub dolmen: PathBuf,
    /// The run directory: configs at the top, `logs/` and `data/` below.
    pub dir: PathBuf,
    /// Writes `[faults] allow_network_faults = true` (needed by partition/drop/delay/duplicate;
    /// a server that does not know the key refuses to start, so it is only set when needed).
    pub network_faults: bool,
    /// Writes `[faults] unsafe_stale_reads = true` (the planted bug `stale-reads`).
    pub stale_reads: bool,
}

/// A node's three fixed addresses.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct NodeAddrs {
    /// Thrift client API.
    pub thrift: SocketAddr,
    /// Peer (gRPC) API.
    pub peer: SocketAddr,
    /// Admin HTTP API.
    pub admin: SocketAddr,
}

/// Whether a node's process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Running and not stopped.
    Running,
    /// Stopped with SIGSTOP.
    Paused,
    /// No process (killed, terminated, or not started).
    Down,
}

/// One node: its files, addresses and (when running) its process.
struct Member {
    /// Passed to every start.
    config_path: PathBuf,
    /// stdout and stderr of every start, with harness markers between them.
    log_path: PathBuf,
    /// `[database] base_path`.
    data_dir: PathBuf,
    /// Fixed for the cluster's life (every config lists everyone's).
    addrs: NodeAddrs,
    /// The process we started; `None` when down. Signalled only while not reaped.
    child: Option<Child>,
    /// Between SIGSTOP and SIGCONT.
    paused: bool,
}

/// A running cluster. Dropping it kills every node it started (SIGKILL by PID).
pub struct Cluster {
    /// What was started.
    spec: ClusterSpec,
    /// Indexed by node id.
    members: Vec<Member>,
}

impl Cluster {
    /// Writes the configs, starts every node and waits (bounded) until every node answers
    /// `GET /ready` (a leader is known and a version applied).
    ///
    /// # Errors
    /// When a config cannot be written, a node does not start, or the cluster is not ready
    /// within `ready_timeout`; the message carries the failing node's log tail.
    pub async fn start(spec: ClusterSpec, ready_timeout: Duration) -> anyhow::Result<Cluster> {
        if spec.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        if !spec.dolmen.is_file() {
            bail!(
                "the dolmen binary {} does not exist (pass --dolmen PATH or set DOLMEN_BIN)",
                spec.dolmen.display()
            );
        }
        std::fs::create_dir_all(spec.dir.join("logs"))
            .with_context(|| format!("create {}/logs", spec.dir.display()))?;
        std::fs::create_dir_all(spec.dir.join("data"))
            .with_context(|| format!("create {}/data", spec.dir.display()))?;
        let ports = pick_ports(spec.nodes * 3)?;
        let addrs: Vec<NodeAddrs> = ports
            .chunks(3)
            .map(|p| NodeAddrs {
                thrift: loopback(p[0]),
                peer: loopback(p[1]),
                admin: loopback(p[2]),
            })
            .collect();
        let mut members = Vec::with_capacity(spec.nodes);
        for (i, a) in addrs.iter().enumerate() {
            let data_dir = spec.dir.join("data").join(format!("node-{i}"));
            let config_path = spec.dir.join(format!("node-{i}.toml"));
            let text = render_config(&spec, i, &addrs, &data_dir)?;
            std::fs::write(&config_path, text)
                .with_context(|| format!("write {}", config_path.display()))?;
            members.push(Member {
                config_path,
                log_path: spec.dir.join("logs").join(format!("node-{i}.log")),
                data_dir,
                addrs: *a,
                child: None,
                paused: false,
            });
        }
        // From here on the cluster owns every process: an early return kills them.
        let mut cluster = Cluster { spec, members };
        for i in 0..cluster.len() {
            cluster.spawn(i)?;
        }
        for i in 0..cluster.len() {
            cluster.wait_healthy(i).await?;
        }
        cluster.wait_ready(ready_timeout).await?;
        Ok(cluster)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the cluster has no node (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every node's addresses, by id.
    pub fn addrs(&self) -> Vec<NodeAddrs> {
        self.members.iter().map(|m| m.addrs).collect()
    }

    /// Whether node `i` runs, is paused or is down.
    pub fn state(&self, i: usize) -> NodeState {
        match self.members.get(i) {
            Some(m) if m.child.is_some() && m.paused => NodeState::Paused,
            Some(m) if m.child.is_some() => NodeState::Running,
            _ => NodeState::Down,
        }
    }

    /// Ids of the nodes in `state`.
    pub fn nodes_in(&self, state: NodeState) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.state(i) == state)
            .collect()
    }

    fn member(&self, i: usize) -> anyhow::Result<&Member> {
        self.members
            .get(i)
            .ok_or_else(|| anyhow!("node {i} does not exist (the cluster has {})", self.len()))
    }

    fn member_mut(&mut self, i: usize) -> anyhow::Result<&mut Member> {
        let n = self.members.len();
        self.members
            .get_mut(i)
            .ok_or_else(|| anyhow!("node {i} does not exist (the cluster has {n})"))
    }

    fn admin_addr(&self, i: usize) -> anyhow::Result<String> {
        Ok(self.member(i)?.addrs.admin.to_string())
    }

    /// Appends `---- chaos: <what> (unix_ms=..) ----` to node `i`'s log.
    pub fn mark(&self, i: usize, what: &str) {
        if let Some(m) = self.members.get(i) {
            append(
                &m.log_path,
                &format!("---- chaos: {what} (unix_ms={}) ----\n", unix_ms()),
            );
        }
    }

    /// The last `lines` lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        self.members
            .get(i)
            .map(|m| log_tail(&m.log_path, lines))
            .unwrap_or_default()
    }

    /// Spawns node `i` (which must be down) without waiting for it.
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        self.mark(i, "start");
        let dolmen = self.spec.dolmen.clone();
        let m = self.member_mut(i)?;
        if m.child.is_some() {
            bail!("node {i} is already running");
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log_path)
            .with_context(|| format!("open {}", m.log_path.display()))?;
        let mut cmd = Command::new(&dolmen);
        cmd.arg("serve")
            .arg("--config")
            .arg(&m.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log.try_clone().context("duplicate the log handle")?,
            ))
            .stderr(Stdio::from(log))
            // Its own process group: a Ctrl-C in the terminal reaches only the runner, which
            // stops the load, heals and then kills the nodes itself.
            .process_group(0)
            // A second line of defence behind `Drop for Cluster`.
            .kill_on_drop(true);
        // The environment beats the config file: a developer's DOLMEN_* or THRIFT_PORT must
        // not leak into the nodes.
        for (name, _) in std::env::vars_os() {
            let s = name.to_string_lossy();
            if s == "THRIFT_PORT" || s.starts_with("DOLMEN_") {
                cmd.env_remove(&name);
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {} serve for node {i}", dolmen.display()))?;
        m.child = Some(child);
        m.paused = false;
        Ok(())
    }

    /// Waits (at most [`START_TIMEOUT`]) until node `i` answers `GET /health`; fails early when
    /// its process exits.
    async fn wait_healthy(&mut self, i: usize) -> anyhow::Result<()> {
        let admin_addr = self.admin_addr(i)?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("not asked yet");
        for _ in 0..100_000 {
            if Instant::now() >= deadline {
                break;
            }
            let exited = match self.member_mut(i)?.child.as_mut() {
                Some(child) => child.try_wait().context("poll the node process")?,
                None => bail!("node {i} has no process"),
            };
            if let Some(status) = exited {
                self.member_mut(i)?.child = None;
                return Err(self.start_failure(i, &format!("exited during start-up ({status})")));
            }
            match dolmen_server::admin_client::call_raw(
                Method::GET,
                &admin_addr,
                "/health",
                ADMIN_TIMEOUT,
            )
            .await
            {
                Ok((status, _)) if status.is_success() => return Ok(()),
                Ok((status, _)) => last = format!("HTTP {status}"),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(POLL).await;
        }
        Err(self.start_failure(
            i,
            &format!("did not answer GET /health within {START_TIMEOUT:?} (last: {last})"),
        ))
    }

    fn start_failure(&self, i: usize, what: &str) -> anyhow::Error {
        let tail = self.log_tail(i, TAIL_LINES);
        let mut hint = String::new();
        if tail.contains("allow_network_faults") || tail.contains("unsafe_stale_reads") {
            hint = "\nhint: this dolmen does not know the [faults] keys the chaos suite needs \
                    (allow_network_faults for partition/drop/delay/duplicate, unsafe_stale_reads \
                    for --planted-bug stale-reads); build a dolmen that has them, or run with \
                    --faults kill,pause,transfer"
                .to_owned();
        }
        anyhow!(
            "node {i} {what}; log {}:\n{tail}{hint}",
            self.members
                .get(i)
                .map(|m| m.log_path.display().to_string())
                .unwrap_or_default()
        )
    }

    /// Starts node `i` (which must be down) and waits until it answers `GET /health` (not for
    /// a leader: a restarted member stays out of elections for a while).
    ///
    /// # Errors
    /// When it is running, cannot be spawned, exits, or does not answer in time.
    pub async fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_healthy(i).await
    }

    /// The PID of node `i`'s process, while it is ours and not reaped.
    fn pid(&self, i: usize) -> anyhow::Result<Pid> {
        let m = self.member(i)?;
        let raw = m
            .child
            .as_ref()
            .and_then(Child::id)
            .ok_or_else(|| anyhow!("node {i} has no running process"))?;
        Ok(Pid::from_raw(
            i32::try_from(raw).context("the pid does not fit an i32")?,
        ))
    }

    fn signal(&self, i: usize, signal: Signal) -> anyhow::Result<()> {
        // `pid` only answers for a child that tokio has not reaped, so the PID still names it.
        let pid = self.pid(i)?;
        kill(pid, signal).with_context(|| format!("send {signal} to node {i} (pid {pid})"))
    }

    /// Kills node `i` with SIGKILL (a crash: no flush, no goodbye) and reaps it.
    ///
    /// # Errors
    /// When it has no process or does not die within a few seconds.
    pub async fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        self.mark(i, "SIGKILL");
        self.signal(i, Signal::SIGKILL)?;
        let m = self.member_mut(i)?;
        m.paused = false;
        if let Some(mut child) = m.child.take() {
            match tokio::time::timeout(REAP_TIMEOUT, child.wait()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("reap node {i}: {e}"),
                Err(_) => bail!("node {i} did not die within {REAP_TIMEOUT:?} of SIGKILL"),
            }
        }
        Ok(())
    }

    /// Freezes node `i` with SIGSTOP: its sockets stay open, it answers nothing.
    ///
    /// # Errors
    /// When it is not running.
    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        if self.state(i) != NodeState::Running {
            bail!("node {i} is not running, it cannot be paused");
        }
        self.mark(i, "SIGSTOP");
        self.signal(i, Signal::SIGSTOP)?;
        self.member_mut(i)?.paused = true;
        Ok(())
    }

    /// Resumes node `i` with SIGCONT.
    ///
    /// # Errors
    /// When it has no process.
    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, Signal::SIGCONT)?;
        self.member_mut(i)?.paused = false;
        self.mark(i, "SIGCONT");
        Ok(())
    }

    /// Stops node `i` with SIGTERM (after SIGCONT when paused); SIGKILL after
    /// [`STOP_TIMEOUT`]. Returns the exit status when it exited on its own.
    ///
    /// # Errors
    /// When it has no process.
    pub async fn terminate(&mut self, i: usize) -> anyhow::Result<Option<ExitStatus>> {
        if self.state(i) == NodeState::Paused {
            self.resume(i)?;
        }
        self.mark(i, "SIGTERM");
        self.signal(i, Signal::SIGTERM)?;
        let Some(mut child) = self.member_mut(i)?.child.take() else {
            bail!("node {i} has no process");
        };
        if let Ok(Ok(status)) = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            return Ok(Some(status));
        }
        let _killed = child.start_kill();
        let _reaped = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
        Ok(None)
    }

    /// Checks whether any node's process exited on its own (not by our hand): returns
    /// `(node, status)` for each, and forgets their processes (they count as down).
    pub fn reap_exited(&mut self) -> Vec<(usize, String)> {
        let mut exited = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            let status = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = status {
                m.child = None;
                m.paused = false;
                exited.push((i, status.to_string()));
            }
        }
        exited
    }

    /// `GET /status` of node `i`.
    ///
    /// # Errors
    /// When the node does not answer within [`ADMIN_TIMEOUT`].
    pub async fn status(&self, i: usize) -> anyhow::Result<Value> {
        admin::call(Method::GET, &self.admin_addr(i)?, "/status", ADMIN_TIMEOUT).await
    }

    /// Node `i`'s `applied_version`.
    ///
    /// # Errors
    /// When the node does not answer or the field is missing.
    pub async fn applied(&self, i: usize) -> anyhow::Result<u64> {
        let s = self.status(i).await?;
        s["applied_version"]
            .as_u64()
            .ok_or_else(|| anyhow!("no applied_version in /status of node {i}: {s}"))
    }

    /// `/status` of every running (not paused) node, asked in parallel.
    pub async fn statuses(&self) -> Vec<(usize, anyhow::Result<Value>)> {
        let mut set = tokio::task::JoinSet::new();
        for i in self.nodes_in(NodeState::Running) {
            let addr = self.members[i].addrs.admin.to_string();
            set.spawn(async move {
                (
                    i,
                    admin::call(Method::GET, &addr, "/status", ADMIN_TIMEOUT).await,
                )
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(pair) = joined {
                out.push(pair);
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out
    }

    /// The leader as the running nodes see it now: a node claiming leadership in the highest
    /// claimed term that a majority of the cluster names as leader. `None` when there is none.
    pub async fn leader(&self) -> Option<usize> {
        let views: Vec<(usize, Value)> = self
            .statuses()
            .await
            .into_iter()
            .filter_map(|(i, s)| s.ok().map(|s| (i, s)))
            .collect();
        let (_, leader) = views
            .iter()
            .filter(|(_, s)| s["raft"]["role"] == "leader")
            .map(|(i, s)| (s["term"].as_u64().unwrap_or(0), *i))
            .max()?;
        let named = views
            .iter()
            .filter(|(_, s)| s["leader"].as_u64() == Some(leader as u64))
            .count();
        (named > self.len() / 2).then_some(leader)
    }

    /// Waits (at most `timeout`) for a leader (see [`Self::leader`]).
    ///
    /// # Errors
    /// When there is none by then, with every node's status.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        for _ in 0..100_000 {
            if Instant::now() >= deadline {
                break;
            }
            if let Some(l) = self.leader().await {
                return Ok(l);
            }
            tokio::time::sleep(POLL).await;
        }
        let views: Vec<String> = self
            .statuses()
            .await
            .into_iter()
            .map(|(i, s)| match s {
                Ok(s) => format!(
                    "node {i}: role={} leader={} term={} applied={}",
                    s["raft"]["role"], s["leader"], s["term"], s["applied_version"]
                ),
                Err(e) => format!("node {i}: {e:#}"),
            })
            .collect();
        bail!(
            "no leader named by a majority within {timeout:?}; running nodes:\n{}",
            views.join("\n")
        )
    }

    /// Waits (at most `timeout`) until every running node answers `GET /ready` with 200.
    ///
    /// # Errors
    /// When one does not, with its last answer and log tail.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for i in self.nodes_in(NodeState::Running) {
            let addr = self.admin_addr(i)?;
            let mut ready = false;
            let mut last = String::new();
            for _ in 0..100_000 {
                last = match dolmen_server::admin_client::call_raw(
                    Method::GET,
                    &addr,
                    "/ready",
                    ADMIN_TIMEOUT,
                )
                .await
                {
                    Ok((status, _)) if status.is_success() => {
                        ready = true;
                        break;
                    }
                    Ok((status, body)) => {
                        format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim())
                    }
                    Err(e) => format!("{e:#}"),
                };
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
            if !ready {
                return Err(self.start_failure(
                    i,
                    &format!("was not ready (GET /ready) within {timeout:?}; last: {last}"),
                ));
            }
        }
        Ok(())
    }

    /// Replaces node `i`'s network fault rules (for the calls it sends to peers).
    ///
    /// # Errors
    /// When the node refuses (e.g. `[faults] allow_network_faults` is off, or the endpoint does
    /// not exist) or does not answer.
    pub async fn set_rules(&self, i: usize, rules: Vec<Value>) -> anyhow::Result<Value> {
        admin::call_json(
            Method::PUT,
            &self.admin_addr(i)?,
            "/debug/network-faults",
            &json!({ "rules": rules }),
            ADMIN_TIMEOUT,
        )
        .await
        .map_err(|e| network_faults_error(i, e))
    }

    /// Clears node `i`'s network fault rules.
    ///
    /// # Errors
    /// As [`Self::set_rules`].
    pub async fn clear_rules(&self, i: usize) -> anyhow::Result<()> {
        let (status, body) = dolmen_server::admin_client::call_raw(
            Method::DELETE,
            &self.admin_addr(i)?,
            "/debug/network-faults",
            ADMIN_TIMEOUT,
        )
        .await
        .map_err(|e| network_faults_error(i, e))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(network_faults_error(
                i,
                anyhow!(
                    "DELETE /debug/network-faults answered {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                ),
            ))
        }
    }

    /// `GET /debug/network-faults` on every running node: fails early, with a clear message,
    /// when the server does not support network faults.
    ///
    /// # Errors
    /// When a node refuses or does not answer.
    pub async fn probe_network_faults(&self) -> anyhow::Result<()> {
        for i in self.nodes_in(NodeState::Running) {
            admin::call(
                Method::GET,
                &self.admin_addr(i)?,
                "/debug/network-faults",
                ADMIN_TIMEOUT,
            )
            .await
            .map_err(|e| network_faults_error(i, e))?;
        }
        Ok(())
    }

    /// Asks the leader to hand leadership to `to` and waits (bounded) for the answer.
    ///
    /// # Errors
    /// When there is no leader or it refuses.
    pub async fn transfer_leader(&self, leader: usize, to: usize) -> anyhow::Result<Value> {
        self.mark(to, &format!("transfer-leader {leader} -> {to}"));
        admin::call(
            Method::POST,
            &self.admin_addr(leader)?,
            &format!("/cluster/transfer-leader?to={to}"),
            TRANSFER_TIMEOUT,
        )
        .await
    }

    /// `GET /state/digest?version=V` of node `i`: a checksum of all user data visible at `V`.
    ///
    /// # Errors
    /// When the node refuses (`V` outside `[horizon, applied]`) or does not answer.
    pub async fn digest(&self, i: usize, version: u64) -> anyhow::Result<String> {
        let path = format!("/state/digest?version={version}");
        let j = admin::call(Method::GET, &self.admin_addr(i)?, &path, ADMIN_TIMEOUT).await?;
        if j["version"].as_u64() != Some(version) {
            bail!("node {i} answered a digest for another version than {version}: {j}");
        }
        j["digest"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("node {i} answered no digest string: {j}"))
    }

    /// Undoes every fault: SIGCONT to paused nodes, starts down nodes, clears network rules
    /// (when enabled). Returns what it did, as `(action, node)` pairs.
    ///
    /// # Errors
    /// When a node cannot be resumed or restarted, or its rules cannot be cleared.
    pub async fn heal(&mut self) -> anyhow::Result<Vec<(&'static str, usize)>> {
        let mut done = Vec::new();
        for i in self.nodes_in(NodeState::Paused) {
            self.resume(i)?;
            done.push(("resume", i));
        }
        for i in self.nodes_in(NodeState::Down) {
            self.start_node(i).await?;
            done.push(("restart", i));
        }
        if self.spec.network_faults {
            for i in 0..self.len() {
                self.clear_rules(i).await?;
            }
        }
        Ok(done)
    }

    /// Deletes every node's data directory; the nodes must be down (call after
    /// [`Self::shutdown`]).
    pub fn remove_data(&self) {
        for m in &self.members {
            if m.child.is_none() && m.data_dir.exists() {
                let _removed = std::fs::remove_dir_all(&m.data_dir);
            }
        }
    }

    /// Stops every node (SIGTERM, SIGKILL after [`STOP_TIMEOUT`]); returns nodes that did not
    /// exit cleanly.
    pub async fn shutdown(&mut self) -> Vec<String> {
        let mut unclean = Vec::new();
        for i in 0..self.len() {
            if self.state(i) == NodeState::Down {
                continue;
            }
            match self.terminate(i).await {
                Ok(Some(s)) if s.success() => {}
                Ok(Some(s)) => unclean.push(format!("node {i} exited with {s} after SIGTERM")),
                Ok(None) => unclean.push(format!(
                    "node {i} did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed)"
                )),
                Err(e) => unclean.push(format!("node {i}: {e:#}")),
            }
        }
        unclean
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(child) = m.child.as_mut() {
                // SIGKILL by PID; tokio refuses once the child is reaped, so it is ours.
                let _killed = child.start_kill();
            }
        }
    }
}

/// Names the node and the likely cause when a network-fault call fails.
fn network_faults_error(i: usize, e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    let hint = if text.contains("404") {
        " (this dolmen has no /debug/network-faults endpoint: build one with the network-fault \
         layer, or run with --faults kill,pause,transfer)"
    } else if text.contains("403") || text.contains("409") {
        " (is [faults] allow_network_faults = true in the node's config?)"
    } else {
        ""
    };
    anyhow!("network faults on node {i}: {text}{hint}")
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn append(path: &Path, text: &str) {
    if let Ok(mut f) = File::options().create(true).append(true).open(path) {
        let _written = f.write_all(text.as_bytes());
    }
}

/// The last `lines` lines of the file at `path` (empty when unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
