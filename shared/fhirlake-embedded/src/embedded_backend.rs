//! [`EmbeddedBackend`]: the embedded adapters opened under one data directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fhirlake_ports::{StorageError, StorageResult};

use crate::{LocalBuckets, LocalKeyFile, LocalObjectStore, RedbItemTable};

/// The item table, object store, key service and job buckets of one data directory:
///
/// ```text
/// <data_dir>/table.redb    the item table
/// <data_dir>/table.runs/   its sorted runs (large batches, see `run_set.rs`)
/// <data_dir>/objects/      the object store
/// <data_dir>/master.key    the master secret (mode 0600)
/// <data_dir>/s3/<bucket>/   the buckets jobs read from and write to (`s3://<bucket>/...`)
/// ```
#[derive(Debug, Clone)]
pub struct EmbeddedBackend {
    /// The item table.
    pub items: Arc<RedbItemTable>,
    /// The object store.
    pub objects: Arc<LocalObjectStore>,
    /// The key service.
    pub keys: Arc<LocalKeyFile>,
    /// The buckets of jobs' input and output.
    pub buckets: Arc<LocalBuckets>,
    data_dir: PathBuf,
}

impl EmbeddedBackend {
    /// Opens (creating on first use) every store under `data_dir`. Blocking.
    ///
    /// Errors: `Internal` when the directory cannot be created, the table is already open in
    /// another process, or the master key file is unreadable or too open.
    pub fn open(data_dir: impl AsRef<Path>) -> StorageResult<Self> {
        let data_dir = data_dir.as_ref().to_path_buf();
        create_private_dir(&data_dir)?;
        let keys = Arc::new(LocalKeyFile::open_or_create(data_dir.join("master.key"))?);
        let items = Arc::new(RedbItemTable::open(data_dir.join("table.redb"))?);
        let objects = Arc::new(LocalObjectStore::new(data_dir.join("objects"))?);
        let buckets = Arc::new(LocalBuckets::new(data_dir.join("s3"))?);
        Ok(EmbeddedBackend { items, objects, keys, buckets, data_dir })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> StorageResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StorageError::internal(format!("cannot create the data directory: {}", e.kind())))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> StorageResult<()> {
    fs::create_dir_all(dir).map_err(|e| StorageError::internal(format!("cannot create the data directory: {}", e.kind())))
}
