//! [`Buckets`]: the buckets jobs read their input from and write their output to, named by the
//! caller (`s3://bucket/prefix`), as opposed to the deployment's own [`ObjectStore`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::memory::MemoryObjectStore;
use crate::{ObjectStore, StorageError, StorageResult};

/// Opens a named bucket as an [`ObjectStore`] (keys are the bucket's own keys, no prefix).
#[async_trait]
pub trait Buckets: Send + Sync + 'static {
    /// The store over `bucket`. Objects it writes are encrypted under `kms_key_id` where the
    /// adapter supports it (SSE-KMS on S3); reads need no key.
    ///
    /// Errors: `NotFound` when the bucket does not exist; `Invalid` for a name the adapter
    /// cannot hold; other kinds as the backend reports (no permission is `Internal`).
    async fn open(&self, bucket: &str, kms_key_id: Option<&str>) -> StorageResult<Arc<dyn ObjectStore>>;
}

/// Buckets in memory, for tests: only those made with [`MemoryBuckets::create`] exist.
#[derive(Default)]
pub struct MemoryBuckets {
    buckets: Mutex<HashMap<String, Arc<MemoryObjectStore>>>,
}

impl MemoryBuckets {
    /// No buckets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates `bucket` (empty) if it does not exist, and returns it.
    pub fn create(&self, bucket: &str) -> Arc<MemoryObjectStore> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets.entry(bucket.to_string()).or_insert_with(|| Arc::new(MemoryObjectStore::new())).clone()
    }
}

#[async_trait]
impl Buckets for MemoryBuckets {
    async fn open(&self, bucket: &str, _kms_key_id: Option<&str>) -> StorageResult<Arc<dyn ObjectStore>> {
        let buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match buckets.get(bucket) {
            Some(store) => Ok(store.clone() as Arc<dyn ObjectStore>),
            None => Err(StorageError::not_found(format!("the bucket {bucket} does not exist"))),
        }
    }
}
