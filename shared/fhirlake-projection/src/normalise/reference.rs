//! Reference values: `Type/id` or absolute URLs, canonicals and uris.

use serde_json::Value;

use super::str_member;

/// Pushes the reference without a version suffix; contained and identifier-only references
/// are left out.
pub(super) fn values(value: &Value, push: &mut impl FnMut(String)) {
    match value {
        Value::String(uri) => push(uri.clone()),
        Value::Object(object) => {
            if let Some(reference) = str_member(object, "reference").filter(|r| !r.starts_with('#')) {
                push(without_history(reference).to_string());
            }
        }
        _ => {}
    }
}

/// `Patient/1/_history/2` → `Patient/1`.
fn without_history(reference: &str) -> &str {
    match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    }
}

#[cfg(test)]
mod tests {
    use fhirlake_fhir::registry::SearchParamType::Reference;
    use serde_json::json;

    use crate::normalise::values_of;

    #[test]
    fn references_lose_versions_and_contained_ones_are_left_out() {
        assert_eq!(values_of(Reference, &json!({"reference": "Patient/123"})), ["Patient/123"]);
        assert_eq!(values_of(Reference, &json!({"reference": "Patient/123/_history/4", "display": "x"})), ["Patient/123"]);
        assert_eq!(values_of(Reference, &json!({"reference": "https://other.org/fhir/Patient/9"})), ["https://other.org/fhir/Patient/9"]);
        assert!(values_of(Reference, &json!({"reference": "#contained"})).is_empty());
        assert!(values_of(Reference, &json!({"identifier": {"value": "1"}})).is_empty());
        assert_eq!(values_of(Reference, &json!("http://example.org/Questionnaire/q|2")), ["http://example.org/Questionnaire/q|2"]);
    }
}
