//! The `batch-response` / `transaction-response` Bundle (http.html#transaction-response, bundle.html).
//!
//! "The response bundle … contains one entry for each entry in the request, in the same order, with the
//! outcome of processing the entry": [`response_bundle`] puts the executor's [`EntryResponse`]s back in
//! bundle order by their index, whatever order they were executed in. Each `Bundle.entry.response` has the
//! status as a code and its reason phrase (`201 Created`), and optionally `location`, `etag` (`W/"n"`),
//! `lastModified` (an instant) and `outcome` (an OperationOutcome). The Bundle has no `id`, `link` or
//! `timestamp`: it is not stored and is not a page of anything.
//!
//! A transaction that fails is not answered with a Bundle but with an OperationOutcome and a 4xx/5xx status
//! ([`crate::outcome::operation_outcome`]).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::BundleKind;
use crate::outcome::{operation_outcome, Issue};
use crate::resource::format_instant;

/// The outcome of one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryResponse {
    /// The request entry's position in the submitted bundle, which orders the response entries.
    pub index: usize,
    /// The HTTP status code; rendered with its reason phrase by [`status_line`].
    pub status: u16,
    /// `response.location`: for a create, `Type/id/_history/vid`.
    pub location: Option<String>,
    /// `response.etag`: `W/"vid"` (see [`etag`]).
    pub etag: Option<String>,
    /// `response.lastModified`: the version's `meta.lastUpdated`.
    pub last_modified: Option<DateTime<Utc>>,
    /// `fullUrl` of the response entry: the absolute url of the resource, when there is one.
    pub full_url: Option<String>,
    /// The resource returned (`Prefer: return=representation`, a read, a search Bundle).
    pub resource: Option<Value>,
    /// `response.outcome`: an OperationOutcome (errors, warnings, `Prefer: return=OperationOutcome`).
    pub outcome: Option<Value>,
}

impl EntryResponse {
    /// A response with only a status.
    pub fn new(index: usize, status: u16) -> Self {
        EntryResponse { index, status, location: None, etag: None, last_modified: None, full_url: None, resource: None, outcome: None }
    }

    /// A failure: `status` with the issues as the entry's OperationOutcome.
    pub fn error(index: usize, status: u16, issues: &[Issue]) -> Self {
        EntryResponse { outcome: Some(operation_outcome(issues)), ..EntryResponse::new(index, status) }
    }

    /// The answer to a malformed batch entry ([`super::Plan::Invalid`]): `400 Bad Request` with its issues.
    pub fn invalid(index: usize, issues: &[Issue]) -> Self {
        EntryResponse::error(index, 400, issues)
    }

    /// Sets `location`.
    pub fn with_location(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }

    /// Sets `etag` to the weak ETag of `version` and `lastModified`.
    pub fn with_version(mut self, version: u64, last_modified: DateTime<Utc>) -> Self {
        self.etag = Some(etag(version));
        self.last_modified = Some(last_modified);
        self
    }

    /// Sets the entry's `fullUrl`.
    pub fn with_full_url(mut self, full_url: impl Into<String>) -> Self {
        self.full_url = Some(full_url.into());
        self
    }

    /// Sets the returned resource.
    pub fn with_resource(mut self, resource: Value) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Sets the outcome.
    pub fn with_outcome(mut self, outcome: Value) -> Self {
        self.outcome = Some(outcome);
        self
    }
}

/// The weak ETag of a version: `W/"3"`.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// The status as `Bundle.entry.response.status` gives it: "The status code SHALL be the first 3 characters of
/// the status, optionally followed by the HTTP text": `201 Created`, `404 Not Found`. A code without a known
/// reason phrase is the bare number.
pub fn status_line(code: u16) -> String {
    match http::StatusCode::from_u16(code).ok().and_then(|s| s.canonical_reason()) {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    }
}

/// The `batch-response` or `transaction-response` Bundle, entries in the request's order (by
/// [`EntryResponse::index`]; equal indexes keep the given order).
pub fn response_bundle(kind: BundleKind, mut entries: Vec<EntryResponse>) -> Value {
    entries.sort_by_key(|e| e.index);
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), "Bundle".into());
    bundle.insert("type".into(), kind.response_code().into());
    // FHIR forbids empty arrays: an empty transaction's response has no `entry`.
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries.into_iter().map(entry_json).collect()));
    }
    Value::Object(bundle)
}

fn entry_json(e: EntryResponse) -> Value {
    let mut response = Map::new();
    response.insert("status".into(), status_line(e.status).into());
    if let Some(location) = e.location {
        response.insert("location".into(), location.into());
    }
    if let Some(etag) = e.etag {
        response.insert("etag".into(), etag.into());
    }
    if let Some(at) = e.last_modified {
        response.insert("lastModified".into(), format_instant(at).into());
    }
    if let Some(outcome) = e.outcome {
        response.insert("outcome".into(), outcome);
    }
    let mut entry = Map::new();
    if let Some(full_url) = e.full_url {
        entry.insert("fullUrl".into(), full_url.into());
    }
    if let Some(resource) = e.resource {
        entry.insert("resource".into(), resource);
    }
    entry.insert("response".into(), Value::Object(response));
    Value::Object(entry)
}
