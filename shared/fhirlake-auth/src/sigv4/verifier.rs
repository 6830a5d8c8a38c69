//! Checking a SigV4-signed request.
//!
//! The checks run cheapest first: the signature must be present and well formed
//! ([`AuthError::Missing`], [`AuthError::Malformed`]), its scope must name this service, this
//! region and the request's own date ([`AuthError::WrongScope`]), the signing time must be
//! within the allowed skew of `now` ([`AuthError::Expired`]), the access key must be known
//! ([`AuthError::UnknownAccessKey`]), and finally the signature must match
//! ([`AuthError::SignatureMismatch`]), compared in constant time.

use chrono::{DateTime, Duration, Utc};

use super::canonical::{self, QueryStyle, UNSIGNED_PAYLOAD};
use super::parse::{self, SignatureInfo, SIGNATURE_PARAM};
use super::signing_key::{self, SigningKeyCache};
use super::{DEFAULT_MAX_SKEW_SECONDS, SERVICE};
use crate::request::SingleHeader;
use crate::{AuthError, CredentialStore, HttpRequest, Payload};

/// Who signed an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The access key id whose secret produced the signature.
    pub access_key_id: String,
    /// When the client signed the request.
    pub signed_at: DateTime<Utc>,
    /// True when the signature came from presigned query parameters.
    pub presigned: bool,
}

/// Verifies SigV4 signatures for one service in one region.
///
/// Holds a cache of derived signing keys, so keep one verifier for the life of the server.
#[derive(Debug)]
pub struct Verifier {
    region: String,
    service: String,
    max_skew: Duration,
    allow_unsigned_payload: bool,
    keys: SigningKeyCache,
}

impl Verifier {
    /// A verifier for service `healthlake` in `region`, allowing 15 minutes of clock skew and
    /// requiring the body to be signed.
    pub fn new(region: impl Into<String>) -> Self {
        Verifier {
            region: region.into(),
            service: SERVICE.to_string(),
            max_skew: Duration::seconds(DEFAULT_MAX_SKEW_SECONDS),
            allow_unsigned_payload: false,
            keys: SigningKeyCache::default(),
        }
    }

    /// Verifies signatures scoped to `service` instead of `healthlake` (e.g. `execute-api`).
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Sets how far a signing time may be from the server's clock.
    pub fn with_max_skew(mut self, max_skew: Duration) -> Self {
        self.max_skew = max_skew;
        self
    }

    /// Accepts `x-amz-content-sha256: UNSIGNED-PAYLOAD`, leaving the body unauthenticated.
    /// Off by default: AWS clients sign the body of every request to a non-S3 service.
    pub fn allow_unsigned_payload(mut self, allow: bool) -> Self {
        self.allow_unsigned_payload = allow;
        self
    }

    /// The region this verifier accepts.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The service this verifier accepts.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Authenticates `request` at time `now` against the secrets in `store`.
    pub fn verify<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        request: &HttpRequest<'_, N, V>,
        now: DateTime<Utc>,
        store: &dyn CredentialStore,
    ) -> Result<Principal, AuthError> {
        let info = parse::signature_info(request)?;
        self.check_scope(&info)?;
        self.check_time(&info, now)?;
        let secret = store.secret_for(&info.access_key_id).ok_or(AuthError::UnknownAccessKey)?;

        let payload_hash = self.payload_hash(request)?;
        let canonical_headers = canonical_headers(request, &info)?;
        let canonical_uri = canonical::canonical_uri(request.path);
        let key = self.keys.get(&secret, &info.scope);
        let exclude = info.expires_in.map(|_| SIGNATURE_PARAM);

        let mut tried: Vec<String> = Vec::with_capacity(QueryStyle::ALL.len());
        for style in QueryStyle::ALL {
            let query = canonical::canonical_query(request.query, style, exclude);
            if tried.contains(&query) {
                continue;
            }
            let canonical_request = canonical::canonical_request(
                request.method,
                &canonical_uri,
                &query,
                &canonical_headers,
                &info.signed_headers,
                &payload_hash,
            );
            let string_to_sign = canonical::string_to_sign(&info.timestamp, &info.scope, &canonical_request);
            if signing_key::verify(&key, &string_to_sign, &info.signature) {
                return Ok(Principal {
                    access_key_id: info.access_key_id,
                    signed_at: info.signed_at,
                    presigned: info.expires_in.is_some(),
                });
            }
            tried.push(query);
        }
        Err(AuthError::SignatureMismatch)
    }

    pub(super) fn check_scope(&self, info: &SignatureInfo) -> Result<(), AuthError> {
        if info.scope.service != self.service {
            return Err(AuthError::WrongScope("credential scope names another service"));
        }
        if info.scope.region != self.region {
            return Err(AuthError::WrongScope("credential scope names another region"));
        }
        if !info.timestamp.starts_with(&info.scope.date) {
            return Err(AuthError::WrongScope("credential scope date does not match the signing date"));
        }
        Ok(())
    }

    pub(super) fn check_time(&self, info: &SignatureInfo, now: DateTime<Utc>) -> Result<(), AuthError> {
        let too_early = info.signed_at - now > self.max_skew;
        let too_late = match info.expires_in {
            None => now - info.signed_at > self.max_skew,
            Some(seconds) => now - info.signed_at > Duration::seconds(seconds),
        };
        if too_early || too_late {
            return Err(AuthError::Expired);
        }
        Ok(())
    }

    /// The payload hash that enters the canonical request, checked against the body.
    fn payload_hash<N: AsRef<[u8]>, V: AsRef<[u8]>>(&self, request: &HttpRequest<'_, N, V>) -> Result<String, AuthError> {
        let actual = || match request.payload {
            Payload::Bytes(body) => canonical::sha256_hex(body),
            Payload::Sha256Hex(hash) => hash.to_ascii_lowercase(),
        };
        match self.declared_payload_hash(request)? {
            None => Ok(actual()),
            Some(declared) if declared == UNSIGNED_PAYLOAD => Ok(declared.to_string()),
            Some(declared) if declared.eq_ignore_ascii_case(&actual()) => Ok(declared.to_string()),
            Some(_) => Err(AuthError::SignatureMismatch),
        }
    }

    /// The `x-amz-content-sha256` header when the request carries one: 64 hex digits, or
    /// `UNSIGNED-PAYLOAD` when this verifier accepts unsigned payloads. Needs no body.
    pub(super) fn declared_payload_hash<'r, N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        request: &HttpRequest<'r, N, V>,
    ) -> Result<Option<&'r str>, AuthError> {
        match request.single_header("x-amz-content-sha256") {
            SingleHeader::Absent => Ok(None),
            SingleHeader::Repeated => Err(AuthError::Malformed("more than one x-amz-content-sha256 header")),
            SingleHeader::One(declared) => {
                let declared = std::str::from_utf8(declared).map_err(|_| AuthError::Malformed("x-amz-content-sha256 is not text"))?.trim();
                if declared == UNSIGNED_PAYLOAD {
                    return if self.allow_unsigned_payload {
                        Ok(Some(declared))
                    } else {
                        Err(AuthError::Malformed("unsigned payloads are not accepted"))
                    };
                }
                if declared.len() != 64 || !declared.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(AuthError::Malformed("unsupported x-amz-content-sha256 value"));
                }
                Ok(Some(declared))
            }
        }
    }
}

/// One `name:value\n` line per signed header, in the order of `SignedHeaders`.
fn canonical_headers<N: AsRef<[u8]>, V: AsRef<[u8]>>(request: &HttpRequest<'_, N, V>, info: &SignatureInfo) -> Result<String, AuthError> {
    let mut out = String::with_capacity(256);
    for name in info.signed_header_names() {
        out.push_str(name);
        out.push(':');
        let mut found = false;
        for value in request.header_values(name) {
            let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed("a signed header is not text"))?;
            if found {
                out.push(',');
            }
            out.push_str(&canonical::trim_all(value));
            found = true;
        }
        if !found {
            return Err(AuthError::Malformed("a signed header is missing from the request"));
        }
        out.push('\n');
    }
    Ok(out)
}
