//! Prints what projecting costs: `cargo run --release -p fhirlake-projection --example projection_bench [N]`.
//!
//! For N synthetic Patients and N Observations (default 10,000 each): the rate of a plain
//! `serde_json` parse of the bodies, of extracting the rows (parse + every search parameter),
//! of encoding Parquet files of 100 rows (one stream batch) and of 10,000 rows, the bytes per
//! row of both, and the CPU time of the whole handler per stream batch of 100 records (datastore
//! lookup, AES-GCM opening, extraction, Parquet, upload to the memory object store), on one
//! thread.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::Duration;
use fhirlake_core::resources::{Method, StoredVersion};
use fhirlake_ports::memory::MemoryObjectStore;
use fhirlake_ports::{Item, ItemTable, Query};
use fhirlake_projection::{encode_parquet, project_version, schema_for, DynamoDbEvent, ProjectionRow, Projector};
use serde_json::{json, Value};
use support::{fixture, image, t0, Fixture};

const FAMILIES: [&str; 8] = ["Smith", "Müller", "García", "Nguyễn", "O'Brien", "Kowalski", "Søndergaard", "Chalmers"];
const GIVEN: [&str; 6] = ["Anna", "Peter", "José", "Zoë", "Li", "Amélie"];
const LOINC: [(&str, &str, &str); 4] = [
    ("8867-4", "/min", "Heart rate"),
    ("29463-7", "kg", "Body weight"),
    ("8480-6", "mm[Hg]", "Systolic blood pressure"),
    ("2339-0", "mg/dL", "Glucose"),
];

fn patient(i: usize) -> Value {
    json!({
        "resourceType": "Patient", "id": format!("p{i}"),
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": format!("MRN-{i:08}")}],
        "active": true,
        "name": [{"use": "official", "family": FAMILIES[i % FAMILIES.len()], "given": [GIVEN[i % GIVEN.len()], GIVEN[(i / 7) % GIVEN.len()]]}],
        "telecom": [{"system": "phone", "value": format!("555-{:04}", i % 10_000), "use": "home"}],
        "gender": if i.is_multiple_of(2) { "female" } else { "male" },
        "birthDate": format!("{}-{:02}-{:02}", 1940 + i % 70, 1 + i % 12, 1 + i % 28),
        "address": [{"line": [format!("{} Main Street", i % 999)], "city": "Springfield", "postalCode": format!("{:05}", i % 99_999), "country": "US"}],
        "managingOrganization": {"reference": "Organization/org-1"}
    })
}

fn observation(i: usize) -> Value {
    let (code, unit, display) = LOINC[i % LOINC.len()];
    json!({
        "resourceType": "Observation", "id": format!("o{i}"), "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
        "subject": {"reference": format!("Patient/p{}", i / 3)},
        "encounter": {"reference": format!("Encounter/e{}", i / 5)},
        "effectiveDateTime": format!("2024-05-{:02}T{:02}:{:02}:00+02:00", 1 + i % 28, i % 24, i % 60),
        "issued": "2024-05-30T10:00:00.000Z",
        "performer": [{"reference": "Practitioner/pr-1"}],
        "valueQuantity": {"value": 40.0 + (i % 800) as f64 / 10.0, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    })
}

/// CPU time of the calling thread, in nanoseconds (Linux).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn rate(count: usize, seconds: f64) -> String {
    format!("{:>10.0}/s", count as f64 / seconds)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("unknown").trim().to_string();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {model}")
}

fn stored(resource_type: &str, i: usize, body: &Bytes) -> StoredVersion {
    StoredVersion {
        resource_type: resource_type.into(),
        id: format!("{}{i}", &resource_type[..1].to_lowercase()),
        version: 1,
        last_updated: t0(),
        method: Method::CreateByUpdate,
        body: Some(body.clone()),
        write_token: None,
        source: None,
    }
}

fn bench_type(resource_type: &str, bodies: &[Bytes]) {
    let schema = schema_for(resource_type).unwrap_or_else(|| panic!("{resource_type} schema"));
    let bytes: usize = bodies.iter().map(Bytes::len).sum();

    let start = Instant::now();
    let mut parsed = 0usize;
    for body in bodies {
        let value: Value = serde_json::from_slice(body).expect("json");
        parsed += usize::from(value.is_object());
    }
    let parse = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let rows: Vec<ProjectionRow> =
        bodies.iter().enumerate().map(|(i, body)| project_version(schema, &stored(resource_type, i, body)).expect("a row")).collect();
    let extract = start.elapsed().as_secs_f64();
    let values: usize = rows.iter().map(|r| r.values.iter().flatten().map(Vec::len).sum::<usize>()).sum();

    let encode_in = |per_file: usize| {
        let start = Instant::now();
        let mut out = 0usize;
        for chunk in rows.chunks(per_file) {
            out += encode_parquet(schema, chunk).expect("parquet").len();
        }
        (start.elapsed().as_secs_f64(), out)
    };
    let (small, small_bytes) = encode_in(100);
    let (large, large_bytes) = encode_in(10_000);

    let n = bodies.len();
    println!(
        "{resource_type}: {n} bodies, {:.0} B/body JSON, {} columns ({} parameters), {:.1} values/row",
        bytes as f64 / n as f64,
        schema.arrow.fields().len(),
        schema.params.len(),
        values as f64 / n as f64
    );
    assert_eq!(parsed, n);
    println!("  serde_json parse only      {}  ({:.0} MB/s)", rate(n, parse), bytes as f64 / parse / 1e6);
    println!("  parse + extract rows       {}  ({:.1}x the parse time)", rate(n, extract), extract / parse);
    println!("  parquet, 100 rows/file     {}  {:>7.0} B/row", rate(n, small), small_bytes as f64 / n as f64);
    println!("  parquet, 10,000 rows/file  {}  {:>7.0} B/row", rate(n, large), large_bytes as f64 / n as f64);
}

async fn bench_batches(n: usize) {
    let Fixture { services, table, clock, ds, .. } = fixture().await;
    let mut keys = Vec::with_capacity(2 * n);
    for i in 0..n {
        services.resources.update(&ds, "Patient", &format!("p{i}"), patient(i), None).await.expect("put patient");
        services.resources.update(&ds, "Observation", &format!("o{i}"), observation(i), None).await.expect("put observation");
        keys.push(format!("r#{}#Patient#p{i}", ds.id));
        keys.push(format!("r#{}#Observation#o{i}", ds.id));
        clock.advance(Duration::milliseconds(1));
    }
    let mut items: Vec<Item> = Vec::with_capacity(keys.len());
    for pk in keys {
        items.extend(table.query(&Query::partition(pk, 10)).await.expect("query").items);
    }
    let events: Vec<DynamoDbEvent> = items
        .chunks(100)
        .enumerate()
        .map(|(b, chunk)| {
            let records: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let seq = format!("{}", 4_000_000_000_000_000_000_000_u128 + (b * 100 + i) as u128);
                    json!({"eventID": format!("e{seq}"), "eventName": "INSERT", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                           "dynamodb": {"Keys": {"pk": {"S": item.key.pk}, "sk": {"S": item.key.sk}}, "NewImage": image(item),
                                        "SequenceNumber": seq, "SizeBytes": 1000, "StreamViewType": "NEW_AND_OLD_IMAGES"}})
                })
                .collect();
            serde_json::from_value(json!({ "Records": records })).expect("event")
        })
        .collect();

    let output = Arc::new(MemoryObjectStore::new());
    let projector = Projector::new(services, output.clone());
    let (wall, cpu) = (Instant::now(), thread_cpu_ns());
    let mut rows = 0;
    for event in &events {
        let report = projector.project(event).await.expect("projected");
        assert!(report.retry_from.is_none() && report.skipped.is_empty());
        rows += report.rows();
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), (thread_cpu_ns() - cpu) as f64 / 1e9);
    let stored: usize = output.keys().len();
    println!(
        "Handler: {} batches of 100 records ({rows} rows, {stored} files): {:.2} ms CPU per batch ({:.1} ms wall), {} records",
        events.len(),
        cpu / events.len() as f64 * 1e3,
        wall / events.len() as f64 * 1e3,
        rate(rows, cpu).trim()
    );
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    println!("projection_bench: {n} Patients and {n} Observations; machine: {}", machine());
    let stamp = |mut v: Value| {
        let id = v["id"].as_str().unwrap_or_default().to_string();
        fhirlake_fhir::resource::stamp(&mut v, &id, 1, t0());
        Bytes::from(serde_json::to_vec(&v).expect("json"))
    };
    let patients: Vec<Bytes> = (0..n).map(|i| stamp(patient(i))).collect();
    let observations: Vec<Bytes> = (0..n).map(|i| stamp(observation(i))).collect();
    // The schemas are built once per process, lazily per type: here all of them at once.
    let start = Instant::now();
    let types = fhirlake_fhir::registry::resource_types();
    let columns: usize = types.iter().filter_map(|t| schema_for(t)).map(|s| s.params.len()).sum();
    println!(
        "Schemas of all {} resource types ({columns} parameter columns) built in {:.1} ms",
        types.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    bench_type("Patient", &patients);
    bench_type("Observation", &observations);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(bench_batches(n.min(5_000)));
}
