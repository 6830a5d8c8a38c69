//! HealthLake's control plane on the wire: AWS JSON 1.0 (`POST /`, `X-Amz-Target:
//! HealthLake.<Operation>`, `Content-Type: application/x-amz-json-1.0`).
//!
//! This layer only parses, dispatches and renders; the semantics live in
//! [`fhirlake_core::datastores`]. Every answer carries an `x-amzn-RequestId` header.
//!
//! ## Errors
//! Errors are `{"__type": "<Type>", "message": "<text>"}` with an `x-amzn-ErrorType` header.
//! HealthLake's service model gives its exceptions no HTTP status (no `httpError` trait), so
//! AWS JSON 1.0's defaults apply: client faults are 400 and server faults 500, except
//! authentication and authorization failures, which AWS answers with 403. Clients key on
//! `__type`; the status matters only for retries (5xx are retried, 4xx are not).
//!
//! | cause | `__type` | status |
//! |-------|----------|--------|
//! | `X-Amz-Target` missing, of another service, or naming no HealthLake operation | `UnknownOperationException` | 400 |
//! | body is not JSON | `SerializationException` | 400 |
//! | body is JSON of the wrong shape (missing member, wrong type, unknown enum value) | `ValidationException` | 400 |
//! | `CoreError::Invalid` (and any other client-side `CoreError`) | `ValidationException` | 400 |
//! | HealthLake operation fhirlake does not offer yet (jobs, profiles, restore) | `ValidationException` | 400 |
//! | `CoreError::NotFound` / `Gone` | `ResourceNotFoundException` | 400 |
//! | `CoreError::Conflict` | `ConflictException` | 400 |
//! | `CoreError::QuotaExceeded` | `ServiceQuotaExceededException` | 400 |
//! | `CoreError::Forbidden`, and the auth middleware's denials | `AccessDeniedException` (or the SigV4 type the middleware names) | 403 |
//! | `CoreError::Storage` / `Internal` | `InternalServerException` (detail logged, never sent) | 500 |

use std::future::Future;

use axum::body::Body;
use axum::response::Response;
use fhirlake_core::{CoreError, CoreResult, Services};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The media type of every control-plane request and response.
pub const AWS_JSON_1_0: &str = "application/x-amz-json-1.0";

/// `X-Amz-Target` prefix of HealthLake operations.
const TARGET_PREFIX: &str = "HealthLake.";

/// HealthLake operations that exist in the service model but that fhirlake does not serve yet.
const NOT_YET_SUPPORTED: &[&str] = &[
    "RestoreFHIRDatastore",
    "CreateDataTransformationProfile",
    "GetDataTransformationProfile",
    "UpdateDataTransformationProfile",
    "DeleteDataTransformationProfile",
    "ListDataTransformationProfiles",
    "ListDataTransformationProfileVersions",
    "PublishDataTransformationProfile",
    "StartDataTransformationJob",
    "DescribeDataTransformationJob",
    "ListDataTransformationJobs",
    "UpdateProfileWithAgent",
];

/// Answers one control-plane request: `target` is the `X-Amz-Target` header, `body` the JSON body.
pub async fn handle(services: &Services, target: Option<&str>, body: &[u8]) -> Response {
    let Some(operation) = target.and_then(|t| t.strip_prefix(TARGET_PREFIX)) else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "X-Amz-Target must name a HealthLake operation (HealthLake.<Operation>)",
        );
    };
    let datastores = &services.datastores;
    let jobs = &services.jobs;
    match operation {
        "CreateFHIRDatastore" => call(operation, body, |r| datastores.create(r)).await,
        "DescribeFHIRDatastore" => call(operation, body, |r| datastores.describe(r)).await,
        "ListFHIRDatastores" => call(operation, body, |r| datastores.list(r)).await,
        "UpdateFHIRDatastore" => call(operation, body, |r| datastores.update(r)).await,
        "DeleteFHIRDatastore" => call(operation, body, |r| datastores.delete(r)).await,
        "TagResource" => call(operation, body, |r| datastores.tag_resource(r)).await,
        "UntagResource" => call(operation, body, |r| datastores.untag_resource(r)).await,
        "ListTagsForResource" => call(operation, body, |r| datastores.list_tags_for_resource(r)).await,
        "StartFHIRImportJob" => call(operation, body, |r| jobs.start_import(r)).await,
        "DescribeFHIRImportJob" => call(operation, body, |r| jobs.describe_import(r)).await,
        "ListFHIRImportJobs" => call(operation, body, |r| jobs.list_import(r)).await,
        "StartFHIRExportJob" => call(operation, body, |r| jobs.start_export(r)).await,
        "DescribeFHIRExportJob" => call(operation, body, |r| jobs.describe_export(r)).await,
        "ListFHIRExportJobs" => call(operation, body, |r| jobs.list_export(r)).await,
        _ if NOT_YET_SUPPORTED.contains(&operation) => {
            aws_error(StatusCode::BAD_REQUEST, "ValidationException", &format!("{operation} is not supported by fhirlake yet"))
        }
        _ => aws_error(StatusCode::BAD_REQUEST, "UnknownOperationException", "X-Amz-Target names no HealthLake operation"),
    }
}

/// Parses the body as `Req`, runs the operation and renders its result or error.
async fn call<Req, Resp, F, Fut>(operation: &str, body: &[u8], run: F) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = CoreResult<Resp>>,
{
    let request = match parse::<Req>(body) {
        Ok(request) => request,
        Err((error_type, message)) => return aws_error(StatusCode::BAD_REQUEST, error_type, &message),
    };
    match run(request).await {
        Ok(output) => match serde_json::to_vec(&output) {
            Ok(json) => aws_response(StatusCode::OK, json),
            Err(e) => {
                tracing::error!(operation, error = %e, "control-plane response does not serialise");
                internal_error()
            }
        },
        Err(e) => core_error(operation, e),
    }
}

/// Parses an AWS JSON body. An empty body is `{}` (AWS JSON clients may omit it); anything that
/// is not JSON is a `SerializationException`; JSON that does not fit the shape is a
/// `ValidationException` naming the problem. Errors are (`__type`, message).
fn parse<Req: DeserializeOwned>(body: &[u8]) -> Result<Req, (&'static str, String)> {
    let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(body).map_err(|_| ("SerializationException", "the request body is not valid JSON".to_string()))?
    };
    if !value.is_object() {
        return Err(("SerializationException", "the request body must be a JSON object".to_string()));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = if path == "." {
            format!("1 validation error detected: {}", e.inner())
        } else {
            format!("1 validation error detected: value at '{path}' failed to satisfy constraint: {}", e.inner())
        };
        ("ValidationException", message)
    })
}

/// Renders a service error as its AWS error (see the module doc's table).
fn core_error(operation: &str, error: CoreError) -> Response {
    match error {
        CoreError::Invalid(message) => aws_error(StatusCode::BAD_REQUEST, "ValidationException", &message),
        CoreError::NotFound(message) | CoreError::Gone(message) => {
            aws_error(StatusCode::BAD_REQUEST, "ResourceNotFoundException", &message)
        }
        CoreError::Conflict(message) => aws_error(StatusCode::BAD_REQUEST, "ConflictException", &message),
        CoreError::Forbidden(message) => aws_error(StatusCode::FORBIDDEN, "AccessDeniedException", &message),
        CoreError::QuotaExceeded(message) => aws_error(StatusCode::BAD_REQUEST, "ServiceQuotaExceededException", &message),
        CoreError::PreconditionFailed(message) | CoreError::Unprocessable(message) => {
            aws_error(StatusCode::BAD_REQUEST, "ValidationException", &message)
        }
        CoreError::InvalidResource(_) => aws_error(StatusCode::BAD_REQUEST, "ValidationException", "the request is not valid"),
        e @ (CoreError::Storage(_) | CoreError::Internal(_)) => {
            tracing::error!(operation, error = %e, "control-plane operation failed");
            internal_error()
        }
    }
}

fn internal_error() -> Response {
    aws_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException", "an internal error occurred; try again")
}

/// An AWS JSON 1.0 error response: `{"__type": error_type, "message": message}` with `status`.
/// Also used by the authentication middleware for its 403s (`AccessDeniedException`,
/// `MissingAuthenticationTokenException`, `InvalidSignatureException`,
/// `UnrecognizedClientException`, ...).
pub fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": error_type, "message": message });
    let mut response = aws_response(status, body.to_string().into_bytes());
    if let Ok(value) = HeaderValue::from_str(error_type) {
        response.headers_mut().insert("x-amzn-ErrorType", value);
    }
    response
}

fn aws_response(status: StatusCode, json: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(AWS_JSON_1_0));
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-amzn-RequestId", id);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fhirlake_core::{Backends, ServiceConfig};
    use fhirlake_ports::memory::{MemoryItemTable, MemoryKeyService, MemoryObjectStore};
    use fhirlake_ports::{RandomIds, SystemClock};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};

    use super::*;

    fn services() -> Services {
        let backends = Backends {
            table: Arc::new(MemoryItemTable::new()),
            objects: Arc::new(MemoryObjectStore::new()),
            keys: Arc::new(MemoryKeyService::new()),
            buckets: Arc::new(fhirlake_ports::MemoryBuckets::new()),
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
        };
        let config = ServiceConfig::new("us-east-1", "123456789012", "http://localhost:8080");
        Services::new(config, backends)
    }

    async fn call(services: &Services, operation: &str, body: Value) -> (StatusCode, Value) {
        send(services, Some(&format!("HealthLake.{operation}")), body.to_string().as_bytes()).await
    }

    async fn send(services: &Services, target: Option<&str>, body: &[u8]) -> (StatusCode, Value) {
        let response = handle(services, target, body).await;
        let status = response.status();
        assert_eq!(response.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()), Some(AWS_JSON_1_0.as_bytes()));
        assert!(response.headers().contains_key("x-amzn-RequestId"));
        let bytes = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => panic!("body: {e}"),
        };
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn assert_error(result: &(StatusCode, Value), status: StatusCode, error_type: &str) {
        assert_eq!(result.0, status, "{}", result.1);
        assert_eq!(result.1["__type"], error_type, "{}", result.1);
        assert!(result.1["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", result.1);
    }

    #[tokio::test]
    async fn datastore_lifecycle_on_the_wire() {
        let s = services();
        let (status, created) = call(
            &s,
            "CreateFHIRDatastore",
            json!({"DatastoreTypeVersion": "R4", "DatastoreName": "wire", "Tags": [{"Key": "k", "Value": "v"}]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{created}");
        assert_eq!(created["DatastoreStatus"], "CREATING");
        let id = created["DatastoreId"].as_str().unwrap_or_default().to_string();
        assert_eq!(id.len(), 32);
        assert_eq!(created["DatastoreEndpoint"], format!("http://localhost:8080/datastore/{id}/r4/"));

        let (status, described) = call(&s, "DescribeFHIRDatastore", json!({"DatastoreId": id})).await;
        assert_eq!(status, StatusCode::OK);
        let props = &described["DatastoreProperties"];
        assert_eq!(props["DatastoreStatus"], "ACTIVE");
        assert_eq!(props["DatastoreTypeVersion"], "R4");
        assert!(props["CreatedAt"].is_number());
        assert_eq!(props["SseConfiguration"]["KmsEncryptionConfig"]["CmkType"], "AWS_OWNED_KMS_KEY");

        let (status, listed) = call(&s, "ListFHIRDatastores", json!({"Filter": {"DatastoreName": "wire"}, "MaxResults": 1})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed["DatastorePropertiesList"].as_array().map(Vec::len), Some(1));
        assert!(listed.get("NextToken").is_none());

        let (status, updated) = call(&s, "UpdateFHIRDatastore", json!({"DatastoreId": id, "DatastoreName": "renamed"})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(updated["DatastoreProperties"]["DatastoreName"], "renamed");

        let arn = created["DatastoreArn"].as_str().unwrap_or_default().to_string();
        let (status, body) = call(&s, "TagResource", json!({"ResourceARN": arn, "Tags": [{"Key": "k2", "Value": "v2"}]})).await;
        assert_eq!((status, body), (StatusCode::OK, json!({})));
        let (status, body) = call(&s, "UntagResource", json!({"ResourceARN": arn, "TagKeys": ["k"]})).await;
        assert_eq!((status, body), (StatusCode::OK, json!({})));
        let (_, tags) = call(&s, "ListTagsForResource", json!({"ResourceARN": arn})).await;
        assert_eq!(tags, json!({"Tags": [{"Key": "k2", "Value": "v2"}]}));

        let (status, deleted) = call(&s, "DeleteFHIRDatastore", json!({"DatastoreId": id})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(deleted["DatastoreStatus"], "DELETING");
        let (_, described) = call(&s, "DescribeFHIRDatastore", json!({"DatastoreId": id})).await;
        assert_eq!(described["DatastoreProperties"]["DatastoreStatus"], "DELETED");
        assert_error(&call(&s, "DeleteFHIRDatastore", json!({"DatastoreId": id})).await, StatusCode::BAD_REQUEST, "ConflictException");
        assert!(s.datastores.active(&id).await.is_err());
    }

    #[tokio::test]
    async fn targets_and_bodies_are_checked() {
        let s = services();
        assert_error(&send(&s, None, b"{}").await, StatusCode::BAD_REQUEST, "UnknownOperationException");
        assert_error(&send(&s, Some("DynamoDB_20120810.ListTables"), b"{}").await, StatusCode::BAD_REQUEST, "UnknownOperationException");
        assert_error(&send(&s, Some("HealthLake.DoSomething"), b"{}").await, StatusCode::BAD_REQUEST, "UnknownOperationException");
        assert_error(&send(&s, Some("HealthLake.StartFHIRImportJob"), b"{}").await, StatusCode::BAD_REQUEST, "ValidationException");
        assert_error(
            &send(&s, Some("HealthLake.ListFHIRDatastores"), b"{not json").await,
            StatusCode::BAD_REQUEST,
            "SerializationException",
        );
        assert_error(&send(&s, Some("HealthLake.ListFHIRDatastores"), b"[1, 2]").await, StatusCode::BAD_REQUEST, "SerializationException");

        // An empty body is an empty object.
        let (status, listed) = send(&s, Some("HealthLake.ListFHIRDatastores"), b"").await;
        assert_eq!((status, listed), (StatusCode::OK, json!({"DatastorePropertiesList": []})));

        let cases = [
            ("CreateFHIRDatastore", json!({})),
            ("CreateFHIRDatastore", json!({"DatastoreTypeVersion": "R5"})),
            ("CreateFHIRDatastore", json!({"DatastoreTypeVersion": "R4", "DatastoreName": 7})),
            ("CreateFHIRDatastore", json!({"DatastoreTypeVersion": "R4", "DatastoreName": "bad|name"})),
            (
                "CreateFHIRDatastore",
                json!({"DatastoreTypeVersion": "R4", "SseConfiguration": {"KmsEncryptionConfig": {"CmkType": "CUSTOMER_MANAGED_KMS_KEY"}}}),
            ),
            ("CreateFHIRDatastore", json!({"DatastoreTypeVersion": "R4", "ClientToken": "bad token"})),
            ("DescribeFHIRDatastore", json!({})),
            ("DescribeFHIRDatastore", json!({"DatastoreId": "x".repeat(33)})),
            ("ListFHIRDatastores", json!({"MaxResults": 0})),
            ("ListFHIRDatastores", json!({"MaxResults": "ten"})),
            ("ListFHIRDatastores", json!({"NextToken": "garbage!"})),
            ("ListFHIRDatastores", json!({"Filter": {"DatastoreStatus": "SLEEPING"}})),
            (
                "CreateFHIRDatastore",
                json!({"DatastoreTypeVersion": "R4", "SseConfiguration": {"KmsEncryptionConfig": {"CmkType": "MINE"}}}),
            ),
            ("TagResource", json!({"ResourceARN": "arn:aws:s3:::bucket", "Tags": []})),
            ("UntagResource", json!({"ResourceARN": "arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/abc"})),
        ];
        for (operation, body) in cases {
            let result = call(&s, operation, body.clone()).await;
            assert_eq!(result.1["__type"], "ValidationException", "{operation} {body} -> {}", result.1);
            assert_eq!(result.0, StatusCode::BAD_REQUEST);
        }

        let (_, body) = call(&s, "CreateFHIRDatastore", json!({"DatastoreTypeVersion": "R4", "Tags": [{"Key": "k", "Value": 5}]})).await;
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("'Tags[0].Value'"), "{message}");
        let (_, body) = call(&s, "CreateFHIRDatastore", json!({})).await;
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("DatastoreTypeVersion"), "{message}");

        let unknown = "0123456789abcdef0123456789abcdef";
        assert_error(
            &call(&s, "DescribeFHIRDatastore", json!({"DatastoreId": unknown})).await,
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
        );
        assert_error(
            &call(&s, "DeleteFHIRDatastore", json!({"DatastoreId": unknown})).await,
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
        );
        assert_error(
            &call(&s, "UpdateFHIRDatastore", json!({"DatastoreId": unknown})).await,
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
        );
        let arn = format!("arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/{unknown}");
        assert_error(
            &call(&s, "ListTagsForResource", json!({"ResourceARN": arn})).await,
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
        );
    }

    #[tokio::test]
    async fn internal_errors_carry_no_detail() {
        let response = core_error("Op", CoreError::Internal("secret table name".into()));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("InternalServerException"));
        assert!(!text.contains("secret"));
    }

    #[tokio::test]
    async fn aws_error_renders_the_json_1_0_error_shape() {
        let response = aws_error(StatusCode::FORBIDDEN, "InvalidSignatureException", "signature mismatch");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers().get("x-amzn-ErrorType").map(|v| v.as_bytes()), Some(&b"InvalidSignatureException"[..]));
        let bytes = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(body, json!({"__type": "InvalidSignatureException", "message": "signature mismatch"}));
    }
}
