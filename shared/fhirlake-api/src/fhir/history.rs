//! History interactions at instance, type and system level, paged by an opaque cursor.

use axum::response::Response;
use chrono::{DateTime, Utc};
use fhirlake_core::datastores::ActiveDatastore;
use fhirlake_core::resources::{HistoryPage, HistoryQuery, HistoryScope, Method, StoredVersion};
use fhirlake_core::Services;
use fhirlake_fhir::bundle::{history_bundle, HistoryEntry, Link};
use fhirlake_fhir::resource::format_instant;
use http::StatusCode;
use serde_json::value::RawValue;

use fhirlake_smart::Interaction;

use super::error::FhirError;
use super::guard;
use super::response::{etag, fhir_json};
use super::FhirRequest;

/// Page size when `_count` is absent.
const DEFAULT_COUNT: usize = 50;

pub async fn system(services: &Services, ds: &ActiveDatastore, req: &FhirRequest<'_>, base: &str) -> Result<Response, FhirError> {
    read(services, ds, req, base, HistoryScope::System, "_history").await
}

pub async fn of_type(
    services: &Services,
    ds: &ActiveDatastore,
    req: &FhirRequest<'_>,
    base: &str,
    resource_type: &str,
) -> Result<Response, FhirError> {
    read(services, ds, req, base, HistoryScope::Type(resource_type), &format!("{resource_type}/_history")).await
}

pub async fn of_instance(
    services: &Services,
    ds: &ActiveDatastore,
    req: &FhirRequest<'_>,
    base: &str,
    resource_type: &str,
    id: &str,
) -> Result<Response, FhirError> {
    read(services, ds, req, base, HistoryScope::Instance(resource_type, id), &format!("{resource_type}/{id}/_history")).await
}

async fn read(
    services: &Services,
    ds: &ActiveDatastore,
    req: &FhirRequest<'_>,
    base: &str,
    scope: HistoryScope<'_>,
    path: &str,
) -> Result<Response, FhirError> {
    let query = parse_query(req, services.config.max_page_size)?;
    // Instance history reads one resource; type and system history search across resources.
    match &scope {
        HistoryScope::Instance(resource_type, _) => drop(guard::permit(req.access, resource_type, Interaction::Read)?),
        HistoryScope::Type(resource_type) => drop(guard::permit(req.access, resource_type, Interaction::Search)?),
        HistoryScope::System => guard::require_everything(req.access, Interaction::Search, "system history")?,
    }
    let instance = matches!(scope, HistoryScope::Instance(..));
    let interaction = if instance { Interaction::Read } else { Interaction::Search };
    let mut page = services.resources.history(ds, scope, &query).await?;
    if guard::retain(req.access, interaction, &mut page.entries) {
        if instance && page.entries.is_empty() {
            return Err(guard::outside_reach());
        }
        page.total = None;
    }
    Ok(fhir_json(StatusCode::OK, render(base, path, &query, &page)?))
}

fn parse_query(req: &FhirRequest<'_>, max_count: usize) -> Result<HistoryQuery, FhirError> {
    let count = match req.param("_count") {
        None => DEFAULT_COUNT,
        Some(c) => c.parse::<usize>().ok().filter(|c| *c > 0).ok_or_else(|| FhirError::bad_request("_count must be a positive integer"))?,
    };
    let since = match req.param("_since") {
        None => None,
        Some(s) => Some(parse_instant(s).ok_or_else(|| FhirError::bad_request("_since must be an instant such as 2024-01-01T00:00:00Z"))?),
    };
    Ok(HistoryQuery { count: count.min(max_count), since, cursor: req.param("_cursor").map(str::to_string) })
}

fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
}

fn render(base: &str, path: &str, query: &HistoryQuery, page: &HistoryPage) -> Result<Vec<u8>, FhirError> {
    let raws: Vec<Option<Box<RawValue>>> = page
        .entries
        .iter()
        .map(|v| v.body.as_ref().map(|b| RawValue::from_string(String::from_utf8_lossy(b).into_owned())).transpose())
        .collect::<Result<_, _>>()
        .map_err(|_| FhirError::new(StatusCode::INTERNAL_SERVER_ERROR, "exception", "internal error"))?;
    let entries: Vec<HistoryEntry<'_>> = page.entries.iter().zip(&raws).map(|(v, raw)| entry(base, v, raw.as_deref())).collect();
    let mut links = vec![Link { relation: "self", url: page_url(base, path, query, query.cursor.as_deref()) }];
    if let Some(next) = &page.next_cursor {
        links.push(Link { relation: "next", url: page_url(base, path, query, Some(next)) });
    }
    Ok(history_bundle(&entries, &links, page.total))
}

fn entry<'a>(base: &str, v: &StoredVersion, resource: Option<&'a RawValue>) -> HistoryEntry<'a> {
    let (url, status) = match v.method {
        Method::Create => (v.resource_type.clone(), "201 Created"),
        Method::CreateByUpdate => (format!("{}/{}", v.resource_type, v.id), "201 Created"),
        Method::Update | Method::Patch => (format!("{}/{}", v.resource_type, v.id), "200 OK"),
        Method::Delete => (format!("{}/{}", v.resource_type, v.id), "204 No Content"),
    };
    HistoryEntry {
        full_url: format!("{base}{}/{}", v.resource_type, v.id),
        resource,
        method: v.method.http_verb(),
        url,
        status,
        etag: etag(v.version),
        last_modified: format_instant(v.last_updated),
    }
}

fn page_url(base: &str, path: &str, query: &HistoryQuery, cursor: Option<&str>) -> String {
    let mut params = url::form_urlencoded::Serializer::new(String::new());
    params.append_pair("_count", &query.count.to_string());
    if let Some(since) = query.since {
        params.append_pair("_since", &format_instant(since));
    }
    if let Some(cursor) = cursor {
        params.append_pair("_cursor", cursor);
    }
    format!("{base}{path}?{}", params.finish())
}
