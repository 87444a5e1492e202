//! The Dolmen node runtime: configuration, the protocol-free service core, the Thrift handler,
//! the admin HTTP endpoint, and start-up/shutdown. The `dolmen` binary only wires this.
//!
//! ```text
//!   Thrift conn ─▶ thrift::Handler ─▶ service::Service ─▶ ReadGate / Replicator ─▶ Engine
//!   admin HTTP  ─▶ admin ───────────▶ service::Service (stats, cluster view)
//! ```

pub mod admin;
pub mod admin_client;
pub mod config;
pub mod error;
pub mod faults;
pub mod net_faults;
pub mod node;
pub mod service;
pub mod stats;
pub mod thrift;
