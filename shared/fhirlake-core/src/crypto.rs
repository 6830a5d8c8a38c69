//! Envelope encryption of resource bodies: one AES-256-GCM data key per datastore, wrapped by
//! the key service (KMS in AWS, the local key file locally) and cached unwrapped in memory.
//!
//! The same data key also keys the blind index: [`IndexKey`] is HMAC-SHA256 keyed by a key
//! derived from the data key, so equality terms of the search index reveal no values, and
//! destroying the data key makes them meaningless too.
//!
//! Ciphertext layout: `0x01 | nonce (12 bytes) | AES-256-GCM(body) with tag`. The associated data
//! names the datastore, resource and version, so a ciphertext copied to another item fails to open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use fhirlake_ports::KeyService;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::datastores::ActiveDatastore;
use crate::{CoreError, CoreResult};

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
/// Unwrapped keys kept in memory; beyond this the cache is cleared and refilled on demand.
const CACHE_CAPACITY: usize = 1024;

/// What one unwrapped data key gives: the body cipher and the index key.
struct DatastoreKeys {
    cipher: Aes256Gcm,
    index: IndexKey,
}

/// A wrapped data key and the keys unwrapped from it.
type CachedKey = (Vec<u8>, Arc<DatastoreKeys>);

/// Label of the derivation of the index key from a data key.
const INDEX_KEY_LABEL: &[u8] = b"fhirlake search index key v1";
/// Bytes of HMAC output kept in a blinded term (96 bits: collisions are negligible, so an
/// equality lookup is exact).
const BLIND_BYTES: usize = 12;

/// The blind-index key of one datastore.
#[derive(Clone)]
pub struct IndexKey(Hmac<Sha256>);

impl IndexKey {
    /// The index key keyed by `secret` itself (a datastore's is derived from its data key): for
    /// tests and benchmarks of what is indexed.
    pub fn from_secret(secret: &[u8]) -> CoreResult<Self> {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| CoreError::Internal("bad index key".into()))?;
        Ok(IndexKey(mac))
    }

    /// The blinded form of an equality term of `param` on `resource_type`: 16 url-safe base64
    /// characters.
    pub fn blind(&self, resource_type: &str, param: &str, term: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(resource_type.as_bytes());
        mac.update(&[0]);
        mac.update(param.as_bytes());
        mac.update(&[0]);
        mac.update(term.as_bytes());
        let digest = mac.finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..BLIND_BYTES])
    }
}

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

    async fn keys_for(&self, ds: &ActiveDatastore) -> CoreResult<Arc<DatastoreKeys>> {
        if let Some((wrapped, keys)) = self.cache.lock().map_err(|_| poisoned())?.get(&ds.id) {
            if *wrapped == ds.wrapped_data_key {
                return Ok(keys.clone());
            }
        }
        let plaintext: Zeroizing<[u8; 32]> = self.keys.decrypt_data_key(&ds.master_key_id, &ds.id, &ds.wrapped_data_key).await?;
        let bad_key = || CoreError::Internal("bad data key length".into());
        let cipher = Aes256Gcm::new_from_slice(plaintext.as_ref()).map_err(|_| bad_key())?;
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(plaintext.as_ref()).map_err(|_| bad_key())?;
        derive.update(INDEX_KEY_LABEL);
        let index_secret: Zeroizing<[u8; 32]> = Zeroizing::new(derive.finalize().into_bytes().into());
        let index = IndexKey(<Hmac<Sha256> as Mac>::new_from_slice(index_secret.as_ref()).map_err(|_| bad_key())?);
        let keys = Arc::new(DatastoreKeys { cipher, index });
        let mut cache = self.cache.lock().map_err(|_| poisoned())?;
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(ds.id.clone(), (ds.wrapped_data_key.clone(), keys.clone()));
        Ok(keys)
    }

    /// The blind-index key of the datastore.
    pub async fn index_key(&self, ds: &ActiveDatastore) -> CoreResult<IndexKey> {
        Ok(self.keys_for(ds).await?.index.clone())
    }

    /// Encrypts `plaintext` bound to `aad`.
    pub async fn seal(&self, ds: &ActiveDatastore, aad: &str, plaintext: &[u8]) -> CoreResult<Vec<u8>> {
        let keys = self.keys_for(ds).await?;
        let cipher = &keys.cipher;
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
        let keys = self.keys_for(ds).await?;
        keys.cipher
            .decrypt(Nonce::from_slice(&sealed[1..1 + NONCE_LEN]), Payload { msg: &sealed[1 + NONCE_LEN..], aad: aad.as_bytes() })
            .map_err(|_| CoreError::Internal("body failed authentication".into()))
    }
}

fn poisoned() -> CoreError {
    CoreError::Internal("key cache lock poisoned".into())
}
