//! `control-plane`: the HealthLake control plane (AWS JSON 1.0 on `POST /`) on AWS Lambda,
//! behind API Gateway's HTTP API. It hosts the same shared router as `fhir-api`; the SAM template
//! gives it the control-plane route and its own IAM role. Configuration: see
//! `fhirlake_lambda::settings`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    fhirlake_lambda::init_tracing();
    let context = fhirlake_lambda::HttpContext::from_env().await?;
    fhirlake_lambda::run_http(context).await
}
