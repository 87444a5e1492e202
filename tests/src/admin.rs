//! A minimal HTTP/1.1 client for a node's admin endpoint (`/ready`, `/status`, `/state/digest`,
//! `POST /cluster/...`): one request per connection (`Connection: close`), std sockets, bounded
//! by [`HTTP_TIMEOUT`], bodies read by `Content-Length`, chunked encoding, or to end of stream.
//!
//! ```text
//!  http_get(addr, "/status") ── TcpStream ──▶ dolmen admin (axum) ──▶ HttpResponse {status, body}
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connect, read and write timeout of one admin request. A stopped (SIGSTOP) node fails
/// requests after this long instead of hanging the test.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest answer accepted (a `/status` or digest answer is a few KiB).
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// One HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, e.g. 200 or 503.
    pub status: u16,
    /// The body, decoded from chunked encoding when needed, as (lossy) UTF-8.
    pub body: String,
}

impl HttpResponse {
    /// The body parsed as JSON when the status is 200.
    ///
    /// # Errors
    /// A message with the status and body when it is not 200 or not JSON.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        if self.status != 200 {
            return Err(format!("HTTP {}: {}", self.status, self.body.trim()));
        }
        serde_json::from_str(&self.body)
            .map_err(|e| format!("expected a JSON body, got {:?}: {e}", self.body))
    }
}

/// `GET path` on `addr`.
///
/// # Errors
/// A message naming the address and path when the connection or the answer fails.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    http_call(addr, "GET", path, "")
}

/// `POST path` on `addr` with a JSON `body` (may be empty).
///
/// # Errors
/// A message naming the address and path when the connection or the answer fails.
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> Result<HttpResponse, String> {
    http_call(addr, "POST", path, body)
}

/// `method path` on `addr` with a JSON `body` (may be empty), e.g. `PUT` or `DELETE`.
///
/// # Errors
/// A message naming the address and path when the connection or the answer fails.
pub fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<HttpResponse, String> {
    request(addr, method, path, body)
}

/// `GET path` on `addr`, expecting 200 and a JSON body.
///
/// # Errors
/// A message naming the address and path when the request fails or the answer is not JSON.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, String> {
    http_get(addr, path)?
        .json()
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))
}

fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<HttpResponse, String> {
    let what = format!("{method} http://{addr}{path}");
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .map_err(|e| format!("{what}: connect: {e}"))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| format!("{what}: socket timeouts: {e}"))?;
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{content_type}\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| format!("{what}: send: {e}"))?;
    let raw = read_message(&mut stream).map_err(|e| format!("{what}: {e}"))?;
    parse_response(&raw).map_err(|e| format!("{what}: {e}"))
}

/// Reads until the message is complete: headers plus `Content-Length` bytes, the last chunk of
/// a chunked body, or the end of the stream.
fn read_message(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(done) = complete_length(&buf) {
            if buf.len() >= done {
                buf.truncate(done);
                return Ok(buf);
            }
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("read after {} bytes: {e}", buf.len()))?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE_BYTES {
            return Err(format!("answer larger than {MAX_RESPONSE_BYTES} bytes"));
        }
    }
}

/// The total message length when the headers are in and say how long the body is.
fn complete_length(buf: &[u8]) -> Option<usize> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if let Some(len) = header(&head, "content-length") {
        return len.parse::<usize>().ok().map(|n| head_end + n);
    }
    if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // The last chunk is `0\r\n` followed by an empty trailer line.
        return find(&buf[head_end..], b"0\r\n\r\n").map(|i| head_end + i + 5);
    }
    None
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        (n.trim() == name).then(|| v.trim())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let head_end = find(raw, b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut body = raw[head_end + 4..].to_vec();
    let lower = head.to_ascii_lowercase();
    if header(&lower, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n").ok_or("a chunk size line without CRLF")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err(format!("a chunk of {size} bytes is cut short"));
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_content_length_answer() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 6\r\n\r\nnot ok";
        assert_eq!(complete_length(raw), Some(raw.len()));
        let r = parse_response(raw).unwrap();
        assert_eq!(
            r,
            HttpResponse {
                status: 503,
                body: "not ok".into()
            }
        );
    }

    #[test]
    fn parses_a_chunked_answer() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(complete_length(raw), Some(raw.len()));
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json().unwrap()["a"], 1);
    }

    #[test]
    fn an_incomplete_answer_is_not_complete() {
        assert_eq!(complete_length(b"HTTP/1.1 200 OK\r\nContent-Le"), None);
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        let partial = [head.as_slice(), b"abc"].concat();
        assert_eq!(complete_length(&partial), Some(head.len() + 10));
    }
}
