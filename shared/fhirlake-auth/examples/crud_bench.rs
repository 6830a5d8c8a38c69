//! Create/read throughput and latency of a running fhirlake over loopback, with every request
//! SigV4-signed by [`fhirlake_auth::Signer`] as a HealthLake client would sign it.
//!
//! ```text
//! cargo run --release -p fhirlake-auth --example crud_bench -- \
//!     --url http://127.0.0.1:8080 --count 5000 --concurrency 16
//! ```
//!
//! Credentials come from `--access-key`/`--secret-key` or `FHIRLAKE_ACCESS_KEY_ID` /
//! `FHIRLAKE_SECRET_ACCESS_KEY`. Without `--endpoint` a datastore is created through the control
//! plane first. Prints creates/s, reads/s, p50/p99 latency, and how fast `serde_json` alone
//! parses the same bodies (the ceiling for a server that parses every body once). The run is
//! bounded by `--count` requests per phase and `--max-seconds` overall.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use fhirlake_auth::{Credentials, HttpRequest, Payload, Signer};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    url: String,
    endpoint: Option<String>,
    access_key: String,
    secret_key: String,
    region: String,
    count: usize,
    concurrency: usize,
    max_seconds: u64,
}

impl Options {
    fn parse() -> Result<Self, Error> {
        let mut o = Options {
            url: "http://127.0.0.1:8080".into(),
            endpoint: None,
            access_key: std::env::var("FHIRLAKE_ACCESS_KEY_ID").unwrap_or_default(),
            secret_key: std::env::var("FHIRLAKE_SECRET_ACCESS_KEY").unwrap_or_default(),
            region: "us-east-1".into(),
            count: 2000,
            concurrency: 16,
            max_seconds: 300,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--url" => o.url = value()?,
                "--endpoint" => o.endpoint = Some(value()?),
                "--access-key" => o.access_key = value()?,
                "--secret-key" => o.secret_key = value()?,
                "--region" => o.region = value()?,
                "--count" => o.count = value()?.parse()?,
                "--concurrency" => o.concurrency = value()?.parse()?,
                "--max-seconds" => o.max_seconds = value()?.parse()?,
                "-h" | "--help" => {
                    println!(
                        "crud_bench --url URL [--endpoint DATASTORE_ENDPOINT] [--access-key K --secret-key S] \
                         [--region R] [--count N] [--concurrency C] [--max-seconds S]"
                    );
                    std::process::exit(0);
                }
                other => return Err(format!("unknown flag {other}").into()),
            }
        }
        if o.access_key.is_empty() || o.secret_key.is_empty() {
            return Err("credentials are required: --access-key/--secret-key or FHIRLAKE_ACCESS_KEY_ID/FHIRLAKE_SECRET_ACCESS_KEY".into());
        }
        if o.count == 0 || o.concurrency == 0 {
            return Err("--count and --concurrency must be positive".into());
        }
        Ok(o)
    }
}

/// `http://host:port/path` split into (authority, path without trailing slash).
fn split_url(url: &str) -> Result<(String, String), Error> {
    let rest = url.strip_prefix("http://").ok_or("only http:// urls are supported (loopback benchmark)")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((authority.to_string(), format!("/{}", path.trim_end_matches('/')).trim_end_matches('/').to_string()))
}

/// One keep-alive HTTP/1.1 connection that signs what it sends.
struct Client {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    signer: Arc<Signer>,
    credentials: Arc<Credentials>,
}

struct Reply {
    status: StatusCode,
    location: Option<String>,
    body: Bytes,
}

impl Client {
    async fn connect(authority: &str, signer: Arc<Signer>, credentials: Arc<Credentials>) -> Result<Self, Error> {
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Client { sender, authority: authority.to_string(), signer, credentials })
    }

    async fn send(&mut self, method: Method, path_and_query: &str, extra: &[(&str, &str)], body: Bytes) -> Result<Reply, Error> {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let mut headers: Vec<(String, String)> = vec![("host".into(), self.authority.clone())];
        headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let unsigned = HttpRequest::new(method.as_str(), path, query, &headers, Payload::Bytes(&body));
        let signed = self.signer.sign(&self.credentials, &unsigned, Utc::now())?;
        headers.extend(signed.headers());

        let mut builder = Request::builder().method(method).uri(path_and_query);
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        self.sender.ready().await?;
        let response = self.sender.send_request(builder.body(Full::new(body))?).await?;
        let status = response.status();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, location, body })
    }
}

async fn control(client: &mut Client, operation: &str, payload: Value) -> Result<Value, Error> {
    let target = format!("HealthLake.{operation}");
    let headers = [("content-type", "application/x-amz-json-1.0"), ("x-amz-target", target.as_str())];
    let reply = client.send(Method::POST, "/", &headers, Bytes::from(payload.to_string())).await?;
    if !reply.status.is_success() {
        return Err(format!("{operation} failed with {}: {}", reply.status, String::from_utf8_lossy(&reply.body)).into());
    }
    Ok(serde_json::from_slice(&reply.body)?)
}

async fn datastore_endpoint(client: &mut Client) -> Result<String, Error> {
    let created = control(client, "CreateFHIRDatastore", json!({"DatastoreTypeVersion": "R4", "DatastoreName": "crud-bench"})).await?;
    let id = created["DatastoreId"].as_str().ok_or("CreateFHIRDatastore returned no DatastoreId")?.to_string();
    for _ in 0..60 {
        let described = control(client, "DescribeFHIRDatastore", json!({ "DatastoreId": id })).await?;
        let props = &described["DatastoreProperties"];
        if props["DatastoreStatus"] == "ACTIVE" {
            return Ok(props["DatastoreEndpoint"].as_str().ok_or("no DatastoreEndpoint")?.to_string());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err("the datastore did not become ACTIVE within 30 s".into())
}

const GENDERS: [&str; 2] = ["female", "male"];

/// A realistic Patient of about 1.5 KB.
fn patient(i: usize) -> Bytes {
    let body = json!({
        "resourceType": "Patient",
        "identifier": [
            {"use": "usual", "system": "urn:oid:2.16.840.1.113883.2.4.6.3", "value": format!("MRN-{i:08}")},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": format!("999-{:02}-{:04}", i % 100, i % 10000)}
        ],
        "active": true,
        "name": [
            {"use": "official", "family": format!("Family{i}"), "given": ["Alexandra", "Marie"], "prefix": ["Ms."]},
            {"use": "nickname", "given": ["Alex"]}
        ],
        "telecom": [
            {"system": "phone", "value": "+1 555 0100", "use": "home"},
            {"system": "email", "value": format!("patient{i}@example.org"), "use": "work"}
        ],
        "gender": GENDERS[i % 2],
        "birthDate": format!("19{:02}-{:02}-{:02}", 30 + i % 70, 1 + i % 12, 1 + i % 28),
        "address": [{
            "use": "home", "type": "both", "line": [format!("{} Main Street", i % 1000), "Apartment 4B"],
            "city": "Springfield", "district": "Greene", "state": "IL", "postalCode": "62701", "country": "US",
            "period": {"start": "2010-03-23"}
        }],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "display": "Married"}]},
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US", "display": "English (United States)"}]}, "preferred": true}],
        "contact": [{
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
            "name": {"family": "Contact", "given": ["Chris"]},
            "telecom": [{"system": "phone", "value": "+1 555 0199"}]
        }]
    });
    Bytes::from(body.to_string())
}

#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Phase {
    fn report(&mut self, name: &str) {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        let pct = |p: f64| self.latencies.get(((n as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default();
        println!(
            "{name:<7} {n:>7} ok {:>5} errors {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            self.errors,
            n as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            self.latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
}

/// Runs `count` requests over `concurrency` connections; `make(i)` builds request `i`.
async fn run_phase<F>(
    opts: &Options,
    authority: &str,
    signer: &Arc<Signer>,
    credentials: &Arc<Credentials>,
    deadline: Instant,
    make: F,
) -> Result<(Phase, Vec<(usize, Reply)>), Error>
where
    F: Fn(usize) -> (Method, String, Bytes) + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let make = Arc::new(make);
    let started = Instant::now();
    let mut workers = Vec::with_capacity(opts.concurrency);
    for _ in 0..opts.concurrency {
        let mut client = Client::connect(authority, signer.clone(), credentials.clone()).await?;
        let (next, make, count) = (next.clone(), make.clone(), opts.count);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut replies = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() > deadline {
                    break;
                }
                let (method, path, body) = make(i);
                let headers = [("content-type", "application/fhir+json"), ("accept", "application/fhir+json")];
                let t = Instant::now();
                match client.send(method, &path, &headers, body).await {
                    Ok(reply) if reply.status.is_success() => {
                        latencies.push(t.elapsed());
                        replies.push((i, reply));
                    }
                    Ok(reply) => {
                        if errors == 0 {
                            eprintln!(
                                "request failed with {}: {}",
                                reply.status,
                                String::from_utf8_lossy(&reply.body).chars().take(300).collect::<String>()
                            );
                        }
                        errors += 1;
                    }
                    Err(e) => {
                        eprintln!("connection error: {e}");
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, replies, errors)
        }));
    }
    let mut phase = Phase::default();
    let mut replies = Vec::new();
    for worker in workers {
        let (latencies, mut r, errors) = worker.await?;
        phase.latencies.extend(latencies);
        replies.append(&mut r);
        phase.errors += errors;
    }
    phase.elapsed = started.elapsed();
    replies.sort_by_key(|(i, _)| *i);
    Ok((phase, replies))
}

/// Parses every body repeatedly for about a second on one thread: bodies/s and MB/s.
fn parse_rate(bodies: &[Bytes]) -> Result<(f64, f64), Error> {
    let started = Instant::now();
    let (mut parsed, mut bytes) = (0usize, 0usize);
    while started.elapsed() < Duration::from_secs(1) {
        for body in bodies {
            let value: Value = serde_json::from_slice(body)?;
            std::hint::black_box(&value);
            parsed += 1;
            bytes += body.len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((parsed as f64 / secs, bytes as f64 / secs / 1e6))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let opts = Options::parse()?;
    let deadline = Instant::now() + Duration::from_secs(opts.max_seconds);
    let signer = Arc::new(Signer::new(opts.region.clone()));
    let credentials = Arc::new(Credentials::new(opts.access_key.clone(), opts.secret_key.clone()));
    let (authority, _) = split_url(&opts.url)?;

    let endpoint = match &opts.endpoint {
        Some(endpoint) => endpoint.clone(),
        None => {
            let mut client = Client::connect(&authority, signer.clone(), credentials.clone()).await?;
            datastore_endpoint(&mut client).await?
        }
    };
    let (data_authority, base) = split_url(&endpoint)?;
    println!("endpoint {endpoint}  count {}  concurrency {}", opts.count, opts.concurrency);

    let create_base = base.clone();
    let (mut creates, created) = run_phase(&opts, &data_authority, &signer, &credentials, deadline, move |i| {
        (Method::POST, format!("{create_base}/Patient"), patient(i))
    })
    .await?;
    creates.report("create");

    let mut ids = Vec::with_capacity(created.len());
    for (_, reply) in &created {
        let id = match reply.location.as_deref().and_then(|l| l.split("/Patient/").nth(1)) {
            Some(rest) => rest.split('/').next().unwrap_or_default().to_string(),
            None => serde_json::from_slice::<Value>(&reply.body)?["id"].as_str().unwrap_or_default().to_string(),
        };
        ids.push(id);
    }
    if ids.is_empty() {
        return Err("no resource was created".into());
    }
    let ids = Arc::new(ids);
    let read_base = base.clone();
    let read_ids = ids.clone();
    let (mut reads, read) = run_phase(&opts, &data_authority, &signer, &credentials, deadline, move |i| {
        (Method::GET, format!("{read_base}/Patient/{}", read_ids[i % read_ids.len()]), Bytes::new())
    })
    .await?;
    reads.report("read");

    let bodies: Vec<Bytes> = read.into_iter().map(|(_, reply)| reply.body).take(1000).collect();
    if !bodies.is_empty() {
        let (per_sec, mb_per_sec) = parse_rate(&bodies)?;
        let avg = bodies.iter().map(Bytes::len).sum::<usize>() / bodies.len();
        println!("serde_json parse of the same bodies (avg {avg} B, one thread): {per_sec:.0} bodies/s, {mb_per_sec:.0} MB/s");
    }
    if creates.errors + reads.errors > 0 {
        return Err(format!("{} requests failed", creates.errors + reads.errors).into());
    }
    Ok(())
}
