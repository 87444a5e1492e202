//! The suites' access to a node's admin endpoint: `dolmen_admin`'s blocking client with the
//! suites' timeout (typed calls: `admin(addr).status()`, `.metrics()`,
//! `.set_network_faults(..)`). There is no HTTP code here.
//!
//! ```text
//!  admin(addr).status() ── dolmen_admin::blocking ──▶ dolmen admin (axum) ──▶ NodeStatus
//! ```

use std::net::SocketAddr;
use std::time::Duration;

pub use dolmen_admin::blocking::AdminClient;
pub use dolmen_admin::AdminError;

/// The timeout of one admin request. A stopped (SIGSTOP) node fails requests after this long
/// instead of hanging the test.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// The blocking admin client of the node at `addr`, with [`HTTP_TIMEOUT`].
pub fn admin(addr: SocketAddr) -> AdminClient {
    AdminClient::new(addr).with_timeout(HTTP_TIMEOUT)
}
