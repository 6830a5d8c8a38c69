//! `fhir-api`: the FHIR R4 data plane (`/datastore/{id}/r4/...`) on AWS Lambda, behind API
//! Gateway's HTTP API. It hosts the shared router; the SAM template routes the data plane to it.
//! Configuration: see `fhirlake_lambda::settings`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    fhirlake_lambda::init_tracing();
    let context = fhirlake_lambda::HttpContext::from_env().await?;
    fhirlake_lambda::run_http(context).await
}
