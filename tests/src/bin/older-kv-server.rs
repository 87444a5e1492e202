//! A stand-in for the older single-node `TransactionalKV` server, for `dolmen import`'s tests:
//! one in-memory ordered map per column family, no MVCC (every read sees the latest state),
//! the stock Apache Thrift runtime on the unframed transport, range reads by WIRE.md's
//! algorithm (`begin_key`, `begin_or_equal`, `begin_offset`, `end_key`, `end_or_equal`,
//! `limit`; `end_offset` is refused), and only the methods such a server is known to have:
//! `getReadVersion`, `get`, `setKey`, `deleteKey`, `atomicCommit` (no conflict check),
//! `getRange`, `ping`. Everything else is answered with a Thrift exception.
//!
//! Usage: `older-kv-server` (an ephemeral loopback port); prints `older-kv-server ready: ADDR`
//! on stdout, then serves until killed.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use dolmen_tests::kvstore::*;
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::server::TProcessor;
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport, TIoChannel, TTcpChannel};
use thrift::{ApplicationError, ApplicationErrorKind};

/// `(column family, key) → value`.
type Map = BTreeMap<(String, Vec<u8>), Vec<u8>>;

#[derive(Default)]
struct Store {
    data: Mutex<Map>,
    version: AtomicI64,
}

fn cf(name: Option<String>) -> String {
    name.unwrap_or_else(|| "default".to_owned())
}

fn unsupported<T>(method: &str) -> thrift::Result<T> {
    Err(thrift::Error::Application(ApplicationError::new(
        ApplicationErrorKind::UnknownMethod,
        format!("{method} is not supported by this server"),
    )))
}

impl Store {
    fn bump(&self) -> i64 {
        self.version.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        self.data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TransactionalKVSyncHandler for Store {
    fn handle_get_read_version(
        &self,
        _: GetReadVersionRequest,
    ) -> thrift::Result<GetReadVersionResponse> {
        Ok(GetReadVersionResponse::new(
            self.version.load(Ordering::SeqCst).max(1),
            true,
            None,
        ))
    }

    fn handle_get(&self, request: GetRequest) -> thrift::Result<GetResponse> {
        let found = self
            .lock()
            .get(&(cf(request.column_family), request.key))
            .cloned();
        Ok(GetResponse::new(
            found.clone().unwrap_or_default(),
            found.is_some(),
            None,
        ))
    }

    fn handle_set_key(&self, request: SetKeyRequest) -> thrift::Result<SetKeyResponse> {
        self.lock()
            .insert((cf(request.column_family), request.key), request.value);
        self.bump();
        Ok(SetKeyResponse::new(true, None, None))
    }

    fn handle_delete_key(&self, request: DeleteKeyRequest) -> thrift::Result<DeleteKeyResponse> {
        self.lock()
            .remove(&(cf(request.column_family), request.key));
        self.bump();
        Ok(DeleteKeyResponse::new(true, None, None))
    }

    fn handle_atomic_commit(
        &self,
        request: AtomicCommitRequest,
    ) -> thrift::Result<AtomicCommitResponse> {
        let mut data = self.lock();
        for op in request.operations {
            let key = (cf(op.column_family), op.key);
            match (op.type_.as_str(), op.value) {
                ("set", Some(value)) => {
                    data.insert(key, value);
                }
                ("delete", _) => {
                    data.remove(&key);
                }
                (other, _) => {
                    return Ok(AtomicCommitResponse::new(
                        false,
                        format!("operation {other:?} is not supported"),
                        "INVALID_OPERATION".to_owned(),
                        None,
                    ))
                }
            }
        }
        Ok(AtomicCommitResponse::new(true, None, None, self.bump()))
    }

    fn handle_get_range(&self, request: GetRangeRequest) -> thrift::Result<GetRangeResponse> {
        if request.end_offset.unwrap_or(0) != 0 {
            return Ok(GetRangeResponse::new(
                Vec::new(),
                false,
                "end_offset is not supported".to_owned(),
                false,
            ));
        }
        let cf = cf(request.column_family);
        let begin = request.begin_key.unwrap_or_default();
        let end = request.end_key.unwrap_or_else(|| vec![0xFF]);
        let begin_or_equal = request.begin_or_equal.unwrap_or(true);
        let end_or_equal = request.end_or_equal.unwrap_or(false);
        let skip = request.begin_offset.unwrap_or(0).max(0) as usize;
        let limit = match request.limit.unwrap_or(1000) {
            n if n <= 0 => usize::MAX,
            n => n as usize,
        };
        let data = self.lock();
        let mut passing = data
            .range((cf.clone(), begin.clone())..)
            .take_while(|((c, _), _)| *c == cf)
            .map(|((_, k), v)| (k, v))
            .filter(|(k, _)| begin_or_equal || **k != begin)
            .take_while(|(k, _)| **k < end || (end_or_equal && **k == end))
            .skip(skip);
        let page: Vec<KeyValue> = passing
            .by_ref()
            .take(limit)
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        let has_more = page.len() == limit && passing.next().is_some();
        Ok(GetRangeResponse::new(page, true, None, has_more))
    }

    fn handle_ping(&self, request: PingRequest) -> thrift::Result<PingResponse> {
        Ok(PingResponse::new(
            request.message.unwrap_or_default(),
            request.timestamp.unwrap_or_default(),
            0,
        ))
    }

    fn handle_snapshot_read(&self, _: SnapshotReadRequest) -> thrift::Result<SnapshotReadResponse> {
        unsupported("snapshotRead")
    }
    fn handle_snapshot_get(&self, _: SnapshotReadRequest) -> thrift::Result<SnapshotReadResponse> {
        unsupported("snapshotGet")
    }
    fn handle_snapshot_get_range(
        &self,
        _: SnapshotGetRangeRequest,
    ) -> thrift::Result<GetRangeResponse> {
        unsupported("snapshotGetRange")
    }
    fn handle_add_read_conflict(
        &self,
        _: AddReadConflictRequest,
    ) -> thrift::Result<AddReadConflictResponse> {
        unsupported("addReadConflict")
    }
    fn handle_add_read_conflict_range(
        &self,
        _: AddReadConflictRangeRequest,
    ) -> thrift::Result<AddReadConflictRangeResponse> {
        unsupported("addReadConflictRange")
    }
    fn handle_set_read_version(
        &self,
        _: SetReadVersionRequest,
    ) -> thrift::Result<SetReadVersionResponse> {
        unsupported("setReadVersion")
    }
    fn handle_get_committed_version(
        &self,
        _: GetCommittedVersionRequest,
    ) -> thrift::Result<GetCommittedVersionResponse> {
        unsupported("getCommittedVersion")
    }
    fn handle_set_versionstamped_key(
        &self,
        _: SetVersionstampedKeyRequest,
    ) -> thrift::Result<SetVersionstampedKeyResponse> {
        unsupported("setVersionstampedKey")
    }
    fn handle_set_versionstamped_value(
        &self,
        _: SetVersionstampedValueRequest,
    ) -> thrift::Result<SetVersionstampedValueResponse> {
        unsupported("setVersionstampedValue")
    }
    fn handle_set_fault_injection(
        &self,
        _: FaultInjectionRequest,
    ) -> thrift::Result<FaultInjectionResponse> {
        unsupported("setFaultInjection")
    }
    fn handle_get_cluster_health(
        &self,
        _: GetClusterHealthRequest,
    ) -> thrift::Result<GetClusterHealthResponse> {
        unsupported("getClusterHealth")
    }
    fn handle_get_database_stats(
        &self,
        _: GetDatabaseStatsRequest,
    ) -> thrift::Result<GetDatabaseStatsResponse> {
        unsupported("getDatabaseStats")
    }
    fn handle_get_node_info(&self, _: GetNodeInfoRequest) -> thrift::Result<GetNodeInfoResponse> {
        unsupported("getNodeInfo")
    }
}

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("older-kv-server ready: {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let processor = Arc::new(TransactionalKVSyncProcessor::new(Store::default()));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let processor = processor.clone();
        std::thread::spawn(move || {
            let Ok((read, write)) = TTcpChannel::with_stream(stream).split() else {
                return;
            };
            let mut input = TBinaryInputProtocol::new(TBufferedReadTransport::new(read), true);
            let mut output = TBinaryOutputProtocol::new(TBufferedWriteTransport::new(write), true);
            // One connection until the client closes it (or sends garbage).
            while processor.process(&mut input, &mut output).is_ok() {}
        });
    }
    Ok(())
}
