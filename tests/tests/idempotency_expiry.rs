//! The idempotency table stays bounded: 10,000 client restarts (each a fresh `client_id`, as a
//! restarted client takes) leave entries that the leader expires through the log once
//! `[mvcc] idempotency_window_ms` has passed, on a standalone node and on every replica of a
//! 3-node cluster alike; more fresh clients later never bring the count back to the total.
//! Commits go through the Thrift API (strict binary, hand-encoded `atomicCommit` with the
//! `client_id`/`client_sequence` extension fields); the count is read from `/metrics`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dolmen_tests::admin::admin;
use dolmen_tests::client::op_set;
use dolmen_tests::kvstore::AtomicCommitResponse;
use dolmen_tests::raw::{call_bytes, RawConn, TokenCommit};
use dolmen_tests::replicated::LEADER_TIMEOUT;
use dolmen_tests::{ReplicatedCluster, Standalone, TestCluster};

/// Short enough for a test, at least the test MVCC window (300 ms).
const WINDOW_MS: i64 = 1_000;
/// Client restarts of the first phase.
const RESTARTS: usize = 10_000;
/// Connections the clients commit through at once.
const WRITERS: usize = 8;
/// Bound on every wait for the count to fall.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(90);

/// One connection that commits blind writes with idempotency tokens.
struct TokenClient {
    conn: RawConn,
    seqid: i32,
}

impl TokenClient {
    fn connect(addr: SocketAddr) -> Self {
        Self {
            conn: RawConn::connect(addr, false),
            seqid: 0,
        }
    }

    /// Commits `key = value` as `client_id`'s commit `sequence`; returns the commit version.
    fn commit(&mut self, client_id: &[u8], sequence: i64, key: &[u8], value: &[u8]) -> i64 {
        self.seqid += 1;
        let request = TokenCommit {
            read_version: 0,
            operations: vec![op_set(key, value)],
            read_conflict_keys: Vec::new(),
            client_id: client_id.to_vec(),
            client_sequence: sequence,
        };
        self.conn
            .send(&call_bytes("atomicCommit", self.seqid, &request));
        let reply = self
            .conn
            .recv::<AtomicCommitResponse>()
            .expect("an atomicCommit reply");
        let response = reply.response.expect("a REPLY with its response");
        assert!(response.success, "commit failed: {response:?}");
        response.committed_version.expect("a committed version")
    }
}

/// `count` fresh clients (ids `<prefix>-<i>`), each committing once, through [`WRITERS`]
/// connections to `addr`; returns the commit versions by client index.
fn fresh_clients(addr: SocketAddr, prefix: &str, count: usize) -> Vec<i64> {
    let per = count.div_ceil(WRITERS);
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let prefix = prefix.to_owned();
            std::thread::spawn(move || {
                let mut client = TokenClient::connect(addr);
                (w * per..((w + 1) * per).min(count))
                    .map(|i| {
                        let id = format!("{prefix}-{i}");
                        client.commit(id.as_bytes(), 1, id.as_bytes(), b"first")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("a writer thread"))
        .collect()
}

/// One sample's value in Prometheus text, by its exact name.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `(dolmen_idempotency_entries, dolmen_idempotency_expired_total)` of the node at `admin_addr`.
fn table(admin_addr: SocketAddr) -> (u64, u64) {
    let text = admin(admin_addr)
        .metrics()
        .unwrap_or_else(|e| panic!("/metrics of {admin_addr}: {e}"));
    let entries = sample(&text, "dolmen_idempotency_entries")
        .unwrap_or_else(|| panic!("no dolmen_idempotency_entries in:\n{text}"));
    let expired = sample(&text, "dolmen_idempotency_expired_total")
        .unwrap_or_else(|| panic!("no dolmen_idempotency_expired_total in:\n{text}"));
    (entries, expired)
}

/// Waits (at most [`EXPIRY_TIMEOUT`]) until the node's table is empty; returns its counters.
fn wait_empty(admin_addr: SocketAddr, what: &str) -> (u64, u64) {
    let deadline = Instant::now() + EXPIRY_TIMEOUT;
    loop {
        let now = table(admin_addr);
        if now.0 == 0 {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the idempotency table still holds {} entries after {EXPIRY_TIMEOUT:?} \
             (expired so far: {})",
            now.0,
            now.1
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The scenario on one node or cluster: 10,000 restarts expire; a retry within the window gets
/// its first outcome, one after it is a new transaction (a blind write); five more rounds of
/// fresh clients never leave more than one round's entries. Returns the entries recorded.
fn restarts_leave_the_table_bounded(thrift: SocketAddr, admin_addr: SocketAddr) -> u64 {
    let versions = fresh_clients(thrift, "restart", RESTARTS);
    assert_eq!(versions.len(), RESTARTS);
    let (entries, _) = table(admin_addr);
    assert!(entries <= RESTARTS as u64, "{entries} entries");

    // Within the window the retry of a fresh client's commit gets its first outcome.
    let mut client = TokenClient::connect(thrift);
    let first = client.commit(b"retry-me", 1, b"retry-me", b"first");
    assert_eq!(
        client.commit(b"retry-me", 1, b"retry-me", b"second"),
        first,
        "a retry within the window returns the first commit version"
    );

    let (entries, expired) = wait_empty(admin_addr, "after 10,000 restarts");
    assert_eq!(entries, 0);
    assert!(
        expired > RESTARTS as u64,
        "{expired} expired: every restart's entry and retry-me's"
    );
    // After the window the entry is gone: the retry of a blind write is a new transaction.
    assert!(
        client.commit(b"retry-me", 1, b"retry-me", b"again") > first,
        "a retry after the window is applied as a new transaction"
    );
    let mut recorded = RESTARTS as u64 + 2;

    // More fresh clients: the count never holds more than the round in flight.
    const ROUND: usize = 2_000;
    for round in 0..5 {
        let prefix = format!("round-{round}");
        fresh_clients(thrift, &prefix, ROUND);
        recorded += ROUND as u64;
        let (entries, _) = table(admin_addr);
        assert!(
            entries <= ROUND as u64 + 1,
            "round {round}: {entries} entries, more than one round's ({ROUND}); \
             {recorded} recorded in all"
        );
        wait_empty(admin_addr, &prefix);
    }
    recorded
}

#[test]
fn ten_thousand_client_restarts_leave_the_table_bounded_on_a_standalone_node() {
    let mut node = Standalone::builder()
        .set("mvcc", "idempotency_window_ms", WINDOW_MS)
        .start();
    let recorded = restarts_leave_the_table_bounded(node.thrift_endpoint(), node.admin_endpoint());
    let (entries, expired) = table(node.admin_endpoint());
    assert_eq!((entries, expired), (0, recorded));

    // The table, its index and its count survive a restart.
    node.restart();
    assert_eq!(table(node.admin_endpoint()).0, 0);
    let mut client = TokenClient::connect(node.thrift_endpoint());
    let v = client.commit(b"after-restart", 1, b"k", b"v");
    assert_eq!(client.commit(b"after-restart", 1, b"k", b"w"), v);
    assert_eq!(table(node.admin_endpoint()).0, 1);
}

#[test]
fn ten_thousand_client_restarts_expire_alike_on_every_replica() {
    let c = ReplicatedCluster::builder()
        .set("mvcc", "idempotency_window_ms", WINDOW_MS)
        .start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let recorded =
        restarts_leave_the_table_bounded(c.thrift_endpoint(leader), c.admin_endpoint(leader));
    // Every replica applied the same expiry commands: each table is empty and each expired
    // exactly the entries the leader did (all three started with the cluster).
    for i in 0..c.node_count() {
        let (entries, expired) = wait_empty(c.admin_endpoint(i), &format!("node {i}"));
        assert_eq!((entries, expired), (0, recorded), "node {i}");
    }
    // The user data the commits wrote (retry-me's second write included) is the same
    // everywhere: converged_digest fails on divergent replicas.
    let nodes: Vec<usize> = (0..c.node_count()).collect();
    c.converged_digest(&nodes, 0, LEADER_TIMEOUT);
}
