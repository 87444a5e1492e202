//! Mutual TLS on the peer port (docs/SECURITY.md §1): a member with a certificate of the
//! cluster CA gets through; a plaintext peer, a peer whose certificate another CA signed, and a
//! peer that does not trust the cluster CA are refused at the handshake, for probes and votes
//! alike.

use super::*;
use dolmen_testkit::TestCa;

fn tls(ca: &TestCa, trusted: &TestCa, node: &str) -> PeerTls {
    let (cert, key) = ca.node_pem(node).expect("a node certificate");
    PeerTls {
        ca: trusted.ca_pem().into_bytes(),
        cert: cert.into_bytes(),
        key: key.into_bytes(),
    }
}

fn factory(tls: Option<PeerTls>) -> GrpcNetworkFactory {
    GrpcNetworkFactory::new(
        THIS_NODE,
        NetworkOptions {
            tls,
            ..NetworkOptions::default()
        },
    )
}

#[tokio::test]
async fn only_a_peer_with_a_certificate_of_the_cluster_ca_gets_through() {
    let cluster = TestCa::new("cluster CA").expect("a CA");
    let other = TestCa::new("another CA").expect("a CA");
    let server = Server::start_with(ServeOptions {
        tls: Some(tls(&cluster, &cluster, "server")),
        ..ServeOptions::default()
    })
    .await;
    let t = Duration::from_secs(2);
    let vote_req = VoteRequest::<DolmenRaft>::new(vote(5, 0, false), Some(log_id(4, 0, 20)));

    let member = factory(Some(tls(&cluster, &cluster, "member")));
    let probe = member.peer_client().probe(PEER, &server.addr, t).await;
    assert!(probe.is_ok(), "a member gets through: {probe:?}");
    let mut net = member.network(PEER, &server.node());
    let voted = RaftNetworkV2::vote(&mut net, vote_req.clone(), RPCOption::new(TTL)).await;
    assert!(
        voted.is_ok(),
        "a member's vote request is answered: {voted:?}"
    );

    let strangers = [
        ("a plaintext peer", None),
        (
            "a peer whose certificate another CA signed",
            Some(tls(&other, &cluster, "stranger")),
        ),
        (
            "a peer that does not trust the cluster CA",
            Some(tls(&cluster, &other, "confused")),
        ),
    ];
    for (who, peer_tls) in strangers {
        let stranger = factory(peer_tls);
        let probe = stranger.peer_client().probe(PEER, &server.addr, t).await;
        assert!(probe.is_err(), "{who} is refused: {probe:?}");
        let mut net = stranger.network(PEER, &server.node());
        let voted = RaftNetworkV2::vote(&mut net, vote_req.clone(), RPCOption::new(TTL)).await;
        assert!(voted.is_err(), "{who} cannot ask for a vote: {voted:?}");
        println!(
            "{who}: {}",
            probe.err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
    server.stop().await;
}
