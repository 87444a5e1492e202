//! Versions from the oracle on one long-lived `Timestamps` stream per leader, batched by the
//! gateway (docs/sharding.md §3.3), both sides.
//!
//! ```text
//!  gateway                                                           group 0's leader
//!  versions(n, read) ─▶ queue ─▶ driver: while < 2 batches in flight,     serve(): each request
//!     ▲                  everything queued ─▶ TimestampRequest{Σn, any} ══▶ ─▶ PeerHandler::timestamps
//!     └── split: [first, first+n₁), [first+n₁, …), one read version ◀══ TimestampReply, by id ◀─┘
//! ```
//!
//! **A batch serves only callers queued before it was sent** (§3.3): a version is never kept
//! and handed to a caller that arrived later, because "drawn after" (invariants 3 and 8) is
//! about the moment the oracle drew it. Read versions in one batch share one value. At most two
//! batches are in flight: one is being answered while the next gathers callers.
//!
//! Every failure means nothing was committed: a request the stream broke under may have burned
//! versions (never handed out), so its callers get `Unavailable`, and the next call reopens the
//! stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::log_store::GroupId;
use crate::network::by_id::{self, OpenError, Slots};
use crate::network::client::Channels;
use crate::network::router::GroupRouter;
use crate::network::wire::{self, pb};
use crate::network::NetworkOptions;
use crate::oracle::VersionGrant;
use crate::types::GROUP_ID;
use crate::{BoxFuture, NodeId, ProposeError};

/// Batches in flight on one stream at most (§3.3: one answered while the next gathers).
pub const MAX_IN_FLIGHT: usize = 2;
/// Commit versions in one batch at most (one caller asking more goes alone): a batch moves the
/// oracle that far ahead of the clock.
pub const MAX_BATCH_VERSIONS: u64 = 65_536;
/// Callers queued per leader before `versions` waits (each caller waits for its answer, so this
/// only smooths bursts).
const QUEUE_DEPTH: usize = 8192;

/// What an [`OracleClient`] sent and was granted, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OracleStats {
    /// Requests sent (batches).
    pub batches: u64,
    /// Callers those batches served.
    pub callers: u64,
    /// Commit versions granted.
    pub versions: u64,
    /// Streams opened.
    pub streams: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    callers: AtomicU64,
    versions: AtomicU64,
    streams: AtomicU64,
}

/// One caller waiting for versions.
struct Ask {
    commit_count: u32,
    want_read: bool,
    reply: oneshot::Sender<Result<VersionGrant, ProposeError>>,
}

/// The gateway's client of the oracle (docs/sharding.md §3.3): one `Timestamps` stream and one
/// driver task per leader address, started on first use and kept while a clone of this value
/// lives (drivers end when the last is dropped). Cheap to clone; clones share the streams.
#[derive(Clone)]
pub struct OracleClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// The oracle's group, named in every request.
    group: GroupId,
    channels: Channels,
    queues: Mutex<HashMap<String, mpsc::Sender<Ask>>>,
    counters: Arc<Counters>,
}

impl OracleClient {
    /// A client of group 0's oracle with its own channel cache (a `PeerClient` shares its
    /// own: [`PeerClient::oracle`](crate::network::PeerClient::oracle)).
    pub fn new(options: NetworkOptions) -> Self {
        Self::with_channels(Channels::new(options))
    }

    pub(crate) fn with_channels(channels: Channels) -> Self {
        Self {
            inner: Arc::new(Inner {
                group: GROUP_ID,
                channels,
                queues: Mutex::new(HashMap::new()),
                counters: Arc::default(),
            }),
        }
    }

    /// What this client has sent and been granted so far.
    pub fn stats(&self) -> OracleStats {
        let c = &self.inner.counters;
        OracleStats {
            batches: c.batches.load(Ordering::Relaxed),
            callers: c.callers.load(Ordering::Relaxed),
            versions: c.versions.load(Ordering::Relaxed),
            streams: c.streams.load(Ordering::Relaxed),
        }
    }

    /// `commit_count` consecutive commit versions and, if `want_read`, a read version from the
    /// oracle `to` at `peer_addr`, drawn after this call (in a batch sent after it was queued),
    /// within `timeout`.
    ///
    /// # Errors
    /// Nothing was committed in any case; versions drawn for a failed call are burned.
    /// - `NotLeader`: `to` is not the oracle; carries its hint.
    /// - `LeaderUnreachable`: no connection to `to`.
    /// - `Unavailable`: refused, the stream broke before the answer, or no answer in `timeout`.
    pub async fn versions(
        &self,
        to: NodeId,
        peer_addr: &str,
        commit_count: u32,
        want_read: bool,
        timeout: Duration,
    ) -> Result<VersionGrant, ProposeError> {
        let (reply, answer) = oneshot::channel();
        let mut ask = Ask {
            commit_count,
            want_read,
            reply,
        };
        let waited = tokio::time::timeout(timeout, async {
            // A driver that ended (its runtime stopped) is replaced once.
            for _ in 0..2 {
                match self.queue(to, peer_addr).send(ask).await {
                    Ok(()) => {
                        return answer.await.unwrap_or_else(|_| {
                            Err(ProposeError::Unavailable(format!(
                                "versions from node {to} at {peer_addr}: the driver stopped"
                            )))
                        })
                    }
                    Err(mpsc::error::SendError(back)) => {
                        self.inner.queues.lock().remove(peer_addr);
                        ask = back;
                    }
                }
            }
            Err(ProposeError::Unavailable(format!(
                "versions from node {to} at {peer_addr}: the oracle client's task is not running"
            )))
        });
        waited.await.unwrap_or_else(|_elapsed| {
            Err(ProposeError::Unavailable(format!(
                "versions from node {to} at {peer_addr}: no answer within {timeout:?} (versions \
                 drawn for this call, if any, are burned; nothing was committed)"
            )))
        })
    }

    fn queue(&self, to: NodeId, peer_addr: &str) -> mpsc::Sender<Ask> {
        let mut queues = self.inner.queues.lock();
        if let Some(queue) = queues.get(peer_addr).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (queue, asks) = mpsc::channel(QUEUE_DEPTH);
        let stream = GrpcStream {
            to,
            addr: peer_addr.to_owned(),
            group: self.inner.group,
            channels: self.inner.channels.clone(),
            counters: Arc::clone(&self.inner.counters),
            open: None,
            next_id: 0,
        };
        let driver = Driver {
            to,
            addr: peer_addr.to_owned(),
            counters: Arc::clone(&self.inner.counters),
            transport: stream,
        };
        tokio::spawn(driver.run(asks));
        queues.insert(peer_addr.to_owned(), queue.clone());
        queue
    }
}

/// Where a request's reply will come: `Some` the reply, `None` (or the sender dropped) when
/// the stream ended before it.
type ReplySlot = oneshot::Receiver<Option<pb::TimestampReply>>;

/// How a driver sends one request (the gRPC stream; a fake in the unit tests).
trait Transport: Send + 'static {
    /// Sends a request for `commit_count` commit versions and, if `want_read`, a read version.
    /// `Err`: not sent (nothing drawn).
    fn request(
        &mut self,
        commit_count: u32,
        want_read: bool,
    ) -> impl std::future::Future<Output = Result<ReplySlot, ProposeError>> + Send;
}

/// The driver of one leader address: batches, sends and splits.
struct Driver<T> {
    to: NodeId,
    addr: String,
    counters: Arc<Counters>,
    transport: T,
}

impl<T: Transport> Driver<T> {
    async fn run(mut self, mut asks: mpsc::Receiver<Ask>) {
        let mut queued: Vec<Ask> = Vec::new();
        let mut in_flight = FuturesUnordered::new();
        let mut taking = true;
        loop {
            tokio::select! {
                ask = asks.recv(), if taking => match ask {
                    Some(ask) => queued.push(ask),
                    None => taking = false,
                },
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            }
            // Everything queued by now goes in the next batch.
            while let Ok(ask) = asks.try_recv() {
                queued.push(ask);
            }
            // A caller that gave up before its batch was sent is withdrawn.
            queued.retain(|ask| !ask.reply.is_closed());
            while in_flight.len() < MAX_IN_FLIGHT && !queued.is_empty() {
                let batch = take_batch(&mut queued);
                let sent = self.send(batch).await;
                in_flight.push(sent);
            }
            if !taking && queued.is_empty() && in_flight.is_empty() {
                return;
            }
        }
    }

    /// Sends `batch` as one request; the future answers its callers once the reply comes.
    async fn send(&mut self, batch: Vec<Ask>) -> BoxFuture<'static, ()> {
        let commit_count = batch.iter().map(|a| u64::from(a.commit_count)).sum::<u64>();
        let commit_count = u32::try_from(commit_count).unwrap_or(u32::MAX);
        let want_read = batch.iter().any(|a| a.want_read);
        let (to, addr) = (self.to, self.addr.clone());
        let reply = match self.transport.request(commit_count, want_read).await {
            Ok(reply) => reply,
            Err(e) => {
                for ask in batch {
                    let _ = ask.reply.send(Err(e.clone()));
                }
                return Box::pin(async {});
            }
        };
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters
            .callers
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let counters = Arc::clone(&self.counters);
        Box::pin(async move {
            let result = match reply.await {
                Ok(Some(reply)) => wire::version_grant_from_pb(reply.result),
                // The stream ended first: the oracle may have drawn versions for it, burned.
                Ok(None) | Err(_) => Err(ProposeError::Unavailable(format!(
                    "versions from node {to} at {addr}: the stream broke before the answer \
                     (versions drawn for this request, if any, are burned; nothing was committed)"
                ))),
            };
            if let Ok(grant) = &result {
                counters
                    .versions
                    .fetch_add(u64::from(grant.count), Ordering::Relaxed);
            }
            split(result, commit_count, want_read, batch, to);
        })
    }
}

/// One leader address's `Timestamps` stream, opened on first use and reopened after it breaks.
struct GrpcStream {
    to: NodeId,
    addr: String,
    /// The oracle's group, named in every request.
    group: GroupId,
    channels: Channels,
    counters: Arc<Counters>,
    open: Option<Open>,
    next_id: u64,
}

/// One open stream: where requests go, and the waiters its reader answers.
struct Open {
    requests: mpsc::Sender<pb::TimestampRequest>,
    slots: Slots<Option<pb::TimestampReply>>,
}

impl Transport for GrpcStream {
    /// Sends one request on the open stream, opening one first when there is none or it
    /// closed (a stream found closed is replaced once).
    async fn request(
        &mut self,
        commit_count: u32,
        want_read: bool,
    ) -> Result<ReplySlot, ProposeError> {
        for _ in 0..2 {
            if self.open.as_ref().is_none_or(|o| o.requests.is_closed()) {
                self.open = Some(self.open_stream().await.map_err(|e| match e {
                    OpenError::Refused(e) => e,
                    OpenError::Unsupported => ProposeError::Unavailable(format!(
                        "versions from node {} at {}: it does not serve Timestamps (an older \
                         build)",
                        self.to, self.addr
                    )),
                })?);
            }
            let Some(open) = self.open.as_ref() else {
                continue;
            };
            self.next_id += 1;
            let id = self.next_id;
            let (reply, answer) = oneshot::channel();
            let registered = open.slots.lock().as_mut().map(|w| w.insert(id, reply));
            if registered.is_none() {
                // The reader ended: nothing of this request was sent.
                self.open = None;
                continue;
            }
            let request = pb::TimestampRequest {
                id,
                group_id: self.group,
                commit_count,
                want_read,
            };
            // At most MAX_IN_FLIGHT requests wait in this channel, so this never waits long.
            if open.requests.send(request).await.is_ok() {
                return Ok(answer);
            }
            self.open = None;
        }
        Err(ProposeError::LeaderUnreachable(format!(
            "versions from node {} at {}: the stream closed as it was opened",
            self.to, self.addr
        )))
    }
}

impl GrpcStream {
    /// Opens a stream and starts its reader; a request still waiting when the stream ends is
    /// answered `None` (lost).
    async fn open_stream(&self) -> Result<Open, OpenError> {
        let what = format!("versions from node {} at {}", self.to, self.addr);
        let mut client = self
            .channels
            .client(&self.addr)
            .map_err(|e| OpenError::Refused(ProposeError::Unavailable(format!("{what}: {e}"))))?;
        let (requests, outgoing) = mpsc::channel(MAX_IN_FLIGHT);
        let answers = by_id::open(&what, client.timestamps(ReceiverStream::new(outgoing))).await?;
        self.counters.streams.fetch_add(1, Ordering::Relaxed);
        let slots = by_id::slots();
        let split = |reply: pb::TimestampReply| vec![(reply.id, Some(reply))];
        tokio::spawn(by_id::read_by_id(
            self.to,
            answers,
            Arc::clone(&slots),
            split,
            || None,
        ));
        Ok(Open { requests, slots })
    }
}

/// The next batch: every queued caller, in order, up to [`MAX_BATCH_VERSIONS`] commit versions
/// (the first caller always goes, however many it asks); the rest stay queued for the next.
fn take_batch(queued: &mut Vec<Ask>) -> Vec<Ask> {
    let mut total = 0u64;
    let fits = queued
        .iter()
        .position(|ask| {
            total += u64::from(ask.commit_count);
            total > MAX_BATCH_VERSIONS
        })
        .map_or(queued.len(), |over| over.max(1));
    let rest = queued.split_off(fits);
    std::mem::replace(queued, rest)
}

/// Answers the callers of one batch from its grant: each commit caller its own sub-range, in
/// queue order; every read caller the one read version. A grant that is not what was asked
/// (a short range, no read version) answers every caller `Unavailable`.
fn split(
    result: Result<VersionGrant, ProposeError>,
    commit_count: u32,
    want_read: bool,
    batch: Vec<Ask>,
    to: NodeId,
) {
    let result = result.and_then(|grant| {
        if grant.count != commit_count || (want_read && grant.read_version.is_none()) {
            return Err(ProposeError::Unavailable(format!(
                "node {to} granted {} commit versions{} for a request of {commit_count}{}",
                grant.count,
                if grant.read_version.is_some() {
                    " and a read version"
                } else {
                    ""
                },
                if want_read { " and a read version" } else { "" },
            )));
        }
        Ok(grant)
    });
    let grant = match result {
        Ok(grant) => grant,
        Err(e) => {
            for ask in batch {
                let _ = ask.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let mut next = grant.first;
    for ask in batch {
        let mine = VersionGrant {
            first: next,
            count: ask.commit_count,
            read_version: grant.read_version.filter(|_| ask.want_read),
        };
        next += u64::from(ask.commit_count);
        let _ = ask.reply.send(Ok(mine));
    }
}

/// The server side of one stream: asks each request's group's
/// [`PeerHandler::timestamps`](crate::network::PeerHandler::timestamps) as it arrives (at most
/// `cap` each) and answers each by id as it resolves. A request for a group this node does not
/// run is answered `Unavailable` naming it.
pub(crate) fn serve(
    router: GroupRouter,
    incoming: tonic::Streaming<pb::TimestampRequest>,
    cap: Duration,
    closed: watch::Receiver<bool>,
) -> ReceiverStream<Result<pb::TimestampReply, Status>> {
    let start = move |request: pb::TimestampRequest| vec![grant(&router, request, cap)];
    by_id::serve_by_id(incoming, closed, start, |replies| replies)
}

/// One request's answer.
fn grant(
    router: &GroupRouter,
    request: pb::TimestampRequest,
    cap: Duration,
) -> impl std::future::Future<Output = pb::TimestampReply> + Send + 'static {
    let handler = router.get(request.group_id).map(|e| Arc::clone(&e.handler));
    async move {
        let result = match handler {
            Err(not_here) => Err(ProposeError::Unavailable(format!(
                "timestamps refused: {not_here}"
            ))),
            Ok(handler) => {
                let granted = handler.timestamps(request.commit_count, request.want_read);
                tokio::time::timeout(cap, granted)
                    .await
                    .unwrap_or_else(|_| {
                        Err(ProposeError::Unavailable(format!(
                            "no versions within {cap:?} (any drawn for this request are burned)"
                        )))
                    })
            }
        };
        wire::timestamp_reply_to_pb(request.id, &result)
    }
}

#[cfg(test)]
mod tests;
