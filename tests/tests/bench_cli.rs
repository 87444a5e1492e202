//! `dolmen bench` through the real binary against a real standalone node: the JSON lines carry
//! the CPU figures (`--server-pids`), a bad pid is refused naming the flag, and `--probe` reports
//! the thread hand-off next to the floor; `--probe oracle` against a real 3-node cluster finds
//! the oracle, gets unique versions through one batched `Timestamps` stream, and the leader
//! counts them in `dolmen_oracle_versions_total`.

use std::process::{Command, Output};

use dolmen_tests::binary::dolmen_bin;
use dolmen_tests::replicated::LEADER_TIMEOUT;
use dolmen_tests::{ReplicatedCluster, Standalone};
use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(dolmen_bin())
        .arg("bench")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run dolmen bench: {e}"))
}

/// The JSON lines of a bench's stdout.
fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

fn number(run: &Value, field: &str) -> f64 {
    run[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing or not a number in {run}"))
}

#[test]
fn runs_report_cpu_per_operation_of_the_bench_and_the_server() {
    let node = Standalone::start();
    let addr = node.thrift_endpoint().to_string();
    let pid = node.pid().to_string();
    let out = bench(&[
        "--addr",
        &addr,
        "--workload",
        "write,read",
        "--clients",
        "2",
        "--duration",
        "1",
        "--keys",
        "100",
        "--server-pids",
        &pid,
    ]);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = json_lines(&out);
    assert_eq!(runs.len(), 2, "one JSON line per workload: {runs:?}");
    for run in &runs {
        assert!(number(run, "ops") > 0.0, "{run}");
        let busy = number(run, "cpu_busy");
        assert!(busy > 0.0 && busy <= 1.0, "cpu_busy {busy} in {run}");
        assert!(number(run, "bench_cpu_us_per_op") > 0.0, "{run}");
        // A second of writes or reads keeps the server busy for many clock ticks.
        assert!(number(run, "server_cpu_us_per_op") > 0.0, "{run}");
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("busy") && table.contains("µs/op"), "{table}");
}

#[test]
fn a_server_pid_that_is_not_running_is_refused_naming_the_flag() {
    // Checked before connecting, so no server is needed.
    let out = bench(&["--addr", "127.0.0.1:9", "--server-pids", "4294967295"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--server-pids 4294967295"), "{stderr}");
    let out = bench(&["--server-pids", "twelve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server-pids"));
}

#[test]
fn probe_reports_the_thread_hand_off_next_to_the_floor() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let data = dir.path().to_string_lossy().into_owned();
    let out = bench(&["--probe", "--data-dir", &data]);
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let probe = lines.first().unwrap_or_else(|| panic!("no JSON line"));
    assert!(number(probe, "handoff_p50_ms") > 0.0, "{probe}");
    assert_eq!(number(probe, "handoff_samples"), 10_000.0);
    let floor = number(probe, "fsync_p50_ms") + 2.0 * number(probe, "rtt_p50_ms");
    assert!((number(probe, "floor_ms") - floor).abs() < 0.002, "{probe}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("thread handoff"));
}

#[test]
fn probe_oracle_finds_the_leader_and_gets_unique_versions_that_it_counts() {
    let cluster = ReplicatedCluster::builder().start();
    let leader = cluster.wait_for_leader(LEADER_TIMEOUT);
    let peers: Vec<String> = (0..cluster.node_count())
        .map(|i| cluster.peer_endpoint(i).to_string())
        .collect();
    let out = bench(&[
        "--probe",
        "oracle",
        "--peer-endpoints",
        &peers.join(","),
        "--callers",
        "16",
        "--duration",
        "1",
    ]);
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let run = lines.first().unwrap_or_else(|| panic!("no JSON line"));
    assert_eq!(run["probe"], "oracle", "{run}");
    assert_eq!(run["leader_peer_addr"], peers[leader].as_str(), "{run}");
    assert_eq!(number(run, "errors"), 0.0, "{run}");
    assert_eq!(number(run, "streams"), 1.0, "{run}");
    let versions = number(run, "versions");
    assert!(versions > 0.0, "{run}");
    assert!(number(run, "callers_per_batch") >= 1.0, "{run}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("every version unique"));

    // The leader handed them out (plus the read version that found it), and counted them.
    let text = dolmen_tests::admin::admin(cluster.admin_endpoint(leader))
        .metrics()
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    let counted: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("dolmen_oracle_versions_total ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("expected dolmen_oracle_versions_total in /metrics:\n{text}"));
    assert!(
        counted > versions,
        "counted {counted}, handed to callers {versions}"
    );
}
