//! A cluster of real `dolmen serve` processes on loopback, owned by the runner: configs, logs,
//! data directories, and every control the nemesis needs (crash, pause, restart, network
//! rules, leadership transfer), each bounded in time and none panicking. Processes, ports and
//! readiness are `dolmen_testkit`'s; admin calls go through `dolmen_admin::AdminClient`.
//!
//! ```text
//!  Cluster::start ─ NodeAddrs::pick ─ <run>/node-<i>.toml (config.rs, from dolmen_config)
//!      │ LocalCluster: spawn `dolmen serve --config ..` (output → <run>/logs/node-<i>.log)
//!      │ kill9 / pause / resume / terminate / start_node        (signals by PID, our children)
//!      └ status / leader / digest / network rules / transfer ── AdminClient ──▶ each node
//!  Drop ─ SIGKILL every child still running (also on errors, panics and Ctrl-C)
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use dolmen_admin::{AdminClient, AdminError, Readiness, RuleSet};
use dolmen_testkit::{leader_of, LocalCluster, NodeFiles, NodeSpec, Stopped};
use serde_json::{json, Value};

mod config;

use config::render_config;

pub use dolmen_testkit::{NodeAddrs, NodeState};

/// How long a (re)started node may take to print its readiness line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// Writes `[reads] consistency_level = "lease"`.
    pub lease_reads: bool,
    /// Writes `[faults] lose_unsynced_writes = true`: a killed node loses what it never
    /// fsynced, as after a power cut.
    pub lose_unsynced_writes: bool,
    /// Writes `[faults] unsafe_skip_log_fsync = true` (the planted bug `skip-log-fsync`).
    pub skip_log_fsync: bool,
    /// Writes `[faults] unsafe_skip_conflict_check = true` (the planted bug
    /// `skip-conflict-check`).
    pub skip_conflict_check: bool,
    /// Writes `[faults] unsafe_skip_conflict_check_group` (0, every group: not written).
    pub skip_conflict_check_group: u64,
    /// Writes `[sharding] split_keys` (empty: not sharded, nothing written).
    pub split_keys: Vec<String>,
}

/// One node's `/state/digest` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDigest {
    /// The node's digest (on a sharded node, the combination of its groups').
    pub digest: String,
    /// On a sharded node: `(group label, digest)` for each data group, in key order.
    pub groups: Vec<(String, String)>,
}

/// A running cluster. Dropping it kills every node it started (SIGKILL by PID).
pub struct Cluster {
    /// What was started.
    spec: ClusterSpec,
    /// The processes, files and addresses (indexed by node id).
    nodes: LocalCluster,
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
        let addrs = NodeAddrs::pick(spec.nodes)?;
        let mut specs = Vec::with_capacity(spec.nodes);
        for (i, a) in addrs.iter().enumerate() {
            let files = NodeFiles::nested(&spec.dir, i);
            dolmen_testkit::render::write(
                &files.config,
                "",
                &render_config(&spec, i, &addrs, &files.data),
            )?;
            specs.push(NodeSpec { files, addrs: *a });
        }
        // From here on the cluster owns every process: an early return kills them.
        let nodes = LocalCluster::new(&spec.dolmen, specs, "chaos").with_own_process_group();
        let mut cluster = Cluster { spec, nodes };
        for i in 0..cluster.len() {
            cluster.spawn(i)?;
        }
        for i in 0..cluster.len() {
            cluster.wait_started(i).await?;
        }
        cluster.wait_ready(ready_timeout).await?;
        Ok(cluster)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the cluster has no node (never, once started).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node's addresses, by id.
    pub fn addrs(&self) -> Vec<NodeAddrs> {
        self.nodes.addrs()
    }

    /// Whether node `i` runs, is paused or is down.
    pub fn state(&self, i: usize) -> NodeState {
        self.nodes.state(i)
    }

    /// Ids of the nodes in `state`.
    pub fn nodes_in(&self, state: NodeState) -> Vec<usize> {
        self.nodes.nodes_in(state)
    }

    fn admin(&self, i: usize, timeout: Duration) -> anyhow::Result<AdminClient> {
        let addr = self.nodes.spec(i)?.addrs.admin;
        Ok(AdminClient::new(addr.to_string()).with_timeout(timeout))
    }

    /// Appends `---- chaos: <what> (unix_ms=..) ----` to node `i`'s log.
    pub fn mark(&self, i: usize, what: &str) {
        self.nodes.mark(i, what);
    }

    /// The last `lines` lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        self.nodes.log_tail(i, lines)
    }

    /// Spawns node `i` (which must be down) without waiting for it.
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes.spawn(i).map_err(|e| match e {
            dolmen_testkit::ClusterError::WrongState { .. } => {
                anyhow!("node {i} is already running")
            }
            other => anyhow!(other).context(format!(
                "spawn {} serve for node {i}",
                self.spec.dolmen.display()
            )),
        })
    }

    /// Waits (at most [`START_TIMEOUT`]) until node `i` prints its readiness line; fails early
    /// when its process exits.
    async fn wait_started(&mut self, i: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.nodes.poll_started(i) {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => {}
                Err(e) => {
                    return Err(self.start_failure(i, &format!("exited during start-up ({e})")))
                }
            }
            if Instant::now() >= deadline {
                let _killed = self.nodes.kill9(i);
                return Err(self.start_failure(
                    i,
                    &format!("did not print its readiness line within {START_TIMEOUT:?}"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn start_failure(&self, i: usize, what: &str) -> anyhow::Error {
        let tail = self.log_tail(i, TAIL_LINES);
        let mut hint = String::new();
        let keys = [
            "allow_network_faults",
            "unsafe_stale_reads",
            "lose_unsynced_writes",
            "unsafe_skip_log_fsync",
            "unsafe_skip_conflict_check",
        ];
        if keys.iter().any(|k| tail.contains(k)) {
            hint = "\nhint: this dolmen does not know the [faults] keys the chaos suite needs \
                    (allow_network_faults for partition/drop/delay/duplicate, unsafe_stale_reads \
                    for --planted-bug stale-reads, lose_unsynced_writes for \
                    --lose-unsynced-writes and the profiles, unsafe_skip_log_fsync for \
                    --planted-bug skip-log-fsync, unsafe_skip_conflict_check for --planted-bug \
                    skip-conflict-check); build a dolmen that has them, or run with \
                    --faults kill,pause,transfer and no profile"
                .to_owned();
        }
        anyhow!(
            "node {i} {what}; log {}:\n{tail}{hint}",
            self.nodes
                .spec(i)
                .map(|s| s.files.log.display().to_string())
                .unwrap_or_default()
        )
    }

    /// Starts node `i` (which must be down) and waits until it prints its readiness line (its
    /// listeners are bound; not for a leader: a restarted member stays out of elections for a
    /// while).
    ///
    /// # Errors
    /// When it is running, cannot be spawned, exits, or does not start in time.
    pub async fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_started(i).await
    }

    /// Starts the nodes `ids` (all down) at once, then waits until each prints its readiness
    /// line.
    ///
    /// # Errors
    /// As [`Self::start_node`], for the first node that fails.
    pub async fn start_nodes(&mut self, ids: &[usize]) -> anyhow::Result<()> {
        for &i in ids {
            self.spawn(i)?;
        }
        for &i in ids {
            self.wait_started(i).await?;
        }
        Ok(())
    }

    /// Kills node `i` with SIGKILL (a crash: no flush, no goodbye) and reaps it.
    ///
    /// # Errors
    /// When it has no process or does not die within a few seconds.
    pub async fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        Ok(self.nodes.kill9(i)?)
    }

    /// Freezes node `i` with SIGSTOP: its sockets stay open, it answers nothing.
    ///
    /// # Errors
    /// When it is not running.
    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        if self.state(i) != NodeState::Running {
            bail!("node {i} is not running, it cannot be paused");
        }
        Ok(self.nodes.pause(i)?)
    }

    /// Resumes node `i` with SIGCONT.
    ///
    /// # Errors
    /// When it is not paused.
    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        Ok(self.nodes.resume(i)?)
    }

    /// Stops node `i` with SIGTERM (after SIGCONT when paused); SIGKILL after
    /// [`STOP_TIMEOUT`]. Returns the exit status when it exited on its own.
    ///
    /// # Errors
    /// When it has no process.
    pub async fn terminate(&mut self, i: usize) -> anyhow::Result<Option<ExitStatus>> {
        if self.state(i) == NodeState::Down {
            bail!("node {i} has no process");
        }
        // The wait is bounded by STOP_TIMEOUT; keep the other tasks running meanwhile.
        let nodes = &mut self.nodes;
        let stopped = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| nodes.stop(i, STOP_TIMEOUT))
            }
            _ => nodes.stop(i, STOP_TIMEOUT),
        }?;
        Ok(match stopped {
            Stopped::Exited(status) => Some(status),
            Stopped::Killed => None,
        })
    }

    /// Checks whether any node's process exited on its own (not by our hand): returns
    /// `(node, status)` for each, and forgets their processes (they count as down).
    pub fn reap_exited(&mut self) -> Vec<(usize, String)> {
        self.nodes.reap_exited()
    }

    /// `GET /status` of node `i`, as JSON (the wire names of `dolmen_admin::NodeStatus`).
    ///
    /// # Errors
    /// When the node does not answer within [`ADMIN_TIMEOUT`].
    pub async fn status(&self, i: usize) -> anyhow::Result<Value> {
        let s = self.admin(i, ADMIN_TIMEOUT)?.status().await?;
        Ok(serde_json::to_value(s)?)
    }

    /// Node `i`'s `applied_version`.
    ///
    /// # Errors
    /// When the node does not answer.
    pub async fn applied(&self, i: usize) -> anyhow::Result<u64> {
        Ok(self
            .admin(i, ADMIN_TIMEOUT)?
            .status()
            .await?
            .applied_version)
    }

    /// `/status` of every running (not paused) node, asked in parallel.
    async fn typed_statuses(&self) -> Vec<(usize, Result<dolmen_admin::NodeStatus, AdminError>)> {
        let mut set = tokio::task::JoinSet::new();
        for i in self.nodes_in(NodeState::Running) {
            let Ok(admin) = self.admin(i, ADMIN_TIMEOUT) else {
                continue;
            };
            set.spawn(async move { (i, admin.status().await) });
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
    /// claimed term that a majority of its voters names as leader. `None` when there is none.
    pub async fn leader(&self) -> Option<usize> {
        let views: Vec<(usize, dolmen_admin::NodeStatus)> = self
            .typed_statuses()
            .await
            .into_iter()
            .filter_map(|(i, s)| s.ok().map(|s| (i, s)))
            .collect();
        leader_of(&views, self.len())
    }

    /// Waits (at most `timeout`) for a leader (see [`Self::leader`]).
    ///
    /// # Errors
    /// When there is none by then, with every node's status.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader().await {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let views: Vec<String> = self
            .typed_statuses()
            .await
            .into_iter()
            .map(|(i, s)| match s {
                Ok(s) => format!(
                    "node {i}: role={} leader={:?} term={} applied={}",
                    s.raft.as_ref().map_or("none", |r| r.role.as_str()),
                    s.leader,
                    s.term,
                    s.applied_version
                ),
                Err(e) => format!("node {i}: {e}"),
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
            let admin = self.admin(i, ADMIN_TIMEOUT)?;
            let mut last;
            loop {
                last = match admin.ready().await {
                    Ok(Readiness::Ready) => break,
                    Ok(Readiness::NotReady(why)) => format!("HTTP 503: {why}"),
                    Err(e) => e.to_string(),
                };
                if Instant::now() >= deadline {
                    return Err(self.start_failure(
                        i,
                        &format!("was not ready (GET /ready) within {timeout:?}; last: {last}"),
                    ));
                }
                tokio::time::sleep(POLL).await;
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
        let set: RuleSet = serde_json::from_value(json!({ "rules": rules }))
            .context("the nemesis' rules as a RuleSet")?;
        let answer = self
            .admin(i, ADMIN_TIMEOUT)?
            .set_network_faults(&set)
            .await
            .map_err(|e| network_faults_error(i, &e))?;
        Ok(serde_json::to_value(answer)?)
    }

    /// Clears node `i`'s network fault rules.
    ///
    /// # Errors
    /// As [`Self::set_rules`].
    pub async fn clear_rules(&self, i: usize) -> anyhow::Result<()> {
        self.admin(i, ADMIN_TIMEOUT)?
            .clear_network_faults()
            .await
            .map_err(|e| network_faults_error(i, &e))?;
        Ok(())
    }

    /// `GET /debug/network-faults` on every running node: fails early, with a clear message,
    /// when the server does not support network faults.
    ///
    /// # Errors
    /// When a node refuses or does not answer.
    pub async fn probe_network_faults(&self) -> anyhow::Result<()> {
        for i in self.nodes_in(NodeState::Running) {
            self.admin(i, ADMIN_TIMEOUT)?
                .network_faults()
                .await
                .map_err(|e| network_faults_error(i, &e))?;
        }
        Ok(())
    }

    /// Asks node `leader`, which leads group `group` (0: the metadata group, the only group of
    /// an unsharded cluster; else a data group), to hand that group's leadership to `to`, and
    /// waits (bounded) for the answer.
    ///
    /// # Errors
    /// When there is no leader or it refuses.
    pub async fn transfer_leader(
        &self,
        leader: usize,
        to: usize,
        group: u64,
    ) -> anyhow::Result<Value> {
        self.mark(
            to,
            &format!("transfer-leader of group {group}: {leader} -> {to}"),
        );
        let outcome = self
            .admin(leader, TRANSFER_TIMEOUT)?
            .transfer_group_leader(dolmen_admin::TransferLeader {
                to: to as u64,
                group,
            })
            .await?;
        Ok(json!({ "outcome": outcome.as_str() }))
    }

    /// `GET /state/digest?version=V` of node `i`: a checksum of all user data visible at `V`,
    /// with each data group's on a sharded node (every group covers `V` first).
    ///
    /// # Errors
    /// When the node refuses (`V` outside `[horizon, applied]`, a group that cannot cover it)
    /// or does not answer.
    pub async fn digest(&self, i: usize, version: u64) -> anyhow::Result<NodeDigest> {
        let d = self
            .admin(i, ADMIN_TIMEOUT)?
            .grouped_digest(Some(version))
            .await?;
        if d.version != version {
            bail!(
                "node {i} answered a digest for another version than {version}: {}",
                d.version
            );
        }
        Ok(NodeDigest {
            digest: d.digest,
            groups: d
                .groups
                .into_iter()
                .map(|g| (format!("g{} {}", g.id, g.range), g.digest))
                .collect(),
        })
    }

    /// Node `i`'s `dolmen_group_locks` gauges from `/metrics`: `(data group id, locks)` held by
    /// its replica of each data group for transactions committing across groups. Empty when
    /// the node exports none (an unsharded node).
    ///
    /// # Errors
    /// When the node does not answer within [`ADMIN_TIMEOUT`].
    pub async fn group_locks(&self, i: usize) -> anyhow::Result<Vec<(u64, u64)>> {
        let text = self.admin(i, ADMIN_TIMEOUT)?.metrics().await?;
        Ok(parse_group_locks(&text))
    }

    /// The leader of each data group of a sharded cluster, as the running nodes see it: for
    /// each group, the node claiming its leadership in the highest term (`(group id, node)`,
    /// groups without a claimant left out). Empty when not sharded or nobody answers.
    pub async fn group_leaders(&self) -> Vec<(u64, usize)> {
        let mut best: std::collections::BTreeMap<u64, (u64, usize)> =
            std::collections::BTreeMap::new();
        for (i, status) in self.typed_statuses().await {
            let Ok(status) = status else { continue };
            for g in status.groups {
                if g.role != dolmen_admin::Role::Leader {
                    continue;
                }
                let entry = best.entry(g.id).or_insert((g.term, i));
                if g.term > entry.0 {
                    *entry = (g.term, i);
                }
            }
        }
        best.into_iter().map(|(id, (_, node))| (id, node)).collect()
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
    pub fn remove_data(&mut self) {
        for i in self.nodes_in(NodeState::Down) {
            let _removed = self.nodes.wipe(i);
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

/// Names the node and the likely cause when a network-fault call fails.
fn network_faults_error(i: usize, e: &AdminError) -> anyhow::Error {
    let hint = match e.status() {
        Some(404) => {
            " (this dolmen has no /debug/network-faults endpoint: build one with the network-fault \
             layer, or run with --faults kill,pause,transfer)"
        }
        Some(403 | 409) => " (is [faults] allow_network_faults = true in the node's config?)",
        _ => "",
    };
    anyhow!("network faults on node {i}: {e}{hint}")
}

/// The `dolmen_group_locks{group="<id>"} <n>` samples of a Prometheus text, in order; lines
/// that do not parse are skipped.
pub fn parse_group_locks(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("dolmen_group_locks{")?;
            let (labels, value) = rest.split_once('}')?;
            let group = labels
                .split(',')
                .find_map(|l| l.trim().strip_prefix("group=\""))?
                .trim_end_matches('"')
                .parse()
                .ok()?;
            let value = value.split_whitespace().next()?;
            let n = value
                .parse::<u64>()
                .ok()
                .or_else(|| value.parse::<f64>().ok().map(|f| f as u64))?;
            Some((group, n))
        })
        .collect()
}

/// The last `lines` lines of the file at `path` (empty when unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    dolmen_testkit::process::log_tail(path, lines)
}

#[cfg(test)]
mod tests {
    use super::parse_group_locks;

    #[test]
    fn group_lock_gauges_are_read_from_the_prometheus_text() {
        let text = "# HELP dolmen_group_locks Locks ...\n\
                    # TYPE dolmen_group_locks gauge\n\
                    dolmen_group_locks{group=\"1\"} 0\n\
                    dolmen_group_locks{group=\"3\"} 2\n\
                    dolmen_group_locks_other{group=\"4\"} 9\n\
                    dolmen_group_term{group=\"3\"} 7\n\
                    dolmen_group_locks{group=\"x\"} 1\n";
        assert_eq!(parse_group_locks(text), vec![(1, 0), (3, 2)]);
        assert!(parse_group_locks("").is_empty());
    }
}
