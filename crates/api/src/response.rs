//! [`WireResponse`]: how every generated response struct carries a failure (docs/WIRE.md §2, §4),
//! written once for both sides: the server folds an error into a response with
//! [`WireResponse::failure`], the SDK unpacks one with [`WireResponse::into_result`].
//!
//! ```text
//!   server: Result<Resp, E> ──E: Into<WireError>──▶ Resp::failure ──▶ wire
//!   client: wire ──▶ Resp::into_result ──▶ Ok(Resp) | Err(WireError)
//! ```

use pilota::{Bytes, FastStr};

use crate::gen;

/// The failure fields of a response: `error`, and where the response type has them,
/// `error_code` and `leader_hint`.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    /// The `error` string people read (docs/WIRE.md §4: `"<CODE>: <detail>"` for most errors).
    pub message: String,
    /// The `error_code` clients branch on; dropped by response types without that field.
    pub code: Option<String>,
    /// For `NOT_LEADER`: the leader's client address; only `AtomicCommitResponse` carries it.
    pub leader_hint: Option<String>,
}

/// The message a client reports for a failed response that carried no `error`.
pub const NO_MESSAGE: &str = "request failed without a message";

impl WireError {
    /// A failure with only a message (no `error_code`, no leader hint).
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }

    /// The failure fields as received: a missing `error` reads as [`NO_MESSAGE`].
    fn received(
        error: Option<FastStr>,
        code: Option<FastStr>,
        leader_hint: Option<FastStr>,
    ) -> Self {
        Self {
            message: error.map_or_else(|| NO_MESSAGE.to_owned(), |e| e.to_string()),
            code: code.map(|c| c.to_string()),
            leader_hint: leader_hint.map(|h| h.to_string()),
        }
    }

    fn error(&self) -> Option<FastStr> {
        Some(FastStr::from(self.message.clone()))
    }

    fn code(&self) -> Option<FastStr> {
        self.code.clone().map(FastStr::from)
    }
}

/// A generated response struct that reports failures in-band.
///
/// The wire contract (docs/WIRE.md §2) both methods keep: required fields are always present
/// (zero values on failure), and `error`/`error_code` are sent only on failure.
pub trait WireResponse: Sized {
    /// The response for a failed request: `success`/`found` false, required fields at their
    /// zero value, optional results absent, `error` set, and `error_code`/`leader_hint` set when
    /// this type has them (otherwise dropped; the code stays in the message's `CODE:` prefix).
    fn failure(error: WireError) -> Self;

    /// The response itself when it reports success, its failure fields otherwise. A response
    /// with a `success` field failed when `success` is false; a point read (`found`, no
    /// `success`) failed when it carries an `error`.
    ///
    /// # Errors
    /// The response's `error` (or [`NO_MESSAGE`]), `error_code` and `leader_hint`.
    fn into_result(self) -> Result<Self, WireError>;

    /// `None` when the response reports success; else its `error_code`, or the `CODE` of an
    /// `error` written `"CODE: detail"`, or `"ERROR"` for a message without a code.
    fn failure_code(&self) -> Option<&str>;
}

/// The code a failure reports: `code` when the type carries one, else the message's prefix.
fn code_in<'a>(code: Option<&'a FastStr>, error: Option<&'a FastStr>) -> &'a str {
    if let Some(code) = code {
        return code;
    }
    error
        .and_then(|e| e.split_once(':'))
        .map(|(prefix, _)| prefix)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .unwrap_or("ERROR")
}

/// The `error_code` of a response whose type has one, else `None`.
macro_rules! code_of {
    ($resp:ident) => {
        None
    };
    ($resp:ident $code:ident) => {
        $resp.$code
    };
}

/// A reference to the `error_code` of a response whose type has one, else `None`.
macro_rules! code_ref {
    ($resp:ident) => {
        None
    };
    ($resp:ident $code:ident) => {
        $resp.$code.as_ref()
    };
}

/// Implements [`WireResponse`] for response structs with a `success` field: `$ty { zero fields }`,
/// with `error_code` after the braces when the type has that field.
macro_rules! with_success {
    ($($ty:ident { $($field:ident: $zero:expr),* $(,)? } $($code:ident)?;)*) => {$(
        impl WireResponse for gen::$ty {
            fn failure(error: WireError) -> Self {
                Self {
                    success: false,
                    error: error.error(),
                    $($code: error.code(),)?
                    $($field: $zero,)*
                }
            }

            fn into_result(self) -> Result<Self, WireError> {
                if self.success {
                    return Ok(self);
                }
                let code = code_of!(self $($code)?);
                Err(WireError::received(self.error, code, None))
            }

            fn failure_code(&self) -> Option<&str> {
                (!self.success).then(|| code_in(code_ref!(self $($code)?), self.error.as_ref()))
            }
        }
    )*};
}

with_success! {
    GetReadVersionResponse { read_version: 0 };
    SetKeyResponse {} error_code;
    DeleteKeyResponse {} error_code;
    GetRangeResponse { key_values: Vec::new(), has_more: false };
    AddReadConflictResponse {};
    AddReadConflictRangeResponse {};
    SetReadVersionResponse {};
    GetCommittedVersionResponse { version: 0 };
    SetVersionstampedKeyResponse { generated_key: Bytes::new() };
    SetVersionstampedValueResponse { generated_value: Bytes::new() };
    FaultInjectionResponse {};
    GetClusterHealthResponse { cluster_health: None };
    GetDatabaseStatsResponse { database_stats: None };
    GetNodeInfoResponse { node_info: None };
}

/// Implements [`WireResponse`] for point-read responses (`value`, `found`, `error`).
macro_rules! point_read {
    ($($ty:ident),*) => {$(
        impl WireResponse for gen::$ty {
            fn failure(error: WireError) -> Self {
                Self {
                    value: Bytes::new(),
                    found: false,
                    error: error.error(),
                }
            }

            fn into_result(self) -> Result<Self, WireError> {
                match self.error {
                    None => Ok(self),
                    error => Err(WireError::received(error, None, None)),
                }
            }

            fn failure_code(&self) -> Option<&str> {
                self.error.as_ref().map(|e| code_in(None, Some(e)))
            }
        }
    )*};
}

point_read!(GetResponse, SnapshotReadResponse);

impl WireResponse for gen::AtomicCommitResponse {
    fn failure(error: WireError) -> Self {
        Self {
            success: false,
            error: error.error(),
            error_code: error.code(),
            committed_version: None,
            versionstamp: None,
            leader_hint: error.leader_hint.map(FastStr::from),
        }
    }

    fn into_result(self) -> Result<Self, WireError> {
        if self.success {
            return Ok(self);
        }
        Err(WireError::received(
            self.error,
            self.error_code,
            self.leader_hint,
        ))
    }

    fn failure_code(&self) -> Option<&str> {
        (!self.success).then(|| code_in(self.error_code.as_ref(), self.error.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> WireError {
        WireError {
            message: "NOT_LEADER: elsewhere".into(),
            code: Some("NOT_LEADER".into()),
            leader_hint: Some("10.0.0.1:9090".into()),
        }
    }

    #[test]
    fn the_failure_code_comes_from_error_code_or_the_message_prefix() {
        let ok = gen::SetKeyResponse {
            success: true,
            error: None,
            error_code: None,
        };
        assert_eq!(ok.failure_code(), None);
        assert_eq!(
            gen::SetKeyResponse::failure(failed()).failure_code(),
            Some("NOT_LEADER")
        );
        assert_eq!(
            gen::GetRangeResponse::failure(failed()).failure_code(),
            Some("NOT_LEADER")
        );
        assert_eq!(
            gen::GetResponse::failure(WireError::message("CONFLICT: read k")).failure_code(),
            Some("CONFLICT")
        );
        assert_eq!(
            gen::GetResponse::failure(WireError::message("no code: here")).failure_code(),
            Some("ERROR")
        );
        assert_eq!(
            gen::AtomicCommitResponse::failure(failed()).failure_code(),
            Some("NOT_LEADER")
        );
    }

    #[test]
    fn a_failure_round_trips_through_every_field_the_type_has() {
        assert_eq!(
            gen::AtomicCommitResponse::failure(failed()).into_result(),
            Err(failed())
        );
        // No leader_hint field: the hint is dropped.
        let set = gen::SetKeyResponse::failure(failed());
        assert_eq!(set.error_code.as_deref(), Some("NOT_LEADER"));
        assert_eq!(
            set.into_result(),
            Err(WireError {
                leader_hint: None,
                ..failed()
            })
        );
        // No error_code field either: only the message travels.
        let range = gen::GetRangeResponse::failure(failed());
        assert!(!range.success && !range.has_more && range.key_values.is_empty());
        assert_eq!(
            range.into_result(),
            Err(WireError::message("NOT_LEADER: elsewhere"))
        );
        let read = gen::GetResponse::failure(failed());
        assert!(!read.found && read.value.is_empty());
        assert_eq!(
            read.into_result(),
            Err(WireError::message("NOT_LEADER: elsewhere"))
        );
    }

    #[test]
    fn success_passes_through_and_a_silent_failure_gets_a_message() {
        let ok = gen::SetKeyResponse {
            success: true,
            error: None,
            error_code: None,
        };
        assert_eq!(ok.clone().into_result(), Ok(ok));
        let not_found = gen::SnapshotReadResponse::default();
        assert_eq!(not_found.clone().into_result(), Ok(not_found));
        let silent = gen::GetReadVersionResponse::default();
        assert_eq!(silent.into_result(), Err(WireError::message(NO_MESSAGE)));
    }
}
