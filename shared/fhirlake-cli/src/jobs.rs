//! `fhirlake import` and `fhirlake export`: start a bulk job on a running fhirlake (or on
//! HealthLake itself) through the HealthLake API with the AWS SDK, and follow it with a
//! progress line until it ends.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_healthlake::types::{InputDataConfig, JobStatus, OutputDataConfig, S3Configuration, ValidationLevel};
use indicatif::{ProgressBar, ProgressStyle};

use crate::credentials;

/// Where the service is and who calls it.
#[derive(clap::Args)]
pub struct Target {
    /// The service's URL (a `fhirlake serve`, or a deployment's API URL).
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "FHIRLAKE_ENDPOINT_URL")]
    endpoint_url: String,
    /// Region of the service (SigV4 scope).
    #[arg(long, default_value = "us-east-1", env = "FHIRLAKE_REGION")]
    region: String,
    /// With no AWS credentials in the environment, the key pair `fhirlake serve` generated in
    /// this data dir is used.
    #[arg(long, default_value = ".fhirlake", env = "FHIRLAKE_DATA_DIR")]
    data_dir: PathBuf,
    /// The datastore.
    #[arg(long)]
    datastore_id: String,
    /// The role HealthLake assumes to reach the buckets (fhirlake records it).
    #[arg(long, default_value = "arn:aws:iam::000000000000:role/fhirlake-jobs")]
    data_access_role_arn: String,
    /// The KMS key output is encrypted under (on AWS).
    #[arg(long, default_value = "alias/fhirlake")]
    kms_key_id: String,
    /// A name for the job.
    #[arg(long)]
    job_name: Option<String>,
    /// Start the job and print its id without following it.
    #[arg(long)]
    no_wait: bool,
}

/// Flags of `fhirlake import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    target: Target,
    /// NDJSON input: `s3://bucket/prefix/` or one object (locally `<data-dir>/s3/bucket/...`).
    #[arg(long)]
    input: String,
    /// Where the job writes `manifest.json`, `SUCCESS/` and `FAILURE/`.
    #[arg(long)]
    output: String,
    /// `strict`, `structure-only` or `minimal`.
    #[arg(long, default_value = "strict")]
    validation_level: String,
}

/// Flags of `fhirlake export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    target: Target,
    /// Where the job writes `<datastoreId>-FHIR_EXPORT-<jobId>/<Type>/...ndjson`.
    #[arg(long)]
    output: String,
}

async fn client(target: &Target) -> anyhow::Result<aws_sdk_healthlake::Client> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(target.region.clone()))
        .endpoint_url(&target.endpoint_url);
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() && std::env::var_os("AWS_PROFILE").is_none() {
        if let Some((id, secret)) = credentials::load_stored(&target.data_dir)? {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(id, secret, None, None, "fhirlake-data-dir"));
        }
    }
    Ok(aws_sdk_healthlake::Client::new(&loader.load().await))
}

fn output_config(uri: &str, key: &str) -> anyhow::Result<OutputDataConfig> {
    let s3 = S3Configuration::builder().s3_uri(uri).kms_key_id(key).build().context("the output configuration")?;
    Ok(OutputDataConfig::S3Configuration(s3))
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Reports a job that has ended: its message and output folder; a failed job is an error.
fn ended(bar: &ProgressBar, status: &JobStatus, message: Option<&str>, folder: &str) -> anyhow::Result<()> {
    bar.finish();
    if let Some(message) = message {
        println!("{message}");
    }
    println!("output: {folder}");
    if *status == JobStatus::Failed {
        anyhow::bail!("the job failed");
    }
    Ok(())
}

/// Runs `fhirlake import`.
pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let client = client(&args.target).await?;
    let t = &args.target;
    let started = client
        .start_fhir_import_job()
        .datastore_id(&t.datastore_id)
        .input_data_config(InputDataConfig::S3Uri(args.input.clone()))
        .job_output_data_config(output_config(&args.output, &t.kms_key_id)?)
        .data_access_role_arn(&t.data_access_role_arn)
        .validation_level(ValidationLevel::from(args.validation_level.as_str()))
        .set_job_name(t.job_name.clone())
        .send()
        .await
        .context("StartFHIRImportJob")?;
    let job_id = started.job_id().to_string();
    println!("import job {job_id} started");
    if t.no_wait {
        return Ok(());
    }
    let bar = progress_bar();
    loop {
        let described = client
            .describe_fhir_import_job()
            .datastore_id(&t.datastore_id)
            .job_id(&job_id)
            .send()
            .await
            .context("DescribeFHIRImportJob")?;
        let Some(job) = described.import_job_properties() else { anyhow::bail!("DescribeFHIRImportJob answered without the job") };
        let status = job.job_status().clone();
        let report = job.job_progress_report();
        let imported = report.and_then(|r| r.total_number_of_resources_imported()).unwrap_or(0);
        let refused = report.and_then(|r| r.total_number_of_resources_with_customer_error()).unwrap_or(0);
        let rate = report.and_then(|r| r.throughput()).unwrap_or(0.0);
        let files = report.and_then(|r| r.total_number_of_scanned_files()).unwrap_or(0);
        bar.set_message(format!("{}: {imported} resources imported, {refused} refused, {files} files ({rate:.0}/s)", status.as_str()));
        if matches!(status, JobStatus::Completed | JobStatus::CompletedWithErrors | JobStatus::Failed) {
            return ended(
                &bar,
                &status,
                job.message(),
                &format!("{}/{}-FHIR_IMPORT-{job_id}/", args.output.trim_end_matches('/'), t.datastore_id),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `fhirlake export`.
pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let client = client(&args.target).await?;
    let t = &args.target;
    let started = client
        .start_fhir_export_job()
        .datastore_id(&t.datastore_id)
        .output_data_config(output_config(&args.output, &t.kms_key_id)?)
        .data_access_role_arn(&t.data_access_role_arn)
        .set_job_name(t.job_name.clone())
        .send()
        .await
        .context("StartFHIRExportJob")?;
    let job_id = started.job_id().to_string();
    println!("export job {job_id} started");
    if t.no_wait {
        return Ok(());
    }
    let bar = progress_bar();
    loop {
        let described = client
            .describe_fhir_export_job()
            .datastore_id(&t.datastore_id)
            .job_id(&job_id)
            .send()
            .await
            .context("DescribeFHIRExportJob")?;
        let Some(job) = described.export_job_properties() else { anyhow::bail!("DescribeFHIRExportJob answered without the job") };
        let status = job.job_status().clone();
        bar.set_message(status.as_str().to_string());
        if matches!(status, JobStatus::Completed | JobStatus::CompletedWithErrors | JobStatus::Failed | JobStatus::CancelCompleted) {
            return ended(
                &bar,
                &status,
                job.message(),
                &format!("{}/{}-FHIR_EXPORT-{job_id}/", args.output.trim_end_matches('/'), t.datastore_id),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
