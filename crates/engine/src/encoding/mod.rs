//! The one versioned binary encoding of everything Dolmen stores or sends between nodes
//! (docs/encoding.md): a format version byte, then big-endian integers, presence flags, tags and
//! `be32`-length-prefixed bytes. This module holds the primitives ([`Writer`], [`Reader`], the
//! errors) and the engine's own values, [`Command`](crate::Command),
//! [`Outcome`](crate::Outcome) and the sharding values
//! ([`RangeDescriptor`](crate::RangeDescriptor), [`RoutingTable`](crate::RoutingTable)); the
//! Raft layer encodes its values with the same primitives.
//!
//! ```text
//!   value = FORMAT_V1 ‖ body          (the body's layout is fixed by the version byte)
//!   Writer::new(what) ─▶ u8 / u64 / flag / count / bytes / str ─▶ finish() ─▶ Vec<u8>
//!   Reader::new(what, bytes) (checks the version) ─▶ same fields ─▶ finish() (no trailing bytes)
//! ```

mod command;
mod outcome;
mod routing;

use std::fmt::Display;

pub use command::{decode_command, encode_command, put_command, read_command};
pub(crate) use command::{put_prepare, read_prepare};
pub use outcome::{
    decode_decision, decode_outcome, encode_decision, encode_outcome, put_outcome, read_outcome,
};
pub use routing::{
    decode_descriptor, decode_routing, encode_descriptor, encode_routing, put_descriptor,
    put_routing, read_descriptor, read_routing,
};

/// The format version byte of every value this build writes, and the only one it reads
/// (docs/encoding.md invariant 1), except the dedupe entry.
pub const FORMAT_V1: u8 = 0x01;
/// The second layout of the dedupe entry (`meta/dedupe/<client_id>`), which adds the version
/// the entry was recorded at; the only value with two versions (docs/encoding.md).
pub const FORMAT_V2: u8 = 0x02;

/// A value could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A length does not fit the format's `be32` length prefix.
    #[error(
        "cannot encode {what}: {field} is {len} long, more than the format's limit of {} \
         (a be32 length prefix)",
        u32::MAX
    )]
    TooLong {
        /// The kind of value being encoded.
        what: &'static str,
        /// The field whose length overflowed.
        field: &'static str,
        /// Its length.
        len: usize,
    },
}

/// A stored or received value does not decode: what kind of value it was, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The value is empty: it has not even a format version byte.
    #[error("corrupt {what}: empty value (every value starts with a format version byte)")]
    Empty {
        /// The kind of value.
        what: &'static str,
    },
    /// The value was written in a format version this build does not read (a newer Dolmen, the
    /// interim `0x80`/`0x81` formats of earlier builds, or not a Dolmen value at all).
    #[error(
        "{what}: unknown format version {version:#04x}; this build reads version \
         {FORMAT_V1:#04x} only (docs/encoding.md)"
    )]
    UnknownVersion {
        /// The kind of value.
        what: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// As [`DecodeError::UnknownVersion`], for a kind of value this build reads in several
    /// format versions (the dedupe entry).
    #[error(
        "{what}: unknown format version {version:#04x}; this build reads versions {} of it \
         (docs/encoding.md)",
        versions_list(known)
    )]
    UnknownVersionOf {
        /// The kind of value.
        what: &'static str,
        /// The version byte found.
        version: u8,
        /// The versions this build reads for this kind.
        known: &'static [u8],
    },
    /// The value ends inside a field.
    #[error("corrupt {what}: {field} needs {needed} more bytes, {remaining} left")]
    Truncated {
        /// The kind of value.
        what: &'static str,
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the value.
        remaining: usize,
    },
    /// Bytes are left over after the last field.
    #[error("corrupt {what}: {count} trailing bytes after the last field")]
    Trailing {
        /// The kind of value.
        what: &'static str,
        /// How many bytes are left.
        count: usize,
    },
    /// A tag (a kind byte or a presence flag) has a value this version does not define.
    #[error("corrupt {what}: unknown {field} {tag}")]
    UnknownTag {
        /// The kind of value.
        what: &'static str,
        /// The tag's field ("command kind", "read_version presence flag", ...).
        field: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// A string field is not UTF-8.
    #[error("corrupt {what}: {field} is not UTF-8")]
    NotUtf8 {
        /// The kind of value.
        what: &'static str,
        /// The field.
        field: &'static str,
    },
    /// The fields decode but do not make a valid value (e.g. a membership whose voters are not
    /// in its address book).
    #[error("corrupt {what}: {problem}")]
    Invalid {
        /// The kind of value.
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl DecodeError {
    /// The kind of value that failed to decode.
    pub fn what(&self) -> &'static str {
        match self {
            DecodeError::Empty { what }
            | DecodeError::UnknownVersion { what, .. }
            | DecodeError::UnknownVersionOf { what, .. }
            | DecodeError::Truncated { what, .. }
            | DecodeError::Trailing { what, .. }
            | DecodeError::UnknownTag { what, .. }
            | DecodeError::NotUtf8 { what, .. }
            | DecodeError::Invalid { what, .. } => what,
        }
    }
}

/// `0x01, 0x02`: the version bytes of [`DecodeError::UnknownVersionOf`]'s message.
fn versions_list(known: &[u8]) -> String {
    known
        .iter()
        .map(|v| format!("{v:#04x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// openraft's storage traits speak `io::Error`: a bad value is `InvalidData`, with this error
/// as its source (`io::Error::get_ref` and `downcast_ref` recover it).
impl From<DecodeError> for std::io::Error {
    fn from(e: DecodeError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// A value that cannot be encoded is `InvalidInput`, with this error as its source.
impl From<EncodeError> for std::io::Error {
    fn from(e: EncodeError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

/// Builds one value: the format version byte first, then the fields in order.
#[derive(Debug)]
pub struct Writer {
    /// The kind of value, for errors.
    what: &'static str,
    out: Vec<u8>,
}

impl Writer {
    /// Starts a value of kind `what` with the version byte [`FORMAT_V1`].
    pub fn new(what: &'static str) -> Self {
        Self::with_capacity(what, 64)
    }

    /// [`Writer::new`], reserving `capacity` bytes.
    pub fn with_capacity(what: &'static str, capacity: usize) -> Self {
        Self::versioned(what, FORMAT_V1, capacity)
    }

    /// Starts a value of kind `what` with the version byte `version` (a kind with several
    /// layouts: the dedupe entry's [`FORMAT_V2`]).
    pub fn versioned(what: &'static str, version: u8, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity.max(1));
        out.push(version);
        Self { what, out }
    }

    /// One byte (a tag).
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    /// A presence flag: `0` or `1`.
    pub fn flag(&mut self, present: bool) {
        self.out.push(u8::from(present));
    }

    /// `be64`.
    pub fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// A `be32` count or length.
    pub fn count(&mut self, field: &'static str, n: usize) -> Result<(), EncodeError> {
        let n = u32::try_from(n).map_err(|_| EncodeError::TooLong {
            what: self.what,
            field,
            len: n,
        })?;
        self.out.extend_from_slice(&n.to_be_bytes());
        Ok(())
    }

    /// `be32 len ‖ bytes`.
    pub fn bytes(&mut self, field: &'static str, b: &[u8]) -> Result<(), EncodeError> {
        self.count(field, b.len())?;
        self.out.extend_from_slice(b);
        Ok(())
    }

    /// `be32 len ‖ utf-8`.
    pub fn str(&mut self, field: &'static str, s: &str) -> Result<(), EncodeError> {
        self.bytes(field, s.as_bytes())
    }

    /// Bytes of a length fixed by the format (a 16-byte txid): no length prefix.
    pub fn fixed(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// Bytes with no length prefix: only as the last field of a value.
    pub fn rest(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// The encoded value.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Reads one value front to back; every failure names the kind of value and the field.
#[derive(Debug)]
pub struct Reader<'a> {
    /// The kind of value, for errors.
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks the format version byte of a value of kind `what` and starts after it.
    pub fn new(what: &'static str, bytes: &'a [u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            // The one version this build reads (invariant 1): the body layout follows from it.
            Some((&FORMAT_V1, rest)) => Ok(Self { what, rest }),
            Some((&version, _)) => Err(DecodeError::UnknownVersion { what, version }),
            None => Err(DecodeError::Empty { what }),
        }
    }

    /// Checks that the format version byte of a value of kind `what` is one of `known` and
    /// starts after it; returns the version found, which decides the body's layout.
    pub fn versioned(
        what: &'static str,
        bytes: &'a [u8],
        known: &'static [u8],
    ) -> Result<(u8, Self), DecodeError> {
        match bytes.split_first() {
            Some((&version, rest)) if known.contains(&version) => {
                Ok((version, Self { what, rest }))
            }
            Some((&version, _)) => Err(DecodeError::UnknownVersionOf {
                what,
                version,
                known,
            }),
            None => Err(DecodeError::Empty { what }),
        }
    }

    /// Reads one whole value of kind `what`: the version byte, then `read`, then nothing more.
    pub fn whole<T>(
        what: &'static str,
        bytes: &'a [u8],
        read: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let mut r = Reader::new(what, bytes)?;
        let value = read(&mut r)?;
        r.finish()?;
        Ok(value)
    }

    /// The kind of value being read.
    pub fn what(&self) -> &'static str {
        self.what
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated {
                what: self.what,
                field,
                needed: n,
                remaining: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// One byte (a tag).
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(field, 1)?[0])
    }

    /// A presence flag: `0` or `1`, anything else is an error.
    pub fn flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(self.unknown_tag(field, tag)),
        }
    }

    /// `be64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(field, 8)?);
        Ok(u64::from_be_bytes(b))
    }

    /// A `be32` count or length.
    pub fn count(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(field, 4)?);
        // u32 always fits usize on the 32- and 64-bit targets Dolmen builds for.
        Ok(u32::from_be_bytes(b) as usize)
    }

    /// `be32 len ‖ bytes`.
    pub fn bytes(&mut self, field: &'static str) -> Result<Vec<u8>, DecodeError> {
        let len = self.count(field)?;
        Ok(self.take(field, len)?.to_vec())
    }

    /// `be32 len ‖ utf-8`.
    pub fn str(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let bytes = self.bytes(field)?;
        String::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8 {
            what: self.what,
            field,
        })
    }

    /// Everything left (the last field of a value written with [`Writer::rest`]).
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// The error for a tag this version does not define.
    pub fn unknown_tag(&self, field: &'static str, tag: u8) -> DecodeError {
        DecodeError::UnknownTag {
            what: self.what,
            field,
            tag,
        }
    }

    /// The error for fields that decode but do not make a valid value.
    pub fn invalid(&self, problem: impl Display) -> DecodeError {
        DecodeError::Invalid {
            what: self.what,
            problem: problem.to_string(),
        }
    }

    /// Ends the value: no bytes may be left.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing {
                what: self.what,
                count: self.rest.len(),
            })
        }
    }
}

/// `FORMAT_V1 ‖ be64 v`: the engine's `meta` counters (`applied_version`, `horizon`,
/// `live_keys`).
pub(crate) fn encode_u64(v: u64) -> Vec<u8> {
    let mut w = Writer::with_capacity("meta counter", 9);
    w.u64(v);
    w.finish()
}

/// Decodes a value written by [`encode_u64`]; `what` names the `meta` key.
pub(crate) fn decode_u64(what: &'static str, bytes: &[u8]) -> Result<u64, DecodeError> {
    let mut r = Reader::new(what, bytes)?;
    let v = r.u64("value")?;
    r.finish()?;
    Ok(v)
}

/// `FORMAT_V1 ‖ marker`: the restore marker (`meta/restore_pending`); the marker's bytes are
/// the caller's (the Raft layer stores the snapshot file's path) and run to the end.
pub(crate) fn encode_marker(marker: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity("restore marker", marker.len() + 1);
    w.rest(marker);
    w.finish()
}

/// Decodes a value written by [`encode_marker`].
pub(crate) fn decode_marker(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut r = Reader::new("restore marker", bytes)?;
    Ok(r.rest().to_vec())
}

#[cfg(test)]
mod tests;
