//! The fault hook on outgoing peer calls (docs/replication.md §6.4). Production passes none;
//! tests (and nodes started with `[faults] allow_network_faults`) plug in rules that drop, delay
//! or duplicate messages between chosen nodes.

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
    /// Send it twice, concurrently; the caller gets the first copy's answer. Raft's own calls
    /// (`Vote`, `PreVote`, `AppendEntries`, `TransferLeader`) are duplicated; the others are
    /// delivered once (a duplicated `Forward` would propose a client's write twice, which no
    /// real network does to a gRPC call).
    Duplicate,
}

/// Decides the fate of each outgoing call. `rpc` is the gRPC method name (`"Vote"`,
/// `"PreVote"`, `"AppendEntries"`, `"InstallSnapshot"`, `"TransferLeader"`, `"Forward"`,
/// `"ReadIndex"`, `"Probe"`, `"AppliedStream"`). Consulted once per call (once per snapshot
/// transfer; once per request of an append stream, as `"AppendEntries"`; once per forwarded
/// write on the forward stream, as `"Forward"`; once per applied report).
pub trait PeerFaults: std::fmt::Debug + Send + Sync + 'static {
    /// The action for one call from `from` to `to`.
    fn check(&self, from: NodeId, to: NodeId, rpc: &'static str) -> FaultAction;
}

/// The action for one call (`Deliver` without a hook).
pub(crate) fn decide(
    faults: Option<&Arc<dyn PeerFaults>>,
    from: NodeId,
    to: NodeId,
    rpc: &'static str,
) -> FaultAction {
    faults.map_or(FaultAction::Deliver, |f| f.check(from, to, rpc))
}

/// Resolves when a call under `action` may go out, or never (drop), so the caller's timeout
/// around it decides the result. `Duplicate` is the caller's business: it goes out at once.
pub(crate) async fn gate(action: FaultAction, from: NodeId, to: NodeId, rpc: &'static str) {
    match action {
        FaultAction::Deliver | FaultAction::Duplicate => {}
        FaultAction::Delay(delay) => tokio::time::sleep(delay).await,
        FaultAction::Drop => {
            tracing::debug!(from, to, rpc, "fault injection: dropped");
            std::future::pending::<()>().await
        }
    }
}

/// [`decide`] then [`gate`], for calls that are never duplicated.
pub(crate) fn admit(
    faults: Option<&Arc<dyn PeerFaults>>,
    from: NodeId,
    to: NodeId,
    rpc: &'static str,
) -> impl Future<Output = ()> + Send + 'static {
    gate(decide(faults, from, to, rpc), from, to, rpc)
}
