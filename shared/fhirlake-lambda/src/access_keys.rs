//! [`AccessKeys`]: the credential store of HealthLake-compatible SigV4 authentication in the
//! functions, holding the key pair loaded from Secrets Manager at cold start and reloading it,
//! at most once per [`AccessKeys::DEFAULT_REFRESH_INTERVAL`], when a request names an access key
//! it does not know. So a rotated key works without a redeploy, and a flood of requests with
//! made-up key ids costs at most one Secrets Manager call a minute per instance.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fhirlake_api::CredentialRefresh;
use fhirlake_auth::{CredentialStore, Secret, StaticCredentials};
use fhirlake_aws::SecretsManagerCredentials;
use fhirlake_ports::StorageResult;

/// Where [`AccessKeys`] loads the key pair from.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The current key pair.
    async fn load(&self) -> StorageResult<StaticCredentials>;
}

#[async_trait]
impl KeySource for SecretsManagerCredentials {
    async fn load(&self) -> StorageResult<StaticCredentials> {
        SecretsManagerCredentials::load(self).await
    }
}

/// The current key pair, reloaded on demand (see the module documentation).
pub struct AccessKeys {
    current: RwLock<Arc<StaticCredentials>>,
    source: Arc<dyn KeySource>,
    min_interval: Duration,
    /// When the last load was attempted; held while a reload runs, so concurrent callers wait
    /// for it instead of starting their own.
    last_attempt: tokio::sync::Mutex<Instant>,
    /// Incremented by every successful reload.
    generation: AtomicU64,
}

impl AccessKeys {
    /// How long after one load attempt the next may start: one minute.
    pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

    /// Loads the key pair from `source` (this counts as the first attempt of the interval).
    ///
    /// Errors: whatever the source reports; a function cannot start without its keys.
    pub async fn load(source: Arc<dyn KeySource>, min_interval: Duration) -> StorageResult<Self> {
        let first = source.load().await?;
        tracing::info!(access_key_id = %first.access_key_id(), "access keys loaded");
        Ok(AccessKeys {
            current: RwLock::new(Arc::new(first)),
            source,
            min_interval,
            last_attempt: tokio::sync::Mutex::new(Instant::now()),
            generation: AtomicU64::new(0),
        })
    }

    /// The access key id currently accepted.
    pub fn access_key_id(&self) -> String {
        self.snapshot().access_key_id().to_string()
    }

    fn snapshot(&self) -> Arc<StaticCredentials> {
        // A poisoned lock still holds a complete key pair: writers only swap an Arc.
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl CredentialStore for AccessKeys {
    fn secret_for(&self, access_key_id: &str) -> Option<Secret> {
        self.snapshot().secret_for(access_key_id)
    }
}

#[async_trait]
impl CredentialRefresh for AccessKeys {
    async fn refresh(&self) -> bool {
        let seen = self.generation.load(Ordering::SeqCst);
        let mut last_attempt = self.last_attempt.lock().await;
        if self.generation.load(Ordering::SeqCst) != seen {
            // Another request reloaded the keys while this one waited.
            return true;
        }
        if last_attempt.elapsed() < self.min_interval {
            tracing::debug!("access keys were loaded less than the refresh interval ago; not reloading");
            return false;
        }
        *last_attempt = Instant::now();
        match self.source.load().await {
            Ok(keys) => {
                tracing::info!(access_key_id = %keys.access_key_id(), "access keys reloaded");
                *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keys);
                self.generation.fetch_add(1, Ordering::SeqCst);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "reloading the access keys failed; keeping the current ones");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use fhirlake_ports::StorageError;

    use super::*;

    /// Hands out the key pairs queued in it, counting calls.
    struct Queue {
        pairs: Mutex<Vec<StorageResult<StaticCredentials>>>,
        calls: AtomicUsize,
    }

    impl Queue {
        fn new(pairs: Vec<StorageResult<StaticCredentials>>) -> Arc<Self> {
            Arc::new(Queue { pairs: Mutex::new(pairs.into_iter().rev().collect()), calls: AtomicUsize::new(0) })
        }
    }

    #[async_trait]
    impl KeySource for Queue {
        async fn load(&self) -> StorageResult<StaticCredentials> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.pairs.lock().unwrap().pop().unwrap_or_else(|| Err(StorageError::internal("no more pairs")))
        }
    }

    fn pair(id: &str) -> StorageResult<StaticCredentials> {
        Ok(StaticCredentials::new(id, format!("{id}-secret")))
    }

    #[tokio::test]
    async fn refresh_swaps_in_the_new_pair() {
        let source = Queue::new(vec![pair("OLD"), pair("NEW")]);
        let keys = AccessKeys::load(source.clone(), Duration::ZERO).await.unwrap();
        assert!(keys.secret_for("OLD").is_some());
        assert!(keys.refresh().await);
        assert!(keys.secret_for("OLD").is_none());
        assert_eq!(keys.secret_for("NEW").map(|s| s.expose().to_string()).as_deref(), Some("NEW-secret"));
        assert_eq!(keys.access_key_id(), "NEW");
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refresh_is_rate_limited() {
        let source = Queue::new(vec![pair("OLD"), pair("NEW")]);
        let keys = AccessKeys::load(source.clone(), AccessKeys::DEFAULT_REFRESH_INTERVAL).await.unwrap();
        for _ in 0..5 {
            assert!(!keys.refresh().await);
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 1, "no reload within the interval of the cold-start load");
        assert_eq!(keys.access_key_id(), "OLD");
    }

    #[tokio::test]
    async fn a_failed_reload_keeps_the_current_pair() {
        let source = Queue::new(vec![pair("OLD"), Err(StorageError::internal("secrets manager unreachable"))]);
        let keys = AccessKeys::load(source, Duration::ZERO).await.unwrap();
        assert!(!keys.refresh().await);
        assert!(keys.secret_for("OLD").is_some());
    }

    #[tokio::test]
    async fn a_missing_secret_fails_the_cold_start() {
        let source = Queue::new(vec![Err(StorageError::not_found("the secret s does not exist"))]);
        assert!(AccessKeys::load(source, Duration::ZERO).await.is_err());
    }
}
