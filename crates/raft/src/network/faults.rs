//! The fault hook on outgoing peer calls (docs/replication.md §6.4). Production passes none;
//! tests plug in rules that drop or delay messages between chosen nodes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::NodeId;

/// What to do with one outgoing call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Send it normally.
    Deliver,
    /// Lose it: the call never reaches the peer, and the caller sees its own timeout expire.
    Drop,
    /// Hold it this long, then send it (the delay counts against the call's timeout).
    Delay(Duration),
}

/// Decides the fate of each outgoing call. `rpc` is the gRPC method name (`"Vote"`,
/// `"PreVote"`, `"AppendEntries"`, `"InstallSnapshot"`, `"TransferLeader"`, `"Forward"`,
/// `"ReadIndex"`, `"Probe"`). Consulted once per call (once per snapshot transfer).
pub trait PeerFaults: Send + Sync + 'static {
    /// The action for one call from `from` to `to`.
    fn check(&self, from: NodeId, to: NodeId, rpc: &'static str) -> FaultAction;
}

/// Applies the fault rules to one call: resolves when the call may go out, or never (drop), so
/// the caller's timeout around it decides the result.
pub(crate) fn admit(
    faults: Option<&Arc<dyn PeerFaults>>,
    from: NodeId,
    to: NodeId,
    rpc: &'static str,
) -> impl Future<Output = ()> + Send + 'static {
    let action = faults.map_or(FaultAction::Deliver, |f| f.check(from, to, rpc));
    async move {
        match action {
            FaultAction::Deliver => {}
            FaultAction::Delay(delay) => tokio::time::sleep(delay).await,
            FaultAction::Drop => {
                tracing::debug!(from, to, rpc, "fault injection: dropped");
                std::future::pending::<()>().await
            }
        }
    }
}
