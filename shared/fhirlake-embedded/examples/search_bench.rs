//! FHIR search on the embedded store: load a synthetic population through the FHIR service (each
//! write validated, sealed and indexed), then time searches.
//!
//! ```text
//! cargo run --release -p fhirlake-embedded --example search_bench [-- --patients 5000 --writers 32 --repeats 200 --bulk 1]
//! ```
//!
//! `--bulk 1` loads each patient's resources with one `ResourceService::update_many` call (the
//! bulk import write path) instead of one update per resource.
//!
//! Each patient has 10 Encounters and 189 Observations (200 resources), so `--patients 5000`
//! is 1,000,000 resources. Prints the load rate (with the raw JSON parse rate of the same bodies
//! as the ceiling), bytes on disk and index entries per resource, then p50/p99 latency of:
//! a patient-scoped search, a population-wide token search's first page, a date-range search,
//! a chained search, `Patient/{id}/$everything`, and the counting rate of `_total=accurate`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fhirlake_core::datastores::{ActiveDatastore, CreateFhirDatastoreRequest};
use fhirlake_core::search::Scope;
use fhirlake_core::{Backends, ServiceConfig, Services};
use fhirlake_embedded::EmbeddedBackend;
use fhirlake_fhir::search::query::{parse, Handling};
use serde_json::Value;

mod synthetic;
use synthetic::*;

struct Args {
    patients: usize,
    writers: usize,
    repeats: usize,
    bulk: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { patients: 5000, writers: 32, repeats: 200, bulk: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = value.parse::<usize>().map_err(|_| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--patients" => args.patients = number.max(10),
            "--writers" => args.writers = number.max(1),
            "--repeats" => args.repeats = number.max(10),
            "--bulk" => args.bulk = number > 0,
            _ => return Err(format!("unknown flag {flag} (expected --patients, --writers, --repeats or --bulk)")),
        }
    }
    Ok(args)
}

/// Index entries a resource's version writes (the two history entries are counted apart).
fn index_entries(resource: &Value) -> usize {
    fhirlake_core::index::entry_count(resource["resourceType"].as_str().unwrap_or_default(), resource)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn timed<F, Fut>(repeats: usize, mut run: F) -> (Duration, Duration, usize)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times = Vec::with_capacity(repeats);
    let mut found = 0;
    for i in 0..repeats {
        let start = Instant::now();
        found += run(i).await;
        times.push(start.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), found / repeats)
}

async fn search(services: &Services, ds: &ActiveDatastore, resource_type: &str, query: &str) -> (usize, Option<u64>) {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let request = parse(Some(resource_type), &params, Handling::Strict).expect("a valid search");
    let count = request.result.count.unwrap_or(100);
    let page = services.search.search(ds, &request, &Scope::default(), count).await.expect("search");
    (page.matches.len(), page.total)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("search_bench: {message}");
            std::process::exit(2);
        }
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let embedded = EmbeddedBackend::open(dir.path()).expect("open the embedded store");
    let backends =
        Backends::with_system_clock(embedded.items.clone(), embedded.objects.clone(), embedded.keys.clone(), embedded.buckets.clone());
    let config = ServiceConfig::new("us-east-1", "123456789012", "http://localhost");
    let services = Arc::new(Services::new(config, backends));
    let created = services.datastores.create(CreateFhirDatastoreRequest::r4()).await.expect("create a datastore");
    let ds = Arc::new(services.datastores.active(&created.datastore_id).await.expect("an active datastore"));
    let total = args.patients * (1 + ENCOUNTERS + OBSERVATIONS);
    let mode = if args.bulk { "update_many per patient" } else { "one update per resource" };
    println!("machine: {} cores; {} patients, {total} resources, {} writers, {mode}", num_cpus(), args.patients, args.writers);

    // The ceiling: parsing the same bodies as JSON, and the index terms they give.
    let sample: Vec<Vec<u8>> = (0..args.patients.min(200)).flat_map(resources_of).map(|r| serde_json::to_vec(&r).expect("json")).collect();
    let start = Instant::now();
    for body in &sample {
        std::hint::black_box(serde_json::from_slice::<Value>(body).expect("json"));
    }
    let parse_rate = sample.len() as f64 / start.elapsed().as_secs_f64();
    let parsed: Vec<Value> = sample.iter().map(|b| serde_json::from_slice(b).expect("json")).collect();
    let entries: usize = parsed.iter().map(index_entries).sum();
    let body_bytes: usize = sample.iter().map(Vec::len).sum();

    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..args.writers {
        let (services, ds, next) = (services.clone(), ds.clone(), next.clone());
        let (patients, bulk) = (args.patients, args.bulk);
        writers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= patients {
                    return;
                }
                if bulk {
                    for outcome in services.resources.update_many(&ds, resources_of(i)).await {
                        outcome.expect("write");
                    }
                    continue;
                }
                for resource in resources_of(i) {
                    let t = resource["resourceType"].as_str().unwrap_or_default().to_string();
                    let id = resource["id"].as_str().unwrap_or_default().to_string();
                    services.resources.update(&ds, &t, &id, resource, None).await.expect("write");
                }
                if i > 0 && i.is_multiple_of(500) {
                    eprintln!("  loaded {} patients", i);
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("a writer");
    }
    let load = start.elapsed();
    let runs: u64 = std::fs::read_dir(dir.path().join("table.runs"))
        .map(|files| files.flatten().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    let disk = std::fs::metadata(dir.path().join("table.redb")).map(|m| m.len()).unwrap_or(0) + runs;
    println!(
        "load: {total} resources in {:.1} s = {:.0} resources/s (validated, sealed, indexed; raw JSON parse of the same bodies: {:.0} resources/s)",
        load.as_secs_f64(),
        total as f64 / load.as_secs_f64(),
        parse_rate
    );
    println!(
        "per resource: {:.1} index entries + 2 history entries; {:.0} bytes of JSON; {:.0} bytes on disk (table file and sorted runs, bodies included)",
        entries as f64 / parsed.len() as f64,
        body_bytes as f64 / sample.len() as f64,
        disk as f64 / total as f64
    );

    let r = args.repeats;
    let n = args.patients;
    let (s, d) = (&*services, &*ds);
    let report = |name: &str, (p50, p99, found): (Duration, Duration, usize)| {
        println!("{name:<52} p50 {:>8.2} ms  p99 {:>8.2} ms  ({found} matches per page)", millis(p50), millis(p99));
    };
    report(
        "patient-scoped: Observation?patient=…&_count=100",
        timed(
            r,
            |i| async move { search(s, d, "Observation", &format!("patient=Patient/p{}&_count=100", mix(i as u64) as usize % n)).await.0 },
        )
        .await,
    );
    report(
        "patient-scoped with code: …&code=8867-4",
        timed(r, |i| async move {
            search(s, d, "Observation", &format!("patient=Patient/p{}&code=8867-4", mix(i as u64) as usize % n)).await.0
        })
        .await,
    );
    report(
        "population token, first page: code=loinc|…&_count=100",
        timed(r, |i| async move { search(s, d, "Observation", &format!("code=http://loinc.org|{}&_count=100", CODES[i % 8])).await.0 })
            .await,
    );
    report(
        "date range (one day): Observation?date=…&_count=100",
        timed(r.min(50), |i| async move {
            let (y, m, dd) = day(mix(i as u64));
            search(s, d, "Observation", &format!("date=ge{y}-{m:02}-{dd:02}&date=lt{y}-{m:02}-{:02}&_count=100", dd + 1)).await.0
        })
        .await,
    );
    report(
        "chained: Observation?subject:Patient.family=…&_count=100",
        timed(
            r.min(50),
            |i| async move { search(s, d, "Observation", &format!("subject:Patient.family={}&_count=100", family(i))).await.0 },
        )
        .await,
    );
    report(
        "Patient/{id}/$everything (200 resources, one page)",
        timed(r.min(100), |i| async move {
            let id = format!("p{}", mix(i as u64) as usize % n);
            s.search.everything(d, &id, &[], None, 1000, None).await.expect("$everything").matches.len()
        })
        .await,
    );
    let start = Instant::now();
    let counted = search(s, d, "Observation", "code=http://loinc.org|8867-4&_total=accurate&_count=1").await.1.unwrap_or(0);
    let elapsed = start.elapsed();
    println!(
        "count: _total=accurate counted {counted} matches in {:.1} ms = {:.0} matches/s",
        millis(elapsed),
        counted as f64 / elapsed.as_secs_f64()
    );
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
