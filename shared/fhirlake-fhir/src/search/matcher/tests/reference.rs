//! search.html#reference.

use super::*;

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/example/_history/3"},
        "performer": [{"reference": "Practitioner/p1"}, {"reference": "#contained"}, {"identifier": {"system": "urn:npi", "value": "999"}}],
        "hasMember": [{"reference": "https://other.example.org/fhir/Observation/o9"}]
    })
}

fn ref_hit(resource: &Value, code: &str, modifier: Modifier, query: &str) -> bool {
    hit(resource, code, modifier, vec![reference(query)])
}

#[test]
fn type_and_id() {
    let o = observation();
    assert!(ref_hit(&o, "subject", Modifier::None, "Patient/example"));
    assert!(ref_hit(&o, "subject", Modifier::None, "Patient/example/_history/1"), "versions are ignored");
    assert!(!ref_hit(&o, "subject", Modifier::None, "Group/example"));
    assert!(!ref_hit(&o, "subject", Modifier::None, "Patient/exam"));
    assert!(ref_hit(&o, "patient", Modifier::None, "Patient/example"));
    assert!(ref_hit(&o, "performer", Modifier::None, "Practitioner/p1"));
    assert!(!ref_hit(&o, "performer", Modifier::None, "#contained"));
}

#[test]
fn id_alone_matches_any_type() {
    // "[parameter]=[id]: the logical id of a resource".
    let o = observation();
    assert!(ref_hit(&o, "subject", Modifier::None, "example"));
    assert!(ref_hit(&o, "performer", Modifier::None, "p1"));
    assert!(!ref_hit(&o, "subject", Modifier::None, "p1"));
}

#[test]
fn type_modifier_restricts_the_target() {
    // "subject:Patient=23": a reference to a Patient with id 23.
    let o = observation();
    assert!(ref_hit(&o, "subject", Modifier::Type("Patient".into()), "example"));
    assert!(ref_hit(&o, "subject", Modifier::Type("Patient".into()), "Patient/example"));
    assert!(!ref_hit(&o, "subject", Modifier::Type("Group".into()), "example"));
    assert!(!ref_hit(&o, "subject", Modifier::Type("Patient".into()), "Group/example"));
}

#[test]
fn absolute_urls_match_themselves_only() {
    let o = observation();
    assert!(ref_hit(&o, "has-member", Modifier::None, "https://other.example.org/fhir/Observation/o9"));
    assert!(!ref_hit(&o, "has-member", Modifier::None, "Observation/o9"), "another server's resource");
    assert!(!ref_hit(&o, "has-member", Modifier::None, "o9"));
    assert!(!ref_hit(&o, "subject", Modifier::None, "https://fhirlake.example.org/fhir/Patient/example"), "the caller strips its own base");
    assert!(ref_hit(&o, "has-member", Modifier::Type("Observation".into()), "https://other.example.org/fhir/Observation/o9"));
}

#[test]
fn identifier_modifier_is_a_token_search_on_the_identifier() {
    // ":identifier … processed as a token search against Reference.identifier".
    let o = observation();
    assert!(ref_hit(&o, "performer", Modifier::Identifier, "urn:npi|999"));
    assert!(ref_hit(&o, "performer", Modifier::Identifier, "999"));
    assert!(!ref_hit(&o, "performer", Modifier::Identifier, "|999"));
    assert!(!ref_hit(&o, "performer", Modifier::Identifier, "urn:other|999"));
    assert!(ref_hit(&o, "performer", Modifier::Identifier, "urn:npi|"));
    assert!(hit(&o, "performer", Modifier::Identifier, vec![tok(Some("urn:npi"), Some("999"))]));
    assert!(!ref_hit(&o, "subject", Modifier::Identifier, "example"));
}

#[test]
fn canonicals_with_and_without_versions() {
    // "References to canonical URLs": url matches any version, url|version that version.
    let versioned =
        json!({"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": "http://example.org/Questionnaire/q|2.0"});
    let bare =
        json!({"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": "http://example.org/Questionnaire/q"});
    assert!(ref_hit(&versioned, "questionnaire", Modifier::None, "http://example.org/Questionnaire/q"));
    assert!(ref_hit(&versioned, "questionnaire", Modifier::None, "http://example.org/Questionnaire/q|2.0"));
    assert!(!ref_hit(&versioned, "questionnaire", Modifier::None, "http://example.org/Questionnaire/q|3.0"));
    assert!(!ref_hit(&versioned, "questionnaire", Modifier::None, "http://example.org/Questionnaire/qq"));
    assert!(ref_hit(&bare, "questionnaire", Modifier::None, "http://example.org/Questionnaire/q"));
    assert!(!ref_hit(&bare, "questionnaire", Modifier::None, "http://example.org/Questionnaire/q|2.0"));
    assert!(ref_hit(&bare, "questionnaire", Modifier::Type("Questionnaire".into()), "http://example.org/Questionnaire/q"));
}

#[test]
fn reference_type_from_the_type_element() {
    let report = json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "type": "Patient"}});
    assert!(ref_hit(&report, "subject", Modifier::None, "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"));
    assert!(ref_hit(&report, "subject", Modifier::Type("Patient".into()), "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"));
    assert!(!ref_hit(&report, "subject", Modifier::Type("Group".into()), "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"));
}

#[test]
fn hierarchy_modifiers_never_match() {
    let o = observation();
    assert!(!ref_hit(&o, "subject", Modifier::Above, "Patient/example"));
    assert!(!ref_hit(&o, "subject", Modifier::Below, "Patient/example"));
    assert!(!ref_hit(&o, "subject", Modifier::Text, "Patient/example"));
}
