//! The one mapping from service errors to FHIR responses.
//!
//! | error                 | status | issue code   |
//! |-----------------------|--------|--------------|
//! | `Invalid`             | 400    | `invalid`    |
//! | `InvalidResource`     | 400    | the issues'  |
//! | `NotFound`            | 404    | `not-found`  |
//! | `Gone`                | 410    | `deleted`    |
//! | `Conflict`            | 409    | `conflict`   |
//! | `PreconditionFailed`  | 412    | `conflict`   |
//! | `Unprocessable`       | 422    | `processing` |
//! | `Forbidden`           | 403    | `forbidden`  |
//! | `QuotaExceeded`       | 429    | `throttled`  |
//! | `Storage`, `Internal` | 500    | `exception` (detail logged, never sent) |

use axum::response::Response;
use fhirlake_core::CoreError;
use fhirlake_fhir::outcome::{operation_outcome, Issue};
use http::StatusCode;

use super::response::fhir_json;

/// An error response on the data plane: a status and the issues of its OperationOutcome.
#[derive(Debug)]
pub struct FhirError {
    /// HTTP status.
    pub status: StatusCode,
    /// The OperationOutcome's issues.
    pub issues: Vec<Issue>,
    /// The `WWW-Authenticate` challenge of a refused bearer token (RFC 6750).
    pub challenge: Option<String>,
}

impl FhirError {
    /// An error with one issue.
    pub fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> Self {
        FhirError { status, issues: vec![Issue::error(code, diagnostics)], challenge: None }
    }

    /// 400 with issue code `invalid`.
    pub fn bad_request(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", diagnostics)
    }

    /// Renders the OperationOutcome response.
    pub fn into_response(self) -> Response {
        let body = serde_json::to_vec(&operation_outcome(&self.issues)).unwrap_or_default();
        let mut response = fhir_json(self.status, body);
        if let Some(challenge) = self.challenge.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(http::header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

impl From<CoreError> for FhirError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        match e {
            CoreError::Invalid(m) => FhirError::new(S::BAD_REQUEST, "invalid", m),
            CoreError::InvalidResource(issues) => FhirError { status: S::BAD_REQUEST, issues, challenge: None },
            CoreError::NotFound(m) => FhirError::new(S::NOT_FOUND, "not-found", m),
            CoreError::Gone(m) => FhirError::new(S::GONE, "deleted", m),
            CoreError::Conflict(m) => FhirError::new(S::CONFLICT, "conflict", m),
            CoreError::PreconditionFailed(m) => FhirError::new(S::PRECONDITION_FAILED, "conflict", m),
            CoreError::Unprocessable(m) => FhirError::new(S::UNPROCESSABLE_ENTITY, "processing", m),
            CoreError::Forbidden(m) => FhirError::new(S::FORBIDDEN, "forbidden", m),
            CoreError::QuotaExceeded(m) => FhirError::new(S::TOO_MANY_REQUESTS, "throttled", m),
            e @ (CoreError::Storage(_) | CoreError::Internal(_)) => {
                tracing::error!(error = %e, "data-plane request failed");
                FhirError::new(S::INTERNAL_SERVER_ERROR, "exception", "internal error")
            }
        }
    }
}
