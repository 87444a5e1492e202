//! [`Client`]: one node's `TransactionalKV` methods over volo-thrift (framed, strict binary,
//! pooled connections). The transaction layer ([`crate::Transaction`]) builds on it; the
//! terminal commands and the load tool use it directly.

use std::net::SocketAddr;
use std::time::Duration;

use dolmen_api::{gen, WireResponse};
use pilota::Bytes;

use crate::error::Error;

/// One write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write `value` at `key`.
    Set {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Delete `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// A client for one node.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    inner: gen::TransactionalKvClient,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addr", &self.addr).finish()
    }
}

/// A range read's answer: the pairs and whether more keys follow.
fn range_page(resp: gen::GetRangeResponse) -> (Vec<(Bytes, Bytes)>, bool) {
    (
        resp.key_values
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect(),
        resp.has_more,
    )
}

/// The greatest key a scan reaches: every key of at most 10,000 bytes (the key size limit)
/// sorts at or below it.
const SCAN_END: [u8; 10_000] = [0xFF; 10_000];

impl Client {
    /// A client for the node at `addr` (connections are opened lazily and pooled), framed.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Self::with_codec(
            addr,
            timeout,
            volo_thrift::codec::default::DefaultMakeCodec::framed(),
        )
    }

    /// A client for a server that may not speak the framed transport (plain strict binary
    /// over the socket, as stock `TBufferedTransport` clients send it); Dolmen accepts both.
    pub fn new_unframed(addr: SocketAddr, timeout: Duration) -> Self {
        Self::with_codec(
            addr,
            timeout,
            volo_thrift::codec::default::DefaultMakeCodec::buffered(),
        )
    }

    fn with_codec(
        addr: SocketAddr,
        timeout: Duration,
        codec: volo_thrift::codec::default::DefaultMakeCodec<
            impl volo_thrift::codec::default::MakeZeroCopyCodec + Sync + 'static,
        >,
    ) -> Self {
        let inner: gen::TransactionalKvClient = gen::TransactionalKvClientBuilder::new("dolmen")
            .address(addr)
            .make_codec(codec)
            .rpc_timeout(Some(timeout))
            .connect_timeout(Some(timeout))
            .build();
        Self { addr, inner }
    }

    /// One page of a scan of all of `cf`: at most `limit` keys after `after` (from the first
    /// key when `None`), and whether more follow. Uses only `getRange`'s basic fields (a begin
    /// key excluded, an end key included, a limit), so any `TransactionalKV` server answers
    /// it; a server that returns `after` itself again is tolerated.
    pub async fn scan_page(
        &self,
        cf: &str,
        after: Option<&[u8]>,
        limit: i32,
    ) -> Result<(Vec<(Bytes, Bytes)>, bool), Error> {
        let resp = self
            .inner
            .get_range(gen::GetRangeRequest {
                begin_key: Some(Bytes::copy_from_slice(after.unwrap_or_default())),
                begin_or_equal: Some(after.is_none()),
                end_key: Some(Bytes::from_static(&SCAN_END)),
                end_or_equal: Some(true),
                limit: Some(limit),
                column_family: Some(Bytes::copy_from_slice(cf.as_bytes())),
                ..Default::default()
            })
            .await;
        let (mut pairs, more) = self.answer(resp).map(range_page)?;
        if let (Some(after), Some((first, _))) = (after, pairs.first()) {
            if first.as_ref() == after {
                pairs.remove(0);
            }
        }
        Ok((pairs, more))
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn transport(&self, e: impl std::fmt::Display) -> Error {
        Error::Transport {
            addr: self.addr,
            message: e.to_string(),
        }
    }

    /// The response of a sent request: a transport failure, or the server's answer unpacked by
    /// [`WireResponse::into_result`] (a failed answer becomes [`Error::Server`]).
    fn answer<R: WireResponse>(&self, sent: Result<R, impl std::fmt::Display>) -> Result<R, Error> {
        Ok(sent.map_err(|e| self.transport(e))?.into_result()?)
    }

    /// The generated client, for methods this wrapper does not cover.
    pub fn raw(&self) -> &gen::TransactionalKvClient {
        &self.inner
    }

    /// The latest value of `key` in `cf` (`None` when absent).
    pub async fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Bytes>, Error> {
        let resp = self
            .inner
            .get(gen::GetRequest {
                key: Bytes::copy_from_slice(key),
                column_family: Some(Bytes::copy_from_slice(cf.as_bytes())),
            })
            .await;
        let resp = self.answer(resp)?;
        Ok(resp.found.then_some(resp.value))
    }

    /// Writes `value` at `key` in `cf`.
    pub async fn set(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), Error> {
        let resp = self
            .inner
            .set_key(gen::SetKeyRequest {
                key: Bytes::copy_from_slice(key),
                value: Bytes::copy_from_slice(value),
                column_family: Some(Bytes::copy_from_slice(cf.as_bytes())),
            })
            .await;
        self.answer(resp).map(drop)
    }

    /// Deletes `key` in `cf`.
    pub async fn delete(&self, cf: &str, key: &[u8]) -> Result<(), Error> {
        let resp = self
            .inner
            .delete_key(gen::DeleteKeyRequest {
                key: Bytes::copy_from_slice(key),
                column_family: Some(Bytes::copy_from_slice(cf.as_bytes())),
            })
            .await;
        self.answer(resp).map(drop)
    }

    /// Keys in `[begin, end)` of `cf`, at most `limit` (0 = unlimited); returns the pairs and
    /// whether more keys follow.
    pub async fn range(
        &self,
        cf: &str,
        begin: &[u8],
        end: &[u8],
        limit: i32,
    ) -> Result<(Vec<(Bytes, Bytes)>, bool), Error> {
        let resp = self
            .inner
            .get_range(gen::GetRangeRequest {
                begin_key: Some(Bytes::copy_from_slice(begin)),
                end_key: Some(Bytes::copy_from_slice(end)),
                limit: Some(limit),
                column_family: Some(Bytes::copy_from_slice(cf.as_bytes())),
                ..Default::default()
            })
            .await;
        self.answer(resp).map(range_page)
    }

    /// A linearizable read version.
    pub async fn read_version(&self) -> Result<i64, Error> {
        let resp = self
            .inner
            .get_read_version(gen::GetReadVersionRequest {})
            .await;
        Ok(self.answer(resp)?.read_version)
    }

    /// The value of `key` (default column family) as of `version`.
    pub async fn snapshot_get(&self, key: &[u8], version: i64) -> Result<Option<Bytes>, Error> {
        self.snapshot_read("default", key, version).await
    }

    /// Commits `ops` (default column family) atomically if none of `conflict_keys` was written
    /// after `read_version`; returns the commit version.
    pub async fn commit(
        &self,
        read_version: i64,
        ops: &[Op],
        conflict_keys: &[Vec<u8>],
    ) -> Result<i64, Error> {
        let operations = ops
            .iter()
            .map(|op| match op {
                Op::Set { key, value } => gen::Operation {
                    r#type: Bytes::from_static(b"set"),
                    key: Bytes::copy_from_slice(key),
                    value: Some(Bytes::copy_from_slice(value)),
                    column_family: None,
                },
                Op::Delete { key } => gen::Operation {
                    r#type: Bytes::from_static(b"delete"),
                    key: Bytes::copy_from_slice(key),
                    value: None,
                    column_family: None,
                },
            })
            .collect();
        let resp = self
            .inner
            .atomic_commit(gen::AtomicCommitRequest {
                read_version,
                operations,
                read_conflict_keys: conflict_keys
                    .iter()
                    .map(|k| Bytes::copy_from_slice(k))
                    .collect(),
                ..Default::default()
            })
            .await;
        Ok(self.answer(resp)?.committed_version.unwrap_or_default())
    }

    /// The value of `key` in `cf` as of `version` (`snapshotRead`).
    pub async fn snapshot_read(
        &self,
        cf: &str,
        key: &[u8],
        version: i64,
    ) -> Result<Option<Bytes>, Error> {
        let resp = self
            .inner
            .snapshot_read(gen::SnapshotReadRequest {
                key: Bytes::copy_from_slice(key),
                read_version: version,
                column_family: Some(Bytes::copy_from_slice(cf.as_bytes())),
            })
            .await;
        let resp = self.answer(resp)?;
        Ok(resp.found.then_some(resp.value))
    }

    /// Keys of `cf` in `[begin, end)` as of `version` (`snapshotGetRange`), after `begin` itself
    /// when `!begin_inclusive`; at most `limit` (> 0). Returns the pairs and whether more follow.
    pub async fn snapshot_range(
        &self,
        cf: &str,
        (begin, begin_inclusive): (&[u8], bool),
        end: &[u8],
        limit: i32,
        version: i64,
    ) -> Result<(Vec<(Bytes, Bytes)>, bool), Error> {
        let resp = self
            .inner
            .snapshot_get_range(gen::SnapshotGetRangeRequest {
                begin_key: Some(Bytes::copy_from_slice(begin)),
                end_key: Some(Bytes::copy_from_slice(end)),
                begin_or_equal: Some(begin_inclusive),
                read_version: version,
                limit: Some(limit),
                column_family: Some(Bytes::copy_from_slice(cf.as_bytes())),
                ..Default::default()
            })
            .await;
        self.answer(resp).map(range_page)
    }

    /// Sends one `atomicCommit` as built by the caller; a `success=false` answer becomes
    /// [`Error::Server`] with its code.
    pub async fn atomic_commit(
        &self,
        request: gen::AtomicCommitRequest,
    ) -> Result<gen::AtomicCommitResponse, Error> {
        let resp = self.inner.atomic_commit(request).await;
        self.answer(resp)
    }

    /// The node's view of the cluster (`getClusterHealth`): members, their client endpoints,
    /// health, and the leader.
    pub async fn cluster_health(&self) -> Result<gen::ClusterHealth, Error> {
        let resp = self
            .inner
            .get_cluster_health(gen::GetClusterHealthRequest::default())
            .await;
        let resp = self.answer(resp)?;
        resp.cluster_health.ok_or_else(|| {
            Error::server(
                None,
                "getClusterHealth succeeded without cluster_health".into(),
            )
        })
    }
}
