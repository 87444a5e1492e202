//! The register workload: reads (`get`), blind writes (`setKey`) of unique values, and
//! compare-and-set (read version + `snapshotGet` + `atomicCommit` with the register as read
//! conflict key) on keys `reg/<k>`. Jepsen's "independent keys": each key takes at most
//! [`OPS_PER_KEY`] operations, then every client moves to the next key, so each per-key
//! history stays small enough to check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use dolmen_client::{Client, Op};

use super::{classify, parse_num, think, Class, Ctx, Process, Turns, OP_TIMEOUT};
use crate::history::{Event, RegisterCall, RegisterOp, RegisterOutcome};
use crate::rng::Rng;

/// Operations per register before clients move on to a fresh one.
pub const OPS_PER_KEY: u32 = 250;

/// Shared by the register clients: which key is current, and unique values to write.
pub struct Registers {
    /// (current key, operations claimed on it).
    current: Mutex<(u64, u32)>,
    /// The next value to write (unique across the run).
    next_value: AtomicU64,
}

impl Default for Registers {
    fn default() -> Self {
        Self {
            current: Mutex::new((0, 0)),
            next_value: AtomicU64::new(1),
        }
    }
}

impl Registers {
    /// The key the next operation goes to.
    fn claim(&self) -> u64 {
        let mut cur = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cur.1 >= OPS_PER_KEY {
            *cur = (cur.0 + 1, 0);
        }
        cur.1 += 1;
        cur.0
    }

    fn value(&self) -> u64 {
        self.next_value.fetch_add(1, Ordering::Relaxed)
    }
}

/// The Thrift key of register `k`.
pub fn key_bytes(k: u64) -> Vec<u8> {
    format!("reg/{k}").into_bytes()
}

/// Runs one register client until the context stops it.
pub async fn client(ctx: Ctx, regs: std::sync::Arc<Registers>, mut rng: Rng) {
    let mut turns = Turns::new(&ctx);
    let mut process = Process::new(&ctx.recorder);
    // The last value this client saw in its current register (CAS expects it).
    let mut seen: Option<(u64, u64)> = None;
    while let Some((node, c)) = turns.next(&ctx, &mut rng) {
        let key = regs.claim();
        let expect = seen.filter(|(k, _)| *k == key).map(|(_, v)| v);
        let roll = rng.below(100);
        let call = match (roll, expect) {
            (0..=39, _) => RegisterCall::Read,
            (40..=69, _) | (_, None) => RegisterCall::Write(regs.value()),
            (_, Some(expect)) => RegisterCall::Cas {
                expect,
                new: regs.value(),
            },
        };
        let invoke = ctx.recorder.now();
        let outcome = match tokio::time::timeout(OP_TIMEOUT, attempt(c, key, call)).await {
            Ok(o) => o,
            Err(_) => RegisterOutcome::Unknown,
        };
        let class = match outcome {
            RegisterOutcome::Read(v) => {
                seen = v.map(|v| (key, v));
                Class::Ok
            }
            RegisterOutcome::Ok => {
                if let RegisterCall::Write(v) | RegisterCall::Cas { new: v, .. } = call {
                    seen = Some((key, v));
                }
                Class::Ok
            }
            RegisterOutcome::Failed => Class::Failed,
            RegisterOutcome::Unknown => Class::Unknown,
        };
        let complete = (class != Class::Unknown).then(|| ctx.recorder.now());
        ctx.recorder.record(Event::Register(RegisterOp {
            process: process.id,
            node,
            key,
            call,
            invoke,
            complete,
            outcome,
        }));
        process.after(class, &ctx.recorder);
        think(&mut rng).await;
    }
}

fn outcome_of(class: Class) -> RegisterOutcome {
    match class {
        Class::Ok => RegisterOutcome::Ok,
        Class::Failed => RegisterOutcome::Failed,
        Class::Unknown => RegisterOutcome::Unknown,
    }
}

/// One attempt of `call` on register `key` through `c`.
async fn attempt(c: &Client, key: u64, call: RegisterCall) -> RegisterOutcome {
    let k = key_bytes(key);
    match call {
        RegisterCall::Read => match c.get("default", &k).await {
            Ok(None) => RegisterOutcome::Read(None),
            // A value no writer wrote cannot be explained: report it as a value that no write
            // produced (u64::MAX is never written), so the checker flags it.
            Ok(Some(v)) => RegisterOutcome::Read(Some(parse_num(&v).unwrap_or(u64::MAX))),
            Err(e) => outcome_of(classify(&e)),
        },
        RegisterCall::Write(v) => match c.set("default", &k, v.to_string().as_bytes()).await {
            Ok(()) => RegisterOutcome::Ok,
            Err(e) => outcome_of(classify(&e)),
        },
        RegisterCall::Cas { expect, new } => {
            // Nothing is written before the commit: any failure up to it is a definite failure.
            let Ok(rv) = c.read_version().await else {
                return RegisterOutcome::Failed;
            };
            let current = match c.snapshot_get(&k, rv).await {
                Ok(v) => v.and_then(|v| parse_num::<u64>(&v)),
                Err(_) => return RegisterOutcome::Failed,
            };
            if current != Some(expect) {
                return RegisterOutcome::Failed;
            }
            let ops = [Op::Set {
                key: k.clone(),
                value: new.to_string().into_bytes(),
            }];
            match c.commit(rv, &ops, std::slice::from_ref(&k)).await {
                Ok(_) => RegisterOutcome::Ok,
                Err(e) => outcome_of(classify(&e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_rotate_after_the_op_budget() {
        let r = Registers::default();
        for _ in 0..OPS_PER_KEY {
            assert_eq!(r.claim(), 0);
        }
        assert_eq!(r.claim(), 1);
        assert_ne!(r.value(), r.value());
    }
}
