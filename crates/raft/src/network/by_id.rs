//! What the peer protocol's two request streams share (`ForwardStream`, `Timestamps`): the
//! sender numbers each request, the server answers each once, by id, as soon as it resolves
//! (in any order), and the sender hands each answer to whoever waits for that id.
//!
//! ```text
//!  sender: slots[id] = waiter ─▶ request{id} ══▶ serve_by_id(): each request ─▶ a future
//!  read_by_id(): slots.remove(id) ◀══ answers ready together, each carrying its id ◀─┘
//!                (stream ended: every waiter left gets `lost`)
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Response, Status, Streaming};

use crate::network::client::is_connect_error;
use crate::{NodeId, ProposeError};

/// Bound on opening a stream (connecting and the leader's response headers).
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// The waiters of one open stream, by request id; `None` once its reader has ended (every
/// waiter left was answered with its `lost` value).
pub(crate) type Slots<R> = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<R>>>>>;

/// The waiters of a stream just opened: none yet.
pub(crate) fn slots<R>() -> Slots<R> {
    Arc::new(Mutex::new(Some(HashMap::new())))
}

/// Why a stream could not be opened.
pub(crate) enum OpenError {
    /// Not opened: nothing was sent.
    Refused(ProposeError),
    /// The peer does not serve this stream (`UNIMPLEMENTED`: an older build).
    Unsupported,
}

/// The response stream of an opening call (`call`, what the generated client returns), or
/// why it did not open within [`OPEN_TIMEOUT`]; `what` names the stream in errors ("forward
/// to node 1 at 127.0.0.1:7201").
pub(crate) async fn open<T>(
    what: &str,
    call: impl Future<Output = Result<Response<Streaming<T>>, Status>>,
) -> Result<Streaming<T>, OpenError> {
    let unavailable =
        |why: String| OpenError::Refused(ProposeError::Unavailable(format!("{what}: {why}")));
    match tokio::time::timeout(OPEN_TIMEOUT, call).await {
        Err(_elapsed) => Err(unavailable(format!(
            "no answer to opening the stream within {OPEN_TIMEOUT:?}"
        ))),
        Ok(Err(status)) if is_connect_error(&status) => Err(OpenError::Refused(
            ProposeError::LeaderUnreachable(format!("{what}: not connected: {}", status.message())),
        )),
        Ok(Err(status)) if status.code() == Code::Unimplemented => Err(OpenError::Unsupported),
        Ok(Err(status)) => Err(unavailable(format!("refused: {}", status.message()))),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

/// Hands each answer of `answers` to its waiter in `slots` (`split` turns one message into
/// its answers, each with its id); when the stream ends, every waiter left gets `lost()` (its
/// request was sent: what became of it is not known here).
pub(crate) async fn read_by_id<M, R>(
    to: NodeId,
    mut answers: Streaming<M>,
    slots: Slots<R>,
    split: impl Fn(M) -> Vec<(u64, R)>,
    lost: impl Fn() -> R,
) where
    M: Send + 'static,
{
    loop {
        match answers.message().await {
            Ok(Some(message)) => {
                let mut slots = slots.lock();
                let Some(waiting) = slots.as_mut() else {
                    return;
                };
                for (id, answer) in split(message) {
                    if let Some(waiter) = waiting.remove(&id) {
                        let _ = waiter.send(answer);
                    }
                }
            }
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(to, %status, "a peer stream ended");
                break;
            }
        }
    }
    let left = slots.lock().take();
    for (_, waiter) in left.into_iter().flatten() {
        let _ = waiter.send(lost());
    }
}

/// The server side of one stream: `start` turns each incoming message into the futures of
/// its requests (each resolving to that request's answer), which all run at once; the answers
/// that are ready together go to `pack`, whose messages are sent in order. Ends when the
/// sender closes its side and every answer is sent, when the sender goes away, or when the
/// server shuts down (`closed` turns `true`).
pub(crate) fn serve_by_id<In, F, Out>(
    mut incoming: Streaming<In>,
    mut closed: watch::Receiver<bool>,
    start: impl Fn(In) -> Vec<F> + Send + 'static,
    pack: impl Fn(Vec<F::Output>) -> Vec<Out> + Send + 'static,
) -> ReceiverStream<Result<Out, Status>>
where
    In: Send + 'static,
    F: Future + Send + 'static,
    F::Output: Send,
    Out: Send + 'static,
{
    let (answers, out) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut pending = FuturesUnordered::new();
        let mut reading = true;
        loop {
            tokio::select! {
                message = incoming.message(), if reading => match message {
                    Ok(Some(message)) => pending.extend(start(message)),
                    Ok(None) => reading = false,
                    Err(status) => {
                        tracing::debug!(%status, "a request stream from a peer broke");
                        return;
                    }
                },
                Some(first) = pending.next(), if !pending.is_empty() => {
                    let mut ready = vec![first];
                    while let Some(Some(more)) = pending.next().now_or_never() {
                        ready.push(more);
                    }
                    for message in pack(ready) {
                        if answers.send(Ok(message)).await.is_err() {
                            return;
                        }
                    }
                }
                () = shutting_down(&mut closed) => return,
            }
            if !reading && pending.is_empty() {
                return;
            }
        }
    });
    ReceiverStream::new(out)
}

async fn shutting_down(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|closed| *closed).await;
}
