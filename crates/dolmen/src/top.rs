//! `dolmen cluster top`: the console's cluster and metrics pages in a terminal, for a server
//! without a browser. It reads what the console reads (`/cluster/status` of any node, and
//! `/console/series` of the leader, which knows every follower's lag) and redraws once a
//! second until Ctrl-C; `--once` prints one frame and exits.

use std::fmt::Write as _;
use std::time::Duration;

use dolmen_admin::{AdminClient, AdminError, ClusterStatus, Method, NodeStatus};
use serde_json::Value;

/// `top` flags.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub admin: crate::cluster::AdminArgs,
    /// Milliseconds between frames.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    pub interval_ms: u64,
    /// Print one frame and exit (for scripts).
    #[arg(long)]
    pub once: bool,
}

/// Events shown, newest first.
const EVENTS_SHOWN: usize = 8;

/// What one frame shows, as fetched.
struct Frame {
    via: String,
    status: NodeStatus,
    cluster: Option<ClusterStatus>,
    /// From the leader when its admin address is known, else from `via`.
    series: Option<Value>,
}

fn num(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn rate(sample: &Value, key: &str) -> String {
    sample[key]
        .as_f64()
        .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn ms(sample: &Value, key: &str) -> String {
    sample[key]
        .as_f64()
        .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// `HH:MM:SS` (UTC) of milliseconds since the epoch.
fn clock(unix_ms: i64) -> String {
    let s = unix_ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

impl Frame {
    fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.status;
        let leader = s
            .leader
            .map_or_else(|| "none".to_owned(), |l| l.to_string());
        let _ = writeln!(
            out,
            "Dolmen via {} (node {})   leader {leader}   term {}   applied {}   keys {}",
            self.via, s.node_id, s.term, s.applied_version, s.live_keys
        );
        let _ = writeln!(
            out,
            "\n{:>4}  {:<21}  {:<9}  {:>5}  {:>10}  {:>10}  {:>7}  health",
            "node", "client", "role", "term", "committed", "applied", "lag"
        );
        let rows: Vec<[String; 8]> = match &self.cluster {
            Some(c) => c
                .nodes
                .iter()
                .map(|n| {
                    let lag = c
                        .leader_last_log
                        .zip(n.applied)
                        .map(|(l, a)| l.saturating_sub(a));
                    let error = n.error.as_deref().map(|e| format!(" ({e})"));
                    [
                        n.id.to_string(),
                        n.client_addr.clone(),
                        n.role.as_str().to_owned(),
                        num(n.term),
                        num(n.committed),
                        num(n.applied),
                        num(lag),
                        format!("{}{}", n.health.as_str(), error.unwrap_or_default()),
                    ]
                })
                .collect(),
            None => s
                .members
                .iter()
                .map(|m| {
                    [
                        m.id.to_string(),
                        m.client_addr.clone(),
                        m.role.as_str().to_owned(),
                        s.term.to_string(),
                        "-".to_owned(),
                        s.applied_version.to_string(),
                        "-".to_owned(),
                        m.health.as_str().to_owned(),
                    ]
                })
                .collect(),
        };
        for [id, client, role, term, committed, applied, lag, health] in rows {
            let _ = writeln!(
                out,
                "{id:>4}  {client:<21}  {role:<9}  {term:>5}  {committed:>10}  {applied:>10}  \
                 {lag:>7}  {health}"
            );
        }
        let Some(series) = &self.series else {
            let _ = writeln!(
                out,
                "\n(no series: the node did not answer /console/series)"
            );
            return out;
        };
        let samples = series["samples"].as_array().cloned().unwrap_or_default();
        if let Some(last) = samples.last() {
            let errors: Vec<String> = last["errors_per_s"]
                .as_object()
                .map(|e| {
                    e.iter()
                        .map(|(code, r)| format!("{code} {:.1}", r.as_f64().unwrap_or(0.0)))
                        .collect()
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "\nlast second: reads {}/s  commits {}/s  conflicts {}/s  errors {}",
                rate(last, "reads_per_s"),
                rate(last, "commits_per_s"),
                rate(last, "conflicts_per_s"),
                if errors.is_empty() {
                    "none".to_owned()
                } else {
                    errors.join(", ")
                }
            );
            let _ = writeln!(
                out,
                "latency ms:  read p50 {} p99 {}   commit p50 {} p99 {}",
                ms(last, "read_p50_ms"),
                ms(last, "read_p99_ms"),
                ms(last, "commit_p50_ms"),
                ms(last, "commit_p99_ms"),
            );
            let followers: Vec<String> = last["followers"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .map(|f| {
                            format!(
                                "node {}: log lag {} apply lag {}",
                                f["id"],
                                num(f["log_lag"].as_u64()),
                                num(f["apply_lag"].as_u64())
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if !followers.is_empty() {
                let _ = writeln!(out, "followers:   {}", followers.join("   "));
            }
        }
        let snapshots = &series["snapshots"];
        let _ = writeln!(
            out,
            "snapshots:   built {} sent {} installed {}",
            snapshots["built"], snapshots["sent"], snapshots["installed"]
        );
        let events = series["events"].as_array().cloned().unwrap_or_default();
        let _ = writeln!(out, "\nevents, newest first:");
        if events.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        for e in events.iter().rev().take(EVENTS_SHOWN) {
            let _ = writeln!(
                out,
                "  {}  {:<18}  {}",
                clock(e["t"].as_i64().unwrap_or(0)),
                e["kind"].as_str().unwrap_or("?"),
                e["detail"].as_str().unwrap_or("")
            );
        }
        out
    }
}

/// Fetches one frame through the first endpoint that answers; else every endpoint's failure.
async fn fetch(clients: &[AdminClient]) -> Result<Frame, Vec<AdminError>> {
    let mut failures = Vec::new();
    for client in clients {
        let status = match client.status().await {
            Ok(s) => s,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let cluster = match status.raft {
            Some(_) => client.cluster_status().await.ok(),
            None => None,
        };
        // The leader knows every follower's lag: read its series when its address is known.
        let leader_admin = cluster.as_ref().and_then(|c| {
            c.nodes
                .iter()
                .find(|n| Some(n.id) == c.leader && !n.admin_addr.is_empty())
                .map(|n| n.admin_addr.clone())
        });
        let series_from = match leader_admin {
            Some(addr) if addr != client.addr() => client.at(addr),
            _ => client.clone(),
        };
        let series = match series_from
            .json::<Value>(Method::GET, "/console/series", None)
            .await
        {
            Ok(s) => Some(s),
            Err(_) => client
                .json::<Value>(Method::GET, "/console/series", None)
                .await
                .ok(),
        };
        return Ok(Frame {
            via: client.addr().to_owned(),
            status,
            cluster,
            series,
        });
    }
    Err(failures)
}

/// Runs `top` until Ctrl-C (or one frame with `--once`).
///
/// # Errors
/// With `--once`: every endpoint's failure when none answered. Without, an unreachable
/// cluster is shown and retried.
pub async fn run(args: &TopArgs, clients: Vec<AdminClient>) -> Result<(), Vec<AdminError>> {
    let interval = Duration::from_millis(args.interval_ms);
    loop {
        match (fetch(&clients).await, args.once) {
            (Ok(f), true) => {
                print!("{}", f.render());
                return Ok(());
            }
            (Err(tried), true) => return Err(tried),
            // Clear the screen, cursor home, then the frame.
            (Ok(f), false) => print!("\x1b[2J\x1b[H{}", f.render()),
            (Err(tried), false) => {
                let why: Vec<String> = tried.iter().map(ToString::to_string).collect();
                print!(
                    "\x1b[2J\x1b[Hno admin endpoint answered: {}\n(retrying every {interval:?})\n",
                    why.join("; ")
                );
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_shows_members_rates_lag_and_events() {
        let status: NodeStatus = serde_json::from_value(serde_json::json!({
            "node_id": 0, "leader": 0, "term": 2, "applied_version": 10, "horizon": 1,
            "live_keys": 5, "size_bytes": 0, "block_cache_bytes": 0, "memtable_bytes": 0,
            "uptime_seconds": 3, "members": [], "raft": null
        }))
        .unwrap();
        let cluster: ClusterStatus = serde_json::from_value(serde_json::json!({
            "leader": 0, "leader_last_log": 10,
            "nodes": [
                {"id": 0, "client_addr": "127.0.0.1:9090", "role": "leader", "term": 2,
                 "last_log": 10, "committed": 10, "applied": 10, "health": "healthy", "error": null},
                {"id": 1, "client_addr": "127.0.0.1:9091", "role": "unknown", "term": null,
                 "last_log": null, "committed": null, "applied": null, "health": "unreachable",
                 "error": "connection refused"}
            ]
        }))
        .unwrap();
        let series = serde_json::json!({
            "interval_ms": 1000,
            "samples": [{"t": 0, "reads_per_s": 12.0, "commits_per_s": 3.0, "conflicts_per_s": 0.0,
                "errors_per_s": {"CONFLICT": 1.0}, "read_p50_ms": 0.25, "read_p99_ms": null,
                "commit_p50_ms": 2.0, "commit_p99_ms": 9.5, "applied": 10, "term": 2, "leader": 0,
                "followers": [{"id": 1, "log_lag": 4, "apply_lag": null}]}],
            "events": [{"t": 3_723_000, "kind": "leader_change", "detail": "leader none -> 0 (term 2)"}],
            "snapshots": {"built": 1, "sent": 0, "installed": 0}
        });
        let text = Frame {
            via: "127.0.0.1:9190".into(),
            status,
            cluster: Some(cluster),
            series: Some(series),
        }
        .render();
        for expected in [
            "leader 0   term 2",
            "127.0.0.1:9091",
            "unreachable (connection refused)",
            "reads 12.0/s  commits 3.0/s",
            "errors CONFLICT 1.0",
            "read p50 0.25 p99 -",
            "node 1: log lag 4 apply lag -",
            "built 1 sent 0 installed 0",
            "01:02:03  leader_change",
        ] {
            assert!(text.contains(expected), "{expected:?} in:\n{text}");
        }
    }
}
