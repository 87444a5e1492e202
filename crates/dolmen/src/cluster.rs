//! `dolmen cluster …`: operations on a running cluster through any node's admin API.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hyper::Method;

use dolmen_server::admin_client::{call, call_raw, into_json};

/// `dolmen cluster` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Initialize a new cluster from the node's configured members (once; idempotent).
    Init(AdminArgs),
    /// Print every member: role, term, last log, committed, applied, lag.
    Status(AdminArgs),
    /// Ask the node to build a snapshot now.
    Snapshot(AdminArgs),
    /// Add a node (as a learner, promoted to voter once it has caught up). Idempotent.
    AddNode(AddNodeArgs),
    /// Remove a node from the membership (refused if it would leave no majority). Idempotent.
    RemoveNode(NodeArgs),
    /// Hand leadership to another voter and wait until it leads.
    TransferLeader(TransferArgs),
    /// Compare every replica's state checksum at one applied version; exit 1 if they differ.
    Verify(AdminArgs),
}

/// `add-node` flags.
#[derive(Debug, clap::Args)]
pub struct AddNodeArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The new node's id (its `deployment.instance_id`).
    #[arg(long)]
    id: u64,
    /// Its Thrift client address (host:port).
    #[arg(long)]
    client_addr: String,
    /// Its peer (Raft gRPC) address (host:port).
    #[arg(long)]
    peer_addr: String,
    /// Its admin HTTP address (host:port), optional.
    #[arg(long, default_value = "")]
    admin_addr: String,
}

/// `remove-node` flags.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The node to remove.
    #[arg(long)]
    id: u64,
}

/// `transfer-leader` flags.
#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The voter that should lead.
    #[arg(long)]
    to: u64,
}

/// Which nodes to talk to.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Admin HTTP addresses (host:port, comma-separated); the first one that answers is used.
    #[arg(
        long = "endpoints",
        visible_alias = "admin",
        value_delimiter = ',',
        default_value = "127.0.0.1:9190",
        env = "DOLMEN_ADMIN"
    )]
    pub endpoints: Vec<String>,
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a cluster command; exit 0 on success, 1 on failure.
pub fn run(command: ClusterCommand) -> ExitCode {
    let Some(runtime) = crate::small_runtime() else {
        return ExitCode::from(1);
    };
    let result = runtime.block_on(async {
        match command {
            ClusterCommand::Init(a) => init(&a.endpoints).await,
            ClusterCommand::Status(a) => status(&a.endpoints).await,
            ClusterCommand::Snapshot(a) => snapshot(&a.endpoints).await,
            ClusterCommand::AddNode(a) => {
                let path = format!(
                    "/cluster/add-node?id={}&client_addr={}&peer_addr={}&admin_addr={}",
                    a.id, a.client_addr, a.peer_addr, a.admin_addr
                );
                on_leader(&a.admin.endpoints, &path).await
            }
            ClusterCommand::RemoveNode(a) => {
                on_leader(
                    &a.admin.endpoints,
                    &format!("/cluster/remove-node?id={}", a.id),
                )
                .await
            }
            ClusterCommand::TransferLeader(a) => {
                on_leader(
                    &a.admin.endpoints,
                    &format!("/cluster/transfer-leader?to={}", a.to),
                )
                .await
            }
            ClusterCommand::Verify(a) => verify(&a.endpoints).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dolmen: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Calls `path` on the first endpoint that answers; a refusal (an HTTP error) is final.
async fn first_answer(
    method: Method,
    endpoints: &[String],
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut unreachable = Vec::new();
    for endpoint in endpoints {
        match call_raw(method.clone(), endpoint, path, TIMEOUT).await {
            Ok((status, body)) => return into_json(endpoint, path, status, &body),
            Err(e) => unreachable.push(format!("{e:#}")),
        }
    }
    anyhow::bail!("no admin endpoint answered: {}", unreachable.join("; "))
}

async fn init(endpoints: &[String]) -> anyhow::Result<()> {
    let answer = first_answer(Method::POST, endpoints, "/cluster/init").await?;
    match answer.get("outcome").and_then(|o| o.as_str()) {
        Some("initialized") => println!("initialized"),
        Some("already_initialized") => println!("already initialized"),
        _ => println!("{answer}"),
    }
    Ok(())
}

async fn snapshot(endpoints: &[String]) -> anyhow::Result<()> {
    first_answer(Method::POST, endpoints, "/cluster/snapshot").await?;
    println!("snapshot triggered");
    Ok(())
}

async fn status(endpoints: &[String]) -> anyhow::Result<()> {
    let answer = first_answer(Method::GET, endpoints, "/cluster/status").await?;
    let nodes = answer
        .get("nodes")
        .and_then(|n| n.as_array())
        .context("the answer has no `nodes` list")?;
    println!(
        "{:>4}  {:<21}  {:<10}  {:>6}  {:>10}  {:>10}  {:>10}  {:>8}  health",
        "node", "client", "role", "term", "last_log", "committed", "applied", "lag"
    );
    let leader_last = answer.get("leader_last_log").and_then(|v| v.as_u64());
    for n in nodes {
        let field = |k: &str| n.get(k).and_then(|v| v.as_u64());
        let text = |k: &str| n.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
        let num = |k: &str| field(k).map_or_else(|| "-".to_owned(), |v| v.to_string());
        let lag = match (leader_last, field("applied")) {
            (Some(l), Some(a)) => l.saturating_sub(a).to_string(),
            _ => "-".to_owned(),
        };
        println!(
            "{:>4}  {:<21}  {:<10}  {:>6}  {:>10}  {:>10}  {:>10}  {:>8}  {}",
            num("id"),
            text("client_addr"),
            text("role"),
            num("term"),
            num("last_log"),
            num("committed"),
            num("applied"),
            lag,
            text("health"),
        );
    }
    Ok(())
}

/// Sends a membership change to the endpoint that is the leader (the others answer 409 "not
/// the leader"); prints `changed` or `unchanged`.
async fn on_leader(endpoints: &[String], path: &str) -> anyhow::Result<()> {
    let mut tried = Vec::new();
    for endpoint in endpoints {
        match call_raw(Method::POST, endpoint, path, MEMBERSHIP_TIMEOUT).await {
            Ok((status, body))
                if status == hyper::StatusCode::CONFLICT
                    && String::from_utf8_lossy(&body).contains("is not the leader") =>
            {
                tried.push(format!("{endpoint}: {}", String::from_utf8_lossy(&body)));
            }
            Ok((status, body)) => {
                let answer = into_json(endpoint, path, status, &body)?;
                match answer.get("outcome").and_then(|o| o.as_str()) {
                    Some(outcome) => println!("{outcome}"),
                    None => println!("{answer}"),
                }
                return Ok(());
            }
            Err(e) => tried.push(format!("{e:#}")),
        }
    }
    anyhow::bail!(
        "no endpoint is the leader (pass every node's admin address to --endpoints): {}",
        tried.join("; ")
    )
}

/// Membership changes wait for a learner to catch up.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);

async fn verify(endpoints: &[String]) -> anyhow::Result<()> {
    let mut applied = Vec::new();
    for endpoint in endpoints {
        let status = call(Method::GET, endpoint, "/status", TIMEOUT).await?;
        let v = status
            .get("applied_version")
            .and_then(|v| v.as_u64())
            .with_context(|| format!("{endpoint}/status has no applied_version"))?;
        applied.push(v);
    }
    let version = applied
        .iter()
        .copied()
        .min()
        .context("no endpoints given")?;
    let mut digests = Vec::new();
    for endpoint in endpoints {
        let path = format!("/state/digest?version={version}");
        let answer = call(Method::GET, endpoint, &path, TIMEOUT).await?;
        let digest = answer
            .get("digest")
            .and_then(|d| d.as_str())
            .unwrap_or("-")
            .to_owned();
        println!("{endpoint:<21}  version {version}  digest {digest}");
        digests.push(digest);
    }
    if digests.windows(2).all(|d| d[0] == d[1]) {
        println!("replicas match at version {version}");
        Ok(())
    } else {
        anyhow::bail!("replicas DIFFER at version {version}")
    }
}
