//! A violation in words: the longest linearizable prefix (its tail), the register after it,
//! the operation that had to come next and why it cannot, and why none of the others helps;
//! also violations found without searching (a value nothing wrote).

use std::fmt::Write as _;

use super::prepare::{Kind, Op, Prepared, Val, ABSENT};
use super::search::{DeadEnd, Search};
use crate::check::{ms, push_capped};
use crate::history::{RegisterCall, RegisterOp, RegisterOutcome};

impl Search<'_> {
    /// Explains why no order works, from the deepest dead end.
    pub(super) fn explain_violation(&self, raw: &[RegisterOp]) -> String {
        let p = self.p;
        let Some(dead) = &self.deepest else {
            return "not linearizable (no dead end recorded)".to_string();
        };
        let describe = |op: usize| describe_op(raw, &p.ops[op], &p.values);
        let value = |v: Val| show_value(&p.values, v);
        let mut text = String::from("not linearizable. ");
        if dead.depth == 0 {
            text.push_str("No operation can even go first; the register starts absent.");
        } else {
            let _ = write!(
                text,
                "The longest linearizable prefix has {} ops{}:",
                dead.depth,
                if dead.depth > dead.tail.len() {
                    ", ending with"
                } else {
                    ""
                }
            );
            push_capped(&mut text, "  ", dead.tail.iter().map(|&op| describe(op)));
            let _ = write!(
                text,
                "\nafter which the register holds {}.",
                value(dead.state)
            );
        }

        let blocked = &p.ops[dead.blocked];
        let _ = write!(
            text,
            "\nNext must come {} (the earliest of the remaining ops to complete), but it cannot: \
             {}.",
            describe(dead.blocked),
            self.why_not(dead, dead.blocked)
        );
        if let Kind::Read(v) = blocked.kind {
            let _ = write!(text, " {}.", self.read_hint(raw, dead, v, blocked));
        }
        let others: Vec<usize> = dead
            .candidates
            .iter()
            .copied()
            .filter(|&op| op != dead.blocked)
            .collect();
        if !others.is_empty() {
            text.push_str("\nOther ops that could go before it, and why none helps:");
            let hidden = dead.candidate_count.saturating_sub(dead.candidates.len());
            push_capped(
                &mut text,
                "  ",
                others
                    .iter()
                    .map(|&op| format!("{}: {}", describe(op), self.why_not(dead, op))),
            );
            if hidden > 0 {
                let _ = write!(text, "\n  … and {hidden} more");
            }
        }
        text
    }

    /// Why `op` cannot be linearized right after the dead end's prefix.
    fn why_not(&self, dead: &DeadEnd, op: usize) -> String {
        let state = show_value(&self.p.values, dead.state);
        match self.p.ops[op].kind {
            Kind::Read(v) if v != dead.state => {
                format!(
                    "it read {} but the register holds {state}",
                    show_value(&self.p.values, v)
                )
            }
            Kind::Cas { expect, .. } if expect != dead.state => format!(
                "it expects {} but the register holds {state}",
                show_value(&self.p.values, expect)
            ),
            _ => "it can go next, but every order that continues from it fails later".to_string(),
        }
    }

    /// For a read of `v` that cannot be placed: where the writes of `v` are.
    fn read_hint(&self, raw: &[RegisterOp], dead: &DeadEnd, v: Val, read: &Op) -> String {
        let p = self.p;
        let shown = show_value(&p.values, v);
        if v == ABSENT {
            return "A written register never becomes absent again".to_string();
        }
        let writers: Vec<usize> = (0..p.ops.len())
            .filter(|&op| p.ops[op].kind.written() == Some(v))
            .collect();
        if writers.is_empty() {
            return unwritten_reason(raw, p, read.index, v);
        }
        let list = |ops: &[usize]| -> String {
            let mut s: Vec<String> = ops
                .iter()
                .take(3)
                .map(|&op| describe_op(raw, &p.ops[op], &p.values))
                .collect();
            if ops.len() > 3 {
                s.push(format!("… and {} more", ops.len() - 3));
            }
            s.join("; ")
        };
        let (done, remaining): (Vec<usize>, Vec<usize>) =
            writers.iter().partition(|&&op| dead.linearized[op]);
        let concurrent: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|op| dead.candidates.contains(op))
            .collect();
        if !concurrent.is_empty() {
            format!(
                "A concurrent write of {shown} exists ({}), but every order that applies it \
                 first fails later",
                list(&concurrent)
            )
        } else if !remaining.is_empty() && done.is_empty() {
            format!(
                "The writes of {shown} cannot take effect before this read: {}",
                list(&remaining)
            )
        } else {
            format!(
                "Every write of {shown} that could precede this read is already overwritten: {}",
                list(&done)
            )
        }
    }
}

/// Why nothing can produce `v` (interned, not absent) for the op at `raw[index]`: no op of its
/// key wrote it, or only failed ones did.
fn unwritten_reason(raw: &[RegisterOp], p: &Prepared, index: usize, v: Val) -> String {
    let shown = show_value(&p.values, v);
    let raw_v = p.values.get((v as usize).wrapping_sub(1)).copied();
    let key = raw.get(index).map(|op| op.key);
    let writes = |op: &RegisterOp| match op.call {
        RegisterCall::Write(w) | RegisterCall::Cas { new: w, .. } => Some(w) == raw_v,
        RegisterCall::Read => false,
    };
    let failed = raw
        .iter()
        .any(|op| Some(op.key) == key && op.outcome == RegisterOutcome::Failed && writes(op));
    if failed {
        format!("The only writes of {shown} failed (definitely had no effect)")
    } else {
        format!("No operation ever wrote {shown}")
    }
}

/// A completed read or compare-and-set that needs a value no kept operation writes: a
/// violation found without searching.
pub(super) fn unwritten_value(raw: &[RegisterOp], p: &Prepared) -> Option<String> {
    let mut written = vec![false; p.values.len() + 1];
    for op in &p.ops {
        if let Some(v) = op.kind.written() {
            written[v as usize] = true;
        }
    }
    p.ops
        .iter()
        .filter(|op| op.complete.is_some())
        .find_map(|op| {
            let v = match op.kind {
                Kind::Read(v) | Kind::Cas { expect: v, .. } => v,
                Kind::Write(_) => return None,
            };
            (v != ABSENT && !written[v as usize]).then(|| {
                format!(
                    "not linearizable: {} needs the register to hold {}. {}.",
                    describe_op(raw, op, &p.values),
                    show_value(&p.values, v),
                    unwritten_reason(raw, p, op.index, v)
                )
            })
        })
}

/// `5`, or `absent`.
fn show_value(values: &[u64], v: Val) -> String {
    if v == ABSENT {
        "absent".to_string()
    } else {
        values
            .get(v as usize - 1)
            .map_or_else(|| "?".to_string(), |v| v.to_string())
    }
}

/// `#17 p4 n2 read→5 @12.345–12.400 ms`, from the caller's operation.
fn describe_op(raw: &[RegisterOp], op: &Op, values: &[u64]) -> String {
    let r = &raw[op.index];
    let what = match op.kind {
        Kind::Read(v) => format!("read→{}", show_value(values, v)),
        Kind::Write(v) => format!("write({})", show_value(values, v)),
        Kind::Cas { expect, new } => {
            format!(
                "cas({}→{})",
                show_value(values, expect),
                show_value(values, new)
            )
        }
    };
    let outcome = if op.complete.is_none() {
        " unknown-outcome"
    } else {
        ""
    };
    let complete = match r.complete {
        Some(c) => ms(c),
        None => "?".to_string(),
    };
    format!(
        "#{} p{} n{} {what}{outcome} @{}–{} ms",
        op.index,
        r.process,
        r.node,
        ms(r.invoke),
        complete
    )
}
