//! Backups and restores through the real binary (docs/backup.md): a backup taken through a
//! follower of a 3-node cluster under a write load restores into a standalone node and into a
//! new 3-node cluster, each with the source's digest at the backup's version; a flipped byte
//! and a truncated part are refused naming the part; a restore never writes over data; a
//! standalone node's data becomes the first member of a new cluster (`dolmen seed`).
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test backup`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use dolmen_admin::backup::Manifest;
use dolmen_testkit::render::{render, replicated_node};
use dolmen_testkit::{Launch, NodeAddrs};
use dolmen_tests::admin::admin;
use dolmen_tests::binary::{dolmen_bin, output_text};
use dolmen_tests::client::op;
use dolmen_tests::replicated::{
    unique_prefix, wait_until, WriteKind, WriteLoad, WriteLoadConfig, LEADER_TIMEOUT,
};
use dolmen_tests::standalone::apply_test_defaults;
use dolmen_tests::{connect_buffered, KvExt, ReplicatedCluster, Standalone};

/// Keys loaded before the backup, half in `default`, half in `users`.
const KEYS: usize = 6_000;

fn run(args: &[&str], paths: &[&Path]) -> Output {
    let mut command = Command::new(dolmen_bin());
    command.args(args);
    for path in paths {
        command.arg(path);
    }
    command.output().expect("run dolmen")
}

fn manifest(dir: &Path) -> Manifest {
    let bytes = std::fs::read(dir.join("manifest.json")).expect("read the manifest");
    serde_json::from_slice(&bytes).expect("parse the manifest")
}

/// Node `i`'s file of a new 3-node cluster at `addrs`: the harness's settings, with history kept
/// long enough to compare digests at an old version.
fn member_config(i: usize, addrs: &[NodeAddrs], data: &Path) -> String {
    let mut config = replicated_node(i, addrs, data);
    apply_test_defaults(&mut config);
    config.mvcc.retention_window_ms = 600_000;
    render(&config).unwrap_or_else(|e| panic!("{e}"))
}

/// Backs up through the admin address `admin` into `out`, in parts of at most 1 MiB.
fn take_backup(admin: std::net::SocketAddr, out: &Path) -> Manifest {
    let admin = admin.to_string();
    let args = ["backup", "--admin", &admin, "--part-size-mb", "1", "--out"];
    let result = run(&args, &[out]);
    assert!(result.status.success(), "{}", output_text(&result));
    manifest(out)
}

/// `KEYS` keys through node 0, 200 per commit, in both column families.
fn load(c: &ReplicatedCluster, prefix: &str) {
    let mut client = connect_buffered(c.thrift_endpoint(0));
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(200) {
        let ops = chunk
            .iter()
            .map(|i| {
                let cf = if i % 2 == 0 { "default" } else { "users" };
                let key = format!("{prefix}{i:06}");
                let value = format!("value {i} {}", "x".repeat(i % 300));
                op("set", key.as_bytes(), Some(value.as_bytes()), Some(cf))
            })
            .collect();
        let rv = client.read_version();
        client.must_commit(rv, ops, Vec::new());
    }
}

#[test]
fn a_backup_under_load_restores_into_a_standalone_node_and_a_new_cluster() {
    let c = ReplicatedCluster::builder()
        .set("mvcc", "retention_window_ms", 600_000)
        .start();
    let prefix = String::from_utf8(unique_prefix("backup")).expect("text prefix");
    load(&c, &prefix);
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let follower = (0..3).find(|i| *i != leader).expect("a follower");

    // Writers keep going through every node while the backup streams from a follower.
    let writes = WriteLoad::start(WriteLoadConfig {
        targets: (0..3).map(|i| (i, c.thrift_endpoint(i))).collect(),
        threads: 3,
        prefix: format!("{prefix}during/").into_bytes(),
        kind: WriteKind::SetKey,
        pause: Duration::from_millis(2),
        max_writes_per_thread: 100_000,
        max_duration: Duration::from_secs(120),
    });
    let work = tempfile::tempdir().expect("temp dir");
    let backup = work.path().join("backup");
    let m = take_backup(c.admin_endpoint(follower), &backup);
    assert!(
        wait_until(Duration::from_secs(30), || writes.acked() > 50),
        "the write load kept going"
    );
    let acked_during = writes.acked();
    drop(writes.finish());
    println!(
        "backup: version {}, {} records, {} bytes, {} parts, {} writes acked during it",
        m.version,
        m.records,
        m.bytes,
        m.parts.len(),
        acked_during
    );
    assert!(m.records >= KEYS as u64, "{} records", m.records);
    assert!(m.parts.len() > 1, "parts of at most 1 MiB");
    for i in 0..3 {
        assert_eq!(
            c.digest(i, m.version).expect("digest"),
            m.digest,
            "node {i}'s digest at the backup's version is the backup's"
        );
    }

    // Into a standalone node.
    let standalone = Standalone::builder()
        .retention_window_ms(600_000)
        .start_after(|config| {
            let out = run(
                &["restore", "--from"],
                &[&backup, Path::new("--config"), config],
            );
            assert!(out.status.success(), "{}", output_text(&out));
        });
    let digest = admin(standalone.admin_endpoint())
        .digest(Some(m.version))
        .expect("digest");
    assert_eq!(
        digest.digest, m.digest,
        "the standalone node has the backup's state"
    );
    let mut client = connect_buffered(standalone.thrift_endpoint());
    let key = format!("{prefix}{:06}", 2);
    let r = client.get_value(key.as_bytes());
    assert!(r.found && r.value.starts_with(b"value 2"), "{r:?}");
    client.must_set(b"after-restore", b"1");
    assert!(
        client.read_version() > m.version as i64,
        "versions go on past the backup's"
    );

    // Into a new 3-node cluster: node 0 restores and seeds it, the others start empty.
    let addrs = NodeAddrs::pick(3).unwrap_or_else(|e| panic!("{e}"));
    let fresh = ReplicatedCluster::start_from_files_after(
        &addrs,
        |i, data| member_config(i, &addrs, data),
        |configs| {
            let out = run(
                &["restore", "--from"],
                &[&backup, Path::new("--config"), &configs[0]],
            );
            assert!(out.status.success(), "{}", output_text(&out));
            assert!(
                output_text(&out).contains("seed of a new cluster"),
                "{}",
                output_text(&out)
            );
        },
    );
    fresh.wait_for_leader(LEADER_TIMEOUT);
    for i in 0..3 {
        fresh.wait_applied_at_least(i, m.version);
        assert_eq!(
            fresh.digest(i, m.version).expect("digest"),
            m.digest,
            "member {i} of the new cluster has the backup's state"
        );
    }
    for i in 0..3 {
        connect_buffered(fresh.thrift_endpoint(i)).must_set(format!("new/{i}").as_bytes(), b"v");
    }
}

#[test]
fn a_damaged_backup_is_refused_naming_the_part_and_a_restore_never_overwrites_data() {
    let c = ReplicatedCluster::builder()
        .set("mvcc", "retention_window_ms", 600_000)
        .start();
    let prefix = String::from_utf8(unique_prefix("damaged")).expect("text prefix");
    load(&c, &prefix);
    let work = tempfile::tempdir().expect("temp dir");
    let backup = work.path().join("backup");
    let m = take_backup(c.admin_endpoint(0), &backup);
    let out = run(
        &[
            "backup",
            "--admin",
            &c.admin_endpoint(0).to_string(),
            "--out",
        ],
        &[&backup],
    );
    assert!(
        !out.status.success(),
        "a backup never writes into a used directory"
    );
    assert!(
        output_text(&out).contains("is not empty"),
        "{}",
        output_text(&out)
    );
    let part = |i: usize| backup.join(&m.parts[i].file);

    let copy = |name: &str| -> PathBuf {
        let to = work.path().join(name);
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(&backup).expect("read the backup") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
        to
    };
    let flipped = copy("flipped");
    let target = flipped.join(&m.parts[1].file);
    let mut bytes = std::fs::read(&target).expect("read a part");
    bytes[100] ^= 0x01;
    std::fs::write(&target, bytes).expect("write");
    let out = run(&["restore", "--verify-only", "--from"], &[&flipped]);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains(&m.parts[1].file) && output_text(&out).contains("corrupt"),
        "{}",
        output_text(&out)
    );

    let truncated = copy("truncated");
    let target = truncated.join(&m.parts[0].file);
    let len = std::fs::metadata(part(0)).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    let out = run(&["restore", "--verify-only", "--from"], &[&truncated]);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains(&m.parts[0].file) && output_text(&out).contains("truncated"),
        "{}",
        output_text(&out)
    );

    // A node that holds data is never restored over (checked before anything is opened).
    let standalone = Standalone::builder().start();
    let out = run(
        &["restore", "--from"],
        &[&backup, Path::new("--config"), standalone.config_path()],
    );
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("already holds data"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn a_standalone_nodes_data_becomes_the_first_member_of_a_new_cluster() {
    let addrs = NodeAddrs::pick(3).unwrap_or_else(|e| panic!("{e}"));
    let prefix = String::from_utf8(unique_prefix("seed")).expect("text prefix");
    let mut before = None;
    let c = ReplicatedCluster::start_from_files_after(
        &addrs,
        |i, data| member_config(i, &addrs, data),
        |configs| {
            // Node 0's data directory first serves as a standalone node: the same file with
            // `mode = "standalone"`.
            let replicated = std::fs::read_to_string(&configs[0]).expect("read node 0's config");
            let standalone = configs[0].with_file_name("standalone.toml");
            std::fs::write(
                &standalone,
                replicated.replace("mode = \"replicated\"", "mode = \"standalone\""),
            )
            .expect("write the standalone config");
            let log = configs[0].with_file_name("standalone.log");
            let mut node = Launch::new(&dolmen_bin(), &standalone, &log)
                .spawn()
                .unwrap_or_else(|e| panic!("{e}"));
            let ready = node
                .wait_ready(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{e}"));
            let mut client = connect_buffered(ready.thrift);
            for chunk in (0..2_000).collect::<Vec<usize>>().chunks(200) {
                let ops = chunk
                    .iter()
                    .map(|i| {
                        let key = format!("{prefix}{i:05}");
                        op("set", key.as_bytes(), Some(b"standalone"), None)
                    })
                    .collect();
                let rv = client.read_version();
                client.must_commit(rv, ops, Vec::new());
            }
            let digest = admin(ready.admin).digest(None).expect("digest");
            before = Some(digest);
            drop(client);
            node.stop(Duration::from_secs(10));

            let out = run(&["seed", "--config"], &[&configs[0]]);
            assert!(out.status.success(), "{}", output_text(&out));
            let out = run(&["seed", "--config"], &[&configs[0]]);
            assert!(!out.status.success(), "a node is seeded once");
            assert!(
                output_text(&out).contains("already belongs to a cluster"),
                "{}",
                output_text(&out)
            );
        },
    );
    let before = before.expect("the standalone node ran");
    c.wait_for_leader(LEADER_TIMEOUT);
    for i in 0..3 {
        c.wait_applied_at_least(i, before.version);
        assert_eq!(
            c.digest(i, before.version).expect("digest"),
            before.digest,
            "member {i} has the standalone node's data"
        );
    }
    let mut client = connect_buffered(c.thrift_endpoint(2));
    client.must_set(b"after-seed", b"1");
    assert!(client.read_version() > before.version as i64);
}
