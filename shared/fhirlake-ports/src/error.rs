//! The one error type every port returns.

use std::fmt;

/// What went wrong, in terms the domain can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// A write's condition did not hold (optimistic concurrency lost, or item exists/absent).
    ConditionFailed,
    /// A transactional write was cancelled; the indexes are the writes whose condition failed.
    TransactionCanceled(Vec<usize>),
    /// The object or key does not exist.
    NotFound,
    /// The item or request exceeds a size limit of the backend.
    TooLarge,
    /// The request is malformed for this backend (bad key, too many writes, ...).
    Invalid,
    /// The backend asked us to slow down and retries were exhausted.
    Throttled,
    /// Anything else: io errors, corrupted data, unreachable services.
    Internal,
}

/// A port error: a kind plus a lowercase message for logs (never containing resource bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    /// What went wrong.
    pub kind: StorageErrorKind,
    /// Detail for operators.
    pub message: String,
}

/// Result alias for port calls.
pub type StorageResult<T> = Result<T, StorageError>;

impl StorageError {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> Self {
        StorageError { kind, message: message.into() }
    }
    /// A failed write condition.
    pub fn condition_failed() -> Self {
        Self::new(StorageErrorKind::ConditionFailed, "condition check failed")
    }
    /// A missing object.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::NotFound, what)
    }
    /// Malformed request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Invalid, message)
    }
    /// Backend failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StorageErrorKind::Internal, message)
    }
    /// True when a conditional or transactional write lost to its condition.
    pub fn is_condition_failure(&self) -> bool {
        matches!(self.kind, StorageErrorKind::ConditionFailed | StorageErrorKind::TransactionCanceled(_))
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for StorageError {}
