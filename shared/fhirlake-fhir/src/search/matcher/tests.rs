use serde_json::{json, Value};

use super::*;
use crate::registry;
use crate::search::values::extract;
use crate::search::{DateRange, Decimal, Prefix};

/// A fixed "now" for `ap` on dates: 2024-01-01T00:00:00Z.
const NOW: i64 = 1_704_067_200_000_000;

fn param(resource_type: &str, code: &str) -> &'static SearchParamDef {
    registry::search_param(resource_type, code).unwrap_or_else(|| panic!("{resource_type} has {code}"))
}

fn criterion(resource_type: &str, code: &str, modifier: Modifier, values: Vec<QueryValue>) -> Criterion {
    Criterion { path: Vec::new(), param: param(resource_type, code), modifier, values }
}

/// Whether `resource` matches `code[:modifier]=values` (one criterion).
fn hit(resource: &Value, code: &str, modifier: Modifier, values: Vec<QueryValue>) -> bool {
    let resource_type = resource["resourceType"].as_str().expect("a resource type");
    let c = criterion(resource_type, code, modifier, values);
    matches_at(&c, &extract(resource_type, c.param, resource), NOW)
}

fn d(s: &str) -> Decimal {
    Decimal::parse(s).expect("a decimal")
}

fn range(s: &str) -> DateRange {
    DateRange::parse(s).expect("a date")
}

fn number(prefix: Prefix, value: &str) -> QueryValue {
    QueryValue::Number { prefix, value: d(value) }
}

fn date(prefix: Prefix, value: &str) -> QueryValue {
    QueryValue::Date { prefix, value: range(value) }
}

fn s(value: &str) -> QueryValue {
    QueryValue::String(value.into())
}

fn tok(system: Option<&str>, code: Option<&str>) -> QueryValue {
    QueryValue::Token { system: system.map(str::to_string), code: code.map(str::to_string) }
}

fn reference(value: &str) -> QueryValue {
    QueryValue::Reference(value.into())
}

fn qty(prefix: Prefix, value: &str, system: Option<&str>, code: Option<&str>) -> QueryValue {
    QueryValue::Quantity { prefix, value: d(value), system: system.map(str::to_string), code: code.map(str::to_string) }
}

fn uri(value: &str) -> QueryValue {
    QueryValue::Uri(value.into())
}

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

mod composite;
mod date;
mod number;
mod quantity;
mod reference;
mod string;
mod token;
mod uri;

#[test]
fn missing_matches_by_presence() {
    let with = json!({"resourceType": "Patient", "gender": "male"});
    let without = json!({"resourceType": "Patient"});
    // search.html#missing: "gender:missing=true" returns resources without a gender.
    assert!(hit(&without, "gender", Modifier::Missing, vec![QueryValue::Missing(true)]));
    assert!(!hit(&with, "gender", Modifier::Missing, vec![QueryValue::Missing(true)]));
    assert!(hit(&with, "gender", Modifier::Missing, vec![QueryValue::Missing(false)]));
    assert!(!hit(&without, "gender", Modifier::Missing, vec![QueryValue::Missing(false)]));
    // Any type, composites included.
    let observation = json!({"resourceType": "Observation", "code": {"text": "x"}});
    assert!(hit(&observation, "value-quantity", Modifier::Missing, vec![QueryValue::Missing(true)]));
    assert!(hit(&observation, "code-value-quantity", Modifier::Missing, vec![QueryValue::Missing(true)]));
    assert!(hit(&observation, "date", Modifier::Missing, vec![QueryValue::Missing(true)]));
    // A value that is not true/false under :missing, or a Missing value without it, matches nothing.
    assert!(!hit(&with, "gender", Modifier::Missing, vec![tok(None, Some("male"))]));
    assert!(!hit(&with, "gender", Modifier::None, vec![QueryValue::Missing(false)]));
}

#[test]
fn or_values_match_when_any_does() {
    let p = json!({"resourceType": "Patient", "gender": "female"});
    assert!(hit(&p, "gender", Modifier::None, vec![tok(None, Some("male")), tok(None, Some("female"))]));
    assert!(!hit(&p, "gender", Modifier::None, vec![tok(None, Some("male")), tok(None, Some("other"))]));
    assert!(!hit(&p, "gender", Modifier::None, vec![]));
}

#[test]
fn per_value_matching_agrees_with_criteria() {
    let p = json!({"resourceType": "Patient", "gender": "female"});
    let gender = param("Patient", "gender");
    let values = extract("Patient", gender, &p);
    assert!(matches_value(gender, &Modifier::None, &tok(None, Some("female")), &values));
    assert!(matches_value(gender, &Modifier::Not, &tok(None, Some("male")), &values));
    assert!(!matches_value(gender, &Modifier::Not, &tok(None, Some("female")), &values));
    let c = criterion("Patient", "gender", Modifier::None, vec![tok(None, Some("female"))]);
    assert!(matches(&c, &values));
}

#[test]
fn special_parameters_never_match() {
    let location = json!({"resourceType": "Location", "position": {"latitude": 1.0, "longitude": 2.0}});
    assert!(!hit(&location, "near", Modifier::None, vec![s("1|2|10|km")]));
}
