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
mod tests;
