//! AES-256-GCM wrapping of data keys under a key-encryption key: the one format shared by the
//! key services that wrap keys themselves (the in-memory one and the local key file).
//!
//! Wrapped key: `format (1) = 1 · nonce (12) · ciphertext and tag (48)`. The associated data is
//! the master key id and the context, each length-prefixed, so a wrapped key opens only under
//! the id and context it was made for.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::{DataKey, StorageError, StorageResult};

const WRAP_FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;

fn associated_data(master_key_id: &str, context: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + master_key_id.len() + context.len());
    aad.extend_from_slice(&(master_key_id.len() as u64).to_be_bytes());
    aad.extend_from_slice(master_key_id.as_bytes());
    aad.extend_from_slice(&(context.len() as u64).to_be_bytes());
    aad.extend_from_slice(context.as_bytes());
    aad
}

/// Generates a random 256-bit data key and wraps it with `kek`.
pub fn generate_wrapped(kek: &Aes256Gcm, master_key_id: &str, context: &str) -> StorageResult<DataKey> {
    let mut plaintext = Zeroizing::new([0u8; 32]);
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(plaintext.as_mut());
    rand::thread_rng().fill_bytes(&mut nonce);
    let aad = associated_data(master_key_id, context);
    let sealed = kek
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_ref(), aad: &aad })
        .map_err(|_| StorageError::internal("data key wrapping failed"))?;
    let mut wrapped = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    wrapped.push(WRAP_FORMAT);
    wrapped.extend_from_slice(&nonce);
    wrapped.extend_from_slice(&sealed);
    Ok(DataKey { plaintext, wrapped })
}

/// Unwraps a key made by [`generate_wrapped`] with the same `kek`, id and context.
///
/// Errors: `Invalid` when the format, key, id or context does not match.
pub fn unwrap(kek: &Aes256Gcm, master_key_id: &str, context: &str, wrapped: &[u8]) -> StorageResult<Zeroizing<[u8; 32]>> {
    let (format, rest) = wrapped.split_first().ok_or_else(|| StorageError::invalid("wrapped data key is empty"))?;
    if *format != WRAP_FORMAT || rest.len() < NONCE_LEN {
        return Err(StorageError::invalid("wrapped data key has an unknown format"));
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let aad = associated_data(master_key_id, context);
    let opened = Zeroizing::new(
        kek.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| StorageError::invalid("wrapped data key does not match its master key or context"))?,
    );
    let key: [u8; 32] = opened.as_slice().try_into().map_err(|_| StorageError::invalid("wrapped data key has the wrong length"))?;
    Ok(Zeroizing::new(key))
}
