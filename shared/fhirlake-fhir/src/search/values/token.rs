//! Token values: codes and other primitives, Codings, CodeableConcepts, Identifiers and
//! ContactPoints (R4 search.html#token, the table of datatypes a token matches).

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::{has, member, str_member};
use crate::registry;
use crate::search::SearchValue;

/// Pushes the tokens of `element` and their texts (for `:text`) and identifier types (for
/// `:of-type`).
pub(super) fn values(element: &Value, out: &mut Vec<SearchValue>) {
    match element {
        Value::String(code) if !code.is_empty() => out.push(SearchValue::Token { system: None, code: code.clone() }),
        Value::Bool(b) => out.push(SearchValue::Token { system: None, code: b.to_string() }),
        Value::Number(n) => out.push(SearchValue::Token { system: None, code: n.to_string() }),
        Value::Object(object) => {
            if has(object, "coding") || (has(object, "text") && !has(object, "code") && !has(object, "value")) {
                concept(object, out);
            } else if has(object, "code") || has(object, "display") {
                coding(object, out);
            } else if let Some(value) = str_member(object, "value") {
                if is_contact_point(object) {
                    out.push(SearchValue::Token { system: None, code: value.to_string() });
                } else {
                    identifier(object, value, out);
                }
            }
        }
        _ => {}
    }
}

/// A CodeableConcept: each coding, and the text.
fn concept(object: &Map<String, Value>, out: &mut Vec<SearchValue>) {
    if let Some(Value::Array(codings)) = member(object, "coding") {
        for c in codings.iter().filter_map(Value::as_object) {
            coding(c, out);
        }
    }
    if let Some(text) = str_member(object, "text") {
        out.push(SearchValue::TokenText(text.to_string()));
    }
}

/// A Coding: system and code, and the display.
fn coding(object: &Map<String, Value>, out: &mut Vec<SearchValue>) {
    if let Some(code) = str_member(object, "code") {
        out.push(SearchValue::Token { system: str_member(object, "system").map(str::to_string), code: code.to_string() });
    }
    if let Some(display) = str_member(object, "display") {
        out.push(SearchValue::TokenText(display.to_string()));
    }
}

/// An Identifier: system and value, each type coding with the value, and the type's text.
fn identifier(object: &Map<String, Value>, value: &str, out: &mut Vec<SearchValue>) {
    out.push(SearchValue::Token { system: str_member(object, "system").map(str::to_string), code: value.to_string() });
    let Some(Value::Object(kind)) = member(object, "type") else { return };
    if let Some(Value::Array(codings)) = member(kind, "coding") {
        for c in codings.iter().filter_map(Value::as_object) {
            if let (Some(type_system), Some(type_code)) = (str_member(c, "system"), str_member(c, "code")) {
                out.push(SearchValue::IdentifierOfType {
                    type_system: type_system.to_string(),
                    type_code: type_code.to_string(),
                    value: value.to_string(),
                });
            }
        }
    }
    if let Some(text) = str_member(kind, "text") {
        out.push(SearchValue::TokenText(text.to_string()));
    }
}

/// Whether an object with a `value` is a ContactPoint rather than an Identifier: its `system`
/// is a code of the required binding of `ContactPoint.system` (`phone`, `email`, …: never an
/// absolute uri, which an Identifier's system is), or it has a `rank`. The JSON does not name
/// its type; without a system both read the same.
fn is_contact_point(object: &Map<String, Value>) -> bool {
    if has(object, "type") || has(object, "assigner") {
        return false;
    }
    if has(object, "rank") {
        return true;
    }
    let Some(system) = str_member(object, "system") else { return false };
    static CODES: OnceLock<&'static [&'static str]> = OnceLock::new();
    let codes = CODES.get_or_init(|| registry::element_by_path("ContactPoint.system").and_then(|e| e.binding).map_or(&[], |b| b.codes));
    codes.binary_search(&system).is_ok()
}
