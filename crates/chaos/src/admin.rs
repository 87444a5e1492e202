//! The admin HTTP calls the runner makes to its nodes: plain calls through
//! `dolmen_server::admin_client`, and [`call_json`] for requests with a JSON body
//! (`PUT /debug/network-faults`).
//!
//! [`call_json`] is a local copy of the helper of the same name and signature that is being
//! added to `dolmen_server::admin_client`; once that lands, delete the body below and
//! re-export it (`pub use dolmen_server::admin_client::call_json;`). Nothing else changes.

use std::time::Duration;

use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub use dolmen_server::admin_client::call;

/// Calls `method path` on the admin API at `addr` (`host:port`) with `body` as JSON and parses
/// the JSON answer; a non-2xx answer is an error carrying the server's `error` message.
pub async fn call_json(
    method: Method,
    addr: &str,
    path: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri: hyper::Uri = format!("http://{addr}{path}")
        .parse()
        .with_context(|| format!("{addr:?} is not a host:port admin address"))?;
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .context("building the request")?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, bytes) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow!("{addr}{path}: no answer within {timeout:?}"))?
        .with_context(|| format!("cannot reach the admin API at {addr}"))?;
    dolmen_server::admin_client::into_json(addr, path, status, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one request on a fresh port: returns the address and a handle yielding the raw
    /// request text; answers `status` with `body`.
    async fn one_shot(
        status: &'static str,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then the body announced by Content-Length.
            for _ in 0..1000 {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= head_end + 4 + len || n == 0 {
                        break;
                    }
                }
            }
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf).to_string()
        });
        (addr, handle)
    }

    #[tokio::test]
    async fn call_json_sends_the_body_and_parses_the_answer() {
        let (addr, server) = one_shot("200 OK", r#"{"rules":[{"to":1,"action":"drop"}]}"#).await;
        let rules = serde_json::json!({"rules": [{"to": 1, "action": "drop"}]});
        let answer = call_json(
            Method::PUT,
            &addr,
            "/debug/network-faults",
            &rules,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(answer["rules"][0]["action"], "drop");
        let request = server.await.unwrap();
        assert!(
            request.starts_with("PUT /debug/network-faults HTTP/1.1"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{request}"
        );
        let body = request.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            rules
        );
    }

    #[tokio::test]
    async fn call_json_reports_a_refusal_with_its_status() {
        let (addr, _server) = one_shot("404 Not Found", r#"{"error":"no such endpoint"}"#).await;
        let e = call_json(
            Method::PUT,
            &addr,
            "/debug/network-faults",
            &serde_json::json!({}),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("404") && text.contains("no such endpoint"),
            "{text}"
        );
    }
}
