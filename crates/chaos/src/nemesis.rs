//! The nemesis: a seeded schedule of faults against the cluster with quiet periods between,
//! every start and end recorded as [`crate::history::Event::Nemesis`]. Each fault is one kind,
//! except `mix`, which holds a network fault while a process fault runs inside it (a node killed
//! or frozen during a partition, a leadership transfer over a lossy network), as real failures
//! overlap.
//!
//! ```text
//!  seed ─▶ Rng ─▶ quiet ─▶ pick kind ─▶ apply ─▶ hold ─▶ undo ─▶ quiet ─▶ ...  (until the end)
//!                               │ kill9 + restart, pause + resume  (signals by PID)
//!                               │ crash-all: kill9 every node, restart them all
//!                               │ partition / drop / delay / duplicate (PUT /debug/network-faults)
//!                               │ transfer-leader                   (POST on the leader; sharded:
//!                               │                                    group 0's or a data group's)
//!                               └ mix: network fault ─▶ process fault inside ─▶ heal
//! ```
//! The schedule (kinds, targets' selection mode, durations, probabilities) is a function of the
//! seed; which node is the leader at a given moment is not, so replays are close, not exact.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::cluster::{Cluster, NodeState};
use crate::recorder::Recorder;
use crate::rng::Rng;

/// Most faults in one run (bounds the schedule loop).
const MAX_FAULTS: u64 = 100_000;
/// Quiet period between faults, milliseconds.
const QUIET_MS: (u64, u64) = (1500, 4000);
/// How long a fault lasts, milliseconds.
const HOLD_MS: (u64, u64) = (2000, 7000);
/// Longest time the whole cluster stays down in a `crash-all`.
const CRASH_ALL_DOWN: Duration = Duration::from_secs(2);

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the leader or a random node, restart it later.
    Kill,
    /// SIGSTOP the leader or a random node, SIGCONT it later.
    Pause,
    /// Drop every message across a cut: random halves, the leader alone, or one way only.
    Partition,
    /// Lose a fraction of the messages between random pairs.
    Drop,
    /// Delay messages (with jitter).
    Delay,
    /// Send Raft messages twice.
    Duplicate,
    /// Hand leadership to another node.
    Transfer,
    /// A network fault held while a process fault (kill, pause or transfer) runs inside it.
    Mix,
    /// SIGKILL every node at the same moment (a power cut of the whole cluster), restart them
    /// all.
    CrashAll,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Drop,
        FaultKind::Delay,
        FaultKind::Duplicate,
        FaultKind::Transfer,
        FaultKind::Mix,
        FaultKind::CrashAll,
    ];

    /// The kinds that change the network, not a process.
    const NETWORK: [FaultKind; 4] = [
        FaultKind::Partition,
        FaultKind::Drop,
        FaultKind::Delay,
        FaultKind::Duplicate,
    ];

    /// The kinds that act on processes or leadership.
    const PROCESS: [FaultKind; 4] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Transfer,
        FaultKind::CrashAll,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Drop => "drop",
            FaultKind::Delay => "delay",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Transfer => "transfer",
            FaultKind::Mix => "mix",
            FaultKind::CrashAll => "crash-all",
        }
    }

    /// Parses one command-line name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether it needs the server's network fault layer.
    pub fn is_network(self) -> bool {
        self == FaultKind::Mix || Self::NETWORK.contains(&self)
    }
}

/// Sleeps `d`, waking early when `stop` is set.
async fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    for _ in 0..100_000 {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
    }
}

/// Runs faults of `kinds` until `until` (or `stop`), leaving no fault in place when it returns
/// `Ok`. Processes that exit by themselves are recorded (`crashed`) and returned.
///
/// # Errors
/// When the nemesis cannot apply or undo a fault (a harness error: the caller heals).
pub async fn run(
    cluster: &mut Cluster,
    recorder: &Recorder,
    kinds: &[FaultKind],
    mut rng: Rng,
    until: Instant,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<String>> {
    let mut crashes = Vec::new();
    for n in 0..MAX_FAULTS {
        nap(
            Duration::from_millis(rng.between(QUIET_MS.0, QUIET_MS.1)),
            stop,
        )
        .await;
        for (i, status) in cluster.reap_exited() {
            eprintln!("chaos: node {i} exited by itself ({status})");
            recorder.nemesis("crashed", vec![i], status.clone());
            crashes.push(format!("node {i} exited by itself: {status}"));
            cluster.start_node(i).await?;
            recorder.nemesis("restart", vec![i], "after an unexpected exit".into());
        }
        let left = until.saturating_duration_since(Instant::now());
        if left < Duration::from_secs(1) || stop.load(Ordering::Relaxed) {
            break;
        }
        let Some(&kind) = rng.pick(kinds) else { break };
        let hold = Duration::from_millis(rng.between(HOLD_MS.0, HOLD_MS.1)).min(left);
        // Choices inside a fault may depend on the cluster (is there a leader?); drawing them
        // from a per-fault stream keeps the schedule itself (kinds, timing) a function of the
        // seed alone.
        let mut fault_rng = rng.fork(n);
        apply(cluster, recorder, kind, &mut fault_rng, hold, stop)
            .await
            .with_context(|| format!("nemesis {}", kind.name()))?;
    }
    Ok(crashes)
}

/// A leader a fault aims at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Aim {
    /// The node.
    node: usize,
    /// On a sharded cluster: the group it leads (0 = the metadata group and its oracle).
    group: Option<u64>,
}

impl Aim {
    /// `the leader`, `group 0's leader`, `data group 3's leader`.
    fn describe(self) -> String {
        match self.group {
            None => "the leader".to_owned(),
            Some(0) => "group 0's leader".to_owned(),
            Some(g) => format!("data group {g}'s leader"),
        }
    }
}

/// A leader to aim at: unsharded, the leader; sharded, group 0's (the oracle's) or, as often,
/// a random data group's, which may sit on another node. `None` when no leader is known. Draws
/// from `rng` only on a sharded cluster, so unsharded schedules stay as they were.
async fn a_leader(cluster: &Cluster, rng: &mut Rng) -> Option<Aim> {
    let data_leaders = cluster.group_leaders().await;
    if !data_leaders.is_empty() && rng.chance(0.5) {
        if let Some(&(group, node)) = rng.pick(&data_leaders) {
            return Some(Aim {
                node,
                group: Some(group),
            });
        }
    }
    let group = (!data_leaders.is_empty()).then_some(0);
    cluster.leader().await.map(|node| Aim { node, group })
}

/// Picks the target(s) of a process fault: a leader ([`a_leader`], half the time, when known)
/// or a random minority of the running nodes, with what they are (for the history).
async fn targets(cluster: &Cluster, rng: &mut Rng) -> (Vec<usize>, String) {
    let running = cluster.nodes_in(NodeState::Running);
    if rng.chance(0.5) {
        if let Some(aim) = a_leader(cluster, rng).await {
            return (vec![aim.node], aim.describe());
        }
    }
    let minority = ((cluster.len().saturating_sub(1)) / 2).max(1);
    let count = usize::try_from(rng.between(1, minority as u64)).unwrap_or(1);
    let mut pool = running;
    rng.shuffle(&mut pool);
    pool.truncate(count);
    (pool, "a random minority".to_owned())
}

fn say(recorder: &Recorder, action: &str, nodes: &[usize], detail: &str) {
    let secs = recorder.now() / 1_000_000_000;
    eprintln!("chaos: [{secs:>4}s] {action} {nodes:?} {detail}");
    recorder.nemesis(action, nodes.to_vec(), detail.to_owned());
}

async fn apply(
    cluster: &mut Cluster,
    recorder: &Recorder,
    kind: FaultKind,
    rng: &mut Rng,
    hold: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    match kind {
        FaultKind::Mix => {
            let network = rng
                .pick(&FaultKind::NETWORK)
                .copied()
                .unwrap_or(FaultKind::Drop);
            let process = rng
                .pick(&FaultKind::PROCESS)
                .copied()
                .unwrap_or(FaultKind::Kill);
            network_fault(cluster, recorder, network, Some(process), rng, hold, stop).await
        }
        k if k.is_network() => network_fault(cluster, recorder, k, None, rng, hold, stop).await,
        k => process_fault(cluster, recorder, k, rng, hold, stop, &[]).await,
    }
}

/// A network fault held for `hold`; with `inside` (a `mix`), that process fault runs in the
/// hold's middle half.
async fn network_fault(
    cluster: &mut Cluster,
    recorder: &Recorder,
    kind: FaultKind,
    inside: Option<FaultKind>,
    rng: &mut Rng,
    hold: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let leader = a_leader(cluster, rng).await;
    let (name, rules, detail) = network_rules(kind, cluster.len(), leader, rng);
    let touched = set_network(cluster, &rules).await?;
    let mixed = inside.map_or_else(String::new, |p| format!("; mix: a {} inside", p.name()));
    say(
        recorder,
        name,
        &touched,
        &format!("{detail}{mixed}; heal in {} ms", hold.as_millis()),
    );
    match inside {
        Some(process) => {
            let (before, middle) = (hold / 4, hold / 2);
            nap(before, stop).await;
            process_fault(cluster, recorder, process, rng, middle, stop, &rules).await?;
            nap(hold.saturating_sub(before + middle), stop).await;
        }
        None => nap(hold, stop).await,
    }
    heal_network(cluster).await?;
    say(recorder, "heal", &touched, name);
    Ok(())
}

/// Installs each node's network fault `rules`; returns the nodes that got any.
async fn set_network(cluster: &Cluster, rules: &[Vec<Value>]) -> anyhow::Result<Vec<usize>> {
    let mut touched = Vec::new();
    for (i, node_rules) in rules.iter().enumerate() {
        if node_rules.is_empty() {
            continue;
        }
        cluster.set_rules(i, node_rules.clone()).await?;
        touched.push(i);
    }
    Ok(touched)
}

async fn heal_network(cluster: &Cluster) -> anyhow::Result<()> {
    for i in 0..cluster.len() {
        cluster.clear_rules(i).await?;
    }
    Ok(())
}

/// A kill, pause or transfer held for `hold`. A node restarted after a kill gets its rules in
/// `reapply` again (they live in the process; a `mix` keeps its network fault whole).
async fn process_fault(
    cluster: &mut Cluster,
    recorder: &Recorder,
    kind: FaultKind,
    rng: &mut Rng,
    hold: Duration,
    stop: &AtomicBool,
    reapply: &[Vec<Value>],
) -> anyhow::Result<()> {
    match kind {
        FaultKind::Kill => {
            let (nodes, what) = targets(cluster, rng).await;
            for &i in &nodes {
                cluster.kill9(i).await?;
            }
            say(
                recorder,
                "kill9",
                &nodes,
                &format!("{what}; restart in {} ms", hold.as_millis()),
            );
            nap(hold, stop).await;
            for &i in &nodes {
                cluster.start_node(i).await?;
                if let Some(rules) = reapply.get(i).filter(|r| !r.is_empty()) {
                    cluster.set_rules(i, rules.clone()).await?;
                }
            }
            say(recorder, "restart", &nodes, "");
        }
        FaultKind::Pause => {
            let (nodes, what) = targets(cluster, rng).await;
            for &i in &nodes {
                cluster.pause(i)?;
            }
            say(
                recorder,
                "pause",
                &nodes,
                &format!("{what}; resume in {} ms", hold.as_millis()),
            );
            nap(hold, stop).await;
            for &i in &nodes {
                cluster.resume(i)?;
            }
            say(recorder, "resume", &nodes, "");
        }
        FaultKind::CrashAll => {
            // Every node at once, as close together as signals go: what no node fsynced is
            // gone (with `lose_unsynced_writes`), on every replica.
            let nodes: Vec<usize> = (0..cluster.len())
                .filter(|&i| cluster.state(i) != NodeState::Down)
                .collect();
            for &i in &nodes {
                cluster.kill9(i).await?;
            }
            let down = hold.min(CRASH_ALL_DOWN);
            say(
                recorder,
                "crash-all",
                &nodes,
                &format!("SIGKILL to every node; restart in {} ms", down.as_millis()),
            );
            nap(down, stop).await;
            cluster.start_nodes(&nodes).await?;
            for &i in &nodes {
                if let Some(rules) = reapply.get(i).filter(|r| !r.is_empty()) {
                    cluster.set_rules(i, rules.clone()).await?;
                }
            }
            say(recorder, "restart", &nodes, "after crash-all");
        }
        FaultKind::Transfer => {
            // Unsharded: the leader. Sharded: group 0's leader or, as often, a random data
            // group's, whose leadership moves.
            let Some(aim) = a_leader(cluster, rng).await else {
                say(recorder, "transfer-leader", &[], "skipped: no leader");
                return Ok(());
            };
            let leader = aim.node;
            let others: Vec<usize> = (0..cluster.len()).filter(|&i| i != leader).collect();
            let Some(&to) = rng.pick(&others) else {
                return Ok(());
            };
            let group = aim.group.unwrap_or(0);
            let moved = match aim.group {
                None => String::new(),
                Some(g) => format!("group {g} "),
            };
            let detail = match cluster.transfer_leader(leader, to, group).await {
                Ok(answer) => format!("{moved}from {leader} ({}): {answer}", aim.describe()),
                // A refusal (target lagging, leadership changed meanwhile) is not a harness
                // error; it is recorded.
                Err(e) => format!("{moved}from {leader} ({}): refused: {e:#}", aim.describe()),
            };
            say(recorder, "transfer-leader", &[to], &detail);
        }
        other => anyhow::bail!("{} is not a process fault", other.name()),
    }
    Ok(())
}

/// The rules each node gets for a network fault, the action's name and a description.
fn network_rules(
    kind: FaultKind,
    n: usize,
    aim: Option<Aim>,
    rng: &mut Rng,
) -> (&'static str, Vec<Vec<Value>>, String) {
    let leader = aim.map(|a| a.node);
    let mut rules: Vec<Vec<Value>> = vec![Vec::new(); n];
    let drop_rule = |to: usize| json!({ "to": to, "action": "drop" });
    match kind {
        FaultKind::Partition => {
            let mut nodes: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut nodes);
            let mode = rng.below(4);
            let (a, b): (Vec<usize>, Vec<usize>) = match (mode, leader) {
                // The leader alone on one side.
                (0 | 1, Some(l)) => (vec![l], (0..n).filter(|&i| i != l).collect()),
                // Random halves (a minority and a majority).
                _ => {
                    let cut = (n / 2).max(1);
                    (nodes[..cut].to_vec(), nodes[cut..].to_vec())
                }
            };
            let one_way = mode == 1 || mode == 3;
            for &x in &a {
                rules[x] = b.iter().map(|&y| drop_rule(y)).collect();
            }
            if !one_way {
                for &y in &b {
                    rules[y] = a.iter().map(|&x| drop_rule(x)).collect();
                }
            }
            let arrow = if one_way { "-/->" } else { "<-/->" };
            let who = match (mode, aim) {
                (0 | 1, Some(aim)) => format!("{} isolated", aim.describe()),
                _ => "halves".to_owned(),
            };
            ("partition", rules, format!("{a:?} {arrow} {b:?} ({who})"))
        }
        FaultKind::Drop => {
            let p = 0.1 + 0.5 * rng.unit();
            let mut detail = format!("p={p:.2}:");
            for (from, out) in rules.iter_mut().enumerate() {
                for to in (0..n).filter(|&to| to != from) {
                    if rng.chance(0.5) {
                        out.push(json!({ "to": to, "action": "drop", "probability": p }));
                        let _ = write!(detail, " {from}->{to}");
                    }
                }
            }
            if rules.iter().all(Vec::is_empty) && n > 1 {
                rules[0].push(json!({ "to": 1, "action": "drop", "probability": p }));
                detail.push_str(" 0->1");
            }
            ("drop", rules, detail)
        }
        FaultKind::Delay => {
            let delay = rng.between(20, 250);
            let jitter = rng.between(0, delay);
            for r in &mut rules {
                r.push(json!({ "action": "delay", "delay_ms": delay, "jitter_ms": jitter }));
            }
            (
                "delay",
                rules,
                format!("{delay} ms ± {jitter} ms, every link"),
            )
        }
        _ => {
            let p = 0.2 + 0.6 * rng.unit();
            for r in &mut rules {
                r.push(json!({ "action": "duplicate", "probability": p }));
            }
            (
                "duplicate",
                rules,
                format!("p={p:.2}, every link (Raft RPCs)"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_way_partition_drops_both_directions() {
        for seed in 0..50 {
            let mut rng = Rng::new(seed);
            let aim = Aim {
                node: 2,
                group: (seed % 2 == 0).then_some(3),
            };
            let (_, rules, detail) = network_rules(FaultKind::Partition, 5, Some(aim), &mut rng);
            if detail.contains("isolated") {
                let what = if seed % 2 == 0 {
                    "data group 3's leader isolated"
                } else {
                    "the leader isolated"
                };
                assert!(detail.contains(what) && detail.contains("[2]"), "{detail}");
            }
            let links: Vec<(usize, u64)> = rules
                .iter()
                .enumerate()
                .flat_map(|(i, r)| r.iter().map(move |x| (i, x["to"].as_u64().unwrap())))
                .collect();
            assert!(!links.is_empty(), "{detail}");
            if !detail.contains("-/->") || detail.contains("<-/->") {
                for &(i, to) in &links {
                    assert!(
                        links.contains(&(usize::try_from(to).unwrap(), i as u64)),
                        "{detail}: {links:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn aims_say_which_group_they_lead() {
        let aim = |group| Aim { node: 1, group };
        assert_eq!(aim(None).describe(), "the leader");
        assert_eq!(aim(Some(0)).describe(), "group 0's leader");
        assert_eq!(aim(Some(3)).describe(), "data group 3's leader");
    }

    #[test]
    fn kinds_parse_by_name() {
        for k in FaultKind::ALL {
            assert_eq!(FaultKind::parse(k.name()), Some(k));
        }
        assert!(FaultKind::Partition.is_network());
        assert!(FaultKind::Mix.is_network());
        assert!(!FaultKind::Kill.is_network());
        for k in FaultKind::ALL {
            let classes = [
                FaultKind::NETWORK.contains(&k),
                FaultKind::PROCESS.contains(&k),
                k == FaultKind::Mix,
            ];
            assert_eq!(classes.iter().filter(|&&c| c).count(), 1, "{k:?}");
        }
    }
}
