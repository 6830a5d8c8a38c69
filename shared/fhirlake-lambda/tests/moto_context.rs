//! The real contexts, built from environment-equivalent settings over DynamoDB, S3, KMS and
//! Secrets Manager on the shared moto server (`fhirlake_aws::moto`): the access keys come from a
//! secret created in moto, a create and a read go through the HTTP function's service, a
//! rotated key is picked up without a restart, and the authorizer reads the same secret.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use fhirlake_auth::Credentials;
use fhirlake_aws::moto::{unique_name, MotoServer};
use fhirlake_aws::{AwsBackend, AwsSettings, SecretsManagerCredentials};
use fhirlake_lambda::settings::{AuthorizerSettings, HttpSettings};
use fhirlake_lambda::{AuthorizerContext, HttpContext, LambdaError};

fn lookup(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
}

/// A table, bucket and KMS key of their own, created in moto.
async fn data_resources() -> AwsSettings {
    let name = unique_name("fhirlake-lambda");
    let settings =
        AwsSettings { table: name.clone(), bucket: name.clone(), object_prefix: Some("data".into()), kms_key: format!("alias/{name}") };
    AwsBackend::init(&MotoServer::shared().clients(), &settings).await.expect("create the table, bucket and key in moto");
    settings
}

#[tokio::test]
async fn serves_create_and_read_with_keys_from_secrets_manager() {
    let server = MotoServer::shared();
    let sdk = server.sdk_config();
    let secret = unique_name("fhirlake-access-keys");
    let secrets = SecretsManagerCredentials::new(&sdk, &secret);
    secrets.store(ACCESS_KEY_ID, SECRET, None).await.expect("create the secret in moto");

    let environment = vec![
        ("AWS_REGION", REGION.to_string()),
        ("FHIRLAKE_ACCOUNT_ID", ACCOUNT_ID.to_string()),
        ("FHIRLAKE_AUTH_MODE", "healthlake".to_string()),
        ("FHIRLAKE_ACCESS_KEYS_SECRET", secret.clone()),
    ];
    let mut settings = HttpSettings::from_lookup(lookup(environment.clone()), data_resources().await).expect("settings");
    // Reload on every unknown key, so the rotation below is visible at once.
    settings.key_refresh_interval = Duration::ZERO;
    let context = Arc::new(HttpContext::from_settings(&settings, &sdk).await.expect("the context builds"));

    let created = invoke(&context, &Event::load("control-plane/create-datastore.json").signed()).await;
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    let datastore = created.json()["DatastoreId"].as_str().expect("an id").to_string();
    assert_eq!(created.json()["DatastoreEndpoint"], format!("https://{DOMAIN}/datastore/{datastore}/r4/"));

    let patient = invoke(&context, &Event::load("fhir-api/create-patient.json").with_datastore(&datastore).signed()).await;
    assert_eq!(patient.status, 201, "{}", String::from_utf8_lossy(&patient.body));
    let stored = patient.json();
    let id = stored["id"].as_str().expect("an id").to_string();
    let read = invoke(&context, &Event::load("fhir-api/read-patient.json").with_datastore(&datastore).with_patient(&id).signed()).await;
    assert_eq!(read.status, 200, "{}", String::from_utf8_lossy(&read.body));
    assert_eq!(read.json(), stored);

    // Rotate the key pair in Secrets Manager: the new key works at once, the old one no more.
    let rotated = Credentials::new("AKIDFHIRLAKEROTATED", "rotated-secret");
    secrets.store(&rotated.access_key_id, rotated.secret.expose(), None).await.expect("rotate the secret");
    let read_rotated =
        Event::load("fhir-api/read-patient.json").with_datastore(&datastore).with_patient(&id).signed_with(&rotated, "healthlake");
    let response = invoke(&context, &read_rotated).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    let describe_old = Event::load("control-plane/describe-datastore.json").with_datastore(&datastore).signed();
    let response = invoke(&context, &describe_old).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["__type"], "UnrecognizedClientException");

    // The authorizer reads the same secret.
    let mut authorizer_settings = AuthorizerSettings::from_lookup(lookup(environment)).expect("authorizer settings");
    authorizer_settings.key_refresh_interval = Duration::ZERO;
    let authorizer = Arc::new(AuthorizerContext::from_settings(&authorizer_settings, &sdk).await.expect("the authorizer builds"));
    let allowed = authorize(&authorizer, &Event::load("authorizer/sigv4-read.json").signed_with(&rotated, "healthlake")).await;
    assert!(allowed.is_authorized);
    let denied = authorize(&authorizer, &Event::load("authorizer/sigv4-read.json").signed()).await;
    assert!(!denied.is_authorized);
}

#[tokio::test]
async fn a_missing_secret_fails_the_cold_start() {
    let server = MotoServer::shared();
    let environment = vec![
        ("AWS_REGION", REGION.to_string()),
        ("FHIRLAKE_ACCOUNT_ID", ACCOUNT_ID.to_string()),
        ("FHIRLAKE_ACCESS_KEYS_SECRET", unique_name("fhirlake-no-such-secret")),
    ];
    let settings = HttpSettings::from_lookup(lookup(environment.clone()), data_resources().await).expect("settings");
    let error = HttpContext::from_settings(&settings, &server.sdk_config()).await.err().expect("no context without keys");
    assert!(matches!(error, LambdaError::AccessKeys(_)), "{error}");
    let settings = AuthorizerSettings::from_lookup(lookup(environment)).expect("settings");
    assert!(matches!(AuthorizerContext::from_settings(&settings, &server.sdk_config()).await, Err(LambdaError::AccessKeys(_))));
}
