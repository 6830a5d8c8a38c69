//! Token values: codes, Codings, CodeableConcepts, Identifiers and ContactPoints.

use serde_json::{Map, Value};

use super::str_member;

/// Pushes `system|code` for codings, `system|value` for identifiers and contact points, and
/// primitive codes as written.
pub(super) fn values(value: &Value, push: &mut impl FnMut(String)) {
    match value {
        Value::String(code) => push(code.clone()),
        Value::Bool(b) => push(b.to_string()),
        Value::Number(n) => push(n.to_string()),
        Value::Object(object) => {
            if let Some(Value::Array(codings)) = object.get("coding") {
                for coding in codings.iter().filter_map(Value::as_object) {
                    pair(coding, "code", push);
                }
            } else if object.contains_key("code") {
                pair(object, "code", push);
            } else {
                pair(object, "value", push);
            }
        }
        _ => {}
    }
}

/// `system|{member}` when the member is present.
fn pair(object: &Map<String, Value>, member: &str, push: &mut impl FnMut(String)) {
    if let Some(code) = str_member(object, member).filter(|c| !c.is_empty()) {
        push(format!("{}|{code}", str_member(object, "system").unwrap_or("")));
    }
}

#[cfg(test)]
mod tests {
    use fhirlake_fhir::registry::SearchParamType::Token;
    use serde_json::json;

    use crate::normalise::values_of;

    #[test]
    fn codes_codings_and_identifiers() {
        assert_eq!(values_of(Token, &json!("female")), ["female"]);
        assert_eq!(values_of(Token, &json!(true)), ["true"]);
        let concept =
            json!({"coding": [{"system": "http://loinc.org", "code": "8867-4"}, {"code": "hr"}, {"system": "s"}], "text": "Heart rate"});
        assert_eq!(values_of(Token, &concept), ["http://loinc.org|8867-4", "|hr"]);
        assert_eq!(values_of(Token, &json!({"system": "http://snomed.info/sct", "code": "123"})), ["http://snomed.info/sct|123"]);
        assert_eq!(values_of(Token, &json!({"system": "urn:oid:1.2.36", "value": "12345"})), ["urn:oid:1.2.36|12345"]);
        assert_eq!(values_of(Token, &json!({"system": "phone", "value": "555-0100", "use": "home"})), ["phone|555-0100"]);
        assert!(values_of(Token, &json!({"text": "only text"})).is_empty());
    }
}
