//! [`ObjectStore`] on an S3 bucket, optionally under a key prefix and with SSE-KMS.

use std::ops::Range;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration, ServerSideEncryption,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use fhirlake_ports::{
    check_part_number, check_part_order, ObjectList, ObjectMeta, ObjectStore, StorageError, StorageErrorKind, StorageResult, Upload,
    UploadedPart,
};

use crate::error::{sdk_error, service_code};

/// ListObjectsV2 returns at most this many keys per call.
const MAX_LIST_KEYS: usize = 1000;

/// The object store on S3. Keys are stored under `prefix/` when a prefix is given; bodies are
/// encrypted with SSE-KMS under the given key when one is given (else with the bucket's default).
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: Client,
    bucket: String,
    prefix: String,
    sse_kms_key_id: Option<String>,
}

impl S3ObjectStore {
    /// The bucket `bucket` through `client`, with keys under `prefix` (a `/` is appended when
    /// missing) and SSE-KMS under `sse_kms_key_id`.
    pub fn new(client: Client, bucket: impl Into<String>, prefix: Option<String>, sse_kms_key_id: Option<String>) -> Self {
        let prefix = match prefix {
            Some(p) if !p.is_empty() && !p.ends_with('/') => format!("{p}/"),
            Some(p) => p,
            None => String::new(),
        };
        S3ObjectStore { client, bucket: bucket.into(), prefix, sse_kms_key_id }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The S3 key of a port key. Errors: `Invalid` for an empty key.
    fn object_key(&self, key: &str) -> StorageResult<String> {
        if key.is_empty() {
            return Err(StorageError::invalid("object key must not be empty"));
        }
        Ok(format!("{}{key}", self.prefix))
    }

    /// Turns an `Internal` upload error into `NotFound` when ListParts shows the upload does
    /// not exist. moto answers an unknown upload with a 500 rather than S3's 404
    /// `NoSuchUpload`; this costs one extra request on that error path only.
    async fn confirm_upload_exists(&self, upload: &Upload, error: StorageError) -> StorageError {
        if error.kind != StorageErrorKind::Internal {
            return error;
        }
        let Ok(key) = self.object_key(&upload.key) else { return error };
        match self.client.list_parts().bucket(&self.bucket).key(key).upload_id(&upload.upload_id).max_parts(1).send().await {
            Err(list_error) if upload_error("list parts", &list_error).kind == StorageErrorKind::NotFound => {
                StorageError::not_found("no such upload")
            }
            _ => error,
        }
    }

    /// The port key of an S3 key listed under the prefix.
    fn port_key(&self, object_key: &str) -> Option<String> {
        object_key.strip_prefix(self.prefix.as_str()).map(str::to_string)
    }
}

/// S3 error codes of CompleteMultipartUpload that mean the part list is wrong.
const INVALID_PART_LIST_CODES: &[&str] = &["InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML", "InvalidRequest"];

/// Normalises a multipart-upload error: an unknown upload is `NotFound`.
fn upload_error<E>(operation: &str, error: &SdkError<E, HttpResponse>) -> StorageError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let status_404 = matches!(error, SdkError::ServiceError(service) if service.raw().status().as_u16() == 404);
    match service_code(error) {
        // S3 answers NoSuchUpload (404); an emulator may send the 404 without a parsable code.
        Some("NoSuchUpload") => StorageError::not_found("no such upload"),
        _ if status_404 => StorageError::not_found("no such upload"),
        Some(code) if INVALID_PART_LIST_CODES.contains(&code) => {
            StorageError::new(StorageErrorKind::Invalid, format!("{operation} failed: {code}"))
        }
        _ => sdk_error(operation, error),
    }
}

/// True when S3 answered a ranged get with 416 (the range starts at or past the end).
fn is_unsatisfiable_range(error: &SdkError<GetObjectError, HttpResponse>) -> bool {
    if service_code(error) == Some("InvalidRange") {
        return true;
    }
    matches!(error, SdkError::ServiceError(service) if service.raw().status().as_u16() == 416)
}

async fn collect(body: ByteStream) -> StorageResult<Bytes> {
    body.collect().await.map(|data| data.into_bytes()).map_err(|e| StorageError::internal(format!("reading an object body failed: {e}")))
}

fn get_error<R: std::fmt::Debug>(operation: &str, error: &SdkError<GetObjectError, R>) -> StorageError {
    match error {
        SdkError::ServiceError(service) if matches!(service.err(), GetObjectError::NoSuchKey(_)) => {
            StorageError::not_found("no such object")
        }
        _ => sdk_error(operation, error),
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        let mut request = self.client.put_object().bucket(&self.bucket).key(self.object_key(key)?).body(ByteStream::from(body));
        if let Some(kms_key) = &self.sse_kms_key_id {
            request = request.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(kms_key);
        }
        request.send().await.map_err(|e| sdk_error("put object", &e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key)?)
            .send()
            .await
            .map_err(|e| get_error("get object", &e))?;
        collect(output.body).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        if range.start >= range.end {
            self.head(key).await?;
            return Ok(Bytes::new());
        }
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        let result = self.client.get_object().bucket(&self.bucket).key(self.object_key(key)?).range(header).send().await;
        let output = match result {
            Ok(output) => output,
            Err(error) if is_unsatisfiable_range(&error) => return Ok(Bytes::new()),
            Err(error) => return Err(get_error("get object range", &error)),
        };
        let body = collect(output.body).await?;
        // A server that ignores the range returns the whole object: cut it here.
        let whole = output.content_range.is_none() && range.start > 0 && body.len() as u64 > range.end - range.start;
        if whole {
            let start = usize::try_from(range.start).unwrap_or(usize::MAX).min(body.len());
            let end = usize::try_from(range.end).unwrap_or(usize::MAX).min(body.len());
            return Ok(body.slice(start..end));
        }
        let wanted = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
        Ok(if body.len() > wanted { body.slice(..wanted) } else { body })
    }

    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        let result = self.client.head_object().bucket(&self.bucket).key(self.object_key(key)?).send().await;
        match result {
            Ok(output) => {
                Ok(ObjectMeta { key: key.to_string(), size: output.content_length.and_then(|n| u64::try_from(n).ok()).unwrap_or(0) })
            }
            Err(SdkError::ServiceError(service)) if service.raw().status().as_u16() == 404 => {
                Err(StorageError::not_found("no such object"))
            }
            Err(error) => Err(sdk_error("head object", &error)),
        }
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StorageResult<ObjectList> {
        if limit == 0 {
            return Ok(ObjectList::default());
        }
        let full_prefix = format!("{}{prefix}", self.prefix);
        // S3 rejects an empty StartAfter; keys sort after "" anyway.
        let start_after = start_after.filter(|s| !s.is_empty()).map(|s| format!("{}{s}", self.prefix));
        let output = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full_prefix)
            .set_start_after(start_after)
            .max_keys(i32::try_from(limit.min(MAX_LIST_KEYS)).unwrap_or(1000))
            .send()
            .await
            .map_err(|e| sdk_error("list objects", &e))?;
        let mut objects = Vec::new();
        for object in output.contents() {
            let Some(key) = object.key().and_then(|k| self.port_key(k)) else { continue };
            objects.push(ObjectMeta { key, size: object.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0) });
        }
        let truncated = output.is_truncated().unwrap_or(false);
        let next_start_after = if truncated { objects.last().map(|object| object.key.clone()) } else { None };
        Ok(ObjectList { objects, next_start_after })
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let result = self.client.delete_object().bucket(&self.bucket).key(self.object_key(key)?).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if service_code(&error) == Some("NoSuchKey") => Ok(()),
            Err(error) => Err(sdk_error("delete object", &error)),
        }
    }

    async fn create_upload(&self, key: &str) -> StorageResult<Upload> {
        let mut request = self.client.create_multipart_upload().bucket(&self.bucket).key(self.object_key(key)?);
        if let Some(kms_key) = &self.sse_kms_key_id {
            request = request.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(kms_key);
        }
        let output = request.send().await.map_err(|e| sdk_error("create multipart upload", &e))?;
        let upload_id = output.upload_id.ok_or_else(|| StorageError::internal("s3 returned no upload id"))?;
        Ok(Upload { key: key.to_string(), upload_id })
    }

    async fn upload_part(&self, upload: &Upload, number: u32, body: Bytes) -> StorageResult<UploadedPart> {
        check_part_number(number)?;
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(self.object_key(&upload.key)?)
            .upload_id(&upload.upload_id)
            .part_number(i32::try_from(number).map_err(|_| StorageError::invalid("part number out of range"))?)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| upload_error("upload part", &e));
        let output = match output {
            Ok(output) => output,
            Err(error) => return Err(self.confirm_upload_exists(upload, error).await),
        };
        let etag = output.e_tag.ok_or_else(|| StorageError::internal("s3 returned no part etag"))?;
        Ok(UploadedPart { number, etag })
    }

    async fn complete_upload(&self, upload: &Upload, parts: &[UploadedPart]) -> StorageResult<()> {
        check_part_order(parts)?;
        let completed = parts
            .iter()
            .map(|part| CompletedPart::builder().part_number(i32::try_from(part.number).unwrap_or(i32::MAX)).e_tag(&part.etag).build())
            .collect();
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.object_key(&upload.key)?)
            .upload_id(&upload.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            .send()
            .await
            .map_err(|e| upload_error("complete multipart upload", &e));
        match result {
            Ok(_) => Ok(()),
            Err(error) => Err(self.confirm_upload_exists(upload, error).await),
        }
    }

    async fn abort_upload(&self, upload: &Upload) -> StorageResult<()> {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.object_key(&upload.key)?)
            .upload_id(&upload.upload_id)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => match upload_error("abort multipart upload", &error) {
                not_found if not_found.kind == StorageErrorKind::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// Creates the bucket `bucket` in the client's region unless it exists and is ours.
pub async fn create_bucket_if_missing(client: &Client, bucket: &str) -> StorageResult<()> {
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(()),
        Err(SdkError::ServiceError(service)) if service.raw().status().as_u16() == 404 => {}
        Err(error) => return Err(sdk_error("head bucket", &error)),
    }
    let mut request = client.create_bucket().bucket(bucket);
    let region = client.config().region().map(|r| r.as_ref().to_string());
    if let Some(region) = region.filter(|r| r != "us-east-1") {
        let location = CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region.as_str())).build();
        request = request.create_bucket_configuration(location);
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(error) if service_code(&error) == Some("BucketAlreadyOwnedByYou") => Ok(()),
        Err(error) => Err(sdk_error("create bucket", &error)),
    }
}
