//! What the transport refuses or cannot reach: requests for a Raft group the server does not
//! run (`NOT_FOUND` naming it), and a dead peer reported unreachable within the TTL.

use super::*;

#[tokio::test]
async fn requests_for_a_group_not_here_are_not_found_naming_it() {
    // `serve_with` serves its one handler as group 0, for a node it does not know by id.
    let server = Server::start().await;
    let mut raw = pb::peer_client::PeerClient::connect(format!("http://{}", server.addr))
        .await
        .expect("connect");
    let status = raw
        .vote(pb::VoteRequest {
            group_id: 3,
            vote: vec![],
            last_log_id: None,
            leadership_transfer: false,
        })
        .await
        .expect_err("group 3 is not here");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "group 3 is not on this node");

    let status = raw
        .probe(pb::ProbeRequest { group_id: 1 })
        .await
        .expect_err("group 1 is not here");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "group 1 is not on this node");

    let status = raw
        .forward(pb::ForwardRequest {
            group_id: 9,
            command: vec![],
            timeout_ms: 100,
        })
        .await
        .expect_err("group 9 is not here");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "group 9 is not on this node");
    assert!(
        server.mock.calls.lock().is_empty(),
        "group 0's handler answered for another group: {:?}",
        server.mock.calls.lock()
    );

    // Group 0 with a garbled value is refused naming that field instead.
    let status = raw
        .vote(pb::VoteRequest {
            group_id: 0,
            vote: vec![1, 2],
            last_log_id: None,
            leadership_transfer: false,
        })
        .await
        .expect_err("bad vote refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("vote:"),
        "{}",
        status.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_dead_peer_is_unreachable_within_the_ttl() {
    let addr = dead_addr().await;
    let mut factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    let node = NodeAddr {
        client_addr: String::new(),
        peer_addr: addr.clone(),
        admin_addr: String::new(),
    };
    let mut net = factory.new_client(PEER, &node).await;

    let ttl = Duration::from_millis(1500);
    let start = Instant::now();
    let err = RaftNetworkV2::vote(
        &mut net,
        VoteRequest::new(vote(1, 0, false), None),
        RPCOption::new(ttl),
    )
    .await
    .expect_err("nobody listens");
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    assert!(start.elapsed() < ttl, "took {:?}", start.elapsed());

    let err = RaftNetworkV2::append_entries(
        &mut net,
        AppendEntriesRequest {
            vote: vote(1, 0, true),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        },
        RPCOption::new(ttl),
    )
    .await
    .expect_err("nobody listens");
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");

    // The backoff openraft applies after Unreachable: 50 ms doubling to 1 s.
    let backoff: Vec<_> = RaftNetworkV2::backoff(&net)
        .expect("a backoff")
        .take(7)
        .collect();
    let ms: Vec<u128> = backoff.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, vec![50, 100, 200, 400, 800, 1000, 1000]);

    // The follower-side calls: not connected means not proposed, and worth trying again with
    // the next leader.
    let client = factory.peer_client();
    let err = client
        .forward(PEER, &addr, &Command::Noop, Duration::from_secs(1))
        .await
        .expect_err("nobody listens");
    assert!(
        matches!(err, ProposeError::LeaderUnreachable(ref m) if m.contains("not connected")),
        "{err:?}"
    );
    let err = client
        .read_index(PEER, &addr, Duration::from_secs(1), 0, false)
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, ProposeError::LeaderUnreachable(_)), "{err:?}");
    let err = client
        .probe(PEER, &addr, Duration::from_secs(1))
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, ProposeError::Unavailable(_)), "{err:?}");
}
