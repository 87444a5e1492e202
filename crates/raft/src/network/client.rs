//! The client side shared by openraft's network and by [`PeerClient`]: one lazily connected
//! tonic `Channel` per peer address, cached; and the follower → leader calls (`Forward`,
//! `ReadIndex`, `Probe`) with their error semantics.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_engine::Command;
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::codec;
use crate::log_store::GroupId;
use crate::network::faults::{admit, decide, FaultAction, PeerFaults};
use crate::network::forward_stream::{ForwardStreams, Reply};
use crate::network::timestamps::OracleClient;
use crate::network::wire::{self, pb};
use crate::network::{NetworkOptions, ProbeInfo, MAX_MESSAGE_BYTES};
use crate::types::GROUP_ID;
use crate::{Applied, BoxFuture, NodeId, ProposeError};
use futures::stream::{BoxStream, StreamExt as _};
use tokio_stream::wrappers::ReceiverStream;

/// The generated gRPC client.
pub(crate) type GrpcClient = pb::peer_client::PeerClient<Channel>;

/// Most peer addresses cached at once (membership is far smaller; this only bounds a cache
/// fed by address changes).
const MAX_CACHED_CHANNELS: usize = 256;

/// Extra wait beyond a forwarded call's own timeout, so the leader's `Timeout` answer (which it
/// sends when its deadline passes) can arrive before the caller gives up by itself.
const ANSWER_GRACE: Duration = Duration::from_millis(200);

/// A peer address that is not a usable URI (`host:port` or `http://host:port`).
#[derive(Clone, Debug, thiserror::Error)]
#[error("invalid peer address '{addr}': {source}")]
pub struct BadPeerAddress {
    /// The address as configured.
    pub addr: String,
    /// Why tonic refused it.
    #[source]
    pub source: Arc<tonic::transport::Error>,
}

/// The channel cache, shared by every client of one node.
#[derive(Clone)]
pub(crate) struct Channels {
    cache: Arc<Mutex<HashMap<String, Channel>>>,
    options: Arc<NetworkOptions>,
}

impl Channels {
    pub(crate) fn new(options: NetworkOptions) -> Self {
        Self {
            cache: Arc::new(Mutex::new(HashMap::new())),
            options: Arc::new(options),
        }
    }

    pub(crate) fn options(&self) -> &Arc<NetworkOptions> {
        &self.options
    }

    /// The channel to `addr` (`host:port` or a full `http://` URI), created on first use. No
    /// connection is made here; the first call connects, and tonic reconnects after failures.
    /// Must run inside a tokio runtime.
    pub(crate) fn get(&self, addr: &str) -> Result<Channel, BadPeerAddress> {
        let mut cache = self.cache.lock();
        if let Some(channel) = cache.get(addr) {
            return Ok(channel.clone());
        }
        let o = &self.options;
        let uri = if addr.contains("://") {
            addr.to_string()
        } else if o.tls.is_some() {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        };
        let refused = |e| BadPeerAddress {
            addr: addr.to_owned(),
            source: Arc::new(e),
        };
        let mut endpoint = Endpoint::from_shared(uri).map_err(refused)?;
        if let Some(tls) = &o.tls {
            endpoint = endpoint.tls_config(tls.client()).map_err(refused)?;
        }
        let channel = endpoint
            .connect_timeout(o.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(o.keepalive_interval)
            .keep_alive_timeout(o.keepalive_timeout)
            .keep_alive_while_idle(true)
            .connect_lazy();
        if cache.len() >= MAX_CACHED_CHANNELS {
            // Evict one; whoever still holds it keeps using it.
            if let Some(victim) = cache.keys().next().cloned() {
                cache.remove(&victim);
            }
        }
        cache.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// A gRPC client on the channel to `addr`, with the message-size limits.
    pub(crate) fn client(&self, addr: &str) -> Result<GrpcClient, BadPeerAddress> {
        Ok(pb::peer_client::PeerClient::new(self.get(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// True when the call failed to connect, so the request was never sent.
pub(crate) fn is_connect_error(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Follower → leader calls (`Forward`, `ReadIndex`) and the bootstrap `Probe`, for one Raft
/// group (every request names it). Cheap to clone; clones, and the clients of other groups from
/// [`PeerClient::for_group`], share the channel cache and the forward streams (also shared with
/// the [`GrpcNetworkFactory`] that made it), so every group's calls to a peer share its one
/// connection.
///
/// [`GrpcNetworkFactory`]: crate::network::GrpcNetworkFactory
#[derive(Clone)]
pub struct PeerClient {
    from: NodeId,
    /// The group every request is for.
    group: GroupId,
    channels: Channels,
    faults: Option<Arc<dyn PeerFaults>>,
    /// The forward streams, one per leader address for every group, shared by clones.
    streams: Arc<ForwardStreams>,
    /// The oracle's `Timestamps` streams, one per leader address, shared by clones.
    oracle: OracleClient,
}

impl PeerClient {
    /// A client of group 0 for node `this_node` with its own channel cache.
    pub fn new(this_node: NodeId, options: NetworkOptions) -> Self {
        let channels = Channels::new(options);
        let streams = Arc::new(ForwardStreams::new(channels.clone()));
        let oracle = OracleClient::with_channels(channels.clone());
        Self::from_parts(this_node, GROUP_ID, channels, streams, oracle, None)
    }

    pub(crate) fn from_parts(
        from: NodeId,
        group: GroupId,
        channels: Channels,
        streams: Arc<ForwardStreams>,
        oracle: OracleClient,
        faults: Option<Arc<dyn PeerFaults>>,
    ) -> Self {
        Self {
            from,
            group,
            streams,
            oracle,
            channels,
            faults,
        }
    }

    /// The same client for `group`: the same channels, forward streams and fault hook.
    pub fn for_group(&self, group: GroupId) -> Self {
        Self {
            group,
            ..self.clone()
        }
    }

    /// The group this client's requests are for.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// This node's id, the channel cache and the fault hook (for the node-level calls of
    /// `node_beat.rs`).
    pub(crate) fn parts(&self) -> (NodeId, Channels, Option<Arc<dyn PeerFaults>>) {
        (self.from, self.channels.clone(), self.faults.clone())
    }

    /// This node's client of the oracle (group 0's leader, docs/sharding.md §3.3), on the same
    /// channels: one batched `Timestamps` stream per leader address, shared by clones.
    pub fn oracle(&self) -> &OracleClient {
        &self.oracle
    }

    /// Passes every outgoing call through `faults` (tests only).
    pub fn with_faults(mut self, faults: Arc<dyn PeerFaults>) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Asks the leader `to` at `peer_addr` to propose `command`, waiting at most `timeout` for
    /// the outcome. Never retried here. The command travels on this node's one forward stream
    /// to that leader (`forward_stream.rs`), or as a unary `Forward` when the leader is an older
    /// build without the stream.
    ///
    /// - `LeaderUnreachable`: not proposed (could not connect).
    /// - `Unavailable`: not proposed (the leader refused the request before proposing, or
    ///   answered `Unavailable`).
    /// - `NotLeader`: not proposed; carries the leader hint the peer gave.
    /// - `Timeout`: the request may have reached the leader; the outcome is unknown.
    pub async fn forward(
        &self,
        to: NodeId,
        peer_addr: &str,
        command: &Command,
        timeout: Duration,
    ) -> Result<Applied, ProposeError> {
        let start = Instant::now();
        let body = codec::encode_command(command).map_err(|e| {
            ProposeError::Unavailable(format!(
                "forward to node {to} at {peer_addr}: cannot encode the command: {e}"
            ))
        })?;
        let gate = admit(self.faults.as_ref(), self.from, to, "Forward");
        let sent = async {
            gate.await;
            // A stream that closed just before the command went out is replaced once.
            let group = self.group;
            match self.streams.send(group, to, peer_addr, body, timeout).await {
                Reply::Closed(body) => self.streams.send(group, to, peer_addr, body, timeout).await,
                reply => reply,
            }
        };
        let reply = tokio::time::timeout(timeout.saturating_add(ANSWER_GRACE), sent).await;
        match reply {
            Err(_) | Ok(Reply::Lost) => Err(ProposeError::Timeout(start.elapsed())),
            Ok(Reply::Answer(response)) => forward_result(response, to, peer_addr, start),
            Ok(Reply::NotSent(e)) => Err(e),
            Ok(Reply::Closed(_)) => Err(ProposeError::LeaderUnreachable(format!(
                "forward to node {to} at {peer_addr}: the stream closed twice before the write \
                 was sent"
            ))),
            Ok(Reply::Unsupported(body)) => {
                let left = timeout.saturating_sub(start.elapsed());
                self.forward_unary(to, peer_addr, body, left.max(Duration::from_millis(1)))
                    .await
            }
        }
    }

    /// `forward` as one unary `Forward` call (for a leader that does not serve the stream).
    async fn forward_unary(
        &self,
        to: NodeId,
        peer_addr: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Applied, ProposeError> {
        let start = Instant::now();
        let unavailable = |what: String| {
            ProposeError::Unavailable(format!("forward to node {to} at {peer_addr}: {what}"))
        };
        let mut client = self
            .channels
            .client(peer_addr)
            .map_err(|e| unavailable(e.to_string()))?;
        let mut request = Request::new(pb::ForwardRequest {
            group_id: self.group,
            command: body,
            timeout_ms: millis(timeout),
        });
        request.set_timeout(timeout.saturating_add(ANSWER_GRACE));
        let response = match tokio::time::timeout(
            timeout.saturating_add(ANSWER_GRACE),
            client.forward(request),
        )
        .await
        {
            Err(_elapsed) => return Err(ProposeError::Timeout(start.elapsed())),
            Ok(Err(status)) if is_connect_error(&status) => {
                return Err(ProposeError::LeaderUnreachable(format!(
                    "forward to node {to} at {peer_addr}: not connected: {}",
                    status.message()
                )))
            }
            // Refused before the handler proposed anything.
            Ok(Err(status)) if refused_unprocessed(&status) => {
                return Err(unavailable(format!("refused: {}", status.message())))
            }
            Ok(Err(status)) => {
                tracing::debug!(to, peer_addr, %status, "forward failed after sending; outcome unknown");
                return Err(ProposeError::Timeout(start.elapsed()));
            }
            Ok(Ok(response)) => response.into_inner(),
        };
        forward_result(response, to, peer_addr, start)
    }

    /// Asks the leader `to` at `peer_addr` for a linearizable read index, waiting at most
    /// `timeout`; covering the commits drawn at or below `covering` (0: none; docs/sharding.md
    /// §5.2); confirmed by the leader's lease when `lease` (this node reads under lease reads).
    /// A read changes nothing, so every failure is safe to retry.
    pub async fn read_index(
        &self,
        to: NodeId,
        peer_addr: &str,
        timeout: Duration,
        covering: dolmen_engine::Version,
        lease: bool,
    ) -> Result<u64, ProposeError> {
        let start = Instant::now();
        let unavailable = |what: String| {
            ProposeError::Unavailable(format!("read index from node {to} at {peer_addr}: {what}"))
        };
        let mut client = self
            .channels
            .client(peer_addr)
            .map_err(|e| unavailable(e.to_string()))?;
        let mut request = Request::new(pb::ReadIndexRequest {
            group_id: self.group,
            timeout_ms: millis(timeout),
            covering_version: covering,
            lease,
        });
        request.set_timeout(timeout.saturating_add(ANSWER_GRACE));
        let gate = admit(self.faults.as_ref(), self.from, to, "ReadIndex");
        let call = async move {
            gate.await;
            client.read_index(request).await
        };
        let response = match tokio::time::timeout(timeout.saturating_add(ANSWER_GRACE), call).await
        {
            Err(_elapsed) => return Err(ProposeError::Timeout(start.elapsed())),
            Ok(Err(status)) if is_connect_error(&status) => {
                return Err(ProposeError::LeaderUnreachable(format!(
                    "read index from node {to} at {peer_addr}: not connected: {}",
                    status.message()
                )))
            }
            Ok(Err(status))
                if status.code() == Code::DeadlineExceeded || status.code() == Code::Cancelled =>
            {
                return Err(ProposeError::Timeout(start.elapsed()))
            }
            Ok(Err(status)) => {
                return Err(unavailable(format!(
                    "{:?}: {}",
                    status.code(),
                    status.message()
                )))
            }
            Ok(Ok(response)) => response.into_inner(),
        };
        use pb::read_index_response::Result as R;
        match response.result {
            Some(R::ReadIndex(index)) => Ok(index),
            Some(R::NotLeader(hint)) => Err(wire::not_leader_from_pb(hint)),
            Some(R::Unavailable(u)) => Err(ProposeError::Unavailable(u.message)),
            Some(R::Timeout(_)) => Err(ProposeError::Timeout(start.elapsed())),
            None => Err(unavailable("answer without a result".to_string())),
        }
    }

    /// Asks node `to` at `peer_addr` who it is and whether it is initialized.
    /// `Unavailable` = not reachable or refused; `Timeout` = no answer within `timeout`.
    pub async fn probe(
        &self,
        to: NodeId,
        peer_addr: &str,
        timeout: Duration,
    ) -> Result<ProbeInfo, ProposeError> {
        let start = Instant::now();
        let unavailable = |what: String| {
            ProposeError::Unavailable(format!("probe node {to} at {peer_addr}: {what}"))
        };
        let mut client = self
            .channels
            .client(peer_addr)
            .map_err(|e| unavailable(e.to_string()))?;
        let mut request = Request::new(pb::ProbeRequest {
            group_id: self.group,
        });
        request.set_timeout(timeout);
        let gate = admit(self.faults.as_ref(), self.from, to, "Probe");
        let call = async move {
            gate.await;
            client.probe(request).await
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_elapsed) => Err(ProposeError::Timeout(start.elapsed())),
            Ok(Err(status))
                if status.code() == Code::DeadlineExceeded || status.code() == Code::Cancelled =>
            {
                Err(ProposeError::Timeout(start.elapsed()))
            }
            Ok(Err(status)) => Err(unavailable(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
            Ok(Ok(response)) => {
                let r = response.into_inner();
                Ok(ProbeInfo {
                    node_id: r.node_id,
                    initialized: r.initialized,
                    fingerprint: r.fingerprint,
                    status_json: r.status_json,
                })
            }
        }
    }
}

impl PeerClient {
    /// Reports this node's applied index to the leader `to` at `peer_addr` on one
    /// `AppliedStream` (`replication_mode = "all"`, docs/replication.md §7.5): each index
    /// `applied` yields is sent, until it ends or the call fails. Each report passes the fault
    /// hook on its own (a dropped report is skipped, a delayed one waits).
    ///
    /// # Errors
    /// `Unavailable` when the stream could not be opened or broke.
    pub fn applied_stream(
        &self,
        to: NodeId,
        peer_addr: &str,
        mut applied: BoxStream<'static, u64>,
    ) -> BoxFuture<'static, Result<(), ProposeError>> {
        let target = format!("applied reports to node {to} at {peer_addr}");
        let client = self.channels.client(peer_addr);
        let (from, group, faults) = (self.from, self.group, self.faults.clone());
        // The request stream is a channel fed beside the call (a stream adapter with an async
        // closure here makes the call's future one the compiler cannot prove `Send`).
        let (reports, outgoing) = tokio::sync::mpsc::channel::<pb::AppliedReport>(1);
        let feed = async move {
            while let Some(applied) = applied.next().await {
                match decide(faults.as_ref(), from, to, "AppliedStream") {
                    FaultAction::Drop => continue,
                    FaultAction::Delay(delay) => tokio::time::sleep(delay).await,
                    FaultAction::Deliver | FaultAction::Duplicate => {}
                }
                let report = pb::AppliedReport {
                    group_id: group,
                    from,
                    applied,
                };
                if reports.send(report).await.is_err() {
                    return;
                }
            }
        };
        Box::pin(async move {
            let mut client =
                client.map_err(|e| ProposeError::Unavailable(format!("{target}: {e}")))?;
            let call = client.applied_stream(ReceiverStream::new(outgoing));
            tokio::pin!(call);
            let result = tokio::select! {
                result = &mut call => result,
                // The reports ended: the stream ends once the last is sent.
                () = feed => call.await,
            };
            match result {
                Ok(_) => Ok(()),
                Err(status) => Err(ProposeError::Unavailable(format!(
                    "{target}: {:?}: {}",
                    status.code(),
                    status.message()
                ))),
            }
        })
    }
}

/// Statuses the server returns before the handler runs (a bad request, a group the peer does
/// not run, an unknown method, a message over the size limit): the request was not processed.
fn refused_unprocessed(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::Unimplemented
            | Code::ResourceExhausted
    )
}

/// A forward's answer from the leader (unary or streamed).
fn forward_result(
    response: pb::ForwardResponse,
    to: NodeId,
    peer_addr: &str,
    start: Instant,
) -> Result<Applied, ProposeError> {
    use pb::forward_response::Result as R;
    match response.result {
        Some(R::Applied(applied)) => wire::applied_from_pb(applied).map_err(|e| {
            // Applied on the leader, but the answer is unreadable: the outcome is unknown here.
            tracing::warn!(to, peer_addr, error = %e, "undecodable forward outcome");
            ProposeError::Timeout(start.elapsed())
        }),
        Some(R::NotLeader(hint)) => Err(wire::not_leader_from_pb(hint)),
        Some(R::Unavailable(u)) => Err(ProposeError::Unavailable(u.message)),
        Some(R::Timeout(_)) => Err(ProposeError::Timeout(start.elapsed())),
        Some(R::AllWaitTimeout(t)) => Err(wire::all_wait_timeout_from_pb(t)),
        None => {
            tracing::warn!(to, peer_addr, "forward answer without a result");
            Err(ProposeError::Timeout(start.elapsed()))
        }
    }
}

/// A timeout in whole milliseconds, at least 1 (0 means "no deadline" to nobody).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
