//! Bulk import and export on the embedded store: NDJSON files of a synthetic population are
//! imported by an import job (every line parsed, validated, sealed, indexed and written as a
//! version), then exported by a system export job; the raw NDJSON parse rate of the same
//! files is the ceiling.
//!
//! ```text
//! cargo run --release -p fhirlake-embedded --example jobs_bench [-- --patients 2500 --level structure-only --parallelism 2 --chunk-mib 8]
//! ```
//!
//! Each patient has 200 resources (see `synthetic/`), so `--patients 2500` is 500,000 resources.
//! Prints resources/s and MB/s of: parsing the files, the import job (plan to finalize), and
//! the export job; and the time index extraction alone takes per resource.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use fhirlake_core::datastores::CreateFhirDatastoreRequest;
use fhirlake_core::jobs::{
    InProcessRunner, InputDataConfig, JobKind, JobStatus, JobTask, OutputDataConfig, S3Configuration, StartFhirExportJobRequest,
    StartFhirImportJobRequest, ValidationLevel,
};
use fhirlake_core::{Backends, ServiceConfig, Services};
use fhirlake_embedded::EmbeddedBackend;
use fhirlake_ports::{StorageResult, Workflows};
use serde_json::Value;

mod synthetic;

#[global_allocator]
static ALLOCATOR: fhirlake_embedded::allocator::MiMalloc = fhirlake_embedded::allocator::MiMalloc;

const PATIENTS_PER_FILE: usize = 250;
const ROLE: &str = "arn:aws:iam::000000000000:role/bench";
const KEY: &str = "alias/fhirlake";

struct Args {
    patients: usize,
    level: ValidationLevel,
    parallelism: usize,
    chunk_mib: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { patients: 2500, level: ValidationLevel::StructureOnly, parallelism: 2, chunk_mib: 8 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|_| format!("{flag} needs a number"));
        match flag.as_str() {
            "--patients" => args.patients = number()?.max(1),
            "--parallelism" => args.parallelism = number()?.max(1),
            "--chunk-mib" => args.chunk_mib = number()?.max(1) as u64,
            "--level" => {
                args.level =
                    serde_json::from_value(Value::String(value.clone())).map_err(|_| "--level: strict, structure-only or minimal")?
            }
            _ => return Err(format!("unknown flag {flag} (expected --patients, --level, --parallelism or --chunk-mib)")),
        }
    }
    Ok(args)
}

/// Records started jobs; the benchmark runs them itself, timed.
#[derive(Default)]
struct Started(Mutex<Vec<JobTask>>);

#[async_trait]
impl Workflows for Started {
    async fn start(&self, _workflow: &str, _name: &str, input: &str) -> StorageResult<()> {
        self.0.lock().unwrap().push(serde_json::from_str(input).expect("a job task"));
        Ok(())
    }
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_size(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}

/// CPU seconds (user and system) the process has used so far, from `/proc/self/stat`; 0 where
/// that is unavailable.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |t| t.iter().filter_map(|f| f.parse::<f64>().ok()).sum());
    ticks / 100.0
}

#[tokio::main]
async fn main() {
    fhirlake_embedded::allocator::configure();
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let dir = tempfile::tempdir().expect("a temp dir");
    let embedded = EmbeddedBackend::open(dir.path()).expect("the embedded store");
    let input_dir = dir.path().join("s3/bench-input/synthetic");
    std::fs::create_dir_all(&input_dir).expect("input bucket");
    std::fs::create_dir_all(dir.path().join("s3/bench-output")).expect("output bucket");

    // The input: NDJSON files of 250 patients (50,000 resources) each.
    let mut files = Vec::new();
    let mut total_bytes = 0u64;
    let mut resources = 0usize;
    for (n, first) in (0..args.patients).step_by(PATIENTS_PER_FILE).enumerate() {
        let mut text = Vec::new();
        for i in first..(first + PATIENTS_PER_FILE).min(args.patients) {
            for resource in synthetic::resources_of(i) {
                serde_json::to_writer(&mut text, &resource).expect("json");
                text.push(b'\n');
                resources += 1;
            }
        }
        total_bytes += text.len() as u64;
        let path = input_dir.join(format!("part-{n:04}.ndjson"));
        std::fs::write(&path, &text).expect("write input");
        files.push(path);
    }
    let mb = total_bytes as f64 / 1e6;
    println!(
        "input: {resources} resources in {} files, {mb:.1} MB ({:.0} bytes/resource)",
        files.len(),
        total_bytes as f64 / resources as f64
    );

    // The ceiling: parsing every line of the same files, one thread.
    let started = Instant::now();
    let mut parsed = 0usize;
    for path in &files {
        let text = std::fs::read(path).expect("read input");
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let value: Value = serde_json::from_slice(line).expect("valid json");
            parsed += usize::from(value.is_object());
        }
    }
    let parse = started.elapsed().as_secs_f64();
    println!("raw NDJSON parse (1 thread): {:.0} resources/s, {:.0} MB/s", parsed as f64 / parse, mb / parse);

    // One step of the import on its own: the search values and index entries of a version
    // (the first file's resources, one thread).
    let sample: Vec<Value> = std::fs::read(&files[0])
        .expect("read input")
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| serde_json::from_slice(line).expect("valid json"))
        .collect();
    let started = Instant::now();
    let entries: usize = sample.iter().map(|r| fhirlake_core::index::entry_count(r["resourceType"].as_str().unwrap_or_default(), r)).sum();
    let extraction = started.elapsed().as_secs_f64();
    println!(
        "index extraction (1 thread): {:.1} µs/resource, {:.1} entries/resource",
        extraction * 1e6 / sample.len() as f64,
        entries as f64 / sample.len() as f64
    );
    let index_key = fhirlake_core::index::IndexKey::from_secret(&[7; 32]).expect("an index key");
    let started = Instant::now();
    let items: usize = sample
        .iter()
        .map(|r| {
            let (resource_type, id) = (r["resourceType"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default());
            fhirlake_core::index::entries(&index_key, "0123456789abcdef0123456789abcdef", resource_type, id, 1, "0123456789abcdef", r).len()
        })
        .sum();
    let building = started.elapsed().as_secs_f64();
    println!(
        "index entries (1 thread): {:.1} µs/resource, {:.1} entries/resource",
        building * 1e6 / sample.len() as f64,
        items as f64 / sample.len() as f64
    );

    let backends =
        Backends::with_system_clock(embedded.items.clone(), embedded.objects.clone(), embedded.keys.clone(), embedded.buckets.clone());
    let started_jobs = Arc::new(Started::default());
    let config = ServiceConfig::new("us-east-1", "000000000000", "http://127.0.0.1:8080")
        .with_job_chunk_bytes(args.chunk_mib * 1024 * 1024)
        .with_job_parallelism(args.parallelism);
    let services = Services::with_workflows(config, backends, started_jobs.clone());
    let ds = services.datastores.create(CreateFhirDatastoreRequest::r4()).await.expect("datastore");
    let ds = services.datastores.active(&ds.datastore_id).await.expect("active");
    let runner = InProcessRunner::new(services.jobs.steps().clone(), args.parallelism);
    let output = |uri: &str| OutputDataConfig { s3_configuration: Some(S3Configuration { s3_uri: uri.into(), kms_key_id: KEY.into() }) };

    let request = StartFhirImportJobRequest {
        job_name: Some("bench".into()),
        input_data_config: InputDataConfig { s3_uri: Some("s3://bench-input/synthetic/".into()) },
        job_output_data_config: output("s3://bench-output/import"),
        datastore_id: ds.id.clone(),
        data_access_role_arn: ROLE.into(),
        client_token: None,
        validation_level: Some(args.level),
        profile_id: None,
        input_format: None,
    };
    let job = services.jobs.start_import(request).await.expect("start import");
    let task = started_jobs.0.lock().unwrap().pop().expect("a started import");
    let (started, cpu) = (Instant::now(), cpu_seconds());
    runner.run(task).await;
    let (import, import_cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let record = services.jobs.record(JobKind::Import, &ds.id, &job.job_id).await.expect("import record");
    assert_eq!(record.status, JobStatus::Completed, "{:?}", record.message);
    let imported = record.totals.as_ref().map_or(0, |t| t.imported);
    assert_eq!(imported as usize, resources);
    println!(
        "import ({}, {} chunks, parallelism {}): {imported} resources in {import:.1} s: {:.0} resources/s, {:.1} MB/s",
        args.level.as_str(),
        record.plan.as_ref().map_or(0, |p| p.chunks),
        args.parallelism,
        imported as f64 / import,
        mb / import
    );
    println!("import CPU: {import_cpu:.1} s ({:.0} µs/resource over all threads)", import_cpu * 1e6 / imported as f64);
    println!(
        "on disk after import: {:.0} bytes/resource ({} sorted runs beside the B-tree)",
        dir_size(dir.path()) as f64 / resources as f64,
        embedded.items.runs()
    );
    // The runs the import wrote are still being merged in the background: that work is the
    // import's too, so it is timed, and the export starts on a settled store.
    let (settling, settle_cpu) = (Instant::now(), cpu_seconds());
    while embedded.items.merging() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (settled, settled_cpu) = (settling.elapsed().as_secs_f64(), cpu_seconds() - settle_cpu);
    println!(
        "merging after the import: {settled:.1} s, {settled_cpu:.1} s CPU ({} runs left); import including it: {:.0} resources/s, {:.0} µs/resource",
        embedded.items.runs(),
        imported as f64 / (import + settled),
        (import_cpu + settled_cpu) * 1e6 / imported as f64
    );

    let request = StartFhirExportJobRequest {
        job_name: Some("bench".into()),
        output_data_config: output("s3://bench-output/export"),
        datastore_id: ds.id.clone(),
        data_access_role_arn: ROLE.into(),
        client_token: None,
    };
    let job = services.jobs.start_export(request).await.expect("start export");
    let task = started_jobs.0.lock().unwrap().pop().expect("a started export");
    let started = Instant::now();
    runner.run(task).await;
    let export = started.elapsed().as_secs_f64();
    let record = services.jobs.record(JobKind::Export, &ds.id, &job.job_id).await.expect("export record");
    assert_eq!(record.status, JobStatus::Completed, "{:?}", record.message);
    let totals = record.totals.clone().unwrap_or_default();
    assert_eq!(totals.scanned as usize, resources);
    println!(
        "export ({} files): {} resources in {export:.1} s: {:.0} resources/s, {:.1} MB/s",
        record.exported.len(),
        totals.scanned,
        totals.scanned as f64 / export,
        totals.bytes as f64 / 1e6 / export
    );
}
