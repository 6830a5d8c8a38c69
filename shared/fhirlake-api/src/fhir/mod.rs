//! The FHIR R4 data plane at `/datastore/{id}/r4/...`: routing of the FHIR RESTful interactions
//! onto [`fhirlake_core::resources::ResourceService`].

mod bundle;
mod error;
mod export;
mod guard;
mod history;
mod negotiation;
mod response;
mod search;

use axum::response::Response;
use bytes::Bytes;
use fhirlake_core::access::Access;
use fhirlake_core::conditional::CreateOutcome;
use fhirlake_core::datastores::{ActiveDatastore, AuthorizationStrategy};
use fhirlake_core::jobs::ExportScope;
use fhirlake_core::resources::{PatchDocument, StoredVersion, WriteOutcome};
use fhirlake_core::search::Scope;
use fhirlake_core::Services;
use fhirlake_fhir::outcome::{operation_outcome, Issue};
use fhirlake_fhir::registry;
use fhirlake_fhir::search::query;
use fhirlake_fhir::search::Criterion;
use fhirlake_smart::Interaction;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;

pub use error::FhirError;
use guard::Write;
use negotiation::{RequestBody, ReturnPreference};
use response::{fhir_json, with_version_headers};

/// A data-plane request after authentication: the path below `/r4/` split into segments.
pub struct FhirRequest<'a> {
    /// The HTTP method.
    pub method: &'a Method,
    /// The datastore id from the URL.
    pub datastore_id: &'a str,
    /// Percent-decoded path segments after `/r4/`.
    pub segments: Vec<String>,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The request body.
    pub body: Bytes,
    /// What the authenticated caller may touch.
    pub access: &'a Access,
}

impl FhirRequest<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Handles one data-plane request; every failure becomes an OperationOutcome response.
pub async fn handle(services: &Services, request: FhirRequest<'_>) -> Response {
    match dispatch(services, &request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// [`dispatch`] behind a boxed future, for the entries of a batch: the recursion through
/// bundles needs one type that is declared `Send` rather than inferred.
pub(crate) fn dispatch_entry<'a>(
    services: &'a Services,
    req: &'a FhirRequest<'a>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, FhirError>> + Send + 'a>> {
    Box::pin(dispatch(services, req))
}

async fn dispatch(services: &Services, req: &FhirRequest<'_>) -> Result<Response, FhirError> {
    negotiation::check_accept(req.headers, req.param("_format"))?;
    let base = services.config.datastore_endpoint(req.datastore_id);
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let ds = services.datastores.active(req.datastore_id).await?;
    let ds = &ds;
    if let [resource_type, ..] = segments.as_slice() {
        let operation = matches!(*resource_type, "metadata" | "$export" | "export");
        if !resource_type.starts_with('_') && !operation && !registry::is_resource_type(resource_type) {
            return Err(FhirError::new(StatusCode::NOT_FOUND, "not-supported", format!("unknown resource type {resource_type}")));
        }
    }
    match (req.method.clone(), segments.as_slice()) {
        (Method::GET, ["metadata"]) => Ok(capability(services, &base, ds)),
        (_, ["metadata"]) => Err(method_not_allowed()),
        (Method::GET | Method::POST, ["$export"]) => export::kick_off(services, ds, req, &base, ExportScope::System).await,
        (Method::GET | Method::POST, ["Patient", "$export"]) => export::kick_off(services, ds, req, &base, ExportScope::Patient).await,
        (Method::GET | Method::POST, ["Group", id, "$export"]) => {
            export::kick_off(services, ds, req, &base, ExportScope::Group { id: id.to_string() }).await
        }
        (Method::GET, ["export", job_id]) => export::status(services, ds, req.access, &base, job_id).await,
        (Method::GET, ["export", job_id, file]) => export::file(services, ds, req.access, job_id, file).await,
        (Method::DELETE, ["export", job_id]) => export::cancel(services, ds, req.access, job_id).await,
        (_, ["$export"] | ["export", _]) => Err(method_not_allowed()),
        (Method::GET, ["_history"]) => history::system(services, ds, req, &base).await,
        (Method::POST, ["_search"]) => search::search(services, ds, req, &base, None, Scope::default()).await,
        (Method::GET, [resource_type]) => search::search(services, ds, req, &base, Some(resource_type), Scope::default()).await,
        (Method::POST, [resource_type, "_search"]) => search::search(services, ds, req, &base, Some(resource_type), Scope::default()).await,
        (Method::GET, ["Patient", "$everything"]) => search::everything(services, ds, req, &base, None).await,
        (Method::GET, ["Patient", id, "$everything"]) => search::everything(services, ds, req, &base, Some(id)).await,
        (Method::GET, [compartment, id, resource_type])
            if *resource_type != "_history"
                && registry::compartment_types().any(|c| c == *compartment)
                && registry::is_resource_type(resource_type) =>
        {
            let scope = Scope { compartment: Some((compartment.to_string(), id.to_string())) };
            search::search(services, ds, req, &base, Some(resource_type), scope).await
        }
        (Method::POST, [resource_type]) => create(services, ds, req, &base, resource_type).await,
        (Method::GET, [resource_type, "_history"]) => history::of_type(services, ds, req, &base, resource_type).await,
        (Method::GET, [resource_type, id]) => {
            let permit = guard::permit(req.access, resource_type, Interaction::Read)?;
            let v = services.resources.read(ds, resource_type, id).await?;
            guard::check_version(&permit, &v)?;
            Ok(representation(StatusCode::OK, &v, None))
        }
        (Method::PUT, [resource_type, id]) => update_target(services, ds, req, &base, resource_type, Some(id)).await,
        (Method::PUT, [resource_type]) => update_target(services, ds, req, &base, resource_type, None).await,
        (Method::PATCH, [resource_type]) => patch_target(services, ds, req, &base, resource_type, None).await,
        (Method::DELETE, [resource_type]) => {
            guard::authorize_write(services, ds, req.access, resource_type, Write::Conditional).await?;
            let criteria = conditional_criteria(resource_type, &req.query)?;
            let deleted = services.conditional.delete(ds, resource_type, &criteria).await?;
            Ok(no_content(deleted.as_ref()))
        }
        (Method::PATCH, [resource_type, id]) => patch_target(services, ds, req, &base, resource_type, Some(id)).await,
        (Method::DELETE, [resource_type, id]) => {
            let if_match = negotiation::if_match(req.headers)?;
            let checked = guard::authorize_write(services, ds, req.access, resource_type, Write::Delete(id)).await?;
            let deleted = services.resources.delete(ds, resource_type, id, if_match.or(checked)).await?;
            Ok(no_content(deleted.as_ref()))
        }
        (Method::GET, [resource_type, id, "_history"]) => history::of_instance(services, ds, req, &base, resource_type, id).await,
        (Method::GET, [resource_type, id, "_history", version]) => {
            let version = version
                .parse::<u64>()
                .map_err(|_| FhirError::new(StatusCode::NOT_FOUND, "not-found", "version ids are positive integers"))?;
            let permit = guard::permit(req.access, resource_type, Interaction::Read)?;
            let v = services.resources.vread(ds, resource_type, id, version).await?;
            guard::check_version(&permit, &v)?;
            Ok(representation(StatusCode::OK, &v, None))
        }
        (Method::POST, []) => bundle::process(services, ds, req, &base).await,
        (Method::GET, []) => search::search(services, ds, req, &base, None, Scope::default()).await,
        (_, [] | [_] | [_, _] | [_, _, "_history"] | [_, _, "_history", _]) => Err(method_not_allowed()),
        _ => Err(FhirError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint")),
    }
}

async fn create(
    services: &Services,
    ds: &ActiveDatastore,
    req: &FhirRequest<'_>,
    base: &str,
    resource_type: &str,
) -> Result<Response, FhirError> {
    negotiation::check_content_type(req.headers, false)?;
    let mut body = parse_resource(&req.body)?;
    // The server assigns the id of a created resource; a client-sent id is ignored (FHIR http.html#create).
    if let Value::Object(map) = &mut body {
        map.shift_remove("id");
    }
    let write = match req.headers.contains_key("if-none-exist") {
        true => Write::Conditional,
        false => Write::Create(&body),
    };
    guard::authorize_write(services, ds, req.access, resource_type, write).await?;
    let outcome = match req.headers.get("if-none-exist") {
        None => services.resources.create(ds, resource_type, body).await?,
        Some(value) => {
            let query = value.to_str().map_err(|_| FhirError::bad_request("If-None-Exist must be a query string"))?;
            // `If-None-Exist: identifier=…`, also accepted as `Patient?identifier=…`.
            let query = query.split_once('?').map_or(query, |(_, q)| q);
            let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let criteria = conditional_criteria(resource_type, &params)?;
            match services.conditional.create(ds, resource_type, body, &criteria).await? {
                CreateOutcome::Created(outcome) => outcome,
                CreateOutcome::Exists(existing) => WriteOutcome { version: existing, created: false },
            }
        }
    };
    Ok(written(req, base, &outcome))
}

/// What an update or patch addresses: one id, or (at type level) search criteria.
enum Addressed<'a> {
    Id(&'a str),
    Criteria(Vec<Criterion>),
}

impl<'a> Addressed<'a> {
    fn of(resource_type: &str, id: Option<&'a str>, query: &[(String, String)]) -> Result<Self, FhirError> {
        match id {
            Some(id) => Ok(Addressed::Id(id)),
            None => Ok(Addressed::Criteria(conditional_criteria(resource_type, query)?)),
        }
    }
}

/// The criteria of a conditional interaction (400 when malformed or missing).
fn conditional_criteria(resource_type: &str, params: &[(String, String)]) -> Result<Vec<Criterion>, FhirError> {
    query::conditional_criteria(resource_type, params).map_err(|e| FhirError::new(StatusCode::BAD_REQUEST, e.issue_code(), e.to_string()))
}

/// 204, with the version headers of the deletion when one was recorded.
fn no_content(deleted: Option<&StoredVersion>) -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    match deleted {
        Some(v) => with_version_headers(response, v, None),
        None => response,
    }
}

/// `PUT [type]/[id]`, or `PUT [type]?criteria` when `id` is `None`.
async fn update_target(
    services: &Services,
    ds: &ActiveDatastore,
    req: &FhirRequest<'_>,
    base: &str,
    resource_type: &str,
    id: Option<&str>,
) -> Result<Response, FhirError> {
    negotiation::check_content_type(req.headers, false)?;
    let if_match = negotiation::if_match(req.headers)?;
    let target = Addressed::of(resource_type, id, &req.query)?;
    let body = parse_resource(&req.body)?;
    let write = match &target {
        Addressed::Id(id) => Write::Update(id, &body),
        Addressed::Criteria(_) => Write::Conditional,
    };
    let checked = guard::authorize_write(services, ds, req.access, resource_type, write).await?;
    let outcome = match target {
        Addressed::Id(id) => services.resources.update(ds, resource_type, id, body, if_match.or(checked)).await?,
        Addressed::Criteria(criteria) => services.conditional.update(ds, resource_type, &criteria, body, if_match).await?,
    };
    Ok(written(req, base, &outcome))
}

/// `PATCH [type]/[id]`, or `PATCH [type]?criteria` when `id` is `None`.
async fn patch_target(
    services: &Services,
    ds: &ActiveDatastore,
    req: &FhirRequest<'_>,
    base: &str,
    resource_type: &str,
    id: Option<&str>,
) -> Result<Response, FhirError> {
    let kind = negotiation::check_content_type(req.headers, true)?;
    let if_match = negotiation::if_match(req.headers)?;
    let target = Addressed::of(resource_type, id, &req.query)?;
    let document = parse_json(&req.body)?;
    let document = match kind {
        RequestBody::JsonPatch => PatchDocument::Json(document),
        RequestBody::Resource => {
            if document.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
                return Err(FhirError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "not-supported",
                    "a FHIR JSON patch body must be a FHIRPath Patch Parameters resource; send JSON Patch as application/json-patch+json",
                ));
            }
            PatchDocument::FhirPath(document)
        }
    };
    let write = match &target {
        Addressed::Id(id) => Write::Patch(id, &document),
        Addressed::Criteria(_) => Write::Conditional,
    };
    let checked = guard::authorize_write(services, ds, req.access, resource_type, write).await?;
    let outcome = match target {
        Addressed::Id(id) => services.resources.patch(ds, resource_type, id, &document, if_match.or(checked)).await?,
        Addressed::Criteria(criteria) => services.conditional.patch(ds, resource_type, &criteria, &document, if_match).await?,
    };
    Ok(written(req, base, &outcome))
}

/// The response to a successful write, shaped by `Prefer: return=...`.
fn written(req: &FhirRequest<'_>, base: &str, outcome: &WriteOutcome) -> Response {
    let v = &outcome.version;
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    let location = format!("{base}{}/{}/_history/{}", v.resource_type, v.id, v.version);
    match negotiation::return_preference(req.headers) {
        ReturnPreference::Representation => representation(status, v, Some(&location)),
        ReturnPreference::Minimal => {
            let mut response = Response::new(axum::body::Body::empty());
            *response.status_mut() = status;
            with_version_headers(response, v, Some(&location))
        }
        ReturnPreference::OperationOutcome => {
            let verb = if outcome.created { "created" } else { "updated" };
            let oo = operation_outcome(&[Issue::information(
                "informational",
                format!("{}/{} {verb} as version {}", v.resource_type, v.id, v.version),
            )]);
            with_version_headers(fhir_json(status, serde_json::to_vec(&oo).unwrap_or_default()), v, Some(&location))
        }
    }
}

fn representation(status: StatusCode, v: &StoredVersion, location: Option<&str>) -> Response {
    let body = v.body.clone().unwrap_or_default();
    with_version_headers(fhir_json(status, body), v, location)
}

fn capability(services: &Services, base: &str, ds: &ActiveDatastore) -> Response {
    let today = services.clock().now().format("%Y-%m-%d").to_string();
    let mut statement = fhirlake_fhir::capability::capability_statement(base.trim_end_matches('/'), env!("CARGO_PKG_VERSION"), &today);
    if let Some(discovery) = smart_discovery(ds) {
        fhirlake_fhir::capability::with_smart_security(&mut statement, &discovery);
    }
    fhir_json(StatusCode::OK, serde_json::to_vec(&statement).unwrap_or_default())
}

/// The SMART discovery document of a datastore with a SMART on FHIR strategy: its
/// IdentityProviderConfiguration's Metadata (a JSON object, checked when it was set).
fn smart_discovery(ds: &ActiveDatastore) -> Option<Value> {
    let idp = &ds.identity_provider;
    if idp.authorization_strategy == AuthorizationStrategy::AwsAuth {
        return None;
    }
    idp.metadata.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()).filter(Value::is_object)
}

/// `GET [base]/.well-known/smart-configuration`, answered without authentication (SMART App
/// Launch requires it; HealthLake asks for SigV4 here): the datastore's SMART discovery
/// document, or 404 when the datastore does not use SMART on FHIR.
pub async fn smart_configuration(services: &Services, datastore_id: &str) -> Response {
    let discovery = match services.datastores.active(datastore_id).await {
        Ok(ds) => smart_discovery(&ds),
        Err(e) => return FhirError::from(e).into_response(),
    };
    match discovery {
        Some(document) => {
            let mut response = Response::new(axum::body::Body::from(serde_json::to_vec(&document).unwrap_or_default()));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        None => {
            FhirError::new(StatusCode::NOT_FOUND, "not-found", "this datastore does not use SMART on FHIR authorization").into_response()
        }
    }
}

fn parse_json(body: &[u8]) -> Result<Value, FhirError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FhirError::new(StatusCode::BAD_REQUEST, "structure", "the request body is empty"));
    }
    serde_json::from_slice(body).map_err(|e| {
        FhirError::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the body is not valid json (line {}, column {})", e.line(), e.column()),
        )
    })
}

pub(crate) fn parse_resource(body: &[u8]) -> Result<Value, FhirError> {
    let value = parse_json(body)?;
    if !value.is_object() {
        return Err(FhirError::new(StatusCode::BAD_REQUEST, "structure", "the body must be a json object"));
    }
    Ok(value)
}

fn method_not_allowed() -> FhirError {
    FhirError::new(StatusCode::METHOD_NOT_ALLOWED, "not-supported", "this interaction is not supported on this path")
}
