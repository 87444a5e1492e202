//! The admin HTTP endpoint: `/health` (process up), `/ready` (can serve), `/metrics`
//! (Prometheus text), `/status` (JSON). Read-only; the cluster commands add to it later.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use dolmen_raft::Role;
use tokio::net::TcpListener;

use crate::service::Service;

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(service);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(service): State<Arc<Service>>) -> impl IntoResponse {
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

async fn metrics(State(service): State<Arc<Service>>) -> impl IntoResponse {
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

async fn status(State(service): State<Arc<Service>>) -> impl IntoResponse {
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
        "uptime_seconds": service.uptime().as_secs(),
        "members": members,
    }))
}
