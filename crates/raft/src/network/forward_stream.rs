//! Forwarded writes on one long-lived stream per leader (docs/replication.md §6.5).
//!
//! ```text
//!  follower                                                     leader
//!  forward(cmd) ─▶ queue ─▶ driver: everything queued ─▶ ForwardBatch ══▶ serve(): each item
//!     ▲                      when the stream can take it                   ─▶ PeerHandler::forward
//!     └── oneshot ◀── reader: ForwardReplies, by id ◀══ answers that are ready together ◀─┘
//! ```
//!
//! A unary `Forward` costs an HTTP/2 stream, its headers and a server task per write; here a
//! write costs a few bytes of one message. Batching is natural: the driver sends one batch
//! whenever the stream can take one, holding whatever queued meanwhile, with no timer.
//!
//! Outcomes keep docs/replication.md invariant 9: a write that never went out (no connection,
//! the stream could not be opened) is refused as not proposed; a write that went out and whose
//! stream broke before its answer is unknown (`Timeout`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::log_store::GroupId;
use crate::network::by_id::{self, OpenError, Slots};
use crate::network::client::Channels;
use crate::network::router::GroupRouter;
use crate::network::wire::{self, pb};
use crate::network::PeerHandler;
use crate::{NodeId, ProposeError};

/// Most commands in one batch.
const MAX_BATCH_ITEMS: usize = 1024;
/// A batch stops growing past this many command bytes (one larger command goes alone; a
/// command is at most 10 MB, far below the 64 MiB message limit).
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Commands queued per leader before `send` waits (each caller holds a write permit, so this
/// only smooths bursts).
const QUEUE_DEPTH: usize = 4096;
/// After a leader answers `UNIMPLEMENTED` (an older build), how long to use unary calls before
/// trying the stream again.
const UNSUPPORTED_RETRY: Duration = Duration::from_secs(60);

/// What became of one queued command.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The leader's answer.
    Answer(pb::ForwardResponse),
    /// Never sent: nothing was proposed.
    NotSent(ProposeError),
    /// Sent, and the stream ended before the answer came: the outcome is unknown.
    Lost,
    /// Not sent: the leader does not serve `ForwardStream` (an older build); use the unary
    /// call. Carries the command back.
    Unsupported(Vec<u8>),
    /// Not sent: the stream closed just before it would have gone; send it again. Carries the
    /// command back.
    Closed(Vec<u8>),
}

struct Queued {
    /// The Raft group the command is for; one stream carries every group's commands.
    group: GroupId,
    command: Vec<u8>,
    timeout_ms: u64,
    reply: oneshot::Sender<Reply>,
}

/// The client side: one queue and driver task per leader address (whatever groups it leads:
/// each item names its own), started on first use and kept while this value lives (drivers end
/// when it is dropped).
pub(crate) struct ForwardStreams {
    channels: Channels,
    queues: Mutex<HashMap<String, mpsc::Sender<Queued>>>,
}

impl ForwardStreams {
    pub(crate) fn new(channels: Channels) -> Self {
        Self {
            channels,
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// Queues `command` (encoded) for the leader of `group`, `to` at `peer_addr`, and waits for
    /// what became of it. The caller bounds the wait; dropping the future before the command is
    /// sent withdraws it (it is never sent).
    pub(crate) async fn send(
        &self,
        group: GroupId,
        to: NodeId,
        peer_addr: &str,
        command: Vec<u8>,
        timeout: Duration,
    ) -> Reply {
        let (reply, answer) = oneshot::channel();
        let mut queued = Queued {
            group,
            command,
            timeout_ms: u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            reply,
        };
        // A driver that ended (its runtime stopped) is replaced once.
        for _ in 0..2 {
            let queue = self.queue(to, peer_addr);
            match queue.send(queued).await {
                Ok(()) => return answer.await.unwrap_or(Reply::Lost),
                Err(mpsc::error::SendError(back)) => {
                    self.queues.lock().remove(peer_addr);
                    queued = back;
                }
            }
        }
        Reply::NotSent(ProposeError::Unavailable(format!(
            "forward to node {to} at {peer_addr}: the forwarding task is not running"
        )))
    }

    fn queue(&self, to: NodeId, peer_addr: &str) -> mpsc::Sender<Queued> {
        let mut queues = self.queues.lock();
        if let Some(queue) = queues.get(peer_addr).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (queue, queued) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(drive(
            to,
            peer_addr.to_owned(),
            self.channels.clone(),
            queued,
        ));
        queues.insert(peer_addr.to_owned(), queue.clone());
        queue
    }
}

/// One open stream: where batches go, and the slots its reader answers.
struct Open {
    batches: mpsc::Sender<pb::ForwardBatch>,
    slots: Slots<Reply>,
}

/// The driver of one leader address: sends everything queued, in batches, on one stream,
/// reopening it when it breaks.
async fn drive(to: NodeId, addr: String, channels: Channels, mut queue: mpsc::Receiver<Queued>) {
    let mut next_id: u64 = 0;
    let mut open: Option<Open> = None;
    let mut unsupported_until: Option<Instant> = None;
    let mut carry: Option<Queued> = None;
    loop {
        let first = match carry.take() {
            Some(q) => q,
            None => match queue.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        if first.reply.is_closed() {
            continue; // its caller gave up before it was sent: withdrawn
        }
        if unsupported_until.is_some_and(|until| Instant::now() < until) {
            let _ = first.reply.send(Reply::Unsupported(first.command));
            continue;
        }
        let permit = match ready(to, &addr, &channels, &mut open).await {
            Ok(permit) => permit,
            Err(OpenError::Unsupported) => {
                unsupported_until = Some(Instant::now() + UNSUPPORTED_RETRY);
                let _ = first.reply.send(Reply::Unsupported(first.command));
                continue;
            }
            Err(OpenError::Refused(e)) => {
                let _ = first.reply.send(Reply::NotSent(e));
                continue;
            }
        };
        // Everything queued while the stream was busy goes in this batch.
        let mut items = Vec::new();
        let mut replies = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(q) = next {
            if !items.is_empty()
                && (items.len() >= MAX_BATCH_ITEMS || bytes + q.command.len() > MAX_BATCH_BYTES)
            {
                carry = Some(q);
                break;
            }
            if !q.reply.is_closed() {
                next_id += 1;
                bytes += q.command.len();
                items.push(pb::ForwardItem {
                    id: next_id,
                    group_id: q.group,
                    command: q.command,
                    timeout_ms: q.timeout_ms,
                });
                replies.push((next_id, q.reply));
            }
            next = queue.try_recv().ok();
        }
        let slots = open.as_ref().map(|o| Arc::clone(&o.slots));
        let mut slots = slots.as_deref().map(|s| s.lock());
        match slots.as_mut().and_then(|s| s.as_mut()) {
            Some(waiting) => {
                waiting.extend(replies);
                drop(slots);
                permit.send(pb::ForwardBatch { items });
            }
            None => {
                // The reader ended after the permit was taken: nothing of this batch was sent.
                drop(slots);
                open = None;
                for (item, (_, reply)) in items.into_iter().zip(replies) {
                    let _ = reply.send(Reply::Closed(item.command));
                }
            }
        }
    }
}

/// A permit to send one batch on the open stream, opening one first when there is none or it
/// closed (twice at most: a stream found closed is replaced once).
async fn ready(
    to: NodeId,
    addr: &str,
    channels: &Channels,
    open: &mut Option<Open>,
) -> Result<mpsc::OwnedPermit<pb::ForwardBatch>, OpenError> {
    for _ in 0..2 {
        if open.as_ref().is_none_or(|o| o.batches.is_closed()) {
            *open = Some(open_stream(to, addr, channels).await?);
        }
        if let Some(o) = open.as_ref() {
            match o.batches.clone().reserve_owned().await {
                Ok(permit) => return Ok(permit),
                Err(_) => *open = None,
            }
        }
    }
    Err(OpenError::Refused(ProposeError::LeaderUnreachable(
        format!("forward to node {to} at {addr}: the stream closed as it was opened"),
    )))
}

/// Opens a stream to `addr` and starts its reader, which hands each answer to its caller;
/// when the stream ends, every command still waiting is `Lost` (it was sent: its outcome is
/// unknown).
async fn open_stream(to: NodeId, addr: &str, channels: &Channels) -> Result<Open, OpenError> {
    let what = format!("forward to node {to} at {addr}");
    let mut client = channels
        .client(addr)
        .map_err(|e| OpenError::Refused(ProposeError::Unavailable(format!("{what}: {e}"))))?;
    let (batches, outgoing) = mpsc::channel::<pb::ForwardBatch>(1);
    let answers = by_id::open(&what, client.forward_stream(ReceiverStream::new(outgoing))).await?;
    let slots = by_id::slots();
    let split = |message: pb::ForwardReplies| {
        let answers = message.replies.into_iter();
        answers
            .map(|a| (a.id, a.response.map_or(Reply::Lost, Reply::Answer)))
            .collect()
    };
    tokio::spawn(by_id::read_by_id(
        to,
        answers,
        Arc::clone(&slots),
        split,
        || Reply::Lost,
    ));
    Ok(Open { batches, slots })
}

/// The server side of one stream: proposes every item as it arrives (each through its group's
/// [`PeerHandler::forward`](crate::network::PeerHandler::forward), exactly like a unary
/// `Forward`) and sends the answers that are ready together in one message. Ends when the
/// follower closes its side and every answer is sent, when the follower goes away, or when the
/// server shuts down.
pub(crate) fn serve(
    router: GroupRouter,
    incoming: tonic::Streaming<pb::ForwardBatch>,
    max_timeout: Duration,
    closed: watch::Receiver<bool>,
) -> ReceiverStream<Result<pb::ForwardReplies, Status>> {
    let start = move |batch: pb::ForwardBatch| {
        let items = batch.items.into_iter();
        items
            .map(|item| answer(&router, item, max_timeout))
            .collect::<Vec<_>>()
    };
    by_id::serve_by_id(incoming, closed, start, |replies| {
        vec![pb::ForwardReplies { replies }]
    })
}

/// One item's answer: refused without proposing when it names a group this node does not run,
/// asks for no time, or does not decode. The group is looked up as the item arrives.
fn answer(
    router: &GroupRouter,
    item: pb::ForwardItem,
    cap: Duration,
) -> impl std::future::Future<Output = pb::ForwardReply> + Send + 'static {
    let id = item.id;
    let checked = checked(router, item, cap);
    async move {
        let result = match checked {
            Err(refusal) => Err(refusal),
            Ok((handler, command, timeout)) => handler.forward(command, timeout).await,
        };
        reply(id, result)
    }
}

/// A forwarded write's answer as its reply.
fn reply(id: u64, result: Result<crate::Applied, ProposeError>) -> pb::ForwardReply {
    let response = wire::forward_response_to_pb(&result).unwrap_or_else(|e| {
        // Applied, but the outcome cannot be encoded: unknown to the follower.
        tracing::warn!(error = %e, "cannot encode a forwarded write's outcome");
        pb::ForwardResponse {
            result: Some(pb::forward_response::Result::Timeout(pb::Timeout {})),
        }
    });
    pb::ForwardReply {
        id,
        response: Some(response),
    }
}

/// An item's handler, command and timeout, or why it is refused (not proposed).
fn checked(
    router: &GroupRouter,
    item: pb::ForwardItem,
    cap: Duration,
) -> Result<(Arc<dyn PeerHandler>, dolmen_engine::Command, Duration), ProposeError> {
    let refused =
        |what: String| ProposeError::Unavailable(format!("forwarded write refused: {what}"));
    let entry = router
        .get(item.group_id)
        .map_err(|not_here| refused(not_here.to_string()))?;
    // A forwarded write wakes its group if it hibernates (docs/sharding.md §8.3).
    router.touch(item.group_id);
    if item.timeout_ms == 0 {
        return Err(refused("timeout_ms: must be greater than 0".into()));
    }
    let command = wire::command_from_pb(&item.command).map_err(|e| refused(e.to_string()))?;
    let timeout = Duration::from_millis(item.timeout_ms).min(cap);
    Ok((Arc::clone(&entry.handler), command, timeout))
}
