//! Checkers: turn a recorded history into a verdict with an explanation a human can act on.
//! Pure functions over the types of [`crate::history`]; no I/O, no panics on malformed input
//! (a history the checkers cannot interpret yields [`Verdict::Unknown`], never a pass).
//!
//! ```text
//!   history.jsonl ──► RegisterOp* ──► check_registers ─┐
//!                     BankRead*   ──► check_bank      ─┼─► Report { verdict, explanation }
//!          Transfer*, BankRead*   ──► check_bank_versions ┤
//!                     SetAdd*, SetFinal* ─► check_set ─┤
//!                     ListAppendTxn* ─► check_list_append ┘
//! ```
//!
//! - [`check_registers`]: per-key linearizability of a register (Wing & Gong search with Lowe's
//!   memoization, as in porcupine).
//! - [`check_bank`]: every snapshot read sees all accounts and the conserved total.
//! - [`check_bank_versions`]: every read at version `R` shows exactly the transfers committed
//!   at or below `R` (a snapshot across groups, each transfer across groups whole or absent).
//! - [`check_set`]: no acknowledged insert lost, nothing invented, replicas agree.
//! - [`check_list_append`]: strict serializability of list-append transactions (Elle's
//!   dependency-graph cycles).

mod bank;
mod bank_versions;
mod elle;
mod register;
mod set;

use std::time::Instant;

use serde::Serialize;

pub use bank::check_bank;
pub use bank_versions::check_bank_versions;
pub use elle::check_list_append;
pub use register::check_registers;
pub use set::check_set;

/// How many entries a list in an explanation shows before it says "and N more".
pub(crate) const MAX_LISTED: usize = 10;

/// Bounds on the register search. Exceeding one makes the verdict [`Verdict::Unknown`], never a
/// pass.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most search states (distinct sets of linearized operations × register value) explored for
    /// one key before giving up. Each costs roughly 60–100 bytes of memory.
    pub max_states_per_key: u64,
    /// Give up on keys not finished by this instant (shared by all keys of one call).
    pub deadline: Option<Instant>,
}

impl Default for Limits {
    /// 5 000 000 states per key (a few hundred MB at worst), no deadline.
    fn default() -> Self {
        Limits {
            max_states_per_key: 5_000_000,
            deadline: None,
        }
    }
}

/// The outcome of one checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The history satisfies the property.
    Ok,
    /// The history definitely violates the property; the explanation says where.
    Violation,
    /// The checker could not decide: a search limit was hit, the history was malformed, or there
    /// was nothing to check. Never to be read as a pass.
    Unknown,
}

/// What a checker found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Which checker: `"register"`, `"bank"` or `"set"`.
    pub checker: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// How many operations (registers, set inserts) or reads (bank) were examined.
    pub checked: u64,
    /// Human-readable detail. For a violation: the key or read involved and the smallest useful
    /// context (operations with times, node and process, and why no order works).
    pub explanation: String,
}

impl Report {
    /// Whether the verdict is [`Verdict::Ok`] (an `Unknown` verdict is not a pass).
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Ok
    }
}

/// Formats nanoseconds since the start of the run as milliseconds with three decimals.
pub(crate) fn ms(nanos: u64) -> String {
    format!("{}.{:03}", nanos / 1_000_000, (nanos / 1_000) % 1_000)
}

/// Appends up to [`MAX_LISTED`] items to `out`, one per line with `indent`, then "… and N more".
pub(crate) fn push_capped<I: IntoIterator<Item = String>>(
    out: &mut String,
    indent: &str,
    items: I,
) {
    let mut extra = 0usize;
    for (i, item) in items.into_iter().enumerate() {
        if i < MAX_LISTED {
            out.push('\n');
            out.push_str(indent);
            out.push_str(&item);
        } else {
            extra += 1;
        }
    }
    if extra > 0 {
        out.push('\n');
        out.push_str(indent);
        out.push_str(&format!("… and {extra} more"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_serialize_lowercase() {
        let report = Report {
            checker: "bank",
            verdict: Verdict::Violation,
            checked: 3,
            explanation: "x".into(),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["verdict"], "violation");
        assert_eq!(json["checker"], "bank");
        assert_eq!(json["checked"], 3);
        assert_eq!(serde_json::to_value(Verdict::Ok).unwrap(), "ok");
        assert_eq!(serde_json::to_value(Verdict::Unknown).unwrap(), "unknown");
        assert!(!report.passed());
    }

    #[test]
    fn only_ok_passes() {
        let mut report = Report {
            checker: "set",
            verdict: Verdict::Ok,
            checked: 0,
            explanation: String::new(),
        };
        assert!(report.passed());
        report.verdict = Verdict::Unknown;
        assert!(!report.passed());
    }

    #[test]
    fn default_limits_and_time_format() {
        let limits = Limits::default();
        assert_eq!(limits.max_states_per_key, 5_000_000);
        assert!(limits.deadline.is_none());
        assert_eq!(ms(12_345_678), "12.345");
        assert_eq!(ms(0), "0.000");
        assert_eq!(ms(1_000_000_000), "1000.000");
    }

    #[test]
    fn capped_lists_say_how_many_were_left_out() {
        let mut out = String::new();
        push_capped(&mut out, "  ", (0..MAX_LISTED + 3).map(|i| i.to_string()));
        assert_eq!(out.lines().count(), MAX_LISTED + 2);
        assert!(out.ends_with("… and 3 more"));
    }
}
