//! Structural validation throughput against the raw JSON parse rate of the same bytes.
//!
//! `cargo run --release -p fhirlake-fhir --example validate_bench [iterations]`

use std::hint::black_box;
use std::time::{Duration, Instant};

use fhirlake_fhir::validate::validate_resource;
use serde_json::Value;

const PATIENT: &str = r#"{
  "resourceType": "Patient",
  "id": "example-patient-0001",
  "meta": {"versionId": "3", "lastUpdated": "2024-05-01T10:20:30.123Z",
    "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
  "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Jane Q Doe, born 1970-01-01</p></div>"},
  "extension": [
    {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
      {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}},
      {"url": "text", "valueString": "White"}]},
    {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"}
  ],
  "identifier": [
    {"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
     "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345", "period": {"start": "2001-05-06"},
     "assigner": {"display": "Acme Healthcare"}}
  ],
  "active": true,
  "name": [
    {"use": "official", "family": "Doe", "given": ["Jane", "Quinn"]},
    {"use": "maiden", "family": "Roe", "given": ["Jane"], "period": {"end": "1995-06-01"}}
  ],
  "telecom": [
    {"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1},
    {"system": "email", "value": "jane.doe@example.org", "use": "home"}
  ],
  "gender": "female",
  "birthDate": "1970-01-01",
  "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1970-01-01T14:35:45-05:00"}]},
  "deceasedBoolean": false,
  "address": [{"use": "home", "type": "both", "text": "534 Erewhon St PeasantVille, Rainbow, Vic 3999",
    "line": ["534 Erewhon St"], "city": "PleasantVille", "district": "Rainbow", "state": "Vic",
    "postalCode": "3999", "period": {"start": "1974-12-25"}}],
  "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
  "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
    "name": {"family": "du Marché", "given": ["Bénédicte"]},
    "telecom": [{"system": "phone", "value": "+33 (237) 998327"}], "gender": "female",
    "period": {"start": "2012"}}],
  "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}]}, "preferred": true}],
  "generalPractitioner": [{"reference": "Practitioner/example", "display": "Dr Adam Careful"}],
  "managingOrganization": {"reference": "Organization/1"}
}"#;

const OBSERVATION: &str = r#"{
  "resourceType": "Observation",
  "id": "blood-pressure-0001",
  "meta": {"versionId": "1", "lastUpdated": "2024-05-01T10:20:30.123Z"},
  "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:187e0c12-8dd2-67e2-99b2-bf273c878281"}],
  "basedOn": [{"identifier": {"system": "https://acme.org/identifiers", "value": "1234"}}],
  "status": "final",
  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "vital-signs", "display": "Vital Signs"}]}],
  "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9",
    "display": "Blood pressure panel with all children optional"}], "text": "Blood pressure systolic & diastolic"},
  "subject": {"reference": "Patient/example-patient-0001"},
  "encounter": {"reference": "Encounter/example"},
  "effectiveDateTime": "2012-09-17",
  "issued": "2012-09-17T10:00:00.000+01:00",
  "performer": [{"reference": "Practitioner/example"}],
  "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
    "code": "L", "display": "low"}], "text": "Below low normal"}],
  "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "368209003", "display": "Right arm"}]},
  "component": [
    {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]},
     "valueQuantity": {"value": 107, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
     "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}]}]},
    {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}]},
     "valueQuantity": {"value": 60, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
     "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "L"}]}]}
  ]
}"#;

fn time(iterations: usize, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed()
}

fn main() {
    let iterations: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let first = Instant::now();
    let warm: Value = serde_json::from_str(PATIENT).expect("patient json");
    validate_resource(Some("Patient"), &warm).expect("the sample patient is valid");
    println!("first validation (regexes compiled on first use): {:?}", first.elapsed());

    println!("{iterations} iterations per row");
    println!(
        "{:<12} {:>7} {:>14} {:>10} {:>14} {:>10} {:>8}",
        "resource", "bytes", "parse/s", "parse MB/s", "validate/s", "val MB/s", "ratio"
    );
    for (name, json) in [("Patient", PATIENT), ("Observation", OBSERVATION)] {
        let bytes = json.as_bytes();
        let value: Value = serde_json::from_slice(bytes).expect("sample json");
        validate_resource(Some(name), &value).expect("the sample is valid");

        let parse = time(iterations, || {
            black_box(serde_json::from_slice::<Value>(black_box(bytes)).ok());
        });
        let validate = time(iterations, || {
            black_box(validate_resource(Some(name), black_box(&value)).is_ok());
        });
        let rate = |d: Duration| iterations as f64 / d.as_secs_f64();
        let mbps = |d: Duration| rate(d) * bytes.len() as f64 / 1e6;
        println!(
            "{:<12} {:>7} {:>14.0} {:>10.1} {:>14.0} {:>10.1} {:>7.2}x",
            name,
            bytes.len(),
            rate(parse),
            mbps(parse),
            rate(validate),
            mbps(validate),
            validate.as_secs_f64() / parse.as_secs_f64()
        );
    }
    println!("ratio: validation time relative to parsing the same bytes into serde_json::Value");
}
