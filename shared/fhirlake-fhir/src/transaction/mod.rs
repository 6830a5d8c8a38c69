//! Batch and transaction Bundles (R4 `http.html#transaction`, `http.html#trules`, `bundle.html`), pure: the
//! storage layer executes the entries, this module tells it what they are, in which order, how references
//! between them are rewritten, and builds the response Bundle.
//!
//! - [`parse`] reads a `batch` or `transaction` Bundle into a [`RequestBundle`]: one [`Entry`] per
//!   `Bundle.entry`, each either a typed [`EntryRequest`] (verb, [`Target`], body, conditional fields) or, in a
//!   batch only, [`Plan::Invalid`] with the issues the executor answers with `400` while the other entries run.
//!   In a transaction any malformed entry fails the whole parse ("servers SHALL either accept all actions …
//!   or reject all resources"). Issues locate the problem as FHIRPath (`Bundle.entry[3].request.url`).
//! - [`RequestBundle::processing_order`] is the order to execute the entries in.
//! - [`references`] rewrites references to entries once the executor knows their ids, and finds conditional
//!   references (`Patient?identifier=…`) for it to resolve.
//! - [`response`] builds the `batch-response` / `transaction-response` Bundle.
//!
//! What the executor does with a transaction, in order:
//!
//! 1. [`parse`]; on `Err`, answer `400` with the issues as an OperationOutcome.
//! 2. Resolve conditional PUT/PATCH/DELETE targets with searches, then check with [`identity_overlaps`] that no
//!    two writes hit the same resource ("If any resource identities (including resolved identities from
//!    conditional update/delete) overlap in steps 1-3, then the transaction SHALL fail"); [`parse`] already
//!    checked the literal `Type/id` targets.
//! 3. Assign ids to the POST entries, build the map with [`RequestBundle::identity_map`], resolve every
//!    [`references::conditional_references`] (exactly one match each, or the transaction fails) into the
//!    same map, and apply [`references::rewrite_references`] to every resource body before storing it.
//! 4. Execute the entries in [`RequestBundle::processing_order`], then answer with [`response::response_bundle`].
//!
//! A batch is the same without steps 2 and 3: "References within a Bundle.entry.resource to another
//! Bundle.entry.resource that is being created within the batch are considered to be non-conformant", and
//! conditional references are allowed "in a transaction (and only in a transaction)".

pub mod references;
pub mod request;
pub mod response;

use std::collections::HashMap;

use serde_json::Value;

use crate::outcome::Issue;

pub use request::{Body, EntryRequest, Method, Query, SystemTarget, Target};
pub use response::{response_bundle, status_line, EntryResponse};

/// The most entries a batch or transaction may have; larger bundles are refused whole.
pub const MAX_ENTRIES: usize = 10_000;

/// The most issues a failed parse reports; the rest are dropped.
pub const MAX_ISSUES: usize = 100;

/// Whether a Bundle is a batch or a transaction (`Bundle.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// `batch`: independent entries, each succeeding or failing alone.
    Batch,
    /// `transaction`: all entries succeed or the whole bundle fails.
    Transaction,
}

impl BundleKind {
    /// The `Bundle.type` code of the request (`batch`, `transaction`).
    pub fn code(self) -> &'static str {
        match self {
            BundleKind::Batch => "batch",
            BundleKind::Transaction => "transaction",
        }
    }

    /// The `Bundle.type` code of the response (`batch-response`, `transaction-response`).
    pub fn response_code(self) -> &'static str {
        match self {
            BundleKind::Batch => "batch-response",
            BundleKind::Transaction => "transaction-response",
        }
    }
}

/// What the executor does with one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// A well-formed request (boxed: it is much larger than the issues of an invalid entry).
    Request(Box<EntryRequest>),
    /// A malformed batch entry: answer it with `400 Bad Request` and these issues as its outcome
    /// ([`EntryResponse::invalid`]). Never produced for a transaction.
    Invalid(Vec<Issue>),
}

/// One entry of a parsed batch or transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The entry's position in the submitted bundle (0-based).
    pub index: usize,
    /// What to do with it.
    pub plan: Plan,
}

impl Entry {
    /// The request, unless the entry is invalid.
    pub fn request(&self) -> Option<&EntryRequest> {
        match &self.plan {
            Plan::Request(request) => Some(request),
            Plan::Invalid(_) => None,
        }
    }
}

/// A parsed batch or transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBundle {
    /// Batch or transaction.
    pub kind: BundleKind,
    /// The server base the urls were read against, without a trailing `/`.
    pub base_url: String,
    /// The entries, in bundle order (`entries[i].index == i`).
    pub entries: Vec<Entry>,
}

impl RequestBundle {
    /// The order to execute the entries in, as indexes into [`RequestBundle::entries`].
    ///
    /// A transaction follows http.html#trules: "Process any DELETE interactions, Process any POST interactions,
    /// Process any PUT or PATCH interactions, Process any GET or HEAD interactions", keeping bundle order within
    /// each group. A batch runs in bundle order: its entries are independent ("there SHALL be no
    /// interdependencies between the different entries"), so the spec's remark that servers are "considered"
    /// to use the transaction order does not change any outcome.
    pub fn processing_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        if self.kind == BundleKind::Transaction {
            // A stable sort keeps bundle order within a group.
            order.sort_by_key(|&i| self.entries[i].request().map_or(u8::MAX, |r| r.method.group()));
        }
        order
    }

    /// The reference rewrite map for [`references::rewrite_references`]: every entry's `fullUrl` (and, for a
    /// fullUrl under this server's base, its relative `Type/id` form too) mapped to the entry's identity on
    /// this server.
    ///
    /// `assigned` gives the identities the executor decided, by entry index: the new `Type/id` of each POST (the
    /// existing one for a conditional create that matched),
    /// the resolved target of each conditional PUT/PATCH/DELETE. A value may carry the version
    /// (`Patient/1/_history/1`) so version-specific references get it. Instance targets (`PUT Patient/1`)
    /// map to their own `Type/id` unless `assigned` says otherwise. Entries without a fullUrl or without an
    /// identity add nothing; when two entries claim the same key the first one in bundle order keeps it.
    pub fn identity_map(&self, assigned: &HashMap<usize, String>) -> HashMap<String, String> {
        let mut map = HashMap::new();
        for entry in &self.entries {
            let Some(request) = entry.request() else { continue };
            let Some(full_url) = &request.full_url else { continue };
            let Some(identity) = assigned.get(&entry.index).cloned().or_else(|| request.target.identity()) else { continue };
            if let (Some(tail), Some((resource_type, id))) = (under_base(full_url, &self.base_url), request::restful_tail(full_url)) {
                // Only `[base]/Type/id` itself: relative references resolve against the server base.
                if tail.len() == resource_type.len() + 1 + id.len() {
                    map.entry(tail.to_string()).or_insert_with(|| identity.clone());
                }
            }
            map.entry(full_url.clone()).or_insert(identity);
        }
        map
    }
}

/// The part of `url` after `base/`, when `url` is under `base`.
fn under_base<'a>(url: &'a str, base: &str) -> Option<&'a str> {
    if base.is_empty() {
        return None;
    }
    url.strip_prefix(base)?.strip_prefix('/')
}

/// Issues for writes that hit the same resource: given `(entry index, "Type/id")` for every DELETE, PUT and
/// PATCH (conditional ones once resolved), one issue for each entry whose identity an earlier one already
/// had. "It is an error for a transaction to contain two entries with the same resource identity"; the issue
/// names both entry indexes, never the identity.
pub fn identity_overlaps<'a>(writes: impl IntoIterator<Item = (usize, &'a str)>) -> Vec<Issue> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut issues = Vec::new();
    for (index, identity) in writes {
        match seen.get(identity) {
            Some(&first) => issues.push(
                Issue::error("duplicate", format!("entries {first} and {index} change the same resource"))
                    .at(format!("Bundle.entry[{index}].request.url")),
            ),
            None => {
                seen.insert(identity, index);
            }
        }
    }
    issues
}

fn bundle_issue(code: &'static str, location: &str, diagnostics: &str) -> Vec<Issue> {
    vec![Issue::error(code, diagnostics).at(location)]
}

/// Parses a `batch` or `transaction` Bundle whose entries' urls are relative to `base_url` (the server's FHIR
/// base, with or without a trailing `/`).
///
/// Fails as a whole when the Bundle itself is wrong (not a Bundle, another `type`, `entry` not an array, more
/// than [`MAX_ENTRIES`] entries) and, for a transaction, when any entry is malformed, when two entries share a
/// fullUrl, or when two entries write the same `Type/id`. In a batch a malformed entry, or one repeating an
/// earlier entry's fullUrl (bdl-7), becomes [`Plan::Invalid`]. Never panics.
pub fn parse(bundle: &Value, base_url: &str) -> Result<RequestBundle, Vec<Issue>> {
    let base = base_url.trim_end_matches('/');
    let Value::Object(obj) = bundle else {
        return Err(bundle_issue("structure", "Bundle", "a bundle must be a JSON object"));
    };
    if obj.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(bundle_issue("invalid", "Bundle.resourceType", "resourceType must be Bundle"));
    }
    let kind = match obj.get("type") {
        None => return Err(bundle_issue("required", "Bundle.type", "missing Bundle.type")),
        Some(Value::String(t)) if t == "batch" => BundleKind::Batch,
        Some(Value::String(t)) if t == "transaction" => BundleKind::Transaction,
        Some(_) => return Err(bundle_issue("invalid", "Bundle.type", "only batch and transaction bundles can be processed")),
    };
    let items: &[Value] = match obj.get("entry") {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bundle_issue("structure", "Bundle.entry", "Bundle.entry must be an array")),
    };
    if items.len() > MAX_ENTRIES {
        return Err(bundle_issue("too-long", "Bundle.entry", &format!("a bundle may have at most {MAX_ENTRIES} entries")));
    }

    let mut entries = Vec::with_capacity(items.len());
    let mut issues = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let plan = match request::parse_entry(item, index, base) {
            Ok(request) => Plan::Request(Box::new(request)),
            Err(entry_issues) => {
                if kind == BundleKind::Transaction {
                    issues.extend(entry_issues.iter().cloned());
                }
                Plan::Invalid(entry_issues)
            }
        };
        entries.push(Entry { index, plan });
    }

    match kind {
        BundleKind::Transaction => {
            issues.extend(duplicate_full_urls(&entries, false).into_iter().map(|(_, issue)| issue));
            let writes: Vec<(usize, String)> = entries
                .iter()
                .filter_map(Entry::request)
                .filter(|r| matches!(r.method, Method::Put | Method::Patch | Method::Delete))
                .filter_map(|r| Some((r.index, r.target.identity()?)))
                .collect();
            issues.extend(identity_overlaps(writes.iter().map(|(i, id)| (*i, id.as_str()))));
            if !issues.is_empty() {
                issues.truncate(MAX_ISSUES);
                return Err(issues);
            }
        }
        BundleKind::Batch => {
            for (index, issue) in duplicate_full_urls(&entries, true) {
                if let Some(entry) = entries.get_mut(index) {
                    entry.plan = Plan::Invalid(vec![issue]);
                }
            }
        }
    }
    Ok(RequestBundle { kind, base_url: base.to_string(), entries })
}

/// `(entry index, issue)` for entries whose fullUrl an earlier entry already has. In a transaction any repeat is an error (two
/// entries with one identity); in a batch bdl-7 applies: a repeat is allowed with a different `meta.versionId`.
fn duplicate_full_urls(entries: &[Entry], versioned: bool) -> Vec<(usize, Issue)> {
    let mut seen: HashMap<(&str, Option<&str>), usize> = HashMap::new();
    let mut issues = Vec::new();
    for request in entries.iter().filter_map(Entry::request) {
        let Some(full_url) = request.full_url.as_deref() else { continue };
        let version = match (&request.body, versioned) {
            (Body::Resource(resource), true) => resource.pointer("/meta/versionId").and_then(Value::as_str),
            _ => None,
        };
        match seen.get(&(full_url, version)) {
            Some(&first) => issues.push((
                request.index,
                Issue::error("duplicate", format!("entries {first} and {} have the same fullUrl (bdl-7)", request.index))
                    .at(format!("Bundle.entry[{}].fullUrl", request.index)),
            )),
            None => {
                seen.insert((full_url, version), request.index);
            }
        }
    }
    issues
}

#[cfg(test)]
mod tests;
