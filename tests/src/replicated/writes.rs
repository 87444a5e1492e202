//! Recorded writes: writer threads whose every outcome is kept as a [`WriteRecord`], the
//! classification of an answer ([`Outcome`]), and the check that what the cluster serves
//! afterwards agrees with what the clients were told.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport, TIoChannel, TTcpChannel};

use super::{wait_until, ReplicatedCluster, POLL};
use crate::client::{op_set, range_all_absent, KvClient, IO_TIMEOUT};
use crate::kvstore::{
    AtomicCommitRequest, GetRangeRequest, SetKeyRequest, TTransactionalKVSyncClient,
    TransactionalKVSyncClient,
};

/// Why a stock client could not connect, or a range could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No TCP connection within [`IO_TIMEOUT`], or the socket could not be set up.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The node's Thrift address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The Thrift channel could not be split.
    #[error("split the channel to {addr}: {reason}")]
    Channel {
        /// The node's Thrift address.
        addr: SocketAddr,
        /// Thrift's error.
        reason: String,
    },
    /// The `getRange` call failed in transport.
    #[error("getRange on {addr}: {reason}")]
    Transport {
        /// The node's Thrift address.
        addr: SocketAddr,
        /// Thrift's error.
        reason: String,
    },
    /// The `getRange` answer was not a complete success.
    #[error("getRange on {addr}: success={success} has_more={has_more} error={error:?}")]
    Incomplete {
        /// The node's Thrift address.
        addr: SocketAddr,
        /// `success` of the answer.
        success: bool,
        /// `has_more` of the answer.
        has_more: bool,
        /// `error` of the answer.
        error: Option<String>,
    },
}

/// What a write's answer says about its effect (WIRE §4, docs/replication.md invariant 9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `success = true`: the write is committed and must stay readable.
    Acked,
    /// `UNAVAILABLE` or `NOT_LEADER`: the write was not proposed and must never appear.
    Refused(String),
    /// `TIMEOUT`, or no answer (connection lost, socket timeout): either may be true.
    Unknown(String),
    /// Any other failure (code and message).
    Failed(String),
}

impl Outcome {
    /// A short name for summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Acked => "acked",
            Outcome::Refused(_) => "refused",
            Outcome::Unknown(_) => "unknown",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// How a recorded write is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// `setKey` (no client-side timeout beyond the socket's).
    SetKey,
    /// A one-`set` blind `atomicCommit` at `read_version` with `timeout_seconds`.
    Commit {
        /// Read version of every commit (no conflict keys, so it only has to be retained).
        read_version: i64,
        /// `timeout_seconds` of the request.
        timeout_seconds: i64,
    },
}

/// One write and what its answer said.
#[derive(Clone)]
pub struct WriteRecord {
    /// The key, unique per write.
    pub key: Vec<u8>,
    /// The value written.
    pub value: Vec<u8>,
    /// The node the client was connected to.
    pub node: usize,
    /// When the request was sent.
    pub started: Instant,
    /// When the answer (or the failure) came.
    pub finished: Instant,
    /// The answer.
    pub outcome: Outcome,
}

impl std::fmt::Debug for WriteRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {} via node {}: {:?} after {}ms",
            crate::raw::show(&self.key),
            crate::raw::show(&self.value),
            self.node,
            self.outcome,
            self.finished.duration_since(self.started).as_millis()
        )
    }
}

/// Classifies an `error_code`/`error` pair of an unsuccessful write.
fn classify(code: Option<&str>, error: Option<&str>) -> Outcome {
    let text = format!("{}: {}", code.unwrap_or("<no code>"), error.unwrap_or(""));
    match code {
        Some("UNAVAILABLE" | "NOT_LEADER") => Outcome::Refused(text),
        Some("TIMEOUT") => Outcome::Unknown(text),
        _ => Outcome::Failed(text),
    }
}

/// Sends one write and classifies the answer; a transport error is [`Outcome::Unknown`].
pub fn try_write(client: &mut KvClient, key: &[u8], value: &[u8], kind: WriteKind) -> Outcome {
    let answer = match kind {
        WriteKind::SetKey => client
            .set_key(SetKeyRequest::new(key.to_vec(), value.to_vec(), None))
            .map(|r| (r.success, r.error_code, r.error)),
        WriteKind::Commit {
            read_version,
            timeout_seconds,
        } => client
            .atomic_commit(AtomicCommitRequest::new(
                read_version,
                vec![op_set(key, value)],
                Vec::new(),
                Some(timeout_seconds),
            ))
            .map(|r| (r.success, r.error_code, r.error)),
    };
    match answer {
        Ok((true, _, _)) => Outcome::Acked,
        Ok((false, code, error)) => classify(code.as_deref(), error.as_deref()),
        Err(e) => Outcome::Unknown(format!("no answer: {e:?}")),
    }
}

/// A buffered stock client, or why it could not connect (unlike
/// [`crate::client::connect_buffered`], which panics: load threads must survive a dead node).
///
/// # Errors
/// When the TCP connection cannot be made within [`IO_TIMEOUT`].
pub fn try_connect(addr: SocketAddr) -> Result<KvClient, ReadError> {
    let connect = |source| ReadError::Connect { addr, source };
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(connect)?;
    for r in [
        stream.set_read_timeout(Some(IO_TIMEOUT)),
        stream.set_write_timeout(Some(IO_TIMEOUT)),
        stream.set_nodelay(true),
    ] {
        r.map_err(connect)?;
    }
    let (r, w) = TTcpChannel::with_stream(stream)
        .split()
        .map_err(|e| ReadError::Channel {
            addr,
            reason: e.to_string(),
        })?;
    let r: Box<dyn Read + Send> = Box::new(TBufferedReadTransport::new(r));
    let w: Box<dyn Write + Send> = Box::new(TBufferedWriteTransport::new(w));
    Ok(TransactionalKVSyncClient::new(
        TBinaryInputProtocol::new(r, true),
        TBinaryOutputProtocol::new(w, true),
    ))
}

/// The shape of a [`WriteLoad`].
#[derive(Clone, Debug)]
pub struct WriteLoadConfig {
    /// Nodes the threads write through (`(node id, Thrift address)`); thread `t` starts on
    /// entry `t % len` and moves to the next entry when its connection fails.
    pub targets: Vec<(usize, SocketAddr)>,
    /// Number of writer threads.
    pub threads: usize,
    /// Every key starts with this (a private namespace); keys are `prefix ‖ tNN/SSSSSS`.
    pub prefix: Vec<u8>,
    /// How writes are sent.
    pub kind: WriteKind,
    /// Pause after each write, per thread.
    pub pause: Duration,
    /// Upper bound on writes per thread (the load also stops at [`WriteLoad::finish`]).
    pub max_writes_per_thread: usize,
    /// Upper bound on the load's duration.
    pub max_duration: Duration,
}

/// Writer threads that record every write and its outcome; each key is written once.
///
/// Dropping it (or [`Self::finish`]) stops and joins the threads; each stops within one
/// request (bounded by the socket timeout).
pub struct WriteLoad {
    /// Set to stop the threads.
    stop: Arc<AtomicBool>,
    /// Every finished write so far.
    records: Arc<Mutex<Vec<WriteRecord>>>,
    /// Joined on finish/drop.
    handles: Vec<JoinHandle<()>>,
}

impl WriteLoad {
    /// Starts the threads.
    pub fn start(config: WriteLoadConfig) -> Self {
        assert!(
            !config.targets.is_empty(),
            "a write load needs at least one target"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let handles = (0..config.threads)
            .map(|t| {
                let (stop, records, config) =
                    (Arc::clone(&stop), Arc::clone(&records), config.clone());
                std::thread::Builder::new()
                    .name(format!("write-load-{t}"))
                    .spawn(move || write_thread(t, &config, &stop, &records))
                    .expect("spawn a write-load thread")
            })
            .collect();
        Self {
            stop,
            records,
            handles,
        }
    }

    /// Starts `config` twice under its prefix: `setKey` writes under `set/`, and blind
    /// `atomicCommit`s at `read_version` (5 s timeout) under `commit/` (`config.kind` is
    /// replaced).
    pub fn start_mixed(config: &WriteLoadConfig, read_version: i64) -> Vec<WriteLoad> {
        let commit = WriteKind::Commit {
            read_version,
            timeout_seconds: 5,
        };
        [("set/", WriteKind::SetKey), ("commit/", commit)]
            .into_iter()
            .map(|(sub, kind)| {
                WriteLoad::start(WriteLoadConfig {
                    prefix: [config.prefix.as_slice(), sub.as_bytes()].concat(),
                    kind,
                    ..config.clone()
                })
            })
            .collect()
    }

    /// A copy of every write finished so far.
    pub fn records(&self) -> Vec<WriteRecord> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Number of acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|r| r.outcome == Outcome::Acked)
            .count()
    }

    /// Waits up to `timeout` until `done(records)` holds; returns whether it did.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[WriteRecord]) -> bool) -> bool {
        wait_until(timeout, || {
            done(
                &self
                    .records
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
        })
    }

    /// Stops and joins the threads; returns every record.
    pub fn finish(mut self) -> Vec<WriteRecord> {
        self.join();
        self.records()
    }

    /// Lets the threads run to their end (`max_writes_per_thread` or `max_duration`), joins
    /// them and returns every record.
    pub fn complete(mut self) -> Vec<WriteRecord> {
        for h in self.handles.drain(..) {
            let _joined = h.join();
        }
        self.records()
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _joined = h.join();
        }
    }
}

impl Drop for WriteLoad {
    fn drop(&mut self) {
        self.join();
    }
}

fn write_thread(
    t: usize,
    config: &WriteLoadConfig,
    stop: &AtomicBool,
    records: &Mutex<Vec<WriteRecord>>,
) {
    let deadline = Instant::now() + config.max_duration;
    let mut target = t % config.targets.len();
    let mut client: Option<KvClient> = None;
    let mut seq = 0usize;
    while !stop.load(Ordering::SeqCst)
        && seq < config.max_writes_per_thread
        && Instant::now() < deadline
    {
        let (node, addr) = config.targets[target];
        let kv = match client.as_mut() {
            Some(kv) => kv,
            None => match try_connect(addr) {
                Ok(kv) => client.insert(kv),
                Err(_) => {
                    target = (target + 1) % config.targets.len();
                    std::thread::sleep(POLL);
                    continue;
                }
            },
        };
        let key = [
            config.prefix.as_slice(),
            format!("t{t:02}/{seq:06}").as_bytes(),
        ]
        .concat();
        let value = format!("v{seq}-t{t}-n{node}").into_bytes();
        seq += 1;
        let started = Instant::now();
        let outcome = try_write(kv, &key, &value, config.kind);
        let finished = Instant::now();
        let lost_connection = matches!(&outcome, Outcome::Unknown(e) if e.starts_with("no answer"));
        let pause = match &outcome {
            Outcome::Acked => config.pause,
            _ => config.pause.max(Duration::from_millis(20)),
        };
        records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(WriteRecord {
                key,
                value,
                node,
                started,
                finished,
                outcome,
            });
        if lost_connection {
            client = None;
            target = (target + 1) % config.targets.len();
        }
        std::thread::sleep(pause);
    }
}

/// Counts per outcome kind, plus a few example messages of the non-acked kinds.
pub fn summarize(records: &[WriteRecord]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut examples: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in records {
        *counts.entry(r.outcome.kind()).or_default() += 1;
        let msg = match &r.outcome {
            Outcome::Acked => continue,
            Outcome::Refused(m) | Outcome::Unknown(m) | Outcome::Failed(m) => m,
        };
        let e = examples.entry(r.outcome.kind()).or_default();
        if e.len() < 3 && !e.contains(msg) {
            e.push(msg.clone());
        }
    }
    format!(
        "{} writes: {counts:?}; examples: {examples:?}",
        records.len()
    )
}

/// Every key/value under `prefix` that node `i` serves (`getRange`, unlimited), through a
/// fresh buffered connection.
///
/// # Errors
/// When the node cannot be reached or the range fails.
pub fn read_prefix(
    addr: SocketAddr,
    prefix: &[u8],
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, ReadError> {
    let mut kv = try_connect(addr)?;
    let r = kv
        .get_range(GetRangeRequest {
            begin_key: Some(prefix.to_vec()),
            end_key: Some([prefix, b"\xff"].concat()),
            limit: Some(0),
            ..range_all_absent()
        })
        .map_err(|e| ReadError::Transport {
            addr,
            reason: e.to_string(),
        })?;
    if !r.success || r.has_more {
        return Err(ReadError::Incomplete {
            addr,
            success: r.success,
            has_more: r.has_more,
            error: r.error,
        });
    }
    Ok(r.key_values
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect())
}

/// Checks on every node in `nodes` that each acked write under `prefix` is readable with its
/// value and no refused write is visible. Retries a failing read (bounded by `timeout`), never
/// a wrong answer.
///
/// # Panics
/// On a missing acked write or a visible refused one, listing the first offenders.
pub fn check_writes(
    cluster: &ReplicatedCluster,
    nodes: &[usize],
    prefix: &[u8],
    records: &[WriteRecord],
    timeout: Duration,
) {
    for &i in nodes {
        let addr = cluster.thrift_endpoint(i);
        let mut last = None;
        wait_until(timeout, || {
            let r = read_prefix(addr, prefix);
            let ok = r.is_ok();
            last = Some(r);
            ok
        });
        let seen = match last {
            Some(Ok(seen)) => seen,
            Some(Err(e)) => cluster.fail(&format!(
                "expected to read back prefix {} from node {i} within {timeout:?}: {e}",
                crate::raw::show(prefix)
            )),
            None => cluster.fail(&format!("expected to read node {i} at least once")),
        };
        let mut missing = Vec::new();
        let mut leaked = Vec::new();
        for r in records {
            let got = seen.get(&r.key);
            match &r.outcome {
                Outcome::Acked if got != Some(&r.value) => missing.push(format!(
                    "{} (acked via node {}, {}ms long) -> {:?}",
                    crate::raw::show(&r.key),
                    r.node,
                    r.finished.duration_since(r.started).as_millis(),
                    got.map(|v| crate::raw::show(v))
                )),
                Outcome::Refused(why) if got.is_some() => leaked.push(format!(
                    "{} (refused via node {}: {why})",
                    crate::raw::show(&r.key),
                    r.node
                )),
                _ => {}
            }
        }
        if !missing.is_empty() || !leaked.is_empty() {
            let first = |v: &[String]| v.iter().take(10).cloned().collect::<Vec<_>>().join("\n  ");
            cluster.fail(&format!(
                "node {i}: {} acked writes missing or wrong, {} refused writes visible \
                 ({}):\nmissing:\n  {}\nvisible though refused:\n  {}",
                missing.len(),
                leaked.len(),
                summarize(records),
                first(&missing),
                first(&leaked)
            ));
        }
    }
}

/// A key prefix unique to this process and call (`tag/pid-nanos-counter/`).
pub fn unique_prefix(tag: &str) -> Vec<u8> {
    format!("{tag}/{:016x}/", dolmen_testkit::ports::seed()).into_bytes()
}
