//! Authentication of every request, before routing: AWS SigV4 for the service `healthlake`.

use std::sync::Arc;

use chrono::Utc;
use fhirlake_auth::{AuthError, CredentialStore, HttpRequest, Payload, Principal, Verifier};
use http::request::Parts;

/// Verifies SigV4 signatures against a credential store.
pub struct RequestAuthenticator {
    verifier: Verifier,
    credentials: Arc<dyn CredentialStore>,
}

impl RequestAuthenticator {
    /// Accepts requests signed for `region` with keys from `credentials`.
    pub fn sigv4(region: &str, credentials: Arc<dyn CredentialStore>) -> Self {
        RequestAuthenticator { verifier: Verifier::new(region), credentials }
    }

    /// Verifies the request's signature over its method, path, query, headers and body.
    pub fn authenticate(&self, parts: &Parts, body: &[u8]) -> Result<Principal, AuthError> {
        let headers: Vec<(&str, &[u8])> = parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        let request =
            HttpRequest::new(parts.method.as_str(), parts.uri.path(), parts.uri.query().unwrap_or(""), &headers, Payload::Bytes(body));
        self.verifier.verify(&request, Utc::now(), self.credentials.as_ref())
    }
}
