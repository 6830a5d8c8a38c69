//! [`LocalBuckets`]: `s3://bucket/key` on the local disk, as `<root>/<bucket>/<key>`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use fhirlake_ports::{Buckets, ObjectStore, StorageError, StorageResult};

use crate::LocalObjectStore;

/// Buckets as directories under one root (`<data_dir>/s3` for `fhirlake serve`): a bucket
/// exists when its directory does, and its objects are files, as in [`LocalObjectStore`].
/// Objects are written unencrypted, like an S3 bucket without default encryption: the KMS key
/// of a job's output applies on AWS only.
#[derive(Debug, Clone)]
pub struct LocalBuckets {
    root: PathBuf,
}

impl LocalBuckets {
    /// Buckets under `root` (created if absent). Blocking.
    pub fn new(root: impl Into<PathBuf>) -> StorageResult<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| StorageError::internal(format!("cannot create the buckets directory: {}", e.kind())))?;
        Ok(LocalBuckets { root })
    }

    /// The directory holding the buckets.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
}

/// S3's bucket naming rules: 3 to 63 lowercase letters, digits, dots and hyphens, starting and
/// ending with a letter or digit.
fn valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && !name.contains("..")
}

#[async_trait]
impl Buckets for LocalBuckets {
    async fn open(&self, bucket: &str, _kms_key_id: Option<&str>) -> StorageResult<Arc<dyn ObjectStore>> {
        if !valid_bucket_name(bucket) {
            return Err(StorageError::invalid("not a valid bucket name"));
        }
        let dir = self.root.join(bucket);
        let exists = tokio::fs::metadata(&dir).await.map(|m| m.is_dir()).unwrap_or(false);
        if !exists {
            return Err(StorageError::not_found(format!("the bucket {bucket} does not exist")));
        }
        Ok(Arc::new(LocalObjectStore::new(dir)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bucket_is_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let buckets = LocalBuckets::new(dir.path().join("s3")).expect("buckets");
        let missing = buckets.open("input-bucket", None).await.err().map(|e| e.kind);
        assert_eq!(missing, Some(fhirlake_ports::StorageErrorKind::NotFound));
        std::fs::create_dir_all(dir.path().join("s3/input-bucket")).expect("mkdir");
        let store = buckets.open("input-bucket", None).await.expect("open");
        store.put("a/b.ndjson", bytes::Bytes::from_static(b"{}\n")).await.expect("put");
        assert!(dir.path().join("s3/input-bucket/a/b.ndjson").is_file());
        for bad in ["ab", "Upper", "-start", "end-", "a..b", "../x", "a/b"] {
            let kind = buckets.open(bad, None).await.err().map(|e| e.kind);
            assert_eq!(kind, Some(fhirlake_ports::StorageErrorKind::Invalid), "{bad}");
        }
    }
}
