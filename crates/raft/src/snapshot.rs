//! Snapshot files and the directory that holds them (docs/replication.md §5): one file per
//! snapshot, written to `*.tmp`, fsynced, renamed to `<term>-<node>-<index>.snap`. Records are
//! streamed in and out; a file is never held whole in memory.
//!
//! ```text
//! file    = header ‖ record* ‖ end
//! header  = "DOLMSNAP" ‖ be32 format (3) ‖ be32 len ‖ codec::encode_snapshot_meta(meta)
//! record  = u8 section (1 = meta, 2 = data) ‖ be32 len ‖ key ‖ be32 len ‖ value
//! end     = u8 0 ‖ be64 record count ‖ be32 crc32 (crc32fast) of every byte before it
//! ```
//! A truncated or corrupt file fails [`verify`] (and the reader's last item) before anything
//! destructive starts. Keys and values are raw engine records, each value in its own
//! docs/encoding.md format; the file format number covers them too (docs/encoding.md).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dolmen_engine::{failpoint, Record, Section};

use crate::codec::{self, SnapshotMeta};
use crate::types::SnapshotFile;

/// The first bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"DOLMSNAP";
/// The file format this module writes. 2: the header meta and the `meta` records are in
/// docs/encoding.md's version 1 (format 1 held the interim `0x80` encodings; not read). 3: dedupe
/// entries may be in version 2, with their index and count (an older binary must refuse the
/// file rather than fail on an entry later).
pub const FORMAT: u32 = 3;
/// The file formats this module reads: a format-2 file's dedupe entries are all version 1, and
/// the engine builds their index when it restores them.
pub const READ_FORMATS: [u32; 2] = [2, 3];
/// Extension of complete snapshot files.
const SNAP_EXT: &str = "snap";
/// Extension of files being written (deleted at open).
const TMP_EXT: &str = "tmp";
/// Tag of the end-of-records marker.
const TAG_END: u8 = 0;
const TAG_META: u8 = 1;
const TAG_DATA: u8 = 2;
/// Largest key or value a record may declare; larger means corruption (bounded allocation).
const MAX_FIELD_BYTES: usize = 64 << 20;
/// Largest encoded meta a header may declare.
const MAX_META_BYTES: usize = 16 << 20;

fn invalid(path: &Path, detail: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("snapshot file {}: {detail}", path.display()),
    )
}

/// fsyncs a directory, so a rename or delete inside it is durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The final file name of a snapshot with `meta`.
pub fn file_name(meta: &SnapshotMeta) -> String {
    match &meta.last_log_id {
        Some(id) => format!(
            "{}-{}-{}.{SNAP_EXT}",
            id.leader_id.term, id.leader_id.node_id, id.index
        ),
        None => format!("none.{SNAP_EXT}"),
    }
}

/// Orders snapshot files by their name: `(index, term, node)`, `none` first; `None` for files
/// that are not complete snapshots.
fn order_key(path: &Path) -> Option<Option<(u64, u64, u64)>> {
    if path.extension()? != SNAP_EXT {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem == "none" {
        return Some(None);
    }
    let mut parts = stem.split('-').map(str::parse::<u64>);
    let (Some(Ok(term)), Some(Ok(node)), Some(Ok(index)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(Some((index, term, node)))
}

/// Counters for `/status` and metrics; shared by the state machine and its builders.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    built: AtomicU64,
    installed: AtomicU64,
    sent: AtomicU64,
    last_index: AtomicU64,
    last_build_ms: AtomicU64,
}

impl SnapshotStats {
    /// Snapshots built on this node since start.
    pub fn built(&self) -> u64 {
        self.built.load(Ordering::Relaxed)
    }

    /// Snapshots installed on this node since start (from a leader, or redone at open).
    pub fn installed(&self) -> u64 {
        self.installed.load(Ordering::Relaxed)
    }

    /// Snapshots this node streamed to a follower, and the follower installed, since start.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Log index of the newest snapshot built or installed (0 when none).
    pub fn last_snapshot_index(&self) -> u64 {
        self.last_index.load(Ordering::Relaxed)
    }

    /// Wall time of the last build, in milliseconds.
    pub fn last_build_duration_ms(&self) -> u64 {
        self.last_build_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn record_build(&self, index: u64, millis: u64) {
        self.built.fetch_add(1, Ordering::Relaxed);
        self.last_build_ms.store(millis, Ordering::Relaxed);
        self.last_index.fetch_max(index, Ordering::Relaxed);
    }

    pub(crate) fn record_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_install(&self, index: u64) {
        self.installed.fetch_add(1, Ordering::Relaxed);
        self.last_index.store(index, Ordering::Relaxed);
    }

    pub(crate) fn set_last_index(&self, index: u64) {
        self.last_index.store(index, Ordering::Relaxed);
    }
}

/// The node's snapshot directory.
#[derive(Debug)]
pub struct SnapshotDir {
    /// Canonical path of the directory.
    path: PathBuf,
    /// Makes temporary file names unique within this process.
    next_tmp: AtomicU64,
}

impl SnapshotDir {
    /// Opens (creating it if needed) the directory and deletes leftover `*.tmp` files: builds
    /// and receives interrupted by a crash.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        fs::create_dir_all(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating snapshot dir {}: {e}", path.display()),
            )
        })?;
        let path = fs::canonicalize(path)?;
        for entry in fs::read_dir(&path)? {
            let file = entry?.path();
            if file.extension().is_some_and(|e| e == TMP_EXT) {
                fs::remove_file(&file)?;
            }
        }
        Ok(Self {
            path,
            next_tmp: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a snapshot with `meta` lives once complete.
    pub fn final_path(&self, meta: &SnapshotMeta) -> PathBuf {
        self.path.join(file_name(meta))
    }

    /// A fresh, exclusively created `<prefix>-<n>.tmp` file.
    fn temp_file(&self, prefix: &str) -> io::Result<(PathBuf, File)> {
        for _ in 0..10_000 {
            let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
            let path = self
                .path
                .join(format!("{prefix}-{}-{n}.{TMP_EXT}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "no free temporary file name in {}",
            self.path.display()
        )))
    }

    /// A fresh temporary file for the network layer to write a received snapshot into. Hand
    /// `SnapshotFile { path }` to `install_snapshot` once it is complete; unused temporary
    /// files are deleted at the next open.
    pub fn incoming(&self) -> io::Result<(PathBuf, File)> {
        self.temp_file("recv")
    }

    /// Writes a snapshot of `records` with `meta`: `build-*.tmp`, fsync, rename to its final
    /// name, fsync the directory, then delete older snapshots.
    pub fn build(
        &self,
        meta: &SnapshotMeta,
        records: impl Iterator<Item = io::Result<Record>>,
    ) -> io::Result<SnapshotFile> {
        let (tmp, file) = self.temp_file("build")?;
        let result = write_snapshot(file, meta, records);
        if let Err(e) = result {
            // Best effort: a leftover temp file is deleted at the next open anyway.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let path = self.final_path(meta);
        fs::rename(&tmp, &path)?;
        // Complete under its final name; the rename may not survive a power cut yet.
        failpoint::crash_point(failpoint::SNAPSHOT_BUILD_BEFORE_DIR_SYNC);
        // Durability: the rename is on disk before the snapshot is reported built.
        sync_dir(&self.path)?;
        self.delete_older_than(&path)?;
        Ok(SnapshotFile { path })
    }

    /// Moves (or copies, when it lives elsewhere) a complete snapshot file under its final name
    /// in this directory and fsyncs the directory. The file must already be verified.
    pub fn adopt(&self, file: &SnapshotFile, meta: &SnapshotMeta) -> io::Result<SnapshotFile> {
        let path = self.final_path(meta);
        if file.path == path {
            return Ok(SnapshotFile { path });
        }
        let source = fs::canonicalize(&file.path)?;
        if source.parent() == Some(self.path.as_path()) {
            fs::rename(&source, &path)?;
        } else {
            // Another node's directory (tests) or another filesystem: copy, never steal.
            let (tmp, mut out) = self.temp_file("adopt")?;
            io::copy(&mut File::open(&source)?, &mut out)?;
            out.sync_all()?;
            fs::rename(&tmp, &path)?;
        }
        // Durability: the snapshot is under its final name before it is restored from.
        sync_dir(&self.path)?;
        Ok(SnapshotFile { path })
    }

    /// Complete snapshot files, oldest first.
    fn complete(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let path = entry?.path();
            if let Some(key) = order_key(&path) {
                files.push((key, path));
            }
        }
        files.sort();
        Ok(files.into_iter().map(|(_, p)| p).collect())
    }

    /// The newest complete snapshot, with its meta.
    pub fn latest(&self) -> io::Result<Option<(SnapshotMeta, SnapshotFile)>> {
        match self.complete()?.pop() {
            None => Ok(None),
            Some(path) => Ok(Some((read_meta(&path)?, SnapshotFile { path }))),
        }
    }

    /// Deletes complete snapshots older than `keep` (by log id); newer ones stay.
    pub fn delete_older_than(&self, keep: &Path) -> io::Result<()> {
        let Some(keep_key) = order_key(keep) else {
            return Ok(());
        };
        self.delete_where(|key| key < keep_key)
    }

    /// Deletes every complete snapshot except `keep`.
    pub fn delete_all_except(&self, keep: &Path) -> io::Result<()> {
        let keep_key = order_key(keep);
        self.delete_where(|key| Some(key) != keep_key)
    }

    fn delete_where(&self, doomed: impl Fn(Option<(u64, u64, u64)>) -> bool) -> io::Result<()> {
        let mut deleted = false;
        for path in self.complete()? {
            if order_key(&path).is_some_and(&doomed) {
                fs::remove_file(&path)?;
                deleted = true;
            }
        }
        if deleted {
            sync_dir(&self.path)?;
        }
        Ok(())
    }
}

/// Writes every byte through a crc32 hasher.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.inner.write_all(bytes)
    }

    fn put_len(&mut self, len: usize) -> io::Result<()> {
        let len = u32::try_from(len)
            .map_err(|_| io::Error::other(format!("snapshot field of {len} bytes exceeds u32")))?;
        self.put(&len.to_be_bytes())
    }
}

/// Writes a whole snapshot file into `file` and fsyncs it.
fn write_snapshot(
    file: File,
    meta: &SnapshotMeta,
    records: impl Iterator<Item = io::Result<Record>>,
) -> io::Result<()> {
    let mut w = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: crc32fast::Hasher::new(),
    };
    let encoded = codec::encode_snapshot_meta(meta)?;
    w.put(MAGIC)?;
    w.put(&FORMAT.to_be_bytes())?;
    w.put_len(encoded.len())?;
    w.put(&encoded)?;
    let mut count = 0u64;
    for record in records {
        let (section, key, value) = record?;
        let tag = match section {
            Section::Meta => TAG_META,
            Section::Data => TAG_DATA,
        };
        w.put(&[tag])?;
        w.put_len(key.len())?;
        w.put(&key)?;
        w.put_len(value.len())?;
        w.put(&value)?;
        count += 1;
    }
    w.put(&[TAG_END])?;
    w.put(&count.to_be_bytes())?;
    let crc = w.hasher.clone().finalize();
    w.inner.write_all(&crc.to_be_bytes())?;
    let file = w
        .inner
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    // Written under its temporary name only: deleted at the next open.
    failpoint::crash_point(failpoint::SNAPSHOT_BUILD_BEFORE_SYNC);
    // Durability: the file's bytes are on disk before it is renamed to its final name.
    file.sync_all()
}

/// Streams a snapshot file's records without loading it whole, checking the trailer (record
/// count and crc32) at the end: the last item is an error if the file is truncated or corrupt.
pub struct SnapshotReader {
    path: PathBuf,
    input: BufReader<File>,
    hasher: crc32fast::Hasher,
    meta: SnapshotMeta,
    count: u64,
    done: bool,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("path", &self.path)
            .field("records", &self.count)
            .finish()
    }
}

impl SnapshotReader {
    /// Opens `path` and reads its header.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening snapshot file {}: {e}", path.display()),
            )
        })?;
        let mut reader = Self {
            input: BufReader::with_capacity(1 << 20, file),
            hasher: crc32fast::Hasher::new(),
            meta: SnapshotMeta::default(),
            count: 0,
            done: false,
            path,
        };
        let mut magic = [0u8; 8];
        reader.read_hashed(&mut magic)?;
        if &magic != MAGIC {
            return Err(invalid(&reader.path, "not a snapshot (bad magic)"));
        }
        let format = reader.u32()?;
        if !READ_FORMATS.contains(&format) {
            return Err(invalid(
                &reader.path,
                format_args!("format {format}, this binary reads {READ_FORMATS:?}"),
            ));
        }
        let len = reader.len(MAX_META_BYTES)?;
        let mut encoded = vec![0u8; len];
        reader.read_hashed(&mut encoded)?;
        reader.meta =
            codec::decode_snapshot_meta(&encoded).map_err(|e| invalid(&reader.path, e))?;
        Ok(reader)
    }

    /// The snapshot's meta, from the header.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Reads exactly `buf.len()` bytes into the crc.
    fn read_hashed(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid(&self.path, "truncated")
            } else {
                e
            }
        })?;
        self.hasher.update(buf);
        Ok(())
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.read_hashed(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn len(&mut self, max: usize) -> io::Result<usize> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(invalid(
                &self.path,
                format_args!("field length {len} exceeds {max}"),
            ));
        }
        Ok(len)
    }

    fn field(&mut self) -> io::Result<Vec<u8>> {
        let len = self.len(MAX_FIELD_BYTES)?;
        let mut out = vec![0u8; len];
        self.read_hashed(&mut out)?;
        Ok(out)
    }

    fn next_record(&mut self) -> io::Result<Option<Record>> {
        let mut tag = [0u8; 1];
        self.read_hashed(&mut tag)?;
        let section = match tag[0] {
            TAG_META => Section::Meta,
            TAG_DATA => Section::Data,
            TAG_END => {
                self.check_trailer()?;
                return Ok(None);
            }
            other => return Err(invalid(&self.path, format_args!("record tag {other}"))),
        };
        let key = self.field()?;
        let value = self.field()?;
        self.count += 1;
        Ok(Some((section, key, value)))
    }

    fn check_trailer(&mut self) -> io::Result<()> {
        let mut count = [0u8; 8];
        self.read_hashed(&mut count)?;
        let expected = self.hasher.clone().finalize();
        let mut crc = [0u8; 4];
        self.input
            .read_exact(&mut crc)
            .map_err(|_| invalid(&self.path, "truncated trailer"))?;
        if u32::from_be_bytes(crc) != expected {
            return Err(invalid(&self.path, "crc32 mismatch (corrupt)"));
        }
        let count = u64::from_be_bytes(count);
        if count != self.count {
            return Err(invalid(
                &self.path,
                format_args!("trailer counts {count} records, file holds {}", self.count),
            ));
        }
        let mut extra = [0u8; 1];
        if self.input.read(&mut extra)? != 0 {
            return Err(invalid(&self.path, "bytes after the trailer"));
        }
        Ok(())
    }
}

impl Iterator for SnapshotReader {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads a snapshot file's meta (the header only).
pub fn read_meta(path: impl AsRef<Path>) -> io::Result<SnapshotMeta> {
    Ok(SnapshotReader::open(path)?.meta)
}

/// Reads a whole snapshot file, checking every record and the trailer; returns its meta and
/// record count. Run it before anything destructive.
pub fn verify(path: impl AsRef<Path>) -> io::Result<(SnapshotMeta, u64)> {
    let mut reader = SnapshotReader::open(path)?;
    for record in reader.by_ref() {
        record?;
    }
    Ok((reader.meta.clone(), reader.count))
}

#[cfg(test)]
mod tests {
    use openraft::impls::leader_id_adv::LeaderId;

    use super::*;
    use crate::codec::StoredMembership;
    use crate::types::{LogId, Membership};

    fn meta(index: u64) -> SnapshotMeta {
        let log_id = LogId {
            leader_id: LeaderId {
                term: 2,
                node_id: 1,
            },
            index,
        };
        SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: StoredMembership::new(
                Some(log_id),
                Membership::new_with_defaults(vec![[1, 2].into()], []),
            ),
        }
    }

    fn records() -> Vec<Record> {
        vec![
            (
                Section::Meta,
                b"applied_version".to_vec(),
                vec![0, 0, 0, 0, 0, 0, 0, 7],
            ),
            (Section::Data, b"k1".to_vec(), b"v1".to_vec()),
            (Section::Data, b"k2".to_vec(), Vec::new()),
        ]
    }

    #[test]
    fn snapshot_file_round_trips_and_replaces_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path()).unwrap();
        let old = snaps
            .build(&meta(3), records().into_iter().map(Ok))
            .unwrap();
        let new = snaps
            .build(&meta(7), records().into_iter().map(Ok))
            .unwrap();
        assert!(new.path.ends_with("2-1-7.snap"));
        assert!(!old.path.exists(), "older snapshots are deleted");
        let (latest_meta, latest) = snaps.latest().unwrap().unwrap();
        assert_eq!((latest_meta, &latest), (meta(7), &new));
        let reader = SnapshotReader::open(&new.path).unwrap();
        assert_eq!(reader.meta(), &meta(7));
        let read: Vec<Record> = reader.map(Result::unwrap).collect();
        assert_eq!(read, records());
        assert_eq!(verify(&new.path).unwrap(), (meta(7), 3));
    }

    #[test]
    fn truncated_or_corrupt_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path()).unwrap();
        let file = snaps
            .build(&meta(5), records().into_iter().map(Ok))
            .unwrap();
        let bytes = fs::read(&file.path).unwrap();
        let bad = dir.path().join("bad.bin");
        for cut in [1, 4, 12, bytes.len() / 2, bytes.len() - 1] {
            fs::write(&bad, &bytes[..cut]).unwrap();
            assert!(verify(&bad).is_err(), "truncated at {cut} accepted");
        }
        for flip in [20, bytes.len() - 20, bytes.len() - 2] {
            let mut corrupt = bytes.clone();
            corrupt[flip] ^= 0x40;
            fs::write(&bad, &corrupt).unwrap();
            let err = verify(&bad).unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::InvalidData,
                "flip at {flip}: {err}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        fs::write(&bad, &longer).unwrap();
        assert!(verify(&bad).is_err());
    }

    #[test]
    fn open_deletes_temporary_files_and_incoming_gives_fresh_ones() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path()).unwrap();
        let (a, _) = snaps.incoming().unwrap();
        let (b, _) = snaps.incoming().unwrap();
        assert_ne!(a, b);
        drop(snaps);
        let _snaps = SnapshotDir::open(dir.path()).unwrap();
        assert!(!a.exists() && !b.exists());
    }
}
