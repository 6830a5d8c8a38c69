//! Shared by the handler tests: the sample events of `events/`, re-signed at the current time,
//! dispatched through the very service the functions run (`fhirlake_lambda::http_service` under
//! `lambda_http`'s adapter), with the response read back from the JSON Lambda would return to
//! API Gateway.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::Utc;
use fhirlake_auth::{Credentials, HttpRequest, Payload, Signer, StaticCredentials};
use fhirlake_core::Backends;
use fhirlake_lambda::{Authentication, AuthorizerContext, AuthorizerResponse, HttpContext};
use fhirlake_ports::memory::{MemoryItemTable, MemoryKeyService, MemoryObjectStore};
use fhirlake_ports::{RandomIds, SystemClock};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use lambda_http::tower::ServiceExt;
use lambda_http::{Context, LambdaEvent};
use serde_json::Value;

/// The datastore id the sample events carry; tests replace it with a real one.
pub const EVENTS_DATASTORE: &str = "0123456789abcdef0123456789abcdef";
/// The Patient id the sample events carry.
pub const EVENTS_PATIENT: &str = "7a3c6f51-2b1e-4d8a-9f0e-5c4b3a291807";
/// The API Gateway domain of the sample events.
pub const DOMAIN: &str = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com";
pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";
/// The key pair the sample events name.
pub const ACCESS_KEY_ID: &str = "AKIDFHIRLAKEEVENTS";
pub const SECRET: &str = "fhirlake-events-secret";

/// Headers a client does not sign: those botocore leaves out and those API Gateway adds.
const NOT_SIGNED: &[&str] = &[
    "authorization",
    "x-amz-date",
    "content-length",
    "user-agent",
    "x-amzn-trace-id",
    "x-forwarded-for",
    "x-forwarded-port",
    "x-forwarded-proto",
];

pub fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

/// One sample event, as JSON.
#[derive(Clone)]
pub struct Event(pub Value);

impl Event {
    /// `events/{name}`.
    pub fn load(name: &str) -> Self {
        let path = events_dir().join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Event(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not json: {e}")))
    }

    /// Replaces `from` with `to` in every string of the event.
    pub fn replace(mut self, from: &str, to: &str) -> Self {
        fn walk(value: &mut Value, from: &str, to: &str) {
            match value {
                Value::String(s) if s.contains(from) => *s = s.replace(from, to),
                Value::Array(items) => items.iter_mut().for_each(|v| walk(v, from, to)),
                Value::Object(map) => map.values_mut().for_each(|v| walk(v, from, to)),
                _ => {}
            }
        }
        walk(&mut self.0, from, to);
        self
    }

    pub fn with_datastore(self, id: &str) -> Self {
        self.replace(EVENTS_DATASTORE, id)
    }

    pub fn with_patient(self, id: &str) -> Self {
        self.replace(EVENTS_PATIENT, id)
    }

    /// The body as the client sent it (decoded from base64 when the event says so).
    pub fn body(&self) -> Vec<u8> {
        let text = self.0["body"].as_str().unwrap_or_default();
        if self.0["isBase64Encoded"].as_bool().unwrap_or(false) {
            BASE64.decode(text).expect("a base64 body")
        } else {
            text.as_bytes().to_vec()
        }
    }

    /// Replaces the body, base64-encoded as API Gateway delivers non-text bodies.
    pub fn with_body(mut self, body: &[u8]) -> Self {
        self.0["body"] = Value::String(BASE64.encode(body));
        self.0["isBase64Encoded"] = Value::Bool(true);
        self.set_header("content-length", &body.len().to_string())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.0["headers"][name].as_str()
    }

    pub fn set_header(mut self, name: &str, value: &str) -> Self {
        self.0["headers"][name] = Value::String(value.to_string());
        self
    }

    pub fn method(&self) -> String {
        self.0["requestContext"]["http"]["method"].as_str().expect("a method").to_string()
    }

    /// Drops `requestContext.authorizer`.
    pub fn without_authorizer(mut self) -> Self {
        if let Some(context) = self.0["requestContext"].as_object_mut() {
            context.remove("authorizer");
        }
        self
    }

    /// Signs the event for `service` with `credentials` now, as a client would have signed the
    /// request: the headers it sent (not those API Gateway adds), the raw path and query, the
    /// body.
    pub fn signed_with(self, credentials: &Credentials, service: &str) -> Self {
        let headers: Vec<(String, String)> = self.0["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .filter(|(name, _)| !NOT_SIGNED.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_string()))
            .collect();
        let body = self.body();
        let method = self.method();
        let path = self.0["rawPath"].as_str().unwrap_or("/").to_string();
        let query = self.0["rawQueryString"].as_str().unwrap_or("").to_string();
        let request = HttpRequest::new(&method, &path, &query, &headers, Payload::Bytes(&body));
        let signed = Signer::new(REGION).with_service(service).sign(credentials, &request, Utc::now()).expect("sign");
        self.set_header("x-amz-date", &signed.x_amz_date).set_header("authorization", &signed.authorization)
    }

    /// Signed for `healthlake` with the sample key pair.
    pub fn signed(self) -> Self {
        self.signed_with(&Credentials::new(ACCESS_KEY_ID, SECRET), "healthlake")
    }

    pub fn to_json(&self) -> String {
        self.0.to_string()
    }
}

/// A response as Lambda returns it to API Gateway (payload format 2.0).
#[derive(Debug)]
pub struct WireResponse {
    pub status: u16,
    pub headers: serde_json::Map<String, Value>,
    pub body: Vec<u8>,
    pub is_base64_encoded: bool,
}

impl WireResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not json ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `event` through `lambda_http`'s adapter and the functions' service, as the Lambda
/// runtime does, and parses the JSON response it would post back.
pub async fn invoke(context: &Arc<HttpContext>, event: &Event) -> WireResponse {
    invoke_json(context, &event.to_json()).await
}

pub async fn invoke_json(context: &Arc<HttpContext>, event: &str) -> WireResponse {
    let request: lambda_http::request::LambdaRequest = serde_json::from_str(event).expect("an api gateway v2 event");
    let adapter = lambda_http::Adapter::from(fhirlake_lambda::http_service(context.clone()));
    let response = adapter.oneshot(LambdaEvent::new(request, Context::default())).await.expect("the service is infallible");
    let wire = serde_json::to_value(&response).expect("the response serialises");
    let is_base64_encoded = wire["isBase64Encoded"].as_bool().expect("isBase64Encoded");
    let text = wire["body"].as_str().unwrap_or_default();
    let body = if is_base64_encoded { BASE64.decode(text).expect("base64 body") } else { text.as_bytes().to_vec() };
    WireResponse {
        status: wire["statusCode"].as_u64().expect("statusCode") as u16,
        headers: wire["headers"].as_object().cloned().unwrap_or_default(),
        body,
        is_base64_encoded,
    }
}

/// Sends an authorizer event through the authorizer function's service.
pub async fn authorize(context: &Arc<AuthorizerContext>, event: &Event) -> AuthorizerResponse {
    let payload: ApiGatewayV2CustomAuthorizerV2Request = serde_json::from_value(event.0.clone()).expect("an authorizer v2 event");
    let service = fhirlake_lambda::authorizer_service(context.clone());
    service.oneshot(LambdaEvent::new(payload, Context::default())).await.expect("the service is infallible")
}

/// Fresh memory adapters.
pub fn memory_backends() -> Backends {
    Backends {
        table: Arc::new(MemoryItemTable::new()),
        objects: Arc::new(MemoryObjectStore::new()),
        keys: Arc::new(MemoryKeyService::new()),
        buckets: Arc::new(fhirlake_ports::MemoryBuckets::new()),
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    }
}

/// SigV4 against the sample key pair, without reloading.
pub fn sample_keys() -> Authentication {
    Authentication::SigV4 { store: Arc::new(StaticCredentials::new(ACCESS_KEY_ID, SECRET)), refresh: None }
}

/// An HTTP function over memory adapters.
pub fn memory_context(authentication: Authentication, public_url: Option<&str>) -> Arc<HttpContext> {
    Arc::new(HttpContext::new(REGION, ACCOUNT_ID, public_url, memory_backends(), authentication))
}
