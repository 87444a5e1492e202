//! Service errors: each carries the docs/WIRE.md §4 error code and a message that names the bad
//! input or the way out.

use dolmen_engine::{Invalid, ReadError as EngineReadError};
use dolmen_raft::{ProposeError, ReadError as GateReadError};

use crate::disk::DiskFull;

/// The docs/WIRE.md §4 error codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// A read-conflict key or range was written after the read version.
    Conflict,
    /// Unknown operation type, missing value, short versionstamp buffer.
    InvalidOperation,
    /// Other bad input.
    InvalidArgument,
    /// This node cannot serve the request and did not forward it.
    NotLeader,
    /// Read version below the retention horizon.
    TransactionTooOld,
    /// Read version beyond what this node reached in time.
    FutureVersion,
    /// No outcome within `timeout_seconds`.
    Timeout,
    /// No quorum, overloaded, or shutting down.
    Unavailable,
    /// A fault installed by `setFaultInjection` fired; the code is its `fault_type`.
    Injected(String),
}

impl ErrorCode {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::InvalidOperation => "INVALID_OPERATION",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::TransactionTooOld => "TRANSACTION_TOO_OLD",
            ErrorCode::FutureVersion => "FUTURE_VERSION",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Injected(code) => code,
        }
    }
}

/// A failed request: the code clients branch on and a message people read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    /// The WIRE error code.
    pub code: ErrorCode,
    /// The `error` string sent to the client.
    pub message: String,
    /// For `NOT_LEADER`: the leader's client address, when known.
    pub leader_hint: Option<String>,
}

impl ServiceError {
    /// An error whose message is `"<CODE>: <detail>"`.
    pub fn new(code: ErrorCode, detail: impl std::fmt::Display) -> Self {
        let message = format!("{}: {detail}", code.as_str());
        Self {
            code,
            message,
            leader_hint: None,
        }
    }

    /// `INVALID_ARGUMENT` for `field`.
    pub fn argument(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidArgument, format!("{field}: {problem}"))
    }

    /// `INVALID_OPERATION` for operation `index`.
    pub fn operation(index: usize, problem: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::InvalidOperation,
            format!("operations[{index}]: {problem}"),
        )
    }
}

impl From<Invalid> for ServiceError {
    fn from(invalid: Invalid) -> Self {
        let code = match invalid {
            Invalid::Operation { .. } => ErrorCode::InvalidOperation,
            Invalid::FutureReadVersion { .. } => ErrorCode::FutureVersion,
            Invalid::Argument { .. }
            | Invalid::UnknownColumnFamily { .. }
            | Invalid::StaleSequence { .. } => ErrorCode::InvalidArgument,
            // Nothing applied; routed again it applies.
            Invalid::OutsideRange { .. } => ErrorCode::Unavailable,
        };
        Self::new(code, invalid)
    }
}

impl From<ProposeError> for ServiceError {
    fn from(e: ProposeError) -> Self {
        match &e {
            // WIRE §4 fixes this message exactly, so it carries no code prefix.
            ProposeError::NotLeader { leader_addr, .. } => Self {
                code: ErrorCode::NotLeader,
                message: e.to_string(),
                leader_hint: leader_addr.clone(),
            },
            ProposeError::Unavailable(detail) | ProposeError::LeaderUnreachable(detail) => {
                Self::new(ErrorCode::Unavailable, detail)
            }
            ProposeError::Timeout(_) | ProposeError::NotAppliedByAll { .. } => Self {
                code: ErrorCode::Timeout,
                message: e.to_string(),
                leader_hint: None,
            },
        }
    }
}

/// A full disk refuses the write before it is proposed: `UNAVAILABLE: disk full: …` (WIRE §4:
/// a storage failure, nothing applied).
impl From<DiskFull> for ServiceError {
    fn from(full: DiskFull) -> Self {
        Self::new(ErrorCode::Unavailable, full)
    }
}

impl From<GateReadError> for ServiceError {
    fn from(e: GateReadError) -> Self {
        match e {
            GateReadError::FutureVersion { .. } => Self {
                code: ErrorCode::FutureVersion,
                message: e.to_string(),
                leader_hint: None,
            },
            GateReadError::Propose(p) => p.into(),
        }
    }
}

impl From<EngineReadError> for ServiceError {
    fn from(e: EngineReadError) -> Self {
        match e {
            EngineReadError::Invalid(invalid) => invalid.into(),
            EngineReadError::TooOld { .. } => Self {
                code: ErrorCode::TransactionTooOld,
                message: e.to_string(),
                leader_hint: None,
            },
            EngineReadError::FutureVersion { .. } => Self {
                code: ErrorCode::FutureVersion,
                message: e.to_string(),
                leader_hint: None,
            },
            EngineReadError::Storage(s) => {
                tracing::error!(error = %s, "storage failure during a read");
                Self::new(ErrorCode::Unavailable, format!("storage failure: {s}"))
            }
        }
    }
}

impl From<ServiceError> for dolmen_api::WireError {
    fn from(e: ServiceError) -> Self {
        Self {
            code: Some(e.code.as_str().to_owned()),
            message: e.message,
            leader_hint: e.leader_hint,
        }
    }
}
