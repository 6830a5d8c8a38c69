//! The part of SigV4 verification that needs no body, for a gatekeeper that never sees it: an
//! API Gateway Lambda authorizer receives a request's method, path, query and headers, but not
//! its body, so it cannot compute the signature. It can still turn away everything that could
//! never verify, before the request costs a function invocation.
//!
//! [`Verifier::precheck`] runs, in this order, the verifier's own checks that do not involve the
//! body or the secret's signature:
//!
//! 1. an `Authorization` header of the `AWS4-HMAC-SHA256` scheme, well formed (the same parser
//!    the verifier uses): [`AuthError::Missing`], [`AuthError::Malformed`];
//! 2. `host` and `x-amz-date` among `SignedHeaders`, and exactly one `X-Amz-Date` header (a
//!    gatekeeper does not accept the `Date` fallback): [`AuthError::Malformed`];
//! 3. the credential scope names this verifier's service and region and the signing date:
//!    [`AuthError::WrongScope`];
//! 4. the signing time within the allowed skew of `now`: [`AuthError::Expired`];
//! 5. a well-formed `x-amz-content-sha256`, if any, and no unsigned payload unless allowed:
//!    [`AuthError::Malformed`];
//! 6. the access key id known to the store: [`AuthError::UnknownAccessKey`].
//!
//! A request that passes may still fail [`Verifier::verify`]; one that fails never passes it
//! (presigned URLs aside: they carry no `Authorization` header, so a pre-check refuses them).

use chrono::{DateTime, Utc};

use super::parse;
use super::verifier::Verifier;
use crate::request::SingleHeader;
use crate::{AuthError, CredentialStore, HttpRequest};

/// What a pre-check established about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prechecked {
    /// The access key id named by the credential scope, known to the store.
    pub access_key_id: String,
    /// When the client says it signed the request (`X-Amz-Date`).
    pub signed_at: DateTime<Utc>,
}

impl Verifier {
    /// Runs every check of [`Verifier::verify`] that needs neither the body nor the signature
    /// computation (see the module documentation for the list and the errors).
    pub fn precheck<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        request: &HttpRequest<'_, N, V>,
        now: DateTime<Utc>,
        store: &dyn CredentialStore,
    ) -> Result<Prechecked, AuthError> {
        if request.single_header("authorization") == SingleHeader::Absent {
            return Err(AuthError::Missing);
        }
        let info = parse::signature_info(request)?;
        if !info.signed_header_names().any(|name| name == "x-amz-date") {
            return Err(AuthError::Malformed("the x-amz-date header must be signed"));
        }
        if !matches!(request.single_header("x-amz-date"), SingleHeader::One(_)) {
            return Err(AuthError::Malformed("the request must carry exactly one x-amz-date header"));
        }
        self.check_scope(&info)?;
        self.check_time(&info, now)?;
        self.declared_payload_hash(request)?;
        if store.secret_for(&info.access_key_id).is_none() {
            return Err(AuthError::UnknownAccessKey);
        }
        Ok(Prechecked { access_key_id: info.access_key_id, signed_at: info.signed_at })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::{Credentials, Payload, Signer, StaticCredentials};

    const REGION: &str = "us-east-1";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn store() -> StaticCredentials {
        StaticCredentials::new("AKIDPRECHECK", "precheck-secret")
    }

    /// A GET signed by fhirlake's signer at `at`, as (name, value) headers.
    fn signed_headers(region: &str, service: &str, at: DateTime<Utc>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = vec![("host".into(), "api.example.com".into())];
        headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let request = HttpRequest::new("GET", "/datastore/abc/r4/Patient/1", "", &headers, Payload::Bytes(b""));
        let signed =
            Signer::new(region).with_service(service).sign(&Credentials::new("AKIDPRECHECK", "precheck-secret"), &request, at).unwrap();
        headers.extend(signed.headers());
        headers
    }

    fn precheck(headers: &[(String, String)]) -> Result<Prechecked, AuthError> {
        let request = HttpRequest::new("GET", "/datastore/abc/r4/Patient/1", "", headers, Payload::Bytes(b""));
        Verifier::new(REGION).precheck(&request, now(), &store())
    }

    fn replace(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
        headers.iter().map(|(n, v)| if n == name { (n.clone(), value.to_string()) } else { (n.clone(), v.clone()) }).collect()
    }

    #[test]
    fn a_signed_request_passes_and_names_its_key() {
        let checked = precheck(&signed_headers(REGION, "healthlake", now(), &[])).unwrap();
        assert_eq!(checked, Prechecked { access_key_id: "AKIDPRECHECK".into(), signed_at: now() });
    }

    #[test]
    fn the_signature_itself_is_not_checked() {
        // A wrong signature passes the pre-check: only the function, which has the body, can tell.
        let headers = signed_headers(REGION, "healthlake", now(), &[]);
        let auth = headers.iter().find(|(n, _)| n == "authorization").unwrap().1.clone();
        let tampered = format!("{}{}", &auth[..auth.len() - 64], "0".repeat(64));
        assert!(precheck(&replace(&headers, "authorization", &tampered)).is_ok());
    }

    #[test]
    fn unsigned_and_other_schemes_are_refused() {
        assert_eq!(precheck(&[("host".into(), "h".into())]).unwrap_err(), AuthError::Missing);
        let bearer = vec![("host".to_string(), "h".to_string()), ("authorization".to_string(), "Bearer abc.def.ghi".to_string())];
        assert!(matches!(precheck(&bearer), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn scope_must_name_this_service_and_region() {
        assert_eq!(
            precheck(&signed_headers(REGION, "execute-api", now(), &[])).unwrap_err(),
            AuthError::WrongScope("credential scope names another service")
        );
        assert_eq!(
            precheck(&signed_headers("eu-west-1", "healthlake", now(), &[])).unwrap_err(),
            AuthError::WrongScope("credential scope names another region")
        );
    }

    #[test]
    fn the_signing_time_must_be_within_fifteen_minutes() {
        assert!(precheck(&signed_headers(REGION, "healthlake", now() - Duration::minutes(14), &[])).is_ok());
        assert!(precheck(&signed_headers(REGION, "healthlake", now() + Duration::minutes(14), &[])).is_ok());
        assert_eq!(precheck(&signed_headers(REGION, "healthlake", now() - Duration::minutes(16), &[])).unwrap_err(), AuthError::Expired);
        assert_eq!(precheck(&signed_headers(REGION, "healthlake", now() + Duration::minutes(16), &[])).unwrap_err(), AuthError::Expired);
    }

    #[test]
    fn host_and_x_amz_date_must_be_signed() {
        let headers = signed_headers(REGION, "healthlake", now(), &[]);
        let auth = headers.iter().find(|(n, _)| n == "authorization").unwrap().1.clone();
        let without_date = replace(&headers, "authorization", &auth.replace("SignedHeaders=host;x-amz-date", "SignedHeaders=host"));
        assert_eq!(precheck(&without_date).unwrap_err(), AuthError::Malformed("the x-amz-date header must be signed"));
        let without_host = replace(&headers, "authorization", &auth.replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date"));
        assert_eq!(precheck(&without_host).unwrap_err(), AuthError::Malformed("the host header must be signed"));
    }

    #[test]
    fn x_amz_date_must_be_present_once() {
        let headers = signed_headers(REGION, "healthlake", now(), &[]);
        let date_only: Vec<(String, String)> =
            headers
                .iter()
                .map(|(n, v)| {
                    if n == "x-amz-date" {
                        ("date".to_string(), "Wed, 01 May 2024 12:00:00 GMT".to_string())
                    } else {
                        (n.clone(), v.clone())
                    }
                })
                .collect();
        assert!(matches!(precheck(&date_only), Err(AuthError::Malformed(_))));
        let mut twice = headers.clone();
        twice.push(("x-amz-date".into(), "20240501T120000Z".into()));
        assert!(matches!(precheck(&twice), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn payload_hash_header_is_checked_for_shape() {
        let unsigned = signed_headers(REGION, "healthlake", now(), &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]);
        assert_eq!(precheck(&unsigned).unwrap_err(), AuthError::Malformed("unsigned payloads are not accepted"));
        let garbage = signed_headers(REGION, "healthlake", now(), &[("x-amz-content-sha256", "not-a-hash")]);
        assert!(matches!(precheck(&garbage), Err(AuthError::Malformed(_))));
        let hashed = signed_headers(REGION, "healthlake", now(), &[("x-amz-content-sha256", crate::canonical::EMPTY_SHA256)]);
        assert!(precheck(&hashed).is_ok());
    }

    #[test]
    fn the_access_key_must_be_known() {
        let headers = signed_headers(REGION, "healthlake", now(), &[]);
        let request = HttpRequest::new("GET", "/", "", &headers, Payload::Bytes(b""));
        let other = StaticCredentials::new("AKIDOTHER", "x");
        assert_eq!(Verifier::new(REGION).precheck(&request, now(), &other).unwrap_err(), AuthError::UnknownAccessKey);
    }
}
