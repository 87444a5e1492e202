//! The bank workload: [`ACCOUNTS`] accounts `bank/<i>` created before any fault with
//! [`INITIAL`] each; transfers read both balances at one read version and commit both new
//! balances with both accounts as read-conflict keys; reads take one read version and read
//! every account in one `snapshotGetRange`. Every read must sum to the initial total.
//!
//! The two accounts of a transfer are drawn at random, so on a sharded cluster split between
//! accounts 3 and 4 (`--split-keys bank/4,...`) four transfers in seven reach both ranges and
//! commit by two-phase commit; the others stay in one range (the fast path).

use std::time::{Duration, Instant};

use dolmen_client::{Client, Op};

use super::{classify, parse_num, refusal_code, think, Class, Ctx, Process, Turns, OP_TIMEOUT};
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

/// The Thrift key of account `i`: `bank/<i>`.
pub fn account_key(i: u32) -> Vec<u8> {
    format!("bank/{i}").into_bytes()
}

/// Creates every account with [`INITIAL`], one commit per account, before any fault and before
/// any client reads: each commit stays in one range on a sharded cluster (one Raft round, no
/// two-phase commit to settle before the run starts). Each commit is retried until it
/// succeeds, which is safe because it writes an absolute value and nothing else writes these
/// keys yet.
///
/// # Errors
/// When an account could not be created within `timeout` (the message names it).
pub async fn preload(nodes: &[std::net::SocketAddr], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut attempt = 0usize;
    for i in 0..ACCOUNTS {
        let ops = [Op::Set {
            key: account_key(i),
            value: INITIAL.to_string().into_bytes(),
        }];
        let mut last = String::from("not tried");
        loop {
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "could not create bank account {i} (bank/{i}) within {timeout:?}; last \
                     error: {last}"
                );
            }
            let Some(&addr) = nodes.get(attempt % nodes.len().max(1)) else {
                anyhow::bail!("no nodes to preload the bank through");
            };
            attempt += 1;
            let c = Client::new(addr, super::REQUEST_TIMEOUT);
            let result = async {
                let rv = c.read_version().await?;
                c.commit(rv, &ops, &[]).await
            }
            .await;
            match result {
                Ok(_) => break,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
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
            let answer = match tokio::time::timeout(OP_TIMEOUT, transfer(c, from, to, amount)).await
            {
                Ok(Some(answer)) => answer,
                // Not enough money: nothing was attempted, nothing to record.
                Ok(None) => {
                    think(&mut rng).await;
                    continue;
                }
                Err(_) => Answer::failed(Class::Unknown, None),
            };
            let Answer {
                class,
                code,
                commit_version,
            } = answer;
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
                code,
                commit_version,
            }));
            process.after(class, &ctx.recorder);
        }
        think(&mut rng).await;
    }
}

/// How one transfer attempt ended.
struct Answer {
    /// Its class.
    class: Class,
    /// The error code of the commit's refusal, if it was refused with one.
    code: Option<String>,
    /// The commit version, when it committed.
    commit_version: Option<i64>,
}

impl Answer {
    /// An attempt that did not commit (or may have, with an unknown version).
    fn failed(class: Class, code: Option<String>) -> Self {
        Self {
            class,
            code,
            commit_version: None,
        }
    }
}

/// One transfer attempt; `None` when `from` cannot cover `amount` (nothing committed).
async fn transfer(c: &Client, from: u32, to: u32, amount: i64) -> Option<Answer> {
    let (kf, kt) = (account_key(from), account_key(to));
    // Nothing is written before the commit: any failure up to it is a definite failure.
    let Ok(rv) = c.read_version().await else {
        return Some(Answer::failed(Class::Failed, None));
    };
    let (Ok(bf), Ok(bt)) = (c.snapshot_get(&kf, rv).await, c.snapshot_get(&kt, rv).await) else {
        return Some(Answer::failed(Class::Failed, None));
    };
    let (Some(bf), Some(bt)) = (balance(bf), balance(bt)) else {
        return Some(Answer::failed(Class::Failed, None));
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
        Ok(version) => Answer {
            class: Class::Ok,
            code: None,
            commit_version: Some(version),
        },
        Err(e) => Answer::failed(classify(&e), refusal_code(&e)),
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
