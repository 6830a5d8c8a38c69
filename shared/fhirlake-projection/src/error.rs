//! The projection's error type. Messages are lowercase and never contain resource content.

/// Why projecting failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    /// A stored body is not a JSON object (corrupted state).
    #[error("stored body is not a json object")]
    Body,
    /// A version number does not fit a Parquet int64.
    #[error("version number out of range")]
    Version,
    /// Building the Parquet file failed.
    #[error("parquet encoding failed: {0}")]
    Encode(String),
    /// A record to retry from has no sequence number, so no partial failure can name it.
    #[error("a record to retry from has no sequence number")]
    NoCheckpoint,
}
