//! [`Database`]: the application's handle — connection, options, idempotency identity — and
//! [`Database::transact`], FoundationDB's retry loop.
//!
//! ```text
//!   transact(body) ─▶ begin ─▶ body(tx) ─▶ tx.commit() ─ok─▶ T
//!                       ▲                      │ retryable error
//!                       └── reset ◀─ backoff ◀─┘ (same token if the outcome is unknown)
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pilota::Bytes;

use crate::client::Client;
use crate::error::Error;
use crate::retry::{Backoff, XorShift};
use crate::router::{ReadStrategy, Router};
use crate::transaction::Transaction;

/// How a [`Database`] talks to the cluster and retries transactions.
///
/// Endpoints are given to [`Database::connect`] (one node) or [`Database::connect_cluster`].
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    /// Per-request timeout (connect and RPC). Default 5 s.
    pub request_timeout: Duration,
    /// Which node serves reads. Default [`ReadStrategy::LeaderOnly`].
    pub read_strategy: ReadStrategy,
    /// How long a node that failed (transport error, `UNAVAILABLE`) stays out of rotation;
    /// doubled per consecutive failure up to [`DatabaseOptions::max_node_backoff`], after which
    /// the next request probes it. Default 100 ms.
    pub node_backoff: Duration,
    /// Longest time a failed node stays out of rotation. Default 5 s.
    pub max_node_backoff: Duration,
    /// Column family transactions use unless they pick another. Default `"default"`.
    pub column_family: String,
    /// [`Database::transact`] stops retrying after this many attempts. Default 100.
    pub max_attempts: u32,
    /// [`Database::transact`] stops retrying once this much time has passed since it started.
    /// Default 30 s.
    pub transaction_deadline: Duration,
    /// First retry delay (jittered, doubled per attempt). Default 10 ms.
    pub initial_backoff: Duration,
    /// Largest retry delay. Default 1 s.
    pub max_backoff: Duration,
    /// How many times a commit whose outcome is unknown is resent unchanged (same idempotency
    /// token) before the error goes to the retry loop. Default 3.
    pub commit_resends: u32,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        DatabaseOptions {
            request_timeout: Duration::from_secs(5),
            read_strategy: ReadStrategy::LeaderOnly,
            node_backoff: Duration::from_millis(100),
            max_node_backoff: Duration::from_secs(5),
            column_family: "default".into(),
            max_attempts: 100,
            transaction_deadline: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            commit_resends: 3,
        }
    }
}

/// An idempotency identity: a `client_id` whose commits are serialized, so its sequences reach
/// the server in increasing order (the server remembers only each id's latest outcome).
#[derive(Debug)]
pub(crate) struct Lane {
    /// `client_id` on the wire: the database's random id + the lane number.
    pub(crate) client_id: Bytes,
    /// The next unused `client_sequence`.
    pub(crate) next_sequence: i64,
}

impl Lane {
    /// Takes a fresh sequence number.
    pub(crate) fn take_sequence(&mut self) -> i64 {
        let s = self.next_sequence;
        self.next_sequence += 1;
        s
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) router: Router,
    /// The first seed node's client, for [`Database::client`].
    seed: Client,
    pub(crate) options: DatabaseOptions,
    /// Random per-database id; lanes append their number to it.
    id: [u8; 16],
    /// Idle lanes plus the count ever made; a transaction holds one lane for its lifetime so
    /// concurrent transactions never interleave sequences of one `client_id`.
    lanes: Mutex<(Vec<Lane>, u32)>,
}

impl Inner {
    pub(crate) fn take_lane(&self) -> Lane {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lane) = lanes.0.pop() {
            return lane;
        }
        lanes.1 += 1;
        let mut client_id = self.id.to_vec();
        client_id.extend_from_slice(&lanes.1.to_be_bytes());
        Lane {
            client_id: Bytes::from(client_id),
            next_sequence: 1,
        }
    }

    pub(crate) fn return_lane(&self, lane: Lane) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes.0.push(lane);
    }
}

/// A handle to a Dolmen database; cheap to clone and share between tasks.
#[derive(Debug, Clone)]
pub struct Database {
    pub(crate) inner: Arc<Inner>,
}

impl Database {
    /// Connects to the node at `endpoint`: the one-node case of [`Database::connect_cluster`]
    /// (if the node belongs to a cluster, the other members are discovered from it).
    ///
    /// # Errors
    /// [`Error::NoNodeAvailable`] when the node does not answer within the request timeout.
    pub async fn connect(endpoint: SocketAddr, options: DatabaseOptions) -> Result<Self, Error> {
        Self::connect_cluster(&[endpoint], options).await
    }

    /// Connects to a cluster through any of `endpoints` (a subset is enough: the members are
    /// discovered with `getClusterHealth`, as is the leader). Each node gets its own connection
    /// pool; writes go to the leader, reads follow [`DatabaseOptions::read_strategy`].
    ///
    /// # Errors
    /// [`Error::Usage`] for an empty list; [`Error::NoNodeAvailable`] when no endpoint answers
    /// within the request timeout.
    pub async fn connect_cluster(
        endpoints: &[SocketAddr],
        options: DatabaseOptions,
    ) -> Result<Self, Error> {
        if endpoints.is_empty() {
            return Err(Error::Usage {
                message: "connect_cluster needs at least one endpoint".into(),
            });
        }
        let router = Router::new(
            endpoints,
            options.read_strategy,
            options.request_timeout,
            options.node_backoff,
            options.max_node_backoff,
        );
        router.discover().await?;
        let seed = router.seed();
        let mut rng = XorShift::from_clock();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
        Ok(Database {
            inner: Arc::new(Inner {
                router,
                seed,
                options,
                id,
                lanes: Mutex::new((Vec::new(), 0)),
            }),
        })
    }

    /// Every node this database knows: the endpoints it was given, then discovered members.
    pub fn nodes(&self) -> Vec<SocketAddr> {
        self.inner.router.addrs()
    }

    /// The leader's address as last discovered or hinted (`None` while unknown).
    pub fn leader(&self) -> Option<SocketAddr> {
        self.inner.router.leader()
    }

    /// Nodes currently out of rotation after a failure (probed again after their backoff).
    pub fn down_nodes(&self) -> Vec<SocketAddr> {
        self.inner.router.down()
    }

    /// Asks the cluster for its leader now (`getClusterHealth`) and returns it.
    ///
    /// # Errors
    /// [`Error::NoNodeAvailable`] when no node answers.
    pub async fn discover_leader(&self) -> Result<Option<SocketAddr>, Error> {
        self.inner.router.discover().await
    }

    /// The options this database was opened with.
    pub fn options(&self) -> &DatabaseOptions {
        &self.inner.options
    }

    /// The client of the first endpoint given, for non-transactional single-node methods
    /// (transactions route through every node instead).
    pub fn client(&self) -> &Client {
        &self.inner.seed
    }

    /// Starts an explicit transaction (no retry loop: handle errors yourself, or use
    /// [`Database::transact`]).
    pub fn begin(&self) -> Transaction {
        Transaction::new(self.clone())
    }

    /// Runs `body` in a transaction and commits it, retrying the whole transaction on retryable
    /// errors ([`Error::is_retryable`]) with jittered exponential backoff, until it commits, a
    /// non-retryable error occurs, or [`DatabaseOptions::max_attempts`] /
    /// [`DatabaseOptions::transaction_deadline`] is reached ([`Error::RetriesExhausted`]).
    ///
    /// `body` may run several times: it must not have side effects outside the transaction.
    /// When a commit's outcome is unknown, the next attempt reuses the idempotency token, so the
    /// transaction is applied at most once; its result then comes from the first attempt that
    /// committed, while `T` comes from the last run of `body`.
    pub async fn transact<F, Fut, T>(&self, mut body: F) -> Result<T, Error>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let options = &self.inner.options;
        let started = Instant::now();
        let mut backoff = Backoff::new(options.initial_backoff, options.max_backoff);
        let tx = self.begin();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let result = match body(tx.clone()).await {
                Ok(value) => tx.commit().await.map(|_| value),
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => e,
            };
            let delay = backoff.next_delay();
            if attempts >= options.max_attempts
                || started.elapsed() + delay > options.transaction_deadline
            {
                return Err(Error::RetriesExhausted {
                    attempts,
                    last: Box::new(error),
                });
            }
            tokio::time::sleep(delay).await;
            tx.reset_for_retry(error.is_maybe_committed());
        }
    }
}
