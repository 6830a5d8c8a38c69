//! [`S3Buckets`]: the jobs' input and output buckets on S3.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use fhirlake_ports::{Buckets, ObjectStore, StorageError, StorageResult};

use crate::error::sdk_error;
use crate::S3ObjectStore;

/// Opens any bucket the configured credentials can reach (each `open` costs one `HeadBucket`,
/// so a missing bucket is `NotFound` before a job reads or writes).
#[derive(Debug, Clone)]
pub struct S3Buckets {
    client: Client,
}

impl S3Buckets {
    /// Buckets through `client`.
    pub fn new(client: Client) -> Self {
        S3Buckets { client }
    }
}

#[async_trait]
impl Buckets for S3Buckets {
    async fn open(&self, bucket: &str, kms_key_id: Option<&str>) -> StorageResult<Arc<dyn ObjectStore>> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(Arc::new(S3ObjectStore::new(self.client.clone(), bucket, None, kms_key_id.map(String::from)))),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                Err(StorageError::not_found(format!("the bucket {bucket} does not exist")))
            }
            Err(e) => Err(sdk_error("head bucket", &e)),
        }
    }
}
