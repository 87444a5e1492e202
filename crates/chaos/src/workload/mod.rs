//! The client workloads: concurrent tokio tasks that each send ONE attempt per operation to a
//! chosen node and record what they saw in the history (Jepsen style; no retry loop, so the
//! history says exactly what a client observed).
//!
//! ```text
//!  client task i ── workload (register | bank | set | list-append) ── dolmen_client::Client ──▶ node k
//!        │ invoke ─────────────────────────────── complete / unknown ─┐
//!        └──────────────────────────────▶ Recorder (history.jsonl) ◀──┘
//! ```
//!
//! Outcomes are mapped honestly ([`classify`]): an answer that says the request was refused
//! before it could take effect is a definite failure; a broken connection, a timeout or a
//! `TIMEOUT` answer is unknown, and the client takes a fresh process id afterwards.

pub mod bank;
pub mod list_append;
pub mod register;
pub mod set;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolmen_client::{Client, Error};

use crate::recorder::Recorder;
use crate::rng::Rng;

/// Timeout of one request (connect and answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);
/// Safety net around a whole operation (a CAS or a transfer makes three requests).
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Most operations one client runs (every loop is bounded in count as well as time).
const MAX_OPS_PER_CLIENT: u64 = 10_000_000;

/// A workload: what one client does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Single-key registers: read, write, compare-and-set (linearizability).
    Register,
    /// Transfers between accounts and snapshot reads of all (the total is invariant).
    Bank,
    /// Unique inserts, read back from every replica at the end (no acknowledged insert lost).
    Set,
    /// Transactions that read lists and append unique elements (strict serializability).
    ListAppend,
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 4] = [
        Workload::Register,
        Workload::Bank,
        Workload::Set,
        Workload::ListAppend,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Bank => "bank",
            Workload::Set => "set",
            Workload::ListAppend => "list-append",
        }
    }

    /// Parses one command-line name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == s)
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Took effect (or, for a read, returned a value).
    Ok,
    /// Definitely had no effect.
    Failed,
    /// May or may not have taken effect.
    Unknown,
}

/// Maps a request error to [`Class::Failed`] or [`Class::Unknown`].
///
/// Failed: the server answered with a code that means "refused before proposing"
/// (`NOT_LEADER`, `UNAVAILABLE`, `CONFLICT`, `INVALID_*`, `TRANSACTION_TOO_OLD`,
/// `FUTURE_VERSION`), or the connection was refused (the request never left this process).
/// Unknown: everything else — a timeout, a reset or broken connection, `TIMEOUT`, or a server
/// error without a code.
pub fn classify(e: &Error) -> Class {
    match e {
        Error::Transport { message, .. } => {
            if message.contains("Connection refused") || message.contains("os error 111") {
                Class::Failed
            } else {
                Class::Unknown
            }
        }
        Error::Server { code, .. } => match code.as_deref() {
            Some("TIMEOUT") | None => Class::Unknown,
            Some(_) => Class::Failed,
        },
        _ => Class::Unknown,
    }
}

/// The error code of a refusal (`CONFLICT`, `UNAVAILABLE`, ...), kept in the history: `Some`
/// only when the server answered with a code that [`classify`] takes as a definite failure.
pub fn refusal_code(e: &Error) -> Option<String> {
    match e {
        Error::Server {
            code: Some(code), ..
        } if classify(e) == Class::Failed => Some(code.clone()),
        _ => None,
    }
}

/// What every client task shares.
#[derive(Clone)]
pub struct Ctx {
    /// Where events go.
    pub recorder: Arc<Recorder>,
    /// Every node's Thrift address, by node id.
    pub nodes: Vec<SocketAddr>,
    /// Clients stop starting operations at this instant.
    pub stop_at: Instant,
    /// Or when this is set (Ctrl-C, harness error).
    pub stop: Arc<AtomicBool>,
}

impl Ctx {
    /// Whether a client may start another operation (`done` = operations it ran so far).
    pub fn running(&self, done: u64) -> bool {
        done < MAX_OPS_PER_CLIENT
            && Instant::now() < self.stop_at
            && !self.stop.load(Ordering::Relaxed)
    }

    /// One client per node (connections open lazily).
    pub fn clients(&self) -> Vec<Client> {
        self.nodes
            .iter()
            .map(|&a| Client::new(a, REQUEST_TIMEOUT))
            .collect()
    }
}

/// A client's turns: one connection per node, and the node of each next operation, chosen at
/// random, while the run goes on (every workload's client loop).
pub struct Turns {
    clients: Vec<Client>,
    done: u64,
}

impl Turns {
    /// One connection per node of `ctx`, no operation started yet.
    pub fn new(ctx: &Ctx) -> Self {
        Self {
            clients: ctx.clients(),
            done: 0,
        }
    }

    /// The node of the next operation and its client, or `None` once `ctx` stops the run.
    pub fn next(&mut self, ctx: &Ctx, rng: &mut Rng) -> Option<(usize, &Client)> {
        if !ctx.running(self.done) {
            return None;
        }
        self.done += 1;
        let node = rng.index(self.clients.len());
        self.clients.get(node).map(|c| (node, c))
    }
}

/// A client's identity in the history: its current process id, replaced after an unknown
/// outcome so one process never has two operations in flight.
pub struct Process {
    /// The current id.
    pub id: u64,
}

impl Process {
    /// A fresh process.
    pub fn new(recorder: &Recorder) -> Self {
        Self {
            id: recorder.new_process(),
        }
    }

    /// Call after every operation: takes a new id when the outcome was unknown.
    pub fn after(&mut self, class: Class, recorder: &Recorder) {
        if class == Class::Unknown {
            self.id = recorder.new_process();
        }
    }
}

/// Pause between two operations of one client (modest load: the nodes share two cores with
/// everything else).
pub async fn think(rng: &mut Rng) {
    tokio::time::sleep(Duration::from_millis(rng.between(2, 25))).await;
}

/// Parses a decimal value written by a workload.
pub fn parse_num<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_is_conservative() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let t = |m: &str| Error::Transport {
            addr,
            message: m.into(),
        };
        assert_eq!(
            classify(&t("connect: Connection refused (os error 111)")),
            Class::Failed
        );
        assert_eq!(classify(&t("timeout")), Class::Unknown);
        assert_eq!(classify(&t("connection reset by peer")), Class::Unknown);
        let s = |c: Option<&str>| Error::server(c.map(str::to_owned), "x".into());
        assert_eq!(classify(&s(Some("CONFLICT"))), Class::Failed);
        assert_eq!(classify(&s(Some("NOT_LEADER"))), Class::Failed);
        assert_eq!(classify(&s(Some("UNAVAILABLE"))), Class::Failed);
        assert_eq!(classify(&s(Some("TIMEOUT"))), Class::Unknown);
        assert_eq!(classify(&s(None)), Class::Unknown);
        assert_eq!(
            refusal_code(&s(Some("UNAVAILABLE"))).as_deref(),
            Some("UNAVAILABLE")
        );
        assert_eq!(refusal_code(&s(Some("TIMEOUT"))), None, "not a refusal");
        assert_eq!(refusal_code(&s(None)), None);
        assert_eq!(refusal_code(&t("connect: Connection refused")), None);
    }
}
