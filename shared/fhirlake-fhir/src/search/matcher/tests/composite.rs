//! search.html#composite.

use super::*;

/// A blood pressure panel: systolic 107 and diastolic 60.5 mm[Hg] as components.
fn blood_pressure() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 107, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 60.5, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
        ]
    })
}

fn glucose() -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "2339-0"}]},
        "valueQuantity": {"value": 6.3, "unit": "mmol/l", "system": UCUM, "code": "mmol/L"}})
}

fn composite(code: &str, quantity: QueryValue) -> QueryValue {
    QueryValue::Composite(vec![tok(Some(LOINC), Some(code)), quantity])
}

#[test]
fn both_parts_match_the_same_item() {
    // "component-code-value-quantity=http://loinc.org|8480-6$lt60": a component with that code
    // and a value below 60; the parts must hold in one component.
    let bp = blood_pressure();
    let c = |code, prefix, value| {
        hit(&bp, "component-code-value-quantity", Modifier::None, vec![composite(code, qty(prefix, value, None, None))])
    };
    assert!(c("8480-6", Prefix::Gt, "100"));
    assert!(!c("8480-6", Prefix::Lt, "100"));
    assert!(c("8462-4", Prefix::Lt, "61"));
    // The systolic value is above 100, but not in the diastolic component.
    assert!(!c("8462-4", Prefix::Gt, "100"));
    assert!(!c("85354-9", Prefix::Gt, "0"), "the panel's own code is not a component's");
}

#[test]
fn code_value_quantity_on_the_observation() {
    // "Observation?code-value-quantity=http://loinc.org|2339-0$gt6|http://unitsofmeasure.org|mmol/L".
    let g = glucose();
    let c = |query| hit(&g, "code-value-quantity", Modifier::None, vec![query]);
    assert!(c(composite("2339-0", qty(Prefix::Gt, "6", Some(UCUM), Some("mmol/L")))));
    assert!(!c(composite("2339-0", qty(Prefix::Gt, "7", Some(UCUM), Some("mmol/L")))));
    assert!(!c(composite("2339-0", qty(Prefix::Gt, "6", Some(UCUM), Some("mg/dL")))));
    assert!(!c(composite("8480-6", qty(Prefix::Gt, "6", None, None))));
    // The combo parameter looks at the observation and its components.
    let bp = blood_pressure();
    assert!(hit(&bp, "combo-code-value-quantity", Modifier::None, vec![composite("8462-4", qty(Prefix::Eq, "60.5", None, None))]));
    assert!(hit(&g, "combo-code-value-quantity", Modifier::None, vec![composite("2339-0", qty(Prefix::Eq, "6.3", None, None))]));
}

#[test]
fn or_values_and_malformed_composites() {
    let g = glucose();
    let good = composite("2339-0", qty(Prefix::Eq, "6.3", None, None));
    let bad = composite("2339-0", qty(Prefix::Eq, "9", None, None));
    assert!(hit(&g, "code-value-quantity", Modifier::None, vec![bad.clone(), good.clone()]));
    assert!(!hit(&g, "code-value-quantity", Modifier::None, vec![bad]));
    assert!(
        !hit(&g, "code-value-quantity", Modifier::None, vec![QueryValue::Composite(vec![tok(Some(LOINC), Some("2339-0"))])]),
        "one part short"
    );
    assert!(!hit(&g, "code-value-quantity", Modifier::Exact, vec![good]));
    assert!(!hit(&g, "code-value-quantity", Modifier::None, vec![tok(Some(LOINC), Some("2339-0"))]));
}

#[test]
fn code_value_concept_and_date() {
    let o = json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "883-9"}]},
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "112144000"}]}});
    let concept = QueryValue::Composite(vec![tok(Some(LOINC), Some("883-9")), tok(Some("http://snomed.info/sct"), Some("112144000"))]);
    assert!(hit(&o, "code-value-concept", Modifier::None, vec![concept]));
    let dated =
        json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"code": "t"}]}, "valueDateTime": "2020-03-04"});
    let query = QueryValue::Composite(vec![tok(None, Some("t")), date(Prefix::Ge, "2020-03")]);
    assert!(hit(&dated, "code-value-date", Modifier::None, vec![query]));
}
