//! Why a bearer token was not accepted, and what the HTTP layer answers.
//!
//! Every failure of this crate is a [`SmartError`]. The HTTP layer maps it with
//! [`SmartError::http_status`] and, for the statuses that carry one, adds the RFC 6750
//! `WWW-Authenticate` value from [`SmartError::www_authenticate`]:
//!
//! | variant | status | `WWW-Authenticate` |
//! | --- | --- | --- |
//! | [`MissingToken`](SmartError::MissingToken) | 401 | `Bearer realm="fhirlake"` (no error code, RFC 6750 §3.1) |
//! | [`Malformed`](SmartError::Malformed), [`TokenTooLarge`](SmartError::TokenTooLarge), [`DisallowedAlgorithm`](SmartError::DisallowedAlgorithm), [`UnknownKey`](SmartError::UnknownKey), [`BadSignature`](SmartError::BadSignature), [`Expired`](SmartError::Expired), [`NotYetValid`](SmartError::NotYetValid), [`WrongIssuer`](SmartError::WrongIssuer), [`WrongAudience`](SmartError::WrongAudience), [`InvalidClaim`](SmartError::InvalidClaim) | 401 | `error="invalid_token"` |
//! | [`InsufficientScope`](SmartError::InsufficientScope) | 403 | `error="insufficient_scope"` |
//! | [`MissingLaunchContext`](SmartError::MissingLaunchContext) | 403 | none |
//! | [`KeysUnavailable`](SmartError::KeysUnavailable), [`IntrospectionUnavailable`](SmartError::IntrospectionUnavailable) | 503 | none |
//! | [`Config`](SmartError::Config) | 500 | none |
//!
//! Messages are short, lowercase, without a trailing period, and built only from static text:
//! they never contain the token, a claim value, a key or anything about a patient, so they are
//! safe to return to the client and to log.

/// The HTTP status family of a [`SmartError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmartErrorKind {
    /// 401: no usable token; the client should get a new one.
    Unauthorized,
    /// 403: a valid token that does not allow this request.
    Forbidden,
    /// 503: the issuer's signing keys could not be fetched, or the token-validation function
    /// gave no answer; try again later.
    Unavailable,
    /// 500: fhirlake itself is misconfigured.
    Internal,
}

/// A bearer token that was not accepted. The message (`Display`) is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmartError {
    /// No bearer token in the request.
    #[error("missing bearer token")]
    MissingToken,
    /// The token is not a compact JWS with a parseable header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The token is longer than [`MAX_TOKEN_BYTES`](crate::MAX_TOKEN_BYTES).
    #[error("token too large")]
    TokenTooLarge,
    /// The header names an algorithm other than RS256 or ES256 (`none` and every HS* included).
    #[error("token signing algorithm not allowed")]
    DisallowedAlgorithm,
    /// The issuer publishes no usable key for the token's `kid` and algorithm.
    #[error("no usable signing key for the token")]
    UnknownKey,
    /// The signature does not verify with the issuer's key.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future, beyond the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not name this datastore's FHIR endpoint.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A claim is missing or has the wrong shape; the text names the claim, never its value.
    #[error("invalid token claim: {0}")]
    InvalidClaim(&'static str),
    /// The token is valid but its scopes do not allow the request.
    #[error("insufficient scope")]
    InsufficientScope,
    /// The token has `patient/` scopes but no launch patient, so patient compartments are unknown.
    #[error("patient scopes require a launch patient")]
    MissingLaunchContext,
    /// The issuer's JWKS could not be fetched or read.
    #[error("issuer signing keys unavailable: {0}")]
    KeysUnavailable(&'static str),
    /// The token-validation function (a datastore's `IdpLambdaArn`, or its local stand-in) could
    /// not be asked, did not answer within the budget, failed, or answered something unreadable:
    /// the token was not judged at all.
    #[error("token introspection unavailable: {0}")]
    IntrospectionUnavailable(&'static str),
    /// fhirlake's SMART configuration is unusable (for example a plain-http JWKS URI).
    #[error("smart configuration error: {0}")]
    Config(&'static str),
}

impl SmartError {
    /// The HTTP status family of this failure (see the table in the module doc).
    pub fn kind(&self) -> SmartErrorKind {
        match self {
            SmartError::MissingToken
            | SmartError::Malformed(_)
            | SmartError::TokenTooLarge
            | SmartError::DisallowedAlgorithm
            | SmartError::UnknownKey
            | SmartError::BadSignature
            | SmartError::Expired
            | SmartError::NotYetValid
            | SmartError::WrongIssuer
            | SmartError::WrongAudience
            | SmartError::InvalidClaim(_) => SmartErrorKind::Unauthorized,
            SmartError::InsufficientScope | SmartError::MissingLaunchContext => SmartErrorKind::Forbidden,
            SmartError::KeysUnavailable(_) | SmartError::IntrospectionUnavailable(_) => SmartErrorKind::Unavailable,
            SmartError::Config(_) => SmartErrorKind::Internal,
        }
    }

    /// The HTTP status code of this failure: 401, 403, 503 or 500.
    pub fn http_status(&self) -> u16 {
        match self.kind() {
            SmartErrorKind::Unauthorized => 401,
            SmartErrorKind::Forbidden => 403,
            SmartErrorKind::Unavailable => 503,
            SmartErrorKind::Internal => 500,
        }
    }

    /// The RFC 6750 `WWW-Authenticate` header value for this failure, if its status carries one.
    ///
    /// Every 401 gets one (`invalid_token`, or no error code when the token is missing);
    /// [`InsufficientScope`](SmartError::InsufficientScope) gets `insufficient_scope` as RFC 6750
    /// §3.1 suggests for a 403. The description is this error's message, which holds no token
    /// contents.
    pub fn www_authenticate(&self) -> Option<String> {
        let code = match self {
            SmartError::MissingToken => return Some(format!("Bearer realm=\"{REALM}\"")),
            SmartError::InsufficientScope => "insufficient_scope",
            _ if self.kind() == SmartErrorKind::Unauthorized => "invalid_token",
            _ => return None,
        };
        Some(format!("Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{self}\""))
    }
}

/// The `realm` of every `WWW-Authenticate` challenge fhirlake sends.
const REALM: &str = "fhirlake";

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<SmartError> {
        vec![
            SmartError::MissingToken,
            SmartError::Malformed("header is not base64url"),
            SmartError::TokenTooLarge,
            SmartError::DisallowedAlgorithm,
            SmartError::UnknownKey,
            SmartError::BadSignature,
            SmartError::Expired,
            SmartError::NotYetValid,
            SmartError::WrongIssuer,
            SmartError::WrongAudience,
            SmartError::InvalidClaim("exp"),
            SmartError::InsufficientScope,
            SmartError::MissingLaunchContext,
            SmartError::KeysUnavailable("jwks fetch timed out"),
            SmartError::IntrospectionUnavailable("introspection timed out"),
            SmartError::Config("jwks uri must use https"),
        ]
    }

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        for e in all() {
            let m = e.to_string();
            assert_eq!(m, m.to_lowercase(), "{m}");
            assert!(!m.ends_with('.'), "{m}");
            assert!(!m.contains('"'), "a quote would break the quoted-string of www-authenticate: {m}");
        }
    }

    #[test]
    fn statuses_follow_the_table() {
        assert_eq!(SmartError::Expired.http_status(), 401);
        assert_eq!(SmartError::UnknownKey.http_status(), 401);
        assert_eq!(SmartError::Malformed("x").http_status(), 401);
        assert_eq!(SmartError::InsufficientScope.http_status(), 403);
        assert_eq!(SmartError::MissingLaunchContext.http_status(), 403);
        assert_eq!(SmartError::KeysUnavailable("x").http_status(), 503);
        assert_eq!(SmartError::IntrospectionUnavailable("x").http_status(), 503);
        assert_eq!(SmartError::Config("x").http_status(), 500);
    }

    #[test]
    fn www_authenticate_for_401_and_insufficient_scope_only() {
        for e in all() {
            let header = e.www_authenticate();
            match e.http_status() {
                401 => {
                    let h = header.expect("every 401 has a challenge");
                    assert!(h.starts_with("Bearer realm=\"fhirlake\""), "{h}");
                    if e != SmartError::MissingToken {
                        assert!(h.contains("error=\"invalid_token\""), "{h}");
                    }
                }
                403 if e == SmartError::InsufficientScope => {
                    assert!(header.unwrap().contains("error=\"insufficient_scope\""))
                }
                _ => assert_eq!(header, None, "{e}"),
            }
        }
        assert_eq!(
            SmartError::Expired.www_authenticate().unwrap(),
            "Bearer realm=\"fhirlake\", error=\"invalid_token\", error_description=\"token expired\""
        );
        assert_eq!(SmartError::MissingToken.www_authenticate().unwrap(), "Bearer realm=\"fhirlake\"");
    }
}
