//! [`SecretsManagerCredentials`] against Secrets Manager on the shared moto server: the key pair
//! round-trips, a rotated pair replaces it, and missing or malformed secrets are told apart.

use fhirlake_auth::CredentialStore;
use fhirlake_aws::moto::{unique_name, MotoServer};
use fhirlake_aws::SecretsManagerCredentials;
use fhirlake_ports::StorageErrorKind;

#[tokio::test]
async fn stores_loads_and_rotates_the_key_pair() {
    let server = MotoServer::shared();
    let secrets = SecretsManagerCredentials::new(&server.sdk_config(), unique_name("fhirlake-keys"));

    let missing = secrets.load().await.unwrap_err();
    assert_eq!(missing.kind, StorageErrorKind::NotFound, "{missing:?}");

    secrets.store("FHLFIRSTKEY", "first-secret", None).await.unwrap();
    let store = secrets.load().await.unwrap();
    assert_eq!(store.access_key_id(), "FHLFIRSTKEY");
    assert_eq!(store.secret_for("FHLFIRSTKEY").map(|s| s.expose().to_string()).as_deref(), Some("first-secret"));

    secrets.store("FHLSECONDKEY", "second-secret", None).await.unwrap();
    let rotated = secrets.load().await.unwrap();
    assert_eq!(rotated.access_key_id(), "FHLSECONDKEY");
    assert!(rotated.secret_for("FHLFIRSTKEY").is_none());
}

#[tokio::test]
async fn a_malformed_secret_is_invalid_and_not_echoed() {
    let server = MotoServer::shared();
    let name = unique_name("fhirlake-keys");
    let client = aws_sdk_secretsmanager::Client::new(&server.sdk_config());
    client.create_secret().name(&name).secret_string("{\"access_key_id\": \"FHLKEY\", \"secret\": \"hunter2\"}").send().await.unwrap();

    let error = SecretsManagerCredentials::new(&server.sdk_config(), &name).load().await.unwrap_err();
    assert_eq!(error.kind, StorageErrorKind::Invalid);
    assert!(!error.message.contains("hunter2"), "{}", error.message);
}
