//! Idle client connections are closed (issue 18): a flood of sockets that connect and send
//! nothing fills `max_connections` and locks real clients out, but only until
//! `server.idle_timeout_ms` passes; then the node closes them, and a real client commits again.
//! A client that keeps sending requests is never closed. The admin port closes a connection
//! whose request head is overdue, and serves at most 256 at once, so a flood of silent sockets
//! there delays health checks by the header timeout at most.
//!
//! Run: `cargo build --workspace --all-targets && cargo test --workspace --test idle_connections`.

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_tests::admin::admin;
use dolmen_tests::kvstore::{GetRequest, TTransactionalKVSyncClient};
use dolmen_tests::replicated::wait_until;
use dolmen_tests::{connect_buffered, KvExt, Standalone};

/// Silent sockets opened at once: more than the default `max_connections` (4096).
const FLOOD: usize = 5000;
const IDLE_MS: i64 = 20_000;
/// Sockets opened before waiting for the node to accept them (a burst beyond its listen
/// backlog would have the kernel drop connection attempts, retried a second later).
const BATCH: usize = 200;
const READ_TIMEOUT_MS: i64 = 1000;

/// Raises this process's open-file limit (and so the node's, which inherits it) to hold the
/// flood on both ends; returns how many silent sockets fit.
fn raise_file_limit() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("read RLIMIT_NOFILE");
    let want = (2 * FLOOD as u64 + 1000).min(hard);
    if want > soft {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).expect("raise RLIMIT_NOFILE");
    }
    let fits = usize::try_from(want.saturating_sub(1000) / 2).unwrap_or(FLOOD);
    fits.min(FLOOD)
}

fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_flood_of_idle_sockets_is_closed_after_the_idle_timeout_and_real_clients_get_in() {
    let flood = raise_file_limit();
    // The cap below the flood, so that the flood locks clients out until it is closed.
    let cap = flood.min(4096).saturating_sub(96).max(8);
    let node = Standalone::builder()
        .set("server", "idle_timeout_ms", IDLE_MS)
        .set("server", "read_timeout_ms", READ_TIMEOUT_MS)
        .set(
            "server",
            "max_connections",
            i64::try_from(cap).expect("fits"),
        )
        .start();
    let addr = node.thrift_endpoint();

    // A client that keeps talking, every fifth of the idle timeout, across the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut client = connect_buffered(addr);
            let mut writes = 0u64;
            // Bounded: the test stops it; a minute at most.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                client.must_set(b"idle/busy", &writes.to_be_bytes());
                writes += 1;
                std::thread::sleep(Duration::from_millis(IDLE_MS as u64 / 5));
            }
            writes
        })
    };

    let metrics = admin(node.admin_endpoint());
    let accepted = || {
        let text = metrics.metrics().unwrap_or_default();
        sample(&text, "dolmen_client_connections_accepted_total")
            + sample(&text, "dolmen_client_connections_refused_total")
    };
    let before = accepted();
    let started = Instant::now();
    let mut sockets: Vec<TcpStream> = Vec::with_capacity(flood);
    while sockets.len() < flood {
        for _ in 0..BATCH.min(flood - sockets.len()) {
            let socket = TcpStream::connect(addr)
                .unwrap_or_else(|e| panic!("silent socket {}: {e}", sockets.len()));
            sockets.push(socket);
        }
        let want = before + sockets.len() as f64;
        assert!(
            wait_until(Duration::from_secs(10), || accepted() >= want),
            "the node accepted {} of {} sockets",
            accepted() - before,
            sockets.len()
        );
    }
    println!(
        "{flood} silent sockets open and accepted in {:?} (max_connections {cap})",
        started.elapsed()
    );

    // They fill the cap: a new client is refused.
    let open = sample(
        &metrics.metrics().unwrap_or_default(),
        "dolmen_client_connections",
    );
    assert!(open >= cap as f64, "{open} connections open, cap {cap}");
    let mut locked_out = connect_buffered(addr);
    let refused = locked_out.get(GetRequest::new(b"idle/busy".to_vec(), None));
    let error = format!("{refused:?}");
    assert!(
        refused.is_err() && error.contains("max_connections"),
        "a client over the cap is refused: {error}"
    );
    println!("while the flood is open: {error}");

    // After the idle timeout (plus the read timeout) the node closes the silent sockets.
    let closed = wait_until(
        Duration::from_millis((IDLE_MS + READ_TIMEOUT_MS) as u64 * 4),
        || {
            let text = metrics.metrics().unwrap_or_default();
            sample(&text, "dolmen_client_connections_idle_closed_total") >= flood as f64
        },
    );
    let text = metrics.metrics().unwrap_or_default();
    assert!(
        closed,
        "the node closed every silent socket: idle_closed = {}, open = {}",
        sample(&text, "dolmen_client_connections_idle_closed_total"),
        sample(&text, "dolmen_client_connections")
    );
    println!(
        "closed {} idle connections {:?} after they opened; open now: {}",
        sample(&text, "dolmen_client_connections_idle_closed_total"),
        started.elapsed(),
        sample(&text, "dolmen_client_connections")
    );
    // The silent sockets see the end of the stream.
    let mut first = &sockets[0];
    first
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("set a read timeout");
    let mut byte = [0u8; 1];
    assert_eq!(first.read(&mut byte).ok(), Some(0), "closed by the server");

    // A real client gets in and commits; the busy one was never cut off.
    let mut client = connect_buffered(addr);
    client.must_set(b"idle/after", b"2");
    assert!(client.get_value(b"idle/after").found);
    stop.store(true, Ordering::Relaxed);
    let writes = busy.join().expect("the busy client was never cut off");
    println!("the busy client wrote {writes} times on one connection throughout");
    drop(sockets);
}

/// Reads from `stream` until the peer closes it (`Ok(0)`) or it fails; true if closed within
/// `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream
        .set_read_timeout(Some(within))
        .expect("set_read_timeout");
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn silent_admin_connections_are_closed_and_cannot_lock_out_health_checks() {
    use std::io::Write;
    // More silent sockets than the admin port serves at once (256).
    const SILENT: usize = 300;
    let node = Standalone::start();
    let addr = node.admin_endpoint();
    let mut silent: Vec<TcpStream> = (0..SILENT)
        .map(|_| TcpStream::connect(addr).expect("connect to the admin port"))
        .collect();
    // A kept-alive connection that asked once and then says nothing more.
    let mut kept = TcpStream::connect(addr).expect("connect to the admin port");
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: dolmen\r\n\r\n")
        .expect("send a request");
    let started = Instant::now();
    // Each silent connection is closed once its request head is overdue (10 s), so health
    // checks get through again within about that long.
    assert!(
        wait_until(Duration::from_secs(30), || admin(addr).health().is_ok()),
        "no health check got through the flood of silent admin sockets within 30 s"
    );
    let through = started.elapsed();
    let closed = silent
        .iter_mut()
        .take(5)
        .map(|s| closed_within(s, Duration::from_secs(15)))
        .filter(|closed| *closed)
        .count();
    assert_eq!(closed, 5, "silent admin connections still open");
    assert!(
        closed_within(&mut kept, Duration::from_secs(15)),
        "a kept-alive admin connection stayed open with no request"
    );
    println!(
        "{SILENT} silent admin sockets: a health check got through after {through:?}; the \
         silent sockets and an idle kept-alive one were closed by the node"
    );
}
