//! The admin port's HTTP/1.1 server: the axum router served by hyper, one task per connection,
//! with the bounds `axum::serve` does not set: a request's head must arrive within
//! [`HEADER_READ_TIMEOUT`] (a silent or slow-dripping client is disconnected, and a keep-alive
//! connection waiting for its next request is closed after as long), and at most
//! [`MAX_CONNECTIONS`] connections are served at once (more wait in the kernel's backlog), so a
//! flood of sockets cannot take the node's file descriptors.
//!
//! ```text
//!  listener ─accept (a permit of MAX_CONNECTIONS)─▶ task: hyper http1 (header timeout) ─▶ Router
//!  shutdown ─▶ stop accepting ─▶ each connection finishes its request and closes ─▶ return
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{watch, Semaphore};

/// The longest wait for a request's head (request line and headers), from the moment the
/// connection waits for one: a new connection, or a kept-alive one after its last answer.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most admin connections served at once. The console polls over a handful; Prometheus, the
/// CLI and joining nodes use one each.
pub const MAX_CONNECTIONS: usize = 256;

/// Serves `app` on `listener` until `shutdown` resolves, then lets every connection finish its
/// request in progress and returns.
pub async fn serve<L>(mut listener: L, app: Router, shutdown: impl Future<Output = ()>)
where
    L: Listener,
{
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let io = tokio::select! {
            () = &mut shutdown => break,
            (io, _peer) = listener.accept() => io,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|stopped| *stopped) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it is done.
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}
