//! The Grafana dashboard (`deploy/grafana/dolmen.json`): it is an importable Grafana 10/11
//! JSON model (a Prometheus data source input that every panel, query and the `instance`
//! variable refer to, unique panel ids, a place on the grid for every panel), and every metric
//! its queries name is one a running node really exports: a 3-node cluster serves writes,
//! reads, a range and a failing request, and the leader's `/metrics` must show each name.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test grafana_dashboard`.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use dolmen_tests::admin::admin;
use dolmen_tests::client::{op_set, range_all_absent};
use dolmen_tests::kvstore::GetRangeRequest;
use dolmen_tests::replicated::{unique_prefix, wait_until, LEADER_TIMEOUT};
use dolmen_tests::{connect_buffered, KvExt, ReplicatedCluster};
use serde_json::Value;

/// The data source reference every panel and query carries; Grafana fills in the uid of the
/// data source picked at import for `${DS_PROMETHEUS}`.
const DATASOURCE_UID: &str = "${DS_PROMETHEUS}";

/// How long the leader may take to show every series the dashboard reads (the MVCC horizon's
/// age needs two samples of the console's one-second sampler).
const SERIES_TIMEOUT: Duration = Duration::from_secs(20);

/// The suffixes Prometheus gives a histogram's series.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

fn dashboard_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dolmen.json")
}

fn dashboard() -> Value {
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("a panels array") {
        out.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

fn is_prometheus(datasource: &Value) -> bool {
    datasource["type"] == "prometheus" && datasource["uid"] == DATASOURCE_UID
}

/// Every PromQL expression: each panel query's `expr` and the variables' queries.
fn expressions(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(expr.to_owned());
            }
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match &variable["query"] {
            Value::String(q) => out.push(q.clone()),
            q => out.extend(q["query"].as_str().map(str::to_owned)),
        }
    }
    out
}

/// The metric names in `expr`: identifiers matching `dolmen_[a-z0-9_]+` (not part of a longer
/// identifier).
fn metric_names(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = expr[from..].find("dolmen_").map(|i| from + i) {
        let end = at
            + expr[at..]
                .bytes()
                .take_while(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                .count();
        if (at == 0 || !ident(bytes[at - 1])) && end > at + "dolmen_".len() {
            out.push(expr[at..end].to_owned());
        }
        from = end.max(at + 1);
    }
    out
}

/// The sample names of a Prometheus text exposition (`name{labels} value` or `name value`).
fn sample_names(text: &str) -> HashSet<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split([' ', '{']).next())
        .collect()
}

/// Whether `name` is in the exposition: as a sample, or as one of the series of a histogram
/// the exposition declares and has samples of.
fn exported(text: &str, samples: &HashSet<&str>, name: &str) -> bool {
    if samples.contains(name) {
        return true;
    }
    HISTOGRAM_SUFFIXES.iter().any(|suffix| {
        name.strip_suffix(suffix).is_some_and(|base| {
            text.lines()
                .any(|l| l == format!("# TYPE {base} histogram"))
                && samples.contains(format!("{base}_count").as_str())
        })
    })
}

#[test]
fn the_dashboard_is_an_importable_grafana_model() {
    let d = dashboard();
    assert_eq!(d["title"], "Dolmen");
    assert!(
        d["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 40),
        "a uid of at most 40 characters: {}",
        d["uid"]
    );
    assert!(
        d["schemaVersion"]
            .as_u64()
            .is_some_and(|v| (36..=41).contains(&v)),
        "schemaVersion of Grafana 10/11: {}",
        d["schemaVersion"]
    );
    assert_eq!(d["time"]["from"], "now-15m");
    assert_eq!(d["time"]["to"], "now");
    assert_eq!(d["refresh"], "10s");

    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "a Prometheus data source input DS_PROMETHEUS: {inputs:?}"
    );
    let requires = d["__requires"].as_array().expect("__requires");
    for (kind, id) in [
        ("grafana", "grafana"),
        ("datasource", "prometheus"),
        ("panel", "timeseries"),
        ("panel", "stat"),
    ] {
        assert!(
            requires.iter().any(|r| r["type"] == kind && r["id"] == id),
            "__requires names {kind} {id}: {requires:?}"
        );
    }

    let all = panels(&d);
    let mut ids = HashSet::new();
    let mut rows = Vec::new();
    for panel in &all {
        let title = panel["title"].as_str().unwrap_or("?");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title:?} has no numeric id"));
        assert!(ids.insert(id), "panel id {id} ({title:?}) is not unique");
        let grid = &panel["gridPos"];
        for field in ["h", "w", "x", "y"] {
            assert!(
                grid[field].is_u64(),
                "panel {title:?}: gridPos.{field} missing in {grid}"
            );
        }
        assert!(
            grid["x"].as_u64().unwrap_or(0) + grid["w"].as_u64().unwrap_or(0) <= 24,
            "panel {title:?} overflows the 24-column grid: {grid}"
        );
        if panel["type"] == "row" {
            rows.push(title.to_owned());
            continue;
        }
        assert!(
            ["timeseries", "stat"].contains(&panel["type"].as_str().unwrap_or("")),
            "panel {title:?} has a type listed in __requires: {}",
            panel["type"]
        );
        assert!(
            is_prometheus(&panel["datasource"]),
            "panel {title:?}: datasource {}",
            panel["datasource"]
        );
        assert!(
            panel["fieldConfig"]["defaults"]["unit"].is_string(),
            "panel {title:?} sets a unit"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title:?} has a query");
        for target in targets {
            assert!(
                is_prometheus(&target["datasource"]),
                "panel {title:?}: query datasource {}",
                target["datasource"]
            );
            assert!(
                target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "panel {title:?}: a query without expr: {target}"
            );
        }
    }
    for row in [
        "Cluster",
        "Throughput",
        "Latency",
        "Errors",
        "Replication",
        "Storage & MVCC",
        "Connections",
    ] {
        assert!(rows.iter().any(|r| r == row), "a row {row:?} in {rows:?}");
    }

    let variables = d["templating"]["list"].as_array().expect("templating.list");
    let instance = variables
        .iter()
        .find(|v| v["name"] == "instance")
        .expect("an `instance` variable");
    assert_eq!(instance["type"], "query");
    assert!(is_prometheus(&instance["datasource"]), "{instance}");
    assert_eq!(instance["multi"], true);
    assert_eq!(instance["includeAll"], true);
    let query = match &instance["query"] {
        Value::String(q) => q.as_str(),
        q => q["query"].as_str().unwrap_or(""),
    };
    assert_eq!(query, "label_values(dolmen_term, instance)");
    println!(
        "{} panels in {} rows, {} queries",
        all.len() - rows.len(),
        rows.len(),
        expressions(&d).len()
    );
}

#[test]
fn every_metric_the_dashboard_queries_is_exported_by_a_node() {
    let d = dashboard();
    let wanted: BTreeSet<String> = expressions(&d)
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    assert!(
        wanted.len() >= 30,
        "the dashboard reads most of /metrics: {wanted:?}"
    );

    let c = ReplicatedCluster::builder().start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let prefix = unique_prefix("grafana");
    let key = |i: u32| [prefix.as_slice(), format!("k{i:02}").as_bytes()].concat();
    let mut kv = connect_buffered(c.thrift_endpoint(leader));
    for i in 0..20 {
        kv.must_set(&key(i), b"v");
    }
    let rv = kv.read_version();
    kv.must_commit(rv, vec![op_set(&key(20), b"w")], Vec::new());
    kv.must_delete(&key(0));
    let got = kv.get_value(&key(1));
    assert!(got.found && got.value == b"v", "get: {got:?}");
    let range = kv.range(GetRangeRequest {
        begin_key: Some(prefix.clone()),
        end_key: Some([prefix.as_slice(), b"\xff"].concat()),
        ..range_all_absent()
    });
    assert!(range.success, "getRange: {range:?}");
    assert_eq!(range.key_values.len(), 20, "getRange: {range:?}");
    let failed = kv.get_in(&key(1), Some("nope"));
    assert!(
        !failed.found && failed.error.is_some(),
        "get in an unknown column family fails: {failed:?}"
    );

    // Scrape whichever node leads (only the leader reports follower lag) until every name is
    // there; the sampler-derived horizon age appears after its second sample.
    let mut text = String::new();
    let mut scraped_from = leader;
    let mut missing: Vec<&String> = Vec::new();
    let complete = wait_until(SERIES_TIMEOUT, || {
        scraped_from = c.current_leader().unwrap_or(leader);
        text = match admin(c.admin_endpoint(scraped_from)).metrics() {
            Ok(t) => t,
            Err(e) => {
                println!("/metrics of node {scraped_from}: {e}");
                return false;
            }
        };
        let samples = sample_names(&text);
        missing = wanted
            .iter()
            .filter(|n| !exported(&text, &samples, n))
            .collect();
        missing.is_empty()
    });
    println!(
        "checked {} metric names against /metrics of node {scraped_from}:",
        wanted.len()
    );
    for name in &wanted {
        println!("  {name}");
    }
    assert!(
        complete && missing.is_empty(),
        "the dashboard queries metrics node {scraped_from} does not export: {missing:?}\n\
         /metrics:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("dolmen_request_errors_total{") && l.contains("method=\"get\"")),
        "the failed get is counted: {text}"
    );
}

#[test]
fn metric_names_are_read_out_of_promql() {
    assert_eq!(
        metric_names(
            r#"sum by (le, method) (rate(dolmen_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])) / dolmen_term"#
        ),
        ["dolmen_request_duration_seconds_bucket", "dolmen_term"]
    );
    assert_eq!(
        metric_names("label_values(dolmen_term, instance) + x_dolmen_y + dolmen_"),
        ["dolmen_term"]
    );
    let text = "# TYPE dolmen_request_duration_seconds histogram\n\
                dolmen_request_duration_seconds_count{method=\"get\"} 1\n\
                # TYPE dolmen_term gauge\ndolmen_term 3\n";
    let samples = sample_names(text);
    assert!(exported(text, &samples, "dolmen_term"));
    assert!(exported(
        text,
        &samples,
        "dolmen_request_duration_seconds_bucket"
    ));
    assert!(!exported(text, &samples, "dolmen_request_duration_seconds"));
    assert!(!exported(text, &samples, "dolmen_missing_total"));
}
