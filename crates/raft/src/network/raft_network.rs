//! Openraft's network over gRPC: [`GrpcNetworkFactory`] (`RaftNetworkFactory`) builds one
//! [`GrpcNetwork`] (`RaftNetworkV2`) per target on the shared channel cache.
//!
//! Replication and heartbeats go through `stream_append`: one pipelined `AppendStream` per
//! replication session, each request answered within the soft TTL (`open_append_stream`).
//! Every unary call is bounded by `RPCOption::soft_ttl()`. Errors: a failed connection, a peer
//! whose Raft stopped (`UNAVAILABLE`) or that does not run the group (`NOT_FOUND`) →
//! `Unreachable` (openraft backs off); our own deadline → `Timeout`; anything else → `Network`. Remote verdicts (higher vote, conflict, transfer
//! refusals) are ordinary responses and pass through unchanged.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures::stream::{self, Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::log_store::GroupId;
use crate::network::client::{is_connect_error, BadPeerAddress, Channels, GrpcClient};
use crate::network::faults::{admit, decide, gate, FaultAction, PeerFaults};
use crate::network::forward_stream::ForwardStreams;
use crate::network::timestamps::OracleClient;
use crate::network::wire::{self, pb};
use crate::network::{
    NetworkOptions, PeerClient, Snapshot, APPEND_BATCH_BYTES, MAX_SNAPSHOT_CHUNK_BYTES,
};
use crate::snapshot::SnapshotStats;
use crate::types::{DolmenRaft, LogId, NodeAddr, SnapshotFile, Vote, GROUP_ID};
use crate::NodeId;

/// First wait after a peer turned out unreachable; doubles up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(50);
/// Longest wait between attempts to reach an unreachable peer.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Snapshot chunks buffered between the file reader and the gRPC stream.
const SNAPSHOT_CHANNEL_CHUNKS: usize = 4;

type RaftRpcError = RPCError<DolmenRaft>;

/// Builds openraft's per-target network clients of one Raft group for node `this_node`; all
/// of them, the [`PeerClient`]s from [`GrpcNetworkFactory::peer_client`], and every other
/// group's factory from [`GrpcNetworkFactory::for_group`] share one channel per address: all
/// groups' messages to a peer go on its one HTTP/2 connection.
#[derive(Clone)]
pub struct GrpcNetworkFactory {
    this_node: NodeId,
    /// The group every request of its networks and clients is for.
    group: GroupId,
    channels: Channels,
    /// The forward streams, one per leader address for every group, shared with its clients.
    streams: Arc<ForwardStreams>,
    /// The oracle client (`Timestamps` streams), shared with its clients.
    oracle: OracleClient,
    faults: Option<Arc<dyn PeerFaults>>,
    snapshots: Option<Arc<SnapshotStats>>,
}

impl GrpcNetworkFactory {
    /// A factory of group 0 for node `this_node`, with a new channel cache.
    pub fn new(this_node: NodeId, options: NetworkOptions) -> Self {
        let channels = Channels::new(options);
        Self {
            this_node,
            group: GROUP_ID,
            streams: Arc::new(ForwardStreams::new(channels.clone())),
            oracle: OracleClient::with_channels(channels.clone()),
            channels,
            faults: None,
            snapshots: None,
        }
    }

    /// The factory of `group` on the same channels, forward streams and fault hook (its
    /// snapshot counter too: give it its own with [`with_snapshot_stats`](Self::with_snapshot_stats)).
    pub fn for_group(&self, group: GroupId) -> Self {
        Self {
            group,
            ..self.clone()
        }
    }

    /// The group this factory's networks and clients speak for.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Counts the snapshots its networks deliver in `stats`.
    pub fn with_snapshot_stats(mut self, stats: Arc<SnapshotStats>) -> Self {
        self.snapshots = Some(stats);
        self
    }

    /// Passes every outgoing call (of this factory's networks and of its [`PeerClient`]s)
    /// through `faults` (tests only).
    pub fn with_faults(mut self, faults: Arc<dyn PeerFaults>) -> Self {
        self.faults = Some(faults);
        self
    }

    /// A [`PeerClient`] of this factory's group, sharing its channels, forward streams and
    /// fault hook.
    pub fn peer_client(&self) -> PeerClient {
        PeerClient::from_parts(
            self.this_node,
            self.group,
            self.channels.clone(),
            Arc::clone(&self.streams),
            self.oracle.clone(),
            self.faults.clone(),
        )
    }

    /// The network to `target` at `node.peer_addr` (no connection is made yet).
    pub fn network(&self, target: NodeId, node: &NodeAddr) -> GrpcNetwork {
        GrpcNetwork {
            link: Arc::new(Link {
                from: self.this_node,
                group: self.group,
                target,
                addr: node.peer_addr.clone(),
            }),
            client: self.channels.client(&node.peer_addr),
            options: Arc::clone(self.channels.options()),
            faults: self.faults.clone(),
            snapshots: self.snapshots.clone(),
        }
    }
}

impl RaftNetworkFactory<DolmenRaft> for GrpcNetworkFactory {
    type Network = GrpcNetwork;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> GrpcNetwork {
        self.network(target, node)
    }
}

/// Who talks to whom: names both ends in every error of a [`GrpcNetwork`].
struct Link {
    from: NodeId,
    /// The group the requests are for.
    group: GroupId,
    target: NodeId,
    addr: String,
}

impl Link {
    fn timeout(&self, action: RPCTypes, ttl: Duration) -> Timeout<DolmenRaft> {
        Timeout {
            action,
            id: self.from,
            target: self.target,
            timeout: ttl,
        }
    }

    /// A failed call → `Unreachable` (not connected, the peer's Raft is not running, or the
    /// peer does not run the group: openraft backs off and tries again) or `Network`.
    fn status_error(&self, rpc: &str, status: &Status) -> RaftRpcError {
        let message = format!(
            "{rpc} of group {} to node {} at {}: {:?}: {}",
            self.group,
            self.target,
            self.addr,
            status.code(),
            status.message()
        );
        let unreachable = matches!(status.code(), Code::Unavailable | Code::NotFound);
        if is_connect_error(status) || unreachable {
            RPCError::Unreachable(Unreachable::from_string(message))
        } else {
            RPCError::Network(NetworkError::from_string(message))
        }
    }

    fn decode_error(&self, rpc: &str, e: impl std::fmt::Display) -> RaftRpcError {
        RPCError::Network(NetworkError::from_string(format!(
            "{rpc} answer from node {} at {}: {e}",
            self.target, self.addr
        )))
    }
}

/// Openraft's connection to one peer.
pub struct GrpcNetwork {
    link: Arc<Link>,
    /// The client, or why the address is unusable (reported by every call).
    client: Result<GrpcClient, BadPeerAddress>,
    options: Arc<NetworkOptions>,
    faults: Option<Arc<dyn PeerFaults>>,
    /// Counts delivered snapshots, when set.
    snapshots: Option<Arc<SnapshotStats>>,
}

impl GrpcNetwork {
    fn client(&self) -> Result<GrpcClient, Unreachable<DolmenRaft>> {
        self.client.clone().map_err(Unreachable::from_string)
    }

    /// Runs one unary call with `message` through the fault hook, bounded by `ttl`. A
    /// duplicated call sends a copy of `message` alongside and answers with the first copy's
    /// response.
    async fn unary<M, T, Fut>(
        &self,
        rpc: &'static str,
        action: RPCTypes,
        ttl: Duration,
        message: M,
        call: impl Fn(GrpcClient, M) -> Fut,
    ) -> Result<T, RaftRpcError>
    where
        M: Clone,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let client = self.client()?;
        let fault = decide(self.faults.as_ref(), self.link.from, self.link.target, rpc);
        let admitted = gate(fault, self.link.from, self.link.target, rpc);
        let work = async {
            admitted.await;
            if fault == FaultAction::Duplicate {
                tracing::debug!(
                    from = self.link.from,
                    to = self.link.target,
                    rpc,
                    "fault injection: duplicated"
                );
                let (first, _copy) =
                    tokio::join!(call(client.clone(), message.clone()), call(client, message));
                first
            } else {
                call(client, message).await
            }
        };
        match tokio::time::timeout(ttl, work).await {
            Err(_elapsed) => Err(RPCError::Timeout(self.link.timeout(action, ttl))),
            Ok(Err(status)) => Err(self.link.status_error(rpc, &status)),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }
}

/// The request half of an append stream: encodes openraft's requests, books each one, and
/// passes it through the fault hook (a dropped request holds back every later one, as a lost
/// packet holds back a TCP stream, until the answer half times out). It takes no request from
/// openraft while an answer is being handed over ([`StreamBook::delivering`]). It ends when
/// `input` does, or as soon as the answer half is gone (`stop`), so a finished session never
/// sends again.
fn append_requests<S>(
    input: S,
    book: Arc<Mutex<StreamBook>>,
    link: Arc<Link>,
    faults: Option<Arc<dyn PeerFaults>>,
    stop: oneshot::Receiver<()>,
) -> impl Stream<Item = pb::AppendEntriesRequest> + Send + 'static
where
    S: Stream<Item = AppendEntriesRequest<DolmenRaft>> + Send + Unpin + 'static,
{
    stream::unfold(
        (input, VecDeque::<pb::AppendEntriesRequest>::new(), stop),
        move |(mut input, mut queued, mut stop)| {
            let (book, link, faults) = (Arc::clone(&book), Arc::clone(&link), faults.clone());
            async move {
                if let Some(message) = queued.pop_front() {
                    return Some((message, (input, queued, stop)));
                }
                let next = tokio::select! {
                    biased;
                    _ = &mut stop => None,
                    next = next_append(&mut input, &book, &link, faults.as_ref()) => next,
                };
                let mut queued = next?;
                let message = queued.pop_front()?;
                Some((message, (input, queued, stop)))
            }
        },
    )
}

/// The next request of an append stream as the messages that carry it (its parts of at most
/// [`APPEND_BATCH_BYTES`] of entries, then their copies if the fault hook duplicates it), booked
/// and let through the fault hook; `None` when `input` ends or a request cannot be encoded (the
/// reason is booked).
async fn next_append<S>(
    input: &mut S,
    book: &Mutex<StreamBook>,
    link: &Link,
    faults: Option<&Arc<dyn PeerFaults>>,
) -> Option<VecDeque<pb::AppendEntriesRequest>>
where
    S: Stream<Item = AppendEntriesRequest<DolmenRaft>> + Unpin,
{
    const RPC: &str = "AppendEntries";
    // Openraft stamps a request with its sending time as it hands it over, and credits an
    // answer with the latest stamp among the requests up to its log id (`drain_acked`): the
    // request is booked in the same lock turn as it is taken, and none is taken while an
    // answer is handed over, so the answer half always knows every request that answer would
    // be credited with (see `append_answers`).
    let (mut parts, last) = std::future::poll_fn(|cx| {
        let mut book = book.lock();
        if book.delivering {
            book.puller = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let Some(req) = std::task::ready!(input.poll_next_unpin(cx)) else {
            return Poll::Ready(None);
        };
        let last = req.entries.last().map(|e| e.log_id).or(req.prev_log_id);
        match wire::append_request_to_pb_parts(link.group, &req, APPEND_BATCH_BYTES) {
            Ok(parts) => {
                book_parts(&mut book, &parts, last, false);
                Poll::Ready(Some((VecDeque::from(parts), last)))
            }
            Err(e) => {
                book.failure = Some(format!(
                    "cannot encode AppendEntries for node {}: {e}",
                    link.target
                ));
                Poll::Ready(None)
            }
        }
    })
    .await?;
    let fault = decide(faults, link.from, link.target, RPC);
    gate(fault, link.from, link.target, RPC).await;
    if fault == FaultAction::Duplicate {
        tracing::debug!(
            from = link.from,
            to = link.target,
            rpc = RPC,
            "fault injection: duplicated"
        );
        let copies: Vec<_> = parts.iter().cloned().collect();
        book_parts(&mut book.lock(), &copies, last, true);
        parts.extend(copies);
    }
    Some(parts)
}

/// Books the messages of one request, `copy` when they are a duplicate's.
fn book_parts(
    book: &mut StreamBook,
    parts: &[pb::AppendEntriesRequest],
    last: Option<LogId>,
    copy: bool,
) {
    for (i, message) in parts.iter().enumerate() {
        let bytes: usize = message.entries.iter().map(Vec::len).sum();
        book.unanswered.push_back(Sent {
            at: Instant::now(),
            transfer: transfer_allowance(bytes),
            last,
            copy,
            part: i + 1 < parts.len(),
        });
    }
}

/// The slowest transfer an append is allowed before its answer is late: 50 MB/s, so a 10 MB
/// commit gets 200 ms on top of the soft TTL (which is sized for small requests).
fn transfer_allowance(bytes: usize) -> Duration {
    const BYTES_PER_SECOND: f64 = 50e6;
    Duration::from_secs_f64(bytes as f64 / BYTES_PER_SECOND)
}

/// The answer half of an append stream: openraft's answers in request order, each due `ttl`
/// plus its [`transfer_allowance`] after its request was taken or after the previous answer,
/// whichever is later (requests queue behind each other on the stream: a follower catching up
/// through many large requests answers them one after the other, and is late only when it
/// stops answering); the copy of a duplicated request is answered too, and that answer dropped.
///
/// A success is held back while a request taken after it, up to the same log id (an entry-less
/// request carrying a new commit index), is unanswered: openraft would credit that request's
/// sending time to this answer, and so extend the leader lease with a request the follower may
/// never receive (a partition that drops it; docs/replication.md §8.7). The later request's own
/// answer carries the same log id; if it never comes, the stream times out. While a success is
/// handed over (until openraft asks for the next answer, which it does only after crediting
/// this one) the request half takes no new request.
///
/// It holds `stop`: when it ends or is dropped, the request half ends too.
fn append_answers(
    responses: Streaming<pb::AppendStreamResponse>,
    book: Arc<Mutex<StreamBook>>,
    link: Arc<Link>,
    ttl: Duration,
    stop: oneshot::Sender<()>,
) -> impl Stream<Item = StreamAnswer> + Send + 'static {
    stream::unfold(Some((responses, stop, Instant::now())), move |state| {
        let (book, link) = (Arc::clone(&book), Arc::clone(&link));
        async move {
            let (mut responses, stop, mut last_answer) = state?;
            // Openraft asked again: it has credited the last answer handed over.
            book.lock().handed_over();
            loop {
                let due = book
                    .lock()
                    .unanswered
                    .front()
                    .map(|sent| sent.at.max(last_answer) + ttl + sent.transfer);
                let next = match due {
                    Some(due) => tokio::time::timeout_at(due, responses.message()).await,
                    // Nothing in flight: wait for the next request's answer, re-checking.
                    None => tokio::time::timeout(ttl, responses.message()).await,
                };
                let message = match next {
                    Err(_elapsed) if due.is_some() => {
                        let timeout = link.timeout(RPCTypes::AppendEntries, ttl);
                        return Some((Err(RPCError::Timeout(timeout)), None));
                    }
                    Err(_elapsed) => continue,
                    Ok(Err(status)) => {
                        return Some((Err(link.status_error("AppendStream", &status)), None))
                    }
                    Ok(Ok(None)) => {
                        let mut book = book.lock();
                        let cause = match (book.failure.take(), book.unanswered.len()) {
                            (Some(failure), _) => failure,
                            (None, 0) => return None,
                            (None, n) => format!(
                                "AppendStream to node {} at {} ended with {n} requests unanswered",
                                link.target, link.addr
                            ),
                        };
                        return Some((
                            Err(RPCError::Network(NetworkError::from_string(cause))),
                            None,
                        ));
                    }
                    Ok(Ok(Some(message))) => message,
                };
                last_answer = Instant::now();
                let sent = book.lock().unanswered.pop_front();
                if sent.as_ref().is_some_and(|sent| sent.copy) {
                    continue;
                }
                return match wire::stream_result_from_pb(message) {
                    // A part's success is not an answer: the last part's is.
                    Ok(Ok(_)) if sent.as_ref().is_some_and(|sent| sent.part) => continue,
                    // Another request would share this answer's credit: its own answer says it.
                    Ok(Ok(matching)) if !book.lock().may_hand_over(matching) => continue,
                    // A refusal is the last answer.
                    Ok(result) => {
                        let more = result.is_ok();
                        Some((Ok(result), more.then_some((responses, stop, last_answer))))
                    }
                    Err(e) => Some((Err(link.decode_error("AppendStream", e)), None)),
                };
            }
        }
    })
}

fn request<T>(message: T, ttl: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(ttl);
    request
}

impl RaftNetworkV2<DolmenRaft> for GrpcNetwork {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<DolmenRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<DolmenRaft>, RaftRpcError> {
        let ttl = option.soft_ttl();
        let parts = wire::append_request_to_pb_parts(self.link.group, &rpc, APPEND_BATCH_BYTES)
            .map_err(|e| {
                RPCError::Network(NetworkError::from_string(format!(
                    "cannot encode AppendEntries for node {}: {e}",
                    self.link.target
                )))
            })?;
        // The parts one after the other: the first answer that is not a success, or the last.
        let mut answer = AppendEntriesResponse::Success;
        for message in parts {
            let response = self
                .unary(
                    "AppendEntries",
                    RPCTypes::AppendEntries,
                    ttl,
                    message,
                    |mut c, m| async move { c.append_entries(request(m, ttl)).await },
                )
                .await?;
            answer = wire::append_response_from_pb(response)
                .map_err(|e| self.link.decode_error("AppendEntries", e))?;
            if !matches!(answer, AppendEntriesResponse::Success) {
                break;
            }
        }
        Ok(answer)
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, StreamAnswer>, RaftRpcError>>
    where
        S: Stream<Item = AppendEntriesRequest<DolmenRaft>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let answers: BoxStream<'s, StreamAnswer> =
                self.open_append_stream(input, option.soft_ttl()).await?;
            Ok(answers)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<DolmenRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<DolmenRaft>, RaftRpcError> {
        let ttl = option.soft_ttl();
        let message = wire::vote_request_to_pb(self.link.group, &rpc);
        let response = self
            .unary(
                "Vote",
                RPCTypes::Vote,
                ttl,
                message,
                |mut c, m| async move { c.vote(request(m, ttl)).await },
            )
            .await?;
        wire::vote_response_from_pb(response).map_err(|e| self.link.decode_error("Vote", e))
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<DolmenRaft>,
        option: RPCOption,
    ) -> Result<VoteResponse<DolmenRaft>, RaftRpcError> {
        let ttl = option.soft_ttl();
        let message = wire::vote_request_to_pb(self.link.group, &rpc);
        let response = self
            .unary(
                "PreVote",
                RPCTypes::Vote,
                ttl,
                message,
                |mut c, m| async move { c.pre_vote(request(m, ttl)).await },
            )
            .await?;
        wire::vote_response_from_pb(response).map_err(|e| self.link.decode_error("PreVote", e))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<DolmenRaft>, StreamingError<DolmenRaft>> {
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = self.send_snapshot(vote, snapshot, option) => {
                if let (Ok(_), Some(stats)) = (&result, &self.snapshots) {
                    stats.record_sent();
                }
                result
            }
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<DolmenRaft>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<DolmenRaft>, RaftRpcError> {
        let ttl = option.soft_ttl();
        let message = wire::transfer_request_to_pb(self.link.group, &req);
        let response = self
            .unary(
                "TransferLeader",
                RPCTypes::TransferLeader,
                ttl,
                message,
                |mut c, m| async move { c.transfer_leader(request(m, ttl)).await },
            )
            .await?;
        wire::transfer_response_from_pb(response)
            .map_err(|e| self.link.decode_error("TransferLeader", e))
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(std::iter::successors(
            Some(BACKOFF_START),
            |d| Some((*d * 2).min(BACKOFF_MAX)),
        )))
    }
}

/// One answer of an append stream, as openraft's replication reads it.
type StreamAnswer = Result<StreamAppendResult<DolmenRaft>, RaftRpcError>;

/// A request of an append stream that went out (or is held by a fault) and is not answered yet.
struct Sent {
    /// When it was taken from openraft's stream: its answer is due `ttl` plus `transfer` later,
    /// or after the previous answer if that came later.
    at: Instant,
    /// The time its entries may take on the wire and into the follower's log.
    transfer: Duration,
    /// The log id it ends at: its last entry's, or where it starts when it carries none.
    last: Option<LogId>,
    /// The second copy of a duplicated request: its answer is read and dropped.
    copy: bool,
    /// A part of a request cut in several, not its last: its success is read and dropped (the
    /// last part's answer is the request's), a refusal is the request's answer.
    part: bool,
}

/// What the request and the answer halves of one append stream share.
#[derive(Default)]
struct StreamBook {
    /// Requests in sending order, each until its answer arrives.
    unanswered: VecDeque<Sent>,
    /// Why the request half stopped early, if it did.
    failure: Option<String>,
    /// A success was handed to openraft, which has not asked for the next answer yet: the
    /// request half takes no request meanwhile.
    delivering: bool,
    /// The request half, waiting for `delivering` to end.
    puller: Option<Waker>,
}

impl StreamBook {
    /// Whether a success up to `matching` may go to openraft now: no unanswered request up to
    /// that log id was taken after it. If so, the request half pauses until
    /// [`Self::handed_over`].
    fn may_hand_over(&mut self, matching: Option<LogId>) -> bool {
        let shared = self
            .unanswered
            .iter()
            .any(|sent| !sent.copy && !sent.part && sent.last <= matching);
        self.delivering = !shared;
        !shared
    }

    /// Openraft took the answer handed over: the request half may go on.
    fn handed_over(&mut self) {
        self.delivering = false;
        if let Some(puller) = self.puller.take() {
            puller.wake();
        }
    }
}

impl GrpcNetwork {
    /// Opens an `AppendStream` to the target and feeds it `input`: requests go out as openraft
    /// produces them, without waiting for answers (pipelined replication), and the answers come
    /// back in order. Each request passes the fault hook as an `"AppendEntries"` call. An answer
    /// not back within `ttl` of its request ends the stream with `Timeout`, as a unary call
    /// would; so does a dropped request.
    async fn open_append_stream<S>(
        &self,
        input: S,
        ttl: Duration,
    ) -> Result<BoxStream<'static, StreamAnswer>, RaftRpcError>
    where
        S: Stream<Item = AppendEntriesRequest<DolmenRaft>> + Send + Unpin + 'static,
    {
        let mut client = self.client()?;
        let book = Arc::new(Mutex::new(StreamBook::default()));
        let (stop, stopped) = oneshot::channel();
        let requests = append_requests(
            input,
            Arc::clone(&book),
            Arc::clone(&self.link),
            self.faults.clone(),
            stopped,
        );
        let responses = match tokio::time::timeout(ttl, client.append_stream(requests)).await {
            Err(_elapsed) => {
                return Err(RPCError::Timeout(
                    self.link.timeout(RPCTypes::AppendEntries, ttl),
                ))
            }
            Ok(Err(status)) => return Err(self.link.status_error("AppendStream", &status)),
            Ok(Ok(response)) => response.into_inner(),
        };
        Ok(Box::pin(append_answers(
            responses,
            book,
            Arc::clone(&self.link),
            ttl,
            stop,
        )))
    }

    /// Streams the snapshot file: a header, then chunks read by a producer task through a
    /// bounded channel. Each chunk must be taken by the stream within the soft TTL; the whole
    /// transfer, install included, within `snapshot_max_duration`.
    async fn send_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
        option: RPCOption,
    ) -> Result<SnapshotResponse<DolmenRaft>, StreamingError<DolmenRaft>> {
        let ttl = option.soft_ttl();
        let chunk_bytes = option
            .snapshot_chunk_size()
            .unwrap_or(MAX_SNAPSHOT_CHUNK_BYTES)
            .min(self.options.snapshot_chunk_bytes)
            .clamp(1, MAX_SNAPSHOT_CHUNK_BYTES);
        let network_error = |what: String| {
            StreamingError::Network(NetworkError::from_string(format!(
                "InstallSnapshot to node {} at {}: {what}",
                self.link.target, self.link.addr
            )))
        };
        let mut client = self.client()?;

        let path = snapshot.snapshot.path.clone();
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            network_error(format!("cannot open snapshot file {}: {e}", path.display()))
        })?;
        let size = file
            .metadata()
            .await
            .map_err(|e| {
                network_error(format!("cannot stat snapshot file {}: {e}", path.display()))
            })?
            .len();
        let header = wire::snapshot_header_to_pb(self.link.group, &vote, &snapshot.meta, size)
            .map_err(|e| network_error(format!("cannot encode the snapshot header: {e}")))?;

        let gate = admit(
            self.faults.as_ref(),
            self.link.from,
            self.link.target,
            "InstallSnapshot",
        );
        if tokio::time::timeout(ttl, gate).await.is_err() {
            return Err(StreamingError::Timeout(
                self.link.timeout(RPCTypes::InstallSnapshot, ttl),
            ));
        }

        let (tx, rx) = tokio::sync::mpsc::channel(SNAPSHOT_CHANNEL_CHUNKS);
        tx.send(pb::SnapshotChunk {
            chunk: Some(pb::snapshot_chunk::Chunk::Header(header)),
        })
        .await
        .map_err(|_| network_error("snapshot stream closed before its header".to_string()))?;
        let mut producer = AbortOnDrop(tokio::spawn(produce_chunks(
            file,
            size,
            chunk_bytes,
            ttl,
            tx,
        )));

        let max = self.options.snapshot_max_duration;
        let call = client.install_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
        let response = match tokio::time::timeout(max, call).await {
            Err(_elapsed) => {
                return Err(StreamingError::Timeout(
                    self.link.timeout(RPCTypes::InstallSnapshot, max),
                ))
            }
            Ok(Err(status)) => {
                // A producer failure ends the stream early; report the cause, not the symptom.
                if let Some(cause) = producer.finished_error().await {
                    return Err(self.producer_error(cause, ttl));
                }
                return Err(self.link.status_error("InstallSnapshot", &status).into());
            }
            Ok(Ok(response)) => response.into_inner(),
        };
        let vote = wire::snapshot_vote_from_pb(&response.vote)
            .map_err(|e| network_error(format!("undecodable answer: {e}")))?;
        Ok(SnapshotResponse::new(vote))
    }

    fn producer_error(&self, cause: ProducerError, ttl: Duration) -> StreamingError<DolmenRaft> {
        match cause {
            ProducerError::Stalled => {
                StreamingError::Timeout(self.link.timeout(RPCTypes::InstallSnapshot, ttl))
            }
            ProducerError::Read(e) => StreamingError::Network(NetworkError::from_string(format!(
                "InstallSnapshot to node {} at {}: {e}",
                self.link.target, self.link.addr
            ))),
        }
    }
}

/// Why the chunk producer stopped early.
#[derive(Debug)]
enum ProducerError {
    /// The stream took no chunk within the TTL.
    Stalled,
    /// Reading the file failed or it was shorter than its size.
    Read(String),
}

/// Reads `size` bytes of `file` in `chunk_bytes` pieces into `tx`.
async fn produce_chunks(
    mut file: tokio::fs::File,
    size: u64,
    chunk_bytes: usize,
    ttl: Duration,
    tx: tokio::sync::mpsc::Sender<pb::SnapshotChunk>,
) -> Result<(), ProducerError> {
    let mut sent: u64 = 0;
    while sent < size {
        let want = usize::try_from(size - sent)
            .unwrap_or(usize::MAX)
            .min(chunk_bytes);
        let mut data = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            let n = file
                .read(&mut data[filled..])
                .await
                .map_err(|e| ProducerError::Read(format!("reading the snapshot file: {e}")))?;
            if n == 0 {
                return Err(ProducerError::Read(format!(
                    "the snapshot file ended after {} of {size} bytes",
                    sent + filled as u64
                )));
            }
            filled += n;
        }
        let chunk = pb::SnapshotChunk {
            chunk: Some(pb::snapshot_chunk::Chunk::Data(data)),
        };
        match tokio::time::timeout(ttl, tx.send(chunk)).await {
            Err(_elapsed) => return Err(ProducerError::Stalled),
            // The call ended (answered or failed); it reports why.
            Ok(Err(_closed)) => return Ok(()),
            Ok(Ok(())) => sent += want as u64,
        }
    }
    Ok(())
}

/// Aborts the producer task when the transfer ends or is cancelled.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), ProducerError>>);

impl AbortOnDrop {
    /// The producer's error, if it stopped with one. A producer that fails ends the stream, so
    /// by the time the call fails it has finished or is about to; waits only briefly.
    async fn finished_error(&mut self) -> Option<ProducerError> {
        match tokio::time::timeout(Duration::from_millis(100), &mut self.0).await {
            Ok(Ok(Err(e))) => Some(e),
            _ => None,
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
