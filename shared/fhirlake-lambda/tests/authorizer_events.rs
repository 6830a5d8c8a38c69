//! The authorizer function driven by the sample events of `events/authorizer`, through the
//! service it runs under the Lambda runtime: signed requests for this deployment are let
//! through with their access key id; everything that could never verify is denied.

mod common;

use std::sync::Arc;

use common::*;
use fhirlake_auth::{Credentials, StaticCredentials};
use fhirlake_lambda::{AuthorizerContext, ACCESS_KEY_ID_CONTEXT_KEY};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use serde_json::Value;

fn context() -> Arc<AuthorizerContext> {
    Arc::new(AuthorizerContext::new(REGION, Arc::new(StaticCredentials::new(ACCESS_KEY_ID, SECRET)), None))
}

/// Re-signs an authorizer event and keeps `identitySource` in step with its header.
fn resigned(event: Event, credentials: &Credentials, service: &str) -> Event {
    let mut event = event.signed_with(credentials, service);
    let authorization = event.header("authorization").expect("authorization").to_string();
    event.0["identitySource"] = Value::Array(vec![Value::String(authorization)]);
    event
}

#[tokio::test]
async fn a_signed_request_is_allowed_with_its_access_key() {
    let event = resigned(Event::load("authorizer/sigv4-read.json"), &Credentials::new(ACCESS_KEY_ID, SECRET), "healthlake");
    let response = authorize(&context(), &event).await;
    assert!(response.is_authorized);
    assert_eq!(response.context.get(ACCESS_KEY_ID_CONTEXT_KEY), Some(&Value::String(ACCESS_KEY_ID.into())));
    let wire = serde_json::to_value(&response).expect("serialises");
    assert_eq!(wire, serde_json::json!({"isAuthorized": true, "context": {"accessKeyId": ACCESS_KEY_ID}}));
}

#[tokio::test]
async fn the_signature_is_left_to_the_function() {
    // The authorizer has no body, so a signature over another body still passes it.
    let mut event = resigned(Event::load("authorizer/sigv4-read.json"), &Credentials::new(ACCESS_KEY_ID, "not-the-secret"), "healthlake");
    event = event.set_header("x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert!(authorize(&context(), &event).await.is_authorized);
}

#[tokio::test]
async fn requests_that_could_never_verify_are_denied() {
    let ours = Credentials::new(ACCESS_KEY_ID, SECRET);
    let date_not_signed = {
        let event = resigned(Event::load("authorizer/sigv4-date-not-signed.json"), &ours, "healthlake");
        let authorization = event
            .header("authorization")
            .expect("authorization")
            .replace("SignedHeaders=accept;host;x-amz-date", "SignedHeaders=accept;host");
        event.set_header("authorization", &authorization)
    };
    let unsigned_payload =
        resigned(Event::load("authorizer/sigv4-read.json"), &ours, "healthlake").set_header("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    let cases = [
        ("committed in 2024, so expired", Event::load("authorizer/sigv4-read.json")),
        ("scoped to execute-api", resigned(Event::load("authorizer/sigv4-other-service.json"), &ours, "execute-api")),
        (
            "unknown access key",
            resigned(Event::load("authorizer/sigv4-unknown-key.json"), &Credentials::new("AKIDNOBODYKNOWSTHIS", "x"), "healthlake"),
        ),
        ("x-amz-date not signed", date_not_signed),
        ("unsigned payload", unsigned_payload),
        ("bearer token without exp", Event::load("authorizer/bearer-token.json")),
    ];
    for (case, event) in cases {
        let response = authorize(&context(), &event).await;
        assert!(!response.is_authorized, "{case}");
        assert!(response.context.is_empty(), "{case}");
    }
}

#[tokio::test]
async fn a_request_for_another_region_is_denied() {
    let event = Event::load("authorizer/sigv4-read.json");
    let other_region = Arc::new(AuthorizerContext::new("eu-west-1", Arc::new(StaticCredentials::new(ACCESS_KEY_ID, SECRET)), None));
    let signed = resigned(event, &Credentials::new(ACCESS_KEY_ID, SECRET), "healthlake");
    assert!(!authorize(&other_region, &signed).await.is_authorized);
}

#[test]
fn every_sample_event_parses_as_an_authorizer_v2_request() {
    for entry in std::fs::read_dir(events_dir().join("authorizer")).expect("the events directory") {
        let path = entry.expect("an entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        let event: ApiGatewayV2CustomAuthorizerV2Request =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(event.version.as_deref(), Some("2.0"), "{}", path.display());
        assert!(event.headers.contains_key("authorization"), "{}", path.display());
        assert_eq!(event.request_context.http.method, http::Method::GET, "{}", path.display());
    }
}

/// A compact JWS with this header and payload and a placeholder signature.
fn jws(header: serde_json::Value, payload: serde_json::Value) -> String {
    use base64::Engine;
    let part = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
    format!("{}.{}.c2lnbmF0dXJl", part(header), part(payload))
}

#[tokio::test]
async fn bearer_tokens_that_could_validate_pass_to_the_function_which_validates_them_in_full() {
    let exp = chrono::Utc::now().timestamp() + 300;
    let good = jws(serde_json::json!({"alg": "RS256", "kid": "k1"}), serde_json::json!({"exp": exp, "scope": "system/*.rs"}));
    let event = Event::load("authorizer/bearer-token.json").set_header("authorization", &format!("Bearer {good}"));
    let response = authorize(&context(), &event).await;
    assert!(response.is_authorized);
    assert_eq!(response.context.get("authentication"), Some(&serde_json::json!("bearer")));
    assert!(!response.context.contains_key("accessKeyId"));

    let refused = [
        ("alg none", jws(serde_json::json!({"alg": "none"}), serde_json::json!({"exp": exp}))),
        ("hs256", jws(serde_json::json!({"alg": "HS256"}), serde_json::json!({"exp": exp}))),
        ("expired", jws(serde_json::json!({"alg": "ES256"}), serde_json::json!({"exp": exp - 3600}))),
        ("not a jws", "opaque-token".to_string()),
    ];
    for (case, token) in refused {
        let event = Event::load("authorizer/bearer-token.json").set_header("authorization", &format!("Bearer {token}"));
        let response = authorize(&context(), &event).await;
        assert!(!response.is_authorized, "{case}");
        assert!(response.context.is_empty(), "{case}");
    }
}

/// A JWKS of one P-256 key, served from memory (the e2e suite fetches real ones over HTTP).
struct OneKey(String);

#[async_trait::async_trait]
impl fhirlake_smart::JwksSource for OneKey {
    async fn fetch(&self, _jwks_uri: &str) -> Result<String, fhirlake_smart::SmartError> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn with_the_table_the_authorizer_validates_bearer_tokens_against_the_datastore() {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let signing = jsonwebtoken::EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref());
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}]});
    let backends = memory_backends();
    let services =
        fhirlake_core::Services::new(fhirlake_core::ServiceConfig::new(REGION, ACCOUNT_ID, format!("https://{DOMAIN}")), backends.clone());
    let metadata = serde_json::json!({"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks",
        "authorization_endpoint": "https://idp.example/authorize", "token_endpoint": "https://idp.example/token",
        "capabilities": ["launch-standalone", "permission-v2"], "code_challenge_methods_supported": ["S256"]});
    let create = |config: Value| {
        serde_json::from_value::<fhirlake_core::datastores::CreateFhirDatastoreRequest>(
            serde_json::json!({"DatastoreTypeVersion": "R4", "IdentityProviderConfiguration": config}),
        )
        .unwrap()
    };
    let smart = services
        .datastores
        .create(create(serde_json::json!({"AuthorizationStrategy": "SMART_ON_FHIR", "Metadata": metadata.to_string()})))
        .await
        .unwrap()
        .datastore_id;
    let introspected = services
        .datastores
        .create(create(serde_json::json!({"AuthorizationStrategy": "SMART_ON_FHIR", "Metadata": metadata.to_string(),
            "IdpLambdaArn": "arn:aws:lambda:us-east-1:123456789012:function:token-introspection"})))
        .await
        .unwrap()
        .datastore_id;
    let jwks_cache = Arc::new(fhirlake_smart::JwksCache::with_defaults(Arc::new(OneKey(jwks.to_string()))));
    let gate =
        Arc::new(AuthorizerContext::new(REGION, Arc::new(StaticCredentials::new(ACCESS_KEY_ID, SECRET)), None).with_bearer_validation(
            backends,
            ACCOUNT_ID,
            None,
            fhirlake_api::BearerAuthenticator::new(jwks_cache),
        ));
    let mint = |aud: String, exp_in: i64| {
        let now = chrono::Utc::now().timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        let claims = serde_json::json!({"iss": "https://idp.example", "aud": aud, "exp": now + exp_in, "sub": "clinician-7",
            "client_id": "app-9", "scope": "launch/patient patient/*.rs", "patient": "p1"});
        jsonwebtoken::encode(&header, &claims, &signing).unwrap()
    };
    let event = |datastore: &str, token: &str| {
        Event::load("authorizer/bearer-token.json").with_datastore(datastore).set_header("authorization", &format!("Bearer {token}"))
    };
    let endpoint = format!("https://{DOMAIN}/datastore/{smart}/r4/");

    let allowed = authorize(&gate, &event(&smart, &mint(endpoint.clone(), 300))).await;
    assert!(allowed.is_authorized);
    assert_eq!(
        Value::Object(allowed.context),
        serde_json::json!({"authentication": "smart", "principal": "clinician-7", "clientId": "app-9", "patient": "Patient/p1"})
    );
    // What the pre-check alone would let through is validated here: another audience, a
    // signature by another key, an expired token, and a datastore that takes SigV4 only.
    let other = format!("https://{DOMAIN}/datastore/{introspected}/r4/");
    let forged = {
        let token = mint(endpoint.clone(), 300);
        let (head, _) = token.rsplit_once('.').unwrap();
        format!("{head}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]))
    };
    for (case, datastore, token) in [
        ("wrong audience", smart.clone(), mint(other, 300)),
        ("bad signature", smart.clone(), forged),
        ("expired", smart.clone(), mint(endpoint.clone(), -3600)),
        ("sigv4-only datastore", EVENTS_DATASTORE.to_string(), mint(endpoint.clone(), 300)),
    ] {
        let denied = authorize(&gate, &event(&datastore, &token)).await;
        assert!(!denied.is_authorized, "{case}");
        assert!(denied.context.is_empty(), "{case}");
    }
    // A datastore whose IdpLambdaArn judges tokens: passed on, opaque tokens included, for
    // fhir-api to ask the function once.
    let passed = authorize(&gate, &event(&introspected, "an-opaque-token")).await;
    assert!(passed.is_authorized);
    assert_eq!(Value::Object(passed.context), serde_json::json!({"authentication": "bearer"}));
}
