//! A small client for a node's admin HTTP API (JSON over HTTP/1.1), used by `dolmen cluster`,
//! `dolmen demo` and a joining node (`[consensus] join`). Built on hyper-util's client, which
//! the workspace already compiles for tonic.

use std::time::Duration;

use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Calls `method path` on the admin API at `addr` (`host:port`) and parses the JSON answer.
/// A non-2xx answer is an error carrying the server's `error` message.
pub async fn call(
    method: Method,
    addr: &str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let (status, body) = call_raw(method, addr, path, timeout).await?;
    into_json(addr, path, status, &body)
}

/// Parses an admin answer; a non-2xx answer is an error carrying the server's `error` message.
pub fn into_json(
    addr: &str,
    path: &str,
    status: StatusCode,
    body: &[u8],
) -> anyhow::Result<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_slice(body).with_context(|| {
        format!(
            "{addr}{path} answered {status} with a body that is not JSON: {}",
            String::from_utf8_lossy(body)
        )
    })?;
    if !status.is_success() {
        let message = json
            .get("error")
            .and_then(|e| e.as_str())
            .map_or_else(|| json.to_string(), str::to_owned);
        return Err(anyhow!("{addr}{path} answered {status}: {message}"));
    }
    Ok(json)
}

/// Calls `method path` with `body` as JSON and parses the JSON answer, like [`call`].
pub async fn call_json(
    method: Method,
    addr: &str,
    path: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let (status, answer) = exchange(method, addr, path, Some(body.to_string()), timeout).await?;
    into_json(addr, path, status, &answer)
}

/// Calls `method path` and returns the status and the raw body.
pub async fn call_raw(
    method: Method,
    addr: &str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<(StatusCode, Bytes)> {
    exchange(method, addr, path, None, timeout).await
}

/// One request, with an optional JSON body, bounded by `timeout`.
async fn exchange(
    method: Method,
    addr: &str,
    path: &str,
    body: Option<String>,
    timeout: Duration,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri: hyper::Uri = format!("http://{addr}{path}")
        .parse()
        .with_context(|| format!("{addr:?} is not a host:port admin address"))?;
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .context("building the request")?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow!("{addr}{path}: no answer within {timeout:?}"))?
        .with_context(|| format!("cannot reach the admin API at {addr}"))
}
