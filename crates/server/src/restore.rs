//! Offline operations on a stopped node's data directory (docs/backup.md): restoring a backup
//! (`dolmen restore`) and seeding a new cluster around data that has no Raft state (`dolmen
//! seed`: a standalone node's data, or a restored backup).
//!
//! ```text
//!  restore: BackupDir::open (manifest) ─▶ verify every part (size, CRC-64, records, column
//!           families, total digest) ─▶ target must be empty ─▶ Engine::restore_visible at V
//!           ─▶ digest_at(V) = manifest digest ─▶ replicated: seed_cluster (log resumes at V+1)
//! ```
//! Nothing is written before every check has passed, and nothing is reported restored before
//! the restored state's digest equals the backup's.

use std::io;
use std::path::{Path, PathBuf};

use dolmen_admin::backup::{Manifest, Part, MANIFEST_FILE, MANIFEST_FORMAT};
use dolmen_config::{Config, Mode};
use dolmen_engine::{BackupRecord, Checksum, Engine, OpenError, RecordRef, StorageError};
use dolmen_raft::{seed_cluster, SeedError};

use crate::engine_options::engine_options;
use crate::node::initial_members;

/// Why a restore or a seed failed. Each names the file or the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The manifest is missing or unreadable.
    #[error("{path}: {reason}")]
    Manifest {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A part does not match the manifest.
    #[error("backup part {file}: {problem}; the backup is damaged, restore another copy")]
    Part {
        /// The part's file name.
        file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The parts are whole but their digest differs from the manifest's.
    #[error("the parts' digest is {actual}, the manifest says {expected}; the backup is damaged")]
    Digest {
        /// The manifest's digest.
        expected: String,
        /// The parts'.
        actual: String,
    },
    /// The backup holds a column family the node does not serve.
    #[error("the backup holds column family {0:?}, which is not in [database] column_families")]
    ColumnFamily(String),
    /// The target data directory holds data.
    #[error("{0} already holds data; restore into an empty data directory")]
    NotEmpty(PathBuf),
    /// The restored state does not match the backup.
    #[error("after the restore the state's digest at version {version} is {actual}, the backup's is {expected}")]
    Mismatch {
        /// The backup's version.
        version: u64,
        /// The backup's digest.
        expected: String,
        /// The restored state's.
        actual: String,
    },
    /// Seeding needs a replicated configuration.
    #[error("`dolmen seed` needs a [deployment] mode = \"replicated\" configuration with the new cluster's members")]
    NotReplicated,
    /// The engine could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The engine failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The Raft state could not be written.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A backup directory and its manifest.
#[derive(Debug)]
pub struct BackupDir {
    path: PathBuf,
    manifest: Manifest,
}

impl BackupDir {
    /// Reads `path/manifest.json`.
    ///
    /// # Errors
    /// [`RestoreError::Manifest`] when it is missing, not JSON, or of another format.
    pub fn open(path: &Path) -> Result<Self, RestoreError> {
        let file = path.join(MANIFEST_FILE);
        let manifest_error = |reason: String| RestoreError::Manifest {
            path: file.clone(),
            reason,
        };
        let text = std::fs::read(&file).map_err(|e| {
            manifest_error(format!(
                "{e} (a backup directory has a manifest once `dolmen backup` finished)"
            ))
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| manifest_error(e.to_string()))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(manifest_error(format!(
                "format {} is not {MANIFEST_FORMAT}, the one this Dolmen reads",
                manifest.format
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            manifest,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks every part against the manifest: its size, its CRC-64, that it holds whole
    /// records of the listed column families in the stated numbers, and that all parts
    /// together have the manifest's digest. `progress` is told the bytes checked so far.
    ///
    /// # Errors
    /// The first mismatch, naming the part.
    pub fn verify(&self, progress: &dyn Fn(u64)) -> Result<(), RestoreError> {
        let mut digest = Checksum::new();
        let mut per_cf: std::collections::BTreeMap<&str, u64> = self
            .manifest
            .column_families
            .iter()
            .map(|c| (c.name.as_str(), 0))
            .collect();
        let mut checked = 0u64;
        for part in &self.manifest.parts {
            let bytes = self.read_part(part)?;
            digest.update(&bytes);
            let mut count = 0u64;
            let mut offset = 0;
            while let Some((record, next)) =
                RecordRef::decode(&bytes, offset).map_err(|e| part_error(part, e.to_string()))?
            {
                let cf = String::from_utf8_lossy(record.cf);
                match per_cf.get_mut(cf.as_ref()) {
                    Some(n) => *n += 1,
                    None => {
                        return Err(part_error(
                            part,
                            format!("holds column family {cf:?}, which the manifest does not list"),
                        ))
                    }
                }
                count += 1;
                offset = next;
            }
            check_count(part, count)?;
            checked += part.bytes;
            progress(checked);
        }
        for cf in &self.manifest.column_families {
            let found = per_cf.get(cf.name.as_str()).copied().unwrap_or(0);
            if found != cf.records {
                return Err(RestoreError::Manifest {
                    path: self.path.join(MANIFEST_FILE),
                    reason: format!(
                        "column family {:?}: the parts hold {found} records, the manifest says {}",
                        cf.name, cf.records
                    ),
                });
            }
        }
        let actual = format!("{:016x}", digest.finish());
        if actual != self.manifest.digest {
            return Err(RestoreError::Digest {
                expected: self.manifest.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Every record, part by part (one part in memory at a time), each part checked again.
    fn records(&self) -> impl Iterator<Item = io::Result<BackupRecord>> + '_ {
        self.manifest.parts.iter().flat_map(move |part| {
            let records = self
                .read_part(part)
                .and_then(|bytes| decode_part(part, &bytes))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
            match records {
                Ok(records) => records.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            }
        })
    }

    /// A part's bytes, checked for size and CRC-64.
    fn read_part(&self, part: &Part) -> Result<Vec<u8>, RestoreError> {
        if part.file.contains('/') || part.file.contains("..") {
            return Err(part_error(
                part,
                "its name is not a file in the backup directory".into(),
            ));
        }
        let bytes = std::fs::read(self.path.join(&part.file))
            .map_err(|e| part_error(part, format!("cannot be read: {e}")))?;
        if bytes.len() as u64 != part.bytes {
            return Err(part_error(
                part,
                format!(
                    "is {} bytes, the manifest says {} (the file is truncated or extended)",
                    bytes.len(),
                    part.bytes
                ),
            ));
        }
        let mut crc = Checksum::new();
        crc.update(&bytes);
        let actual = format!("{:016x}", crc.finish());
        if actual != part.crc64 {
            return Err(part_error(
                part,
                format!(
                    "has CRC-64 {actual}, the manifest says {} (the file is corrupt)",
                    part.crc64
                ),
            ));
        }
        Ok(bytes)
    }
}

fn part_error(part: &Part, problem: String) -> RestoreError {
    RestoreError::Part {
        file: part.file.clone(),
        problem,
    }
}

/// The records of a part whose bytes passed the size and CRC checks.
fn decode_part(part: &Part, bytes: &[u8]) -> Result<Vec<BackupRecord>, RestoreError> {
    let mut records = Vec::new();
    let mut offset = 0;
    while let Some((record, next)) =
        BackupRecord::decode(bytes, offset).map_err(|e| part_error(part, e.to_string()))?
    {
        records.push(record);
        offset = next;
    }
    check_count(part, records.len() as u64)?;
    Ok(records)
}

fn check_count(part: &Part, count: u64) -> Result<(), RestoreError> {
    if count != part.records {
        return Err(part_error(
            part,
            format!("holds {count} records, the manifest says {}", part.records),
        ));
    }
    Ok(())
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The data directory written.
    pub db: PathBuf,
    /// The backup's version, now the node's applied version.
    pub version: u64,
    /// Records written.
    pub records: u64,
    /// The digest at `version`, equal to the backup's.
    pub digest: String,
    /// In replicated mode: the members of the new cluster this node seeds.
    pub members: Option<Vec<u64>>,
}

/// Restores `backup` (already [verified](BackupDir::verify)) into the empty data directory of
/// the node `config` describes; in replicated mode, also seeds a new cluster of the configured
/// members around it. `progress` is told the records written so far (every 64 Ki).
///
/// # Errors
/// A target that holds data, a column family the node does not serve, a part that changed
/// since it was verified, or a digest that differs after the restore.
pub fn restore(
    config: &Config,
    backup: &BackupDir,
    progress: &dyn Fn(u64),
) -> Result<Restored, RestoreError> {
    let options = engine_options(config, node_db(config));
    require_empty(&options.path)?;
    let manifest = backup.manifest();
    for cf in &manifest.column_families {
        if !config.database.column_families.contains(&cf.name) {
            return Err(RestoreError::ColumnFamily(cf.name.clone()));
        }
    }
    let engine = Engine::open(&options)?;
    let marker = format!(
        "restore of {} at version {}",
        backup.path.display(),
        manifest.version
    );
    let mut written = 0u64;
    let records = backup.records().inspect(|_| {
        written += 1;
        if written.is_multiple_of(64 << 10) {
            progress(written);
        }
    });
    let records = engine.restore_visible(marker.as_bytes(), manifest.version, records)?;
    progress(records);
    let digest = format!("{:016x}", engine.digest_at(manifest.version)?);
    if digest != manifest.digest {
        return Err(RestoreError::Mismatch {
            version: manifest.version,
            expected: manifest.digest.clone(),
            actual: digest,
        });
    }
    let members = match config.deployment.mode {
        Mode::Standalone => None,
        Mode::Replicated => Some(seed_engine(config, &engine)?),
    };
    Ok(Restored {
        db: options.path,
        version: manifest.version,
        records,
        digest,
        members,
    })
}

/// Makes the node `config` describes (replicated) the seed of a new cluster of the configured
/// members around the data in its data directory (a standalone node's, or a restored one).
/// Returns the members and the version the cluster starts after.
///
/// # Errors
/// A standalone configuration, an empty data directory, or one that already has Raft state.
pub fn seed(config: &Config) -> Result<(Vec<u64>, u64), RestoreError> {
    if config.deployment.mode != Mode::Replicated {
        return Err(RestoreError::NotReplicated);
    }
    let engine = Engine::open(&engine_options(config, node_db(config)))?;
    let members = seed_engine(config, &engine)?;
    Ok((members, engine.applied_version()))
}

fn seed_engine(config: &Config, engine: &Engine) -> Result<Vec<u64>, RestoreError> {
    let members = initial_members(config, config.server.admin_port);
    seed_cluster(engine, &members, config.node_id())?;
    Ok(members.keys().copied().collect())
}

/// The RocksDB directory of the node `config` describes (what `dolmen serve` opens).
pub fn node_db(config: &Config) -> PathBuf {
    config
        .data_dir()
        .join(format!("node-{}", config.node_id()))
        .join("db")
}

fn require_empty(path: &Path) -> Result<(), RestoreError> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => match entries.next() {
            Some(_) => Err(RestoreError::NotEmpty(path.to_owned())),
            None => Ok(()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RestoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}
