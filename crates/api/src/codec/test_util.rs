//! Test helpers: a hand-rolled strict binary encoder, a request type that decodes the way
//! pilota-generated code does, and a deterministic pseudo-random splitter.

use bytes::Bytes;
use pilota::{
    thrift::{
        new_application_exception, new_protocol_exception, ApplicationExceptionKind,
        ProtocolExceptionKind, TAsyncInputProtocol, TInputProtocol, TLengthProtocol,
        TMessageIdentifier, TOutputProtocol, TStructIdentifier, TType, ThriftException,
    },
    FastStr,
};
use volo_thrift::EntryMessage;

use super::scanner::{T_LIST, T_STRING, T_STRUCT};

/// Builds strict binary messages byte by byte.
#[derive(Debug, Clone, Default)]
pub(crate) struct Enc(pub(crate) Vec<u8>);

impl Enc {
    /// Starts a message: header, name, seqid.
    pub(crate) fn message(name: &str, message_type: u8, seq: i32) -> Self {
        let mut e = Enc::default();
        e.u32(0x8001_0000 | u32::from(message_type));
        e.string(name.as_bytes());
        e.i32(seq);
        e
    }

    /// A CALL of `name` with seqid 7.
    pub(crate) fn call(name: &str) -> Self {
        Self::message(name, 1, 7)
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn f64(&mut self, v: f64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    /// A length-prefixed string/binary.
    pub(crate) fn string(&mut self, bytes: &[u8]) -> &mut Self {
        self.i32(bytes.len() as i32).raw(bytes)
    }
    /// A field header.
    pub(crate) fn field(&mut self, ttype: u8, id: i16) -> &mut Self {
        self.u8(ttype).i16(id)
    }
    /// STOP.
    pub(crate) fn stop(&mut self) -> &mut Self {
        self.u8(0)
    }
    /// A list or set header.
    pub(crate) fn list(&mut self, etype: u8, count: i32) -> &mut Self {
        self.u8(etype).i32(count)
    }
    /// A map header.
    pub(crate) fn map(&mut self, ktype: u8, vtype: u8, count: i32) -> &mut Self {
        self.u8(ktype).u8(vtype).i32(count)
    }
    /// The bytes so far.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
    /// The bytes so far behind a 4-byte frame length.
    pub(crate) fn framed(&self) -> Vec<u8> {
        let mut out = (self.0.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&self.0);
        out
    }
}

/// A call whose argument struct is `TestRequest { 1: key, 2: keys }`.
pub(crate) fn request(name: &str, key: &[u8], keys: &[&[u8]]) -> Enc {
    let mut e = Enc::call(name);
    e.field(T_STRUCT, 1).field(T_STRING, 1).string(key);
    e.field(T_LIST, 2).list(T_STRING, keys.len() as i32);
    for k in keys {
        e.string(k);
    }
    e.stop().stop();
    e
}

/// Decodes like pilota-generated code: the args struct has field 1 = `Inner`; `Inner` has
/// 1: binary key, 2: list<binary> keys (elements read as binary whatever the wire says),
/// 3: string name; other fields are skipped.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct TestRequest {
    pub(crate) key: Bytes,
    pub(crate) keys: Vec<Bytes>,
    pub(crate) name: Option<FastStr>,
}

impl TestRequest {
    fn decode_inner<T: TInputProtocol>(p: &mut T) -> Result<Self, ThriftException> {
        let mut out = Self::default();
        p.read_struct_begin()?;
        loop {
            let f = p.read_field_begin()?;
            if f.field_type == TType::Stop {
                break;
            }
            match f.id {
                Some(1) if f.field_type == TType::Binary => out.key = p.read_bytes()?,
                Some(2) if f.field_type == TType::List => {
                    let list = p.read_list_begin()?;
                    let mut keys = Vec::with_capacity(list.size);
                    for _ in 0..list.size {
                        keys.push(p.read_bytes()?);
                    }
                    p.read_list_end()?;
                    out.keys = keys;
                }
                Some(3) if f.field_type == TType::Binary => out.name = Some(p.read_faststr()?),
                _ => {
                    p.skip(f.field_type)?;
                }
            }
            p.read_field_end()?;
        }
        p.read_struct_end()?;
        Ok(out)
    }
}

impl EntryMessage for TestRequest {
    fn encode<T: TOutputProtocol>(&self, p: &mut T) -> Result<(), ThriftException> {
        p.write_struct_begin(&TStructIdentifier::new("TestResult"))?;
        p.write_field_begin(TType::Binary, 0)?;
        p.write_bytes(self.key.clone())?;
        p.write_field_end()?;
        p.write_field_stop()?;
        p.write_struct_end()
    }

    fn decode<T: TInputProtocol>(
        p: &mut T,
        msg_ident: &TMessageIdentifier,
    ) -> Result<Self, ThriftException> {
        // As generated code does for a name the IDL lacks: fail before reading the arguments.
        if msg_ident.name.starts_with("noSuch") {
            return Err(new_application_exception(
                ApplicationExceptionKind::UNKNOWN_METHOD,
                format!("unknown method {}", msg_ident.name),
            ));
        }
        let mut out = Self::default();
        p.read_struct_begin()?;
        loop {
            let f = p.read_field_begin()?;
            if f.field_type == TType::Stop {
                break;
            }
            match f.id {
                Some(1) if f.field_type == TType::Struct => out = Self::decode_inner(p)?,
                _ => {
                    p.skip(f.field_type)?;
                }
            }
            p.read_field_end()?;
        }
        p.read_struct_end()?;
        Ok(out)
    }

    async fn decode_async<T: TAsyncInputProtocol>(
        _p: &mut T,
        _msg_ident: &TMessageIdentifier,
    ) -> Result<Self, ThriftException> {
        Err(new_protocol_exception(
            ProtocolExceptionKind::NotImplemented,
            "the safe codec never decodes asynchronously",
        ))
    }

    fn size<T: TLengthProtocol>(&self, p: &mut T) -> usize {
        p.struct_begin_len(&TStructIdentifier::new("TestResult"))
            + p.field_begin_len(TType::Binary, Some(0))
            + p.bytes_len(&self.key)
            + p.field_end_len()
            + p.field_stop_len()
            + p.struct_end_len()
    }
}

/// xorshift64*: deterministic chunk sizes for resumability tests.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
    /// Splits `len` bytes into chunks of 1..=max bytes.
    pub(crate) fn chunks(&mut self, len: usize, max: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut left = len;
        while left > 0 {
            let n = (1 + self.below(max)).min(left);
            out.push(n);
            left -= n;
        }
        out
    }
}
