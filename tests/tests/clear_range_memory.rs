//! Bounded work per request (issue 18): a `clear_range` over the whole keyspace does not hold
//! every key of the range in memory. A standalone node is loaded with 2.5 million 16-byte keys;
//! one `atomicCommit` with a `clear_range` operation over all of them must raise the node's peak
//! resident memory (`VmHWM`) by less than [`BOUND_MIB`], and leave nothing behind (`getRange`
//! finds no key, `getDatabaseStats` counts none).
//!
//! The engine streams the tombstones in chunks (docs/engine-format.md, Clearing a range); the
//! code it replaced, which collected every live key of the range into maps before one write,
//! raised the peak by well over a gigabyte here (docs/SECURITY.md §3 has both figures).
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test clear_range_memory`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use dolmen_tests::client::{op, op_set};
use dolmen_tests::kvstore::{
    AtomicCommitRequest, GetDatabaseStatsRequest, GetRangeRequest, TTransactionalKVSyncClient,
    TransactionalKVSyncClient,
};
use dolmen_tests::{connect_buffered, memory, KvClient, KvExt, Standalone};
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport, TIoChannel, TTcpChannel};

const MIB: u64 = 1024 * 1024;
/// The most the clear may raise the node's peak resident memory by.
const BOUND_MIB: u64 = 150;
/// Keys loaded: materializing them (maps of keys, an overlay entry and a tombstone each) is
/// hundreds of bytes a key, far beyond the bound.
const KEYS: u32 = 2_500_000;
/// Operations per load commit (the commit operation limit is 100,000).
const PER_COMMIT: u32 = 100_000;

/// The `i`-th key: 16 bytes.
fn key(i: u32) -> Vec<u8> {
    format!("k{i:015}").into_bytes()
}

/// A stock buffered client whose socket waits [`PATIENT`] for an answer: one commit that
/// clears millions of keys takes longer than the harness's 10 s in a debug build.
fn connect_patient(addr: SocketAddr) -> KvClient {
    let stream = TcpStream::connect_timeout(&addr, PATIENT).expect("connect to the node");
    stream
        .set_read_timeout(Some(PATIENT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(PATIENT))
        .expect("write timeout");
    let (r, w) = TTcpChannel::with_stream(stream).split().expect("split");
    let r: Box<dyn Read + Send> = Box::new(TBufferedReadTransport::new(r));
    let w: Box<dyn Write + Send> = Box::new(TBufferedWriteTransport::new(w));
    TransactionalKVSyncClient::new(
        TBinaryInputProtocol::new(r, true),
        TBinaryOutputProtocol::new(w, true),
    )
}

/// How long [`connect_patient`]'s socket waits (a bound on a hung node, not a timing claim).
const PATIENT: Duration = Duration::from_secs(600);

fn load(kv: &mut KvClient) {
    for c in 0..KEYS / PER_COMMIT {
        let ops = (c * PER_COMMIT..(c + 1) * PER_COMMIT)
            .map(|i| op_set(&key(i), b"v"))
            .collect();
        let rv = kv.read_version();
        kv.must_commit(rv, ops, vec![]);
    }
}

fn total_keys(kv: &mut KvClient) -> i64 {
    let r = kv
        .get_database_stats(GetDatabaseStatsRequest {
            auth_token: None,
            include_detailed_stats: None,
        })
        .expect("getDatabaseStats answers");
    assert!(r.success, "{r:?}");
    r.database_stats.expect("stats on success").total_keys
}

fn first_keys(kv: &mut KvClient) -> Vec<Vec<u8>> {
    let r = kv
        .get_range(GetRangeRequest {
            begin_key: Some(vec![0x00]),
            end_key: Some(vec![0xFF]),
            begin_offset: None,
            begin_or_equal: Some(true),
            end_offset: None,
            end_or_equal: None,
            limit: Some(10),
            column_family: None,
        })
        .expect("getRange answers");
    assert!(r.success, "{:?}", r.error);
    r.key_values.into_iter().map(|p| p.key).collect()
}

#[test]
fn a_full_keyspace_clear_range_keeps_the_node_peak_memory_bounded() {
    // A small block cache and small memtables, so RocksDB's own (bounded) memory does not hide
    // what the clear holds.
    let node = Standalone::builder()
        .set("rocksdb", "block_cache_size_mb", 16)
        .set("rocksdb", "write_buffer_size_mb", 16)
        .start();
    let mut kv = connect_patient(node.thrift_endpoint());
    let started = std::time::Instant::now();
    load(&mut kv);
    let loaded_in = started.elapsed();
    println!("{KEYS} keys loaded in {loaded_in:?}");
    assert_eq!(total_keys(&mut kv), i64::from(KEYS));
    assert_eq!(first_keys(&mut kv).len(), 10);

    memory::reset_peak_rss(node.pid());
    let before = memory::peak_rss(node.pid());
    let rv = kv.read_version();
    let clear = op("clear_range", &[0x00], Some(&[0xFF, 0xFF]), None);
    let started = std::time::Instant::now();
    // The longest commit deadline WIRE allows: the code this test guards against took minutes
    // here in a debug build.
    let r = kv
        .atomic_commit(AtomicCommitRequest::new(rv, vec![clear], vec![], 300))
        .expect("atomicCommit answers");
    let cleared_in = started.elapsed();
    assert!(r.success, "{r:?}");
    let after = memory::peak_rss(node.pid());
    let growth = after.saturating_sub(before);
    println!(
        "{KEYS} keys of 16 bytes loaded in {loaded_in:?}; one clear_range over all of them in \
         {cleared_in:?}: node peak RSS {} -> {} MiB (+{} MiB, bound {BOUND_MIB} MiB)",
        before / MIB,
        after / MIB,
        growth / MIB
    );

    assert_eq!(
        first_keys(&mut kv),
        Vec::<Vec<u8>>::new(),
        "nothing is left"
    );
    assert_eq!(total_keys(&mut kv), 0, "the live-key count is exact");
    assert!(
        growth < BOUND_MIB * MIB,
        "a clear_range over {KEYS} keys raised the node's peak RSS by {} MiB",
        growth / MIB
    );
    // The node still writes and reads after the clear.
    let mut kv = connect_buffered(node.thrift_endpoint());
    kv.must_set(b"after", b"1");
    assert_eq!(first_keys(&mut kv), vec![b"after".to_vec()]);
}
