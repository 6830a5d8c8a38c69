//! The AWS adapters of fhirlake's storage ports, built on aws-sdk-rust:
//!
//! - [`DynamoDbItemTable`]: [`ItemTable`](fhirlake_ports::ItemTable) on one DynamoDB table with
//!   string `pk`/`sk` keys;
//! - [`S3ObjectStore`]: [`ObjectStore`](fhirlake_ports::ObjectStore) on an S3 bucket (optionally under
//!   a key prefix, optionally with SSE-KMS);
//! - [`KmsKeyService`]: [`KeyService`](fhirlake_ports::KeyService) on KMS `GenerateDataKey`/`Decrypt`
//!   with a bounded cache of unwrapped data keys;
//! - [`SecretsManagerCredentials`]: the access key pair of HealthLake-compatible SigV4
//!   authentication, from one Secrets Manager secret, as a [`fhirlake_auth::StaticCredentials`];
//! - [`StepFunctionsWorkflows`]: [`Workflows`](fhirlake_ports::Workflows) on the Step Functions
//!   state machines of bulk import and export (one execution per job, named by the job id);
//! - [`LambdaIntrospector`]: [`TokenIntrospector`](fhirlake_smart::TokenIntrospector) on a SMART
//!   datastore's token-validation Lambda (`IdpLambdaArn`), one synchronous `Invoke` per request.
//!
//! Clients come from the standard AWS configuration ([`AwsClients::from_env`]), so the same code
//! runs against AWS or a local emulator (`AWS_ENDPOINT_URL`). No `aws_sdk_*` type crosses a port:
//! every SDK error is normalised to a [`StorageErrorKind`](fhirlake_ports::StorageErrorKind).
#![warn(missing_docs)]

mod aws_backend;
mod config;
mod dynamodb_attrs;
mod dynamodb_item_table;
mod error;
mod kms_key_service;
mod lambda_introspector;
#[cfg(feature = "moto")]
pub mod moto;
mod s3_buckets;
mod s3_object_store;
mod secrets_manager_credentials;
mod step_functions_workflows;

pub use aws_backend::{
    AwsBackend, AwsSettings, BUCKET_ENV, DEFAULT_BUCKET, DEFAULT_KMS_KEY, DEFAULT_TABLE, KMS_KEY_ENV, OBJECT_PREFIX_ENV, TABLE_ENV,
};
pub use config::{load_sdk_config, AwsClients};
pub use dynamodb_item_table::{create_table_if_missing, DynamoDbItemTable};
pub use kms_key_service::{create_key_if_missing, KmsKeyService, DATA_KEY_CACHE_CAPACITY, ENCRYPTION_CONTEXT_KEY};
pub use lambda_introspector::LambdaIntrospector;
pub use s3_buckets::S3Buckets;
pub use s3_object_store::{create_bucket_if_missing, S3ObjectStore};
pub use secrets_manager_credentials::SecretsManagerCredentials;
pub use step_functions_workflows::StepFunctionsWorkflows;
