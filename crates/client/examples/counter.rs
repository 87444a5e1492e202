//! Increments a counter in a `transact` loop: each increment is a read-modify-write transaction
//! that the SDK retries on conflict, so concurrent runs never lose an increment.
//!
//! Run against a node: `cargo run --example counter -- 127.0.0.1:9090 100`.

use dolmen_client::{Database, DatabaseOptions, Error};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9090".into())
        .parse()?;
    let times: u64 = args.next().map_or(Ok(10), |n| n.parse())?;

    let db = Database::connect(endpoint, DatabaseOptions::default()).await?;
    for _ in 0..times {
        let value = db
            .transact(|tx| async move {
                let current = tx.get(b"counter").await?.map_or(Ok(0), |v| decode(&v))?;
                tx.set(b"counter", &(current + 1).to_be_bytes());
                Ok::<_, Error>(current + 1)
            })
            .await?;
        println!("counter = {value}");
    }
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<u64, Error> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| Error::Usage {
        message: format!("counter value has {} bytes, expected 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(array))
}
