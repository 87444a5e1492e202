//! `dolmen import`: copies every key of a running `TransactionalKV` server (the older
//! single-node server, or another Dolmen) into a Dolmen node or cluster through the Thrift API
//! alone, resumably (docs/backup.md §5).
//!
//! ```text
//!  per column family: scan_page(after cursor) on the source ─▶ atomicCommit of the page's
//!     keys on the target (≤ 500 keys, ≤ 4 MiB) ─▶ state file: cursor, counts (written, then
//!     renamed) ─▶ … until the source has no more
//!  then: scan both sides, count and CRC-64 every (cf, key, value); equal or an error
//! ```
//! The source needs no MVCC: it is read page by page as it is. Writes to the source during
//! the copy are not captured unless the source is quiesced; the final comparison shows them.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dolmen_api::gen;
use dolmen_client::Client;
use dolmen_engine::{BackupRecord, Checksum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pilota::Bytes;
use serde::{Deserialize, Serialize};

/// Keys read per page from the source.
const PAGE_KEYS: i32 = 500;
/// Most bytes of keys and values in one commit to the target (the limit is 10 MB).
const COMMIT_BYTES: usize = 4 << 20;

/// `dolmen import` flags.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Thrift address of the server to copy from.
    #[arg(long)]
    from: SocketAddr,
    /// Thrift address of the Dolmen node to copy into (any member of a cluster).
    #[arg(long, default_value = "127.0.0.1:9090")]
    to: SocketAddr,
    /// Column families to copy, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    column_families: Vec<String>,
    /// Where progress is kept; an interrupted import started again with the same file goes on
    /// where it stopped.
    #[arg(long, default_value = "dolmen-import.json")]
    state: PathBuf,
    /// The source speaks the framed transport only (by default requests are sent unframed,
    /// which stock servers and Dolmen accept).
    #[arg(long)]
    source_framed: bool,
    /// Timeout of one request, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

/// The import's progress, saved after every commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ImportState {
    /// The source, so a state file is not resumed against another one.
    source: String,
    /// Per column family.
    column_families: BTreeMap<String, CfProgress>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct CfProgress {
    /// The last key copied, hex; empty before the first.
    after: String,
    /// Keys copied so far.
    copied: u64,
    /// The source had no more keys.
    done: bool,
}

/// Runs `dolmen import`.
pub fn run(args: ImportArgs) -> std::process::ExitCode {
    let Some(runtime) = crate::small_runtime() else {
        return std::process::ExitCode::from(1);
    };
    match runtime.block_on(import(&args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dolmen import: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let source = if args.source_framed {
        Client::new(args.from, timeout)
    } else {
        Client::new_unframed(args.from, timeout)
    };
    let target = Client::new(args.to, timeout);
    let mut state = load_state(&args.state, &args.from.to_string())?;
    let started = Instant::now();
    let bar = spinner();
    for cf in &args.column_families {
        let progress = state.column_families.entry(cf.clone()).or_default().clone();
        if progress.done {
            eprintln!("{cf}: already copied ({} keys)", progress.copied);
            continue;
        }
        if progress.copied > 0 {
            eprintln!("{cf}: resuming after {} keys", progress.copied);
        }
        copy_column_family(
            &source,
            &target,
            cf,
            progress,
            &mut state,
            &args.state,
            &bar,
        )
        .await?;
    }
    bar.finish_and_clear();
    let copied: u64 = state.column_families.values().map(|p| p.copied).sum();
    let secs = started.elapsed().as_secs_f64().max(0.001);
    eprintln!(
        "copied {copied} keys in {secs:.1} s ({:.0} keys/s); comparing",
        copied as f64 / secs
    );

    for cf in &args.column_families {
        let theirs = summarize(&source, cf).await?;
        let ours = summarize(&target, cf).await?;
        if theirs != ours {
            anyhow::bail!(
                "{cf}: the source holds {} keys (CRC-64 {:016x}), the target {} ({:016x}); was \
                 the source written to during the copy? Quiesce it and run the import again \
                 with a new --state file",
                theirs.0,
                theirs.1,
                ours.0,
                ours.1
            );
        }
        println!(
            "{cf}: {} keys, CRC-64 {:016x} on both sides",
            ours.0, ours.1
        );
    }
    Ok(())
}

/// Copies `cf` from `after` on, saving the state after every commit.
async fn copy_column_family(
    source: &Client,
    target: &Client,
    cf: &str,
    mut progress: CfProgress,
    state: &mut ImportState,
    state_path: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let mut after = decode_hex(&progress.after)?;
    loop {
        let (pairs, more) = source
            .scan_page(cf, after.as_deref(), PAGE_KEYS)
            .await
            .map_err(|e| anyhow::anyhow!("reading {cf} from the source: {e}"))?;
        for batch in batches(&pairs) {
            commit(target, cf, batch).await?;
        }
        if let Some((last, _)) = pairs.last() {
            after = Some(last.to_vec());
            progress.after = hex(last);
            progress.copied += pairs.len() as u64;
        }
        progress.done = !more || pairs.is_empty();
        state
            .column_families
            .insert(cf.to_owned(), progress.clone());
        save_state(state_path, state)?;
        bar.set_message(format!("{cf}: {} keys", progress.copied));
        bar.inc(pairs.len() as u64);
        if progress.done {
            return Ok(());
        }
    }
}

/// `pairs` cut into commits of at most [`COMMIT_BYTES`].
fn batches(pairs: &[(Bytes, Bytes)]) -> Vec<&[(Bytes, Bytes)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (key, value)) in pairs.iter().enumerate() {
        let size = key.len() + value.len();
        if i > start && bytes + size > COMMIT_BYTES {
            out.push(&pairs[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < pairs.len() {
        out.push(&pairs[start..]);
    }
    out
}

/// Writes `pairs` into `cf` of the target in one commit (sets only: repeating it after an
/// interruption writes the same values again). On a sharded target a batch whose keys reach
/// several ranges commits across them like any other (docs/sharding.md §6.3).
async fn commit(target: &Client, cf: &str, pairs: &[(Bytes, Bytes)]) -> anyhow::Result<()> {
    let read_version = target
        .read_version()
        .await
        .map_err(|e| anyhow::anyhow!("the target: {e}"))?;
    let operations = pairs
        .iter()
        .map(|(key, value)| gen::Operation {
            r#type: Bytes::from_static(b"set"),
            key: key.clone(),
            value: Some(value.clone()),
            column_family: Some(Bytes::copy_from_slice(cf.as_bytes())),
        })
        .collect();
    target
        .atomic_commit(gen::AtomicCommitRequest {
            read_version,
            operations,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            anyhow::anyhow!("writing {} keys of {cf} into the target: {e}", pairs.len())
        })?;
    Ok(())
}

/// Key count and CRC-64 of every `(cf, key, value)` of `cf`, read page by page.
async fn summarize(client: &Client, cf: &str) -> anyhow::Result<(u64, u64)> {
    let (mut count, mut crc, mut bytes) = (0u64, Checksum::new(), Vec::new());
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (pairs, more) = client
            .scan_page(cf, after.as_deref(), PAGE_KEYS)
            .await
            .map_err(|e| anyhow::anyhow!("reading {cf} from {}: {e}", client.addr()))?;
        for (key, value) in &pairs {
            bytes.clear();
            BackupRecord {
                cf: cf.to_owned(),
                key: key.to_vec(),
                value: value.to_vec(),
            }
            .encode_into(&mut bytes);
            crc.update(&bytes);
            count += 1;
        }
        match pairs.last() {
            Some((last, _)) if more => after = Some(last.to_vec()),
            _ => return Ok((count, crc.finish())),
        }
    }
}

fn spinner() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("[{elapsed_precise}] {spinner} {msg} ({per_sec})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style)
}

fn load_state(path: &Path, source: &str) -> anyhow::Result<ImportState> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let state: ImportState = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if state.source != source {
                anyhow::bail!(
                    "{} is the state of an import from {}, not {source}; give another --state",
                    path.display(),
                    state.source
                );
            }
            Ok(state)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ImportState {
            source: source.to_owned(),
            ..ImportState::default()
        }),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

/// Writes the state beside its file, then renames it over: a crash leaves the old or the new.
fn save_state(path: &Path, state: &ImportState) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> anyhow::Result<Option<Vec<u8>>> {
    if text.is_empty() {
        return Ok(None);
    }
    if !text.len().is_multiple_of(2) {
        anyhow::bail!("a state file cursor {text:?} is not hex");
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .map_err(|_| anyhow::anyhow!("a state file cursor {text:?} is not hex"))
        })
        .collect::<anyhow::Result<Vec<u8>>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_stay_under_the_byte_budget_and_keep_every_pair() {
        let big = Bytes::from(vec![0u8; 3 << 20]);
        let pairs: Vec<(Bytes, Bytes)> = (0..5)
            .map(|i| (Bytes::from(vec![i]), big.clone()))
            .collect();
        let cut = batches(&pairs);
        assert_eq!(cut.len(), 5, "3 MiB values: one per commit");
        assert_eq!(cut.iter().map(|b| b.len()).sum::<usize>(), 5);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn cursors_round_trip_through_hex() {
        assert_eq!(
            decode_hex(&hex(&[0, 0xff, 7])).unwrap(),
            Some(vec![0, 0xff, 7])
        );
        assert_eq!(decode_hex("").unwrap(), None);
        assert!(decode_hex("abc").is_err());
    }
}
