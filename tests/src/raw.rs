//! Raw wire access for malformed-input tests: hand-built strict binary messages over a bare
//! `TcpStream`, optional framing, byte-at-a-time writes, and "did the server close?" checks.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol, TListIdentifier,
    TMessageIdentifier, TMessageType, TOutputProtocol, TSerializable, TStructIdentifier, TType,
};
use thrift::transport::TFramedReadTransport;
use thrift::ApplicationError;

use crate::client::{tcp_connect, IO_TIMEOUT};
use crate::kvstore::Operation;

/// Printable form of a byte string for assertion messages (escaped, long input truncated).
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let shown: String = bytes
        .iter()
        .take(MAX)
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    if bytes.len() > MAX {
        format!("b\"{shown}\"... ({} bytes)", bytes.len())
    } else {
        format!("b\"{shown}\"")
    }
}

/// A strict-binary CALL message `name(1: request)` with sequence id `seqid`, unframed.
pub fn call_bytes<R: TSerializable>(name: &str, seqid: i32, request: &R) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut p = TBinaryOutputProtocol::new(&mut out, true);
        p.write_message_begin(&TMessageIdentifier::new(name, TMessageType::Call, seqid))
            .expect("encode message header");
        p.write_struct_begin(&TStructIdentifier::new("args"))
            .expect("encode args struct");
        p.write_field_begin(&TFieldIdentifier::new("request", TType::Struct, 1))
            .expect("encode request field");
        request
            .write_to_out_protocol(&mut p)
            .expect("encode request");
        p.write_field_end().expect("encode field end");
        p.write_field_stop().expect("encode field stop");
        p.write_struct_end().expect("encode struct end");
        p.write_message_end().expect("encode message end");
        p.flush().expect("flush into Vec");
    }
    out
}

/// The strict binary message header `0x80010000 | type`, name, seqid (no body).
pub fn strict_header(name: &[u8], message_type: u8, seqid: i32) -> Vec<u8> {
    let mut out = vec![0x80, 0x01, 0x00, message_type];
    out.extend_from_slice(&i32::try_from(name.len()).expect("short name").to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&seqid.to_be_bytes());
    out
}

/// `bytes` prefixed with its 4-byte big-endian length (the `TFramedTransport` frame).
pub fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(bytes.len())
        .expect("frame < 4 GiB")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(bytes);
    out
}

/// `n` pseudo-random bytes from a fixed `seed` (xorshift64*), reproducible across runs.
pub fn pseudo_random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_be_bytes()[0]
        })
        .collect()
}

/// How a raw connection ended when the test waited for the server to close it.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Orderly close (read returned 0).
    Eof,
    /// The server reset or aborted the connection.
    Reset,
}

/// A bare TCP connection to a node, speaking hand-built bytes; `framed` decides whether
/// [`RawConn::send`] wraps messages in frames and replies are read as frames.
pub struct RawConn {
    stream: TcpStream,
    framed: bool,
    addr: SocketAddr,
}

impl RawConn {
    /// Connects with [`IO_TIMEOUT`] timeouts and `TCP_NODELAY`.
    pub fn connect(addr: SocketAddr, framed: bool) -> Self {
        Self {
            stream: tcp_connect(addr),
            framed,
            addr,
        }
    }

    /// Writes `message` (framed when this connection is framed) in one write.
    pub fn send(&mut self, message: &[u8]) {
        let bytes = self.wire(message);
        self.send_raw(&bytes);
    }

    /// Writes `message` (framed when this connection is framed) one byte per write, flushing
    /// after each byte (with `TCP_NODELAY`, mostly one TCP segment per byte).
    pub fn send_bytewise(&mut self, message: &[u8]) {
        let bytes = self.wire(message);
        for (i, b) in bytes.iter().enumerate() {
            self.stream
                .write_all(std::slice::from_ref(b))
                .and_then(|()| self.stream.flush())
                .unwrap_or_else(|e| {
                    panic!(
                        "expected the server to accept byte {i} of {}: {e}",
                        bytes.len()
                    )
                });
        }
    }

    /// Writes exactly `bytes`, no framing.
    ///
    /// # Panics
    /// When the write fails.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap_or_else(|e| {
            panic!(
                "expected to write {} bytes to {}: {e}",
                bytes.len(),
                self.addr
            )
        });
    }

    /// Writes exactly `bytes`, ignoring errors: the server may close while garbage is in flight.
    pub fn send_raw_lossy(&mut self, bytes: &[u8]) {
        let _ignored = self.stream.write_all(bytes);
    }

    /// Half-closes the write side: the server sees end of stream.
    pub fn shutdown_write(&mut self) {
        let _ignored = self.stream.shutdown(std::net::Shutdown::Write);
    }

    fn wire(&self, message: &[u8]) -> Vec<u8> {
        if self.framed {
            frame(message)
        } else {
            message.to_vec()
        }
    }

    /// Reads one whole message: its header, and for an EXCEPTION message the
    /// `TApplicationException`, or for a REPLY the response struct in result field 0.
    pub fn recv<R: TSerializable>(&mut self) -> thrift::Result<Reply<R>> {
        if self.framed {
            let mut p =
                TBinaryInputProtocol::new(TFramedReadTransport::new(&mut self.stream), true);
            read_reply(&mut p)
        } else {
            let mut p = TBinaryInputProtocol::new(&mut self.stream, true);
            read_reply(&mut p)
        }
    }

    /// Waits (at most [`IO_TIMEOUT`]) for the server to close this connection, discarding any
    /// bytes it sends first.
    ///
    /// # Panics
    /// When the connection is still open after the bound.
    pub fn expect_closed(&mut self, what: &str) -> Closed {
        let deadline = Instant::now() + IO_TIMEOUT;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set_read_timeout");
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Closed::Eof,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Closed::Reset,
            }
            assert!(
                Instant::now() < deadline,
                "expected the server to close the connection after {what} within {IO_TIMEOUT:?}, \
                 but it stayed open"
            );
        }
    }
}

/// One message read back from the server.
#[derive(Debug)]
pub struct Reply<R> {
    /// The message header as received.
    pub header: TMessageIdentifier,
    /// Set when the message is an EXCEPTION.
    pub exception: Option<ApplicationError>,
    /// Result field 0 when the message is a REPLY carrying it.
    pub response: Option<R>,
}

fn read_reply<P: TInputProtocol, R: TSerializable>(p: &mut P) -> thrift::Result<Reply<R>> {
    let header = p.read_message_begin()?;
    if header.message_type == TMessageType::Exception {
        let exception = thrift::Error::read_application_error_from_in_protocol(p)?;
        p.read_message_end()?;
        return Ok(Reply {
            header,
            exception: Some(exception),
            response: None,
        });
    }
    let mut response = None;
    p.read_struct_begin()?;
    loop {
        let field = p.read_field_begin()?;
        if field.field_type == TType::Stop {
            break;
        }
        if field.id == Some(0) && field.field_type == TType::Struct {
            response = Some(R::read_from_in_protocol(p)?);
        } else {
            p.skip(field.field_type)?;
        }
        p.read_field_end()?;
    }
    p.read_struct_end()?;
    p.read_message_end()?;
    Ok(Reply {
        header,
        exception: None,
        response,
    })
}

/// An `atomicCommit` request with the idempotency token (fields 6 and 7), encoded by hand:
/// the stock client is generated from the base contract without them (docs/WIRE.md §3).
pub struct TokenCommit {
    /// `read_version`.
    pub read_version: i64,
    /// `operations`.
    pub operations: Vec<Operation>,
    /// `read_conflict_keys`.
    pub read_conflict_keys: Vec<Vec<u8>>,
    /// `client_id`.
    pub client_id: Vec<u8>,
    /// `client_sequence`.
    pub client_sequence: i64,
}

impl TSerializable for TokenCommit {
    fn read_from_in_protocol(_: &mut dyn TInputProtocol) -> thrift::Result<Self> {
        Err(thrift::Error::from("TokenCommit is only sent"))
    }

    fn write_to_out_protocol(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        let len = |n: usize| i32::try_from(n).map_err(|e| thrift::Error::from(e.to_string()));
        o.write_struct_begin(&TStructIdentifier::new("AtomicCommitRequest"))?;
        o.write_field_begin(&TFieldIdentifier::new("read_version", TType::I64, 1))?;
        o.write_i64(self.read_version)?;
        o.write_field_end()?;
        o.write_field_begin(&TFieldIdentifier::new("operations", TType::List, 2))?;
        o.write_list_begin(&TListIdentifier::new(
            TType::Struct,
            len(self.operations.len())?,
        ))?;
        for operation in &self.operations {
            operation.write_to_out_protocol(o)?;
        }
        o.write_list_end()?;
        o.write_field_end()?;
        o.write_field_begin(&TFieldIdentifier::new("read_conflict_keys", TType::List, 3))?;
        o.write_list_begin(&TListIdentifier::new(
            TType::String,
            len(self.read_conflict_keys.len())?,
        ))?;
        for k in &self.read_conflict_keys {
            o.write_bytes(k)?;
        }
        o.write_list_end()?;
        o.write_field_end()?;
        o.write_field_begin(&TFieldIdentifier::new("client_id", TType::String, 6))?;
        o.write_bytes(&self.client_id)?;
        o.write_field_end()?;
        o.write_field_begin(&TFieldIdentifier::new("client_sequence", TType::I64, 7))?;
        o.write_i64(self.client_sequence)?;
        o.write_field_end()?;
        o.write_field_stop()?;
        o.write_struct_end()
    }
}
