//! [`KeyService`] on KMS: data keys from `GenerateDataKey`, unwrapped with `Decrypt`, with a
//! bounded cache of unwrapped keys so reading the same data twice does not call KMS twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::SdkError;
use aws_sdk_kms::operation::decrypt::{DecryptError, DecryptOutput};
use aws_sdk_kms::operation::describe_key::DescribeKeyError;
use aws_sdk_kms::operation::generate_data_key::{GenerateDataKeyError, GenerateDataKeyOutput};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeySpec, KeyUsageType};
use aws_sdk_kms::Client;
use fhirlake_ports::{DataKey, KeyService, StorageError, StorageResult};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{sdk_error, service_code};

/// The encryption context key under which the port's `context` is bound to each data key.
pub const ENCRYPTION_CONTEXT_KEY: &str = "fhirlake:context";
/// How many unwrapped data keys the cache holds.
pub const DATA_KEY_CACHE_CAPACITY: usize = 1024;

/// Decrypt error codes that mean the wrapped key does not open under this key id and context.
const INVALID_CIPHERTEXT_CODES: &[&str] =
    &["InvalidCiphertextException", "IncorrectKeyException", "ValidationException", "InvalidKeyUsageException", "NotFoundException"];

/// GenerateDataKey error codes that mean the key exists but this service cannot use it: it is
/// disabled, pending deletion, not a symmetric encryption key, or its policy does not let us.
const UNUSABLE_KEY_CODES: &[&str] = &["DisabledException", "KMSInvalidStateException", "InvalidKeyUsageException", "AccessDeniedException"];

type CacheKey = (String, String, Vec<u8>);

/// A bounded map of unwrapped keys, evicting the oldest entry first.
#[derive(Default)]
struct KeyCache {
    keys: HashMap<CacheKey, Zeroizing<[u8; 32]>>,
    order: VecDeque<CacheKey>,
}

impl KeyCache {
    fn insert(&mut self, key: CacheKey, plaintext: Zeroizing<[u8; 32]>) {
        if self.keys.insert(key.clone(), plaintext).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > DATA_KEY_CACHE_CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.keys.remove(&oldest);
            }
        }
    }
}

/// The key service on KMS. Master key ids are key ids, key ARNs or aliases (`alias/...`).
pub struct KmsKeyService {
    client: Client,
    default_key_id: String,
    cache: Mutex<KeyCache>,
    /// Master key id as given → the key ARN KMS reports, to check which key decrypted.
    arns: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for KmsKeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKeyService").field("default_key_id", &self.default_key_id).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single map operation, so a poisoned lock still guards consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn plaintext_key(blob: Option<Blob>) -> StorageResult<Zeroizing<[u8; 32]>> {
    let mut bytes = blob.map(Blob::into_inner).unwrap_or_default();
    let mut key = Zeroizing::new([0u8; 32]);
    let result = if bytes.len() == key.len() {
        key.copy_from_slice(&bytes);
        Ok(key)
    } else {
        Err(StorageError::internal("kms returned a data key that is not 256 bits"))
    };
    bytes.zeroize();
    result
}

impl KmsKeyService {
    /// The key service through `client`, with `default_key_id` for datastores that use the
    /// service's own key (`AWS_OWNED_KMS_KEY`).
    pub fn new(client: Client, default_key_id: impl Into<String>) -> Self {
        KmsKeyService { client, default_key_id: default_key_id.into(), cache: Mutex::default(), arns: Mutex::default() }
    }

    /// One `Decrypt` call binding `context`, naming the key when `key_id` is given.
    async fn decrypt(
        &self,
        key_id: Option<&str>,
        context: &str,
        wrapped: &[u8],
    ) -> Result<DecryptOutput, SdkError<DecryptError, HttpResponse>> {
        self.client
            .decrypt()
            .set_key_id(key_id.map(str::to_string))
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context(ENCRYPTION_CONTEXT_KEY, context)
            .send()
            .await
    }

    /// `GenerateDataKey` of a 256-bit key under `master_key_id`, bound to `context`.
    async fn generate(
        &self,
        master_key_id: &str,
        context: &str,
    ) -> Result<GenerateDataKeyOutput, SdkError<GenerateDataKeyError, HttpResponse>> {
        self.client
            .generate_data_key()
            .key_id(master_key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(ENCRYPTION_CONTEXT_KEY, context)
            .send()
            .await
    }

    /// True when a data key freshly generated under `master_key_id` and `context` decrypts.
    async fn decrypt_is_allowed(&self, master_key_id: &str, context: &str) -> bool {
        let generated = self.generate(master_key_id, context).await;
        let Some(wrapped) = generated.ok().and_then(|mut output| {
            if let Some(plaintext) = output.plaintext.take() {
                plaintext.into_inner().zeroize();
            }
            output.ciphertext_blob.map(Blob::into_inner)
        }) else {
            return false;
        };
        match self.decrypt(Some(master_key_id), context, &wrapped).await {
            Ok(mut output) => {
                if let Some(plaintext) = output.plaintext.take() {
                    plaintext.into_inner().zeroize();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The ARN of `master_key_id` (cached after the first `DescribeKey`).
    async fn key_arn(&self, master_key_id: &str) -> StorageResult<String> {
        if let Some(arn) = lock(&self.arns).get(master_key_id) {
            return Ok(arn.clone());
        }
        let output = self.client.describe_key().key_id(master_key_id).send().await.map_err(|error| match &error {
            SdkError::ServiceError(service) if matches!(service.err(), DescribeKeyError::NotFoundException(_)) => {
                StorageError::not_found("no such kms key")
            }
            _ => sdk_error("describe key", &error),
        })?;
        let arn = output
            .key_metadata()
            .and_then(|meta| meta.arn().map(str::to_string).or_else(|| Some(meta.key_id().to_string())))
            .ok_or_else(|| StorageError::internal("kms described a key without an id"))?;
        lock(&self.arns).insert(master_key_id.to_string(), arn.clone());
        Ok(arn)
    }
}

/// True when `reported` (a key ARN or id from a KMS response) names the key `arn`.
fn same_key(reported: &str, arn: &str) -> bool {
    reported == arn || reported.rsplit('/').next() == arn.rsplit('/').next()
}

#[async_trait]
impl KeyService for KmsKeyService {
    async fn generate_data_key(&self, master_key_id: &str, context: &str) -> StorageResult<DataKey> {
        let output = self.generate(master_key_id, context).await.map_err(|error| match service_code(&error) {
            Some(code) if UNUSABLE_KEY_CODES.contains(&code) => {
                StorageError::invalid(format!("generate data key failed: the key cannot be used ({code})"))
            }
            Some("NotFoundException") => StorageError::not_found("generate data key failed: no such kms key"),
            _ => sdk_error("generate data key", &error),
        })?;
        let wrapped =
            output.ciphertext_blob.map(Blob::into_inner).ok_or_else(|| StorageError::internal("kms returned no wrapped data key"))?;
        let plaintext = plaintext_key(output.plaintext)?;
        lock(&self.cache).insert((master_key_id.to_string(), context.to_string(), wrapped.clone()), plaintext.clone());
        Ok(DataKey { plaintext, wrapped })
    }

    async fn decrypt_data_key(&self, master_key_id: &str, context: &str, wrapped: &[u8]) -> StorageResult<Zeroizing<[u8; 32]>> {
        let cache_key = (master_key_id.to_string(), context.to_string(), wrapped.to_vec());
        if let Some(plaintext) = lock(&self.cache).keys.get(&cache_key) {
            return Ok(plaintext.clone());
        }
        if wrapped.is_empty() {
            return Err(StorageError::invalid("wrapped data key is empty"));
        }
        let arn = self.key_arn(master_key_id).await?;
        let output = match self.decrypt(Some(master_key_id), context, wrapped).await {
            Ok(output) => output,
            Err(error) if service_code(&error).is_some_and(|code| INVALID_CIPHERTEXT_CODES.contains(&code)) => {
                return Err(StorageError::invalid("wrapped data key does not decrypt under this key and context"));
            }
            // Moto answers AccessDeniedException (KMS: IncorrectKeyException or
            // InvalidCiphertextException) for a ciphertext naming another or no key. When a fresh
            // data key of the same key and context decrypts, the caller may decrypt and the
            // ciphertext is what is wrong.
            Err(error) if service_code(&error) == Some("AccessDeniedException") => {
                if self.decrypt_is_allowed(master_key_id, context).await {
                    return Err(StorageError::invalid("wrapped data key refers to a key it cannot be decrypted with"));
                }
                return Err(sdk_error("decrypt", &error));
            }
            Err(error) => return Err(sdk_error("decrypt", &error)),
        };
        // KMS refuses a ciphertext of another key when KeyId is given; the key that decrypted
        // is checked here as well, in case an emulator does not.
        if !output.key_id().is_some_and(|reported| same_key(reported, &arn)) {
            return Err(StorageError::invalid("wrapped data key belongs to another master key"));
        }
        let plaintext = plaintext_key(output.plaintext)?;
        lock(&self.cache).insert(cache_key, plaintext.clone());
        Ok(plaintext)
    }

    fn default_key_id(&self) -> String {
        self.default_key_id.clone()
    }
}

/// Returns the ARN of the key behind `alias` (`alias/...`), creating a symmetric
/// encrypt/decrypt key and the alias when the alias does not exist.
pub async fn create_key_if_missing(client: &Client, alias: &str) -> StorageResult<String> {
    match client.describe_key().key_id(alias).send().await {
        Ok(output) => {
            if let Some(arn) = output.key_metadata().and_then(|meta| meta.arn()) {
                return Ok(arn.to_string());
            }
            return Err(StorageError::internal("kms described a key without an arn"));
        }
        Err(SdkError::ServiceError(service)) if matches!(service.err(), DescribeKeyError::NotFoundException(_)) => {}
        Err(error) => return Err(sdk_error("describe key", &error)),
    }
    let created = client
        .create_key()
        .description("fhirlake data key encryption key")
        .key_usage(KeyUsageType::EncryptDecrypt)
        .key_spec(KeySpec::SymmetricDefault)
        .send()
        .await
        .map_err(|e| sdk_error("create key", &e))?;
    let meta = created.key_metadata().ok_or_else(|| StorageError::internal("kms created a key without metadata"))?;
    let arn = meta.arn().unwrap_or(meta.key_id()).to_string();
    match client.create_alias().alias_name(alias).target_key_id(meta.key_id()).send().await {
        Ok(_) => Ok(arn),
        // Another process created the alias first: use its key.
        Err(error) if service_code(&error) == Some("AlreadyExistsException") => {
            let output = client.describe_key().key_id(alias).send().await.map_err(|e| sdk_error("describe key", &e))?;
            output
                .key_metadata()
                .and_then(|m| m.arn())
                .map(str::to_string)
                .ok_or_else(|| StorageError::internal("kms described a key without an arn"))
        }
        Err(error) => Err(sdk_error("create alias", &error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded_and_evicts_oldest_first() {
        let mut cache = KeyCache::default();
        for i in 0..DATA_KEY_CACHE_CAPACITY + 10 {
            cache.insert(("k".into(), "c".into(), i.to_le_bytes().to_vec()), Zeroizing::new([1u8; 32]));
        }
        assert_eq!(cache.keys.len(), DATA_KEY_CACHE_CAPACITY);
        assert!(!cache.keys.contains_key(&("k".into(), "c".into(), 0usize.to_le_bytes().to_vec())));
        assert!(cache.keys.contains_key(&("k".into(), "c".into(), (DATA_KEY_CACHE_CAPACITY + 9).to_le_bytes().to_vec())));
    }

    #[test]
    fn key_ids_match_their_arns() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(same_key(arn, arn));
        assert!(same_key("1234abcd-12ab-34cd-56ef-1234567890ab", arn));
        assert!(!same_key("arn:aws:kms:us-east-1:123456789012:key/other", arn));
    }

    #[test]
    fn plaintext_keys_must_be_256_bits() {
        assert!(plaintext_key(Some(Blob::new(vec![7u8; 32]))).is_ok());
        assert!(plaintext_key(Some(Blob::new(vec![7u8; 16]))).is_err());
        assert!(plaintext_key(None).is_err());
    }
}
