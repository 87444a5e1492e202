//! A Raft cluster of `dolmen serve` processes on loopback (the replicated [`TestCluster`]), the
//! per-node controls robustness tests need (crash, SIGTERM, SIGSTOP, restart), and a recording
//! write load whose outcomes are checked against what the cluster serves afterwards.
//!
//! ```text
//!  ReplicatedBuilder ─ pick ports (thrift, peer, admin per node) ─ node-<i>.toml ─┐
//!      ReplicatedCluster ── Node::spawn (standalone.rs) ×n ◀───────────────────────┘
//!          │ kill9 / stop / start / sigstop / sigcont            (by PID)
//!          │ status / leader / digest / wait_* ── admin HTTP (admin.rs) ──▶ each node
//!          └ WriteLoad threads ── Thrift ──▶ nodes; every outcome recorded as a WriteRecord
//! ```

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use tempfile::TempDir;
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport, TIoChannel, TTcpChannel};

use crate::admin::{get_json, http_get};
use crate::client::{op_set, range_all_absent, KvClient, IO_TIMEOUT};
use crate::cluster::TestCluster;
use crate::kvstore::{
    AtomicCommitRequest, GetRangeRequest, SetKeyRequest, TTransactionalKVSyncClient,
    TransactionalKVSyncClient,
};
use crate::standalone::{append_log, log_tail, Node, StandaloneBuilder};

/// How long a cluster may take to elect a leader (at start, after a crash, after a restart).
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to apply up to a version it is told about.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines per node in panic messages.
const TAIL_LINES: usize = 30;
/// Poll interval of every wait.
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------

/// A `[section] key = value` override.
type Setting = (String, String, toml::Value);

/// Builds the configurations of a [`ReplicatedCluster`]: the standalone test defaults
/// ([`StandaloneBuilder::new`]) plus `[deployment] mode = "replicated"`, a 500 ms election
/// timeout and 100 ms heartbeats, pre-picked ports, every node's endpoints, and
/// `[consensus] bootstrap = true` on node 0 only. [`Self::set`] and [`Self::set_node`] override
/// any of it.
#[derive(Clone, Debug)]
pub struct ReplicatedBuilder {
    /// Number of nodes.
    nodes: usize,
    /// Applied to every node after the computed per-node values.
    common: Vec<Setting>,
    /// Applied to one node last: (node index, setting).
    per_node: Vec<(usize, Setting)>,
    /// How many nodes form the initial cluster (the rest are configured, not started).
    initial: Option<usize>,
    /// Later nodes get `[consensus] join` = the initial nodes' admin addresses.
    joining: bool,
}

impl Default for ReplicatedBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplicatedBuilder {
    /// Three nodes with the test defaults.
    pub fn new() -> Self {
        Self {
            nodes: 3,
            common: Vec::new(),
            per_node: Vec::new(),
            initial: None,
            joining: false,
        }
        .set("deployment", "mode", "replicated")
        .set("consensus", "election_timeout_ms", 500)
        .set("consensus", "heartbeat_interval_ms", 100)
    }

    /// The number of nodes (default 3).
    pub fn nodes(mut self, n: usize) -> Self {
        assert!(n >= 1, "a cluster needs at least one node, got {n}");
        self.nodes = n;
        self
    }

    /// Only nodes `0..k` form (and start with) the cluster; nodes `k..` get configs that list
    /// every node and are started later by the test, to be added with
    /// [`ReplicatedCluster::add_member`].
    pub fn initial(mut self, k: usize) -> Self {
        assert!(
            (1..=self.nodes).contains(&k),
            "the initial cluster must have 1..={} nodes, got {k}",
            self.nodes
        );
        self.initial = Some(k);
        self
    }

    /// Nodes after the initial cluster (see [`Self::initial`]) join by themselves:
    /// `[consensus] join` lists the initial nodes' admin addresses.
    pub fn joining(mut self) -> Self {
        self.joining = true;
        self
    }

    /// Sets `[section] key = value` on every node, replacing earlier values.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<toml::Value>) -> Self {
        self.common
            .push((section.to_owned(), key.to_owned(), value.into()));
        self
    }

    /// Sets `[section] key = value` on node `i` only (applied after [`Self::set`]).
    pub fn set_node(
        mut self,
        i: usize,
        section: &str,
        key: &str,
        value: impl Into<toml::Value>,
    ) -> Self {
        self.per_node
            .push((i, (section.to_owned(), key.to_owned(), value.into())));
        self
    }

    /// The TOML text of node `i` given every node's addresses, with data under `base_path`.
    fn render(&self, i: usize, addrs: &[NodeAddrs], base_path: &Path) -> String {
        // An initial node lists only the initial cluster (what node 0 bootstraps); a later node
        // lists everyone (it only needs itself in the lists).
        let initial = self.initial.unwrap_or(self.nodes);
        let listed = if i < initial {
            &addrs[..initial]
        } else {
            addrs
        };
        let list = |f: fn(&NodeAddrs) -> SocketAddr| -> Vec<String> {
            listed.iter().map(|a| f(a).to_string()).collect()
        };
        let mut b = StandaloneBuilder::new()
            .set(
                "deployment",
                "instance_id",
                i64::try_from(i).expect("node index fits i64"),
            )
            .set("deployment", "replica_endpoints", list(|a| a.thrift))
            .set("consensus", "endpoints", list(|a| a.peer))
            .set("consensus", "bootstrap", i == 0)
            .set("server", "port", i64::from(addrs[i].thrift.port()))
            .set("server", "admin_port", i64::from(addrs[i].admin.port()));
        if self.joining && i >= initial {
            let admins: Vec<String> = addrs[..initial]
                .iter()
                .map(|a| a.admin.to_string())
                .collect();
            b = b.set("consensus", "join", admins);
        }
        for (section, key, value) in &self.common {
            b = b.set(section, key, value.clone());
        }
        for (_, (section, key, value)) in self.per_node.iter().filter(|(n, _)| *n == i) {
            b = b.set(section, key, value.clone());
        }
        b.render(base_path)
    }

    /// Writes every node's config into a fresh temporary directory, starts the nodes, and waits
    /// until every node answers `GET /ready` with 200.
    ///
    /// # Panics
    /// When a node does not start, or the cluster is not ready within [`LEADER_TIMEOUT`].
    pub fn start(self) -> ReplicatedCluster {
        let dir = tempfile::Builder::new()
            .prefix("dolmen-cluster-")
            .tempdir()
            .expect("create a temp dir for the cluster");
        let ports = pick_ports(self.nodes * 3);
        let addrs: Vec<NodeAddrs> = ports
            .chunks(3)
            .map(|p| NodeAddrs {
                thrift: loopback(p[0]),
                peer: loopback(p[1]),
                admin: loopback(p[2]),
            })
            .collect();
        let mut members = Vec::with_capacity(self.nodes);
        let mut election_timeout = Duration::from_millis(1000);
        for (i, a) in addrs.iter().enumerate() {
            let text = self.render(i, &addrs, &dir.path().join(format!("data-{i}")));
            if i == 0 {
                election_timeout = election_timeout_of(&text);
            }
            let config_path = dir.path().join(format!("node-{i}.toml"));
            std::fs::write(&config_path, text)
                .unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
            members.push(Member {
                config_path,
                log_path: dir.path().join(format!("node-{i}.log")),
                addrs: *a,
                process: None,
                frozen: false,
            });
        }
        let mut cluster = ReplicatedCluster {
            dir: Some(dir),
            members,
            election_timeout,
        };
        // The cluster owns every process from here on: a panic below still kills them.
        let all: Vec<usize> = (0..self.initial.unwrap_or(self.nodes)).collect();
        cluster.start_many(&all);
        cluster.wait_all_ready(LEADER_TIMEOUT);
        cluster
    }
}

/// `[consensus] election_timeout_ms` of a rendered config.
fn election_timeout_of(text: &str) -> Duration {
    let table: toml::Table = toml::from_str(text).expect("rendered config is valid TOML");
    let ms = table
        .get("consensus")
        .and_then(|c| c.get("election_timeout_ms"))
        .and_then(toml::Value::as_integer)
        .unwrap_or(1000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(1000))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Picks `n` distinct free loopback ports, below the kernel's ephemeral range when possible so
/// that no outgoing connection (ours, or a peer's) takes a stopped node's port before it
/// restarts. Every candidate is bound while picking, so the `n` are free at return.
fn pick_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low);
    let mut held = Vec::with_capacity(n);
    let mut guard = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let handed_out = guard.get_or_insert_with(HashSet::new);
    if high > low + 1000 {
        let span = u32::from(high - low);
        let mut x = seed();
        for _ in 0..20_000 {
            if held.len() == n {
                break;
            }
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let offset = u16::try_from((x >> 33) % u64::from(span)).expect("offset < span");
            let port = low + offset;
            if handed_out.contains(&port) {
                continue;
            }
            if let Ok(l) = TcpListener::bind(loopback(port)) {
                handed_out.insert(port);
                held.push(l);
            }
        }
    }
    // Fallback (tiny or unknown ephemeral range): let the kernel choose.
    while held.len() < n {
        let l = TcpListener::bind(loopback(0)).expect("bind 127.0.0.1:0 to pick a port");
        let port = l
            .local_addr()
            .expect("local_addr of a bound listener")
            .port();
        if handed_out.insert(port) {
            held.push(l);
        }
    }
    held.iter()
        .map(|l| {
            l.local_addr()
                .expect("local_addr of a bound listener")
                .port()
        })
        .collect()
}

/// A per-call seed: process id, clock, and a counter.
fn seed() -> u64 {
    static CALLS: Mutex<u64> = Mutex::new(0);
    let mut calls = CALLS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *calls += 1;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
    (u64::from(std::process::id()) << 32) ^ nanos ^ (*calls).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

// ---------------------------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------------------------

/// The three addresses of one node, fixed for the cluster's life.
#[derive(Clone, Copy, Debug)]
struct NodeAddrs {
    thrift: SocketAddr,
    peer: SocketAddr,
    admin: SocketAddr,
}

/// One node of the cluster: its files, addresses and (when running) process.
struct Member {
    /// Passed to every start of this node.
    config_path: PathBuf,
    /// Receives the node's stdout and stderr across restarts, with harness markers.
    log_path: PathBuf,
    /// Fixed ports (every node's config lists everyone's).
    addrs: NodeAddrs,
    /// The running process; `None` after kill9/stop until the next start.
    process: Option<Node>,
    /// True between `sigstop` and `sigcont`.
    frozen: bool,
}

/// A running cluster of `dolmen serve` processes in one temporary directory.
///
/// Dropping it kills every process by PID (SIGKILL, then reaped) and deletes the directory
/// (kept, with its path printed, when `DOLMEN_TEST_KEEP` is set). When dropped during a panic it
/// prints every node's log tail to stderr.
pub struct ReplicatedCluster {
    /// Owns configs, data and logs; `Option` so `Drop` can keep it on request.
    dir: Option<TempDir>,
    /// Indexed by node id.
    members: Vec<Member>,
    /// `[consensus] election_timeout_ms` of the nodes.
    election_timeout: Duration,
}

impl ReplicatedCluster {
    /// A builder for a three-node cluster with the test defaults.
    pub fn builder() -> ReplicatedBuilder {
        ReplicatedBuilder::new()
    }

    /// Starts a three-node cluster with the test defaults and waits until it is ready.
    pub fn start_default() -> Self {
        ReplicatedBuilder::new().start()
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.members.len()
    }

    fn member(&self, i: usize) -> &Member {
        self.members.get(i).unwrap_or_else(|| {
            panic!(
                "node {i} does not exist (the cluster has {})",
                self.members.len()
            )
        })
    }

    fn member_mut(&mut self, i: usize) -> &mut Member {
        let n = self.members.len();
        self.members
            .get_mut(i)
            .unwrap_or_else(|| panic!("node {i} does not exist (the cluster has {n})"))
    }

    /// Node `i`'s data directory (`[database] base_path`).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        let dir = self
            .dir
            .as_ref()
            .expect("the cluster owns its directory while alive");
        dir.path().join(format!("data-{i}"))
    }

    /// Deletes node `i`'s data (a wiped disk). The node must be down.
    ///
    /// # Panics
    /// When the node is running or the directory cannot be deleted.
    pub fn wipe(&self, i: usize) {
        assert!(
            self.member(i).process.is_none(),
            "expected node {i} to be down before its data is wiped"
        );
        let dir = self.data_dir(i);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("wipe {}: {e}", dir.display()));
        }
        self.mark(i, "data wiped");
    }

    /// `POST path` on the leader's admin API; the JSON answer, or the error text.
    pub fn leader_post(&self, path: &str) -> Result<serde_json::Value, String> {
        let leader = self.wait_for_leader(LEADER_TIMEOUT);
        crate::admin::http_post(self.admin_endpoint(leader), path, "")?
            .json()
            .map_err(|e| format!("POST {path} on node {leader}: {e}"))
    }

    /// Adds node `i` (which must be running) to the membership through the leader; returns
    /// the outcome (`changed` or `unchanged`).
    pub fn add_member(&self, i: usize) -> Result<String, String> {
        let a = self.member(i).addrs;
        let path = format!(
            "/cluster/add-node?id={i}&client_addr={}&peer_addr={}&admin_addr={}",
            a.thrift, a.peer, a.admin
        );
        self.mark(i, "add-node");
        Ok(self.leader_post(&path)?["outcome"].to_string())
    }

    /// Removes node `i` from the membership through the leader.
    pub fn remove_member(&self, i: usize) -> Result<String, String> {
        self.mark(i, "remove-node");
        Ok(self.leader_post(&format!("/cluster/remove-node?id={i}"))?["outcome"].to_string())
    }

    /// Hands leadership to node `to` through the current leader.
    pub fn transfer_leader(&self, to: usize) -> Result<String, String> {
        self.mark(to, "transfer-leader to this node");
        Ok(self.leader_post(&format!("/cluster/transfer-leader?to={to}"))?["outcome"].to_string())
    }

    /// The nodes' `[consensus] election_timeout_ms`.
    pub fn election_timeout(&self) -> Duration {
        self.election_timeout
    }

    /// Node `i`'s Thrift client address (fixed across restarts).
    pub fn thrift_endpoint(&self, i: usize) -> SocketAddr {
        self.member(i).addrs.thrift
    }

    /// Node `i`'s admin HTTP address (fixed across restarts).
    pub fn admin_endpoint(&self, i: usize) -> SocketAddr {
        self.member(i).addrs.admin
    }

    /// Node `i`'s peer (gRPC) address.
    pub fn peer_endpoint(&self, i: usize) -> SocketAddr {
        self.member(i).addrs.peer
    }

    /// True when node `i` has a process that is not stopped with SIGSTOP.
    pub fn is_running(&self, i: usize) -> bool {
        let m = self.member(i);
        m.process.is_some() && !m.frozen
    }

    /// Ids of the nodes that are running and not frozen.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.is_running(i))
            .collect()
    }

    /// Writes `---- harness: <what> ----` with a timestamp into node `i`'s log.
    pub fn mark(&self, i: usize, what: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        append_log(
            &self.member(i).log_path,
            &format!("---- harness: {what} (unix_ms={now}) ----\n"),
        );
    }

    /// Starts node `i` with its config and data; waits for its readiness line (not for a
    /// leader: see [`Self::wait_ready`]).
    ///
    /// # Panics
    /// When the node is already running, does not print its readiness line in time, or
    /// announces other addresses than its config gives.
    pub fn start(&mut self, i: usize) {
        self.start_many(&[i]);
    }

    /// [`Self::start`] for several nodes at once (in parallel, so that none waits for another's
    /// start-up). Nodes that did start belong to the cluster even when another one fails.
    ///
    /// # Panics
    /// As [`Self::start`], for the first node that failed.
    pub fn start_many(&mut self, ids: &[usize]) {
        for &i in ids {
            assert!(
                self.member(i).process.is_none(),
                "expected node {i} to be down before start"
            );
            self.mark(i, "start");
        }
        let spawned: Vec<(usize, std::thread::Result<Node>)> = std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .iter()
                .map(|&i| {
                    let m = self.member(i);
                    let (config, log) = (m.config_path.as_path(), m.log_path.as_path());
                    (i, s.spawn(move || Node::spawn(config, log)))
                })
                .collect();
            handles.into_iter().map(|(i, h)| (i, h.join())).collect()
        });
        let mut first_failure = None;
        for (i, result) in spawned {
            match result {
                Ok(node) => {
                    let announced = (node.node_id, node.thrift, node.admin);
                    let m = self.member_mut(i);
                    m.process = Some(node);
                    m.frozen = false;
                    let expected = (
                        u64::try_from(i).expect("node index fits u64"),
                        m.addrs.thrift,
                        m.addrs.admin,
                    );
                    if announced != expected && first_failure.is_none() {
                        first_failure = Some(format!(
                            "expected node {i} to announce (node id, thrift, admin) = \
                             {expected:?} from its config, got {announced:?}; log tail:\n{}",
                            self.log_tail(i, TAIL_LINES)
                        ));
                    }
                }
                Err(payload) => {
                    if first_failure.is_none() {
                        let why = payload
                            .downcast_ref::<String>()
                            .cloned()
                            .unwrap_or_else(|| "no message".to_owned());
                        first_failure = Some(format!("node {i} failed to start: {why}"));
                    }
                }
            }
        }
        if let Some(message) = first_failure {
            panic!("{message}");
        }
    }

    /// Stops node `i` with SIGTERM and waits for it to exit.
    ///
    /// # Panics
    /// When it is not running, or does not exit 0 within the stop timeout.
    pub fn stop(&mut self, i: usize) {
        self.mark(i, "SIGTERM");
        let m = self.member_mut(i);
        let node = m
            .process
            .take()
            .unwrap_or_else(|| panic!("expected node {i} to be running to stop it"));
        if m.frozen {
            m.frozen = false;
            let mut node = node;
            node.signal(Signal::SIGCONT);
            node.stop_clean(&m.log_path);
        } else {
            node.stop_clean(&m.log_path);
        }
    }

    /// Kills node `i` with SIGKILL (a crash) and reaps it.
    ///
    /// # Panics
    /// When it is not running.
    pub fn kill9(&mut self, i: usize) {
        self.mark(i, "SIGKILL");
        let m = self.member_mut(i);
        m.frozen = false;
        m.process
            .take()
            .unwrap_or_else(|| panic!("expected node {i} to be running to kill it"))
            .kill9();
    }

    /// Freezes node `i` with SIGSTOP: its sockets stay open but it answers nothing.
    ///
    /// # Panics
    /// When it is not running or already frozen.
    pub fn sigstop(&mut self, i: usize) {
        self.mark(i, "SIGSTOP");
        let m = self.member_mut(i);
        assert!(!m.frozen, "expected node {i} not to be frozen already");
        m.process
            .as_mut()
            .unwrap_or_else(|| panic!("expected node {i} to be running to SIGSTOP it"))
            .signal(Signal::SIGSTOP);
        m.frozen = true;
    }

    /// Resumes node `i` with SIGCONT.
    ///
    /// # Panics
    /// When it is not frozen.
    pub fn sigcont(&mut self, i: usize) {
        let m = self.member_mut(i);
        assert!(m.frozen, "expected node {i} to be frozen to SIGCONT it");
        m.process
            .as_mut()
            .unwrap_or_else(|| panic!("expected node {i} to have a process to SIGCONT"))
            .signal(Signal::SIGCONT);
        m.frozen = false;
        self.mark(i, "SIGCONT");
    }

    /// The last `lines` lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        log_tail(&self.member(i).log_path, lines)
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.member(i).log_path
    }

    /// The last `lines` lines of every node's log, each under a header.
    pub fn log_tails(&self, lines: usize) -> String {
        (0..self.members.len())
            .map(|i| {
                format!(
                    "==== node {i} ({}) ====\n{}",
                    self.member(i).log_path.display(),
                    self.log_tail(i, lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Panics with `message` and every node's log tail.
    #[track_caller]
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n---- node logs (last {TAIL_LINES} lines each) ----\n{}",
            self.log_tails(TAIL_LINES)
        )
    }

    /// `GET /status` of node `i`.
    ///
    /// # Errors
    /// When the node does not answer 200 with JSON within the HTTP timeout.
    pub fn try_status(&self, i: usize) -> Result<serde_json::Value, String> {
        get_json(self.admin_endpoint(i), "/status")
    }

    /// `GET /status` of node `i`.
    ///
    /// # Panics
    /// When the node does not answer, with every node's log tail.
    pub fn status(&self, i: usize) -> serde_json::Value {
        self.try_status(i)
            .unwrap_or_else(|e| self.fail(&format!("expected /status of node {i}: {e}")))
    }

    /// Node `i`'s `applied_version` from `/status`.
    ///
    /// # Errors
    /// When the node does not answer or the field is missing.
    pub fn try_applied(&self, i: usize) -> Result<u64, String> {
        let s = self.try_status(i)?;
        s["applied_version"]
            .as_u64()
            .ok_or_else(|| format!("expected applied_version in /status of node {i}: {s}"))
    }

    /// Node `i`'s `applied_version`.
    ///
    /// # Panics
    /// When the node does not answer.
    pub fn applied(&self, i: usize) -> u64 {
        self.try_applied(i)
            .unwrap_or_else(|e| self.fail(&format!("expected node {i}'s applied version: {e}")))
    }

    /// Waits until node `i` has applied version `v` or later.
    ///
    /// # Panics
    /// After [`APPLY_TIMEOUT`], with the last answer and the log tails.
    pub fn wait_applied_at_least(&self, i: usize, v: u64) {
        let mut last = Err(String::from("not asked yet"));
        if !wait_until(APPLY_TIMEOUT, || {
            last = self.try_applied(i);
            last.as_ref().is_ok_and(|&a| a >= v)
        }) {
            self.fail(&format!(
                "expected node {i} to apply version {v} within {APPLY_TIMEOUT:?}, last: {last:?}"
            ));
        }
    }

    /// Waits until `GET /ready` of node `i` answers 200.
    ///
    /// # Panics
    /// After `timeout`, with the last answer and the log tails.
    pub fn wait_ready(&self, i: usize, timeout: Duration) {
        let mut last = String::from("not asked yet");
        if !wait_until(timeout, || {
            match http_get(self.admin_endpoint(i), "/ready") {
                Ok(r) if r.status == 200 => true,
                Ok(r) => {
                    last = format!("HTTP {}: {}", r.status, r.body.trim());
                    false
                }
                Err(e) => {
                    last = e;
                    false
                }
            }
        }) {
            self.fail(&format!(
                "expected node {i} to be ready (GET /ready = 200) within {timeout:?}, last: {last}"
            ));
        }
    }

    /// [`Self::wait_ready`] for every running node.
    pub fn wait_all_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for i in self.running() {
            self.wait_ready(i, deadline.saturating_duration_since(Instant::now()));
        }
    }

    /// The leader as the running nodes see it now, without waiting: a node whose `/status`
    /// says it is the leader, in the highest term claimed, and that a majority of its voters
    /// (itself included) names as leader.
    pub fn current_leader(&self) -> Option<usize> {
        let views: Vec<(usize, serde_json::Value)> = self
            .running()
            .into_iter()
            .filter_map(|i| self.try_status(i).ok().map(|s| (i, s)))
            .collect();
        let claims = views
            .iter()
            .filter(|(_, s)| s["raft"]["role"] == "leader")
            .map(|(i, s)| (s["term"].as_u64().unwrap_or(0), *i));
        let (_, leader) = claims.max()?;
        let named = views
            .iter()
            .filter(|(_, s)| s["leader"].as_u64() == u64::try_from(leader).ok())
            .count();
        // A majority of the voters the leader reports (the whole cluster before any
        // membership change).
        let voters = views
            .iter()
            .find(|(i, _)| *i == leader)
            .and_then(|(_, s)| s["raft"]["members"].as_array())
            .map_or(self.members.len(), |m| {
                m.iter().filter(|m| m["voter"] == true).count()
            });
        (named > voters / 2).then_some(leader)
    }

    /// The leader, waiting up to [`LEADER_TIMEOUT`] for one; `None` when there is none by then.
    pub fn leader(&self) -> Option<usize> {
        let mut found = None;
        wait_until(LEADER_TIMEOUT, || {
            found = self.current_leader();
            found.is_some()
        });
        found
    }

    /// Waits up to `timeout` for a leader (see [`Self::current_leader`]).
    ///
    /// # Panics
    /// When there is none by then, with every node's `/status` and log tail.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let mut found = None;
        if wait_until(timeout, || {
            found = self.current_leader();
            found.is_some()
        }) {
            if let Some(l) = found {
                return l;
            }
        }
        let statuses: Vec<String> = (0..self.members.len())
            .map(|i| match self.try_status(i) {
                Ok(s) => format!("node {i}: {s}"),
                Err(e) => format!("node {i}: {e}"),
            })
            .collect();
        self.fail(&format!(
            "expected a leader named by a majority within {timeout:?}; statuses:\n{}",
            statuses.join("\n")
        ))
    }

    /// The running nodes other than the leader, in id order.
    pub fn followers(&self) -> Vec<usize> {
        let leader = self.wait_for_leader(LEADER_TIMEOUT);
        self.running()
            .into_iter()
            .filter(|&i| i != leader)
            .collect()
    }

    /// `GET /state/digest?version=V` of node `i`: a checksum of all user data visible at `V`.
    ///
    /// # Errors
    /// When the node refuses (`V` above its applied version or below its horizon) or does not
    /// answer.
    pub fn digest(&self, i: usize, version: u64) -> Result<String, String> {
        let path = format!("/state/digest?version={version}");
        let j = get_json(self.admin_endpoint(i), &path)?;
        if j["version"].as_u64() != Some(version) {
            return Err(format!(
                "expected version {version} in the digest answer: {j}"
            ));
        }
        j["digest"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("expected a digest string: {j}"))
    }

    /// Waits until every node in `nodes` has applied at least `at_least`, then compares their
    /// digests at `V` = the smallest applied version among them; returns `(V, digest)`.
    /// Retries (bounded by `timeout`) while a node refuses `V` (e.g. below its horizon).
    ///
    /// # Panics
    /// When two nodes give different digests at the same version (divergent replicas), or
    /// nothing comparable is found within `timeout`.
    pub fn converged_digest(
        &self,
        nodes: &[usize],
        at_least: u64,
        timeout: Duration,
    ) -> (u64, String) {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("not tried");
        while Instant::now() < deadline {
            let applied: Result<Vec<u64>, String> =
                nodes.iter().map(|&i| self.try_applied(i)).collect();
            let v = match applied {
                Ok(a) => a.into_iter().min().unwrap_or(0),
                Err(e) => {
                    last = e;
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            if v < at_least {
                last = format!("smallest applied version {v} < {at_least}");
                std::thread::sleep(POLL);
                continue;
            }
            let digests: Result<Vec<(usize, String)>, String> = nodes
                .iter()
                .map(|&i| self.digest(i, v).map(|d| (i, d)))
                .collect();
            match digests {
                Ok(d) => {
                    if d.iter().all(|(_, x)| *x == d[0].1) {
                        return (v, d[0].1.clone());
                    }
                    self.fail(&format!(
                        "expected equal digests at version {v} on nodes {nodes:?}, got {d:?} \
                         (replicas diverged)"
                    ));
                }
                Err(e) => last = e,
            }
            std::thread::sleep(POLL);
        }
        self.fail(&format!(
            "expected comparable digests on nodes {nodes:?} at a version >= {at_least} within \
             {timeout:?}; last: {last}"
        ))
    }
}

impl ReplicatedCluster {
    /// Writes `key = value` (`setKey`) through node `i`, retrying while the answer is
    /// `UNAVAILABLE`/`NOT_LEADER` (safe: such a write was not proposed), e.g. while the node
    /// learns of a new leader. Returns the node's applied version after the ack.
    ///
    /// # Panics
    /// When the write is not acked within [`LEADER_TIMEOUT`], or fails any other way.
    pub fn write_until_acked(&self, i: usize, key: &[u8], value: &[u8]) -> u64 {
        let mut last = Outcome::Unknown("not tried".to_owned());
        let acked = wait_until(LEADER_TIMEOUT, || {
            last = match try_connect(self.thrift_endpoint(i)) {
                Ok(mut kv) => try_write(&mut kv, key, value, WriteKind::SetKey),
                Err(e) => Outcome::Unknown(e),
            };
            match &last {
                Outcome::Acked => true,
                Outcome::Refused(_) => false,
                Outcome::Unknown(_) | Outcome::Failed(_) => self.fail(&format!(
                    "expected setKey({}) through node {i} to be acked or refused, got {last:?}",
                    crate::raw::show(key)
                )),
            }
        });
        if !acked {
            self.fail(&format!(
                "expected setKey({}) through node {i} to be acked within {LEADER_TIMEOUT:?}, \
                 last answer: {last:?}",
                crate::raw::show(key)
            ));
        }
        self.applied(i)
    }
}

impl TestCluster for ReplicatedCluster {
    fn client_endpoints(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.addrs.thrift).collect()
    }

    fn leader_endpoint(&self) -> SocketAddr {
        self.thrift_endpoint(self.wait_for_leader(LEADER_TIMEOUT))
    }

    fn follower_endpoint(&self) -> Option<SocketAddr> {
        self.followers().first().map(|&i| self.thrift_endpoint(i))
    }

    /// A rolling restart: each node in turn gets SIGTERM, is started again on its data and
    /// waited for (`/ready`); finally every node must be ready.
    fn restart(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
            self.start(i);
            self.wait_ready(i, LEADER_TIMEOUT);
        }
        self.wait_all_ready(LEADER_TIMEOUT);
    }
}

impl Drop for ReplicatedCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(node) = m.process.take() {
                // SIGKILL also ends a SIGSTOPped process; the data is thrown away anyway.
                node.kill9();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "==== dolmen cluster logs (last 80 lines per node) ====\n{}\n==== end of logs ====",
                self.log_tails(80)
            );
        }
        if std::env::var_os("DOLMEN_TEST_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("DOLMEN_TEST_KEEP: keeping {}", dir.keep().display());
            }
        }
    }
}

/// Polls `done` every [`POLL`] until it returns true (→ true) or `timeout` passes (→ false).
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// Recorded writes
// ---------------------------------------------------------------------------------------------

/// What a write's answer says about its effect (WIRE §4, docs/replication.md invariant 9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `success = true`: the write is committed and must stay readable.
    Acked,
    /// `UNAVAILABLE` or `NOT_LEADER`: the write was not proposed and must never appear.
    Refused(String),
    /// `TIMEOUT`, or no answer (connection lost, socket timeout): either may be true.
    Unknown(String),
    /// Any other failure (code and message).
    Failed(String),
}

impl Outcome {
    /// A short name for summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Acked => "acked",
            Outcome::Refused(_) => "refused",
            Outcome::Unknown(_) => "unknown",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// How a recorded write is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// `setKey` (no client-side timeout beyond the socket's).
    SetKey,
    /// A one-`set` blind `atomicCommit` at `read_version` with `timeout_seconds`.
    Commit {
        /// Read version of every commit (no conflict keys, so it only has to be retained).
        read_version: i64,
        /// `timeout_seconds` of the request.
        timeout_seconds: i64,
    },
}

/// One write and what its answer said.
#[derive(Clone)]
pub struct WriteRecord {
    /// The key, unique per write.
    pub key: Vec<u8>,
    /// The value written.
    pub value: Vec<u8>,
    /// The node the client was connected to.
    pub node: usize,
    /// When the request was sent.
    pub started: Instant,
    /// When the answer (or the failure) came.
    pub finished: Instant,
    /// The answer.
    pub outcome: Outcome,
}

impl std::fmt::Debug for WriteRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {} via node {}: {:?} after {}ms",
            crate::raw::show(&self.key),
            crate::raw::show(&self.value),
            self.node,
            self.outcome,
            self.finished.duration_since(self.started).as_millis()
        )
    }
}

/// Classifies an `error_code`/`error` pair of an unsuccessful write.
fn classify(code: Option<&str>, error: Option<&str>) -> Outcome {
    let text = format!("{}: {}", code.unwrap_or("<no code>"), error.unwrap_or(""));
    match code {
        Some("UNAVAILABLE" | "NOT_LEADER") => Outcome::Refused(text),
        Some("TIMEOUT") => Outcome::Unknown(text),
        _ => Outcome::Failed(text),
    }
}

/// Sends one write and classifies the answer; a transport error is [`Outcome::Unknown`].
pub fn try_write(client: &mut KvClient, key: &[u8], value: &[u8], kind: WriteKind) -> Outcome {
    let answer = match kind {
        WriteKind::SetKey => client
            .set_key(SetKeyRequest::new(key.to_vec(), value.to_vec(), None))
            .map(|r| (r.success, r.error_code, r.error)),
        WriteKind::Commit {
            read_version,
            timeout_seconds,
        } => client
            .atomic_commit(AtomicCommitRequest::new(
                read_version,
                vec![op_set(key, value)],
                Vec::new(),
                Some(timeout_seconds),
            ))
            .map(|r| (r.success, r.error_code, r.error)),
    };
    match answer {
        Ok((true, _, _)) => Outcome::Acked,
        Ok((false, code, error)) => classify(code.as_deref(), error.as_deref()),
        Err(e) => Outcome::Unknown(format!("no answer: {e:?}")),
    }
}

/// A buffered stock client, or why it could not connect (unlike
/// [`crate::client::connect_buffered`], which panics: load threads must survive a dead node).
///
/// # Errors
/// When the TCP connection cannot be made within [`IO_TIMEOUT`].
pub fn try_connect(addr: SocketAddr) -> Result<KvClient, String> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    for r in [
        stream.set_read_timeout(Some(IO_TIMEOUT)),
        stream.set_write_timeout(Some(IO_TIMEOUT)),
        stream.set_nodelay(true),
    ] {
        r.map_err(|e| format!("configure the socket to {addr}: {e}"))?;
    }
    let (r, w) = TTcpChannel::with_stream(stream)
        .split()
        .map_err(|e| format!("split the channel to {addr}: {e}"))?;
    let r: Box<dyn Read + Send> = Box::new(TBufferedReadTransport::new(r));
    let w: Box<dyn Write + Send> = Box::new(TBufferedWriteTransport::new(w));
    Ok(TransactionalKVSyncClient::new(
        TBinaryInputProtocol::new(r, true),
        TBinaryOutputProtocol::new(w, true),
    ))
}

/// The shape of a [`WriteLoad`].
#[derive(Clone, Debug)]
pub struct WriteLoadConfig {
    /// Nodes the threads write through (`(node id, Thrift address)`); thread `t` starts on
    /// entry `t % len` and moves to the next entry when its connection fails.
    pub targets: Vec<(usize, SocketAddr)>,
    /// Number of writer threads.
    pub threads: usize,
    /// Every key starts with this (a private namespace); keys are `prefix ‖ tNN/SSSSSS`.
    pub prefix: Vec<u8>,
    /// How writes are sent.
    pub kind: WriteKind,
    /// Pause after each write, per thread.
    pub pause: Duration,
    /// Upper bound on writes per thread (the load also stops at [`WriteLoad::finish`]).
    pub max_writes_per_thread: usize,
    /// Upper bound on the load's duration.
    pub max_duration: Duration,
}

/// Writer threads that record every write and its outcome; each key is written once.
///
/// Dropping it (or [`Self::finish`]) stops and joins the threads; each stops within one
/// request (bounded by the socket timeout).
pub struct WriteLoad {
    /// Set to stop the threads.
    stop: Arc<AtomicBool>,
    /// Every finished write so far.
    records: Arc<Mutex<Vec<WriteRecord>>>,
    /// Joined on finish/drop.
    handles: Vec<JoinHandle<()>>,
}

impl WriteLoad {
    /// Starts the threads.
    pub fn start(config: WriteLoadConfig) -> Self {
        assert!(
            !config.targets.is_empty(),
            "a write load needs at least one target"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let handles = (0..config.threads)
            .map(|t| {
                let (stop, records, config) =
                    (Arc::clone(&stop), Arc::clone(&records), config.clone());
                std::thread::Builder::new()
                    .name(format!("write-load-{t}"))
                    .spawn(move || write_thread(t, &config, &stop, &records))
                    .expect("spawn a write-load thread")
            })
            .collect();
        Self {
            stop,
            records,
            handles,
        }
    }

    /// Starts `config` twice under its prefix: `setKey` writes under `set/`, and blind
    /// `atomicCommit`s at `read_version` (5 s timeout) under `commit/` (`config.kind` is
    /// replaced).
    pub fn start_mixed(config: &WriteLoadConfig, read_version: i64) -> Vec<WriteLoad> {
        let commit = WriteKind::Commit {
            read_version,
            timeout_seconds: 5,
        };
        [("set/", WriteKind::SetKey), ("commit/", commit)]
            .into_iter()
            .map(|(sub, kind)| {
                WriteLoad::start(WriteLoadConfig {
                    prefix: [config.prefix.as_slice(), sub.as_bytes()].concat(),
                    kind,
                    ..config.clone()
                })
            })
            .collect()
    }

    /// A copy of every write finished so far.
    pub fn records(&self) -> Vec<WriteRecord> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Number of acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|r| r.outcome == Outcome::Acked)
            .count()
    }

    /// Waits up to `timeout` until `done(records)` holds; returns whether it did.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[WriteRecord]) -> bool) -> bool {
        wait_until(timeout, || {
            done(
                &self
                    .records
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
        })
    }

    /// Stops and joins the threads; returns every record.
    pub fn finish(mut self) -> Vec<WriteRecord> {
        self.join();
        self.records()
    }

    /// Lets the threads run to their end (`max_writes_per_thread` or `max_duration`), joins
    /// them and returns every record.
    pub fn complete(mut self) -> Vec<WriteRecord> {
        for h in self.handles.drain(..) {
            let _joined = h.join();
        }
        self.records()
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _joined = h.join();
        }
    }
}

impl Drop for WriteLoad {
    fn drop(&mut self) {
        self.join();
    }
}

fn write_thread(
    t: usize,
    config: &WriteLoadConfig,
    stop: &AtomicBool,
    records: &Mutex<Vec<WriteRecord>>,
) {
    let deadline = Instant::now() + config.max_duration;
    let mut target = t % config.targets.len();
    let mut client: Option<KvClient> = None;
    let mut seq = 0usize;
    while !stop.load(Ordering::SeqCst)
        && seq < config.max_writes_per_thread
        && Instant::now() < deadline
    {
        let (node, addr) = config.targets[target];
        let kv = match client.as_mut() {
            Some(kv) => kv,
            None => match try_connect(addr) {
                Ok(kv) => client.insert(kv),
                Err(_) => {
                    target = (target + 1) % config.targets.len();
                    std::thread::sleep(POLL);
                    continue;
                }
            },
        };
        let key = [
            config.prefix.as_slice(),
            format!("t{t:02}/{seq:06}").as_bytes(),
        ]
        .concat();
        let value = format!("v{seq}-t{t}-n{node}").into_bytes();
        seq += 1;
        let started = Instant::now();
        let outcome = try_write(kv, &key, &value, config.kind);
        let finished = Instant::now();
        let lost_connection = matches!(&outcome, Outcome::Unknown(e) if e.starts_with("no answer"));
        let pause = match &outcome {
            Outcome::Acked => config.pause,
            _ => config.pause.max(Duration::from_millis(20)),
        };
        records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(WriteRecord {
                key,
                value,
                node,
                started,
                finished,
                outcome,
            });
        if lost_connection {
            client = None;
            target = (target + 1) % config.targets.len();
        }
        std::thread::sleep(pause);
    }
}

/// Counts per outcome kind, plus a few example messages of the non-acked kinds.
pub fn summarize(records: &[WriteRecord]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut examples: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in records {
        *counts.entry(r.outcome.kind()).or_default() += 1;
        let msg = match &r.outcome {
            Outcome::Acked => continue,
            Outcome::Refused(m) | Outcome::Unknown(m) | Outcome::Failed(m) => m,
        };
        let e = examples.entry(r.outcome.kind()).or_default();
        if e.len() < 3 && !e.contains(msg) {
            e.push(msg.clone());
        }
    }
    format!(
        "{} writes: {counts:?}; examples: {examples:?}",
        records.len()
    )
}

/// Every key/value under `prefix` that node `i` serves (`getRange`, unlimited), through a
/// fresh buffered connection.
///
/// # Errors
/// When the node cannot be reached or the range fails.
pub fn read_prefix(addr: SocketAddr, prefix: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut kv = try_connect(addr)?;
    let r = kv
        .get_range(GetRangeRequest {
            begin_key: Some(prefix.to_vec()),
            end_key: Some([prefix, b"\xff"].concat()),
            limit: Some(0),
            ..range_all_absent()
        })
        .map_err(|e| format!("getRange on {addr}: {e}"))?;
    if !r.success || r.has_more {
        return Err(format!(
            "getRange on {addr}: success={} has_more={} error={:?}",
            r.success, r.has_more, r.error
        ));
    }
    Ok(r.key_values
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect())
}

/// Checks on every node in `nodes` that each acked write under `prefix` is readable with its
/// value and no refused write is visible. Retries a failing read (bounded by `timeout`), never
/// a wrong answer.
///
/// # Panics
/// On a missing acked write or a visible refused one, listing the first offenders.
pub fn check_writes(
    cluster: &ReplicatedCluster,
    nodes: &[usize],
    prefix: &[u8],
    records: &[WriteRecord],
    timeout: Duration,
) {
    for &i in nodes {
        let addr = cluster.thrift_endpoint(i);
        let mut last = Err(String::from("not read"));
        wait_until(timeout, || {
            last = read_prefix(addr, prefix);
            last.is_ok()
        });
        let seen = last.unwrap_or_else(|e| {
            cluster.fail(&format!(
                "expected to read back prefix {} from node {i} within {timeout:?}: {e}",
                crate::raw::show(prefix)
            ))
        });
        let mut missing = Vec::new();
        let mut leaked = Vec::new();
        for r in records {
            let got = seen.get(&r.key);
            match &r.outcome {
                Outcome::Acked if got != Some(&r.value) => missing.push(format!(
                    "{} (acked via node {}, {}ms long) -> {:?}",
                    crate::raw::show(&r.key),
                    r.node,
                    r.finished.duration_since(r.started).as_millis(),
                    got.map(|v| crate::raw::show(v))
                )),
                Outcome::Refused(why) if got.is_some() => leaked.push(format!(
                    "{} (refused via node {}: {why})",
                    crate::raw::show(&r.key),
                    r.node
                )),
                _ => {}
            }
        }
        if !missing.is_empty() || !leaked.is_empty() {
            let first = |v: &[String]| v.iter().take(10).cloned().collect::<Vec<_>>().join("\n  ");
            cluster.fail(&format!(
                "node {i}: {} acked writes missing or wrong, {} refused writes visible \
                 ({}):\nmissing:\n  {}\nvisible though refused:\n  {}",
                missing.len(),
                leaked.len(),
                summarize(records),
                first(&missing),
                first(&leaked)
            ));
        }
    }
}

/// A key prefix unique to this process and call (`tag/pid-nanos-counter/`).
pub fn unique_prefix(tag: &str) -> Vec<u8> {
    format!("{tag}/{:016x}/", seed()).into_bytes()
}
