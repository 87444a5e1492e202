//! `AppendEntries`, unary and over the pipelined `AppendStream`: round trips, order, the first
//! refusal ending a stream, another group refused, and the fault hook on streamed requests.

use super::*;

#[tokio::test]
async fn append_entries_round_trips_requests_and_responses() {
    let server = Server::start().await;
    let (_factory, mut net) = network_to(&server).await;

    let entries: Vec<Entry> = vec![
        Entry {
            log_id: log_id(3, 0, 11),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(3, 0, 12),
            payload: EntryPayload::Normal(Command::Commit(Transaction::default())),
        },
        Entry {
            log_id: log_id(3, 0, 13),
            payload: EntryPayload::Membership(membership()),
        },
    ];
    let req = AppendEntriesRequest::<DolmenRaft> {
        vote: vote(3, 0, true),
        prev_log_id: Some(log_id(2, 1, 10)),
        entries: entries.clone(),
        leader_commit: Some(log_id(2, 1, 9)),
    };
    let resp = RaftNetworkV2::append_entries(&mut net, req, RPCOption::new(TTL))
        .await
        .expect("append succeeds");
    assert_eq!(
        resp,
        AppendEntriesResponse::PartialSuccess(Some(log_id(3, 0, 13)))
    );

    // A heartbeat: no entries, no commit.
    let heartbeat = AppendEntriesRequest::<DolmenRaft> {
        vote: vote(3, 0, true),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let resp = RaftNetworkV2::append_entries(&mut net, heartbeat, RPCOption::new(TTL))
        .await
        .expect("heartbeat succeeds");
    assert_eq!(resp, AppendEntriesResponse::PartialSuccess(None));

    let seen = server.mock.appends.lock().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].vote, vote(3, 0, true));
    assert_eq!(seen[0].prev_log_id, Some(log_id(2, 1, 10)));
    assert_eq!(seen[0].entries, entries);
    assert_eq!(seen[0].leader_commit, Some(log_id(2, 1, 9)));
    assert!(
        seen[1].entries.is_empty()
            && seen[1].prev_log_id.is_none()
            && seen[1].leader_commit.is_none()
    );
    server.stop().await;
}

pub(crate) fn append_at(prev: u64, entries: u64) -> AppendEntriesRequest<DolmenRaft> {
    AppendEntriesRequest {
        vote: vote(3, 0, true),
        prev_log_id: Some(log_id(3, 0, prev)),
        entries: (prev + 1..=prev + entries)
            .map(|i| Entry {
                log_id: log_id(3, 0, i),
                payload: EntryPayload::Blank,
            })
            .collect(),
        leader_commit: Some(log_id(3, 0, prev)),
    }
}

/// Collects a stream's items, failing the test if it has not ended within `TTL`.
pub(crate) async fn all<T>(stream: impl futures::Stream<Item = T>) -> Vec<T> {
    tokio::time::timeout(TTL, stream.collect::<Vec<_>>())
        .await
        .expect("the stream ends within the TTL")
}

/// Streams `input` over `net` and returns the answers, none of them a transport error.
async fn answers_to(
    net: &mut GrpcNetwork,
    input: impl futures::Stream<Item = AppendEntriesRequest<DolmenRaft>> + Send + Unpin + 'static,
) -> Vec<StreamAppendResult<DolmenRaft>> {
    let answers = RaftNetworkV2::stream_append(net, input, RPCOption::new(TTL))
        .await
        .expect("the stream opens");
    all(answers)
        .await
        .into_iter()
        .map(|a| a.expect("no transport error"))
        .collect()
}

#[tokio::test]
async fn append_stream_pipelines_requests_and_answers_in_order() {
    let server = Server::start().await;
    // The mock answers nothing before three requests arrived: a client that waited for each
    // answer would hang here.
    server.mock.stream_hold.store(3, Ordering::SeqCst);
    let (_factory, mut net) = network_to(&server).await;
    let input = stream::iter(vec![append_at(10, 2), append_at(12, 0), append_at(12, 3)]);
    let answers = answers_to(&mut net, input).await;
    // The first request's answer is held back for the entry-less one sent after it, up to the
    // same log id: openraft would credit that one's sending time to it (see
    // `a_success_waits_for_the_entry_less_request_sent_after_it_and_times_out_if_it_was_lost`).
    assert_eq!(
        answers,
        vec![Ok(Some(log_id(3, 0, 12))), Ok(Some(log_id(3, 0, 15)))]
    );
    // What arrived, as (prev index, entry indexes), in sending order.
    let seen: Vec<(u64, Vec<u64>)> = server
        .mock
        .streamed
        .lock()
        .iter()
        .map(|r| {
            let prev = r.prev_log_id.map_or(0, |id| id.index);
            (prev, r.entries.iter().map(|e| e.log_id.index).collect())
        })
        .collect();
    assert_eq!(
        seen,
        vec![(10, vec![11, 12]), (12, vec![]), (12, vec![13, 14, 15])]
    );
    server.stop().await;
}

#[tokio::test]
async fn append_stream_ends_at_the_first_refusal() {
    let server = Server::start().await;
    let (_factory, mut net) = network_to(&server).await;
    let input = stream::iter(vec![
        append_at(1, 1),
        append_at(CONFLICT_AT, 1),
        append_at(2, 1),
    ]);
    let answers = answers_to(&mut net, input).await;
    assert_eq!(
        answers,
        vec![
            Ok(Some(log_id(3, 0, 2))),
            Err(StreamAppendError::Conflict(log_id(3, 0, CONFLICT_AT)))
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn append_stream_refuses_another_group_after_answering_the_requests_before_it() {
    let server = Server::start().await;
    let mut raw = pb::peer_client::PeerClient::connect(format!("http://{}", server.addr))
        .await
        .expect("connect");
    let good =
        dolmen_raft::network::wire::append_request_to_pb(0, &append_at(4, 1)).expect("encode");
    let mut other_group = good.clone();
    other_group.group_id = 2;
    let answers = raw
        .append_stream(stream::iter(vec![good, other_group]))
        .await
        .expect("the stream opens")
        .into_inner();
    let answers = all(answers).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    let first = answers[0]
        .as_ref()
        .expect("the first request is answered")
        .clone();
    assert_eq!(
        dolmen_raft::network::wire::stream_result_from_pb(first).expect("decodes"),
        Ok(Some(log_id(3, 0, 5)))
    );
    let status = answers[1].as_ref().expect_err("group 2 refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("group_id 2"),
        "{}",
        status.message()
    );
    server.stop().await;
}

/// Applies one action to every `AppendEntries`.
#[derive(Debug)]
struct EveryAppend(FaultAction);

impl PeerFaults for EveryAppend {
    fn check(&self, _from: NodeId, _to: NodeId, rpc: &'static str) -> FaultAction {
        if rpc == "AppendEntries" {
            self.0
        } else {
            FaultAction::Deliver
        }
    }
}

#[tokio::test]
async fn append_stream_faults_drop_as_a_timeout_and_duplicate_without_extra_answers() {
    let server = Server::start().await;
    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default())
        .with_faults(Arc::new(EveryAppend(FaultAction::Duplicate)));
    let mut net = factory.network(PEER, &server.node());
    let input = stream::iter(vec![append_at(1, 1), append_at(2, 1)]);
    let answers = answers_to(&mut net, input).await;
    assert_eq!(
        answers,
        vec![Ok(Some(log_id(3, 0, 2))), Ok(Some(log_id(3, 0, 3)))]
    );
    assert_eq!(
        server.mock.streamed.lock().len(),
        4,
        "each request arrived twice"
    );

    let factory = GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default())
        .with_faults(Arc::new(EveryAppend(FaultAction::Drop)));
    let mut net = factory.network(PEER, &server.node());
    let ttl = Duration::from_millis(300);
    let start = Instant::now();
    let input = stream::iter(vec![append_at(3, 1)]);
    let answers = RaftNetworkV2::stream_append(&mut net, input, RPCOption::new(ttl))
        .await
        .expect("the stream opens");
    let answers = all(answers).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(
        matches!(answers[0], Err(RPCError::Timeout(_))),
        "{:?}",
        answers[0]
    );
    assert!(start.elapsed() < TTL, "took {:?}", start.elapsed());
    assert_eq!(
        server.mock.streamed.lock().len(),
        4,
        "the dropped request never arrived"
    );
    server.stop().await;
}

/// Counts the `AppendEntries` it sees and drops those whose number (from 1) is in `drop`.
#[derive(Debug, Default)]
struct CountedAppends {
    seen: AtomicU64,
    drop: Vec<u64>,
}

impl PeerFaults for CountedAppends {
    fn check(&self, _from: NodeId, _to: NodeId, rpc: &'static str) -> FaultAction {
        if rpc != "AppendEntries" {
            return FaultAction::Deliver;
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if self.drop.contains(&n) {
            FaultAction::Drop
        } else {
            FaultAction::Deliver
        }
    }
}

/// Waits (bounded) until `faults` has seen `n` appends.
async fn appends_seen(faults: &CountedAppends, n: u64) {
    for _ in 0..500 {
        if faults.seen.load(Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the fault hook never saw append {n}");
}

/// A network to `server` whose appends pass through `faults`.
fn counted_network(server: &Server, faults: &Arc<CountedAppends>) -> GrpcNetwork {
    GrpcNetworkFactory::new(THIS_NODE, NetworkOptions::default())
        .with_faults(Arc::clone(faults) as Arc<dyn PeerFaults>)
        .network(PEER, &server.node())
}

/// An append stream over `net` whose requests the test sends one by one on the returned
/// sender, and its answers.
async fn fed_stream(
    net: &mut GrpcNetwork,
    ttl: Duration,
) -> (
    tokio::sync::mpsc::UnboundedSender<AppendEntriesRequest<DolmenRaft>>,
    BoxStream<'_, Result<StreamAppendResult<DolmenRaft>, RPCError<DolmenRaft>>>,
) {
    let (requests, input) = tokio::sync::mpsc::unbounded_channel();
    let input = tokio_stream::wrappers::UnboundedReceiverStream::new(input);
    let answers = RaftNetworkV2::stream_append(net, input, RPCOption::new(ttl))
        .await
        .expect("the stream opens");
    (requests, answers)
}

/// Openraft credits a streamed success with the sending time of the latest request taken up to
/// its log id, and the leader lease rests on those times. An entry-less request (a new commit
/// index) taken after a request with entries, and lost on the way (the leader was cut off),
/// must not lend its time to the earlier request's success: the follower never heard it, and
/// may vote for another leader while this one thinks its lease still holds.
#[tokio::test]
async fn a_success_waits_for_the_entry_less_request_sent_after_it_and_times_out_if_it_was_lost() {
    let server = Server::start().await;
    let faults = Arc::new(CountedAppends {
        drop: vec![2],
        ..CountedAppends::default()
    });
    let mut net = counted_network(&server, &faults);
    let (requests, mut answers) = fed_stream(&mut net, Duration::from_millis(500)).await;
    requests.send(append_at(10, 2)).expect("queued");
    // Answered by the follower before the commit-carrying request is taken, read after.
    for _ in 0..500 {
        if !server.mock.streamed.lock().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    requests.send(append_at(12, 0)).expect("queued");
    appends_seen(&faults, 2).await;
    let first = tokio::time::timeout(TTL, answers.next())
        .await
        .expect("an answer within the TTL")
        .expect("the stream has an item");
    assert!(
        matches!(first, Err(RPCError::Timeout(_))),
        "the success must not be credited with the lost request's time: {first:?}"
    );
    assert_eq!(
        server.mock.streamed.lock().len(),
        1,
        "the second was dropped"
    );
    server.stop().await;
}

/// While a success is handed to openraft (until it asks for the next answer, having credited
/// this one) no request is taken from it: one taken then would be credited too.
#[tokio::test]
async fn no_request_is_taken_while_a_success_is_handed_over() {
    let server = Server::start().await;
    let faults = Arc::new(CountedAppends::default());
    let mut net = counted_network(&server, &faults);
    let (requests, mut answers) = fed_stream(&mut net, TTL).await;
    requests.send(append_at(10, 2)).expect("queued");
    let first = tokio::time::timeout(TTL, answers.next())
        .await
        .expect("answered");
    assert_eq!(
        first.map(|a| a.ok()),
        Some(Some(Ok(Some(log_id(3, 0, 12)))))
    );
    // Handed over, and openraft has not asked again: the next request waits.
    requests.send(append_at(12, 1)).expect("queued");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        faults.seen.load(Ordering::SeqCst),
        1,
        "taken while handing over"
    );
    let second = tokio::time::timeout(TTL, answers.next())
        .await
        .expect("answered");
    assert_eq!(
        second.map(|a| a.ok()),
        Some(Some(Ok(Some(log_id(3, 0, 13)))))
    );
    assert_eq!(faults.seen.load(Ordering::SeqCst), 2);
    drop(requests);
    server.stop().await;
}

#[test]
fn an_append_cut_in_parts_chains_them_and_keeps_vote_and_commit() {
    use dolmen_raft::network::wire::{append_request_to_pb, append_request_to_pb_parts};
    let req = append_at(1, 5);
    let whole = append_request_to_pb(0, &req).expect("encode");
    assert_eq!(
        append_request_to_pb_parts(0, &req, usize::MAX).expect("encode"),
        vec![whole.clone()]
    );
    // A budget below one entry: one entry a part, each after the previous part's last entry.
    let parts = append_request_to_pb_parts(0, &req, 1).expect("encode");
    assert_eq!(parts.len(), 5);
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part.entries, vec![whole.entries[i].clone()], "part {i}");
        let prev = append_request_to_pb(0, &append_at(1 + i as u64, 1))
            .expect("encode")
            .prev_log_id;
        assert_eq!(part.prev_log_id, prev, "part {i}");
        assert_eq!(
            (&part.vote, &part.leader_commit),
            (&whole.vote, &whole.leader_commit)
        );
    }
    // Two entries fit a budget of two entries' bytes: parts of 2, 2 and 1.
    let two = whole.entries[0].len() + whole.entries[1].len();
    let sizes: Vec<usize> = append_request_to_pb_parts(0, &req, two)
        .expect("encode")
        .iter()
        .map(|p| p.entries.len())
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    // A heartbeat (no entries) is one part.
    let heartbeat = append_at(1, 0);
    assert_eq!(
        append_request_to_pb_parts(0, &heartbeat, 1)
            .expect("encode")
            .len(),
        1
    );
}
