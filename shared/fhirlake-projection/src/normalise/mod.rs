//! How the values a search parameter's expression selects become the strings of its column:
//! one small module per parameter type. Values of a shape the type does not cover (a Range
//! for a date parameter, a Reference with only an identifier) contribute nothing. Pure.
//!
//! | type | element | value written |
//! |---|---|---|
//! | token | Coding, each Coding of a CodeableConcept | `system|code` (`|code` without a system) |
//! | token | Identifier, ContactPoint | `system|value` |
//! | token | code, string, boolean, id, uri | the value as written (`female`, `true`) |
//! | reference | Reference | `reference` without a `/_history/n` suffix: `Patient/123`, or the absolute URL; contained (`#x`) and identifier-only references are left out |
//! | reference | canonical, uri | as written |
//! | date | date, dateTime, instant | partial dates as written (`1974`, `1974-12`, `1974-12-25`); date-times in UTC, `2024-05-01T10:00:00Z` |
//! | date | Period; Timing | `start/end` (ISO 8601 interval, `..` for an open end); each event, and `repeat.boundsPeriod` as a Period |
//! | string | string, markdown; HumanName, Address | folded (below); each part of a name (family, given, prefix, suffix, text) or address (line, city, district, state, postalCode, country, text) |
//! | quantity | Quantity (Age, Duration, …), Money | `value|system|code`, with `unit` when there is no code; Money: `value|urn:iso:std:iso:4217|currency` |
//! | number | integer, decimal | the number (`5.4`) |
//! | uri | uri, url, canonical | as written |
//!
//! Folding (string parameters): lower-cased, compatibility-decomposed (NFKD) with combining marks
//! removed, whitespace runs collapsed to one space and trimmed: `  Ärzte  Müller ` → `arzte muller`.

mod date;
mod number;
mod quantity;
mod reference;
mod string;
mod token;
mod uri;

use fhirlake_fhir::registry::SearchParamType;
use serde_json::Value;

pub use string::fold;

/// Appends the normalised values of `value`, an element selected by a parameter of type `kind`,
/// to `out`, leaving out values already there.
pub fn normalise(kind: SearchParamType, value: &Value, out: &mut Vec<String>) {
    let mut push = |s: String| {
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    };
    match kind {
        SearchParamType::Token => token::values(value, &mut push),
        SearchParamType::Reference => reference::values(value, &mut push),
        SearchParamType::Date => date::values(value, &mut push),
        SearchParamType::String => string::values(value, &mut push),
        SearchParamType::Quantity => quantity::values(value, &mut push),
        SearchParamType::Number => number::values(value, &mut push),
        SearchParamType::Uri => uri::values(value, &mut push),
        SearchParamType::Composite | SearchParamType::Special => {}
    }
}

/// The string member `name` of an object.
fn str_member<'a>(object: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

#[cfg(test)]
pub(crate) fn values_of(kind: SearchParamType, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    normalise(kind, value, &mut out);
    out
}
