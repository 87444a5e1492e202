//! `GET /backup`: a node streams the visible state at one version as frames, and `dolmen
//! backup` writes them into parts described by a [`Manifest`] (docs/backup.md).
//!
//! ```text
//!  stream:   MAGIC ‖ H(header JSON) ‖ R(records)* ‖ E(trailer JSON)      (X(error JSON) ends
//!  frame:    tag byte ‖ be32 length ‖ payload                             a failed stream)
//!  records:  be32 len ‖ cf ‖ be32 len ‖ key ‖ be32 len ‖ value, whole records per frame
//! ```

use serde::{Deserialize, Serialize};

/// The admin path of the backup stream.
pub const BACKUP_PATH: &str = "/backup";
/// The first bytes of every backup stream.
pub const STREAM_MAGIC: &[u8] = b"DOLMEN-BACKUP-1\n";
/// The format of a backup directory's manifest.
pub const MANIFEST_FORMAT: u32 = 1;
/// The manifest's file name in a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The kind of a stream frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameTag {
    /// The [`BackupHeader`], first.
    Header,
    /// Whole records.
    Records,
    /// The [`BackupTrailer`], last.
    End,
    /// The node failed mid-stream; the payload is an error JSON (`{"error": ...}`).
    Error,
}

impl FrameTag {
    /// The tag byte.
    pub fn byte(self) -> u8 {
        match self {
            FrameTag::Header => b'H',
            FrameTag::Records => b'R',
            FrameTag::End => b'E',
            FrameTag::Error => b'X',
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'H' => Some(FrameTag::Header),
            b'R' => Some(FrameTag::Records),
            b'E' => Some(FrameTag::End),
            b'X' => Some(FrameTag::Error),
            _ => None,
        }
    }
}

/// Appends a frame of `tag` carrying `payload` to `out`.
pub fn encode_frame(tag: FrameTag, payload: &[u8], out: &mut Vec<u8>) {
    out.push(tag.byte());
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
}

/// The first frame: what the stream holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The version every record is read at.
    pub version: u64,
    /// The column families exported, in the order they come.
    pub column_families: Vec<String>,
    /// The node that reads them.
    pub node_id: u64,
    /// Live keys on that node when the stream started (for progress and ETA).
    pub estimated_records: u64,
}

/// The last frame: what the node sent, for the receiver to check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupTrailer {
    /// Records sent.
    pub records: u64,
    /// Record bytes sent.
    pub bytes: u64,
    /// CRC-64 of every record byte, 16 lowercase hex digits: the node's `/state/digest` at the
    /// stream's version.
    pub digest: String,
}

/// A malformed stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The stream does not start with [`STREAM_MAGIC`].
    #[error("not a Dolmen backup stream (it starts with {0:?})")]
    BadMagic(String),
    /// A frame has an unknown tag.
    #[error("unknown frame tag {0:#04x} at byte {1}")]
    BadTag(u8, u64),
    /// The stream ended inside a frame or before its trailer.
    #[error("the stream ended after {0} bytes, before its trailer")]
    Truncated(u64),
}

/// Splits stream bytes, fed in any pieces, into frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
    /// Bytes consumed before `buffer`.
    consumed: u64,
    magic_seen: bool,
}

impl FrameReader {
    /// A reader at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next bytes of the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, if the bytes so far hold one.
    ///
    /// # Errors
    /// A bad magic or tag.
    pub fn next_frame(&mut self) -> Result<Option<(FrameTag, Vec<u8>)>, StreamError> {
        if !self.magic_seen {
            if self.buffer.len() < STREAM_MAGIC.len() {
                return Ok(None);
            }
            if &self.buffer[..STREAM_MAGIC.len()] != STREAM_MAGIC {
                return Err(StreamError::BadMagic(
                    String::from_utf8_lossy(&self.buffer[..STREAM_MAGIC.len()]).into_owned(),
                ));
            }
            self.take(STREAM_MAGIC.len());
            self.magic_seen = true;
        }
        let Some(&tag) = self.buffer.first() else {
            return Ok(None);
        };
        let tag = FrameTag::from_byte(tag).ok_or(StreamError::BadTag(tag, self.consumed))?;
        let Some(len) = self.buffer.get(1..5) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if self.buffer.len() < 5 + len {
            return Ok(None);
        }
        let payload = self.buffer[5..5 + len].to_vec();
        self.take(5 + len);
        Ok(Some((tag, payload)))
    }

    /// Stream bytes seen so far, whole frames or not.
    pub fn total(&self) -> u64 {
        self.consumed + self.buffer.len() as u64
    }

    fn take(&mut self, n: usize) {
        self.buffer.drain(..n);
        self.consumed += n as u64;
    }
}

/// A backup directory's `manifest.json`: everything needed to check the parts and restore them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The version the backup is consistent at.
    pub version: u64,
    /// When it was taken (Unix milliseconds).
    pub created_unix_ms: u64,
    /// The admin address it was taken through.
    pub source: String,
    /// The node that read it.
    pub node_id: u64,
    /// The key ranges covered: the whole key space of every column family (one range until
    /// the key space is sharded).
    pub ranges: Vec<KeyRange>,
    /// Records per column family.
    pub column_families: Vec<ColumnFamilyCount>,
    /// The parts, in stream order.
    pub parts: Vec<Part>,
    /// Records in all parts.
    pub records: u64,
    /// Bytes in all parts.
    pub bytes: u64,
    /// CRC-64 of all parts' bytes in order, 16 hex digits: the source's `/state/digest` (and
    /// `dolmen cluster verify`'s) at `version`, and the restored node's.
    pub digest: String,
}

/// A key range `[begin, end)` of a column family; empty `end` = to the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// The column family.
    pub column_family: String,
    /// First key (hex).
    pub begin: String,
    /// First key after the range (hex); empty for the end of the key space.
    pub end: String,
}

/// How many records of one column family a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnFamilyCount {
    /// The column family.
    pub name: String,
    /// Its records.
    pub records: u64,
}

/// One part file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Its file name in the backup directory.
    pub file: String,
    /// Records in it.
    pub records: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// CRC-64 of its bytes, 16 hex digits.
    pub crc64: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_any_byte_come_out_whole() {
        let mut stream = STREAM_MAGIC.to_vec();
        encode_frame(FrameTag::Header, b"{}", &mut stream);
        encode_frame(FrameTag::Records, &[1, 2, 3], &mut stream);
        encode_frame(FrameTag::End, b"{}", &mut stream);
        let mut reader = FrameReader::new();
        let mut frames = Vec::new();
        for byte in &stream {
            reader.push(std::slice::from_ref(byte));
            while let Some(frame) = reader.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            vec![
                (FrameTag::Header, b"{}".to_vec()),
                (FrameTag::Records, vec![1, 2, 3]),
                (FrameTag::End, b"{}".to_vec()),
            ]
        );
        assert_eq!(reader.total(), stream.len() as u64);
    }

    #[test]
    fn a_stream_of_something_else_is_refused() {
        let mut reader = FrameReader::new();
        reader.push(b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(reader.next_frame(), Err(StreamError::BadMagic(_))));
    }
}
