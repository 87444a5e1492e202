//! [`Router`]: the nodes of a cluster behind one [`crate::Database`] — a pooled [`Client`] per
//! node, leader discovery (`getClusterHealth`), `NOT_LEADER` hints, read strategies, and node
//! health (a failed node leaves the rotation and is probed back lazily after a backoff).
//!
//! ```text
//!   reads  ─▶ order(strategy) ─▶ node ─ok─▶ EWMA latency, sticky choice
//!                                 │ transport / UNAVAILABLE ─▶ mark down (backoff) ─▶ next node
//!   writes ─▶ leader (known, else discover, else any node) ─ok─▶ T
//!                                 │ NOT_LEADER ─▶ hint (field or message) ─▶ resend there
//!                                 └ transport / UNAVAILABLE ─▶ mark down, forget leader ─▶ caller
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dolmen_api::gen;

use crate::client::Client;
use crate::error::Error;

/// Which node serves reads (`getReadVersion`, `snapshotRead`, `snapshotGetRange`). Every node
/// answers them correctly (followers confirm with the leader via ReadIndex, and reads at a read
/// version wait for that version to be applied), so this only trades load against latency.
/// Writes always go to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadStrategy {
    /// The leader, falling back to the other nodes while it is unknown or down (default).
    #[default]
    LeaderOnly,
    /// Each read goes to the next healthy node in turn.
    RoundRobin,
    /// The healthy node with the lowest observed latency (an exponentially weighted moving
    /// average of successful requests; unmeasured nodes are tried first).
    Nearest,
    /// One node for the life of the database, replaced only when it fails.
    Sticky,
}

/// Weight of a new sample in the latency EWMA.
const EWMA_ALPHA: f64 = 0.2;

/// One node's health as this database has observed it.
#[derive(Debug, Default, Clone)]
struct Health {
    /// Consecutive failures; the down time doubles with each.
    failures: u32,
    /// Out of rotation until then.
    down_until: Option<Instant>,
    /// Latency EWMA in microseconds, once measured.
    ewma_micros: Option<f64>,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) addr: SocketAddr,
    pub(crate) client: Client,
    health: Mutex<Health>,
}

impl Node {
    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn eligible(&self, now: Instant) -> bool {
        self.health().down_until.is_none_or(|t| now >= t)
    }

    fn succeeded(&self, latency: Duration) {
        let mut h = self.health();
        h.failures = 0;
        h.down_until = None;
        let sample = latency.as_secs_f64() * 1e6;
        h.ewma_micros = Some(match h.ewma_micros {
            Some(old) => old * (1.0 - EWMA_ALPHA) + sample * EWMA_ALPHA,
            None => sample,
        });
    }
}

/// What the selection needs to know about a node (kept apart from [`Node`] for unit tests).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    pub(crate) addr: SocketAddr,
    pub(crate) eligible: bool,
    pub(crate) ewma_micros: Option<f64>,
}

/// The order in which the eligible `candidates` are tried for a read (indices into
/// `candidates`); ineligible ones are left out.
pub(crate) fn read_order(
    strategy: ReadStrategy,
    candidates: &[Candidate],
    leader: Option<SocketAddr>,
    sticky: Option<SocketAddr>,
    turn: usize,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].eligible)
        .collect();
    let first = |order: &mut Vec<usize>, addr: Option<SocketAddr>| {
        if let Some(pos) = order.iter().position(|&i| Some(candidates[i].addr) == addr) {
            let i = order.remove(pos);
            order.insert(0, i);
        }
    };
    match strategy {
        ReadStrategy::LeaderOnly => first(&mut order, leader),
        ReadStrategy::Sticky => first(&mut order, sticky),
        ReadStrategy::RoundRobin => {
            if !order.is_empty() {
                let n = order.len();
                order.rotate_left(turn % n);
            }
        }
        ReadStrategy::Nearest => order.sort_by(|&a, &b| {
            let (a, b) = (candidates[a].ewma_micros, candidates[b].ewma_micros);
            a.unwrap_or(0.0).total_cmp(&b.unwrap_or(0.0))
        }),
    }
    order
}

/// The node ids → client addresses a `getClusterHealth` answer gives, and its leader's address.
/// The answering node is the one that reports its uptime: it gets `contacted` (the address we
/// reached it at) whatever it calls itself; other endpoints that do not parse as a socket
/// address, or name an unspecified IP (`0.0.0.0`), are skipped.
pub(crate) fn health_addresses(
    contacted: SocketAddr,
    health: &gen::ClusterHealth,
) -> (Vec<SocketAddr>, Option<SocketAddr>) {
    let single = health.nodes.len() == 1;
    let addr_of = |status: &gen::NodeStatus| -> Option<SocketAddr> {
        if single || status.uptime_seconds.is_some() {
            return Some(contacted);
        }
        let addr: SocketAddr = status.endpoint.trim().parse().ok()?;
        (!addr.ip().is_unspecified()).then_some(addr)
    };
    let addrs = health.nodes.iter().filter_map(addr_of).collect();
    let leader = health.leader.as_ref().and_then(|l| {
        health
            .nodes
            .iter()
            .find(|n| n.node_id == l.node_id)
            .and_then(addr_of)
            .or_else(|| addr_of(l))
    });
    (addrs, leader)
}

/// The nodes of one database and what it knows about them.
#[derive(Debug)]
pub(crate) struct Router {
    /// Seed endpoints first, then nodes learned from `getClusterHealth` or hints.
    nodes: Mutex<Vec<Arc<Node>>>,
    leader: Mutex<Option<SocketAddr>>,
    sticky: Mutex<Option<SocketAddr>>,
    turn: AtomicUsize,
    strategy: ReadStrategy,
    request_timeout: Duration,
    down_initial: Duration,
    down_max: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Errors after which a read is tried on another node without blaming this one: the node
/// cannot serve it now (`NOT_LEADER`) or has not applied the read version yet.
fn try_elsewhere(e: &Error) -> bool {
    matches!(e.code(), Some("NOT_LEADER" | "FUTURE_VERSION"))
}

impl Router {
    pub(crate) fn new(
        endpoints: &[SocketAddr],
        strategy: ReadStrategy,
        request_timeout: Duration,
        down_initial: Duration,
        down_max: Duration,
    ) -> Self {
        let router = Router {
            nodes: Mutex::new(Vec::new()),
            leader: Mutex::new(None),
            sticky: Mutex::new(None),
            turn: AtomicUsize::new(0),
            strategy,
            request_timeout,
            down_initial,
            down_max: down_max.max(down_initial),
        };
        for &e in endpoints {
            router.node(e);
        }
        router
    }

    /// The node at `addr`, added (with its own connection pool) if new.
    pub(crate) fn node(&self, addr: SocketAddr) -> Arc<Node> {
        let mut nodes = lock(&self.nodes);
        if let Some(n) = nodes.iter().find(|n| n.addr == addr) {
            return n.clone();
        }
        let node = Arc::new(Node {
            addr,
            client: Client::new(addr, self.request_timeout),
            health: Mutex::new(Health::default()),
        });
        nodes.push(node.clone());
        node
    }

    /// Every known node address, seeds first.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        lock(&self.nodes).iter().map(|n| n.addr).collect()
    }

    /// The first seed node's client.
    pub(crate) fn seed(&self) -> Client {
        lock(&self.nodes)[0].client.clone()
    }

    /// The leader as last discovered or hinted.
    pub(crate) fn leader(&self) -> Option<SocketAddr> {
        *lock(&self.leader)
    }

    /// Known nodes currently out of rotation.
    pub(crate) fn down(&self) -> Vec<SocketAddr> {
        let now = Instant::now();
        lock(&self.nodes)
            .iter()
            .filter(|n| !n.eligible(now))
            .map(|n| n.addr)
            .collect()
    }

    fn forget_leader(&self, addr: SocketAddr) {
        let mut leader = lock(&self.leader);
        if *leader == Some(addr) {
            *leader = None;
        }
    }

    /// Takes `node` out of rotation for a backoff that doubles with consecutive failures.
    fn mark_down(&self, node: &Node) {
        {
            let mut h = node.health();
            let shift = h.failures.min(16);
            h.failures = h.failures.saturating_add(1);
            let delay = self
                .down_initial
                .saturating_mul(1u32 << shift)
                .min(self.down_max);
            h.down_until = Some(Instant::now() + delay);
        }
        self.forget_leader(node.addr);
        let mut sticky = lock(&self.sticky);
        if *sticky == Some(node.addr) {
            *sticky = None;
        }
    }

    /// Eligible nodes in list order; when none is, the one due back first, after waiting for
    /// it (at most the largest down time: a bounded wait, never a spin).
    async fn eligible_or_wait(&self) -> Vec<Arc<Node>> {
        let now = Instant::now();
        let nodes: Vec<Arc<Node>> = lock(&self.nodes).clone();
        let up: Vec<Arc<Node>> = nodes.iter().filter(|n| n.eligible(now)).cloned().collect();
        if !up.is_empty() {
            return up;
        }
        let soonest = nodes
            .into_iter()
            .min_by_key(|n| n.health().down_until.unwrap_or(now));
        match soonest {
            Some(node) => {
                let due = node.health().down_until.unwrap_or(now);
                let wait = due.saturating_duration_since(now).min(self.down_max);
                tokio::time::sleep(wait).await;
                vec![node]
            }
            None => Vec::new(),
        }
    }

    /// Asks nodes for the cluster's membership and leader (`getClusterHealth`), learns new
    /// nodes, and records the leader. `Ok(None)`: a node answered but knows no leader.
    ///
    /// # Errors
    /// [`Error::NoNodeAvailable`] when no node answered.
    pub(crate) async fn discover(&self) -> Result<Option<SocketAddr>, Error> {
        let mut tried = Vec::new();
        let mut last = None;
        let mut answered = false;
        for node in self.eligible_or_wait().await {
            tried.push(node.addr);
            let started = Instant::now();
            match node.client.cluster_health().await {
                Ok(health) => {
                    node.succeeded(started.elapsed());
                    answered = true;
                    let (addrs, leader) = health_addresses(node.addr, &health);
                    for a in addrs {
                        self.node(a);
                    }
                    if let Some(l) = leader {
                        *lock(&self.leader) = Some(l);
                        return Ok(Some(l));
                    }
                }
                Err(e) => {
                    if e.is_node_failure() {
                        self.mark_down(&node);
                    }
                    last = Some(Box::new(e));
                }
            }
        }
        if answered {
            Ok(None)
        } else {
            Err(Error::NoNodeAvailable { tried, last })
        }
    }

    /// Runs a read on nodes in the order of the read strategy: a node failure takes the node
    /// out of rotation and moves on, `NOT_LEADER`/`FUTURE_VERSION` moves on, any other answer
    /// is final.
    ///
    /// # Errors
    /// The read's own error, or [`Error::NoNodeAvailable`] when every node failed.
    pub(crate) async fn read<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        if self.strategy == ReadStrategy::LeaderOnly && self.leader().is_none() {
            // Best effort: without a leader the read still goes to any node.
            let _ = self.discover().await;
        }
        let nodes = self.eligible_or_wait().await;
        let candidates: Vec<Candidate> = nodes
            .iter()
            .map(|n| Candidate {
                addr: n.addr,
                eligible: true,
                ewma_micros: n.health().ewma_micros,
            })
            .collect();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let order = read_order(
            self.strategy,
            &candidates,
            self.leader(),
            *lock(&self.sticky),
            turn,
        );
        let mut tried = Vec::new();
        let mut last = None;
        for i in order {
            let node = &nodes[i];
            tried.push(node.addr);
            let started = Instant::now();
            match f(node.client.clone()).await {
                Ok(v) => {
                    node.succeeded(started.elapsed());
                    if self.strategy == ReadStrategy::Sticky {
                        lock(&self.sticky).get_or_insert(node.addr);
                    }
                    return Ok(v);
                }
                Err(e) if e.is_node_failure() => {
                    self.mark_down(node);
                    last = Some(Box::new(e));
                }
                Err(e) if try_elsewhere(&e) => last = Some(Box::new(e)),
                Err(e) => return Err(e),
            }
        }
        Err(Error::NoNodeAvailable { tried, last })
    }

    /// The node writes go to: the known leader if in rotation, else the one discovery names,
    /// else any node in rotation (it forwards the write, or answers `NOT_LEADER` with a hint).
    async fn leader_node(&self) -> Option<Arc<Node>> {
        let now = Instant::now();
        if let Some(l) = self.leader() {
            let node = self.node(l);
            if node.eligible(now) {
                return Some(node);
            }
        }
        if let Ok(Some(l)) = self.discover().await {
            let node = self.node(l);
            if node.eligible(Instant::now()) {
                return Some(node);
            }
        }
        self.eligible_or_wait().await.into_iter().next()
    }

    /// Runs a write on the leader, following `NOT_LEADER` hints (the write was not applied, so
    /// resending it is safe). A node failure takes the node out of rotation, forgets it as
    /// leader, and returns the error: the outcome is unknown, the caller resends (same
    /// idempotency token) after a backoff, by then to the rediscovered leader.
    ///
    /// # Errors
    /// The write's own error, or [`Error::NoNodeAvailable`] when no node took it.
    pub(crate) async fn write<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let hops = lock(&self.nodes).len() * 2 + 2;
        let mut tried = Vec::new();
        let mut last = None;
        let mut next: Option<Arc<Node>> = None;
        for _ in 0..hops {
            let node = match next.take() {
                Some(n) => n,
                None => match self.leader_node().await {
                    Some(n) => n,
                    None => break,
                },
            };
            tried.push(node.addr);
            let started = Instant::now();
            match f(node.client.clone()).await {
                Ok(v) => {
                    node.succeeded(started.elapsed());
                    return Ok(v);
                }
                Err(e) if e.code() == Some("NOT_LEADER") => {
                    self.forget_leader(node.addr);
                    if let Some(hint) = e.leader_hint().filter(|&h| h != node.addr) {
                        *lock(&self.leader) = Some(hint);
                        next = Some(self.node(hint));
                    } else {
                        // No leader known there (an election): give it a moment.
                        tokio::time::sleep(self.down_initial).await;
                    }
                    last = Some(Box::new(e));
                }
                Err(e) if e.is_node_failure() => {
                    self.mark_down(&node);
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::NoNodeAvailable { tried, last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn cands(spec: &[(u16, bool, Option<f64>)]) -> Vec<Candidate> {
        spec.iter()
            .map(|&(p, eligible, ewma_micros)| Candidate {
                addr: addr(p),
                eligible,
                ewma_micros,
            })
            .collect()
    }

    #[test]
    fn leader_only_prefers_the_leader_then_falls_back() {
        let c = cands(&[(1, true, None), (2, true, None), (3, true, None)]);
        let o = read_order(ReadStrategy::LeaderOnly, &c, Some(addr(2)), None, 7);
        assert_eq!(o, vec![1, 0, 2]);
        // Leader down or unknown: the others, in list order.
        let c = cands(&[(1, true, None), (2, false, None), (3, true, None)]);
        assert_eq!(
            read_order(ReadStrategy::LeaderOnly, &c, Some(addr(2)), None, 0),
            vec![0, 2]
        );
        assert_eq!(
            read_order(ReadStrategy::LeaderOnly, &c, None, None, 0),
            vec![0, 2]
        );
    }

    #[test]
    fn round_robin_rotates_over_healthy_nodes() {
        let c = cands(&[
            (1, true, None),
            (2, false, None),
            (3, true, None),
            (4, true, None),
        ]);
        let firsts: Vec<usize> = (0..6)
            .map(|t| read_order(ReadStrategy::RoundRobin, &c, None, None, t)[0])
            .collect();
        assert_eq!(firsts, vec![0, 2, 3, 0, 2, 3]);
        assert_eq!(
            read_order(ReadStrategy::RoundRobin, &c, None, None, 1),
            vec![2, 3, 0]
        );
        assert!(read_order(ReadStrategy::RoundRobin, &[], None, None, 3).is_empty());
    }

    #[test]
    fn nearest_picks_lowest_latency_and_measures_unknown_first() {
        let c = cands(&[
            (1, true, Some(900.0)),
            (2, true, Some(150.0)),
            (3, false, Some(1.0)),
        ]);
        assert_eq!(
            read_order(ReadStrategy::Nearest, &c, Some(addr(1)), None, 0),
            vec![1, 0]
        );
        let c = cands(&[
            (1, true, Some(900.0)),
            (2, true, Some(150.0)),
            (3, true, None),
        ]);
        assert_eq!(
            read_order(ReadStrategy::Nearest, &c, None, None, 0),
            vec![2, 1, 0]
        );
    }

    #[test]
    fn sticky_keeps_its_node_until_it_fails() {
        let c = cands(&[(1, true, None), (2, true, None), (3, true, None)]);
        for turn in 0..4 {
            assert_eq!(
                read_order(ReadStrategy::Sticky, &c, Some(addr(1)), Some(addr(3)), turn)[0],
                2
            );
        }
        let c = cands(&[(1, true, None), (2, true, None), (3, false, None)]);
        assert_eq!(
            read_order(ReadStrategy::Sticky, &c, None, Some(addr(3)), 0),
            vec![0, 1]
        );
    }

    #[tokio::test]
    async fn mark_down_backs_off_and_recovers() {
        let r = Router::new(
            &[addr(1), addr(2)],
            ReadStrategy::RoundRobin,
            Duration::from_secs(1),
            Duration::from_millis(100),
            Duration::from_millis(300),
        );
        *lock(&r.leader) = Some(addr(1));
        let n = r.node(addr(1));
        r.mark_down(&n);
        assert_eq!(r.leader(), None, "a failed leader is forgotten");
        assert_eq!(r.down(), vec![addr(1)]);
        let first = n.health().down_until.unwrap();
        r.mark_down(&n);
        r.mark_down(&n);
        r.mark_down(&n);
        let later = n.health().down_until.unwrap();
        assert!(later > first);
        assert!(
            later <= Instant::now() + Duration::from_millis(300),
            "capped"
        );
        n.succeeded(Duration::from_millis(1));
        assert!(r.down().is_empty());
        assert_eq!(r.node(addr(2)).addr, addr(2));
        assert_eq!(r.addrs(), vec![addr(1), addr(2)], "no duplicates");
    }

    fn status(id: i32, endpoint: &str, me: bool) -> gen::NodeStatus {
        gen::NodeStatus {
            node_id: id,
            endpoint: endpoint.to_owned().into(),
            status: "healthy".into(),
            is_leader: false,
            last_seen_timestamp: 0,
            term: 1,
            uptime_seconds: me.then_some(5),
        }
    }

    #[test]
    fn health_maps_endpoints_and_leader() {
        let nodes = vec![
            status(0, "127.0.0.1:9090", false),
            status(1, "0.0.0.0:9091", true),
            status(2, "127.0.0.1:9092", false),
        ];
        let health = gen::ClusterHealth {
            leader: Some(nodes[2].clone()),
            nodes,
            healthy_nodes_count: 3,
            total_nodes_count: 3,
            cluster_status: "healthy".into(),
            current_term: 1,
        };
        // The answering node (uptime present) is known by the address we reached it at.
        let (addrs, leader) = health_addresses(addr(9191), &health);
        assert_eq!(addrs, vec![addr(9090), addr(9191), addr(9092)]);
        assert_eq!(leader, Some(addr(9092)));
        let mut h = health.clone();
        h.leader = Some(h.nodes[1].clone());
        assert_eq!(health_addresses(addr(9191), &h).1, Some(addr(9191)));
        h.leader = None;
        assert_eq!(health_addresses(addr(9191), &h).1, None);
        // A standalone node is always the one we reached.
        let solo = gen::ClusterHealth {
            leader: Some(status(0, "0.0.0.0:9090", false)),
            nodes: vec![status(0, "0.0.0.0:9090", false)],
            healthy_nodes_count: 1,
            total_nodes_count: 1,
            cluster_status: "healthy".into(),
            current_term: 0,
        };
        assert_eq!(
            health_addresses(addr(7000), &solo),
            (vec![addr(7000)], Some(addr(7000)))
        );
    }
}
