//! What every suite shares: a private key namespace per suite run, reply unwrapping, and
//! assertions that name what was expected and what came back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use dolmen_tests::kvstore::{GetRangeRequest, GetRangeResponse, KeyValue, SnapshotGetRangeRequest};
use dolmen_tests::raw::show;
use dolmen_tests::{KvClient, KvExt};

/// A key prefix no other suite invocation uses (process id, clock, counter).
pub(crate) fn fresh_ns(tag: &str) -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}/{}-{nanos}-{}/",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes()
}

/// `ns ‖ suffix`.
pub(crate) fn key(ns: &[u8], suffix: &[u8]) -> Vec<u8> {
    [ns, suffix].concat()
}

/// Unwraps a stock-client result: `Err` means the server did not answer with a REPLY carrying
/// every required field (or the connection failed).
#[track_caller]
pub(crate) fn reply<T>(method: &str, r: thrift::Result<T>) -> T {
    r.unwrap_or_else(|e| {
        panic!("expected a REPLY to {method} with every required field present, got {e:?}")
    })
}

#[track_caller]
pub(crate) fn assert_error_mentions(error: &Option<String>, needle: &str, what: &str) {
    match error {
        Some(e) if e.contains(needle) => {}
        other => panic!("expected {what} to return an error mentioning {needle:?}, got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn assert_nonempty_error(error: &Option<String>, what: &str) {
    assert!(
        error.as_ref().is_some_and(|e| !e.trim().is_empty()),
        "expected {what} to return a non-empty error, got {error:?}"
    );
}

#[track_caller]
pub(crate) fn assert_found(kv: &mut KvClient, k: &[u8], expected: &[u8]) {
    let r = kv.get_value(k);
    assert!(
        r.found && r.value == expected && r.error.is_none(),
        "expected get({}) = found {} with no error, got found={} value={} error={:?}",
        show(k),
        show(expected),
        r.found,
        show(&r.value),
        r.error
    );
}

#[track_caller]
pub(crate) fn assert_missing(kv: &mut KvClient, k: &[u8]) {
    let r = kv.get_value(k);
    assert!(
        !r.found && r.value.is_empty() && r.error.is_none(),
        "expected get({}) = not found, empty value, no error; got found={} value={} error={:?}",
        show(k),
        r.found,
        show(&r.value),
        r.error
    );
}

pub(crate) fn now_micros() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_micros()).expect("micros fit i64")
}

pub(crate) fn kv_pairs(r: &GetRangeResponse) -> Vec<(Vec<u8>, Vec<u8>)> {
    r.key_values
        .iter()
        .map(|KeyValue { key, value }| (key.clone(), value.clone()))
        .collect()
}

pub(crate) fn show_keys(keys: &[Vec<u8>]) -> String {
    let shown: Vec<String> = keys.iter().map(|k| show(k)).collect();
    format!("[{}]", shown.join(", "))
}

#[track_caller]
pub(crate) fn assert_ascending(r: &GetRangeResponse, what: &str) {
    for w in r.key_values.windows(2) {
        assert!(
            w[0].key < w[1].key,
            "expected {what} results strictly bytewise ascending, got {} before {}",
            show(&w[0].key),
            show(&w[1].key)
        );
    }
}

pub(crate) fn snapshot_range_of(r: &GetRangeRequest, read_version: i64) -> SnapshotGetRangeRequest {
    SnapshotGetRangeRequest {
        begin_key: r.begin_key.clone(),
        end_key: r.end_key.clone(),
        begin_offset: r.begin_offset,
        begin_or_equal: r.begin_or_equal,
        end_offset: r.end_offset,
        end_or_equal: r.end_or_equal,
        read_version,
        limit: r.limit,
        column_family: r.column_family.clone(),
    }
}

/// Splits a versionstamp into (commit version, order).
pub(crate) fn parse_stamp(stamp: &[u8]) -> (i64, u16) {
    assert_eq!(stamp.len(), 10, "a versionstamp is 10 bytes");
    let version = i64::from_be_bytes(stamp[..8].try_into().expect("8 bytes"));
    let order = u16::from_be_bytes(stamp[8..].try_into().expect("2 bytes"));
    (version, order)
}

pub(crate) fn stamp(version: i64, order: u16) -> Vec<u8> {
    let mut s = version.to_be_bytes().to_vec();
    s.extend_from_slice(&order.to_be_bytes());
    s
}

pub(crate) const UNKNOWN_CF: &str = "no_such_cf_7f3a";
