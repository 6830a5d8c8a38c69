//! The task functions of the bulk job state machines on the sample events of `events/*-plan`,
//! `events/*-chunk` and `events/*-finalize` (placeholder ids replaced by a real job's), through
//! the very service the functions run (`fhirlake_lambda::job_step_service`), over the memory
//! adapters: a whole import and a whole export as Step Functions would drive them (plan, every
//! item of the chunk list, finalize), a caught error recorded as the job's failure, and events
//! that are not the step's input refused as `fhirlake.InvalidTask`.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use common::{Event, EVENTS_DATASTORE};
use fhirlake_core::datastores::CreateFhirDatastoreRequest;
use fhirlake_core::jobs::{
    ChunkTask, DescribeJobRequest, InputDataConfig, JobTask, OutputDataConfig, S3Configuration, StartFhirExportJobRequest,
    StartFhirImportJobRequest,
};
use fhirlake_core::{Backends, ServiceConfig, Services};
use fhirlake_lambda::{job_step_service, JobStep, JobStepContext, StepError, INVALID_TASK, STEP_FAILED};
use fhirlake_ports::memory::{MemoryItemTable, MemoryKeyService, MemoryObjectStore};
use fhirlake_ports::{MemoryBuckets, ObjectStore, RandomIds, StorageResult, SystemClock, Workflows};
use lambda_http::tower::ServiceExt;
use lambda_http::{Context, LambdaEvent};
use serde_json::{json, Value};

/// The job id the sample events carry.
const EVENTS_JOB: &str = "5f0c8a3e9b7d4c21a6e0f3b2d1c49a87";
const ROLE: &str = "arn:aws:iam::123456789012:role/healthlake-jobs";
const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/0d1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7";
const DEPLOYMENT_BUCKET: &str = "fhirlake-data-bucket";
const PREFIX: &str = "deployment";

/// Records the workflows started (Step Functions' place).
#[derive(Default)]
struct Started(Mutex<Vec<(String, String, String)>>);

#[async_trait]
impl Workflows for Started {
    async fn start(&self, workflow: &str, name: &str, input: &str) -> StorageResult<()> {
        self.0.lock().unwrap().push((workflow.to_string(), name.to_string(), input.to_string()));
        Ok(())
    }
}

struct Fixture {
    services: Services,
    objects: Arc<MemoryObjectStore>,
    buckets: Arc<MemoryBuckets>,
    started: Arc<Started>,
    context: Arc<JobStepContext>,
    datastore_id: String,
}

async fn fixture() -> Fixture {
    let objects = Arc::new(MemoryObjectStore::new());
    let buckets = Arc::new(MemoryBuckets::new());
    let backends = Backends {
        table: Arc::new(MemoryItemTable::new()),
        objects: objects.clone(),
        keys: Arc::new(MemoryKeyService::new()),
        buckets: buckets.clone(),
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    };
    let started = Arc::new(Started::default());
    let config = ServiceConfig::new("us-east-1", "123456789012", "https://fhir.example.org");
    let services = Services::with_workflows(config, backends, started.clone());
    let datastore_id = services.datastores.create(CreateFhirDatastoreRequest::r4()).await.unwrap().datastore_id;
    let context = Arc::new(JobStepContext::new(services.jobs.steps().clone(), DEPLOYMENT_BUCKET, Some(PREFIX)));
    Fixture { services, objects, buckets, started, context, datastore_id }
}

fn output(uri: &str) -> OutputDataConfig {
    OutputDataConfig { s3_configuration: Some(S3Configuration { s3_uri: uri.into(), kms_key_id: KEY.into() }) }
}

fn patient(id: &str, family: &str) -> String {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]}).to_string()
}

impl Fixture {
    /// Invokes `step` with `payload` as the Lambda runtime would.
    async fn invoke(&self, step: JobStep, payload: Value) -> Result<Value, StepError> {
        job_step_service(self.context.clone(), step).oneshot(LambdaEvent::new(payload, Context::default())).await
    }

    /// A sample event with this fixture's datastore and `job_id`.
    fn event(&self, name: &str, job_id: &str) -> Value {
        Event::load(name).with_datastore(&self.datastore_id).replace(EVENTS_JOB, job_id).0
    }

    async fn start_import(&self) -> String {
        let input = self.buckets.create("input-bucket");
        let lines = [patient("p1", "Chalmers"), patient("p2", "Windsor"), patient("p3", "Levin")].join("\n");
        input.put("input/patients.ndjson", Bytes::from(lines)).await.unwrap();
        self.buckets.create("output-bucket");
        let request = StartFhirImportJobRequest {
            job_name: Some("events".into()),
            input_data_config: InputDataConfig { s3_uri: Some("s3://input-bucket/input/".into()) },
            job_output_data_config: output("s3://output-bucket/results"),
            datastore_id: self.datastore_id.clone(),
            data_access_role_arn: ROLE.into(),
            client_token: None,
            validation_level: None,
            profile_id: None,
            input_format: None,
        };
        let job_id = self.services.jobs.start_import(request).await.unwrap().job_id;
        let (workflow, name, input) = self.started.0.lock().unwrap().last().cloned().unwrap();
        assert_eq!((workflow.as_str(), name.as_str()), ("import", job_id.as_str()));
        // The execution input is the plan step's event.
        let task: JobTask = serde_json::from_str(&input).unwrap();
        assert_eq!(serde_json::to_value(&task).unwrap(), self.event("import-plan/job-task.json", &job_id));
        job_id
    }

    /// Plan, then every item of the chunk list (as the Distributed Map's ItemReader reads it),
    /// then finalize: what the state machine does.
    async fn run(&self, kind: &str, job_id: &str) -> (Value, Vec<Value>, Value) {
        let (plan, chunk, finalize) = match kind {
            "import" => (JobStep::ImportPlan, JobStep::ImportChunk, JobStep::ImportFinalize),
            _ => (JobStep::ExportPlan, JobStep::ExportChunk, JobStep::ExportFinalize),
        };
        let planned = self.invoke(plan, self.event(&format!("{kind}-plan/job-task.json"), job_id)).await.expect("plan");
        let chunk_list_key = format!("jobs/{}/{job_id}/chunks.json", self.datastore_id);
        assert_eq!(planned["chunkList"], json!({"Bucket": DEPLOYMENT_BUCKET, "Key": format!("{PREFIX}/{chunk_list_key}")}));
        let items: Vec<Value> = serde_json::from_slice(&self.objects.get(&chunk_list_key).await.unwrap()).unwrap();
        assert_eq!(planned["chunks"], json!(items.len()));
        let mut results = Vec::new();
        for item in &items {
            results.push(self.invoke(chunk, item.clone()).await.expect("chunk"));
        }
        // A retried item (Step Functions retries a step whose reply it lost) changes nothing.
        if let Some(first) = items.first() {
            assert_eq!(self.invoke(chunk, first.clone()).await.expect("chunk again"), results[0]);
        }
        let finalized = self.invoke(finalize, self.event(&format!("{kind}-finalize/job-task.json"), job_id)).await.expect("finalize");
        (planned, items, finalized)
    }

    async fn import_status(&self, job_id: &str) -> Value {
        let request = DescribeJobRequest { datastore_id: self.datastore_id.clone(), job_id: job_id.into() };
        serde_json::to_value(self.services.jobs.describe_import(request).await.unwrap().import_job_properties).unwrap()
    }
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn an_import_runs_plan_chunks_and_finalize_from_the_sample_events() {
    let f = fixture().await;
    let job_id = f.start_import().await;
    let (planned, items, finalized) = f.run("import", &job_id).await;
    assert!(planned["chunks"].as_u64().unwrap() >= 1);

    // The sample chunk event has the shape of a planned chunk.
    let sample = f.event("import-chunk/chunk-task.json", &job_id);
    serde_json::from_value::<ChunkTask>(sample.clone()).expect("the sample chunk event is a chunk task");
    assert_eq!(keys(&sample), keys(&items[0]));
    assert_eq!(keys(&sample["chunk"]), keys(&items[0]["chunk"]));

    assert_eq!(finalized, json!({"datastoreId": f.datastore_id, "jobId": job_id, "kind": "import", "status": "COMPLETED"}));
    assert_eq!(f.import_status(&job_id).await["JobStatus"], "COMPLETED");
    // Finalize again (a retry): the job stays as it ended.
    let again = f.invoke(JobStep::ImportFinalize, f.event("import-finalize/job-task.json", &job_id)).await.unwrap();
    assert_eq!(again["status"], "COMPLETED");
}

#[tokio::test]
async fn an_export_runs_plan_chunks_and_finalize_from_the_sample_events() {
    let f = fixture().await;
    // Something to export: an import first.
    let import = f.start_import().await;
    f.run("import", &import).await;

    let request = StartFhirExportJobRequest {
        job_name: Some("events".into()),
        output_data_config: output("s3://output-bucket/export"),
        datastore_id: f.datastore_id.clone(),
        data_access_role_arn: ROLE.into(),
        client_token: None,
    };
    let job_id = f.services.jobs.start_export(request).await.unwrap().job_id;
    let (workflow, name, _) = f.started.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!((workflow.as_str(), name.as_str()), ("export", job_id.as_str()));

    let (_, items, finalized) = f.run("export", &job_id).await;
    let sample = f.event("export-chunk/chunk-task.json", &job_id);
    serde_json::from_value::<ChunkTask>(sample.clone()).expect("the sample chunk event is a chunk task");
    assert_eq!(keys(&sample["chunk"]), keys(&items[0]["chunk"]));
    assert!(items.iter().any(|item| item["chunk"]["resourceType"] == "Patient"));
    assert_eq!(finalized["status"], "COMPLETED");
    let request = DescribeJobRequest { datastore_id: f.datastore_id.clone(), job_id: job_id.clone() };
    let described = serde_json::to_value(f.services.jobs.describe_export(request).await.unwrap().export_job_properties).unwrap();
    assert_eq!(described["JobStatus"], "COMPLETED");
}

#[tokio::test]
async fn a_caught_error_fails_the_job_with_its_name_and_never_its_cause() {
    let f = fixture().await;
    let job_id = f.start_import().await;
    f.invoke(JobStep::ImportPlan, f.event("import-plan/job-task.json", &job_id)).await.expect("plan");

    let caught = f.event("import-finalize/caught-error.json", &job_id);
    let recorded = f.invoke(JobStep::ImportFinalize, caught.clone()).await.expect("record the failure");
    assert_eq!(recorded, json!({"datastoreId": f.datastore_id, "jobId": job_id, "kind": "import", "status": "FAILED"}));
    let described = f.import_status(&job_id).await;
    assert_eq!(described["JobStatus"], "FAILED");
    let message = described["Message"].as_str().expect("a message");
    assert!(message.contains("States.ExceedToleratedFailureThreshold"), "{message}");
    assert!(!message.contains("FHIRLAKE-CAUSE-MARKER"), "{message}");

    // Recording it again (a retried RecordFailure) keeps the first record.
    f.invoke(JobStep::ImportFinalize, caught).await.expect("record again");
    assert_eq!(f.import_status(&job_id).await["Message"], described["Message"]);
    // A chunk of a failed job does nothing.
    let chunk = f.invoke(JobStep::ImportChunk, f.event("import-chunk/chunk-task.json", &job_id)).await.expect("chunk");
    assert_eq!(chunk["imported"], 0);
}

#[tokio::test]
async fn the_export_finalize_sample_with_an_error_is_a_finalize_event() {
    let f = fixture().await;
    // The job does not exist: the step fails (retriably), after parsing the event.
    let error = f.invoke(JobStep::ExportFinalize, f.event("export-finalize/caught-error.json", EVENTS_JOB)).await.unwrap_err();
    assert_eq!(error.error_type, STEP_FAILED, "{error}");
    assert!(error.message.contains(EVENTS_JOB), "{error}");
    assert!(!error.message.contains("FHIRLAKE-CAUSE-MARKER"), "{error}");
}

#[tokio::test]
async fn events_that_are_not_the_steps_input_are_invalid_tasks() {
    let f = fixture().await;
    let import_task = f.event("import-plan/job-task.json", EVENTS_JOB);
    let import_chunk = f.event("import-chunk/chunk-task.json", EVENTS_JOB);
    let cases = [
        (JobStep::ExportPlan, import_task.clone()),
        (JobStep::ExportFinalize, import_task.clone()),
        (JobStep::ExportChunk, import_chunk.clone()),
        (JobStep::ImportChunk, import_task.clone()),
        (JobStep::ImportPlan, import_chunk.clone()),
        (JobStep::ImportPlan, json!({})),
        (JobStep::ImportFinalize, json!({"datastoreId": EVENTS_DATASTORE, "jobId": "x", "kind": "reindex"})),
        (
            JobStep::ImportChunk,
            json!({"datastoreId": EVENTS_DATASTORE, "jobId": "x", "chunk": {"kind": "import", "number": "secret value"}}),
        ),
    ];
    for (step, event) in cases {
        let error = f.invoke(step, event.clone()).await.unwrap_err();
        assert_eq!(error.error_type, INVALID_TASK, "{step:?} {event}");
        assert!(!error.message.contains("secret value"), "{error}");
    }
}
