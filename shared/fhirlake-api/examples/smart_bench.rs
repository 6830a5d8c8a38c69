//! What SMART on FHIR authorization and the audit trail cost on the request path, in process
//! (the shared router driven with `oneshot`, memory adapters, no sockets):
//!
//! - token validation alone (RS256 and ES256, keys cached), against the limit of reading the
//!   same token's payload (base64url and JSON, no signature);
//! - the access decision alone (`permit` + `admits` for one Observation);
//! - whole requests: a read and a search of the launch patient's Observations with a SigV4
//!   signature and with bearer tokens (the search confined to the compartment vs the same
//!   search named explicitly under SigV4);
//! - the audit log: records appended to the JSON-lines file per second.
//!
//! ```sh
//! cargo run --release -p fhirlake-api --example smart_bench -- --requests 2000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::{to_bytes, Body};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use fhirlake_api::{router, AppState, BearerAuthenticator, RequestAuthenticator};
use fhirlake_auth::{Credentials, HttpRequest, Payload, Signer, StaticCredentials};
use fhirlake_core::access::{Access, SmartAccess};
use fhirlake_core::{Backends, ServiceConfig, Services};
use fhirlake_embedded::JsonLinesAuditLog;
use fhirlake_ports::audit::{audit_time, AuditLog, AuditOutcome, AuditRecord};
use fhirlake_ports::memory::{MemoryItemTable, MemoryKeyService, MemoryObjectStore};
use fhirlake_ports::{RandomIds, SystemClock};
use fhirlake_smart::{Interaction, JwksCache, JwksSource, SmartError, SmartVersion, TokenClaims, TokenValidator, ValidatorConfig};
use http::Request;
use jsonwebtoken::{EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use tower::ServiceExt;

const HOST: &str = "fhirlake.bench";
const ISSUER: &str = "https://idp.bench";
const JWKS_URI: &str = "https://idp.bench/jwks";
const OBSERVATIONS: usize = 20;

struct StaticJwks(String);

#[async_trait]
impl JwksSource for StaticJwks {
    async fn fetch(&self, _jwks_uri: &str) -> Result<String, SmartError> {
        Ok(self.0.clone())
    }
}

struct Keys {
    rsa: EncodingKey,
    ec: EncodingKey,
    jwks: Value,
}

fn keys() -> Keys {
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa key");
    let public = private.to_public_key();
    let rsa = EncodingKey::from_rsa_der(private.to_pkcs1_der().expect("der").as_bytes());
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("p-256 key");
    let point = pair.public_key().as_ref().to_vec();
    let ec = EncodingKey::from_ec_der(pair.to_pkcs8v1().expect("pkcs8").as_ref());
    let jwks = json!({"keys": [
        {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "rsa", "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
         "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])},
    ]});
    Keys { rsa, ec, jwks }
}

fn mint(keys: &Keys, alg: jsonwebtoken::Algorithm, aud: &str, scope: &str, patient: &str) -> String {
    let now = Utc::now().timestamp();
    let claims = json!({"iss": ISSUER, "aud": aud, "sub": "bench-user", "client_id": "bench-app", "iat": now, "exp": now + 3600,
                        "scope": scope, "patient": patient});
    let (kid, key) = match alg {
        jsonwebtoken::Algorithm::RS256 => ("rsa", &keys.rsa),
        _ => ("ec", &keys.ec),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, key).expect("token")
}

fn signed(method: &str, path: &str, body: &[u8], extra: &[(&str, &str)]) -> Request<Body> {
    let mut headers: Vec<(String, String)> = vec![("host".into(), HOST.into())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let to_sign = HttpRequest::new(method, p, q, &headers, Payload::Bytes(body));
    let sig = Signer::new("us-east-1").sign(&Credentials::new("AKIDBENCH", "bench-secret"), &to_sign, Utc::now()).expect("sign");
    headers.extend(sig.headers());
    let mut builder = Request::builder().method(method).uri(path);
    for (k, v) in &headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder.body(Body::from(body.to_vec())).expect("request")
}

fn bearer(path: &str, token: &str) -> Request<Body> {
    Request::builder()
        .method("GET")
        .uri(path)
        .header("host", HOST)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

async fn send(app: &axum::Router, request: Request<Body>) -> (u16, Value) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

async fn time_requests(label: &str, n: usize, mut make: impl FnMut() -> Request<Body>, app: &axum::Router, expect: usize) {
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let request = make();
        let t = Instant::now();
        let (status, body) = send(app, request).await;
        samples.push(t.elapsed());
        assert_eq!(status, 200, "{label}: {body}");
        if body["resourceType"] == "Bundle" {
            assert_eq!(body["entry"].as_array().map_or(0, Vec::len), expect, "{label}");
        }
    }
    let total = started.elapsed();
    let (p50, p99) = percentiles(samples);
    println!("{label:<58} {:>9.0} req/s   p50 {p50:>7.1} µs   p99 {p99:>7.1} µs", n as f64 / total.as_secs_f64());
}

fn time_each<T>(label: &str, n: usize, mut f: impl FnMut() -> T) {
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{label:<58} {per:>9.2} µs each");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests: usize =
        std::env::args().skip_while(|a| a != "--requests").nth(1).map(|v| v.parse().expect("--requests N")).unwrap_or(2000);
    let keys = keys();
    let jwks = Arc::new(JwksCache::with_defaults(Arc::new(StaticJwks(keys.jwks.to_string()))));
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = Arc::new(JsonLinesAuditLog::open(&dir.path().join("audit.jsonl")).expect("audit log"));
    let config = ServiceConfig::new("us-east-1", "123456789012", format!("http://{HOST}"));
    let backends = Backends {
        table: Arc::new(MemoryItemTable::new()),
        objects: Arc::new(MemoryObjectStore::new()),
        keys: Arc::new(MemoryKeyService::new()),
        buckets: Arc::new(fhirlake_ports::MemoryBuckets::new()),
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    };
    let app = router(Arc::new(AppState {
        services: Services::new(config, backends),
        authenticator: RequestAuthenticator::sigv4("us-east-1", Arc::new(StaticCredentials::new("AKIDBENCH", "bench-secret"))),
        bearer: BearerAuthenticator::new(jwks.clone()),
        audit: audit.clone(),
    }));

    let metadata = json!({"issuer": ISSUER, "jwks_uri": JWKS_URI, "authorization_endpoint": "https://idp.bench/authorize",
                          "token_endpoint": "https://idp.bench/token", "capabilities": ["launch-standalone", "permission-v2"],
                          "code_challenge_methods_supported": ["S256"], "grant_types_supported": ["authorization_code"]});
    let create = json!({"DatastoreTypeVersion": "R4", "IdentityProviderConfiguration": {
        "AuthorizationStrategy": "SMART_ON_FHIR", "Metadata": metadata.to_string()}});
    let control = [("content-type", "application/x-amz-json-1.0"), ("x-amz-target", "HealthLake.CreateFHIRDatastore")];
    let (status, created) = send(&app, signed("POST", "/", create.to_string().as_bytes(), &control)).await;
    assert_eq!(status, 200, "{created}");
    let id = created["DatastoreId"].as_str().expect("id").to_string();
    let endpoint = created["DatastoreEndpoint"].as_str().expect("endpoint").to_string();
    let base = format!("/datastore/{id}/r4");
    let json_header = [("content-type", "application/fhir+json")];
    for patient in ["p1", "p2"] {
        let body = json!({"resourceType": "Patient", "id": patient, "name": [{"family": "Bench"}]}).to_string();
        let (status, _) = send(&app, signed("PUT", &format!("{base}/Patient/{patient}"), body.as_bytes(), &json_header)).await;
        assert_eq!(status, 201);
        for i in 0..OBSERVATIONS {
            let body = json!({"resourceType": "Observation", "status": "final", "code": {"text": format!("obs {i}")},
                              "subject": {"reference": format!("Patient/{patient}")}})
            .to_string();
            let (status, _) = send(&app, signed("POST", &format!("{base}/Observation"), body.as_bytes(), &json_header)).await;
            assert_eq!(status, 201);
        }
    }

    println!("# SMART on FHIR on the request path ({requests} requests each, memory adapters, in process)");
    let rs256 = mint(&keys, jsonwebtoken::Algorithm::RS256, &endpoint, "launch/patient patient/*.rs", "p1");
    let es256 = mint(&keys, jsonwebtoken::Algorithm::ES256, &endpoint, "launch/patient patient/*.rs", "p1");
    let system = mint(&keys, jsonwebtoken::Algorithm::RS256, &endpoint, "system/*.rs", "p1");

    // Token validation alone, and the limit: reading the payload without any check.
    let mut validator_config = ValidatorConfig::new(ISSUER, endpoint.clone(), JWKS_URI);
    validator_config.version = SmartVersion::V2;
    let validator = TokenValidator::new(validator_config, jwks.clone());
    validator.validate(&rs256).await.expect("valid rs256");
    let n = requests * 5;
    for (label, token) in [("validate RS256 (key cached)", &rs256), ("validate ES256 (key cached)", &es256)] {
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(validator.validate(token).await.expect("valid"));
        }
        println!("{label:<58} {:>9.2} µs each", started.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    time_each("limit: base64url + JSON parse of the same payload", n, || {
        let payload = rs256.split('.').nth(1).expect("payload");
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
    });

    // The access decision alone.
    let claims = validator.validate(&rs256).await.expect("valid");
    let access = Access::Smart(Box::new(SmartAccess::new(claims.clone(), false)));
    let observation = json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
                             "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Practitioner/d1"}]});
    time_each("permit + admits (patient/*.rs, one Observation)", n * 4, || {
        access.permit("Observation", Interaction::Read).expect("permit").admits("Observation", &observation)
    });
    let _: &TokenClaims = &claims;

    // Whole requests.
    let read = format!("{base}/Patient/p1");
    time_requests("read  Patient/p1, SigV4", requests, || signed("GET", &read, b"", &[]), &app, 0).await;
    time_requests("read  Patient/p1, bearer RS256 patient/*.rs", requests, || bearer(&read, &rs256), &app, 0).await;
    time_requests("read  Patient/p1, bearer ES256 patient/*.rs", requests, || bearer(&read, &es256), &app, 0).await;
    let named = format!("{base}/Observation?subject=Patient/p1");
    let confined = format!("{base}/Observation");
    time_requests("search Observation?subject=Patient/p1, SigV4", requests, || signed("GET", &named, b"", &[]), &app, OBSERVATIONS).await;
    time_requests("search Observation, bearer patient/*.rs (confined)", requests, || bearer(&confined, &rs256), &app, OBSERVATIONS).await;
    time_requests("search Observation?subject=Patient/p1, bearer system/*.rs", requests, || bearer(&named, &system), &app, OBSERVATIONS)
        .await;

    // The audit log on its own.
    let record = AuditRecord {
        time: audit_time(Utc::now()),
        request_id: uuid::Uuid::new_v4().to_string(),
        plane: "data".into(),
        principal: "bench-user".into(),
        client_id: Some("bench-app".into()),
        authentication: "smart".into(),
        operation: "ReadResource".into(),
        datastore_id: Some(id.clone()),
        resource_type: Some("Patient".into()),
        resource_id: Some("p1".into()),
        patient: Some("Patient/p1".into()),
        outcome: AuditOutcome::Success,
        status: 200,
    };
    audit.flush().await.expect("flush");
    let records = 100_000;
    let started = Instant::now();
    for _ in 0..records {
        audit.append(&record).await;
    }
    audit.flush().await.expect("flush");
    let elapsed = started.elapsed();
    let bytes = record.to_json_line().len();
    println!(
        "{:<58} {:>9.0} records/s ({bytes} bytes each, fdatasynced)",
        "audit log: append + write to audit.jsonl",
        records as f64 / elapsed.as_secs_f64()
    );
}
