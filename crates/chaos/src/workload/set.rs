//! The set workload: unique elements inserted as keys `set/<element>` with `setKey`; after the
//! cluster healed, the whole prefix is read from every replica at its own read version
//! ([`read_final`]). Every acknowledged insert must be in every final read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dolmen_client::Client;

use super::{classify, parse_num, think, Class, Ctx, Process, Turns, OP_TIMEOUT};
use crate::history::{Event, SetAdd, SetFinal, WriteOutcome};
use crate::rng::Rng;

/// Page size of the final read.
const PAGE: i32 = 1000;
/// Most pages read (bounds the final read loop).
const MAX_PAGES: usize = 100_000;

/// The Thrift key of element `e`: `set/<e>`.
pub fn key_bytes(e: u64) -> Vec<u8> {
    format!("set/{e}").into_bytes()
}

/// Runs one set client until the context stops it; `next` hands out unique elements.
pub async fn client(ctx: Ctx, next: Arc<AtomicU64>, mut rng: Rng) {
    let mut turns = Turns::new(&ctx);
    let mut process = Process::new(&ctx.recorder);
    while let Some((node, c)) = turns.next(&ctx, &mut rng) {
        let element = next.fetch_add(1, Ordering::Relaxed);
        let key = key_bytes(element);
        let invoke = ctx.recorder.now();
        let class = match tokio::time::timeout(OP_TIMEOUT, c.set("default", &key, b"1")).await {
            Ok(Ok(())) => Class::Ok,
            Ok(Err(e)) => classify(&e),
            Err(_) => Class::Unknown,
        };
        let outcome = match class {
            Class::Ok => WriteOutcome::Ok,
            Class::Failed => WriteOutcome::Failed,
            Class::Unknown => WriteOutcome::Unknown,
        };
        ctx.recorder.record(Event::SetAdd(SetAdd {
            process: process.id,
            node,
            element,
            invoke,
            complete: (class != Class::Unknown).then(|| ctx.recorder.now()),
            outcome,
        }));
        process.after(class, &ctx.recorder);
        think(&mut rng).await;
    }
}

/// The whole set as node `node` (reached through `c`) serves it at a read version it gives.
///
/// # Errors
/// When a request fails (the caller retries, bounded).
pub async fn read_final(c: &Client, node: usize) -> anyhow::Result<SetFinal> {
    let version = c.read_version().await?;
    let mut elements = Vec::new();
    let mut begin: Vec<u8> = b"set/".to_vec();
    let mut inclusive = true;
    for _ in 0..MAX_PAGES {
        let (pairs, more) = c
            .snapshot_range("default", (&begin, inclusive), b"set0", PAGE, version)
            .await?;
        for (k, _) in &pairs {
            match k.strip_prefix(b"set/").and_then(parse_num::<u64>) {
                Some(e) => elements.push(e),
                None => anyhow::bail!(
                    "node {node} returned a set key that no client wrote: {:?}",
                    String::from_utf8_lossy(k)
                ),
            }
        }
        match pairs.last() {
            Some((k, _)) if more => {
                begin = k.to_vec();
                inclusive = false;
            }
            _ => {
                elements.sort_unstable();
                return Ok(SetFinal {
                    node,
                    version,
                    elements,
                });
            }
        }
    }
    anyhow::bail!("node {node}: the set did not fit in {MAX_PAGES} pages")
}
