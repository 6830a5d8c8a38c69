//! The import steps: plan (list the input, cut it into line-aligned chunks), chunk (read,
//! check and store each line as a version, stage its success and failure lines), finalize
//! (merge the staged lines into HealthLake's layout with file line numbers, write the manifest).
//!
//! Output, under the job folder `<S3Uri>/<datastoreId>-FHIR_IMPORT-<jobId>/`:
//!
//! ```text
//! manifest.json             HealthLake's counters
//! SUCCESS/<name>            {"lineId":n,"UpdateResourceResponse":{"jsonBlob":{resourceType,id,meta},"statusCode":201|200}}
//! FAILURE/<name>            {"lineId":n,"inputFile":"s3://…","UpdateResourceResponse":{"jsonBlob":<OperationOutcome>,"statusCode":400}}
//! ```
//!
//! `<name>` is the input object's key relative to the input prefix (without `.gz`); `lineId`
//! is the 1-based line in that file. While the job runs, chunks stage their lines under
//! `.staging/` in the same folder; finalize removes them.
//!
//! ## Idempotency
//! A chunk marks itself started in the ledger before it writes. Every version it writes
//! carries its source: a digest of (job, chunk, line). A resource without an id gets one
//! derived from the same digest. A retried chunk (ledger: started, not done) first reads
//! the history since the job began of every resource it names, and skips the lines whose
//! source is already there. So a chunk killed at any point and run again writes each line
//! exactly once. Its staged output is rewritten whole, and the ledger records its counts
//! once it is done.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;

use bytes::Bytes;
use fhirlake_fhir::outcome::{operation_outcome, Issue};
use fhirlake_fhir::registry;
use fhirlake_ports::{ObjectStore, ObjectWriter, StorageErrorKind};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::chunks::{Chunk, ImportChunk};
use super::record::{ChunkResult, JobRecord, PlanSummary};
use super::s3uri::S3Location;
use super::{JobFailure, JobSteps};
use crate::bulk::BulkResource;
use crate::datastores::ActiveDatastore;
use crate::resources::{HistoryQuery, HistoryScope, StoredVersion};
use crate::CoreError;

/// Most resources handed to one bulk write: large batches share commits, and on the embedded
/// store each batch's entries become one sorted run, so fewer, larger runs mean fewer merges
/// (about a chunk of 8 MiB: its lines are parsed at once anyway). A chunk's lines are cut into
/// batches of equal size, none larger than this.
const WRITE_BATCH: usize = 16384;
/// Largest gzip input, decompressed (a gzip file is read whole, in memory).
const MAX_GZIP_BYTES: u64 = 1 << 30;
/// Bytes read at a time past a chunk's end, to finish its last line.
const TAIL_READ: u64 = 256 * 1024;
/// Input names the import reads; others under the prefix are ignored.
const INPUT_SUFFIXES: [&str; 4] = [".ndjson", ".json", ".ndjson.gz", ".json.gz"];

/// Lists the input and cuts it into chunks of about `chunk_bytes`.
pub(super) async fn plan(steps: &JobSteps, job: &JobRecord) -> Result<(Vec<Chunk>, PlanSummary), JobFailure> {
    let uri = job.input_s3_uri.as_deref().ok_or_else(|| JobFailure::Customer("the job has no input".into()))?;
    let input = S3Location::parse("InputDataConfig.S3Uri", uri).map_err(|e| JobFailure::Customer(e.to_string()))?;
    let store = steps.open_bucket(&input.bucket, None, "input").await?;
    let files = list_input(store.as_ref(), &input).await?;
    if files.is_empty() {
        return Err(JobFailure::Customer(format!("{uri} holds no .ndjson or .json files")));
    }
    // The output bucket must exist before any chunk runs.
    let output = S3Location::parse("S3Uri", &job.output.s3_uri).map_err(|e| JobFailure::Customer(e.to_string()))?;
    steps.open_bucket(&output.bucket, Some(&job.output.kms_key_id), "output").await?;

    let chunk_bytes = steps.chunk_bytes.max(1);
    let mut chunks = Vec::new();
    let mut summary = PlanSummary { chunks: 0, files: files.len() as u64, bytes: 0 };
    for (file, (key, size)) in files.iter().enumerate() {
        summary.bytes += size;
        let gzip = key.ends_with(".gz");
        let name = output_name(&input, key);
        let parts = if gzip || *size == 0 { 1 } else { size.div_ceil(chunk_bytes) };
        for part in 0..parts {
            let (start, end) = if gzip { (0, *size) } else { (part * chunk_bytes, ((part + 1) * chunk_bytes).min(*size)) };
            chunks.push(Chunk::Import(ImportChunk {
                number: chunks.len() as u64,
                file: file as u64,
                file_chunks: parts,
                part,
                key: key.clone(),
                name: name.clone(),
                size: *size,
                start,
                end,
                gzip,
            }));
        }
    }
    summary.chunks = chunks.len() as u64;
    Ok((chunks, summary))
}

/// The input files: the object the URI names, or every input object under it as a prefix.
async fn list_input(store: &dyn ObjectStore, input: &S3Location) -> Result<Vec<(String, u64)>, JobFailure> {
    if !input.key.is_empty() && !input.key.ends_with('/') {
        match store.head(&input.key).await {
            Ok(meta) => return Ok(vec![(meta.key, meta.size)]),
            Err(e) if e.kind == StorageErrorKind::NotFound => {}
            Err(e) => return Err(JobFailure::Storage(e.into())),
        }
    }
    let prefix = input.folder();
    let mut files = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(&prefix, after.as_deref(), 1000).await.map_err(|e| JobFailure::Storage(e.into()))?;
        for object in page.objects {
            if INPUT_SUFFIXES.iter().any(|s| object.key.ends_with(s)) {
                files.push((object.key, object.size));
            }
        }
        match page.next_start_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(files)
}

/// The output file name of an input key: relative to the input prefix, without `.gz`.
fn output_name(input: &S3Location, key: &str) -> String {
    let relative = key.strip_prefix(&input.folder()).filter(|r| !r.is_empty()).unwrap_or_else(|| key.rsplit('/').next().unwrap_or(key));
    relative.strip_suffix(".gz").unwrap_or(relative).to_string()
}

/// What became of one line.
enum LineOutcome {
    /// Stored (or found stored by an earlier attempt): the version.
    Stored(StoredVersion),
    /// Refused: HTTP status and OperationOutcome.
    Refused(u16, Value),
}

/// Runs one chunk: every owned line checked and stored, its outcome staged.
pub(super) async fn run_chunk(
    steps: &JobSteps,
    ds: &ActiveDatastore,
    job: &JobRecord,
    chunk: &ImportChunk,
    retry: bool,
) -> Result<ChunkResult, JobFailure> {
    let uri = job.input_s3_uri.as_deref().unwrap_or_default();
    let input = S3Location::parse("InputDataConfig.S3Uri", uri).map_err(|e| JobFailure::Customer(e.to_string()))?;
    let store = steps.open_bucket(&input.bucket, None, "input").await?;
    let data = read_owned(store.as_ref(), chunk).await?;

    let mut result = ChunkResult { bytes: data.len() as u64, file: Some((chunk.file, chunk.file_chunks)), ..ChunkResult::default() };
    let mut outcomes: Vec<(u64, LineOutcome)> = Vec::new();
    let mut pending: Vec<(u64, BulkResource, usize)> = Vec::new();
    for (index, line) in lines(&data).enumerate() {
        let number = index as u64 + 1;
        result.lines = number;
        let line = trim_line(line, index == 0 && chunk.start == 0);
        if line.is_empty() {
            continue;
        }
        result.scanned += 1;
        match parse_line(line, &source_of(&job.id, chunk.number, number)) {
            Ok(resource) => pending.push((number, resource, line.len())),
            Err((status, outcome)) => outcomes.push((number, LineOutcome::Refused(status, outcome))),
        }
    }

    let already = if retry { written_before(steps, ds, job, &pending).await? } else { HashMap::new() };
    let mut sizes: HashMap<u64, usize> = HashMap::new();
    let mut to_write = Vec::new();
    for (number, resource, size) in pending {
        sizes.insert(number, size);
        match resource.source.as_ref().and_then(|s| already.get(s)) {
            Some(version) => outcomes.push((number, LineOutcome::Stored(version.clone()))),
            None => to_write.push((number, resource)),
        }
    }
    // Batches of equal size: on the embedded store a small remainder batch would become a small
    // run beside the large ones, and runs of one size merge best.
    let batch = to_write.len().div_ceil(to_write.len().div_ceil(WRITE_BATCH).max(1)).max(1);
    while !to_write.is_empty() {
        let rest = to_write.split_off(to_write.len().min(batch));
        let batch = std::mem::replace(&mut to_write, rest);
        let numbers: Vec<u64> = batch.iter().map(|(n, _)| *n).collect();
        let written = steps.resources.write_many(ds, batch.into_iter().map(|(_, r)| r).collect(), job.validation_level).await;
        for (number, outcome) in numbers.into_iter().zip(written) {
            match outcome {
                Ok(done) => outcomes.push((number, LineOutcome::Stored(done.version))),
                Err(error) => match refusal(error) {
                    Ok((status, outcome)) => outcomes.push((number, LineOutcome::Refused(status, outcome))),
                    Err(error) => return Err(JobFailure::Storage(error)),
                },
            }
        }
    }
    outcomes.sort_by_key(|(n, _)| *n);

    let mut success = Vec::new();
    let mut failure = Vec::new();
    for (number, outcome) in &outcomes {
        match outcome {
            LineOutcome::Stored(version) => {
                result.imported += 1;
                result.imported_bytes += sizes.get(number).copied().unwrap_or(0) as u64;
                staged_line(&mut success, *number, &success_response(version));
            }
            LineOutcome::Refused(status, outcome) => {
                result.customer_errors += 1;
                staged_line(&mut failure, *number, &json!({"UpdateResourceResponse": {"jsonBlob": outcome, "statusCode": status}}));
            }
        }
    }
    let output = steps.open_output(job).await?;
    let folder = output_folder_key(job)?;
    for (suffix, lines) in [("success", success), ("failure", failure)] {
        let key = staged_key(&folder, chunk.number, suffix);
        if lines.is_empty() {
            output.delete(&key).await.map_err(|e| JobFailure::Storage(e.into()))?;
        } else {
            output.put(&key, Bytes::from(lines)).await.map_err(|e| JobFailure::Storage(e.into()))?;
        }
    }
    Ok(result)
}

/// The owned lines' bytes: from the first line that starts at or after `start` to the end of
/// the last line that starts before `end`.
async fn read_owned(store: &dyn ObjectStore, chunk: &ImportChunk) -> Result<Bytes, JobFailure> {
    let unreadable = |e: fhirlake_ports::StorageError| match e.kind {
        StorageErrorKind::NotFound => JobFailure::Customer(format!("input object {} disappeared during the import", chunk.key)),
        _ => JobFailure::Storage(e.into()),
    };
    if chunk.gzip {
        let compressed = store.get(&chunk.key).await.map_err(unreadable)?;
        let mut data = Vec::new();
        let mut decoder = flate2::read::MultiGzDecoder::new(compressed.as_ref()).take(MAX_GZIP_BYTES + 1);
        decoder.read_to_end(&mut data).map_err(|_| JobFailure::Customer(format!("input object {} is not valid gzip", chunk.key)))?;
        if data.len() as u64 > MAX_GZIP_BYTES {
            return Err(JobFailure::Customer(format!("input object {} decompresses to more than 1 GiB", chunk.key)));
        }
        return Ok(Bytes::from(data));
    }
    if chunk.start >= chunk.end {
        return Ok(Bytes::new());
    }
    let begin = chunk.start.saturating_sub(1);
    let head = store.get_range(&chunk.key, begin..chunk.end).await.map_err(unreadable)?;
    let skip = if chunk.start == 0 {
        0
    } else {
        match head.iter().position(|b| *b == b'\n') {
            Some(i) => i + 1,
            // No line starts in this range: the line running through it belongs to an earlier chunk.
            None => return Ok(Bytes::new()),
        }
    };
    let mut data = head.slice(skip..).to_vec();
    let mut at = chunk.end;
    while !data.is_empty() && data.last() != Some(&b'\n') && at < chunk.size {
        let next = (at + TAIL_READ).min(chunk.size);
        let tail = store.get_range(&chunk.key, at..next).await.map_err(unreadable)?;
        match tail.iter().position(|b| *b == b'\n') {
            Some(i) => {
                data.extend_from_slice(&tail[..=i]);
                break;
            }
            None => data.extend_from_slice(&tail),
        }
        at = next;
    }
    Ok(Bytes::from(data))
}

/// The lines of `data` (a final newline ends the last line rather than starting an empty one).
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let empty = data.is_empty();
    data.split(|b| *b == b'\n').filter(move |_| !empty)
}

/// A line without its `\r`, surrounding blanks and (at the start of a file) byte order mark.
fn trim_line(line: &[u8], first_of_file: bool) -> &[u8] {
    let line = if first_of_file { line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line) } else { line };
    line.trim_ascii()
}

/// The source digest of a line: 16 hex digits of SHA-256 over (job, chunk, line).
fn source_of(job_id: &str, chunk: u64, line: u64) -> String {
    let digest = Sha256::digest(format!("{job_id}/{chunk}/{line}").as_bytes());
    hex::encode(&digest[..8])
}

/// A line as a resource to write, or its refusal.
fn parse_line(line: &[u8], source: &str) -> Result<BulkResource, (u16, Value)> {
    let mut body: Value = serde_json::from_slice(line).map_err(|e| {
        let diagnostics = format!("the line is not valid JSON ({:?} error at column {})", e.classify(), e.column());
        (400, operation_outcome(&[Issue::error("structure", diagnostics)]))
    })?;
    let Some(object) = body.as_object_mut() else {
        return Err((400, operation_outcome(&[Issue::error("structure", "the line is not a JSON object")])));
    };
    let resource_type = match object.get("resourceType") {
        Some(Value::String(t)) if registry::is_resource_type(t) => t.clone(),
        Some(Value::String(_)) => return Err((400, operation_outcome(&[Issue::error("not-supported", "unknown resource type")]))),
        _ => return Err((400, operation_outcome(&[Issue::error("required", "the resource has no resourceType")]))),
    };
    match object.get("id") {
        None => {
            // A deterministic id: a retried chunk must not create the resource twice.
            let digest = Sha256::digest(format!("{source}/{resource_type}").as_bytes());
            let h = hex::encode(&digest[..16]);
            object.insert("id".into(), Value::String(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])));
        }
        Some(Value::String(id)) if fhirlake_fhir::resource::is_valid_id(id) => {}
        Some(_) => {
            return Err((
                400,
                operation_outcome(&[Issue::error("value", "the id is not a valid FHIR id").at(format!("{resource_type}.id"))]),
            ))
        }
    }
    Ok(BulkResource { body, source: Some(source.to_string()) })
}

/// An error from writing a line: its refusal (a customer error), or the error that must fail
/// the chunk so it is retried (storage trouble, contention).
fn refusal(error: CoreError) -> Result<(u16, Value), CoreError> {
    match error {
        CoreError::InvalidResource(issues) => Ok((400, operation_outcome(&issues))),
        CoreError::Invalid(m) => Ok((400, operation_outcome(&[Issue::error("invalid", m)]))),
        CoreError::NotFound(m) => Ok((400, operation_outcome(&[Issue::error("not-supported", m)]))),
        CoreError::Unprocessable(m) => Ok((422, operation_outcome(&[Issue::error("processing", m)]))),
        other => Err(other),
    }
}

/// The versions earlier attempts of this chunk stored, by source: every resource the chunk
/// names, its history since the job was submitted.
async fn written_before(
    steps: &JobSteps,
    ds: &ActiveDatastore,
    job: &JobRecord,
    pending: &[(u64, BulkResource, usize)],
) -> Result<HashMap<String, StoredVersion>, JobFailure> {
    let sources: HashSet<&str> = pending.iter().filter_map(|(_, r, _)| r.source.as_deref()).collect();
    let mut ids = HashSet::new();
    for (_, r, _) in pending {
        if let (Some(t), Some(id)) = (r.body.get("resourceType").and_then(Value::as_str), r.body.get("id").and_then(Value::as_str)) {
            ids.insert((t.to_string(), id.to_string()));
        }
    }
    let mut found = HashMap::new();
    for (resource_type, id) in ids {
        let mut query = HistoryQuery { count: 100, since: Some(job.submit_time), cursor: None };
        loop {
            let page = match steps.resources.history(ds, HistoryScope::Instance(&resource_type, &id), &query).await {
                Ok(page) => page,
                // Never written: no earlier attempt stored it.
                Err(CoreError::NotFound(_)) => break,
                Err(e) => return Err(JobFailure::Storage(e)),
            };
            for version in page.entries {
                if let Some(source) = version.source.clone().filter(|s| sources.contains(s.as_str())) {
                    found.entry(source).or_insert(version);
                }
            }
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
    }
    Ok(found)
}

/// A success line's response: the version's identity.
fn success_response(version: &StoredVersion) -> Value {
    let status = if version.version == 1 { 201 } else { 200 };
    json!({"UpdateResourceResponse": {
        "jsonBlob": {
            "resourceType": version.resource_type,
            "id": version.id,
            "meta": {"versionId": version.version.to_string(), "lastUpdated": fhirlake_fhir::resource::format_instant(version.last_updated)},
        },
        "statusCode": status,
    }})
}

/// Appends a staged line: the chunk's line number, a space, the response JSON.
fn staged_line(out: &mut Vec<u8>, number: u64, response: &Value) {
    out.extend_from_slice(number.to_string().as_bytes());
    out.push(b' ');
    // Serialising a Value cannot fail.
    out.extend_from_slice(&serde_json::to_vec(response).unwrap_or_default());
    out.push(b'\n');
}

/// The job folder's key in the output bucket.
fn output_folder_key(job: &JobRecord) -> Result<String, JobFailure> {
    let folder = S3Location::parse("S3Uri", &job.output_folder()).map_err(|e| JobFailure::Customer(e.to_string()))?;
    Ok(folder.folder())
}

fn staged_key(folder: &str, chunk: u64, suffix: &str) -> String {
    format!("{folder}.staging/{chunk:06}.{suffix}.ndjson")
}

/// Merges the staged lines into `SUCCESS/` and `FAILURE/` with file line numbers, writes
/// `manifest.json`, and returns the job's totals.
pub(super) async fn finalize(
    steps: &JobSteps,
    job: &JobRecord,
    chunks: &[ImportChunk],
    results: &HashMap<u64, ChunkResult>,
) -> Result<ChunkResult, JobFailure> {
    let output = steps.open_output(job).await?;
    let folder = output_folder_key(job)?;
    let mut totals = ChunkResult::default();
    let mut file_start = 0;
    while file_start < chunks.len() {
        let file = chunks[file_start].file;
        let file_end = chunks[file_start..].iter().position(|c| c.file != file).map_or(chunks.len(), |n| file_start + n);
        let of_file = &chunks[file_start..file_end];
        let imported: fn(&ChunkResult) -> u64 = |r| r.imported;
        let refused: fn(&ChunkResult) -> u64 = |r| r.customer_errors;
        for (suffix, dir, count) in [("success", "SUCCESS", imported), ("failure", "FAILURE", refused)] {
            let any = of_file.iter().any(|c| results.get(&c.number).is_some_and(|r| count(r) > 0));
            if dir == "FAILURE" && !any {
                continue;
            }
            let mut writer = ObjectWriter::new(output.as_ref(), format!("{folder}{dir}/{}", of_file[0].name));
            // Failure lines name their input file (success files are one per input file anyway).
            let input_file = (dir == "FAILURE").then(|| input_uri(job, &of_file[0].key));
            let mut offset = 0;
            for chunk in of_file {
                let result = results.get(&chunk.number).cloned().unwrap_or_default();
                if count(&result) > 0 {
                    let staged = output.get(&staged_key(&folder, chunk.number, suffix)).await.map_err(|e| JobFailure::Storage(e.into()))?;
                    writer.write(&renumber(&staged, offset, input_file.as_deref())).await.map_err(|e| JobFailure::Storage(e.into()))?;
                }
                offset += result.lines;
            }
            writer.finish().await.map_err(|e| JobFailure::Storage(e.into()))?;
        }
        for chunk in of_file {
            if let Some(result) = results.get(&chunk.number) {
                totals.add(result);
            }
        }
        file_start = file_end;
    }
    let files = chunks.last().map_or(0, |c| c.file + 1);
    (totals.files_read, totals.files_with_errors) = ChunkResult::file_counts(results.values());
    let folder_uri = job.output_folder();
    let plan = job.plan.clone().unwrap_or_default();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let manifest = json!({
        "inputDataConfig": {"s3Uri": job.input_s3_uri},
        "outputDataConfig": {"s3Uri": folder_uri, "encryptionKeyID": job.output.kms_key_id},
        "successOutput": {"successOutputS3Uri": format!("{folder_uri}SUCCESS/")},
        "failureOutput": {"failureOutputS3Uri": format!("{folder_uri}FAILURE/")},
        "numberOfScannedFiles": files,
        "numberOfFilesImported": files,
        "numberOfFilesWithCustomerError": totals.files_with_errors,
        "sizeOfScannedFilesInMB": mib(plan.bytes),
        "sizeOfDataImportedSuccessfullyInMB": mib(totals.imported_bytes),
        "numberOfResourcesScanned": totals.scanned,
        "numberOfResourcesImportedSuccessfully": totals.imported,
        "numberOfResourcesWithCustomerError": totals.customer_errors,
        "numberOfResourcesWithServerError": 0,
    });
    let manifest = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    output.put(&format!("{folder}manifest.json"), Bytes::from(manifest)).await.map_err(|e| JobFailure::Storage(e.into()))?;
    Ok(totals)
}

/// Removes the staged lines of a finished import (best effort: leftovers are harmless).
pub(super) async fn remove_staging(steps: &JobSteps, job: &JobRecord, chunks: &[ImportChunk]) {
    let (Ok(output), Ok(folder)) = (steps.open_output(job).await, output_folder_key(job)) else { return };
    for chunk in chunks {
        for suffix in ["success", "failure"] {
            if let Err(e) = output.delete(&staged_key(&folder, chunk.number, suffix)).await {
                tracing::warn!(job_id = %job.id, error = %e, "could not remove a staged import file");
            }
        }
    }
}

/// `s3://bucket/key` of an input object.
fn input_uri(job: &JobRecord, key: &str) -> String {
    let bucket = job.input_s3_uri.as_deref().and_then(|uri| S3Location::parse("InputDataConfig.S3Uri", uri).ok()).map(|l| l.bucket);
    format!("s3://{}/{key}", bucket.unwrap_or_default())
}

/// Staged lines with their chunk line numbers turned into file line numbers, and the input
/// file named when given.
fn renumber(staged: &[u8], offset: u64, input_file: Option<&str>) -> Vec<u8> {
    let file = input_file.map(|f| serde_json::to_vec(f).unwrap_or_default());
    let mut out = Vec::with_capacity(staged.len() + staged.len() / 8);
    for line in lines(staged) {
        let Some(space) = line.iter().position(|b| *b == b' ') else { continue };
        let number: u64 = std::str::from_utf8(&line[..space]).ok().and_then(|n| n.parse().ok()).unwrap_or(0);
        let response = &line[space + 1..];
        out.extend_from_slice(b"{\"lineId\":");
        out.extend_from_slice((number + offset).to_string().as_bytes());
        if let Some(file) = &file {
            out.extend_from_slice(b",\"inputFile\":");
            out.extend_from_slice(file);
        }
        if response.len() > 2 {
            out.push(b',');
            out.extend_from_slice(&response[1..]);
        } else {
            out.push(b'}');
        }
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_on_newlines_without_a_phantom_last_line() {
        assert_eq!(lines(b"a\nb\n").collect::<Vec<_>>(), vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(lines(b"a\n\nb").collect::<Vec<_>>(), vec![&b"a"[..], &b""[..], &b"b"[..]]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(trim_line(b"\xEF\xBB\xBF{}\r", true), b"{}");
    }

    #[test]
    fn staged_lines_are_renumbered_into_file_lines() {
        let mut staged = Vec::new();
        staged_line(&mut staged, 3, &json!({"a": 1}));
        staged_line(&mut staged, 7, &json!({}));
        assert_eq!(renumber(&staged, 100, None), b"{\"lineId\":103,\"a\":1}\n{\"lineId\":107}\n".to_vec());
        let named = renumber(&staged, 0, Some("s3://in/a \"b\".ndjson"));
        assert_eq!(named, b"{\"lineId\":3,\"inputFile\":\"s3://in/a \\\"b\\\".ndjson\",\"a\":1}\n{\"lineId\":7,\"inputFile\":\"s3://in/a \\\"b\\\".ndjson\"}\n".to_vec());
    }

    #[test]
    fn lines_are_parsed_or_refused_without_echoing_content() {
        let ok = parse_line(br#"{"resourceType":"Patient","id":"p1"}"#, "s").expect("valid");
        assert_eq!(ok.source.as_deref(), Some("s"));
        let assigned = parse_line(br#"{"resourceType":"Patient"}"#, "s").expect("valid");
        let again = parse_line(br#"{"resourceType":"Patient"}"#, "s").expect("valid");
        assert_eq!(assigned.body["id"], again.body["id"], "ids are deterministic");
        for (line, code) in [
            (&br#"{"resourceType":"Patient","name":"Jane Doe"#[..], "structure"),
            (br#"[1,2]"#, "structure"),
            (br#"{"resourceType":"Jane"}"#, "not-supported"),
            (br#"{"id":"x"}"#, "required"),
            (br#"{"resourceType":"Patient","id":"no spaces"}"#, "value"),
        ] {
            let Err((status, outcome)) = parse_line(line, "s") else { panic!("refused") };
            assert_eq!(status, 400);
            assert_eq!(outcome["issue"][0]["code"], code);
            assert!(!outcome.to_string().contains("Jane"), "{outcome}");
        }
    }
}
