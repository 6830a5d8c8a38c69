//! The control plane's request and response shapes, named and serialised exactly as HealthLake's
//! AWS JSON 1.0 wire format has them (PascalCase members, SCREAMING_SNAKE_CASE enums, timestamps
//! as epoch seconds), so the wire layer only parses and renders.
//!
//! Unknown members are ignored when parsing (AWS JSON clients may be newer than the server).
//! Optional members are omitted from responses when unset.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The FHIR release of a datastore. HealthLake supports only R4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FhirVersion {
    /// FHIR R4 (4.0.1).
    R4,
}

/// A datastore's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DatastoreStatus {
    /// Being provisioned.
    Creating,
    /// Usable.
    Active,
    /// Being deleted; its data is already unreachable.
    Deleting,
    /// Deleted; still listed and describable.
    Deleted,
    /// Provisioning failed.
    CreateFailed,
    /// An asynchronous update is running.
    Updating,
    /// An asynchronous update failed.
    UpdateFailed,
}

impl DatastoreStatus {
    /// The wire name (`ACTIVE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DatastoreStatus::Creating => "CREATING",
            DatastoreStatus::Active => "ACTIVE",
            DatastoreStatus::Deleting => "DELETING",
            DatastoreStatus::Deleted => "DELETED",
            DatastoreStatus::CreateFailed => "CREATE_FAILED",
            DatastoreStatus::Updating => "UPDATING",
            DatastoreStatus::UpdateFailed => "UPDATE_FAILED",
        }
    }
}

/// Who owns the key that wraps the datastore's data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CmkType {
    /// A key the customer names in `KmsKeyId`.
    CustomerManagedKmsKey,
    /// The service's own key.
    AwsOwnedKmsKey,
}

/// `SseConfiguration.KmsEncryptionConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KmsEncryptionConfig {
    /// Who owns the key.
    pub cmk_type: CmkType,
    /// The customer-managed key (id, ARN or alias); required for `CUSTOMER_MANAGED_KMS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// Server-side encryption settings of a datastore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SseConfiguration {
    /// The key configuration.
    pub kms_encryption_config: KmsEncryptionConfig,
}

/// Data to load into a new datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PreloadDataType {
    /// Synthea's synthetic patients.
    Synthea,
}

/// `PreloadDataConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreloadDataConfig {
    /// What to preload.
    pub preload_data_type: PreloadDataType,
}

/// How the data plane authorizes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationStrategy {
    /// SMART on FHIR v1 scopes only.
    SmartOnFhirV1,
    /// SMART on FHIR v1 and v2 scopes.
    SmartOnFhir,
    /// SigV4 (IAM) only.
    AwsAuth,
}

/// `IdentityProviderConfiguration`: stored as given and replaced whole on update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdentityProviderConfiguration {
    /// The strategy.
    pub authorization_strategy: AuthorizationStrategy,
    /// SMART fine-grained (fhirUser) authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_grained_authorization_enabled: Option<bool>,
    /// SMART discovery metadata: a string holding a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// The token-introspection Lambda.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_lambda_arn: Option<String>,
}

/// A tag on a datastore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// 1 to 128 characters.
    pub key: String,
    /// 0 to 256 characters.
    pub value: String,
}

/// `AnalyticsConfiguration.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AnalyticsStatus {
    /// On.
    Enabled,
    /// Turning on.
    Enabling,
    /// Off.
    Disabled,
    /// Turning off.
    Disabling,
    /// Pausing.
    Pausing,
    /// Paused.
    Paused,
}

/// `AnalyticsConfiguration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AnalyticsConfiguration {
    /// The analytics state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AnalyticsStatus>,
}

/// `NlpConfiguration.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NlpStatus {
    /// On.
    Enabled,
    /// Turning on.
    Enabling,
    /// Off.
    Disabled,
    /// Turning off.
    Disabling,
}

/// `NlpConfiguration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NlpConfiguration {
    /// The NLP state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NlpStatus>,
}

/// `ProfileConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProfileConfiguration {
    /// Implementation guides resources are validated against by default (e.g. `us-core-3.1.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profiles: Option<Vec<String>>,
}

/// `BackupConfiguration.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackupStatus {
    /// On.
    Enabled,
    /// Off.
    Disabled,
}

/// `BackupConfiguration.BackupType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackupType {
    /// Point-in-time recovery.
    Continuous,
}

/// `BackupConfiguration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupConfiguration {
    /// On or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BackupStatus>,
    /// The kind of backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_type: Option<BackupType>,
    /// 1 to 30 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_period_in_days: Option<i64>,
    /// Copy the datastore's tags to backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_tags_enabled: Option<bool>,
}

/// `BackupStatusInfo` (only the configuration part is reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupStatusInfo {
    /// The configuration in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<BackupConfiguration>,
}

/// `ErrorCause.ErrorCategory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCategory {
    /// Trying again may help.
    RetryableError,
    /// Trying again will not help.
    NonRetryableError,
}

/// Why a datastore is `CREATE_FAILED` or `UPDATE_FAILED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorCause {
    /// What failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Whether to retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_category: Option<ErrorCategory>,
}

/// Everything HealthLake reports about a datastore (`DatastoreProperties`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DatastoreProperties {
    /// 32 lowercase hex characters.
    pub datastore_id: String,
    /// `arn:aws:healthlake:{region}:{account}:datastore/fhir/{id}`.
    pub datastore_arn: String,
    /// The user's name for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_name: Option<String>,
    /// Lifecycle state.
    pub datastore_status: DatastoreStatus,
    /// When it was created (epoch seconds on the wire).
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Always R4.
    pub datastore_type_version: FhirVersion,
    /// The data-plane base URL, `…/datastore/{id}/r4/`.
    pub datastore_endpoint: String,
    /// Encryption settings (always reported; `AWS_OWNED_KMS_KEY` when none was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_configuration: Option<SseConfiguration>,
    /// Preloaded data, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preload_data_config: Option<PreloadDataConfig>,
    /// Data-plane authorization settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider_configuration: Option<IdentityProviderConfiguration>,
    /// Why provisioning or an update failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_cause: Option<ErrorCause>,
    /// NLP settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlp_configuration: Option<NlpConfiguration>,
    /// Analytics settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics_configuration: Option<AnalyticsConfiguration>,
    /// Default profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_configuration: Option<ProfileConfiguration>,
    /// Backup settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_status_info: Option<BackupStatusInfo>,
}

/// `CreateFHIRDatastore` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateFhirDatastoreRequest {
    /// 1 to 256 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-%@]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_name: Option<String>,
    /// Must be `R4`.
    pub datastore_type_version: FhirVersion,
    /// Encryption settings; defaults to the service's own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_configuration: Option<SseConfiguration>,
    /// Not supported by fhirlake (rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preload_data_config: Option<PreloadDataConfig>,
    /// Idempotency token: 1 to 64 characters of `[a-zA-Z0-9-]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Up to 200 tags with distinct keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// Data-plane authorization; defaults to `AWS_AUTH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider_configuration: Option<IdentityProviderConfiguration>,
    /// Only a disabled configuration is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics_configuration: Option<AnalyticsConfiguration>,
    /// Only a disabled configuration is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlp_configuration: Option<NlpConfiguration>,
    /// Stored and reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_configuration: Option<ProfileConfiguration>,
    /// Only a disabled configuration is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_configuration: Option<BackupConfiguration>,
}

impl CreateFhirDatastoreRequest {
    /// A minimal R4 request with every optional member unset.
    pub fn r4() -> Self {
        CreateFhirDatastoreRequest {
            datastore_name: None,
            datastore_type_version: FhirVersion::R4,
            sse_configuration: None,
            preload_data_config: None,
            client_token: None,
            tags: None,
            identity_provider_configuration: None,
            analytics_configuration: None,
            nlp_configuration: None,
            profile_configuration: None,
            backup_configuration: None,
        }
    }
}

/// The summary `CreateFHIRDatastore` and `DeleteFHIRDatastore` return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DatastoreSummary {
    /// The id.
    pub datastore_id: String,
    /// The ARN.
    pub datastore_arn: String,
    /// The state after the call.
    pub datastore_status: DatastoreStatus,
    /// The data-plane base URL.
    pub datastore_endpoint: String,
}

/// `CreateFHIRDatastore` output.
pub type CreateFhirDatastoreResponse = DatastoreSummary;
/// `DeleteFHIRDatastore` output.
pub type DeleteFhirDatastoreResponse = DatastoreSummary;

/// A request naming one datastore (`DescribeFHIRDatastore`, `DeleteFHIRDatastore`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DatastoreIdRequest {
    /// The datastore.
    pub datastore_id: String,
}

/// `DescribeFHIRDatastore` input.
pub type DescribeFhirDatastoreRequest = DatastoreIdRequest;
/// `DeleteFHIRDatastore` input.
pub type DeleteFhirDatastoreRequest = DatastoreIdRequest;

/// A response carrying one datastore's properties (`DescribeFHIRDatastore`, `UpdateFHIRDatastore`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DatastorePropertiesResponse {
    /// The datastore.
    pub datastore_properties: DatastoreProperties,
}

/// `DescribeFHIRDatastore` output.
pub type DescribeFhirDatastoreResponse = DatastorePropertiesResponse;
/// `UpdateFHIRDatastore` output.
pub type UpdateFhirDatastoreResponse = DatastorePropertiesResponse;

/// `ListFHIRDatastores` filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DatastoreFilter {
    /// Exact name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_name: Option<String>,
    /// Exact status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_status: Option<DatastoreStatus>,
    /// Created strictly before.
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    /// Created strictly after.
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
}

/// `ListFHIRDatastores` input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFhirDatastoresRequest {
    /// Filters, all of which must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<DatastoreFilter>,
    /// The token a previous page returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// 1 to 500 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i64>,
}

/// `ListFHIRDatastores` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFhirDatastoresResponse {
    /// One page of datastores, in datastore-id order.
    pub datastore_properties_list: Vec<DatastoreProperties>,
    /// Present when another page follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `UpdateFHIRDatastore` input: unset members keep their current value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateFhirDatastoreRequest {
    /// The datastore.
    pub datastore_id: String,
    /// A new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_name: Option<String>,
    /// Only a disabled configuration is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics_configuration: Option<AnalyticsConfiguration>,
    /// Only a disabled configuration is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlp_configuration: Option<NlpConfiguration>,
    /// Replaces the default profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_configuration: Option<ProfileConfiguration>,
    /// Replaces the identity provider configuration whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider_configuration: Option<IdentityProviderConfiguration>,
    /// Only a disabled configuration is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_configuration: Option<BackupConfiguration>,
}

impl UpdateFhirDatastoreRequest {
    /// An update of `datastore_id` that changes nothing yet.
    pub fn new(datastore_id: impl Into<String>) -> Self {
        UpdateFhirDatastoreRequest {
            datastore_id: datastore_id.into(),
            datastore_name: None,
            analytics_configuration: None,
            nlp_configuration: None,
            profile_configuration: None,
            identity_provider_configuration: None,
            backup_configuration: None,
        }
    }
}

/// `TagResource` input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResourceRequest {
    /// The datastore's ARN.
    #[serde(rename = "ResourceARN")]
    pub resource_arn: String,
    /// Tags to add or overwrite.
    pub tags: Vec<Tag>,
}

/// `UntagResource` input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagResourceRequest {
    /// The datastore's ARN.
    #[serde(rename = "ResourceARN")]
    pub resource_arn: String,
    /// Keys to remove; absent keys are ignored.
    pub tag_keys: Vec<String>,
}

/// `ListTagsForResource` input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceRequest {
    /// The datastore's ARN.
    #[serde(rename = "ResourceARN")]
    pub resource_arn: String,
}

/// `ListTagsForResource` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceResponse {
    /// The tags, in the order they were first added.
    pub tags: Vec<Tag>,
}

/// The empty output of `TagResource` and `UntagResource`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyResponse {}

/// Timestamps as the AWS JSON protocol writes them: seconds since the epoch, fractional allowed.
/// Parsing also accepts an RFC 3339 string, as some hand-written clients send one.
pub mod epoch_seconds {
    use chrono::{DateTime, TimeZone, Utc};
    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;

    /// Serialises a timestamp as epoch seconds with millisecond precision.
    pub fn serialize<S: Serializer>(value: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        let millis = value.timestamp_millis();
        if millis % 1000 == 0 {
            serializer.serialize_i64(millis / 1000)
        } else {
            serializer.serialize_f64(millis as f64 / 1000.0)
        }
    }

    /// Parses epoch seconds (integer or fractional) or an RFC 3339 string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        deserializer.deserialize_any(TimestampVisitor)
    }

    struct TimestampVisitor;

    impl Visitor<'_> for TimestampVisitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a timestamp in epoch seconds")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Utc.timestamp_opt(v, 0).single().ok_or_else(|| E::custom("timestamp out of range"))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            let v = i64::try_from(v).map_err(|_| E::custom("timestamp out of range"))?;
            self.visit_i64(v)
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // Beyond ±1e14 seconds chrono cannot represent the instant anyway.
            if !v.is_finite() || v.abs() > 1e14 {
                return Err(E::custom("timestamp out of range"));
            }
            let millis = (v * 1000.0).round() as i64;
            Utc.timestamp_millis_opt(millis).single().ok_or_else(|| E::custom("timestamp out of range"))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if let Ok(seconds) = v.parse::<f64>() {
                return self.visit_f64(seconds);
            }
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| E::custom("timestamp must be epoch seconds or RFC 3339"))
        }
    }

    /// The same, for optional members.
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        /// Serialises `Some` as epoch seconds (callers skip `None`).
        pub fn serialize<S: Serializer>(value: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
            match value {
                Some(t) => super::serialize(t, serializer),
                None => serializer.serialize_none(),
            }
        }

        /// Parses `null` as `None`, anything else as a timestamp.
        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] DateTime<Utc>);
            Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(t)| t))
        }
    }
}
