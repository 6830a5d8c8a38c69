//! The audit trail: one [`AuditRecord`] per request on either plane, appended to the
//! [`AuditLog`] of the host (a JSON-lines file in the data dir for `fhirlake serve`, standard
//! output, which is CloudWatch Logs, in Lambda).
//!
//! A record says who (principal, client id, how authenticated), what (the HealthLake operation,
//! datastore, resource type and id), within which patient compartment the request was confined,
//! and the outcome (status). It never holds PHI: no bodies, no search values, no headers other
//! than the principal. The control plane's datastore id is read from the request's
//! `DatastoreId` field, an identifier.

use chrono::Utc;
use fhirlake_core::operation::{control_operation, data_operation};
use fhirlake_ports::audit::{audit_time, AuditLog, AuditOutcome, AuditRecord};
use http::request::Parts;

use crate::auth::Caller;
use crate::Plane;

/// What one request did, for its record.
pub(crate) struct Completed<'a> {
    pub request_id: &'a str,
    pub parts: &'a Parts,
    pub plane: &'a Plane,
    /// The request body (the control plane's `DatastoreId` is read from it).
    pub body: &'a [u8],
    /// Who made it, when authentication succeeded.
    pub caller: Option<&'a Caller>,
    /// The response's status.
    pub status: u16,
    /// The response's `Location`, which names the resource a create made.
    pub location: Option<&'a str>,
}

/// Appends the record of a completed (or refused) request.
pub(crate) async fn record(log: &dyn AuditLog, done: Completed<'_>) {
    let status = done.status;
    let (plane, operation, datastore_id, resource_type, resource_id) = match done.plane {
        Plane::Control => {
            let target = done.parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok());
            ("control", control_operation(target).to_string(), control_datastore_id(done.body), None, None)
        }
        Plane::Data { datastore_id, segments } => {
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            let op = data_operation(done.parts.method.as_str(), &segments, done.parts.uri.query().is_some_and(|q| !q.is_empty()));
            // A create names its new resource only in the response's Location.
            let resource_id = op.resource_id.or_else(|| created_id(done.location, op.resource_type.as_deref()?));
            ("data", op.name.to_string(), Some(datastore_id.clone()), op.resource_type, resource_id)
        }
        Plane::SmartDiscovery { datastore_id } => ("data", "GetSmartConfiguration".to_string(), Some(datastore_id.clone()), None, None),
        Plane::Unknown => ("data", fhirlake_core::operation::UNKNOWN.to_string(), None, None, None),
    };
    let (principal, client_id, authentication, patient) = match done.caller {
        Some(caller) => (caller.principal.clone(), caller.client_id.clone(), caller.authentication.as_str(), caller.access.patient()),
        None => ("anonymous".to_string(), None, attempted_authentication(done.parts), None),
    };
    let record = AuditRecord {
        time: audit_time(Utc::now()),
        request_id: done.request_id.to_string(),
        plane: plane.to_string(),
        principal,
        client_id,
        authentication: authentication.to_string(),
        operation,
        datastore_id,
        resource_type,
        resource_id,
        patient,
        outcome: AuditOutcome::of_status(status),
        status,
    };
    log.append(&record).await;
}

/// The id in a `Location` of the form `…/{resource_type}/{id}/_history/{version}`.
fn created_id(location: Option<&str>, resource_type: &str) -> Option<String> {
    let mut segments = location?.split('/').rev();
    let (_version, history, id, found_type) = (segments.next()?, segments.next()?, segments.next()?, segments.next()?);
    (history == "_history" && found_type == resource_type && fhirlake_fhir::resource::is_valid_id(id)).then(|| id.to_string())
}

/// The scheme a refused request tried, from its `Authorization` header.
fn attempted_authentication(parts: &Parts) -> &'static str {
    let authorization = parts.headers.get(http::header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
    if authorization.starts_with(b"AWS4-HMAC-SHA256") || parts.uri.query().is_some_and(|q| q.contains("X-Amz-Signature=")) {
        "sigv4"
    } else if authorization.get(..7).is_some_and(|s| s.eq_ignore_ascii_case(b"bearer ")) {
        "smart"
    } else {
        "none"
    }
}

/// The `DatastoreId` of a control-plane request body, if it has a plausible one.
fn control_datastore_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Addressed {
        #[serde(rename = "DatastoreId")]
        datastore_id: Option<String>,
    }
    let id = serde_json::from_slice::<Addressed>(body).ok()?.datastore_id?;
    (id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

/// Records, on the `fhirlake::audit` tracing target, a request that authentication refused;
/// the reason holds no credential.
pub(crate) fn denied(parts: &Parts, reason: &str) {
    tracing::warn!(
        target: "fhirlake::audit",
        method = %parts.method,
        path = %parts.uri.path(),
        reason,
        "request denied"
    );
}
