//! The peer gRPC server: decodes each request, looks up its group in the [`GroupRouter`]
//! (`NOT_FOUND` for a group this node does not run) and hands the call to that group's
//! [`PeerHandler`]. `InstallSnapshot` streams into a file from the group's [`IncomingSnapshot`],
//! fsyncs it, and only then calls `install_full_snapshot`; a broken stream deletes the file.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::StreamExt;
use openraft::raft::AppendEntriesRequest;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::codec;
use crate::log_store::GroupId;
use crate::network::node_beat;
use crate::network::router::{GroupEntry, GroupNotHere, GroupRouter};
use crate::network::silent::SilentClose;
use crate::network::tls::PeerTls;
use crate::network::wire::{self, pb};
use crate::network::{forward_stream, timestamps};
use crate::network::{PeerHandler, Snapshot, MAX_MESSAGE_BYTES, MAX_SNAPSHOT_CHUNK_BYTES};
use crate::types::{DolmenRaft, SnapshotFile, GROUP_ID};

/// Creates the file a received snapshot is written to: its path and the open, empty file.
/// Called once per `InstallSnapshot` stream, on a blocking thread.
pub type IncomingSnapshot = Arc<dyn Fn() -> io::Result<(PathBuf, std::fs::File)> + Send + Sync>;

/// Server-side bounds (docs/replication.md §6.3).
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// HTTP/2 keep-alive ping interval.
    pub keepalive_interval: Duration,
    /// How long a keep-alive ping may go unanswered.
    pub keepalive_timeout: Duration,
    /// Requests served at once per connection; more wait (HTTP/2 flow control pushes back).
    pub concurrency_limit_per_connection: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Longest wait for the next message of a snapshot stream.
    pub snapshot_idle_timeout: Duration,
    /// Longest a whole snapshot stream may take to arrive (the install is not counted).
    pub snapshot_max_duration: Duration,
    /// Cap on the timeout a peer asks for in `Forward` and `ReadIndex`, and on one oracle grant
    /// (`Timestamps`).
    pub max_request_timeout: Duration,
    /// Mutual TLS, when set: a peer without a certificate the cluster CA signed is refused at
    /// the handshake.
    pub tls: Option<PeerTls>,
    /// A connection on which no byte arrives for this long is closed (`silent.rs`): members
    /// ping every `keepalive_interval`, a socket that never speaks does not.
    pub silent_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(3),
            concurrency_limit_per_connection: 256,
            max_concurrent_streams: 1024,
            snapshot_idle_timeout: Duration::from_secs(30),
            snapshot_max_duration: Duration::from_secs(600),
            max_request_timeout: Duration::from_secs(60),
            tls: None,
            silent_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `handler` as group 0 on `listener` with [`ServeOptions::default`] until `shutdown`
/// resolves; see [`serve_router`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    handler: Arc<dyn PeerHandler>,
    incoming: IncomingSnapshot,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with(
        ServeOptions::default(),
        listener,
        handler,
        incoming,
        shutdown,
    )
    .await
}

/// Serves `handler` as group 0 (the only group of a router holding nothing else) on
/// `listener` until `shutdown` resolves; see [`serve_router`].
pub async fn serve_with(
    options: ServeOptions,
    listener: tokio::net::TcpListener,
    handler: Arc<dyn PeerHandler>,
    incoming: IncomingSnapshot,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let router = GroupRouter::single(GROUP_ID, handler, incoming);
    serve_router(options, listener, router, shutdown).await
}

/// Serves every group of `router` on `listener` with [`ServeOptions::default`] until
/// `shutdown` resolves; see [`serve_router`].
pub async fn serve_groups(
    listener: tokio::net::TcpListener,
    router: GroupRouter,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_router(ServeOptions::default(), listener, router, shutdown).await
}

/// Serves the peer protocol on `listener` for the groups in `router` (which may change while
/// it serves: each request's group is looked up as it arrives) until `shutdown` resolves, then
/// drains in-flight calls; append streams, which live as long as a leader's replication
/// session, end at once. Connections use TCP_NODELAY, HTTP/2 keep-alive and 64 MiB message
/// limits.
pub async fn serve_router(
    options: ServeOptions,
    listener: tokio::net::TcpListener,
    router: GroupRouter,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let (closing, closed) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = closing.send(true);
    };
    let silent_timeout = options.silent_timeout;
    let connections = tokio_stream::StreamExt::map(
        tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        move |accepted| accepted.map(|stream| SilentClose::new(stream, silent_timeout)),
    );
    let service = pb::peer_server::PeerServer::new(PeerService {
        router,
        options: options.clone(),
        closed,
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &options.tls {
        builder = builder
            .tls_config(tls.server())
            .map_err(|e| io::Error::other(format!("peer server TLS on {local}: {e}")))?;
    }
    builder
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(options.keepalive_interval))
        .http2_keepalive_timeout(Some(options.keepalive_timeout))
        .concurrency_limit_per_connection(options.concurrency_limit_per_connection)
        .max_concurrent_streams(options.max_concurrent_streams)
        .add_service(service)
        .serve_with_incoming_shutdown(connections, shutdown)
        .await
        .map_err(|e| io::Error::other(format!("peer server on {local}: {e}")))
}

/// Raft stopped on this node: the caller should back off.
fn fatal_status(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft on this node is not running: {e}"))
}

fn request_timeout(timeout_ms: u64, cap: Duration) -> Result<Duration, Status> {
    if timeout_ms == 0 {
        return Err(Status::invalid_argument(
            "timeout_ms: must be greater than 0",
        ));
    }
    Ok(Duration::from_millis(timeout_ms).min(cap))
}

struct PeerService {
    /// The groups served, looked up by every request.
    router: GroupRouter,
    options: ServeOptions,
    /// Turns `true` when the server starts shutting down.
    closed: tokio::sync::watch::Receiver<bool>,
}

impl PeerService {
    /// The handler of `group`, or `NOT_FOUND` naming it.
    fn handler(&self, group: GroupId) -> Result<Arc<dyn PeerHandler>, Status> {
        Ok(Arc::clone(&self.router.get(group)?.handler))
    }

    /// The handler of `group` for a message that wakes it if it hibernates (docs/sharding.md
    /// §8.3): anything but a heartbeat, a probe or an applied report.
    fn waking(&self, group: GroupId) -> Result<Arc<dyn PeerHandler>, Status> {
        let handler = self.handler(group)?;
        self.router.touch(group);
        Ok(handler)
    }
}

#[tonic::async_trait]
impl pb::peer_server::Peer for PeerService {
    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let req = request.into_inner();
        let handler = self.waking(req.group_id)?;
        let req = wire::vote_request_from_pb(req)?;
        let resp = handler.vote(req).await.map_err(fatal_status)?;
        Ok(Response::new(wire::vote_response_to_pb(&resp)))
    }

    async fn pre_vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let req = request.into_inner();
        let handler = self.waking(req.group_id)?;
        let req = wire::vote_request_from_pb(req)?;
        let resp = handler.pre_vote(req).await.map_err(fatal_status)?;
        Ok(Response::new(wire::vote_response_to_pb(&resp)))
    }

    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let req = request.into_inner();
        let handler = if req.entries.is_empty() {
            self.handler(req.group_id)?
        } else {
            self.waking(req.group_id)?
        };
        let req = wire::append_request_from_pb(req)?;
        let resp = handler.append_entries(req).await.map_err(fatal_status)?;
        Ok(Response::new(wire::append_response_to_pb(&resp)))
    }

    type AppendStreamStream = BoxStream<'static, Result<pb::AppendStreamResponse, Status>>;

    async fn append_stream(
        &self,
        request: Request<Streaming<pb::AppendEntriesRequest>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let mut incoming = request.into_inner();
        let router = self.router.clone();
        // A stream carries one group, its first request's, looked up when that arrives; the
        // response starts at once all the same (as before the router, so a client that waits
        // for it before sending is not stalled).
        let answers = stream::once(async move {
            let first = match incoming.message().await {
                Ok(Some(first)) => first,
                Ok(None) => return stream::empty().boxed(),
                Err(status) => return stream::iter([Err(status)]).boxed(),
            };
            let group = first.group_id;
            match router.get(group) {
                Ok(entry) => append_answers(router, group, entry, first, incoming),
                Err(not_here) => stream::iter([Err(not_here.into())]).boxed(),
            }
        })
        .flatten();
        let mut closed = self.closed.clone();
        // An idle stream would otherwise hold the graceful shutdown until the leader sends again.
        let closing = async move {
            let _ = closed.wait_for(|closed| *closed).await;
        };
        Ok(Response::new(Box::pin(answers.take_until(closing))))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let mut stream = request.into_inner();
        let idle = self.options.snapshot_idle_timeout;
        let deadline = Instant::now() + self.options.snapshot_max_duration;

        let header = match next_message(&mut stream, idle, deadline).await? {
            Some(pb::SnapshotChunk {
                chunk: Some(pb::snapshot_chunk::Chunk::Header(header)),
            }) => header,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "chunk: the first message of a snapshot stream must be its header",
                ))
            }
            None => {
                return Err(Status::invalid_argument(
                    "snapshot stream ended before its header",
                ))
            }
        };
        let group = self.router.get(header.group_id)?;
        self.router.touch(header.group_id);
        let (vote, meta, size) = wire::snapshot_header_from_pb(header)?;

        let incoming = Arc::clone(&group.incoming);
        let (path, file) = tokio::task::spawn_blocking(move || incoming())
            .await
            .map_err(|e| Status::internal(format!("snapshot file creation panicked: {e}")))?
            .map_err(|e| Status::internal(format!("cannot create a snapshot file: {e}")))?;
        let guard = RemoveOnDrop(Some(path.clone()));
        receive_into(&mut stream, file, size, idle, deadline).await?;
        guard.disarm();

        tracing::info!(path = %path.display(), size, meta = %meta, "snapshot received; installing");
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotFile { path },
        };
        let resp = group
            .handler
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(fatal_status)?;
        Ok(Response::new(pb::SnapshotResponse {
            vote: codec::encode_vote(&resp.vote),
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let req = request.into_inner();
        let handler = self.waking(req.group_id)?;
        let req = wire::transfer_request_from_pb(req)?;
        let resp = handler.transfer_leader(req).await.map_err(fatal_status)?;
        Ok(Response::new(wire::transfer_response_to_pb(&resp)))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let req = request.into_inner();
        let handler = self.waking(req.group_id)?;
        let timeout = request_timeout(req.timeout_ms, self.options.max_request_timeout)?;
        let command = wire::command_from_pb(&req.command)?;
        let result = handler.forward(command, timeout).await;
        let resp = wire::forward_response_to_pb(&result)
            .map_err(|e| Status::internal(format!("cannot encode the outcome: {e}")))?;
        Ok(Response::new(resp))
    }

    type ForwardStreamStream = ReceiverStream<Result<pb::ForwardReplies, Status>>;

    async fn forward_stream(
        &self,
        request: Request<Streaming<pb::ForwardBatch>>,
    ) -> Result<Response<Self::ForwardStreamStream>, Status> {
        Ok(Response::new(forward_stream::serve(
            self.router.clone(),
            request.into_inner(),
            self.options.max_request_timeout,
            self.closed.clone(),
        )))
    }

    type TimestampsStream = ReceiverStream<Result<pb::TimestampReply, Status>>;

    async fn timestamps(
        &self,
        request: Request<Streaming<pb::TimestampRequest>>,
    ) -> Result<Response<Self::TimestampsStream>, Status> {
        Ok(Response::new(timestamps::serve(
            self.router.clone(),
            request.into_inner(),
            self.options.max_request_timeout,
            self.closed.clone(),
        )))
    }

    async fn read_index(
        &self,
        request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        let req = request.into_inner();
        let handler = self.waking(req.group_id)?;
        let timeout = request_timeout(req.timeout_ms, self.options.max_request_timeout)?;
        let result = handler
            .read_index(timeout, req.covering_version, req.lease)
            .await;
        Ok(Response::new(wire::read_index_response_to_pb(&result)))
    }

    async fn applied_stream(
        &self,
        request: Request<Streaming<pb::AppliedReport>>,
    ) -> Result<Response<pb::Empty>, Status> {
        let mut reports = request.into_inner();
        let mut closed = self.closed.clone();
        loop {
            // A follower keeps this stream open while this node leads; shutdown ends it.
            let closing = async {
                let _ = closed.wait_for(|closed| *closed).await;
            };
            let report = tokio::select! {
                report = reports.message() => report?,
                () = closing => None,
            };
            let Some(report) = report else {
                return Ok(Response::new(pb::Empty {}));
            };
            // Each report names its group: one for a group not here ends the stream.
            self.handler(report.group_id)?
                .applied_report(report.from, report.applied);
        }
    }

    async fn probe(
        &self,
        request: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeResponse>, Status> {
        let handler = self.handler(request.into_inner().group_id)?;
        let info = handler.probe().await;
        Ok(Response::new(pb::ProbeResponse {
            node_id: info.node_id,
            initialized: info.initialized,
            fingerprint: info.fingerprint,
            status_json: info.status_json,
        }))
    }

    async fn node_beat(
        &self,
        request: Request<Streaming<pb::Beat>>,
    ) -> Result<Response<pb::Empty>, Status> {
        let receiver = self.router.beats().cloned();
        node_beat::serve(receiver, request.into_inner(), self.closed.clone())
            .await
            .map(Response::new)
    }
}

/// The answers of an append stream of `group`: its requests (`first`, then the rest of
/// `incoming`) decoded up to the first bad one and handed to the group's handler; a bad one's
/// refusal ends the answers after every earlier request is answered.
fn append_answers(
    router: GroupRouter,
    group: GroupId,
    entry: Arc<GroupEntry>,
    first: pb::AppendEntriesRequest,
    incoming: Streaming<pb::AppendEntriesRequest>,
) -> BoxStream<'static, Result<pb::AppendStreamResponse, Status>> {
    let (refused, refusal) = tokio::sync::oneshot::channel::<Status>();
    let handler = Arc::clone(&entry.handler);
    let state = (Some(first), incoming, Some(refused), router, entry);
    let requests = stream::unfold(
        state,
        move |(mut first, mut incoming, mut refused, router, entry)| async move {
            let message = match first.take() {
                Some(first) => Ok(Some(first)),
                None => incoming.message().await,
            };
            let status = match message {
                Ok(Some(message)) => match decode_append(&router, group, &entry, message) {
                    Ok(req) => return Some((req, (None, incoming, refused, router, entry))),
                    Err(status) => status,
                },
                Ok(None) => return None,
                Err(status) => status,
            };
            if let Some(refused) = refused.take() {
                let _ = refused.send(status);
            }
            None
        },
    );
    let answers = handler
        .stream_append(Box::pin(requests))
        .map(|answer| match answer {
            Ok(result) => Ok(wire::stream_result_to_pb(&result)),
            Err(fatal) => Err(fatal_status(fatal)),
        });
    let refusal = stream::once(refusal).filter_map(|status| async move { status.ok().map(Err) });
    answers.chain(refusal).boxed()
}

/// A message of an append stream of `group` served by `entry`: of that group, which is still
/// served by `entry`, every field decoded.
fn decode_append(
    router: &GroupRouter,
    group: GroupId,
    entry: &Arc<GroupEntry>,
    message: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<DolmenRaft>, Status> {
    if message.group_id != group {
        return Err(Status::invalid_argument(format!(
            "group_id {} on an append stream of group {group}: a stream carries one group",
            message.group_id
        )));
    }
    if !router.is_current(group, entry) {
        return Err(GroupNotHere {
            group,
            node: router.node(),
        }
        .into());
    }
    // A heartbeat (no entries) does not wake a hibernating group; entries do (§8.3).
    if !message.entries.is_empty() {
        router.touch(group);
    }
    Ok(wire::append_request_from_pb(message)?)
}

/// The next message of a stream, waiting at most `idle` and never past `deadline`.
async fn next_message(
    stream: &mut Streaming<pb::SnapshotChunk>,
    idle: Duration,
    deadline: Instant,
) -> Result<Option<pb::SnapshotChunk>, Status> {
    let wait_until = (Instant::now() + idle).min(deadline);
    match tokio::time::timeout_at(wait_until, stream.message()).await {
        Ok(message) => message,
        Err(_elapsed) if wait_until == deadline => Err(Status::deadline_exceeded(
            "snapshot stream exceeded its maximum duration",
        )),
        Err(_elapsed) => Err(Status::deadline_exceeded(format!(
            "no snapshot chunk within {idle:?}"
        ))),
    }
}

/// Writes the data chunks of a snapshot stream into `file` (on tokio's blocking pool) and fsyncs
/// it; the data must add up to exactly `size` bytes.
async fn receive_into(
    stream: &mut Streaming<pb::SnapshotChunk>,
    file: std::fs::File,
    size: u64,
    idle: Duration,
    deadline: Instant,
) -> Result<(), Status> {
    let mut file = tokio::fs::File::from_std(file);
    let mut written: u64 = 0;
    while let Some(message) = next_message(stream, idle, deadline).await? {
        let data = match message.chunk {
            Some(pb::snapshot_chunk::Chunk::Data(data)) => data,
            Some(pb::snapshot_chunk::Chunk::Header(_)) => {
                return Err(Status::invalid_argument(
                    "chunk: a second header in one snapshot stream",
                ))
            }
            None => return Err(Status::invalid_argument("chunk: empty message")),
        };
        if data.len() > MAX_SNAPSHOT_CHUNK_BYTES {
            return Err(Status::invalid_argument(format!(
                "data: chunk of {} bytes exceeds the {MAX_SNAPSHOT_CHUNK_BYTES}-byte limit",
                data.len()
            )));
        }
        written += data.len() as u64;
        if written > size {
            return Err(Status::invalid_argument(format!(
                "data: more than the {size} bytes the header announced"
            )));
        }
        file.write_all(&data)
            .await
            .map_err(|e| Status::internal(format!("writing the snapshot file: {e}")))?;
    }
    if written != size {
        return Err(Status::aborted(format!(
            "snapshot stream ended after {written} of {size} bytes"
        )));
    }
    file.flush()
        .await
        .map_err(|e| Status::internal(format!("flushing the snapshot file: {e}")))?;
    file.sync_all()
        .await
        .map_err(|e| Status::internal(format!("fsyncing the snapshot file: {e}")))?;
    Ok(())
}

/// Deletes a partly received snapshot file unless disarmed, including when the call is dropped
/// because the sender went away.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let Some(path) = self.0.take() else { return };
        let remove = move || {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a partial snapshot file");
            } else {
                tracing::info!(path = %path.display(), "deleted a partial snapshot file");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}
