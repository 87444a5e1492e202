//! The Dolmen node runtime: configuration, the protocol-free service core, the Thrift handler,
//! the admin HTTP endpoint, and start-up/shutdown. The `dolmen` binary only wires this.
//!
//! ```text
//!   Thrift conn ─▶ thrift::Handler ─▶ service::Service ─▶ ReadGate / Replicator ─▶ Engine
//!   admin HTTP  ─▶ admin ───────────▶ service::Service (stats, cluster view)
//! ```

pub mod admin;
pub mod client_tls;
mod cross_shard;
pub mod disk;
pub mod engine_options;
/// The node configuration, kept in its own crate (`dolmen-config`) so that tools which only
/// render or read configs (the test kit) do not link the server.
pub use dolmen_config as config;
pub mod error;
pub mod faults;
mod jobs;
pub mod net_faults;
pub mod node;
pub mod request_metrics;
pub mod restore;
pub mod service;
mod sharding;
pub mod shards;
pub mod stats;
pub mod thrift;
