//! [`AdminError`]: why an admin call did not give the answer asked for, in variants a caller
//! can act on (retry another endpoint when unreachable, follow the leader when refused with
//! `not_leader`, report a refusal as it is).

use std::time::Duration;

use crate::refusal::{ErrorBody, ErrorCode};
use crate::status::NodeId;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address is not `host:port`.
    #[error("{addr:?} is not a host:port admin address")]
    BadAddress {
        /// The address given.
        addr: String,
    },
    /// The CA given for HTTPS holds no usable certificate.
    #[error("the CA for the admin API's HTTPS: {reason}")]
    BadCa {
        /// What was wrong with it.
        reason: String,
    },
    /// No connection, or the connection broke before the answer was complete.
    #[error("cannot reach the admin API at {addr}: {reason}")]
    Unreachable {
        /// The admin address.
        addr: String,
        /// The transport error with its causes.
        reason: String,
    },
    /// No complete answer within the client's timeout (a stopped node, a long operation).
    #[error("{addr}{path}: no answer within {timeout:?}")]
    Timeout {
        /// The admin address.
        addr: String,
        /// The request path.
        path: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The node answered with a non-2xx status.
    #[error("{addr}{path} answered {}: {}", status_text(*status), body.error)]
    Refused {
        /// The admin address.
        addr: String,
        /// The request path.
        path: String,
        /// The HTTP status, e.g. 409.
        status: u16,
        /// The refusal; a body that is not an [`ErrorBody`] becomes its `error` text.
        body: ErrorBody,
    },
    /// The node answered 2xx with a body that is not the expected JSON.
    #[error("{addr}{path} answered {} with a body that is not the expected JSON ({reason}): {body}", status_text(*status))]
    BadAnswer {
        /// The admin address.
        addr: String,
        /// The request path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The parse error.
        reason: String,
        /// The body, as (lossy) UTF-8.
        body: String,
    },
    /// The request body could not be encoded as JSON.
    #[error("{path}: the request body does not encode as JSON: {reason}")]
    Encode {
        /// The request path.
        path: String,
        /// The encoder's error.
        reason: String,
    },
    /// The blocking facade could not start its runtime.
    #[error("cannot start the admin client's runtime: {reason}")]
    Runtime {
        /// The I/O error.
        reason: String,
    },
}

/// `409 Conflict`, or the bare number for a status hyper does not know.
fn status_text(status: u16) -> String {
    hyper::StatusCode::from_u16(status).map_or_else(|_| status.to_string(), |s| s.to_string())
}

impl AdminError {
    /// The HTTP status of a refusal or a bad answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            AdminError::Refused { status, .. } | AdminError::BadAnswer { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The machine-readable reason of a refusal, when the server gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            AdminError::Refused { body, .. } => body.code,
            _ => None,
        }
    }

    /// Whether the node refused because it is not the leader (409 with code `not_leader`).
    pub fn is_not_leader(&self) -> bool {
        self.status() == Some(409) && self.code() == Some(ErrorCode::NotLeader)
    }

    /// On a `not_leader` refusal: the leader the node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        match self {
            AdminError::Refused { body, .. } => body.leader,
            _ => None,
        }
    }

    /// Whether no answer came (unreachable, timed out): another endpoint may answer.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            AdminError::Unreachable { .. } | AdminError::Timeout { .. }
        )
    }
}

/// The error and its causes on one line (`a: b: c`), for [`AdminError::Unreachable`].
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}
