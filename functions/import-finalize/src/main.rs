//! `import-finalize`: the finalize step of a bulk import job: ends the job (or records its failure).
//! A task of `statemachines/import.asl.json`; the handler is `fhirlake_lambda::run_job_step`.
//! Configuration: see `fhirlake_lambda::settings`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    fhirlake_lambda::init_tracing();
    fhirlake_lambda::run_job_step(fhirlake_lambda::JobStep::ImportFinalize).await
}
