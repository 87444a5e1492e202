//! The older `TransactionalKV` server's 3-node harness files run Dolmen unchanged: three nodes
//! started from its node files (RocksDB tuning sections, `consistency_level = "strong"`,
//! `[cluster]` timings, a static member list, no `bootstrap` key and no admin port) form a
//! cluster by themselves and commit through every node, and each RocksDB setting reaches
//! RocksDB (its own `OPTIONS` file says so).
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test older_config`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use dolmen_testkit::{loopback, pick_ports, NodeAddrs};
use dolmen_tests::binary::dolmen_bin;
use dolmen_tests::replicated::{unique_prefix, LEADER_TIMEOUT};
use dolmen_tests::{connect_buffered, KvExt, ReplicatedCluster};

/// The fixture: one node file of the older server's harness, for node 0 on the default ports.
fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/config/fixtures/older-server-node.toml")
}

/// Addresses for three nodes whose admin port is the Thrift port + 100 (what Dolmen uses when
/// a replicated node's file names none), all free now.
fn addresses() -> Vec<NodeAddrs> {
    for _ in 0..50 {
        let ports = pick_ports(6).unwrap_or_else(|e| panic!("{e}"));
        let addrs: Vec<NodeAddrs> = ports
            .chunks(2)
            .filter_map(|p| {
                let admin = p[0].checked_add(100)?;
                Some(NodeAddrs {
                    thrift: loopback(p[0]),
                    peer: loopback(p[1]),
                    admin: loopback(admin),
                })
            })
            .collect();
        let admins_free = addrs.len() == 3
            && addrs
                .iter()
                .all(|a| TcpListener::bind(a.admin).is_ok() && !ports.contains(&a.admin.port()));
        if admins_free {
            return addrs;
        }
    }
    panic!("found no three free Thrift ports whose port + 100 is free too, in 50 tries");
}

/// Node `i`'s file: the fixture with this cluster's addresses, id and data directory.
fn node_file(fixture: &str, addrs: &[NodeAddrs], i: usize, data: &Path) -> String {
    let list = |f: fn(&NodeAddrs) -> String| {
        let quoted: Vec<String> = addrs.iter().map(|a| format!("\"{}\"", f(a))).collect();
        format!("[{}]", quoted.join(", "))
    };
    let text = fixture
        .replace("instance_id = 0", &format!("instance_id = {i}"))
        .replace(
            r#"["127.0.0.1:9090", "127.0.0.1:9091", "127.0.0.1:9092"]"#,
            &list(|a| a.thrift.to_string()),
        )
        .replace(
            r#"["127.0.0.1:7090", "127.0.0.1:7091", "127.0.0.1:7092"]"#,
            &list(|a| a.peer.to_string()),
        )
        .replace(
            r#"base_path = "./data""#,
            &format!("base_path = {:?}", data.display().to_string()),
        );
    assert!(!text.contains("9090") && !text.contains("7090"), "{text}");
    assert!(
        !text.contains("\nbootstrap"),
        "the older files have no bootstrap key"
    );
    text
}

#[test]
fn three_nodes_from_the_older_servers_files_form_a_cluster_and_commit_through_each() {
    let fixture = std::fs::read_to_string(fixture_path()).expect("read the fixture");
    let addrs = addresses();
    let c =
        ReplicatedCluster::start_from_files(&addrs, |i, data| node_file(&fixture, &addrs, i, data));
    c.wait_for_leader(LEADER_TIMEOUT);

    let prefix = String::from_utf8(unique_prefix("older")).expect("the prefix is text");
    for i in 0..3 {
        let mut client = connect_buffered(c.thrift_endpoint(i));
        client.must_set(
            format!("{prefix}{i}").as_bytes(),
            format!("from node {i}").as_bytes(),
        );
        let r = client.set_in(format!("{prefix}user-{i}").as_bytes(), b"u", Some("users"));
        assert!(
            r.success,
            "setKey in column family users through node {i}: {r:?}"
        );
    }
    // "strong" reads are linearizable: every node sees every write at once.
    for j in 0..3 {
        let mut client = connect_buffered(c.thrift_endpoint(j));
        for i in 0..3 {
            let r = client.get_value(format!("{prefix}{i}").as_bytes());
            assert!(
                r.found && r.value == format!("from node {i}").as_bytes(),
                "node {j} reads the write made through node {i}: {r:?}"
            );
        }
    }

    // The tuning reached RocksDB: its OPTIONS file records what it runs with.
    for i in 0..3 {
        let options = rocksdb_options_file(&c.data_dir(i).join(format!("node-{i}/db")));
        for expected in [
            "block_size=16384",
            "max_background_jobs=4",
            "bytes_per_sync=1048576",
            "bottommost_compression=kZSTD",
            "filter_policy=bloomfilter",
            "compaction_pri=kMinOverlappingRatio",
            "target_file_size_base=33554432",
            "target_file_size_multiplier=2",
            "max_bytes_for_level_base=134217728",
            "max_bytes_for_level_multiplier=8.000000",
            "stats_dump_period_sec=300",
            "keep_log_file_num=5",
            "max_log_file_size=52428800",
            "level_compaction_dynamic_level_bytes=true",
        ] {
            assert!(
                options.contains(expected),
                "node {i}'s RocksDB OPTIONS lack {expected:?}:\n{options}"
            );
        }
    }
}

/// The newest `OPTIONS-*` file RocksDB wrote in `db`.
fn rocksdb_options_file(db: &Path) -> String {
    let newest = std::fs::read_dir(db)
        .unwrap_or_else(|e| panic!("read {}: {e}", db.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("OPTIONS-") && !n.ends_with(".dbtmp"))
        })
        .max()
        .unwrap_or_else(|| panic!("no OPTIONS file in {}", db.display()));
    std::fs::read_to_string(&newest).unwrap_or_else(|e| panic!("read {}: {e}", newest.display()))
}

#[test]
fn config_migrate_prints_a_file_dolmen_loads_and_refuses_what_it_cannot_honour() {
    let out = Command::new(dolmen_bin())
        .args(["config", "migrate"])
        .arg(fixture_path())
        .output()
        .expect("run dolmen config migrate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("consensus.election_timeout_ms") && !stdout.contains("[cluster]"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let snappy = dir.path().join("snappy.toml");
    let fixture = std::fs::read_to_string(fixture_path()).expect("read the fixture");
    std::fs::write(
        &snappy,
        fixture.replace(
            "bottom_compression = \"zstd\"",
            "bottom_compression = \"snappy\"",
        ),
    )
    .expect("write");
    let out = Command::new(dolmen_bin())
        .args(["serve", "--config"])
        .arg(&snappy)
        .output()
        .expect("run dolmen serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("compression.bottom_compression") || stderr.contains("bottom_compression"),
        "the error names the key: {stderr}"
    );
    assert!(
        stderr.contains("\"zstd\""),
        "the error says what to write: {stderr}"
    );
}
