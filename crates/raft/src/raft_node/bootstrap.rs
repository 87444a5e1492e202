//! The guarded bootstrap (invariant 15): a node initializes the cluster with its configured
//! members only when neither it nor any reachable peer is initialized, and never when a peer
//! has another data layout. Safe to call on every node, any number of times.
//!
//! ```text
//!  bootstrap / `cluster init` ─▶ init_guarded ─ initialized here? ─▶ AlreadyInitialized
//!                                     └─ probe each peer: other layout ─▶ LayoutMismatch
//!                                                         initialized  ─▶ AlreadyInitialized
//!                                     └─ Raft::initialize ─▶ Initialized
//! ```

use std::time::Duration;

use super::error::{BootstrapError, CoreStopped};
use super::RaftNode;
use openraft::error::{InitializeError, RaftError};

/// What `init_guarded` did: the admin API's own answer.
pub use dolmen_admin::InitOutcome;

impl RaftNode {
    /// Initializes the cluster with the configured members, unless this node or any reachable
    /// peer is already initialized (invariant 15). Safe to call on every node, any number of
    /// times.
    pub async fn init_guarded(&self) -> Result<InitOutcome, BootstrapError> {
        if self.raft.is_initialized().await.map_err(CoreStopped)? {
            return Ok(InitOutcome::AlreadyInitialized);
        }
        for (&id, addr) in &self.options.initial_members {
            if id == self.options.node_id {
                continue;
            }
            let probe = self
                .shared
                .peers
                .probe(id, &addr.peer_addr, Duration::from_secs(2))
                .await;
            match probe {
                Ok(info) if info.fingerprint != self.options.fingerprint => {
                    return Err(BootstrapError::LayoutMismatch {
                        id,
                        peer_addr: addr.peer_addr.clone(),
                        theirs: info.fingerprint,
                        ours: self.options.fingerprint.clone(),
                    });
                }
                Ok(info) if info.initialized => return Ok(InitOutcome::AlreadyInitialized),
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(peer = id, error = %e, "peer not reachable during bootstrap");
                }
            }
        }
        match self
            .raft
            .initialize(self.options.initial_members.clone())
            .await
        {
            Ok(()) => Ok(InitOutcome::Initialized),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                Ok(InitOutcome::AlreadyInitialized)
            }
            Err(e) => Err(BootstrapError::Initialize(e)),
        }
    }
}
