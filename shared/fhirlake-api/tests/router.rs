//! The shared router driven in-process with `oneshot` (no socket), over the memory adapters:
//! authentication comes first on both planes, and a signed request reaches the services.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use chrono::Utc;
use fhirlake_api::{router, AppState, RequestAuthenticator};
use fhirlake_auth::{Credentials, HttpRequest, Payload, Signer, StaticCredentials};
use fhirlake_core::{Backends, ServiceConfig, Services};
use fhirlake_ports::memory::{MemoryItemTable, MemoryKeyService, MemoryObjectStore};
use fhirlake_ports::{RandomIds, SystemClock};
use http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

const HOST: &str = "fhirlake.test";

fn app() -> axum::Router {
    app_with(ServiceConfig::new("us-east-1", "123456789012", format!("http://{HOST}")))
}

fn app_with(config: ServiceConfig) -> axum::Router {
    let backends = Backends {
        table: Arc::new(MemoryItemTable::new()),
        objects: Arc::new(MemoryObjectStore::new()),
        keys: Arc::new(MemoryKeyService::new()),
        buckets: Arc::new(fhirlake_ports::MemoryBuckets::new()),
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    };
    let credentials = Arc::new(StaticCredentials::new("AKIDTEST", "test-secret"));
    router(Arc::new(AppState {
        services: Services::new(config, backends),
        authenticator: RequestAuthenticator::sigv4("us-east-1", credentials),
    }))
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], sign: bool) -> Request<Body> {
    let mut all: Vec<(String, String)> = vec![("host".into(), HOST.into())];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    if sign {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let to_sign = HttpRequest::new(method, path, query, &all, Payload::Bytes(body));
        let signed = Signer::new("us-east-1").sign(&Credentials::new("AKIDTEST", "test-secret"), &to_sign, Utc::now()).expect("sign");
        all.extend(signed.headers());
    }
    let mut builder = Request::builder().method(method).uri(path);
    for (k, v) in &all {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder.body(Body::from(body.to_vec())).expect("request")
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(req).await.expect("infallible");
    let status = response.status();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.expect("body");
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("json body") })
}

fn control(op: &str, body: &Value, sign: bool) -> Request<Body> {
    let target = format!("HealthLake.{op}");
    request(
        "POST",
        "/",
        &[("content-type", "application/x-amz-json-1.0"), ("x-amz-target", target.as_str())],
        body.to_string().as_bytes(),
        sign,
    )
}

#[tokio::test]
async fn unsigned_requests_are_refused_in_each_planes_dialect() {
    let app = app();
    let (status, body) = send(&app, control("ListFHIRDatastores", &json!({}), false)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["__type"], "MissingAuthenticationTokenException");

    let (status, body) = send(&app, request("GET", "/datastore/0123456789abcdef0123456789abcdef/r4/metadata", &[], b"", false)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "security");
}

#[tokio::test]
async fn signed_requests_reach_both_planes() {
    let app = app();
    let (status, created) = send(&app, control("CreateFHIRDatastore", &json!({"DatastoreTypeVersion": "R4"}), true)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["DatastoreId"].as_str().expect("an id").to_string();
    assert_eq!(created["DatastoreEndpoint"], format!("http://{HOST}/datastore/{id}/r4/"));

    let patient = json!({"resourceType": "Patient", "active": true}).to_string();
    let path = format!("/datastore/{id}/r4/Patient");
    let (status, stored) = send(&app, request("POST", &path, &[("content-type", "application/fhir+json")], patient.as_bytes(), true)).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    assert_eq!(stored["meta"]["versionId"], "1");

    let read_path = format!("{path}/{}", stored["id"].as_str().expect("id"));
    let (status, read) = send(&app, request("GET", &read_path, &[], b"", true)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, stored);
}

#[tokio::test]
async fn the_configured_page_limit_caps_count_for_search_and_history() {
    let app = app_with(ServiceConfig::new("us-east-1", "123456789012", format!("http://{HOST}")).with_max_page_size(3));
    let (_, created) = send(&app, control("CreateFHIRDatastore", &json!({"DatastoreTypeVersion": "R4"}), true)).await;
    let base = format!("/datastore/{}/r4", created["DatastoreId"].as_str().expect("an id"));
    for _ in 0..5 {
        let patient = json!({"resourceType": "Patient", "active": true}).to_string();
        let headers = [("content-type", "application/fhir+json")];
        let (status, _) = send(&app, request("POST", &format!("{base}/Patient"), &headers, patient.as_bytes(), true)).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    for path in ["Patient?_count=50", "Patient?active=true", "Patient/_history?_count=50"] {
        let (status, bundle) = send(&app, request("GET", &format!("{base}/{path}"), &[], b"", true)).await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(3), "{path}");
        let links = bundle["link"].as_array().expect("links");
        assert!(links.iter().any(|l| l["relation"] == "next"), "{path} pages on");
    }
}
