//! Talks to a whole cluster: discovers the members and the leader from the endpoints given,
//! increments a counter in a `transact` loop (commits go to the leader, reads follow the chosen
//! strategy), and keeps going through a leader failover — try `kill -9` on the leader while it
//! runs: each increment is still applied exactly once.
//!
//! Start a local cluster with `dolmen demo` (Thrift on 127.0.0.1:9090-9092), then:
//! `cargo run --example cluster -- round-robin 100 127.0.0.1:9090 127.0.0.1:9091 127.0.0.1:9092`
//! (strategy: `leader`, `round-robin`, `nearest` or `sticky`; endpoints default to the demo's).

use std::net::SocketAddr;
use std::time::Duration;

use dolmen_client::{Database, DatabaseOptions, Error, ReadStrategy};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let read_strategy = match args.next().as_deref() {
        None | Some("round-robin") => ReadStrategy::RoundRobin,
        Some("leader") => ReadStrategy::LeaderOnly,
        Some("nearest") => ReadStrategy::Nearest,
        Some("sticky") => ReadStrategy::Sticky,
        Some(other) => return Err(format!("unknown read strategy {other:?}").into()),
    };
    let times: u64 = args.next().map_or(Ok(20), |n| n.parse())?;
    let mut endpoints: Vec<SocketAddr> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    if endpoints.is_empty() {
        endpoints = (9090..=9092)
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .collect();
    }

    let options = DatabaseOptions {
        read_strategy,
        request_timeout: Duration::from_secs(2),
        ..DatabaseOptions::default()
    };
    let db = Database::connect_cluster(&endpoints, options).await?;
    println!(
        "members {:?}, leader {:?}, reads {read_strategy:?}",
        db.nodes(),
        db.leader()
    );
    for _ in 0..times {
        let value = db
            .transact(|tx| async move {
                let current = tx.get(b"counter").await?.map_or(Ok(0), |v| decode(&v))?;
                tx.set(b"counter", &(current + 1).to_be_bytes());
                Ok::<_, Error>(current + 1)
            })
            .await?;
        println!(
            "counter = {value} (leader {:?}, down {:?})",
            db.leader(),
            db.down_nodes()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<u64, Error> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| Error::Usage {
        message: format!("counter value has {} bytes, expected 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(array))
}
