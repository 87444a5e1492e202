//! Forwarded writes count against the leader's `[consensus] max_outstanding_proposals` (issue
//! 18): followers cannot queue unbounded work on the leader. A leader allowed 2 writes in flight
//! refuses some of the writes a follower forwards from 32 concurrent clients, with `UNAVAILABLE`
//! naming the bound; every write it acknowledged is readable afterwards.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test forward_limit`.

use std::time::Duration;

use dolmen_tests::replicated::{unique_prefix, LEADER_TIMEOUT};
use dolmen_tests::{connect_buffered, KvExt, ReplicatedCluster};

const CLIENTS: usize = 32;
const WRITES_PER_CLIENT: usize = 20;

#[test]
fn forwarded_writes_count_against_the_leaders_bound() {
    let c = ReplicatedCluster::builder()
        .set_node(0, "consensus", "max_outstanding_proposals", 2)
        .start();
    if c.wait_for_leader(LEADER_TIMEOUT) != 0 {
        c.transfer_leader(0).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(c.wait_for_leader(LEADER_TIMEOUT), 0);
    let follower = c.thrift_endpoint(1);
    let prefix = String::from_utf8(unique_prefix("forward-limit")).expect("text prefix");

    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let prefix = prefix.clone();
            std::thread::spawn(move || {
                let mut client = connect_buffered(follower);
                let (mut acked, mut refused) = (Vec::new(), 0usize);
                for i in 0..WRITES_PER_CLIENT {
                    let key = format!("{prefix}{t:02}/{i:02}");
                    let r = client.set_in(key.as_bytes(), b"v", None);
                    if r.success {
                        acked.push(key);
                    } else {
                        let error = r.error.unwrap_or_default();
                        assert_eq!(r.error_code.as_deref(), Some("UNAVAILABLE"), "{error}");
                        assert!(
                            error.contains("too many writes in flight on node 0")
                                && error.contains("max_outstanding_proposals = 2"),
                            "{error}"
                        );
                        refused += 1;
                    }
                }
                (acked, refused)
            })
        })
        .collect();
    let (mut acked, mut refused) = (Vec::new(), 0);
    for thread in threads {
        let (a, r) = thread.join().expect("a client thread");
        acked.extend(a);
        refused += r;
    }
    println!(
        "{} writes acknowledged, {refused} refused by the leader's bound",
        acked.len()
    );
    assert!(
        refused > 0,
        "32 clients through a follower exceed a bound of 2"
    );
    assert!(
        !acked.is_empty(),
        "the leader still takes writes within its bound"
    );
    std::thread::sleep(Duration::from_millis(100));
    let mut reader = connect_buffered(c.thrift_endpoint(0));
    for key in &acked {
        assert!(
            reader.get_value(key.as_bytes()).found,
            "{key} was acknowledged"
        );
    }
}
