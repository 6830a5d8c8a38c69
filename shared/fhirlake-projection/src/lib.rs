//! fhirlake's search projections: per datastore and resource type, Parquet files of every stored
//! version with its search-parameter values extracted and normalised, for SQL analytics (Athena,
//! Glue), filtered export and index rebuilds. In AWS they are written from the table's DynamoDB
//! stream by the `stream-projector` Lambda function.
//!
//! The parts, each usable alone:
//!
//! - [`schema_for`]: the columns of a resource type, derived from the generated R4 registry
//!   (fixed columns, then one `sp_{code}` list column per search parameter; see [`schema`]).
//! - [`normalise`]: how the values an expression selects become strings, per parameter type.
//! - [`project_version`]: a stored version ([`StoredVersion`](fhirlake_core::resources::StoredVersion))
//!   to a [`ProjectionRow`], with fhirlake's FHIRPath engine.
//! - [`encode_parquet`]: rows of one type to the bytes of a Parquet file (arrow-rs, Snappy).
//! - [`projection_key`] names the files: `projections/{ds}/{Type}/date={YYYY-MM-DD}/{batch}.parquet`.
//! - [`change_records`]: the DynamoDB Streams Lambda event to classified records.
//! - [`Projector`]: a batch of stream records to files in an
//!   [`ObjectStore`](fhirlake_ports::ObjectStore), with partial batch failures for transient
//!   errors only.
//!
//! What the projection does not protect: resource bodies in the table are sealed by fhirlake
//! (AES-256-GCM under the datastore's data key), but the projection files hold the resources and
//! their values in plaintext, protected only by the bucket's encryption (SSE-KMS) and access
//! policy, as HealthLake's Iceberg tables are. Deleting a datastore shreds its bodies at once; its
//! projection files must be deleted separately.
#![warn(missing_docs)]

mod error;
pub mod normalise;
mod object_layout;
mod parquet_file;
mod projector;
mod row;
pub mod schema;
mod stream_event;

pub use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
pub use aws_lambda_events::event::streams::DynamoDbEventResponse;
pub use error::ProjectionError;
pub use object_layout::{batch_id, is_sequence_number, projection_key, type_prefix, MAX_SEQUENCE_DIGITS, PROJECTIONS_PREFIX};
pub use parquet_file::encode_parquet;
pub use projector::{BatchReport, Projector, SkipReason};
pub use row::{extract, project_version, ProjectionRow};
pub use schema::{column_name, schema_for, ParamColumn, ProjectionSchema};
pub use stream_event::{change_records, Change, ChangeRecord, IgnoreReason, MalformedReason};

/// Environment variable naming the bucket projection files go to (default: `FHIRLAKE_BUCKET`).
pub const PROJECTION_BUCKET_ENV: &str = "FHIRLAKE_PROJECTION_BUCKET";
