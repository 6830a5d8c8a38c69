//! Tests of the query parser, from the examples and rules of R4 `search.html`.

use super::{parse, Handling, SearchError};
use crate::registry::SearchParamType;
use crate::search::{Criterion, DateRange, Decimal, Include, Link, Modifier, Prefix, QueryValue, SearchRequest, SummaryMode, TotalMode};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
}

fn strict(t: &str, list: &[(&str, &str)]) -> SearchRequest {
    match parse(Some(t), &pairs(list), Handling::Strict) {
        Ok(r) => r,
        Err(e) => panic!("{t}?{list:?}: {e}"),
    }
}

fn lenient(t: &str, list: &[(&str, &str)]) -> SearchRequest {
    match parse(Some(t), &pairs(list), Handling::Lenient) {
        Ok(r) => r,
        Err(e) => panic!("{t}?{list:?}: {e}"),
    }
}

fn err(t: &str, list: &[(&str, &str)]) -> SearchError {
    match parse(Some(t), &pairs(list), Handling::Strict) {
        Ok(r) => panic!("{t}?{list:?} parsed: {r:?}"),
        Err(e) => e,
    }
}

/// Errors in both handlings (a malformed value).
fn hard_err(t: &str, list: &[(&str, &str)]) -> SearchError {
    let e = err(t, list);
    let l = parse(Some(t), &pairs(list), Handling::Lenient);
    assert_eq!(l.as_ref().err(), Some(&e), "lenient too: {list:?}");
    e
}

/// Errors when strict, ignored (by name) when lenient.
fn soft_err(t: &str, name: &str, value: &str) -> SearchError {
    let e = err(t, &[(name, value)]);
    let r = lenient(t, &[(name, value)]);
    assert_eq!(r.ignored, [name], "{name}={value}");
    assert!(r.criteria.is_empty());
    e
}

fn one(t: &str, name: &str, value: &str) -> Criterion {
    let r = strict(t, &[(name, value)]);
    assert_eq!(r.criteria.len(), 1, "{name}={value}");
    assert!(r.ignored.is_empty());
    r.criteria.into_iter().next().expect("one criterion")
}

fn values(t: &str, name: &str, value: &str) -> Vec<QueryValue> {
    one(t, name, value).values
}

fn value(t: &str, name: &str, v: &str) -> QueryValue {
    let mut values = values(t, name, v);
    assert_eq!(values.len(), 1);
    values.remove(0)
}

fn dec(s: &str) -> Decimal {
    Decimal::parse(s).expect("decimal")
}

fn date(s: &str) -> DateRange {
    DateRange::parse(s).expect("date")
}

fn token(system: Option<&str>, code: Option<&str>) -> QueryValue {
    QueryValue::Token { system: system.map(str::to_owned), code: code.map(str::to_owned) }
}

fn s(v: &str) -> QueryValue {
    QueryValue::String(v.to_owned())
}

fn invalid_value(e: &SearchError, param: &str) {
    assert!(matches!(e, SearchError::InvalidValue { param: p, .. } if p == param), "{e:?}");
}

const PREFIXES: [(&str, Prefix); 9] = [
    ("eq", Prefix::Eq),
    ("ne", Prefix::Ne),
    ("gt", Prefix::Gt),
    ("lt", Prefix::Lt),
    ("ge", Prefix::Ge),
    ("le", Prefix::Le),
    ("sa", Prefix::Sa),
    ("eb", Prefix::Eb),
    ("ap", Prefix::Ap),
];

// ---- numbers -------------------------------------------------------------------------------

#[test]
fn number_without_prefix_is_eq_and_keeps_its_precision() {
    let c = one("RiskAssessment", "probability", "0.8");
    assert_eq!(c.param.id, "RiskAssessment-probability");
    assert_eq!(c.modifier, Modifier::None);
    assert!(c.path.is_empty());
    assert_eq!(c.values, [QueryValue::Number { prefix: Prefix::Eq, value: dec("0.8") }]);
    // search.html#number: 100 and 1e2 are different precisions.
    assert_eq!(value("RiskAssessment", "probability", "1e2"), QueryValue::Number { prefix: Prefix::Eq, value: dec("1e2") });
    assert_eq!(value("RiskAssessment", "probability", "-0.50"), QueryValue::Number { prefix: Prefix::Eq, value: dec("-0.50") });
}

#[test]
fn number_takes_every_prefix() {
    for (code, prefix) in PREFIXES {
        let v = value("RiskAssessment", "probability", &format!("{code}0.8"));
        assert_eq!(v, QueryValue::Number { prefix, value: dec("0.8") }, "{code}");
    }
}

#[test]
fn malformed_numbers_are_errors_even_when_lenient() {
    for bad in ["abc", "xx0.8", "GE0.8", "ge", "0.8.1", "1,5x", "ge 1", "e5", "0x10", "1e", "--1"] {
        invalid_value(&hard_err("RiskAssessment", &[("probability", bad)]), "probability");
    }
}

#[test]
fn number_or_values() {
    let v = values("RiskAssessment", "probability", "lt0.1,gt0.9");
    assert_eq!(
        v,
        [QueryValue::Number { prefix: Prefix::Lt, value: dec("0.1") }, QueryValue::Number { prefix: Prefix::Gt, value: dec("0.9") }]
    );
}

// ---- dates ---------------------------------------------------------------------------------

#[test]
fn dates_take_every_precision_and_prefix() {
    for text in [
        "2020",
        "2020-02",
        "2020-02-29",
        "2020-02-29T10:00Z",
        "2020-02-29T10:00:00+01:00",
        "2020-02-29T10:00:00.123Z",
        "2020-02-29T10:00:00",
    ] {
        assert_eq!(value("Patient", "birthdate", text), QueryValue::Date { prefix: Prefix::Eq, value: date(text) }, "{text}");
    }
    for (code, prefix) in PREFIXES {
        let v = value("Patient", "birthdate", &format!("{code}2020-01-01"));
        assert_eq!(v, QueryValue::Date { prefix, value: date("2020-01-01") }, "{code}");
    }
    assert_eq!(value("Observation", "date", "ge2021-03").clone(), QueryValue::Date { prefix: Prefix::Ge, value: date("2021-03") });
}

#[test]
fn malformed_dates_are_errors() {
    for bad in ["2020-13-01", "2020-02-30", "yesterday", "xx2020", "Ge2020", "ge", "20", "2020-1-1", "2020-01-01T25:00Z", "ge2020x"] {
        invalid_value(&hard_err("Patient", &[("birthdate", bad)]), "birthdate");
    }
}

#[test]
fn repeated_parameters_are_separate_criteria() {
    // search.html#combining: date=ge2020&date=lt2021 is an AND of two criteria.
    let r = strict("Observation", &[("date", "ge2020"), ("date", "lt2021")]);
    assert_eq!(r.criteria.len(), 2);
    assert_eq!(r.criteria[0].values, [QueryValue::Date { prefix: Prefix::Ge, value: date("2020") }]);
    assert_eq!(r.criteria[1].values, [QueryValue::Date { prefix: Prefix::Lt, value: date("2021") }]);
    assert_eq!(r.resource_type.as_deref(), Some("Observation"));
}

#[test]
fn last_updated_is_a_date_of_every_type() {
    let c = one("Condition", "_lastUpdated", "gt2024-01-01T00:00:00Z");
    assert_eq!(c.param.id, "Resource-lastUpdated");
    assert_eq!(c.values, [QueryValue::Date { prefix: Prefix::Gt, value: date("2024-01-01T00:00:00Z") }]);
}

// ---- strings -------------------------------------------------------------------------------

#[test]
fn strings_are_kept_as_written_and_never_take_prefixes() {
    assert_eq!(values("Patient", "name", "Peter"), [s("Peter")]);
    // `ge…` is a name, not a prefix, on a string parameter.
    assert_eq!(values("Patient", "family", "gemma"), [s("gemma")]);
    assert_eq!(values("Patient", "given", "eve,Ève"), [s("eve"), s("Ève")]);
    assert_eq!(values("Patient", "address", "1 rue d'Été"), [s("1 rue d'Été")]);
    // `|` and `$` are plain characters in a string.
    assert_eq!(values("Patient", "name", "a|b$c"), [s("a|b$c")]);
}

#[test]
fn string_modifiers() {
    assert_eq!(one("Patient", "name:exact", "Peter").modifier, Modifier::Exact);
    assert_eq!(one("Patient", "name:contains", "eter").modifier, Modifier::Contains);
    assert_eq!(one("Patient", "name:exact", "Peter").values, [s("Peter")]);
    for refused in ["text", "not", "above", "below", "in", "not-in", "of-type", "identifier", "Patient", "nope", "", "EXACT"] {
        let e = soft_err("Patient", &format!("name:{refused}"), "x");
        assert!(matches!(&e, SearchError::UnsupportedModifier { modifier, .. } if modifier == refused), "{e:?}");
    }
}

// ---- tokens --------------------------------------------------------------------------------

#[test]
fn token_forms() {
    // search.html#token
    assert_eq!(value("Observation", "code", "1234-5"), token(None, Some("1234-5")));
    assert_eq!(value("Observation", "code", "http://loinc.org|1234-5"), token(Some("http://loinc.org"), Some("1234-5")));
    assert_eq!(value("Observation", "code", "|1234-5"), token(Some(""), Some("1234-5")));
    assert_eq!(value("Observation", "code", "http://loinc.org|"), token(Some("http://loinc.org"), None));
    assert_eq!(value("Patient", "gender", "female"), token(None, Some("female")));
    assert_eq!(value("Patient", "_id", "123"), token(None, Some("123")));
    assert_eq!(one("Patient", "_id", "123").param.id, "Resource-id");
    assert_eq!(value("Patient", "identifier", "http://acme.org/mrn|12\\|34"), token(Some("http://acme.org/mrn"), Some("12|34")));
}

#[test]
fn malformed_tokens_are_errors() {
    for bad in ["|", "a|b|c", "||", "a||"] {
        invalid_value(&hard_err("Observation", &[("code", bad)]), "code");
    }
}

#[test]
fn token_modifiers() {
    let c = one("Patient", "gender:not", "male");
    assert_eq!((c.modifier, c.values), (Modifier::Not, vec![token(None, Some("male"))]));
    let c = one("Condition", "code:text", "heart attack");
    assert_eq!((c.modifier, c.values), (Modifier::Text, vec![s("heart attack")]));
    let c = one("Condition", "code:in", "http://snomed.info/sct?fhir_vs=isa/126851005");
    assert_eq!((c.modifier, c.values), (Modifier::In, vec![QueryValue::Uri("http://snomed.info/sct?fhir_vs=isa/126851005".to_owned())]));
    let c = one("Condition", "code:not-in", "ValueSet/123");
    assert_eq!((c.modifier, c.values), (Modifier::NotIn, vec![QueryValue::Uri("ValueSet/123".to_owned())]));
    let c = one("Condition", "code:below", "http://snomed.info/sct|235862008");
    assert_eq!((c.modifier, c.values), (Modifier::Below, vec![token(Some("http://snomed.info/sct"), Some("235862008"))]));
    assert_eq!(one("Condition", "code:above", "http://snomed.info/sct|3738000").modifier, Modifier::Above);
    let c = one("Patient", "identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053");
    let expected = QueryValue::OfType {
        type_system: "http://terminology.hl7.org/CodeSystem/v2-0203".to_owned(),
        type_code: "MR".to_owned(),
        value: "446053".to_owned(),
    };
    assert_eq!((c.modifier, c.values), (Modifier::OfType, vec![expected]));
    for refused in ["exact", "contains", "identifier", "Patient", "iterate"] {
        soft_err("Observation", &format!("code:{refused}"), "x");
    }
}

#[test]
fn of_type_needs_all_three_parts() {
    for bad in ["MR|446053", "a|b|c|d", "|MR|1", "sys||1", "sys|MR|", "446053"] {
        invalid_value(&hard_err("Patient", &[("identifier:of-type", bad)]), "identifier:of-type");
    }
}

// ---- references ----------------------------------------------------------------------------

#[test]
fn reference_forms() {
    let r = |v: &str| QueryValue::Reference(v.to_owned());
    assert_eq!(value("Observation", "subject", "Patient/123"), r("Patient/123"));
    assert_eq!(value("Observation", "subject", "123"), r("123"));
    assert_eq!(value("Observation", "subject", "http://other.org/fhir/Patient/123"), r("http://other.org/fhir/Patient/123"));
    // search.html#reference: canonical references may carry a version after `|`.
    assert_eq!(
        value("CarePlan", "instantiates-canonical", "http://example.org/PlanDefinition/x|1.0"),
        r("http://example.org/PlanDefinition/x|1.0")
    );
    assert_eq!(values("Encounter", "patient", "Patient/1,Patient/2"), [r("Patient/1"), r("Patient/2")]);
}

#[test]
fn reference_modifiers() {
    let c = one("Observation", "subject:Patient", "123");
    assert_eq!((c.modifier, c.values), (Modifier::Type("Patient".to_owned()), vec![QueryValue::Reference("123".to_owned())]));
    let c = one("Observation", "subject:identifier", "http://acme.org/fhir/identifier/mrn|123456");
    assert_eq!((c.modifier, c.values), (Modifier::Identifier, vec![token(Some("http://acme.org/fhir/identifier/mrn"), Some("123456"))]));
    // Practitioner is not a target of Observation.subject; Foo is no type.
    for refused in ["Practitioner", "Foo", "patient", "exact", "text", "not", "below", "Resource"] {
        soft_err("Observation", &format!("subject:{refused}"), "123");
    }
}

#[test]
fn reference_type_modifier_on_a_parameter_without_targets_takes_any_type() {
    // RequestGroup.instantiates-canonical lists no targets in R4.
    let c = one("RequestGroup", "instantiates-canonical:PlanDefinition", "x");
    assert_eq!(c.modifier, Modifier::Type("PlanDefinition".to_owned()));
}

// ---- quantities ----------------------------------------------------------------------------

#[test]
fn quantity_forms() {
    let q = |prefix, v: &str, system: Option<&str>, code: Option<&str>| QueryValue::Quantity {
        prefix,
        value: dec(v),
        system: system.map(str::to_owned),
        code: code.map(str::to_owned),
    };
    // search.html#quantity
    assert_eq!(
        value("Observation", "value-quantity", "5.4|http://unitsofmeasure.org|mg"),
        q(Prefix::Eq, "5.4", Some("http://unitsofmeasure.org"), Some("mg"))
    );
    assert_eq!(value("Observation", "value-quantity", "5.4||mg"), q(Prefix::Eq, "5.4", None, Some("mg")));
    assert_eq!(value("Observation", "value-quantity", "5.4"), q(Prefix::Eq, "5.4", None, None));
    assert_eq!(
        value("Observation", "value-quantity", "le5.4|http://unitsofmeasure.org|mg"),
        q(Prefix::Le, "5.4", Some("http://unitsofmeasure.org"), Some("mg"))
    );
    assert_eq!(
        value("Observation", "value-quantity", "5.40e-3|http://unitsofmeasure.org|g"),
        q(Prefix::Eq, "5.40e-3", Some("http://unitsofmeasure.org"), Some("g"))
    );
    for (code, prefix) in PREFIXES {
        assert_eq!(value("Observation", "value-quantity", &format!("{code}5.4||mg")), q(prefix, "5.4", None, Some("mg")));
    }
}

#[test]
fn malformed_quantities_are_errors() {
    for bad in ["5.4|http://unitsofmeasure.org", "5.4|a|b|c", "mg", "|http://unitsofmeasure.org|mg", "xx5|s|c", "five||mg"] {
        invalid_value(&hard_err("Observation", &[("value-quantity", bad)]), "value-quantity");
    }
    soft_err("Observation", "value-quantity:exact", "5");
}

// ---- uris ----------------------------------------------------------------------------------

#[test]
fn uris_and_their_modifiers() {
    let u = |v: &str| QueryValue::Uri(v.to_owned());
    assert_eq!(value("ValueSet", "url", "http://acme.org/fhir/ValueSet/123"), u("http://acme.org/fhir/ValueSet/123"));
    assert_eq!(one("ValueSet", "url:below", "http://acme.org/fhir/").modifier, Modifier::Below);
    assert_eq!(one("ValueSet", "url:above", "http://acme.org/fhir/ValueSet/123/_history/5").modifier, Modifier::Above);
    assert_eq!(one("ValueSet", "url:contains", "acme").modifier, Modifier::Contains);
    assert_eq!(
        value("Patient", "_profile", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"),
        u("http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient")
    );
    for refused in ["exact", "text", "not", "in", "identifier"] {
        soft_err("ValueSet", &format!("url:{refused}"), "x");
    }
}

// ---- composites ----------------------------------------------------------------------------

#[test]
fn composites_parse_each_component_with_its_own_type() {
    // search.html#composite: code-value-quantity=http://loinc.org|8480-6$lt60
    let c = one("Observation", "code-value-quantity", "http://loinc.org|8480-6$lt60");
    assert_eq!(c.param.kind, SearchParamType::Composite);
    assert_eq!(
        c.values,
        [QueryValue::Composite(vec![
            token(Some("http://loinc.org"), Some("8480-6")),
            QueryValue::Quantity { prefix: Prefix::Lt, value: dec("60"), system: None, code: None },
        ])]
    );
    let v = value("Observation", "code-value-concept", "http://loinc.org|2339-0$http://snomed.info/sct|260385009");
    assert_eq!(
        v,
        QueryValue::Composite(vec![
            token(Some("http://loinc.org"), Some("2339-0")),
            token(Some("http://snomed.info/sct"), Some("260385009"))
        ])
    );
    let v = value("Observation", "code-value-date", "8480-6$ge2020");
    assert_eq!(v, QueryValue::Composite(vec![token(None, Some("8480-6")), QueryValue::Date { prefix: Prefix::Ge, value: date("2020") }]));
    let v = value("Observation", "code-value-string", "8480-6$a\\$b\\,c");
    assert_eq!(v, QueryValue::Composite(vec![token(None, Some("8480-6")), s("a$b,c")]));
    let v = value("Observation", "component-code-value-quantity", "8480-6$5.4|http://unitsofmeasure.org|mm[Hg]");
    assert!(matches!(v, QueryValue::Composite(ref parts) if parts.len() == 2));
    assert_eq!(one("Observation", "code-value-quantity:missing", "true").values, [QueryValue::Missing(true)]);
}

#[test]
fn malformed_composites_are_errors() {
    for bad in ["8480-6", "8480-6$lt60$x", "8480-6$", "$lt60", "8480-6$lt60|a", "8480-6$xx60", "8480-6\\$lt60"] {
        invalid_value(&hard_err("Observation", &[("code-value-quantity", bad)]), "code-value-quantity");
    }
    // R4 composites are multipleOr = false.
    let e = hard_err("Observation", &[("code-value-quantity", "a$1,b$2")]);
    assert!(e.to_string().contains("single value"), "{e}");
    soft_err("Observation", "code-value-quantity:exact", "a$1");
}

// ---- :missing ------------------------------------------------------------------------------

#[test]
fn missing_applies_to_every_type_and_takes_true_or_false() {
    for (t, p) in [
        ("Patient", "name"),
        ("Patient", "birthdate"),
        ("Patient", "gender"),
        ("Observation", "subject"),
        ("Observation", "value-quantity"),
        ("RiskAssessment", "probability"),
        ("ValueSet", "url"),
    ] {
        let c = one(t, &format!("{p}:missing"), "true");
        assert_eq!((c.modifier, c.values), (Modifier::Missing, vec![QueryValue::Missing(true)]), "{t}.{p}");
        assert_eq!(value(t, &format!("{p}:missing"), "false"), QueryValue::Missing(false));
    }
    for bad in ["yes", "TRUE", "1", "true|false"] {
        invalid_value(&hard_err("Patient", &[("birthdate:missing", bad)]), "birthdate:missing");
    }
}

/// search.html#modifiers, R4: which modifier each parameter type takes.
#[test]
fn modifier_matrix() {
    let params = [
        ("number", "RiskAssessment", "probability", "0.5"),
        ("date", "Patient", "birthdate", "2020"),
        ("string", "Patient", "name", "x"),
        ("token", "Patient", "identifier", "a|b"),
        ("reference", "Observation", "subject", "x"),
        ("quantity", "Observation", "value-quantity", "5"),
        ("uri", "ValueSet", "url", "http://x"),
        ("composite", "Observation", "code-value-quantity", "a$5"),
    ];
    let allowed: [(&str, &[&str]); 13] = [
        ("missing", &["number", "date", "string", "token", "reference", "quantity", "uri", "composite"]),
        ("exact", &["string"]),
        ("contains", &["string", "uri"]),
        ("text", &["token"]),
        ("not", &["token"]),
        ("above", &["token", "uri"]),
        ("below", &["token", "uri"]),
        ("in", &["token"]),
        ("not-in", &["token"]),
        ("of-type", &["token"]),
        ("identifier", &["reference"]),
        ("Patient", &["reference"]),
        ("ofType", &[]),
    ];
    for (kind, t, code, v) in params {
        for (modifier, kinds) in allowed {
            let v = match modifier {
                "missing" => "true",
                "of-type" => "a|b|c",
                _ => v,
            };
            let r = parse(Some(t), &pairs(&[(&format!("{code}:{modifier}"), v)]), Handling::Strict);
            match r {
                Ok(_) => assert!(kinds.contains(&kind), "{kind} accepted :{modifier}"),
                Err(SearchError::UnsupportedModifier { .. }) => assert!(!kinds.contains(&kind), "{kind} refused :{modifier}"),
                Err(e) => panic!("{kind} :{modifier}: {e}"),
            }
        }
    }
    let c = one("Observation", "subject:Patient.birthdate:missing", "true");
    assert_eq!((c.path.len(), c.modifier, c.values), (1, Modifier::Missing, vec![QueryValue::Missing(true)]));
}

// ---- escaping and empty values -------------------------------------------------------------

#[test]
fn escapes_follow_search_html_escaping() {
    assert_eq!(values("Patient", "name", "a\\,b"), [s("a,b")]);
    assert_eq!(values("Patient", "name", "a\\\\,b"), [s("a\\"), s("b")]);
    assert_eq!(values("Patient", "name", "a\\$b\\|c"), [s("a$b|c")]);
    // Unknown escapes and a trailing backslash stay literal.
    assert_eq!(values("Patient", "name", "a\\nb"), [s("a\\nb")]);
    assert_eq!(values("Patient", "name", "\\"), [s("\\")]);
    assert_eq!(values("Patient", "name", "a\\"), [s("a\\")]);
    assert_eq!(value("Observation", "code", "http://x.org/a\\|b|c\\,d"), token(Some("http://x.org/a|b"), Some("c,d")));
    assert_eq!(value("Observation", "code", "a\\\\|b"), token(Some("a\\"), Some("b")));
}

#[test]
fn empty_values_are_ignored() {
    let r = strict("Patient", &[("name", ""), ("birthdate", ","), ("gender", "male")]);
    assert_eq!(r.criteria.len(), 1);
    assert!(r.ignored.is_empty());
    assert_eq!(values("Patient", "name", "a,,b,"), [s("a"), s("b")]);
    // Even an unknown parameter with an empty value is dropped.
    assert!(strict("Patient", &[("nope", "")]).criteria.is_empty());
    assert_eq!(strict("Patient", &[("_count", "")]).result.count, None);
}

// ---- chains --------------------------------------------------------------------------------

#[test]
fn forward_chain_without_type() {
    // search.html#chaining: subject.name; Observation.subject has four target types.
    let c = one("Observation", "subject.name", "peter");
    assert_eq!(c.path.len(), 1);
    assert!(matches!(&c.path[0], Link::Forward { param, target: None } if param.id == "Observation-subject"));
    assert_eq!(c.param.code, "name");
    assert_eq!(c.param.kind, SearchParamType::String);
    assert_eq!(c.values, [s("peter")]);
}

#[test]
fn forward_chain_with_type_and_final_modifier() {
    let c = one("Observation", "subject:Patient.name:exact", "Peter");
    assert!(matches!(&c.path[..], [Link::Forward { param, target: Some(t) }] if param.id == "Observation-subject" && t == "Patient"));
    assert_eq!(c.param.id, "Patient-name");
    assert_eq!(c.modifier, Modifier::Exact);
    let c = one("Observation", "subject:Patient.birthdate", "le1970");
    assert_eq!(c.values, [QueryValue::Date { prefix: Prefix::Le, value: date("1970") }]);
}

#[test]
fn a_single_target_is_implied() {
    // Observation.patient targets Patient only.
    let c = one("Observation", "patient.identifier", "http://acme.org/mrn|1");
    assert!(matches!(&c.path[..], [Link::Forward { target: Some(t), .. }] if t == "Patient"));
    assert_eq!(c.param.id, "Patient-identifier");
}

#[test]
fn multi_level_chains() {
    // Two levels.
    let c = one("Observation", "subject:Patient.organization.name", "Acme");
    match &c.path[..] {
        [Link::Forward { param: a, target: Some(ta) }, Link::Forward { param: b, target: Some(tb) }] => {
            assert_eq!((a.id, ta.as_str()), ("Observation-subject", "Patient"));
            assert_eq!((b.id, tb.as_str()), ("Patient-organization", "Organization"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.param.id, "Organization-name");
    // Three levels: DiagnosticReport.result -> Observation.subject -> Patient.organization -> name.
    let c = one("DiagnosticReport", "result.subject:Patient.organization.name:contains", "acme");
    assert_eq!(c.path.len(), 3);
    assert!(matches!(&c.path[0], Link::Forward { param, target: Some(t) } if param.id == "DiagnosticReport-result" && t == "Observation"));
    assert_eq!(c.param.id, "Organization-name");
    assert_eq!(c.modifier, Modifier::Contains);
    // Untyped links on several targets: Observation.subject.organization exists on Patient,
    // Device and Location (managingOrganization), all references to Organization.
    let c = one("Observation", "subject.organization.name", "acme");
    assert!(matches!(&c.path[..], [Link::Forward { target: None, .. }, Link::Forward { target: Some(t), .. }] if t == "Organization"));
    assert_eq!(c.param.id, "Organization-name");
    // Chains reach Resource parameters too.
    assert_eq!(one("Encounter", "subject._id", "123").param.id, "Resource-id");
}

#[test]
fn invalid_chains() {
    // A link must be a reference parameter.
    assert!(matches!(soft_err("Observation", "code.name", "x"), SearchError::NotReference(_)));
    // No target type defines the next parameter.
    assert!(matches!(soft_err("Observation", "subject:Patient.nope", "x"), SearchError::UnknownParameter(_)));
    assert!(matches!(soft_err("Observation", "subject.onset-date", "x"), SearchError::UnknownParameter(_)));
    assert!(matches!(soft_err("Observation", "nope.name", "x"), SearchError::UnknownParameter(_)));
    assert!(matches!(soft_err("Observation", "subject.", "x"), SearchError::UnknownParameter(_)));
    assert!(matches!(soft_err("Observation", ".name", "x"), SearchError::UnknownParameter(_)));
    // The type must be a target of the link.
    assert!(matches!(soft_err("Observation", "subject:Practitioner.name", "x"), SearchError::UnsupportedModifier { .. }));
    assert!(matches!(soft_err("Observation", "subject:identifier.name", "x"), SearchError::UnsupportedModifier { .. }));
    // The final modifier is checked against the final parameter.
    assert!(matches!(soft_err("Observation", "subject:Patient.name:not", "x"), SearchError::UnsupportedModifier { .. }));
    // The final value is parsed for the final parameter: always an error.
    invalid_value(&hard_err("Observation", &[("subject:Patient.birthdate", "soon")]), "subject:Patient.birthdate");
}

// ---- reverse chains (_has) -----------------------------------------------------------------

#[test]
fn has_single() {
    // search.html#has: Patient?_has:Observation:patient:code=1234-5
    let c = one("Patient", "_has:Observation:patient:code", "1234-5");
    assert!(matches!(&c.path[..], [Link::Reverse { source, param }] if source == "Observation" && param.id == "clinical-patient"));
    assert_eq!(c.param.id, "clinical-code");
    assert_eq!(c.values, [token(None, Some("1234-5"))]);
    let c = one("Encounter", "_has:Condition:encounter:code:text", "flu");
    assert_eq!(c.modifier, Modifier::Text);
}

#[test]
fn has_nested() {
    // search.html#has: Patient?_has:Observation:patient:_has:AuditEvent:entity:agent=MyUserId
    let c = one("Patient", "_has:Observation:patient:_has:AuditEvent:entity:agent", "Practitioner/MyUserId");
    match &c.path[..] {
        [Link::Reverse { source: a, param: pa }, Link::Reverse { source: b, param: pb }] => {
            assert_eq!((a.as_str(), pa.code), ("Observation", "patient"));
            assert_eq!((b.as_str(), pb.code), ("AuditEvent", "entity"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.param.id, "AuditEvent-agent");
}

#[test]
fn has_with_a_forward_chain_inside() {
    let c = one("Patient", "_has:Observation:subject:performer:Practitioner.name", "smith");
    assert!(matches!(&c.path[..], [Link::Reverse { .. }, Link::Forward { target: Some(t), .. }] if t == "Practitioner"));
    assert_eq!(c.param.id, "Practitioner-name");
    let c = one("Patient", "_has:Observation:subject:performer.name", "smith");
    assert!(matches!(&c.path[..], [Link::Reverse { .. }, Link::Forward { target: None, .. }]));
    assert_eq!(c.param.code, "name");
    // A forward chain then a reverse one.
    let c = one("Observation", "subject:Patient._has:Condition:subject:code", "x");
    assert!(matches!(&c.path[..], [Link::Forward { .. }, Link::Reverse { source, .. }] if source == "Condition"));
}

#[test]
fn invalid_has() {
    assert!(matches!(soft_err("Patient", "_has:Observation:code:status", "final"), SearchError::NotReference(_)));
    // Observation.encounter points at Encounter only.
    assert!(matches!(soft_err("Patient", "_has:Observation:encounter:code", "x"), SearchError::InvalidTarget { .. }));
    assert!(matches!(soft_err("Patient", "_has:Foo:patient:code", "x"), SearchError::InvalidChain { .. }));
    assert!(matches!(soft_err("Patient", "_has:Observation", "x"), SearchError::InvalidChain { .. }));
    assert!(matches!(soft_err("Patient", "_has:Observation:patient", "x"), SearchError::InvalidChain { .. }));
    assert!(matches!(soft_err("Patient", "_has:Observation:nope:code", "x"), SearchError::UnknownParameter(_)));
    assert!(matches!(soft_err("Patient", "_has:Observation:patient:nope", "x"), SearchError::UnknownParameter(_)));
    assert!(matches!(soft_err("Patient", "_has:Observation:patient:", "x"), SearchError::UnknownParameter(_)));
    assert!(matches!(soft_err("Patient", "_has", "x"), SearchError::UnknownParameter(_)));
    invalid_value(&hard_err("Patient", &[("_has:Observation:patient:date", "bad")]), "_has:Observation:patient:date");
}

// ---- result parameters ---------------------------------------------------------------------

#[test]
fn count() {
    assert_eq!(strict("Patient", &[("_count", "10")]).result.count, Some(10));
    // search.html#count: _count=0 returns no entries (the total only).
    assert_eq!(strict("Patient", &[("_count", "0")]).result.count, Some(0));
    assert_eq!(strict("Patient", &[("_count", "99999999999999999999999999")]).result.count, Some(usize::MAX));
    for bad in ["-1", "abc", "1.5", "+1", " 1", "1e3"] {
        invalid_value(&hard_err("Patient", &[("_count", bad)]), "_count");
    }
    invalid_value(&hard_err("Patient", &[("_count", "1"), ("_count", "2")]), "_count");
}

#[test]
fn sort() {
    let r = strict("Patient", &[("_sort", "birthdate,-_lastUpdated,_id")]);
    let keys: Vec<_> = r.result.sort.iter().map(|k| (k.param.code, k.descending)).collect();
    assert_eq!(keys, [("birthdate", false), ("_lastUpdated", true), ("_id", false)]);
    assert!(matches!(soft_err("Patient", "_sort", "nope"), SearchError::UnknownParameter(_)));
    // Lenient: the whole _sort is ignored.
    assert!(lenient("Patient", &[("_sort", "birthdate,nope")]).result.sort.is_empty());
    invalid_value(&hard_err("Patient", &[("_sort", "-")]), "_sort");
    soft_err("Patient", "_sort:desc", "birthdate");
}

#[test]
fn include_and_revinclude() {
    let inc = |t: &str, v: &str| strict(t, &[("_include", v)]).result.include;
    let i = &inc("MedicationRequest", "MedicationRequest:patient")[0];
    assert_eq!(
        (i.source.as_str(), i.param.map(|p| p.id), i.target.as_deref(), i.iterate),
        ("MedicationRequest", Some("clinical-patient"), None, false)
    );
    let i = &inc("Observation", "Observation:subject:Patient")[0];
    assert_eq!((i.param.map(|p| p.id), i.target.as_deref()), (Some("Observation-subject"), Some("Patient")));
    assert_eq!(inc("Observation", "*"), [Include { source: "*".to_owned(), param: None, target: None, iterate: false }]);
    assert_eq!(
        inc("Observation", "Observation:*"),
        [Include { source: "Observation".to_owned(), param: None, target: None, iterate: false }]
    );
    // search.html#revinclude: :iterate, and :recurse (its R4 alias).
    let r = strict(
        "MedicationRequest",
        &[
            ("_include", "MedicationRequest:patient"),
            ("_include:iterate", "Patient:general-practitioner"),
            ("_include:recurse", "Patient:link"),
        ],
    );
    assert_eq!(r.result.include.iter().map(|i| i.iterate).collect::<Vec<_>>(), [false, true, true]);
    let r = strict("Patient", &[("_revinclude", "Provenance:target"), ("_revinclude:iterate", "Observation:has-member")]);
    assert_eq!(r.result.revinclude.len(), 2);
    assert_eq!(r.result.revinclude[0].param.map(|p| p.id), Some("Provenance-target"));
    assert!(r.result.revinclude[1].iterate);

    for bad in ["Observation", "Observation:", ":subject", "a:b:c:d", "Observation:subject:"] {
        invalid_value(&hard_err("Observation", &[("_include", bad)]), "_include");
    }
    assert!(matches!(soft_err("Observation", "_include", "Foo:subject"), SearchError::UnknownParameter(_)));
    assert!(matches!(soft_err("Observation", "_include", "Observation:nope"), SearchError::UnknownParameter(_)));
    assert!(matches!(soft_err("Observation", "_include", "Observation:code"), SearchError::NotReference(_)));
    assert!(matches!(soft_err("Observation", "_include", "Observation:subject:Practitioner"), SearchError::InvalidTarget { .. }));
    assert!(matches!(soft_err("Observation", "_include:deep", "Observation:subject"), SearchError::UnsupportedModifier { .. }));
}

#[test]
fn total_summary_elements_cursor() {
    for (v, mode) in [("none", TotalMode::None), ("estimate", TotalMode::Estimate), ("accurate", TotalMode::Accurate)] {
        assert_eq!(strict("Patient", &[("_total", v)]).result.total, Some(mode));
    }
    invalid_value(&hard_err("Patient", &[("_total", "all")]), "_total");
    for (v, mode) in [
        ("true", SummaryMode::True),
        ("false", SummaryMode::False),
        ("text", SummaryMode::Text),
        ("data", SummaryMode::Data),
        ("count", SummaryMode::Count),
    ] {
        assert_eq!(strict("Patient", &[("_summary", v)]).result.summary, Some(mode));
    }
    invalid_value(&hard_err("Patient", &[("_summary", "TRUE")]), "_summary");
    assert_eq!(strict("Patient", &[("_elements", "identifier,Patient.name,,active")]).result.elements, ["identifier", "name", "active"]);
    let cursor = "eyJrIjoiUGF0aWVudC8xIn0=,|$\\";
    assert_eq!(strict("Patient", &[("_cursor", cursor)]).result.cursor.as_deref(), Some(cursor));
    let r = strict("Patient", &[("_format", "json"), ("_pretty", "true")]);
    assert!(r.criteria.is_empty() && r.ignored.is_empty());
}

#[test]
fn unsupported_result_parameters_follow_the_handling() {
    for name in ["_contained", "_containedType", "_query", "_filter", "_list", "_type"] {
        assert!(matches!(soft_err("Patient", name, "x"), SearchError::Unsupported(_)), "{name}");
    }
    assert!(matches!(soft_err("Location", "near", "42.256|-83.694|11.2|km"), SearchError::Unsupported(_)));
    assert_eq!(err("Patient", &[("_filter", "x")]).issue_code(), "not-supported");
}

// ---- system searches -----------------------------------------------------------------------

#[test]
fn system_search_allows_only_the_common_parameters() {
    let p = |list: &[(&str, &str)], h| parse(None, &pairs(list), h);
    let list = [
        ("_id", "1"),
        ("_lastUpdated", "ge2020"),
        ("_tag", "http://acme.org/tags|x"),
        ("_profile", "http://acme.org/p"),
        ("_security", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"),
        ("_source", "http://acme.org/src"),
        ("_text", "cancer"),
        ("_content", "cancer"),
        ("_type", "Patient,Observation"),
        ("_count", "5"),
    ];
    let r = p(&list, Handling::Strict).expect("system search");
    assert_eq!(r.resource_type, None);
    assert_eq!(r.criteria.len(), 8);
    assert_eq!(r.result.types, ["Patient", "Observation"]);
    assert_eq!(r.result.count, Some(5));
    for bad in ["name", "_has:Observation:patient:code", "subject.name", "_id.name"] {
        assert!(p(&[(bad, "x")], Handling::Strict).is_err(), "{bad}");
        assert_eq!(p(&[(bad, "x")], Handling::Lenient).map(|r| r.ignored), Ok(vec![bad.to_owned()]));
    }
    assert!(matches!(p(&[("_type", "Patient,Nope")], Handling::Lenient), Err(SearchError::InvalidValue { .. })));
    assert!(matches!(p(&[("_sort", "_lastUpdated")], Handling::Strict), Ok(r) if r.result.sort.len() == 1));
}

// ---- handling ------------------------------------------------------------------------------

#[test]
fn strict_and_lenient() {
    let list = [("nope", "1"), ("name", "x"), ("nope", "2"), ("gender:bogus", "male")];
    let e = err("Patient", &list);
    assert_eq!(e, SearchError::UnknownParameter("nope".to_owned()));
    assert_eq!(e.issue_code(), "invalid");
    let r = lenient("Patient", &list);
    assert_eq!(r.ignored, ["nope", "gender:bogus"]);
    assert_eq!(r.criteria.len(), 1);
    assert_eq!(Handling::default(), Handling::Lenient);
    // A malformed value fails whatever the handling, after ignored ones.
    let e = parse(Some("Patient"), &pairs(&[("nope", "1"), ("birthdate", "bad")]), Handling::Lenient);
    assert!(matches!(e, Err(SearchError::InvalidValue { .. })));
    // Parameters of another type are unknown.
    soft_err("Patient", "code", "x");
}

#[test]
fn handling_from_the_prefer_header() {
    assert_eq!(Handling::from_prefer("handling=strict"), Handling::Strict);
    assert_eq!(Handling::from_prefer("return=representation, handling=strict"), Handling::Strict);
    assert_eq!(Handling::from_prefer("respond-async; Handling = \"STRICT\""), Handling::Strict);
    assert_eq!(Handling::from_prefer("handling=lenient"), Handling::Lenient);
    assert_eq!(Handling::from_prefer("handling=bogus"), Handling::Lenient);
    assert_eq!(Handling::from_prefer(""), Handling::Lenient);
    assert_eq!(Handling::from_prefer("strict"), Handling::Lenient);
}

#[test]
fn unknown_resource_types_are_refused() {
    for t in ["Foo", "Resource", "DomainResource", "patient", ""] {
        assert_eq!(parse(Some(t), &[], Handling::Lenient), Err(SearchError::UnknownResourceType(t.to_owned())));
    }
}

#[test]
fn messages_name_the_parameter_not_the_value() {
    let e = hard_err("Patient", &[("birthdate", "secret-1970-xyz")]);
    let msg = e.to_string();
    assert!(msg.contains("birthdate") && !msg.contains("secret"), "{msg}");
    assert_eq!(msg, msg.to_lowercase());
    let e = hard_err("Patient", &[("identifier:of-type", "secret")]);
    assert!(!e.to_string().contains("secret"));
}

/// Odd names and values never panic, in either handling, on system and type searches.
#[test]
fn odd_input_never_panics() {
    let long = "x".repeat(100_000);
    let long_chain = format!("{}name", "subject.".repeat(2_000));
    let deep_has = format!("{}code", "_has:Observation:patient:".repeat(500));
    let names = [
        "",
        ":",
        ".",
        "..",
        "::",
        "_has:",
        "_has:::",
        "_has:Observation:patient:",
        "name:",
        "name::exact",
        "subject:.name",
        "subject..name",
        "code-value-quantity",
        "value-quantity",
        "probability",
        "birthdate",
        "identifier:of-type",
        "subject:identifier",
        "_sort",
        "_include",
        "_include:",
        "_revinclude:iterate",
        "_count",
        "_elements",
        "_type",
        "_has:Observation:patient:_has",
        "é",
        "名前",
        "\\",
        "$",
        "|",
        "name\u{0}",
        long.as_str(),
        long_chain.as_str(),
        deep_has.as_str(),
        "Patient.name",
        "_has:Observation:patient:code-value-quantity",
    ];
    let values = [
        "",
        "\\",
        "\\\\",
        "$",
        "|",
        ",",
        ",,,",
        "\\,",
        "a\\",
        "$$$",
        "|||",
        "\\$|\\|",
        "ge",
        "ap\\",
        "é",
        "名前|名前",
        "🙂$🙂",
        "ge🙂",
        "1e99999",
        "99999999999999999999999999999999999999",
        "-",
        "*",
        ":",
        "a:b:c",
        "*:*",
        "Patient:*:*",
        long.as_str(),
        "\u{0}",
        "eq2020-02-30",
    ];
    for t in [Some("Patient"), Some("Observation"), Some("RiskAssessment"), None] {
        for name in names {
            for value in values {
                for handling in [Handling::Strict, Handling::Lenient] {
                    let _ = parse(t, &[(name.to_owned(), value.to_owned())], handling);
                }
            }
        }
    }
    // The long chain is followed to its end.
    let r = parse(Some("Observation"), &[(long_chain.clone(), "x".to_owned())], Handling::Strict);
    assert!(r.is_err() || r.is_ok_and(|r| r.criteria[0].path.len() == 2_000));
}
