//! [`HttpContext`]: what the HTTP functions (`fhir-api`, `control-plane`) build once at cold
//! start, and the one handler every event goes through.
//!
//! ## The public URL
//!
//! Datastore endpoints (`DatastoreEndpoint`, bundle links, `Location` headers) are built from
//! the API's public base URL. The SAM template cannot pass the API's own URL to the functions
//! it integrates (the API depends on the functions, so the functions cannot depend on the API).
//! So the services are built on the first request, with `FHIRLAKE_PUBLIC_URL` when it is set
//! (e.g. a custom domain), else with `https://{requestContext.domainName}` of that request, and
//! kept for the life of the instance. The domain comes from API Gateway's request context, never from the client's
//! `Host` header. An API reached through several domains should set `FHIRLAKE_PUBLIC_URL`.
//!
//! ## Bulk jobs
//!
//! With `FHIRLAKE_IMPORT_STATE_MACHINE_ARN` and `FHIRLAKE_EXPORT_STATE_MACHINE_ARN` set, a job
//! start begins an execution of the Step Functions state machine of its kind
//! ([`fhirlake_aws::StepFunctionsWorkflows`]), whose task functions run the steps. Without them
//! jobs run in this process (`Services::new`), which suits tests and emulators only: a Lambda
//! instance is frozen between invocations.

use std::sync::Arc;

use aws_config::SdkConfig;
use axum::Router;
use fhirlake_api::{
    plane_error, router, AppState, AuditEventResources, BearerAuthenticator, CredentialRefresh, GatewayPrincipal, Introspection,
    RequestAuthenticator, RequestId,
};
use fhirlake_auth::CredentialStore;
use fhirlake_aws::LambdaIntrospector;
use fhirlake_aws::{AwsBackend, AwsClients, SecretsManagerCredentials, StepFunctionsWorkflows};
use fhirlake_core::{Backends, ExportDestination, ServiceConfig, Services};
use fhirlake_ports::audit::StdoutAuditLog;
use fhirlake_ports::Workflows;
use fhirlake_smart::TokenIntrospector;
use http::StatusCode;
use tower::ServiceExt;

use crate::access_keys::AccessKeys;
use crate::request_context::{gateway_request_id, iam_user_arn, public_base_url};
use crate::settings::{AuthMode, HttpSettings};
use crate::LambdaError;

/// How the router authenticates requests (see [`AuthMode`]).
#[derive(Clone)]
pub enum Authentication {
    /// Verify SigV4 for `healthlake` against `store`; on an unknown access key, ask `refresh`
    /// (if any) to reload the store and verify once more.
    SigV4 {
        /// The access keys.
        store: Arc<dyn CredentialStore>,
        /// Reloads `store` on demand.
        refresh: Option<Arc<dyn CredentialRefresh>>,
    },
    /// Trust API Gateway's `AWS_IAM` authorizer: the principal is
    /// `requestContext.authorizer.iam.userArn`; requests without one are refused.
    Iam,
}

impl Authentication {
    /// SigV4 against keys that reload themselves from their source.
    pub fn access_keys(keys: Arc<AccessKeys>) -> Self {
        Authentication::SigV4 { store: keys.clone(), refresh: Some(keys) }
    }
}

/// Everything an HTTP function keeps between events.
pub struct HttpContext {
    region: String,
    account_id: String,
    public_url: Option<String>,
    max_page_size: usize,
    export_destination: Option<ExportDestination>,
    backends: Backends,
    authentication: Authentication,
    workflows: Option<Arc<dyn Workflows>>,
    introspection: Option<Arc<dyn Introspection>>,
    audit_events: bool,
    router: tokio::sync::OnceCell<Router>,
}

/// The token-introspection functions datastores name (`IdpLambdaArn`), invoked through one
/// Lambda client, an introspector per function.
pub struct LambdaIntrospection {
    sdk: SdkConfig,
    introspectors: std::sync::Mutex<std::collections::HashMap<String, Arc<LambdaIntrospector>>>,
}

impl LambdaIntrospection {
    /// Invokes functions through `sdk`'s region and credentials.
    pub fn new(sdk: &SdkConfig) -> Self {
        LambdaIntrospection { sdk: sdk.clone(), introspectors: Default::default() }
    }
}

impl Introspection for LambdaIntrospection {
    fn introspector(&self, idp_lambda_arn: &str) -> Arc<dyn TokenIntrospector> {
        let mut introspectors = self.introspectors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        introspectors
            .entry(idp_lambda_arn.to_string())
            .or_insert_with(|| Arc::new(LambdaIntrospector::from_sdk_config(&self.sdk, idp_lambda_arn)))
            .clone()
    }
}

impl HttpContext {
    /// A context over `backends`, with the default page size limit; the router is built on the
    /// first request (see the module documentation).
    pub fn new(region: &str, account_id: &str, public_url: Option<&str>, backends: Backends, authentication: Authentication) -> Self {
        HttpContext {
            region: region.to_string(),
            account_id: account_id.to_string(),
            public_url: public_url.map(|url| url.trim_end_matches('/').to_string()),
            max_page_size: ServiceConfig::DEFAULT_MAX_PAGE_SIZE,
            export_destination: None,
            backends,
            authentication,
            workflows: None,
            introspection: None,
            audit_events: false,
            router: tokio::sync::OnceCell::new(),
        }
    }

    /// Starting bulk jobs through `workflows` (the Step Functions state machines) rather than
    /// in this process.
    pub fn with_workflows(mut self, workflows: Arc<dyn Workflows>) -> Self {
        self.workflows = Some(workflows);
        self
    }

    /// Judging the tokens of datastores with an `IdpLambdaArn` through `introspection`.
    pub fn with_introspection(mut self, introspection: Arc<dyn Introspection>) -> Self {
        self.introspection = Some(introspection);
        self
    }

    /// Also storing data-plane audit records as AuditEvent resources ([`AuditEventResources`]).
    pub fn with_audit_events(mut self, audit_events: bool) -> Self {
        self.audit_events = audit_events;
        self
    }

    /// With another largest page size ([`ServiceConfig::max_page_size`]).
    pub fn with_max_page_size(mut self, max_page_size: usize) -> Self {
        self.max_page_size = max_page_size;
        self
    }

    /// With a destination for `$export` kick-offs naming none ([`ServiceConfig::export_destination`]).
    pub fn with_export_destination(mut self, destination: Option<ExportDestination>) -> Self {
        self.export_destination = destination;
        self
    }

    /// The context the environment describes ([`HttpSettings::from_env`]), over the AWS
    /// adapters, with the standard AWS configuration (region, credentials, endpoints).
    pub async fn from_env() -> Result<Self, LambdaError> {
        let settings = HttpSettings::from_env()?;
        Self::from_settings(&settings, &fhirlake_aws::load_sdk_config().await).await
    }

    /// The context `settings` describe, reaching AWS through `sdk`. In
    /// [`AuthMode::HealthLake`] this loads the access keys from Secrets Manager (the one AWS
    /// call of a cold start); the data's resources are first touched by the first request.
    ///
    /// Errors: [`LambdaError::Config`] when the healthlake mode has no secret,
    /// [`LambdaError::AccessKeys`] when the secret cannot be read.
    pub async fn from_settings(settings: &HttpSettings, sdk: &SdkConfig) -> Result<Self, LambdaError> {
        let clients = AwsClients::from_sdk_config(sdk);
        let backend = AwsBackend::new(&clients, &settings.aws);
        let backends = Backends::with_system_clock(backend.items, backend.objects, backend.keys, backend.buckets);
        let authentication = match settings.auth_mode {
            AuthMode::Iam => Authentication::Iam,
            AuthMode::HealthLake => {
                let secret = settings.access_keys_secret.as_deref().ok_or_else(|| LambdaError::Config("no access keys secret".into()))?;
                let source = Arc::new(SecretsManagerCredentials::new(sdk, secret));
                let keys = AccessKeys::load(source, settings.key_refresh_interval).await.map_err(LambdaError::AccessKeys)?;
                Authentication::access_keys(Arc::new(keys))
            }
        };
        let context = Self::new(&settings.region, &settings.account_id, settings.public_url.as_deref(), backends, authentication)
            .with_max_page_size(settings.max_page_size)
            .with_export_destination(settings.export_destination.clone())
            .with_introspection(Arc::new(LambdaIntrospection::new(sdk)))
            .with_audit_events(settings.audit_events);
        Ok(match &settings.workflows {
            Some(arns) => context.with_workflows(Arc::new(StepFunctionsWorkflows::new(
                clients.sfn.clone(),
                arns.import_state_machine_arn.clone(),
                arns.export_state_machine_arn.clone(),
            ))),
            None => context,
        })
    }

    /// Answers one request: the shared router, built on first use if needed, with the IAM
    /// principal attached in [`Authentication::Iam`]. Never fails: every error is an HTTP
    /// response in the dialect of the plane addressed.
    pub async fn handle(&self, request: lambda_http::Request) -> http::Response<axum::body::Body> {
        let router = match self.router.get() {
            Some(router) => router,
            None => match self.public_url.clone().or_else(|| public_base_url(&request)) {
                Some(url) => {
                    self.router
                        .get_or_init(|| async {
                            tracing::info!(public_url = %url, "services built for the public url");
                            self.build_router(&url)
                        })
                        .await
                }
                None => {
                    tracing::warn!("request without an api gateway domain name and no FHIRLAKE_PUBLIC_URL");
                    return plane_error(
                        request.method(),
                        request.uri().path(),
                        StatusCode::BAD_REQUEST,
                        "ValidationException",
                        "invalid",
                        "the request carries no api gateway domain name; set FHIRLAKE_PUBLIC_URL",
                    );
                }
            },
        };
        let principal = match self.authentication {
            Authentication::Iam => iam_user_arn(&request),
            Authentication::SigV4 { .. } => None,
        };
        let request_id = gateway_request_id(&request);
        let (mut parts, body) = request.into_parts();
        if let Some(principal) = principal {
            parts.extensions.insert(GatewayPrincipal::new(principal));
        }
        if let Some(id) = request_id {
            parts.extensions.insert(RequestId(id));
        }
        let body = match body {
            lambda_http::Body::Text(text) => axum::body::Body::from(text),
            lambda_http::Body::Binary(bytes) => axum::body::Body::from(bytes),
            _ => axum::body::Body::empty(),
        };
        match router.clone().oneshot(http::Request::from_parts(parts, body)).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    fn build_router(&self, public_base_url: &str) -> Router {
        let mut config =
            ServiceConfig::new(self.region.clone(), self.account_id.clone(), public_base_url).with_max_page_size(self.max_page_size);
        config.export_destination = self.export_destination.clone();
        let authenticator = match &self.authentication {
            Authentication::Iam => RequestAuthenticator::trusting_gateway(),
            Authentication::SigV4 { store, refresh } => {
                let authenticator = RequestAuthenticator::sigv4(&self.region, store.clone());
                match refresh {
                    Some(refresh) => authenticator.with_refresh(refresh.clone()),
                    None => authenticator,
                }
            }
        };
        let services = match &self.workflows {
            Some(workflows) => Services::with_workflows(config, self.backends.clone(), workflows.clone()),
            None => Services::new(config, self.backends.clone()),
        };
        let audit: Arc<dyn fhirlake_ports::audit::AuditLog> = match self.audit_events {
            true => Arc::new(AuditEventResources::new(Arc::new(StdoutAuditLog::new()), services.clone())),
            false => Arc::new(StdoutAuditLog::new()),
        };
        router(Arc::new(AppState {
            services,
            authenticator,
            bearer: match &self.introspection {
                Some(introspection) => BearerAuthenticator::over_https_or_unavailable().with_introspection(introspection.clone()),
                None => BearerAuthenticator::over_https_or_unavailable(),
            },
            audit,
        }))
    }
}
