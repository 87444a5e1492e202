//! A blocking facade over [`crate::AdminClient`] for synchronous callers (the test harness):
//! the same methods, each run to completion on one small runtime shared by the process.
//! A call made on a thread that is inside a tokio runtime (an async test driving the
//! synchronous harness) blocks that thread, as a plain socket call would; async code that can
//! `.await` uses [`crate::AdminClient`] instead.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use hyper::Method;
use serde::de::DeserializeOwned;

use crate::client::{RawAnswer, Readiness};
use crate::error::AdminError;
use crate::faults::RuleSet;
use crate::ops::{
    AddNode, Digest, GroupedDigest, InitOutcome, MembershipOutcome, SnapshotOutcome, TransferLeader,
};
use crate::status::{ClusterStatus, NodeId, NodeStatus};

/// The process's runtime for blocking calls: one worker thread drives the connections while
/// callers block in `block_on` (any number of threads at once).
fn runtime() -> Result<&'static tokio::runtime::Runtime, AdminError> {
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("dolmen-admin-client")
                .enable_all()
                .build()
        })
        .as_ref()
        .map_err(|e| AdminError::Runtime {
            reason: e.to_string(),
        })
}

fn block_on<T: Send>(
    call: impl Future<Output = Result<T, AdminError>> + Send,
) -> Result<T, AdminError> {
    let runtime = runtime()?;
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(call);
    }
    // Tokio refuses `block_on` on a thread that drives a runtime, so a scoped thread runs the
    // call and this one waits for it.
    std::thread::scope(|s| s.spawn(|| runtime.block_on(call)).join()).unwrap_or_else(|_| {
        Err(AdminError::Runtime {
            reason: "the thread running the admin call panicked".to_owned(),
        })
    })
}

/// A blocking client of one node's admin API; see [`crate::AdminClient`] for each call.
#[derive(Clone, Debug)]
pub struct AdminClient {
    inner: crate::AdminClient,
}

impl AdminClient {
    /// A client of the admin API at `addr` (`host:port`), with [`crate::DEFAULT_TIMEOUT`].
    pub fn new(addr: impl ToString) -> Self {
        Self {
            inner: crate::AdminClient::new(addr.to_string()),
        }
    }

    /// The same client with another per-call timeout.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self {
            inner: self.inner.with_timeout(timeout),
        }
    }

    /// The same client sending `token` with every request (see
    /// [`crate::AdminClient::with_token`]).
    pub fn with_token(self, token: Option<String>) -> Self {
        Self {
            inner: self.inner.with_token(token),
        }
    }

    /// The same client speaking HTTPS, checking the node against the CA in `ca_pem` (see
    /// [`crate::AdminClient::with_ca`]).
    ///
    /// # Errors
    /// As [`crate::AdminClient::with_ca`].
    pub fn with_ca(self, ca_pem: &[u8]) -> Result<Self, AdminError> {
        Ok(Self {
            inner: self.inner.with_ca(ca_pem)?,
        })
    }

    /// The async client underneath.
    pub fn inner(&self) -> &crate::AdminClient {
        &self.inner
    }

    /// `GET /health`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::health`].
    pub fn health(&self) -> Result<(), AdminError> {
        block_on(self.inner.health())
    }

    /// `GET /ready`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::ready`].
    pub fn ready(&self) -> Result<Readiness, AdminError> {
        block_on(self.inner.ready())
    }

    /// `GET /metrics`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::metrics`].
    pub fn metrics(&self) -> Result<String, AdminError> {
        block_on(self.inner.metrics())
    }

    /// `GET /status`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::status`].
    pub fn status(&self) -> Result<NodeStatus, AdminError> {
        block_on(self.inner.status())
    }

    /// `GET /cluster/status`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::cluster_status`].
    pub fn cluster_status(&self) -> Result<ClusterStatus, AdminError> {
        block_on(self.inner.cluster_status())
    }

    /// `POST /cluster/init`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::init`].
    pub fn init(&self) -> Result<InitOutcome, AdminError> {
        block_on(self.inner.init())
    }

    /// `POST /cluster/snapshot`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::snapshot`].
    pub fn snapshot(&self) -> Result<SnapshotOutcome, AdminError> {
        block_on(self.inner.snapshot())
    }

    /// `POST /cluster/add-node`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::add_node`].
    pub fn add_node(&self, node: &AddNode) -> Result<MembershipOutcome, AdminError> {
        block_on(self.inner.add_node(node))
    }

    /// `POST /cluster/remove-node?id=N`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::remove_node`].
    pub fn remove_node(&self, id: NodeId) -> Result<MembershipOutcome, AdminError> {
        block_on(self.inner.remove_node(id))
    }

    /// `POST /cluster/transfer-leader?to=N`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::transfer_leader`].
    pub fn transfer_leader(&self, to: NodeId) -> Result<MembershipOutcome, AdminError> {
        block_on(self.inner.transfer_leader(to))
    }

    /// `POST /cluster/transfer-leader?to=N&group=G`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::transfer_group_leader`].
    pub fn transfer_group_leader(
        &self,
        transfer: TransferLeader,
    ) -> Result<MembershipOutcome, AdminError> {
        block_on(self.inner.transfer_group_leader(transfer))
    }

    /// `GET /state/digest[?version=V]`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::digest`].
    pub fn digest(&self, version: Option<u64>) -> Result<Digest, AdminError> {
        block_on(self.inner.digest(version))
    }

    /// `GET /state/digest[?version=V]` with each data group's digest.
    ///
    /// # Errors
    /// As [`crate::AdminClient::grouped_digest`].
    pub fn grouped_digest(&self, version: Option<u64>) -> Result<GroupedDigest, AdminError> {
        block_on(self.inner.grouped_digest(version))
    }

    /// `GET /debug/network-faults`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::network_faults`].
    pub fn network_faults(&self) -> Result<RuleSet, AdminError> {
        block_on(self.inner.network_faults())
    }

    /// `PUT /debug/network-faults`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::set_network_faults`].
    pub fn set_network_faults(&self, rules: &RuleSet) -> Result<RuleSet, AdminError> {
        block_on(self.inner.set_network_faults(rules))
    }

    /// `DELETE /debug/network-faults`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::clear_network_faults`].
    pub fn clear_network_faults(&self) -> Result<RuleSet, AdminError> {
        block_on(self.inner.clear_network_faults())
    }

    /// `method path` with an optional JSON body; a 2xx answer parsed as `T`.
    ///
    /// # Errors
    /// As [`crate::AdminClient::json`].
    pub fn json<T: DeserializeOwned + Send>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, AdminError> {
        block_on(self.inner.json(method, path, body))
    }

    /// `method path` with an optional JSON body: the answer as it came, any status.
    ///
    /// # Errors
    /// As [`crate::AdminClient::request`].
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawAnswer, AdminError> {
        block_on(self.inner.request(method, path, body))
    }
}
