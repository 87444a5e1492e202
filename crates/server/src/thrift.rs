//! The Thrift handler: converts `TransactionalKV` requests to service calls and results back
//! (docs/WIRE.md §2–§4). It applies the §3 defaults, validates field by field, always fills required
//! response fields, and omits `error`/`error_code` on success. No business logic lives here.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dolmen_api::gen::{self, TransactionalKv};
use dolmen_api::{SafeCodecLimits, ServeError, WireError, WireResponse};
use dolmen_engine::range::MAX_END_OFFSET;
use dolmen_engine::{
    check_key, IdempotencyToken, KeyRange, Mutation, RangePage, RangeSpec, Transaction,
    MAX_KEY_BYTES,
};
use dolmen_raft::{ClusterView, MemberView, NodeId, Role};
use pilota::{Bytes, FastStr};
use volo_thrift::ServerError;

use crate::error::ServiceError;
use crate::faults::Target;
use crate::request_metrics::Method;
use crate::service::{commit_timeout, wire_version, Service};

/// Serves the Thrift API on `incoming` (the plaintext listener, and the TLS listener's
/// connections) until its shutdown resolves; `before_drain` runs while it still serves,
/// before in-flight requests are drained (see [`dolmen_api::serve`]). `auth_token` is
/// `[server] thrift_auth_token`.
pub async fn serve(
    incoming: dolmen_api::ShutdownIncoming,
    service: Arc<Service>,
    auth_token: Option<String>,
    limits: SafeCodecLimits,
    max_connections: usize,
    before_drain: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let connections = service.stats().connections.clone();
    dolmen_api::serve(
        incoming,
        Handler {
            service,
            auth_token,
        },
        limits,
        max_connections,
        connections,
        before_drain,
    )
    .await
}

/// Implements the generated `TransactionalKv` trait over the service core.
#[derive(Clone)]
pub struct Handler {
    service: Arc<Service>,
    /// `[server] thrift_auth_token`: what requests with an `auth_token` field must carry.
    auth_token: Option<String>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("auth_token", &self.auth_token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Handler {
    /// The `auth_token` check of the requests that carry one (docs/WIRE.md §2): passes when
    /// the node sets no `thrift_auth_token`.
    fn authorize(&self, token: Option<&Bytes>) -> Result<(), ServiceError> {
        let Some(expected) = &self.auth_token else {
            return Ok(());
        };
        match token {
            Some(t) if crate::admin::auth::same(t, expected.as_bytes()) => Ok(()),
            Some(_) => Err(ServiceError::argument(
                "auth_token",
                "does not match the node's [server] thrift_auth_token",
            )),
            None => Err(ServiceError::argument(
                "auth_token",
                "required: the node sets [server] thrift_auth_token",
            )),
        }
    }
}

type Reply<T> = Result<T, ServerError>;

/// The column family named by an optional wire field (absent → "default").
fn column_family(field: &str, raw: Option<&Bytes>) -> Result<String, ServiceError> {
    match raw {
        None => Ok("default".to_owned()),
        Some(bytes) => String::from_utf8(bytes.to_vec())
            .map_err(|_| ServiceError::argument(field, "column family name is not valid UTF-8")),
    }
}

fn text(field: &str, raw: &Bytes) -> Result<String, ServiceError> {
    String::from_utf8(raw.to_vec())
        .map_err(|_| ServiceError::argument(field, "must be valid UTF-8 text"))
}

/// The response for `result`: the success built by the caller, or the error folded in by
/// [`WireResponse::failure`] (docs/WIRE.md §2: `error`/`error_code` only on failure).
fn answer<R: WireResponse>(result: Result<R, ServiceError>) -> R {
    result.unwrap_or_else(|e| R::failure(e.into()))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The WIRE §3 range fields of a `getRange` or `snapshotGetRange` request (the two share field
/// names, not a type).
macro_rules! range_fields {
    ($req:expr) => {
        RangeFields {
            begin_key: $req.begin_key.as_ref(),
            end_key: $req.end_key.as_ref(),
            begin_offset: $req.begin_offset,
            begin_or_equal: $req.begin_or_equal,
            end_offset: $req.end_offset,
            end_or_equal: $req.end_or_equal,
            limit: $req.limit,
        }
    };
}

/// WIRE §3 range fields as sent; `spec()` applies the defaults.
struct RangeFields<'a> {
    begin_key: Option<&'a Bytes>,
    end_key: Option<&'a Bytes>,
    begin_offset: Option<i32>,
    begin_or_equal: Option<bool>,
    end_offset: Option<i32>,
    end_or_equal: Option<bool>,
    limit: Option<i32>,
}

impl RangeFields<'_> {
    /// The request's walk, its answer bounded to `max_bytes` of keys and values.
    fn spec(&self, max_bytes: Option<usize>) -> Result<RangeSpec, ServiceError> {
        let bound = |field: &str, raw: Option<&Bytes>, default: &[u8]| {
            let key = raw.map_or_else(|| default.to_vec(), |b| b.to_vec());
            if key.len() > MAX_KEY_BYTES + 1 {
                return Err(ServiceError::argument(
                    field,
                    format!(
                        "length {} exceeds the limit of {} bytes",
                        key.len(),
                        MAX_KEY_BYTES + 1
                    ),
                ));
            }
            Ok(key)
        };
        let end_offset = i64::from(self.end_offset.unwrap_or(0));
        if end_offset.abs() > MAX_END_OFFSET {
            return Err(ServiceError::argument(
                "end_offset",
                format!("must be within ±{MAX_END_OFFSET}, got {end_offset}"),
            ));
        }
        Ok(RangeSpec {
            begin_key: bound("begin_key", self.begin_key, b"")?,
            end_key: bound("end_key", self.end_key, b"\xFF")?,
            begin_or_equal: self.begin_or_equal.unwrap_or(true),
            end_or_equal: self.end_or_equal.unwrap_or(false),
            begin_offset: usize::try_from(self.begin_offset.unwrap_or(0).max(0)).unwrap_or(0),
            end_offset,
            // Absent → 1000; zero or negative → unlimited.
            limit: match self.limit {
                None => Some(1000),
                Some(n) if n <= 0 => None,
                Some(n) => usize::try_from(n).ok(),
            },
            max_bytes,
        })
    }
}

fn range_response(page: RangePage) -> gen::GetRangeResponse {
    gen::GetRangeResponse {
        key_values: page
            .items
            .into_iter()
            .map(|(key, value)| gen::KeyValue {
                key: Bytes::from(key),
                value: Bytes::from(value),
            })
            .collect(),
        success: true,
        error: None,
        has_more: page.has_more,
    }
}

/// A point read's answer (`GetResponse` or `SnapshotReadResponse`, which share their fields).
macro_rules! read_response {
    ($ty:ident, $result:expr) => {
        answer($result.map(|value| gen::$ty {
            found: value.is_some(),
            value: value.map_or_else(Bytes::new, Bytes::from),
            error: None,
        }))
    };
}

/// Converts one wire operation (WIRE §3 atomicCommit validation rules).
fn mutation(index: usize, op: &gen::Operation) -> Result<Mutation, ServiceError> {
    let cf = column_family(
        &format!("operations[{index}].column_family"),
        op.column_family.as_ref(),
    )?;
    let kind = String::from_utf8_lossy(&op.r#type);
    let key = op.key.to_vec();
    let value = |what: &str| {
        op.value
            .as_ref()
            .map(|v| v.to_vec())
            .ok_or_else(|| ServiceError::operation(index, format!("'{kind}' needs a {what}")))
    };
    Ok(match kind.as_ref() {
        "set" => Mutation::Set {
            cf,
            key,
            value: value("value")?,
        },
        "delete" => Mutation::Delete { cf, key },
        "SET_VERSIONSTAMPED_KEY" => Mutation::SetVersionstampedKey {
            cf,
            key,
            value: value("value")?,
        },
        "SET_VERSIONSTAMPED_VALUE" => Mutation::SetVersionstampedValue {
            cf,
            key,
            value: value("value buffer")?,
        },
        // Dolmen extension: delete every key in [key, value).
        "clear_range" => Mutation::ClearRange {
            cf,
            begin: key,
            end: value("value (the exclusive end key)")?,
        },
        other => {
            return Err(ServiceError::operation(
                index,
                format!(
                    "unknown operation type '{other}' (expected set, delete, \
                     SET_VERSIONSTAMPED_KEY, SET_VERSIONSTAMPED_VALUE or clear_range)"
                ),
            ))
        }
    })
}

fn transaction(req: &gen::AtomicCommitRequest) -> Result<Transaction, ServiceError> {
    let read_version = wire_version("read_version", req.read_version)?;
    let mutations = req
        .operations
        .iter()
        .enumerate()
        .map(|(i, op)| mutation(i, op))
        .collect::<Result<Vec<_>, _>>()?;
    let mut read_conflicts = Vec::with_capacity(req.read_conflict_keys.len());
    for (i, key) in req.read_conflict_keys.iter().enumerate() {
        check_key(&format!("read_conflict_keys[{i}]"), key).map_err(ServiceError::from)?;
        read_conflicts.push(KeyRange::single("default", key));
    }
    for (i, range) in req.read_conflict_ranges.iter().flatten().enumerate() {
        read_conflicts.push(KeyRange {
            cf: column_family(
                &format!("read_conflict_ranges[{i}].column_family"),
                range.column_family.as_ref(),
            )?,
            begin: range.begin_key.to_vec(),
            end: range.end_key.to_vec(),
        });
    }
    let idempotency = match (&req.client_id, req.client_sequence) {
        (None, None) => None,
        (Some(id), Some(seq)) => Some(IdempotencyToken {
            client_id: id.to_vec(),
            sequence: u64::try_from(seq).map_err(|_| {
                ServiceError::argument("client_sequence", format!("must be ≥ 0, got {seq}"))
            })?,
        }),
        _ => {
            return Err(ServiceError::argument(
                "client_id",
                "client_id and client_sequence must be sent together",
            ))
        }
    };
    Ok(Transaction {
        read_version: Some(read_version),
        mutations,
        read_conflicts,
        idempotency,
        stamp: None,
    })
}

fn node_status(member: &MemberView, cluster: &ClusterView, uptime: Duration) -> gen::NodeStatus {
    gen::NodeStatus {
        node_id: i32::try_from(member.id).unwrap_or(i32::MAX),
        endpoint: FastStr::from(member.client_addr.clone()),
        status: FastStr::from_static_str(member.health.as_str()),
        is_leader: member.role == Role::Leader,
        last_seen_timestamp: member.last_seen_unix_ms,
        term: to_i64(cluster.term),
        uptime_seconds: (member.id == cluster.this_node).then(|| to_i64(uptime.as_secs())),
    }
}

/// The answer of a method Dolmen keeps for compatibility but does not support.
fn legacy<R: WireResponse>(method: &str, how: &str) -> R {
    R::failure(WireError::message(format!(
        "{method} is not supported: in Dolmen's transaction model {how}"
    )))
}

impl Handler {
    /// Runs one request of `method`, recording its duration and, when it failed, its code.
    async fn timed<T: WireResponse>(
        &self,
        method: Method,
        request: impl Future<Output = T>,
    ) -> Reply<T> {
        let start = Instant::now();
        let out = request.await;
        let elapsed = start.elapsed();
        let stats = self.service.stats();
        stats.observe(elapsed);
        stats.methods.observe(method, elapsed, out.failure_code());
        Ok(out)
    }

    /// `snapshotRead` and its alias `snapshotGet`, recorded as `method`.
    async fn snapshot_read_as(
        &self,
        method: Method,
        req: gen::SnapshotReadRequest,
    ) -> Reply<gen::SnapshotReadResponse> {
        self.timed(method, async {
            let result = async {
                let cf = column_family("column_family", req.column_family.as_ref())?;
                let version = wire_version("read_version", req.read_version)?;
                self.service.snapshot_get(&cf, &req.key, version).await
            }
            .await;
            read_response!(SnapshotReadResponse, result)
        })
        .await
    }

    fn member(&self, cluster: &ClusterView, id: NodeId) -> Option<gen::NodeStatus> {
        cluster
            .members
            .iter()
            .find(|m| m.id == id)
            .map(|m| node_status(m, cluster, self.service.uptime()))
    }
}

impl TransactionalKv for Handler {
    async fn get_read_version(
        &self,
        _req: gen::GetReadVersionRequest,
    ) -> Reply<gen::GetReadVersionResponse> {
        self.timed(Method::GetReadVersion, async {
            answer(
                self.service
                    .read_version()
                    .await
                    .map(|v| gen::GetReadVersionResponse {
                        read_version: to_i64(v),
                        success: true,
                        error: None,
                    }),
            )
        })
        .await
    }

    async fn snapshot_read(
        &self,
        req: gen::SnapshotReadRequest,
    ) -> Reply<gen::SnapshotReadResponse> {
        self.snapshot_read_as(Method::SnapshotRead, req).await
    }

    async fn atomic_commit(
        &self,
        req: gen::AtomicCommitRequest,
    ) -> Reply<gen::AtomicCommitResponse> {
        let want_versionstamp = req.want_versionstamp.unwrap_or(false);
        self.timed(Method::AtomicCommit, async {
            let result = async {
                let timeout = commit_timeout(req.timeout_seconds)?;
                let tx = transaction(&req)?;
                self.service.commit(tx, timeout).await
            }
            .await;
            answer(result.map(|version| {
                gen::AtomicCommitResponse {
                    success: true,
                    error: None,
                    error_code: None,
                    committed_version: Some(to_i64(version)),
                    versionstamp: want_versionstamp
                        .then(|| Bytes::copy_from_slice(&dolmen_engine::versionstamp(version, 0))),
                    leader_hint: None,
                }
            }))
        })
        .await
    }

    async fn get(&self, req: gen::GetRequest) -> Reply<gen::GetResponse> {
        self.timed(Method::Get, async {
            let result = async {
                let cf = column_family("column_family", req.column_family.as_ref())?;
                self.service.get(&cf, &req.key).await
            }
            .await;
            read_response!(GetResponse, result)
        })
        .await
    }

    async fn set_key(&self, req: gen::SetKeyRequest) -> Reply<gen::SetKeyResponse> {
        self.timed(Method::SetKey, async {
            let result = async {
                let cf = column_family("column_family", req.column_family.as_ref())?;
                self.service
                    .set(&cf, req.key.to_vec(), req.value.to_vec())
                    .await
            }
            .await;
            answer(result.map(|_| gen::SetKeyResponse {
                success: true,
                error: None,
                error_code: None,
            }))
        })
        .await
    }

    async fn delete_key(&self, req: gen::DeleteKeyRequest) -> Reply<gen::DeleteKeyResponse> {
        self.timed(Method::DeleteKey, async {
            let result = async {
                let cf = column_family("column_family", req.column_family.as_ref())?;
                self.service.delete(&cf, req.key.to_vec()).await
            }
            .await;
            answer(result.map(|_| gen::DeleteKeyResponse {
                success: true,
                error: None,
                error_code: None,
            }))
        })
        .await
    }

    async fn get_range(&self, req: gen::GetRangeRequest) -> Reply<gen::GetRangeResponse> {
        self.timed(Method::GetRange, async {
            let fields = range_fields!(req);
            let result = async {
                let cf = column_family("column_family", req.column_family.as_ref())?;
                self.service
                    .get_range(&cf, fields.spec(self.service.max_range_bytes())?, None)
                    .await
            }
            .await;
            answer(result.map(range_response))
        })
        .await
    }

    async fn snapshot_get(
        &self,
        req: gen::SnapshotReadRequest,
    ) -> Reply<gen::SnapshotReadResponse> {
        self.snapshot_read_as(Method::SnapshotGet, req).await
    }

    async fn snapshot_get_range(
        &self,
        req: gen::SnapshotGetRangeRequest,
    ) -> Reply<gen::GetRangeResponse> {
        self.timed(Method::SnapshotGetRange, async {
            let fields = range_fields!(req);
            let result = async {
                let cf = column_family("column_family", req.column_family.as_ref())?;
                let version = wire_version("read_version", req.read_version)?;
                self.service
                    .get_range(
                        &cf,
                        fields.spec(self.service.max_range_bytes())?,
                        Some(version),
                    )
                    .await
            }
            .await;
            answer(result.map(range_response))
        })
        .await
    }

    async fn add_read_conflict(
        &self,
        _req: gen::AddReadConflictRequest,
    ) -> Reply<gen::AddReadConflictResponse> {
        Ok(legacy(
            "addReadConflict",
            "read conflicts are kept by the client; send them with atomicCommit in \
             read_conflict_keys (or read_conflict_ranges)",
        ))
    }

    async fn add_read_conflict_range(
        &self,
        _req: gen::AddReadConflictRangeRequest,
    ) -> Reply<gen::AddReadConflictRangeResponse> {
        Ok(legacy(
            "addReadConflictRange",
            "read conflicts are kept by the client; send them with atomicCommit in \
             read_conflict_ranges",
        ))
    }

    async fn set_read_version(
        &self,
        _req: gen::SetReadVersionRequest,
    ) -> Reply<gen::SetReadVersionResponse> {
        Ok(legacy(
            "setReadVersion",
            "the read version is kept by the client; pass it to snapshotRead, \
             snapshotGetRange and atomicCommit",
        ))
    }

    async fn get_committed_version(
        &self,
        _req: gen::GetCommittedVersionRequest,
    ) -> Reply<gen::GetCommittedVersionResponse> {
        Ok(legacy(
            "getCommittedVersion",
            "each atomicCommit returns its own committed_version",
        ))
    }

    async fn set_versionstamped_key(
        &self,
        req: gen::SetVersionstampedKeyRequest,
    ) -> Reply<gen::SetVersionstampedKeyResponse> {
        self.timed(Method::SetVersionstampedKey, async {
            let result = async {
                let cf = column_family("column_family", req.column_family.as_ref())?;
                self.service
                    .set_versionstamped_key(&cf, req.key_prefix.to_vec(), req.value.to_vec())
                    .await
            }
            .await;
            answer(result.map(|key| gen::SetVersionstampedKeyResponse {
                generated_key: Bytes::from(key),
                success: true,
                error: None,
            }))
        })
        .await
    }

    async fn set_versionstamped_value(
        &self,
        req: gen::SetVersionstampedValueRequest,
    ) -> Reply<gen::SetVersionstampedValueResponse> {
        self.timed(Method::SetVersionstampedValue, async {
            let result = async {
                let cf = column_family("column_family", req.column_family.as_ref())?;
                self.service
                    .set_versionstamped_value(&cf, req.key.to_vec(), req.value_prefix.to_vec())
                    .await
            }
            .await;
            answer(result.map(|value| gen::SetVersionstampedValueResponse {
                generated_value: Bytes::from(value),
                success: true,
                error: None,
            }))
        })
        .await
    }

    async fn set_fault_injection(
        &self,
        req: gen::FaultInjectionRequest,
    ) -> Reply<gen::FaultInjectionResponse> {
        let result = (|| {
            let fault_type = text("fault_type", &req.fault_type)?;
            let target = req
                .target_operation
                .as_ref()
                .map(|t| text("target_operation", t))
                .transpose()?;
            let target = Target::parse(target.as_deref())?;
            let probability = req.probability.unwrap_or(0.0);
            self.service.faults().configure(
                &fault_type,
                probability,
                req.duration_ms.unwrap_or(0),
                target,
            )
        })();
        Ok(answer(result.map(|()| gen::FaultInjectionResponse {
            success: true,
            error: None,
        })))
    }

    async fn ping(&self, req: gen::PingRequest) -> Reply<gen::PingResponse> {
        Ok(gen::PingResponse {
            message: req.message.unwrap_or_else(|| Bytes::from_static(b"pong")),
            timestamp: req.timestamp.unwrap_or(0),
            server_timestamp: now_micros(),
        })
    }

    async fn get_cluster_health(
        &self,
        req: gen::GetClusterHealthRequest,
    ) -> Reply<gen::GetClusterHealthResponse> {
        if let Err(e) = self.authorize(req.auth_token.as_ref()) {
            return Ok(gen::GetClusterHealthResponse::failure(e.into()));
        }
        let cluster = self.service.cluster();
        let uptime = self.service.uptime();
        let nodes: Vec<_> = cluster
            .members
            .iter()
            .map(|m| node_status(m, &cluster, uptime))
            .collect();
        let total = nodes.len();
        let healthy = cluster
            .members
            .iter()
            .filter(|m| m.health == dolmen_raft::Health::Healthy)
            .count();
        let status = if healthy == total {
            "healthy"
        } else if healthy * 2 > total {
            "degraded"
        } else {
            "unhealthy"
        };
        Ok(gen::GetClusterHealthResponse {
            success: true,
            cluster_health: Some(gen::ClusterHealth {
                leader: cluster.leader.and_then(|id| self.member(&cluster, id)),
                nodes,
                healthy_nodes_count: i32::try_from(healthy).unwrap_or(i32::MAX),
                total_nodes_count: i32::try_from(total).unwrap_or(i32::MAX),
                cluster_status: FastStr::from_static_str(status),
                current_term: to_i64(cluster.term),
            }),
            error: None,
        })
    }

    async fn get_database_stats(
        &self,
        req: gen::GetDatabaseStatsRequest,
    ) -> Reply<gen::GetDatabaseStatsResponse> {
        if let Err(e) = self.authorize(req.auth_token.as_ref()) {
            return Ok(gen::GetDatabaseStatsResponse::failure(e.into()));
        }
        let stats = self.service.stats();
        let engine = self.service.engine_stats();
        let load =
            |c: &std::sync::atomic::AtomicU64| to_i64(c.load(std::sync::atomic::Ordering::Relaxed));
        let detailed = req.include_detailed_stats.unwrap_or(false);
        Ok(gen::GetDatabaseStatsResponse {
            success: true,
            database_stats: Some(gen::DatabaseStats {
                total_keys: to_i64(engine.live_keys),
                total_size_bytes: to_i64(engine.size_bytes),
                write_operations_count: load(&stats.writes),
                read_operations_count: load(&stats.reads),
                average_response_time_ms: stats.average_response_ms(),
                active_transactions: stats.active.load(std::sync::atomic::Ordering::Relaxed),
                committed_transactions: load(&stats.committed),
                aborted_transactions: load(&stats.aborted),
                cache_hit_rate_percent: engine
                    .cache_hit_rate_percent
                    .filter(|_| detailed)
                    .map(to_i64),
                compaction_pending_bytes: detailed.then(|| to_i64(engine.compaction_pending_bytes)),
            }),
            error: None,
        })
    }

    async fn get_node_info(&self, req: gen::GetNodeInfoRequest) -> Reply<gen::GetNodeInfoResponse> {
        if let Err(e) = self.authorize(req.auth_token.as_ref()) {
            return Ok(gen::GetNodeInfoResponse::failure(e.into()));
        }
        let cluster = self.service.cluster();
        let wanted = req
            .node_id
            .map_or(Some(cluster.this_node), |id| u64::try_from(id).ok());
        Ok(match wanted.and_then(|id| self.member(&cluster, id)) {
            Some(node) => gen::GetNodeInfoResponse {
                success: true,
                node_info: Some(node),
                error: None,
            },
            None => gen::GetNodeInfoResponse::failure(
                ServiceError::argument(
                    "node_id",
                    format!(
                        "no member with id {} (members: {})",
                        req.node_id.unwrap_or_default(),
                        cluster
                            .members
                            .iter()
                            .map(|m| m.id.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .into(),
            ),
        })
    }
}
