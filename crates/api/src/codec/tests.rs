//! Unit tests of `codec`.

use std::{
    pin::Pin,
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use tokio::io::{AsyncWriteExt, ReadBuf};
use volo::context::RpcInfo;
use volo_thrift::{
    codec::default::ZeroCopyEncoder,
    context::{ClientContext, ThriftContext},
    LinkedBytes,
};

use super::{
    scanner::{T_I32, T_LIST, T_STRING, T_STRUCT},
    test_util::{request, Enc, Rng, TestRequest},
    *,
};

/// Yields one byte per ready poll, and `Pending` (after waking itself) between bytes when
/// `stutter` is set: the worst segmentation a socket can produce.
struct OneBytePerPoll {
    data: Vec<u8>,
    pos: usize,
    stutter: bool,
    pending_next: bool,
}

impl OneBytePerPoll {
    fn new(data: Vec<u8>, stutter: bool) -> BufReader<Self> {
        BufReader::new(Self {
            data,
            pos: 0,
            stutter,
            pending_next: false,
        })
    }
}

impl AsyncRead for OneBytePerPoll {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending_next {
            self.pending_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.pos < self.data.len() && buf.remaining() > 0 {
            let byte = self.data[self.pos];
            buf.put_slice(&[byte]);
            self.pos += 1;
            self.pending_next = self.stutter;
        }
        Poll::Ready(Ok(()))
    }
}

fn limits() -> SafeCodecLimits {
    SafeCodecLimits::default()
}

async fn decode<R: AsyncRead + Unpin + Send + Sync>(
    decoder: &mut SafeDecoder,
    cx: &mut ServerContext,
    reader: &mut BufReader<R>,
) -> Result<Option<TestRequest>, ThriftException> {
    let msg = decoder
        .decode_async::<TestRequest, _, _>(cx, reader)
        .await?;
    Ok(msg.map(|m| m.data.expect("a request, not an exception")))
}

fn framed(cx: &ServerContext) -> bool {
    cx.extensions().contains::<HasFramed>()
}

fn protocol_kind(e: &ThriftException) -> ProtocolExceptionKind {
    match e {
        ThriftException::Protocol(p) => p.kind(),
        other => panic!("not a protocol error: {other:?}"),
    }
}

/// Encodes a reply to the request decoded into `cx` with volo's encoder side.
fn reply(cx: &mut ServerContext, key: &'static [u8]) -> Vec<u8> {
    let (mut encoder, _) = SafeMakeCodec::new(limits()).make_codec();
    cx.msg_type = Some(TMessageType::Reply);
    let msg = ThriftMessage::mk_server_resp(
        cx,
        Ok(TestRequest {
            key: Bytes::from_static(key),
            ..TestRequest::default()
        }),
    );
    let (size, malloc) = encoder.size(cx, &msg).unwrap();
    let mut out = LinkedBytes::new();
    out.reserve(malloc);
    encoder.encode(cx, &mut out, msg).unwrap();
    let out = out.concat().to_vec();
    assert_eq!(out.len(), size);
    out
}

#[tokio::test]
async fn unframed_request_one_byte_per_poll_gets_an_unframed_reply() {
    let bytes = request("getRange", b"key", &[b"a", b"bc"]).bytes();
    let mut reader = OneBytePerPoll::new(bytes, true);
    let mut decoder = SafeDecoder::new(limits());
    let mut cx = ServerContext::default();
    let req = decode(&mut decoder, &mut cx, &mut reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(req.key, Bytes::from_static(b"key"));
    assert_eq!(
        req.keys,
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
    );
    assert_eq!(cx.rpc_info().method(), "getRange");
    assert_eq!(ThriftContext::seq_id(&cx), 7);
    assert!(!framed(&cx));

    let out = reply(&mut cx, b"v");
    assert_eq!(out[..4], [0x80, 0x01, 0x00, 0x02]);
    assert_eq!(out[4..8], 8u32.to_be_bytes());
    assert_eq!(&out[8..16], b"getRange");
    assert_eq!(out[16..20], 7u32.to_be_bytes());

    let mut cx = ServerContext::default();
    assert!(decode(&mut decoder, &mut cx, &mut reader)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn framed_request_one_byte_per_poll_gets_a_framed_reply() {
    let bytes = request("get", b"k", &[]).framed();
    let mut reader = OneBytePerPoll::new(bytes, true);
    let mut decoder = SafeDecoder::new(limits());
    let mut cx = ServerContext::default();
    let req = decode(&mut decoder, &mut cx, &mut reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(req.key, Bytes::from_static(b"k"));
    assert!(framed(&cx));
    assert_eq!(
        ThriftContext::stats(&cx).read_size(),
        Some(4 + request("get", b"k", &[]).0.len())
    );

    let out = reply(&mut cx, b"v");
    let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
    assert_eq!(len, out.len() - 4);
    assert_eq!(out[4..8], [0x80, 0x01, 0x00, 0x02]);
}

#[tokio::test]
async fn pipelined_requests_in_random_segments_are_decoded_in_order() {
    let a = request("a", b"A", &[b"1"]).bytes();
    let b = request("b", b"B", &[]).framed();
    let c = request("c", b"C", &[b"x", b"y", b"z"]).bytes();
    let stream: Vec<u8> = [a, b, c].concat();
    let (mut client, server) = tokio::io::duplex(64);
    let writer = tokio::spawn(async move {
        let mut rng = Rng::new(42);
        let mut pos = 0;
        for n in rng.chunks(stream.len(), 7) {
            client.write_all(&stream[pos..pos + n]).await.unwrap();
            client.flush().await.unwrap();
            pos += n;
            tokio::task::yield_now().await;
        }
    });
    let mut reader = BufReader::new(server);
    let mut decoder = SafeDecoder::new(limits());
    for (key, was_framed) in [(&b"A"[..], false), (b"B", true), (b"C", false)] {
        let mut cx = ServerContext::default();
        let req = decode(&mut decoder, &mut cx, &mut reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&req.key[..], key);
        assert_eq!(framed(&cx), was_framed);
    }
    writer.await.unwrap();
    let mut cx = ServerContext::default();
    assert!(decode(&mut decoder, &mut cx, &mut reader)
        .await
        .unwrap()
        .is_none());
}

async fn decode_bytes(
    bytes: Vec<u8>,
    limits: SafeCodecLimits,
) -> Result<Option<TestRequest>, ThriftException> {
    let mut reader = OneBytePerPoll::new(bytes, false);
    let mut cx = ServerContext::default();
    decode(&mut SafeDecoder::new(limits), &mut cx, &mut reader).await
}

#[tokio::test]
async fn garbage_streams_are_protocol_errors() {
    let mut non_strict = Enc::default();
    non_strict.string(b"get").u8(1).i32(1).stop();
    let mut framed_non_strict = (non_strict.0.len() as u32).to_be_bytes().to_vec();
    framed_non_strict.extend_from_slice(&non_strict.0);
    let cases: Vec<(&str, Vec<u8>, ProtocolExceptionKind)> = vec![
        (
            "http",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ProtocolExceptionKind::BadVersion,
        ),
        (
            "compact",
            vec![0x82, 0x21, 0x01, 0x03, b'g', b'e', b't', 0],
            ProtocolExceptionKind::NotImplemented,
        ),
        (
            "framed compact",
            vec![0, 0, 0, 8, 0x82, 0x21, 0x01, 0x03, b'g', b'e', b't', 0],
            ProtocolExceptionKind::NotImplemented,
        ),
        (
            "non-strict binary",
            non_strict.bytes(),
            ProtocolExceptionKind::BadVersion,
        ),
        (
            "framed non-strict",
            framed_non_strict,
            ProtocolExceptionKind::BadVersion,
        ),
        (
            "negative frame length",
            vec![0xff, 0xff, 0xff, 0xfb, 0x80, 0x01, 0, 1],
            ProtocolExceptionKind::BadVersion,
        ),
        (
            "binary version 2",
            vec![0x80, 0x02, 0, 1, 0, 0, 0, 0],
            ProtocolExceptionKind::BadVersion,
        ),
        (
            "ttheader",
            vec![0, 0, 0, 40, 0x10, 0x00, 0, 0, 0, 0, 0, 0],
            ProtocolExceptionKind::BadVersion,
        ),
        (
            "zero frame",
            vec![0, 0, 0, 0, 0x80, 0x01, 0, 1],
            ProtocolExceptionKind::InvalidData,
        ),
    ];
    for (name, bytes, kind) in cases {
        let err = decode_bytes(bytes, limits()).await.unwrap_err();
        assert_eq!(protocol_kind(&err), kind, "{name}: {err}");
    }
    let err = decode_bytes(b"GET / HTTP/1.1\r\n".to_vec(), limits())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("first bytes: 47 45 54 20 2f 20"),
        "{err}"
    );
}

#[tokio::test]
async fn eof_between_messages_is_clean_and_inside_one_is_an_error() {
    assert!(decode_bytes(Vec::new(), limits()).await.unwrap().is_none());
    let bytes = request("get", b"key", &[]).bytes();
    for cut in [1, 3, 5, 6, 7, 12, bytes.len() - 1] {
        let err = decode_bytes(bytes[..cut].to_vec(), limits())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ThriftException::Transport(_)),
            "cut {cut}: {err:?}"
        );
        assert!(
            err.to_string().contains(&format!("after {cut} bytes")),
            "{err}"
        );
    }
    let framed = request("get", b"key", &[]).framed();
    let err = decode_bytes(framed[..framed.len() - 1].to_vec(), limits())
        .await
        .unwrap_err();
    assert!(matches!(err, ThriftException::Transport(_)), "{err:?}");
}

/// Sends `bytes` and keeps the connection open: the decoder must fail on what it has.
async fn decode_open_stream(bytes: Vec<u8>) -> ThriftException {
    let (mut client, server) = tokio::io::duplex(1024);
    client.write_all(&bytes).await.unwrap();
    let mut reader = BufReader::new(server);
    let mut cx = ServerContext::default();
    let mut decoder = SafeDecoder::new(limits());
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        decode(&mut decoder, &mut cx, &mut reader),
    )
    .await
    .expect("rejected without waiting for the claimed bytes");
    drop(client);
    res.unwrap_err()
}

#[tokio::test]
async fn huge_claims_are_rejected_before_their_bytes_arrive() {
    let mut e = Enc::call("setKey");
    e.field(T_STRUCT, 1).field(T_STRING, 2).i32(i32::MAX);
    let err = decode_open_stream(e.bytes()).await;
    assert_eq!(protocol_kind(&err), ProtocolExceptionKind::SizeLimit);
    assert!(
        err.to_string()
            .contains("message exceeds max_message_bytes=16777216"),
        "{err}"
    );

    let mut e = Enc::call("setKey");
    e.field(T_STRUCT, 1).field(T_STRING, 2).i32(-5);
    let err = decode_open_stream(e.bytes()).await;
    assert_eq!(protocol_kind(&err), ProtocolExceptionKind::NegativeSize);
    assert!(
        err.to_string()
            .contains("string length -5 at offset 24 is negative"),
        "{err}"
    );

    let mut e = Enc::call("atomicCommit");
    e.field(T_STRUCT, 1)
        .field(T_LIST, 2)
        .list(T_STRUCT, 1_000_001);
    let err = decode_open_stream(e.bytes()).await;
    assert_eq!(protocol_kind(&err), ProtocolExceptionKind::SizeLimit);

    let err = decode_open_stream(vec![0x7f, 0xff, 0xff, 0xff, 0x80, 0x01]).await;
    assert_eq!(protocol_kind(&err), ProtocolExceptionKind::SizeLimit);
    assert!(
        err.to_string()
            .contains("message exceeds max_message_bytes=16777216: frame length 2147483647"),
        "{err}"
    );

    let mut e = Enc::call("m");
    for _ in 0..65 {
        e.field(T_STRUCT, 1);
    }
    let err = decode_open_stream(e.bytes()).await;
    assert_eq!(protocol_kind(&err), ProtocolExceptionKind::DepthLimit);
}

#[tokio::test]
async fn frames_must_hold_exactly_one_message() {
    let msg = request("get", b"key", &[]).bytes();
    let mut long = ((msg.len() + 3) as u32).to_be_bytes().to_vec();
    long.extend_from_slice(&msg);
    long.extend_from_slice(&[0, 0, 0]);
    let err = decode_bytes(long, limits()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("holds 3 bytes after the end of its message"),
        "{err}"
    );

    let mut short = ((msg.len() - 1) as u32).to_be_bytes().to_vec();
    short.extend_from_slice(&msg);
    let err = decode_bytes(short, limits()).await.unwrap_err();
    assert!(err.to_string().contains("ends before the message"), "{err}");

    let err = decode_bytes(vec![0, 0, 0, 12, 0x80, 0x01, 0, 1], limits())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("frame length 12 is shorter"),
        "{err}"
    );
}

#[tokio::test]
async fn limits_are_configurable() {
    let msg = request("get", &[7; 100], &[]).bytes();
    let tight = SafeCodecLimits {
        max_message_bytes: msg.len() - 1,
        ..limits()
    };
    let err = decode_bytes(msg.clone(), tight).await.unwrap_err();
    assert_eq!(protocol_kind(&err), ProtocolExceptionKind::SizeLimit);
    let exact = SafeCodecLimits {
        max_message_bytes: msg.len(),
        ..limits()
    };
    assert!(decode_bytes(msg, exact).await.unwrap().is_some());

    let mut framed = request("get", &[7; 100], &[]).framed();
    framed[3] += 1;
    let err = decode_bytes(framed, exact).await.unwrap_err();
    assert!(
        err.to_string().contains("exceeds max_message_bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn a_type_confused_request_is_an_error_not_a_panic() {
    let mut e = Enc::call("get");
    e.field(T_STRUCT, 1)
        .field(T_LIST, 2)
        .list(T_I32, 1)
        .i32(i32::MAX);
    e.stop().stop();
    let err = decode_bytes(e.bytes(), limits()).await.unwrap_err();
    assert_eq!(protocol_kind(&err), ProtocolExceptionKind::InvalidData);
}

#[tokio::test]
async fn servers_accept_only_calls_and_oneways() {
    for (message_type, ok) in [(1, true), (2, false), (3, false), (4, true)] {
        let mut e = Enc::message("get", message_type, 1);
        e.stop();
        let res = decode_bytes(e.bytes(), limits()).await;
        assert_eq!(res.is_ok(), ok, "type {message_type}: {res:?}");
    }
}

#[tokio::test]
async fn a_megabyte_one_byte_per_poll() {
    let big = vec![0x5a; 1 << 20];
    let keys: Vec<&[u8]> = vec![b"k"; 1000];
    let bytes = request("setKey", &big, &keys).bytes();
    let req = decode_bytes(bytes, limits()).await.unwrap().unwrap();
    assert_eq!(req.key.len(), 1 << 20);
    assert_eq!(req.keys.len(), 1000);
}

#[test]
fn sync_decode_consumes_exactly_one_message() {
    let first = request("a", b"A", &[]).bytes();
    let second = request("b", b"B", &[]).framed();
    let mut bytes = Bytes::from([first, second.clone()].concat());
    let mut decoder = SafeDecoder::new(limits());

    let mut cx = ServerContext::default();
    let msg = decoder
        .decode::<TestRequest, _>(&mut cx, &mut bytes)
        .unwrap()
        .unwrap();
    assert_eq!(&msg.data.unwrap().key[..], b"A");
    assert!(!framed(&cx));
    assert_eq!(bytes, second);

    let mut cx = ServerContext::default();
    let msg = decoder
        .decode::<TestRequest, _>(&mut cx, &mut bytes)
        .unwrap()
        .unwrap();
    assert_eq!(&msg.data.unwrap().key[..], b"B");
    assert!(framed(&cx));
    assert!(bytes.is_empty());

    for bad in [
        Vec::new(),
        vec![0x80],
        request("a", b"A", &[]).0[..20].to_vec(),
        second[..30].to_vec(),
    ] {
        let mut bytes = Bytes::from(bad);
        let mut cx = ServerContext::default();
        assert!(decoder
            .decode::<TestRequest, _>(&mut cx, &mut bytes)
            .is_err());
    }
}

fn client_cx() -> ClientContext {
    ClientContext::new(7, RpcInfo::with_role(Role::Client), TMessageType::Call)
}

#[tokio::test]
async fn clients_decode_replies_and_exceptions_through_the_checked_dry_run() {
    let mut decoder = SafeDecoder::new(limits());

    let mut e = Enc::message("get", 2, 7);
    e.field(T_STRUCT, 1)
        .field(T_STRING, 1)
        .string(b"v")
        .stop()
        .stop();
    let mut reader = OneBytePerPoll::new(e.framed(), true);
    let mut cx = client_cx();
    let msg = decoder
        .decode_async::<TestRequest, _, _>(&mut cx, &mut reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.data.unwrap().key[..], b"v");

    let mut e = Enc::message("get", 3, 7);
    e.field(T_STRING, 1)
        .string(b"boom")
        .field(T_I32, 2)
        .i32(1)
        .stop();
    let mut reader = OneBytePerPoll::new(e.bytes(), false);
    let mut cx = client_cx();
    let msg = decoder
        .decode_async::<TestRequest, _, _>(&mut cx, &mut reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.data.unwrap_err().message(), "boom");

    let mut e = Enc::message("get", 2, 7);
    e.field(T_STRUCT, 1)
        .field(T_LIST, 2)
        .list(T_I32, 1)
        .i32(i32::MAX);
    e.stop().stop();
    let mut reader = OneBytePerPoll::new(e.bytes(), false);
    let mut cx = client_cx();
    let res = decoder
        .decode_async::<TestRequest, _, _>(&mut cx, &mut reader)
        .await;
    assert!(res.is_err());

    let mut e = Enc::message("get", 1, 7);
    e.stop();
    let mut reader = OneBytePerPoll::new(e.bytes(), false);
    let mut cx = client_cx();
    assert!(decoder
        .decode_async::<TestRequest, _, _>(&mut cx, &mut reader)
        .await
        .is_err());
}

#[test]
fn the_factory_plugs_into_volo() {
    let limits = SafeCodecLimits {
        max_message_bytes: 1 << 20,
        ..SafeCodecLimits::default()
    };
    let make = SafeMakeCodec::new(limits);
    assert_eq!(make.limits(), limits);
    let _codec: SafeCodec = DefaultMakeCodec::new(make.clone());
    let _same: SafeCodec = make.into_codec();
    assert_eq!(
        SafeMakeCodec::default().limits(),
        SafeCodecLimits::default()
    );
}
