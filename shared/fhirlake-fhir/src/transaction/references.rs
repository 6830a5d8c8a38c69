//! References between the entries of a transaction, and conditional references.
//!
//! Entries are identified by their `fullUrl`: a `urn:uuid:` / `urn:oid:` placeholder, or an absolute url (of
//! this server or another). Once the executor knows every entry's identity here (it assigns ids to POSTs,
//! resolves conditional writes), it builds a map `fullUrl → Type/id` ([`super::RequestBundle::identity_map`])
//! and calls [`rewrite_references`] on each resource. http.html#trules: "When the server assigns a new id to
//! any resource in the bundle which has a POST method … it SHALL also update any references to that resource
//! in the same bundle".
//!
//! What is rewritten, on exact matches only (never substrings):
//!
//! - every JSON member named `reference` whose value is a string, at any depth: `Reference.reference` in the
//!   resource, its extensions and its contained resources;
//! - `<a href="…">` and `<img src="…">` attribute values in narrative (`xhtml`) elements: `DomainResource.text`
//!   and `Composition.section.text`, of the resource and its contained resources;
//! - elements of type `uri`, `url`, `oid` and `uuid` (found through the registry's element types) whose
//!   value is a `urn:uuid:` / `urn:oid:` placeholder, such as `Attachment.url` pointing at a Binary created in
//!   the same transaction.
//!
//! The spec asks for matching links in every `uri`/`url`/`oid`/`uuid` element. We apply that to placeholders
//! only: an absolute url in a `uri` element (`StructureDefinition.url`, `Identifier.system`, `Coding.system`)
//! is a business identifier, not a link, and rewriting it because it equals some entry's fullUrl would corrupt
//! it. `canonical` elements are never rewritten ("Elements of type canonical are not replaced").
//!
//! Besides the exact value, a version-specific form (`<fullUrl>/_history/3`) stays version specific
//! ("Version-specific references should remain as version-specific references"): it gets the version of the
//! mapped identity when the map gives one (`Patient/1/_history/1`), else keeps its own. A `<fullUrl>#frag`
//! keeps its fragment.
//!
//! A placeholder no entry defines is left as it is: "References to resources that are not part of the bundle
//! are left untouched." An executor that wants to refuse such dangling placeholders can list them with
//! [`placeholder_references`] after the rewrite.
//!
//! Conditional references (`Patient?identifier=http://x|123`) are for transactions only. The executor lists
//! them with [`conditional_references`], decodes each with [`conditional_reference_query`], searches, and
//! "if there are no matches, or multiple matches, the transaction fails"; with a single match it adds
//! `reference → Type/id` to the map passed to [`rewrite_references`].

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::request::{parse_query, Query};
use crate::outcome::Issue;
use crate::registry::{self, ElementDef, ElementMatch};

/// Nesting deeper than this (objects and arrays) is not followed.
const MAX_DEPTH: usize = 256;

/// Result parameters, which a conditional reference may not use ("Only filtering parameters are allowed").
const RESULT_PARAMETERS: &[&str] = &[
    "_sort",
    "_count",
    "_include",
    "_revinclude",
    "_summary",
    "_total",
    "_elements",
    "_contained",
    "_containedType",
    "_format",
    "_pretty",
];

/// Replaces every reference to a key of `map` with its value (see the module docs for which elements and
/// forms), in place. Returns how many values were replaced.
pub fn rewrite_references(resource: &mut Value, map: &HashMap<String, String>) -> usize {
    if map.is_empty() {
        return 0;
    }
    rewrite_reference_members(resource, map, 0) + rewrite_typed_resource(resource, map, 0)
}

/// The conditional references (`Type?criteria`) in `resource`, distinct, in document order.
pub fn conditional_references(resource: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_references(resource, 0, &mut |reference| {
        if is_conditional_reference(reference) {
            found.push(reference.to_string());
        }
    });
    distinct(found)
}

/// The `urn:uuid:` and `urn:oid:` references in `resource`, distinct, in document order: after
/// [`rewrite_references`], the placeholders no entry defined.
pub fn placeholder_references(resource: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_references(resource, 0, &mut |reference| {
        if is_placeholder(reference) {
            found.push(reference.to_string());
        }
    });
    distinct(found)
}

/// Whether `reference` is a conditional reference: a registry resource type, `?`, and criteria.
pub fn is_conditional_reference(reference: &str) -> bool {
    match reference.split_once('?') {
        Some((resource_type, criteria)) => !criteria.is_empty() && registry::is_resource_type(resource_type),
        None => false,
    }
}

/// The resource type and decoded criteria of a conditional reference, for the search that resolves it.
///
/// http.html#trules: "The search URI is relative to the server's \[base\] path, and always starts with a
/// resource type … Only filtering parameters are allowed; none of the parameters that control the return of
/// resources are relevant." Result parameters (`_count`, `_sort`, `_include`, …) are refused.
pub fn conditional_reference_query(reference: &str) -> Result<(&str, Query), Issue> {
    let Some((resource_type, criteria)) = reference.split_once('?').filter(|_| is_conditional_reference(reference)) else {
        return Err(Issue::error("invalid", "not a conditional reference (Type?criteria)"));
    };
    let query = parse_query(criteria).map_err(|why| Issue::error("invalid", why))?;
    if query.is_empty() {
        return Err(Issue::error("invalid", "a conditional reference needs search criteria"));
    }
    if let Some((name, _)) = query.iter().find(|(name, _)| RESULT_PARAMETERS.contains(&name.as_str())) {
        return Err(Issue::error("invalid", format!("a conditional reference may only use filtering parameters, not {name}")));
    }
    Ok((resource_type, query))
}

fn is_placeholder(value: &str) -> bool {
    value.starts_with("urn:uuid:") || value.starts_with("urn:oid:")
}

fn distinct(values: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    values.into_iter().filter(|v| seen.insert(v.clone())).collect()
}

/// Calls `f` with every string member named `reference`, at any depth.
fn collect_references(value: &Value, depth: usize, f: &mut impl FnMut(&str)) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(obj) => {
            for (key, member) in obj {
                match member {
                    Value::String(s) if key == "reference" => f(s),
                    _ => collect_references(member, depth + 1, f),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, depth + 1, f)),
        _ => {}
    }
}

/// What `value` becomes under `map`: an exact key, `<key>/_history/<v>`, or `<key>#<fragment>`.
fn replacement(value: &str, map: &HashMap<String, String>) -> Option<String> {
    if let Some(target) = map.get(value) {
        return Some(unversioned(target).to_string());
    }
    if let Some(at) = value.rfind("/_history/") {
        let (key, version) = (&value[..at], &value[at + "/_history/".len()..]);
        if let Some(target) = map.get(key) {
            return Some(if target.contains("/_history/") { target.clone() } else { format!("{target}/_history/{version}") });
        }
    }
    if let Some((key, fragment)) = value.split_once('#') {
        if !key.is_empty() {
            if let Some(target) = map.get(key) {
                return Some(format!("{}#{fragment}", unversioned(target)));
            }
        }
    }
    None
}

fn unversioned(identity: &str) -> &str {
    identity.find("/_history/").map_or(identity, |at| &identity[..at])
}

/// Every string member named `reference`, at any depth.
fn rewrite_reference_members(value: &mut Value, map: &HashMap<String, String>, depth: usize) -> usize {
    if depth > MAX_DEPTH {
        return 0;
    }
    match value {
        Value::Object(obj) => {
            let mut count = 0;
            for (key, member) in obj.iter_mut() {
                match member {
                    Value::String(s) if key == "reference" => {
                        if let Some(new) = replacement(s, map) {
                            *s = new;
                            count += 1;
                        }
                    }
                    _ => count += rewrite_reference_members(member, map, depth + 1),
                }
            }
            count
        }
        Value::Array(items) => items.iter_mut().map(|item| rewrite_reference_members(item, map, depth + 1)).sum(),
        _ => 0,
    }
}

/// The typed part of the rewrite (narrative, placeholder uris), following the registry's element types.
fn rewrite_typed_resource(value: &mut Value, map: &HashMap<String, String>, depth: usize) -> usize {
    let Value::Object(obj) = value else { return 0 };
    let Some(def) =
        obj.get("resourceType").and_then(Value::as_str).filter(|rt| registry::is_resource_type(rt)).and_then(registry::type_def)
    else {
        return 0;
    };
    rewrite_typed_object(obj, def.elements, map, depth)
}

fn rewrite_typed_object(
    obj: &mut Map<String, Value>,
    elements: &'static [ElementDef],
    map: &HashMap<String, String>,
    depth: usize,
) -> usize {
    if depth > MAX_DEPTH {
        return 0;
    }
    let mut count = 0;
    for (key, value) in obj.iter_mut() {
        if let Some(stem) = key.strip_prefix('_') {
            // A primitive's id and extensions; the extensions may hold placeholder uris.
            if registry::find_element(elements, stem).is_some() {
                if let Some(element) = registry::type_def("Element") {
                    count += for_each_item(value, |item| match item {
                        Value::Object(o) => rewrite_typed_object(o, element.elements, map, depth + 1),
                        _ => 0,
                    });
                }
            }
            continue;
        }
        let Some(m) = registry::find_element(elements, key) else { continue };
        count += for_each_item(value, |item| rewrite_typed_value(m, item, map, depth + 1));
    }
    count
}

fn for_each_item(value: &mut Value, mut f: impl FnMut(&mut Value) -> usize) -> usize {
    match value {
        Value::Array(items) => items.iter_mut().map(f).sum(),
        other => f(other),
    }
}

fn rewrite_typed_value(m: ElementMatch, value: &mut Value, map: &HashMap<String, String>, depth: usize) -> usize {
    if m.element.has_inline_children() {
        return match value {
            Value::Object(obj) => rewrite_typed_object(obj, m.element.children, map, depth),
            _ => 0,
        };
    }
    let Some(def) = m.type_def else { return 0 };
    match (def.name, value) {
        ("Resource", value) => rewrite_typed_resource(value, map, depth),
        ("uri" | "url" | "oid" | "uuid", Value::String(s)) if is_placeholder(s) => match replacement(s, map) {
            Some(new) => {
                *s = new;
                1
            }
            None => 0,
        },
        ("xhtml", Value::String(div)) => match rewrite_narrative(div, map) {
            Some((new, count)) => {
                *div = new;
                count
            }
            None => 0,
        },
        (_, Value::Object(obj)) if !def.is_primitive() => rewrite_typed_object(obj, def.elements, map, depth),
        _ => 0,
    }
}

/// Rewrites `href` of `<a>` and `src` of `<img>` in an XHTML fragment when the attribute's value (XML
/// entities decoded) is a reference [`replacement`] maps. Scans tags and quoted attribute values, skipping
/// comments; anything it cannot read ends the scan with what was rewritten so far. `None` when nothing changed.
fn rewrite_narrative(div: &str, map: &HashMap<String, String>) -> Option<(String, usize)> {
    let bytes = div.as_bytes();
    let len = bytes.len();
    let mut out = String::new();
    let mut copied = 0;
    let mut count = 0;
    let mut i = 0;
    'tags: while i < len {
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        if div[i..].starts_with("<!--") {
            match div[i + 4..].find("-->") {
                Some(end) => {
                    i += 4 + end + 3;
                    continue;
                }
                None => break,
            }
        }
        i += 1;
        let name_start = i;
        while i < len && is_name_byte(bytes[i]) {
            i += 1;
        }
        let wanted = match &div[name_start..i] {
            "a" => "href",
            "img" => "src",
            "" => continue,
            _ => "",
        };
        loop {
            while i < len && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= len {
                break 'tags;
            }
            if bytes[i] == b'>' || bytes[i] == b'/' {
                i += 1;
                continue 'tags;
            }
            let attr_start = i;
            while i < len && is_name_byte(bytes[i]) {
                i += 1;
            }
            if i == attr_start {
                // Not an attribute name: not well-formed; stop reading this tag.
                i += 1;
                continue 'tags;
            }
            let attr = &div[attr_start..i];
            while i < len && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= len || bytes[i] != b'=' {
                continue;
            }
            i += 1;
            while i < len && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= len || !matches!(bytes[i], b'"' | b'\'') {
                break 'tags;
            }
            let quote = bytes[i] as char;
            let value_start = i + 1;
            let Some(value_len) = div[value_start..].find(quote) else { break 'tags };
            let value_end = value_start + value_len;
            i = value_end + 1;
            if attr == wanted {
                if let Some(new) = replacement(&xml_unescape(&div[value_start..value_end]), map) {
                    out.push_str(&div[copied..value_start]);
                    out.push_str(&xml_escape(&new));
                    copied = value_end;
                    count += 1;
                }
            }
        }
    }
    if count == 0 {
        return None;
    }
    out.push_str(&div[copied..]);
    Some((out, count))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.')
}

/// Decodes the XML predefined entities and character references in an attribute value; an unknown or
/// unterminated entity is kept as written.
fn xml_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let code = match entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => entity.strip_prefix('#').and_then(|dec| dec.parse().ok()),
                    };
                    code.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
