//! Issue 18, the client side: the optional Thrift TLS listener serves the stock client (over a
//! TLS stream, as a stock Thrift SSL socket does) beside the plaintext one, and refuses
//! clients that speak no TLS, do not trust the node, or (with `client_ca_file`) bring no
//! certificate of that CA; the admin port over HTTPS answers only clients that check it
//! against its CA, and plain HTTP gets nothing; `thrift_auth_token` guards the requests that
//! carry an `auth_token`; each listener binds its own address.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test client_tls`.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use dolmen_admin::blocking::AdminClient;
use dolmen_testkit::TestCa;
use dolmen_tests::kvstore::{
    GetClusterHealthRequest, GetDatabaseStatsRequest, GetNodeInfoRequest,
    TTransactionalKVSyncClient,
};
use dolmen_tests::tls_client::TlsClient;
use dolmen_tests::{connect_buffered, KvExt, Standalone, StandaloneBuilder, Transport};

/// A node whose Thrift TLS listener and admin HTTPS use a certificate of `ca` for 127.0.0.1.
fn tls_node(
    ca: &TestCa,
    dir: &Path,
    configure: impl FnOnce(StandaloneBuilder) -> StandaloneBuilder,
) -> Standalone {
    let files = ca
        .write_leaf(dir, "server", &["localhost", "127.0.0.1"])
        .expect("write the server certificate");
    let builder = Standalone::builder()
        .set("server", "thrift_tls", true)
        .set("server", "thrift_tls_port", 0)
        .set(
            "client_tls",
            "cert_file",
            files.cert_file.display().to_string(),
        )
        .set(
            "client_tls",
            "key_file",
            files.key_file.display().to_string(),
        );
    configure(builder).start()
}

fn client(ca: &TestCa, transport: Transport) -> TlsClient {
    TlsClient {
        ca_pem: ca.ca_pem(),
        server_name: "127.0.0.1".to_owned(),
        identity: None,
        transport,
    }
}

fn tls_addr(node: &Standalone) -> SocketAddr {
    node.thrift_tls_endpoint()
        .expect("the readiness line names the Thrift TLS listener")
}

#[test]
fn the_tls_listener_serves_the_stock_client_beside_the_plaintext_one() {
    let ca = TestCa::new("client ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = tls_node(&ca, dir.path(), |b| b);
    for transport in [Transport::Buffered, Transport::Framed] {
        let mut kv = client(&ca, transport)
            .connect(tls_addr(&node))
            .expect("a client trusting the CA completes the handshake");
        let key = format!("tls/{transport:?}");
        kv.must_set(key.as_bytes(), b"over tls");
        assert!(kv.read_version() > 0);
        // The plaintext listener serves the same data, unchanged.
        let mut plain = connect_buffered(node.thrift_endpoint());
        let got = plain.get_value(key.as_bytes());
        assert!(got.found && got.value == b"over tls", "{got:?}");
    }
    // Many calls and large values through the pipe behind the listener.
    let mut kv = client(&ca, Transport::Framed)
        .connect(tls_addr(&node))
        .unwrap();
    let big = vec![7u8; 90_000];
    for i in 0..50u32 {
        kv.must_set(&[b"tls/big/".as_slice(), &i.to_be_bytes()].concat(), &big);
    }
    let got = kv.get_value(&[b"tls/big/".as_slice(), &49u32.to_be_bytes()].concat());
    assert!(got.found && got.value == big);
}

#[test]
fn the_tls_listener_refuses_plaintext_and_clients_that_do_not_trust_it() {
    let ca = TestCa::new("client ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = tls_node(&ca, dir.path(), |b| b);
    // A plaintext Thrift client on the TLS port gets no answer: an error, not a hang.
    let mut plain = connect_buffered(tls_addr(&node));
    assert!(plain.get_read_version(Default::default()).is_err());
    // A client trusting another CA refuses the node's certificate.
    let stranger = TestCa::new("another ca").unwrap();
    let refused = client(&stranger, Transport::Buffered).connect(tls_addr(&node));
    assert!(refused.is_err(), "a certificate of another CA was accepted");
    // A client checking for another name refuses it too.
    let mut wrong_name = client(&ca, Transport::Buffered);
    wrong_name.server_name = "db.example.com".to_owned();
    assert!(wrong_name.connect(tls_addr(&node)).is_err());
    // The listener still serves after all that.
    let mut kv = client(&ca, Transport::Buffered)
        .connect(tls_addr(&node))
        .unwrap();
    assert!(kv.read_version() > 0);
}

/// How many files `pid` holds open.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}

#[test]
fn silent_tls_clients_are_closed_after_the_idle_timeout() {
    const CLIENTS: usize = 40;
    let ca = TestCa::new("client ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A silent connection is closed after the idle timeout plus the read timeout: 2 s.
    let node = tls_node(&ca, dir.path(), |b| {
        b.set("server", "idle_timeout_ms", 1000)
            .set("server", "read_timeout_ms", 1000)
    });
    let baseline = open_files(node.pid());
    // Handshakes done, then silence: each holds a socket and a local pipe in the node.
    let silent: Vec<_> = (0..CLIENTS)
        .map(|_| {
            client(&ca, Transport::Buffered)
                .connect(tls_addr(&node))
                .unwrap()
        })
        .collect();
    let held = open_files(node.pid());
    assert!(
        held >= baseline + CLIENTS,
        "{baseline} -> {held} open files"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut now_open = held;
    while now_open > baseline + 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        now_open = open_files(node.pid());
    }
    println!("{CLIENTS} silent TLS clients: node files {baseline} -> {held} -> {now_open}");
    assert!(
        now_open <= baseline + 2,
        "silent TLS clients still hold the node's files after the idle timeout: {baseline} -> \
         {held} -> {now_open}"
    );
    drop(silent);
}

#[test]
fn with_a_client_ca_only_clients_with_its_certificates_are_served() {
    let ca = TestCa::new("client ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client_ca = TestCa::new("client certificates").unwrap();
    let client_ca_file = dir.path().join("clients.pem");
    std::fs::write(&client_ca_file, client_ca.ca_pem()).unwrap();
    let node = tls_node(&ca, dir.path(), |b| {
        b.set(
            "client_tls",
            "client_ca_file",
            client_ca_file.display().to_string(),
        )
    });
    let call = |identity: Option<(String, String)>| {
        let mut c = client(&ca, Transport::Buffered);
        c.identity = identity;
        c.connect(tls_addr(&node)).and_then(|mut kv| {
            kv.get_read_version(Default::default())
                .map_err(std::io::Error::other)
        })
    };
    let without = call(None);
    assert!(
        without.is_err(),
        "served without a client certificate: {without:?}"
    );
    let foreign = TestCa::new("foreign")
        .unwrap()
        .leaf_pem("intruder", &["intruder"])
        .unwrap();
    let with_foreign = call(Some(foreign));
    assert!(
        with_foreign.is_err(),
        "served a certificate of another CA: {with_foreign:?}"
    );
    let mine = client_ca.leaf_pem("app", &["app"]).unwrap();
    let answer = call(Some(mine)).expect("a client certificate of the client CA is served");
    assert!(answer.success, "{answer:?}");
}

#[test]
fn the_admin_port_over_https_answers_only_clients_that_check_it() {
    let ca = TestCa::new("client ca").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = tls_node(&ca, dir.path(), |b| b.set("server", "admin_tls", true));
    let admin = node.admin_endpoint();
    let https = AdminClient::new(admin)
        .with_ca(ca.ca_pem().as_bytes())
        .unwrap();
    https.health().expect("HTTPS with the CA");
    let status = https.status().expect("/status over HTTPS");
    assert_eq!(status.node_id, node.node_id());
    assert!(
        AdminClient::new(admin).health().is_err(),
        "plain HTTP was answered on an HTTPS port"
    );
    let stranger = TestCa::new("another ca").unwrap();
    let wrong = AdminClient::new(admin)
        .with_ca(stranger.ca_pem().as_bytes())
        .unwrap();
    assert!(
        wrong.health().is_err(),
        "a client trusting another CA reached the node"
    );
    // The CLI talks HTTPS with --ca-file.
    let ca_file = dir.path().join("client-ca.pem");
    let out = std::process::Command::new(dolmen_tests::binary::dolmen_bin())
        .args(["cluster", "top", "--once", "--endpoints"])
        .arg(admin.to_string())
        .arg("--ca-file")
        .arg(&ca_file)
        .env_remove("DOLMEN_ADMIN_TOKEN")
        .output()
        .expect("run dolmen cluster top");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_auth_token_guards_the_requests_that_carry_it() {
    const TOKEN: &str = "thrift-secret-0123456789";
    let node = Standalone::builder()
        .set("server", "thrift_auth_token", TOKEN)
        .start();
    let mut kv = connect_buffered(node.thrift_endpoint());
    let token = |t: &str| Some(t.to_owned());
    for given in [None, token("wrong-token-wrong-token")] {
        let health = kv
            .get_cluster_health(GetClusterHealthRequest {
                auth_token: given.clone(),
            })
            .unwrap();
        assert!(
            !health.success && health.cluster_health.is_none(),
            "{health:?}"
        );
        let error = health.error.unwrap_or_default();
        assert!(error.contains("auth_token"), "{error}");
        let stats = kv
            .get_database_stats(GetDatabaseStatsRequest {
                auth_token: given.clone(),
                include_detailed_stats: None,
            })
            .unwrap();
        assert!(
            !stats.success && stats.database_stats.is_none(),
            "{stats:?}"
        );
        let info = kv
            .get_node_info(GetNodeInfoRequest {
                auth_token: given,
                node_id: None,
            })
            .unwrap();
        assert!(!info.success && info.node_info.is_none(), "{info:?}");
    }
    let health = kv
        .get_cluster_health(GetClusterHealthRequest {
            auth_token: token(TOKEN),
        })
        .unwrap();
    assert!(health.success, "{health:?}");
    let stats = kv
        .get_database_stats(GetDatabaseStatsRequest {
            auth_token: token(TOKEN),
            include_detailed_stats: None,
        })
        .unwrap();
    assert!(stats.success, "{stats:?}");
    // Requests without the field are not affected (stock clients keep working).
    kv.must_set(b"auth/plain", b"v");
    // A node without the setting answers without a token, as before.
    let open = Standalone::start();
    let mut kv = connect_buffered(open.thrift_endpoint());
    let health = kv
        .get_cluster_health(GetClusterHealthRequest { auth_token: None })
        .unwrap();
    assert!(health.success, "{health:?}");
}

#[test]
fn each_listener_binds_its_own_address() {
    let node = Standalone::builder()
        .set("server", "thrift_host", "127.0.0.2")
        .set("server", "admin_host", "127.0.0.3")
        .start();
    assert_eq!(node.thrift_endpoint().ip().to_string(), "127.0.0.2");
    assert_eq!(node.admin_endpoint().ip().to_string(), "127.0.0.3");
    let mut kv = connect_buffered(node.thrift_endpoint());
    kv.must_set(b"bind/k", b"v");
    AdminClient::new(node.admin_endpoint()).health().unwrap();
    // Nothing listens on the other loopback addresses at those ports.
    let elsewhere = |addr: SocketAddr| SocketAddr::from(([127, 0, 0, 1], addr.port()));
    assert!(TcpStream::connect(elsewhere(node.thrift_endpoint())).is_err());
    assert!(TcpStream::connect(elsewhere(node.admin_endpoint())).is_err());
}

#[test]
fn the_peer_port_binds_peer_host_only() {
    let ports = dolmen_testkit::pick_ports(2).expect("two free ports");
    let peer = SocketAddr::from(([127, 0, 0, 6], ports[1]));
    let node = Standalone::builder()
        .set("deployment", "mode", "replicated")
        .set(
            "deployment",
            "replica_endpoints",
            vec![format!("127.0.0.1:{}", ports[0])],
        )
        .set("consensus", "endpoints", vec![peer.to_string()])
        .set("server", "port", i64::from(ports[0]))
        .set("server", "peer_host", "127.0.0.6")
        .start();
    // A one-member cluster elects itself and commits.
    let mut kv = connect_buffered(node.thrift_endpoint());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if kv.set_in(b"peer-bind/k", b"v", None).success {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leader within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    TcpStream::connect(peer).expect("the peer port listens on peer_host");
    let elsewhere = SocketAddr::from(([127, 0, 0, 1], ports[1]));
    assert!(
        TcpStream::connect(elsewhere).is_err(),
        "the peer port also listens on server.host"
    );
}

#[test]
fn a_cluster_with_https_admin_ports_forms_and_a_node_joins_over_https() {
    use dolmen_tests::replicated::LEADER_TIMEOUT;
    use dolmen_tests::ReplicatedCluster;
    let mut c = ReplicatedCluster::builder()
        .nodes(4)
        .initial(3)
        .joining()
        .admin_tls()
        .set("server", "admin_token", "join-over-https-0123456789")
        .start();
    let leader = c.wait_for_leader(LEADER_TIMEOUT);
    let v = c.write_until_acked(leader, b"https/before", b"1");
    // Node 3 calls the members' add-node over HTTPS, checking them against client_tls.ca_file.
    c.start(3);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let voters = c
            .status(leader)
            .raft
            .map(|r| r.voter_ids())
            .unwrap_or_default();
        if voters == [0, 1, 2, 3] {
            break;
        }
        if std::time::Instant::now() > deadline {
            c.fail(&format!(
                "node 3 did not join over HTTPS: voters {voters:?}"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    c.wait_ready(3, LEADER_TIMEOUT);
    c.wait_applied_at_least(3, v);
    // Plain HTTP gets nothing from any member.
    for i in 0..4 {
        assert!(AdminClient::new(c.admin_endpoint(i)).health().is_err());
    }
}
