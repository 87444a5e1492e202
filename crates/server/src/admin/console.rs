//! The web console (docs/console.md): its static files, compiled into the binary, and the
//! JSON it reads: `/console/info`, `/console/series`, `/config`, and the data browser's
//! `/data/range` and `/data/key`. Data goes through the service core, the path a Thrift call
//! takes (read version, read gate, one transaction per write).

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use dolmen_engine::{RangeSpec, MAX_KEY_BYTES};
use serde::{Deserialize, Serialize};

use super::{Answer, Refusal, Shared};
use crate::error::{ErrorCode as WireCode, ServiceError};

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const STYLE_CSS: &str = include_str!("console/style.css");

/// Values longer than this are cut in range answers (`/data/key` gives them whole).
pub const VALUE_PREVIEW_BYTES: usize = 1024;
/// Most keys in one `/data/range` page.
pub const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 50;

/// A static file with its type; never cached, so a new binary's console is seen at once.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub(super) async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub(super) async fn app_js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub(super) async fn style_css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// `GET /console/info`.
#[derive(Debug, Serialize)]
pub(super) struct Info {
    node_id: u64,
    version: &'static str,
    commit: &'static str,
    mode: &'static str,
    column_families: Vec<String>,
    auth: AuthInfo,
}

/// Which credentials the node has (never their values).
#[derive(Debug, Serialize)]
struct AuthInfo {
    operator_token: bool,
    view_token: bool,
}

pub(super) async fn info(State(shared): State<Shared>) -> Json<Info> {
    let config = &shared.state.config;
    Json(Info {
        node_id: shared.state.service.cluster().this_node,
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("DOLMEN_GIT_COMMIT"),
        mode: if shared.state.raft.is_some() {
            "replicated"
        } else {
            "standalone"
        },
        column_families: config.database.column_families.clone(),
        auth: AuthInfo {
            operator_token: shared.credentials.operator.is_some(),
            view_token: shared.credentials.view.is_some(),
        },
    })
}

pub(super) async fn series(State(shared): State<Shared>) -> impl IntoResponse {
    Json(shared.series.answer(shared.state.raft.as_deref()))
}

/// `GET /config`: every section, credentials masked.
pub(super) async fn config(State(shared): State<Shared>) -> Answer<serde_json::Value> {
    let mut value = serde_json::to_value(&*shared.state.config)
        .map_err(|e| Refusal::internal(format!("serializing the configuration: {e}")))?;
    if let Some(server) = value.get_mut("server").and_then(|s| s.as_object_mut()) {
        for key in ["admin_token", "admin_view_token"] {
            if let Some(v) = server.get_mut(key) {
                if v.as_str().is_some_and(|s| !s.is_empty()) {
                    *v = serde_json::Value::String("***".to_owned());
                }
            }
        }
    }
    Ok(Json(value))
}

/// How keys (and values, on a write) are written in a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Encoding {
    /// UTF-8 text, taken as its bytes.
    #[default]
    Text,
    /// Hexadecimal, two digits a byte.
    Hex,
}

impl Encoding {
    fn decode(self, field: &str, written: &str) -> Result<Vec<u8>, Refusal> {
        match self {
            Encoding::Text => Ok(written.as_bytes().to_vec()),
            Encoding::Hex => hex::decode(written.trim()).map_err(|e| {
                Refusal::invalid(format!("{field}: not hexadecimal ({e}): {written:?}"))
            }),
        }
    }
}

/// Bytes as the console shows them: as text when they are printable UTF-8, always as hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct Shown {
    text: Option<String>,
    hex: String,
}

/// A value as shown: possibly cut.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct ShownValue {
    #[serde(flatten)]
    shown: Shown,
    /// The whole value's length in bytes.
    size: usize,
    /// Whether only the first [`VALUE_PREVIEW_BYTES`] are shown.
    truncated: bool,
}

fn printable(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let plain = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    plain.then(|| text.to_owned())
}

fn shown(bytes: &[u8]) -> Shown {
    Shown {
        text: printable(bytes),
        hex: hex::encode(bytes),
    }
}

fn shown_value(bytes: &[u8], limit: usize) -> ShownValue {
    let cut = bytes.len() > limit;
    let mut end = bytes.len().min(limit);
    // Cut on a character boundary when the value is text, so the preview reads as text.
    if cut {
        if let Err(e) = std::str::from_utf8(&bytes[..end]) {
            if std::str::from_utf8(&bytes[..e.valid_up_to()]).is_ok() && e.error_len().is_none() {
                end = e.valid_up_to();
            }
        }
    }
    ShownValue {
        shown: shown(&bytes[..end]),
        size: bytes.len(),
        truncated: cut,
    }
}

/// `GET /data/range` query.
#[derive(Debug, Deserialize)]
pub(super) struct RangeQuery {
    #[serde(default = "default_cf")]
    cf: String,
    prefix: Option<String>,
    start: Option<String>,
    end: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    encoding: Encoding,
}

fn default_cf() -> String {
    "default".to_owned()
}

/// One key of a page.
#[derive(Debug, Serialize)]
pub(super) struct Item {
    key: Shown,
    value: ShownValue,
}

/// `GET /data/range` answer.
#[derive(Debug, Serialize)]
pub(super) struct RangeAnswer {
    read_version: u64,
    has_more: bool,
    items: Vec<Item>,
}

/// The first key after every key starting with `prefix`; `None` when there is none (the
/// prefix is all `0xFF`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b < 0xFF)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// An end above every key.
fn end_of_keyspace() -> Vec<u8> {
    vec![0xFF; MAX_KEY_BYTES + 1]
}

impl RangeQuery {
    /// The walk this page takes: `[begin, end)`, starting after `after` when paging, within
    /// `max_bytes` of keys and values.
    fn spec(&self, max_bytes: Option<usize>) -> Result<RangeSpec, Refusal> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Refusal::invalid(format!(
                "limit must be 1..={MAX_PAGE}, got {limit}"
            )));
        }
        let decode = |field: &str, v: &Option<String>| {
            v.as_deref()
                .map(|w| self.encoding.decode(field, w))
                .transpose()
        };
        let (begin, end) = match (decode("prefix", &self.prefix)?, &self.start, &self.end) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(Refusal::invalid(
                    "give either prefix or start/end, not both",
                ))
            }
            (Some(prefix), None, None) => {
                let end = prefix_end(&prefix).unwrap_or_else(end_of_keyspace);
                (prefix, end)
            }
            (None, _, _) => (
                decode("start", &self.start)?.unwrap_or_default(),
                decode("end", &self.end)?
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(end_of_keyspace),
            ),
        };
        let (begin_key, begin_or_equal) = match decode("after", &self.after)? {
            Some(after) if after >= begin => (after, false),
            _ => (begin, true),
        };
        Ok(RangeSpec {
            begin_key,
            end_key: end,
            begin_or_equal,
            end_or_equal: false,
            begin_offset: 0,
            end_offset: 0,
            limit: Some(limit),
            max_bytes,
        })
    }
}

impl From<ServiceError> for Refusal {
    fn from(e: ServiceError) -> Self {
        use dolmen_admin::ErrorCode as Code;
        let code = match e.code {
            WireCode::InvalidArgument | WireCode::InvalidOperation => Code::InvalidRequest,
            WireCode::NotLeader => Code::NotLeader,
            WireCode::Conflict => Code::Conflict,
            WireCode::TransactionTooOld
            | WireCode::FutureVersion
            | WireCode::Timeout
            | WireCode::Unavailable => Code::Unavailable,
            WireCode::Injected(_) => Code::Internal,
        };
        Refusal::new(code, e.message)
    }
}

pub(super) async fn range(
    State(shared): State<Shared>,
    Query(q): Query<RangeQuery>,
) -> Answer<RangeAnswer> {
    let service = &shared.state.service;
    let spec = q.spec(service.max_range_bytes())?;
    let version = service.read_version().await?;
    let page = service.get_range(&q.cf, spec, Some(version)).await?;
    Ok(Json(RangeAnswer {
        read_version: version,
        has_more: page.has_more,
        items: page
            .items
            .iter()
            .map(|(k, v)| Item {
                key: shown(k),
                value: shown_value(v, VALUE_PREVIEW_BYTES),
            })
            .collect(),
    }))
}

/// `GET|DELETE /data/key` query.
#[derive(Debug, Deserialize)]
pub(super) struct KeyQuery {
    #[serde(default = "default_cf")]
    cf: String,
    key: String,
    #[serde(default)]
    encoding: Encoding,
}

/// `GET /data/key` answer.
#[derive(Debug, Serialize)]
pub(super) struct KeyAnswer {
    read_version: u64,
    found: bool,
    key: Shown,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<ShownValue>,
}

pub(super) async fn get_key(
    State(shared): State<Shared>,
    Query(q): Query<KeyQuery>,
) -> Answer<KeyAnswer> {
    let key = q.encoding.decode("key", &q.key)?;
    let service = &shared.state.service;
    let version = service.read_version().await?;
    let value = service.snapshot_get(&q.cf, &key, version).await?;
    Ok(Json(KeyAnswer {
        read_version: version,
        found: value.is_some(),
        key: shown(&key),
        value: value.map(|v| shown_value(&v, usize::MAX)),
    }))
}

/// `PUT /data/key` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutBody {
    #[serde(default = "default_cf")]
    cf: String,
    key: String,
    value: String,
    #[serde(default)]
    encoding: Encoding,
}

/// A write's answer: the commit version.
#[derive(Debug, Serialize)]
pub(super) struct Written {
    version: u64,
}

pub(super) async fn put_key(
    State(shared): State<Shared>,
    body: axum::body::Bytes,
) -> Answer<Written> {
    let body: PutBody =
        serde_json::from_slice(&body).map_err(|e| Refusal::invalid(format!("body: {e}")))?;
    let key = body.encoding.decode("key", &body.key)?;
    let value = body.encoding.decode("value", &body.value)?;
    let version = shared.state.service.set(&body.cf, key, value).await?;
    tracing::info!(cf = %body.cf, version, "key written through the admin API");
    Ok(Json(Written { version }))
}

pub(super) async fn delete_key(
    State(shared): State<Shared>,
    Query(q): Query<KeyQuery>,
) -> Answer<Written> {
    let key = q.encoding.decode("key", &q.key)?;
    let version = shared.state.service.delete(&q.cf, key).await?;
    tracing::info!(cf = %q.cf, version, "key deleted through the admin API");
    Ok(Json(Written { version }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(prefix: Option<&str>, start: Option<&str>, after: Option<&str>) -> RangeQuery {
        RangeQuery {
            cf: default_cf(),
            prefix: prefix.map(str::to_owned),
            start: start.map(str::to_owned),
            end: None,
            after: after.map(str::to_owned),
            limit: None,
            encoding: Encoding::Text,
        }
    }

    #[test]
    fn a_prefix_walks_exactly_its_keys_and_pages_start_after_the_last_key() {
        let spec = query(Some("user/"), None, None).spec(None).unwrap();
        assert_eq!(spec.begin_key, b"user/");
        assert_eq!(spec.end_key, b"user0");
        assert!(spec.begin_or_equal);
        assert_eq!(spec.limit, Some(DEFAULT_PAGE));
        let next = query(Some("user/"), None, Some("user/7"))
            .spec(None)
            .unwrap();
        assert_eq!(next.begin_key, b"user/7");
        assert!(!next.begin_or_equal);
        assert_eq!(prefix_end(&[0x61, 0xFF]), Some(vec![0x62]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        let all = query(None, None, None).spec(None).unwrap();
        assert_eq!(all.begin_key, b"");
        assert_eq!(all.end_key, end_of_keyspace());
    }

    #[test]
    fn bad_queries_are_refused_naming_the_field() {
        let both = query(Some("a"), Some("b"), None).spec(None).unwrap_err();
        assert_eq!(both.code(), Some(dolmen_admin::ErrorCode::InvalidRequest));
        let mut hex = query(Some("zz"), None, None);
        hex.encoding = Encoding::Hex;
        let refusal = hex.spec(None).unwrap_err();
        assert!(
            format!("{refusal:?}").contains("prefix: not hexadecimal"),
            "{refusal:?}"
        );
        let mut big = query(None, None, None);
        big.limit = Some(MAX_PAGE + 1);
        assert!(big.spec(None).is_err());
    }

    #[test]
    fn bytes_show_as_text_only_when_printable_and_long_values_are_cut() {
        assert_eq!(shown(b"user/1").text.as_deref(), Some("user/1"));
        assert_eq!(shown(b"\x00\x01").text, None);
        assert_eq!(shown(b"\x00\x01").hex, "0001");
        assert_eq!(shown(&[0xC3, 0x28]).text, None, "invalid UTF-8");
        let long = "é".repeat(VALUE_PREVIEW_BYTES); // 2 bytes each
        let cut = shown_value(long.as_bytes(), VALUE_PREVIEW_BYTES);
        assert!(cut.truncated);
        assert_eq!(cut.size, 2 * VALUE_PREVIEW_BYTES);
        assert_eq!(
            cut.shown.text.as_deref().map(str::len),
            Some(VALUE_PREVIEW_BYTES)
        );
        let whole = shown_value(long.as_bytes(), usize::MAX);
        assert!(!whole.truncated);
    }
}
