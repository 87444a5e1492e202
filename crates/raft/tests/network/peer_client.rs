//! [`PeerClient`](dolmen_raft::network::PeerClient), the follower → leader calls: `Forward`,
//! `ReadIndex` and `Probe` answers and errors, the fault hook on every outgoing call, and the
//! channel cache shared per address.

use super::*;

#[tokio::test]
async fn forward_answers_and_errors_are_mapped() {
    let server = Server::start().await;
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    let client = factory.peer_client();
    let t = Duration::from_secs(2);

    let applied = client
        .forward(
            PEER,
            &server.addr,
            &Command::Commit(Transaction::default()),
            t,
        )
        .await
        .expect("applied");
    assert_eq!(
        applied,
        Applied {
            version: 42,
            outcome: Outcome::Committed { version: 42 }
        }
    );

    let err = client
        .forward(PEER, &server.addr, &Command::Compact { horizon: 1 }, t)
        .await
        .expect_err("not leader");
    assert_eq!(
        err,
        ProposeError::NotLeader {
            leader_id: Some(2),
            leader_addr: Some("127.0.0.1:7102".to_string())
        }
    );

    let err = client
        .forward(PEER, &server.addr, &Command::Compact { horizon: 2 }, t)
        .await
        .expect_err("not leader");
    assert_eq!(
        err,
        ProposeError::NotLeader {
            leader_id: None,
            leader_addr: None
        }
    );

    let err = client
        .forward(PEER, &server.addr, &Command::Compact { horizon: 3 }, t)
        .await
        .expect_err("unavailable");
    assert_eq!(
        err,
        ProposeError::Unavailable("no quorum (mock)".to_string())
    );

    let err = client
        .forward(PEER, &server.addr, &Command::Compact { horizon: 4 }, t)
        .await
        .expect_err("timeout");
    assert!(matches!(err, ProposeError::Timeout(_)), "{err:?}");

    // The leader never answers: the caller's deadline gives Timeout (outcome unknown).
    let short = Duration::from_millis(300);
    let start = Instant::now();
    let err = client
        .forward(PEER, &server.addr, &Command::Compact { horizon: 5 }, short)
        .await
        .expect_err("timeout");
    assert!(matches!(err, ProposeError::Timeout(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    server.stop().await;
}

/// Many writes forwarded at once share the one stream to the leader; each gets its own answer,
/// by id, although the leader finishes them out of order.
#[tokio::test]
async fn concurrent_forwards_are_answered_by_id() {
    let server = Server::start().await;
    let client = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default()).peer_client();
    let t = Duration::from_secs(5);
    let calls = (1000..1300u64).map(|horizon| {
        let client = client.clone();
        let addr = server.addr.clone();
        async move {
            let applied = client
                .forward(PEER, &addr, &Command::Compact { horizon }, t)
                .await
                .expect("applied");
            (horizon, applied.version)
        }
    });
    let answers = futures::future::join_all(calls).await;
    assert_eq!(answers.len(), 300);
    for (horizon, version) in answers {
        assert_eq!(version, horizon, "the answer of write {horizon}");
    }
    server.stop().await;
}

/// A stream that breaks with writes in flight leaves their outcome unknown (`Timeout`, before
/// the callers' own deadlines), and the next write opens a new stream to the restarted leader.
#[tokio::test]
async fn a_broken_forward_stream_is_unknown_then_reopened() {
    let server = Server::start().await;
    let addr = server.addr.clone();
    let client = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default()).peer_client();
    let long = Duration::from_secs(20);
    // Opens the stream.
    client
        .forward(PEER, &addr, &Command::Compact { horizon: 1001 }, long)
        .await
        .expect("applied");
    // Never answered by the mock: in flight when the server stops.
    let in_flight = {
        let client = client.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let result = client
                .forward(PEER, &addr, &Command::Compact { horizon: 5 }, long)
                .await;
            (result, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await;
    let (result, waited) = in_flight.await.expect("task");
    assert!(
        matches!(result, Err(ProposeError::Timeout(_))),
        "a write in flight on a broken stream is unknown: {result:?}"
    );
    assert!(
        waited < long,
        "answered when the stream broke, not at the deadline ({waited:?})"
    );

    let restarted = Server::start_on(&addr, ServeOptions::default()).await;
    let mut applied = None;
    for _ in 0..50 {
        match client
            .forward(PEER, &addr, &Command::Compact { horizon: 1002 }, long)
            .await
        {
            Ok(a) => {
                applied = Some(a);
                break;
            }
            // Not proposed: the channel is still reconnecting.
            Err(ProposeError::LeaderUnreachable(_) | ProposeError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(applied.map(|a| a.version), Some(1002));
    restarted.stop().await;
}

#[tokio::test]
async fn read_index_and_probe_answers_and_errors() {
    let server = Server::start().await;
    let client = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default()).peer_client();
    let t = Duration::from_secs(2);

    *server.mock.read_mode.lock() = ReadMode::Index(1234);
    assert_eq!(
        client.read_index(PEER, &server.addr, t, 0, false).await,
        Ok(1234)
    );
    // The covering version and the asker's lease level reach the leader's handler.
    assert_eq!(
        client.read_index(PEER, &server.addr, t, 77, true).await,
        Ok(1234)
    );
    assert_eq!(*server.mock.read_asks.lock(), vec![(0, false), (77, true)]);

    let hint = ProposeError::NotLeader {
        leader_id: Some(2),
        leader_addr: Some("127.0.0.1:7102".to_string()),
    };
    *server.mock.read_mode.lock() = ReadMode::Fail(hint.clone());
    assert_eq!(
        client.read_index(PEER, &server.addr, t, 0, false).await,
        Err(hint)
    );

    let unavailable = ProposeError::Unavailable("read index: no quorum".to_string());
    *server.mock.read_mode.lock() = ReadMode::Fail(unavailable.clone());
    assert_eq!(
        client.read_index(PEER, &server.addr, t, 0, false).await,
        Err(unavailable)
    );

    *server.mock.read_mode.lock() = ReadMode::Fail(ProposeError::Timeout(t));
    let err = client
        .read_index(PEER, &server.addr, t, 0, false)
        .await
        .expect_err("timeout");
    assert!(matches!(err, ProposeError::Timeout(_)), "{err:?}");

    *server.mock.read_mode.lock() = ReadMode::Hang;
    let start = Instant::now();
    let err = client
        .read_index(PEER, &server.addr, Duration::from_millis(200), 0, false)
        .await
        .expect_err("timeout");
    assert!(matches!(err, ProposeError::Timeout(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );

    let info = client
        .probe(PEER, &server.addr, t)
        .await
        .expect("probe answers");
    assert_eq!(
        info,
        ProbeInfo {
            node_id: PEER,
            initialized: true,
            fingerprint: "cf=default,meta".to_string(),
            status_json: r#"{"role":"leader"}"#.to_string(),
        }
    );
    server.stop().await;
}

/// Drops every call named `drop_rpc` and delays the rest.
#[derive(Debug)]
struct Rules {
    drop_rpc: &'static str,
    delay: Duration,
    seen: Mutex<Vec<(NodeId, NodeId, &'static str)>>,
}

impl PeerFaults for Rules {
    fn check(&self, from: NodeId, to: NodeId, rpc: &'static str) -> FaultAction {
        self.seen.lock().push((from, to, rpc));
        if rpc == self.drop_rpc {
            FaultAction::Drop
        } else {
            FaultAction::Delay(self.delay)
        }
    }
}

#[tokio::test]
async fn the_fault_hook_sees_every_outgoing_call() {
    let server = Server::start().await;
    let rules = Arc::new(Rules {
        drop_rpc: "Vote",
        delay: Duration::from_millis(150),
        seen: Mutex::new(Vec::new()),
    });
    let mut factory =
        GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default()).with_faults(rules.clone());
    let mut net = factory.new_client(PEER, &server.node()).await;

    let ttl = Duration::from_millis(400);
    let err = RaftNetworkV2::vote(
        &mut net,
        VoteRequest::new(vote(1, 0, false), None),
        RPCOption::new(ttl),
    )
    .await
    .expect_err("dropped");
    assert!(matches!(err, RPCError::Timeout(_)), "{err:?}");

    let start = Instant::now();
    RaftNetworkV2::pre_vote(
        &mut net,
        VoteRequest::new(vote(1, 0, false), None),
        RPCOption::new(TTL),
    )
    .await
    .expect("delayed, then delivered");
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "took {:?}",
        start.elapsed()
    );

    let applied = factory
        .peer_client()
        .forward(PEER, &server.addr, &Command::Noop, TTL)
        .await
        .expect("delayed forward applies");
    assert_eq!(applied.version, 7);

    let seen = rules.seen.lock().clone();
    assert_eq!(
        seen,
        vec![
            (THIS_NODE, PEER, "Vote"),
            (THIS_NODE, PEER, "PreVote"),
            (THIS_NODE, PEER, "Forward")
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn channels_are_shared_per_address() {
    let server = Server::start().await;
    let mut factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    // Many networks and clients to one address work side by side on the cached channel.
    let mut nets = Vec::new();
    for _ in 0..4 {
        nets.push(factory.new_client(PEER, &server.node()).await);
    }
    let client = factory.peer_client();
    let votes = nets.iter_mut().map(|net| {
        RaftNetworkV2::vote(
            net,
            VoteRequest::new(vote(2, 0, false), None),
            RPCOption::new(TTL),
        )
    });
    for resp in futures::future::join_all(votes).await {
        assert!(resp.expect("vote").vote_granted);
    }
    assert_eq!(
        client.read_index(PEER, &server.addr, TTL, 0, false).await,
        Ok(0)
    );
    server.stop().await;
}
