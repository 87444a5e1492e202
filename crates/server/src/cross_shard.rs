//! Commits across groups, and what readers do about their locks (docs/sharding.md §6.3–§6.5).
//! The gateway that received the commit coordinates:
//!
//! ```text
//!   stamp ← oracle; pieces per group (keys, clipped clear and read-conflict ranges)
//!   Prepare to every participant, in parallel ──▶ every one Prepared? C ← oracle (drawn after
//!       every prepare applied: invariant 3) : abort with the first refusal
//!   Decide{txid, token, outcome} in group 0 ──▶ the recorded decision (the first one wins)
//!   Resolve{txid, commit} to every participant ──▶ Forget in group 0 once all applied
//!   answer the client from the recorded decision (TIMEOUT when it is not known)
//!
//!   a read at R on group g, after its barrier: g's write locks over the keys read?
//!       wait; after LOCK_PATIENCE or for an orphan (stamp older than the orphan age): the decision in
//!       group 0 (an orphan is decided Abort, first writer wins) ─▶ Commit(C > R): not this
//!       read's business; else Resolve it here, and read once the lock is gone
//! ```
//! Every node also sweeps the groups it leads for orphans (`sweep_orphans`), so a lock whose
//! coordinator stopped is resolved even if nobody reads its keys (invariant 10).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dolmen_engine::{
    show_txid, stamp_buffer, Command, Decide, KeyRange, LockInfo, Mutation, Outcome, Prepare,
    Transaction, TxId, Version, VERSIONSTAMP_LEN,
};
use dolmen_raft::{NodeId, ProposeError};

use crate::error::{ErrorCode, ServiceError};
use crate::service::printable;
use crate::shards::{ShardGroup, Shards};

/// Unless `[sharding] orphan_timeout_ms` says otherwise: a lock whose stamp is this many
/// versions (µs) older than the oracle's latest is an orphan's (its coordinator had time to
/// decide several times over), and readers and the sweeper decide it.
pub const DEFAULT_ORPHAN_AGE: Version = 3_000_000;

/// How long a reader waits for a lock to go before it looks up the transaction's decision.
const LOCK_PATIENCE: Duration = Duration::from_millis(100);

/// How often a reader that still meets a lock asks for its decision.
const SETTLE_INTERVAL: Duration = Duration::from_millis(200);

/// The least time a coordinator gives its resolves after the decision.
const RESOLVE_TIME: Duration = Duration::from_secs(2);

/// How often each node sweeps the locks of the groups it leads for orphans.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// The part of a commit that goes to one participant.
#[derive(Debug, Default)]
struct Piece {
    mutations: Vec<(u32, Mutation)>,
    reads: Vec<KeyRange>,
}

/// A new transaction id: `be32 node ‖ be32 process ‖ be64 counter` (the counter starts at the
/// process's start in ns since the epoch, so a restarted node does not reuse ids).
fn next_txid(node: NodeId) -> TxId {
    static COUNTER: OnceLock<AtomicU64> = OnceLock::new();
    let counter = COUNTER.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        AtomicU64::new(now)
    });
    let mut txid = [0u8; 16];
    txid[..4].copy_from_slice(&u32::try_from(node).unwrap_or(u32::MAX).to_be_bytes());
    txid[4..8].copy_from_slice(&std::process::id().to_be_bytes());
    txid[8..].copy_from_slice(&counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    txid
}

/// Whether a refused proposal is known not to have applied (the only errors after which a
/// command is sent again, or its effect ruled out).
fn not_applied(e: &ProposeError) -> bool {
    !matches!(
        e,
        ProposeError::Timeout(_) | ProposeError::NotAppliedByAll { .. }
    )
}

impl Shards {
    /// `[lo, hi)` of column family `cf` clipped to the span of the group at `position`.
    pub(crate) fn clip(&self, position: usize, cf: &str, lo: &[u8], hi: &[u8]) -> KeyRange {
        let span = &self.spans()[position];
        let begin = lo.max(span.start.as_slice()).to_vec();
        let end = match &span.end {
            Some(end) => hi.min(end.as_slice()).to_vec(),
            None => hi.to_vec(),
        };
        KeyRange {
            cf: cf.to_owned(),
            begin,
            end,
        }
    }

    /// The positions of the groups a versionstamped key buffer `key` may land in: those of
    /// `[p ‖ 00×10, p ‖ ff×10]`.
    pub(crate) fn stamp_slots(&self, key: &[u8]) -> std::ops::Range<usize> {
        let lowest = stamp_buffer(key, &[0; VERSIONSTAMP_LEN]);
        let mut past_highest = stamp_buffer(key, &[0xff; VERSIONSTAMP_LEN]);
        past_highest.push(0);
        self.overlapping(&lowest, &past_highest)
    }

    /// The pieces of `tx` by group position (docs/sharding.md §6.1): each key to its owner,
    /// clear ranges and read-conflict ranges clipped to every group they overlap, and a
    /// versionstamped key to every group it may land in (each locks its part; only the owner
    /// of the final key writes it).
    fn pieces(&self, tx: &Transaction) -> BTreeMap<usize, Piece> {
        let mut pieces: BTreeMap<usize, Piece> = BTreeMap::new();
        for (order, mutation) in tx.mutations.iter().enumerate() {
            let order = u32::try_from(order).unwrap_or(u32::MAX);
            match mutation {
                Mutation::Set { key, .. }
                | Mutation::Delete { key, .. }
                | Mutation::SetVersionstampedValue { key, .. } => pieces
                    .entry(self.position(key))
                    .or_default()
                    .mutations
                    .push((order, mutation.clone())),
                Mutation::ClearRange { cf, begin, end } => {
                    for at in self.overlapping(begin, end) {
                        let part = self.clip(at, cf, begin, end);
                        pieces.entry(at).or_default().mutations.push((
                            order,
                            Mutation::ClearRange {
                                cf: part.cf,
                                begin: part.begin,
                                end: part.end,
                            },
                        ));
                    }
                }
                Mutation::SetVersionstampedKey { key, .. } => {
                    for at in self.stamp_slots(key) {
                        pieces
                            .entry(at)
                            .or_default()
                            .mutations
                            .push((order, mutation.clone()));
                    }
                }
            }
        }
        for range in &tx.read_conflicts {
            for at in self.overlapping(&range.begin, &range.end) {
                let part = self.clip(at, &range.cf, &range.begin, &range.end);
                pieces.entry(at).or_default().reads.push(part);
            }
        }
        pieces
    }

    /// Commits `tx` across the groups it reaches, with this node (`node`) as coordinator
    /// (docs/sharding.md §6.3). The answer comes from the decision recorded in group 0:
    /// `Committed` at the commit version, the refusal that aborted it, or `TIMEOUT` when the
    /// decision is not known.
    pub(crate) async fn commit_across(
        &self,
        tx: Transaction,
        node: NodeId,
        timeout: Duration,
    ) -> Result<Outcome, ServiceError> {
        let Some(metadata) = self.metadata() else {
            return Err(ServiceError::new(
                ErrorCode::Unavailable,
                "internal: a commit across groups on a node with one group",
            ));
        };
        let deadline = Instant::now() + timeout;
        let txid = next_txid(node);
        // A fresh oracle version: the locks' age, and the horizon's bound (invariant 11).
        let stamp = self.read_versions().read_version().await?;
        let pieces = self.pieces(&tx);
        let participants: Vec<ShardGroup> =
            pieces.keys().map(|&at| self.groups()[at].clone()).collect();
        let mut prepares = tokio::task::JoinSet::new();
        for (at, piece) in pieces {
            let group = self.groups()[at].clone();
            let command = Command::Prepare(Prepare {
                txid,
                stamp,
                read_version: tx.read_version,
                piece: piece.mutations,
                read_conflicts: piece.reads,
            });
            prepares.spawn(async move {
                tokio::time::timeout_at(deadline.into(), group.replicator.propose(command))
                    .await
                    .unwrap_or(Err(ProposeError::Timeout(timeout)))
            });
        }
        // The first refusal decides; a prepare with no known outcome may hold locks.
        let mut refusal: Option<Outcome> = None;
        let mut maybe_locked = false;
        while let Some(done) = prepares.join_next().await {
            match done {
                Ok(Ok(applied)) if applied.outcome == Outcome::Prepared => maybe_locked = true,
                Ok(Ok(applied)) => {
                    refusal.get_or_insert(match applied.outcome {
                        Outcome::AlreadyResolved => Outcome::Aborted {
                            reason: "the transaction was resolved as an orphan while it \
                                     prepared"
                                .into(),
                        },
                        other => other,
                    });
                }
                Ok(Err(e)) => {
                    maybe_locked |= !not_applied(&e);
                    refusal.get_or_insert(Outcome::Aborted {
                        reason: format!("a participant did not prepare: {e}"),
                    });
                }
                Err(e) => {
                    maybe_locked = true;
                    refusal.get_or_insert(Outcome::Aborted {
                        reason: format!("a prepare's task failed: {e}"),
                    });
                }
            }
        }
        if refusal.is_none() {
            dolmen_engine::failpoint::crash_point(
                dolmen_engine::failpoint::CROSS_SHARD_AFTER_PREPARE,
            );
        }
        let outcome = match refusal {
            Some(refused) => refused,
            // Drawn after every participant applied its prepare (invariant 3), and unique.
            None => match self.read_versions().commit_version().await {
                Ok(version) => Outcome::Committed { version },
                Err(e) => Outcome::Aborted {
                    reason: format!("no commit version from the oracle: {e}"),
                },
            },
        };
        if !maybe_locked && (tx.idempotency.is_none() || matches!(outcome, Outcome::Aborted { .. }))
        {
            // Nothing holds a lock and nothing can, and no token to look up or remember: no
            // decision to record. With a token, group 0's table answers first (a resend of a
            // commit that applied is refused by its own writes in every group, and must get
            // the first outcome, not that refusal: §6.6).
            return Ok(outcome);
        }
        // A token is remembered only with a definite answer: after an abort for want of an
        // answer, the client's retry with the same token must be free to commit.
        let idempotency = match outcome {
            Outcome::Aborted { .. } => None,
            _ => tx.idempotency.clone(),
        };
        let decide = Command::Decide(Decide {
            txid,
            idempotency,
            outcome: outcome.clone(),
        });
        let decided = tokio::time::timeout_at(deadline.into(), metadata.replicator.propose(decide))
            .await
            .unwrap_or(Err(ProposeError::Timeout(timeout)));
        let (commit, answer) = match decided {
            Ok(applied) => match applied.outcome {
                Outcome::Decided { commit, answer } => (commit, *answer),
                other => {
                    return Err(ServiceError::new(
                        ErrorCode::Unavailable,
                        format!("internal: group 0 answered a decision with {other:?}"),
                    ))
                }
            },
            // Nothing recorded, and only this coordinator would record a commit: abort.
            Err(e) if not_applied(&e) => (
                None,
                Outcome::Aborted {
                    reason: format!("group 0 did not record the decision: {e}"),
                },
            ),
            // Recorded or not: the orphan resolution settles the locks with whatever is.
            Err(e) => return Err(e.into()),
        };
        dolmen_engine::failpoint::crash_point(dolmen_engine::failpoint::CROSS_SHARD_AFTER_DECIDE);
        // The decision is durable: the resolves get their own time even if the client's ran
        // out (what they miss, readers and the sweeper finish).
        let resolve_by = deadline.max(Instant::now() + RESOLVE_TIME);
        let unresolved = resolve_all(&participants, txid, stamp, commit, resolve_by).await;
        // Applied on a majority of every participant (if not yet on every voter): nothing
        // needs the record any more.
        let resolved = unresolved
            .iter()
            .all(|(_, e)| matches!(e, ProposeError::NotAppliedByAll { .. }));
        if resolved {
            let metadata = metadata.clone();
            tokio::spawn(async move {
                let forget = Command::Forget { txid };
                if let Err(e) = metadata.replicator.propose(forget).await {
                    tracing::debug!(txid = %show_txid(&txid), error = %e, "decision not forgotten");
                }
            });
        }
        // Under `replication_mode = "all"`, a commit is acknowledged only once every voter of
        // every participant applied it: else `TIMEOUT` naming the voter, as a single-group
        // commit answers (committed on a majority; it will apply there), or naming the
        // participant whose resolve is not known to have applied at all (it will: the decision
        // is recorded, and readers and the sweeper resolve from it). Under `quorum` the
        // recorded decision is the acknowledgement.
        let unconfirmed = unresolved.into_iter().find(|(_, e)| {
            self.every_voter_applies() || matches!(e, ProposeError::NotAppliedByAll { .. })
        });
        match (unconfirmed, commit) {
            (Some((_, e @ ProposeError::NotAppliedByAll { .. })), Some(_)) => Err(e.into()),
            (Some((group, e)), Some(version)) => Err(ServiceError::new(
                ErrorCode::Timeout,
                format!(
                    "TIMEOUT: replication_mode = all: the commit at version {version} is \
                     decided (group 0 recorded it) but data group {group} did not confirm \
                     applying it on every voter: {e}; it will apply there"
                ),
            )),
            _ => Ok(answer),
        }
    }

    /// Waits until no lock of another transaction covers `range` in the group at `position`
    /// for a read at `version` (docs/sharding.md §6.5): a lock whose transaction committed
    /// above `version` does not concern the read; others are waited for, and decided (orphans)
    /// or resolved here from group 0's record. `UNAVAILABLE` after the lock wait
    /// (`[sharding] lock_timeout_ms`, [`Shards::with_lock_timeout`]).
    pub(crate) async fn await_locks(
        &self,
        position: usize,
        range: &KeyRange,
        version: Version,
    ) -> Result<(), ServiceError> {
        let group = &self.groups()[position];
        let started = Instant::now();
        let mut above: BTreeSet<TxId> = BTreeSet::new();
        let mut pause = Duration::from_millis(1);
        let mut last_settle = started - SETTLE_INTERVAL;
        loop {
            let locks: Vec<LockInfo> = group
                .engine
                .write_locks_over(range)
                .into_iter()
                .filter(|lock| !above.contains(&lock.txid))
                .collect();
            let Some(first) = locks.first() else {
                return Ok(());
            };
            if started.elapsed() >= self.lock_timeout() {
                return Err(ServiceError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "key {} in column family '{}' is locked by transaction {} committing \
                         across shards, still undecided after {} ms; retry",
                        printable(&range.begin),
                        range.cf,
                        show_txid(&first.txid),
                        self.lock_timeout().as_millis()
                    ),
                ));
            }
            if started.elapsed() >= LOCK_PATIENCE && last_settle.elapsed() >= SETTLE_INTERVAL {
                last_settle = Instant::now();
                for lock in &locks {
                    match self.settle(group, lock, Some(version)).await {
                        Ok(Some(commit)) if commit > version => {
                            above.insert(lock.txid);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(txid = %show_txid(&lock.txid), error = %e, "lock not settled yet")
                        }
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Moves `lock` of `group` towards its release: reads its decision in group 0 (deciding
    /// Abort for an orphan) and proposes the matching Resolve to `group`, unless the commit
    /// is above `reading` (a reader at that version need not wait for it). Returns the commit
    /// version when the transaction committed.
    async fn settle(
        &self,
        group: &ShardGroup,
        lock: &LockInfo,
        reading: Option<Version>,
    ) -> Result<Option<Version>, ServiceError> {
        let Some(metadata) = self.metadata() else {
            return Ok(None);
        };
        // A barrier on group 0 first, so the record read is at least as new as any decision
        // its coordinator was told about.
        metadata.gate.read_version().await?;
        let recorded = metadata.engine.decision(&lock.txid).map_err(|e| {
            ServiceError::new(
                ErrorCode::Unavailable,
                format!("storage failure reading a decision: {e}"),
            )
        })?;
        let commit = match recorded {
            Some((commit, _)) => commit,
            None => {
                // Its age by the oracle's clock now (a fresh version: the last one this node
                // saw may be old).
                let now = self.read_versions().read_version().await?;
                if now.saturating_sub(lock.stamp) < self.orphan_age() {
                    // Its coordinator may still decide: wait.
                    return Ok(None);
                }
                let decide = Command::Decide(Decide {
                    txid: lock.txid,
                    idempotency: None,
                    outcome: Outcome::Aborted {
                        reason: "its coordinator stopped before deciding (an orphan)".into(),
                    },
                });
                match metadata.replicator.propose(decide).await?.outcome {
                    Outcome::Decided { commit, .. } => commit,
                    other => {
                        return Err(ServiceError::new(
                            ErrorCode::Unavailable,
                            format!("internal: group 0 answered a decision with {other:?}"),
                        ))
                    }
                }
            }
        };
        if let (Some(c), Some(r)) = (commit, reading) {
            if c > r {
                return Ok(commit);
            }
        }
        let resolve = Command::Resolve {
            txid: lock.txid,
            stamp: lock.stamp,
            commit,
        };
        group.replicator.propose(resolve).await?;
        Ok(commit)
    }

    /// One sweep: every lock of the groups this node (`node`) leads whose stamp is older than
    /// the orphan age is decided and resolved (invariant 10).
    async fn sweep(&self, node: NodeId) {
        // The oracle's clock, read once per sweep and only when some lock is there.
        let mut now = None;
        for group in self.groups() {
            // Most groups hold no lock: checked first, it keeps idle groups' sweeps cheap.
            if group.engine.lock_count() == 0 || group.replicator.cluster().leader != Some(node) {
                continue;
            }
            for lock in group.engine.locks() {
                let latest = match now {
                    Some(v) => v,
                    None => match self.read_versions().read_version().await {
                        Ok(v) => *now.insert(v),
                        Err(e) => {
                            tracing::debug!(error = %e, "no version for the orphan sweep");
                            return;
                        }
                    },
                };
                if latest.saturating_sub(lock.stamp) < self.orphan_age() {
                    continue;
                }
                if let Err(e) = self.settle(group, &lock, None).await {
                    tracing::debug!(group = group.id, txid = %show_txid(&lock.txid), error = %e, "orphan not resolved yet");
                }
            }
        }
    }
}

/// Sweeps the groups of `service` for orphaned locks every [`SWEEP_INTERVAL`] until `stop`.
pub(crate) async fn sweep_orphans(
    service: Arc<crate::service::Service>,
    stop: impl std::future::Future<Output = ()>,
) {
    let node = service.cluster().this_node;
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => service.shards().sweep(node).await,
        }
    }
}

/// Proposes the Resolve of `txid` to every participant, in parallel, until `deadline`; returns
/// the participants whose resolve is not confirmed, by group id, with why: a
/// `replication_mode = "all"` timeout (applied on the leader, not yet on every voter), or a
/// failure (not known to have applied). A participant not reached keeps its lock until a
/// reader or the orphan sweeper resolves it from group 0's record.
async fn resolve_all(
    participants: &[ShardGroup],
    txid: TxId,
    stamp: Version,
    commit: Option<Version>,
    deadline: Instant,
) -> Vec<(u64, ProposeError)> {
    let mut resolves = tokio::task::JoinSet::new();
    let mut groups = BTreeMap::new();
    for group in participants {
        let replicator = Arc::clone(&group.replicator);
        let command = Command::Resolve {
            txid,
            stamp,
            commit,
        };
        let (id, waited) = (group.id, deadline.saturating_duration_since(Instant::now()));
        let task = resolves.spawn(async move {
            let done = tokio::time::timeout_at(deadline.into(), replicator.propose(command)).await;
            (id, done.unwrap_or(Err(ProposeError::Timeout(waited))))
        });
        groups.insert(task.id(), id);
    }
    let mut unresolved = Vec::new();
    while let Some(done) = resolves.join_next().await {
        match done {
            Ok((_, Ok(_))) => {}
            Ok((group, Err(e))) => unresolved.push((group, e)),
            Err(e) => unresolved.push((
                groups.get(&e.id()).copied().unwrap_or_default(),
                ProposeError::Unavailable(format!("the resolve task failed: {e}")),
            )),
        }
        dolmen_engine::failpoint::crash_point(
            dolmen_engine::failpoint::CROSS_SHARD_AFTER_FIRST_RESOLVE,
        );
    }
    unresolved.sort_by_key(|(group, _)| *group);
    unresolved
}
