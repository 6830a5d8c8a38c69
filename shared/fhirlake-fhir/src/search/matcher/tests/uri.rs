//! search.html#uri.

use super::*;

fn value_set(url: &str) -> Value {
    json!({"resourceType": "ValueSet", "status": "active", "url": url})
}

fn uri_hit(stored: &str, modifier: Modifier, query: &str) -> bool {
    hit(&value_set(stored), "url", modifier, vec![uri(query)])
}

#[test]
fn uris_match_exactly() {
    // "ValueSet?url=http://acme.org/fhir/ValueSet/123".
    let stored = "http://acme.org/fhir/ValueSet/123";
    assert!(uri_hit(stored, Modifier::None, "http://acme.org/fhir/ValueSet/123"));
    assert!(!uri_hit(stored, Modifier::None, "http://acme.org/fhir/ValueSet/12"));
    assert!(!uri_hit(stored, Modifier::None, "http://acme.org/fhir/ValueSet/123/"));
    assert!(!uri_hit(stored, Modifier::None, "http://acme.org/fhir/valueset/123"), "uris are case-sensitive");
}

#[test]
fn below_matches_uris_under_the_value() {
    // "ValueSet?url:below=http://acme.org/fhir/: … all value sets … that start with it".
    let stored = "http://acme.org/fhir/ValueSet/123";
    assert!(uri_hit(stored, Modifier::Below, "http://acme.org/fhir/"));
    assert!(uri_hit(stored, Modifier::Below, "http://acme.org/fhir"));
    assert!(uri_hit(stored, Modifier::Below, stored));
    assert!(!uri_hit(stored, Modifier::Below, "http://acme.org/fh"), "whole segments");
    assert!(!uri_hit(stored, Modifier::Below, "http://acme.org/fhir/ValueSet/123/_history/5"));
}

#[test]
fn above_matches_uris_the_value_is_under() {
    // "ValueSet?url:above=http://acme.org/fhir/ValueSet/123/_history/5: … would match any value
    // set with url http://acme.org/fhir/ValueSet/123 or http://acme.org/fhir/".
    let query = "http://acme.org/fhir/ValueSet/123/_history/5";
    assert!(uri_hit("http://acme.org/fhir/ValueSet/123", Modifier::Above, query));
    assert!(uri_hit("http://acme.org/fhir/", Modifier::Above, query));
    assert!(uri_hit("http://acme.org/fhir", Modifier::Above, query));
    assert!(!uri_hit("http://acme.org/fhir/ValueSet/12", Modifier::Above, query));
    assert!(!uri_hit("http://acme.org/fhir/ValueSet/123/_history/5/x", Modifier::Above, query));
}

#[test]
fn contains_is_a_substring() {
    let stored = "http://acme.org/fhir/ValueSet/123";
    assert!(uri_hit(stored, Modifier::Contains, "ValueSet"));
    assert!(uri_hit(stored, Modifier::Contains, "valueset/1"));
    assert!(!uri_hit(stored, Modifier::Contains, "CodeSystem"));
}

#[test]
fn profiles_and_sources() {
    let p = json!({"resourceType": "Patient", "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"], "source": "http://example.org/app#1"}});
    assert!(hit(&p, "_profile", Modifier::None, vec![uri("http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient")]));
    assert!(hit(&p, "_profile", Modifier::Below, vec![uri("http://hl7.org/fhir/us/core")]));
    assert!(!hit(&p, "_profile", Modifier::None, vec![uri("http://hl7.org/fhir/StructureDefinition/Patient")]));
    assert!(hit(&p, "_source", Modifier::None, vec![uri("http://example.org/app#1")]));
    assert!(!hit(&p, "_source", Modifier::Exact, vec![uri("http://example.org/app#1")]));
}
