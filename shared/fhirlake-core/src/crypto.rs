//! Envelope encryption of resource bodies: one AES-256-GCM data key per datastore, wrapped by
//! the key service (KMS in AWS, the local key file locally) and cached unwrapped in memory.
//!
//! Ciphertext layout: `0x01 | nonce (12 bytes) | AES-256-GCM(body) with tag`. The associated data
//! names the datastore, resource and version, so a ciphertext copied to another item fails to open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use fhirlake_ports::KeyService;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::datastores::ActiveDatastore;
use crate::{CoreError, CoreResult};

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
/// Unwrapped keys kept in memory; beyond this the cache is cleared and refilled on demand.
const CACHE_CAPACITY: usize = 1024;

/// A wrapped data key and the cipher unwrapped from it.
type CachedKey = (Vec<u8>, Arc<Aes256Gcm>);

/// Encrypts and decrypts bodies with per-datastore data keys.
#[derive(Clone)]
pub struct BodyCipher {
    keys: Arc<dyn KeyService>,
    /// Per datastore id: the wrapped key the cipher was unwrapped from, and the cipher.
    cache: Arc<Mutex<HashMap<String, CachedKey>>>,
}

impl BodyCipher {
    /// A cipher unwrapping data keys with `keys`.
    pub fn new(keys: Arc<dyn KeyService>) -> Self {
        BodyCipher { keys, cache: Arc::new(Mutex::new(HashMap::new())) }
    }

    async fn cipher_for(&self, ds: &ActiveDatastore) -> CoreResult<Arc<Aes256Gcm>> {
        if let Some((wrapped, cipher)) = self.cache.lock().map_err(|_| poisoned())?.get(&ds.id) {
            if *wrapped == ds.wrapped_data_key {
                return Ok(cipher.clone());
            }
        }
        let plaintext: Zeroizing<[u8; 32]> = self.keys.decrypt_data_key(&ds.master_key_id, &ds.id, &ds.wrapped_data_key).await?;
        let cipher =
            Arc::new(Aes256Gcm::new_from_slice(plaintext.as_ref()).map_err(|_| CoreError::Internal("bad data key length".into()))?);
        let mut cache = self.cache.lock().map_err(|_| poisoned())?;
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(ds.id.clone(), (ds.wrapped_data_key.clone(), cipher.clone()));
        Ok(cipher)
    }

    /// Encrypts `plaintext` bound to `aad`.
    pub async fn seal(&self, ds: &ActiveDatastore, aad: &str, plaintext: &[u8]) -> CoreResult<Vec<u8>> {
        let cipher = self.cipher_for(ds).await?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
            .map_err(|_| CoreError::Internal("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a body sealed with the same datastore key and `aad`.
    pub async fn open(&self, ds: &ActiveDatastore, aad: &str, sealed: &[u8]) -> CoreResult<Vec<u8>> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != FORMAT_V1 {
            return Err(CoreError::Internal("unrecognised ciphertext format".into()));
        }
        let cipher = self.cipher_for(ds).await?;
        cipher
            .decrypt(Nonce::from_slice(&sealed[1..1 + NONCE_LEN]), Payload { msg: &sealed[1 + NONCE_LEN..], aad: aad.as_bytes() })
            .map_err(|_| CoreError::Internal("body failed authentication".into()))
    }
}

fn poisoned() -> CoreError {
    CoreError::Internal("key cache lock poisoned".into())
}
