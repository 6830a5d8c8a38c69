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

/// Every part of a multipart upload but the last must hold at least this many bytes (S3's rule).
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;
/// Part numbers of a multipart upload run from 1 to this (S3's rule).
pub const MAX_PART_NUMBER: u32 = 10_000;

/// A multipart upload in progress, from [`ObjectStore::create_upload`]. It holds no
/// connection or buffer: any process may upload parts to it or complete it (a Lambda can
/// continue what another invocation started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The key the object will have.
    pub key: String,
    /// The store's id of the upload.
    pub upload_id: String,
}

/// A part that [`ObjectStore::upload_part`] stored, to pass to
/// [`ObjectStore::complete_upload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    /// Its part number, 1 to [`MAX_PART_NUMBER`].
    pub number: u32,
    /// The store's tag of its content.
    pub etag: String,
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

    /// Starts a multipart upload of `key`. Nothing is visible under `key` (and an existing
    /// object stays readable) until [`ObjectStore::complete_upload`].
    ///
    /// Errors: `Invalid` for an invalid key.
    async fn create_upload(&self, key: &str) -> StorageResult<Upload>;

    /// Stores part `number` of `upload`; uploading a number again replaces that part.
    ///
    /// Errors: `NotFound` when the upload was completed, aborted or never existed; `Invalid`
    /// for a number outside 1..=[`MAX_PART_NUMBER`].
    async fn upload_part(&self, upload: &Upload, number: u32, body: Bytes) -> StorageResult<UploadedPart>;

    /// Makes the object under the upload's key the concatenation of `parts`, replacing any
    /// object there whole (readers see the old or the new object, never a mix), and ends the
    /// upload.
    ///
    /// Errors: `Invalid` when `parts` is empty, not in strictly ascending number order, names a
    /// part (or an etag) that was not uploaded, or has a part other than the last smaller than
    /// [`MIN_PART_BYTES`]; `NotFound` when the upload does not exist.
    async fn complete_upload(&self, upload: &Upload, parts: &[UploadedPart]) -> StorageResult<()>;

    /// Ends the upload and discards its parts. Aborting an upload that no longer exists
    /// succeeds.
    async fn abort_upload(&self, upload: &Upload) -> StorageResult<()>;
}

/// Checks what every adapter must refuse in the part list of [`ObjectStore::complete_upload`]
/// before asking its store: an empty list, or numbers not in strictly ascending order.
pub fn check_part_order(parts: &[UploadedPart]) -> StorageResult<()> {
    if parts.is_empty() {
        return Err(crate::StorageError::invalid("a multipart upload needs at least one part"));
    }
    if parts.windows(2).any(|pair| pair[1].number <= pair[0].number) {
        return Err(crate::StorageError::invalid("parts must be listed in strictly ascending order"));
    }
    Ok(())
}

/// Checks the part list of [`ObjectStore::complete_upload`] against the uploaded parts'
/// sizes: what every adapter without a server-side check (memory, local files) enforces, on
/// top of [`check_part_order`].
///
/// `uploaded` maps part numbers to (etag, size).
pub fn check_part_list(parts: &[UploadedPart], uploaded: &std::collections::BTreeMap<u32, (String, usize)>) -> StorageResult<()> {
    check_part_order(parts)?;
    for (index, part) in parts.iter().enumerate() {
        match uploaded.get(&part.number) {
            Some((etag, size)) if *etag == part.etag => {
                if index + 1 < parts.len() && *size < MIN_PART_BYTES {
                    return Err(crate::StorageError::invalid("a part other than the last is smaller than the minimum part size"));
                }
            }
            _ => return Err(crate::StorageError::invalid("a listed part was not uploaded")),
        }
    }
    Ok(())
}

/// Checks a part number against 1..=[`MAX_PART_NUMBER`].
pub fn check_part_number(number: u32) -> StorageResult<()> {
    if (1..=MAX_PART_NUMBER).contains(&number) {
        Ok(())
    } else {
        Err(crate::StorageError::invalid("part numbers run from 1 to 10000"))
    }
}

/// Writes one object of any size through an [`ObjectStore`] in parts of `part_size` bytes:
/// a single `put` when everything fits in one part, else a multipart upload, aborted when a
/// step fails. The caller decides when the object is whole by calling
/// [`ObjectWriter::finish`]; dropping an unfinished writer leaves nothing under the key (the
/// store's parts are reclaimed by its own expiry of incomplete uploads, or by
/// [`ObjectWriter::abort`]).
pub struct ObjectWriter<'a> {
    store: &'a dyn ObjectStore,
    key: String,
    part_size: usize,
    buffer: Vec<u8>,
    upload: Option<Upload>,
    parts: Vec<UploadedPart>,
    written: u64,
}

impl<'a> ObjectWriter<'a> {
    /// Default part size: 8 MiB.
    pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

    /// A writer of `key` with parts of [`ObjectWriter::DEFAULT_PART_SIZE`].
    pub fn new(store: &'a dyn ObjectStore, key: impl Into<String>) -> Self {
        Self::with_part_size(store, key, Self::DEFAULT_PART_SIZE)
    }

    /// A writer of `key` with parts of `part_size` bytes (raised to [`MIN_PART_BYTES`]).
    pub fn with_part_size(store: &'a dyn ObjectStore, key: impl Into<String>, part_size: usize) -> Self {
        let part_size = part_size.max(MIN_PART_BYTES);
        ObjectWriter { store, key: key.into(), part_size, buffer: Vec::new(), upload: None, parts: Vec::new(), written: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `data`, uploading a part whenever a whole part is buffered.
    pub async fn write(&mut self, mut data: &[u8]) -> StorageResult<()> {
        self.written += data.len() as u64;
        while !data.is_empty() {
            let room = self.part_size - self.buffer.len();
            let take = room.min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == self.part_size {
                self.flush_part().await?;
            }
        }
        Ok(())
    }

    async fn flush_part(&mut self) -> StorageResult<()> {
        let upload = match &self.upload {
            Some(upload) => upload.clone(),
            None => {
                let upload = self.store.create_upload(&self.key).await?;
                self.upload = Some(upload.clone());
                upload
            }
        };
        let number = u32::try_from(self.parts.len() + 1).unwrap_or(u32::MAX);
        let body = Bytes::from(std::mem::take(&mut self.buffer));
        match self.store.upload_part(&upload, number, body).await {
            Ok(part) => {
                self.parts.push(part);
                Ok(())
            }
            Err(error) => {
                let _ = self.store.abort_upload(&upload).await;
                self.upload = None;
                Err(error)
            }
        }
    }

    /// Makes the object visible whole under its key.
    pub async fn finish(mut self) -> StorageResult<u64> {
        let Some(upload) = self.upload.clone() else {
            let body = Bytes::from(std::mem::take(&mut self.buffer));
            self.store.put(&self.key, body).await?;
            return Ok(self.written);
        };
        if !self.buffer.is_empty() {
            self.flush_part().await?;
        }
        if let Err(error) = self.store.complete_upload(&upload, &self.parts).await {
            let _ = self.store.abort_upload(&upload).await;
            return Err(error);
        }
        Ok(self.written)
    }

    /// Discards everything written.
    pub async fn abort(self) -> StorageResult<()> {
        match &self.upload {
            Some(upload) => self.store.abort_upload(upload).await,
            None => Ok(()),
        }
    }
}
