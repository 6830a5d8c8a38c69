//! [`TokenValidator`]: from a bearer token to [`TokenClaims`], or a [`SmartError`].
//!
//! [`TokenValidator::validate`] checks, in this order, stopping at the first failure:
//!
//! 1. size: at most [`MAX_TOKEN_BYTES`] (16 KiB), so no parsing work is spent on a huge header;
//! 2. shape: a compact JWS (three base64url parts) whose header is a JSON object, with no `crit`;
//! 3. algorithm: the header's `alg` is `RS256` or `ES256`. `none`, every `HS*` and anything else
//!    is refused here, before a key is looked up, so a token "signed" with HMAC over the issuer's
//!    public key (the HS/RS confusion attack) never reaches a verifier;
//! 4. key: [`JwksCache::key`] finds the issuer key for the header's `kid` that is usable for that
//!    algorithm (an RSA key for RS256, a P-256 key for ES256, nothing else);
//! 5. signature, then `exp` (required, in the future), `nbf` (if present, not in the future),
//!    `iss` (required, exactly the configured issuer), `aud` (required; a string or an array that
//!    contains one of the configured audiences), through `jsonwebtoken`;
//! 6. `iat`, if present, not in the future;
//! 7. the claims fhirlake uses ([`TokenClaims::from_claims`]).
//!
//! Time checks allow `leeway` of clock skew ([`DEFAULT_LEEWAY`], 60 seconds). The leeway is
//! bounded by [`MAX_LEEWAY`] (5 minutes): a larger one would quietly extend every token's
//! lifetime, and skew beyond minutes is a clock to fix, not to tolerate.
//!
//! The audience is the datastore's FHIR base URL, e.g. `https://host/datastore/{id}/r4/`;
//! issuers differ on the trailing slash, so each configured audience is accepted with and
//! without it (and nothing else: no prefix or case-insensitive matching).
//!
//! Validation does not decide access: after it, the caller checks
//! [`TokenClaims::check_launch_context`] and [`ScopeSet::grants`](crate::ScopeSet::grants), or
//! both at once with [`TokenClaims::authorize`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use serde::Deserialize;

use crate::claims::{optional_numeric_date, TokenClaims};
use crate::error::SmartError;
use crate::jwks::{Algorithm, JwksCache};
use crate::scopes::SmartVersion;

/// The longest bearer token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The default clock-skew allowance.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// The largest clock-skew allowance; larger configured values are reduced to it.
pub const MAX_LEEWAY: Duration = Duration::from_secs(5 * 60);

/// What a datastore accepts as a SMART access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorConfig {
    /// The `iss` tokens must carry, compared exactly.
    pub issuer: String,
    /// The datastore's FHIR endpoints; `aud` must contain one (trailing slash optional).
    pub audience: Vec<String>,
    /// Where the issuer publishes its signing keys.
    pub jwks_uri: String,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`, at most [`MAX_LEEWAY`].
    pub leeway: Duration,
    /// The scope syntax the datastore accepts.
    pub version: SmartVersion,
}

impl ValidatorConfig {
    /// A configuration with [`DEFAULT_LEEWAY`] and [`SmartVersion::V2`].
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, jwks_uri: impl Into<String>) -> ValidatorConfig {
        ValidatorConfig {
            issuer: issuer.into(),
            audience: vec![audience.into()],
            jwks_uri: jwks_uri.into(),
            leeway: DEFAULT_LEEWAY,
            version: SmartVersion::V2,
        }
    }
}

/// Validates SMART access tokens of one issuer for one datastore.
#[derive(Debug, Clone)]
pub struct TokenValidator {
    config: ValidatorConfig,
    jwks: Arc<JwksCache>,
    /// The checks of an RS256 and of an ES256 token, set up once.
    rs256: Validation,
    es256: Validation,
}

impl TokenValidator {
    /// A validator for `config`, finding keys through `jwks`. A leeway above [`MAX_LEEWAY`] is
    /// reduced to it.
    pub fn new(mut config: ValidatorConfig, jwks: Arc<JwksCache>) -> TokenValidator {
        // Pin jsonwebtoken's provider: if another crate of the build enabled its `rust_crypto`
        // feature too, jsonwebtoken could no longer pick one and would panic on first use.
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
        config.leeway = config.leeway.min(MAX_LEEWAY);
        let mut audiences = Vec::new();
        for audience in &config.audience {
            let bare = audience.trim_end_matches('/');
            for variant in [bare.to_string(), format!("{bare}/")] {
                if !bare.is_empty() && !audiences.contains(&variant) {
                    audiences.push(variant);
                }
            }
        }
        let validation = |alg: Algorithm| {
            let mut validation = Validation::new(alg.to_jsonwebtoken());
            validation.algorithms = vec![alg.to_jsonwebtoken()];
            validation.leeway = config.leeway.as_secs();
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.set_issuer(&[&config.issuer]);
            validation.set_audience(&audiences);
            validation
        };
        let (rs256, es256) = (validation(Algorithm::Rs256), validation(Algorithm::Es256));
        TokenValidator { config, jwks, rs256, es256 }
    }

    /// The configuration in force (with the leeway as bounded).
    pub fn config(&self) -> &ValidatorConfig {
        &self.config
    }

    /// Validates `token` (the bearer token itself, without the `Bearer ` prefix; see
    /// [`bearer_token`]) and returns its claims.
    ///
    /// # Errors
    /// A 401 [`SmartError`] for any token that is not acceptable (see the module doc for the
    /// order of checks); [`SmartError::KeysUnavailable`] (503) when the issuer's keys cannot be
    /// fetched.
    pub async fn validate(&self, token: &str) -> Result<TokenClaims, SmartError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(SmartError::TokenTooLarge);
        }
        let header = parse_header(token)?;
        let alg = Algorithm::from_jose(&header.alg).ok_or(SmartError::DisallowedAlgorithm)?;
        let key = self.jwks.key(&self.config.jwks_uri, header.kid.as_deref(), alg).await?;

        let validation = match alg {
            Algorithm::Rs256 => &self.rs256,
            Algorithm::Es256 => &self.es256,
        };
        let payload =
            jsonwebtoken::decode::<serde_json::Value>(token, key.decoding_key(), validation).map_err(|e| map_jwt_error(e.kind()))?.claims;

        if let Some(iat) = optional_numeric_date(&payload, "iat")? {
            if iat > now_seconds().saturating_add(self.config.leeway.as_secs() as i64) {
                return Err(SmartError::NotYetValid);
            }
        }
        let claims = TokenClaims::from_claims(&payload, self.config.version)?;
        // jsonwebtoken checked `iss`; an array `iss` would have passed there, not here.
        if claims.issuer != self.config.issuer {
            return Err(SmartError::WrongIssuer);
        }
        Ok(claims)
    }
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
///
/// # Errors
/// [`SmartError::MissingToken`] when the value is not a bearer credential or the token is empty.
pub fn bearer_token(authorization: &str) -> Result<&str, SmartError> {
    let (scheme, token) = authorization.trim().split_once(' ').ok_or(SmartError::MissingToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(SmartError::MissingToken);
    }
    Ok(token)
}

/// The JOSE header members that matter before verification.
#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// The checks of a token that need neither its issuer's keys nor the datastore: its size, its
/// shape, an accepted algorithm, and an `exp` that has not passed (within [`MAX_LEEWAY`]). For
/// an authorizer in front of the full validation, to turn away what can never validate before
/// it costs more; it proves nothing about who signed the token.
///
/// # Errors
/// The 401 [`SmartError`] of the first check that fails.
pub fn precheck(token: &str) -> Result<(), SmartError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(SmartError::TokenTooLarge);
    }
    let header = parse_header(token)?;
    Algorithm::from_jose(&header.alg).ok_or(SmartError::DisallowedAlgorithm)?;
    let payload = token.split('.').nth(1).ok_or(SmartError::Malformed("not a compact jws"))?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| SmartError::Malformed("payload is not base64url"))?;
    let payload: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| SmartError::Malformed("payload is not a json object"))?;
    let exp = optional_numeric_date(&payload, "exp")?.ok_or(SmartError::InvalidClaim("exp"))?;
    if exp < now_seconds().saturating_sub(MAX_LEEWAY.as_secs() as i64) {
        return Err(SmartError::Expired);
    }
    Ok(())
}

fn parse_header(token: &str) -> Result<Header, SmartError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(SmartError::Malformed("not a compact jws"));
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| SmartError::Malformed("header is not base64url"))?;
    let header: Header = serde_json::from_slice(&bytes).map_err(|_| SmartError::Malformed("header is not a jose header"))?;
    if header.crit.is_some() {
        return Err(SmartError::Malformed("critical header extensions are not supported"));
    }
    Ok(header)
}

fn map_jwt_error(kind: &ErrorKind) -> SmartError {
    match kind {
        ErrorKind::ExpiredSignature => SmartError::Expired,
        ErrorKind::ImmatureSignature => SmartError::NotYetValid,
        ErrorKind::InvalidIssuer => SmartError::WrongIssuer,
        ErrorKind::InvalidAudience => SmartError::WrongAudience,
        ErrorKind::InvalidSignature => SmartError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => SmartError::DisallowedAlgorithm,
        ErrorKind::MissingRequiredClaim(name) => SmartError::InvalidClaim(claim_name(name)),
        ErrorKind::InvalidClaimFormat(name) => SmartError::InvalidClaim(claim_name(name)),
        ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidKeyFormat => SmartError::UnknownKey,
        ErrorKind::Base64(_) => SmartError::Malformed("token part is not base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => SmartError::Malformed("payload is not a json object"),
        _ => SmartError::Malformed("token could not be decoded"),
    }
}

/// The static name of a registered claim, so that messages stay free of token text.
fn claim_name(name: &str) -> &'static str {
    match name {
        "exp" => "exp",
        "nbf" => "nbf",
        "iss" => "iss",
        "aud" => "aud",
        "sub" => "sub",
        _ => "registered claim",
    }
}

fn now_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use jsonwebtoken::{EncodingKey, Header as JwtHeader};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    use serde_json::{json, Value};

    use super::*;
    use crate::jwks::tests::MemoryJwksSource;
    use crate::{Context, Interaction};

    const ISS: &str = "https://auth.example/oauth2";
    const AUD: &str = "https://fhir.example/datastore/abc123/r4/";
    const JWKS: &str = "https://auth.example/oauth2/keys";

    /// A generated RSA key: its signer and its public JWK.
    struct RsaKey {
        encoding: EncodingKey,
        public_pem: String,
        n: String,
        e: String,
    }

    impl RsaKey {
        fn generate() -> RsaKey {
            let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
            let public = private.to_public_key();
            RsaKey {
                encoding: EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes()),
                public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
                n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            }
        }

        fn jwk(&self, kid: &str) -> Value {
            json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": self.n, "e": self.e })
        }
    }

    struct EcKey {
        encoding: EncodingKey,
        x: String,
        y: String,
    }

    impl EcKey {
        fn generate() -> EcKey {
            use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
            let pkcs8 = pair.to_pkcs8v1().unwrap();
            let point = pair.public_key().as_ref();
            assert_eq!((point.len(), point[0]), (65, 4), "uncompressed p-256 point");
            EcKey {
                encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
                x: URL_SAFE_NO_PAD.encode(&point[1..33]),
                y: URL_SAFE_NO_PAD.encode(&point[33..]),
            }
        }

        fn jwk(&self, kid: &str) -> Value {
            json!({ "kty": "EC", "crv": "P-256", "kid": kid, "x": self.x, "y": self.y })
        }
    }

    /// RSA generation is slow in debug builds: three keys, made once per test binary.
    fn rsa_keys() -> &'static [RsaKey; 3] {
        static KEYS: OnceLock<[RsaKey; 3]> = OnceLock::new();
        KEYS.get_or_init(|| [RsaKey::generate(), RsaKey::generate(), RsaKey::generate()])
    }

    fn ec_key() -> &'static EcKey {
        static KEY: OnceLock<EcKey> = OnceLock::new();
        KEY.get_or_init(EcKey::generate)
    }

    fn now() -> i64 {
        now_seconds()
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({
            "iss": ISS,
            "aud": AUD,
            "sub": "user-1",
            "client_id": "app-1",
            "scope": "launch/patient patient/Observation.rs openid fhirUser",
            "patient": "pat-1",
            "exp": now() + 300,
            "iat": now(),
            "jti": "jti-1",
        });
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        c
    }

    fn sign(alg: jsonwebtoken::Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
        let mut header = JwtHeader::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn rs256(kid: &str, claims: &Value) -> String {
        sign(jsonwebtoken::Algorithm::RS256, Some(kid), claims, &rsa_keys()[0].encoding)
    }

    struct Setup {
        source: Arc<MemoryJwksSource>,
        validator: TokenValidator,
    }

    fn setup_with(config: impl FnOnce(&mut ValidatorConfig)) -> Setup {
        let source = MemoryJwksSource::new(json!({ "keys": [rsa_keys()[0].jwk("rsa-1"), ec_key().jwk("ec-1")] }));
        let cache = Arc::new(JwksCache::new(source.clone(), Duration::from_secs(600), Duration::from_secs(30)));
        let mut c = ValidatorConfig::new(ISS, AUD, JWKS);
        config(&mut c);
        Setup { source, validator: TokenValidator::new(c, cache) }
    }

    fn setup() -> Setup {
        setup_with(|_| {})
    }

    #[tokio::test]
    async fn valid_rs256_token() {
        let s = setup();
        let claims = s.validator.validate(&rs256("rsa-1", &claims(json!({})))).await.unwrap();
        assert_eq!(claims.issuer, ISS);
        assert_eq!(claims.subject.as_deref(), Some("user-1"));
        assert_eq!(claims.client_id.as_deref(), Some("app-1"));
        assert_eq!(claims.launch_patient.as_deref(), Some("pat-1"));
        assert_eq!(claims.jwt_id.as_deref(), Some("jti-1"));
        assert!(claims.authorize("Observation", Interaction::Search).unwrap().allows(Context::Patient));
        assert_eq!(claims.authorize("Observation", Interaction::Create), Err(SmartError::InsufficientScope));
        assert_eq!(s.source.fetches(), 1);
    }

    #[tokio::test]
    async fn valid_es256_token() {
        let s = setup();
        let token = sign(jsonwebtoken::Algorithm::ES256, Some("ec-1"), &claims(json!({ "scope": "system/*.rs" })), &ec_key().encoding);
        let claims = s.validator.validate(&token).await.unwrap();
        assert!(claims.scopes.grants("Patient", Interaction::Read).allows(Context::System));
    }

    #[tokio::test]
    async fn es256_header_with_the_kid_of_an_rsa_key_finds_no_key() {
        let s = setup();
        let token = sign(jsonwebtoken::Algorithm::ES256, Some("rsa-1"), &claims(json!({})), &ec_key().encoding);
        assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::UnknownKey);
    }

    #[tokio::test]
    async fn expired_token() {
        let s = setup();
        let token = rs256("rsa-1", &claims(json!({ "exp": now() - 3600, "iat": now() - 7200 })));
        let e = s.validator.validate(&token).await.unwrap_err();
        assert_eq!(e, SmartError::Expired);
        assert!(e.www_authenticate().unwrap().contains("invalid_token"));
    }

    #[tokio::test]
    async fn exp_is_required() {
        let s = setup();
        let mut c = claims(json!({}));
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(s.validator.validate(&rs256("rsa-1", &c)).await.unwrap_err(), SmartError::InvalidClaim("exp"));
    }

    #[tokio::test]
    async fn nbf_or_iat_in_the_future() {
        let s = setup();
        let token = rs256("rsa-1", &claims(json!({ "nbf": now() + 600 })));
        assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::NotYetValid);
        let token = rs256("rsa-1", &claims(json!({ "iat": now() + 600 })));
        assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::NotYetValid);
        let token = rs256("rsa-1", &claims(json!({ "nbf": now() - 10 })));
        assert!(s.validator.validate(&token).await.is_ok());
    }

    #[tokio::test]
    async fn wrong_issuer() {
        let s = setup();
        for iss in [json!("https://evil.example/oauth2"), json!("https://auth.example/oauth2/"), json!([ISS]), json!(null)] {
            let token = rs256("rsa-1", &claims(json!({ "iss": iss })));
            let e = s.validator.validate(&token).await.unwrap_err();
            assert!(matches!(e, SmartError::WrongIssuer | SmartError::InvalidClaim("iss")), "{iss}: {e:?}");
        }
    }

    #[tokio::test]
    async fn audience_with_or_without_trailing_slash_string_or_array() {
        let s = setup();
        let bare = AUD.trim_end_matches('/');
        for aud in [json!(AUD), json!(bare), json!(["https://other.example/", bare])] {
            let token = rs256("rsa-1", &claims(json!({ "aud": aud })));
            assert!(s.validator.validate(&token).await.is_ok(), "{aud}");
        }
        // Configured without the slash, tokens with it are accepted too.
        let s = setup_with(|c| c.audience = vec![bare.to_string()]);
        assert!(s.validator.validate(&rs256("rsa-1", &claims(json!({})))).await.is_ok());
    }

    #[tokio::test]
    async fn wrong_audience() {
        let s = setup();
        let other = "https://fhir.example/datastore/other/r4/";
        for aud in [json!(other), json!([other]), json!("https://fhir.example/datastore/abc123/r4//"), json!("https://fhir.example/")] {
            let token = rs256("rsa-1", &claims(json!({ "aud": aud })));
            assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::WrongAudience, "{aud}");
        }
        let mut c = claims(json!({}));
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(s.validator.validate(&rs256("rsa-1", &c)).await.unwrap_err(), SmartError::InvalidClaim("aud"));
    }

    #[tokio::test]
    async fn signature_by_another_key() {
        let s = setup();
        let token = sign(jsonwebtoken::Algorithm::RS256, Some("rsa-1"), &claims(json!({})), &rsa_keys()[1].encoding);
        assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::BadSignature);
    }

    #[tokio::test]
    async fn tampered_payload() {
        let s = setup();
        let token = rs256("rsa-1", &claims(json!({})));
        let forged = URL_SAFE_NO_PAD.encode(claims(json!({ "scope": "system/*.*" })).to_string());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(s.validator.validate(&tampered).await.unwrap_err(), SmartError::BadSignature);
    }

    fn hand_built(header: Value, claims: &Value, signature: &str) -> String {
        format!("{}.{}.{signature}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let s = setup();
        for alg in ["none", "None", "NONE"] {
            let token = hand_built(json!({ "alg": alg, "typ": "JWT" }), &claims(json!({})), "");
            assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::DisallowedAlgorithm, "{alg}");
            let token = hand_built(json!({ "alg": alg, "kid": "rsa-1" }), &claims(json!({})), "");
            assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::DisallowedAlgorithm, "{alg}");
        }
        assert_eq!(s.source.fetches(), 0, "refused before any key lookup");
    }

    #[tokio::test]
    async fn hs256_signed_with_the_rsa_public_key_is_refused() {
        let s = setup();
        let public = &rsa_keys()[0];
        let secrets = [public.public_pem.as_bytes().to_vec(), public.n.as_bytes().to_vec(), public.jwk("rsa-1").to_string().into_bytes()];
        for secret in secrets {
            for alg in [jsonwebtoken::Algorithm::HS256, jsonwebtoken::Algorithm::HS384, jsonwebtoken::Algorithm::HS512] {
                let token = sign(alg, Some("rsa-1"), &claims(json!({})), &EncodingKey::from_secret(&secret));
                assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::DisallowedAlgorithm);
            }
        }
    }

    #[tokio::test]
    async fn other_asymmetric_algorithms_are_refused() {
        let s = setup();
        for alg in [jsonwebtoken::Algorithm::RS384, jsonwebtoken::Algorithm::RS512, jsonwebtoken::Algorithm::PS256] {
            let token = sign(alg, Some("rsa-1"), &claims(json!({})), &rsa_keys()[0].encoding);
            assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::DisallowedAlgorithm, "{alg:?}");
        }
    }

    #[tokio::test]
    async fn an_oct_key_in_the_jwks_is_never_used() {
        let s = setup();
        let secret = b"shared-secret-shared-secret-1234";
        s.source.set(json!({ "keys": [{ "kty": "oct", "kid": "hmac", "k": URL_SAFE_NO_PAD.encode(secret) }] }));
        let token = sign(jsonwebtoken::Algorithm::HS256, Some("hmac"), &claims(json!({})), &EncodingKey::from_secret(secret));
        assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::DisallowedAlgorithm);
        let token = rs256("hmac", &claims(json!({})));
        assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::UnknownKey);
    }

    #[tokio::test(start_paused = true)]
    async fn key_rotation_unknown_kid_refreshes_once_then_succeeds() {
        let s = setup();
        s.validator.validate(&rs256("rsa-1", &claims(json!({})))).await.unwrap();
        assert_eq!(s.source.fetches(), 1);
        tokio::time::advance(Duration::from_secs(31)).await;
        s.source.set(json!({ "keys": [rsa_keys()[0].jwk("rsa-1"), rsa_keys()[2].jwk("rsa-2")] }));
        let rotated = sign(jsonwebtoken::Algorithm::RS256, Some("rsa-2"), &claims(json!({})), &rsa_keys()[2].encoding);
        s.validator.validate(&rotated).await.unwrap();
        assert_eq!(s.source.fetches(), 2);
        s.validator.validate(&rotated).await.unwrap();
        s.validator.validate(&rs256("rsa-1", &claims(json!({})))).await.unwrap();
        assert_eq!(s.source.fetches(), 2, "both keys now cached");
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kid_twice_within_the_refresh_interval_fetches_once() {
        let s = setup();
        let token = rs256("nope", &claims(json!({})));
        assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::UnknownKey);
        assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::UnknownKey);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::UnknownKey);
        assert_eq!(s.source.fetches(), 1);
    }

    #[tokio::test]
    async fn token_without_kid_needs_exactly_one_usable_key() {
        let token = sign(jsonwebtoken::Algorithm::RS256, None, &claims(json!({})), &rsa_keys()[0].encoding);
        let s = setup();
        assert!(s.validator.validate(&token).await.is_ok(), "one RSA key in the set (and one EC key, unusable for RS256)");
        let s = setup();
        s.source.set(json!({ "keys": [rsa_keys()[0].jwk("rsa-1"), rsa_keys()[1].jwk("rsa-x")] }));
        assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::UnknownKey, "two RSA keys: ambiguous");
    }

    #[tokio::test]
    async fn leeway_is_honoured_and_bounded() {
        let recently_expired = rs256("rsa-1", &claims(json!({ "exp": now() - 30, "iat": now() - 600 })));
        assert!(setup().validator.validate(&recently_expired).await.is_ok(), "within the default 60 s");
        let strict = setup_with(|c| c.leeway = Duration::ZERO);
        assert_eq!(strict.validator.validate(&recently_expired).await.unwrap_err(), SmartError::Expired);

        let long_expired = rs256("rsa-1", &claims(json!({ "exp": now() - 90, "iat": now() - 600 })));
        assert_eq!(setup().validator.validate(&long_expired).await.unwrap_err(), SmartError::Expired);

        let almost_valid = rs256("rsa-1", &claims(json!({ "nbf": now() + 30 })));
        assert!(setup().validator.validate(&almost_valid).await.is_ok());
        assert_eq!(strict.validator.validate(&almost_valid).await.unwrap_err(), SmartError::NotYetValid);

        let lax = setup_with(|c| c.leeway = Duration::from_secs(3600));
        assert_eq!(lax.validator.config().leeway, MAX_LEEWAY);
        let expired_10_min = rs256("rsa-1", &claims(json!({ "exp": now() - 600, "iat": now() - 1200 })));
        assert_eq!(lax.validator.validate(&expired_10_min).await.unwrap_err(), SmartError::Expired);
        let expired_4_min = rs256("rsa-1", &claims(json!({ "exp": now() - 240, "iat": now() - 1200 })));
        assert!(lax.validator.validate(&expired_4_min).await.is_ok());
    }

    #[tokio::test]
    async fn oversize_token_is_refused_before_parsing() {
        let s = setup();
        let big = rs256("rsa-1", &claims(json!({ "padding": "x".repeat(MAX_TOKEN_BYTES) })));
        assert!(big.len() > MAX_TOKEN_BYTES);
        assert_eq!(s.validator.validate(&big).await.unwrap_err(), SmartError::TokenTooLarge);
        assert_eq!(s.source.fetches(), 0);
        let just_fits = rs256("rsa-1", &claims(json!({ "padding": "x".repeat(MAX_TOKEN_BYTES / 2) })));
        assert!(s.validator.validate(&just_fits).await.is_ok());
    }

    #[tokio::test]
    async fn malformed_tokens() {
        let s = setup();
        let good = rs256("rsa-1", &claims(json!({})));
        let parts: Vec<&str> = good.split('.').collect();
        let cases = [
            String::new(),
            "abc".to_string(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{good}.extra"),
            format!("!!.{}.{}", parts[1], parts[2]),
            format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("[1]"), parts[1], parts[2]),
            hand_built(json!({ "alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1 }), &claims(json!({})), parts[2]),
        ];
        for token in cases {
            assert!(matches!(s.validator.validate(&token).await.unwrap_err(), SmartError::Malformed(_)), "{token}");
        }
        let token = format!("{}.!!.{}", parts[0], parts[2]);
        assert_eq!(s.validator.validate(&token).await.unwrap_err().http_status(), 401);
    }

    #[tokio::test]
    async fn unreachable_issuer_keys_are_503() {
        let s = setup();
        s.source.fail();
        let e = s.validator.validate(&rs256("rsa-1", &claims(json!({})))).await.unwrap_err();
        assert_eq!(e.http_status(), 503);
        assert_eq!(e.www_authenticate(), None);
    }

    #[tokio::test]
    async fn bad_claims_in_a_valid_token_are_401() {
        let s = setup();
        let token = rs256("rsa-1", &claims(json!({ "patient": "../etc" })));
        assert_eq!(s.validator.validate(&token).await.unwrap_err(), SmartError::InvalidClaim("patient"));
    }

    #[tokio::test]
    async fn v1_datastore_ignores_v2_scopes() {
        let s = setup_with(|c| c.version = SmartVersion::V1);
        let token = rs256("rsa-1", &claims(json!({ "scope": "patient/Observation.rs patient/Patient.read" })));
        let claims = s.validator.validate(&token).await.unwrap();
        assert_eq!(claims.scopes.ignored(), ["patient/Observation.rs"]);
        assert_eq!(claims.authorize("Observation", Interaction::Read), Err(SmartError::InsufficientScope));
        assert!(claims.authorize("Patient", Interaction::Read).is_ok());
    }

    #[tokio::test]
    async fn error_messages_never_echo_token_contents() {
        let s = setup();
        let marker = "SECRETMARKER";
        let tokens = [
            rs256("rsa-1", &claims(json!({ "iss": marker }))),
            rs256("rsa-1", &claims(json!({ "aud": marker }))),
            rs256("rsa-1", &claims(json!({ "patient": marker.repeat(10) }))),
            rs256("rsa-1", &claims(json!({ "fhirUser": marker }))),
            rs256(marker, &claims(json!({}))),
            hand_built(json!({ "alg": marker }), &claims(json!({})), marker),
        ];
        for token in tokens {
            let e = s.validator.validate(&token).await.unwrap_err();
            assert!(!format!("{e} {e:?} {:?}", e.www_authenticate()).contains(marker), "{e:?}");
        }
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Ok("abc.def.ghi"));
        assert_eq!(bearer_token("bearer  abc "), Ok("abc"));
        assert_eq!(bearer_token("Basic dXNlcjpwdw=="), Err(SmartError::MissingToken));
        assert_eq!(bearer_token("Bearer"), Err(SmartError::MissingToken));
        assert_eq!(bearer_token("Bearer   "), Err(SmartError::MissingToken));
        assert_eq!(bearer_token(""), Err(SmartError::MissingToken));
    }

    #[test]
    fn precheck_turns_away_what_can_never_validate() {
        let part = |v: Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
        let token = |alg: &str, exp: i64| format!("{}.{}.c2ln", part(json!({"alg": alg, "typ": "JWT"})), part(json!({"exp": exp})));
        let later = now_seconds() + 300;
        assert_eq!(precheck(&token("RS256", later)), Ok(()));
        assert_eq!(precheck(&token("ES256", later)), Ok(()));
        assert_eq!(precheck(&token("none", later)), Err(SmartError::DisallowedAlgorithm));
        assert_eq!(precheck(&token("HS256", later)), Err(SmartError::DisallowedAlgorithm));
        assert_eq!(precheck(&token("RS256", now_seconds() - 3600)), Err(SmartError::Expired));
        let no_exp = format!("{}.{}.c2ln", part(json!({"alg": "RS256"})), part(json!({"sub": "x"})));
        assert_eq!(precheck(&no_exp), Err(SmartError::InvalidClaim("exp")));
        assert!(matches!(precheck("not-a-token"), Err(SmartError::Malformed(_))));
        assert_eq!(precheck(&"a".repeat(MAX_TOKEN_BYTES + 1)), Err(SmartError::TokenTooLarge));
    }
}
