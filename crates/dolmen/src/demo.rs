//! `dolmen demo`: a local three-node cluster as child processes, for trying Dolmen out. The
//! processes, ports and configs are `dolmen_testkit`'s (the harness the tests and the chaos
//! runner use); this module adds the fixed ports, the kept configs and the printed guide.
//!
//! ```text
//!  write data/demo/node-<i>.toml (first run only, from dolmen_config::Config)
//!    ─▶ LocalCluster::start_many: 3 × `dolmen serve --config …`, each "dolmen ready:" line
//!    ─▶ poll /status until a leader has applied ≥ 1 ─▶ print endpoints
//!    ─▶ Ctrl-C / SIGTERM ─▶ SIGTERM children, 10 s, SIGKILL stragglers
//! ```
//! A child that exits before the cluster is up stops the demo with the tail of its log; one
//! that exits later (killed to watch a failover) is reported and the others keep running.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dolmen_admin::blocking::AdminClient;
use dolmen_testkit::render::{self, replicated_node};
use dolmen_testkit::{LocalCluster, NodeAddrs, NodeFiles, NodeSpec, NodeState, Stopped};

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
    /// Peers speak plaintext instead of mutual TLS with the demo's own CA (for comparing the
    /// two; applies to the configs this run writes).
    #[arg(long)]
    pub plaintext_peers: bool,
    /// A sharded cluster: group 0 holds the oracle and N data groups split the keyspace at even
    /// points of the first two key bytes (`[sharding] shards`; applies to the configs this run
    /// writes: use it with --fresh).
    #[arg(long, value_name = "N", conflicts_with = "split_keys")]
    pub shards: Option<u32>,
    /// A sharded cluster split at these keys (`[sharding] split_keys`, comma-separated, e.g.
    /// `g,n,t`; `hex:` for bytes): n keys make n + 1 data groups. Applies to the configs this
    /// run writes: use it with --fresh.
    #[arg(long, value_name = "KEYS", value_delimiter = ',')]
    pub split_keys: Option<Vec<String>>,
}

const NODES: u16 = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The first line of every config the demo writes.
/// The demo's operator credential, in the demo directory (readable by its owner only).
const TOKEN_FILE: &str = "admin-token";

/// Makes the demo's operator credential at `path` unless it exists: 32 random hex digits.
fn admin_token(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    let mut random = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("cannot read /dev/urandom for the admin token")?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

const CONFIG_HEADER: &str = "# Written by `dolmen demo`; edit freely, it is kept across runs.\n";

/// Runs the demo until Ctrl-C.
pub fn run(args: DemoArgs) -> ExitCode {
    match demo(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dolmen demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    if args.fresh && args.dir.exists() {
        fs::remove_dir_all(&args.dir)
            .with_context(|| format!("cannot delete {}", args.dir.display()))?;
    }
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the dolmen executable")?;
    let token_file = args.dir.join(TOKEN_FILE);
    admin_token(&token_file)?;

    let addrs = NodeAddrs::consecutive(NODES, args.thrift_port, args.peer_port, args.admin_port);
    // One throwaway CA for the demo's peers, made only when configs are written.
    let writes_configs = (0..addrs.len()).any(|i| !NodeFiles::flat(&args.dir, i).config.exists());
    let ca = (!args.plaintext_peers && writes_configs)
        .then(|| dolmen_testkit::TestCa::new("dolmen demo CA"))
        .transpose()?;
    let mut specs = Vec::with_capacity(addrs.len());
    for (i, a) in addrs.iter().enumerate() {
        // Every node's base_path is the demo directory (a replicated node keeps its data in
        // its own subdirectory below it).
        let files = NodeFiles {
            data: args.dir.clone(),
            ..NodeFiles::flat(&args.dir, i)
        };
        if !files.config.exists() {
            let mut config = replicated_node(i, &addrs, &args.dir);
            config.server.admin_token_file = token_file.clone();
            if let Some(shards) = args.shards {
                config.sharding.shards = shards;
            }
            if let Some(keys) = &args.split_keys {
                config.sharding.split_keys.clone_from(keys);
            }
            if let Some(ca) = &ca {
                let certs = args.dir.join("certs");
                fs::create_dir_all(&certs)
                    .with_context(|| format!("cannot create {}", certs.display()))?;
                config.tls = ca.write_node(&certs, i)?;
            }
            render::write(&files.config, CONFIG_HEADER, &config)
                .with_context(|| format!("cannot write {}", files.config.display()))?;
        }
        // Each run starts a fresh log.
        fs::write(&files.log, "")
            .with_context(|| format!("cannot create {}", files.log.display()))?;
        specs.push(NodeSpec { files, addrs: *a });
    }
    // Children inherit the environment (DOLMEN_LOG, ...), as if run by hand.
    let mut cluster = LocalCluster::new(&exe, specs, "demo").with_inherited_env();
    let result = serve(args, &mut cluster);
    if result.is_ok() {
        println!("stopping the demo cluster");
    }
    for (i, stopped) in cluster.stop_all(STOP_TIMEOUT) {
        match stopped {
            Stopped::Exited(status) => eprintln!("node {i} stopped ({status})"),
            Stopped::Killed => {
                eprintln!("node {i} did not stop within {STOP_TIMEOUT:?}; killed it");
            }
        }
    }
    result
}

/// Starts the nodes, prints the guide, and waits for Ctrl-C / SIGTERM.
fn serve(args: &DemoArgs, cluster: &mut LocalCluster) -> anyhow::Result<()> {
    let all: Vec<usize> = (0..cluster.len()).collect();
    cluster.start_many(&all, READY_TIMEOUT)?;
    let leader = wait_for_leader(cluster)?;
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
        "Console: http://127.0.0.1:{a}/ (any node's admin address). The operator credential \
         (console writes, membership changes) is in {token}:\n  export DOLMEN_ADMIN_TOKEN=$(cat {token})\n\
         Try:\n  dolmen set --addr 127.0.0.1:{p} hello world\n  dolmen get --addr 127.0.0.1:{q} hello\n  \
         dolmen cluster status --admin 127.0.0.1:{a}\nLogs: {}/node-<i>.log. Ctrl-C stops the cluster.",
        args.dir.display(),
        p = args.thrift_port,
        q = args.thrift_port + 1,
        a = args.admin_port,
        token = args.dir.join(TOKEN_FILE).display(),
    );

    // Run until Ctrl-C / SIGTERM. A node that dies now (say, killed to watch a failover) is
    // reported once; the others keep serving, as a real cluster would.
    let Some(runtime) = crate::small_runtime() else {
        bail!("cannot wait for Ctrl-C without a runtime");
    };
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = term.recv() => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    for (i, status) in cluster.reap_exited() {
                        eprintln!(
                            "node {i} exited ({status}); the others keep running. The end of {}:\n{}",
                            args.dir.join(format!("node-{i}.log")).display(),
                            cluster.log_tail(i, 10)
                        );
                    }
                    if cluster.nodes_in(NodeState::Down).len() == cluster.len() {
                        bail!("every node has exited; see {}/node-<i>.log", args.dir.display());
                    }
                }
            }
        }
    })
}

/// Waits until some node reports a leader that has applied at least version 1; fails early
/// when a node exits.
fn wait_for_leader(cluster: &mut LocalCluster) -> anyhow::Result<u64> {
    let started = Instant::now();
    loop {
        if let Some((i, status)) = cluster.reap_exited().into_iter().next() {
            bail!(
                "node {i} exited ({status}); the end of its log:\n{}",
                cluster.log_tail(i, 20)
            );
        }
        for a in cluster.addrs() {
            let admin = AdminClient::new(a.admin).with_timeout(Duration::from_secs(2));
            if let Ok(status) = admin.status() {
                if let (Some(leader), true) = (status.leader, status.applied_version >= 1) {
                    return Ok(leader);
                }
            }
        }
        if started.elapsed() > LEADER_TIMEOUT {
            bail!(
                "no leader elected within {LEADER_TIMEOUT:?}; node 0's log:\n{}",
                cluster.log_tail(0, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
