//! The units of a job's work, as the plan step lists them and the chunk step takes them (one
//! item of the Step Functions Distributed Map each).

use serde::{Deserialize, Serialize};

use super::record::JobKind;

/// One job, as the plan and finalize steps take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobTask {
    /// The datastore.
    pub datastore_id: String,
    /// The job.
    pub job_id: String,
    /// Import or export.
    pub kind: JobKind,
}

/// One chunk of one job, as the chunk step takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkTask {
    /// The datastore.
    pub datastore_id: String,
    /// The job.
    pub job_id: String,
    /// The work.
    pub chunk: Chunk,
}

/// A chunk of an import or of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Chunk {
    /// Lines of one input file.
    Import(ImportChunk),
    /// Resources of one type in one id range.
    Export(ExportChunk),
}

impl Chunk {
    /// The chunk's number within its job, from 0.
    pub fn number(&self) -> u64 {
        match self {
            Chunk::Import(c) => c.number,
            Chunk::Export(c) => c.number,
        }
    }
    /// The job kind it belongs to.
    pub fn kind(&self) -> JobKind {
        match self {
            Chunk::Import(_) => JobKind::Import,
            Chunk::Export(_) => JobKind::Export,
        }
    }
}

/// The lines of one input file that start in the byte range `start..end` (the last one read to
/// its end, past `end`): chunks of a file meet at arbitrary offsets and still share no line.
/// A gzip file is one chunk, read whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportChunk {
    /// Chunk number.
    pub number: u64,
    /// The file's number in the job, from 0.
    pub file: u64,
    /// How many chunks the file has.
    pub file_chunks: u64,
    /// The file's chunk index, from 0.
    pub part: u64,
    /// The input object's key.
    pub key: String,
    /// The name of its output files (the key relative to the input prefix, without `.gz`).
    pub name: String,
    /// The file's size.
    pub size: u64,
    /// First byte.
    pub start: u64,
    /// One past the last byte where an owned line may start.
    pub end: u64,
    /// Gzip-compressed.
    pub gzip: bool,
}

/// A system export's resources of one type whose ids fall in one id range (see
/// [`super::export::ID_RANGES`]); a patient export's patients of one id range, or a group
/// export's listed patients, with their compartments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportChunk {
    /// Chunk number.
    pub number: u64,
    /// The resource type (system exports), `Patient` otherwise.
    pub resource_type: String,
    /// The id range (system and patient exports).
    pub range: u32,
    /// The patients (group exports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<String>,
}
