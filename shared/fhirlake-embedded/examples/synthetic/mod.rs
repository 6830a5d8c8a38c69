//! The synthetic population the embedded benchmarks load: patients, each with 10 Encounters
//! and 189 Observations (200 resources), deterministic for a given patient number.

#![allow(dead_code)]

use serde_json::{json, Value};

pub const ENCOUNTERS: usize = 10;
pub const OBSERVATIONS: usize = 189;
const FAMILIES: usize = 400;
pub const CODES: [&str; 24] = [
    "8867-4", "8480-6", "8462-4", "9279-1", "8310-5", "29463-7", "8302-2", "39156-5", "2339-0", "718-7", "6690-2", "789-8", "785-6",
    "786-4", "787-2", "788-0", "777-3", "2093-3", "2571-8", "18262-6", "2085-9", "4548-4", "2160-0", "33914-3",
];

/// A deterministic pseudo-random number (SplitMix64) of `seed`.
pub fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn family(i: usize) -> String {
    format!("Fam{:03}son", mix(i as u64) as usize % FAMILIES)
}

pub fn patient(i: usize) -> Value {
    let r = mix(i as u64 ^ 0xabc);
    json!({"resourceType": "Patient", "id": format!("p{i}"),
           "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": format!("MRN{i:08}")}],
           "name": [{"family": family(i), "given": [format!("Given{}", r % 997)]}],
           "gender": if r.is_multiple_of(2) { "female" } else { "male" },
           "birthDate": format!("{}-{:02}-{:02}", 1930 + r % 90, 1 + (r >> 8) % 12, 1 + (r >> 16) % 28),
           "address": [{"city": format!("City{}", (r >> 24) % 300), "state": "MA", "postalCode": format!("0{:04}", (r >> 32) % 10000)}]})
}

pub fn day(seed: u64) -> (u64, u64, u64) {
    (2015 + seed % 10, 1 + (seed >> 8) % 12, 1 + (seed >> 16) % 28)
}

pub fn encounter(i: usize, j: usize) -> Value {
    let (y, m, d) = day(mix((i * 1000 + j) as u64));
    json!({"resourceType": "Encounter", "id": format!("e{i}-{j}"), "status": "finished",
           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
           "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003"}]}],
           "subject": {"reference": format!("Patient/p{i}")},
           "period": {"start": format!("{y}-{m:02}-{d:02}T09:00:00Z"), "end": format!("{y}-{m:02}-{d:02}T09:30:00Z")}})
}

pub fn observation(i: usize, j: usize) -> Value {
    let r = mix((i * 100_000 + j) as u64 ^ 0x5eed);
    // A skewed code distribution: the first codes are far more common.
    let code = CODES[((r % 1000) as f64 / 1000.0).powi(2).mul_add(CODES.len() as f64, 0.0) as usize % CODES.len()];
    let (y, m, d) = day(r >> 3);
    let lab = r.is_multiple_of(3);
    json!({"resourceType": "Observation", "id": format!("o{i}-{j}"), "status": "final",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": if lab { "laboratory" } else { "vital-signs" }}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
           "subject": {"reference": format!("Patient/p{i}")},
           "encounter": {"reference": format!("Encounter/e{i}-{}", j % ENCOUNTERS)},
           "effectiveDateTime": format!("{y}-{m:02}-{d:02}T{:02}:{:02}:00Z", (r >> 20) % 24, (r >> 28) % 60),
           "valueQuantity": {"value": (r >> 36) % 2000, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}})
}

pub fn resources_of(i: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(1 + ENCOUNTERS + OBSERVATIONS);
    out.push(patient(i));
    out.extend((0..ENCOUNTERS).map(|j| encounter(i, j)));
    out.extend((0..OBSERVATIONS).map(|j| observation(i, j)));
    out
}
