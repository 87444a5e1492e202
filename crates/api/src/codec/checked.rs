//! A bounds-checked `TInputProtocol` for strict binary messages held in one [`Bytes`].
//!
//! It owns the typed decode of a message the scanner has already delimited. pilota's
//! `TBinaryProtocol<&mut Bytes>` trusts every length it reads (`split_to(len as usize)` panics
//! past the end, names and strings skip UTF-8 checks) and the code pilota generates for
//! containers trusts the wire element type and calls `Vec::with_capacity(count)`. The scanner
//! proves the message is well formed *by its own wire types*, but the generated code reads
//! elements by the *IDL* types: a `list<binary>` sent as `list<i32>` makes it read a length
//! out of arbitrary bytes. This protocol re-checks every length and count it hands out, so such
//! a message becomes a protocol error, never a panic or a huge allocation.

use bytes::{Buf, Bytes};
use pilota::{
    thrift::{
        new_protocol_exception, ProtocolExceptionKind, TFieldIdentifier, TInputProtocol,
        TLengthProtocol, TListIdentifier, TMapIdentifier, TMessageIdentifier, TMessageType,
        TSetIdentifier, TStructIdentifier, TType, ThriftException,
    },
    FastStr,
};

use super::{
    scanner::{min_wire_size, parse_message_header, MAX_METHOD_NAME_LEN},
    SafeCodecLimits,
};

/// Reads one strict binary message from `buf`, checking every length, count and type id.
///
/// Invariants: it never reads past the end of `buf`, never returns a count whose elements
/// could not fit in the bytes left (so `Vec::with_capacity(count)` is bounded by the message
/// size), and never returns a `String`/`FastStr` that is not UTF-8.
pub(crate) struct CheckedBinaryInput<'a> {
    buf: &'a mut Bytes,
    /// The whole message as it was at the start, to serve `get_bytes` without `unsafe`.
    origin: Bytes,
    limits: SafeCodecLimits,
}

impl<'a> CheckedBinaryInput<'a> {
    /// A protocol reading from the start of `buf`.
    pub(crate) fn new(buf: &'a mut Bytes, limits: SafeCodecLimits) -> Self {
        let origin = buf.clone();
        Self {
            buf,
            origin,
            limits,
        }
    }

    /// Offset of the next byte from the start of the message.
    fn offset(&self) -> usize {
        self.origin.len() - self.buf.len()
    }

    fn need(&self, n: usize, what: &str) -> Result<(), ThriftException> {
        if self.buf.remaining() < n {
            return Err(new_protocol_exception(
                ProtocolExceptionKind::InvalidData,
                format!(
                    "{what} at offset {} needs {n} bytes, only {} remain in the message",
                    self.offset(),
                    self.buf.remaining()
                ),
            ));
        }
        Ok(())
    }

    /// Reads an i32 length prefix and checks that the bytes it announces are present.
    fn read_len(&mut self, what: &str) -> Result<usize, ThriftException> {
        let offset = self.offset();
        let len = self.read_i32()?;
        if len < 0 {
            return Err(new_protocol_exception(
                ProtocolExceptionKind::NegativeSize,
                format!("{what} length {len} at offset {offset} is negative"),
            ));
        }
        let len = len as usize;
        self.need(len, what)?;
        Ok(len)
    }

    fn read_ttype(&mut self, context: &str) -> Result<(u8, TType), ThriftException> {
        let offset = self.offset();
        let id = self.read_byte()?;
        let ttype = TType::try_from(id).map_err(|_| {
            new_protocol_exception(
                ProtocolExceptionKind::InvalidData,
                format!("invalid {context} type id {id} at offset {offset}"),
            )
        })?;
        Ok((id, ttype))
    }

    /// Checks an element count: not negative, within `max_collection_len`, and small enough
    /// that `count` elements of at least `min_each` bytes fit in what is left.
    fn check_count(
        &self,
        count: i32,
        min_each: Option<usize>,
        what: &str,
        offset: usize,
    ) -> Result<usize, ThriftException> {
        if count < 0 {
            return Err(new_protocol_exception(
                ProtocolExceptionKind::NegativeSize,
                format!("{what} count {count} at offset {offset} is negative"),
            ));
        }
        let count = count as usize;
        if count > self.limits.max_collection_len {
            return Err(new_protocol_exception(
                ProtocolExceptionKind::SizeLimit,
                format!(
                    "{what} count {count} at offset {offset} exceeds max_collection_len={}",
                    self.limits.max_collection_len
                ),
            ));
        }
        if count == 0 {
            return Ok(0);
        }
        let Some(min_each) = min_each else {
            return Err(new_protocol_exception(
                ProtocolExceptionKind::InvalidData,
                format!("{what} at offset {offset} has {count} elements of a non-value type"),
            ));
        };
        if count.saturating_mul(min_each) > self.buf.remaining() {
            return Err(new_protocol_exception(
                ProtocolExceptionKind::InvalidData,
                format!(
                    "{what} count {count} at offset {offset} cannot fit in the {} bytes left",
                    self.buf.remaining()
                ),
            ));
        }
        Ok(count)
    }

    fn read_bytes_checked(&mut self, what: &str) -> Result<Bytes, ThriftException> {
        let len = self.read_len(what)?;
        Ok(self.buf.split_to(len))
    }

    fn read_utf8(&mut self, what: &str) -> Result<FastStr, ThriftException> {
        let offset = self.offset();
        let bytes = self.read_bytes_checked(what)?;
        FastStr::from_bytes(bytes).map_err(|e| {
            new_protocol_exception(
                ProtocolExceptionKind::InvalidData,
                format!("{what} at offset {offset} is not valid UTF-8: {e}"),
            )
        })
    }
}

impl TLengthProtocol for CheckedBinaryInput<'_> {
    // Sizes of the binary protocol (as pilota's `TBinaryProtocol`); generated code uses them to
    // measure unknown fields it keeps.
    fn message_begin_len(&mut self, identifier: &TMessageIdentifier) -> usize {
        4 + 4 + identifier.name.len() + 4
    }
    fn message_end_len(&mut self) -> usize {
        0
    }
    fn struct_begin_len(&mut self, _identifier: &TStructIdentifier) -> usize {
        0
    }
    fn struct_end_len(&mut self) -> usize {
        0
    }
    fn field_begin_len(&mut self, _field_type: TType, _id: Option<i16>) -> usize {
        3
    }
    fn field_end_len(&mut self) -> usize {
        0
    }
    fn field_stop_len(&mut self) -> usize {
        1
    }
    fn bool_len(&mut self, _b: bool) -> usize {
        1
    }
    fn bytes_len(&mut self, b: &[u8]) -> usize {
        4 + b.len()
    }
    fn bytes_vec_len(&mut self, b: &[u8]) -> usize {
        4 + b.len()
    }
    fn byte_len(&mut self, _b: u8) -> usize {
        1
    }
    fn uuid_len(&mut self, _u: [u8; 16]) -> usize {
        16
    }
    fn i8_len(&mut self, _i: i8) -> usize {
        1
    }
    fn i16_len(&mut self, _i: i16) -> usize {
        2
    }
    fn i32_len(&mut self, _i: i32) -> usize {
        4
    }
    fn i64_len(&mut self, _i: i64) -> usize {
        8
    }
    fn double_len(&mut self, _d: f64) -> usize {
        8
    }
    fn string_len(&mut self, s: &str) -> usize {
        4 + s.len()
    }
    fn faststr_len(&mut self, s: &FastStr) -> usize {
        4 + s.len()
    }
    fn list_begin_len(&mut self, _identifier: TListIdentifier) -> usize {
        5
    }
    fn list_end_len(&mut self) -> usize {
        0
    }
    fn set_begin_len(&mut self, _identifier: TSetIdentifier) -> usize {
        5
    }
    fn set_end_len(&mut self) -> usize {
        0
    }
    fn map_begin_len(&mut self, _identifier: TMapIdentifier) -> usize {
        6
    }
    fn map_end_len(&mut self) -> usize {
        0
    }
}

impl TInputProtocol for CheckedBinaryInput<'_> {
    type Buf = Bytes;

    fn read_message_begin(&mut self) -> Result<TMessageIdentifier, ThriftException> {
        let header = self.read_i32()? as u32;
        let message_type = parse_message_header(header).map_err(|e| {
            new_protocol_exception(ProtocolExceptionKind::BadVersion, e.to_string())
        })?;
        let message_type = TMessageType::try_from(message_type)?;
        let offset = self.offset();
        let name = self.read_utf8("method name")?;
        if name.len() > MAX_METHOD_NAME_LEN {
            return Err(new_protocol_exception(
                ProtocolExceptionKind::SizeLimit,
                format!(
                    "method name length {} at offset {offset} exceeds the limit of \
                     {MAX_METHOD_NAME_LEN} bytes",
                    name.len()
                ),
            ));
        }
        let sequence_number = self.read_i32()?;
        Ok(TMessageIdentifier::new(name, message_type, sequence_number))
    }

    fn read_message_end(&mut self) -> Result<(), ThriftException> {
        Ok(())
    }

    fn read_struct_begin(&mut self) -> Result<Option<TStructIdentifier>, ThriftException> {
        Ok(None)
    }

    fn read_struct_end(&mut self) -> Result<(), ThriftException> {
        Ok(())
    }

    fn read_field_begin(&mut self) -> Result<TFieldIdentifier, ThriftException> {
        let (_, field_type) = self.read_ttype("field")?;
        let id = match field_type {
            TType::Stop => 0,
            _ => self.read_i16()?,
        };
        Ok(TFieldIdentifier::new::<Option<&'static str>, i16>(
            None, field_type, id,
        ))
    }

    fn read_field_end(&mut self) -> Result<(), ThriftException> {
        Ok(())
    }

    fn read_bool(&mut self) -> Result<bool, ThriftException> {
        Ok(self.read_byte()? != 0)
    }

    fn read_bytes(&mut self) -> Result<Bytes, ThriftException> {
        self.read_bytes_checked("binary")
    }

    fn read_uuid(&mut self) -> Result<[u8; 16], ThriftException> {
        self.need(16, "a uuid")?;
        let mut u = [0; 16];
        self.buf.copy_to_slice(&mut u);
        Ok(u)
    }

    fn read_i8(&mut self) -> Result<i8, ThriftException> {
        self.need(1, "an i8")?;
        Ok(self.buf.get_i8())
    }

    fn read_i16(&mut self) -> Result<i16, ThriftException> {
        self.need(2, "an i16")?;
        Ok(self.buf.get_i16())
    }

    fn read_i32(&mut self) -> Result<i32, ThriftException> {
        self.need(4, "an i32")?;
        Ok(self.buf.get_i32())
    }

    fn read_i64(&mut self) -> Result<i64, ThriftException> {
        self.need(8, "an i64")?;
        Ok(self.buf.get_i64())
    }

    fn read_double(&mut self) -> Result<f64, ThriftException> {
        self.need(8, "a double")?;
        Ok(self.buf.get_f64())
    }

    fn read_string(&mut self) -> Result<String, ThriftException> {
        Ok(self.read_utf8("string")?.to_string())
    }

    fn read_faststr(&mut self) -> Result<FastStr, ThriftException> {
        self.read_utf8("string")
    }

    fn read_list_begin(&mut self) -> Result<TListIdentifier, ThriftException> {
        let offset = self.offset();
        let (id, element_type) = self.read_ttype("list element")?;
        let count = self.read_i32()?;
        let size = self.check_count(count, min_wire_size(id), "list", offset)?;
        Ok(TListIdentifier::new(element_type, size))
    }

    fn read_list_end(&mut self) -> Result<(), ThriftException> {
        Ok(())
    }

    fn read_set_begin(&mut self) -> Result<TSetIdentifier, ThriftException> {
        let offset = self.offset();
        let (id, element_type) = self.read_ttype("set element")?;
        let count = self.read_i32()?;
        let size = self.check_count(count, min_wire_size(id), "set", offset)?;
        Ok(TSetIdentifier::new(element_type, size))
    }

    fn read_set_end(&mut self) -> Result<(), ThriftException> {
        Ok(())
    }

    fn read_map_begin(&mut self) -> Result<TMapIdentifier, ThriftException> {
        let offset = self.offset();
        let (kid, key_type) = self.read_ttype("map key")?;
        let (vid, value_type) = self.read_ttype("map value")?;
        let count = self.read_i32()?;
        let min_each = min_wire_size(kid)
            .zip(min_wire_size(vid))
            .map(|(k, v)| k + v);
        let size = self.check_count(count, min_each, "map", offset)?;
        Ok(TMapIdentifier::new(key_type, value_type, size))
    }

    fn read_map_end(&mut self) -> Result<(), ThriftException> {
        Ok(())
    }

    fn read_byte(&mut self) -> Result<u8, ThriftException> {
        self.need(1, "a byte")?;
        Ok(self.buf.get_u8())
    }

    fn read_bytes_vec(&mut self) -> Result<Vec<u8>, ThriftException> {
        Ok(self.read_bytes_checked("binary")?.to_vec())
    }

    /// `Some(ptr)`: the `len` bytes starting at `ptr`, which must lie inside this message
    /// (generated code passes a pointer it took from `buf().chunk()` earlier); the buffer is not
    /// advanced. `None`: the next `len` bytes, advancing. Served from `origin` by address
    /// arithmetic only: the pointer is compared, never dereferenced.
    fn get_bytes(&mut self, ptr: Option<*const u8>, len: usize) -> Result<Bytes, ThriftException> {
        match ptr {
            None => {
                self.need(len, "kept bytes")?;
                Ok(self.buf.split_to(len))
            }
            Some(ptr) => {
                let start = ptr.addr().checked_sub(self.origin.as_ptr().addr());
                match start {
                    Some(start)
                        if start
                            .checked_add(len)
                            .is_some_and(|end| end <= self.origin.len()) =>
                    {
                        Ok(self.origin.slice(start..start + len))
                    }
                    _ => Err(new_protocol_exception(
                        ProtocolExceptionKind::InvalidData,
                        format!("get_bytes: {len} bytes at a pointer outside the message"),
                    )),
                }
            }
        }
    }

    fn buf(&mut self) -> &mut Self::Buf {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use pilota::thrift::{binary::TBinaryProtocol, TMessageType};
    use volo_thrift::EntryMessage;

    use super::*;
    use crate::codec::{
        scanner::{T_I32, T_LIST, T_STRING, T_STRUCT},
        test_util::{request, Enc, TestRequest},
    };

    fn limits() -> SafeCodecLimits {
        SafeCodecLimits::default()
    }

    fn decode(bytes: &[u8]) -> Result<(TMessageIdentifier, TestRequest), ThriftException> {
        let mut bytes = Bytes::copy_from_slice(bytes);
        let mut p = CheckedBinaryInput::new(&mut bytes, limits());
        let ident = p.read_message_begin()?;
        let req = TestRequest::decode(&mut p, &ident)?;
        Ok((ident, req))
    }

    fn kind(e: &ThriftException) -> ProtocolExceptionKind {
        match e {
            ThriftException::Protocol(p) => p.kind(),
            other => panic!("not a protocol error: {other:?}"),
        }
    }

    #[test]
    fn decodes_a_valid_request() {
        let (ident, req) = decode(&request("get", b"key", &[b"a", b"bc"]).bytes()).unwrap();
        assert_eq!(ident.name, "get");
        assert_eq!(ident.message_type, TMessageType::Call);
        assert_eq!(ident.sequence_number, 7);
        assert_eq!(req.key, Bytes::from_static(b"key"));
        assert_eq!(
            req.keys,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
        );
    }

    /// A `list<binary>` sent as `list<i32>`: structurally valid, so the scanner accepts it,
    /// but code reading by IDL type takes 0x7fffffff as a binary length.
    fn type_confused() -> Vec<u8> {
        let mut e = Enc::call("get");
        e.field(T_STRUCT, 1)
            .field(T_LIST, 2)
            .list(T_I32, 1)
            .i32(i32::MAX);
        e.stop().stop();
        e.bytes()
    }

    #[test]
    fn a_type_confused_list_is_an_error_not_a_panic() {
        let bytes = type_confused();
        let scanned = super::super::scanner::Scanner::new(limits()).feed(&bytes);
        assert!(
            scanned.is_ok(),
            "the scanner sees a valid message: {scanned:?}"
        );
        let err = decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("needs 2147483647 bytes"), "{err}");

        // The hazard this protocol exists for: pilota's own protocol panics on it.
        let panicked = std::panic::catch_unwind(|| {
            let mut bytes = Bytes::from(bytes.clone());
            let mut p = TBinaryProtocol::new(&mut bytes, true);
            let ident = p.read_message_begin().unwrap();
            let _ = TestRequest::decode(&mut p, &ident);
        });
        assert!(panicked.is_err());
    }

    #[test]
    fn lengths_are_checked() {
        let mut e = Enc::call("get");
        e.field(T_STRUCT, 1).field(T_STRING, 1).i32(-5);
        let err = decode(&e.bytes()).unwrap_err();
        assert_eq!(kind(&err), ProtocolExceptionKind::NegativeSize);
        assert!(
            err.to_string()
                .contains("binary length -5 at offset 21 is negative"),
            "{err}"
        );

        let mut e = Enc::call("get");
        e.field(T_STRUCT, 1)
            .field(T_STRING, 1)
            .i32(10)
            .raw(b"short");
        assert!(decode(&e.bytes()).is_err());

        // Truncated fixed-size reads are errors too.
        let bytes = request("get", b"key", &[]).bytes();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn counts_are_bounded_by_the_bytes_left_and_the_limit() {
        // 100 strings claimed, 10 bytes left: Vec::with_capacity(100) must not happen.
        let mut bytes = Bytes::from(Enc::default().list(T_STRING, 100).raw(&[0; 10]).bytes());
        let mut p = CheckedBinaryInput::new(&mut bytes, limits());
        let err = p.read_list_begin().unwrap_err();
        assert!(
            err.to_string().contains("cannot fit in the 10 bytes left"),
            "{err}"
        );

        let few = SafeCodecLimits {
            max_collection_len: 2,
            ..limits()
        };
        let mut bytes = Bytes::from(Enc::default().map(T_I32, T_I32, 3).raw(&[0; 24]).bytes());
        let err = CheckedBinaryInput::new(&mut bytes, few)
            .read_map_begin()
            .unwrap_err();
        assert_eq!(kind(&err), ProtocolExceptionKind::SizeLimit);

        let mut bytes = Bytes::from(Enc::default().list(T_I32, -1).bytes());
        let err = CheckedBinaryInput::new(&mut bytes, limits())
            .read_set_begin()
            .unwrap_err();
        assert_eq!(kind(&err), ProtocolExceptionKind::NegativeSize);

        let mut bytes = Bytes::from(Enc::default().list(7, 0).bytes());
        assert!(CheckedBinaryInput::new(&mut bytes, limits())
            .read_list_begin()
            .is_err());
    }

    #[test]
    fn strings_must_be_utf8() {
        let mut e = Enc::call("get");
        e.field(T_STRUCT, 1).field(T_STRING, 3).string(b"\xc3\x28");
        e.stop().stop();
        let err = decode(&e.bytes()).unwrap_err();
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");

        let mut bytes = Bytes::from(Enc::default().string(b"ok \xe2\x9c\x93").bytes());
        let s = CheckedBinaryInput::new(&mut bytes, limits())
            .read_string()
            .unwrap();
        assert_eq!(s, "ok \u{2713}");
        let mut bytes = Bytes::from(Enc::default().string(b"\xff").bytes());
        assert!(CheckedBinaryInput::new(&mut bytes, limits())
            .read_string()
            .is_err());
    }

    #[test]
    fn message_headers_are_strict() {
        let mut e = Enc::default();
        e.u32(0x8001_0005).string(b"m").i32(1);
        let mut bytes = Bytes::from(e.bytes());
        let err = CheckedBinaryInput::new(&mut bytes, limits())
            .read_message_begin()
            .unwrap_err();
        assert_eq!(kind(&err), ProtocolExceptionKind::BadVersion);
    }

    #[test]
    fn get_bytes_serves_pointers_inside_the_message_only() {
        let mut bytes = Bytes::from_static(b"0123456789");
        let mut p = CheckedBinaryInput::new(&mut bytes, limits());
        let start = p.buf().chunk().as_ptr();
        p.read_i32().unwrap();
        assert_eq!(&p.get_bytes(Some(start), 4).unwrap()[..], b"0123");
        assert_eq!(&p.get_bytes(None, 2).unwrap()[..], b"45");
        assert!(p.get_bytes(Some(start), 11).is_err());
        assert!(p.get_bytes(None, 5).is_err());
        let elsewhere = [0u8; 4];
        assert!(p.get_bytes(Some(elsewhere.as_ptr()), 1).is_err());

        // volo's raw `Bytes` entry message takes the rest of the message this way.
        let msg = request("get", b"k", &[]).bytes();
        let mut bytes = Bytes::from(msg.clone());
        let mut p = CheckedBinaryInput::new(&mut bytes, limits());
        let ident = p.read_message_begin().unwrap();
        let rest = <Bytes as EntryMessage>::decode(&mut p, &ident).unwrap();
        assert_eq!(&rest[..], &msg[15..]);
    }

    #[test]
    fn skip_rejects_bad_lengths() {
        let mut bytes = Bytes::from(Enc::default().i32(-1).bytes());
        assert!(CheckedBinaryInput::new(&mut bytes, limits())
            .skip(TType::Binary)
            .is_err());
        let mut bytes = Bytes::from(Enc::default().list(T_STRING, 3).i32(1).bytes());
        assert!(CheckedBinaryInput::new(&mut bytes, limits())
            .skip(TType::List)
            .is_err());
    }
}
