//! Token introspection: HealthLake's `IdpLambdaArn` contract, where a function of the customer's
//! decides whether a bearer token is good and what it allows.
//!
//! A SMART datastore created with an `IdpLambdaArn` does not validate tokens itself. For every
//! request it sends an [`IntrospectionEvent`] to that function and expects an answer within
//! [`INTROSPECTION_BUDGET`] (1 second):
//!
//! ```json
//! {"datastoreEndpoint": "https://host/datastore/<id>/r4/", "bearerToken": "<token>",
//!  "operationName": "SearchWithGet", "datastoreId": "<id>", "datastoreTypeVersion": "R4",
//!  "datastoreName": "<name>"}
//! ```
//!
//! The answer is a JSON document:
//!
//! ```json
//! {"authPayload": {"iss": "https://idp/oauth2", "aud": "https://host/datastore/<id>/r4/",
//!                  "iat": 1677115637, "nbf": 1677115637, "exp": 1997877061,
//!                  "isAuthorized": "true", "uid": "100101", "scope": "system/*.*",
//!                  "fhirUser": "https://host/datastore/<id>/r4/Practitioner/123",
//!                  "launch_response_patient": "Patient/123"},
//!  "iamRoleARN": "arn:aws:iam::123456789012:role/fhir-access"}
//! ```
//!
//! [`TokenIntrospector`] is the port that carries one exchange and returns the raw answer;
//! [`HttpIntrospector`] is the local stand-in for the Lambda (the same event `POST`ed as JSON to
//! a URL, the same document back), and `fhirlake_aws::LambdaIntrospector` the real one.
//! [`claims_from_introspection`] checks the answer and turns it into [`TokenClaims`];
//! [`introspect_token`] does the exchange and the checks in one call.
//!
//! # What an answer must say
//!
//! Checked in this order, stopping at the first failure (every failure is a 401 with
//! `error="invalid_token"`; the message names the claim, never its value):
//!
//! 1. `authPayload` is a JSON object ([`SmartError::InvalidClaim`]`("authPayload")`);
//! 2. `authPayload.isAuthorized` is the string `"true"` or the boolean `true`. Anything else,
//!    missing, `false`, `"false"`, `"True"`, `1`, is a refusal (`InvalidClaim("isAuthorized")`);
//! 3. `iamRoleARN` is a non-empty string (`InvalidClaim("iamRoleARN")`);
//! 4. `aud`, a string or an array of strings, names the datastore's endpoint. Both sides are
//!    compared with at most one trailing `/` removed, so `…/r4` and `…/r4/` match and `…/r4//`
//!    does not ([`SmartError::WrongAudience`]; missing or not strings: `InvalidClaim("aud")`);
//! 5. `exp` (required) is after `now - leeway` ([`SmartError::Expired`]); `nbf` (required) is at
//!    or before `now + leeway`, and `iat`, if present, too ([`SmartError::NotYetValid`]). The
//!    leeway is bounded by [`MAX_LEEWAY`], as for JWTs;
//! 6. `scope` is present and a string (`InvalidClaim("scope")`);
//! 7. the claims [`TokenClaims::from_claims`] reads have their expected shapes.
//!
//! # How the payload becomes [`TokenClaims`]
//!
//! Through [`TokenClaims::from_claims`], after three adjustments for the contract:
//!
//! - `iss` is optional in HealthLake's contract (the function already trusted the issuer), while
//!   [`TokenClaims::issuer`] is not. An answer without `iss` gets [`INTROSPECTION_ISSUER`]
//!   (`urn:fhirlake:token-introspection`), a URN no real issuer uses, so audit records show that
//!   the issuer was not named rather than inventing one. A present `iss` must be a string.
//! - `uid` (HealthLake's "unique identifier returned by the auth server") becomes the subject
//!   when `sub` is absent. It must be a string; an empty one is ignored.
//! - `launch_response_patient` is the launch patient as a reference, `Patient/123` or an
//!   absolute URL ending in `/Patient/123`; a function that passes the identity provider's bare
//!   `patient` claim through (`123`) is accepted too, since the claim's name already says the
//!   type. Any other type (`Practitioner/1`) or shape is refused.
//!
//! # Errors of the exchange
//!
//! A function that could not be asked, did not answer within the budget, answered with an
//! error, or answered something that is not a JSON document of at most
//! [`MAX_RESPONSE_BYTES`] has not judged the token at all: that is
//! [`SmartError::IntrospectionUnavailable`] (503), never a 401, so clients retry rather than
//! throw away a token that may be good. Access is refused either way.
//!
//! The token travels only in the event: it is not in any error message or log line, and the
//! event's `Debug` output redacts it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::claims::{is_fhir_id, optional_numeric_date, TokenClaims};
use crate::error::SmartError;
use crate::scopes::SmartVersion;
use crate::validator::{MAX_LEEWAY, MAX_TOKEN_BYTES};

/// The time one introspection may take, from sending the event to the last byte of the answer.
pub const INTROSPECTION_BUDGET: Duration = Duration::from_secs(1);

/// The largest introspection answer accepted, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The `datastoreTypeVersion` of every event: fhirlake datastores are FHIR R4.
pub const DATASTORE_TYPE_VERSION: &str = "R4";

/// The issuer of introspected claims whose answer names none (see the module doc).
pub const INTROSPECTION_ISSUER: &str = "urn:fhirlake:token-introspection";

/// What the token-validation function is asked about one request (HealthLake's event).
///
/// Serialises with exactly HealthLake's member names and order. `Debug` redacts the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntrospectionEvent {
    /// The datastore's FHIR base URL, `https://host/datastore/<id>/r4/`; also the audience the
    /// answer must name.
    pub datastore_endpoint: String,
    /// The bearer token of the request, without the `Bearer ` prefix.
    pub bearer_token: String,
    /// HealthLake's name of the FHIR interaction, such as `SearchWithGet` or `Read`.
    pub operation_name: String,
    /// The datastore id.
    pub datastore_id: String,
    /// Always [`DATASTORE_TYPE_VERSION`] (`R4`).
    pub datastore_type_version: String,
    /// The datastore's name.
    pub datastore_name: String,
}

impl IntrospectionEvent {
    /// The event for one request to an R4 datastore.
    pub fn new(
        datastore_endpoint: impl Into<String>,
        bearer_token: impl Into<String>,
        operation_name: impl Into<String>,
        datastore_id: impl Into<String>,
        datastore_name: impl Into<String>,
    ) -> IntrospectionEvent {
        IntrospectionEvent {
            datastore_endpoint: datastore_endpoint.into(),
            bearer_token: bearer_token.into(),
            operation_name: operation_name.into(),
            datastore_id: datastore_id.into(),
            datastore_type_version: DATASTORE_TYPE_VERSION.to_string(),
            datastore_name: datastore_name.into(),
        }
    }

    /// The event as the JSON bytes sent to the function.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event of strings always serialises")
    }

    /// Refuses a token that is not worth sending: empty, or longer than
    /// [`MAX_TOKEN_BYTES`].
    ///
    /// # Errors
    /// [`SmartError::MissingToken`] or [`SmartError::TokenTooLarge`] (both 401).
    pub fn check_token(&self) -> Result<(), SmartError> {
        if self.bearer_token.is_empty() {
            return Err(SmartError::MissingToken);
        }
        if self.bearer_token.len() > MAX_TOKEN_BYTES {
            return Err(SmartError::TokenTooLarge);
        }
        Ok(())
    }
}

impl fmt::Debug for IntrospectionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionEvent")
            .field("datastore_endpoint", &self.datastore_endpoint)
            .field("bearer_token", &"<redacted>")
            .field("operation_name", &self.operation_name)
            .field("datastore_id", &self.datastore_id)
            .field("datastore_type_version", &self.datastore_type_version)
            .field("datastore_name", &self.datastore_name)
            .finish()
    }
}

/// Asks the token-validation function about one request.
#[async_trait]
pub trait TokenIntrospector: Send + Sync {
    /// Sends `event` and returns the function's answer, unchecked (see
    /// [`claims_from_introspection`]).
    ///
    /// # Errors
    /// [`SmartError::IntrospectionUnavailable`] when no answer came within
    /// [`INTROSPECTION_BUDGET`], the function failed, or its answer is not a JSON document of at
    /// most [`MAX_RESPONSE_BYTES`]; [`SmartError::Config`] when the introspector is unusable.
    async fn introspect(&self, event: &IntrospectionEvent) -> Result<Value, SmartError>;
}

/// The claims of an introspected token, and the IAM role its answer named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectedToken {
    /// The claims, read from `authPayload` as described in the module doc.
    pub claims: TokenClaims,
    /// `iamRoleARN`: the role HealthLake would carry the request out with.
    pub iam_role_arn: String,
}

/// The JSON document of an answer's bytes, as both introspectors read it.
///
/// # Errors
/// [`SmartError::IntrospectionUnavailable`] when `body` is longer than [`MAX_RESPONSE_BYTES`] or
/// is not JSON.
pub fn response_document(body: &[u8]) -> Result<Value, SmartError> {
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(SmartError::IntrospectionUnavailable("introspection response too large"));
    }
    serde_json::from_slice(body).map_err(|_| SmartError::IntrospectionUnavailable("introspection response is not json"))
}

/// Checks an introspection answer for a datastore whose endpoint is `expected_audience`, at
/// `now_unix` (seconds since the epoch) with `leeway` of clock skew, and reads its claims with
/// the scope rules of `version`. The checks and their errors are listed in the module doc.
///
/// # Errors
/// A 401 [`SmartError`] when the answer does not accept the token; [`SmartError::Config`] when
/// `expected_audience` is empty.
pub fn claims_from_introspection(
    response: &Value,
    expected_audience: &str,
    now_unix: i64,
    leeway: Duration,
    version: SmartVersion,
) -> Result<IntrospectedToken, SmartError> {
    let expected = without_one_slash(expected_audience);
    if expected.is_empty() {
        return Err(SmartError::Config("introspection audience is empty"));
    }
    let auth = response.get("authPayload").ok_or(SmartError::InvalidClaim("authPayload"))?;
    let payload = auth.as_object().ok_or(SmartError::InvalidClaim("authPayload"))?;

    match payload.get("isAuthorized") {
        Some(Value::Bool(true)) => {}
        Some(Value::String(s)) if s == "true" => {}
        _ => return Err(SmartError::InvalidClaim("isAuthorized")),
    }

    let iam_role_arn = match response.get("iamRoleARN") {
        Some(Value::String(arn)) if !arn.is_empty() => arn.clone(),
        _ => return Err(SmartError::InvalidClaim("iamRoleARN")),
    };

    let names_datastore = |aud: &str| without_one_slash(aud) == expected;
    match payload.get("aud") {
        Some(Value::String(aud)) if names_datastore(aud) => {}
        Some(Value::String(_)) => return Err(SmartError::WrongAudience),
        Some(Value::Array(items)) => {
            let items: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            if !items.ok_or(SmartError::InvalidClaim("aud"))?.into_iter().any(names_datastore) {
                return Err(SmartError::WrongAudience);
            }
        }
        _ => return Err(SmartError::InvalidClaim("aud")),
    }

    let leeway = leeway.min(MAX_LEEWAY).as_secs() as i64;
    let exp = optional_numeric_date(auth, "exp")?.ok_or(SmartError::InvalidClaim("exp"))?;
    if exp <= now_unix.saturating_sub(leeway) {
        return Err(SmartError::Expired);
    }
    let nbf = optional_numeric_date(auth, "nbf")?.ok_or(SmartError::InvalidClaim("nbf"))?;
    let latest = now_unix.saturating_add(leeway);
    if nbf > latest || optional_numeric_date(auth, "iat")?.is_some_and(|iat| iat > latest) {
        return Err(SmartError::NotYetValid);
    }

    if !matches!(payload.get("scope"), Some(Value::String(_))) {
        return Err(SmartError::InvalidClaim("scope"));
    }

    let mut claims = payload.clone();
    if matches!(claims.get("iss"), None | Some(Value::Null)) {
        claims.insert("iss".to_string(), Value::String(INTROSPECTION_ISSUER.to_string()));
    }
    match claims.get("uid") {
        None | Some(Value::Null) => {}
        Some(Value::String(uid)) => {
            if !uid.is_empty() && matches!(claims.get("sub"), None | Some(Value::Null)) {
                let uid = uid.clone();
                claims.insert("sub".to_string(), Value::String(uid));
            }
        }
        Some(_) => return Err(SmartError::InvalidClaim("uid")),
    }
    if let Some(Value::String(patient)) = claims.get("launch_response_patient") {
        if is_fhir_id(patient) {
            let reference = format!("Patient/{patient}");
            claims.insert("launch_response_patient".to_string(), Value::String(reference));
        }
    }
    let claims = TokenClaims::from_claims(&Value::Object(claims), version)?;
    Ok(IntrospectedToken { claims, iam_role_arn })
}

/// Asks `introspector` about `event`, within [`INTROSPECTION_BUDGET`], and checks the answer
/// against the event's datastore endpoint at the current time.
///
/// # Errors
/// [`SmartError::MissingToken`] or [`SmartError::TokenTooLarge`] before anything is sent (see
/// [`IntrospectionEvent::check_token`]); the errors of [`TokenIntrospector::introspect`] (a
/// timeout included) and of [`claims_from_introspection`].
pub async fn introspect_token(
    introspector: &dyn TokenIntrospector,
    event: &IntrospectionEvent,
    leeway: Duration,
    version: SmartVersion,
) -> Result<IntrospectedToken, SmartError> {
    event.check_token()?;
    let response = tokio::time::timeout(INTROSPECTION_BUDGET, introspector.introspect(event))
        .await
        .map_err(|_| SmartError::IntrospectionUnavailable("introspection timed out"))??;
    claims_from_introspection(&response, &event.datastore_endpoint, now_seconds(), leeway, version)
}

/// `value` without one trailing `/`.
fn without_one_slash(value: &str) -> &str {
    value.strip_suffix('/').unwrap_or(value)
}

fn now_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The local stand-in for the token-validation Lambda: `POST`s the event as JSON to a URL and
/// reads the answer from the response body.
///
/// The same hyper 1 client stack as [`HttpJwksSource`](crate::HttpJwksSource). One exchange,
/// connecting included, must finish within [`INTROSPECTION_BUDGET`]; the response must be `2xx`
/// with a JSON body of at most [`MAX_RESPONSE_BYTES`]; redirects are not followed. The URL must
/// be `https`, or plain `http` to a loopback host (`127.0.0.1`, `localhost`, `[::1]`), and must
/// not carry credentials; anything else is refused when the introspector is built.
#[derive(Clone)]
pub struct HttpIntrospector {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: http::Uri,
    timeout: Duration,
    max_bytes: usize,
}

impl HttpIntrospector {
    /// An introspector posting to `url`. An `https` URL trusts the machine's native root
    /// certificates; a loopback `http` URL needs none.
    ///
    /// # Errors
    /// [`SmartError::Config`] when `url` is not acceptable (see the type doc) or, for `https`,
    /// no root certificate can be loaded.
    pub fn new(url: &str) -> Result<HttpIntrospector, SmartError> {
        let url = checked_url(url)?;
        let builder = HttpsConnectorBuilder::new();
        let connector = if url.scheme_str() == Some("https") {
            builder
                .with_provider_and_native_roots(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .map_err(|_| SmartError::Config("no trusted root certificates for token introspection"))?
                .https_or_http()
                .enable_http1()
                .build()
        } else {
            builder.with_tls_config(no_roots_tls()?).https_or_http().enable_http1().build()
        };
        Ok(HttpIntrospector::with_connector(url, connector))
    }

    /// An introspector posting to `url` over `tls` (for example with a private CA's roots).
    ///
    /// # Errors
    /// [`SmartError::Config`] when `url` is not acceptable.
    pub fn with_tls_config(url: &str, tls: rustls::ClientConfig) -> Result<HttpIntrospector, SmartError> {
        let url = checked_url(url)?;
        Ok(HttpIntrospector::with_connector(url, HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build()))
    }

    /// The same introspector with another time limit (at most [`INTROSPECTION_BUDGET`]) and
    /// response size cap (at most [`MAX_RESPONSE_BYTES`]).
    pub fn with_limits(mut self, timeout: Duration, max_bytes: usize) -> HttpIntrospector {
        self.timeout = timeout.min(INTROSPECTION_BUDGET);
        self.max_bytes = max_bytes.min(MAX_RESPONSE_BYTES);
        self
    }

    /// The URL events are posted to.
    pub fn url(&self) -> &http::Uri {
        &self.url
    }

    fn with_connector(url: http::Uri, connector: HttpsConnector<HttpConnector>) -> HttpIntrospector {
        let client =
            Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        HttpIntrospector { client, url, timeout: INTROSPECTION_BUDGET, max_bytes: MAX_RESPONSE_BYTES }
    }

    async fn post(&self, body: Vec<u8>) -> Result<Value, SmartError> {
        let request = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, concat!("fhirlake-smart/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| SmartError::Config("introspection url is not a valid request target"))?;
        let response = self.client.request(request).await.map_err(|e| {
            tracing::warn!(error = %e, "token introspection request failed");
            SmartError::IntrospectionUnavailable("introspection endpoint unreachable")
        })?;
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "token introspection endpoint answered with an error status");
            return Err(SmartError::IntrospectionUnavailable("introspection endpoint answered with an error status"));
        }
        let declared = response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_bytes as u64) {
            return Err(SmartError::IntrospectionUnavailable("introspection response too large"));
        }
        let body = Limited::new(response.into_body(), self.max_bytes).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                SmartError::IntrospectionUnavailable("introspection response too large")
            } else {
                SmartError::IntrospectionUnavailable("introspection response could not be read")
            }
        })?;
        response_document(&body.to_bytes())
    }
}

impl fmt::Debug for HttpIntrospector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpIntrospector")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenIntrospector for HttpIntrospector {
    async fn introspect(&self, event: &IntrospectionEvent) -> Result<Value, SmartError> {
        match tokio::time::timeout(self.timeout, self.post(event.to_json_bytes())).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(url = %self.url, "token introspection timed out");
                Err(SmartError::IntrospectionUnavailable("introspection timed out"))
            }
        }
    }
}

/// A TLS configuration trusting nothing, for an introspector that only speaks plain http to
/// loopback (so a machine without a root store can still run one).
fn no_roots_tls() -> Result<rustls::ClientConfig, SmartError> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|_| SmartError::Config("no tls protocol version for token introspection"))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// `url` as a URI, if it is https or plain http to a loopback host, without credentials.
fn checked_url(url: &str) -> Result<http::Uri, SmartError> {
    let uri: http::Uri = url.parse().map_err(|_| SmartError::Config("introspection url is not a valid uri"))?;
    let authority = uri.authority().ok_or(SmartError::Config("introspection url is not absolute"))?;
    if authority.as_str().contains('@') {
        return Err(SmartError::Config("introspection url must not carry credentials"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if matches!(authority.host(), "127.0.0.1" | "localhost" | "[::1]") => Ok(uri),
        _ => Err(SmartError::Config("introspection url must use https")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::{Context, FhirUser, Interaction};

    const AUD: &str = "https://fhir.example/datastore/0123456789abcdef0123456789abcdef/r4/";
    const NOW: i64 = 1_700_000_000;
    const LEEWAY: Duration = Duration::from_secs(60);
    const ROLE: &str = "arn:aws:iam::123456789012:role/fhir-access";

    /// HealthLake's documented example answer, with times around [`NOW`].
    fn response(extra: Value) -> Value {
        let mut payload = json!({
            "iss": "https://idp.example/oauth2/token",
            "aud": AUD,
            "iat": NOW - 10,
            "nbf": NOW - 10,
            "exp": NOW + 300,
            "isAuthorized": "true",
            "uid": "100101",
            "scope": "system/*.*",
        });
        payload.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "authPayload": payload, "iamRoleARN": ROLE })
    }

    fn without(field: &str) -> Value {
        let mut r = response(json!({}));
        r["authPayload"].as_object_mut().unwrap().remove(field);
        r
    }

    fn check(response: &Value) -> Result<IntrospectedToken, SmartError> {
        claims_from_introspection(response, AUD, NOW, LEEWAY, SmartVersion::V2)
    }

    fn event(token: &str) -> IntrospectionEvent {
        IntrospectionEvent::new(AUD, token, "SearchWithGet", "0123456789abcdef0123456789abcdef", "my-datastore")
    }

    #[test]
    fn event_json_is_exactly_healthlakes() {
        let e = event("tok.en.value");
        let expected = concat!(
            r#"{"datastoreEndpoint":"https://fhir.example/datastore/0123456789abcdef0123456789abcdef/r4/","#,
            r#""bearerToken":"tok.en.value","operationName":"SearchWithGet","#,
            r#""datastoreId":"0123456789abcdef0123456789abcdef","datastoreTypeVersion":"R4","datastoreName":"my-datastore"}"#,
        );
        assert_eq!(String::from_utf8(e.to_json_bytes()).unwrap(), expected);
        assert_eq!(serde_json::from_str::<IntrospectionEvent>(expected).unwrap(), e);
        assert_eq!(e.datastore_type_version, DATASTORE_TYPE_VERSION);
    }

    #[test]
    fn event_debug_redacts_the_token() {
        let debug = format!("{:?}", event("SECRETMARKER"));
        assert!(!debug.contains("SECRETMARKER"), "{debug}");
        assert!(debug.contains("<redacted>") && debug.contains("SearchWithGet"), "{debug}");
    }

    #[test]
    fn event_token_size() {
        assert_eq!(event("").check_token(), Err(SmartError::MissingToken));
        assert_eq!(event(&"x".repeat(MAX_TOKEN_BYTES + 1)).check_token(), Err(SmartError::TokenTooLarge));
        assert!(event(&"x".repeat(MAX_TOKEN_BYTES)).check_token().is_ok());
    }

    #[test]
    fn healthlakes_example_answer_is_accepted() {
        let token = check(&response(json!({}))).unwrap();
        assert_eq!(token.iam_role_arn, ROLE);
        let c = &token.claims;
        assert_eq!(c.issuer, "https://idp.example/oauth2/token");
        assert_eq!(c.subject.as_deref(), Some("100101"), "uid becomes the subject");
        assert_eq!(c.expires_at, NOW + 300);
        assert_eq!(c.launch_patient, None);
        assert!(c.authorize("Observation", Interaction::Create).unwrap().allows(Context::System));
    }

    #[test]
    fn each_required_field() {
        for (field, error) in [
            ("aud", SmartError::InvalidClaim("aud")),
            ("nbf", SmartError::InvalidClaim("nbf")),
            ("exp", SmartError::InvalidClaim("exp")),
            ("isAuthorized", SmartError::InvalidClaim("isAuthorized")),
            ("scope", SmartError::InvalidClaim("scope")),
        ] {
            assert_eq!(check(&without(field)), Err(error), "{field}");
        }
        let mut no_role = response(json!({}));
        no_role.as_object_mut().unwrap().remove("iamRoleARN");
        assert_eq!(check(&no_role), Err(SmartError::InvalidClaim("iamRoleARN")));
        for role in [json!(null), json!(""), json!(7), json!([ROLE]), json!({ "arn": ROLE })] {
            let mut r = response(json!({}));
            r["iamRoleARN"] = role.clone();
            assert_eq!(check(&r), Err(SmartError::InvalidClaim("iamRoleARN")), "{role}");
        }
        for r in [json!({}), json!({ "iamRoleARN": ROLE }), json!({ "authPayload": "x", "iamRoleARN": ROLE }), json!([1]), json!("x")] {
            assert_eq!(check(&r), Err(SmartError::InvalidClaim("authPayload")), "{r}");
        }
        // Optional: iss, iat, uid.
        for field in ["iss", "iat", "uid"] {
            assert!(check(&without(field)).is_ok(), "{field}");
        }
        for (field, value) in [("exp", json!("soon")), ("nbf", json!(true)), ("iat", json!("x")), ("scope", json!(["system/*.*"]))] {
            let e = check(&response(json!({ field: value }))).unwrap_err();
            assert_eq!(e, SmartError::InvalidClaim(field), "{field}");
            assert_eq!(e.http_status(), 401);
        }
    }

    #[test]
    fn is_authorized_must_be_true() {
        for ok in [json!("true"), json!(true)] {
            assert!(check(&response(json!({ "isAuthorized": ok }))).is_ok(), "{ok}");
        }
        for refused in
            [json!(false), json!("false"), json!("True"), json!("TRUE"), json!(" true"), json!(1), json!("yes"), json!(null), json!([])]
        {
            let e = check(&response(json!({ "isAuthorized": refused }))).unwrap_err();
            assert_eq!(e, SmartError::InvalidClaim("isAuthorized"), "{refused}");
            assert!(e.www_authenticate().unwrap().contains("error=\"invalid_token\""));
        }
    }

    #[test]
    fn audience_with_or_without_one_trailing_slash() {
        let bare = AUD.trim_end_matches('/');
        for aud in [json!(AUD), json!(bare), json!([AUD]), json!(["https://other.example/", bare]), json!(["x", AUD])] {
            assert!(check(&response(json!({ "aud": aud }))).is_ok(), "{aud}");
        }
        // The expected audience may be configured either way too.
        assert!(claims_from_introspection(&response(json!({})), bare, NOW, LEEWAY, SmartVersion::V2).is_ok());
        assert!(claims_from_introspection(&response(json!({ "aud": bare })), AUD, NOW, LEEWAY, SmartVersion::V2).is_ok());

        let other = "https://fhir.example/datastore/ffffffffffffffffffffffffffffffff/r4/";
        for aud in
            [json!(other), json!([other]), json!([]), json!(format!("{AUD}/")), json!("https://fhir.example/"), json!(AUD.to_uppercase())]
        {
            assert_eq!(check(&response(json!({ "aud": aud }))), Err(SmartError::WrongAudience), "{aud}");
        }
        for aud in [json!(null), json!(1), json!([AUD, 1]), json!({ "aud": AUD })] {
            assert_eq!(check(&response(json!({ "aud": aud }))), Err(SmartError::InvalidClaim("aud")), "{aud}");
        }
        assert!(matches!(claims_from_introspection(&response(json!({})), "/", NOW, LEEWAY, SmartVersion::V2), Err(SmartError::Config(_))));
    }

    #[test]
    fn exp_and_nbf_within_the_leeway() {
        assert!(check(&response(json!({ "exp": NOW - 30 }))).is_ok(), "expired 30 s ago, within 60 s");
        assert_eq!(check(&response(json!({ "exp": NOW - 60 }))), Err(SmartError::Expired));
        assert_eq!(check(&response(json!({ "exp": NOW - 3600 }))), Err(SmartError::Expired));
        assert!(check(&response(json!({ "nbf": NOW + 60, "iat": NOW }))).is_ok(), "valid from 60 s on");
        assert_eq!(check(&response(json!({ "nbf": NOW + 61 }))), Err(SmartError::NotYetValid));
        assert_eq!(check(&response(json!({ "iat": NOW + 61 }))), Err(SmartError::NotYetValid));
        assert!(check(&response(json!({ "exp": NOW as f64 + 1.5, "nbf": NOW as f64 - 0.5 }))).is_ok(), "fractions are truncated");

        let strict = |r: &Value| claims_from_introspection(r, AUD, NOW, Duration::ZERO, SmartVersion::V2);
        assert_eq!(strict(&response(json!({ "exp": NOW }))), Err(SmartError::Expired));
        assert!(strict(&response(json!({ "exp": NOW + 1, "nbf": NOW }))).is_ok());
        assert_eq!(strict(&response(json!({ "nbf": NOW + 1 }))), Err(SmartError::NotYetValid));

        let lax = |r: &Value| claims_from_introspection(r, AUD, NOW, Duration::from_secs(3600), SmartVersion::V2);
        assert!(lax(&response(json!({ "exp": NOW - 240 }))).is_ok());
        assert_eq!(lax(&response(json!({ "exp": NOW - 600 }))), Err(SmartError::Expired), "leeway bounded by MAX_LEEWAY");
    }

    #[test]
    fn issuer_defaults_only_when_absent() {
        assert_eq!(check(&without("iss")).unwrap().claims.issuer, INTROSPECTION_ISSUER);
        assert_eq!(check(&response(json!({ "iss": null }))).unwrap().claims.issuer, INTROSPECTION_ISSUER);
        assert_eq!(check(&response(json!({ "iss": "https://idp/" }))).unwrap().claims.issuer, "https://idp/");
        assert_eq!(check(&response(json!({ "iss": 1 }))), Err(SmartError::InvalidClaim("iss")));
    }

    #[test]
    fn uid_is_the_subject_unless_sub_is_given() {
        assert_eq!(check(&response(json!({ "sub": "s-1" }))).unwrap().claims.subject.as_deref(), Some("s-1"));
        assert_eq!(check(&without("uid")).unwrap().claims.subject, None);
        assert_eq!(check(&response(json!({ "uid": "" }))).unwrap().claims.subject, None);
        assert_eq!(check(&response(json!({ "uid": 100101 }))), Err(SmartError::InvalidClaim("uid")));
    }

    #[test]
    fn launch_response_patient_reference_or_bare_id() {
        let scope = json!("launch/patient patient/Observation.rs");
        for (value, id) in [
            ("Patient/123", "123"),
            ("123", "123"),
            ("a-b.C", "a-b.C"),
            ("https://fhir.example/datastore/0123456789abcdef0123456789abcdef/r4/Patient/p-9", "p-9"),
        ] {
            let c = check(&response(json!({ "scope": scope, "launch_response_patient": value }))).unwrap().claims;
            assert_eq!(c.launch_patient.as_deref(), Some(id), "{value}");
            assert!(c.authorize("Observation", Interaction::Search).unwrap().allows(Context::Patient));
        }
        for bad in [json!("Practitioner/123"), json!("Patient/"), json!("has space"), json!(""), json!("Patient/1/_history/2"), json!(123)]
        {
            let r = response(json!({ "scope": scope, "launch_response_patient": bad }));
            assert_eq!(check(&r), Err(SmartError::InvalidClaim("launch_response_patient")), "{bad}");
        }
        // Patient scopes without a launch patient stay refused.
        let c = check(&response(json!({ "scope": scope }))).unwrap().claims;
        assert_eq!(c.authorize("Observation", Interaction::Search), Err(SmartError::MissingLaunchContext));
    }

    #[test]
    fn fhir_user_and_version() {
        let c = check(&response(json!({ "fhirUser": format!("{AUD}Practitioner/123"), "scope": "user/*.read" }))).unwrap().claims;
        assert_eq!(c.fhir_user, Some(FhirUser { resource_type: "Practitioner".into(), id: "123".into() }));
        assert!(c.authorize("Patient", Interaction::Search).unwrap().allows(Context::User));
        assert_eq!(check(&response(json!({ "fhirUser": "Organization/1" }))), Err(SmartError::InvalidClaim("fhirUser")));

        let v1 = claims_from_introspection(&response(json!({ "scope": "user/*.rs" })), AUD, NOW, LEEWAY, SmartVersion::V1).unwrap();
        assert_eq!(v1.claims.scopes.ignored(), ["user/*.rs"]);
    }

    #[test]
    fn error_messages_never_echo_answer_contents() {
        let marker = "SECRETMARKER";
        let answers = [
            response(json!({ "aud": marker })),
            response(json!({ "isAuthorized": marker })),
            response(json!({ "launch_response_patient": format!("{marker}/{marker}") })),
            response(json!({ "fhirUser": marker })),
            response(json!({ "exp": marker })),
            json!({ "authPayload": marker, "iamRoleARN": marker }),
        ];
        for answer in answers {
            let e = check(&answer).unwrap_err();
            assert!(!format!("{e} {e:?} {:?}", e.www_authenticate()).contains(marker), "{e:?}");
        }
        let e = response_document(format!("{marker} is not json").as_bytes()).unwrap_err();
        assert!(!format!("{e} {e:?}").contains(marker));
    }

    #[test]
    fn response_documents() {
        assert_eq!(response_document(br#"{"a":1}"#).unwrap(), json!({ "a": 1 }));
        assert_eq!(response_document(b"OK"), Err(SmartError::IntrospectionUnavailable("introspection response is not json")));
        let big = format!("\"{}\"", "x".repeat(MAX_RESPONSE_BYTES));
        assert_eq!(response_document(big.as_bytes()), Err(SmartError::IntrospectionUnavailable("introspection response too large")));
        assert_eq!(SmartError::IntrospectionUnavailable("x").http_status(), 503);
    }

    /// An introspector in memory: answers `answer` after `delay`, counting calls.
    struct Canned {
        answer: Result<Value, SmartError>,
        delay: Duration,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl TokenIntrospector for Canned {
        async fn introspect(&self, _event: &IntrospectionEvent) -> Result<Value, SmartError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.answer.clone()
        }
    }

    fn canned(answer: Result<Value, SmartError>, delay: Duration) -> Canned {
        Canned { answer, delay, calls: AtomicUsize::new(0) }
    }

    fn live_response(extra: Value) -> Value {
        let now = now_seconds();
        let mut r = response(json!({ "iat": now, "nbf": now, "exp": now + 300 }));
        r["authPayload"].as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r
    }

    #[tokio::test]
    async fn introspect_token_checks_against_the_event() {
        let ok = canned(Ok(live_response(json!({}))), Duration::ZERO);
        let token = introspect_token(&ok, &event("t"), LEEWAY, SmartVersion::V2).await.unwrap();
        assert_eq!(token.iam_role_arn, ROLE);

        let mut other = event("t");
        other.datastore_endpoint = "https://fhir.example/datastore/other/r4/".into();
        assert_eq!(introspect_token(&ok, &other, LEEWAY, SmartVersion::V2).await, Err(SmartError::WrongAudience));

        let refused = canned(Ok(live_response(json!({ "isAuthorized": "false" }))), Duration::ZERO);
        assert_eq!(introspect_token(&refused, &event("t"), LEEWAY, SmartVersion::V2).await, Err(SmartError::InvalidClaim("isAuthorized")));

        let down = canned(Err(SmartError::IntrospectionUnavailable("introspection endpoint unreachable")), Duration::ZERO);
        assert_eq!(introspect_token(&down, &event("t"), LEEWAY, SmartVersion::V2).await.unwrap_err().http_status(), 503);

        let huge = event(&"x".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(introspect_token(&ok, &huge, LEEWAY, SmartVersion::V2).await, Err(SmartError::TokenTooLarge));
        assert_eq!(introspect_token(&ok, &event(""), LEEWAY, SmartVersion::V2).await, Err(SmartError::MissingToken));
        assert_eq!(ok.calls.load(Ordering::SeqCst), 2, "refused tokens are never sent");
    }

    #[tokio::test(start_paused = true)]
    async fn introspect_token_enforces_the_budget_on_any_introspector() {
        let slow = canned(Ok(response(json!({}))), Duration::from_secs(2));
        let started = tokio::time::Instant::now();
        let e = introspect_token(&slow, &event("t"), LEEWAY, SmartVersion::V2).await.unwrap_err();
        assert_eq!(e, SmartError::IntrospectionUnavailable("introspection timed out"));
        assert!(started.elapsed() >= INTROSPECTION_BUDGET && started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    /// What the test server read: the request head and body.
    struct Request {
        head: String,
        body: Vec<u8>,
    }

    /// Serves `response` (raw HTTP) once on 127.0.0.1 after `delay`, and returns the URL and
    /// the request it read.
    async fn serve(response: Vec<u8>, delay: Duration) -> (String, tokio::task::JoinHandle<Request>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/introspect", listener.local_addr().unwrap().port());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let head_end = loop {
                if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed before the end of the head");
                request.extend_from_slice(&buf[..n]);
            };
            let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                .unwrap_or(0);
            while request.len() < head_end + length {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            tokio::time::sleep(delay).await;
            let _ = socket.write_all(&response).await;
            let _ = socket.shutdown().await;
            Request { head, body: request[head_end..].to_vec() }
        });
        (url, server)
    }

    fn http_response(status: &str, body: &[u8]) -> Vec<u8> {
        let mut r =
            format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len())
                .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[tokio::test]
    async fn http_introspector_posts_the_event_and_returns_the_answer() {
        let answer = live_response(json!({ "launch_response_patient": "Patient/123", "scope": "launch/patient patient/*.rs" }));
        let (url, server) = serve(http_response("200 OK", answer.to_string().as_bytes()), Duration::ZERO).await;
        let introspector = HttpIntrospector::new(&url).unwrap();
        let e = event("tok.en.value");
        assert_eq!(introspector.introspect(&e).await.unwrap(), answer);

        let request = server.await.unwrap();
        assert!(request.head.starts_with("POST /introspect HTTP/1.1\r\n"), "{}", request.head);
        assert!(request.head.to_lowercase().contains("content-type: application/json"), "{}", request.head);
        assert_eq!(request.body, e.to_json_bytes());

        // And through introspect_token, end to end.
        let (url, _server) = serve(http_response("200 OK", answer.to_string().as_bytes()), Duration::ZERO).await;
        let token = introspect_token(&HttpIntrospector::new(&url).unwrap(), &e, LEEWAY, SmartVersion::V2).await.unwrap();
        assert_eq!(token.claims.launch_patient.as_deref(), Some("123"));
    }

    #[tokio::test]
    async fn http_introspector_times_out_within_the_budget() {
        let (url, _server) = serve(http_response("200 OK", b"{}"), Duration::from_secs(2)).await;
        let started = std::time::Instant::now();
        let e = HttpIntrospector::new(&url).unwrap().introspect(&event("t")).await.unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(e, SmartError::IntrospectionUnavailable("introspection timed out"));
        assert_eq!(e.http_status(), 503);
        assert!(elapsed >= Duration::from_millis(950) && elapsed < Duration::from_millis(1200), "{elapsed:?}");
    }

    #[tokio::test]
    async fn http_introspector_error_status_is_unavailable() {
        let (url, _server) = serve(http_response("500 Internal Server Error", b"{}"), Duration::ZERO).await;
        let e = HttpIntrospector::new(&url).unwrap().introspect(&event("t")).await.unwrap_err();
        assert_eq!(e, SmartError::IntrospectionUnavailable("introspection endpoint answered with an error status"));
        assert_eq!(e.http_status(), 503);
        assert_eq!(e.www_authenticate(), None);

        let (url, _server) = serve(http_response("401 Unauthorized", b"{}"), Duration::ZERO).await;
        let e = HttpIntrospector::new(&url).unwrap().introspect(&event("t")).await.unwrap_err();
        assert_eq!(e, SmartError::IntrospectionUnavailable("introspection endpoint answered with an error status"));
    }

    #[tokio::test]
    async fn http_introspector_refuses_non_json_and_oversize_answers() {
        let (url, _server) = serve(http_response("200 OK", b"Simple Lambda happy path OK"), Duration::ZERO).await;
        let e = HttpIntrospector::new(&url).unwrap().introspect(&event("t")).await.unwrap_err();
        assert_eq!(e, SmartError::IntrospectionUnavailable("introspection response is not json"));

        let big = format!("\"{}\"", "x".repeat(MAX_RESPONSE_BYTES));
        let (url, _server) = serve(http_response("200 OK", big.as_bytes()), Duration::ZERO).await;
        let e = HttpIntrospector::new(&url).unwrap().introspect(&event("t")).await.unwrap_err();
        assert_eq!(e, SmartError::IntrospectionUnavailable("introspection response too large"));

        // Without a content-length the cap applies while reading.
        let mut chunked = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        chunked.extend_from_slice(&vec![b' '; 4096]);
        let (url, _server) = serve(chunked, Duration::ZERO).await;
        let e = HttpIntrospector::new(&url).unwrap().with_limits(INTROSPECTION_BUDGET, 1024).introspect(&event("t")).await.unwrap_err();
        assert_eq!(e, SmartError::IntrospectionUnavailable("introspection response too large"));
    }

    #[tokio::test]
    async fn http_introspector_closed_port_is_unavailable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = HttpIntrospector::new(&format!("http://127.0.0.1:{port}/")).unwrap().introspect(&event("t")).await.unwrap_err();
        assert_eq!(e, SmartError::IntrospectionUnavailable("introspection endpoint unreachable"));
    }

    #[test]
    fn http_introspector_url_rules() {
        for url in [
            "http://idp.example/introspect",
            "http://10.0.0.1/introspect",
            "http://127.0.0.1.example.com/introspect",
            "http://localhost@idp.example/introspect",
            "https://user:pw@idp.example/introspect",
            "ftp://idp.example/introspect",
            "/relative",
            "not a url",
        ] {
            assert!(matches!(HttpIntrospector::new(url), Err(SmartError::Config(_))), "{url}");
        }
        for url in ["http://localhost:8080/introspect", "http://[::1]:8080/", "http://127.0.0.1:9/x"] {
            assert!(HttpIntrospector::new(url).is_ok(), "{url}");
        }
        assert!(checked_url("https://idp.example/introspect").is_ok());
        let limited = HttpIntrospector::new("http://127.0.0.1:9/").unwrap().with_limits(Duration::from_secs(30), usize::MAX);
        assert_eq!((limited.timeout, limited.max_bytes), (INTROSPECTION_BUDGET, MAX_RESPONSE_BYTES));
        assert!(!format!("{limited:?}").is_empty());
    }
}
