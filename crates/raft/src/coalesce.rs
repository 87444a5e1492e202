//! Read-index batching: concurrent linearizable reads share one leadership confirmation.
//!
//! A read needs a read index obtained *after* the read arrived. Callers join the pending round;
//! one driver task runs rounds back to back: it takes the pending round (closing it to new
//! members), runs the barrier once, and hands the result to every member. Whoever arrives
//! while a barrier is in flight joins the next round, so every member's index was obtained
//! after it arrived. Under load, N concurrent reads cost one quorum round trip (leader) or one
//! `ReadIndex` RPC (follower) instead of N.
//!
//! A caller may ask for a round that covers a version (a read at `R` in a data group of a
//! sharded node, docs/sharding.md §5.2): the round runs for the largest version its members
//! asked for, so one round serves every member.
//!
//! ```text
//!  read(R) ─▶ join pending round, raise its R ─▶ (no driver? spawn one) ─▶ wait for its result
//!  driver: loop { take pending round or stop; result = barrier(R).await; publish to round }
//! ```

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::replicator::{BoxFuture, ProposeError};

/// One leadership confirmation covering the given version (0: none): the read index, or why
/// there is none.
pub(crate) type Barrier =
    Arc<dyn Fn(u64) -> BoxFuture<'static, Result<u64, ProposeError>> + Send + Sync>;

/// The outcome of one round, `None` until the round has run.
type Round = watch::Sender<Option<Result<u64, ProposeError>>>;

#[derive(Default)]
struct State {
    /// A driver task is running rounds.
    driving: bool,
    /// The round new callers join (not started yet), and the largest version its members
    /// asked it to cover.
    pending: Option<(Round, u64)>,
}

/// Shares one barrier among concurrent callers (see the module docs).
pub(crate) struct Coalescer {
    barrier: Barrier,
    state: Mutex<State>,
}

impl Coalescer {
    /// A coalescer running `barrier` once per round.
    pub(crate) fn new(barrier: Barrier) -> Arc<Self> {
        Arc::new(Self {
            barrier,
            state: Mutex::new(State::default()),
        })
    }

    /// A read index obtained after this call started, shared with concurrent callers; waits at
    /// most `timeout` (a round's barrier bounds itself too).
    pub(crate) async fn read_index(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Result<u64, ProposeError> {
        self.read_index_covering(0, timeout).await
    }

    /// [`read_index`](Self::read_index) from a round that covers `covering` (the round's
    /// barrier is asked for the largest version any of its members asked for).
    pub(crate) async fn read_index_covering(
        self: &Arc<Self>,
        covering: u64,
        timeout: Duration,
    ) -> Result<u64, ProposeError> {
        let mut result = {
            let mut state = self.state.lock();
            let (round, asked) = state
                .pending
                .get_or_insert_with(|| (watch::channel(None).0, 0));
            *asked = (*asked).max(covering);
            let round = round.subscribe();
            if !state.driving {
                state.driving = true;
                tokio::spawn(self.clone().drive());
            }
            round
        };
        let waited = tokio::time::timeout(timeout, result.wait_for(Option::is_some))
            .await
            .map(|r| r.map(|outcome| outcome.clone()));
        match waited {
            Ok(Ok(outcome)) => outcome.unwrap_or_else(|| {
                Err(ProposeError::Unavailable(
                    "read barrier round ended without a result".into(),
                ))
            }),
            Ok(Err(_closed)) => Err(ProposeError::Unavailable(
                "the read barrier stopped (the node is shutting down)".into(),
            )),
            Err(_elapsed) => Err(ProposeError::Timeout(timeout)),
        }
    }

    /// Runs rounds while callers are waiting, then stops.
    async fn drive(self: Arc<Self>) {
        loop {
            let (round, covering) = {
                let mut state = self.state.lock();
                match state.pending.take() {
                    Some(round) => round,
                    None => {
                        state.driving = false;
                        return;
                    }
                }
            };
            let outcome = (self.barrier)(covering).await;
            round.send_replace(Some(outcome));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A barrier that counts its runs, takes 20 ms and returns the run number.
    fn counting() -> (Arc<AtomicU64>, Barrier) {
        let runs = Arc::new(AtomicU64::new(0));
        let counter = runs.clone();
        let barrier: Barrier = Arc::new(move |_| {
            let counter = counter.clone();
            Box::pin(async move {
                let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(run)
            })
        });
        (runs, barrier)
    }

    #[tokio::test]
    async fn concurrent_callers_share_rounds_and_each_gets_a_round_started_after_it_arrived() {
        let (runs, barrier) = counting();
        let c = Coalescer::new(barrier);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = c.clone();
            let before = runs.load(Ordering::SeqCst);
            tasks.push(tokio::spawn(async move {
                let got = c.read_index(Duration::from_secs(5)).await.unwrap();
                (before, got)
            }));
        }
        for task in tasks {
            let (runs_before_arrival, round) = task.await.unwrap();
            // The round that answered started after the caller arrived.
            assert!(
                round > runs_before_arrival,
                "{round} <= {runs_before_arrival}"
            );
        }
        let total = runs.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&total),
            "50 concurrent reads took {total} rounds"
        );
    }

    #[tokio::test]
    async fn a_caller_arriving_during_a_round_waits_for_the_next_one() {
        let (runs, barrier) = counting();
        let c = Coalescer::new(barrier);
        let first = {
            let c = c.clone();
            tokio::spawn(async move { c.read_index(Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await; // round 1 is in flight
        assert_eq!(c.read_index(Duration::from_secs(5)).await, Ok(2));
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // Idle again: the next caller starts a new round of its own.
        assert_eq!(c.read_index(Duration::from_secs(5)).await, Ok(3));
    }

    #[tokio::test]
    async fn errors_are_shared_and_a_slow_round_times_out() {
        let failing: Barrier =
            Arc::new(|_| Box::pin(async { Err(ProposeError::Unavailable("no quorum".into())) }));
        let c = Coalescer::new(failing);
        assert_eq!(
            c.read_index(Duration::from_secs(1)).await,
            Err(ProposeError::Unavailable("no quorum".into()))
        );
        let stuck: Barrier = Arc::new(|_| Box::pin(std::future::pending()));
        let c = Coalescer::new(stuck);
        assert!(matches!(
            c.read_index(Duration::from_millis(30)).await,
            Err(ProposeError::Timeout(_))
        ));
    }

    #[tokio::test]
    async fn a_round_covers_the_largest_version_its_members_asked_for() {
        let asked = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let seen = asked.clone();
        let barrier: Barrier = Arc::new(move |covering| {
            let seen = seen.clone();
            Box::pin(async move {
                seen.lock().push(covering);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(covering)
            })
        });
        let c = Coalescer::new(barrier);
        let first = {
            let c = c.clone();
            tokio::spawn(async move { c.read_index_covering(5, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await; // round 1 (covering 5) in flight
        let mut next = Vec::new();
        for covering in [7, 30, 0, 12] {
            let c = c.clone();
            next.push(tokio::spawn(async move {
                c.read_index_covering(covering, Duration::from_secs(5))
                    .await
            }));
        }
        assert_eq!(first.await.unwrap(), Ok(5));
        for task in next {
            assert_eq!(
                task.await.unwrap(),
                Ok(30),
                "one round for all, covering the largest"
            );
        }
        assert_eq!(*asked.lock(), vec![5, 30]);
    }
}
