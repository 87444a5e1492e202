//! The guarded bootstrap (invariant 15): a node initializes the cluster with its configured
//! members only when neither it nor any reachable peer is initialized, and never when a peer
//! has another data layout. Safe to call on every node, any number of times.
//!
//! ```text
//!  bootstrap / `cluster init` ─▶ init_guarded ─ initialized here? ─▶ AlreadyInitialized
//!                                     └─ probe each peer: other layout ─▶ LayoutMismatch
//!                                                         initialized  ─▶ AlreadyInitialized
//!                                     └─ Raft::initialize ─▶ Initialized
//!
//!  static list (no `bootstrap` key) ─▶ form_from_static_list ─ as above, and also:
//!                                     └─ this node holds data        ─▶ HoldsData
//!                                     └─ fewer than a majority of the list (this node
//!                                        included) answered, all empty ─▶ Waiting
//! ```
//!
//! Several nodes may initialize at once with the same member list: openraft allows it (the
//! membership entry at index 0 is the same, and voting elects one leader). Different lists
//! would split the cluster, which is why every probe also compares the layout fingerprint and
//! why a node that sees any initialized peer never initializes.

use std::time::Duration;

use super::error::{BootstrapError, CoreStopped};
use super::RaftNode;
use crate::NodeId;
use openraft::error::{InitializeError, RaftError};

/// What `init_guarded` did: the admin API's own answer.
pub use dolmen_admin::InitOutcome;

/// What [`RaftNode::form_from_static_list`] did or is waiting for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Formation {
    /// This node initialized the cluster (other members may have too, with the same list).
    Initialized,
    /// This node or a reachable peer already is initialized: nothing to form.
    AlreadyInitialized,
    /// This node's engine holds data, so it never starts a new cluster on its own.
    HoldsData,
    /// Too few members answered to be sure no cluster exists: `answered` empty members
    /// (this node included) of the `needed` majority.
    Waiting {
        /// Members known to be empty, this node included.
        answered: usize,
        /// A majority of the configured list.
        needed: usize,
    },
}

/// What the probes of the configured peers found.
struct PeerSurvey {
    /// Peers that answered and are not initialized.
    empty: usize,
    /// Whether some peer answered that it is initialized.
    initialized: bool,
}

impl RaftNode {
    /// Initializes the cluster with the configured members, unless this node or any reachable
    /// peer is already initialized (invariant 15). Safe to call on every node, any number of
    /// times.
    pub async fn init_guarded(&self) -> Result<InitOutcome, BootstrapError> {
        if self.raft.is_initialized().await.map_err(CoreStopped)? {
            return Ok(InitOutcome::AlreadyInitialized);
        }
        if self.survey_peers().await?.initialized {
            return Ok(InitOutcome::AlreadyInitialized);
        }
        self.initialize().await
    }

    /// Forms a new cluster from the static member list, as etcd's `initial-cluster` does, when
    /// it is safe: this node is not initialized and holds no data, no reachable peer is
    /// initialized or laid out differently, and a majority of the list (this node included)
    /// answered that it is empty. Otherwise it says what it waits for; call it again later.
    pub async fn form_from_static_list(&self) -> Result<Formation, BootstrapError> {
        if self.raft.is_initialized().await.map_err(CoreStopped)? {
            return Ok(Formation::AlreadyInitialized);
        }
        if self.shared.applied.borrow().version > 0 {
            return Ok(Formation::HoldsData);
        }
        let survey = self.survey_peers().await?;
        if survey.initialized {
            return Ok(Formation::AlreadyInitialized);
        }
        let answered = survey.empty + 1;
        let needed = self.options.initial_members.len() / 2 + 1;
        if answered < needed {
            return Ok(Formation::Waiting { answered, needed });
        }
        Ok(match self.initialize().await? {
            InitOutcome::Initialized => Formation::Initialized,
            InitOutcome::AlreadyInitialized => Formation::AlreadyInitialized,
        })
    }

    /// Probes every configured peer: refuses on another layout, counts the empty ones.
    async fn survey_peers(&self) -> Result<PeerSurvey, BootstrapError> {
        let mut survey = PeerSurvey {
            empty: 0,
            initialized: false,
        };
        for (&id, addr) in &self.options.initial_members {
            if id == self.options.node_id {
                continue;
            }
            match self.probe_peer(id, &addr.peer_addr).await {
                Ok(Some(true)) => survey.initialized = true,
                Ok(Some(false)) => survey.empty += 1,
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(survey)
    }

    /// Whether peer `id` is initialized; `None` when it does not answer.
    async fn probe_peer(
        &self,
        id: NodeId,
        peer_addr: &str,
    ) -> Result<Option<bool>, BootstrapError> {
        match self
            .shared
            .peers
            .probe(id, peer_addr, Duration::from_secs(2))
            .await
        {
            Ok(info) if info.fingerprint != self.options.fingerprint => {
                Err(BootstrapError::LayoutMismatch {
                    id,
                    peer_addr: peer_addr.to_owned(),
                    theirs: info.fingerprint,
                    ours: self.options.fingerprint.clone(),
                })
            }
            Ok(info) => Ok(Some(info.initialized)),
            Err(e) => {
                tracing::info!(peer = id, error = %e, "peer not reachable during bootstrap");
                Ok(None)
            }
        }
    }

    async fn initialize(&self) -> Result<InitOutcome, BootstrapError> {
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
