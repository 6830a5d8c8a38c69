//! [`Projector`]: one batch of DynamoDB stream records in, projection files out.
//!
//! ## What one batch does
//! 1. Classify the records ([`change_records`]): only resource version items carry work.
//! 2. Look up each datastore once ([`DatastoreService::readable`](fhirlake_core::datastores::DatastoreService::readable),
//!    read-only). A deleted datastore's records are skipped and counted: its data key is destroyed,
//!    so they can never be opened and retrying them would loop.
//! 3. Open each version with [`ResourceService::open_version_item`](fhirlake_core::resources::ResourceService::open_version_item),
//!    the same code every read uses, and extract its row.
//! 4. Group the rows by (datastore, resource type, UTC day of `lastUpdated`) and write each group
//!    as one Parquet file at [`projection_key`], named after the group's first record.
//!
//! ## Failures and retries
//! Only transient errors are retried: a throttled or unreachable table, key service or object
//! store (`Throttled` and `Internal` storage errors). Everything else (a malformed record, a body
//! that fails authentication, a missing body object, a key that does not unwrap) is permanent:
//! the record is skipped, counted and logged with its keys only, and the batch goes on.
//!
//! A transient failure answers a `batchItemFailures` list naming one record, the checkpoint: the
//! Lambda event source mapping (with `ReportBatchItemFailures`) then retries from that record on
//! and never redelivers the records before it. Records after the first decoding failure are not
//! written at all. The checkpoint is chosen so that no file written by this attempt holds a row of
//! a record at or after the checkpoint unless the file's first record is itself at or after it:
//! such a file is replaced when its first record is processed again, because every delivery of a
//! shard's records is a contiguous run, a file's name depends only on its first record, and the
//! group of that record in any later delivery starts at that same record. So every row ends up
//! in exactly one file, whatever the retries, bisections and batch sizes.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use bytes::Bytes;
use chrono::NaiveDate;
use fhirlake_core::datastores::ActiveDatastore;
use fhirlake_core::{layout, CoreError, Services};
use fhirlake_ports::{Item, ObjectStore, StorageError, StorageErrorKind};
use tokio::task::JoinSet;

use crate::object_layout::{batch_id, projection_key};
use crate::parquet_file::encode_parquet;
use crate::row::{project_version, ProjectionRow};
use crate::schema::{schema_for, ProjectionSchema};
use crate::stream_event::{change_records, Change, ChangeRecord, IgnoreReason, MalformedReason};
use crate::ProjectionError;

/// Files uploaded at once.
const UPLOAD_CONCURRENCY: usize = 8;

/// Turns batches of stream records into projection files.
#[derive(Clone)]
pub struct Projector {
    services: Services,
    output: Arc<dyn ObjectStore>,
}

/// Why a record was skipped. Counted per batch; each is logged with keys only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// The stream record is unusable.
    Malformed(MalformedReason),
    /// The datastore was deleted (its data key destroyed) or never existed.
    DatastoreGone,
    /// The datastore's record is corrupted.
    DatastoreUnreadable,
    /// The version item cannot be opened (corrupted, moved, body object missing, key unusable).
    Unreadable,
    /// The opened body is not a JSON object.
    BadBody,
    /// The resource type is not an R4 type.
    UnknownType,
}

impl SkipReason {
    /// A short name for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Malformed(reason) => reason.as_str(),
            SkipReason::DatastoreGone => "datastore_gone",
            SkipReason::DatastoreUnreadable => "datastore_unreadable",
            SkipReason::Unreadable => "unreadable_version",
            SkipReason::BadBody => "bad_body",
            SkipReason::UnknownType => "unknown_type",
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Records in the event.
    pub records: usize,
    /// The files written, by key, with their row counts.
    pub files: BTreeMap<String, usize>,
    /// Records with nothing to project, by reason.
    pub ignored: BTreeMap<IgnoreReason, usize>,
    /// Records skipped for good, by reason.
    pub skipped: BTreeMap<SkipReason, usize>,
    /// The sequence number to retry from (reported as the batch item failure), if any.
    pub retry_from: Option<String>,
}

impl BatchReport {
    /// Rows in the files written.
    pub fn rows(&self) -> usize {
        self.files.values().sum()
    }

    /// The Lambda response: one batch item failure naming [`BatchReport::retry_from`], or none.
    pub fn response(&self) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        if let Some(sequence_number) = &self.retry_from {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence_number.clone());
            response.batch_item_failures.push(failure);
        }
        response
    }

    fn log(&self) {
        let counts = |m: &dyn Fn() -> Vec<(&'static str, usize)>| m().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        let ignored = counts(&|| self.ignored.iter().map(|(k, v)| (k.as_str(), *v)).collect());
        let skipped = counts(&|| self.skipped.iter().map(|(k, v)| (k.as_str(), *v)).collect());
        tracing::info!(
            records = self.records,
            files = self.files.len(),
            rows = self.rows(),
            ignored = %ignored,
            skipped = %skipped,
            retry_from = self.retry_from.as_deref().unwrap_or(""),
            "stream batch projected"
        );
    }
}

/// A datastore as looked up once per batch.
enum Lookup {
    Open(ActiveDatastore),
    Gone,
    Unreadable,
}

/// A record that must be retried (with a transient error, for the log).
struct Retry(String);

/// What decoding one version record gave.
enum Decoded {
    Row { datastore_id: String, schema: &'static ProjectionSchema, date: NaiveDate, row: ProjectionRow },
    Skip(SkipReason),
}

/// The rows of one file.
struct Group {
    schema: &'static ProjectionSchema,
    key: String,
    first_index: usize,
    last_index: usize,
    rows: Vec<ProjectionRow>,
}

impl Projector {
    /// A projector opening versions with `services` and writing files to `output`.
    pub fn new(services: Services, output: Arc<dyn ObjectStore>) -> Self {
        Projector { services, output }
    }

    /// Handles one Lambda invocation: projects the batch, logs its report and answers the
    /// partial batch response.
    ///
    /// Errors (the whole batch then fails and Lambda retries it): [`ProjectionError::NoCheckpoint`]
    /// when a record to retry from has no sequence number, [`ProjectionError::Encode`] when
    /// arrow-rs cannot encode a file. Neither happens with well-formed input: transient failures
    /// are answered as a batch item failure, permanent ones skip their records.
    pub async fn handle(&self, event: Event) -> Result<DynamoDbEventResponse, ProjectionError> {
        let report = self.project(&event).await?;
        report.log();
        Ok(report.response())
    }

    /// Projects one batch (see the module documentation) and reports what it did, without
    /// logging the report. Errors: as [`Projector::handle`].
    pub async fn project(&self, event: &Event) -> Result<BatchReport, ProjectionError> {
        let records = change_records(event);
        let mut report = BatchReport { records: records.len(), ..BatchReport::default() };
        let mut datastores: HashMap<String, Lookup> = HashMap::new();
        let mut groups: BTreeMap<(String, &'static str, NaiveDate), Group> = BTreeMap::new();
        let mut retry_index: Option<usize> = None;

        for (index, record) in records.iter().enumerate() {
            let item = match &record.change {
                Change::Ignored(reason) => {
                    *report.ignored.entry(*reason).or_default() += 1;
                    continue;
                }
                Change::Malformed(reason) => {
                    tracing::warn!(event_id = %record.event_id, reason = reason.as_str(), "unusable stream record skipped");
                    *report.skipped.entry(SkipReason::Malformed(*reason)).or_default() += 1;
                    continue;
                }
                Change::Version(item) => item,
            };
            match self.decode(item, &mut datastores).await {
                Ok(Decoded::Row { datastore_id, schema, date, row }) => {
                    let group = match groups.entry((datastore_id, schema.resource_type, date)) {
                        Entry::Occupied(group) => group.into_mut(),
                        Entry::Vacant(slot) => {
                            // Version records always have a valid sequence number.
                            let Some(key) = group_key(record, &slot.key().0, schema, date) else {
                                *report.skipped.entry(SkipReason::Malformed(MalformedReason::SequenceNumber)).or_default() += 1;
                                continue;
                            };
                            slot.insert(Group { schema, key, first_index: index, last_index: index, rows: Vec::new() })
                        }
                    };
                    group.last_index = index;
                    group.rows.push(row);
                }
                Ok(Decoded::Skip(reason)) => *report.skipped.entry(reason).or_default() += 1,
                Err(Retry(error)) => {
                    tracing::warn!(pk = %item.key.pk, sk = %item.key.sk, %error, "transient failure; the batch is retried from this record");
                    retry_index = Some(index);
                    break;
                }
            }
        }

        let groups: Vec<Group> = groups.into_values().collect();
        let outcomes = self.write(&groups).await?;
        let mut written = Vec::new();
        for (group, outcome) in groups.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    report.files.insert(group.key.clone(), group.rows.len());
                    written.push(group);
                }
                Err(error) => {
                    tracing::warn!(key = %group.key, %error, "writing a projection file failed; the batch is retried from its first record");
                    retry_index = Some(retry_index.map_or(group.first_index, |i| i.min(group.first_index)));
                }
            }
        }
        if let Some(index) = checkpoint(retry_index, &written) {
            let sequence_number = records.get(index).and_then(|r| r.sequence_number.clone()).ok_or(ProjectionError::NoCheckpoint)?;
            report.retry_from = Some(sequence_number);
        }
        Ok(report)
    }

    /// Opens one version item and extracts its row.
    async fn decode(&self, item: &Item, datastores: &mut HashMap<String, Lookup>) -> Result<Decoded, Retry> {
        let Some(key) = layout::parse_version_key(&item.key) else {
            return Ok(Decoded::Skip(SkipReason::Malformed(MalformedReason::Keys)));
        };
        if !datastores.contains_key(key.datastore_id) {
            let lookup = match self.services.datastores.readable(key.datastore_id).await {
                Ok(Some(ds)) => Lookup::Open(ds),
                Ok(None) => {
                    tracing::warn!(datastore_id = key.datastore_id, "the datastore is deleted; its records are skipped");
                    Lookup::Gone
                }
                Err(error) if is_transient(&error) => return Err(Retry(error.to_string())),
                Err(error) => {
                    tracing::error!(datastore_id = key.datastore_id, %error, "the datastore record is unreadable; its records are skipped");
                    Lookup::Unreadable
                }
            };
            datastores.insert(key.datastore_id.to_string(), lookup);
        }
        let ds = match datastores.get(key.datastore_id) {
            Some(Lookup::Open(ds)) => ds,
            Some(Lookup::Gone) | None => return Ok(Decoded::Skip(SkipReason::DatastoreGone)),
            Some(Lookup::Unreadable) => return Ok(Decoded::Skip(SkipReason::DatastoreUnreadable)),
        };
        let version = match self.services.resources.open_version_item(ds, item).await {
            Ok(version) => version,
            Err(error) if is_transient(&error) => return Err(Retry(error.to_string())),
            Err(error) => {
                tracing::error!(pk = %item.key.pk, sk = %item.key.sk, %error, "version item cannot be opened; skipped");
                return Ok(Decoded::Skip(SkipReason::Unreadable));
            }
        };
        let Some(schema) = schema_for(&version.resource_type) else {
            tracing::error!(pk = %item.key.pk, "version of an unknown resource type; skipped");
            return Ok(Decoded::Skip(SkipReason::UnknownType));
        };
        match project_version(schema, &version) {
            Ok(row) => Ok(Decoded::Row { datastore_id: ds.id.clone(), schema, date: version.last_updated.date_naive(), row }),
            Err(error) => {
                tracing::error!(pk = %item.key.pk, sk = %item.key.sk, %error, "version cannot be projected; skipped");
                Ok(Decoded::Skip(SkipReason::BadBody))
            }
        }
    }

    /// Encodes and uploads every group (at most [`UPLOAD_CONCURRENCY`] uploads at once); the
    /// outcome of each, in order.
    async fn write(&self, groups: &[Group]) -> Result<Vec<Result<(), StorageError>>, ProjectionError> {
        let mut outcomes: Vec<Result<(), StorageError>> = groups.iter().map(|_| Ok(())).collect();
        let mut uploads: JoinSet<(usize, Result<(), StorageError>)> = JoinSet::new();
        for (index, group) in groups.iter().enumerate() {
            let bytes: Bytes = encode_parquet(group.schema, &group.rows)?;
            while uploads.len() >= UPLOAD_CONCURRENCY {
                collect(&mut uploads, &mut outcomes).await;
            }
            let (output, key) = (self.output.clone(), group.key.clone());
            uploads.spawn(async move { (index, output.put(&key, bytes).await) });
        }
        while !uploads.is_empty() {
            collect(&mut uploads, &mut outcomes).await;
        }
        Ok(outcomes)
    }
}

async fn collect(uploads: &mut JoinSet<(usize, Result<(), StorageError>)>, outcomes: &mut [Result<(), StorageError>]) {
    match uploads.join_next().await {
        Some(Ok((index, outcome))) => {
            if let Some(slot) = outcomes.get_mut(index) {
                *slot = outcome;
            }
        }
        // A panicked upload task: its file's outcome is unknown, so fail every group not yet
        // reported (a conservative checkpoint; the retry rewrites them).
        Some(Err(_)) => {
            for slot in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *slot = Err(StorageError::internal("an upload task failed"));
            }
        }
        None => {}
    }
}

/// The object key of the file `record` starts.
fn group_key(record: &ChangeRecord, datastore_id: &str, schema: &ProjectionSchema, date: NaiveDate) -> Option<String> {
    let batch = batch_id(record.sequence_number.as_deref()?, &record.event_id)?;
    Some(projection_key(datastore_id, schema.resource_type, date, &batch))
}

/// The record to retry from, given the first record that failed (to decode, or whose file
/// failed to upload): lowered to the first record of every written file that starts before it
/// but holds a row at or after it, until no such file is left (see the module documentation).
fn checkpoint(failed: Option<usize>, written: &[&Group]) -> Option<usize> {
    let mut at = failed?;
    loop {
        let lower = written.iter().filter(|g| g.first_index < at && g.last_index >= at).map(|g| g.first_index).min();
        match lower {
            Some(first) => at = first,
            None => return Some(at),
        }
    }
}

/// Whether an error is worth retrying: the table, key service or object store throttled or
/// could not be reached. Anything else fails the same way again.
fn is_transient(error: &CoreError) -> bool {
    matches!(error, CoreError::Storage(StorageError { kind: StorageErrorKind::Throttled | StorageErrorKind::Internal, .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(first_index: usize, last_index: usize) -> Group {
        Group { schema: schema_for("Patient").expect("Patient"), key: String::new(), first_index, last_index, rows: Vec::new() }
    }

    #[test]
    fn the_checkpoint_never_leaves_a_written_file_straddling_it() {
        assert_eq!(checkpoint(None, &[&group(0, 9)]), None);
        // A file entirely before the failure stays; one that starts after it is rewritten later.
        assert_eq!(checkpoint(Some(5), &[&group(0, 4), &group(6, 9)]), Some(5));
        // A file that straddles the failure moves the checkpoint to its start, transitively.
        let (a, b, c) = (group(1, 6), group(3, 8), group(0, 0));
        assert_eq!(checkpoint(Some(7), &[&a, &b, &c]), Some(1));
        assert_eq!(checkpoint(Some(7), &[&b, &c]), Some(3));
        let d = group(0, 2);
        assert_eq!(checkpoint(Some(7), &[&a, &b, &d]), Some(0));
    }

    #[test]
    fn only_throttling_and_unreachable_backends_are_transient() {
        assert!(is_transient(&CoreError::Storage(StorageError::internal("connection reset"))));
        assert!(is_transient(&CoreError::Storage(StorageError { kind: StorageErrorKind::Throttled, message: "slow down".into() })));
        assert!(!is_transient(&CoreError::Storage(StorageError::not_found("no such object"))));
        assert!(!is_transient(&CoreError::Storage(StorageError::invalid("wrapped data key does not decrypt"))));
        assert!(!is_transient(&CoreError::Internal("body failed authentication".into())));
    }
}
