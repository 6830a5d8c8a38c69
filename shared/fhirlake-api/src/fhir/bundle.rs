//! Batch and transaction Bundles posted to the base (`POST [base]`, http.html#transaction).
//!
//! A batch runs each entry as the request it describes, through the very same dispatch as a
//! REST request, so every interaction behaves identically inside and outside bundles; each
//! entry gets its own status, and an OperationOutcome when it fails. A transaction commits its
//! writes all or none through [`fhirlake_core::transaction`], then runs its reads; any failure
//! fails the whole bundle with one OperationOutcome.

use axum::response::Response;
use bytes::Bytes;
use fhirlake_core::datastores::ActiveDatastore;
use fhirlake_core::resources::PatchDocument;
use fhirlake_core::transaction::EntryResult;
use fhirlake_core::Services;
use fhirlake_fhir::outcome::operation_outcome;
use fhirlake_fhir::transaction::{self, response_bundle, Body, BundleKind, EntryRequest, EntryResponse, Method, Plan, Target};
use http::{header, HeaderMap, HeaderValue, Method as HttpMethod, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use super::error::FhirError;
use super::guard::{authorize_write, Write};
use super::response::fhir_json;
use super::{dispatch_entry, parse_resource, FhirRequest};

/// Answers a posted batch or transaction Bundle.
pub async fn process(services: &Services, ds: &ActiveDatastore, req: &FhirRequest<'_>, base: &str) -> Result<Response, FhirError> {
    super::negotiation::check_content_type(req.headers, false)?;
    let body = parse_resource(&req.body)?;
    let bundle = transaction::parse(&body, base.trim_end_matches('/')).map_err(|issues| FhirError {
        status: StatusCode::BAD_REQUEST,
        issues,
        challenge: None,
    })?;
    let mut responses = Vec::with_capacity(bundle.entries.len());
    match bundle.kind {
        BundleKind::Batch => {
            for index in bundle.processing_order() {
                let entry = &bundle.entries[index];
                responses.push(match &entry.plan {
                    Plan::Invalid(issues) => EntryResponse::invalid(index, issues),
                    Plan::Request(request) => run_entry(services, req, base, request).await,
                });
            }
        }
        BundleKind::Transaction => {
            if !req.access.is_full() {
                for entry in &bundle.entries {
                    if let Some(request) = entry.request() {
                        authorize_transaction_write(services, ds, req, request).await?;
                    }
                }
            }
            let results = services.transactions.commit(ds, &bundle).await?;
            for index in bundle.processing_order() {
                let Some(request) = bundle.entries[index].request() else { continue };
                let response = match results.get(&index) {
                    Some(result) => written(base, index, result),
                    None => run_entry(services, req, base, request).await,
                };
                responses.push(response);
            }
        }
    }
    let bundle = response_bundle(bundle.kind, responses);
    Ok(fhir_json(StatusCode::OK, serde_json::to_vec(&bundle).unwrap_or_default()))
}

/// Checks a transaction's write entry against the token before anything is committed (reads
/// run afterwards through the dispatch, which checks them there). One refused entry refuses
/// the whole transaction.
async fn authorize_transaction_write(
    services: &Services,
    ds: &ActiveDatastore,
    req: &FhirRequest<'_>,
    request: &EntryRequest,
) -> Result<(), FhirError> {
    let patch = match &request.body {
        Body::JsonPatch(v) => Some(PatchDocument::Json(v.clone())),
        Body::FhirPathPatch(v) => Some(PatchDocument::FhirPath(v.clone())),
        _ => None,
    };
    let resource = match &request.body {
        Body::Resource(v) => Some(v),
        _ => None,
    };
    let (resource_type, write) = match (&request.method, &request.target) {
        (Method::Post, Target::Type { resource_type }) => match (request.if_none_exist.is_some(), resource) {
            (false, Some(body)) => (resource_type, Write::Create(body)),
            _ => (resource_type, Write::Conditional),
        },
        (Method::Put, Target::Instance { resource_type, id }) => match resource {
            Some(body) => (resource_type, Write::Update(id, body)),
            None => return Ok(()),
        },
        (Method::Patch, Target::Instance { resource_type, id }) => match &patch {
            Some(document) => (resource_type, Write::Patch(id, document)),
            None => return Ok(()),
        },
        (Method::Delete, Target::Instance { resource_type, id }) => (resource_type, Write::Delete(id)),
        (Method::Put | Method::Patch | Method::Delete, Target::Conditional { resource_type, .. }) => (resource_type, Write::Conditional),
        _ => return Ok(()),
    };
    authorize_write(services, ds, req.access, resource_type, write).await.map(drop)
}

/// The response entry of a committed write.
fn written(base: &str, index: usize, result: &EntryResult) -> EntryResponse {
    let (version, status) = match result {
        EntryResult::Written { version, created } => (version, if *created { 201 } else { 200 }),
        EntryResult::Exists(version) => (version, 200),
        EntryResult::Deleted(None) => return EntryResponse::new(index, 204),
        EntryResult::Deleted(Some(version)) => return EntryResponse::new(index, 204).with_version(version.version, version.last_updated),
    };
    let mut response = EntryResponse::new(index, status)
        .with_location(format!("{}/{}/_history/{}", version.resource_type, version.id, version.version))
        .with_version(version.version, version.last_updated)
        .with_full_url(format!("{base}{}/{}", version.resource_type, version.id));
    if let Some(resource) = version.body.as_ref().and_then(|b| serde_json::from_slice::<Value>(b).ok()) {
        response = response.with_resource(resource);
    }
    response
}

/// Runs one entry as the request it describes and turns the HTTP response into its entry.
async fn run_entry(services: &Services, outer: &FhirRequest<'_>, base: &str, request: &EntryRequest) -> EntryResponse {
    let index = request.index;
    let (path, query) = request.url.split_once('?').unwrap_or((&request.url, ""));
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let mut headers = HeaderMap::new();
    let (content_type, body) = match &request.body {
        Body::None => ("application/fhir+json", Bytes::new()),
        Body::Resource(v) | Body::FhirPathPatch(v) => ("application/fhir+json", Bytes::from(serde_json::to_vec(v).unwrap_or_default())),
        Body::JsonPatch(v) => ("application/json-patch+json", Bytes::from(serde_json::to_vec(v).unwrap_or_default())),
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let mut set = |name: &'static str, value: Option<String>| {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, v);
        }
    };
    set("if-match", request.if_match.clone());
    set("if-none-match", request.if_none_match.clone());
    set(
        "if-none-exist",
        request.if_none_exist.as_ref().map(|q| url::form_urlencoded::Serializer::new(String::new()).extend_pairs(q).finish()),
    );
    let method = HttpMethod::from_bytes(request.method.as_str().as_bytes()).unwrap_or(HttpMethod::GET);
    if method == HttpMethod::POST && segments.is_empty() {
        return EntryResponse::error(index, 400, &[fhirlake_fhir::outcome::Issue::error("not-supported", "bundles cannot be nested")]);
    }
    let inner =
        FhirRequest { method: &method, datastore_id: outer.datastore_id, segments, query, headers: &headers, body, access: outer.access };
    let response = match dispatch_entry(services, &inner).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    entry_response(index, base, response).await
}

/// The entry of a response; locations are relative to the base, as in the specification's examples.
async fn entry_response(index: usize, base: &str, response: Response) -> EntryResponse {
    let status = response.status();
    let (location, etag, last_modified) = {
        let header = |name: header::HeaderName| response.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
        (header(header::LOCATION), header(header::ETAG), header(header::LAST_MODIFIED))
    };
    let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let json = serde_json::from_slice::<Value>(&bytes).ok();
    let mut entry = EntryResponse::new(index, status.as_u16());
    entry.location = location.map(|l| l.strip_prefix(base).map(String::from).unwrap_or(l));
    entry.etag = etag;
    entry.last_modified = last_modified.and_then(|d| chrono::DateTime::parse_from_rfc2822(&d).ok()).map(|d| d.with_timezone(&chrono::Utc));
    match json {
        Some(outcome) if status.is_client_error() || status.is_server_error() => entry.outcome = Some(outcome),
        Some(resource) => entry.resource = Some(resource),
        None if status.is_client_error() || status.is_server_error() => {
            entry.outcome = Some(operation_outcome(&[fhirlake_fhir::outcome::Issue::error("exception", "the entry failed")]))
        }
        None => {}
    }
    entry
}
