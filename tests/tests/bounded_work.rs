//! Bounded work per request (issue 18): a range answer stops at `server.max_range_bytes` of keys
//! and values with an honest `has_more`, and reading on from the last key returns every key
//! exactly once; the default budget (8 MiB) holds for a read with no limit over 10 MB, and a
//! read with no limit over a gigabyte leaves the node's peak memory (VmHWM) within 200 MiB.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test bounded_work`.

use dolmen_tests::kvstore::{GetRangeRequest, KeyValue, TTransactionalKVSyncClient};
use dolmen_tests::{connect_buffered, memory, KvClient, KvExt, Standalone};

const VALUE_BYTES: usize = 100_000;

/// `getRange` from `begin` (excluded when `after`) to the end of `prefix`, with no limit.
fn page(kv: &mut KvClient, prefix: &[u8], begin: &[u8], after: bool) -> (Vec<KeyValue>, bool) {
    let mut end = prefix.to_vec();
    end.push(0xFF);
    let r = kv
        .get_range(GetRangeRequest {
            begin_key: Some(begin.to_vec()),
            end_key: Some(end),
            begin_offset: None,
            begin_or_equal: Some(!after),
            end_offset: None,
            end_or_equal: None,
            limit: Some(0),
            column_family: None,
        })
        .expect("getRange answers");
    assert!(r.success, "{:?}", r.error);
    (r.key_values, r.has_more)
}

/// Writes `n` values of [`VALUE_BYTES`] under `prefix`.
fn fill(kv: &mut KvClient, prefix: &[u8], n: u32) {
    for i in 0..n {
        let key = [prefix, &i.to_be_bytes()].concat();
        kv.must_set(&key, &vec![b'v'; VALUE_BYTES]);
    }
}

/// Reads the whole of `prefix` page by page; returns the keys and each page's size.
fn read_all(kv: &mut KvClient, prefix: &[u8]) -> (Vec<Vec<u8>>, Vec<usize>) {
    let (mut keys, mut pages) = (Vec::new(), Vec::new());
    let (mut begin, mut after) = (prefix.to_vec(), false);
    for _ in 0..1000 {
        let (items, more) = page(kv, prefix, &begin, after);
        pages.push(items.len());
        if let Some(last) = items.last() {
            begin = last.key.clone();
            after = true;
        }
        keys.extend(items.into_iter().map(|kv| kv.key));
        if !more {
            return (keys, pages);
        }
    }
    panic!("more than 1000 pages: {pages:?}");
}

#[test]
fn a_range_answer_stops_at_its_byte_budget_and_reading_on_returns_every_key_once() {
    let node = Standalone::builder()
        .set("server", "max_range_bytes", 1_000_000)
        .start();
    let mut kv = connect_buffered(node.thrift_endpoint());
    fill(&mut kv, b"budget/", 30);
    let (first, more) = page(&mut kv, b"budget/", b"budget/", false);
    let bytes: usize = first.iter().map(|p| p.key.len() + p.value.len()).sum();
    assert!(more, "30 values of 100 kB do not fit 1 MB");
    assert!(bytes <= 1_000_000, "{bytes} bytes in one answer");
    assert_eq!(first.len(), 9, "9 pairs of 100,011 bytes fit 1,000,000");
    let (keys, pages) = read_all(&mut kv, b"budget/");
    let expected: Vec<Vec<u8>> = (0..30u32)
        .map(|i| [b"budget/".as_slice(), &i.to_be_bytes()].concat())
        .collect();
    assert_eq!(keys, expected, "every key once, in order");
    println!("30 x 100 kB read in pages of {pages:?} (budget 1 MB)");
    // One pair larger than the budget still goes in: progress is always made.
    let node = Standalone::builder()
        .set("server", "max_range_bytes", 1_000)
        .start();
    let mut kv = connect_buffered(node.thrift_endpoint());
    fill(&mut kv, b"big/", 3);
    let (keys, pages) = read_all(&mut kv, b"big/");
    assert_eq!((keys.len(), pages), (3, vec![1, 1, 1]));
}

#[test]
fn the_default_budget_bounds_a_read_with_no_limit() {
    let node = Standalone::start();
    let mut kv = connect_buffered(node.thrift_endpoint());
    fill(&mut kv, b"default/", 100);
    let (first, more) = page(&mut kv, b"default/", b"default/", false);
    let bytes: usize = first.iter().map(|p| p.key.len() + p.value.len()).sum();
    println!(
        "10 MB under a prefix, no limit: {} pairs, {bytes} bytes, has_more {more}",
        first.len()
    );
    assert!(more && bytes <= 8 * 1024 * 1024, "{bytes} bytes");
    let (keys, _) = read_all(&mut kv, b"default/");
    assert_eq!(keys.len(), 100);
}

#[test]
fn a_commit_has_an_operation_count_limit() {
    use dolmen_tests::client::op_delete;
    let node = Standalone::start();
    let mut kv = connect_buffered(node.thrift_endpoint());
    let rv = kv.read_version();
    let ops = (0..100_001u32)
        .map(|i| op_delete(&i.to_be_bytes()))
        .collect();
    let r = kv.commit(rv, ops, vec![]);
    let error = r.error.unwrap_or_default();
    assert!(!r.success, "100,001 operations are refused");
    assert_eq!(r.error_code.as_deref(), Some("INVALID_ARGUMENT"), "{error}");
    assert!(
        error.contains("operations") && error.contains("100000"),
        "the error names the field and the limit: {error}"
    );
    let ops = (0..100_000u32)
        .map(|i| op_delete(&i.to_be_bytes()))
        .collect();
    kv.must_commit(rv, ops, vec![]);
}

#[test]
fn a_read_with_no_limit_over_a_gigabyte_keeps_the_node_peak_memory_bounded() {
    use dolmen_tests::client::op_set;
    const MIB: u64 = 1024 * 1024;
    // A small block cache, so what the reads bring in is not mistaken for the answer's memory.
    let node = Standalone::builder()
        .set("rocksdb", "block_cache_size_mb", 16)
        .start();
    let mut kv = connect_buffered(node.thrift_endpoint());
    let value = vec![b'g'; VALUE_BYTES];
    let (commits, per_commit) = (110u32, 98u32);
    for c in 0..commits {
        let ops = (0..per_commit)
            .map(|i| {
                op_set(
                    &[b"gb/".as_slice(), &(c * per_commit + i).to_be_bytes()].concat(),
                    &value,
                )
            })
            .collect();
        let rv = kv.read_version();
        kv.must_commit(rv, ops, vec![]);
    }
    let total = u64::from(commits * per_commit) * VALUE_BYTES as u64;
    assert!(total > 1024 * MIB, "{total} bytes loaded");
    memory::reset_peak_rss(node.pid());
    let before = memory::peak_rss(node.pid());
    let (first, more) = page(&mut kv, b"gb/", b"gb/", false);
    let bytes: usize = first.iter().map(|p| p.key.len() + p.value.len()).sum();
    assert!(
        more && bytes <= 8 * 1024 * 1024,
        "one answer of {bytes} bytes"
    );
    let (keys, pages) = read_all(&mut kv, b"gb/");
    assert_eq!(keys.len() as u64, u64::from(commits * per_commit));
    let after = memory::peak_rss(node.pid());
    let growth = after.saturating_sub(before);
    println!(
        "{} MiB under a prefix read with no limit in {} answers: node peak RSS {} -> {} MiB \
         (+{} MiB)",
        total / MIB,
        pages.len(),
        before / MIB,
        after / MIB,
        growth / MIB
    );
    assert!(
        growth < 200 * MIB,
        "reading a gigabyte with no limit raised the node's peak RSS by {} MiB",
        growth / MIB
    );
}
