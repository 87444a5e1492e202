//! Keeping a connection open across a call to a method the IDL does not know.
//!
//! volo-generated request decoders answer an unknown method name with an `UNKNOWN_METHOD`
//! error, and volo's server closes the connection after any decode error. docs/WIRE.md §1 wants an
//! EXCEPTION reply on a connection that stays usable, so [`MaybeUnknown`] turns that one
//! error into a value and [`UnknownMethodService`] answers it with the exception:
//!
//! ```text
//! SafeDecoder ─▶ MaybeUnknown<Req>::decode ─┬─ Known(req) ─────▶ inner service ─▶ REPLY
//!                                           └─ Unknown{method} ─▶ UNKNOWN_METHOD EXCEPTION
//! ```
//!
//! The argument struct of an unknown call is skipped so the stream stays in step with any
//! transport; with [`SafeDecoder`](super::SafeDecoder) it has already been validated.

use pilota::{
    thrift::{
        new_protocol_exception, ApplicationException, ApplicationExceptionKind,
        ProtocolExceptionKind, TAsyncInputProtocol, TInputProtocol, TLengthProtocol,
        TMessageIdentifier, TOutputProtocol, TType, ThriftException,
    },
    FastStr,
};
use volo::Service;
use volo_thrift::{context::ServerContext, EntryMessage, ServerError};

/// A decoded request: one the IDL knows, or a call to a method it does not.
#[derive(Debug, Clone, PartialEq)]
pub enum MaybeUnknown<M> {
    /// A request of a known method.
    Known(M),
    /// A call to an unknown method; its arguments were skipped.
    Unknown {
        /// The method name the client sent.
        method: FastStr,
    },
}

/// Whether `e` is the error generated decoders return for an unknown method name.
fn is_unknown_method(e: &ThriftException) -> bool {
    matches!(e, ThriftException::Application(a) if a.kind() == ApplicationExceptionKind::UNKNOWN_METHOD)
}

impl<M: EntryMessage> EntryMessage for MaybeUnknown<M> {
    fn encode<T: TOutputProtocol>(&self, protocol: &mut T) -> Result<(), ThriftException> {
        match self {
            MaybeUnknown::Known(m) => m.encode(protocol),
            MaybeUnknown::Unknown { method } => Err(new_protocol_exception(
                ProtocolExceptionKind::InvalidData,
                format!("cannot encode a call to the unknown method {method}"),
            )),
        }
    }

    fn decode<T: TInputProtocol>(
        protocol: &mut T,
        msg_ident: &TMessageIdentifier,
    ) -> Result<Self, ThriftException> {
        match M::decode(protocol, msg_ident) {
            Ok(m) => Ok(MaybeUnknown::Known(m)),
            Err(e) if is_unknown_method(&e) => {
                // Generated code rejects the name before reading the argument struct.
                protocol.skip(TType::Struct)?;
                Ok(MaybeUnknown::Unknown {
                    method: msg_ident.name.clone(),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn decode_async<T: TAsyncInputProtocol>(
        protocol: &mut T,
        msg_ident: &TMessageIdentifier,
    ) -> Result<Self, ThriftException> {
        match M::decode_async(protocol, msg_ident).await {
            Ok(m) => Ok(MaybeUnknown::Known(m)),
            Err(e) if is_unknown_method(&e) => {
                protocol.skip(TType::Struct).await?;
                Ok(MaybeUnknown::Unknown {
                    method: msg_ident.name.clone(),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn size<T: TLengthProtocol>(&self, protocol: &mut T) -> usize {
        match self {
            MaybeUnknown::Known(m) => m.size(protocol),
            MaybeUnknown::Unknown { .. } => 0,
        }
    }
}

/// Serves `MaybeUnknown<Req>`: known requests go to `inner`, unknown methods get an
/// `UNKNOWN_METHOD` application exception (volo sends it as an EXCEPTION message with the
/// call's name and seqid, and keeps the connection).
///
/// ```text
/// volo_thrift::server::Server::new(UnknownMethodService::new(
///     gen::TransactionalKvServer::from_handler(handler),
/// ))
/// .make_codec(SafeMakeCodec::new(limits).into_codec())
/// ```
#[derive(Debug, Clone)]
pub struct UnknownMethodService<S> {
    inner: S,
}

impl<S> UnknownMethodService<S> {
    /// Wraps `inner`, the service for the known methods.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, Req> Service<ServerContext, MaybeUnknown<Req>> for UnknownMethodService<S>
where
    S: Service<ServerContext, Req> + Send + Sync,
    S::Error: Into<ServerError>,
    Req: Send,
{
    type Response = S::Response;
    type Error = ServerError;

    async fn call(
        &self,
        cx: &mut ServerContext,
        req: MaybeUnknown<Req>,
    ) -> Result<Self::Response, Self::Error> {
        match req {
            MaybeUnknown::Known(req) => self.inner.call(cx, req).await.map_err(Into::into),
            MaybeUnknown::Unknown { method } => Err(ApplicationException::new(
                ApplicationExceptionKind::UNKNOWN_METHOD,
                format!("unknown method {method}"),
            )
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };
    use volo::{context::Context as _, util::buf_reader::BufReader};
    use volo_thrift::{
        codec::default::ZeroCopyDecoder,
        context::{ServerContext, ThriftContext},
    };

    use super::*;
    use crate::codec::{
        scanner::{Scan, Scanner, T_I32, T_STRING, T_STRUCT},
        test_util::{request, Enc, TestRequest},
        SafeCodecLimits, SafeDecoder, SafeMakeCodec,
    };

    /// Answers a request with itself.
    #[derive(Clone)]
    struct Echo;

    impl Service<ServerContext, TestRequest> for Echo {
        type Response = TestRequest;
        type Error = ServerError;

        async fn call(
            &self,
            _cx: &mut ServerContext,
            req: TestRequest,
        ) -> Result<TestRequest, ServerError> {
            Ok(req)
        }
    }

    fn unknown_call(seq: i32) -> Enc {
        let mut e = Enc::message("noSuchMethod", 1, seq);
        e.field(T_STRUCT, 1).field(T_STRING, 1).string(b"ignored");
        e.field(T_I32, 2).i32(5).stop().stop();
        e
    }

    #[tokio::test]
    async fn an_unknown_method_decodes_to_a_value_and_the_stream_stays_in_step() {
        let stream = [unknown_call(9).bytes(), request("get", b"k", &[]).bytes()].concat();
        let mut reader = BufReader::new(&stream[..]);
        let mut decoder = SafeDecoder::new(SafeCodecLimits::default());

        let mut cx = ServerContext::default();
        let msg = decoder
            .decode_async::<MaybeUnknown<TestRequest>, _, _>(&mut cx, &mut reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            msg.data.unwrap(),
            MaybeUnknown::Unknown {
                method: FastStr::from_static_str("noSuchMethod")
            }
        );
        assert_eq!(cx.rpc_info().method(), "noSuchMethod");
        assert_eq!(ThriftContext::seq_id(&cx), 9);

        let mut cx = ServerContext::default();
        let msg = decoder
            .decode_async::<MaybeUnknown<TestRequest>, _, _>(&mut cx, &mut reader)
            .await
            .unwrap()
            .unwrap();
        let MaybeUnknown::Known(req) = msg.data.unwrap() else {
            panic!("expected a known request");
        };
        assert_eq!(req.key, Bytes::from_static(b"k"));
    }

    #[tokio::test]
    async fn the_service_answers_unknown_methods_with_an_exception() {
        let svc = UnknownMethodService::new(Echo);
        let mut cx = ServerContext::default();
        let err = svc
            .call(
                &mut cx,
                MaybeUnknown::Unknown {
                    method: FastStr::from_static_str("nope"),
                },
            )
            .await
            .unwrap_err();
        match err {
            ServerError::Application(e) => {
                assert_eq!(e.kind(), ApplicationExceptionKind::UNKNOWN_METHOD);
                assert_eq!(e.message(), "unknown method nope");
            }
            other => panic!("expected an application exception, got {other:?}"),
        }
        let req = TestRequest {
            key: Bytes::from_static(b"k"),
            ..TestRequest::default()
        };
        let resp = svc
            .call(&mut cx, MaybeUnknown::Known(req.clone()))
            .await
            .unwrap();
        assert_eq!(resp, req);
    }

    /// Reads one reply (framed or not) off `conn`, using the scanner to find its end.
    async fn read_reply(conn: &mut TcpStream, framed: bool) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        if framed {
            let mut len = [0u8; 4];
            if conn.read_exact(&mut len).await.is_err() {
                return None;
            }
            out.resize(u32::from_be_bytes(len) as usize, 0);
            conn.read_exact(&mut out).await.ok()?;
            return Some(out);
        }
        let mut scanner = Scanner::new(SafeCodecLimits::default());
        loop {
            if conn.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            out.push(byte[0]);
            if let (_, Scan::Complete { .. }) = scanner.feed(&byte).unwrap() {
                return Some(out);
            }
        }
    }

    /// (message type, method name, seqid) of a reply.
    fn header(reply: &[u8]) -> (u8, String, i32) {
        let name_len = u32::from_be_bytes([reply[4], reply[5], reply[6], reply[7]]) as usize;
        let name = String::from_utf8(reply[8..8 + name_len].to_vec()).unwrap();
        let at = 8 + name_len;
        let seq = i32::from_be_bytes([reply[at], reply[at + 1], reply[at + 2], reply[at + 3]]);
        (reply[3], name, seq)
    }

    #[tokio::test]
    async fn a_volo_server_with_the_safe_codec_keeps_the_connection_after_an_unknown_method() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let server = tokio::spawn(
            volo_thrift::server::Server::new(UnknownMethodService::new(Echo))
                .make_codec(SafeMakeCodec::default().into_codec())
                .run(volo::net::Address::from(addr)),
        );
        let connect = || async {
            loop {
                if let Ok(conn) = TcpStream::connect(addr).await {
                    return conn;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let test = async {
            for framed in [false, true] {
                let wire = |e: Enc| if framed { e.framed() } else { e.bytes() };
                let mut conn = connect().await;

                // Unknown method: an EXCEPTION echoing name and seqid, connection kept.
                for b in wire(unknown_call(41)) {
                    conn.write_all(&[b]).await.unwrap();
                }
                let reply = read_reply(&mut conn, framed).await.expect("an exception");
                assert_eq!(header(&reply), (3, "noSuchMethod".to_owned(), 41));

                // A known call on the same connection gets its REPLY, in the same framing.
                conn.write_all(&wire(request("get", b"echo", &[])))
                    .await
                    .unwrap();
                let reply = read_reply(&mut conn, framed).await.expect("a reply");
                assert_eq!(header(&reply), (2, "get".to_owned(), 7));
                assert!(reply.windows(4).any(|w| w == b"echo"));

                // A lying length: an exception, then the connection is closed.
                let mut bad = Enc::call("get");
                bad.field(T_STRUCT, 1).field(T_STRING, 1).i32(-5);
                let bad = if framed {
                    let mut e = bad.clone();
                    e.raw(&[0; 8]);
                    e.framed()
                } else {
                    bad.bytes()
                };
                conn.write_all(&bad).await.unwrap();
                let reply = read_reply(&mut conn, framed).await.expect("an exception");
                assert_eq!(header(&reply).0, 3);
                assert!(
                    reply
                        .windows(27)
                        .any(|w| w == b"string length -5 at offset ".as_slice()),
                    "{:?}",
                    String::from_utf8_lossy(&reply)
                );
                assert!(read_reply(&mut conn, framed).await.is_none(), "closed");
            }
        };
        tokio::time::timeout(Duration::from_secs(20), test)
            .await
            .expect("the server answered in time");
        server.abort();
    }
}
