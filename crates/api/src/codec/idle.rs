//! Closing idle connections: [`IdleMakeCodec`] wraps a codec factory so that a connection on
//! which no request arrives within the idle timeout is closed by the server (its decoder
//! reports the end of the stream). A client that opens a connection per call and never closes
//! it (the older server's Node.js console does) then cannot fill `max_connections`, and a flood
//! of silent sockets frees its slots by itself.
//!
//! volo reads a message's first bytes before the hardened decoder runs, so the bound sits
//! around the whole decode: a request must start within `idle` and arrive whole within
//! `read_timeout` of its start (the hardened decoder's own bound), so the wait is `idle +
//! read_timeout` in all, and a request that starts in time is never cut by it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pilota::thrift::ThriftException;
use tokio::io::{AsyncRead, AsyncWrite};
use volo_thrift::codec::{Decoder, MakeCodec};
use volo_thrift::context::ThriftContext;
use volo_thrift::{EntryMessage, ThriftMessage};

use super::ConnectionStats;

/// A codec factory whose decoders end a connection that stays silent for `idle` (plus the
/// read timeout, see the module docs).
#[derive(Clone, Debug)]
pub struct IdleMakeCodec<M> {
    inner: M,
    /// The whole wait for one request; `None` = no bound.
    wait: Option<Duration>,
    stats: Arc<ConnectionStats>,
}

impl<M> IdleMakeCodec<M> {
    /// Wraps `inner`: with `idle` set, a connection that sends no request for `idle` (plus
    /// `read_timeout`, when set) is closed and counted in `stats.idle_closed`.
    pub fn new(
        inner: M,
        idle: Option<Duration>,
        read_timeout: Option<Duration>,
        stats: Arc<ConnectionStats>,
    ) -> Self {
        Self {
            inner,
            wait: idle.map(|idle| idle + read_timeout.unwrap_or_default()),
            stats,
        }
    }
}

impl<M, R, W> MakeCodec<R, W> for IdleMakeCodec<M>
where
    M: MakeCodec<R, W> + Sync,
    R: AsyncRead + Unpin + Send + Sync + 'static,
    W: AsyncWrite + Unpin + Send + Sync + 'static,
{
    type Encoder = M::Encoder;
    type Decoder = IdleDecoder<M::Decoder>;

    fn make_codec(&self, reader: R, writer: W) -> (Self::Encoder, Self::Decoder) {
        let (encoder, decoder) = self.inner.make_codec(reader, writer);
        let decoder = IdleDecoder {
            inner: decoder,
            wait: self.wait,
            stats: self.stats.clone(),
        };
        (encoder, decoder)
    }
}

/// A decoder that reports the end of the stream when no request arrives in time.
#[derive(Debug)]
pub struct IdleDecoder<D> {
    inner: D,
    wait: Option<Duration>,
    stats: Arc<ConnectionStats>,
}

impl<D: Decoder> Decoder for IdleDecoder<D> {
    async fn decode<Msg: Send + EntryMessage, Cx: ThriftContext>(
        &mut self,
        cx: &mut Cx,
    ) -> Result<Option<ThriftMessage<Msg>>, ThriftException> {
        let Some(wait) = self.wait else {
            return self.inner.decode(cx).await;
        };
        match tokio::time::timeout(wait, self.inner.decode(cx)).await {
            Ok(decoded) => decoded,
            Err(_idle) => {
                self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?wait, "closing a connection that sent no request");
                Ok(None)
            }
        }
    }

    async fn is_closed(&self) -> bool {
        self.inner.is_closed().await
    }
}
