//! One chaos run from start to verdict, and the artifacts it leaves.
//!
//! ```text
//!  run.json ─ Cluster::start ─ preload bank ─┬─ client tasks (workloads) ──┐
//!                                            └─ nemesis (seeded faults) ───┤ for --duration
//!  heal (resume, restart, clear rules) ◀───────────────────────────────────┘
//!   ─ wait for a leader ─ set finals from every replica ─ replica agreement (digests)
//!   ─ stop the nodes ─ checkers ─ summary.json (+ explanation.txt when failing)
//! ```
//!
//! Run folder: `run.json`, `history.jsonl`, `summary.json`, `explanation.txt` (failures),
//! `node-<i>.toml`, `logs/node-<i>.log`, `data/node-<i>/` (deleted when the run passes).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use dolmen_client::Client;

use crate::check::{self, Limits, Report, Verdict};
use crate::cluster::{Cluster, ClusterSpec, NodeDigest};
use crate::history::{Event, SetFinal};
use crate::nemesis;
use crate::options::{names, PlantedBug, RunOptions};
use crate::recorder::{Recorder, Tally};
use crate::report::{
    explanation, git_commit, print_report, print_shards, print_summary, print_tally, runner_report,
    unix_secs, utc_stamp, verdict_of, write_json, RunInfo, Summary,
};
use crate::rng::Rng;
use crate::shards::{Ranges, ShardTally};
use crate::workload::{self, bank, list_append, register, set, Ctx, Workload};

/// How long the cluster may take to be ready at start and after healing.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the replicas may take to catch up and agree after healing.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the locks of commits across groups may take to be released after healing (the
/// orphan timeout is 2 s, the sweep every 0.5 s; the rest is for a group to elect a leader
/// and catch up).
const LOCKS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the final set reads may take per node.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long clients get to finish their last operation after the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Time budget of the register checker: half the run's duration, within these bounds.
const CHECK_BUDGET: (Duration, Duration) = (Duration::from_secs(20), Duration::from_secs(600));
/// Time budget of `dolmen-chaos check` (offline, no hurry).
const OFFLINE_CHECK_BUDGET: Duration = Duration::from_secs(1800);

/// What a finished run decided.
pub struct RunResult {
    /// 0 = every check Ok, 1 = a violation or an unknown verdict.
    pub exit_code: i32,
    /// The checkers that found a violation.
    pub violated: Vec<String>,
    /// The checkers that could not decide (`cross-range` among them when no transaction
    /// reaching several ranges committed).
    pub undecided: Vec<String>,
    /// The run folder.
    pub out: PathBuf,
}

/// The default run folder: `./chaos-runs/<UTC timestamp>-seed-<seed>`.
pub fn default_out(seed: u64) -> PathBuf {
    let stamp = utc_stamp(unix_secs()).replace([':', '-'], "");
    PathBuf::from("chaos-runs").join(format!("{stamp}-seed-{seed}"))
}

/// Runs the whole thing. `stop` ends the load and the nemesis early (Ctrl-C).
///
/// # Errors
/// A harness error (the cluster could not start, a fault could not be applied or undone, a
/// file could not be written): exit code 2. The run folder is kept.
pub async fn run(opts: RunOptions, out: &Path, stop: Arc<AtomicBool>) -> anyhow::Result<RunResult> {
    let started = Instant::now();
    // A hand-edited run.json (replay) is checked as the command line is.
    let ranges = opts.ranges().context("split keys")?;
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let out = out.canonicalize().unwrap_or_else(|_| out.to_path_buf());
    // Time zero of the history; `started_unix_ms` ties it to the wall-clock markers in the
    // node logs (`---- chaos: ... (unix_ms=..) ----`).
    let recorder = Arc::new(Recorder::create(&out.join("history.jsonl"))?);
    let info = RunInfo {
        options: opts.clone(),
        started: utc_stamp(unix_secs()),
        started_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0)),
        commit: git_commit(),
        chaos_version: env!("CARGO_PKG_VERSION").to_owned(),
        bank_accounts: bank::ACCOUNTS,
        bank_total: bank::total(),
        replay: format!("dolmen-chaos replay {}", out.display()),
    };
    write_json(&out.join("run.json"), &info)?;
    eprintln!(
        "chaos: seed {} | {} nodes | {}s | workloads {} | faults {} | {} clients | {} reads{}\nchaos: run folder {}",
        opts.seed,
        opts.nodes,
        opts.duration_secs,
        names(&opts.workloads, Workload::name),
        if opts.faults.is_empty() { "none".to_owned() } else { names(&opts.faults, nemesis::FaultKind::name) },
        opts.clients,
        if opts.lease_reads { "lease" } else { "linearizable" },
        match opts.planted_bug {
            Some(PlantedBug::StaleReads) => " | PLANTED BUG stale-reads",
            Some(PlantedBug::SkipLogFsync) => " | PLANTED BUG skip-log-fsync",
            Some(PlantedBug::SkipConflictCheck) if opts.planted_bug_group != 0 => {
                " | PLANTED BUG skip-conflict-check (one data group)"
            }
            Some(PlantedBug::SkipConflictCheck) => " | PLANTED BUG skip-conflict-check",
            None => "",
        },
        out.display()
    );

    if opts.lose_unsynced_writes {
        eprintln!("chaos: power cuts: a killed node loses what it never fsynced");
    }
    if ranges.is_sharded() {
        let labels: Vec<String> = (0..ranges.len()).map(|i| ranges.label(i)).collect();
        eprintln!(
            "chaos: sharded: group 0 holds the oracle, {} data groups: {}",
            ranges.len(),
            labels.join(" ")
        );
    }
    if opts.planted_bug == Some(PlantedBug::StaleReads)
        && (!opts.workloads.contains(&Workload::Register)
            || !opts.faults.contains(&nemesis::FaultKind::Partition))
    {
        eprintln!(
            "chaos: warning: the planted bug shows up in register reads under partitions; \
             without --workloads register and --faults partition it may go unnoticed"
        );
    }
    if opts.planted_bug == Some(PlantedBug::SkipLogFsync)
        && (!opts.workloads.contains(&Workload::Set)
            || !opts.faults.contains(&nemesis::FaultKind::CrashAll))
    {
        eprintln!(
            "chaos: warning: the planted bug shows up as acknowledged inserts lost when every \
             node crashes; without --workloads set and --faults crash-all it may go unnoticed"
        );
    }
    if opts.planted_bug == Some(PlantedBug::SkipConflictCheck)
        && !opts.workloads.contains(&Workload::ListAppend)
    {
        eprintln!(
            "chaos: warning: the planted bug shows up as dependency cycles between list-append \
             transactions; without --workloads list-append it may go unnoticed"
        );
    }
    let spec = ClusterSpec {
        nodes: opts.nodes,
        dolmen: opts.dolmen.clone(),
        dir: out.clone(),
        network_faults: opts.network_faults(),
        stale_reads: opts.planted_bug == Some(PlantedBug::StaleReads),
        lease_reads: opts.lease_reads,
        lose_unsynced_writes: opts.lose_unsynced_writes,
        skip_log_fsync: opts.planted_bug == Some(PlantedBug::SkipLogFsync),
        skip_conflict_check: opts.planted_bug == Some(PlantedBug::SkipConflictCheck),
        skip_conflict_check_group: opts.planted_bug_group,
        split_keys: opts.split_keys.clone(),
    };
    let mut cluster = Cluster::start(spec, READY_TIMEOUT)
        .await
        .context("starting the cluster")?;
    if opts.network_faults() {
        cluster.probe_network_faults().await?;
    }
    let leader = cluster.wait_leader(READY_TIMEOUT).await?;
    eprintln!("chaos: cluster up, leader is node {leader}");
    let thrift: Vec<_> = cluster.addrs().iter().map(|a| a.thrift).collect();
    if opts.workloads.contains(&Workload::Bank) {
        bank::preload(&thrift, Duration::from_secs(30)).await?;
    }

    // Load and faults.
    let root = Rng::new(opts.seed);
    let stop_at = Instant::now() + opts.duration();
    let ctx = Ctx {
        recorder: Arc::clone(&recorder),
        nodes: thrift.clone(),
        stop_at,
        stop: Arc::clone(&stop),
    };
    let registers = Arc::new(register::Registers::default());
    let elements = Arc::new(AtomicU64::new(1));
    let lists = Arc::new(list_append::Shared::new(&ranges));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..opts.clients {
        let w = opts.workloads[c % opts.workloads.len()];
        let rng = root.fork(1000 + c as u64);
        let ctx = ctx.clone();
        match w {
            Workload::Register => tasks.spawn(register::client(ctx, Arc::clone(&registers), rng)),
            Workload::Bank => tasks.spawn(bank::client(ctx, rng)),
            Workload::Set => tasks.spawn(set::client(ctx, Arc::clone(&elements), rng)),
            Workload::ListAppend => tasks.spawn(list_append::client(ctx, Arc::clone(&lists), rng)),
        };
    }
    let progress = tokio::spawn(progress(Arc::clone(&recorder), stop_at, Arc::clone(&stop)));
    let nemesis_result = if opts.faults.is_empty() {
        wait_until(stop_at, &stop).await;
        Ok(Vec::new())
    } else {
        nemesis::run(
            &mut cluster,
            &recorder,
            &opts.faults,
            root.fork(1),
            stop_at,
            &stop,
        )
        .await
    };
    if nemesis_result.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT + workload::OP_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
    }
    progress.abort();

    // Nodes that died by themselves since the nemesis last looked (before heal restarts them).
    let late_crashes: Vec<String> = cluster
        .reap_exited()
        .into_iter()
        .map(|(i, status)| {
            eprintln!("chaos: node {i} exited by itself ({status})");
            recorder.nemesis("crashed", vec![i], status.clone());
            format!("node {i} exited by itself: {status}")
        })
        .collect();

    // Heal, whatever happened above.
    eprintln!("chaos: healing");
    let healed = cluster.heal().await;
    if let Ok(done) = &healed {
        for (action, node) in done {
            recorder.nemesis(action, vec![*node], "final heal".into());
        }
    }
    recorder.nemesis(
        "heal-all",
        (0..cluster.len()).collect(),
        "end of faults".into(),
    );
    let mut crashes = nemesis_result.context("the nemesis failed")?;
    crashes.extend(late_crashes);
    healed.context("healing the cluster at the end")?;
    if stop.load(Ordering::Relaxed) {
        anyhow::bail!("interrupted");
    }

    let mut reports: Vec<Report> = Vec::new();
    if !crashes.is_empty() {
        reports.push(runner_report(
            "node-exits",
            Verdict::Violation,
            crashes.len(),
            format!(
                "{} node exit(s) the nemesis did not cause: {}",
                crashes.len(),
                crashes.join("; ")
            ),
        ));
    }
    let recovered = match cluster.wait_leader(READY_TIMEOUT).await {
        Ok(l) => cluster.wait_ready(READY_TIMEOUT).await.map(|()| l),
        Err(e) => Err(e),
    };
    match &recovered {
        Ok(l) => eprintln!("chaos: healed, leader is node {l}"),
        Err(e) => reports.push(runner_report(
            "recovery",
            Verdict::Unknown,
            1,
            format!("the healed cluster did not recover within {READY_TIMEOUT:?}: {e:#}"),
        )),
    }
    if recovered.is_ok() {
        // Before any final read, so that only the orphan sweeper can release what is left.
        if ranges.is_sharded() {
            reports.push(locks_released(&cluster).await);
        }
        if opts.workloads.contains(&Workload::Set) {
            for i in 0..cluster.len() {
                match final_set(&thrift, i).await {
                    Ok(f) => {
                        eprintln!(
                            "chaos: node {i} holds {} set elements at version {}",
                            f.elements.len(),
                            f.version
                        );
                        recorder.record(Event::SetFinal(f));
                    }
                    Err(e) => reports.push(runner_report(
                        "set-final-read",
                        Verdict::Unknown,
                        1,
                        format!("could not read the set from node {i}: {e:#}"),
                    )),
                }
            }
        }
        reports.push(replica_agreement(&cluster).await);
    }
    let mut warnings = cluster.shutdown().await;
    let exits = cluster.reap_exited();
    warnings.extend(exits.into_iter().map(|(i, s)| format!("node {i}: {s}")));
    let events = recorder.finish()?;

    // Checkers.
    eprintln!("chaos: checking {} events", events.len());
    let mut history_reports = tokio::task::spawn_blocking({
        let events = events.clone();
        let workloads = opts.workloads.clone();
        let budget = (opts.duration() / 2).clamp(CHECK_BUDGET.0, CHECK_BUDGET.1);
        move || check_history(&events, &workloads, (bank::ACCOUNTS, bank::total()), budget)
    })
    .await
    .map_err(|e| anyhow!("the checker task failed: {e}"))?;
    history_reports.append(&mut reports);
    let mut reports = history_reports;
    let shards = ranges
        .is_sharded()
        .then(|| ShardTally::of(&events, &ranges));
    if let Some(shards) = &shards {
        reports.push(shards.cross_range_report());
    }

    let result = verdict_of(&reports);
    let with = |verdict: Verdict| {
        reports
            .iter()
            .filter(|r| r.verdict == verdict)
            .map(|r| r.checker.to_owned())
            .collect::<Vec<_>>()
    };
    let (violated, undecided) = (with(Verdict::Violation), with(Verdict::Unknown));
    let summary = Summary {
        result,
        seed: opts.seed,
        tally: Tally::of(&events),
        shards,
        reports,
        warnings,
        elapsed_secs: started.elapsed().as_secs_f64(),
    };
    write_json(&out.join("summary.json"), &summary)?;
    let passed = result == "pass";
    if passed {
        if !opts.keep_data {
            cluster.remove_data();
            let _removed = std::fs::remove_dir(out.join("data"));
        }
    } else {
        std::fs::write(out.join("explanation.txt"), explanation(&summary))
            .context("write explanation.txt")?;
    }
    drop(cluster);
    print_summary(&summary, &out, &info.replay);
    Ok(RunResult {
        exit_code: i32::from(!passed),
        violated,
        undecided,
        out,
    })
}

/// Re-runs the history checkers on a saved run folder (`dolmen-chaos check <dir>`).
///
/// # Errors
/// When `history.jsonl` cannot be read or parsed.
pub fn check_saved(dir: &Path) -> anyhow::Result<i32> {
    let path = dir.join("history.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let mut events = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let e: Event = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a history event", path.display(), n + 1))?;
        events.push(e);
    }
    let info: Option<RunInfo> = std::fs::read(dir.join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let (accounts, total) = info.as_ref().map_or((bank::ACCOUNTS, bank::total()), |i| {
        (i.bank_accounts, i.bank_total)
    });
    let ranges = match &info {
        Some(i) => i.options.ranges().context("run.json's split keys")?,
        None => Ranges::default(),
    };
    // The workloads present in the history.
    let mut workloads = Vec::new();
    if events.iter().any(|e| matches!(e, Event::Register(_))) {
        workloads.push(Workload::Register);
    }
    if events
        .iter()
        .any(|e| matches!(e, Event::BankRead(_) | Event::Transfer(_)))
    {
        workloads.push(Workload::Bank);
    }
    if events
        .iter()
        .any(|e| matches!(e, Event::SetAdd(_) | Event::SetFinal(_)))
    {
        workloads.push(Workload::Set);
    }
    if events.iter().any(|e| matches!(e, Event::ListAppend(_))) {
        workloads.push(Workload::ListAppend);
    }
    let mut reports = check_history(&events, &workloads, (accounts, total), OFFLINE_CHECK_BUDGET);
    let tally = Tally::of(&events);
    print_tally(&tally);
    if ranges.is_sharded() {
        let shards = ShardTally::of(&events, &ranges);
        print_shards(&shards);
        reports.push(shards.cross_range_report());
    }
    let result = verdict_of(&reports);
    eprintln!("checks ({} events from {}):", events.len(), path.display());
    for r in &reports {
        print_report(r);
    }
    eprintln!("result: {}", result.to_uppercase());
    Ok(i32::from(result != "pass"))
}

/// Runs the checkers of `workloads` on `events`; `bank` = (accounts, invariant total); the
/// register checker gives up (Unknown) after `budget`.
pub fn check_history(
    events: &[Event],
    workloads: &[Workload],
    (accounts, total): (u32, i64),
    budget: Duration,
) -> Vec<Report> {
    let mut reports = Vec::new();
    if workloads.contains(&Workload::Register) {
        let ops: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Register(op) => Some(op.clone()),
                _ => None,
            })
            .collect();
        let limits = Limits {
            deadline: Some(Instant::now() + budget),
            ..Limits::default()
        };
        reports.push(check::check_registers(&ops, &limits));
    }
    if workloads.contains(&Workload::Bank) {
        let mut reads = Vec::new();
        let mut transfers = Vec::new();
        for e in events {
            match e {
                Event::BankRead(r) => reads.push(r.clone()),
                Event::Transfer(t) => transfers.push(t.clone()),
                _ => {}
            }
        }
        reports.push(check::check_bank(&reads, accounts, total));
        // Histories written before commit versions were recorded cannot be checked by version.
        let initial = total / i64::from(accounts.max(1));
        if let Some(r) = check::check_bank_versions(&transfers, &reads, accounts, initial) {
            reports.push(r);
        }
    }
    if workloads.contains(&Workload::Set) {
        let mut adds = Vec::new();
        let mut finals = Vec::new();
        for e in events {
            match e {
                Event::SetAdd(a) => adds.push(a.clone()),
                Event::SetFinal(f) => finals.push(f.clone()),
                _ => {}
            }
        }
        reports.push(check::check_set(&adds, &finals));
    }
    if workloads.contains(&Workload::ListAppend) {
        let txns: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::ListAppend(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        reports.push(check::check_list_append(&txns));
    }
    reports
}

/// Reads the set from node `i`, retrying (bounded) while the healed cluster settles.
async fn final_set(thrift: &[std::net::SocketAddr], i: usize) -> anyhow::Result<SetFinal> {
    let addr = *thrift.get(i).ok_or_else(|| anyhow!("no node {i}"))?;
    let client = Client::new(addr, Duration::from_secs(5));
    let deadline = Instant::now() + FINAL_READ_TIMEOUT;
    let mut last = anyhow!("not tried");
    for _ in 0..1000 {
        if Instant::now() >= deadline {
            break;
        }
        match set::read_final(&client, i).await {
            Ok(f) => return Ok(f),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(last.context(format!("no complete read within {FINAL_READ_TIMEOUT:?}")))
}

/// Waits until no node's replica of any data group holds a lock of a transaction committing
/// across groups (`dolmen_group_locks` on every node's `/metrics`). The load has stopped and
/// nothing reads yet, so the coordinators' resolves and the orphan sweeper (which decides a
/// lock older than 2 s and resolves it, every 0.5 s, docs/sharding.md §6.5) must release every
/// lock, those of coordinators killed mid-commit included; one still held after
/// [`LOCKS_TIMEOUT`] is a violation (its keys stay unreadable).
async fn locks_released(cluster: &Cluster) -> Report {
    let started = Instant::now();
    let deadline = started + LOCKS_TIMEOUT;
    let held = |all: &[(usize, Vec<(u64, u64)>)]| -> Vec<String> {
        all.iter()
            .flat_map(|(i, groups)| {
                groups
                    .iter()
                    .filter(|&&(_, n)| n > 0)
                    .map(move |&(g, n)| format!("node {i} g{g}: {n}"))
            })
            .collect()
    };
    let mut first: Option<Vec<String>> = None;
    let mut last = String::from("not asked");
    loop {
        let mut all = Vec::with_capacity(cluster.len());
        for i in 0..cluster.len() {
            match cluster.group_locks(i).await {
                Ok(groups) => all.push((i, groups)),
                Err(e) => last = format!("node {i}: {e:#}"),
            }
        }
        if all.len() == cluster.len() && all.iter().all(|(_, groups)| groups.is_empty()) {
            return runner_report(
                "locks-released",
                Verdict::Unknown,
                0,
                "no node exports dolmen_group_locks: the locks could not be counted".to_owned(),
            );
        }
        if all.len() == cluster.len() {
            let now = held(&all);
            let at_first = first.get_or_insert_with(|| now.clone());
            if now.is_empty() {
                let seen = if at_first.is_empty() {
                    "none held when first asked".to_owned()
                } else {
                    format!("when first asked: {}", at_first.join(", "))
                };
                return runner_report(
                    "locks-released",
                    Verdict::Ok,
                    all.iter().map(|(_, g)| g.len()).sum(),
                    format!(
                        "no replica holds a lock {:.1} s after healing ({seen})",
                        started.elapsed().as_secs_f64()
                    ),
                );
            }
            last = format!("still held: {}", now.join(", "));
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let verdict = if first.is_some() {
        Verdict::Violation
    } else {
        Verdict::Unknown
    };
    runner_report(
        "locks-released",
        verdict,
        cluster.len(),
        format!(
            "locks of transactions committing across groups not released {LOCKS_TIMEOUT:?} \
             after healing (the orphan timeout is 2 s); {last}; when first asked: {}",
            first.map_or_else(|| "no answer".to_owned(), |f| f.join(", "))
        ),
    )
}

/// Waits until every node has applied at least what the most advanced one had when asked,
/// then compares every node's digest at the smallest applied version (bounded; retried while
/// a node refuses that version).
async fn replica_agreement(cluster: &Cluster) -> Report {
    let n = cluster.len();
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut target = None;
    let mut last = String::from("not tried");
    for _ in 0..100_000 {
        if Instant::now() >= deadline {
            break;
        }
        let mut applied = Vec::with_capacity(n);
        for i in 0..n {
            match cluster.applied(i).await {
                Ok(a) => applied.push(a),
                Err(e) => {
                    last = format!("node {i}: {e:#}");
                    break;
                }
            }
        }
        if applied.len() == n {
            let (lo, hi) = (
                applied.iter().copied().min().unwrap_or(0),
                applied.iter().copied().max().unwrap_or(0),
            );
            let target = *target.get_or_insert(hi);
            if lo >= target {
                let mut digests = Vec::with_capacity(n);
                for i in 0..n {
                    match cluster.digest(i, lo).await {
                        Ok(d) => digests.push(d),
                        Err(e) => {
                            last = format!("digest of node {i} at {lo}: {e:#}");
                            break;
                        }
                    }
                }
                if digests.len() == n {
                    return agreement_report(&digests, lo);
                }
            } else {
                last = format!("applied versions {applied:?}, waiting for all >= {target}");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    runner_report(
        "replica-agreement",
        Verdict::Unknown,
        n,
        format!("replicas did not converge within {CONVERGE_TIMEOUT:?}; last: {last}"),
    )
}

/// The replica-agreement verdict from every node's digest at `version`; on a sharded cluster
/// it names the data groups compared and, when replicas differ, the groups whose digests do.
fn agreement_report(digests: &[NodeDigest], version: u64) -> Report {
    let n = digests.len();
    let first = digests.first().map(|d| d.digest.as_str()).unwrap_or("");
    let agree = digests.iter().all(|d| d.digest == first);
    let groups = digests.first().map_or(0, |d| d.groups.len());
    let over = if groups > 0 {
        format!(" (combined over {groups} data groups, each digested at that version)")
    } else {
        String::new()
    };
    if agree {
        return runner_report(
            "replica-agreement",
            Verdict::Ok,
            n,
            format!("all {n} replicas have digest {first} at version {version}{over}"),
        );
    }
    let mut listed: Vec<String> = digests
        .iter()
        .enumerate()
        .map(|(i, d)| format!("node {i}: {}", d.digest))
        .collect();
    // Per group: the groups whose replicas differ, each with every node's digest.
    let labels: Vec<&String> = digests
        .first()
        .map(|d| d.groups.iter().map(|(label, _)| label).collect())
        .unwrap_or_default();
    for (g, label) in labels.iter().enumerate() {
        let per_node: Vec<Option<&String>> = digests
            .iter()
            .map(|d| d.groups.get(g).map(|(_, digest)| digest))
            .collect();
        if per_node.iter().all(|d| *d == per_node[0]) {
            continue;
        }
        let shown: Vec<String> = per_node
            .iter()
            .enumerate()
            .map(|(i, d)| format!("node {i} {}", d.map_or("-", |d| d.as_str())))
            .collect();
        listed.push(format!("group {label} differs: {}", shown.join(", ")));
    }
    runner_report(
        "replica-agreement",
        Verdict::Violation,
        n,
        format!(
            "replicas DIVERGED: different digests at version {version}{over}:\n{}",
            listed.join("\n")
        ),
    )
}

/// Prints ops/s about every 10 s until `stop_at`.
async fn progress(recorder: Arc<Recorder>, stop_at: Instant, stop: Arc<AtomicBool>) {
    let mut last = (Instant::now(), recorder.ops());
    for _ in 0..1_000_000 {
        if Instant::now() >= stop_at || stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(
            Duration::from_secs(10).min(stop_at.saturating_duration_since(Instant::now())),
        )
        .await;
        let now = (Instant::now(), recorder.ops());
        let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64().max(0.001);
        eprintln!(
            "chaos: [{:>4}s] {rate:.0} ops/s, {} ops so far, {}s left",
            recorder.now() / 1_000_000_000,
            now.1,
            stop_at.saturating_duration_since(Instant::now()).as_secs()
        );
        last = now;
    }
}

async fn wait_until(t: Instant, stop: &AtomicBool) {
    for _ in 0..10_000_000 {
        if Instant::now() >= t || stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(combined: &str, groups: &[&str]) -> NodeDigest {
        NodeDigest {
            digest: combined.to_owned(),
            groups: groups
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("g{}", i + 1), (*d).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn replicas_agree_only_with_equal_digests_and_a_divergence_names_the_group() {
        let same = [digest("aa", &["1", "2"]), digest("aa", &["1", "2"])];
        let r = agreement_report(&same, 7);
        assert_eq!(r.verdict, Verdict::Ok);
        assert!(
            r.explanation.contains("over 2 data groups"),
            "{}",
            r.explanation
        );
        let apart = [
            digest("aa", &["1", "2"]),
            digest("bb", &["1", "3"]),
            digest("aa", &["1", "2"]),
        ];
        let r = agreement_report(&apart, 7);
        assert_eq!(r.verdict, Verdict::Violation);
        assert!(
            r.explanation
                .contains("group g2 differs: node 0 2, node 1 3, node 2 2"),
            "{}",
            r.explanation
        );
        assert!(!r.explanation.contains("group g1"), "{}", r.explanation);
        let unsharded = [digest("aa", &[]), digest("ab", &[])];
        let r = agreement_report(&unsharded, 7);
        assert_eq!(r.verdict, Verdict::Violation);
        assert!(!r.explanation.contains("data groups"), "{}", r.explanation);
    }
}
