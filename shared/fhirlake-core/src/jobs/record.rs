//! How jobs live in the item table.
//!
//! | PK | SK | attributes |
//! |----|----|------------|
//! | `j#{ds}#{kind}` | `{jobId}` | `record` S (JSON of [`JobRecord`]), `rev` N (+1 per write) |
//! | `j#{ds}#tokens` | `{kind}#{clientToken}` | `job_id` S, `request_sha256` S |
//! | `jl#{ds}#{jobId}` | `{chunk:06}` | `state` S (`started` or `done`), `result` S (JSON of the chunk's [`ChunkResult`]) |
//! | `j#active` | `{ds}#{kind}#{jobId}` | (none): jobs not yet terminal, for resuming after a restart |
//!
//! Record writes are conditioned on the revision read, as datastore records are. The chunk
//! ledger makes chunks idempotent: a chunk marks itself `started` before its first write and
//! `done` (with its counts) after its last, so a retried chunk knows it may have written before,
//! and a finished one is never run again.

use chrono::{DateTime, Utc};
use fhirlake_ports::{AttrValue, Condition, Item, ItemTable, Key, Query, SkRange, Write};
use serde::{Deserialize, Serialize};

use super::model::{JobStatus, S3Configuration, ValidationLevel};
use crate::{CoreError, CoreResult};

/// Import or export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// `StartFHIRImportJob`.
    Import,
    /// `StartFHIRExportJob` and `$export`.
    Export,
}

impl JobKind {
    /// `import` or `export`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Import => "import",
            JobKind::Export => "export",
        }
    }
    /// The folder name part: `FHIR_IMPORT` or `FHIR_EXPORT`.
    pub fn folder_tag(self) -> &'static str {
        match self {
            JobKind::Import => "FHIR_IMPORT",
            JobKind::Export => "FHIR_EXPORT",
        }
    }
    /// Parses [`JobKind::as_str`].
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "import" => Some(JobKind::Import),
            "export" => Some(JobKind::Export),
            _ => None,
        }
    }
}

/// Which resources an export covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "level", rename_all = "lowercase")]
pub enum ExportScope {
    /// Every resource (`StartFHIRExportJob`, `[base]/$export`).
    #[default]
    System,
    /// Every patient and the resources in their compartments (`Patient/$export`).
    Patient,
    /// The members of a Group and the resources in their compartments (`Group/{id}/$export`).
    Group {
        /// The Group's id.
        id: String,
    },
    /// One patient and the resources in their compartment: `Patient/$export` with a SMART
    /// `patient/` token, whose launch patient it is.
    Compartment {
        /// The patient's id.
        patient: String,
    },
}

impl ExportScope {
    /// The patient whose compartment this export is, for [`ExportScope::Compartment`].
    pub fn compartment_patient(&self) -> Option<&str> {
        match self {
            ExportScope::Compartment { patient } => Some(patient),
            _ => None,
        }
    }
}

/// What an export covers and how it is filtered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSpec {
    /// System, patients, or a group's patients.
    #[serde(default)]
    pub scope: ExportScope,
    /// Only these types (`_type`); all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Only versions written after this instant (`_since`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Only versions written before this instant (`_until`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// `_typeFilter` queries, `Type?params`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub type_filters: Vec<String>,
    /// The kick-off request URL of a `$export`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Whether the FHIR endpoint serves the files (a `$export` that named no destination): its
    /// manifest then links them there, behind the same authorization as any request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub served: bool,
}

/// What the plan step found, recorded for progress and finalisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Chunks in the chunk list.
    pub chunks: u64,
    /// Input files (import).
    pub files: u64,
    /// Their total size in bytes (import).
    pub bytes: u64,
}

/// One exported file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedFile {
    /// Its resource type.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// `s3://bucket/key`.
    pub url: String,
    /// Resources in it.
    pub count: u64,
}

impl ExportedFile {
    /// The file's name, the last part of its URL (`Observation-0003.ndjson`): how the FHIR
    /// endpoint names a served export's files.
    pub fn name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or_default()
    }
}

/// Everything fhirlake keeps about a job (the `record` attribute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// 32 hex digits.
    pub id: String,
    /// Import or export.
    pub kind: JobKind,
    /// Its datastore.
    pub datastore_id: String,
    /// `JobName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Lifecycle state.
    pub status: JobStatus,
    /// When it was started; an export's snapshot instant (`transactionTime`).
    pub submit_time: DateTime<Utc>,
    /// When the plan step began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_time: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    /// Import input (`s3://...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_s3_uri: Option<String>,
    /// Output location and key.
    pub output: S3Configuration,
    /// `DataAccessRoleArn`.
    pub data_access_role_arn: String,
    /// Import validation level.
    #[serde(default)]
    pub validation_level: ValidationLevel,
    /// Export scope and filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportSpec>,
    /// Set by the plan step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSummary>,
    /// Final counts, set by the finalize step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<ChunkResult>,
    /// Export output files, set by the finalize step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exported: Vec<ExportedFile>,
    /// Why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl JobRecord {
    /// A job just started: `SUBMITTED`, nothing run yet.
    pub fn submitted(
        id: String,
        kind: JobKind,
        datastore_id: &str,
        name: Option<String>,
        submit_time: DateTime<Utc>,
        output: S3Configuration,
        data_access_role_arn: &str,
    ) -> Self {
        JobRecord {
            id,
            kind,
            datastore_id: datastore_id.to_string(),
            name,
            status: JobStatus::Submitted,
            submit_time,
            run_time: None,
            end_time: None,
            input_s3_uri: None,
            output,
            data_access_role_arn: data_access_role_arn.to_string(),
            validation_level: ValidationLevel::default(),
            export: None,
            plan: None,
            totals: None,
            exported: Vec::new(),
            message: None,
        }
    }

    /// `s3://bucket/prefix/<datastoreId>-FHIR_IMPORT-<jobId>/`: the job's output folder.
    pub fn output_folder(&self) -> String {
        let base = self.output.s3_uri.trim_end_matches('/');
        format!("{base}/{}-{}-{}/", self.datastore_id, self.kind.folder_tag(), self.id)
    }
}

/// What one chunk did (import counts, or export files); sums to the job's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkResult {
    /// Lines read, empty ones included (import).
    #[serde(default)]
    pub lines: u64,
    /// Non-empty lines read (import), or resources written (export).
    #[serde(default)]
    pub scanned: u64,
    /// Lines stored as a version (import).
    #[serde(default)]
    pub imported: u64,
    /// Lines refused (import).
    #[serde(default)]
    pub customer_errors: u64,
    /// Bytes of input read (import) or output written (export).
    #[serde(default)]
    pub bytes: u64,
    /// Bytes of the lines imported (import).
    #[serde(default)]
    pub imported_bytes: u64,
    /// Files written (export).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ExportedFile>,
    /// The input file a chunk read and how many chunks that file has (import chunks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<(u64, u64)>,
    /// Input files read whole (import totals).
    #[serde(default)]
    pub files_read: u64,
    /// Input files with a refused line (import totals).
    #[serde(default)]
    pub files_with_errors: u64,
}

impl ChunkResult {
    /// (input files read whole, input files with a refused line) of an import's finished
    /// chunks.
    pub fn file_counts<'a>(results: impl Iterator<Item = &'a ChunkResult>) -> (u64, u64) {
        let mut by_file: std::collections::BTreeMap<u64, (u64, u64, bool)> = std::collections::BTreeMap::new();
        for result in results {
            if let Some((file, chunks)) = result.file {
                let entry = by_file.entry(file).or_insert((0, chunks, false));
                entry.0 += 1;
                entry.2 |= result.customer_errors > 0;
            }
        }
        let read = by_file.values().filter(|(done, chunks, _)| done >= chunks).count() as u64;
        let with_errors = by_file.values().filter(|(_, _, errors)| *errors).count() as u64;
        (read, with_errors)
    }

    /// Adds `other`'s counts (and files) to these.
    pub fn add(&mut self, other: &ChunkResult) {
        self.lines += other.lines;
        self.scanned += other.scanned;
        self.imported += other.imported;
        self.customer_errors += other.customer_errors;
        self.bytes += other.bytes;
        self.imported_bytes += other.imported_bytes;
        self.files.extend(other.files.iter().cloned());
    }
}

/// A job record as read, with its revision.
#[derive(Debug, Clone)]
pub struct StoredJob {
    /// The record.
    pub record: JobRecord,
    /// Its revision.
    pub rev: i64,
}

/// The key of a job's record.
pub fn job_key(ds: &str, kind: JobKind, job_id: &str) -> Key {
    Key::new(job_pk(ds, kind), job_id)
}

/// The partition of a datastore's jobs of one kind.
pub fn job_pk(ds: &str, kind: JobKind) -> String {
    format!("j#{ds}#{}", kind.as_str())
}

fn token_key(ds: &str, kind: JobKind, token: &str) -> Key {
    Key::new(format!("j#{ds}#tokens"), format!("{}#{token}", kind.as_str()))
}

fn active_key(ds: &str, kind: JobKind, job_id: &str) -> Key {
    Key::new(ACTIVE_PK, format!("{ds}#{}#{job_id}", kind.as_str()))
}

const ACTIVE_PK: &str = "j#active";

fn ledger_key(ds: &str, job_id: &str, chunk: u64) -> Key {
    Key::new(format!("jl#{ds}#{job_id}"), format!("{chunk:06}"))
}

fn corrupt(key: &Key, what: &str) -> CoreError {
    CoreError::Internal(format!("job item {} has {what}", key.sk))
}

impl StoredJob {
    fn to_item(&self) -> CoreResult<Item> {
        let record = serde_json::to_string(&self.record).map_err(|_| CoreError::Internal("a job record does not serialise".into()))?;
        Ok(Item::new(job_key(&self.record.datastore_id, self.record.kind, &self.record.id))
            .with("record", AttrValue::S(record))
            .with("rev", AttrValue::N(self.rev)))
    }

    fn from_item(item: &Item) -> CoreResult<Self> {
        let record = item.get_str("record").ok_or_else(|| corrupt(&item.key, "no record"))?;
        let record = serde_json::from_str(record).map_err(|_| corrupt(&item.key, "an unreadable record"))?;
        let rev = item.get_i64("rev").ok_or_else(|| corrupt(&item.key, "no revision"))?;
        Ok(StoredJob { record, rev })
    }
}

/// The job store over the item table.
#[derive(Clone)]
pub struct JobStore {
    table: std::sync::Arc<dyn ItemTable>,
}

/// How a create with a client token went.
pub enum Created {
    /// The job was recorded.
    New,
    /// The token was used before: the job it made, and whether the request was the same.
    Replayed(String, bool),
}

impl JobStore {
    /// The store over `table`.
    pub fn new(table: std::sync::Arc<dyn ItemTable>) -> Self {
        JobStore { table }
    }

    /// Records a new job (and its token and active marker) in one transaction.
    pub async fn create(&self, record: &JobRecord, token: Option<(&str, &str)>) -> CoreResult<Created> {
        let stored = StoredJob { record: record.clone(), rev: 1 };
        let (ds, kind, id) = (&record.datastore_id, record.kind, &record.id);
        let mut writes = vec![
            Write::Put { item: stored.to_item()?, condition: Condition::NotExists },
            Write::Put { item: Item::new(active_key(ds, kind, id)), condition: Condition::Always },
        ];
        if let Some((token, sha)) = token {
            let item = Item::new(token_key(ds, kind, token))
                .with("job_id", AttrValue::S(id.clone()))
                .with("request_sha256", AttrValue::S(sha.to_string()));
            writes.push(Write::Put { item, condition: Condition::NotExists });
        }
        match self.table.transact_write(writes).await {
            Ok(()) => Ok(Created::New),
            Err(e) if e.is_condition_failure() => match token {
                Some((token, sha)) => match self.token(ds, kind, token).await? {
                    Some((job_id, recorded)) => Ok(Created::Replayed(job_id, recorded == sha)),
                    None => Err(CoreError::Conflict("the job id is taken; retry".into())),
                },
                None => Err(CoreError::Conflict("the job id is taken; retry".into())),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// The job a client token made, and the fingerprint of its request.
    pub async fn token(&self, ds: &str, kind: JobKind, token: &str) -> CoreResult<Option<(String, String)>> {
        let Some(item) = self.table.get(&token_key(ds, kind, token)).await? else { return Ok(None) };
        let job_id = item.get_str("job_id").ok_or_else(|| corrupt(&item.key, "no job id"))?;
        let sha = item.get_str("request_sha256").ok_or_else(|| corrupt(&item.key, "no fingerprint"))?;
        Ok(Some((job_id.to_string(), sha.to_string())))
    }

    /// Reads a job.
    pub async fn get(&self, ds: &str, kind: JobKind, job_id: &str) -> CoreResult<Option<StoredJob>> {
        match self.table.get(&job_key(ds, kind, job_id)).await? {
            Some(item) => StoredJob::from_item(&item).map(Some),
            None => Ok(None),
        }
    }

    /// Every job of one kind of a datastore.
    pub async fn all(&self, ds: &str, kind: JobKind) -> CoreResult<Vec<JobRecord>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.table.query(&Query::partition(job_pk(ds, kind), 500).after(after)).await?;
            for item in &page.items {
                out.push(StoredJob::from_item(item)?.record);
            }
            match page.last_evaluated {
                Some(sk) => after = Some(sk),
                None => return Ok(out),
            }
        }
    }

    /// Applies `change` to the job's record with optimistic concurrency, retrying on a lost
    /// race; `change` returning `Ok(false)` leaves the record as it is. Returns the record as
    /// stored afterwards.
    pub async fn modify<F>(&self, ds: &str, kind: JobKind, job_id: &str, mut change: F) -> CoreResult<JobRecord>
    where
        F: FnMut(&mut JobRecord) -> CoreResult<bool>,
    {
        for attempt in 0..32 {
            crate::resources::pause_before_retry(attempt).await;
            let Some(current) = self.get(ds, kind, job_id).await? else {
                return Err(CoreError::NotFound(format!("job {job_id}")));
            };
            let mut next = current.record.clone();
            if !change(&mut next)? {
                return Ok(current.record);
            }
            let terminal = next.status.is_terminal();
            let stored = StoredJob { record: next, rev: current.rev + 1 };
            match self.table.put(stored.to_item()?, Condition::Equals("rev".into(), AttrValue::N(current.rev))).await {
                Ok(()) => {
                    if terminal {
                        self.table.delete(&active_key(ds, kind, job_id), Condition::Always).await?;
                    }
                    return Ok(stored.record);
                }
                Err(e) if e.is_condition_failure() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::Internal("a job record is too contended to update".into()))
    }

    /// Jobs not yet terminal, as (datastore, kind, job id).
    pub async fn active(&self) -> CoreResult<Vec<(String, JobKind, String)>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.table.query(&Query::partition(ACTIVE_PK, 500).after(after)).await?;
            for item in &page.items {
                let mut parts = item.key.sk.splitn(3, '#');
                if let (Some(ds), Some(kind), Some(id)) = (parts.next(), parts.next().and_then(JobKind::parse), parts.next()) {
                    out.push((ds.to_string(), kind, id.to_string()));
                }
            }
            match page.last_evaluated {
                Some(sk) => after = Some(sk),
                None => return Ok(out),
            }
        }
    }

    /// Marks a chunk started; returns true when it had been started (or finished) before.
    pub async fn start_chunk(&self, ds: &str, job_id: &str, chunk: u64) -> CoreResult<bool> {
        let item = Item::new(ledger_key(ds, job_id, chunk)).with("state", AttrValue::S("started".into()));
        match self.table.put(item, Condition::NotExists).await {
            Ok(()) => Ok(false),
            Err(e) if e.is_condition_failure() => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// The result of a finished chunk.
    pub async fn chunk_result(&self, ds: &str, job_id: &str, chunk: u64) -> CoreResult<Option<ChunkResult>> {
        let Some(item) = self.table.get(&ledger_key(ds, job_id, chunk)).await? else { return Ok(None) };
        ledger_result(&item)
    }

    /// Records a chunk finished with `result`.
    pub async fn finish_chunk(&self, ds: &str, job_id: &str, chunk: u64, result: &ChunkResult) -> CoreResult<()> {
        let json = serde_json::to_string(result).map_err(|_| CoreError::Internal("a chunk result does not serialise".into()))?;
        let item = Item::new(ledger_key(ds, job_id, chunk)).with("state", AttrValue::S("done".into())).with("result", AttrValue::S(json));
        self.table.put(item, Condition::Always).await?;
        Ok(())
    }

    /// The results of every finished chunk, by chunk number.
    pub async fn chunk_results(&self, ds: &str, job_id: &str) -> CoreResult<Vec<(u64, ChunkResult)>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let query = Query::partition(format!("jl#{ds}#{job_id}"), 500).range(SkRange::All).after(after);
            let page = self.table.query(&query).await?;
            for item in &page.items {
                if let (Ok(chunk), Some(result)) = (item.key.sk.parse::<u64>(), ledger_result(item)?) {
                    out.push((chunk, result));
                }
            }
            match page.last_evaluated {
                Some(sk) => after = Some(sk),
                None => return Ok(out),
            }
        }
    }
}

fn ledger_result(item: &Item) -> CoreResult<Option<ChunkResult>> {
    if item.get_str("state") != Some("done") {
        return Ok(None);
    }
    let json = item.get_str("result").ok_or_else(|| corrupt(&item.key, "no result"))?;
    serde_json::from_str(json).map(Some).map_err(|_| corrupt(&item.key, "an unreadable result"))
}
