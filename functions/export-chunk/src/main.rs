//! `export-chunk`: the chunk step of a bulk export job: one item of the Distributed Map.
//! A task of `statemachines/export.asl.json`; the handler is `fhirlake_lambda::run_job_step`.
//! Configuration: see `fhirlake_lambda::settings`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    fhirlake_lambda::init_tracing();
    fhirlake_lambda::run_job_step(fhirlake_lambda::JobStep::ExportChunk).await
}
