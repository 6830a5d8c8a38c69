//! SMART on FHIR bearer tokens for fhirlake: is this token good, and what does it allow?
//!
//! A datastore created with SMART on FHIR authorization (HealthLake's `SMART_ON_FHIR_V1` or
//! `SMART_ON_FHIR` strategy) accepts OAuth 2 access tokens from one identity provider. This
//! crate is the framework-free core of that check; the HTTP layer calls it and maps its
//! [`SmartError`] to a status (table in the [`SmartError`] docs).
//!
//! - [`scopes`]: the SMART 1, 2 and 2.2 scope grammar and the grant a [`ScopeSet`] gives for a
//!   resource type and an [`Interaction`], per [`Context`]. Pure. On a SMART 2 datastore, SMART 1
//!   scopes are accepted too (the specification's transition rule; they mean what they always
//!   meant), while a SMART 1 datastore refuses the newer syntax.
//! - [`claims`]: what a validated token says ([`TokenClaims`]): issuer, subject, client, scopes,
//!   the launch patient (`patient`, or HealthLake's `launch_response_patient`) and `fhirUser`.
//!   Pure.
//! - [`jwks`]: the issuer's signing keys through the [`JwksSource`] port, cached by [`JwksCache`]
//!   with a TTL, one refresh for an unknown `kid` and a per-URI refresh rate limit.
//!   [`HttpJwksSource`] is the real source.
//! - [`validator`]: [`TokenValidator`] checks size, algorithm (RS256 and ES256 only), key,
//!   signature, `exp`/`nbf`/`iat` within a bounded leeway, `iss` and `aud`, then builds the
//!   claims.
//! - [`introspection`]: HealthLake's `IdpLambdaArn` contract, where a function decides about the
//!   token instead: the [`IntrospectionEvent`] it is sent, the [`TokenIntrospector`] port
//!   ([`HttpIntrospector`] is the local stand-in; `fhirlake_aws::LambdaIntrospector` the Lambda),
//!   and [`claims_from_introspection`], which checks its answer and builds the claims.
//!
//! Deny by default throughout: a scope that does not parse is ignored, a key that does not fit
//! the algorithm is skipped, and nothing the token says ever appears in an error message.
//!
//! ```no_run
//! use std::sync::Arc;
//! use fhirlake_smart::{
//!     bearer_token, HttpJwksSource, Interaction, JwksCache, SmartError, TokenValidator, ValidatorConfig,
//! };
//!
//! # async fn handle(authorization: &str) -> Result<(), SmartError> {
//! let source = Arc::new(HttpJwksSource::new()?);
//! let jwks = Arc::new(JwksCache::with_defaults(source));
//! let config = ValidatorConfig::new(
//!     "https://idp.example/oauth2",
//!     "https://fhir.example/datastore/0123456789abcdef0123456789abcdef/r4/",
//!     "https://idp.example/oauth2/keys",
//! );
//! let validator = TokenValidator::new(config, jwks);
//!
//! let claims = validator.validate(bearer_token(authorization)?).await?;
//! let grant = claims.authorize("Observation", Interaction::Search)?;
//! // `grant` says through which contexts (patient, user, system) and under which filters.
//! # let _ = grant; Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod claims;
mod error;
mod http_jwks_source;
pub mod introspection;
pub mod jwks;
pub mod scopes;
pub mod validator;

pub use claims::{FhirUser, TokenClaims};
pub use error::{SmartError, SmartErrorKind};
pub use http_jwks_source::HttpJwksSource;
pub use introspection::{
    claims_from_introspection, introspect_token, HttpIntrospector, IntrospectedToken, IntrospectionEvent, TokenIntrospector,
    INTROSPECTION_BUDGET,
};
pub use jwks::{Algorithm, JwksCache, JwksSource, VerifyingKey};
pub use scopes::{
    Context, ContextGrant, Grant, Interaction, Interactions, NonResourceScope, ResourceScope, Restriction, ScopeFilter, ScopeSet,
    SmartVersion,
};
pub use validator::{bearer_token, TokenValidator, ValidatorConfig, DEFAULT_LEEWAY, MAX_LEEWAY, MAX_TOKEN_BYTES};
