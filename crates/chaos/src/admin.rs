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
