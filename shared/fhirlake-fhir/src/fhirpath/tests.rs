use serde_json::{json, Value};

use super::*;

fn patient() -> Value {
    json!({"resourceType":"Patient","id":"p1","active":true,
      "extension":[{"url":"http://x/race","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3"}}],
      "identifier":[{"type":{"coding":[{"code":"MR"}]},"value":"12345"},{"system":"urn:ssn","value":"999"}],
      "name":[{"use":"official","family":"Smith","given":["Alice","A."]},{"use":"nickname","given":["Al"]}],
      "telecom":[{"system":"phone","value":"555"},{"system":"email","value":"a@b"}],
      "birthDate":"1970-01-02",
      "_birthDate":{"extension":[{"url":"http://x/time","valueDateTime":"1970-01-02T10:00:00Z"}]},
      "deceasedDateTime":"2020-01-01",
      "address":[{"city":"Boston","state":"MA"}],
      "generalPractitioner":[{"reference":"Practitioner/1"}],
      "managingOrganization":{"reference":"#org1"},
      "contained":[{"resourceType":"Organization","id":"org1","name":"Acme"}]})
}

fn resources() -> Value {
    json!({
     "Patient": patient(),
     "Observation": {"resourceType":"Observation","id":"o1","status":"final",
       "code":{"coding":[{"system":"http://loinc.org","code":"1234-5"}]},
       "subject":{"reference":"Patient/p1"},
       "effectiveDateTime":"2020-01-01T10:00:00Z",
       "valueQuantity":{"value":7.2,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"},
       "component":[{"code":{"text":"a"},"valueQuantity":{"value":1}},{"code":{"text":"b"},"valueCodeableConcept":{"text":"x"}}]},
     "Condition": {"resourceType":"Condition","id":"c1","subject":{"reference":"http://srv/fhir/Patient/p1/_history/2"},
       "onsetAge":{"value":30,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}},
     "QuestionnaireResponse": {"resourceType":"QuestionnaireResponse","id":"q1","status":"completed",
       "item":[{"linkId":"1","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/questionnaireresponse-isSubject","valueBoolean":true}],
                "answer":[{"valueReference":{"reference":"Patient/p1"}}]},
               {"linkId":"2","answer":[{"valueString":"x"},{"valueReference":{"reference":"Group/g"}}]}]},
     "MedicationRequest": {"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order",
       "subject":{"reference":"Patient/p1"},
       "medicationCodeableConcept":{"coding":[{"code":"123"}]},"authoredOn":"2021-05-01"}
    })
}

/// (expression, expected result) over the sample resource named by the expression's first identifier.
fn cases() -> Vec<(&'static str, Value)> {
    vec![
        ("Patient.name.given", json!(["Alice", "A.", "Al"])),
        ("Patient.name.family", json!(["Smith"])),
        ("Patient.deceased.exists() and Patient.deceased != false", json!([true])),
        ("Patient.telecom.where(system='phone').value", json!(["555"])),
        ("Patient.birthDate", json!(["1970-01-02"])),
        ("Patient.birthDate.extension.url", json!(["http://x/time"])),
        ("Patient.address.city | Patient.address.state", json!(["Boston", "MA"])),
        ("Patient.name.given | Patient.name.given", json!(["Alice", "A.", "Al"])),
        ("Patient.extension.where(url='http://x/race').value.ofType(Coding).code", json!(["2106-3"])),
        ("Patient.extension('http://x/race').value.code", json!(["2106-3"])),
        ("Patient.name.where(use='official').given.first()", json!(["Alice"])),
        ("Patient.identifier.where(type.coding.code='MR').value", json!(["12345"])),
        ("Patient.identifier.where(system='urn:ssn').value", json!(["999"])),
        ("Patient.active", json!([true])),
        ("Patient.name.count()", json!([2])),
        ("Patient.name[1].given", json!(["Al"])),
        ("Patient.name.given.last()", json!(["Al"])),
        ("Patient.managingOrganization.resolve().name", json!(["Acme"])),
        ("Patient.generalPractitioner.where(resolve() is Practitioner).reference", json!(["Practitioner/1"])),
        ("Patient.generalPractitioner.where(resolve() is Organization)", json!([])),
        ("Patient.name.given.join(' ')", json!(["Alice A. Al"])),
        ("Patient.name.given.select($this.upper()).first()", json!(["ALICE"])),
        ("Patient.birthDate < @2000-01-01", json!([true])),
        ("Patient.name.where(given.exists(startsWith('A'))).use", json!(["official", "nickname"])),
        ("Patient.telecom.all(value.exists())", json!([true])),
        ("iif(Patient.active, 'yes', 'no')", json!(["yes"])),
        ("Patient.name.given.count() > 2 and Patient.id = 'p1'", json!([true])),
        ("(1 + 2 * 3) div 2", json!([3])),
        ("'a' & {} & 'b'", json!(["ab"])),
        ("Patient.nothing.empty()", json!([true])),
        ("Patient.id.matches('^p[0-9]+$')", json!([true])),
        ("Resource.id", json!(["p1"])),
        ("Observation.value as Quantity", json!([{"value":7.2,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}])),
        ("(Observation.value as Quantity).value", json!([7.2])),
        ("(Observation.value as CodeableConcept)", json!([])),
        ("Observation.value.ofType(Quantity).unit", json!(["mmol/L"])),
        ("Observation.effective", json!(["2020-01-01T10:00:00Z"])),
        ("Observation.component.value.ofType(CodeableConcept).text", json!(["x"])),
        ("Observation.subject.where(resolve() is Patient).reference", json!(["Patient/p1"])),
        ("Observation.code.coding.code", json!(["1234-5"])),
        ("Observation.value is Quantity", json!([true])),
        ("Observation.component.where(code.text = 'a').value.value", json!([1])),
        ("Observation.name", json!([])),
        ("Patient.name.given", json!(["Alice", "A.", "Al"])),
        ("Condition.onset.as(Age) | Condition.onset.as(Range)", json!([{"value":30,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}])),
        ("Condition.onset.as(dateTime)", json!([])),
        ("(Condition.onset as Age).value", json!([30])),
        ("Condition.subject.where(resolve() is Patient).exists()", json!([true])),
        ("QuestionnaireResponse.item.where(hasExtension('http://hl7.org/fhir/StructureDefinition/questionnaireresponse-isSubject')).answer.value.ofType(Reference).reference", json!(["Patient/p1"])),
        ("QuestionnaireResponse.item.answer.value.ofType(Reference).reference", json!(["Patient/p1", "Group/g"])),
        ("(MedicationRequest.medication as CodeableConcept).coding.code", json!(["123"])),
        ("MedicationRequest.medication.as(CodeableConcept).coding.code", json!(["123"])),
        ("MedicationRequest.authoredOn", json!(["2021-05-01"])),
    ]
}

fn resource_for<'a>(all: &'a Value, expr: &str) -> &'a Value {
    let first = expr.trim_start_matches('(').split(['.', ' ']).next().unwrap_or("");
    all.get(first).unwrap_or(&all["Patient"])
}

#[test]
fn search_parameter_style_expressions() {
    let all = resources();
    for (src, expected) in cases() {
        let e = Expression::parse(src).unwrap_or_else(|err| panic!("{src}: {err}"));
        let r = resource_for(&all, src);
        let got = e.evaluate(r).unwrap_or_else(|err| panic!("{src}: {err}"));
        assert_eq!(Value::Array(got), expected, "{src}");
        // The fast path and the general evaluator agree.
        let general = e.evaluate_general(r).unwrap_or_else(|err| panic!("{src}: {err}"));
        assert_eq!(Value::Array(general), expected, "{src} (general)");
    }
}

#[test]
fn simple_paths_are_compiled() {
    for src in [
        "Patient.name.given",
        "Observation.value as Quantity",
        "(Observation.value as Quantity).value",
        "Condition.onset.as(Age) | Condition.onset.as(Range)",
        "Observation.component.value.ofType(CodeableConcept)",
    ] {
        assert!(Expression::parse(src).unwrap().is_compiled(), "{src}");
    }
    for src in ["Patient.name.where(use='official')", "Patient.name.first()", "Patient.deceased.exists()"] {
        assert!(!Expression::parse(src).unwrap().is_compiled(), "{src}");
    }
}

#[test]
fn every_r4_search_parameter_expression_parses() {
    let mut compiled = 0;
    let mut total = 0;
    for sp in crate::registry::all_search_params() {
        let Some(src) = sp.expression else { continue };
        total += 1;
        let e = Expression::parse(src).unwrap_or_else(|err| panic!("{}: {err}", sp.id));
        compiled += usize::from(e.is_compiled());
        // Evaluating over an unrelated resource never errors.
        e.evaluate(&patient()).unwrap_or_else(|err| panic!("{}: {err}", sp.id));
    }
    println!("{compiled} of {total} R4 search-parameter expressions take the compiled fast path");
    assert!(total > 1000, "registry has the R4 search parameters");
    assert!(compiled * 2 > total, "most search parameters take the fast path ({compiled}/{total})");
}

#[test]
fn locate_returns_element_locations() {
    let p = patient();
    let loc = |src: &str| -> Vec<String> { Expression::parse(src).unwrap().locate(&p).unwrap().iter().map(Location::pointer).collect() };
    assert_eq!(loc("Patient.name.given"), ["/name/0/given/0", "/name/0/given/1", "/name/1/given/0"]);
    assert_eq!(loc("Patient.name.where(use='nickname')"), ["/name/1"]);
    assert_eq!(loc("Patient.telecom[1].value"), ["/telecom/1/value"]);
    assert_eq!(loc("Patient.deceased"), ["/deceasedDateTime"]);
    assert_eq!(loc("Patient.birthDate.extension"), ["/_birthDate/extension/0"]);
    assert_eq!(loc("Patient"), [""]);
    assert_eq!(loc("Patient.managingOrganization.resolve()"), ["/contained/0"]);
    assert!(Expression::parse("Patient.name.count()").unwrap().locate(&p).is_err());
}

#[test]
fn value_less_primitives_keep_their_extensions() {
    let r = json!({"resourceType":"Patient","name":[{"given":["A",null],"_given":[null,{"extension":[{"url":"u","valueString":"x"}]}]}]});
    let e = Expression::parse("Patient.name.given").unwrap();
    assert_eq!(e.evaluate(&r).unwrap(), vec![json!("A")]);
    let e = Expression::parse("Patient.name.given.extension.value").unwrap();
    assert_eq!(e.evaluate(&r).unwrap(), vec![json!("x")]);
    assert_eq!(e.evaluate_general(&r).unwrap(), vec![json!("x")]);
    let e = Expression::parse("Patient.name.given.count()").unwrap();
    assert_eq!(e.evaluate(&r).unwrap(), vec![json!(2)]);
}

#[test]
fn errors_do_not_panic_or_leak_content() {
    let p = patient();
    for bad in ["Patient.name.given.substring(", "Patient..x", "Patient.name.foo()", "Patient.name.given.single()", "%nope"] {
        let err = Expression::parse(bad).and_then(|e| e.evaluate(&p)).unwrap_err();
        assert!(!err.to_string().contains("Alice"), "{err}");
    }
    // A pathological regex is refused, not run.
    let e = Expression::parse("Patient.id.matches('(a{1000}){1000}')").unwrap();
    assert!(e.evaluate(&p).is_err());
    // Runaway repeat is bounded.
    let e = Expression::parse("Patient.repeat($this | $this.name)").unwrap();
    let _ = e.evaluate(&p);
    for garbage in [json!(null), json!([1, 2]), json!("x"), json!({"resourceType": 5})] {
        for (src, _) in cases() {
            let _ = Expression::parse(src).unwrap().evaluate(&garbage);
        }
    }
}

#[test]
fn three_valued_logic_and_equality() {
    let p = patient();
    let eval = |s: &str| Expression::parse(s).unwrap().evaluate(&p).unwrap();
    assert_eq!(eval("{} and false"), vec![json!(false)]);
    assert_eq!(eval("{} and true"), Vec::<Value>::new());
    assert_eq!(eval("{} or true"), vec![json!(true)]);
    assert_eq!(eval("false implies {}"), vec![json!(true)]);
    assert_eq!(eval("true xor false"), vec![json!(true)]);
    assert_eq!(eval("{} = 1"), Vec::<Value>::new());
    assert_eq!(eval("'Abc  d' ~ 'abc d'"), vec![json!(true)]);
    assert_eq!(eval("1 = 1.0"), vec![json!(true)]);
    assert_eq!(eval("@2020-01 = @2020-01-01"), Vec::<Value>::new());
    assert_eq!(eval("@2020-01-01T10:00:00Z = @2020-01-01T11:00:00+01:00"), vec![json!(true)]);
    assert_eq!(eval("5 / 0"), Vec::<Value>::new());
    assert_eq!(eval("7 mod 3"), vec![json!(1)]);
    assert_eq!(eval("'abc'.substring(1, 1)"), vec![json!("b")]);
    assert_eq!(eval("'abc'.indexOf('c')"), vec![json!(2)]);
    assert_eq!(eval("'1.5'.toDecimal() + 1"), vec![json!(2.5)]);
    assert_eq!(eval("(1 | 2 | 3).where($this > 1).count()"), vec![json!(2)]);
}

#[test]
fn fast_path_agrees_with_the_general_evaluator_on_every_search_parameter() {
    let all = resources();
    let samples: Vec<&Value> = all.as_object().unwrap().values().collect();
    for sp in crate::registry::all_search_params() {
        let Some(src) = sp.expression else { continue };
        let e = Expression::parse(src).unwrap();
        if !e.is_compiled() {
            continue;
        }
        for r in &samples {
            assert_eq!(e.evaluate(r).unwrap(), e.evaluate_general(r).unwrap(), "{}", sp.id);
        }
    }
}
