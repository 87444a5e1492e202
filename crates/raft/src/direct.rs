//! `Direct`: the standalone replicator. Commands are ordered by one writer thread that assigns
//! the next versions and applies everything queued as one fsynced batch (group commit).
//!
//! ```text
//!   propose ─▶ bounded queue ─▶ writer thread: drain ≤ max_batch ─▶ versions from the local
//!              oracle ─▶ Engine::apply_batch(Sync) ─▶ answer each proposer ─▶ publish applied
//! ```
//!
//! Versions are in FoundationDB units (`oracle.rs`, docs/sharding.md §3.4): each command gets
//! `max(last + 1, now in µs)`. The oracle starts at the engine's applied version, and the
//! versions it hands out are only ever seen after the batch that carries them, with the applied
//! version, is synced: so they never go back, across restarts and clock steps alike.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dolmen_engine::{Command, Durability, Engine, Version};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::oracle::{system_clock, Clock, OracleState};
use crate::replicator::{
    Applied, BoxFuture, ClusterView, Health, MemberView, NodeId, ProposeError, ReadError, ReadGate,
    Replicator, Role,
};

/// Tuning of the standalone replicator.
#[derive(Clone, Debug)]
pub struct DirectOptions {
    /// This node's id (reported in diagnostics).
    pub node_id: NodeId,
    /// This node's client (Thrift) address, `host:port`.
    pub client_addr: String,
    /// Most commands applied in one batch (one fsync).
    pub max_batch: usize,
    /// Proposals queued before `propose` answers `UNAVAILABLE`.
    pub max_outstanding: usize,
}

type Reply = oneshot::Sender<Result<Applied, ProposeError>>;

/// The standalone `Replicator` and `ReadGate`.
pub struct Direct {
    options: DirectOptions,
    /// Queue to the writer thread; `None` once shut down.
    queue: Mutex<Option<mpsc::Sender<(Command, Reply)>>>,
    /// The applied version, published after each batch.
    applied: watch::Receiver<Version>,
    /// Set when a storage error made the node stop accepting writes.
    failed: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("options", &self.options)
            .field("applied", &*self.applied.borrow())
            .finish()
    }
}

impl Direct {
    /// Starts the writer thread over `engine`, versions from the system clock.
    pub fn start(engine: Arc<Engine>, options: DirectOptions) -> std::io::Result<Self> {
        Self::start_with_clock(engine, options, system_clock())
    }

    /// Starts the writer thread over `engine`, versions from `clock` (µs since the Unix epoch).
    pub fn start_with_clock(
        engine: Arc<Engine>,
        options: DirectOptions,
        clock: Clock,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(options.max_outstanding.max(1));
        let (applied_tx, applied_rx) = watch::channel(engine.applied_version());
        let failed = Arc::new(AtomicBool::new(false));
        let writer = {
            let failed = failed.clone();
            let max_batch = options.max_batch.max(1);
            std::thread::Builder::new()
                .name("dolmen-writer".into())
                .spawn(move || write_loop(&engine, rx, &applied_tx, &failed, max_batch, &clock))?
        };
        Ok(Self {
            options,
            queue: Mutex::new(Some(tx)),
            applied: applied_rx,
            failed,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Stops accepting proposals, lets the writer finish what is queued, and joins it.
    pub fn shutdown(&self) {
        drop(self.queue.lock().take());
        if let Some(handle) = self.writer.lock().take() {
            if handle.join().is_err() {
                tracing::error!("the writer thread panicked");
            }
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The writer thread: the only caller of `Engine::apply_batch` in standalone mode.
fn write_loop(
    engine: &Engine,
    mut rx: mpsc::Receiver<(Command, Reply)>,
    applied: &watch::Sender<Version>,
    failed: &AtomicBool,
    max_batch: usize,
    clock: &Clock,
) {
    let mut pending: Vec<(Command, Reply)> = Vec::with_capacity(max_batch);
    let mut oracle = OracleState::new(engine.applied_version());
    while let Some(first) = rx.blocking_recv() {
        pending.push(first);
        while pending.len() < max_batch {
            match rx.try_recv() {
                Ok(next) => pending.push(next),
                Err(_) => break,
            }
        }
        if failed.load(Ordering::SeqCst) {
            for (_, reply) in pending.drain(..) {
                let _ = reply.send(Err(ProposeError::Unavailable(
                    "a storage error stopped writes on this node; restart it".into(),
                )));
            }
            continue;
        }
        let (commands, replies): (Vec<_>, Vec<_>) = pending.drain(..).unzip();
        // Above everything applied (a restore may have raised it), and at least the clock.
        oracle.observe(engine.applied_version());
        let versions = oracle.next(clock(), commands.len() as u64);
        let entries: Vec<(Version, Command)> = versions.zip(commands).collect();
        // Sync: an outcome is only sent after the batch (and its versions) is on disk.
        match engine.apply_batch(&entries, Durability::Sync, &[]) {
            Ok(outcomes) => {
                applied.send_replace(engine.applied_version());
                for (((version, _), outcome), reply) in entries.iter().zip(outcomes).zip(replies) {
                    let _ = reply.send(Ok(Applied {
                        version: *version,
                        outcome,
                    }));
                }
            }
            Err(e) => {
                // Nothing of the batch became visible (its final write carries applied_version;
                // a large clear's early chunks are undone by the engine's recovery,
                // docs/engine-format.md invariants 10 and 11), but the node's storage is suspect:
                // fail-stop writes instead of guessing.
                tracing::error!(error = %e, "apply failed; refusing further writes");
                failed.store(true, Ordering::SeqCst);
                for reply in replies {
                    let _ = reply.send(Err(ProposeError::Unavailable(format!(
                        "storage error: {e}"
                    ))));
                }
            }
        }
    }
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Replicator for Direct {
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<Applied, ProposeError>> {
        Box::pin(async move {
            let queue = self
                .queue
                .lock()
                .clone()
                .ok_or_else(|| ProposeError::Unavailable("the node is shutting down".into()))?;
            let (reply, answer) = oneshot::channel();
            let sent = queue.try_send((command, reply));
            // Not held while waiting: `shutdown` ends the writer once every sender is gone,
            // whether or not a proposal's future is ever polled again.
            drop(queue);
            sent.map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ProposeError::Unavailable(format!(
                    "too many outstanding proposals (limit {}); retry with backoff",
                    self.options.max_outstanding
                )),
                mpsc::error::TrySendError::Closed(_) => {
                    ProposeError::Unavailable("the node is shutting down".into())
                }
            })?;
            answer
                .await
                .map_err(|_| ProposeError::Unavailable("the writer stopped".into()))?
        })
    }

    fn cluster(&self) -> ClusterView {
        ClusterView {
            this_node: self.options.node_id,
            members: vec![MemberView {
                id: self.options.node_id,
                client_addr: self.options.client_addr.clone(),
                role: Role::Leader,
                health: if self.failed.load(Ordering::SeqCst) {
                    Health::Degraded
                } else {
                    Health::Healthy
                },
                last_seen_unix_ms: now_unix_ms(),
            }],
            leader: Some(self.options.node_id),
            term: 1,
        }
    }
}

impl ReadGate for Direct {
    fn read_version(&self) -> BoxFuture<'_, Result<Version, ReadError>> {
        // Every acknowledged write was applied before its acknowledgement: the applied version
        // is a linearizable read version.
        let version = *self.applied.borrow();
        Box::pin(async move { Ok(version) })
    }

    fn wait_applied(
        &self,
        version: Version,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(), ReadError>> {
        let mut applied = self.applied.clone();
        Box::pin(async move {
            let wait = tokio::time::timeout(timeout, applied.wait_for(|v| *v >= version));
            let reached = matches!(wait.await, Ok(Ok(_)));
            if reached {
                Ok(())
            } else {
                Err(ReadError::FutureVersion {
                    version,
                    applied: *applied.borrow(),
                    waited: timeout,
                })
            }
        })
    }

    fn applied_version(&self) -> Version {
        *self.applied.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dolmen_engine::{EngineOptions, Mutation, Outcome, Transaction};

    fn set(key: &str) -> Command {
        Command::Commit(Transaction {
            mutations: vec![Mutation::Set {
                cf: "default".into(),
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
            }],
            ..Transaction::default()
        })
    }

    fn open_engine(dir: &std::path::Path) -> Arc<Engine> {
        Arc::new(Engine::open(&EngineOptions::new(dir, vec!["default".into()])).unwrap())
    }

    fn options() -> DirectOptions {
        DirectOptions {
            node_id: 0,
            client_addr: "127.0.0.1:9090".into(),
            max_batch: 64,
            max_outstanding: 1024,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_proposals_get_distinct_increasing_versions_and_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let open = || open_engine(dir.path());
        let options = options();
        let direct = Arc::new(Direct::start(open(), options.clone()).unwrap());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let d = direct.clone();
                tokio::spawn(async move { d.propose(set(&format!("k{i}"))).await.unwrap() })
            })
            .collect();
        let mut versions = Vec::new();
        for t in tasks {
            let applied = t.await.unwrap();
            assert_eq!(
                applied.outcome,
                Outcome::Committed {
                    version: applied.version
                }
            );
            versions.push(applied.version);
        }
        versions.sort_unstable();
        versions.dedup();
        assert_eq!(versions.len(), 200, "distinct versions");
        let last = *versions.last().unwrap();
        assert_eq!(direct.read_version().await.unwrap(), last);
        assert!(direct
            .wait_applied(last + 1, Duration::from_millis(20))
            .await
            .is_err());
        direct.shutdown();
        drop(direct);
        let again = Direct::start(open(), options).unwrap();
        assert_eq!(again.applied_version(), last);
        assert!(again.propose(set("x")).await.unwrap().version > last);
    }

    /// Versions follow a clock in microseconds, and never go back: not when the clock stands
    /// still, steps back, or steps back across a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn versions_follow_the_clock_and_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let open = || open_engine(dir.path());
        let options = options();
        let now = Arc::new(std::sync::atomic::AtomicU64::new(1_765_000_000_000_000));
        let clock: Clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::SeqCst))
        };
        let direct = Direct::start_with_clock(open(), options.clone(), clock.clone()).unwrap();
        let first = direct.propose(set("a")).await.unwrap().version;
        assert_eq!(first, 1_765_000_000_000_000, "the clock's microseconds");
        // The clock stands still: the next version is the next microsecond.
        assert_eq!(direct.propose(set("b")).await.unwrap().version, first + 1);
        // The clock steps back by a minute: versions still go up.
        now.store(first - 60_000_000, Ordering::SeqCst);
        assert_eq!(direct.propose(set("c")).await.unwrap().version, first + 2);
        direct.shutdown();
        drop(direct);
        // Restarted with the clock still behind: above every version handed out.
        let again = Direct::start_with_clock(open(), options, clock).unwrap();
        assert_eq!(again.propose(set("d")).await.unwrap().version, first + 3);
        // The clock catches up and passes: versions follow it again.
        now.store(first + 5_000_000, Ordering::SeqCst);
        assert_eq!(
            again.propose(set("e")).await.unwrap().version,
            first + 5_000_000
        );
    }
}
