//! Access keys: the secret type, where verifiers look secrets up, and a signer's key pair.

use std::fmt;

use zeroize::Zeroizing;

/// A secret access key. Zeroed on drop; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret access key.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(Zeroizing::new(secret.into()))
    }

    /// The secret itself, for key derivation.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

/// Where a [`crate::Verifier`] finds the secret of an access key id.
pub trait CredentialStore: Send + Sync {
    /// The secret for `access_key_id`, or `None` when the key is unknown (or disabled).
    fn secret_for(&self, access_key_id: &str) -> Option<Secret>;
}

/// A store holding exactly one key pair, as `fhirlake serve` configures from its environment.
#[derive(Debug, Clone)]
pub struct StaticCredentials {
    access_key_id: String,
    secret: Secret,
}

impl StaticCredentials {
    /// A store that knows `access_key_id` with `secret` and nothing else.
    pub fn new(access_key_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        StaticCredentials { access_key_id: access_key_id.into(), secret: secret.into() }
    }

    /// The one access key id this store knows.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
}

impl CredentialStore for StaticCredentials {
    fn secret_for(&self, access_key_id: &str) -> Option<Secret> {
        // The access key id is not a secret; a plain comparison is fine.
        (access_key_id == self.access_key_id).then(|| self.secret.clone())
    }
}

/// A key pair used to sign requests.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The access key id, sent in the clear in the credential scope.
    pub access_key_id: String,
    /// The secret access key, never sent.
    pub secret: Secret,
}

impl Credentials {
    /// A key pair.
    pub fn new(access_key_id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Credentials { access_key_id: access_key_id.into(), secret: secret.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_store_knows_only_its_key() {
        let store = StaticCredentials::new("AKID", "s3cr3t");
        assert_eq!(store.secret_for("AKID").map(|s| s.expose().to_string()).as_deref(), Some("s3cr3t"));
        assert!(store.secret_for("akid").is_none());
        assert!(store.secret_for("").is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let creds = Credentials::new("AKID", "s3cr3t");
        let shown = format!("{creds:?} {:?}", StaticCredentials::new("AKID", "s3cr3t"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
