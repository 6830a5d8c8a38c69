//! The services' error type. Entry points map it to HTTP: `fhirlake-api`'s error module holds the table.

use fhirlake_fhir::outcome::Issue;
use fhirlake_ports::StorageError;

/// Why a service call failed. Messages are lowercase and never contain resource content (PHI).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request is malformed or violates a constraint (HTTP 400 / ValidationException).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The submitted resource failed validation (HTTP 400 with the issues).
    #[error("invalid resource")]
    InvalidResource(Vec<Issue>),
    /// The addressed thing does not exist (HTTP 404 / ResourceNotFoundException).
    #[error("not found: {0}")]
    NotFound(String),
    /// The resource existed and was deleted (HTTP 410).
    #[error("gone: {0}")]
    Gone(String),
    /// The request conflicts with the current state (HTTP 409 / ConflictException).
    #[error("conflict: {0}")]
    Conflict(String),
    /// An If-Match or other precondition did not hold (HTTP 412).
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// The request is understood but the server will not process it (HTTP 422).
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// The caller may not do this (HTTP 403 / AccessDeniedException).
    #[error("access denied: {0}")]
    Forbidden(String),
    /// A quota was exceeded (HTTP 400/402 / ServiceQuotaExceededException).
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// A backend failed (HTTP 500 / InternalServerException); detail goes to logs only.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A bug or corrupted state (HTTP 500); detail goes to logs only.
    #[error("internal: {0}")]
    Internal(String),
}

/// Result alias for service calls.
pub type CoreResult<T> = Result<T, CoreError>;
