//! The body of every admin refusal (a non-2xx answer): `{"error": "...", "code": "...",
//! "leader": N}`. `error` is for people; `code` (and `leader` on a `not_leader` refusal) are
//! for programs, so that no caller matches the text.

use serde::{Deserialize, Serialize};

use crate::status::NodeId;

/// Why the node refused, for programs. Unknown codes read as [`ErrorCode::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 409: this node is not the leader; send the request to the leader (`leader` names it
    /// when known).
    NotLeader,
    /// 409: the node runs `[deployment] mode = "standalone"`: there is no cluster.
    Standalone,
    /// 409: the request conflicts with the cluster's state (e.g. it would leave no reachable
    /// majority, or the node is a voter at another address).
    Conflict,
    /// 400: the request is malformed or names something that does not exist.
    InvalidRequest,
    /// 403: network fault injection is off on this node.
    NetworkFaultsOff,
    /// 401: the request carries no credential, or a wrong one (`Authorization: Bearer`).
    Unauthorized,
    /// 403: no credential this node is configured with allows the request.
    Forbidden,
    /// 503: the cluster cannot do it now (no majority reachable, a change not committed in
    /// time, shutting down); retrying later may succeed.
    Unavailable,
    /// 500: the node failed.
    Internal,
    /// A code this client does not know.
    #[serde(other)]
    Other,
}

/// The JSON body of a refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and, where possible, how to fix it.
    pub error: String,
    /// The machine-readable reason (absent from servers older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// On a `not_leader` refusal: the leader this node knows of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<NodeId>,
}

impl ErrorBody {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: message.into(),
            code: Some(code),
            leader: None,
        }
    }

    /// A `not_leader` refusal naming the `leader` when known.
    pub fn not_leader(message: impl Into<String>, leader: Option<NodeId>) -> Self {
        Self {
            leader,
            ..Self::new(ErrorCode::NotLeader, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_error_body_reads_without_code_and_writes_only_what_it_has() {
        let old: ErrorBody = serde_json::from_str(r#"{"error":"no"}"#).unwrap();
        assert_eq!(old.code, None);
        assert_eq!(
            serde_json::to_string(&ErrorBody::new(ErrorCode::Standalone, "alone")).unwrap(),
            r#"{"error":"alone","code":"standalone"}"#
        );
        assert_eq!(
            serde_json::to_string(&ErrorBody::not_leader("ask 2", Some(2))).unwrap(),
            r#"{"error":"ask 2","code":"not_leader","leader":2}"#
        );
        let future: ErrorBody =
            serde_json::from_str(r#"{"error":"x","code":"brand_new"}"#).unwrap();
        assert_eq!(future.code, Some(ErrorCode::Other));
    }
}
