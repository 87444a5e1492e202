//! Unit tests of `codec::scanner`.

use super::*;
use crate::codec::test_util::{request, Enc, Rng};

fn limits() -> SafeCodecLimits {
    SafeCodecLimits::default()
}

/// Feeds `bytes` in `chunks` (sizes), stopping at completion; returns the bytes consumed
/// and the final status.
fn scan_chunks(
    bytes: &[u8],
    chunks: &[usize],
    limits: SafeCodecLimits,
) -> Result<(usize, Scan), ScanError> {
    let mut scanner = Scanner::new(limits);
    let mut pos = 0;
    let mut consumed = 0;
    let mut status = Scan::NeedMore;
    for &n in chunks {
        let (c, s) = scanner.feed(&bytes[pos..pos + n])?;
        assert!(c <= n);
        consumed += c;
        pos += n;
        status = s;
        if let Scan::Complete { .. } = s {
            assert_eq!(consumed, pos - n + c);
            break;
        }
        assert_eq!(c, n, "an incomplete message consumes all it is given");
    }
    Ok((consumed, status))
}

fn scan(bytes: &[u8], limits: SafeCodecLimits) -> Result<(usize, Scan), ScanError> {
    scan_chunks(bytes, &[bytes.len()], limits)
}

/// Whole, byte by byte and in 40 pseudo-random splittings: all must agree.
fn scan_all_ways(bytes: &[u8], limits: SafeCodecLimits) -> Result<(usize, Scan), ScanError> {
    let whole = scan(bytes, limits);
    assert_eq!(scan_chunks(bytes, &vec![1; bytes.len()], limits), whole);
    let mut rng = Rng::new(0x5eed);
    for round in 0..40 {
        let chunks = rng.chunks(bytes.len(), 1 + round % 17);
        assert_eq!(
            scan_chunks(bytes, &chunks, limits),
            whole,
            "chunks {chunks:?}"
        );
    }
    whole
}

fn every_type(message_type: u8) -> Vec<u8> {
    let mut e = Enc::message("everything", message_type, -3);
    e.field(T_BOOL, 1).u8(1);
    e.field(T_BYTE, 2).u8(0xff);
    e.field(T_I16, 3).i16(-2);
    e.field(T_I32, 4).i32(5);
    e.field(T_I64, 5).i64(-6);
    e.field(T_DOUBLE, 6).f64(1.5);
    e.field(T_STRING, 7)
        .string(b"\xff\x00 binary need not be UTF-8");
    e.field(T_STRING, 8).string(b"");
    e.field(T_UUID, 9).raw(&[7; 16]);
    e.field(T_STRUCT, 10).field(T_I32, 1).i32(1);
    e.field(T_STRUCT, 2).stop().stop();
    e.field(T_MAP, 11).map(T_STRING, T_LIST, 2);
    e.string(b"a").list(T_I64, 2).i64(1).i64(2);
    e.string(b"b").list(T_I64, 0);
    e.field(T_SET, 12).list(T_I16, 3).i16(1).i16(2).i16(3);
    e.field(T_LIST, 13).list(T_STRUCT, 2);
    e.field(T_BOOL, 1).u8(0).stop().stop();
    e.field(T_LIST, 14).list(T_STOP, 0);
    e.field(T_MAP, 15).map(T_STOP, T_VOID, 0);
    e.field(T_LIST, 16).list(T_LIST, 2);
    e.list(T_BYTE, 1).u8(9).list(T_BYTE, 0);
    e.field(T_MAP, 17).map(T_I32, T_STRUCT, 1).i32(4).stop();
    e.field(T_I32, -1).i32(0);
    e.stop();
    e.bytes()
}

#[test]
fn valid_messages_of_every_type_complete_at_their_exact_length() {
    for message_type in 1..=4 {
        let bytes = every_type(message_type);
        let len = bytes.len();
        assert_eq!(
            scan_all_ways(&bytes, limits()),
            Ok((len, Scan::Complete { len }))
        );
    }
    let smallest = Enc::message("", 1, 0).stop().bytes();
    assert_eq!(smallest.len(), MIN_MESSAGE_LEN);
    assert_eq!(
        scan_all_ways(&smallest, limits()),
        Ok((
            MIN_MESSAGE_LEN,
            Scan::Complete {
                len: MIN_MESSAGE_LEN
            }
        ))
    );
    let req = request("get", b"key", &[b"a", b"bc"]).bytes();
    assert_eq!(
        scan_all_ways(&req, limits()),
        Ok((req.len(), Scan::Complete { len: req.len() }))
    );
}

#[test]
fn only_the_message_is_consumed_when_more_follows() {
    let one = every_type(1);
    let mut two = one.clone();
    two.extend_from_slice(&request("next", b"k", &[]).bytes());
    let len = one.len();
    assert_eq!(
        scan_all_ways(&two, limits()),
        Ok((len, Scan::Complete { len }))
    );

    let mut scanner = Scanner::new(limits());
    assert_eq!(scanner.feed(&two), Ok((len, Scan::Complete { len })));
    assert_eq!(scanner.feed(&two[len..]), Ok((0, Scan::Complete { len })));
    scanner.reset(Budget::MaxMessageBytes(limits().max_message_bytes));
    let next = two.len() - len;
    assert_eq!(
        scanner.feed(&two[len..]),
        Ok((next, Scan::Complete { len: next }))
    );
}

#[test]
fn a_prefix_needs_more() {
    let bytes = every_type(1);
    for cut in 0..bytes.len() {
        assert_eq!(
            scan(&bytes[..cut], limits()),
            Ok((cut, Scan::NeedMore)),
            "cut at {cut}"
        );
    }
}

/// Scans `bytes` all ways and returns the error.
fn error(bytes: &[u8], limits: SafeCodecLimits) -> ScanError {
    match scan_all_ways(bytes, limits) {
        Err(e) => e,
        Ok(ok) => panic!("expected an error, got {ok:?}"),
    }
}

#[test]
fn negative_lengths_and_counts_are_rejected() {
    let mut e = Enc::call("getRange");
    e.field(T_STRING, 1);
    let offset = e.0.len();
    e.i32(-5);
    let err = error(&e.bytes(), limits());
    assert_eq!(
        err,
        ScanError::NegativeLength {
            what: "string length",
            len: -5,
            offset
        }
    );
    assert_eq!(err.to_string(), "string length -5 at offset 23 is negative");

    for (ttype, what) in [(T_LIST, "list count"), (T_SET, "set count")] {
        let mut e = Enc::call("m");
        e.field(ttype, 1);
        let offset = e.0.len();
        e.list(T_I32, i32::MIN);
        assert_eq!(
            error(&e.bytes(), limits()),
            ScanError::NegativeLength {
                what,
                len: i32::MIN,
                offset
            }
        );
    }

    let mut e = Enc::call("m");
    e.field(T_MAP, 1);
    let offset = e.0.len();
    e.map(T_I32, T_I32, -1);
    assert_eq!(
        error(&e.bytes(), limits()),
        ScanError::NegativeLength {
            what: "map count",
            len: -1,
            offset
        }
    );

    let mut e = Enc::default();
    e.u32(0x8001_0001).i32(-1);
    assert_eq!(
        error(&e.bytes(), limits()),
        ScanError::NegativeLength {
            what: "method name length",
            len: -1,
            offset: 4
        }
    );
}

#[test]
fn bad_method_names_are_rejected() {
    let long = "x".repeat(MAX_METHOD_NAME_LEN + 1);
    let mut e = Enc::default();
    e.u32(0x8001_0001).i32(long.len() as i32);
    assert_eq!(
        error(&e.bytes(), limits()),
        ScanError::NameTooLong {
            len: MAX_METHOD_NAME_LEN + 1,
            offset: 4,
            max: MAX_METHOD_NAME_LEN
        }
    );
    let longest = "x".repeat(MAX_METHOD_NAME_LEN);
    let ok = Enc::call(&longest).stop().bytes();
    assert!(scan_all_ways(&ok, limits()).is_ok());

    let mut e = Enc::default();
    e.u32(0x8001_0001).string(b"ge\xfft").i32(1).stop();
    assert_eq!(
        error(&e.bytes(), limits()),
        ScanError::NameNotUtf8 { offset: 8 }
    );
}

#[test]
fn bad_headers_are_rejected() {
    for header in [
        0x8001_0000u32,
        0x8001_0005,
        0x8001_0101,
        0x8002_0001,
        0x0000_0004,
        0x7fff_ffff,
    ] {
        let mut e = Enc::default();
        e.u32(header).string(b"m").i32(1).stop();
        assert_eq!(
            error(&e.bytes(), limits()),
            ScanError::BadHeader { header },
            "{header:08x}"
        );
    }
}

#[test]
fn invalid_type_ids_are_rejected() {
    for bad in [5u8, 7, 9, 17, 0xff, T_VOID] {
        let mut e = Enc::call("m");
        let offset = e.0.len();
        e.field(bad, 1).i32(0).stop();
        assert_eq!(
            error(&e.bytes(), limits()),
            ScanError::InvalidType {
                context: "field",
                type_id: bad,
                offset
            }
        );
    }
    // Non-empty collections need value types; empty ones any known id, never an unknown one.
    for (etype, count) in [(T_STOP, 1), (T_VOID, 2), (5, 1), (5, 0), (200, 0)] {
        let mut e = Enc::call("m");
        e.field(T_LIST, 1);
        let offset = e.0.len();
        e.list(etype, count).u8(0).stop();
        assert_eq!(
            error(&e.bytes(), limits()),
            ScanError::InvalidType {
                context: "list element",
                type_id: etype,
                offset
            }
        );
    }
    let mut e = Enc::call("m");
    e.field(T_MAP, 1);
    let offset = e.0.len();
    e.map(T_I32, 9, 1).i32(0).i32(0).stop();
    assert_eq!(
        error(&e.bytes(), limits()),
        ScanError::InvalidType {
            context: "map value",
            type_id: 9,
            offset
        }
    );
}

#[test]
fn lengths_beyond_the_message_budget_are_rejected_on_arrival() {
    // A 2 GiB string claim fails as soon as its prefix arrives, without its bytes.
    let mut e = Enc::call("setKey");
    e.field(T_STRING, 2).i32(i32::MAX);
    let offset = e.0.len();
    let err = error(&e.bytes(), limits());
    assert!(
        matches!(
            err,
            ScanError::TooLarge { budget: Budget::MaxMessageBytes(16_777_216), what: "a string", offset: o, needed, .. }
                if o == offset && needed == i32::MAX as u64
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("message exceeds max_message_bytes=16777216: a string at offset"),
        "{err}"
    );

    // A count whose elements cannot fit.
    let small = SafeCodecLimits {
        max_message_bytes: 1 << 20,
        ..limits()
    };
    let mut e = Enc::call("m");
    e.field(T_LIST, 1).list(T_I64, 200_000);
    let err = error(&e.bytes(), small);
    assert!(
        matches!(
            err,
            ScanError::TooLarge {
                what: "list count",
                needed: 1_600_000,
                ..
            }
        ),
        "{err:?}"
    );
    let mut e = Enc::call("m");
    e.field(T_MAP, 1).map(T_STRING, T_STRUCT, 300_000);
    let err = error(&e.bytes(), small);
    assert!(
        matches!(
            err,
            ScanError::TooLarge {
                what: "map count",
                needed: 1_500_000,
                ..
            }
        ),
        "{err:?}"
    );

    // The frame budget is reported as such.
    let mut e = Enc::call("m");
    e.field(T_STRING, 1).i32(100);
    let mut scanner = Scanner::new(limits());
    scanner.reset(Budget::Frame(50));
    let err = scanner.feed(&e.bytes()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("message exceeds its frame length 50"),
        "{err}"
    );
}

#[test]
fn total_size_over_max_message_bytes_is_rejected() {
    let tiny = SafeCodecLimits {
        max_message_bytes: 64,
        ..limits()
    };
    let mut e = Enc::call("m");
    for id in 0..10 {
        e.field(T_I64, id).i64(0);
    }
    e.stop();
    let err = error(&e.bytes(), tiny);
    assert!(
        matches!(
            err,
            ScanError::TooLarge {
                budget: Budget::MaxMessageBytes(64),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("message exceeds max_message_bytes=64"));
    // Exactly at the limit is fine.
    let exact = SafeCodecLimits {
        max_message_bytes: e.0.len(),
        ..limits()
    };
    let len = e.0.len();
    assert_eq!(
        scan_all_ways(&e.bytes(), exact),
        Ok((len, Scan::Complete { len }))
    );
}

#[test]
fn collections_over_max_collection_len_are_rejected() {
    let few = SafeCodecLimits {
        max_collection_len: 3,
        ..limits()
    };
    for (ttype, what) in [(T_LIST, "list count"), (T_SET, "set count")] {
        let mut e = Enc::call("m");
        e.field(ttype, 1);
        let offset = e.0.len();
        e.list(T_BYTE, 4).raw(&[0; 4]).stop();
        assert_eq!(
            error(&e.bytes(), few),
            ScanError::CollectionTooLong {
                what,
                count: 4,
                offset,
                max: 3
            }
        );
    }
    let mut e = Enc::call("m");
    e.field(T_MAP, 1).map(T_BYTE, T_BYTE, 4).raw(&[0; 8]).stop();
    assert!(matches!(
        error(&e.bytes(), few),
        ScanError::CollectionTooLong {
            what: "map count",
            count: 4,
            ..
        }
    ));
    let mut e = Enc::call("m");
    e.field(T_LIST, 1).list(T_BYTE, 3).raw(&[0; 3]).stop();
    assert!(scan_all_ways(&e.bytes(), few).is_ok());
}

/// A message whose argument struct holds `lists` nested lists.
fn nested_lists(lists: usize) -> Vec<u8> {
    let mut e = Enc::call("deep");
    e.field(T_LIST, 1);
    for _ in 1..lists {
        e.list(T_LIST, 1);
    }
    e.list(T_BYTE, 0).stop();
    e.bytes()
}

#[test]
fn nesting_deeper_than_max_depth_is_rejected() {
    // The argument struct is depth 1, so 63 nested lists reach the default 64.
    let ok = nested_lists(63);
    assert_eq!(
        scan_all_ways(&ok, limits()),
        Ok((ok.len(), Scan::Complete { len: ok.len() }))
    );
    let err = error(&nested_lists(64), limits());
    assert!(matches!(err, ScanError::TooDeep { max: 64, .. }), "{err:?}");

    let mut e = Enc::call("deep");
    for _ in 0..3 {
        e.field(T_STRUCT, 1);
    }
    e.stop().stop().stop().stop();
    let shallow = SafeCodecLimits {
        max_depth: 3,
        ..limits()
    };
    assert!(matches!(
        error(&e.bytes(), shallow),
        ScanError::TooDeep { max: 3, .. }
    ));
    let enough = SafeCodecLimits {
        max_depth: 4,
        ..limits()
    };
    assert!(scan_all_ways(&e.bytes(), enough).is_ok());
}

#[test]
fn ten_megabytes_one_byte_at_a_time_is_linear() {
    let mut e = Enc::call("setKey");
    e.field(T_STRING, 1).string(&vec![0xab; 10 << 20]);
    e.field(T_LIST, 2).list(T_I32, 100_000);
    for i in 0..100_000 {
        e.i32(i);
    }
    e.stop();
    let bytes = e.bytes();
    let mut scanner = Scanner::new(limits());
    let start = std::time::Instant::now();
    let mut status = Scan::NeedMore;
    for (i, b) in bytes.iter().enumerate() {
        let (consumed, s) = scanner.feed(std::slice::from_ref(b)).unwrap();
        assert_eq!(consumed, 1);
        status = s;
        if i + 1 < bytes.len() {
            assert_eq!(s, Scan::NeedMore);
        }
    }
    assert_eq!(status, Scan::Complete { len: bytes.len() });
    // Generous: quadratic behaviour would take hours, linear takes well under a second.
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
}
