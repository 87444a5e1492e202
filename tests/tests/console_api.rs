//! The admin API behind the console (docs/console.md), through real processes: credentials
//! (issue 18: a call without the operator token gets 401 and changes nothing), the data
//! browser's reads and writes, the masked configuration, the series and its events, and
//! `/metrics` moving under load (issue 21: the latency histogram counts requests, a paused
//! follower's replication lag grows and drains).
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test console_api`.

use std::process::Command;
use std::time::Duration;

use dolmen_admin::blocking::AdminClient;
use dolmen_admin::{Method, RawAnswer};
use dolmen_tests::admin::admin;
use dolmen_tests::binary::dolmen_bin;
use dolmen_tests::replicated::{unique_prefix, wait_until, LEADER_TIMEOUT};
use dolmen_tests::{connect_buffered, KvExt, ReplicatedCluster, Standalone};
use serde_json::Value;

const TOKEN: &str = "console-test-operator-token";
const VIEW_TOKEN: &str = "console-test-view-token-01";

fn call(client: &AdminClient, method: Method, path: &str, body: Option<&Value>) -> RawAnswer {
    let body = body.map(|b| serde_json::to_vec(b).expect("a JSON body"));
    client
        .request(method.clone(), path, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn json(answer: &RawAnswer) -> Value {
    serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", answer.text()))
}

/// Asserts a refusal's status and code.
fn refused(answer: &RawAnswer, status: u16, code: &str, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.text());
    assert_eq!(json(answer)["code"], code, "{what}: {}", answer.text());
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn without_the_operator_token_nothing_changes_and_views_stay_open() {
    let c = ReplicatedCluster::builder()
        .set("server", "admin_token", TOKEN)
        .start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let other = (leader + 1) % 3;
    let anonymous = admin(c.admin_endpoint(leader));

    let transfer = format!("/cluster/transfer-leader?to={other}");
    refused(
        &call(&anonymous, Method::POST, &transfer, None),
        401,
        "unauthorized",
        "transfer without a token",
    );
    let add = "/cluster/add-node?id=9&client_addr=127.0.0.1:1&peer_addr=127.0.0.1:2";
    refused(
        &call(&anonymous, Method::POST, add, None),
        401,
        "unauthorized",
        "add-node without a token",
    );
    let wrong = admin(c.admin_endpoint(leader)).with_token(Some("wrong-token-0123456789".into()));
    refused(
        &call(&wrong, Method::POST, "/cluster/snapshot", None),
        401,
        "unauthorized",
        "snapshot with a wrong token",
    );
    refused(
        &call(&anonymous, Method::GET, "/backup", None),
        401,
        "unauthorized",
        "a backup reveals everything",
    );
    std::thread::sleep(c.election_timeout());
    assert_eq!(c.current_leader(), Some(leader), "the leader did not move");
    let raft = c.status(leader).raft;
    assert_eq!(
        raft.as_ref().map(|r| r.members.len()),
        Some(3),
        "no member was added"
    );
    assert_eq!(
        raft.map(|r| r.snapshots_built),
        Some(0),
        "no snapshot was taken"
    );

    // Views are open without a view token: the console loads, Prometheus scrapes.
    for path in [
        "/status",
        "/metrics",
        "/cluster/status",
        "/console/info",
        "/",
    ] {
        let answer = call(&anonymous, Method::GET, path, None);
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    }
    let config = call(&anonymous, Method::GET, "/config", None);
    assert_eq!(json(&config)["server"]["admin_token"], "***");
    assert!(
        !config.text().contains(TOKEN),
        "the token never leaves the node"
    );

    // The CLI: refused without the token, done with it (from the environment).
    let endpoints: Vec<String> = (0..3).map(|i| c.admin_endpoint(i).to_string()).collect();
    let cli = |token: Option<&str>| {
        let mut cmd = Command::new(dolmen_bin());
        cmd.args(["cluster", "transfer-leader", "--endpoints"])
            .arg(endpoints.join(","))
            .args(["--to", &other.to_string()])
            .env_remove("DOLMEN_ADMIN_TOKEN");
        if let Some(token) = token {
            cmd.env("DOLMEN_ADMIN_TOKEN", token);
        }
        cmd.output().expect("run dolmen cluster transfer-leader")
    };
    let out = cli(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("Bearer"),
        "{stderr}"
    );
    let out = cli(Some(TOKEN));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.wait_for_leader(LEADER_TIMEOUT), other);

    // Every node noted the change in its series.
    let observed = wait_until(Duration::from_secs(10), || {
        let series = json(&call(&anonymous, Method::GET, "/console/series", None));
        series["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "leader_change"))
    });
    assert!(observed, "a leader_change event on node {leader}");

    // The terminal view reads the same: every member, the new leader, its followers' lag.
    // The new leader samples its followers' lag once a second: read until it has.
    let top = || {
        let out = Command::new(dolmen_bin())
            .args(["cluster", "top", "--once", "--endpoints"])
            .arg(c.admin_endpoint(leader).to_string())
            .output()
            .expect("run dolmen cluster top");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{text}");
        text
    };
    let mut text = top();
    for _ in 0..20 {
        if text.contains("followers:") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        text = top();
    }
    println!("{text}");
    assert!(text.contains(&format!("leader {other}")), "{text}");
    for i in 0..3 {
        assert!(text.contains(&c.thrift_endpoint(i).to_string()), "{text}");
    }
    assert!(
        text.contains("followers:") && text.contains("log lag"),
        "{text}"
    );
    assert!(text.contains("leader_change"), "{text}");
}

#[test]
fn the_data_browser_reads_pages_and_writes_only_with_the_token() {
    let c = ReplicatedCluster::builder()
        .set("server", "admin_token", TOKEN)
        .start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let follower = (leader + 1) % 3;
    let prefix = String::from_utf8(unique_prefix("console")).expect("a text prefix");
    let mut kv = connect_buffered(c.thrift_endpoint(leader));
    for i in 0..60 {
        kv.must_set(format!("{prefix}k/{i:02}").as_bytes(), b"v");
    }
    let binary_key = [prefix.as_bytes(), b"\x00\xff"].concat();
    kv.must_set(&binary_key, b"\x01\x02");
    let long = "x".repeat(3000);
    kv.must_set(format!("{prefix}long").as_bytes(), long.as_bytes());

    // Pages through a follower: 25, 25, 10, in key order, has_more honest.
    let view = admin(c.admin_endpoint(follower));
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    for (page, want) in [(0, 25), (1, 25), (2, 10)] {
        let mut path = format!(
            "/data/range?prefix={}&limit=25",
            percent_encode(&format!("{prefix}k/"))
        );
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", percent_encode(a)));
        }
        let answer = json(&call(&view, Method::GET, &path, None));
        let items = answer["items"].as_array().expect("items");
        assert_eq!(items.len(), want, "page {page}: {answer}");
        assert_eq!(answer["has_more"], page < 2, "page {page}: {answer}");
        for item in items {
            keys.push(item["key"]["text"].as_str().expect("a text key").to_owned());
        }
        after = keys.last().cloned();
    }
    let expected: Vec<String> = (0..60).map(|i| format!("{prefix}k/{i:02}")).collect();
    assert_eq!(keys, expected);

    // Binary shows as hex only; a long value is cut in a range and whole through /data/key.
    let hex_prefix: String = prefix.bytes().map(|b| format!("{b:02x}")).collect();
    let answer = json(&call(
        &view,
        Method::GET,
        &format!("/data/range?prefix={hex_prefix}00&encoding=hex"),
        None,
    ));
    let item = &answer["items"][0];
    assert_eq!(item["key"]["text"], Value::Null, "{answer}");
    assert_eq!(item["key"]["hex"], format!("{hex_prefix}00ff"));
    assert_eq!(item["value"]["hex"], "0102");
    let answer = json(&call(
        &view,
        Method::GET,
        &format!(
            "/data/range?prefix={}",
            percent_encode(&format!("{prefix}long"))
        ),
        None,
    ));
    let value = &answer["items"][0]["value"];
    assert_eq!(value["truncated"], true, "{answer}");
    assert_eq!(value["size"], 3000);
    assert_eq!(value["text"].as_str().map(str::len), Some(1024));
    let whole = json(&call(
        &view,
        Method::GET,
        &format!("/data/key?key={}", percent_encode(&format!("{prefix}long"))),
        None,
    ));
    assert_eq!(whole["found"], true);
    assert_eq!(whole["value"]["truncated"], false);
    assert_eq!(whole["value"]["text"].as_str(), Some(long.as_str()));

    // Bad input names the field.
    let answer = call(&view, Method::GET, "/data/range?prefix=a&start=b", None);
    refused(&answer, 400, "invalid_request", "prefix and start");
    let answer = call(
        &view,
        Method::GET,
        "/data/range?prefix=zz&encoding=hex",
        None,
    );
    refused(&answer, 400, "invalid_request", "bad hex");
    assert!(answer.text().contains("prefix"), "{}", answer.text());
    let answer = call(&view, Method::GET, "/data/range?limit=0", None);
    refused(&answer, 400, "invalid_request", "limit 0");
    let answer = call(&view, Method::GET, "/data/key?key=a&cf=nope", None);
    refused(&answer, 400, "invalid_request", "unknown column family");

    // Writes: refused without the token (and nothing is written), done with it, on a follower
    // too (the write is forwarded like a Thrift one).
    let written = format!("{prefix}from-console");
    let body = serde_json::json!({"key": written, "value": "hello"});
    let answer = call(&view, Method::PUT, "/data/key", Some(&body));
    refused(&answer, 401, "unauthorized", "write without a token");
    assert!(
        !kv.get_value(written.as_bytes()).found,
        "nothing was written"
    );
    let operator = admin(c.admin_endpoint(follower)).with_token(Some(TOKEN.into()));
    let answer = call(&operator, Method::PUT, "/data/key", Some(&body));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(json(&answer)["version"].as_u64().is_some_and(|v| v > 0));
    let got = kv.get_value(written.as_bytes());
    assert!(got.found && got.value == b"hello", "{got:?}");
    let hex_body =
        serde_json::json!({"key": format!("{hex_prefix}0001"), "value": "ff00", "encoding": "hex"});
    let answer = call(&operator, Method::PUT, "/data/key", Some(&hex_body));
    assert_eq!(answer.status, 200, "{}", answer.text());
    let got = kv.get_value(&[prefix.as_bytes(), b"\x00\x01"].concat());
    assert_eq!(got.value, b"\xff\x00");
    let delete = format!("/data/key?key={}", percent_encode(&written));
    refused(
        &call(&view, Method::DELETE, &delete, None),
        401,
        "unauthorized",
        "delete without a token",
    );
    assert!(kv.get_value(written.as_bytes()).found, "not deleted");
    let answer = call(&operator, Method::DELETE, &delete, None);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(!kv.get_value(written.as_bytes()).found, "deleted");
}

#[test]
fn a_node_without_an_operator_token_refuses_console_writes_and_a_view_token_guards_views() {
    let node = Standalone::builder()
        .set("server", "admin_view_token", VIEW_TOKEN)
        .start();
    let anonymous = admin(node.admin_endpoint());
    let body = serde_json::json!({"key": "k", "value": "v"});
    let answer = call(&anonymous, Method::PUT, "/data/key", Some(&body));
    refused(&answer, 403, "forbidden", "no operator token configured");
    assert!(answer.text().contains("admin_token"), "{}", answer.text());
    for path in ["/status", "/metrics", "/data/range", "/config"] {
        refused(
            &call(&anonymous, Method::GET, path, None),
            401,
            "unauthorized",
            path,
        );
    }
    for path in ["/health", "/", "/console/app.js", "/console/style.css"] {
        assert_eq!(
            call(&anonymous, Method::GET, path, None).status,
            200,
            "{path}"
        );
    }
    let viewer = admin(node.admin_endpoint()).with_token(Some(VIEW_TOKEN.into()));
    assert_eq!(call(&viewer, Method::GET, "/status", None).status, 200);
    let info = json(&call(&viewer, Method::GET, "/console/info", None));
    assert_eq!(info["mode"], "standalone");
    assert_eq!(info["auth"]["operator_token"], false);
    assert_eq!(info["auth"]["view_token"], true);
    let config = call(&viewer, Method::GET, "/config", None);
    assert_eq!(json(&config)["server"]["admin_view_token"], "***");
}

/// One sample's value in Prometheus text, by its exact name and labels.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_move_under_load_and_a_paused_followers_lag_grows_then_drains() {
    let mut c = ReplicatedCluster::builder().start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let follower = (leader + 1) % 3;
    let leader_admin = admin(c.admin_endpoint(leader));
    let scrape = || {
        leader_admin
            .metrics()
            .unwrap_or_else(|e| panic!("/metrics of node {leader}: {e}"))
    };
    let prefix = unique_prefix("metrics");
    let mut kv = connect_buffered(c.thrift_endpoint(leader));
    let count = r#"dolmen_request_duration_seconds_count{method="setKey"}"#;
    let before = scrape();
    for i in 0..100u32 {
        kv.must_set(&[prefix.as_slice(), &i.to_be_bytes()].concat(), b"v");
    }
    let after = scrape();
    let (n0, n1) = (sample(&before, count).unwrap_or(0.0), sample(&after, count));
    assert!(
        n1.is_some_and(|n| n >= n0 + 100.0),
        "setKey count {n0} -> {n1:?}"
    );
    let inf = r#"dolmen_request_duration_seconds_bucket{method="setKey",le="+Inf"}"#;
    assert_eq!(
        sample(&after, inf),
        n1,
        "the +Inf bucket holds every request"
    );
    assert!(sample(&after, "dolmen_client_connections").is_some_and(|n| n >= 1.0));
    let lag = format!(r#"dolmen_replication_log_lag_entries{{follower="{follower}"}}"#);
    assert_eq!(
        sample(&after, &lag).map(|l| l <= 100.0),
        Some(true),
        "{after}"
    );

    c.sigstop(follower);
    for i in 0..200u32 {
        kv.must_set(&[prefix.as_slice(), b"p", &i.to_be_bytes()].concat(), b"v");
    }
    let grown = sample(&scrape(), &lag).unwrap_or(0.0);
    println!("follower {follower} paused: log lag {grown} entries");
    assert!(grown >= 150.0, "a paused follower falls behind: {grown}");
    c.sigcont(follower);
    let drained = wait_until(Duration::from_secs(15), || {
        sample(&scrape(), &lag).is_some_and(|l| l == 0.0)
    });
    assert!(drained, "its lag drains once it runs: {}", scrape());

    // The console's series samples once a second: keep writing until a sample shows commits.
    let mut i = 0u32;
    let mut series = Value::Null;
    let seen = wait_until(Duration::from_secs(10), || {
        for _ in 0..20 {
            kv.must_set(&[prefix.as_slice(), b"s", &i.to_be_bytes()].concat(), b"v");
            i += 1;
        }
        series = leader_admin
            .json::<Value>(Method::GET, "/console/series", None)
            .expect("/console/series");
        series["samples"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["commits_per_s"].as_f64() > Some(0.0)))
    });
    let samples = series["samples"].as_array().cloned().unwrap_or_default();
    let max_lag = samples
        .iter()
        .flat_map(|s| s["followers"].as_array().cloned().unwrap_or_default())
        .filter(|f| f["id"] == follower as u64)
        .filter_map(|f| f["log_lag"].as_u64())
        .max();
    println!(
        "series: {} samples, max log lag of {follower}: {max_lag:?}",
        samples.len()
    );
    assert!(seen, "a sample with commits per second: {series}");
}
