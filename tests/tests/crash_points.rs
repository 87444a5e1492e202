//! Crash safety at every persistence step: a node is killed at one named failpoint
//! (`FAILPOINTS`, the catalog in `dolmen_engine::failpoint`, which refuses unknown names;
//! `return` = SIGKILL at that step) while the cluster
//! takes writes, restarted without it, and then rejoins with every acknowledged write and the
//! same state (digest) as its peers.
//!
//! ```text
//!  3 nodes ─ write load ─ restart the target with FAILPOINTS="<point>=<n>*off->return"
//!     ─ (leadership handed to it) ─ it dies at the point ─ restart without ─ rejoin
//!     ─ every acked write on every node, nothing refused visible, equal digests
//! ```
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test crash_points`.

use std::time::{Duration, Instant};

use dolmen_tests::replicated::{
    check_writes, summarize, unique_prefix, wait_until, Outcome, WriteKind, WriteLoad,
    WriteLoadConfig, WriteRecord, LEADER_TIMEOUT,
};
use dolmen_tests::ReplicatedCluster;

/// How long a node may take to reach its failpoint.
const CRASH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the read-back of the writes may retry a failing read.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Acked writes wanted before a fault, and again after it.
const SOME_WRITES: usize = 50;

/// Three nodes that snapshot every 100 entries and keep 10: builds, purges and installs come
/// quickly under load.
fn cluster() -> ReplicatedCluster {
    cluster_with_power_cuts(false)
}

/// [`cluster`]; with `power_cuts`, a killed node also loses what it never fsynced
/// (`[faults] lose_unsynced_writes`), as after a power cut.
fn cluster_with_power_cuts(power_cuts: bool) -> ReplicatedCluster {
    ReplicatedCluster::builder()
        .set("consensus", "snapshot_interval_entries", 100)
        .set("consensus", "snapshot_keep_entries", 10)
        .set("mvcc", "retention_window_ms", 600_000)
        .set("faults", "lose_unsynced_writes", power_cuts)
        .start()
}

/// Four writer threads through `nodes`, each key written once.
fn load(c: &ReplicatedCluster, nodes: &[usize], prefix: &[u8]) -> WriteLoad {
    WriteLoad::start(WriteLoadConfig {
        targets: nodes.iter().map(|&i| (i, c.thrift_endpoint(i))).collect(),
        threads: 4,
        prefix: prefix.to_vec(),
        kind: WriteKind::SetKey,
        pause: Duration::from_millis(2),
        max_writes_per_thread: 1_000_000,
        max_duration: Duration::from_secs(240),
    })
}

fn acked(records: &[WriteRecord]) -> usize {
    records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked)
        .count()
}

/// Waits until `load` has `more` acked writes beyond what it had.
fn wait_more_acked(c: &ReplicatedCluster, load: &WriteLoad, more: usize, what: &str) {
    let want = load.acked() + more;
    if !load.wait_for(Duration::from_secs(60), |r| acked(r) >= want) {
        c.fail(&format!(
            "expected {want} acked writes {what} within 60s; {}",
            summarize(&load.records())
        ));
    }
}

/// `FAILPOINTS` of one point.
fn failpoints(point: &str, actions: &str) -> String {
    format!("{point}={actions}")
}

/// Waits for `target` to die at `point`: its exit status shows the SIGKILL and its log names
/// the point. With `lead`, asks the leader now and then to hand leadership to it meanwhile.
fn wait_crash_at(c: &mut ReplicatedCluster, target: usize, point: &str, lead: bool) {
    let deadline = Instant::now() + CRASH_TIMEOUT;
    let mut next_transfer = Instant::now();
    let mut leader_at_crash = None;
    let status = loop {
        if let Some(status) = c.wait_exited(target, Duration::from_millis(100)) {
            break status;
        }
        if Instant::now() >= deadline {
            c.fail(&format!(
                "expected node {target} to crash at failpoint {point} within {CRASH_TIMEOUT:?}"
            ));
        }
        leader_at_crash = c.current_leader();
        if lead && Instant::now() >= next_transfer && leader_at_crash.is_some_and(|l| l != target) {
            // Refused while it catches up; asked again.
            let _answer = c.transfer_leader(target);
            next_transfer = Instant::now() + Duration::from_millis(500);
        }
    };
    let log = std::fs::read_to_string(c.log_path(target)).unwrap_or_default();
    let line = format!("failpoint {point}: crashing the process here");
    if !log.contains(&line) || !status.contains("SIGKILL") {
        c.fail(&format!(
            "expected node {target} to die by SIGKILL at {point} (log line {line:?}), exit \
             status: {status}"
        ));
    }
    println!("node {target} crashed at {point} ({status}); leader last seen: {leader_at_crash:?}");
}

/// Restarts `target` without failpoints while `load` runs on, then checks the cluster: every
/// node ready and agreeing with the others, every acked write present everywhere.
fn restart_and_check(c: ReplicatedCluster, target: usize, load: WriteLoad, prefix: &[u8]) {
    let all: Vec<usize> = (0..c.node_count()).collect();
    restart_and_check_with(c, target, load, prefix, &[], &all);
}

/// The leader (or, without `lead`, any node the crash finds first) dies at `point` after the
/// `actions` count; restarted without it, it rejoins and nothing acked is lost.
fn crash_under_load(point: &str, actions: &str, lead: bool) {
    crash_under_load_in(cluster(), point, actions, lead);
}

/// [`crash_under_load`] in the cluster `c`.
fn crash_under_load_in(mut c: ReplicatedCluster, point: &str, actions: &str, lead: bool) {
    let target = c.wait_for_leader(LEADER_TIMEOUT);
    let prefix = unique_prefix(point);
    let all: Vec<usize> = (0..c.node_count()).collect();
    let load = load(&c, &all, &prefix);
    wait_more_acked(&c, &load, SOME_WRITES, "before the fault");
    c.stop(target);
    c.set_env(target, &[("FAILPOINTS", &failpoints(point, actions))]);
    c.start(target);
    wait_crash_at(&mut c, target, point, lead);
    restart_and_check(c, target, load, &prefix);
}

#[test]
fn a_leader_killed_before_its_log_batch_write_loses_no_acked_write() {
    crash_under_load("raft_log::before_write", "300*off->return", true);
}

#[test]
fn a_leader_killed_between_its_log_write_and_fsync_loses_no_acked_write() {
    crash_under_load("raft_log::before_fsync", "300*off->return", true);
}

/// The same crash as a power cut: the written, unsynced batch is lost with the process.
#[test]
fn a_leader_losing_power_between_its_log_write_and_fsync_loses_no_acked_write() {
    crash_under_load_in(
        cluster_with_power_cuts(true),
        "raft_log::before_fsync",
        "300*off->return",
        true,
    );
}

/// A power cut right after an apply batch: its unsynced write is lost (the log is the WAL), and
/// the node applies those entries again from its durable log.
#[test]
fn a_leader_losing_power_after_its_apply_write_replays_it_from_its_log() {
    crash_under_load_in(
        cluster_with_power_cuts(true),
        "apply::after_write",
        "300*off->return",
        true,
    );
}

#[test]
fn a_leader_killed_after_its_log_fsync_before_the_callbacks_loses_no_acked_write() {
    crash_under_load("raft_log::before_ack", "300*off->return", true);
}

#[test]
fn a_node_killed_while_saving_its_vote_rejoins() {
    // The first save (the new leader's term, heard at restart) passes; the second (its own
    // campaign when leadership is handed to it) crashes.
    crash_under_load("raft_log::save_vote", "1*off->return", true);
}

#[test]
fn a_leader_killed_while_purging_its_log_loses_no_acked_write() {
    crash_under_load("raft_log::purge", "1*off->return", true);
}

#[test]
fn a_leader_killed_before_its_snapshot_file_is_fsynced_loses_no_acked_write() {
    crash_under_load("snapshot::build_before_sync", "1*off->return", true);
}

#[test]
fn a_leader_killed_before_its_snapshot_rename_is_fsynced_loses_no_acked_write() {
    crash_under_load("snapshot::build_before_dir_sync", "1*off->return", true);
}

#[test]
fn a_leader_killed_before_its_apply_batch_write_loses_no_acked_write() {
    crash_under_load("apply::before_write", "300*off->return", true);
}

#[test]
fn a_leader_killed_after_its_apply_batch_write_before_publishing_loses_no_acked_write() {
    crash_under_load("apply::after_write", "300*off->return", true);
}

/// A follower that was down while the others purged its log installs a snapshot, and dies at
/// `point` of the install; restarted without it, it installs again and catches up.
fn crash_during_install(point: &str) {
    let mut c = cluster();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let target = (leader + 1) % c.node_count();
    let last = c.status(target).raft.map_or(0, |r| r.last_log);
    c.stop(target);
    let live: Vec<usize> = (0..c.node_count()).filter(|&i| i != target).collect();
    let prefix = unique_prefix(point);
    let load = load(&c, &live, &prefix);
    let mut purged = 0;
    if !wait_until(Duration::from_secs(60), || {
        purged = live
            .iter()
            .filter_map(|&i| c.try_status(i).ok())
            .filter_map(|s| s.raft.map(|r| r.purged))
            .min()
            .unwrap_or(0);
        purged > last + 100
    }) {
        c.fail(&format!(
            "expected both live nodes to purge their logs past node {target}'s last index \
             {last}, smallest purged: {purged}"
        ));
    }
    c.set_env(target, &[("FAILPOINTS", &failpoints(point, "return"))]);
    c.start(target);
    wait_crash_at(&mut c, target, point, false);
    restart_and_check(c, target, load, &prefix);
}

#[test]
fn a_follower_killed_before_restoring_a_received_snapshot_installs_it_after_restart() {
    crash_during_install("snapshot::install_before_restore");
}

#[test]
fn a_follower_killed_after_restoring_a_snapshot_before_recording_it_rejoins() {
    crash_during_install("snapshot::install_before_record");
}

/// A leader cut off from its followers appends writes no one else has; it is killed, the
/// others elect a leader and commit other entries, and the old leader restarted with
/// `raft_log::truncate` dies when it truncates its divergent suffix. Restarted without it, it
/// truncates, catches up, and agrees with the others.
#[test]
fn a_node_killed_while_truncating_a_divergent_log_suffix_rejoins() {
    let point = "raft_log::truncate";
    // No snapshot soon (the defaults): the new leader sends the old one entries, not a snapshot.
    let mut c = ReplicatedCluster::builder()
        .set("mvcc", "retention_window_ms", 600_000)
        .set("faults", "allow_network_faults", true)
        .start();
    let old = c.wait_for_leader(LEADER_TIMEOUT);
    let followers: Vec<usize> = (0..c.node_count()).filter(|&i| i != old).collect();
    let prefix = unique_prefix(point);
    // Writes through the old leader alone: once it is cut off they are appended to its log
    // only, never committed (dropped peer calls, unlike frozen followers, deliver nothing
    // later), while the others elect a new leader whose log diverges from there.
    let doomed = load(&c, &[old], &[prefix.as_slice(), b"doomed/"].concat());
    wait_more_acked(&c, &doomed, SOME_WRITES, "through the leader");
    c.cut_off(old);
    std::thread::sleep(c.election_timeout() * 2);
    let old_last = c.status(old).raft.map_or(0, |r| r.last_log);
    c.kill9(old);
    c.heal();
    let doomed = doomed.finish();
    let new = c.wait_for_leader(LEADER_TIMEOUT);
    let new_last = c.status(new).raft.map_or(0, |r| r.last_log);
    println!("old leader's last log index {old_last}, new leader's {new_last} at its election");
    let load = load(&c, &followers, &prefix);
    wait_more_acked(&c, &load, SOME_WRITES, "through the new leader");
    c.set_env(old, &[("FAILPOINTS", &failpoints(point, "return"))]);
    c.start(old);
    wait_crash_at(&mut c, old, point, false);
    println!(
        "new leader: node {new}; the old leader's writes: {}",
        summarize(&doomed)
    );
    let all: Vec<usize> = (0..c.node_count()).collect();
    restart_and_check_with(c, old, load, &prefix, &doomed, &all);
}

/// [`restart_and_check`], also checking `earlier` (writes of an earlier load under `prefix`).
fn restart_and_check_with(
    mut c: ReplicatedCluster,
    target: usize,
    load: WriteLoad,
    prefix: &[u8],
    earlier: &[WriteRecord],
    all: &[usize],
) {
    wait_more_acked(&c, &load, SOME_WRITES, "with the target down");
    c.set_env(target, &[]);
    c.start(target);
    c.wait_all_ready(LEADER_TIMEOUT);
    wait_more_acked(&c, &load, SOME_WRITES, "after the restart");
    let mut records = load.finish();
    records.extend_from_slice(earlier);
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let (v, digest) = c.converged_digest(all, c.applied(leader), Duration::from_secs(60));
    check_writes(&c, all, prefix, &records, READ_TIMEOUT);
    println!(
        "{} acked writes on every node; converged at version {v}: {digest}",
        acked(&records)
    );
}

/// A `FAILPOINTS` naming no failpoint is refused at start (exit 2, naming the variable and the
/// name), so a typo cannot make a crash test pass without crashing; a valid one is warned about.
#[test]
fn an_unknown_failpoint_is_refused_at_start_and_a_known_one_is_warned_about() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let serve = |failpoints: &str| {
        let mut cmd = std::process::Command::new(dolmen_tests::binary::dolmen_bin());
        cmd.args(["serve", "--port", "0", "--admin-port", "0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("FAILPOINTS", failpoints)
            .env_remove("DOLMEN_CONFIG")
            .stdin(std::process::Stdio::null());
        cmd
    };
    let out = serve("raft_log::befor_write=return")
        .output()
        .expect("run dolmen serve");
    let text = dolmen_tests::binary::output_text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("FAILPOINTS") && text.contains("raft_log::befor_write"),
        "{text}"
    );
    let log = dir.path().join("node.log");
    let file = std::fs::File::create(&log).expect("create the log");
    let mut child = serve("apply::before_write=10*off")
        .stdout(file.try_clone().expect("clone the log"))
        .stderr(file)
        .spawn()
        .expect("start dolmen serve");
    let mut text = String::new();
    let ready = wait_until(Duration::from_secs(30), || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("dolmen ready:")
    });
    // Our child, not reaped yet: its PID is still its own.
    let _killed = child.kill();
    let _reaped = child.wait();
    assert!(ready, "expected the readiness line within 30s:\n{text}");
    assert!(
        text.contains("TEST-ONLY SWITCH ON") && text.contains("FAILPOINTS: apply::before_write"),
        "{text}"
    );
}
