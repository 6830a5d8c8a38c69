//! SMART on FHIR bearer tokens on the data plane.
//!
//! A request to `/datastore/{id}/r4/…` with `Authorization: Bearer <token>` is authenticated
//! against that datastore's IdentityProviderConfiguration, read at request time (so an
//! UpdateFHIRDatastore takes effect at once): its Metadata names the `issuer` and `jwks_uri`,
//! the audience is the datastore's endpoint, and the strategy decides the scope syntax
//! (`SMART_ON_FHIR_V1`: SMART 1 scopes; `SMART_ON_FHIR`: SMART 2 and 2.2, and SMART 1).
//! Validators are kept per datastore and rebuilt when its configuration changes; the signing
//! keys are cached per JWKS URI for every datastore at once ([`JwksCache`]).
//!
//! A datastore whose configuration names an `IdpLambdaArn` has its tokens judged by that
//! function instead, with HealthLake's event and response contract
//! ([`fhirlake_smart::introspection`], 1 s budget): the host says how to reach it
//! ([`Introspection`]: the Lambda itself on AWS, a configured HTTP endpoint locally).
//!
//! The result is a [`Caller`] whose [`Access`] every data-plane interaction consults.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fhirlake_core::access::{Access, SmartAccess};
use fhirlake_core::datastores::{ActiveDatastore, AuthorizationStrategy};
use fhirlake_core::search::Scope;
use fhirlake_core::{CoreError, Services};
use fhirlake_fhir::search::query::{self, Handling};
use fhirlake_smart::{
    bearer_token, introspect_token, FhirUser, HttpJwksSource, IntrospectionEvent, JwksCache, JwksSource, SmartError, SmartVersion,
    TokenClaims, TokenIntrospector, TokenValidator, ValidatorConfig, DEFAULT_LEEWAY,
};
use http::StatusCode;
use serde_json::Value;

use crate::auth::{Authentication, Caller};
use crate::fhir::FhirError;

/// Authenticates bearer tokens for SMART on FHIR datastores.
pub struct BearerAuthenticator {
    jwks: Arc<JwksCache>,
    validators: Mutex<HashMap<String, Arc<DatastoreValidator>>>,
    introspection: Option<Arc<dyn Introspection>>,
}

/// How the host reaches the token-introspection function a datastore names.
pub trait Introspection: Send + Sync {
    /// The introspector for the `IdpLambdaArn` of a datastore.
    fn introspector(&self, idp_lambda_arn: &str) -> Arc<dyn TokenIntrospector>;
}

/// Every `IdpLambdaArn` is served by one introspector: `fhirlake serve
/// --token-introspection-url`, an HTTP endpoint answering the Lambda's contract.
pub struct OneIntrospector(pub Arc<dyn TokenIntrospector>);

impl Introspection for OneIntrospector {
    fn introspector(&self, _idp_lambda_arn: &str) -> Arc<dyn TokenIntrospector> {
        self.0.clone()
    }
}

/// A datastore's validator, and the configuration it was built from.
struct DatastoreValidator {
    built_from: (AuthorizationStrategy, Option<String>),
    validator: TokenValidator,
}

impl BearerAuthenticator {
    /// Finds signing keys through `jwks`.
    pub fn new(jwks: Arc<JwksCache>) -> Self {
        BearerAuthenticator { jwks, validators: Mutex::new(HashMap::new()), introspection: None }
    }

    /// Judges the tokens of datastores with an `IdpLambdaArn` through `introspection`; without
    /// it they are answered 503.
    pub fn with_introspection(mut self, introspection: Arc<dyn Introspection>) -> Self {
        self.introspection = Some(introspection);
        self
    }

    /// Fetches signing keys over HTTPS (plain HTTP only from loopback issuers), with the
    /// default cache TTL and refresh rate limit.
    ///
    /// # Errors
    /// When the system's trusted root certificates cannot be loaded.
    pub fn over_https() -> Result<Self, SmartError> {
        Ok(Self::new(Arc::new(JwksCache::with_defaults(Arc::new(HttpJwksSource::new()?)))))
    }

    /// Fetches signing keys over HTTPS if the trusted root certificates load; otherwise every
    /// token is answered 503 (keys unavailable) and the reason is logged once here. For hosts
    /// that must start regardless (a Lambda function serving SigV4 clients too).
    pub fn over_https_or_unavailable() -> Self {
        Self::over_https().unwrap_or_else(|e| {
            tracing::error!(error = %e, "smart on fhir tokens cannot be validated: no trusted root certificates");
            Self::new(Arc::new(JwksCache::with_defaults(Arc::new(NoKeys))))
        })
    }

    /// Authenticates `authorization` (the whole header value) for the datastore `datastore_id`,
    /// for the HealthLake operation `operation` (the introspection event names it).
    /// The failure is the response to send: 401 with a `WWW-Authenticate` challenge for a token
    /// that is not acceptable here, 503 when the issuer's keys or the introspection function
    /// cannot be reached.
    pub async fn authenticate(
        &self,
        services: &Services,
        datastore_id: &str,
        authorization: &str,
        operation: &str,
    ) -> Result<Caller, FhirError> {
        let token = bearer_token(authorization)?;
        let ds = smart_datastore(services, datastore_id).await?;
        self.authenticate_in(services, &ds, token, operation).await
    }

    /// [`authenticate`](Self::authenticate) in a SMART datastore already read.
    async fn authenticate_in(&self, services: &Services, ds: &ActiveDatastore, token: &str, operation: &str) -> Result<Caller, FhirError> {
        let claims = match &ds.identity_provider.idp_lambda_arn {
            Some(arn) => self.introspect(services, ds, arn, token, operation).await?,
            None => self.validator(services, ds)?.validate(token).await?,
        };
        let principal = claims.subject.clone().or_else(|| claims.client_id.clone()).unwrap_or_else(|| "smart-token".into());
        let client_id = claims.client_id.clone();
        let fine_grained = ds.identity_provider.fine_grained_authorization_enabled.unwrap_or(false);
        let related = match (&claims.fhir_user, fine_grained) {
            (Some(user), true) => related_patients(services, ds, user).await?,
            _ => Vec::new(),
        };
        Ok(Caller {
            principal,
            client_id,
            authentication: Authentication::Smart,
            access: Access::Smart(Box::new(SmartAccess::new(claims, fine_grained).with_related_patients(related))),
        })
    }

    /// The check an API Gateway authorizer makes before the function: the whole validation of
    /// a JWT against the datastore's issuer and keys, or `Ok(None)` for a datastore whose
    /// `IdpLambdaArn` judges its tokens (the function behind asks it, once per request).
    ///
    /// # Errors
    /// As [`authenticate`](Self::authenticate).
    pub async fn check_at_gateway(
        &self,
        services: &Services,
        datastore_id: &str,
        authorization: &str,
        operation: &str,
    ) -> Result<Option<Caller>, FhirError> {
        let token = bearer_token(authorization)?;
        let ds = smart_datastore(services, datastore_id).await?;
        if ds.identity_provider.idp_lambda_arn.is_some() {
            return Ok(None);
        }
        self.authenticate_in(services, &ds, token, operation).await.map(Some)
    }

    /// Whether `datastore_id` takes bearer tokens, for the challenge of a request without
    /// credentials. Any failure to tell counts as no.
    pub async fn takes_tokens(&self, services: &Services, datastore_id: &str) -> bool {
        services.datastores.active(datastore_id).await.is_ok_and(|ds| smart_version(&ds).is_some())
    }

    async fn introspect(
        &self,
        services: &Services,
        ds: &ActiveDatastore,
        arn: &str,
        token: &str,
        operation: &str,
    ) -> Result<TokenClaims, SmartError> {
        let introspection =
            self.introspection.as_ref().ok_or(SmartError::IntrospectionUnavailable("no token introspection is configured"))?;
        let version = smart_version(ds).ok_or(SmartError::Config("the datastore does not use smart on fhir"))?;
        let endpoint = services.config.datastore_endpoint(&ds.id);
        let event = IntrospectionEvent::new(endpoint, token, operation, ds.id.clone(), ds.name.clone().unwrap_or_default());
        let introspector = introspection.introspector(arn);
        Ok(introspect_token(introspector.as_ref(), &event, DEFAULT_LEEWAY, version).await?.claims)
    }

    fn validator(&self, services: &Services, ds: &ActiveDatastore) -> Result<Arc<DatastoreValidator>, SmartError> {
        let idp = &ds.identity_provider;
        let built_from = (idp.authorization_strategy, idp.metadata.clone());
        let mut validators = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = validators.get(&ds.id).filter(|v| v.built_from == built_from) {
            return Ok(cached.clone());
        }
        let version = smart_version(ds).ok_or(SmartError::Config("the datastore does not use smart on fhir"))?;
        let metadata: Value = idp
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .ok_or(SmartError::Config("the datastore's smart metadata is not a json object"))?;
        let field = |name| metadata.get(name).and_then(Value::as_str).map(str::to_string);
        let (Some(issuer), Some(jwks_uri)) = (field("issuer"), field("jwks_uri")) else {
            return Err(SmartError::Config("the datastore's smart metadata names no issuer and jwks_uri"));
        };
        let mut config = ValidatorConfig::new(issuer, services.config.datastore_endpoint(&ds.id), jwks_uri);
        config.version = version;
        let validator = Arc::new(DatastoreValidator { built_from, validator: TokenValidator::new(config, self.jwks.clone()) });
        validators.insert(ds.id.clone(), validator.clone());
        Ok(validator)
    }
}

impl DatastoreValidator {
    async fn validate(&self, token: &str) -> Result<TokenClaims, SmartError> {
        self.validator.validate(token).await
    }
}

/// The patients related to a `fhirUser`, whose compartments its fine-grained `user/` scopes
/// reach: a Practitioner's patients (those naming it as `generalPractitioner`, the Patient
/// members of its compartment; the first page of `max_page_size`), a RelatedPerson's
/// `patient`. None for a Patient (its own compartment is the fhirUser's) or a Person.
async fn related_patients(services: &Services, ds: &ActiveDatastore, user: &FhirUser) -> Result<Vec<String>, FhirError> {
    match user.resource_type.as_str() {
        "Practitioner" => {
            let request = query::parse(Some("Patient"), &[], Handling::Strict)
                .map_err(|_| FhirError::new(StatusCode::INTERNAL_SERVER_ERROR, "exception", "internal error"))?;
            let scope = Scope { compartment: Some(("Practitioner".to_string(), user.id.clone())) };
            let page = services.search.search(ds, &request, &scope, services.config.max_page_size).await?;
            Ok(page.matches.into_iter().map(|v| v.id).collect())
        }
        "RelatedPerson" => {
            let person = match services.resources.read(ds, "RelatedPerson", &user.id).await {
                Ok(person) => person,
                Err(CoreError::NotFound(_) | CoreError::Gone(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let body: Value = person.body.as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
            let patient = body.pointer("/patient/reference").and_then(Value::as_str).and_then(|r| r.strip_prefix("Patient/"));
            Ok(patient.filter(|id| fhirlake_smart::claims::is_fhir_id(id)).map(str::to_string).into_iter().collect())
        }
        _ => Ok(Vec::new()),
    }
}

/// The addressed datastore, read once per request. One that does not exist or takes SigV4 only
/// is refused as an unsigned request to it would be (403), so a token learns nothing about
/// which datastores exist.
async fn smart_datastore(services: &Services, datastore_id: &str) -> Result<ActiveDatastore, FhirError> {
    match services.datastores.active(datastore_id).await {
        Ok(ds) if smart_version(&ds).is_some() => Ok(ds),
        Ok(_) | Err(CoreError::NotFound(_)) => {
            Err(FhirError::new(StatusCode::FORBIDDEN, "security", "this datastore accepts sigv4 signatures only"))
        }
        Err(e) => Err(e.into()),
    }
}

/// The scope syntax of a SMART datastore; `None` for `AWS_AUTH`.
fn smart_version(ds: &ActiveDatastore) -> Option<SmartVersion> {
    match ds.identity_provider.authorization_strategy {
        AuthorizationStrategy::AwsAuth => None,
        AuthorizationStrategy::SmartOnFhirV1 => Some(SmartVersion::V1),
        AuthorizationStrategy::SmartOnFhir => Some(SmartVersion::V2),
    }
}

/// A key source for a host without trusted roots: every fetch fails.
struct NoKeys;

#[async_trait::async_trait]
impl JwksSource for NoKeys {
    async fn fetch(&self, _jwks_uri: &str) -> Result<String, SmartError> {
        Err(SmartError::KeysUnavailable("no trusted root certificates"))
    }
}
