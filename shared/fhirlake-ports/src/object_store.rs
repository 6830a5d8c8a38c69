//! The object store: S3's model narrowed to the calls fhirlake makes.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use crate::StorageResult;

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The full key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectList {
    /// Objects in ascending key order.
    pub objects: Vec<ObjectMeta>,
    /// When set, more keys follow: pass it as `start_after` to continue.
    pub next_start_after: Option<String>,
}

/// An object store addressed by `/`-separated keys within one bucket.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `body` under `key`, replacing any object; readers see the old or the new
    /// object whole, never a partial one.
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()>;

    /// Returns the object under `key`. Errors: `NotFound`.
    async fn get(&self, key: &str) -> StorageResult<Bytes>;

    /// Returns bytes `range` of the object (clamped to its end). Errors: `NotFound`.
    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes>;

    /// Returns the object's metadata. Errors: `NotFound`.
    async fn head(&self, key: &str) -> StorageResult<ObjectMeta>;

    /// Lists keys beginning with `prefix`, ascending, strictly after `start_after`, at most `limit`.
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StorageResult<ObjectList>;

    /// Deletes the object; deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> StorageResult<()>;
}
