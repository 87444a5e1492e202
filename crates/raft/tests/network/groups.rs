//! One peer server for several Raft groups (docs/sharding.md §8.1, docs/replication.md
//! invariant 16): each group's requests reach only its own handler, a group the node does not
//! run is `NOT_FOUND` naming it (`Unreachable` / `Unavailable` on the client side), groups come
//! and go while the server runs, and every group's calls to a peer share one connection.

use super::append::{all, append_at};
use super::*;

/// The second group the servers here run, beside group 0.
const GROUP: u64 = 7;

/// The mock calls [`call_everything`] makes, in order.
const EVERY_CALL: [&str; 10] = [
    "vote",
    "pre_vote",
    "append_entries",
    "stream_append",
    "transfer_leader",
    "install_full_snapshot",
    "forward",
    "read_index",
    "probe",
    "applied_report",
];

fn opt() -> RPCOption {
    RPCOption::new(TTL)
}

/// A snapshot of `group` (its index is the group's number) from the file at `path`.
fn snapshot_of(group: u64, path: &std::path::Path) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            last_log_id: Some(log_id(2, 0, group)),
            last_membership: StoredMembership::new(None, membership()),
        },
        snapshot: SnapshotFile {
            path: path.to_path_buf(),
        },
    }
}

/// Makes every call of `factory`'s group to `server` once, through the real client side, and
/// checks each is answered.
async fn call_everything(
    factory: &GrpcNetworkFactory,
    server: &Server,
    snapshot: &std::path::Path,
) {
    let group = factory.group();
    let mut net = factory.network(PEER, &server.node());
    let ask = VoteRequest::new(vote(2, 0, false), None);
    let resp = RaftNetworkV2::vote(&mut net, ask.clone(), opt())
        .await
        .expect("vote");
    assert!(resp.vote_granted);
    RaftNetworkV2::pre_vote(&mut net, ask, opt())
        .await
        .expect("pre-vote");
    let resp = RaftNetworkV2::append_entries(&mut net, append_at(1, 1), opt())
        .await
        .expect("append");
    assert_eq!(
        resp,
        AppendEntriesResponse::PartialSuccess(Some(log_id(3, 0, 2)))
    );
    let input = stream::iter(vec![append_at(2, 1)]);
    let answers = RaftNetworkV2::stream_append(&mut net, input, opt())
        .await
        .expect("the append stream opens");
    let answers: Vec<_> = all(answers)
        .await
        .into_iter()
        .map(|a| a.expect("answered"))
        .collect();
    assert_eq!(answers, vec![Ok(Some(log_id(3, 0, 3)))]);
    let transfer = TransferLeaderRequest::new(vote(2, 0, true), PEER, None);
    let verdict = RaftNetworkV2::transfer_leader(&mut net, transfer, opt())
        .await
        .expect("transfer leader");
    assert!(verdict.is_err(), "the mock refuses: {verdict:?}");
    RaftNetworkV2::full_snapshot(
        &mut net,
        vote(2, 0, true),
        snapshot_of(group, snapshot),
        std::future::pending::<ReplicationClosed>(),
        opt(),
    )
    .await
    .expect("snapshot");

    let client = factory.peer_client();
    assert_eq!(client.group(), group);
    client
        .forward(PEER, &server.addr, &Command::Noop, TTL)
        .await
        .expect("forward");
    assert_eq!(
        client.read_index(PEER, &server.addr, TTL, 0, false).await,
        Ok(100 + group),
        "the read index of group {group}'s handler"
    );
    client.probe(PEER, &server.addr, TTL).await.expect("probe");
    client
        .applied_stream(PEER, &server.addr, stream::iter([40 + group]).boxed())
        .await
        .expect("applied reports");
}

#[tokio::test]
async fn each_groups_requests_reach_only_its_own_handler() {
    let server = Server::start_groups(PEER, &[0, GROUP]).await;
    for (group, mock) in &server.mocks {
        *mock.read_mode.lock() = ReadMode::Index(100 + group);
    }
    let source = tempfile::tempdir().expect("temp dir");
    let file = source.path().join("snapshot.bin");
    std::fs::write(&file, b"a small snapshot").expect("write the snapshot file");
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    assert_eq!(factory.group(), 0, "a new factory speaks for group 0");

    call_everything(&factory, &server, &file).await;
    assert_eq!(*server.mocks[&0].calls.lock(), EVERY_CALL);
    assert!(
        server.mocks[&GROUP].calls.lock().is_empty(),
        "group {GROUP} answered for group 0: {:?}",
        server.mocks[&GROUP].calls.lock()
    );

    call_everything(&factory.for_group(GROUP), &server, &file).await;
    assert_eq!(*server.mocks[&GROUP].calls.lock(), EVERY_CALL);
    assert_eq!(
        *server.mocks[&0].calls.lock(),
        EVERY_CALL,
        "group 0 answered for group {GROUP}"
    );

    // What each handler received is its own group's: the report, and the snapshot, written
    // to the group's own directory.
    for (group, mock) in &server.mocks {
        assert_eq!(*mock.reports.lock(), vec![(THIS_NODE, 40 + group)]);
        let snapshots = mock.snapshots.lock();
        assert_eq!(snapshots.len(), 1, "group {group}");
        let (_, meta, path, bytes) = &snapshots[0];
        assert_eq!(meta.last_log_id, Some(log_id(2, 0, *group)));
        let dir = server.dir.path().join(format!("g{group}"));
        assert!(path.starts_with(&dir), "{}", path.display());
        assert_eq!(bytes.as_slice(), b"a small snapshot");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_group_not_here_is_not_found_naming_it_and_mapped_on_the_client() {
    let server = Server::start_groups(PEER, &[0, GROUP]).await;
    let not_here = format!("group 9 is not on node {PEER}");

    // On the wire: NOT_FOUND naming the group, for every RPC.
    let mut raw = pb::peer_client::PeerClient::connect(format!("http://{}", server.addr))
        .await
        .expect("connect");
    let is_not_here = |status: tonic::Status| {
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
        assert_eq!(status.message(), not_here);
    };
    is_not_here(
        raw.vote(pb::VoteRequest {
            group_id: 9,
            vote: vec![],
            last_log_id: None,
            leadership_transfer: false,
        })
        .await
        .expect_err("vote"),
    );
    is_not_here(
        raw.forward(pb::ForwardRequest {
            group_id: 9,
            command: vec![],
            timeout_ms: 100,
        })
        .await
        .expect_err("unary forward"),
    );
    is_not_here(
        raw.read_index(pb::ReadIndexRequest {
            group_id: 9,
            timeout_ms: 100,
            covering_version: 0,
            lease: false,
        })
        .await
        .expect_err("read index"),
    );
    let meta = snapshot_of(9, std::path::Path::new("unused")).meta;
    let header = dolmen_raft::network::wire::snapshot_header_to_pb(9, &vote(1, 0, true), &meta, 10)
        .expect("header encodes");
    let chunks = vec![pb::SnapshotChunk {
        chunk: Some(pb::snapshot_chunk::Chunk::Header(header)),
    }];
    is_not_here(
        raw.install_snapshot(tokio_stream::iter(chunks))
            .await
            .expect_err("snapshot"),
    );
    let append =
        dolmen_raft::network::wire::append_request_to_pb(9, &append_at(1, 1)).expect("encode");
    let answers = raw
        .append_stream(stream::iter(vec![append]))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut answers = all(answers).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    is_not_here(answers.remove(0).expect_err("append stream"));
    let reports = vec![pb::AppliedReport {
        group_id: 9,
        from: THIS_NODE,
        applied: 1,
    }];
    is_not_here(
        raw.applied_stream(tokio_stream::iter(reports))
            .await
            .expect_err("applied stream"),
    );

    // The client side: Raft's calls are `Unreachable` (openraft backs off), naming the group.
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default()).for_group(9);
    let mut net = factory.network(PEER, &server.node());
    let unreachable = |err: &RPCError<DolmenRaft>| match err {
        RPCError::Unreachable(u) => assert!(u.to_string().contains(&not_here), "{u}"),
        other => panic!("expected Unreachable, got {other:?}"),
    };
    let ask = VoteRequest::new(vote(2, 0, false), None);
    unreachable(
        &RaftNetworkV2::vote(&mut net, ask, opt())
            .await
            .expect_err("vote"),
    );
    unreachable(
        &RaftNetworkV2::append_entries(&mut net, append_at(1, 1), opt())
            .await
            .expect_err("append"),
    );
    let transfer = TransferLeaderRequest::new(vote(2, 0, true), PEER, None);
    unreachable(
        &RaftNetworkV2::transfer_leader(&mut net, transfer, opt())
            .await
            .expect_err("transfer"),
    );
    let source = tempfile::tempdir().expect("temp dir");
    let file = source.path().join("snapshot.bin");
    std::fs::write(&file, b"0123456789").expect("write the snapshot file");
    let err = RaftNetworkV2::full_snapshot(
        &mut net,
        vote(2, 0, true),
        snapshot_of(9, &file),
        std::future::pending::<ReplicationClosed>(),
        opt(),
    )
    .await
    .expect_err("snapshot");
    assert!(
        matches!(&err, StreamingError::Unreachable(u) if u.to_string().contains(&not_here)),
        "{err:?}"
    );
    {
        let input = stream::iter(vec![append_at(1, 1)]);
        let answers = RaftNetworkV2::stream_append(&mut net, input, opt())
            .await
            .expect("the stream opens");
        let answers = all(answers).await;
        assert_eq!(answers.len(), 1, "{answers:?}");
        unreachable(answers[0].as_ref().expect_err("append stream"));
    }

    // The follower's calls are `Unavailable`: nothing was proposed.
    let client = factory.peer_client();
    let unavailable = |err: ProposeError| match err {
        ProposeError::Unavailable(m) => assert!(m.contains(&not_here), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    };
    unavailable(
        client
            .forward(PEER, &server.addr, &Command::Noop, TTL)
            .await
            .expect_err("forward"),
    );
    unavailable(
        client
            .read_index(PEER, &server.addr, TTL, 0, false)
            .await
            .expect_err("read index"),
    );
    unavailable(
        client
            .probe(PEER, &server.addr, TTL)
            .await
            .expect_err("probe"),
    );
    unavailable(
        client
            .applied_stream(PEER, &server.addr, stream::iter([1u64]).boxed())
            .await
            .expect_err("applied stream"),
    );

    for (group, mock) in &server.mocks {
        assert!(
            mock.calls.lock().is_empty(),
            "group {group} answered for group 9: {:?}",
            mock.calls.lock()
        );
    }
    let files: Vec<_> = [0, GROUP]
        .iter()
        .flat_map(|g| std::fs::read_dir(server.dir.path().join(format!("g{g}"))).expect("dir"))
        .collect();
    assert!(files.is_empty(), "a snapshot file was created: {files:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_group_removed_while_serving_is_not_found_until_added_back() {
    let server = Server::start_groups(PEER, &[0, GROUP]).await;
    let router = server.router.clone().expect("a router");
    let not_here = format!("group {GROUP} is not on node {PEER}");
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    let group = factory.for_group(GROUP);
    let mut net = group.network(PEER, &server.node());
    let client = group.peer_client();

    // An append stream of the group, open across its removal: its next request ends it.
    {
        let (requests, input) = futures::channel::mpsc::unbounded();
        requests
            .unbounded_send(append_at(1, 1))
            .expect("queue a request");
        let mut answers = RaftNetworkV2::stream_append(&mut net, input, opt())
            .await
            .expect("the stream opens");
        let first = tokio::time::timeout(TTL, answers.next())
            .await
            .expect("answered within the TTL");
        assert!(
            matches!(first, Some(Ok(Ok(Some(id)))) if id == log_id(3, 0, 2)),
            "{first:?}"
        );

        assert!(router.remove(GROUP), "the group was served");
        assert_eq!(router.groups(), vec![0]);
        requests
            .unbounded_send(append_at(2, 1))
            .expect("queue a request");
        let next = tokio::time::timeout(TTL, answers.next())
            .await
            .expect("answered within the TTL");
        assert!(
            matches!(&next, Some(Err(RPCError::Unreachable(u))) if u.to_string().contains(&not_here)),
            "{next:?}"
        );
    }
    assert_eq!(
        server.mocks[&GROUP].streamed.lock().len(),
        1,
        "the request after the removal never reached the handler"
    );

    let ask = VoteRequest::new(vote(2, 0, false), None);
    let err = RaftNetworkV2::vote(&mut net, ask.clone(), opt())
        .await
        .expect_err("removed");
    assert!(
        matches!(&err, RPCError::Unreachable(u) if u.to_string().contains(&not_here)),
        "{err:?}"
    );
    let err = client
        .forward(PEER, &server.addr, &Command::Noop, TTL)
        .await
        .expect_err("removed");
    assert!(
        matches!(&err, ProposeError::Unavailable(m) if m.contains(&not_here)),
        "{err:?}"
    );
    // Group 0 is still served, on the same connection.
    let mut net0 = factory.network(PEER, &server.node());
    RaftNetworkV2::vote(&mut net0, ask.clone(), opt())
        .await
        .expect("group 0 still answers");

    // Added back: served again.
    let snapshots = server.dir.path().join(format!("g{GROUP}"));
    let replaced = router.insert(GROUP, server.mocks[&GROUP].clone(), incoming_in(snapshots));
    assert!(!replaced, "the group was not served");
    let resp = RaftNetworkV2::vote(&mut net, ask, opt())
        .await
        .expect("served again");
    assert!(resp.vote_granted);
    let applied = client
        .forward(PEER, &server.addr, &Command::Noop, TTL)
        .await
        .expect("served again");
    assert_eq!(applied.version, 7);
    assert_eq!(
        server.mocks[&GROUP].calls.lock().clone(),
        vec!["stream_append", "vote", "forward"]
    );
    server.stop().await;
}

/// A TCP relay on 127.0.0.1:0 to `target` that counts the connections it accepts; dropping it
/// ends its tasks (and so every connection through it).
struct CountingRelay {
    addr: String,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingRelay {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            // Dropped with the task: aborts every relayed connection.
            let mut relays = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let target = target.clone();
                relays.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn every_groups_calls_to_a_peer_share_one_connection() {
    let server = Server::start_groups(PEER, &[0, GROUP]).await;
    let relay = CountingRelay::start(server.addr.clone()).await;
    let node = NodeAddr {
        peer_addr: relay.addr.clone(),
        ..server.node()
    };
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default());
    for group in [0, GROUP, 0, GROUP] {
        let factory = factory.for_group(group);
        let mut net = factory.network(PEER, &node);
        let ask = VoteRequest::new(vote(2, 0, false), None);
        RaftNetworkV2::vote(&mut net, ask, opt())
            .await
            .expect("vote");
        let input = stream::iter(vec![append_at(1, 1)]);
        let answers = RaftNetworkV2::stream_append(&mut net, input, opt())
            .await
            .expect("the stream opens");
        assert_eq!(all(answers).await.len(), 1);
        let client = factory.peer_client();
        client
            .forward(PEER, &relay.addr, &Command::Noop, TTL)
            .await
            .expect("forward");
        client
            .read_index(PEER, &relay.addr, TTL, 0, false)
            .await
            .expect("read index");
    }
    for (group, mock) in &server.mocks {
        assert_eq!(
            mock.calls.lock().clone(),
            [["vote", "stream_append", "forward", "read_index"]; 2].concat(),
            "group {group}"
        );
    }
    assert_eq!(
        relay.accepted.load(Ordering::SeqCst),
        1,
        "every group's calls went on one connection"
    );
    drop(factory);
    drop(relay);
    server.stop().await;
}
