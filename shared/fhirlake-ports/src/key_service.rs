//! The key service: envelope encryption's key-encryption keys (KMS's model).

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::StorageResult;

/// A fresh data key: the plaintext to encrypt with, and the same key wrapped by the key service.
pub struct DataKey {
    /// The 256-bit plaintext key; zeroed on drop. Never stored.
    pub plaintext: Zeroizing<[u8; 32]>,
    /// The key wrapped under the master key; safe to store beside the data.
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("wrapped_len", &self.wrapped.len()).finish_non_exhaustive()
    }
}

/// Generates and unwraps data keys under a named master key.
///
/// `context` is bound to the wrapped key (KMS's encryption context, or AEAD associated data):
/// unwrapping with a different context fails.
#[async_trait]
pub trait KeyService: Send + Sync + 'static {
    /// Generates a new 256-bit data key under `master_key_id`.
    async fn generate_data_key(&self, master_key_id: &str, context: &str) -> StorageResult<DataKey>;

    /// Unwraps a key produced by [`KeyService::generate_data_key`] with the same id and context.
    ///
    /// Errors: `Invalid` when the wrapped key or context does not match.
    async fn decrypt_data_key(&self, master_key_id: &str, context: &str, wrapped: &[u8]) -> StorageResult<Zeroizing<[u8; 32]>>;

    /// The id used when a datastore asks for the service's own key (`AWS_OWNED_KMS_KEY`).
    fn default_key_id(&self) -> String;
}
