//! Where each bench request goes: the read strategies, the leader discovered before a run, and
//! one client task's connections (one [`Client`] per node, so `--clients` counts connections
//! per node, opened lazily on first use).
//!
//! ```text
//! endpoints ─getClusterHealth─▶ Topology { nodes, leader }
//!   per client task: Conns { a Client per node, home = task mod n }
//!     writes, txn commits ─▶ leader            (spread: home; a follower forwards)
//!     reads, txn reads    ─▶ leader | next node in turn | home   (by --read-strategy)
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dolmen_client::{Client, Database, DatabaseOptions};

/// Which node serves the bench's reads (`get`, `getRange`, and a `txn`'s read version and
/// snapshot reads, which stay on one node per transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadStrategy {
    /// Every request goes to the leader, as `dolmen_client::Database` does by default.
    Leader,
    /// Reads rotate over all nodes, one node per operation; writes go to the leader.
    RoundRobin,
    /// Client `i` reads from node `i mod n`; writes go to the leader.
    Sticky,
    /// Client `i` sends everything to node `i mod n`, writes included: followers forward
    /// writes to the leader, so this measures the forwarding hop (and follower ReadIndex).
    Spread,
}

impl ReadStrategy {
    /// The name used in the table and the JSON line (the `--read-strategy` value).
    pub fn name(self) -> &'static str {
        match self {
            ReadStrategy::Leader => "leader",
            ReadStrategy::RoundRobin => "round-robin",
            ReadStrategy::Sticky => "sticky",
            ReadStrategy::Spread => "spread",
        }
    }
}

/// Why the leader could not be found before a run.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// No endpoint answered `getClusterHealth`.
    #[error("cannot reach any of the endpoints {endpoints:?}: {source}")]
    Unreachable {
        /// The endpoints given.
        endpoints: Vec<SocketAddr>,
        /// The client library's last error.
        #[source]
        source: dolmen_client::Error,
    },
    /// The cluster answered but has no leader right now.
    #[error(
        "the cluster behind {endpoints:?} has no leader; wait for an election, or use \
         --read-strategy spread"
    )]
    NoLeader {
        /// The endpoints given.
        endpoints: Vec<SocketAddr>,
    },
}

/// The nodes a run talks to and which of them leads.
#[derive(Clone, Debug)]
pub struct Topology {
    /// The endpoints given, then the leader when it was not among them.
    pub nodes: Vec<SocketAddr>,
    /// Index of the leader in `nodes`; `None` only for `spread`, which needs no leader.
    pub leader: Option<usize>,
    /// How the reads are routed.
    pub strategy: ReadStrategy,
}

impl Topology {
    /// Asks `endpoints` for the leader (`getClusterHealth`, through the client library's own
    /// discovery) unless `strategy` is `spread`.
    ///
    /// # Errors
    /// [`DiscoverError`] when no endpoint answers or the cluster has no leader.
    pub async fn discover(
        endpoints: &[SocketAddr],
        strategy: ReadStrategy,
        timeout: Duration,
    ) -> Result<Self, DiscoverError> {
        let mut nodes = endpoints.to_vec();
        if strategy == ReadStrategy::Spread {
            return Ok(Topology {
                nodes,
                leader: None,
                strategy,
            });
        }
        let options = DatabaseOptions {
            request_timeout: timeout,
            ..DatabaseOptions::default()
        };
        let db = Database::connect_cluster(endpoints, options)
            .await
            .map_err(|source| DiscoverError::Unreachable {
                endpoints: endpoints.to_vec(),
                source,
            })?;
        let leader = db.leader().ok_or_else(|| DiscoverError::NoLeader {
            endpoints: endpoints.to_vec(),
        })?;
        let index = match nodes.iter().position(|n| *n == leader) {
            Some(i) => i,
            None => {
                nodes.push(leader);
                nodes.len() - 1
            }
        };
        Ok(Topology {
            nodes,
            leader: Some(index),
            strategy,
        })
    }

    /// Where writes go (also the preload): the leader, or the first node for `spread`.
    pub fn write_node(&self) -> SocketAddr {
        self.nodes[self.leader.unwrap_or(0)]
    }

    /// The connections of client task `task`.
    pub fn connect(&self, task: usize, timeout: Duration) -> Conns {
        let clients: Vec<Client> = self
            .nodes
            .iter()
            .map(|addr| Client::new(*addr, timeout))
            .collect();
        let home = task % clients.len().max(1);
        Conns {
            clients,
            leader: self.leader.unwrap_or(home),
            home,
            strategy: self.strategy,
            turn: AtomicUsize::new(task),
        }
    }
}

/// One client task's connections and the routing of each request (not shared between tasks).
pub struct Conns {
    /// One client per node of the [`Topology`], in its order.
    clients: Vec<Client>,
    /// Where writes go: the leader (for `spread`: `home`).
    leader: usize,
    /// This task's own node (`task mod n`).
    home: usize,
    /// How reads are routed.
    strategy: ReadStrategy,
    /// The next node for `round-robin`, starting at the task number so tasks start apart.
    turn: AtomicUsize,
}

impl Conns {
    /// The client for writes and `txn` commits.
    pub fn writer(&self) -> &Client {
        &self.clients[self.leader]
    }

    /// The client for the next read (one per operation: a `txn` takes one for its read
    /// version and snapshot reads).
    pub fn reader(&self) -> &Client {
        let i = match self.strategy {
            ReadStrategy::Leader => self.leader,
            ReadStrategy::Sticky | ReadStrategy::Spread => self.home,
            ReadStrategy::RoundRobin => {
                // Atomic only so a task's future stays `Send`; one task owns these `Conns`.
                self.turn.fetch_add(1, Ordering::Relaxed) % self.clients.len()
            }
        };
        &self.clients[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(strategy: ReadStrategy, leader: Option<usize>) -> Topology {
        Topology {
            nodes: (0..3)
                .map(|i| SocketAddr::from(([127, 0, 0, 1], 9090 + i)))
                .collect(),
            leader,
            strategy,
        }
    }

    fn port(c: &Client) -> u16 {
        c.addr().port()
    }

    // Async only because building a `Client` may need a runtime.
    #[tokio::test]
    async fn leader_sends_everything_to_the_leader() {
        let conns = topology(ReadStrategy::Leader, Some(2)).connect(0, Duration::from_secs(1));
        assert_eq!(port(conns.writer()), 9092);
        for _ in 0..5 {
            assert_eq!(port(conns.reader()), 9092);
        }
    }

    #[tokio::test]
    async fn round_robin_rotates_reads_and_keeps_writes_on_the_leader() {
        let conns = topology(ReadStrategy::RoundRobin, Some(1)).connect(1, Duration::from_secs(1));
        let reads: Vec<u16> = (0..4).map(|_| port(conns.reader())).collect();
        assert_eq!(reads, [9091, 9092, 9090, 9091]);
        assert_eq!(port(conns.writer()), 9091);
    }

    #[tokio::test]
    async fn sticky_reads_from_home_and_writes_to_the_leader() {
        let conns = topology(ReadStrategy::Sticky, Some(0)).connect(4, Duration::from_secs(1));
        assert_eq!(port(conns.reader()), 9091);
        assert_eq!(port(conns.writer()), 9090);
    }

    #[tokio::test]
    async fn spread_sends_everything_home() {
        let conns = topology(ReadStrategy::Spread, None).connect(5, Duration::from_secs(1));
        assert_eq!(port(conns.reader()), 9092);
        assert_eq!(port(conns.writer()), 9092);
    }
}
