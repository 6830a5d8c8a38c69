//! [`JobStepContext`]: the task functions of the bulk import and export state machines
//! (`statemachines/{import,export}.asl.json`), one function per step ([`JobStep`]), each a thin
//! wrapper of [`fhirlake_core::jobs::JobSteps`].
//!
//! ## Events and results
//!
//! | step | event | result |
//! |---|---|---|
//! | plan | the execution input, a `JobTask`: `{"datastoreId", "jobId", "kind"}` | `{"chunkList": {"Bucket", "Key"}, "chunks": n}`: the S3 object the Distributed Map's `ItemReader` reads (a JSON array of `ChunkTask`s) |
//! | chunk | one item of that array, a `ChunkTask`: `{"datastoreId", "jobId", "chunk": {"kind", ...}}` | the chunk's `ChunkResult` |
//! | finalize | a `JobTask`, optionally with `"error": {"Error", "Cause"}` (what a `Catch` put in `$.error`) | `{"datastoreId", "jobId", "kind", "status"}`: the job's final status |
//!
//! With `error`, finalize records the failure instead ([`JobSteps::fail`]) with a short message
//! made from the error's name only: the `Cause` may carry a step's internal detail, so only its
//! length is logged.
//!
//! ## Errors
//!
//! Steps are idempotent. A storage error becomes a Lambda error of type
//! [`STEP_FAILED`] (the state machine retries the step with backoff); an event that is not the
//! step's input is [`INVALID_TASK`]. Customer problems (a missing bucket, an unreadable file)
//! are not errors: the step fails the job and succeeds.

use std::sync::Arc;
use std::time::Instant;

use aws_config::SdkConfig;
use fhirlake_aws::{AwsBackend, AwsClients};
use fhirlake_core::jobs::{ChunkTask, JobKind, JobSteps, JobTask};
use fhirlake_core::{Backends, CoreError, ServiceConfig, Services};
use lambda_http::lambda_runtime::{self, Diagnostic, LambdaEvent};
use lambda_http::service_fn;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::settings::JobStepSettings;
use crate::LambdaError;

/// Lambda error type of a step that failed for a reason a retry may cure (storage errors).
pub const STEP_FAILED: &str = "fhirlake.StepFailed";
/// Lambda error type of an event that is not the step's input (never cured by a retry).
pub const INVALID_TASK: &str = "fhirlake.InvalidTask";

/// The six task functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStep {
    /// `import-plan`.
    ImportPlan,
    /// `import-chunk`.
    ImportChunk,
    /// `import-finalize`.
    ImportFinalize,
    /// `export-plan`.
    ExportPlan,
    /// `export-chunk`.
    ExportChunk,
    /// `export-finalize`.
    ExportFinalize,
}

impl JobStep {
    /// Every step.
    pub const ALL: [JobStep; 6] = [
        JobStep::ImportPlan,
        JobStep::ImportChunk,
        JobStep::ImportFinalize,
        JobStep::ExportPlan,
        JobStep::ExportChunk,
        JobStep::ExportFinalize,
    ];

    /// The job kind the step belongs to.
    pub fn kind(self) -> JobKind {
        match self {
            JobStep::ImportPlan | JobStep::ImportChunk | JobStep::ImportFinalize => JobKind::Import,
            JobStep::ExportPlan | JobStep::ExportChunk | JobStep::ExportFinalize => JobKind::Export,
        }
    }

    /// The function's name (its crate under `functions/` and its binary).
    pub fn function_name(self) -> &'static str {
        match self {
            JobStep::ImportPlan => "import-plan",
            JobStep::ImportChunk => "import-chunk",
            JobStep::ImportFinalize => "import-finalize",
            JobStep::ExportPlan => "export-plan",
            JobStep::ExportChunk => "export-chunk",
            JobStep::ExportFinalize => "export-finalize",
        }
    }

    fn phase(self) -> Phase {
        match self {
            JobStep::ImportPlan | JobStep::ExportPlan => Phase::Plan,
            JobStep::ImportChunk | JobStep::ExportChunk => Phase::Chunk,
            JobStep::ImportFinalize | JobStep::ExportFinalize => Phase::Finalize,
        }
    }
}

#[derive(Clone, Copy)]
enum Phase {
    Plan,
    Chunk,
    Finalize,
}

/// A step's failure, as the Lambda runtime reports it (`errorType`, `errorMessage`): the
/// `Error` and `Cause` a state machine's `Retry` and `Catch` see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct StepError {
    /// [`STEP_FAILED`] or [`INVALID_TASK`].
    pub error_type: &'static str,
    /// What failed (ids and kinds, never resource content).
    pub message: String,
}

impl StepError {
    fn invalid(message: impl Into<String>) -> Self {
        StepError { error_type: INVALID_TASK, message: message.into() }
    }

    fn failed(step: JobStep, error: &CoreError) -> Self {
        StepError { error_type: STEP_FAILED, message: format!("{} failed: {error}", step.function_name()) }
    }
}

impl From<StepError> for Diagnostic {
    fn from(error: StepError) -> Self {
        Diagnostic { error_type: error.error_type.to_string(), error_message: error.message }
    }
}

/// The plan step's result: where the chunk list is, in the shape of an `ItemReader`'s
/// `Parameters` (`Bucket`, `Key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanResult {
    /// The S3 object holding the JSON array of chunk tasks.
    pub chunk_list: S3Object,
    /// How many chunks it lists.
    pub chunks: u64,
}

/// An S3 object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct S3Object {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
}

/// The error a `Catch` with `ResultPath: $.error` adds to the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CaughtError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

/// The finalize step's event.
#[derive(Debug, Deserialize)]
struct FinalizeEvent {
    #[serde(flatten)]
    task: JobTask,
    #[serde(default)]
    error: Option<CaughtError>,
}

/// What a task function keeps between events: the job steps over the AWS adapters, and where
/// the deployment's objects live (for the chunk list's S3 location).
pub struct JobStepContext {
    steps: JobSteps,
    bucket: String,
    key_prefix: String,
}

impl JobStepContext {
    /// A context running `steps`, whose object store is the bucket `bucket` under
    /// `object_prefix` (as [`fhirlake_aws::AwsSettings`] names them).
    pub fn new(steps: JobSteps, bucket: &str, object_prefix: Option<&str>) -> Self {
        // The keys S3ObjectStore writes: the prefix, with a `/` added when it has none.
        let key_prefix = match object_prefix {
            Some(p) if !p.is_empty() && !p.ends_with('/') => format!("{p}/"),
            Some(p) => p.to_string(),
            None => String::new(),
        };
        JobStepContext { steps, bucket: bucket.to_string(), key_prefix }
    }

    /// The context the environment describes ([`JobStepSettings::from_env`]), over the AWS
    /// adapters, with the standard AWS configuration.
    ///
    /// Errors: [`LambdaError::Config`] naming a missing or invalid variable.
    pub async fn from_env() -> Result<Self, LambdaError> {
        let settings = JobStepSettings::from_env()?;
        Ok(Self::from_settings(&settings, &fhirlake_aws::load_sdk_config().await))
    }

    /// The context `settings` describe, reaching AWS through `sdk`. Makes no AWS call.
    pub fn from_settings(settings: &JobStepSettings, sdk: &SdkConfig) -> Self {
        let backend = AwsBackend::new(&AwsClients::from_sdk_config(sdk), &settings.aws);
        let backends = Backends::with_system_clock(backend.items, backend.objects, backend.keys, backend.buckets);
        let config =
            ServiceConfig::new(settings.region.clone(), settings.account_id.clone(), settings.public_url.clone().unwrap_or_default());
        // The steps start no workflow: the services' job starts are never called here.
        let services = Services::with_workflows(config, backends, Arc::new(NoWorkflows));
        Self::new(services.jobs.steps().clone(), &settings.aws.bucket, settings.aws.object_prefix.as_deref())
    }

    /// Runs `step` on one event.
    ///
    /// Errors: [`INVALID_TASK`] when the event is not the step's input (or names a job of the
    /// other kind); [`STEP_FAILED`] when the step failed and may be retried.
    pub async fn handle(&self, step: JobStep, event: Value) -> Result<Value, StepError> {
        let started = Instant::now();
        let result = match step.phase() {
            Phase::Plan => self.plan(step, event).await,
            Phase::Chunk => self.chunk(step, event).await,
            Phase::Finalize => self.finalize(step, event).await,
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => tracing::info!(step = step.function_name(), elapsed_ms, "job step done"),
            Err(e) => tracing::warn!(step = step.function_name(), elapsed_ms, error = %e, "job step failed"),
        }
        result
    }

    async fn plan(&self, step: JobStep, event: Value) -> Result<Value, StepError> {
        let task: JobTask = parse(event, "job task {datastoreId, jobId, kind}")?;
        check_kind(step, task.kind)?;
        tracing::info!(job_id = %task.job_id, datastore_id = %task.datastore_id, step = step.function_name(), "planning a job");
        let planned = self.steps.plan(&task).await.map_err(|e| StepError::failed(step, &e))?;
        let result = PlanResult {
            chunk_list: S3Object { bucket: self.bucket.clone(), key: format!("{}{}", self.key_prefix, planned.chunk_list_key) },
            chunks: planned.chunks,
        };
        tracing::info!(job_id = %task.job_id, chunks = planned.chunks, "job planned");
        to_value(&result)
    }

    async fn chunk(&self, step: JobStep, event: Value) -> Result<Value, StepError> {
        let task: ChunkTask = parse(event, "chunk task {datastoreId, jobId, chunk}")?;
        check_kind(step, task.chunk.kind())?;
        tracing::info!(job_id = %task.job_id, chunk = task.chunk.number(), step = step.function_name(), "running a chunk");
        let result = self.steps.run_chunk(&task).await.map_err(|e| StepError::failed(step, &e))?;
        to_value(&result)
    }

    async fn finalize(&self, step: JobStep, event: Value) -> Result<Value, StepError> {
        let event: FinalizeEvent = parse(event, "job task {datastoreId, jobId, kind} with an optional error")?;
        let task = event.task;
        check_kind(step, task.kind)?;
        let status = match event.error {
            Some(caught) => {
                let name = error_name(caught.error.as_deref());
                let cause_bytes = caught.cause.as_deref().map_or(0, str::len);
                tracing::warn!(job_id = %task.job_id, error = %name, cause_bytes, "recording the failure of a job's workflow");
                self.steps.fail(&task, &failure_message(task.kind, &name)).await.map_err(|e| StepError::failed(step, &e))?;
                "FAILED".to_string()
            }
            None => {
                let status = self.steps.finalize(&task).await.map_err(|e| StepError::failed(step, &e))?;
                status.as_str().to_string()
            }
        };
        Ok(json!({"datastoreId": task.datastore_id, "jobId": task.job_id, "kind": task.kind, "status": status}))
    }
}

/// Workflows for services that never start one (the task functions only run steps).
struct NoWorkflows;

#[async_trait::async_trait]
impl fhirlake_ports::Workflows for NoWorkflows {
    async fn start(&self, workflow: &str, _name: &str, _input: &str) -> fhirlake_ports::StorageResult<()> {
        Err(fhirlake_ports::StorageError::invalid(format!("a task function cannot start the {workflow} workflow")))
    }
}

fn parse<T: serde::de::DeserializeOwned>(event: Value, what: &str) -> Result<T, StepError> {
    // serde's message can quote the offending value: only the expected shape is reported.
    serde_json::from_value(event).map_err(|_| StepError::invalid(format!("the event is not a {what}")))
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, StepError> {
    serde_json::to_value(value).map_err(|_| StepError { error_type: STEP_FAILED, message: "a step result does not serialise".into() })
}

fn check_kind(step: JobStep, kind: JobKind) -> Result<(), StepError> {
    if kind == step.kind() {
        Ok(())
    } else {
        Err(StepError::invalid(format!("{} takes {} jobs, not {}", step.function_name(), step.kind().as_str(), kind.as_str())))
    }
}

/// The caught error's name, reduced to the characters error names use (at most 80).
fn error_name(error: Option<&str>) -> String {
    let name: String =
        error.unwrap_or_default().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')).take(80).collect();
    if name.is_empty() {
        "unknown".to_string()
    } else {
        name
    }
}

/// The job's `Message` for a workflow that failed with the error `name`.
fn failure_message(kind: JobKind, name: &str) -> String {
    let what = match name {
        "States.Timeout" | "States.HeartbeatTimeout" => "a step timed out",
        "States.ExceedToleratedFailureThreshold" => "a chunk failed after its retries",
        "States.ItemReaderFailed" => "the chunk list could not be read",
        "States.DataLimitExceeded" => "a step's result was too large",
        STEP_FAILED => "a step failed after its retries",
        INVALID_TASK => "a step received an invalid task",
        _ if name.starts_with("Lambda.") => "a step's function could not be invoked",
        _ => "a step failed",
    };
    format!("the {} job failed: {what} ({name})", kind.as_str())
}

/// Serves `step`'s events with `context` until the Lambda runtime stops the process.
///
/// Errors: only when the Lambda Runtime API fails; a failed step is a failed invocation.
pub async fn run_job_step_with(context: JobStepContext, step: JobStep) -> Result<(), lambda_http::Error> {
    lambda_runtime::run(job_step_service(Arc::new(context), step)).await
}

/// The task function of `step`: builds its context from the environment and serves events.
///
/// Errors: the context's configuration errors (the function's init fails), or the Lambda
/// Runtime API's.
pub async fn run_job_step(step: JobStep) -> Result<(), lambda_http::Error> {
    let context = JobStepContext::from_env().await?;
    run_job_step_with(context, step).await
}

/// The service [`run_job_step`] hands to the Lambda runtime: every event goes to
/// [`JobStepContext::handle`].
pub fn job_step_service(
    context: Arc<JobStepContext>,
    step: JobStep,
) -> impl lambda_runtime::Service<LambdaEvent<Value>, Response = Value, Error = StepError, Future: Send> + Clone {
    service_fn(move |event: LambdaEvent<Value>| {
        let context = context.clone();
        async move { context.handle(step, event.payload).await }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_name_the_error_and_never_its_cause() {
        assert_eq!(
            failure_message(JobKind::Import, &error_name(Some("States.ExceedToleratedFailureThreshold"))),
            "the import job failed: a chunk failed after its retries (States.ExceedToleratedFailureThreshold)"
        );
        assert_eq!(
            failure_message(JobKind::Export, &error_name(Some("Lambda.ServiceException"))),
            "the export job failed: a step's function could not be invoked (Lambda.ServiceException)"
        );
        assert_eq!(error_name(Some("Bad name <script>\n")), "Badnamescript");
        assert_eq!(error_name(None), "unknown");
        assert_eq!(error_name(Some(&"x".repeat(500))).len(), 80);
    }

    #[test]
    fn steps_know_their_kind_and_function() {
        let names: Vec<_> = JobStep::ALL.iter().map(|s| s.function_name()).collect();
        assert_eq!(names, ["import-plan", "import-chunk", "import-finalize", "export-plan", "export-chunk", "export-finalize"]);
        assert!(JobStep::ALL[..3].iter().all(|s| s.kind() == JobKind::Import));
        assert!(JobStep::ALL[3..].iter().all(|s| s.kind() == JobKind::Export));
    }

    #[test]
    fn step_errors_become_lambda_error_types() {
        let diagnostic: Diagnostic = StepError::invalid("nope").into();
        assert_eq!(diagnostic.error_type, INVALID_TASK);
        assert_eq!(diagnostic.error_message, "nope");
    }
}
