//! Silent sockets on the peer port are closed (`ServeOptions::silent_timeout`): one that never
//! speaks is cut, while a member's connection, quiet but for its keep-alive pings, keeps working.

use super::*;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn a_socket_that_never_speaks_is_closed_and_members_keep_working() {
    let server = Server::start_with(ServeOptions {
        silent_timeout: Duration::from_millis(800),
        ..ServeOptions::default()
    })
    .await;
    let member = GrpcNetworkFactory::new(
        THIS_NODE,
        NetworkOptions {
            keepalive_interval: Duration::from_millis(200),
            ..NetworkOptions::default()
        },
    );
    let t = Duration::from_secs(2);
    let probe = member.peer_client().probe(PEER, &server.addr, t).await;
    assert!(probe.is_ok(), "a member gets through: {probe:?}");
    let mut silent = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect to the peer port");
    // The server speaks first (its HTTP/2 settings); the socket answers nothing.
    let drained = async {
        let mut buf = [0u8; 256];
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(10), drained).await;
    assert!(closed.is_ok(), "a silent socket was not closed within 10 s");
    // Quiet for well past the silent timeout: the member's pings keep its connection.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probe = member.peer_client().probe(PEER, &server.addr, t).await;
    assert!(probe.is_ok(), "a member still gets through: {probe:?}");
    server.stop().await;
}
