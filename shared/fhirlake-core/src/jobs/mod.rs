//! Bulk import and export jobs: HealthLake's `StartFHIRImportJob`/`StartFHIRExportJob` family
//! on the control plane ([`JobService`]), and the steps that do the work ([`JobSteps`]): plan,
//! chunk, finalize. The same steps run under the Step Functions state machines
//! (`statemachines/*.asl.json`, one Lambda function per step) and under the in-process
//! [`InProcessRunner`] of `fhirlake serve`.
//!
//! ## Lifecycle
//! Start validates the request, records the job `SUBMITTED` and starts its workflow. The
//! plan step makes it `IN_PROGRESS` and writes the chunk list. Each chunk is recorded in
//! the job's ledger ([`record`]). Finalize makes the job `COMPLETED`, or
//! `COMPLETED_WITH_ERRORS` when lines were refused. A customer problem fails the job with a
//! `Message`: a missing bucket, an empty input, an unreadable file, or a datastore that is
//! no longer active. Storage errors fail only the step, which the workflow retries. Steps
//! are idempotent: see [`import`] and [`export`].
//!
//! ## Concurrency
//! Jobs on the same datastore run at once (HealthLake runs one at a time). An import writes
//! each resource as an update by id, with the same version concurrency as the REST API, so
//! two imports and concurrent REST writes serialise per resource. No write is lost, and
//! the last writer's version is current. An export reads a snapshot at its submit time, so
//! imports and writes during it do not tear it.

mod chunks;
mod export;
mod import;
mod model;
mod record;
mod runner;
mod s3uri;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fhirlake_ports::{ObjectStore, StorageErrorKind, Workflows};
use regex::Regex;
use sha2::{Digest, Sha256};

pub use chunks::{Chunk, ChunkTask, ExportChunk, ImportChunk, JobTask};
pub use model::*;
pub use record::{ChunkResult, ExportScope, ExportSpec, ExportedFile, JobKind, JobRecord, PlanSummary};
pub use runner::InProcessRunner;
pub use s3uri::S3Location;

use record::{Created, JobStore};

use crate::datastores::validate::{check_length, pattern, KMS_KEY_ID, NAME};
use crate::datastores::{ActiveDatastore, DatastoreService};
use crate::resources::ResourceService;
use crate::search::SearchService;
use crate::{Backends, CoreError, CoreResult};

/// Default bytes of input per import chunk.
pub const DEFAULT_CHUNK_BYTES: u64 = 8 * 1024 * 1024;
/// Default and bounds of `MaxResults` when listing jobs.
const DEFAULT_MAX_RESULTS: usize = 100;
const MAX_MAX_RESULTS: i64 = 500;
const TOKEN_PREFIX: &str = "v1:";

static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| pattern(r"^arn:aws(-[^:]+)?:iam::[0-9]{12}:role/.+$"));
static JOB_ID: LazyLock<Regex> = LazyLock::new(|| pattern(r"^[\p{L}\p{Z}\p{N}_.:/=+\-%@]*$"));

/// Why a step did not finish.
#[derive(Debug)]
pub enum JobFailure {
    /// A problem with the job's input or output: the job fails with this message.
    Customer(String),
    /// A storage or internal error: the step may be retried.
    Storage(CoreError),
}

impl From<CoreError> for JobFailure {
    fn from(e: CoreError) -> Self {
        JobFailure::Storage(e)
    }
}

/// What the plan step wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanOutcome {
    /// The deployment object store key of the chunk list (a JSON array of [`ChunkTask`]).
    pub chunk_list_key: String,
    /// How many chunks it lists (0 when the job failed or had already ended).
    pub chunks: u64,
}

/// The steps of import and export jobs, shared by every orchestrator.
#[derive(Clone)]
pub struct JobSteps {
    backends: Backends,
    resources: ResourceService,
    search: SearchService,
    datastores: DatastoreService,
    store: JobStore,
    chunk_bytes: u64,
}

impl JobSteps {
    /// The steps over these services; import chunks of `chunk_bytes`.
    pub fn new(
        backends: Backends,
        resources: ResourceService,
        search: SearchService,
        datastores: DatastoreService,
        chunk_bytes: u64,
    ) -> Self {
        let store = JobStore::new(backends.table.clone());
        JobSteps { backends, resources, search, datastores, store, chunk_bytes }
    }

    /// The plan step: lists the work, writes the chunk list, makes the job `IN_PROGRESS`.
    /// A customer problem fails the job (and lists no chunk).
    ///
    /// Errors: storage errors (retry the step); `NotFound` for an unknown job.
    pub async fn plan(&self, task: &JobTask) -> CoreResult<PlanOutcome> {
        let chunk_list_key = chunk_list_key(&task.datastore_id, &task.job_id);
        let job = self.job(task).await?;
        if job.status.is_terminal() {
            return Ok(PlanOutcome { chunk_list_key, chunks: 0 });
        }
        let planned = match self.active(&job).await {
            Ok(ds) => match task.kind {
                JobKind::Import => import::plan(self, &job).await,
                JobKind::Export => export::plan(self, &ds, &job).await,
            },
            Err(failure) => Err(failure),
        };
        let (chunks, summary) = match planned {
            Ok(planned) => planned,
            Err(JobFailure::Customer(message)) => {
                self.fail(task, &message).await?;
                self.backends.objects.put(&chunk_list_key, Bytes::from_static(b"[]")).await?;
                return Ok(PlanOutcome { chunk_list_key, chunks: 0 });
            }
            Err(JobFailure::Storage(e)) => return Err(e),
        };
        let tasks: Vec<ChunkTask> = chunks
            .into_iter()
            .map(|chunk| ChunkTask { datastore_id: task.datastore_id.clone(), job_id: task.job_id.clone(), chunk })
            .collect();
        let list = serde_json::to_vec(&tasks).map_err(|_| CoreError::Internal("a chunk list does not serialise".into()))?;
        self.backends.objects.put(&chunk_list_key, Bytes::from(list)).await?;
        let now = self.backends.clock.now();
        self.store
            .modify(&task.datastore_id, task.kind, &task.job_id, |job| {
                if job.status.is_terminal() || job.status.is_cancelling() {
                    return Ok(false);
                }
                job.status = JobStatus::InProgress;
                job.run_time.get_or_insert(now);
                job.plan = Some(summary.clone());
                Ok(true)
            })
            .await?;
        Ok(PlanOutcome { chunk_list_key, chunks: tasks.len() as u64 })
    }

    /// The chunk list the plan step wrote.
    pub async fn chunk_list(&self, task: &JobTask) -> CoreResult<Vec<ChunkTask>> {
        let list = self.backends.objects.get(&chunk_list_key(&task.datastore_id, &task.job_id)).await?;
        serde_json::from_slice(&list).map_err(|_| CoreError::Internal("a chunk list is unreadable".into()))
    }

    /// The chunk step: does one chunk's work once, however often it is called. A customer
    /// problem fails the job.
    ///
    /// Errors: storage errors (retry the step).
    pub async fn run_chunk(&self, task: &ChunkTask) -> CoreResult<ChunkResult> {
        let job_task = JobTask { datastore_id: task.datastore_id.clone(), job_id: task.job_id.clone(), kind: task.chunk.kind() };
        let number = task.chunk.number();
        let job = self.job(&job_task).await?;
        if job.status.is_terminal() || job.status.is_cancelling() {
            return Ok(ChunkResult::default());
        }
        if let Some(done) = self.store.chunk_result(&task.datastore_id, &task.job_id, number).await? {
            return Ok(done);
        }
        let ds = match self.active(&job).await {
            Ok(ds) => ds,
            Err(failure) => return self.chunk_failed(&job_task, failure).await,
        };
        let retry = self.store.start_chunk(&task.datastore_id, &task.job_id, number).await?;
        if retry {
            tracing::info!(job_id = %task.job_id, chunk = number, "chunk runs again after an interrupted attempt");
        }
        let outcome = match &task.chunk {
            Chunk::Import(chunk) => import::run_chunk(self, &ds, &job, chunk, retry).await,
            Chunk::Export(chunk) => export::run_chunk(self, &ds, &job, chunk).await,
        };
        match outcome {
            Ok(result) => {
                self.store.finish_chunk(&task.datastore_id, &task.job_id, number, &result).await?;
                Ok(result)
            }
            Err(failure) => self.chunk_failed(&job_task, failure).await,
        }
    }

    async fn chunk_failed(&self, task: &JobTask, failure: JobFailure) -> CoreResult<ChunkResult> {
        match failure {
            JobFailure::Customer(message) => {
                self.fail(task, &message).await?;
                Ok(ChunkResult::default())
            }
            JobFailure::Storage(e) => Err(e),
        }
    }

    /// The finalize step: writes the job's output summary and ends it. Returns the final status.
    ///
    /// Errors: storage errors (retry the step); `Internal` when a chunk has not finished.
    pub async fn finalize(&self, task: &JobTask) -> CoreResult<JobStatus> {
        let job = self.job(task).await?;
        if job.status.is_terminal() {
            return Ok(job.status);
        }
        if job.status.is_cancelling() {
            return self.end(task, JobStatus::CancelCompleted, self.backends.clock.now(), None, Vec::new()).await;
        }
        let chunks = self.chunk_list(task).await?;
        let results: HashMap<u64, ChunkResult> = self.store.chunk_results(&task.datastore_id, &task.job_id).await?.into_iter().collect();
        if let Some(missing) = chunks.iter().find(|c| !results.contains_key(&c.chunk.number())) {
            return Err(CoreError::Internal(format!("chunk {} of job {} has not finished", missing.chunk.number(), task.job_id)));
        }
        let now = self.backends.clock.now();
        let (totals, exported, status) = match task.kind {
            JobKind::Import => {
                let import_chunks: Vec<ImportChunk> = chunks
                    .iter()
                    .filter_map(|c| match &c.chunk {
                        Chunk::Import(chunk) => Some(chunk.clone()),
                        Chunk::Export(_) => None,
                    })
                    .collect();
                let totals = match import::finalize(self, &job, &import_chunks, &results).await {
                    Ok(totals) => totals,
                    Err(JobFailure::Customer(message)) => {
                        self.fail(task, &message).await?;
                        return Ok(JobStatus::Failed);
                    }
                    Err(JobFailure::Storage(e)) => return Err(e),
                };
                let status = if totals.customer_errors > 0 { JobStatus::CompletedWithErrors } else { JobStatus::Completed };
                let ended = self.end(task, status, now, Some(totals), Vec::new()).await?;
                import::remove_staging(self, &job, &import_chunks).await;
                return Ok(ended);
            }
            JobKind::Export => {
                let mut totals = ChunkResult::default();
                let mut numbers: Vec<&u64> = results.keys().collect();
                numbers.sort();
                for n in numbers {
                    totals.add(&results[n]);
                }
                let exported = std::mem::take(&mut totals.files);
                (totals, exported, if job.status.is_cancelling() { JobStatus::CancelCompleted } else { JobStatus::Completed })
            }
        };
        self.end(task, status, now, Some(totals), exported).await
    }

    async fn end(
        &self,
        task: &JobTask,
        status: JobStatus,
        now: DateTime<Utc>,
        totals: Option<ChunkResult>,
        exported: Vec<ExportedFile>,
    ) -> CoreResult<JobStatus> {
        let ended = self
            .store
            .modify(&task.datastore_id, task.kind, &task.job_id, |job| {
                if job.status.is_terminal() {
                    return Ok(false);
                }
                job.status = if job.status.is_cancelling() { JobStatus::CancelCompleted } else { status };
                job.end_time = Some(now);
                job.totals = totals.clone();
                job.exported = exported.clone();
                Ok(true)
            })
            .await?;
        tracing::info!(job_id = %task.job_id, kind = task.kind.as_str(), status = ended.status.as_str(), "job ended");
        Ok(ended.status)
    }

    /// Ends the job `FAILED` with `message` (unless it has already ended).
    pub async fn fail(&self, task: &JobTask, message: &str) -> CoreResult<()> {
        let now = self.backends.clock.now();
        let message: String = message.chars().take(2000).collect();
        self.store
            .modify(&task.datastore_id, task.kind, &task.job_id, |job| {
                if job.status.is_terminal() {
                    return Ok(false);
                }
                job.status = if job.status.is_cancelling() { JobStatus::CancelCompleted } else { JobStatus::Failed };
                job.end_time = Some(now);
                job.message = Some(message.clone());
                Ok(true)
            })
            .await?;
        tracing::warn!(job_id = %task.job_id, kind = task.kind.as_str(), "job failed");
        Ok(())
    }

    /// Jobs that have not ended, for an orchestrator resuming after a restart.
    pub async fn unfinished(&self) -> CoreResult<Vec<JobTask>> {
        Ok(self.store.active().await?.into_iter().map(|(datastore_id, kind, job_id)| JobTask { datastore_id, job_id, kind }).collect())
    }

    async fn job(&self, task: &JobTask) -> CoreResult<JobRecord> {
        match self.store.get(&task.datastore_id, task.kind, &task.job_id).await? {
            Some(stored) => Ok(stored.record),
            None => Err(CoreError::NotFound(format!("job {}", task.job_id))),
        }
    }

    async fn active(&self, job: &JobRecord) -> Result<ActiveDatastore, JobFailure> {
        match self.datastores.active(&job.datastore_id).await {
            Ok(ds) => Ok(ds),
            Err(CoreError::NotFound(_)) => Err(JobFailure::Customer(format!("datastore {} is not active", job.datastore_id))),
            Err(e) => Err(JobFailure::Storage(e)),
        }
    }

    /// Opens a job bucket; a missing one is the customer's problem.
    async fn open_bucket(&self, bucket: &str, kms_key_id: Option<&str>, role: &str) -> Result<Arc<dyn ObjectStore>, JobFailure> {
        match self.backends.buckets.open(bucket, kms_key_id).await {
            Ok(store) => Ok(store),
            Err(e) if e.kind == StorageErrorKind::NotFound => {
                Err(JobFailure::Customer(format!("the {role} bucket {bucket} does not exist")))
            }
            Err(e) if e.kind == StorageErrorKind::Invalid => {
                Err(JobFailure::Customer(format!("the {role} bucket name {bucket} is not valid")))
            }
            Err(e) => Err(JobFailure::Storage(e.into())),
        }
    }

    async fn open_output(&self, job: &JobRecord) -> Result<Arc<dyn ObjectStore>, JobFailure> {
        let output = S3Location::parse("S3Uri", &job.output.s3_uri).map_err(|e| JobFailure::Customer(e.to_string()))?;
        self.open_bucket(&output.bucket, Some(&job.output.kms_key_id), "output").await
    }
}

fn chunk_list_key(ds: &str, job_id: &str) -> String {
    format!("jobs/{ds}/{job_id}/chunks.json")
}

/// The control-plane operations on jobs.
#[derive(Clone)]
pub struct JobService {
    steps: JobSteps,
    workflows: Arc<dyn Workflows>,
}

impl JobService {
    /// The service over `steps`, starting workflows through `workflows`.
    pub fn new(steps: JobSteps, workflows: Arc<dyn Workflows>) -> Self {
        JobService { steps, workflows }
    }

    /// The steps.
    pub fn steps(&self) -> &JobSteps {
        &self.steps
    }

    /// `StartFHIRImportJob`.
    ///
    /// Errors: `Invalid` for a bad request (or a reused token with other parameters),
    /// `NotFound` when the datastore is not active, storage errors.
    pub async fn start_import(&self, request: StartFhirImportJobRequest) -> CoreResult<StartJobResponse> {
        validate_common(
            &request.datastore_id,
            request.job_name.as_deref(),
            &request.data_access_role_arn,
            request.client_token.as_deref(),
        )?;
        let output = validate_output("JobOutputDataConfig", &request.job_output_data_config)?;
        let input =
            request.input_data_config.s3_uri.as_deref().ok_or_else(|| CoreError::Invalid("InputDataConfig.S3Uri is required".into()))?;
        S3Location::parse("InputDataConfig.S3Uri", input)?;
        if request.profile_id.is_some() || request.input_format.as_deref().is_some_and(|f| f != "FHIR_R4" && f != "FHIR") {
            return Err(CoreError::Invalid(
                "fhirlake imports FHIR R4 NDJSON only: ProfileId and non-FHIR InputFormat are not offered".into(),
            ));
        }
        let record = |id: String, now| JobRecord {
            input_s3_uri: Some(input.to_string()),
            validation_level: request.validation_level.unwrap_or_default(),
            ..JobRecord::submitted(
                id,
                JobKind::Import,
                &request.datastore_id,
                request.job_name.clone(),
                now,
                output.clone(),
                &request.data_access_role_arn,
            )
        };
        let mut unsigned = request.clone();
        unsigned.client_token = None;
        self.start(JobKind::Import, &request.datastore_id, request.client_token.as_deref(), &fingerprint(&unsigned)?, record).await
    }

    /// `StartFHIRExportJob`: a system-wide export.
    ///
    /// Errors: as [`Self::start_import`].
    pub async fn start_export(&self, request: StartFhirExportJobRequest) -> CoreResult<StartJobResponse> {
        self.start_export_of(request, ExportSpec::default()).await
    }

    /// An export with `$export`'s scope and filters.
    pub async fn start_export_of(&self, request: StartFhirExportJobRequest, spec: ExportSpec) -> CoreResult<StartJobResponse> {
        validate_common(
            &request.datastore_id,
            request.job_name.as_deref(),
            &request.data_access_role_arn,
            request.client_token.as_deref(),
        )?;
        let output = validate_output("OutputDataConfig", &request.output_data_config)?;
        export::check_spec(&spec)?;
        let named = match &spec.scope {
            ExportScope::Group { id } => Some(("Group", id)),
            ExportScope::Compartment { patient } => Some(("Patient", patient)),
            ExportScope::System | ExportScope::Patient => None,
        };
        if let Some((resource_type, id)) = named {
            let ds = self.steps.datastores.active(&request.datastore_id).await?;
            self.steps.resources.read(&ds, resource_type, id).await?;
        }
        let record = |id: String, now| JobRecord {
            export: Some(spec.clone()),
            ..JobRecord::submitted(
                id,
                JobKind::Export,
                &request.datastore_id,
                request.job_name.clone(),
                now,
                output.clone(),
                &request.data_access_role_arn,
            )
        };
        let mut unsigned = request.clone();
        unsigned.client_token = None;
        let sha = fingerprint(&(unsigned, &spec))?;
        self.start(JobKind::Export, &request.datastore_id, request.client_token.as_deref(), &sha, record).await
    }

    async fn start(
        &self,
        kind: JobKind,
        datastore_id: &str,
        token: Option<&str>,
        sha: &str,
        record: impl Fn(String, DateTime<Utc>) -> JobRecord,
    ) -> CoreResult<StartJobResponse> {
        self.steps.datastores.active(datastore_id).await?;
        if let Some(token) = token {
            if let Some((job_id, recorded)) = self.steps.store.token(datastore_id, kind, token).await? {
                return self.replay(kind, datastore_id, &job_id, recorded == sha).await;
            }
        }
        let now = crate::datastores::millis(self.steps.backends.clock.now());
        let job = record(self.steps.backends.ids.hex32(), now);
        match self.steps.store.create(&job, token.map(|t| (t, sha))).await? {
            Created::New => {}
            Created::Replayed(job_id, same) => return self.replay(kind, datastore_id, &job_id, same).await,
        }
        let task = JobTask { datastore_id: datastore_id.to_string(), job_id: job.id.clone(), kind };
        let input = serde_json::to_string(&task).map_err(|_| CoreError::Internal("a job task does not serialise".into()))?;
        if let Err(e) = self.workflows.start(kind.as_str(), &job.id, &input).await {
            tracing::error!(job_id = %job.id, error = %e, "could not start the job's workflow");
            self.steps.fail(&task, "the job's workflow could not be started").await?;
            return Err(e.into());
        }
        tracing::info!(job_id = %job.id, datastore_id, kind = kind.as_str(), "job submitted");
        Ok(StartJobResponse { job_id: job.id, job_status: JobStatus::Submitted, datastore_id: datastore_id.to_string() })
    }

    /// The NDJSON of file `name` (`Observation-1.ndjson`) of a finished export whose files the
    /// FHIR endpoint serves (see [`ExportSpec::served`]).
    ///
    /// Errors: `NotFound` for an unknown job or file, or an export whose files went elsewhere;
    /// `Conflict` while the job has not completed.
    pub async fn exported_file(&self, datastore_id: &str, job_id: &str, name: &str) -> CoreResult<Bytes> {
        let job = self.record(JobKind::Export, datastore_id, job_id).await?;
        if !job.export.as_ref().is_some_and(|e| e.served) {
            return Err(CoreError::NotFound(format!("export {job_id} wrote its files to {}", job.output.s3_uri)));
        }
        if !matches!(job.status, JobStatus::Completed | JobStatus::CompletedWithErrors) {
            return Err(CoreError::Conflict(format!("export {job_id} is {}", job.status.as_str())));
        }
        let not_found = || CoreError::NotFound(format!("export {job_id} has no file {name}"));
        let file = job.exported.iter().find(|f| f.name() == name).ok_or_else(not_found)?;
        let location = S3Location::parse("url", &file.url)?;
        let store = self.steps.open_bucket(&location.bucket, Some(&job.output.kms_key_id), "output").await.map_err(|f| match f {
            JobFailure::Customer(message) => CoreError::NotFound(message),
            JobFailure::Storage(e) => e,
        })?;
        match store.get(&location.key).await {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind == StorageErrorKind::NotFound => Err(not_found()),
            Err(e) => Err(e.into()),
        }
    }

    /// Cancels an export (`DELETE [base]/export/{jobId}`): it becomes `CANCEL_SUBMITTED`, its
    /// remaining chunks do nothing, and finalize ends it `CANCEL_COMPLETED`.
    ///
    /// Errors: `NotFound` for an unknown job; `Conflict` when it has already ended.
    pub async fn cancel_export(&self, datastore_id: &str, job_id: &str) -> CoreResult<JobRecord> {
        self.record(JobKind::Export, datastore_id, job_id).await?;
        let mut ended = None;
        let record = self
            .steps
            .store
            .modify(datastore_id, JobKind::Export, job_id, |job| {
                if job.status.is_terminal() {
                    ended = Some(job.status);
                    return Ok(false);
                }
                if job.status.is_cancelling() {
                    return Ok(false);
                }
                job.status = JobStatus::CancelSubmitted;
                Ok(true)
            })
            .await?;
        if let Some(status) = ended {
            return Err(CoreError::Conflict(format!("the export has already ended ({})", status.as_str())));
        }
        tracing::info!(job_id, datastore_id, "export cancel requested");
        Ok(record)
    }

    /// How far a job has got: (finished chunks, all chunks), once planned.
    pub async fn chunk_progress(&self, job: &JobRecord) -> CoreResult<Option<(u64, u64)>> {
        let Some(plan) = &job.plan else { return Ok(None) };
        let done = self.steps.store.chunk_results(&job.datastore_id, &job.id).await?.len() as u64;
        Ok(Some((done, plan.chunks)))
    }

    async fn replay(&self, kind: JobKind, datastore_id: &str, job_id: &str, same: bool) -> CoreResult<StartJobResponse> {
        if !same {
            return Err(CoreError::Invalid("ClientToken was already used with different parameters; use a new token".into()));
        }
        let job = self.steps.job(&JobTask { datastore_id: datastore_id.to_string(), job_id: job_id.to_string(), kind }).await?;
        Ok(StartJobResponse { job_id: job.id, job_status: job.status, datastore_id: job.datastore_id })
    }

    /// `DescribeFHIRImportJob`, with live progress while the job runs.
    ///
    /// Errors: `Invalid`, `NotFound` for an unknown datastore or job.
    pub async fn describe_import(&self, request: DescribeJobRequest) -> CoreResult<DescribeImportJobResponse> {
        let job = self.described(JobKind::Import, &request).await?;
        Ok(DescribeImportJobResponse { import_job_properties: self.import_properties(&job, true).await? })
    }

    /// `DescribeFHIRExportJob`.
    ///
    /// Errors: as [`Self::describe_import`].
    pub async fn describe_export(&self, request: DescribeJobRequest) -> CoreResult<DescribeExportJobResponse> {
        let job = self.described(JobKind::Export, &request).await?;
        Ok(DescribeExportJobResponse { export_job_properties: export_properties(&job) })
    }

    /// A job's record (for `$export` status).
    ///
    /// Errors: as [`Self::describe_import`].
    pub async fn record(&self, kind: JobKind, datastore_id: &str, job_id: &str) -> CoreResult<JobRecord> {
        self.described(kind, &DescribeJobRequest { datastore_id: datastore_id.to_string(), job_id: job_id.to_string() }).await
    }

    async fn described(&self, kind: JobKind, request: &DescribeJobRequest) -> CoreResult<JobRecord> {
        crate::datastores::validate::datastore_id(&request.datastore_id)?;
        validate_job_id(&request.job_id)?;
        self.steps
            .datastores
            .describe(crate::datastores::DescribeFhirDatastoreRequest { datastore_id: request.datastore_id.clone() })
            .await?;
        match self.steps.store.get(&request.datastore_id, kind, &request.job_id).await? {
            Some(stored) => Ok(stored.record),
            None => Err(CoreError::NotFound(format!("job {} does not exist", request.job_id))),
        }
    }

    /// `ListFHIRImportJobs`: newest first.
    ///
    /// Errors: `Invalid` for a bad filter, page size or token; `NotFound` for an unknown datastore.
    pub async fn list_import(&self, request: ListJobsRequest) -> CoreResult<ListImportJobsResponse> {
        let (jobs, next_token) = self.listed(JobKind::Import, &request).await?;
        let mut list = Vec::with_capacity(jobs.len());
        for job in &jobs {
            list.push(self.import_properties(job, false).await?);
        }
        Ok(ListImportJobsResponse { import_job_properties_list: list, next_token })
    }

    /// `ListFHIRExportJobs`: newest first.
    ///
    /// Errors: as [`Self::list_import`].
    pub async fn list_export(&self, request: ListJobsRequest) -> CoreResult<ListExportJobsResponse> {
        let (jobs, next_token) = self.listed(JobKind::Export, &request).await?;
        Ok(ListExportJobsResponse { export_job_properties_list: jobs.iter().map(export_properties).collect(), next_token })
    }

    async fn listed(&self, kind: JobKind, request: &ListJobsRequest) -> CoreResult<(Vec<JobRecord>, Option<String>)> {
        crate::datastores::validate::datastore_id(&request.datastore_id)?;
        let limit = match request.max_results {
            None => DEFAULT_MAX_RESULTS,
            Some(n) if (1..=MAX_MAX_RESULTS).contains(&n) => n as usize,
            Some(_) => return Err(CoreError::Invalid(format!("MaxResults must be 1 to {MAX_MAX_RESULTS}"))),
        };
        if let Some(name) = &request.job_name {
            validate_job_name(name)?;
        }
        let after = match request.next_token.as_deref() {
            None | Some("") => None,
            Some(token) => Some(decode_token(token)?),
        };
        self.steps
            .datastores
            .describe(crate::datastores::DescribeFhirDatastoreRequest { datastore_id: request.datastore_id.clone() })
            .await?;
        let mut jobs: Vec<JobRecord> = self
            .steps
            .store
            .all(&request.datastore_id, kind)
            .await?
            .into_iter()
            .filter(|j| request.job_name.as_ref().is_none_or(|n| j.name.as_ref() == Some(n)))
            .filter(|j| request.job_status.is_none_or(|s| j.status == s))
            .filter(|j| request.submitted_before.is_none_or(|t| j.submit_time < t))
            .filter(|j| request.submitted_after.is_none_or(|t| j.submit_time > t))
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(order_key(j)));
        if let Some(after) = &after {
            jobs.retain(|j| order_key(j) < *after);
        }
        let more = jobs.len() > limit;
        jobs.truncate(limit);
        let next = if more { jobs.last().map(|j| encode_token(&order_key(j))) } else { None };
        Ok((jobs, next))
    }

    async fn import_properties(&self, job: &JobRecord, live: bool) -> CoreResult<ImportJobProperties> {
        let report = match (&job.totals, &job.plan) {
            (Some(totals), plan) => Some(progress(job, plan.as_ref(), totals, self.steps.backends.clock.now())),
            (None, Some(plan)) if live => {
                let results = self.steps.store.chunk_results(&job.datastore_id, &job.id).await?;
                let mut sum = ChunkResult::default();
                for (_, r) in &results {
                    sum.add(r);
                }
                (sum.files_read, sum.files_with_errors) = ChunkResult::file_counts(results.iter().map(|(_, r)| r));
                Some(progress(job, Some(plan), &sum, self.steps.backends.clock.now()))
            }
            (None, Some(plan)) => Some(progress(job, Some(plan), &ChunkResult::default(), self.steps.backends.clock.now())),
            (None, None) => None,
        };
        Ok(ImportJobProperties {
            job_id: job.id.clone(),
            job_name: job.name.clone(),
            job_status: job.status,
            submit_time: job.submit_time,
            end_time: job.end_time,
            datastore_id: job.datastore_id.clone(),
            input_data_config: InputDataConfig { s3_uri: job.input_s3_uri.clone() },
            job_output_data_config: Some(OutputDataConfig { s3_configuration: Some(job.output.clone()) }),
            job_progress_report: report,
            data_access_role_arn: Some(job.data_access_role_arn.clone()),
            message: job.message.clone(),
            validation_level: Some(job.validation_level),
        })
    }
}

/// An import's progress report from its counts (the finished chunks' while it runs).
fn progress(job: &JobRecord, plan: Option<&PlanSummary>, sum: &ChunkResult, now: DateTime<Utc>) -> JobProgressReport {
    let plan = plan.cloned().unwrap_or_default();
    let seconds = job.run_time.map(|start| (job.end_time.unwrap_or(now) - start).num_milliseconds().max(1) as f64 / 1000.0);
    JobProgressReport {
        total_number_of_scanned_files: plan.files,
        total_size_of_scanned_files_in_mb: plan.bytes as f64 / (1024.0 * 1024.0),
        total_number_of_imported_files: sum.files_read,
        total_number_of_resources_scanned: sum.scanned,
        total_number_of_resources_imported: sum.imported,
        total_number_of_resources_with_customer_error: sum.customer_errors,
        total_number_of_files_read_with_customer_error: sum.files_with_errors,
        throughput: seconds.map_or(0.0, |s| (sum.imported as f64 / s * 100.0).round() / 100.0),
    }
}

fn export_properties(job: &JobRecord) -> ExportJobProperties {
    ExportJobProperties {
        job_id: job.id.clone(),
        job_name: job.name.clone(),
        job_status: job.status,
        submit_time: job.submit_time,
        end_time: job.end_time,
        datastore_id: job.datastore_id.clone(),
        output_data_config: OutputDataConfig { s3_configuration: Some(job.output.clone()) },
        data_access_role_arn: Some(job.data_access_role_arn.clone()),
        message: job.message.clone(),
    }
}

fn order_key(job: &JobRecord) -> String {
    format!("{:020}#{}", job.submit_time.timestamp_micros(), job.id)
}

fn encode_token(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{key}"))
}

fn decode_token(token: &str) -> CoreResult<String> {
    let invalid = || CoreError::Invalid("NextToken is not a token this service issued".to_string());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix(TOKEN_PREFIX).filter(|k| k.len() > 21 && k.as_bytes()[20] == b'#').map(String::from).ok_or_else(invalid)
}

fn fingerprint(request: &impl serde::Serialize) -> CoreResult<String> {
    let json = serde_json::to_vec(request).map_err(|_| CoreError::Internal("a start request does not serialise".into()))?;
    Ok(hex::encode(Sha256::digest(&json)))
}

fn validate_common(datastore_id: &str, name: Option<&str>, role: &str, token: Option<&str>) -> CoreResult<()> {
    crate::datastores::validate::datastore_id(datastore_id)?;
    if let Some(name) = name {
        validate_job_name(name)?;
    }
    check_length("DataAccessRoleArn", role, 20, 2048)?;
    if !ROLE_ARN.is_match(role) {
        return Err(CoreError::Invalid("DataAccessRoleArn must be an IAM role ARN".into()));
    }
    if let Some(token) = token {
        crate::datastores::validate::client_token(token)?;
    }
    Ok(())
}

fn validate_job_name(name: &str) -> CoreResult<()> {
    check_length("JobName", name, 1, 64)?;
    if !NAME.is_match(name) {
        return Err(CoreError::Invalid("JobName may contain only letters, separators, digits and _.:/=+-%@".into()));
    }
    Ok(())
}

fn validate_job_id(id: &str) -> CoreResult<()> {
    check_length("JobId", id, 1, 32)?;
    if !JOB_ID.is_match(id) {
        return Err(CoreError::Invalid("JobId has characters a job id never has".into()));
    }
    Ok(())
}

fn validate_output(member: &str, config: &OutputDataConfig) -> CoreResult<S3Configuration> {
    let s3 = config.s3_configuration.clone().ok_or_else(|| CoreError::Invalid(format!("{member}.S3Configuration is required")))?;
    S3Location::parse(&format!("{member}.S3Configuration.S3Uri"), &s3.s3_uri)?;
    check_length("KmsKeyId", &s3.kms_key_id, 1, 400)?;
    if !KMS_KEY_ID.is_match(&s3.kms_key_id) {
        return Err(CoreError::Invalid("KmsKeyId must be a KMS key id, key ARN or alias".into()));
    }
    Ok(s3)
}
