//! search.html#string.

use super::*;

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter <b>Chalmers</b>, diabetes since 2001</div>"},
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}, {"family": "Müller", "given": ["Zoë"]}],
        "address": [{"line": ["534 Erewhon St"], "city": "PleasantVille", "country": "AU"}]
    })
}

fn string_hit(code: &str, modifier: Modifier, value: &str) -> bool {
    hit(&patient(), code, modifier, vec![s(value)])
}

#[test]
fn default_is_starts_with_ignoring_case_and_accents() {
    // "a field matches a string query if the value of the field equals or starts with the
    // supplied parameter value, after both have been normalized by case and accent".
    assert!(string_hit("name", Modifier::None, "peter"));
    assert!(string_hit("name", Modifier::None, "PET"));
    assert!(string_hit("name", Modifier::None, "Chalmers"));
    assert!(!string_hit("name", Modifier::None, "eter"));
    assert!(!string_hit("name", Modifier::None, "Peters"));
    assert!(string_hit("family", Modifier::None, "muller"));
    assert!(string_hit("family", Modifier::None, "MÜLL"));
    assert!(string_hit("given", Modifier::None, "zoe"));
    assert!(!string_hit("given", Modifier::None, "chalmers"), "given holds given names only");
    assert!(string_hit("address", Modifier::None, "534 erewhon"));
    assert!(string_hit("address-city", Modifier::None, "pleasant"));
    assert!(!string_hit("address-city", Modifier::None, "ville"));
    assert!(string_hit("address-country", Modifier::None, "au"));
    // Whitespace runs fold to one space.
    assert!(string_hit("address", Modifier::None, "534   Erewhon"));
}

#[test]
fn exact_is_the_whole_value_with_case_and_accents() {
    // ":exact … the search parameter value [is] an exact match, including case and accents".
    assert!(string_hit("family", Modifier::Exact, "Chalmers"));
    assert!(!string_hit("family", Modifier::Exact, "chalmers"));
    assert!(!string_hit("family", Modifier::Exact, "Chalm"));
    assert!(string_hit("family", Modifier::Exact, "Müller"));
    assert!(!string_hit("family", Modifier::Exact, "Muller"));
}

#[test]
fn contains_is_anywhere_ignoring_case_and_accents() {
    // ":contains … the value of the field contains the supplied parameter value anywhere".
    assert!(string_hit("family", Modifier::Contains, "alm"));
    assert!(string_hit("family", Modifier::Contains, "ALM"));
    assert!(string_hit("family", Modifier::Contains, "ulle"));
    assert!(string_hit("address", Modifier::Contains, "erewhon"));
    assert!(!string_hit("family", Modifier::Contains, "xyz"));
}

#[test]
fn text_searches_the_narrative_anywhere() {
    assert!(string_hit("_text", Modifier::None, "diabetes"));
    assert!(string_hit("_text", Modifier::None, "peter chalmers"), "tags are gone");
    assert!(!string_hit("_text", Modifier::None, "asthma"));
    assert!(string_hit("_content", Modifier::None, "erewhon"));
    assert!(string_hit("_content", Modifier::Exact, "PleasantVille"));
}

#[test]
fn other_modifiers_do_not_match() {
    assert!(!string_hit("family", Modifier::Text, "Chalmers"));
    assert!(!string_hit("family", Modifier::Below, "Chalmers"));
    assert!(!hit(&patient(), "family", Modifier::None, vec![tok(None, Some("Chalmers"))]));
}
