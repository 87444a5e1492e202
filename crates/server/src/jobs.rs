//! The node's background jobs, one of each per group: the retention job (the group's leader
//! advances the MVCC horizon and expires idempotency entries, turning time windows into version
//! bounds through the group's log) and MVCC garbage collection (every replica, per engine
//! handle, paced so a pass starts at most once a window).
//!
//! ```text
//!  retention_job (group leader): every interval ─▶ AppliedSamples ─▶ Compact{horizon},
//!                                                              ExpireIdempotency{before, limit}
//!  gc_job (every handle):        every interval ─▶ GcPacer ─▶ Engine::collect_garbage (a slice)
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_engine::{Command, Engine, Version};
use dolmen_raft::ProposeError;

use crate::shards::ShardGroup;

/// The time-based windows the leader turns into version bounds (`[mvcc]`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Windows {
    /// `retention_window_ms`: how long MVCC history is kept.
    pub(crate) retention: Duration,
    /// `idempotency_window_ms` (≥ `retention`): how long idempotency entries are kept.
    pub(crate) idempotency: Duration,
    /// `compaction_interval_ms`: how often the job looks.
    pub(crate) interval: Duration,
}

/// The ticks of a background job: one per `period` (a late tick delays the next ones rather
/// than bursting), until `stop` resolves.
pub(crate) struct Ticks<S> {
    tick: tokio::time::Interval,
    stop: std::pin::Pin<Box<S>>,
}

impl<S: Future<Output = ()>> Ticks<S> {
    pub(crate) fn new(period: Duration, stop: S) -> Self {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            tick,
            stop: Box::pin(stop),
        }
    }

    /// Waits for the next tick: `true`, or `false` once `stop` resolved.
    pub(crate) async fn next(&mut self) -> bool {
        tokio::select! {
            () = &mut self.stop => false,
            _ = self.tick.tick() => true,
        }
    }
}

/// Advances the MVCC horizon and expires idempotency entries of one group: every `interval`,
/// the horizon becomes the version the group had applied `retention` ago (FoundationDB keeps
/// ~5 s of versions), and idempotency entries recorded before the version it had applied
/// `idempotency` ago are expired. Only the group's leader proposes, and the commands carry
/// versions, never times, so every replica drops the same history and the same entries at the
/// same log position. The node runs one per group.
///
/// The retention commands themselves take a version (one above the version reached), so that
/// an idle group's versions still move and its last idempotency entries age out. Left alone,
/// that would make an idle group propose a `Compact` every interval forever (each one moving
/// the version the next one samples), so a group would never be idle (it could not
/// hibernate, docs/sharding.md §8.3). So the job compacts only while the horizon is not above
/// the last version that may have written data ([`Engine::written_version`]): once it is,
/// raising it frees nothing, and the group rests until something writes again. The horizon
/// ends one step above the last write (the `Compact` to it takes the next version, which the
/// next sample sees), so reads and idempotency entries at that write's version age out too.
/// "Only the job's own commands applied since the last sample" is not the test: a commit
/// that applies while a `Compact` is in flight leaves that `Compact` above it.
pub(crate) async fn retention_job(
    group: ShardGroup,
    windows: Windows,
    stop: impl Future<Output = ()>,
) {
    let engine = &group.engine;
    let mut samples = AppliedSamples::new(windows.idempotency.max(windows.retention));
    let mut ticks = Ticks::new(windows.interval, stop);
    while ticks.next().await {
        let now = Instant::now();
        samples.push(now, engine.applied_version());
        let cluster = group.replicator.cluster();
        if cluster.leader != Some(cluster.this_node) {
            continue;
        }
        if let Some(horizon) = samples.applied_before(now, windows.retention) {
            let current = engine.horizon();
            if horizon > current && engine.written_version() >= current {
                if let Err(e) = compact(&group, horizon).await {
                    tracing::warn!(error = %e, group = group.id, horizon,
                        "could not advance the MVCC horizon");
                }
            }
        }
        let Some(before) = samples.applied_before(now, windows.idempotency) else {
            continue;
        };
        // Applying caps `before` at the horizon; proposing the capped bound keeps the check
        // below honest.
        let before = before.min(engine.horizon());
        if !idempotency_expirable(engine, before).await {
            continue; // nothing to expire: no log entry
        }
        if let Err(e) = expire_idempotency(&group, before).await {
            tracing::warn!(error = %e, group = group.id, before,
                "could not expire idempotency entries");
        }
    }
}

/// Raises `group`'s MVCC retention horizon to `horizon`.
async fn compact(group: &ShardGroup, horizon: Version) -> Result<(), ProposeError> {
    group
        .replicator
        .propose(Command::Compact { horizon })
        .await
        .map(|_| ())
}

/// Forgets `group`'s idempotency entries recorded before `before`, at most
/// [`EXPIRE_IDEMPOTENCY_LIMIT`](dolmen_engine::EXPIRE_IDEMPOTENCY_LIMIT) of them.
async fn expire_idempotency(group: &ShardGroup, before: Version) -> Result<(), ProposeError> {
    group
        .replicator
        .propose(Command::ExpireIdempotency {
            before,
            limit: dolmen_engine::EXPIRE_IDEMPOTENCY_LIMIT,
        })
        .await
        .map(|_| ())
}

/// Whether some idempotency entry was recorded before `before` (one seek into the index, off
/// the async threads).
async fn idempotency_expirable(engine: &Arc<Engine>, before: Version) -> bool {
    let engine = engine.clone();
    match tokio::task::spawn_blocking(move || engine.oldest_idempotency_version()).await {
        Ok(Ok(oldest)) => oldest.is_some_and(|v| v < before),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not read the idempotency index");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the idempotency index panicked");
            false
        }
    }
}

/// `(when, applied version)` samples of this node, oldest first, kept for `keep` (the longest
/// window) plus the newest sample older than that: enough to answer "which version was applied
/// `age` ago" for every `age ≤ keep`. One sample per `compaction_interval_ms`.
#[derive(Debug)]
struct AppliedSamples {
    keep: Duration,
    samples: VecDeque<(Instant, Version)>,
}

impl AppliedSamples {
    fn new(keep: Duration) -> Self {
        Self {
            keep,
            samples: VecDeque::new(),
        }
    }

    /// Records that `version` was applied at `now`, and drops samples no window needs.
    fn push(&mut self, now: Instant, version: Version) {
        self.samples.push_back((now, version));
        while self
            .samples
            .get(1)
            .is_some_and(|&(at, _)| now.duration_since(at) >= self.keep)
        {
            self.samples.pop_front();
        }
    }

    /// The version applied at least `age` before `now` (the newest such sample); `None` until
    /// this node has sampled for `age`.
    fn applied_before(&self, now: Instant, age: Duration) -> Option<Version> {
        let old = self
            .samples
            .partition_point(|&(at, _)| now.duration_since(at) >= age);
        old.checked_sub(1).map(|i| self.samples[i].1)
    }
}

/// Deletes unobservable MVCC versions in the background, a bounded slice every `interval`,
/// paced by [`GcPacer`].
pub(crate) async fn gc_job(
    engine: Arc<Engine>,
    interval: Duration,
    window: Duration,
    stop: impl Future<Output = ()>,
) {
    const KEYS_PER_SLICE: u64 = 10_000;
    let mut ticks = Ticks::new(interval.max(Duration::from_millis(100)), stop);
    let mut pacer = GcPacer::new(window);
    while ticks.next().await {
        let horizon = engine.horizon();
        if !pacer.should_run(horizon, Instant::now()) {
            continue;
        }
        let engine = engine.clone();
        let slice =
            tokio::task::spawn_blocking(move || engine.collect_garbage(KEYS_PER_SLICE)).await;
        match slice {
            Ok(Ok(report)) if report.wrapped => pacer.pass_done(horizon),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "garbage collection failed"),
            Err(e) => tracing::warn!(error = %e, "garbage collection panicked"),
        }
    }
}

/// When [`gc_job`] runs a slice. A pass over the keyspace, once started, runs a slice every
/// tick to its end. A new pass starts once the horizon moved since the last full pass and a
/// retention `window` has gone by since that pass started: a version turns into garbage only
/// once it is older than the window, so a pass every tick (the horizon's pace) would read every
/// live version again to find a tick's worth of garbage. Garbage lives about two windows at most.
#[derive(Debug)]
struct GcPacer {
    window: Duration,
    /// The horizon of the last full pass.
    done_horizon: Version,
    /// When the current pass started; `None` between passes.
    started: Option<Instant>,
    /// The earliest start of the next pass; `None`: at once.
    next: Option<Instant>,
}

impl GcPacer {
    fn new(window: Duration) -> Self {
        Self {
            window,
            done_horizon: 0,
            started: None,
            next: None,
        }
    }

    /// Whether to run a slice now, at `horizon`; starts a pass if none is running.
    fn should_run(&mut self, horizon: Version, now: Instant) -> bool {
        if horizon == self.done_horizon {
            return false;
        }
        if self.started.is_none() {
            if self.next.is_some_and(|next| now < next) {
                return false;
            }
            self.started = Some(now);
        }
        true
    }

    /// The last slice, run at `horizon`, finished the pass.
    fn pass_done(&mut self, horizon: Version) {
        self.done_horizon = horizon;
        if let Some(started) = self.started.take() {
            self.next = Some(started + self.window);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(5);

    #[test]
    fn applied_samples_answer_every_window_up_to_the_longest_and_stay_bounded() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut samples = AppliedSamples::new(Duration::from_secs(10));
        for s in 0..=100u64 {
            // Version 10·s applied at second s.
            samples.push(at(s), 10 * s);
        }
        let now = at(100);
        assert_eq!(
            samples.applied_before(now, Duration::from_secs(5)),
            Some(950)
        );
        assert_eq!(
            samples.applied_before(now, Duration::from_secs(10)),
            Some(900)
        );
        assert_eq!(samples.applied_before(now, Duration::ZERO), Some(1000));
        // Samples older than the longest window are dropped but the newest of them.
        assert_eq!(samples.samples.len(), 11);
        // A window longer than what was sampled has no answer yet.
        let fresh = AppliedSamples::new(Duration::from_secs(10));
        assert_eq!(fresh.applied_before(now, Duration::from_secs(1)), None);
    }

    #[test]
    fn gc_passes_start_at_most_once_per_window_and_run_to_their_end() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut pacer = GcPacer::new(WINDOW);
        // Horizon 0: nothing is garbage yet.
        assert!(!pacer.should_run(0, at(0)));
        // The first pass starts at once and runs a slice every tick until it wraps.
        assert!(pacer.should_run(10, at(0)));
        assert!(pacer.should_run(11, at(1_000)));
        pacer.pass_done(11);
        // The horizon moves every tick, but the next pass waits a window after the last start.
        assert!(!pacer.should_run(12, at(2_000)));
        assert!(!pacer.should_run(15, at(4_999)));
        assert!(pacer.should_run(15, at(5_000)));
        assert!(pacer.should_run(16, at(6_000)));
        pacer.pass_done(16);
        assert!(!pacer.should_run(17, at(9_999)));
        assert!(pacer.should_run(17, at(10_000)));
        // Mid-pass, a slice runs every tick, past the next pass's earliest start too.
        assert!(pacer.should_run(30, at(16_000)));
        pacer.pass_done(30);
        assert!(pacer.should_run(31, at(16_001)));
    }

    /// Group `group` of `base`'s database over `span`, with its own writer.
    fn group(base: &Engine, group: u64, span: dolmen_engine::KeySpan) -> ShardGroup {
        let engine = Arc::new(base.open_group(group, span).unwrap());
        let direct = Arc::new(
            dolmen_raft::Direct::start(
                engine.clone(),
                dolmen_raft::DirectOptions {
                    node_id: 0,
                    client_addr: "127.0.0.1:0".to_owned(),
                    max_batch: 64,
                    max_outstanding: 1024,
                },
            )
            .unwrap(),
        );
        ShardGroup {
            id: group,
            engine,
            replicator: direct.clone(),
            gate: direct,
        }
    }

    /// One group over a whole database in a temporary directory, with one commit (carrying an
    /// idempotency token) applied.
    async fn one_group_with_a_commit() -> (tempfile::TempDir, ShardGroup) {
        let dir = tempfile::tempdir().unwrap();
        let base = Engine::open(&dolmen_engine::EngineOptions::new(
            dir.path().join("db"),
            vec!["default".to_owned()],
        ))
        .unwrap();
        let only = group(&base, 1, dolmen_engine::KeySpan::all());
        commit_once(&only, b"a").await;
        (dir, only)
    }

    /// A commit with an idempotency token, through `group`'s replicator.
    async fn commit_once(group: &ShardGroup, key: &[u8]) {
        let tx = dolmen_engine::Transaction {
            mutations: vec![dolmen_engine::Mutation::Set {
                cf: "default".to_owned(),
                key: key.to_vec(),
                value: b"v".to_vec(),
            }],
            idempotency: Some(dolmen_engine::IdempotencyToken {
                client_id: b"client".to_vec(),
                sequence: 1,
            }),
            ..dolmen_engine::Transaction::default()
        };
        group.replicator.propose(Command::Commit(tx)).await.unwrap();
    }

    /// Counts the commands proposed through it.
    struct Counting {
        inner: Arc<dyn dolmen_raft::Replicator>,
        proposed: std::sync::atomic::AtomicU64,
    }

    impl dolmen_raft::Replicator for Counting {
        fn propose(
            &self,
            command: Command,
        ) -> dolmen_raft::BoxFuture<'_, Result<dolmen_raft::Applied, ProposeError>> {
            self.proposed
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.propose(command)
        }

        fn cluster(&self) -> dolmen_raft::ClusterView {
            self.inner.cluster()
        }
    }

    /// An idle group's retention commands stop: once its last commit's idempotency entry
    /// expired (which needs the horizon above the commit), the job proposes nothing more
    /// (rather than a `Compact` every interval, each moving the version the next one samples).
    #[tokio::test]
    async fn an_idle_group_goes_quiet_once_its_entries_expired() {
        let (_dir, plain) = one_group_with_a_commit().await;
        let counting = Arc::new(Counting {
            inner: plain.replicator.clone(),
            proposed: std::sync::atomic::AtomicU64::new(0),
        });
        let only = ShardGroup {
            replicator: counting.clone(),
            ..plain
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let job = tokio::spawn(retention_job(
            only.clone(),
            Windows {
                retention: Duration::from_millis(30),
                idempotency: Duration::from_millis(400),
                interval: Duration::from_millis(5),
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while only.engine.idempotency_entries() > 0 {
            assert!(Instant::now() < deadline, "the last entry never expired");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(only.engine.horizon() > 0, "the horizon moved");
        tokio::time::sleep(Duration::from_millis(60)).await;
        let settled = counting.proposed.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let more = counting.proposed.load(std::sync::atomic::Ordering::SeqCst) - settled;
        let _ = stop.send(());
        job.await.unwrap();
        assert_eq!(
            more, 0,
            "an idle group's job proposed {more} commands in 300 ms (one per 5 ms interval \
             would be about 60)"
        );
    }

    /// Applies one commit just before the first `Compact` proposed through it once armed, as a
    /// commit (or a resolve across groups) does when it applies while the job's `Compact` is in
    /// flight; records the commit's version.
    struct CommitBeforeCompact {
        inner: Arc<dyn dolmen_raft::Replicator>,
        armed: std::sync::atomic::AtomicBool,
        committed: std::sync::Mutex<Option<Version>>,
    }

    impl dolmen_raft::Replicator for CommitBeforeCompact {
        fn propose(
            &self,
            command: Command,
        ) -> dolmen_raft::BoxFuture<'_, Result<dolmen_raft::Applied, ProposeError>> {
            Box::pin(async move {
                let race = matches!(command, Command::Compact { .. })
                    && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst);
                if race {
                    let commit = Command::Commit(dolmen_engine::Transaction {
                        mutations: vec![dolmen_engine::Mutation::Set {
                            cf: "default".to_owned(),
                            key: b"race".to_vec(),
                            value: b"v".to_vec(),
                        }],
                        ..dolmen_engine::Transaction::default()
                    });
                    let applied = self.inner.propose(commit).await?;
                    *self.committed.lock().unwrap() = Some(applied.version);
                }
                self.inner.propose(command).await
            })
        }

        fn cluster(&self) -> dolmen_raft::ClusterView {
            self.inner.cluster()
        }
    }

    /// Regression: a commit that applies while the job's `Compact` is in flight leaves that
    /// `Compact` one version above it; the job must still compact past the commit, not take
    /// the sampled version for its own and rest (the horizon of a data group then stayed
    /// below a client's read version for an idempotency window).
    #[tokio::test]
    async fn a_commit_applied_under_an_in_flight_compact_is_still_compacted_past() {
        let (_dir, plain) = one_group_with_a_commit().await;
        let racing = Arc::new(CommitBeforeCompact {
            inner: plain.replicator.clone(),
            armed: std::sync::atomic::AtomicBool::new(true),
            committed: std::sync::Mutex::new(None),
        });
        let raced = ShardGroup {
            replicator: racing.clone(),
            ..plain
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let job = tokio::spawn(retention_job(
            raced.clone(),
            Windows {
                retention: Duration::from_millis(30),
                // Far longer than the wait below.
                idempotency: Duration::from_secs(600),
                interval: Duration::from_millis(5),
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let committed = *racing.committed.lock().unwrap();
            if committed.is_some_and(|v| raced.engine.horizon() >= v) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the horizon {} never reached the commit applied under the Compact ({committed:?})",
                raced.engine.horizon()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop.send(());
        job.await.unwrap();
    }

    #[tokio::test]
    async fn the_retention_job_of_one_group_compacts_and_expires_that_group_only() {
        let dir = tempfile::tempdir().unwrap();
        let base = Engine::open(&dolmen_engine::EngineOptions::new(
            dir.path().join("db"),
            vec!["default".to_owned()],
        ))
        .unwrap();
        let low = group(
            &base,
            1,
            dolmen_engine::KeySpan::new(Vec::new(), Some(b"m".to_vec())).unwrap(),
        );
        let high = group(
            &base,
            2,
            dolmen_engine::KeySpan::new(b"m".to_vec(), None).unwrap(),
        );
        commit_once(&low, b"a").await;
        commit_once(&high, b"z").await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let job = tokio::spawn(retention_job(
            low.clone(),
            Windows {
                retention: Duration::ZERO,
                idempotency: Duration::ZERO,
                interval: Duration::from_millis(10),
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while low.engine.horizon() == 0 || low.engine.idempotency_entries() > 0 {
            assert!(
                Instant::now() < deadline,
                "group 1: horizon {}, {} idempotency entries",
                low.engine.horizon(),
                low.engine.idempotency_entries()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop.send(());
        job.await.unwrap();
        // The other group's history and idempotency entries are untouched.
        assert_eq!(high.engine.horizon(), 0);
        assert_eq!(high.engine.idempotency_entries(), 1);
    }

    #[test]
    fn gc_waits_for_the_horizon_to_move_after_a_full_pass() {
        let t0 = Instant::now();
        let mut pacer = GcPacer::new(WINDOW);
        assert!(pacer.should_run(7, t0));
        pacer.pass_done(7);
        // Nothing new can be garbage while the horizon stands still, however long it stands.
        assert!(!pacer.should_run(7, t0 + WINDOW * 10));
        assert!(pacer.should_run(8, t0 + WINDOW * 10));
    }
}
