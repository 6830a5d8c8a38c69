//! The HTTP functions driven by the sample events of `events/fhir-api` and
//! `events/control-plane`, re-signed now, over the memory adapters, through the service the
//! functions run under `lambda_http`: statuses, bodies and headers as API Gateway receives them.

mod common;

use std::sync::Arc;

use common::*;
use fhirlake_auth::Credentials;
use fhirlake_lambda::{Authentication, HttpContext};
use serde_json::Value;

/// Creates a datastore with `events/control-plane/create-datastore.json`; returns its id.
async fn create_datastore(context: &Arc<HttpContext>) -> String {
    let created = invoke(context, &Event::load("control-plane/create-datastore.json").signed()).await;
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    created.json()["DatastoreId"].as_str().expect("a datastore id").to_string()
}

#[tokio::test]
async fn control_plane_create_and_describe() {
    let context = memory_context(sample_keys(), None);
    let created = invoke(&context, &Event::load("control-plane/create-datastore.json").signed()).await;
    assert_eq!(created.status, 200);
    // AWS JSON is not a text type to lambda_http: it travels base64-encoded and survives.
    assert!(created.is_base64_encoded);
    assert_eq!(created.header("content-type"), Some("application/x-amz-json-1.0"));
    assert!(created.header("x-amzn-requestid").is_some_and(|id| !id.is_empty()), "{:?}", created.headers);
    let body = created.json();
    let id = body["DatastoreId"].as_str().expect("an id");
    assert_eq!(body["DatastoreStatus"], "CREATING");
    // No FHIRLAKE_PUBLIC_URL: the endpoint is built from the request's API Gateway domain.
    assert_eq!(body["DatastoreEndpoint"], format!("https://{DOMAIN}/datastore/{id}/r4/"));

    let describe = Event::load("control-plane/describe-datastore.json").with_datastore(id).signed();
    let described = invoke(&context, &describe).await;
    assert_eq!(described.status, 200, "{}", String::from_utf8_lossy(&described.body));
    let properties = &described.json()["DatastoreProperties"];
    assert_eq!(properties["DatastoreId"], id);
    assert_eq!(properties["DatastoreName"], "events-sample");
    assert_eq!(properties["DatastoreTypeVersion"], "R4");
    assert_eq!(properties["DatastoreArn"], format!("arn:aws:healthlake:{REGION}:{ACCOUNT_ID}:datastore/fhir/{id}"));
}

#[tokio::test]
async fn fhir_create_read_with_a_base64_body() {
    let context = memory_context(sample_keys(), None);
    let datastore = create_datastore(&context).await;
    let create = Event::load("fhir-api/create-patient.json").with_datastore(&datastore).signed();
    assert_eq!(create.0["isBase64Encoded"], true, "the sample create carries a base64 body");
    let created = invoke(&context, &create).await;
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    // FHIR JSON is text to lambda_http (`+json`): not base64-encoded on the way back.
    assert!(!created.is_base64_encoded);
    assert_eq!(created.header("content-type"), Some("application/fhir+json;charset=utf-8"));
    let stored = created.json();
    let id = stored["id"].as_str().expect("an id");
    assert_eq!(stored["name"][0]["family"], "Doe");
    assert_eq!(stored["meta"]["versionId"], "1");
    assert_eq!(created.header("etag"), Some("W/\"1\""));
    assert_eq!(created.header("location"), Some(format!("https://{DOMAIN}/datastore/{datastore}/r4/Patient/{id}/_history/1").as_str()));

    let read = invoke(&context, &Event::load("fhir-api/read-patient.json").with_datastore(&datastore).with_patient(id).signed()).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), stored);
    assert_eq!(read.header("etag"), Some("W/\"1\""));
}

#[tokio::test]
async fn search_bundle_and_metadata() {
    let context = memory_context(sample_keys(), None);
    let datastore = create_datastore(&context).await;
    let search = invoke(&context, &Event::load("fhir-api/search-patient.json").with_datastore(&datastore).signed()).await;
    assert_eq!(search.status, 200);
    let bundle = search.json();
    assert_eq!(
        (bundle["resourceType"].as_str(), bundle["type"].as_str(), bundle["total"].as_u64()),
        (Some("Bundle"), Some("searchset"), Some(0))
    );
    assert!(bundle["link"][0]["url"]
        .as_str()
        .is_some_and(|u| u.starts_with(&format!("https://{DOMAIN}/datastore/{datastore}/r4/Patient"))));
    let transaction = invoke(&context, &Event::load("fhir-api/transaction-bundle.json").with_datastore(&datastore).signed()).await;
    assert_eq!(transaction.status, 200);
    let response = transaction.json();
    assert_eq!(response["type"], "transaction-response");
    assert_eq!(response["entry"][0]["response"]["status"], "201 Created");
    let metadata = invoke(&context, &Event::load("fhir-api/metadata.json").with_datastore(&datastore).signed()).await;
    assert_eq!(metadata.status, 200);
    let statement = metadata.json();
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["implementation"]["url"], format!("https://{DOMAIN}/datastore/{datastore}/r4"));
}

#[tokio::test]
async fn smart_discovery_is_answered_without_credentials() {
    let context = memory_context(sample_keys(), None);
    let metadata = serde_json::json!({"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks",
        "authorization_endpoint": "https://idp.example/authorize", "token_endpoint": "https://idp.example/token",
        "capabilities": ["launch-standalone"], "code_challenge_methods_supported": ["S256"]});
    let request = serde_json::json!({"DatastoreTypeVersion": "R4", "DatastoreName": "smart-events",
        "IdentityProviderConfiguration": {"AuthorizationStrategy": "SMART_ON_FHIR", "Metadata": metadata.to_string()}});
    let create = Event::load("control-plane/create-datastore.json").with_body(request.to_string().as_bytes()).signed();
    let created = invoke(&context, &create).await;
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    let datastore = created.json()["DatastoreId"].as_str().expect("an id").to_string();

    let discovery = Event::load("fhir-api/smart-configuration.json").with_datastore(&datastore);
    assert!(discovery.header("authorization").is_none(), "the sample discovery request carries no credentials");
    let answered = invoke(&context, &discovery).await;
    assert_eq!(answered.status, 200, "{}", String::from_utf8_lossy(&answered.body));
    assert_eq!(answered.header("content-type"), Some("application/json"));
    assert_eq!(answered.json(), metadata);

    // Any other path without credentials is still refused, with the bearer challenge of RFC 6750.
    let unsigned_read =
        Event::load("fhir-api/smart-configuration.json").with_datastore(&datastore).replace(".well-known/smart-configuration", "metadata");
    let refused = invoke(&context, &unsigned_read).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer realm=\"fhirlake\""));
}

#[tokio::test]
async fn bad_json_is_400_and_oversized_bodies_413() {
    let context = memory_context(sample_keys(), None);
    let datastore = create_datastore(&context).await;
    let bad = invoke(&context, &Event::load("fhir-api/create-patient-bad-json.json").with_datastore(&datastore).signed()).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["issue"][0]["code"], "structure");

    let oversized = vec![b' '; fhirlake_api::MAX_REQUEST_BYTES + 1];
    let event = Event::load("fhir-api/create-patient.json").with_datastore(&datastore).with_body(&oversized).signed();
    let response = invoke(&context, &event).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["issue"][0]["code"], "too-costly");

    let event = Event::load("control-plane/create-datastore.json").with_body(&oversized).signed();
    let response = invoke(&context, &event).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["__type"], "ValidationException");
}

#[tokio::test]
async fn tampered_and_stale_requests_are_refused_in_each_planes_dialect() {
    let context = memory_context(sample_keys(), None);
    let datastore = create_datastore(&context).await;

    // The body changed after signing.
    let tampered =
        Event::load("fhir-api/create-patient.json").with_datastore(&datastore).signed().with_body(br#"{"resourceType":"Patient"}"#);
    let response = invoke(&context, &tampered).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["resourceType"], "OperationOutcome");
    assert_eq!(response.json()["issue"][0]["code"], "security");

    // The path changed after signing.
    let signed = Event::load("fhir-api/read-patient.json").with_datastore(&datastore).signed();
    let moved = signed.replace(EVENTS_PATIENT, "another-patient");
    assert_eq!(invoke(&context, &moved).await.status, 403);

    // The query changed after signing.
    let searched = Event::load("fhir-api/search-patient.json").with_datastore(&datastore).signed().replace("family=Doe", "family=Roe");
    assert_eq!(invoke(&context, &searched).await.status, 403);

    // Control plane: the target changed after signing.
    let describe = Event::load("control-plane/describe-datastore.json").with_datastore(&datastore).signed();
    let retargeted = describe.set_header("x-amz-target", "HealthLake.DeleteFHIRDatastore");
    let response = invoke(&context, &retargeted).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["__type"], "InvalidSignatureException");

    // The samples as committed were signed in 2024: expired.
    let response = invoke(&context, &Event::load("control-plane/describe-datastore.json")).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["__type"], "InvalidSignatureException");

    // Another key pair.
    let stranger = Event::load("control-plane/describe-datastore.json").signed_with(&Credentials::new("AKIDSTRANGER", "x"), "healthlake");
    assert_eq!(invoke(&context, &stranger).await.json()["__type"], "UnrecognizedClientException");
}

#[tokio::test]
async fn iam_mode_takes_the_principal_from_the_request_context() {
    let context = memory_context(Authentication::Iam, None);
    let iam = Event::load("fhir-api/read-patient-iam.json");
    let iam_authorizer = iam.0["requestContext"]["authorizer"].clone();
    let with_iam = |event: Event| {
        let mut event = event;
        event.0["requestContext"]["authorizer"] = iam_authorizer.clone();
        event
    };

    // No SigV4 check of our own in this mode: the events keep their (stale) signatures.
    let created = invoke(&context, &with_iam(Event::load("control-plane/create-datastore.json"))).await;
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    let datastore = created.json()["DatastoreId"].as_str().expect("an id").to_string();
    let patient = invoke(&context, &with_iam(Event::load("fhir-api/create-patient.json").with_datastore(&datastore))).await;
    assert_eq!(patient.status, 201);
    let id = patient.json()["id"].as_str().expect("an id").to_string();

    let read = invoke(&context, &iam.clone().with_datastore(&datastore).with_patient(&id)).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["id"], id);

    // Without the authorizer's principal the request is refused, even when SigV4-signed.
    let bare = iam.with_datastore(&datastore).with_patient(&id).without_authorizer();
    let response = invoke(&context, &bare).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["issue"][0]["code"], "security");
    let signed = Event::load("control-plane/describe-datastore.json").with_datastore(&datastore).without_authorizer().signed();
    let response = invoke(&context, &signed).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["__type"], "AccessDeniedException");
}

#[tokio::test]
async fn healthlake_mode_ignores_an_iam_principal() {
    let context = memory_context(sample_keys(), None);
    let response = invoke(&context, &Event::load("fhir-api/read-patient-iam.json")).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["issue"][0]["code"], "security");
}

#[tokio::test]
async fn a_configured_public_url_wins_over_the_domain() {
    let context = memory_context(sample_keys(), Some("https://fhir.example.com/"));
    let created = invoke(&context, &Event::load("control-plane/create-datastore.json").signed()).await;
    let id = created.json()["DatastoreId"].as_str().expect("an id").to_string();
    assert_eq!(created.json()["DatastoreEndpoint"], format!("https://fhir.example.com/datastore/{id}/r4/"));
}

#[tokio::test]
async fn the_first_requests_domain_is_kept() {
    let context = memory_context(sample_keys(), None);
    let first = invoke(&context, &Event::load("control-plane/create-datastore.json").signed()).await;
    let id = first.json()["DatastoreId"].as_str().expect("an id").to_string();
    let elsewhere = Event::load("control-plane/describe-datastore.json").with_datastore(&id).replace(DOMAIN, "other.example.com").signed();
    let described = invoke(&context, &elsewhere).await;
    assert_eq!(described.status, 200);
    assert_eq!(described.json()["DatastoreProperties"]["DatastoreEndpoint"], format!("https://{DOMAIN}/datastore/{id}/r4/"));
}

#[tokio::test]
async fn without_a_domain_or_public_url_the_request_is_refused() {
    let context = memory_context(sample_keys(), None);
    let mut event = Event::load("control-plane/describe-datastore.json").signed();
    if let Some(request_context) = event.0["requestContext"].as_object_mut() {
        request_context.remove("domainName");
    }
    let response = invoke(&context, &event).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["__type"], "ValidationException");
    // Nothing was cached: a proper request still works.
    let response = invoke(&context, &Event::load("control-plane/create-datastore.json").signed()).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["DatastoreEndpoint"].as_str().map(|e| e.starts_with(&format!("https://{DOMAIN}/"))), Some(true));
}

#[tokio::test]
async fn every_sample_event_parses_as_an_http_api_v2_request() {
    for plane in ["fhir-api", "control-plane"] {
        for entry in std::fs::read_dir(events_dir().join(plane)).expect("the events directory") {
            let path = entry.expect("an entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            let request = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let event: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(event["version"], "2.0", "{}", path.display());
            assert_eq!(event["requestContext"]["stage"], "$default", "{}", path.display());
            // $default stage: the path reaches the router without a stage prefix.
            assert_eq!(request.uri().path(), event["rawPath"].as_str().expect("rawPath"), "{}", path.display());
            assert_eq!(request.method().as_str(), event["requestContext"]["http"]["method"], "{}", path.display());
        }
    }
}
