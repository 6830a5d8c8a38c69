//! Does a request botocore signed still verify after API Gateway's HTTP API and `lambda_http`
//! have carried it to the router? Every botocore vector of `fhirlake-auth/tests/vectors.json`
//! is turned into the payload-2.0 event API Gateway would deliver for it (header names
//! lowercased, its own `x-forwarded-*` and trace headers added, the path percent-decoded as
//! HTTP APIs deliver `rawPath`, the query raw, the body base64-encoded), converted to a request
//! by `lambda_http`, and verified with the router's own inputs (method, `uri.path()`,
//! `uri.query()`, headers, body bytes) at the vector's signing time.
//!
//! Paths whose encoded form does not survive HTTP API's decoding cannot verify; they are listed
//! in [`DOES_NOT_SURVIVE`], and the test fails if that list goes stale in either direction.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use fhirlake_auth::{HttpRequest, Payload, StaticCredentials, Verifier};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};

/// Vectors whose path API Gateway's decoding of `rawPath` changes irreversibly:
/// - an encoded `/` (`%2F`) becomes a path separator;
/// - a raw (unencoded) non-ASCII path comes back percent-encoded by `lambda_http`'s URL
///   parser, which is a different canonical URI. (HTTP clients send such paths encoded; the
///   encoded form, "get path with encoded unicode", does survive.)
///
/// FHIR paths are ASCII: resource types, ids of `[A-Za-z0-9\-.]`, `_history`, `$operations`.
const DOES_NOT_SURVIVE: &[&str] = &["get path with percent-encoded space", "get path with raw unicode"];

#[derive(Deserialize)]
struct Document {
    access_key_id: String,
    secret_access_key: String,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
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
}

/// The HTTP API payload-2.0 event API Gateway would deliver for `vector`.
fn http_api_event(vector: &Vector) -> Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in &vector.headers {
        headers.insert(name.to_ascii_lowercase(), Value::String(value.clone()));
    }
    for (name, value) in [
        ("x-amzn-trace-id", "Root=1-66322f40-5b1a2c3d4e5f60718293a4b5"),
        ("x-forwarded-for", "192.0.2.10"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-proto", "https"),
    ] {
        headers.insert(name.to_string(), Value::String(value.to_string()));
    }
    let raw_path = percent_encoding::percent_decode_str(&vector.path).decode_utf8_lossy().into_owned();
    let raw_path = if raw_path.is_empty() { "/".to_string() } else { raw_path };
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": vector.query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {"method": vector.method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.10", "userAgent": "botocore"},
            "requestId": "r",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/May/2024:12:00:00 +0000",
            "timeEpoch": 1714564800000u64
        },
        "body": BASE64.encode(vector.body.as_bytes()),
        "isBase64Encoded": true
    })
}

#[tokio::test]
async fn botocore_signatures_survive_http_api_and_lambda_http() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fhirlake-auth/tests/vectors.json");
    let document: Document = serde_json::from_str(&std::fs::read_to_string(&path).expect("vectors.json")).expect("vectors.json parses");
    let store = StaticCredentials::new(document.access_key_id.clone(), document.secret_access_key.clone());
    assert!(document.vectors.len() >= 20);

    let mut failed = Vec::new();
    for vector in &document.vectors {
        let request = lambda_http::request::from_str(&http_api_event(vector).to_string())
            .unwrap_or_else(|e| panic!("{}: lambda_http rejects the event: {e}", vector.name));
        let (parts, body) = request.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        assert_eq!(body.as_ref(), vector.body.as_bytes(), "{}: the base64 body is not restored", vector.name);
        assert_eq!(parts.uri.query().unwrap_or(""), vector.query, "{}: the raw query is not kept", vector.name);

        let headers: Vec<(&str, &[u8])> = parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        let request =
            HttpRequest::new(parts.method.as_str(), parts.uri.path(), parts.uri.query().unwrap_or(""), &headers, Payload::Bytes(&body));
        let verifier =
            Verifier::new(vector.region.clone()).with_service(vector.service.clone()).allow_unsigned_payload(vector.allow_unsigned_payload);
        if let Err(e) = verifier.verify(&request, vector.now, &store) {
            failed.push((vector.name.clone(), e));
        }
    }
    let failed_names: Vec<&str> = failed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(failed_names, DOES_NOT_SURVIVE, "vectors that fail after the trip through api gateway: {failed:?}");
}
