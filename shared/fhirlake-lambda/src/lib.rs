//! fhirlake's AWS Lambda glue, shared by the functions under `functions/` so that each main.rs
//! is a few lines: set up logging, build a context from the environment once at cold start,
//! run.
//!
//! - `fhir-api` and `control-plane`: [`HttpContext`] hosts the one shared router
//!   ([`fhirlake_api::router`]) behind API Gateway's HTTP API (payload format 2.0, `$default`
//!   stage) with [`lambda_http`], over the AWS adapters ([`fhirlake_aws::AwsBackend`]). The two
//!   functions run the same code; the SAM template gives them different routes and IAM roles.
//! - `import-plan`, `import-chunk`, `import-finalize` and the three `export-*` functions:
//!   [`JobStepContext`] runs one step of a bulk job under the Step Functions state machines
//!   (`statemachines/`), see [`run_job_step`].
//! - `authorizer`: [`AuthorizerContext`] answers API Gateway's Lambda authorizer events with the
//!   SigV4 checks that need no body.
//!
//! Authentication ([`settings::AuthMode`]): in `healthlake` mode the router verifies SigV4 for
//! `healthlake` against the key pair in Secrets Manager ([`AccessKeys`], reloaded when a
//! request names an unknown key); in `iam` mode it trusts API Gateway's `AWS_IAM` authorizer
//! and takes the principal from the request context.
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> Result<(), lambda_http::Error> {
//!     fhirlake_lambda::init_tracing();
//!     let context = fhirlake_lambda::HttpContext::from_env().await?;
//!     fhirlake_lambda::run_http(context).await
//! }
//! ```
#![warn(missing_docs)]

mod access_keys;
mod authorizer;
mod error;
mod http_context;
mod job_steps;
mod request_context;
pub mod settings;

use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::service_fn;

pub use access_keys::{AccessKeys, KeySource};
pub use authorizer::{AuthorizerContext, AuthorizerResponse, ACCESS_KEY_ID_CONTEXT_KEY, AUTHENTICATION_CONTEXT_KEY};
pub use error::LambdaError;
pub use http_context::{Authentication, HttpContext, LambdaIntrospection};
pub use job_steps::{
    job_step_service, run_job_step, run_job_step_with, JobStep, JobStepContext, PlanResult, S3Object, StepError, INVALID_TASK, STEP_FAILED,
};
pub use request_context::{iam_user_arn, public_base_url};

/// Environment variable with the log filter (`tracing_subscriber::EnvFilter` syntax); when
/// unset, `RUST_LOG`; when neither is set, `info`.
pub const LOG_ENV: &str = "FHIRLAKE_LOG";

/// Sends logs to stderr (which Lambda forwards to CloudWatch Logs), filtered by
/// [`LOG_ENV`] or `RUST_LOG`, without colours or timestamps (CloudWatch adds its own).
/// Audit records use the `fhirlake::audit` target.
pub fn init_tracing() {
    let filter = [LOG_ENV, "RUST_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .and_then(|spec| tracing_subscriber::EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests, benchmarks) keeps the first subscriber.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).without_time().with_writer(std::io::stderr).try_init();
}

/// Serves HTTP API events with `context` until the Lambda runtime stops the process.
///
/// Errors: only when the Lambda Runtime API fails; requests never fail (they are answered).
pub async fn run_http(context: HttpContext) -> Result<(), lambda_http::Error> {
    lambda_http::run(http_service(Arc::new(context))).await
}

/// The service [`run_http`] hands to `lambda_http`: every request goes to
/// [`HttpContext::handle`]. Public so that tests and benchmarks drive exactly this path.
pub fn http_service(
    context: Arc<HttpContext>,
) -> impl lambda_http::Service<lambda_http::Request, Response = http::Response<axum::body::Body>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |request: lambda_http::Request| {
        let context = context.clone();
        async move { Ok::<_, Infallible>(context.handle(request).await) }
    })
}

/// Serves Lambda authorizer events with `context` until the Lambda runtime stops the process.
///
/// Errors: only when the Lambda Runtime API fails; events are always answered.
pub async fn run_authorizer(context: AuthorizerContext) -> Result<(), lambda_http::Error> {
    lambda_runtime::run(authorizer_service(Arc::new(context))).await
}

/// The service [`run_authorizer`] hands to the Lambda runtime: every event goes to
/// [`AuthorizerContext::authorize`].
pub fn authorizer_service(
    context: Arc<AuthorizerContext>,
) -> impl lambda_runtime::Service<
    LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>,
    Response = AuthorizerResponse,
    Error = Infallible,
    Future: Send,
> + Clone {
    service_fn(move |event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| {
        let context = context.clone();
        async move { Ok::<_, Infallible>(context.authorize(&event.payload).await) }
    })
}
