//! Member constraints from HealthLake's service model (lengths, patterns, ranges), plus the
//! cross-member rules HealthLake applies (a customer-managed key needs a key id, SMART needs
//! discovery metadata, ...). Every function returns `CoreError::Invalid` with a message naming
//! the member; values are not echoed except identifiers.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

use super::model::{
    AnalyticsConfiguration, AnalyticsStatus, AuthorizationStrategy, BackupConfiguration, BackupStatus, CmkType,
    IdentityProviderConfiguration, NlpConfiguration, NlpStatus, ProfileConfiguration, SseConfiguration, Tag,
};
use crate::{CoreError, CoreResult};

/// Most tags one datastore may carry, and most one request may name.
pub const MAX_TAGS: usize = 200;

pub(crate) fn pattern(re: &str) -> Regex {
    // The patterns are literals checked by the unit tests below; a typo is a bug, not input.
    Regex::new(re).unwrap_or_else(|e| panic!("invalid built-in pattern {re}: {e}"))
}

pub(crate) static NAME: LazyLock<Regex> = LazyLock::new(|| pattern(r"^[\p{L}\p{Z}\p{N}_.:/=+\-%@]*$"));
static TAG_TEXT: LazyLock<Regex> = LazyLock::new(|| pattern(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$"));
static CLIENT_TOKEN: LazyLock<Regex> = LazyLock::new(|| pattern(r"^[a-zA-Z0-9-]+$"));
pub(crate) static KMS_KEY_ID: LazyLock<Regex> = LazyLock::new(|| {
    pattern(concat!(
        r"^(arn:aws((-us-gov)|(-iso)|(-iso-b)|(-cn))?:kms:)?([a-z]{2}-[a-z]+(-[a-z]+)?-\d:)?(\d{12}:)?",
        r"(((key/)?[a-zA-Z0-9_-]+)|(alias/[a-zA-Z0-9:/_-]+))$"
    ))
});
static LAMBDA_ARN: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"^arn:aws:lambda:[a-z]{2}-[a-z]+-\d{1}:\d{12}:function:[a-zA-Z0-9\-_\.]+(:(\$LATEST|[a-zA-Z0-9\-_]+))?$"));
static RESOURCE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    pattern(concat!(
        r"^arn:aws((-us-gov)|(-iso)|(-iso-b)|(-cn))?:healthlake:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):",
        r"((datastore/fhir/(?P<datastore>.{32}))|(dataTransformationProfile/[a-f0-9]{32}))$"
    ))
});

/// Most characters of SMART discovery metadata fhirlake stores (the record must fit one item).
pub const MAX_METADATA_CHARS: usize = 64 * 1024;

fn invalid(message: impl Into<String>) -> CoreError {
    CoreError::Invalid(message.into())
}

pub(crate) fn check_length(member: &str, value: &str, min: usize, max: usize) -> CoreResult<()> {
    let chars = value.chars().count();
    if chars < min || chars > max {
        return Err(invalid(format!("{member} must be {min} to {max} characters long")));
    }
    Ok(())
}

/// `DatastoreName`: 1 to 256 characters of letters, separators, digits and `_.:/=+-%@`.
pub fn datastore_name(member: &str, name: &str) -> CoreResult<()> {
    check_length(member, name, 1, 256)?;
    if !NAME.is_match(name) {
        return Err(invalid(format!("{member} may contain only letters, digits, spaces and _.:/=+-%@")));
    }
    Ok(())
}

/// `DatastoreId` as the model constrains it (1 to 32 characters of the name alphabet).
/// Well-formed ids that name no datastore are `NotFound` later, as in HealthLake.
pub fn datastore_id(id: &str) -> CoreResult<()> {
    check_length("DatastoreId", id, 1, 32)?;
    if !NAME.is_match(id) {
        return Err(invalid("DatastoreId may contain only letters, digits, spaces and _.:/=+-%@"));
    }
    Ok(())
}

/// `ClientToken`: 1 to 64 characters of `[a-zA-Z0-9-]`.
pub fn client_token(token: &str) -> CoreResult<()> {
    check_length("ClientToken", token, 1, 64)?;
    if !CLIENT_TOKEN.is_match(token) {
        return Err(invalid("ClientToken may contain only letters, digits and hyphens"));
    }
    Ok(())
}

/// A tag key: 1 to 128 characters; the `aws:` prefix is reserved as everywhere in AWS.
pub fn tag_key(key: &str) -> CoreResult<()> {
    check_length("Tag Key", key, 1, 128)?;
    if !TAG_TEXT.is_match(key) {
        return Err(invalid("Tag Key may contain only letters, digits, spaces and _.:/=+-@"));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(invalid("Tag Key must not begin with the reserved prefix aws:"));
    }
    Ok(())
}

/// A list of tags in one request: at most [`MAX_TAGS`], valid keys and values, distinct keys.
pub fn tags(tags: &[Tag]) -> CoreResult<()> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!("Tags must contain at most {MAX_TAGS} tags")));
    }
    let mut seen = HashSet::with_capacity(tags.len());
    for tag in tags {
        tag_key(&tag.key)?;
        check_length("Tag Value", &tag.value, 0, 256)?;
        if !TAG_TEXT.is_match(&tag.value) {
            return Err(invalid("Tag Value may contain only letters, digits, spaces and _.:/=+-@"));
        }
        if !seen.insert(tag.key.as_str()) {
            return Err(invalid("Tags must not repeat a key"));
        }
    }
    Ok(())
}

/// `TagKeys` of `UntagResource`: at most [`MAX_TAGS`] valid keys.
pub fn tag_keys(keys: &[String]) -> CoreResult<()> {
    if keys.len() > MAX_TAGS {
        return Err(invalid(format!("TagKeys must contain at most {MAX_TAGS} keys")));
    }
    keys.iter().try_for_each(|k| tag_key(k))
}

/// `SseConfiguration`: a customer-managed key needs a well-formed `KmsKeyId`; the service's own
/// key takes none.
pub fn sse_configuration(sse: &SseConfiguration) -> CoreResult<()> {
    let config = &sse.kms_encryption_config;
    match (config.cmk_type, config.kms_key_id.as_deref()) {
        (CmkType::CustomerManagedKmsKey, None) => Err(invalid("KmsKeyId is required when CmkType is CUSTOMER_MANAGED_KMS_KEY")),
        (CmkType::CustomerManagedKmsKey, Some(id)) => {
            check_length("KmsKeyId", id, 1, 400)?;
            if !KMS_KEY_ID.is_match(id) {
                return Err(invalid("KmsKeyId must be a KMS key id, key ARN, alias name or alias ARN"));
            }
            Ok(())
        }
        (CmkType::AwsOwnedKmsKey, Some(_)) => Err(invalid("KmsKeyId must not be set when CmkType is AWS_OWNED_KMS_KEY")),
        (CmkType::AwsOwnedKmsKey, None) => Ok(()),
    }
}

/// SMART discovery elements HealthLake requires in `Metadata`.
const REQUIRED_SMART_METADATA: [&str; 4] = ["authorization_endpoint", "token_endpoint", "capabilities", "code_challenge_methods_supported"];

/// `IdentityProviderConfiguration`, with HealthLake's rules: SMART strategies need `Metadata`
/// holding a JSON object with the required discovery elements (S256 PKCE among the challenge
/// methods, at least one supported grant type when given); `AWS_AUTH` takes no Lambda and no
/// fine-grained authorization.
///
/// `IdpLambdaArn` is optional for SMART in fhirlake: without one, tokens are checked against the
/// issuer's signing keys, so the Metadata must name the `issuer` and its `jwks_uri`. When given
/// it must be a Lambda function ARN. Every endpoint the Metadata names must be an `https` URL
/// (`http` only on a loopback host, for an identity provider on the same machine).
pub fn identity_provider(config: &IdentityProviderConfiguration) -> CoreResult<()> {
    if let Some(arn) = &config.idp_lambda_arn {
        check_length("IdpLambdaArn", arn, 49, 256)?;
        if !LAMBDA_ARN.is_match(arn) {
            return Err(invalid("IdpLambdaArn must be a Lambda function ARN"));
        }
    }
    if let Some(metadata) = &config.metadata {
        if metadata.chars().count() > MAX_METADATA_CHARS {
            return Err(invalid(format!("Metadata must be at most {MAX_METADATA_CHARS} characters long")));
        }
    }
    match config.authorization_strategy {
        AuthorizationStrategy::AwsAuth => {
            if config.fine_grained_authorization_enabled == Some(true) {
                return Err(invalid("FineGrainedAuthorizationEnabled requires a SMART_ON_FHIR authorization strategy"));
            }
            if config.idp_lambda_arn.is_some() {
                return Err(invalid("IdpLambdaArn requires a SMART_ON_FHIR authorization strategy"));
            }
            Ok(())
        }
        AuthorizationStrategy::SmartOnFhir | AuthorizationStrategy::SmartOnFhirV1 => {
            let metadata = config.metadata.as_deref().ok_or_else(|| invalid("Metadata is required for SMART on FHIR authorization"))?;
            smart_metadata(metadata, config.idp_lambda_arn.is_some())
        }
    }
}

/// The Metadata elements that are URLs of the identity provider.
const SMART_ENDPOINTS: [&str; 8] = [
    "issuer",
    "jwks_uri",
    "authorization_endpoint",
    "token_endpoint",
    "registration_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
    "management_endpoint",
];

/// An absolute `https` URL, or `http` on a loopback host; no credentials in it.
fn is_endpoint_url(value: &str) -> bool {
    let Ok(url) = url::Url::parse(value) else { return false };
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    scheme_ok && url.has_host() && url.username().is_empty() && url.password().is_none()
}

/// `introspected`: an IdpLambdaArn decides on tokens, so the issuer's keys are not needed.
fn smart_metadata(metadata: &str, introspected: bool) -> CoreResult<()> {
    let value: serde_json::Value =
        serde_json::from_str(metadata).map_err(|_| invalid("Metadata must be a string holding a JSON object"))?;
    let object = value.as_object().ok_or_else(|| invalid("Metadata must be a string holding a JSON object"))?;
    for element in REQUIRED_SMART_METADATA {
        if !object.contains_key(element) {
            return Err(invalid(format!("Metadata must contain {element}")));
        }
    }
    for element in ["authorization_endpoint", "token_endpoint"] {
        if object.get(element).and_then(serde_json::Value::as_str).is_none_or(str::is_empty) {
            return Err(invalid(format!("Metadata {element} must be a non-empty string")));
        }
    }
    if !introspected {
        for element in ["issuer", "jwks_uri"] {
            if !object.contains_key(element) {
                return Err(invalid(format!("Metadata must contain {element} when no IdpLambdaArn validates tokens")));
            }
        }
    }
    for element in SMART_ENDPOINTS {
        if let Some(value) = object.get(element) {
            if !value.as_str().is_some_and(is_endpoint_url) {
                return Err(invalid(format!("Metadata {element} must be an https URL")));
            }
        }
    }
    let strings = |element: &str| -> CoreResult<Vec<&str>> {
        match object.get(element) {
            None => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) => {
                items.iter().map(|v| v.as_str().ok_or_else(|| invalid(format!("Metadata {element} must be an array of strings")))).collect()
            }
            Some(_) => Err(invalid(format!("Metadata {element} must be an array of strings"))),
        }
    };
    strings("capabilities")?;
    if !strings("code_challenge_methods_supported")?.contains(&"S256") {
        return Err(invalid("Metadata code_challenge_methods_supported must include S256"));
    }
    if object.contains_key("grant_types_supported") {
        let grants = strings("grant_types_supported")?;
        if grants.is_empty() || grants.iter().any(|g| !matches!(*g, "authorization_code" | "client_credentials")) {
            return Err(invalid("Metadata grant_types_supported must list authorization_code and/or client_credentials"));
        }
    }
    Ok(())
}

/// The optional 2026 configurations. fhirlake has no NLP, analytics or backup pipeline yet, so
/// only their disabled forms are accepted (an enabled one would be a promise not kept).
pub fn optional_features(
    analytics: Option<&AnalyticsConfiguration>,
    nlp: Option<&NlpConfiguration>,
    backup: Option<&BackupConfiguration>,
    profiles: Option<&ProfileConfiguration>,
) -> CoreResult<()> {
    if let Some(status) = analytics.and_then(|a| a.status) {
        if status != AnalyticsStatus::Disabled {
            return Err(invalid("AnalyticsConfiguration Status DISABLED is the only one fhirlake supports"));
        }
    }
    if let Some(status) = nlp.and_then(|n| n.status) {
        if status != NlpStatus::Disabled {
            return Err(invalid("NlpConfiguration Status DISABLED is the only one fhirlake supports"));
        }
    }
    if let Some(backup) = backup {
        if backup.status == Some(BackupStatus::Enabled) {
            return Err(invalid("BackupConfiguration Status DISABLED is the only one fhirlake supports"));
        }
        if let Some(days) = backup.retention_period_in_days {
            if !(1..=30).contains(&days) {
                return Err(invalid("RetentionPeriodInDays must be 1 to 30"));
            }
        }
    }
    if let Some(profiles) = profiles.and_then(|p| p.default_profiles.as_ref()) {
        if profiles.len() > 50 {
            return Err(invalid("DefaultProfiles must contain at most 50 profiles"));
        }
        for profile in profiles {
            check_length("DefaultProfiles entry", profile, 1, 256)?;
        }
    }
    Ok(())
}

/// A parsed `ResourceARN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceArn {
    /// The region named in the ARN.
    pub region: String,
    /// The account named in the ARN.
    pub account: String,
    /// The datastore id, when the ARN names a datastore (not a transformation profile).
    pub datastore_id: Option<String>,
}

/// Parses a `ResourceARN` against the model's pattern.
pub fn resource_arn(arn: &str) -> CoreResult<ResourceArn> {
    check_length("ResourceARN", arn, 1, 1011)?;
    let captures = RESOURCE_ARN.captures(arn).ok_or_else(|| {
        invalid("ResourceARN must be a HealthLake datastore ARN (arn:aws:healthlake:{region}:{account}:datastore/fhir/{id})")
    })?;
    let text = |name: &str| captures.name(name).map(|m| m.as_str().to_string());
    Ok(ResourceArn {
        region: text("region").unwrap_or_default(),
        account: text("account").unwrap_or_default(),
        datastore_id: text("datastore"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastores::model::KmsEncryptionConfig;

    fn assert_invalid(result: CoreResult<()>, fragment: &str) {
        match result {
            Err(CoreError::Invalid(message)) => assert!(message.contains(fragment), "{message}"),
            other => panic!("expected Invalid containing {fragment:?}, got {other:?}"),
        }
    }

    #[test]
    fn names_follow_the_model_pattern() {
        assert!(datastore_name("DatastoreName", "my store: v1/a=b+c-d%e@f_g.h").is_ok());
        assert!(datastore_name("DatastoreName", "données 東京 2").is_ok());
        assert_invalid(datastore_name("DatastoreName", ""), "1 to 256");
        assert_invalid(datastore_name("DatastoreName", &"a".repeat(257)), "1 to 256");
        assert!(datastore_name("DatastoreName", &"é".repeat(256)).is_ok());
        assert_invalid(datastore_name("DatastoreName", "bad*name"), "may contain only");
        assert_invalid(datastore_name("DatastoreName", "semi;colon"), "may contain only");
    }

    #[test]
    fn ids_and_tokens_are_checked() {
        assert!(datastore_id(&"a".repeat(32)).is_ok());
        assert_invalid(datastore_id(&"a".repeat(33)), "1 to 32");
        assert_invalid(datastore_id(""), "1 to 32");
        assert_invalid(datastore_id("a#b"), "may contain only");
        assert!(client_token("abc-123-XYZ").is_ok());
        assert_invalid(client_token("abc_123"), "hyphens");
        assert_invalid(client_token(&"a".repeat(65)), "1 to 64");
    }

    #[test]
    fn tags_are_limited_distinct_and_unreserved() {
        let tag = |k: &str, v: &str| Tag { key: k.into(), value: v.into() };
        assert!(tags(&[tag("env", "dev"), tag("team", "")]).is_ok());
        assert_invalid(tags(&[tag("", "x")]), "1 to 128");
        assert_invalid(tags(&[tag(&"k".repeat(129), "x")]), "1 to 128");
        assert_invalid(tags(&[tag("k", &"v".repeat(257))]), "0 to 256");
        assert_invalid(tags(&[tag("k", "a%b")]), "Tag Value");
        assert_invalid(tags(&[tag("aws:owner", "x")]), "reserved");
        assert_invalid(tags(&[tag("a", "1"), tag("a", "2")]), "repeat");
        let many: Vec<Tag> = (0..201).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert_invalid(tags(&many), "at most 200");
        assert!(tags(&many[..200]).is_ok());
    }

    #[test]
    fn kms_configuration_rules() {
        let sse = |cmk, id: Option<&str>| SseConfiguration {
            kms_encryption_config: KmsEncryptionConfig { cmk_type: cmk, kms_key_id: id.map(str::to_string) },
        };
        assert!(sse_configuration(&sse(CmkType::AwsOwnedKmsKey, None)).is_ok());
        assert_invalid(sse_configuration(&sse(CmkType::AwsOwnedKmsKey, Some("k"))), "must not be set");
        assert_invalid(sse_configuration(&sse(CmkType::CustomerManagedKmsKey, None)), "required");
        for good in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/my-key",
            "arn:aws:kms:us-west-2:123456789012:alias/my/key",
        ] {
            assert!(sse_configuration(&sse(CmkType::CustomerManagedKmsKey, Some(good))).is_ok(), "{good}");
        }
        assert_invalid(sse_configuration(&sse(CmkType::CustomerManagedKmsKey, Some("not a key!"))), "KMS key");
    }

    fn smart(metadata: Option<&str>) -> IdentityProviderConfiguration {
        IdentityProviderConfiguration {
            authorization_strategy: AuthorizationStrategy::SmartOnFhir,
            fine_grained_authorization_enabled: Some(true),
            metadata: metadata.map(str::to_string),
            idp_lambda_arn: Some("arn:aws:lambda:us-east-1:123456789012:function:token-introspect".into()),
        }
    }

    #[test]
    fn identity_provider_rules() {
        let good = r#"{"authorization_endpoint":"https://idp/authorize","token_endpoint":"https://idp/token",
            "capabilities":["launch-ehr"],"code_challenge_methods_supported":["S256"],
            "grant_types_supported":["client_credentials"]}"#;
        assert!(identity_provider(&smart(Some(good))).is_ok());
        assert_invalid(identity_provider(&smart(None)), "Metadata is required");
        assert_invalid(identity_provider(&smart(Some("not json"))), "JSON object");
        assert_invalid(identity_provider(&smart(Some("[1]"))), "JSON object");
        assert_invalid(identity_provider(&smart(Some(r#"{"token_endpoint":"x"}"#))), "authorization_endpoint");
        let no_s256 = good.replace("\"S256\"", "\"plain\"");
        assert_invalid(identity_provider(&smart(Some(&no_s256))), "S256");
        let bad_grant = good.replace("client_credentials", "password");
        assert_invalid(identity_provider(&smart(Some(&bad_grant))), "grant_types_supported");
        let mut local = smart(Some(good));
        local.idp_lambda_arn = None;
        assert_invalid(identity_provider(&local), "issuer when no IdpLambdaArn");
        let with_keys = good.replacen('{', r#"{"issuer":"https://idp","jwks_uri":"http://127.0.0.1:9000/jwks","#, 1);
        local.metadata = Some(with_keys.clone());
        assert!(identity_provider(&local).is_ok(), "loopback http is allowed for a local identity provider");
        local.metadata = Some(with_keys.replace("http://127.0.0.1:9000/jwks", "http://idp.example/jwks"));
        assert_invalid(identity_provider(&local), "jwks_uri must be an https URL");
        local.metadata = Some(with_keys.replace("https://idp/token", "token"));
        assert_invalid(identity_provider(&local), "token_endpoint must be an https URL");
        local.metadata = Some(with_keys.replace("https://idp\"", "https://user:pw@idp\""));
        assert_invalid(identity_provider(&local), "issuer must be an https URL");
        let mut bad_lambda = smart(Some(good));
        bad_lambda.idp_lambda_arn = Some("arn:aws:lambda:us-east-1:123:function:x".into());
        assert_invalid(identity_provider(&bad_lambda), "IdpLambdaArn");

        let mut aws = smart(None);
        aws.authorization_strategy = AuthorizationStrategy::AwsAuth;
        assert_invalid(identity_provider(&aws), "FineGrainedAuthorizationEnabled");
        aws.fine_grained_authorization_enabled = None;
        assert_invalid(identity_provider(&aws), "IdpLambdaArn requires");
        aws.idp_lambda_arn = None;
        assert!(identity_provider(&aws).is_ok());
    }

    #[test]
    fn optional_features_accept_only_disabled() {
        let on = AnalyticsConfiguration { status: Some(AnalyticsStatus::Enabled) };
        let off = AnalyticsConfiguration { status: Some(AnalyticsStatus::Disabled) };
        assert!(optional_features(Some(&off), None, None, None).is_ok());
        assert_invalid(optional_features(Some(&on), None, None, None), "AnalyticsConfiguration");
        let nlp = NlpConfiguration { status: Some(NlpStatus::Enabling) };
        assert_invalid(optional_features(None, Some(&nlp), None, None), "NlpConfiguration");
        let backup = BackupConfiguration {
            status: Some(BackupStatus::Disabled),
            backup_type: None,
            retention_period_in_days: Some(31),
            backup_tags_enabled: None,
        };
        assert_invalid(optional_features(None, None, Some(&backup), None), "RetentionPeriodInDays");
    }

    #[test]
    fn resource_arns_are_parsed() {
        let id = "0123456789abcdef0123456789abcdef";
        let arn = resource_arn(&format!("arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/{id}")).ok();
        assert_eq!(arn, Some(ResourceArn { region: "us-east-1".into(), account: "123456789012".into(), datastore_id: Some(id.into()) }));
        let profile = resource_arn(&format!("arn:aws:healthlake:us-east-1:123456789012:dataTransformationProfile/{id}"));
        assert!(matches!(profile, Ok(ResourceArn { datastore_id: None, .. })));
        for bad in [
            "",
            "not-an-arn",
            "arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/short",
            "arn:aws:s3:us-east-1:123456789012:datastore/fhir/0123456789abcdef0123456789abcdef",
            "arn:aws:healthlake:us-east-1:12345:datastore/fhir/0123456789abcdef0123456789abcdef",
        ] {
            assert!(matches!(resource_arn(bad), Err(CoreError::Invalid(_))), "{bad}");
        }
    }
}
