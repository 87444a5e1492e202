//! [`Error`]: why a request or a transaction failed, with the WIRE error code (WIRE.md §4) and
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
        let code = code.or_else(|| {
            let (prefix, _) = message.split_once(':')?;
            let is_code =
                !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
            is_code.then(|| prefix.to_owned())
        });
        Error::Server { code, message }
    }

    /// The WIRE error code, if the server sent one (for [`Error::RetriesExhausted`], the last
    /// attempt's).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => code.as_deref(),
            Error::RetriesExhausted { last, .. } => last.code(),
            Error::Transport { .. } | Error::Usage { .. } => None,
        }
    }

    /// Whether running the transaction again can succeed: transport errors and `CONFLICT`,
    /// `TRANSACTION_TOO_OLD`, `FUTURE_VERSION`, `UNAVAILABLE`, `TIMEOUT`, `NOT_LEADER`. Never
    /// `INVALID_*`, misuse, or an exhausted retry loop.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Server { code, .. } => code
                .as_deref()
                .is_some_and(|c| RETRYABLE_CODES.contains(&c)),
            Error::Usage { .. } | Error::RetriesExhausted { .. } => false,
        }
    }

    /// Whether a commit that failed with this error may nonetheless have been applied (transport
    /// error or `TIMEOUT`); its retry must reuse the idempotency token.
    pub fn is_maybe_committed(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Server { code, .. } => code.as_deref() == Some("TIMEOUT"),
            Error::Usage { .. } | Error::RetriesExhausted { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
