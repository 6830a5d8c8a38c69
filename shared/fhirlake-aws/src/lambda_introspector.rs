//! [`LambdaIntrospector`]: the [`TokenIntrospector`] port on AWS Lambda, HealthLake's
//! `IdpLambdaArn` contract. Each introspection is one synchronous `Invoke`
//! (`RequestResponse`) of the datastore's token-validation function with the
//! [`IntrospectionEvent`] as payload; its answer is the function's JSON result.
//!
//! The whole call, retries of the SDK included, must finish within [`INTROSPECTION_BUDGET`]
//! (1 second). Every way it can fail without a readable answer is
//! [`SmartError::IntrospectionUnavailable`] (503): the function was not asked or gave no
//! judgement, so the client should retry rather than discard its token.
//!
//! | outcome | error |
//! | --- | --- |
//! | no answer within the budget | `IntrospectionUnavailable("token validation function timed out")` |
//! | an SDK error: unknown function, access denied, throttling, a network failure | `IntrospectionUnavailable("token validation function could not be invoked")` |
//! | the invocation reports a `FunctionError` (`Unhandled`: the function raised or crashed; `Handled`) | `IntrospectionUnavailable("token validation function failed")` |
//! | a result that is not JSON, or longer than [`MAX_RESPONSE_BYTES`](fhirlake_smart::introspection::MAX_RESPONSE_BYTES) | `IntrospectionUnavailable("introspection response is not json")`, `("introspection response too large")` |
//! | a JSON result | returned as is; [`claims_from_introspection`](fhirlake_smart::claims_from_introspection) then decides (401 when it does not accept the token) |
//!
//! A function that refuses a token should answer `"isAuthorized": "false"` (a 401 for the
//! client); one that raises an exception instead gets the client a 503. Either way no access is
//! granted.
//!
//! Log lines carry the function ARN, the SDK's error code and the `FunctionError` kind only:
//! never the event (it holds the bearer token) nor the function's result or error message
//! (which may echo it).

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use fhirlake_smart::introspection::{response_document, IntrospectionEvent, TokenIntrospector, INTROSPECTION_BUDGET};
use fhirlake_smart::SmartError;
use serde_json::Value;

use crate::error::service_code;

/// Asks a Lambda function about bearer tokens (see the module doc).
#[derive(Debug, Clone)]
pub struct LambdaIntrospector {
    client: aws_sdk_lambda::Client,
    function_arn: String,
}

impl LambdaIntrospector {
    /// An introspector invoking `function_arn` (a datastore's `IdpLambdaArn`; a function name or
    /// a qualified ARN works too) through `client`.
    pub fn new(client: aws_sdk_lambda::Client, function_arn: impl Into<String>) -> LambdaIntrospector {
        LambdaIntrospector { client, function_arn: function_arn.into() }
    }

    /// An introspector invoking `function_arn` with a client built from `config` (region,
    /// credentials and, for an emulator, endpoint URL).
    pub fn from_sdk_config(config: &SdkConfig, function_arn: impl Into<String>) -> LambdaIntrospector {
        LambdaIntrospector::new(aws_sdk_lambda::Client::new(config), function_arn)
    }

    /// The function this introspector invokes.
    pub fn function_arn(&self) -> &str {
        &self.function_arn
    }
}

#[async_trait]
impl TokenIntrospector for LambdaIntrospector {
    async fn introspect(&self, event: &IntrospectionEvent) -> Result<Value, SmartError> {
        let invoke = self
            .client
            .invoke()
            .function_name(&self.function_arn)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(event.to_json_bytes()))
            .send();
        let output = match tokio::time::timeout(INTROSPECTION_BUDGET, invoke).await {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => {
                tracing::warn!(function = %self.function_arn, error = sdk_error_summary(&error), "token validation function could not be invoked");
                return Err(SmartError::IntrospectionUnavailable("token validation function could not be invoked"));
            }
            Err(_) => {
                tracing::warn!(function = %self.function_arn, "token validation function timed out");
                return Err(SmartError::IntrospectionUnavailable("token validation function timed out"));
            }
        };
        if let Some(kind) = output.function_error() {
            tracing::warn!(function = %self.function_arn, function_error = kind, "token validation function failed");
            return Err(SmartError::IntrospectionUnavailable("token validation function failed"));
        }
        response_document(output.payload().map(Blob::as_ref).unwrap_or_default())
    }
}

/// The error code of a service error, else the kind of failure: nothing from the request.
fn sdk_error_summary<E: aws_sdk_lambda::error::ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> &str {
    match error {
        SdkError::ServiceError(_) => service_code(error).unwrap_or("service error"),
        SdkError::TimeoutError(_) => "sdk timeout",
        SdkError::DispatchFailure(_) => "dispatch failure",
        SdkError::ResponseError(_) => "unreadable response",
        SdkError::ConstructionFailure(_) => "request construction failure",
        _ => "sdk error",
    }
}

#[cfg(all(test, feature = "moto"))]
mod tests {
    //! Against the moto server of this test binary. moto cannot run function code here (no
    //! Docker), so these tests use two of its modes, switched through `POST /moto-api/config`:
    //!
    //! - the default (`{"lambda": {"use_docker": true}}`), where invoking a function that does
    //!   not exist is the real `ResourceNotFoundException`;
    //! - its "simple" Lambda (`{"lambda": {"use_docker": false}}`), where `Invoke` never runs
    //!   code and needs no function: it answers the next result queued through
    //!   `POST /moto-api/static/lambda-simple/response` (per account and region), or else
    //!   echoes the request payload. A result that moto measures above 6 MB is answered as
    //!   `FunctionError: Unhandled`, as Lambda does.
    //!
    //! The mode is global to the server, so the tests take [`MOTO_MODE`] in turn, and each uses a
    //! region of its own so that no result it queues can reach another.

    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use aws_config::Region;
    use fhirlake_smart::introspection::MAX_RESPONSE_BYTES;
    use fhirlake_smart::{claims_from_introspection, SmartVersion};
    use serde_json::json;

    use super::*;
    use crate::moto::{unique_name, MotoServer};

    /// moto's default account.
    const ACCOUNT: &str = "123456789012";
    const AUD: &str = "https://fhir.example/datastore/0123456789abcdef0123456789abcdef/r4/";

    /// Held by each test while it relies on moto's Lambda mode.
    static MOTO_MODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn moto_mode(use_docker: bool) -> tokio::sync::MutexGuard<'static, ()> {
        let guard = MOTO_MODE.lock().await;
        let (status, body) = moto_api("/moto-api/config", &json!({ "lambda": { "use_docker": use_docker } }));
        assert_eq!(status, 201, "{body}");
        guard
    }

    /// POSTs `body` to moto's own API and returns the status and body.
    fn moto_api(path: &str, body: &Value) -> (u16, String) {
        let server = MotoServer::shared();
        let authority = server.endpoint().strip_prefix("http://").expect("moto is plain http");
        let mut stream = TcpStream::connect(authority).expect("connect to moto");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("send to moto");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read moto's answer");
        let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
    }

    /// Queues `results` as the next answers of moto's simple Lambda in `region`.
    fn queue_results(region: &str, results: &[String]) {
        let (status, body) =
            moto_api("/moto-api/static/lambda-simple/response", &json!({ "results": results, "account_id": ACCOUNT, "region": region }));
        assert_eq!(status, 201, "{body}");
    }

    /// An introspector for `function` in `region`, after one untimed Lambda call: the first
    /// Lambda request to a fresh moto loads its Lambda modules, which must not eat the budget.
    async fn introspector(region: &'static str, function: &str) -> LambdaIntrospector {
        let config = aws_sdk_lambda::config::Builder::from(&MotoServer::shared().sdk_config()).region(Region::new(region)).build();
        let client = aws_sdk_lambda::Client::from_conf(config);
        client.list_functions().send().await.expect("moto lists lambda functions");
        LambdaIntrospector::new(client, format!("arn:aws:lambda:{region}:{ACCOUNT}:function:{function}"))
    }

    fn event() -> IntrospectionEvent {
        IntrospectionEvent::new(AUD, "header.payload.signature", "SearchWithGet", "0123456789abcdef0123456789abcdef", "my-datastore")
    }

    fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    #[tokio::test]
    async fn a_function_that_does_not_exist_is_unavailable_within_the_budget() {
        let _mode = moto_mode(true).await;
        let introspector = introspector("us-east-1", &unique_name("fhirlake-missing")).await;
        // The premise: moto answers Lambda's own error for this function.
        let raw = introspector.client.invoke().function_name(introspector.function_arn()).send().await.unwrap_err();
        assert_eq!(service_code(&raw), Some("ResourceNotFoundException"));
        let started = Instant::now();
        let e = introspector.introspect(&event()).await.unwrap_err();
        assert_eq!(e, SmartError::IntrospectionUnavailable("token validation function could not be invoked"));
        assert_eq!(e.http_status(), 503);
        assert!(started.elapsed() < INTROSPECTION_BUDGET + Duration::from_millis(100), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn an_answer_is_returned_as_the_functions_json() {
        let _mode = moto_mode(false).await;
        let n = now();
        let answer = json!({
            "authPayload": {
                "iss": "https://idp.example/oauth2/token", "aud": AUD, "iat": n, "nbf": n, "exp": n + 300,
                "isAuthorized": "true", "uid": "100101", "scope": "launch/patient patient/*.rs",
                "launch_response_patient": "Patient/123",
            },
            "iamRoleARN": format!("arn:aws:iam::{ACCOUNT}:role/fhir-access"),
        });
        queue_results("us-west-2", &[answer.to_string()]);
        let response = introspector("us-west-2", "validator").await.introspect(&event()).await.unwrap();
        assert_eq!(response, answer);
        let token = claims_from_introspection(&response, AUD, now(), Duration::from_secs(60), SmartVersion::V2).unwrap();
        assert_eq!(token.claims.launch_patient.as_deref(), Some("123"));
        assert_eq!(token.iam_role_arn, format!("arn:aws:iam::{ACCOUNT}:role/fhir-access"));
    }

    #[tokio::test]
    async fn the_event_is_the_payload_and_an_unexpected_document_is_refused() {
        let _mode = moto_mode(false).await;
        // Nothing queued: moto's simple Lambda echoes the payload it was sent.
        let echoed = introspector("eu-west-1", "validator").await.introspect(&event()).await.unwrap();
        assert_eq!(echoed, serde_json::from_slice::<Value>(&event().to_json_bytes()).unwrap());
        let e = claims_from_introspection(&echoed, AUD, now(), Duration::from_secs(60), SmartVersion::V2).unwrap_err();
        assert_eq!(e, SmartError::InvalidClaim("authPayload"));
        assert_eq!(e.http_status(), 401);
    }

    #[tokio::test]
    async fn a_result_that_is_not_json_or_too_large_is_unavailable() {
        let _mode = moto_mode(false).await;
        queue_results("eu-central-1", &["Simple Lambda happy path OK".to_string(), format!("\"{}\"", "x".repeat(MAX_RESPONSE_BYTES))]);
        let introspector = introspector("eu-central-1", "validator").await;
        let e = introspector.introspect(&event()).await.unwrap_err();
        assert_eq!(e, SmartError::IntrospectionUnavailable("introspection response is not json"));
        let e = introspector.introspect(&event()).await.unwrap_err();
        assert_eq!(e, SmartError::IntrospectionUnavailable("introspection response too large"));
        assert_eq!(e.http_status(), 503);
    }

    #[tokio::test]
    async fn a_function_error_is_unavailable() {
        let _mode = moto_mode(false).await;
        // moto answers a result above 6 MB as Lambda does: FunctionError "Unhandled".
        queue_results("ap-southeast-2", &["x".repeat(6_100_000)]);
        let e = introspector("ap-southeast-2", "validator").await.introspect(&event()).await.unwrap_err();
        assert_eq!(e, SmartError::IntrospectionUnavailable("token validation function failed"));
    }
}
