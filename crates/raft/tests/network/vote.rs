//! `Vote`, pre-vote and `TransferLeader` round trips.

use super::*;

#[tokio::test]
async fn vote_pre_vote_and_transfer_leader_round_trip() {
    let server = Server::start().await;
    let (_factory, mut net) = network_to(&server).await;

    let mut req = VoteRequest::<DolmenRaft>::new(vote(5, 0, false), Some(log_id(4, 0, 20)));
    let resp = RaftNetworkV2::vote(&mut net, req.clone(), RPCOption::new(TTL))
        .await
        .expect("vote succeeds");
    assert_eq!(
        resp,
        VoteResponse {
            vote: vote(5, 0, false),
            vote_granted: true,
            last_log_id: Some(log_id(4, 0, 20))
        }
    );

    req.leadership_transfer = true;
    let resp = RaftNetworkV2::vote(&mut net, req.clone(), RPCOption::new(TTL))
        .await
        .expect("vote succeeds");
    assert!(
        !resp.vote_granted,
        "leadership_transfer reached the handler"
    );

    let resp = RaftNetworkV2::pre_vote(&mut net, req, RPCOption::new(TTL))
        .await
        .expect("pre-vote succeeds");
    assert_eq!(
        resp,
        VoteResponse {
            vote: vote(6, 2, true),
            vote_granted: false,
            last_log_id: Some(log_id(9, 2, 99))
        }
    );

    let transfer =
        TransferLeaderRequest::<DolmenRaft>::new(vote(5, 0, true), PEER, Some(log_id(5, 0, 30)));
    let resp = RaftNetworkV2::transfer_leader(&mut net, transfer, RPCOption::new(TTL))
        .await
        .expect("transfer call succeeds");
    assert_eq!(
        resp,
        Err(TransferLeaderError::LogNotFlushed {
            expected: Some(log_id(5, 0, 30)),
            actual: Some(log_id(1, PEER, 1)),
        })
    );
    server.stop().await;
}
