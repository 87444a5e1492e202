//! The admin HTTP endpoint: `/health` (process up), `/ready` (can serve), `/metrics`
//! (Prometheus text), `/status` (JSON, with a `raft` section in replicated mode), and the
//! cluster operations the `dolmen cluster` commands use: `POST /cluster/init`,
//! `POST /cluster/snapshot`, `GET /state/digest?version=V` (a checksum of the state at `V`, to
//! compare replicas), `GET /cluster/status` (every member, probed over the peer transport),
//! `POST /cluster/add-node`, `/cluster/remove-node`, `/cluster/transfer-leader` (on the leader),
//! and, for the fault-injection suite only (`[faults] allow_network_faults`),
//! `GET|PUT|DELETE /debug/network-faults`.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use dolmen_engine::Engine;
use dolmen_raft::{RaftNode, Role};
use tokio::net::TcpListener;

use crate::net_faults::{NetworkFaults, RuleSet};
use crate::service::Service;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// The service core (stats, cluster view).
    pub service: Arc<Service>,
    /// The engine (digests).
    pub engine: Arc<Engine>,
    /// The Raft member, in replicated mode.
    pub raft: Option<Arc<RaftNode>>,
    /// Network fault rules, when `[faults] allow_network_faults` is on.
    pub network_faults: Option<Arc<NetworkFaults>>,
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/cluster/init", post(cluster_init))
        .route("/cluster/snapshot", post(cluster_snapshot))
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/add-node", post(add_node))
        .route("/cluster/remove-node", post(remove_node))
        .route("/cluster/transfer-leader", post(transfer_leader))
        .route("/state/digest", get(digest))
        .route(
            "/debug/network-faults",
            get(get_network_faults)
                .put(put_network_faults)
                .delete(clear_network_faults),
        )
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(AdminState { service, .. }): State<AdminState>) -> impl IntoResponse {
    let cluster = service.cluster();
    let applied = service.engine_stats().applied_version;
    if cluster.leader.is_some() && applied > 0 {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: leader={:?} applied_version={applied}\n",
                cluster.leader
            ),
        )
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
        Role::Unknown => "unknown",
    }
}

async fn metrics(State(AdminState { service, raft, .. }): State<AdminState>) -> impl IntoResponse {
    let stats = service.stats();
    let engine = service.engine_stats();
    let cluster = service.cluster();
    let is_leader = cluster.leader == Some(cluster.this_node);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed).to_string();
    metric(
        "dolmen_reads_total",
        "counter",
        "Read requests served.",
        load(&stats.reads),
    );
    metric(
        "dolmen_writes_total",
        "counter",
        "Write requests served.",
        load(&stats.writes),
    );
    metric(
        "dolmen_commits_total",
        "counter",
        "Transactions committed.",
        load(&stats.committed),
    );
    metric(
        "dolmen_aborts_total",
        "counter",
        "Transactions not committed (conflict, too old, fault, timeout).",
        load(&stats.aborted),
    );
    metric(
        "dolmen_active_commits",
        "gauge",
        "atomicCommit calls in flight.",
        stats.active.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "dolmen_request_duration_avg_ms",
        "gauge",
        "Mean request duration since start.",
        format!("{:.3}", stats.average_response_ms()),
    );
    metric(
        "dolmen_applied_version",
        "gauge",
        "Version of the last applied command.",
        engine.applied_version.to_string(),
    );
    metric(
        "dolmen_mvcc_horizon",
        "gauge",
        "MVCC retention horizon.",
        engine.horizon.to_string(),
    );
    metric(
        "dolmen_live_keys",
        "gauge",
        "User keys whose newest version is a value.",
        engine.live_keys.to_string(),
    );
    metric(
        "dolmen_db_size_bytes",
        "gauge",
        "SST files and memtables of data and meta.",
        engine.size_bytes.to_string(),
    );
    metric(
        "dolmen_block_cache_bytes",
        "gauge",
        "Bytes in RocksDB's block cache, memtables' charge included (bounded by rocksdb.block_cache_size_mb).",
        engine.block_cache_bytes.to_string(),
    );
    metric(
        "dolmen_memtable_bytes",
        "gauge",
        "Bytes in RocksDB's memtables, all column families (at most 2 x rocksdb.write_buffer_size_mb, within the block cache).",
        engine.memtable_bytes.to_string(),
    );
    metric(
        "dolmen_compaction_pending_bytes",
        "gauge",
        "RocksDB's estimate of bytes awaiting compaction.",
        engine.compaction_pending_bytes.to_string(),
    );
    metric(
        "dolmen_is_leader",
        "gauge",
        "1 when this node orders writes.",
        u8::from(is_leader).to_string(),
    );
    metric(
        "dolmen_term",
        "gauge",
        "Current replication term.",
        cluster.term.to_string(),
    );
    if let Some(raft) = raft {
        metric(
            "dolmen_raft_log_fsyncs_total",
            "counter",
            "Raft log fsyncs (each covers every entry appended before it).",
            raft.log_fsyncs().to_string(),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

async fn status(State(state): State<AdminState>) -> impl IntoResponse {
    let service = &state.service;
    let cluster = service.cluster();
    let engine = service.engine_stats();
    let members: Vec<_> = cluster
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id,
                "client_addr": m.client_addr,
                "role": role_name(m.role),
                "health": m.health.as_wire(),
                "last_seen_unix_ms": m.last_seen_unix_ms,
            })
        })
        .collect();
    Json(serde_json::json!({
        "node_id": cluster.this_node,
        "leader": cluster.leader,
        "term": cluster.term,
        "applied_version": engine.applied_version,
        "horizon": engine.horizon,
        "live_keys": engine.live_keys,
        "size_bytes": engine.size_bytes,
        "block_cache_bytes": engine.block_cache_bytes,
        "memtable_bytes": engine.memtable_bytes,
        "uptime_seconds": service.uptime().as_secs(),
        "members": members,
        "raft": state.raft.as_ref().map(|r| r.status()),
    }))
}

/// A JSON error answer.
fn refuse(code: StatusCode, message: String) -> axum::response::Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

fn standalone() -> axum::response::Response {
    refuse(
        StatusCode::CONFLICT,
        "this node runs [deployment] mode = \"standalone\": there is no cluster to operate on"
            .into(),
    )
}

async fn cluster_init(State(state): State<AdminState>) -> axum::response::Response {
    let Some(raft) = state.raft else {
        return standalone();
    };
    match raft.init_guarded().await {
        Ok(outcome) => Json(serde_json::json!({ "outcome": outcome })).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn cluster_status(State(state): State<AdminState>) -> axum::response::Response {
    let Some(raft) = state.raft else {
        return standalone();
    };
    Json(raft.cluster_status().await).into_response()
}

/// `?id=N&client_addr=H:P&peer_addr=H:P[&admin_addr=H:P]`.
#[derive(serde::Deserialize)]
struct AddNodeQuery {
    id: u64,
    client_addr: String,
    peer_addr: String,
    #[serde(default)]
    admin_addr: String,
}

/// `host:port` with a non-zero port, or an error naming `field`.
fn check_endpoint(field: &str, value: &str) -> Result<(), String> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!(
            "{field} must be host:port with a non-zero port, got {value:?}"
        )),
    }
}

fn membership_answer(
    result: Result<dolmen_raft::MembershipOutcome, String>,
) -> axum::response::Response {
    match result {
        Ok(outcome) => Json(serde_json::json!({ "outcome": outcome })).into_response(),
        Err(e) => refuse(StatusCode::CONFLICT, e),
    }
}

async fn add_node(
    State(state): State<AdminState>,
    Query(q): Query<AddNodeQuery>,
) -> axum::response::Response {
    let Some(raft) = state.raft else {
        return standalone();
    };
    let checked = check_endpoint("client_addr", &q.client_addr)
        .and_then(|()| check_endpoint("peer_addr", &q.peer_addr))
        .and_then(|()| match q.admin_addr.as_str() {
            "" => Ok(()),
            a => check_endpoint("admin_addr", a),
        });
    if let Err(e) = checked {
        return refuse(StatusCode::BAD_REQUEST, e);
    }
    let addr = dolmen_raft::NodeAddr {
        client_addr: q.client_addr,
        peer_addr: q.peer_addr,
        admin_addr: q.admin_addr,
    };
    membership_answer(raft.add_node(q.id, addr).await.map_err(|e| e.to_string()))
}

/// `?id=N`.
#[derive(serde::Deserialize)]
struct NodeQuery {
    id: u64,
}

async fn remove_node(
    State(state): State<AdminState>,
    Query(q): Query<NodeQuery>,
) -> axum::response::Response {
    let Some(raft) = state.raft else {
        return standalone();
    };
    membership_answer(raft.remove_node(q.id).await.map_err(|e| e.to_string()))
}

/// `?to=N`.
#[derive(serde::Deserialize)]
struct TransferQuery {
    to: u64,
}

async fn transfer_leader(
    State(state): State<AdminState>,
    Query(q): Query<TransferQuery>,
) -> axum::response::Response {
    let Some(raft) = state.raft else {
        return standalone();
    };
    membership_answer(raft.transfer_leader(q.to).await.map_err(|e| e.to_string()))
}

async fn cluster_snapshot(State(state): State<AdminState>) -> axum::response::Response {
    let Some(raft) = state.raft else {
        return standalone();
    };
    match raft.trigger_snapshot().await {
        Ok(()) => Json(serde_json::json!({ "outcome": "triggered" })).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The refusal when the node does not allow network faults.
fn network_faults_off() -> axum::response::Response {
    refuse(
        StatusCode::FORBIDDEN,
        "network fault injection is off on this node; start it with \
         [faults] allow_network_faults = true (tests only)"
            .into(),
    )
}

async fn get_network_faults(State(state): State<AdminState>) -> axum::response::Response {
    match &state.network_faults {
        Some(faults) => Json(faults.get()).into_response(),
        None => network_faults_off(),
    }
}

/// Replaces the rules with the JSON body (`{"rules": [...]}`, see `net_faults::Rule`).
async fn put_network_faults(
    State(state): State<AdminState>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let Some(faults) = &state.network_faults else {
        return network_faults_off();
    };
    let rules: RuleSet = match serde_json::from_slice(&body) {
        Ok(rules) => rules,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    match faults.set(rules) {
        Ok(()) => {
            tracing::warn!(rules = ?faults.get().rules, "network fault rules installed");
            Json(faults.get()).into_response()
        }
        Err(e) => refuse(StatusCode::BAD_REQUEST, e),
    }
}

async fn clear_network_faults(State(state): State<AdminState>) -> axum::response::Response {
    let Some(faults) = &state.network_faults else {
        return network_faults_off();
    };
    faults.clear();
    tracing::warn!("network fault rules cleared");
    Json(faults.get()).into_response()
}

/// `?version=V`; absent = the applied version.
#[derive(serde::Deserialize)]
struct DigestQuery {
    version: Option<u64>,
}

async fn digest(
    State(state): State<AdminState>,
    Query(query): Query<DigestQuery>,
) -> axum::response::Response {
    let engine = state.engine.clone();
    let version = query.version.unwrap_or_else(|| engine.applied_version());
    let result = tokio::task::spawn_blocking(move || engine.digest_at(version)).await;
    match result {
        Ok(Ok(digest)) => Json(serde_json::json!({
            "version": version,
            "digest": format!("{digest:016x}"),
        }))
        .into_response(),
        Ok(Err(e)) => refuse(StatusCode::BAD_REQUEST, format!("version {version}: {e}")),
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the digest task failed: {e}"),
        ),
    }
}
