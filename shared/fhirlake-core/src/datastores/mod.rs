//! HealthLake control-plane semantics for FHIR datastores: create, describe, list, update,
//! delete and tag, over the item table and the key service.
//!
//! ## Lifecycle without background work
//! Nothing here runs in the background, so the same code works in a Lambda:
//! - **Create** provisions synchronously (it generates the datastore's data key under the
//!   chosen master key, context = datastore id) and stores the record `CREATING`. The next
//!   observation (Describe, List, Update, Delete, tags, or a data-plane [`DatastoreService::active`])
//!   advances it to `ACTIVE` with a conditional write.
//! - **Delete** stores `DELETING` and removes the wrapped data key in the same write
//!   (crypto-shredding: no resource body of the datastore can be decrypted again, whatever is
//!   left in storage); the next observation advances it to `DELETED`. Deleted datastores stay
//!   in List and Describe, as in HealthLake.
//!
//! ## Decisions where HealthLake's documentation is silent
//! - A `ClientToken` reused with different parameters is a `ValidationException` (HealthLake's
//!   Create declares no `ConflictException`). The same token with the same parameters returns the
//!   same datastore, in its current status. Tokens do not expire.
//! - Deleting a datastore that is `DELETING` or `DELETED` is a `ConflictException`; updating one
//!   that is not `ACTIVE` likewise.
//! - `TagResource`/`UntagResource` on a deleted datastore are `ResourceNotFoundException` (they
//!   declare no conflict error); `ListTagsForResource` still answers while the record exists.
//! - An ARN of another region or account, or of a data transformation profile, is unknown here:
//!   `ResourceNotFoundException`.
//! - `PreloadDataConfig` (Synthea) and enabled NLP/analytics/backup configurations are rejected
//!   with `ValidationException`: fhirlake does not offer them yet.

mod model;
mod store;
pub(crate) mod validate;

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use fhirlake_ports::{Condition, Query, SkRange, StorageErrorKind, Write};
use sha2::{Digest, Sha256};

pub use model::*;
pub use validate::{ResourceArn, MAX_TAGS};

use store::{DatastoreRecord, StoredDatastore, DATASTORES_PK, DATASTORE_SK_PREFIX};

use crate::{Backends, CoreError, CoreResult, ServiceConfig};

/// What the data plane needs to know about an active datastore.
#[derive(Debug, Clone)]
pub struct ActiveDatastore {
    /// The 32-hex datastore id.
    pub id: String,
    /// The DatastoreName, if it has one.
    pub name: Option<String>,
    /// The key-service key the data key is wrapped under.
    pub master_key_id: String,
    /// The datastore's data key, wrapped by the key service (context: the datastore id).
    pub wrapped_data_key: Vec<u8>,
    /// How the data plane must authorize requests (`AWS_AUTH` when none was configured).
    pub identity_provider: IdentityProviderConfiguration,
}

/// Default and bounds of `ListFHIRDatastores.MaxResults`.
const DEFAULT_MAX_RESULTS: usize = 100;
const MAX_MAX_RESULTS: i64 = 500;
/// Items read per table query while listing.
const LIST_SCAN_PAGE: usize = 100;
/// Attempts of a read-modify-write before giving up on a contended record (after the first,
/// each waits a random pause, as resource writes do).
const MAX_ATTEMPTS: u32 = 32;
/// Version prefix inside list tokens.
const TOKEN_PREFIX: &str = "v1:";

/// Creates, describes, lists, updates, deletes and tags datastores.
#[derive(Clone)]
pub struct DatastoreService {
    config: Arc<ServiceConfig>,
    backends: Backends,
}

impl DatastoreService {
    /// Builds the service.
    pub fn new(config: Arc<ServiceConfig>, backends: Backends) -> Self {
        DatastoreService { config, backends }
    }

    /// The ARN of a datastore: `arn:aws:healthlake:{region}:{account}:datastore/fhir/{id}`.
    pub fn arn(&self, id: &str) -> String {
        format!("arn:aws:healthlake:{}:{}:datastore/fhir/{}", self.config.region, self.config.account_id, id)
    }

    /// `CreateFHIRDatastore`.
    ///
    /// Errors: `Invalid` for any constraint violation, an unusable customer key, or a reused
    /// `ClientToken` with different parameters.
    pub async fn create(&self, request: CreateFhirDatastoreRequest) -> CoreResult<CreateFhirDatastoreResponse> {
        validate_create(&request)?;
        let fingerprint = match &request.client_token {
            Some(token) => {
                let sha = request_fingerprint(&request)?;
                if let Some(existing) = self.replay(token, &sha).await? {
                    return Ok(existing);
                }
                Some((token.clone(), sha))
            }
            None => None,
        };

        let sse = request.sse_configuration.clone().unwrap_or(SseConfiguration {
            kms_encryption_config: KmsEncryptionConfig { cmk_type: CmkType::AwsOwnedKmsKey, kms_key_id: None },
        });
        let master_key_id = match (&sse.kms_encryption_config.cmk_type, &sse.kms_encryption_config.kms_key_id) {
            (CmkType::CustomerManagedKmsKey, Some(id)) => id.clone(),
            _ => self.backends.keys.default_key_id(),
        };
        let customer_key = sse.kms_encryption_config.cmk_type == CmkType::CustomerManagedKmsKey;

        for _ in 0..MAX_ATTEMPTS {
            let id = self.backends.ids.hex32();
            let data_key = self.backends.keys.generate_data_key(&master_key_id, &id).await.map_err(|e| match (customer_key, &e.kind) {
                (true, StorageErrorKind::NotFound | StorageErrorKind::Invalid) => {
                    CoreError::Invalid("KmsKeyId does not name a usable key".to_string())
                }
                _ => CoreError::Storage(e),
            })?;
            let stored = StoredDatastore {
                record: DatastoreRecord {
                    id: id.clone(),
                    name: request.datastore_name.clone(),
                    status: DatastoreStatus::Creating,
                    created_at: millis(self.backends.clock.now()),
                    type_version: request.datastore_type_version,
                    sse: sse.clone(),
                    preload: None,
                    identity_provider: request.identity_provider_configuration.clone(),
                    analytics: request.analytics_configuration,
                    nlp: request.nlp_configuration,
                    profiles: request.profile_configuration.clone(),
                    backup: request.backup_configuration,
                    error_cause: None,
                    tags: request.tags.clone().unwrap_or_default(),
                    deleted_at: None,
                },
                rev: 1,
                master_key_id: master_key_id.clone(),
                wrapped_key: Some(data_key.wrapped.clone()),
            };
            let item = stored.to_item()?;
            let outcome = match &fingerprint {
                None => self.backends.table.put(item, Condition::NotExists).await,
                Some((token, sha)) => {
                    self.backends
                        .table
                        .transact_write(vec![
                            Write::Put { item, condition: Condition::NotExists },
                            Write::Put { item: store::token_item(token, &id, sha), condition: Condition::NotExists },
                        ])
                        .await
                }
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(datastore_id = %id, "datastore created");
                    return Ok(self.summary(&stored.record));
                }
                // Either a concurrent create with the same token won (answer as it did), or the
                // generated id is taken (only with a predictable id source; try another).
                Err(e) if e.is_condition_failure() => {
                    if let Some((token, sha)) = &fingerprint {
                        if let Some(existing) = self.replay(token, sha).await? {
                            return Ok(existing);
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::Internal("could not allocate a datastore id".to_string()))
    }

    /// Answers a create whose token was seen before, or `None` for a new token.
    async fn replay(&self, token: &str, fingerprint: &str) -> CoreResult<Option<CreateFhirDatastoreResponse>> {
        let Some(item) = self.backends.table.get(&store::token_key(token)).await? else {
            return Ok(None);
        };
        let (id, recorded) = store::token_parts(&item)?;
        if recorded != fingerprint {
            return Err(CoreError::Invalid("ClientToken was already used with different parameters; use a new token".to_string()));
        }
        let stored = self.observe_id(&id).await?;
        Ok(Some(self.summary(&stored.record)))
    }

    /// `DescribeFHIRDatastore`. Errors: `Invalid` for a malformed id, `NotFound` for an unknown one.
    pub async fn describe(&self, request: DescribeFhirDatastoreRequest) -> CoreResult<DescribeFhirDatastoreResponse> {
        validate::datastore_id(&request.datastore_id)?;
        let stored = self.observe_id(&request.datastore_id).await?;
        Ok(DatastorePropertiesResponse { datastore_properties: self.properties(&stored.record) })
    }

    /// `ListFHIRDatastores`: every datastore (deleted ones included) matching the filter, in id
    /// order, `MaxResults` per page; `NextToken` is present only when another match follows.
    ///
    /// Errors: `Invalid` for a bad filter, `MaxResults` outside 1..=500 or a token this service
    /// did not issue.
    pub async fn list(&self, request: ListFhirDatastoresRequest) -> CoreResult<ListFhirDatastoresResponse> {
        let limit = match request.max_results {
            None => DEFAULT_MAX_RESULTS,
            Some(n) if (1..=MAX_MAX_RESULTS).contains(&n) => n as usize,
            Some(_) => return Err(CoreError::Invalid(format!("MaxResults must be 1 to {MAX_MAX_RESULTS}"))),
        };
        let filter = request.filter.unwrap_or_default();
        if let Some(name) = &filter.datastore_name {
            validate::datastore_name("Filter DatastoreName", name)?;
        }
        let mut after = match request.next_token.as_deref() {
            None | Some("") => None,
            Some(token) => Some(decode_list_token(token)?),
        };

        let mut found = Vec::new();
        let mut last_returned: Option<String> = None;
        loop {
            let query = Query::partition(DATASTORES_PK, LIST_SCAN_PAGE)
                .range(SkRange::Prefix(DATASTORE_SK_PREFIX.to_string()))
                .after(after.clone());
            let page = self.backends.table.query(&query).await?;
            for item in &page.items {
                let stored = match StoredDatastore::from_item(item) {
                    Ok(stored) => stored,
                    Err(e) => {
                        tracing::error!(sk = %item.key.sk, error = %e, "skipping unreadable datastore record");
                        continue;
                    }
                };
                let stored = self.observe(stored).await?;
                if !matches_filter(&stored.record, &filter) {
                    continue;
                }
                if found.len() == limit {
                    return Ok(ListFhirDatastoresResponse {
                        datastore_properties_list: found,
                        next_token: last_returned.map(|sk| encode_list_token(&sk)),
                    });
                }
                found.push(self.properties(&stored.record));
                last_returned = Some(item.key.sk.clone());
            }
            match page.last_evaluated {
                Some(sk) => after = Some(sk),
                None => break,
            }
        }
        Ok(ListFhirDatastoresResponse { datastore_properties_list: found, next_token: None })
    }

    /// `UpdateFHIRDatastore`: applies the given members at once (the identity provider
    /// configuration is replaced whole). Errors: `Invalid`, `NotFound`, and `Conflict` unless the
    /// datastore is `ACTIVE`.
    pub async fn update(&self, request: UpdateFhirDatastoreRequest) -> CoreResult<UpdateFhirDatastoreResponse> {
        validate::datastore_id(&request.datastore_id)?;
        if let Some(name) = &request.datastore_name {
            validate::datastore_name("DatastoreName", name)?;
        }
        if let Some(idp) = &request.identity_provider_configuration {
            validate::identity_provider(idp)?;
        }
        validate::optional_features(
            request.analytics_configuration.as_ref(),
            request.nlp_configuration.as_ref(),
            request.backup_configuration.as_ref(),
            request.profile_configuration.as_ref(),
        )?;
        let updated = self
            .modify(&request.datastore_id, |stored| {
                let record = &mut stored.record;
                if record.status != DatastoreStatus::Active {
                    return Err(CoreError::Conflict(format!(
                        "datastore {} is {}; only an ACTIVE datastore can be updated",
                        record.id,
                        record.status.as_str()
                    )));
                }
                if let Some(name) = &request.datastore_name {
                    record.name = Some(name.clone());
                }
                if let Some(idp) = &request.identity_provider_configuration {
                    record.identity_provider = Some(idp.clone());
                }
                if let Some(analytics) = request.analytics_configuration {
                    record.analytics = Some(analytics);
                }
                if let Some(nlp) = request.nlp_configuration {
                    record.nlp = Some(nlp);
                }
                if let Some(profiles) = &request.profile_configuration {
                    record.profiles = Some(profiles.clone());
                }
                if let Some(backup) = request.backup_configuration {
                    record.backup = Some(backup);
                }
                Ok(())
            })
            .await?;
        tracing::info!(datastore_id = %updated.record.id, "datastore updated");
        Ok(DatastorePropertiesResponse { datastore_properties: self.properties(&updated.record) })
    }

    /// `DeleteFHIRDatastore`: the datastore becomes `DELETING` and its data unreachable at once
    /// (the wrapped data key is destroyed). Errors: `Invalid`, `NotFound`, and `Conflict` when it
    /// is already being deleted or deleted.
    pub async fn delete(&self, request: DeleteFhirDatastoreRequest) -> CoreResult<DeleteFhirDatastoreResponse> {
        validate::datastore_id(&request.datastore_id)?;
        let now = millis(self.backends.clock.now());
        let deleted = self
            .modify(&request.datastore_id, |stored| {
                let status = stored.record.status;
                match status {
                    DatastoreStatus::Deleting | DatastoreStatus::Deleted => {
                        return Err(CoreError::Conflict(format!("datastore {} is already {}", stored.record.id, status.as_str())));
                    }
                    DatastoreStatus::Creating | DatastoreStatus::Updating => {
                        return Err(CoreError::Conflict(format!(
                            "datastore {} is {}; try again when it is ACTIVE",
                            stored.record.id,
                            status.as_str()
                        )));
                    }
                    DatastoreStatus::Active | DatastoreStatus::CreateFailed | DatastoreStatus::UpdateFailed => {}
                }
                stored.record.status = DatastoreStatus::Deleting;
                stored.record.deleted_at = Some(now);
                stored.wrapped_key = None;
                Ok(())
            })
            .await?;
        tracing::info!(datastore_id = %deleted.record.id, "datastore deleted; data key destroyed");
        Ok(self.summary(&deleted.record))
    }

    /// `TagResource`: adds the tags, replacing the values of keys already present.
    /// Errors: `Invalid` (bad ARN or tags, or more than 200 tags in total), `NotFound`.
    pub async fn tag_resource(&self, request: TagResourceRequest) -> CoreResult<EmptyResponse> {
        validate::tags(&request.tags)?;
        let id = self.datastore_of_arn(&request.resource_arn)?;
        self.modify(&id, |stored| {
            ensure_not_deleted(&stored.record)?;
            let tags = &mut stored.record.tags;
            for tag in &request.tags {
                match tags.iter_mut().find(|t| t.key == tag.key) {
                    Some(existing) => existing.value = tag.value.clone(),
                    None => tags.push(tag.clone()),
                }
            }
            if tags.len() > MAX_TAGS {
                return Err(CoreError::Invalid(format!("a datastore can carry at most {MAX_TAGS} tags")));
            }
            Ok(())
        })
        .await?;
        Ok(EmptyResponse {})
    }

    /// `UntagResource`: removes the keys (absent keys are ignored). Errors: `Invalid`, `NotFound`.
    pub async fn untag_resource(&self, request: UntagResourceRequest) -> CoreResult<EmptyResponse> {
        validate::tag_keys(&request.tag_keys)?;
        let id = self.datastore_of_arn(&request.resource_arn)?;
        self.modify(&id, |stored| {
            ensure_not_deleted(&stored.record)?;
            stored.record.tags.retain(|t| !request.tag_keys.contains(&t.key));
            Ok(())
        })
        .await?;
        Ok(EmptyResponse {})
    }

    /// `ListTagsForResource`. Errors: `Invalid` for a malformed ARN, `NotFound`.
    pub async fn list_tags_for_resource(&self, request: ListTagsForResourceRequest) -> CoreResult<ListTagsForResourceResponse> {
        let id = self.datastore_of_arn(&request.resource_arn)?;
        let stored = self.observe_id(&id).await?;
        Ok(ListTagsForResourceResponse { tags: stored.record.tags })
    }

    /// Looks up a datastore for a data-plane request: `NotFound` unless it exists and is
    /// usable (ACTIVE; a CREATING datastore whose provisioning finished becomes ACTIVE).
    pub async fn active(&self, id: &str) -> CoreResult<ActiveDatastore> {
        let not_found = || CoreError::NotFound(format!("datastore {id}"));
        if validate::datastore_id(id).is_err() {
            return Err(not_found());
        }
        let Some(item) = self.backends.table.get(&store::datastore_key(id)).await? else {
            return Err(not_found());
        };
        // The hot path (every data-plane request): an ACTIVE item is read without decoding
        // the whole record.
        if let Some(active) = store::active_view(&item)? {
            return Ok(active);
        }
        let stored = self.observe(StoredDatastore::from_item(&item)?).await?;
        match (stored.record.status, stored.wrapped_key) {
            (DatastoreStatus::Active | DatastoreStatus::Updating, Some(wrapped_data_key)) => Ok(ActiveDatastore {
                id: stored.record.id,
                name: stored.record.name,
                master_key_id: stored.master_key_id,
                wrapped_data_key,
                identity_provider: stored.record.identity_provider.unwrap_or_else(aws_auth),
            }),
            _ => Err(not_found()),
        }
    }

    /// The keys to open a datastore's stored versions, for background readers such as the
    /// stream projector. Read-only: unlike [`DatastoreService::active`] it never advances a
    /// status, so it needs only read access to the table. Returns `None` when the datastore does
    /// not exist or was deleted (its data key destroyed: its bodies can never be opened again).
    ///
    /// Errors: `Storage` when the table cannot be read; `Internal` for a corrupted record.
    pub async fn readable(&self, id: &str) -> CoreResult<Option<ActiveDatastore>> {
        if validate::datastore_id(id).is_err() {
            return Ok(None);
        }
        let Some(item) = self.backends.table.get(&store::datastore_key(id)).await? else {
            return Ok(None);
        };
        if let Some(active) = store::active_view(&item)? {
            return Ok(Some(active));
        }
        let stored = StoredDatastore::from_item(&item)?;
        Ok(stored.wrapped_key.map(|wrapped_data_key| ActiveDatastore {
            id: stored.record.id,
            name: stored.record.name,
            master_key_id: stored.master_key_id,
            wrapped_data_key,
            identity_provider: stored.record.identity_provider.unwrap_or_else(aws_auth),
        }))
    }

    /// Reads a datastore and advances its status (`NotFound` if absent).
    async fn observe_id(&self, id: &str) -> CoreResult<StoredDatastore> {
        match store::load(self.backends.table.as_ref(), id).await? {
            Some(stored) => self.observe(stored).await,
            None => Err(CoreError::NotFound(format!("datastore {id} does not exist"))),
        }
    }

    /// Advances a transitional status whose work is done: CREATING (key provisioned) → ACTIVE,
    /// DELETING (key destroyed) → DELETED. Concurrent observers race harmlessly: the loser re-reads.
    async fn observe(&self, mut stored: StoredDatastore) -> CoreResult<StoredDatastore> {
        for _ in 0..MAX_ATTEMPTS {
            let next_status = match (stored.record.status, &stored.wrapped_key) {
                (DatastoreStatus::Creating, Some(_)) => DatastoreStatus::Active,
                (DatastoreStatus::Deleting, None) => DatastoreStatus::Deleted,
                _ => return Ok(stored),
            };
            let rev = stored.rev;
            let mut next = stored.clone();
            next.record.status = next_status;
            match store::replace(self.backends.table.as_ref(), next, rev).await? {
                Some(written) => {
                    tracing::debug!(datastore_id = %written.record.id, status = written.record.status.as_str(), "datastore advanced");
                    return Ok(written);
                }
                None => {
                    let id = stored.record.id.clone();
                    stored = store::load(self.backends.table.as_ref(), &id)
                        .await?
                        .ok_or_else(|| CoreError::NotFound(format!("datastore {id} does not exist")))?;
                }
            }
        }
        Err(CoreError::Internal("datastore record is too contended to advance".to_string()))
    }

    /// Read-modify-write of one datastore with optimistic concurrency: `change` runs on the
    /// current (observed) state and may refuse; lost races re-read and run `change` again.
    async fn modify<F>(&self, id: &str, mut change: F) -> CoreResult<StoredDatastore>
    where
        F: FnMut(&mut StoredDatastore) -> CoreResult<()>,
    {
        for attempt in 0..MAX_ATTEMPTS {
            crate::resources::pause_before_retry(attempt).await;
            let current = self.observe_id(id).await?;
            let rev = current.rev;
            let mut next = current;
            change(&mut next)?;
            if let Some(written) = store::replace(self.backends.table.as_ref(), next, rev).await? {
                return Ok(written);
            }
        }
        Err(CoreError::Internal("datastore record is too contended to update".to_string()))
    }

    /// The datastore id an ARN names, if it can name one of this deployment's datastores.
    fn datastore_of_arn(&self, arn: &str) -> CoreResult<String> {
        let parsed = validate::resource_arn(arn)?;
        match parsed.datastore_id {
            Some(id) if parsed.region == self.config.region && parsed.account == self.config.account_id => Ok(id),
            _ => Err(CoreError::NotFound(format!("resource {arn} does not exist"))),
        }
    }

    fn summary(&self, record: &DatastoreRecord) -> DatastoreSummary {
        DatastoreSummary {
            datastore_id: record.id.clone(),
            datastore_arn: self.arn(&record.id),
            datastore_status: record.status,
            datastore_endpoint: self.config.datastore_endpoint(&record.id),
        }
    }

    fn properties(&self, record: &DatastoreRecord) -> DatastoreProperties {
        DatastoreProperties {
            datastore_id: record.id.clone(),
            datastore_arn: self.arn(&record.id),
            datastore_name: record.name.clone(),
            datastore_status: record.status,
            created_at: Some(record.created_at),
            datastore_type_version: record.type_version,
            datastore_endpoint: self.config.datastore_endpoint(&record.id),
            sse_configuration: Some(record.sse.clone()),
            preload_data_config: record.preload,
            identity_provider_configuration: record.identity_provider.clone(),
            error_cause: record.error_cause.clone(),
            nlp_configuration: record.nlp,
            analytics_configuration: record.analytics,
            profile_configuration: record.profiles.clone(),
            backup_status_info: record.backup.map(|c| BackupStatusInfo { configuration: Some(c) }),
        }
    }
}

fn validate_create(request: &CreateFhirDatastoreRequest) -> CoreResult<()> {
    if let Some(name) = &request.datastore_name {
        validate::datastore_name("DatastoreName", name)?;
    }
    if let Some(token) = &request.client_token {
        validate::client_token(token)?;
    }
    if let Some(sse) = &request.sse_configuration {
        validate::sse_configuration(sse)?;
    }
    if request.preload_data_config.is_some() {
        return Err(CoreError::Invalid("PreloadDataConfig is not supported by fhirlake".to_string()));
    }
    if let Some(tags) = &request.tags {
        validate::tags(tags)?;
    }
    if let Some(idp) = &request.identity_provider_configuration {
        validate::identity_provider(idp)?;
    }
    validate::optional_features(
        request.analytics_configuration.as_ref(),
        request.nlp_configuration.as_ref(),
        request.backup_configuration.as_ref(),
        request.profile_configuration.as_ref(),
    )
}

/// The identity provider configuration of a datastore created without one.
pub(crate) fn aws_auth() -> IdentityProviderConfiguration {
    IdentityProviderConfiguration {
        authorization_strategy: AuthorizationStrategy::AwsAuth,
        fine_grained_authorization_enabled: None,
        metadata: None,
        idp_lambda_arn: None,
    }
}

fn ensure_not_deleted(record: &DatastoreRecord) -> CoreResult<()> {
    match record.status {
        DatastoreStatus::Deleting | DatastoreStatus::Deleted => {
            Err(CoreError::NotFound(format!("datastore {} has been deleted", record.id)))
        }
        _ => Ok(()),
    }
}

fn matches_filter(record: &DatastoreRecord, filter: &DatastoreFilter) -> bool {
    filter.datastore_name.as_ref().is_none_or(|name| record.name.as_ref() == Some(name))
        && filter.datastore_status.is_none_or(|status| record.status == status)
        && filter.created_before.is_none_or(|before| record.created_at < before)
        && filter.created_after.is_none_or(|after| record.created_at > after)
}

/// The SHA-256 (hex) of a create request's parameters, its token excluded.
fn request_fingerprint(request: &CreateFhirDatastoreRequest) -> CoreResult<String> {
    let mut without_token = request.clone();
    without_token.client_token = None;
    let json = serde_json::to_vec(&without_token).map_err(|e| CoreError::Internal(format!("create request does not serialise: {e}")))?;
    Ok(hex::encode(Sha256::digest(&json)))
}

fn encode_list_token(sk: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{sk}"))
}

fn decode_list_token(token: &str) -> CoreResult<String> {
    let invalid = || CoreError::Invalid("NextToken is not a token this service issued".to_string());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let sk = text.strip_prefix(TOKEN_PREFIX).ok_or_else(invalid)?;
    let id = sk.strip_prefix(DATASTORE_SK_PREFIX).ok_or_else(invalid)?;
    validate::datastore_id(id).map_err(|_| invalid())?;
    Ok(sk.to_string())
}

/// Truncates to milliseconds, the precision timestamps are stored and reported with.
pub(crate) fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

#[cfg(test)]
mod tests;
