//! The flags naming the AWS resources, shared by `fhirlake serve --backend aws` and
//! `fhirlake aws init`. Each flag falls back to the environment variable the Lambda functions
//! read (`fhirlake_aws::AwsSettings`), then to a default.

use fhirlake_aws::{AwsSettings, BUCKET_ENV, DEFAULT_BUCKET, DEFAULT_KMS_KEY, DEFAULT_TABLE, KMS_KEY_ENV, OBJECT_PREFIX_ENV, TABLE_ENV};

/// Which DynamoDB table, S3 bucket and KMS key hold the data. Endpoints, region and
/// credentials come from the standard AWS configuration (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// `AWS_PROFILE`, ...).
#[derive(clap::Args, Debug, Clone)]
pub struct AwsArgs {
    /// DynamoDB table holding every item.
    #[arg(long, env = TABLE_ENV, default_value = DEFAULT_TABLE)]
    table: String,
    /// S3 bucket for large bodies and job files.
    #[arg(long, env = BUCKET_ENV, default_value = DEFAULT_BUCKET)]
    bucket: String,
    /// Key prefix inside the bucket.
    #[arg(long, env = OBJECT_PREFIX_ENV)]
    object_prefix: Option<String>,
    /// KMS key (id, ARN or alias/...) for datastores using the service's own key.
    #[arg(long, env = KMS_KEY_ENV, default_value = DEFAULT_KMS_KEY)]
    kms_key: String,
}

impl AwsArgs {
    /// The settings these flags name.
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            table: self.table.clone(),
            bucket: self.bucket.clone(),
            object_prefix: self.object_prefix.clone().filter(|p| !p.is_empty()),
            kms_key: self.kms_key.clone(),
        }
    }
}

/// `fhirlake aws init`: creates the table, bucket and key where they do not exist.
#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    aws: AwsArgs,
}

/// Runs `fhirlake aws init` and prints what it provisioned.
pub async fn init(args: InitArgs) -> anyhow::Result<()> {
    let settings = args.aws.settings();
    let clients = fhirlake_aws::AwsClients::from_env().await;
    let key_arn = fhirlake_aws::AwsBackend::init(&clients, &settings)
        .await
        .map_err(|e| anyhow::anyhow!("provisioning the aws resources failed: {e}"))?;
    println!("table   {}\nbucket  {}\nkms key {key_arn}", settings.table, settings.bucket);
    Ok(())
}
