use serde_json::{json, Value};

use super::*;

fn patient() -> Value {
    json!({"resourceType":"Patient","id":"p1","active":true,
      "identifier":[{"system":"urn:a","value":"1"},{"system":"urn:b","value":"2"},{"system":"urn:c","value":"3"}],
      "name":[{"use":"official","family":"Smith","given":["Alice","Beth"],"_given":[null,{"extension":[{"url":"u","valueString":"x"}]}]}],
      "birthDate":"1970-01-02",
      "deceasedBoolean":false,
      "contained":[{"resourceType":"Organization","id":"o1","name":"Acme"}]})
}

fn op(parts: Value) -> Value {
    json!({"name":"operation","part":parts})
}

fn params(ops: Vec<Value>) -> Value {
    json!({"resourceType":"Parameters","parameter":ops})
}

fn fp(ops: Vec<Value>) -> Result<Value, PatchError> {
    apply_fhirpath_patch(&patient(), &params(ops))
}

fn part(name: &str, key: &str, v: Value) -> Value {
    let mut p = json!({"name": name});
    p[key] = v;
    p
}

// ---- JSON Patch ----

#[test]
fn json_patch_applies_operations() {
    let patch = json!([
        {"op":"replace","path":"/birthDate","value":"1971-01-01"},
        {"op":"add","path":"/identifier/-","value":{"value":"4"}},
        {"op":"remove","path":"/deceasedBoolean"},
        {"op":"test","path":"/active","value":true},
        {"op":"move","from":"/identifier/0","path":"/identifier/1"},
        {"op":"copy","from":"/birthDate","path":"/name/0/family"}
    ]);
    let out = apply_json_patch(&patient(), &patch).unwrap();
    assert_eq!(out["birthDate"], "1971-01-01");
    assert_eq!(out["identifier"].as_array().unwrap().len(), 4);
    assert_eq!(out["identifier"][1]["value"], "1");
    assert!(out.get("deceasedBoolean").is_none());
    assert_eq!(out["name"][0]["family"], "1971-01-01");
}

#[test]
fn json_patch_errors_are_classified() {
    let p = patient();
    let malformed =
        [json!({"op":"add"}), json!([{"op":"frobnicate","path":"/a"}]), json!([{"op":"add","path":"/a"}]), json!("x"), json!([1])];
    for m in malformed {
        let e = apply_json_patch(&p, &m).unwrap_err();
        assert!(matches!(e, PatchError::Malformed(_)), "{m}: {e:?}");
        assert_eq!(e.http_status(), 400);
    }
    let e = apply_json_patch(&p, &json!([{"op":"test","path":"/active","value":false}])).unwrap_err();
    assert!(matches!(e, PatchError::TestFailed(_)));
    assert_eq!(e.http_status(), 422);
    let e = apply_json_patch(&p, &json!([{"op":"remove","path":"/nothing"}])).unwrap_err();
    assert!(matches!(e, PatchError::Unprocessable(_)));
    for change in [
        json!([{"op":"replace","path":"/id","value":"other"}]),
        json!([{"op":"remove","path":"/resourceType"}]),
        json!([{"op":"replace","path":"","value":[]}]),
    ] {
        assert!(matches!(apply_json_patch(&p, &change).unwrap_err(), PatchError::Unprocessable(_)), "{change}");
    }
    // All or nothing, and messages do not echo content.
    let e = apply_json_patch(
        &p,
        &json!([{"op":"replace","path":"/birthDate","value":"secret-value"},{"op":"test","path":"/active","value":"secret"}]),
    )
    .unwrap_err();
    assert!(!e.to_string().contains("secret"));
}

// ---- FHIRPath Patch: one test per operation type, modelled on the spec's examples ----

#[test]
fn add_sets_a_singleton_and_appends_to_lists() {
    let mut r = patient();
    r.as_object_mut().unwrap().remove("birthDate");
    let ops = params(vec![op(json!([
        part("type", "valueCode", json!("add")),
        part("path", "valueString", json!("Patient")),
        part("name", "valueString", json!("birthDate")),
        part("value", "valueDate", json!("1930-01-01"))
    ]))]);
    let out = apply_fhirpath_patch(&r, &ops).unwrap();
    assert_eq!(out["birthDate"], "1930-01-01");

    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("add")),
        part("path", "valueString", json!("Patient")),
        part("name", "valueString", json!("identifier")),
        part("value", "valueIdentifier", json!({"value":"4"}))
    ]))])
    .unwrap();
    assert_eq!(out["identifier"][3], json!({"value":"4"}));

    // An absent repeating element becomes a list (the registry knows Patient.telecom is 0..*).
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("add")),
        part("path", "valueString", json!("Patient")),
        part("name", "valueString", json!("telecom")),
        part("value", "valueContactPoint", json!({"system":"phone","value":"1"}))
    ]))])
    .unwrap();
    assert_eq!(out["telecom"], json!([{"system":"phone","value":"1"}]));

    // A singleton that exists cannot be added again.
    let e = fp(vec![op(json!([
        part("type", "valueCode", json!("add")),
        part("path", "valueString", json!("Patient")),
        part("name", "valueString", json!("birthDate")),
        part("value", "valueDate", json!("1930-01-01"))
    ]))])
    .unwrap_err();
    assert!(matches!(e, PatchError::Unprocessable(_)));
}

#[test]
fn add_assembles_complex_values_from_parts() {
    // The spec's example: a contact assembled from parts.
    let out = fp(vec![op(json!([
        part("type","valueCode",json!("add")), part("path","valueString",json!("Patient")),
        part("name","valueString",json!("contact")),
        {"name":"value","part":[
            {"name":"name","valueHumanName":{"text":"a name"}},
            {"name":"telecom","valueContactPoint":{"system":"phone","value":"555"}}
        ]}
    ]))])
    .unwrap();
    assert_eq!(out["contact"], json!([{"name":{"text":"a name"},"telecom":[{"system":"phone","value":"555"}]}]));
}

#[test]
fn add_to_a_choice_element_uses_the_value_type() {
    let mut r = patient();
    r.as_object_mut().unwrap().remove("deceasedBoolean");
    let ops = params(vec![op(json!([
        part("type", "valueCode", json!("add")),
        part("path", "valueString", json!("Patient")),
        part("name", "valueString", json!("deceased")),
        part("value", "valueDateTime", json!("2020-01-01"))
    ]))]);
    let out = apply_fhirpath_patch(&r, &ops).unwrap();
    assert_eq!(out["deceasedDateTime"], "2020-01-01");
    // While deceasedBoolean is present, the choice is taken.
    assert!(fp(vec![op(json!([
        part("type", "valueCode", json!("add")),
        part("path", "valueString", json!("Patient")),
        part("name", "valueString", json!("deceased")),
        part("value", "valueDateTime", json!("2020-01-01"))
    ]))])
    .is_err());
}

#[test]
fn add_extension_to_a_primitive_goes_to_its_sibling() {
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("add")),
        part("path", "valueString", json!("Patient.birthDate")),
        part("name", "valueString", json!("extension")),
        part("value", "valueExtension", json!({"url":"http://x","valueString":"y"}))
    ]))])
    .unwrap();
    assert_eq!(out["birthDate"], "1970-01-02");
    assert_eq!(out["_birthDate"], json!({"extension":[{"url":"http://x","valueString":"y"}]}));
}

#[test]
fn insert_at_index() {
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("insert")),
        part("path", "valueString", json!("Patient.identifier")),
        part("index", "valueInteger", json!(1)),
        part("value", "valueIdentifier", json!({"value":"new"}))
    ]))])
    .unwrap();
    let values: Vec<&str> = out["identifier"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["1", "new", "2", "3"]);
    // Into an empty list, and at the end.
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("insert")),
        part("path", "valueString", json!("Patient.telecom")),
        part("index", "valueInteger", json!(0)),
        part("value", "valueContactPoint", json!({"value":"t"}))
    ]))])
    .unwrap();
    assert_eq!(out["telecom"], json!([{"value":"t"}]));
    // Primitive lists keep their extensions aligned.
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("insert")),
        part("path", "valueString", json!("Patient.name[0].given")),
        part("index", "valueInteger", json!(0)),
        part("value", "valueString", json!("Zed"))
    ]))])
    .unwrap();
    assert_eq!(out["name"][0]["given"], json!(["Zed", "Alice", "Beth"]));
    assert_eq!(out["name"][0]["_given"], json!([null,null,{"extension":[{"url":"u","valueString":"x"}]}]));
    // Past the end is an error.
    let e = fp(vec![op(json!([
        part("type", "valueCode", json!("insert")),
        part("path", "valueString", json!("Patient.identifier")),
        part("index", "valueInteger", json!(4)),
        part("value", "valueIdentifier", json!({"value":"x"}))
    ]))])
    .unwrap_err();
    assert!(matches!(e, PatchError::Unprocessable(_)));
}

#[test]
fn delete_elements() {
    let out =
        fp(vec![op(json!([part("type", "valueCode", json!("delete")), part("path", "valueString", json!("Patient.birthDate"))]))]).unwrap();
    assert!(out.get("birthDate").is_none());
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("delete")),
        part("path", "valueString", json!("Patient.identifier.where(system='urn:b')"))
    ]))])
    .unwrap();
    assert_eq!(out["identifier"].as_array().unwrap().len(), 2);
    // Deleting a primitive list member removes its extension entry too.
    let out =
        fp(vec![op(json!([part("type", "valueCode", json!("delete")), part("path", "valueString", json!("Patient.name.given[0]"))]))])
            .unwrap();
    assert_eq!(out["name"][0]["given"], json!(["Beth"]));
    assert_eq!(out["name"][0]["_given"], json!([{"extension":[{"url":"u","valueString":"x"}]}]));
    // Deleting the last member removes the list.
    let out = fp(vec![op(json!([part("type", "valueCode", json!("delete")), part("path", "valueString", json!("Patient.contained[0]"))]))])
        .unwrap();
    assert!(out.get("contained").is_none());
    // Nothing selected: no change.
    let out =
        fp(vec![op(json!([part("type", "valueCode", json!("delete")), part("path", "valueString", json!("Patient.telecom"))]))]).unwrap();
    assert_eq!(out, patient());
    // Several selected: error.
    let e = fp(vec![op(json!([part("type", "valueCode", json!("delete")), part("path", "valueString", json!("Patient.identifier"))]))])
        .unwrap_err();
    assert!(matches!(e, PatchError::Unprocessable(_)));
}

#[test]
fn replace_elements() {
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("replace")),
        part("path", "valueString", json!("Patient.birthDate")),
        part("value", "valueDate", json!("1930-01-01"))
    ]))])
    .unwrap();
    assert_eq!(out["birthDate"], "1930-01-01");
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("replace")),
        part("path", "valueString", json!("Patient.identifier.where(system='urn:c').value")),
        part("value", "valueString", json!("33"))
    ]))])
    .unwrap();
    assert_eq!(out["identifier"][2], json!({"system":"urn:c","value":"33"}));
    // Replacing a primitive drops the old value's extensions.
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("replace")),
        part("path", "valueString", json!("Patient.name.given[1]")),
        part("value", "valueString", json!("Bea"))
    ]))])
    .unwrap();
    assert_eq!(out["name"][0]["given"], json!(["Alice", "Bea"]));
    assert!(out["name"][0].get("_given").is_none());
    // A choice element changes type with its value.
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("replace")),
        part("path", "valueString", json!("Patient.deceased")),
        part("value", "valueDateTime", json!("2021-02-03"))
    ]))])
    .unwrap();
    assert!(out.get("deceasedBoolean").is_none());
    assert_eq!(out["deceasedDateTime"], "2021-02-03");
    // Nothing selected, or several: error.
    for path in ["Patient.telecom", "Patient.identifier"] {
        let e = fp(vec![op(json!([
            part("type", "valueCode", json!("replace")),
            part("path", "valueString", json!(path)),
            part("value", "valueString", json!("x"))
        ]))])
        .unwrap_err();
        assert!(matches!(e, PatchError::Unprocessable(_)), "{path}");
    }
}

#[test]
fn move_within_a_list() {
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("move")),
        part("path", "valueString", json!("Patient.identifier")),
        part("source", "valueInteger", json!(0)),
        part("destination", "valueInteger", json!(2))
    ]))])
    .unwrap();
    let values: Vec<&str> = out["identifier"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["2", "3", "1"]);
    let out = fp(vec![op(json!([
        part("type", "valueCode", json!("move")),
        part("path", "valueString", json!("Patient.name.given")),
        part("source", "valueInteger", json!(1)),
        part("destination", "valueInteger", json!(0))
    ]))])
    .unwrap();
    assert_eq!(out["name"][0]["given"], json!(["Beth", "Alice"]));
    assert_eq!(out["name"][0]["_given"], json!([{"extension":[{"url":"u","valueString":"x"}]},null]));
    let e = fp(vec![op(json!([
        part("type", "valueCode", json!("move")),
        part("path", "valueString", json!("Patient.identifier")),
        part("source", "valueInteger", json!(0)),
        part("destination", "valueInteger", json!(3))
    ]))])
    .unwrap_err();
    assert!(matches!(e, PatchError::Unprocessable(_)));
}

#[test]
fn operations_apply_in_order_all_or_nothing() {
    let ops = vec![
        op(json!([part("type", "valueCode", json!("delete")), part("path", "valueString", json!("Patient.birthDate"))])),
        op(json!([
            part("type", "valueCode", json!("replace")),
            part("path", "valueString", json!("Patient.birthDate")),
            part("value", "valueDate", json!("2000-01-01"))
        ])),
    ];
    let e = fp(ops).unwrap_err();
    assert!(e.to_string().contains("operation 1"), "{e}");
    assert_eq!(fp(vec![]).unwrap(), patient());
}

#[test]
fn id_and_resource_type_cannot_change() {
    for path in ["Patient.id", "Patient"] {
        let e = fp(vec![op(json!([
            part("type", "valueCode", json!("replace")),
            part("path", "valueString", json!(path)),
            part("value", "valueId", json!("x"))
        ]))])
        .unwrap_err();
        assert!(matches!(e, PatchError::Unprocessable(_)), "{path}");
    }
    let e =
        fp(vec![op(json!([part("type", "valueCode", json!("delete")), part("path", "valueString", json!("Patient.id"))]))]).unwrap_err();
    assert!(matches!(e, PatchError::Unprocessable(_)));
}

#[test]
fn malformed_documents_are_400() {
    let bad = [
        json!({"resourceType":"Patient"}),
        json!({"resourceType":"Parameters","parameter":{}}),
        params(vec![json!({"name":"op","part":[]})]),
        params(vec![op(json!([part("type", "valueCode", json!("upsert")), part("path", "valueString", json!("Patient"))]))]),
        params(vec![op(json!([part("type", "valueCode", json!("delete"))]))]),
        params(vec![op(json!([part("type", "valueCode", json!("delete")), part("path", "valueString", json!("Patient..x"))]))]),
        params(vec![op(json!([
            part("type", "valueCode", json!("add")),
            part("path", "valueString", json!("Patient")),
            part("value", "valueString", json!("x"))
        ]))]),
        params(vec![op(json!([
            part("type", "valueCode", json!("insert")),
            part("path", "valueString", json!("Patient.identifier")),
            part("value", "valueString", json!("x"))
        ]))]),
        params(vec![op(json!([
            part("type", "valueCode", json!("insert")),
            part("path", "valueString", json!("Patient.identifier")),
            part("index", "valueInteger", json!(-1)),
            part("value", "valueString", json!("x"))
        ]))]),
        params(vec![op(json!([
            part("type", "valueCode", json!("move")),
            part("path", "valueString", json!("Patient.identifier")),
            part("source", "valueInteger", json!(0))
        ]))]),
        params(vec![op(
            json!([part("type","valueCode",json!("replace")), part("path","valueString",json!("Patient.birthDate")), {"name":"value","valueString":"a","valueDate":"b"}]),
        )]),
        params(vec![op(
            json!([part("type","valueCode",json!("replace")), part("path","valueString",json!("Patient.birthDate")), {"name":"value"}]),
        )]),
        params(vec![op(json!([
            part("type", "valueCode", json!("delete")),
            part("path", "valueString", json!("Patient.birthDate")),
            part("bogus", "valueString", json!("x"))
        ]))]),
    ];
    for b in bad {
        let e = apply_fhirpath_patch(&patient(), &b).unwrap_err();
        assert!(matches!(e, PatchError::Malformed(_)), "{b}: {e:?}");
        assert_eq!(e.http_status(), 400);
    }
}

#[test]
fn garbage_never_panics() {
    let values = [json!(null), json!(1), json!("x"), json!([]), json!({}), json!([null]), json!({"part": 5}), json!({"name": 5})];
    let paths = [
        "Patient",
        "Patient.name",
        "Patient.name.given[5]",
        "1 + 1",
        "Patient.name.count()",
        "%resource",
        "Patient.contained.resolve()",
        "{}",
    ];
    for v in &values {
        let _ = apply_json_patch(&patient(), v);
        let _ = apply_json_patch(v, &json!([{"op":"add","path":"/a","value":1}]));
        let _ = apply_fhirpath_patch(&patient(), v);
        let _ = apply_fhirpath_patch(&patient(), &params(vec![v.clone()]));
        let _ = apply_fhirpath_patch(&patient(), &params(vec![json!({"name":"operation","part":[v]})]));
        for ty in ["add", "insert", "delete", "replace", "move"] {
            for path in paths {
                let o = op(json!([
                    part("type","valueCode",json!(ty)), part("path","valueString",json!(path)), part("name","valueString",json!("given")),
                    part("index","valueInteger",json!(0)), part("source","valueInteger",json!(0)), part("destination","valueInteger",json!(0)),
                    {"name":"value","part":[{"name":"x","part":[{"name":"y","valueString":"z"}]}]}
                ]));
                let _ = apply_fhirpath_patch(&patient(), &params(vec![o.clone()]));
                let _ = apply_fhirpath_patch(v, &params(vec![o]));
            }
        }
    }
    // Deeply nested parts are refused.
    let mut deep = json!({"name":"value","valueString":"x"});
    for _ in 0..100 {
        deep = json!({"name":"value","part":[deep]});
    }
    let o = op(json!([part("type", "valueCode", json!("replace")), part("path", "valueString", json!("Patient.birthDate")), deep]));
    assert!(matches!(fp(vec![o]).unwrap_err(), PatchError::Malformed(_)));
}
