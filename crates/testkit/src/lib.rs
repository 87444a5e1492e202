//! The one local-cluster harness of Dolmen (used by the black-box tests, the chaos runner and
//! `dolmen demo`): free loopback ports, node configs rendered from `dolmen_config::Config`, and
//! `dolmen serve` processes started, signalled and stopped by PID, every wait bounded.
//!
//! ```text
//!  ports::NodeAddrs::pick ─▶ render::replicated_node (+ render::set) ─▶ render::write
//!       ─▶ cluster::LocalCluster ── process::ServerProcess × n ── readiness line, signals
//!                               └─ dolmen_admin::blocking ── /ready /status /state/digest
//! ```

pub mod cluster;
pub mod leader;
pub mod ports;
pub mod process;
pub mod render;
pub mod tls;

pub use dolmen_config::{self as config, Config};

pub use cluster::{ClusterError, LocalCluster, NodeFiles, NodeSpec, NodeState, ADMIN_TIMEOUT};
pub use leader::leader_of;
pub use ports::{loopback, pick_ports, NodeAddrs, PortError};
pub use process::{Launch, ProcessError, Ready, ServerProcess, Stopped, READY_PREFIX};
pub use render::RenderError;
pub use tls::{TestCa, TlsError, PEER_TLS_NAME};
