//! The audit trail: one structured record per request, on the `fhirlake::audit` tracing target.
//! Records name who (the access key id, or the IAM principal API Gateway authenticated), what (method, path) and the outcome (status); they never
//! contain bodies, query values or headers other than the principal, so no PHI reaches the log.

use crate::auth::{AuthFailure, Caller};
use axum::response::Response;
use http::request::Parts;

/// Records a completed request.
pub fn completed(caller: &Caller, parts: &Parts, response: &Response) {
    tracing::info!(
        target: "fhirlake::audit",
        principal = %caller.principal,
        method = %parts.method,
        path = %parts.uri.path(),
        action = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or(""),
        status = response.status().as_u16(),
        "request"
    );
}

/// Records a request rejected by authentication.
pub fn denied(parts: &Parts, error: &AuthFailure) {
    tracing::warn!(
        target: "fhirlake::audit",
        method = %parts.method,
        path = %parts.uri.path(),
        reason = error.aws_error_type(),
        "request denied"
    );
}
