//! The signing keys of an issuer (its JWKS), fetched through a port and cached.
//!
//! [`JwksSource`] is the port: it returns the JWKS document of a URI as text.
//! [`HttpJwksSource`](crate::HttpJwksSource) is the real one; tests use an in-memory one.
//! [`JwksCache`] sits in front of a source and answers [`JwksCache::key`]:
//!
//! - **TTL.** A fetched document is used for `ttl` ([`DEFAULT_TTL`], 10 minutes); after that the
//!   next lookup fetches it again.
//! - **Unknown `kid`.** A `kid` the cached document does not have (an issuer rotating its keys)
//!   triggers one refresh, then the lookup is retried once.
//! - **Rate limit.** Fetches of one URI, whether for TTL, unknown `kid` or a failed previous
//!   attempt, happen at most once per `min_refresh_interval` ([`DEFAULT_MIN_REFRESH_INTERVAL`],
//!   30 seconds). Within it, an unknown `kid` is [`SmartError::UnknownKey`] without a fetch, and
//!   a failed fetch is answered by [`SmartError::KeysUnavailable`] again without a fetch. So
//!   tokens with made-up `kid`s cannot make fhirlake hammer an issuer.
//! - **One fetch at a time.** Each URI has its own async mutex held across the fetch, so callers
//!   arriving together share one fetch and then read its result. While a fetch runs, other
//!   lookups of that URI wait for it, at most the source's own timeout (2 s for
//!   [`HttpJwksSource`](crate::HttpJwksSource)); lookups of other URIs are not held up.
//! - **Fail closed.** Keys older than the TTL are not used when a refresh fails: a key the issuer
//!   has withdrawn must stop working, and 503 is the honest answer while the issuer is down.
//!
//! A JWK is usable for an [`Algorithm`] only if its `kty` matches (`RSA` with a modulus of at
//! least 2048 bits for RS256; `EC` on `P-256` for ES256), its `use` is absent or `sig`, and its
//! `alg` is absent or the algorithm's name. Other keys (`oct` secrets, encryption keys, other
//! curves) are skipped, never failing the whole document. A token without `kid` is matched only
//! when exactly one usable key exists.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::SmartError;

/// How long a fetched JWKS document is used before it is fetched again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);

/// The shortest time between two fetches of one JWKS URI.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The signature algorithms fhirlake accepts on access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl Algorithm {
    /// The JOSE name (`RS256`, `ES256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }

    /// The algorithm named `alg` in a JOSE header, if it is one fhirlake accepts.
    pub fn from_jose(alg: &str) -> Option<Algorithm> {
        match alg {
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }

    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

/// A public key from a JWKS, usable for exactly one [`Algorithm`].
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl VerifyingKey {
    /// The JWK's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

/// Where JWKS documents come from.
#[async_trait]
pub trait JwksSource: Send + Sync {
    /// Fetches the JWKS document (JSON text) at `jwks_uri`.
    ///
    /// # Errors
    /// [`SmartError::KeysUnavailable`] when the document cannot be fetched;
    /// [`SmartError::Config`] when `jwks_uri` is not acceptable at all.
    async fn fetch(&self, jwks_uri: &str) -> Result<String, SmartError>;
}

/// The usable keys of one JWKS document.
#[derive(Debug, Default)]
struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys usable for signatures fhirlake accepts.
    fn parse(document: &str) -> Result<KeySet, SmartError> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_str(document).map_err(|_| SmartError::KeysUnavailable("jwks document is not a json key set"))?;
        let keys = document
            .keys
            .into_iter()
            .filter_map(|jwk| serde_json::from_value::<Jwk>(jwk).ok())
            .filter_map(|jwk| jwk.verifying_key())
            .map(Arc::new)
            .collect();
        Ok(KeySet { keys })
    }

    /// The key for `kid` and `alg`: with a `kid`, the first usable key with that `kid`;
    /// without, the only usable key.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<VerifyingKey>> {
        let mut usable = self.keys.iter().filter(|k| k.algorithm == alg);
        match kid {
            Some(kid) => usable.find(|k| k.kid.as_deref() == Some(kid)).cloned(),
            None => match (usable.next(), usable.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            },
        }
    }
}

/// The members of a JWK that fhirlake reads (RFC 7517, RFC 7518 §6).
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl Jwk {
    fn verifying_key(self) -> Option<VerifyingKey> {
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let (algorithm, key) = match self.kty.as_str() {
            "RSA" => {
                let n = URL_SAFE_NO_PAD.decode(self.n?).ok()?;
                let e = URL_SAFE_NO_PAD.decode(self.e?).ok()?;
                let significant = n.iter().skip_while(|b| **b == 0).count();
                if significant < 256 || e.is_empty() {
                    return None;
                }
                (Algorithm::Rs256, DecodingKey::from_rsa_raw_components(&n, &e))
            }
            "EC" if self.crv.as_deref() == Some("P-256") => {
                let (x, y) = (self.x?, self.y?);
                let coordinate_ok = |c: &str| URL_SAFE_NO_PAD.decode(c).is_ok_and(|b| b.len() == 32);
                if !coordinate_ok(&x) || !coordinate_ok(&y) {
                    return None;
                }
                (Algorithm::Es256, DecodingKey::from_ec_components(&x, &y).ok()?)
            }
            _ => return None,
        };
        if self.alg.as_deref().is_some_and(|a| a != algorithm.as_str()) {
            return None;
        }
        Some(VerifyingKey { kid: self.kid, algorithm, key })
    }
}

/// The cache state of one JWKS URI.
#[derive(Default)]
struct Entry {
    /// The last document fetched successfully, and when.
    keys: Option<(Arc<KeySet>, Instant)>,
    /// When the last fetch started, successful or not.
    last_attempt: Option<Instant>,
    /// Whether the last fetch failed.
    last_failed: bool,
}

/// Caches the signing keys of JWKS URIs in front of a [`JwksSource`].
pub struct JwksCache {
    source: Arc<dyn JwksSource>,
    ttl: Duration,
    min_refresh_interval: Duration,
    entries: StdMutex<HashMap<String, Arc<Mutex<Entry>>>>,
}

impl JwksCache {
    /// A cache over `source`. `min_refresh_interval` is capped at `ttl`, so a document is never
    /// kept past its TTL just because of the rate limit.
    pub fn new(source: Arc<dyn JwksSource>, ttl: Duration, min_refresh_interval: Duration) -> JwksCache {
        JwksCache { source, ttl, min_refresh_interval: min_refresh_interval.min(ttl), entries: StdMutex::default() }
    }

    /// A cache with [`DEFAULT_TTL`] and [`DEFAULT_MIN_REFRESH_INTERVAL`].
    pub fn with_defaults(source: Arc<dyn JwksSource>) -> JwksCache {
        JwksCache::new(source, DEFAULT_TTL, DEFAULT_MIN_REFRESH_INTERVAL)
    }

    /// The key of `jwks_uri` that verifies `alg` signatures for `kid` (see the module doc).
    ///
    /// # Errors
    /// [`SmartError::UnknownKey`] when no usable key matches, even after the refresh this lookup
    /// was allowed; [`SmartError::KeysUnavailable`] when the keys are needed and the fetch failed
    /// (now, or within the last `min_refresh_interval`); [`SmartError::Config`] from the source.
    pub async fn key(&self, jwks_uri: &str, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerifyingKey>, SmartError> {
        let entry = self.entry(jwks_uri);
        let mut entry = entry.lock().await;
        let now = Instant::now();
        let fresh = entry.keys.as_ref().filter(|(_, fetched)| now.duration_since(*fetched) < self.ttl).map(|(k, _)| k.clone());
        if let Some(key) = fresh.as_ref().and_then(|keys| keys.find(kid, alg)) {
            return Ok(key);
        }
        let may_fetch = entry.last_attempt.is_none_or(|at| now.duration_since(at) >= self.min_refresh_interval);
        if !may_fetch {
            return Err(match fresh {
                Some(_) => SmartError::UnknownKey,
                None if entry.last_failed => SmartError::KeysUnavailable("jwks fetch failed recently"),
                None => SmartError::UnknownKey,
            });
        }
        entry.last_attempt = Some(now);
        let fetched = self.source.fetch(jwks_uri).await.and_then(|doc| KeySet::parse(&doc));
        entry.last_failed = fetched.is_err();
        let keys = match fetched {
            Ok(keys) => Arc::new(keys),
            Err(e) => {
                tracing::warn!(jwks_uri, error = %e, "jwks refresh failed");
                return Err(e);
            }
        };
        tracing::debug!(jwks_uri, usable_keys = keys.keys.len(), "jwks refreshed");
        entry.keys = Some((keys.clone(), Instant::now()));
        keys.find(kid, alg).ok_or(SmartError::UnknownKey)
    }

    fn entry(&self, jwks_uri: &str) -> Arc<Mutex<Entry>> {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.entry(jwks_uri.to_string()).or_default().clone()
    }
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache").field("ttl", &self.ttl).field("min_refresh_interval", &self.min_refresh_interval).finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    /// A [`JwksSource`] serving a replaceable document and counting fetches.
    #[derive(Default)]
    pub(crate) struct MemoryJwksSource {
        document: StdMutex<Option<String>>,
        fetches: AtomicUsize,
        delay: Option<Duration>,
    }

    impl MemoryJwksSource {
        pub(crate) fn new(document: serde_json::Value) -> Arc<MemoryJwksSource> {
            let source = MemoryJwksSource::default();
            source.set(document);
            Arc::new(source)
        }

        pub(crate) fn set(&self, document: serde_json::Value) {
            *self.document.lock().unwrap() = Some(document.to_string());
        }

        pub(crate) fn fail(&self) {
            *self.document.lock().unwrap() = None;
        }

        pub(crate) fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl JwksSource for MemoryJwksSource {
        async fn fetch(&self, _jwks_uri: &str) -> Result<String, SmartError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if let Some(delay) = self.delay {
                tokio::time::sleep(delay).await;
            }
            self.document.lock().unwrap().clone().ok_or(SmartError::KeysUnavailable("jwks endpoint unreachable"))
        }
    }

    const URI: &str = "https://issuer.example/jwks";

    /// A syntactically valid 2048-bit RSA JWK (the values need not form a real key here).
    fn rsa_jwk(kid: &str) -> serde_json::Value {
        json!({ "kty": "RSA", "kid": kid, "n": URL_SAFE_NO_PAD.encode([0xc5u8; 256]), "e": "AQAB" })
    }

    fn ec_jwk(kid: &str) -> serde_json::Value {
        let c = URL_SAFE_NO_PAD.encode([7u8; 32]);
        json!({ "kty": "EC", "crv": "P-256", "kid": kid, "x": c, "y": c })
    }

    fn with(jwk: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
        let mut jwk = jwk;
        jwk.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        jwk
    }

    fn usable(jwk: serde_json::Value) -> Vec<(Option<String>, Algorithm)> {
        KeySet::parse(&json!({ "keys": [jwk] }).to_string()).unwrap().keys.iter().map(|k| (k.kid.clone(), k.algorithm)).collect()
    }

    #[test]
    fn key_usability_rules() {
        assert_eq!(usable(rsa_jwk("r")), [(Some("r".into()), Algorithm::Rs256)]);
        assert_eq!(usable(ec_jwk("e")), [(Some("e".into()), Algorithm::Es256)]);
        assert_eq!(usable(with(rsa_jwk("r"), json!({ "use": "sig", "alg": "RS256" }))).len(), 1);
        assert_eq!(usable(with(ec_jwk("e"), json!({ "alg": "ES256" }))).len(), 1);
        let unusable = [
            with(rsa_jwk("r"), json!({ "use": "enc" })),
            with(rsa_jwk("r"), json!({ "alg": "RS384" })),
            with(rsa_jwk("r"), json!({ "alg": "ES256" })),
            with(rsa_jwk("r"), json!({ "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128]) })), // 1024 bits
            with(rsa_jwk("r"), json!({ "n": "not base64!" })),
            with(ec_jwk("e"), json!({ "crv": "P-384" })),
            with(ec_jwk("e"), json!({ "alg": "RS256" })),
            with(ec_jwk("e"), json!({ "x": URL_SAFE_NO_PAD.encode([7u8; 31]) })),
            json!({ "kty": "oct", "kid": "h", "k": "c2VjcmV0" }),
            json!({ "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }),
            json!({ "kid": "no-kty" }),
        ];
        for jwk in unusable {
            assert!(usable(jwk.clone()).is_empty(), "{jwk}");
        }
    }

    #[test]
    fn a_bad_key_does_not_spoil_the_document_but_a_bad_document_fails() {
        let doc = json!({ "keys": [json!({ "kty": "oct", "k": "AA" }), 5, rsa_jwk("r")] }).to_string();
        assert_eq!(KeySet::parse(&doc).unwrap().keys.len(), 1);
        for bad in ["", "{}", "[]", "{\"keys\": 3}", "not json"] {
            assert!(matches!(KeySet::parse(bad), Err(SmartError::KeysUnavailable(_))), "{bad}");
        }
    }

    #[test]
    fn kid_matching() {
        let set = KeySet::parse(&json!({ "keys": [rsa_jwk("a"), rsa_jwk("b"), ec_jwk("c")] }).to_string()).unwrap();
        assert_eq!(set.find(Some("b"), Algorithm::Rs256).unwrap().kid(), Some("b"));
        assert!(set.find(Some("c"), Algorithm::Rs256).is_none(), "kid of an EC key for RS256");
        assert!(set.find(Some("z"), Algorithm::Rs256).is_none());
        assert!(set.find(None, Algorithm::Rs256).is_none(), "two RSA keys: a token without kid is ambiguous");
        assert_eq!(set.find(None, Algorithm::Es256).unwrap().kid(), Some("c"), "exactly one EC key");
    }

    fn cache(source: &Arc<MemoryJwksSource>) -> JwksCache {
        JwksCache::new(source.clone(), Duration::from_secs(600), Duration::from_secs(30))
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_cached_for_the_ttl() {
        let source = MemoryJwksSource::new(json!({ "keys": [rsa_jwk("a")] }));
        let cache = cache(&source);
        for _ in 0..3 {
            cache.key(URI, Some("a"), Algorithm::Rs256).await.unwrap();
        }
        assert_eq!(source.fetches(), 1);
        tokio::time::advance(Duration::from_secs(599)).await;
        cache.key(URI, Some("a"), Algorithm::Rs256).await.unwrap();
        assert_eq!(source.fetches(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.key(URI, Some("a"), Algorithm::Rs256).await.unwrap();
        assert_eq!(source.fetches(), 2, "expired after the ttl");
        // Another URI has its own entry.
        cache.key("https://other.example/jwks", Some("a"), Algorithm::Rs256).await.unwrap();
        assert_eq!(source.fetches(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kid_refreshes_once_and_is_rate_limited() {
        let source = MemoryJwksSource::new(json!({ "keys": [rsa_jwk("old")] }));
        let cache = cache(&source);
        cache.key(URI, Some("old"), Algorithm::Rs256).await.unwrap();
        // Within the refresh interval of the first fetch: no fetch for an unknown kid.
        assert_eq!(cache.key(URI, Some("new"), Algorithm::Rs256).await.unwrap_err(), SmartError::UnknownKey);
        assert_eq!(source.fetches(), 1);

        tokio::time::advance(Duration::from_secs(31)).await;
        source.set(json!({ "keys": [rsa_jwk("old"), rsa_jwk("new")] }));
        assert_eq!(cache.key(URI, Some("new"), Algorithm::Rs256).await.unwrap().kid(), Some("new"));
        assert_eq!(source.fetches(), 2, "rotation: one refresh");

        for _ in 0..5 {
            assert_eq!(cache.key(URI, Some("bogus"), Algorithm::Rs256).await.unwrap_err(), SmartError::UnknownKey);
        }
        assert_eq!(source.fetches(), 2, "made-up kids do not fetch within the interval");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(cache.key(URI, Some("bogus"), Algorithm::Rs256).await.unwrap_err(), SmartError::UnknownKey);
        assert_eq!(source.fetches(), 3, "exactly one refresh per lookup");
        cache.key(URI, Some("old"), Algorithm::Rs256).await.unwrap();
        assert_eq!(source.fetches(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_fetch_is_unavailable_and_not_retried_within_the_interval() {
        let source = MemoryJwksSource::new(json!({ "keys": [] }));
        source.fail();
        let cache = cache(&source);
        let e = cache.key(URI, Some("a"), Algorithm::Rs256).await.unwrap_err();
        assert_eq!(e.http_status(), 503);
        assert_eq!(
            cache.key(URI, Some("a"), Algorithm::Rs256).await.unwrap_err(),
            SmartError::KeysUnavailable("jwks fetch failed recently")
        );
        assert_eq!(source.fetches(), 1);
        tokio::time::advance(Duration::from_secs(30)).await;
        source.set(json!({ "keys": [rsa_jwk("a")] }));
        cache.key(URI, Some("a"), Algorithm::Rs256).await.unwrap();
        assert_eq!(source.fetches(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_keys_are_not_used_when_the_refresh_fails() {
        let source = MemoryJwksSource::new(json!({ "keys": [rsa_jwk("a")] }));
        let cache = cache(&source);
        cache.key(URI, Some("a"), Algorithm::Rs256).await.unwrap();
        tokio::time::advance(Duration::from_secs(601)).await;
        source.fail();
        assert_eq!(cache.key(URI, Some("a"), Algorithm::Rs256).await.unwrap_err().http_status(), 503);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let source = Arc::new(MemoryJwksSource { delay: Some(Duration::from_millis(200)), ..Default::default() });
        source.set(json!({ "keys": [ec_jwk("a")] }));
        let cache = Arc::new(cache(&source));
        let lookups: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.key(URI, Some("a"), Algorithm::Es256).await })
            })
            .collect();
        for lookup in lookups {
            assert_eq!(lookup.await.unwrap().unwrap().algorithm(), Algorithm::Es256);
        }
        assert_eq!(source.fetches(), 1);
    }

    #[test]
    fn refresh_interval_is_capped_at_the_ttl() {
        let source = MemoryJwksSource::new(json!({ "keys": [] }));
        let cache = JwksCache::new(source, Duration::from_secs(5), Duration::from_secs(30));
        assert_eq!(cache.min_refresh_interval, Duration::from_secs(5));
    }

    #[test]
    fn algorithm_names() {
        for alg in [Algorithm::Rs256, Algorithm::Es256] {
            assert_eq!(Algorithm::from_jose(alg.as_str()), Some(alg));
        }
        for name in ["none", "HS256", "RS384", "PS256", "EdDSA", "rs256", ""] {
            assert_eq!(Algorithm::from_jose(name), None, "{name}");
        }
    }
}
