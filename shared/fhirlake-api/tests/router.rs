//! The shared router driven in-process with `oneshot` (no socket), over the memory adapters:
//! authentication comes first on both planes, and a signed request reaches the services.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use chrono::Utc;
use fhirlake_api::{router, AppState, BearerAuthenticator, RequestAuthenticator};
use fhirlake_auth::{Credentials, HttpRequest, Payload, Signer, StaticCredentials};
use fhirlake_core::{Backends, ServiceConfig, Services};
use fhirlake_ports::audit::{AuditOutcome, MemoryAuditLog};
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
    app_auditing(config, Arc::new(MemoryAuditLog::new()))
}

fn app_auditing(config: ServiceConfig, audit: Arc<MemoryAuditLog>) -> axum::Router {
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
        bearer: BearerAuthenticator::over_https().expect("root certificates"),
        audit,
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

#[tokio::test]
async fn every_request_leaves_an_audit_record_with_ids_and_no_content() {
    let audit = Arc::new(MemoryAuditLog::new());
    let app = app_auditing(ServiceConfig::new("us-east-1", "123456789012", format!("http://{HOST}")), audit.clone());
    let (_, created) = send(&app, control("CreateFHIRDatastore", &json!({"DatastoreTypeVersion": "R4"}), true)).await;
    let id = created["DatastoreId"].as_str().expect("an id").to_string();
    let (_, described) = send(&app, control("DescribeFHIRDatastore", &json!({"DatastoreId": id}), true)).await;
    assert_eq!(described["DatastoreProperties"]["DatastoreId"], id.as_str());
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Secretname"}]}).to_string();
    let path = format!("/datastore/{id}/r4/Patient");
    let (_, stored) = send(&app, request("POST", &path, &[("content-type", "application/fhir+json")], patient.as_bytes(), true)).await;
    let patient_id = stored["id"].as_str().expect("id").to_string();
    let response = app.clone().oneshot(request("GET", &format!("{path}/{patient_id}"), &[], b"", true)).await.expect("infallible");
    let request_id = response.headers().get("x-amzn-requestid").expect("a request id").to_str().unwrap().to_string();
    send(&app, request("GET", &format!("{path}?family=Secretname"), &[], b"", false)).await;

    let records = audit.records();
    let summary: Vec<(&str, &str, &str, u16)> =
        records.iter().map(|r| (r.plane.as_str(), r.operation.as_str(), r.principal.as_str(), r.status)).collect();
    assert_eq!(
        summary,
        [
            ("control", "CreateFHIRDatastore", "AKIDTEST", 200),
            ("control", "DescribeFHIRDatastore", "AKIDTEST", 200),
            ("data", "CreateResource", "AKIDTEST", 201),
            ("data", "ReadResource", "AKIDTEST", 200),
            ("data", "SearchWithGet", "anonymous", 403),
        ]
    );
    assert_eq!(records[1].datastore_id.as_deref(), Some(id.as_str()));
    let read = &records[3];
    assert_eq!((read.resource_type.as_deref(), read.resource_id.as_deref()), (Some("Patient"), Some(patient_id.as_str())));
    assert_eq!(read.request_id, request_id);
    assert_eq!(read.authentication, "sigv4");
    assert_eq!(read.outcome, AuditOutcome::Success);
    assert_eq!((records[4].outcome, records[4].authentication.as_str()), (AuditOutcome::Denied, "none"));
    for record in &records {
        let line = String::from_utf8(record.to_json_line()).unwrap();
        assert!(!line.contains("Secretname"), "{line}");
    }
}

#[tokio::test]
async fn bearer_tokens_are_refused_where_no_datastore_takes_them() {
    let app = app();
    let bearer = [("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")];
    // The control plane takes SigV4 only: an AWS JSON error.
    let listing = request(
        "POST",
        "/",
        &[("content-type", "application/x-amz-json-1.0"), ("x-amz-target", "HealthLake.ListFHIRDatastores"), bearer[0]],
        b"{}",
        false,
    );
    let (status, body) = send(&app, listing).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["__type"], "AccessDeniedException");

    // A datastore with AWS_AUTH (or none at all) answers a token as it answers an unsigned
    // request: 403 with an OperationOutcome, saying nothing about whether it exists.
    let (_, created) = send(&app, control("CreateFHIRDatastore", &json!({"DatastoreTypeVersion": "R4"}), true)).await;
    let id = created["DatastoreId"].as_str().expect("an id").to_string();
    for datastore in [id.as_str(), "0123456789abcdef0123456789abcdef"] {
        let (status, body) = send(&app, request("GET", &format!("/datastore/{datastore}/r4/Patient"), &bearer, b"", false)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(body["issue"][0]["code"], "security");
    }
}
