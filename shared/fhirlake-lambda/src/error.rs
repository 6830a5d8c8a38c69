//! Why a function could not start.

use fhirlake_ports::StorageError;

/// A cold-start failure: the function reports it to Lambda as an init error and never serves
/// a request. Messages name variables and resources, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// A setting is missing or invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The access key pair could not be loaded from Secrets Manager.
    #[error("loading the access keys: {0}")]
    AccessKeys(StorageError),
}
