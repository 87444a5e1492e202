//! Closing silent peer connections: a connection on which no byte arrives for
//! [`ServeOptions::silent_timeout`](super::ServeOptions) is closed by the server. A member's
//! connection is never that quiet (HTTP/2 keep-alive pings cross it every few seconds, each
//! way), while a socket that never speaks (no TLS handshake, no HTTP/2 preface) would otherwise
//! hold a file and a task forever, and a flood of them could take every file descriptor.
//!
//! ```text
//!  TcpIncoming ─▶ SilentClose(stream, timeout) ─▶ [TLS] ─▶ HTTP/2 ─▶ PeerService
//!                   read pending, nothing read for `timeout` ─▶ Err(TimedOut): closed
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

/// A stream whose reads fail with `TimedOut` once nothing has been read for `timeout`.
pub struct SilentClose<S> {
    inner: S,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> SilentClose<S> {
    /// Wraps `inner`; the first byte is due within `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SilentClose<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.timeout;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("peer connection silent for {:?}", self.timeout),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SilentClose<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: Connected> Connected for SilentClose<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_stream_times_out_and_a_talking_one_does_not() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = SilentClose::new(near, Duration::from_millis(400));
        let mut buf = [0u8; 8];
        // Talking every 200 ms for a second: never cut.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            far.write_all(b"ping").await.unwrap();
            assert_eq!(stream.read(&mut buf).await.unwrap(), 4);
        }
        let silent = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(silent.kind(), io::ErrorKind::TimedOut);
    }
}
