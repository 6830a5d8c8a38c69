//! `fhirlake`: the whole service in one process.
//!
//! `fhirlake serve` hosts the same router as the Lambda functions, on the embedded adapters or
//! (`--backend aws`) on DynamoDB, S3 and KMS; `fhirlake aws init` provisions those;
//! `fhirlake import` and `fhirlake export` run bulk jobs on a running service.

mod aws_args;
mod credentials;
mod jobs;
mod serve;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: bulk imports allocate and free across threads, where
/// glibc's allocator spent a sixth of the CPU (measured with `jobs_bench`); see
/// [`fhirlake_embedded::allocator`].
#[global_allocator]
static ALLOCATOR: fhirlake_embedded::allocator::MiMalloc = fhirlake_embedded::allocator::MiMalloc;

#[derive(Parser)]
#[command(name = "fhirlake", version, about = "A self-hostable FHIR R4 datastore, wire-compatible with Amazon HealthLake")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HealthLake control plane and the FHIR data plane on one listener.
    Serve(serve::ServeArgs),
    /// Import NDJSON from a bucket into a datastore (StartFHIRImportJob), following the job.
    Import(jobs::ImportArgs),
    /// Export a datastore to a bucket (StartFHIRExportJob), following the job.
    Export(jobs::ExportArgs),
    /// Manage the AWS resources `fhirlake serve --backend aws` uses.
    #[command(subcommand)]
    Aws(AwsCommand),
}

#[derive(Subcommand)]
enum AwsCommand {
    /// Create the DynamoDB table, S3 bucket and KMS key where they do not exist (for
    /// emulators and development accounts; deployments declare them in infra/template.yaml).
    Init(aws_args::InitArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fhirlake_embedded::allocator::configure();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FHIRLAKE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve::run(args).await,
        Command::Import(args) => jobs::import(args).await,
        Command::Export(args) => jobs::export(args).await,
        Command::Aws(AwsCommand::Init(args)) => aws_args::init(args).await,
    }
}
