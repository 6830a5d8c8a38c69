//! Signing requests with SigV4, for fhirlake's own clients, tests and benchmarks.
//!
//! Signs like botocore: every header given except the hop-by-hop and tracing headers botocore
//! leaves out, plus an `x-amz-date` it adds; the body hash is `x-amz-content-sha256` when the
//! request carries one, else computed. The query is canonicalised with RFC 3986, which every
//! SigV4 verifier (AWS's and fhirlake's) computes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::canonical::{self, CredentialScope, QueryStyle};
use super::signing_key::{self, SigningKeyCache};
use super::{timestamp, ALGORITHM, SERVICE};
use crate::{AuthError, Credentials, HttpRequest, Payload};

/// Headers botocore never signs: hop-by-hop, proxy, tracing and user-agent headers.
const UNSIGNED_HEADERS: &[&str] = &[
    "authorization",
    "baggage",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "traceparent",
    "tracestate",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amz-date",
    "x-amzn-trace-id",
];

/// The headers a signature adds to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// The `x-amz-date` header value.
    pub x_amz_date: String,
    /// The `authorization` header value.
    pub authorization: String,
}

impl SignedHeaders {
    /// Both headers as (name, value) pairs, ready to add to the request.
    pub fn headers(&self) -> [(String, String); 2] {
        [("x-amz-date".to_string(), self.x_amz_date.clone()), ("authorization".to_string(), self.authorization.clone())]
    }
}

/// Signs requests for one service in one region.
#[derive(Debug)]
pub struct Signer {
    region: String,
    service: String,
    keys: SigningKeyCache,
}

impl Signer {
    /// A signer for service `healthlake` in `region`.
    pub fn new(region: impl Into<String>) -> Self {
        Signer { region: region.into(), service: SERVICE.to_string(), keys: SigningKeyCache::default() }
    }

    /// Signs for `service` instead of `healthlake`.
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Signs `request` as of `now`. The request must carry a `host` header (with the port when
    /// it is not the scheme's default), exactly as it will be sent; any `authorization` or
    /// `x-amz-date` header in it is ignored and must be replaced by the returned ones.
    pub fn sign<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        credentials: &Credentials,
        request: &HttpRequest<'_, N, V>,
        now: DateTime<Utc>,
    ) -> Result<SignedHeaders, AuthError> {
        let x_amz_date = timestamp::format(now);
        let scope = CredentialScope { date: x_amz_date[..8].to_string(), region: self.region.clone(), service: self.service.clone() };

        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in request.headers {
            let name = String::from_utf8_lossy(name.as_ref()).trim().to_ascii_lowercase();
            if UNSIGNED_HEADERS.contains(&name.as_str()) {
                continue;
            }
            let value = std::str::from_utf8(value.as_ref()).map_err(|_| AuthError::Malformed("a header to sign is not text"))?;
            headers.entry(name).or_default().push(canonical::trim_all(value));
        }
        if !headers.contains_key("host") {
            return Err(AuthError::Malformed("the host header must be signed"));
        }
        headers.insert("x-amz-date".to_string(), vec![x_amz_date.clone()]);

        let mut canonical_headers = String::with_capacity(256);
        for (name, values) in &headers {
            canonical_headers.push_str(name);
            canonical_headers.push(':');
            canonical_headers.push_str(&values.join(","));
            canonical_headers.push('\n');
        }
        let signed_headers = headers.keys().map(String::as_str).collect::<Vec<_>>().join(";");
        let payload_hash = match headers.get("x-amz-content-sha256").and_then(|v| v.first()) {
            Some(declared) => declared.clone(),
            None => match request.payload {
                Payload::Bytes(body) => canonical::sha256_hex(body),
                Payload::Sha256Hex(hash) => hash.to_ascii_lowercase(),
            },
        };
        let canonical_request = canonical::canonical_request(
            request.method,
            &canonical::canonical_uri(request.path),
            &canonical::canonical_query(request.query, QueryStyle::Rfc3986, None),
            &canonical_headers,
            &signed_headers,
            &payload_hash,
        );
        let string_to_sign = canonical::string_to_sign(&x_amz_date, &scope, &canonical_request);
        let signature = signing_key::sign(&self.keys.get(&credentials.secret, &scope), &string_to_sign);
        let authorization =
            format!("{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}", credentials.access_key_id);
        Ok(SignedHeaders { x_amz_date, authorization })
    }
}
