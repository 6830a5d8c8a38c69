//! The `authorizer` function: an API Gateway HTTP API **Lambda REQUEST authorizer** (payload
//! format 2.0, simple responses, identity source `$request.header.Authorization`, result
//! caching off) in front of the HTTP functions in HealthLake mode.
//!
//! API Gateway hands an authorizer the request without its body, so it cannot verify a SigV4
//! signature (which covers the body's hash). It runs [`Verifier::precheck`], every check that
//! does not need the body, against the same access keys the functions use, and answers
//! `{"isAuthorized": true, "context": {"accessKeyId": "..."}}` or `{"isAuthorized": false}`
//! (API Gateway then answers 403 itself). The function behind it verifies the signature in
//! full. So requests that could never verify (unsigned, expired, for another service or
//! region, an unknown key) are turned away before they cost a function invocation.
//!
//! Bearer tokens (SMART on FHIR) on the data plane are validated here in full, with the code
//! `fhirlake serve` runs ([`BearerAuthenticator::check_at_gateway`]): against the addressed
//! datastore's SMART configuration read from the table (issuer, JWKS, audience = its endpoint,
//! signature, `exp`/`nbf`), and allowed with `{"authentication": "smart", "principal": …,
//! "clientId": …, "patient": …}` for the logs. `fhir-api` validates the token again (keys
//! cached) and enforces its scopes and compartments on every request: what the authorizer
//! passes on is never trusted for authorization. For a datastore whose `IdpLambdaArn` judges
//! tokens, the authorizer passes the token on unjudged (`"authentication": "bearer"`), so the
//! function is asked once, by `fhir-api`. Without the table configured the authorizer only
//! pre-checks a token ([`fhirlake_smart::validator::precheck`]: size, shape, RS256/ES256, `exp`).
//! Bearer tokens on the control plane are denied. Reasons are logged without token content.

use std::sync::Arc;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use fhirlake_api::CredentialRefresh;
use fhirlake_api::{BearerAuthenticator, Caller};
use fhirlake_auth::{AuthError, CredentialStore, HttpRequest, Payload, Verifier};
use fhirlake_aws::{AwsBackend, AwsClients, SecretsManagerCredentials};
use fhirlake_core::operation::data_operation;
use fhirlake_core::{Backends, ServiceConfig, Services};
use fhirlake_smart::SmartError;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use serde::{Deserialize, Serialize};

use crate::access_keys::AccessKeys;
use crate::settings::AuthorizerSettings;
use crate::LambdaError;

/// The key of the access key id in the authorizer's `context` (the integration reads it as
/// `requestContext.authorizer.lambda.accessKeyId`).
pub const ACCESS_KEY_ID_CONTEXT_KEY: &str = "accessKeyId";

/// The key the authorizer sets to `bearer` for a bearer token it let through.
pub const AUTHENTICATION_CONTEXT_KEY: &str = "authentication";

/// A simple response of an HTTP API Lambda authorizer (payload format 2.0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerResponse {
    /// Whether API Gateway lets the request through.
    pub is_authorized: bool,
    /// Passed to the integration as `requestContext.authorizer.lambda`.
    pub context: serde_json::Map<String, serde_json::Value>,
}

impl AuthorizerResponse {
    fn allow(access_key_id: String) -> Self {
        let mut context = serde_json::Map::new();
        context.insert(ACCESS_KEY_ID_CONTEXT_KEY.to_string(), serde_json::Value::String(access_key_id));
        AuthorizerResponse { is_authorized: true, context }
    }

    fn allow_bearer(caller: Option<&Caller>) -> Self {
        let mut context = serde_json::Map::new();
        let text = |s: &str| serde_json::Value::String(s.to_string());
        match caller {
            Some(caller) => {
                context.insert(AUTHENTICATION_CONTEXT_KEY.to_string(), text("smart"));
                context.insert("principal".to_string(), text(&caller.principal));
                if let Some(client) = &caller.client_id {
                    context.insert("clientId".to_string(), text(client));
                }
                if let Some(patient) = caller.access.patient() {
                    context.insert("patient".to_string(), text(&patient));
                }
            }
            None => {
                context.insert(AUTHENTICATION_CONTEXT_KEY.to_string(), text("bearer"));
            }
        }
        AuthorizerResponse { is_authorized: true, context }
    }

    fn deny() -> Self {
        AuthorizerResponse { is_authorized: false, context: serde_json::Map::new() }
    }
}

/// Why the authorizer turned a request away.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Denial {
    /// A SigV4 pre-check failed.
    SigV4(AuthError),
    /// A bearer token that can never validate.
    BearerToken(SmartError),
    /// A bearer token the datastore does not accept (status of the refusal).
    BearerRefused(u16),
    /// A bearer token on the control plane, which takes SigV4 only.
    BearerOnControlPlane,
}

impl Denial {
    fn reason(&self) -> &'static str {
        match self {
            Denial::SigV4(error) => error.aws_error_type(),
            Denial::BearerToken(_) => "invalid bearer token",
            Denial::BearerRefused(401) => "bearer token not accepted",
            Denial::BearerRefused(_) => "bearer token not checked",
            Denial::BearerOnControlPlane => "bearer tokens are not accepted on the control plane",
        }
    }
}

/// Why the authorizer let a request through.
#[derive(Debug, Clone)]
enum Allowed {
    /// A signature that passed the pre-check, by this access key id.
    Signature(String),
    /// A bearer token on the data plane: validated (the caller), or passed on for the
    /// function to judge (`None`).
    Bearer(Option<Caller>),
}

/// What the authorizer needs to validate bearer tokens: the datastores' table and the token
/// keys, with services built for the public URL on the first bearer token.
struct BearerGate {
    backends: Backends,
    region: String,
    account_id: String,
    public_url: Option<String>,
    services: tokio::sync::OnceCell<Services>,
    authenticator: BearerAuthenticator,
}

impl BearerGate {
    async fn check(
        &self,
        event: &ApiGatewayV2CustomAuthorizerV2Request,
        authorization: &str,
        path: &str,
    ) -> Result<Option<Caller>, Denial> {
        let segments: Vec<String> = path.trim_start_matches('/').split('/').map(|s| s.to_string()).collect();
        let (Some("datastore"), Some(id), Some("r4")) =
            (segments.first().map(String::as_str), segments.get(1).map(String::as_str), segments.get(2).map(String::as_str))
        else {
            return Err(Denial::BearerRefused(403));
        };
        let url = match (&self.public_url, event.request_context.domain_name.as_deref()) {
            (Some(url), _) => url.clone(),
            (None, Some(domain)) if !domain.is_empty() && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b)) => {
                format!("https://{}", domain.to_ascii_lowercase())
            }
            _ => return Err(Denial::BearerRefused(400)),
        };
        let services = self
            .services
            .get_or_init(|| async { Services::new(ServiceConfig::new(&self.region, &self.account_id, url), self.backends.clone()) })
            .await;
        let rest: Vec<&str> = segments[3..].iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
        let has_query = event.raw_query_string.as_deref().is_some_and(|q| !q.is_empty());
        let operation = data_operation(event.request_context.http.method.as_str(), &rest, has_query).name;
        self.authenticator
            .check_at_gateway(services, id, authorization, operation)
            .await
            .map_err(|e| Denial::BearerRefused(e.status.as_u16()))
    }
}

/// Everything the authorizer keeps between events.
pub struct AuthorizerContext {
    verifier: Verifier,
    store: Arc<dyn CredentialStore>,
    refresh: Option<Arc<dyn CredentialRefresh>>,
    bearer: Option<BearerGate>,
}

impl AuthorizerContext {
    /// Pre-checks signatures for `healthlake` in `region` against `store`, asking `refresh`
    /// (if any) to reload it when a request names an unknown key.
    pub fn new(region: &str, store: Arc<dyn CredentialStore>, refresh: Option<Arc<dyn CredentialRefresh>>) -> Self {
        AuthorizerContext { verifier: Verifier::new(region), store, refresh, bearer: None }
    }

    /// Validates bearer tokens against the datastores in `backends` (their SMART
    /// configuration), with keys from `authenticator`; the audience is `public_url`, or the
    /// API's domain when `None`.
    pub fn with_bearer_validation(
        mut self,
        backends: Backends,
        account_id: &str,
        public_url: Option<&str>,
        authenticator: BearerAuthenticator,
    ) -> Self {
        self.bearer = Some(BearerGate {
            backends,
            region: self.verifier.region().to_string(),
            account_id: account_id.to_string(),
            public_url: public_url.map(str::to_string),
            services: tokio::sync::OnceCell::new(),
            authenticator,
        });
        self
    }

    /// The context the environment describes ([`AuthorizerSettings::from_env`]).
    pub async fn from_env() -> Result<Self, LambdaError> {
        let settings = AuthorizerSettings::from_env()?;
        Self::from_settings(&settings, &fhirlake_aws::load_sdk_config().await).await
    }

    /// The context `settings` describe: loads the access keys from Secrets Manager through
    /// `sdk`.
    ///
    /// Errors: [`LambdaError::AccessKeys`] when the secret cannot be read.
    pub async fn from_settings(settings: &AuthorizerSettings, sdk: &SdkConfig) -> Result<Self, LambdaError> {
        let source = Arc::new(SecretsManagerCredentials::new(sdk, &settings.access_keys_secret));
        let keys = Arc::new(AccessKeys::load(source, settings.key_refresh_interval).await.map_err(LambdaError::AccessKeys)?);
        let context = Self::new(&settings.region, keys.clone(), Some(keys));
        Ok(match (&settings.aws, &settings.account_id) {
            (Some(aws), Some(account_id)) => {
                let backend = AwsBackend::new(&AwsClients::from_sdk_config(sdk), aws);
                let backends = Backends::with_system_clock(backend.items, backend.objects, backend.keys, backend.buckets);
                context.with_bearer_validation(
                    backends,
                    account_id,
                    settings.public_url.as_deref(),
                    BearerAuthenticator::over_https_or_unavailable(),
                )
            }
            _ => context,
        })
    }

    /// Decides one authorizer event now, and records the decision on the audit trail.
    pub async fn authorize(&self, event: &ApiGatewayV2CustomAuthorizerV2Request) -> AuthorizerResponse {
        let method = event.request_context.http.method.as_str();
        let path = event.raw_path.as_deref().unwrap_or("/");
        match self.decide(event, Utc::now()).await {
            Ok(Allowed::Signature(access_key_id)) => {
                tracing::info!(target: "fhirlake::audit", principal = %access_key_id, method, path, "authorizer allowed");
                AuthorizerResponse::allow(access_key_id)
            }
            Ok(Allowed::Bearer(caller)) => {
                let principal = caller.as_ref().map_or("unjudged", |c| c.principal.as_str());
                tracing::info!(target: "fhirlake::audit", principal, method, path, "authorizer allowed a bearer token");
                AuthorizerResponse::allow_bearer(caller.as_ref())
            }
            Err(denial) => {
                tracing::warn!(target: "fhirlake::audit", method, path, reason = denial.reason(), "authorizer denied");
                AuthorizerResponse::deny()
            }
        }
    }

    async fn decide(&self, event: &ApiGatewayV2CustomAuthorizerV2Request, now: DateTime<Utc>) -> Result<Allowed, Denial> {
        let authorization = event.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if authorization.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer ")) {
            if !event.raw_path.as_deref().unwrap_or("/").starts_with("/datastore/") {
                return Err(Denial::BearerOnControlPlane);
            }
            let token = fhirlake_smart::bearer_token(authorization).map_err(Denial::BearerToken)?;
            return match &self.bearer {
                Some(gate) => Ok(Allowed::Bearer(gate.check(event, authorization, event.raw_path.as_deref().unwrap_or("/")).await?)),
                None => {
                    fhirlake_smart::validator::precheck(token).map_err(Denial::BearerToken)?;
                    Ok(Allowed::Bearer(None))
                }
            };
        }
        let headers: Vec<(&str, &[u8])> = event.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        let request = HttpRequest::new(
            event.request_context.http.method.as_str(),
            event.raw_path.as_deref().unwrap_or("/"),
            event.raw_query_string.as_deref().unwrap_or(""),
            &headers,
            // Never hashed by the pre-check: the authorizer has no body.
            Payload::Bytes(b""),
        );
        let checked = match self.verifier.precheck(&request, now, self.store.as_ref()) {
            Err(AuthError::UnknownAccessKey) => match &self.refresh {
                Some(refresh) if refresh.refresh().await => self.verifier.precheck(&request, now, self.store.as_ref()),
                _ => Err(AuthError::UnknownAccessKey),
            },
            other => other,
        };
        checked.map(|c| Allowed::Signature(c.access_key_id)).map_err(Denial::SigV4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_have_the_simple_response_shape() {
        let allow = serde_json::to_value(AuthorizerResponse::allow("FHLKEY".into())).unwrap();
        assert_eq!(allow, serde_json::json!({"isAuthorized": true, "context": {"accessKeyId": "FHLKEY"}}));
        let deny = serde_json::to_value(AuthorizerResponse::deny()).unwrap();
        assert_eq!(deny, serde_json::json!({"isAuthorized": false, "context": {}}));
    }

    #[test]
    fn denial_reasons_are_lowercase_types_or_text() {
        assert_eq!(Denial::SigV4(AuthError::Expired).reason(), "InvalidSignatureException");
        for denial in [Denial::BearerToken(SmartError::Expired), Denial::BearerRefused(401), Denial::BearerOnControlPlane] {
            assert_eq!(denial.reason(), denial.reason().to_lowercase());
        }
    }
}
