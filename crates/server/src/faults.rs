//! Fault injection (WIRE §3 `setFaultInjection`): a process-wide fault that makes chosen
//! operations sleep and then fail with a chosen error code. Off unless the config allows it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{ErrorCode, ServiceError};

/// Operations a fault can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `atomicCommit` (the default target).
    Commit,
    /// `setKey`.
    Set,
    /// `deleteKey`.
    Delete,
    /// `get`.
    Get,
    /// Every operation above.
    All,
}

impl Target {
    /// Parses `target_operation` (absent = commit).
    pub fn parse(raw: Option<&str>) -> Result<Self, ServiceError> {
        Ok(match raw.unwrap_or("commit") {
            "commit" | "atomicCommit" => Target::Commit,
            "set" | "setKey" => Target::Set,
            "delete" | "deleteKey" => Target::Delete,
            "get" => Target::Get,
            "all" | "*" => Target::All,
            other => {
                return Err(ServiceError::argument(
                    "target_operation",
                    format!("unknown target '{other}'; use commit, set, delete, get or all"),
                ))
            }
        })
    }

    fn covers(self, op: Target) -> bool {
        self == Target::All || self == op
    }
}

#[derive(Clone, Debug)]
struct Fault {
    code: String,
    probability: f64,
    delay: Duration,
    target: Target,
}

/// The installed fault, if any.
#[derive(Debug)]
pub struct FaultInjector {
    /// Whether the node's config allows injection at all.
    allowed: bool,
    fault: Mutex<Option<Fault>>,
    dice: Dice,
}

/// Per-call randomness for node-local faults (not replicated state): a hash of a counter under
/// a per-process random key.
#[derive(Debug, Default)]
pub(crate) struct Dice {
    counter: AtomicU64,
    seed: RandomState,
}

impl Dice {
    /// A uniform draw in `[0, 1)`.
    pub(crate) fn unit(&self) -> f64 {
        let mut h = self.seed.build_hasher();
        h.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        (h.finish() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with `probability` (always at 1 or more).
    pub(crate) fn roll(&self, probability: f64) -> bool {
        probability >= 1.0 || self.unit() < probability
    }
}

impl FaultInjector {
    /// An injector with nothing installed.
    pub fn new(allowed: bool) -> Self {
        Self {
            allowed,
            fault: Mutex::new(None),
            dice: Dice::default(),
        }
    }

    /// Installs (`probability > 0`) or clears (`≤ 0`) the fault.
    pub fn configure(
        &self,
        fault_type: &str,
        probability: f64,
        duration_ms: i32,
        target: Target,
    ) -> Result<(), ServiceError> {
        if !self.allowed {
            return Err(ServiceError::argument(
                "setFaultInjection",
                "fault injection is disabled on this node; start it with \
                 [faults] allow_injection = true (or --allow-fault-injection)",
            ));
        }
        if probability.is_nan() {
            return Err(ServiceError::argument("probability", "must be a number"));
        }
        if probability <= 0.0 {
            *self.fault.lock() = None;
            return Ok(());
        }
        if fault_type.is_empty() {
            return Err(ServiceError::argument("fault_type", "must not be empty"));
        }
        if !(0..=60_000).contains(&duration_ms) {
            return Err(ServiceError::argument(
                "duration_ms",
                format!("must be 0..=60000, got {duration_ms}"),
            ));
        }
        *self.fault.lock() = Some(Fault {
            code: fault_type.to_owned(),
            probability: probability.min(1.0),
            delay: Duration::from_millis(duration_ms.unsigned_abs().into()),
            target,
        });
        Ok(())
    }

    /// Fires the fault for `op` if one is installed and the dice say so: sleeps, then fails.
    pub async fn check(&self, op: Target) -> Result<(), ServiceError> {
        let Some(fault) = self.fault.lock().clone() else {
            return Ok(());
        };
        if !fault.target.covers(op) || !self.dice.roll(fault.probability) {
            return Ok(());
        }
        tokio::time::sleep(fault.delay).await;
        Err(ServiceError::new(
            ErrorCode::Injected(fault.code),
            "injected fault (setFaultInjection)",
        ))
    }
}
