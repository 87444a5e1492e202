//! [`AdminClient`]: the one client of a node's admin API (JSON over HTTP/1.1), with a typed
//! method per endpoint and a timeout per call. Used by `dolmen cluster`, a joining node, the
//! chaos runner and the tests (through [`crate::blocking`]).
//!
//! ```text
//!  AdminClient::status() ── hyper ──▶ node admin (axum) ──▶ 2xx: NodeStatus
//!                                                       └─▶ else: AdminError::Refused{status, body}
//! ```

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::error::{chain, AdminError};
use crate::faults::RuleSet;
use crate::ops::{
    AddNode, Digest, GroupedDigest, InitOutcome, MembershipOutcome, Outcome, SnapshotOutcome,
    TransferLeader,
};
use crate::refusal::ErrorBody;
use crate::status::{ClusterStatus, NodeId, NodeStatus};

/// The timeout of a call unless [`AdminClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The path of the network fault rules (tests only).
const NETWORK_FAULTS: &str = "/debug/network-faults";

/// An answer as it came, any status: for `/ready`, `/metrics` and tests of refusals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAnswer {
    /// The HTTP status, e.g. 200 or 503.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// `GET /ready`: whether the node can serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// 200: a leader is known and a version is applied.
    Ready,
    /// 503, with the node's reasons (each [`crate::NotReady::detail`], joined by `; `), or
    /// the body as it came when it is not a [`crate::ReadyAnswer`].
    NotReady(String),
}

/// A client of one node's admin API. Cheap to clone; every call opens its own connection (a
/// restarted or stopped node never leaves a stale pooled one behind).
#[derive(Clone, Debug)]
pub struct AdminClient {
    addr: String,
    timeout: Duration,
    /// Sent as `Authorization: Bearer` with every request, when set.
    token: Option<String>,
    /// `"https"` once [`AdminClient::with_ca`] named the CA to check the node against.
    scheme: &'static str,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A hyper client speaking HTTP, and HTTPS checked against `roots` (none: every HTTPS
/// handshake fails).
fn http_client(roots: rustls::RootCertStore) -> Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
    #[allow(
        deprecated,
        reason = "ring, as everywhere in Dolmen: rustls 0.23.48 deprecates its provider for \
                  lacking post-quantum key exchange; aws-lc-rs needs cmake and a long C build"
    )]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports rustls' default protocol versions"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

impl AdminClient {
    /// A client of the admin API at `addr` (`host:port`), with [`DEFAULT_TIMEOUT`].
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            timeout: DEFAULT_TIMEOUT,
            token: None,
            scheme: "http",
            http: http_client(rustls::RootCertStore::empty()),
        }
    }

    /// The same client speaking HTTPS (`[server] admin_tls`), accepting only a node
    /// certificate that the CA in `ca_pem` (PEM) signed for the host of the address.
    ///
    /// # Errors
    /// [`AdminError::BadCa`] when `ca_pem` holds no usable certificate.
    pub fn with_ca(mut self, ca_pem: &[u8]) -> Result<Self, AdminError> {
        use rustls::pki_types::pem::PemObject;
        let bad = |reason: String| AdminError::BadCa { reason };
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| bad(format!("not PEM certificates: {e}")))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("holds no CERTIFICATE block".to_owned()));
        }
        self.scheme = "https";
        self.http = http_client(roots);
        Ok(self)
    }

    /// The same client sending `token` (the node's `admin_token` or `admin_view_token`) as
    /// `Authorization: Bearer` with every request; `None` sends none.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The same client (credential, CA, timeout) for the node at `addr`.
    pub fn at(&self, addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            ..self.clone()
        }
    }

    /// The same client with another per-call timeout (membership changes wait for a learner
    /// to catch up: minutes).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The admin address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The credential sent with every request, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `GET /health`: the process is up.
    ///
    /// # Errors
    /// When the node does not answer 2xx.
    pub async fn health(&self) -> Result<(), AdminError> {
        let path = "/health";
        let answer = self.request(Method::GET, path, None).await?;
        self.success(path, answer).map(drop)
    }

    /// `GET /ready`.
    ///
    /// # Errors
    /// When the node does not answer, or answers anything but 200 or 503.
    pub async fn ready(&self) -> Result<Readiness, AdminError> {
        let path = "/ready";
        let answer = self.request(Method::GET, path, None).await?;
        match answer.status {
            200 => Ok(Readiness::Ready),
            503 => Ok(Readiness::NotReady(
                match serde_json::from_slice::<crate::ReadyAnswer>(&answer.body) {
                    Ok(ready) => ready
                        .reasons
                        .iter()
                        .map(|r| r.detail.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                    Err(_) => answer.text().trim().to_owned(),
                },
            )),
            _ => Err(self.refusal(path, &answer)),
        }
    }

    /// `GET /metrics`: the Prometheus text.
    ///
    /// # Errors
    /// When the node does not answer 2xx.
    pub async fn metrics(&self) -> Result<String, AdminError> {
        let path = "/metrics";
        let answer = self.request(Method::GET, path, None).await?;
        self.success(path, answer).map(|a| a.text())
    }

    /// `GET /status`.
    ///
    /// # Errors
    /// When the node does not answer 2xx with a [`NodeStatus`].
    pub async fn status(&self) -> Result<NodeStatus, AdminError> {
        self.json(Method::GET, "/status", None).await
    }

    /// `GET /cluster/status`.
    ///
    /// # Errors
    /// When the node refuses (409 on a standalone node) or does not answer.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, AdminError> {
        self.json(Method::GET, "/cluster/status", None).await
    }

    /// `POST /cluster/init`.
    ///
    /// # Errors
    /// When the node refuses or does not answer.
    pub async fn init(&self) -> Result<InitOutcome, AdminError> {
        let answer: Outcome<InitOutcome> = self.json(Method::POST, "/cluster/init", None).await?;
        Ok(answer.outcome)
    }

    /// `POST /cluster/snapshot`.
    ///
    /// # Errors
    /// When the node refuses or does not answer.
    pub async fn snapshot(&self) -> Result<SnapshotOutcome, AdminError> {
        let answer: Outcome<SnapshotOutcome> =
            self.json(Method::POST, "/cluster/snapshot", None).await?;
        Ok(answer.outcome)
    }

    /// `POST /cluster/add-node` (on the leader).
    ///
    /// # Errors
    /// When the node refuses (see [`AdminError::is_not_leader`]) or does not answer.
    pub async fn add_node(&self, node: &AddNode) -> Result<MembershipOutcome, AdminError> {
        self.membership(&node.path()).await
    }

    /// `POST /cluster/remove-node?id=N` (on the leader).
    ///
    /// # Errors
    /// When the node refuses or does not answer.
    pub async fn remove_node(&self, id: NodeId) -> Result<MembershipOutcome, AdminError> {
        self.membership(&format!("/cluster/remove-node?id={id}"))
            .await
    }

    /// `POST /cluster/transfer-leader?to=N` (on group 0's leader); waits until `to` leads
    /// group 0.
    ///
    /// # Errors
    /// When the node refuses or does not answer.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<MembershipOutcome, AdminError> {
        self.transfer_group_leader(TransferLeader { to, group: 0 })
            .await
    }

    /// `POST /cluster/transfer-leader?to=N&group=G` (on group `G`'s leader); waits until `to`
    /// leads group `G`.
    ///
    /// # Errors
    /// When the node refuses (not that group's leader: [`AdminError::is_not_leader`]; a group
    /// it does not run or a target that is not a voter of it: 400) or does not answer.
    pub async fn transfer_group_leader(
        &self,
        transfer: TransferLeader,
    ) -> Result<MembershipOutcome, AdminError> {
        self.membership(&transfer.path()).await
    }

    async fn membership(&self, path: &str) -> Result<MembershipOutcome, AdminError> {
        let answer: Outcome<MembershipOutcome> = self.json(Method::POST, path, None).await?;
        Ok(answer.outcome)
    }

    /// `GET /state/digest[?version=V]`: the checksum at `version` (default: the applied one).
    ///
    /// # Errors
    /// When the node refuses (400 outside `[horizon, applied]`) or does not answer.
    pub async fn digest(&self, version: Option<u64>) -> Result<Digest, AdminError> {
        self.json(Method::GET, &digest_path(version), None).await
    }

    /// `GET /state/digest[?version=V]` with each data group's digest on a sharded node
    /// (`groups` is empty from an unsharded node).
    ///
    /// # Errors
    /// When the node refuses (400 outside `[horizon, applied]` or at a version a data group
    /// cannot cover, 503 when a data group has no leader) or does not answer.
    pub async fn grouped_digest(&self, version: Option<u64>) -> Result<GroupedDigest, AdminError> {
        self.json(Method::GET, &digest_path(version), None).await
    }

    /// `GET /debug/network-faults`: the installed rules.
    ///
    /// # Errors
    /// When the node refuses (403 when fault injection is off) or does not answer.
    pub async fn network_faults(&self) -> Result<RuleSet, AdminError> {
        self.json(Method::GET, NETWORK_FAULTS, None).await
    }

    /// `PUT /debug/network-faults`: replaces the rules; answers the installed ones.
    ///
    /// # Errors
    /// When the node refuses (403 off, 400 an invalid rule) or does not answer.
    pub async fn set_network_faults(&self, rules: &RuleSet) -> Result<RuleSet, AdminError> {
        let body = serde_json::to_vec(rules).map_err(|e| AdminError::Encode {
            path: NETWORK_FAULTS.into(),
            reason: e.to_string(),
        })?;
        self.json(Method::PUT, NETWORK_FAULTS, Some(body)).await
    }

    /// `DELETE /debug/network-faults`: removes every rule; answers the (empty) rules.
    ///
    /// # Errors
    /// When the node refuses or does not answer.
    pub async fn clear_network_faults(&self) -> Result<RuleSet, AdminError> {
        self.json(Method::DELETE, NETWORK_FAULTS, None).await
    }

    /// `method path` with `body` (sent as JSON when given); a 2xx answer parsed as `T`.
    ///
    /// # Errors
    /// [`AdminError::Refused`] on a non-2xx answer, [`AdminError::BadAnswer`] when the body is
    /// not a `T`, or a transport error.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, AdminError> {
        let answer = self.request(method, path, body).await?;
        let answer = self.success(path, answer)?;
        serde_json::from_slice(&answer.body).map_err(|e| AdminError::BadAnswer {
            addr: self.addr.clone(),
            path: path.to_owned(),
            status: answer.status,
            reason: e.to_string(),
            body: answer.text(),
        })
    }

    /// `method path` with `body` (sent as JSON when given): the answer as it came, any status.
    ///
    /// # Errors
    /// When the address is bad, the node cannot be reached or does not answer in time.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawAnswer, AdminError> {
        let request = self.build(method, path, body)?;
        let unreachable = |e: &(dyn std::error::Error + 'static)| AdminError::Unreachable {
            addr: self.addr.clone(),
            reason: chain(e),
        };
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(&e))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(&e))?
                .to_bytes();
            Ok(RawAnswer {
                status,
                body: body.to_vec(),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.timed_out(path))?
    }

    /// The request `method path`, with `body` sent as JSON when given.
    fn build(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>, AdminError> {
        let bad_address = || AdminError::BadAddress {
            addr: self.addr.clone(),
        };
        let uri: hyper::Uri = format!("{}://{}{path}", self.scheme, self.addr)
            .parse()
            .map_err(|_| bad_address())?;
        let mut request = Request::builder().method(method).uri(uri);
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| bad_address())
    }

    fn timed_out(&self, path: &str) -> AdminError {
        AdminError::Timeout {
            addr: self.addr.clone(),
            path: path.to_owned(),
            timeout: self.timeout,
        }
    }

    /// `GET path` for a long, streamed answer: the body as it arrives. Only the connection and
    /// the status line are bounded by the call timeout; reading the body is the caller's.
    ///
    /// # Errors
    /// When the node cannot be reached, does not answer in time, or refuses (non-2xx).
    pub async fn stream(&self, path: &str) -> Result<hyper::body::Incoming, AdminError> {
        let request = self.build(Method::GET, path, None)?;
        let response = tokio::time::timeout(self.timeout, self.http.request(request))
            .await
            .map_err(|_| self.timed_out(path))?
            .map_err(|e| AdminError::Unreachable {
                addr: self.addr.clone(),
                reason: chain(&e),
            })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response.into_body());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        Err(self.refusal(path, &RawAnswer { status, body }))
    }

    /// The answer when 2xx, else the refusal it carries.
    fn success(&self, path: &str, answer: RawAnswer) -> Result<RawAnswer, AdminError> {
        if answer.is_success() {
            Ok(answer)
        } else {
            Err(self.refusal(path, &answer))
        }
    }

    /// A non-2xx answer as [`AdminError::Refused`]; a body that is not an [`ErrorBody`] (a
    /// plain-text 503, axum's own 400 for a bad query) becomes the `error` text.
    fn refusal(&self, path: &str, answer: &RawAnswer) -> AdminError {
        let body =
            serde_json::from_slice::<ErrorBody>(&answer.body).unwrap_or_else(|_| ErrorBody {
                error: answer.text().trim().to_owned(),
                code: None,
                leader: None,
            });
        AdminError::Refused {
            addr: self.addr.clone(),
            path: path.to_owned(),
            status: answer.status,
            body,
        }
    }
}

/// The path of `GET /state/digest` at `version` (none: the applied one).
fn digest_path(version: Option<u64>) -> String {
    match version {
        Some(v) => format!("/state/digest?version={v}"),
        None => "/state/digest".to_owned(),
    }
}
