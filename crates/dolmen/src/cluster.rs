//! `dolmen cluster …`: operations on a running cluster through any node's admin API.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hyper::Method;

use crate::admin_client::{call_raw, into_json};

/// `dolmen cluster` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Initialize a new cluster from the node's configured members (once; idempotent).
    Init(AdminArgs),
    /// Print every member: role, term, last log, committed, applied, lag.
    Status(AdminArgs),
    /// Ask the node to build a snapshot now.
    Snapshot(AdminArgs),
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
