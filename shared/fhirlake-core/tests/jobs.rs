//! Import and export jobs over the in-memory adapters: the control-plane contract, HealthLake's
//! output layout, validation levels, idempotent chunks (a chunk that fails mid-way is run again
//! and writes every line exactly once) and the export snapshot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration};
use fhirlake_core::datastores::{ActiveDatastore, CreateFhirDatastoreRequest};
use fhirlake_core::jobs::{
    DescribeJobRequest, ExportScope, ExportSpec, InProcessRunner, InputDataConfig, JobKind, JobStatus, JobTask, ListJobsRequest,
    OutputDataConfig, S3Configuration, StartFhirExportJobRequest, StartFhirImportJobRequest, ValidationLevel,
};
use fhirlake_core::resources::{HistoryQuery, HistoryScope};
use fhirlake_core::{Backends, CoreError, ServiceConfig, Services};
use fhirlake_ports::memory::{FixedClock, MemoryItemTable, MemoryKeyService, MemoryObjectStore};
use fhirlake_ports::{
    BatchWrite, Item, ItemTable, Key, MemoryBuckets, ObjectStore, Query, QueryPage, RandomIds, StorageError, StorageResult, Workflows,
    Write,
};
use serde_json::{json, Value};

const ROLE: &str = "arn:aws:iam::123456789012:role/healthlake-import";
const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/0d1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7";

/// Records the workflows started; the tests run them with their own runner.
#[derive(Default)]
struct Started(Mutex<Vec<JobTask>>);

#[async_trait]
impl Workflows for Started {
    async fn start(&self, _workflow: &str, _name: &str, input: &str) -> StorageResult<()> {
        self.0.lock().unwrap().push(serde_json::from_str(input).unwrap());
        Ok(())
    }
}

/// The memory table, with the n-th `write_each` call failing (once) when armed.
struct Flaky {
    inner: MemoryItemTable,
    fail_at: AtomicUsize,
    calls: AtomicUsize,
}

#[async_trait]
impl ItemTable for Flaky {
    async fn get(&self, key: &Key) -> StorageResult<Option<Item>> {
        self.inner.get(key).await
    }
    async fn put(&self, item: Item, condition: fhirlake_ports::Condition) -> StorageResult<()> {
        self.inner.put(item, condition).await
    }
    async fn delete(&self, key: &Key, condition: fhirlake_ports::Condition) -> StorageResult<()> {
        self.inner.delete(key, condition).await
    }
    async fn transact_write(&self, writes: Vec<Write>) -> StorageResult<()> {
        self.inner.transact_write(writes).await
    }
    async fn batch_write(&self, writes: Vec<BatchWrite>) -> StorageResult<()> {
        self.inner.batch_write(writes).await
    }
    async fn write_each(&self, writes: Vec<Write>) -> Vec<StorageResult<()>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call == self.fail_at.load(Ordering::SeqCst) {
            // Half the batch lands, then the "worker" dies: the rest fail.
            let half = writes.len() / 2;
            let mut out = self.inner.write_each(writes[..half].to_vec()).await;
            out.extend((half..writes.len()).map(|_| Err(StorageError::internal("worker killed"))));
            return out;
        }
        self.inner.write_each(writes).await
    }
    async fn query(&self, query: &Query) -> StorageResult<QueryPage> {
        self.inner.query(query).await
    }
    async fn batch_get(&self, keys: &[Key]) -> StorageResult<Vec<Item>> {
        self.inner.batch_get(keys).await
    }
}

struct Fixture {
    services: Services,
    table: Arc<Flaky>,
    buckets: Arc<MemoryBuckets>,
    clock: Arc<FixedClock>,
    started: Arc<Started>,
    ds: ActiveDatastore,
}

async fn fixture(chunk_bytes: u64) -> Fixture {
    let table = Arc::new(Flaky { inner: MemoryItemTable::new(), fail_at: AtomicUsize::new(0), calls: AtomicUsize::new(0) });
    let buckets = Arc::new(MemoryBuckets::new());
    let clock = Arc::new(FixedClock::new(DateTime::from_timestamp(1_700_000_000, 0).unwrap()));
    let backends = Backends {
        table: table.clone(),
        objects: Arc::new(MemoryObjectStore::new()),
        keys: Arc::new(MemoryKeyService::new()),
        buckets: buckets.clone(),
        clock: clock.clone(),
        ids: Arc::new(RandomIds),
    };
    let started = Arc::new(Started::default());
    let config = ServiceConfig::new("us-east-1", "123456789012", "http://localhost").with_job_chunk_bytes(chunk_bytes);
    let services = Services::with_workflows(config, backends, started.clone());
    let created = services.datastores.create(CreateFhirDatastoreRequest::r4()).await.unwrap();
    let ds = services.datastores.active(&created.datastore_id).await.unwrap();
    Fixture { services, table, buckets, clock, started, ds }
}

impl Fixture {
    fn import_request(&self, input: &str) -> StartFhirImportJobRequest {
        StartFhirImportJobRequest {
            job_name: Some("nightly".into()),
            input_data_config: InputDataConfig { s3_uri: Some(input.into()) },
            job_output_data_config: output("s3://output-bucket/results"),
            datastore_id: self.ds.id.clone(),
            data_access_role_arn: ROLE.into(),
            client_token: None,
            validation_level: None,
            profile_id: None,
            input_format: None,
        }
    }

    /// Starts the job and runs it to its end here.
    async fn run_import(&self, request: StartFhirImportJobRequest) -> (String, JobStatus) {
        let started = self.services.jobs.start_import(request).await.expect("start");
        assert_eq!(started.job_status, JobStatus::Submitted);
        self.run_started().await;
        let status = self.describe_import(&started.job_id).await["JobStatus"].as_str().unwrap().to_string();
        (started.job_id, serde_json::from_value(json!(status)).unwrap())
    }

    async fn run_started(&self) {
        let tasks: Vec<JobTask> = std::mem::take(&mut *self.started.0.lock().unwrap());
        let runner = InProcessRunner::new(self.services.jobs.steps().clone(), 2);
        for task in tasks {
            runner.run(task).await;
        }
    }

    async fn describe_import(&self, job_id: &str) -> Value {
        let request = DescribeJobRequest { datastore_id: self.ds.id.clone(), job_id: job_id.into() };
        serde_json::to_value(self.services.jobs.describe_import(request).await.unwrap().import_job_properties).unwrap()
    }

    async fn object(&self, bucket: &str, key: &str) -> String {
        let store = self.buckets.create(bucket);
        String::from_utf8(store.get(key).await.unwrap_or_else(|e| panic!("{key}: {e}")).to_vec()).unwrap()
    }

    fn folder(&self, kind: &str, job_id: &str) -> String {
        format!("results/{}-{kind}-{job_id}/", self.ds.id)
    }
}

fn output(uri: &str) -> OutputDataConfig {
    OutputDataConfig { s3_configuration: Some(S3Configuration { s3_uri: uri.into(), kms_key_id: KEY.into() }) }
}

fn patient_line(id: &str, family: &str) -> String {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}], "gender": "female"}).to_string()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn an_import_stores_good_lines_and_reports_bad_ones_in_healthlakes_layout() {
    let f = fixture(200).await;
    let input = f.buckets.create("input-bucket");
    f.buckets.create("output-bucket");
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&patient_line(&format!("p{i}"), "Chalmers"));
        text.push('\n');
    }
    text.push_str("{not json\n");
    text.push('\n');
    text.push_str(r#"{"resourceType":"Unicorn","id":"u1"}"#);
    text.push('\n');
    text.push_str(r#"{"resourceType":"Patient","id":"bad-gender","gender":"sometimes"}"#);
    text.push('\n');
    text.push_str(r#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#);
    input.put("drop/2024/part-1.ndjson", text.clone().into()).await.unwrap();
    input.put("drop/2024/part-2.ndjson", format!("{}\n", patient_line("p0", "Again")).into()).await.unwrap();
    input.put("drop/2024/readme.txt", "not input".into()).await.unwrap();

    let (job_id, status) = f.run_import(f.import_request("s3://input-bucket/drop/")).await;
    assert_eq!(status, JobStatus::CompletedWithErrors);
    let described = f.describe_import(&job_id).await;
    let report = &described["JobProgressReport"];
    assert_eq!(report["TotalNumberOfScannedFiles"], 2);
    assert_eq!(report["TotalNumberOfResourcesScanned"], 25);
    assert_eq!(report["TotalNumberOfResourcesImported"], 22);
    assert_eq!(report["TotalNumberOfResourcesWithCustomerError"], 3);
    assert_eq!(report["TotalNumberOfImportedFiles"], 2);
    assert_eq!(report["TotalNumberOfFilesReadWithCustomerError"], 1);
    assert!(described["EndTime"].is_number());

    let folder = f.folder("FHIR_IMPORT", &job_id);
    let manifest: Value = serde_json::from_str(&f.object("output-bucket", &format!("{folder}manifest.json")).await).unwrap();
    assert_eq!(manifest["numberOfResourcesScanned"], 25);
    assert_eq!(manifest["numberOfResourcesImportedSuccessfully"], 22);
    assert_eq!(manifest["numberOfResourcesWithCustomerError"], 3);
    assert_eq!(manifest["numberOfScannedFiles"], 2);
    assert_eq!(manifest["successOutput"]["successOutputS3Uri"], format!("s3://output-bucket/{folder}SUCCESS/"));

    // Line numbers are the input file's, across chunk boundaries (chunks of 200 bytes).
    let failures = lines(&f.object("output-bucket", &format!("{folder}FAILURE/2024/part-1.ndjson")).await);
    let failed: Vec<(u64, u64)> =
        failures.iter().map(|l| (l["lineId"].as_u64().unwrap(), l["UpdateResourceResponse"]["statusCode"].as_u64().unwrap())).collect();
    assert_eq!(failed, vec![(21, 400), (23, 400), (24, 400)]);
    assert_eq!(failures[0]["UpdateResourceResponse"]["jsonBlob"]["resourceType"], "OperationOutcome");
    assert_eq!(failures[0]["inputFile"], "s3://input-bucket/drop/2024/part-1.ndjson");
    let successes = lines(&f.object("output-bucket", &format!("{folder}SUCCESS/2024/part-1.ndjson")).await);
    let ids: Vec<u64> = successes.iter().map(|l| l["lineId"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=20).chain([25]).collect::<Vec<u64>>());
    assert_eq!(successes[3]["UpdateResourceResponse"]["jsonBlob"]["id"], "p3");
    let second = lines(&f.object("output-bucket", &format!("{folder}SUCCESS/2024/part-2.ndjson")).await);
    assert_eq!(second.len(), 1);
    // No staging is left, and no failure file for a file without failures.
    let out = f.buckets.create("output-bucket");
    let keys: Vec<String> = out.list(&folder, None, 100).await.unwrap().objects.into_iter().map(|o| o.key).collect();
    assert!(keys.iter().all(|k| !k.contains(".staging")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.ends_with("FAILURE/2024/part-2.ndjson")));

    // Ids are kept; p0 was written by both files (two versions); an id-less line got one.
    let p3 = f.services.resources.read(&f.ds, "Patient", "p3").await.unwrap();
    assert_eq!(p3.version, 1);
    let p0 = f.services.resources.read(&f.ds, "Patient", "p0").await.unwrap();
    assert_eq!(p0.version, 2);
    let obs_id = successes[20]["UpdateResourceResponse"]["jsonBlob"]["id"].as_str().unwrap().to_string();
    assert_eq!(f.services.resources.read(&f.ds, "Observation", &obs_id).await.unwrap().version, 1);
    assert!(matches!(f.services.resources.read(&f.ds, "Patient", "bad-gender").await, Err(CoreError::NotFound(_))));
}

#[tokio::test]
async fn validation_levels_decide_what_is_refused() {
    let f = fixture(1 << 20).await;
    let input = f.buckets.create("input-bucket");
    f.buckets.create("output-bucket");
    let text = [
        r#"{"resourceType":"Patient","id":"bad-code","gender":"sometimes"}"#,
        r#"{"resourceType":"Patient","id":"bad-element","favouriteColour":"blue"}"#,
        r#"{"resourceType":"Patient","id":"fine"}"#,
    ]
    .join("\n");
    input.put("in.ndjson", text.into()).await.unwrap();
    for (level, imported) in [(ValidationLevel::Strict, 1), (ValidationLevel::StructureOnly, 2), (ValidationLevel::Minimal, 3)] {
        let request = StartFhirImportJobRequest { validation_level: Some(level), ..f.import_request("s3://input-bucket/in.ndjson") };
        let (job_id, _) = f.run_import(request).await;
        let described = f.describe_import(&job_id).await;
        assert_eq!(described["JobProgressReport"]["TotalNumberOfResourcesImported"], imported, "{level:?}");
        assert_eq!(described["ValidationLevel"], level.as_str());
    }
}

#[tokio::test]
async fn a_chunk_killed_mid_write_is_run_again_and_writes_every_line_once() {
    let f = fixture(1 << 20).await;
    let input = f.buckets.create("input-bucket");
    f.buckets.create("output-bucket");
    let mut text = String::new();
    for i in 0..600 {
        text.push_str(&patient_line(&format!("k{i}"), "Kill"));
        text.push('\n');
    }
    // A duplicate id in the same chunk: two versions, in line order, even across the retry.
    text.push_str(&patient_line("k1", "Second"));
    text.push('\n');
    input.put("big.ndjson", text.into()).await.unwrap();
    // The chunk's first bulk write dies half-way: half its versions are stored, then the chunk fails.
    f.table.fail_at.store(f.table.calls.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    let (job_id, status) = f.run_import(f.import_request("s3://input-bucket/big.ndjson")).await;
    assert_eq!(status, JobStatus::Completed, "{}", f.describe_import(&job_id).await);
    assert!(f.table.calls.load(Ordering::SeqCst) >= f.table.fail_at.load(Ordering::SeqCst), "the fault was injected");
    let report = f.describe_import(&job_id).await["JobProgressReport"].clone();
    assert_eq!(report["TotalNumberOfResourcesScanned"], 601);
    assert_eq!(report["TotalNumberOfResourcesImported"], 601);
    for i in [0, 255, 256, 300, 400, 511, 599] {
        let v = f.services.resources.read(&f.ds, "Patient", &format!("k{i}")).await.unwrap();
        assert_eq!(v.version, 1, "k{i} was written once");
    }
    let k1 = f.services.resources.read(&f.ds, "Patient", "k1").await.unwrap();
    assert_eq!(k1.version, 2);
    let body: Value = serde_json::from_slice(k1.body.as_ref().unwrap()).unwrap();
    assert_eq!(body["name"][0]["family"], "Second");
    let history =
        f.services.resources.history(&f.ds, HistoryScope::Type("Patient"), &HistoryQuery { count: 1000, ..Default::default() }).await;
    assert_eq!(history.unwrap().entries.len(), 601);
    let successes = lines(&f.object("output-bucket", &format!("{}SUCCESS/big.ndjson", f.folder("FHIR_IMPORT", &job_id))).await);
    assert_eq!(successes.len(), 601);
}

#[tokio::test]
async fn bad_locations_fail_the_job_with_a_message() {
    let f = fixture(1 << 20).await;
    f.buckets.create("output-bucket");
    f.buckets.create("empty-bucket");
    for (uri, message) in
        [("s3://missing-bucket/x/", "input bucket missing-bucket does not exist"), ("s3://empty-bucket/none/", "holds no")]
    {
        let (job_id, status) = f.run_import(f.import_request(uri)).await;
        assert_eq!(status, JobStatus::Failed);
        let described = f.describe_import(&job_id).await;
        assert!(described["Message"].as_str().unwrap().contains(message), "{described}");
    }
    let input = f.buckets.create("input-bucket");
    input.put("a.ndjson", patient_line("a", "A").into()).await.unwrap();
    let request = StartFhirImportJobRequest {
        job_output_data_config: output("s3://no-such-output/x"),
        ..f.import_request("s3://input-bucket/a.ndjson")
    };
    let (job_id, status) = f.run_import(request).await;
    assert_eq!(status, JobStatus::Failed);
    assert!(f.describe_import(&job_id).await["Message"].as_str().unwrap().contains("output bucket"));
}

#[tokio::test]
async fn start_requests_are_validated_and_client_tokens_replay() {
    let f = fixture(1 << 20).await;
    let good = f.import_request("s3://input-bucket/in/");
    let invalid = [
        StartFhirImportJobRequest { input_data_config: InputDataConfig { s3_uri: Some("https://x/y".into()) }, ..good.clone() },
        StartFhirImportJobRequest { input_data_config: InputDataConfig { s3_uri: None }, ..good.clone() },
        StartFhirImportJobRequest { data_access_role_arn: "arn:aws:iam::123:user/x".into(), ..good.clone() },
        StartFhirImportJobRequest { job_output_data_config: OutputDataConfig { s3_configuration: None }, ..good.clone() },
        StartFhirImportJobRequest { job_name: Some("a".repeat(65)), ..good.clone() },
        StartFhirImportJobRequest { client_token: Some("under_score".into()), ..good.clone() },
        StartFhirImportJobRequest { profile_id: Some("p".into()), ..good.clone() },
    ];
    for request in invalid {
        assert!(matches!(f.services.jobs.start_import(request).await, Err(CoreError::Invalid(_))));
    }
    let unknown = StartFhirImportJobRequest { datastore_id: "0".repeat(32), ..good.clone() };
    assert!(matches!(f.services.jobs.start_import(unknown).await, Err(CoreError::NotFound(_))));

    let tokened = StartFhirImportJobRequest { client_token: Some("token-1".into()), ..good.clone() };
    let first = f.services.jobs.start_import(tokened.clone()).await.unwrap();
    let again = f.services.jobs.start_import(tokened.clone()).await.unwrap();
    assert_eq!(first.job_id, again.job_id);
    let changed = StartFhirImportJobRequest { job_name: Some("other".into()), ..tokened };
    assert!(matches!(f.services.jobs.start_import(changed).await, Err(CoreError::Invalid(m)) if m.contains("ClientToken")));
    assert_eq!(f.started.0.lock().unwrap().len(), 1, "a replay starts no second workflow");
}

#[tokio::test]
async fn jobs_are_listed_newest_first_with_filters_and_pages() {
    let f = fixture(1 << 20).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let name = if i % 2 == 0 { "even" } else { "odd" };
        let request = StartFhirImportJobRequest { job_name: Some(name.into()), ..f.import_request("s3://input-bucket/x/") };
        ids.push(f.services.jobs.start_import(request).await.unwrap().job_id);
        f.clock.advance(Duration::seconds(10));
    }
    let list = |request: ListJobsRequest| f.services.jobs.list_import(request);
    let all = ListJobsRequest {
        datastore_id: f.ds.id.clone(),
        next_token: None,
        max_results: Some(2),
        job_name: None,
        job_status: None,
        submitted_before: None,
        submitted_after: None,
    };
    let mut seen = Vec::new();
    let mut request = all.clone();
    loop {
        let page = list(request.clone()).await.unwrap();
        assert!(page.import_job_properties_list.len() <= 2);
        seen.extend(page.import_job_properties_list.into_iter().map(|j| j.job_id));
        match page.next_token {
            Some(token) => request.next_token = Some(token),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    let odd = list(ListJobsRequest { job_name: Some("odd".into()), max_results: None, ..all.clone() }).await.unwrap();
    assert_eq!(odd.import_job_properties_list.len(), 2);
    let submitted = list(ListJobsRequest { job_status: Some(JobStatus::Submitted), max_results: None, ..all.clone() }).await.unwrap();
    assert_eq!(submitted.import_job_properties_list.len(), 5);
    let early = DateTime::from_timestamp(1_700_000_015, 0).unwrap();
    let before = list(ListJobsRequest { submitted_before: Some(early), max_results: None, ..all.clone() }).await.unwrap();
    assert_eq!(before.import_job_properties_list.len(), 2);
    assert!(matches!(list(ListJobsRequest { next_token: Some("bogus".into()), ..all.clone() }).await, Err(CoreError::Invalid(_))));
    assert!(matches!(list(ListJobsRequest { max_results: Some(501), ..all.clone() }).await, Err(CoreError::Invalid(_))));
    let exports = f.services.jobs.list_export(all.clone()).await.unwrap();
    assert!(exports.export_job_properties_list.is_empty());
    let missing = DescribeJobRequest { datastore_id: f.ds.id.clone(), job_id: "f".repeat(32) };
    assert!(matches!(f.services.jobs.describe_import(missing).await, Err(CoreError::NotFound(_))));
}

#[tokio::test]
async fn an_export_is_a_snapshot_at_its_submit_time_in_healthlakes_layout() {
    let f = fixture(1 << 20).await;
    f.buckets.create("output-bucket");
    let r = &f.services.resources;
    for (id, family) in [("a1", "Before"), ("b2", "Doomed"), ("f3", "Kept")] {
        r.update(&f.ds, "Patient", id, json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]}), None).await.unwrap();
    }
    let obs = json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}});
    r.update(&f.ds, "Observation", "o1", obs, None).await.unwrap();
    f.clock.advance(Duration::seconds(1));
    let request = StartFhirExportJobRequest {
        job_name: None,
        output_data_config: output("s3://output-bucket/results/"),
        datastore_id: f.ds.id.clone(),
        data_access_role_arn: ROLE.into(),
        client_token: None,
    };
    let started = f.services.jobs.start_export(request).await.unwrap();
    // Writes after the snapshot instant.
    f.clock.advance(Duration::seconds(1));
    r.update(&f.ds, "Patient", "a1", json!({"resourceType": "Patient", "id": "a1", "name": [{"family": "After"}]}), None).await.unwrap();
    r.delete(&f.ds, "Patient", "b2", None).await.unwrap();
    r.update(&f.ds, "Patient", "c9", json!({"resourceType": "Patient", "id": "c9"}), None).await.unwrap();
    f.run_started().await;

    let record = f.services.jobs.record(JobKind::Export, &f.ds.id, &started.job_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Completed);
    let mut exported: Vec<(String, u64)> = record.exported.iter().map(|e| (e.resource_type.clone(), e.count)).collect();
    exported.sort();
    assert_eq!(exported, vec![("Observation".into(), 1), ("Patient".into(), 1), ("Patient".into(), 1), ("Patient".into(), 1)]);
    let folder = f.folder("FHIR_EXPORT", &started.job_id);
    let mut families = Vec::new();
    for file in record.exported.iter().filter(|e| e.resource_type == "Patient") {
        let key = file.url.strip_prefix("s3://output-bucket/").unwrap();
        assert!(key.starts_with(&format!("{folder}Patient/Patient-")), "{key}");
        for line in lines(&f.object("output-bucket", key).await) {
            families.push(line["name"][0]["family"].as_str().unwrap().to_string());
        }
    }
    families.sort();
    assert_eq!(families, vec!["Before", "Doomed", "Kept"]);
    let described = f
        .services
        .jobs
        .describe_export(DescribeJobRequest { datastore_id: f.ds.id.clone(), job_id: started.job_id.clone() })
        .await
        .unwrap();
    assert_eq!(described.export_job_properties.job_status, JobStatus::Completed);
}

fn export_request(f: &Fixture) -> StartFhirExportJobRequest {
    StartFhirExportJobRequest {
        job_name: Some("cohort".into()),
        output_data_config: output("s3://output-bucket/results/"),
        datastore_id: f.ds.id.clone(),
        data_access_role_arn: ROLE.into(),
        client_token: None,
    }
}

/// Every exported resource, as (type, id), and the lines' bodies by (type, id).
async fn exported(f: &Fixture, job_id: &str) -> (Vec<(String, String)>, std::collections::HashMap<(String, String), Value>) {
    let record = f.services.jobs.record(JobKind::Export, &f.ds.id, job_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Completed, "{record:?}");
    let mut ids = Vec::new();
    let mut bodies = std::collections::HashMap::new();
    for file in &record.exported {
        let key = file.url.strip_prefix("s3://output-bucket/").unwrap();
        let text = f.object("output-bucket", key).await;
        assert_eq!(text.lines().count() as u64, file.count);
        for line in lines(&text) {
            let k = (line["resourceType"].as_str().unwrap().to_string(), line["id"].as_str().unwrap().to_string());
            ids.push(k.clone());
            bodies.insert(k, line);
        }
    }
    ids.sort();
    (ids, bodies)
}

fn pair(t: &str, id: &str) -> (String, String) {
    (t.to_string(), id.to_string())
}

#[tokio::test]
async fn patient_and_group_exports_cover_compartments_once_and_filters_apply() {
    let f = fixture(1 << 20).await;
    f.buckets.create("output-bucket");
    let r = &f.services.resources;
    for id in ["p1", "p2", "p3"] {
        r.update(&f.ds, "Patient", id, json!({"resourceType": "Patient", "id": id}), None).await.unwrap();
    }
    let obs = |id: &str, subject: &str, status: &str| json!({"resourceType": "Observation", "id": id, "status": status, "code": {"text": "x"}, "subject": {"reference": subject}});
    r.update(&f.ds, "Observation", "o1", obs("o1", "Patient/p1", "final"), None).await.unwrap();
    r.update(&f.ds, "Observation", "o2", obs("o2", "Patient/p2", "amended"), None).await.unwrap();
    r.update(&f.ds, "Observation", "o3", obs("o3", "Patient/p3", "final"), None).await.unwrap();
    // In the compartments of p1 and p2 (subject and performer): exported once.
    let shared = json!({"resourceType": "Observation", "id": "shared", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/p2"}, "performer": [{"reference": "Patient/p1"}]});
    r.update(&f.ds, "Observation", "shared", shared, None).await.unwrap();
    r.update(&f.ds, "Practitioner", "dr", json!({"resourceType": "Practitioner", "id": "dr"}), None).await.unwrap();
    let group = json!({"resourceType": "Group", "id": "g", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/p2"}}, {"entity": {"reference": "Patient/p3"}}]});
    r.update(&f.ds, "Group", "g", group, None).await.unwrap();
    f.clock.advance(Duration::seconds(1));

    let patient_job =
        f.services.jobs.start_export_of(export_request(&f), ExportSpec { scope: ExportScope::Patient, ..ExportSpec::default() });
    let patient_job = patient_job.await.unwrap().job_id;
    // After the snapshot: o3 moves to p1, o1 is deleted; the export must not see either change.
    f.clock.advance(Duration::seconds(1));
    r.update(&f.ds, "Observation", "o3", obs("o3", "Patient/p1", "final"), None).await.unwrap();
    r.delete(&f.ds, "Observation", "o1", None).await.unwrap();
    f.run_started().await;
    let (ids, _) = exported(&f, &patient_job).await;
    let expected: Vec<(String, String)> = [
        ("Group", "g"),
        ("Observation", "o1"),
        ("Observation", "o2"),
        ("Observation", "o3"),
        ("Observation", "shared"),
        ("Patient", "p1"),
        ("Patient", "p2"),
        ("Patient", "p3"),
    ]
    .iter()
    .map(|(t, i)| pair(t, i))
    .collect();
    assert_eq!(ids, expected, "every patient and their compartments once each (Group.member puts g in two); no Practitioner");

    let group_spec = ExportSpec {
        scope: ExportScope::Group { id: "g".into() },
        types: vec!["Patient".into(), "Observation".into()],
        type_filters: vec!["Observation?status=final".into()],
        ..ExportSpec::default()
    };
    let group_job = f.services.jobs.start_export_of(export_request(&f), group_spec).await.unwrap().job_id;
    f.run_started().await;
    let (ids, bodies) = exported(&f, &group_job).await;
    let expected: Vec<(String, String)> =
        [("Observation", "shared"), ("Patient", "p2"), ("Patient", "p3")].iter().map(|(t, i)| pair(t, i)).collect();
    assert_eq!(ids, expected, "members only (o3 moved to p1 before this job), o2 is amended, no Group (left out by _type)");
    assert_eq!(bodies[&pair("Observation", "shared")]["performer"][0]["reference"], "Patient/p1");

    let missing = ExportSpec { scope: ExportScope::Group { id: "nope".into() }, ..ExportSpec::default() };
    assert!(matches!(f.services.jobs.start_export_of(export_request(&f), missing).await, Err(CoreError::NotFound(_))));
    let bad_filter = ExportSpec { type_filters: vec!["Observation?bogus=1".into()], ..ExportSpec::default() };
    assert!(matches!(f.services.jobs.start_export_of(export_request(&f), bad_filter).await, Err(CoreError::Invalid(_))));

    let since = ExportSpec { since: Some(DateTime::from_timestamp(1_700_000_001, 500_000_000).unwrap()), ..ExportSpec::default() };
    let since_job = f.services.jobs.start_export_of(export_request(&f), since).await.unwrap().job_id;
    f.run_started().await;
    let (ids, _) = exported(&f, &since_job).await;
    assert_eq!(ids, vec![pair("Observation", "o3")], "only what changed after _since (o1's deletion exports nothing)");
}

#[tokio::test]
async fn a_cancelled_export_ends_cancel_completed() {
    let f = fixture(1 << 20).await;
    f.buckets.create("output-bucket");
    f.services.resources.update(&f.ds, "Patient", "p1", json!({"resourceType": "Patient", "id": "p1"}), None).await.unwrap();
    let job = f.services.jobs.start_export(export_request(&f)).await.unwrap().job_id;
    let cancelled = f.services.jobs.cancel_export(&f.ds.id, &job).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::CancelSubmitted);
    f.run_started().await;
    let record = f.services.jobs.record(JobKind::Export, &f.ds.id, &job).await.unwrap();
    assert_eq!(record.status, JobStatus::CancelCompleted);
    assert!(record.exported.is_empty());
    assert!(matches!(f.services.jobs.cancel_export(&f.ds.id, &job).await, Err(CoreError::Conflict(_))));
    assert!(matches!(f.services.jobs.cancel_export(&f.ds.id, &"0".repeat(32)).await, Err(CoreError::NotFound(_))));
}
