//! A resumable structural scanner for one strict `TBinaryProtocol` message.
//!
//! It owns the question "where does this message end, and is it well formed?" without decoding
//! anything: bytes are fed in whatever segments the socket delivers and the scanner keeps its
//! position in an explicit stack, so a message costs O(its length) however it is split.
//!
//! ```text
//! header(i32 0x800100TT) name(i32 len + UTF-8) seqid(i32) struct
//! struct := { type(u8) id(i16) value }* STOP(0)
//! value  := bool|byte 1 | i16 2 | i32 4 | i64|double 8 | uuid 16 | string i32 len + bytes
//!         | struct | map(ktype vtype i32 count (k v)*) | list|set(etype i32 count v*)
//! ```
//!
//! The scanner never allocates in proportion to a length prefix: it only skips bytes it has
//! been given. Every prefix is checked against the limits *before* the bytes it announces are
//! awaited, so a lying prefix is rejected as soon as the prefix itself has arrived.

use std::fmt;

use super::SafeCodecLimits;

/// The longest method name the scanner accepts (bytes).
pub(crate) const MAX_METHOD_NAME_LEN: usize = 256;

/// The smallest possible message: header 4, name length 4 (empty name), seqid 4, STOP 1.
pub(crate) const MIN_MESSAGE_LEN: usize = 13;

pub(crate) const T_STOP: u8 = 0;
pub(crate) const T_VOID: u8 = 1;
pub(crate) const T_BOOL: u8 = 2;
pub(crate) const T_BYTE: u8 = 3;
pub(crate) const T_DOUBLE: u8 = 4;
pub(crate) const T_I16: u8 = 6;
pub(crate) const T_I32: u8 = 8;
pub(crate) const T_I64: u8 = 10;
pub(crate) const T_STRING: u8 = 11;
pub(crate) const T_STRUCT: u8 = 12;
pub(crate) const T_MAP: u8 = 13;
pub(crate) const T_SET: u8 = 14;
pub(crate) const T_LIST: u8 = 15;
pub(crate) const T_UUID: u8 = 16;

/// The smallest number of bytes a value of wire type `ttype` occupies, or `None` when `ttype`
/// is not a value type (STOP, VOID, or an id no Thrift type uses).
pub(crate) fn min_wire_size(ttype: u8) -> Option<usize> {
    match ttype {
        T_BOOL | T_BYTE | T_STRUCT => Some(1),
        T_I16 => Some(2),
        T_I32 | T_STRING => Some(4),
        T_DOUBLE | T_I64 => Some(8),
        T_SET | T_LIST => Some(5),
        T_MAP => Some(6),
        T_UUID => Some(16),
        _ => None,
    }
}

/// Whether `ttype` is any id the binary protocol defines (including STOP and VOID).
pub(crate) fn is_known_type(ttype: u8) -> bool {
    ttype == T_STOP || ttype == T_VOID || min_wire_size(ttype).is_some()
}

/// Checks a strict message header (`0x8001_00TT`) and returns the message type `TT` (1..=4).
pub(crate) fn parse_message_header(header: u32) -> Result<u8, ScanError> {
    let message_type = (header & 0xff) as u8;
    if header & 0xffff_ff00 != 0x8001_0000 || !(1..=4).contains(&message_type) {
        return Err(ScanError::BadHeader { header });
    }
    Ok(message_type)
}

/// The bound a message is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// An unframed message: [`SafeCodecLimits::max_message_bytes`].
    MaxMessageBytes(usize),
    /// A framed message: its frame length (itself at most `max_message_bytes`).
    Frame(usize),
}

impl Budget {
    fn bytes(self) -> usize {
        match self {
            Budget::MaxMessageBytes(n) | Budget::Frame(n) => n,
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::MaxMessageBytes(n) => write!(f, "max_message_bytes={n}"),
            Budget::Frame(n) => write!(f, "its frame length {n}"),
        }
    }
}

/// Why a byte stream is not an acceptable message. Offsets count from the first byte of the
/// message (after the 4-byte frame length, for framed messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The first bytes are neither strict binary nor a frame holding strict binary.
    #[error(
        "not a strict binary Thrift message (80 01 ..) nor a framed one (4-byte length, then \
         80 01 ..); first bytes: {prefix}"
    )]
    NotStrictBinary {
        /// The bytes seen, in hex.
        prefix: String,
    },
    /// A compact-protocol message (unframed or framed); only binary is served.
    #[error("the compact protocol is not supported, send strict TBinaryProtocol")]
    CompactProtocol,
    /// A frame length prefix that is zero or too small to hold any message.
    #[error("frame length {len} is shorter than the smallest message ({MIN_MESSAGE_LEN} bytes)")]
    FrameTooShort {
        /// The claimed frame length.
        len: usize,
    },
    /// A frame length prefix above the configured maximum.
    #[error("message exceeds max_message_bytes={max}: frame length {len}")]
    FrameTooLarge {
        /// The claimed frame length.
        len: usize,
        /// `max_message_bytes`.
        max: usize,
    },
    /// The frame ended before the message it holds did.
    #[error("frame of {frame_len} bytes ends before the message it holds is complete")]
    FrameIncomplete {
        /// The frame length.
        frame_len: usize,
    },
    /// The message ended before its frame did.
    #[error("frame of {frame_len} bytes holds {trailing} bytes after the end of its message")]
    FrameTrailing {
        /// The frame length.
        frame_len: usize,
        /// Bytes left over.
        trailing: usize,
    },
    /// The message header is not `0x8001_00TT` with a message type in 1..=4.
    #[error(
        "message header 0x{header:08x} is not strict binary version 1 (0x800100TT, message \
         type TT in 1..=4)"
    )]
    BadHeader {
        /// The header as read.
        header: u32,
    },
    /// A negative length or element count.
    #[error("{what} {len} at offset {offset} is negative")]
    NegativeLength {
        /// "string length", "list count", ...
        what: &'static str,
        /// The value read.
        len: i32,
        /// Where the prefix starts.
        offset: usize,
    },
    /// A method name longer than [`MAX_METHOD_NAME_LEN`].
    #[error("method name length {len} at offset {offset} exceeds the limit of {max} bytes")]
    NameTooLong {
        /// The claimed length.
        len: usize,
        /// Where the prefix starts.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// A method name that is not UTF-8.
    #[error("method name at offset {offset} is not valid UTF-8")]
    NameNotUtf8 {
        /// Where the name starts.
        offset: usize,
    },
    /// An element count above `max_collection_len`.
    #[error("{what} {count} at offset {offset} exceeds max_collection_len={max}")]
    CollectionTooLong {
        /// "list count", "set count", "map count".
        what: &'static str,
        /// The claimed count.
        count: usize,
        /// Where the header starts.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// Something announced (or the next token) does not fit in what is left of the budget.
    #[error(
        "message exceeds {budget}: {what} at offset {offset} needs {needed} bytes, only \
         {remaining} remain"
    )]
    TooLarge {
        /// The bound that was exceeded.
        budget: Budget,
        /// What needed the bytes.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the budget.
        remaining: usize,
    },
    /// Containers nested deeper than `max_depth`.
    #[error("nesting depth exceeds max_depth={max} at offset {offset}")]
    TooDeep {
        /// Where the container that went too deep starts.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// A type id that is not valid where it appears.
    #[error("invalid {context} type id {type_id} at offset {offset}")]
    InvalidType {
        /// "field", "list element", "map key", ...
        context: &'static str,
        /// The id read.
        type_id: u8,
        /// Where it is.
        offset: usize,
    },
}

/// What [`Scanner::feed`] has learnt so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The message is not complete yet; feed more bytes.
    NeedMore,
    /// The message is complete and `len` bytes long.
    Complete {
        /// The exact length of the message.
        len: usize,
    },
}

/// What the next bytes mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    MsgHeader,
    NameLen,
    Name,
    SeqId,
    FieldType,
    FieldId,
    StringLen,
    ListHeader {
        set: bool,
    },
    MapHeader,
    /// A value just ended (after any pending skip): move to the next item.
    ValueDone,
    Done,
}

impl State {
    /// Length of the fixed-size token this state reads (0 for the non-token states).
    fn token_len(self) -> usize {
        match self {
            State::MsgHeader | State::NameLen | State::SeqId | State::StringLen => 4,
            State::FieldType => 1,
            State::FieldId => 2,
            State::ListHeader { .. } => 5,
            State::MapHeader => 6,
            State::Name | State::ValueDone | State::Done => 0,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            State::MsgHeader => "the message header",
            State::NameLen => "the method name length",
            State::SeqId => "the sequence id",
            State::FieldType => "a field type",
            State::FieldId => "a field id",
            State::StringLen => "a string length",
            State::ListHeader { set: false } => "a list header",
            State::ListHeader { set: true } => "a set header",
            State::MapHeader => "a map header",
            State::Name | State::ValueDone | State::Done => "a value",
        }
    }
}

/// An open container. Counts are `u64` so `2 * count` of a map never overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Struct,
    List {
        etype: u8,
        remaining: u64,
    },
    /// `remaining` counts keys and values: even = a key comes next.
    Map {
        ktype: u8,
        vtype: u8,
        remaining: u64,
    },
}

/// The resumable scanner. Create one per message ([`Scanner::new`]) or [`Scanner::reset`] it;
/// after an error it must be reset before reuse.
#[derive(Debug)]
pub struct Scanner {
    limits: SafeCodecLimits,
    budget: Budget,
    /// Bytes of the message consumed so far.
    offset: usize,
    state: State,
    /// Bytes of the current value still to skip before `state` applies.
    skip: usize,
    /// The fixed-size token being assembled (at most 6 bytes).
    tmp: [u8; 8],
    tmp_len: usize,
    /// Offset of the first byte of the token in `tmp`.
    token_start: usize,
    /// Field type read by `FieldType`, used by `FieldId`.
    field_type: u8,
    /// Method name bytes (at most [`MAX_METHOD_NAME_LEN`]) and how many are still to come.
    name: Vec<u8>,
    name_remaining: usize,
    name_start: usize,
    stack: Vec<Container>,
}

impl Scanner {
    /// A scanner for one message bounded by `limits.max_message_bytes`.
    pub fn new(limits: SafeCodecLimits) -> Self {
        Self {
            limits,
            budget: Budget::MaxMessageBytes(limits.max_message_bytes),
            offset: 0,
            state: State::MsgHeader,
            skip: 0,
            tmp: [0; 8],
            tmp_len: 0,
            token_start: 0,
            field_type: 0,
            name: Vec::new(),
            name_remaining: 0,
            name_start: 0,
            stack: Vec::new(),
        }
    }

    /// Forgets the current message (keeping allocations) so the next byte starts a new one.
    pub fn reset(&mut self, budget: Budget) {
        self.budget = budget;
        self.offset = 0;
        self.state = State::MsgHeader;
        self.skip = 0;
        self.tmp_len = 0;
        self.token_start = 0;
        self.name.clear();
        self.name_remaining = 0;
        self.stack.clear();
    }

    /// Feeds the next bytes of the stream. Returns how many of them belong to the message
    /// (all of `input` unless the message ended inside it) and whether it is complete.
    /// Once complete, further calls consume nothing and report the same length.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Scan), ScanError> {
        let mut pos = 0;
        loop {
            if self.state == State::Done {
                return Ok((pos, Scan::Complete { len: self.offset }));
            }
            if self.skip > 0 {
                let n = self.skip.min(input.len() - pos);
                pos += n;
                self.offset += n;
                self.skip -= n;
                if self.skip > 0 {
                    return Ok((pos, Scan::NeedMore));
                }
            }
            match self.state {
                State::ValueDone => self.next_item()?,
                State::Name => {
                    let n = self.name_remaining.min(input.len() - pos);
                    self.name.extend_from_slice(&input[pos..pos + n]);
                    pos += n;
                    self.offset += n;
                    self.name_remaining -= n;
                    if self.name_remaining > 0 {
                        return Ok((pos, Scan::NeedMore));
                    }
                    if std::str::from_utf8(&self.name).is_err() {
                        return Err(ScanError::NameNotUtf8 {
                            offset: self.name_start,
                        });
                    }
                    self.state = State::SeqId;
                }
                state => {
                    let need = state.token_len();
                    if pos == input.len() {
                        return Ok((pos, Scan::NeedMore));
                    }
                    if self.tmp_len == 0 {
                        self.token_start = self.offset;
                        self.ensure(need as u64, state.describe(), self.offset)?;
                    }
                    let n = (need - self.tmp_len).min(input.len() - pos);
                    self.tmp[self.tmp_len..self.tmp_len + n].copy_from_slice(&input[pos..pos + n]);
                    self.tmp_len += n;
                    pos += n;
                    self.offset += n;
                    if self.tmp_len < need {
                        return Ok((pos, Scan::NeedMore));
                    }
                    self.tmp_len = 0;
                    self.token(state)?;
                }
            }
        }
    }

    /// Fails unless `needed` more bytes, starting at `offset`, fit in the budget.
    fn ensure(&self, needed: u64, what: &'static str, offset: usize) -> Result<(), ScanError> {
        let remaining = self.budget.bytes().saturating_sub(offset);
        if needed > remaining as u64 {
            return Err(ScanError::TooLarge {
                budget: self.budget,
                what,
                offset,
                needed,
                remaining,
            });
        }
        Ok(())
    }

    fn be_i32(&self, at: usize) -> i32 {
        i32::from_be_bytes([
            self.tmp[at],
            self.tmp[at + 1],
            self.tmp[at + 2],
            self.tmp[at + 3],
        ])
    }

    /// Handles a complete fixed-size token read in `state`.
    fn token(&mut self, state: State) -> Result<(), ScanError> {
        let start = self.token_start;
        match state {
            State::MsgHeader => {
                parse_message_header(self.be_i32(0) as u32)?;
                self.state = State::NameLen;
            }
            State::NameLen => {
                let len = self.be_i32(0);
                if len < 0 {
                    return Err(ScanError::NegativeLength {
                        what: "method name length",
                        len,
                        offset: start,
                    });
                }
                let len = len as usize;
                if len > MAX_METHOD_NAME_LEN {
                    return Err(ScanError::NameTooLong {
                        len,
                        offset: start,
                        max: MAX_METHOD_NAME_LEN,
                    });
                }
                self.ensure(len as u64, "the method name", self.offset)?;
                self.name.clear();
                self.name_remaining = len;
                self.name_start = self.offset;
                self.state = State::Name;
            }
            State::SeqId => {
                // The message body is exactly one struct (the arguments, result or exception).
                self.push(Container::Struct, start)?;
                self.state = State::FieldType;
            }
            State::FieldType => {
                let ttype = self.tmp[0];
                if ttype == T_STOP {
                    self.stack.pop();
                    self.next_item()?;
                } else if min_wire_size(ttype).is_none() {
                    return Err(ScanError::InvalidType {
                        context: "field",
                        type_id: ttype,
                        offset: start,
                    });
                } else {
                    self.field_type = ttype;
                    self.state = State::FieldId;
                }
            }
            State::FieldId => self.begin_value(self.field_type)?,
            State::StringLen => {
                let len = self.be_i32(0);
                if len < 0 {
                    return Err(ScanError::NegativeLength {
                        what: "string length",
                        len,
                        offset: start,
                    });
                }
                self.ensure(len as u64, "a string", self.offset)?;
                self.skip = len as usize;
                self.state = State::ValueDone;
            }
            State::ListHeader { set } => {
                let (what, context) = if set {
                    ("set count", "set element")
                } else {
                    ("list count", "list element")
                };
                let etype = self.tmp[0];
                let count = self.count(self.be_i32(1), what, start)?;
                let min = self.element_size(etype, count, context, start)?;
                self.ensure(count.saturating_mul(min), what, self.offset)?;
                self.push(
                    Container::List {
                        etype,
                        remaining: count,
                    },
                    start,
                )?;
                self.next_item()?;
            }
            State::MapHeader => {
                let (ktype, vtype) = (self.tmp[0], self.tmp[1]);
                let count = self.count(self.be_i32(2), "map count", start)?;
                let kmin = self.element_size(ktype, count, "map key", start)?;
                let vmin = self.element_size(vtype, count, "map value", start)?;
                self.ensure(count.saturating_mul(kmin + vmin), "map count", self.offset)?;
                self.push(
                    Container::Map {
                        ktype,
                        vtype,
                        remaining: count * 2,
                    },
                    start,
                )?;
                self.next_item()?;
            }
            State::Name | State::ValueDone | State::Done => {}
        }
        Ok(())
    }

    /// Checks an element count against `max_collection_len`.
    fn count(&self, count: i32, what: &'static str, offset: usize) -> Result<u64, ScanError> {
        if count < 0 {
            return Err(ScanError::NegativeLength {
                what,
                len: count,
                offset,
            });
        }
        let count = count as usize;
        if count > self.limits.max_collection_len {
            return Err(ScanError::CollectionTooLong {
                what,
                count,
                offset,
                max: self.limits.max_collection_len,
            });
        }
        Ok(count as u64)
    }

    /// The minimum size of one element of type `ttype`. An empty collection may carry any
    /// known type id (some writers put STOP there); a non-empty one needs a value type.
    fn element_size(
        &self,
        ttype: u8,
        count: u64,
        context: &'static str,
        offset: usize,
    ) -> Result<u64, ScanError> {
        match min_wire_size(ttype) {
            Some(n) => Ok(n as u64),
            None if count == 0 && is_known_type(ttype) => Ok(0),
            None => Err(ScanError::InvalidType {
                context,
                type_id: ttype,
                offset,
            }),
        }
    }

    fn push(&mut self, container: Container, offset: usize) -> Result<(), ScanError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(ScanError::TooDeep {
                offset,
                max: self.limits.max_depth,
            });
        }
        self.stack.push(container);
        Ok(())
    }

    /// Starts reading a value of type `ttype` (already validated as a value type).
    fn begin_value(&mut self, ttype: u8) -> Result<(), ScanError> {
        let fixed = match ttype {
            T_BOOL | T_BYTE => 1,
            T_I16 => 2,
            T_I32 => 4,
            T_DOUBLE | T_I64 => 8,
            T_UUID => 16,
            T_STRING => {
                self.state = State::StringLen;
                return Ok(());
            }
            T_STRUCT => {
                self.push(Container::Struct, self.offset)?;
                self.state = State::FieldType;
                return Ok(());
            }
            T_MAP => {
                self.state = State::MapHeader;
                return Ok(());
            }
            T_SET | T_LIST => {
                self.state = State::ListHeader {
                    set: ttype == T_SET,
                };
                return Ok(());
            }
            _ => {
                return Err(ScanError::InvalidType {
                    context: "value",
                    type_id: ttype,
                    offset: self.offset,
                });
            }
        };
        self.ensure(fixed, "a fixed-size value", self.offset)?;
        self.skip = fixed as usize;
        self.state = State::ValueDone;
        Ok(())
    }

    /// A value (or a whole container) just ended: pick what comes next.
    fn next_item(&mut self) -> Result<(), ScanError> {
        loop {
            let next = match self.stack.last_mut() {
                None => {
                    self.state = State::Done;
                    return Ok(());
                }
                Some(Container::Struct) => {
                    self.state = State::FieldType;
                    return Ok(());
                }
                Some(
                    Container::List { remaining: 0, .. } | Container::Map { remaining: 0, .. },
                ) => None,
                Some(Container::List { etype, remaining }) => {
                    *remaining -= 1;
                    Some(*etype)
                }
                Some(Container::Map {
                    ktype,
                    vtype,
                    remaining,
                }) => {
                    let ttype = if *remaining % 2 == 0 { *ktype } else { *vtype };
                    *remaining -= 1;
                    Some(ttype)
                }
            };
            match next {
                // Element types were validated when the container was opened.
                Some(ttype) => return self.begin_value(ttype),
                None => {
                    self.stack.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_util::{request, Enc, Rng};

    fn limits() -> SafeCodecLimits {
        SafeCodecLimits::default()
    }

    /// Feeds `bytes` in `chunks` (sizes), stopping at completion; returns the bytes consumed
    /// and the final status.
    fn scan_chunks(
        bytes: &[u8],
        chunks: &[usize],
        limits: SafeCodecLimits,
    ) -> Result<(usize, Scan), ScanError> {
        let mut scanner = Scanner::new(limits);
        let mut pos = 0;
        let mut consumed = 0;
        let mut status = Scan::NeedMore;
        for &n in chunks {
            let (c, s) = scanner.feed(&bytes[pos..pos + n])?;
            assert!(c <= n);
            consumed += c;
            pos += n;
            status = s;
            if let Scan::Complete { .. } = s {
                assert_eq!(consumed, pos - n + c);
                break;
            }
            assert_eq!(c, n, "an incomplete message consumes all it is given");
        }
        Ok((consumed, status))
    }

    fn scan(bytes: &[u8], limits: SafeCodecLimits) -> Result<(usize, Scan), ScanError> {
        scan_chunks(bytes, &[bytes.len()], limits)
    }

    /// Whole, byte by byte and in 40 pseudo-random splittings: all must agree.
    fn scan_all_ways(bytes: &[u8], limits: SafeCodecLimits) -> Result<(usize, Scan), ScanError> {
        let whole = scan(bytes, limits);
        assert_eq!(scan_chunks(bytes, &vec![1; bytes.len()], limits), whole);
        let mut rng = Rng::new(0x5eed);
        for round in 0..40 {
            let chunks = rng.chunks(bytes.len(), 1 + round % 17);
            assert_eq!(
                scan_chunks(bytes, &chunks, limits),
                whole,
                "chunks {chunks:?}"
            );
        }
        whole
    }

    fn every_type(message_type: u8) -> Vec<u8> {
        let mut e = Enc::message("everything", message_type, -3);
        e.field(T_BOOL, 1).u8(1);
        e.field(T_BYTE, 2).u8(0xff);
        e.field(T_I16, 3).i16(-2);
        e.field(T_I32, 4).i32(5);
        e.field(T_I64, 5).i64(-6);
        e.field(T_DOUBLE, 6).f64(1.5);
        e.field(T_STRING, 7)
            .string(b"\xff\x00 binary need not be UTF-8");
        e.field(T_STRING, 8).string(b"");
        e.field(T_UUID, 9).raw(&[7; 16]);
        e.field(T_STRUCT, 10).field(T_I32, 1).i32(1);
        e.field(T_STRUCT, 2).stop().stop();
        e.field(T_MAP, 11).map(T_STRING, T_LIST, 2);
        e.string(b"a").list(T_I64, 2).i64(1).i64(2);
        e.string(b"b").list(T_I64, 0);
        e.field(T_SET, 12).list(T_I16, 3).i16(1).i16(2).i16(3);
        e.field(T_LIST, 13).list(T_STRUCT, 2);
        e.field(T_BOOL, 1).u8(0).stop().stop();
        e.field(T_LIST, 14).list(T_STOP, 0);
        e.field(T_MAP, 15).map(T_STOP, T_VOID, 0);
        e.field(T_LIST, 16).list(T_LIST, 2);
        e.list(T_BYTE, 1).u8(9).list(T_BYTE, 0);
        e.field(T_MAP, 17).map(T_I32, T_STRUCT, 1).i32(4).stop();
        e.field(T_I32, -1).i32(0);
        e.stop();
        e.bytes()
    }

    #[test]
    fn valid_messages_of_every_type_complete_at_their_exact_length() {
        for message_type in 1..=4 {
            let bytes = every_type(message_type);
            let len = bytes.len();
            assert_eq!(
                scan_all_ways(&bytes, limits()),
                Ok((len, Scan::Complete { len }))
            );
        }
        let smallest = Enc::message("", 1, 0).stop().bytes();
        assert_eq!(smallest.len(), MIN_MESSAGE_LEN);
        assert_eq!(
            scan_all_ways(&smallest, limits()),
            Ok((
                MIN_MESSAGE_LEN,
                Scan::Complete {
                    len: MIN_MESSAGE_LEN
                }
            ))
        );
        let req = request("get", b"key", &[b"a", b"bc"]).bytes();
        assert_eq!(
            scan_all_ways(&req, limits()),
            Ok((req.len(), Scan::Complete { len: req.len() }))
        );
    }

    #[test]
    fn only_the_message_is_consumed_when_more_follows() {
        let one = every_type(1);
        let mut two = one.clone();
        two.extend_from_slice(&request("next", b"k", &[]).bytes());
        let len = one.len();
        assert_eq!(
            scan_all_ways(&two, limits()),
            Ok((len, Scan::Complete { len }))
        );

        let mut scanner = Scanner::new(limits());
        assert_eq!(scanner.feed(&two), Ok((len, Scan::Complete { len })));
        assert_eq!(scanner.feed(&two[len..]), Ok((0, Scan::Complete { len })));
        scanner.reset(Budget::MaxMessageBytes(limits().max_message_bytes));
        let next = two.len() - len;
        assert_eq!(
            scanner.feed(&two[len..]),
            Ok((next, Scan::Complete { len: next }))
        );
    }

    #[test]
    fn a_prefix_needs_more() {
        let bytes = every_type(1);
        for cut in 0..bytes.len() {
            assert_eq!(
                scan(&bytes[..cut], limits()),
                Ok((cut, Scan::NeedMore)),
                "cut at {cut}"
            );
        }
    }

    /// Scans `bytes` all ways and returns the error.
    fn error(bytes: &[u8], limits: SafeCodecLimits) -> ScanError {
        match scan_all_ways(bytes, limits) {
            Err(e) => e,
            Ok(ok) => panic!("expected an error, got {ok:?}"),
        }
    }

    #[test]
    fn negative_lengths_and_counts_are_rejected() {
        let mut e = Enc::call("getRange");
        e.field(T_STRING, 1);
        let offset = e.0.len();
        e.i32(-5);
        let err = error(&e.bytes(), limits());
        assert_eq!(
            err,
            ScanError::NegativeLength {
                what: "string length",
                len: -5,
                offset
            }
        );
        assert_eq!(err.to_string(), "string length -5 at offset 23 is negative");

        for (ttype, what) in [(T_LIST, "list count"), (T_SET, "set count")] {
            let mut e = Enc::call("m");
            e.field(ttype, 1);
            let offset = e.0.len();
            e.list(T_I32, i32::MIN);
            assert_eq!(
                error(&e.bytes(), limits()),
                ScanError::NegativeLength {
                    what,
                    len: i32::MIN,
                    offset
                }
            );
        }

        let mut e = Enc::call("m");
        e.field(T_MAP, 1);
        let offset = e.0.len();
        e.map(T_I32, T_I32, -1);
        assert_eq!(
            error(&e.bytes(), limits()),
            ScanError::NegativeLength {
                what: "map count",
                len: -1,
                offset
            }
        );

        let mut e = Enc::default();
        e.u32(0x8001_0001).i32(-1);
        assert_eq!(
            error(&e.bytes(), limits()),
            ScanError::NegativeLength {
                what: "method name length",
                len: -1,
                offset: 4
            }
        );
    }

    #[test]
    fn bad_method_names_are_rejected() {
        let long = "x".repeat(MAX_METHOD_NAME_LEN + 1);
        let mut e = Enc::default();
        e.u32(0x8001_0001).i32(long.len() as i32);
        assert_eq!(
            error(&e.bytes(), limits()),
            ScanError::NameTooLong {
                len: MAX_METHOD_NAME_LEN + 1,
                offset: 4,
                max: MAX_METHOD_NAME_LEN
            }
        );
        let longest = "x".repeat(MAX_METHOD_NAME_LEN);
        let ok = Enc::call(&longest).stop().bytes();
        assert!(scan_all_ways(&ok, limits()).is_ok());

        let mut e = Enc::default();
        e.u32(0x8001_0001).string(b"ge\xfft").i32(1).stop();
        assert_eq!(
            error(&e.bytes(), limits()),
            ScanError::NameNotUtf8 { offset: 8 }
        );
    }

    #[test]
    fn bad_headers_are_rejected() {
        for header in [
            0x8001_0000u32,
            0x8001_0005,
            0x8001_0101,
            0x8002_0001,
            0x0000_0004,
            0x7fff_ffff,
        ] {
            let mut e = Enc::default();
            e.u32(header).string(b"m").i32(1).stop();
            assert_eq!(
                error(&e.bytes(), limits()),
                ScanError::BadHeader { header },
                "{header:08x}"
            );
        }
    }

    #[test]
    fn invalid_type_ids_are_rejected() {
        for bad in [5u8, 7, 9, 17, 0xff, T_VOID] {
            let mut e = Enc::call("m");
            let offset = e.0.len();
            e.field(bad, 1).i32(0).stop();
            assert_eq!(
                error(&e.bytes(), limits()),
                ScanError::InvalidType {
                    context: "field",
                    type_id: bad,
                    offset
                }
            );
        }
        // Non-empty collections need value types; empty ones any known id, never an unknown one.
        for (etype, count) in [(T_STOP, 1), (T_VOID, 2), (5, 1), (5, 0), (200, 0)] {
            let mut e = Enc::call("m");
            e.field(T_LIST, 1);
            let offset = e.0.len();
            e.list(etype, count).u8(0).stop();
            assert_eq!(
                error(&e.bytes(), limits()),
                ScanError::InvalidType {
                    context: "list element",
                    type_id: etype,
                    offset
                }
            );
        }
        let mut e = Enc::call("m");
        e.field(T_MAP, 1);
        let offset = e.0.len();
        e.map(T_I32, 9, 1).i32(0).i32(0).stop();
        assert_eq!(
            error(&e.bytes(), limits()),
            ScanError::InvalidType {
                context: "map value",
                type_id: 9,
                offset
            }
        );
    }

    #[test]
    fn lengths_beyond_the_message_budget_are_rejected_on_arrival() {
        // A 2 GiB string claim fails as soon as its prefix arrives, without its bytes.
        let mut e = Enc::call("setKey");
        e.field(T_STRING, 2).i32(i32::MAX);
        let offset = e.0.len();
        let err = error(&e.bytes(), limits());
        assert!(
            matches!(
                err,
                ScanError::TooLarge { budget: Budget::MaxMessageBytes(16_777_216), what: "a string", offset: o, needed, .. }
                    if o == offset && needed == i32::MAX as u64
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("message exceeds max_message_bytes=16777216: a string at offset"),
            "{err}"
        );

        // A count whose elements cannot fit.
        let small = SafeCodecLimits {
            max_message_bytes: 1 << 20,
            ..limits()
        };
        let mut e = Enc::call("m");
        e.field(T_LIST, 1).list(T_I64, 200_000);
        let err = error(&e.bytes(), small);
        assert!(
            matches!(
                err,
                ScanError::TooLarge {
                    what: "list count",
                    needed: 1_600_000,
                    ..
                }
            ),
            "{err:?}"
        );
        let mut e = Enc::call("m");
        e.field(T_MAP, 1).map(T_STRING, T_STRUCT, 300_000);
        let err = error(&e.bytes(), small);
        assert!(
            matches!(
                err,
                ScanError::TooLarge {
                    what: "map count",
                    needed: 1_500_000,
                    ..
                }
            ),
            "{err:?}"
        );

        // The frame budget is reported as such.
        let mut e = Enc::call("m");
        e.field(T_STRING, 1).i32(100);
        let mut scanner = Scanner::new(limits());
        scanner.reset(Budget::Frame(50));
        let err = scanner.feed(&e.bytes()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("message exceeds its frame length 50"),
            "{err}"
        );
    }

    #[test]
    fn total_size_over_max_message_bytes_is_rejected() {
        let tiny = SafeCodecLimits {
            max_message_bytes: 64,
            ..limits()
        };
        let mut e = Enc::call("m");
        for id in 0..10 {
            e.field(T_I64, id).i64(0);
        }
        e.stop();
        let err = error(&e.bytes(), tiny);
        assert!(
            matches!(
                err,
                ScanError::TooLarge {
                    budget: Budget::MaxMessageBytes(64),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with("message exceeds max_message_bytes=64"));
        // Exactly at the limit is fine.
        let exact = SafeCodecLimits {
            max_message_bytes: e.0.len(),
            ..limits()
        };
        let len = e.0.len();
        assert_eq!(
            scan_all_ways(&e.bytes(), exact),
            Ok((len, Scan::Complete { len }))
        );
    }

    #[test]
    fn collections_over_max_collection_len_are_rejected() {
        let few = SafeCodecLimits {
            max_collection_len: 3,
            ..limits()
        };
        for (ttype, what) in [(T_LIST, "list count"), (T_SET, "set count")] {
            let mut e = Enc::call("m");
            e.field(ttype, 1);
            let offset = e.0.len();
            e.list(T_BYTE, 4).raw(&[0; 4]).stop();
            assert_eq!(
                error(&e.bytes(), few),
                ScanError::CollectionTooLong {
                    what,
                    count: 4,
                    offset,
                    max: 3
                }
            );
        }
        let mut e = Enc::call("m");
        e.field(T_MAP, 1).map(T_BYTE, T_BYTE, 4).raw(&[0; 8]).stop();
        assert!(matches!(
            error(&e.bytes(), few),
            ScanError::CollectionTooLong {
                what: "map count",
                count: 4,
                ..
            }
        ));
        let mut e = Enc::call("m");
        e.field(T_LIST, 1).list(T_BYTE, 3).raw(&[0; 3]).stop();
        assert!(scan_all_ways(&e.bytes(), few).is_ok());
    }

    /// A message whose argument struct holds `lists` nested lists.
    fn nested_lists(lists: usize) -> Vec<u8> {
        let mut e = Enc::call("deep");
        e.field(T_LIST, 1);
        for _ in 1..lists {
            e.list(T_LIST, 1);
        }
        e.list(T_BYTE, 0).stop();
        e.bytes()
    }

    #[test]
    fn nesting_deeper_than_max_depth_is_rejected() {
        // The argument struct is depth 1, so 63 nested lists reach the default 64.
        let ok = nested_lists(63);
        assert_eq!(
            scan_all_ways(&ok, limits()),
            Ok((ok.len(), Scan::Complete { len: ok.len() }))
        );
        let err = error(&nested_lists(64), limits());
        assert!(matches!(err, ScanError::TooDeep { max: 64, .. }), "{err:?}");

        let mut e = Enc::call("deep");
        for _ in 0..3 {
            e.field(T_STRUCT, 1);
        }
        e.stop().stop().stop().stop();
        let shallow = SafeCodecLimits {
            max_depth: 3,
            ..limits()
        };
        assert!(matches!(
            error(&e.bytes(), shallow),
            ScanError::TooDeep { max: 3, .. }
        ));
        let enough = SafeCodecLimits {
            max_depth: 4,
            ..limits()
        };
        assert!(scan_all_ways(&e.bytes(), enough).is_ok());
    }

    #[test]
    fn ten_megabytes_one_byte_at_a_time_is_linear() {
        let mut e = Enc::call("setKey");
        e.field(T_STRING, 1).string(&vec![0xab; 10 << 20]);
        e.field(T_LIST, 2).list(T_I32, 100_000);
        for i in 0..100_000 {
            e.i32(i);
        }
        e.stop();
        let bytes = e.bytes();
        let mut scanner = Scanner::new(limits());
        let start = std::time::Instant::now();
        let mut status = Scan::NeedMore;
        for (i, b) in bytes.iter().enumerate() {
            let (consumed, s) = scanner.feed(std::slice::from_ref(b)).unwrap();
            assert_eq!(consumed, 1);
            status = s;
            if i + 1 < bytes.len() {
                assert_eq!(s, Scan::NeedMore);
            }
        }
        assert_eq!(status, Scan::Complete { len: bytes.len() });
        // Generous: quadratic behaviour would take hours, linear takes well under a second.
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
    }
}
