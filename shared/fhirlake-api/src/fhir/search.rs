//! Search interactions: `GET [type]?…`, `POST [type]/_search` (form-encoded parameters) and
//! compartment searches `GET [compartment]/[id]/[type]?…`, answered with searchset Bundles.

use std::borrow::Cow;

use axum::response::Response;
use fhirlake_core::access::{Access, Permit};
use fhirlake_core::datastores::ActiveDatastore;
use fhirlake_core::search::{Scope, SearchPage};
use fhirlake_core::Services;
use fhirlake_fhir::bundle::{searchset_bundle, Link, SearchEntry};
use fhirlake_fhir::search::query::{self, Handling, SearchError};
use fhirlake_fhir::search::{shape, SearchRequest, SummaryMode, TotalMode};
use fhirlake_smart::Interaction;
use http::{header, StatusCode};
use serde_json::value::RawValue;
use serde_json::Value;

use super::error::FhirError;
use super::guard;
use super::response::fhir_json;
use super::FhirRequest;

/// Page size when `_count` is absent (never more than the configured largest page,
/// `ServiceConfig::max_page_size`, to which larger `_count`s are reduced: search.html#count).
pub const DEFAULT_COUNT: usize = 100;

/// Parameters that shape the response, not the match set, and are left out of `self` links
/// of later pages.
const PAGING: [&str; 1] = ["_cursor"];

/// Runs a search of `resource_type` (`None`: a system search, `[base]?…`) with the request's
/// query (and, for POST, its form body).
pub async fn search(
    services: &Services,
    ds: &ActiveDatastore,
    req: &FhirRequest<'_>,
    base: &str,
    resource_type: Option<&str>,
    scope: Scope,
) -> Result<Response, FhirError> {
    let params = parameters(req)?;
    let handling = req.headers.get("prefer").and_then(|v| v.to_str().ok()).map(Handling::from_prefer).unwrap_or_default();
    let mut request = query::parse(resource_type, &params, handling).map_err(search_error)?;
    let max = services.config.max_page_size;
    let count = request.result.count.unwrap_or(DEFAULT_COUNT).min(max);
    let summary_count = request.result.summary == Some(SummaryMode::Count);
    let path = match &scope.compartment {
        Some((compartment, id)) => format!("{compartment}/{id}/{}", resource_type.unwrap_or_default()),
        None => resource_type.unwrap_or_default().to_string(),
    };
    let mut scope = scope;
    let exact = confine(req.access, resource_type, &mut request, &mut scope)?;
    if !exact && (summary_count || request.result.total.is_some_and(|t| t != TotalMode::None)) {
        return Err(guard::needs_full_reach("counting matches"));
    }
    let mut page = services.search.search(ds, &request, &scope, if summary_count { 0 } else { count }).await?;
    if !exact && guard::retain(req.access, Interaction::Search, &mut page.matches) {
        page.total = None;
    }
    guard::retain(req.access, Interaction::Read, &mut page.included);
    let body = render(base, &path, &params, &request, &page, summary_count)?;
    Ok(fhir_json(StatusCode::OK, body))
}

/// Narrows a search to what the caller's token reaches. Returns whether the narrowed search
/// finds exactly what the token may see (then totals are true and nothing needs dropping);
/// otherwise the caller drops what the token may not see from each page.
///
/// - Full reach of the type: unchanged, exact.
/// - Confined to one compartment (`patient/…`, or fine-grained `user/…`), maybe with one scope
///   filter: a search of that compartment, with the filter's criteria added (exact). A search
///   that already names a compartment keeps it; it is exact when it names the same one.
/// - Several clauses (scopes of several contexts, or several filters): unchanged, not exact.
/// - A system search needs a permit for every type it covers (`_type`, or every type).
fn confine(access: &Access, resource_type: Option<&str>, request: &mut SearchRequest, scope: &mut Scope) -> Result<bool, FhirError> {
    let Some(resource_type) = resource_type else {
        let types = &request.result.types;
        let all: Vec<&str> = match types.is_empty() {
            true => fhirlake_fhir::registry::resource_types().to_vec(),
            false => types.iter().map(String::as_str).collect(),
        };
        let mut exact = true;
        for t in all {
            exact &= guard::permit(access, t, Interaction::Search)? == Permit::All;
        }
        return Ok(exact);
    };
    let permit = guard::permit(access, resource_type, Interaction::Search)?;
    if permit == Permit::All {
        return Ok(true);
    }
    if let Some(asked) = &scope.compartment {
        return Ok(permit.exact_compartment() == Some(asked));
    }
    let Some(clause) = permit.single_clause() else { return Ok(false) };
    let Some(criteria) = clause.filter_criteria(resource_type) else { return Err(guard::outside_reach()) };
    request.criteria.extend(criteria);
    scope.compartment = clause.compartment.clone();
    Ok(true)
}

/// The query's parameters, then the form body's for `POST …/_search` (http.html#search).
fn parameters(req: &FhirRequest<'_>) -> Result<Vec<(String, String)>, FhirError> {
    let mut params: Vec<(String, String)> = req.query.iter().filter(|(k, _)| k != "_format" && k != "_pretty").cloned().collect();
    if req.method == http::Method::POST {
        let form = req
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")));
        if !form && !req.body.is_empty() {
            return Err(FhirError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-supported",
                "post search parameters as application/x-www-form-urlencoded",
            ));
        }
        params.extend(url::form_urlencoded::parse(&req.body).into_owned());
    }
    Ok(params)
}

fn search_error(e: SearchError) -> FhirError {
    FhirError::new(StatusCode::BAD_REQUEST, e.issue_code(), e.to_string())
}

fn render(
    base: &str,
    path: &str,
    params: &[(String, String)],
    request: &SearchRequest,
    page: &SearchPage,
    summary_count: bool,
) -> Result<Vec<u8>, FhirError> {
    let query: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| !PAGING.contains(&k.as_str()) && !request.ignored.contains(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let link = |cursor: Option<&str>| {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &query {
            serializer.append_pair(k, v);
        }
        if let Some(c) = cursor {
            serializer.append_pair("_cursor", c);
        }
        let q = serializer.finish();
        if q.is_empty() {
            format!("{base}{path}")
        } else {
            format!("{base}{path}?{q}")
        }
    };
    let mut links = vec![Link { relation: "self", url: link(request.result.cursor.as_deref()) }];
    if let Some(next) = &page.next_cursor {
        links.push(Link { relation: "next", url: link(Some(next)) });
    }
    let mut raws: Vec<(String, Box<RawValue>, &'static str)> = Vec::new();
    if !summary_count {
        let shaping = matches!(request.result.summary, Some(SummaryMode::True | SummaryMode::Text | SummaryMode::Data))
            || !request.result.elements.is_empty();
        for (version, mode) in page.matches.iter().map(|v| (v, "match")).chain(page.included.iter().map(|v| (v, "include"))) {
            let Some(body) = &version.body else { continue };
            let text: Cow<'_, str> = String::from_utf8_lossy(body);
            let text = if shaping {
                let value: Value = serde_json::from_str(&text).map_err(|_| internal())?;
                match shape::shape(&value, request.result.summary, &request.result.elements) {
                    Some(shaped) => Cow::Owned(serde_json::to_string(&shaped).map_err(|_| internal())?),
                    None => text,
                }
            } else {
                text
            };
            let raw = RawValue::from_string(text.into_owned()).map_err(|_| internal())?;
            raws.push((format!("{base}{}/{}", version.resource_type, version.id), raw, mode));
        }
    }
    let entries: Vec<SearchEntry<'_>> =
        raws.iter().map(|(url, raw, mode)| SearchEntry { full_url: url.clone(), resource: raw, mode }).collect();
    Ok(searchset_bundle(&entries, &links, page.total))
}

fn internal() -> FhirError {
    FhirError::new(StatusCode::INTERNAL_SERVER_ERROR, "exception", "internal error")
}

/// `GET Patient/{id}/$everything` (one patient) and `GET Patient/$everything` (every patient,
/// `patient_id` `None`) with `_since`, `_type`, `_count` and paging.
pub async fn everything(
    services: &Services,
    ds: &ActiveDatastore,
    req: &FhirRequest<'_>,
    base: &str,
    patient_id: Option<&str>,
) -> Result<Response, FhirError> {
    let params: Vec<(String, String)> = req.query.iter().filter(|(k, _)| k != "_format" && k != "_pretty").cloned().collect();
    let mut types = Vec::new();
    let mut since = None;
    let mut count = DEFAULT_COUNT;
    let mut cursor = None;
    for (name, value) in &params {
        match name.as_str() {
            "_type" => {
                for t in value.split(',').filter(|t| !t.is_empty()) {
                    if !fhirlake_fhir::registry::is_resource_type(t) {
                        return Err(FhirError::bad_request("_type lists an unknown resource type"));
                    }
                    types.push(t.to_string());
                }
            }
            "_since" => {
                let parsed = chrono::DateTime::parse_from_rfc3339(value)
                    .map_err(|_| FhirError::bad_request("_since must be an instant such as 2024-01-01T00:00:00Z"))?;
                since = Some(parsed.with_timezone(&chrono::Utc));
            }
            "_count" => {
                count = value
                    .parse::<usize>()
                    .map_err(|_| FhirError::bad_request("_count must be a non-negative integer"))?
                    .min(services.config.max_page_size)
            }
            "_cursor" => cursor = Some(value.clone()),
            _ => {
                return Err(FhirError::new(
                    StatusCode::BAD_REQUEST,
                    "not-supported",
                    format!("$everything does not take the parameter {name}"),
                ))
            }
        }
    }
    if let Some(id) = patient_id {
        let permit = guard::permit(req.access, "Patient", Interaction::Read)?;
        if permit != Permit::All {
            guard::check_version(&permit, &services.resources.read(ds, "Patient", id).await?)?;
        }
    }
    let (mut page, path) = match patient_id {
        Some(id) => {
            (services.search.everything(ds, id, &types, since, count, cursor.as_deref()).await?, format!("Patient/{id}/$everything"))
        }
        None => (services.search.everything_for_all(ds, &types, since, count, cursor.as_deref()).await?, "Patient/$everything".into()),
    };
    if guard::retain(req.access, Interaction::Read, &mut page.matches) {
        page.total = None;
    }
    let request = SearchRequest {
        resource_type: Some("Patient".into()),
        criteria: Vec::new(),
        result: fhirlake_fhir::search::ResultParams { cursor, ..Default::default() },
        ignored: Vec::new(),
    };
    let body = render(base, &path, &params, &request, &page, false)?;
    Ok(fhir_json(StatusCode::OK, body))
}
