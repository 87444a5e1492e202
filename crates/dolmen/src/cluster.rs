//! `dolmen cluster …`: operations on a running cluster through any node's admin API, with
//! `dolmen_admin::AdminClient`. Membership changes go to whichever endpoint is the leader,
//! recognised by its refusal code (`not_leader`), never by the refusal's text. Exit codes are
//! [`EXIT_CODES`].

use std::process::ExitCode;
use std::time::Duration;

use dolmen_admin::{AddNode, AdminClient, AdminError, InitOutcome, MembershipOutcome};

/// The exit codes of every `dolmen cluster` command (stable: scripts read them).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  done (also when nothing needed doing: `unchanged`, `already initialized`)
  1  refused or failed (the node said no, no endpoint is the leader, replicas differ)
  2  bad usage (unknown flag, missing value)
  3  unreachable (no endpoint answered)";

/// `dolmen cluster` subcommands.
#[derive(Debug, clap::Subcommand)]
#[command(after_help = EXIT_CODES)]
pub enum ClusterCommand {
    /// Initialize a new cluster from the node's configured members (once; idempotent).
    #[command(after_help = EXIT_CODES)]
    Init(AdminArgs),
    /// Print every member: role, term, last log, committed, applied, lag.
    #[command(after_help = EXIT_CODES)]
    Status(AdminArgs),
    /// Ask the node to build a snapshot now.
    #[command(after_help = EXIT_CODES)]
    Snapshot(AdminArgs),
    /// Add a node (as a learner, promoted to voter once it has caught up). Idempotent.
    #[command(after_help = EXIT_CODES)]
    AddNode(AddNodeArgs),
    /// Remove a node from the membership (refused if it would leave no majority). Idempotent.
    #[command(after_help = EXIT_CODES)]
    RemoveNode(NodeArgs),
    /// Hand leadership to another voter and wait until it leads.
    #[command(after_help = EXIT_CODES)]
    TransferLeader(TransferArgs),
    /// Compare every replica's state checksum at one applied version; exit 1 if they differ.
    #[command(after_help = EXIT_CODES)]
    Verify(AdminArgs),
    /// Watch the cluster in the terminal: members, rates, latency, lag and events, redrawn
    /// every second (the web console's data, for a server without a browser).
    #[command(after_help = EXIT_CODES)]
    Top(crate::top::TopArgs),
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
    #[command(flatten)]
    pub token: crate::token::TokenArgs,
}

/// The nodes a command talks to, and how (credential, HTTPS).
struct Nodes {
    endpoints: Vec<String>,
    template: AdminClient,
}

impl Nodes {
    fn new(args: &AdminArgs) -> Result<Self, ClusterError> {
        Ok(Self {
            endpoints: args.endpoints.clone(),
            template: args.token.client("").map_err(ClusterError::Token)?,
        })
    }

    fn client(&self, endpoint: &str, timeout: Duration) -> AdminClient {
        self.template.at(endpoint).with_timeout(timeout)
    }
}

/// The timeout of a read or a quick operation.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Membership changes wait for a learner to catch up.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a cluster command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A node refused, answered something unreadable, or one endpoint of several that must
    /// all answer (`verify`) did not.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// No endpoint answered at all.
    #[error("no admin endpoint answered: {}", join(.tried))]
    Unreachable {
        /// Each endpoint's failure.
        tried: Vec<AdminError>,
    },
    /// Every endpoint that answered is a follower (and none was unreachable).
    #[error(
        "no endpoint is the leader (pass every node's admin address to --endpoints): {}",
        join(.tried)
    )]
    NoLeader {
        /// Each endpoint's refusal.
        tried: Vec<AdminError>,
    },
    /// The leader may be among the endpoints that did not answer.
    #[error(
        "no endpoint that answered is the leader, and some did not answer: {}",
        join(.tried)
    )]
    LeaderUnreachable {
        /// Each endpoint's failure or refusal.
        tried: Vec<AdminError>,
    },
    /// The credential could not be read.
    #[error(transparent)]
    Token(crate::token::TokenError),
    /// `verify`: the replicas' checksums differ.
    #[error("replicas DIFFER at version {version}")]
    Differ {
        /// The version compared.
        version: u64,
    },
    /// No endpoint given.
    #[error("no endpoints given: pass --endpoints host:port[,host:port...]")]
    NoEndpoints,
}

fn join(errors: &[AdminError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ClusterError {
    /// The process exit code ([`EXIT_CODES`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClusterError::Admin(e) if e.is_unreachable() => 3,
            ClusterError::Unreachable { .. } | ClusterError::LeaderUnreachable { .. } => 3,
            ClusterError::NoEndpoints | ClusterError::Token(_) => 2,
            ClusterError::Admin(_)
            | ClusterError::NoLeader { .. }
            | ClusterError::Differ { .. } => 1,
        }
    }
}

/// Runs a cluster command; the exit code is one of [`EXIT_CODES`].
pub fn run(command: ClusterCommand) -> ExitCode {
    let Some(runtime) = crate::small_runtime() else {
        return ExitCode::from(1);
    };
    let result = runtime.block_on(async {
        match command {
            ClusterCommand::Init(a) => init(&Nodes::new(&a)?).await,
            ClusterCommand::Status(a) => status(&Nodes::new(&a)?).await,
            ClusterCommand::Snapshot(a) => snapshot(&Nodes::new(&a)?).await,
            ClusterCommand::AddNode(a) => {
                let node = AddNode {
                    id: a.id,
                    client_addr: a.client_addr,
                    peer_addr: a.peer_addr,
                    admin_addr: a.admin_addr,
                };
                let node = &node;
                on_leader(
                    &Nodes::new(&a.admin)?,
                    |c| async move { c.add_node(node).await },
                )
                .await
            }
            ClusterCommand::RemoveNode(a) => {
                on_leader(&Nodes::new(&a.admin)?, |c| async move {
                    c.remove_node(a.id).await
                })
                .await
            }
            ClusterCommand::TransferLeader(a) => {
                on_leader(&Nodes::new(&a.admin)?, |c| async move {
                    c.transfer_leader(a.to).await
                })
                .await
            }
            ClusterCommand::Verify(a) => verify(&Nodes::new(&a)?).await,
            ClusterCommand::Top(a) => {
                let nodes = Nodes::new(&a.admin)?;
                let clients = nodes
                    .endpoints
                    .iter()
                    .map(|e| nodes.client(e, TIMEOUT))
                    .collect();
                crate::top::run(&a, clients)
                    .await
                    .map_err(|tried| ClusterError::Unreachable { tried })
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dolmen: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Calls `call` on the first endpoint that answers; a refusal (an HTTP error) is final.
async fn first_answer<T, F, Fut>(nodes: &Nodes, call: F) -> Result<T, ClusterError>
where
    F: Fn(AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<T, AdminError>>,
{
    if nodes.endpoints.is_empty() {
        return Err(ClusterError::NoEndpoints);
    }
    let mut tried = Vec::new();
    for endpoint in &nodes.endpoints {
        match call(nodes.client(endpoint, TIMEOUT)).await {
            Err(e) if e.is_unreachable() => tried.push(e),
            answer => return Ok(answer?),
        }
    }
    Err(ClusterError::Unreachable { tried })
}

async fn init(nodes: &Nodes) -> Result<(), ClusterError> {
    match first_answer(nodes, |c| async move { c.init().await }).await? {
        InitOutcome::Initialized => println!("initialized"),
        InitOutcome::AlreadyInitialized => println!("already initialized"),
    }
    Ok(())
}

async fn snapshot(nodes: &Nodes) -> Result<(), ClusterError> {
    first_answer(nodes, |c| async move { c.snapshot().await }).await?;
    println!("snapshot triggered");
    Ok(())
}

async fn status(nodes: &Nodes) -> Result<(), ClusterError> {
    let answer = first_answer(nodes, |c| async move { c.cluster_status().await }).await?;
    println!(
        "{:>4}  {:<21}  {:<10}  {:>6}  {:>10}  {:>10}  {:>10}  {:>8}  health",
        "node", "client", "role", "term", "last_log", "committed", "applied", "lag"
    );
    let num = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for n in &answer.nodes {
        let lag = answer
            .leader_last_log
            .zip(n.applied)
            .map(|(l, a)| l.saturating_sub(a));
        println!(
            "{:>4}  {:<21}  {:<10}  {:>6}  {:>10}  {:>10}  {:>10}  {:>8}  {}",
            n.id,
            n.client_addr,
            n.role.as_str(),
            num(n.term),
            num(n.last_log),
            num(n.committed),
            num(n.applied),
            num(lag),
            n.health.as_str(),
        );
    }
    Ok(())
}

/// Sends a membership change to the endpoint that is the leader (the others refuse with code
/// `not_leader`); prints `changed` or `unchanged`.
async fn on_leader<F, Fut>(nodes: &Nodes, call: F) -> Result<(), ClusterError>
where
    F: Fn(AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<MembershipOutcome, AdminError>>,
{
    if nodes.endpoints.is_empty() {
        return Err(ClusterError::NoEndpoints);
    }
    let mut tried = Vec::new();
    for endpoint in &nodes.endpoints {
        match call(nodes.client(endpoint, MEMBERSHIP_TIMEOUT)).await {
            Ok(outcome) => {
                println!("{}", outcome.as_str());
                return Ok(());
            }
            Err(e) if e.is_not_leader() || e.is_unreachable() => tried.push(e),
            Err(e) => return Err(e.into()),
        }
    }
    if tried.iter().all(AdminError::is_unreachable) {
        Err(ClusterError::Unreachable { tried })
    } else if tried.iter().any(AdminError::is_unreachable) {
        Err(ClusterError::LeaderUnreachable { tried })
    } else {
        Err(ClusterError::NoLeader { tried })
    }
}

async fn verify(nodes: &Nodes) -> Result<(), ClusterError> {
    let mut applied = Vec::new();
    for endpoint in &nodes.endpoints {
        applied.push(
            nodes
                .client(endpoint, TIMEOUT)
                .status()
                .await?
                .applied_version,
        );
    }
    let version = applied
        .iter()
        .copied()
        .min()
        .ok_or(ClusterError::NoEndpoints)?;
    let mut digests = Vec::new();
    for endpoint in &nodes.endpoints {
        let digest = nodes
            .client(endpoint, TIMEOUT)
            .digest(Some(version))
            .await?
            .digest;
        println!("{endpoint:<21}  version {version}  digest {digest}");
        digests.push(digest);
    }
    if digests.windows(2).all(|d| d[0] == d[1]) {
        println!("replicas match at version {version}");
        Ok(())
    } else {
        Err(ClusterError::Differ { version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: Option<dolmen_admin::ErrorCode>) -> AdminError {
        AdminError::Refused {
            addr: "127.0.0.1:1".into(),
            path: "/cluster/remove-node?id=1".into(),
            status,
            body: dolmen_admin::ErrorBody {
                error: "no".into(),
                code,
                leader: None,
            },
        }
    }

    fn unreachable() -> AdminError {
        AdminError::Unreachable {
            addr: "127.0.0.1:1".into(),
            reason: "connection refused".into(),
        }
    }

    #[test]
    fn exit_codes_tell_refused_from_unreachable() {
        use dolmen_admin::ErrorCode::{Conflict, NotLeader};
        assert_eq!(
            ClusterError::from(refused(409, Some(Conflict))).exit_code(),
            1
        );
        assert_eq!(ClusterError::from(unreachable()).exit_code(), 3);
        let all_followers = ClusterError::NoLeader {
            tried: vec![refused(409, Some(NotLeader))],
        };
        assert_eq!(all_followers.exit_code(), 1);
        let none = ClusterError::Unreachable {
            tried: vec![unreachable()],
        };
        assert_eq!(none.exit_code(), 3);
        assert_eq!(ClusterError::Differ { version: 3 }.exit_code(), 1);
    }
}
