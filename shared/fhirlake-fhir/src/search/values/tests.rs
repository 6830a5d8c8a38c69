use serde_json::{json, Value};

use super::*;
use crate::members::SCAN_LIMIT;
use crate::registry;
use crate::search::{DateRange, Decimal};

fn param(resource_type: &str, code: &str) -> &'static SearchParamDef {
    registry::search_param(resource_type, code).unwrap_or_else(|| panic!("{resource_type} has {code}"))
}

fn values(resource: &Value, code: &str) -> Vec<SearchValue> {
    let resource_type = resource["resourceType"].as_str().expect("a resource type");
    extract(resource_type, param(resource_type, code), resource)
}

fn token(system: Option<&str>, code: &str) -> SearchValue {
    SearchValue::Token { system: system.map(str::to_string), code: code.to_string() }
}

fn text(s: &str) -> SearchValue {
    SearchValue::TokenText(s.to_string())
}

fn string(s: &str) -> SearchValue {
    SearchValue::String(s.to_string())
}

fn date(s: &str) -> SearchValue {
    SearchValue::Date(DateRange::parse(s).expect("a date"))
}

fn reference(r: &str, target: Option<&str>) -> SearchValue {
    SearchValue::Reference { reference: r.to_string(), target_type: target.map(str::to_string) }
}

fn quantity(value: &str, system: Option<&str>, code: Option<&str>, unit: Option<&str>) -> SearchValue {
    SearchValue::Quantity {
        value: Decimal::parse(value).expect("a decimal"),
        system: system.map(str::to_string),
        code: code.map(str::to_string),
        unit: unit.map(str::to_string),
    }
}

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "example",
        "meta": {
            "lastUpdated": "2024-05-01T10:00:00.123Z",
            "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
            "tag": [{"system": "http://example.org/tags", "code": "vip", "display": "Very important"}]
        },
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Peter James <b>Chalmers</b> &amp; family</p></div>"},
        "identifier": [
            {"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}], "text": "Medical record number"}, "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"},
            {"system": "http://ns.electronichealth.net.au/id/medicare-number", "value": "32788511952"}
        ],
        "active": true,
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "usual", "given": ["Jim"]},
            {"use": "maiden", "family": "Windsor", "given": ["Peter", "James"], "prefix": ["Mr."]}
        ],
        "telecom": [
            {"use": "home"},
            {"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1},
            {"system": "email", "value": "peter@example.org"}
        ],
        "gender": "male",
        "birthDate": "1974-12-25",
        "deceasedBoolean": false,
        "address": [{"use": "home", "line": ["534 Erewhon St"], "city": "PleasantVille", "district": "Rainbow", "state": "Vic", "postalCode": "3999", "country": "AU", "period": {"start": "1974-12-25"}}],
        "managingOrganization": {"reference": "Organization/1"}
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}], "text": "Blood pressure"},
        "subject": {"reference": "Patient/example/_history/3"},
        "encounter": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2012-09-17",
        "performer": [{"reference": "Practitioner/p1"}, {"reference": "#contained"}, {"identifier": {"system": "urn:npi", "value": "999"}}],
        "valueQuantity": {"value": 107, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]}, "valueQuantity": {"value": 107, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]}, "valueQuantity": {"value": 60.5, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
        ]
    })
}

#[test]
fn every_registry_expression_parses() {
    for &resource_type in registry::resource_types() {
        for param in registry::search_params(resource_type) {
            let compiled = cache::compiled(resource_type, param);
            if param.expression_for(resource_type).is_some() {
                assert!(compiled.expression.is_some(), "{resource_type} {}", param.code);
            }
            for component in &compiled.components {
                assert!(component.kind.is_some() && component.expression.is_some(), "{resource_type} {}", param.code);
            }
        }
    }
}

#[test]
fn every_parameter_of_every_type_extracts_without_failing() {
    let mut unexpected = Vec::new();
    for &resource_type in registry::resource_types() {
        let resource = json!({"resourceType": resource_type, "id": "x1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}, "text": {"div": "<div>t</div>"}});
        for param in registry::search_params(resource_type) {
            let found = extract(resource_type, param, &resource);
            let expected = match param.code {
                "_id" => vec![token(None, "x1")],
                "_lastUpdated" => vec![date("2024-01-01T00:00:00Z")],
                "_text" => vec![string("t")],
                "_content" => vec![string("x1"), string("2024-01-01T00:00:00Z"), string("t")],
                _ => vec![],
            };
            if found != expected {
                unexpected.push(format!("{resource_type} {}: {found:?}", param.code));
            }
        }
    }
    // `Patient.deceased.exists() and Patient.deceased != false` is false without a deceased[x].
    assert_eq!(unexpected, [format!("Patient deceased: {:?}", [token(None, "false")])]);
}

#[test]
fn a_parameter_of_another_type_is_evaluated_uncached() {
    let code = param("Observation", "code");
    assert!(extract("Patient", code, &patient()).is_empty());
    assert_eq!(extract("Unknown", param("Patient", "gender"), &patient()), [token(None, "male")]);
}

#[test]
fn contact_points_and_identifiers_are_told_apart() {
    let mut out = Vec::new();
    values_of(SearchParamType::Token, &json!({"system": "email", "value": "a@b.c"}), &mut out);
    values_of(SearchParamType::Token, &json!({"system": "urn:ietf:rfc:3986", "value": "urn:oid:1"}), &mut out);
    values_of(SearchParamType::Token, &json!({"value": "555", "rank": 2}), &mut out);
    values_of(SearchParamType::Token, &json!({"system": "phone", "value": "1", "type": {"text": "odd"}}), &mut out);
    assert_eq!(
        out,
        [token(None, "a@b.c"), token(Some("urn:ietf:rfc:3986"), "urn:oid:1"), token(None, "555"), token(Some("phone"), "1"), text("odd")]
    );
}

#[test]
fn patient_tokens() {
    let p = patient();
    assert_eq!(values(&p, "gender"), [token(None, "male")]);
    assert_eq!(values(&p, "active"), [token(None, "true")]);
    assert_eq!(values(&p, "deceased"), [token(None, "false")]);
    assert_eq!(values(&p, "_id"), [token(None, "example")]);
    assert_eq!(
        values(&p, "identifier"),
        [
            token(Some("urn:oid:1.2.36.146.595.217.0.1"), "12345"),
            SearchValue::IdentifierOfType {
                type_system: "http://terminology.hl7.org/CodeSystem/v2-0203".into(),
                type_code: "MR".into(),
                value: "12345".into()
            },
            text("Medical record number"),
            token(Some("http://ns.electronichealth.net.au/id/medicare-number"), "32788511952"),
        ]
    );
    // A ContactPoint matches on its value; its system (phone, email) is not a code system.
    assert_eq!(values(&p, "telecom"), [token(None, "(03) 5555 6473"), token(None, "peter@example.org")]);
    assert_eq!(values(&p, "phone"), [token(None, "(03) 5555 6473")]);
    assert_eq!(values(&p, "email"), [token(None, "peter@example.org")]);
    assert_eq!(values(&p, "_tag"), [token(Some("http://example.org/tags"), "vip"), text("Very important")]);
}

#[test]
fn patient_strings() {
    let p = patient();
    assert_eq!(values(&p, "name"), ["Chalmers", "Peter", "James", "Jim", "Windsor", "Mr."].map(string), "each part once, as written");
    assert_eq!(values(&p, "family"), [string("Chalmers"), string("Windsor")]);
    assert_eq!(values(&p, "given"), ["Peter", "James", "Jim"].map(string));
    assert_eq!(values(&p, "address"), ["534 Erewhon St", "PleasantVille", "Rainbow", "Vic", "3999", "AU"].map(string));
    assert_eq!(values(&p, "address-city"), [string("PleasantVille")]);
    assert_eq!(values(&p, "address-postalcode"), [string("3999")]);
    assert_eq!(values(&p, "_text"), [string("Peter James Chalmers & family")]);
}

#[test]
fn patient_dates_references_and_uris() {
    let p = patient();
    assert_eq!(values(&p, "birthdate"), [date("1974-12-25")]);
    assert_eq!(values(&p, "_lastUpdated"), [date("2024-05-01T10:00:00.123Z")]);
    assert_eq!(values(&p, "organization"), [reference("Organization/1", Some("Organization"))]);
    assert_eq!(values(&p, "_profile"), [SearchValue::Uri("http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient".into())]);
    assert!(values(&p, "general-practitioner").is_empty());
    assert!(values(&p, "death-date").is_empty());
}

#[test]
fn content_is_every_string() {
    let p = json!({"resourceType": "Patient", "id": "x", "text": {"div": "<div>Hi &lt;there&gt;</div>"}, "name": [{"family": "Ng"}], "gender": "other"});
    assert_eq!(values(&p, "_content"), ["x", "Hi <there>", "Ng", "other"].map(string));
    assert!(values(&json!({"resourceType": "Patient"}), "_text").is_empty());
}

#[test]
fn observation_values() {
    let o = observation();
    assert_eq!(values(&o, "code"), [token(Some(LOINC), "85354-9"), text("Blood pressure panel"), text("Blood pressure")]);
    assert_eq!(values(&o, "date"), [date("2012-09-17")]);
    assert_eq!(values(&o, "value-quantity"), [quantity("107", Some(UCUM), Some("mm[Hg]"), Some("mm[Hg]"))]);
    // clinical-patient: `Observation.subject.where(resolve() is Patient)`, the version removed.
    assert_eq!(values(&o, "patient"), [reference("Patient/example", Some("Patient"))]);
    assert_eq!(values(&o, "subject"), [reference("Patient/example", Some("Patient"))]);
    assert_eq!(values(&o, "encounter"), [reference("Encounter/e1", Some("Encounter"))]);
    // The contained reference is left out, the identifier-only one gives its identifier.
    assert_eq!(
        values(&o, "performer"),
        [
            reference("Practitioner/p1", Some("Practitioner")),
            SearchValue::ReferenceIdentifier { system: Some("urn:npi".into()), value: "999".into() }
        ]
    );
    assert_eq!(
        values(&o, "combo-code"),
        [
            token(Some(LOINC), "85354-9"),
            text("Blood pressure panel"),
            text("Blood pressure"),
            token(Some(LOINC), "8480-6"),
            text("Systolic blood pressure"),
            token(Some(LOINC), "8462-4"),
            text("Diastolic blood pressure"),
        ]
    );
    assert_eq!(values(&o, "status"), [token(None, "final")]);
}

#[test]
fn observation_composites() {
    let o = observation();
    assert_eq!(
        values(&o, "code-value-quantity"),
        [SearchValue::Composite(vec![
            vec![token(Some(LOINC), "85354-9"), text("Blood pressure panel"), text("Blood pressure")],
            vec![quantity("107", Some(UCUM), Some("mm[Hg]"), Some("mm[Hg]"))],
        ])]
    );
    assert_eq!(
        values(&o, "component-code-value-quantity"),
        [
            SearchValue::Composite(vec![
                vec![token(Some(LOINC), "8480-6"), text("Systolic blood pressure")],
                vec![quantity("107", Some(UCUM), Some("mm[Hg]"), Some("mmHg"))],
            ]),
            SearchValue::Composite(vec![
                vec![token(Some(LOINC), "8462-4"), text("Diastolic blood pressure")],
                vec![quantity("60.5", Some(UCUM), Some("mm[Hg]"), Some("mmHg"))],
            ]),
        ]
    );
    assert_eq!(values(&o, "combo-code-value-quantity").len(), 3);
    // No valueCodeableConcept anywhere: no item has both components.
    assert!(values(&o, "code-value-concept").is_empty());
}

#[test]
fn observation_periods_and_other_value_types() {
    let o = json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "effectivePeriod": {"start": "2020-01-01T08:00:00+01:00", "end": "2020-01-01T09:00:00+01:00"},
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]}
    });
    let start = DateRange::parse("2020-01-01T07:00:00Z").expect("start");
    let end = DateRange::parse("2020-01-01T08:00:00Z").expect("end");
    assert_eq!(values(&o, "date"), [SearchValue::Date(DateRange { lo: start.lo, hi: end.hi })]);
    assert!(values(&o, "value-quantity").is_empty());
    assert_eq!(values(&o, "value-concept"), [token(Some("http://snomed.info/sct"), "260385009")]);
    assert_eq!(values(&o, "code"), [text("x")]);
    let composite = values(&o, "code-value-concept");
    assert_eq!(composite, [SearchValue::Composite(vec![vec![text("x")], vec![token(Some("http://snomed.info/sct"), "260385009")]])]);
}

#[test]
fn encounter_condition_medication_request_and_report() {
    let encounter = json!({"resourceType": "Encounter", "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/example"}, "period": {"start": "2015-01-17T16:00:00+10:00"}, "length": {"value": 90, "unit": "min", "system": UCUM, "code": "min"}});
    let open = DateRange::period(DateRange::parse("2015-01-17T16:00:00+10:00"), None).expect("open period");
    assert_eq!(values(&encounter, "date"), [SearchValue::Date(open)]);
    assert_eq!(values(&encounter, "class"), [token(Some("http://terminology.hl7.org/CodeSystem/v3-ActCode"), "AMB")]);
    assert_eq!(values(&encounter, "patient"), [reference("Patient/example", Some("Patient"))]);
    assert_eq!(values(&encounter, "length"), [quantity("90", Some(UCUM), Some("min"), Some("min"))]);

    let condition = json!({"resourceType": "Condition", "subject": {"reference": "Patient/example"}, "onsetDateTime": "2012-05-24",
        "abatementString": "around April", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "39065001", "display": "Burn of ear"}]}});
    assert_eq!(values(&condition, "onset-date"), [date("2012-05-24")]);
    assert!(values(&condition, "abatement-date").is_empty());
    assert_eq!(values(&condition, "abatement-string"), [string("around April")]);
    assert_eq!(values(&condition, "code"), [token(Some("http://snomed.info/sct"), "39065001"), text("Burn of ear")]);

    let request = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "authoredOn": "2015-01-15",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "582620"}]},
        "subject": {"reference": "Patient/example", "display": "Donald Duck"}, "requester": {"reference": "Practitioner/p1"},
        "dosageInstruction": [{"timing": {"event": ["2015-01-16T08:00:00Z"], "repeat": {"boundsPeriod": {"start": "2015-01-16", "end": "2015-01-20"}}}}]});
    assert_eq!(values(&request, "code"), [token(Some("http://www.nlm.nih.gov/research/umls/rxnorm"), "582620")]);
    assert_eq!(values(&request, "authoredon"), [date("2015-01-15")]);
    assert_eq!(values(&request, "requester"), [reference("Practitioner/p1", Some("Practitioner"))]);
    assert_eq!(values(&request, "intent"), [token(None, "order")]);
    // medications-date is `MedicationRequest.dosageInstruction.timing.event`: the events only.
    assert_eq!(values(&request, "date"), [date("2015-01-16T08:00:00Z")]);

    let report = json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"coding": [{"system": LOINC, "code": "58410-2"}]},
        "subject": {"reference": "https://other.example.org/fhir/Patient/p9", "type": "Patient"}, "issued": "2013-05-15T19:32:52+01:00",
        "result": [{"reference": "Observation/bp"}], "effectivePeriod": {"start": "2013-05-15", "end": "2013-05-15"}});
    assert_eq!(values(&report, "result"), [reference("Observation/bp", Some("Observation"))]);
    assert_eq!(values(&report, "subject"), [reference("https://other.example.org/fhir/Patient/p9", Some("Patient"))]);
    assert_eq!(values(&report, "patient"), [reference("https://other.example.org/fhir/Patient/p9", Some("Patient"))]);
    assert_eq!(values(&report, "date"), [date("2013-05-15")]);
    assert_eq!(values(&report, "issued"), [date("2013-05-15T19:32:52+01:00")]);
}

#[test]
fn references_to_other_types_are_not_patients() {
    let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Group/g1"}});
    assert!(values(&o, "patient").is_empty());
    assert_eq!(values(&o, "subject"), [reference("Group/g1", Some("Group"))]);
}

#[test]
fn numbers_money_canonicals_and_ranges() {
    let risk = json!({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/1"},
        "prediction": [{"probabilityDecimal": 0.025}, {"probabilityRange": {"low": {"value": 1}, "high": {"value": 2}}}]});
    assert_eq!(values(&risk, "probability"), [SearchValue::Number(Decimal::parse("0.025").expect("decimal"))]);
    let claim = json!({"resourceType": "ChargeItem", "status": "billable", "code": {"text": "x"}, "subject": {"reference": "Patient/1"},
        "priceOverride": {"value": 12.5, "currency": "EUR"}});
    assert_eq!(values(&claim, "price-override"), [quantity("12.5", Some("urn:iso:std:iso:4217"), Some("EUR"), None)]);
    let response =
        json!({"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": "http://example.org/Questionnaire/q|2.0"});
    assert_eq!(values(&response, "questionnaire"), [reference("http://example.org/Questionnaire/q|2.0", Some("Questionnaire"))]);
    let set = json!({"resourceType": "ValueSet", "status": "active", "url": "http://example.org/ValueSet/vs"});
    assert_eq!(values(&set, "url"), [SearchValue::Uri("http://example.org/ValueSet/vs".into())]);
}

#[test]
fn timings_give_their_events_and_bounds() {
    let mut out = Vec::new();
    let timing =
        json!({"event": ["2015-01-16T08:00:00Z", "bad"], "repeat": {"boundsPeriod": {"start": "2015-01-16", "end": "2015-01-20"}}});
    values_of(SearchParamType::Date, &timing, &mut out);
    let bounds = DateRange::period(DateRange::parse("2015-01-16"), DateRange::parse("2015-01-20")).expect("bounds");
    assert_eq!(out, [date("2015-01-16T08:00:00Z"), SearchValue::Date(bounds)]);
    out.clear();
    values_of(SearchParamType::Date, &json!({"low": {"value": 1}}), &mut out);
    values_of(SearchParamType::Quantity, &json!({"low": {"value": 1}, "high": {"value": 2}}), &mut out);
    values_of(SearchParamType::Number, &json!("12"), &mut out);
    values_of(SearchParamType::Composite, &json!("x"), &mut out);
    assert!(out.is_empty(), "ranges and strings are not dates, quantities or numbers");
}

#[test]
fn malformed_values_give_nothing() {
    let p = json!({"resourceType": "Patient", "birthDate": "not a date", "gender": "", "name": [{"given": [""]}, {"family": " "}], "telecom": [{"value": ""}]});
    for code in ["birthdate", "gender", "name", "telecom", "identifier", "_text"] {
        assert!(values(&p, code).is_empty(), "{code}");
    }
    let period =
        json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "period": {"start": "soon", "end": "2020"}});
    assert!(values(&period, "date").is_empty());
}

#[test]
fn narrative_text_strips_markup() {
    assert_eq!(narrative_text("<div><p>a&#160;b</p><br/>c &#x41; &unknown; &</div>"), "a b c A &unknown; &");
    assert_eq!(narrative_text("<div>  plain\n text </div>"), "plain text");
    assert_eq!(narrative_text("<div unclosed"), "");
}

#[test]
fn folding_lowers_removes_accents_and_collapses_space() {
    assert_eq!(fold("  Ärzte \t Müller "), "arzte muller");
    assert_eq!(fold("Zoë ÇELİK"), "zoe celik");
    assert_eq!(fold("ﬁnch"), "finch");
    assert_eq!(fold("   "), "");
}

#[test]
fn target_types_of_references() {
    assert_eq!(target_of("Patient/1"), Some("Patient"));
    assert_eq!(target_of("http://x.org/fhir/Patient/1/_history/2"), Some("Patient"));
    assert_eq!(target_of("http://x.org/ValueSet/vs|1.0"), Some("ValueSet"));
    assert_eq!(target_of("urn:uuid:1234"), None);
    assert_eq!(target_of("Nope/1"), None);
    assert_eq!(without_history("Patient/1/_history/2"), "Patient/1");
}

#[test]
fn members_of_small_and_large_objects_are_found_as_by_get() {
    for extra in [0, 1, SCAN_LIMIT, SCAN_LIMIT + 1, 3 * SCAN_LIMIT] {
        let mut object = json!({"code": "c", "system": "s", "value": 3, "text": null}).as_object().cloned().unwrap();
        for i in 0..extra {
            object.insert(format!("pad{i}"), json!(i));
        }
        for name in ["code", "system", "value", "text", "display", "pad0", "pad40", ""] {
            assert_eq!(member(&object, name), object.get(name), "{name} among {extra} more");
            assert_eq!(has(&object, name), object.contains_key(name));
        }
        let mut tokens = Vec::new();
        values_of(SearchParamType::Token, &Value::Object(object.clone()), &mut tokens);
        assert_eq!(tokens, vec![SearchValue::Token { system: Some("s".into()), code: "c".into() }], "{extra}");
    }
}
