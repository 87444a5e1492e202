//! [`Error`]: why a request or a transaction failed, with the WIRE error code (docs/WIRE.md §4) and
//! whether retrying the transaction can help ([`Error::is_retryable`]).

use std::net::SocketAddr;

/// Why a request or a transaction failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request did not complete (connection refused, reset, timed out). For a commit the
    /// outcome is unknown; the SDK resends it with the same idempotency token.
    #[error("transport error talking to {addr}: {message}")]
    Transport {
        /// The node.
        addr: SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// The server answered with an error.
    #[error("{message}")]
    Server {
        /// The WIRE error code (e.g. `CONFLICT`): the response's `error_code`, or for methods
        /// without one the `CODE:` prefix of the message.
        code: Option<String>,
        /// The server's message.
        message: String,
        /// For `NOT_LEADER`: the response's `leader_hint` (the leader's client address), when
        /// sent. [`Error::leader_hint`] also reads it from the message.
        leader_hint: Option<String>,
    },
    /// Every node tried for this request failed (transport errors, `UNAVAILABLE`, no leader
    /// found); nodes are retried after a backoff, so running the transaction again can succeed.
    /// For a commit the outcome is unknown.
    #[error("no node available (tried {tried:?}){}", last.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    NoNodeAvailable {
        /// The nodes tried, in order.
        tried: Vec<SocketAddr>,
        /// The last error seen, if any node was reached at all.
        last: Option<Box<Error>>,
    },
    /// The transaction was misused (e.g. a read of a key whose value is a pending
    /// versionstamped value); fix the calling code.
    #[error("transaction misuse: {message}")]
    Usage {
        /// What was wrong and how to fix it.
        message: String,
    },
    /// [`crate::Database::transact`] gave up: the attempt cap or the deadline of
    /// [`crate::DatabaseOptions`] was reached.
    #[error("transaction gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: Box<Error>,
    },
}

/// Codes after which running the transaction again can succeed.
const RETRYABLE_CODES: &[&str] = &[
    "CONFLICT",
    "TRANSACTION_TOO_OLD",
    "FUTURE_VERSION",
    "UNAVAILABLE",
    "TIMEOUT",
    "NOT_LEADER",
];

impl Error {
    /// A server error; when `code` is absent, a leading `CODE:` in `message` is taken as the code
    /// (read methods carry their code only in the message).
    pub fn server(code: Option<String>, message: String) -> Self {
        Error::Server {
            code: code.or_else(|| code_prefix(&message)),
            message,
            leader_hint: None,
        }
    }

    /// For `NOT_LEADER`: the leader's client address, from the response's `leader_hint` or else
    /// from the message (`Not leader, try leader at: <host:port> (node <id>)`, docs/WIRE.md §4).
    pub fn leader_hint(&self) -> Option<SocketAddr> {
        match self {
            Error::Server {
                leader_hint,
                message,
                ..
            } => leader_hint
                .as_deref()
                .and_then(|h| h.trim().parse().ok())
                .or_else(|| parse_leader_hint(message)),
            Error::RetriesExhausted { last, .. } => last.leader_hint(),
            _ => None,
        }
    }

    /// The WIRE error code, if the server sent one (for [`Error::RetriesExhausted`], the last
    /// attempt's).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => code.as_deref(),
            Error::RetriesExhausted { last, .. } => last.code(),
            Error::NoNodeAvailable { last, .. } => last.as_ref().and_then(|e| e.code()),
            Error::Transport { .. } | Error::Usage { .. } => None,
        }
    }

    /// Whether running the transaction again can succeed: transport errors, no node available,
    /// and `CONFLICT`, `TRANSACTION_TOO_OLD`, `FUTURE_VERSION`, `UNAVAILABLE`, `TIMEOUT`,
    /// `NOT_LEADER`. Never `INVALID_*`, misuse, or an exhausted retry loop.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::NoNodeAvailable { .. } => true,
            Error::Server { code, .. } => code
                .as_deref()
                .is_some_and(|c| RETRYABLE_CODES.contains(&c)),
            Error::Usage { .. } | Error::RetriesExhausted { .. } => false,
        }
    }

    /// Whether a commit that failed with this error may nonetheless have been applied (transport
    /// error, no node available, `TIMEOUT`, or `UNAVAILABLE` — a node that lost its leadership
    /// or its quorum mid-commit cannot tell); its retry must reuse the idempotency token.
    pub fn is_maybe_committed(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::NoNodeAvailable { .. } => true,
            Error::Server { code, .. } => {
                matches!(code.as_deref(), Some("TIMEOUT" | "UNAVAILABLE"))
            }
            Error::Usage { .. } | Error::RetriesExhausted { .. } => false,
        }
    }

    /// Whether this error means the node that sent it (or could not be reached) should leave
    /// the rotation for a while: transport errors and `UNAVAILABLE`.
    pub(crate) fn is_node_failure(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Server { code, .. } => code.as_deref() == Some("UNAVAILABLE"),
            _ => false,
        }
    }
}

impl From<dolmen_api::WireError> for Error {
    /// A failed response: its `error_code` (or else the message's `CODE:` prefix), message and
    /// `leader_hint`.
    fn from(e: dolmen_api::WireError) -> Self {
        Error::Server {
            code: e.code.or_else(|| code_prefix(&e.message)),
            message: e.message,
            leader_hint: e.leader_hint,
        }
    }
}

/// The WIRE code a message starts with (`CODE: detail`), if any.
fn code_prefix(message: &str) -> Option<String> {
    let (prefix, _) = message.split_once(':')?;
    let is_code = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    is_code.then(|| prefix.to_owned())
}

/// The leader address in a `NOT_LEADER` message: `... try leader at: <host:port> (node <id>)`.
/// `None` when the message names no parseable socket address (e.g. the leader is unknown).
pub(crate) fn parse_leader_hint(message: &str) -> Option<SocketAddr> {
    let (_, rest) = message.split_once("leader at:")?;
    let addr = rest.split_whitespace().next()?;
    addr.trim_end_matches([',', ';', '.']).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_is_retryable_and_maybe_committed_whatever_its_message() {
        for message in [
            "UNAVAILABLE: no leader known",
            "UNAVAILABLE: key 'a' in column family 'default' is locked by transaction 1.2.3 \
             committing across shards, still undecided after 10000 ms; retry",
        ] {
            let e = Error::server(Some("UNAVAILABLE".into()), message.into());
            assert!(e.is_retryable(), "{message}");
            assert!(e.is_maybe_committed(), "{message}");
        }
    }

    #[test]
    fn leader_hint_from_field_or_message() {
        let msg = "Not leader, try leader at: 127.0.0.1:9091 (node 1)";
        assert_eq!(
            parse_leader_hint(msg),
            Some("127.0.0.1:9091".parse().unwrap())
        );
        assert_eq!(
            parse_leader_hint("Not leader, try leader at: [::1]:9092 (node 2)"),
            Some("[::1]:9092".parse().unwrap())
        );
        assert_eq!(
            parse_leader_hint("Not leader, try leader at: unknown"),
            None
        );
        assert_eq!(parse_leader_hint("Not leader, try leader at: "), None);
        assert_eq!(parse_leader_hint("CONFLICT: key written"), None);

        let mut e = Error::server(Some("NOT_LEADER".into()), msg.into());
        assert_eq!(e.leader_hint(), Some("127.0.0.1:9091".parse().unwrap()));
        // The response's leader_hint field wins over the message.
        if let Error::Server { leader_hint, .. } = &mut e {
            *leader_hint = Some("10.0.0.7:9090".into());
        }
        assert_eq!(e.leader_hint(), Some("10.0.0.7:9090".parse().unwrap()));
        // An unparseable field falls back to the message.
        if let Error::Server { leader_hint, .. } = &mut e {
            *leader_hint = Some("garbage".into());
        }
        assert_eq!(e.leader_hint(), Some("127.0.0.1:9091".parse().unwrap()));
        assert!(e.is_retryable());
        assert!(!e.is_maybe_committed());
    }

    #[test]
    fn no_node_available_is_retryable_and_unknown() {
        let e = Error::NoNodeAvailable {
            tried: vec!["127.0.0.1:1".parse().unwrap()],
            last: Some(Box::new(Error::server(
                Some("UNAVAILABLE".into()),
                "no quorum".into(),
            ))),
        };
        assert!(e.is_retryable());
        assert!(e.is_maybe_committed());
        assert_eq!(e.code(), Some("UNAVAILABLE"));
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    }

    #[test]
    fn code_from_message_prefix() {
        let e = Error::server(None, "TRANSACTION_TOO_OLD: read version 3 ...".into());
        assert_eq!(e.code(), Some("TRANSACTION_TOO_OLD"));
        assert!(e.is_retryable());
        let e = Error::server(None, "unknown column family 'x': ...".into());
        assert_eq!(e.code(), None);
        assert!(!e.is_retryable());
        let e = Error::server(Some("INVALID_OPERATION".into()), "bad".into());
        assert!(!e.is_retryable());
    }
}
