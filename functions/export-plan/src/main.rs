//! `export-plan`: the plan step of a bulk export job: lists the work, writes the chunk list the Distributed Map reads.
//! A task of `statemachines/export.asl.json`; the handler is `fhirlake_lambda::run_job_step`.
//! Configuration: see `fhirlake_lambda::settings`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    fhirlake_lambda::init_tracing();
    fhirlake_lambda::run_job_step(fhirlake_lambda::JobStep::ExportPlan).await
}
