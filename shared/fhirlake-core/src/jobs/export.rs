//! The export steps: plan (the chunk list), chunk (resources as they were at the job's
//! snapshot instant, to NDJSON files), finalize (the list of files).
//!
//! Output, under the job folder `<S3Uri>/<datastoreId>-FHIR_EXPORT-<jobId>/`: `<Type>/<Type>-<chunk>.ndjson`,
//! one resource per line, only for types a chunk found resources of.
//!
//! ## Scopes
//! - **System**: one chunk per stored type and id range ([`ID_RANGES`] by the id's first
//!   character).
//! - **Patient** (`Patient/$export`): one chunk per id range of the Patient listing. A chunk
//!   exports its patients and the resources in their Patient compartments.
//! - **Group** (`Group/{id}/$export`): the Group's member patients at the snapshot instant
//!   (`member.entity` references to Patients), 200 per chunk, exported the same way.
//!
//! A resource in the compartments of several patients is exported once, by the chunk of the
//! smallest patient id among its in-scope owners: for Group exports the group's members, for
//! Patient exports the patients that exist.
//!
//! ## The snapshot
//! The snapshot instant is the job's submit time (`transactionTime`). A current version
//! written at or before the instant is exported as it is. For one written after, and for every
//! resource the history shows changed after the instant (deleted ones included), the chunk
//! exports the newest version at or before the instant, unless that version is a deletion.
//! Writes during the export therefore never tear it. A chunk run again writes the same files.
//!
//! ## Filters
//! `_type` limits the types, and `_since`/`_until` the versions' `lastUpdated`. A
//! `_typeFilter` (`Type?params`) keeps only the resources of its type that match its
//! criteria. Several filters of one type are alternatives. Filters take the search
//! parameters of their type, without chains or `_has`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use fhirlake_fhir::search::query::{self, Handling};
use fhirlake_fhir::search::{matcher, values, Criterion};
use fhirlake_ports::{ObjectStore, ObjectWriter, Query, SkRange};
use serde_json::Value;

use super::chunks::{Chunk, ExportChunk};
use super::record::{ChunkResult, ExportScope, ExportSpec, ExportedFile, JobRecord, PlanSummary};
use super::s3uri::S3Location;
use super::{JobFailure, JobSteps};
use crate::datastores::ActiveDatastore;
use crate::index::{self, EntryRef};
use crate::layout;
use crate::resources::{HistoryQuery, HistoryScope, StoredVersion};
use crate::{CoreError, CoreResult};

/// How many id ranges a type is cut into: ids starting with `..0`, `1`, …, `9`–`` ` ``,
/// `a`, …, `e`, and `f..` (UUIDs spread evenly over them).
pub const ID_RANGES: u32 = 16;
const BOUNDARIES: [u8; 15] = *b"123456789abcdef";
/// Items read per query.
const PAGE: usize = 1000;
/// Group members per chunk.
const GROUP_CHUNK: usize = 200;

/// The listing's sort-key range of id range `range`.
fn sk_range(range: u32) -> SkRange {
    let below = |b: u8| format!("{}\x7f", (b - 1) as char);
    match range as usize {
        0 => SkRange::AtMost(below(BOUNDARIES[0])),
        r if r >= BOUNDARIES.len() => SkRange::AtLeast((BOUNDARIES[BOUNDARIES.len() - 1] as char).to_string()),
        r => SkRange::Between((BOUNDARIES[r - 1] as char).to_string(), below(BOUNDARIES[r])),
    }
}

/// The id range an id falls in.
fn range_of(id: &str) -> u32 {
    let first = id.as_bytes().first().copied().unwrap_or(0);
    BOUNDARIES.iter().take_while(|b| first >= **b).count() as u32
}

fn storage(e: impl Into<CoreError>) -> JobFailure {
    JobFailure::Storage(e.into())
}

/// Checks an export's filters (at kick-off, so a bad one is a 400).
///
/// Errors: `Invalid` for an unknown type, a malformed `_typeFilter`, or one on a type `_type`
/// leaves out.
pub fn check_spec(spec: &ExportSpec) -> CoreResult<()> {
    for t in &spec.types {
        crate::resources::check_type(t).map_err(|_| CoreError::Invalid(format!("_type names an unknown resource type {t}")))?;
    }
    type_filters(spec).map(|_| ())
}

/// The parsed `_typeFilter`s by type.
fn type_filters(spec: &ExportSpec) -> CoreResult<HashMap<String, Vec<Vec<Criterion>>>> {
    let mut filters: HashMap<String, Vec<Vec<Criterion>>> = HashMap::new();
    for filter in &spec.type_filters {
        let (resource_type, params) = filter.split_once('?').unwrap_or((filter.as_str(), ""));
        crate::resources::check_type(resource_type)
            .map_err(|_| CoreError::Invalid(format!("_typeFilter names an unknown resource type {resource_type}")))?;
        if !spec.types.is_empty() && !spec.types.iter().any(|t| t == resource_type) {
            return Err(CoreError::Invalid(format!("_typeFilter on {resource_type}, which _type leaves out")));
        }
        let params = parse_query_string(params);
        let request = query::parse(Some(resource_type), &params, Handling::Strict)
            .map_err(|e| CoreError::Invalid(format!("_typeFilter {resource_type}: {e}")))?;
        let criteria = request.criteria;
        if criteria.is_empty() || criteria.iter().any(|c| !c.path.is_empty()) {
            return Err(CoreError::Invalid(format!("_typeFilter {resource_type} needs criteria without chains or _has")));
        }
        filters.entry(resource_type.to_string()).or_default().push(criteria);
    }
    Ok(filters)
}

/// `a=1&b=x%2Cy` as decoded pairs.
fn parse_query_string(params: &str) -> Vec<(String, String)> {
    params
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            (decode(k), decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The chunk list of an export.
pub(super) async fn plan(steps: &JobSteps, ds: &ActiveDatastore, job: &JobRecord) -> Result<(Vec<Chunk>, PlanSummary), JobFailure> {
    let output = S3Location::parse("S3Uri", &job.output.s3_uri).map_err(|e| JobFailure::Customer(e.to_string()))?;
    steps.open_bucket(&output.bucket, Some(&job.output.kms_key_id), "output").await?;
    let spec = job.export.clone().unwrap_or_default();
    let mut chunks = Vec::new();
    let chunk = |number: usize, resource_type: &str, range: u32, patients: Vec<String>| {
        Chunk::Export(ExportChunk { number: number as u64, resource_type: resource_type.to_string(), range, patients })
    };
    match &spec.scope {
        ExportScope::System => {
            let mut types = steps.resources.stored_types(ds).await.map_err(JobFailure::Storage)?;
            if !spec.types.is_empty() {
                types.retain(|t| spec.types.contains(t));
            }
            types.sort();
            for resource_type in types {
                for range in 0..ID_RANGES {
                    chunks.push(chunk(chunks.len(), &resource_type, range, Vec::new()));
                }
            }
        }
        ExportScope::Patient => {
            for range in 0..ID_RANGES {
                chunks.push(chunk(chunks.len(), "Patient", range, Vec::new()));
            }
        }
        ExportScope::Group { id } => {
            let members = group_members(steps, ds, id, job.submit_time).await?;
            let list = serde_json::to_vec(&members).map_err(|_| storage(CoreError::Internal("a member list does not serialise".into())))?;
            steps.backends.objects.put(&members_key(&job.datastore_id, &job.id), Bytes::from(list)).await.map_err(storage)?;
            for patients in members.chunks(GROUP_CHUNK) {
                chunks.push(chunk(chunks.len(), "Patient", 0, patients.to_vec()));
            }
        }
        ExportScope::Compartment { patient } => chunks.push(chunk(0, "Patient", 0, vec![patient.clone()])),
    }
    let summary = PlanSummary { chunks: chunks.len() as u64, files: 0, bytes: 0 };
    Ok((chunks, summary))
}

fn members_key(ds: &str, job_id: &str) -> String {
    format!("jobs/{ds}/{job_id}/members.json")
}

/// The Group's member patient ids at `at`, sorted.
async fn group_members(steps: &JobSteps, ds: &ActiveDatastore, group_id: &str, at: DateTime<Utc>) -> Result<Vec<String>, JobFailure> {
    let Some(group) = version_at(steps, ds, "Group", group_id, at).await?.filter(|v| !v.is_deleted()) else {
        return Err(JobFailure::Customer(format!("Group/{group_id} does not exist")));
    };
    let body: Value = group.body.as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
    let mut members: BTreeSet<String> = BTreeSet::new();
    for member in body.get("member").and_then(Value::as_array).into_iter().flatten() {
        if let Some(id) = member.pointer("/entity/reference").and_then(Value::as_str).and_then(|r| r.strip_prefix("Patient/")) {
            if fhirlake_fhir::resource::is_valid_id(id) {
                members.insert(id.to_string());
            }
        }
    }
    Ok(members.into_iter().collect())
}

/// Writes one chunk's files.
pub(super) async fn run_chunk(
    steps: &JobSteps,
    ds: &ActiveDatastore,
    job: &JobRecord,
    chunk: &ExportChunk,
) -> Result<ChunkResult, JobFailure> {
    let spec = job.export.clone().unwrap_or_default();
    let filters = type_filters(&spec).map_err(|e| JobFailure::Customer(e.to_string()))?;
    let folder = S3Location::parse("S3Uri", &job.output_folder()).map_err(|e| JobFailure::Customer(e.to_string()))?;
    let output = steps.open_output(job).await?;
    let mut files = Files { output, folder, chunk: chunk.number, by_type: BTreeMap::new(), result: ChunkResult::default() };
    let filter = Keep { spec: &spec, filters: &filters, now: steps.backends.clock.now().timestamp_micros() };
    let at = job.submit_time;
    match &spec.scope {
        ExportScope::System => {
            let mut snapshot = RangeSnapshot::new(&chunk.resource_type, chunk.range, at);
            while let Some(page) = snapshot.next_page(steps, ds).await? {
                for version in page {
                    if filter.keeps(&version) {
                        files.write(&version).await?;
                    }
                }
            }
        }
        ExportScope::Patient => {
            let mut patients = Vec::new();
            let mut snapshot = RangeSnapshot::new("Patient", chunk.range, at);
            while let Some(page) = snapshot.next_page(steps, ds).await? {
                patients.extend(page);
            }
            compartments(steps, ds, at, patients, &Owners::Existing(HashMap::new()), &filter, &mut files).await?;
        }
        ExportScope::Group { .. } => {
            let list = steps.backends.objects.get(&members_key(&job.datastore_id, &job.id)).await.map_err(storage)?;
            let members: HashSet<String> = serde_json::from_slice::<Vec<String>>(&list)
                .map_err(|_| storage(CoreError::Internal("a member list is unreadable".into())))?
                .into_iter()
                .collect();
            let mut patients = Vec::new();
            for id in &chunk.patients {
                if let Some(v) = version_at(steps, ds, "Patient", id, at).await?.filter(|v| !v.is_deleted()) {
                    patients.push(v);
                }
            }
            compartments(steps, ds, at, patients, &Owners::Members(members), &filter, &mut files).await?;
        }
        ExportScope::Compartment { patient } => {
            let patients: Vec<_> = version_at(steps, ds, "Patient", patient, at).await?.filter(|v| !v.is_deleted()).into_iter().collect();
            let owners = Owners::Members(HashSet::from([patient.clone()]));
            compartments(steps, ds, at, patients, &owners, &filter, &mut files).await?;
        }
    }
    files.finish().await
}

/// Which owners of a resource are in the export's scope.
enum Owners {
    /// Patients that exist at the snapshot (cached as they are looked up).
    Existing(HashMap<String, bool>),
    /// A group's members.
    Members(HashSet<String>),
}

/// The export's filters.
struct Keep<'a> {
    spec: &'a ExportSpec,
    filters: &'a HashMap<String, Vec<Vec<Criterion>>>,
    now: i64,
}

impl Keep<'_> {
    fn type_wanted(&self, resource_type: &str) -> bool {
        self.spec.types.is_empty() || self.spec.types.iter().any(|t| t == resource_type)
    }

    fn keeps(&self, v: &StoredVersion) -> bool {
        if v.is_deleted() || !self.type_wanted(&v.resource_type) {
            return false;
        }
        if self.spec.since.is_some_and(|s| v.last_updated <= s) || self.spec.until.is_some_and(|u| v.last_updated > u) {
            return false;
        }
        let Some(filters) = self.filters.get(&v.resource_type) else { return true };
        let Some(body) = v.body.as_deref().and_then(|b| serde_json::from_slice::<Value>(b).ok()) else { return false };
        let resource_type = v.resource_type.as_str();
        filters
            .iter()
            .any(|criteria| criteria.iter().all(|c| matcher::matches_at(c, &values::extract(resource_type, c.param, &body), self.now)))
    }
}

/// The chunk's output files, one per type.
struct Files {
    output: std::sync::Arc<dyn ObjectStore>,
    folder: S3Location,
    chunk: u64,
    by_type: BTreeMap<String, TypeFile>,
    result: ChunkResult,
}

/// One type's file: buffered lines, and the multipart upload once it outgrows one part.
struct TypeFile {
    key: String,
    buffer: Vec<u8>,
    upload: Option<(fhirlake_ports::Upload, Vec<fhirlake_ports::UploadedPart>)>,
    count: u64,
}

impl Files {
    /// Appends a resource to its type's file (buffered; parts of 8 MiB are uploaded as they fill).
    async fn write(&mut self, version: &StoredVersion) -> Result<(), JobFailure> {
        let Some(body) = &version.body else { return Ok(()) };
        let (folder, chunk) = (self.folder.folder(), self.chunk);
        let file = self.by_type.entry(version.resource_type.clone()).or_insert_with(|| TypeFile {
            key: format!("{folder}{t}/{t}-{chunk:04}.ndjson", t = version.resource_type),
            buffer: Vec::new(),
            upload: None,
            count: 0,
        });
        file.buffer.extend_from_slice(body);
        file.buffer.push(b'\n');
        file.count += 1;
        self.result.scanned += 1;
        self.result.bytes += body.len() as u64 + 1;
        if file.buffer.len() >= ObjectWriter::DEFAULT_PART_SIZE {
            let part = Bytes::from(std::mem::take(&mut file.buffer));
            if file.upload.is_none() {
                file.upload = Some((self.output.create_upload(&file.key).await.map_err(storage)?, Vec::new()));
            }
            if let Some((upload, parts)) = &mut file.upload {
                let number = parts.len() as u32 + 1;
                parts.push(self.output.upload_part(upload, number, part).await.map_err(storage)?);
            }
        }
        Ok(())
    }

    /// Completes every file and lists them.
    async fn finish(mut self) -> Result<ChunkResult, JobFailure> {
        for (resource_type, file) in std::mem::take(&mut self.by_type) {
            match file.upload {
                None => self.output.put(&file.key, Bytes::from(file.buffer)).await.map_err(storage)?,
                Some((upload, mut parts)) => {
                    if !file.buffer.is_empty() {
                        let number = parts.len() as u32 + 1;
                        parts.push(self.output.upload_part(&upload, number, Bytes::from(file.buffer)).await.map_err(storage)?);
                    }
                    self.output.complete_upload(&upload, &parts).await.map_err(storage)?;
                }
            }
            self.result.files.push(ExportedFile { resource_type, url: self.folder.uri_of(&file.key), count: file.count });
        }
        Ok(self.result)
    }
}

/// The versions at an instant of one type's resources in one id range, a page at a time:
/// first the listing (current versions written by then), then the resources changed since.
struct RangeSnapshot {
    resource_type: String,
    range: u32,
    at: DateTime<Utc>,
    after: Option<String>,
    listed: bool,
    changed: BTreeSet<String>,
    done: bool,
}

impl RangeSnapshot {
    fn new(resource_type: &str, range: u32, at: DateTime<Utc>) -> Self {
        RangeSnapshot { resource_type: resource_type.into(), range, at, after: None, listed: false, changed: BTreeSet::new(), done: false }
    }

    async fn next_page(&mut self, steps: &JobSteps, ds: &ActiveDatastore) -> Result<Option<Vec<StoredVersion>>, JobFailure> {
        if self.done {
            return Ok(None);
        }
        if !self.listed {
            let query = Query::partition(layout::listing_pk(&ds.id, &self.resource_type), PAGE)
                .range(sk_range(self.range))
                .after(self.after.clone());
            let page = steps.backends.table.query(&query).await.map_err(storage)?;
            let entries: Vec<EntryRef> = page.items.iter().filter_map(EntryRef::from_item).collect();
            let versions = steps.search.current_versions(ds, &self.resource_type, entries).await.map_err(JobFailure::Storage)?;
            let mut out = Vec::with_capacity(versions.len());
            for version in versions {
                if version.last_updated > self.at {
                    self.changed.insert(version.id.clone());
                } else {
                    out.push(version);
                }
            }
            match page.last_evaluated {
                Some(sk) => self.after = Some(sk),
                None => {
                    self.listed = true;
                    let changed = changed_since(steps, ds, Some(&self.resource_type), self.at).await?;
                    self.changed.extend(changed.into_iter().filter(|(_, id)| range_of(id) == self.range).map(|(_, id)| id));
                }
            }
            return Ok(Some(out));
        }
        self.done = true;
        let mut out = Vec::new();
        for id in std::mem::take(&mut self.changed) {
            if let Some(version) = version_at(steps, ds, &self.resource_type, &id, self.at).await?.filter(|v| !v.is_deleted()) {
                out.push(version);
            }
        }
        Ok(Some(out))
    }
}

/// (type, id) of every resource with a version written after `at`: of one type, or of all.
async fn changed_since(
    steps: &JobSteps,
    ds: &ActiveDatastore,
    resource_type: Option<&str>,
    at: DateTime<Utc>,
) -> Result<BTreeSet<(String, String)>, JobFailure> {
    let floor = layout::history_sk_floor(at.timestamp_micros() + 1);
    let mut changed = BTreeSet::new();
    for shard in 0..layout::HISTORY_SHARDS {
        let pk = match resource_type {
            Some(t) => layout::type_history_pk(&ds.id, t, shard),
            None => layout::system_history_pk(&ds.id, shard),
        };
        let mut after = None;
        loop {
            let query = Query::partition(pk.clone(), PAGE).range(SkRange::AtLeast(floor.clone())).after(after);
            let page = steps.backends.table.query(&query).await.map_err(storage)?;
            for item in &page.items {
                if let Some(h) = layout::parse_history_sk(&item.key.sk) {
                    changed.insert((h.resource_type.to_string(), h.id.to_string()));
                }
            }
            match page.last_evaluated {
                Some(sk) => after = Some(sk),
                None => break,
            }
        }
    }
    Ok(changed)
}

/// Exports `patients` and the resources in their compartments, each resource once.
async fn compartments(
    steps: &JobSteps,
    ds: &ActiveDatastore,
    at: DateTime<Utc>,
    patients: Vec<StoredVersion>,
    owners: &Owners,
    filter: &Keep<'_>,
    files: &mut Files,
) -> Result<(), JobFailure> {
    let mut owners = match owners {
        Owners::Existing(cache) => Owners::Existing(cache.clone()),
        Owners::Members(members) => Owners::Members(members.clone()),
    };
    let in_chunk: BTreeSet<String> = patients.iter().map(|p| p.id.clone()).collect();
    if let Owners::Existing(cache) = &mut owners {
        cache.extend(in_chunk.iter().map(|id| (id.clone(), true)));
    }
    for patient in &patients {
        if filter.keeps(patient) {
            files.write(patient).await?;
        }
    }
    // Current versions written by the instant, from each patient's compartment partition.
    for patient in &patients {
        let mut by_type: BTreeMap<String, Vec<EntryRef>> = BTreeMap::new();
        let mut after = None;
        loop {
            let query = Query::partition(layout::compartment_pk(&ds.id, "Patient", &patient.id), PAGE).after(after);
            let page = steps.backends.table.query(&query).await.map_err(storage)?;
            for item in &page.items {
                if let (Some(t), Some(entry)) = (layout::compartment_member_type(&item.key.sk), EntryRef::from_item(item)) {
                    if t != "Patient" && filter.type_wanted(t) {
                        by_type.entry(t.to_string()).or_default().push(entry);
                    }
                }
            }
            match page.last_evaluated {
                Some(sk) => after = Some(sk),
                None => break,
            }
        }
        for (resource_type, entries) in by_type {
            for version in steps.search.current_versions(ds, &resource_type, entries).await.map_err(JobFailure::Storage)? {
                if version.last_updated <= at
                    && exported_by(steps, ds, at, &version, &patient.id, &mut owners).await?
                    && filter.keeps(&version)
                {
                    files.write(&version).await?;
                }
            }
        }
    }
    // Resources changed after the instant: their versions at the instant.
    for (resource_type, id) in changed_since(steps, ds, None, at).await? {
        if resource_type == "Patient" || !filter.type_wanted(&resource_type) {
            continue;
        }
        let Some(version) = version_at(steps, ds, &resource_type, &id, at).await?.filter(|v| !v.is_deleted()) else { continue };
        let body: Value = version.body.as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
        let of = index::compartment_owners_of("Patient", &resource_type, &body);
        if let Some(owner) = of.iter().find(|o| in_chunk.contains(*o)) {
            if exported_by(steps, ds, at, &version, owner, &mut owners).await? && filter.keeps(&version) {
                files.write(&version).await?;
            }
        }
    }
    Ok(())
}

/// Whether `patient` is the owner that exports `version`: the smallest id among its in-scope
/// Patient compartment owners.
async fn exported_by(
    steps: &JobSteps,
    ds: &ActiveDatastore,
    at: DateTime<Utc>,
    version: &StoredVersion,
    patient: &str,
    owners: &mut Owners,
) -> Result<bool, JobFailure> {
    let body: Value = version.body.as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
    let of = index::compartment_owners_of("Patient", &version.resource_type, &body);
    if !of.contains(patient) {
        return Ok(false);
    }
    for owner in of.iter().take_while(|o| o.as_str() < patient) {
        let in_scope = match owners {
            Owners::Members(members) => members.contains(owner),
            Owners::Existing(cache) => match cache.get(owner) {
                Some(known) => *known,
                None => {
                    let exists = version_at(steps, ds, "Patient", owner, at).await?.is_some_and(|v| !v.is_deleted());
                    cache.insert(owner.clone(), exists);
                    exists
                }
            },
        };
        if in_scope {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The newest version written at or before `at`, if any.
async fn version_at(
    steps: &JobSteps,
    ds: &ActiveDatastore,
    resource_type: &str,
    id: &str,
    at: DateTime<Utc>,
) -> Result<Option<StoredVersion>, JobFailure> {
    let mut query = HistoryQuery { count: 100, since: None, cursor: None };
    loop {
        let page = match steps.resources.history(ds, HistoryScope::Instance(resource_type, id), &query).await {
            Ok(page) => page,
            Err(CoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(JobFailure::Storage(e)),
        };
        if let Some(version) = page.entries.into_iter().find(|v| v.last_updated <= at) {
            return Ok(Some(version));
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges_cover_every_id_once_in_listing_order() {
        let ids = ["-a", ".b", "0", "0zz", "1", "19", "9", "A", "Z", "_", "`", "a", "b0", "ef", "f", "g", "z-z"];
        for id in ids {
            let sk = layout::entry_sk(id, "00ff");
            let hits: Vec<u32> = (0..ID_RANGES).filter(|r| sk_range(*r).contains(&sk)).collect();
            assert_eq!(hits, vec![range_of(id)], "{id}");
        }
        assert_eq!(range_of("0"), 0);
        assert_eq!(range_of("f"), 15);
        let mut sorted: Vec<&str> = ids.to_vec();
        sorted.sort_unstable();
        let ranges: Vec<u32> = sorted.iter().map(|id| range_of(id)).collect();
        assert!(ranges.windows(2).all(|w| w[0] <= w[1]), "ranges follow key order");
    }

    #[test]
    fn type_filters_are_parsed_and_checked() {
        let spec = |types: &[&str], filters: &[&str]| ExportSpec {
            types: types.iter().map(|t| t.to_string()).collect(),
            type_filters: filters.iter().map(|t| t.to_string()).collect(),
            ..ExportSpec::default()
        };
        let parsed =
            type_filters(&spec(&[], &["Observation?code=http%3A%2F%2Floinc.org%7C8867-4&status=final", "Observation?status=amended"]))
                .expect("valid");
        assert_eq!(parsed["Observation"].len(), 2);
        assert_eq!(parsed["Observation"][0].len(), 2);
        for bad in [
            spec(&[], &["Unicorn?x=1"]),
            spec(&["Patient"], &["Observation?status=final"]),
            spec(&[], &["Observation?nope=1"]),
            spec(&[], &["Observation?subject.name=x"]),
            spec(&[], &["Observation"]),
            spec(&["Nope"], &[]),
        ] {
            assert!(check_spec(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_query_string("a=1&b=x%2Cy+z"), vec![("a".into(), "1".into()), ("b".into(), "x,y z".into())]);
    }
}
