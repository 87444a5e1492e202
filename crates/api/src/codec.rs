//! The hardened Thrift codec the TransactionalKV server speaks through.
//! It owns reading one request off a connection (unframed or framed strict binary), proving it
//! well formed and within limits, and decoding it; replies reuse volo's encoders.
//!
//! ```text
//! socket ─▶ BufReader ─▶ detect framing (≤ 6 bytes) ─▶ Scanner (resumable, per segment)
//!                                                        │ bytes appended to a BytesMut as
//!                                                        ▼ they arrive, never pre-sized
//!              ThriftMessage ◀── EntryMessage::decode ◀── CheckedBinaryInput (one Bytes)
//! reply: volo FramedEncoder<ThriftCodec> — framed iff the request was (HasFramed in cx)
//! ```
//!
//! # Why
//! volo-thrift 0.12's default decoders trust the peer. Unframed, pilota 0.13's
//! `TAsyncBinaryProtocol` allocates `vec![0; len]` from an untrusted i32 (a negative length
//! becomes a huge `usize` and aborts the process) and builds strings with
//! `from_utf8_unchecked`; the sync `TBinaryProtocol` over `Bytes` panics in `split_to` when a
//! length exceeds the buffer; the framed decoder allocates the claimed frame (up to 16 MiB)
//! before reading it and the TTHeader decoder an unbounded claimed size. Generated container
//! decoders also trust the wire element type and `Vec::with_capacity` an unchecked count. docs/WIRE.md §1 requires rejecting oversized input
//! with a protocol error (volo then replies with an exception and closes the connection).
//!
//! # Invariants
//! 1. Memory for a request grows only with bytes actually received (plus one small chunk);
//!    no length prefix is ever used to size an allocation before its bytes are there.
//! 2. A request is at most `max_message_bytes` (frame payload for framed requests); strings,
//!    names and collection counts are checked against what is left *when their prefix
//!    arrives*; nesting is at most `max_depth`; a collection has at most `max_collection_len`
//!    elements.
//! 3. Scanning is O(message length) however the bytes are segmented.
//! 4. Only the bytes of one message are consumed from the reader: pipelined requests behind it
//!    stay buffered for the next decode.
//! 5. The typed decode reads one complete, validated message through a bounds-checked
//!    protocol: no input can make it read out of bounds, panic on a length, produce a
//!    non-UTF-8 `String`/`FastStr`, or return a count whose elements could not fit in the
//!    bytes left (so `Vec::with_capacity(count)` stays within `size_of::<T>()` × message size).
//! 6. A framed request marks the context with volo's `HasFramed` (as volo's framed decoder
//!    does) so the reply, or the exception for a bad request, is framed too.

mod checked;
mod idle;
mod scanner;
#[cfg(test)]
mod test_util;
mod unknown_method;

pub use self::idle::{IdleDecoder, IdleMakeCodec};
pub use self::unknown_method::{MaybeUnknown, UnknownMethodService};

use std::{
    any::Any,
    io,
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    sync::Arc,
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use pilota::thrift::{
    new_protocol_exception, ApplicationException, Message, ProtocolExceptionKind, TInputProtocol,
    TMessageType, ThriftException,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use volo::{
    context::{Context as _, Role},
    util::buf_reader::BufReader,
};
use volo_thrift::{
    codec::default::{
        framed::{FramedEncoder, HasFramed},
        thrift::ThriftCodec,
        DefaultMakeCodec, MakeZeroCopyCodec, ZeroCopyDecoder,
    },
    context::{ServerContext, ThriftContext},
    EntryMessage, ProtocolBinary, ThriftMessage,
};

use self::{
    checked::CheckedBinaryInput,
    scanner::{Budget, Scan, ScanError, Scanner, MIN_MESSAGE_LEN},
};

/// Limits applied to every incoming message. A message over a limit is a protocol error;
/// volo answers it with an exception and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SafeCodecLimits {
    /// Largest accepted message in bytes: an unframed message as a whole, or the payload of a
    /// frame (the 4-byte length excluded). Default 16 MiB, the Thrift default frame limit.
    pub max_message_bytes: usize,
    /// Deepest nesting of structs, lists, sets and maps, the message's own argument struct
    /// counting as 1. Default 64.
    pub max_depth: usize,
    /// Most elements in one list or set, or entries in one map. Default 1,000,000.
    pub max_collection_len: usize,
    /// A request must arrive whole within this long of its first byte, or the connection is
    /// closed with a protocol error; `None` = no bound. Default `None` (the server sets
    /// `[server] read_timeout_ms`).
    pub read_timeout: Option<Duration>,
    /// A connection on which no request starts within this long is closed (see
    /// [`IdleMakeCodec`]); `None` = never. Default `None` (the server sets `[server]
    /// idle_timeout_ms`).
    pub idle_timeout: Option<Duration>,
}

impl Default for SafeCodecLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024 * 1024,
            max_depth: 64,
            max_collection_len: 1_000_000,
            read_timeout: None,
            idle_timeout: None,
        }
    }
}

/// volo's codec with [`SafeMakeCodec`] inside: what `Server::make_codec` takes.
pub type SafeCodec = DefaultMakeCodec<SafeMakeCodec>;

/// Makes the hardened codec for each connection: [`SafeDecoder`] to read requests, volo's
/// `FramedEncoder<ThriftCodec>` to write replies (framed exactly when the request was).
///
/// ```
/// use dolmen_api::codec::{SafeCodecLimits, SafeMakeCodec};
/// use volo_thrift::codec::default::DefaultMakeCodec;
///
/// let codec = DefaultMakeCodec::new(SafeMakeCodec::new(SafeCodecLimits::default()));
/// // volo_thrift::server::Server::new(service).make_codec(codec).run(addr).await?;
/// # let _ = codec;
/// ```
#[derive(Debug, Clone, Default)]
pub struct SafeMakeCodec {
    limits: SafeCodecLimits,
    /// One permit per open connection, when connections are capped.
    connections: Option<ConnectionCap>,
    /// Where connections are counted.
    stats: Arc<ConnectionStats>,
}

/// Connection counters, shared with whoever reports them (the node's `/metrics`).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections open now, refused ones included until they close.
    pub open: AtomicI64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections refused past the cap since start.
    pub refused: AtomicU64,
    /// Connections closed because no request arrived within the idle timeout.
    pub idle_closed: AtomicU64,
}

/// Counts one connection as open until dropped (held by its decoder).
#[derive(Debug)]
struct OpenConnection(Arc<ConnectionStats>);

impl OpenConnection {
    fn enter(stats: &Arc<ConnectionStats>) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Self(stats.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Caps open connections: each connection's decoder holds a permit until the connection ends.
#[derive(Debug, Clone)]
struct ConnectionCap {
    permits: Arc<Semaphore>,
    max: usize,
}

impl SafeMakeCodec {
    /// A codec factory enforcing `limits`.
    pub fn new(limits: SafeCodecLimits) -> Self {
        Self {
            limits,
            connections: None,
            stats: Arc::default(),
        }
    }

    /// Counts connections in `stats` (accepted, refused, open).
    pub fn with_connection_stats(mut self, stats: Arc<ConnectionStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Caps open connections at `max`: a connection beyond it gets a protocol error naming
    /// the limit on its first request and is closed.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.connections = Some(ConnectionCap {
            permits: Arc::new(Semaphore::new(max)),
            max,
        });
        self
    }

    /// The limits this codec enforces.
    pub fn limits(&self) -> SafeCodecLimits {
        self.limits
    }

    /// Wraps this factory in volo's [`DefaultMakeCodec`], ready for `Server::make_codec`.
    pub fn into_codec(self) -> SafeCodec {
        DefaultMakeCodec::new(self)
    }
}

impl MakeZeroCopyCodec for SafeMakeCodec {
    type Encoder = FramedEncoder<ThriftCodec>;
    type Decoder = SafeDecoder;

    fn make_codec(&self) -> (Self::Encoder, Self::Decoder) {
        // Replies are ours, not untrusted input: they are only bounded by what a frame length
        // can express. `FramedEncoder` frames on the client role, or when `HasFramed` is set.
        let encoder = FramedEncoder::new(ThriftCodec::default(), i32::MAX);
        let mut decoder = SafeDecoder::new(self.limits);
        decoder.open = Some(OpenConnection::enter(&self.stats));
        if let Some(cap) = &self.connections {
            // Held by the decoder, so released when volo drops the connection.
            decoder.permit = match cap.permits.clone().try_acquire_owned() {
                Ok(permit) => Permit::Held(permit),
                Err(_) => Permit::Refused { max: cap.max },
            };
        }
        let counter = match decoder.permit {
            Permit::Refused { .. } => &self.stats.refused,
            _ => &self.stats.accepted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        (encoder, decoder)
    }
}

/// The request side of [`SafeMakeCodec`]: one per connection, reused for every message on it.
#[derive(Debug)]
pub struct SafeDecoder {
    limits: SafeCodecLimits,
    /// Reused between messages to keep its small allocations.
    scanner: Scanner,
    /// This connection's place under the connection cap.
    permit: Permit,
    /// Counts the connection as open while it lives (absent on a bare decoder).
    #[allow(dead_code, reason = "held for its Drop")]
    open: Option<OpenConnection>,
}

/// A connection's standing under [`SafeMakeCodec::with_max_connections`].
#[derive(Debug)]
enum Permit {
    /// No cap is configured.
    Unlimited,
    /// Counted against the cap until dropped.
    Held(#[allow(dead_code, reason = "held for its Drop")] OwnedSemaphorePermit),
    /// The cap was reached when the connection opened.
    Refused { max: usize },
}

/// How the message on the wire is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Unframed,
    /// Framed, with this payload length (validated: 13 ..= max_message_bytes).
    Framed(usize),
}

/// Bytes needed to tell framed from unframed: a 4-byte frame length and 2 protocol bytes.
const HEAD_LEN: usize = 6;

/// The first allocation for a message; it then grows only as bytes arrive.
const INITIAL_CHUNK: usize = 4 * 1024;

impl SafeDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: SafeCodecLimits) -> Self {
        Self {
            limits,
            scanner: Scanner::new(limits),
            permit: Permit::Unlimited,
            open: None,
        }
    }

    /// [`fill`], bounded by the message's `deadline` (`read_timeout` after its first byte).
    async fn fill_by<'r, R: AsyncRead + Unpin>(
        &self,
        reader: &'r mut BufReader<R>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<&'r [u8], ThriftException> {
        let Some(deadline) = deadline else {
            return Ok(fill(reader).await?);
        };
        match tokio::time::timeout_at(deadline, fill(reader)).await {
            Ok(buf) => Ok(buf?),
            Err(_elapsed) => Err(protocol_error(
                ProtocolExceptionKind::InvalidData,
                format!(
                    "the request did not arrive whole within {} ms of its first byte \
                     (server.read_timeout_ms)",
                    self.limits.read_timeout.unwrap_or_default().as_millis()
                ),
            )),
        }
    }

    /// Reads one whole message from `reader`, scanning it as it arrives. `Ok(None)`: the peer
    /// closed the connection between messages. Returns the message and its size on the wire.
    async fn read_message<Cx: ThriftContext, R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Cx,
        reader: &mut BufReader<R>,
    ) -> Result<Option<(Bytes, usize)>, ThriftException> {
        let mut head = [0u8; HEAD_LEN];
        let mut head_len = 0;
        // Set by the message's first byte: the whole message must be in by then.
        let mut deadline = None;
        let framing = loop {
            if let Some(framing) = detect(&head[..head_len], self.limits.max_message_bytes)? {
                break framing;
            }
            // volo's decoder waits for a message's first bytes before it calls this one, so
            // the wait between messages is not bounded here (docs/STATUS.md).
            let buf = self.fill_by(reader, deadline).await?;
            if head_len == 0 && !buf.is_empty() {
                deadline = self
                    .limits
                    .read_timeout
                    .map(|t| tokio::time::Instant::now() + t);
            }
            if buf.is_empty() {
                if head_len == 0 {
                    return Ok(None);
                }
                return Err(eof(head_len));
            }
            // Up to 6 bytes are always part of this message: no message is shorter than 13.
            let n = buf.len().min(HEAD_LEN - head_len);
            head[head_len..head_len + n].copy_from_slice(&buf[..n]);
            reader.consume(n);
            head_len += n;
        };

        let (frame_len, header_len) = match framing {
            Framing::Unframed => {
                self.scanner
                    .reset(Budget::MaxMessageBytes(self.limits.max_message_bytes));
                (None, 0)
            }
            Framing::Framed(len) => {
                // Set before the payload is read so an error reply is framed too.
                cx.extensions_mut().insert(HasFramed);
                self.scanner.reset(Budget::Frame(len));
                (Some(len), 4)
            }
        };
        let mut msg =
            BytesMut::with_capacity(frame_len.unwrap_or(INITIAL_CHUNK).min(INITIAL_CHUNK));
        let prefix = &head[header_len..head_len];
        let (_, mut status) = self.scanner.feed(prefix)?;
        msg.extend_from_slice(prefix);

        while status == Scan::NeedMore {
            if frame_len == Some(msg.len()) {
                return Err(ScanError::FrameIncomplete {
                    frame_len: msg.len(),
                }
                .into());
            }
            let buf = self.fill_by(reader, deadline).await?;
            if buf.is_empty() {
                return Err(eof(header_len + msg.len()));
            }
            let avail = frame_len.map_or(buf.len(), |f| buf.len().min(f - msg.len()));
            let (consumed, next) = self.scanner.feed(&buf[..avail])?;
            msg.extend_from_slice(&buf[..consumed]);
            reader.consume(consumed);
            status = next;
        }
        if let Some(frame_len) = frame_len {
            if msg.len() < frame_len {
                return Err(ScanError::FrameTrailing {
                    frame_len,
                    trailing: frame_len - msg.len(),
                }
                .into());
            }
        }
        let wire_len = header_len + msg.len();
        Ok(Some((msg.freeze(), wire_len)))
    }

    /// Decodes one complete message the scanner has validated.
    /// Records a server call's method name and sequence id from its message header, so an
    /// error answered without decoding the rest still names the call. Headers that do not
    /// parse are left alone (the answer then carries volo's defaults).
    fn note_call<Cx: ThriftContext>(&self, cx: &mut Cx, bytes: &mut Bytes) {
        let mut protocol = CheckedBinaryInput::new(bytes, self.limits);
        if let (Ok(ident), Some(server_cx)) = (
            protocol.read_message_begin(),
            (cx as &mut dyn Any).downcast_mut::<ServerContext>(),
        ) {
            server_cx.handle_decoded_msg_ident(&ident);
        }
    }

    fn decode_message<Msg: Send + EntryMessage, Cx: ThriftContext>(
        &self,
        cx: &mut Cx,
        bytes: &mut Bytes,
    ) -> Result<ThriftMessage<Msg>, ThriftException> {
        let origin = bytes.clone();
        let mut protocol = CheckedBinaryInput::new(bytes, self.limits);
        let ident = protocol.read_message_begin()?;
        check_message_type(cx.rpc_info().role(), ident.message_type)?;

        if let Some(server_cx) = (cx as &mut dyn Any).downcast_mut::<ServerContext>() {
            // What volo's `ThriftMessage::decode` does, through the checked protocol.
            server_cx.handle_decoded_msg_ident(&ident);
            let data = Msg::decode(&mut protocol, &ident)?;
            protocol.read_message_end()?;
            server_cx.extensions_mut().insert(ProtocolBinary);
            let mut msg = ThriftMessage::mk_server_resp(server_cx, Ok(data));
            msg.meta.msg_type = ident.message_type;
            return Ok(msg);
        }

        // Any other context (a client): volo offers no public way to build a `ThriftMessage`
        // from outside, so decode once through the checked protocol to prove every read is in
        // bounds, then let volo's `ThriftCodec` decode the same bytes along the same path.
        match ident.message_type {
            TMessageType::Exception => drop(ApplicationException::decode(&mut protocol)?),
            _ => drop(Msg::decode(&mut protocol, &ident)?),
        }
        *bytes = origin;
        ThriftCodec::default()
            .decode(cx, bytes)?
            .ok_or_else(|| protocol_error(ProtocolExceptionKind::InvalidData, "empty message"))
    }
}

impl ZeroCopyDecoder for SafeDecoder {
    /// Decodes the message at the start of `bytes` (optionally framed), consuming exactly it.
    /// For callers that already hold the whole input, e.g. an outer transport.
    fn decode<Msg: Send + EntryMessage, Cx: ThriftContext>(
        &mut self,
        cx: &mut Cx,
        bytes: &mut Bytes,
    ) -> Result<Option<ThriftMessage<Msg>>, ThriftException> {
        let head = &bytes[..bytes.len().min(HEAD_LEN)];
        let incomplete = || {
            protocol_error(
                ProtocolExceptionKind::InvalidData,
                format!("incomplete message: {} bytes", bytes.len()),
            )
        };
        let framing = detect(head, self.limits.max_message_bytes)?.ok_or_else(incomplete)?;
        let (start, end) = match framing {
            Framing::Unframed => {
                self.scanner
                    .reset(Budget::MaxMessageBytes(self.limits.max_message_bytes));
                (0, bytes.len())
            }
            Framing::Framed(len) => {
                cx.extensions_mut().insert(HasFramed);
                if bytes.len() - 4 < len {
                    return Err(incomplete());
                }
                self.scanner.reset(Budget::Frame(len));
                (4, 4 + len)
            }
        };
        let len = match self.scanner.feed(&bytes[start..end])? {
            (_, Scan::Complete { len }) => len,
            (_, Scan::NeedMore) if framing == Framing::Unframed => return Err(incomplete()),
            (_, Scan::NeedMore) => {
                return Err(ScanError::FrameIncomplete {
                    frame_len: end - start,
                }
                .into());
            }
        };
        if start + len < end && framing != Framing::Unframed {
            return Err(ScanError::FrameTrailing {
                frame_len: end - start,
                trailing: end - start - len,
            }
            .into());
        }
        bytes.advance(start);
        let mut msg = bytes.split_to(len);
        self.decode_message(cx, &mut msg).map(Some)
    }

    async fn decode_async<
        Msg: Send + EntryMessage,
        Cx: ThriftContext,
        R: AsyncRead + Unpin + Send + Sync,
    >(
        &mut self,
        cx: &mut Cx,
        reader: &mut BufReader<R>,
    ) -> Result<Option<ThriftMessage<Msg>>, ThriftException> {
        if let Permit::Refused { max } = self.permit {
            // Read the request first, so the refusal is framed the way the client frames, and
            // carries the request's method name and sequence id: clients match a reply to its
            // call by them (the stock Node.js client waits forever for an unmatched one).
            let Some((mut bytes, _)) = self.read_message(cx, reader).await? else {
                return Ok(None);
            };
            self.note_call(cx, &mut bytes);
            return Err(new_protocol_exception(
                ProtocolExceptionKind::Unknown,
                format!("UNAVAILABLE: the server has max_connections={max} open; retry later"),
            ));
        }
        let read = self.read_message(cx, reader).await;
        cx.stats_mut().record_read_end_at();
        let Some((mut bytes, wire_len)) = read? else {
            return Ok(None);
        };
        cx.stats_mut().set_read_size(wire_len);
        self.decode_message(cx, &mut bytes).map(Some)
    }
}

/// Decides the framing from the first bytes, `Ok(None)` meaning "need more".
///
/// Unframed strict binary starts `80 01`; framed starts with a positive big-endian length and
/// then `80 01`. Everything else (compact, non-strict binary, TTHeader, HTTP) is refused.
fn detect(head: &[u8], max_message_bytes: usize) -> Result<Option<Framing>, ScanError> {
    let not_binary = || ScanError::NotStrictBinary { prefix: hex(head) };
    let Some(&first) = head.first() else {
        return Ok(None);
    };
    match first {
        0x80 => match head.get(1) {
            None => Ok(None),
            Some(0x01) => Ok(Some(Framing::Unframed)),
            Some(_) => Err(not_binary()),
        },
        0x82 => Err(ScanError::CompactProtocol),
        // A negative frame length, or no Thrift at all.
        0x81..=0xff => Err(not_binary()),
        _ if head.len() < HEAD_LEN => Ok(None),
        _ => {
            if head[4] == 0x82 {
                return Err(ScanError::CompactProtocol);
            }
            if head[4..6] != [0x80, 0x01] {
                return Err(not_binary());
            }
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if len > max_message_bytes {
                return Err(ScanError::FrameTooLarge {
                    len,
                    max: max_message_bytes,
                });
            }
            if len < MIN_MESSAGE_LEN {
                return Err(ScanError::FrameTooShort { len });
            }
            Ok(Some(Framing::Framed(len)))
        }
    }
}

/// Returns the buffered bytes, reading more only when none are buffered (then from the start
/// of the buffer, so reads are never squeezed into its tail).
async fn fill<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> io::Result<&[u8]> {
    if reader.buffer().is_empty() {
        reader.compact();
    }
    reader.fill_buf().await
}

/// Only requests reach a server and only replies reach a client; volo's server treats a
/// decoded EXCEPTION as unreachable.
fn check_message_type(role: Role, message_type: TMessageType) -> Result<(), ThriftException> {
    let accepted = match role {
        Role::Server => matches!(message_type, TMessageType::Call | TMessageType::OneWay),
        Role::Client => matches!(message_type, TMessageType::Reply | TMessageType::Exception),
    };
    if accepted {
        return Ok(());
    }
    Err(protocol_error(
        ProtocolExceptionKind::InvalidData,
        format!("message type {message_type:?} is not accepted by a {role:?}"),
    ))
}

fn eof(received: usize) -> ThriftException {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed after {received} bytes of an incomplete message"),
    )
    .into()
}

fn hex(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.join(" ")
}

fn protocol_error(kind: ProtocolExceptionKind, message: impl Into<String>) -> ThriftException {
    new_protocol_exception(kind, message.into())
}

impl From<ScanError> for ThriftException {
    fn from(e: ScanError) -> Self {
        let kind = match &e {
            ScanError::NotStrictBinary { .. } | ScanError::BadHeader { .. } => {
                ProtocolExceptionKind::BadVersion
            }
            ScanError::CompactProtocol => ProtocolExceptionKind::NotImplemented,
            ScanError::NegativeLength { .. } => ProtocolExceptionKind::NegativeSize,
            ScanError::FrameTooLarge { .. }
            | ScanError::NameTooLong { .. }
            | ScanError::CollectionTooLong { .. }
            | ScanError::TooLarge { .. } => ProtocolExceptionKind::SizeLimit,
            ScanError::TooDeep { .. } => ProtocolExceptionKind::DepthLimit,
            ScanError::FrameTooShort { .. }
            | ScanError::FrameIncomplete { .. }
            | ScanError::FrameTrailing { .. }
            | ScanError::NameNotUtf8 { .. }
            | ScanError::InvalidType { .. } => ProtocolExceptionKind::InvalidData,
        };
        protocol_error(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests;
