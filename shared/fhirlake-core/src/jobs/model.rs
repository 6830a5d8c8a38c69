//! The import and export jobs' request and response shapes, exactly as HealthLake's AWS JSON 1.0
//! wire format has them (see `datastores::model` for the conventions).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::datastores::epoch_seconds;

/// A job's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Recorded; no step has run yet.
    Submitted,
    /// Waiting for another job (fhirlake never queues: jobs run concurrently).
    Queued,
    /// Planning, running chunks or finalising.
    InProgress,
    /// Done; every line or resource succeeded.
    Completed,
    /// Done; some lines failed (they are in the FAILURE output).
    CompletedWithErrors,
    /// Stopped by an error; `Message` says why.
    Failed,
    /// A cancel was requested.
    CancelSubmitted,
    /// Chunks are stopping.
    CancelInProgress,
    /// Cancelled.
    CancelCompleted,
    /// Cancelling failed.
    CancelFailed,
}

impl JobStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Submitted => "SUBMITTED",
            JobStatus::Queued => "QUEUED",
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Completed => "COMPLETED",
            JobStatus::CompletedWithErrors => "COMPLETED_WITH_ERRORS",
            JobStatus::Failed => "FAILED",
            JobStatus::CancelSubmitted => "CANCEL_SUBMITTED",
            JobStatus::CancelInProgress => "CANCEL_IN_PROGRESS",
            JobStatus::CancelCompleted => "CANCEL_COMPLETED",
            JobStatus::CancelFailed => "CANCEL_FAILED",
        }
    }

    /// True once the job will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed
                | JobStatus::CompletedWithErrors
                | JobStatus::Failed
                | JobStatus::CancelCompleted
                | JobStatus::CancelFailed
        )
    }

    /// True while a cancel is under way: chunks stop early.
    pub fn is_cancelling(self) -> bool {
        matches!(self, JobStatus::CancelSubmitted | JobStatus::CancelInProgress)
    }
}

/// How strictly an import checks each resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ValidationLevel {
    /// The full validator, as the REST API applies it (the default).
    #[default]
    #[serde(rename = "strict")]
    Strict,
    /// R4 structure only: element names, cardinality, primitive types, invariants; code
    /// bindings are not checked.
    #[serde(rename = "structure-only")]
    StructureOnly,
    /// Anything that parses as a JSON object with a known `resourceType` and a valid (or no) id.
    #[serde(rename = "minimal")]
    Minimal,
}

impl ValidationLevel {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationLevel::Strict => "strict",
            ValidationLevel::StructureOnly => "structure-only",
            ValidationLevel::Minimal => "minimal",
        }
    }
}

/// `InputDataConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InputDataConfig {
    /// An object or a prefix of NDJSON files.
    #[serde(rename = "S3Uri", default, skip_serializing_if = "Option::is_none")]
    pub s3_uri: Option<String>,
}

/// `S3Configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Configuration {
    /// Where output goes: `s3://bucket/prefix`.
    #[serde(rename = "S3Uri")]
    pub s3_uri: String,
    /// The KMS key output is encrypted under.
    #[serde(rename = "KmsKeyId")]
    pub kms_key_id: String,
}

/// `OutputDataConfig` / `JobOutputDataConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OutputDataConfig {
    /// The S3 location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_configuration: Option<S3Configuration>,
}

/// `StartFHIRImportJob` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartFhirImportJobRequest {
    /// Optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The input.
    pub input_data_config: InputDataConfig,
    /// The output location.
    pub job_output_data_config: OutputDataConfig,
    /// The datastore to import into.
    pub datastore_id: String,
    /// The role HealthLake would assume to reach the buckets.
    pub data_access_role_arn: String,
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// How strictly resources are checked (`strict` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_level: Option<ValidationLevel>,
    /// Data transformation profile (not offered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
    /// Non-FHIR input format (not offered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_format: Option<String>,
}

/// `StartFHIRExportJob` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartFhirExportJobRequest {
    /// Optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The output location.
    pub output_data_config: OutputDataConfig,
    /// The datastore to export.
    pub datastore_id: String,
    /// The role HealthLake would assume to reach the bucket.
    pub data_access_role_arn: String,
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// The output of both start operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartJobResponse {
    /// The job's id.
    pub job_id: String,
    /// Its status.
    pub job_status: JobStatus,
    /// Its datastore.
    pub datastore_id: String,
}

/// `DescribeFHIRImportJob` / `DescribeFHIRExportJob` input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeJobRequest {
    /// The datastore.
    pub datastore_id: String,
    /// The job.
    pub job_id: String,
}

/// `ListFHIRImportJobs` / `ListFHIRExportJobs` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListJobsRequest {
    /// The datastore.
    pub datastore_id: String,
    /// Continues a previous list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// Page size, 1 to 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i64>,
    /// Only jobs of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Only jobs in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_status: Option<JobStatus>,
    /// Only jobs submitted before this instant.
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub submitted_before: Option<DateTime<Utc>>,
    /// Only jobs submitted after this instant.
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub submitted_after: Option<DateTime<Utc>>,
}

/// `JobProgressReport` of an import.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobProgressReport {
    /// Input files read (or being read).
    pub total_number_of_scanned_files: u64,
    /// Their size.
    #[serde(rename = "TotalSizeOfScannedFilesInMB")]
    pub total_size_of_scanned_files_in_mb: f64,
    /// Files all of whose lines were read.
    pub total_number_of_imported_files: u64,
    /// Non-empty lines read.
    pub total_number_of_resources_scanned: u64,
    /// Lines stored as a version.
    pub total_number_of_resources_imported: u64,
    /// Lines refused (malformed, invalid, unknown type, ...).
    pub total_number_of_resources_with_customer_error: u64,
    /// Files with at least one refused line.
    pub total_number_of_files_read_with_customer_error: u64,
    /// Resources imported per second of the job so far.
    pub throughput: f64,
}

/// `ImportJobProperties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportJobProperties {
    /// The job's id.
    pub job_id: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Its status.
    pub job_status: JobStatus,
    /// When it was started.
    #[serde(with = "epoch_seconds")]
    pub submit_time: DateTime<Utc>,
    /// When it ended.
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    /// Its datastore.
    pub datastore_id: String,
    /// Its input.
    pub input_data_config: InputDataConfig,
    /// Its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_output_data_config: Option<OutputDataConfig>,
    /// Its counters so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_progress_report: Option<JobProgressReport>,
    /// The role given at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_access_role_arn: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How strictly resources are checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_level: Option<ValidationLevel>,
}

/// `ExportJobProperties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExportJobProperties {
    /// The job's id.
    pub job_id: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Its status.
    pub job_status: JobStatus,
    /// When it was started.
    #[serde(with = "epoch_seconds")]
    pub submit_time: DateTime<Utc>,
    /// When it ended.
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    /// Its datastore.
    pub datastore_id: String,
    /// Its output.
    pub output_data_config: OutputDataConfig,
    /// The role given at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_access_role_arn: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `DescribeFHIRImportJob` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeImportJobResponse {
    /// The job.
    pub import_job_properties: ImportJobProperties,
}

/// `DescribeFHIRExportJob` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeExportJobResponse {
    /// The job.
    pub export_job_properties: ExportJobProperties,
}

/// `ListFHIRImportJobs` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListImportJobsResponse {
    /// The page.
    pub import_job_properties_list: Vec<ImportJobProperties>,
    /// Present when more follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `ListFHIRExportJobs` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListExportJobsResponse {
    /// The page.
    pub export_job_properties_list: Vec<ExportJobProperties>,
    /// Present when more follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}
