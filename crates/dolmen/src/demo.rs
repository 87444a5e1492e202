//! `dolmen demo`: a local three-node cluster as child processes, for trying Dolmen out.
//!
//! ```text
//!  write data/demo/node-<i>.toml (first run only) ─▶ spawn 3 × `dolmen serve --config …`
//!    ─▶ wait for each "dolmen ready:" line ─▶ poll /status until a leader has applied ≥ 1
//!    ─▶ print endpoints ─▶ Ctrl-C / SIGTERM ─▶ SIGTERM children, 10 s, SIGKILL stragglers
//! ```
//! A child that exits before the cluster is up stops the demo with the tail of its log; one
//! that exits later (killed to watch a failover) is reported and the others keep running.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hyper::Method;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use dolmen_server::admin_client::call;

/// `dolmen demo` flags.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the nodes keep their data, configs and logs.
    #[arg(long, default_value = "./data/demo")]
    pub dir: PathBuf,
    /// Delete the demo directory first (a new, empty cluster).
    #[arg(long)]
    pub fresh: bool,
    /// First Thrift port; nodes use it and the next two.
    #[arg(long, default_value_t = 9090)]
    pub thrift_port: u16,
    /// First peer (Raft) port.
    #[arg(long, default_value_t = 7090)]
    pub peer_port: u16,
    /// First admin HTTP port.
    #[arg(long, default_value_t = 9190)]
    pub admin_port: u16,
}

const NODES: u16 = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The children, stopped by PID when dropped.
struct Children(Vec<(u16, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            // Only a child not yet reaped still owns its PID.
            if let (Ok(None), Ok(pid)) = (child.try_wait(), i32::try_from(child.id())) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for (i, child) in &mut self.0 {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        eprintln!("node {i} stopped ({status})");
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        eprintln!("node {i} did not stop within {STOP_TIMEOUT:?}; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

/// Runs the demo until Ctrl-C.
pub fn run(args: DemoArgs) -> ExitCode {
    let Some(runtime) = crate::small_runtime() else {
        return ExitCode::from(1);
    };
    match runtime.block_on(demo(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dolmen demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn config_text(args: &DemoArgs, i: u16) -> String {
    let list = |base: u16| {
        (0..NODES)
            .map(|n| format!("\"127.0.0.1:{}\"", base + n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "# Written by `dolmen demo`; edit freely, it is kept across runs.\n\
         [deployment]\nmode = \"replicated\"\ninstance_id = {i}\nreplica_endpoints = [{clients}]\n\n\
         [consensus]\nendpoints = [{peers}]\nbootstrap = {bootstrap}\n\n\
         [database]\nbase_path = {base:?}\n\n\
         [server]\nadmin_port = {admin}\n",
        clients = list(args.thrift_port),
        peers = list(args.peer_port),
        bootstrap = i == 0,
        base = args.dir.display().to_string(),
        admin = args.admin_port + i,
    )
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    if args.fresh && args.dir.exists() {
        fs::remove_dir_all(&args.dir)
            .with_context(|| format!("cannot delete {}", args.dir.display()))?;
    }
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the dolmen executable")?;

    let mut children = Children(Vec::new());
    let mut logs = Vec::new();
    for i in 0..NODES {
        let config = args.dir.join(format!("node-{i}.toml"));
        if !config.exists() {
            fs::write(&config, config_text(&args, i))
                .with_context(|| format!("cannot write {}", config.display()))?;
        }
        let log_path = args.dir.join(format!("node-{i}.log"));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = std::process::Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start node {i}"))?;
        children.0.push((i, child));
        logs.push(log_path);
    }

    // Each child prints its ready line once its listeners are bound.
    let started = Instant::now();
    for (i, log) in logs.iter().enumerate() {
        loop {
            if fs::read_to_string(log)
                .unwrap_or_default()
                .contains("dolmen ready:")
            {
                break;
            }
            check_alive(&mut children, &logs)?;
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "node {i} did not become ready within {READY_TIMEOUT:?}; its log:\n{}",
                    tail(log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let leader = wait_for_leader(&args, &mut children, &logs).await?;
    println!(
        "Dolmen demo cluster: {NODES} nodes, data in {}",
        args.dir.display()
    );
    for i in 0..NODES {
        println!(
            "  node {i}: thrift 127.0.0.1:{}  peer 127.0.0.1:{}  admin http://127.0.0.1:{}{}",
            args.thrift_port + i,
            args.peer_port + i,
            args.admin_port + i,
            if u64::from(i) == leader {
                "  (leader)"
            } else {
                ""
            },
        );
    }
    println!(
        "Try:\n  dolmen set --addr 127.0.0.1:{p} hello world\n  dolmen get --addr 127.0.0.1:{q} hello\n  \
         dolmen cluster status --admin 127.0.0.1:{a}\nLogs: {}/node-<i>.log. Ctrl-C stops the cluster.",
        args.dir.display(),
        p = args.thrift_port,
        q = args.thrift_port + 1,
        a = args.admin_port,
    );

    // Run until Ctrl-C / SIGTERM. A node that dies now (say, killed to watch a failover) is
    // reported once; the others keep serving, as a real cluster would.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut reported = vec![false; logs.len()];
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                report_exits(&mut children, &logs, &mut reported);
                if reported.iter().all(|r| *r) {
                    bail!("every node has exited; see {}/node-<i>.log", args.dir.display());
                }
            }
        }
    }
    println!("stopping the demo cluster");
    drop(children);
    Ok(())
}

/// Prints, once per node, that it exited (and the end of its log).
fn report_exits(children: &mut Children, logs: &[PathBuf], reported: &mut [bool]) {
    for (i, child) in &mut children.0 {
        let idx = usize::from(*i);
        if reported[idx] {
            continue;
        }
        if let Ok(Some(status)) = child.try_wait() {
            reported[idx] = true;
            eprintln!(
                "node {i} exited ({status}); the others keep running. The end of {}:\n{}",
                logs[idx].display(),
                tail(&logs[idx], 10)
            );
        }
    }
}

fn check_alive(children: &mut Children, logs: &[PathBuf]) -> anyhow::Result<()> {
    for (i, child) in &mut children.0 {
        if let Some(status) = child.try_wait()? {
            let log = &logs[usize::from(*i)];
            return Err(anyhow!(
                "node {i} exited ({status}); the end of {}:\n{}",
                log.display(),
                tail(log, 20)
            ));
        }
    }
    Ok(())
}

async fn wait_for_leader(
    args: &DemoArgs,
    children: &mut Children,
    logs: &[PathBuf],
) -> anyhow::Result<u64> {
    let started = Instant::now();
    loop {
        check_alive(children, logs)?;
        for i in 0..NODES {
            let admin = format!("127.0.0.1:{}", args.admin_port + i);
            let Ok(status) = call(Method::GET, &admin, "/status", Duration::from_secs(2)).await
            else {
                continue;
            };
            let leader = status.get("leader").and_then(|l| l.as_u64());
            let applied = status.get("applied_version").and_then(|a| a.as_u64());
            if let (Some(leader), Some(applied)) = (leader, applied) {
                if applied >= 1 {
                    return Ok(leader);
                }
            }
        }
        if started.elapsed() > LEADER_TIMEOUT {
            bail!(
                "no leader elected within {LEADER_TIMEOUT:?}; node 0's log:\n{}",
                tail(&logs[0], 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
