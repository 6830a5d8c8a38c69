//! References (R4 search.html#reference). A query value is one of:
//! - `[type]/[id]`: the reference is to that resource (`Patient/23`; a `/_history/n` suffix
//!   on either side is ignored);
//! - `[id]`: "the logical id of a resource": a relative reference of any type with that id
//!   (restricted to one type by `:[type]`);
//! - an absolute url: the stored reference is that url. The server's own base is not known
//!   here: a caller that accepts `[base]/Patient/23` for its local `Patient/23` strips its base
//!   from the query value first. A stored absolute reference is never matched by a relative
//!   query for the same reason;
//! - a canonical: "`url` matches any version, `url|version` that version" (search.html
//!   "References to canonical URLs").
//!
//! `:[type]` ("`subject:Patient=23`") also requires the target type. `:identifier` ("the search
//! parameter is processed as a token search against Reference.identifier") matches
//! `system|value` like a token. `:above` and `:below` (hierarchies) never match.

use super::token::{parts, token_matches};
use crate::search::values::without_history;
use crate::search::{Modifier, QueryValue, SearchValue};

/// Whether a reference value matches the query under `modifier`.
pub(super) fn matches(modifier: &Modifier, query: &QueryValue, values: &[SearchValue]) -> bool {
    match modifier {
        Modifier::None => reference_query(query).is_some_and(|q| values.iter().any(|v| reference_matches(q, None, v))),
        Modifier::Type(kind) => reference_query(query).is_some_and(|q| values.iter().any(|v| reference_matches(q, Some(kind), v))),
        Modifier::Identifier => {
            let Some((system, value)) = identifier_query(query) else { return false };
            values.iter().any(|v| match v {
                SearchValue::ReferenceIdentifier { system: s, value: x } => token_matches(system, value, s.as_deref(), x),
                _ => false,
            })
        }
        _ => false,
    }
}

/// The reference a query value holds.
fn reference_query(query: &QueryValue) -> Option<&str> {
    match query {
        QueryValue::Reference(r) | QueryValue::String(r) | QueryValue::Uri(r) => Some(without_history(r)).filter(|r| !r.is_empty()),
        QueryValue::Token { system: None, code: Some(r) } => Some(without_history(r)),
        _ => None,
    }
}

/// The system and value of an `:identifier` query (`system|value`, `|value`, `value`).
fn identifier_query(query: &QueryValue) -> Option<(Option<&str>, Option<&str>)> {
    match query {
        QueryValue::Reference(r) => Some(match r.split_once('|') {
            Some((system, value)) => (Some(system), Some(value).filter(|v| !v.is_empty())),
            None => (None, Some(r.as_str())),
        }),
        other => parts(other),
    }
}

/// Whether the stored value `v` is the reference `query` asks for, of type `kind` if given.
fn reference_matches(query: &str, kind: Option<&str>, v: &SearchValue) -> bool {
    let SearchValue::Reference { reference, target_type } = v else { return false };
    if kind.is_some() && target_type.as_deref() != kind {
        return false;
    }
    if is_absolute(query) {
        // A canonical without a version matches every version of it.
        return reference == query || (!query.contains('|') && reference.strip_prefix(query).is_some_and(|rest| rest.starts_with('|')));
    }
    if is_absolute(reference) {
        return false;
    }
    match query.split_once('/') {
        Some((query_type, query_id)) => kind.is_none_or(|k| k == query_type) && reference.split_once('/') == Some((query_type, query_id)),
        None => reference.split_once('/').is_some_and(|(_, id)| id == query),
    }
}

/// Whether a reference is an absolute url or urn rather than `Type/id`.
fn is_absolute(reference: &str) -> bool {
    reference.contains(':')
}
