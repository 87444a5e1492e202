//! A full disk (issue 18): writes are refused with `UNAVAILABLE: disk full: …` before they are
//! proposed, reads keep working, `/ready` answers 503 naming the disk, `/metrics` shows
//! `dolmen_disk_full 1`, and once the condition clears writes are taken again. "Full" is made
//! with the real settings: `[database] min_free_disk_mb` larger than any disk, or a
//! `max_data_size_mb` quota the data outgrows; clearing it is a restart with the threshold
//! lowered. On a cluster the full node is the leader, so followers' forwarded writes meet it.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test disk_full`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use dolmen_admin::{Method, NotReadyCondition, ReadyAnswer};
use dolmen_tests::admin::admin;
use dolmen_tests::client::{op_set, range_all_absent};
use dolmen_tests::kvstore::{
    GetClusterHealthRequest, SetVersionstampedKeyRequest, SnapshotReadRequest,
    TTransactionalKVSyncClient,
};
use dolmen_tests::{connect_buffered, KvClient, KvExt, ReplicatedCluster, Standalone, TestCluster};

/// 1 EiB in MiB: more free space than any disk has, so the node is full from its first sample.
const NEVER_ENOUGH_MB: i64 = 1 << 40;

/// Sets `[database] key = value` in the config file at `path`.
fn set_database(path: &Path, key: &str, value: i64) {
    let text = std::fs::read_to_string(path).expect("read the node's config");
    let mut table: toml::Table = text.parse().expect("the node's config is TOML");
    table
        .entry("database")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("[database] is a table")
        .insert(key.to_owned(), toml::Value::Integer(value));
    std::fs::write(path, toml::to_string(&table).expect("render the config"))
        .expect("write the node's config");
}

/// Asserts an error text is a disk-full refusal naming `setting`: `UNAVAILABLE: disk full: …`.
#[track_caller]
fn assert_disk_full(what: &str, code: Option<&str>, error: Option<&str>, setting: &str) {
    assert_eq!(code, Some("UNAVAILABLE"), "{what}: {error:?}");
    let error = error.unwrap_or_default();
    let detail = error.strip_prefix("UNAVAILABLE: ").unwrap_or(error);
    assert!(detail.starts_with("disk full: "), "{what}: {error}");
    assert!(
        error.contains(&format!("[database] {setting} = ")),
        "{what}: {error}"
    );
    assert!(error.contains("reads are still served"), "{what}: {error}");
}

/// Every kind of write through `kv` is refused with the disk error naming `setting`.
fn assert_writes_refused(kv: &mut KvClient, setting: &str) {
    let r = kv.set_in(b"after/set", b"v", None);
    assert!(!r.success, "{r:?}");
    assert_disk_full(
        "setKey",
        r.error_code.as_deref(),
        r.error.as_deref(),
        setting,
    );
    let r = kv.delete_in(b"before/0", None);
    assert!(!r.success, "{r:?}");
    assert_disk_full(
        "deleteKey",
        r.error_code.as_deref(),
        r.error.as_deref(),
        setting,
    );
    let rv = kv.read_version();
    let r = kv.commit(rv, vec![op_set(b"after/commit", b"v")], vec![]);
    assert!(!r.success, "{r:?}");
    assert_disk_full(
        "atomicCommit",
        r.error_code.as_deref(),
        r.error.as_deref(),
        setting,
    );
    let r = kv
        .set_versionstamped_key(SetVersionstampedKeyRequest::new(
            b"after/stamp-0123456789".to_vec(),
            b"v".to_vec(),
            None,
        ))
        .expect("setVersionstampedKey answers");
    assert!(!r.success, "{r:?}");
    let error = r.error.unwrap_or_default();
    assert!(
        error.starts_with("UNAVAILABLE: disk full: "),
        "setVersionstampedKey: {error}"
    );
}

/// What was written before is still read, by key, by range and at a snapshot.
fn assert_reads_work(kv: &mut KvClient, keys: usize) {
    for i in 0..keys {
        let r = kv.get_value(format!("before/{i}").as_bytes());
        assert!(r.found, "before/{i}: {r:?}");
        assert_eq!(r.value, format!("value {i}").into_bytes());
    }
    let r = kv.range(range_all_absent());
    assert!(r.success, "{r:?}");
    let found = r
        .key_values
        .iter()
        .filter(|p| p.key.starts_with(b"before/"))
        .count();
    assert_eq!(found, keys, "getRange sees every key written before");
    let rv = kv.read_version();
    assert!(rv > 0);
    let r = kv
        .snapshot_read(SnapshotReadRequest::new(b"before/0".to_vec(), rv, None))
        .expect("snapshotRead answers");
    assert!(r.found, "{r:?}");
}

/// `GET /ready` as it came: the status and the JSON body.
fn ready(addr: SocketAddr) -> (u16, ReadyAnswer) {
    let raw = admin(addr)
        .request(Method::GET, "/ready", None)
        .expect("GET /ready answers");
    let answer = serde_json::from_slice(&raw.body)
        .unwrap_or_else(|e| panic!("/ready is a ReadyAnswer ({e}): {}", raw.text()));
    (raw.status, answer)
}

/// `/ready` is 503 and names the full disk.
#[track_caller]
fn assert_not_ready_for_disk(addr: SocketAddr, setting: &str) {
    let (status, answer) = ready(addr);
    assert_eq!(status, 503, "{answer:?}");
    assert!(!answer.ready);
    let disk = answer
        .reasons
        .iter()
        .find(|r| r.condition == NotReadyCondition::DiskFull)
        .unwrap_or_else(|| panic!("no disk_full reason in {answer:?}"));
    assert!(disk.detail.starts_with("disk full: "), "{disk:?}");
    assert!(disk.detail.contains(setting), "{disk:?}");
}

/// The value of the sample `name` in `/metrics` of the node at `addr`.
fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = admin(addr).metrics().expect("GET /metrics answers");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn write_before(kv: &mut KvClient, keys: usize) {
    for i in 0..keys {
        kv.must_set(
            format!("before/{i}").as_bytes(),
            format!("value {i}").as_bytes(),
        );
    }
}

#[test]
fn a_standalone_node_on_a_full_disk_refuses_writes_serves_reads_and_recovers() {
    let mut node = Standalone::start();
    write_before(&mut connect_buffered(node.thrift_endpoint()), 10);

    set_database(node.config_path(), "min_free_disk_mb", NEVER_ENOUGH_MB);
    node.restart();
    let mut kv = connect_buffered(node.thrift_endpoint());
    assert_writes_refused(&mut kv, "min_free_disk_mb");
    assert_reads_work(&mut kv, 10);
    assert_not_ready_for_disk(node.admin_endpoint(), "min_free_disk_mb");
    let metrics = node.admin_endpoint();
    assert_eq!(metric(metrics, "dolmen_disk_full"), 1.0);
    assert_eq!(
        metric(metrics, "dolmen_writes_refused_disk_full_total"),
        4.0
    );
    assert!(metric(metrics, "dolmen_disk_free_bytes") > 0.0);
    assert!(metric(metrics, "dolmen_data_size_bytes") > 0.0);
    let health = kv
        .get_cluster_health(GetClusterHealthRequest::new(None))
        .expect("getClusterHealth answers");
    let nodes = &health
        .cluster_health
        .as_ref()
        .expect("a cluster health")
        .nodes;
    assert_eq!(nodes[0].status, "degraded", "{health:?}");
    admin(node.admin_endpoint())
        .health()
        .expect("/health stays 200: the process is alive");

    set_database(node.config_path(), "min_free_disk_mb", 0);
    node.restart();
    let mut kv = connect_buffered(node.thrift_endpoint());
    kv.must_set(b"after/set", b"v");
    assert_reads_work(&mut kv, 10);
    let (status, answer) = ready(node.admin_endpoint());
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(metric(node.admin_endpoint(), "dolmen_disk_full"), 0.0);
}

#[test]
fn a_quota_refuses_writes_once_the_data_outgrows_it() {
    let mut node = Standalone::start();
    write_before(&mut connect_buffered(node.thrift_endpoint()), 5);
    // A quota a few MiB above what the data holds now: the node starts under it, and the
    // writes below outgrow it while it runs (the guard samples every second).
    let size = metric(node.admin_endpoint(), "dolmen_data_size_bytes") as i64;
    let quota_mb = size / (1 << 20) + 4;
    set_database(node.config_path(), "max_data_size_mb", quota_mb);
    node.restart();
    let (status, answer) = ready(node.admin_endpoint());
    assert_eq!(status, 200, "under the quota at start: {answer:?}");
    let mut kv = connect_buffered(node.thrift_endpoint());
    let value = vec![b'q'; 100_000];
    let started = Instant::now();
    let mut refused = None;
    for i in 0..2_000u32 {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let r = kv.set_in(format!("fill/{i:05}").as_bytes(), &value, None);
        if !r.success {
            refused = Some(r);
            break;
        }
    }
    let r = refused.unwrap_or_else(|| {
        panic!(
            "expected a write to be refused past max_data_size_mb = {quota_mb} within 2,000 \
             writes of 100 kB and 60 s; log:\n{}",
            node.log_tail(40)
        )
    });
    assert_disk_full(
        "setKey",
        r.error_code.as_deref(),
        r.error.as_deref(),
        "max_data_size_mb",
    );
    assert_reads_work(&mut kv, 5);
    assert_not_ready_for_disk(node.admin_endpoint(), "max_data_size_mb");

    set_database(node.config_path(), "max_data_size_mb", 0);
    node.restart();
    connect_buffered(node.thrift_endpoint()).must_set(b"after/quota", b"v");
}

#[test]
fn a_full_leader_refuses_its_own_and_forwarded_writes_while_every_node_serves_reads() {
    let mut cluster = ReplicatedCluster::builder().start();
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let mut kv = connect_buffered(cluster.thrift_endpoint(leader));
    write_before(&mut kv, 10);
    let applied = cluster.applied(leader);
    for i in 0..cluster.node_count() {
        cluster.wait_applied_at_least(i, applied);
    }

    // The leader's disk fills: restart it full, then give it the leadership back.
    set_database(
        &cluster.config_path(leader),
        "min_free_disk_mb",
        NEVER_ENOUGH_MB,
    );
    cluster.stop(leader);
    cluster.start(leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.current_leader() != Some(leader) {
        assert!(
            Instant::now() < deadline,
            "node {leader} did not take the leadership back within 30 s:\n{}",
            cluster.log_tails(20)
        );
        if let Some(now) = cluster.current_leader() {
            cluster.wait_applied_at_least(leader, cluster.applied(now));
            let _ = cluster.transfer_leader(leader);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let follower = *cluster
        .followers()
        .first()
        .expect("a 3-node cluster has followers");

    // On the leader, and through a follower (forwarded to the leader): the leader's disk error.
    let mut on_leader = connect_buffered(cluster.thrift_endpoint(leader));
    assert_writes_refused(&mut on_leader, "min_free_disk_mb");
    let mut on_follower = connect_buffered(cluster.thrift_endpoint(follower));
    assert_writes_refused(&mut on_follower, "min_free_disk_mb");
    let r = on_follower.set_in(b"after/forwarded", b"v", None);
    let error = r.error.unwrap_or_default();
    assert!(
        error.contains(&format!("node-{leader}")),
        "the refusal names the leader's data directory: {error}"
    );
    assert_reads_work(&mut on_leader, 10);
    assert_reads_work(&mut on_follower, 10);
    assert_not_ready_for_disk(cluster.admin_endpoint(leader), "min_free_disk_mb");
    let (status, answer) = ready(cluster.admin_endpoint(follower));
    assert_eq!(status, 200, "the follower's disk is fine: {answer:?}");
    assert_eq!(
        metric(cluster.admin_endpoint(leader), "dolmen_disk_full"),
        1.0
    );
    assert_eq!(
        metric(cluster.admin_endpoint(follower), "dolmen_disk_full"),
        0.0
    );
    assert!(
        metric(
            cluster.admin_endpoint(leader),
            "dolmen_writes_refused_disk_full_total"
        ) >= 9.0,
        "4 own, 5 forwarded"
    );

    // Space is freed: the leader restarts with the threshold off and writes are taken again.
    set_database(&cluster.config_path(leader), "min_free_disk_mb", 0);
    cluster.stop(leader);
    cluster.start(leader);
    cluster.wait_all_ready(Duration::from_secs(30));
    let at = cluster.write_until_acked(follower, b"after/recovered", b"v");
    cluster.wait_applied_at_least(leader, at);
    let mut on_leader = connect_buffered(cluster.thrift_endpoint(leader));
    let r = on_leader.get_value(b"after/recovered");
    assert!(r.found, "{r:?}");
    let (status, answer) = ready(cluster.admin_endpoint(leader));
    assert_eq!(status, 200, "{answer:?}");
}

/// Why a tmpfs cannot be mounted here.
#[derive(Debug, thiserror::Error)]
enum NoTmpfs {
    /// The probe's mount point or `unshare` could not be used.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// `unshare -m … mount -t tmpfs` failed; its stderr.
    #[error("{0}")]
    Refused(String),
}

/// Whether this process may make a private mount namespace and mount a tmpfs in it (root, or
/// CAP_SYS_ADMIN): what [`a_real_disk_filling_up_is_refused_before_it_is_full`] needs.
fn can_mount_tmpfs(dir: &Path) -> Result<(), NoTmpfs> {
    let probe = dir.join("probe");
    std::fs::create_dir_all(&probe)?;
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "mount", "-t", "tmpfs"])
        .args(["-o", "size=1m", "tmpfs"])
        .arg(&probe)
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NoTmpfs::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// A real filesystem filling up: the node's data directory is a 96 MiB tmpfs (mounted in a
/// private mount namespace by a wrapper that then runs `dolmen` with its PID), writes of
/// 100 kB go on until the node refuses them, and every refusal is the disk error, never a crash,
/// a hang or the filesystem's own `ENOSPC`: the node stops taking writes while
/// `min_free_disk_mb` (32) is still free, serves every acknowledged key, and says not-ready.
/// The writes are paced at about 20 MB/s, below what the headroom covers between two samples
/// of the disk (one a second); docs/replication.md §7.4 sizes the default by the same rule.
#[test]
fn a_real_disk_filling_up_is_refused_before_it_is_full() {
    let dir = tempfile::tempdir().expect("a temp dir");
    if let Err(why) = can_mount_tmpfs(dir.path()) {
        println!("skipped: a tmpfs cannot be mounted here ({why}); the settings-made full disks above cover the behaviour");
        return;
    }
    let wrapper = dir.path().join("dolmen-on-tmpfs");
    // Called as `<wrapper> serve --config <node dir>/config.toml`: mounts a 96 MiB tmpfs on the
    // node's data directory (`<node dir>/data`) in a private mount namespace, then becomes
    // dolmen (exec all the way: the harness's PID is the node's).
    let script = format!(
        "#!/bin/sh\ndata=\"$(dirname \"$3\")/data\"\nmkdir -p \"$data\"\n\
         exec unshare -m --propagation private sh -c \
         'mount -t tmpfs -o size=96m tmpfs \"$1\" && shift && exec \"$@\"' sh \"$data\" '{}' \"$@\"\n",
        dolmen_tests::binary::dolmen_bin().display()
    );
    std::fs::write(&wrapper, script).expect("write the wrapper");
    let mut perms = std::fs::metadata(&wrapper).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&wrapper, perms).expect("chmod the wrapper");

    let node = Standalone::builder()
        .bin(&wrapper)
        .set("database", "min_free_disk_mb", 32)
        .set("rocksdb", "write_buffer_size_mb", 4)
        .set("rocksdb", "max_write_buffer_number", 2)
        .start();
    let mut kv = connect_buffered(node.thrift_endpoint());
    let value = vec![b'd'; 100_000];
    let mut acknowledged = 0usize;
    let mut refusal = None;
    // 96 MiB cannot hold 2,000 values of 100 kB: the loop ends with a refusal.
    for i in 0..2000usize {
        let r = kv.set_in(format!("fill/{i:05}").as_bytes(), &value, None);
        if !r.success {
            refusal = Some(r);
            break;
        }
        acknowledged += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let refusal = refusal.expect("a 96 MiB disk took 200 MB");
    assert_disk_full(
        "setKey on a filling disk",
        refusal.error_code.as_deref(),
        refusal.error.as_deref(),
        "min_free_disk_mb",
    );
    assert!(acknowledged >= 100, "only {acknowledged} values fit");
    // Still refused, still serving: every acknowledged value reads back.
    let r = kv.set_in(b"fill/after", b"v", None);
    assert!(!r.success, "{r:?}");
    for i in 0..acknowledged {
        let got = kv.get_value(format!("fill/{i:05}").as_bytes());
        assert!(got.found && got.value == value, "fill/{i:05} lost");
    }
    assert_not_ready_for_disk(node.admin_endpoint(), "min_free_disk_mb");
    assert_eq!(metric(node.admin_endpoint(), "dolmen_disk_full"), 1.0);
    println!(
        "96 MiB tmpfs: {acknowledged} values of 100 kB acknowledged, then refused: {}",
        refusal.error.unwrap_or_default()
    );
}
