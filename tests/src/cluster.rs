//! The seam between suites and deployments: a suite only sees client endpoints and `restart`.

use std::net::SocketAddr;

/// A running Dolmen deployment (one standalone node, or a cluster) that suites drive over TCP.
///
/// Every suite is written against this trait, so the same function runs against a standalone node
/// and against any node of a cluster. Implementations own their processes and data directories and
/// stop the processes when dropped.
pub trait TestCluster {
    /// Thrift client addresses of every node, in node-id order.
    fn client_endpoints(&self) -> Vec<SocketAddr>;

    /// Thrift client address of the current leader (the only node when standalone).
    fn leader_endpoint(&self) -> SocketAddr;

    /// Thrift client address of some follower; `None` for a standalone node.
    fn follower_endpoint(&self) -> Option<SocketAddr>;

    /// Stops every node with SIGTERM, waits for each to exit, and starts them again on the same
    /// data directories. Endpoints may change (ephemeral ports); ask for them again afterwards.
    ///
    /// # Panics
    /// When a node does not exit cleanly within its bound or does not become ready again.
    fn restart(&mut self);
}
