//! FHIR Bulk Data `$export` (https://hl7.org/fhir/uv/bulkdata/export.html) over
//! `fhirlake_core::jobs`: kick-off at `[base]/$export`, `[base]/Patient/$export` and
//! `[base]/Group/{id}/$export`; status at `[base]/export/{jobId}`; cancel with `DELETE` there.
//!
//! The kick-off needs `Prefer: respond-async`. It comes in three forms:
//!
//! | kick-off | files go to | manifest `url`s |
//! |---|---|---|
//! | `POST` with HealthLake's body `{"DataAccessRoleArn": …, "JobName": …, "OutputDataConfig": {"S3Configuration": {"S3Uri": …, "KmsKeyId": …}}}` | that S3 location | `s3://…`, `requiresAccessToken: false` |
//! | `GET` (the Bulk Data IG's form), or `POST` without a body | the deployment's export destination (`ServiceConfig::export_destination`) | `[base]/export/{jobId}/{Type}-{n}.ndjson`, served here, `requiresAccessToken: true` |
//! | `POST` with a FHIR `Parameters` resource | the export destination | as for `GET` |
//!
//! Parameters (in the query, or in the `Parameters` resource): `_outputFormat` (NDJSON only),
//! `_type`, `_since`, `_until` and `_typeFilter` (which HealthLake lacks). Any other parameter
//! is a 400. A served file is read with `GET [base]/export/{jobId}/{file}`, under the same
//! authentication as every request.

use axum::response::Response;
use chrono::{DateTime, Utc};
use fhirlake_core::access::Access;
use fhirlake_core::datastores::ActiveDatastore;
use fhirlake_core::jobs::{
    ExportScope, ExportSpec, JobKind, JobRecord, JobStatus, OutputDataConfig, S3Configuration, StartFhirExportJobRequest,
};
use fhirlake_core::Services;
use fhirlake_fhir::registry;
use fhirlake_fhir::resource::format_instant;
use fhirlake_smart::Interaction;
use http::{header, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{guard, FhirError, FhirRequest};

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
    let destination = destination(services, req)?;
    let mut params: Vec<(String, String)> = req.query.clone();
    params.extend(destination.parameters.iter().cloned());
    if let Some((name, _)) = params.iter().find(|(k, _)| !PARAMETERS.contains(&k.as_str())) {
        return Err(FhirError::new(StatusCode::BAD_REQUEST, "not-supported", format!("$export does not support the parameter {name}")));
    }
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if let Some(format) = param("_outputFormat") {
        if !NDJSON_FORMATS.contains(&format) {
            return Err(FhirError::new(StatusCode::BAD_REQUEST, "not-supported", "_outputFormat must be NDJSON (application/fhir+ndjson)"));
        }
    }
    let list = |name: &str| -> Vec<String> {
        params
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect()
    };
    let instant = |name: &str| -> Result<Option<DateTime<Utc>>, FhirError> {
        match param(name) {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(s)
                .map(|d| Some(d.with_timezone(&Utc)))
                .map_err(|_| FhirError::bad_request(format!("{name} must be an instant such as 2024-01-01T00:00:00Z"))),
        }
    };
    let mut request_url = format!("{base}{}", req.segments.join("/"));
    if !params.is_empty() {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", percent_encoding::utf8_percent_encode(v, QUERY))).collect();
        request_url = format!("{request_url}?{}", query.join("&"));
    }
    let types = list("_type");
    let scope = scope_for(req.access, scope, &types)?;
    let spec = ExportSpec {
        scope,
        types,
        since: instant("_since")?,
        until: instant("_until")?,
        type_filters: params.iter().filter(|(k, _)| k == "_typeFilter").flat_map(|(_, v)| v.split(',')).map(String::from).collect(),
        request: Some(request_url),
        served: destination.served,
    };
    let body = destination.body;
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

/// What a kick-off may export under `access`: anything with read access to every resource
/// (`system/*.rs`); with a `patient/` token, `Patient/$export` becomes the export of the launch
/// patient's compartment, of the types the token reads there (all of them without `_type`).
/// Anything else is refused.
fn scope_for(access: &Access, scope: ExportScope, types: &[String]) -> Result<ExportScope, FhirError> {
    if access.permits_everything(Interaction::Read) {
        return Ok(scope);
    }
    if scope != ExportScope::Patient {
        return Err(guard::needs_full_reach("a system or group $export"));
    }
    let in_compartment = |t: &&str| *t == "Patient" || !registry::compartment_params("Patient", t).is_empty();
    let covered: Vec<&str> = match types.is_empty() {
        true => registry::resource_types().iter().copied().filter(in_compartment).collect(),
        false => types.iter().map(String::as_str).collect(),
    };
    // Every type exported must be read exactly within one patient's compartment: the launch
    // patient's.
    let mut launch: Option<(String, String)> = None;
    for resource_type in covered {
        let permit = guard::permit(access, resource_type, Interaction::Read)?;
        let compartment = permit.exact_compartment().filter(|(c, _)| c == "Patient").cloned();
        match (compartment, &launch) {
            (Some(c), None) => launch = Some(c),
            (Some(c), Some(l)) if &c == l => {}
            _ => {
                return Err(FhirError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                    "the access token does not read every {resource_type} of the launch patient's compartment; name the types with _type"
                ),
                ))
            }
        }
    }
    let Some((_, patient)) = launch else { return Err(guard::needs_full_reach("$export")) };
    Ok(ExportScope::Compartment { patient })
}

/// Refuses to show or touch an export job the caller may not follow: only a caller reading
/// everything, or the patient whose compartment the job exports.
fn may_follow(access: &Access, job: &JobRecord) -> Result<(), FhirError> {
    if access.permits_everything(Interaction::Read) {
        return Ok(());
    }
    let patient = job.export.as_ref().and_then(|e| e.scope.compartment_patient());
    match (patient, access.patient()) {
        (Some(patient), Some(launch)) if launch == format!("Patient/{patient}") => Ok(()),
        _ => Err(guard::needs_full_reach("an export job")),
    }
}

/// Where a kick-off's files go, and the parameters its body carried.
struct Destination {
    body: KickOffBody,
    served: bool,
    parameters: Vec<(String, String)>,
}

/// The destination of a kick-off: HealthLake's body, or (no body, or a FHIR `Parameters`
/// body) the deployment's export destination, whose files are served here.
fn destination(services: &Services, req: &FhirRequest<'_>) -> Result<Destination, FhirError> {
    let body: Option<Value> = if req.body.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&req.body).map_err(|_| FhirError::bad_request("the $export body is not JSON"))?)
    };
    if let Some(body) = body.as_ref().filter(|b| b.get("resourceType").is_none()) {
        let body = KickOffBody::deserialize(body).map_err(|_| {
            FhirError::bad_request(
                "the $export body must be {\"DataAccessRoleArn\", \"JobName\", \"OutputDataConfig\"} or a Parameters resource",
            )
        })?;
        return Ok(Destination { body, served: false, parameters: Vec::new() });
    }
    let parameters = match &body {
        Some(parameters) => kick_off_parameters(parameters)?,
        None => Vec::new(),
    };
    let Some(default) = &services.config.export_destination else {
        return Err(FhirError::bad_request(
            "this server has no export destination: send a POST body naming the output, {\"DataAccessRoleArn\": …, \"OutputDataConfig\": {\"S3Configuration\": {\"S3Uri\": …, \"KmsKeyId\": …}}}",
        ));
    };
    let body = KickOffBody {
        data_access_role_arn: default.data_access_role_arn.clone(),
        job_name: None,
        output_data_config: OutputDataConfig {
            s3_configuration: Some(S3Configuration { s3_uri: default.s3_uri.clone(), kms_key_id: default.kms_key_id.clone() }),
        },
        client_token: None,
    };
    Ok(Destination { body, served: true, parameters })
}

/// The kick-off parameters of a FHIR `Parameters` body (Bulk Data IG, "POST kick-off"), as
/// query pairs: `valueString`, `valueInstant` or `valueCode` each.
fn kick_off_parameters(body: &Value) -> Result<Vec<(String, String)>, FhirError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(FhirError::bad_request("the $export body must be a Parameters resource or HealthLake's job body"));
    }
    let mut out = Vec::new();
    for parameter in body.get("parameter").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let name = parameter.get("name").and_then(Value::as_str).ok_or_else(|| FhirError::bad_request("a parameter has no name"))?;
        let value = ["valueString", "valueInstant", "valueCode", "valueDateTime"]
            .iter()
            .find_map(|v| parameter.get(*v).and_then(Value::as_str))
            .ok_or_else(|| FhirError::bad_request(format!("the parameter {name} needs a valueString, valueInstant or valueCode")))?;
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Characters escaped when the request URL is rebuilt for the manifest.
const QUERY: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b',');

/// `GET [base]/export/{jobId}`: 202 with `X-Progress` while running, 200 with the completion
/// manifest when done, an OperationOutcome when it failed, 404 once cancelled.
pub async fn status(services: &Services, ds: &ActiveDatastore, access: &Access, base: &str, job_id: &str) -> Result<Response, FhirError> {
    let job = services.jobs.record(JobKind::Export, &ds.id, job_id).await?;
    may_follow(access, &job)?;
    match job.status {
        JobStatus::Completed | JobStatus::CompletedWithErrors => {
            let served = job.export.as_ref().is_some_and(|e| e.served);
            let url = |f: &fhirlake_core::jobs::ExportedFile| match served {
                true => format!("{base}export/{job_id}/{}", f.name()),
                false => f.url.clone(),
            };
            let output: Vec<Value> =
                job.exported.iter().map(|f| json!({"type": f.resource_type, "url": url(f), "count": f.count})).collect();
            let manifest = json!({
                "transactionTime": format_instant(job.submit_time),
                "request": job.export.as_ref().and_then(|e| e.request.clone()).unwrap_or_default(),
                "requiresAccessToken": served,
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

/// `GET [base]/export/{jobId}/{file}`: a file of a finished export whose files are served here.
pub async fn file(services: &Services, ds: &ActiveDatastore, access: &Access, job_id: &str, name: &str) -> Result<Response, FhirError> {
    may_follow(access, &services.jobs.record(JobKind::Export, &ds.id, job_id).await?)?;
    let bytes = services.jobs.exported_file(&ds.id, job_id, name).await?;
    let mut response = Response::new(axum::body::Body::from(bytes));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+ndjson"));
    Ok(response)
}

/// `DELETE [base]/export/{jobId}`: 202; the job becomes `CANCEL_SUBMITTED`.
pub async fn cancel(services: &Services, ds: &ActiveDatastore, access: &Access, job_id: &str) -> Result<Response, FhirError> {
    may_follow(access, &services.jobs.record(JobKind::Export, &ds.id, job_id).await?)?;
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
