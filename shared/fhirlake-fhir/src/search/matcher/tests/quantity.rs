//! search.html#quantity.

use super::*;

fn observation(quantity: Value) -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": quantity})
}

fn mg() -> Value {
    observation(json!({"value": 5.4, "unit": "milligram", "system": UCUM, "code": "mg"}))
}

fn q_hit(resource: &Value, query: QueryValue) -> bool {
    hit(resource, "value-quantity", Modifier::None, vec![query])
}

#[test]
fn system_and_code_both_match() {
    // "value-quantity=5.4|http://unitsofmeasure.org|mg: … a value of 5.4 (+/-0.05) mg where
    // the unit is the UCUM code mg".
    let o = mg();
    assert!(q_hit(&o, qty(Prefix::Eq, "5.4", Some(UCUM), Some("mg"))));
    assert!(q_hit(&o, qty(Prefix::Eq, "5.40", Some(UCUM), Some("mg"))), "5.40 is [5.395, 5.405)");
    assert!(!q_hit(&o, qty(Prefix::Eq, "5.44", Some(UCUM), Some("mg"))), "5.44 is [5.435, 5.445)");
    assert!(!q_hit(&o, qty(Prefix::Eq, "5.4", Some("http://snomed.info/sct"), Some("mg"))));
    assert!(!q_hit(&o, qty(Prefix::Eq, "5.4", Some(UCUM), Some("milligram"))), "with a system, the code is compared, not the unit");
    assert!(!q_hit(&o, qty(Prefix::Eq, "5.5", Some(UCUM), Some("mg"))));
}

#[test]
fn without_a_system_the_code_or_the_unit() {
    // "value-quantity=5.4||mg: … where the unit is 'mg' (code or unit)".
    let o = mg();
    assert!(q_hit(&o, qty(Prefix::Eq, "5.4", None, Some("mg"))));
    assert!(q_hit(&o, qty(Prefix::Eq, "5.4", None, Some("milligram"))));
    assert!(q_hit(&o, qty(Prefix::Eq, "5.4", Some(""), Some("milligram"))));
    assert!(!q_hit(&o, qty(Prefix::Eq, "5.4", None, Some("g"))));
    let unit_only = observation(json!({"value": 72, "unit": "beats/min"}));
    assert!(q_hit(&unit_only, qty(Prefix::Eq, "72", None, Some("beats/min"))));
    assert!(!q_hit(&unit_only, qty(Prefix::Eq, "72", Some(UCUM), Some("beats/min"))));
}

#[test]
fn a_bare_number_matches_any_unit() {
    // "value-quantity=5.4: … a value of 5.4 (+/-0.05), irrespective of the unit".
    let o = mg();
    assert!(q_hit(&o, qty(Prefix::Eq, "5.4", None, None)));
    assert!(q_hit(&o, number(Prefix::Eq, "5.4")));
    assert!(q_hit(&o, qty(Prefix::Eq, "5", None, None)), "5 is [4.5, 5.5)");
    assert!(q_hit(&o, qty(Prefix::Eq, "5.4", Some(UCUM), None)), "a system alone: any code of it");
}

#[test]
fn prefixes_follow_the_number_rules() {
    // "value-quantity=lt5.4|http://unitsofmeasure.org|mg".
    let o = mg();
    assert!(q_hit(&o, qty(Prefix::Lt, "5.5", Some(UCUM), Some("mg"))));
    assert!(!q_hit(&o, qty(Prefix::Lt, "5.4", Some(UCUM), Some("mg"))));
    assert!(q_hit(&o, qty(Prefix::Le, "5.4", Some(UCUM), Some("mg"))));
    assert!(q_hit(&o, qty(Prefix::Gt, "5", Some(UCUM), Some("mg"))));
    assert!(q_hit(&o, qty(Prefix::Ge, "5.4", None, None)));
    assert!(q_hit(&o, qty(Prefix::Ap, "5", None, None)), "5.4 is within 10% of 5");
    assert!(!q_hit(&o, qty(Prefix::Ap, "4.8", None, None)), "0.6 is more than 10% of 4.8");
    assert!(q_hit(&o, qty(Prefix::Ne, "6", None, None)));
}

#[test]
fn units_are_not_converted() {
    // "value-quantity=5.40e-3|http://unitsofmeasure.org|g" would need UCUM canonicalisation.
    assert!(!q_hit(&mg(), qty(Prefix::Eq, "5.40e-3", Some(UCUM), Some("g"))));
}

#[test]
fn money_and_other_quantity_types() {
    let charge = json!({"resourceType": "ChargeItem", "status": "billable", "code": {"text": "x"}, "subject": {"reference": "Patient/1"},
        "priceOverride": {"value": 12.5, "currency": "EUR"}});
    let price = |query| hit(&charge, "price-override", Modifier::None, vec![query]);
    assert!(price(qty(Prefix::Eq, "12.5", Some("urn:iso:std:iso:4217"), Some("EUR"))));
    assert!(price(qty(Prefix::Eq, "12.5", None, Some("EUR"))));
    assert!(!price(qty(Prefix::Eq, "12.5", Some("urn:iso:std:iso:4217"), Some("USD"))));
    assert!(price(qty(Prefix::Gt, "10", None, None)));
    let encounter = json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
        "length": {"value": 90, "unit": "min", "system": UCUM, "code": "min"}});
    assert!(hit(&encounter, "length", Modifier::None, vec![qty(Prefix::Ge, "60", Some(UCUM), Some("min"))]));
    assert!(!hit(&encounter, "length", Modifier::Missing, vec![QueryValue::Missing(true)]));
    assert!(!hit(&encounter, "length", Modifier::Exact, vec![qty(Prefix::Eq, "90", None, None)]));
}
