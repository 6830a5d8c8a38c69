//! Embedded adapters of fhirlake's ports, for `fhirlake serve` on one machine:
//!
//! | port | adapter | storage |
//! |------|---------|---------|
//! | `ItemTable` | [`RedbItemTable`] | one redb file and sorted run files beside it: crash-safe, ACID, DynamoDB's key model and limits |
//! | `ObjectStore` | [`LocalObjectStore`] | one file per object under a directory, atomic replace |
//! | `KeyService` | [`LocalKeyFile`] | a 0600 file holding a 256-bit master secret |
//! | `Buckets` | [`LocalBuckets`] | `s3://bucket/key` as `<data_dir>/s3/bucket/key` (jobs' input and output) |
//!
//! [`JsonLinesAuditLog`] is the audit trail's sink: an append-only 0600 file of JSON lines.
//!
//! [`allocator`] is the process allocator `fhirlake serve` runs on, and its settings.
//!
//! [`EmbeddedBackend::open`] opens all four under one data directory. The item table's byte
//! layout (key and attribute encoding) is documented in `src/item_codec.rs`. Every adapter passes
//! the conformance suite of `fhirlake_ports::testsuite`.
#![warn(missing_docs)]

pub mod allocator;
mod embedded_backend;
mod entry_batch;
mod item_codec;
mod json_lines_audit_log;
mod local_buckets;
mod local_key_file;
mod local_object_store;
mod redb_item_table;
mod run_set;
mod sorted_run;

pub use embedded_backend::EmbeddedBackend;
pub use json_lines_audit_log::JsonLinesAuditLog;
pub use local_buckets::LocalBuckets;
pub use local_key_file::LocalKeyFile;
pub use local_object_store::LocalObjectStore;
pub use redb_item_table::RedbItemTable;
pub use run_set::RunPolicy;
