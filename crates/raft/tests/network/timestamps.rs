//! The oracle's `Timestamps` stream end to end (docs/sharding.md §3.3): the gateway's
//! [`OracleClient`](dolmen_raft::network::OracleClient) (from a `PeerClient`) against the real
//! server with the mock oracle: batched grants split among concurrent callers, refusals, a
//! group not on the node, and a stream that breaks and is reopened.

use super::*;

/// Callers asking one commit version at a time, and how many times each asks.
const CALLERS: usize = 32;
const CALLS_EACH: usize = 25;

#[tokio::test]
async fn concurrent_callers_get_unique_increasing_versions_in_shared_batches() {
    let server = Server::start().await;
    // Each grant takes a while, so callers queue behind the two batches in flight.
    *server.mock.oracle_delay.lock() = Duration::from_millis(5);
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    let oracle = factory.peer_client().oracle().clone();
    let mut callers = Vec::new();
    for i in 0..CALLERS {
        let (oracle, addr) = (oracle.clone(), server.addr.clone());
        callers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..CALLS_EACH {
                let want_read = i % 4 == 0;
                let grant = oracle
                    .versions(PEER, &addr, 1, want_read, TTL)
                    .await
                    .expect("granted");
                assert_eq!(grant.count, 1);
                if let Some(read) = grant.read_version {
                    assert!(read < grant.first, "{grant:?}");
                }
                assert_eq!(grant.read_version.is_some(), want_read);
                got.push(grant.first);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for caller in callers {
        let got = caller.await.expect("caller did not panic");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "per caller: {got:?}");
        all.extend(got);
    }
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), total, "every version handed out once");
    let stats = oracle.stats();
    assert_eq!(stats.callers, total as u64);
    assert_eq!(stats.versions, total as u64);
    assert_eq!(stats.streams, 1, "one stream for every caller");
    assert!(
        stats.batches < stats.callers,
        "callers share batches: {stats:?}"
    );
    let grants = server
        .mock
        .calls
        .lock()
        .iter()
        .filter(|c| **c == "timestamps")
        .count();
    assert_eq!(grants as u64, stats.batches, "one oracle call per batch");
    server.stop().await;
}

#[tokio::test]
async fn refusals_reach_the_caller_with_their_meaning() {
    let server = Server::start().await;
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    let client = factory.peer_client();
    let oracle = client.oracle();
    let err = oracle
        .versions(PEER, &server.addr, ORACLE_NOT_LEADER, false, TTL)
        .await
        .expect_err("not the oracle");
    assert_eq!(
        err,
        ProposeError::NotLeader {
            leader_id: Some(2),
            leader_addr: Some("127.0.0.1:7102".to_string())
        }
    );
    let err = oracle
        .versions(PEER, &server.addr, ORACLE_UNAVAILABLE, true, TTL)
        .await
        .expect_err("unavailable");
    assert_eq!(
        err,
        ProposeError::Unavailable("no quorum (mock)".to_string())
    );
    // The same stream goes on serving after refusals.
    let grant = oracle
        .versions(PEER, &server.addr, 3, true, TTL)
        .await
        .expect("granted");
    assert_eq!(grant.count, 3);
    assert!(grant.read_version.is_some_and(|r| r < grant.first));
    assert_eq!(oracle.stats().streams, 1);

    // Nobody listening: not connected, nothing drawn.
    let dead = dead_addr().await;
    let err = oracle
        .versions(PEER, &dead, 1, false, TTL)
        .await
        .expect_err("nobody there");
    assert!(matches!(err, ProposeError::LeaderUnreachable(_)), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_node_without_the_oracle_group_answers_unavailable_naming_it() {
    let server = Server::start_groups(5, &[7]).await;
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    let err = factory
        .peer_client()
        .oracle()
        .versions(PEER, &server.addr, 1, false, TTL)
        .await
        .expect_err("group 0 is not there");
    let ProposeError::Unavailable(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("group 0 is not on node 5"), "{message}");
    assert!(
        server.mocks[&7].calls.lock().is_empty(),
        "no other group answers"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_broken_stream_fails_its_callers_and_the_next_call_reopens_it() {
    let server = Server::start().await;
    let addr = server.addr.clone();
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    let oracle = factory.peer_client().oracle().clone();
    let hung = {
        let (oracle, addr) = (oracle.clone(), addr.clone());
        tokio::spawn(async move {
            oracle
                .versions(PEER, &addr, ORACLE_HANG, false, TTL * 5)
                .await
        })
    };
    // Wait (bounded) until the request reached the oracle, then stop the server under it.
    for _ in 0..200 {
        if server.mock.calls.lock().contains(&"timestamps") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(server.mock.calls.lock().contains(&"timestamps"));
    server.stop().await;
    let err = hung
        .await
        .expect("caller did not panic")
        .expect_err("the stream broke");
    let ProposeError::Unavailable(message) = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("burned") && message.contains("nothing was committed"),
        "{message}"
    );

    let restarted = Server::start_on(&addr, ServeOptions::default()).await;
    let grant = oracle
        .versions(PEER, &addr, 2, false, TTL)
        .await
        .expect("the next call reopens the stream");
    assert_eq!(grant.count, 2);
    assert_eq!(oracle.stats().streams, 2);
    restarted.stop().await;
}
