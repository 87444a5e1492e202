//! The admin HTTP endpoint: `/health` (process up), `/ready` (can serve), `/metrics`
//! (Prometheus text), `/status` (JSON, with a `raft` section in replicated mode and a `groups`
//! entry per data group on a sharded node), and the cluster operations the `dolmen cluster`
//! commands use: `POST /cluster/init`, `POST /cluster/snapshot`, `GET /state/digest?version=V`
//! (a checksum of the state at `V`, to compare replicas; on a sharded node every data group's,
//! combined), `GET /backup` (the state at a fresh read version, streamed for
//! `dolmen backup`), `GET /cluster/status` (every member, probed over the peer transport),
//! `POST /cluster/add-node`, `/cluster/remove-node` (on the leader), `/cluster/transfer-leader`
//! (on the leader of the group it names, group 0 by default),
//! and, for the fault-injection suite only (`[faults] allow_network_faults`),
//! `GET|PUT|DELETE /debug/network-faults`.
//!
//! Every JSON answer and request is a `dolmen_admin` type; every refusal is a [`Refusal`].

pub mod auth;
mod backup;
mod console;
mod http;
mod metrics;
mod refusal;
mod series;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use dolmen_admin::{
    key_hex, AddNode, ClusterStatus, DigestQuery, ErrorCode, GroupDigest, GroupStatus,
    GroupedDigest, InitOutcome, MembershipOutcome, NodeStatus, NotReady, NotReadyCondition,
    Outcome, RaftStatus, ReadyAnswer, RemoveNode, RuleSet, SnapshotOutcome, TransferLeader,
};
use dolmen_config::Config;
use dolmen_engine::{Checksum, Engine, KeySpan, StorageError, Version};
use dolmen_raft::{RaftNode, ReadError};
use tokio::net::TcpListener;

pub use auth::Credentials;
pub use refusal::Refusal;

use crate::net_faults::NetworkFaults;
use crate::service::Service;
use crate::shards::{show_span, Shards};

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
    /// The node's configuration (the console shows it, credentials masked).
    pub config: Arc<Config>,
    /// Who may call what.
    pub credentials: Credentials,
}

/// The handlers' state: what the caller passed, the metrics registry built from it, and the
/// console's series.
#[derive(Clone)]
struct Shared {
    state: AdminState,
    metrics: Arc<prometheus_client::registry::Registry>,
    series: Arc<series::Series>,
    credentials: Arc<Credentials>,
}

/// A JSON answer or a refusal.
type Answer<T> = Result<Json<T>, Refusal>;

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: AdminListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let series = Arc::new(series::Series::default());
    let metrics = Arc::new(metrics::registry(
        state.service.clone(),
        state.raft.clone(),
        series.clone(),
    ));
    let credentials = Arc::new(state.credentials.clone());
    if credentials.operator.is_none() {
        tracing::warn!(
            "the admin API has no operator credential: anyone who reaches {} can change the \
             membership and take snapshots; set [server] admin_token (docs/console.md §2)",
            listener.local_addr()
        );
    }
    let mut background = vec![tokio::spawn(series::sample_forever(
        series.clone(),
        state.service.clone(),
        state.raft.clone(),
    ))];
    if let Some(raft) = &state.raft {
        background.push(tokio::spawn(series::probe_forever(
            series.clone(),
            raft.clone(),
        )));
    }
    let _stop_background = AbortOnDrop(background);
    let app = Router::new()
        .route("/", get(console::index))
        .route("/console/app.js", get(console::app_js))
        .route("/console/style.css", get(console::style_css))
        .route("/console/info", get(console::info))
        .route("/console/series", get(console::series))
        .route("/config", get(console::config))
        .route("/data/range", get(console::range))
        .route(
            "/data/key",
            get(console::get_key)
                .put(console::put_key)
                .delete(console::delete_key),
        )
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .route("/status", get(status))
        .route("/cluster/init", post(cluster_init))
        .route("/cluster/snapshot", post(cluster_snapshot))
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/add-node", post(add_node))
        .route("/cluster/remove-node", post(remove_node))
        .route("/cluster/transfer-leader", post(transfer_leader))
        .route("/state/digest", get(digest))
        .route(dolmen_admin::backup::BACKUP_PATH, get(backup::backup))
        .route(
            "/debug/network-faults",
            get(get_network_faults)
                .put(put_network_faults)
                .delete(clear_network_faults),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            credentials.clone(),
            auth::guard,
        ))
        .with_state(Shared {
            state,
            metrics,
            series,
            credentials,
        });
    match listener {
        AdminListener::Plain(listener) => http::serve(listener, app, shutdown).await,
        AdminListener::Tls(listener) => http::serve(listener, app, shutdown).await,
    }
}

/// The admin port: plain HTTP, or HTTPS (`[server] admin_tls`).
pub enum AdminListener {
    /// HTTP.
    Plain(TcpListener),
    /// HTTPS with `[client_tls]`'s certificate.
    Tls(crate::client_tls::TlsIncoming),
}

impl AdminListener {
    /// The bound address, for logs.
    fn local_addr(&self) -> String {
        let addr = match self {
            Self::Plain(l) => l.local_addr(),
            Self::Tls(l) => axum::serve::Listener::local_addr(l),
        };
        addr.map_or_else(|_| "the admin port".to_owned(), |a| a.to_string())
    }
}

/// Aborts the admin server's background tasks when it stops.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn health() -> &'static str {
    "ok\n"
}

/// 200 once a leader is known, a version is applied and the disk is not full; else 503 naming
/// every condition (a full disk: reads are served, writes refused, so not ready).
async fn ready(State(shared): State<Shared>) -> impl IntoResponse {
    let service = &shared.state.service;
    let leader = service.cluster().leader;
    let applied_version = service.engine_stats().applied_version;
    let mut reasons = Vec::new();
    if leader.is_none() {
        reasons.push(NotReady {
            condition: NotReadyCondition::NoLeader,
            detail: "no leader is known".to_owned(),
        });
    }
    if applied_version == 0 {
        reasons.push(NotReady {
            condition: NotReadyCondition::NothingApplied,
            detail: "no version applied yet".to_owned(),
        });
    }
    if let Some(full) = service.disk().full() {
        reasons.push(NotReady {
            condition: NotReadyCondition::DiskFull,
            detail: full.to_string(),
        });
    }
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let answer = ReadyAnswer {
        ready: reasons.is_empty(),
        leader,
        applied_version,
        reasons,
    };
    (status, Json(answer))
}

async fn render_metrics(State(shared): State<Shared>) -> Result<impl IntoResponse, Refusal> {
    let text = metrics::render(&shared.metrics)
        .map_err(|e| Refusal::internal(format!("rendering the metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text))
}

async fn status(State(shared): State<Shared>) -> Json<NodeStatus> {
    let state = &shared.state;
    let service = &state.service;
    let cluster = service.cluster();
    let engine = service.engine_stats();
    Json(NodeStatus {
        node_id: cluster.this_node,
        leader: cluster.leader,
        term: cluster.term,
        applied_version: engine.applied_version,
        horizon: engine.horizon,
        live_keys: engine.live_keys,
        size_bytes: engine.size_bytes,
        block_cache_bytes: engine.block_cache_bytes,
        memtable_bytes: engine.memtable_bytes,
        uptime_seconds: service.uptime().as_secs(),
        members: cluster.members,
        raft: state.raft.as_ref().map(|r| r.status()),
        groups: group_statuses(service, state.raft.as_deref()),
    })
}

/// Each data group of a sharded node as this node runs it, in key order (docs/sharding.md
/// §12); empty on a standalone or unsharded node, which runs none.
fn group_statuses(service: &Service, raft: Option<&RaftNode>) -> Vec<GroupStatus> {
    let Some(raft) = raft else {
        return Vec::new();
    };
    let running = raft.data_groups();
    if running.is_empty() {
        return Vec::new();
    }
    let shards = service.shards();
    shards
        .groups()
        .iter()
        .zip(shards.spans())
        .filter_map(|(group, span)| {
            let data = running.iter().find(|d| d.id() == group.id)?;
            Some(group_status(
                group.id,
                span,
                data.status(),
                data.applied_version(),
            ))
        })
        .collect()
}

/// Group `id`'s `/status` entry: the keys it owns (`span`) and its Raft state here.
fn group_status(
    id: u64,
    span: &KeySpan,
    raft: RaftStatus,
    applied_version: Version,
) -> GroupStatus {
    GroupStatus {
        id,
        start: key_hex(&span.start),
        end: span.end.as_deref().map(key_hex),
        range: show_span(span),
        role: raft.role,
        leader: raft.leader,
        term: raft.term,
        last_log: raft.last_log,
        committed: raft.committed,
        applied: raft.applied,
        applied_version,
        running: raft.running,
    }
}

/// The Raft node, or the standalone refusal.
fn raft(shared: &Shared) -> Result<&Arc<RaftNode>, Refusal> {
    shared.state.raft.as_ref().ok_or_else(Refusal::standalone)
}

async fn cluster_init(State(shared): State<Shared>) -> Answer<Outcome<InitOutcome>> {
    let outcome = raft(&shared)?.init_guarded().await?;
    Ok(Json(Outcome { outcome }))
}

async fn cluster_status(State(shared): State<Shared>) -> Answer<ClusterStatus> {
    Ok(Json(raft(&shared)?.cluster_status().await))
}

/// Why an add-node query is malformed (400).
#[derive(Debug, thiserror::Error)]
#[error("{field} must be host:port with a non-zero port, got {value:?}")]
struct BadEndpoint {
    field: &'static str,
    value: String,
}

/// `host:port` with a non-zero port, or an error naming `field`.
fn check_endpoint(field: &'static str, value: &str) -> Result<(), BadEndpoint> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(BadEndpoint {
            field,
            value: value.to_owned(),
        }),
    }
}

fn membership(outcome: MembershipOutcome) -> Json<Outcome<MembershipOutcome>> {
    Json(Outcome { outcome })
}

async fn add_node(
    State(shared): State<Shared>,
    Query(q): Query<AddNode>,
) -> Answer<Outcome<MembershipOutcome>> {
    let raft = raft(&shared)?;
    check_endpoint("client_addr", &q.client_addr)
        .and_then(|()| check_endpoint("peer_addr", &q.peer_addr))
        .and_then(|()| match q.admin_addr.as_str() {
            "" => Ok(()),
            a => check_endpoint("admin_addr", a),
        })
        .map_err(|e| Refusal::invalid(e.to_string()))?;
    let addr = dolmen_raft::NodeAddr {
        client_addr: q.client_addr,
        peer_addr: q.peer_addr,
        admin_addr: q.admin_addr,
    };
    Ok(membership(raft.add_node(q.id, addr).await?))
}

async fn remove_node(
    State(shared): State<Shared>,
    Query(q): Query<RemoveNode>,
) -> Answer<Outcome<MembershipOutcome>> {
    Ok(membership(raft(&shared)?.remove_node(q.id).await?))
}

async fn transfer_leader(
    State(shared): State<Shared>,
    Query(q): Query<TransferLeader>,
) -> Answer<Outcome<MembershipOutcome>> {
    Ok(membership(
        raft(&shared)?.transfer_group_leader(q.group, q.to).await?,
    ))
}

async fn cluster_snapshot(State(shared): State<Shared>) -> Answer<Outcome<SnapshotOutcome>> {
    raft(&shared)?.trigger_snapshot().await?;
    Ok(Json(Outcome {
        outcome: SnapshotOutcome::Triggered,
    }))
}

/// The fault rules, or the refusal when the node does not allow network faults.
fn network_faults(shared: &Shared) -> Result<&Arc<NetworkFaults>, Refusal> {
    shared
        .state
        .network_faults
        .as_ref()
        .ok_or_else(Refusal::network_faults_off)
}

async fn get_network_faults(State(shared): State<Shared>) -> Answer<RuleSet> {
    Ok(Json(network_faults(&shared)?.get()))
}

/// Replaces the rules with the JSON body (`{"rules": [...]}`, see `dolmen_admin::Rule`).
async fn put_network_faults(
    State(shared): State<Shared>,
    body: axum::body::Bytes,
) -> Answer<RuleSet> {
    let faults = network_faults(&shared)?;
    let rules: RuleSet =
        serde_json::from_slice(&body).map_err(|e| Refusal::invalid(format!("body: {e}")))?;
    faults.set(rules)?;
    tracing::warn!(rules = ?faults.get().rules, "network fault rules installed");
    Ok(Json(faults.get()))
}

async fn clear_network_faults(State(shared): State<Shared>) -> Answer<RuleSet> {
    let faults = network_faults(&shared)?;
    faults.clear();
    tracing::warn!("network fault rules cleared");
    Ok(Json(faults.get()))
}

/// How long `/state/digest` on a sharded node waits for a data group to cover the version: only
/// a version no replica of the group has reached yet waits this long (`ReadGate::cover`).
const DIGEST_COVER_WAIT: Duration = Duration::from_secs(2);

/// `GET /state/digest`: the checksum of the node's data at `V` (default: the applied version).
/// On a sharded node, every data group's at `V`, combined ([`combine_group_digests`]), each
/// group covering `V` first.
async fn digest(
    State(shared): State<Shared>,
    Query(query): Query<DigestQuery>,
) -> Answer<GroupedDigest> {
    let shards = shared.state.service.shards();
    if is_sharded(shards) {
        return sharded_digest(shards, query.version).await.map(Json);
    }
    let engine = shared.state.engine.clone();
    let version = query.version.unwrap_or_else(|| engine.applied_version());
    match tokio::task::spawn_blocking(move || engine.digest_at(version)).await {
        Ok(Ok(digest)) => Ok(Json(GroupedDigest {
            version,
            digest: format!("{digest:016x}"),
            groups: Vec::new(),
        })),
        Ok(Err(e)) => Err(Refusal::invalid(format!("version {version}: {e}"))),
        Err(e) => Err(Refusal::internal(format!("the digest task failed: {e}"))),
    }
}

/// Whether the keys belong to data groups (a sharded node: group 0 owns no data) rather than to
/// the node's one group 0.
fn is_sharded(shards: &Shards) -> bool {
    shards.groups().iter().any(|g| g.id != 0)
}

/// Every data group's digest at `version` (default: the highest any group applied here), in key
/// order, and their combination. Each group first covers `version` here (docs/sharding.md
/// §5.2: every commit of the group at or below it applied), so replicas digest the same
/// commits. A group whose last applied version is below `version` holds no commit in between
/// once covered, so its state at `version` is its state at that applied version, which the
/// engine digests (its export reads at most at the applied version).
async fn sharded_digest(
    shards: &Shards,
    version: Option<Version>,
) -> Result<GroupedDigest, Refusal> {
    let groups = shards.groups();
    let version = version.unwrap_or_else(|| {
        groups
            .iter()
            .map(|g| g.engine.applied_version())
            .max()
            .unwrap_or(0)
    });
    let mut covering = tokio::task::JoinSet::new();
    for (position, group) in groups.iter().enumerate() {
        let gate = group.gate.clone();
        covering.spawn(async move { (position, gate.cover(version, DIGEST_COVER_WAIT).await) });
    }
    while let Some(done) = covering.join_next().await {
        match done {
            Ok((_, Ok(()))) => {}
            Ok((position, Err(e))) => {
                return Err(cover_refusal(&shards.describe(position), version, e))
            }
            Err(e) => return Err(Refusal::internal(format!("a cover task failed: {e}"))),
        }
    }
    let engines: Vec<(u64, Arc<Engine>)> =
        groups.iter().map(|g| (g.id, g.engine.clone())).collect();
    let digests =
        tokio::task::spawn_blocking(move || -> Result<Vec<(u64, u64)>, (usize, StorageError)> {
            engines
                .iter()
                .enumerate()
                .map(|(position, (id, engine))| {
                    let at = version.min(engine.applied_version());
                    engine
                        .digest_at(at)
                        .map(|d| (*id, d))
                        .map_err(|e| (position, e))
                })
                .collect()
        })
        .await
        .map_err(|e| Refusal::internal(format!("the digest task failed: {e}")))?
        .map_err(|(position, e)| {
            Refusal::invalid(format!(
                "group {} at version {version}: {e}",
                shards.describe(position)
            ))
        })?;
    Ok(GroupedDigest {
        version,
        digest: format!("{:016x}", combine_group_digests(&digests)),
        groups: digests
            .iter()
            .zip(shards.spans())
            .map(|(&(id, digest), span)| GroupDigest::new(id, show_span(span), digest))
            .collect(),
    })
}

/// The refusal when `group` (described) cannot cover `version` here: 400 for a version nobody
/// reached within the wait, 503 when the group has no leader or quorum.
fn cover_refusal(group: &str, version: Version, e: ReadError) -> Refusal {
    let message = format!("group {group} cannot cover version {version} on this node: {e}");
    match e {
        ReadError::FutureVersion { .. } => Refusal::invalid(message),
        ReadError::Propose(_) => Refusal::new(ErrorCode::Unavailable, message),
    }
}

/// A sharded node's digest: CRC-64 (the engine's [`Checksum`]) over `be64(id) ‖ be64(digest)`
/// for each data group in key order. Equal for two replicas exactly when every group's id,
/// order and digest are (up to CRC collisions); group 0 holds no user data and is not in it.
fn combine_group_digests(groups: &[(u64, u64)]) -> u64 {
    let mut sum = Checksum::new();
    for (id, digest) in groups {
        sum.update(&id.to_be_bytes());
        sum.update(&digest.to_be_bytes());
    }
    sum.finish()
}

#[cfg(test)]
mod tests {
    use dolmen_admin::{Health, RaftMember, Role};

    use super::*;

    #[test]
    fn the_combined_digest_is_crc64_over_each_groups_id_and_digest_in_key_order() {
        let groups = [(1, 0x1111), (2, 0x2222), (3, 0x3333)];
        let mut bytes = Vec::new();
        for (id, digest) in groups {
            bytes.extend_from_slice(&u64::to_be_bytes(id));
            bytes.extend_from_slice(&u64::to_be_bytes(digest));
        }
        let mut whole = Checksum::new();
        whole.update(&bytes);
        assert_eq!(combine_group_digests(&groups), whole.finish());

        let combined = combine_group_digests(&groups);
        // One group's data changed.
        assert_ne!(
            combine_group_digests(&[(1, 0x1111), (2, 0x2223), (3, 0x3333)]),
            combined
        );
        // The same digests under other groups, or in another order.
        assert_ne!(
            combine_group_digests(&[(1, 0x1111), (4, 0x2222), (3, 0x3333)]),
            combined
        );
        assert_ne!(
            combine_group_digests(&[(2, 0x2222), (1, 0x1111), (3, 0x3333)]),
            combined
        );
        // A group missing.
        assert_ne!(combine_group_digests(&groups[..2]), combined);
    }

    #[test]
    fn a_group_status_spells_its_range_in_hex_and_for_people() {
        let raft = RaftStatus {
            node_id: 2,
            role: Role::Leader,
            term: 4,
            leader: Some(2),
            last_log: 30,
            committed: 29,
            applied: 28,
            snapshot: 0,
            purged: 0,
            members: vec![RaftMember {
                id: 2,
                client_addr: "127.0.0.1:1".into(),
                peer_addr: "127.0.0.1:2".into(),
                admin_addr: String::new(),
                voter: true,
                health: Health::Healthy,
                matched: None,
                last_seen_unix_ms: None,
            }],
            snapshots_built: 0,
            snapshots_installed: 0,
            snapshots_sent: 0,
            running: None,
        };
        let middle = KeySpan {
            start: b"g".to_vec(),
            end: Some(vec![0xc0, 0xff]),
        };
        let status = group_status(2, &middle, raft.clone(), 77);
        assert_eq!(
            (status.start.as_str(), status.end.as_deref()),
            ("67", Some("c0ff"))
        );
        assert_eq!(status.range, "['g', 0xc0ff)");
        assert_eq!(
            (status.role, status.leader, status.term),
            (Role::Leader, Some(2), 4)
        );
        assert_eq!(
            (status.last_log, status.committed, status.applied),
            (30, 29, 28)
        );
        assert_eq!(status.applied_version, 77);

        let last = group_status(3, &KeySpan::all(), raft, 1);
        assert_eq!((last.start.as_str(), last.end), ("", None));
        assert_eq!(last.range, "['', +inf)");
    }
}
