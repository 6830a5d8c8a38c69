//! Tokens (R4 search.html#token). The forms of a token value:
//! - `[code]`: "the value of [code] matches a Coding.code or Identifier.value irrespective of
//!   the value of the system property";
//! - `[system]|[code]`: "matches a Coding.code or Identifier.value, and the value of [system]
//!   matches the system property";
//! - `|[code]`: "matches a Coding.code or Identifier.value, and the Coding/Identifier has no
//!   system property";
//! - `[system]|`: "any element where the value of [system] matches the system property".
//!
//! Codes compare exactly, case-sensitively: R4 lets a server match case-insensitively for code
//! systems that are, which would need terminology; this matcher does not.
//!
//! Modifiers: `:text` ("the search parameter is processed as a string search against the text
//! associated with the code/value": a Coding's display, a CodeableConcept's text, an
//! Identifier's type text) with the default string rule (starts with, folded); `:of-type`
//! (`type-system|type-code|value` against an Identifier's type coding and value); `:not` is
//! handled by the caller module. `:above`, `:below`, `:in` and `:not-in` need terminology and
//! never match.

use crate::search::values::fold;
use crate::search::{Modifier, QueryValue, SearchValue};

/// Whether a token value matches the query under `modifier`.
pub(super) fn matches(modifier: &Modifier, query: &QueryValue, values: &[SearchValue]) -> bool {
    match modifier {
        Modifier::None => {
            let Some((system, code)) = parts(query) else { return false };
            values.iter().any(|v| match v {
                SearchValue::Token { system: s, code: c } => token_matches(system, code, s.as_deref(), c),
                _ => false,
            })
        }
        Modifier::Text => {
            let Some(text) = text(query) else { return false };
            let text = fold(&text);
            values.iter().any(|v| matches!(v, SearchValue::TokenText(t) if fold(t).starts_with(&text)))
        }
        Modifier::OfType => {
            let QueryValue::OfType { type_system, type_code, value } = query else { return false };
            values.iter().any(|v| {
                matches!(v, SearchValue::IdentifierOfType { type_system: s, type_code: c, value: x }
                    if s == type_system && c == type_code && x == value)
            })
        }
        _ => false,
    }
}

/// The system and code of a token query; a plain string is a code of any system.
pub(super) fn parts(query: &QueryValue) -> Option<(Option<&str>, Option<&str>)> {
    match query {
        QueryValue::Token { system, code } => Some((system.as_deref(), code.as_deref())),
        QueryValue::String(code) | QueryValue::Uri(code) => Some((None, Some(code))),
        _ => None,
    }
}

/// Whether a stored system and code match a query's (`None` system: any; `Some("")`: none;
/// `None` code: any code of the system). A query with neither matches nothing.
pub(super) fn token_matches(system: Option<&str>, code: Option<&str>, stored_system: Option<&str>, stored_code: &str) -> bool {
    let system_ok = match system {
        None => true,
        Some("") => stored_system.is_none_or(str::is_empty),
        Some(s) => stored_system == Some(s),
    };
    let code_ok = code.is_none_or(|c| c == stored_code);
    (system.is_some() || code.is_some()) && system_ok && code_ok
}

/// The text a `:text` query searches for (a parser may have split it as a token).
fn text(query: &QueryValue) -> Option<String> {
    match query {
        QueryValue::String(s) => Some(s.clone()),
        QueryValue::Token { system: None, code: Some(code) } => Some(code.clone()),
        QueryValue::Token { system: Some(system), code } => Some(format!("{system}|{}", code.as_deref().unwrap_or(""))),
        _ => None,
    }
}
