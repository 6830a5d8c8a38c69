//! The audit trail port: one structured [`AuditRecord`] per request, appended to an [`AuditLog`].
//!
//! ```text
//!   router ──AuditRecord──▶ AuditLog ─┬─ StdoutAuditLog       (Lambda: stdout is CloudWatch Logs)
//!                                     ├─ JsonLinesAuditLog    (fhirlake-embedded: a 0600 file in the data dir)
//!                                     └─ MemoryAuditLog       (tests)
//! ```
//!
//! Every sink writes the same line, [`AuditRecord::to_json_line`]: the record as one JSON object
//! whose first key is `"type": "fhirlake.audit"` ([`AUDIT_LINE_TYPE`]), then a newline. A line can
//! be read back with `serde_json::from_slice::<AuditRecord>` (the `type` key is ignored), and
//! turned into a FHIR R4 AuditEvent with [`AuditRecord::to_audit_event`].

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The value of the `type` key that starts every audit line, so log filters can select audit
/// records among other output (CloudWatch Logs: `{ $.type = "fhirlake.audit" }`).
pub const AUDIT_LINE_TYPE: &str = "fhirlake.audit";

/// One request, as the audit trail records it.
///
/// **A record never holds PHI**: no request or response bodies, no search parameter values, no
/// header values other than the principal; only identifiers (request, principal, client,
/// datastore, resource, patient compartment), types, the operation name and the status. Whoever
/// builds a record must keep it that way: ids and types only.
///
/// Serialized in camelCase, `None` fields omitted. Field order is the serialization order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// When the request completed: RFC 3339 in UTC with milliseconds (`2026-12-01T20:31:02.123Z`),
    /// as [`audit_time`] formats it.
    pub time: String,
    /// The request's id (the one returned to the client and found in the service's logs).
    pub request_id: String,
    /// `"control"` or `"data"`.
    pub plane: String,
    /// Who made the request: the access key id (SigV4), the IAM ARN (Lambda `iam` mode), the SMART
    /// token's `sub` (its client id when it has no `sub`), or `"anonymous"`.
    pub principal: String,
    /// The OAuth client id of a SMART token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// How the principal was authenticated: `"sigv4"`, `"iam"`, `"smart"` or `"none"`.
    pub authentication: String,
    /// The HealthLake action name (`CreateFHIRDatastore`, `ReadResource`, …; `Unknown` when the
    /// request names none).
    pub operation: String,
    /// The datastore addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_id: Option<String>,
    /// The resource type addressed (data plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// The resource id addressed (data plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// The patient compartment the request was confined to, as `Patient/123`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// Success, denied or failed, from the status ([`AuditOutcome::of_status`]).
    pub outcome: AuditOutcome,
    /// The HTTP status of the response.
    pub status: u16,
}

/// How a request ended, from its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// 2xx or 3xx.
    Success,
    /// 401 or 403: authentication or authorization refused the request.
    Denied,
    /// Any other status.
    Failed,
}

impl AuditOutcome {
    /// The outcome of a response with `status`: 2xx/3xx success, 401/403 denied, else failed.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=399 => AuditOutcome::Success,
            401 | 403 => AuditOutcome::Denied,
            _ => AuditOutcome::Failed,
        }
    }
}

/// `time` as an audit record's timestamp: RFC 3339, UTC, milliseconds, `Z`.
pub fn audit_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The line every sink writes: the `type` marker first, then the record's fields.
#[derive(Serialize)]
struct AuditLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    record: &'a AuditRecord,
}

const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const SECURITY_SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const AUDIT_ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const BALP_ENTITY_TYPE: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
/// The code system of fhirlake's subtype coding that carries the HealthLake action name.
pub const OPERATION_CODE_SYSTEM: &str = "urn:fhirlake:healthlake-operation";

impl AuditRecord {
    /// The record as one audit line: a JSON object starting with `"type":"fhirlake.audit"`,
    /// followed by the record's fields, and a trailing `\n`. Every sink writes exactly this.
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(&AuditLine { kind: AUDIT_LINE_TYPE, record: self })
            .expect("an audit record (strings, integers and a unit enum) always serializes");
        line.push(b'\n');
        line
    }

    /// The record as a FHIR R4 AuditEvent (type `rest`, a `restful-interaction` subtype for data-plane
    /// interactions, the HealthLake action as a second subtype coding in
    /// [`OPERATION_CODE_SYSTEM`], the requesting agent, fhirlake as observer, and entities for
    /// the resource, the patient compartment and the request id). No extensions, no `id`.
    pub fn to_audit_event(&self) -> Value {
        let data = self.plane == "data";
        let interaction = if data { restful_interaction(&self.operation, self.resource_type.is_some()) } else { None };
        let mut subtype = Vec::new();
        if let Some(code) = interaction {
            subtype.push(json!({ "system": RESTFUL_INTERACTION, "code": code, "display": code }));
        }
        subtype.push(json!({ "system": OPERATION_CODE_SYSTEM, "code": self.operation }));

        let mut agent = Map::new();
        agent.insert("who".into(), json!({ "identifier": { "value": self.principal } }));
        if let Some(client_id) = &self.client_id {
            agent.insert("altId".into(), json!(client_id));
        }
        agent.insert("requestor".into(), json!(true));

        let mut source = Map::new();
        if let Some(datastore_id) = &self.datastore_id {
            source.insert("site".into(), json!(datastore_id));
        }
        source.insert("observer".into(), json!({ "display": "fhirlake" }));
        source.insert("type".into(), json!([{ "system": SECURITY_SOURCE_TYPE, "code": "4", "display": "Application Server" }]));

        let mut entity = Vec::new();
        if let (Some(resource_type), Some(resource_id)) = (&self.resource_type, &self.resource_id) {
            entity.push(json!({
                "what": { "reference": format!("{resource_type}/{resource_id}") },
                "type": { "system": AUDIT_ENTITY_TYPE, "code": "2", "display": "System Object" },
                "role": { "system": OBJECT_ROLE, "code": "4", "display": "Domain Resource" },
            }));
        }
        if let Some(patient) = &self.patient {
            entity.push(json!({
                "what": { "reference": patient },
                "type": { "system": AUDIT_ENTITY_TYPE, "code": "1", "display": "Person" },
                "role": { "system": OBJECT_ROLE, "code": "1", "display": "Patient" },
            }));
        }
        entity.push(json!({
            "what": { "identifier": { "value": self.request_id } },
            "type": { "system": BALP_ENTITY_TYPE, "code": "XrequestId", "display": "Request Id" },
        }));

        let outcome = match self.outcome {
            AuditOutcome::Success => "0",
            AuditOutcome::Denied => "4",
            AuditOutcome::Failed if self.status >= 500 => "8",
            AuditOutcome::Failed => "4",
        };
        let mut event = Map::new();
        event.insert("resourceType".into(), json!("AuditEvent"));
        event.insert("type".into(), json!({ "system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation" }));
        event.insert("subtype".into(), Value::Array(subtype));
        event.insert("action".into(), json!(action(&self.operation, interaction)));
        event.insert("recorded".into(), json!(self.time));
        event.insert("outcome".into(), json!(outcome));
        event.insert("outcomeDesc".into(), json!(format!("HTTP {}", self.status)));
        event.insert("agent".into(), json!([agent]));
        event.insert("source".into(), Value::Object(source));
        event.insert("entity".into(), Value::Array(entity));
        Value::Object(event)
    }
}

/// The `http://hl7.org/fhir/restful-interaction` code of a data-plane HealthLake action.
fn restful_interaction(operation: &str, has_type: bool) -> Option<&'static str> {
    Some(match operation {
        "GetCapabilities" => "capabilities",
        "ReadResource" => "read",
        "VersionReadResource" => "vread",
        "GetHistoryByResourceId" => "history-instance",
        "GetHistoryByType" => "history-type",
        "GetHistory" => "history-system",
        "CreateResource" => "create",
        "UpdateResource" => "update",
        "PatchResource" => "patch",
        "DeleteResource" => "delete",
        "SearchWithGet" | "SearchWithPost" if has_type => "search-type",
        "SearchWithGet" | "SearchWithPost" => "search-system",
        // HealthLake names batches and transactions alike; the record cannot tell them apart.
        "ProcessBundle" => "batch",
        "SearchEverything" | "StartFHIRExportJobWithGet" | "StartFHIRExportJobWithPost" => "operation",
        _ => return None,
    })
}

/// The AuditEvent `action` (C, R, U, D, E) of an operation.
fn action(operation: &str, interaction: Option<&str>) -> &'static str {
    match interaction {
        Some("create") => "C",
        Some("read" | "vread" | "history-instance" | "history-type" | "history-system" | "capabilities") => "R",
        Some("update" | "patch") => "U",
        Some("delete") => "D",
        Some(_) => "E",
        // Control-plane actions and the data plane's export-job polling, by verb.
        None => {
            let verb_is = |prefix: &str| operation.starts_with(prefix);
            if verb_is("Create") {
                "C"
            } else if verb_is("Describe") || verb_is("List") || verb_is("Get") {
                "R"
            } else if verb_is("Update") || verb_is("Tag") || verb_is("Untag") {
                "U"
            } else if verb_is("Delete") || verb_is("Cancel") {
                "D"
            } else {
                "E"
            }
        }
    }
}

/// Where audit records go.
///
/// `append` never fails the request: an implementation that cannot store a record logs a
/// warning (with no record content beyond ids) and counts the failure in [`AuditLog::failures`].
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends `record`. Returns once the record is accepted (written, or queued for writing).
    async fn append(&self, record: &AuditRecord);

    /// How many records could not be stored since this log was created.
    fn failures(&self) -> u64 {
        0
    }
}

/// Audit records kept in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAuditLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every record appended so far, in order.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn append(&self, record: &AuditRecord) {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).push(record.clone());
    }
}

/// Audit records as JSON lines on standard output ([`AuditRecord::to_json_line`]).
///
/// In AWS Lambda, standard output goes to the function's CloudWatch Logs log group, so this is
/// the audit sink of the Lambda functions: a metric or subscription filter
/// `{ $.type = "fhirlake.audit" }` selects the audit lines among the other log output.
///
/// Each line is written with one `write_all` under the stdout lock and then flushed, so lines
/// never interleave with each other or with other users of `std::io::stdout`. The write blocks
/// the calling task for the duration of one small write, as logging to stdout does.
#[derive(Debug, Default)]
pub struct StdoutAuditLog {
    failures: AtomicU64,
}

impl StdoutAuditLog {
    /// A log on this process's standard output.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl AuditLog for StdoutAuditLog {
    async fn append(&self, record: &AuditRecord) {
        let line = record.to_json_line();
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(request_id = %record.request_id, error = %e, "could not write an audit record to stdout");
        }
    }

    fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> AuditRecord {
        AuditRecord {
            time: "2026-12-01T20:31:02.123Z".into(),
            request_id: "req-1".into(),
            plane: "data".into(),
            principal: "user-7".into(),
            client_id: Some("app-1".into()),
            authentication: "smart".into(),
            operation: "ReadResource".into(),
            datastore_id: Some("0123456789abcdef0123456789abcdef".into()),
            resource_type: Some("Observation".into()),
            resource_id: Some("obs-1".into()),
            patient: Some("Patient/123".into()),
            outcome: AuditOutcome::Success,
            status: 200,
        }
    }

    fn minimal() -> AuditRecord {
        AuditRecord {
            time: "2026-12-01T20:31:02.000Z".into(),
            request_id: "req-2".into(),
            plane: "control".into(),
            principal: "anonymous".into(),
            client_id: None,
            authentication: "none".into(),
            operation: "Unknown".into(),
            datastore_id: None,
            resource_type: None,
            resource_id: None,
            patient: None,
            outcome: AuditOutcome::Denied,
            status: 403,
        }
    }

    #[test]
    fn json_line_is_exact() {
        let line = sample().to_json_line();
        let expected = concat!(
            r#"{"type":"fhirlake.audit","time":"2026-12-01T20:31:02.123Z","requestId":"req-1","plane":"data","#,
            r#""principal":"user-7","clientId":"app-1","authentication":"smart","operation":"ReadResource","#,
            r#""datastoreId":"0123456789abcdef0123456789abcdef","resourceType":"Observation","resourceId":"obs-1","#,
            r#""patient":"Patient/123","outcome":"success","status":200}"#,
            "\n"
        );
        assert_eq!(String::from_utf8(line).unwrap(), expected);
    }

    #[test]
    fn none_fields_are_omitted() {
        let line = String::from_utf8(minimal().to_json_line()).unwrap();
        assert_eq!(
            line,
            concat!(
                r#"{"type":"fhirlake.audit","time":"2026-12-01T20:31:02.000Z","requestId":"req-2","plane":"control","#,
                r#""principal":"anonymous","authentication":"none","operation":"Unknown","outcome":"denied","status":403}"#,
                "\n"
            )
        );
        for absent in ["clientId", "datastoreId", "resourceType", "resourceId", "patient", "null"] {
            assert!(!line.contains(absent), "{absent} in {line}");
        }
        // Plain serialization (without the line's type marker) omits them too.
        let value = serde_json::to_value(minimal()).unwrap();
        assert_eq!(value.as_object().unwrap().len(), 8);
        assert!(value.get("type").is_none());
    }

    #[test]
    fn lines_read_back() {
        for record in [sample(), minimal()] {
            let line = record.to_json_line();
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            let back: AuditRecord = serde_json::from_slice(&line).unwrap();
            assert_eq!(back, record);
        }
    }

    #[test]
    fn outcome_of_status() {
        for (status, outcome) in [
            (200, AuditOutcome::Success),
            (201, AuditOutcome::Success),
            (204, AuditOutcome::Success),
            (304, AuditOutcome::Success),
            (399, AuditOutcome::Success),
            (400, AuditOutcome::Failed),
            (401, AuditOutcome::Denied),
            (403, AuditOutcome::Denied),
            (404, AuditOutcome::Failed),
            (412, AuditOutcome::Failed),
            (500, AuditOutcome::Failed),
            (503, AuditOutcome::Failed),
            (100, AuditOutcome::Failed),
        ] {
            assert_eq!(AuditOutcome::of_status(status), outcome, "{status}");
        }
        assert_eq!(serde_json::to_value(AuditOutcome::Failed).unwrap(), json!("failed"));
        assert_eq!(serde_json::to_value(AuditOutcome::Denied).unwrap(), json!("denied"));
        assert_eq!(serde_json::to_value(AuditOutcome::Success).unwrap(), json!("success"));
    }

    #[test]
    fn time_format() {
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 20, 31, 2).unwrap() + chrono::Duration::milliseconds(123);
        assert_eq!(audit_time(t), "2026-12-01T20:31:02.123Z");
        assert_eq!(audit_time(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()), "2026-01-02T03:04:05.000Z");
    }

    fn assert_valid(event: &Value) {
        if let Err(issues) = fhirlake_fhir::validate::validate_resource(Some("AuditEvent"), event) {
            panic!("invalid AuditEvent {event:#}: {issues:?}");
        }
    }

    #[test]
    fn audit_event_of_a_read() {
        let event = sample().to_audit_event();
        assert_valid(&event);
        assert_eq!(
            event,
            json!({
                "resourceType": "AuditEvent",
                "type": { "system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation" },
                "subtype": [
                    { "system": RESTFUL_INTERACTION, "code": "read", "display": "read" },
                    { "system": OPERATION_CODE_SYSTEM, "code": "ReadResource" },
                ],
                "action": "R",
                "recorded": "2026-12-01T20:31:02.123Z",
                "outcome": "0",
                "outcomeDesc": "HTTP 200",
                "agent": [{ "who": { "identifier": { "value": "user-7" } }, "altId": "app-1", "requestor": true }],
                "source": {
                    "site": "0123456789abcdef0123456789abcdef",
                    "observer": { "display": "fhirlake" },
                    "type": [{ "system": SECURITY_SOURCE_TYPE, "code": "4", "display": "Application Server" }],
                },
                "entity": [
                    {
                        "what": { "reference": "Observation/obs-1" },
                        "type": { "system": AUDIT_ENTITY_TYPE, "code": "2", "display": "System Object" },
                        "role": { "system": OBJECT_ROLE, "code": "4", "display": "Domain Resource" },
                    },
                    {
                        "what": { "reference": "Patient/123" },
                        "type": { "system": AUDIT_ENTITY_TYPE, "code": "1", "display": "Person" },
                        "role": { "system": OBJECT_ROLE, "code": "1", "display": "Patient" },
                    },
                    {
                        "what": { "identifier": { "value": "req-1" } },
                        "type": { "system": BALP_ENTITY_TYPE, "code": "XrequestId", "display": "Request Id" },
                    },
                ],
            })
        );
    }

    #[test]
    fn the_validator_sees_a_broken_audit_event() {
        // The checks above mean something: R4 requires agent.requestor and source.observer.
        let mut event = sample().to_audit_event();
        event["agent"][0].as_object_mut().unwrap().remove("requestor");
        assert!(fhirlake_fhir::validate::validate_resource(Some("AuditEvent"), &event).is_err());
        let mut event = sample().to_audit_event();
        event["source"].as_object_mut().unwrap().remove("observer");
        assert!(fhirlake_fhir::validate::validate_resource(Some("AuditEvent"), &event).is_err());
        let mut event = sample().to_audit_event();
        event["action"] = json!("X");
        assert!(fhirlake_fhir::validate::validate_resource(Some("AuditEvent"), &event).is_err());
    }

    #[test]
    fn audit_event_of_a_denied_control_plane_request() {
        let event = minimal().to_audit_event();
        assert_valid(&event);
        assert_eq!(event["outcome"], "4");
        assert_eq!(event["action"], "E");
        assert_eq!(event["subtype"], json!([{ "system": OPERATION_CODE_SYSTEM, "code": "Unknown" }]));
        assert_eq!(event["agent"][0], json!({ "who": { "identifier": { "value": "anonymous" } }, "requestor": true }));
        assert_eq!(event["source"].get("site"), None);
        assert_eq!(event["entity"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn audit_event_codes_by_operation() {
        // plane, operation, resource type, expected restful-interaction, expected action
        type Case = (&'static str, &'static str, Option<&'static str>, Option<&'static str>, &'static str);
        let cases: &[Case] = &[
            ("data", "GetCapabilities", None, Some("capabilities"), "R"),
            ("data", "ReadResource", Some("Patient"), Some("read"), "R"),
            ("data", "VersionReadResource", Some("Patient"), Some("vread"), "R"),
            ("data", "GetHistoryByResourceId", Some("Patient"), Some("history-instance"), "R"),
            ("data", "GetHistoryByType", Some("Patient"), Some("history-type"), "R"),
            ("data", "GetHistory", None, Some("history-system"), "R"),
            ("data", "CreateResource", Some("Patient"), Some("create"), "C"),
            ("data", "UpdateResource", Some("Patient"), Some("update"), "U"),
            ("data", "PatchResource", Some("Patient"), Some("patch"), "U"),
            ("data", "DeleteResource", Some("Patient"), Some("delete"), "D"),
            ("data", "SearchWithGet", Some("Patient"), Some("search-type"), "E"),
            ("data", "SearchWithPost", Some("Patient"), Some("search-type"), "E"),
            ("data", "SearchWithGet", None, Some("search-system"), "E"),
            ("data", "SearchWithPost", None, Some("search-system"), "E"),
            ("data", "SearchEverything", Some("Patient"), Some("operation"), "E"),
            ("data", "ProcessBundle", None, Some("batch"), "E"),
            ("data", "StartFHIRExportJobWithGet", None, Some("operation"), "E"),
            ("data", "StartFHIRExportJobWithPost", Some("Group"), Some("operation"), "E"),
            ("data", "DescribeFHIRExportJobWithGet", None, None, "R"),
            ("data", "CancelFHIRExportJobWithDelete", None, None, "D"),
            ("data", "GetExportedFile", None, None, "R"),
            ("data", "GetSmartConfiguration", None, None, "R"),
            ("data", "Unknown", None, None, "E"),
            ("control", "CreateFHIRDatastore", None, None, "C"),
            ("control", "DescribeFHIRDatastore", None, None, "R"),
            ("control", "ListFHIRDatastores", None, None, "R"),
            ("control", "DeleteFHIRDatastore", None, None, "D"),
            ("control", "TagResource", None, None, "U"),
            ("control", "UntagResource", None, None, "U"),
            ("control", "StartFHIRImportJob", None, None, "E"),
            // A control-plane request is never a FHIR interaction, whatever it is called.
            ("control", "ReadResource", None, None, "E"),
        ];
        for &(plane, operation, resource_type, interaction, action) in cases {
            let record = AuditRecord {
                plane: plane.into(),
                operation: operation.into(),
                resource_type: resource_type.map(Into::into),
                resource_id: None,
                patient: None,
                ..sample()
            };
            let event = record.to_audit_event();
            assert_valid(&event);
            let subtype = event["subtype"].as_array().unwrap();
            match interaction {
                Some(code) => {
                    assert_eq!(subtype.len(), 2, "{operation}");
                    assert_eq!(subtype[0], json!({ "system": RESTFUL_INTERACTION, "code": code, "display": code }), "{operation}");
                }
                None => assert_eq!(subtype.len(), 1, "{operation}"),
            }
            assert_eq!(subtype.last().unwrap(), &json!({ "system": OPERATION_CODE_SYSTEM, "code": operation }));
            assert_eq!(event["action"], action, "{plane} {operation}");
            // Without a resource id there is no resource entity: only the request id.
            assert_eq!(event["entity"].as_array().unwrap().len(), 1, "{operation}");
        }
    }

    #[test]
    fn audit_event_outcomes() {
        for (status, code) in [(200, "0"), (302, "0"), (401, "4"), (403, "4"), (400, "4"), (404, "4"), (500, "8"), (503, "8")] {
            let record = AuditRecord { status, outcome: AuditOutcome::of_status(status), ..sample() };
            let event = record.to_audit_event();
            assert_valid(&event);
            assert_eq!(event["outcome"], code, "{status}");
            assert_eq!(event["outcomeDesc"], format!("HTTP {status}"));
        }
    }

    #[tokio::test]
    async fn memory_log_keeps_records_in_order() {
        let log = MemoryAuditLog::new();
        log.append(&sample()).await;
        log.append(&minimal()).await;
        assert_eq!(log.records(), vec![sample(), minimal()]);
        assert_eq!(log.failures(), 0);
        let dynamic: &dyn AuditLog = &log;
        dynamic.append(&sample()).await;
        assert_eq!(log.records().len(), 3);
    }

    #[tokio::test]
    async fn stdout_log_writes() {
        let log = StdoutAuditLog::new();
        log.append(&sample()).await;
        assert_eq!(log.failures(), 0);
    }
}
