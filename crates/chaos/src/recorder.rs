//! [`Recorder`]: the run's clock and its history. Every event is appended to `history.jsonl`
//! as it happens (a run that dies half-way still leaves what it saw) and kept in memory for
//! the checkers; live counters feed the progress lines.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;

use crate::history::{Event, Nanos, NemesisEvent, RegisterOutcome, WriteOutcome};

/// The history of one run.
pub struct Recorder {
    /// Time zero of the run (all [`Nanos`] count from here).
    start: Instant,
    /// The file and the events so far; one lock so both stay in the same order.
    inner: Mutex<Inner>,
    /// Source of process ids (a client takes a fresh one after an unknown outcome).
    next_process: AtomicU64,
    /// Operations completed (any outcome), for the ops/s progress line.
    ops: AtomicU64,
}

struct Inner {
    /// `history.jsonl`, one event per line.
    file: BufWriter<File>,
    /// Every event, in recording order.
    events: Vec<Event>,
    /// The first write error (later events are still kept in memory).
    write_error: Option<String>,
}

impl Recorder {
    /// A recorder writing to `path` (created or truncated), with time zero now.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
        Ok(Self {
            start: Instant::now(),
            inner: Mutex::new(Inner {
                file: BufWriter::new(file),
                events: Vec::new(),
                write_error: None,
            }),
            next_process: AtomicU64::new(0),
            ops: AtomicU64::new(0),
        })
    }

    /// Nanoseconds since time zero.
    pub fn now(&self) -> Nanos {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A process id never handed out before.
    pub fn new_process(&self) -> u64 {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    /// Operations recorded so far (not counting nemesis events and set finals).
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Appends `event`.
    pub fn record(&self, event: Event) {
        if !matches!(event, Event::Nemesis(_) | Event::SetFinal(_)) {
            self.ops.fetch_add(1, Ordering::Relaxed);
        }
        let line = serde_json::to_string(&event);
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let written = match line {
            Ok(line) => writeln!(inner.file, "{line}").map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = written {
            inner.write_error.get_or_insert(e);
        }
        inner.events.push(event);
    }

    /// Records a nemesis action now.
    pub fn nemesis(&self, action: &str, nodes: Vec<usize>, detail: String) {
        self.record(Event::Nemesis(NemesisEvent {
            at: self.now(),
            action: action.to_owned(),
            nodes,
            detail,
        }));
    }

    /// Flushes the file and returns every event recorded.
    ///
    /// # Errors
    /// When a write to the file failed.
    pub fn finish(&self) -> anyhow::Result<Vec<Event>> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.file.flush().context("flush history.jsonl")?;
        if let Some(e) = &inner.write_error {
            anyhow::bail!("writing history.jsonl failed: {e}");
        }
        Ok(inner.events.clone())
    }
}

/// Counts of operations by workload and outcome, and of nemesis actions by kind.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    /// workload → outcome → count (`read` counts reads that returned a value).
    pub operations: BTreeMap<String, BTreeMap<String, u64>>,
    /// nemesis action → count.
    pub faults: BTreeMap<String, u64>,
}

impl Tally {
    /// Counts `events`.
    pub fn of(events: &[Event]) -> Self {
        let mut t = Tally::default();
        let mut add = |workload: &str, outcome: &str| {
            *t.operations
                .entry(workload.to_owned())
                .or_default()
                .entry(outcome.to_owned())
                .or_default() += 1;
        };
        let write = |o: WriteOutcome| match o {
            WriteOutcome::Ok => "ok",
            WriteOutcome::Failed => "failed",
            WriteOutcome::Unknown => "unknown",
        };
        let mut faults: BTreeMap<String, u64> = BTreeMap::new();
        for e in events {
            match e {
                Event::Register(op) => add(
                    "register",
                    match op.outcome {
                        RegisterOutcome::Read(_) => "read",
                        RegisterOutcome::Ok => "ok",
                        RegisterOutcome::Failed => "failed",
                        RegisterOutcome::Unknown => "unknown",
                    },
                ),
                Event::Transfer(op) => add("bank-transfer", write(op.outcome)),
                Event::BankRead(_) => add("bank-read", "ok"),
                Event::SetAdd(op) => add("set-add", write(op.outcome)),
                Event::SetFinal(_) => add("set-final", "ok"),
                Event::ListAppend(t) => add("list-append", write(t.outcome)),
                Event::Nemesis(n) => *faults.entry(n.action.clone()).or_default() += 1,
            }
        }
        t.faults = faults;
        t
    }
}
