//! The console's recent history (docs/console.md §3, `GET /console/series`): a sampler that
//! once a second turns the node's counters into rates, latency quantiles and replication lag,
//! keeps the last [`KEEP_SAMPLES`], and notes events (leader changes, elections, snapshots,
//! members lost and back). A prober asks every member for its status, so the leader can show
//! each follower's apply lag; it runs apart from the sampler, so that a member that does not
//! answer delays no sample.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dolmen_admin::{ClusterStatus, Health, NodeId};
use dolmen_raft::RaftNode;
use parking_lot::Mutex;
use serde::Serialize;

use crate::request_metrics::{HistogramSnapshot, Kind};
use crate::service::Service;

/// Samples kept: five minutes at one a second.
pub const KEEP_SAMPLES: usize = 300;
/// Events kept.
pub const KEEP_EVENTS: usize = 100;
/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// A member's apply lag is shown while the probe that measured it is at most this old.
const PROBE_FRESH: Duration = Duration::from_secs(5);

/// One second of the node's life.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken, milliseconds since the Unix epoch.
    pub t: i64,
    /// Read requests finished per second.
    pub reads_per_s: f64,
    /// Transactions committed per second.
    pub commits_per_s: f64,
    /// Requests refused with `CONFLICT` per second.
    pub conflicts_per_s: f64,
    /// Requests failed per second, by wire error code (`CONFLICT` included).
    pub errors_per_s: BTreeMap<String, f64>,
    /// Median latency of the reads finished in the interval, ms.
    pub read_p50_ms: Option<f64>,
    /// 99th percentile latency of those reads, ms.
    pub read_p99_ms: Option<f64>,
    /// Median latency of the commits finished in the interval, ms.
    pub commit_p50_ms: Option<f64>,
    /// 99th percentile latency of those commits, ms.
    pub commit_p99_ms: Option<f64>,
    /// The applied version.
    pub applied: u64,
    /// The term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// On the leader: every follower's lag.
    pub followers: Vec<FollowerLag>,
}

/// A follower's lag, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FollowerLag {
    /// The follower.
    pub id: NodeId,
    /// Leader's last log index − the follower's match index.
    pub log_lag: Option<u64>,
    /// The follower's committed index − its applied index, from the last probe.
    pub apply_lag: Option<u64>,
}

/// Something that happened, for the console's event list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When it was noticed, milliseconds since the Unix epoch.
    pub t: i64,
    /// `leader_change`, `election`, `snapshot_built`, `snapshot_installed`,
    /// `member_unreachable` or `member_back`.
    pub kind: &'static str,
    /// For people.
    pub detail: String,
}

/// Snapshot counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotCounts {
    /// Built on this node.
    pub built: u64,
    /// Streamed to followers that installed them.
    pub sent: u64,
    /// Installed on this node.
    pub installed: u64,
}

/// `GET /console/series`.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesAnswer {
    /// Time between samples.
    pub interval_ms: u64,
    /// Oldest first.
    pub samples: Vec<Sample>,
    /// Oldest first.
    pub events: Vec<Event>,
    /// Snapshot counters now.
    pub snapshots: SnapshotCounts,
}

/// The counters a sample is the difference of.
#[derive(Clone, Debug)]
struct Totals {
    at: Instant,
    reads: HistogramSnapshot,
    commits: HistogramSnapshot,
    committed: u64,
    errors: BTreeMap<String, u64>,
    leader: Option<NodeId>,
    term: u64,
    elections: u64,
    snapshots: SnapshotCounts,
}

/// The recent history of one node.
#[derive(Debug, Default)]
pub struct Series {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    samples: VecDeque<Sample>,
    events: VecDeque<Event>,
    previous: Option<Totals>,
    /// The prober's last answer and when it came.
    probe: Option<(Instant, ClusterStatus)>,
    /// Members the last probe could not reach.
    unreachable: BTreeSet<NodeId>,
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Series {
    /// What the console reads.
    pub fn answer(&self, raft: Option<&RaftNode>) -> SeriesAnswer {
        let state = self.state.lock();
        SeriesAnswer {
            interval_ms: u64::try_from(INTERVAL.as_millis()).unwrap_or(u64::MAX),
            samples: state.samples.iter().cloned().collect(),
            events: state.events.iter().cloned().collect(),
            snapshots: snapshot_counts(raft),
        }
    }

    /// Seconds since this node applied the version `horizon`, from the samples: `None`
    /// before the first sample; at least the age of the oldest sample when the horizon is
    /// older than every sample.
    pub fn horizon_age_seconds(&self, horizon: u64) -> Option<f64> {
        let state = self.state.lock();
        let oldest = state.samples.front()?;
        let reached = state
            .samples
            .iter()
            .find(|s| s.applied >= horizon)
            .unwrap_or(oldest);
        Some(((now_unix_ms() - reached.t).max(0)) as f64 / 1000.0)
    }

    fn event(state: &mut State, kind: &'static str, detail: String) {
        if state.events.len() == KEEP_EVENTS {
            state.events.pop_front();
        }
        state.events.push_back(Event {
            t: now_unix_ms(),
            kind,
            detail,
        });
    }

    /// Takes one sample.
    pub fn sample(&self, service: &Service, raft: Option<&RaftNode>) {
        let totals = totals(service, raft);
        let status = raft.map(RaftNode::status);
        let applied = service.engine_stats().applied_version;
        let mut state = self.state.lock();
        let Some(previous) = state.previous.replace(totals.clone()) else {
            return;
        };
        let seconds = totals
            .at
            .duration_since(previous.at)
            .as_secs_f64()
            .max(1e-3);
        let per_second = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
        let errors_per_s: BTreeMap<String, f64> = totals
            .errors
            .iter()
            .map(|(code, &n)| {
                let then = previous.errors.get(code).copied().unwrap_or(0);
                (code.clone(), per_second(n, then))
            })
            .filter(|(_, rate)| *rate > 0.0)
            .collect();
        let reads = totals.reads.since(&previous.reads);
        let commits = totals.commits.since(&previous.commits);
        let ms = |h: &HistogramSnapshot, q: f64| h.quantile(q).map(|s| s * 1000.0);
        let followers = status
            .as_ref()
            .filter(|s| s.leader == Some(s.node_id))
            .map(|s| follower_lags(s, state.probe.as_ref()))
            .unwrap_or_default();
        let sample = Sample {
            t: now_unix_ms(),
            reads_per_s: reads.count as f64 / seconds,
            commits_per_s: per_second(totals.committed, previous.committed),
            conflicts_per_s: errors_per_s.get("CONFLICT").copied().unwrap_or(0.0),
            errors_per_s,
            read_p50_ms: ms(&reads, 0.5),
            read_p99_ms: ms(&reads, 0.99),
            commit_p50_ms: ms(&commits, 0.5),
            commit_p99_ms: ms(&commits, 0.99),
            applied,
            term: totals.term,
            leader: totals.leader,
            followers,
        };
        // An election comes before the leader change it causes.
        if totals.elections > previous.elections {
            let detail = format!("this node campaigned (term {})", totals.term);
            Self::event(&mut state, "election", detail);
        }
        if totals.leader != previous.leader {
            let name = |l: Option<NodeId>| l.map_or_else(|| "none".to_owned(), |l| l.to_string());
            let detail = format!(
                "leader {} -> {} (term {})",
                name(previous.leader),
                name(totals.leader),
                totals.term
            );
            Self::event(&mut state, "leader_change", detail);
        }
        if totals.snapshots.built > previous.snapshots.built {
            let detail = format!("built a snapshot at version {applied}");
            Self::event(&mut state, "snapshot_built", detail);
        }
        if totals.snapshots.installed > previous.snapshots.installed {
            Self::event(
                &mut state,
                "snapshot_installed",
                "installed a snapshot from the leader".to_owned(),
            );
        }
        if state.samples.len() == KEEP_SAMPLES {
            state.samples.pop_front();
        }
        state.samples.push_back(sample);
    }

    /// Records a probe of every member, and the events of members lost and back.
    pub fn record_probe(&self, status: ClusterStatus) {
        let unreachable: BTreeSet<NodeId> = status
            .nodes
            .iter()
            .filter(|n| n.health == Health::Unreachable)
            .map(|n| n.id)
            .collect();
        let mut state = self.state.lock();
        let lost: Vec<_> = unreachable
            .difference(&state.unreachable)
            .copied()
            .collect();
        let back: Vec<_> = state
            .unreachable
            .difference(&unreachable)
            .copied()
            .collect();
        for id in lost {
            let why = status
                .nodes
                .iter()
                .find(|n| n.id == id)
                .and_then(|n| n.error.clone())
                .unwrap_or_default();
            Self::event(
                &mut state,
                "member_unreachable",
                format!("node {id} does not answer: {why}"),
            );
        }
        for id in back {
            Self::event(
                &mut state,
                "member_back",
                format!("node {id} answers again"),
            );
        }
        state.unreachable = unreachable;
        state.probe = Some((Instant::now(), status));
    }
}

fn snapshot_counts(raft: Option<&RaftNode>) -> SnapshotCounts {
    raft.map(|r| {
        let s = r.snapshot_stats();
        SnapshotCounts {
            built: s.built(),
            sent: s.sent(),
            installed: s.installed(),
        }
    })
    .unwrap_or_default()
}

fn totals(service: &Service, raft: Option<&RaftNode>) -> Totals {
    let stats = service.stats();
    let mut reads = HistogramSnapshot::default();
    let mut commits = HistogramSnapshot::default();
    for (method, histogram) in stats.methods.latency() {
        match method.kind() {
            Kind::Read => reads.add(&histogram),
            Kind::Commit => commits.add(&histogram),
        }
    }
    let mut errors = BTreeMap::new();
    for ((_, code), n) in stats.methods.errors() {
        *errors.entry(code).or_insert(0) += n;
    }
    let cluster = service.cluster();
    Totals {
        at: Instant::now(),
        reads,
        commits,
        committed: stats.committed.load(Ordering::Relaxed),
        errors,
        leader: cluster.leader,
        term: cluster.term,
        elections: raft.map_or(0, |r| r.leadership().elections),
        snapshots: snapshot_counts(raft),
    }
}

/// Each follower's log lag from the leader's own state, and its apply lag from a fresh probe.
fn follower_lags(
    leader: &dolmen_admin::RaftStatus,
    probe: Option<&(Instant, ClusterStatus)>,
) -> Vec<FollowerLag> {
    let fresh = probe.filter(|(at, _)| at.elapsed() <= PROBE_FRESH);
    leader
        .members
        .iter()
        .filter(|m| m.id != leader.node_id)
        .map(|m| FollowerLag {
            id: m.id,
            log_lag: m.matched.map(|i| leader.last_log.saturating_sub(i)),
            apply_lag: fresh
                .and_then(|(_, s)| s.nodes.iter().find(|n| n.id == m.id))
                .and_then(|n| Some(n.committed?.saturating_sub(n.applied?))),
        })
        .collect()
}

/// Samples every [`INTERVAL`] until dropped (the task is aborted with the admin server).
pub async fn sample_forever(
    series: Arc<Series>,
    service: Arc<Service>,
    raft: Option<Arc<RaftNode>>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        series.sample(&service, raft.as_deref());
    }
}

/// Probes every member, one round a second after the previous answered (each probe is bounded
/// by the peer transport's 2-second timeout).
pub async fn probe_forever(series: Arc<Series>, raft: Arc<RaftNode>) {
    loop {
        let status = raft.cluster_status().await;
        series.record_probe(status);
        tokio::time::sleep(INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dolmen_admin::{NodeReport, RaftMember, RaftStatus, Role};

    fn member(id: NodeId, matched: Option<u64>) -> RaftMember {
        RaftMember {
            id,
            client_addr: format!("127.0.0.1:{id}"),
            peer_addr: String::new(),
            admin_addr: String::new(),
            voter: true,
            health: Health::Healthy,
            matched,
            last_seen_unix_ms: None,
        }
    }

    fn report(id: NodeId, committed: u64, applied: u64, health: Health) -> NodeReport {
        NodeReport {
            id,
            client_addr: String::new(),
            admin_addr: String::new(),
            role: Role::Follower,
            term: Some(1),
            last_log: Some(committed),
            committed: Some(committed),
            applied: Some(applied),
            health,
            error: (health == Health::Unreachable).then(|| "refused".to_owned()),
        }
    }

    #[test]
    fn the_leader_reads_log_lag_from_its_match_indexes_and_apply_lag_from_a_fresh_probe() {
        let leader = RaftStatus {
            node_id: 1,
            role: Role::Leader,
            term: 2,
            leader: Some(1),
            last_log: 100,
            committed: 100,
            applied: 100,
            snapshot: 0,
            purged: 0,
            members: vec![member(1, Some(100)), member(2, Some(90)), member(3, None)],
            snapshots_built: 0,
            snapshots_installed: 0,
            snapshots_sent: 0,
            running: None,
        };
        let probe = ClusterStatus {
            leader: Some(1),
            leader_last_log: Some(100),
            nodes: vec![report(2, 95, 80, Health::Healthy)],
        };
        let lags = follower_lags(&leader, Some(&(Instant::now(), probe.clone())));
        assert_eq!(
            lags,
            vec![
                FollowerLag {
                    id: 2,
                    log_lag: Some(10),
                    apply_lag: Some(15)
                },
                FollowerLag {
                    id: 3,
                    log_lag: None,
                    apply_lag: None
                },
            ]
        );
        let stale = Instant::now().checked_sub(Duration::from_secs(60));
        if let Some(stale) = stale {
            let lags = follower_lags(&leader, Some(&(stale, probe)));
            assert_eq!(lags[0].apply_lag, None);
        }
    }

    #[test]
    fn probes_note_members_lost_and_back_once_each() {
        let series = Series::default();
        let status = |health| ClusterStatus {
            leader: Some(1),
            leader_last_log: None,
            nodes: vec![report(2, 1, 1, health)],
        };
        series.record_probe(status(Health::Healthy));
        series.record_probe(status(Health::Unreachable));
        series.record_probe(status(Health::Unreachable));
        series.record_probe(status(Health::Healthy));
        let kinds: Vec<_> = series
            .answer(None)
            .events
            .iter()
            .map(|e| (e.kind, e.detail.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (
                    "member_unreachable",
                    "node 2 does not answer: refused".to_owned()
                ),
                ("member_back", "node 2 answers again".to_owned()),
            ]
        );
    }
}
