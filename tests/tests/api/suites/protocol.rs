//! The wire protocol under stress: malformed input, unknown methods, a request one byte per
//! segment, many requests on one connection, many connections at once.

use dolmen_tests::client::range_all_absent;
use dolmen_tests::kvstore::{
    GetRangeRequest, GetRequest, PingRequest, PingResponse, SetKeyRequest,
    TTransactionalKVSyncClient,
};
use dolmen_tests::raw::{call_bytes, frame, pseudo_random_bytes, strict_header, RawConn};
use dolmen_tests::{Connector, KvExt, TestCluster};
use thrift::protocol::TMessageType;
use thrift::ApplicationErrorKind;

use crate::helpers::{assert_found, fresh_ns, key, reply};

/// Malformed input closes that connection, and the server keeps serving new ones.
pub(crate) fn suite_malformed_input_closes_connection(c: &dyn TestCluster, connect: Connector) {
    let addr = connect.endpoint(c);
    let framed = connect.framed();
    let wrap = |bytes: Vec<u8>| if framed { frame(&bytes) } else { bytes };

    let mut random = pseudo_random_bytes(0x00D0_13E5, 4096);
    random[0] = 0xA5; // neither a strict header nor a plausible frame length

    let mut huge_name = strict_header(b"", 1, 1);
    huge_name.truncate(4);
    huge_name.extend_from_slice(&0x7FFF_FFF0_i32.to_be_bytes());
    huge_name.extend_from_slice(b"getReadVersion");

    let mut negative_name = strict_header(b"", 1, 1);
    negative_name.truncate(4);
    negative_name.extend_from_slice(&(-5_i32).to_be_bytes());
    negative_name.extend_from_slice(b"ping\x00\x00\x00\x01");

    // setKey(request={1: key=<length>, ...}) with a forged key length.
    let key_with_length = |len: i32| {
        let mut m = strict_header(b"setKey", 1, 1);
        m.extend_from_slice(&[12, 0, 1]); // field 1: struct
        m.extend_from_slice(&[11, 0, 1]); // field 1: binary
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(b"0123456789abcdef");
        m
    };
    // atomicCommit(request={2: operations=list<struct>(-1)}).
    let mut negative_list = strict_header(b"atomicCommit", 1, 1);
    negative_list.extend_from_slice(&[12, 0, 1, 10, 0, 1]);
    negative_list.extend_from_slice(&1_i64.to_be_bytes());
    negative_list.extend_from_slice(&[15, 0, 2, 12]);
    negative_list.extend_from_slice(&(-1_i32).to_be_bytes());
    negative_list.extend_from_slice(&[0; 16]);

    let ping = call_bytes("ping", 1, &PingRequest::new(b"truncated".to_vec(), 1));
    let truncated = wrap(ping.clone())[..ping.len() / 2].to_vec();

    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: dolmen\r\n\r\n".to_vec(),
            false,
        ),
        (
            "4 KiB of pseudo-random bytes (seed 0xD013E5)",
            random,
            false,
        ),
        (
            "a 2 GiB frame/length prefix",
            [0x7F, 0xFF, 0xFF, 0xFF, 0x80, 0x01, 0x00, 0x01].to_vec(),
            false,
        ),
        (
            "a strict header whose method name claims 2 GiB",
            wrap(huge_name),
            false,
        ),
        (
            "a strict header with a negative name length",
            wrap(negative_name),
            false,
        ),
        (
            "a setKey whose key claims 2 GiB",
            wrap(key_with_length(0x7FFF_FFF0)),
            false,
        ),
        (
            "a setKey whose key length is negative",
            wrap(key_with_length(-1)),
            false,
        ),
        (
            "an atomicCommit with a negative list length",
            wrap(negative_list),
            false,
        ),
        ("half a ping, then end of stream", truncated, true),
    ];
    for (what, bytes, then_close) in cases {
        let mut raw = RawConn::connect(addr, framed);
        raw.send_raw_lossy(&bytes);
        if then_close {
            raw.shutdown_write();
        }
        raw.expect_closed(what);

        let mut kv = connect.connect(addr);
        let r = reply("ping", kv.ping(PingRequest::new(b"alive".to_vec(), 1)));
        assert_eq!(
            r.message, b"alive",
            "expected the server to keep serving after {what}"
        );
    }
}

/// An unknown method gets an EXCEPTION (UnknownMethod) and the connection stays usable.
pub(crate) fn suite_unknown_method(c: &dyn TestCluster, connect: Connector) {
    let mut raw = RawConn::connect(connect.endpoint(c), connect.framed());
    raw.send(&call_bytes(
        "noSuchMethod",
        7,
        &PingRequest::new(None, None),
    ));
    let r = raw.recv::<PingResponse>().unwrap_or_else(|e| {
        panic!("expected an EXCEPTION message for an unknown method, got {e:?}")
    });
    assert_eq!(
        r.header.message_type,
        TMessageType::Exception,
        "expected message type EXCEPTION (3): {r:?}"
    );
    assert_eq!(
        r.header.name, "noSuchMethod",
        "expected the method name echoed: {r:?}"
    );
    assert_eq!(
        r.header.sequence_number, 7,
        "expected the seqid echoed: {r:?}"
    );
    let ex = r.exception.expect("exception body");
    assert_eq!(
        ex.kind,
        ApplicationErrorKind::UnknownMethod,
        "expected UNKNOWN_METHOD: {ex:?}"
    );

    raw.send(&call_bytes(
        "ping",
        8,
        &PingRequest::new(b"after".to_vec(), 8),
    ));
    let r = raw
        .recv::<PingResponse>()
        .unwrap_or_else(|e| panic!("expected a ping REPLY on the same connection, got {e:?}"));
    assert_eq!(
        r.header.message_type,
        TMessageType::Reply,
        "expected REPLY: {r:?}"
    );
    assert_eq!(
        (r.header.name.as_str(), r.header.sequence_number),
        ("ping", 8),
        "expected ping/8: {r:?}"
    );
    let p = r.response.expect("result field 0");
    assert_eq!(
        (p.message.as_slice(), p.timestamp),
        (b"after".as_slice(), 8),
        "expected the ping echoed: {p:?}"
    );
}

/// A request written one byte per segment still gets the right reply.
pub(crate) fn suite_byte_at_a_time(c: &dyn TestCluster, connect: Connector) {
    let mut raw = RawConn::connect(connect.endpoint(c), connect.framed());
    let seqid = 0x0102_0304;
    raw.send_bytewise(&call_bytes(
        "ping",
        seqid,
        &PingRequest::new(b"slow".to_vec(), 42),
    ));
    let r = raw
        .recv::<PingResponse>()
        .unwrap_or_else(|e| panic!("expected a ping REPLY to a byte-at-a-time request, got {e:?}"));
    assert_eq!(
        r.header.message_type,
        TMessageType::Reply,
        "expected REPLY: {r:?}"
    );
    assert_eq!(
        (r.header.name.as_str(), r.header.sequence_number),
        ("ping", seqid),
        "expected ping/{seqid}: {r:?}"
    );
    let p = r.response.expect("result field 0");
    assert_eq!(
        (p.message.as_slice(), p.timestamp),
        (b"slow".as_slice(), 42),
        "expected the ping echoed: {p:?}"
    );

    let k = key(&fresh_ns("bytewise"), b"k");
    raw.send_bytewise(&call_bytes(
        "setKey",
        2,
        &SetKeyRequest::new(k.clone(), b"v".to_vec(), None),
    ));
    let r = raw
        .recv::<dolmen_tests::kvstore::SetKeyResponse>()
        .unwrap_or_else(|e| panic!("expected a setKey REPLY, got {e:?}"));
    let s = r
        .response
        .unwrap_or_else(|| panic!("expected result field 0 in {:?}", r.header));
    assert!(
        s.success,
        "expected the byte-at-a-time setKey to succeed: {s:?}"
    );
    let mut kv = connect.client(c);
    assert_found(&mut kv, &k, b"v");
}

/// 1000 requests in sequence on one connection.
pub(crate) fn suite_many_sequential_requests(c: &dyn TestCluster, connect: Connector) {
    let mut kv = connect.client(c);
    let k = key(&fresh_ns("sequential"), b"k");
    kv.must_set(&k, b"value");
    for i in 0..1000_i64 {
        if i % 2 == 0 {
            let msg = format!("ping-{i}").into_bytes();
            let r = reply("ping", kv.ping(PingRequest::new(msg.clone(), i)));
            assert_eq!(
                (r.message, r.timestamp),
                (msg, i),
                "expected ping {i} echoed"
            );
        } else {
            let r = reply("get", kv.get(GetRequest::new(k.clone(), None)));
            assert!(
                r.found && r.value == b"value",
                "expected get {i} to find the value: {r:?}"
            );
        }
    }
}

/// 16 threads, each with its own connection, writing and reading concurrently.
pub(crate) fn suite_concurrent_clients(c: &dyn TestCluster, connect: Connector) {
    let addr = connect.endpoint(c);
    let ns = fresh_ns("concurrent");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let ns = ns.clone();
                s.spawn(move || {
                    let mut kv = connect.connect(addr);
                    for i in 0..50 {
                        let k = key(&ns, format!("t{t:02}/k{i:02}").as_bytes());
                        let v = format!("{t}-{i}").into_bytes();
                        kv.must_set(&k, &v);
                        assert_found(&mut kv, &k, &v);
                    }
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(Box::new(format!(
                    "client thread {t} failed: {:?}",
                    e.downcast_ref::<String>()
                )));
            }
        }
    });
    let mut kv = connect.client(c);
    let r = kv.range(GetRangeRequest {
        begin_key: Some(ns.clone()),
        end_key: Some(key(&ns, b"\xff")),
        limit: Some(0),
        ..range_all_absent()
    });
    assert_eq!(
        r.key_values.len(),
        16 * 50,
        "expected all 800 concurrent writes visible"
    );
}
