//! `dolmen backup`, `dolmen restore` and `dolmen seed` (docs/backup.md).
//!
//! ```text
//!  backup:  GET /backup ─▶ frames ─▶ part-NNNNN.dat (whole records, ≤ --part-size-mb each,
//!           fsynced) ─▶ trailer checked (records, bytes, digest) ─▶ manifest.json (fsynced)
//!  restore: manifest ─▶ verify every part ─▶ write into the empty data dir ─▶ digest check
//!           ─▶ replicated config: seed a new cluster of the configured members
//!  seed:    a standalone node's data dir ─▶ the first member of a new cluster
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dolmen_admin::backup::{
    BackupHeader, BackupTrailer, ColumnFamilyCount, FrameReader, FrameTag, KeyRange, Manifest,
    Part, BACKUP_PATH, MANIFEST_FILE, MANIFEST_FORMAT,
};
use dolmen_engine::{Checksum, RecordRef};
use dolmen_server::config::{Config, ConfigError, Overrides};
use dolmen_server::restore::{self, BackupDir};
use http_body_util::BodyExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `dolmen backup` flags.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Admin address (host:port) of any node of the cluster, or of a standalone node.
    #[arg(long, default_value = "127.0.0.1:9190")]
    admin: String,
    /// Directory to write the backup into; created, and must be empty if it exists.
    #[arg(long)]
    out: PathBuf,
    /// Largest part file, in MiB.
    #[arg(long, default_value_t = 64)]
    part_size_mb: u64,
    /// Read at most this many MB (10^6 bytes) of records a second, to leave the node's CPU and
    /// disk to its clients; 0 = as fast as the node sends.
    #[arg(long, default_value_t = 0)]
    max_rate_mb: u64,
    /// The credential: a backup reveals all data, so it needs the node's admin_token.
    #[command(flatten)]
    token: crate::token::TokenArgs,
}

/// `dolmen restore` flags.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup directory (`dolmen backup --out`).
    #[arg(long)]
    from: PathBuf,
    /// The configuration of the node to restore into, as `dolmen serve` reads it; its data
    /// directory must be empty. In replicated mode the node becomes the seed of a new cluster
    /// of the configured members.
    #[arg(long, env = "DOLMEN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory ([database] base_path).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Only check the backup: every part against the manifest; write nothing.
    #[arg(long)]
    verify_only: bool,
}

/// `dolmen seed` flags.
#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// The replicated configuration this node will run with: the new cluster's members, and
    /// this node's id and data directory (holding a standalone node's data).
    #[arg(long, env = "DOLMEN_CONFIG")]
    config: PathBuf,
}

/// A bar on a terminal, nothing elsewhere; lines are printed either way.
fn bar(len: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = format!(
        "[{{elapsed_precise}}] [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}}"
    );
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()).with_style(style)
}

/// Runs `dolmen backup`.
pub fn run_backup(args: BackupArgs) -> std::process::ExitCode {
    let Some(runtime) = crate::small_runtime() else {
        return std::process::ExitCode::from(1);
    };
    match runtime.block_on(backup(&args)) {
        Ok(manifest) => {
            println!(
                "backup of version {} written to {}: {} records, {} bytes in {} parts, digest {}",
                manifest.version,
                args.out.display(),
                manifest.records,
                manifest.bytes,
                manifest.parts.len(),
                manifest.digest
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dolmen backup: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The part being written.
struct OpenPart {
    file: File,
    name: String,
    records: u64,
    bytes: u64,
    crc: Checksum,
}

/// Writes the stream into parts and returns the manifest it wrote.
async fn backup(args: &BackupArgs) -> anyhow::Result<Manifest> {
    prepare_out(&args.out)?;
    let part_size = args.part_size_mb.max(1) << 20;
    let started = Instant::now();
    let client = args
        .token
        .client(&args.admin)?
        .with_timeout(Duration::from_secs(30));
    let mut body = client.stream(BACKUP_PATH).await?;
    let mut reader = FrameReader::new();
    let mut header: Option<BackupHeader> = None;
    let mut parts: Vec<Part> = Vec::new();
    let mut open: Option<OpenPart> = None;
    let mut per_cf: BTreeMap<String, u64> = BTreeMap::new();
    let mut digest = Checksum::new();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut progress = ProgressBar::hidden();
    let trailer: BackupTrailer = loop {
        let frame = match reader.next_frame()? {
            Some(frame) => frame,
            None => match body.frame().await {
                Some(chunk) => {
                    if let Ok(data) = chunk?.into_data() {
                        reader.push(&data);
                    }
                    continue;
                }
                None => anyhow::bail!(
                    "the stream ended after {} bytes, before its trailer (the node stopped or \
                     the connection broke); {} is incomplete: delete it and run the backup again",
                    reader.total(),
                    args.out.display()
                ),
            },
        };
        match frame {
            (FrameTag::Header, payload) => {
                let h: BackupHeader = serde_json::from_slice(&payload)?;
                for cf in &h.column_families {
                    per_cf.insert(cf.clone(), 0);
                }
                progress = bar(h.estimated_records, "records");
                eprintln!(
                    "backing up version {} from node {} ({} column families, ~{} records)",
                    h.version,
                    h.node_id,
                    h.column_families.len(),
                    h.estimated_records
                );
                header = Some(h);
            }
            (FrameTag::Records, payload) => {
                let part = match open.as_mut() {
                    Some(part) => part,
                    None => open.insert(new_part(&args.out, parts.len())?),
                };
                let mut offset = 0;
                while let Some((record, next)) = RecordRef::decode(&payload, offset)? {
                    let cf = String::from_utf8_lossy(record.cf);
                    match per_cf.get_mut(cf.as_ref()) {
                        Some(n) => *n += 1,
                        None => {
                            per_cf.insert(cf.into_owned(), 1);
                        }
                    }
                    part.records += 1;
                    records += 1;
                    offset = next;
                }
                part.file.write_all(&payload)?;
                part.crc.update(&payload);
                digest.update(&payload);
                part.bytes += payload.len() as u64;
                bytes += payload.len() as u64;
                progress.set_position(records);
                if args.max_rate_mb > 0 {
                    // Stop reading until the average is back under the rate: the node's
                    // sender blocks meanwhile, so it reads no faster either.
                    let due =
                        Duration::from_secs_f64(bytes as f64 / (args.max_rate_mb as f64 * 1e6));
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                if part.bytes >= part_size {
                    if let Some(done) = open.take() {
                        parts.push(close_part(done)?);
                    }
                }
            }
            (FrameTag::End, payload) => break serde_json::from_slice(&payload)?,
            (FrameTag::Error, payload) => anyhow::bail!(
                "the node failed the backup: {}",
                String::from_utf8_lossy(&payload)
            ),
        }
    };
    if let Some(done) = open.take() {
        parts.push(close_part(done)?);
    }
    progress.finish_and_clear();
    let header = header.ok_or_else(|| anyhow::anyhow!("the stream had no header"))?;
    let digest = format!("{:016x}", digest.finish());
    if trailer.records != records || trailer.bytes != bytes || trailer.digest != digest {
        anyhow::bail!(
            "the node sent {} records, {} bytes, digest {}; {records} records, {bytes} bytes, \
             digest {digest} arrived",
            trailer.records,
            trailer.bytes,
            trailer.digest
        );
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        version: header.version,
        created_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        source: args.admin.clone(),
        node_id: header.node_id,
        ranges: header
            .column_families
            .iter()
            .map(|cf| KeyRange {
                column_family: cf.clone(),
                begin: String::new(),
                end: String::new(),
            })
            .collect(),
        column_families: per_cf
            .into_iter()
            .map(|(name, records)| ColumnFamilyCount { name, records })
            .collect(),
        parts,
        records,
        bytes,
        digest,
    };
    let path = args.out.join(MANIFEST_FILE);
    let mut file = File::create(&path)?;
    file.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    file.sync_all()?;
    File::open(&args.out)?.sync_all()?;
    let secs = started.elapsed().as_secs_f64().max(0.001);
    eprintln!(
        "{:.1} s, {:.1} MB/s, {:.0} records/s",
        secs,
        bytes as f64 / 1e6 / secs,
        records as f64 / secs
    );
    Ok(manifest)
}

/// Creates `out`, or checks that it is an empty directory.
fn prepare_out(out: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} is not empty; back up into a new directory",
                    out.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out)?;
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", out.display())),
    }
}

fn new_part(out: &Path, index: usize) -> anyhow::Result<OpenPart> {
    let name = format!("part-{index:05}.dat");
    Ok(OpenPart {
        file: File::create(out.join(&name))?,
        name,
        records: 0,
        bytes: 0,
        crc: Checksum::new(),
    })
}

fn close_part(part: OpenPart) -> anyhow::Result<Part> {
    part.file.sync_all()?;
    Ok(Part {
        file: part.name,
        records: part.records,
        bytes: part.bytes,
        crc64: format!("{:016x}", part.crc.finish()),
    })
}

/// Loads the node configuration as `dolmen serve` does.
fn load_config(config: Option<&Path>, data_dir: Option<PathBuf>) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let overrides = Overrides {
        data_dir,
        ..Overrides::default()
    };
    Config::load(config, &env, &overrides)
}

/// Runs `dolmen restore`.
pub fn run_restore(args: RestoreArgs) -> std::process::ExitCode {
    let started = Instant::now();
    let fail = |message: String| {
        eprintln!("dolmen restore: {message}");
        std::process::ExitCode::from(1)
    };
    let backup = match BackupDir::open(&args.from) {
        Ok(backup) => backup,
        Err(e) => return fail(crate::chain(&e)),
    };
    let manifest = backup.manifest().clone();
    let checking = bar(manifest.bytes, "bytes");
    if let Err(e) = backup.verify(&|n| checking.set_position(n)) {
        return fail(crate::chain(&e));
    }
    checking.finish_and_clear();
    eprintln!(
        "verified {} parts: {} records at version {}, digest {}",
        manifest.parts.len(),
        manifest.records,
        manifest.version,
        manifest.digest
    );
    if args.verify_only {
        return std::process::ExitCode::SUCCESS;
    }
    let config = match load_config(args.config.as_deref(), args.data_dir) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dolmen restore: configuration error: {}", crate::chain(&e));
            return std::process::ExitCode::from(2);
        }
    };
    let writing = bar(manifest.records, "records");
    let restored = match restore::restore(&config, &backup, &|n| writing.set_position(n)) {
        Ok(restored) => restored,
        Err(e) => return fail(crate::chain(&e)),
    };
    writing.finish_and_clear();
    let secs = started.elapsed().as_secs_f64().max(0.001);
    println!(
        "restored {} records at version {} into {} (digest {}) in {:.1} s, {:.1} MB/s",
        restored.records,
        restored.version,
        restored.db.display(),
        restored.digest,
        secs,
        manifest.bytes as f64 / 1e6 / secs
    );
    if let Some(members) = restored.members {
        println!(
            "node {} is the seed of a new cluster of members {members:?}: start it, then start \
             the other members with empty data directories; they catch up by snapshot",
            config.node_id()
        );
    }
    std::process::ExitCode::SUCCESS
}

/// Runs `dolmen seed`.
pub fn run_seed(args: SeedArgs) -> std::process::ExitCode {
    let config = match load_config(Some(&args.config), None) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dolmen seed: configuration error: {}", crate::chain(&e));
            return std::process::ExitCode::from(2);
        }
    };
    match restore::seed(&config) {
        Ok((members, version)) => {
            println!(
                "node {} is the seed of a new cluster of members {members:?}, its log resuming \
                 after version {version}: start it with this configuration, then start the \
                 other members with empty data directories; they catch up by snapshot",
                config.node_id()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dolmen seed: {}", crate::chain(&e));
            std::process::ExitCode::from(1)
        }
    }
}
