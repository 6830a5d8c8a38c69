//! The verifier against signatures made by botocore itself (`vectors.json`, written by
//! `tests/tools/make_sigv4_vectors.py`): every vector verifies, and every tampering fails.

use chrono::{DateTime, Duration, Utc};
use fhirlake_auth::canonical::{canonical_query, QueryStyle};
use fhirlake_auth::{AuthError, Credentials, HttpRequest, Payload, Principal, Signer, StaticCredentials, Verifier};
use serde::Deserialize;

#[derive(Deserialize)]
struct Document {
    access_key_id: String,
    secret_access_key: String,
    vectors: Vec<Vector>,
}

#[derive(Deserialize, Clone, Debug)]
struct Vector {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: String,
    now: DateTime<Utc>,
    region: String,
    service: String,
    allow_unsigned_payload: bool,
    canonical_request: String,
}

impl Vector {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn is_presigned(&self) -> bool {
        self.query.contains("X-Amz-Signature=")
    }

    fn unsigned_payload(&self) -> bool {
        self.header("x-amz-content-sha256") == Some("UNSIGNED-PAYLOAD")
    }

    fn signed_header_names(&self) -> Vec<String> {
        if let Some(auth) = self.header("authorization") {
            let list = auth.split("SignedHeaders=").nth(1).and_then(|s| s.split(',').next()).unwrap_or_default();
            list.split(';').map(str::to_string).collect()
        } else {
            vec!["host".to_string()]
        }
    }
}

fn document() -> Document {
    serde_json::from_str(include_str!("vectors.json")).expect("vectors.json parses")
}

struct Fixture {
    doc: Document,
}

impl Fixture {
    fn new() -> Self {
        let doc = document();
        assert!(doc.vectors.len() >= 20, "expected a broad set of vectors");
        Fixture { doc }
    }

    fn store(&self) -> StaticCredentials {
        StaticCredentials::new(self.doc.access_key_id.clone(), self.doc.secret_access_key.clone())
    }

    fn verifier(&self, v: &Vector) -> Verifier {
        Verifier::new(v.region.clone()).with_service(v.service.clone()).allow_unsigned_payload(v.allow_unsigned_payload)
    }

    fn verify(&self, v: &Vector) -> Result<Principal, AuthError> {
        self.verify_at(v, v.now)
    }

    fn verify_at(&self, v: &Vector, now: DateTime<Utc>) -> Result<Principal, AuthError> {
        let request = HttpRequest::new(&v.method, &v.path, &v.query, &v.headers, Payload::Bytes(v.body.as_bytes()));
        self.verifier(v).verify(&request, now, &self.store())
    }
}

fn with_header(v: &Vector, name: &str, value: &str) -> Vector {
    let mut v = v.clone();
    v.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    v.headers.push((name.to_string(), value.to_string()));
    v
}

#[test]
fn every_botocore_vector_verifies() {
    let f = Fixture::new();
    for v in &f.doc.vectors {
        let principal = f.verify(v).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(principal.access_key_id, f.doc.access_key_id, "{}", v.name);
        assert_eq!(principal.presigned, v.is_presigned(), "{}", v.name);
    }
}

#[test]
fn the_body_may_be_given_as_its_hash() {
    let f = Fixture::new();
    for v in &f.doc.vectors {
        let hash = fhirlake_auth::canonical::sha256_hex(v.body.as_bytes()).to_uppercase();
        let request = HttpRequest::new(&v.method, &v.path, &v.query, &v.headers, Payload::Sha256Hex(&hash));
        f.verifier(v).verify(&request, v.now, &f.store()).unwrap_or_else(|e| panic!("{}: {e}", v.name));
    }
}

#[test]
fn tampering_with_any_signed_part_fails() {
    let f = Fixture::new();
    for v in &f.doc.vectors {
        let name = &v.name;
        let mut method = v.clone();
        method.method = if v.method == "GET" { "HEAD".into() } else { "GET".into() };
        assert_eq!(f.verify(&method), Err(AuthError::SignatureMismatch), "method: {name}");

        let mut path = v.clone();
        path.path = format!("{}x", if v.path.is_empty() { "/" } else { &v.path });
        assert_eq!(f.verify(&path), Err(AuthError::SignatureMismatch), "path: {name}");

        let mut query = v.clone();
        query.query = if v.query.is_empty() { "a=1".into() } else { format!("{}&a=1", v.query) };
        assert_eq!(f.verify(&query), Err(AuthError::SignatureMismatch), "query: {name}");

        if !v.query.is_empty() && !v.is_presigned() {
            let mut dropped = v.clone();
            dropped.query = v.query.split('&').skip(1).collect::<Vec<_>>().join("&");
            assert_eq!(f.verify(&dropped), Err(AuthError::SignatureMismatch), "dropped parameter: {name}");
        }

        for header in v.signed_header_names() {
            if matches!(header.as_str(), "x-amz-date" | "date" | "x-amz-content-sha256") {
                continue;
            }
            let current = v.header(&header).unwrap_or_default();
            let changed = with_header(v, &header, &format!("{current}x"));
            assert_eq!(f.verify(&changed), Err(AuthError::SignatureMismatch), "header {header}: {name}");
            let mut removed = v.clone();
            removed.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&header));
            assert!(f.verify(&removed).is_err(), "removed header {header}: {name}");
        }

        if !v.unsigned_payload() {
            let mut body = v.clone();
            body.body.push(' ');
            assert_eq!(f.verify(&body), Err(AuthError::SignatureMismatch), "body: {name}");
        }

        if let (None, Some(date)) = (v.header("x-amz-date"), v.header("date")) {
            let later = date.replace(":00:00 ", ":00:01 ");
            assert_ne!(later, date);
            let changed = with_header(v, "date", &later);
            assert_eq!(f.verify(&changed), Err(AuthError::SignatureMismatch), "date header: {name}");
        }

        if let Some(date) = v.header("x-amz-date") {
            let later = format!("{}1Z", &date[..14]);
            assert_eq!(f.verify(&with_header(v, "x-amz-date", &later)), Err(AuthError::SignatureMismatch), "date: {name}");
        }
    }
}

#[test]
fn an_unsigned_payload_leaves_the_body_free_but_is_refused_by_default() {
    let f = Fixture::new();
    let v = f.doc.vectors.iter().find(|v| v.unsigned_payload()).expect("an unsigned-payload vector");
    let mut body = v.clone();
    body.body = "{}".into();
    assert!(f.verify(&body).is_ok());
    let mut strict = v.clone();
    strict.allow_unsigned_payload = false;
    assert!(matches!(f.verify(&strict), Err(AuthError::Malformed(_))));
}

#[test]
fn a_declared_payload_hash_must_match_the_body() {
    let f = Fixture::new();
    let v = f
        .doc
        .vectors
        .iter()
        .find(|v| v.header("x-amz-content-sha256").is_some_and(|h| h.len() == 64))
        .expect("a vector with a declared payload hash");
    let mut body = v.clone();
    body.body = "{}".into();
    assert_eq!(f.verify(&body), Err(AuthError::SignatureMismatch));
}

#[test]
fn wrong_region_service_key_or_secret_fail() {
    let f = Fixture::new();
    for v in &f.doc.vectors {
        let request = HttpRequest::new(&v.method, &v.path, &v.query, &v.headers, Payload::Bytes(v.body.as_bytes()));
        let allow = v.allow_unsigned_payload;
        let region = Verifier::new("eu-west-1").allow_unsigned_payload(allow).verify(&request, v.now, &f.store());
        assert!(matches!(region, Err(AuthError::WrongScope(_))), "region: {}", v.name);
        let service =
            Verifier::new(v.region.clone()).with_service("execute-api").allow_unsigned_payload(allow).verify(&request, v.now, &f.store());
        assert!(matches!(service, Err(AuthError::WrongScope(_))), "service: {}", v.name);

        let unknown = StaticCredentials::new("AKIDSOMEONEELSE", f.doc.secret_access_key.clone());
        assert_eq!(f.verifier(v).verify(&request, v.now, &unknown), Err(AuthError::UnknownAccessKey), "{}", v.name);
        let wrong_secret = StaticCredentials::new(f.doc.access_key_id.clone(), "not-the-secret");
        assert_eq!(f.verifier(v).verify(&request, v.now, &wrong_secret), Err(AuthError::SignatureMismatch), "{}", v.name);
    }
}

#[test]
fn signing_time_must_be_within_fifteen_minutes() {
    let f = Fixture::new();
    for v in f.doc.vectors.iter().filter(|v| !v.is_presigned()) {
        let signed_at = v.now;
        for ok in [Duration::minutes(-15), Duration::zero(), Duration::minutes(15)] {
            assert!(f.verify_at(v, signed_at + ok).is_ok(), "{} at {ok}", v.name);
        }
        for stale in [Duration::minutes(-16), Duration::minutes(16), Duration::days(1)] {
            assert_eq!(f.verify_at(v, signed_at + stale), Err(AuthError::Expired), "{} at {stale}", v.name);
        }
    }
}

#[test]
fn presigned_urls_expire() {
    let f = Fixture::new();
    let v = f.doc.vectors.iter().find(|v| v.is_presigned()).expect("a presigned vector");
    assert!(f.verify_at(v, v.now + Duration::seconds(300)).is_ok());
    assert_eq!(f.verify_at(v, v.now + Duration::seconds(301)), Err(AuthError::Expired));
    assert_eq!(f.verify_at(v, v.now - Duration::minutes(16)), Err(AuthError::Expired));
    let mut extended = v.clone();
    extended.query = v.query.replace("X-Amz-Expires=300", "X-Amz-Expires=3000");
    assert_eq!(f.verify(&extended), Err(AuthError::SignatureMismatch));
}

#[test]
fn scope_date_must_match_the_signing_date() {
    let f = Fixture::new();
    let v = f.doc.vectors.iter().find(|v| v.header("x-amz-date").is_some()).expect("an x-amz-date vector");
    let next_day = with_header(v, "x-amz-date", "20240502T120000Z");
    assert!(matches!(f.verify_at(&next_day, v.now), Err(AuthError::WrongScope(_))));
}

#[test]
fn unsigned_requests_are_missing() {
    let f = Fixture::new();
    for v in &f.doc.vectors {
        let mut unsigned = v.clone();
        unsigned.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
        unsigned.query = v.query.split('&').filter(|p| !p.starts_with("X-Amz-")).collect::<Vec<_>>().join("&");
        assert_eq!(f.verify(&unsigned), Err(AuthError::Missing), "{}", v.name);
    }
}

#[test]
fn our_signer_matches_botocore_and_our_verifier() {
    let f = Fixture::new();
    let credentials = Credentials::new(f.doc.access_key_id.clone(), f.doc.secret_access_key.clone());
    let mut matched = 0;
    for v in f.doc.vectors.iter().filter(|v| !v.is_presigned() && v.header("x-amz-date").is_some()) {
        // Sign exactly the headers botocore signed, the way a client would send them.
        let signed = v.signed_header_names();
        let headers: Vec<(String, String)> = v
            .headers
            .iter()
            .filter(|(n, _)| signed.contains(&n.to_ascii_lowercase()) && !n.eq_ignore_ascii_case("x-amz-date"))
            .cloned()
            .collect();
        let body = Payload::Bytes(v.body.as_bytes());
        let request = HttpRequest::new(&v.method, &v.path, &v.query, &headers, body);
        let ours = Signer::new(v.region.clone()).sign(&credentials, &request, v.now).expect("signs");

        let mut sent = headers.clone();
        sent.extend(ours.headers());
        let request = HttpRequest::new(&v.method, &v.path, &v.query, &sent, body);
        f.verifier(v).verify(&request, v.now, &f.store()).unwrap_or_else(|e| panic!("{}: {e}", v.name));

        // Where botocore's canonical query is the RFC 3986 one, the signatures are identical.
        let botocore_query = v.canonical_request.lines().nth(2).unwrap_or_default();
        if canonical_query(&v.query, QueryStyle::Rfc3986, None) == botocore_query {
            assert_eq!(Some(ours.authorization.as_str()), v.header("authorization"), "{}", v.name);
            matched += 1;
        }
    }
    assert!(matched >= 15, "only {matched} vectors compared byte for byte");
}
