//! Figures for the Lambda functions, printed (not a test):
//!
//! 1. **Handler path, in process**: CPU time per request of a FHIR read and of a search (501
//!    today) through exactly what a function does per event (parse the API Gateway v2 event
//!    JSON, `lambda_http`'s adapter, `fhirlake_lambda::http_service` with SigV4 verification,
//!    serialise the response JSON), over the memory adapters, on one thread.
//! 2. **Function binaries**: each built binary (`fhir-api`, `control-plane`, `authorizer`,
//!    `stream-projector`, the last fed a stream batch holding the real version item of a Patient) is
//!    started against a minimal Lambda Runtime API on 127.0.0.1 (`runtime_api.rs`) with moto
//!    as AWS (`fhirlake_aws::moto`): cold init (process start until it asks for its first
//!    event, including loading the access keys from Secrets Manager), the first invocation, and
//!    the process's CPU time per request over real SDK calls to moto. And the binary sizes.
//!
//! ```text
//! cargo build --release -p fhir-api -p control-plane -p authorizer -p stream-projector
//! cargo run --release -p fhirlake-lambda --example lambda_bench -- [--requests N] [--bin-dir DIR]
//! ```
//! (or `tests/bench/lambda`). `--bin-dir` defaults to the directory of this example's own
//! profile (`$CARGO_TARGET_DIR/release`).

#[path = "../../tests/common/mod.rs"]
mod common;
mod runtime_api;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fhirlake_aws::moto::{unique_name, MotoServer};
use fhirlake_aws::{AwsBackend, AwsSettings, SecretsManagerCredentials};
use fhirlake_lambda::settings::HttpSettings;
use fhirlake_lambda::HttpContext;
use lambda_http::tower::ServiceExt;
use lambda_http::{Context, LambdaEvent};
use runtime_api::{Outcome, RuntimeApi};

struct Args {
    requests: usize,
    bin_dir: PathBuf,
}

fn args() -> Args {
    let mut requests = 2000;
    let mut bin_dir = std::env::current_exe().ok().and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf)).unwrap_or_default();
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--requests" => requests = iter.next().and_then(|n| n.parse().ok()).expect("--requests takes a number"),
            "--bin-dir" => bin_dir = PathBuf::from(iter.next().expect("--bin-dir takes a directory")),
            other => panic!("unknown argument {other}; use --requests N or --bin-dir DIR"),
        }
    }
    Args { requests, bin_dir }
}

fn main() {
    let args = args();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!("machine: {cores} cores, {cpu}; this benchmark built as {profile}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(in_process(args.requests));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(binaries(&args.bin_dir, (args.requests / 10).max(50)));
}

/// CPU time this thread has used (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    Duration::from_nanos(text.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a cpu time"))
}

/// CPU time all threads of process `pid` have used.
fn process_cpu(pid: u32) -> Duration {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process is running").flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += Duration::from_nanos(text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0));
        }
    }
    total
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// What the runtime does with one event: parse, handle, serialise the response.
async fn handle_event(context: &Arc<HttpContext>, event: &str) -> Vec<u8> {
    let request: lambda_http::request::LambdaRequest = serde_json::from_str(event).expect("an event");
    let adapter = lambda_http::Adapter::from(fhirlake_lambda::http_service(context.clone()));
    let response = adapter.oneshot(LambdaEvent::new(request, Context::default())).await.expect("infallible");
    serde_json::to_vec(&response).expect("serialises")
}

async fn in_process(requests: usize) {
    println!("\n1. handler path in process (memory adapters, one thread, {requests} requests each, SigV4 verified)");
    let context = memory_context(sample_keys(), None);
    let created = invoke(&context, &Event::load("control-plane/create-datastore.json").signed()).await;
    let datastore = created.json()["DatastoreId"].as_str().expect("an id").to_string();
    let patient = invoke(&context, &Event::load("fhir-api/create-patient.json").with_datastore(&datastore).signed()).await;
    let id = patient.json()["id"].as_str().expect("an id").to_string();
    let cases = [
        ("read", Event::load("fhir-api/read-patient.json").with_datastore(&datastore).with_patient(&id).signed(), 200),
        ("search (501)", Event::load("fhir-api/search-patient.json").with_datastore(&datastore).signed(), 501),
    ];
    for (name, event, status) in cases {
        let json = event.to_json();
        assert_eq!(invoke_json(&context, &json).await.status, status, "{name}");
        for _ in 0..requests / 10 {
            handle_event(&context, &json).await;
        }
        let mut latencies = Vec::with_capacity(requests);
        let cpu_before = thread_cpu();
        for _ in 0..requests {
            let started = Instant::now();
            std::hint::black_box(handle_event(&context, &json).await);
            latencies.push(started.elapsed());
        }
        let cpu = thread_cpu() - cpu_before;
        latencies.sort();
        println!(
            "   {name:<13} cpu {:>7.1} µs/request   wall p50 {:>7.1} µs   p99 {:>7.1} µs",
            micros(cpu) / requests as f64,
            micros(percentile(&latencies, 0.5)),
            micros(percentile(&latencies, 0.99))
        );
    }
}

/// The environment of a function binary on this machine.
struct Deployment {
    environment: Vec<(&'static str, String)>,
    datastore: String,
    patient: String,
    table: String,
}

async fn deploy() -> Deployment {
    let server = MotoServer::shared();
    let sdk = server.sdk_config();
    let name = unique_name("fhirlake-bench");
    let aws = AwsSettings { table: name.clone(), bucket: name.clone(), object_prefix: None, kms_key: format!("alias/{name}") };
    AwsBackend::init(&server.clients(), &aws).await.expect("create the table, bucket and key in moto");
    let secret = unique_name("fhirlake-bench-keys");
    SecretsManagerCredentials::new(&sdk, &secret).store(ACCESS_KEY_ID, SECRET, None).await.expect("create the secret");

    let mut environment = server.child_env();
    environment.extend([
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench".to_string()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".to_string()),
        ("FHIRLAKE_ACCOUNT_ID", ACCOUNT_ID.to_string()),
        ("FHIRLAKE_AUTH_MODE", "healthlake".to_string()),
        ("FHIRLAKE_ACCESS_KEYS_SECRET", secret),
        ("FHIRLAKE_TABLE", aws.table.clone()),
        ("FHIRLAKE_BUCKET", aws.bucket.clone()),
        ("FHIRLAKE_KMS_KEY", aws.kms_key.clone()),
    ]);
    // The data the functions read, written through the same code in this process.
    let lookup = |name: &str| environment.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
    let settings = HttpSettings::from_lookup(lookup, aws.clone()).expect("settings");
    let context = Arc::new(HttpContext::from_settings(&settings, &sdk).await.expect("a context"));
    let created = invoke(&context, &Event::load("control-plane/create-datastore.json").signed()).await;
    let datastore = created.json()["DatastoreId"].as_str().expect("an id").to_string();
    let patient = invoke(&context, &Event::load("fhir-api/create-patient.json").with_datastore(&datastore).signed()).await;
    assert_eq!(patient.status, 201);
    let patient = patient.json()["id"].as_str().expect("an id").to_string();
    Deployment { environment, datastore, patient, table: aws.table }
}

/// A DynamoDB Streams batch of one record: the sample of `events/stream-projector/batch.json`
/// carrying the real first version item of the deployment's Patient (read from moto), so the
/// projector does all its work: datastore lookup, data-key unwrap, opening the body, extraction,
/// Parquet, the upload.
async fn projector_batch(deployment: &Deployment) -> Event {
    use aws_sdk_dynamodb::types::AttributeValue;
    use base64::Engine as _;
    let pk = format!("r#{}#Patient#{}", deployment.datastore, deployment.patient);
    let item = MotoServer::shared()
        .clients()
        .dynamodb
        .get_item()
        .table_name(&deployment.table)
        .key("pk", AttributeValue::S(pk.clone()))
        .key("sk", AttributeValue::S("v#000000000001".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("read the version item")
        .item
        .expect("the Patient's first version");
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s) | AttributeValue::N(s)) => s.clone(),
        other => panic!("version item attribute {name}: {other:?}"),
    };
    let Some(AttributeValue::B(body)) = item.get("body") else { panic!("the version item has no inline body") };
    let mut record = Event::load("stream-projector/batch.json").0["Records"][0].clone();
    record["dynamodb"]["Keys"]["pk"]["S"] = pk.clone().into();
    let image = &mut record["dynamodb"]["NewImage"];
    image["pk"]["S"] = pk.into();
    image["ts"]["N"] = text("ts").into();
    image["op"]["S"] = text("op").into();
    image["body"]["B"] = base64::engine::general_purpose::STANDARD.encode(body.as_ref()).into();
    Event(serde_json::json!({ "Records": [record] }))
}

async fn binaries(bin_dir: &Path, requests: usize) {
    println!("\n2. function binaries from {} (Runtime API emulation on 127.0.0.1, moto as AWS)", bin_dir.display());
    let deployment = deploy().await;
    let read = Event::load("fhir-api/read-patient.json").with_datastore(&deployment.datastore).with_patient(&deployment.patient).signed();
    let search = Event::load("fhir-api/search-patient.json").with_datastore(&deployment.datastore).signed();
    let describe = Event::load("control-plane/describe-datastore.json").with_datastore(&deployment.datastore).signed();
    let authorize = Event::load("authorizer/sigv4-read.json").signed();
    let batch = projector_batch(&deployment).await;
    let functions: [(&str, Vec<(&str, &Event)>); 4] = [
        ("fhir-api", vec![("read", &read), ("search (501)", &search)]),
        ("control-plane", vec![("DescribeFHIRDatastore", &describe)]),
        ("authorizer", vec![("authorize", &authorize)]),
        ("stream-projector", vec![("batch of 1 Patient", &batch)]),
    ];
    for (function, cases) in functions {
        let binary = bin_dir.join(function);
        let size = match std::fs::metadata(&binary) {
            Ok(meta) => meta.len(),
            Err(_) => {
                println!("   {function}: {} not found; build it first (cargo build --release -p {function})", binary.display());
                continue;
            }
        };
        run_binary(&binary, function, size, &deployment.environment, &cases, requests).await;
    }
}

async fn run_binary(
    binary: &Path,
    function: &str,
    size: u64,
    environment: &[(&'static str, String)],
    cases: &[(&str, &Event)],
    requests: usize,
) {
    let api = RuntimeApi::start().await.expect("the runtime api starts");
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(environment.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("FHIRLAKE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let ready = loop {
        if let Some(at) = api.first_next() {
            break at;
        }
        if let Some(error) = api.init_error() {
            panic!("{function} failed to initialise: {error}");
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{function} exited during init with {status}");
        }
        if started.elapsed() > Duration::from_secs(30) {
            panic!("{function} did not ask for an event within 30 s");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let init = ready - started;
    let first_started = Instant::now();
    let first = api.invoke(cases[0].1.to_json()).await;
    let first_invoke = first_started.elapsed();
    check(function, cases[0].0, &first);
    println!(
        "   {function:<16} binary {:>5.1} MB   cold init {:>6.1} ms   first invocation {:>6.1} ms",
        size as f64 / 1e6,
        init.as_secs_f64() * 1e3,
        first_invoke.as_secs_f64() * 1e3
    );
    for (name, event) in cases {
        let json = event.to_json();
        for _ in 0..requests / 10 {
            check(function, name, &api.invoke(json.clone()).await);
        }
        let cpu_before = process_cpu(child.id());
        let wall = Instant::now();
        for _ in 0..requests {
            check(function, name, &api.invoke(json.clone()).await);
        }
        let (cpu, wall) = (process_cpu(child.id()) - cpu_before, wall.elapsed());
        println!(
            "      {name:<22} function cpu {:>7.1} µs/request   wall {:>6.2} ms/request (moto answers the SDK calls), {requests} requests",
            micros(cpu) / requests as f64,
            wall.as_secs_f64() * 1e3 / requests as f64
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Panics unless the invocation succeeded with the status its case expects.
fn check(function: &str, case: &str, outcome: &Outcome) {
    let payload = match outcome {
        Outcome::Response(payload) => payload,
        Outcome::Error(error) => panic!("{function} {case}: the function reported an error: {}", String::from_utf8_lossy(error)),
    };
    let response: serde_json::Value = serde_json::from_slice(payload).expect("a json response");
    let ok = match function {
        "authorizer" => response["isAuthorized"] == true,
        "stream-projector" => response["batchItemFailures"] == serde_json::json!([]),
        _ if case.starts_with("search") => response["statusCode"] == 501,
        _ => response["statusCode"] == 200,
    };
    assert!(ok, "{function} {case}: unexpected response {response}");
}
