//! The derived signing key, `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`,
//! and a small cache of it: a key is valid for one secret, day, region and service, so a server
//! derives it once a day instead of four HMACs per request.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::canonical::CredentialScope;
use crate::Secret;

type HmacSha256 = Hmac<Sha256>;

/// How many derived keys a cache holds before it starts over.
const CACHE_CAPACITY: usize = 64;

/// A derived SigV4 signing key.
pub(crate) type SigningKey = Zeroizing<[u8; 32]>;

/// `HMAC-SHA256(key, data)`.
pub(crate) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Derives the signing key for `secret` within `scope`.
pub(crate) fn derive(secret: &Secret, scope: &CredentialScope) -> SigningKey {
    let seed = Zeroizing::new(format!("AWS4{}", secret.expose()));
    let k_date = Zeroizing::new(hmac(seed.as_bytes(), scope.date.as_bytes()));
    let k_region = Zeroizing::new(hmac(&*k_date, scope.region.as_bytes()));
    let k_service = Zeroizing::new(hmac(&*k_region, scope.service.as_bytes()));
    Zeroizing::new(hmac(&*k_service, b"aws4_request"))
}

/// Checks `signature` against `HMAC(key, string_to_sign)` in constant time.
pub(crate) fn verify(key: &SigningKey, string_to_sign: &str, signature: &[u8; 32]) -> bool {
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(&**key) else {
        return false;
    };
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(signature).is_ok()
}

/// The hex signature of `string_to_sign` under `key`.
pub(crate) fn sign(key: &SigningKey, string_to_sign: &str) -> String {
    hex::encode(hmac(&**key, string_to_sign.as_bytes()))
}

/// Derived keys by (SHA-256 of secret, scope). Secrets themselves are never kept.
#[derive(Default)]
pub(crate) struct SigningKeyCache {
    keys: Mutex<HashMap<([u8; 32], String), SigningKey>>,
}

impl SigningKeyCache {
    /// The signing key for `secret` in `scope`, derived on first use.
    pub(crate) fn get(&self, secret: &Secret, scope: &CredentialScope) -> SigningKey {
        let secret_digest: [u8; 32] = Sha256::digest(secret.expose().as_bytes()).into();
        let cache_key = (secret_digest, scope.to_string());
        // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
        let mut keys = self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(key) = keys.get(&cache_key) {
            return key.clone();
        }
        let key = derive(secret, scope);
        if keys.len() >= CACHE_CAPACITY {
            keys.clear();
        }
        keys.insert(cache_key, key.clone());
        key
    }
}

impl std::fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeyCache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(date: &str) -> CredentialScope {
        CredentialScope { date: date.into(), region: "us-east-1".into(), service: "iam".into() }
    }

    #[test]
    fn derives_the_documented_example_key() {
        // The key derivation example from the AWS SigV4 documentation.
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let key = derive(&secret, &CredentialScope { date: "20150830".into(), ..scope("") });
        assert_eq!(hex::encode(*key), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
    }

    #[test]
    fn cache_returns_the_same_key_and_separates_scopes() {
        let cache = SigningKeyCache::default();
        let secret = Secret::new("s");
        let a = cache.get(&secret, &scope("20240101"));
        assert_eq!(*a, *cache.get(&secret, &scope("20240101")));
        assert_ne!(*a, *cache.get(&secret, &scope("20240102")));
        assert_ne!(*a, *cache.get(&Secret::new("t"), &scope("20240101")));
        for day in 0..(CACHE_CAPACITY * 2) {
            cache.get(&secret, &scope(&format!("2024{day:04}")));
        }
        assert_eq!(*a, *cache.get(&secret, &scope("20240101")));
    }

    #[test]
    fn verify_is_exact() {
        let key = derive(&Secret::new("s"), &scope("20240101"));
        let sig = sign(&key, "text");
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&sig, &mut bytes).unwrap();
        assert!(verify(&key, "text", &bytes));
        assert!(!verify(&key, "texT", &bytes));
        bytes[31] ^= 1;
        assert!(!verify(&key, "text", &bytes));
    }
}
