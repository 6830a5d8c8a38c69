//! Authentication of every request, before routing. Two modes:
//!
//! - **SigV4** ([`RequestAuthenticator::sigv4`]): the router verifies the AWS Signature Version 4
//!   of the request for the service `healthlake` itself, over the method, path, query, headers
//!   and body. `fhirlake serve` and the Lambda functions in HealthLake mode use it. When a
//!   request names an access key the store does not know, a [`CredentialRefresh`] (if given)
//!   may reload the store once before the request is refused, so rotated keys are picked up
//!   without a restart.
//! - **Gateway** ([`RequestAuthenticator::trusting_gateway`]): an API Gateway in front has
//!   already authenticated the caller (the `AWS_IAM` authorizer verifies an `execute-api`
//!   signature). The principal comes from a [`GatewayPrincipal`] request extension, which only
//!   the Lambda host inserts (an HTTP client cannot set an extension); without one the request
//!   is refused.
//!
//! Either way the result is a [`Caller`] whose principal the audit trail records.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use fhirlake_auth::{AuthError, CredentialStore, HttpRequest, Payload, Verifier};
use fhirlake_core::access::Access;
use http::request::Parts;

/// Reloads a credential store on demand, e.g. from a secret that was rotated.
#[async_trait]
pub trait CredentialRefresh: Send + Sync {
    /// Reloads the store the authenticator reads, if the implementation's own rate limit
    /// allows it now. Returns `true` when the store was reloaded (a retry may now succeed),
    /// `false` when it was not (rate-limited or failed; failures are logged by the
    /// implementation). Must never block for long: it runs on the request path.
    async fn refresh(&self) -> bool;
}

/// The principal an API Gateway authorizer established for a request, as a request
/// extension. Only a host that received the request from API Gateway (the Lambda functions)
/// inserts it; HTTP clients cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPrincipal(String);

impl GatewayPrincipal {
    /// A principal, such as the caller's IAM ARN (`requestContext.authorizer.iam.userArn`).
    pub fn new(principal: impl Into<String>) -> Self {
        GatewayPrincipal(principal.into())
    }

    /// The principal.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// A SigV4 signature the router verified.
    SigV4,
    /// API Gateway's IAM authorizer.
    Iam,
    /// A SMART on FHIR bearer token.
    Smart,
    /// None: the public SMART discovery document.
    None,
}

impl Authentication {
    /// The name the audit trail records.
    pub fn as_str(self) -> &'static str {
        match self {
            Authentication::SigV4 => "sigv4",
            Authentication::Iam => "iam",
            Authentication::Smart => "smart",
            Authentication::None => "none",
        }
    }
}

/// Who made an authenticated request, and what it may touch.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The access key id of a SigV4 signature, the principal the gateway named, or a SMART
    /// token's subject (its client id when it has none).
    pub principal: String,
    /// A SMART token's client id.
    pub client_id: Option<String>,
    /// How the caller was authenticated.
    pub authentication: Authentication,
    /// What the caller may touch on the data plane.
    pub access: Access,
}

impl Caller {
    /// A caller with the whole datastore in reach (SigV4, IAM).
    pub fn full(principal: impl Into<String>, authentication: Authentication) -> Caller {
        Caller { principal: principal.into(), client_id: None, authentication, access: Access::Full }
    }
}

/// Why a request was refused. Every variant is answered with 403 in the plane's dialect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The SigV4 signature did not verify.
    #[error(transparent)]
    SigV4(#[from] AuthError),
    /// The gateway mode found no principal: the request did not come through an authorizer.
    #[error("the request was not authenticated by the api gateway")]
    NoGatewayPrincipal,
}

impl AuthFailure {
    /// The `__type` of the control plane's AWS JSON error for this failure.
    pub fn aws_error_type(&self) -> &'static str {
        match self {
            AuthFailure::SigV4(e) => e.aws_error_type(),
            AuthFailure::NoGatewayPrincipal => "AccessDeniedException",
        }
    }
}

enum Mode {
    SigV4 { verifier: Verifier, credentials: Arc<dyn CredentialStore>, refresh: Option<Arc<dyn CredentialRefresh>> },
    Gateway,
}

/// Authenticates requests in one of the two modes of the module documentation.
pub struct RequestAuthenticator {
    mode: Mode,
}

impl RequestAuthenticator {
    /// Verifies SigV4 signatures for service `healthlake` in `region` with keys from
    /// `credentials`.
    pub fn sigv4(region: &str, credentials: Arc<dyn CredentialStore>) -> Self {
        RequestAuthenticator { mode: Mode::SigV4 { verifier: Verifier::new(region), credentials, refresh: None } }
    }

    /// In SigV4 mode, asks `refresh` to reload the credential store when a request names an
    /// unknown access key, then verifies that request once more. No effect in gateway mode.
    pub fn with_refresh(mut self, refresh: Arc<dyn CredentialRefresh>) -> Self {
        if let Mode::SigV4 { refresh: slot, .. } = &mut self.mode {
            *slot = Some(refresh);
        }
        self
    }

    /// Trusts the [`GatewayPrincipal`] extension the host inserted, and refuses requests
    /// without one. Only for hosts behind an API Gateway authorizer.
    pub fn trusting_gateway() -> Self {
        RequestAuthenticator { mode: Mode::Gateway }
    }

    /// Authenticates a request from its parts and its whole body.
    pub async fn authenticate(&self, parts: &Parts, body: &[u8]) -> Result<Caller, AuthFailure> {
        match &self.mode {
            Mode::Gateway => match parts.extensions.get::<GatewayPrincipal>() {
                Some(principal) if !principal.as_str().is_empty() => Ok(Caller::full(principal.as_str(), Authentication::Iam)),
                _ => Err(AuthFailure::NoGatewayPrincipal),
            },
            Mode::SigV4 { verifier, credentials, refresh } => {
                let headers: Vec<(&str, &[u8])> = parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
                let request = HttpRequest::new(
                    parts.method.as_str(),
                    parts.uri.path(),
                    parts.uri.query().unwrap_or(""),
                    &headers,
                    Payload::Bytes(body),
                );
                let verified = match verifier.verify(&request, Utc::now(), credentials.as_ref()) {
                    Err(AuthError::UnknownAccessKey) => match refresh {
                        Some(refresh) if refresh.refresh().await => verifier.verify(&request, Utc::now(), credentials.as_ref()),
                        _ => Err(AuthError::UnknownAccessKey),
                    },
                    other => other,
                };
                Ok(Caller::full(verified?.access_key_id, Authentication::SigV4))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::RwLock;

    use fhirlake_auth::{Credentials, Secret, Signer, StaticCredentials};

    use super::*;

    fn parts(headers: &[(String, String)]) -> Parts {
        let mut builder = http::Request::builder().method("GET").uri("/datastore/abc/r4/metadata");
        for (n, v) in headers {
            builder = builder.header(n.as_str(), v.as_str());
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn signed(access_key_id: &str, secret: &str) -> Vec<(String, String)> {
        let mut headers = vec![("host".to_string(), "fhirlake.test".to_string())];
        let request = HttpRequest::new("GET", "/datastore/abc/r4/metadata", "", &headers, Payload::Bytes(b""));
        let signed = Signer::new("us-east-1").sign(&Credentials::new(access_key_id, secret), &request, Utc::now()).unwrap();
        headers.extend(signed.headers());
        headers
    }

    /// A store whose one key pair can be swapped, and a refresh that swaps it in.
    struct Rotating {
        current: RwLock<StaticCredentials>,
        next: StaticCredentials,
        calls: AtomicUsize,
    }

    impl CredentialStore for Rotating {
        fn secret_for(&self, access_key_id: &str) -> Option<Secret> {
            self.current.read().unwrap().secret_for(access_key_id)
        }
    }

    #[async_trait]
    impl CredentialRefresh for Rotating {
        async fn refresh(&self) -> bool {
            self.calls.fetch_add(1, Ordering::SeqCst);
            *self.current.write().unwrap() = self.next.clone();
            true
        }
    }

    #[tokio::test]
    async fn sigv4_mode_verifies_and_names_the_key() {
        let auth = RequestAuthenticator::sigv4("us-east-1", Arc::new(StaticCredentials::new("AKID1", "s1")));
        let caller = auth.authenticate(&parts(&signed("AKID1", "s1")), b"").await.unwrap();
        assert_eq!(caller.principal, "AKID1");
        let err = auth.authenticate(&parts(&signed("AKID1", "wrong")), b"").await.unwrap_err();
        assert_eq!(err, AuthFailure::SigV4(AuthError::SignatureMismatch));
        assert_eq!(err.aws_error_type(), "InvalidSignatureException");
    }

    #[tokio::test]
    async fn sigv4_mode_ignores_a_gateway_principal() {
        let auth = RequestAuthenticator::sigv4("us-east-1", Arc::new(StaticCredentials::new("AKID1", "s1")));
        let mut unsigned = parts(&[("host".into(), "fhirlake.test".into())]);
        unsigned.extensions.insert(GatewayPrincipal::new("arn:aws:iam::123456789012:user/alice"));
        assert_eq!(auth.authenticate(&unsigned, b"").await.unwrap_err(), AuthFailure::SigV4(AuthError::Missing));
    }

    #[tokio::test]
    async fn an_unknown_key_triggers_one_refresh() {
        let rotating = Arc::new(Rotating {
            current: RwLock::new(StaticCredentials::new("AKIDOLD", "old")),
            next: StaticCredentials::new("AKIDNEW", "new"),
            calls: AtomicUsize::new(0),
        });
        let auth = RequestAuthenticator::sigv4("us-east-1", rotating.clone()).with_refresh(rotating.clone());
        assert_eq!(auth.authenticate(&parts(&signed("AKIDNEW", "new")), b"").await.unwrap().principal, "AKIDNEW");
        assert_eq!(rotating.calls.load(Ordering::SeqCst), 1);
        // A known key with a bad signature never refreshes.
        assert!(auth.authenticate(&parts(&signed("AKIDNEW", "bad")), b"").await.is_err());
        assert_eq!(rotating.calls.load(Ordering::SeqCst), 1);
        // An unknown key is refused after the refresh.
        let err = auth.authenticate(&parts(&signed("AKIDOLD", "old")), b"").await.unwrap_err();
        assert_eq!(err, AuthFailure::SigV4(AuthError::UnknownAccessKey));
        assert_eq!(rotating.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn gateway_mode_takes_the_principal_from_the_extension_only() {
        let auth = RequestAuthenticator::trusting_gateway();
        let mut with = parts(&[]);
        with.extensions.insert(GatewayPrincipal::new("arn:aws:iam::123456789012:user/alice"));
        assert_eq!(auth.authenticate(&with, b"").await.unwrap().principal, "arn:aws:iam::123456789012:user/alice");

        // A valid SigV4 signature is no substitute for the gateway's principal.
        let err = auth.authenticate(&parts(&signed("AKID1", "s1")), b"").await.unwrap_err();
        assert_eq!(err, AuthFailure::NoGatewayPrincipal);
        assert_eq!(err.aws_error_type(), "AccessDeniedException");
        let mut empty = parts(&[]);
        empty.extensions.insert(GatewayPrincipal::new(""));
        assert_eq!(auth.authenticate(&empty, b"").await.unwrap_err(), AuthFailure::NoGatewayPrincipal);
    }
}
