//! A lone node (two of three stopped) must not split the brain: new writes on it fail with
//! `UNAVAILABLE` or `NOT_LEADER` (`TIMEOUT` only for writes already in flight when the others
//! stopped, or sent before the survivor could notice), linearizable reads fail, stale reads
//! return the last value only when configured (`[reads] consistency_level = "stale"`). After the
//! others come back, no write answered `UNAVAILABLE`/`NOT_LEADER` is visible (invariant 9).
//!
//! Two ways to lose the majority: SIGKILL of the leader and a follower (the survivor is a
//! follower whose leader is gone), and SIGSTOP of both followers (the survivor is a leader that
//! has lost its quorum; the frozen nodes come back believing what they believed).
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace -- minority`.

use std::time::{Duration, Instant};

use dolmen_tests::client::{connect_buffered, IO_TIMEOUT};
use dolmen_tests::kvstore::{GetReadVersionRequest, GetRequest, TTransactionalKVSyncClient};
use dolmen_tests::replicated::{
    check_writes, summarize, try_connect, unique_prefix, Outcome, WriteKind, WriteLoad,
    WriteLoadConfig, WriteRecord, LEADER_TIMEOUT,
};
use dolmen_tests::{KvExt, ReplicatedCluster};

/// How the majority is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loss {
    /// SIGKILL the leader and one follower; the survivor is the other follower.
    KillLeaderAndFollower,
    /// SIGSTOP both followers; the survivor is the (now stale) leader.
    FreezeFollowers,
}

/// `[reads] consistency_level` of every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reads {
    Linearizable,
    /// With a large `max_staleness_ms`, so the survivor keeps serving its last state.
    Stale,
}

/// Writes sent this long after the others stopped must be refused outright: by then the
/// survivor has had several election timeouts (and its lease) to notice it is alone.
fn detection_grace(c: &ReplicatedCluster) -> Duration {
    c.election_timeout() * 4
}

fn lone_node(loss: Loss, reads: Reads) {
    let mut b = ReplicatedCluster::builder().set("mvcc", "retention_window_ms", 600_000);
    if reads == Reads::Stale {
        b = b
            .set("reads", "consistency_level", "stale")
            .set("reads", "allow_stale_reads", true)
            .set("reads", "max_staleness_ms", 600_000);
    }
    let mut c = b.start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let followers = c.followers();
    let prefix = unique_prefix("minority");
    let last_key = [prefix.as_slice(), b"last"].concat();

    // The last value before the loss, applied everywhere.
    let mut kv = connect_buffered(c.thrift_endpoint(leader));
    kv.must_set(&last_key, b"before-the-loss");
    let rv = kv.read_version();
    let v = c.applied(leader);
    for i in 0..c.node_count() {
        c.wait_applied_at_least(i, v);
    }
    drop(kv);

    let (survivor, victims) = match loss {
        Loss::KillLeaderAndFollower => (followers[1], vec![leader, followers[0]]),
        Loss::FreezeFollowers => (leader, followers.clone()),
    };
    let load = WriteLoad::start(WriteLoadConfig {
        targets: vec![(survivor, c.thrift_endpoint(survivor))],
        threads: 2,
        prefix: [prefix.as_slice(), b"w/"].concat(),
        kind: WriteKind::Commit {
            read_version: rv,
            timeout_seconds: 2,
        },
        pause: Duration::from_millis(20),
        max_writes_per_thread: 10_000,
        max_duration: Duration::from_secs(90),
    });
    if !load.wait_for(Duration::from_secs(10), |r| {
        r.iter().any(|w| w.outcome == Outcome::Acked)
    }) {
        c.fail(&format!(
            "expected writes on node {survivor} to succeed before the loss; {}",
            summarize(&load.records())
        ));
    }

    let lost_at = Instant::now();
    for &i in &victims {
        match loss {
            Loss::KillLeaderAndFollower => c.kill9(i),
            Loss::FreezeFollowers => c.sigstop(i),
        }
    }
    let settled = lost_at + detection_grace(&c);
    // Enough writes sent after the grace period to judge; each ends within its 2 s timeout.
    let judged = load.wait_for(Duration::from_secs(40), |r| {
        r.iter().filter(|w| w.started >= settled).count() >= 10
    });
    std::thread::sleep(settled.saturating_duration_since(Instant::now()));

    let mut problems = Vec::new();
    if !judged {
        problems.push(format!(
            "fewer than 10 writes were answered on node {survivor} within 40 s of the loss; {}",
            summarize(&load.records())
        ));
    }
    problems.extend(check_reads(&c, survivor, &last_key, reads));
    let records = load.finish();
    problems.extend(check_write_outcomes(&records, lost_at, settled));
    println!(
        "{loss:?}/{reads:?}: survivor {survivor}, victims {victims:?}; {}",
        summarize(&records)
    );
    for p in &problems {
        eprintln!("VIOLATION ({loss:?}/{reads:?}): {p}");
    }

    // The others come back; nothing refused may have been applied meanwhile.
    match loss {
        Loss::KillLeaderAndFollower => c.start_many(&victims),
        Loss::FreezeFollowers => victims.iter().for_each(|&i| c.sigcont(i)),
    }
    c.wait_for_leader(LEADER_TIMEOUT);
    c.wait_all_ready(LEADER_TIMEOUT);
    let v = c.write_until_acked(survivor, &[prefix.as_slice(), b"after"].concat(), b"back");
    let all: Vec<usize> = (0..c.node_count()).collect();
    for &i in &all {
        c.wait_applied_at_least(i, v);
    }
    check_writes(&c, &all, &prefix, &records, Duration::from_secs(20));
    c.converged_digest(&all, v, Duration::from_secs(30));
    if !problems.is_empty() {
        c.fail(&format!(
            "{loss:?}/{reads:?}: the lone node {survivor} broke the minority contract:\n{}",
            problems.join("\n")
        ));
    }
}

/// Reads on the lone node: linearizable reads must fail, stale reads must return the last
/// value. Returns the violations.
fn check_reads(
    c: &ReplicatedCluster,
    survivor: usize,
    last_key: &[u8],
    reads: Reads,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut kv = match try_connect(c.thrift_endpoint(survivor)) {
        Ok(kv) => kv,
        Err(e) => return vec![format!("cannot connect to the lone node {survivor}: {e}")],
    };
    let started = Instant::now();
    let get = kv.get(GetRequest::new(last_key.to_vec(), None));
    let took = started.elapsed();
    let get = match get {
        Ok(get) => get,
        Err(e) => {
            return vec![format!(
                "expected a get on the lone node {survivor} to answer, got a client error \
                 after {took:?}: {e}"
            )]
        }
    };
    match reads {
        Reads::Linearizable => {
            if get.found || get.error.is_none() {
                problems.push(format!(
                    "expected a linearizable get on the lone node {survivor} to fail with an \
                     error, got {get:?} after {took:?}"
                ));
            }
            match kv.get_read_version(GetReadVersionRequest::new()) {
                Ok(r) if r.success => problems.push(format!(
                    "expected getReadVersion on the lone node {survivor} to fail (no quorum to \
                     confirm a linearizable version), got {r:?}"
                )),
                Ok(_) => {}
                Err(e) => problems.push(format!(
                    "expected getReadVersion on the lone node {survivor} to answer (with \
                     success=false), got a client error: {e}"
                )),
            }
        }
        Reads::Stale => {
            if !(get.found && get.value == b"before-the-loss" && get.error.is_none()) {
                problems.push(format!(
                    "expected a stale get on the lone node {survivor} to return the last value \
                     \"before-the-loss\", got {get:?} after {took:?}"
                ));
            }
        }
    }
    if took > IO_TIMEOUT / 2 {
        problems.push(format!(
            "a read on the lone node {survivor} took {took:?}: a node without quorum should \
             answer promptly"
        ));
    }
    problems
}

/// Writes sent after the loss are never acked; writes sent after the grace period are refused
/// (`UNAVAILABLE`/`NOT_LEADER`). Returns the violations (at most a few examples per rule).
fn check_write_outcomes(
    records: &[WriteRecord],
    lost_at: Instant,
    settled: Instant,
) -> Vec<String> {
    let after_loss = lost_at + Duration::from_millis(100);
    let acked: Vec<_> = records
        .iter()
        .filter(|w| w.started >= after_loss && w.outcome == Outcome::Acked)
        .collect();
    let not_refused: Vec<_> = records
        .iter()
        .filter(|w| w.started >= settled && !matches!(w.outcome, Outcome::Refused(_)))
        .collect();
    let describe = |ws: &[&WriteRecord]| {
        ws.iter()
            .take(5)
            .map(|w| {
                format!(
                    "sent {}ms after the loss: {:?}",
                    w.started.saturating_duration_since(lost_at).as_millis(),
                    w.outcome
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut problems = Vec::new();
    if !acked.is_empty() {
        problems.push(format!(
            "{} writes sent after the loss were acked without a quorum: {}",
            acked.len(),
            describe(&acked)
        ));
    }
    if !not_refused.is_empty() {
        problems.push(format!(
            "{} writes sent after the grace period were not refused with UNAVAILABLE/NOT_LEADER: {}",
            not_refused.len(),
            describe(&not_refused)
        ));
    }
    problems
}

#[test]
fn sigkill_leader_and_follower_linearizable() {
    lone_node(Loss::KillLeaderAndFollower, Reads::Linearizable);
}

#[test]
fn sigkill_leader_and_follower_stale_reads() {
    lone_node(Loss::KillLeaderAndFollower, Reads::Stale);
}

#[test]
fn sigstop_followers_linearizable() {
    lone_node(Loss::FreezeFollowers, Reads::Linearizable);
}

#[test]
fn sigstop_followers_stale_reads() {
    lone_node(Loss::FreezeFollowers, Reads::Stale);
}
