//! Why a request was not authenticated.
//!
//! Every variant maps to HTTP 403 at fhirlake's edges; [`AuthError::aws_error_type`] gives the
//! `__type` AWS services use for the same failure, for the control plane's JSON errors.
//! Messages are short, lowercase, and never echo a secret, a signature or a request body.

/// A failed authentication. The message (`Display`) is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header and no presigned query parameters: the request is unsigned.
    #[error("missing authentication token")]
    Missing,
    /// The signature information is present but cannot be parsed or is incomplete.
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    /// The access key id is not known to the credential store.
    #[error("the security token included in the request is invalid")]
    UnknownAccessKey,
    /// The signature does not match the one computed for this request.
    #[error("the request signature we calculated does not match the signature you provided")]
    SignatureMismatch,
    /// The signing time is too far from the server's clock, or a presigned request expired.
    #[error("signature expired or not yet valid: the signing time is outside the allowed window")]
    Expired,
    /// The credential scope names another service, region or date than the request's.
    #[error("credential scope is wrong: {0}")]
    WrongScope(&'static str),
}

impl AuthError {
    /// The `__type` an AWS JSON service returns for this failure.
    pub fn aws_error_type(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Malformed(_) => "IncompleteSignatureException",
            AuthError::UnknownAccessKey => "UnrecognizedClientException",
            AuthError::SignatureMismatch | AuthError::Expired | AuthError::WrongScope(_) => "InvalidSignatureException",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let all = [
            AuthError::Missing,
            AuthError::Malformed("bad credential"),
            AuthError::UnknownAccessKey,
            AuthError::SignatureMismatch,
            AuthError::Expired,
            AuthError::WrongScope("service must be healthlake"),
        ];
        for e in all {
            let m = e.to_string();
            assert_eq!(m, m.to_lowercase(), "{m}");
            assert!(!m.ends_with('.'), "{m}");
            assert!(e.aws_error_type().ends_with("Exception"));
        }
    }
}
