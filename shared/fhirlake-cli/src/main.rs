//! `fhirlake`: the whole service in one process.
//!
//! `fhirlake serve` hosts the same router as the Lambda functions, on the embedded adapters.

mod credentials;
mod serve;

use clap::{Parser, Subcommand};

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FHIRLAKE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve::run(args).await,
    }
}
