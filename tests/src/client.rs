//! Stock Apache Thrift clients (exactly what existing users run) and small call helpers.
//!
//! `connect_buffered` is `TBufferedTransport` + strict `TBinaryProtocol`, `connect_framed` is
//! `TFramedTransport` + strict `TBinaryProtocol`. Sockets time out after [`IO_TIMEOUT`] so a server
//! that hangs fails the test instead of blocking it forever.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::transport::{
    TBufferedReadTransport, TBufferedWriteTransport, TFramedReadTransport, TFramedWriteTransport,
    TIoChannel, TTcpChannel,
};

use crate::cluster::TestCluster;
use crate::kvstore::{
    AtomicCommitRequest, AtomicCommitResponse, DeleteKeyRequest, DeleteKeyResponse,
    GetRangeRequest, GetRangeResponse, GetReadVersionRequest, GetRequest, GetResponse, Operation,
    SetKeyRequest, SetKeyResponse, SnapshotReadRequest, SnapshotReadResponse,
    TTransactionalKVSyncClient, TransactionalKVSyncClient,
};

/// Read/write timeout of every test socket: a reply slower than this fails the test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The generated `TransactionalKV` client over either transport (boxed so both have one type).
pub type KvClient = TransactionalKVSyncClient<
    TBinaryInputProtocol<Box<dyn Read + Send>>,
    TBinaryOutputProtocol<Box<dyn Write + Send>>,
>;

/// Thrift transport a client uses; existing clients use both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Unframed: `TBufferedTransport` (what most existing clients send).
    Buffered,
    /// `TFramedTransport`: every message prefixed by its 4-byte big-endian length.
    Framed,
}

/// Which node of a [`TestCluster`] a suite talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The leader (the only node when standalone).
    Leader,
    /// A follower; requires a cluster with more than one node.
    Follower,
}

/// How a suite reaches the cluster: which node and which transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connector {
    /// Framing of every connection this connector opens.
    pub transport: Transport,
    /// Node every connection goes to.
    pub target: Target,
}

impl Connector {
    /// A connector for `transport` to `target`.
    pub fn new(transport: Transport, target: Target) -> Self {
        Self { transport, target }
    }

    /// True for [`Transport::Framed`]; raw-socket tests frame their bytes accordingly.
    pub fn framed(&self) -> bool {
        self.transport == Transport::Framed
    }

    /// Address of the node this connector targets in `cluster`.
    ///
    /// # Panics
    /// For [`Target::Follower`] on a cluster without followers.
    pub fn endpoint(&self, cluster: &dyn TestCluster) -> SocketAddr {
        match self.target {
            Target::Leader => cluster.leader_endpoint(),
            Target::Follower => cluster
                .follower_endpoint()
                .expect("Target::Follower needs a cluster with a follower"),
        }
    }

    /// A fresh client connected to [`Self::endpoint`].
    pub fn client(&self, cluster: &dyn TestCluster) -> KvClient {
        self.connect(self.endpoint(cluster))
    }

    /// A fresh client with this connector's transport, connected to `addr`.
    pub fn connect(&self, addr: SocketAddr) -> KvClient {
        match self.transport {
            Transport::Buffered => connect_buffered(addr),
            Transport::Framed => connect_framed(addr),
        }
    }
}

/// Opens a TCP connection with [`IO_TIMEOUT`] on connect, read and write, and `TCP_NODELAY`.
///
/// # Panics
/// When the connection cannot be made.
pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("expected to connect to dolmen at {addr}: {e}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set_write_timeout");
    stream.set_nodelay(true).expect("set_nodelay");
    stream
}

fn split(addr: SocketAddr) -> (impl Read + Send + 'static, impl Write + Send + 'static) {
    TTcpChannel::with_stream(tcp_connect(addr))
        .split()
        .unwrap_or_else(|e| panic!("expected to split the TCP channel to {addr}: {e}"))
}

/// A stock client over `TBufferedReadTransport`/`TBufferedWriteTransport` (unframed), strict
/// binary protocol.
///
/// # Panics
/// When the connection cannot be made.
pub fn connect_buffered(addr: SocketAddr) -> KvClient {
    let (r, w) = split(addr);
    let r: Box<dyn Read + Send> = Box::new(TBufferedReadTransport::new(r));
    let w: Box<dyn Write + Send> = Box::new(TBufferedWriteTransport::new(w));
    TransactionalKVSyncClient::new(
        TBinaryInputProtocol::new(r, true),
        TBinaryOutputProtocol::new(w, true),
    )
}

/// A stock client over `TFramedReadTransport`/`TFramedWriteTransport`, strict binary protocol.
///
/// # Panics
/// When the connection cannot be made.
pub fn connect_framed(addr: SocketAddr) -> KvClient {
    let (r, w) = split(addr);
    let r: Box<dyn Read + Send> = Box::new(TFramedReadTransport::new(r));
    let w: Box<dyn Write + Send> = Box::new(TFramedWriteTransport::new(w));
    TransactionalKVSyncClient::new(
        TBinaryInputProtocol::new(r, true),
        TBinaryOutputProtocol::new(w, true),
    )
}

/// An `Operation` of type `set`.
pub fn op_set(key: &[u8], value: &[u8]) -> Operation {
    Operation::new("set".to_owned(), key.to_vec(), Some(value.to_vec()), None)
}

/// An `Operation` of type `delete`.
pub fn op_delete(key: &[u8]) -> Operation {
    Operation::new("delete".to_owned(), key.to_vec(), None, None)
}

/// An `Operation` of any type, value and column family (for invalid-operation tests).
pub fn op(kind: &str, key: &[u8], value: Option<&[u8]>, column_family: Option<&str>) -> Operation {
    Operation::new(
        kind.to_owned(),
        key.to_vec(),
        value.map(<[u8]>::to_vec),
        column_family.map(str::to_owned),
    )
}

/// A `GetRangeRequest` with every optional field absent (the server applies WIRE §3 defaults).
/// The wall clock in microseconds since the Unix epoch: the unit of Dolmen's versions
/// (docs/sharding.md §3.1).
///
/// # Panics
/// When the clock is before 1970.
pub fn now_micros() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_micros()).expect("microseconds fit in i64")
}

/// Commits a `SET_VERSIONSTAMPED_VALUE` of ten zero bytes at `key` through `writer`, reads the
/// value back through `reader`, and returns the commit version and the version in the stamp's
/// first eight bytes (they must be equal).
///
/// # Panics
/// When the commit fails or the stamped value is not found or not ten bytes long.
pub fn versionstamped_commit(
    writer: &mut KvClient,
    reader: &mut KvClient,
    key: &[u8],
) -> (i64, i64) {
    let rv = writer.read_version();
    let committed = writer.must_commit(
        rv,
        vec![op("SET_VERSIONSTAMPED_VALUE", key, Some(&[0u8; 10]), None)],
        vec![],
    );
    let value = reader.get_value(key);
    assert!(
        value.found && value.value.len() == 10,
        "expected a 10-byte versionstamp at {key:?}, got {value:?}"
    );
    let stamped = i64::from_be_bytes(value.value[..8].try_into().expect("8 bytes"));
    (committed, stamped)
}

pub fn range_all_absent() -> GetRangeRequest {
    GetRangeRequest::new(
        None::<Vec<u8>>,
        None::<Vec<u8>>,
        None::<i32>,
        None::<bool>,
        None::<i32>,
        None::<bool>,
        None::<i32>,
        None::<String>,
    )
}

/// Call helpers that panic with the method name on a transport/protocol error (a test failure:
/// the server must always answer with a REPLY whose required fields are present), and, for the
/// `must_*` forms, on an unsuccessful answer.
pub trait KvExt {
    /// `getReadVersion`; asserts success, no error, version > 0.
    fn read_version(&mut self) -> i64;
    /// `get` in `column_family` (None = absent field).
    fn get_in(&mut self, key: &[u8], column_family: Option<&str>) -> GetResponse;
    /// `get` in the default column family (field absent).
    fn get_value(&mut self, key: &[u8]) -> GetResponse {
        self.get_in(key, None)
    }
    /// `setKey` in `column_family`.
    fn set_in(&mut self, key: &[u8], value: &[u8], column_family: Option<&str>) -> SetKeyResponse;
    /// `setKey` in the default column family; asserts success with no error.
    fn must_set(&mut self, key: &[u8], value: &[u8]);
    /// `deleteKey` in `column_family`.
    fn delete_in(&mut self, key: &[u8], column_family: Option<&str>) -> DeleteKeyResponse;
    /// `deleteKey` in the default column family; asserts success with no error.
    fn must_delete(&mut self, key: &[u8]);
    /// `atomicCommit` with the given read version, operations and read-conflict keys.
    fn commit(
        &mut self,
        read_version: i64,
        operations: Vec<Operation>,
        read_conflict_keys: Vec<Vec<u8>>,
    ) -> AtomicCommitResponse;
    /// `atomicCommit`; asserts success, no error fields, and returns `committed_version`.
    fn must_commit(
        &mut self,
        read_version: i64,
        operations: Vec<Operation>,
        read_conflict_keys: Vec<Vec<u8>>,
    ) -> i64;
    /// `snapshotRead` in `column_family`.
    fn snapshot_read_in(
        &mut self,
        key: &[u8],
        read_version: i64,
        column_family: Option<&str>,
    ) -> SnapshotReadResponse;
    /// `getRange`.
    fn range(&mut self, request: GetRangeRequest) -> GetRangeResponse;
}

fn transport_failure(method: &str, e: thrift::Error) -> ! {
    panic!("expected a REPLY with all required fields to {method}, got a client error: {e:?}")
}

impl<C: TTransactionalKVSyncClient> KvExt for C {
    #[track_caller]
    fn read_version(&mut self) -> i64 {
        let r = self
            .get_read_version(GetReadVersionRequest::new())
            .unwrap_or_else(|e| transport_failure("getReadVersion", e));
        assert!(r.success, "expected getReadVersion to succeed, got {r:?}");
        assert_eq!(
            r.error, None,
            "expected no error on a successful getReadVersion"
        );
        assert!(r.read_version > 0, "expected read_version > 0, got {r:?}");
        r.read_version
    }

    #[track_caller]
    fn get_in(&mut self, key: &[u8], column_family: Option<&str>) -> GetResponse {
        self.get(GetRequest::new(
            key.to_vec(),
            column_family.map(str::to_owned),
        ))
        .unwrap_or_else(|e| transport_failure("get", e))
    }

    #[track_caller]
    fn set_in(&mut self, key: &[u8], value: &[u8], column_family: Option<&str>) -> SetKeyResponse {
        self.set_key(SetKeyRequest::new(
            key.to_vec(),
            value.to_vec(),
            column_family.map(str::to_owned),
        ))
        .unwrap_or_else(|e| transport_failure("setKey", e))
    }

    #[track_caller]
    fn must_set(&mut self, key: &[u8], value: &[u8]) {
        let r = self.set_in(key, value, None);
        assert!(
            r.success && r.error.is_none() && r.error_code.is_none(),
            "expected setKey({}) to succeed with error/error_code absent, got {r:?}",
            crate::raw::show(key)
        );
    }

    #[track_caller]
    fn delete_in(&mut self, key: &[u8], column_family: Option<&str>) -> DeleteKeyResponse {
        self.delete_key(DeleteKeyRequest::new(
            key.to_vec(),
            column_family.map(str::to_owned),
        ))
        .unwrap_or_else(|e| transport_failure("deleteKey", e))
    }

    #[track_caller]
    fn must_delete(&mut self, key: &[u8]) {
        let r = self.delete_in(key, None);
        assert!(
            r.success && r.error.is_none() && r.error_code.is_none(),
            "expected deleteKey({}) to succeed with error/error_code absent, got {r:?}",
            crate::raw::show(key)
        );
    }

    #[track_caller]
    fn commit(
        &mut self,
        read_version: i64,
        operations: Vec<Operation>,
        read_conflict_keys: Vec<Vec<u8>>,
    ) -> AtomicCommitResponse {
        self.atomic_commit(AtomicCommitRequest::new(
            read_version,
            operations,
            read_conflict_keys,
            None,
        ))
        .unwrap_or_else(|e| transport_failure("atomicCommit", e))
    }

    #[track_caller]
    fn must_commit(
        &mut self,
        read_version: i64,
        operations: Vec<Operation>,
        read_conflict_keys: Vec<Vec<u8>>,
    ) -> i64 {
        let r = self.commit(read_version, operations, read_conflict_keys);
        assert!(
            r.success && r.error.is_none() && r.error_code.is_none(),
            "expected atomicCommit to succeed with error/error_code absent, got {r:?}"
        );
        r.committed_version
            .unwrap_or_else(|| panic!("expected committed_version on a successful commit: {r:?}"))
    }

    #[track_caller]
    fn snapshot_read_in(
        &mut self,
        key: &[u8],
        read_version: i64,
        column_family: Option<&str>,
    ) -> SnapshotReadResponse {
        self.snapshot_read(SnapshotReadRequest::new(
            key.to_vec(),
            read_version,
            column_family.map(str::to_owned),
        ))
        .unwrap_or_else(|e| transport_failure("snapshotRead", e))
    }

    #[track_caller]
    fn range(&mut self, request: GetRangeRequest) -> GetRangeResponse {
        self.get_range(request)
            .unwrap_or_else(|e| transport_failure("getRange", e))
    }
}
