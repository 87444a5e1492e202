//! `dolmen import` through the real binary, from two sources: a stand-in for the older
//! single-node server (`older-kv-server`: no MVCC, unframed, range reads by limit and offset)
//! and a Dolmen node. The first import is killed midway and resumed from its state file; both
//! end with equal key counts and CRC-64s on the source and the target.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test import`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dolmen_tests::binary::{dolmen_bin, output_text};
use dolmen_tests::client::op;
use dolmen_tests::{connect_buffered, KvExt, Standalone};

/// Keys per column family in the source.
const KEYS: usize = 20_000;

/// The older-server stand-in, killed by PID when dropped.
struct OlderServer {
    child: Child,
    addr: SocketAddr,
}

impl OlderServer {
    fn start() -> Self {
        let bin = dolmen_bin().with_file_name("older-kv-server");
        let mut child = Command::new(&bin)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("older-kv-server prints its address within 10 s");
        let addr = line
            .trim()
            .strip_prefix("older-kv-server ready: ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self { child, addr }
    }
}

impl Drop for OlderServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `KEYS` keys in each of `default` and `users`, 500 per commit.
fn fill(addr: SocketAddr) {
    let mut client = connect_buffered(addr);
    for cf in ["default", "users"] {
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
            let ops = chunk
                .iter()
                .map(|i| {
                    let key = format!("{cf}/key/{i:06}");
                    let value = format!("{cf} value {i} {}", "v".repeat(i % 200));
                    op("set", key.as_bytes(), Some(value.as_bytes()), Some(cf))
                })
                .collect();
            client.must_commit(1, ops, Vec::new());
        }
    }
}

fn import(from: SocketAddr, to: SocketAddr, state: &Path) -> Command {
    let mut command = Command::new(dolmen_bin());
    command
        .args(["import", "--column-families", "default,users", "--from"])
        .arg(from.to_string())
        .arg("--to")
        .arg(to.to_string())
        .arg("--state")
        .arg(state);
    command
}

/// Keys copied so far, per the state file (0 before it exists).
fn copied(state: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(state) else {
        return 0;
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return 0; // caught mid-rename
    };
    json["column_families"]
        .as_object()
        .map(|cfs| cfs.values().filter_map(|cf| cf["copied"].as_u64()).sum())
        .unwrap_or(0)
}

#[test]
fn an_interrupted_import_from_the_older_server_resumes_and_ends_with_equal_checksums() {
    let older = OlderServer::start();
    fill(older.addr);
    let target = Standalone::start();
    let work = tempfile::tempdir().expect("temp dir");
    let state = work.path().join("import.json");

    // Kill the first run once it has copied something, well before the end.
    let mut first = import(older.addr, target.thrift_endpoint(), &state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dolmen import");
    let deadline = Instant::now() + Duration::from_secs(60);
    while copied(&state) == 0 {
        assert!(
            Instant::now() < deadline,
            "the import copied nothing in 60 s"
        );
        assert!(
            first.try_wait().expect("poll").is_none(),
            "the import ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    first.kill().expect("kill the import");
    first.wait().expect("reap the import");
    let at_kill = copied(&state);
    assert!(
        at_kill > 0 && at_kill < 2 * KEYS as u64,
        "interrupted midway: {at_kill} keys copied"
    );

    let out = import(older.addr, target.thrift_endpoint(), &state)
        .output()
        .expect("run dolmen import");
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("resuming after"),
        "the second run resumed: {said}"
    );
    for cf in ["default", "users"] {
        assert!(
            said.contains(&format!("{cf}: {KEYS} keys, CRC-64")) && said.contains("on both sides"),
            "{said}"
        );
    }
    let mut client = connect_buffered(target.thrift_endpoint());
    let r = client.get_in(b"users/key/000007", Some("users"));
    assert!(r.found && r.value.starts_with(b"users value 7 "), "{r:?}");

    // A Dolmen node is a source too.
    let second = Standalone::start();
    let state = work.path().join("from-dolmen.json");
    let out = import(target.thrift_endpoint(), second.thrift_endpoint(), &state)
        .output()
        .expect("run dolmen import");
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("default: {KEYS} keys, CRC-64")),
        "{said}"
    );

    // A state file belongs to one source.
    let out = import(older.addr, second.thrift_endpoint(), &state)
        .output()
        .expect("run dolmen import");
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("give another --state"),
        "{}",
        output_text(&out)
    );
}

/// An import into a sharded cluster: some of its batches reach several ranges (split points
/// inside both column families' keys) and commit across them as one transaction each
/// (docs/sharding.md §6.3); the import ends with equal key counts and CRC-64s, and the keys on
/// both sides of a split point are there.
#[test]
fn an_import_into_a_sharded_cluster_commits_batches_across_its_ranges() {
    let older = OlderServer::start();
    fill(older.addr);
    let target = dolmen_tests::ReplicatedCluster::builder()
        .set("database", "column_families", vec!["default", "users"])
        .set(
            "sharding",
            "split_keys",
            vec![
                "default/key/004321",
                "default/key/017000",
                "users/key/009999",
            ],
        )
        .start();
    target.wait_for_leader(dolmen_tests::replicated::LEADER_TIMEOUT);
    let work = tempfile::tempdir().expect("temp dir");
    let out = import(
        older.addr,
        target.thrift_endpoint(1),
        &work.path().join("s.json"),
    )
    .output()
    .expect("run dolmen import");
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    for cf in ["default", "users"] {
        assert!(
            said.contains(&format!("{cf}: {KEYS} keys, CRC-64")) && said.contains("on both sides"),
            "{said}"
        );
    }
    let mut client = connect_buffered(target.thrift_endpoint(2));
    for key in [
        "default/key/004320",
        "default/key/004321",
        "default/key/019999",
    ] {
        let r = client.get_value(key.as_bytes());
        assert!(r.found, "{key}: {r:?}");
    }
}
