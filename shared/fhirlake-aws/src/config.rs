//! Building the SDK clients from the standard AWS configuration.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};

/// Loads the standard AWS configuration: region, credentials and endpoint from the environment
/// (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, ...), shared config
/// files, SSO and instance or container roles.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// The SDK clients the adapters need, built from one [`SdkConfig`].
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// DynamoDB, for [`DynamoDbItemTable`](crate::DynamoDbItemTable).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3, for [`S3ObjectStore`](crate::S3ObjectStore).
    pub s3: aws_sdk_s3::Client,
    /// KMS, for [`KmsKeyService`](crate::KmsKeyService).
    pub kms: aws_sdk_kms::Client,
    /// Step Functions, for [`StepFunctionsWorkflows`](crate::StepFunctionsWorkflows).
    pub sfn: aws_sdk_sfn::Client,
}

impl AwsClients {
    /// Clients from the standard AWS configuration (see [`load_sdk_config`]).
    pub async fn from_env() -> Self {
        Self::from_sdk_config(&load_sdk_config().await)
    }

    /// Clients from `config`. When it sets an endpoint URL (an emulator such as moto or
    /// LocalStack), S3 uses path-style addressing and computes checksums only where required.
    pub fn from_sdk_config(config: &SdkConfig) -> Self {
        let mut s3 = aws_sdk_s3::config::Builder::from(config);
        if config.endpoint_url().is_some() {
            s3 = s3
                .force_path_style(true)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            kms: aws_sdk_kms::Client::new(config),
            sfn: aws_sdk_sfn::Client::new(config),
        }
    }
}
