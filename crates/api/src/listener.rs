//! The Thrift listener: accepts on a caller-bound socket until the caller's shutdown future
//! resolves, so tests bind port 0 and nodes own their stop signal (mini-redis style). Other
//! connections the caller accepted itself (the TLS listener's, once their handshake is done)
//! join the same server through [`ShutdownIncoming::with_accepted`].

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use volo::net::conn::Conn;
use volo::net::incoming::{Incoming, MakeIncoming};

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Accepts connections until `shutdown` resolves, then reports "no more connections" so the
/// volo server drains in-flight requests and returns.
pub struct ShutdownIncoming {
    listener: TcpListener,
    /// Connections accepted elsewhere, served like the listener's; `None` once closed.
    accepted: Option<mpsc::Receiver<Conn>>,
    shutdown: Shutdown,
    stopped: bool,
}

impl ShutdownIncoming {
    /// Wraps a bound listener and the signal that stops accepting.
    pub fn new(listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            listener,
            accepted: None,
            shutdown: Box::pin(shutdown),
            stopped: false,
        }
    }

    /// The same, also serving every connection `accepted` yields (until it closes).
    #[must_use]
    pub fn with_accepted(mut self, accepted: Option<mpsc::Receiver<Conn>>) -> Self {
        self.accepted = accepted;
        self
    }
}

/// The next connection from `accepted`; pending forever once there is none.
async fn next_accepted(accepted: &mut Option<mpsc::Receiver<Conn>>) -> Option<Conn> {
    match accepted {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl fmt::Debug for ShutdownIncoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownIncoming")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("stopped", &self.stopped)
            .finish()
    }
}

impl MakeIncoming for ShutdownIncoming {
    type Incoming = Self;

    async fn make_incoming(self) -> io::Result<Self::Incoming> {
        Ok(self)
    }
}

impl Incoming for ShutdownIncoming {
    async fn accept(&mut self) -> io::Result<Option<Conn>> {
        loop {
            if self.stopped {
                return Ok(None);
            }
            tokio::select! {
                () = &mut self.shutdown => {
                    self.stopped = true;
                    return Ok(None);
                }
                conn = next_accepted(&mut self.accepted) => match conn {
                    Some(conn) => return Ok(Some(conn)),
                    None => self.accepted = None,
                },
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        // Request/response traffic: never wait for Nagle.
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(error = %e, "set_nodelay failed");
                        }
                        return Ok(Some(Conn::from(stream)));
                    }
                    // Per-connection failures (EMFILE, ECONNABORTED) must not stop the server.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
}
