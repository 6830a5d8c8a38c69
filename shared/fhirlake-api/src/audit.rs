//! The audit trail: one structured record per request, on the `fhirlake::audit` tracing target.
//! Records name who (access key id), what (method, path) and the outcome (status); they never
//! contain bodies, query values or headers other than the principal, so no PHI reaches the log.

use axum::response::Response;
use fhirlake_auth::{AuthError, Principal};
use http::request::Parts;

/// Records a completed request.
pub fn completed(principal: &Principal, parts: &Parts, response: &Response) {
    tracing::info!(
        target: "fhirlake::audit",
        principal = %principal.access_key_id,
        method = %parts.method,
        path = %parts.uri.path(),
        action = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or(""),
        status = response.status().as_u16(),
        "request"
    );
}

/// Records a request rejected by authentication.
pub fn denied(parts: &Parts, error: &AuthError) {
    tracing::warn!(
        target: "fhirlake::audit",
        method = %parts.method,
        path = %parts.uri.path(),
        reason = error.aws_error_type(),
        "request denied"
    );
}
