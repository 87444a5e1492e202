//! A Raft cluster of `dolmen serve` processes on loopback (the replicated [`TestCluster`]), the
//! per-node controls robustness tests need (crash, SIGTERM, SIGSTOP, restart), and a recording
//! write load ([`writes`]) whose outcomes are checked against what the cluster serves afterwards.
//! Processes, ports and configs are `dolmen_testkit`'s; this module adds the test defaults and
//! turns every failure into a panic that carries the nodes' log tails.
//!
//! ```text
//!  ReplicatedBuilder ─ NodeAddrs::pick ─ Config per node (render::replicated_node + set) ─┐
//!      ReplicatedCluster ── dolmen_testkit::LocalCluster (node-<i>.toml/.log, data-<i>) ◀──┘
//!          │ kill9 / stop / start / sigstop / sigcont            (by PID)
//!          │ status / leader / digest / wait_* ── dolmen_admin client ──▶ each node
//!          └ WriteLoad threads ── Thrift ──▶ nodes; every outcome recorded as a WriteRecord
//! ```

mod writes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dolmen_admin::{MembershipOutcome, NodeStatus};
use dolmen_testkit::render::{self, replicated_node};
use dolmen_testkit::{ClusterError, Config, LocalCluster, NodeAddrs, NodeFiles, NodeSpec, Stopped};
use tempfile::TempDir;

use crate::binary::dolmen_bin;
use crate::cluster::TestCluster;
use crate::standalone::{apply_test_defaults, READY_TIMEOUT, STOP_TIMEOUT};

pub use writes::{
    check_writes, read_prefix, summarize, try_connect, try_write, unique_prefix, Outcome,
    ReadError, WriteKind, WriteLoad, WriteLoadConfig, WriteRecord,
};

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
/// ([`crate::StandaloneBuilder::new`]) plus `[deployment] mode = "replicated"`, a 500 ms
/// election timeout and 100 ms heartbeats, pre-picked ports, every node's endpoints, and
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
    /// Peers speak mutual TLS with certificates of a throwaway CA; the nodes listed here get a
    /// certificate of another CA instead (strangers).
    tls: Option<Vec<usize>>,
    /// Admin ports speak HTTPS ([`Self::admin_tls`]).
    admin_tls: bool,
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
            tls: None,
            admin_tls: false,
        }
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

    /// Peers speak mutual TLS (`[tls]`), every node with a certificate of one throwaway CA but
    /// the `strangers`, whose certificates another CA signed.
    pub fn tls(mut self, strangers: &[usize]) -> Self {
        self.tls = Some(strangers.to_vec());
        self
    }

    /// Every admin port speaks HTTPS (`[server] admin_tls`) with a certificate for 127.0.0.1 of
    /// a throwaway CA, which every node (`[client_tls] ca_file`, for joins) and the harness's
    /// admin clients check it against.
    pub fn admin_tls(mut self) -> Self {
        self.admin_tls = true;
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

    /// The configuration of node `i` given every node's addresses, with data under `data`.
    ///
    /// # Panics
    /// When a setting does not fit the schema (an unknown key or a wrong type).
    fn config(&self, i: usize, addrs: &[NodeAddrs], data: &Path) -> Config {
        // An initial node lists only the initial cluster (what node 0 bootstraps); a later node
        // lists everyone (it only needs itself in the lists).
        let initial = self.initial.unwrap_or(self.nodes);
        let listed = if i < initial {
            &addrs[..initial]
        } else {
            addrs
        };
        let mut c = replicated_node(i, listed, data);
        apply_test_defaults(&mut c);
        if self.joining && i >= initial {
            c.consensus.join = addrs[..initial]
                .iter()
                .map(|a| a.admin.to_string())
                .collect();
        }
        let mine = self
            .per_node
            .iter()
            .filter(|(n, _)| *n == i)
            .map(|(_, s)| s);
        for (section, key, value) in self.common.iter().chain(mine) {
            render::set(&mut c, section, key, value.clone())
                .unwrap_or_else(|e| panic!("node {i}'s config: {e}"));
        }
        c
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
        let addrs = NodeAddrs::pick(self.nodes).unwrap_or_else(|e| panic!("{e}"));
        let mut specs = Vec::with_capacity(self.nodes);
        let mut election_timeout = Duration::from_millis(1000);
        let mut admin_token = None;
        let admin_ca = self.admin_tls.then(|| {
            let ca = dolmen_testkit::TestCa::new("the admin CA").unwrap_or_else(|e| panic!("{e}"));
            let files = ca
                .write_leaf(dir.path(), "admin", &["127.0.0.1", "localhost"])
                .unwrap_or_else(|e| panic!("the admin certificate: {e}"));
            (ca.ca_pem().into_bytes(), files)
        });
        let cas = self.tls.as_ref().map(|_| {
            let ca = |name| dolmen_testkit::TestCa::new(name).unwrap_or_else(|e| panic!("{e}"));
            (ca("the cluster's CA"), ca("a stranger's CA"))
        });
        // The CA file every node trusts is the cluster's: strangers only sign wrongly.
        let cluster_ca = dir.path().join("cluster-ca.pem");
        if let Some((cluster, _)) = &cas {
            std::fs::write(&cluster_ca, cluster.ca_pem())
                .unwrap_or_else(|e| panic!("the cluster CA: {e}"));
        }
        for (i, a) in addrs.iter().enumerate() {
            let files = NodeFiles::flat(dir.path(), i);
            let mut config = self.config(i, &addrs, &files.data);
            if let (Some((cluster, other)), Some(strangers)) = (&cas, &self.tls) {
                let ca = if strangers.contains(&i) {
                    other
                } else {
                    cluster
                };
                let tls = ca
                    .write_node(dir.path(), i)
                    .unwrap_or_else(|e| panic!("node {i}'s certificate: {e}"));
                config.tls = dolmen_testkit::config::TlsConfig {
                    ca_file: cluster_ca.clone(),
                    ..tls
                };
            }
            if let Some((_, files)) = &admin_ca {
                config.server.admin_tls = true;
                config.client_tls = files.clone();
            }
            if i == 0 {
                election_timeout = Duration::from_millis(config.consensus.election_timeout_ms);
                admin_token = Some(config.server.admin_token.clone()).filter(|t| !t.is_empty());
            }
            render::write(&files.config, "", &config).unwrap_or_else(|e| panic!("{e}"));
            specs.push(NodeSpec { files, addrs: *a });
        }
        let mut cluster = ReplicatedCluster {
            nodes: LocalCluster::new(&dolmen_bin(), specs, "harness")
                .with_admin_token(admin_token)
                .with_admin_ca(admin_ca.map(|(pem, _)| pem)),
            dir: Some(dir),
            election_timeout,
        };
        // The cluster owns every process from here on: a panic below still kills them.
        let all: Vec<usize> = (0..self.initial.unwrap_or(self.nodes)).collect();
        cluster.start_many(&all);
        // A stranger (a certificate of another CA) never hears from a leader.
        let strangers = self.tls.unwrap_or_default();
        for i in all.iter().filter(|i| !strangers.contains(i)) {
            cluster.wait_ready(*i, LEADER_TIMEOUT);
        }
        cluster
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------------------------

/// A running cluster of `dolmen serve` processes in one temporary directory.
///
/// Dropping it kills every process by PID (SIGKILL, then reaped) and deletes the directory
/// (kept, with its path printed, when `DOLMEN_TEST_KEEP` is set). When dropped during a panic it
/// prints every node's log tail to stderr.
pub struct ReplicatedCluster {
    /// The processes; declared first so they are killed before the directory goes.
    nodes: LocalCluster,
    /// Owns configs, data and logs; `Option` so `Drop` can keep it on request.
    dir: Option<TempDir>,
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

    /// Starts one node per entry of `addrs` from config files the caller writes in full
    /// (`text(i, data_dir)` is node `i`'s file, listening where `addrs[i]` says), and waits
    /// until every node answers `GET /ready` with 200. For files in another format than the
    /// harness's own (an older server's).
    ///
    /// # Panics
    /// When a node does not start, or the cluster is not ready within [`LEADER_TIMEOUT`].
    pub fn start_from_files(addrs: &[NodeAddrs], text: impl Fn(usize, &Path) -> String) -> Self {
        Self::start_from_files_after(addrs, text, |_| {})
    }

    /// As [`Self::start_from_files`], but calls `prepare` with the written config files (in
    /// node order) before any node starts (to restore a backup into one, say).
    ///
    /// # Panics
    /// As [`Self::start_from_files`].
    pub fn start_from_files_after(
        addrs: &[NodeAddrs],
        text: impl Fn(usize, &Path) -> String,
        prepare: impl FnOnce(&[PathBuf]),
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dolmen-cluster-")
            .tempdir()
            .expect("create a temp dir for the cluster");
        let specs: Vec<NodeSpec> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let files = NodeFiles::flat(dir.path(), i);
                std::fs::write(&files.config, text(i, &files.data))
                    .unwrap_or_else(|e| panic!("writing {}: {e}", files.config.display()));
                NodeSpec { files, addrs: *a }
            })
            .collect();
        let configs: Vec<PathBuf> = specs.iter().map(|s| s.files.config.clone()).collect();
        prepare(&configs);
        let mut cluster = ReplicatedCluster {
            nodes: LocalCluster::new(&dolmen_bin(), specs, "harness"),
            dir: Some(dir),
            election_timeout: Duration::from_millis(1000),
        };
        let all: Vec<usize> = (0..addrs.len()).collect();
        cluster.start_many(&all);
        cluster.wait_all_ready(LEADER_TIMEOUT);
        cluster
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn spec(&self, i: usize) -> &NodeSpec {
        self.nodes.spec(i).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Node `i`'s config file (rewrite it, then restart the node, to change a setting).
    pub fn config_path(&self, i: usize) -> PathBuf {
        self.spec(i).files.config.clone()
    }

    /// Node `i`'s data directory (`[database] base_path`).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.spec(i).files.data.clone()
    }

    /// Deletes node `i`'s data (a wiped disk). The node must be down.
    ///
    /// # Panics
    /// When the node is running or the directory cannot be deleted.
    pub fn wipe(&mut self, i: usize) {
        self.nodes.wipe(i).unwrap_or_else(|e| panic!("{e}"));
    }

    /// A membership call on the current leader's admin API.
    fn leader_call(
        &self,
        call: impl FnOnce(
            &dolmen_admin::blocking::AdminClient,
        ) -> Result<MembershipOutcome, dolmen_admin::AdminError>,
    ) -> Result<MembershipOutcome, ClusterError> {
        let leader = self.wait_for_leader(LEADER_TIMEOUT);
        let admin = self.nodes.admin(leader)?;
        call(&admin).map_err(|source| ClusterError::Admin {
            node: leader,
            source: Box::new(source),
        })
    }

    /// Adds node `i` (which must be running) to the membership through the leader.
    ///
    /// # Errors
    /// The leader's refusal (with its status and code) or the transport error.
    pub fn add_member(&self, i: usize) -> Result<MembershipOutcome, ClusterError> {
        let a = self.spec(i).addrs;
        let node = dolmen_admin::AddNode {
            id: i as u64,
            client_addr: a.thrift.to_string(),
            peer_addr: a.peer.to_string(),
            admin_addr: a.admin.to_string(),
        };
        self.mark(i, "add-node");
        self.leader_call(|admin| admin.add_node(&node))
    }

    /// Removes node `i` from the membership through the leader.
    ///
    /// # Errors
    /// As [`Self::add_member`].
    pub fn remove_member(&self, i: usize) -> Result<MembershipOutcome, ClusterError> {
        self.mark(i, "remove-node");
        self.leader_call(|admin| admin.remove_node(i as u64))
    }

    /// Hands leadership to node `to` through the current leader.
    ///
    /// # Errors
    /// As [`Self::add_member`].
    pub fn transfer_leader(&self, to: usize) -> Result<MembershipOutcome, ClusterError> {
        self.mark(to, "transfer-leader to this node");
        self.leader_call(|admin| admin.transfer_leader(to as u64))
    }

    /// The nodes' `[consensus] election_timeout_ms`.
    pub fn election_timeout(&self) -> Duration {
        self.election_timeout
    }

    /// Node `i`'s Thrift client address (fixed across restarts).
    pub fn thrift_endpoint(&self, i: usize) -> SocketAddr {
        self.spec(i).addrs.thrift
    }

    /// Node `i`'s admin HTTP address (fixed across restarts).
    pub fn admin_endpoint(&self, i: usize) -> SocketAddr {
        self.spec(i).addrs.admin
    }

    /// Node `i`'s peer (gRPC) address.
    pub fn peer_endpoint(&self, i: usize) -> SocketAddr {
        self.spec(i).addrs.peer
    }

    /// True when node `i` has a process that is not stopped with SIGSTOP.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes.state(i) == dolmen_testkit::NodeState::Running
    }

    /// Ids of the nodes that are running and not frozen.
    pub fn running(&self) -> Vec<usize> {
        self.nodes.nodes_in(dolmen_testkit::NodeState::Running)
    }

    /// Drops every peer call between `node` and the other running members, on both sides
    /// (the nodes need `[faults] allow_network_faults`).
    ///
    /// # Panics
    /// When a node refuses the rules.
    pub fn cut_off(&self, node: usize) {
        use dolmen_admin::{Rule, RuleAction, RuleSet};
        for i in self.running() {
            let rule = Rule {
                to: (i != node).then_some(node as u64),
                ..Rule::new(RuleAction::Drop)
            };
            crate::admin::admin(self.admin_endpoint(i))
                .set_network_faults(&RuleSet { rules: vec![rule] })
                .unwrap_or_else(|e| {
                    self.fail(&format!("node {i}: PUT /debug/network-faults: {e}"))
                });
        }
    }

    /// Removes every network fault rule from the running members.
    ///
    /// # Panics
    /// When a node does not clear them.
    pub fn heal(&self) {
        for i in self.running() {
            let cleared = crate::admin::admin(self.admin_endpoint(i)).clear_network_faults();
            if cleared.as_ref().ok() != Some(&dolmen_admin::RuleSet::default()) {
                self.fail(&format!(
                    "node {i}: network faults not cleared: {cleared:?}"
                ));
            }
        }
    }

    /// Writes `---- harness: <what> ----` with a timestamp into node `i`'s log.
    pub fn mark(&self, i: usize, what: &str) {
        self.nodes.mark(i, what);
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
        if let Err(e) = self.nodes.start_many(ids, READY_TIMEOUT) {
            panic!("{e}");
        }
    }

    /// Stops node `i` with SIGTERM and waits for it to exit.
    ///
    /// # Panics
    /// When it is not running, or does not exit 0 within the stop timeout.
    pub fn stop(&mut self, i: usize) {
        let log = self.spec(i).files.log.clone();
        match self.nodes.stop(i, STOP_TIMEOUT) {
            Ok(Stopped::Exited(s)) => assert!(
                s.success(),
                "expected dolmen to exit 0 after SIGTERM, got {s}; log tail:\n{}",
                dolmen_testkit::process::log_tail(&log, 40)
            ),
            Ok(Stopped::Killed) => panic!(
                "expected dolmen to exit within {STOP_TIMEOUT:?} after SIGTERM, it had to be \
                 killed; log tail:\n{}",
                dolmen_testkit::process::log_tail(&log, 40)
            ),
            Err(e) => panic!("expected node {i} to be running to stop it: {e}"),
        }
    }

    /// Node `i`'s next starts get `env` in their environment (e.g. `FAILPOINTS`); an empty
    /// `env` clears it.
    pub fn set_env(&mut self, i: usize, env: &[(&str, &str)]) {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.nodes.set_env(i, env).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits up to `timeout` for node `i`'s process to exit by itself (it is down from then
    /// on); its exit status as text, or `None` when it still runs.
    ///
    /// # Panics
    /// When another node exits by itself meanwhile.
    pub fn wait_exited(&mut self, i: usize, timeout: Duration) -> Option<String> {
        let mut status = None;
        wait_until(timeout, || {
            for (node, s) in self.nodes.reap_exited() {
                if node != i {
                    self.fail(&format!(
                        "expected only node {i} to exit, node {node} did: {s}"
                    ));
                }
                status = Some(s);
            }
            status.is_some()
        });
        status
    }

    /// Kills node `i` with SIGKILL (a crash) and reaps it.
    ///
    /// # Panics
    /// When it is not running.
    pub fn kill9(&mut self, i: usize) {
        if let Err(e) = self.nodes.kill9(i) {
            panic!("expected node {i} to be running to kill it: {e}");
        }
    }

    /// Freezes node `i` with SIGSTOP: its sockets stay open but it answers nothing.
    ///
    /// # Panics
    /// When it is not running or already frozen.
    pub fn sigstop(&mut self, i: usize) {
        if let Err(e) = self.nodes.pause(i) {
            panic!("expected to SIGSTOP node {i}: {e}");
        }
    }

    /// Resumes node `i` with SIGCONT.
    ///
    /// # Panics
    /// When it is not frozen.
    pub fn sigcont(&mut self, i: usize) {
        if let Err(e) = self.nodes.resume(i) {
            panic!("expected to SIGCONT node {i}: {e}");
        }
    }

    /// The last `lines` lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        self.nodes.log_tail(i, lines)
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.spec(i).files.log
    }

    /// The last `lines` lines of every node's log, each under a header.
    pub fn log_tails(&self, lines: usize) -> String {
        (0..self.node_count())
            .map(|i| {
                format!(
                    "==== node {i} ({}) ====\n{}",
                    self.log_path(i).display(),
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
    /// When the node does not answer 200 with a status within the admin timeout.
    pub fn try_status(&self, i: usize) -> Result<NodeStatus, ClusterError> {
        self.nodes.status(i)
    }

    /// `GET /status` of node `i`.
    ///
    /// # Panics
    /// When the node does not answer, with every node's log tail.
    pub fn status(&self, i: usize) -> NodeStatus {
        self.try_status(i)
            .unwrap_or_else(|e| self.fail(&format!("expected /status of node {i}: {e}")))
    }

    /// Node `i`'s `applied_version` from `/status`.
    ///
    /// # Errors
    /// When the node does not answer.
    pub fn try_applied(&self, i: usize) -> Result<u64, ClusterError> {
        Ok(self.nodes.status(i)?.applied_version)
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
        let mut last = None;
        if !wait_until(APPLY_TIMEOUT, || {
            let a = self.try_applied(i);
            let done = a.as_ref().is_ok_and(|&a| a >= v);
            last = Some(a);
            done
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
        if let Err(e) = self.nodes.wait_ready(i, timeout) {
            self.fail(&e.to_string());
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
        self.nodes.current_leader()
    }

    /// The leader, waiting up to [`LEADER_TIMEOUT`] for one; `None` when there is none by then.
    pub fn leader(&self) -> Option<usize> {
        self.nodes.wait_for_leader(LEADER_TIMEOUT).ok()
    }

    /// Waits up to `timeout` for a leader (see [`Self::current_leader`]).
    ///
    /// # Panics
    /// When there is none by then, with every node's `/status` and log tail.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        self.nodes
            .wait_for_leader(timeout)
            .unwrap_or_else(|e| self.fail(&e.to_string()))
    }

    /// The counter `metric` (a `..._total` family labelled `by="read_index"` and
    /// `by="lease"`, as the leadership confirmations are) summed over every node's `/metrics`:
    /// (by a ReadIndex round, by the leader lease).
    pub fn confirmations(&self, metric: &str) -> (u64, u64) {
        let mut by = (0, 0);
        for node in 0..self.node_count() {
            let text = crate::admin::admin(self.admin_endpoint(node))
                .metrics()
                .unwrap_or_else(|e| self.fail(&format!("/metrics of node {node}: {e}")));
            for line in text.lines() {
                let count = |label: &str| {
                    line.strip_prefix(&format!("{metric}{{by=\"{label}\"}} "))
                        .and_then(|n| n.parse::<u64>().ok())
                };
                by.0 += count("read_index").unwrap_or(0);
                by.1 += count("lease").unwrap_or(0);
            }
        }
        by
    }

    /// Runs `work`, which returns how many `what` it did, and checks the confirmations
    /// [`Self::confirmations`] counts in `metric` meanwhile: at least `per_unit` for each
    /// made by the leader lease if `lease` (else by a ReadIndex round), none the other way.
    ///
    /// # Panics
    /// When they are not so, with every node's `/status` and log tail.
    pub fn assert_confirmed_by(
        &self,
        metric: &str,
        lease: bool,
        per_unit: u64,
        what: &str,
        work: impl FnOnce() -> u64,
    ) {
        let before = self.confirmations(metric);
        let units = work();
        let after = self.confirmations(metric);
        let (by_round, by_lease) = (after.0 - before.0, after.1 - before.1);
        let (used, unused) = if lease {
            (by_lease, by_round)
        } else {
            (by_round, by_lease)
        };
        if used < per_unit * units || unused > 0 {
            self.fail(&format!(
                "lease = {lease}: {units} {what}, {metric}: {by_round} confirmed by a round, \
                 {by_lease} by the lease (expected at least {per_unit} each by the {}, none \
                 the other way)",
                if lease { "lease" } else { "round" }
            ));
        }
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
    pub fn digest(&self, i: usize, version: u64) -> Result<String, ClusterError> {
        self.nodes.digest(i, version)
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
            let applied: Result<Vec<u64>, ClusterError> =
                nodes.iter().map(|&i| self.try_applied(i)).collect();
            let v = match applied {
                Ok(a) => a.into_iter().min().unwrap_or(0),
                Err(e) => {
                    last = e.to_string();
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            if v < at_least {
                last = format!("smallest applied version {v} < {at_least}");
                std::thread::sleep(POLL);
                continue;
            }
            let digests: Result<Vec<(usize, String)>, ClusterError> = nodes
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
                Err(e) => last = e.to_string(),
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
                Err(e) => Outcome::Unknown(e.to_string()),
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
        self.nodes.addrs().iter().map(|a| a.thrift).collect()
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
        for i in 0..self.node_count() {
            self.stop(i);
            self.start(i);
            self.wait_ready(i, LEADER_TIMEOUT);
        }
        self.wait_all_ready(LEADER_TIMEOUT);
    }
}

impl Drop for ReplicatedCluster {
    fn drop(&mut self) {
        // `nodes` is dropped before `dir`: every process is killed (SIGKILL, which also ends a
        // SIGSTOPped one) before its data goes.
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
