//! One `Bundle.entry` of a batch or transaction, parsed into an [`EntryRequest`]: the HTTP verb, the
//! target its `request.url` names (relative to the server base), the conditional-request fields and the body.
//!
//! The checks here are the envelope's (R4 `http.html#transaction`, `bundle.html`): the verb and url agree
//! (POST to a type, PUT/PATCH/DELETE to an instance or `Type?criteria`, reads and searches only with GET/HEAD),
//! the body fits the verb (POST/PUT carry a resource of the url's type, PATCH a JSON Patch `Binary` or a
//! FHIRPath Patch `Parameters`, DELETE/GET/HEAD none), `fullUrl` is an absolute identity. The resource itself
//! is validated by the executor with [`crate::validate::validate_resource`], as for a single interaction.

use base64::Engine;
use chrono::{DateTime, Utc};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use crate::outcome::Issue;
use crate::registry;
use crate::resource::is_valid_id;

/// Decoded query parameters, in the order the url gives them (repeated names stay separate pairs).
pub type Query = Vec<(String, String)>;

/// The HTTP verb of an entry (`Bundle.entry.request.method`, value set `http-verb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: read, vread, search, history, capabilities.
    Get,
    /// `HEAD`: as GET, without a body in the response.
    Head,
    /// `POST`: create.
    Post,
    /// `PUT`: update or conditional update.
    Put,
    /// `PATCH`: patch or conditional patch.
    Patch,
    /// `DELETE`: delete or conditional delete.
    Delete,
}

impl Method {
    /// The verb for a `request.method` code; codes are upper case (`http-verb`), anything else is `None`.
    pub fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    /// The `http-verb` code.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// Whether the verb changes the server (POST, PUT, PATCH, DELETE).
    pub fn is_write(self) -> bool {
        !matches!(self, Method::Get | Method::Head)
    }

    /// The transaction processing group (http.html#trules): DELETE, then POST, then PUT/PATCH, then GET/HEAD.
    pub(super) fn group(self) -> u8 {
        match self {
            Method::Delete => 0,
            Method::Post => 1,
            Method::Put | Method::Patch => 2,
            Method::Get | Method::Head => 3,
        }
    }
}

/// A system-level target: a url without a resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemTarget {
    /// `metadata`: the CapabilityStatement.
    Capabilities,
    /// `_history`: the whole system's history, with its parameters (`_since`, `_count`, ...).
    History {
        /// The history parameters.
        query: Query,
    },
    /// `?params`: a search across all types.
    Search {
        /// The search parameters.
        query: Query,
    },
}

/// What an entry's `request.url` names, as the verb reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `Type`, for a create (POST).
    Type {
        /// The resource type.
        resource_type: String,
    },
    /// `Type/id`: read, update, patch, delete.
    Instance {
        /// The resource type.
        resource_type: String,
        /// The logical id.
        id: String,
    },
    /// `Type/id/_history/vid`: vread.
    Version {
        /// The resource type.
        resource_type: String,
        /// The logical id.
        id: String,
        /// The version id.
        version: String,
    },
    /// `Type?criteria` with PUT, PATCH or DELETE: a conditional update, patch or delete. The criteria are never empty.
    Conditional {
        /// The resource type.
        resource_type: String,
        /// The search criteria.
        query: Query,
    },
    /// `Type` or `Type?params` with GET/HEAD: a type-level search.
    Search {
        /// The resource type.
        resource_type: String,
        /// The search parameters (may be empty: every resource of the type).
        query: Query,
    },
    /// `Compartment/id/Type?params` with GET/HEAD: a compartment search (`Patient/123/Observation`).
    CompartmentSearch {
        /// The compartment type (`Patient`).
        compartment: String,
        /// The compartment's id.
        id: String,
        /// The resource type searched.
        resource_type: String,
        /// The search parameters.
        query: Query,
    },
    /// `Type/_history`: the type's history.
    TypeHistory {
        /// The resource type.
        resource_type: String,
        /// The history parameters.
        query: Query,
    },
    /// `Type/id/_history`: one resource's history.
    InstanceHistory {
        /// The resource type.
        resource_type: String,
        /// The logical id.
        id: String,
        /// The history parameters.
        query: Query,
    },
    /// A url without a resource type (`metadata`, `_history`, `?_type=...`).
    System(SystemTarget),
}

impl Target {
    /// The resource type the target is about (the searched type for a compartment search); `None` at system level.
    pub fn resource_type(&self) -> Option<&str> {
        match self {
            Target::Type { resource_type }
            | Target::Instance { resource_type, .. }
            | Target::Version { resource_type, .. }
            | Target::Conditional { resource_type, .. }
            | Target::Search { resource_type, .. }
            | Target::CompartmentSearch { resource_type, .. }
            | Target::TypeHistory { resource_type, .. }
            | Target::InstanceHistory { resource_type, .. } => Some(resource_type),
            Target::System(_) => None,
        }
    }

    /// The resource identity `Type/id` an instance or version target names.
    pub fn identity(&self) -> Option<String> {
        match self {
            Target::Instance { resource_type, id } | Target::Version { resource_type, id, .. } => Some(format!("{resource_type}/{id}")),
            _ => None,
        }
    }
}

/// The body an entry carries, checked against its verb.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// No body: GET, HEAD, DELETE.
    None,
    /// The resource to create or update (POST, PUT); its `resourceType` is the url's type.
    Resource(Value),
    /// A JSON Patch document (RFC 6902), decoded from the `Binary` the entry carried; apply it with
    /// [`crate::patch::apply_json_patch`].
    JsonPatch(Value),
    /// A FHIRPath Patch `Parameters` resource; apply it with [`crate::patch::apply_fhirpath_patch`].
    FhirPathPatch(Value),
}

/// One well-formed entry of a batch or transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRequest {
    /// The entry's position in the submitted bundle (0-based).
    pub index: usize,
    /// The verb.
    pub method: Method,
    /// `request.url` relative to the server base, as submitted after the base was removed. Its query may hold
    /// search values (identifiers, names): keep it out of logs.
    pub url: String,
    /// What the url names.
    pub target: Target,
    /// `fullUrl`: the entry's identity within the bundle (`urn:uuid:…`, `urn:oid:…` or an absolute url).
    pub full_url: Option<String>,
    /// The body.
    pub body: Body,
    /// `request.ifMatch`: an ETag (`W/"3"`), for PUT, PATCH, DELETE.
    pub if_match: Option<String>,
    /// `request.ifNoneMatch`, for GET/HEAD.
    pub if_none_match: Option<String>,
    /// `request.ifNoneExist`, decoded: the criteria of a conditional create (POST). Never empty.
    pub if_none_exist: Option<Query>,
    /// `request.ifModifiedSince`, for GET/HEAD.
    pub if_modified_since: Option<DateTime<Utc>>,
}

impl EntryRequest {
    /// The version `ifMatch` asks for: `3` for `W/"3"` or `"3"`.
    pub fn if_match_version(&self) -> Option<&str> {
        self.if_match.as_deref().and_then(etag_version)
    }
}

/// The version an ETag names: `W/"3"` and `"3"` give `3`.
pub fn etag_version(etag: &str) -> Option<&str> {
    let quoted = etag.strip_prefix("W/").unwrap_or(etag);
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    is_valid_id(inner).then_some(inner)
}

/// Builds locations (`Bundle.entry[3].request.url`) and collects an entry's issues.
struct EntryIssues {
    index: usize,
    issues: Vec<Issue>,
}

impl EntryIssues {
    fn push(&mut self, code: &'static str, path: &str, diagnostics: impl Into<String>) {
        let location =
            if path.is_empty() { format!("Bundle.entry[{}]", self.index) } else { format!("Bundle.entry[{}].{path}", self.index) };
        self.issues.push(Issue::error(code, diagnostics).at(location));
    }
}

/// Parses entry `index` of a batch or transaction. `base` is the server base without a trailing `/`.
pub(super) fn parse_entry(entry: &Value, index: usize, base: &str) -> Result<EntryRequest, Vec<Issue>> {
    let mut issues = EntryIssues { index, issues: Vec::new() };
    let Value::Object(entry) = entry else {
        issues.push("structure", "", "an entry must be a JSON object");
        return Err(issues.issues);
    };
    let full_url = match entry.get("fullUrl") {
        None => None,
        Some(Value::String(s)) => match check_full_url(s) {
            Ok(()) => Some(s.clone()),
            Err(why) => {
                issues.push("invalid", "fullUrl", why);
                None
            }
        },
        Some(_) => {
            issues.push("structure", "fullUrl", "fullUrl must be a string");
            None
        }
    };
    let Some(request) = entry.get("request") else {
        issues.push("required", "request", "a batch or transaction entry needs a request (bdl-3)");
        return Err(issues.issues);
    };
    let Value::Object(request) = request else {
        issues.push("structure", "request", "request must be a JSON object");
        return Err(issues.issues);
    };
    let method = match request.get("method") {
        None => {
            issues.push("required", "request.method", "missing request.method");
            None
        }
        Some(Value::String(code)) => {
            let method = Method::parse(code);
            if method.is_none() {
                issues.push("value", "request.method", "request.method must be one of GET, HEAD, POST, PUT, PATCH, DELETE");
            }
            method
        }
        Some(_) => {
            issues.push("structure", "request.method", "request.method must be a string");
            None
        }
    };
    let url = match request.get("url") {
        None => {
            issues.push("required", "request.url", "missing request.url");
            None
        }
        Some(Value::String(url)) if url.is_empty() => {
            issues.push("value", "request.url", "request.url must not be empty");
            None
        }
        Some(Value::String(url)) => match relative_url(url, base) {
            Ok(relative) => Some(relative),
            Err(why) => {
                issues.push("invalid", "request.url", why);
                None
            }
        },
        Some(_) => {
            issues.push("structure", "request.url", "request.url must be a string");
            None
        }
    };
    let (Some(method), Some(url)) = (method, url) else {
        return Err(issues.issues);
    };
    let target = match parse_target(method, url) {
        Ok(target) => Some(target),
        Err((code, why)) => {
            issues.push(code, "request.url", why);
            None
        }
    };

    let if_match = conditional_field(request, "ifMatch", method, &[Method::Put, Method::Patch, Method::Delete], &mut issues);
    if let Some(etag) = &if_match {
        if etag_version(etag).is_none() {
            issues.push("value", "request.ifMatch", "ifMatch must be an ETag such as W/\"1\"");
        }
    }
    let if_none_match = conditional_field(request, "ifNoneMatch", method, &[Method::Get, Method::Head], &mut issues);
    let if_modified_since =
        conditional_field(request, "ifModifiedSince", method, &[Method::Get, Method::Head], &mut issues).and_then(|s| {
            let parsed = DateTime::parse_from_rfc3339(&s).ok().map(|t| t.with_timezone(&Utc));
            if parsed.is_none() {
                issues.push("value", "request.ifModifiedSince", "ifModifiedSince must be an instant");
            }
            parsed
        });
    let if_none_exist = conditional_field(request, "ifNoneExist", method, &[Method::Post], &mut issues).and_then(|s| {
        match if_none_exist_query(&s, target.as_ref().and_then(Target::resource_type)) {
            Ok(query) => Some(query),
            Err(why) => {
                issues.push("value", "request.ifNoneExist", why);
                None
            }
        }
    });

    let body = target.as_ref().and_then(|target| parse_body(method, target, entry.get("resource"), &mut issues));
    if let (Some(full_url), Some(Body::Resource(resource))) = (&full_url, &body) {
        if let Some(why) = full_url_disagreement(full_url, resource) {
            issues.push("invalid", "fullUrl", why);
        }
    }

    match (target, body) {
        (Some(target), Some(body)) if issues.issues.is_empty() => Ok(EntryRequest {
            index,
            method,
            url: url.to_string(),
            target,
            full_url,
            body,
            if_match,
            if_none_match,
            if_none_exist,
            if_modified_since,
        }),
        _ => Err(issues.issues),
    }
}

/// A string field of `request` that only applies to some verbs.
fn conditional_field(
    request: &Map<String, Value>,
    name: &str,
    method: Method,
    allowed: &[Method],
    issues: &mut EntryIssues,
) -> Option<String> {
    let path = format!("request.{name}");
    match request.get(name)? {
        Value::String(s) if s.is_empty() => {
            issues.push("value", &path, format!("{name} must not be empty"));
            None
        }
        Value::String(s) if allowed.contains(&method) => Some(s.clone()),
        Value::String(_) => {
            let verbs: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            issues.push("invalid", &path, format!("{name} only applies to {}", verbs.join(", ")));
            None
        }
        _ => {
            issues.push("structure", &path, format!("{name} must be a string"));
            None
        }
    }
}

/// The criteria of `ifNoneExist`: the query part of a search url ("what follows the `?`"); a leading `?` or
/// `Type?` naming the entry's own type is tolerated.
fn if_none_exist_query(text: &str, resource_type: Option<&str>) -> Result<Query, &'static str> {
    let criteria = match text.split_once('?') {
        Some(("", rest)) => rest,
        Some((prefix, rest)) if Some(prefix) == resource_type => rest,
        Some(_) => return Err("ifNoneExist must be the query part of a search on the entry's type"),
        None => text,
    };
    let query = parse_query(criteria)?;
    if query.is_empty() {
        return Err("ifNoneExist has no criteria");
    }
    Ok(query)
}

/// Whether a fullUrl is a valid entry identity: `urn:uuid:` with a UUID, `urn:oid:` with an OID, or an absolute
/// http(s) url that is not version specific (bdl-8).
fn check_full_url(full_url: &str) -> Result<(), &'static str> {
    if let Some(uuid) = full_url.strip_prefix("urn:uuid:") {
        return if is_uuid(uuid) { Ok(()) } else { Err("fullUrl is not a valid urn:uuid") };
    }
    if let Some(oid) = full_url.strip_prefix("urn:oid:") {
        return if is_oid(oid) { Ok(()) } else { Err("fullUrl is not a valid urn:oid") };
    }
    let lower = full_url.get(..8).unwrap_or(full_url).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || full_url.contains(char::is_whitespace) {
        return Err("fullUrl must be an absolute url, a urn:uuid or a urn:oid");
    }
    if full_url.contains("/_history/") {
        return Err("fullUrl must not be a version-specific url (bdl-8)");
    }
    Ok(())
}

/// `8-4-4-4-12` hexadecimal digits (the FHIR `uuid` type; upper case is tolerated).
pub(super) fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An OID: `[0-2](\.(0|[1-9][0-9]*))+` (the FHIR `oid` type).
pub(super) fn is_oid(text: &str) -> bool {
    let mut arcs = text.split('.');
    let first_ok = matches!(arcs.next(), Some("0" | "1" | "2"));
    let mut rest = 0;
    let rest_ok = arcs.all(|arc| {
        rest += 1;
        !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()) && (arc == "0" || !arc.starts_with('0'))
    });
    first_ok && rest_ok && rest > 0
}

/// The `Type` and `id` of a RESTful absolute url (`…/Patient/123`).
pub(super) fn restful_tail(url: &str) -> Option<(&str, &str)> {
    let (rest, id) = url.rsplit_once('/')?;
    let (_, resource_type) = rest.rsplit_once('/')?;
    (registry::is_resource_type(resource_type) && is_valid_id(id)).then_some((resource_type, id))
}

/// "fullUrl SHALL NOT disagree with the id in the resource" (`Bundle.entry.fullUrl`): a RESTful fullUrl must
/// name the resource's type and, when the resource has an id, that id.
fn full_url_disagreement(full_url: &str, resource: &Value) -> Option<&'static str> {
    let (resource_type, id) = restful_tail(full_url)?;
    if resource.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
        return Some("fullUrl names a different resource type than the resource");
    }
    match resource.get("id").and_then(Value::as_str) {
        Some(resource_id) if resource_id != id => Some("fullUrl disagrees with the resource id"),
        _ => None,
    }
}

/// `url` relative to `base`: an absolute url under the base loses it, another absolute url is refused, a
/// relative url loses one leading `/`.
pub(super) fn relative_url<'a>(url: &'a str, base: &str) -> Result<&'a str, &'static str> {
    if !base.is_empty() {
        if let Some(rest) = url.strip_prefix(base) {
            if rest.is_empty() {
                return Ok(rest);
            }
            if let Some(path) = rest.strip_prefix('/') {
                return Ok(path);
            }
            if rest.starts_with('?') {
                return Ok(rest);
            }
        }
    }
    if has_scheme(url) {
        return Err("request.url is an absolute url of another server");
    }
    Ok(url.strip_prefix('/').unwrap_or(url))
}

/// Whether `url` starts with a URI scheme (`http:`, `urn:`): letters, digits, `+`, `-`, `.`, then `:` before
/// any `/`, `?` or `#`.
fn has_scheme(url: &str) -> bool {
    let Some((scheme, _)) = url.split_once(':') else { return false };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic()) && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Decodes a query string (`a=1&b=x%7Cy`): pairs split at `&`, name and value at the first `=`, `+` is a space,
/// percent escapes decoded as UTF-8. Empty pairs (`a=1&&b=2`) are skipped.
pub(super) fn parse_query(query: &str) -> Result<Query, &'static str> {
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(name)?;
        if name.is_empty() {
            return Err("a query parameter has no name");
        }
        pairs.push((name, decode_component(value)?));
    }
    Ok(pairs)
}

fn decode_component(text: &str) -> Result<String, &'static str> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8().map(|s| s.into_owned()).map_err(|_| "the url is not valid percent-encoded utf-8")
}

fn decode_segment(segment: &str) -> Result<String, &'static str> {
    percent_decode_str(segment).decode_utf8().map(|s| s.into_owned()).map_err(|_| "the url is not valid percent-encoded utf-8")
}

type TargetError = (&'static str, String);

fn invalid(why: impl Into<String>) -> TargetError {
    ("invalid", why.into())
}

/// Reads a relative url as `method` addresses it.
pub(super) fn parse_target(method: Method, url: &str) -> Result<Target, TargetError> {
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(parse_query(query).map_err(invalid)?)),
        None => (url, None),
    };
    if path.contains('#') {
        return Err(invalid("request.url must not have a fragment"));
    }
    let segments: Vec<String> =
        if path.is_empty() { Vec::new() } else { path.split('/').map(decode_segment).collect::<Result<_, _>>().map_err(invalid)? };
    if segments.iter().any(String::is_empty) {
        return Err(invalid("request.url has an empty path segment"));
    }
    if segments.iter().any(|s| s.starts_with('$')) {
        return Err(("not-supported", "operations are not supported in a batch or transaction".into()));
    }
    let read_only = |target: Target| -> Result<Target, TargetError> {
        if method.is_write() {
            Err(invalid(format!("{} is not allowed on this url", method.as_str())))
        } else {
            Ok(target)
        }
    };
    let no_query = |what: &str| -> Result<(), TargetError> {
        match &query {
            Some(_) => Err(invalid(format!("query parameters are not supported on {what}"))),
            None => Ok(()),
        }
    };
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        [] => match query {
            Some(query) => read_only(Target::System(SystemTarget::Search { query })),
            None => Err(invalid("request.url has no path")),
        },
        ["metadata"] => {
            no_query("metadata")?;
            read_only(Target::System(SystemTarget::Capabilities))
        }
        ["_history"] => read_only(Target::System(SystemTarget::History { query: query.unwrap_or_default() })),
        [resource_type, rest @ ..] => {
            check_type(resource_type)?;
            let resource_type = resource_type.to_string();
            match rest {
                [] => type_target(method, resource_type, query),
                ["_history"] => read_only(Target::TypeHistory { resource_type, query: query.unwrap_or_default() }),
                ["_search"] => Err(("not-supported", "_search is not supported in a batch or transaction; use GET with parameters".into())),
                [id] => {
                    check_id(id)?;
                    no_query("an instance url")?;
                    let target = Target::Instance { resource_type, id: id.to_string() };
                    if method == Method::Post {
                        return Err(invalid("POST creates at a type url (Type), not at an instance"));
                    }
                    Ok(target)
                }
                [id, "_history"] => {
                    check_id(id)?;
                    read_only(Target::InstanceHistory { resource_type, id: id.to_string(), query: query.unwrap_or_default() })
                }
                [id, "_history", version] => {
                    check_id(id)?;
                    if !is_valid_id(version) {
                        return Err(invalid("request.url has an invalid version id"));
                    }
                    no_query("a version url")?;
                    read_only(Target::Version { resource_type, id: id.to_string(), version: version.to_string() })
                }
                [id, searched] if registry::compartment_types().any(|c| c == resource_type.as_str()) => {
                    check_id(id)?;
                    check_type(searched)?;
                    read_only(Target::CompartmentSearch {
                        compartment: resource_type,
                        id: id.to_string(),
                        resource_type: searched.to_string(),
                        query: query.unwrap_or_default(),
                    })
                }
                _ => Err(("not-supported", "unsupported request.url".into())),
            }
        }
    }
}

/// `Type` or `Type?…`: a create, a search, or a conditional write, by verb.
fn type_target(method: Method, resource_type: String, query: Option<Query>) -> Result<Target, TargetError> {
    match (method, query) {
        (Method::Get | Method::Head, query) => Ok(Target::Search { resource_type, query: query.unwrap_or_default() }),
        (Method::Post, None) => Ok(Target::Type { resource_type }),
        (Method::Post, Some(_)) => Err(invalid("a create url must not have query parameters; use ifNoneExist for a conditional create")),
        (Method::Put | Method::Patch | Method::Delete, Some(query)) if !query.is_empty() => {
            Ok(Target::Conditional { resource_type, query })
        }
        (Method::Put | Method::Patch | Method::Delete, Some(_)) => {
            Err(invalid(format!("a conditional {} needs search criteria", method.as_str())))
        }
        (Method::Put | Method::Patch | Method::Delete, None) => {
            Err(invalid(format!("{} needs an instance url (Type/id) or search criteria (Type?criteria)", method.as_str())))
        }
    }
}

fn check_type(resource_type: &str) -> Result<(), TargetError> {
    if registry::is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(invalid("request.url names an unknown resource type"))
    }
}

fn check_id(id: &str) -> Result<(), TargetError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(invalid("request.url has an invalid resource id"))
    }
}

/// The body, checked against the verb and target; `None` after reporting a problem.
fn parse_body(method: Method, target: &Target, resource: Option<&Value>, issues: &mut EntryIssues) -> Option<Body> {
    match method {
        Method::Get | Method::Head | Method::Delete => {
            if resource.is_some() {
                issues.push("invalid", "resource", format!("a {} entry must not carry a resource", method.as_str()));
                return None;
            }
            Some(Body::None)
        }
        Method::Post | Method::Put => {
            let resource = required_resource(method, resource, issues)?;
            let expected = target.resource_type()?;
            match resource.get("resourceType") {
                Some(Value::String(rt)) if rt == expected => {}
                Some(Value::String(_)) => {
                    issues.push("invalid", "resource.resourceType", "the resource type does not match request.url");
                    return None;
                }
                _ => {
                    issues.push("required", "resource.resourceType", "the resource has no resourceType");
                    return None;
                }
            }
            if let (Method::Put, Target::Instance { id, .. }) = (method, target) {
                // http.html#update: "If no id element is provided, or the id disagrees with the id in the URL,
                // the server SHALL respond with an HTTP 400 error code".
                match resource.get("id") {
                    Some(Value::String(rid)) if rid == id => {}
                    Some(Value::String(_)) => {
                        issues.push("invalid", "resource.id", "the resource id does not match the id in request.url");
                        return None;
                    }
                    _ => {
                        issues.push("required", "resource.id", "an update needs the resource id");
                        return None;
                    }
                }
            }
            Some(Body::Resource(resource.clone()))
        }
        Method::Patch => {
            let resource = required_resource(method, resource, issues)?;
            match resource.get("resourceType").and_then(Value::as_str) {
                Some("Binary") => match json_patch_from_binary(resource) {
                    Ok(patch) => Some(Body::JsonPatch(patch)),
                    Err((path, why)) => {
                        issues.push("invalid", path, why);
                        None
                    }
                },
                Some("Parameters") => Some(Body::FhirPathPatch(resource.clone())),
                _ => {
                    issues.push(
                        "invalid",
                        "resource",
                        "a PATCH entry carries a Binary (JSON Patch) or a Parameters (FHIRPath Patch) resource",
                    );
                    None
                }
            }
        }
    }
}

fn required_resource<'a>(method: Method, resource: Option<&'a Value>, issues: &mut EntryIssues) -> Option<&'a Value> {
    match resource {
        Some(resource @ Value::Object(_)) => Some(resource),
        Some(_) => {
            issues.push("structure", "resource", "resource must be a JSON object");
            None
        }
        None => {
            issues.push("required", "resource", format!("a {} entry needs a resource", method.as_str()));
            None
        }
    }
}

/// The JSON Patch document inside a `Binary` (`contentType` `application/json-patch+json`, base64 `data`).
fn json_patch_from_binary(binary: &Value) -> Result<Value, (&'static str, &'static str)> {
    let content_type = binary.get("contentType").and_then(Value::as_str).unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/json-patch+json") {
        return Err(("resource.contentType", "a PATCH Binary must have contentType application/json-patch+json"));
    }
    let Some(data) = binary.get("data").and_then(Value::as_str) else {
        return Err(("resource.data", "a PATCH Binary needs base64 data"));
    };
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| ("resource.data", "the PATCH Binary data is not valid base64"))?;
    serde_json::from_slice(&bytes).map_err(|_| ("resource.data", "the PATCH Binary data is not a JSON document"))
}
