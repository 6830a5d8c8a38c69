//! FHIR Bulk Data `$export` (https://hl7.org/fhir/uv/bulkdata/export.html) over
//! `fhirlake_core::jobs`: kick-off at `[base]/$export`, `[base]/Patient/$export` and
//! `[base]/Group/{id}/$export`; status at `[base]/export/{jobId}`; cancel with `DELETE` there.
//!
//! As in HealthLake, the kick-off is a `POST` whose JSON body names where the files go:
//! `{"DataAccessRoleArn": …, "JobName": …, "OutputDataConfig": {"S3Configuration": {"S3Uri": …, "KmsKeyId": …}}}`.
//! It needs `Prefer: respond-async`. Parameters: `_outputFormat` (NDJSON only), `_type`,
//! `_since`, `_until` and `_typeFilter` (which HealthLake lacks). Any other parameter is a
//! 400.

use axum::response::Response;
use chrono::{DateTime, Utc};
use fhirlake_core::datastores::ActiveDatastore;
use fhirlake_core::jobs::{ExportScope, ExportSpec, JobKind, JobRecord, JobStatus, OutputDataConfig, StartFhirExportJobRequest};
use fhirlake_core::Services;
use fhirlake_fhir::resource::format_instant;
use http::{header, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{FhirError, FhirRequest};

/// `_outputFormat` values that mean NDJSON.
const NDJSON_FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];
/// Kick-off parameters understood here (plus `_format`, handled by content negotiation).
const PARAMETERS: [&str; 6] = ["_outputFormat", "_type", "_since", "_until", "_typeFilter", "_format"];

/// The kick-off body, HealthLake's shape.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KickOffBody {
    data_access_role_arn: String,
    #[serde(default)]
    job_name: Option<String>,
    output_data_config: OutputDataConfig,
    #[serde(default)]
    client_token: Option<String>,
}

/// `$export` kick-off: 202 with `Content-Location` naming the status URL.
pub async fn kick_off(
    services: &Services,
    ds: &ActiveDatastore,
    req: &FhirRequest<'_>,
    base: &str,
    scope: ExportScope,
) -> Result<Response, FhirError> {
    let prefer = req.headers.get("prefer").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !prefer.split(',').any(|p| p.trim().eq_ignore_ascii_case("respond-async")) {
        return Err(FhirError::bad_request("$export runs asynchronously: send Prefer: respond-async"));
    }
    if let Some((name, _)) = req.query.iter().find(|(k, _)| !PARAMETERS.contains(&k.as_str())) {
        return Err(FhirError::new(StatusCode::BAD_REQUEST, "not-supported", format!("$export does not support the parameter {name}")));
    }
    if let Some(format) = req.param("_outputFormat") {
        if !NDJSON_FORMATS.contains(&format) {
            return Err(FhirError::new(StatusCode::BAD_REQUEST, "not-supported", "_outputFormat must be NDJSON (application/fhir+ndjson)"));
        }
    }
    if req.body.is_empty() {
        return Err(FhirError::bad_request(
            "$export needs a POST body naming the output: {\"DataAccessRoleArn\": …, \"OutputDataConfig\": {\"S3Configuration\": {\"S3Uri\": …, \"KmsKeyId\": …}}}",
        ));
    }
    let body: KickOffBody = serde_json::from_slice(&req.body)
        .map_err(|_| FhirError::bad_request("the $export body must be {\"DataAccessRoleArn\", \"JobName\", \"OutputDataConfig\"}"))?;
    let list = |name: &str| -> Vec<String> {
        req.query
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect()
    };
    let instant = |name: &str| -> Result<Option<DateTime<Utc>>, FhirError> {
        match req.param(name) {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(s)
                .map(|d| Some(d.with_timezone(&Utc)))
                .map_err(|_| FhirError::bad_request(format!("{name} must be an instant such as 2024-01-01T00:00:00Z"))),
        }
    };
    let mut request_url = format!("{base}{}", req.segments.join("/"));
    if !req.query.is_empty() {
        let query: Vec<String> =
            req.query.iter().map(|(k, v)| format!("{k}={}", percent_encoding::utf8_percent_encode(v, QUERY))).collect();
        request_url = format!("{request_url}?{}", query.join("&"));
    }
    let spec = ExportSpec {
        scope,
        types: list("_type"),
        since: instant("_since")?,
        until: instant("_until")?,
        type_filters: req.query.iter().filter(|(k, _)| k == "_typeFilter").flat_map(|(_, v)| v.split(',')).map(String::from).collect(),
        request: Some(request_url),
    };
    let request = StartFhirExportJobRequest {
        job_name: body.job_name,
        output_data_config: body.output_data_config,
        datastore_id: ds.id.clone(),
        data_access_role_arn: body.data_access_role_arn,
        client_token: body.client_token,
    };
    let started = services.jobs.start_export_of(request, spec).await?;
    let location = format!("{base}export/{}", started.job_id);
    let body = json!({"datastoreId": started.datastore_id, "jobStatus": started.job_status.as_str(), "jobId": started.job_id});
    let mut response = json_response(StatusCode::ACCEPTED, &body);
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    Ok(response)
}

/// Characters escaped when the request URL is rebuilt for the manifest.
const QUERY: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b',');

/// `GET [base]/export/{jobId}`: 202 with `X-Progress` while running, 200 with the completion
/// manifest when done, an OperationOutcome when it failed, 404 once cancelled.
pub async fn status(services: &Services, ds: &ActiveDatastore, job_id: &str) -> Result<Response, FhirError> {
    let job = services.jobs.record(JobKind::Export, &ds.id, job_id).await?;
    match job.status {
        JobStatus::Completed | JobStatus::CompletedWithErrors => {
            let output: Vec<Value> =
                job.exported.iter().map(|f| json!({"type": f.resource_type, "url": f.url, "count": f.count})).collect();
            let manifest = json!({
                "transactionTime": format_instant(job.submit_time),
                "request": job.export.as_ref().and_then(|e| e.request.clone()).unwrap_or_default(),
                "requiresAccessToken": false,
                "output": output,
                "error": [],
                "exportJobProperties": properties(&job),
            });
            Ok(json_response(StatusCode::OK, &manifest))
        }
        JobStatus::Failed => Err(FhirError::new(
            StatusCode::BAD_REQUEST,
            "processing",
            format!("the export failed: {}", job.message.as_deref().unwrap_or("no reason recorded")),
        )),
        JobStatus::CancelCompleted | JobStatus::CancelFailed => {
            Err(FhirError::new(StatusCode::NOT_FOUND, "not-found", "the export was cancelled"))
        }
        _ => {
            let progress = match services.jobs.chunk_progress(&job).await? {
                Some((done, total)) => format!("{}: {done} of {total} chunks", job.status.as_str()),
                None => job.status.as_str().to_string(),
            };
            let mut response = json_response(StatusCode::ACCEPTED, &json!({"exportJobProperties": properties(&job)}));
            if let Ok(v) = HeaderValue::from_str(&progress) {
                response.headers_mut().insert("x-progress", v);
            }
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            Ok(response)
        }
    }
}

/// `DELETE [base]/export/{jobId}`: 202; the job becomes `CANCEL_SUBMITTED`.
pub async fn cancel(services: &Services, ds: &ActiveDatastore, job_id: &str) -> Result<Response, FhirError> {
    let job = services.jobs.cancel_export(&ds.id, job_id).await?;
    let body = json!({"exportJobProperties": {"jobId": job.id, "jobStatus": job.status.as_str(), "datastoreId": job.datastore_id}});
    Ok(json_response(StatusCode::ACCEPTED, &body))
}

/// HealthLake's `exportJobProperties`.
fn properties(job: &JobRecord) -> Value {
    let mut props = json!({
        "jobId": job.id,
        "jobStatus": job.status.as_str(),
        "submitTime": format_instant(job.submit_time),
        "datastoreId": job.datastore_id,
        "outputDataConfig": {"s3Configuration": {"s3Uri": job.output.s3_uri, "kmsKeyId": job.output.kms_key_id}},
        "dataAccessRoleArn": job.data_access_role_arn,
    });
    if let Some(name) = &job.name {
        props["jobName"] = json!(name);
    }
    if let Some(end) = job.end_time {
        props["endTime"] = json!(format_instant(end));
    }
    if let Some(message) = &job.message {
        props["message"] = json!(message);
    }
    props
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(axum::body::Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
