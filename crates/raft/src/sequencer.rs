//! The oracle and the sequencer of a Raft group's leader (docs/sharding.md §3.2, §6.2): commit
//! versions are drawn from an [`OracleState`] whose upper bound is persisted in the group's
//! replicated state, and every commit carries its version into the log (`Stamp::Sequenced`).
//!
//! ```text
//!  write(commit) ─▶ register in `pending` ─▶ queue ─▶ lock (whoever holds it takes the whole
//!                  │   queue as one batch; the batch runs in its own task, so a cancelled writer
//!                  │   never strands the others)
//!                  ├▶ ready for this term? (else: blank applied; own oracle: last = max(bound,
//!                  │   applied), persist bound = max(last, now) + window)
//!                  ├▶ n versions: own oracle: max(last + 1, now).. (above the bound? persist a
//!                  │   higher one first) │ group 0's oracle: one Timestamps grant for the batch
//!                  └▶ client_write_ff(commit @ v, term) for each, in version order ─▶ unlock
//!  reply: Applied                        ─▶ the answer, leave `pending`
//!         NotSequenced (term, order)     ─▶ draw again, at most MAX_SEQUENCING_TRIES times
//!  settled(R): waits until no commit registered before the call is undrawn or drawn ≤ R and
//!              unapplied (the barrier of a read at R in a data group, docs/sharding.md §5.2)
//! ```
//!
//! Why it holds (docs/sharding.md §13):
//! - **Never backwards.** A leader hands out no version above the bound it has seen applied
//!   (it persists a higher bound first), and a new leader starts above the persisted bound and
//!   above the applied version, after its blank entry applied (so it has seen every bound and
//!   every commit its predecessors got committed). Restarts and clocks that step back change
//!   nothing: the state is in the log.
//! - **Apply order is version order.** Within a term, versions are drawn and entries submitted to
//!   the Raft core under one lock, so the log holds them in version order. At apply, an entry
//!   whose term is not the one it was drawn in, or whose version is not above every version
//!   applied before it, applies nothing (`NotSequenced`); the leader draws again. So every
//!   replica applies commits in increasing version order, and "applied up to version `v`"
//!   means every commit at or below `v` that will ever apply has.
//! - Entries other than commits take no version of their own (they apply at the version
//!   reached), so they never push a commit out of order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_engine::{Command, Engine, Stamp, Transaction, Version};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::impls::ProgressResponder;
use openraft::raft::{ClientWriteResponse, ReadPolicy};
use tokio::sync::{oneshot, watch, Notify};

use crate::oracle::{Clock, OracleState, VersionGrant};
use crate::shard::GroupZeroOracle;
use crate::state_machine::{AppliedPosition, EntryReply};
use crate::types::{DolmenRaft, Raft};
use crate::{Applied, NodeId, ProposeError};

/// How many times a commit is drawn and proposed again after `NotSequenced` before the writer
/// gets `UNAVAILABLE` (nothing applied).
pub const MAX_SEQUENCING_TRIES: usize = 3;

/// The default span of wall time one persisted bound covers: one Raft write per window
/// (as PD's `tso-save-interval`).
pub const DEFAULT_ORACLE_WINDOW: Duration = Duration::from_secs(3);

/// A write the sequencer put in the log and saw applied.
#[derive(Debug)]
pub(crate) struct Written {
    /// The entry's log index.
    pub index: u64,
    /// Its version and outcome.
    pub applied: Applied,
}

/// Why a write through the sequencer has no outcome.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// From the Raft core, as `client_write` reports it.
    #[error(transparent)]
    Raft(#[from] RaftError<DolmenRaft, ClientWriteError<DolmenRaft>>),
    /// This node does not lead the group (any more); nothing was proposed.
    #[error("node {0} does not lead")]
    NotLeader(NodeId),
    /// The oracle could not become ready or persist its bound (no quorum, lost leadership);
    /// nothing was proposed.
    #[error("the oracle cannot hand out versions: {0}")]
    Oracle(String),
    /// The Raft core stopped after the commit was handed to it: it may have been appended, so
    /// the outcome is unknown.
    #[error("the Raft core stopped after the commit was handed to it: {0}")]
    Unknown(String),
    /// Every try applied nothing (`NotSequenced`); nothing applied.
    #[error("the commit was drawn a version {MAX_SEQUENCING_TRIES} times and each time another leader's entries came first ({0}); nothing applied")]
    NotSequenced(String),
}

impl WriteError {
    /// The same refusal for every commit of a batch (nothing of the batch was proposed).
    fn for_batch(&self) -> Self {
        match self {
            Self::NotLeader(node) => Self::NotLeader(*node),
            other => Self::Oracle(other.to_string()),
        }
    }
}

/// The oracle's state on this node while it leads term `term` (0: not serving).
#[derive(Debug)]
struct Serving {
    term: u64,
    state: OracleState,
    bound: Version,
}

/// Where a group's commit versions come from.
pub(crate) enum VersionSource {
    /// The group's own oracle on its leader, its bound persisted in the group's own log
    /// (`OracleBound`): group 0, which is also the only group of an unsharded cluster.
    Own {
        /// How far ahead of handed-out versions the bound is persisted, in µs.
        window_us: u64,
        /// What "now" is.
        clock: Clock,
    },
    /// Group 0's oracle, one grant per batch (a data group of a sharded node).
    GroupZero(Arc<GroupZeroOracle>),
}

/// A commit waiting to be drawn a version and handed to the Raft core.
struct Job {
    txn: Transaction,
    ticket: u64,
    /// Receives the Raft core's answer channel once the commit was handed to it, or why it
    /// was not.
    handed: oneshot::Sender<Result<Reply, WriteError>>,
}

/// The Raft core's answer to one handed-over commit.
type Reply =
    oneshot::Receiver<Result<ClientWriteResponse<DolmenRaft>, ClientWriteError<DolmenRaft>>>;

/// Commits this leader is sequencing: registered before their version is drawn, left when
/// they applied or failed (docs/sharding.md §5.2, invariant 3).
#[derive(Default)]
struct Pending {
    next: u64,
    /// Ticket → its version once drawn.
    drawn: BTreeMap<u64, Option<Version>>,
}

/// The oracle and sequencer of one Raft group on one node; serves only while the node leads.
pub(crate) struct Sequencer {
    raft: Raft,
    node_id: NodeId,
    engine: Arc<Engine>,
    applied: watch::Receiver<AppliedPosition>,
    /// Held from drawing versions until their entries are handed to the Raft core: the log
    /// order is the version order.
    serving: Arc<tokio::sync::Mutex<Serving>>,
    /// Commits queued for the next batch.
    queue: parking_lot::Mutex<Vec<Job>>,
    pending: parking_lot::Mutex<Pending>,
    /// Signalled whenever a pending commit is drawn or leaves.
    pending_changed: Notify,
    /// A background bound extension is in flight.
    extending: AtomicBool,
    source: VersionSource,
    /// Upper bound of the start-of-term wait for the blank entry.
    ready_timeout: Duration,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Sequencer {
    /// The sequencer of `raft` on node `node_id`, over the group's `engine` and applied watch,
    /// drawing versions from `source`.
    pub(crate) fn new(
        raft: Raft,
        node_id: NodeId,
        engine: Arc<Engine>,
        applied: watch::Receiver<AppliedPosition>,
        source: VersionSource,
        ready_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            raft,
            node_id,
            engine,
            applied,
            serving: Arc::new(tokio::sync::Mutex::new(Serving {
                term: 0,
                state: OracleState::new(0),
                bound: 0,
            })),
            queue: parking_lot::Mutex::new(Vec::new()),
            pending: parking_lot::Mutex::new(Pending::default()),
            pending_changed: Notify::new(),
            extending: AtomicBool::new(false),
            source,
            ready_timeout,
        })
    }

    /// The own oracle's source: a bound `window` ahead, on `clock`.
    pub(crate) fn own_source(window: Duration, clock: Clock) -> VersionSource {
        VersionSource::Own {
            window_us: u64::try_from(window.as_micros()).unwrap_or(u64::MAX).max(1),
            clock,
        }
    }

    /// Proposes `command` and waits until it applied here. A commit gets its version from the
    /// oracle (drawn again when it applied nothing: [`MAX_SEQUENCING_TRIES`]); any other
    /// command goes to the log as it is.
    pub(crate) async fn write(self: &Arc<Self>, command: Command) -> Result<Written, WriteError> {
        let Command::Commit(txn) = command else {
            let response = self.raft.client_write(command).await?;
            return applied(response)
                .map_err(|refused| WriteError::NotSequenced(refused.to_string()));
        };
        // In its own task: a writer that stops waiting (a client deadline) neither withdraws
        // the commit nor takes it out of `pending` before it applied or failed.
        let this = Arc::clone(self);
        tokio::spawn(async move { this.write_commit(txn).await })
            .await
            .map_err(|e| WriteError::Unknown(format!("the commit's task stopped: {e}")))?
    }

    async fn write_commit(self: &Arc<Self>, txn: Transaction) -> Result<Written, WriteError> {
        let ticket = Ticket::register(self);
        let mut last_refusal = String::new();
        for _ in 0..MAX_SEQUENCING_TRIES {
            let reply = self.hand_over(ticket.id, txn.clone()).await?;
            let response = reply
                .await
                .map_err(|_| WriteError::Unknown("its answer was dropped".into()))?
                .map_err(RaftError::APIError)?;
            match applied(response) {
                Ok(written) => return Ok(written),
                Err(refused) => {
                    last_refusal = refused.to_string();
                    self.set_drawn(ticket.id, None);
                }
            }
        }
        Err(WriteError::NotSequenced(last_refusal))
    }

    /// Queues `txn` and returns once it was handed to the Raft core with a version: in a batch
    /// with every commit queued meanwhile, one version draw for the whole batch. Whoever takes
    /// the lock runs the queue as one batch in its own task (a writer cancelled meanwhile
    /// strands nobody).
    async fn hand_over(
        self: &Arc<Self>,
        ticket: u64,
        txn: Transaction,
    ) -> Result<Reply, WriteError> {
        let (handed, answer) = oneshot::channel();
        self.queue.lock().push(Job {
            txn,
            ticket,
            handed,
        });
        let serving = Arc::clone(&self.serving).lock_owned().await;
        let jobs = std::mem::take(&mut *self.queue.lock());
        if !jobs.is_empty() {
            let this = Arc::clone(self);
            let batch = tokio::spawn(async move {
                let mut serving = serving;
                this.run_batch(&mut serving, jobs).await;
            });
            // Holding the lock is the batch task's job; waiting here only paces this writer.
            let _ = batch.await;
        }
        answer
            .await
            .map_err(|_| WriteError::Unknown("the batch that held it stopped".into()))?
    }

    /// Draws versions for `jobs` and hands each to the Raft core in version order; answers
    /// every job.
    async fn run_batch(self: &Arc<Self>, serving: &mut Serving, jobs: Vec<Job>) {
        let count = u64::try_from(jobs.len()).unwrap_or(u64::MAX);
        let drawn = match self.ensure_ready(serving).await {
            Ok(()) => self.draw(serving, count).await,
            Err(e) => Err(e),
        };
        let versions = match drawn {
            Ok(versions) => versions,
            Err(e) => {
                for job in jobs {
                    let _ = job.handed.send(Err(e.for_batch()));
                }
                return;
            }
        };
        let term = serving.term;
        for (job, version) in jobs.into_iter().zip(versions) {
            self.set_drawn(job.ticket, Some(version));
            let mut sequenced = job.txn;
            sequenced.stamp = Some(Stamp::Sequenced { version, term });
            let (responder, reply) = ProgressResponder::complete_only();
            let handed = self
                .raft
                .client_write_ff(Command::Commit(sequenced), Some(responder))
                .await
                .map(|()| reply)
                .map_err(|fatal| WriteError::Raft(RaftError::Fatal(fatal)));
            let _ = job.handed.send(handed);
        }
    }

    fn set_drawn(&self, ticket: u64, version: Option<Version>) {
        if let Some(slot) = self.pending.lock().drawn.get_mut(&ticket) {
            *slot = version;
        }
        self.pending_changed.notify_waiters();
    }

    /// Waits until every commit registered before this call has applied, failed, or been drawn
    /// a version above `covering`: after that, no commit at or below `covering` that this
    /// leader was sequencing can still apply (docs/sharding.md §5.2). `Timeout` after
    /// `timeout`.
    pub(crate) async fn settled(
        &self,
        covering: Version,
        timeout: Duration,
    ) -> Result<(), ProposeError> {
        let start = Instant::now();
        let before = self.pending.lock().next;
        loop {
            let changed = self.pending_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let waiting = self
                .pending
                .lock()
                .drawn
                .range(..before)
                .any(|(_, drawn)| drawn.is_none_or(|v| v <= covering));
            if !waiting {
                return Ok(());
            }
            let left = timeout.saturating_sub(start.elapsed());
            if tokio::time::timeout(left, changed).await.is_err() {
                return Err(ProposeError::Timeout(start.elapsed()));
            }
        }
    }

    /// Starts the oracle as soon as this node becomes leader, rather than at the first write:
    /// a fresh group then gets its first version at once (an empty commit, when nothing was
    /// ever committed), so its nodes report ready and reads see a version above 0. Runs until
    /// the Raft core stops.
    pub(crate) fn follow_leadership(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut server = this.raft.server_metrics();
            let mut started = 0;
            loop {
                if let Ok(term) = this.leading_term() {
                    if term != started {
                        started = term;
                        this.start_term(term).await;
                    }
                }
                if server.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Makes the oracle ready for `term` and, in a group where nothing was ever committed,
    /// commits an empty transaction; tries a few times while this node leads `term`.
    async fn start_term(self: &Arc<Self>, term: u64) {
        const TRIES: u32 = 10;
        for _ in 0..TRIES {
            let ready = {
                let mut serving = self.serving.lock().await;
                self.ensure_ready(&mut serving).await
            };
            let done = match ready {
                Ok(()) => {
                    if self.engine.applied_version() > 0 {
                        return;
                    }
                    self.write(Command::Commit(Transaction::default())).await
                }
                Err(e) => Err(e),
            };
            match done {
                Ok(_) => return,
                Err(e) if self.leading_term().ok() == Some(term) => {
                    tracing::debug!(node = self.node_id, term, error = %e, "the oracle is not serving yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => return,
            }
        }
    }

    /// `count` commit versions and, if `want_read`, a read version (a fresh one, above every
    /// version handed out before), while this node leads. The caller confirms
    /// leadership for versions that leave the node (docs/sharding.md §3.2).
    pub(crate) async fn grant(
        self: &Arc<Self>,
        count: u32,
        want_read: bool,
    ) -> Result<VersionGrant, WriteError> {
        if let VersionSource::GroupZero(_) = self.source {
            return Err(WriteError::Oracle(
                "a data group hands out no versions: group 0 is the oracle".into(),
            ));
        }
        let mut serving = self.serving.lock().await;
        self.ensure_ready(&mut serving).await?;
        let first = if count > 0 {
            self.draw(&mut serving, u64::from(count)).await?.start
        } else {
            0
        };
        // A read version is drawn like a commit version: above everything handed out and at
        // least the clock. So it also stays above the versions a data group takes without the
        // oracle (its retention commands take one above the version it reached), whose
        // horizon would otherwise pass a fresh read version of an idle group.
        let read_version = if want_read {
            Some(self.draw(&mut serving, 1).await?.start)
        } else {
            None
        };
        Ok(VersionGrant {
            first,
            count,
            read_version,
        })
    }

    /// Makes the (locked) oracle ready to serve the current term: on the first call of a term,
    /// waits for the term's blank entry to apply; the own oracle then starts above the
    /// persisted bound and the applied version, and persists a bound one window ahead.
    async fn ensure_ready(&self, serving: &mut Serving) -> Result<(), WriteError> {
        let term = self.leading_term()?;
        if serving.term == term {
            return Ok(());
        }
        serving.term = 0;
        // The read index of a leader is at least its blank entry: once it applied, this node
        // has applied every bound and every commit an earlier leader got committed.
        let index = match self.raft.get_read_log_id(ReadPolicy::ReadIndex).await {
            Ok((read_log_id, _)) => read_log_id.index(),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_))) => {
                return Err(WriteError::NotLeader(self.node_id))
            }
            Err(e) => {
                return Err(WriteError::Oracle(format!(
                    "cannot confirm leadership: {e}"
                )))
            }
        };
        let mut applied = self.applied.clone();
        tokio::time::timeout(self.ready_timeout, applied.wait_for(|p| p.index >= index))
            .await
            .map_err(|_| {
                WriteError::Oracle(format!(
                    "this leader did not apply its first entry (index {index}) within {:?}",
                    self.ready_timeout
                ))
            })?
            .map_err(|_| WriteError::Oracle("the node is shutting down".into()))?;
        if let VersionSource::Own { .. } = self.source {
            let bound = self
                .engine
                .oracle_bound()
                .map_err(|e| WriteError::Oracle(format!("cannot read the oracle bound: {e}")))?;
            let start = bound.max(self.engine.applied_version());
            serving.state = OracleState::new(start);
            serving.bound = self.persist_bound(start).await?;
        }
        // Still the same term: versions drawn from here on are in order in its log.
        if self.leading_term()? != term {
            return Err(WriteError::NotLeader(self.node_id));
        }
        serving.term = term;
        tracing::info!(
            node = self.node_id,
            group = self.engine.group(),
            term,
            start = serving.state.last(),
            bound = serving.bound,
            "sequencer serving"
        );
        Ok(())
    }

    /// `n` versions; persists a higher bound first if they would pass the current one, and
    /// starts a background extension once half the window is used.
    async fn draw(
        self: &Arc<Self>,
        serving: &mut Serving,
        n: u64,
    ) -> Result<std::ops::Range<Version>, WriteError> {
        let (window_us, clock) = match &self.source {
            VersionSource::Own { window_us, clock } => (*window_us, clock),
            VersionSource::GroupZero(oracle) => {
                let count = u32::try_from(n).map_err(|_| {
                    WriteError::Oracle(format!("{n} versions in one batch is too many"))
                })?;
                // Group 0's refusals, not this group's: nothing was proposed.
                let grant = oracle
                    .grant(count, false)
                    .await
                    .map_err(|e| WriteError::Oracle(format!("group 0's oracle: {e}")))?;
                return Ok(grant.first..grant.first + n);
            }
        };
        let range = serving.state.next(clock(), n);
        if serving.state.last() > serving.bound {
            serving.bound = self.persist_bound(serving.state.last()).await?;
        } else if serving.state.last() + window_us / 2 > serving.bound
            && !self.extending.swap(true, Ordering::SeqCst)
        {
            let this = Arc::clone(self);
            let (term, from) = (serving.term, serving.state.last());
            tokio::spawn(async move {
                let persisted = this.persist_bound(from).await;
                let mut serving = this.serving.lock().await;
                if let (Ok(bound), true) = (persisted, serving.term == term) {
                    serving.bound = serving.bound.max(bound);
                }
                this.extending.store(false, Ordering::SeqCst);
            });
        }
        Ok(range)
    }

    /// Proposes the bound `max(from, now) + window` and waits until it applied here.
    async fn persist_bound(&self, from: Version) -> Result<Version, WriteError> {
        let VersionSource::Own { window_us, clock } = &self.source else {
            return Err(WriteError::Oracle(
                "a data group persists no oracle bound".into(),
            ));
        };
        let bound = from.max(clock()).saturating_add(*window_us);
        match self.raft.client_write(Command::OracleBound { bound }).await {
            Ok(_) => Ok(bound),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(WriteError::NotLeader(self.node_id))
            }
            Err(e) => Err(WriteError::Oracle(format!(
                "cannot persist the oracle bound: {e}"
            ))),
        }
    }

    /// The current term, if this node leads it.
    fn leading_term(&self) -> Result<u64, WriteError> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        if m.current_leader == Some(self.node_id) {
            Ok(m.current_term)
        } else {
            Err(WriteError::NotLeader(self.node_id))
        }
    }
}

/// The outcome of an applied entry, or why it applied nothing.
fn applied(
    response: ClientWriteResponse<DolmenRaft>,
) -> Result<Written, crate::state_machine::NotSequenced> {
    match response.data {
        EntryReply::Applied(applied) => Ok(Written {
            index: response.log_id.index,
            applied,
        }),
        EntryReply::NotSequenced(refused) => Err(refused),
    }
}

/// A commit's place in [`Pending`]; leaves it when dropped (applied, failed, or its writer
/// gone).
struct Ticket {
    sequencer: Arc<Sequencer>,
    id: u64,
}

impl Ticket {
    fn register(sequencer: &Arc<Sequencer>) -> Self {
        let id = {
            let mut pending = sequencer.pending.lock();
            let id = pending.next;
            pending.next += 1;
            pending.drawn.insert(id, None);
            id
        };
        Self {
            sequencer: Arc::clone(sequencer),
            id,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.sequencer.pending.lock().drawn.remove(&self.id);
        self.sequencer.pending_changed.notify_waiters();
    }
}
