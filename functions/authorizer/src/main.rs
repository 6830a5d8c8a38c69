//! `authorizer`: API Gateway's Lambda REQUEST authorizer (payload format 2.0, simple responses)
//! for the HealthLake auth mode. It runs the SigV4 checks that need no body against the access
//! keys in Secrets Manager. Configuration: `AWS_REGION`, `FHIRLAKE_ACCESS_KEYS_SECRET`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    fhirlake_lambda::init_tracing();
    let context = fhirlake_lambda::AuthorizerContext::from_env().await?;
    fhirlake_lambda::run_authorizer(context).await
}
