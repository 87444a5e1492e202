//! Free loopback ports for a cluster's listeners, picked below the kernel's ephemeral range so
//! that no outgoing connection takes a stopped node's port before it restarts, and never handed
//! out twice by one process.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Why ports could not be picked.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Even the kernel's own choice (`127.0.0.1:0`) failed.
    #[error("cannot bind 127.0.0.1:0 to pick a port: {0}")]
    Bind(#[source] std::io::Error),
    /// Not enough distinct free ports were found.
    #[error("could not find {wanted} free loopback ports (found {found})")]
    Exhausted {
        /// Ports asked for.
        wanted: usize,
        /// Ports found.
        found: usize,
    },
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The three addresses of one node, fixed for the cluster's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeAddrs {
    /// Thrift client API (`[server] port`).
    pub thrift: SocketAddr,
    /// Peer (Raft gRPC) API (`[consensus] endpoints`).
    pub peer: SocketAddr,
    /// Admin HTTP API (`[server] admin_port`).
    pub admin: SocketAddr,
}

impl NodeAddrs {
    /// Fresh addresses for `n` nodes (three free ports each, see [`pick_ports`]).
    ///
    /// # Errors
    /// When not enough free ports are found.
    pub fn pick(n: usize) -> Result<Vec<NodeAddrs>, PortError> {
        Ok(pick_ports(n * 3)?
            .chunks(3)
            .map(|p| NodeAddrs {
                thrift: loopback(p[0]),
                peer: loopback(p[1]),
                admin: loopback(p[2]),
            })
            .collect())
    }

    /// Fixed addresses on 127.0.0.1: node `i` gets `thrift + i`, `peer + i`, `admin + i`
    /// (`dolmen demo`'s layout).
    pub fn consecutive(n: u16, thrift: u16, peer: u16, admin: u16) -> Vec<NodeAddrs> {
        (0..n)
            .map(|i| NodeAddrs {
                thrift: loopback(thrift + i),
                peer: loopback(peer + i),
                admin: loopback(admin + i),
            })
            .collect()
    }
}

/// Picks `n` distinct free loopback ports, below the kernel's ephemeral range when possible so
/// that no outgoing connection (ours, or a peer's) takes a stopped node's port before it
/// restarts. Every candidate is bound while picking, so the `n` are free at return; no port is
/// handed out twice in one process.
///
/// # Errors
/// When not enough free ports are found.
pub fn pick_ports(n: usize) -> Result<Vec<u16>, PortError> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low);
    let mut held = Vec::with_capacity(n);
    let mut guard = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let handed_out = guard.get_or_insert_with(HashSet::new);
    if high > low + 1000 {
        let span = u64::from(high - low);
        let mut x = seed();
        for _ in 0..20_000 {
            if held.len() == n {
                break;
            }
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let Ok(offset) = u16::try_from((x >> 33) % span) else {
                continue;
            };
            let port = low + offset;
            if handed_out.contains(&port) {
                continue;
            }
            if let Ok(l) = TcpListener::bind(loopback(port)) {
                handed_out.insert(port);
                held.push((port, l));
            }
        }
    }
    // Fallback (tiny or unknown ephemeral range): let the kernel choose.
    for _ in 0..1000 {
        if held.len() == n {
            break;
        }
        let l = TcpListener::bind(loopback(0)).map_err(PortError::Bind)?;
        let port = l.local_addr().map_err(PortError::Bind)?.port();
        if handed_out.insert(port) {
            held.push((port, l));
        }
    }
    if held.len() < n {
        return Err(PortError::Exhausted {
            wanted: n,
            found: held.len(),
        });
    }
    Ok(held.into_iter().map(|(port, _listener)| port).collect())
}

/// A per-call seed: process id, clock, and a counter (also used for unique key prefixes).
pub fn seed() -> u64 {
    static CALLS: Mutex<u64> = Mutex::new(0);
    let mut calls = CALLS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *calls += 1;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs());
    (u64::from(std::process::id()) << 32) ^ nanos ^ (*calls).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_distinct_across_calls_and_below_the_ephemeral_range() {
        let a = pick_ports(9).unwrap();
        let b = pick_ports(9).unwrap();
        let all: HashSet<u16> = a.iter().chain(&b).copied().collect();
        assert_eq!(all.len(), 18, "{a:?} {b:?}");
        // Below the kernel's ephemeral range, so no outgoing connection's source port takes
        // one between the pick and the node's bind. (Whether a port is still free when the
        // node binds it depends on every other process on the machine, so it is not asserted:
        // a CI run once saw a picked port taken in between.)
        let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok());
        if let Some(low) = ephemeral_low.filter(|&low| low > 11_000) {
            assert!(
                all.iter().all(|&p| (10_000..low).contains(&p)),
                "expected ports in 10000..{low}: {all:?}"
            );
        }
    }

    #[test]
    fn consecutive_addresses_follow_the_bases() {
        let a = NodeAddrs::consecutive(3, 9090, 7090, 9190);
        assert_eq!(a[2].thrift, loopback(9092));
        assert_eq!(a[1].peer, loopback(7091));
        assert_eq!(a[0].admin, loopback(9190));
    }
}
