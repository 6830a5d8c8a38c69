//! [`AwsBackend`]: the three AWS adapters over one table, bucket and KMS key, named by
//! [`AwsSettings`]. The Lambda functions and `fhirlake serve --backend aws` both build their
//! adapters here.

use std::sync::Arc;

use fhirlake_ports::{StorageError, StorageErrorKind, StorageResult};

use crate::error::{sdk_error, service_code};

use crate::{create_bucket_if_missing, create_key_if_missing, create_table_if_missing, AwsClients};
use crate::{DynamoDbItemTable, KmsKeyService, S3Buckets, S3ObjectStore};

/// Environment variable naming the DynamoDB table.
pub const TABLE_ENV: &str = "FHIRLAKE_TABLE";
/// Environment variable naming the S3 bucket.
pub const BUCKET_ENV: &str = "FHIRLAKE_BUCKET";
/// Environment variable holding an optional key prefix inside the bucket.
pub const OBJECT_PREFIX_ENV: &str = "FHIRLAKE_OBJECT_PREFIX";
/// Environment variable naming the KMS key (id, ARN or `alias/...`) of datastores that use the
/// service's own key (`AWS_OWNED_KMS_KEY`); S3 objects are written with SSE-KMS under it too.
pub const KMS_KEY_ENV: &str = "FHIRLAKE_KMS_KEY";

/// Defaults used by `fhirlake serve --backend aws` and `fhirlake aws init` when neither a flag
/// nor the environment names a resource.
pub const DEFAULT_TABLE: &str = "fhirlake";
/// See [`DEFAULT_TABLE`].
pub const DEFAULT_BUCKET: &str = "fhirlake-data";
/// See [`DEFAULT_TABLE`].
pub const DEFAULT_KMS_KEY: &str = "alias/fhirlake";

/// Which AWS resources hold a deployment's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// The DynamoDB table (string `pk`/`sk` keys).
    pub table: String,
    /// The S3 bucket for large bodies, job files and projections.
    pub bucket: String,
    /// A key prefix inside the bucket (empty: none).
    pub object_prefix: Option<String>,
    /// The default KMS key: id, ARN or `alias/...`.
    pub kms_key: String,
}

impl AwsSettings {
    /// Settings from [`TABLE_ENV`], [`BUCKET_ENV`], [`OBJECT_PREFIX_ENV`] and [`KMS_KEY_ENV`],
    /// falling back to the defaults for unset variables.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`AwsSettings::from_env`], but every variable must be set (as the Lambda functions
    /// require: a deployed function must never silently use a default name).
    ///
    /// Errors: `Invalid`, naming the first missing variable.
    pub fn from_env_strict() -> StorageResult<Self> {
        for name in [TABLE_ENV, BUCKET_ENV, KMS_KEY_ENV] {
            if std::env::var(name).map(|v| v.is_empty()).unwrap_or(true) {
                return Err(StorageError::invalid(format!("{name} is not set")));
            }
        }
        Ok(Self::from_env())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str, default: &str| lookup(name).filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string());
        AwsSettings {
            table: get(TABLE_ENV, DEFAULT_TABLE),
            bucket: get(BUCKET_ENV, DEFAULT_BUCKET),
            object_prefix: lookup(OBJECT_PREFIX_ENV).filter(|v| !v.is_empty()),
            kms_key: get(KMS_KEY_ENV, DEFAULT_KMS_KEY),
        }
    }
}

/// The item table, object store and key service of one deployment.
#[derive(Debug, Clone)]
pub struct AwsBackend {
    /// The item table on DynamoDB.
    pub items: Arc<DynamoDbItemTable>,
    /// The object store on S3.
    pub objects: Arc<S3ObjectStore>,
    /// The key service on KMS.
    pub keys: Arc<KmsKeyService>,
    /// The jobs' input and output buckets.
    pub buckets: Arc<S3Buckets>,
}

impl AwsBackend {
    /// The adapters over the resources `settings` names. Makes no AWS call: a missing resource
    /// shows up as a storage error on first use.
    pub fn new(clients: &AwsClients, settings: &AwsSettings) -> Self {
        AwsBackend {
            items: Arc::new(DynamoDbItemTable::new(clients.dynamodb.clone(), &settings.table)),
            objects: Arc::new(S3ObjectStore::new(
                clients.s3.clone(),
                &settings.bucket,
                settings.object_prefix.clone(),
                Some(settings.kms_key.clone()),
            )),
            keys: Arc::new(KmsKeyService::new(clients.kms.clone(), &settings.kms_key)),
            buckets: Arc::new(S3Buckets::new(clients.s3.clone())),
        }
    }

    /// Checks that the table, the bucket and the key `settings` names exist and are reachable
    /// with the configured credentials, so that a server fails at start rather than on its
    /// first request.
    ///
    /// Errors: `NotFound` naming the first missing resource; other kinds as the SDK reports.
    pub async fn check(clients: &AwsClients, settings: &AwsSettings) -> StorageResult<()> {
        let missing = |what: &str, name: &str| StorageError::new(StorageErrorKind::NotFound, format!("the {what} {name} does not exist"));
        match clients.dynamodb.describe_table().table_name(&settings.table).send().await {
            Ok(_) => {}
            Err(e) if service_code(&e) == Some("ResourceNotFoundException") => return Err(missing("table", &settings.table)),
            Err(e) => return Err(sdk_error("describe table", &e)),
        }
        match clients.s3.head_bucket().bucket(&settings.bucket).send().await {
            Ok(_) => {}
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => return Err(missing("bucket", &settings.bucket)),
            Err(e) => return Err(sdk_error("head bucket", &e)),
        }
        match clients.kms.describe_key().key_id(&settings.kms_key).send().await {
            Ok(_) => Ok(()),
            Err(e) if service_code(&e) == Some("NotFoundException") => Err(missing("kms key", &settings.kms_key)),
            Err(e) => Err(sdk_error("describe key", &e)),
        }
    }

    /// Creates the table, the bucket and the KMS key (when `kms_key` is an alias) that
    /// `settings` names, where they do not exist. For emulators and development accounts; the
    /// SAM template declares them for real deployments.
    ///
    /// Returns the ARN of the KMS key. Errors: `Invalid` when `kms_key` is not an alias and
    /// does not exist.
    pub async fn init(clients: &AwsClients, settings: &AwsSettings) -> StorageResult<String> {
        create_table_if_missing(&clients.dynamodb, &settings.table).await?;
        create_bucket_if_missing(&clients.s3, &settings.bucket).await?;
        if settings.kms_key.starts_with("alias/") {
            create_key_if_missing(&clients.kms, &settings.kms_key).await
        } else {
            let described = clients.kms.describe_key().key_id(&settings.kms_key).send().await;
            described
                .ok()
                .and_then(|output| output.key_metadata().and_then(|meta| meta.arn()).map(str::to_string))
                .ok_or_else(|| StorageError::invalid(format!("the kms key {} does not exist", settings.kms_key)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_fall_back_to_defaults() {
        let settings = AwsSettings::from_lookup(|_| None);
        assert_eq!(settings.table, DEFAULT_TABLE);
        assert_eq!(settings.bucket, DEFAULT_BUCKET);
        assert_eq!(settings.kms_key, DEFAULT_KMS_KEY);
        assert_eq!(settings.object_prefix, None);
    }

    #[test]
    fn settings_come_from_the_environment() {
        let settings = AwsSettings::from_lookup(|name| match name {
            TABLE_ENV => Some("t".into()),
            BUCKET_ENV => Some("b".into()),
            OBJECT_PREFIX_ENV => Some(String::new()),
            KMS_KEY_ENV => Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
            _ => None,
        });
        assert_eq!(
            settings,
            AwsSettings {
                table: "t".into(),
                bucket: "b".into(),
                object_prefix: None,
                kms_key: "arn:aws:kms:us-east-1:111122223333:key/k".into()
            }
        );
    }
}
