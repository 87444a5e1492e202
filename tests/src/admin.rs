//! The suites' access to a node's admin endpoint: `dolmen_admin`'s blocking client (typed
//! calls: `admin(addr).status()`, `.metrics()`, `.set_network_faults(..)`), and [`http_get`] /
//! [`http_call`] for a suite that checks a raw answer (a status code, a text body). Both go
//! through the one admin client; there is no HTTP code here.
//!
//! ```text
//!  admin(addr).status() ── dolmen_admin::blocking ──▶ dolmen admin (axum) ──▶ NodeStatus
//! ```

use std::net::SocketAddr;
use std::time::Duration;

pub use dolmen_admin::blocking::AdminClient;
pub use dolmen_admin::AdminError;
use dolmen_admin::Method;

/// The timeout of one admin request. A stopped (SIGSTOP) node fails requests after this long
/// instead of hanging the test.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// The blocking admin client of the node at `addr`, with [`HTTP_TIMEOUT`].
pub fn admin(addr: SocketAddr) -> AdminClient {
    AdminClient::new(addr).with_timeout(HTTP_TIMEOUT)
}

/// One HTTP answer, any status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, e.g. 200 or 503.
    pub status: u16,
    /// The body, as (lossy) UTF-8.
    pub body: String,
}

impl HttpResponse {
    /// The body parsed as JSON when the status is 200.
    ///
    /// # Errors
    /// [`AdminError::Refused`] with the status and body when it is not 200,
    /// [`AdminError::BadAnswer`] when the body is not JSON.
    pub fn json(&self) -> Result<serde_json::Value, AdminError> {
        let bad = |reason: String| AdminError::BadAnswer {
            addr: String::new(),
            path: String::new(),
            status: self.status,
            reason,
            body: self.body.clone(),
        };
        if self.status != 200 {
            return Err(AdminError::Refused {
                addr: String::new(),
                path: String::new(),
                status: self.status,
                body: serde_json::from_str(&self.body).unwrap_or(dolmen_admin::ErrorBody {
                    error: self.body.trim().to_owned(),
                    code: None,
                    leader: None,
                }),
            });
        }
        serde_json::from_str(&self.body).map_err(|e| bad(e.to_string()))
    }
}

/// `GET path` on `addr`: the answer as it came.
///
/// # Errors
/// When the node cannot be reached or does not answer within [`HTTP_TIMEOUT`].
pub fn http_get(addr: SocketAddr, path: &str) -> Result<HttpResponse, AdminError> {
    http_call(addr, "GET", path, "")
}

/// `method path` on `addr` with a JSON `body` (may be empty): the answer as it came.
///
/// # Errors
/// When `method` is not an HTTP method, or the node cannot be reached or does not answer
/// within [`HTTP_TIMEOUT`].
pub fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<HttpResponse, AdminError> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| AdminError::Encode {
        path: path.to_owned(),
        reason: format!("method {method:?}: {e}"),
    })?;
    let body = (!body.is_empty()).then(|| body.as_bytes().to_vec());
    let answer = admin(addr).request(method, path, body)?;
    Ok(HttpResponse {
        status: answer.status,
        body: answer.text(),
    })
}
