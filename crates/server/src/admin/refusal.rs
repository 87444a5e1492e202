//! [`Refusal`]: every non-2xx admin answer, an HTTP status with a `dolmen_admin::ErrorBody`.
//! The one place where the Raft node's error kinds become HTTP statuses and error codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dolmen_admin::{ErrorBody, ErrorCode, RuleError};
use dolmen_raft::{BootstrapError, CoreStopped, ErrorKind, MembershipError};

/// A refused admin request.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    body: ErrorBody,
}

impl Refusal {
    /// A refusal with `code` (which fixes the status) and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: status_of(code),
            body: ErrorBody::new(code, message),
        }
    }

    /// 409 on a standalone node, for every cluster endpoint.
    pub fn standalone() -> Self {
        Self::new(
            ErrorCode::Standalone,
            "this node runs [deployment] mode = \"standalone\": there is no cluster to operate on",
        )
    }

    /// 403 when the node does not allow network faults.
    pub fn network_faults_off() -> Self {
        Self::new(
            ErrorCode::NetworkFaultsOff,
            "network fault injection is off on this node; start it with \
             [faults] allow_network_faults = true (tests only)",
        )
    }

    /// 400: the request is malformed.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// 500: the node failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// The machine-readable reason.
    pub fn code(&self) -> Option<ErrorCode> {
        self.body.code
    }
}

/// The HTTP status of each error code.
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NotLeader | ErrorCode::Standalone | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NetworkFaultsOff | ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal | ErrorCode::Other => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error code of each kind of Raft refusal (NotLeader and Conflict 409, BadRequest 400,
/// Unavailable 503, Internal 500).
fn code_of(kind: ErrorKind) -> ErrorCode {
    match kind {
        ErrorKind::NotLeader => ErrorCode::NotLeader,
        ErrorKind::Conflict => ErrorCode::Conflict,
        ErrorKind::BadRequest => ErrorCode::InvalidRequest,
        ErrorKind::Unavailable => ErrorCode::Unavailable,
        ErrorKind::Internal => ErrorCode::Internal,
    }
}

impl From<MembershipError> for Refusal {
    fn from(e: MembershipError) -> Self {
        let mut refusal = Self::new(code_of(e.kind()), e.to_string());
        refusal.body.leader = e.leader().map(|(id, _)| id);
        refusal
    }
}

impl From<BootstrapError> for Refusal {
    fn from(e: BootstrapError) -> Self {
        Self::new(code_of(e.kind()), e.to_string())
    }
}

impl From<CoreStopped> for Refusal {
    fn from(e: CoreStopped) -> Self {
        Self::new(code_of(e.kind()), e.to_string())
    }
}

impl From<RuleError> for Refusal {
    fn from(e: RuleError) -> Self {
        Self::invalid(e.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_raft_error_kind_has_its_status() {
        let cases = [
            (ErrorKind::NotLeader, StatusCode::CONFLICT),
            (ErrorKind::Conflict, StatusCode::CONFLICT),
            (ErrorKind::BadRequest, StatusCode::BAD_REQUEST),
            (ErrorKind::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (ErrorKind::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (kind, status) in cases {
            assert_eq!(status_of(code_of(kind)), status, "{kind:?}");
        }
    }

    #[test]
    fn a_not_leader_refusal_carries_its_code_and_leader() {
        let refusal = Refusal::from(MembershipError::NotLeader {
            node: 1,
            group: 0,
            leader: Some((2, "127.0.0.1:9090".into())),
        });
        assert_eq!(refusal.status, StatusCode::CONFLICT);
        assert_eq!(refusal.body.code, Some(ErrorCode::NotLeader));
        assert_eq!(refusal.body.leader, Some(2));
        assert!(
            refusal.body.error.contains("is not the leader"),
            "{refusal:?}"
        );
    }
}
