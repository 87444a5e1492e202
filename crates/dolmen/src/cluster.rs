//! `dolmen cluster …`: operations on a running cluster through any node's admin API, with
//! `dolmen_admin::AdminClient`. Membership changes go to whichever endpoint is the leader,
//! recognised by its refusal code (`not_leader`), never by the refusal's text. Exit codes are
//! [`EXIT_CODES`].

use std::process::ExitCode;
use std::time::Duration;

use dolmen_admin::{
    AddNode, AdminClient, AdminError, GroupStatus, GroupedDigest, InitOutcome, MembershipOutcome,
    NodeStatus, Role,
};

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
    /// Print every member: role, term, last log, committed, applied, lag; on a sharded cluster
    /// then every data group: range, leader, term, applied (min-max over members), lag.
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
    /// Hand the leadership of group 0 (or, with --group, of a data group) to another voter and
    /// wait until it leads.
    #[command(after_help = EXIT_CODES)]
    TransferLeader(TransferArgs),
    /// Compare every replica's state checksum at one applied version (on a sharded cluster,
    /// every data group's); exit 1 if they differ.
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
    /// The group whose leadership moves: 0 is the metadata group (the only group of an
    /// unsharded cluster), 1..=N a sharded cluster's data groups (`dolmen cluster status` lists
    /// them).
    #[arg(long, default_value_t = 0)]
    group: u64,
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
/// `status` asks every member for its groups; one that does not answer within this is left
/// out of the group table.
const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_secs(3);

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
    #[error("replicas DIFFER at version {version}{}", in_groups(.groups))]
    Differ {
        /// The version compared.
        version: u64,
        /// On a sharded cluster: the data groups whose digests differ (or that some replica
        /// did not report), in key order.
        groups: Vec<u64>,
    },
    /// No endpoint given.
    #[error("no endpoints given: pass --endpoints host:port[,host:port...]")]
    NoEndpoints,
}

/// ` in groups 2, 3` (nothing for no groups).
fn in_groups(groups: &[u64]) -> String {
    if groups.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = groups.iter().map(ToString::to_string).collect();
    let noun = if groups.len() == 1 { "group" } else { "groups" };
    format!(" in {noun} {}", ids.join(", "))
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
                let transfer = dolmen_admin::TransferLeader {
                    to: a.to,
                    group: a.group,
                };
                on_leader(&Nodes::new(&a.admin)?, |c| async move {
                    c.transfer_group_leader(transfer).await
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
    // The members the answering node reached; one it could not probe is not asked again.
    let admin_addrs: Vec<String> = answer
        .nodes
        .iter()
        .filter(|n| n.health != dolmen_admin::Health::Unreachable && !n.admin_addr.is_empty())
        .map(|n| n.admin_addr.clone())
        .collect();
    let statuses = member_statuses(nodes, &admin_addrs).await;
    let table = group_table(&statuses, answer.nodes.len());
    if !table.is_empty() {
        println!();
        print!("{table}");
    }
    Ok(())
}

/// `v`, or `-` when unknown.
fn num(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `GET /status` of every admin address at once; those that do not answer are left out.
async fn member_statuses(nodes: &Nodes, admin_addrs: &[String]) -> Vec<NodeStatus> {
    let mut asking = tokio::task::JoinSet::new();
    for (order, addr) in admin_addrs.iter().enumerate() {
        let client = nodes.client(addr, MEMBER_STATUS_TIMEOUT);
        asking.spawn(async move { (order, client.status().await) });
    }
    let mut answered = Vec::new();
    while let Some(done) = asking.join_next().await {
        if let Ok((order, Ok(status))) = done {
            answered.push((order, status));
        }
    }
    answered.sort_by_key(|(order, _)| *order);
    answered.into_iter().map(|(_, status)| status).collect()
}

/// One data group as the members that answered report it.
#[derive(Debug, PartialEq, Eq)]
struct GroupRow {
    /// The group's id.
    id: u64,
    /// The range for people, from the report in the highest term.
    range: String,
    /// The leader named in the highest term.
    leader: Option<u64>,
    /// The highest term reported.
    term: u64,
    /// The lowest and highest applied index over the reports.
    applied: (u64, u64),
    /// The leader's last log index − the lowest applied index, when the leader answered.
    lag: Option<u64>,
    /// How many members reported the group.
    reports: usize,
}

/// The data groups the members report, in key order (start key, then id).
fn group_rows(statuses: &[NodeStatus]) -> Vec<GroupRow> {
    let mut by_group: std::collections::BTreeMap<(String, u64), Vec<(u64, &GroupStatus)>> =
        std::collections::BTreeMap::new();
    for status in statuses {
        for group in &status.groups {
            // Lower-case hex keeps the keys' byte order.
            by_group
                .entry((group.start.clone(), group.id))
                .or_default()
                .push((status.node_id, group));
        }
    }
    by_group
        .into_iter()
        .map(|((_, id), reports)| {
            let term = reports.iter().map(|(_, g)| g.term).max().unwrap_or(0);
            let newest = reports.iter().filter(|(_, g)| g.term == term);
            let claimed = newest
                .clone()
                .find(|(_, g)| g.role == Role::Leader)
                .map(|(node, g)| (*node, g.last_log));
            let leader = claimed
                .map(|(node, _)| node)
                .or_else(|| newest.clone().find_map(|(_, g)| g.leader));
            let range = newest
                .clone()
                .next()
                .map(|(_, g)| g.range.clone())
                .unwrap_or_default();
            let low = reports.iter().map(|(_, g)| g.applied).min().unwrap_or(0);
            let high = reports.iter().map(|(_, g)| g.applied).max().unwrap_or(0);
            GroupRow {
                id,
                range,
                leader,
                term,
                applied: (low, high),
                lag: claimed.map(|(_, last_log)| last_log.saturating_sub(low)),
                reports: reports.len(),
            }
        })
        .collect()
}

/// The per-group table of `dolmen cluster status`, one line per data group after a header;
/// empty when no member reports groups (an unsharded cluster). `asked` is the number of members
/// in the cluster view.
fn group_table(statuses: &[NodeStatus], asked: usize) -> String {
    let rows = group_rows(statuses);
    if rows.is_empty() {
        return String::new();
    }
    let width = rows
        .iter()
        .map(|r| r.range.chars().count())
        .max()
        .unwrap_or(0)
        .max("range".len());
    let mut out = format!(
        "{:>5}  {:<width$}  {:>6}  {:>6}  {:>13}  {:>8}  members\n",
        "group", "range", "leader", "term", "applied", "lag"
    );
    for r in &rows {
        let applied = if r.applied.0 == r.applied.1 {
            r.applied.0.to_string()
        } else {
            format!("{}-{}", r.applied.0, r.applied.1)
        };
        out.push_str(&format!(
            "{:>5}  {:<width$}  {:>6}  {:>6}  {:>13}  {:>8}  {}/{}\n",
            r.id,
            r.range,
            num(r.leader),
            r.term,
            applied,
            num(r.lag),
            r.reports,
            asked,
        ));
    }
    out
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
    let mut answers = Vec::new();
    for endpoint in &nodes.endpoints {
        let answer = nodes
            .client(endpoint, TIMEOUT)
            .grouped_digest(Some(version))
            .await?;
        println!(
            "{endpoint:<21}  version {version}  digest {}",
            answer.digest
        );
        answers.push((endpoint.clone(), answer));
    }
    let comparison = compare_digests(&answers);
    for line in &comparison.lines {
        println!("{line}");
    }
    if comparison.all_match {
        match comparison.groups.as_slice() {
            [] => println!("replicas match at version {version}"),
            groups => println!(
                "replicas match at version {version} in every group ({})",
                groups
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        Ok(())
    } else {
        Err(ClusterError::Differ {
            version,
            groups: comparison.differing,
        })
    }
}

/// What `verify` found comparing the endpoints' digests.
#[derive(Debug, PartialEq, Eq)]
struct Comparison {
    /// One line per data group (none on an unsharded cluster).
    lines: Vec<String>,
    /// The data groups compared, in key order.
    groups: Vec<u64>,
    /// The data groups whose digests differ or that some endpoint did not report.
    differing: Vec<u64>,
    /// Whether every endpoint's digest, and every group's, is the same.
    all_match: bool,
}

/// Compares `(endpoint, answer)` pairs: the whole digests, and on a sharded cluster each data
/// group's across the endpoints (a group some endpoint did not report differs).
fn compare_digests(answers: &[(String, GroupedDigest)]) -> Comparison {
    let mut groups: Vec<(u64, &str)> = Vec::new();
    for (_, answer) in answers {
        for g in &answer.groups {
            if !groups.iter().any(|(id, _)| *id == g.id) {
                groups.push((g.id, &g.range));
            }
        }
    }
    let width = groups
        .iter()
        .map(|(_, range)| range.chars().count())
        .max()
        .unwrap_or(0);
    let mut lines = Vec::new();
    let mut differing = Vec::new();
    for (id, range) in &groups {
        let digests: Vec<(&str, Option<&str>)> = answers
            .iter()
            .map(|(endpoint, answer)| {
                let digest = answer.groups.iter().find(|g| g.id == *id);
                (endpoint.as_str(), digest.map(|g| g.digest.as_str()))
            })
            .collect();
        let first = digests.first().and_then(|(_, d)| *d);
        if first.is_some() && digests.iter().all(|(_, d)| *d == first) {
            let digest = first.unwrap_or_default();
            lines.push(format!(
                "group {id:>4}  {range:<width$}  match   digest {digest}"
            ));
        } else {
            differing.push(*id);
            let each: Vec<String> = digests
                .iter()
                .map(|(endpoint, d)| format!("{endpoint}={}", d.unwrap_or("-")))
                .collect();
            lines.push(format!(
                "group {id:>4}  {range:<width$}  DIFFER  {}",
                each.join("  ")
            ));
        }
    }
    let whole_match = answers.windows(2).all(|w| w[0].1.digest == w[1].1.digest);
    Comparison {
        lines,
        groups: groups.iter().map(|(id, _)| *id).collect(),
        all_match: whole_match && differing.is_empty(),
        differing,
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
        let differ = ClusterError::Differ {
            version: 3,
            groups: vec![2],
        };
        assert_eq!(differ.exit_code(), 1);
        assert_eq!(
            differ.to_string(),
            "replicas DIFFER at version 3 in group 2"
        );
        let unsharded = ClusterError::Differ {
            version: 3,
            groups: Vec::new(),
        };
        assert_eq!(unsharded.to_string(), "replicas DIFFER at version 3");
    }

    /// A `/status` of node `node` reporting `groups`: (id, start hex, range, role, leader,
    /// term, last_log, applied).
    #[allow(clippy::type_complexity, reason = "a test table, read once")]
    fn node_status(
        node: u64,
        groups: &[(u64, &str, &str, Role, Option<u64>, u64, u64, u64)],
    ) -> NodeStatus {
        let mut status: NodeStatus = serde_json::from_str(
            r#"{"node_id":0,"leader":0,"term":1,"applied_version":7,"horizon":2,
                "live_keys":3,"size_bytes":10,"block_cache_bytes":11,"memtable_bytes":12,
                "uptime_seconds":5,"members":[],"raft":null}"#,
        )
        .unwrap();
        status.node_id = node;
        status.groups = groups
            .iter()
            .map(
                |&(id, start, range, role, leader, term, last_log, applied)| GroupStatus {
                    id,
                    start: start.to_owned(),
                    end: None,
                    range: range.to_owned(),
                    role,
                    leader,
                    term,
                    last_log,
                    committed: applied,
                    applied,
                    applied_version: 1000 + applied,
                    running: None,
                },
            )
            .collect();
        status
    }

    #[test]
    fn the_group_table_shows_each_group_once_in_key_order_with_applied_range_and_lag() {
        use Role::{Follower, Leader};
        let a = "['', 'g')";
        let b = "['g', +inf)";
        let statuses = vec![
            // Listed out of key order on purpose: the table sorts by start key.
            node_status(
                0,
                &[
                    (2, "67", b, Follower, Some(1), 3, 20, 18),
                    (1, "", a, Leader, Some(0), 2, 50, 50),
                ],
            ),
            node_status(
                1,
                &[
                    (1, "", a, Follower, Some(0), 2, 50, 47),
                    (2, "67", b, Leader, Some(1), 3, 21, 21),
                ],
            ),
        ];
        let table = group_table(&statuses, 3);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert_eq!(
            lines[0],
            "group  range        leader    term        applied       lag  members"
        );
        assert_eq!(
            lines[1],
            "    1  ['', 'g')         0       2          47-50         3  2/3"
        );
        assert_eq!(
            lines[2],
            "    2  ['g', +inf)       1       3          18-21         3  2/3"
        );
    }

    #[test]
    fn a_group_whose_leader_did_not_answer_has_no_lag_and_an_unsharded_cluster_no_table() {
        let statuses = vec![node_status(
            2,
            &[(1, "", "['', +inf)", Role::Follower, Some(0), 4, 9, 9)],
        )];
        let rows = group_rows(&statuses);
        assert_eq!(
            rows,
            vec![GroupRow {
                id: 1,
                range: "['', +inf)".into(),
                leader: Some(0),
                term: 4,
                applied: (9, 9),
                lag: None,
                reports: 1,
            }]
        );
        assert!(group_table(&[node_status(0, &[])], 3).is_empty());
    }

    fn grouped(digest: &str, groups: &[(u64, &str, &str)]) -> GroupedDigest {
        GroupedDigest {
            version: 9,
            digest: digest.to_owned(),
            groups: groups
                .iter()
                .map(|&(id, range, digest)| dolmen_admin::GroupDigest {
                    id,
                    range: range.to_owned(),
                    digest: digest.to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn verify_names_every_group_compared_and_those_that_differ() {
        let same = [(1, "['', 'g')", "aa"), (2, "['g', +inf)", "bb")];
        let answers = vec![
            ("n0:1".to_owned(), grouped("c0", &same)),
            ("n1:1".to_owned(), grouped("c0", &same)),
        ];
        let ok = compare_digests(&answers);
        assert!(ok.all_match);
        assert_eq!(ok.groups, vec![1, 2]);
        assert_eq!(
            ok.lines,
            vec![
                "group    1  ['', 'g')    match   digest aa",
                "group    2  ['g', +inf)  match   digest bb",
            ]
        );

        let answers = vec![
            ("n0:1".to_owned(), grouped("c0", &same)),
            (
                "n1:1".to_owned(),
                grouped("c1", &[(1, "['', 'g')", "aa"), (2, "['g', +inf)", "bx")]),
            ),
            ("n2:1".to_owned(), grouped("c2", &same[..1])),
        ];
        let bad = compare_digests(&answers);
        assert!(!bad.all_match);
        assert_eq!(bad.differing, vec![2]);
        assert_eq!(
            bad.lines[1],
            "group    2  ['g', +inf)  DIFFER  n0:1=bb  n1:1=bx  n2:1=-"
        );
    }

    #[test]
    fn verify_of_an_unsharded_cluster_compares_the_whole_digests_only() {
        let answers = vec![
            ("n0:1".to_owned(), grouped("c0", &[])),
            ("n1:1".to_owned(), grouped("c0", &[])),
        ];
        let ok = compare_digests(&answers);
        assert!(ok.all_match && ok.lines.is_empty() && ok.groups.is_empty());
        let answers = vec![
            ("n0:1".to_owned(), grouped("c0", &[])),
            ("n1:1".to_owned(), grouped("c1", &[])),
        ];
        let bad = compare_digests(&answers);
        assert!(!bad.all_match);
        assert!(bad.differing.is_empty());
    }
}
