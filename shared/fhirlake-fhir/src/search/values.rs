//! The typed values a search parameter selects from a resource ([`SearchValue`]), one small
//! module per parameter type. Pure: [`extract`] never fails; an expression that does not
//! evaluate, and values of a shape the parameter's type does not cover, give nothing.
//!
//! | type | element | values |
//! |---|---|---|
//! | token | code, string, id, uri, boolean (`true`/`false`) | `Token { system: None, code }` |
//! | token | Coding | `Token { system, code }`, `TokenText(display)` |
//! | token | CodeableConcept | each coding as above, `TokenText(text)` |
//! | token | Identifier | `Token { system, code: value }`, `IdentifierOfType` per type coding, `TokenText(type.text)` |
//! | token | ContactPoint | `Token { system: None, code: value }` (R4 token table: a ContactPoint matches on its value; `ContactPoint.system` is a kind of contact, not a code system) |
//! | string | string, markdown | `String` as written |
//! | string | HumanName; Address | each of family, given, prefix, suffix, text; line, city, district, state, postalCode, country, text |
//! | reference | Reference | `Reference { Type/id without /_history/n, or the absolute url }` (contained `#x` left out), `ReferenceIdentifier` from `identifier` |
//! | reference | canonical, uri; a resource (`Bundle.entry[0].resource`) | `Reference { url or url\|version }`; `Reference { Type/id }` |
//! | date | date, dateTime, instant; Period; Timing | [`DateRange::parse`]; [`DateRange::period`]; each event and `repeat.boundsPeriod` |
//! | number | integer, decimal | `Number` |
//! | quantity | Quantity (Age, Duration, Count, Distance, SimpleQuantity, MoneyQuantity); Money | `Quantity { value, system, code, unit }`; `system` `urn:iso:std:iso:4217`, `code` the currency |
//! | uri | uri, url, canonical | `Uri` as written |
//! | composite | each item its expression selects | one `Composite`, with each component's values relative to the item |
//!
//! Left out on purpose: a `Range` (quantity and number parameters: a Range has no single value
//! to compare, R4 search.html does not define its match), `SampledData`, and `special`
//! parameters (`near`). `_text` has no expression: it is the narrative (`text.div`) with the
//! XHTML tags stripped, one `String`; `_content` is every string anywhere in the resource
//! (the narrative stripped likewise, `resourceType` left out), one `String` each.
//!
//! Expressions are parsed once per parameter and resource type and kept for the life of the
//! process.
//!
//! [`SearchValue`]: super::SearchValue
//! [`DateRange::parse`]: super::DateRange::parse
//! [`DateRange::period`]: super::DateRange::period

mod cache;
mod date;
mod number;
mod quantity;
mod reference;
mod string;
mod token;
mod uri;

use serde_json::Value;

use super::SearchValue;
use crate::members::member;
use crate::registry::{SearchParamDef, SearchParamType};

pub use reference::{target_of, without_history};
pub use string::{fold, narrative_text};

/// The code of the parameter matching the narrative.
const TEXT: &str = "_text";
/// The code of the parameter matching every string.
const CONTENT: &str = "_content";

/// The values `param`'s expression for `resource_type` selects from `resource`, typed by the
/// parameter's type. Composite parameters give one `SearchValue::Composite` per item their
/// expression selects (each with the values of its components, evaluated relative to the item;
/// an item missing a component gives nothing). Values of a shape the type does not cover
/// contribute nothing. An expression that fails to evaluate gives no values (never an error).
/// Values are given once each, in the order the expression selects them.
pub fn extract(resource_type: &str, param: &SearchParamDef, resource: &Value) -> Vec<SearchValue> {
    extract_with(resource_type, param, &cache::compiled(resource_type, param), resource)
}

/// [`extract`] with the parameter's expressions for `resource_type` parsed.
fn extract_with(resource_type: &str, param: &SearchParamDef, compiled: &cache::Compiled, resource: &Value) -> Vec<SearchValue> {
    if param.expression_for(resource_type).is_none() {
        return special(param, resource);
    }
    extract_compiled(param, compiled, resource)
}

/// The values of a parameter without an expression (`_text`, `_content`).
fn special(param: &SearchParamDef, resource: &Value) -> Vec<SearchValue> {
    let mut out = Vec::new();
    match param.code {
        TEXT => string::text(resource, &mut out),
        CONTENT => string::content(resource, &mut out),
        _ => {}
    }
    dedup(out)
}

/// The values of a parameter with an expression, its expressions parsed.
fn extract_compiled(param: &SearchParamDef, compiled: &cache::Compiled, resource: &Value) -> Vec<SearchValue> {
    let mut out = Vec::new();
    let Some(expression) = &compiled.expression else { return out };
    let selected = if param.kind == SearchParamType::Composite {
        expression.for_each_selected(resource, |item| out.extend(composite_item(&compiled.components, item)))
    } else {
        expression.for_each_selected(resource, |item| values_of(param.kind, item, &mut out))
    };
    match selected {
        Ok(()) => dedup(out),
        Err(_) => Vec::new(),
    }
}

/// One search parameter of one resource type, its expressions parsed: [`extract`] without
/// looking either up, for callers that go through every parameter of a type (indexing).
#[derive(Debug, Clone, Copy)]
pub struct Extractor {
    param: &'static SearchParamDef,
    resource_type: &'static str,
    compiled: &'static cache::Compiled,
}

impl Extractor {
    /// The parameter.
    pub fn param(&self) -> &'static SearchParamDef {
        self.param
    }

    /// What [`extract`] gives for this parameter and type.
    pub fn extract(&self, resource: &Value) -> Vec<SearchValue> {
        extract_with(self.resource_type, self.param, self.compiled, resource)
    }
}

/// An [`Extractor`] for each search parameter of `resource_type`, in
/// [`crate::registry::search_params`] order; empty for an unknown type.
pub fn extractors(resource_type: &str) -> Vec<Extractor> {
    let types = crate::registry::resource_types();
    let Ok(t) = types.binary_search(&resource_type) else { return Vec::new() };
    crate::registry::search_params(types[t])
        .zip(cache::compiled_of_type(t))
        .map(|(param, compiled)| Extractor { param, resource_type: types[t], compiled })
        .collect()
}

/// The values of a composite's components for one item; `None` when a component has no value.
fn composite_item(components: &[cache::Component], item: &Value) -> Option<SearchValue> {
    if components.is_empty() {
        return None;
    }
    let mut parts = Vec::with_capacity(components.len());
    for component in components {
        let (kind, expression) = (component.kind?, component.expression.as_ref()?);
        let mut values = Vec::new();
        expression.for_each_selected(item, |element| values_of(kind, element, &mut values)).ok()?;
        if values.is_empty() {
            return None;
        }
        parts.push(dedup(values));
    }
    Some(SearchValue::Composite(parts))
}

/// Appends the typed values of `element`, one element a parameter of type `kind` selected.
/// Composite and special parameters give nothing here (see [`extract`]).
pub fn values_of(kind: SearchParamType, element: &Value, out: &mut Vec<SearchValue>) {
    match kind {
        SearchParamType::Token => token::values(element, out),
        SearchParamType::String => string::values(element, out),
        SearchParamType::Reference => reference::values(element, out),
        SearchParamType::Date => date::values(element, out),
        SearchParamType::Number => number::values(element, out),
        SearchParamType::Quantity => quantity::values(element, out),
        SearchParamType::Uri => uri::values(element, out),
        SearchParamType::Composite | SearchParamType::Special => {}
    }
}

/// `values` without repeats, first occurrences kept (the lists are short).
fn dedup(values: Vec<SearchValue>) -> Vec<SearchValue> {
    let mut out: Vec<SearchValue> = Vec::with_capacity(values.len());
    for value in values {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

/// The string member `name` of an object, when non-empty.
fn str_member<'a>(object: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    member(object, name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Whether an object has the member `name`.
fn has(object: &serde_json::Map<String, Value>, name: &str) -> bool {
    member(object, name).is_some()
}

#[cfg(test)]
mod tests;
