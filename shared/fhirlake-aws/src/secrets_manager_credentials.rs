//! [`SecretsManagerCredentials`]: the access key pair of fhirlake's HealthLake-compatible
//! authentication, kept in one AWS Secrets Manager secret (encrypted under the deployment's KMS
//! key by Secrets Manager). The SAM template generates the secret; the Lambda functions load it
//! at cold start and again when a request names a key they do not know (key rotation).
//!
//! The secret's `SecretString` is JSON:
//!
//! ```json
//! {"access_key_id": "FHL...", "secret_access_key": "..."}
//! ```

use aws_config::SdkConfig;
use fhirlake_auth::StaticCredentials;
use fhirlake_ports::{StorageError, StorageErrorKind, StorageResult};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{sdk_error, service_code};

/// The JSON document in the secret.
#[derive(Serialize, Deserialize)]
struct AccessKeyDocument {
    access_key_id: String,
    secret_access_key: String,
}

impl Drop for AccessKeyDocument {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret_access_key);
    }
}

/// Reads (and, for development, writes) the access key pair in one Secrets Manager secret.
#[derive(Debug, Clone)]
pub struct SecretsManagerCredentials {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerCredentials {
    /// The secret named `secret_id` (a name or an ARN), reached through `config`.
    pub fn new(config: &SdkConfig, secret_id: impl Into<String>) -> Self {
        SecretsManagerCredentials { client: aws_sdk_secretsmanager::Client::new(config), secret_id: secret_id.into() }
    }

    /// The secret's name or ARN.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// Reads the current version of the secret.
    ///
    /// Errors: `NotFound` when the secret does not exist; `Invalid` when it holds no
    /// `SecretString` or not the JSON document of the module documentation (the message never
    /// contains the secret); `Internal` (or `Throttled`) for other failures.
    pub async fn load(&self) -> StorageResult<StaticCredentials> {
        let output = match self.client.get_secret_value().secret_id(&self.secret_id).send().await {
            Ok(output) => output,
            Err(error) if service_code(&error) == Some("ResourceNotFoundException") => {
                return Err(StorageError::not_found(format!("the secret {} does not exist", self.secret_id)));
            }
            Err(error) => return Err(sdk_error("get secret value", &error)),
        };
        let text = Zeroizing::new(
            output.secret_string.ok_or_else(|| StorageError::invalid(format!("the secret {} holds no secret string", self.secret_id)))?,
        );
        let document: AccessKeyDocument = serde_json::from_str(&text).map_err(|_| {
            StorageError::invalid(format!("the secret {} is not a json object with access_key_id and secret_access_key", self.secret_id))
        })?;
        if document.access_key_id.is_empty() || document.secret_access_key.is_empty() {
            return Err(StorageError::invalid(format!("the secret {} has an empty access key id or secret", self.secret_id)));
        }
        Ok(StaticCredentials::new(document.access_key_id.clone(), document.secret_access_key.as_str()))
    }

    /// Writes `access_key_id` and `secret_access_key` as the secret's new current version,
    /// creating the secret (encrypted under `kms_key_id` when given, else Secrets Manager's
    /// default key) if it does not exist. For emulators and development accounts, and for
    /// rotating the key by hand; the SAM template creates the secret of a deployment.
    pub async fn store(&self, access_key_id: &str, secret_access_key: &str, kms_key_id: Option<&str>) -> StorageResult<()> {
        let document = AccessKeyDocument { access_key_id: access_key_id.to_string(), secret_access_key: secret_access_key.to_string() };
        let text =
            Zeroizing::new(serde_json::to_string(&document).map_err(|e| StorageError::internal(format!("encoding the secret: {e}")))?);
        let updated = self.client.put_secret_value().secret_id(&self.secret_id).secret_string(text.as_str()).send().await;
        match updated {
            Ok(_) => Ok(()),
            Err(error) if service_code(&error) == Some("ResourceNotFoundException") => {
                let mut create = self.client.create_secret().name(&self.secret_id).secret_string(text.as_str());
                if let Some(key) = kms_key_id {
                    create = create.kms_key_id(key);
                }
                create.send().await.map(|_| ()).map_err(|e| match service_code(&e) {
                    Some("ResourceExistsException") => {
                        StorageError::new(StorageErrorKind::ConditionFailed, "the secret was created concurrently")
                    }
                    _ => sdk_error("create secret", &e),
                })
            }
            Err(error) => Err(sdk_error("put secret value", &error)),
        }
    }
}
