//! How datastore records and idempotency tokens live in the item table.
//!
//! | PK | SK | attributes |
//! |----|----|------------|
//! | `CP#datastores` | `DS#{datastoreId}` | `record` S (JSON of [`DatastoreRecord`]), `status` S (wire status, mirrors the record), `rev` N (revision, +1 per write), `master_key_id` S, `wrapped_key` B (the data key wrapped under `master_key_id` with context = datastore id; removed on delete) |
//! | `CP#client-tokens` | `TOKEN#{clientToken}` | `datastore_id` S, `request_sha256` S (hex SHA-256 of the create request's JSON without its token) |
//!
//! Every update of a datastore item is a put conditioned on `rev` being the revision read, so
//! concurrent writers never clobber each other (the loser re-reads and retries). A create writes
//! the datastore item and its token item in one transaction, both conditioned on not existing.

use chrono::{DateTime, Utc};
use fhirlake_ports::{AttrValue, Condition, Item, ItemTable, Key};
use serde::{Deserialize, Serialize};

use super::model::epoch_seconds;
use super::model::{
    AnalyticsConfiguration, BackupConfiguration, DatastoreStatus, ErrorCause, FhirVersion, IdentityProviderConfiguration, NlpConfiguration,
    PreloadDataConfig, ProfileConfiguration, SseConfiguration, Tag,
};
use super::ActiveDatastore;
use crate::{CoreError, CoreResult};

/// Partition of every datastore record.
pub(super) const DATASTORES_PK: &str = "CP#datastores";
/// Sort-key prefix of datastore records.
pub(super) const DATASTORE_SK_PREFIX: &str = "DS#";
/// Partition of create-request idempotency tokens.
pub(super) const TOKENS_PK: &str = "CP#client-tokens";

/// The key of a datastore's record.
pub(super) fn datastore_key(id: &str) -> Key {
    Key::new(DATASTORES_PK, format!("{DATASTORE_SK_PREFIX}{id}"))
}

/// The key of an idempotency token.
pub(super) fn token_key(token: &str) -> Key {
    Key::new(TOKENS_PK, format!("TOKEN#{token}"))
}

/// What fhirlake keeps about a datastore (the `record` attribute). Wire-level derived values
/// (ARN, endpoint) are not stored: they follow the deployment's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct DatastoreRecord {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: DatastoreStatus,
    #[serde(with = "epoch_seconds")]
    pub created_at: DateTime<Utc>,
    pub type_version: FhirVersion,
    pub sse: SseConfiguration,
    #[serde(default)]
    pub preload: Option<PreloadDataConfig>,
    #[serde(default)]
    pub identity_provider: Option<IdentityProviderConfiguration>,
    #[serde(default)]
    pub analytics: Option<AnalyticsConfiguration>,
    #[serde(default)]
    pub nlp: Option<NlpConfiguration>,
    #[serde(default)]
    pub profiles: Option<ProfileConfiguration>,
    #[serde(default)]
    pub backup: Option<BackupConfiguration>,
    #[serde(default)]
    pub error_cause: Option<ErrorCause>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A datastore item as read: the record, its revision, and the wrapped data key if it still exists.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StoredDatastore {
    pub record: DatastoreRecord,
    pub rev: i64,
    pub master_key_id: String,
    pub wrapped_key: Option<Vec<u8>>,
}

impl StoredDatastore {
    /// The item to write for this state (with `rev` as given).
    pub fn to_item(&self) -> CoreResult<Item> {
        let record =
            serde_json::to_string(&self.record).map_err(|e| CoreError::Internal(format!("datastore record does not serialise: {e}")))?;
        let mut item = Item::new(datastore_key(&self.record.id))
            .with("record", AttrValue::S(record))
            .with("status", AttrValue::S(self.record.status.as_str().to_string()))
            .with("rev", AttrValue::N(self.rev))
            .with("master_key_id", AttrValue::S(self.master_key_id.clone()));
        if let Some(wrapped) = &self.wrapped_key {
            item = item.with("wrapped_key", AttrValue::B(wrapped.clone()));
        }
        Ok(item)
    }

    /// Decodes a datastore item; a malformed one is an `Internal` error (corrupted state).
    pub fn from_item(item: &Item) -> CoreResult<Self> {
        let corrupt = |what: &str| CoreError::Internal(format!("datastore item {} has {what}", item.key.sk));
        let record = item.get_str("record").ok_or_else(|| corrupt("no record"))?;
        let record: DatastoreRecord = serde_json::from_str(record).map_err(|_| corrupt("an unreadable record"))?;
        let rev = item.get_i64("rev").ok_or_else(|| corrupt("no revision"))?;
        let master_key_id = item.get_str("master_key_id").ok_or_else(|| corrupt("no master key id"))?.to_string();
        let wrapped_key = item.get_bytes("wrapped_key").map(<[u8]>::to_vec);
        Ok(StoredDatastore { record, rev, master_key_id, wrapped_key })
    }
}

/// Reads a datastore item.
pub(super) async fn load(table: &dyn ItemTable, id: &str) -> CoreResult<Option<StoredDatastore>> {
    match table.get(&datastore_key(id)).await? {
        Some(item) => StoredDatastore::from_item(&item).map(Some),
        None => Ok(None),
    }
}

/// Writes `next` over the revision `expected_rev`, bumping the revision.
///
/// Returns `Ok(None)` when another writer got there first (the caller re-reads and retries).
pub(super) async fn replace(table: &dyn ItemTable, mut next: StoredDatastore, expected_rev: i64) -> CoreResult<Option<StoredDatastore>> {
    next.rev = expected_rev + 1;
    let item = next.to_item()?;
    match table.put(item, Condition::Equals("rev".to_string(), AttrValue::N(expected_rev))).await {
        Ok(()) => Ok(Some(next)),
        Err(e) if e.is_condition_failure() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An idempotency token's item.
pub(super) fn token_item(token: &str, datastore_id: &str, request_sha256: &str) -> Item {
    Item::new(token_key(token))
        .with("datastore_id", AttrValue::S(datastore_id.to_string()))
        .with("request_sha256", AttrValue::S(request_sha256.to_string()))
}

/// What a token item records: (datastore id, request fingerprint).
pub(super) fn token_parts(item: &Item) -> CoreResult<(String, String)> {
    let corrupt = || CoreError::Internal(format!("client token item {} is malformed", item.key.sk));
    let id = item.get_str("datastore_id").ok_or_else(corrupt)?;
    let fingerprint = item.get_str("request_sha256").ok_or_else(corrupt)?;
    Ok((id.to_string(), fingerprint.to_string()))
}

/// The data plane's view of an item that is ACTIVE with its data key, decoding only the identity
/// provider from the record; `None` when the item is in any other state.
pub(super) fn active_view(item: &Item) -> CoreResult<Option<ActiveDatastore>> {
    #[derive(Deserialize)]
    struct IdentityOnly {
        id: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        identity_provider: Option<IdentityProviderConfiguration>,
    }
    let (Some("ACTIVE"), Some(wrapped), Some(master_key_id), Some(record)) =
        (item.get_str("status"), item.get_bytes("wrapped_key"), item.get_str("master_key_id"), item.get_str("record"))
    else {
        return Ok(None);
    };
    let view: IdentityOnly = serde_json::from_str(record)
        .map_err(|_| CoreError::Internal(format!("datastore item {} has an unreadable record", item.key.sk)))?;
    Ok(Some(ActiveDatastore {
        id: view.id,
        name: view.name,
        master_key_id: master_key_id.to_string(),
        wrapped_data_key: wrapped.to_vec(),
        identity_provider: view.identity_provider.unwrap_or_else(super::aws_auth),
    }))
}
