//! The Rust SDK for Dolmen: transactions over the `TransactionalKV` contract (docs/WIRE.md), with
//! FoundationDB's retry loop, read-your-writes, and exactly-once commits via idempotency tokens.
//! A [`Database`] spans a cluster: writes go to the leader (discovered with `getClusterHealth`,
//! `NOT_LEADER` hints followed), reads follow a [`ReadStrategy`], failed nodes leave the
//! rotation for a backoff.
//!
//! ```text
//!   Database ── transact / begin ──▶ Transaction ──▶ Router ──▶ Client per node ──▶ :9090..
//!   (options, client id)             (buffered writes,  (leader, read strategy,
//!                                     conflict ranges)    node health)
//! ```
//!
//! # Example
//!
//! ```no_run
//! use dolmen_client::{Database, DatabaseOptions, Error};
//!
//! # async fn run() -> Result<(), Error> {
//! let db = Database::connect("127.0.0.1:9090".parse().unwrap(), DatabaseOptions::default()).await?;
//!
//! // Retried on CONFLICT and other retryable errors; committed exactly once.
//! let balance = db
//!     .transact(|tx| async move {
//!         let from = tx.get(b"alice").await?.map_or(0, |v| v[0]);
//!         let to = tx.get(b"bob").await?.map_or(0, |v| v[0]);
//!         tx.set(b"alice", &[from - 1]);
//!         tx.set(b"bob", &[to + 1]);
//!         Ok(from - 1)
//!     })
//!     .await?;
//! println!("alice now has {balance}");
//!
//! // An explicit transaction: handle errors yourself.
//! let tx = db.begin();
//! tx.set(b"greeting", b"hello");
//! let committed = tx.commit().await?;
//! println!("committed at version {}", committed.version);
//! # Ok(())
//! # }
//! ```

mod client;
mod database;
mod error;
mod overlay;
mod retry;
mod router;
mod transaction;

pub use client::{Client, Op};
pub use database::{Database, DatabaseOptions};
pub use error::Error;
pub use router::ReadStrategy;
pub use transaction::{Committed, OpIndex, Transaction, VERSIONSTAMP_LEN};
