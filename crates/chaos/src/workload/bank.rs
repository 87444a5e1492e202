//! The bank workload: [`ACCOUNTS`] accounts `bank/<i>` created before any fault with
//! [`INITIAL`] each; transfers read both balances at one read version and commit both new
//! balances with both accounts as read-conflict keys; reads take one read version and read
//! every account in one `snapshotGetRange`. Every read must sum to the initial total.

use std::time::{Duration, Instant};

use dolmen_client::{Client, Op};

use super::{classify, parse_num, think, Class, Ctx, Process, Turns, OP_TIMEOUT};
use crate::history::{BankRead, Event, TransferOp, WriteOutcome};
use crate::rng::Rng;

/// Number of accounts.
pub const ACCOUNTS: u32 = 8;
/// Initial balance of each account.
pub const INITIAL: i64 = 100;
/// Largest amount moved by one transfer.
const MAX_AMOUNT: u64 = 5;

/// The invariant total.
pub fn total() -> i64 {
    INITIAL * i64::from(ACCOUNTS)
}

fn account_key(i: u32) -> Vec<u8> {
    format!("bank/{i}").into_bytes()
}

/// Creates every account with [`INITIAL`] in one commit (before any fault; retried, which is
/// safe because it writes absolute values and nothing else writes these keys yet).
///
/// # Errors
/// When no attempt succeeded within `timeout`.
pub async fn preload(nodes: &[std::net::SocketAddr], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let ops: Vec<Op> = (0..ACCOUNTS)
        .map(|i| Op::Set {
            key: account_key(i),
            value: INITIAL.to_string().into_bytes(),
        })
        .collect();
    let mut last = String::from("not tried");
    for attempt in 0u64..1000 {
        if Instant::now() >= deadline {
            break;
        }
        let Some(&addr) = nodes.get(usize::try_from(attempt).unwrap_or(0) % nodes.len().max(1))
        else {
            anyhow::bail!("no nodes to preload the bank through");
        };
        let c = Client::new(addr, super::REQUEST_TIMEOUT);
        let result = async {
            let rv = c.read_version().await?;
            c.commit(rv, &ops, &[]).await
        }
        .await;
        match result {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("could not create the bank accounts within {timeout:?}; last error: {last}")
}

/// Runs one bank client until the context stops it.
pub async fn client(ctx: Ctx, mut rng: Rng) {
    let mut turns = Turns::new(&ctx);
    let mut process = Process::new(&ctx.recorder);
    while let Some((node, c)) = turns.next(&ctx, &mut rng) {
        if rng.chance(0.35) {
            let invoke = ctx.recorder.now();
            if let Ok(Some((version, balances))) =
                tokio::time::timeout(OP_TIMEOUT, read_all(c)).await
            {
                ctx.recorder.record(Event::BankRead(BankRead {
                    process: process.id,
                    node,
                    version,
                    invoke,
                    complete: ctx.recorder.now(),
                    balances,
                }));
            }
        } else {
            let from = u32::try_from(rng.below(u64::from(ACCOUNTS))).unwrap_or(0);
            let to = (from + 1 + u32::try_from(rng.below(u64::from(ACCOUNTS - 1))).unwrap_or(0))
                % ACCOUNTS;
            let amount = i64::try_from(rng.between(1, MAX_AMOUNT)).unwrap_or(1);
            let invoke = ctx.recorder.now();
            let class = match tokio::time::timeout(OP_TIMEOUT, transfer(c, from, to, amount)).await
            {
                Ok(Some(class)) => class,
                // Not enough money: nothing was attempted, nothing to record.
                Ok(None) => {
                    think(&mut rng).await;
                    continue;
                }
                Err(_) => Class::Unknown,
            };
            let outcome = match class {
                Class::Ok => WriteOutcome::Ok,
                Class::Failed => WriteOutcome::Failed,
                Class::Unknown => WriteOutcome::Unknown,
            };
            let complete = (class != Class::Unknown).then(|| ctx.recorder.now());
            ctx.recorder.record(Event::Transfer(TransferOp {
                process: process.id,
                node,
                from,
                to,
                amount,
                invoke,
                complete,
                outcome,
            }));
            process.after(class, &ctx.recorder);
        }
        think(&mut rng).await;
    }
}

/// One transfer attempt; `None` when `from` cannot cover `amount` (nothing committed).
async fn transfer(c: &Client, from: u32, to: u32, amount: i64) -> Option<Class> {
    let (kf, kt) = (account_key(from), account_key(to));
    // Nothing is written before the commit: any failure up to it is a definite failure.
    let Ok(rv) = c.read_version().await else {
        return Some(Class::Failed);
    };
    let (Ok(bf), Ok(bt)) = (c.snapshot_get(&kf, rv).await, c.snapshot_get(&kt, rv).await) else {
        return Some(Class::Failed);
    };
    let (Some(bf), Some(bt)) = (balance(bf), balance(bt)) else {
        return Some(Class::Failed);
    };
    if bf < amount {
        return None;
    }
    let ops = [
        Op::Set {
            key: kf.clone(),
            value: (bf - amount).to_string().into_bytes(),
        },
        Op::Set {
            key: kt.clone(),
            value: (bt + amount).to_string().into_bytes(),
        },
    ];
    Some(match c.commit(rv, &ops, &[kf, kt]).await {
        Ok(_) => Class::Ok,
        Err(e) => classify(&e),
    })
}

/// A balance as read (`None` when absent or unparsable).
fn balance<B: AsRef<[u8]>>(v: Option<B>) -> Option<i64> {
    v.and_then(|v| parse_num::<i64>(v.as_ref()))
}

/// Every balance at one read version; `None` when any request failed.
async fn read_all(c: &Client) -> Option<(i64, Vec<Option<i64>>)> {
    let rv = c.read_version().await.ok()?;
    let (pairs, _more) = c
        .snapshot_range("default", (b"bank/", true), b"bank0", 1000, rv)
        .await
        .ok()?;
    let mut balances = vec![None; usize::try_from(ACCOUNTS).unwrap_or(0)];
    for (k, v) in pairs {
        let Some(i) = k.strip_prefix(b"bank/").and_then(parse_num::<usize>) else {
            continue;
        };
        if let Some(slot) = balances.get_mut(i) {
            // An unparsable balance reads as i64::MIN, which breaks the total visibly.
            *slot = Some(parse_num(&v).unwrap_or(i64::MIN));
        }
    }
    Some((rv, balances))
}
