//! search.html#token.

use super::*;

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}], "text": "Medical record number"}, "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"},
            {"value": "no-system"}
        ],
        "active": true,
        "telecom": [{"system": "phone", "value": "(03) 5555 6473"}],
        "gender": "male",
        "meta": {"tag": [{"system": "http://example.org/tags", "code": "vip"}], "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel with all children optional"}], "text": "Blood pressure"},
        "component": [{"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]}}]
    })
}

fn token_hit(resource: &Value, code: &str, modifier: Modifier, query: QueryValue) -> bool {
    hit(resource, code, modifier, vec![query])
}

#[test]
fn code_alone_matches_any_system() {
    // "[parameter]=[code]: the value of [code] matches a Coding.code or Identifier.value
    // irrespective of the value of the system property".
    let o = observation();
    assert!(token_hit(&o, "code", Modifier::None, tok(None, Some("85354-9"))));
    assert!(!token_hit(&o, "code", Modifier::None, tok(None, Some("8480-6"))), "a component's code is not the code");
    assert!(token_hit(&o, "combo-code", Modifier::None, tok(None, Some("8480-6"))));
    assert!(token_hit(&o, "component-code", Modifier::None, tok(None, Some("8480-6"))));
    assert!(token_hit(&patient(), "identifier", Modifier::None, tok(None, Some("12345"))));
    assert!(token_hit(&patient(), "gender", Modifier::None, tok(None, Some("male"))));
    // Codes are case-sensitive.
    assert!(!token_hit(&patient(), "gender", Modifier::None, tok(None, Some("Male"))));
    assert!(token_hit(&o, "status", Modifier::None, tok(None, Some("final"))));
}

#[test]
fn system_and_code() {
    // "[parameter]=[system]|[code]: … and the value of [system] matches the system property".
    let o = observation();
    assert!(token_hit(&o, "code", Modifier::None, tok(Some(LOINC), Some("85354-9"))));
    assert!(!token_hit(&o, "code", Modifier::None, tok(Some("http://snomed.info/sct"), Some("85354-9"))));
    let p = patient();
    assert!(token_hit(&p, "identifier", Modifier::None, tok(Some("urn:oid:1.2.36.146.595.217.0.1"), Some("12345"))));
    assert!(!token_hit(&p, "identifier", Modifier::None, tok(Some("urn:oid:1.2.36.146.595.217.0.1"), Some("no-system"))));
    assert!(token_hit(&p, "_tag", Modifier::None, tok(Some("http://example.org/tags"), Some("vip"))));
    assert!(token_hit(&p, "_security", Modifier::None, tok(Some("http://terminology.hl7.org/CodeSystem/v3-Confidentiality"), Some("R"))));
}

#[test]
fn no_system() {
    // "[parameter]=|[code]: … and the Coding/Identifier has no system property".
    let p = patient();
    assert!(token_hit(&p, "identifier", Modifier::None, tok(Some(""), Some("no-system"))));
    assert!(!token_hit(&p, "identifier", Modifier::None, tok(Some(""), Some("12345"))));
    assert!(token_hit(&p, "gender", Modifier::None, tok(Some(""), Some("male"))));
}

#[test]
fn system_only() {
    // "[parameter]=[system]|: any element where the value of [system] matches the system property".
    let o = observation();
    assert!(token_hit(&o, "code", Modifier::None, tok(Some(LOINC), None)));
    assert!(!token_hit(&o, "code", Modifier::None, tok(Some("http://snomed.info/sct"), None)));
    assert!(token_hit(&patient(), "identifier", Modifier::None, tok(Some("urn:oid:1.2.36.146.595.217.0.1"), None)));
    assert!(!token_hit(&o, "code", Modifier::None, tok(None, None)), "neither system nor code");
}

#[test]
fn booleans_and_contact_points() {
    let p = patient();
    assert!(token_hit(&p, "active", Modifier::None, tok(None, Some("true"))));
    assert!(!token_hit(&p, "active", Modifier::None, tok(None, Some("false"))));
    // A ContactPoint matches on its value, with no system.
    assert!(token_hit(&p, "telecom", Modifier::None, tok(None, Some("(03) 5555 6473"))));
    assert!(token_hit(&p, "phone", Modifier::None, tok(Some(""), Some("(03) 5555 6473"))));
    assert!(!token_hit(&p, "telecom", Modifier::None, tok(Some("phone"), Some("(03) 5555 6473"))));
}

#[test]
fn text_is_a_string_search_on_the_text() {
    // ":text … the search parameter is processed as a string search against the text associated
    // with the code/value - either CodeableConcept.text, Coding.display, or Identifier.type.text".
    let o = observation();
    assert!(token_hit(&o, "code", Modifier::Text, s("blood")));
    assert!(token_hit(&o, "code", Modifier::Text, s("BLOOD PRESSURE PANEL")));
    assert!(!token_hit(&o, "code", Modifier::Text, s("pressure")), "string search: starts with");
    assert!(!token_hit(&o, "code", Modifier::Text, s("85354-9")));
    assert!(token_hit(&o, "combo-code", Modifier::Text, s("systolic")));
    assert!(token_hit(&patient(), "identifier", Modifier::Text, s("medical record")));
    // A parser that kept the value as a token.
    assert!(token_hit(&o, "code", Modifier::Text, tok(None, Some("Blood"))));
}

#[test]
fn of_type_matches_the_identifier_type_and_value() {
    // ":of-type … [system]|[code]|[value]" of Identifier.type and Identifier.value.
    let of_type = |type_system: &str, type_code: &str, value: &str| QueryValue::OfType {
        type_system: type_system.into(),
        type_code: type_code.into(),
        value: value.into(),
    };
    let p = patient();
    assert!(token_hit(&p, "identifier", Modifier::OfType, of_type("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "12345")));
    assert!(!token_hit(&p, "identifier", Modifier::OfType, of_type("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "1234")));
    assert!(!token_hit(&p, "identifier", Modifier::OfType, of_type("http://terminology.hl7.org/CodeSystem/v2-0203", "DL", "12345")));
    assert!(!token_hit(&p, "identifier", Modifier::OfType, of_type("http://other", "MR", "12345")));
}

#[test]
fn not_reverses_the_match_and_includes_resources_without_a_value() {
    // ":not … reverses the code matching described above. Note that this includes resources
    // that have no value for the parameter".
    let male = patient();
    let female = json!({"resourceType": "Patient", "gender": "female"});
    let unknown = json!({"resourceType": "Patient"});
    assert!(!token_hit(&male, "gender", Modifier::Not, tok(None, Some("male"))));
    assert!(token_hit(&female, "gender", Modifier::Not, tok(None, Some("male"))));
    assert!(token_hit(&unknown, "gender", Modifier::Not, tok(None, Some("male"))));
    // With OR-ed values: none of them.
    assert!(!hit(&female, "gender", Modifier::Not, vec![tok(None, Some("male")), tok(None, Some("female"))]));
    assert!(hit(&unknown, "gender", Modifier::Not, vec![tok(None, Some("male")), tok(None, Some("female"))]));
    // On a CodeableConcept, any coding counts.
    assert!(!token_hit(&observation(), "code", Modifier::Not, tok(Some(LOINC), Some("85354-9"))));
    assert!(token_hit(&observation(), "code", Modifier::Not, tok(Some(LOINC), Some("8480-6"))));
}

#[test]
fn terminology_modifiers_never_match() {
    let o = observation();
    for modifier in [Modifier::Above, Modifier::Below, Modifier::In, Modifier::NotIn, Modifier::Exact, Modifier::Contains] {
        assert!(!token_hit(&o, "code", modifier.clone(), tok(Some(LOINC), Some("85354-9"))), "{modifier:?}");
    }
    assert!(!token_hit(&o, "code", Modifier::In, reference("http://loinc.org/vs")));
}
